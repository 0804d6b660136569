//! Cases for subscriptions: catch-up from storage then live events, from the start, after a
//! position, from the end, filtered, per stream, and under concurrent writers.
//!
//! "No duplicate" is checked with a sentinel: after the events a subscriber must see, one more
//! event is appended, and the subscriber's next event must be exactly that one. Every wait is
//! bounded by [`crate::support::DEADLINE`] instead of sleeping.

use factlog_store::{
    EventFilter, EventId, EventStore, ExpectedVersion, NewEvent, ReadAll, RecordedEvent,
    SubscribeFrom, Subscription,
};

use crate::Backend;
use crate::support::{
    append_ok, assert_same_events, assert_store_order, event, events, events_after, next_event,
    next_events, read_all_events, read_stream_events, stream, within,
};

/// Appends an event that no case appends otherwise, to check that a subscriber sees nothing
/// between what it was expected to see and this event.
async fn append_sentinel<S: EventStore + ?Sized>(store: &S, stream_name: &str) -> RecordedEvent {
    let id = EventId::new_v7();
    let new = NewEvent::json("Sentinel", &serde_json::json!({ "sentinel": true }))
        .expect("valid event")
        .with_id(id);
    let r = append_ok(
        store,
        &stream(stream_name),
        ExpectedVersion::Any,
        vec![new],
        "sentinel",
    )
    .await;
    let all = read_all_events(store).await;
    let sentinel = all
        .into_iter()
        .find(|e| e.id == id)
        .expect("the sentinel is stored");
    assert_eq!(
        sentinel.position, r.last_position,
        "the sentinel is where its append said"
    );
    sentinel
}

async fn expect_next(sub: &mut Subscription, expected: &RecordedEvent, what: &str) {
    let got = next_event(sub, what).await;
    assert_same_events(
        std::slice::from_ref(&got),
        std::slice::from_ref(expected),
        what,
    );
}

/// From `Start`: every stored event in order, then live events, and nothing twice; also for a
/// subscription opened on an empty store.
pub async fn subscribe_all_from_start<B: Backend>(b: &B) {
    let store = b.open().await;
    let mut early = store.subscribe_all(SubscribeFrom::Start, EventFilter::default());
    append_ok(
        &*store,
        &stream("sub-a"),
        ExpectedVersion::Any,
        events("E", 0, 3),
        "stored",
    )
    .await;
    append_ok(
        &*store,
        &stream("sub-b"),
        ExpectedVersion::Any,
        events("E", 3, 2),
        "stored",
    )
    .await;
    let stored = read_all_events(&*store).await;

    let mut sub = store.subscribe_all(SubscribeFrom::Start, EventFilter::default());
    assert_same_events(
        &next_events(&mut sub, 5, "catch-up from Start").await,
        &stored,
        "catch-up from Start",
    );
    append_ok(
        &*store,
        &stream("sub-a"),
        ExpectedVersion::Any,
        events("E", 5, 2),
        "live",
    )
    .await;
    append_ok(
        &*store,
        &stream("sub-c"),
        ExpectedVersion::Any,
        events("E", 7, 1),
        "live",
    )
    .await;
    let all = read_all_events(&*store).await;
    assert_same_events(
        &next_events(&mut sub, 3, "live after catch-up").await,
        &all[5..],
        "live events after catch-up",
    );
    assert_same_events(
        &next_events(&mut early, 8, "subscription opened on an empty store").await,
        &all,
        "subscription opened on an empty store",
    );

    let sentinel = append_sentinel(&*store, "sentinel-1").await;
    expect_next(
        &mut sub,
        &sentinel,
        "from Start: the next event after all others",
    )
    .await;
    expect_next(
        &mut early,
        &sentinel,
        "opened on an empty store: the next event after all others",
    )
    .await;
}

