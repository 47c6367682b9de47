//! `josefine-chaos run`: the whole suite. Starts everything (see
//! [`controller`](crate::controller)), plays the seeded plan, lets the group drain,
//! stops everything, checks the logs (see [`check`](crate::check)) and prints one
//! summary line; exits non-zero when a check fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::audit::{read_topic, Stored};
use crate::check::{check, Incarnation, Verdict};
use crate::controller::{BrokerSetup, Chaos, Settings};
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
    };
    let mut chaos = Chaos::start(settings).await?;
    let played = play(&mut chaos, &events).await;
    chaos.stop_services().await;
    let (producer_logs, topic) = played?;

    let members = read_member_logs(&chaos)?;
    let verdict = check(&producer_logs, &topic, &members, &chaos.broker_kill_ms);
    let (line, ok) = summary(&chaos, &verdict, seed);
    report(&chaos, &verdict, &line, &dir)?;
    println!("{line}");
    Ok(ok)
}

/// The chaos phase and the end: plan, quiet, stop producing, read the topic, drain,
/// stop the members. Returns the producer logs and the topic's records.
async fn play(
    chaos: &mut Chaos,
    events: &[crate::schedule::Event],
) -> anyhow::Result<(Vec<ProducerLog>, Vec<Stored>)> {
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
    Ok((producer_logs, topic))
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

/// Everything behind the summary, in `report.txt`, and the problems on stderr.
fn report(chaos: &Chaos, v: &Verdict, line: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut text = format!("{line}\n\n{v:#?}\n\ncounts: {:#?}\n", chaos.counts);
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
        .chain(&v.problems)
        .collect();
    text += "\nproblems:\n";
    for p in &problems {
        text += &format!("  {p}\n");
        eprintln!("chaos problem: {p}");
    }
    std::fs::write(dir.join("report.txt"), text)?;
    Ok(())
}
