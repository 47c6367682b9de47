//! DescribeGroups (key 15): a group's state, protocol and members, for
//! admin clients.
//!
//! Per group: NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS from the wrong
//! or a loading broker; a group that does not exist, or is a consumer group
//! (KIP-848, see ConsumerGroupDescribe), is "Dead" with no error, or
//! GROUP_ID_NOT_FOUND from v6 (KIP-1043). Members' metadata (for
//! the chosen protocol) and assignments are only filled in, and the
//! protocol named, once the group is Stable, as Kafka does. Authorized
//! operations (v3+, when asked for) are READ, DELETE and DESCRIBE: there are
//! no ACLs.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;

use super::Handler;
use crate::broker::Node;
use crate::coordinator;
use crate::group::{GroupState, GROUP_ID_NOT_FOUND};

/// Kafka's `AclOperation` codes as a bit field: READ (3), DELETE (6),
/// DESCRIBE (8).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// What the field holds when nobody asked (or before v3).
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub(crate) struct DescribeGroups;

impl Handler for DescribeGroups {
    type Request = DescribeGroupsRequest;

    fn handle(node: &Node, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
        let operations = if version >= 3 && request.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            OPERATIONS_OMITTED
        };
        let groups = request
            .groups
            .iter()
            .map(|id| {
                let described =
                    coordinator::read(&node.shared, |c| c.describe(node.node_id, id.as_str()));
                let group = DescribedGroup::default().with_group_id(id.clone());
                match described {
                    Err(code) => group.with_error_code(code),
                    Ok(None) => {
                        let group = group.with_group_state(state(GroupState::Dead));
                        if version >= 6 {
                            group.with_error_code(GROUP_ID_NOT_FOUND)
                        } else {
                            group
                        }
                    }
                    Ok(Some(d)) => {
                        let members = d
                            .members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_string(m.member_id))
                                    .with_group_instance_id(
                                        m.instance_id.map(StrBytes::from_string),
                                    )
                                    .with_client_id(StrBytes::from_string(m.client_id))
                                    .with_client_host(StrBytes::from_string(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect();
                        group
                            .with_group_state(state(d.state))
                            .with_protocol_type(StrBytes::from_string(d.protocol_type))
                            .with_protocol_data(StrBytes::from_string(d.protocol_data))
                            .with_members(members)
                            .with_authorized_operations(operations)
                    }
                }
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    fn error_response(
        _node: &Node,
        request: &DescribeGroupsRequest,
        _version: i16,
        code: i16,
    ) -> DescribeGroupsResponse {
        let groups = request
            .groups
            .iter()
            .map(|id: &GroupId| {
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(code)
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }
}

fn state(state: GroupState) -> StrBytes {
    StrBytes::from_static_str(state.as_str())
}
