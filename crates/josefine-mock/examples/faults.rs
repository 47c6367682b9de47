//! Injecting faults while a client works, and checking that it recovers.
//!
//! A producer writes 300 payments to a three-broker mock cluster while the
//! cluster misbehaves on a timer: every broker is slow (20 ms, plus up to
//! 10 ms of jitter), the leader of partition 0 answers two Produce requests
//! with the retriable NOT_LEADER_OR_FOLLOWER, the leaders of partitions 1 and
//! 2 move to other brokers, and every connection is dropped twice. Then a
//! consumer reads everything back while connections keep dropping every
//! 250 ms.
//!
//! What the test wants: every payment delivered exactly once (the
//! idempotent producer's retries are deduplicated by the broker), in order
//! per account, and read back in full; and the faults really happened (the
//! intercept fired, clients reconnected).
//!
//! Run it with `cargo run -p josefine-mock --example faults`;
//! `tests/examples.rs` runs the same scenario as a test.

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Duration;

use josefine::{Consumer, Producer, ProducerRecord, StartOffset};
use josefine_mock::{Action, ApiKey, Intercept, MockCluster, ResponseError};

type BoxError = Box<dyn Error + Send + Sync>;

const TOPIC: &str = "payments";
const PARTITIONS: i32 = 3;
const PAYMENTS: usize = 300;
const ACCOUNTS: usize = 10;
const PATIENCE: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the scenario saw, for `main` to print and the test to check.
#[derive(Debug)]
pub struct Report {
    /// Payments delivered by the producer.
    pub delivered: usize,
    /// Payments read back by the consumer, per partition, in offset order.
    pub read: BTreeMap<i32, Vec<String>>,
    /// Produce requests the injected NOT_LEADER_OR_FOLLOWER answered.
    pub injected_errors: usize,
    /// Connections the brokers accepted in all (the client reconnecting
    /// after every drop).
    pub connections: u64,
    /// The partitions' leaders at the end.
    pub leaders: Vec<Option<i32>>,
}

/// Runs the scenario and checks that the client recovered from every fault.
pub async fn run() -> Result<Report, BoxError> {
    let cluster = MockCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .start()
        .await?;
    let client = cluster.client().await?;
    let producer = Producer::builder(client.clone()).linger(ms(5)).build()?;

    // Latency: every broker answers 20-30 ms late.
    cluster.set_latency(ms(20));
    cluster.set_latency_jitter(ms(10));
    // A retriable error: the leader of partition 0 refuses two Produce requests.
    let leader_0 = cluster.leader(TOPIC, 0).ok_or("partition 0 has a leader")?;
    let refusals = cluster.broker(leader_0).intercept(
        Intercept::api(ApiKey::Produce).times(2),
        Action::error(ResponseError::NotLeaderOrFollower),
    );
    // Leader moves and dropped connections, while the producer works.
    let leader_1 = cluster.leader(TOPIC, 1).ok_or("partition 1 has a leader")?;
    let leader_2 = cluster.leader(TOPIC, 2).ok_or("partition 2 has a leader")?;
    let faults = cluster
        .script()
        .after(ms(100), move |c| c.move_leader(TOPIC, 1, leader_1 % 3 + 1))
        .after(ms(100), |c| c.drop_connections())
        .after(ms(100), move |c| c.move_leader(TOPIC, 2, leader_2 % 3 + 1))
        .after(ms(100), |c| c.drop_connections())
        .start();

    // Produce a payment every 2 ms, keyed by account, without waiting for
    // each; then wait for every delivery.
    let mut deliveries = Vec::with_capacity(PAYMENTS);
    for i in 0..PAYMENTS {
        let record = ProducerRecord::new(TOPIC)
            .key(format!("account-{}", i % ACCOUNTS))
            .value(format!("payment-{i}"));
        deliveries.push(producer.enqueue(record).await?);
        tokio::time::sleep(ms(2)).await;
    }
    for delivery in deliveries {
        delivery.await?;
    }
    tokio::time::timeout(PATIENCE, faults.wait()).await?;
    producer.close().await?;

    // Read everything back while connections keep dropping.
    let flapping = cluster.every(ms(250), |c| c.drop_connections());
    let consumer = Consumer::builder(client.clone())
        .fetch_max_wait(ms(100))
        .retry_backoff(ms(10), ms(100))
        .build()?;
    let mut read = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let end = cluster.log_end_offset(TOPIC, partition);
        let mut reader = consumer
            .consume_partition(TOPIC, partition, StartOffset::Earliest)
            .await?;
        let mut values = Vec::new();
        while reader.position() < end {
            let batch = tokio::time::timeout(PATIENCE, reader.next_batch())
                .await?
                .ok_or("the partition consumer closed")??;
            for record in &batch {
                let record = record?;
                let value = record.value().ok_or("a payment without a value")?;
                values.push(String::from_utf8(value.to_vec())?);
            }
        }
        read.insert(partition, values);
    }
    flapping.cancel();

    let report = Report {
        delivered: PAYMENTS,
        read,
        injected_errors: refusals.hits(),
        connections: cluster.brokers().iter().map(|b| b.connection_count()).sum(),
        leaders: (0..PARTITIONS).map(|p| cluster.leader(TOPIC, p)).collect(),
    };

    // Exactly once: every payment read back once...
    let mut seen: Vec<&String> = report.read.values().flatten().collect();
    seen.sort();
    let total = seen.len();
    seen.dedup();
    if total != PAYMENTS || seen.len() != PAYMENTS {
        return Err(format!(
            "read {total} payments, {} distinct, of {PAYMENTS}",
            seen.len()
        )
        .into());
    }
    // ... each account's payments in the order they were sent.
    for values in report.read.values() {
        let mut last: BTreeMap<usize, usize> = BTreeMap::new();
        for value in values {
            let i: usize = value.trim_start_matches("payment-").parse()?;
            if let Some(previous) = last.insert(i % ACCOUNTS, i) {
                if previous > i {
                    return Err(format!("payment {i} came after payment {previous}").into());
                }
            }
        }
    }
    // And the faults did happen.
    if report.injected_errors != 2 {
        return Err(format!("the intercept fired {} times", report.injected_errors).into());
    }
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // RUST_LOG=debug shows what the client and the mock do.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let report = run().await?;
    println!(
        "{} payments delivered and read back exactly once despite {} injected errors, \
         {} connections (reconnects included) and leaders moved to {:?}",
        report.delivered, report.injected_errors, report.connections, report.leaders
    );
    for (partition, values) in &report.read {
        println!("partition {partition}: {} payments", values.len());
    }
    Ok(())
}
