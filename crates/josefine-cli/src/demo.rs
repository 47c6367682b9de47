//! `josefine demo`, the README's main job: a consumer group at work on a local broker.
//!
//! Starts Tansu (unless `--bootstrap` names a cluster), creates a topic, produces
//! records with a progress bar, runs a group of in-process members and shows their
//! assignments, makes one leave and shows the rebalance, produces more for the
//! remaining members, and reports throughput and the group's lag reaching zero.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use josefine::{
    Claim, Client, Config, ConsumerGroup, GroupHandler, NewTopic, Producer, ProducerRecord, Session,
};
use tokio::task::JoinHandle;

use crate::local_broker::LocalBroker;
use crate::progress::{human, Progress};

#[derive(Args)]
pub struct DemoArgs {
    /// Records to produce first.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Group members to run (one of them leaves half-way).
    #[arg(long, default_value_t = 3)]
    members: usize,
    #[arg(long, default_value = "demo-orders")]
    topic: String,
}

fn step(text: impl AsRef<str>) {
    eprintln!("\x1b[1m==> {}\x1b[0m", text.as_ref());
}

/// Runs the demo. `bootstrap` is `None` when the user gave no cluster: then a local
/// broker is started and stopped.
pub async fn run(config: &Config, bootstrap_given: bool, args: DemoArgs) -> anyhow::Result<()> {
    if args.members < 2 {
        bail!("--members must be at least 2, so one can leave and the others take over");
    }
    let mut config = config.clone();
    let _broker = if bootstrap_given {
        None
    } else {
        step("starting a local Tansu broker (memory storage)");
        let broker = tokio::task::spawn_blocking(LocalBroker::start).await??;
        eprintln!("    listening on {}", broker.addr);
        config.set("bootstrap.servers", &broker.addr)?;
        Some(broker)
    };
    // Short sessions: joins complete in about half of one on Tansu.
    for (key, value) in [
        ("session.timeout.ms", "3000"),
        ("heartbeat.interval.ms", "300"),
    ] {
        config.set(key, value)?;
    }
    let client = config
        .client()
        .await
        .context("connecting to the demo cluster")?;
    let topic = format!("{}-{}", args.topic, std::process::id());
    let group = format!("demo-group-{}", std::process::id());

    step(format!(
        "creating topic {topic} with {} partitions",
        args.partitions
    ));
    client
        .admin()
        .create_topic(NewTopic::new(&topic, args.partitions))
        .await?;

    step(format!(
        "producing {} records of {} bytes",
        human(args.records as f64),
        args.size
    ));
    let producer = config.producer_builder(client.clone())?.build()?;
    produce(&producer, &topic, 0, args.records, args.size).await?;

    step(format!(
        "starting {} members of group {group}",
        args.members
    ));
    let seen = Arc::new(Seen::default());
    let mut members = Vec::new();
    for index in 1..=args.members {
        members.push(Member::start(&config, &group, &topic, index, seen.clone()).await?);
    }
    let started = Instant::now();
    let all: Vec<usize> = (1..=args.members).collect();
    seen.wait_for_assignment(&all, args.partitions).await?;
    seen.print_assignment(&all);
    wait_consumed(&seen, args.records).await?;
    let finished = Instant::now();
    let first = seen
        .first_record
        .lock()
        .expect("never poisoned")
        .unwrap_or(started);
    let at = |t: Instant| t.duration_since(started).as_secs_f64();
    eprintln!(
        "    first record {:.2} s after the members started, last at {:.2} s: {} records, {} MB",
        at(first),
        at(finished),
        human(args.records as f64),
        human((args.records * args.size as u64) as f64 / 1e6)
    );
    show_lag(&client, &group, &topic, args.partitions).await?;

    let leaver = members.pop().expect("at least two members");
    step(format!(
        "member-{} leaves the group (commits, then LeaveGroup)",
        leaver.index
    ));
    leaver.stop().await?;
    let remaining: Vec<usize> = (1..args.members).collect();
    seen.wait_for_assignment(&remaining, args.partitions)
        .await?;
    seen.print_assignment(&remaining);

    let more = (args.records / 10).max(1);
    step(format!(
        "producing {} more records for the remaining members",
        human(more as f64)
    ));
    produce(&producer, &topic, args.records, more, args.size).await?;
    wait_consumed(&seen, args.records + more).await?;
    producer.close().await?;
    show_lag(&client, &group, &topic, args.partitions).await?;

    step("closing the members");
    for member in members {
        member.stop().await?;
    }
    client.close();
    if _broker.is_some() {
        step("stopping the local broker");
    }
    Ok(())
}

