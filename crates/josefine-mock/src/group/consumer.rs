//! One consumer group under the consumer group protocol of KIP-848
//! (ConsumerGroupHeartbeat), as Kafka 4's `GroupMetadataManager` drives a
//! `ConsumerGroup` and its `CurrentAssignmentBuilder`.
//!
//! There is no join barrier and no leader: the coordinator assigns. Every
//! member heartbeats with its member epoch; the answer carries the member's
//! epoch and, when it changed, its assignment.
//!
//! * **Epochs.** The *group epoch* goes up whenever the membership or the
//!   subscriptions change: a member joins, leaves or is removed, changes its
//!   subscription, or a subscribed topic gains partitions, appears (for a
//!   regex or a name subscribed before it existed) or disappears. At the next
//!   heartbeat the *target assignment* is computed for that epoch (the
//!   uniform assignor of [`uniform`](super::uniform): balanced and sticky)
//!   and the group is in the `Assigning` state until then. Each member then
//!   moves towards its target at its own pace (`Reconciling`); once all are
//!   at the target epoch with nothing pending the group is `Stable`.
//! * **Reconciliation** (Kafka's `CurrentAssignmentBuilder`), per heartbeat
//!   of the member: partitions it holds that its target lacks are taken out
//!   of its assignment and become *pending revocation*; it stays at its
//!   epoch (`UNREVOKED_PARTITIONS`) until a heartbeat reports owned
//!   partitions (`topic_partitions`) without them. A heartbeat that reports
//!   nothing ("lean") means "owned unchanged", which counts as still holding
//!   them, as in Kafka. Then it moves to the target epoch and gets the target
//!   partitions no other member holds (assigned or pending revocation); the
//!   rest come in later heartbeats, once released (`UNRELEASED_PARTITIONS`).
//!   A member that does not revoke within its rebalance timeout is removed
//!   (fenced). A partition is therefore never assigned to two members, nor
//!   to one while another is still asked to give it up.
//! * **Epoch checks**, for a heartbeat at epoch > 0: an unknown member gets
//!   UNKNOWN_MEMBER_ID; an epoch above the member's, FENCED_MEMBER_EPOCH; an
//!   epoch below it is accepted only if it is the member's previous epoch and
//!   the reported owned partitions are a subset of its assignment (the answer
//!   that moved it on was lost), else FENCED_MEMBER_EPOCH. Epoch 0 joins:
//!   a new member id (from the client; v0 with an empty one gets a
//!   broker-made UUID) is added; an existing member id at epoch 0 that the
//!   epoch check accepts (a lost answer to its join) just continues, any
//!   other is dropped with its assignment and joins afresh. Epoch -1 leaves
//!   (the group epoch goes up); epoch -2 is a static member's temporary
//!   leave: it keeps its assignment, reserved for its instance id until its
//!   session times out, and a new member id joining with that instance id at
//!   epoch 0 takes the assignment over. While the instance id belongs to a
//!   member that did not leave, a join with it gets UNRELEASED_INSTANCE_ID;
//!   a heartbeat of a static member whose instance id now belongs to another
//!   member id gets FENCED_INSTANCE_ID.
//! * **Sessions**: a member whose heartbeats stop for
//!   `group.consumer.session.timeout.ms` is removed. Only accepted
//!   heartbeats renew a session (commits do not, unlike classic groups).
//! * **Offsets**: a commit must carry the member's current epoch
//!   (STALE_MEMBER_EPOCH otherwise; UNKNOWN_MEMBER_ID for an unknown member;
//!   UNSUPPORTED_VERSION below OffsetCommit v9); a "simple" commit (epoch -1)
//!   is accepted only while the group has no members.
//! * **Safety recorder** (the mock's own, for tests): the owned partitions
//!   each member reports are kept, and a violation is recorded when two live
//!   members report the same partition, or when a partition is assigned to a
//!   member while another member's last report still holds it.
//!
//! Everything here is what Kafka persists, so a group survives a
//! coordinator's move or restart as it is; only its timers start afresh
//! when it is loaded again.
//!
//! Where the mock parts from Kafka: a member id rejoining at epoch 0 after
//! being fenced is let in at once as a new member (Kafka's coordinator checks
//! the epoch first and answers FENCED_MEMBER_EPOCH again until the member's
//! session runs out); regular expressions are the `regex` crate's (Kafka
//! uses RE2/J: the same syntax for everything but exotic features), matched
//! against the whole topic name and re-evaluated at every heartbeat; the
//! assignors "uniform" and "range" are both the mock's uniform one; racks
//! and `group.consumer.max.size` are ignored; classic members cannot join a
//! consumer group (no mixed groups, no online upgrade of a classic group
//! that has members).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use regex::Regex;
use uuid::Uuid;

