//! DeleteGroups (key 42): deletes empty groups and their committed offsets.
//!
//! Per group: NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS from the wrong
//! or a loading broker, GROUP_ID_NOT_FOUND when there is no such group,
//! NON_EMPTY_GROUP while it has members.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::Handler;
use crate::broker::Node;
use crate::coordinator;

pub(crate) struct DeleteGroups;

impl Handler for DeleteGroups {
    type Request = DeleteGroupsRequest;

    fn handle(node: &Node, request: DeleteGroupsRequest, _version: i16) -> DeleteGroupsResponse {
        let results = request
            .groups_names
            .iter()
            .map(|id| {
                let code =
                    coordinator::with(&node.shared, |c, _| c.delete(node.node_id, id.as_str()));
                tracing::debug!(group = %id.as_str(), error = code, "delete group");
                DeletableGroupResult::default()
                    .with_group_id(id.clone())
                    .with_error_code(code)
            })
            .collect();
        DeleteGroupsResponse::default().with_results(results)
    }

    fn error_response(
        _node: &Node,
        request: &DeleteGroupsRequest,
        _version: i16,
        code: i16,
    ) -> DeleteGroupsResponse {
        let results = request
            .groups_names
            .iter()
            .map(|id| {
                DeletableGroupResult::default()
                    .with_group_id(id.clone())
                    .with_error_code(code)
            })
            .collect();
        DeleteGroupsResponse::default().with_results(results)
    }
}
