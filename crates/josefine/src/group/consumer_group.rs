//! The user's side of a consumer group: [`ConsumerGroup::consume`] runs session after
//! session (Sarama's `Consume` loop) with a [`GroupHandler`] (see [`runner`](super::runner)
//! for a session's life), or [`ConsumerGroup::stream`] hands out records one by one.
//! Non-fatal errors go to [`ConsumerGroup::errors`]; fatal ones end `consume`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::assignor::{Assignor, AssignorKind, RebalanceProtocol};
use super::driver::{Driver, DriverCommand};
use super::errors::{ErrorSink, GroupErrors};
use super::membership::{Membership, MembershipConfig};
use super::runner::SessionRunner;
use super::session::{Claim, Session};
use super::stream::GroupStream;
use crate::backoff::Backoff;
use crate::client::Client;
use crate::consumer::{Consumer, ConsumerBuilder, OffsetReset};
use crate::error::{Error, Result};

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

impl GroupConfig {
    /// Cooperative (KIP-429) only if every configured assignor supports it, as the
    /// Java client decides.
    pub fn cooperative(&self) -> bool {
        let assignors: Vec<Arc<dyn Assignor>> =
            self.assignors.iter().map(|k| k.assignor()).collect();
        RebalanceProtocol::common(assignors.iter().map(|a| a.as_ref()))
            == RebalanceProtocol::Cooperative
    }
}

/// Builds a [`ConsumerGroup`]; each setter names the Kafka property it mirrors.
#[derive(Debug, Clone)]
pub struct ConsumerGroupBuilder {
    client: Client,
    config: GroupConfig,
    consumer: ConsumerBuilder,
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
    /// members to rejoin (so how long a handler may take to finish a claim), and how
    /// long a handler may keep one record before the member leaves the group so that
    /// others take its partitions (it rejoins when the handler returns). Default 5 min.
    pub fn rebalance_timeout(mut self, timeout: Duration) -> Self {
        self.config.rebalance_timeout = timeout;
        self
    }

