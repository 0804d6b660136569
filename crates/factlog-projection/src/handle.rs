//! A running projection as the rest of the program sees it: its status, read at any time, and
//! control requests that the runner carries out between two batches.

use std::sync::Arc;
use std::time::Duration;

use factlog_store::{EventId, ReadError};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::reset::{ResetError, ResetPlan, ResetTarget};
use crate::sink::{ApplyError, DeadLetter, SinkError};
use crate::status::Status;

/// How long a control request waits for the runner (which answers between batches, and may be
/// waiting for an unavailable sink).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) enum Control {
    Pause(oneshot::Sender<Result<(), ControlError>>),
    Resume(oneshot::Sender<Result<(), ControlError>>),
    Reset {
        target: ResetTarget,
        execute: bool,
        reply: oneshot::Sender<Result<ResetPlan, ControlError>>,
    },
    Rebuild(oneshot::Sender<Result<u64, ControlError>>),
    DeadLetters(oneshot::Sender<Result<Vec<DeadLetter>, ControlError>>),
    Retry(u64, oneshot::Sender<Result<(), ControlError>>),
    Skip(u64, oneshot::Sender<Result<(), ControlError>>),
    Stop(oneshot::Sender<()>),
}

impl Control {
    /// Answers a request the runner cannot carry out now.
    pub(crate) fn refuse(self, error: ControlError) {
        match self {
            Control::Pause(r) | Control::Resume(r) | Control::Retry(_, r) | Control::Skip(_, r) => {
                let _ = r.send(Err(error));
            }
            Control::Reset { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Control::Rebuild(r) => {
                let _ = r.send(Err(error));
            }
            Control::DeadLetters(r) => {
                let _ = r.send(Err(error));
            }
            Control::Stop(r) => {
                let _ = r.send(());
            }
        }
    }
}

/// Why a control request failed. It changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("the projection has stopped running")]
    NotRunning,
    #[error("the projection is still registering with its sink; try again shortly")]
    Starting,
    #[error("the projection did not answer within {0:?}: its sink may be unavailable")]
    Busy(Duration),
    #[error("a rebuild is under way; wait for it to finish")]
    Rebuilding,
    #[error("a rebuild (generation {0}) is already under way")]
    AlreadyRebuilding(u64),
    #[error(transparent)]
    Reset(#[from] ResetError),
    #[error("dead letter {0} not found")]
    DeadLetterNotFound(u64),
    #[error("dead letter {id} is {status}, not parked")]
    DeadLetterNotParked { id: u64, status: &'static str },
    #[error("dead letter {id} belongs to generation {generation}, which is no longer live")]
    NotLiveGeneration { id: u64, generation: u64 },
    #[error("event {0} of the dead letter is no longer in the store")]
    EventGone(EventId),
    #[error("retrying dead letter {id} failed again: {message}")]
    RetryFailed { id: u64, message: String },
    #[error("sink: {0}")]
    Sink(SinkError),
    #[error("another runner is applying this projection: {0}")]
    Fenced(String),
    #[error("reading the store: {0}")]
    Read(#[from] ReadError),
}

impl ControlError {
    pub(crate) fn from_sink(error: SinkError) -> Self {
        match error {
            SinkError::DeadLetterNotFound(id) => Self::DeadLetterNotFound(id),
            SinkError::DeadLetterNotParked { id, status } => {
                Self::DeadLetterNotParked { id, status }
            }
            other => Self::Sink(other),
        }
    }

    pub(crate) fn from_apply(error: ApplyError) -> Self {
        match error {
            ApplyError::Sink(e) => Self::from_sink(e),
            fenced @ ApplyError::Fenced { .. } => Self::Fenced(fenced.to_string()),
            event @ ApplyError::Event { .. } => Self::Sink(SinkError::Invalid(event.to_string())),
        }
    }
}

/// A running projection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProjectionHandle {
    status: Arc<Mutex<Status>>,
    control: mpsc::Sender<Control>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl ProjectionHandle {
    pub(crate) fn new(
        status: Arc<Mutex<Status>>,
        control: mpsc::Sender<Control>,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            status,
            control,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// The projection's status as of now.
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    pub fn name(&self) -> crate::ProjectionName {
        self.status.lock().name.clone()
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ControlError>>) -> Control,
    ) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        let send = self.control.send_timeout(make(reply), CONTROL_TIMEOUT);
        send.await.map_err(|e| match e {
            mpsc::error::SendTimeoutError::Timeout(_) => ControlError::Busy(CONTROL_TIMEOUT),
            mpsc::error::SendTimeoutError::Closed(_) => ControlError::NotRunning,
        })?;
        match tokio::time::timeout(CONTROL_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ControlError::NotRunning),
            Err(_) => Err(ControlError::Busy(CONTROL_TIMEOUT)),
        }
    }

    /// Stops applying events (kept across restarts) until resumed.
    pub async fn pause(&self) -> Result<(), ControlError> {
        self.request(Control::Pause).await
    }

    /// Applies events again after a pause, or after a stop by an error (retrying the event).
    pub async fn resume(&self) -> Result<(), ControlError> {
        self.request(Control::Resume).await
    }

    /// Plans a reset of the checkpoint and, with `execute`, carries it out.
    pub async fn reset(
        &self,
        target: ResetTarget,
        execute: bool,
    ) -> Result<ResetPlan, ControlError> {
        self.request(|reply| Control::Reset {
            target,
            execute,
            reply,
        })
        .await
    }

    /// Starts a zero-downtime rebuild: a new generation of the read model is built from the
    /// start of the log beside the live one, and replaces it once it has caught up. Returns the
    /// new generation.
    pub async fn rebuild(&self) -> Result<u64, ControlError> {
        self.request(Control::Rebuild).await
    }

    /// Every dead letter of the projection, oldest first (parked, retried and skipped).
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ControlError> {
        self.request(Control::DeadLetters).await
    }

    /// Applies a parked event again (read from the log), to the live read model; the dead
    /// letter is marked retried in the same unit of work. Retried events are applied out of
    /// their log order.
    pub async fn retry_dead_letter(&self, id: u64) -> Result<(), ControlError> {
        self.request(|reply| Control::Retry(id, reply)).await
    }

    /// Marks a parked event skipped: it is never applied.
    pub async fn skip_dead_letter(&self, id: u64) -> Result<(), ControlError> {
        self.request(|reply| Control::Skip(id, reply)).await
    }

    /// Stops the runner after the batch in progress and waits for it.
    pub async fn stop(&self) {
        let (reply, answer) = oneshot::channel();
        if self.control.send(Control::Stop(reply)).await.is_ok() {
            let _ = answer.await;
        }
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
