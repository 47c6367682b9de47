//! `josefine-chaos run`: the whole suite. Starts everything (see
//! [`controller`](crate::controller)), plays the seeded plan, lets the group drain,
//! stops everything, checks the logs (see [`check`](crate::check)) and prints one
//! summary line; exits non-zero when a check fails.
//!
//! With `--exactly-once` (Kafka only) the members run `ConsumerGroup::transact` into
//! an output topic; after the members closed, the output is read `read_committed`
//! and checked for every input exactly once (see [`eos_check`](crate::eos_check)).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use josefine::{IsolationLevel, TopicPartition};

use crate::audit::{read_output, read_topic, Output, Stored};
use crate::check::{check, Incarnation, Verdict};
use crate::controller::{BrokerSetup, Chaos, Settings};
use crate::eos_check::{check_exactly_once, EosVerdict};
use crate::logs::{parse_member_log, parse_producer_log, ProducerLog};
use crate::schedule::{plan, PlanConfig};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The long form: 24 member kills, 6 leaves, 4 broker kills (about 6 minutes).
    #[arg(long)]
    pub long: bool,
    /// The seed of the plan (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 5)]
    pub members: usize,
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Records produced per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Produce without idempotence (Tansu loses acknowledged batches of idempotent
    /// producers when killed at the wrong moment; see docs/RELIABILITY.md).
    #[arg(long)]
    pub no_idempotence: bool,
    /// Overrides the form's number of member SIGKILLs.
    #[arg(long)]
    pub member_kills: Option<usize>,
    /// Overrides the form's number of leaves (each followed by a rejoin).
    #[arg(long)]
    pub leaves: Option<usize>,
    /// Overrides the form's number of broker kill -9s.
    #[arg(long)]
    pub broker_kills: Option<usize>,
    /// Logs, status files and the report go here (emptied first).
    #[arg(long, default_value = "build/chaos")]
    pub dir: PathBuf,
    /// The Tansu binary.
    #[arg(long, env = "JOSEFINE_TANSU", required_unless_present = "kafka")]
    pub tansu: Option<PathBuf>,
    /// moto's `moto_server` (the S3 server Tansu stores into).
    #[arg(long, env = "JOSEFINE_MOTO", required_unless_present = "kafka")]
    pub moto: Option<PathBuf>,
    /// Run against this Kafka (started outside) instead of Tansu: no broker kills.
    #[arg(long)]
    pub kafka: Option<String>,
    /// The members' group.protocol: classic, or consumer (KIP-848).
    #[arg(long, default_value = "classic", value_parser = ["classic", "consumer"])]
    pub group_protocol: String,
    /// Members' session.timeout.ms (Tansu holds a join for half of it).
    #[arg(long, default_value_t = 3000)]
    pub session_timeout_ms: u64,
    #[arg(long, default_value_t = 60)]
    pub settle_timeout_s: u64,
    /// Members process records in parallel (`ConsumerGroup::process`, key-ordered,
    /// commits with done sets) with this many in flight; 0: a handler that takes one
    /// batch at a time per partition.
    #[arg(long, default_value_t = 0)]
    pub parallel: usize,
    /// Exactly-once mode (Kafka only): members run `ConsumerGroup::transact`, one
    /// output record per input, transactions every 100 ms with a 5 s timeout; the
    /// output, read read_committed, must hold every input exactly once.
    #[arg(long, requires = "kafka", conflicts_with = "parallel")]
    pub exactly_once: bool,
}

