//! What the mock cluster knows: its brokers, its topics, where each
//! partition lives, the partitions' logs and the producer ids handed out.
//!
//! A `ClusterState` belongs to the cluster, not to one broker, so a leader
//! moves under every broker's feet at once. It lives behind a
//! `std::sync::Mutex` (see [`Shared`](crate::cluster::Shared)). Handlers are
//! synchronous functions from a request to a response, so the lock is taken
//! and dropped inside one of them and never held across an `.await`; a test
//! thread mutating the state can therefore never observe (or produce) a
//! response built from half an update.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::fetch_sessions::{FetchSessions, TopicKey};
use crate::log::{PartitionLog, UnknownProducer};
use crate::txn::{TransactionCoordinator, TxnConfig};

/// Kafka's `num.partitions` default, used when CreateTopics asks for -1.
pub(crate) const DEFAULT_PARTITIONS: i32 = 1;

/// Kafka has no such cap, but a client asking for billions of partitions
/// would make the mock allocate them; this is far above what tests need.
pub(crate) const MAX_PARTITIONS: i32 = 100_000;

/// Kafka's `default.replication.factor` default, used when CreateTopics asks for -1.
pub(crate) const DEFAULT_REPLICATION_FACTOR: i16 = 1;

/// Kafka's `legal.chars` and `MAX_NAME_LENGTH` for topic names (`Topic.java`).
const MAX_TOPIC_NAME_LEN: usize = 249;

/// Topic ids only have to be unique, but unique across every mock in the
/// process keeps a client that talks to two mocks from confusing their topics.
/// A deterministic cluster counts its own instead, from its seed.
static NEXT_TOPIC_SEQ: AtomicU64 = AtomicU64::new(1);

/// The high half of every mock topic id, "josefine" in ASCII, so ids are easy
/// to spot in logs and never nil (nil means "no id" on the wire).
const TOPIC_ID_PREFIX: u64 = 0x6a6f_7365_6669_6e65;

#[derive(Debug, Clone)]
pub(crate) struct BrokerInfo {
    pub(crate) node_id: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
}

#[derive(Debug, Clone)]
pub(crate) struct PartitionState {
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
    pub(crate) log: PartitionLog,
}

/// Why a broker does not serve a partition: the error code and, when the
/// partition exists, its leader and leader epoch, which Fetch v12+ and
/// Produce v10+ report so the client can skip a metadata refresh (KIP-951).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotServed {
    pub(crate) code: i16,
    pub(crate) leader: Option<(i32, i32)>,
}

impl NotServed {
    fn unknown(topic: &TopicKey) -> Self {
        let error = match topic {
            TopicKey::Name(_) => ResponseError::UnknownTopicOrPartition,
            TopicKey::Id(_) => ResponseError::UnknownTopicId,
        };
        NotServed {
            code: error.code(),
            leader: None,
        }
    }
}

/// Knobs a test turns through `MockCluster`/`MockBroker`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) unknown_producer: UnknownProducer,
    pub(crate) truncate_last_batch: bool,
    pub(crate) init_producer_id_bumps_epoch: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            unknown_producer: UnknownProducer::default(),
            truncate_last_batch: false,
            init_producer_id_bumps_epoch: true,
        }
    }
}

/// Where InitProducerId starts handing out producer ids; far from 0 so a
/// client that sends an uninitialised id is easy to tell apart.
pub(crate) const FIRST_PRODUCER_ID: i64 = 1000;

#[derive(Debug, Clone)]
pub(crate) struct TopicState {
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<PartitionState>,
}

/// Why a topic cannot be created: a Kafka error code and the message a real
/// broker would send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) code: i16,
    pub(crate) message: String,
}

