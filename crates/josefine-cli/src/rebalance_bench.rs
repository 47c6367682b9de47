//! `josefine bench rebalance`: how long a group takes to rebalance and how long the
//! partitions that do not move stop meanwhile, under one group protocol (classic eager,
//! classic cooperative, or the consumer protocol of KIP-848). Method: docs/BENCHMARKS.md.
//!
//! A fresh topic of `--partitions` gets a steady stream (`--rate` records per second
//! per partition) for the whole run; every member is in this process, each with its
//! own client, and its handler spends `--work-ms` on each batch (as an I/O-bound
//! handler would: a revoked claim finishes its batch before the partition moves).
//! Two phases:
//!
//! 1. scale-out: one member owns every partition; `--members - 1` more start at once;
//!    the time until every member holds its even share is `scale_out_seconds`.
//! 2. one join: with the group balanced, one more member starts; the time until the
//!    group is balanced again is `join_seconds`. For every partition, the longest gap
//!    between two deliveries from the join until each partition delivered again after
//!    the group was balanced is its pause; `pause_unmoved_ms` is the longest pause of
//!    the partitions that kept their owner (the ones a rebalance should not stop),
//!    `pause_moved_ms` that of the partitions that moved. The gap between records
//!    without any rebalance is about 1000 / `--rate` ms (`baseline_gap_ms`, measured
//!    before the join).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use josefine::{
    AssignorKind, Claim, Client, Config, ConsumerGroup, GroupHandler, GroupProtocol, NewTopic,
    OffsetReset, Producer, ProducerRecord, Session,
};

#[derive(Args)]
pub struct RebalanceArgs {
    #[arg(long, value_enum)]
    protocol: Protocol,
    #[arg(long, default_value_t = 6)]
    members: usize,
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Records per second per partition.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// The handler's time per batch (an I/O-bound handler: a sleep), which a
    /// revoked claim finishes before the partition is handed over.
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Protocol {
    /// Classic, range assignor: every partition stops at every rebalance.
    Eager,
    /// Classic, cooperative-sticky (KIP-429).
    Cooperative,
    /// group.protocol=consumer (KIP-848), the broker's uniform assignor.
    Consumer,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::Eager => "eager",
            Self::Cooperative => "cooperative",
            Self::Consumer => "consumer",
        }
    }
}

/// Per partition: who claims it, and the deliveries' timing.
#[derive(Default)]
struct Partition {
    owner: Option<usize>,
    last: Option<Instant>,
    /// The longest gap between deliveries since the last reset.
    max_gap: Duration,
}

#[derive(Default)]
struct Watch {
    partitions: HashMap<i32, Partition>,
}

impl Watch {
    fn owned(&self) -> Vec<usize> {
        let mut owners: Vec<usize> = self.partitions.values().filter_map(|p| p.owner).collect();
        owners.sort_unstable();
        owners
    }

    /// Every partition is claimed and the `members` hold even shares.
    fn balanced(&self, members: usize, partitions: i32) -> bool {
        let owners = self.owned();
        if owners.len() != partitions as usize {
            return false;
        }
        let mut counts = vec![0usize; members];
        for o in owners {
            if o >= members {
                return false;
            }
            counts[o] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        matches!((min, max), (Some(&lo), Some(&hi)) if lo >= 1 && hi - lo <= 1)
    }
}

struct Recorder {
    member: usize,
    watch: Arc<Mutex<Watch>>,
    work: Duration,
}

impl GroupHandler for Recorder {
    async fn consume_claim(&self, _session: &Session, mut claim: Claim) -> josefine::Result<()> {
        let p = claim.partition();
        self.watch
            .lock()
            .unwrap()
            .partitions
            .entry(p)
            .or_default()
            .owner = Some(self.member);
        while let Some(batch) = claim.next_batch().await {
            let batch = batch?;
            let mut last = None;
            for record in &batch {
                last = Some(record?.offset());
            }
            if let Some(last) = last {
                if !self.work.is_zero() {
                    tokio::time::sleep(self.work).await;
                }
                claim.mark_next(last + 1);
                let now = Instant::now();
                let mut watch = self.watch.lock().unwrap();
                let partition = watch.partitions.entry(p).or_default();
                if let Some(previous) = partition.last {
                    partition.max_gap = partition.max_gap.max(now - previous);
                }
                partition.last = Some(now);
            }
        }
        let mut watch = self.watch.lock().unwrap();
        let partition = watch.partitions.entry(p).or_default();
        if partition.owner == Some(self.member) {
            partition.owner = None;
        }
        Ok(())
    }
}

type Member = (ConsumerGroup, tokio::task::JoinHandle<josefine::Result<()>>);

/// What every member shares.
struct Run {
    config: Config,
    protocol: Protocol,
    topic: String,
    group: String,
    watch: Arc<Mutex<Watch>>,
    work: Duration,
}

impl Run {
    /// Member `i`, on its own client (its own coordinator connection), consuming.
    async fn start(&self, i: usize) -> anyhow::Result<Member> {
        let mut config = self.config.clone();
        config.set("client.id", &format!("bench-member-{i}"))?;
        let client = config.client().await?;
        let mut builder = ConsumerGroup::builder(client, &self.group)
            .auto_offset_reset(OffsetReset::Latest)
            .session_timeout(Duration::from_secs(10))
            .heartbeat_interval(Duration::from_millis(500))
            .rebalance_timeout(Duration::from_secs(30))
            .auto_commit_interval(Duration::from_millis(500));
        builder = match self.protocol {
            Protocol::Eager => builder.assignor(AssignorKind::Range),
            Protocol::Cooperative => builder.assignor(AssignorKind::CooperativeSticky),
            Protocol::Consumer => builder.protocol(GroupProtocol::Consumer),
        };
        let member = builder.build()?;
        let running = {
            let (member, topic) = (member.clone(), self.topic.clone());
            let handler = Recorder {
                member: i,
                watch: self.watch.clone(),
                work: self.work,
            };
            tokio::spawn(async move { member.consume(&[&topic], handler).await })
        };
        Ok((member, running))
    }

