//! Consumer-group administration: list the groups, describe one, compute its lag
//! (what `josefine groups list | describe | lag` print, and `kafka-consumer-groups.sh`
//! before them).
//!
//! - **ListGroups** (key 16) goes to every broker, because each lists only the groups
//!   it coordinates (the Java admin client's `listConsumerGroups` does the same). A
//!   broker that fails fails the call, with the broker in the error's context: a list
//!   silently missing one broker's groups would be worse than no list. The state
//!   comes with v4+ (KIP-518).
//! - **DescribeGroups** (key 15) goes to the group's coordinator ([`patiently`]): a
//!   coordinator that moved (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a lost
//!   connection) is looked up again, one that is loading (COORDINATOR_LOAD_IN_PROGRESS)
//!   asked again, with backoff, until `request.timeout.ms` has passed: a cluster that
//!   has just started answers both for a few seconds, as Kafka 4.4 showed. A group
//!   that does not exist is `Dead` with no members, as Kafka reports it: state "Dead"
//!   with no error up to v5, GROUP_ID_NOT_FOUND from v6 (KIP-1043). Members' metadata
//!   and assignments are decoded as the consumer protocol when the protocol type is
//!   "consumer"; bytes that do not decode (or that the coordinator left empty, as it
//!   does while the group is not Stable) give empty lists, never an error.
//!   A group of the consumer protocol (KIP-848) is not a classic group: Kafka 4.x
//!   answers DescribeGroups for it with GROUP_ID_NOT_FOUND, so a group DescribeGroups
//!   calls missing is asked for again with **ConsumerGroupDescribe** (key 69, when the
//!   coordinator has it), which gives epochs, assignments by topic name and each
//!   member's target assignment.
//! - **Lag**: the committed offsets of every partition the group committed
//!   (OffsetFetch with a null topic list, v2+), joined with the partitions its members
//!   are assigned now (from DescribeGroups), against high watermarks read from Fetch
//!   responses ([`super::watermarks`]; ListOffsets LATEST is wrong on Tansu).
//!
//! - **DeleteGroups** (key 42) deletes a group without members, at its coordinator;
//!   moving a group's offsets is in [`super::reset`].
//! - **OffsetDelete** (key 47) removes a group's committed offsets for partitions
//!   nobody in the group is subscribed to (GROUP_SUBSCRIBED_TO_TOPIC otherwise), at
//!   the coordinator like DescribeGroups.
//!
//! Tansu 0.6 answers DescribeGroups without client ids, hosts, protocol, metadata or
//! assignments, and ListGroups with only the groups that have commits (see
//! `docs/DESIGN.md`, "Known limitations"): there members show no assignment and lag
//! rows no owner, but committed offsets and lag are complete.

use std::collections::BTreeMap;
use std::fmt;

use tokio::time::Instant;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as ConsumerAssignment, DescribedGroup as ConsumerDescribedGroup,
};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, OffsetDeleteRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::watermarks::high_watermarks;
use super::Admin;
use crate::backoff::jitter_unit;
use crate::client::Client;
use crate::error::{Error, ErrorKind, KafkaCode, Result};
use crate::group::consumer_protocol::{Assignment, Subscription, PROTOCOL_TYPE};
use crate::group::GroupProtocol;
use crate::net::Broker;
use crate::TopicPartition;

/// GROUP_ID_NOT_FOUND: DescribeGroups v6+ says so for a group that does not exist.
const GROUP_ID_NOT_FOUND: i16 = 69;

/// A group's state as the coordinator names it (Kafka's `GroupState`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// A rebalance started: waiting for the members to (re)join.
    PreparingRebalance,
    /// Everybody joined: waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment for the current generation.
    Stable,
    /// The group does not exist (never created, deleted, or expired).
    Dead,
    /// KIP-848 consumer groups: computing a new assignment.
    Assigning,
    /// KIP-848 consumer groups: members are moving to the new assignment.
    Reconciling,
    /// A name this client does not know, as the broker sent it.
    Unknown(String),
}

