//! The runner: one task per projection that subscribes from the checkpoint, cuts the events into
//! batches, applies each batch in one unit of work of the sink, and answers control requests
//! (pause, resume, reset, rebuild, dead letters) between batches.
//!
//! A projection has a *live lane* (the generation readers see) and, during a rebuild, a
//! *building lane* (the next generation, from the start of the log). Both read the same log with
//! their own subscription and checkpoint; when the building lane has reached the live lane's
//! position the sink swaps them in one transaction.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use factlog_store::{
    Checkpoint, EventFilter, EventStore, Position, ReadAll, RecordedEvent, SubscribeError,
    Timestamp,
};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::mpsc;

use crate::handle::{Control, ControlError, ProjectionHandle};
use crate::projection::{Interest, OnError, Projection, ProjectionOptions};
use crate::reset::{self, ResetPlan, ResetTarget};
use crate::sink::{
    ApplyError, DeadLetter, DeadLetterStatus, NewDeadLetter, Sink, SinkError, Target,
};
use crate::status::{LastError, Rate, RebuildStatus, State, Status};

type Batches = Pin<Box<dyn Stream<Item = Vec<Result<RecordedEvent, SubscribeError>>> + Send>>;

/// How often the runner measures its lag and rate.
const TICK: Duration = Duration::from_secs(1);

/// Control requests waiting for the runner: a bounded queue.
pub(crate) const CONTROL_QUEUE_MAX: usize = 64;

/// Starts `projection` over `store` into `sink`, and returns its handle.
pub fn spawn<S: Sink, P: Projection<S>>(
    store: Arc<dyn EventStore>,
    sink: Arc<S>,
    projection: Arc<P>,
    options: ProjectionOptions,
) -> ProjectionHandle {
    let interest = projection.interest();
    let status = Arc::new(Mutex::new(Status {
        name: options.name.clone(),
        sink: sink.kind(),
        state: State::Starting,
        interest: interest.clone(),
        on_error: options.on_error,
        generation: 0,
        position: Position::START,
        committed_position: Position::START,
        last_position: Position::START,
        lag_events: 0,
        lag_seconds: 0.0,
        events_per_second: 0.0,
        events_total: 0,
        applied_total: 0,
        dead_letters_parked: 0,
        last_error: None,
        rebuild: None,
    }));
    let (control, requests) = mpsc::channel(CONTROL_QUEUE_MAX);
    let runner = Runner {
        store,
        sink,
        projection,
        interest,
        options,
        status: status.clone(),
        live: Lane::new(0, Checkpoint::Total(Position::START), Position::START),
        building: None,
        paused: false,
        stopped: false,
        rate: Rate::default(),
    };
    let task = tokio::spawn(runner.run(requests));
    ProjectionHandle::new(status, control, task)
}

/// One generation being written: its checkpoint and its subscription.
struct Lane {
    generation: u64,
    /// The checkpoint as committed in the sink.
    committed: Checkpoint,
    /// Processed but not yet committed: the end of a run of events the projection does not
    /// want, committed at most every `idle_checkpoint_interval`.
    pending: Option<Checkpoint>,
    /// The place in this node's `$all` order of the last event processed (committed or
    /// pending), and of the last committed: for status and lag.
    position: Position,
    committed_position: Position,
    committed_at: Instant,
    batches: Option<Batches>,
    /// After a subscription error, when to subscribe again.
    resubscribe_at: Option<tokio::time::Instant>,
    subscribe_failures: u32,
}

impl Lane {
    fn new(generation: u64, committed: Checkpoint, position: Position) -> Self {
        Self {
            generation,
            committed,
            pending: None,
            position,
            committed_position: position,
            committed_at: Instant::now(),
            batches: None,
            resubscribe_at: None,
            subscribe_failures: 0,
        }
    }

    /// What has been processed, committed or not: where a new subscription starts.
    fn checkpoint(&self) -> &Checkpoint {
        self.pending.as_ref().unwrap_or(&self.committed)
    }

