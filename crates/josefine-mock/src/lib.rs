//! An in-process mock Kafka cluster with fault injection, for testing Kafka
//! clients without a Kafka.
//!
//! A [`MockBroker`] listens on `127.0.0.1` and answers Produce, Fetch,
//! ListOffsets, Metadata, ApiVersions, CreateTopics, CreatePartitions,
//! DeleteTopics, InitProducerId, SaslHandshake and SaslAuthenticate, and as a
//! group coordinator FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! DescribeGroups, ListGroups and DeleteGroups, at every version the
//! `kafka-protocol` crate supports, from an in-memory cluster state: topics,
//! leaders, a log per partition, consumer groups and their committed
//! offsets. A [`MockCluster`] runs several brokers over one such state, so
//! leaders and group coordinators can move and brokers can crash and come
//! back.
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
//! rebalance, evict a member, and read or set committed offsets.
//!
//! ```
//! use std::time::Duration;
//! use josefine_mock::{Action, ApiKey, Intercept, MockBroker, ResponseError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let broker = MockBroker::builder().topic("orders", 3).start().await?;
//!
//! // The first Metadata request fails with a retriable error; later ones are
//! // answered normally, each after 50 ms.
//! let flaky = broker.intercept(
//!     Intercept::api(ApiKey::Metadata).once(),
//!     Action::error(ResponseError::LeaderNotAvailable),
//! );
//! broker.intercept(
//!     Intercept::api(ApiKey::Metadata),
//!     Action::Delay(Duration::from_millis(50)),
//! );
//!
//! let bootstrap: String = broker.bootstrap(); // "127.0.0.1:<port>", for the client
//! # let _ = bootstrap;
//! // ... run the client under test against `bootstrap`, then:
//! assert_eq!(flaky.hits(), 0);
//! assert!(broker.requests().iter().all(|r| r.api_key != ApiKey::Produce));
//! assert_eq!(broker.log_end_offset("orders", 0), 0);
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```
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
//!   their original offset); `acks=0` answered by silence, or by closing the
//!   connection when a partition failed.
//! * Fetch: leader and leader-epoch checks (KIP-320), byte limits with the
//!   first batch exempt (KIP-74), long polling up to `max_wait_ms`,
//!   incremental fetch sessions (KIP-227), topic ids from v13 (KIP-516), the
//!   current leader and its endpoint with leadership errors (KIP-951).
//! * ListOffsets: earliest, latest, max timestamp and by timestamp, with the
//!   same leader checks. InitProducerId: producer ids from 1000, epoch bumps
//!   (KIP-360).
//! * Consumer groups follow Kafka's classic group coordinator (see
//!   [Consumer groups](#consumer-groups)).
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
//! other broker answers the group's requests with NOT_COORDINATOR. The state
//! machine is Kafka's (`GroupMetadataManager`/`ClassicGroup`):
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
//! Where the mock parts from Kafka: session timeouts down to 1 ms are
//! accepted (Kafka: 6 s, see [`MockBrokerBuilder::group_session_timeout_range`]);
//! protocol-vote ties go to the leader's preference (Kafka: hash-map order);
//! a JoinGroup or SyncGroup superseded by a second one from the same member
//! gets REBALANCE_IN_PROGRESS, and a waiting SyncGroup of a member that is
//! removed gets UNKNOWN_MEMBER_ID (Kafka leaves both unanswered); member ids
//! end in a counter-made UUID; `group.max.size` is unlimited; there is no
//! offset expiry; KIP-848 (ConsumerGroupHeartbeat) and transactional offset
//! commits are not implemented. For Tansu's behaviour see
//! [`MockBrokerBuilder::member_id_required_at_every_version`] and
//! [`MockBrokerBuilder::group_generations_start_at_zero`].
//!
//! # Known gaps
//!
//! * No replication: every replica is always in sync, the high watermark and
//!   last stable offset are the log end offset, `acks` 1 and -1 are the same,
//!   and followers never serve fetches (KIP-392): only the leader answers.
//! * No transactions: InitProducerId with a transactional id gets
//!   TRANSACTIONAL_ID_AUTHORIZATION_FAILED and transactional batches
//!   INVALID_TXN_STATE. No ACLs, no TLS, no quotas (throttle time is
//!   always 0). SASL authenticates but authorizes nothing; OAUTHBEARER
//!   tokens are opaque strings, not validated JWTs.
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
//! batch header and Produce's validation), `session.rs` (fetch sessions),
//! `group/` (the group coordinator's sans-io state machine: placement and
//! offsets in `mod.rs`, one group's membership in `classic.rs`),
//! `coordinator.rs` (its tokio driver: waiting requests and timers), `sasl/`
//! (the user store, each connection's authentication state, and the
//! mechanisms' server sides, sans-io), `api/` (one file per Kafka API). The state is shared by the whole cluster;
//! listeners, intercepts, request logs and fetch sessions are per broker.

#[macro_use]
mod ops;

mod api;
mod batch;
mod broker;
mod cluster;
mod coordinator;
mod group;
mod intercept;
mod log;
mod sasl;
mod server;
mod session;
mod state;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use broker::{MockBroker, MockBrokerBuilder, DEFAULT_MAX_FRAME_SIZE};
pub use cluster::{MockCluster, MockClusterBuilder};
pub use group::GroupState;
pub use intercept::{Action, Intercept, InterceptHandle, RequestInfo, Responder, Rewriter};
pub use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::ResponseError;
pub use log::UnknownProducer;
pub use sasl::SaslMechanism;

/// Locks a mutex, ignoring poison: a test that panicked while holding one of
/// the mock's locks must not turn every later use of the mock into a second,
/// misleading panic. Every critical section leaves its data consistent after
/// each step, so there is nothing half-done for poison to protect.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
