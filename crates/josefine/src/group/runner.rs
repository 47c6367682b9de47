//! Runs the sessions of [`ConsumerGroup::consume`](super::ConsumerGroup::consume): what
//! the driver's session commands mean for the handler and the offsets.
//!
//! Session life (the seed's `newSession` / `release`): the driver reports a new
//! assignment; committed offsets are fetched (OffsetFetch; else `auto.offset.reset`);
//! `setup` runs; every claim's `consume_claim` runs on its own task (Sarama's goroutine
//! per claim), so a member uses every core and no claim waits for another, for a
//! commit or for a rebalance step. Marked offsets are committed every
//! `auto.commit.interval.ms` by the session's commit task. When the driver says the
//! session ends, every claim is revoked with a deadline (drain on revoke: handlers
//! finish what they hold and mark it), a final commit is made unless membership was
//! lost, `cleanup` runs, and only then does the member rejoin: a partition is never
//! given up with offsets still to commit.
//!
//! Under the cooperative protocol the driver also updates a running session: revoked
//! claims drain and their offsets are committed before the partitions are given up,
//! then new claims start, while the other claims' tasks run on. A watchdog reports a
//! handler that keeps one record for longer than `max.poll.interval.ms`.
//!
//! A handler that fails (returns `Err` or panics) before its claim ended is handled
//! as [`OnHandlerError`] says: its claim restarts from its last mark after a backoff,
//! the member rejoins the group, or `consume` stops with the error.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio::time::Instant;

use super::claims::{Claim, ClaimState, Revocation, RevokeReason, Session, SessionOwner};
use super::config::{GroupConfig, GroupProtocol, OnHandlerError};
use super::driver::{DriverCommand, SessionCommand};
use super::errors::ErrorSink;
use super::handler::GroupHandler;
use super::membership::SessionEnd;
use super::offsets::{fetch_committed_as, OffsetAndMetadata};
use crate::backoff::jitter_unit;
use crate::client::Client;
use crate::consumer::{Consumer, OffsetReset, StartOffset};
use crate::error::{Error, ErrorKind, Result};
use crate::task::{panic_message, OwnedTask};
use crate::TopicPartition;

/// How a session ended early, before its claims started: `Some` ends `consume`.
type EarlyEnd = Option<Result<()>>;

/// What the runner needs; shared by the claim tasks.
pub(crate) struct SessionRunner<H> {
    pub client: Client,
    pub config: Arc<GroupConfig>,
    pub consumer: Consumer,
    pub topics: Vec<String>,
    pub handler: Arc<H>,
    pub errors: ErrorSink,
    pub driver: mpsc::Sender<DriverCommand>,
    pub metrics: crate::metrics::GroupMetrics,
}

/// How a claim's task ended.
enum ClaimExit {
    /// The handler returned (or failed after its claim ended, reported).
    Returned,
    /// The handler failed and the policy says rejoin.
    Rejoin,
    /// The handler failed and the policy says stop `consume`.
    Stop(Error),
}

/// The claims whose task runs, and what the runner must still tell the driver.
struct Claims {
    tasks: JoinSet<ClaimExit>,
    running: HashMap<TopicPartition, AbortHandle>,
    /// The partition of each running task, for the task ids `JoinSet` reports.
    partition_of: HashMap<tokio::task::Id, TopicPartition>,
    /// A handler failed under [`OnHandlerError::Stop`]: `consume` ends with this.
    stop: Option<Error>,
    /// Whether the driver was asked to close (for `stop`).
    close_sent: bool,
    /// A handler failed under [`OnHandlerError::Rejoin`]: ask the driver once.
    rejoin: bool,
}

impl Claims {
    fn new() -> Self {
        Self {
            tasks: JoinSet::new(),
            running: HashMap::new(),
            partition_of: HashMap::new(),
            stop: None,
            close_sent: false,
            rejoin: false,
        }
    }

    fn is_running(&self, tp: &TopicPartition) -> bool {
        self.running.contains_key(tp)
    }

