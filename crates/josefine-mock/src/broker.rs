//! The public handle of one mock broker, its builder, and the `Node` its
//! connection tasks share.
//!
//! `Node` holds what is per broker (listener settings, advertised versions,
//! intercept rules, request log, connections); the cluster-wide state sits
//! behind [`Shared`], which every broker of a [`MockCluster`](crate::MockCluster)
//! points at. A broker started with [`MockBroker::builder`] is a cluster of
//! one.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::cluster::Shared;
use crate::entropy::Entropy;
use crate::group::{Coordinator, GroupConfig};
use crate::intercept::{Action, Intercept, InterceptHandle, Interceptor, RequestInfo};
use crate::network::NetworkFaults;
use crate::sasl::{SaslConfig, SaslMechanism};
use crate::server::{self, Connections};
use crate::state::{BrokerInfo, ClusterState};
use crate::txn::{self, TransactionCoordinator, TxnConfig};
use crate::{api, coordinator, lock};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// What every connection task of one broker shares.
pub(crate) struct Node {
    pub(crate) node_id: i32,
    pub(crate) max_frame_size: usize,
    /// Advertised version ranges by API key; ordered so ApiVersions responses
    /// are stable.
    advertised: BTreeMap<i16, VersionRange>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) interceptor: Interceptor,
    pub(crate) network: NetworkFaults,
    log: Mutex<Vec<RequestInfo>>,
    pub(crate) accepted: AtomicU64,
    pub(crate) connections: Mutex<Connections>,
}

impl Node {
    /// The cluster state. Never hold the guard across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, ClusterState> {
        self.shared.state()
    }

    pub(crate) fn advertised(&self) -> impl Iterator<Item = (i16, VersionRange)> + '_ {
        self.advertised.iter().map(|(key, range)| (*key, *range))
    }

    pub(crate) fn advertises(&self, api_key: i16, version: i16) -> bool {
        self.advertised
            .get(&api_key)
            .is_some_and(|range| (range.min..=range.max).contains(&version))
    }

    pub(crate) fn record(&self, request: RequestInfo) {
        lock(&self.log).push(request);
    }
}

/// What every broker of a cluster is configured with; the builders' common
/// part.
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    pub(crate) cluster_id: String,
    pub(crate) topics: Vec<(String, i32)>,
    pub(crate) versions: BTreeMap<i16, Option<VersionRange>>,
    pub(crate) max_frame_size: usize,
    pub(crate) groups: GroupConfig,
    pub(crate) transactions: TxnConfig,
    pub(crate) sasl: SaslConfig,
    /// The deterministic mode's seed.
    pub(crate) seed: Option<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            cluster_id: "josefine-mock".to_owned(),
            topics: Vec::new(),
            versions: BTreeMap::new(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            groups: GroupConfig::default(),
            transactions: TxnConfig::default(),
            sasl: SaslConfig::default(),
            seed: None,
        }
    }
}

impl NodeConfig {
    pub(crate) fn topic(&mut self, name: String, partitions: i32) {
        self.topics.retain(|(existing, _)| *existing != name);
        self.topics.push((name, partitions));
    }

    fn advertised(&self) -> BTreeMap<i16, VersionRange> {
        let mut advertised: BTreeMap<i16, VersionRange> = api::IMPLEMENTED
            .iter()
            .map(|(key, range)| (*key as i16, *range))
            .collect();
        for (key, range) in &self.versions {
            match range {
                Some(range) => advertised.insert(*key, *range),
                None => advertised.remove(key),
            };
        }
        advertised
    }

