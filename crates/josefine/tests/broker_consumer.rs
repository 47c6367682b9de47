//! The consumer against the real brokers (Kafka 4.4, then Tansu): every offset once and
//! in order from each kind of start position, batch-at-a-time and as a stream; pause
//! and resume; close. Start positions are exact on Kafka; Tansu's ListOffsets is
//! coarser (docs/BROKERS.md).

mod common;

use std::time::Duration;

use common::real_broker;
use futures::StreamExt;
use josefine::{
    Client, Consumer, NewTopic, PartitionConsumer, Producer, ProducerRecord, StartOffset,
};

const PARTITIONS: i32 = 6;
const PER_PARTITION: usize = 1000;

/// A fresh topic with `PER_PARTITION` records `p{partition}-{i}` in each partition.
async fn filled_topic(client: &Client, prefix: &str) -> String {
    let topic = common::unique(prefix);
    client
        .admin()
        .create_topic(NewTopic::new(&topic, PARTITIONS))
        .await
        .unwrap();
    let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
    let producer = Producer::builder(client.clone()).build().unwrap();
    let mut deliveries = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let record = ProducerRecord::new(&topic)
                .partition(p)
                .value(format!("p{p}-{i}"))
                .timestamp(1_700_000_000_000 + i as i64);
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
    }
    producer.close().await.unwrap();
    common::delivered(deliveries).await;
    topic
}

fn consumer(client: &Client) -> Consumer {
    Consumer::builder(client.clone())
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .unwrap()
}

/// Reads `count` records batch-at-a-time; asserts dense offsets from `from`.
async fn read_batches(pc: &mut PartitionConsumer, from: i64, count: usize) -> Vec<String> {
    let mut values = Vec::new();
    let mut expected = from;
    while values.len() < count {
        let batch = tokio::time::timeout(Duration::from_secs(10), pc.next_batch())
            .await
            .expect("records keep coming")
            .expect("not closed")
            .unwrap();
        for record in &batch {
            let record = record.unwrap();
            assert_eq!(
                record.offset(),
                expected,
                "{}/{}",
                pc.topic(),
                pc.partition()
            );
            expected += 1;
            values.push(String::from_utf8(record.value().unwrap().to_vec()).unwrap());
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_partition_from_earliest_every_offset_once_in_order() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let topic = filled_topic(&client, "consume-all").await;
    let consumer = consumer(&client);
    let mut readers = Vec::new();
    for p in 0..PARTITIONS {
        readers.push(
            consumer
                .consume_partition(&topic, p, StartOffset::Earliest)
                .await
                .unwrap(),
        );
    }
    for (p, pc) in readers.iter_mut().enumerate() {
        let values = read_batches(pc, 0, PER_PARTITION).await;
        let expected: Vec<String> = (0..PER_PARTITION).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(values, expected);
        assert_eq!(pc.position(), PER_PARTITION as i64);
        assert_eq!(pc.high_watermark(), PER_PARTITION as i64);
        assert_eq!(pc.lag(), 0);
    }
}

#[tokio::test]
async fn the_stream_yields_records_with_topic_and_partition() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let topic = filled_topic(&client, "consume-stream").await;
    let consumer = consumer(&client);
    let mut stream = consumer
        .consume_partition(&topic, 3, StartOffset::Offset(990))
        .await
        .unwrap();
    for i in 990..PER_PARTITION {
        let record = stream.next().await.unwrap().unwrap();
        assert_eq!(record.topic(), topic);
        assert_eq!(record.partition(), 3);
        assert_eq!(record.offset(), i as i64);
        assert_eq!(record.value().unwrap(), format!("p3-{i}").as_bytes());
    }
}

#[tokio::test]
async fn start_at_an_offset_a_timestamp_and_latest() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let topic = filled_topic(&client, "consume-starts").await;
    let consumer = consumer(&client);

    let mut at_offset = consumer
        .consume_partition(&topic, 1, StartOffset::Offset(700))
        .await
        .unwrap();
    assert_eq!(read_batches(&mut at_offset, 700, 300).await[0], "p1-700");

    // Record i has timestamp base + i.
    let mut at_time = consumer
        .consume_partition(&topic, 2, StartOffset::Timestamp(1_700_000_000_000 + 250))
        .await
        .unwrap();
    let first = at_time.position();
    assert!(
        first <= 250,
        "starts at or before the first matching record"
    );
    if common::is_kafka() {
        // Kafka indexes timestamps per record; Tansu answers with a batch's base.
        assert_eq!(first, 250);
        // LATEST on a filled partition is its end (Tansu answers the last batch's
        // base offset + 1, which is wrong for multi-record batches).
        let at_end = consumer
            .consume_partition(&topic, 3, StartOffset::Latest)
            .await
            .unwrap();
        assert_eq!(at_end.position(), PER_PARTITION as i64);
    }
    let values = read_batches(&mut at_time, first, PER_PARTITION - first as usize).await;
    assert!(values.contains(&"p2-250".to_string()));

    // Latest on an empty partition, then new records arrive.
    let empty = common::unique("consume-latest");
    client
        .admin()
        .create_topic(NewTopic::new(&empty, 1))
        .await
        .unwrap();
    let mut latest = consumer
        .consume_partition(&empty, 0, StartOffset::Latest)
        .await
        .unwrap();
    assert_eq!(latest.position(), 0);
    {
        let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
        let producer = Producer::builder(client.clone()).build().unwrap();
        for i in 0..5 {
            producer
                .send(ProducerRecord::new(&empty).value(format!("new-{i}")))
                .await
                .unwrap();
        }
        producer.close().await.unwrap();
    }
    assert_eq!(
        read_batches(&mut latest, 0, 5).await,
        ["new-0", "new-1", "new-2", "new-3", "new-4"]
    );
}

