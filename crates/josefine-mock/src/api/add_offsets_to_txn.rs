//! AddOffsetsToTxn (key 25): a transactional producer adds a consumer
//! group to its transaction before committing the group's offsets in it
//! with TxnOffsetCommit (KIP-98).
//!
//! Kafka adds the group's `__consumer_offsets` partition to the
//! transaction; the mock adds the group itself (see [`crate::txn`]), with
//! AddPartitionsToTxn's checks and answers in the one top-level error code:
//! INVALID_REQUEST, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//! INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED (INVALID_PRODUCER_EPOCH
//! before v2), CONCURRENT_TRANSACTIONS. The group is not checked, as in
//! Kafka. v0-v4 (v4 adds nothing but TRANSACTION_ABORTABLE to the codes a
//! client knows).

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::protocol::VersionRange;

use super::Handler;
use crate::broker::Node;
use crate::txn::{self, driver};

/// The versions the mock advertises.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

pub(crate) struct AddOffsetsToTxn;

impl Handler for AddOffsetsToTxn {
    type Request = AddOffsetsToTxnRequest;

    fn handle(
        node: &Node,
        request: AddOffsetsToTxnRequest,
        version: i16,
    ) -> AddOffsetsToTxnResponse {
        let code = driver::run(&node.shared, |state, now| {
            state.transactions.add_offsets(
                node.node_id,
                now,
                request.transactional_id.as_str(),
                request.producer_id.0,
                request.producer_epoch,
                request.group_id.as_str(),
            )
        });
        tracing::debug!(
            transactional_id = %request.transactional_id.as_str(),
            group = %request.group_id.as_str(),
            code,
            "add offsets to txn"
        );
        AddOffsetsToTxnResponse::default().with_error_code(txn::fenced_for(code, version >= 2))
    }

    fn error_response(
        _node: &Node,
        _request: &AddOffsetsToTxnRequest,
        _version: i16,
        code: i16,
    ) -> AddOffsetsToTxnResponse {
        AddOffsetsToTxnResponse::default().with_error_code(code)
    }
}
