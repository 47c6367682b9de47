//! Parallel, key-ordered processing with a dead-letter topic.
//!
//! ```text
//! cargo run -p josefine --example process -- localhost:9092
//! ```
//!
//! Writes 2,000 records over 50 keys to `process-example`, then processes them 100 at
//! a time with 10 ms of simulated I/O each; every 500th record fails every attempt
//! and goes to `process-example.dlq`. Records of one key never overlap. Prints the
//! rate, and exits once every record was handled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use josefine::{
    Client, ConsumerGroup, NewTopic, OffsetReset, ProcessOptions, ProcessOrder, Producer,
    ProducerRecord,
};

const TOPIC: &str = "process-example";
const DLQ: &str = "process-example.dlq";
const RECORDS: u64 = 2000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".into());
    let client = Client::builder().bootstrap([bootstrap]).connect().await?;
    for topic in [TOPIC, DLQ] {
        // An existing topic is fine: the group reads on from its last commit.
        let _ = client.admin().create_topic(NewTopic::new(topic, 3)).await;
    }
    let producer = Producer::builder(client.clone()).build()?;
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let record = ProducerRecord::new(TOPIC)
            .key(format!("customer-{}", i % 50))
            .value(format!("order {i}"));
        deliveries.push(producer.enqueue(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }

    let group = ConsumerGroup::builder(client.clone(), "process-example")
        .auto_offset_reset(OffsetReset::Earliest)
        .build()?;
    let handled = Arc::new(AtomicU64::new(0));
    let options = {
        let (dlq, handled) = (producer.clone(), handled.clone());
        ProcessOptions::new(ProcessOrder::Key, 100)
            .attempts(3, Duration::from_millis(20), Duration::from_millis(200))
            .dead_letter(move |record, failure| {
                let (dlq, handled) = (dlq.clone(), handled.clone());
                async move {
                    eprintln!(
                        "{}/{}@{} failed {} times ({}): to {DLQ}",
                        record.topic(),
                        record.partition(),
                        record.offset(),
                        failure.attempts,
                        failure.error
                    );
                    let mut out =
                        ProducerRecord::new(DLQ).value(record.value().cloned().unwrap_or_default());
                    if let Some(key) = record.key() {
                        out = out.key(key.clone());
                    }
                    dlq.send(out).await?;
                    handled.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            })
    };
    // From the first record: the join is not processing time.
    let started = Arc::new(std::sync::OnceLock::<Instant>::new());
    let running = {
        let (group, handled, started) = (group.clone(), handled.clone(), started.clone());
        tokio::spawn(async move {
            group
                .process(&[TOPIC], options, move |record| {
                    let handled = handled.clone();
                    started.get_or_init(Instant::now);
                    async move {
                        // The I/O this record waits on.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let order = std::str::from_utf8(record.value().map_or(&[][..], |v| v))
                            .unwrap_or_default()
                            .trim_start_matches("order ")
                            .parse::<u64>()
                            .unwrap_or(0);
                        if order % 500 == 499 {
                            return Err(std::io::Error::other("the payment service said no"));
                        }
                        handled.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                })
                .await
        })
    };
    while handled.load(Ordering::Relaxed) < RECORDS {
        if running.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    group.close().await?; // drains, commits, leaves
    running.await??;
    producer.close().await?;
    let n = handled.load(Ordering::Relaxed);
    println!(
        "handled {n} records in {seconds:.2} s ({:.0} records/s; one at a time per partition would take {:.0} s)",
        n as f64 / seconds,
        RECORDS as f64 * 0.010 / 3.0
    );
    Ok(())
}
