//! A real server on 127.0.0.1:0 over an embedded store in a temporary directory, and the
//! `HttpStore` that talks to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use factlog_client::HttpStore;
use factlog_log::{EmbeddedStore, Options};
use factlog_server::{Backend, Config, Server};

pub struct TestServer {
    pub server: Option<Server>,
    pub store: Arc<EmbeddedStore>,
    pub config: Config,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(Config::default(), Self::options()).await
    }

    /// Small segments, so that reads also cross segment boundaries.
    pub fn options() -> Options {
        Options {
            segment_bytes_max: 64 * 1024,
            ..Options::default()
        }
    }

    pub async fn with(mut config: Config, options: Options) -> Self {
        config.listen = "127.0.0.1:0".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path(), options).unwrap());
        let server = Server::start(config.clone(), Backend::embedded(store.clone()))
            .await
            .unwrap();
        let url = server.url();
        config.listen = server.local_addr();
        Self {
            server: Some(server),
            store,
            config,
            url,
            dir,
        }
    }

    pub fn client(&self) -> HttpStore {
        HttpStore::new(&self.url, None).unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        self.config.listen
    }

    /// Shuts the server down (ending its subscriptions and connections); the store stays open.
    pub async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Starts a server again on the same address over the same store.
    pub async fn restart_server(&mut self) {
        self.stop_server().await;
        let server = Server::start(self.config.clone(), Backend::embedded(self.store.clone()))
            .await
            .unwrap();
        assert_eq!(server.local_addr(), self.addr());
        self.server = Some(server);
    }

    pub async fn stop(mut self) {
        self.stop_server().await;
        self.store.close();
    }
}
