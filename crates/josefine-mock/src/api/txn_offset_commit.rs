//! TxnOffsetCommit (key 28): a transactional producer commits a consumer
//! group's offsets as part of its transaction (KIP-98, KIP-447), sent to
//! the group's coordinator.
//!
//! In Kafka's order (`KafkaApis`, then `GroupCoordinatorService` and
//! `OffsetMetadataManager`, Kafka 4.0):
//!
//! 1. partitions that do not exist get UNKNOWN_TOPIC_OR_PARTITION, the rest
//!    go on;
//! 2. an empty group id is INVALID_GROUP_ID; NOT_COORDINATOR and
//!    COORDINATOR_LOAD_IN_PROGRESS from the group's coordinator;
//! 3. the transaction coordinator verifies the producer (KIP-890 part 1):
//!    INVALID_PRODUCER_ID_MAPPING, INVALID_PRODUCER_EPOCH for a fenced
//!    producer, CONCURRENT_TRANSACTIONS while its transaction completes, and
//!    for a group not added with AddOffsetsToTxn TRANSACTION_ABORTABLE (v4+)
//!    or INVALID_TXN_STATE;
//! 4. the group (see [`Coordinator::txn_commit`](crate::group::Coordinator::txn_commit)):
//!    a group that does not exist is created by a commit without generation
//!    and is ILLEGAL_GENERATION otherwise; from v3 the member id, instance
//!    id and generation are checked as OffsetCommit checks them
//!    (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION), without
//!    the group-state checks; in a KIP-848 group the generation is the
//!    member epoch, and a stale one is ILLEGAL_GENERATION;
//! 5. per partition, metadata over `offset.metadata.max.bytes` is
//!    OFFSET_METADATA_TOO_LARGE; the others are stored pending until the
//!    transaction ends (see [`crate::group::txn_offsets`]).
//!
//! Errors of steps 2-4 go on every partition of step 1's survivors. Before
//! v2, COORDINATOR_LOAD_IN_PROGRESS goes out as COORDINATOR_NOT_AVAILABLE,
//! as Kafka answers clients older than KAFKA-7296. v0-v4: v5 belongs to
//! transaction.version 2 (KIP-890 part 2).

use std::collections::BTreeSet;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::{Handler, UNKNOWN_TOPIC_OR_PARTITION};
use crate::broker::Node;
use crate::coordinator;
use crate::group::{OffsetToCommit, TxnCommitRequest, INVALID_GROUP_ID};
use crate::txn::{self, driver, Target};

/// The versions the mock advertises.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();

pub(crate) struct TxnOffsetCommit;

impl Handler for TxnOffsetCommit {
    type Request = TxnOffsetCommitRequest;

    fn handle(
        node: &Node,
        request: TxnOffsetCommitRequest,
        version: i16,
    ) -> TxnOffsetCommitResponse {
        let group_id = request.group_id.to_string();
        let transactional_id = request.transactional_id.to_string();
        let producer_id = request.producer_id.0;
        let epoch = request.producer_epoch;
        let (known, result) = driver::run(&node.shared, |state, _| {
            let known: BTreeSet<(String, i32)> = request
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
                .filter(|(t, p)| {
                    state
                        .partition(t.name.as_str(), p.partition_index)
                        .is_some()
                })
                .map(|(t, p)| (t.name.to_string(), p.partition_index))
                .collect();
            if known.is_empty() {
                return (known, Ok(Vec::new()));
            }
            let offsets: Vec<OffsetToCommit> = request
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
                .filter(|(t, p)| known.contains(&(t.name.to_string(), p.partition_index)))
                .map(|(t, p)| OffsetToCommit {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 2 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
                .collect();
            let commit = TxnCommitRequest {
                group_id: group_id.clone(),
                producer_id,
                member_id: request.member_id.to_string(),
                instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
                generation: request.generation_id,
                offsets,
            };
            let result = (|| {
                if group_id.is_empty() {
                    return Err(INVALID_GROUP_ID);
                }
                // The lock order: state (held), then groups.
                coordinator::read(&node.shared, |c| c.check(node.node_id, &group_id))?;
                state
                    .transactions
                    .verify(
                        &transactional_id,
                        producer_id,
                        epoch,
                        Target::Group(&group_id),
                    )
                    .map_err(|code| unverified(code, version))?;
                coordinator::with(&node.shared, |c, _| c.txn_commit(node.node_id, &commit))
            })();
            (known, result)
        });
        tracing::debug!(
            group = %group_id,
            %transactional_id,
            producer_id,
            epoch,
            ?result,
            "txn offset commit"
        );
        let mut codes = match result {
            Ok(codes) => codes,
            Err(code) => vec![code; known.len()],
        }
        .into_iter();
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = if known.contains(&(t.name.to_string(), p.partition_index)) {
                            codes.next().unwrap_or(0)
                        } else {
                            UNKNOWN_TOPIC_OR_PARTITION
                        };
                        (p.partition_index, code)
                    })
                    .collect();
                (t.name.clone(), partitions)
            })
            .collect();
        respond(topics, version)
    }

    fn error_response(
        _node: &Node,
        request: &TxnOffsetCommitRequest,
        version: i16,
        code: i16,
    ) -> TxnOffsetCommitResponse {
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, code))
                    .collect();
                (t.name.clone(), partitions)
            })
            .collect();
        respond(topics, version)
    }
}

/// A verification failure as Kafka's group coordinator passes it on: a
/// fenced producer is INVALID_PRODUCER_EPOCH, a group outside the
/// transaction TRANSACTION_ABORTABLE for clients that know it (v4+).
fn unverified(code: i16, version: i16) -> i16 {
    match code {
        txn::PRODUCER_FENCED => txn::INVALID_PRODUCER_EPOCH,
        txn::TRANSACTION_ABORTABLE if version < 4 => txn::INVALID_TXN_STATE,
        code => code,
    }
}

type TopicCodes = Vec<(kafka_protocol::messages::TopicName, Vec<(i32, i16)>)>;

fn respond(topics: TopicCodes, version: i16) -> TxnOffsetCommitResponse {
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, code)| {
                    let code = if version < 2 && code == txn::COORDINATOR_LOAD_IN_PROGRESS {
                        COORDINATOR_NOT_AVAILABLE
                    } else {
                        code
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
