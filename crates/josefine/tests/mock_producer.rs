//! The producer against the mock cluster with faults: leader moves, dropped
//! connections, slow responses, lost producer state, oversized batches, closing with
//! records in flight. Each test reads the partition log back and checks every record
//! is there exactly once, in the order sent.

use std::time::Duration;

use josefine::protocol::records::{batches, DecodeOptions};
use josefine::Acks;
use josefine::{Client, ErrorKind, Producer, ProducerBuilder, ProducerRecord};
use josefine_mock::{Action, ApiKey, Intercept, MockCluster, UnknownProducer};

const TOPIC: &str = "orders";

async fn cluster(brokers: i32, partitions: i32) -> MockCluster {
    MockCluster::builder()
        .brokers(brokers)
        .topic(TOPIC, partitions)
        .start()
        .await
        .unwrap()
}

async fn producer(
    cluster: &MockCluster,
    configure: impl FnOnce(ProducerBuilder) -> ProducerBuilder,
) -> Producer {
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .request_timeout(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    let builder = Producer::builder(client)
        .linger(Duration::from_millis(2))
        .batch_size(2048)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50));
    configure(builder).build().unwrap()
}

/// The values stored in `partition`, in log order.
fn log_values(cluster: &MockCluster, partition: i32) -> Vec<String> {
    let mut values = Vec::new();
    for batch in cluster.batches(TOPIC, partition) {
        for b in batches(batch, &DecodeOptions::default()) {
            for r in b.unwrap().records() {
                values.push(String::from_utf8(r.unwrap().value().unwrap().to_vec()).unwrap());
            }
        }
    }
    values
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("record-{i}")).collect()
}

/// Sends `range` to partition 0 without waiting; returns the deliveries.
async fn send_range(producer: &Producer, range: std::ops::Range<usize>) -> Vec<josefine::Delivery> {
    let mut deliveries = Vec::new();
    for i in range {
        let record = ProducerRecord::new(TOPIC)
            .partition(0)
            .value(format!("record-{i}"));
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    deliveries
}

async fn all_delivered(deliveries: Vec<josefine::Delivery>) -> Vec<i64> {
    let mut offsets = Vec::new();
    for d in deliveries {
        offsets.push(d.await.unwrap().offset);
    }
    offsets
}

#[tokio::test]
async fn a_leader_move_mid_stream_loses_and_duplicates_nothing() {
    let cluster = cluster(3, 1).await;
    let producer = producer(&cluster, |b| b).await;
    let first = send_range(&producer, 0..500).await;
    all_delivered(first).await;
    assert_eq!(cluster.leader(TOPIC, 0), Some(1));
    cluster.move_leader(TOPIC, 0, 2);
    let second = send_range(&producer, 500..1000).await;
    let offsets = all_delivered(second).await;
    assert_eq!(offsets, (500..1000).collect::<Vec<i64>>());
    assert_eq!(log_values(&cluster, 0), expected(1000));
    let moved = cluster
        .broker(2)
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::Produce)
        .count();
    assert!(moved > 0, "the new leader got the later batches");
}

#[tokio::test]
async fn a_response_lost_with_its_connection_is_retried_once_written() {
    let cluster = cluster(1, 1).await;
    let producer = producer(&cluster, |b| b).await;
    all_delivered(send_range(&producer, 0..100).await).await;
    // The broker writes the batch, then the connection dies mid-answer: the retry
    // carries the same sequence and the broker recognises it.
    cluster
        .broker(1)
        .intercept(Intercept::api(ApiKey::Produce).once(), Action::HalfResponse);
    all_delivered(send_range(&producer, 100..300).await).await;
    // And once more with the request dropped before the broker saw it.
    cluster
        .broker(1)
        .intercept(Intercept::api(ApiKey::Produce).once(), Action::Disconnect);
    all_delivered(send_range(&producer, 300..400).await).await;
    assert_eq!(log_values(&cluster, 0), expected(400));
    assert!(cluster.broker(1).connection_count() >= 3);
}

