//! The user's side of a consumer group: [`ConsumerGroup::consume`] runs session after
//! session (Sarama's `Consume` loop), a [`GroupHandler`] processes each session's
//! claims, and the offset manager commits what the handler marked.
//!
//! Session life (the seed's `newSession` / `release`): the driver reports a new
//! assignment; committed offsets are fetched (OffsetFetch; else `auto.offset.reset`);
//! `setup` runs; every claim runs `consume_claim` concurrently; marked offsets are
//! committed every `auto.commit.interval.ms`. When the driver says the session ends,
//! claims end (their records stop), a final commit is made unless membership was lost,
//! `cleanup` runs, and only then does the member rejoin: a partition is never given up
//! with offsets still to commit.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::assignor::{Assignor, AssignorKind};
use super::driver::{Driver, DriverCommand, SessionCommand};
use super::membership::{Membership, MembershipConfig, SessionEnd};
use super::offsets::{commit, fetch_committed, Committer};
use super::session::{Claim, Session};
use crate::backoff::{jitter_unit, Backoff};
use crate::client::Client;
use crate::consumer::{Consumer, OffsetReset, StartOffset};
use crate::error::{Error, ErrorKind, Result};
use crate::TopicPartition;

/// What the application does with a session's claims (Sarama's
/// `ConsumerGroupHandler`). `consume_claim` runs once per claimed partition, all
/// concurrently; it should return when the claim's records end.
pub trait GroupHandler: Send + Sync {
    /// Before any claim is consumed.
    fn setup(&self, _session: &Session) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Processes one claimed partition until its records end.
    fn consume_claim(
        &self,
        session: &Session,
        claim: Claim,
    ) -> impl Future<Output = Result<()>> + Send;

    /// After every claim returned and the final commit, before the member rejoins.
    fn cleanup(&self, _session: &Session) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// Validated group settings.
#[derive(Debug, Clone)]
pub(crate) struct GroupConfig {
    pub group_id: String,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub rebalance_timeout: Duration,
    pub instance_id: Option<String>,
    pub assignors: Vec<AssignorKind>,
    pub auto_offset_reset: OffsetReset,
    pub auto_commit: bool,
    pub auto_commit_interval: Duration,
    pub partition_check_interval: Duration,
    pub retry_backoff: Backoff,
}

/// Builds a [`ConsumerGroup`]; each setter names the Kafka property it mirrors.
#[derive(Debug, Clone)]
pub struct ConsumerGroupBuilder {
    client: Client,
    config: GroupConfig,
}

impl ConsumerGroupBuilder {
    /// `session.timeout.ms`. Default 45 s.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.config.session_timeout = timeout;
        self
    }

    /// `heartbeat.interval.ms`. Default 3 s; keep it under a third of the session timeout.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self
    }

    /// `max.poll.interval.ms` / `rebalance.timeout.ms`: how long the group waits for
    /// members to rejoin (so how long a handler may take to finish a claim). Default 5 min.
    pub fn rebalance_timeout(mut self, timeout: Duration) -> Self {
        self.config.rebalance_timeout = timeout;
        self
    }

    /// `group.instance.id` (static membership, KIP-345).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.config.instance_id = Some(id.into());
        self
    }

    /// `partition.assignment.strategy`, in preference order. Default range.
    pub fn assignors(mut self, assignors: impl IntoIterator<Item = AssignorKind>) -> Self {
        self.config.assignors = assignors.into_iter().collect();
        self
    }

    /// `auto.offset.reset` for partitions without a committed offset. Default latest.
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.config.auto_offset_reset = reset;
        self
    }

    /// `enable.auto.commit`: commit marked offsets every interval. Default true. Either
    /// way marked offsets are committed when a session ends.
    pub fn auto_commit(mut self, enable: bool) -> Self {
        self.config.auto_commit = enable;
        self
    }

    /// `auto.commit.interval.ms`. Default 5 s.
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.config.auto_commit_interval = interval;
        self
    }

    /// How often subscribed topics are checked for new partitions (or for appearing);
    /// a change rebalances the group (the seed's `loopCheckPartitionNumbers`). Default 10 s.
    pub fn partition_check_interval(mut self, interval: Duration) -> Self {
        self.config.partition_check_interval = interval;
        self
    }

    pub fn build(self) -> Result<ConsumerGroup> {
        let c = &self.config;
        if c.group_id.is_empty() {
            return Err(Error::config("group.id must not be empty"));
        }
        if c.heartbeat_interval >= c.session_timeout {
            return Err(Error::config(
                "heartbeat.interval.ms must be lower than session.timeout.ms",
            ));
        }
        if c.assignors.is_empty() {
            return Err(Error::config(
                "partition.assignment.strategy names no assignor",
            ));
        }
        if c.assignors.contains(&AssignorKind::CooperativeSticky) {
            return Err(Error::config(
                "cooperative-sticky needs incremental rebalancing, which this version does not do yet; \
                 use range, roundrobin or sticky",
            ));
        }
        Ok(ConsumerGroup {
            inner: Arc::new(GroupInner {
                client: self.client,
                config: Arc::new(self.config),
                driver: Mutex::new(None),
            }),
        })
    }
}

