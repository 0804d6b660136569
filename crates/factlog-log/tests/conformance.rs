//! The store API conformance suite, run against the embedded store.

use std::sync::Arc;

use async_trait::async_trait;
use factlog_conformance::{Backend, Limits};
use factlog_log::{EmbeddedStore, Options};
use parking_lot::Mutex;

/// Each store lives in its own temporary directory, kept until the backend is dropped.
#[derive(Debug, Default)]
struct Embedded {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

impl Embedded {
    fn options() -> Options {
        // Small segments, so the suite also crosses segment boundaries.
        Options {
            segment_bytes_max: 64 * 1024,
            ..Options::default()
        }
    }
}

#[async_trait]
impl Backend for Embedded {
    type Store = EmbeddedStore;

    async fn open(&self) -> Arc<EmbeddedStore> {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), Self::options()).unwrap();
        self.dirs.lock().push(dir);
        Arc::new(store)
    }

    async fn reopen(&self, store: Arc<EmbeddedStore>) -> Arc<EmbeddedStore> {
        let dir = store.dir().to_path_buf();
        // Closing releases the directory; a clone still held elsewhere only keeps a closed handle.
        store.close();
        drop(store);
        Arc::new(EmbeddedStore::open(&dir, Self::options()).unwrap())
    }

    fn limits(&self) -> Limits {
        let o = Self::options();
        Limits {
            event_size_bytes_max: o.event_size_bytes_max,
            append_events_max: o.append_events_max,
        }
    }
}

factlog_conformance::conformance_tests!(Embedded::default());
