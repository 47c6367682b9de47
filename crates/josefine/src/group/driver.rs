//! The membership driver: a task that runs the [`Membership`] state machine's actions
//! against the coordinator (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) and tells the session runner when a session starts and must end.
//!
//! Heartbeats come from this task, never from the user's handler, so slow processing
//! cannot stall them (KIP-62). JoinGroup waits up to the rebalance timeout, so its
//! request timeout is that plus the usual margin.
//!
//! JoinGroup and SyncGroup go on a coordinator connection of the member's own (its
//! rebalance link). The coordinator holds both until the group has (re)joined, and a
//! broker answers one connection's requests in order: on the client's shared
//! coordinator connection they would hold up this member's commits, heartbeats and
//! LeaveGroup, and every other group of the client at that coordinator.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::assignor::{
    by_name, encode_assignments, join_subscription, joined_member, Assignor, Member,
};
use super::claims::Generation;
use super::config::GroupConfig;
use super::consumer_protocol::{Assignment, MAX_VERSION, PROTOCOL_TYPE};
use super::errors::ErrorSink;
use super::membership::{Action, JoinOutcome, JoinedMember, Membership, SessionEnd};
use crate::client::Client;
use crate::error::{Error, ErrorKind, KafkaCode, Result};
use crate::net::Broker;
use crate::TopicPartition;

/// What the driver tells the session runner.
#[derive(Debug)]
pub(crate) enum SessionCommand {
    /// A session starts with these claims; the driver raises `generation` as the
    /// coordinator answers (KIP-848's member epoch).
    Start {
        member_id: String,
        generation: Generation,
        partitions: Vec<TopicPartition>,
    },
    /// Cooperative: a rebalance started; the session goes on, commits wait.
    Rebalancing,
    /// Cooperative: the session's new assignment. Stop the claims it lacks (committing
    /// first), start the new ones, then answer on `done`.
    Update {
        generation: i32,
        partitions: Vec<TopicPartition>,
        done: oneshot::Sender<()>,
    },
    /// End the session; answer on `done` once claims are released (and, unless
    /// `Lost`, offsets committed).
    End {
        why: SessionEnd,
        done: oneshot::Sender<()>,
    },
    /// The member cannot continue.
    Failed(Error),
    /// Left the group after a close.
    Closed,
}

/// What the session runner tells the driver.
#[derive(Debug)]
pub(crate) enum DriverCommand {
    Close,
    /// Rebalance (a subscribed topic changed).
    Rejoin,
    /// A handler kept a record past `max.poll.interval.ms`: leave the group.
    Stalled,
}