impl Rejection {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Rejection {
            code: error.code(),
            message: message.into(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ClusterState {
    pub(crate) cluster_id: String,
    pub(crate) controller_id: i32,
    /// The brokers Metadata lists: every broker of the cluster, stopped or
    /// not, unless a test removed it.
    pub(crate) brokers: BTreeMap<i32, BrokerInfo>,
    /// Every broker of the cluster, listed or not.
    pub(crate) members: BTreeMap<i32, BrokerInfo>,
    pub(crate) topics: BTreeMap<String, TopicState>,
    /// The current epoch of every producer id InitProducerId handed out
    /// without a transactional id.
    pub(crate) producer_epochs: HashMap<i64, i16>,
    pub(crate) next_producer_id: i64,
    /// The transaction coordinator, here rather than behind a lock of its
    /// own so that a transactional Produce and a transaction's markers are
    /// ordered (see [`crate::txn::driver`]).
    pub(crate) transactions: TransactionCoordinator,
    pub(crate) fetch_sessions: FetchSessions,
    pub(crate) settings: Settings,
    /// The deterministic mode's seed: topic ids and default record timestamps
    /// derive from it instead of a process-wide counter and the wall clock.
    pub(crate) seed: Option<u64>,
    /// Topics created so far, for seeded topic ids.
    topics_created: u64,
    /// The next partition of each topic for a keyless record of
    /// [`MockCluster::produce`](crate::MockCluster::produce).
    pub(crate) next_keyless: HashMap<String, u32>,
}

impl ClusterState {
    pub(crate) fn new(cluster_id: String, controller_id: i32) -> Self {
        ClusterState {
            cluster_id,
            controller_id,
            brokers: BTreeMap::new(),
            members: BTreeMap::new(),
            topics: BTreeMap::new(),
            producer_epochs: HashMap::new(),
            next_producer_id: FIRST_PRODUCER_ID,
            transactions: TransactionCoordinator::new(vec![controller_id], TxnConfig::default()),
            fetch_sessions: FetchSessions::default(),
            settings: Settings::default(),
            seed: None,
            topics_created: 0,
            next_keyless: HashMap::new(),
        }
    }

    /// Hands out the next producer id.
    pub(crate) fn allocate_producer_id(&mut self) -> i64 {
        let producer_id = self.next_producer_id;
        self.next_producer_id += 1;
        producer_id
    }

    pub(crate) fn add_broker(&mut self, broker: BrokerInfo) {
        self.members.insert(broker.node_id, broker.clone());
        self.brokers.insert(broker.node_id, broker);
    }

    pub(crate) fn topic_by_id(&self, id: Uuid) -> Option<(&str, &TopicState)> {
        self.topics
            .iter()
            .find(|(_, topic)| topic.id == id)
            .map(|(name, topic)| (name.as_str(), topic))
    }

    /// The topic a fetch, produce or list-offsets entry names, by name or id.
    pub(crate) fn resolve(&self, key: &TopicKey) -> Option<(&str, &TopicState)> {
        match key {
            TopicKey::Name(name) => self
                .topics
                .get_key_value(name.as_str())
                .map(|(name, topic)| (name.as_str(), topic)),
            TopicKey::Id(id) if id.is_nil() => None,
            TopicKey::Id(id) => self.topic_by_id(*id),
        }
    }

    /// The partition, if `node_id` may serve it to a client that believes
    /// the leader epoch is `current_leader_epoch` (-1: no opinion).
    ///
    /// Checks in Kafka's order (`Partition.getLocalLog`): existence, then
    /// the epoch (FENCED_LEADER_EPOCH when the client's is older,
    /// UNKNOWN_LEADER_EPOCH when newer, KIP-320), then leadership
    /// (NOT_LEADER_OR_FOLLOWER). The mock does not serve reads from
    /// followers (KIP-392), so only the leader answers.
    pub(crate) fn served_partition(
        &self,
        node_id: i32,
        key: &TopicKey,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<&PartitionState, NotServed> {
        let (_, topic) = self.resolve(key).ok_or_else(|| NotServed::unknown(key))?;
        let state = usize::try_from(partition)
            .ok()
            .and_then(|index| topic.partitions.get(index))
            .ok_or(NotServed {
                code: ResponseError::UnknownTopicOrPartition.code(),
                leader: None,
            })?;
        check_served(state, node_id, current_leader_epoch)?;
        Ok(state)
    }

    /// [`served_partition`](Self::served_partition), for appending.
    pub(crate) fn served_partition_mut(
        &mut self,
        node_id: i32,
        key: &TopicKey,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<&mut PartitionState, NotServed> {
        // Checked through the shared path first; the name is then known to
        // resolve, so the lookups below cannot miss.
        self.served_partition(node_id, key, partition, current_leader_epoch)?;
        let name = self
            .resolve(key)
            .map(|(name, _)| name.to_owned())
            .ok_or_else(|| NotServed::unknown(key))?;
        self.partition_mut(&name, partition)
            .ok_or_else(|| NotServed::unknown(key))
    }

    /// A partition by topic name and index, for the test-facing API.
    pub(crate) fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Option<&mut PartitionState> {
        self.topics
            .get_mut(topic)?
            .partitions
            .get_mut(usize::try_from(partition).ok()?)
    }

    /// Read-only [`partition_mut`](Self::partition_mut).
    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)
    }

    /// Places every partition on every broker, partition `p` led by the
    /// `p % n`-th broker by node id: the layout of topics a builder or a test
    /// creates, so multi-broker tests see every broker lead something.
    pub(crate) fn spread_replicas(&self, partitions: i32) -> Vec<Vec<i32>> {
        self.round_robin(0..partitions, 0, usize::MAX)
    }

    /// Replica lists for the partitions in `partitions`: partition `p` led by
    /// the `(start + p) % n`-th listed broker by node id and replicated on
    /// the next `replication - 1` (at least one, at most all of them).
    fn round_robin(
        &self,
        partitions: Range<i32>,
        start: usize,
        replication: usize,
    ) -> Vec<Vec<i32>> {
        let nodes: Vec<i32> = self.brokers.keys().copied().collect();
        let indices = partitions.filter_map(|p| usize::try_from(p).ok());
        if nodes.is_empty() {
            return indices.map(|_| vec![self.controller_id]).collect();
        }
        let replication = replication.clamp(1, nodes.len());
        indices
            .map(|p| {
                (0..replication)
                    .map(|r| nodes[(start + p + r) % nodes.len()])
                    .collect()
            })
            .collect()
    }

    /// Checks a CreateTopics entry the way Kafka's controller does and returns
    /// the partition count and replication factor it would use.
    ///
    /// `partitions` and `replication_factor` of -1 mean "broker default"
    /// (KIP-464); the mock uses Kafka's defaults, `num.partitions` = 1 and
    /// `default.replication.factor` = 1.
    pub(crate) fn check_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
    ) -> Result<(i32, i16), Rejection> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(Rejection::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let partitions = match partitions {
            -1 => DEFAULT_PARTITIONS,
            n if n > MAX_PARTITIONS => {
                return Err(Rejection::new(
                    ResponseError::InvalidPartitions,
                    format!(
                    "The mock broker allows at most {MAX_PARTITIONS} partitions per topic ({n})."
                ),
                ))
            }
            n if n >= 1 => n,
            n => {
                return Err(Rejection::new(
                    ResponseError::InvalidPartitions,
                    format!("Number of partitions was set to an invalid non-positive value ({n})."),
                ))
            }
        };
        let brokers = i16::try_from(self.brokers.len()).unwrap_or(i16::MAX);
        let replication_factor = match replication_factor {
            -1 => DEFAULT_REPLICATION_FACTOR,
            n if n >= 1 && n <= brokers => n,
            n if n >= 1 => {
                return Err(Rejection::new(
                    ResponseError::InvalidReplicationFactor,
                    format!("Replication factor: {n} larger than available brokers: {brokers}."),
                ))
            }
            n => {
                return Err(Rejection::new(
                    ResponseError::InvalidReplicationFactor,
                    format!("Replication factor must be larger than 0, or -1 to use the default value ({n})."),
                ))
            }
        };
        Ok((partitions, replication_factor))
    }

    /// Places `partitions` partitions of `replication_factor` replicas
    /// round-robin over the brokers, like Kafka's rack-unaware assignment, so
    /// multi-broker tests see more than one leader.
    pub(crate) fn assign_replicas(
        &self,
        partitions: i32,
        replication_factor: i16,
    ) -> Vec<Vec<i32>> {
        let replication = usize::try_from(replication_factor).unwrap_or(1);
        // Kafka starts each topic at a random broker; the mock starts at the
        // topic count so placement is spread out yet reproducible.
        self.round_robin(0..partitions, self.topics.len(), replication)
    }

    /// Checks an explicit CreateTopics replica assignment: partitions numbered
    /// 0..n without gaps, each on distinct, existing brokers.
    pub(crate) fn check_replica_assignment(
        &self,
        assignment: &[(i32, Vec<i32>)],
    ) -> Result<Vec<Vec<i32>>, Rejection> {
        let invalid = |why: String| Rejection::new(ResponseError::InvalidReplicaAssignment, why);
        let mut sorted: Vec<&(i32, Vec<i32>)> = assignment.iter().collect();
        sorted.sort_by_key(|(index, _)| *index);
        let mut replicas = Vec::with_capacity(sorted.len());
        for (expected, (index, brokers)) in sorted.into_iter().enumerate() {
            if usize::try_from(*index) != Ok(expected) {
                return Err(invalid(format!(
                    "Partitions should be numbered 0 to {}, without gaps.",
                    assignment.len().saturating_sub(1)
                )));
            }
            if brokers.is_empty() {
                return Err(invalid(format!("Partition {index} has no replicas.")));
            }
            if let Some(unknown) = brokers.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(invalid(format!("Broker {unknown} does not exist.")));
            }
            let mut distinct = brokers.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() != brokers.len() {
                return Err(invalid(format!("Partition {index} lists a broker twice.")));
            }
            replicas.push(brokers.clone());
        }
        Ok(replicas)
    }

