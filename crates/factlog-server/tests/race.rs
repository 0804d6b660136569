//! Concurrent HTTP appends racing on one expected version: exactly one wins each round.

mod common;

use common::{TestServer, new_events};
use serde_json::Value;

const ROUNDS: u64 = 500;
const CONTENDERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_append_wins_each_expected_version() {
    let t = TestServer::start().await;
    let url = t.url("/streams/race-1");
    for round in 0..ROUNDS {
        let expected = match round {
            0 => "no-stream".to_owned(),
            r => (r - 1).to_string(),
        };
        let contenders = (0..CONTENDERS).map(|c| {
            let request = t
                .http
                .post(&url)
                .header("expected-version", &expected)
                .json(&new_events("Raced", c, 1));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let header = response
                    .headers()
                    .get("current-version")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body: Value = response.json().await.unwrap();
                (status, header, body)
            })
        });
        let answers = futures::future::join_all(contenders).await;
        let mut winners = 0;
        for answer in answers {
            let (status, header, body) = answer.unwrap();
            match status {
                201 => {
                    winners += 1;
                    assert_eq!(body["firstVersion"], round, "round {round}: {body}");
                }
                409 => {
                    // The loser was checked after the winner: the stream is at this round's
                    // version.
                    assert_eq!(body["currentVersion"], round, "round {round}: {body}");
                    assert_eq!(header, Some(round.to_string()), "round {round}");
                    assert_eq!(body["expectedVersion"], expected.as_str());
                }
                other => panic!("round {round}: {other} {body}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
    assert_eq!(t.events(), ROUNDS);
    let info = t.get_json("/streams/race-1/info").await;
    assert_eq!(info["eventCount"], ROUNDS);
    assert_eq!(info["lastVersion"], ROUNDS - 1);
    t.stop().await;
}
