//! SyncGroup (key 14): the leader hands in the assignment; every member
//! gets its own share.
//!
//! During CompletingRebalance a follower's SyncGroup waits for the leader's
//! (holding up its own connection only); the leader's completes every
//! waiting one and makes the group Stable. If the leader never syncs within
//! the rebalance timeout, the coordinator removes it and rebalances, and the
//! waiting followers get REBALANCE_IN_PROGRESS. In Stable the member's
//! current assignment comes back at once.
//!
//! Errors: an empty group id is INVALID_GROUP_ID; from v5 the protocol type
//! and name are mandatory, else INCONSISTENT_GROUP_PROTOCOL (checked first,
//! as Kafka's request handler does), as is a type or name other than the
//! group's; then NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//! UNKNOWN_MEMBER_ID (also for an empty group), FENCED_INSTANCE_ID (v3+),
//! ILLEGAL_GENERATION, and REBALANCE_IN_PROGRESS when a new rebalance
//! started.

use bytes::Bytes;
use kafka_protocol::messages::{RequestHeader, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Mode, Refusal, Reply};
use crate::broker::Node;
use crate::coordinator;
use crate::group::{SyncRequest, SyncResponse, INCONSISTENT_GROUP_PROTOCOL};

pub(crate) async fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
) -> Result<Reply, Refusal> {
    let version = header.request_api_version;
    let request = super::decode_for::<SyncGroupRequest>(node, header, body, mode)?;
    let response = match mode {
        Mode::Normal => encode(sync(node, request, version).await),
        Mode::Error(code) => encode(SyncResponse::error(code)),
    };
    super::encode_response(header.correlation_id, version, &response).map(Reply::Frame)
}

async fn sync(node: &Node, request: SyncGroupRequest, version: i16) -> SyncResponse {
    if version >= 5 && (request.protocol_type.is_none() || request.protocol_name.is_none()) {
        return SyncResponse::error(INCONSISTENT_GROUP_PROTOCOL);
    }
    let sync = SyncRequest {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.map(|t| t.to_string()),
        protocol_name: request.protocol_name.map(|n| n.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let (group, member, generation) = (
        sync.group_id.clone(),
        sync.member_id.clone(),
        sync.generation,
    );
    tracing::debug!(%group, %member, generation, leader = !sync.assignments.is_empty(), "sync group");
    let response = coordinator::sync_group(&node.shared, node.node_id, sync).await;
    tracing::debug!(%group, %member, generation, error = response.error, "synced");
    response
}

fn encode(response: SyncResponse) -> SyncGroupResponse {
    // The protocol fields exist from v5 only; the codec leaves them out of
    // older versions.
    SyncGroupResponse::default()
        .with_error_code(response.error)
        .with_protocol_type(response.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(response.protocol_name.map(StrBytes::from_string))
        .with_assignment(response.assignment)
}
