//! The bank service over HTTP on a real socket and the embedded store: its contract, 32
//! concurrent withdrawals, transfers, time travel, history and the replay of its read model.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestService, problem_type};
use factlog_examples::bank_service::{BankOptions, new_app, router};
use factlog_store::{ReadStream, StreamName};
use reqwest::StatusCode;
use serde_json::{Value, json};

type Bank = TestService;

async fn start() -> Bank {
    common::start(5, |backend, replay_hold| {
        router(new_app(
            backend,
            BankOptions {
                replay_hold: Some(replay_hold),
            },
        ))
    })
    .await
}

impl Bank {
    async fn open(&self, id: &str, deposit: u64) {
        let (status, _) = self
            .post("/accounts", json!({"accountId": id, "owner": "Ada"}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        if deposit > 0 {
            let (status, _) = self
                .post(
                    &format!("/accounts/{id}/deposits"),
                    json!({"amount": deposit}),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }

    async fn history_len(&self, id: &str) -> usize {
        self.events_at(&format!("/accounts/{id}/history")).await
    }
}

#[tokio::test]
async fn the_contract_of_accounts() {
    let bank = start().await;
    let (status, body) = bank
        .post(
            "/accounts",
            json!({"accountId": "a1", "owner": "Ada", "commandId": "open-a1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"accountId": "a1", "owner": "Ada", "balance": 0, "version": 0, "open": true})
    );
    let (status, body) = bank
        .post("/accounts", json!({"accountId": "a1", "owner": "Bob"}))
        .await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::CONFLICT, "account-exists")
    );

    let (status, body) = bank
        .post("/accounts/a1/deposits", json!({"amount": 100}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["balance"].as_u64(), body["version"].as_u64()),
        (Some(100), Some(1))
    );
    let (status, body) = bank
        .post("/accounts/a1/withdrawals", json!({"amount": 30}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["balance"].as_u64(), body["version"].as_u64()),
        (Some(70), Some(2))
    );

    // Business errors: problem+json, and nothing written.
    let response = bank
        .http
        .post(format!("{}/accounts/a1/withdrawals", bank.url))
        .json(&json!({"amount": 71}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(problem_type(&body), "insufficient-funds");
    assert_eq!(
        (body["balance"].as_u64(), body["requested"].as_u64()),
        (Some(70), Some(71))
    );
    assert_eq!(body["status"], 422);
    for (path, request, status, slug) in [
        (
            "/accounts/a1/deposits",
            json!({"amount": 0}),
            422,
            "invalid-amount",
        ),
        (
            "/accounts/nobody/deposits",
            json!({"amount": 5}),
            404,
            "account-not-found",
        ),
        (
            "/accounts/nobody/withdrawals",
            json!({"amount": 5}),
            404,
            "account-not-found",
        ),
        (
            "/accounts/a1/deposits",
            json!({"amount": -5}),
            422,
            "invalid-body",
        ),
        (
            "/accounts/a1/deposits",
            json!({"amount": 1.5}),
            422,
            "invalid-body",
        ),
        (
            "/accounts/a1/deposits",
            json!({"sum": 5}),
            422,
            "invalid-body",
        ),
        (
            "/accounts/a1/deposits",
            json!({"amount": 5, "commandId": ""}),
            400,
            "invalid-request",
        ),
        ("/accounts/a1/close", json!({}), 422, "balance-not-zero"),
        (
            "/accounts",
            json!({"accountId": "", "owner": "Ada"}),
            400,
            "invalid-id",
        ),
        (
            "/transfers",
            json!({"from": "a1", "to": "a1", "amount": 1}),
            422,
            "same-account",
        ),
    ] {
        let (got, body) = bank.post(path, request.clone()).await;
        assert_eq!(got.as_u16(), status, "{path} {request}: {body}");
        assert_eq!(problem_type(&body), slug, "{path} {request}: {body}");
    }
    let response = bank
        .http
        .post(format!("{}/accounts/a1/deposits", bank.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bank.history_len("a1").await, 3);

    // Queries: the read model, and time travel.
    let (status, body) = bank.get("/accounts/a1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"accountId": "a1", "owner": "Ada", "balance": 70, "version": 2, "open": true})
    );
    let (_, body) = bank.get("/accounts/a1?version=1").await;
    assert_eq!(
        (body["balance"].as_u64(), body["version"].as_u64()),
        (Some(100), Some(1))
    );
    let (_, history) = bank.get("/accounts/a1/history").await;
    let events = history["events"].as_array().unwrap();
    let types: Vec<_> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]);
    assert_eq!(events[0]["metadata"]["commandId"], "open-a1");
    let as_of = events[1]["recordedAt"].as_str().unwrap();
    let (_, body) = bank.get(&format!("/accounts/a1?asOf={as_of}")).await;
    assert_eq!(body["balance"], 100, "as of {as_of}: {body}");
    let (status, body) = bank.get("/accounts/a1?asOf=2000-01-01T00:00:00Z").await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "account-not-found")
    );
    for (query, status, slug) in [
        ("version=9", 404, "version-not-found"),
        (
            "version=1&asOf=2000-01-01T00:00:00Z",
            400,
            "invalid-request",
        ),
        ("asOf=yesterday", 400, "invalid-request"),
        ("colour=red", 400, "invalid-request"),
    ] {
        let (got, body) = bank.get(&format!("/accounts/a1?{query}")).await;
        assert_eq!(
            (got.as_u16(), problem_type(&body)),
            (status, slug),
            "{query}"
        );
    }
    let (status, body) = bank.get("/accounts/nobody").await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "account-not-found")
    );
    let (status, _) = bank.get("/accounts/nobody/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Closing: only empty, and then nothing more.
    bank.post("/accounts/a1/withdrawals", json!({"amount": 70}))
        .await;
    let (status, body) = bank.post("/accounts/a1/close", json!({})).await;
    assert_eq!(
        (status, body["open"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let (status, body) = bank
        .post("/accounts/a1/deposits", json!({"amount": 1}))
        .await;
    assert_eq!(
        (status.as_u16(), problem_type(&body)),
        (422, "account-closed")
    );
}

#[tokio::test]
async fn thirty_two_concurrent_withdrawals_from_ten() {
    let bank = Arc::new(start().await);
    bank.open("hot", 10).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let bank = bank.clone();
            tokio::spawn(async move {
                let request = json!({"amount": 1, "commandId": format!("w-{i}")});
                (i, bank.post("/accounts/hot/withdrawals", request).await)
            })
        })
        .collect();
    let mut succeeded = Vec::new();
    for task in tasks {
        let (i, (status, body)) = task.await.unwrap();
        match status {
            StatusCode::OK => {
                let balance = body["balance"].as_u64().expect("a balance");
                assert!(balance < 10);
                succeeded.push((i, body));
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(problem_type(&body), "insufficient-funds", "{body}");
                assert_eq!(body["balance"], 0);
            }
            other => panic!("request {i} got {other}: {body}"),
        }
    }
    assert_eq!(succeeded.len(), 10);
    // Each success saw its own version and balance: 10 distinct states.
    let mut balances: Vec<u64> = succeeded
        .iter()
        .map(|(_, b)| b["balance"].as_u64().unwrap())
        .collect();
    balances.sort_unstable();
    assert_eq!(balances, (0..10).collect::<Vec<_>>());

    // The history never goes below zero.
    let (_, history) = bank.get("/accounts/hot/history").await;
    let mut balance: i64 = 0;
    for event in history["events"].as_array().unwrap() {
        match event["eventType"].as_str().unwrap() {
            "MoneyDeposited" => balance += event["data"]["amount"].as_i64().unwrap(),
            "MoneyWithdrawn" => balance -= event["data"]["amount"].as_i64().unwrap(),
            _ => {}
        }
        assert!(balance >= 0, "the balance went negative: {history}");
    }
    assert_eq!(balance, 0);

    // A retry of a successful withdrawal answers as before and withdraws nothing.
    let (i, original) = &succeeded[0];
    bank.post("/accounts/hot/deposits", json!({"amount": 5}))
        .await;
    let (status, retried) = bank
        .post(
            "/accounts/hot/withdrawals",
            json!({"amount": 1, "commandId": format!("w-{i}")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&retried, original);
    let (_, now) = bank.get("/accounts/hot").await;
    assert_eq!(now["balance"], 5);
    assert_eq!(bank.history_len("hot").await, 1 + 1 + 10 + 1);
}

#[tokio::test]
async fn concurrent_retries_of_one_withdrawal_withdraw_once() {
    let bank = Arc::new(start().await);
    bank.open("a", 10).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let bank = bank.clone();
            tokio::spawn(async move {
                let request = json!({"amount": 4, "commandId": "once"});
                bank.post("/accounts/a/withdrawals", request).await
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["balance"], 6);
    }
    assert_eq!(bank.history_len("a").await, 3);
}

#[tokio::test]
async fn transfers_are_all_or_nothing() {
    let bank = start().await;
    bank.open("from", 50).await;
    bank.open("to", 0).await;

    let (status, body) = bank
        .post(
            "/transfers",
            json!({"from": "from", "to": "to", "amount": 20, "commandId": "t-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["transferId"], "t-1");
    assert_eq!(
        (
            body["from"]["balance"].as_u64(),
            body["to"]["balance"].as_u64()
        ),
        (Some(30), Some(20))
    );
    let (_, from) = bank.get("/accounts/from/history").await;
    let (_, to) = bank.get("/accounts/to/history").await;
    let out = &from["events"][2];
    let into = &to["events"][1];
    assert_eq!(
        (out["eventType"].as_str(), into["eventType"].as_str()),
        (Some("MoneyWithdrawn"), Some("MoneyDeposited"))
    );
    assert_eq!(
        (&out["data"]["transferId"], &into["data"]["transferId"]),
        (&json!("t-1"), &json!("t-1"))
    );
    // One append: adjacent positions.
    let position = |e: &Value| e["position"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(position(into), position(out) + 1);

    // The retry is recognized on both accounts.
    let (status, again) = bank
        .post(
            "/transfers",
            json!({"from": "from", "to": "to", "amount": 20, "commandId": "t-1"}),
        )
        .await;
    assert_eq!((status, &again), (StatusCode::OK, &body));

    // Refused on either side: neither account changes.
    for (request, status, slug) in [
        (
            json!({"from": "from", "to": "to", "amount": 31}),
            422,
            "insufficient-funds",
        ),
        (
            json!({"from": "from", "to": "nobody", "amount": 1}),
            404,
            "account-not-found",
        ),
        (
            json!({"from": "nobody", "to": "to", "amount": 1}),
            404,
            "account-not-found",
        ),
    ] {
        let (got, body) = bank.post("/transfers", request.clone()).await;
        assert_eq!(
            (got.as_u16(), problem_type(&body)),
            (status, slug),
            "{request}"
        );
    }
    assert_eq!(bank.history_len("from").await, 3);
    assert_eq!(bank.history_len("to").await, 2);
    let (_, all) = bank.get("/accounts").await;
    assert_eq!(all["totalBalance"], 50);
}

#[tokio::test]
async fn the_replay_rebuilds_the_read_model_and_holds_commands_meanwhile() {
    let bank = Arc::new(start().await);
    for i in 0..20 {
        bank.open(&format!("r{i}"), 10 + i).await;
    }
    bank.post("/transfers", json!({"from": "r3", "to": "r4", "amount": 5}))
        .await;
    bank.post("/accounts/r5/withdrawals", json!({"amount": 15}))
        .await;
    let (_, live) = bank.get("/accounts").await;

    let replay = {
        let bank = bank.clone();
        tokio::spawn(async move { bank.post("/api/replay-events", json!({})).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = bank.get("/api/replay-events").await;
        if status["running"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The replay holds after its start marker: commands are refused with Retry-After ...
    let response = bank
        .http
        .post(format!("{}/accounts/r1/deposits", bank.url))
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(problem_type(&body), "replay-in-progress");
    let (status, _) = bank
        .post("/accounts", json!({"accountId": "late", "owner": "Eve"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // ... a second replay is refused, and queries still answer from the live model.
    let (status, body) = bank.post("/api/replay-events", json!({})).await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::CONFLICT, "replay-in-progress")
    );
    let (_, during) = bank.get("/accounts").await;
    assert_eq!(during, live);

    bank.replay_hold.add_permits(1);
    let (status, report) = replay.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["readModel"], "balances");
    assert_eq!(report["eventsReplayed"], live["eventsApplied"]);
    let (_, rebuilt) = bank.get("/accounts").await;
    assert_eq!(rebuilt, live);

    // The markers are in the log.
    let markers = bank
        .backend
        .store
        .read_stream(
            &StreamName::new("replays-balances").unwrap(),
            ReadStream::forward(),
        )
        .await
        .unwrap();
    let types: Vec<_> = markers.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["ReplayStarted", "ReplayFinished"]);
    let (_, status) = bank.get("/api/replay-events").await;
    assert_eq!(status["running"], false);
    assert_eq!(status["last"]["eventsReplayed"], report["eventsReplayed"]);

    // Commands work again, and the rebuilt model keeps following the log.
    let (status, body) = bank
        .post("/accounts/r1/deposits", json!({"amount": 1}))
        .await;
    assert_eq!(
        (status, body["balance"].as_u64()),
        (StatusCode::OK, Some(12))
    );
    let (_, after) = bank.get("/accounts/r1").await;
    assert_eq!(after["balance"], 12);
}