use super::classic::Ctx;
use super::uniform::{self, Partitions, Subscriber};
use super::{
    millis, Committed, GroupState, FENCED_INSTANCE_ID, FENCED_MEMBER_EPOCH, ILLEGAL_GENERATION,
    INVALID_REGULAR_EXPRESSION, INVALID_REQUEST, STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID,
    UNRELEASED_INSTANCE_ID, UNSUPPORTED_ASSIGNOR, UNSUPPORTED_VERSION,
};

/// The epoch a member leaves with.
pub(crate) const LEAVE_EPOCH: i32 = -1;
/// The epoch a static member leaves with, to come back as the same instance.
pub(crate) const STATIC_LEAVE_EPOCH: i32 = -2;

/// The server assignors a heartbeat may name (Kafka's defaults); both are
/// the mock's uniform assignor.
pub(crate) const ASSIGNORS: [&str; 2] = ["uniform", "range"];
/// The assignor a group uses when no member names one.
pub(crate) const DEFAULT_ASSIGNOR: &str = "uniform";

/// The first OffsetCommit version a consumer-protocol member may use.
const MIN_COMMIT_VERSION: i16 = 9;

/// One topic as the cluster knows it when a request comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    pub(crate) id: Uuid,
    pub(crate) partitions: i32,
}

/// The cluster's topics by name: what the handler read from the cluster
/// state before asking the coordinator (the two locks are never held
/// together).
pub(crate) type Topics = BTreeMap<String, TopicMeta>;

/// A ConsumerGroupHeartbeat request, whatever its version.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeartbeatRequest {
    pub(crate) group_id: String,
    /// Empty only for a v0 member joining without one.
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    /// -1: unchanged.
    pub(crate) rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub(crate) subscribed_topic_names: Option<Vec<String>>,
    /// `None`: unchanged (v0 has no such field).
    pub(crate) subscribed_topic_regex: Option<String>,
    pub(crate) server_assignor: Option<String>,
    /// The partitions the member owns, by topic id; `None`: unchanged since
    /// it last said.
    pub(crate) owned: Option<Vec<(Uuid, Vec<i32>)>>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) version: i16,
}

/// A successful heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatResponse {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed or the request was full.
    pub(crate) assignment: Option<Partitions>,
}

/// A refused request: the error code and Kafka's message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: i16,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: i16, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    pub(crate) state: GroupState,
    pub(crate) epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) assignor: String,
    pub(crate) members: Vec<DescribedMember>,
}

#[derive(Debug, Clone)]
pub(crate) struct DescribedMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) epoch: i32,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) subscribed_topic_names: Vec<String>,
    pub(crate) subscribed_topic_regex: Option<String>,
    pub(crate) assignment: Partitions,
    pub(crate) target: Partitions,
}

/// One member as the test-facing API lists it: member id, epoch, assigned
/// partitions.
pub(crate) type ListedMember = (String, i32, Vec<(String, i32)>);