    /// Creates a topic with one replica list per partition, the first replica
    /// leading; the arguments must have passed the checks above.
    pub(crate) fn create_topic(&mut self, name: &str, replicas: Vec<Vec<i32>>) -> &TopicState {
        let partitions = replicas
            .into_iter()
            .map(|replicas| self.new_partition(replicas))
            .collect();
        self.topics_created += 1;
        let low = match self.seed {
            Some(seed) => crate::entropy::mix(seed).wrapping_add(self.topics_created),
            None => NEXT_TOPIC_SEQ.fetch_add(1, Ordering::Relaxed),
        };
        let topic = TopicState {
            id: Uuid::from_u64_pair(TOPIC_ID_PREFIX, low),
            partitions,
        };
        self.topics.insert(name.to_owned(), topic);
        &self.topics[name]
    }

    /// An empty partition led by its first replica, every replica in sync.
    fn new_partition(&self, replicas: Vec<i32>) -> PartitionState {
        PartitionState {
            leader: replicas.first().copied().unwrap_or(self.controller_id),
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
            log: PartitionLog::default(),
        }
    }

    /// Checks a CreatePartitions entry the way Kafka's controller does and
    /// returns the replica lists of the partitions it would add to `name` to
    /// reach `count`: `assignment` when given (one list per new partition),
    /// otherwise round-robin as [`spread_replicas`](Self::spread_replicas)
    /// places a new topic's, partition `p` led by the `p % n`-th broker,
    /// with as many replicas as the topic's first partition has, since Kafka
    /// keeps a topic's replication factor.
    pub(crate) fn plan_new_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<&[Vec<i32>]>,
    ) -> Result<Vec<Vec<i32>>, Rejection> {
        let topic = self.topics.get(name).ok_or_else(|| {
            Rejection::new(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            )
        })?;
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        check_partition_increase(current, count)?;
        let replication = topic.partitions.first().map_or(1, |p| p.replicas.len());
        match assignment {
            None => Ok(self.round_robin(current..count, 0, replication)),
            Some(lists) => self.check_added_assignment(lists, count - current, replication),
        }
    }