    /// Binds one listener per node id, builds the shared state with every
    /// broker and pre-created topic, and starts serving.
    pub(crate) async fn start(
        &self,
        node_ids: &[i32],
    ) -> io::Result<(Arc<Shared>, Vec<MockBroker>)> {
        let mut listeners = Vec::with_capacity(node_ids.len());
        for _ in node_ids {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let addr = listener.local_addr()?;
            listeners.push((listener, addr));
        }
        let controller = node_ids.first().copied().unwrap_or(1);
        let mut state = ClusterState::new(self.cluster_id.clone(), controller);
        state.seed = self.seed;
        state.transactions =
            TransactionCoordinator::new(node_ids.to_vec(), self.transactions.clone());
        for (node_id, (_, addr)) in node_ids.iter().zip(&listeners) {
            state.add_broker(BrokerInfo {
                node_id: *node_id,
                host: addr.ip().to_string(),
                port: i32::from(addr.port()),
            });
        }
        for (name, partitions) in &self.topics {
            let (partitions, _) = state
                .check_new_topic(name, *partitions, 1)
                .map_err(|r| io::Error::new(io::ErrorKind::InvalidInput, r.message))?;
            let replicas = state.spread_replicas(partitions);
            state.create_topic(name, replicas);
        }
        let coordinator = Coordinator::new(node_ids.to_vec(), self.groups.clone());
        let entropy = Arc::new(Entropy::new(self.seed));
        let sasl = self.sasl.build(Arc::clone(&entropy));
        let shared = Shared::new(state, coordinator, sasl, entropy);
        let advertised = self.advertised();
        let brokers = node_ids
            .iter()
            .zip(listeners)
            .map(|(node_id, (listener, addr))| {
                let node = Arc::new(Node {
                    node_id: *node_id,
                    max_frame_size: self.max_frame_size,
                    advertised: advertised.clone(),
                    shared: Arc::clone(&shared),
                    interceptor: Interceptor::default(),
                    network: NetworkFaults::default(),
                    log: Mutex::new(Vec::new()),
                    accepted: AtomicU64::new(0),
                    connections: Mutex::new(Connections::default()),
                });
                let accept = server::spawn_accept_loop(listener, Arc::clone(&node));
                tracing::debug!(node_id, %addr, "mock broker started");
                MockBroker {
                    node,
                    addr,
                    accept: tokio::sync::Mutex::new(Some(accept)),
                }
            })
            .collect();
        Ok((shared, brokers))
    }
}

/// Configures and starts a [`MockBroker`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() is awaited"]
pub struct MockBrokerBuilder {
    node_id: i32,
    config: NodeConfig,
}

impl Default for MockBrokerBuilder {
    fn default() -> Self {
        MockBrokerBuilder {
            node_id: 1,
            config: NodeConfig::default(),
        }
    }
}

impl MockBrokerBuilder {
    /// The broker's id (Kafka's `node.id`). Default 1.
    pub fn node_id(mut self, node_id: i32) -> Self {
        self.node_id = node_id;
        self
    }

    /// The cluster id reported by Metadata. Default `"josefine-mock"`.
    pub fn cluster_id(mut self, cluster_id: impl Into<String>) -> Self {
        self.config.cluster_id = cluster_id.into();
        self
    }

    /// A topic that exists from the start, its partitions all led by this
    /// broker. Repeating a name keeps the last partition count.
    pub fn topic(mut self, name: impl Into<String>, partitions: i32) -> Self {
        self.config.topic(name.into(), partitions);
        self
    }

    /// Advertises `min..=max` for `api_key` in ApiVersions instead of the
    /// default, to test a client's version negotiation.
    ///
    /// The mock enforces what it advertises, as Kafka does: a request outside
    /// the range closes the connection, except ApiVersions itself, which gets
    /// the v0 UNSUPPORTED_VERSION fallback. Versions beyond what the
    /// kafka-protocol crate can encode are advertised but still refused.
    /// Advertising an API the mock does not implement lists it without
    /// answering it.
    pub fn api_versions(mut self, api_key: ApiKey, min: i16, max: i16) -> Self {
        self.config
            .versions
            .insert(api_key as i16, Some(VersionRange { min, max }));
        self
    }

    /// Leaves `api_key` out of ApiVersions and refuses its requests, like a
    /// broker too old to know it.
    pub fn without_api(mut self, api_key: ApiKey) -> Self {
        self.config.versions.insert(api_key as i16, None);
        self
    }

    /// The largest request the broker reads (Kafka's
    /// `socket.request.max.bytes`). A larger or negative length prefix closes
    /// the connection before anything is allocated. Default 100 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// How long the first rebalance of an empty group waits for more
    /// members (Kafka's `group.initial.rebalance.delay.ms`, KIP-134), extended
    /// by as much again for each member that joins meanwhile, up to the
    /// rebalance timeout. Default 0, where Kafka's is 3 s, so tests do not
    /// wait; with 0 the first member's JoinGroup completes at once with that
    /// member alone.
    pub fn group_initial_rebalance_delay(mut self, delay: Duration) -> Self {
        self.config.groups.initial_rebalance_delay = delay;
        self
    }

