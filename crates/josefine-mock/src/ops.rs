//! The test-facing operations on the cluster's state, which [`MockBroker`]
//! and [`MockCluster`] both offer.
//!
//! A macro rather than a trait so they are inherent methods (no import
//! needed in a test) documented once; each forwards to
//! [`Shared`](crate::cluster::Shared), which implements them.
//!
//! [`MockBroker`]: crate::MockBroker
//! [`MockCluster`]: crate::MockCluster

/// Expands, inside an `impl` block of a type with
/// `fn shared(&self) -> &Shared`, to the cluster-state methods.
macro_rules! cluster_ops {
    () => {
        /// Creates a topic as if an admin had, partition `p` led by the
        /// `p % n`-th of the cluster's `n` brokers and replicated on all;
        /// false when the name is invalid or taken, or `partitions` is below 1.
        pub fn create_topic(&self, name: &str, partitions: i32) -> bool {
            self.shared().create_topic(name, partitions)
        }

        /// Grows a topic to `new_total` partitions as an admin's
        /// CreatePartitions would: the new ones are empty, keep the topic's
        /// replication factor, and partition `p` is led by the `p % n`-th
        /// broker, continuing [`create_topic`](Self::create_topic)'s round.
        /// Metadata lists them at once, under the same topic id. False when
        /// the topic does not exist or `new_total` is not larger than its
        /// partition count.
        pub fn add_partitions(&self, topic: &str, new_total: i32) -> bool {
            self.shared().add_partitions(topic, new_total)
        }

        /// Deletes a topic as if an admin had (its logs, groups' commits stay
        /// as Kafka keeps them); false when it does not exist. With an
        /// intercept answering DeleteTopics without deleting, a test plays a
        /// broker whose metadata drops the topic late.
        pub fn delete_topic(&self, name: &str) -> bool {
            self.shared().delete_topic(name)
        }

        /// The names of the existing topics, sorted.
        pub fn topics(&self) -> Vec<String> {
            self.shared().topics()
        }

        /// The partition count of `topic`, if it exists.
        pub fn partition_count(&self, topic: &str) -> Option<i32> {
            self.shared().partition_count(topic)
        }

        /// The topic's id (KIP-516), for requests that name topics by id
        /// (Produce v13, Fetch v13+), if the topic exists.
        pub fn topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
            self.shared().topic_id(topic)
        }

        /// The node id of the partition's leader, if the partition exists.
        pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
            self.shared().leader(topic, partition)
        }

        /// The partition's leader epoch, if the partition exists. It starts at
        /// 0 and [`move_leader`](Self::move_leader) bumps it.
        pub fn leader_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
            self.shared().leader_epoch(topic, partition)
        }

        /// Makes `node_id` the partition's leader and bumps its leader epoch,
        /// as a controller's election does. Metadata from every broker shows
        /// it at once; the old leader answers NOT_LEADER_OR_FOLLOWER for
        /// Produce, Fetch and ListOffsets of the partition (or
        /// FENCED_LEADER_EPOCH to a Fetch or ListOffsets that names the old
        /// epoch, which Kafka checks first). Long-polling fetches wake up.
        ///
        /// # Panics
        ///
        /// When the partition does not exist or `node_id` is not a broker of
        /// the cluster.
        #[track_caller]
        pub fn move_leader(&self, topic: &str, partition: i32, node_id: i32) {
            self.shared().move_leader(topic, partition, node_id)
        }

        /// The partition's stored batches, oldest first, as Fetch serves
        /// them: with the base offsets and leader epochs the log assigned.
        ///
        /// # Panics
        ///
        /// When the partition does not exist.
        #[track_caller]
        pub fn batches(&self, topic: &str, partition: i32) -> Vec<bytes::Bytes> {
            self.shared().batches(topic, partition)
        }

        /// The partition's log start offset: 0 until
        /// [`delete_records_before`](Self::delete_records_before) moves it.
        ///
        /// # Panics
        ///
        /// When the partition does not exist.
        #[track_caller]
        pub fn log_start_offset(&self, topic: &str, partition: i32) -> i64 {
            self.shared().log_start_offset(topic, partition)
        }

        /// The partition's log end offset, which is also its high watermark
        /// (and its last stable offset when no transaction is open on it):
        /// the offset the next batch gets.
        ///
        /// # Panics
        ///
        /// When the partition does not exist.
        #[track_caller]
        pub fn log_end_offset(&self, topic: &str, partition: i32) -> i64 {
            self.shared().log_end_offset(topic, partition)
        }

        /// Appends a magic-2 record batch as the leader would, bypassing
        /// Produce and its checks, and returns the base offset it got. The
        /// base offset and partition leader epoch are rewritten (both lie
        /// outside the CRC); a producer id in the batch is recorded for the
        /// idempotence checks, as Kafka's log does. A transactional batch
        /// opens its producer's transaction on the partition, holding the
        /// last stable offset back until a marker (an uncompressed control
        /// batch with a COMMIT or ABORT record) for that producer id, from
        /// the transaction coordinator or appended here; an ABORT marker
        /// lists the transaction for `read_committed` fetches. Fetching
        /// long-polls wake up.
        ///
        /// # Panics
        ///
        /// When the partition does not exist or `batch` is shorter than a
        /// record batch header (61 bytes).
        #[track_caller]
        pub fn append_batch(&self, topic: &str, partition: i32, batch: bytes::Bytes) -> i64 {
            self.shared().append_batch(topic, partition, batch)
        }

        /// Appends `records` to `topic` as its leaders would, without a
        /// client, and returns where each went, in input order. Each record
        /// goes to the partition it names, or by its key's murmur2 hash as
        /// Kafka's default partitioner places it (so a test can predict
        /// where a key lands), or, with neither, round-robin over the
        /// topic's partitions. The records of one call land in each
        /// partition in their input order, in uncompressed batches of about
        /// 16 KiB, with no producer id; records without a timestamp get the
        /// wall clock (or, in a
        /// [deterministic](crate::MockClusterBuilder::deterministic) cluster,
        /// [`DETERMINISTIC_EPOCH_MS`](crate::DETERMINISTIC_EPOCH_MS) plus
        /// their offset). Long-polling fetches wake up.
        ///
        /// All or nothing: an unknown topic, or a record naming a partition
        /// the topic lacks, appends nothing.
        ///
        /// ```
        /// use josefine_mock::{MockCluster, Record};
        ///
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let cluster = MockCluster::builder().topic("orders", 3).start().await?;
        /// let produced = cluster.produce(
        ///     "orders",
        ///     (0..10).map(|i| Record::new().key(format!("customer-{}", i % 4)).value(format!("order {i}"))),
        /// )?;
        /// assert_eq!(produced.len(), 10);
        /// let at_0 = produced.iter().filter(|p| p.partition == 0).count() as i64;
        /// assert_eq!(cluster.log_end_offset("orders", 0), at_0);
        /// // The same key always lands on the same partition.
        /// assert_eq!(produced[0].partition, produced[4].partition);
        /// # Ok(())
        /// # }
        /// ```
        pub fn produce<R: Into<crate::Record>>(
            &self,
            topic: &str,
            records: impl IntoIterator<Item = R>,
        ) -> Result<Vec<crate::Produced>, crate::ProduceError> {
            let records: Vec<crate::Record> = records.into_iter().map(Into::into).collect();
            self.shared().produce(topic, records)
        }

        /// The seed of a
        /// [deterministic](crate::MockClusterBuilder::deterministic) cluster,
        /// `None` for a random one.
        pub fn seed(&self) -> Option<u64> {
            self.shared().seed()
        }

        /// Stores `bytes` as they are (a corrupt or truncated batch, say) at
        /// the log end offset, for testing how a consumer copes with them,
        /// and returns that offset. They span as many offsets as bytes 23..27
        /// (the last offset delta) claim, plus one, or a single offset when
        /// there are not that many bytes; their base offset field is left
        /// alone.
        ///
        /// # Panics
        ///
        /// When the partition does not exist.
        #[track_caller]
        pub fn append_raw(&self, topic: &str, partition: i32, bytes: bytes::Bytes) -> i64 {
            self.shared().append_raw(topic, partition, bytes)
        }

        /// Moves the log start offset up to `offset` (capped at the log end),
        /// as the DeleteRecords API does, dropping batches wholly below it.
        /// Fetches below the new start get OFFSET_OUT_OF_RANGE and ListOffsets
        /// for the earliest offset answers it.
        ///
        /// # Panics
        ///
        /// When the partition does not exist.
        #[track_caller]
        pub fn delete_records_before(&self, topic: &str, partition: i32, offset: i64) {
            self.shared()
                .delete_records_before(topic, partition, offset)
        }

        /// Drops every partition's idempotent-producer state, like a broker
        /// that lost it. The next batch of a producer that does not start at
        /// sequence 0 then gets what
        /// [`set_unknown_producer`](Self::set_unknown_producer) says
        /// (OUT_OF_ORDER_SEQUENCE_NUMBER by default). Producer ids and epochs
        /// handed out by InitProducerId are kept.
        pub fn forget_producer_state(&self) {
            self.shared().forget_producer_state()
        }

        /// How a partition answers a batch from a producer it has no state
        /// for, whose sequence is not 0. See [`UnknownProducer`](crate::UnknownProducer).
        pub fn set_unknown_producer(&self, answer: crate::UnknownProducer) {
            self.shared().settings(|s| s.unknown_producer = answer)
        }

        /// With `true`, Fetch fills each partition's byte budget exactly, so
        /// the records end with the head of the batch that did not fit, as
        /// Kafka's byte-range log reads do and as consumers must tolerate.
        /// The default (`false`) returns whole batches only.
        pub fn set_truncate_last_batch(&self, truncate: bool) {
            self.shared().settings(|s| s.truncate_last_batch = truncate)
        }

        /// Whether InitProducerId v3+ with a known producer id and its current
        /// epoch bumps the epoch of that id (the default, KIP-360 as
        /// transactional producers see it) or, with `false`, hands out a fresh
        /// producer id at epoch 0 as Apache Kafka does for every request
        /// without a transactional id.
        pub fn set_init_producer_id_bumps_epoch(&self, bump: bool) {
            self.shared()
                .settings(|s| s.init_producer_id_bumps_epoch = bump)
        }

        /// The member ids of a consumer group of either protocol, in join
        /// order, each with its `group.instance.id` (static membership,
        /// KIP-345); empty when the group does not exist.
        pub fn group_members(&self, group: &str) -> Vec<(String, Option<String>)> {
            self.shared().group_members(group)
        }

        /// The group's generation: 0 before its first rebalance completes
        /// (-1 with [`group_generations_start_at_zero`]), `None` when there
        /// is no classic group by that id (see
        /// [`consumer_group_epoch`](Self::consumer_group_epoch) for groups of
        /// the consumer protocol).
        ///
        /// [`group_generations_start_at_zero`]: crate::MockBrokerBuilder::group_generations_start_at_zero
        pub fn group_generation(&self, group: &str) -> Option<i32> {
            self.shared().group_generation(group)
        }

        /// The group's state, of either protocol;
        /// [`GroupState::Dead`](crate::GroupState::Dead) when it does not
        /// exist.
        pub fn group_state(&self, group: &str) -> crate::GroupState {
            self.shared().group_state(group)
        }

        /// The node id of the broker coordinating `group`: the
        /// `hash(group) % n`-th broker, unless
        /// [`move_coordinator`](Self::move_coordinator) moved it.
        pub fn group_coordinator(&self, group: &str) -> i32 {
            self.shared().group_coordinator(group)
        }

        /// The offset `group` committed for the partition, if any. An offset
        /// committed in a transaction (TxnOffsetCommit) shows only once the
        /// transaction committed; see [`pending_offset`](Self::pending_offset).
        pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
            self.shared().committed(group, topic, partition)
        }

        /// Stores a committed offset (no metadata, leader epoch -1) as an
        /// admin's commit would, creating the group if needed.
        pub fn set_committed(&self, group: &str, topic: &str, partition: i32, offset: i64) {
            self.shared().set_committed(group, topic, partition, offset)
        }

        /// Starts a rebalance of a classic group as a membership change
        /// would: heartbeats answer REBALANCE_IN_PROGRESS until every member
        /// has rejoined. False when the group has no members, is already
        /// preparing a rebalance, or is a consumer group (KIP-848).
        pub fn force_rebalance(&self, group: &str) -> bool {
            self.shared().force_rebalance(group)
        }

        /// Removes a member as if its session had expired (its waiting
        /// JoinGroup or SyncGroup gets UNKNOWN_MEMBER_ID) and rebalances;
        /// also drops a member id handed out with MEMBER_ID_REQUIRED. In a
        /// consumer group (KIP-848) the group epoch goes up, the member's
        /// partitions are free at once, and its next heartbeat gets
        /// UNKNOWN_MEMBER_ID. False when there is no such member.
        pub fn kick_member(&self, group: &str, member_id: &str) -> bool {
            self.shared().kick_member(group, member_id)
        }

        /// Makes `node_id` the group's coordinator, as a leader move of its
        /// `__consumer_offsets` partition would. Every other broker answers
        /// the group's requests with NOT_COORDINATOR, and FindCoordinator
        /// names the new one. The old coordinator answers the requests it
        /// was holding (JoinGroup, SyncGroup) with NOT_COORDINATOR, and the
        /// new one loads what Kafka would have persisted: the group as of its
        /// last completed SyncGroup or emptying, with every session
        /// restarted. Committed offsets are kept.
        ///
        /// # Panics
        ///
        /// When `node_id` is not a broker of the cluster.
        #[track_caller]
        pub fn move_coordinator(&self, group: &str, node_id: i32) {
            self.shared().move_coordinator(group, node_id)
        }

        /// While `true`, every group request for `group` (JoinGroup,
        /// SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
        /// DescribeGroups, DeleteGroups) gets COORDINATOR_LOAD_IN_PROGRESS
        /// from its coordinator, and ListGroups on that broker too; the
        /// group's timers stand still. Back to `false`, every member's
        /// session starts afresh, as after Kafka loads a group.
        pub fn set_coordinator_loading(&self, group: &str, loading: bool) {
            self.shared().set_coordinator_loading(group, loading)
        }

        /// The group epoch of a consumer group (KIP-848, `group.protocol=consumer`):
        /// it goes up whenever members join, leave or change their
        /// subscription, or a subscribed topic changes. `None` when there is
        /// no consumer group by that id (a classic group has a
        /// [generation](Self::group_generation) instead).
        pub fn consumer_group_epoch(&self, group: &str) -> Option<i32> {
            self.shared().consumer_group_epoch(group)
        }

        /// The members of a consumer group (KIP-848), in join order: each
        /// one's member id, member epoch (-2 for a static member that left to
        /// come back) and the partitions assigned to it now, sorted. Empty
        /// when there is no consumer group by that id.
        pub fn consumer_group_members(
            &self,
            group: &str,
        ) -> Vec<(String, i32, Vec<(String, i32)>)> {
            self.shared().consumer_group_members(group)
        }

        /// The safety violations the coordinator saw in a consumer group
        /// (KIP-848), oldest first: a partition two live members reported
        /// owning at once in their heartbeats, or one assigned to a member
        /// while another member's last report still held it. Empty means
        /// no partition was ever owned twice, as far as the members said.
        pub fn consumer_group_overlaps(&self, group: &str) -> Vec<String> {
            self.shared().consumer_group_overlaps(group)
        }

        /// Makes the coordinator stop accepting a consumer-group member's
        /// epoch, as when it moved the member on and the member missed it:
        /// its next heartbeat gets FENCED_MEMBER_EPOCH (its commits
        /// STALE_MEMBER_EPOCH), and it must give up its partitions and rejoin
        /// at epoch 0 with the same member id, which the mock lets in as a
        /// new member. Its partitions stay reserved for it until then, or
        /// until its session ends. For an eviction (the member is gone and
        /// its next heartbeat gets UNKNOWN_MEMBER_ID), use
        /// [`kick_member`](Self::kick_member). False when there is no such
        /// member.
        pub fn fence_consumer_group_member(&self, group: &str, member_id: &str) -> bool {
            self.shared().fence_consumer_group_member(group, member_id)
        }

        /// The transactional id's state at its transaction coordinator:
        /// producer id and epoch, where its transaction stands, and the
        /// partitions and groups in it; `None` before its first
        /// InitProducerId. A transaction past its timeout shows aborted,
        /// with the epoch that fenced its producer.
        pub fn transaction(&self, transactional_id: &str) -> Option<crate::TransactionView> {
            self.shared().transaction(transactional_id)
        }

        /// The node id of the broker coordinating the transactional id: the
        /// `hash(id) % n`-th broker, as for groups, unless
        /// [`move_transaction_coordinator`](Self::move_transaction_coordinator)
        /// moved it.
        pub fn transaction_coordinator(&self, transactional_id: &str) -> i32 {
            self.shared().transaction_coordinator(transactional_id)
        }

        /// Makes `node_id` the transactional id's coordinator, as a leader
        /// move of its `__transaction_state` partition would: FindCoordinator
        /// names it, every other broker answers the id's InitProducerId,
        /// AddPartitionsToTxn, AddOffsetsToTxn and EndTxn with
        /// NOT_COORDINATOR. The id's state (producer id, epoch, an ongoing
        /// transaction) moves with it, as Kafka reloads it from the log; the
        /// coordinator epoch that later markers carry goes up.
        ///
        /// # Panics
        ///
        /// When `node_id` is not a broker of the cluster.
        #[track_caller]
        pub fn move_transaction_coordinator(&self, transactional_id: &str, node_id: i32) {
            self.shared()
                .move_transaction_coordinator(transactional_id, node_id)
        }

        /// While `true`, the transactional id's coordinator answers its
        /// requests with COORDINATOR_LOAD_IN_PROGRESS, a transactional
        /// Produce for it gets NOT_ENOUGH_REPLICAS (Kafka's answer when the
        /// partition's verification cannot reach the coordinator), and its
        /// timers stand still.
        pub fn set_transaction_coordinator_loading(&self, transactional_id: &str, loading: bool) {
            self.shared()
                .set_transaction_coordinator_loading(transactional_id, loading)
        }

        /// How long after a transaction ends (EndTxn, a timeout, a fencing
        /// InitProducerId) its markers are written. Meanwhile it is
        /// PrepareCommit or PrepareAbort, and the coordinator answers the
        /// producer's InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and
        /// a repeated EndTxn with CONCURRENT_TRANSACTIONS, as Kafka does while
        /// its markers are on their way; the LSO of the transaction's
        /// partitions stays put. Default zero: the markers are written
        /// before EndTxn is answered.
        pub fn set_transaction_marker_delay(&self, delay: std::time::Duration) {
            self.shared().set_transaction_marker_delay(delay)
        }

        /// The partition's last stable offset: the first offset of its
        /// earliest open transaction, or the high watermark (the log end
        /// offset) when none is open. A `read_committed` consumer reads up
        /// to it.
        ///
        /// # Panics
        ///
        /// When the partition does not exist.
        #[track_caller]
        pub fn last_stable_offset(&self, topic: &str, partition: i32) -> i64 {
            self.shared().last_stable_offset(topic, partition)
        }

        /// The partition's aborted transactions, oldest first, as (producer
        /// id, offset of the transaction's first batch here, offset of its
        /// ABORT marker): what `read_committed` fetches report.
        ///
        /// # Panics
        ///
        /// When the partition does not exist.
        #[track_caller]
        pub fn aborted_transactions(&self, topic: &str, partition: i32) -> Vec<(i64, i64, i64)> {
            self.shared().aborted_transactions(topic, partition)
        }

        /// The offset a TxnOffsetCommit stored for the group's partition
        /// while its transaction is still open, if any; it becomes
        /// [`committed`](Self::committed) when the transaction commits and
        /// is dropped when it aborts.
        pub fn pending_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
            self.shared().pending_offset(group, topic, partition)
        }

        /// Changes `group.initial.rebalance.delay.ms` for rebalances that
        /// start from now; see
        /// [`MockBrokerBuilder::group_initial_rebalance_delay`](crate::MockBrokerBuilder::group_initial_rebalance_delay).
        pub fn set_group_initial_rebalance_delay(&self, delay: std::time::Duration) {
            self.shared()
                .group_settings(|g| g.initial_rebalance_delay = delay)
        }

        /// Turns Tansu's MEMBER_ID_REQUIRED at every JoinGroup version on or
        /// off; see
        /// [`MockBrokerBuilder::member_id_required_at_every_version`](crate::MockBrokerBuilder::member_id_required_at_every_version).
        pub fn set_member_id_required_at_every_version(&self, required: bool) {
            self.shared()
                .group_settings(|g| g.member_id_required_at_every_version = required)
        }

        /// Adds a SASL user or changes its password, deriving fresh SCRAM
        /// credentials; connections already authenticated stay so, as in Kafka.
        /// The user is stored either way, but only a broker built to require
        /// SASL (see
        /// [`MockBrokerBuilder::sasl_users`](crate::MockBrokerBuilder::sasl_users))
        /// ever asks for it.
        pub fn set_sasl_user(&self, name: &str, password: &str) {
            self.shared().set_sasl_user(name, password)
        }

        /// Removes a SASL user; false when there was none. Its authenticated
        /// connections stay open until their session expires.
        pub fn remove_sasl_user(&self, name: &str) -> bool {
            self.shared().remove_sasl_user(name)
        }

        /// Turns SCRAM server-signature forging on or off for exchanges from
        /// now on; see
        /// [`MockBrokerBuilder::sasl_forge_server_signature`](crate::MockBrokerBuilder::sasl_forge_server_signature).
        pub fn set_sasl_forge_server_signature(&self, forge: bool) {
            self.shared().set_sasl_forge_server_signature(forge)
        }
    };
}
