//! The user's side of a consumer group: [`ConsumerGroup::consume`] runs session after
//! session (Sarama's `Consume` loop) with a [`GroupHandler`] (see [`runner`](super::runner)
//! for a session's life), or [`ConsumerGroup::stream`] hands out records one by one.
//! Non-fatal errors go to [`ConsumerGroup::errors`]; fatal ones end `consume`.
//!
//! Layering: this facade imports the layers below it (the drivers, the runner, the
//! handlers of `process` and `transact`, the settings in [`config`](super::config));
//! none of them imports it. The record and claim streams are built on top of it, so
//! `stream` and `claims` are defined in [`stream`](super::stream).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::assignor::{Assignor, AssignorKind};
use super::config::{GroupConfig, GroupProtocol, OnHandlerError};
use super::driver::{Driver, DriverCommand};
use super::errors::{ErrorSink, GroupErrors};
use super::handler::GroupHandler;
use super::kip848;
use super::kip848::membership::Subscription;
use super::membership::{Membership, MembershipConfig};
use super::process::{ProcessOptions, Processor};
use super::runner::SessionRunner;
use super::transact::Transactor;
use crate::backoff::Backoff;
use crate::client::Client;
use crate::consumer::{Consumer, ConsumerBuilder, OffsetReset};
use crate::error::{Error, ErrorKind, Result};
use crate::task::{panic_message, OwnedTask};

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

    /// How long a revoked claim's handler has to finish the records it holds and mark
    /// them (drain on revoke; see [`Claim::revoked`](super::Claim::revoked)). A
    /// handler still running then is cancelled and its later marks are not committed.
    /// Default: half the rebalance timeout, which leaves the other half for the commit
    /// and the rejoin.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = Some(timeout);
        self
    }

    /// How long [`ConsumerGroup::close`] waits for the drain, the final commit and
    /// the LeaveGroup. Default: the rebalance timeout.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = Some(timeout);
        self
    }

    /// What a failing or panicking handler leads to; see [`OnHandlerError`]. Default
    /// [`OnHandlerError::RestartClaim`].
    pub fn on_handler_error(mut self, policy: OnHandlerError) -> Self {
        self.config.on_handler_error = policy;
        self
    }

    /// `group.protocol`; see [`GroupProtocol`]. Default classic: the consumer
    /// protocol needs Kafka 4.0+, and the classic one runs on every broker.
    pub fn protocol(mut self, protocol: GroupProtocol) -> Self {
        self.config.protocol = protocol;
        self
    }

    /// `group.remote.assignor` under the consumer protocol: the broker-side assignor
    /// (`uniform` or `range` on Apache Kafka). Default: the broker's first.
    pub fn remote_assignor(mut self, name: impl Into<String>) -> Self {
        self.config.remote_assignor = Some(name.into());
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

    /// Checks the settings and builds the group member; no I/O (the member joins once
    /// [`consume`](ConsumerGroup::consume) or a stream starts). An
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) error names a bad setting.
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
                closed: AtomicBool::new(false),
                active: watch::Sender::new(false),
            }),
        })
    }
}

/// A consumer group member; see the module docs.
///
/// ```no_run
/// # async fn demo(client: josefine::Client) -> josefine::Result<()> {
/// use futures::StreamExt;
/// use josefine::{ConsumerGroup, OffsetReset};
/// let group = ConsumerGroup::builder(client, "orders-service")
///     .auto_offset_reset(OffsetReset::Earliest)
///     .build()?;
/// let mut records = group.stream(&["orders"])?;
/// while let Some(record) = records.next().await {
///     let record = record?;
///     println!("{}/{} offset {}", record.topic(), record.partition(), record.offset());
///     // Committed by the next commit, never before this line.
///     record.mark();
/// }
/// # Ok(()) }
/// ```
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
    /// `close` was called: `consume` ends, or returns at once if not started yet.
    closed: AtomicBool,
    /// Whether `consume` runs.
    active: watch::Sender<bool>,
}

