//! Bearer tokens and roles: every route against no token, a wrong token and each role; and the
//! refusal to listen beyond loopback without tokens.

mod common;

use std::sync::Arc;

use common::{TestServer, expect_problem, new_events};
use factlog_api::ProblemKind;
use factlog_log::{EmbeddedStore, Options};
use factlog_server::{Backend, Config, Role, Secret, Server, StartError, TokenConfig};
use reqwest::Method;
use serde_json::{Value, json};

const READ_TOKEN: &str = "read-token-0123456789";
const WRITE_TOKEN: &str = "write-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";
/// The event the role matrix reads by id (stored before the matrix runs).
const EVENT_PATH: &str = "/events/0190a5a0-0000-7000-8000-00000000a17e";

fn tokens() -> Vec<TokenConfig> {
    [
        ("reader", Role::Read, READ_TOKEN),
        ("writer", Role::Write, WRITE_TOKEN),
        ("operator", Role::Admin, ADMIN_TOKEN),
    ]
    .into_iter()
    .map(|(name, role, token)| TokenConfig {
        name: Some(name.into()),
        role,
        token: Secret::new(token),
    })
    .collect()
}

/// A route, what it needs, and what it answers once allowed.
struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    /// `None`: open to everyone.
    role: Option<Role>,
    /// The status once authorized.
    allowed: u16,
    /// Events an allowed call writes.
    writes: u64,
}

fn routes() -> Vec<Route> {
    let route = |method: Method, path, role, allowed| Route {
        method,
        path,
        body: None,
        role,
        allowed,
        writes: 0,
    };
    vec![
        route(Method::GET, "/health", None, 200),
        route(Method::GET, "/ready", None, 200),
        route(Method::GET, "/openapi.json", None, 200),
        Route {
            body: Some(new_events("E", 0, 1)),
            writes: 1,
            ..route(Method::POST, "/streams/auth-1", Some(Role::Write), 201)
        },
        Route {
            body: Some(json!([
                {"stream": "auth-1", "events": new_events("E", 0, 1)},
                {"stream": "auth-2", "events": new_events("E", 0, 1)},
            ])),
            writes: 2,
            ..route(Method::POST, "/append", Some(Role::Write), 201)
        },
        route(Method::GET, "/streams/auth-1", Some(Role::Read), 200),
        route(Method::GET, "/streams/auth-1/0", Some(Role::Read), 200),
        route(Method::GET, EVENT_PATH, Some(Role::Read), 200),
        route(Method::GET, "/streams/auth-1/info", Some(Role::Read), 200),
        route(Method::GET, "/streams", Some(Role::Read), 200),
        route(Method::GET, "/categories", Some(Role::Read), 200),
        route(Method::GET, "/all", Some(Role::Read), 200),
        route(Method::GET, "/subscribe/all", Some(Role::Read), 200),
        route(
            Method::GET,
            "/subscribe/streams/auth-1",
            Some(Role::Read),
            200,
        ),
        route(Method::GET, "/metrics", Some(Role::Read), 200),
        route(Method::GET, "/admin/stats", Some(Role::Admin), 200),
        Route {
            body: Some(json!({"name": "auth-backup"})),
            ..route(Method::POST, "/admin/backup", Some(Role::Admin), 201)
        },
    ]
}

