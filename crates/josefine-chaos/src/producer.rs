//! `josefine-chaos producer`: writes sequence-numbered records (the value is the
//! sequence number in decimal) round-robin over the partitions at a steady rate,
//! with an idempotent producer (unless `--no-idempotence`), and logs each delivery report (`A seq partition
//! offset`) or failure (`F seq error`) with its own `write(2)`. Only acknowledged
//! records are owed to the consumers. SIGTERM stops producing, waits for what is in
//! flight and exits.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use josefine::{Client, Producer, ProducerRecord};
use tokio::signal::unix::{signal, SignalKind};

use crate::logs;

#[derive(Args, Debug, Clone)]
pub struct ProducerArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    #[arg(long)]
    pub partitions: i32,
    /// Records per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    #[arg(long)]
    pub log: PathBuf,
    /// Sequence numbers start here (each incarnation gets its own range).
    #[arg(long, default_value_t = 0)]
    pub first_seq: u64,
    /// A plain producer: retries may write a record twice, but the broker never
    /// answers DUPLICATE_SEQUENCE_NUMBER (see docs/RELIABILITY.md).
    #[arg(long)]
    pub no_idempotence: bool,
    /// `linger.ms`: larger batches mean fewer S3 objects for Tansu to write, list and
    /// read (it lists a partition's objects on every fetch).
    #[arg(long, default_value_t = 1000)]
    pub linger_ms: u64,
}

pub async fn run(args: ProducerArgs) -> anyhow::Result<()> {
    let mut log = File::options()
        .create(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("opening {}", args.log.display()))?;
    let mut append = move |text: String| {
        if let Err(err) = log.write_all(text.as_bytes()) {
            eprintln!("producer: cannot write its log: {err}");
            std::process::exit(3);
        }
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let client = Client::builder()
        .bootstrap([args.bootstrap.as_str()])
        .connect()
        .await
        .context("connecting")?;
    let producer = Producer::builder(client)
        .idempotence(!args.no_idempotence)
        .linger(Duration::from_millis(args.linger_ms))
        .build()?;

    // Ticks of 10 ms; a tick late because the broker was away is not made up for.
    let per_tick = (args.rate / 100).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = FuturesUnordered::new();
    let mut seq = args.first_seq;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            Some((s, report)) = in_flight.next() => record(&mut append, s, report),
            _ = ticker.tick() => {
                for _ in 0..per_tick {
                    let partition = (seq % args.partitions as u64) as i32;
                    let record = ProducerRecord::new(args.topic.clone())
                        .partition(partition)
                        .key(format!("k{}", seq % 16))
                        .value(seq.to_string());
                    match producer.enqueue(record).await {
                        Ok(delivery) => {
                            let s = seq;
                            in_flight.push(async move { (s, delivery.await) });
                        }
                        Err(err) => {
                            append(logs::failed(seq, &err.to_string()));
                            if !err.is_retriable() {
                                return Err(err).context("the producer cannot go on");
                            }
                        }
                    }
                    seq += 1;
                }
            }
        }
    }
    while let Some((s, report)) = in_flight.next().await {
        record(&mut append, s, report);
    }
    producer.close().await.context("closing the producer")?;
    Ok(())
}

fn record(
    append: &mut impl FnMut(String),
    seq: u64,
    report: josefine::Result<josefine::DeliveryReport>,
) {
    match report {
        Ok(r) => append(logs::acked(seq, r.partition, r.offset)),
        Err(err) => append(logs::failed(seq, &err.to_string())),
    }
}
