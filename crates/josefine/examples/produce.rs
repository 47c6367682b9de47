//! Producing: one record awaited, then a thousand enqueued and awaited together.
//!
//! ```text
//! cargo run -p josefine --example produce -- localhost:9092
//! ```
//!
//! `send` waits for the broker's acknowledgement; `enqueue` returns once the record is
//! in the producer's buffer, with a `Delivery` to await (batching happens meanwhile).
//! Records of one key go to one partition. `close` sends what is buffered first.

use std::time::Duration;

use josefine::{Client, Compression, NewTopic, Producer, ProducerRecord};

const TOPIC: &str = "examples.produce";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".into());
    let client = Client::builder().bootstrap([bootstrap]).connect().await?;
    // An existing topic is fine.
    let _ = client.admin().create_topic(NewTopic::new(TOPIC, 3)).await;
    let producer = Producer::builder(client)
        .compression(Compression::Lz4, None)
        .linger(Duration::from_millis(5))
        .build()?;

    let report = producer
        .send(
            ProducerRecord::new(TOPIC)
                .key("customer-1")
                .value("first order"),
        )
        .await?;
    println!(
        "first order at {}/{} offset {}",
        report.topic, report.partition, report.offset
    );

    let mut deliveries = Vec::new();
    for i in 0..1000 {
        let record = ProducerRecord::new(TOPIC)
            .key(format!("customer-{}", i % 10))
            .value(format!("order {i}"))
            .header("source", "examples/produce.rs");
        deliveries.push(producer.enqueue(record).await?);
    }
    let mut per_partition = [0u32; 3];
    for delivery in deliveries {
        let report = delivery.await?;
        per_partition[report.partition as usize] += 1;
    }
    println!("1000 more orders, per partition: {per_partition:?}");
    producer.close().await?;
    Ok(())
}
