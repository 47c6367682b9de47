//! Group membership as a pure state machine (sans-io): events and `now` in, actions
//! out. The driver (which does the I/O) feeds it coordinator lookups, JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup outcomes and does what it says.
//!
//! This is the classic group protocol as the Java client's `AbstractCoordinator` runs
//! it, with Sarama's session shape on top (a session starts after SyncGroup and must be
//! ended, claims released, before the member rejoins):
//!
//! ```text
//!  Unjoined ─start─▶ FindingCoordinator ─found─▶ Joining ─joined─▶ Syncing ─synced─▶ Stable
//!      ▲                  ▲   │ backoff            │  ▲ MEMBER_ID_REQUIRED,            │ heartbeat loop
//!      │                  │   ▼                    │  │ UNKNOWN_MEMBER_ID,            │ REBALANCE_IN_PROGRESS,
//!      │                  └── coordinator errors ◀─┴──┤ REBALANCE_IN_PROGRESS         │ ILLEGAL_GENERATION,
//!      │                                              └───────────── Revoking ◀───────┘ UNKNOWN_MEMBER_ID,
//!      │                                                 (session ends, claims         session timeout
//!      └────────── close: Leaving (LeaveGroup) ─▶ Left    released, then rejoin)
//! ```
//!
//! KIP-62 (heartbeats independent of processing), KIP-394 (MEMBER_ID_REQUIRED), KIP-345
//! (static membership: FENCED_INSTANCE_ID is fatal; a static member does not leave).
//!
//! Under the cooperative protocol (KIP-429) a rebalance does not end the session: the
//! member rejoins while its claims keep consuming ([`Action::SessionRebalancing`]), and
//! the new assignment updates the running session ([`Action::UpdateSession`]), which
//! stops only the revoked claims. A member that had partitions revoked rejoins at once,
//! so the follow-up rebalance can hand them to their new owners. Losing the membership
//! (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, session timeout) still ends the session.
//!
//! A handler that keeps a record for longer than `max.poll.interval.ms`
//! ([`Membership::stalled`]) makes the member leave the group, as the Java client's
//! heartbeat thread does, so its partitions go to members that make progress; it
//! rejoins once its session has ended.
//! Errors that end the member for good (FENCED_INSTANCE_ID, authorization, invalid
//! configuration) produce [`Action::Fail`].

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backoff::Backoff;
use crate::error::{Error, KafkaCode};

/// The timing settings the state machine needs.
#[derive(Debug, Clone)]
pub(crate) struct MembershipConfig {
    /// `session.timeout.ms`: without a successful heartbeat for this long, the
    /// coordinator has evicted us; our claims are lost.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `retry.backoff.ms` for coordinator lookups and retried joins.
    pub retry_backoff: Backoff,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    /// Whether the member follows the cooperative rebalance protocol (KIP-429): every
    /// configured assignor supports it.
    pub cooperative: bool,
}

/// Where the member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Unjoined,
    FindingCoordinator,
    Joining,
    Syncing,
    Stable,
    /// The session is ending; waiting for the driver to report its claims released.
    Revoking,
    Leaving,
    Left,
    Failed,
}

impl Phase {
    /// The `state` label of the group state metric.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Unjoined => "unjoined",
            Phase::FindingCoordinator => "finding_coordinator",
            Phase::Joining => "joining",
            Phase::Syncing => "syncing",
            Phase::Stable => "stable",
            Phase::Revoking => "revoking",
            Phase::Leaving => "leaving",
            Phase::Left => "left",
            Phase::Failed => "failed",
        }
    }
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// A rebalance: the member still owns its partitions until it rejoins, so offsets
    /// may (must) be committed before the claims are given up.
    Rebalance,
    /// Ownership is already gone (evicted, fenced generation): do not commit, the
    /// partitions may belong to someone else by now.
    Lost,
    /// The member is closing.
    Close,
}

