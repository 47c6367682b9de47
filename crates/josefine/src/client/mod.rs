//! The shared client: seed brokers, the metadata cache with on-demand and background
//! refresh, broker handles by node id, and the coordinator cache.
//!
//! Mirrors Sarama's `client` (see `docs/DESIGN.md`): producers, consumers, groups and
//! the admin API all hang off one cheap-to-clone [`Client`], so they share broker
//! connections and one cluster view.
//!
//! # Refresh
//! The client remembers every topic it was asked about (the *wanted* set). A refresh
//! asks for the wanted set; a refresh requested while one is in flight that already
//! covers the asked topics joins it instead of sending another Metadata request
//! (coalescing). A background task refreshes the wanted set every `metadata.max.age`.
//! Metadata requests go to any known broker, then to the seeds, so a cluster whose
//! bootstrap addresses died is still reachable.

pub(crate) mod coordinator;
pub(crate) mod metadata;

mod builder;
mod refresh;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use builder::ClientBuilder;
pub(crate) use coordinator::CoordinatorType;
pub use metadata::{BrokerInfo, ClusterMetadata, PartitionMetadata, TopicMetadata};

use crate::error::{Error, ErrorKind, Result};
use crate::net::{Broker, BrokerConfig, WeakBroker};
use crate::TopicPartition;

/// Settings of a [`Client`] beyond how to reach brokers; see [`ClientBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    pub retry_backoff: crate::backoff::Backoff,
    pub allow_auto_topic_creation: bool,
}