#[tokio::test]
async fn a_response_slower_than_the_timeout_is_retried_without_a_duplicate() {
    let cluster = cluster(1, 1).await;
    let producer = producer(&cluster, |b| {
        b.request_timeout(Duration::from_millis(300))
            .delivery_timeout(Duration::from_secs(10))
    })
    .await;
    cluster.broker(1).intercept(
        Intercept::api(ApiKey::Produce).once(),
        Action::Delay(Duration::from_millis(1500)),
    );
    let offsets = all_delivered(send_range(&producer, 0..200).await).await;
    assert_eq!(offsets, (0..200).collect::<Vec<i64>>());
    // Give the delayed original time to reach the log, if it is going to.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(log_values(&cluster, 0), expected(200));
}

#[tokio::test]
async fn lost_producer_state_bumps_the_epoch_and_keeps_order() {
    for answer in [
        UnknownProducer::OutOfOrderSequence,
        UnknownProducer::UnknownProducerId,
    ] {
        let cluster = cluster(1, 1).await;
        cluster.set_unknown_producer(answer);
        let producer = producer(&cluster, |b| b).await;
        all_delivered(send_range(&producer, 0..300).await).await;
        cluster.forget_producer_state();
        all_delivered(send_range(&producer, 300..600).await).await;
        assert_eq!(log_values(&cluster, 0), expected(600), "{answer:?}");
        let bumps = cluster
            .broker(1)
            .requests()
            .iter()
            .filter(|r| r.api_key == ApiKey::InitProducerId)
            .count();
        // The bump is the producer's own (KIP-360, as the Java client does it):
        // the same producer id at the next epoch, no second InitProducerId.
        assert_eq!(bumps, 1, "one InitProducerId, at start ({answer:?})");
        let mut identities = std::collections::BTreeSet::new();
        for batch in cluster.batches(TOPIC, 0) {
            for b in batches(batch, &DecodeOptions::default()) {
                let b = b.unwrap();
                identities.insert((b.producer_id(), b.producer_epoch()));
            }
        }
        let identities: Vec<(i64, i16)> = identities.into_iter().collect();
        assert_eq!(identities.len(), 2, "{identities:?}");
        assert_eq!(identities[0].0, identities[1].0, "the id is kept");
        assert_eq!(identities[1].1, identities[0].1 + 1, "the next epoch");
        producer.close().await.unwrap();
    }
}

#[tokio::test]
async fn an_epoch_bump_works_with_brokers_that_hand_out_new_ids() {
    let cluster = cluster(1, 1).await;
    cluster.set_init_producer_id_bumps_epoch(false);
    let producer = producer(&cluster, |b| b).await;
    all_delivered(send_range(&producer, 0..100).await).await;
    cluster.forget_producer_state();
    all_delivered(send_range(&producer, 100..200).await).await;
    assert_eq!(log_values(&cluster, 0), expected(200));
}