fn plan_config(args: &RunArgs) -> PlanConfig {
    let (kills, leaves, brokers, gap) = if args.long {
        (24, 6, 4, (3_000, 14_000))
    } else {
        (3, 1, 1, (3_000, 8_000))
    };
    PlanConfig {
        member_kills: args.member_kills.unwrap_or(kills),
        leaves: args.leaves.unwrap_or(leaves),
        // A broker started outside is not ours to kill.
        broker_kills: if args.kafka.is_some() {
            0
        } else {
            args.broker_kills.unwrap_or(brokers)
        },
        gap_ms: gap,
        member_back_ms: (0, 6_000),
        rejoin_ms: (1_000, 8_000),
        broker_back_ms: (200, 4_000),
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000)
            .unwrap_or(1)
    });
    if args.exactly_once && args.group_protocol != "consumer" {
        // The settle watch reads assignments from ConsumerGroupDescribe.
        anyhow::bail!("--exactly-once runs with --group-protocol consumer");
    }
    let config = plan_config(&args);
    let events = plan(seed, &config);
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("emptying {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    eprintln!(
        "chaos: seed {seed}, {} members, {} events ({} member kills, {} leaves, {} broker kills) over ~{} s; logs in {}",
        args.members,
        events.len(),
        config.member_kills,
        config.leaves,
        config.broker_kills,
        events.last().map_or(0, |e| e.at_ms / 1000),
        dir.display()
    );
    let settings = Settings {
        seed,
        members: args.members,
        partitions: args.partitions,
        rate: args.rate,
        idempotence: !args.no_idempotence,
        dir: dir.clone(),
        broker: match (args.kafka, args.tansu, args.moto) {
            (Some(bootstrap), _, _) => BrokerSetup::External { bootstrap },
            (None, Some(tansu), Some(moto)) => BrokerSetup::Tansu { tansu, moto },
            _ => anyhow::bail!("give --kafka, or --tansu and --moto"),
        },
        group_protocol: args.group_protocol.clone(),
        settle_timeout: Duration::from_secs(args.settle_timeout_s),
        session_timeout_ms: args.session_timeout_ms,
        parallel: args.parallel,
        exactly_once: args.exactly_once,
    };
    let mut chaos = Chaos::start(settings).await?;
    let played = play(&mut chaos, &events).await;
    chaos.stop_services().await;
    let played = played?;

    let members = read_member_logs(&chaos)?;
    let (line, ok, details, problems) = match &played.exactly_once {
        Some(end) => {
            let v = check_exactly_once(
                &played.producer_logs,
                &played.topic,
                &end.outputs,
                &members,
                chaos.s.partitions,
                &played.ends,
                &end.committed,
            );
            let (line, ok) = summary_exactly_once(&chaos, &v, end.aborted, seed);
            (line, ok, format!("{v:#?}"), v.problems)
        }
        None => {
            let v = check(
                &played.producer_logs,
                &played.topic,
                &members,
                &chaos.broker_kill_ms,
            );
            let (line, ok) = summary(&chaos, &v, seed);
            (line, ok, format!("{v:#?}"), v.problems)
        }
    };
    report(&chaos, &details, &problems, &line, &dir)?;
    println!("{line}");
    Ok(ok)
}

/// What the end of a run collected for the checks.
struct Played {
    producer_logs: Vec<ProducerLog>,
    /// The input topic's records, and each partition's end.
    topic: Vec<Stored>,
    ends: BTreeMap<i32, i64>,
    exactly_once: Option<EosEnd>,
}

/// The exactly-once mode's end: read after every member closed.
struct EosEnd {
    /// The output topic as a read_committed reader sees it.
    outputs: Vec<Output>,
    /// Records of the output a read_uncommitted reader sees besides: what aborted
    /// transactions wrote.
    aborted: usize,
    /// The group's committed offsets of the input.
    committed: BTreeMap<i32, i64>,
}

