//! What the topic holds at the end, read straight from its partitions (no group):
//! the checker's ground truth. A record the producer was told is stored but that is
//! not here was lost by the broker; a record here that no member processed was lost
//! by the group.
//!
//! In the exactly-once mode the output topic is read the way its downstream readers
//! would read it, `read_committed`, and also `read_uncommitted`, which shows what the
//! aborted transactions wrote ([`read_output`]).

use std::time::Duration;

use anyhow::Context;
use josefine::{Client, Consumer, IsolationLevel, StartOffset, TopicPartition};

/// One stored record: partition, offset, sequence number (`u64::MAX` if the value
/// is not one).
pub type Stored = (i32, i64, u64);

/// Reads every partition from its start to its high watermark.
pub async fn read_topic(
    client: &Client,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<Stored>> {
    let mut stored = Vec::new();
    for p in 0..partitions {
        // A consumer per partition: one shared would send the next partition's first
        // fetch only after its long poll for the previous one (at its end) ran out.
        let consumer = Consumer::builder(client.clone()).build()?;
        let mut reader = consumer
            .consume_partition(topic, p, StartOffset::Earliest)
            .await
            .with_context(|| format!("reading {topic}/{p}"))?;
        loop {
            // An empty partition never answers with a batch: a quiet while means done.
            let batch =
                match tokio::time::timeout(Duration::from_secs(5), reader.next_batch()).await {
                    Ok(Some(batch)) => batch.with_context(|| format!("reading {topic}/{p}"))?,
                    Ok(None) | Err(_) => break,
                };
            for record in &batch {
                let record = record?;
                let seq = record
                    .value()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX);
                stored.push((p, record.offset(), seq));
            }
            if batch.next_offset() >= batch.high_watermark() {
                break;
            }
        }
    }
    Ok(stored)
}

/// One record of the output topic: partition, offset, value (lossy UTF-8).
pub type Output = (i32, i64, String);

/// Every record of `topic` a reader at `isolation` sees, from the start of each
/// partition to its end as it is when called. Call it once no transaction writing to
/// `topic` can be open any more: a read_committed reader stops at the last stable
/// offset, so an open transaction (or a zombie's, until the coordinator aborts it)
/// would hold it below the end. The end is the high watermark, which a
/// read_committed reader reaches once every transaction below it ended (the
/// position steps over aborted records and markers). `Err` if a partition's end is
/// not reached within `timeout`.
pub async fn read_output(
    client: &Client,
    topic: &str,
    partitions: i32,
    isolation: IsolationLevel,
    timeout: Duration,
) -> anyhow::Result<Vec<Output>> {
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let ends = client
        .admin()
        .end_offsets(&tps)
        .await
        .with_context(|| format!("the ends of {topic}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut outputs = Vec::new();
    for tp in &tps {
        let end = ends[tp];
        // A consumer per partition, as in `read_topic`.
        let consumer = Consumer::builder(client.clone())
            .isolation_level(isolation)
            .build()?;
        let mut reader = consumer
            .consume_partition(topic, tp.partition, StartOffset::Earliest)
            .await
            .with_context(|| format!("reading {tp}"))?;
        while reader.position() < end {
            let batch = match tokio::time::timeout_at(deadline, reader.next_batch()).await {
                Ok(Some(batch)) => batch.with_context(|| format!("reading {tp}"))?,
                Ok(None) => anyhow::bail!("{tp}: the reader ended at {}", reader.position()),
                Err(_) => anyhow::bail!(
                    "{tp}: {isolation:?}, the position stayed at {} below the end {end} \
                     (a transaction still open?)",
                    reader.position()
                ),
            };
            for record in &batch {
                let record = record?;
                let value = record
                    .value()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                outputs.push((tp.partition, record.offset(), value));
            }
        }
    }
    Ok(outputs)
}
