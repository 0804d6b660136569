//! Reads that cross segment boundaries: with tiny segments every scan moves from file to file,
//! and must return each event exactly once, in order.

mod common;

use common::*;
use factlog_log::{EmbeddedStore, Options};
use factlog_store::{EventStore, ReadAll, ReadStream, SubscribeFrom};
use futures::StreamExt;

#[test]
fn scans_cross_segments_without_repeating_or_skipping() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        segment_bytes_max: 4096,
        ..Options::default()
    };
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), options()).unwrap();
        for n in 0..40 {
            append_n(&store, &format!("seg-{}", n % 3), 5, 300).await;
        }
        assert!(store.stats().segments >= 10, "{:?}", store.stats());
        check_reads(&store).await;
        drop(store);
        // Again from the snapshot, and from a rebuilt index.
        let store = EmbeddedStore::open(dir.path(), options()).unwrap();
        check_reads(&store).await;
        drop(store);
        std::fs::remove_file(dir.path().join(factlog_log::SNAPSHOT_FILE)).unwrap();
        let store = EmbeddedStore::open(dir.path(), options()).unwrap();
        check_reads(&store).await;
    });
}

async fn check_reads(store: &EmbeddedStore) {
    let positions = |events: &[factlog_store::RecordedEvent]| -> Vec<u64> {
        events.iter().map(|e| e.position.raw()).collect()
    };
    let all: Vec<u64> = (1..=200).collect();
    let forward = store
        .read_all(ReadAll::forward().limit(10_000))
        .await
        .unwrap();
    assert_eq!(
        positions(&forward),
        all,
        "one forward page over every segment"
    );
    let backward = store
        .read_all(ReadAll::backward().limit(10_000))
        .await
        .unwrap();
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(positions(&backward), reversed, "one backward page");
    let stream = store
        .read_stream(&stream("seg-0"), ReadStream::forward())
        .await
        .unwrap();
    let versions: Vec<u64> = stream.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (0..70).collect::<Vec<_>>(),
        "a stream spread over segments"
    );
    let subscribed: Vec<u64> = store
        .subscribe_all(SubscribeFrom::Start, Default::default())
        .take(200)
        .map(|e| e.unwrap().position.raw())
        .collect()
        .await;
    assert_eq!(
        subscribed, all,
        "a subscription's catch-up over every segment"
    );
}
