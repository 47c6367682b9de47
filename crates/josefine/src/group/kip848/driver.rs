//! The consumer-protocol driver: runs the KIP-848 [`Membership`] state machine's
//! actions (ConsumerGroupHeartbeat, reconciliations, session starts and ends) and
//! feeds their outcomes back. It speaks to the session runner with the same commands
//! as the classic driver, so the runner sees only "a session with these partitions".
//!
//! A reconciliation or a session end is handed to the runner and awaited alongside
//! the heartbeat timer: the member keeps heartbeating while revoked claims drain.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::membership::{Action, Assignment, Heartbeat, Membership, Phase, Reply, Subscription};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::group::claims::Generation;
use crate::group::config::GroupConfig;
use crate::group::driver::{coordinator_error, millis, now, DriverCommand, SessionCommand};
use crate::group::membership::SessionEnd;
use crate::TopicPartition;

/// What the runner was asked and the driver awaits.
enum Pending {
    /// A reconciliation towards an assignment; `owned` is what the runner will have
    /// (the part whose topic ids resolved).
    Update {
        owned: Assignment,
        complete: bool,
        done: oneshot::Receiver<()>,
    },
    End(oneshot::Receiver<()>),
}

pub(crate) struct Driver {
    client: Client,
    config: Arc<GroupConfig>,
    subscription: Subscription,
    sessions: mpsc::Sender<SessionCommand>,
    commands: mpsc::Receiver<DriverCommand>,
    /// The running session's epoch, raised as heartbeats answer.
    generation: Option<Generation>,
    pending: VecDeque<Pending>,
    metrics: crate::metrics::GroupMetrics,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Driver {
    pub(crate) fn new(
        client: Client,
        config: Arc<GroupConfig>,
        subscription: Subscription,
        sessions: mpsc::Sender<SessionCommand>,
        commands: mpsc::Receiver<DriverCommand>,
        metrics: crate::metrics::GroupMetrics,
    ) -> Self {
        Self {
            client,
            config,
            subscription,
            sessions,
            commands,
            generation: None,
            pending: VecDeque::new(),
            metrics,
        }
    }

    pub(crate) async fn run(mut self, mut membership: Membership) {
        let mut state = self.metrics.state();
        let mut actions = membership.start(now());
        loop {
            state.set(membership.phase().name());
            if self.sessions.is_closed() {
                tracing::debug!(group = %self.config.group_id, "consume ended without close; driver stops");
                return;
            }
            let mut next = Vec::new();
            for action in actions {
                if matches!(action, Action::WaitUntil(_)) && !next.is_empty() {
                    continue;
                }
                next.extend(self.act(&mut membership, action).await);
            }
            match membership.phase() {
                Phase::Left => {
                    state.set(membership.phase().name());
                    let _ = self.sessions.send(SessionCommand::Closed).await;
                    return;
                }
                Phase::Failed if next.is_empty() => {
                    state.set(membership.phase().name());
                    return;
                }
                _ => {}
            }
            actions = if next.is_empty() {
                membership.poll(now())
            } else {
                next
            };
            if actions.is_empty() {
                actions = self.wait(&mut membership, None).await;
            }
        }
    }

    async fn act(&mut self, m: &mut Membership, action: Action) -> Vec<Action> {
        match action {
            Action::Heartbeat(heartbeat) => {
                let started = std::time::Instant::now();
                let span = tracing::trace_span!(
                    "heartbeat",
                    group = %self.config.group_id,
                    epoch = heartbeat.epoch,
                    full = heartbeat.full,
                );
                let outcome =
                    tracing::Instrument::instrument(self.heartbeat(&heartbeat), span).await;
                self.metrics.heartbeat(outcome.is_ok(), started.elapsed());
                if let (Ok(reply), Some(generation)) = (&outcome, &self.generation) {
                    generation.raise(reply.epoch);
                    self.metrics.generation.set(generation.get() as f64);
                }
                if let Err(err) = &outcome {
                    tracing::debug!(group = %self.config.group_id, error = %err, epoch = heartbeat.epoch, "consumer group heartbeat failed");
                }
                m.heartbeat_done(outcome, now())
            }
            Action::StartSession { member_id, epoch } => {
                tracing::info!(group = %self.config.group_id, member_id, epoch, "session starts (consumer protocol)");
                let generation = Generation::new(epoch);
                self.generation = Some(generation.clone());
                let _ = self
                    .sessions
                    .send(SessionCommand::Start {
                        member_id,
                        generation,
                        partitions: Vec::new(),
                    })
                    .await;
                Vec::new()
            }
            Action::Reconcile { epoch, assignment } => {
                let (partitions, owned, complete) = self.resolve(&assignment).await;
                tracing::info!(group = %self.config.group_id, epoch, partitions = partitions.len(), complete, "reconciling");
                let (done, updated) = oneshot::channel();
                let command = SessionCommand::Update {
                    generation: epoch,
                    partitions,
                    done,
                };
                if self.sessions.send(command).await.is_ok() {
                    self.pending.push_back(Pending::Update {
                        owned,
                        complete,
                        done: updated,
                    });
                }
                Vec::new()
            }
            Action::EndSession(why) => {
                let (done, ended) = oneshot::channel();
                if self
                    .sessions
                    .send(SessionCommand::End { why, done })
                    .await
                    .is_ok()
                {
                    self.pending.push_back(Pending::End(ended));
                } else {
                    return m.session_ended(now());
                }
                if why == SessionEnd::Lost {
                    self.generation = None;
                }
                Vec::new()
            }
            Action::Leave(heartbeat) => {
                match self.heartbeat(&heartbeat).await {
                    Ok(_) => {
                        tracing::info!(group = %self.config.group_id, epoch = heartbeat.epoch, "left the group")
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "leave heartbeat failed; the session timeout will remove us")
                    }
                }
                m.left();
                Vec::new()
            }
            Action::WaitUntil(at) => self.wait(m, Some(at)).await,
            Action::Fail(err) => {
                tracing::error!(group = %self.config.group_id, error = %err, "group member failed");
                let _ = self.sessions.send(SessionCommand::Failed(err)).await;
                Vec::new()
            }
        }
    }

