//! Membership under the consumer group protocol (KIP-848) as a pure state machine:
//! events and `now` in, actions out; the [driver](super::driver) does the I/O.
//!
//! There is no JoinGroup/SyncGroup barrier. The member heartbeats
//! (ConsumerGroupHeartbeat); the broker answers with the member's epoch and, when it
//! changed, the member's assignment. The member reconciles towards it: partitions it
//! lost are drained, committed and given up first, then new ones start, and the next
//! heartbeat (sent at once) tells the broker what it owns now. The broker hands a
//! partition to its next owner only after the previous owner reported it gone, so no
//! partition is owned twice.
//!
//! ```text
//!  Unjoined ─start─▶ Joining ─answer─▶ Member ──heartbeat loop, reconcile──┐
//!                      ▲ (epoch 0)       │  ▲                              │
//!                      │                 │  └──────────────────────────────┘
//!                      │   fenced, stalled, no answer for session.timeout.ms
//!                      └── Releasing ◀───┤     (claims lost: no commit)
//!                                        │ close: claims drain, commit, then
//!                          Left ◀─ Leaving ◀─ Releasing (heartbeats go on)
//! ```
//!
//! The member id is the client's (a UUID), kept across FENCED_MEMBER_EPOCH; a new one
//! is made only when the broker answers UNKNOWN_MEMBER_ID (it forgot the member). The
//! first heartbeat after a join, an error or a lost answer carries every field ("full");
//! the others carry the owned partitions only when they changed ("lean"). A static
//! member (`group.instance.id`) leaves with epoch -2 so the broker keeps its
//! assignment for the session timeout; UNRELEASED_INSTANCE_ID (its previous
//! incarnation has not left yet) is retried [`UNRELEASED_RETRIES`] times.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::super::membership::SessionEnd;
use crate::backoff::Backoff;
use crate::error::{Error, KafkaCode};

/// A member's partitions by topic id, each list sorted.
pub(crate) type Assignment = BTreeMap<Uuid, Vec<i32>>;

/// How often UNRELEASED_INSTANCE_ID is retried before the member gives up (with the
/// backoff, some seconds: the previous incarnation's leave or session timeout).
pub(crate) const UNRELEASED_RETRIES: u32 = 20;

/// The epoch a dynamic member leaves with.
pub(crate) const LEAVE_EPOCH: i32 = -1;
/// The epoch a static member leaves with: the broker keeps its assignment.
pub(crate) const STATIC_LEAVE_EPOCH: i32 = -2;

/// What the member subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subscription {
    Topics(Vec<String>),
    /// A regular expression the broker evaluates (RE2/J syntax).
    Regex(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub instance_id: Option<String>,
    /// Without an answer for this long, the member counts its partitions lost (the
    /// broker's `group.consumer.session.timeout.ms` has most likely passed).
    pub session_timeout: Duration,
    /// Until the broker names its own.
    pub heartbeat_interval: Duration,
    pub retry_backoff: Backoff,
}

/// A heartbeat to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    pub member_id: String,
    pub epoch: i32,
    pub instance_id: Option<String>,
    /// Carry the rebalance timeout, subscription and assignor.
    pub full: bool,
    /// The owned partitions, when they must be sent.
    pub owned: Option<Assignment>,
}

/// A successful heartbeat answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub member_id: Option<String>,
    pub epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment when it changed.
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Heartbeat(Heartbeat),
    /// Start a session (no claims yet); reconciliations update it.
    StartSession {
        member_id: String,
        epoch: i32,
    },
    /// Bring the session's claims to `assignment` (revoked first, committed, then the
    /// added ones) and report [`Membership::reconciled`].
    Reconcile {
        epoch: i32,
        assignment: Assignment,
    },
    /// End the session; report [`Membership::session_ended`].
    EndSession(SessionEnd),
    /// Send this leave heartbeat (epoch -1 or -2), then report [`Membership::left`].
    Leave(Heartbeat),
    WaitUntil(Instant),
    Fail(Error),
}