impl GroupState {
    /// Parses the wire name ("Stable", "PreparingRebalance", ...).
    pub(crate) fn from_wire(name: &str) -> Self {
        match name {
            "Empty" => Self::Empty,
            "PreparingRebalance" => Self::PreparingRebalance,
            "CompletingRebalance" => Self::CompletingRebalance,
            "Stable" => Self::Stable,
            "Dead" => Self::Dead,
            "Assigning" => Self::Assigning,
            "Reconciling" => Self::Reconciling,
            other => Self::Unknown(other.to_string()),
        }
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
            Self::Assigning => "Assigning",
            Self::Reconciling => "Reconciling",
            Self::Unknown(name) => name,
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One group of [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupListing {
    /// The group id (`group.id`).
    pub group_id: String,
    /// "consumer" for consumer groups; "connect" and others for other clients; empty
    /// for a group that only holds committed offsets.
    pub protocol_type: String,
    /// From ListGroups v4+ (KIP-518); `None` from older brokers.
    pub state: Option<GroupState>,
    /// The node id of the broker that listed it, its coordinator.
    pub coordinator: Option<i32>,
}

/// A group as [`Admin::describe_group`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDescription {
    /// The group id (`group.id`).
    pub group_id: String,
    /// Which protocol the group runs: classic (JoinGroup/SyncGroup) or consumer
    /// (KIP-848).
    pub group_protocol: GroupProtocol,
    /// The group's state; [`GroupState::Dead`] for a group that does not exist.
    pub state: GroupState,
    /// "consumer" for consumer groups; empty for a group without members.
    pub protocol_type: String,
    /// The chosen protocol, for consumer groups the assignor ("range",
    /// "cooperative-sticky", ...; under the consumer protocol the broker's, such as
    /// "uniform"); for classic groups empty unless the group is Stable.
    pub protocol: String,
    /// The group's epoch (consumer protocol); `None` for classic groups.
    pub group_epoch: Option<i32>,
    /// The epoch of the group's target assignment (consumer protocol); `None` for classic
    /// groups.
    pub assignment_epoch: Option<i32>,
    /// The group's members, in the coordinator's order.
    pub members: Vec<MemberDescription>,
    /// The node id of the coordinator that answered.
    pub coordinator: Option<i32>,
}

/// One member of a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberDescription {
    /// The id the coordinator knows the member by.
    pub member_id: String,
    /// `group.instance.id` of a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The address the member connects from, as the broker sees it (`/10.0.0.7`).
    pub client_host: String,
    /// The member's partitions, sorted. Empty unless the group is Stable, the
    /// protocol type is "consumer" and the assignment decodes.
    pub assignment: Vec<TopicPartition>,
    /// The topics the member subscribed to, sorted; empty under the same conditions.
    pub subscribed_topics: Vec<String>,
    /// The consumer protocol: the member's regex subscription, if it has one; `None`
    /// for classic groups.
    pub subscribed_topic_regex: Option<String>,
    /// The consumer protocol: the member's epoch; `None` for classic groups.
    pub member_epoch: Option<i32>,
    /// The consumer protocol: the partitions the member is moving to, sorted (equal to
    /// `assignment` once it has reconciled); empty for classic groups.
    pub target_assignment: Vec<TopicPartition>,
}

/// A group's lag, as [`Admin::group_lag`] computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupLag {
    /// The group id (`group.id`).
    pub group_id: String,
    /// The group's state when the lag was computed.
    pub state: GroupState,
    /// Every partition with a commit or an owner, sorted by topic, then partition.
    pub partitions: Vec<PartitionLag>,
    /// The sum of the partitions' known lags.
    pub total_lag: i64,
}

/// One partition of a [`GroupLag`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next record it will read), if any.
    pub committed: Option<i64>,
    /// The partition's high watermark; `None` when the partition no longer exists
    /// (a deleted topic the group still has commits for).
    pub high_watermark: Option<i64>,
    /// `high_watermark - committed`, never below 0; `None` without both.
    pub lag: Option<i64>,
    /// The member the partition is assigned to now, if any.
    pub owner: Option<PartitionOwner>,
}

/// The member owning a partition in a [`PartitionLag`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionOwner {
    /// The id the coordinator knows the member by.
    pub member_id: String,
    /// The member's `client.id`.
    pub client_id: String,
    /// The address the member connects from, as the broker sees it.
    pub client_host: String,
}

