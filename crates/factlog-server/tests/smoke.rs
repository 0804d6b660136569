mod common;

use serde_json::{Value, json};

#[tokio::test]
async fn smoke() {
    let t = common::TestServer::start().await;
    let r = t
        .http
        .post(t.url("/streams/account-1"))
        .json(&json!([{"eventType": "Opened", "data": {"owner": "ada"}}]))
        .send()
        .await
        .unwrap();
    println!("{} {:?}", r.status(), r.headers());
    println!("{}", r.text().await.unwrap());
    let r = t
        .http
        .get(t.url("/streams/account-1"))
        .send()
        .await
        .unwrap();
    println!("{}", r.text().await.unwrap());
    let r = t.http.get(t.url("/nope")).send().await.unwrap();
    println!("{} {}", r.status(), r.text().await.unwrap());
    let r = t.http.get(t.url("/metrics")).send().await.unwrap();
    println!("{}", r.text().await.unwrap());
    let r: Value = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap().len());
    std::fs::write(
        "/tmp/openapi.json",
        serde_json::to_string_pretty(&r).unwrap(),
    )
    .unwrap();
    t.stop().await;
}