impl ConsumerGroup {
    /// A builder for a member of `group_id` (`group.id`) with the defaults:
    /// `session.timeout.ms` 45 s, `heartbeat.interval.ms` 3 s,
    /// `max.poll.interval.ms` 5 min, the range assignor, `auto.offset.reset` latest,
    /// auto-commit every 5 s, the classic protocol.
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
                drain_timeout: None,
                close_timeout: None,
                on_handler_error: OnHandlerError::RestartClaim,
                protocol: GroupProtocol::Classic,
                remote_assignor: None,
            },
        }
    }

    /// Joins the group and consumes `topics` with `handler`, session after session,
    /// until [`close`](Self::close) (then `Ok`) or a fatal error. One `consume` at a
    /// time per group; on a closed group it returns `Ok` at once. Dropping the future
    /// stops every task it started (the member leaves without a LeaveGroup: the
    /// coordinator drops it after the session timeout).
    pub async fn consume<H: GroupHandler + 'static>(
        &self,
        topics: &[&str],
        handler: H,
    ) -> Result<()> {
        if topics.is_empty() {
            return Err(Error::config("consume needs at least one topic"));
        }
        let config = self.inner.config.clone();
        let client = self.inner.client.clone();
        let (sessions_tx, mut sessions) = mpsc::channel(4);
        let (commands_tx, commands) = mpsc::channel(4);
        let _active = Active::start(self, commands_tx.clone());
        // After the driver slot is set, so a concurrent `close` either sees the slot
        // or set the flag before this reads it.
        if self.inner.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let subscription = subscription(topics, config.protocol)?;
        let metrics = crate::metrics::GroupMetrics::new(&config.group_id);
        let (driver, _watcher) = match config.protocol {
            GroupProtocol::Classic => {
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
                    deferred: Default::default(),
                    rebalance_link: Default::default(),
                    owned: Vec::new(),
                    owned_generation: -1,
                    cooperative,
                    protocol: None,
                    errors: self.inner.errors.clone(),
                    metrics: metrics.clone(),
                };
                let membership = Membership::new(MembershipConfig {
                    session_timeout: config.session_timeout,
                    heartbeat_interval: config.heartbeat_interval,
                    retry_backoff: config.retry_backoff,
                    instance_id: config.instance_id.clone(),
                    cooperative,
                });
                let watcher = OwnedTask::spawn(watch_partition_counts(
                    client.clone(),
                    topics.iter().map(|t| t.to_string()).collect(),
                    config.partition_check_interval,
                    commands_tx.clone(),
                ));
                (OwnedTask::spawn(driver.run(membership)), Some(watcher))
            }
            // The broker watches partition counts and regex matches itself.
            GroupProtocol::Consumer => {
                let membership = kip848::membership::Membership::new(
                    kip848::membership::Config {
                        instance_id: config.instance_id.clone(),
                        session_timeout: config.session_timeout,
                        heartbeat_interval: config.heartbeat_interval,
                        retry_backoff: config.retry_backoff,
                    },
                    Box::new(kip848::membership::random_member_id),
                );
                let driver = kip848::driver::Driver::new(
                    client.clone(),
                    config.clone(),
                    subscription,
                    sessions_tx,
                    commands,
                    metrics.clone(),
                );
                (OwnedTask::spawn(driver.run(membership)), None)
            }
        };
        let runner = SessionRunner {
            client,
            config,
            consumer: self.inner.consumer.clone(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            handler: Arc::new(handler),
            errors: self.inner.errors.clone(),
            driver: commands_tx,
            metrics,
        };
        match runner.run(&mut sessions).await {
            Some(result) => result,
            // The driver went away without a word: it panicked.
            None => match driver.join().await {
                Err(err) if err.is_panic() => Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "the group's membership task panicked: {}; please report this bug",
                        panic_message(err.into_panic().as_ref())
                    ),
                )
                .with_group(&self.inner.config.group_id)),
                _ => Err(Error::new(
                    ErrorKind::Internal,
                    "the group's membership task ended without a reason; please report this bug",
                )
                .with_group(&self.inner.config.group_id)),
            },
        }
    }

    /// Runs `work` on every record of `topics`, many at a time, as `options` say:
    /// records of one key (or one partition, or none) in order, at most
    /// `max_in_flight` at once over the member's partitions, failed records retried
    /// and then dead-lettered, commits gap-free (the lowest unfinished offset, with the
    /// finished ones above it in the commit's metadata, so a member taking a
    /// partition over skips them). See [`Processor`] and the
    /// `process` module docs. Returns as [`consume`](Self::consume) does.
    ///
    /// ```no_run
    /// # async fn run(group: josefine::ConsumerGroup) -> josefine::Result<()> {
    /// use josefine::{ProcessOptions, ProcessOrder};
    /// let options = ProcessOptions::new(ProcessOrder::Key, 200);
    /// group
    ///     .process(&["orders"], options, |record| async move {
    ///         // An HTTP call, a database write...
    ///         let _ = record.value();
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn process<F, Fut, E>(
        &self,
        topics: &[&str],
        options: ProcessOptions,
        work: F,
    ) -> Result<()>
    where
        F: Fn(crate::consumer::ConsumerRecord) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        self.consume(topics, Processor::new(options, work)).await
    }

    /// Exactly-once consume-transform-produce: `work` turns every record of `topics`
    /// into output records, which `producer` (built with
    /// [`transactional_id`](crate::ProducerBuilder::transactional_id), one id per
    /// member, used by nothing else meanwhile: anything else sent on it would join
    /// the transactions) writes in one transaction with the input offsets, committed
    /// every `commit_interval` and whenever a partition is revoked. A
    /// `read_committed` reader of the outputs sees each input's outputs once. A
    /// transaction that cannot commit is aborted and its inputs transformed again
    /// after a backoff (a record whose transform always fails blocks its partition);
    /// a fatal error (this instance was fenced) closes the group and is returned.
    /// Offsets are committed only in transactions (the group's auto-commit and final
    /// commit have nothing to send), and `on_handler_error` does not apply. See the
    /// `transact` module docs.
    ///
    /// The group's consumer must read committed records only
    /// (`.consumer(|c| c.isolation_level(IsolationLevel::ReadCommitted))`), so it
    /// neither reads aborted inputs nor starts from offsets a transaction has not
    /// finished committing.
    ///
    /// ```no_run
    /// # async fn run(group: josefine::ConsumerGroup, producer: josefine::Producer) -> josefine::Result<()> {
    /// use std::time::Duration;
    /// use josefine::ProducerRecord;
    /// group
    ///     .transact(&["orders"], producer, Duration::from_millis(100), |record| async move {
    ///         let total = record.value().map(|v| v.len()).unwrap_or(0);
    ///         Ok::<_, std::io::Error>(vec![ProducerRecord::new("order-sizes")
    ///             .key(record.key().cloned().unwrap_or_default())
    ///             .value(total.to_string())])
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn transact<F, Fut, E>(
        &self,
        topics: &[&str],
        producer: crate::Producer,
        commit_interval: Duration,
        work: F,
    ) -> Result<()>
    where
        F: Fn(crate::consumer::ConsumerRecord) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Vec<crate::ProducerRecord>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        if !self.inner.consumer.reads_committed() {
            return Err(Error::config(
                "transact needs a read_committed consumer: build the group with \
                 .consumer(|c| c.isolation_level(IsolationLevel::ReadCommitted))",
            ));
        }
        let transactor = Transactor::new(self.retry_backoff(), producer, commit_interval, work);
        let watch = transactor.clone();
        let consume = self.consume(topics, transactor);
        tokio::pin!(consume);
        let result = tokio::select! {
            result = &mut consume => result,
            _ = watch.fatal_raised() => {
                self.request_close().await;
                consume.await
            }
        };
        match watch.fatal() {
            Some(err) => Err(err),
            None => result,
        }
    }

    /// `retry.backoff.ms` / `retry.backoff.max.ms`.
    pub(crate) fn retry_backoff(&self) -> crate::backoff::Backoff {
        self.inner.config.retry_backoff
    }

    /// Non-fatal errors from now on: failed commits, handler errors, claims that could
    /// not be opened, a stalled handler (Sarama's `Errors()`). They are logged either
    /// way; a reader that falls far behind skips the oldest.
    pub fn errors(&self) -> GroupErrors {
        self.inner.errors.subscribe()
    }

    /// Ends the current session (its claims drain, marked offsets are committed),
    /// leaves the group, makes `consume` return `Ok`, and waits until it has, for at
    /// most the builder's `close_timeout`: `Err` with [`ErrorKind::Timeout`] when
    /// `consume` still runs by then (drop it to stop at once). A group closed before
    /// `consume` started makes it return `Ok` at once; a closed group stays closed.
    pub async fn close(&self) -> Result<()> {
        self.request_close().await;
        self.wait_closed().await
    }

    /// Waits until `consume` is not running, for at most `close_timeout`.
    pub(crate) async fn wait_closed(&self) -> Result<()> {
        let mut active = self.inner.active.subscribe();
        let timeout = self.inner.config.close_timeout();
        let left = tokio::time::timeout(timeout, active.wait_for(|active| !*active))
            .await
            .is_ok();
        match left {
            true => Ok(()),
            false => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the group was not left within close_timeout ({timeout:?}): consume still runs; \
                     drop it to stop at once, or raise close_timeout"
                ),
            )
            .with_group(&self.inner.config.group_id)),
        }
    }

    /// Asks `consume` to close without waiting; `false` when none was running.
    pub(crate) async fn request_close(&self) -> bool {
        self.inner.closed.store(true, Ordering::SeqCst);
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

/// What `topics` subscribe to: names, or (a topic starting with `^`, as librdkafka
/// has it) a regular expression the broker evaluates, consumer protocol only.
fn subscription(topics: &[&str], protocol: GroupProtocol) -> Result<Subscription> {
    let (regexes, names): (Vec<&str>, Vec<&str>) = topics.iter().partition(|t| t.starts_with('^'));
    if regexes.is_empty() {
        return Ok(Subscription::Topics(
            names.iter().map(|t| t.to_string()).collect(),
        ));
    }
    if protocol != GroupProtocol::Consumer {
        return Err(Error::config(format!(
            "{:?} is a topic regex: regex subscriptions need group.protocol=consumer (the broker evaluates them)",
            regexes[0]
        )));
    }
    if !names.is_empty() {
        return Err(Error::config(
            "subscribe to topic names or to one regex, not both: the broker takes one kind",
        ));
    }
    // The broker takes one regex: alternatives join into one.
    let regex = match regexes.as_slice() {
        [one] => one.to_string(),
        many => many
            .iter()
            .map(|r| format!("(?:{r})"))
            .collect::<Vec<_>>()
            .join("|"),
    };
    Ok(Subscription::Regex(regex))
}

/// Marks a `consume` as running (its driver reachable by `close`) until dropped.
struct Active<'a>(&'a ConsumerGroup);

impl<'a> Active<'a> {
    fn start(group: &'a ConsumerGroup, driver: mpsc::Sender<DriverCommand>) -> Self {
        *group.driver_slot() = Some(driver);
        group.inner.active.send_replace(true);
        Self(group)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        *self.0.driver_slot() = None;
        self.0.inner.active.send_replace(false);
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