    /// The next claim task that ended, with its partition; `None` when none runs.
    async fn next(
        &mut self,
    ) -> Option<(TopicPartition, std::result::Result<ClaimExit, JoinError>)> {
        loop {
            let (id, result) = match self.tasks.join_next_with_id().await? {
                Ok((id, exit)) => (id, Ok(exit)),
                Err(err) => (err.id(), Err(err)),
            };
            // An aborted task was already forgotten.
            let Some(tp) = self.partition_of.remove(&id) else {
                continue;
            };
            self.running.remove(&tp);
            return Some((tp, result));
        }
    }

    /// Acts on a claim task's end.
    fn ended(
        &mut self,
        session: &Session,
        errors: &ErrorSink,
        tp: TopicPartition,
        result: std::result::Result<ClaimExit, JoinError>,
    ) {
        match result {
            Ok(ClaimExit::Returned) => {}
            Ok(ClaimExit::Rejoin) => {
                // The partition comes back at the next assignment, read from its
                // committed offset: forget the claim once its marks are committed.
                if let Some(state) = session.claim_state(&tp) {
                    state.marks.seal();
                }
                self.rejoin = true;
            }
            Ok(ClaimExit::Stop(err)) => {
                self.stop.get_or_insert(err);
            }
            // The claim's own code catches the handler's panics; this is ours.
            Err(err) => errors.report(
                "a claim's task failed; its partition is idle until the next rebalance",
                Error::new(
                    ErrorKind::Internal,
                    format!("the task of {tp} ended unexpectedly: {err}; please report this bug"),
                ),
            ),
        }
    }

