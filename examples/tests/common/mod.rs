//! An example service started in-process for tests: an embedded store in a temporary
//! directory, the service on 127.0.0.1:0, and a client.

#![allow(dead_code)]

use std::sync::Arc;

use factlog_examples::service::{Backend, ServiceArgs};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Semaphore;

pub struct TestService {
    pub url: String,
    pub http: reqwest::Client,
    pub backend: Backend,
    /// Replays wait for a permit from here after their start marker.
    pub replay_hold: Arc<Semaphore>,
    _dir: tempfile::TempDir,
}

/// Starts the service `router` builds, snapshotting every `snapshot_every` events.
pub async fn start(
    snapshot_every: u64,
    router: impl FnOnce(&Backend, Arc<Semaphore>) -> axum::Router,
) -> TestService {
    let dir = tempfile::tempdir().unwrap();
    let args = ServiceArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        server: None,
        token: None,
        snapshot_every,
    };
    let backend = Backend::open(&args).unwrap();
    let replay_hold = Arc::new(Semaphore::new(0));
    let router = router(&backend, replay_hold.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    TestService {
        url,
        http: reqwest::Client::new(),
        backend,
        replay_hold,
        _dir: dir,
    }
}

impl TestService {
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: &str) -> StatusCode {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.unwrap().status()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// How many events `GET {path}` lists (a history route).
    pub async fn events_at(&self, path: &str) -> usize {
        let (_, body) = self.get(path).await;
        body["events"].as_array().map_or(0, Vec::len)
    }
}

/// The slug of a problem's type.
pub fn problem_type(body: &Value) -> &str {
    body["type"]
        .as_str()
        .and_then(|t| t.rsplit('#').next())
        .unwrap_or("")
}
