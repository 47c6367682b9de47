//! A consumer group member with a handler: each claimed partition runs on its own
//! task, records are marked once handled, and marked offsets are committed.
//!
//! ```text
//! cargo run -p josefine --example group_handler -- localhost:9092
//! ```
//!
//! Writes 300 records to `examples.group` (3 partitions), then consumes them as a
//! member of `examples.group-handler` and closes the group once it has handled all it
//! was given: the close commits the last marks and leaves the group. Run it again
//! and the group starts where it stopped (the 300 new records only).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use josefine::{
    Claim, Client, ConsumerGroup, GroupHandler, NewTopic, OffsetReset, Producer, ProducerRecord,
    Session,
};

const TOPIC: &str = "examples.group";
const RECORDS: u64 = 300;

struct Orders {
    handled: Arc<AtomicU64>,
}

impl GroupHandler for Orders {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        let claims: Vec<String> = session.claims().iter().map(|tp| tp.to_string()).collect();
        println!(
            "generation {}: claims {}",
            session.generation(),
            claims.join(", ")
        );
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        // Ends when the partition is revoked (a rebalance) or the group closes.
        while let Some(record) = claim.next().await {
            let record = record?;
            // The work: here, counting.
            self.handled.fetch_add(1, Ordering::Relaxed);
            // Committed by the next commit (offset + 1), never before this line.
            session.mark(&record);
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".into());
    let client = Client::builder().bootstrap([bootstrap]).connect().await?;
    let _ = client.admin().create_topic(NewTopic::new(TOPIC, 3)).await;
    let producer = Producer::builder(client.clone()).build()?;
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let record = ProducerRecord::new(TOPIC)
            .key(format!("key-{i}"))
            .value(format!("{i}"));
        deliveries.push(producer.enqueue(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;

    let group = ConsumerGroup::builder(client, "examples.group-handler")
        .auto_offset_reset(OffsetReset::Earliest)
        .build()?;
    let handled = Arc::new(AtomicU64::new(0));
    let running = {
        let (group, handled) = (group.clone(), handled.clone());
        tokio::spawn(async move { group.consume(&[TOPIC], Orders { handled }).await })
    };
    while handled.load(Ordering::Relaxed) < RECORDS {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    group.close().await?;
    running.await??;
    println!("handled {} records", handled.load(Ordering::Relaxed));
    Ok(())
}