/// The chaos phase and the end: plan, quiet, stop producing, read the topic, drain,
/// stop the members; in the exactly-once mode then read the committed offsets and
/// the output.
async fn play(chaos: &mut Chaos, events: &[crate::schedule::Event]) -> anyhow::Result<Played> {
    let start = tokio::time::Instant::now();
    for event in events {
        let at = start + Duration::from_millis(event.at_ms);
        while tokio::time::Instant::now() < at {
            chaos.tick().await?;
        }
        chaos.fire(event).await?;
    }
    chaos.quiesce().await?;
    if let Err(err) = chaos.wait_settled("after the last event").await {
        chaos.failures.push(err.to_string());
    }
    chaos.say("stopping the producer".into());
    chaos.stop_producer().await;
    let producer_logs = chaos
        .producer_logs()
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            parse_producer_log(&text).with_context(|| format!("reading {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let topic = read_topic(&chaos.client, &chaos.topic, chaos.s.partitions).await?;
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &(p, o, _) in &topic {
        let end = ends.entry(p).or_insert(0);
        *end = (*end).max(o + 1);
    }
    chaos.say(format!(
        "the topic holds {} records; the group drains",
        topic.len()
    ));
    chaos.drain(&ends, Duration::from_secs(120)).await?;
    if let Err(why) = chaos.owners_now() {
        chaos
            .failures
            .push(format!("at the end, the group is not settled: {why}"));
    }
    chaos.say("group drained; stopping the members".into());
    chaos.stop_members().await;
    let exactly_once = match chaos.output.clone() {
        Some(output) => Some(read_eos_end(chaos, &output).await?),
        None => None,
    };
    Ok(Played {
        producer_logs,
        topic,
        ends,
        exactly_once,
    })
}

/// With every member closed (so no transaction of theirs is open, and zombies'
/// have been aborted by the coordinator or fenced by their successors), the group's
/// committed offsets and the output as read_committed readers see it.
async fn read_eos_end(chaos: &mut Chaos, output: &str) -> anyhow::Result<EosEnd> {
    chaos.say("members closed; reading the committed offsets and the output".into());
    let tps: Vec<TopicPartition> = (0..chaos.s.partitions)
        .map(|p| TopicPartition::new(chaos.topic.as_str(), p))
        .collect();
    let committed = chaos
        .client
        .admin()
        .committed_offsets(&chaos.group, &tps)
        .await
        .context("reading the group's committed offsets at the end")?
        .into_iter()
        .map(|(tp, o)| (tp.partition, o))
        .collect();
    let (client, partitions) = (&chaos.client, chaos.s.partitions);
    let timeout = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let outputs = read_output(
        client,
        output,
        partitions,
        IsolationLevel::ReadCommitted,
        timeout,
    )
    .await
    .context("reading the output read_committed")?;
    let all = read_output(
        client,
        output,
        partitions,
        IsolationLevel::ReadUncommitted,
        timeout,
    )
    .await
    .context("reading the output read_uncommitted")?;
    let aborted = all.len().saturating_sub(outputs.len());
    chaos.say(format!(
        "the output holds {} committed records and {aborted} aborted ones (read twice in {:.1} s)",
        outputs.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(EosEnd {
        outputs,
        aborted,
        committed,
    })
}

fn read_member_logs(chaos: &Chaos) -> anyhow::Result<Vec<Incarnation>> {
    chaos
        .member_logs()
        .into_iter()
        .map(|(member, incarnation, end, path)| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let log =
                parse_member_log(&text).with_context(|| format!("reading {}", path.display()))?;
            Ok(Incarnation {
                member,
                incarnation,
                end,
                log,
            })
        })
        .collect()
}

fn summary(chaos: &Chaos, v: &Verdict, seed: u64) -> (String, bool) {
    let c = &chaos.counts;
    let ok = v.ok()
        && chaos.failures.is_empty()
        && chaos.commits.regressions.is_empty()
        && chaos.settle.timeouts.is_empty();
    let session_lost_other = v.dup_session_lost
        - v.dup_session_lost_near_broker_kill
        - v.dup_session_lost_coordinator_timeout;
    let line = format!(
        "chaos summary: seed={seed} records={} acked={} member_kills={} leaves={} joins={} \
         broker_restarts={} lost={} broker_lost={} duplicates={} (after_kill={} \
         session_lost_at_broker_kill={} session_lost_coordinator_timeout={} \
         session_lost_other={session_lost_other} crash={} unexplained={}) below_commit={} \
         commit_regressions={} unsettled={} max_settle={:.1}s crashes={} duration={:.0}s result={}",
        v.in_topic,
        v.acked,
        c.member_kills,
        c.leaves,
        c.joins,
        c.broker_restarts,
        v.lost,
        v.broker_lost,
        v.duplicates,
        v.dup_kill,
        v.dup_session_lost_near_broker_kill,
        v.dup_session_lost_coordinator_timeout,
        v.dup_crash,
        v.dup_unexplained,
        v.below_commit,
        chaos.commits.regressions.len(),
        chaos.settle.timeouts.len(),
        chaos.settle.max().as_secs_f64(),
        c.member_crashes + c.producer_crashes,
        chaos.elapsed().as_secs_f64(),
        if ok { "PASS" } else { "FAIL" },
    );
    (line, ok)
}

fn summary_exactly_once(
    chaos: &Chaos,
    v: &EosVerdict,
    aborted: usize,
    seed: u64,
) -> (String, bool) {
    let c = &chaos.counts;
    let ok = v.ok()
        && chaos.failures.is_empty()
        && chaos.commits.regressions.is_empty()
        && chaos.settle.timeouts.is_empty();
    let line = format!(
        "chaos summary: seed={seed} mode=exactly-once records={} acked={} member_kills={} \
         leaves={} joins={} outputs={} lost={} duplicates={} strays={} transforms={} redone={} \
         aborted_outputs={aborted} \
         offsets_not_at_end={} commit_regressions={} unsettled={} max_settle={:.1}s crashes={} \
         duration={:.0}s result={}",
        v.acks.in_topic,
        v.acks.acked,
        c.member_kills,
        c.leaves,
        c.joins,
        v.outputs,
        v.lost,
        v.duplicates,
        v.strays,
        v.transforms,
        v.redone,
        v.offsets_not_at_end,
        chaos.commits.regressions.len(),
        chaos.settle.timeouts.len(),
        chaos.settle.max().as_secs_f64(),
        c.member_crashes + c.producer_crashes,
        chaos.elapsed().as_secs_f64(),
        if ok { "PASS" } else { "FAIL" },
    );
    (line, ok)
}

/// Everything behind the summary (`details`: the verdict), in `report.txt`, and the
/// problems on stderr.
fn report(
    chaos: &Chaos,
    details: &str,
    verdict_problems: &[String],
    line: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let mut text = format!("{line}\n\n{details}\n\ncounts: {:#?}\n", chaos.counts);
    text += &format!(
        "\nsettle times ({} measured, {} overlapped by the next event, {} unprovoked):\n",
        chaos.settle.times.len(),
        chaos.settle.overlapped,
        chaos.settle.spontaneous
    );
    for (what, took) in &chaos.settle.times {
        text += &format!("  {:6.2} s after {what}\n", took.as_secs_f64());
    }
    text += &format!("\ncommitted-offset polls: {}\n", chaos.commits.polls);
    let problems: Vec<&String> = chaos
        .failures
        .iter()
        .chain(&chaos.commits.regressions)
        .chain(&chaos.settle.timeouts)
        .chain(verdict_problems)
        .collect();
    text += "\nproblems:\n";
    for p in &problems {
        text += &format!("  {p}\n");
        eprintln!("chaos problem: {p}");
    }
    std::fs::write(dir.join("report.txt"), text)?;
    Ok(())
}