pub(crate) struct Driver {
    pub client: Client,
    pub config: Arc<GroupConfig>,
    pub topics: Vec<String>,
    pub assignors: Vec<Arc<dyn Assignor>>,
    pub sessions: mpsc::Sender<SessionCommand>,
    pub commands: mpsc::Receiver<DriverCommand>,
    /// Commands that came during a JoinGroup round trip, other than a close: applied,
    /// in order, once it is over.
    pub deferred: VecDeque<DriverCommand>,
    /// The connection JoinGroup and SyncGroup go on, to the coordinator they last went
    /// to (see the module docs). `None` before the first join and after a join given
    /// up for a close: dropping it closes the connection the coordinator may still
    /// hold that join on. Locked only to read or replace it, never across an await.
    pub rebalance_link: std::sync::Mutex<Option<Broker>>,
    /// The partitions of the last assignment, and its generation: cooperative members
    /// report them as owned; sticky assignors put them in their user data.
    pub owned: Vec<TopicPartition>,
    pub owned_generation: i32,
    pub cooperative: bool,
    pub errors: ErrorSink,
    /// The protocol (assignor) the last JoinGroup chose: SyncGroup v5+ must name it.
    pub protocol: Option<String>,
    pub metrics: crate::metrics::GroupMetrics,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Driver {
    pub(super) async fn run(mut self, mut membership: Membership) {
        let mut state = self.metrics.state();
        let mut actions = membership.start(now());
        loop {
            state.set(membership.phase().name());
            // The `consume` future was dropped without `close`: stop like a crashed
            // member (no LeaveGroup; the coordinator evicts us after the session timeout).
            if self.sessions.is_closed() {
                tracing::debug!(group = %self.config.group_id, "consume ended without close; driver stops");
                return;
            }
            let mut next = Vec::new();
            for action in actions {
                // A wait planned before the actions just taken is stale: they already
                // asked the state machine what comes next (and a heartbeat it planned
                // meanwhile must not sit behind the old wait, up to a session timeout).
                if matches!(action, Action::WaitUntil(_)) && !next.is_empty() {
                    continue;
                }
                next.extend(self.act(&mut membership, action).await);
            }
            if membership.phase() == super::membership::Phase::Left {
                state.set(membership.phase().name());
                let _ = self.sessions.send(SessionCommand::Closed).await;
                return;
            }
            if membership.phase() == super::membership::Phase::Failed && next.is_empty() {
                state.set(membership.phase().name());
                return;
            }
            actions = if next.is_empty() {
                membership.poll(now())
            } else {
                next
            };
            if actions.is_empty() {
                // Nothing scheduled (e.g. waiting for a session to end): wait for a command.
                let command = match self.deferred.is_empty() {
                    true => self.commands.recv().await,
                    false => self.deferred.pop_front(),
                };
                actions = apply(&mut membership, command);
            }
        }
    }

    async fn act(&mut self, m: &mut Membership, action: Action) -> Vec<Action> {
        let group = self.config.group_id.clone();
        match action {
            Action::FindCoordinator => match tracing::Instrument::instrument(
                self.client.coordinator(&group),
                tracing::debug_span!("find_coordinator", group = %group),
            )
            .await
            {
                Ok(_) => m.coordinator_found(now()),
                Err(err) => m.coordinator_failed(&err, now()),
            },
            Action::Join { member_id } => {
                let span = tracing::debug_span!("join", group = %group, member_id = %member_id);
                // A close gives the join up: the member leaves at once rather than
                // after the rebalance. A running (cooperative) session ends first,
                // committing on the shared connection the held join does not occupy.
                let mut commands = std::mem::replace(&mut self.commands, mpsc::channel(1).1);
                let mut deferred = std::mem::take(&mut self.deferred);
                let join = tracing::Instrument::instrument(self.join(&member_id), span);
                let outcome = unless_closed(&mut commands, &mut deferred, join).await;
                (self.commands, self.deferred) = (commands, deferred);
                let Some(outcome) = outcome else {
                    *lock(&self.rebalance_link) = None;
                    return m.close(now());
                };
                if let JoinOutcome::Joined { protocol, .. } = &outcome {
                    self.protocol = protocol.clone();
                }
                m.joined(outcome, now())
            }
            Action::Assign { protocol, members } => {
                match self.assign(protocol.as_deref(), &members).await {
                    Ok(plan) => m.assigned(plan, now()),
                    Err(err) => {
                        self.errors.report(
                            "assignment failed; members get nothing this generation",
                            err,
                        );
                        m.assigned(Vec::new(), now())
                    }
                }
            }
            Action::Sync {
                member_id,
                generation,
                assignments,
            } => {
                let span = tracing::debug_span!("sync", group = %group, member_id = %member_id, generation);
                // Not given up for a close: the coordinator answers SyncGroup once the
                // leader's assignment is in, and a leader that gave its own up would
                // leave the others waiting in theirs.
                let sync = self.sync(&member_id, generation, assignments);
                let outcome = tracing::Instrument::instrument(sync, span).await;
                m.synced(outcome, now())
            }
            Action::StartSession {
                member_id,
                generation,
                assignment,
            } => {
                let partitions = self.decode_assignment(&assignment);
                tracing::info!(group = %group, member_id, generation, partitions = partitions.len(), "session starts");
                self.owned = partitions.clone();
                self.owned_generation = generation;
                let _ = self
                    .sessions
                    .send(SessionCommand::Start {
                        member_id,
                        generation: Generation::new(generation),
                        partitions,
                    })
                    .await;
                Vec::new()
            }
            Action::SessionRebalancing => {
                let _ = self.sessions.send(SessionCommand::Rebalancing).await;
                Vec::new()
            }
            Action::UpdateSession {
                generation,
                assignment,
            } => {
                let partitions = self.decode_assignment(&assignment);
                let assigned: HashSet<&TopicPartition> = partitions.iter().collect();
                let revoked = self.owned.iter().any(|tp| !assigned.contains(tp));
                tracing::info!(group = %group, generation, partitions = partitions.len(), revoked, "session updated");
                self.owned = partitions.clone();
                self.owned_generation = generation;
                let (done, updated) = oneshot::channel();
                let command = SessionCommand::Update {
                    generation,
                    partitions,
                    done,
                };
                let mut last_heartbeat = None;
                if self.sessions.send(command).await.is_ok() {
                    let member_id = m.member_id().to_string();
                    last_heartbeat = self.heartbeat_until(updated, &member_id, generation).await;
                }
                m.session_updated(revoked, last_heartbeat, now())
            }
            Action::EndSession(why) => {
                let (done, ended) = oneshot::channel();
                if self
                    .sessions
                    .send(SessionCommand::End { why, done })
                    .await
                    .is_ok()
                {
                    if why == SessionEnd::Lost {
                        let _ = ended.await;
                    } else {
                        let (member_id, generation) = (m.member_id().to_string(), m.generation());
                        let _ = self.heartbeat_until(ended, &member_id, generation).await;
                    }
                }
                if why == SessionEnd::Lost {
                    self.owned.clear();
                    self.owned_generation = -1;
                }
                m.session_ended(now())
            }
            Action::Heartbeat {
                member_id,
                generation,
            } => {
                let outcome = self.heartbeat(&member_id, generation).await;
                m.heartbeat_done(outcome, now())
            }
            Action::Leave { member_id } => {
                if let Err(err) = self.leave(&member_id).await {
                    tracing::debug!(error = %err, "LeaveGroup failed; the session timeout will remove us");
                }
                m.left();
                Vec::new()
            }
            Action::WaitUntil(_) if !self.deferred.is_empty() => {
                let command = self.deferred.pop_front();
                apply(m, command)
            }
            Action::WaitUntil(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(Instant::from_std(at)) => m.poll(now()),
                    _ = self.sessions.closed() => Vec::new(),
                    command = self.commands.recv() => apply(m, command),
                }
            }
            Action::Fail(err) => {
                tracing::error!(group = %group, error = %err, "group member failed");
                let _ = self.sessions.send(SessionCommand::Failed(err)).await;
                Vec::new()
            }
        }
    }