fn wire(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Admin {
    /// Every group in the cluster, by group id: ListGroups at every broker. Fails if
    /// any broker fails (the error names it), rather than return a partial list.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.client.refresh_metadata(&[]).await?;
        let brokers = self.client.brokers();
        if brokers.is_empty() {
            return Err(Error::new(
                ErrorKind::NoBrokerAvailable,
                "metadata lists no broker to ask for groups",
            ));
        }
        let answers = futures::future::join_all(brokers.iter().map(list_groups_at)).await;
        let mut groups = Vec::new();
        for answer in answers {
            groups.extend(answer?);
        }
        // A group whose coordinator moves may be listed by both brokers for a moment.
        groups.sort_by(|a: &GroupListing, b| a.group_id.cmp(&b.group_id));
        groups.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(groups)
    }

    /// State, protocol and members of `group`, from its coordinator. A group that
    /// does not exist is [`GroupState::Dead`] with no members.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let describe = |broker: Broker| async move {
            let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(wire(group))]);
            let response = broker.call(&request).await?;
            let described = response
                .groups
                .into_iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| Error::protocol("DescribeGroups answered without the group"))?;
            describe(described, broker.id()).map_err(|e| e.with_broker(&broker))
        };
        let classic = patiently(&self.client, group, || {
            crate::group::at_coordinator(&self.client, group, describe)
        })
        .await
        .map_err(|e| e.with_group(group).with_api(ApiKey::DescribeGroups))?;
        if classic.state != GroupState::Dead {
            return Ok(classic);
        }
        let consumer = |broker: Broker| async move {
            let request =
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(wire(group))]);
            let response = match broker.call(&request).await {
                // A broker before Kafka 3.7 (or Tansu): no consumer groups there.
                Err(err) if err.code() == Some(KafkaCode::UNSUPPORTED_VERSION) => return Ok(None),
                other => other?,
            };
            let described = response
                .groups
                .into_iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| {
                    Error::protocol("ConsumerGroupDescribe answered without the group")
                })?;
            describe_consumer(described, broker.id()).map_err(|e| e.with_broker(&broker))
        };
        let described = patiently(&self.client, group, || {
            crate::group::at_coordinator(&self.client, group, consumer)
        })
        .await
        .map_err(|e| e.with_group(group).with_api(ApiKey::ConsumerGroupDescribe))?;
        Ok(described.unwrap_or(classic))
    }

    /// Deletes the offsets `group` committed for `partitions` (OffsetDelete), so that
    /// a member assigned one of them next starts at `auto.offset.reset`. Returns each
    /// partition's own outcome: GROUP_SUBSCRIBED_TO_TOPIC while a member of the group
    /// is subscribed to its topic (stop the group, or unsubscribe, first). A group
    /// that does not exist is GROUP_ID_NOT_FOUND for the whole call.
    pub async fn delete_committed_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            topics.entry(&tp.topic).or_default().push(tp.partition);
        }
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(wire(group)))
            .with_topics(
                topics
                    .iter()
                    .map(|(topic, ps)| {
                        OffsetDeleteRequestTopic::default()
                            .with_name(TopicName(wire(topic)))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        OffsetDeleteRequestPartition::default()
                                            .with_partition_index(*p)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let delete = |broker: Broker| {
            let request = request.clone();
            async move {
                let response = broker.call(&request).await?;
                Error::check_code(response.error_code).map_err(|e| e.with_broker(&broker))?;
                let mut outcomes = Vec::new();
                for topic in response.topics {
                    for p in topic.partitions {
                        let tp = TopicPartition::new(topic.name.0.as_str(), p.partition_index);
                        let result = Error::check_code(p.error_code).map_err(|e| {
                            e.with_topic(topic.name.0.as_str())
                                .with_partition(p.partition_index)
                        });
                        outcomes.push((tp, result));
                    }
                }
                Ok(outcomes)
            }
        };
        patiently(&self.client, group, || {
            crate::group::at_coordinator(&self.client, group, delete)
        })
        .await
        .map_err(|e| e.with_group(group).with_api(ApiKey::OffsetDelete))
    }

    /// Deletes `group` (DeleteGroups) with its committed offsets. Fails with
    /// NON_EMPTY_GROUP while it has members and GROUP_ID_NOT_FOUND when there is no
    /// such group.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(wire(group))]);
        let delete = |broker: Broker| {
            let request = request.clone();
            async move {
                let response = broker.call(&request).await?;
                for result in &response.results {
                    Error::check_code(result.error_code).map_err(|e| e.with_broker(&broker))?;
                }
                Ok(())
            }
        };
        patiently(&self.client, group, || {
            crate::group::at_coordinator(&self.client, group, delete)
        })
        .await
        .map_err(|e| e.with_group(group).with_api(ApiKey::DeleteGroups))
    }

    /// [`describe_group`](Self::describe_group) for each of `groups` (concurrently;
    /// each at its own coordinator), in the order given. The first failure fails all.
    pub async fn describe_groups(&self, groups: &[&str]) -> Result<Vec<GroupDescription>> {
        futures::future::join_all(groups.iter().map(|g| self.describe_group(g)))
            .await
            .into_iter()
            .collect()
    }

    /// The lag of `group` on every partition it has committed or is assigned now:
    /// committed offsets (OffsetFetch, all topics) against high watermarks (Fetch).
    /// A group that does not exist has no partitions.
    pub async fn group_lag(&self, group: &str) -> Result<GroupLag> {
        let (description, committed) = tokio::try_join!(
            self.describe_group(group),
            patiently(&self.client, group, || crate::group::fetch_all_committed(
                &self.client,
                group
            )),
        )?;

        let mut rows: BTreeMap<TopicPartition, (Option<i64>, Option<PartitionOwner>)> =
            BTreeMap::new();
        for (tp, offset) in committed {
            rows.entry(tp).or_default().0 = Some(offset);
        }
        for member in &description.members {
            for tp in &member.assignment {
                rows.entry(tp.clone()).or_default().1 = Some(PartitionOwner {
                    member_id: member.member_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                });
            }
        }
        let wanted: Vec<(TopicPartition, i64)> = rows
            .iter()
            .map(|(tp, (committed, _))| (tp.clone(), committed.unwrap_or(0)))
            .collect();
        let watermarks = high_watermarks(&self.client, &wanted)
            .await
            .map_err(|e| e.with_group(group))?;

        let partitions: Vec<PartitionLag> = rows
            .into_iter()
            .map(|(tp, (committed, owner))| {
                let high_watermark = watermarks.get(&tp).copied().flatten();
                PartitionLag {
                    lag: lag(committed, high_watermark),
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    committed,
                    high_watermark,
                    owner,
                }
            })
            .collect();
        let total_lag = partitions.iter().filter_map(|p| p.lag).sum();
        Ok(GroupLag {
            group_id: group.to_string(),
            state: description.state,
            partitions,
            total_lag,
        })
    }
}

