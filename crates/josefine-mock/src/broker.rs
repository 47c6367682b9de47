//! The public handle of one mock broker, its builder, and the `Node` its
//! connection tasks share.
//!
//! `Node` is split from the cluster-wide [`ClusterState`] on purpose: a
//! future multi-broker `Cluster` gives every broker its own `Node` (listener,
//! advertised versions, intercept rules, request log) over one shared state.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::intercept::{Action, Intercept, InterceptHandle, Interceptor, RequestInfo};
use crate::server::{self, Connections};
use crate::state::{BrokerInfo, ClusterState};
use crate::{api, lock};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// What every connection task of one broker shares.
pub(crate) struct Node {
    pub(crate) node_id: i32,
    pub(crate) max_frame_size: usize,
    /// Advertised version ranges by API key; ordered so ApiVersions responses
    /// are stable.
    advertised: BTreeMap<i16, VersionRange>,
    state: Arc<Mutex<ClusterState>>,
    pub(crate) interceptor: Interceptor,
    log: Mutex<Vec<RequestInfo>>,
    pub(crate) accepted: AtomicU64,
    pub(crate) connections: Mutex<Connections>,
}

impl Node {
    /// The cluster state. Never hold the guard across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, ClusterState> {
        lock(&self.state)
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

/// Configures and starts a [`MockBroker`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() is awaited"]
pub struct MockBrokerBuilder {
    node_id: i32,
    cluster_id: String,
    topics: Vec<(String, i32)>,
    versions: BTreeMap<i16, Option<VersionRange>>,
    max_frame_size: usize,
}

impl Default for MockBrokerBuilder {
    fn default() -> Self {
        MockBrokerBuilder {
            node_id: 1,
            cluster_id: "josefine-mock".to_owned(),
            topics: Vec::new(),
            versions: BTreeMap::new(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
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
        self.cluster_id = cluster_id.into();
        self
    }

    /// A topic that exists from the start, its partitions all led by this
    /// broker. Repeating a name keeps the last partition count.
    pub fn topic(mut self, name: impl Into<String>, partitions: i32) -> Self {
        let name = name.into();
        self.topics.retain(|(existing, _)| *existing != name);
        self.topics.push((name, partitions));
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
        self.versions
            .insert(api_key as i16, Some(VersionRange { min, max }));
        self
    }

    /// Leaves `api_key` out of ApiVersions and refuses its requests, like a
    /// broker too old to know it.
    pub fn without_api(mut self, api_key: ApiKey) -> Self {
        self.versions.insert(api_key as i16, None);
        self
    }

    /// The largest request the broker reads (Kafka's
    /// `socket.request.max.bytes`). A larger or negative length prefix closes
    /// the connection before anything is allocated. Default 100 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving. Must be called within a tokio
    /// runtime.
    ///
    /// Fails with `InvalidInput` when a pre-created topic has an invalid name
    /// or fewer than one partition.
    pub async fn start(self) -> io::Result<MockBroker> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;

        let mut state = ClusterState::new(self.cluster_id, self.node_id);
        state.add_broker(BrokerInfo {
            node_id: self.node_id,
            host: addr.ip().to_string(),
            port: i32::from(addr.port()),
        });
        for (name, partitions) in &self.topics {
            let (partitions, replication) = state
                .check_new_topic(name, *partitions, 1)
                .map_err(|r| io::Error::new(io::ErrorKind::InvalidInput, r.message))?;
            let replicas = state.assign_replicas(partitions, replication);
            state.create_topic(name, replicas);
        }

        let mut advertised: BTreeMap<i16, VersionRange> = api::IMPLEMENTED
            .iter()
            .map(|(key, range)| (*key as i16, *range))
            .collect();
        for (key, range) in self.versions {
            match range {
                Some(range) => advertised.insert(key, range),
                None => advertised.remove(&key),
            };
        }

        let node = Arc::new(Node {
            node_id: self.node_id,
            max_frame_size: self.max_frame_size,
            advertised,
            state: Arc::new(Mutex::new(state)),
            interceptor: Interceptor::default(),
            log: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            connections: Mutex::new(Connections::default()),
        });
        let accept = server::spawn_accept_loop(listener, Arc::clone(&node));
        tracing::debug!(node_id = node.node_id, %addr, "mock broker started");
        Ok(MockBroker {
            node,
            addr,
            accept: Some(accept),
        })
    }
}

/// An in-process Kafka broker on `127.0.0.1`, for tests.
///
/// Dropping it (or awaiting [`shutdown`](Self::shutdown)) stops the listener
/// and closes every connection, so a test never leaks a port or a task.
pub struct MockBroker {
    node: Arc<Node>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
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

    /// The address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:port"`, ready for a client's `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn node_id(&self) -> i32 {
        self.node.node_id
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

    /// Connections accepted so far, open or closed.
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

    /// Creates a topic as if an admin had; false when the name is invalid or
    /// taken, or `partitions` is below 1.
    pub fn create_topic(&self, name: &str, partitions: i32) -> bool {
        // -1 means "the default" on the wire, which is no use to a test.
        if partitions < 1 {
            return false;
        }
        let mut state = self.node.state();
        match state.check_new_topic(name, partitions, 1) {
            Ok((partitions, replication)) => {
                let replicas = state.assign_replicas(partitions, replication);
                state.create_topic(name, replicas);
                true
            }
            Err(_) => false,
        }
    }

    /// The names of the existing topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.node.state().topics.keys().cloned().collect()
    }

    /// The partition count of `topic`, if it exists.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        let state = self.node.state();
        let topic = state.topics.get(topic)?;
        Some(i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX))
    }

    /// Stops listening and closes every connection, returning once the
    /// listening socket and all connection sockets are closed.
    pub async fn shutdown(mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            // A cancelled task reports JoinError::Cancelled, which is the
            // point; anything else was logged by the task.
            let _ = accept.await;
        }
        for task in server::take_connections(&self.node, true) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
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
