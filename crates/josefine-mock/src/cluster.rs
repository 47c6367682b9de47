//! A cluster of mock brokers over one shared state, and that state's
//! test-facing operations.
//!
//! Every broker has its own listener, intercepts, request log and fetch
//! sessions; topics, leaders, logs and producer ids are the cluster's, so
//! moving a leader is seen by every broker at once, the way a client sees
//! Kafka once the controller has propagated an election. What the mock does
//! not model is the delay in between: there is no replication lag, every
//! replica is always in sync, and the high watermark is the log end offset.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::batch::{BatchHeader, HEADER_LEN};
use crate::broker::{MockBroker, NodeConfig};
use crate::coordinator::{self, Groups};
use crate::entropy::Entropy;
use crate::group::Coordinator;
use crate::lock;
use crate::sasl::{SaslServer, User};
use crate::state::{ClusterState, PartitionState, Settings};

/// The state every broker of a cluster shares, and a signal for fetches
/// waiting for it to change.
pub(crate) struct Shared {
    state: Mutex<ClusterState>,
    /// Woken after every append, leader move and log truncation, so a
    /// long-polling Fetch (which waits up to `max_wait_ms` for data) answers
    /// as soon as there is something to say, on whichever broker.
    changed: Notify,
    /// The group coordinator's state, behind its own lock: group traffic
    /// and partition traffic never wait for each other. Taken while `state`
    /// is held only to settle a transaction's offsets together with its
    /// markers ([`crate::txn::driver`]); never the other way round, so the
    /// two cannot deadlock.
    groups: Mutex<Groups>,
    /// Wakes the group coordinator's timer task when a deadline may have
    /// moved.
    group_timer: Arc<Notify>,
    /// Wakes the transaction coordinator's timer task likewise.
    txn_timer: Arc<Notify>,
    /// The two timer tasks.
    timer_tasks: Mutex<Vec<JoinHandle<()>>>,
    /// SASL settings and users, behind their own lock (taken once per request by
    /// the connection gate). Never held together with another lock.
    sasl: Mutex<SaslServer>,
    /// Everything random, or the deterministic mode's seed.
    entropy: Arc<Entropy>,
}