    /// Checks an explicit CreatePartitions assignment: one replica list per
    /// added partition, each as valid as a CreateTopics one and as long as
    /// the topic's existing partitions' lists.
    fn check_added_assignment(
        &self,
        lists: &[Vec<i32>],
        added: i32,
        replication: usize,
    ) -> Result<Vec<Vec<i32>>, Rejection> {
        let invalid = |why: String| Rejection::new(ResponseError::InvalidReplicaAssignment, why);
        if usize::try_from(added) != Ok(lists.len()) {
            return Err(invalid(format!(
                "Increasing the partition count by {added} needs {added} replica assignments, not {}.",
                lists.len()
            )));
        }
        if let Some(odd) = lists.iter().find(|l| l.len() != replication) {
            return Err(invalid(format!(
                "A new partition has {} replicas where the topic's partitions have {replication}.",
                odd.len()
            )));
        }
        // Numbered from 0 only for the shared checks of brokers and duplicates.
        let numbered: Vec<(i32, Vec<i32>)> = (0..).zip(lists.iter().cloned()).collect();
        self.check_replica_assignment(&numbered)
    }

    /// Appends empty partitions with these replica lists to topic `name`,
    /// which keeps its id, as in Kafka; the lists must come from
    /// [`plan_new_partitions`](Self::plan_new_partitions).
    pub(crate) fn add_partitions(&mut self, name: &str, replicas: Vec<Vec<i32>>) {
        let added: Vec<PartitionState> = replicas
            .into_iter()
            .map(|replicas| self.new_partition(replicas))
            .collect();
        if let Some(topic) = self.topics.get_mut(name) {
            topic.partitions.extend(added);
        }
    }

