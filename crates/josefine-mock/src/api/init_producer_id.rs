//! InitProducerId (key 22): producer ids and epochs for idempotent
//! producers (KIP-98), and epoch bumps (KIP-360, v3+).
//!
//! Any broker answers, from the cluster-wide registry of ids handed out:
//!
//! * producer id and epoch -1 (or v0-v2): a fresh producer id, counting up
//!   from 1000, at epoch 0;
//! * exactly one of them -1: INVALID_REQUEST, as Kafka;
//! * a producer id this cluster handed out, with its current epoch: the same
//!   id at the next epoch; once the epoch would reach `i16::MAX`, a fresh id
//!   at epoch 0, as Kafka's coordinator does. The bumped producer's next
//!   batch to each partition must start at sequence 0, and resets that
//!   partition's state for it;
//! * any other id or epoch: INVALID_PRODUCER_EPOCH.
//!
//! Apache Kafka answers every request without a transactional id with a
//! fresh id, ignoring the one sent (idempotent producers bump their epoch
//! themselves); `set_init_producer_id_bumps_epoch(false)` makes the mock do
//! that too, so a producer can be tested against both.
//!
//! With a transactional id, the transaction coordinator answers (see
//! [`crate::txn`]): an empty id is INVALID_REQUEST, a
//! `transaction_timeout_ms` above `transaction.max.timeout.ms` (or not
//! positive) INVALID_TRANSACTION_TIMEOUT, a broker that does not coordinate
//! the id NOT_COORDINATOR; then the first call allocates a producer id at
//! epoch 0, and each later one bumps the epoch (KIP-360's retry and fencing
//! rules from v3), aborting an Ongoing transaction first with
//! CONCURRENT_TRANSACTIONS for an answer. PRODUCER_FENCED goes out as
//! INVALID_PRODUCER_EPOCH before v4 (KIP-588).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::Handler;
use crate::broker::Node;
use crate::state::ClusterState;
use crate::txn::{self, driver};

pub(crate) struct InitProducerId;

impl Handler for InitProducerId {
    type Request = InitProducerIdRequest;

    fn handle(node: &Node, request: InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
        let (producer_id, epoch) = if version >= 3 {
            (request.producer_id.0, request.producer_epoch)
        } else {
            (-1, -1)
        };
        let expected = match (producer_id, epoch) {
            (-1, -1) => None,
            (-1, _) | (_, -1) => return refused(ResponseError::InvalidRequest.code()),
            pair => Some(pair),
        };
        if let Some(transactional_id) = &request.transactional_id {
            let result = driver::run(&node.shared, |state, now| {
                let ClusterState {
                    transactions,
                    next_producer_id,
                    ..
                } = state;
                let mut allocate = || {
                    let id = *next_producer_id;
                    *next_producer_id += 1;
                    id
                };
                transactions.init_producer_id(
                    node.node_id,
                    now,
                    transactional_id.as_str(),
                    request.transaction_timeout_ms,
                    expected,
                    &mut allocate,
                )
            });
            tracing::debug!(transactional_id = %transactional_id.as_str(), ?result, "init producer id");
            return match result {
                Ok(granted_id) => granted(granted_id),
                Err(code) => refused(txn::fenced_for(code, version >= 4)),
            };
        }
        let mut state = node.state();
        match (producer_id, epoch) {
            (-1, -1) => granted(fresh(&mut state)),
            _ if !state.settings.init_producer_id_bumps_epoch => granted(fresh(&mut state)),
            _ => match state.producer_epochs.get_mut(&producer_id) {
                Some(current) if *current == epoch => {
                    if epoch >= i16::MAX - 1 {
                        granted(fresh(&mut state))
                    } else {
                        *current = epoch + 1;
                        granted((producer_id, epoch + 1))
                    }
                }
                _ => refused(ResponseError::InvalidProducerEpoch.code()),
            },
        }
    }

    fn error_response(
        _node: &Node,
        _request: &InitProducerIdRequest,
        _version: i16,
        code: i16,
    ) -> InitProducerIdResponse {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    }
}

fn fresh(state: &mut ClusterState) -> (i64, i16) {
    let producer_id = state.allocate_producer_id();
    state.producer_epochs.insert(producer_id, 0);
    (producer_id, 0)
}

fn granted((producer_id, epoch): (i64, i16)) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
}

fn refused(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