/// A JoinGroup outcome as the driver parsed it.
#[derive(Debug, Clone)]
pub(crate) enum JoinOutcome {
    Joined {
        member_id: String,
        generation: i32,
        protocol: Option<String>,
        leader_id: String,
        /// The members' ids, instance ids and metadata; only the leader gets them.
        members: Vec<JoinedMember>,
    },
    /// MEMBER_ID_REQUIRED with the id to use (KIP-394).
    MemberIdRequired(String),
    Failed(Error),
}

/// One member as JoinGroup lists it to the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What the state machine asks the driver to do.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Look up the group coordinator (FindCoordinator), then report
    /// [`Membership::coordinator_found`] or [`Membership::coordinator_failed`].
    FindCoordinator,
    /// Send JoinGroup with this member id ("" when new) and the member's protocols.
    Join { member_id: String },
    /// As leader: run the assignor over `members` and report the plan with
    /// [`Membership::assigned`].
    Assign {
        protocol: Option<String>,
        members: Vec<JoinedMember>,
    },
    /// Send SyncGroup; the leader includes `assignments` (member id, assignment bytes).
    Sync {
        member_id: String,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    },
    /// Start a session with this assignment (claims, handler setup).
    StartSession {
        member_id: String,
        generation: i32,
        assignment: Bytes,
    },
    /// Cooperative: a rebalance starts while the session goes on; hold commits until
    /// the new assignment arrives.
    SessionRebalancing,
    /// Cooperative: the running session's new assignment. Stop the claims it no longer
    /// lists (committing), start the new ones, then report
    /// [`Membership::session_updated`].
    UpdateSession { generation: i32, assignment: Bytes },
    /// End the current session; report [`Membership::session_ended`] when its claims
    /// are released (and, unless `Lost`, offsets committed).
    EndSession(SessionEnd),
    /// Send a heartbeat now.
    Heartbeat { member_id: String, generation: i32 },
    /// Send LeaveGroup.
    Leave { member_id: String },
    /// Nothing to do until this moment (or the next event).
    WaitUntil(Instant),
    /// The member cannot continue.
    Fail(Error),
}

/// The state of one group member. See the module docs.
#[derive(Debug)]
pub(crate) struct Membership {
    config: MembershipConfig,
    phase: Phase,
    member_id: String,
    generation: i32,
    leader: bool,
    /// Consecutive failures, for backoff.
    failures: u32,
    retry_at: Option<Instant>,
    heartbeat_in_flight: bool,
    last_heartbeat_sent: Option<Instant>,
    /// The last proof that the coordinator knows us (join, sync or heartbeat answer).
    last_alive: Option<Instant>,
    /// Where to go once the session has ended.
    after_session: Phase,
    closing: bool,
    /// A session runs (from `StartSession` until `session_ended`).
    session_active: bool,
    /// A rebalance was asked for while the coordinator was being looked up again.
    rejoin_requested: bool,
}

