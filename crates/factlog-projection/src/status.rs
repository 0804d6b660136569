//! What a projection reports about itself: where it is, how far behind, how fast, and what
//! went wrong last. The runner updates it; status calls and metrics scrapes read it without
//! waiting for the runner.

use std::collections::VecDeque;
use std::time::Instant;

use factlog_store::{Position, Timestamp};
use serde::Serialize;

use crate::projection::{Interest, OnError, ProjectionName};

/// What a projection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Registering with its sink (or waiting for the sink to answer).
    Starting,
    Running,
    Paused,
    /// Running, with a new generation of the read model being built beside the live one.
    Rebuilding,
    /// Stopped by an error (see `lastError`) until it is resumed or reset.
    Stopped,
}

/// A projection's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub name: ProjectionName,
    pub sink: &'static str,
    pub state: State,
    pub interest: Interest,
    pub on_error: OnError,
    /// The live generation of the read model.
    pub generation: u64,
    /// The last position the projection has processed (committed or, for a run of unwanted
    /// events, about to be).
    pub position: Position,
    /// The position committed in the sink with the read model.
    pub committed_position: Position,
    /// The position of the last event of the log when the lag was last measured.
    pub last_position: Position,
    /// Events in the log after `position`.
    pub lag_events: u64,
    /// How long ago the oldest event not yet processed was recorded; 0 when caught up.
    pub lag_seconds: f64,
    /// Events processed per second, over the last ten seconds or so.
    pub events_per_second: f64,
    /// Events read from the log since this runner started, wanted or not.
    pub events_total: u64,
    /// Events handed to the projection's handler and committed since this runner started.
    pub applied_total: u64,
    /// Dead letters waiting to be retried or skipped.
    pub dead_letters_parked: u64,
    pub last_error: Option<LastError>,
    pub rebuild: Option<RebuildStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub message: String,
    pub at: Timestamp,
}

/// A rebuild under way: the generation being built and how far it has come.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildStatus {
    pub generation: u64,
    pub position: Position,
    pub lag_events: u64,
}

/// Samples of the event counter for the rate, one per lag measurement.
#[derive(Debug, Default)]
pub(crate) struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    const SAMPLES_MAX: usize = 11;

    pub(crate) fn sample(&mut self, now: Instant, total: u64) -> f64 {
        if self.samples.len() == Self::SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back((now, total));
        let (first_at, first) = self.samples[0];
        let seconds = now.duration_since(first_at).as_secs_f64();
        if seconds > 0.0 {
            (total - first) as f64 / seconds
        } else {
            0.0
        }
    }
}
