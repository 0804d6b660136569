//! Online backup and restore: a backup taken while a writer keeps appending restores into a
//! store that verifies and holds every acknowledged append whole; damaged or partial backups and
//! non-empty directories are refused.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use factlog_log::{
    BACKUP_MANIFEST_FILE, BackupError, EmbeddedStore, IndexSource, Options, SNAPSHOT_FILE, restore,
    segment_file_name, verify,
};
use factlog_store::{EventStore, ExpectedVersion, NewEvent, RecordedEvent};

/// Small segments and frequent checkpoints, so that a backup spans several segments, copies a
/// snapshot, and the writer rolls a segment and saves a checkpoint while the backup runs.
fn small_options() -> Options {
    Options {
        segment_bytes_max: 64 * 1024,
        checkpoint_bytes: 16 * 1024,
        ..Options::default()
    }
}

/// Polls `done` until it holds, failing after `deadline`.
#[track_caller]
fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The events of append number `append` of the writer: `of` events, each saying which it is.
fn writer_append(append: u64) -> Vec<NewEvent> {
    let of = append % 4 + 1;
    (0..of)
        .map(|i| {
            NewEvent::json(
                "Written",
                &serde_json::json!({"append": append, "i": i, "of": of, "pad": "p".repeat(300)}),
            )
            .unwrap()
        })
        .collect()
}

fn field(event: &RecordedEvent, name: &str) -> u64 {
    event.json_data::<serde_json::Value>().unwrap()[name]
        .as_u64()
        .unwrap()
}

/// The names of the entries of `dir` with their contents, to show nothing changed.
fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    entries.sort();
    entries
}

fn is_empty_or_missing(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[test]
fn backup_while_appending_restores_every_acknowledged_event_and_no_partial_append() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let (data, backup_dir, restored) = (
        tmp.path().join("data"),
        tmp.path().join("backup"),
        tmp.path().join("restored"),
    );
    let store = Arc::new(EmbeddedStore::open(&data, small_options()).unwrap());
    rt.block_on(async {
        for n in 0..80 {
            append_n(&store, &format!("fill-{}", n % 7), 5, 400).await;
        }
    });
    let filled = store.stats();
    assert!(filled.segments >= 3, "{filled:?}");
    assert!(filled.checkpoints >= 1, "{filled:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = rt.spawn({
        let (store, stop, acked) = (store.clone(), stop.clone(), acked.clone());
        async move {
            let mut append = 0;
            while !stop.load(Ordering::SeqCst) {
                let stream = stream(&format!("w-{}", append % 5));
                store
                    .append(&stream, ExpectedVersion::Any, writer_append(append))
                    .await
                    .unwrap();
                append += 1;
                acked.store(append, Ordering::SeqCst);
            }
        }
    });
    wait_until(
        "the writer's first appends",
        Duration::from_secs(30),
        || acked.load(Ordering::SeqCst) >= 20,
    );

    // Every append acknowledged before the backup starts must be in it.
    let acked_before = acked.load(Ordering::SeqCst);
    let before = store.stats();
    let mut first_call = true;
    let report = store
        .backup_with_progress(&backup_dir, &mut |progress| {
            if !std::mem::take(&mut first_call) {
                return;
            }
            assert_eq!(progress.bytes_done, 0);
            // The cut is taken: let the writer go on, roll a segment and save a checkpoint
            // before anything is copied, so that the copy races real appends.
            wait_until(
                "appends, a roll and a checkpoint after the cut",
                Duration::from_secs(60),
                || {
                    let now = store.stats();
                    acked.load(Ordering::SeqCst) >= acked_before + 100
                        && now.segments > before.segments
                        && now.checkpoints > before.checkpoints
                },
            );
        })
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    rt.block_on(writer).unwrap();
    let original = rt.block_on(all_events(&store));
    drop(store);

    assert!(
        report.index_snapshot,
        "a snapshot saved before the cut is copied"
    );
    assert!(report.segments >= 3);
    assert!(
        (report.events as usize) < original.len(),
        "appends after the cut are not in the backup"
    );

    let restore_report = restore(&backup_dir, &restored).unwrap();
    assert_eq!(restore_report.events, report.events);
    assert_eq!(restore_report.end_position, report.end_position);
    assert_eq!(restore_report.open.index_source, IndexSource::Snapshot);
    let checked = verify(&restored, &Options::default()).unwrap();
    assert_eq!(checked.events, report.events);

    let store = open(&restored);
    let events = rt.block_on(all_events(&store));
    assert_eq!(events.len() as u64, report.events);
    assert_eq!(
        events[..],
        original[..events.len()],
        "the backup is a prefix of the log"
    );
    let written: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.event_type.as_str() == "Written")
        .collect();
    let last = written
        .last()
        .expect("the writer's appends are in the backup");
    assert_eq!(
        field(last, "i") + 1,
        field(last, "of"),
        "the backup ends with a whole append"
    );
    assert!(
        field(last, "append") + 1 >= acked_before,
        "append {} is the last in the backup, but {acked_before} were acknowledged before it started",
        field(last, "append")
    );

    // The restored store takes appends where the backup ended.
    let result = rt
        .block_on(store.append(
            &stream("after"),
            ExpectedVersion::NoStream,
            vec![event("After", 0, 10)],
        ))
        .unwrap();
    assert_eq!(result.first_position, report.end_position);
}

