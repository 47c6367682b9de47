//! The group coordinator: Kafka's classic consumer-group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), committed offsets, and which broker
//! coordinates which group.
//!
//! Sans-io, like the rest of the house's membership code: every operation
//! takes `now` and returns what to answer; a request that has to wait
//! (JoinGroup until the rebalance completes, SyncGroup until the leader sends
//! the assignment) gets a [`Waiter`] and its answer later comes out of
//! [`Coordinator::take_replies`]. Timers are deadlines the driver asks for
//! with [`Coordinator::next_deadline`] and fires with [`Coordinator::tick`].
//! Nothing here knows about tokio or sockets; `crate::coordinator` is the
//! driver that does.
//!
//! The semantics are Apache Kafka's group coordinator for classic groups
//! (`GroupMetadataManager` and `ClassicGroup` in Kafka 3.7+/4.0, which kept
//! the older Scala `GroupCoordinator`'s behaviour): KIP-62 (rebalance timeout
//! separate from the session timeout), KIP-134 (initial rebalance delay),
//! KIP-345 (static membership), KIP-394 (member id required on the first
//! join, v4+), KIP-814 (skip assignment for a rejoining static leader, v9),
//! and the pending-sync timeout Kafka added in 3.1 (KAFKA-13258: members that
//! do not send SyncGroup within the rebalance timeout are removed). See
//! [`classic`] for the per-group state machine.
//!
//! Placement: a group's coordinator is the `hash(group) % n`-th broker of the
//! cluster (Java's `String.hashCode`, made non-negative as Kafka's
//! `Utils.abs` does), unless a test moved it. Group state and offsets belong
//! to the cluster, the coordinator role to a broker: when the role moves, or
//! the coordinating broker stops, the group is *unloaded* (waiting requests
//! get NOT_COORDINATOR, the in-memory state falls back to what Kafka would
//! have written to `__consumer_offsets`) and it is *loaded* again, with fresh
//! session timers, once a running broker coordinates it.

pub(crate) mod classic;
pub(crate) mod consumer;
pub(crate) mod txn_offsets;
pub(crate) mod uniform;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use classic::{Ctx, Group};
use consumer::ConsumerGroup;
use txn_offsets::PendingOffsets;

/// Identifies a request waiting for its answer (see [`Outcome::Wait`]).
pub(crate) type Waiter = u64;

pub(crate) const NONE: i16 = 0;
pub(crate) const COORDINATOR_LOAD_IN_PROGRESS: i16 =
    ResponseError::CoordinatorLoadInProgress.code();
pub(crate) const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();
pub(crate) const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
pub(crate) const ILLEGAL_GENERATION: i16 = ResponseError::IllegalGeneration.code();
pub(crate) const INCONSISTENT_GROUP_PROTOCOL: i16 = ResponseError::InconsistentGroupProtocol.code();
pub(crate) const INVALID_GROUP_ID: i16 = ResponseError::InvalidGroupId.code();
pub(crate) const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
pub(crate) const INVALID_SESSION_TIMEOUT: i16 = ResponseError::InvalidSessionTimeout.code();
pub(crate) const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
pub(crate) const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();
pub(crate) const FENCED_INSTANCE_ID: i16 = ResponseError::FencedInstanceId.code();
pub(crate) const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
pub(crate) const NON_EMPTY_GROUP: i16 = ResponseError::NonEmptyGroup.code();
pub(crate) const OFFSET_METADATA_TOO_LARGE: i16 = ResponseError::OffsetMetadataTooLarge.code();
pub(crate) const FENCED_MEMBER_EPOCH: i16 = ResponseError::FencedMemberEpoch.code();
pub(crate) const STALE_MEMBER_EPOCH: i16 = ResponseError::StaleMemberEpoch.code();
pub(crate) const UNRELEASED_INSTANCE_ID: i16 = ResponseError::UnreleasedInstanceId.code();
pub(crate) const UNSUPPORTED_ASSIGNOR: i16 = ResponseError::UnsupportedAssignor.code();
pub(crate) const INVALID_REGULAR_EXPRESSION: i16 = ResponseError::InvalidRegularExpression.code();
pub(crate) const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();
pub(crate) const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();
pub(crate) const UNSTABLE_OFFSET_COMMIT: i16 = ResponseError::UnstableOffsetCommit.code();

