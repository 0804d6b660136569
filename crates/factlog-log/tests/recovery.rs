//! Recovery: torn tails at every byte, garbage after the log, bit flips below it, lost or
//! damaged index files, and the directory lock.

mod common;

use std::fs::OpenOptions;
use std::io::Write;

use common::*;
use factlog_log::{EmbeddedStore, IndexSource, OpenError, Options, Recovery, SNAPSHOT_FILE};
use factlog_store::{EventStore, ExpectedVersion, ReadError, ReadStream};

/// Cutting the file anywhere inside the last append leaves exactly the appends before it, and
/// the store takes appends again.
#[test]
fn torn_tail_at_every_byte_of_the_last_append() {
    let rt = rt();
    let base = tempfile::tempdir().unwrap();
    let (prefix_len, full_len) = rt.block_on(async {
        let store = open(base.path());
        for n in 0..4 {
            append_n(&store, &format!("s-{n}"), 1, 100).await;
        }
        drop(store);
        let prefix_len = std::fs::metadata(segment_path(base.path(), 0))
            .unwrap()
            .len();
        std::fs::copy(
            base.path().join(SNAPSHOT_FILE),
            base.path().join("prefix.snap"),
        )
        .unwrap();
        let store = open(base.path());
        // The last append holds two events, so cuts fall inside the append and between its frames.
        append_n(&store, "s-last", 2, 60).await;
        drop(store);
        (
            prefix_len,
            std::fs::metadata(segment_path(base.path(), 0))
                .unwrap()
                .len(),
        )
    });
    assert!(full_len > prefix_len + 100);
    for cut in prefix_len..full_len {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        // Half the cases start from the snapshot of the prefix, half rebuild the index.
        if cut % 2 == 0 {
            std::fs::rename(
                dir.path().join("prefix.snap"),
                dir.path().join(SNAPSHOT_FILE),
            )
            .unwrap();
        } else {
            std::fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
        }
        OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), 0))
            .unwrap()
            .set_len(cut)
            .unwrap();
        let store = EmbeddedStore::open(dir.path(), Options::default())
            .unwrap_or_else(|e| panic!("open after a cut at byte {cut} failed: {e}"));
        let report = store.open_report().clone();
        assert_eq!(report.truncated_bytes, cut - prefix_len, "cut at {cut}");
        rt.block_on(async {
            let events = all_events(&store).await;
            assert_eq!(
                events.len(),
                4,
                "cut at {cut}: only the complete appends remain"
            );
            let r = store
                .append(
                    &stream("s-last"),
                    ExpectedVersion::NoStream,
                    vec![event("After", 0, 10)],
                )
                .await
                .unwrap();
            assert_eq!(
                r.first_position.raw(),
                5,
                "cut at {cut}: positions continue without a gap"
            );
        });
    }
}

#[test]
fn garbage_after_the_log_is_cut() {
    let rt = rt();
    let garbage: Vec<Vec<u8>> = vec![
        vec![0; 1],
        vec![0; 4096],
        vec![0xFF; 300],
        (0..=255u8).collect(),
        // A plausible frame length followed by nonsense.
        [200u32.to_le_bytes().to_vec(), vec![7; 196]].concat(),
    ];
    for junk in garbage {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let store = open(dir.path());
            append_n(&store, "g-1", 10, 200).await;
        });
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 0))
            .unwrap();
        f.write_all(&junk).unwrap();
        drop(f);
        let store = open(dir.path());
        assert_eq!(store.open_report().truncated_bytes, junk.len() as u64);
        rt.block_on(async {
            assert_eq!(all_events(&store).await.len(), 10);
        });
        drop(store);
        factlog_log::verify(dir.path(), &Options::default()).expect("the cut log verifies");
    }
}