/// `After(p)` starts just after `p`: stored events after `p`, then live ones.
pub async fn subscribe_all_after_position<B: Backend>(b: &B) {
    let store = b.open().await;
    for i in 0..5u64 {
        append_ok(
            &*store,
            &stream(&format!("after-{}", i % 2)),
            ExpectedVersion::Any,
            events("E", i * 2, 2),
            "stored",
        )
        .await;
    }
    let stored = read_all_events(&*store).await;
    assert_eq!(stored.len(), 10);

    let mut subs: Vec<(usize, Subscription)> = [0, 4, 9]
        .into_iter()
        .map(|i| {
            (
                i,
                store.subscribe_all(
                    SubscribeFrom::After(stored[i].position),
                    EventFilter::default(),
                ),
            )
        })
        .collect();
    for (i, sub) in &mut subs {
        let what = format!("After(position of event {i})");
        let got = next_events(sub, 9 - *i, &what).await;
        assert_same_events(&got, &stored[*i + 1..], &what);
    }
    append_ok(
        &*store,
        &stream("after-0"),
        ExpectedVersion::Any,
        events("E", 10, 2),
        "live",
    )
    .await;
    let all = read_all_events(&*store).await;
    let sentinel = append_sentinel(&*store, "sentinel-1").await;
    for (i, sub) in &mut subs {
        let what = format!("After(position of event {i}), live");
        assert_same_events(&next_events(sub, 2, &what).await, &all[10..], &what);
        expect_next(
            sub,
            &sentinel,
            &format!("After(position of event {i}): no duplicate"),
        )
        .await;
    }
}

/// `End` sees only events appended after the subscription was made.
pub async fn subscribe_all_from_end<B: Backend>(b: &B) {
    let store = b.open().await;
    let mut on_empty = store.subscribe_all(SubscribeFrom::End, EventFilter::default());
    append_ok(
        &*store,
        &stream("end-a"),
        ExpectedVersion::Any,
        events("E", 0, 3),
        "stored",
    )
    .await;
    let mut sub = store.subscribe_all(SubscribeFrom::End, EventFilter::default());
    append_ok(
        &*store,
        &stream("end-b"),
        ExpectedVersion::Any,
        events("E", 3, 1),
        "live",
    )
    .await;
    append_ok(
        &*store,
        &stream("end-a"),
        ExpectedVersion::Any,
        events("E", 4, 2),
        "live",
    )
    .await;
    let all = read_all_events(&*store).await;
    assert_same_events(
        &next_events(&mut sub, 3, "from End").await,
        &all[3..],
        "from End: only new events",
    );
    assert_same_events(
        &next_events(&mut on_empty, 6, "from End on an empty store").await,
        &all,
        "from End on an empty store",
    );
    let sentinel = append_sentinel(&*store, "sentinel-1").await;
    expect_next(&mut sub, &sentinel, "from End: no duplicate").await;
    expect_next(
        &mut on_empty,
        &sentinel,
        "from End on an empty store: no duplicate",
    )
    .await;
}

/// A filtered subscription sees exactly the matching events, stored and live, also when it
/// resumes after the position of an event that does not match.
pub async fn subscribe_all_filtered<B: Backend>(b: &B) {
    let store = b.open().await;
    let names = ["order-1", "orders-1", "account-1", "order-2"];
    let types = ["Placed", "Paid", "Sentinel"];
    let mut n = 0;
    for round in 0..3 {
        for (i, name) in names.iter().enumerate() {
            let t = types[(i + round) % 2];
            append_ok(
                &*store,
                &stream(name),
                ExpectedVersion::Any,
                events(t, n, 1 + (i % 2) as u64),
                "stored",
            )
            .await;
            n += 2;
        }
    }
    let filter = EventFilter {
        event_types: vec!["Placed".into(), "Sentinel".into()],
        category: Some("order".into()),
        ..Default::default()
    };
    let stored = read_all_events(&*store).await;
    let non_matching = stored
        .iter()
        .find(|e| !filter.matches(e))
        .expect("a non-matching event")
        .position;

    let mut from_start = store.subscribe_all(SubscribeFrom::Start, filter.clone());
    let mut after = store.subscribe_all(SubscribeFrom::After(non_matching), filter.clone());
    for round in 3..5 {
        for (i, name) in names.iter().enumerate() {
            let t = types[(i + round) % 2];
            append_ok(
                &*store,
                &stream(name),
                ExpectedVersion::Any,
                events(t, n, 1),
                "live",
            )
            .await;
            n += 2;
        }
    }
    // The sentinel goes to a matching stream; a non-matching event right before it must be skipped.
    append_ok(
        &*store,
        &stream("account-1"),
        ExpectedVersion::Any,
        vec![event("Placed", n)],
        "live",
    )
    .await;
    let sentinel = append_sentinel(&*store, "order-3").await;
    let all = read_all_events(&*store).await;
    let matching: Vec<RecordedEvent> = all.iter().filter(|e| filter.matches(e)).cloned().collect();
    assert!(
        matching.len() > 4 && matching.len() < all.len(),
        "the data set must make the filter selective"
    );
    assert_eq!(matching.last(), Some(&sentinel));

    let got = next_events(&mut from_start, matching.len(), "filtered from Start").await;
    assert_same_events(&got, &matching, "filtered subscription from Start");
    // After `non_matching` in the store's order (by position value, or with a per-partition order
    // by `$all` as read).
    let expected = events_after(store.ordering(), &all, &matching, non_matching);
    let got = next_events(
        &mut after,
        expected.len(),
        "filtered after a non-matching position",
    )
    .await;
    assert_same_events(
        &got,
        &expected,
        "filtered subscription after a non-matching position",
    );

    let sentinel = append_sentinel(&*store, "order-3").await;
    expect_next(
        &mut from_start,
        &sentinel,
        "filtered from Start: no duplicate",
    )
    .await;
    expect_next(&mut after, &sentinel, "filtered after: no duplicate").await;
}