async fn produce(
    producer: &Producer,
    topic: &str,
    from: u64,
    count: u64,
    size: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut progress = Progress::new("produced", "records", Some(count));
    let mut pending = std::collections::VecDeque::new();
    let value: Vec<u8> = (0..size).map(|j| (j * 31 + 7) as u8).collect();
    let value = bytes::Bytes::from(value);
    for i in 0..count {
        let record = ProducerRecord::new(topic)
            .key(format!("order-{}", from + i))
            .value(value.clone());
        pending.push_back(producer.enqueue(record).await?);
        if pending.len() >= 100_000 {
            pending.pop_front().expect("not empty").await?;
            progress.tick(i + 1 - pending.len() as u64);
        }
    }
    while let Some(delivery) = pending.pop_front() {
        delivery.await?;
    }
    progress.finish(count);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "    {} records in {seconds:.2} s ({}/s)",
        human(count as f64),
        human(count as f64 / seconds)
    );
    Ok(())
}

async fn wait_consumed(seen: &Seen, target: u64) -> anyhow::Result<()> {
    let mut progress = Progress::new("consumed", "records", Some(target));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = seen.records.load(Ordering::Acquire);
        if done >= target {
            progress.finish(done);
            return Ok(());
        }
        progress.tick(done);
        if Instant::now() > deadline {
            bail!("the group consumed only {done} of {target} records in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every partition of `topic` has a commit and the group's lag is 0
/// (commits trail the auto-commit interval), then prints it.
async fn show_lag(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lag = client.admin().group_lag(group).await?;
        let committed = lag
            .partitions
            .iter()
            .filter(|p| p.topic == topic && p.committed.is_some())
            .count();
        let caught_up = committed == partitions as usize && lag.total_lag == 0;
        if caught_up || Instant::now() > deadline {
            let per_partition: Vec<String> = lag
                .partitions
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}",
                        p.partition,
                        p.lag.map_or("-".into(), |l| l.to_string())
                    )
                })
                .collect();
            eprintln!(
                "    group lag from committed offsets and high watermarks: total {} (partition:lag {})",
                lag.total_lag,
                per_partition.join(" ")
            );
            if !caught_up {
                bail!("the group's lag did not reach 0 within 30 s");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What every member saw: records consumed, and each member's latest assignment.
#[derive(Default)]
struct Seen {
    records: AtomicU64,
    first_record: Mutex<Option<Instant>>,
    assignments: Mutex<BTreeMap<usize, (i32, Vec<i32>)>>,
}

impl Seen {
    /// Waits until `members` hold one generation's assignments covering every
    /// partition.
    async fn wait_for_assignment(&self, members: &[usize], partitions: i32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let assignments = self.assignments.lock().expect("never poisoned");
                let current: Vec<&(i32, Vec<i32>)> =
                    members.iter().filter_map(|m| assignments.get(m)).collect();
                let mut all: Vec<i32> = current.iter().flat_map(|(_, p)| p.clone()).collect();
                all.sort();
                let one_generation = current.windows(2).all(|w| w[0].0 == w[1].0);
                if current.len() == members.len()
                    && one_generation
                    && all == (0..partitions).collect::<Vec<_>>()
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the group did not settle within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn print_assignment(&self, members: &[usize]) {
        let assignments = self.assignments.lock().expect("never poisoned");
        for m in members {
            if let Some((generation, partitions)) = assignments.get(m) {
                eprintln!("    member-{m}: generation {generation}, partitions {partitions:?}");
            }
        }
    }
}

/// Counts records and marks them; records its assignment at each session start.
struct Counter {
    index: usize,
    seen: Arc<Seen>,
}

impl GroupHandler for Counter {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        let partitions = session.claims().iter().map(|tp| tp.partition).collect();
        self.seen
            .assignments
            .lock()
            .expect("never poisoned")
            .insert(self.index, (session.generation(), partitions));
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(batch) = claim.next_batch().await {
            let batch = batch?;
            let mut n = 0;
            for record in &batch {
                record?;
                n += 1;
            }
            session.mark_next(claim.topic(), claim.partition(), batch.next_offset());
            if self.seen.records.fetch_add(n, Ordering::AcqRel) == 0 {
                self.seen
                    .first_record
                    .lock()
                    .expect("never poisoned")
                    .get_or_insert_with(Instant::now);
            }
        }
        Ok(())
    }
}

struct Member {
    index: usize,
    group: ConsumerGroup,
    task: JoinHandle<josefine::Result<()>>,
}

impl Member {
    async fn start(
        config: &Config,
        group: &str,
        topic: &str,
        index: usize,
        seen: Arc<Seen>,
    ) -> anyhow::Result<Self> {
        let mut config = config.clone();
        config.set("group.id", group)?;
        config.set("client.id", &format!("demo-member-{index}"))?;
        config.set("auto.offset.reset", "earliest")?;
        config.set("auto.commit.interval.ms", "500")?;
        let client = config.client().await?;
        let consumer_group = config.group_builder(client)?.build()?;
        let runner = consumer_group.clone();
        let topic = topic.to_string();
        let task =
            tokio::spawn(async move { runner.consume(&[&topic], Counter { index, seen }).await });
        Ok(Self {
            index,
            group: consumer_group,
            task,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.group
            .close()
            .await
            .with_context(|| format!("closing member-{}", self.index))?;
        self.task
            .await
            .context("a member panicked")?
            .with_context(|| format!("member-{}", self.index))
    }
}
