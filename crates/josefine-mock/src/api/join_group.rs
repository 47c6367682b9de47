//! JoinGroup (key 11): a member joins (or rejoins) a consumer group and
//! waits for the rebalance to complete.
//!
//! The request waits, holding up its own connection only, until the
//! coordinator completes the join phase (see [`crate::group::classic`]);
//! then the leader's answer lists every member's metadata for the chosen
//! protocol and the followers' lists are empty. Per version: v0 has no
//! rebalance timeout (the session timeout serves as one, as in Kafka); v4+
//! gets MEMBER_ID_REQUIRED on a dynamic member's first join (KIP-394; at
//! every version with `member_id_required_at_every_version`); v5+ carries
//! `group_instance_id` (KIP-345); v7+ names the protocol type and may leave
//! the protocol name null; v9 may tell a rejoining static leader to skip the
//! assignment (KIP-814).
//!
//! Checked in Kafka's order: an empty group id is INVALID_GROUP_ID, a
//! session timeout outside the configured range INVALID_SESSION_TIMEOUT,
//! then NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS, then the group's
//! own checks (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
//! INCONSISTENT_GROUP_PROTOCOL). A consumer group (KIP-848) with members
//! answers INCONSISTENT_GROUP_PROTOCOL (the mock has no mixed groups); an
//! empty one becomes a classic group, keeping its offsets.

use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use super::{Mode, Refusal, Reply};
use crate::broker::Node;
use crate::coordinator;
use crate::group::{JoinRequest, JoinResponse, Protocol};

pub(crate) async fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
    peer: SocketAddr,
) -> Result<Reply, Refusal> {
    let version = header.request_api_version;
    let request = super::decode_for::<JoinGroupRequest>(node, header, body, mode)?;
    let response = match mode {
        Mode::Normal => {
            let client_id = header
                .client_id
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default();
            let join = join_request(request, version, client_id, peer);
            let (group, member) = (join.group_id.clone(), join.member_id.clone());
            tracing::debug!(%group, %member, "join group");
            let response = coordinator::join_group(&node.shared, node.node_id, join).await;
            tracing::debug!(
                %group,
                member = %response.member_id,
                generation = response.generation,
                error = response.error,
                "joined"
            );
            encode(response, version)
        }
        // As Kafka's error response: no member id, generation -1.
        Mode::Error(code) => encode(JoinResponse::error(code, ""), version),
    };
    super::encode_response(header.correlation_id, version, &response).map(Reply::Frame)
}

fn join_request(
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    peer: SocketAddr,
) -> JoinRequest {
    let rebalance_timeout_ms = if version == 0 {
        request.session_timeout_ms
    } else {
        request.rebalance_timeout_ms
    };
    JoinRequest {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id,
        // Kafka shows the address as Java's InetAddress prints it.
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        requires_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    }
}

fn string(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

fn encode(response: JoinResponse, version: i16) -> JoinGroupResponse {
    // Kafka's JoinGroupResponse: the protocol name is not nullable before
    // v7 (null becomes ""), and from v7 an empty name goes out as null.
    let protocol_name = match response.protocol_name.filter(|n| !n.is_empty()) {
        Some(name) => Some(string(name)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    let members = response
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(string(m.member_id))
                .with_group_instance_id(m.instance_id.map(string))
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(response.error)
        .with_generation_id(response.generation)
        .with_protocol_type(response.protocol_type.map(string))
        .with_protocol_name(protocol_name)
        .with_leader(string(response.leader))
        .with_skip_assignment(response.skip_assignment && version >= 9)
        .with_member_id(string(response.member_id))
        .with_members(members)
}