/// An admin call at `group`'s coordinator (`attempt`, which goes through
/// [`crate::group::at_coordinator`] and so looks a moved coordinator up again once),
/// repeated with the client's retry backoff while the answer says the coordinator
/// moved, is not available or is loading, until `request.timeout.ms` has passed; then
/// that error, typed and retriable. The group runtime does not use this: it has its
/// own retries, aware of its session.
pub(crate) async fn patiently<T, F, Fut>(client: &Client, group: &str, attempt: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + client.inner_request_timeout();
    let mut failures = 0;
    loop {
        match attempt().await {
            Err(err) if coordinator_not_ready(&err) && Instant::now() < deadline => {
                failures += 1;
                let delay = client.retry_backoff().delay(failures, jitter_unit());
                tracing::debug!(group, error = %err, ?delay, "the coordinator is not ready; retrying");
                tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
            other => return other,
        }
    }
}

fn coordinator_not_ready(err: &Error) -> bool {
    err.is_connection_lost()
        || matches!(
            err.code(),
            Some(
                KafkaCode::NOT_COORDINATOR
                    | KafkaCode::COORDINATOR_NOT_AVAILABLE
                    | KafkaCode::COORDINATOR_LOAD_IN_PROGRESS
            )
        )
}

/// `high_watermark - committed`, never negative: a commit past the high watermark
/// (records deleted and re-created, or an admin's reset) means nothing to read.
fn lag(committed: Option<i64>, high_watermark: Option<i64>) -> Option<i64> {
    Some((high_watermark? - committed?).max(0))
}

/// ListGroups at one broker: the groups it coordinates.
async fn list_groups_at(broker: &Broker) -> Result<Vec<GroupListing>> {
    let (version, response) = broker
        .call_versioned(|_| ListGroupsRequest::default())
        .await
        .map_err(|e| e.with_api(ApiKey::ListGroups))?;
    Error::check_code(response.error_code)
        .map_err(|e| e.with_broker(broker).with_api(ApiKey::ListGroups))?;
    Ok(response
        .groups
        .into_iter()
        .map(|g| GroupListing {
            group_id: g.group_id.to_string(),
            protocol_type: g.protocol_type.to_string(),
            state: (version >= 4 && !g.group_state.is_empty())
                .then(|| GroupState::from_wire(&g.group_state)),
            coordinator: broker.id(),
        })
        .collect())
}

/// One group of a DescribeGroups response: its error, or its description.
fn describe(group: DescribedGroup, coordinator: Option<i32>) -> Result<GroupDescription> {
    let group_id = group.group_id.to_string();
    if group.error_code == GROUP_ID_NOT_FOUND {
        return Ok(GroupDescription {
            group_id,
            group_protocol: GroupProtocol::Classic,
            state: GroupState::Dead,
            protocol_type: String::new(),
            protocol: String::new(),
            group_epoch: None,
            assignment_epoch: None,
            members: Vec::new(),
            coordinator,
        });
    }
    Error::check_code(group.error_code).map_err(|e| match &group.error_message {
        Some(m) if !m.is_empty() => Error::new(e.kind().clone(), m.to_string()),
        _ => e,
    })?;
    let consumer = *group.protocol_type == *PROTOCOL_TYPE;
    let members = group
        .members
        .into_iter()
        .map(|m| {
            let (assignment, subscribed_topics) = if consumer {
                decode_member(&m.member_id, &m.member_metadata, &m.member_assignment)
            } else {
                (Vec::new(), Vec::new())
            };
            MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment,
                subscribed_topics,
                subscribed_topic_regex: None,
                member_epoch: None,
                target_assignment: Vec::new(),
            }
        })
        .collect();
    Ok(GroupDescription {
        group_id,
        group_protocol: GroupProtocol::Classic,
        state: GroupState::from_wire(&group.group_state),
        protocol_type: group.protocol_type.to_string(),
        protocol: group.protocol_data.to_string(),
        group_epoch: None,
        assignment_epoch: None,
        members,
        coordinator,
    })
}

