//! Cases for optimistic concurrency under contention: of concurrent appends with the same
//! expectation, exactly one wins and every other gets `WrongExpectedVersion` carrying the
//! winner's new version. Run for many rounds, because a broken check-then-write usually loses
//! only once in hundreds of tries.

use std::sync::Arc;

use factlog_store::{
    AppendError, AppendResult, EventStore, ExpectedVersion, NewEvent, StreamAppend, StreamName,
    Version,
};
use tokio::sync::Barrier;

use crate::Backend;
use crate::support::{
    assert_append_stored, co_partitioned, events, read_all_events, stream, within,
};

const WRITERS: usize = 8;

fn expectation(current: Option<Version>) -> ExpectedVersion {
    current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
}

/// What one writer sent and got back in one round.
type Outcome<T> = (usize, Vec<StreamAppend>, Result<T, AppendError>);

/// Runs one round: every writer waits at a barrier, then calls `append` with its parts.
async fn round<S, T, F, Fut>(
    store: &Arc<S>,
    parts_of: impl Fn(usize) -> Vec<StreamAppend>,
    append: F,
) -> Vec<Outcome<T>>
where
    S: EventStore,
    T: Send + 'static,
    F: Fn(Arc<S>, Vec<StreamAppend>) -> Fut,
    Fut: std::future::Future<Output = Result<T, AppendError>> + Send + 'static,
{
    // The barrier releases all writers together, so their appends really overlap instead of
    // running one after another as the tasks happen to be scheduled.
    let barrier = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let parts = parts_of(w);
            let barrier = barrier.clone();
            let call = append(store.clone(), parts.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                (w, parts, call.await)
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(WRITERS);
    for task in tasks {
        outcomes.push(
            within("a racing writer", task)
                .await
                .expect("a racing writer panicked"),
        );
    }
    outcomes
}

/// `WRITERS` tasks append to one stream with the same expectation (`NoStream` in round 0, then
/// `Exact(last)`), for `rounds` rounds: each round exactly one wins, and every loser gets
/// `WrongExpectedVersion` with the winner's last version; nothing of the losers is stored.
pub async fn concurrent_writers_one_winner<B: Backend>(b: &B, rounds: usize) {
    let store = b.open().await;
    let s = stream("race-1");
    let mut current: Option<Version> = None;
    let mut winners: Vec<(Vec<NewEvent>, AppendResult)> = Vec::new();
    for r in 0..rounds {
        let expected = expectation(current);
        let parts_of = |w: usize| {
            // Writers append different numbers of events, so the winner's identity shows in the
            // versions the losers are told about.
            let n = (r * WRITERS + w) as u64 * 10;
            vec![StreamAppend {
                stream: s.clone(),
                expected,
                events: events("Race", n, 1 + w as u64 % 3),
            }]
        };
        let outcomes = round(&store, parts_of, |store, mut parts| async move {
            let part = parts.pop().expect("one part");
            store.append(&part.stream, part.expected, part.events).await
        })
        .await;
        let (won, lost): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(|(_, _, o)| o.is_ok());
        assert_eq!(
            won.len(),
            1,
            "round {r}: exactly one of {WRITERS} writers expecting {expected} must win; winners: {:?}",
            won.iter().map(|(w, _, o)| (w, o)).collect::<Vec<_>>()
        );
        let (_, parts, result) = won.into_iter().next().expect("one winner");
        let result = result.expect("the winner succeeded");
        let count = parts[0].events.len() as u64;
        let first = current.map_or(0, |v| v + 1);
        assert_eq!(
            (result.first_version, result.last_version),
            (first, first + count - 1),
            "round {r}: the winner's versions follow the expected version {expected}"
        );
        for (w, _, outcome) in lost {
            let err = outcome.expect_err("partitioned as lost");
            assert_eq!(
                err,
                AppendError::WrongExpectedVersion {
                    stream: s.clone(),
                    expected,
                    current: Some(result.last_version)
                },
                "round {r}: writer {w} lost and must be told the winner's version"
            );
        }
        current = Some(result.last_version);
        winners.push((parts.into_iter().next().expect("one part").events, result));
    }

    let all = read_all_events(&*store).await;
    let total: u64 = winners.iter().map(|(new, _)| new.len() as u64).sum();
    assert_eq!(
        all.len() as u64,
        total,
        "only the winners' events are stored"
    );
    for (r, (new, result)) in winners.iter().enumerate() {
        assert_append_stored(
            &all,
            &s,
            new,
            result,
            &format!("round {r}: the winner's events"),
        );
    }
    if let Some(last) = current {
        let info = store
            .stream_info(&s)
            .await
            .expect("stream_info")
            .expect("the stream exists");
        assert_eq!(
            (info.last_version, info.event_count),
            (last, total),
            "stream_info after the races"
        );
    }
}

/// Like [`concurrent_writers_one_winner`] for multi-stream appends over two streams (half the
/// writers list the parts in the other order): exactly one wins each round, and every loser gets
/// `WrongExpectedVersion` naming one of the two streams with the winner's version for it. The
/// API does not say which stream a loser is told about when both expectations fail.
pub async fn concurrent_multi_stream_writers_one_winner<B: Backend>(b: &B, rounds: usize) {
    let store = b.open().await;
    let x = stream("race-x");
    let [y] = co_partitioned(&*store, &x, ["race-y"]).await;
    let mut current: [Option<Version>; 2] = [None, None];
    let mut winners: Vec<(StreamName, Vec<NewEvent>, AppendResult)> = Vec::new();
    for r in 0..rounds {
        let expected = current.map(expectation);
        let parts_of = |w: usize| {
            let n = (r * WRITERS + w) as u64 * 10;
            let px = StreamAppend {
                stream: x.clone(),
                expected: expected[0],
                events: events("RaceX", n, 1 + w as u64 % 2),
            };
            let py = StreamAppend {
                stream: y.clone(),
                expected: expected[1],
                events: events("RaceY", n + 5, 1 + w as u64 % 3),
            };
            if w.is_multiple_of(2) {
                vec![px, py]
            } else {
                vec![py, px]
            }
        };
        let outcomes = round(&store, parts_of, |store, parts| async move {
            store.append_multi(parts).await
        })
        .await;
        let (won, lost): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(|(_, _, o)| o.is_ok());
        assert_eq!(
            won.len(),
            1,
            "round {r}: exactly one of {WRITERS} multi-stream writers must win"
        );
        let (_, parts, results) = won.into_iter().next().expect("one winner");
        let results = results.expect("the winner succeeded");
        assert_eq!(results.len(), 2, "round {r}: one result per part");
        let mut new_current = current;
        for (part, result) in parts.iter().zip(&results) {
            let i = usize::from(part.stream == y);
            let first = current[i].map_or(0, |v| v + 1);
            assert_eq!(
                (result.first_version, result.last_version),
                (first, first + part.events.len() as u64 - 1),
                "round {r}: the winner's versions in {}",
                part.stream
            );
            new_current[i] = Some(result.last_version);
            winners.push((part.stream.clone(), part.events.clone(), *result));
        }
        for (w, _, outcome) in lost {
            match outcome.expect_err("partitioned as lost") {
                AppendError::WrongExpectedVersion {
                    stream,
                    expected: e,
                    current: c,
                } => {
                    let i = if stream == x {
                        0
                    } else {
                        assert_eq!(
                            stream, y,
                            "round {r}: writer {w} was refused for a stream it did not write"
                        );
                        1
                    };
                    assert_eq!(
                        e, expected[i],
                        "round {r}: writer {w}: the refused expectation"
                    );
                    assert_eq!(
                        c, new_current[i],
                        "round {r}: writer {w} must be told the winner's version of {stream}"
                    );
                }
                other => panic!(
                    "round {r}: writer {w} lost with {other:?} instead of WrongExpectedVersion"
                ),
            }
        }
        current = new_current;
    }

    let all = read_all_events(&*store).await;
    let total: usize = winners.iter().map(|(_, new, _)| new.len()).sum();
    assert_eq!(
        all.len(),
        total,
        "only the winners' events are stored, all of every winner"
    );
    for (s, new, result) in &winners {
        assert_append_stored(&all, s, new, result, "a winner's part");
    }
}