    /// Waits until none of `partitions` has a task running, or until `deadline`:
    /// then the tasks still running are reported and cancelled. Other claims run on.
    async fn drain(
        &mut self,
        session: &Session,
        errors: &ErrorSink,
        partitions: &[TopicPartition],
        deadline: Instant,
    ) {
        // The set shrinks as tasks end: rescanning `partitions` after each would make
        // draining a whole session O(n²).
        let mut left: BTreeSet<TopicPartition> = partitions
            .iter()
            .filter(|tp| self.is_running(tp))
            .cloned()
            .collect();
        let overran = loop {
            if left.is_empty() {
                return;
            }
            tokio::select! {
                ended = self.next() => match ended {
                    Some((tp, result)) => {
                        left.remove(&tp);
                        self.ended(session, errors, tp, result);
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => break left,
            }
        };
        let mut cancelled = HashSet::new();
        for tp in overran {
            if let Some(task) = self.running.remove(&tp) {
                self.partition_of.remove(&task.id());
                task.abort();
                cancelled.insert(task.id());
            }
            if let Some(state) = session.claim_state(&tp) {
                state.marks.seal();
            }
            errors.report(
                "handler overran its drain deadline; its claim is abandoned",
                Error::new(
                    ErrorKind::Handler,
                    format!(
                        "the handler of {tp} was still running at the deadline of its revocation; \
                         it was cancelled and what it marked after the deadline is not committed \
                         (the partition's next owner reads those records again). Return from \
                         consume_claim once Claim::revoked resolves, or raise drain_timeout"
                    ),
                ),
            );
        }
        self.reap(session, errors, cancelled).await;
    }

    /// Waits until the `cancelled` tasks are gone. An aborted task keeps its claim's
    /// reader until the runtime drops it, which lags the abort when its worker thread
    /// is busy; a partition whose reader lives on cannot be read again (by the next
    /// session, or by a claim the next assignment gives back), so the revocation ends
    /// only once they are dropped. Claims that end meanwhile are handled as usual. A
    /// task that never yields cannot be dropped: after a while it is reported and left.
    async fn reap(
        &mut self,
        session: &Session,
        errors: &ErrorSink,
        mut cancelled: HashSet<tokio::task::Id>,
    ) {
        let patience = tokio::time::sleep(REAP_PATIENCE);
        tokio::pin!(patience);
        while !cancelled.is_empty() {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => {
                    let (id, result) = match joined {
                        None => return,
                        Some(Ok((id, exit))) => (id, Ok(exit)),
                        Some(Err(err)) => (err.id(), Err(err)),
                    };
                    if cancelled.remove(&id) {
                        continue;
                    }
                    if let Some(tp) = self.partition_of.remove(&id) {
                        self.running.remove(&tp);
                        self.ended(session, errors, tp, result);
                    }
                }
                _ = &mut patience => {
                    errors.report(
                        "a cancelled handler did not stop",
                        Error::new(
                            ErrorKind::Handler,
                            format!(
                                "{} cancelled handler task(s) did not stop within {REAP_PATIENCE:?} \
                                 (a handler that blocks its thread cannot be cancelled); their \
                                 partitions cannot be read again by this member until they stop",
                                cancelled.len()
                            ),
                        ),
                    );
                    return;
                }
            }
        }
    }
}

/// How long a revocation waits for handler tasks it cancelled to be dropped.
const REAP_PATIENCE: Duration = Duration::from_secs(5);

impl<H: GroupHandler + 'static> SessionRunner<H> {
    /// Runs sessions as the driver starts them until the group closes (`Ok`) or fails.
    /// `None` when the driver went away without saying why.
    pub(super) async fn run(
        &self,
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> Option<Result<()>> {
        let mut stop: Option<Error> = None;
        // When and why the last session ended, until the next starts (a rebalance).
        let mut between: Option<(Instant, SessionEnd)> = None;
        loop {
            let result = match sessions.recv().await {
                None => return None,
                Some(SessionCommand::Closed) => Ok(()),
                Some(SessionCommand::Failed(err)) => Err(err),
                // No session runs: nothing to release or update.
                Some(SessionCommand::End { done, .. }) => {
                    let _ = done.send(());
                    continue;
                }
                Some(SessionCommand::Update { done, .. }) => {
                    let _ = done.send(());
                    continue;
                }
                Some(SessionCommand::Rebalancing) => continue,
                Some(SessionCommand::Start {
                    member_id,
                    generation,
                    partitions,
                }) => {
                    if let Some((since, why)) = between.take() {
                        // The time without an assignment, from the end of the last
                        // session (its drain and commit done) to this one's start.
                        self.metrics
                            .rebalanced(why == SessionEnd::Lost, since.elapsed());
                    }
                    self.metrics.generation.set(generation.get() as f64);
                    let owner = SessionOwner {
                        group: self.config.group_id.clone(),
                        member_id,
                        instance_id: self.config.instance_id.clone(),
                        generation,
                        metrics: self.metrics.clone(),
                    };
                    let span = tracing::info_span!(
                        "session",
                        group = %owner.group,
                        member_id = %owner.member_id,
                        generation = owner.generation.get(),
                    );
                    let mut why = SessionEnd::Rebalance;
                    let session = self.session(owner, partitions, sessions, &mut stop, &mut why);
                    match tracing::Instrument::instrument(session, span).await {
                        Some(result) => result,
                        None => {
                            between = Some((Instant::now(), why));
                            self.metrics.claims.set(0.0);
                            continue;
                        }
                    }
                }
            };
            // A handler's error under `OnHandlerError::Stop` is what `consume` returns.
            return Some(match stop {
                Some(err) => Err(err),
                None => result,
            });
        }
    }

    /// Runs one session to its end. `Some(result)` ends `consume`; `ended` says why
    /// the session ended (left as it was when it ended before its claims opened).
    async fn session(
        &self,
        owner: SessionOwner,
        partitions: Vec<TopicPartition>,
        sessions: &mut mpsc::Receiver<SessionCommand>,
        stop: &mut Option<Error>,
        ended: &mut SessionEnd,
    ) -> EarlyEnd {
        let config = &*self.config;
        let session = Session::new(owner, self.client.clone());
        let opened = match self.open_claims(&session, &partitions, sessions).await {
            Ok(claims) => claims,
            Err(end) => return end,
        };
        if let Err(err) = self.handler.setup(&session).await {
            self.errors.report("handler setup failed", err);
        }
        let mut claims = Claims::new();
        for claim in opened {
            self.start_claim(&session, claim, &mut claims);
        }
        let auto_commit = config.auto_commit.then(|| {
            OwnedTask::spawn(auto_commit(
                session.clone(),
                config.auto_commit_interval,
                self.errors.clone(),
            ))
        });
        let mut watchdog = Watchdog::new(config.rebalance_timeout);
        // A cooperative rebalance under way since then (KIP-429's first round).
        let mut rebalancing_since: Option<Instant> = None;
        let mut watchdog_ticker = tokio::time::interval(watchdog.period());
        watchdog_ticker.tick().await;
        let (why, done, outcome) = loop {
            if let Err(end) = self.tell_driver(&mut claims).await {
                break (SessionEnd::Lost, None, end);
            }
            tokio::select! {
                command = sessions.recv() => match command {
                    Some(SessionCommand::End { why, done }) => break (why, Some(done), None),
                    Some(SessionCommand::Failed(err)) => break (SessionEnd::Lost, None, Some(Err(err))),
                    Some(SessionCommand::Closed) | None => break (SessionEnd::Close, None, Some(Ok(()))),
                    Some(SessionCommand::Rebalancing) => {
                        session.set_rebalancing(true);
                        rebalancing_since.get_or_insert_with(Instant::now);
                    }
                    Some(SessionCommand::Update { generation, partitions, done }) => {
                        let started = rebalancing_since.take().unwrap_or_else(Instant::now);
                        let before = session.claims();
                        let updated = self.update(&session, generation, &partitions, &mut claims, sessions).await;
                        if session.claims() != before {
                            self.metrics.rebalanced(false, started.elapsed());
                        }
                        let _ = done.send(());
                        if let Err(end) = updated {
                            break (SessionEnd::Lost, None, end);
                        }
                    }
                    Some(SessionCommand::Start { .. }) => {
                        tracing::warn!("a session start while one runs; ignored");
                    }
                },
                Some((tp, result)) = claims.next(), if !claims.running.is_empty() => {
                    claims.ended(&session, &self.errors, tp, result);
                }
                _ = watchdog_ticker.tick() => {
                    if let Some(tp) = watchdog.check(&session, |tp| claims.is_running(tp), Instant::now()) {
                        self.errors.report(
                            "handler stalled; leaving the group",
                            Error::new(ErrorKind::Timeout, format!(
                                "the handler of {tp} kept a record for longer than max.poll.interval.ms ({:?}); \
                                 the member leaves the group so others take its partitions, and rejoins when the handler returns",
                                config.rebalance_timeout,
                            )).with_group(&config.group_id),
                        );
                        let _ = self.driver.send(DriverCommand::Stalled).await;
                    }
                }
            }
        };
        *ended = why;
        let reason = match why {
            SessionEnd::Rebalance => RevokeReason::Rebalance,
            SessionEnd::Lost => RevokeReason::Lost,
            SessionEnd::Close => RevokeReason::Close,
        };
        let deadline = Instant::now() + config.drain_timeout();
        session.cancel(Revocation { reason, deadline });
        let all: Vec<TopicPartition> = claims.running.keys().cloned().collect();
        claims.drain(&session, &self.errors, &all, deadline).await;
        for (_, state) in session.claim_states() {
            state.marks.seal();
        }
        if why != SessionEnd::Lost {
            self.commit(
                &session,
                "final commit failed; records after the last commit will be processed again",
            )
            .await;
        }
        drop(auto_commit);
        if let Err(err) = self.handler.cleanup(&session).await {
            self.errors.report("handler cleanup failed", err);
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
        if let Some(err) = claims.stop.take() {
            stop.get_or_insert(err);
        }
        outcome
    }

    /// Passes on what failed handlers asked for: a rejoin, or a close that ends
    /// `consume` with the handler's error once the group is left.
    async fn tell_driver(&self, claims: &mut Claims) -> std::result::Result<(), EarlyEnd> {
        if claims.stop.is_some() && !claims.close_sent {
            claims.close_sent = true;
            if self.driver.send(DriverCommand::Close).await.is_err() {
                return Err(Some(Err(claims.stop.take().expect("checked"))));
            }
        }
        if std::mem::take(&mut claims.rejoin) {
            let _ = self.driver.send(DriverCommand::Rejoin).await;
        }
        Ok(())
    }

    /// A cooperative session's new assignment: revoked claims drain, their offsets are
    /// committed before the partitions are given up, then added claims start; the
    /// other claims run on throughout. `Err` ends the session (and `consume` when it
    /// holds `Some`).
    async fn update(
        &self,
        session: &Session,
        generation: i32,
        partitions: &[TopicPartition],
        claims: &mut Claims,
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> std::result::Result<(), EarlyEnd> {
        session.set_generation(generation);
        session.set_rebalancing(false);
        let assigned: HashSet<&TopicPartition> = partitions.iter().collect();
        let current = session.claim_states();
        let deadline = Instant::now() + self.config.drain_timeout();
        let revoked: Vec<TopicPartition> = current
            .iter()
            .filter(|(tp, _)| !assigned.contains(tp))
            .map(|(tp, state)| {
                state.revoke(Revocation {
                    reason: RevokeReason::Reassigned,
                    deadline,
                });
                tp.clone()
            })
            .collect();
        claims
            .drain(session, &self.errors, &revoked, deadline)
            .await;
        for (tp, state) in &current {
            if !assigned.contains(tp) {
                state.marks.seal();
            }
        }
        // Claims whose handler failed under the rejoin policy were sealed; they are
        // opened again below, from their committed offset.
        let restart: Vec<TopicPartition> = current
            .iter()
            .filter(|(tp, state)| {
                assigned.contains(tp) && state.marks.is_sealed() && !claims.is_running(tp)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        if !revoked.is_empty() || !restart.is_empty() {
            self.commit(
                session,
                "commit of revoked partitions failed; their new owner will process those records again",
            )
            .await;
            session.remove_claims(&revoked);
            session.remove_claims(&restart);
        }
        let owned: HashSet<TopicPartition> = session.claims().into_iter().collect();
        let added: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| !owned.contains(*tp))
            .cloned()
            .collect();
        if !added.is_empty() {
            for claim in self.open_claims(session, &added, sessions).await? {
                self.start_claim(session, claim, claims);
            }
        }
        Ok(())
    }

    fn start_claim(&self, session: &Session, claim: Claim, claims: &mut Claims) {
        let tp = TopicPartition::new(claim.topic(), claim.partition());
        let task = ClaimTask {
            handler: self.handler.clone(),
            session: session.clone(),
            consumer: self.consumer.clone(),
            config: self.config.clone(),
            errors: self.errors.clone(),
            tp: tp.clone(),
        };
        let abort = claims.tasks.spawn(task.run(claim));
        claims.partition_of.insert(abort.id(), tp.clone());
        claims.running.insert(tp, abort);
    }

    /// Opens readers for `partitions` at their committed offsets (else where
    /// `auto.offset.reset` says) and adds them to the session.
    async fn open_claims(
        &self,
        session: &Session,
        partitions: &[TopicPartition],
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> std::result::Result<Vec<Claim>, EarlyEnd> {
        // A regex subscription's topics are the broker's to choose.
        let regex = self.topics.iter().any(|t| t.starts_with('^'));
        let partitions: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| regex || self.topics.iter().any(|t| **t == *tp.topic))
            .cloned()
            .collect();
        let committed = self
            .committed_offsets(session, &partitions, sessions)
            .await?;
        let mut starts = Vec::with_capacity(partitions.len());
        // A partition gone from the metadata (a deleted topic) fails at once, rather
        // than in the start lookup's retries, which every new claim would wait for.
        let known = self.client.check_partitions(&partitions).await;
        for (tp, known) in partitions.iter().zip(known) {
            if let Err(err) = known {
                self.errors
                    .report("cannot consume a claimed partition", err);
                continue;
            }
            let start = match committed.get(tp) {
                Some(c) => StartOffset::Offset(c.offset),
                None => match self.config.auto_offset_reset {
                    OffsetReset::Earliest => StartOffset::Earliest,
                    OffsetReset::Latest => StartOffset::Latest,
                    OffsetReset::None => {
                        self.errors.report(
                            "claimed partition not consumed",
                            Error::config(format!(
                                "{tp} has no committed offset and auto.offset.reset is none"
                            )),
                        );
                        continue;
                    }
                },
            };
            starts.push((tp.clone(), start));
        }
        // The partitions without a commit take one ListOffsets per leader, together.
        let offsets = self.consumer.resolve_all(&starts).await;
        let opened = futures::future::join_all(starts.iter().zip(offsets).filter_map(
            |((tp, _), offset)| match offset {
                Ok(offset) => Some(async move {
                    let start = StartOffset::Offset(offset);
                    let reader = self
                        .consumer
                        .consume_partition(&tp.topic, tp.partition, start)
                        .await;
                    (tp, reader)
                }),
                Err(err) => {
                    self.errors
                        .report("cannot consume a claimed partition", err);
                    None
                }
            },
        ))
        .await;
        let mut claims = Vec::new();
        for (tp, reader) in opened {
            match reader {
                Ok(reader) => {
                    let initial = reader.position();
                    let (start, metadata) = match committed.get(tp) {
                        Some(c) => (c.offset, c.metadata.clone()),
                        None => (initial, None),
                    };
                    let state = session.add_claim(tp.clone(), start, metadata);
                    claims.push(Claim::new(reader, state, initial, session.clone()));
                }
                Err(err) => self
                    .errors
                    .report("cannot consume a claimed partition", err),
            }
        }
        Ok(claims)
    }

    /// OffsetFetch, retried for as long as it fails retriably and the session lasts
    /// (a coordinator loading `__consumer_offsets` may take a while). Only partitions
    /// without a commit use `auto.offset.reset`: falling back to it for a partition
    /// whose commit could not be read would skip records (latest) or repeat them all
    /// (earliest).
    async fn committed_offsets(
        &self,
        session: &Session,
        partitions: &[TopicPartition],
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> std::result::Result<HashMap<TopicPartition, OffsetAndMetadata>, EarlyEnd> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let group = &self.config.group_id;
        let mut failures = 0;
        loop {
            let member = match self.config.protocol {
                GroupProtocol::Consumer => Some((session.member_id(), session.generation())),
                _ => None,
            };
            let fetched = fetch_committed_as(
                &self.client,
                group,
                partitions,
                member,
                self.consumer.reads_committed(),
            )
            .await;
            let err = match fetched {
                Ok(offsets) => return Ok(offsets),
                // A newer member epoch is on its way (the next heartbeat answer):
                // ask again with it, never fall back to auto.offset.reset.
                Err(err)
                    if err.is_retriable()
                        || err.code() == Some(crate::error::KafkaCode::STALE_MEMBER_EPOCH) =>
                {
                    err
                }
                Err(err) => return Err(Some(Err(err))),
            };
            failures += 1;
            tracing::warn!(error = %err, failures, "cannot fetch committed offsets yet; retrying");
            let delay = self.config.retry_backoff.delay(failures, jitter_unit());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                command = sessions.recv() => match command {
                    // Nothing was claimed yet, so there is nothing to commit or release.
                    Some(SessionCommand::End { done, .. }) => {
                        let _ = done.send(());
                        return Err(None);
                    }
                    Some(SessionCommand::Failed(err)) => return Err(Some(Err(err))),
                    Some(SessionCommand::Closed) | None => return Err(Some(Ok(()))),
                    Some(_) => tracing::warn!("a session command while claims open; ignored"),
                },
            }
        }
    }

    /// Commits what was marked; a failure is reported as `what` and the offsets stay
    /// marked for the next commit.
    async fn commit(&self, session: &Session, what: &str) {
        if let Err(err) = session.commit_marked().await {
            self.errors.report(what, err);
        }
    }
}

/// The session's commit task: commits what was marked every `interval`, one commit at
/// a time, off the claims' tasks and the runner's. Commits wait while a cooperative
/// rebalance is under way; the task ends with the session.
async fn auto_commit(session: Session, interval: Duration, errors: ErrorSink) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = session.cancelled() => return,
        }
        if session.is_rebalancing() {
            continue;
        }
        if let Err(err) = session.commit_marked().await {
            errors.report("auto-commit failed; retried at the next one", err);
        }
    }
}