#[tokio::test]
async fn pause_stops_fetching_and_resume_continues() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let topic = common::unique("consume-pause");
    client
        .admin()
        .create_topic(NewTopic::new(&topic, 1))
        .await
        .unwrap();
    let consumer = consumer(&client);
    let mut pc = consumer
        .consume_partition(&topic, 0, StartOffset::Earliest)
        .await
        .unwrap();
    pc.pause();
    assert!(pc.is_paused());
    {
        let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
        let producer = Producer::builder(client.clone()).build().unwrap();
        for i in 0..5 {
            producer
                .send(ProducerRecord::new(&topic).value(format!("v{i}")))
                .await
                .unwrap();
        }
        producer.close().await.unwrap();
    }
    // Paused: the records are in the log but none is fetched.
    let waited = tokio::time::timeout(Duration::from_millis(600), pc.next_batch()).await;
    assert!(waited.is_err(), "a paused partition delivered {waited:?}");
    pc.resume();
    assert_eq!(
        read_batches(&mut pc, 0, 5).await,
        ["v0", "v1", "v2", "v3", "v4"]
    );
}

#[tokio::test]
async fn closing_one_partition_leaves_the_others_flowing() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let topic = filled_topic(&client, "consume-close").await;
    let consumer = consumer(&client);
    let closed = consumer
        .consume_partition(&topic, 0, StartOffset::Earliest)
        .await
        .unwrap();
    let mut open = consumer
        .consume_partition(&topic, 1, StartOffset::Earliest)
        .await
        .unwrap();
    closed.close();
    assert_eq!(
        read_batches(&mut open, 0, PER_PARTITION).await.len(),
        PER_PARTITION
    );
}

#[tokio::test]
async fn an_unknown_partition_is_a_typed_error() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let consumer = consumer(&client);
    let missing = common::unique("consume-missing");
    let err = consumer
        .consume_partition(&missing, 0, StartOffset::Earliest)
        .await
        .expect_err("no such topic");
    assert_eq!(
        err.code(),
        Some(josefine::KafkaCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{err}"
    );
}