/// A consumer group member; see the module docs.
#[derive(Clone)]
pub struct ConsumerGroup {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    client: Client,
    config: Arc<GroupConfig>,
    /// Commands to the running driver, while `consume` runs.
    driver: Mutex<Option<mpsc::Sender<DriverCommand>>>,
}

impl ConsumerGroup {
    pub fn builder(client: Client, group_id: impl Into<String>) -> ConsumerGroupBuilder {
        ConsumerGroupBuilder {
            client,
            config: GroupConfig {
                group_id: group_id.into(),
                session_timeout: Duration::from_secs(45),
                heartbeat_interval: Duration::from_secs(3),
                rebalance_timeout: Duration::from_secs(300),
                instance_id: None,
                assignors: vec![AssignorKind::Range],
                auto_offset_reset: OffsetReset::Latest,
                auto_commit: true,
                auto_commit_interval: Duration::from_secs(5),
                partition_check_interval: Duration::from_secs(10),
                retry_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            },
        }
    }

    /// Joins the group and consumes `topics` with `handler`, session after session,
    /// until [`close`](Self::close) (then `Ok`) or a fatal error.
    pub async fn consume<H: GroupHandler>(&self, topics: &[&str], handler: H) -> Result<()> {
        let config = self.inner.config.clone();
        let client = self.inner.client.clone();
        let (sessions_tx, mut sessions) = mpsc::channel(4);
        let (commands_tx, commands) = mpsc::channel(4);
        *self
            .inner
            .driver
            .lock()
            .expect("driver lock is never held across a panic") = Some(commands_tx);
        let assignors: Vec<Arc<dyn Assignor>> =
            config.assignors.iter().map(|k| k.assignor()).collect();
        let driver = Driver {
            client: client.clone(),
            config: config.clone(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assignors,
            sessions: sessions_tx,
            commands,
            owned: Vec::new(),
            protocol: None,
        };
        let membership = Membership::new(MembershipConfig {
            session_timeout: config.session_timeout,
            heartbeat_interval: config.heartbeat_interval,
            retry_backoff: config.retry_backoff,
            instance_id: config.instance_id.clone(),
        });
        tokio::spawn(driver.run(membership));
        let watcher = tokio::spawn(watch_partition_counts(
            client.clone(),
            topics.iter().map(|t| t.to_string()).collect(),
            config.partition_check_interval,
            commands_tx_for_watch(&self.inner),
        ));
        let consumer = Consumer::builder(client.clone())
            .auto_offset_reset(config.auto_offset_reset)
            .build()?;
        let result = loop {
            match sessions.recv().await {
                None | Some(SessionCommand::Closed) => break Ok(()),
                Some(SessionCommand::Failed(err)) => break Err(err),
                Some(SessionCommand::End { done, .. }) => {
                    let _ = done.send(());
                }
                Some(SessionCommand::Start {
                    member_id,
                    generation,
                    partitions,
                }) => {
                    let runner = SessionRunner {
                        client: &client,
                        config: &config,
                        consumer: &consumer,
                        topics,
                    };
                    if let Some(result) = runner
                        .run(&handler, member_id, generation, partitions, &mut sessions)
                        .await
                    {
                        break result;
                    }
                }
            }
        };
        watcher.abort();
        *self
            .inner
            .driver
            .lock()
            .expect("driver lock is never held across a panic") = None;
        result
    }

    /// Ends the current session (committing), leaves the group and makes `consume`
    /// return `Ok`.
    pub async fn close(&self) {
        let driver = self
            .inner
            .driver
            .lock()
            .expect("driver lock is never held across a panic")
            .clone();
        if let Some(driver) = driver {
            let _ = driver.send(DriverCommand::Close).await;
        }
    }
}

fn commands_tx_for_watch(inner: &GroupInner) -> Option<mpsc::Sender<DriverCommand>> {
    inner
        .driver
        .lock()
        .expect("driver lock is never held across a panic")
        .clone()
}

/// Rebalances when a subscribed topic's partition count changes or the topic appears
/// (unlike Sarama's check, this one never stops by itself).
async fn watch_partition_counts(
    client: Client,
    topics: Vec<String>,
    every: Duration,
    driver: Option<mpsc::Sender<DriverCommand>>,
) {
    let Some(driver) = driver else { return };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let counts = |md: &crate::ClusterMetadata| -> Vec<Option<usize>> {
        topics
            .iter()
            .map(|t| {
                md.topic(t)
                    .filter(|m| m.error.is_none())
                    .map(|m| m.partitions.len())
            })
            .collect()
    };
    let mut known: Option<Vec<Option<usize>>> = client
        .refresh_metadata(&names)
        .await
        .ok()
        .map(|md| counts(&md));
    loop {
        tokio::time::sleep(every).await;
        let Ok(md) = client.refresh_metadata(&names).await else {
            continue;
        };
        let now = counts(&md);
        if known.as_ref().is_some_and(|k| *k != now) {
            tracing::info!(?topics, "subscribed topics changed; rebalancing");
            if driver.send(DriverCommand::Rejoin).await.is_err() {
                return;
            }
        }
        known = Some(now);
    }
}

struct SessionRunner<'a> {
    client: &'a Client,
    config: &'a GroupConfig,
    consumer: &'a Consumer,
    topics: &'a [&'a str],
}

