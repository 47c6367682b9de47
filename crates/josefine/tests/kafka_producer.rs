//! The idempotent producer against Apache Kafka 4.4 where Tansu could not serve
//! (Tansu fences concurrent idempotent producers, so broker_producer.rs runs one at a
//! time): four producers write the same partitions at once, each with its own
//! producer id; every record arrives once, each producer's records in the order it
//! sent them, and the broker's sequence checks never refuse a batch. And an epoch bump
//! (KIP-360) after a batch lost in a paused broker (SIGSTOP, `JOSEFINE_KAFKA_PID`).

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

/// An epoch bump (KIP-360) on the real broker: Kafka is paused (SIGSTOP) while a batch
/// is in flight, so the batch times out with its fate unknown (the broker may still
/// append it when it resumes). The producer must not reuse its sequences: it moves to
/// the next epoch of the same producer id (locally, as the Java client does: Kafka
/// would answer InitProducerId with a new id), and Kafka accepts the records after the
/// pause under it. Nothing acknowledged is lost, nothing is written
/// twice, and each record that failed is in the log at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lost_in_a_paused_broker_bumps_the_epoch() {
    let kafka = real_kafka!();
    let pid: i32 = std::env::var("JOSEFINE_KAFKA_PID")
        .expect("JOSEFINE_KAFKA_PID (scripts/test.sh exports it)")
        .parse()
        .unwrap();
    let admin = common::client(&kafka.plaintext).await;
    let topic = common::unique("epoch-bump");
    admin
        .admin()
        .create_topic(NewTopic::new(&topic, 1))
        .await
        .unwrap();
    let client = Client::builder()
        .bootstrap([kafka.plaintext.as_str()])
        .request_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let producer = Producer::builder(client)
        .linger(Duration::from_millis(1))
        .request_timeout(Duration::from_secs(1))
        .delivery_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let send = |i: usize| {
        producer.enqueue(
            ProducerRecord::new(&topic)
                .partition(0)
                .value(format!("r-{i}")),
        )
    };
    for i in 0..100 {
        send(i).await.unwrap().await.unwrap();
    }

    // Paused: these are sent, then expire unanswered.
    let paused = Paused::new(pid).await;
    let mut lost = Vec::new();
    for i in 100..110 {
        lost.push(send(i).await.unwrap());
    }
    for delivery in lost {
        let err = delivery.await.expect_err("no broker to answer");
        assert_eq!(err.kind(), &josefine::ErrorKind::Timeout, "{err}");
    }
    drop(paused);

    for i in 110..200 {
        send(i).await.unwrap().await.unwrap();
    }
    producer.close().await.unwrap();

    let mut epochs = std::collections::BTreeMap::new();
    let mut values = Vec::new();
    for batch in common::partition_batches(&admin, &topic, 0).await {
        epochs
            .entry(batch.producer_id())
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(batch.producer_epoch());
        for record in batch.records() {
            values.push(String::from_utf8(record.unwrap().value().unwrap().to_vec()).unwrap());
        }
    }
    // One producer id, two epochs: the first, and the bump after the lost batch.
    assert_eq!(epochs.len(), 1, "{epochs:?}");
    let epochs: Vec<i16> = epochs.into_values().next().unwrap().into_iter().collect();
    assert_eq!(epochs.len(), 2, "{epochs:?}");
    assert_eq!(epochs[1], epochs[0] + 1);
    // Acknowledged: all there, in order; the unknown ones at most once.
    let index = |v: &str| v.trim_start_matches("r-").parse::<usize>().unwrap();
    let seen: Vec<usize> = values.iter().map(|v| index(v)).collect();
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a record written twice: {seen:?}");
    for i in (0..100).chain(110..200) {
        assert!(seen.contains(&i), "r-{i} acknowledged but not in the log");
    }
    let acked: Vec<usize> = seen
        .iter()
        .copied()
        .filter(|i| !(100..110).contains(i))
        .collect();
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "out of order: {acked:?}"
    );
}

/// A process stopped with SIGSTOP, continued (SIGCONT) when dropped.
struct Paused(i32);

impl Paused {
    /// Stops `pid` and returns once every thread of it is stopped. `kill` returns as
    /// soon as the signal is queued; the group stop begins only when one of the
    /// process's threads takes the signal, and until then the others run on (on a
    /// loaded machine, the broker answered a produce sent after `kill` returned).
    async fn new(pid: i32) -> Paused {
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        let paused = Paused(pid);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !every_thread_stopped(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "pid {pid} did not stop"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        paused
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` in its stat line).
fn every_thread_stopped(pid: i32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the broker's threads");
    tasks.flatten().all(|task| {
        // A thread that exited since the listing has nothing left to run.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            return true;
        };
        // "tid (comm) S ...": the state follows the last ')' (comm may hold one).
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        matches!(state.and_then(|s| s.chars().next()), Some('T' | 't'))
    })
}
