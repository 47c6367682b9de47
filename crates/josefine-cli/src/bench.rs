//! `josefine bench`: whole-process throughput runs, the same workload and the same
//! one-line JSON report as `bench/rdkafka_peer.c`, so `scripts/bench.sh` can put the
//! two side by side.
//!
//! Record i's value byte j is `(i + j) * 31 + 7` (as in the peer), so compressible in
//! the same way; with `--keyed` its key is `key-<i>`.
//!
//! `bench produce --transaction-size N` produces in transactions (KIP-98) of N records
//! each, as the peers' `--transaction-size` does: begin, N records, commit (which
//! waits for their delivery, then ends the transaction). Its mode is `produce-txn`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use josefine::Acks;
use josefine::Compression;
use josefine::{Client, Config, Producer, ProducerRecord};

use crate::progress::Progress;

#[derive(Args)]
pub struct ProduceArgs {
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long)]
    keyed: bool,
    /// Keys `key-<i % N>` (N distinct keys; implies keyed).
    #[arg(long)]
    keys: Option<u64>,
    /// The codec, at its default level. This flag, `--acks` and `--linger-ms` win
    /// over the `-X` settings of the same name (`compression.type` and
    /// `compression.level`, `acks`, `linger.ms`); without either, the producer's
    /// defaults hold: no compression, acks=all, 5 ms, as the peers are given.
    #[arg(long, value_enum)]
    compression: Option<Codec>,
    #[arg(long, value_enum)]
    acks: Option<AcksArg>,
    #[arg(long)]
    linger_ms: Option<u64>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Produce in transactions of N records each (begin, N records, commit; the last
    /// may hold fewer), with a transactional id of this run's own. The coordinator is
    /// found and the producer id got before the clock starts, as the peers'
    /// `init_transactions` / `initTransactions` are.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    transaction_size: Option<u64>,
    /// The topic already holds records: every record still needs its delivery report,
    /// but the check that the reported offsets account for every record (which needs
    /// a fresh topic) is skipped.
    #[arg(long)]
    existing: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    All,
    #[value(name = "1")]
    One,
    #[value(name = "0")]
    Zero,
}

/// Deliveries awaited at most this far behind the newest send: bounds the memory the
/// benchmark itself holds, independent of `buffer.memory`.
const WINDOW: usize = 200_000;