impl SessionRunner<'_> {
    /// Runs one session to its end. `Some(result)` ends `consume`.
    async fn run<H: GroupHandler>(
        &self,
        handler: &H,
        member_id: String,
        generation: i32,
        partitions: Vec<TopicPartition>,
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> Option<Result<()>> {
        let config = self.config;
        let partitions: Vec<TopicPartition> = partitions
            .into_iter()
            .filter(|tp| self.topics.contains(&&*tp.topic))
            .collect();
        let committer = Committer {
            group: config.group_id.clone(),
            member_id: member_id.clone(),
            generation,
            instance_id: config.instance_id.clone(),
        };
        let committed = match self.committed_offsets(&partitions, sessions).await {
            Ok(committed) => committed,
            Err(outcome) => return outcome,
        };
        let mut claims = Vec::new();
        let mut starts = Vec::new();
        // Claims open concurrently: each may need a ListOffsets round trip.
        let opened = futures::future::join_all(partitions.iter().filter_map(|tp| {
            let start = match committed.get(tp) {
                Some(&offset) => StartOffset::Offset(offset),
                None => match config.auto_offset_reset {
                    OffsetReset::Earliest => StartOffset::Earliest,
                    OffsetReset::Latest => StartOffset::Latest,
                    OffsetReset::None => {
                        tracing::error!(partition = %tp, "no committed offset and auto.offset.reset is none; not consuming it");
                        return None;
                    }
                },
            };
            Some(async move { (tp, self.consumer.consume_partition(&tp.topic, tp.partition, start).await) })
        }))
        .await;
        for (tp, reader) in opened {
            match reader {
                Ok(reader) => {
                    let initial = reader.position();
                    starts.push((tp.clone(), committed.get(tp).copied().unwrap_or(initial)));
                    claims.push((reader, initial));
                }
                Err(err) => {
                    tracing::error!(partition = %tp, error = %err, "cannot consume claimed partition")
                }
            }
        }
        let session = Session::new(config.group_id.clone(), member_id, generation, starts);
        if let Err(err) = handler.setup(&session).await {
            tracing::error!(error = %err, "handler setup failed");
        }
        let claim_tasks = futures::future::join_all(claims.into_iter().map(|(reader, initial)| {
            let claim = Claim::new(reader, session.clone(), initial);
            let (topic, partition) = (claim.topic().to_string(), claim.partition());
            let session = &session;
            async move {
                if let Err(err) = handler.consume_claim(session, claim).await {
                    tracing::error!(topic, partition, error = %err, "consume_claim failed");
                }
            }
        }));
        tokio::pin!(claim_tasks);
        let mut claims_done = false;
        let mut ticker = tokio::time::interval(config.auto_commit_interval);
        ticker.tick().await;
        let (why, done, outcome) = loop {
            tokio::select! {
                command = sessions.recv() => match command {
                    Some(SessionCommand::End { why, done }) => break (why, Some(done), None),
                    Some(SessionCommand::Failed(err)) => break (SessionEnd::Lost, None, Some(Err(err))),
                    Some(SessionCommand::Closed) | None => break (SessionEnd::Close, None, Some(Ok(()))),
                    Some(SessionCommand::Start { .. }) => {
                        tracing::warn!("a session start while one runs; ignored");
                    }
                },
                _ = ticker.tick(), if config.auto_commit => {
                    self.commit_marked(&session, &committer).await;
                }
                _ = &mut claim_tasks, if !claims_done => claims_done = true,
            }
        };
        session.cancel();
        if !claims_done {
            claim_tasks.await;
        }
        if why != SessionEnd::Lost {
            self.commit_marked(&session, &committer).await;
        }
        if let Err(err) = handler.cleanup(&session).await {
            tracing::error!(error = %err, "handler cleanup failed");
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
        outcome
    }

    /// OffsetFetch, retried for as long as it fails retriably and the session lasts
    /// (a coordinator loading `__consumer_offsets` may take a while). Only partitions
    /// without a commit use `auto.offset.reset`: falling back to it for a partition
    /// whose commit could not be read would skip records (latest) or repeat them all
    /// (earliest). `Err` is how `run` ends when the session ends first, or when the
    /// error cannot be retried.
    async fn committed_offsets(
        &self,
        partitions: &[TopicPartition],
        sessions: &mut mpsc::Receiver<SessionCommand>,
    ) -> std::result::Result<std::collections::HashMap<TopicPartition, i64>, Option<Result<()>>>
    {
        let mut failures = 0;
        loop {
            let err = match fetch_committed(self.client, &self.config.group_id, partitions).await {
                Ok(offsets) => return Ok(offsets),
                Err(err) if err.is_retriable() => err,
                Err(err) => {
                    tracing::error!(error = %err, "cannot fetch committed offsets");
                    return Err(Some(Err(err)));
                }
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
                    Some(SessionCommand::Start { .. }) => {
                        tracing::warn!("a session start while one runs; ignored");
                    }
                },
            }
        }
    }

    /// Commits what was marked since the last commit. Failures are logged and the
    /// offsets stay dirty for the next try.
    async fn commit_marked(&self, session: &Session, committer: &Committer) {
        let dirty = session.dirty_offsets();
        if dirty.is_empty() {
            return;
        }
        match commit(self.client, committer, &dirty).await {
            Ok(()) => session.committed(&dirty),
            Err(err) => {
                let level_is_error =
                    !matches!(err.kind(), ErrorKind::Kafka(_)) || !err.is_retriable();
                if level_is_error {
                    tracing::error!(error = %err, "offset commit failed");
                } else {
                    tracing::warn!(error = %err, "offset commit failed; retried at the next commit");
                }
            }
        }
    }
}