    /// The member's own connection to the group's coordinator, opened anew when the
    /// coordinator moved.
    async fn rebalance_link(&self) -> Result<Broker> {
        let coordinator = self.client.coordinator(&self.config.group_id).await?;
        let mut link = lock(&self.rebalance_link);
        match &*link {
            Some(l) if l.id() == coordinator.id() && l.addr() == coordinator.addr() => {
                Ok(l.clone())
            }
            _ => {
                let new = self.client.dedicated(&coordinator);
                *link = Some(new.clone());
                Ok(new)
            }
        }
    }

    async fn join(&self, member_id: &str) -> JoinOutcome {
        let config = &self.config;
        let mut protocols = Vec::new();
        for assignor in &self.assignors {
            let subscription = join_subscription(
                assignor.as_ref(),
                &self.topics,
                &self.owned,
                self.owned_generation,
                self.cooperative,
            );
            match subscription.encode(MAX_VERSION) {
                Ok(metadata) => protocols.push(
                    JoinGroupRequestProtocol::default()
                        .with_name(sb(assignor.name()))
                        .with_metadata(metadata),
                ),
                Err(err) => {
                    return JoinOutcome::Failed(Error::config(format!("subscription: {err}")))
                }
            }
        }
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(sb(&config.group_id)))
            .with_session_timeout_ms(millis(config.session_timeout))
            .with_rebalance_timeout_ms(millis(config.rebalance_timeout))
            .with_member_id(sb(member_id))
            .with_group_instance_id(config.instance_id.as_deref().map(sb))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(protocols);
        let timeout = config.rebalance_timeout + Duration::from_secs(5);
        let result = async {
            let link = self.rebalance_link().await?;
            link.call_with_timeout(&request, timeout).await
        };
        let response = match result.await {
            Ok(r) => r,
            Err(err) => return JoinOutcome::Failed(self.coordinator_error(err)),
        };
        match KafkaCode::from_code(response.error_code) {
            None => JoinOutcome::Joined {
                member_id: response.member_id.to_string(),
                generation: response.generation_id,
                protocol: response.protocol_name.map(|p| p.to_string()),
                leader_id: response.leader.to_string(),
                members: response
                    .members
                    .into_iter()
                    .map(|m| JoinedMember {
                        member_id: m.member_id.to_string(),
                        instance_id: m.group_instance_id.map(|i| i.to_string()),
                        metadata: m.metadata,
                    })
                    .collect(),
            },
            Some(KafkaCode::MEMBER_ID_REQUIRED) => {
                JoinOutcome::MemberIdRequired(response.member_id.to_string())
            }
            Some(code) => JoinOutcome::Failed(self.coordinator_error(Error::kafka(code))),
        }
    }

    async fn assign(
        &self,
        protocol: Option<&str>,
        members: &[JoinedMember],
    ) -> Result<Vec<(String, Bytes)>> {
        let name = protocol.unwrap_or("range");
        let assignor = self
            .assignors
            .iter()
            .find(|a| a.name() == name)
            .cloned()
            .or_else(|| by_name(name))
            .ok_or_else(|| {
                Error::config(format!(
                    "the group chose assignor {name:?}, which this member does not have"
                ))
            })?;
        let members: Vec<Member> = members
            .iter()
            .map(|m| joined_member(&m.member_id, m.instance_id.clone(), &m.metadata))
            .collect();
        let mut topics: Vec<String> = members
            .iter()
            .flat_map(|m| m.subscription.topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let metadata = self.client.refresh_metadata(&names).await?;
        let counts = topics
            .iter()
            .filter_map(|t| {
                metadata
                    .topic(t)
                    .filter(|m| m.error.is_none())
                    .map(|m| (t.clone(), m.partitions.len() as i32))
            })
            .collect();
        let plan = assignor
            .assign(&members, &counts)
            .map_err(|e| Error::new(ErrorKind::Config, format!("assignor {name}: {e}")))?;
        encode_assignments(plan).map_err(|e| Error::protocol(format!("assignment: {e}")))
    }

    async fn sync(
        &self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes> {
        let config = &self.config;
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(sb(&config.group_id)))
            .with_generation_id(generation)
            .with_member_id(sb(member_id))
            .with_group_instance_id(config.instance_id.as_deref().map(sb))
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(self.protocol.as_deref().map(sb))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(sb(&member))
                            .with_assignment(assignment)
                    })
                    .collect(),
            );
        let timeout = config.rebalance_timeout + Duration::from_secs(5);
        let response = async {
            let link = self.rebalance_link().await?;
            link.call_with_timeout(&request, timeout).await
        }
        .await
        .map_err(|e| self.coordinator_error(e))?;
        Error::check_code(response.error_code).map_err(|e| self.coordinator_error(e))?;
        Ok(response.assignment)
    }

    async fn heartbeat(&self, member_id: &str, generation: i32) -> Result<()> {
        let started = std::time::Instant::now();
        let span = tracing::trace_span!(
            "heartbeat",
            group = %self.config.group_id,
            member_id = %member_id,
            generation,
        );
        let result =
            tracing::Instrument::instrument(self.send_heartbeat(member_id, generation), span).await;
        self.metrics.heartbeat(result.is_ok(), started.elapsed());
        result
    }

    async fn send_heartbeat(&self, member_id: &str, generation: i32) -> Result<()> {
        let config = &self.config;
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(sb(&config.group_id)))
            .with_generation_id(generation)
            .with_member_id(sb(member_id))
            .with_group_instance_id(config.instance_id.as_deref().map(sb));
        let response = async {
            let coordinator = self.client.coordinator(&config.group_id).await?;
            coordinator
                .call_with_timeout(&request, config.session_timeout)
                .await
        }
        .await
        .map_err(|e| self.coordinator_error(e))?;
        Error::check_code(response.error_code).map_err(|e| self.coordinator_error(e))
    }

    /// Heartbeats until `ended` resolves: while the handler gives its claims back we
    /// are still a member, and Kafka renews the session of a member that heartbeats
    /// while the group prepares a rebalance (answering REBALANCE_IN_PROGRESS). So a
    /// handler may take up to the rebalance timeout, not the session timeout, to
    /// finish (KIP-62; the Java client's heartbeat thread does the same). Returns the
    /// last heartbeat's outcome, if one was sent.
    async fn heartbeat_until(
        &self,
        ended: oneshot::Receiver<()>,
        member_id: &str,
        generation: i32,
    ) -> Option<Result<()>> {
        tokio::pin!(ended);
        let mut ticker = tokio::time::interval(self.config.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut last = None;
        loop {
            tokio::select! {
                _ = &mut ended => return last,
                _ = ticker.tick() => {
                    let outcome = self.heartbeat(member_id, generation).await;
                    if let Err(err) = &outcome {
                        tracing::debug!(error = %err, "heartbeat while claims change hands");
                    }
                    last = Some(outcome);
                }
            }
        }
    }

    /// The partitions of a SyncGroup assignment; an undecodable one counts as empty
    /// (and is reported: the leader is broken, the next rebalance may fix it).
    fn decode_assignment(&self, assignment: &[u8]) -> Vec<TopicPartition> {
        match Assignment::decode(assignment) {
            Ok(a) => a.partitions,
            Err(err) => {
                self.errors.report(
                    "undecodable assignment, treated as empty",
                    Error::protocol(format!("assignment: {err}")).with_group(&self.config.group_id),
                );
                Vec::new()
            }
        }
    }

    async fn leave(&self, member_id: &str) -> Result<()> {
        let config = &self.config;
        let coordinator = self.client.coordinator(&config.group_id).await?;
        let (_, response) = coordinator
            .call_versioned(|version| {
                let request =
                    LeaveGroupRequest::default().with_group_id(GroupId(sb(&config.group_id)));
                if version >= 3 {
                    request.with_members(vec![MemberIdentity::default()
                        .with_member_id(sb(member_id))
                        .with_group_instance_id(config.instance_id.as_deref().map(sb))])
                } else {
                    request.with_member_id(sb(member_id))
                }
            })
            .await?;
        Error::check_code(response.error_code)
    }

    fn coordinator_error(&self, err: Error) -> Error {
        coordinator_error(&self.client, &self.config.group_id, err)
    }
}