#[test]
fn backup_of_an_empty_store() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let (data, backup_dir, restored) = (
        tmp.path().join("data"),
        tmp.path().join("backup"),
        tmp.path().join("restored"),
    );
    let store = open(&data);
    let report = store.backup(&backup_dir).unwrap();
    assert_eq!(report.events, 0);
    assert_eq!(report.segments, 1);
    assert_eq!(report.files.len(), 1);
    assert!(
        !report.index_snapshot,
        "a new store has saved no snapshot yet"
    );
    drop(store);

    let restore_report = restore(&backup_dir, &restored).unwrap();
    assert_eq!(restore_report.events, 0);
    assert_eq!(verify(&restored, &Options::default()).unwrap().events, 0);
    let store = open(&restored);
    rt.block_on(append_n(&store, "first", 2, 50));
    assert_eq!(rt.block_on(all_events(&store)).len(), 2);
}

/// The snapshot is copied when it is one within the cut, and left out (the restore rebuilds
/// the index) when it is not a snapshot it can read.
#[test]
fn index_snapshot_is_copied_only_when_it_is_within_the_cut() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store = open(&data);
    rt.block_on(append_n(&store, "s", 10, 100));
    drop(store);

    let store = open(&data);
    let with = store.backup(&tmp.path().join("with")).unwrap();
    assert!(with.index_snapshot);
    assert_eq!(with.files.last().unwrap().name, SNAPSHOT_FILE);
    drop(store);
    let restored = restore(&tmp.path().join("with"), &tmp.path().join("r1")).unwrap();
    assert_eq!(restored.open.index_source, IndexSource::Snapshot);
    assert_eq!(restored.events, 10);

    std::fs::write(
        data.join(SNAPSHOT_FILE),
        b"not a snapshot at all, but long enough",
    )
    .unwrap();
    let store = open(&data);
    let without = store.backup(&tmp.path().join("without")).unwrap();
    assert!(!without.index_snapshot);
    assert!(!tmp.path().join("without").join(SNAPSHOT_FILE).exists());
    drop(store);
    let restored = restore(&tmp.path().join("without"), &tmp.path().join("r2")).unwrap();
    assert_eq!(restored.open.index_source, IndexSource::Rebuilt);
    assert_eq!(restored.events, 10);
    verify(&tmp.path().join("r2"), &Options::default()).unwrap();
}

/// A store with a few events in two segments, backed up into `dir/backup`.
fn backed_up_store(dir: &Path) -> PathBuf {
    let rt = rt();
    let store = EmbeddedStore::open(
        dir.join("data"),
        Options {
            segment_bytes_max: 4096,
            ..Options::default()
        },
    )
    .unwrap();
    rt.block_on(async {
        for n in 0..10 {
            append_n(&store, &format!("s-{n}"), 2, 300).await;
        }
    });
    let backup_dir = dir.join("backup");
    let report = store.backup(&backup_dir).unwrap();
    assert!(report.segments >= 2);
    backup_dir
}

#[test]
fn a_damaged_backup_file_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let backup_dir = backed_up_store(tmp.path());
    let segment = backup_dir.join(segment_file_name(1));
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();

    let target = tmp.path().join("restored");
    let error = restore(&backup_dir, &target).unwrap_err();
    assert!(
        matches!(&error, BackupError::ChecksumMismatch { file, .. } if file.ends_with(&segment_file_name(1))),
        "{error:?}"
    );
    assert!(error.to_string().contains(&segment_file_name(1)), "{error}");
    assert!(is_empty_or_missing(&target), "nothing is left behind");

    // A file cut short is refused too, before anything is copied from it.
    bytes[middle] ^= 0x10;
    bytes.truncate(middle);
    std::fs::write(&segment, &bytes).unwrap();
    let error = restore(&backup_dir, &target).unwrap_err();
    assert!(
        matches!(&error, BackupError::LengthMismatch { file, .. } if file.ends_with(&segment_file_name(1))),
        "{error:?}"
    );
    assert!(is_empty_or_missing(&target));
}

#[test]
fn restore_into_a_non_empty_directory_is_refused_and_changes_nothing() {
    let rt = rt();
    let tmp = tempfile::tempdir().unwrap();
    let backup_dir = backed_up_store(tmp.path());
    let target = tmp.path().join("existing");
    let store = open(&target);
    rt.block_on(append_n(&store, "mine", 3, 50));
    drop(store);
    let before = snapshot_dir(&target);

    let error = restore(&backup_dir, &target).unwrap_err();
    assert!(
        matches!(error, BackupError::DataDirNotEmpty { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("not empty"), "{error}");
    assert_eq!(snapshot_dir(&target), before);
}

#[test]
fn partial_or_corrupt_backups_and_non_empty_destinations_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let backup_dir = backed_up_store(tmp.path());

    let store = open(&tmp.path().join("data"));
    let error = store.backup(&backup_dir).unwrap_err();
    assert!(
        matches!(error, BackupError::DestinationNotEmpty { .. }),
        "{error:?}"
    );
    drop(store);

    let manifest = backup_dir.join(BACKUP_MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"crc32c\"", "\"crc\"")).unwrap();
    let error = restore(&backup_dir, &tmp.path().join("r")).unwrap_err();
    assert!(
        matches!(error, BackupError::ManifestCorrupt { .. }),
        "{error:?}"
    );

    std::fs::remove_file(&manifest).unwrap();
    let error = restore(&backup_dir, &tmp.path().join("r")).unwrap_err();
    assert!(
        matches!(error, BackupError::ManifestMissing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("did not finish"), "{error}");
    assert!(is_empty_or_missing(&tmp.path().join("r")));
}
