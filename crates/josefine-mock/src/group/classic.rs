//! One classic consumer group: membership, generations, the leader's
//! assignment and the group's timers, as Kafka's `GroupMetadataManager`
//! drives a `ClassicGroup`.
//!
//! A rebalance, from the members' side:
//!
//! 1. Something changes the membership (a member joins, leaves, changes its
//!    protocols, or its session expires; or the leader rejoins): the group
//!    goes to PreparingRebalance and Heartbeat answers REBALANCE_IN_PROGRESS,
//!    which is how the others learn to send JoinGroup again.
//! 2. JoinGroup waits until every known member has rejoined, or the
//!    rebalance timeout (the largest of the members') expires; dynamic
//!    members that did not rejoin are then dropped. The first rebalance of an
//!    empty group waits `group.initial.rebalance.delay.ms` instead, extended
//!    while new members keep arriving (KIP-134).
//! 3. The generation goes up, a protocol is chosen (each member votes for
//!    its most preferred protocol among those every member supports), and
//!    every waiting JoinGroup is answered; only the leader's carries the
//!    members' metadata. The group is now CompletingRebalance.
//! 4. The leader's SyncGroup brings the assignment: every waiting SyncGroup
//!    gets its member's share and the group is Stable. A member that sends
//!    no SyncGroup within the rebalance timeout is removed, which starts a
//!    new rebalance (so followers waiting for a leader that never syncs get
//!    REBALANCE_IN_PROGRESS).
//!
//! (`GroupState::Assigning` and `Reconciling` belong to consumer groups; a
//! classic group never takes them, and its matches treat them as `Dead`.)
//!
//! Sessions: every member must show life (Heartbeat, OffsetCommit in Stable
//! or PreparingRebalance, a completed JoinGroup or SyncGroup) within its
//! session timeout or be removed. A member whose JoinGroup or SyncGroup is
//! waiting counts as alive, except a new member, which Kafka gives five
//! minutes to complete its first join.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    millis, Committed, Described, DescribedMember, GroupConfig, GroupState, JoinRequest,
    JoinResponse, JoinedMember, Outcome, Protocol, Reply, SyncRequest, SyncResponse, Waiter,
    COORDINATOR_NOT_AVAILABLE, FENCED_INSTANCE_ID, GROUP_ID_NOT_FOUND, ILLEGAL_GENERATION,
    INCONSISTENT_GROUP_PROTOCOL, MEMBER_ID_REQUIRED, NONE, NON_EMPTY_GROUP, NOT_COORDINATOR,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};

/// "josefine" in ASCII: the high half of every generated member id's UUID,
/// as for topic ids, so they are easy to spot.
const MEMBER_ID_TAG: u64 = 0x6a6f_7365_6669_6e65;

/// A timer can re-arm itself at once (a rebalance timeout of 0 while no
/// member rejoined); one tick fires at most this many deadlines so such a
/// group cannot spin the driver.
const MAX_STEPS_PER_TICK: usize = 1000;

/// What a group operation needs besides the group: the time, the settings,
/// where answers to waiting requests go, and the member id counter.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) config: &'a GroupConfig,
    pub(crate) replies: &'a mut Vec<(Waiter, Reply)>,
    pub(crate) member_seq: &'a mut u64,
}

impl Ctx<'_> {
    fn reply(&mut self, waiter: Waiter, reply: Reply) {
        self.replies.push((waiter, reply));
    }

    /// Kafka's member ids: the client id (or, for a static member, the
    /// instance id), a dash and a UUID; the mock's UUIDs count up.
    fn new_member_id(&mut self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_member_uuid().hyphenated())
    }

    /// The next of the mock's counting member UUIDs (consumer groups use
    /// them bare, as Kafka's ConsumerGroupHeartbeat v0 hands out a UUID).
    pub(crate) fn next_member_uuid(&mut self) -> uuid::Uuid {
        *self.member_seq += 1;
        uuid::Uuid::from_u64_pair(MEMBER_ID_TAG, *self.member_seq)
    }
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<Protocol>,
    assignment: Bytes,
    awaiting_join: Option<Waiter>,
    awaiting_sync: Option<Waiter>,
    /// Joined but never got a JoinGroup answer: the session timeout does not
    /// apply yet, the new-member join timeout does.
    is_new: bool,
    /// When the session ends unless renewed; `None` while a waiting request
    /// keeps the member alive.
    expires: Option<Instant>,
}