/// Writes a store larger than the unsynced window, so that a flip in its middle cannot be a
/// torn write, and returns the offset of a byte inside an event's data near the middle.
fn store_with_events_past_the_window(dir: &std::path::Path) -> u64 {
    let rt = rt();
    rt.block_on(async {
        let store = open(dir);
        for batch in 0..80 {
            append_n(&store, &format!("big-{batch}"), 1000, 260).await;
        }
    });
    let len = std::fs::metadata(segment_path(dir, 0)).unwrap().len();
    assert!(
        len > factlog_log::UNSYNCED_BYTES_MAX + 4 * 1024 * 1024,
        "the store is past the window"
    );
    // Land inside some frame's data: frames are ~400 bytes, so any byte is in some frame.
    len / 4 + 201
}

fn flip(path: &std::path::Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], offset).unwrap();
}

#[test]
fn bit_flip_in_the_middle_refuses_to_open_and_verify_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let at = store_with_events_past_the_window(dir.path());
    let seg = segment_path(dir.path(), 0);
    flip(&seg, at);
    for with_snapshot in [true, false] {
        if !with_snapshot {
            std::fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
        }
        match EmbeddedStore::open(dir.path(), Options::default()) {
            Err(OpenError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, seg.display().to_string());
                assert!(
                    offset <= at && at - offset < 1024,
                    "offset {offset} names the frame holding byte {at}"
                );
            }
            other => {
                panic!("open must refuse a flipped bit (snapshot: {with_snapshot}), got {other:?}")
            }
        }
        match factlog_log::verify(dir.path(), &Options::default()) {
            Err(factlog_log::VerifyError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, seg.display().to_string());
                assert!(offset <= at && at - offset < 1024);
            }
            other => panic!("verify must report the flipped bit, got {other:?}"),
        }
    }
    // The explicit repair cuts the log at the bad frame, loudly, and opens.
    let options = Options {
        recovery: Recovery::TruncateCorruption,
        ..Options::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let report = store.open_report();
    assert!(report.truncated_bytes > 0 && report.truncated_at.is_some());
    drop(store);
    factlog_log::verify(dir.path(), &Options::default()).expect("the repaired log verifies");
}

#[test]
fn bit_flip_in_a_sealed_segment_is_reported_by_reads_and_verify() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        segment_bytes_max: 64 * 1024,
        ..Options::default()
    };
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), options()).unwrap();
        for n in 0..40 {
            append_n(&store, &format!("seal-{n}"), 20, 300).await;
        }
        assert!(store.stats().segments >= 3);
    });
    let seg = segment_path(dir.path(), 0);
    flip(&seg, 64 + 500);
    let store = EmbeddedStore::open(dir.path(), options()).unwrap();
    rt.block_on(async {
        let err = store
            .read_stream(&stream("seal-0"), ReadStream::forward())
            .await
            .unwrap_err();
        match err {
            ReadError::Corrupt { file, .. } => assert_eq!(file, seg.display().to_string()),
            other => panic!("expected a corrupt-record error, got {other:?}"),
        }
    });
    drop(store);
    assert!(matches!(
        factlog_log::verify(dir.path(), &options()),
        Err(factlog_log::VerifyError::Corrupt { .. })
    ));
}

/// The index is derived data: without it, or with a damaged one, every read is the same.
#[test]
fn deleting_or_damaging_the_index_gives_identical_reads() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        segment_bytes_max: 32 * 1024,
        ..Options::default()
    };
    let snapshot_reads = |store: &EmbeddedStore| {
        rt.block_on(async {
            let all = all_events(store).await;
            let mut streams = Vec::new();
            for n in 0..12 {
                let s = stream(&format!("idx-{n}"));
                streams.push((
                    store.read_stream(&s, ReadStream::forward()).await.unwrap(),
                    store
                        .read_stream(&s, ReadStream::backward().limit(3))
                        .await
                        .unwrap(),
                    store.stream_info(&s).await.unwrap(),
                ));
            }
            let cats = store.categories().await.unwrap();
            (all, streams, cats)
        })
    };
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), options()).unwrap();
        for round in 0..10u64 {
            for n in 0..12 {
                append_n(&store, &format!("idx-{n}"), 1 + round % 3, 150).await;
            }
        }
        append_n(&store, "other-1", 5, 10).await;
    });
    let store = EmbeddedStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.open_report().index_source, IndexSource::Snapshot);
    let expected = snapshot_reads(&store);
    drop(store);

    std::fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
    let store = EmbeddedStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.open_report().index_source, IndexSource::Rebuilt);
    assert_eq!(snapshot_reads(&store), expected);
    drop(store);

    // A damaged snapshot is noticed, ignored and replaced.
    let snap = dir.path().join(SNAPSHOT_FILE);
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&snap, bytes).unwrap();
    let store = EmbeddedStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.open_report().index_source, IndexSource::Rebuilt);
    assert!(store.open_report().snapshot_problem.is_some());
    assert_eq!(snapshot_reads(&store), expected);
}