    fn target(&self, runner_name: &crate::ProjectionName) -> Target {
        Target {
            name: runner_name.clone(),
            generation: self.generation,
            checkpoint: self.committed.clone(),
        }
    }

    fn committed(&mut self, to: Checkpoint, at: Position) {
        self.committed = to;
        self.pending = None;
        self.position = at;
        self.committed_position = at;
        self.committed_at = Instant::now();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Live,
    Building,
}

/// The runner stops applying: a fence, a sink that cannot work, or an event under `OnError::Stop`.
struct Stop(String);

struct EventFailure {
    message: String,
    permanent: bool,
}

struct Runner<S: Sink, P: Projection<S>> {
    store: Arc<dyn EventStore>,
    sink: Arc<S>,
    projection: Arc<P>,
    interest: Interest,
    options: ProjectionOptions,
    status: Arc<Mutex<Status>>,
    live: Lane,
    building: Option<Lane>,
    paused: bool,
    /// Stopped by an error; cleared by resume or reset.
    stopped: bool,
    rate: Rate,
}

impl<S: Sink, P: Projection<S>> Runner<S, P> {
    async fn run(mut self, mut requests: mpsc::Receiver<Control>) {
        if !self.start(&mut requests).await {
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let active = !self.paused && !self.stopped;
            if active {
                self.ensure_subscribed(Which::Live);
                self.ensure_subscribed(Which::Building);
            }
            let live_ready = active && self.live.batches.is_some();
            let building_ready =
                active && self.building.as_ref().is_some_and(|b| b.batches.is_some());
            let resubscribe_at = self.resubscribe_at();
            tokio::select! {
                biased;
                request = requests.recv() => match request {
                    None => return,
                    Some(Control::Stop(reply)) => {
                        let _ = reply.send(());
                        return;
                    }
                    Some(request) => self.control(request).await,
                },
                batch = next(Some(&mut self.live)), if live_ready => {
                    self.process(Which::Live, batch).await;
                }
                batch = next(self.building.as_mut()), if building_ready => {
                    self.process(Which::Building, batch).await;
                    self.swap_if_caught_up().await;
                }
                () = sleep_until(resubscribe_at), if active && resubscribe_at.is_some() => {}
                _ = tick.tick() => self.measure().await,
            }
            self.publish();
        }
    }