impl Shared {
    /// The shared state, with the coordinator's timer task running. Must be
    /// called within a tokio runtime.
    pub(crate) fn new(
        state: ClusterState,
        coordinator: Coordinator,
        sasl: SaslServer,
        entropy: Arc<Entropy>,
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            sasl: Mutex::new(sasl),
            entropy,
            state: Mutex::new(state),
            changed: Notify::new(),
            groups: Mutex::new(Groups::new(coordinator)),
            group_timer: Arc::new(Notify::new()),
            txn_timer: Arc::new(Notify::new()),
            timer_tasks: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            coordinator::spawn_timer(&shared),
            crate::txn::driver::spawn_timer(&shared),
        ];
        *lock(&shared.timer_tasks) = tasks;
        shared
    }

    /// The group coordinator. Never hold the guard across an `.await`, nor
    /// take [`state`](Self::state) while holding it.
    pub(crate) fn groups(&self) -> MutexGuard<'_, Groups> {
        lock(&self.groups)
    }

    pub(crate) fn group_timer(&self) -> &Arc<Notify> {
        &self.group_timer
    }

    pub(crate) fn txn_timer(&self) -> &Arc<Notify> {
        &self.txn_timer
    }

    /// The cluster state. Never hold the guard across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, ClusterState> {
        lock(&self.state)
    }

    /// The SASL settings and users. Never hold the guard across an `.await`.
    pub(crate) fn sasl(&self) -> MutexGuard<'_, SaslServer> {
        lock(&self.sasl)
    }

    pub(crate) fn entropy(&self) -> &Entropy {
        &self.entropy
    }

    pub(crate) fn seed(&self) -> Option<u64> {
        self.entropy.seed()
    }

    pub(crate) fn set_sasl_user(&self, name: &str, password: &str) {
        // PBKDF2 runs before the lock is taken.
        let user = User::new(name, password, &self.entropy);
        self.sasl().set_user(name, user);
    }

    pub(crate) fn remove_sasl_user(&self, name: &str) -> bool {
        self.sasl().remove_user(name)
    }

    pub(crate) fn set_sasl_forge_server_signature(&self, forge: bool) {
        self.sasl().forge_server_signature = forge;
    }

    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Wakes the waiting fetches; call it after releasing the state lock so
    /// they do not wake up only to block on it.
    pub(crate) fn notify_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Runs `f` on a partition, for the test-facing API, whose callers
    /// name partitions that exist.
    #[track_caller]
    fn with_partition<T>(
        &self,
        topic: &str,
        partition: i32,
        f: impl FnOnce(&mut PartitionState) -> T,
    ) -> T {
        let mut state = self.state();
        let Some(p) = state.partition_mut(topic, partition) else {
            drop(state);
            panic!("the mock cluster has no partition {topic}-{partition}");
        };
        f(p)
    }

    pub(crate) fn settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.state().settings);
    }

    pub(crate) fn create_topic(&self, name: &str, partitions: i32) -> bool {
        // -1 means "the default" on the wire, which is no use to a test.
        if partitions < 1 {
            return false;
        }
        let mut state = self.state();
        match state.check_new_topic(name, partitions, 1) {
            Ok((partitions, _)) => {
                let replicas = state.spread_replicas(partitions);
                state.create_topic(name, replicas);
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn add_partitions(&self, topic: &str, new_total: i32) -> bool {
        let mut state = self.state();
        match state.plan_new_partitions(topic, new_total, None) {
            Ok(replicas) => {
                state.add_partitions(topic, replicas);
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn delete_topic(&self, name: &str) -> bool {
        self.state().delete_topic(name).is_some()
    }

    pub(crate) fn topics(&self) -> Vec<String> {
        self.state().topics.keys().cloned().collect()
    }

    pub(crate) fn partition_count(&self, topic: &str) -> Option<i32> {
        let state = self.state();
        let topic = state.topics.get(topic)?;
        Some(i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX))
    }

    pub(crate) fn topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
        self.state().topics.get(topic).map(|t| t.id)
    }

    pub(crate) fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.state().partition(topic, partition).map(|p| p.leader)
    }

    pub(crate) fn leader_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        self.state()
            .partition(topic, partition)
            .map(|p| p.leader_epoch)
    }

    #[track_caller]
    pub(crate) fn move_leader(&self, topic: &str, partition: i32, node_id: i32) {
        let is_member = self.state().members.contains_key(&node_id);
        assert!(is_member, "the mock cluster has no broker {node_id}");
        self.with_partition(topic, partition, |p| {
            p.leader = node_id;
            p.leader_epoch += 1;
            if !p.replicas.contains(&node_id) {
                p.replicas.push(node_id);
            }
            if !p.isr.contains(&node_id) {
                p.isr.push(node_id);
            }
        });
        self.notify_changed();
    }

    #[track_caller]
    pub(crate) fn batches(&self, topic: &str, partition: i32) -> Vec<Bytes> {
        self.with_partition(topic, partition, |p| {
            p.log.entries().iter().map(|e| e.bytes.clone()).collect()
        })
    }

    #[track_caller]
    pub(crate) fn log_start_offset(&self, topic: &str, partition: i32) -> i64 {
        self.with_partition(topic, partition, |p| p.log.start_offset())
    }

    #[track_caller]
    pub(crate) fn log_end_offset(&self, topic: &str, partition: i32) -> i64 {
        self.with_partition(topic, partition, |p| p.log.end_offset())
    }

    #[track_caller]
    pub(crate) fn last_stable_offset(&self, topic: &str, partition: i32) -> i64 {
        self.with_partition(topic, partition, |p| p.log.last_stable_offset())
    }

    #[track_caller]
    pub(crate) fn aborted_transactions(&self, topic: &str, partition: i32) -> Vec<(i64, i64, i64)> {
        self.with_partition(topic, partition, |p| {
            p.log
                .aborted()
                .iter()
                .map(|txn| (txn.producer_id, txn.first_offset, txn.last_offset))
                .collect()
        })
    }

    #[track_caller]
    pub(crate) fn append_batch(&self, topic: &str, partition: i32, batch: Bytes) -> i64 {
        let Some(header) = BatchHeader::parse(&batch) else {
            panic!(
                "append_batch needs a record batch of at least {HEADER_LEN} bytes, not {}",
                batch.len()
            );
        };
        let marker = crate::txn::marker::control_type(&batch);
        let offset = self.with_partition(topic, partition, |p| {
            if let Some(commit) = marker {
                return p.log.append_marker(&batch, commit, p.leader_epoch);
            }
            let offset = p.log.append(&batch, p.leader_epoch);
            if header.has_producer_id() {
                p.log.record_producer_batch(&header, offset);
            }
            offset
        });
        self.notify_changed();
        offset
    }

    #[track_caller]
    pub(crate) fn append_raw(&self, topic: &str, partition: i32, bytes: Bytes) -> i64 {
        let offset = self.with_partition(topic, partition, |p| p.log.append_raw(bytes));
        self.notify_changed();
        offset
    }

    #[track_caller]
    pub(crate) fn delete_records_before(&self, topic: &str, partition: i32, offset: i64) {
        self.with_partition(topic, partition, |p| p.log.delete_before(offset));
        self.notify_changed();
    }

    pub(crate) fn forget_producer_state(&self) {
        let mut state = self.state();
        for topic in state.topics.values_mut() {
            for partition in &mut topic.partitions {
                partition.log.forget_producers();
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The timer tasks hold the cluster weakly and would otherwise sleep
        // until their next deadline before noticing it is gone.
        for task in lock(&self.timer_tasks).drain(..) {
            task.abort();
        }
    }
}

/// Configures and starts a [`MockCluster`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() is awaited"]
pub struct MockClusterBuilder {
    brokers: i32,
    config: NodeConfig,
}

impl Default for MockClusterBuilder {
    fn default() -> Self {
        MockClusterBuilder {
            brokers: 3,
            config: NodeConfig::default(),
        }
    }
}

impl MockClusterBuilder {
    /// How many brokers, with node ids `1..=n`; broker 1 is the controller.
    /// Default 3.
    pub fn brokers(mut self, n: i32) -> Self {
        self.brokers = n;
        self
    }

    /// The cluster id reported by Metadata. Default `"josefine-mock"`.
    pub fn cluster_id(mut self, cluster_id: impl Into<String>) -> Self {
        self.config.cluster_id = cluster_id.into();
        self
    }

    /// A topic that exists from the start: partition `p` is led by broker
    /// `1 + p % n` and replicated on every broker. Repeating a name keeps the
    /// last partition count.
    pub fn topic(mut self, name: impl Into<String>, partitions: i32) -> Self {
        self.config.topic(name.into(), partitions);
        self
    }

    /// Every broker advertises `min..=max` for `api_key`; see
    /// [`MockBrokerBuilder::api_versions`](crate::MockBrokerBuilder::api_versions).
    pub fn api_versions(mut self, api_key: ApiKey, min: i16, max: i16) -> Self {
        self.config
            .versions
            .insert(api_key as i16, Some(VersionRange { min, max }));
        self
    }

    /// No broker knows `api_key`; see
    /// [`MockBrokerBuilder::without_api`](crate::MockBrokerBuilder::without_api).
    pub fn without_api(mut self, api_key: ApiKey) -> Self {
        self.config.versions.insert(api_key as i16, None);
        self
    }

    /// Every broker's `socket.request.max.bytes`; see
    /// [`MockBrokerBuilder::max_frame_size`](crate::MockBrokerBuilder::max_frame_size).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Every broker's `group.initial.rebalance.delay.ms`; see
    /// [`MockBrokerBuilder::group_initial_rebalance_delay`](crate::MockBrokerBuilder::group_initial_rebalance_delay).
    pub fn group_initial_rebalance_delay(mut self, delay: Duration) -> Self {
        self.config.groups.initial_rebalance_delay = delay;
        self
    }

    /// The session timeouts JoinGroup accepts; see
    /// [`MockBrokerBuilder::group_session_timeout_range`](crate::MockBrokerBuilder::group_session_timeout_range).
    pub fn group_session_timeout_range(mut self, min: Duration, max: Duration) -> Self {
        self.config.groups.min_session_timeout = min;
        self.config.groups.max_session_timeout = max;
        self
    }

    /// Tansu's MEMBER_ID_REQUIRED at every JoinGroup version; see
    /// [`MockBrokerBuilder::member_id_required_at_every_version`](crate::MockBrokerBuilder::member_id_required_at_every_version).
    pub fn member_id_required_at_every_version(mut self, required: bool) -> Self {
        self.config.groups.member_id_required_at_every_version = required;
        self
    }

    /// Every broker's `group.consumer.session.timeout.ms`; see
    /// [`MockBrokerBuilder::consumer_group_session_timeout`](crate::MockBrokerBuilder::consumer_group_session_timeout).
    pub fn consumer_group_session_timeout(mut self, timeout: Duration) -> Self {
        self.config.groups.consumer_session_timeout = timeout;
        self
    }

    /// Every broker's `group.consumer.heartbeat.interval.ms`; see
    /// [`MockBrokerBuilder::consumer_group_heartbeat_interval`](crate::MockBrokerBuilder::consumer_group_heartbeat_interval).
    pub fn consumer_group_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.groups.consumer_heartbeat_interval = interval;
        self
    }

    /// Tansu's generations from 0; see
    /// [`MockBrokerBuilder::group_generations_start_at_zero`](crate::MockBrokerBuilder::group_generations_start_at_zero).
    pub fn group_generations_start_at_zero(mut self, zero: bool) -> Self {
        self.config.groups.first_generation = i32::from(!zero);
        self
    }

    /// The cluster's `transaction.max.timeout.ms`; see
    /// [`MockBrokerBuilder::transaction_max_timeout`](crate::MockBrokerBuilder::transaction_max_timeout).
    pub fn transaction_max_timeout(mut self, max: Duration) -> Self {
        self.config.transactions.max_timeout = max;
        self
    }

    /// Every broker requires SASL, with these users; see
    /// [`MockBrokerBuilder::sasl_users`](crate::MockBrokerBuilder::sasl_users).
    /// The users are the cluster's, as Kafka keeps SCRAM credentials in its
    /// metadata.
    pub fn sasl_users<U: Into<String>, P: Into<String>>(
        mut self,
        users: impl IntoIterator<Item = (U, P)>,
    ) -> Self {
        self.config.sasl.users(users);
        self
    }

    /// Every broker's `sasl.enabled.mechanisms`; see
    /// [`MockBrokerBuilder::sasl_mechanisms`](crate::MockBrokerBuilder::sasl_mechanisms).
    pub fn sasl_mechanisms(
        mut self,
        mechanisms: impl IntoIterator<Item = crate::SaslMechanism>,
    ) -> Self {
        self.config.sasl.mechanisms(mechanisms);
        self
    }

    /// Bearer tokens every broker accepts; see
    /// [`MockBrokerBuilder::sasl_oauth_tokens`](crate::MockBrokerBuilder::sasl_oauth_tokens).
    pub fn sasl_oauth_tokens<T: Into<String>, P: Into<String>>(
        mut self,
        tokens: impl IntoIterator<Item = (T, P)>,
    ) -> Self {
        self.config.sasl.oauth_tokens(tokens);
        self
    }

    /// Every broker's `connections.max.reauth.ms`; see
    /// [`MockBrokerBuilder::sasl_session_lifetime`](crate::MockBrokerBuilder::sasl_session_lifetime).
    pub fn sasl_session_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.sasl.session_lifetime(lifetime);
        self
    }

    /// Every broker forges SCRAM server signatures; see
    /// [`MockBrokerBuilder::sasl_forge_server_signature`](crate::MockBrokerBuilder::sasl_forge_server_signature).
    pub fn sasl_forge_server_signature(mut self, forge: bool) -> Self {
        self.config.sasl.forge_server_signature(forge);
        self
    }

    /// Deterministic mode: everything the mock would draw at random (topic
    /// ids, SCRAM salts and nonces, latency jitter, which requests the drop
    /// rate drops) is drawn from `seed` instead, and records produced with
    /// [`MockCluster::produce`] without a timestamp get
    /// [`DETERMINISTIC_EPOCH_MS`](crate::DETERMINISTIC_EPOCH_MS) plus their
    /// offset rather than the wall clock. Member ids, producer ids and fetch
    /// session ids count up in every mode. Two runs of a test that drive the
    /// mock the same way therefore see the same values; see [Deterministic
    /// mode](crate#deterministic-mode) for what the mock cannot fix (the
    /// ports, the client's own randomness, tokio's scheduling) and how a
    /// paused clock helps.
    ///
    /// ```
    /// use josefine_mock::MockCluster;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let one = MockCluster::builder().deterministic(7).topic("t", 1).start().await?;
    /// let two = MockCluster::builder().deterministic(7).topic("t", 1).start().await?;
    /// assert_eq!(one.topic_id("t"), two.topic_id("t"));
    /// assert_eq!(one.seed(), Some(7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn deterministic(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Binds one `127.0.0.1:0` listener per broker and starts serving. Must
    /// be called within a tokio runtime.
    ///
    /// Fails with `InvalidInput` for fewer than one broker, or a pre-created
    /// topic with an invalid name or fewer than one partition.
    pub async fn start(self) -> io::Result<MockCluster> {
        if self.brokers < 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a cluster needs at least one broker, not {}", self.brokers),
            ));
        }
        let node_ids: Vec<i32> = (1..=self.brokers).collect();
        let (shared, brokers) = self.config.start(&node_ids).await?;
        Ok(MockCluster {
            inner: Arc::new(Inner { shared, brokers }),
        })
    }
}

