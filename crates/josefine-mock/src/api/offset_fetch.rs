//! OffsetFetch (key 9): a group's committed offsets.
//!
//! v1-v7 ask for one group, v8+ (KIP-709) for several, each answered on its
//! own. A partition without a commit (or of a group or topic that does not
//! exist) answers offset -1 and no error, as Kafka does; a null topic list
//! (v2+) asks for every partition the group committed. The leader epoch
//! comes back from v5, -1 when the commit had none; metadata is "" when the
//! commit had none. Coordinator errors (NOT_COORDINATOR,
//! COORDINATOR_LOAD_IN_PROGRESS) go top-level from v2 and per group from v8;
//! v1 has no such field, so each requested partition carries them, as in
//! Kafka's error response. With `require_stable` (v7+, KIP-447), a
//! partition with a transactional offset pending (TxnOffsetCommit, see
//! [`crate::group::txn_offsets`]) answers UNSTABLE_OFFSET_COMMIT, offset -1,
//! in its own error code; without it, such a partition answers the last
//! committed offset. Groups of both protocols answer alike; the v9 member
//! id and epoch (KIP-848) are not checked (Kafka checks them when a
//! consumer-group member sends them).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Handler;
use crate::broker::Node;
use crate::coordinator;
use crate::group::{PartitionOffset, TopicOffsets};

pub(crate) struct OffsetFetch;

/// One group's part of the answer, or the group's error.
type Fetched = Result<TopicOffsets, i16>;

/// One group to look up: its id and the topics asked for (`None`: all).
type Wanted = (String, Option<Vec<(String, Vec<i32>)>>);

fn wanted(request: &OffsetFetchRequest, version: i16) -> Vec<Wanted> {
    if version >= 8 {
        return request
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                (g.group_id.to_string(), topics)
            })
            .collect();
    }
    let topics = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    vec![(request.group_id.to_string(), topics)]
}

fn fetch(node: &Node, (group, topics): &Wanted, require_stable: bool) -> Fetched {
    coordinator::read(&node.shared, |c| {
        c.fetch_offsets(node.node_id, group, topics.as_deref(), require_stable)
    })
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

impl Handler for OffsetFetch {
    type Request = OffsetFetchRequest;

    fn handle(node: &Node, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let wanted = wanted(&request, version);
        let fetched: Vec<Fetched> = wanted
            .iter()
            .map(|w| fetch(node, w, request.require_stable))
            .collect();
        for ((group, _), result) in wanted.iter().zip(&fetched) {
            tracing::debug!(%group, error = result.as_ref().err(), "offset fetch");
        }
        respond(&wanted, fetched, version)
    }

    fn error_response(
        _node: &Node,
        request: &OffsetFetchRequest,
        version: i16,
        code: i16,
    ) -> OffsetFetchResponse {
        let wanted = wanted(request, version);
        let fetched = vec![Err(code); wanted.len()];
        respond(&wanted, fetched, version)
    }
}

fn respond(wanted: &[Wanted], fetched: Vec<Fetched>, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = wanted
            .iter()
            .zip(fetched)
            .map(|((group, _), result)| {
                let group = OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.clone())));
                match result {
                    Err(code) => group.with_error_code(code),
                    Ok(topics) => group.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&name))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|(index, committed)| {
                                                let (offset, epoch, metadata, error) =
                                                    fields(committed);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(index)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(metadata))
                                                    .with_error_code(error)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let Some(result) = fetched.into_iter().next() else {
        return OffsetFetchResponse::default();
    };
    let (error, topics) = match result {
        Ok(topics) => (0, topics),
        // v1 has no top-level error code: the error goes on every partition
        // asked for (a v1 request always names them).
        Err(code) if version < 2 => {
            let topics = wanted
                .first()
                .and_then(|(_, topics)| topics.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    (
                        name,
                        partitions.into_iter().map(|p| (p, Err(code))).collect(),
                    )
                })
                .collect::<Vec<_>>();
            return v1_to_v7(topics, version).with_error_code(0);
        }
        Err(code) => (code, Vec::new()),
    };
    v1_to_v7(topics, version).with_error_code(error)
}

/// The v1-v7 topic list.
fn v1_to_v7(topics: TopicOffsets, version: i16) -> OffsetFetchResponse {
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let (offset, epoch, metadata, error) = fields(committed);
                    let partition = OffsetFetchResponsePartition::default()
                        .with_partition_index(index)
                        .with_committed_offset(offset)
                        .with_metadata(Some(metadata))
                        .with_error_code(error);
                    // The leader epoch exists from v5 only.
                    if version >= 5 {
                        partition.with_committed_leader_epoch(epoch)
                    } else {
                        partition
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// (offset, leader epoch, metadata, error code) of a partition's answer;
/// -1, -1 and "" without a commit or with an error.
fn fields(committed: PartitionOffset) -> (i64, i32, StrBytes, i16) {
    match committed {
        Ok(Some(c)) => (
            c.offset,
            c.leader_epoch,
            StrBytes::from_string(c.metadata),
            0,
        ),
        Ok(None) => (-1, -1, StrBytes::default(), 0),
        Err(code) => (-1, -1, StrBytes::default(), code),
    }
}