/// A handle to the cluster. Cheap to clone; every clone shares connections and cache.
///
/// ```no_run
/// # async fn demo() -> josefine::Result<()> {
/// use std::time::Duration;
/// use josefine::Client;
/// let client = Client::builder()
///     .bootstrap(["kafka-1:9092", "kafka-2:9092"])
///     .client_id("orders-service")
///     .request_timeout(Duration::from_secs(10))
///     .connect()
///     .await?;
/// // Producers, consumers, groups and the admin API built from it share its connections.
/// let partitions = client.partitions("orders").await?;
/// println!("orders has {} partitions", partitions.len());
/// client.close();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    broker_config: Arc<BrokerConfig>,
    seeds: Vec<Broker>,
    state: Mutex<State>,
    /// Bumped whenever `state.metadata` is replaced, so a caller caching something it
    /// read from the metadata knows, with one atomic load, that it is still current.
    metadata_version: AtomicU64,
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    brokers: HashMap<i32, Broker>,
    metadata: Arc<ClusterMetadata>,
    wanted_topics: BTreeSet<String>,
    refresh: Option<refresh::InFlight>,
    coordinators: HashMap<(CoordinatorType, String), i32>,
    /// Dedicated connections to coordinator nodes (see [`coordinator`]).
    coordinator_links: HashMap<i32, Broker>,
    /// Connections of their own that users of the client opened (see
    /// [`Client::dedicated`]), so that [`Client::close`] closes them too.
    dedicated: Vec<WeakBroker>,
    /// Rotates the broker asked for metadata, spreading load.
    next_broker: usize,
    closed: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.background.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl Client {
    /// A builder; `bootstrap` is required.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// `client.id`, as sent with every request.
    pub fn client_id(&self) -> &str {
        self.inner
            .broker_config
            .connection
            .client_id
            .as_deref()
            .unwrap_or("")
    }

    /// The current cluster view (no I/O).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.state().metadata.clone()
    }

    /// Refreshes metadata for `topics` (and every topic asked about before), joining
    /// a refresh in flight that covers them.
    pub async fn refresh_metadata(&self, topics: &[&str]) -> Result<Arc<ClusterMetadata>> {
        refresh::refresh(self, Some(topics)).await
    }

    /// Refreshes metadata for every topic in the cluster.
    pub async fn refresh_all_metadata(&self) -> Result<Arc<ClusterMetadata>> {
        refresh::refresh(self, None).await
    }

    /// The partition ids of `topic`, refreshing once if the topic is not known yet.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let ids = |md: &ClusterMetadata| -> Result<Vec<i32>> {
            Ok(md
                .topic_or_error(topic)?
                .partitions
                .iter()
                .map(|p| p.id)
                .collect())
        };
        match ids(&self.metadata()) {
            Ok(ids) => Ok(ids),
            Err(_) => ids(&*self.refresh_metadata(&[topic]).await?),
        }
    }

    /// [`check_partition`](Self::check_partition) for many partitions, with at most
    /// one metadata refresh (for the topics the cache does not know), in order.
    pub(crate) async fn check_partitions(&self, partitions: &[TopicPartition]) -> Vec<Result<()>> {
        let mut unknown: Vec<&str> = Vec::new();
        {
            let metadata = self.metadata();
            for tp in partitions {
                if metadata.topic_or_error(&tp.topic).is_err() && !unknown.contains(&&*tp.topic) {
                    unknown.push(&tp.topic);
                }
            }
        }
        let refreshed = match unknown.is_empty() {
            true => Ok(()),
            false => self.refresh_metadata(&unknown).await.map(|_| ()),
        };
        let metadata = self.metadata();
        partitions
            .iter()
            .map(|tp| match metadata.topic_or_error(&tp.topic) {
                // A failed refresh says more than the topic it left unknown.
                Err(err) => Err(refreshed.clone().err().unwrap_or(err)),
                Ok(_) if metadata.partition(&tp.topic, tp.partition).is_ok() => Ok(()),
                Ok(_) => Err(Error::kafka(crate::KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_topic(&*tp.topic)
                    .with_partition(tp.partition)),
            })
            .collect()
    }

    /// `UNKNOWN_TOPIC_OR_PARTITION` unless `topic` has `partition`, refreshing once if
    /// the topic is not known yet. Reads the metadata in place: a member opening 10,000
    /// claims at once asks 10,000 times, and a copy of the partition list each (held
    /// while the reader resolves its offset) was 400 MB.
    pub(crate) async fn check_partition(&self, topic: &str, partition: i32) -> Result<()> {
        // Err: the topic is not known (refresh once); Ok(false): it lacks the partition.
        let has = |md: &ClusterMetadata| -> Result<bool> {
            md.topic_or_error(topic)?;
            Ok(md.partition(topic, partition).is_ok())
        };
        let known = match has(&self.metadata()) {
            Ok(known) => known,
            Err(_) => has(&*self.refresh_metadata(&[topic]).await?)?,
        };
        if known {
            Ok(())
        } else {
            Err(Error::kafka(crate::KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
                .with_topic(topic)
                .with_partition(partition))
        }
    }

    /// The number of partitions of `topic` in the cached view, if it is known and
    /// healthy (no I/O, no allocation: the producer asks once per record).
    pub fn cached_partition_count(&self, topic: &str) -> Option<i32> {
        let state = self.state();
        let t = state.metadata.topic(topic)?;
        (t.error.is_none() && !t.partitions.is_empty()).then_some(t.partitions.len() as i32)
    }

    /// The version of the cached metadata: it changes whenever the cache is replaced.
    /// Read it before reading the cache, so a value cached with it is known stale
    /// after any later replacement.
    pub(crate) fn metadata_version(&self) -> u64 {
        self.inner.metadata_version.load(Ordering::Acquire)
    }

    /// The leader of `topic`/`partition`, refreshing metadata once if the cached view
    /// has none.
    pub(crate) async fn leader(&self, topic: &str, partition: i32) -> Result<Broker> {
        if let Ok(broker) = self.cached_leader(topic, partition) {
            return Ok(broker);
        }
        self.refresh_metadata(&[topic]).await?;
        self.cached_leader(topic, partition)
    }

    /// The leader according to the cached view only.
    pub(crate) fn cached_leader(&self, topic: &str, partition: i32) -> Result<Broker> {
        let state = self.state();
        let id = state.metadata.leader(topic, partition)?;
        state.brokers.get(&id).cloned().ok_or_else(|| {
            Error::kafka(crate::KafkaCode::LEADER_NOT_AVAILABLE)
                .with_topic(topic)
                .with_partition(partition)
                .with_broker(format!("{id} (not in metadata)"))
        })
    }

    /// The broker with node id `id`, if metadata listed it.
    pub(crate) fn broker(&self, id: i32) -> Option<Broker> {
        self.state().brokers.get(&id).cloned()
    }

    /// Every broker the metadata lists, by node id.
    pub(crate) fn brokers(&self) -> Vec<Broker> {
        let state = self.state();
        let mut brokers: Vec<Broker> = state.brokers.values().cloned().collect();
        brokers.sort_by_key(|b| b.id());
        brokers
    }

    /// The controller broker (admin requests that must go to it).
    pub(crate) async fn controller(&self) -> Result<Broker> {
        let lookup = |md: &ClusterMetadata, client: &Client| {
            md.controller_id.and_then(|id| client.broker(id))
        };
        if let Some(broker) = lookup(&self.metadata(), self) {
            return Ok(broker);
        }
        let md = self.refresh_metadata(&[]).await?;
        lookup(&md, self).ok_or_else(|| {
            Error::new(
                ErrorKind::NoBrokerAvailable,
                "the cluster reports no controller",
            )
        })
    }

    /// Some broker to send a cluster-wide request to: a known one, else a seed.
    pub(crate) fn any_broker(&self) -> Result<Broker> {
        self.candidates()
            .into_iter()
            .next()
            .ok_or_else(Error::client_closed)
    }

    /// The coordinator of consumer group `group`, from the cache or FindCoordinator.
    pub(crate) async fn coordinator(&self, group: &str) -> Result<Broker> {
        coordinator::coordinator(self, CoordinatorType::Group, group).await
    }

    /// Forgets the cached coordinator of `group` (after NOT_COORDINATOR or a lost
    /// connection), so the next [`coordinator`](Self::coordinator) asks again.
    pub(crate) fn invalidate_coordinator(&self, group: &str) {
        self.state()
            .coordinators
            .remove(&(CoordinatorType::Group, group.to_string()));
    }

    /// The transaction coordinator of `transactional_id` (FindCoordinator key type 1),
    /// from the cache or asked for.
    pub(crate) async fn transaction_coordinator(&self, transactional_id: &str) -> Result<Broker> {
        coordinator::coordinator(self, CoordinatorType::Transaction, transactional_id).await
    }

    /// Forgets the cached transaction coordinator of `transactional_id`.
    pub(crate) fn invalidate_transaction_coordinator(&self, transactional_id: &str) {
        self.state()
            .coordinators
            .remove(&(CoordinatorType::Transaction, transactional_id.to_string()));
    }

    /// Closes every connection and stops background refresh. Clones of this client
    /// fail with [`ErrorKind::Closed`] afterwards, and so do its consumers' readers,
    /// its producers' sends and its groups.
    pub fn close(&self) {
        let connections: Vec<Broker> = {
            let mut state = self.state();
            state.closed = true;
            state.refresh = None;
            let brokers = std::mem::take(&mut state.brokers).into_values();
            let links = std::mem::take(&mut state.coordinator_links).into_values();
            let dedicated = std::mem::take(&mut state.dedicated);
            let dedicated = dedicated.iter().filter_map(WeakBroker::upgrade);
            brokers.chain(links).chain(dedicated).collect()
        };
        if let Some(task) = self.inner.background.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
        for broker in connections.iter().chain(&self.inner.seeds) {
            broker.close();
        }
    }

    /// A connection of its own to `broker` (see [`Broker::dedicated`]), for requests
    /// that would hold up others on the shared one; [`close`](Self::close) closes it
    /// too, and a closed client gives one already closed (its calls fail with Closed).
    pub(crate) fn dedicated(&self, broker: &Broker) -> Broker {
        let link = broker.dedicated();
        let mut state = self.state();
        if state.closed {
            drop(state);
            link.close();
            return link;
        }
        state.dedicated.retain(|weak| !weak.is_dropped());
        state.dedicated.push(link.downgrade());
        link
    }

    pub(crate) fn inner_request_timeout(&self) -> Duration {
        self.inner.broker_config.request_timeout
    }

    /// `retry.backoff.ms` / `retry.backoff.max.ms`.
    pub(crate) fn retry_backoff(&self) -> crate::backoff::Backoff {
        self.inner.config.retry_backoff
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Brokers to try for a cluster-wide request: known brokers, rotated, then seeds.
    fn candidates(&self) -> Vec<Broker> {
        let mut state = self.state();
        if state.closed {
            return Vec::new();
        }
        let mut known: Vec<Broker> = state.brokers.values().cloned().collect();
        known.sort_by_key(|b| b.id());
        if !known.is_empty() {
            let start = state.next_broker % known.len();
            known.rotate_left(start);
            state.next_broker = state.next_broker.wrapping_add(1);
        }
        known.extend(self.inner.seeds.iter().cloned());
        known
    }

    /// The broker handle for node `id` at `addr`: the existing one if the address is
    /// unchanged, else a new one (the old one is disconnected).
    fn broker_handle(
        state: &mut State,
        config: &Arc<BrokerConfig>,
        id: i32,
        addr: String,
    ) -> Broker {
        if let Some(existing) = state.brokers.get(&id) {
            if existing.addr() == addr {
                return existing.clone();
            }
            existing.disconnect();
        }
        let broker = Broker::new(Some(id), addr, config.clone());
        state.brokers.insert(id, broker.clone());
        broker
    }

    /// The dedicated coordinator connection to node `id` at `addr` (see
    /// [`coordinator`]): the existing one if the address is unchanged.
    fn coordinator_link(
        state: &mut State,
        config: &Arc<BrokerConfig>,
        id: i32,
        addr: String,
    ) -> Broker {
        if let Some(existing) = state.coordinator_links.get(&id) {
            if existing.addr() == addr {
                return existing.clone();
            }
            existing.disconnect();
        }
        let link = Broker::new(Some(id), addr, config.clone());
        state.coordinator_links.insert(id, link.clone());
        link
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .expect("client state lock is never held across a panic")
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Client")
            .field("seeds", &self.inner.seeds)
            .field("brokers", &state.brokers.len())
            .field("topics", &state.metadata.topics.len())
            .field("closed", &state.closed)
            .finish()
    }
}
