//! Reading one partition directly, without a group: from the earliest offset to the
//! end it had when the program started.
//!
//! ```text
//! cargo run -p josefine --example consume_partition -- localhost:9092
//! ```
//!
//! Writes 100 records to partition 0 of `examples.partition` first. A partition
//! consumer commits nothing: the program chooses where to start (`StartOffset`).

use josefine::{Client, Consumer, NewTopic, Producer, ProducerRecord, StartOffset, TopicPartition};

const TOPIC: &str = "examples.partition";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".into());
    let client = Client::builder().bootstrap([bootstrap]).connect().await?;
    let _ = client.admin().create_topic(NewTopic::new(TOPIC, 1)).await;
    let producer = Producer::builder(client.clone()).build()?;
    let mut deliveries = Vec::new();
    for i in 0..100 {
        let record = ProducerRecord::new(TOPIC)
            .partition(0)
            .value(format!("reading {i}"));
        deliveries.push(producer.enqueue(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;

    let partition = TopicPartition::new(TOPIC, 0);
    let end = client
        .admin()
        .end_offsets(std::slice::from_ref(&partition))
        .await?[&partition];
    let consumer = Consumer::builder(client).build()?;
    let mut reader = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await?;
    let (mut records, mut bytes) = (0u64, 0usize);
    while reader.position() < end {
        let Some(batch) = reader.next_batch().await else {
            break;
        };
        for record in batch?.iter() {
            let record = record?;
            records += 1;
            bytes += record.value().map_or(0, |v| v.len());
            if record.offset() + 1 == end {
                let value = String::from_utf8_lossy(record.value().map_or(&[][..], |v| v));
                println!("last record, offset {}: {value}", record.offset());
            }
        }
    }
    println!("read {records} records ({bytes} value bytes) up to offset {end}");
    Ok(())
}