    /// `group.instance.id` (static membership, KIP-345).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.config.instance_id = Some(id.into());
        self
    }

    /// `partition.assignment.strategy`, in preference order. Default range. The
    /// group rebalances cooperatively (KIP-429: only moved partitions stop) when every
    /// listed assignor supports it, which today means `[CooperativeSticky]`.
    pub fn assignors(mut self, assignors: impl IntoIterator<Item = AssignorKind>) -> Self {
        self.config.assignors = assignors.into_iter().collect();
        self
    }

    /// One assignor; see [`assignors`](Self::assignors).
    pub fn assignor(self, assignor: AssignorKind) -> Self {
        self.assignors([assignor])
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

    /// `retry.backoff.ms` / `retry.backoff.max.ms` for coordinator lookups, retried
    /// joins and committed-offset reads. Default 100 ms to 1 s.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.retry_backoff = Backoff::new(initial, max);
        self
    }

    /// The fetch settings of the claims' consumer (`fetch.min.bytes`,
    /// `fetch.max.wait.ms`, `max.partition.fetch.bytes`, `queued.max.messages.kbytes`,
    /// `isolation.level`, ...), on a [`ConsumerBuilder`]. Its `auto.offset.reset` is
    /// replaced by the group's.
    pub fn consumer(mut self, configure: impl FnOnce(ConsumerBuilder) -> ConsumerBuilder) -> Self {
        self.consumer = configure(self.consumer);
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
        let consumer = self
            .consumer
            .auto_offset_reset(c.auto_offset_reset)
            .build()?;
        Ok(ConsumerGroup {
            inner: Arc::new(GroupInner {
                client: self.client,
                config: Arc::new(self.config),
                consumer,
                driver: Mutex::new(None),
                errors: ErrorSink::default(),
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
    consumer: Consumer,
    errors: ErrorSink,
    /// Commands to the running driver, while `consume` runs.
    driver: Mutex<Option<mpsc::Sender<DriverCommand>>>,
}

impl ConsumerGroup {
    pub fn builder(client: Client, group_id: impl Into<String>) -> ConsumerGroupBuilder {
        ConsumerGroupBuilder {
            consumer: Consumer::builder(client.clone()),
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
    /// until [`close`](Self::close) (then `Ok`) or a fatal error. One `consume` at a
    /// time per group.
    pub async fn consume<H: GroupHandler>(&self, topics: &[&str], handler: H) -> Result<()> {
        if topics.is_empty() {
            return Err(Error::config("consume needs at least one topic"));
        }
        let config = self.inner.config.clone();
        let client = self.inner.client.clone();
        let (sessions_tx, mut sessions) = mpsc::channel(4);
        let (commands_tx, commands) = mpsc::channel(4);
        *self.driver_slot() = Some(commands_tx.clone());
        let assignors: Vec<Arc<dyn Assignor>> =
            config.assignors.iter().map(|k| k.assignor()).collect();
        let cooperative = config.cooperative();
        let driver = Driver {
            client: client.clone(),
            config: config.clone(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assignors,
            sessions: sessions_tx,
            commands,
            owned: Vec::new(),
            owned_generation: -1,
            cooperative,
            protocol: None,
            errors: self.inner.errors.clone(),
        };
        let membership = Membership::new(MembershipConfig {
            session_timeout: config.session_timeout,
            heartbeat_interval: config.heartbeat_interval,
            retry_backoff: config.retry_backoff,
            instance_id: config.instance_id.clone(),
            cooperative,
        });
        tokio::spawn(driver.run(membership));
        let watcher = tokio::spawn(watch_partition_counts(
            client.clone(),
            topics.iter().map(|t| t.to_string()).collect(),
            config.partition_check_interval,
            commands_tx.clone(),
        ));
        let runner = SessionRunner {
            client: &client,
            config: &config,
            consumer: &self.inner.consumer,
            topics,
            handler: &handler,
            errors: &self.inner.errors,
            driver: commands_tx,
        };
        let result = runner.run(&mut sessions).await;
        watcher.abort();
        *self.driver_slot() = None;
        result
    }

    /// Consumes `topics` as a stream of records, for users who want records without
    /// writing a handler; see [`GroupStream`]. The group runs in a background task
    /// until the stream is closed or dropped.
    pub fn stream(&self, topics: &[&str]) -> Result<GroupStream> {
        if topics.is_empty() {
            return Err(Error::config("stream needs at least one topic"));
        }
        Ok(GroupStream::start(self.clone(), topics))
    }

    /// Non-fatal errors from now on: failed commits, handler errors, claims that could
    /// not be opened, a stalled handler (Sarama's `Errors()`). They are logged either
    /// way; a reader that falls far behind skips the oldest.
    pub fn errors(&self) -> GroupErrors {
        self.inner.errors.subscribe()
    }

    /// Ends the current session (committing), leaves the group and makes `consume`
    /// return `Ok`. Does nothing when `consume` is not running.
    pub async fn close(&self) {
        self.request_close().await;
    }

    /// [`close`](Self::close); `false` when no `consume` was running to close.
    pub(crate) async fn request_close(&self) -> bool {
        let driver = self.driver_slot().clone();
        match driver {
            Some(driver) => driver.send(DriverCommand::Close).await.is_ok(),
            None => false,
        }
    }

    fn driver_slot(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<DriverCommand>>> {
        self.inner
            .driver
            .lock()
            .expect("driver lock is never held across a panic")
    }
}

/// Rebalances when a subscribed topic's partition count changes or the topic appears
/// (unlike Sarama's check, this one never stops by itself).
async fn watch_partition_counts(
    client: Client,
    topics: Vec<String>,
    every: Duration,
    driver: mpsc::Sender<DriverCommand>,
) {
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