/// One group of a ConsumerGroupDescribe response: `None` when it is not a consumer
/// group (GROUP_ID_NOT_FOUND: it does not exist, or is a classic one).
fn describe_consumer(
    group: ConsumerDescribedGroup,
    coordinator: Option<i32>,
) -> Result<Option<GroupDescription>> {
    if group.error_code == GROUP_ID_NOT_FOUND {
        return Ok(None);
    }
    Error::check_code(group.error_code).map_err(|e| match &group.error_message {
        Some(m) if !m.is_empty() => Error::new(e.kind().clone(), m.to_string()),
        _ => e,
    })?;
    let partitions = |a: &ConsumerAssignment| -> Vec<TopicPartition> {
        let mut tps: Vec<TopicPartition> = a
            .topic_partitions
            .iter()
            .flat_map(|t| {
                let topic: std::sync::Arc<str> = std::sync::Arc::from(t.topic_name.as_str());
                t.partitions
                    .iter()
                    .map(move |&p| TopicPartition::new(topic.clone(), p))
            })
            .collect();
        tps.sort();
        tps.dedup();
        tps
    };
    let members = group
        .members
        .iter()
        .map(|m| {
            let mut subscribed_topics: Vec<String> = m
                .subscribed_topic_names
                .iter()
                .map(|t| t.to_string())
                .collect();
            subscribed_topics.sort();
            MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.instance_id.as_ref().map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: partitions(&m.assignment),
                subscribed_topics,
                subscribed_topic_regex: m
                    .subscribed_topic_regex
                    .as_ref()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string()),
                member_epoch: Some(m.member_epoch),
                target_assignment: partitions(&m.target_assignment),
            }
        })
        .collect();
    Ok(Some(GroupDescription {
        group_id: group.group_id.to_string(),
        group_protocol: GroupProtocol::Consumer,
        state: GroupState::from_wire(&group.group_state),
        protocol_type: PROTOCOL_TYPE.to_string(),
        protocol: group.assignor_name.to_string(),
        group_epoch: Some(group.group_epoch),
        assignment_epoch: Some(group.assignment_epoch),
        members,
        coordinator,
    }))
}