pub async fn produce(client: Client, config: &Config, args: ProduceArgs) -> anyhow::Result<()> {
    if config.get("transactional.id").is_some() {
        // Transactions need the begin and commit calls that --transaction-size makes.
        anyhow::bail!("bench produce takes no -X transactional.id: use --transaction-size N");
    }
    // The -X producer settings (buffer.memory, max.in.flight, ...), then this
    // command's own flags where given.
    let mut builder = config.producer_builder(client)?;
    if let Some(codec) = args.compression {
        let compression = match codec {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        };
        builder = builder.compression(compression, None);
    }
    if let Some(acks) = args.acks {
        builder = builder.acks(match acks {
            AcksArg::All => Acks::All,
            AcksArg::One => Acks::Leader,
            AcksArg::Zero => Acks::None,
        });
    }
    if let Some(ms) = args.linger_ms {
        builder = builder.linger(Duration::from_millis(ms));
    }
    // With acks=0 the broker reports no offsets to check.
    let acks_zero = match args.acks {
        Some(acks) => matches!(acks, AcksArg::Zero),
        None => config.get("acks") == Some("0"),
    };
    if let Some(bytes) = args.batch_size {
        builder = builder.batch_size(bytes);
    }
    if args.transaction_size.is_some() {
        // Unique per run: a reused id would fence, or wait for, an earlier run's producer.
        builder = builder.transactional_id(format!(
            "josefine-bench-{}-{}",
            args.topic,
            std::process::id()
        ));
    }
    let producer = builder.build()?;
    if args.transaction_size.is_some() {
        // The first begin finds the coordinator and gets the producer id.
        producer
            .begin_transaction()
            .await
            .context("begin_transaction")?;
    }

    // Record i's value is `(i + j) * 31 + 7` at byte j, which repeats every 256
    // records: each value is a slice of one pattern made before the clock starts (no
    // copy, as the librdkafka peer passes `pattern + (i & 255)`), so the benchmark does
    // not count making its own data as the client's cost.
    let pattern = Bytes::from(
        (0..args.size + 256)
            .map(|k| (k * 31 + 7) as u8)
            .collect::<Vec<u8>>(),
    );
    let started = Instant::now();
    let mut progress = Progress::new("produced", "records", Some(args.records));
    let mut window = VecDeque::with_capacity(WINDOW);
    let mut ends = LogEnds {
        transactional: args.transaction_size.is_some(),
        ..LogEnds::default()
    };
    for i in 0..args.records {
        if let Some(n) = args.transaction_size {
            if i > 0 && i % n == 0 {
                commit(&producer, &mut window, &mut ends).await?;
                progress.tick(i);
                producer
                    .begin_transaction()
                    .await
                    .context("begin_transaction")?;
            }
        }
        let offset = (i % 256) as usize;
        let value = pattern.slice(offset..offset + args.size);
        let mut record = ProducerRecord::new(&args.topic).value(value);
        if let Some(keys) = args.keys {
            record = record.key(format!("key-{}", i % keys.max(1)));
        } else if args.keyed {
            record = record.key(format!("key-{i}"));
        }
        window.push_back(producer.enqueue(record).await.context("enqueue")?);
        if window.len() >= WINDOW {
            let report = window
                .pop_front()
                .expect("window is full")
                .await
                .context("delivery")?;
            ends.note(&report);
            progress.tick(i + 1 - window.len() as u64);
        }
    }
    if args.transaction_size.is_some() {
        commit(&producer, &mut window, &mut ends).await?;
    }
    while let Some(delivery) = window.pop_front() {
        ends.note(&delivery.await.context("delivery")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    producer.close().await?;
    progress.finish(args.records);
    if !acks_zero && !args.existing {
        ends.check(args.records)?;
    }
    let (mode, extra) = match args.transaction_size {
        None => ("produce", String::new()),
        Some(n) => (
            "produce-txn",
            format!(
                r#","transaction_size":{n},"partitions_per_transaction":{:.2}"#,
                ends.partitions_per_transaction()
            ),
        ),
    };
    report(
        mode,
        args.records,
        args.records * args.size as u64,
        seconds,
        &extra,
    );
    Ok(())
}

/// Commits the open transaction (which waits for every record in it to be
/// delivered), then takes the reports of its records.
async fn commit(
    producer: &Producer,
    window: &mut VecDeque<josefine::Delivery>,
    ends: &mut LogEnds,
) -> anyhow::Result<()> {
    producer
        .commit_transaction()
        .await
        .context("commit_transaction")?;
    while let Some(delivery) = window.pop_front() {
        ends.note(&delivery.await.context("delivery")?);
    }
    ends.end_transaction();
    Ok(())
}

#[derive(Args)]
pub struct ConsumeArgs {
    #[arg(long)]
    topic: String,
    /// Partitions 0..P are read from the beginning.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Read as a member of this consumer group instead (join included; the same as
    /// `bench group`).
    #[arg(long)]
    group: Option<String>,
    /// With --group.
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u64,
    /// CPU work per record: iterations of a 64-bit mixing loop (see `burn`; 10,000 is
    /// about 25-50 us). The handler's work of the CPU-bound benchmark.
    #[arg(long, default_value_t = 0)]
    work: u64,
}

/// `iterations` rounds of a 64-bit mix seeded with `seed`: fixed CPU work that the
/// optimiser cannot drop.
fn burn(iterations: u64, seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..iterations {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 33;
    }
    std::hint::black_box(x)
}

/// Reads `records` records from partitions `0..partitions` of a topic, from the
/// beginning, with direct partition consumers (one task each), touching every value.
pub async fn consume(client: Client, args: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(group_id) = args.group {
        let args = GroupArgs {
            topic: args.topic,
            group: group_id,
            records: args.records,
            session_timeout_ms: args.session_timeout_ms,
            work: args.work,
            sleep_ms: 0,
            process: None,
            in_flight: 0,
            idle_seconds: 0,
        };
        return group(client, args).await;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let consumer = josefine::Consumer::builder(client)
        .fetch_max_wait(Duration::from_millis(100))
        .build()?;
    let started = Instant::now();
    let mut readers = Vec::new();
    for p in 0..args.partitions {
        readers.push(
            consumer
                .consume_partition(&args.topic, p, josefine::StartOffset::Earliest)
                .await?,
        );
    }
    let total = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for mut reader in readers {
        let (total, bytes, done, target, work) = (
            total.clone(),
            bytes.clone(),
            done.clone(),
            args.records,
            args.work,
        );
        tasks.push(tokio::spawn(async move {
            while total.load(Ordering::Relaxed) < target {
                let batch = tokio::select! {
                    batch = reader.next_batch() => batch,
                    _ = done.notified() => return Ok(()),
                };
                let Some(batch) = batch else { return Ok(()) };
                let batch = batch?;
                let (mut n, mut b) = (0u64, 0u64);
                for record in &batch {
                    let record = record?;
                    b += record.value().map_or(0, |v| v.len()) as u64;
                    n += 1;
                    if work > 0 {
                        burn(work, record.offset() as u64);
                    }
                }
                bytes.fetch_add(b, Ordering::Relaxed);
                if total.fetch_add(n, Ordering::Relaxed) + n >= target {
                    done.notify_waiters();
                }
            }
            Ok::<_, josefine::Error>(())
        }));
    }
    let mut progress = Progress::new("consumed", "records", Some(args.records));
    let deadline = Instant::now() + Duration::from_secs(120);
    while total.load(Ordering::Relaxed) < args.records {
        anyhow::ensure!(
            Instant::now() < deadline,
            "read only {} of {} records in 120 s",
            total.load(Ordering::Relaxed),
            args.records
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        progress.tick(total.load(Ordering::Relaxed));
    }
    let seconds = started.elapsed().as_secs_f64();
    done.notify_waiters();
    for task in tasks {
        task.await??;
    }
    progress.finish(args.records);
    report(
        if args.work > 0 {
            "consume-work"
        } else {
            "consume"
        },
        total.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        seconds,
        "",
    );
    Ok(())
}

#[derive(Args)]
pub struct GroupArgs {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u64,
    /// CPU work per record, as `bench consume --work`.
    #[arg(long, default_value_t = 0)]
    work: u64,
    /// Sleep per record (I/O-bound work), in the handler or the processor.
    #[arg(long, default_value_t = 0)]
    sleep_ms: u64,
    /// Process with `ConsumerGroup::process` in this order instead of a handler that
    /// takes one batch at a time per partition.
    #[arg(long, value_enum)]
    process: Option<OrderArg>,
    /// The processor's max_in_flight.
    #[arg(long, default_value_t = 500)]
    in_flight: usize,
    /// After the last record, stay in the group with nothing to read for this long
    /// and report the CPU spent meanwhile (`idle_cpu_per_minute`).
    #[arg(long, default_value_t = 0)]
    idle_seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrderArg {
    Partition,
    Key,
    Unordered,
}

impl OrderArg {
    fn order(self) -> josefine::ProcessOrder {
        match self {
            OrderArg::Partition => josefine::ProcessOrder::Partition,
            OrderArg::Key => josefine::ProcessOrder::Key,
            OrderArg::Unordered => josefine::ProcessOrder::Unordered,
        }
    }

    fn name(self) -> &'static str {
        match self {
            OrderArg::Partition => "partition",
            OrderArg::Key => "key",
            OrderArg::Unordered => "unordered",
        }
    }
}

/// Partitions' counters for the processor: one cache line each.
const SHARDS: usize = 16;

/// The processor benchmark's handler and counters (a static, so the closure
/// captures nothing to clone per record).
static BENCH: std::sync::OnceLock<(CountingHandler, [Shard; SHARDS])> = std::sync::OnceLock::new();

/// Records and bytes the processor benchmark counted so far.
fn processed() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    BENCH.get().map_or((0, 0), |(_, shards)| {
        shards.iter().fold((0, 0), |(r, b), s| {
            (r + s.records.load(Relaxed), b + s.bytes.load(Relaxed))
        })
    })
}

#[derive(Default)]
#[repr(align(128))]
struct Shard {
    records: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

/// Counts records as a group member, marking each (auto-committed), until `target`.
struct CountingHandler {
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    first: std::sync::Arc<std::sync::OnceLock<Instant>>,
    done: std::sync::Arc<tokio::sync::Notify>,
    target: u64,
    work: u64,
    sleep: Duration,
}

impl josefine::GroupHandler for CountingHandler {
    async fn consume_claim(
        &self,
        _session: &josefine::Session,
        mut claim: josefine::Claim,
    ) -> josefine::Result<()> {
        use std::sync::atomic::Ordering;
        while let Some(batch) = claim.next_batch().await {
            let batch = batch?;
            let (mut n, mut b) = (0u64, 0u64);
            let mut last = None;
            for record in &batch {
                let record = record?;
                // When the first record arrived, before any work on it.
                self.first.get_or_init(Instant::now);
                b += record.value().map_or(0, |v| v.len()) as u64;
                n += 1;
                last = Some(record.offset());
                if self.work > 0 {
                    burn(self.work, record.offset() as u64);
                }
                if !self.sleep.is_zero() {
                    // I/O-bound: one record at a time, counted and marked as it ends.
                    tokio::time::sleep(self.sleep).await;
                    claim.mark_next(record.offset() + 1);
                    self.bytes.fetch_add(b, Ordering::Relaxed);
                    if self.total.fetch_add(1, Ordering::Relaxed) + 1 >= self.target {
                        self.done.notify_one();
                    }
                    (n, b, last) = (0, 0, None);
                    if claim.is_revoked() {
                        return Ok(());
                    }
                }
            }
            if let Some(last) = last {
                claim.mark_next(last + 1);
            }
            self.bytes.fetch_add(b, Ordering::Relaxed);
            if self.total.fetch_add(n, Ordering::Relaxed) + n >= self.target {
                self.done.notify_one();
            }
        }
        Ok(())
    }
}

/// Reads `records` records as a consumer-group member (join included in the time),
/// from the committed offsets or the beginning.
pub async fn group(client: Client, args: GroupArgs) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, OnceLock};

    let group = josefine::ConsumerGroup::builder(client, &args.group)
        .session_timeout(Duration::from_millis(args.session_timeout_ms))
        .heartbeat_interval(Duration::from_millis(args.session_timeout_ms / 10))
        .auto_offset_reset(josefine::OffsetReset::Earliest)
        .auto_commit_interval(Duration::from_secs(1))
        .build()?;
    let handler = CountingHandler {
        total: Arc::new(AtomicU64::new(0)),
        bytes: Arc::new(AtomicU64::new(0)),
        first: Arc::new(OnceLock::new()),
        done: Arc::new(tokio::sync::Notify::new()),
        target: args.records,
        work: args.work,
        sleep: Duration::from_millis(args.sleep_ms),
    };
    let (total, bytes, first, done) = (
        handler.total.clone(),
        handler.bytes.clone(),
        handler.first.clone(),
        handler.done.clone(),
    );
    let started = Instant::now();
    let member = group.clone();
    let topic = args.topic.clone();
    let running = match args.process {
        None => tokio::spawn(async move { member.consume(&[&topic], handler).await }),
        Some(order) => {
            let options = josefine::ProcessOptions::new(order.order(), args.in_flight);
            // The benchmark's own bookkeeping must not be the cost measured: no
            // reference count or shared counter touched per record (counts per
            // partition, on cache lines of their own, summed every 64 records).
            if BENCH.set((handler, Default::default())).is_err() {
                anyhow::bail!("one processor benchmark per process");
            }
            tokio::spawn(async move {
                member
                    .process(&[&topic], options, |record| async move {
                        let (h, shards) = BENCH.get().expect("set above");
                        h.first.get_or_init(Instant::now);
                        if h.work > 0 {
                            burn(h.work, record.offset() as u64);
                        }
                        if !h.sleep.is_zero() {
                            tokio::time::sleep(h.sleep).await;
                        }
                        let shard = &shards[record.partition() as usize % SHARDS];
                        let len = record.value().map_or(0, |v| v.len()) as u64;
                        shard.bytes.fetch_add(len, Ordering::Relaxed);
                        if shard.records.fetch_add(1, Ordering::Relaxed) % 64 == 63
                            || !h.sleep.is_zero()
                        {
                            let (records, _) = processed();
                            if records >= h.target {
                                h.done.notify_one();
                            }
                        }
                        Ok::<(), std::convert::Infallible>(())
                    })
                    .await
            })
        }
    };
    let mut progress = Progress::new("consumed", "records", Some(args.records));
    let counted = || total.load(Ordering::Relaxed).max(processed().0);
    while counted() < args.records {
        tokio::select! {
            _ = done.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        progress.tick(counted());
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "read only {} records in 180 s",
            counted()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let first_record = first
        .get()
        .map_or(seconds, |t| (*t - started).as_secs_f64());
    let mut idle = String::new();
    if args.idle_seconds > 0 {
        let before = cpu_seconds();
        tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
        let per_minute = (cpu_seconds() - before) / args.idle_seconds as f64 * 60.0;
        idle = format!(
            r#","idle_seconds":{},"idle_cpu_per_minute":{per_minute:.4}"#,
            args.idle_seconds
        );
    }
    group.close().await?;
    running.await??;
    progress.finish(args.records);
    let mut mode = match args.process {
        None => "group".to_string(),
        Some(order) => format!("process-{}", order.name()),
    };
    if args.work > 0 {
        mode += "-work";
    }
    if args.sleep_ms > 0 {
        mode += "-sleep";
    }
    report(
        &mode,
        counted(),
        bytes.load(Ordering::Relaxed).max(processed().1),
        seconds,
        &format!(r#","first_record_seconds":{first_record:.3}{idle}"#),
    );
    Ok(())
}

/// The highest offset reported per partition: on a fresh topic, their sum plus one
/// per partition must be the number of records sent, or the run does not count.
///
/// With transactions each commit also writes a marker, taking one offset, into every
/// partition the transaction wrote to. The coordinator writes a transaction's markers
/// before it lets the next transaction add the partition, so every transaction that
/// wrote to a partition, but the last, put its marker below the partition's last record.
#[derive(Default)]
struct LogEnds {
    last: std::collections::HashMap<i32, i64>,
    transactional: bool,
    /// Partitions written by the open transaction.
    touched: std::collections::HashSet<i32>,
    /// Per partition, the committed transactions that wrote to it.
    transactions: std::collections::HashMap<i32, i64>,
    committed: u64,
}

impl LogEnds {
    fn note(&mut self, report: &josefine::DeliveryReport) {
        let end = self.last.entry(report.partition).or_insert(-1);
        *end = (*end).max(report.offset);
        if self.transactional {
            self.touched.insert(report.partition);
        }
    }

    fn end_transaction(&mut self) {
        for partition in self.touched.drain() {
            *self.transactions.entry(partition).or_default() += 1;
        }
        self.committed += 1;
    }

    fn partitions_per_transaction(&self) -> f64 {
        let written: i64 = self.transactions.values().sum();
        written as f64 / self.committed.max(1) as f64
    }

    fn check(&self, records: u64) -> anyhow::Result<()> {
        let written: i64 = self.last.values().map(|last| last + 1).sum();
        let markers: i64 = self.transactions.values().map(|n| n - 1).sum();
        anyhow::ensure!(
            written == records as i64 + markers,
            "the topic's partitions end at {written} offsets in total, not {records} records \
             and {markers} commit markers: use a fresh topic (acks=0 reports no offsets and \
             cannot be checked)"
        );
        Ok(())
    }
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    }
}

fn seconds_of(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// This process's CPU time so far, user and system.
pub(crate) fn cpu_seconds() -> f64 {
    let usage = rusage();
    seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime)
}

/// Prints `{"client":"josefine",...}` with this process's CPU time and peak RSS;
/// `extra` is empty or further JSON members, each starting with a comma.
pub(crate) fn report(mode: &str, records: u64, bytes: u64, seconds: f64, extra: &str) {
    let usage = rusage();
    println!(
        r#"{{"client":"josefine","mode":"{mode}","records":{records},"bytes":{bytes},"seconds":{seconds:.3},"cpu_user":{:.3},"cpu_sys":{:.3},"max_rss_kb":{}{extra}}}"#,
        seconds_of(usage.ru_utime),
        seconds_of(usage.ru_stime),
        usage.ru_maxrss
    );
}
