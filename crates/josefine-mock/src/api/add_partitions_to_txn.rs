//! AddPartitionsToTxn (key 24): a transactional producer adds the
//! partitions it is about to write to its transaction (KIP-98).
//!
//! v0-v3 only, one transaction per request: v4+ (KIP-890) batches
//! transactions and is sent by brokers to verify partitions, which the mock
//! does inside its Produce. As Kafka's request handler does first, a request
//! naming a partition that does not exist fails whole: those partitions get
//! UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED. The
//! rest is the transaction coordinator's (see [`crate::txn`]), whose one
//! answer goes on every partition: INVALID_REQUEST for an empty
//! transactional id, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//! INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED (INVALID_PRODUCER_EPOCH
//! before v2, KIP-588), CONCURRENT_TRANSACTIONS while the previous
//! transaction completes, else NONE with the transaction Ongoing.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::{Handler, UNKNOWN_TOPIC_OR_PARTITION};
use crate::broker::Node;
use crate::txn::{self, driver};

/// The versions the mock advertises: the client's (v0-v3).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

const OPERATION_NOT_ATTEMPTED: i16 = ResponseError::OperationNotAttempted.code();

pub(crate) struct AddPartitionsToTxn;

impl Handler for AddPartitionsToTxn {
    type Request = AddPartitionsToTxnRequest;

    fn handle(
        node: &Node,
        request: AddPartitionsToTxnRequest,
        version: i16,
    ) -> AddPartitionsToTxnResponse {
        let topics = &request.v3_and_below_topics;
        let transactional_id = request.v3_and_below_transactional_id.as_str();
        let producer_id = request.v3_and_below_producer_id.0;
        let epoch = request.v3_and_below_producer_epoch;
        let results = driver::run(&node.shared, |state, now| {
            let wanted: Vec<(String, i32)> = partitions(topics).collect();
            let unknown: Vec<bool> = wanted
                .iter()
                .map(|(topic, p)| state.partition(topic, *p).is_none())
                .collect();
            if unknown.iter().any(|u| *u) {
                return unknown
                    .into_iter()
                    .map(|u| {
                        if u {
                            UNKNOWN_TOPIC_OR_PARTITION
                        } else {
                            OPERATION_NOT_ATTEMPTED
                        }
                    })
                    .collect();
            }
            let code = state.transactions.add_partitions(
                node.node_id,
                now,
                transactional_id,
                producer_id,
                epoch,
                &wanted,
            );
            vec![txn::fenced_for(code, version >= 2); wanted.len()]
        });
        tracing::debug!(%transactional_id, producer_id, epoch, ?results, "add partitions to txn");
        respond(topics, results)
    }

    fn error_response(
        _node: &Node,
        request: &AddPartitionsToTxnRequest,
        _version: i16,
        code: i16,
    ) -> AddPartitionsToTxnResponse {
        let topics = &request.v3_and_below_topics;
        let count = partitions(topics).count();
        respond(topics, vec![code; count])
    }
}

/// The request's partitions, in order.
fn partitions(topics: &[AddPartitionsToTxnTopic]) -> impl Iterator<Item = (String, i32)> + '_ {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
}

/// One result per partition of the request, in its order.
fn respond(topics: &[AddPartitionsToTxnTopic], codes: Vec<i16>) -> AddPartitionsToTxnResponse {
    let mut codes = codes.into_iter();
    let results = topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
