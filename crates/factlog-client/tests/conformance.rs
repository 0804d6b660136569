//! The store API conformance suite, run through `HttpStore` against a real server (on
//! 127.0.0.1:0) over an embedded store in a temporary directory.
//!
//! Every case of the suite runs here, as for every other backend: the HTTP API carries
//! everything the store API promises (data byte for byte, `asOf` times as the client reads them).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use factlog_client::HttpStore;
use factlog_conformance::Limits;
use factlog_log::{EmbeddedStore, Options};
use factlog_server::{Config, Server};

/// One store behind one server.
struct Instance {
    url: String,
    server: Option<Server>,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Ends the server's subscriptions and releases the directory before it is deleted.
        self.store.close();
    }
}

/// Each store lives in its own temporary directory behind its own server, kept until the
/// backend is dropped.
#[derive(Default)]
struct OverHttp {
    instances: Mutex<Vec<Instance>>,
}

impl OverHttp {
    fn options() -> Options {
        // Small segments, so the suite also crosses segment boundaries.
        Options {
            segment_bytes_max: 64 * 1024,
            ..Options::default()
        }
    }

    async fn serve(&self, store: Arc<EmbeddedStore>, dir: tempfile::TempDir) -> Arc<HttpStore> {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        let server = Server::start(config, factlog_server::Backend::embedded(store.clone()))
            .await
            .unwrap();
        let url = server.url();
        let client = Arc::new(HttpStore::new(&url, None).unwrap());
        self.instances.lock().unwrap().push(Instance {
            url,
            server: Some(server),
            store,
            _dir: dir,
        });
        client
    }
}

#[async_trait]
impl factlog_conformance::Backend for OverHttp {
    type Store = HttpStore;

    async fn open(&self) -> Arc<HttpStore> {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path(), Self::options()).unwrap());
        self.serve(store, dir).await
    }

    /// Stops the server, closes the store, opens the same directory again behind a new server.
    async fn reopen(&self, client: Arc<HttpStore>) -> Arc<HttpStore> {
        let url = client.base_url().trim_end_matches('/').to_owned();
        drop(client);
        let mut instance = {
            let mut instances = self.instances.lock().unwrap();
            let i = instances
                .iter()
                .position(|i| i.url == url)
                .expect("the store was opened by this backend");
            instances.swap_remove(i)
        };
        if let Some(server) = instance.server.take() {
            server.shutdown().await;
        }
        instance.store.close();
        let path = instance.store.dir().to_path_buf();
        let dir = tempfile::TempDir::new().unwrap();
        // The instance's directory outlives it: move its guard to the new instance.
        let dir = std::mem::replace(&mut instance._dir, dir);
        drop(instance);
        let store = Arc::new(EmbeddedStore::open(&path, Self::options()).unwrap());
        self.serve(store, dir).await
    }

    fn limits(&self) -> Limits {
        let o = Self::options();
        Limits {
            event_size_bytes_max: o.event_size_bytes_max,
            append_events_max: o.append_events_max,
        }
    }
}

factlog_conformance::conformance_tests!(OverHttp::default());