impl Member {
    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|p| Some(p.name.as_str()) == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    fn renew(&mut self, now: Instant) {
        self.expires = Some(now + self.session_timeout);
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED, not yet used to join.
#[derive(Debug, Clone)]
struct Pending {
    id: String,
    session_timeout: Duration,
    expires: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    at: Instant,
    length: Duration,
}

impl Timer {
    fn start(now: Instant, length: Duration) -> Timer {
        Timer {
            at: now + length,
            length,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum JoinPhase {
    /// The first rebalance of an empty group (KIP-134).
    Initial {
        delay: Duration,
        remaining: Duration,
    },
    /// Waiting for the members to rejoin, up to the rebalance timeout.
    Rebalance,
}

/// A deadline that came due.
#[derive(Debug)]
enum Due {
    Join(JoinPhase),
    /// The pending-sync deadline of this generation.
    Sync(i32),
    /// A member id handed out with MEMBER_ID_REQUIRED was never used.
    Pending(String),
    Session(String),
}

/// What Kafka would have written to `__consumer_offsets` last: the state a
/// coordinator loads after a failover or a restart.
#[derive(Debug, Clone)]
struct Snapshot {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: Vec<Member>,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    state: GroupState,
    previous_state: GroupState,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation: i32,
    leader: Option<String>,
    /// In join order; when the leader goes, the first one left leads.
    members: Vec<Member>,
    pending: Vec<Pending>,
    /// Members that got their JoinGroup answer but sent no SyncGroup yet.
    pending_sync: BTreeSet<String>,
    /// A member joined during the initial delay, which extends it.
    new_member_added: bool,
    join_timer: Option<(Timer, JoinPhase)>,
    /// The pending-sync deadline and the generation it was set for.
    sync_timer: Option<(Timer, i32)>,
    pub(crate) offsets: BTreeMap<(String, i32), Committed>,
    persisted: Snapshot,
}

impl Group {
    /// A new, empty group, as Kafka creates (and persists) it on the first
    /// JoinGroup or simple offset commit.
    pub(crate) fn new(id: String, config: &GroupConfig) -> Group {
        let generation = config.first_generation.wrapping_sub(1);
        Group {
            id,
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation,
            leader: None,
            members: Vec::new(),
            pending: Vec::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            offsets: BTreeMap::new(),
            persisted: Snapshot {
                state: GroupState::Empty,
                generation,
                protocol_type: None,
                protocol_name: None,
                leader: None,
                members: Vec::new(),
            },
        }
    }

    pub(crate) fn state(&self) -> GroupState {
        self.state
    }

    pub(crate) fn generation(&self) -> i32 {
        self.generation
    }

    pub(crate) fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub(crate) fn member_ids(&self) -> Vec<(String, Option<String>)> {
        self.members
            .iter()
            .map(|m| (m.id.clone(), m.instance_id.clone()))
            .collect()
    }

    fn index(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == member_id)
    }

    fn static_member(&self, instance_id: &str) -> Option<String> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.id.clone())
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    fn is_pending(&self, member_id: &str) -> bool {
        self.pending.iter().any(|p| p.id == member_id)
    }

    fn transition(&mut self, state: GroupState) {
        self.previous_state = self.state;
        self.state = state;
    }

    /// The largest rebalance timeout of the members: how long a rebalance
    /// waits for them.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    fn has_all_members_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some())
    }

    fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    /// Whether a joining member's protocols fit the group: any type and at
    /// least one protocol for an empty group, else the group's type and one
    /// protocol every current member supports.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.iter().all(|m| m.supports(&p.name)))
    }

    /// Each member votes for its most preferred protocol among those all
    /// members support; the most votes win. Kafka breaks ties in hash-map
    /// order; the mock in the leader's order of preference, so the choice
    /// is stable.
    fn select_protocol(&self) -> Option<String> {
        let candidates = |name: &str| self.members.iter().all(|m| m.supports(name));
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in &self.members {
            if let Some(p) = member.protocols.iter().find(|p| candidates(&p.name)) {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let leader = self
            .leader
            .as_deref()
            .and_then(|id| self.members.iter().find(|m| m.id == id))
            .or_else(|| self.members.first())?;
        let mut best: Option<(&str, usize)> = None;
        for p in &leader.protocols {
            let count = votes.get(p.name.as_str()).copied().unwrap_or(0);
            if count > 0 && best.is_none_or(|(_, most)| count > most) {
                best = Some((p.name.as_str(), count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    /// Every member with its metadata for the chosen protocol: the leader's
    /// JoinGroup response.
    fn current_members(&self) -> Vec<JoinedMember> {
        self.members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(self.protocol_name.as_deref()),
            })
            .collect()
    }

    /// The JoinGroup answer that tells a member the current generation.
    fn generation_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        JoinResponse {
            error: NONE,
            member_id: member_id.to_owned(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            members: if with_members {
                self.current_members()
            } else {
                Vec::new()
            },
        }
    }

    /// Kafka's `validateMember`: a static member's instance id must map to
    /// this member id (else FENCED_INSTANCE_ID: an older incarnation), and
    /// the member must exist (else UNKNOWN_MEMBER_ID).
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<usize, i16> {
        if let Some(instance_id) = instance_id {
            match self.static_member(instance_id) {
                None => return Err(UNKNOWN_MEMBER_ID),
                Some(current) if current != member_id => return Err(FENCED_INSTANCE_ID),
                Some(_) => {}
            }
        }
        self.index(member_id).ok_or(UNKNOWN_MEMBER_ID)
    }

    fn add(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.pending.retain(|p| p.id != member.id);
        self.members.push(member);
    }

    /// Takes a member out, answering whatever it is waiting for with
    /// UNKNOWN_MEMBER_ID so its client starts over. (Kafka answers only a
    /// waiting JoinGroup; a SyncGroup of a removed member would hang, which
    /// a mock must not let happen.)
    fn remove_member(&mut self, ctx: &mut Ctx<'_>, member_id: &str) -> bool {
        let Some(index) = self.index(member_id) else {
            return false;
        };
        let member = self.members.remove(index);
        if let Some(waiter) = member.awaiting_join {
            ctx.reply(
                waiter,
                Reply::Join(JoinResponse::error(UNKNOWN_MEMBER_ID, "")),
            );
        }
        if let Some(waiter) = member.awaiting_sync {
            ctx.reply(waiter, Reply::Sync(SyncResponse::error(UNKNOWN_MEMBER_ID)));
        }
        if self.is_leader(member_id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.pending_sync.remove(member_id);
        true
    }

    /// Writes what Kafka would write to `__consumer_offsets`.
    fn persist(&mut self) {
        let members = self
            .members
            .iter()
            .map(|m| Member {
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                expires: None,
                ..m.clone()
            })
            .collect();
        self.persisted = Snapshot {
            state: self.state,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members,
        };
    }

    // ---- JoinGroup ----

    pub(crate) fn join(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: JoinRequest,
        waiter: Waiter,
    ) -> Outcome<JoinResponse> {
        if request.member_id.is_empty() {
            self.join_new_member(ctx, request, waiter)
        } else {
            self.join_existing_member(ctx, request, waiter)
        }
    }

    fn join_new_member(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: JoinRequest,
        waiter: Waiter,
    ) -> Outcome<JoinResponse> {
        if self.state == GroupState::Dead {
            return Outcome::Done(JoinResponse::error(COORDINATOR_NOT_AVAILABLE, ""));
        }
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            return Outcome::Done(JoinResponse::error(INCONSISTENT_GROUP_PROTOCOL, ""));
        }
        let prefix = request
            .instance_id
            .clone()
            .unwrap_or_else(|| request.client_id.clone());
        let new_id = ctx.new_member_id(&prefix);
        match request.instance_id.as_deref() {
            Some(instance_id) => match self.static_member(instance_id) {
                Some(old_id) => self.replace_static_member(ctx, request, &old_id, new_id, waiter),
                None => self.add_member_and_rebalance(ctx, request, new_id, waiter),
            },
            None if request.requires_known_member_id => {
                // KIP-394: hand out the id and make the client come back
                // with it, so a client that times out and retries does not
                // leave a defunct member behind each time.
                let session_timeout = millis(request.session_timeout_ms);
                self.pending.push(Pending {
                    id: new_id.clone(),
                    session_timeout,
                    expires: ctx.now + session_timeout,
                });
                Outcome::Done(JoinResponse::error(MEMBER_ID_REQUIRED, new_id))
            }
            None => self.add_member_and_rebalance(ctx, request, new_id, waiter),
        }
    }

    fn join_existing_member(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: JoinRequest,
        waiter: Waiter,
    ) -> Outcome<JoinResponse> {
        let member_id = request.member_id.clone();
        let fail = |error| Outcome::Done(JoinResponse::error(error, member_id.clone()));
        if self.state == GroupState::Dead {
            return fail(COORDINATOR_NOT_AVAILABLE);
        }
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            return fail(INCONSISTENT_GROUP_PROTOCOL);
        }
        if self.is_pending(&member_id) {
            // Kafka never hands a static member a pending id; a client that
            // adds an instance id on the second join cannot take over one
            // already in use.
            let taken = request
                .instance_id
                .as_deref()
                .is_some_and(|i| self.static_member(i).is_some());
            if taken {
                return fail(FENCED_INSTANCE_ID);
            }
            return self.add_member_and_rebalance(ctx, request, member_id.clone(), waiter);
        }
        let index = match self.validate_member(&member_id, request.instance_id.as_deref()) {
            Ok(index) => index,
            Err(error) => return fail(error),
        };
        let same_protocols = self.members[index].protocols == request.protocols;
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(ctx, index, request, waiter)
            }
            GroupState::CompletingRebalance if same_protocols => {
                // The member probably lost the first answer; give it again.
                let leader = self.is_leader(&member_id);
                Outcome::Done(self.generation_response(&member_id, leader))
            }
            GroupState::Stable if same_protocols && !self.is_leader(&member_id) => {
                // Nothing changed for a follower: let it go on to SyncGroup.
                Outcome::Done(self.generation_response(&member_id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // New metadata, or the leader asking for a rebalance (how a
                // consumer reacts to a change no member metadata shows,
                // such as a new partition).
                self.update_member_and_rebalance(ctx, index, request, waiter)
            }
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => fail(UNKNOWN_MEMBER_ID),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: JoinRequest,
        member_id: String,
        waiter: Waiter,
    ) -> Outcome<JoinResponse> {
        let member = Member {
            id: member_id,
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout: millis(request.session_timeout_ms),
            rebalance_timeout: millis(request.rebalance_timeout_ms),
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(waiter),
            awaiting_sync: None,
            is_new: true,
            // A new member cannot heartbeat before its first answer; it
            // gets the new-member join timeout instead of its session.
            expires: Some(ctx.now + ctx.config.new_member_join_timeout),
        };
        if self.state == GroupState::PreparingRebalance && self.previous_state == GroupState::Empty
        {
            self.new_member_added = true;
        }
        self.add(member);
        self.maybe_prepare_rebalance_or_complete_join(ctx);
        Outcome::Wait(waiter)
    }

    fn update_member_and_rebalance(
        &mut self,
        ctx: &mut Ctx<'_>,
        index: usize,
        request: JoinRequest,
        waiter: Waiter,
    ) -> Outcome<JoinResponse> {
        let member = &mut self.members[index];
        member.protocols = request.protocols;
        member.rebalance_timeout = millis(request.rebalance_timeout_ms);
        member.session_timeout = millis(request.session_timeout_ms);
        if let Some(superseded) = member.awaiting_join.replace(waiter) {
            // Kafka drops the earlier request's answer on the floor (its
            // client gave up on it); the mock answers it so no connection
            // waits forever.
            let id = member.id.clone();
            ctx.reply(
                superseded,
                Reply::Join(JoinResponse::error(REBALANCE_IN_PROGRESS, id)),
            );
        }
        self.maybe_prepare_rebalance_or_complete_join(ctx);
        Outcome::Wait(waiter)
    }

    /// KIP-345: a known instance id joining without its member id is the
    /// same member restarted. It takes the member's place under a new id;
    /// the old id is fenced. A Stable group does not rebalance for it unless
    /// the chosen protocol would change.
    fn replace_static_member(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: JoinRequest,
        old_id: &str,
        new_id: String,
        waiter: Waiter,
    ) -> Outcome<JoinResponse> {
        let Some(index) = self.index(old_id) else {
            return Outcome::Done(JoinResponse::error(UNKNOWN_MEMBER_ID, ""));
        };
        let previous_leader = self.leader.clone().unwrap_or_default();
        let member = &mut self.members[index];
        if let Some(old) = member.awaiting_join.take() {
            ctx.reply(
                old,
                Reply::Join(JoinResponse::error(FENCED_INSTANCE_ID, old_id)),
            );
        }
        if let Some(old) = member.awaiting_sync.take() {
            ctx.reply(old, Reply::Sync(SyncResponse::error(FENCED_INSTANCE_ID)));
        }
        member.id = new_id.clone();
        member.is_new = false;
        member.renew(ctx.now);
        member.protocols = request.protocols;
        member.rebalance_timeout = millis(request.rebalance_timeout_ms);
        member.session_timeout = millis(request.session_timeout_ms);
        member.awaiting_join = Some(waiter);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        match self.state {
            GroupState::Stable => {
                let next_protocol = self.select_protocol();
                if next_protocol.is_some() && next_protocol == self.protocol_name {
                    self.persist();
                    self.members[index].awaiting_join = None;
                    let response = if request.supports_skip_assignment {
                        // KIP-814: a static leader learns it leads, with
                        // the members, but must not reassign.
                        let leads = self.is_leader(&new_id);
                        JoinResponse {
                            skip_assignment: leads,
                            ..self.generation_response(&new_id, leads)
                        }
                    } else {
                        // Before v9 the old leader id is returned, so a
                        // restarted leader does not think it leads and
                        // send an assignment a Stable group would ignore.
                        JoinResponse {
                            leader: previous_leader,
                            ..self.generation_response(&new_id, false)
                        }
                    };
                    Outcome::Done(response)
                } else {
                    self.maybe_prepare_rebalance_or_complete_join(ctx);
                    Outcome::Wait(waiter)
                }
            }
            GroupState::CompletingRebalance => {
                // The leader may be assigning with the old id; start over.
                self.prepare_rebalance(ctx);
                Outcome::Wait(waiter)
            }
            GroupState::PreparingRebalance => {
                self.maybe_complete_join_phase(ctx);
                Outcome::Wait(waiter)
            }
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => {
                self.members[index].awaiting_join = None;
                Outcome::Done(JoinResponse::error(UNKNOWN_MEMBER_ID, new_id))
            }
        }
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, ctx: &mut Ctx<'_>) {
        if self.can_rebalance() {
            self.prepare_rebalance(ctx);
        } else {
            self.maybe_complete_join_phase(ctx);
        }
    }

    /// Completes the join phase once everybody rejoined, except in the
    /// initial rebalance, which always runs its delay out.
    fn maybe_complete_join_phase(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == GroupState::PreparingRebalance
            && self.previous_state != GroupState::Empty
            && self.has_all_members_joined()
        {
            self.complete_join(ctx);
        }
    }

    fn prepare_rebalance(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == GroupState::CompletingRebalance {
            // Followers waiting for the assignment must rejoin instead.
            self.reset_and_propagate_assignment(ctx, REBALANCE_IN_PROGRESS);
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        let initial = self.state == GroupState::Empty;
        if initial {
            let delay = ctx.config.initial_rebalance_delay;
            let remaining = self.rebalance_timeout().saturating_sub(delay);
            self.join_timer = Some((
                Timer::start(ctx.now, delay),
                JoinPhase::Initial { delay, remaining },
            ));
        }
        self.transition(GroupState::PreparingRebalance);
        if !initial {
            if self.has_all_members_joined() {
                self.complete_join(ctx);
            } else {
                let timer = Timer::start(ctx.now, self.rebalance_timeout());
                self.join_timer = Some((timer, JoinPhase::Rebalance));
            }
        }
    }

    /// The initial delay ran out: wait another delay if members kept
    /// arriving (never beyond the rebalance timeout), else complete.
    fn initial_delay_elapsed(&mut self, ctx: &mut Ctx<'_>, delay: Duration, remaining: Duration) {
        if self.new_member_added && !remaining.is_zero() {
            self.new_member_added = false;
            let next_delay = ctx.config.initial_rebalance_delay.min(remaining);
            let next_remaining = remaining.saturating_sub(delay);
            self.join_timer = Some((
                Timer::start(ctx.now, next_delay),
                JoinPhase::Initial {
                    delay: next_delay,
                    remaining: next_remaining,
                },
            ));
        } else {
            self.complete_join(ctx);
        }
    }

    fn complete_join(&mut self, ctx: &mut Ctx<'_>) {
        self.join_timer = None;
        self.new_member_added = false;
        // Dynamic members that did not rejoin are gone; static ones stay
        // until their session expires (KIP-345).
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(ctx, &id);
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Only static members that did not rejoin are left: wait for
            // their sessions to run out.
            let length = self.rebalance_timeout().max(Duration::from_millis(1));
            self.join_timer = Some((Timer::start(ctx.now, length), JoinPhase::Rebalance));
            return;
        }
        self.init_next_generation();
        if self.state == GroupState::Empty {
            self.persist();
            return;
        }
        let leader = self.leader.clone().unwrap_or_default();
        let leader_view = self.generation_response(&leader, true);
        let follower_view = self.generation_response(&leader, false);
        for member in &mut self.members {
            let view = if member.id == leader {
                &leader_view
            } else {
                &follower_view
            };
            if let Some(waiter) = member.awaiting_join.take() {
                let response = JoinResponse {
                    member_id: member.id.clone(),
                    ..view.clone()
                };
                ctx.reply(waiter, Reply::Join(response));
            }
            member.renew(ctx.now);
            member.is_new = false;
            self.pending_sync.insert(member.id.clone());
        }
        let timer = Timer::start(ctx.now, self.rebalance_timeout());
        self.sync_timer = Some((timer, self.generation));
    }

    /// Keeps the leader if it rejoined, else makes the first member that
    /// did the leader; false when nobody rejoined.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.as_deref() else {
            return false;
        };
        let rejoined = |m: &Member| m.awaiting_join.is_some();
        if self.members.iter().any(|m| m.id == leader && rejoined(m)) {
            return true;
        }
        match self.members.iter().find(|m| rejoined(m)) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition(GroupState::CompletingRebalance);
        }
        self.pending_sync.clear();
    }

    fn reset_and_propagate_assignment(&mut self, ctx: &mut Ctx<'_>, error: i16) {
        for member in &mut self.members {
            member.assignment = Bytes::new();
        }
        self.propagate_assignment(ctx, error);
    }

    /// Answers every waiting SyncGroup with its member's assignment (or the
    /// error), and restarts those members' sessions.
    fn propagate_assignment(&mut self, ctx: &mut Ctx<'_>, error: i16) {
        let (protocol_type, protocol_name) = if error == NONE {
            (self.protocol_type.clone(), self.protocol_name.clone())
        } else {
            (None, None)
        };
        for member in &mut self.members {
            if let Some(waiter) = member.awaiting_sync.take() {
                let response = SyncResponse {
                    error,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                };
                ctx.reply(waiter, Reply::Sync(response));
                member.renew(ctx.now);
            }
        }
    }

    // ---- SyncGroup ----

    pub(crate) fn sync(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: SyncRequest,
        waiter: Waiter,
    ) -> Outcome<SyncResponse> {
        let fail = |error| Outcome::Done(SyncResponse::error(error));
        match self.state {
            GroupState::Empty => return fail(UNKNOWN_MEMBER_ID),
            GroupState::Dead => return fail(COORDINATOR_NOT_AVAILABLE),
            _ => {}
        }
        let index = match self.validate_member(&request.member_id, request.instance_id.as_deref()) {
            Ok(index) => index,
            Err(error) => return fail(error),
        };
        if request.generation != self.generation {
            return fail(ILLEGAL_GENERATION);
        }
        let inconsistent = |sent: &Option<String>, ours: &Option<String>| matches!((sent, ours), (Some(sent), Some(ours)) if sent != ours);
        if inconsistent(&request.protocol_type, &self.protocol_type)
            || inconsistent(&request.protocol_name, &self.protocol_name)
        {
            return fail(INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            GroupState::PreparingRebalance => fail(REBALANCE_IN_PROGRESS),
            GroupState::CompletingRebalance => {
                let member = &mut self.members[index];
                if let Some(superseded) = member.awaiting_sync.replace(waiter) {
                    ctx.reply(
                        superseded,
                        Reply::Sync(SyncResponse::error(REBALANCE_IN_PROGRESS)),
                    );
                }
                self.synced(&request.member_id);
                if self.is_leader(&request.member_id) {
                    // A member the plan leaves out gets an empty
                    // assignment; of two entries for a member, the last
                    // counts (Kafka fills a map).
                    let plan: BTreeMap<&str, &Bytes> = request
                        .assignments
                        .iter()
                        .map(|(id, assignment)| (id.as_str(), assignment))
                        .collect();
                    for member in &mut self.members {
                        member.assignment = plan
                            .get(member.id.as_str())
                            .map(|a| (*a).clone())
                            .unwrap_or_default();
                    }
                    self.propagate_assignment(ctx, NONE);
                    self.transition(GroupState::Stable);
                    self.persist();
                }
                Outcome::Wait(waiter)
            }
            GroupState::Stable => {
                self.synced(&request.member_id);
                let member = &self.members[index];
                Outcome::Done(SyncResponse {
                    error: NONE,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => fail(UNKNOWN_MEMBER_ID),
        }
    }

    /// A member sent its SyncGroup; once all have, the pending-sync timer
    /// has nothing left to do.
    fn synced(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_timer = None;
        }
    }

    // ---- Heartbeat ----

    pub(crate) fn heartbeat(
        &mut self,
        ctx: &mut Ctx<'_>,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        let index = match self.validate_member(member_id, instance_id) {
            Ok(index) => index,
            Err(error) => return error,
        };
        if generation != self.generation {
            return ILLEGAL_GENERATION;
        }
        match self.state {
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                self.members[index].renew(ctx.now);
                REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members[index].renew(ctx.now);
                NONE
            }
        }
    }

    // ---- LeaveGroup ----

    /// Removes members by member id, or by instance id with an empty member
    /// id (KIP-345's admin removal); one error code per member.
    pub(crate) fn leave(
        &mut self,
        ctx: &mut Ctx<'_>,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        let mut codes = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let code = if member_id.is_empty() {
                match instance_id.as_deref().and_then(|i| self.static_member(i)) {
                    Some(current) => {
                        self.remove_member(ctx, &current);
                        NONE
                    }
                    None => UNKNOWN_MEMBER_ID,
                }
            } else if self.is_pending(member_id) {
                self.pending.retain(|p| p.id != *member_id);
                NONE
            } else {
                match self.validate_member(member_id, instance_id.as_deref()) {
                    Ok(_) => {
                        self.remove_member(ctx, member_id);
                        NONE
                    }
                    Err(error) => error,
                }
            };
            codes.push(code);
        }
        if codes.contains(&NONE) {
            match self.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(ctx);
                }
                GroupState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
                GroupState::Empty
                | GroupState::Dead
                | GroupState::Assigning
                | GroupState::Reconciling => {}
            }
        }
        Ok(codes)
    }

