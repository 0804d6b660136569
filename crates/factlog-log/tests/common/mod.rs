//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;

use factlog_log::{EmbeddedStore, Options};
use factlog_store::{EventStore, ExpectedVersion, NewEvent, ReadAll, RecordedEvent, StreamName};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

/// An event whose data is `size` bytes of JSON.
pub fn event(kind: &str, n: u64, size: usize) -> NewEvent {
    let pad = "x".repeat(size.saturating_sub(20));
    NewEvent::json(kind, &serde_json::json!({ "n": n, "pad": pad })).unwrap()
}

pub fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, Options::default()).unwrap()
}

pub async fn append_n(store: &EmbeddedStore, s: &str, count: u64, size: usize) {
    let events = (0..count).map(|n| event("Filled", n, size)).collect();
    store
        .append(&stream(s), ExpectedVersion::Any, events)
        .await
        .unwrap();
}

pub async fn all_events(store: &EmbeddedStore) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    loop {
        let from = out
            .last()
            .map_or(0, |e: &RecordedEvent| e.position.raw() + 1);
        let page = store
            .read_all(
                ReadAll::forward()
                    .from_position(factlog_store::Position::from_raw(from))
                    .limit(10_000),
            )
            .await
            .unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Copies every regular file of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

pub fn segment_path(dir: &Path, id: u32) -> std::path::PathBuf {
    dir.join(factlog_log::segment_file_name(id))
}
