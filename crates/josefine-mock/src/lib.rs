//! An in-process mock Kafka cluster with fault injection, for testing Kafka
//! clients, and the applications built on them, without a Kafka.
//!
//! A [`MockCluster`] runs one or more brokers on `127.0.0.1` over one
//! in-memory cluster state: topics with a log per partition, leaders that can
//! move, idempotent producers, transactions with a transaction coordinator,
//! consumer groups with a group coordinator and their committed offsets. Any client connects to it as to Kafka (Josefine's
//! through [`MockCluster::client`], with the default `client` feature), and
//! the test then makes the cluster misbehave: errors on chosen requests,
//! latency, dropped connections, leader moves, brokers crashing, partitions
//! added, groups forced to rebalance, on a timer or by hand, and asserts what
//! the client, or the application's handler, made of it.
//!
//! Its point is the faults: any request can be
//! [intercepted](MockBroker::intercept) and answered with an error code,
//! delayed, stalled, dropped with the connection, replaced by raw or garbage
//! bytes or by a response the test built ([`Action::respond`],
//! [`Action::respond_raw`]), or served and then rewritten on its way out
//! ([`Action::rewrite`]: a wrong correlation id, a patched count), and each
//! broker records every request and connection so a test can assert what the
//! client did about it. On top of that a test can
//! move a partition's leader, add partitions to a topic, stop and restart a
//! broker, make a broker forget its idempotent-producer state, delete
//! records, store corrupt batches, and make Fetch end with partial batches. For consumer groups it can move a
//! group's coordinator, make it answer COORDINATOR_LOAD_IN_PROGRESS, force a
//! rebalance, evict or fence a member, read or set committed offsets, and
//! check that no partition of a KIP-848 group was ever owned twice. For
//! transactions it can move a transactional id's coordinator, make it load,
//! hold back the markers, and read the coordinator's state, the last stable
//! offset and the aborted transactions.
//!
//! # Quick start
//!
//! A consumer group with the application's handler, records produced straight
//! into the mock, a fault on a timer, and the at-least-once check at the end:
//!
//! ```
//! use std::time::Duration;
//! use josefine::{Claim, ConsumerGroup, GroupHandler, OffsetReset, Session};
//! use josefine_mock::{MockCluster, Record};
//!
//! /// The application's handler, the code under test.
//! struct Orders;
//!
//! impl GroupHandler for Orders {
//!     async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
//!         while let Some(record) = claim.next().await {
//!             let record = record?;
//!             // ... the application's work with the order ...
//!             session.mark(&record);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let cluster = MockCluster::builder().brokers(3).topic("orders", 6).start().await?;
//! cluster.produce("orders", (0..600).map(|i| Record::new().value(format!("order {i}"))))?;
//!
//! let group = ConsumerGroup::builder(cluster.client().await?, "orders-service")
//!     .auto_offset_reset(OffsetReset::Earliest)
//!     .auto_commit_interval(Duration::from_millis(100))
//!     .build()?;
//! let runner = group.clone();
//! let consuming = tokio::spawn(async move { runner.consume(&["orders"], Orders).await });
//!
//! // A fault while the group works: partition 2's leader moves to broker 3.
//! cluster.after(Duration::from_millis(50), |c| c.move_leader("orders", 2, 3));
//!
//! // At least once: every partition gets committed to its end.
//! let all_committed = cluster
//!     .wait_until(Duration::from_secs(10), |c| {
//!         (0..6).all(|p| c.committed("orders-service", "orders", p) == Some(c.log_end_offset("orders", p)))
//!     })
//!     .await;
//! assert!(all_committed);
//! group.close().await.unwrap();
//! consuming.await??;
//! # Ok(())
//! # }
//! ```
//!
//! The crate's `examples/` hold three longer programs, each also run as a
//! test (`tests/examples.rs`) so they cannot rot:
//!
//! * `handler_through_a_rebalance`: an order processor writing to a store,
//!   with members joining and leaving; every order stored, every offset
//!   committed.
//! * `faults`: a producer and a consumer through a leader move, an injected
//!   retriable error, dropped connections and latency.
//! * `deterministic`: the same scenario twice with one seed on a paused
//!   clock, compared.
//!
//! Run one with `cargo run -p josefine-mock --example faults`.
//!
//! # Injecting faults
//!
//! **Errors and broken answers, per request**: [`MockBroker::intercept`]
//! takes an [`Intercept`] (which requests: an API, versions, a predicate on
//! the [`RequestInfo`], how many times) and an [`Action`]: answer with an
//! error code ([`Action::error`], placed where Kafka puts it for that API),
//! [delay](Action::Delay), [close the connection](Action::Disconnect),
//! [never answer](Action::Stall), or write [garbage](Action::Garbage), a
//! [raw response](Action::RawResponse) or [half of
//! one](Action::HalfResponse). Rules are per broker, tried in order, and
//! report their [hits](InterceptHandle::hits); every broker also logs every
//! request it got ([`MockBroker::requests`]).
//!
//! ```
//! # use josefine_mock::{Action, ApiKey, Intercept, MockCluster, ResponseError};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! # let cluster = MockCluster::builder().topic("orders", 3).start().await?;
//! // Broker 1 refuses the next two Produce requests with a retriable error.
//! let refusals = cluster.broker(1).intercept(
//!     Intercept::api(ApiKey::Produce).times(2),
//!     Action::error(ResponseError::NotLeaderOrFollower),
//! );
//! // ... produce, then:
//! # let _ = refusals;
//! # Ok(())
//! # }
//! ```
//!
//! **The network**: [`MockCluster::set_latency`] and
//! [`set_latency_jitter`](MockCluster::set_latency_jitter) slow every request
//! down, [`set_drop_rate`](MockCluster::set_drop_rate) drops a share of them
//! with their connection, and [`drop_connections`](MockCluster::drop_connections)
//! closes every open connection once. Each has a per-broker form on
//! [`MockBroker`]. They act before the intercept rules.
//!
//! **The cluster**: [`move_leader`](MockCluster::move_leader) (a leader
//! election, with a new leader epoch), [`add_partitions`](MockCluster::add_partitions),
//! [`create_topic`](MockCluster::create_topic),
//! [`stop_broker`](MockCluster::stop_broker) and
//! [`restart_broker`](MockCluster::restart_broker) (a crash, then the
//! controller noticing with [`remove_broker_from_metadata`](MockCluster::remove_broker_from_metadata)),
//! [`delete_records_before`](MockCluster::delete_records_before),
//! [`forget_producer_state`](MockCluster::forget_producer_state),
//! [`append_raw`](MockCluster::append_raw) for corrupt batches, and
//! [`set_truncate_last_batch`](MockCluster::set_truncate_last_batch) for
//! fetches that end mid-batch.
//!
//! **Consumer groups**: [`force_rebalance`](MockCluster::force_rebalance)
//! (as if a member had joined), [`kick_member`](MockCluster::kick_member)
//! (as if its session had expired; [`group_members`](MockCluster::group_members)
//! lists the ids), [`move_coordinator`](MockCluster::move_coordinator),
//! [`set_coordinator_loading`](MockCluster::set_coordinator_loading), and
//! stopping the coordinator's broker; for KIP-848 groups also
//! [`fence_consumer_group_member`](MockCluster::fence_consumer_group_member)
//! (FENCED_MEMBER_EPOCH). To look: [`group_state`](MockCluster::group_state),
//! [`group_generation`](MockCluster::group_generation),
//! [`group_coordinator`](MockCluster::group_coordinator),
//! [`committed`](MockCluster::committed), and for KIP-848 groups
//! [`consumer_group_epoch`](MockCluster::consumer_group_epoch),
//! [`consumer_group_members`](MockCluster::consumer_group_members) and
//! [`consumer_group_overlaps`](MockCluster::consumer_group_overlaps) (the
//! coordinator's safety check: empty when no partition was ever owned by two
//! members at once); to set up: [`set_committed`](MockCluster::set_committed).
//!
//! **Transactions**: [`move_transaction_coordinator`](MockCluster::move_transaction_coordinator),
//! [`set_transaction_coordinator_loading`](MockCluster::set_transaction_coordinator_loading),
//! [`set_transaction_marker_delay`](MockCluster::set_transaction_marker_delay)
//! (Prepare* states and CONCURRENT_TRANSACTIONS), and
//! [`MockClusterBuilder::transaction_max_timeout`]; a transaction's timeout
//! is the producer's. To look: [`transaction`](MockCluster::transaction)
//! (a [`TransactionView`]), [`transaction_coordinator`](MockCluster::transaction_coordinator),
//! [`last_stable_offset`](MockCluster::last_stable_offset),
//! [`aborted_transactions`](MockCluster::aborted_transactions) and
//! [`pending_offset`](MockCluster::pending_offset). Any transaction API can be
//! [intercepted](MockBroker::intercept) like the others: an
//! [`Action::error`] of CONCURRENT_TRANSACTIONS on EndTxn is answered without
//! ending anything.
//!
//! **On a timer**, while the client works: [`MockCluster::after`] runs a fault
//! once, [`after_async`](MockCluster::after_async) runs one that waits (a
//! broker stop), [`every`](MockCluster::every) repeats one, and
//! [`script`](MockCluster::script) chains several ([`FaultScript`]). Each
//! returns a [`Scheduled`] to [wait](Scheduled::wait) for or
//! [cancel](Scheduled::cancel). [`wait_until`](MockCluster::wait_until)
//! waits for a condition on the cluster.
//!
//! **Data**: [`produce`](MockCluster::produce) appends [`Record`]s (key,
//! value, headers, partition, timestamp) without a client, partitioned as
//! Kafka's Java producer would, and returns where each went;
//! [`append_batch`](MockCluster::append_batch) appends a batch you encoded.
//!
//! # Testing your handler through a rebalance
//!
//! The question a consumer-group application must answer is what its handler
//! does when partitions move: is every record processed (at least once), is
//! nothing committed before it was processed, does the handler let go of a
//! revoked partition in time? The recipe (`examples/handler_through_a_rebalance.rs`
//! spells it out):
//!
//! 1. Start a cluster with the topic, and [`produce`](MockCluster::produce)
//!    records whose processing the test can check (ids in the values).
//! 2. Start each member as the application would, with its own client
//!    ([`client_builder`](MockCluster::client_builder) with a `client_id`
//!    per member helps to tell them apart in [`RequestInfo`]), the handler
//!    writing what it did to something the test can read, and short timings
//!    (heartbeats and auto-commits of ~100 ms, fetch waits of ~100 ms).
//! 3. Change the membership: start another member, [close](josefine::ConsumerGroup::close)
//!    one (a clean leave), drop one's `consume` future without closing (a
//!    crash: the coordinator evicts it after the session timeout), or do it
//!    from the broker's side with [`force_rebalance`](MockCluster::force_rebalance)
//!    and [`kick_member`](MockCluster::kick_member). Between steps,
//!    [`wait_until`](MockCluster::wait_until) the group is
//!    [`Stable`](GroupState::Stable) with the expected number of
//!    [members](MockCluster::group_members) and the handler caught up.
//! 4. Close the members, then check the handler saw every record, and that
//!    [`committed`](MockCluster::committed) is the
//!    [`log_end_offset`](MockCluster::log_end_offset) of every partition.
//!
//! # Deterministic mode
//!
//! [`MockClusterBuilder::deterministic`] (and
//! [`MockBrokerBuilder::deterministic`]) takes a seed and makes everything
//! the mock would otherwise draw at random a function of it:
//!
//! * topic ids (otherwise unique in the process, from a shared counter);
//! * SCRAM salts (per user and hash) and server nonces (a seeded stream);
//! * the latency jitter and the drop rate's choices, keyed by the request's
//!   broker, connection id and correlation id, so the same request meets the
//!   same fate whatever the runtime interleaved;
//! * the default timestamps of [`produce`](MockCluster::produce)d records
//!   and the timestamps of transaction markers: [`DETERMINISTIC_EPOCH_MS`]
//!   plus the offset, instead of the wall clock.
//!
//! Member ids, producer ids, fetch session ids, leader placement and group
//! coordinator placement are counters or hashes in every mode, so they too
//! repeat from run to run when the test drives the mock the same way.
//!
//! What a seed cannot fix:
//!
//! * the ports (the OS picks them), hence the addresses in Metadata;
//! * the client's own randomness (Josefine's backoff jitter and SCRAM client
//!   nonces; another client's anything);
//! * tokio's scheduling: which of two connections' requests the mock sees
//!   first, on a multi-threaded runtime above all. Member ids, for one, are
//!   handed out in join order; a test that lets members join at the same time
//!   may see them swap.
//! * the wall clock, which the mock itself does not read (its timers are
//!   tokio's: group sessions and rebalances, transaction timeouts, long
//!   polls, SASL session lifetimes, [`Action::Delay`], latency, scheduled
//!   faults) but clients do.
//!
//! The paused clock closes most of the gap: with tokio's `test-util` feature,
//! `#[tokio::test(start_paused = true)]` runs the test on one thread with a
//! clock that only moves when every task waits, jumping to the next timer.
//! The mock works on it, sockets and all (loopback I/O is ready before the
//! runtime parks, so a request never waits on a virtual timeout): session
//! timeouts, rebalances and latency then cost no real time, and a run is as
//! repeatable as the client's own timers allow. `tests/examples.rs` runs
//! each example on a paused clock as well as on a real one. A paused clock
//! jumps whenever the runtime idles, so a test that waits on something
//! outside the runtime (a thread, a child process, a blocking call) sees its
//! timeouts fire early.
//!
//! # Behaving like Kafka
//!
//! * ApiVersions advertises, per implemented API, the versions the crate can
//!   encode, or what [`MockBrokerBuilder::api_versions`] says. A request
//!   outside the advertised range closes the connection; an ApiVersions
//!   request above it gets the v0 UNSUPPORTED_VERSION fallback (KIP-511).
//! * A request for an API the mock does not implement, an absurd length
//!   prefix, or a request that does not decode closes the connection with a
//!   `tracing` warning, as Kafka does.
//! * Each connection is served one request at a time, in order; a
//!   long-polling Fetch holds up the requests behind it on its connection,
//!   and only those.
//! * Produce: only the leader accepts; exactly one CRC-checked magic-2 batch
//!   per partition; offsets assigned by rewriting the base offset, and the
//!   leader epoch stamped, as a leader does; idempotent producers' sequences
//!   checked with the last five batches remembered (duplicates answered with
//!   their original offset); transactional batches verified with the
//!   transaction coordinator (see [Transactions](#transactions)); `acks=0`
//!   answered by silence, or by closing the connection when a partition
//!   failed.
//! * Fetch: leader and leader-epoch checks (KIP-320), byte limits with the
//!   first batch exempt (KIP-74), long polling up to `max_wait_ms`,
//!   incremental fetch sessions (KIP-227), topic ids from v13 (KIP-516), the
//!   current leader and its endpoint with leadership errors (KIP-951), the
//!   last stable offset, and under `read_committed` data up to it with the
//!   aborted transactions in range.
//! * ListOffsets: earliest, latest (the LSO under `read_committed`), max
//!   timestamp and by timestamp, with the same leader checks.
//!   InitProducerId: producer ids from 1000, epoch bumps (KIP-360), and
//!   transactional ids.
//! * Consumer groups follow Kafka's group coordinator, classic and KIP-848
//!   (see [Consumer groups](#consumer-groups)).
//! * SASL, when a `sasl_*` builder setting asks for it (see
//!   [`MockBrokerBuilder::sasl_users`]): PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
//!   against a user store (the SCRAM server is the mock's own, with derived
//!   keys only), OAUTHBEARER against registered tokens; before
//!   authentication only ApiVersions, SaslHandshake and SaslAuthenticate, in
//!   Kafka's order, and anything else closes the connection; failures are
//!   answered (UNSUPPORTED_SASL_MECHANISM with the enabled list,
//!   SASL_AUTHENTICATION_FAILED with Kafka's messages) and then close it;
//!   session lifetimes and re-authentication on the same connection (KIP-368).
//!   Without SASL the two APIs answer ILLEGAL_SASL_STATE, as a PLAINTEXT
//!   listener does. Only SaslHandshake v1 is advertised: v0's raw tokens
//!   (before KIP-152) are not implemented.
//! * Stopping a broker is a crash before the controller reacts: connections
//!   are refused, but Metadata still lists it and it keeps its partitions
//!   until a test calls [`MockCluster::remove_broker_from_metadata`] and
//!   [`MockCluster::move_leader`].
//!
//! # Consumer groups
//!
//! A group's coordinator is the `hash(group) % n`-th broker (Java's
//! `String.hashCode`, as Kafka places groups on `__consumer_offsets`
//! partitions), or wherever [`MockCluster::move_coordinator`] put it; every
//! other broker answers the group's requests with NOT_COORDINATOR. The
//! classic protocol's state machine is Kafka's
//! (`GroupMetadataManager`/`ClassicGroup`):
//!
//! * JoinGroup: a dynamic member's first join gets MEMBER_ID_REQUIRED at v4+
//!   (KIP-394); the first rebalance of an empty group waits
//!   `group.initial.rebalance.delay` ([`MockBrokerBuilder::group_initial_rebalance_delay`],
//!   default 0 where Kafka's is 3 s), later ones until every member rejoined
//!   or the largest rebalance timeout ran out, dropping the dynamic members
//!   that did not rejoin; generations count from 1; each member votes for
//!   its favourite protocol among those all support; only the leader's
//!   answer lists the members. Static members (KIP-345) rejoining with their
//!   instance id replace their old member id, which is fenced
//!   (FENCED_INSTANCE_ID), without a rebalance in a Stable group (KIP-814's
//!   `skip_assignment` at v9).
//! * SyncGroup: followers wait for the leader's assignment; members that do
//!   not sync within the rebalance timeout are removed and the group
//!   rebalances, so followers of a silent leader get REBALANCE_IN_PROGRESS.
//! * Sessions: a member that neither heartbeats nor commits (nor has a
//!   JoinGroup or SyncGroup waiting) for its session timeout is removed and
//!   the group rebalances; Heartbeat answers REBALANCE_IN_PROGRESS while a
//!   rebalance is being prepared.
//! * OffsetCommit: generation and member checked; accepted during
//!   PreparingRebalance (as Kafka does), REBALANCE_IN_PROGRESS during
//!   CompletingRebalance; "simple" commits (generation -1, no member) only
//!   while the group is Empty; unknown partitions get
//!   UNKNOWN_TOPIC_OR_PARTITION. OffsetFetch answers -1 for no commit.
//! * Group state and offsets belong to the cluster: they survive a
//!   coordinator's stop and restart. A stopped or moved coordinator's
//!   waiting requests get NOT_COORDINATOR, and the group comes back as Kafka
//!   would reload it from `__consumer_offsets` (its last completed
//!   generation), with fresh sessions; while its coordinator is stopped or
//!   [loading](MockCluster::set_coordinator_loading), a group's timers stand
//!   still.
//!
//! **The consumer group protocol** (KIP-848, `group.protocol=consumer`,
//! ConsumerGroupHeartbeat v0-v1 and ConsumerGroupDescribe v0-v1) follows Kafka
//! 4's coordinator (`GroupMetadataManager`, `ConsumerGroup`,
//! `CurrentAssignmentBuilder`); `group/consumer.rs` spells it out:
//!
//! * The coordinator assigns, with a uniform, sticky assignor (balanced; members
//!   keep what they have up to their share). The group epoch goes up when
//!   members join, leave or change subscription (topic names, or a regex
//!   matched against whole topic names) and when a subscribed topic changes;
//!   each member then reconciles at its own pace: partitions it must give up
//!   are taken out of its assignment and it stays at its epoch until a
//!   heartbeat reports them gone; only then does it move to the new epoch and
//!   get the target partitions nobody else holds (the rest follow, once
//!   released). A member that does not give them up within its rebalance
//!   timeout is removed. The assignment goes out only when it changed or the
//!   heartbeat was a full one.
//! * Epochs are checked as Kafka does: UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH
//!   (an older epoch passes only as the previous one with owned partitions
//!   within the assignment: a lost answer), FENCED_INSTANCE_ID and
//!   UNRELEASED_INSTANCE_ID for static members; epoch -1 leaves, -2 leaves
//!   for a while, the assignment kept for the instance id until the session
//!   ends. Sessions last `group.consumer.session.timeout.ms`
//!   ([`MockBrokerBuilder::consumer_group_session_timeout`], 45 s); heartbeats
//!   come every `group.consumer.heartbeat.interval.ms`
//!   ([`MockBrokerBuilder::consumer_group_heartbeat_interval`], 500 ms where
//!   Kafka's is 5 s).
//! * OffsetCommit (v9+) needs the member's current epoch
//!   (STALE_MEMBER_EPOCH); a simple commit only while the group has no
//!   members. Offsets, members, epochs and assignments are what Kafka
//!   persists, so they survive a coordinator's move, loading or restart, with
//!   fresh session timers.
//! * The two protocols' groups are distinct: ConsumerGroupHeartbeat for a
//!   classic group with members is GROUP_ID_NOT_FOUND, JoinGroup for a
//!   consumer group with members INCONSISTENT_GROUP_PROTOCOL; an empty group
//!   changes protocol with its offsets. DescribeGroups sees a consumer group
//!   as Dead; ListGroups lists both types.
//! * The coordinator records the partitions each member reports owning and
//!   keeps a violation whenever two members report one, or one is assigned a
//!   partition another still reports: [`MockCluster::consumer_group_overlaps`].
//!
//! Where the mock parts from Kafka: session timeouts down to 1 ms are
//! accepted (Kafka: 6 s, see [`MockBrokerBuilder::group_session_timeout_range`]);
//! protocol-vote ties go to the leader's preference (Kafka: hash-map order);
//! a JoinGroup or SyncGroup superseded by a second one from the same member
//! gets REBALANCE_IN_PROGRESS, and a waiting SyncGroup of a member that is
//! removed gets UNKNOWN_MEMBER_ID (Kafka leaves both unanswered); member ids
//! end in a counter-made UUID; `group.max.size` is unlimited; there is no
//! offset expiry. Under
//! KIP-848: no mixed groups (Kafka 4 lets classic members into a consumer
//! group and upgrades a classic group with members online); a member id
//! rejoining at epoch 0 after being fenced joins at once as a new member
//! (Kafka answers FENCED_MEMBER_EPOCH until its session ends); the assignors
//! "uniform" and "range" are both the mock's uniform one, which ignores racks;
//! regexes are the `regex` crate's (RE2 syntax, as Kafka's RE2/J for all but
//! exotic features), evaluated at every heartbeat; `group.consumer.max.size`
//! is unlimited. For Tansu's behaviour see
//! [`MockBrokerBuilder::member_id_required_at_every_version`] and
//! [`MockBrokerBuilder::group_generations_start_at_zero`].
//!
//! # Transactions
//!
//! The transaction coordinator follows Kafka's for transaction.version 0/1
//! (KIP-98, KIP-360, KIP-447, KIP-588, and KIP-890 part 1's verification);
//! `txn/mod.rs` spells it out. A transactional id's coordinator is placed
//! like a group's (`hash(id) % n`, or wherever
//! [`MockCluster::move_transaction_coordinator`] put it); FindCoordinator
//! with key type 1 names it, other brokers answer NOT_COORDINATOR.
//!
//! * InitProducerId (v0-v5) with a transactional id: the first call
//!   allocates a producer id at epoch 0, later ones bump the epoch and fence
//!   the previous instance; over an Ongoing transaction the coordinator
//!   aborts it (with a bumped epoch, so its markers fence the old producer on
//!   every partition) and answers CONCURRENT_TRANSACTIONS, and the retry gets
//!   the epoch after that. KIP-360's producer id and epoch (v3+): the current
//!   epoch is bumped, the previous one is a retry and gets the current one
//!   back, anything else PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v4).
//!   A timeout above `transaction.max.timeout.ms`
//!   ([`MockClusterBuilder::transaction_max_timeout`], 15 min) is
//!   INVALID_TRANSACTION_TIMEOUT, an empty id INVALID_REQUEST.
//! * AddPartitionsToTxn (v0-v3), AddOffsetsToTxn (v0-v4), EndTxn (v0-v4):
//!   INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED (INVALID_PRODUCER_EPOCH
//!   before v2), CONCURRENT_TRANSACTIONS while markers are being written; a
//!   request naming an unknown partition fails whole
//!   (UNKNOWN_TOPIC_OR_PARTITION, OPERATION_NOT_ATTEMPTED for the rest).
//!   EndTxn writes a control batch (COMMIT or ABORT) to every partition of
//!   the transaction, then the state is CompleteCommit or CompleteAbort;
//!   repeating it is NONE, the other outcome or no transaction
//!   INVALID_TXN_STATE.
//! * Produce of a transactional batch: the partition must be in the
//!   producer's Ongoing transaction (TRANSACTION_ABORTABLE from Produce v11,
//!   INVALID_TXN_STATE before), the epoch current (INVALID_PRODUCER_EPOCH);
//!   sequences are checked as for idempotent producers, a new epoch starting
//!   at 0. Each partition tracks its open transactions (the last stable
//!   offset is the first offset of the earliest) and its aborted ones, which
//!   `read_committed` fetches report.
//! * TxnOffsetCommit (v0-v4), at the group coordinator: the group must be
//!   in the transaction (AddOffsetsToTxn; TRANSACTION_ABORTABLE from v4,
//!   INVALID_TXN_STATE before), the producer current
//!   (INVALID_PRODUCER_EPOCH), and from v3 the member and generation valid
//!   as for OffsetCommit (a KIP-848 member's epoch too: ILLEGAL_GENERATION).
//!   The offsets wait for the transaction: a commit makes them the group's
//!   [`committed`](MockCluster::committed) offsets, an abort drops them;
//!   meanwhile OffsetFetch with `require_stable` answers
//!   UNSTABLE_OFFSET_COMMIT for their partitions.
//! * A transaction Ongoing past its timeout is aborted at its deadline by
//!   the coordinator's timer, fencing its producer (PRODUCER_FENCED at the
//!   coordinator, INVALID_PRODUCER_EPOCH on Produce). While its
//!   coordinator's broker is stopped or [loading](MockCluster::set_transaction_coordinator_loading)
//!   the timers stand still; an overdue transaction is aborted once it is
//!   back. Its state belongs to the cluster (Kafka's `__transaction_state`)
//!   and survives moves and restarts.
//!
//! Where the mock parts from Kafka: markers are written the moment a
//! transaction ends, before EndTxn is answered (Kafka answers first and
//! writes them asynchronously; [`MockCluster::set_transaction_marker_delay`]
//! brings the gap back); a timed-out transaction is aborted at its deadline
//! (Kafka checks every 10 s); transactional ids never expire; Kafka adds a
//! group's `__consumer_offsets` partition to the transaction where the mock
//! adds the group. There is no transaction.version 2 (KIP-890 part 2:
//! EndTxn v5, Produce's implicit AddPartitionsToTxn), no
//! DescribeTransactions or ListTransactions, and no two-phase commit
//! (KIP-939).
//!
//! # Known gaps
//!
//! * No replication: every replica is always in sync, the high watermark is
//!   the log end offset, `acks` 1 and -1 are the same, and followers never
//!   serve fetches (KIP-392): only the leader answers.
//! * No ACLs, no TLS, no quotas (throttle time is always 0). SASL
//!   authenticates but authorizes nothing; OAUTHBEARER tokens are opaque
//!   strings, not validated JWTs.
//! * Records are never parsed, only batch headers: ListOffsets by timestamp
//!   answers the first batch whose max timestamp qualifies (with that max
//!   timestamp), where Kafka names the exact record; compressed batches are
//!   stored as sent. There is no retention or compaction; the log start
//!   moves only with [`MockCluster::delete_records_before`].
//! * Without a transactional id, InitProducerId bumps a known producer's
//!   epoch; Apache Kafka hands out a fresh id instead (see
//!   [`MockCluster::set_init_producer_id_bumps_epoch`]). A partition with no
//!   state for a producer refuses a batch not starting at sequence 0, where
//!   Kafka 2.5+ accepts it (see [`UnknownProducer`]).
//! * Latency models a slow broker rather than a slow link: it holds up the
//!   requests pipelined behind it on the same connection (as
//!   [`Action::Delay`] does), where a link's latency would delay them side by
//!   side. A dropped connection is closed by the broker, never silently
//!   blackholed; use [`Action::Stall`] for a peer that stops answering.
//! * Fetch sessions list partitions in the order they joined; Kafka rotates
//!   the ones that returned data to the back. `last_fetched_epoch` is not
//!   checked, as the logs never diverge.
//!
//! # Layout
//!
//! `broker.rs` (one broker's public handle and builder), `cluster.rs` (the
//! multi-broker cluster, and the shared state with its test-facing
//! operations, which `ops.rs` exposes on both handles), `server.rs` (accept
//! loop, framing, per-connection task), `intercept.rs` (rules and actions),
//! `state.rs` (brokers, topics, partitions, leadership checks), `log.rs`
//! (a partition's batches and producer state), `batch.rs` (the record
//! batch header and Produce's validation), `fetch_sessions.rs` (the
//! incremental fetch sessions, KIP-227), `group/` (the group coordinator's
//! sans-io state machine: placement and offsets in `mod.rs`, one classic
//! group's membership in `classic.rs`, one
//! KIP-848 group's in `consumer.rs`, its assignor in `uniform.rs`,
//! transactional offsets waiting for their transaction in `txn_offsets.rs`),
//! `coordinator.rs` (its tokio driver: waiting requests and timers), `txn/`
//! (the transaction coordinator's sans-io state machine in `mod.rs`, the
//! markers it writes in `marker.rs`, its driver in `driver.rs`),
//! `placement.rs` (which broker coordinates a group or transactional id),
//! `sasl/`
//! (the user store, each connection's authentication state, and the
//! mechanisms' server sides, sans-io), `api/` (one file per Kafka API),
//! `produce.rs` (records encoded and appended without a client),
//! `network.rs` (latency, jitter, drop rate), `schedule.rs` (faults on a
//! timer), `entropy.rs` (everything random, or seeded), `client.rs` (Josefine
//! clients for the mock, behind the `client` feature). The state is shared by
//! the whole cluster; listeners, intercepts, network knobs, request logs and
//! fetch sessions are per broker.

#![warn(missing_docs)]

#[macro_use]
mod ops;

mod api;
mod batch;
mod broker;
#[cfg(feature = "client")]
mod client;
mod cluster;
mod coordinator;
mod entropy;
mod fetch_sessions;
mod group;
mod intercept;
mod log;
mod network;
mod placement;
mod produce;
mod sasl;
mod schedule;
mod server;
mod state;
mod txn;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use broker::{MockBroker, MockBrokerBuilder, DEFAULT_MAX_FRAME_SIZE};
pub use cluster::{MockCluster, MockClusterBuilder};
pub use group::GroupState;
pub use intercept::{Action, Intercept, InterceptHandle, RequestInfo, Responder, Rewriter};
pub use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::ResponseError;
pub use log::UnknownProducer;
pub use produce::{ProduceError, Produced, Record, DETERMINISTIC_EPOCH_MS};
pub use sasl::SaslMechanism;
pub use schedule::{FaultScript, Scheduled};
pub use txn::{TransactionState, TransactionView};

/// Locks a mutex, ignoring poison: a test that panicked while holding one of
/// the mock's locks must not turn every later use of the mock into a second,
/// misleading panic. Every critical section leaves its data consistent after
/// each step, so there is nothing half-done for poison to protect.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