/// `subscribe_stream` from `Start`, `After(v)` and `End`: only that stream's events, in version
/// order, stored then live.
pub async fn subscribe_stream_from_start_after_end<B: Backend>(b: &B) {
    let store = b.open().await;
    let s = stream("substream-1");
    let other = stream("substream-10");
    append_ok(
        &*store,
        &s,
        ExpectedVersion::NoStream,
        events("E", 0, 2),
        "stored",
    )
    .await;
    append_ok(
        &*store,
        &other,
        ExpectedVersion::Any,
        events("E", 2, 2),
        "other",
    )
    .await;
    append_ok(
        &*store,
        &s,
        ExpectedVersion::Exact(1),
        events("E", 4, 1),
        "stored",
    )
    .await;

    let mut from_start = store.subscribe_stream(s.clone(), SubscribeFrom::Start);
    let mut after_1 = store.subscribe_stream(s.clone(), SubscribeFrom::After(1));
    let mut from_end = store.subscribe_stream(s.clone(), SubscribeFrom::End);
    let stored = read_stream_events(&*store, &s).await;
    assert_same_events(
        &next_events(&mut from_start, 3, "stream from Start").await,
        &stored,
        "stream from Start",
    );
    assert_same_events(
        &next_events(&mut after_1, 1, "stream After(1)").await,
        &stored[2..],
        "stream After(1)",
    );

    append_ok(
        &*store,
        &other,
        ExpectedVersion::Any,
        events("E", 5, 1),
        "other live",
    )
    .await;
    append_ok(
        &*store,
        &s,
        ExpectedVersion::Exact(2),
        events("E", 6, 2),
        "live",
    )
    .await;
    append_ok(
        &*store,
        &other,
        ExpectedVersion::Any,
        events("E", 8, 1),
        "other live",
    )
    .await;
    append_ok(
        &*store,
        &s,
        ExpectedVersion::Exact(4),
        events("E", 9, 1),
        "live",
    )
    .await;
    let all = read_stream_events(&*store, &s).await;
    assert_eq!(all.len(), 6);
    for (what, sub) in [
        ("stream from Start", &mut from_start),
        ("stream After(1)", &mut after_1),
        ("stream from End", &mut from_end),
    ] {
        let got = next_events(sub, 3, what).await;
        assert_same_events(
            &got,
            &all[3..],
            &format!("{what}: live events of the stream only"),
        );
    }
    let sentinel = append_sentinel(&*store, "substream-1").await;
    for (what, sub) in [
        ("stream from Start", &mut from_start),
        ("stream After(1)", &mut after_1),
        ("stream from End", &mut from_end),
    ] {
        expect_next(
            sub,
            &sentinel,
            &format!("{what}: no duplicate, no other stream"),
        )
        .await;
    }
}