    pub(crate) fn delete_topic(&mut self, name: &str) -> Option<TopicState> {
        self.topics.remove(name)
    }
}

/// Kafka only lets a topic's partition count grow; the mock also keeps its
/// own cap.
fn check_partition_increase(current: i32, count: i32) -> Result<(), Rejection> {
    let invalid = |why: String| Err(Rejection::new(ResponseError::InvalidPartitions, why));
    if count == current {
        return invalid(format!("Topic already has {current} partitions."));
    }
    if count < current {
        return invalid(format!(
            "Topic currently has {current} partitions, which is higher than the requested {count}."
        ));
    }
    if count > MAX_PARTITIONS {
        return invalid(format!(
            "The mock broker allows at most {MAX_PARTITIONS} partitions per topic ({count})."
        ));
    }
    Ok(())
}

fn check_served(
    state: &PartitionState,
    node_id: i32,
    current_leader_epoch: i32,
) -> Result<(), NotServed> {
    let refuse = |error: ResponseError| NotServed {
        code: error.code(),
        leader: Some((state.leader, state.leader_epoch)),
    };
    if current_leader_epoch >= 0 && current_leader_epoch < state.leader_epoch {
        return Err(refuse(ResponseError::FencedLeaderEpoch));
    }
    if current_leader_epoch > state.leader_epoch {
        return Err(refuse(ResponseError::UnknownLeaderEpoch));
    }
    if state.leader != node_id {
        return Err(refuse(ResponseError::NotLeaderOrFollower));
    }
    Ok(())
}