/// Drops the cached coordinator when the error says it moved, so the next lookup asks
/// again.
pub(crate) fn coordinator_error(client: &Client, group: &str, err: Error) -> Error {
    if err.is_connection_lost()
        || matches!(
            err.code(),
            Some(KafkaCode::NOT_COORDINATOR | KafkaCode::COORDINATOR_NOT_AVAILABLE)
        )
    {
        client.invalidate_coordinator(group);
    }
    err.with_group(group)
}

/// A command from the session runner, as a state machine event.
/// Awaits `round_trip` (a JoinGroup, which the coordinator holds until the group's
/// members have joined, up to the rebalance timeout), unless a close comes first:
/// `None` then, the round trip dropped, so a closing member leaves at once rather
/// than after the rebalance. An answer already in wins over a close (it may carry
/// the member id the LeaveGroup needs). Other commands wait in `deferred`.
async fn unless_closed<T>(
    commands: &mut mpsc::Receiver<DriverCommand>,
    deferred: &mut VecDeque<DriverCommand>,
    round_trip: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(round_trip);
    loop {
        tokio::select! {
            biased;
            outcome = &mut round_trip => return Some(outcome),
            command = commands.recv() => match command {
                Some(DriverCommand::Close) | None => return None,
                Some(other) => deferred.push_back(other),
            },
        }
    }
}

fn apply(m: &mut Membership, command: Option<DriverCommand>) -> Vec<Action> {
    match command {
        Some(DriverCommand::Close) | None => m.close(now()),
        Some(DriverCommand::Rejoin) => m.rejoin(now()),
        Some(DriverCommand::Stalled) => m.stalled(now()),
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn now() -> std::time::Instant {
    Instant::now().into_std()
}

pub(crate) fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