/// The request-level checks Kafka makes before the coordinator sees the
/// request (`throwIfConsumerGroupHeartbeatRequestIsInvalid`).
pub(crate) fn validate(r: &HeartbeatRequest) -> Result<(), Failure> {
    let invalid = |message: &str| Err(Failure::new(INVALID_REQUEST, message));
    let needs_member_id = r.version >= 1 || r.member_epoch > 0 || r.member_epoch == LEAVE_EPOCH;
    if needs_member_id && r.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    if r.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if r.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if r.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if r.member_epoch == 0 {
        if r.rebalance_timeout_ms == -1 {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if r.owned.as_ref().is_none_or(|owned| !owned.is_empty()) {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
        if r.subscribed_topic_names.is_none() && r.subscribed_topic_regex.is_none() {
            return invalid(
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
            );
        }
    } else if r.member_epoch == STATIC_LEAVE_EPOCH && r.instance_id.is_none() {
        return invalid("InstanceId can't be null.");
    } else if r.member_epoch < STATIC_LEAVE_EPOCH {
        return invalid("MemberEpoch is invalid.");
    }
    match r.server_assignor.as_deref() {
        Some(name) if !ASSIGNORS.contains(&name) => Err(Failure::new(
            UNSUPPORTED_ASSIGNOR,
            format!(
                "ServerAssignor {name} is not supported. Supported assignors: {}.",
                ASSIGNORS.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    /// At the target epoch with its target, or nothing to move yet.
    Stable,
    /// Asked to give partitions up; stays at its epoch until it reports
    /// them gone.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

/// A subscription regex; `compiled` is `None` for the empty regex, which
/// matches nothing.
#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    compiled: Option<Regex>,
}

impl Pattern {
    /// Kafka matches the whole topic name (RE2/J's `matches`).
    fn compile(source: &str) -> Result<Pattern, Failure> {
        if source.is_empty() {
            return Ok(Pattern {
                source: String::new(),
                compiled: None,
            });
        }
        match Regex::new(&format!("^(?:{source})$")) {
            Ok(compiled) => Ok(Pattern {
                source: source.to_owned(),
                compiled: Some(compiled),
            }),
            Err(e) => Err(Failure::new(
                INVALID_REGULAR_EXPRESSION,
                format!("SubscribedTopicRegex `{source}` is not a valid regular expression: {e}."),
            )),
        }
    }

    fn matches(&self, topic: &str) -> bool {
        self.compiled.as_ref().is_some_and(|r| r.is_match(topic))
    }
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    /// Join order, for the test-facing listing.
    joined: u64,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    epoch: i32,
    previous_epoch: i32,
    state: MemberState,
    rebalance_timeout: Duration,
    server_assignor: Option<String>,
    names: Vec<String>,
    regex: Option<Pattern>,
    /// The existing topics its subscription named at the group's last
    /// heartbeat.
    resolved: BTreeSet<String>,
    assigned: Partitions,
    pending_revocation: Partitions,
    target: Partitions,
    /// The owned partitions it last reported (the safety recorder's).
    reported: Option<Partitions>,
    /// A test fenced it: every heartbeat above epoch 0 is refused.
    fenced: bool,
    /// `None` while the group is unloaded.
    session_expires: Option<Instant>,
    /// The rebalance timeout of a revocation, and the epoch it was asked at.
    revocation_expires: Option<(Instant, i32)>,
}

impl Member {
    fn new(id: String, joined: u64) -> Member {
        Member {
            id,
            joined,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            rebalance_timeout: Duration::ZERO,
            server_assignor: None,
            names: Vec::new(),
            regex: None,
            resolved: BTreeSet::new(),
            assigned: Partitions::new(),
            pending_revocation: Partitions::new(),
            target: Partitions::new(),
            reported: None,
            fenced: false,
            session_expires: None,
            revocation_expires: None,
        }
    }

    /// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`.
    fn check_epoch(&self, received: i32, owned: Option<&Partitions>) -> Result<(), Failure> {
        let fenced = |message: String| Err(Failure::new(FENCED_MEMBER_EPOCH, message));
        if self.fenced {
            return fenced(format!(
                "The consumer group member {} was fenced. The member must abandon all its partitions and rejoin.",
                self.id
            ));
        }
        if received > self.epoch {
            return fenced(format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the \
                 group coordinator ({}). The member must abandon all its partitions and rejoin.",
                self.epoch
            ));
        }
        let replay = received == self.previous_epoch
            && owned.is_some_and(|owned| owned.is_subset(&self.assigned));
        if received < self.epoch && !replay {
            return fenced(format!(
                "The consumer group member has a smaller member epoch ({received}) than the one known by the \
                 group coordinator ({}). The member must abandon all its partitions and rejoin.",
                self.epoch
            ));
        }
        Ok(())
    }

    fn move_to_epoch(&mut self, epoch: i32) {
        self.previous_epoch = self.epoch;
        self.epoch = epoch;
    }

    /// What the reconciliation looks at, to tell whether it changed anything.
    fn snapshot(&self) -> (MemberState, i32, i32, Partitions, Partitions) {
        (
            self.state,
            self.epoch,
            self.previous_epoch,
            self.assigned.clone(),
            self.pending_revocation.clone(),
        )
    }
}

/// Whether the reported owned partitions still hold any of `partitions`; a
/// lean heartbeat (nothing reported) counts as holding them.
fn owns_any(owned: Option<&Partitions>, partitions: &Partitions) -> bool {
    owned.is_none_or(|owned| !owned.is_disjoint(partitions))
}

/// How a heartbeat at epoch 0 or above finds its member.
#[derive(Debug)]
enum Slot {
    Existing,
    New,
    /// The member id is known but its epoch is not accepted: drop it, then
    /// join as new.
    Rejoin,
    /// A static member coming back under a new member id after leaving with
    /// epoch -2: it takes over this member id's assignment.
    Replace(String),
}

/// A deadline that came due.
#[derive(Debug)]
enum Due {
    Session(String),
    Revocation(String, i32),
}

#[derive(Debug)]
pub(crate) struct ConsumerGroup {
    pub(crate) id: String,
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    /// The subscribed topics as the target assignment last saw them.
    subscribed: Topics,
    pub(crate) offsets: BTreeMap<(String, i32), Committed>,
    joined: u64,
    violations: Vec<String>,
}

impl ConsumerGroup {
    /// A new, empty group, holding `offsets` (those of the empty classic
    /// group it replaces, if any).
    pub(crate) fn new(id: String, offsets: BTreeMap<(String, i32), Committed>) -> ConsumerGroup {
        ConsumerGroup {
            id,
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            subscribed: Topics::new(),
            offsets,
            joined: 0,
            violations: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn epoch(&self) -> i32 {
        self.epoch
    }

    /// Kafka's `ConsumerGroupState`.
    pub(crate) fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    fn static_member(&self, instance_id: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.id.as_str())
    }

    // ---- ConsumerGroupHeartbeat ----

    /// A heartbeat that passed [`validate`]; the coordinator found (or
    /// made) the group.
    pub(crate) fn heartbeat(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: HeartbeatRequest,
        topics: &Topics,
    ) -> Result<HeartbeatResponse, Failure> {
        if request.member_epoch < 0 {
            return self.leave(&request);
        }
        let member_id = if request.member_id.is_empty() {
            ctx.next_member_uuid().to_string()
        } else {
            request.member_id.clone()
        };
        let owned = request.owned.as_ref().map(|owned| by_name(owned, topics));
        // Everything that can refuse the request comes before any change.
        let slot = self.slot(&member_id, &request, owned.as_ref())?;
        let regex = request
            .subscribed_topic_regex
            .as_deref()
            .map(Pattern::compile)
            .transpose()?;

        let mut bump = false;
        match slot {
            Slot::Existing => {}
            Slot::New | Slot::Rejoin => {
                self.remove(&member_id);
                self.joined += 1;
                let member = Member::new(member_id.clone(), self.joined);
                self.members.insert(member_id.clone(), member);
                bump = true;
            }
            Slot::Replace(old) => {
                if let Some(mut member) = self.members.remove(&old) {
                    member.id = member_id.clone();
                    member.epoch = 0;
                    member.previous_epoch = 0;
                    member.reported = None;
                    member.fenced = false;
                    self.members.insert(member_id.clone(), member);
                }
            }
        }
        let Some(member) = self.members.get_mut(&member_id) else {
            return Err(Failure::new(UNKNOWN_MEMBER_ID, "the member vanished"));
        };
        if request.instance_id.is_some() {
            member.instance_id = request.instance_id.clone();
        }
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        if request.rebalance_timeout_ms != -1 {
            member.rebalance_timeout = millis(request.rebalance_timeout_ms);
        }
        if request.server_assignor.is_some() {
            member.server_assignor = request.server_assignor.clone();
        }
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        if let Some(names) = &request.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != member.names {
                member.names = names;
                bump = true;
            }
        }
        if let Some(regex) = regex {
            if member.regex.as_ref().map(|r| r.source.as_str()) != Some(regex.source.as_str()) {
                member.regex = Some(regex);
                bump = true;
            }
        }
        if self.resolve(topics) {
            bump = true;
        }
        if bump {
            self.epoch += 1;
        }
        if self.epoch > self.assignment_epoch {
            self.compute_target();
        }

        if let Some(owned) = &owned {
            self.record_reported(&member_id, owned);
        }
        let before = self.members.get(&member_id).map(|m| m.assigned.clone());
        self.reconcile(ctx.now, &member_id, owned.as_ref());
        let session = ctx.config.consumer_session_timeout;
        let Some(member) = self.members.get_mut(&member_id) else {
            return Err(Failure::new(UNKNOWN_MEMBER_ID, "the member vanished"));
        };
        member.session_expires = Some(ctx.now + session);
        // Kafka's "full" request: what a member sends after joining or an
        // error; it gets the assignment whether it changed or not.
        let full = request.rebalance_timeout_ms != -1
            && (request.subscribed_topic_names.is_some()
                || request.subscribed_topic_regex.is_some())
            && request.owned.is_some();
        let changed = before.as_ref() != Some(&member.assigned);
        let response = HeartbeatResponse {
            member_id: member_id.clone(),
            member_epoch: member.epoch,
            heartbeat_interval_ms: i32::try_from(
                ctx.config.consumer_heartbeat_interval.as_millis(),
            )
            .unwrap_or(i32::MAX),
            assignment: (request.member_epoch == 0 || full || changed)
                .then(|| member.assigned.clone()),
        };
        let added: Partitions = match &before {
            Some(before) => member.assigned.difference(before).cloned().collect(),
            None => member.assigned.clone(),
        };
        self.check_assigned(&member_id, &added);
        Ok(response)
    }

    /// Finds the member a heartbeat at epoch 0 or above speaks for, or why
    /// it is refused.
    fn slot(
        &self,
        member_id: &str,
        request: &HeartbeatRequest,
        owned: Option<&Partitions>,
    ) -> Result<Slot, Failure> {
        let joining = request.member_epoch == 0;
        let existing = self.members.get(member_id);
        // An existing member id at epoch 0: a lost answer to its join if the
        // epoch check accepts it, else a member starting over.
        let rejoin = |m: &Member| match m.check_epoch(0, owned) {
            Ok(()) => Slot::Existing,
            Err(_) => Slot::Rejoin,
        };
        let Some(instance_id) = request.instance_id.as_deref() else {
            return match existing {
                Some(m) if joining => Ok(rejoin(m)),
                Some(m) => m
                    .check_epoch(request.member_epoch, owned)
                    .map(|()| Slot::Existing),
                None if joining => Ok(Slot::New),
                None => Err(Failure::new(
                    UNKNOWN_MEMBER_ID,
                    format!("Member {member_id} is not a member of group {}.", self.id),
                )),
            };
        };
        let holder = self.static_member(instance_id).map(str::to_owned);
        let holder_member = holder.as_deref().and_then(|h| self.members.get(h));
        if joining {
            return match (holder, holder_member) {
                (Some(h), Some(m)) if h == member_id => Ok(rejoin(m)),
                (Some(h), Some(m)) if m.epoch != STATIC_LEAVE_EPOCH => Err(Failure::new(
                    UNRELEASED_INSTANCE_ID,
                    format!(
                        "Static member {member_id} with instance id {instance_id} cannot join the group \
                         because the instance id is owned by {h} member."
                    ),
                )),
                (Some(h), Some(_)) => Ok(Slot::Replace(h)),
                _ => Ok(existing.map_or(Slot::New, rejoin)),
            };
        }
        match (holder, holder_member) {
            (Some(h), Some(m)) if h == member_id => {
                m.check_epoch(request.member_epoch, owned).map(|()| Slot::Existing)
            }
            (Some(h), Some(_)) => Err(Failure::new(
                FENCED_INSTANCE_ID,
                format!(
                    "Static member {member_id} with instance id {instance_id} was fenced by member {h}."
                ),
            )),
            _ => Err(Failure::new(
                UNKNOWN_MEMBER_ID,
                format!("Instance id {instance_id} is unknown."),
            )),
        }
    }

    /// Epoch -1 (leave) or -2 (a static member's temporary leave).
    fn leave(&mut self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, Failure> {
        let member_id = request.member_id.clone();
        let answer = |epoch| HeartbeatResponse {
            member_id: member_id.clone(),
            member_epoch: epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        let Some(instance_id) = request.instance_id.as_deref() else {
            if !self.members.contains_key(&member_id) {
                return Err(Failure::new(
                    UNKNOWN_MEMBER_ID,
                    format!("Member {member_id} is not a member of group {}.", self.id),
                ));
            }
            self.remove_and_bump(&member_id);
            return Ok(answer(LEAVE_EPOCH));
        };
        let Some(holder) = self.static_member(instance_id).map(str::to_owned) else {
            return Err(Failure::new(
                UNKNOWN_MEMBER_ID,
                format!("Instance id {instance_id} is unknown."),
            ));
        };
        if holder != member_id {
            return Err(Failure::new(
                FENCED_INSTANCE_ID,
                format!(
                    "Static member {member_id} with instance id {instance_id} was fenced by member {holder}."
                ),
            ));
        }
        if request.member_epoch != STATIC_LEAVE_EPOCH {
            self.remove_and_bump(&member_id);
            return Ok(answer(LEAVE_EPOCH));
        }
        if let Some(member) = self.members.get_mut(&member_id) {
            // Its assignment stays reserved for the instance; its session
            // keeps running.
            member.epoch = STATIC_LEAVE_EPOCH;
            member.pending_revocation.clear();
            member.revocation_expires = None;
        }
        Ok(answer(STATIC_LEAVE_EPOCH))
    }

    /// Takes a member out; the caller bumps the group epoch. Its partitions
    /// are free at once, and its reports no longer count.
    fn remove(&mut self, member_id: &str) -> bool {
        if self.members.remove(member_id).is_none() {
            return false;
        }
        // What only the removed member subscribed to is no longer the
        // group's, so the next heartbeat does not bump the epoch again.
        let still: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.resolved.iter())
            .collect();
        self.subscribed.retain(|name, _| still.contains(name));
        true
    }

    fn remove_and_bump(&mut self, member_id: &str) -> bool {
        let removed = self.remove(member_id);
        if removed {
            self.epoch += 1;
        }
        removed
    }

    /// Resolves every member's subscription against the cluster's topics;
    /// true when the subscribed topics (names, ids or partition counts)
    /// changed, which bumps the group epoch.
    fn resolve(&mut self, topics: &Topics) -> bool {
        let mut union = Topics::new();
        for member in self.members.values_mut() {
            member.resolved = topics
                .keys()
                .filter(|name| {
                    member.names.binary_search(name).is_ok()
                        || member.regex.as_ref().is_some_and(|r| r.matches(name))
                })
                .cloned()
                .collect();
            for name in &member.resolved {
                if let Some(meta) = topics.get(name) {
                    union.insert(name.clone(), *meta);
                }
            }
        }
        if union == self.subscribed {
            return false;
        }
        self.subscribed = union;
        true
    }

    /// The target assignment for the current group epoch.
    fn compute_target(&mut self) {
        let sizes: BTreeMap<String, i32> = self
            .subscribed
            .iter()
            .map(|(name, meta)| (name.clone(), meta.partitions))
            .collect();
        let subscribers: Vec<Subscriber<'_>> = self
            .members
            .values()
            .map(|m| Subscriber {
                member_id: &m.id,
                topics: &m.resolved,
                current: &m.target,
            })
            .collect();
        let mut targets = uniform::assign(&subscribers, &sizes);
        for member in self.members.values_mut() {
            member.target = targets.remove(&member.id).unwrap_or_default();
        }
        self.assignment_epoch = self.epoch;
    }

    /// Kafka's `CurrentAssignmentBuilder`: moves the member towards its
    /// target as far as its reported partitions allow.
    fn reconcile(&mut self, now: Instant, member_id: &str, owned: Option<&Partitions>) {
        let target_epoch = self.assignment_epoch;
        // Partitions other members hold: assigned, or still to give up.
        let held: Partitions = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .flat_map(|m| m.assigned.iter().chain(&m.pending_revocation))
            .cloned()
            .collect();
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        let before = member.snapshot();
        match member.state {
            MemberState::Stable if member.epoch == target_epoch => return,
            MemberState::Stable => {
                next_assignment(member, member.epoch, target_epoch, &held, owned)
            }
            MemberState::UnrevokedPartitions => {
                if owns_any(owned, &member.pending_revocation) {
                    return;
                }
                let epoch = (member.epoch + 1).min(target_epoch);
                next_assignment(member, epoch, target_epoch, &held, owned);
            }
            MemberState::UnreleasedPartitions => {
                next_assignment(member, member.epoch, target_epoch, &held, owned);
            }
        }
        if member.snapshot() != before {
            member.revocation_expires = (member.state == MemberState::UnrevokedPartitions)
                .then(|| (now + member.rebalance_timeout, member.epoch));
        }
    }

    /// The safety recorder: `member_id` reports owning `owned`.
    fn record_reported(&mut self, member_id: &str, owned: &Partitions) {
        for other in self.members.values().filter(|m| m.id != member_id) {
            let Some(theirs) = &other.reported else {
                continue;
            };
            for (topic, partition) in owned.intersection(theirs) {
                self.violations.push(format!(
                    "{topic}-{partition} reported owned by {member_id} while {} (epoch {}) reports it too",
                    other.id, other.epoch
                ));
            }
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.reported = Some(owned.clone());
        }
    }

    /// The safety recorder: `added` was just assigned to `member_id`.
    fn check_assigned(&mut self, member_id: &str, added: &Partitions) {
        for other in self.members.values().filter(|m| m.id != member_id) {
            let Some(theirs) = &other.reported else {
                continue;
            };
            for (topic, partition) in added.intersection(theirs) {
                self.violations.push(format!(
                    "{topic}-{partition} assigned to {member_id} while {} (epoch {}) still reports it owned",
                    other.id, other.epoch
                ));
            }
        }
    }

    // ---- OffsetCommit ----

    /// Kafka's `ConsumerGroup.validateOffsetCommit`.
    pub(crate) fn validate_commit(
        &self,
        member_id: &str,
        epoch: i32,
        version: i16,
    ) -> Result<(), i16> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(UNKNOWN_MEMBER_ID)?;
        if version < MIN_COMMIT_VERSION {
            return Err(UNSUPPORTED_VERSION);
        }
        if member.fenced || epoch != member.epoch {
            return Err(STALE_MEMBER_EPOCH);
        }
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit` for a TxnOffsetCommit,
    /// whose generation is the member epoch: no version floor, and a stale
    /// epoch is ILLEGAL_GENERATION (Kafka's `OffsetMetadataManager` turns
    /// STALE_MEMBER_EPOCH into it for transactional commits). Without a
    /// member (TxnOffsetCommit v0-v2) only a group without members accepts.
    pub(crate) fn validate_txn_commit(&self, member_id: &str, epoch: i32) -> Result<(), i16> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(UNKNOWN_MEMBER_ID)?;
        if member.fenced || epoch != member.epoch {
            return Err(ILLEGAL_GENERATION);
        }
        Ok(())
    }

    // ---- ConsumerGroupDescribe ----

    pub(crate) fn describe(&self) -> Described {
        let assignor = self
            .members
            .values()
            .find_map(|m| m.server_assignor.clone())
            .unwrap_or_else(|| DEFAULT_ASSIGNOR.to_owned());
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined);
        Described {
            state: self.state(),
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor,
            members: members
                .into_iter()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.names.clone(),
                    subscribed_topic_regex: m.regex.as_ref().map(|r| r.source.clone()),
                    assignment: m.assigned.clone(),
                    target: m.target.clone(),
                })
                .collect(),
        }
    }

    // ---- timers ----

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .flat_map(|m| [m.session_expires, m.revocation_expires.map(|(at, _)| at)])
            .flatten()
            .min()
    }

    fn earliest_due(&self, now: Instant) -> Option<Due> {
        let mut due: Option<(Instant, Due)> = None;
        let mut consider = |at: Instant, what: Due| {
            if at <= now && due.as_ref().is_none_or(|(best, _)| at < *best) {
                due = Some((at, what));
            }
        };
        for m in self.members.values() {
            if let Some(at) = m.session_expires {
                consider(at, Due::Session(m.id.clone()));
            }
            if let Some((at, epoch)) = m.revocation_expires {
                consider(at, Due::Revocation(m.id.clone(), epoch));
            }
        }
        due.map(|(_, what)| what)
    }

    /// Fires what is due by `now`, earliest first: expired sessions and
    /// revocations not done within the rebalance timeout remove their
    /// member.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        while let Some(due) = self.earliest_due(now) {
            match due {
                Due::Session(id) => {
                    tracing::debug!(group = %self.id, member = %id, "consumer group session expired");
                    self.remove_and_bump(&id);
                }
                Due::Revocation(id, epoch) => {
                    let stuck = self.members.get(&id).is_some_and(|m| m.epoch == epoch);
                    if stuck {
                        tracing::debug!(group = %self.id, member = %id, epoch, "member fenced: it did not revoke within its rebalance timeout");
                        self.remove_and_bump(&id);
                    } else if let Some(m) = self.members.get_mut(&id) {
                        m.revocation_expires = None;
                    }
                }
            }
        }
    }

    /// The coordinator role left: timers stop (the state is all persisted).
    pub(crate) fn unload(&mut self) {
        for member in self.members.values_mut() {
            member.session_expires = None;
            member.revocation_expires = None;
        }
    }

    /// A coordinator took the group on: every session starts afresh, and so
    /// does the rebalance timeout of every member asked to revoke.
    pub(crate) fn load(&mut self, now: Instant, session_timeout: Duration) {
        for member in self.members.values_mut() {
            member.session_expires = Some(now + session_timeout);
            member.revocation_expires = (member.state == MemberState::UnrevokedPartitions)
                .then(|| (now + member.rebalance_timeout, member.epoch));
        }
    }

    // ---- test-facing ----

    /// Members in join order: member id, epoch, assigned partitions.
    pub(crate) fn listed(&self) -> Vec<ListedMember> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined);
        members
            .into_iter()
            .map(|m| (m.id.clone(), m.epoch, m.assigned.iter().cloned().collect()))
            .collect()
    }

    pub(crate) fn member_ids(&self) -> Vec<(String, Option<String>)> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined);
        members
            .into_iter()
            .map(|m| (m.id.clone(), m.instance_id.clone()))
            .collect()
    }

    pub(crate) fn violations(&self) -> Vec<String> {
        self.violations.clone()
    }

    /// Removes a member as an expired session would.
    pub(crate) fn kick(&mut self, member_id: &str) -> bool {
        self.remove_and_bump(member_id)
    }

    /// Stops accepting the member's epoch: its heartbeats above epoch 0 get
    /// FENCED_MEMBER_EPOCH and its commits STALE_MEMBER_EPOCH until it
    /// rejoins at epoch 0. Its partitions stay reserved for it meanwhile.
    pub(crate) fn fence(&mut self, member_id: &str) -> bool {
        match self.members.get_mut(member_id) {
            Some(member) => {
                member.fenced = true;
                true
            }
            None => false,
        }
    }
}

/// Kafka's `computeNextAssignment`: keep what the target keeps, ask for the
/// rest back (staying at `epoch`) while the member still reports it, else
/// move to the target epoch with what is free of the target.
fn next_assignment(
    member: &mut Member,
    epoch: i32,
    target_epoch: i32,
    held: &Partitions,
    owned: Option<&Partitions>,
) {
    let keep: Partitions = member
        .assigned
        .intersection(&member.target)
        .cloned()
        .collect();
    let revoke: Partitions = member.assigned.difference(&keep).cloned().collect();
    let wanted: Vec<_> = member.target.difference(&keep).cloned().collect();
    let wanted_count = wanted.len();
    let add: Partitions = wanted
        .into_iter()
        .filter(|tp| !held.contains(tp) || member.pending_revocation.contains(tp))
        .collect();
    let unreleased = add.len() < wanted_count;
    if !revoke.is_empty() && owns_any(owned, &revoke) {
        member.state = MemberState::UnrevokedPartitions;
        member.move_to_epoch(epoch);
        member.assigned = keep;
        member.pending_revocation = revoke;
        return;
    }
    member.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    member.move_to_epoch(target_epoch);
    member.assigned = keep.union(&add).cloned().collect();
    member.pending_revocation.clear();
}

/// The partitions of a request, by topic name; ids the cluster does not
/// know are left out.
fn by_name(owned: &[(Uuid, Vec<i32>)], topics: &Topics) -> Partitions {
    let names: BTreeMap<Uuid, &String> = topics.iter().map(|(name, t)| (t.id, name)).collect();
    owned
        .iter()
        .filter_map(|(id, partitions)| names.get(id).map(|name| (*name, partitions)))
        .flat_map(|(name, partitions)| partitions.iter().map(move |p| (name.clone(), *p)))
        .collect()
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
