//! ConsumerGroupHeartbeat (key 68): a member of a consumer-protocol group
//! (KIP-848) joins, heartbeats, reports what it owns, learns its epoch and
//! assignment, and leaves.
//!
//! The handler reads the cluster's topics (names, ids, partition counts)
//! first, releases that lock, and hands the request to the coordinator with
//! them (see [`crate::group::consumer`] for the semantics); partitions travel
//! by topic id on the wire and by name inside the coordinator. Owned
//! partitions of a topic id the cluster does not know are left out.
//!
//! Answers, in Kafka's order: INVALID_REQUEST for a request that breaks the
//! protocol's rules (an empty member id at v1+ or above epoch 0, an empty
//! group or instance id, a join without rebalance timeout, subscription or
//! an empty owned list, epoch -2 without instance id, an epoch below -2),
//! UNSUPPORTED_ASSIGNOR, then NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//! then GROUP_ID_NOT_FOUND (a classic group with members, or no group for a
//! heartbeat above epoch 0), UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
//! UNRELEASED_INSTANCE_ID, FENCED_MEMBER_EPOCH, INVALID_REGULAR_EXPRESSION.
//! Errors carry Kafka's message. v0 members may join with an empty member
//! id and get one made by the broker; v1 adds the regex subscription.
//!
//! The version checks, decoding and [`Action::Error`](crate::Action::Error)
//! (a top-level error code) are the dispatcher's; this API has its own
//! `serve` only because the member's host, which ConsumerGroupDescribe
//! shows, is the connection's peer address.

use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::{Mode, Refusal, Reply};
use crate::broker::Node;
use crate::coordinator;
use crate::group::consumer::{HeartbeatRequest, TopicMeta, Topics};
use crate::group::uniform::Partitions;

pub(crate) async fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
    peer: SocketAddr,
) -> Result<Reply, Refusal> {
    let version = header.request_api_version;
    let request = super::decode_for::<ConsumerGroupHeartbeatRequest>(node, header, body, mode)?;
    let response = match mode {
        Mode::Normal => {
            let client_id = header
                .client_id
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default();
            handle(node, request, version, client_id, peer)
        }
        Mode::Error(code) => ConsumerGroupHeartbeatResponse::default().with_error_code(code),
    };
    super::encode_response(header.correlation_id, version, &response).map(Reply::Frame)
}

/// The cluster's topics, as the coordinator needs them.
pub(crate) fn topics(node: &Node) -> Topics {
    node.state()
        .topics
        .iter()
        .map(|(name, topic)| {
            let partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
            let meta = TopicMeta {
                id: topic.id,
                partitions,
            };
            (name.clone(), meta)
        })
        .collect()
}

/// Partitions by name as the wire's topic-id lists, sorted by topic name;
/// topics no longer in `topics` are left out.
pub(crate) fn by_id(
    partitions: &Partitions,
    topics: &Topics,
) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
    let mut out: Vec<(uuid::Uuid, String, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        let Some(meta) = topics.get(topic) else {
            continue;
        };
        match out.last_mut() {
            Some((_, name, list)) if name == topic => list.push(*partition),
            _ => out.push((meta.id, topic.clone(), vec![*partition])),
        }
    }
    out
}

fn handle(
    node: &Node,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
    peer: SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let topics = topics(node);
    let heartbeat = HeartbeatRequest {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|i| i.to_string()),
        rack_id: request.rack_id.map(|r| r.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: if version >= 1 {
            request.subscribed_topic_regex.map(|r| r.to_string())
        } else {
            None
        },
        server_assignor: request.server_assignor.map(|a| a.to_string()),
        owned: request.topic_partitions.map(|owned| {
            owned
                .into_iter()
                .map(|t| (t.topic_id, t.partitions))
                .collect()
        }),
        client_id,
        // Kafka shows the address as Java's InetAddress prints it.
        client_host: format!("/{}", peer.ip()),
        version,
    };
    let (group, member, epoch) = (
        heartbeat.group_id.clone(),
        heartbeat.member_id.clone(),
        heartbeat.member_epoch,
    );
    let result = coordinator::with(&node.shared, |c, now| {
        c.consumer_heartbeat(node.node_id, now, heartbeat, &topics)
    });
    match result {
        Ok(answer) => {
            tracing::debug!(
                %group,
                member = %answer.member_id,
                sent_epoch = epoch,
                epoch = answer.member_epoch,
                assignment = ?answer.assignment,
                "consumer group heartbeat"
            );
            let assignment = answer.assignment.map(|partitions| {
                let topic_partitions = by_id(&partitions, &topics)
                    .into_iter()
                    .map(|(id, _, partitions)| {
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(partitions)
                    })
                    .collect();
                Assignment::default().with_topic_partitions(topic_partitions)
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(answer.member_id)))
                .with_member_epoch(answer.member_epoch)
                .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
                .with_assignment(assignment)
        }
        Err(failure) => {
            tracing::debug!(%group, %member, epoch, error = failure.code, message = %failure.message, "consumer group heartbeat refused");
            let message =
                (!failure.message.is_empty()).then(|| StrBytes::from_string(failure.message));
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(failure.code)
                .with_error_message(message)
        }
    }
}