/// Several writer tasks append while subscribers, started in the middle, read: each subscriber
/// gets every event it should exactly once, in `$all` order, with no gap.
pub async fn subscribe_all_concurrent_writers<B: Backend>(b: &B) {
    const WRITERS: u64 = 4;
    const APPENDS: u64 = 60;
    let store = b.open().await;
    // History before the subscribers start, so that they have catch-up work to race with.
    for i in 0..20u64 {
        append_ok(
            &*store,
            &stream(&format!("pre-{}", i % 3)),
            ExpectedVersion::Any,
            events("Even", i, 1 + i % 2),
            "history",
        )
        .await;
    }

    let (half_tx, mut half_rx) = tokio::sync::mpsc::channel::<()>(WRITERS as usize);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let half_tx = half_tx.clone();
        writers.push(tokio::spawn(async move {
            let mut appended = Vec::new();
            for k in 0..APPENDS {
                if k == APPENDS / 2 {
                    half_tx
                        .send(())
                        .await
                        .expect("the case waits for every writer");
                }
                let t = if k % 2 == 0 { "Even" } else { "Odd" };
                let s = stream(&format!("w{w}-{}", k % 3));
                let new = events(t, 1000 * w + 10 * k, 1 + (k + w) % 3);
                let r = store
                    .append(&s, ExpectedVersion::Any, new.clone())
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}: append {k} failed: {e}"));
                appended.push((s, new, r));
                // Let the subscribers' tasks run between appends on a busy runtime.
                tokio::task::yield_now().await;
            }
            appended
        }));
    }
    drop(half_tx);
    for _ in 0..WRITERS {
        within("every writer to be half way", half_rx.recv())
            .await
            .expect("a writer stopped early");
    }

    let mid = store
        .read_all(ReadAll::backward().limit(1))
        .await
        .expect("read_all backward");
    let mid = mid.first().expect("history exists").position;
    let odd = EventFilter {
        event_types: vec!["Odd".into(), "Sentinel".into()],
        ..Default::default()
    };
    let sentinel_id = EventId::new_v7();
    let subscribers: Vec<(&str, tokio::task::JoinHandle<Vec<RecordedEvent>>)> = [
        (
            "from Start",
            store.subscribe_all(SubscribeFrom::Start, EventFilter::default()),
        ),
        (
            "After(mid)",
            store.subscribe_all(SubscribeFrom::After(mid), EventFilter::default()),
        ),
        (
            "from End",
            store.subscribe_all(SubscribeFrom::End, EventFilter::default()),
        ),
        (
            "filtered from Start",
            store.subscribe_all(SubscribeFrom::Start, odd.clone()),
        ),
    ]
    .into_iter()
    .map(|(what, mut sub)| {
        // Each subscriber reads in its own task, concurrently with the writers.
        let handle = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let e = next_event(&mut sub, what).await;
                let done = e.id == sentinel_id;
                got.push(e);
                if done {
                    return got;
                }
            }
        });
        (what, handle)
    })
    .collect();

    let mut appended = Vec::new();
    for writer in writers {
        appended.extend(
            within("a writer to finish", writer)
                .await
                .expect("a writer task panicked"),
        );
    }
    let sentinel = NewEvent::json("Sentinel", &serde_json::json!({}))
        .expect("valid")
        .with_id(sentinel_id);
    append_ok(
        &*store,
        &stream("sentinel-1"),
        ExpectedVersion::Any,
        vec![sentinel],
        "sentinel",
    )
    .await;

    let all = read_all_events(&*store).await;
    assert_store_order(&all, store.ordering(), "$all after concurrent writers");
    let appended_count: usize = appended.iter().map(|(_, new, _)| new.len()).sum();
    let history = all
        .iter()
        .filter(|e| e.stream.as_str().starts_with("pre-"))
        .count();
    assert_eq!(
        all.len(),
        history + appended_count + 1,
        "$all holds every appended event once"
    );
    for (s, new, r) in &appended {
        crate::support::assert_append_stored(&all, s, new, r, "a concurrent writer's append");
    }

    for (what, handle) in subscribers {
        let got = within(what, handle)
            .await
            .expect("a subscriber task panicked");
        let expected: Vec<RecordedEvent> = match what {
            "from Start" => all.clone(),
            "After(mid)" => events_after(store.ordering(), &all, &all, mid),
            "filtered from Start" => all.iter().filter(|e| odd.matches(e)).cloned().collect(),
            _ => {
                // From End: some suffix of $all, depending on when the subscription began.
                assert!(
                    got.len() <= all.len(),
                    "{what}: more events than $all holds"
                );
                all[all.len() - got.len()..].to_vec()
            }
        };
        assert_same_events(
            &got,
            &expected,
            &format!("subscriber {what} under concurrent writers"),
        );
    }
}
