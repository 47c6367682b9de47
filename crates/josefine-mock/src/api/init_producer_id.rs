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
//! Transactions are not implemented: a non-null `transactional_id` gets
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a fatal error that tells a
//! transactional producer clearly that this broker will not serve it
//! (pretending the id was null would let it go on to fail obscurely at
//! AddPartitionsToTxn, which the mock does not answer).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::Handler;
use crate::broker::Node;
use crate::state::ClusterState;

pub(crate) struct InitProducerId;

impl Handler for InitProducerId {
    type Request = InitProducerIdRequest;

    fn handle(node: &Node, request: InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
        if request.transactional_id.is_some() {
            return refused(ResponseError::TransactionalIdAuthorizationFailed);
        }
        let (producer_id, epoch) = if version >= 3 {
            (request.producer_id.0, request.producer_epoch)
        } else {
            (-1, -1)
        };
        let mut state = node.state();
        match (producer_id, epoch) {
            (-1, -1) => granted(fresh(&mut state)),
            (-1, _) | (_, -1) => refused(ResponseError::InvalidRequest),
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
                _ => refused(ResponseError::InvalidProducerEpoch),
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
    let producer_id = state.next_producer_id;
    state.next_producer_id += 1;
    state.producer_epochs.insert(producer_id, 0);
    (producer_id, 0)
}

fn granted((producer_id, epoch): (i64, i16)) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
}

fn refused(error: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