#[tokio::test]
async fn every_route_against_every_role() {
    let backups = tempfile::tempdir().unwrap();
    let t = TestServer::with_config(Config {
        tokens: tokens(),
        backup_dir: Some(backups.path().to_owned()),
        ..Config::default()
    })
    .await;
    // Something to read, also by id.
    let response = t
        .http
        .post(t.url("/streams/auth-1"))
        .bearer_auth(WRITE_TOKEN)
        .json(&json!([{
            "eventId": EVENT_PATH.trim_start_matches("/events/"),
            "eventType": "E",
            "data": {"n": 0},
        }]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let callers: [(&str, Option<&str>, Option<Role>); 5] = [
        ("no token", None, None),
        ("a wrong token", Some("not-a-token"), None),
        ("read", Some(READ_TOKEN), Some(Role::Read)),
        ("write", Some(WRITE_TOKEN), Some(Role::Write)),
        ("admin", Some(ADMIN_TOKEN), Some(Role::Admin)),
    ];
    let mut covered = 0;
    for route in routes() {
        for (caller, token, role) in callers {
            let what = format!("{} {} with {caller}", route.method, route.path);
            let mut request = t.http.request(route.method.clone(), t.url(route.path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &route.body {
                request = request.json(body);
            }
            let before = t.events();
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            match (route.role, role) {
                (None, _) => assert_eq!(status, route.allowed, "{what}"),
                (Some(_), None) => {
                    let challenge = response
                        .headers()
                        .get("www-authenticate")
                        .map(|v| v.to_str().unwrap().to_owned());
                    expect_problem(response, ProblemKind::Unauthorized).await;
                    let challenge = challenge.unwrap_or_else(|| panic!("{what}: no challenge"));
                    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
                }
                (Some(required), Some(role)) if role < required => {
                    let body = expect_problem(response, ProblemKind::Forbidden).await;
                    assert_eq!(body["requiredRole"], required.to_string(), "{what}");
                    assert_eq!(body["role"], role.to_string(), "{what}");
                }
                (Some(_), Some(_)) => {
                    let event_stream = response
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v == "text/event-stream");
                    assert_eq!(status, route.allowed, "{what}");
                    if route.path.starts_with("/subscribe/") {
                        assert!(event_stream, "{what}");
                    }
                }
            }
            // Refused writes write nothing; allowed ones write what they should.
            let wrote = if status == 201 { route.writes } else { 0 };
            assert_eq!(t.events(), before + wrote, "{what}");
            covered += 1;
        }
    }
    assert_eq!(covered, routes().len() * callers.len());

    // A refused request is refused before its input is looked at: no token and a bad body
    // is still 401, and nothing is written.
    let before = t.events();
    let response = t
        .http
        .post(t.url("/streams/%24all"))
        .body("not json")
        .send()
        .await
        .unwrap();
    expect_problem(response, ProblemKind::Unauthorized).await;
    // Unknown routes and wrong methods say nothing without a token either.
    expect_problem(t.get("/nope").await, ProblemKind::Unauthorized).await;
    let response = t
        .http
        .delete(t.url("/streams/auth-1"))
        .send()
        .await
        .unwrap();
    expect_problem(response, ProblemKind::Unauthorized).await;
    assert_eq!(t.events(), before);
    t.stop().await;
}

#[tokio::test]
async fn authorization_headers_that_are_not_a_valid_bearer_token_are_401() {
    let t = TestServer::with_config(Config {
        tokens: tokens(),
        ..Config::default()
    })
    .await;
    for header in [
        format!("Basic {READ_TOKEN}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        READ_TOKEN.to_owned(),
        format!("Bearer {READ_TOKEN}x"),
        format!("Bearer {}", &READ_TOKEN[..READ_TOKEN.len() - 1]),
        format!("Bearer {}", READ_TOKEN.to_uppercase()),
    ] {
        let response = t
            .http
            .get(t.url("/all"))
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        assert!(response.headers().contains_key("www-authenticate"));
        expect_problem(response, ProblemKind::Unauthorized).await;
    }
    // The scheme is case-insensitive.
    let response = t
        .http
        .get(t.url("/all"))
        .header("authorization", format!("bearer {READ_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    t.stop().await;
}

async fn open_store() -> (tempfile::TempDir, Arc<EmbeddedStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), Options::default()).unwrap());
    (dir, store)
}

#[tokio::test]
async fn listening_beyond_loopback_needs_tokens_or_insecure() {
    let (_dir, store) = open_store().await;
    let everywhere = "0.0.0.0:0".parse().unwrap();
    let config = Config {
        listen: everywhere,
        ..Config::default()
    };
    let error = Server::start(config.clone(), Backend::embedded(store.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StartError::InsecureBind(addr) if addr == everywhere),
        "{error:?}"
    );
    assert!(error.to_string().contains("--insecure"), "{error}");

    // With `insecure`, it starts (and answers on loopback, which 0.0.0.0 includes).
    let server = Server::start(
        Config {
            insecure: true,
            ..config.clone()
        },
        Backend::embedded(store.clone()),
    )
    .await
    .unwrap();
    let port = server.local_addr().port();
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.shutdown().await;

    // With tokens, it starts, and asks for them.
    let server = Server::start(
        Config {
            tokens: tokens(),
            ..config
        },
        Backend::embedded(store.clone()),
    )
    .await
    .unwrap();
    let port = server.local_addr().port();
    let all = reqwest::get(format!("http://127.0.0.1:{port}/all"))
        .await
        .unwrap();
    assert_eq!(all.status(), 401);
    server.shutdown().await;
    store.close();
}
