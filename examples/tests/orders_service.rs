//! The order service over HTTP on a real socket and the embedded store: the lifecycle, every
//! refused transition, command-id retries, time travel, history, malformed requests and the
//! replay of its read model.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestService, problem_type};
use factlog_examples::orders_service::{OrdersOptions, new_app, router};
use factlog_store::{ExpectedVersion, NewEvent, ReadStream, StreamName, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};

type Shop = TestService;

async fn start() -> Shop {
    common::start(2, |backend, replay_hold| {
        router(new_app(
            backend,
            OrdersOptions {
                replay_hold: Some(replay_hold),
            },
        ))
    })
    .await
}

impl Shop {
    async fn create(&self, id: &str) {
        let (status, body) = self
            .post("/orders", json!({"orderId": id, "customer": "Ada"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn add(&self, id: &str, sku: &str, quantity: i64, unit_price: i64) -> Value {
        let (status, body) = self
            .post(
                &format!("/orders/{id}/items"),
                json!({"sku": sku, "quantity": quantity, "unitPrice": unit_price}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn pay(&self, id: &str, amount: i64) -> Value {
        let (status, body) = self
            .post(&format!("/orders/{id}/payments"), json!({"amount": amount}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn history_len(&self, id: &str) -> usize {
        self.events_at(&format!("/orders/{id}/history")).await
    }
}

#[tokio::test]
async fn the_order_lifecycle() {
    let shop = start().await;
    let (status, body) = shop
        .post("/orders", json!({"orderId": "o1", "customer": "Ada"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"orderId": "o1", "customer": "Ada", "currency": "EUR", "items": [], "total": 0,
               "status": "created", "version": 0})
    );
    let (status, body) = shop
        .post(
            "/orders",
            json!({"orderId": "o2", "customer": "Bob", "currency": "USD"}),
        )
        .await;
    assert_eq!(
        (status, body["currency"].as_str()),
        (StatusCode::CREATED, Some("USD"))
    );

    shop.add("o1", "apple", 2, 250).await;
    let body = shop.add("o1", "pear", 1, 1000).await;
    assert_eq!(
        body,
        json!({"orderId": "o1", "customer": "Ada", "currency": "EUR",
               "items": [{"sku": "apple", "quantity": 2, "unitPrice": 250},
                         {"sku": "pear", "quantity": 1, "unitPrice": 1000}],
               "total": 1500, "status": "created", "version": 2})
    );
    let body = shop.pay("o1", 1500).await;
    assert_eq!(
        (body["status"].as_str(), body["version"].as_u64()),
        (Some("paid"), Some(3))
    );
    let (status, shipped) = shop
        .post("/orders/o1/shipments", json!({"carrier": "DHL"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (shipped["status"].as_str(), shipped["version"].as_u64()),
        (Some("shipped"), Some(4))
    );

    // The read model shows what the command answered (read your writes).
    let (status, body) = shop.get("/orders/o1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, shipped);
    let (status, list) = shop.get("/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!({
            "orders": [
                {"orderId": "o1", "customer": "Ada", "currency": "EUR", "status": "shipped",
                 "total": 1500, "itemCount": 2, "version": 4},
                {"orderId": "o2", "customer": "Bob", "currency": "USD", "status": "created",
                 "total": 0, "itemCount": 0, "version": 0},
            ],
            "eventsApplied": 6,
        })
    );
    let (status, body) = shop.get("/orders/nobody").await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "order-not-found")
    );
}

#[tokio::test]
async fn refused_transitions_are_problems_and_write_nothing() {
    let shop = start().await;
    shop.create("o1").await;

    // Each refusal: the status, the problem type, and an unchanged history.
    async fn refused(shop: &Shop, path: &str, body: Value, status: u16, slug: &str) -> Value {
        let before = shop.history_len("o1").await;
        let response = shop
            .http
            .post(format!("{}{path}", shop.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path} {body}"
        );
        let got = response.status().as_u16();
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            (got, problem_type(&problem)),
            (status, slug),
            "{path} {body}: {problem}"
        );
        assert_eq!(problem["status"], status);
        assert_eq!(shop.history_len("o1").await, before, "{path} {body} wrote");
        problem
    }

    // A created order without items.
    refused(
        &shop,
        "/orders",
        json!({"orderId": "o1", "customer": "Eve"}),
        409,
        "order-exists",
    )
    .await;
    for path in [
        "/orders/nobody/items",
        "/orders/nobody/payments",
        "/orders/nobody/shipments",
    ] {
        let body = json!({"sku": "a", "quantity": 1, "unitPrice": 1});
        let body = match path {
            "/orders/nobody/payments" => json!({"amount": 1}),
            "/orders/nobody/shipments" => json!({"carrier": "DHL"}),
            _ => body,
        };
        refused(&shop, path, body, 404, "order-not-found").await;
    }
    assert_eq!(shop.history_len("nobody").await, 0);
    refused(
        &shop,
        "/orders",
        json!({"orderId": "o9", "customer": "Eve", "currency": "euro"}),
        422,
        "invalid-order",
    )
    .await;
    refused(
        &shop,
        "/orders/o1/payments",
        json!({"amount": 0}),
        422,
        "no-items",
    )
    .await;
    refused(
        &shop,
        "/orders/o1/shipments",
        json!({"carrier": "DHL"}),
        422,
        "order-not-paid",
    )
    .await;
    for (quantity, unit_price) in [(0, 100), (-1, 100), (1, -1), (i64::MAX, i64::MAX)] {
        refused(
            &shop,
            "/orders/o1/items",
            json!({"sku": "apple", "quantity": quantity, "unitPrice": unit_price}),
            422,
            "invalid-item",
        )
        .await;
    }
    refused(
        &shop,
        "/orders/o1/items",
        json!({"sku": "", "quantity": 1, "unitPrice": 1}),
        422,
        "invalid-item",
    )
    .await;

    // With items, not paid.
    shop.add("o1", "apple", 2, 250).await;
    let problem = refused(
        &shop,
        "/orders/o1/payments",
        json!({"amount": 499}),
        422,
        "wrong-amount",
    )
    .await;
    assert_eq!(
        (problem["total"].as_u64(), problem["amount"].as_i64()),
        (Some(500), Some(499))
    );
    refused(
        &shop,
        "/orders/o1/shipments",
        json!({"carrier": "DHL"}),
        422,
        "order-not-paid",
    )
    .await;

    // Paid.
    shop.pay("o1", 500).await;
    refused(
        &shop,
        "/orders/o1/items",
        json!({"sku": "pear", "quantity": 1, "unitPrice": 100}),
        422,
        "order-paid",
    )
    .await;
    refused(
        &shop,
        "/orders/o1/payments",
        json!({"amount": 500}),
        422,
        "order-paid",
    )
    .await;
    refused(
        &shop,
        "/orders/o1/shipments",
        json!({"carrier": " "}),
        422,
        "invalid-carrier",
    )
    .await;

    // Shipped.
    let (status, _) = shop
        .post("/orders/o1/shipments", json!({"carrier": "DHL"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    refused(
        &shop,
        "/orders/o1/shipments",
        json!({"carrier": "UPS"}),
        422,
        "order-shipped",
    )
    .await;
    refused(
        &shop,
        "/orders/o1/items",
        json!({"sku": "pear", "quantity": 1, "unitPrice": 100}),
        422,
        "order-shipped",
    )
    .await;
    refused(
        &shop,
        "/orders/o1/payments",
        json!({"amount": 500}),
        422,
        "order-shipped",
    )
    .await;
    assert_eq!(shop.history_len("o1").await, 4);
    let (_, order) = shop.get("/orders/o1").await;
    assert_eq!(
        (order["status"].as_str(), order["total"].as_u64()),
        (Some("shipped"), Some(500))
    );
}

#[tokio::test]
async fn a_retried_command_id_is_applied_once() {
    let shop = start().await;
    let create = json!({"orderId": "o1", "customer": "Ada", "commandId": "create-o1"});
    let (status, first) = shop.post("/orders", create.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    // The retry answers what the first execution answered, not "order-exists".
    let (status, again) = shop.post("/orders", create).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));

    let item = json!({"sku": "apple", "quantity": 2, "unitPrice": 250, "commandId": "add-1"});
    let (status, first) = shop.post("/orders/o1/items", item.clone()).await;
    assert_eq!(status, StatusCode::OK);
    shop.add("o1", "pear", 1, 100).await;
    // A late retry: the answer is the state right after the first execution.
    let (status, again) = shop.post("/orders/o1/items", item).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    assert_eq!(shop.history_len("o1").await, 3);

    let pay = json!({"amount": 600, "commandId": "pay-1"});
    for _ in 0..3 {
        let (status, body) = shop.post("/orders/o1/payments", pay.clone()).await;
        assert_eq!(
            (status, body["status"].as_str(), body["version"].as_u64()),
            (StatusCode::OK, Some("paid"), Some(3))
        );
    }
    assert_eq!(shop.history_len("o1").await, 4);
    let (_, order) = shop.get("/orders/o1").await;
    assert_eq!(
        (order["total"].as_u64(), order["version"].as_u64()),
        (Some(600), Some(3))
    );

    // A command id that cannot be one is a bad request.
    let (status, body) = shop
        .post(
            "/orders/o1/shipments",
            json!({"carrier": "DHL", "commandId": ""}),
        )
        .await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::BAD_REQUEST, "invalid-request")
    );
    assert_eq!(shop.history_len("o1").await, 4);
}

/// Now, to the microsecond, once the next millisecond has begun: every event recorded so far is
/// at or before it, and every event recorded later is in a later millisecond.
async fn a_moment_between_commands() -> Timestamp {
    let now = Timestamp::now();
    let next_millisecond = Timestamp::from_unix_micros((now.unix_micros() / 1000 + 1) * 1000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while Timestamp::now() < next_millisecond {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the clock stands still"
        );
        tokio::task::yield_now().await;
    }
    now
}

/// RFC 3339 with all six digits of the microseconds, so that the service takes it exactly.
fn rfc3339_micros(t: Timestamp) -> String {
    let millis = t.to_rfc3339_millis();
    let micros = t.unix_micros().rem_euclid(1000);
    format!("{}{micros:03}Z", millis.trim_end_matches('Z'))
}

#[tokio::test]
async fn time_travel_by_version_and_time() {
    let shop = start().await;
    let before_creation = rfc3339_micros(a_moment_between_commands().await);
    shop.create("o1").await;
    shop.add("o1", "apple", 2, 250).await;
    let after_first_item = rfc3339_micros(a_moment_between_commands().await);
    shop.add("o1", "pear", 1, 1000).await;
    shop.pay("o1", 1500).await;

    let (status, body) = shop.get("/orders/o1?version=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"orderId": "o1", "customer": "Ada", "currency": "EUR", "items": [], "total": 0,
               "status": "created", "version": 0})
    );
    let (_, body) = shop.get("/orders/o1?version=2").await;
    assert_eq!(
        (body["total"].as_u64(), body["status"].as_str()),
        (Some(1500), Some("created"))
    );
    let (_, body) = shop.get("/orders/o1?version=3").await;
    assert_eq!(body["status"], "paid");

    let (status, body) = shop
        .get(&format!("/orders/o1?asOf={after_first_item}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["version"].as_u64(), body["total"].as_u64()),
        (Some(1), Some(500)),
        "as of {after_first_item}: {body}"
    );
    // A time with milliseconds means the end of that millisecond: "as of an event's
    // recordedAt" includes that event.
    let (_, history) = shop.get("/orders/o1/history").await;
    let recorded_at = history["events"][1]["recordedAt"].as_str().unwrap();
    let (_, body) = shop.get(&format!("/orders/o1?asOf={recorded_at}")).await;
    assert_eq!(body["version"], 1, "as of {recorded_at}: {body}");
    let (status, body) = shop
        .get(&format!("/orders/o1?asOf={before_creation}"))
        .await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "order-not-found")
    );

    for (query, status, slug) in [
        ("version=4", 404, "version-not-found"),
        (
            "version=0&asOf=2000-01-01T00:00:00Z",
            400,
            "invalid-request",
        ),
        ("asOf=yesterday", 400, "invalid-request"),
        ("version=-1", 400, "invalid-request"),
        ("colour=red", 400, "invalid-request"),
    ] {
        let (got, body) = shop.get(&format!("/orders/o1?{query}")).await;
        assert_eq!(
            (got.as_u16(), problem_type(&body)),
            (status, slug),
            "{query}"
        );
    }
    // The present is unchanged by the travels.
    let (_, body) = shop.get("/orders/o1").await;
    assert_eq!(
        (body["version"].as_u64(), body["status"].as_str()),
        (Some(3), Some("paid"))
    );
}

#[tokio::test]
async fn the_history_of_an_order() {
    let shop = start().await;
    let response = shop
        .http
        .post(format!("{}/orders", shop.url))
        .header("x-correlation-id", "checkout-7")
        .json(&json!({"orderId": "o1", "customer": "Ada", "commandId": "create-o1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    shop.add("o1", "apple", 2, 250).await;
    shop.pay("o1", 500).await;
    shop.post("/orders/o1/shipments", json!({"carrier": "DHL"}))
        .await;

    let (status, history) = shop.get("/orders/o1/history").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history["orderId"], "o1");
    let events = history["events"].as_array().unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["version"].as_u64().unwrap(),
                e["eventType"].as_str().unwrap(),
                e["schemaVersion"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, "OrderCreated", 2),
            (1, "ItemAdded", 1),
            (2, "PaymentCaptured", 1),
            (3, "OrderShipped", 1),
        ]
    );
    assert_eq!(
        events[0]["data"],
        json!({"orderId": "o1", "customer": "Ada", "currency": "EUR"})
    );
    assert_eq!(events[2]["data"], json!({"amount": 500}));
    assert_eq!(events[0]["metadata"]["commandId"], "create-o1");
    assert_eq!(events[0]["metadata"]["correlationId"], "checkout-7");
    assert!(events[0]["recordedAt"].as_str().unwrap().ends_with('Z'));

    let (_, page) = shop.get("/orders/o1/history?from=1&limit=2").await;
    let versions: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2]);
    let (status, body) = shop.get("/orders/nobody/history").await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "order-not-found")
    );
    let (status, _) = shop.get("/orders/o1/history?limit=many").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    let shop = start().await;
    shop.create("o1").await;
    let json = Some("application/json");
    for (path, content_type, body, status) in [
        ("/orders/o1/items", json, "{not json", 400),
        ("/orders/o1/items", json, "", 400),
        (
            "/orders/o1/items",
            json,
            r#"{"sku": "a", "quantity": 1}"#,
            422,
        ),
        (
            "/orders/o1/items",
            json,
            r#"{"sku": "a", "quantity": "two", "unitPrice": 1}"#,
            422,
        ),
        (
            "/orders/o1/items",
            json,
            r#"{"sku": "a", "quantity": 1.5, "unitPrice": 1}"#,
            422,
        ),
        (
            "/orders/o1/items",
            json,
            r#"{"sku": "a", "quantity": 1, "unitPrice": 1, "colour": "red"}"#,
            422,
        ),
        ("/orders/o1/payments", json, r#"{"amount": "500"}"#, 422),
        ("/orders/o1/payments", json, r#"[500]"#, 422),
        ("/orders/o1/shipments", json, r#"{}"#, 422),
        ("/orders", json, r#"{"orderId": "o2"}"#, 422),
        (
            "/orders",
            Some("text/plain"),
            r#"{"orderId": "o2", "customer": "Ada"}"#,
            415,
        ),
        (
            "/orders",
            None,
            r#"{"orderId": "o2", "customer": "Ada"}"#,
            415,
        ),
    ] {
        let got = shop.post_raw(path, content_type, body).await;
        assert_eq!(got.as_u16(), status, "{path} {content_type:?} {body}");
    }
    let (status, body) = shop
        .post(
            "/orders",
            json!({"orderId": "bad\u{1}id", "customer": "Ada"}),
        )
        .await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::BAD_REQUEST, "invalid-id")
    );
    assert_eq!(shop.history_len("o1").await, 1);
    let (_, list) = shop.get("/orders").await;
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_order_written_at_schema_v1_is_served_in_euros() {
    let shop = start().await;
    let created = NewEvent::json(
        "OrderCreated",
        &json!({"orderId": "old", "customer": "Grace"}),
    )
    .unwrap()
    .with_schema_version(1);
    let result = shop
        .backend
        .store
        .append(
            &StreamName::new("order-old").unwrap(),
            ExpectedVersion::NoStream,
            vec![created],
        )
        .await
        .unwrap();
    assert_eq!(result.last_version, 0);

    // The write side reads it (the item is accepted) and so does the read model.
    let body = shop.add("old", "apple", 1, 100).await;
    assert_eq!(
        (body["currency"].as_str(), body["version"].as_u64()),
        (Some("EUR"), Some(1))
    );
    let (_, body) = shop.get("/orders/old").await;
    assert_eq!(
        (body["currency"].as_str(), body["customer"].as_str()),
        (Some("EUR"), Some("Grace"))
    );
    let (_, body) = shop.get("/orders/old?version=0").await;
    assert_eq!(body["currency"], "EUR");
    let (_, history) = shop.get("/orders/old/history").await;
    assert_eq!(history["events"][0]["schemaVersion"], 1);
}

#[tokio::test]
async fn the_replay_rebuilds_the_read_model() {
    let shop = Arc::new(start().await);
    for i in 0..12 {
        let id = format!("r{i}");
        shop.create(&id).await;
        if i % 3 == 0 {
            continue;
        }
        shop.add(&id, "apple", i, 100).await;
        if i % 3 == 2 {
            shop.pay(&id, i * 100).await;
            if i % 2 == 0 {
                shop.post(
                    &format!("/orders/{id}/shipments"),
                    json!({"carrier": "DHL"}),
                )
                .await;
            }
        }
    }
    let (_, live) = shop.get("/orders").await;
    let statuses: Vec<_> = live["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    for status in ["created", "paid", "shipped"] {
        assert!(statuses.contains(&status), "{live}");
    }

    let replay = {
        let shop = shop.clone();
        tokio::spawn(async move { shop.post("/api/replay-events", json!({})).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = shop.get("/api/replay-events").await;
        if status["running"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Held open after its start marker: commands are refused, queries answer the live model.
    let response = shop
        .http
        .post(format!("{}/orders/r1/payments", shop.url))
        .json(&json!({"amount": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(problem_type(&body), "replay-in-progress");
    let (status, body) = shop.post("/api/replay-events", json!({})).await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::CONFLICT, "replay-in-progress")
    );
    let (_, during) = shop.get("/orders").await;
    assert_eq!(during, live);

    shop.replay_hold.add_permits(1);
    let (status, report) = replay.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["readModel"], "orders");
    assert_eq!(report["eventsReplayed"], live["eventsApplied"]);
    let (_, rebuilt) = shop.get("/orders").await;
    assert_eq!(rebuilt, live);

    let markers = shop
        .backend
        .store
        .read_stream(
            &StreamName::new("replays-orders").unwrap(),
            ReadStream::forward(),
        )
        .await
        .unwrap();
    let types: Vec<_> = markers.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["ReplayStarted", "ReplayFinished"]);
    let (_, status) = shop.get("/api/replay-events").await;
    assert_eq!(
        (&status["running"], &status["last"]["eventsReplayed"]),
        (&json!(false), &report["eventsReplayed"])
    );

    // Commands work again, and the rebuilt model keeps following the log.
    let body = shop.pay("r1", 100).await;
    assert_eq!(body["status"], "paid");
    let (_, after) = shop.get("/orders/r1").await;
    assert_eq!(
        (after["status"].as_str(), after["version"].as_u64()),
        (Some("paid"), Some(2))
    );
}
