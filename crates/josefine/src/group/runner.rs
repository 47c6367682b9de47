//! Runs the sessions of [`ConsumerGroup::consume`](super::ConsumerGroup::consume): what
//! the driver's session commands mean for the handler and the offsets.
//!
//! Session life (the seed's `newSession` / `release`): the driver reports a new
//! assignment; committed offsets are fetched (OffsetFetch; else `auto.offset.reset`);
//! `setup` runs; every claim runs `consume_claim` concurrently; marked offsets are
//! committed every `auto.commit.interval.ms`. When the driver says the session ends,
//! claims end (their records stop), a final commit is made unless membership was lost,
//! `cleanup` runs, and only then does the member rejoin: a partition is never given up
//! with offsets still to commit.
//!
//! Under the cooperative protocol the driver also updates a running session: revoked
//! claims end, their offsets are committed, then new claims start, while the other
//! claims never stop. A watchdog reports a handler that keeps one record for longer
//! than `max.poll.interval.ms`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::consumer_group::{GroupConfig, GroupHandler};
use super::driver::{DriverCommand, SessionCommand};
use super::errors::ErrorSink;
use super::membership::SessionEnd;
use super::offsets::fetch_committed;
use super::session::{Claim, Session, SessionOwner};
use crate::backoff::jitter_unit;
use crate::client::Client;
use crate::consumer::{Consumer, OffsetReset, StartOffset};
use crate::error::{Error, ErrorKind, Result};
use crate::TopicPartition;

/// A running `consume_claim`, yielding its partition when the handler returns.
type ClaimTask<'a> = Pin<Box<dyn Future<Output = TopicPartition> + Send + 'a>>;

/// How a session ended early, before its claims started: `Some` ends `consume`.
type EarlyEnd = Option<Result<()>>;

pub(crate) struct SessionRunner<'a, H> {
    pub client: &'a Client,
    pub config: &'a GroupConfig,
    pub consumer: &'a Consumer,
    pub topics: &'a [&'a str],
    pub handler: &'a H,
    pub errors: &'a ErrorSink,
    pub driver: mpsc::Sender<DriverCommand>,
}

/// The claims whose handler is still running.
struct Running<'a> {
    tasks: FuturesUnordered<ClaimTask<'a>>,
    partitions: HashSet<TopicPartition>,
}

impl Running<'_> {
    /// The next claim whose handler returned (`None` when none runs).
    async fn next(&mut self) -> Option<TopicPartition> {
        let tp = self.tasks.next().await?;
        self.partitions.remove(&tp);
        Some(tp)
    }

    /// Waits until none of `partitions` has a handler running; the others keep going.
    async fn wait_for(&mut self, partitions: &[TopicPartition]) {
        while partitions.iter().any(|tp| self.partitions.contains(tp)) {
            if self.next().await.is_none() {
                return;
            }
        }
    }
}

impl<'a, H: GroupHandler> SessionRunner<'a, H> {
    /// Runs sessions as the driver starts them until the group closes (`Ok`) or fails.
    pub async fn run(&self, sessions: &mut mpsc::Receiver<SessionCommand>) -> Result<()> {
        loop {
            match sessions.recv().await {
                None | Some(SessionCommand::Closed) => return Ok(()),
                Some(SessionCommand::Failed(err)) => return Err(err),
                // No session runs: nothing to release or update.
                Some(SessionCommand::End { done, .. }) => {
                    let _ = done.send(());
                }
                Some(SessionCommand::Update { done, .. }) => {
                    let _ = done.send(());
                }
                Some(SessionCommand::Rebalancing) => {}
                Some(SessionCommand::Start {
                    member_id,
                    generation,
                    partitions,
                }) => {
                    let owner = SessionOwner {
                        group: self.config.group_id.clone(),
                        member_id,
                        instance_id: self.config.instance_id.clone(),
                        generation,
                    };
                    if let Some(result) = self.session(owner, partitions, sessions).await {
                        return result;
                    }
                }
            }
        }
    }