/// The state of a consumer group, as DescribeGroups, ListGroups and
/// ConsumerGroupDescribe name it: Kafka's `ClassicGroupState` for groups of
/// the classic protocol,
///
/// ```text
///            +--------------------------------------------------+
///            v                                                  |
/// Empty --> PreparingRebalance --> CompletingRebalance --> Stable
///   ^            |    ^                    |                    |
///   +------------+    +--------------------+--------------------+
///   (no member rejoined)         (a member joins, leaves or fails)
/// ```
///
/// and its `ConsumerGroupState` for groups of the consumer protocol
/// (KIP-848): `Empty`, `Assigning` (the group epoch moved past the target
/// assignment's), `Reconciling` (members moving to their targets), `Stable`.
///
/// `Dead` is a group that does not exist (never created, or deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// A rebalance started: waiting for the members to (re)join.
    PreparingRebalance,
    /// Everybody joined: waiting for the leader's assignment (SyncGroup).
    CompletingRebalance,
    /// Every member has its assignment for the current generation (or, in
    /// a consumer group, its target assignment at the group epoch).
    Stable,
    /// A consumer group (KIP-848) whose epoch moved on: its target
    /// assignment is computed at the next heartbeat.
    Assigning,
    /// A consumer group (KIP-848) whose members are moving to their target
    /// assignments.
    Reconciling,
    /// The group does not exist.
    Dead,
}