/// One claim's task: runs the handler, and when it fails before the claim ended,
/// applies the handler-error policy.
struct ClaimTask<H> {
    handler: Arc<H>,
    session: Session,
    consumer: Consumer,
    config: Arc<GroupConfig>,
    errors: ErrorSink,
    tp: TopicPartition,
}

impl<H: GroupHandler + 'static> ClaimTask<H> {
    // Not an `async fn`: its parameters would be kept twice (as arguments and as
    // locals), in a future that lives as long as the claim.
    #[allow(clippy::manual_async_fn)]
    fn run(self, first: Claim) -> impl Future<Output = ClaimExit> {
        // Made before the block, which then captures them as they are: a claim moved
        // inside it would take room twice (the captured value and the local).
        let state = first.state();
        let mut claim = Some(first);
        async move {
            let mut failures = 0u32;
            loop {
                if claim.is_some() {
                    // Taken in the call, with no binding of its own across the await.
                    let err = match self.consume(claim.take().expect("checked")).await {
                        Ok(()) => return ClaimExit::Returned,
                        Err(err) => err,
                    };
                    if state.is_revoked() {
                        self.errors.report("consume_claim failed", err);
                        return ClaimExit::Returned;
                    }
                    match self.config.on_handler_error {
                        OnHandlerError::Stop => {
                            // `consume` returns it.
                            tracing::error!(error = %err, "consume_claim failed; consume stops");
                            return ClaimExit::Stop(err);
                        }
                        OnHandlerError::Rejoin => {
                            self.errors
                                .report("consume_claim failed; the member rejoins the group", err);
                            return ClaimExit::Rejoin;
                        }
                        OnHandlerError::RestartClaim => self.errors.report(
                            "consume_claim failed; the claim restarts from its last mark",
                            err,
                        ),
                    }
                }
                failures += 1;
                // Boxed, as `reopen`: a future is as large as all its awaits together, and
                // these two wait only after a handler failed, while the claim's task
                // lives as long as the claim (one per partition).
                let delay = self.config.retry_backoff.delay(failures, jitter_unit());
                let revoked = Box::pin(async {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => false,
                        _ = state.revoked() => true,
                    }
                })
                .await;
                if revoked {
                    return ClaimExit::Returned;
                }
                claim = Box::pin(self.reopen(&state)).await;
            }
        }
    }

    /// The handler's outcome; a panic becomes an error that says so.
    ///
    /// Combinators, not an `async fn`: an async body keeps the handler's future twice
    /// (as a value and as what it awaits), and this future lives in the claim's task
    /// as long as the claim.
    fn consume(&self, claim: Claim) -> impl Future<Output = Result<()>> + '_ {
        let tp = &self.tp;
        AssertUnwindSafe(self.handler.consume_claim(&self.session, claim))
            .catch_unwind()
            .map(move |handled| match handled {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(err.with_topic(&*tp.topic).with_partition(tp.partition)),
                Err(panic) => Err(Error::new(
                    ErrorKind::Handler,
                    format!("consume_claim panicked: {}", panic_message(panic.as_ref())),
                )
                .with_topic(&*tp.topic)
                .with_partition(tp.partition)),
            })
    }

    /// The claim again, from after its last mark; `None` (try again after a backoff)
    /// when the partition cannot be opened now.
    async fn reopen(&self, state: &Arc<ClaimState>) -> Option<Claim> {
        let at = state.marks.resume_at();
        let tp = &self.tp;
        match self
            .consumer
            .consume_partition(&tp.topic, tp.partition, StartOffset::Offset(at))
            .await
        {
            Ok(reader) => Some(Claim::new(reader, state.clone(), at, self.session.clone())),
            Err(err) => {
                self.errors
                    .report("cannot reopen a claim after its handler failed", err);
                None
            }
        }
    }
}

