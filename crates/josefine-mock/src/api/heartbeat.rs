//! Heartbeat (key 12): a member shows it is alive, and learns whether it
//! must rejoin.
//!
//! Answers, in Kafka's order: INVALID_GROUP_ID for an empty group id,
//! NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, UNKNOWN_MEMBER_ID (unknown
//! group or member, or an empty group), FENCED_INSTANCE_ID (v3+, a static
//! member's older incarnation), ILLEGAL_GENERATION, then by the group's
//! state: REBALANCE_IN_PROGRESS while a rebalance is being prepared (the
//! member must send JoinGroup), none otherwise. Every heartbeat that gets
//! past the checks restarts the member's session.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::Handler;
use crate::broker::Node;
use crate::coordinator;

pub(crate) struct Heartbeat;

impl Handler for Heartbeat {
    type Request = HeartbeatRequest;

    fn handle(node: &Node, request: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
        let group = request.group_id.as_str();
        let member = request.member_id.as_str();
        let instance = request.group_instance_id.as_ref().map(|i| i.as_str());
        let code = coordinator::with(&node.shared, |c, now| {
            c.heartbeat(
                node.node_id,
                now,
                group,
                member,
                instance,
                request.generation_id,
            )
        });
        tracing::trace!(
            group,
            member,
            generation = request.generation_id,
            error = code,
            "heartbeat"
        );
        HeartbeatResponse::default().with_error_code(code)
    }

    fn error_response(
        _node: &Node,
        _request: &HeartbeatRequest,
        _version: i16,
        code: i16,
    ) -> HeartbeatResponse {
        HeartbeatResponse::default().with_error_code(code)
    }
}
