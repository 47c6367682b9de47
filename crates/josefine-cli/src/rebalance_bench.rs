//! `josefine bench rebalance`: how long a group takes to rebalance and how long the
//! partitions that do not move stop meanwhile, under one group protocol (classic eager,
//! classic cooperative, or the consumer protocol of KIP-848). Method: docs/BENCHMARKS.md.
//!
//! A fresh topic of `--partitions` gets a steady stream (`--rate` records per second
//! per partition) for the whole run; every member has its own client, and its handler
//! spends `--work-ms` on each batch (as an I/O-bound handler would: a revoked claim
//! finishes its batch before the partition moves). The members are tasks in this
//! process, or with `--processes` each a process of its own (`bench rebalance-member`,
//! this binary again), which reports its claims and deliveries on stdout and its CPU
//! time when asked on stdin. Two phases:
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
//!    over two quiet seconds before the join).
//!
//! CPU: the members' CPU time from the start of each phase until the group is
//! balanced (`scale_out_cpu_seconds`, `join_cpu_seconds`), and its rate over the
//! quiet seconds (`steady_cpu_per_second`, the cost of consuming with nothing
//! moving). With tasks it is this process's CPU (the members and the producer feeding
//! the topic); with `--processes`, the sum of the members' processes' own, each
//! process's start included.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use josefine::{
    AssignorKind, Claim, Client, Config, ConsumerGroup, GroupHandler, GroupProtocol, NewTopic,
    OffsetReset, Producer, ProducerRecord, Session,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bench::cpu_seconds;

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
    /// Every member in a process of its own instead of a task in this one.
    #[arg(long)]
    processes: bool,
}

/// One member of `--processes`. It reads its client's properties from stdin
/// (`key=value` lines up to an empty line: secrets stay out of the command line),
/// then joins and prints `a P` when it claims partition P, `d P` when a batch of P
/// has been handled and `r P` when it gives P up; to `cpu` on stdin it answers
/// `c SECONDS`; at the end of stdin it leaves the group and exits.
#[derive(Args)]
pub struct MemberArgs {
    #[arg(long, value_enum)]
    protocol: Protocol,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    member: usize,
    #[arg(long)]
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
    fn claimed(&mut self, partition: i32, member: usize) {
        self.partitions.entry(partition).or_default().owner = Some(member);
    }

    fn delivered(&mut self, partition: i32, at: Instant) {
        let partition = self.partitions.entry(partition).or_default();
        if let Some(previous) = partition.last {
            partition.max_gap = partition
                .max_gap
                .max(at.saturating_duration_since(previous));
        }
        partition.last = Some(at);
    }

    fn released(&mut self, partition: i32, member: usize) {
        let partition = self.partitions.entry(partition).or_default();
        if partition.owner == Some(member) {
            partition.owner = None;
        }
    }

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

/// Where a member's handler reports: the shared watch (a task), or stdout for the
/// parent to read (a process).
enum Sink {
    Watch(Arc<Mutex<Watch>>),
    Stdout,
}

impl Sink {
    fn claimed(&self, partition: i32, member: usize) {
        match self {
            Sink::Watch(watch) => watch.lock().unwrap().claimed(partition, member),
            Sink::Stdout => println!("a {partition}"),
        }
    }

    fn delivered(&self, partition: i32) {
        match self {
            Sink::Watch(watch) => watch.lock().unwrap().delivered(partition, Instant::now()),
            Sink::Stdout => println!("d {partition}"),
        }
    }

    fn released(&self, partition: i32, member: usize) {
        match self {
            Sink::Watch(watch) => watch.lock().unwrap().released(partition, member),
            Sink::Stdout => println!("r {partition}"),
        }
    }
}

struct Recorder {
    member: usize,
    sink: Sink,
    work: Duration,
}

impl GroupHandler for Recorder {
    async fn consume_claim(&self, _session: &Session, mut claim: Claim) -> josefine::Result<()> {
        let p = claim.partition();
        self.sink.claimed(p, self.member);
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
                self.sink.delivered(p);
            }
        }
        self.sink.released(p, self.member);
        Ok(())
    }
}

/// Member `member` of `group`, on its own client (its own coordinator connection).
async fn group_member(
    config: &Config,
    protocol: Protocol,
    group: &str,
    member: usize,
) -> anyhow::Result<ConsumerGroup> {
    let mut config = config.clone();
    config.set("client.id", &format!("bench-member-{member}"))?;
    let client = config.client().await?;
    let builder = ConsumerGroup::builder(client, group)
        .auto_offset_reset(OffsetReset::Latest)
        .session_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_millis(500))
        .rebalance_timeout(Duration::from_secs(30))
        .auto_commit_interval(Duration::from_millis(500));
    let builder = match protocol {
        Protocol::Eager => builder.assignor(AssignorKind::Range),
        Protocol::Cooperative => builder.assignor(AssignorKind::CooperativeSticky),
        Protocol::Consumer => builder.protocol(GroupProtocol::Consumer),
    };
    Ok(builder.build()?)
}

