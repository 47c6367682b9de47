//! A partition's offsets: where its log starts and ends, or where a time falls in it
//! (ListOffsets, KIP-79; the end is the high watermark from a Fetch, since Tansu
//! answers ListOffsets LATEST wrongly), and **DeleteRecords** (key 21), which moves
//! the log start forward, at each partition's leader.

use std::collections::HashMap;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Admin;
use crate::consumer::list_offsets::{list_offsets, EARLIEST};
use crate::consumer::StartOffset;
use crate::error::{Error, Result};
use crate::TopicPartition;

impl Admin {
    /// Each partition's offset `at`: its log start (`Earliest`), its end (`Latest`, the
    /// high watermark), the first record at or after a time (`Timestamp`, ms since
    /// the epoch; the end when there is none), or the offset given (`Offset`).
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        at: StartOffset,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let ends = match at {
            StartOffset::Latest | StartOffset::Timestamp(_) => self.end_offsets(partitions).await?,
            _ => HashMap::new(),
        };
        let timestamp = match at {
            StartOffset::Earliest => Some(EARLIEST),
            StartOffset::Timestamp(ts) => Some(ts),
            StartOffset::Latest | StartOffset::Offset(_) => None,
        };
        let found = match timestamp {
            Some(timestamp) => {
                let wanted: Vec<(TopicPartition, i64)> = partitions
                    .iter()
                    .map(|tp| (tp.clone(), timestamp))
                    .collect();
                let backoff = self.client.retry_backoff();
                list_offsets(&self.client, &wanted, 0, backoff).await
            }
            None => Vec::new(),
        };
        let end = |tp: &TopicPartition| {
            ends.get(tp)
                .copied()
                .ok_or_else(|| Error::protocol(format!("no end offset was read for {tp}")))
        };
        let mut offsets = HashMap::with_capacity(partitions.len());
        for (i, tp) in partitions.iter().enumerate() {
            let offset = match at {
                StartOffset::Earliest => found[i].clone()?.unwrap_or(0),
                StartOffset::Latest => end(tp)?,
                // A time after every record: the end.
                StartOffset::Timestamp(_) => match found[i].clone()? {
                    Some(offset) => offset,
                    None => end(tp)?,
                },
                StartOffset::Offset(offset) => offset,
            };
            offsets.insert(tp.clone(), offset);
        }
        Ok(offsets)
    }

    /// Deletes the records before each given offset (DeleteRecords at the partition's
    /// leader): the log start moves there, and readers below it get
    /// OFFSET_OUT_OF_RANGE. Returns each partition's new log start, or its own error
    /// (OFFSET_OUT_OF_RANGE for an offset past the end, POLICY_VIOLATION on a
    /// compacted topic).
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Result<i64>)>> {
        let timeout = self.request_timeout();
        let outcomes = futures::future::join_all(before.iter().map(|(tp, offset)| async move {
            let outcome = async {
                let leader = self.client.leader(&tp.topic, tp.partition).await?;
                let request = DeleteRecordsRequest::default()
                    .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
                    .with_topics(vec![DeleteRecordsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
                        .with_partitions(vec![DeleteRecordsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_offset(*offset)])]);
                let response = leader.call(&request).await?;
                let partition = response
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .find(|p| p.partition_index == tp.partition)
                    .ok_or_else(|| {
                        Error::protocol("DeleteRecords answered without the partition")
                    })?;
                Error::check_code(partition.error_code)?;
                Ok(partition.low_watermark)
            }
            .await
            .map_err(|e: Error| e.with_topic(&*tp.topic).with_partition(tp.partition));
            (tp.clone(), outcome)
        }))
        .await;
        Ok(outcomes)
    }
}
