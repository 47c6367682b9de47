//! ListOffsets (key 2): offsets by timestamp, from the partition's leader.
//!
//! The special timestamps: -2 (earliest) answers the log start offset, -1
//! (latest) the log end offset, or under `read_committed` (isolation level
//! 1, v2+) the last stable offset, -3 (max timestamp, KIP-734) the batch
//! with the largest max timestamp, -4
//! (earliest local, KIP-405) the log start offset, and -5 (latest tiered)
//! offset -1, as Kafka does without tiered storage. Any other timestamp
//! finds the first batch whose max timestamp is at least that; Kafka then
//! answers the exact record's offset and timestamp, but the mock reads only
//! batch headers, so it answers the batch's base offset and max timestamp.
//! When no batch qualifies, offset and timestamp are -1; under
//! `read_committed` a batch at or past the last stable offset does not
//! qualify, as Kafka's `fetchOffsetForTimestamp` bounds lookups by it.
//!
//! The partition must exist and be led by this broker, and a
//! `current_leader_epoch` (v4+) must match, as for Fetch:
//! UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
//! UNKNOWN_LEADER_EPOCH.

use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::Handler;
use crate::broker::Node;
use crate::fetch_sessions::TopicKey;
use crate::state::ClusterState;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const READ_COMMITTED: i8 = 1;

pub(crate) struct ListOffsets;

impl Handler for ListOffsets {
    type Request = ListOffsetsRequest;

    fn handle(node: &Node, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
        let state = node.state();
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                let key = TopicKey::Name(topic.name.to_string());
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let read_committed = request.isolation_level == READ_COMMITTED;
                        list_offset(&state, node.node_id, &key, p, read_committed, version)
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }

    fn error_response(
        _node: &Node,
        request: &ListOffsetsRequest,
        _version: i16,
        code: i16,
    ) -> ListOffsetsResponse {
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }
}

fn list_offset(
    state: &ClusterState,
    node_id: i32,
    key: &TopicKey,
    request: &ListOffsetsPartition,
    read_committed: bool,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let response =
        ListOffsetsPartitionResponse::default().with_partition_index(request.partition_index);
    let partition = match state.served_partition(
        node_id,
        key,
        request.partition_index,
        request.current_leader_epoch,
    ) {
        Ok(partition) => partition,
        Err(not_served) => return response.with_error_code(not_served.code),
    };
    let log = &partition.log;
    let current_epoch = partition.leader_epoch;
    // (offset, timestamp, leader epoch); -1 for "none" throughout.
    // Kafka's "last fetchable offset": what a consumer of this isolation
    // level may read up to.
    let fetchable = if read_committed {
        log.last_stable_offset()
    } else {
        log.end_offset()
    };
    let below_fetchable = |found: (i64, i64, i32)| found.0 < fetchable;
    let (offset, timestamp, epoch) = match request.timestamp {
        LATEST => (fetchable, -1, current_epoch),
        EARLIEST | EARLIEST_LOCAL => {
            let epoch = log.epoch_at(log.start_offset()).unwrap_or(current_epoch);
            (log.start_offset(), -1, epoch)
        }
        LATEST_TIERED => (-1, -1, -1),
        MAX_TIMESTAMP => log
            .max_timestamp()
            .filter(|found| below_fetchable(*found))
            .unwrap_or((-1, -1, -1)),
        timestamp => log
            .offset_for_timestamp(timestamp)
            .filter(|found| below_fetchable(*found))
            .unwrap_or((-1, -1, -1)),
    };
    let response = response.with_offset(offset).with_timestamp(timestamp);
    // The field only exists from v4; the codec refuses it set below that.
    if version >= 4 {
        response.with_leader_epoch(epoch)
    } else {
        response
    }
}