#[tokio::test]
async fn delivery_timeout_ends_retries_with_a_clear_error() {
    let cluster = cluster(1, 1).await;
    let producer = producer(&cluster, |b| {
        b.request_timeout(Duration::from_millis(200))
            .delivery_timeout(Duration::from_millis(800))
    })
    .await;
    cluster.broker(1).intercept(
        Intercept::api(ApiKey::Produce),
        Action::error(josefine_mock::ResponseError::NotLeaderOrFollower),
    );
    let started = tokio::time::Instant::now();
    let err = producer
        .send(ProducerRecord::new(TOPIC).partition(0).value("doomed"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("delivery.timeout.ms"), "{err}");
    assert!(
        err.to_string().contains("NotLeaderOrFollower"),
        "the last error is named: {err}"
    );
    assert_eq!(err.context().topic(), Some(TOPIC));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(log_values(&cluster, 0).is_empty());
}

#[tokio::test]
async fn close_with_records_in_flight_loses_none() {
    let cluster = cluster(3, 3).await;
    let producer = producer(&cluster, |b| b).await;
    for node in 1..=3 {
        cluster.broker(node).intercept(
            Intercept::api(ApiKey::Produce).once(),
            Action::Delay(Duration::from_millis(200)),
        );
    }
    let mut deliveries = Vec::new();
    for i in 0..3000 {
        let record = ProducerRecord::new(TOPIC)
            .key(format!("k{i}"))
            .value(format!("record-{i}"));
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    producer.close().await.unwrap();
    assert_eq!(producer.pending(), 0);
    let mut reported = 0;
    for d in deliveries {
        d.await
            .expect("every record delivered before close returns");
        reported += 1;
    }
    assert_eq!(reported, 3000);
    let mut stored: Vec<String> = (0..3).flat_map(|p| log_values(&cluster, p)).collect();
    stored.sort();
    let mut sent = expected(3000);
    sent.sort();
    assert_eq!(stored, sent);
    let err = producer
        .send(ProducerRecord::new(TOPIC).value("late"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Closed);
}

#[tokio::test]
async fn a_batch_the_broker_finds_too_large_is_split() {
    let cluster = cluster(1, 1).await;
    // The mock, like Kafka's default message.max.bytes, refuses batches over ~1 MiB.
    let producer = producer(&cluster, |b| {
        b.batch_size(4 << 20)
            .max_request_size(8 << 20)
            .buffer_memory(64 << 20)
            .linger(Duration::from_millis(50))
    })
    .await;
    let mut deliveries = Vec::new();
    for i in 0..30 {
        let value = format!("record-{i}:{}", "x".repeat(100_000));
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new(TOPIC).partition(0).value(value))
                .await
                .unwrap(),
        );
    }
    let offsets = all_delivered(deliveries).await;
    assert_eq!(offsets, (0..30).collect::<Vec<i64>>());
    let stored: Vec<String> = log_values(&cluster, 0)
        .into_iter()
        .map(|v| v.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(stored, expected(30));
}

#[tokio::test]
async fn acks_zero_reports_no_offsets_and_writes_everything() {
    let cluster = cluster(1, 1).await;
    let producer = producer(&cluster, |b| b.acks(Acks::None)).await;
    let offsets = all_delivered(send_range(&producer, 0..100).await).await;
    assert!(offsets.iter().all(|&o| o == -1));
    producer.close().await.unwrap();
    // Nothing is answered, so give the broker a moment to finish writing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(log_values(&cluster, 0), expected(100));
}

#[tokio::test]
async fn conflicting_settings_are_config_errors() {
    let cluster = cluster(1, 1).await;
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .connect()
        .await
        .unwrap();
    let err = Producer::builder(client.clone())
        .acks(Acks::Leader)
        .idempotence(true)
        .build()
        .err()
        .unwrap();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.to_string().contains("acks"), "{err}");
    let err = Producer::builder(client.clone())
        .delivery_timeout(Duration::from_secs(1))
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("delivery.timeout.ms"), "{err}");
    // acks=1 without an explicit choice turns idempotence off instead of failing.
    assert!(Producer::builder(client).acks(Acks::Leader).build().is_ok());
}

/// A broker that has just started answers InitProducerId with
/// COORDINATOR_LOAD_IN_PROGRESS for a while (Kafka does, before its producer id
/// manager is ready). Records enqueued and the producer closed at once: the id is
/// retried and every record delivered; closing does not give up on them.
#[tokio::test]
async fn close_waits_for_a_producer_id_the_broker_is_still_loading() {
    let cluster = cluster(1, 1).await;
    let loading = cluster.broker(1).intercept(
        Intercept::api(ApiKey::InitProducerId).times(3),
        Action::error(josefine_mock::ResponseError::CoordinatorLoadInProgress),
    );
    let producer = producer(&cluster, |b| b).await;
    let deliveries = send_range(&producer, 0..20).await;
    producer.close().await.unwrap();
    assert_eq!(loading.hits(), 3);
    assert_eq!(
        all_delivered(deliveries).await,
        (0..20).collect::<Vec<i64>>()
    );
    assert_eq!(log_values(&cluster, 0), expected(20));
}