    /// Waits for the deadline, a command, or the runner finishing what it was asked.
    async fn wait(&mut self, m: &mut Membership, until: Option<std::time::Instant>) -> Vec<Action> {
        let sleep = async {
            match until {
                Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        let pending = async {
            match self.pending.front_mut() {
                Some(Pending::Update { done, .. }) | Some(Pending::End(done)) => {
                    let _ = done.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => m.poll(now()),
            _ = self.sessions.closed() => Vec::new(),
            command = self.commands.recv() => match command {
                Some(DriverCommand::Close) | None => m.close(now()),
                Some(DriverCommand::Rejoin) => m.rejoin(now()),
                Some(DriverCommand::Stalled) => m.stalled(now()),
            },
            _ = pending => match self.pending.pop_front() {
                Some(Pending::Update { owned, complete, .. }) => m.reconciled(owned, complete, now()),
                Some(Pending::End(_)) => {
                    self.generation = None;
                    m.session_ended(now())
                }
                None => Vec::new(),
            },
        }
    }

    async fn heartbeat(&self, h: &Heartbeat) -> Result<Reply> {
        let config = &self.config;
        let group = &config.group_id;
        let timeout = self
            .client
            .inner_request_timeout()
            .min(config.session_timeout);
        let request = self.request(h);
        let result = async {
            let coordinator = self.client.coordinator(group).await?;
            coordinator.call_with_timeout(&request, timeout).await
        }
        .await;
        let response = result.map_err(|e| coordinator_error(&self.client, group, e))?;
        Error::check_code_with(response.error_code, response.error_message.as_deref())
            .map_err(|err| coordinator_error(&self.client, group, err))?;
        Ok(Reply {
            member_id: response.member_id.map(|id| id.to_string()),
            epoch: response.member_epoch,
            heartbeat_interval_ms: response.heartbeat_interval_ms,
            assignment: response.assignment.map(|a| {
                let mut by_topic: Assignment = BTreeMap::new();
                for t in a.topic_partitions {
                    let partitions = by_topic.entry(t.topic_id).or_default();
                    partitions.extend(t.partitions);
                }
                for partitions in by_topic.values_mut() {
                    partitions.sort_unstable();
                    partitions.dedup();
                }
                by_topic.retain(|_, p| !p.is_empty());
                by_topic
            }),
        })
    }

    fn request(&self, h: &Heartbeat) -> ConsumerGroupHeartbeatRequest {
        let config = &self.config;
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(sb(&config.group_id)))
            .with_member_id(sb(&h.member_id))
            .with_member_epoch(h.epoch)
            .with_instance_id(h.instance_id.as_deref().map(sb))
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(h.owned.as_ref().map(|owned| {
                owned
                    .iter()
                    .map(|(id, partitions)| {
                        TopicPartitions::default()
                            .with_topic_id(*id)
                            .with_partitions(partitions.clone())
                    })
                    .collect()
            }));
        if h.full {
            request = request
                .with_rebalance_timeout_ms(millis(config.rebalance_timeout))
                .with_server_assignor(config.remote_assignor.as_deref().map(sb));
            request = match &self.subscription {
                Subscription::Topics(topics) => request.with_subscribed_topic_names(Some(
                    topics.iter().map(|t| TopicName(sb(t))).collect(),
                )),
                // Version 0 has no regex field: a broker without version 1 gets no
                // request (the encoder refuses it) and the error says so.
                Subscription::Regex(regex) => request.with_subscribed_topic_regex(Some(sb(regex))),
            };
        }
        request
    }

    /// The partitions of `assignment` by name, as far as their topic ids resolve
    /// (metadata is refreshed once for unknown ids); the resolved part; whether all did.
    async fn resolve(&self, assignment: &Assignment) -> (Vec<TopicPartition>, Assignment, bool) {
        let names = |md: &crate::ClusterMetadata| -> HashMap<Uuid, String> {
            md.topics
                .values()
                .filter_map(|t| t.topic_id.map(|id| (id, t.name.clone())))
                .collect()
        };
        let mut known = names(&self.client.metadata());
        if assignment.keys().any(|id| !known.contains_key(id)) {
            let refreshed = match &self.subscription {
                Subscription::Topics(topics) => {
                    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                    self.client.refresh_metadata(&topics).await
                }
                Subscription::Regex(_) => self.client.refresh_all_metadata().await,
            };
            match refreshed {
                Ok(md) => known = names(&md),
                Err(err) => tracing::debug!(error = %err, "metadata refresh for topic ids failed"),
            }
        }
        let mut partitions = Vec::new();
        let mut owned = Assignment::new();
        let mut complete = true;
        for (id, ps) in assignment {
            match known.get(id) {
                Some(name) => {
                    let topic: Arc<str> = Arc::from(name.as_str());
                    partitions.extend(ps.iter().map(|&p| TopicPartition::new(topic.clone(), p)));
                    owned.insert(*id, ps.clone());
                }
                None => {
                    tracing::info!(group = %self.config.group_id, topic_id = %id, "assigned a topic id not in metadata yet; kept pending");
                    complete = false;
                }
            }
        }
        (partitions, owned, complete)
    }
}
