//! Starting a real server on 127.0.0.1:0 over an embedded store in a temporary directory.
#![allow(dead_code)]

use std::sync::Arc;

use factlog_log::{EmbeddedStore, Options};
use factlog_server::{Backend, Config, Server};

pub struct TestServer {
    pub server: Option<Server>,
    pub store: Arc<EmbeddedStore>,
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(Config::default()).await
    }

    pub async fn with_config(mut config: Config) -> Self {
        Self::with(config_local(&mut config), Options::default()).await
    }

    pub async fn with(config: Config, options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path(), options).unwrap());
        let server = Server::start(config, Backend::embedded(store.clone()))
            .await
            .unwrap();
        let url = server.url();
        Self {
            server: Some(server),
            store,
            url,
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.store.close();
    }

    /// Events in the store, by the embedded engine's own count.
    pub fn events(&self) -> u64 {
        self.store.stats().events
    }
}

fn config_local(config: &mut Config) -> Config {
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.clone()
}