impl Membership {
    pub(crate) fn new(config: MembershipConfig) -> Self {
        Self {
            config,
            phase: Phase::Unjoined,
            member_id: String::new(),
            generation: -1,
            leader: false,
            failures: 0,
            retry_at: None,
            heartbeat_in_flight: false,
            last_heartbeat_sent: None,
            last_alive: None,
            after_session: Phase::Joining,
            closing: false,
            session_active: false,
            rejoin_requested: false,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn member_id(&self) -> &str {
        &self.member_id
    }

    pub(crate) fn generation(&self) -> i32 {
        self.generation
    }

    #[cfg(test)]
    pub(crate) fn is_leader(&self) -> bool {
        self.leader
    }

    /// `consume` started: find the coordinator.
    pub(crate) fn start(&mut self, now: Instant) -> Vec<Action> {
        if self.phase != Phase::Unjoined {
            return self.poll(now);
        }
        self.phase = Phase::FindingCoordinator;
        vec![Action::FindCoordinator]
    }

    pub(crate) fn coordinator_found(&mut self, now: Instant) -> Vec<Action> {
        if self.phase != Phase::FindingCoordinator {
            return self.poll(now);
        }
        self.failures = 0;
        if self.after_session == Phase::Stable {
            // The coordinator moved while we were stable: keep the session and
            // heartbeat to the new one.
            self.phase = Phase::Stable;
            self.after_session = Phase::Joining;
            if std::mem::take(&mut self.rejoin_requested) {
                return self.rejoin(now);
            }
            return self.poll(now);
        }
        self.join()
    }

    pub(crate) fn coordinator_failed(&mut self, err: &Error, now: Instant) -> Vec<Action> {
        if self.phase != Phase::FindingCoordinator {
            return self.poll(now);
        }
        if !err.is_retriable() {
            return self.fail(err.clone());
        }
        self.backoff(now);
        self.poll(now)
    }

    fn join(&mut self) -> Vec<Action> {
        self.phase = Phase::Joining;
        self.leader = false;
        vec![Action::Join {
            member_id: self.member_id.clone(),
        }]
    }

    /// A JoinGroup answer.
    pub(crate) fn joined(&mut self, outcome: JoinOutcome, now: Instant) -> Vec<Action> {
        if self.phase != Phase::Joining {
            return self.poll(now);
        }
        match outcome {
            JoinOutcome::MemberIdRequired(member_id) => {
                self.member_id = member_id;
                self.join()
            }
            JoinOutcome::Joined {
                member_id,
                generation,
                protocol,
                leader_id,
                members,
            } => {
                self.failures = 0;
                self.last_alive = Some(now);
                self.leader = leader_id == member_id;
                self.member_id = member_id;
                self.generation = generation;
                self.phase = Phase::Syncing;
                if self.leader {
                    vec![Action::Assign { protocol, members }]
                } else {
                    vec![self.sync(Vec::new())]
                }
            }
            JoinOutcome::Failed(err) => self.join_or_sync_failed(err, now),
        }
    }

    /// The leader's plan, from the assignor.
    pub(crate) fn assigned(
        &mut self,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Vec<Action> {
        if self.phase != Phase::Syncing || !self.leader {
            return self.poll(now);
        }
        vec![self.sync(assignments)]
    }

    fn sync(&self, assignments: Vec<(String, Bytes)>) -> Action {
        Action::Sync {
            member_id: self.member_id.clone(),
            generation: self.generation,
            assignments,
        }
    }

    /// A SyncGroup answer: our assignment, or why not.
    pub(crate) fn synced(&mut self, outcome: Result<Bytes, Error>, now: Instant) -> Vec<Action> {
        if self.phase != Phase::Syncing {
            return self.poll(now);
        }
        match outcome {
            Ok(assignment) => {
                self.phase = Phase::Stable;
                self.last_alive = Some(now);
                self.last_heartbeat_sent = Some(now);
                self.heartbeat_in_flight = false;
                let first = if self.session_active {
                    Action::UpdateSession {
                        generation: self.generation,
                        assignment,
                    }
                } else {
                    self.session_active = true;
                    Action::StartSession {
                        member_id: self.member_id.clone(),
                        generation: self.generation,
                        assignment,
                    }
                };
                let mut actions = vec![first];
                actions.extend(self.poll(now));
                actions
            }
            Err(err) => self.join_or_sync_failed(err, now),
        }
    }

    /// What a failed JoinGroup or SyncGroup leads to. Under the eager protocol no
    /// session runs; under the cooperative one a session may, and losing the
    /// membership ends it without a commit.
    fn join_or_sync_failed(&mut self, err: Error, now: Instant) -> Vec<Action> {
        if err.code().is_some() && !needs_coordinator(&err) {
            // The coordinator answered: it knew us until now (a cooperative session's
            // timeout counts from here).
            self.last_alive = Some(now);
        }
        match err.code() {
            Some(KafkaCode::UNKNOWN_MEMBER_ID) => {
                self.member_id.clear();
                self.generation = -1;
                self.lose_session_or(Self::join)
            }
            Some(KafkaCode::ILLEGAL_GENERATION) => {
                self.generation = -1;
                self.lose_session_or(Self::join)
            }
            Some(KafkaCode::REBALANCE_IN_PROGRESS) => self.join(),
            _ if is_fatal(&err) && self.session_active => {
                let mut actions = self.end_session(SessionEnd::Lost, Phase::Failed);
                actions.push(Action::Fail(err));
                actions
            }
            _ if is_fatal(&err) => self.fail(err),
            _ if needs_coordinator(&err) => {
                self.backoff(now);
                self.phase = Phase::FindingCoordinator;
                self.poll(now)
            }
            _ if err.is_retriable() => {
                self.backoff(now);
                self.phase = Phase::Joining;
                self.poll(now)
            }
            _ => self.fail(err),
        }
    }

    /// A heartbeat answer.
    pub(crate) fn heartbeat_done(
        &mut self,
        outcome: Result<(), Error>,
        now: Instant,
    ) -> Vec<Action> {
        self.heartbeat_in_flight = false;
        if self.phase != Phase::Stable {
            return self.poll(now);
        }
        match outcome {
            Ok(()) => {
                self.last_alive = Some(now);
                self.poll(now)
            }
            Err(err) => match err.code() {
                Some(KafkaCode::REBALANCE_IN_PROGRESS) => {
                    self.last_alive = Some(now);
                    self.rebalance()
                }
                Some(KafkaCode::UNKNOWN_MEMBER_ID) => {
                    self.member_id.clear();
                    self.generation = -1;
                    self.end_session(SessionEnd::Lost, Phase::Joining)
                }
                Some(KafkaCode::ILLEGAL_GENERATION) => {
                    self.generation = -1;
                    self.end_session(SessionEnd::Lost, Phase::Joining)
                }
                _ if is_fatal(&err) => {
                    let mut actions = self.end_session(SessionEnd::Lost, Phase::Failed);
                    actions.push(Action::Fail(err));
                    actions
                }
                _ if needs_coordinator(&err) => {
                    // Keep the session: find the coordinator again and heartbeat there,
                    // unless the session timeout runs out first (see `poll`).
                    self.phase = Phase::FindingCoordinator;
                    self.after_session = Phase::Stable;
                    self.backoff(now);
                    self.poll(now)
                }
                _ => self.poll(now),
            },
        }
    }

    /// Something outside the protocol asks for a rebalance: a subscribed topic grew or
    /// appeared (the seed's `loopCheckPartitionNumbers`), or the user asked.
    pub(crate) fn rejoin(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::Stable => self.rebalance(),
            // The join after the lookup would restore the old session: remember.
            Phase::FindingCoordinator if self.after_session == Phase::Stable => {
                self.rejoin_requested = true;
                self.poll(now)
            }
            // Any other phase joins next anyway, and the leader reads metadata then.
            _ => self.poll(now),
        }
    }

    /// The cooperative session's update is done (revoked claims stopped and
    /// committed, new ones started). `revoked` says whether partitions were given up:
    /// then the member rejoins at once, so the follow-up rebalance can assign them.
    /// `heartbeat` is the last answer to the heartbeats sent meanwhile; an error there
    /// (a new rebalance, a lost membership) decides first.
    pub(crate) fn session_updated(
        &mut self,
        revoked: bool,
        heartbeat: Option<Result<(), Error>>,
        now: Instant,
    ) -> Vec<Action> {
        match heartbeat {
            Some(Ok(())) => self.last_alive = Some(now),
            Some(Err(err)) => {
                let actions = self.heartbeat_done(Err(err), now);
                if self.phase != Phase::Stable {
                    if revoked && self.after_session == Phase::Stable {
                        // Looking for the coordinator again with the session kept.
                        self.rejoin_requested = true;
                    }
                    return actions;
                }
            }
            None => {}
        }
        if revoked {
            self.rejoin(now)
        } else {
            self.poll(now)
        }
    }

    /// The handler kept a record past `max.poll.interval.ms`: leave the group so the
    /// partitions go to members that make progress (a static member only forgets its
    /// member id, as in Java), end the session without committing, and rejoin as a new
    /// member once it has ended.
    pub(crate) fn stalled(&mut self, now: Instant) -> Vec<Action> {
        let in_group = matches!(
            self.phase,
            Phase::Stable | Phase::FindingCoordinator | Phase::Joining | Phase::Syncing
        );
        if !self.session_active || !in_group {
            return self.poll(now);
        }
        let member_id = std::mem::take(&mut self.member_id);
        self.generation = -1;
        let mut actions = Vec::new();
        if self.config.instance_id.is_none() && !member_id.is_empty() {
            actions.push(Action::Leave { member_id });
        }
        actions.extend(self.end_session(SessionEnd::Lost, Phase::Joining));
        actions
    }

    /// A rebalance from the stable state: the eager protocol ends the session first;
    /// the cooperative one rejoins while it goes on.
    fn rebalance(&mut self) -> Vec<Action> {
        if self.config.cooperative && self.session_active {
            let mut actions = vec![Action::SessionRebalancing];
            actions.extend(self.join());
            actions
        } else {
            self.end_session(SessionEnd::Rebalance, Phase::Joining)
        }
    }

    /// Membership is gone (evicted, fenced generation): end a running session without
    /// a commit, then rejoin; without a session, `otherwise`.
    fn lose_session_or(&mut self, otherwise: fn(&mut Self) -> Vec<Action>) -> Vec<Action> {
        if self.session_active {
            self.end_session(SessionEnd::Lost, Phase::Joining)
        } else {
            otherwise(self)
        }
    }

    /// The driver released the session's claims (after `EndSession`).
    pub(crate) fn session_ended(&mut self, now: Instant) -> Vec<Action> {
        if self.phase != Phase::Revoking {
            return self.poll(now);
        }
        self.session_active = false;
        match self.after_session {
            Phase::Leaving => self.leave(),
            Phase::Failed => {
                self.phase = Phase::Failed;
                Vec::new()
            }
            _ => {
                self.after_session = Phase::Joining;
                self.phase = Phase::FindingCoordinator;
                // Rejoin at the coordinator we know; a failure sends us to look again.
                self.coordinator_found(now)
            }
        }
    }

    /// The user closes the group: end the session (committing), then leave.
    pub(crate) fn close(&mut self, now: Instant) -> Vec<Action> {
        self.closing = true;
        match self.phase {
            Phase::Stable => self.end_session(SessionEnd::Close, Phase::Leaving),
            // Looking for a moved coordinator while the session goes on (see
            // `heartbeat_done`): the session must end, committing, before we leave,
            // or the coordinator refuses the commit of a member that left.
            Phase::FindingCoordinator if self.after_session == Phase::Stable => {
                self.end_session(SessionEnd::Close, Phase::Leaving)
            }
            Phase::Revoking => {
                self.after_session = Phase::Leaving;
                Vec::new()
            }
            Phase::Left | Phase::Failed | Phase::Leaving => self.poll(now),
            // Cooperative: a session runs while rejoining.
            _ if self.session_active => self.end_session(SessionEnd::Close, Phase::Leaving),
            _ if self.member_id.is_empty() => {
                self.phase = Phase::Left;
                Vec::new()
            }
            _ => self.leave(),
        }
    }

    fn leave(&mut self) -> Vec<Action> {
        // A static member does not leave: its instance id keeps its partitions through
        // a restart until the session times out (KIP-345).
        if self.config.instance_id.is_some() || self.member_id.is_empty() {
            self.phase = Phase::Left;
            return Vec::new();
        }
        self.phase = Phase::Leaving;
        vec![Action::Leave {
            member_id: self.member_id.clone(),
        }]
    }

    /// The LeaveGroup answer (any outcome: we are gone either way). After a close the
    /// member is done; after a stall it rejoins once its session has ended.
    pub(crate) fn left(&mut self) {
        if self.phase == Phase::Leaving {
            self.phase = Phase::Left;
            self.member_id.clear();
            self.generation = -1;
        }
    }

    fn end_session(&mut self, why: SessionEnd, then: Phase) -> Vec<Action> {
        self.phase = Phase::Revoking;
        self.after_session = then;
        self.heartbeat_in_flight = false;
        vec![Action::EndSession(why)]
    }

    fn fail(&mut self, err: Error) -> Vec<Action> {
        self.phase = Phase::Failed;
        vec![Action::Fail(err)]
    }

    fn backoff(&mut self, now: Instant) {
        self.failures += 1;
        self.retry_at = Some(now + self.config.retry_backoff.delay(self.failures, 0.5));
    }

    /// Timer-driven work: heartbeats when due, the session timeout, retries after
    /// backoff. Call it when a `WaitUntil` deadline passes.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::Stable | Phase::FindingCoordinator | Phase::Joining
                if self.session_expired(now) =>
            {
                // No answer from a coordinator for a whole session timeout: it has
                // evicted us and may have given our partitions away.
                self.member_id.clear();
                self.generation = -1;
                self.end_session(SessionEnd::Lost, Phase::Joining)
            }
            Phase::FindingCoordinator | Phase::Joining => match self.retry_at {
                Some(at) if at > now => vec![Action::WaitUntil(at)],
                _ => {
                    self.retry_at = None;
                    if self.phase == Phase::FindingCoordinator {
                        vec![Action::FindCoordinator]
                    } else {
                        self.join()
                    }
                }
            },
            Phase::Stable => {
                let due = self
                    .last_heartbeat_sent
                    .map_or(now, |t| t + self.config.heartbeat_interval);
                let expiry = self
                    .last_alive
                    .map_or(now, |t| t + self.config.session_timeout);
                if !self.heartbeat_in_flight && due <= now {
                    self.heartbeat_in_flight = true;
                    self.last_heartbeat_sent = Some(now);
                    vec![
                        Action::Heartbeat {
                            member_id: self.member_id.clone(),
                            generation: self.generation,
                        },
                        Action::WaitUntil((now + self.config.heartbeat_interval).min(expiry)),
                    ]
                } else {
                    let next = if self.heartbeat_in_flight {
                        expiry
                    } else {
                        due.min(expiry)
                    };
                    vec![Action::WaitUntil(next)]
                }
            }
            Phase::Unjoined
            | Phase::Syncing
            | Phase::Revoking
            | Phase::Leaving
            | Phase::Left
            | Phase::Failed => Vec::new(),
        }
    }