/// A consumer's assignment and subscribed topics, each sorted; empty when the bytes
/// are empty (the group is not Stable) or do not decode.
fn decode_member(
    member_id: &str,
    metadata: &[u8],
    assignment: &[u8],
) -> (Vec<TopicPartition>, Vec<String>) {
    let mut partitions = if assignment.is_empty() {
        Vec::new()
    } else {
        Assignment::decode(assignment)
            .map(|a| a.partitions)
            .unwrap_or_else(|err| {
                tracing::debug!(member = member_id, error = %err, "undecodable member assignment");
                Vec::new()
            })
    };
    partitions.sort();
    partitions.dedup();
    let mut topics = if metadata.is_empty() {
        Vec::new()
    } else {
        Subscription::decode(metadata)
            .map(|s| s.topics)
            .unwrap_or_else(|err| {
                tracing::debug!(member = member_id, error = %err, "undecodable member subscription");
                Vec::new()
            })
    };
    topics.sort();
    topics.dedup();
    (partitions, topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KafkaCode;
    use kafka_protocol::messages::describe_groups_response::DescribedGroupMember;

    #[test]
    fn states_round_trip_and_keep_unknown_names() {
        for name in [
            "Empty",
            "PreparingRebalance",
            "CompletingRebalance",
            "Stable",
            "Dead",
            "Assigning",
            "Reconciling",
        ] {
            let state = GroupState::from_wire(name);
            assert!(!matches!(state, GroupState::Unknown(_)), "{name}");
            assert_eq!(state.as_str(), name);
        }
        assert_eq!(
            GroupState::from_wire("Weird"),
            GroupState::Unknown("Weird".into())
        );
        assert_eq!(GroupState::from_wire("Weird").to_string(), "Weird");
    }

    #[test]
    fn lag_needs_both_numbers_and_is_never_negative() {
        assert_eq!(lag(Some(3), Some(10)), Some(7));
        assert_eq!(lag(Some(12), Some(10)), Some(0));
        assert_eq!(lag(None, Some(10)), None);
        assert_eq!(lag(Some(3), None), None);
    }

    fn member(metadata: bytes::Bytes, assignment: bytes::Bytes) -> DescribedGroupMember {
        DescribedGroupMember::default()
            .with_member_id(wire("m-1"))
            .with_client_id(wire("c"))
            .with_client_host(wire("/127.0.0.1"))
            .with_member_metadata(metadata)
            .with_member_assignment(assignment)
    }

    fn group(protocol_type: &str, members: Vec<DescribedGroupMember>) -> DescribedGroup {
        DescribedGroup::default()
            .with_group_id(GroupId(wire("g")))
            .with_group_state(wire("Stable"))
            .with_protocol_type(wire(protocol_type))
            .with_protocol_data(wire("range"))
            .with_members(members)
    }

    #[test]
    fn consumer_members_are_decoded_sorted() {
        let subscription = Subscription::new(["b", "a"]).encode(3).unwrap();
        let assignment = Assignment::new(vec![
            TopicPartition::new("b", 1),
            TopicPartition::new("a", 2),
            TopicPartition::new("a", 0),
        ])
        .encode(3)
        .unwrap();
        let d = describe(
            group("consumer", vec![member(subscription, assignment)]),
            Some(2),
        )
        .unwrap();
        assert_eq!(d.state, GroupState::Stable);
        assert_eq!(d.protocol, "range");
        assert_eq!(d.coordinator, Some(2));
        let m = &d.members[0];
        assert_eq!(m.subscribed_topics, ["a", "b"]);
        assert_eq!(
            m.assignment,
            [
                TopicPartition::new("a", 0),
                TopicPartition::new("a", 2),
                TopicPartition::new("b", 1)
            ]
        );
    }

    #[test]
    fn undecodable_or_foreign_member_bytes_give_empty_lists() {
        let garbage = bytes::Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff, 0x7f]);
        let d = describe(
            group("consumer", vec![member(garbage.clone(), garbage.clone())]),
            None,
        )
        .unwrap();
        assert!(d.members[0].assignment.is_empty());
        assert!(d.members[0].subscribed_topics.is_empty());
        // Another protocol type's bytes are not ours to decode.
        let assignment = Assignment::new(vec![TopicPartition::new("a", 0)])
            .encode(0)
            .unwrap();
        let d = describe(
            group("connect", vec![member(bytes::Bytes::new(), assignment)]),
            None,
        )
        .unwrap();
        assert!(d.members[0].assignment.is_empty());
        assert_eq!(d.members[0].client_id, "c");
    }

    #[test]
    fn group_id_not_found_is_dead_and_other_codes_are_errors() {
        let d = describe(
            DescribedGroup::default()
                .with_group_id(GroupId(wire("g")))
                .with_error_code(GROUP_ID_NOT_FOUND),
            None,
        )
        .unwrap();
        assert_eq!(d.state, GroupState::Dead);
        assert!(d.members.is_empty());
        let err = describe(
            DescribedGroup::default()
                .with_group_id(GroupId(wire("g")))
                .with_error_code(KafkaCode::NOT_COORDINATOR.code()),
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some(KafkaCode::NOT_COORDINATOR));
        assert!(err.is_retriable());
    }
}
