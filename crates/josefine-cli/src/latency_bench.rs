//! `josefine bench latency`: end-to-end latency, send to receive, of records produced
//! at a fixed rate and read by a consumer-group member in the same process, as
//! `rdkafka_peer latency` does with librdkafka, so `scripts/bench.sh` can put the two
//! side by side.
//!
//! Record i goes to partition `i % partitions`; its value starts with the send time
//! (nanoseconds on this process's monotonic clock, little-endian u64, taken just before
//! `enqueue`) and a flag byte, 1 for a measured record. The producer sends at `--rate`
//! records a second, each at its due time (sleeping until the next one is due), with
//! warm-up records (flag 0) until the member has received its first record and
//! `--warmup-ms` more have passed, so the group join and the catch-up are not
//! measured; then `--records` measured records. The member takes each record's
//! latency as its receive time minus its send time. The report adds the percentiles
//! (nearest rank) in milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use josefine::{Client, Producer, ProducerRecord};

#[derive(Args)]
pub struct LatencyArgs {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    /// The topic's partition count; record i goes to partition i % partitions.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Measured records (after the warm-up).
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Records a second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Value size in bytes (at least 9: the send time and the flag).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// After the member's first record, warm-up records for this long.
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// The producer's linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// The member's fetch wait (fetch.max.wait.ms).
    #[arg(long, default_value_t = 100)]
    fetch_wait_ms: u64,
}

/// What the member shares with the producer loop.
struct Received {
    /// The process's clock origin: send and receive times are nanoseconds since it.
    origin: Instant,
    /// When the first record (of any kind) arrived.
    first: OnceLock<Instant>,
    /// Latencies of measured records, in nanoseconds.
    latencies: Mutex<Vec<u64>>,
    measured: AtomicU64,
    target: u64,
    done: tokio::sync::Notify,
}

struct LatencyHandler(Arc<Received>);

impl josefine::GroupHandler for LatencyHandler {
    async fn consume_claim(
        &self,
        _session: &josefine::Session,
        mut claim: josefine::Claim,
    ) -> josefine::Result<()> {
        let shared = &self.0;
        while let Some(batch) = claim.next_batch().await {
            let batch = batch?;
            let now = shared.origin.elapsed().as_nanos() as u64;
            shared.first.get_or_init(Instant::now);
            let mut last = None;
            let mut measured = Vec::new();
            for record in &batch {
                let record = record?;
                last = Some(record.offset());
                let Some(value) = record.value() else {
                    continue;
                };
                if value.len() >= 9 && value[8] == 1 {
                    let sent = u64::from_le_bytes(value[..8].try_into().expect("eight bytes"));
                    measured.push(now.saturating_sub(sent));
                }
            }
            if let Some(last) = last {
                claim.mark_next(last + 1);
            }
            if !measured.is_empty() {
                let n = measured.len() as u64;
                shared
                    .latencies
                    .lock()
                    .expect("never held across a panic")
                    .extend(measured);
                if shared.measured.fetch_add(n, Ordering::AcqRel) + n >= shared.target {
                    shared.done.notify_one();
                }
            }
        }
        Ok(())
    }
}

pub async fn latency(client: Client, args: LatencyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.size >= 9, "--size must be at least 9");
    anyhow::ensure!(
        args.rate > 0 && args.partitions > 0,
        "--rate and --partitions must be positive"
    );
    let received = Arc::new(Received {
        origin: Instant::now(),
        first: OnceLock::new(),
        latencies: Mutex::new(Vec::with_capacity(args.records as usize)),
        measured: AtomicU64::new(0),
        target: args.records,
        done: tokio::sync::Notify::new(),
    });
    let fetch_wait = Duration::from_millis(args.fetch_wait_ms);
    let group = josefine::ConsumerGroup::builder(client.clone(), &args.group)
        .consumer(|c| c.fetch_max_wait(fetch_wait))
        .auto_offset_reset(josefine::OffsetReset::Earliest)
        .auto_commit_interval(Duration::from_secs(1))
        .build()?;
    let member = group.clone();
    let topic = args.topic.clone();
    let handler = LatencyHandler(received.clone());
    let running = tokio::spawn(async move { member.consume(&[&topic], handler).await });

    let producer = Producer::builder(client)
        .linger(Duration::from_millis(args.linger_ms))
        .build()?;
    let interval = 1e9 / args.rate as f64;
    let mut value = vec![0u8; args.size];
    let mut deliveries = std::collections::VecDeque::new();
    let started = Instant::now();
    let (mut i, mut measured_sent, mut measuring_since) = (0u64, 0u64, None);
    while measured_sent < args.records {
        let due = started + Duration::from_nanos((i as f64 * interval) as u64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if measuring_since.is_none() {
            if let Some(first) = received.first.get() {
                if first.elapsed() >= Duration::from_millis(args.warmup_ms) {
                    measuring_since = Some(Instant::now());
                }
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "the member received nothing in 120 s"
            );
        }
        let measure = measuring_since.is_some();
        value[8] = u8::from(measure);
        value[..8].copy_from_slice(&(received.origin.elapsed().as_nanos() as u64).to_le_bytes());
        let record = ProducerRecord::new(&args.topic)
            .partition((i % args.partitions as u64) as i32)
            .value(value.clone());
        deliveries.push_back(producer.enqueue(record).await.context("enqueue")?);
        // Reports are checked as they come, so a failing producer stops the run.
        while deliveries.len() > 2 * args.rate as usize {
            deliveries
                .pop_front()
                .expect("not empty")
                .await
                .context("delivery")?;
        }
        i += 1;
        measured_sent += u64::from(measure);
    }
    let sending = measuring_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
    for delivery in deliveries {
        delivery.await.context("delivery")?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.measured.load(Ordering::Acquire) < args.records {
        anyhow::ensure!(
            Instant::now() < deadline,
            "received {} of {} measured records within 60 s of the last send",
            received.measured.load(Ordering::Acquire),
            args.records
        );
        tokio::select! {
            _ = received.done.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    producer.close().await?;
    group.close().await?;
    running.await??;

    let mut latencies = std::mem::take(&mut *received.latencies.lock().expect("not poisoned"));
    latencies.sort_unstable();
    let ms = |q: f64| percentile(&latencies, q) as f64 / 1e6;
    let extra = format!(
        r#","rate":{},"partitions":{},"linger_ms":{},"fetch_wait_ms":{},"p50_ms":{:.3},"p99_ms":{:.3},"p999_ms":{:.3},"max_ms":{:.3}"#,
        args.rate,
        args.partitions,
        args.linger_ms,
        args.fetch_wait_ms,
        ms(0.50),
        ms(0.99),
        ms(0.999),
        ms(1.0)
    );
    crate::bench::report(
        "latency",
        latencies.len() as u64,
        latencies.len() as u64 * args.size as u64,
        sending,
        &extra,
    );
    Ok(())
}

/// The nearest-rank percentile `q` (0 < q <= 1) of sorted `values`; 0 when empty.
fn percentile(values: &[u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&values, 0.5), 500);
        assert_eq!(percentile(&values, 0.99), 990);
        assert_eq!(percentile(&values, 0.999), 999);
        assert_eq!(percentile(&values, 1.0), 1000);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
