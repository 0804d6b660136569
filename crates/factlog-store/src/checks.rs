//! Checks every backend makes the same way, so that a bad append fails alike everywhere: the
//! shape and limits of an append, and the idempotency rule for event ids already stored.

use std::collections::HashSet;

use factlog_types::{EventId, Position, RecordedEvent};

use crate::{AppendError, AppendResult, LimitKind, StreamAppend};

/// The named append limits of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendLimits {
    /// `event_size_bytes_max`: one event's data, metadata and type.
    pub event_size_bytes_max: usize,
    /// `append_events_max`: events in one call, all streams together.
    pub append_events_max: usize,
    /// `append_size_bytes_max`: all events of one call, with `fixed_bytes_per_event` each.
    pub append_size_bytes_max: usize,
    /// What one event costs beyond its payload, stream name and content type (the embedded
    /// log's frame header).
    pub fixed_bytes_per_event: usize,
}

/// Checks the shape and the limits of an append and gives every event without an id a new
/// UUIDv7. Returns the append's size as counted for `append_size_bytes_max`.
pub fn check_appends(
    appends: &mut [StreamAppend],
    limits: &AppendLimits,
) -> Result<usize, AppendError> {
    if appends.is_empty() || appends.iter().any(|a| a.events.is_empty()) {
        return Err(AppendError::Empty);
    }
    let mut streams = HashSet::new();
    let mut ids = HashSet::new();
    let (mut events, mut size_bytes) = (0usize, 0usize);
    for part in appends.iter_mut() {
        if !streams.insert(part.stream.clone()) {
            return Err(AppendError::DuplicateStream {
                stream: part.stream.clone(),
            });
        }
        for event in &mut part.events {
            let size = event.payload_size_bytes();
            if size > limits.event_size_bytes_max {
                return Err(AppendError::LimitExceeded {
                    limit: LimitKind::EventSize,
                    actual: size as u64,
                    max: limits.event_size_bytes_max as u64,
                });
            }
            let id = *event.id.get_or_insert_with(EventId::new_v7);
            if !ids.insert(id) {
                return Err(AppendError::DuplicateEventId { event_id: id });
            }
            events += 1;
            size_bytes += size
                + limits.fixed_bytes_per_event
                + part.stream.as_str().len()
                + event.content_type.as_str().len();
        }
    }
    if events > limits.append_events_max {
        return Err(AppendError::LimitExceeded {
            limit: LimitKind::EventsPerAppend,
            actual: events as u64,
            max: limits.append_events_max as u64,
        });
    }
    if size_bytes > limits.append_size_bytes_max {
        return Err(AppendError::LimitExceeded {
            limit: LimitKind::AppendSize,
            actual: size_bytes as u64,
            max: limits.append_size_bytes_max as u64,
        });
    }
    Ok(size_bytes)
}

/// Whether `part` is a retry of events already stored: `Some(original result)` when every id
/// is stored in this stream, in this order, with the same content; `None` when no id is stored;
/// an [`AppendError::IdempotencyConflict`] for anything in between.
///
/// `stored` finds an event by id (in the store or in the writer's not yet durable batch);
/// `is_stored` only says whether one exists. Ids must be filled in ([`check_appends`]).
pub fn find_retry<E>(
    part: &StreamAppend,
    mut stored: impl FnMut(EventId) -> Result<Option<RecordedEvent>, E>,
    mut is_stored: impl FnMut(EventId) -> bool,
) -> Result<Option<AppendResult>, E>
where
    E: From<AppendError>,
{
    let mut original: Option<(u64, Position)> = None;
    for (i, event) in part.events.iter().enumerate() {
        let id = event.id.expect("ids are filled in before the writer");
        let Some(found) = stored(id)? else {
            if i > 0 {
                return Err(mixed(part.events[0].id.expect("filled in")).into());
            }
            // Events of one append are all new or all stored: check the rest are new.
            if let Some(id) = part
                .events
                .iter()
                .filter_map(|e| e.id)
                .find(|&id| is_stored(id))
            {
                return Err(mixed(id).into());
            }
            return Ok(None);
        };
        if found.stream != part.stream {
            return Err(AppendError::IdempotencyConflict {
                event_id: id,
                detail: format!("in another stream ({})", found.stream),
            }
            .into());
        }
        if !found.has_same_content(event) {
            return Err(AppendError::IdempotencyConflict {
                event_id: id,
                detail: "with other content".into(),
            }
            .into());
        }
        match original {
            None => original = Some((found.version, found.position)),
            Some((v0, p0)) => {
                if found.version != v0 + i as u64 || found.position <= p0 {
                    return Err(AppendError::IdempotencyConflict {
                        event_id: id,
                        detail: "in another order; retry the stored append unchanged".into(),
                    }
                    .into());
                }
            }
        }
        if i + 1 == part.events.len() {
            let (first_version, first_position) = original.expect("set at the first event");
            return Ok(Some(AppendResult {
                first_version,
                last_version: found.version,
                first_position,
                last_position: found.position,
            }));
        }
    }
    unreachable!("an append has at least one event")
}

/// The rule for a multi-stream append some of whose parts are retries: all parts retried is a
/// retry of the whole (`Some(results)`), none is a new append (`None`), a mix is refused.
pub fn whole_retry(
    appends: &[StreamAppend],
    retried: Vec<AppendResult>,
) -> Result<Option<Vec<AppendResult>>, AppendError> {
    if retried.is_empty() {
        return Ok(None);
    }
    if retried.len() == appends.len() {
        return Ok(Some(retried));
    }
    let event_id = appends
        .iter()
        .find_map(|p| p.events.first()?.id)
        .expect("ids are filled in");
    Err(AppendError::IdempotencyConflict {
        event_id,
        detail: "but other streams of this multi-stream append are new; retry the whole append unchanged or use new ids".into(),
    })
}

fn mixed(event_id: EventId) -> AppendError {
    AppendError::IdempotencyConflict {
        event_id,
        detail:
            "but this append also holds new events; retry the stored append unchanged or use new ids"
                .into(),
    }
}