/// The same broker loading forever: closing still ends, once the records waited
/// `delivery.timeout.ms`, and each delivery says why it failed.
#[tokio::test]
async fn records_waiting_for_a_producer_id_expire_after_the_delivery_timeout() {
    let cluster = cluster(1, 1).await;
    cluster.broker(1).intercept(
        Intercept::api(ApiKey::InitProducerId),
        Action::error(josefine_mock::ResponseError::CoordinatorLoadInProgress),
    );
    let producer = producer(&cluster, |b| {
        b.delivery_timeout(Duration::from_millis(2500))
            .request_timeout(Duration::from_millis(2000))
    })
    .await;
    let deliveries = send_range(&producer, 0..5).await;
    tokio::time::timeout(Duration::from_secs(20), producer.close())
        .await
        .expect("close ends once the records expired")
        .unwrap();
    for d in deliveries {
        let err = d.await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
        assert!(err.to_string().contains("delivery.timeout.ms"), "{err}");
    }
    assert!(log_values(&cluster, 0).is_empty());
}

/// A partitioner of the user's: every keyless record to one partition, and a count of
/// the full batches it was told about.
#[derive(Default)]
struct ToPartitionTwo {
    full: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl josefine::Partitioner for ToPartitionTwo {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, _partitions: i32) -> i32 {
        2
    }

    fn on_batch_full(&self, _topic: &str, _partition: i32) {
        self.full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_custom_partitioner_places_records_and_hears_of_full_batches() {
    let cluster = cluster(1, 4).await;
    let partitioner = ToPartitionTwo::default();
    let full = partitioner.full.clone();
    let producer = producer(&cluster, |b| b.partitioner(partitioner)).await;
    let mut deliveries = Vec::new();
    for i in 0..300 {
        let record = ProducerRecord::new(TOPIC).value(format!("record-{i}"));
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    // A record that names its partition goes there, whatever the partitioner says.
    let named = ProducerRecord::new(TOPIC).partition(1).value("named");
    let named = producer.send(named).await.unwrap();
    assert_eq!(named.partition, 1);
    for d in deliveries {
        assert_eq!(d.await.unwrap().partition, 2);
    }
    assert_eq!(log_values(&cluster, 2), expected(300));
    // 300 records of about 30 bytes each in a batch fill batches of 2,048 bytes at
    // least twice.
    assert!(full.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    producer.close().await.unwrap();
}

#[tokio::test]
async fn keyed_records_follow_a_partition_count_that_grew() {
    let cluster = cluster(1, 3).await;
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .connect()
        .await
        .unwrap();
    let producer = Producer::builder(client.clone())
        .linger(Duration::from_millis(2))
        .build()
        .unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("key-{i}")).collect();
    let where_to = |partitions: i32| -> Vec<i32> {
        let p = josefine::DefaultPartitioner::default();
        keys.iter()
            .map(|k| josefine::Partitioner::partition(&p, TOPIC, Some(k.as_bytes()), partitions))
            .collect()
    };
    assert_ne!(where_to(3), where_to(12));
    let send_keys = || async {
        let mut placed = Vec::new();
        for key in &keys {
            let record = ProducerRecord::new(TOPIC).key(key.clone()).value("v");
            placed.push(producer.send(record).await.unwrap().partition);
        }
        placed
    };
    assert_eq!(send_keys().await, where_to(3));
    client.admin().create_partitions(TOPIC, 12).await.unwrap();
    // The producer learns of the new partitions with its client's next refresh.
    client.refresh_metadata(&[TOPIC]).await.unwrap();
    assert_eq!(send_keys().await, where_to(12));
    producer.close().await.unwrap();
}