impl GroupState {
    /// The name Kafka puts on the wire: `"Stable"`, `"PreparingRebalance"`...
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Dead => "Dead",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The coordinator's settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone)]
pub(crate) struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`; Kafka's default is 3 s, the
    /// mock's 0 so tests do not wait.
    pub(crate) initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` (Kafka: 6 s) and
    /// `group.max.session.timeout.ms` (Kafka: 30 min). The mock's minimum is
    /// 1 ms so tests can use short sessions.
    pub(crate) min_session_timeout: Duration,
    pub(crate) max_session_timeout: Duration,
    /// Tansu answers the first JoinGroup of a dynamic member with
    /// MEMBER_ID_REQUIRED at every version; Kafka only from v4 (KIP-394).
    pub(crate) member_id_required_at_every_version: bool,
    /// The generation of a group's first completed rebalance: 1 in Kafka,
    /// 0 in Tansu.
    pub(crate) first_generation: i32,
    /// How long a new member's JoinGroup may wait (Kafka's constant
    /// `CLASSIC_GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS`, 5 min, not a config).
    pub(crate) new_member_join_timeout: Duration,
    /// `offset.metadata.max.bytes`.
    pub(crate) max_offset_metadata: usize,
    /// `group.consumer.session.timeout.ms` (Kafka: 45 s).
    pub(crate) consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`; Kafka's default is 5 s, the
    /// mock's 500 ms so tests move fast.
    pub(crate) consumer_heartbeat_interval: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout: Duration::from_millis(1),
            max_session_timeout: Duration::from_secs(30 * 60),
            member_id_required_at_every_version: false,
            first_generation: 1,
            new_member_join_timeout: Duration::from_secs(5 * 60),
            max_offset_metadata: 4096,
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_millis(500),
        }
    }
}

/// One protocol a member supports (an assignor, for consumers), in the
/// member's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub(crate) name: String,
    pub(crate) metadata: Bytes,
}

/// A JoinGroup request, whatever its version.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub(crate) group_id: String,
    /// Empty for a member without an id yet.
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    /// The session timeout for v0, which has no rebalance timeout.
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<Protocol>,
    /// Whether an unknown dynamic member gets MEMBER_ID_REQUIRED first
    /// (KIP-394: v4+).
    pub(crate) requires_known_member_id: bool,
    /// Whether the response can carry `skip_assignment` (KIP-814: v9+).
    pub(crate) supports_skip_assignment: bool,
}

/// One member as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinResponse {
    pub(crate) error: i16,
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    /// Empty when there is none.
    pub(crate) leader: String,
    pub(crate) skip_assignment: bool,
    /// Every member's metadata for the chosen protocol, for the leader only.
    pub(crate) members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub(crate) fn error(error: i16, member_id: impl Into<String>) -> Self {
        JoinResponse {
            error,
            member_id: member_id.into(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request, whatever its version.
#[derive(Debug, Clone)]
pub(crate) struct SyncRequest {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    /// The leader's plan: (member id, assignment); followers send none.
    pub(crate) assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncResponse {
    pub(crate) error: i16,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignment: Bytes,
}

impl SyncResponse {
    pub(crate) fn error(error: i16) -> Self {
        SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// The answer to a request that waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Join(JoinResponse),
    Sync(SyncResponse),
}

/// An answer now, or later under this waiter id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome<T> {
    Done(T),
    Wait(Waiter),
}

/// One offset of an OffsetCommit request.
#[derive(Debug, Clone)]
pub(crate) struct OffsetToCommit {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: Option<String>,
}

/// An OffsetCommit request, with the partitions that do not exist already
/// taken out (Kafka answers those before asking the coordinator).
#[derive(Debug, Clone)]
pub(crate) struct CommitRequest {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) generation: i32,
    /// OffsetCommit v9+ answers GROUP_ID_NOT_FOUND where older versions get
    /// ILLEGAL_GENERATION.
    pub(crate) version: i16,
    pub(crate) offsets: Vec<OffsetToCommit>,
}

/// A TxnOffsetCommit request (KIP-98), with the partitions that do not
/// exist already taken out, after the transaction coordinator verified that
/// the group is part of the producer's transaction.
#[derive(Debug, Clone)]
pub(crate) struct TxnCommitRequest {
    pub(crate) group_id: String,
    pub(crate) producer_id: i64,
    /// Empty, -1 and `None` before v3, which has no member fields.
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) generation: i32,
    pub(crate) offsets: Vec<OffsetToCommit>,
}

/// What OffsetFetch returns for a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    /// -1 when the committer did not say.
    pub(crate) leader_epoch: i32,
    /// Empty when the committer sent none.
    pub(crate) metadata: String,
}

/// OffsetFetch's answer for one partition: the commit if there is one, or
/// the partition's error (UNSTABLE_OFFSET_COMMIT).
pub(crate) type PartitionOffset = Result<Option<Committed>, i16>;

/// OffsetFetch's answer for one group: per topic, per partition.
pub(crate) type TopicOffsets = Vec<(String, Vec<(i32, PartitionOffset)>)>;

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    pub(crate) state: GroupState,
    pub(crate) protocol_type: String,
    /// The chosen protocol when Stable, else empty.
    pub(crate) protocol_data: String,
    pub(crate) members: Vec<DescribedMember>,
}

#[derive(Debug, Clone)]
pub(crate) struct DescribedMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) metadata: Bytes,
    pub(crate) assignment: Bytes,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) group_id: String,
    pub(crate) protocol_type: String,
    pub(crate) state: GroupState,
    /// `"classic"` or `"consumer"` (ListGroups v5's group type).
    pub(crate) group_type: &'static str,
}

/// Kafka's group types, as ListGroups v5 names them.
pub(crate) const CLASSIC: &str = "classic";
pub(crate) const CONSUMER: &str = "consumer";

/// Every group of the cluster, where each is coordinated, and the answers
/// waiting to go out.
#[derive(Debug)]
pub(crate) struct Coordinator {
    config: GroupConfig,
    /// The cluster's brokers, sorted: the default placement's range.
    nodes: Vec<i32>,
    groups: BTreeMap<String, Group>,
    /// Groups of the consumer protocol (KIP-848); a group id is in one map
    /// or the other, never both.
    consumer_groups: BTreeMap<String, ConsumerGroup>,
    /// Coordinators moved by a test.
    moved: HashMap<String, i32>,
    /// Groups whose coordinator is "loading" them (a test's fault).
    loading: HashSet<String>,
    /// Stopped brokers: the groups they coordinate are unloaded, and their
    /// timers stand still until the broker is back.
    down: BTreeSet<i32>,
    /// TxnOffsetCommit's offsets, waiting for their transactions.
    pending: PendingOffsets,
    next_waiter: Waiter,
    member_seq: u64,
    replies: Vec<(Waiter, Reply)>,
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Coordinator {
    pub(crate) fn new(mut nodes: Vec<i32>, config: GroupConfig) -> Self {
        nodes.sort_unstable();
        nodes.dedup();
        Coordinator {
            config,
            nodes,
            groups: BTreeMap::new(),
            consumer_groups: BTreeMap::new(),
            moved: HashMap::new(),
            loading: HashSet::new(),
            down: BTreeSet::new(),
            pending: PendingOffsets::default(),
            next_waiter: 1,
            member_seq: 0,
            replies: Vec::new(),
        }
    }

    pub(crate) fn config_mut(&mut self) -> &mut GroupConfig {
        &mut self.config
    }

    /// The broker that coordinates `key` (a group id), moved or not.
    pub(crate) fn coordinator_of(&self, key: &str) -> i32 {
        match self.moved.get(key) {
            Some(node) => *node,
            None => self.default_coordinator_of(key),
        }
    }

    /// The default placement (see [`crate::placement`]).
    fn default_coordinator_of(&self, key: &str) -> i32 {
        crate::placement::by_hash(key, &self.nodes, 1)
    }

    /// Whether a request for `group` reaching `node_id` may be served:
    /// NOT_COORDINATOR on the wrong broker, COORDINATOR_LOAD_IN_PROGRESS
    /// while a test says the group is loading.
    pub(crate) fn check(&self, node_id: i32, group: &str) -> Result<(), i16> {
        if self.coordinator_of(group) != node_id {
            return Err(NOT_COORDINATOR);
        }
        if self.loading.contains(group) {
            return Err(COORDINATOR_LOAD_IN_PROGRESS);
        }
        Ok(())
    }

    /// Whether a group's timers run: its coordinator is up and not loading.
    fn is_active(&self, group: &str) -> bool {
        !self.down.contains(&self.coordinator_of(group)) && !self.loading.contains(group)
    }

    fn waiter(&mut self) -> Waiter {
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        waiter
    }

    /// Runs `f` on a group with a context for its effects.
    fn with_group<T>(
        &mut self,
        group: &str,
        now: Instant,
        f: impl FnOnce(&mut Group, &mut Ctx<'_>) -> T,
    ) -> Option<T> {
        let Coordinator {
            groups,
            config,
            replies,
            member_seq,
            ..
        } = self;
        let group = groups.get_mut(group)?;
        let mut ctx = Ctx {
            now,
            config,
            replies,
            member_seq,
        };
        Some(f(group, &mut ctx))
    }

    fn get_or_create(&mut self, group: &str) -> &mut Group {
        let config = &self.config;
        self.groups
            .entry(group.to_owned())
            .or_insert_with(|| Group::new(group.to_owned(), config))
    }

    /// The answers that became ready since the last call, for the driver to
    /// deliver.
    pub(crate) fn take_replies(&mut self) -> Vec<(Waiter, Reply)> {
        std::mem::take(&mut self.replies)
    }

    // ---- the protocol ----

    pub(crate) fn join(
        &mut self,
        node_id: i32,
        now: Instant,
        mut request: JoinRequest,
    ) -> Outcome<JoinResponse> {
        let fail = |error, request: &JoinRequest| {
            Outcome::Done(JoinResponse::error(error, request.member_id.clone()))
        };
        // Kafka's order: the request's own validity, then the coordinator.
        if request.group_id.is_empty() {
            return fail(INVALID_GROUP_ID, &request);
        }
        let session = millis(request.session_timeout_ms);
        if request.session_timeout_ms <= 0
            || session < self.config.min_session_timeout
            || session > self.config.max_session_timeout
        {
            return fail(INVALID_SESSION_TIMEOUT, &request);
        }
        if let Err(error) = self.check(node_id, &request.group_id) {
            // Kafka's answer to a failed coordinator operation carries no
            // member id.
            return Outcome::Done(JoinResponse::error(error, ""));
        }
        if self.config.member_id_required_at_every_version {
            request.requires_known_member_id = true;
        }
        let group_id = request.group_id.clone();
        if let Some(consumer) = self.consumer_groups.get(&group_id) {
            if !consumer.is_empty() {
                // Kafka 4 would take a `consumer`-type member in as a classic
                // member of the consumer group; the mock has no mixed groups.
                return fail(INCONSISTENT_GROUP_PROTOCOL, &request);
            }
            // An empty consumer group becomes a classic one, keeping its
            // offsets, as Kafka converts it.
            self.convert_to_classic(&group_id);
        }
        if request.member_id.is_empty() {
            self.get_or_create(&group_id);
        } else if !self.groups.contains_key(&group_id) {
            // A member of a group that no longer exists starts over.
            return fail(UNKNOWN_MEMBER_ID, &request);
        }
        let waiter = self.waiter();
        self.with_group(&group_id, now, |group, ctx| {
            group.join(ctx, request, waiter)
        })
        .unwrap_or(Outcome::Done(JoinResponse::error(UNKNOWN_MEMBER_ID, "")))
    }

    pub(crate) fn sync(
        &mut self,
        node_id: i32,
        now: Instant,
        request: SyncRequest,
    ) -> Outcome<SyncResponse> {
        if request.group_id.is_empty() {
            return Outcome::Done(SyncResponse::error(INVALID_GROUP_ID));
        }
        if let Err(error) = self.check(node_id, &request.group_id) {
            return Outcome::Done(SyncResponse::error(error));
        }
        let waiter = self.waiter();
        let group_id = request.group_id.clone();
        self.with_group(&group_id, now, |group, ctx| {
            group.sync(ctx, request, waiter)
        })
        .unwrap_or(Outcome::Done(SyncResponse::error(UNKNOWN_MEMBER_ID)))
    }

    pub(crate) fn heartbeat(
        &mut self,
        node_id: i32,
        now: Instant,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if group.is_empty() {
            return INVALID_GROUP_ID;
        }
        if let Err(error) = self.check(node_id, group) {
            return error;
        }
        self.with_group(group, now, |group, ctx| {
            group.heartbeat(ctx, member_id, instance_id, generation)
        })
        .unwrap_or(UNKNOWN_MEMBER_ID)
    }

    /// LeaveGroup: one error code per member, or one for the request.
    pub(crate) fn leave(
        &mut self,
        node_id: i32,
        now: Instant,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        if group.is_empty() {
            return Err(INVALID_GROUP_ID);
        }
        self.check(node_id, group)?;
        self.with_group(group, now, |group, ctx| group.leave(ctx, members))
            .unwrap_or(Err(UNKNOWN_MEMBER_ID))
    }

    /// OffsetCommit: one error code per offset, or one for them all.
    pub(crate) fn commit(
        &mut self,
        node_id: i32,
        now: Instant,
        request: &CommitRequest,
    ) -> Result<Vec<i16>, i16> {
        self.check(node_id, &request.group_id)?;
        let max_metadata = self.config.max_offset_metadata;
        if let Some(group) = self.consumer_groups.get_mut(&request.group_id) {
            group.validate_commit(&request.member_id, request.generation, request.version)?;
            return Ok(store_offsets(
                &mut group.offsets,
                &request.offsets,
                max_metadata,
            ));
        }
        if !self.groups.contains_key(&request.group_id) {
            if request.generation < 0 {
                // A consumer that assigns partitions itself, or an admin:
                // Kafka creates a "simple" group to hold the offsets.
                self.get_or_create(&request.group_id);
            } else if request.version >= 9 {
                return Err(GROUP_ID_NOT_FOUND);
            } else {
                return Err(ILLEGAL_GENERATION);
            }
        }
        self.with_group(&request.group_id, now, |group, ctx| {
            group.validate_commit(
                ctx,
                &request.member_id,
                request.instance_id.as_deref(),
                request.generation,
            )?;
            Ok(store_offsets(
                &mut group.offsets,
                &request.offsets,
                max_metadata,
            ))
        })
        .unwrap_or(Err(COORDINATOR_NOT_AVAILABLE))
    }

    /// TxnOffsetCommit's group side (Kafka's
    /// `OffsetMetadataManager.commitTransactionalOffset`): one error code
    /// per offset, or one for them all. The group must exist, unless the
    /// commit carries no generation (a "simple" group is created, as for
    /// OffsetCommit); otherwise ILLEGAL_GENERATION, at every version. The
    /// member checks are OffsetCommit's without the group-state ones (see
    /// [`Group::validate_txn_commit`] and
    /// [`ConsumerGroup::validate_txn_commit`]). The offsets are held for the
    /// producer's transaction ([`txn_offsets`]).
    pub(crate) fn txn_commit(
        &mut self,
        node_id: i32,
        request: &TxnCommitRequest,
    ) -> Result<Vec<i16>, i16> {
        if request.group_id.is_empty() {
            return Err(INVALID_GROUP_ID);
        }
        self.check(node_id, &request.group_id)?;
        if let Some(group) = self.consumer_groups.get(&request.group_id) {
            group.validate_txn_commit(&request.member_id, request.generation)?;
        } else {
            if !self.groups.contains_key(&request.group_id) {
                if request.generation >= 0 {
                    return Err(ILLEGAL_GENERATION);
                }
                self.get_or_create(&request.group_id);
            }
            if let Some(group) = self.groups.get(&request.group_id) {
                group.validate_txn_commit(
                    &request.member_id,
                    request.instance_id.as_deref(),
                    request.generation,
                )?;
            }
        }
        let max_metadata = self.config.max_offset_metadata;
        Ok(request
            .offsets
            .iter()
            .map(|o| {
                let metadata = o.metadata.clone().unwrap_or_default();
                if metadata.len() > max_metadata {
                    return OFFSET_METADATA_TOO_LARGE;
                }
                let committed = Committed {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata,
                };
                let key = (o.topic.clone(), o.partition);
                self.pending
                    .store(&request.group_id, request.producer_id, key, committed);
                NONE
            })
            .collect())
    }

    /// A transaction of `producer_id` that included `group` ended: its
    /// pending offsets become the group's committed offsets, or go.
    pub(crate) fn complete_transaction(&mut self, group: &str, producer_id: i64, commit: bool) {
        let offsets = self.pending.take(group, producer_id);
        if !commit || offsets.is_empty() {
            return;
        }
        match self.consumer_groups.get_mut(group) {
            Some(consumer) => consumer.offsets.extend(offsets),
            None => self.get_or_create(group).offsets.extend(offsets),
        }
    }

    /// OffsetFetch: the committed offsets of the named partitions (`None`
    /// where there is none), or of every partition with one when `topics`
    /// is `None`. With `require_stable` (v7+, KIP-447), a partition with a
    /// transactional offset pending answers UNSTABLE_OFFSET_COMMIT.
    pub(crate) fn fetch_offsets(
        &self,
        node_id: i32,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
        require_stable: bool,
    ) -> Result<TopicOffsets, i16> {
        self.check(node_id, group)?;
        let offsets = self.offsets_of(group);
        let answer = |topic: &str, partition: i32, committed: Option<&Committed>| {
            if require_stable && self.pending.is_pending(group, topic, partition) {
                Err(UNSTABLE_OFFSET_COMMIT)
            } else {
                Ok(committed.cloned())
            }
        };
        let Some(topics) = topics else {
            let mut all: TopicOffsets = Vec::new();
            for ((topic, partition), committed) in offsets.into_iter().flatten() {
                let entry = (*partition, answer(topic, *partition, Some(committed)));
                match all.last_mut() {
                    Some((last, partitions)) if last == topic => partitions.push(entry),
                    _ => all.push((topic.clone(), vec![entry])),
                }
            }
            return Ok(all);
        };
        Ok(topics
            .iter()
            .map(|(topic, partitions)| {
                let partitions = partitions
                    .iter()
                    .map(|p| {
                        let committed = offsets.and_then(|o| o.get(&(topic.clone(), *p)));
                        (*p, answer(topic, *p, committed))
                    })
                    .collect();
                (topic.clone(), partitions)
            })
            .collect())
    }

    /// DescribeGroups for one group; `Ok(None)` when it does not exist.
    pub(crate) fn describe(&self, node_id: i32, group: &str) -> Result<Option<Described>, i16> {
        self.check(node_id, group)?;
        Ok(self.groups.get(group).map(Group::describe))
    }

    /// ListGroups: the groups this broker coordinates.
    pub(crate) fn list(&self, node_id: i32) -> Result<Vec<Listed>, i16> {
        let classic = self.groups.values().map(|g| Listed {
            group_id: g.id.clone(),
            protocol_type: g.protocol_type().unwrap_or_default().to_owned(),
            state: g.state(),
            group_type: CLASSIC,
        });
        let consumer = self.consumer_groups.values().map(|g| Listed {
            group_id: g.id.clone(),
            protocol_type: CONSUMER.to_owned(),
            state: g.state(),
            group_type: CONSUMER,
        });
        let mut listed: Vec<Listed> = classic
            .chain(consumer)
            .filter(|g| self.coordinator_of(&g.group_id) == node_id)
            .collect();
        if listed.iter().any(|g| self.loading.contains(&g.group_id)) {
            return Err(COORDINATOR_LOAD_IN_PROGRESS);
        }
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(listed)
    }

    /// DeleteGroups for one group: the group and its offsets go, if it has
    /// no members.
    pub(crate) fn delete(&mut self, node_id: i32, group: &str) -> i16 {
        if let Err(error) = self.check(node_id, group) {
            return error;
        }
        if let Some(consumer) = self.consumer_groups.get(group) {
            if !consumer.is_empty() {
                return NON_EMPTY_GROUP;
            }
            self.consumer_groups.remove(group);
            return NONE;
        }
        let Some(existing) = self.groups.get(group) else {
            return GROUP_ID_NOT_FOUND;
        };
        if let Err(error) = existing.deletable() {
            return error;
        }
        // An Empty group has no member, so no request waits on it.
        self.groups.remove(group);
        NONE
    }

    // ---- time ----

    /// The earliest deadline of any group whose timers run.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let classic = self
            .groups
            .values()
            .filter(|g| self.is_active(&g.id))
            .filter_map(Group::next_deadline);
        let consumer = self
            .consumer_groups
            .values()
            .filter(|g| self.is_active(&g.id))
            .filter_map(ConsumerGroup::next_deadline);
        classic.chain(consumer).min()
    }

    /// Fires every deadline that is due.
    pub(crate) fn tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .groups
            .values()
            .filter(|g| self.is_active(&g.id))
            .filter(|g| g.next_deadline().is_some_and(|at| at <= now))
            .map(|g| g.id.clone())
            .collect();
        for id in due {
            self.with_group(&id, now, |group, ctx| group.on_timeout(ctx));
        }
        let due: Vec<String> = self
            .consumer_groups
            .values()
            .filter(|g| self.is_active(&g.id))
            .filter(|g| g.next_deadline().is_some_and(|at| at <= now))
            .map(|g| g.id.clone())
            .collect();
        for id in due {
            if let Some(group) = self.consumer_groups.get_mut(&id) {
                group.on_timeout(now);
            }
        }
    }

    // ---- test-facing ----

    pub(crate) fn members(&self, group: &str) -> Vec<(String, Option<String>)> {
        if let Some(consumer) = self.consumer_groups.get(group) {
            return consumer.member_ids();
        }
        self.groups
            .get(group)
            .map(Group::member_ids)
            .unwrap_or_default()
    }

    pub(crate) fn generation(&self, group: &str) -> Option<i32> {
        self.groups.get(group).map(Group::generation)
    }

    pub(crate) fn state(&self, group: &str) -> GroupState {
        if let Some(consumer) = self.consumer_groups.get(group) {
            return consumer.state();
        }
        self.groups
            .get(group)
            .map_or(GroupState::Dead, Group::state)
    }

    pub(crate) fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.offsets_of(group)?
            .get(&(topic.to_owned(), partition))
            .map(|c| c.offset)
    }

    pub(crate) fn pending_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.pending.pending(group, topic, partition)
    }

    pub(crate) fn set_committed(&mut self, group: &str, topic: &str, partition: i32, offset: i64) {
        let committed = Committed {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let key = (topic.to_owned(), partition);
        match self.consumer_groups.get_mut(group) {
            Some(consumer) => consumer.offsets.insert(key, committed),
            None => self.get_or_create(group).offsets.insert(key, committed),
        };
    }

    /// Starts a rebalance as a membership change would; false when the
    /// group has no members or is already rebalancing.
    pub(crate) fn force_rebalance(&mut self, now: Instant, group: &str) -> bool {
        self.with_group(group, now, |group, ctx| group.force_rebalance(ctx))
            .unwrap_or(false)
    }

    /// Removes a member (or a member id waiting for its second JoinGroup) as
    /// if its session had expired; false when there is no such member.
    pub(crate) fn kick_member(&mut self, now: Instant, group: &str, member_id: &str) -> bool {
        if let Some(consumer) = self.consumer_groups.get_mut(group) {
            return consumer.kick(member_id);
        }
        self.with_group(group, now, |group, ctx| group.kick(ctx, member_id))
            .unwrap_or(false)
    }

    pub(crate) fn move_coordinator(&mut self, now: Instant, group: &str, node_id: i32) {
        let old = self.coordinator_of(group);
        self.moved.insert(group.to_owned(), node_id);
        if old == node_id {
            return;
        }
        self.unload(group, now);
        if self.is_active(group) {
            self.load(group, now);
        }
    }

    pub(crate) fn set_loading(&mut self, now: Instant, group: &str, loading: bool) {
        if loading {
            self.loading.insert(group.to_owned());
        } else if self.loading.remove(group) && self.is_active(group) {
            // Kafka reschedules every member's session when a group
            // finishes loading; the timers stood still meanwhile.
            self.load(group, now);
        }
    }

    /// A broker crashed: the groups it coordinates lose their in-memory
    /// state and wait for it.
    pub(crate) fn broker_stopped(&mut self, now: Instant, node_id: i32) {
        if !self.down.insert(node_id) {
            return;
        }
        let ids: Vec<String> = self
            .group_ids()
            .filter(|id| self.coordinator_of(id) == node_id)
            .cloned()
            .collect();
        for id in ids {
            self.unload(&id, now);
        }
    }

    /// A broker is back: it loads the groups it coordinates.
    pub(crate) fn broker_started(&mut self, now: Instant, node_id: i32) {
        if !self.down.remove(&node_id) {
            return;
        }
        let ids: Vec<String> = self
            .group_ids()
            .filter(|id| self.coordinator_of(id) == node_id && self.is_active(id))
            .cloned()
            .collect();
        for id in ids {
            self.load(&id, now);
        }
    }

    /// Every group's id, of either protocol.
    fn group_ids(&self) -> impl Iterator<Item = &String> {
        self.groups.keys().chain(self.consumer_groups.keys())
    }

    /// The group's coordinator role left: waiting requests get
    /// NOT_COORDINATOR, timers stop, and what Kafka did not persist is gone.
    fn unload(&mut self, group: &str, now: Instant) {
        if let Some(consumer) = self.consumer_groups.get_mut(group) {
            consumer.unload();
        }
        self.with_group(group, now, |group, ctx| group.unload(ctx));
    }

    /// A coordinator took the group on: its timers start afresh.
    fn load(&mut self, group: &str, now: Instant) {
        let session_timeout = self.config.consumer_session_timeout;
        if let Some(consumer) = self.consumer_groups.get_mut(group) {
            consumer.load(now, session_timeout);
        }
        self.with_group(group, now, |group, ctx| group.load(ctx.now));
    }

    /// The committed offsets of a group of either protocol.
    fn offsets_of(&self, group: &str) -> Option<&BTreeMap<(String, i32), Committed>> {
        match self.consumer_groups.get(group) {
            Some(consumer) => Some(&consumer.offsets),
            None => self.groups.get(group).map(|g| &g.offsets),
        }
    }

    /// Replaces an empty consumer group by an empty classic one with its
    /// offsets.
    fn convert_to_classic(&mut self, group: &str) {
        if let Some(consumer) = self.consumer_groups.remove(group) {
            let offsets = consumer.offsets;
            self.get_or_create(group).offsets = offsets;
        }
    }

    // ---- the consumer group protocol (KIP-848) ----

    /// ConsumerGroupHeartbeat: a join, a heartbeat or a leave. `topics` is
    /// the cluster's topics as the request's handler read them.
    pub(crate) fn consumer_heartbeat(
        &mut self,
        node_id: i32,
        now: Instant,
        request: consumer::HeartbeatRequest,
        topics: &consumer::Topics,
    ) -> Result<consumer::HeartbeatResponse, consumer::Failure> {
        // Kafka's order: the request's own validity, then the coordinator.
        consumer::validate(&request)?;
        self.check(node_id, &request.group_id)
            .map_err(|code| consumer::Failure::new(code, ""))?;
        let group_id = request.group_id.clone();
        let joining = request.member_epoch == 0;
        if let Some(classic) = self.groups.get(&group_id) {
            if !joining || classic.state() != GroupState::Empty {
                return Err(consumer::Failure::new(
                    GROUP_ID_NOT_FOUND,
                    format!("Group {group_id} is not a consumer group."),
                ));
            }
            // An empty classic group (offsets only, say) becomes a consumer
            // group, keeping its offsets.
            if let Some(classic) = self.groups.remove(&group_id) {
                let group = ConsumerGroup::new(group_id.clone(), classic.offsets);
                self.consumer_groups.insert(group_id.clone(), group);
            }
        }
        if !self.consumer_groups.contains_key(&group_id) {
            if !joining {
                return Err(consumer::Failure::new(
                    GROUP_ID_NOT_FOUND,
                    format!("Consumer group {group_id} not found."),
                ));
            }
            let group = ConsumerGroup::new(group_id.clone(), BTreeMap::new());
            self.consumer_groups.insert(group_id.clone(), group);
        }
        let Coordinator {
            consumer_groups,
            config,
            replies,
            member_seq,
            ..
        } = self;
        let Some(group) = consumer_groups.get_mut(&group_id) else {
            return Err(consumer::Failure::new(COORDINATOR_NOT_AVAILABLE, ""));
        };
        let mut ctx = Ctx {
            now,
            config,
            replies,
            member_seq,
        };
        group.heartbeat(&mut ctx, request, topics)
    }

    /// ConsumerGroupDescribe for one group; `Ok(None)` when there is no
    /// consumer group by that id.
    pub(crate) fn consumer_describe(
        &self,
        node_id: i32,
        group: &str,
    ) -> Result<Option<consumer::Described>, i16> {
        self.check(node_id, group)?;
        Ok(self.consumer_groups.get(group).map(ConsumerGroup::describe))
    }

    pub(crate) fn consumer_group_epoch(&self, group: &str) -> Option<i32> {
        self.consumer_groups.get(group).map(ConsumerGroup::epoch)
    }

    pub(crate) fn consumer_group_members(&self, group: &str) -> Vec<consumer::ListedMember> {
        self.consumer_groups
            .get(group)
            .map(ConsumerGroup::listed)
            .unwrap_or_default()
    }

    pub(crate) fn consumer_group_overlaps(&self, group: &str) -> Vec<String> {
        self.consumer_groups
            .get(group)
            .map(ConsumerGroup::violations)
            .unwrap_or_default()
    }

    pub(crate) fn fence_consumer_group_member(&mut self, group: &str, member_id: &str) -> bool {
        self.consumer_groups
            .get_mut(group)
            .is_some_and(|g| g.fence(member_id))
    }
}

/// Stores the offsets of a validated commit; one error code per offset.
fn store_offsets(
    offsets: &mut BTreeMap<(String, i32), Committed>,
    commits: &[OffsetToCommit],
    max_metadata: usize,
) -> Vec<i16> {
    commits
        .iter()
        .map(|o| {
            let metadata = o.metadata.clone().unwrap_or_default();
            if metadata.len() > max_metadata {
                return OFFSET_METADATA_TOO_LARGE;
            }
            offsets.insert(
                (o.topic.clone(), o.partition),
                Committed {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata,
                },
            );
            NONE
        })
        .collect()
}

#[cfg(test)]
mod tests;
