//! The idempotent producer against Apache Kafka 4.4 where Tansu could not serve
//! (Tansu fences concurrent idempotent producers, so broker_producer.rs runs one at a
//! time): four producers write the same partitions at once, each with its own
//! producer id; every record arrives once, each producer's records in the order it
//! sent them, and the broker's sequence checks never refuse a batch.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::real_kafka;
use josefine::{Client, NewTopic, Producer, ProducerRecord};

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 5_000;
const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_idempotent_producers_each_arrive_once_and_in_order() {
    let kafka = real_kafka!();
    let admin = common::client(&kafka.plaintext).await;
    let topic = common::unique("idempotent-many");
    admin
        .admin()
        .create_topic(NewTopic::new(&topic, PARTITIONS))
        .await
        .unwrap();

    let writers = (0..PRODUCERS).map(|w| {
        let (addr, topic) = (kafka.plaintext.clone(), topic.clone());
        tokio::spawn(async move {
            let client = Client::builder().bootstrap([addr]).connect().await.unwrap();
            // Small batches and several in flight: many sequence numbers per partition.
            let producer = Producer::builder(client)
                .linger(Duration::from_millis(1))
                .batch_size(2048)
                .build()
                .unwrap();
            let mut deliveries = Vec::with_capacity(PER_PRODUCER);
            for i in 0..PER_PRODUCER {
                let record = ProducerRecord::new(&topic)
                    .key(format!("w{w}-k{}", i % 16))
                    .value(format!("w{w}-{i}"));
                deliveries.push(producer.enqueue(record).await.unwrap());
            }
            producer.close().await.unwrap();
            common::delivered(deliveries).await;
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.unwrap();
    }

    // Read every partition back: each value once, each writer's values for one key in
    // the order it sent them (keys map to one partition each).
    let mut total = 0;
    let mut last_by_key: HashMap<String, usize> = HashMap::new();
    let mut producer_ids = std::collections::BTreeSet::new();
    for p in 0..PARTITIONS {
        for batch in common::partition_batches(&admin, &topic, p).await {
            producer_ids.insert(batch.producer_id());
            for record in batch.records() {
                let record = record.unwrap();
                total += 1;
                let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
                let value = String::from_utf8(record.value().unwrap().to_vec()).unwrap();
                let i: usize = value.rsplit('-').next().unwrap().parse().unwrap();
                if let Some(previous) = last_by_key.insert(key.clone(), i) {
                    assert!(previous < i, "{key}: {i} after {previous}");
                }
            }
        }
    }
    assert_eq!(total, PRODUCERS * PER_PRODUCER, "every record once");
    assert_eq!(last_by_key.len(), PRODUCERS * 16);
    assert!(
        producer_ids.len() >= PRODUCERS && !producer_ids.contains(&-1),
        "one producer id each: {producer_ids:?}"
    );
}