    /// Only asked between requests (a JoinGroup in flight may rightly take up to the
    /// rebalance timeout), and only while a session runs.
    fn session_expired(&self, now: Instant) -> bool {
        (self.phase == Phase::Stable || self.after_session == Phase::Stable || self.session_active)
            && self
                .last_alive
                .is_some_and(|t| now >= t + self.config.session_timeout)
    }
}

/// Codes after which the member must stop, as the Java client treats them.
fn is_fatal(err: &Error) -> bool {
    if err.kind() == &crate::ErrorKind::Closed {
        // The client was closed: nothing to retry.
        return true;
    }
    const FENCED_INSTANCE_ID: i16 = 82;
    const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    const INVALID_SESSION_TIMEOUT: i16 = 26;
    const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    const GROUP_MAX_SIZE_REACHED: i16 = 81;
    const INVALID_GROUP_ID: i16 = 24;
    matches!(
        err.code().map(KafkaCode::code),
        Some(
            FENCED_INSTANCE_ID
                | GROUP_AUTHORIZATION_FAILED
                | INVALID_SESSION_TIMEOUT
                | INCONSISTENT_GROUP_PROTOCOL
                | GROUP_MAX_SIZE_REACHED
                | INVALID_GROUP_ID
        )
    )
}

/// Whether the coordinator must be looked up again.
fn needs_coordinator(err: &Error) -> bool {
    err.is_connection_lost()
        || err.kind() == &crate::ErrorKind::Timeout
        || matches!(
            err.code(),
            Some(
                KafkaCode::NOT_COORDINATOR
                    | KafkaCode::COORDINATOR_NOT_AVAILABLE
                    | KafkaCode::COORDINATOR_LOAD_IN_PROGRESS
            )
        )
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
