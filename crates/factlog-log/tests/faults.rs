//! Fault injection through the storage trait: failed writes, failed fsyncs and a full disk.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use factlog_log::fault::{Faults, FaultyStorage};
use factlog_log::{EmbeddedStore, Options};
use factlog_store::{AppendError, EventStore, ExpectedVersion, ReadStream};

fn faulty(faults: &Arc<Faults>) -> Options {
    Options {
        storage: Arc::new(FaultyStorage::new(faults.clone())),
        ..Options::default()
    }
}

#[test]
fn a_failed_fsync_stops_the_writer_until_reopen() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), faulty(&faults)).unwrap();
        append_n(&store, "f-1", 3, 100).await;
        faults.fail_syncs.store(true, Ordering::SeqCst);
        let err = store
            .append(
                &stream("f-1"),
                ExpectedVersion::Any,
                vec![event("Lost", 0, 50)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppendError::WriterFailed { .. }),
            "got {err:?}"
        );
        // No retry-then-acknowledge: even with fsync working again, the writer stays stopped.
        faults.fail_syncs.store(false, Ordering::SeqCst);
        let err = store
            .append(
                &stream("f-1"),
                ExpectedVersion::Any,
                vec![event("Later", 0, 50)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppendError::WriterFailed { .. }),
            "got {err:?}"
        );
        assert!(store.stats().writer_failed.is_some());
        // Reads keep working and show only what was acknowledged.
        assert_eq!(
            store
                .read_stream(&stream("f-1"), ReadStream::forward())
                .await
                .unwrap()
                .len(),
            3
        );
    });
    let store = EmbeddedStore::open(dir.path(), faulty(&faults)).unwrap();
    rt.block_on(async {
        let events = all_events(&store).await;
        assert_eq!(events.len(), 3, "the unacknowledged append did not survive");
        let r = store
            .append(
                &stream("f-1"),
                ExpectedVersion::Exact(2),
                vec![event("Again", 0, 50)],
            )
            .await
            .unwrap();
        assert_eq!(r.first_version, 3);
    });
}

#[test]
fn a_failed_write_stops_the_writer_and_leaves_no_partial_record() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), faulty(&faults)).unwrap();
        append_n(&store, "w-1", 2, 100).await;
        faults.fail_writes.store(true, Ordering::SeqCst);
        let err = store
            .append(
                &stream("w-1"),
                ExpectedVersion::Any,
                vec![event("Lost", 0, 50)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppendError::WriterFailed { .. }),
            "got {err:?}"
        );
        faults.fail_writes.store(false, Ordering::SeqCst);
        assert!(matches!(
            store
                .append(
                    &stream("w-1"),
                    ExpectedVersion::Any,
                    vec![event("Later", 0, 50)]
                )
                .await,
            Err(AppendError::WriterFailed { .. })
        ));
        assert_eq!(all_events(&store).await.len(), 2);
    });
    let store = EmbeddedStore::open(dir.path(), faulty(&faults)).unwrap();
    assert_eq!(store.open_report().truncated_bytes, 0);
    rt.block_on(async { assert_eq!(all_events(&store).await.len(), 2) });
}

#[test]
fn a_full_disk_fails_the_append_cleanly_and_recovers_when_space_is_freed() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), faulty(&faults)).unwrap();
        append_n(&store, "d-1", 5, 200).await;
        let end = store.end_position().await.unwrap();
        // Room for part of a frame only: the write lands partially, then fails.
        faults.set_space_left_bytes(100);
        for _ in 0..3 {
            let err = store
                .append(
                    &stream("d-1"),
                    ExpectedVersion::Any,
                    vec![event("Big", 0, 400)],
                )
                .await
                .unwrap_err();
            assert_eq!(err, AppendError::DiskFull);
            assert!(err.to_string().contains("disk is full"));
        }
        assert_eq!(
            store.end_position().await.unwrap(),
            end,
            "no partial record is visible"
        );
        assert_eq!(
            store
                .read_stream(&stream("d-1"), ReadStream::forward())
                .await
                .unwrap()
                .len(),
            5
        );
        assert!(
            store.stats().writer_failed.is_none(),
            "a full disk does not stop the writer"
        );
        assert_eq!(store.stats().disk_full, 3);
        faults.free_space();
        let r = store
            .append(
                &stream("d-1"),
                ExpectedVersion::Exact(4),
                vec![event("Fits", 0, 400)],
            )
            .await
            .unwrap();
        assert_eq!(r.first_version, 5);
        assert_eq!(r.first_position, end);
    });
    let store = EmbeddedStore::open(dir.path(), faulty(&faults)).unwrap();
    assert_eq!(
        store.open_report().truncated_bytes,
        0,
        "nothing partial was left on disk"
    );
    rt.block_on(async { assert_eq!(all_events(&store).await.len(), 6) });
    drop(store);
    factlog_log::verify(dir.path(), &Options::default()).unwrap();
}

#[test]
fn a_full_disk_while_starting_a_segment_fails_cleanly() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let options = || Options {
        segment_bytes_max: 8 * 1024,
        ..faulty(&faults)
    };
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), options()).unwrap();
        while store.stats().segments == 1 {
            append_n(&store, "r-1", 4, 300).await;
        }
        let segments = store.stats().segments;
        let end = store.end_position().await.unwrap();
        // Fill the active segment until the next append must start a new one, with no room.
        faults.set_space_left_bytes(0);
        let mut saw_full = false;
        for _ in 0..40 {
            match store
                .append(
                    &stream("r-1"),
                    ExpectedVersion::Any,
                    vec![event("X", 0, 300)],
                )
                .await
            {
                Err(AppendError::DiskFull) => saw_full = true,
                other => panic!("expected a full disk, got {other:?}"),
            }
        }
        assert!(saw_full);
        assert_eq!(store.end_position().await.unwrap(), end);
        assert_eq!(store.stats().segments, segments);
        faults.free_space();
        append_n(&store, "r-1", 40, 300).await;
        assert!(store.stats().segments > segments);
    });
    drop(rt);
    factlog_log::verify(dir.path(), &Options::default()).unwrap();
}
