//! A consumer group as a stream of records, for the simple cases: one loop, records
//! of all claimed partitions interleaved, each marked once handled.
//!
//! ```text
//! cargo run -p josefine --example group_stream -- localhost:9092
//! ```
//!
//! Writes 200 records to `examples.stream`, reads them as a member of
//! `examples.group-stream`, and closes the group (committing the marks) once it has
//! read them: closing the stream commits the marks and leaves the group.

use futures::StreamExt;
use josefine::{Client, ConsumerGroup, NewTopic, OffsetReset, Producer, ProducerRecord};

const TOPIC: &str = "examples.stream";
const RECORDS: usize = 200;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".into());
    let client = Client::builder().bootstrap([bootstrap]).connect().await?;
    let _ = client.admin().create_topic(NewTopic::new(TOPIC, 2)).await;
    let producer = Producer::builder(client.clone()).build()?;
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let record = ProducerRecord::new(TOPIC)
            .key(format!("{}", i % 7))
            .value(format!("{i}"));
        deliveries.push(producer.enqueue(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;

    let group = ConsumerGroup::builder(client, "examples.group-stream")
        .auto_offset_reset(OffsetReset::Earliest)
        .build()?;
    let mut records = group.stream(&[TOPIC])?;
    let mut read = 0;
    while let Some(record) = records.next().await {
        let record = record?;
        read += 1;
        record.mark();
        if read == RECORDS {
            break;
        }
    }
    // Commits what was marked and leaves the group.
    records.close().await?;
    println!("read {read} records");
    Ok(())
}
