//! The bank example as users run it: the real binary on the embedded store (SIGTERM, restart,
//! data kept), and the bank service on a Factlog server (the store API over HTTP).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use factlog_examples::bank_service::{BankOptions, new_app, router};
use factlog_examples::service::{Backend, ServiceArgs};
use factlog_log::{EmbeddedStore, Options};
use factlog_store::{EventStore, ReadStream, StreamName};
use serde_json::{Value, json};

/// `target/<profile>/examples/bank`, which `cargo test` builds with the tests.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join("bank");
    assert!(path.exists(), "{} is not built", path.display());
    path
}

/// Starts the example and returns it with the URL it printed.
fn spawn(data_dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(example_binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("bank listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the bank example did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let client = reqwest::Client::new();
    let response = client.post(url).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn the_bank_example_serves_stops_on_sigterm_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn(dir.path());
    let (status, _) = post(
        &format!("{url}/accounts"),
        json!({"accountId": "p1", "owner": "Ada"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = post(
        &format!("{url}/accounts/p1/deposits"),
        json!({"amount": 25, "commandId": "d-1"}),
    )
    .await;
    assert_eq!((status, body["balance"].as_u64()), (200, Some(25)));
    assert!(terminate(&mut child).success());

    let (mut child, url) = spawn(dir.path());
    let body: Value = reqwest::get(format!("{url}/accounts/p1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (body["balance"].as_u64(), body["version"].as_u64()),
        (Some(25), Some(1))
    );
    // The command id is remembered across the restart: the retry deposits nothing.
    let (status, body) = post(
        &format!("{url}/accounts/p1/deposits"),
        json!({"amount": 25, "commandId": "d-1"}),
    )
    .await;
    assert_eq!((status, body["balance"].as_u64()), (200, Some(25)));
    assert!(terminate(&mut child).success());
}

#[tokio::test]
async fn the_bank_runs_on_a_factlog_server() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(EmbeddedStore::open(dir.path().join("server"), Options::default()).unwrap());
    let config = factlog_server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..factlog_server::Config::default()
    };
    let server =
        factlog_server::Server::start(config, factlog_server::Backend::embedded(store.clone()))
            .await
            .unwrap();

    let args = ServiceArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("bank"),
        server: Some(server.url()),
        token: None,
        snapshot_every: 2,
    };
    let backend = Backend::open(&args).unwrap();
    assert!(backend.embedded.is_none());
    let app = new_app(&backend, BankOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(app)).await });

    for (path, body) in [
        ("/accounts", json!({"accountId": "s1", "owner": "Ada"})),
        ("/accounts", json!({"accountId": "s2", "owner": "Bob"})),
        ("/accounts/s1/deposits", json!({"amount": 40})),
        (
            "/transfers",
            json!({"from": "s1", "to": "s2", "amount": 15, "commandId": "t"}),
        ),
        (
            "/transfers",
            json!({"from": "s1", "to": "s2", "amount": 15, "commandId": "t"}),
        ),
    ] {
        let (status, answer) = post(&format!("{url}{path}"), body).await;
        assert!(status < 300, "{path}: {status} {answer}");
    }
    let (status, body) = post(
        &format!("{url}/accounts/s1/withdrawals"),
        json!({"amount": 26}),
    )
    .await;
    assert_eq!((status, body["balance"].as_u64()), (422, Some(25)));
    // The read model follows the server's store through its subscription.
    let accounts: Value = reqwest::get(format!("{url}/accounts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(accounts["totalBalance"], 40);
    assert_eq!(accounts["accounts"][1]["balance"], 15);
    // The events are in the server's store.
    let events = store
        .read_stream(
            &StreamName::new("account-s1").unwrap(),
            ReadStream::forward(),
        )
        .await
        .unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]);
    server.shutdown().await;
    store.close();
}