/// Several in-process Kafka brokers on `127.0.0.1` sharing one cluster
/// state, for testing what a client does when leaders move, brokers die,
/// requests fail or slow down, and groups rebalance.
///
/// ```
/// use std::time::Duration;
/// use josefine_mock::{MockCluster, Record};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = MockCluster::builder().brokers(3).topic("orders", 3).start().await?;
/// assert_eq!(cluster.leader("orders", 1), Some(2));
/// cluster.produce("orders", [Record::new().key("42").value("an order")])?;
///
/// // ... run the client against cluster.bootstrap() (or cluster.client()),
/// // then fail over by hand:
/// cluster.stop_broker(2).await;
/// cluster.move_leader("orders", 1, 3);
/// assert_eq!(cluster.leader_epoch("orders", 1), Some(1));
/// cluster.restart_broker(2).await?;
///
/// // ... or on a timer, while the client works:
/// cluster.after(Duration::from_millis(200), |c| c.move_leader("orders", 1, 2));
/// # Ok(())
/// # }
/// ```
///
/// A `MockCluster` is a handle: clones share the same brokers and state, and
/// the brokers stop when the last handle is dropped (or at
/// [`shutdown`](Self::shutdown)). Faults scheduled with
/// [`after`](Self::after) hold no handle while they wait, so they never keep
/// a cluster alive.
#[derive(Clone)]
pub struct MockCluster {
    inner: Arc<Inner>,
}

