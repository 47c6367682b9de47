//! What the topic holds at the end, read straight from its partitions (no group):
//! the checker's ground truth. A record the producer was told is stored but that is
//! not here was lost by the broker; a record here that no member processed was lost
//! by the group.

use std::time::Duration;

use anyhow::Context;
use josefine::{Client, Consumer, StartOffset};

/// One stored record: partition, offset, sequence number (`u64::MAX` if the value
/// is not one).
pub type Stored = (i32, i64, u64);

/// Reads every partition from its start to its high watermark.
pub async fn read_topic(
    client: &Client,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<Stored>> {
    let consumer = Consumer::builder(client.clone()).build()?;
    let mut stored = Vec::new();
    for p in 0..partitions {
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
