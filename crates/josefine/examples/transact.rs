//! Exactly-once read-transform-write with `ConsumerGroup::transact`.
//!
//! ```text
//! cargo run -p josefine --example transact -- localhost:9092
//! ```
//!
//! Writes 1,000 orders to `transact-example.orders`, then transforms each into one
//! record of `transact-example.sizes` (the order's size), the outputs and the input
//! offsets committed in the same transactions. Reads the outputs back as a
//! `read_committed` consumer would and exits once each order's output is there. Run
//! it again: the group goes on from its committed offsets, so only the new orders
//! are transformed, each once.

use std::collections::HashSet;
use std::time::Duration;

use josefine::{
    Client, Consumer, ConsumerGroup, IsolationLevel, NewTopic, OffsetReset, Producer,
    ProducerRecord, StartOffset, TopicPartition,
};

const ORDERS: &str = "transact-example.orders";
const SIZES: &str = "transact-example.sizes";
const RECORDS: u64 = 1000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".into());
    let client = Client::builder().bootstrap([bootstrap]).connect().await?;
    for topic in [ORDERS, SIZES] {
        // An existing topic is fine.
        let _ = client.admin().create_topic(NewTopic::new(topic, 1)).await;
    }
    let run = std::process::id();
    let orders = Producer::builder(client.clone()).build()?;
    for i in 0..RECORDS {
        let order = format!("run {run} order {i}: {}", "x".repeat((i % 40) as usize));
        orders
            .send(ProducerRecord::new(ORDERS).value(order))
            .await?;
    }
    orders.close().await?;

    let group = ConsumerGroup::builder(client.clone(), "transact-example")
        .auto_offset_reset(OffsetReset::Earliest)
        .consumer(|c| c.isolation_level(IsolationLevel::ReadCommitted))
        .build()?;
    // One stable transactional id per instance of the pipeline.
    let producer = Producer::builder(client.clone())
        .transactional_id("transact-example-0")
        .build()?;
    let runner = group.clone();
    let pipeline = tokio::spawn(async move {
        runner
            .transact(
                &[ORDERS],
                producer,
                Duration::from_millis(100),
                |order| async move {
                    let text = String::from_utf8_lossy(order.value().map_or(&[][..], |v| v));
                    let (id, body) = text.split_once(": ").unwrap_or((&text, ""));
                    let size =
                        ProducerRecord::new(SIZES).value(format!("{id}: {} bytes", body.len()));
                    Ok::<_, std::io::Error>(vec![size])
                },
            )
            .await
    });

    // Read the outputs as a read_committed reader until this run's orders are all
    // there (each exactly once).
    let reader = Consumer::builder(client.clone())
        .isolation_level(IsolationLevel::ReadCommitted)
        .build()?;
    let mut sizes = reader
        .consume_partition(SIZES, 0, StartOffset::Earliest)
        .await?;
    let prefix = format!("run {run} ");
    let mut seen = HashSet::new();
    while (seen.len() as u64) < RECORDS {
        let batch = sizes.next_batch().await.ok_or("the reader ended")??;
        for record in batch.iter() {
            let record = record?;
            let text = String::from_utf8_lossy(record.value().map_or(&[][..], |v| v)).to_string();
            if text.starts_with(&prefix) && !seen.insert(text.clone()) {
                return Err(format!("a duplicate output: {text}").into());
            }
        }
    }
    println!("{RECORDS} orders transformed, each output committed once");
    group.close().await?;
    pipeline.await??;
    let committed = client
        .admin()
        .committed_offsets("transact-example", &[TopicPartition::new(ORDERS, 0)])
        .await?;
    println!("the group's committed offset: {committed:?}");
    Ok(())
}
