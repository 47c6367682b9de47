//! Turning a start position (earliest, latest, a timestamp) into an offset with
//! ListOffsets at the partition's leader (KIP-79 for timestamps).

use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::backoff::{jitter_unit, Backoff};
use crate::client::Client;
use crate::error::{Error, Result};

/// ListOffsets' special timestamps.
pub(crate) const LATEST: i64 = -1;
pub(crate) const EARLIEST: i64 = -2;

/// How often a lookup is tried before its error is final.
const ATTEMPTS: u32 = 10;

/// The offset for `timestamp` (or [`EARLIEST`] / [`LATEST`]) in `topic`/`partition`;
/// `None` when no record has a timestamp at or after it. Retries leader moves and
/// other retriable errors with backoff.
pub(crate) async fn list_offset(
    client: &Client,
    topic: &str,
    partition: i32,
    timestamp: i64,
    isolation_level: i8,
    backoff: Backoff,
) -> Result<Option<i64>> {
    let mut failures = 0;
    loop {
        let attempt = async {
            let leader = client.leader(topic, partition).await?;
            let epoch = client
                .metadata()
                .partition(topic, partition)
                .map_or(-1, |p| p.leader_epoch);
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation_level)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_current_leader_epoch(epoch)
                        .with_timestamp(timestamp)])]);
            let response = leader.call(&request).await?;
            parse(&response, partition)
        };
        match attempt.await {
            Ok(offset) => return Ok(offset),
            Err(err) if err.is_retriable() && failures + 1 < ATTEMPTS => {
                failures += 1;
                if err.is_stale_metadata() {
                    let _ = client.refresh_metadata(&[topic]).await;
                }
                let delay = backoff
                    .delay(failures, jitter_unit())
                    .max(Duration::from_millis(10));
                tokio::time::sleep(delay).await;
            }
            Err(err) => return Err(err.with_topic(topic).with_partition(partition)),
        }
    }
}

fn parse(response: &ListOffsetsResponse, partition: i32) -> Result<Option<i64>> {
    let p = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| Error::protocol("ListOffsets response does not mention the partition"))?;
    Error::check_code(p.error_code)?;
    Ok((p.offset >= 0).then_some(p.offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };

    fn response(code: i16, offset: i64) -> ListOffsetsResponse {
        ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_partitions(vec![ListOffsetsPartitionResponse::default()
                .with_partition_index(2)
                .with_error_code(code)
                .with_offset(offset)])])
    }

    #[test]
    fn offsets_errors_and_no_match() {
        assert_eq!(parse(&response(0, 42), 2).unwrap(), Some(42));
        assert_eq!(parse(&response(0, -1), 2).unwrap(), None);
        let err = parse(&response(6, -1), 2).unwrap_err();
        assert!(err.is_stale_metadata() && err.is_retriable());
        assert!(parse(&response(0, 1), 3).is_err());
    }
}
