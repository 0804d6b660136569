//! Property: for random command sequences, loading with snapshots equals a full replay, and
//! time travel to each version equals the state recorded at that version.

mod common;

use std::sync::Arc;

use common::{Stock, StockCommand, open_store};
use factlog_aggregate::{At, InMemorySnapshots, Outcome, Repository, SnapshotPolicy};
use proptest::prelude::*;

fn command() -> impl Strategy<Value = StockCommand> {
    prop_oneof![
        (0u64..20).prop_map(StockCommand::Receive),
        (0u64..30).prop_map(StockCommand::Ship),
        Just(StockCommand::Count),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn snapshots_and_time_travel_agree_with_a_full_replay(
        commands in proptest::collection::vec(command(), 1..60),
        every in 1u64..8,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let store = open_store(dir.path());
            let snapshots = Arc::new(InMemorySnapshots::new());
            let with_snapshots = Repository::<Stock>::new(store.clone())
                .with_snapshots(snapshots.clone(), SnapshotPolicy::EveryEvents(every));
            let replay = Repository::<Stock>::new(store.clone());

            // The state right after each version, as the command that wrote it saw it.
            let mut recorded = Vec::new();
            for command in &commands {
                match with_snapshots.execute("s", command.clone()).await {
                    Ok(executed) => {
                        if let Outcome::Applied(result) = executed.outcome {
                            prop_assert_eq!(result.last_version, recorded.len() as u64);
                            recorded.push(executed.state.clone());
                        }
                    }
                    Err(e) => prop_assert!(e.rejected().is_some(), "{e}"),
                }
                let snap = with_snapshots.load("s").await.unwrap();
                let full = replay.load("s").await.unwrap();
                prop_assert_eq!(&snap.state, &full.state);
                prop_assert_eq!(snap.version, full.version);
            }
            if !recorded.is_empty() {
                prop_assert!(!snapshots.is_empty() || every as usize > recorded.len());
            }
            for (version, state) in recorded.iter().enumerate() {
                let at = with_snapshots.load_at("s", At::Version(version as u64)).await.unwrap();
                prop_assert_eq!(&at.state, state, "version {}", version);
                let at = replay.load_at("s", At::Version(version as u64)).await.unwrap();
                prop_assert_eq!(&at.state, state, "version {} without snapshots", version);
            }
            Ok(())
        })?;
    }
}