/// Notices a handler that holds one record for longer than `max.poll.interval.ms`:
/// a claim whose poll counter (see `ClaimState`) stays even, and unchanged, that long.
/// A paused claim never stalls.
struct Watchdog {
    limit: Duration,
    /// Per claim, the counter when first seen at that value, and when.
    seen: HashMap<TopicPartition, (u64, Instant)>,
    fired: bool,
}

impl Watchdog {
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            seen: HashMap::new(),
            fired: false,
        }
    }

    fn period(&self) -> Duration {
        (self.limit / 10).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// The first stalled claim among those `running`, once per session.
    fn check(
        &mut self,
        session: &Session,
        running: impl Fn(&TopicPartition) -> bool,
        now: Instant,
    ) -> Option<TopicPartition> {
        if self.fired {
            return None;
        }
        let mut stalled = None;
        for (tp, state) in session.claim_states() {
            let polls = state.polls();
            if !running(&tp) || polls % 2 == 1 || state.is_paused() {
                self.seen.remove(&tp);
                continue;
            }
            match self.seen.get(&tp) {
                Some(&(seen, since)) if seen == polls => {
                    if now.duration_since(since) >= self.limit && stalled.is_none() {
                        stalled = Some(tp);
                    }
                }
                _ => {
                    self.seen.insert(tp, (polls, now));
                }
            }
        }
        self.fired = stalled.is_some();
        stalled
    }
}