/// Kafka's topic-name rules (`Topic.validate`): what a real broker rejects
/// with INVALID_TOPIC_EXCEPTION, the mock rejects too, so clients are tested
/// against the same boundary.
pub(crate) fn validate_topic_name(name: &str) -> Result<(), Rejection> {
    let invalid = |why: String| Err(Rejection::new(ResponseError::InvalidTopicException, why));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".to_owned());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".to_owned());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(brokers: &[i32]) -> ClusterState {
        let mut state = ClusterState::new("c".into(), brokers[0]);
        for &node_id in brokers {
            state.add_broker(BrokerInfo {
                node_id,
                host: "127.0.0.1".into(),
                port: 9092,
            });
        }
        state
    }

    #[test]
    fn defaults_apply_for_minus_one() {
        let state = cluster(&[1]);
        assert_eq!(state.check_new_topic("t", -1, -1), Ok((1, 1)));
    }

    #[test]
    fn rejects_what_kafka_rejects() {
        let mut state = cluster(&[1]);
        let code = |r: Result<(i32, i16), Rejection>| r.unwrap_err().code;
        assert_eq!(code(state.check_new_topic("t", 0, 1)), 37);
        assert_eq!(code(state.check_new_topic("t", -2, 1)), 37);
        assert_eq!(code(state.check_new_topic("t", 1, 2)), 38);
        assert_eq!(code(state.check_new_topic("t", 1, 0)), 38);
        assert_eq!(code(state.check_new_topic("", 1, 1)), 17);
        assert_eq!(code(state.check_new_topic("..", 1, 1)), 17);
        assert_eq!(code(state.check_new_topic("a/b", 1, 1)), 17);
        assert_eq!(code(state.check_new_topic(&"x".repeat(250), 1, 1)), 17);
        state.create_topic("t", vec![vec![1]]);
        assert_eq!(code(state.check_new_topic("t", 1, 1)), 36);
    }

    #[test]
    fn leaders_spread_over_brokers() {
        let mut state = cluster(&[1, 2, 3]);
        let replicas = state.assign_replicas(3, 2);
        let topic = state.create_topic("t", replicas).clone();
        let leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, [1, 2, 3]);
        assert_eq!(topic.partitions[2].replicas, [3, 1]);
        assert_ne!(topic.id, Uuid::nil());
    }

    #[test]
    fn explicit_assignments_are_checked() {
        let state = cluster(&[1, 2]);
        let ok = state.check_replica_assignment(&[(1, vec![2, 1]), (0, vec![1])]);
        assert_eq!(ok, Ok(vec![vec![1], vec![2, 1]]));
        for bad in [
            vec![(1, vec![1])],
            vec![(0, vec![])],
            vec![(0, vec![3])],
            vec![(0, vec![1, 1])],
        ] {
            assert_eq!(state.check_replica_assignment(&bad).unwrap_err().code, 39);
        }
    }

    #[test]
    fn added_partitions_continue_the_leader_round_and_keep_the_id() {
        let mut state = cluster(&[1, 2, 3]);
        let replicas = state.spread_replicas(2);
        let id = state.create_topic("t", replicas).id;
        let added = state.plan_new_partitions("t", 5, None).unwrap();
        assert_eq!(added, [vec![3, 1, 2], vec![1, 2, 3], vec![2, 3, 1]]);
        state.add_partitions("t", added);
        let topic = &state.topics["t"];
        let leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, [1, 2, 3, 1, 2]);
        assert_eq!(topic.id, id);
        assert_eq!(topic.partitions[4].log.end_offset(), 0);
    }

    #[test]
    fn added_partitions_keep_the_replication_factor() {
        let mut state = cluster(&[1, 2, 3]);
        state.create_topic("t", vec![vec![2, 3]]);
        let added = state.plan_new_partitions("t", 3, None).unwrap();
        assert_eq!(added, [vec![2, 3], vec![3, 1]]);
    }

    #[test]
    fn partition_increases_are_checked() {
        let mut state = cluster(&[1, 2]);
        state.create_topic("t", vec![vec![1, 2], vec![2, 1]]);
        let code = |count: i32, lists: Option<&[Vec<i32>]>| {
            state
                .plan_new_partitions("t", count, lists)
                .unwrap_err()
                .code
        };
        assert_eq!(code(2, None), 37, "not an increase");
        assert_eq!(code(1, None), 37, "a decrease");
        assert_eq!(code(MAX_PARTITIONS + 1, None), 37);
        assert_eq!(code(4, Some(&[vec![1, 2]])), 39, "one list short");
        assert_eq!(code(3, Some(&[vec![1]])), 39, "replication factor 1, not 2");
        assert_eq!(code(3, Some(&[vec![1, 3]])), 39, "no broker 3");
        assert_eq!(code(3, Some(&[vec![1, 1]])), 39, "a broker twice");
        let unknown = state.plan_new_partitions("nope", 3, None).unwrap_err();
        assert_eq!(unknown.code, 3);
        let explicit = state.plan_new_partitions("t", 3, Some(&[vec![2, 1]]));
        assert_eq!(explicit, Ok(vec![vec![2, 1]]));
    }

    #[test]
    fn recreated_topic_gets_a_new_id() {
        let mut state = cluster(&[1]);
        let first = state.create_topic("t", vec![vec![1]]).id;
        state.delete_topic("t");
        let second = state.create_topic("t", vec![vec![1]]).id;
        assert_ne!(first, second);
        assert_eq!(state.topic_by_id(second).map(|(n, _)| n), Some("t"));
    }
}