    /// Waits (bounded) until `done` holds.
    async fn until(&self, what: &str, done: impl Fn(&Watch) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if done(&self.watch.lock().unwrap()) {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "no {what} within 120 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub async fn rebalance(client: Client, config: &Config, args: RebalanceArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.members >= 2, "--members must be at least 2");
    anyhow::ensure!(args.rate >= 1, "--rate must be at least 1");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let topic = format!("bench-rebalance-{}-{stamp:x}", std::process::id());
    client
        .admin()
        .create_topic(NewTopic::new(&topic, args.partitions))
        .await?;

    // The steady stream, for the whole run.
    let producer = Producer::builder(client.clone())
        .linger(Duration::from_millis(1))
        .build()?;
    let feeding = {
        let (producer, topic) = (producer.clone(), topic.clone());
        let (partitions, every) = (args.partitions, Duration::from_secs(1) / args.rate as u32);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                for p in 0..partitions {
                    let record = ProducerRecord::new(&topic).partition(p).value("x");
                    if producer.enqueue(record).await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    let run = Run {
        config: config.clone(),
        protocol: args.protocol,
        group: format!("{topic}-group"),
        topic: topic.clone(),
        watch: Arc::new(Mutex::new(Watch::default())),
        work: Duration::from_millis(args.work_ms),
    };
    let partitions = args.partitions;
    let mut members: Vec<Member> = Vec::new();

    // One member owns everything and is delivering.
    members.push(run.start(0).await?);
    run.until("first member", |w| {
        w.balanced(1, partitions) && w.partitions.values().all(|p| p.last.is_some())
    })
    .await?;

    // Phase 1: the others join at once.
    let scale_out = Instant::now();
    // (Connecting takes a millisecond each: they join together.)
    for i in 1..args.members {
        members.push(run.start(i).await?);
    }
    run.until("balance after the scale-out", |w| {
        w.balanced(args.members, partitions)
    })
    .await?;
    let scale_out_seconds = scale_out.elapsed().as_secs_f64();

    // Every partition delivers again; then the gap with nothing moving, for a second.
    let settled = Instant::now();
    run.until("deliveries after the scale-out", |w| {
        w.partitions
            .values()
            .all(|p| p.last.is_some_and(|t| t > settled))
    })
    .await?;
    reset_gaps(&run.watch);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, baseline_gap) = {
        let w = run.watch.lock().unwrap();
        let baseline = w
            .partitions
            .values()
            .map(|p| p.max_gap)
            .max()
            .unwrap_or_default();
        let owners: HashMap<i32, Option<usize>> =
            w.partitions.iter().map(|(p, s)| (*p, s.owner)).collect();
        (owners, baseline)
    };
    reset_gaps(&run.watch);

    // Phase 2: one more member.
    let join = Instant::now();
    members.push(run.start(args.members).await?);
    run.until("balance after the join", |w| {
        w.balanced(args.members + 1, partitions)
    })
    .await?;
    let join_seconds = join.elapsed().as_secs_f64();
    let balanced = Instant::now();
    run.until("deliveries after the join", |w| {
        w.partitions
            .values()
            .all(|p| p.last.is_some_and(|t| t > balanced))
    })
    .await?;
    let (mut unmoved, mut moved) = (Duration::ZERO, Duration::ZERO);
    let (mut unmoved_count, mut moved_count) = (0, 0);
    {
        let w = run.watch.lock().unwrap();
        for (p, state) in &w.partitions {
            if before.get(p).copied().flatten() == state.owner {
                unmoved = unmoved.max(state.max_gap);
                unmoved_count += 1;
            } else {
                moved = moved.max(state.max_gap);
                moved_count += 1;
            }
        }
    }

    for (member, running) in members {
        member.close().await?;
        running.await??;
    }
    feeding.abort();
    producer.close().await?;
    client.admin().delete_topic(&topic).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        r#"{{"client":"josefine","mode":"rebalance-{}","members":{},"partitions":{},"work_ms":{},"scale_out_seconds":{scale_out_seconds:.3},"join_seconds":{join_seconds:.3},"baseline_gap_ms":{:.1},"pause_unmoved_ms":{:.1},"unmoved":{unmoved_count},"pause_moved_ms":{:.1},"moved":{moved_count}}}"#,
        args.protocol.name(),
        args.members,
        args.partitions,
        args.work_ms,
        ms(baseline_gap),
        ms(unmoved),
        ms(moved),
    );
    Ok(())
}

fn reset_gaps(watch: &Mutex<Watch>) {
    for p in watch.lock().unwrap().partitions.values_mut() {
        p.max_gap = Duration::ZERO;
    }
}