#[cfg(test)]
mod tests {
    use super::super::claims::Generation;
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    async fn session(partitions: &[i32]) -> Session {
        let client = Client::builder()
            .bootstrap(["127.0.0.1:1"])
            .build()
            .expect("a client that never connects");
        let session = Session::new(
            SessionOwner {
                group: "g".into(),
                member_id: "m".into(),
                instance_id: None,
                generation: Generation::new(1),
                metrics: crate::metrics::GroupMetrics::new("g"),
            },
            client,
        );
        for &p in partitions {
            session.add_claim(tp(p), 0, None);
        }
        session
    }

    #[tokio::test]
    async fn a_claim_that_keeps_a_record_past_the_limit_is_reported_once() {
        let s = session(&[0, 1]).await;
        let running: HashSet<TopicPartition> = [tp(0), tp(1)].into();
        let mut dog = Watchdog::new(LIMIT);
        let t0 = Instant::now();
        assert_eq!(
            dog.check(&s, |tp| running.contains(tp), t0),
            None,
            "first sight"
        );
        // Claim 1 makes progress (gets a record, processes it, asks again, gets one).
        let states = s.claim_states();
        states[1].1.bump_polls_for_test(4);
        assert_eq!(
            dog.check(&s, |tp| running.contains(tp), t0 + LIMIT / 2),
            None
        );
        assert_eq!(
            dog.check(&s, |tp| running.contains(tp), t0 + LIMIT),
            Some(tp(0))
        );
        assert_eq!(
            dog.check(&s, |tp| running.contains(tp), t0 + LIMIT * 3),
            None,
            "reported once per session"
        );
    }

    #[tokio::test]
    async fn waiting_finished_paused_and_progressing_claims_never_stall() {
        let s = session(&[0, 1, 2, 3]).await;
        let states = s.claim_states();
        // Claim 0 waits for records (odd counter), claim 1's handler returned (not
        // running), claim 2 makes progress between checks, claim 3 is paused.
        states[0].1.bump_polls_for_test(1);
        states[3].1.pause_for_test();
        let running: HashSet<TopicPartition> = [tp(0), tp(2), tp(3)].into();
        let mut dog = Watchdog::new(LIMIT);
        let t0 = Instant::now();
        for step in 0..5u32 {
            assert_eq!(
                dog.check(&s, |tp| running.contains(tp), t0 + LIMIT * step),
                None
            );
            states[2].1.bump_polls_for_test(2);
        }
    }
}
