//! Model-based test: random sequences of appends, multi-stream appends, idempotent retries and
//! reopens run against the embedded store and against the in-memory `ModelStore`; every result
//! and, after each step, every read must agree. Tiny segments make the sequences cross segment
//! boundaries; reopening sometimes loses the index snapshot to force a rebuild.

mod common;

use common::*;
use factlog_conformance::{Limits, model::ModelStore};
use factlog_log::{EmbeddedStore, Options, SNAPSHOT_FILE};
use factlog_store::{
    AppendError, EventFilter, EventId, EventStore, ExpectedVersion, ListStreams, NewEvent, ReadAll,
    ReadStream, RecordedEvent, StreamAppend,
};
use proptest::prelude::*;

const STREAMS: [&str; 4] = ["acct-1", "acct-2", "order-1", "order-2"];

#[derive(Debug, Clone)]
enum Op {
    /// Append to `stream` with `expected`; events take ids from the pool (`Some`) or fresh ones.
    Append {
        stream: usize,
        expected: ExpectedVersion,
        ids: Vec<Option<u8>>,
    },
    /// Two streams at once.
    Multi {
        a: usize,
        b: usize,
        expected_a: ExpectedVersion,
        ids: Vec<u8>,
    },
    /// Send an earlier append again, unchanged.
    Retry(usize),
    Reopen {
        lose_snapshot: bool,
    },
}

fn expected() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        Just(ExpectedVersion::Any),
        Just(ExpectedVersion::NoStream),
        Just(ExpectedVersion::StreamExists),
        (0u64..5).prop_map(ExpectedVersion::Exact),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..STREAMS.len(), expected(), proptest::collection::vec(proptest::option::of(0u8..12), 1..4))
            .prop_map(|(stream, expected, ids)| Op::Append { stream, expected, ids }),
        2 => (0..STREAMS.len(), 0..STREAMS.len(), expected(), proptest::collection::vec(0u8..12, 2..3))
            .prop_map(|(a, b, expected_a, ids)| Op::Multi { a, b, expected_a, ids }),
        2 => (0usize..20).prop_map(Op::Retry),
        1 => any::<bool>().prop_map(|lose_snapshot| Op::Reopen { lose_snapshot }),
    ]
}

fn options() -> Options {
    Options {
        segment_bytes_max: 4096,
        ..Options::default()
    }
}

fn new_event(id: Option<u8>, n: usize) -> NewEvent {
    let e = event(
        if n.is_multiple_of(2) { "Even" } else { "Odd" },
        n as u64,
        20,
    );
    match id {
        Some(i) => e.with_id(EventId::from_bytes([i + 1; 16])),
        None => e,
    }
}

/// What both stores must agree on in an event: everything but when it was recorded.
fn content(events: &[RecordedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{}@{} #{} {} {} {:?} {:?}",
                e.stream,
                e.version,
                e.position.raw(),
                e.id,
                e.event_type,
                e.data,
                e.metadata
            )
        })
        .collect()
}

fn outcome(r: &Result<Vec<factlog_store::AppendResult>, AppendError>) -> String {
    match r {
        Ok(results) => format!("{results:?}"),
        // The variant and its fields, except free-text details.
        Err(AppendError::IdempotencyConflict { event_id, .. }) => format!("conflict {event_id}"),
        Err(e) => format!("{e:?}"),
    }
}

/// Every read the test compares, rendered as lines.
async fn reads(s: &dyn EventStore) -> Vec<String> {
    let mut out = vec!["$all".to_owned()];
    out.extend(content(
        &s.read_all(ReadAll::forward().limit(100_000)).await.unwrap(),
    ));
    out.push("$all backward, 7".into());
    out.extend(content(
        &s.read_all(ReadAll::backward().limit(7)).await.unwrap(),
    ));
    out.push("$all of type Odd".into());
    let odd = EventFilter {
        event_types: vec!["Odd".into()],
        ..Default::default()
    };
    out.extend(content(
        &s.read_all(ReadAll::forward().filter(odd)).await.unwrap(),
    ));
    for name in STREAMS {
        let st = stream(name);
        out.push(format!("{name} backward"));
        match s.read_stream(&st, ReadStream::backward()).await {
            Ok(events) => out.extend(content(&events)),
            Err(e) => out.push(format!("{e:?}")),
        }
        let info = s.stream_info(&st).await.unwrap();
        out.push(format!(
            "{:?}",
            info.map(|i| (i.last_version, i.event_count))
        ));
    }
    let streams = s.list_streams(ListStreams::default()).await.unwrap();
    out.push(format!("streams {:?}", streams.streams));
    out.push(format!("categories {:?}", s.categories().await.unwrap()));
    out.push(format!("end {:?}", s.end_position().await.unwrap()));
    out
}

async fn compare(store: &EmbeddedStore, model: &ModelStore, step: usize) {
    assert_eq!(
        reads(store).await,
        reads(model).await,
        "step {step}: reads differ"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let mut store = EmbeddedStore::open(dir.path(), options()).unwrap();
            let model = ModelStore::new(Limits {
                event_size_bytes_max: options().event_size_bytes_max,
                append_events_max: options().append_events_max,
            });
            let mut sent: Vec<Vec<StreamAppend>> = Vec::new();
            let mut n = 0;
            for (step, op) in ops.into_iter().enumerate() {
                let appends = match op {
                    Op::Reopen { lose_snapshot } => {
                        drop(store);
                        if lose_snapshot {
                            let _ = std::fs::remove_file(dir.path().join(SNAPSHOT_FILE));
                        }
                        store = EmbeddedStore::open(dir.path(), options()).unwrap();
                        compare(&store, &model, step).await;
                        continue;
                    }
                    Op::Retry(i) => match sent.get(i) {
                        Some(appends) => appends.clone(),
                        None => continue,
                    },
                    Op::Append { stream: s, expected, ids } => vec![StreamAppend {
                        stream: stream(STREAMS[s]),
                        expected,
                        events: ids.iter().map(|&id| { n += 1; new_event(id, n) }).collect(),
                    }],
                    Op::Multi { a, b, expected_a, ids } => vec![
                        StreamAppend {
                            stream: stream(STREAMS[a]),
                            expected: expected_a,
                            events: vec![{ n += 1; new_event(Some(ids[0]), n) }],
                        },
                        StreamAppend {
                            stream: stream(STREAMS[b]),
                            expected: ExpectedVersion::Any,
                            events: vec![{ n += 1; new_event(Some(ids[1]), n) }],
                        },
                    ],
                };
                // Fresh ids are filled in by each store; give both the same ones.
                let appends: Vec<StreamAppend> = appends
                    .into_iter()
                    .map(|mut a| {
                        for e in &mut a.events {
                            e.id.get_or_insert_with(EventId::new_v7);
                        }
                        a
                    })
                    .collect();
                sent.push(appends.clone());
                let got = store.append_multi(appends.clone()).await;
                let want = model.append_multi(appends).await;
                assert_eq!(outcome(&got), outcome(&want), "step {step}: append");
                compare(&store, &model, step).await;
            }
        });
    }
}