/// What the handles share. The brokers stop when it drops (`MockBroker`'s
/// drop); the state goes with the last broker.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    brokers: Vec<MockBroker>,
}

impl MockCluster {
    /// A builder with the defaults: three brokers, no topics, every version
    /// the mock implements.
    pub fn builder() -> MockClusterBuilder {
        MockClusterBuilder::default()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// A handle on the cluster that does not keep it alive, for scheduled
    /// faults.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<MockCluster> {
        weak.upgrade().map(|inner| MockCluster { inner })
    }

    /// Every broker's `"127.0.0.1:port"`, comma-separated, for a client's
    /// `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.inner
            .brokers
            .iter()
            .map(MockBroker::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The broker with this node id, for its intercepts, request log,
    /// connection counts and network knobs.
    ///
    /// # Panics
    ///
    /// When there is no such broker.
    #[track_caller]
    pub fn broker(&self, node_id: i32) -> &MockBroker {
        match self.inner.brokers.iter().find(|b| b.node_id() == node_id) {
            Some(broker) => broker,
            None => panic!("the mock cluster has no broker {node_id}"),
        }
    }

    /// Every broker, by node id.
    pub fn brokers(&self) -> &[MockBroker] {
        &self.inner.brokers
    }

    /// Crashes a broker; see [`MockBroker::stop`].
    ///
    /// # Panics
    ///
    /// When there is no such broker.
    pub async fn stop_broker(&self, node_id: i32) {
        self.broker(node_id).stop().await;
    }

    /// Brings a stopped broker back on the same port; see
    /// [`MockBroker::restart`].
    ///
    /// # Panics
    ///
    /// When there is no such broker.
    pub async fn restart_broker(&self, node_id: i32) -> io::Result<()> {
        self.broker(node_id).restart().await
    }

    /// Takes a broker out of Metadata responses and out of every partition's
    /// ISR, as the controller does once it notices a broker died. Partitions
    /// it leads keep naming it until a test moves them with
    /// [`move_leader`](Self::move_leader). A
    /// [`restart_broker`](Self::restart_broker) puts it back into Metadata
    /// (not into the ISRs).
    pub fn remove_broker_from_metadata(&self, node_id: i32) {
        let mut state = self.shared().state();
        state.brokers.remove(&node_id);
        for topic in state.topics.values_mut() {
            for partition in &mut topic.partitions {
                partition.isr.retain(|n| *n != node_id);
            }
        }
    }

    /// Closes every open connection of every broker, which keep listening:
    /// the client's next requests reconnect, as after a network blip or a
    /// load balancer's reset. Requests in flight get no answer. See
    /// [`MockBroker::disconnect_all`] for one broker, and
    /// [`set_drop_rate`](Self::set_drop_rate) for drops that keep happening.
    pub fn drop_connections(&self) {
        for broker in self.brokers() {
            broker.disconnect_all();
        }
    }

    /// Every broker adds `latency` before it looks at each request; see
    /// [`MockBroker::set_latency`] (which sets one broker's).
    /// `Duration::ZERO` turns it off.
    pub fn set_latency(&self, latency: Duration) {
        for broker in self.brokers() {
            broker.set_latency(latency);
        }
    }

    /// Every broker adds up to `jitter` more to each request's latency; see
    /// [`MockBroker::set_latency_jitter`].
    pub fn set_latency_jitter(&self, jitter: Duration) {
        for broker in self.brokers() {
            broker.set_latency_jitter(jitter);
        }
    }

    /// Every broker drops this share of requests with their connection; see
    /// [`MockBroker::set_drop_rate`]. 0 (the default) turns it off.
    pub fn set_drop_rate(&self, rate: f64) {
        for broker in self.brokers() {
            broker.set_drop_rate(rate);
        }
    }

    /// Waits until `condition` holds, checking it every millisecond of
    /// tokio's clock (so a paused clock drives it too), for at most
    /// `timeout`; returns whether it came to hold. For waiting on what the
    /// mock can see, such as a group's state or a committed offset:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use josefine_mock::MockCluster;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let cluster = MockCluster::builder().topic("orders", 1).start().await?;
    /// # cluster.set_committed("g", "orders", 0, 0);
    /// let committed = cluster
    ///     .wait_until(Duration::from_secs(10), |c| c.committed("g", "orders", 0) == Some(0))
    ///     .await;
    /// assert!(committed, "the group committed partition 0");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "false means the condition never held"]
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&MockCluster) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops every broker, returning once all their sockets are closed.
    /// Other handles on the cluster see it stopped.
    pub async fn shutdown(self) {
        for broker in self.brokers() {
            broker.stop().await;
        }
    }

    cluster_ops!();
}

impl std::fmt::Debug for MockCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCluster")
            .field("brokers", &self.inner.brokers)
            .finish_non_exhaustive()
    }
}