    /// Runs one session to its end. `Some(result)` ends `consume`.
    async fn session(
        &self,
        owner: SessionOwner,
        partitions: Vec<TopicPartition>,
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> EarlyEnd {
        let config = self.config;
        let session = Session::new(owner, self.client.clone());
        let claims = match self.open_claims(&session, &partitions, sessions).await {
            Ok(claims) => claims,
            Err(end) => return end,
        };
        if let Err(err) = self.handler.setup(&session).await {
            self.errors.report("handler setup failed", err);
        }
        let mut running = Running {
            tasks: FuturesUnordered::new(),
            partitions: HashSet::new(),
        };
        for claim in claims {
            self.start_claim(&session, claim, &mut running);
        }
        let mut commit_ticker = tokio::time::interval(config.auto_commit_interval);
        commit_ticker.tick().await;
        let mut watchdog = Watchdog::new(config.rebalance_timeout);
        let mut watchdog_ticker = tokio::time::interval(watchdog.period());
        watchdog_ticker.tick().await;
        let (why, done, outcome) = loop {
            tokio::select! {
                command = sessions.recv() => match command {
                    Some(SessionCommand::End { why, done }) => break (why, Some(done), None),
                    Some(SessionCommand::Failed(err)) => break (SessionEnd::Lost, None, Some(Err(err))),
                    Some(SessionCommand::Closed) | None => break (SessionEnd::Close, None, Some(Ok(()))),
                    Some(SessionCommand::Rebalancing) => session.set_rebalancing(true),
                    Some(SessionCommand::Update { generation, partitions, done }) => {
                        let updated = self.update(&session, generation, &partitions, &mut running, sessions).await;
                        let _ = done.send(());
                        if let Err(end) = updated {
                            break (SessionEnd::Lost, None, end);
                        }
                    }
                    Some(SessionCommand::Start { .. }) => {
                        tracing::warn!("a session start while one runs; ignored");
                    }
                },
                _ = commit_ticker.tick(), if config.auto_commit => {
                    if !session.is_rebalancing() {
                        self.commit(&session, "auto-commit failed; retried at the next one").await;
                    }
                }
                _ = watchdog_ticker.tick() => {
                    if let Some(tp) = watchdog.check(&session, &running.partitions, Instant::now()) {
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
                Some(_) = running.next(), if !running.partitions.is_empty() => {
                    // A handler returned before its claim ended; nothing else to do.
                }
            }
        };
        session.cancel();
        while running.next().await.is_some() {}
        if why != SessionEnd::Lost {
            self.commit(
                &session,
                "final commit failed; records after the last commit will be processed again",
            )
            .await;
        }
        if let Err(err) = self.handler.cleanup(&session).await {
            self.errors.report("handler cleanup failed", err);
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
        outcome
    }

    /// A cooperative session's new assignment: revoked claims end, their offsets are
    /// committed before the partitions are given up, then added claims start. `Err`
    /// ends the session (and `consume` when it holds `Some`).
    async fn update(
        &'a self,
        session: &Session,
        generation: i32,
        partitions: &[TopicPartition],
        running: &mut Running<'a>,
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> std::result::Result<(), EarlyEnd> {
        session.set_generation(generation);
        session.set_rebalancing(false);
        let current = session.claim_states();
        let revoked: Vec<TopicPartition> = current
            .iter()
            .filter(|(tp, _)| !partitions.contains(tp))
            .map(|(tp, state)| {
                state.revoke();
                tp.clone()
            })
            .collect();
        if !revoked.is_empty() {
            running.wait_for(&revoked).await;
            self.commit(
                session,
                "commit of revoked partitions failed; their new owner will process those records again",
            )
            .await;
            session.remove_claims(&revoked);
        }
        let added: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| !current.iter().any(|(owned, _)| owned == *tp))
            .cloned()
            .collect();
        if !added.is_empty() {
            for claim in self.open_claims(session, &added, sessions).await? {
                self.start_claim(session, claim, running);
            }
        }
        Ok(())
    }

    fn start_claim(&'a self, session: &Session, claim: Claim, running: &mut Running<'a>) {
        let tp = TopicPartition::new(claim.topic(), claim.partition());
        running.partitions.insert(tp.clone());
        let session = session.clone();
        running.tasks.push(Box::pin(async move {
            if let Err(err) = self.handler.consume_claim(&session, claim).await {
                self.errors.report(
                    "consume_claim failed",
                    err.with_topic(&*tp.topic).with_partition(tp.partition),
                );
            }
            tp
        }));
    }

    /// Opens readers for `partitions` at their committed offsets (else where
    /// `auto.offset.reset` says) and adds them to the session.
    async fn open_claims(
        &self,
        session: &Session,
        partitions: &[TopicPartition],
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> std::result::Result<Vec<Claim>, EarlyEnd> {
        let partitions: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| self.topics.contains(&&*tp.topic))
            .cloned()
            .collect();
        let committed = self.committed_offsets(&partitions, sessions).await?;
        // Claims open concurrently: each may need a ListOffsets round trip.
        let opened = futures::future::join_all(partitions.iter().filter_map(|tp| {
            let start = match committed.get(tp) {
                Some(&offset) => StartOffset::Offset(offset),
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
                        return None;
                    }
                },
            };
            Some(async move {
                (
                    tp,
                    self.consumer
                        .consume_partition(&tp.topic, tp.partition, start)
                        .await,
                )
            })
        }))
        .await;
        let mut claims = Vec::new();
        for (tp, reader) in opened {
            match reader {
                Ok(reader) => {
                    let initial = reader.position();
                    let start = committed.get(tp).copied().unwrap_or(initial);
                    let state = session.add_claim(tp.clone(), start);
                    claims.push(Claim::new(reader, state, initial));
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
        partitions: &[TopicPartition],
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> std::result::Result<HashMap<TopicPartition, i64>, EarlyEnd> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let mut failures = 0;
        loop {
            let err = match fetch_committed(self.client, &self.config.group_id, partitions).await {
                Ok(offsets) => return Ok(offsets),
                Err(err) if err.is_retriable() => err,
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

/// Notices a handler that holds one record for longer than `max.poll.interval.ms`:
/// a claim whose poll counter (see `ClaimState`) stays even, and unchanged, that long.
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

    /// The first stalled claim among `running`, once per session.
    fn check(
        &mut self,
        session: &Session,
        running: &HashSet<TopicPartition>,
        now: Instant,
    ) -> Option<TopicPartition> {
        if self.fired {
            return None;
        }
        let mut stalled = None;
        for (tp, state) in session.claim_states() {
            let polls = state.polls();
            if !running.contains(&tp) || polls % 2 == 1 {
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
                generation: 1,
            },
            client,
        );
        for &p in partitions {
            session.add_claim(tp(p), 0);
        }
        session
    }

    #[tokio::test]
    async fn a_claim_that_keeps_a_record_past_the_limit_is_reported_once() {
        let s = session(&[0, 1]).await;
        let running: HashSet<TopicPartition> = [tp(0), tp(1)].into();
        let mut dog = Watchdog::new(LIMIT);
        let t0 = Instant::now();
        assert_eq!(dog.check(&s, &running, t0), None, "first sight");
        // Claim 1 makes progress (gets a record, processes it, asks again, gets one).
        let states = s.claim_states();
        states[1].1.bump_polls_for_test(4);
        assert_eq!(dog.check(&s, &running, t0 + LIMIT / 2), None);
        assert_eq!(dog.check(&s, &running, t0 + LIMIT), Some(tp(0)));
        assert_eq!(
            dog.check(&s, &running, t0 + LIMIT * 3),
            None,
            "reported once per session"
        );
    }

    #[tokio::test]
    async fn waiting_finished_and_progressing_claims_never_stall() {
        let s = session(&[0, 1, 2]).await;
        let states = s.claim_states();
        // Claim 0 waits for records (odd counter), claim 1's handler returned (not
        // running), claim 2 makes progress between checks.
        states[0].1.bump_polls_for_test(1);
        let running: HashSet<TopicPartition> = [tp(0), tp(2)].into();
        let mut dog = Watchdog::new(LIMIT);
        let t0 = Instant::now();
        for step in 0..5u32 {
            assert_eq!(dog.check(&s, &running, t0 + LIMIT * step), None);
            states[2].1.bump_polls_for_test(2);
        }
    }
}