    /// The session timeouts JoinGroup accepts (Kafka's
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`);
    /// others get INVALID_SESSION_TIMEOUT. Default 1 ms to 30 min, where
    /// Kafka's minimum is 6 s, so tests can use short sessions.
    pub fn group_session_timeout_range(mut self, min: Duration, max: Duration) -> Self {
        self.config.groups.min_session_timeout = min;
        self.config.groups.max_session_timeout = max;
        self
    }

    /// With `true`, the first JoinGroup of a member without a member id
    /// gets MEMBER_ID_REQUIRED (with the id to use) at every JoinGroup
    /// version, as Tansu does; Kafka does so from v4 only (KIP-394), the
    /// default. Static members (with a `group.instance.id`) never get it.
    pub fn member_id_required_at_every_version(mut self, required: bool) -> Self {
        self.config.groups.member_id_required_at_every_version = required;
        self
    }

    /// How long a member of a consumer group (KIP-848,
    /// `group.protocol=consumer`) may go without a heartbeat before the
    /// coordinator removes it (Kafka's `group.consumer.session.timeout.ms`,
    /// the broker's setting under that protocol). Default 45 s, as Kafka's.
    pub fn consumer_group_session_timeout(mut self, timeout: Duration) -> Self {
        self.config.groups.consumer_session_timeout = timeout;
        self
    }

    /// The heartbeat interval the coordinator gives members of consumer
    /// groups (KIP-848; Kafka's `group.consumer.heartbeat.interval.ms`).
    /// Default 500 ms, where Kafka's is 5 s, so tests move fast.
    pub fn consumer_group_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.groups.consumer_heartbeat_interval = interval;
        self
    }

    /// With `true`, a group's first completed rebalance is generation 0, as
    /// in Tansu; Kafka (the default) starts at 1.
    pub fn group_generations_start_at_zero(mut self, zero: bool) -> Self {
        self.config.groups.first_generation = i32::from(!zero);
        self
    }

    /// The longest transaction timeout InitProducerId accepts (Kafka's
    /// `transaction.max.timeout.ms`); a longer one gets
    /// INVALID_TRANSACTION_TIMEOUT. Default 15 minutes, as Kafka's.
    pub fn transaction_max_timeout(mut self, max: Duration) -> Self {
        self.config.transactions.max_timeout = max;
        self
    }

    /// Requires SASL authentication (Kafka's `SASL_PLAINTEXT` listener) and adds
    /// these users, `(name, password)`; repeating a name replaces its password.
    /// Their SCRAM credentials are derived at [`start`](Self::start) (random salt,
    /// 4096 iterations), as `kafka-configs --alter --add-config SCRAM-SHA-256=...`
    /// would store them.
    ///
    /// Any `sasl_*` setting makes the broker require SASL: before a successful
    /// SaslAuthenticate only ApiVersions, SaslHandshake and SaslAuthenticate are
    /// answered, and anything else closes the connection, as Kafka does. A wrong
    /// password or an unknown user gets SASL_AUTHENTICATION_FAILED with
    /// "Authentication failed: Invalid username or password" (PLAIN) or Kafka's
    /// SCRAM message, and the connection closes after the answer. Users can be
    /// changed later with [`MockBroker::set_sasl_user`](crate::MockBroker::set_sasl_user).
    ///
    /// ```
    /// use josefine_mock::MockBroker;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let broker = MockBroker::builder().sasl_users([("alice", "secret")]).start().await?;
    /// # drop(broker);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sasl_users<U: Into<String>, P: Into<String>>(
        mut self,
        users: impl IntoIterator<Item = (U, P)>,
    ) -> Self {
        self.config.sasl.users(users);
        self
    }

    /// The mechanisms SaslHandshake accepts (Kafka's `sasl.enabled.mechanisms`), in
    /// the order its answers list them. Default [`SaslMechanism::DEFAULT`]: PLAIN,
    /// SCRAM-SHA-256, SCRAM-SHA-512. Any other name gets UNSUPPORTED_SASL_MECHANISM
    /// with this list, and the connection closes. Requires SASL.
    pub fn sasl_mechanisms(mut self, mechanisms: impl IntoIterator<Item = SaslMechanism>) -> Self {
        self.config.sasl.mechanisms(mechanisms);
        self
    }

    /// Bearer tokens OAUTHBEARER accepts, `(token, principal)`. The mock looks
    /// tokens up as opaque strings (Kafka validates JWTs); an unknown token gets
    /// RFC 7628's `{"status":"invalid_token"}` challenge, and after the client's
    /// `\x01` SASL_AUTHENTICATION_FAILED with that JSON as the message. Add
    /// [`SaslMechanism::OAuthBearer`] to [`sasl_mechanisms`](Self::sasl_mechanisms)
    /// to enable it. Requires SASL.
    pub fn sasl_oauth_tokens<T: Into<String>, P: Into<String>>(
        mut self,
        tokens: impl IntoIterator<Item = (T, P)>,
    ) -> Self {
        self.config.sasl.oauth_tokens(tokens);
        self
    }

    /// How long an authentication lasts (Kafka's `connections.max.reauth.ms`,
    /// KIP-368), sent in SaslAuthenticate v1+ as `session_lifetime_ms`. Once it has
    /// passed, any request but SaslHandshake closes the connection; a new
    /// SaslHandshake and SaslAuthenticate on the same connection (same mechanism
    /// and user) start a new session. Default: sessions never expire
    /// (`session_lifetime_ms` 0). The mock enforces it for SaslAuthenticate v0
    /// clients too. Requires SASL.
    pub fn sasl_session_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.sasl.session_lifetime(lifetime);
        self
    }

    /// With `true`, SCRAM's server-final message carries a wrong signature
    /// (`v=`), as a server that does not know the password would have to send,
    /// so a test can check that the client refuses to go on. Default `false`.
    /// Requires SASL; see also
    /// [`MockBroker::set_sasl_forge_server_signature`](crate::MockBroker::set_sasl_forge_server_signature).
    pub fn sasl_forge_server_signature(mut self, forge: bool) -> Self {
        self.config.sasl.forge_server_signature(forge);
        self
    }

    /// Deterministic mode: everything the mock would draw at random is drawn
    /// from `seed` instead, so two runs of a test see the same ids, salts,
    /// jitter and default timestamps. See [Deterministic
    /// mode](crate#deterministic-mode) for what it covers and what it
    /// cannot.
    pub fn deterministic(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving. Must be called within a tokio
    /// runtime.
    ///
    /// Fails with `InvalidInput` when a pre-created topic has an invalid name
    /// or fewer than one partition.
    pub async fn start(self) -> io::Result<MockBroker> {
        let (_, mut brokers) = self.config.start(&[self.node_id]).await?;
        Ok(brokers.remove(0))
    }
}