#[test]
fn a_second_open_of_the_same_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    match EmbeddedStore::open(dir.path(), Options::default()) {
        Err(e @ OpenError::Locked { .. }) => assert!(e.to_string().contains("in use")),
        other => panic!("expected the directory to be locked, got {other:?}"),
    }
    drop(first);
    open(dir.path());
}

#[test]
fn a_missing_segment_refuses_to_open() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        segment_bytes_max: 8 * 1024,
        ..Options::default()
    };
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), options()).unwrap();
        for n in 0..30 {
            append_n(&store, &format!("m-{n}"), 5, 200).await;
        }
    });
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    assert!(matches!(
        EmbeddedStore::open(dir.path(), options()),
        Err(OpenError::MissingSegment { .. })
    ));
}

/// A snapshot that belongs to another log (same length, other events) is not trusted.
#[test]
fn a_snapshot_of_another_log_is_not_trusted() {
    let rt = rt();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let store = open(a.path());
        append_n(&store, "a-1", 10, 100).await;
        drop(store);
        let store = open(b.path());
        append_n(&store, "b-1", 20, 40).await;
    });
    std::fs::copy(a.path().join(SNAPSHOT_FILE), b.path().join(SNAPSHOT_FILE)).unwrap();
    let store = open(b.path());
    assert_eq!(store.open_report().index_source, IndexSource::Rebuilt);
    rt.block_on(async {
        assert_eq!(
            store
                .read_stream(&stream("b-1"), ReadStream::forward())
                .await
                .unwrap()
                .len(),
            20
        );
        assert!(matches!(
            store
                .read_stream(&stream("a-1"), ReadStream::forward())
                .await,
            Err(ReadError::StreamNotFound(_))
        ));
    });
}

/// While the store runs it saves the index every `checkpoint_bytes` of log, so that opening the
/// files as a crash leaves them scans only the log after the last checkpoint, with reads
/// identical to the running store's.
#[test]
fn a_checkpoint_bounds_the_scan_after_a_crash() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        segment_bytes_max: 64 * 1024,
        checkpoint_bytes: 64 * 1024,
        ..Options::default()
    };
    let store = EmbeddedStore::open(dir.path(), options()).unwrap();
    let events = rt.block_on(async {
        for n in 0..60 {
            append_n(&store, &format!("ckpt-{}", n % 7), 10, 300).await;
        }
        all_events(&store).await
    });
    // The checkpoint thread counts a snapshot once it is saved; nothing appends after this.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.stats().checkpoints == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after {} bytes",
            store.stats().bytes_written
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(dir.path().join(SNAPSHOT_FILE).exists());
    let log_bytes = store.stats().bytes_written;

    // The files as they are now, with the store still open: what kill -9 would leave.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let reopened = EmbeddedStore::open(crashed.path(), options()).unwrap();
    let report = reopened.open_report().clone();
    assert_eq!(report.index_source, IndexSource::Snapshot);
    assert!(
        report.checked_bytes < log_bytes,
        "checked {} of {log_bytes} bytes: the checkpoint did not shorten the scan",
        report.checked_bytes
    );
    let again = rt.block_on(all_events(&reopened));
    assert_eq!(again, events, "reads after the crash image differ");
    drop(store);
}
