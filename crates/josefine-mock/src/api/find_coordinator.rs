//! FindCoordinator (key 10): which broker coordinates a consumer group
//! (key type 0) or a transactional id (key type 1).
//!
//! v0 names one group; v1-v3 add the key type; v4+ (KIP-699) batch several
//! keys of one type, each answered on its own. Any broker answers, as the
//! leader of the key's `__consumer_offsets` or `__transaction_state`
//! partition would be named: the `hash(key) % n`-th broker, or wherever
//! [`move_coordinator`](crate::MockCluster::move_coordinator) put a group or
//! [`move_transaction_coordinator`](crate::MockCluster::move_transaction_coordinator)
//! a transactional id.
//! A coordinator that a test took out of Metadata
//! ([`remove_broker_from_metadata`](crate::MockCluster::remove_broker_from_metadata))
//! gives COORDINATOR_NOT_AVAILABLE, as Kafka does when the partition's leader
//! is not alive. Another key type (2, share groups, KIP-932) is
//! INVALID_REQUEST: the mock has no share coordinator. Before v4 an error
//! comes with node -1, host "" and port -1.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Handler, INVALID_REQUEST};
use crate::broker::Node;
use crate::coordinator;
use crate::group::COORDINATOR_NOT_AVAILABLE;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub(crate) struct FindCoordinator;

/// A located coordinator, or the error instead.
struct Located {
    error: i16,
    node_id: i32,
    host: String,
    port: i32,
}

impl Located {
    fn error(error: i16) -> Self {
        Located {
            error,
            node_id: -1,
            host: String::new(),
            port: -1,
        }
    }
}

impl Handler for FindCoordinator {
    type Request = FindCoordinatorRequest;

    fn handle(
        node: &Node,
        request: FindCoordinatorRequest,
        version: i16,
    ) -> FindCoordinatorResponse {
        if version < 4 {
            let located = locate(node, request.key_type, request.key.as_str());
            tracing::debug!(key = %request.key, node_id = located.node_id, error = located.error, "coordinator");
            return FindCoordinatorResponse::default()
                .with_error_code(located.error)
                .with_node_id(BrokerId(located.node_id))
                .with_host(StrBytes::from_string(located.host))
                .with_port(located.port);
        }
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let located = locate(node, request.key_type, key.as_str());
                tracing::debug!(%key, node_id = located.node_id, error = located.error, "coordinator");
                Coordinator::default()
                    .with_key(key.clone())
                    .with_error_code(located.error)
                    .with_node_id(BrokerId(located.node_id))
                    .with_host(StrBytes::from_string(located.host))
                    .with_port(located.port)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    }

    fn error_response(
        _node: &Node,
        request: &FindCoordinatorRequest,
        version: i16,
        code: i16,
    ) -> FindCoordinatorResponse {
        if version < 4 {
            return FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1);
        }
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key.clone())
                    .with_error_code(code)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    }
}

fn locate(node: &Node, key_type: i8, key: &str) -> Located {
    // The group coordinator's lock is dropped before the state lock is
    // taken.
    let node_id = match key_type {
        GROUP => coordinator::read(&node.shared, |c| c.coordinator_of(key)),
        TRANSACTION => node.state().transactions.coordinator_of(key),
        _ => return Located::error(INVALID_REQUEST),
    };
    match node.state().brokers.get(&node_id) {
        Some(broker) => Located {
            error: 0,
            node_id,
            host: broker.host.clone(),
            port: broker.port,
        },
        None => Located::error(COORDINATOR_NOT_AVAILABLE),
    }
}
