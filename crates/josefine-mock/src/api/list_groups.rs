//! ListGroups (key 16): the groups this broker coordinates.
//!
//! As in Kafka each broker lists only its own groups, so an admin asks
//! every broker. `states_filter` (v4+) and `types_filter` (v5+) match
//! case-insensitively; a group is of type "classic" or, for the consumer
//! protocol (KIP-848), "consumer", whose groups' protocol type is
//! "consumer" and whose states are Empty, Assigning, Reconciling and
//! Stable. While a test
//! holds one of the broker's groups loading, the answer is
//! COORDINATOR_LOAD_IN_PROGRESS with no groups.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Handler;
use crate::broker::Node;
use crate::coordinator;

pub(crate) struct ListGroups;

impl Handler for ListGroups {
    type Request = ListGroupsRequest;

    fn handle(node: &Node, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let listed = match coordinator::read(&node.shared, |c| c.list(node.node_id)) {
            Ok(listed) => listed,
            Err(code) => return ListGroupsResponse::default().with_error_code(code),
        };
        let wanted = |filter: &[StrBytes], value: &str| {
            filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
        };
        let groups = listed
            .into_iter()
            .filter(|g| version < 4 || wanted(&request.states_filter, g.state.as_str()))
            .filter(|g| version < 5 || wanted(&request.types_filter, g.group_type))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                    .with_protocol_type(StrBytes::from_string(g.protocol_type))
                    .with_group_state(StrBytes::from_static_str(g.state.as_str()))
                    .with_group_type(StrBytes::from_static_str(g.group_type))
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    fn error_response(
        _node: &Node,
        _request: &ListGroupsRequest,
        _version: i16,
        code: i16,
    ) -> ListGroupsResponse {
        ListGroupsResponse::default().with_error_code(code)
    }
}