    /// Registers the projection with its sink (creating its first generation) or loads where it
    /// was, retrying while the sink is unavailable. False when asked to stop meanwhile.
    async fn start(&mut self, requests: &mut mpsc::Receiver<Control>) -> bool {
        let mut failures = 0;
        loop {
            match self.load().await {
                Ok(()) => {
                    if !self.stopped {
                        self.status.lock().last_error = None;
                    }
                    self.publish();
                    self.measure().await;
                    return true;
                }
                Err(e) => {
                    failures += 1;
                    self.error(format!("starting: {e}"));
                    let wait = self.backoff(failures);
                    tokio::select! {
                        request = requests.recv() => match request {
                            None => return false,
                            Some(Control::Stop(reply)) => {
                                let _ = reply.send(());
                                return false;
                            }
                            Some(request) => request.refuse(ControlError::Starting),
                        },
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn load(&mut self) -> Result<(), ApplyError> {
        let name = &self.options.name.clone();
        let stored = match self.sink.load(name).await? {
            Some(stored) => stored,
            None => {
                let target = Target {
                    name: name.clone(),
                    generation: 1,
                    checkpoint: Checkpoint::start(self.store.ordering()),
                };
                self.sink
                    .create_generation(self.projection.clone(), target, true)
                    .await?;
                self.sink
                    .load(name)
                    .await?
                    .ok_or_else(|| SinkError::Invalid(format!("{name} vanished after creation")))?
            }
        };
        let live = stored.live_generation;
        let committed = stored.checkpoints.get(&live).cloned().ok_or_else(|| {
            SinkError::Invalid(format!(
                "{name} has no checkpoint for its live generation {live}"
            ))
        })?;
        let mut mismatch = None;
        let position = match self.other_ordering(&committed) {
            None => position_of(&*self.store, &committed).await?,
            Some(message) => {
                mismatch = Some(message);
                Position::START
            }
        };
        self.live = Lane::new(live, committed, position);
        self.building = None;
        if let Some((&generation, checkpoint)) = stored.checkpoints.range(live + 1..).next_back() {
            let position = match self.other_ordering(checkpoint) {
                None => position_of(&*self.store, checkpoint).await?,
                Some(message) => {
                    mismatch.get_or_insert(message);
                    Position::START
                }
            };
            self.building = Some(Lane::new(generation, checkpoint.clone(), position));
        }
        if let Some(message) = mismatch {
            self.stop(message);
        }
        self.paused = stored.paused;
        let parked = self
            .sink
            .dead_letters(name)
            .await?
            .iter()
            .filter(|d| d.status == DeadLetterStatus::Parked)
            .count();
        self.status.lock().dead_letters_parked = parked as u64;
        Ok(())
    }

    /// Why `checkpoint` cannot be resumed from here: it is of the other kind than the store's
    /// ordering, because the sink was written by this projection over another backend (an
    /// embedded store's sink given to a Kafka node, say). The runner then stops until a reset
    /// gives it a checkpoint of this store.
    fn other_ordering(&self, checkpoint: &Checkpoint) -> Option<String> {
        let expected = Checkpoint::start(self.store.ordering());
        (std::mem::discriminant(&expected) != std::mem::discriminant(checkpoint)).then(|| {
            format!(
                "the checkpoint {checkpoint} was written over a store ordered otherwise than \
                 this one ({:?}): the read model was built from another backend; reset the \
                 projection (`factlog projections reset --to-earliest --execute` applies every \
                 event again) or point it at a new sink",
                self.store.ordering()
            )
        })
    }

    /// `checkpoint` advanced past `events`.
    fn advanced<'e>(
        &self,
        checkpoint: &Checkpoint,
        events: impl IntoIterator<Item = &'e RecordedEvent>,
    ) -> Checkpoint {
        let mut to = checkpoint.clone();
        for event in events {
            to.advance(self.store.partition_key(event.position), event.position);
        }
        to
    }

    fn lane(&mut self, which: Which) -> Option<&mut Lane> {
        match which {
            Which::Live => Some(&mut self.live),
            Which::Building => self.building.as_mut(),
        }
    }

    fn resubscribe_at(&self) -> Option<tokio::time::Instant> {
        [Some(&self.live), self.building.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|lane| lane.resubscribe_at)
            .min()
    }

    fn ensure_subscribed(&mut self, which: Which) {
        let store = self.store.clone();
        let batch_events_max = self.options.batch_events_max.max(1);
        let linger = self.options.batch_linger;
        let Some(lane) = self.lane(which) else {
            return;
        };
        if lane.batches.is_some()
            || lane
                .resubscribe_at
                .is_some_and(|at| at > tokio::time::Instant::now())
        {
            return;
        }
        lane.resubscribe_at = None;
        let events = store.subscribe_after(lane.checkpoint(), EventFilter::default());
        lane.batches = Some(if linger.is_zero() {
            Box::pin(events.ready_chunks(batch_events_max))
        } else {
            Box::pin(tokio_stream::StreamExt::chunks_timeout(
                events,
                batch_events_max,
                linger,
            ))
        });
    }

    /// Drops a lane's subscription after an error, to subscribe again after a backoff from its
    /// checkpoint.
    fn subscription_failed(&mut self, which: Which, message: String) {
        self.error(format!("subscription: {message}"));
        let backoff_initial = self.options.backoff_initial;
        let backoff_max = self.options.backoff_max;
        if let Some(lane) = self.lane(which) {
            lane.batches = None;
            lane.subscribe_failures += 1;
            let wait = backoff(backoff_initial, backoff_max, lane.subscribe_failures);
            lane.resubscribe_at = Some(tokio::time::Instant::now() + wait);
        }
    }

    async fn process(
        &mut self,
        which: Which,
        batch: Option<Vec<Result<RecordedEvent, SubscribeError>>>,
    ) {
        let Some(batch) = batch else {
            self.subscription_failed(which, "the store ended the subscription".into());
            return;
        };
        let mut events = Vec::with_capacity(batch.len());
        let mut failure = None;
        for item in batch {
            match item {
                Ok(event) => events.push(event),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(last) = events.last() {
            let at = last.position;
            let Some(lane) = self.lane(which) else { return };
            let from = lane.checkpoint().clone();
            let to = self.advanced(&from, &events);
            let read = events.len() as u64;
            let wanted: Vec<RecordedEvent> = events
                .into_iter()
                .filter(|e| self.interest.matches(e))
                .collect();
            if let Err(Stop(message)) = self.apply(which, wanted, to, at).await {
                self.stop(message);
                return;
            }
            if which == Which::Live {
                self.status.lock().events_total += read;
            }
            if let Some(lane) = self.lane(which) {
                lane.subscribe_failures = 0;
            }
        }
        if let Some(message) = failure {
            self.subscription_failed(which, message);
        }
    }

    /// Applies one batch: the wanted events and the checkpoint `to`, in one unit of work; a run
    /// of unwanted events only moves the checkpoint, at most every `idle_checkpoint_interval`.
    async fn apply(
        &mut self,
        which: Which,
        events: Vec<RecordedEvent>,
        to: Checkpoint,
        at: Position,
    ) -> Result<(), Stop> {
        if events.is_empty() {
            let interval = self.options.idle_checkpoint_interval;
            let lane = self.lane(which).expect("a lane being processed exists");
            if lane.committed_at.elapsed() < interval {
                lane.pending = Some(to);
                lane.position = at;
                return Ok(());
            }
        }
        let count = events.len() as u64;
        match self
            .apply_retrying_sink(which, events.clone(), to.clone(), at)
            .await?
        {
            Ok(()) => {
                if which == Which::Live {
                    self.status.lock().applied_total += count;
                }
                Ok(())
            }
            // Find the failing event: apply the batch one event at a time.
            Err(_) => {
                for event in events {
                    let position = event.position;
                    self.apply_one(which, event).await?;
                    if which == Which::Live {
                        self.status.lock().applied_total += 1;
                    }
                    debug_assert_eq!(self.lane(which).map(|l| l.position), Some(position));
                }
                let committed = self.lane(which).map(|l| l.committed.clone());
                if committed.as_ref() != Some(&to)
                    && self
                        .apply_retrying_sink(which, Vec::new(), to, at)
                        .await?
                        .is_err()
                {
                    return Err(Stop("moving the checkpoint failed".into()));
                }
                Ok(())
            }
        }
    }

    /// Applies one event with its attempts; when they run out, parks it or stops.
    async fn apply_one(&mut self, which: Which, event: RecordedEvent) -> Result<(), Stop> {
        let mut attempts = 0u32;
        let mut first_failed_at = None;
        let at = event.position;
        loop {
            let from = self.lane(which).expect("lane").checkpoint().clone();
            let to = self.advanced(&from, [&event]);
            let failure = match self
                .apply_retrying_sink(which, vec![event.clone()], to.clone(), at)
                .await?
            {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            attempts += 1;
            let now = Timestamp::now();
            let first = *first_failed_at.get_or_insert(now);
            let message = format!(
                "event {} ({} version {} at position {}): {}",
                event.id, event.stream, event.version, event.position, failure.message
            );
            self.error(message.clone());
            if failure.permanent || attempts >= self.options.event_attempts_max {
                if self.options.on_error == OnError::Stop {
                    return Err(Stop(message));
                }
                let dead_letter = NewDeadLetter {
                    event,
                    error: failure.message,
                    attempts,
                    first_failed_at: first,
                    last_failed_at: now,
                };
                return self.park(which, dead_letter, to, at).await;
            }
            tokio::time::sleep(self.backoff(attempts)).await;
        }
    }

    async fn park(
        &mut self,
        which: Which,
        dead_letter: NewDeadLetter,
        to: Checkpoint,
        at: Position,
    ) -> Result<(), Stop> {
        let mut failures = 0;
        loop {
            let name = self.options.name.clone();
            let target = self.lane(which).expect("lane").target(&name);
            match self
                .sink
                .park(target, dead_letter.clone(), to.clone())
                .await
            {
                Ok(()) => {
                    self.lane(which).expect("lane").committed(to, at);
                    if which == Which::Live {
                        self.status.lock().dead_letters_parked += 1;
                    }
                    return Ok(());
                }
                Err(ApplyError::Sink(SinkError::Unavailable(message))) => {
                    failures += 1;
                    self.error(message);
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                Err(e) => return Err(Stop(format!("parking an event: {e}"))),
            }
        }
    }

    /// Applies `events` and moves the checkpoint to `to`, retrying for as long as the sink is
    /// unavailable. An event's failure comes back to the caller; anything else stops.
    async fn apply_retrying_sink(
        &mut self,
        which: Which,
        events: Vec<RecordedEvent>,
        to: Checkpoint,
        at: Position,
    ) -> Result<Result<(), EventFailure>, Stop> {
        let mut failures = 0;
        loop {
            let name = self.options.name.clone();
            let target = self.lane(which).expect("lane").target(&name);
            let result = if events.is_empty() {
                self.sink.set_checkpoint(target, to.clone()).await
            } else {
                self.sink
                    .apply(self.projection.clone(), target, events.clone(), to.clone())
                    .await
            };
            match result {
                Ok(()) => {
                    self.lane(which).expect("lane").committed(to, at);
                    return Ok(Ok(()));
                }
                Err(ApplyError::Event {
                    message, permanent, ..
                }) => return Ok(Err(EventFailure { message, permanent })),
                Err(ApplyError::Sink(SinkError::Unavailable(message))) => {
                    failures += 1;
                    self.error(message);
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                // A retry after a commit whose answer was lost (the connection dropped during
                // COMMIT): the checkpoint is already where this unit of work moves it.
                Err(ApplyError::Fenced {
                    found: Some(found), ..
                }) if failures > 0 && found == to => {
                    self.lane(which).expect("lane").committed(to, at);
                    return Ok(Ok(()));
                }
                Err(e) => return Err(Stop(e.to_string())),
            }
        }
    }

    async fn swap_if_caught_up(&mut self) {
        let Some(building) = &self.building else {
            return;
        };
        if !building.checkpoint().reached(self.live.checkpoint()) || self.stopped {
            return;
        }
        let (from, to) = (self.live.generation, building.generation);
        match self.sink.swap(&self.options.name, from, to).await {
            Ok(()) => {
                self.live = self.building.take().expect("checked above");
                tracing::info!(projection = %self.options.name, from, to, "rebuilt generation is live");
            }
            Err(SinkError::Unavailable(message)) => self.error(message),
            Err(e) => self.stop(format!("swapping generation {from} for {to}: {e}")),
        }
    }

    async fn control(&mut self, request: Control) {
        match request {
            Control::Stop(reply) => {
                let _ = reply.send(());
            }
            Control::Pause(reply) => {
                let result = self.set_paused(true).await;
                self.publish();
                let _ = reply.send(result);
            }
            Control::Resume(reply) => {
                let result = self.set_paused(false).await;
                if result.is_ok() && self.stopped {
                    self.stopped = false;
                    self.status.lock().last_error = None;
                }
                self.publish();
                let _ = reply.send(result);
            }
            Control::Reset {
                target,
                execute,
                reply,
            } => {
                let result = self.reset(target, execute).await;
                self.publish();
                let _ = reply.send(result);
            }
            Control::Rebuild(reply) => {
                let result = self.rebuild().await;
                self.publish();
                let _ = reply.send(result);
            }
            Control::DeadLetters(reply) => {
                let result = self
                    .sink
                    .dead_letters(&self.options.name)
                    .await
                    .map_err(ControlError::Sink);
                let _ = reply.send(result);
            }
            Control::Retry(id, reply) => {
                let result = self.retry(id).await;
                let _ = reply.send(result);
            }
            Control::Skip(id, reply) if !dead_letter_id_fits(id) => {
                let _ = reply.send(Err(ControlError::DeadLetterNotFound(id)));
            }
            Control::Skip(id, reply) => {
                let result = self
                    .sink
                    .skip_dead_letter(&self.options.name, id, Timestamp::now())
                    .await
                    .map_err(ControlError::from_sink);
                if result.is_ok() {
                    let mut status = self.status.lock();
                    status.dead_letters_parked = status.dead_letters_parked.saturating_sub(1);
                }
                let _ = reply.send(result);
            }
        }
    }

    async fn set_paused(&mut self, paused: bool) -> Result<(), ControlError> {
        self.sink
            .set_paused(&self.options.name, paused)
            .await
            .map_err(ControlError::Sink)?;
        self.paused = paused;
        if paused {
            // Hold no subscription while paused: resuming reads from the checkpoint.
            for lane in [Some(&mut self.live), self.building.as_mut()]
                .into_iter()
                .flatten()
            {
                lane.batches = None;
            }
        }
        Ok(())
    }

    async fn reset(
        &mut self,
        target: ResetTarget,
        execute: bool,
    ) -> Result<ResetPlan, ControlError> {
        let current = self.live.position;
        let (new, end) = reset::resolve(&*self.store, current, target).await?;
        let mut plan = reset::plan(
            &*self.store,
            self.options.name.clone(),
            self.live.generation,
            target,
            current,
            new,
            end,
        );
        if !execute {
            return Ok(plan);
        }
        if self.building.is_some() {
            return Err(ControlError::Rebuilding);
        }
        let checkpoint = match target {
            ResetTarget::Earliest => Checkpoint::start(self.store.ordering()),
            _ => self.store.checkpoint_at(new).await?,
        };
        let sink_target = self.live.target(&self.options.name);
        self.sink
            .set_checkpoint(sink_target, checkpoint.clone())
            .await
            .map_err(ControlError::from_apply)?;
        self.live.committed(checkpoint, new);
        self.live.batches = None;
        self.live.resubscribe_at = None;
        if self.stopped {
            self.stopped = false;
            self.status.lock().last_error = None;
        }
        plan.executed = true;
        tracing::info!(projection = %self.options.name, from = %current, to = %new, "projection reset");
        Ok(plan)
    }

    async fn rebuild(&mut self) -> Result<u64, ControlError> {
        if let Some(building) = &self.building {
            return Err(ControlError::AlreadyRebuilding(building.generation));
        }
        let generation = self.live.generation + 1;
        let start = Checkpoint::start(self.store.ordering());
        let target = Target {
            name: self.options.name.clone(),
            generation,
            checkpoint: start.clone(),
        };
        self.sink
            .create_generation(self.projection.clone(), target, false)
            .await
            .map_err(ControlError::from_apply)?;
        self.building = Some(Lane::new(generation, start, Position::START));
        tracing::info!(projection = %self.options.name, generation, "rebuild started");
        self.swap_if_caught_up().await;
        Ok(generation)
    }

    async fn retry(&mut self, id: u64) -> Result<(), ControlError> {
        if !dead_letter_id_fits(id) {
            return Err(ControlError::DeadLetterNotFound(id));
        }
        let name = self.options.name.clone();
        let dead_letter: DeadLetter = self
            .sink
            .dead_letters(&name)
            .await
            .map_err(ControlError::Sink)?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or(ControlError::from_sink(SinkError::DeadLetterNotFound(id)))?;
        if dead_letter.status != DeadLetterStatus::Parked {
            return Err(ControlError::from_sink(SinkError::DeadLetterNotParked {
                id,
                status: dead_letter.status.as_str(),
            }));
        }
        if dead_letter.generation != self.live.generation {
            return Err(ControlError::NotLiveGeneration {
                id,
                generation: dead_letter.generation,
            });
        }
        let event = self
            .store
            .read_event_by_id(dead_letter.event_id)
            .await?
            .ok_or(ControlError::EventGone(dead_letter.event_id))?;
        let result = self
            .sink
            .retry_dead_letter(
                self.projection.clone(),
                name.clone(),
                self.live.generation,
                id,
                event,
            )
            .await;
        match result {
            Ok(()) => {
                let mut status = self.status.lock();
                status.dead_letters_parked = status.dead_letters_parked.saturating_sub(1);
                Ok(())
            }
            Err(ApplyError::Event { message, .. }) => {
                self.sink
                    .fail_dead_letter(&name, id, message.clone(), Timestamp::now())
                    .await
                    .map_err(ControlError::Sink)?;
                Err(ControlError::RetryFailed { id, message })
            }
            Err(e) => Err(ControlError::from_apply(e)),
        }
    }

    /// Measures lag and rate for the status.
    async fn measure(&mut self) {
        let Ok(end) = reset::last_position(&*self.store).await else {
            return;
        };
        let position = self.live.position;
        let lag_events = self.store.events_between(position, end);
        let mut lag_seconds = 0.0;
        if lag_events > 0 {
            let read = if position == Position::START {
                ReadAll::forward().limit(1)
            } else {
                ReadAll::forward().from_position(position).limit(2)
            };
            if let Ok(events) = self.store.read_all(read).await
                && let Some(next) = events.iter().find(|e| e.position != position)
            {
                let micros = Timestamp::now().unix_micros() - next.recorded_at.unix_micros();
                lag_seconds = micros.max(0) as f64 / 1e6;
            }
        }
        let mut status = self.status.lock();
        status.last_position = end;
        status.lag_events = lag_events;
        status.lag_seconds = lag_seconds;
        status.events_per_second = self.rate.sample(Instant::now(), status.events_total);
        drop(status);
        self.publish();
    }

    /// Copies the runner's state into the shared status.
    fn publish(&self) {
        let mut status = self.status.lock();
        status.generation = self.live.generation;
        status.position = self.live.position;
        status.committed_position = self.live.committed_position;
        status.lag_events = self
            .store
            .events_between(status.position, status.last_position);
        status.rebuild = self.building.as_ref().map(|b| RebuildStatus {
            generation: b.generation,
            position: b.position,
            lag_events: self.store.events_between(b.position, status.last_position),
        });
        status.state = if self.stopped {
            State::Stopped
        } else if self.paused {
            State::Paused
        } else if self.building.is_some() {
            State::Rebuilding
        } else {
            State::Running
        };
    }

    fn error(&self, message: String) {
        tracing::warn!(projection = %self.options.name, "{message}");
        self.status.lock().last_error = Some(LastError {
            message,
            at: Timestamp::now(),
        });
    }

    fn stop(&mut self, message: String) {
        tracing::error!(projection = %self.options.name, "stopped: {message}");
        self.error(message);
        self.stopped = true;
        for lane in [Some(&mut self.live), self.building.as_mut()]
            .into_iter()
            .flatten()
        {
            lane.batches = None;
            lane.pending = None;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        backoff(
            self.options.backoff_initial,
            self.options.backoff_max,
            attempt,
        )
    }
}

/// A checkpoint's place in this node's `$all` order. (A free function: a future holding
/// `&Runner` would not be `Send`.)
async fn position_of(
    store: &dyn EventStore,
    checkpoint: &Checkpoint,
) -> Result<Position, SinkError> {
    store.position_of(checkpoint).await.map_err(|e| {
        SinkError::Unavailable(format!(
            "finding the checkpoint {checkpoint} in the log: {e}"
        ))
    })
}

/// Sinks number dead letters from 1 in a signed 64-bit column: a larger id names none.
fn dead_letter_id_fits(id: u64) -> bool {
    i64::try_from(id).is_ok()
}

/// Exponential backoff with full jitter: a random wait up to `initial * 2^(attempt - 1)`,
/// capped at `max`.
fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    ceiling.mul_f64(rand::thread_rng().r#gen::<f64>())
}

/// The next batch of a lane's subscription; never ready without one. (`select!` builds this
/// future even for a disabled branch, so it must not assume the lane exists.)
async fn next(lane: Option<&mut Lane>) -> Option<Vec<Result<RecordedEvent, SubscribeError>>> {
    match lane.and_then(|lane| lane.batches.as_mut()) {
        Some(batches) => batches.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
