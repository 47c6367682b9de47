//! OffsetCommit (key 8): a consumer stores its positions in a group.
//!
//! First, as Kafka's request handler does, partitions that do not exist get
//! UNKNOWN_TOPIC_OR_PARTITION; the rest go to the coordinator, which answers
//! them all with one error or stores each. Its checks (Kafka's
//! `validateOffsetCommit`): NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS;
//! for a group that does not exist, a "simple" commit (generation -1)
//! creates it, anything else is ILLEGAL_GENERATION (GROUP_ID_NOT_FOUND from
//! v9); a simple commit (generation -1, empty member id, no instance id)
//! is accepted while the group is Empty and is UNKNOWN_MEMBER_ID otherwise;
//! a member's commit needs a known member (UNKNOWN_MEMBER_ID,
//! FENCED_INSTANCE_ID) and the current generation (ILLEGAL_GENERATION), and
//! gets REBALANCE_IN_PROGRESS while the group waits for the leader's
//! assignment (CompletingRebalance). Commits during PreparingRebalance are
//! accepted, as Kafka does, so members can commit before rejoining; and they
//! restart the member's session. For a consumer group (KIP-848) the checks are
//! the consumer protocol's instead: a simple commit only while the group has
//! no members, a known member (UNKNOWN_MEMBER_ID) committing at v9+
//! (UNSUPPORTED_VERSION below) with its current member epoch
//! (STALE_MEMBER_EPOCH otherwise); commits do not renew its session there.
//! Metadata over 4096 bytes
//! (`offset.metadata.max.bytes`) is OFFSET_METADATA_TOO_LARGE.
//!
//! The leader epoch (v6+) and metadata are stored for OffsetFetch;
//! `retention_time_ms` (v2-v4) is ignored, as offsets never expire here.

use std::collections::BTreeSet;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{Handler, UNKNOWN_TOPIC_OR_PARTITION};
use crate::broker::Node;
use crate::coordinator;
use crate::group::{CommitRequest, OffsetToCommit};

pub(crate) struct OffsetCommit;

impl Handler for OffsetCommit {
    type Request = OffsetCommitRequest;

    fn handle(node: &Node, request: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
        // (topic, partition) pairs that exist, read before asking the
        // coordinator: the two locks are never held together.
        let known: BTreeSet<(String, i32)> = {
            let state = node.state();
            request
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
                .filter(|(t, p)| {
                    state
                        .partition(t.name.as_str(), p.partition_index)
                        .is_some()
                })
                .map(|(t, p)| (t.name.to_string(), p.partition_index))
                .collect()
        };
        let offsets: Vec<OffsetToCommit> = request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|(t, p)| known.contains(&(t.name.to_string(), p.partition_index)))
            .map(|(t, p)| OffsetToCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
            .collect();
        let commit = CommitRequest {
            group_id: request.group_id.to_string(),
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
            generation: request.generation_id_or_member_epoch,
            version,
            offsets,
        };
        let codes: Vec<i16> = if commit.offsets.is_empty() {
            Vec::new()
        } else {
            let result =
                coordinator::with(&node.shared, |c, now| c.commit(node.node_id, now, &commit));
            tracing::debug!(
                group = %commit.group_id,
                member = %commit.member_id,
                generation = commit.generation,
                ?result,
                "offset commit"
            );
            match result {
                Ok(codes) => codes,
                Err(code) => vec![code; commit.offsets.len()],
            }
        };
        // Answer in the request's order; stored partitions take their codes
        // in the order they were sent to the coordinator.
        let mut codes = codes.into_iter();
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
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    fn error_response(
        _node: &Node,
        request: &OffsetCommitRequest,
        _version: i16,
        code: i16,
    ) -> OffsetCommitResponse {
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }
}
