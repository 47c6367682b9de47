//! LeaveGroup (key 13): members leave a consumer group, which rebalances
//! without them at once instead of waiting for their sessions to expire.
//!
//! v0-v2 name one member and answer with one error code; v3+ (KIP-345) name
//! several, each by member id, or by `group_instance_id` alone with an empty
//! member id (an admin removing a static member), and answer per member,
//! with the request-level code for NOT_COORDINATOR,
//! COORDINATOR_LOAD_IN_PROGRESS, INVALID_GROUP_ID and an unknown group
//! (UNKNOWN_MEMBER_ID). Per member: UNKNOWN_MEMBER_ID, or
//! FENCED_INSTANCE_ID when the instance id belongs to another member id.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::Handler;
use crate::broker::Node;
use crate::coordinator;

pub(crate) struct LeaveGroup;

/// The members a request names, as (member id, instance id).
fn leaving(request: &LeaveGroupRequest, version: i16) -> Vec<(String, Option<String>)> {
    if version < 3 {
        return vec![(request.member_id.to_string(), None)];
    }
    request
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|i| i.to_string()),
            )
        })
        .collect()
}

impl Handler for LeaveGroup {
    type Request = LeaveGroupRequest;

    fn handle(node: &Node, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let members = leaving(&request, version);
        let group = request.group_id.as_str();
        let result = coordinator::with(&node.shared, |c, now| {
            c.leave(node.node_id, now, group, &members)
        });
        tracing::debug!(group, ?members, ?result, "leave group");
        match result {
            Err(code) => LeaveGroupResponse::default().with_error_code(code),
            Ok(codes) if version < 3 => {
                LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
            }
            Ok(codes) => {
                let members = request
                    .members
                    .iter()
                    .zip(codes)
                    .map(|(m, code)| {
                        MemberResponse::default()
                            .with_member_id(m.member_id.clone())
                            .with_group_instance_id(m.group_instance_id.clone())
                            .with_error_code(code)
                    })
                    .collect();
                LeaveGroupResponse::default().with_members(members)
            }
        }
    }

    fn error_response(
        _node: &Node,
        _request: &LeaveGroupRequest,
        _version: i16,
        code: i16,
    ) -> LeaveGroupResponse {
        LeaveGroupResponse::default().with_error_code(code)
    }
}