/// Errors compare by what they say (tests compare actions).
impl PartialEq for Action {
    fn eq(&self, other: &Self) -> bool {
        use Action::*;
        match (self, other) {
            (Heartbeat(a), Heartbeat(b)) | (Leave(a), Leave(b)) => a == b,
            (
                StartSession {
                    member_id: a,
                    epoch: x,
                },
                StartSession {
                    member_id: b,
                    epoch: y,
                },
            ) => a == b && x == y,
            (
                Reconcile {
                    epoch: x,
                    assignment: a,
                },
                Reconcile {
                    epoch: y,
                    assignment: b,
                },
            ) => x == y && a == b,
            (EndSession(a), EndSession(b)) => a == b,
            (WaitUntil(a), WaitUntil(b)) => a == b,
            (Fail(a), Fail(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Unjoined,
    Joining,
    Member,
    Releasing,
    Leaving,
    Left,
    Failed,
}

impl Phase {
    /// The `state` label of the group state metric.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Unjoined => "unjoined",
            Phase::Joining => "joining",
            Phase::Member => "member",
            Phase::Releasing => "releasing",
            Phase::Leaving => "leaving",
            Phase::Left => "left",
            Phase::Failed => "failed",
        }
    }
}

/// What follows a session's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRelease {
    Rejoin,
    Leave,
}

pub(crate) struct Membership {
    config: Config,
    phase: Phase,
    member_id: String,
    new_member_id: Box<dyn FnMut() -> String + Send>,
    epoch: i32,
    interval: Duration,
    next_heartbeat: Option<Instant>,
    heartbeat_in_flight: bool,
    /// The next heartbeat carries every field.
    full: bool,
    /// What the session's claims are (reconciled).
    owned: Assignment,
    /// The owned partitions the broker last received.
    acked_owned: Option<Assignment>,
    /// The owned partitions the heartbeat in flight carries.
    sent_owned: Option<Assignment>,
    /// The broker's latest assignment, while it differs from `owned`.
    target: Option<Assignment>,
    reconciling: bool,
    /// Reconcile again even if nothing changed (restart failed claims).
    force_reconcile: bool,
    /// Some topic ids could not be resolved: try again then.
    retry_reconcile_at: Option<Instant>,
    session_active: bool,
    after_release: AfterRelease,
    /// Heartbeats go on while the session ends (a close: still a member).
    heartbeat_while_releasing: bool,
    last_alive: Option<Instant>,
    failures: u32,
    unreleased: u32,
    closing: bool,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("phase", &self.phase)
            .field("member_id", &self.member_id)
            .field("epoch", &self.epoch)
            .field("owned", &self.owned)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A fresh member id: a random (version 4) UUID.
pub(crate) fn random_member_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

impl Membership {
    pub(crate) fn new(config: Config, new_member_id: Box<dyn FnMut() -> String + Send>) -> Self {
        let mut new_member_id = new_member_id;
        let member_id = new_member_id();
        Self {
            interval: config.heartbeat_interval,
            config,
            phase: Phase::Unjoined,
            member_id,
            new_member_id,
            epoch: 0,
            next_heartbeat: None,
            heartbeat_in_flight: false,
            full: true,
            owned: Assignment::new(),
            acked_owned: None,
            sent_owned: None,
            target: None,
            reconciling: false,
            force_reconcile: false,
            retry_reconcile_at: None,
            session_active: false,
            after_release: AfterRelease::Rejoin,
            heartbeat_while_releasing: false,
            last_alive: None,
            failures: 0,
            unreleased: 0,
            closing: false,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    #[cfg(test)]
    pub(crate) fn member_id(&self) -> &str {
        &self.member_id
    }

    pub(crate) fn start(&mut self, now: Instant) -> Vec<Action> {
        if self.phase == Phase::Unjoined {
            self.join(now);
        }
        self.poll(now)
    }

    fn join(&mut self, now: Instant) {
        self.phase = Phase::Joining;
        self.epoch = 0;
        self.full = true;
        self.next_heartbeat = Some(now);
    }

    fn heartbeat(&mut self) -> Action {
        let owned = (self.full || self.acked_owned.as_ref() != Some(&self.owned))
            .then(|| self.owned.clone());
        self.sent_owned = owned.clone();
        self.heartbeat_in_flight = true;
        self.next_heartbeat = None;
        Action::Heartbeat(Heartbeat {
            member_id: self.member_id.clone(),
            epoch: self.epoch,
            instance_id: self.config.instance_id.clone(),
            full: self.full,
            owned,
        })
    }

    /// A heartbeat's answer (or why there is none).
    pub(crate) fn heartbeat_done(
        &mut self,
        outcome: Result<Reply, Error>,
        now: Instant,
    ) -> Vec<Action> {
        self.heartbeat_in_flight = false;
        let sent_owned = self.sent_owned.take();
        if !matches!(
            self.phase,
            Phase::Joining | Phase::Member | Phase::Releasing
        ) {
            return self.poll(now);
        }
        match outcome {
            Ok(reply) => {
                self.failures = 0;
                self.unreleased = 0;
                self.last_alive = Some(now);
                self.full = false;
                if sent_owned.is_some() {
                    self.acked_owned = sent_owned;
                }
                if let Some(id) = reply.member_id.filter(|id| !id.is_empty()) {
                    self.member_id = id;
                }
                self.epoch = reply.epoch;
                // A broker naming a non-positive interval would have us spin.
                self.interval = u64::try_from(reply.heartbeat_interval_ms)
                    .ok()
                    .filter(|&ms| ms > 0)
                    .map(Duration::from_millis)
                    .unwrap_or(self.config.heartbeat_interval);
                self.next_heartbeat = Some(now + self.interval);
                if self.phase == Phase::Releasing {
                    return self.poll(now);
                }
                if let Some(assignment) = reply.assignment {
                    // A new assignment is worth a try at once, unresolved ids or not.
                    self.target = Some(assignment);
                    self.retry_reconcile_at = None;
                }
                let mut actions = Vec::new();
                if self.phase == Phase::Joining {
                    self.phase = Phase::Member;
                    if !self.session_active {
                        self.session_active = true;
                        actions.push(Action::StartSession {
                            member_id: self.member_id.clone(),
                            epoch: self.epoch,
                        });
                    }
                }
                actions.extend(self.maybe_reconcile());
                if actions.is_empty() {
                    return self.poll(now);
                }
                actions
            }
            Err(err) => {
                self.full = true;
                match err.code() {
                    Some(KafkaCode::FENCED_MEMBER_EPOCH) => self.fenced(false, now),
                    Some(KafkaCode::UNKNOWN_MEMBER_ID) => self.fenced(true, now),
                    Some(KafkaCode::UNRELEASED_INSTANCE_ID)
                        if self.unreleased < UNRELEASED_RETRIES =>
                    {
                        self.unreleased += 1;
                        self.retry(now)
                    }
                    _ if err.is_retriable() => self.retry(now),
                    _ => self.fail(fatal(err)),
                }
            }
        }
    }

    fn retry(&mut self, now: Instant) -> Vec<Action> {
        self.failures += 1;
        self.next_heartbeat = Some(now + self.config.retry_backoff.delay(self.failures, 0.5));
        self.poll(now)
    }

    /// The broker no longer counts us as a member at our epoch: the claims are lost;
    /// rejoin at epoch 0 once they are released.
    fn fenced(&mut self, forgotten: bool, now: Instant) -> Vec<Action> {
        if forgotten {
            self.member_id = (self.new_member_id)();
        }
        self.lose(now)
    }

    fn lose(&mut self, now: Instant) -> Vec<Action> {
        self.epoch = 0;
        match self.phase {
            Phase::Member | Phase::Joining if self.session_active => {
                self.phase = Phase::Releasing;
                self.after_release = AfterRelease::Rejoin;
                self.heartbeat_while_releasing = false;
                self.next_heartbeat = None;
                vec![Action::EndSession(SessionEnd::Lost)]
            }
            Phase::Member | Phase::Joining => {
                self.join(now);
                self.poll(now)
            }
            // A close drains: nothing can be committed any more, the runner's commit
            // fails and says so; no more heartbeats.
            Phase::Releasing => {
                self.heartbeat_while_releasing = false;
                self.next_heartbeat = None;
                Vec::new()
            }
            _ => self.poll(now),
        }
    }

    fn maybe_reconcile(&mut self) -> Vec<Action> {
        // A target with unresolved topic ids waits for its retry (`poll`), not for
        // every heartbeat answer: each try refreshes metadata.
        let waiting = self.retry_reconcile_at.is_some() && !self.force_reconcile;
        if self.phase != Phase::Member || !self.session_active || self.reconciling || waiting {
            return Vec::new();
        }
        if self.target.as_ref() == Some(&self.owned) && !self.force_reconcile {
            self.target = None;
        }
        if self.target.is_none() && self.force_reconcile {
            self.target = Some(self.owned.clone());
        }
        let Some(target) = self.target.clone() else {
            return Vec::new();
        };
        self.force_reconcile = false;
        self.retry_reconcile_at = None;
        self.reconciling = true;
        vec![Action::Reconcile {
            epoch: self.epoch,
            assignment: target,
        }]
    }

    /// A reconciliation ended: the session's claims are `owned` now; `complete` is
    /// false when some topic ids could not be resolved yet (retried later).
    pub(crate) fn reconciled(
        &mut self,
        owned: Assignment,
        complete: bool,
        now: Instant,
    ) -> Vec<Action> {
        self.reconciling = false;
        if !self.session_active {
            return self.poll(now);
        }
        self.owned = owned;
        if complete {
            if self.target.as_ref() == Some(&self.owned) {
                self.target = None;
            }
        } else {
            self.failures += 1;
            self.retry_reconcile_at =
                Some(now + self.config.retry_backoff.delay(self.failures, 0.5));
        }
        // Tell the broker at once: it waits for revoked partitions to be reported
        // before it gives them to their next owner.
        if self.phase == Phase::Member
            && self.acked_owned.as_ref() != Some(&self.owned)
            && !self.heartbeat_in_flight
        {
            self.next_heartbeat = Some(now);
        }
        let actions = if complete {
            self.maybe_reconcile()
        } else {
            Vec::new()
        };
        if actions.is_empty() {
            return self.poll(now);
        }
        actions
    }

    pub(crate) fn session_ended(&mut self, now: Instant) -> Vec<Action> {
        self.session_active = false;
        self.reconciling = false;
        self.owned.clear();
        self.acked_owned = None;
        self.target = None;
        self.retry_reconcile_at = None;
        if self.phase != Phase::Releasing {
            return self.poll(now);
        }
        match self.after_release {
            AfterRelease::Rejoin if !self.closing => {
                self.join(now);
                self.poll(now)
            }
            _ => self.leave(),
        }
    }

    fn leave(&mut self) -> Vec<Action> {
        self.phase = Phase::Leaving;
        self.next_heartbeat = None;
        let epoch = match self.config.instance_id {
            Some(_) => STATIC_LEAVE_EPOCH,
            None => LEAVE_EPOCH,
        };
        vec![Action::Leave(Heartbeat {
            member_id: self.member_id.clone(),
            epoch,
            instance_id: self.config.instance_id.clone(),
            full: false,
            owned: None,
        })]
    }

    /// The leave heartbeat was sent (whatever its answer).
    pub(crate) fn left(&mut self) {
        if self.closing {
            self.phase = Phase::Left;
        }
    }

    /// `close`: drain and commit, then leave.
    pub(crate) fn close(&mut self, now: Instant) -> Vec<Action> {
        self.closing = true;
        match self.phase {
            Phase::Unjoined => {
                self.phase = Phase::Left;
                Vec::new()
            }
            Phase::Joining | Phase::Member if self.session_active => {
                self.phase = Phase::Releasing;
                self.after_release = AfterRelease::Leave;
                self.heartbeat_while_releasing = self.epoch > 0;
                vec![Action::EndSession(SessionEnd::Close)]
            }
            Phase::Joining | Phase::Member => self.leave(),
            Phase::Releasing => {
                self.after_release = AfterRelease::Leave;
                self.poll(now)
            }
            Phase::Leaving | Phase::Left | Phase::Failed => self.poll(now),
        }
    }

    /// A handler kept a record past `max.poll.interval.ms`: leave so the broker gives
    /// the partitions to others; rejoin once the session has ended.
    pub(crate) fn stalled(&mut self, now: Instant) -> Vec<Action> {
        if self.phase != Phase::Member || !self.session_active {
            return self.poll(now);
        }
        let mut actions = self.leave();
        self.phase = Phase::Releasing;
        self.after_release = AfterRelease::Rejoin;
        self.heartbeat_while_releasing = false;
        self.epoch = 0;
        actions.push(Action::EndSession(SessionEnd::Lost));
        actions
    }

    /// Restart claims whose handler failed (the rejoin policy): reconcile again.
    pub(crate) fn rejoin(&mut self, now: Instant) -> Vec<Action> {
        if self.phase == Phase::Member && self.session_active {
            self.force_reconcile = true;
            let actions = self.maybe_reconcile();
            if !actions.is_empty() {
                return actions;
            }
        }
        self.poll(now)
    }

    fn fail(&mut self, err: Error) -> Vec<Action> {
        self.phase = Phase::Failed;
        self.next_heartbeat = None;
        vec![Action::Fail(err)]
    }

    /// What is due at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Action> {
        let heartbeating = match self.phase {
            Phase::Joining | Phase::Member => true,
            Phase::Releasing => self.heartbeat_while_releasing,
            _ => false,
        };
        if !heartbeating || self.heartbeat_in_flight {
            return Vec::new();
        }
        if self.phase == Phase::Member && self.session_active {
            if let Some(alive) = self.last_alive {
                if now >= alive + self.config.session_timeout {
                    tracing::warn!(member_id = %self.member_id, "no heartbeat answer within session.timeout.ms; the partitions count as lost");
                    return self.lose(now);
                }
            }
            if self.retry_reconcile_at.is_some_and(|at| now >= at) && !self.reconciling {
                self.retry_reconcile_at = None;
                self.force_reconcile = self.target.is_none();
                let actions = self.maybe_reconcile();
                if !actions.is_empty() {
                    return actions;
                }
            }
        }
        let Some(at) = self.next_heartbeat else {
            // Not scheduled (e.g. the answer to the last one is awaited): the next
            // event says.
            self.next_heartbeat = Some(now + self.interval);
            return self.poll(now);
        };
        if now >= at {
            return vec![self.heartbeat()];
        }
        let mut wake = at;
        if self.phase == Phase::Member && self.session_active {
            if let Some(alive) = self.last_alive {
                wake = wake.min(alive + self.config.session_timeout);
            }
            if let Some(retry) = self.retry_reconcile_at.filter(|_| !self.reconciling) {
                wake = wake.min(retry);
            }
        }
        vec![Action::WaitUntil(wake)]
    }
}

/// A heartbeat error that ends the member, said in terms of what to do.
fn fatal(err: Error) -> Error {
    let advice = match err.code() {
        Some(KafkaCode::UNSUPPORTED_VERSION) => {
            "the broker does not speak the consumer group protocol (KIP-848, Kafka 4.0+ with \
             group.coordinator.rebalance.protocols including consumer); use group.protocol=classic"
        }
        Some(KafkaCode::UNSUPPORTED_ASSIGNOR) => {
            "the broker has no such group.remote.assignor; use uniform or range, or leave it unset"
        }
        Some(KafkaCode::UNRELEASED_INSTANCE_ID) => {
            "another member still holds this group.instance.id; stop it or use another id"
        }
        Some(KafkaCode::FENCED_INSTANCE_ID) => {
            "another member joined with this group.instance.id; each instance needs its own"
        }
        Some(KafkaCode::GROUP_MAX_SIZE_REACHED) => {
            "the group is full (group.consumer.max.size); add no more members"
        }
        Some(KafkaCode::INVALID_REGULAR_EXPRESSION) => {
            "the broker rejected the topic regex (it uses RE2/J syntax)"
        }
        Some(KafkaCode::GROUP_ID_NOT_FOUND) => {
            "the group exists under the classic protocol with members that cannot move; \
             use group.protocol=classic or another group.id"
        }
        _ => "",
    };
    if advice.is_empty() {
        err
    } else {
        let message = format!("{err}: {advice}");
        Error::new(err.kind().clone(), message)
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