/// An in-process Kafka broker on `127.0.0.1`, for tests: on its own (see
/// [`MockBroker::builder`]) or one of a [`MockCluster`](crate::MockCluster).
///
/// The topic, log and producer methods act on the whole cluster's state,
/// which a lone broker has to itself; the connection, intercept and request
/// log methods are this broker's own.
///
/// Dropping it (or awaiting [`shutdown`](Self::shutdown)) stops the listener
/// and closes every connection, so a test never leaks a port or a task.
///
/// Faults on a timer ([`MockCluster::after`](crate::MockCluster::after) and
/// the like) and [`wait_until`](crate::MockCluster::wait_until) need a
/// cluster handle: for one broker, start a
/// `MockCluster::builder().brokers(1)`.
pub struct MockBroker {
    node: Arc<Node>,
    addr: SocketAddr,
    /// The accept loop, `None` while stopped. An async mutex on purpose: it
    /// is held across the awaits of [`stop`](Self::stop) and
    /// [`restart`](Self::restart) so that two of them cannot interleave and,
    /// say, rebind the port before the old listener is gone.
    accept: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl MockBroker {
    /// A builder with the defaults: node 1, no topics, every version the mock
    /// implements.
    pub fn builder() -> MockBrokerBuilder {
        MockBrokerBuilder::default()
    }

    /// Starts a broker with the defaults.
    pub async fn start() -> io::Result<MockBroker> {
        MockBroker::builder().start().await
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.node.shared
    }

    /// The address the broker listens on, the same across
    /// [`restart`](Self::restart)s.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:port"`, ready for a client's `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The broker's id (Kafka's `node.id`).
    pub fn node_id(&self) -> i32 {
        self.node.node_id
    }

    /// Adds `latency` before this broker looks at each request (ApiVersions
    /// and SASL included), as a slow broker or a slow link would; requests
    /// pipelined behind it on the same connection wait too. `Duration::ZERO`
    /// (the default) turns it off. Intercepted requests get it on top of
    /// their action, so an [`Action::Delay`] adds to it.
    pub fn set_latency(&self, latency: Duration) {
        self.node.network.set_latency(latency);
    }

    /// Adds up to `jitter` more to each request's [latency](Self::set_latency),
    /// uniformly distributed; in a deterministic cluster a function of the
    /// seed and the request (connection and correlation id). Default zero.
    pub fn set_latency_jitter(&self, jitter: Duration) {
        self.node.network.set_jitter(jitter);
    }

    /// The latency added to each request; see [`set_latency`](Self::set_latency).
    pub fn latency(&self) -> Duration {
        self.node.network.latency()
    }

    /// The jitter added to the latency; see
    /// [`set_latency_jitter`](Self::set_latency_jitter).
    pub fn latency_jitter(&self) -> Duration {
        self.node.network.jitter()
    }

    /// Drops this share of requests (0.0 to 1.0, clamped): the broker closes
    /// the connection instead of answering, as a flaky network or a broker
    /// restart would, before any intercept rule sees the request. Which
    /// requests are dropped is random, or in a deterministic cluster a
    /// function of the seed and the request. Default 0.
    pub fn set_drop_rate(&self, rate: f64) {
        self.node.network.set_drop_rate(rate);
    }

    /// The share of requests dropped; see [`set_drop_rate`](Self::set_drop_rate).
    pub fn drop_rate(&self) -> f64 {
        self.node.network.drop_rate()
    }

    /// Adds a rule after the existing ones; see [`Intercept`] and [`Action`].
    pub fn intercept(&self, intercept: Intercept, action: Action) -> InterceptHandle {
        self.node.interceptor.add(intercept, action)
    }

    /// Removes every intercept rule.
    pub fn clear_intercepts(&self) {
        self.node.interceptor.clear();
    }

    /// Every request received so far whose header could be decoded, oldest
    /// first, including intercepted and refused ones.
    pub fn requests(&self) -> Vec<RequestInfo> {
        lock(&self.node.log).clone()
    }

    /// Connections accepted so far, open or closed, across restarts.
    pub fn connection_count(&self) -> u64 {
        self.node.accepted.load(Ordering::Acquire)
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        lock(&self.node.connections).len()
    }

    /// Closes every open connection but keeps listening, as if the broker had
    /// restarted at the same address.
    pub fn disconnect_all(&self) {
        for task in server::take_connections(&self.node, false) {
            task.abort();
        }
    }

    /// Stops the broker as if it had crashed: closes the listener (clients
    /// get connection refused) and every connection, and drops its fetch
    /// sessions. The cluster's state is untouched: Metadata from the other
    /// brokers still lists this one and it still leads its partitions, as
    /// before Kafka's controller notices. Returns once the sockets are
    /// closed; stopping a stopped broker does nothing.
    pub async fn stop(&self) {
        let mut accept = self.accept.lock().await;
        let Some(task) = accept.take() else {
            return;
        };
        task.abort();
        // A cancelled task reports JoinError::Cancelled, which is the point;
        // anything else was logged by the task.
        let _ = task.await;
        for task in server::take_connections(&self.node, true) {
            task.abort();
            let _ = task.await;
        }
        self.node
            .state()
            .fetch_sessions
            .close_broker(self.node.node_id);
        let node_id = self.node.node_id;
        coordinator::with(&self.node.shared, |c, now| c.broker_stopped(now, node_id));
        txn::driver::run(&self.node.shared, |state, _| {
            state.transactions.broker_stopped(node_id)
        });
        tracing::debug!(node_id = self.node.node_id, "mock broker stopped");
    }

    /// Listens again on the same address after [`stop`](Self::stop), and
    /// puts the broker back into Metadata if a test had removed it (a
    /// restarted Kafka broker registers again). Does nothing while running.
    ///
    /// Fails if the port was taken by someone else in the meantime.
    pub async fn restart(&self) -> io::Result<()> {
        let mut accept = self.accept.lock().await;
        if accept.is_some() {
            return Ok(());
        }
        // tokio sets SO_REUSEADDR, so connections the stop left in TIME_WAIT
        // do not keep the port.
        let listener = TcpListener::bind(self.addr).await?;
        server::reopen(&self.node);
        *accept = Some(server::spawn_accept_loop(listener, Arc::clone(&self.node)));
        {
            let mut state = self.node.state();
            if let Some(info) = state.members.get(&self.node.node_id).cloned() {
                state.brokers.insert(info.node_id, info);
            }
        }
        let node_id = self.node.node_id;
        coordinator::with(&self.node.shared, |c, now| c.broker_started(now, node_id));
        txn::driver::run(&self.node.shared, |state, _| {
            state.transactions.broker_started(node_id)
        });
        tracing::debug!(node_id = self.node.node_id, "mock broker restarted");
        Ok(())
    }

    /// Stops listening and closes every connection, returning once the
    /// listening socket and all connection sockets are closed.
    pub async fn shutdown(self) {
        self.stop().await;
    }

    cluster_ops!();
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.get_mut().take() {
            accept.abort();
        }
        for task in server::take_connections(&self.node, true) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for MockBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBroker")
            .field("node_id", &self.node.node_id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