    // ---- OffsetCommit ----

    /// Kafka's `ClassicGroup.validateOffsetCommit`, plus the session renewal
    /// a commit brings in Stable and PreparingRebalance.
    ///
    /// A commit with generation -1, no member id and no instance id is a
    /// "simple" commit, accepted while the group is Empty. Otherwise the
    /// member must be known and the generation current; and during
    /// CompletingRebalance the answer is REBALANCE_IN_PROGRESS. During
    /// PreparingRebalance the commit is accepted: members learn of the
    /// rebalance from Heartbeat, and must be able to commit what they
    /// processed before rejoining.
    pub(crate) fn validate_commit(
        &mut self,
        ctx: &mut Ctx<'_>,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ILLEGAL_GENERATION);
            }
        } else if self.state != GroupState::Empty {
            return Err(UNKNOWN_MEMBER_ID);
        }
        match self.state {
            GroupState::CompletingRebalance => Err(REBALANCE_IN_PROGRESS),
            GroupState::Stable | GroupState::PreparingRebalance => {
                if let Some(index) = self.index(member_id) {
                    self.members[index].renew(ctx.now);
                }
                Ok(())
            }
            GroupState::Empty
            | GroupState::Dead
            | GroupState::Assigning
            | GroupState::Reconciling => Ok(()),
        }
    }

    /// Kafka's `ClassicGroup.validateOffsetCommit` for a TxnOffsetCommit:
    /// the member checks of an OffsetCommit, but no group-state checks (a
    /// commit without member or generation, as TxnOffsetCommit v0-v2 sends,
    /// passes in any state; none gets REBALANCE_IN_PROGRESS) and no session
    /// renewal.
    pub(crate) fn validate_txn_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ILLEGAL_GENERATION);
            }
        }
        Ok(())
    }

    // ---- DescribeGroups, DeleteGroups ----

    pub(crate) fn describe(&self) -> Described {
        let stable = self.state == GroupState::Stable;
        let members = self
            .members
            .iter()
            .map(|m| DescribedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                // Metadata and assignment only mean something once Stable.
                metadata: if stable {
                    m.metadata(self.protocol_name.as_deref())
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        Described {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable {
                self.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members,
        }
    }

    pub(crate) fn deletable(&self) -> Result<(), i16> {
        match self.state {
            GroupState::Empty => Ok(()),
            GroupState::Dead | GroupState::Assigning | GroupState::Reconciling => {
                Err(GROUP_ID_NOT_FOUND)
            }
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable => Err(NON_EMPTY_GROUP),
        }
    }

    // ---- timers ----

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let join = self.join_timer.map(|(t, _)| t.at);
        let sync = self.sync_timer.map(|(t, _)| t.at);
        let pending = self.pending.iter().map(|p| p.expires).min();
        let members = self.members.iter().filter_map(|m| m.expires).min();
        [join, sync, pending, members].into_iter().flatten().min()
    }

    /// The earliest deadline that is due by `now`, if any; on a tie the join
    /// phase goes first, then the pending syncs, then member ids handed out
    /// with MEMBER_ID_REQUIRED, then members' sessions.
    fn earliest_due(&self, now: Instant) -> Option<Due> {
        let mut due: Option<(Instant, Due)> = None;
        let mut consider = |at: Instant, what: Due| {
            if at <= now && due.as_ref().is_none_or(|(best, _)| at < *best) {
                due = Some((at, what));
            }
        };
        if let Some((timer, phase)) = self.join_timer {
            consider(timer.at, Due::Join(phase));
        }
        if let Some((timer, generation)) = self.sync_timer {
            consider(timer.at, Due::Sync(generation));
        }
        for pending in &self.pending {
            consider(pending.expires, Due::Pending(pending.id.clone()));
        }
        for member in &self.members {
            if let Some(at) = member.expires {
                consider(at, Due::Session(member.id.clone()));
            }
        }
        due.map(|(_, what)| what)
    }

    /// Fires the deadlines that are due, one at a time, earliest first, as
    /// Kafka's timer would have had the driver woken at each.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        for _ in 0..MAX_STEPS_PER_TICK {
            match self.earliest_due(ctx.now) {
                None => return,
                Some(Due::Join(phase)) => {
                    self.join_timer = None;
                    match phase {
                        JoinPhase::Initial { delay, remaining } => {
                            self.initial_delay_elapsed(ctx, delay, remaining);
                        }
                        JoinPhase::Rebalance => self.complete_join(ctx),
                    }
                }
                Some(Due::Sync(generation)) => {
                    self.sync_timer = None;
                    self.pending_sync_expired(ctx, generation);
                }
                Some(Due::Pending(id)) => {
                    self.pending.retain(|p| p.id != id);
                    if self.state == GroupState::PreparingRebalance && self.has_all_members_joined()
                    {
                        self.complete_join(ctx);
                    }
                }
                Some(Due::Session(id)) => self.session_expired(ctx, &id),
            }
        }
        tracing::warn!(
            group = %self.id,
            "group timers keep firing; the rest wait for the next tick"
        );
    }

    /// Members that got their JoinGroup answer but sent no SyncGroup within
    /// the rebalance timeout are removed, and the group rebalances.
    fn pending_sync_expired(&mut self, ctx: &mut Ctx<'_>, generation: i32) {
        let syncing = matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        );
        if generation != self.generation || !syncing || self.pending_sync.is_empty() {
            return;
        }
        let laggards = std::mem::take(&mut self.pending_sync);
        tracing::debug!(group = %self.id, ?laggards, "removing members that did not sync");
        for id in &laggards {
            self.remove_member(ctx, id);
        }
        self.prepare_rebalance(ctx);
    }

    fn session_expired(&mut self, ctx: &mut Ctx<'_>, member_id: &str) {
        let Some(index) = self.index(member_id) else {
            return;
        };
        let member = &mut self.members[index];
        let waiting = member.awaiting_join.is_some() || member.awaiting_sync.is_some();
        if waiting && !member.is_new {
            // A waiting request counts as a heartbeat; the session starts
            // again when it is answered.
            member.expires = None;
            return;
        }
        tracing::debug!(group = %self.id, member_id, "session expired");
        self.fail_member(ctx, member_id);
    }

    /// Removes a failed member and lets the group react: a rebalance, or
    /// the end of the one under way if the member was all it waited for.
    fn fail_member(&mut self, ctx: &mut Ctx<'_>, member_id: &str) {
        self.remove_member(ctx, member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(ctx);
            }
            GroupState::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join(ctx);
            }
            _ => {}
        }
    }

    // ---- test-facing ----

    pub(crate) fn kick(&mut self, ctx: &mut Ctx<'_>, member_id: &str) -> bool {
        if self.is_pending(member_id) {
            self.pending.retain(|p| p.id != member_id);
            if self.state == GroupState::PreparingRebalance && self.has_all_members_joined() {
                self.complete_join(ctx);
            }
            return true;
        }
        if self.index(member_id).is_none() {
            return false;
        }
        self.fail_member(ctx, member_id);
        true
    }

    pub(crate) fn force_rebalance(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if self.members.is_empty() || !self.can_rebalance() {
            return false;
        }
        self.prepare_rebalance(ctx);
        true
    }

    /// The coordinator role left (or its broker died): waiting requests get
    /// NOT_COORDINATOR, and the group is what was last persisted, its
    /// timers stopped until [`load`](Self::load).
    pub(crate) fn unload(&mut self, ctx: &mut Ctx<'_>) {
        for member in &mut self.members {
            if let Some(waiter) = member.awaiting_join.take() {
                let response = JoinResponse::error(NOT_COORDINATOR, member.id.clone());
                ctx.reply(waiter, Reply::Join(response));
            }
            if let Some(waiter) = member.awaiting_sync.take() {
                ctx.reply(waiter, Reply::Sync(SyncResponse::error(NOT_COORDINATOR)));
            }
        }
        let snapshot = self.persisted.clone();
        self.state = snapshot.state;
        self.previous_state = GroupState::Dead;
        self.generation = snapshot.generation;
        self.protocol_type = snapshot.protocol_type;
        self.protocol_name = snapshot.protocol_name;
        self.leader = snapshot.leader;
        self.members = snapshot.members;
        self.pending.clear();
        self.pending_sync.clear();
        self.new_member_added = false;
        self.join_timer = None;
        self.sync_timer = None;
    }

    /// A coordinator took the group on: every session and timer starts
    /// afresh, as Kafka reschedules them when it loads a group.
    pub(crate) fn load(&mut self, now: Instant) {
        for member in &mut self.members {
            member.renew(now);
        }
        for pending in &mut self.pending {
            pending.expires = now + pending.session_timeout;
        }
        if let Some((timer, _)) = &mut self.join_timer {
            *timer = Timer::start(now, timer.length);
        }
        if let Some((timer, _)) = &mut self.sync_timer {
            *timer = Timer::start(now, timer.length);
        }
    }
}
