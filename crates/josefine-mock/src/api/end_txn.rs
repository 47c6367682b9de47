//! EndTxn (key 26): a transactional producer commits or aborts its
//! transaction (KIP-98).
//!
//! The transaction coordinator (see [`crate::txn`]) checks the producer
//! (INVALID_REQUEST, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//! INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, which is
//! INVALID_PRODUCER_EPOCH before v2), answers NONE once the transaction is
//! PrepareCommit or PrepareAbort, and writes the markers to its partitions
//! and settles its offsets before the answer goes out (or after
//! [`set_transaction_marker_delay`](crate::MockCluster::set_transaction_marker_delay)).
//! Without an Ongoing transaction: NONE for a repeat of the last outcome,
//! CONCURRENT_TRANSACTIONS while it is still being written, and
//! INVALID_TXN_STATE otherwise (the other outcome, or nothing to end).
//! v0-v4: v5 (transaction.version 2, KIP-890) bumps the epoch at every
//! transaction's end, which the mock does not.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use kafka_protocol::protocol::VersionRange;

use super::Handler;
use crate::broker::Node;
use crate::txn::{self, driver};

/// The versions the mock advertises.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

pub(crate) struct EndTxn;

impl Handler for EndTxn {
    type Request = EndTxnRequest;

    fn handle(node: &Node, request: EndTxnRequest, version: i16) -> EndTxnResponse {
        let code = driver::run(&node.shared, |state, now| {
            state.transactions.end_txn(
                node.node_id,
                now,
                request.transactional_id.as_str(),
                request.producer_id.0,
                request.producer_epoch,
                request.committed,
            )
        });
        tracing::debug!(
            transactional_id = %request.transactional_id.as_str(),
            producer_id = request.producer_id.0,
            epoch = request.producer_epoch,
            commit = request.committed,
            code,
            "end txn"
        );
        EndTxnResponse::default().with_error_code(txn::fenced_for(code, version >= 2))
    }

    fn error_response(
        _node: &Node,
        _request: &EndTxnRequest,
        _version: i16,
        code: i16,
    ) -> EndTxnResponse {
        EndTxnResponse::default().with_error_code(code)
    }
}