fn consuming(
    member: &ConsumerGroup,
    topic: &str,
    handler: Recorder,
) -> JoinHandle<josefine::Result<()>> {
    let (member, topic) = (member.clone(), topic.to_string());
    tokio::spawn(async move { member.consume(&[&topic], handler).await })
}

/// `bench rebalance-member`: see [`MemberArgs`]. A member that fails exits at once:
/// the stdin read blocks a runtime thread that would keep it alive until the parent
/// closes stdin.
pub async fn member(args: MemberArgs) -> anyhow::Result<()> {
    if let Err(err) = run_member(args).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
    Ok(())
}

async fn run_member(args: MemberArgs) -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut config = Config::new();
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            break;
        }
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("a property line is key=value, not {line:?}"))?;
        config.set(key, value)?;
    }
    let group = group_member(&config, args.protocol, &args.group, args.member).await?;
    let handler = Recorder {
        member: args.member,
        sink: Sink::Stdout,
        work: Duration::from_millis(args.work_ms),
    };
    let mut running = consuming(&group, &args.topic, handler);
    let commands = async {
        while let Some(line) = lines.next_line().await? {
            if line == "cpu" {
                println!("c {:.6}", cpu_seconds());
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        ended = &mut running => {
            ended??;
            anyhow::bail!("member {} stopped consuming before it was told to", args.member)
        }
        read = commands => read?,
    }
    group.close().await?;
    running.await??;
    Ok(())
}

/// A member as a process of its own, and the task reading what it reports.
struct ChildMember {
    process: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    cpu: mpsc::Receiver<f64>,
    reader: JoinHandle<anyhow::Result<()>>,
}

enum Member {
    Task(ConsumerGroup, JoinHandle<josefine::Result<()>>),
    Process(Box<ChildMember>),
}

/// What every member shares.
struct Run {
    config: Config,
    protocol: Protocol,
    topic: String,
    group: String,
    watch: Arc<Mutex<Watch>>,
    work: Duration,
    processes: bool,
}

impl Run {
    /// Member `i`, consuming.
    async fn start(&self, i: usize) -> anyhow::Result<Member> {
        if self.processes {
            return Ok(Member::Process(Box::new(self.spawn(i).await?)));
        }
        let member = group_member(&self.config, self.protocol, &self.group, i).await?;
        let handler = Recorder {
            member: i,
            sink: Sink::Watch(self.watch.clone()),
            work: self.work,
        };
        let running = consuming(&member, &self.topic, handler);
        Ok(Member::Task(member, running))
    }

    async fn spawn(&self, i: usize) -> anyhow::Result<ChildMember> {
        let exe = std::env::current_exe().context("finding this binary to start a member")?;
        let mut process = tokio::process::Command::new(exe)
            .args([
                "bench",
                "rebalance-member",
                "--protocol",
                self.protocol.name(),
            ])
            .args(["--topic", &self.topic, "--group", &self.group])
            .args(["--member", &i.to_string(), "--work-ms"])
            .arg(self.work.as_millis().to_string())
            // Its settings come from stdin alone.
            .env_remove("JOSEFINE_BOOTSTRAP")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a member process")?;
        let mut stdin = process.stdin.take().expect("piped");
        let mut properties = String::new();
        for (key, value) in self.config.iter() {
            properties.push_str(&format!("{key}={value}\n"));
        }
        properties.push('\n');
        stdin.write_all(properties.as_bytes()).await?;
        let stdout = process.stdout.take().expect("piped");
        let (cpu_tx, cpu) = mpsc::channel(1);
        let watch = self.watch.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await? {
                let (what, value) = line
                    .split_once(' ')
                    .with_context(|| format!("member {i} said {line:?}"))?;
                if what == "c" {
                    let _ = cpu_tx.send(value.parse()?).await;
                    continue;
                }
                let partition: i32 = value.parse()?;
                let mut watch = watch.lock().unwrap();
                match what {
                    "a" => watch.claimed(partition, i),
                    "d" => watch.delivered(partition, Instant::now()),
                    "r" => watch.released(partition, i),
                    _ => anyhow::bail!("member {i} said {line:?}"),
                }
            }
            Ok(())
        });
        Ok(ChildMember {
            process,
            stdin: Some(stdin),
            cpu,
            reader,
        })
    }

    /// The members' CPU time so far: this process's, or the member processes' sum.
    async fn cpu(&self, members: &mut [Member]) -> anyhow::Result<f64> {
        if !self.processes {
            return Ok(cpu_seconds());
        }
        // Ask them all, then collect: they answer in parallel.
        for member in members.iter_mut() {
            if let Member::Process(child) = member {
                let stdin = child.stdin.as_mut().expect("open until the end");
                if let Err(err) = stdin.write_all(b"cpu\n").await {
                    let status = child.process.try_wait().ok().flatten();
                    anyhow::bail!("a member process is gone ({err}; exit status {status:?})");
                }
            }
        }
        let mut total = 0.0;
        for member in members.iter_mut() {
            if let Member::Process(child) = member {
                let answer = tokio::time::timeout(Duration::from_secs(30), child.cpu.recv());
                total += answer
                    .await
                    .context("a member process did not report its CPU within 30 s")?
                    .context("a member process ended")?;
            }
        }
        Ok(total)
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

impl Member {
    /// Leaves the group and stops.
    async fn close(self) -> anyhow::Result<()> {
        match self {
            Member::Task(member, running) => {
                member.close().await?;
                running.await??;
            }
            Member::Process(mut child) => {
                drop(child.stdin.take());
                let status = tokio::time::timeout(Duration::from_secs(60), child.process.wait())
                    .await
                    .context("a member process did not stop within 60 s of its stdin closing")??;
                anyhow::ensure!(status.success(), "a member process ended with {status}");
                child.reader.await??;
            }
        }
        Ok(())
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
    if args.processes {
        // A member that died must be an error here, not a SIGPIPE that ends this
        // process without a word (main restores SIGPIPE's default for `| head`).
        // SAFETY: signal(2) only sets the disposition; no handler runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    let run = Run {
        config: config.clone(),
        protocol: args.protocol,
        group: format!("{topic}-group"),
        topic: topic.clone(),
        watch: Arc::new(Mutex::new(Watch::default())),
        work: Duration::from_millis(args.work_ms),
        processes: args.processes,
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
    let cpu_before = run.cpu(&mut members).await?;
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
    let scale_out_cpu = run.cpu(&mut members).await? - cpu_before;

    // Every partition delivers again; then the gap and the CPU with nothing moving.
    let settled = Instant::now();
    run.until("deliveries after the scale-out", |w| {
        w.partitions
            .values()
            .all(|p| p.last.is_some_and(|t| t > settled))
    })
    .await?;
    reset_gaps(&run.watch);
    let (quiet, quiet_cpu) = (Instant::now(), run.cpu(&mut members).await?);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steady_cpu = (run.cpu(&mut members).await? - quiet_cpu) / quiet.elapsed().as_secs_f64();
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
    let cpu_before = run.cpu(&mut members).await?;
    let join = Instant::now();
    members.push(run.start(args.members).await?);
    run.until("balance after the join", |w| {
        w.balanced(args.members + 1, partitions)
    })
    .await?;
    let join_seconds = join.elapsed().as_secs_f64();
    let join_cpu = run.cpu(&mut members).await? - cpu_before;
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

    // All at once, as a service's instances stop: one at a time, each leave would
    // rebalance the rest first (minutes on Tansu for 100 members).
    let mut closing = tokio::task::JoinSet::new();
    for member in members {
        closing.spawn(member.close());
    }
    // Every close runs to its end (a failed one does not cancel the others), and the
    // feed, the producer and the topic go either way.
    let mut failed = None;
    while let Some(closed) = closing.join_next().await {
        if let Err(err) = closed.map_err(anyhow::Error::from).and_then(|c| c) {
            failed.get_or_insert(err);
        }
    }
    feeding.abort();
    producer.close().await?;
    client.admin().delete_topic(&topic).await?;
    if let Some(err) = failed {
        return Err(err.context("closing a member"));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        r#"{{"client":"josefine","mode":"rebalance-{}","members":{},"partitions":{},"processes":{},"work_ms":{},"scale_out_seconds":{scale_out_seconds:.3},"join_seconds":{join_seconds:.3},"baseline_gap_ms":{:.1},"pause_unmoved_ms":{:.1},"unmoved":{unmoved_count},"pause_moved_ms":{:.1},"moved":{moved_count},"scale_out_cpu_seconds":{scale_out_cpu:.3},"join_cpu_seconds":{join_cpu:.3},"steady_cpu_per_second":{steady_cpu:.3}}}"#,
        args.protocol.name(),
        args.members,
        args.partitions,
        args.processes,
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
