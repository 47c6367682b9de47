//! `josefine groups list | describe G | lag G [--watch] | reset-offsets | delete G |
//! delete-offsets`.

use anyhow::Context;
use clap::{Args, Subcommand};
use josefine::{Client, ResetTo, TopicPartition};

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups with their state.
    List,
    /// Members of a group: client ids, hosts and assigned partitions.
    Describe { group: String },
    /// Committed offsets, high watermarks and lag per partition and in total.
    Lag(LagArgs),
    /// Move a group's committed offsets (it must have no members): prints the plan,
    /// and commits it with --execute.
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (it must have no members).
    Delete { group: String },
    /// Delete a group's committed offsets of a topic, or of some of its partitions.
    DeleteOffsets {
        #[arg(long)]
        group: String,
        /// TOPIC, or TOPIC:P,P,... for some partitions.
        #[arg(long)]
        topic: String,
    },
}

#[derive(Args)]
pub struct ResetArgs {
    #[arg(long)]
    group: String,
    /// TOPIC (every partition), or TOPIC:P,P,... (repeatable).
    #[arg(long, required = true)]
    topic: Vec<String>,
    #[command(flatten)]
    to: ResetTarget,
    /// Commit the plan; without it nothing changes.
    #[arg(long)]
    execute: bool,
    /// Only print the plan (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ResetTarget {
    /// To the log start.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end (skip everything in the log now).
    #[arg(long)]
    to_latest: bool,
    /// To the first record at or after this time: RFC 3339
    /// (2026-12-05T10:00:00Z, 2026-12-05T11:00:00+01:00) or milliseconds since the epoch.
    #[arg(long, value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// To this offset (kept inside the log).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// The committed offset moved by N records (negative: back).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
}

impl ResetTarget {
    fn resolve(&self) -> anyhow::Result<ResetTo> {
        Ok(if self.to_earliest {
            ResetTo::Earliest
        } else if self.to_latest {
            ResetTo::Latest
        } else if let Some(text) = &self.to_datetime {
            ResetTo::Timestamp(parse_datetime("--to-datetime", text)?)
        } else if let Some(offset) = self.to_offset {
            ResetTo::Offset(offset)
        } else {
            ResetTo::ShiftBy(self.shift_by.expect("clap requires one target"))
        })
    }
}

#[derive(Args)]
pub struct LagArgs {
    group: String,
    /// Refresh every SECONDS until Ctrl-C, with rates (as `josefine top`).
    #[arg(short, long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<u64>,
}

pub async fn run(client: &Client, command: GroupsCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    match command {
        GroupsCommand::List => {
            let groups = admin.list_groups().await?;
            if groups.is_empty() {
                println!("no groups");
            }
            for g in groups {
                println!(
                    "{}\t{}\t{}",
                    g.group_id,
                    g.state.as_ref().map_or("-", |s| s.as_str()),
                    if g.protocol_type.is_empty() {
                        "-"
                    } else {
                        &g.protocol_type
                    }
                );
            }
        }
        GroupsCommand::Describe { group } => {
            let d = admin.describe_group(&group).await?;
            let epochs = match (d.group_epoch, d.assignment_epoch) {
                (Some(g), Some(a)) => format!("  epoch {g} (assignment {a})"),
                _ => String::new(),
            };
            println!(
                "group {}  state {}  protocol {}{}  members {}{}",
                d.group_id,
                d.state,
                match d.group_protocol {
                    josefine::GroupProtocol::Consumer => "consumer (KIP-848), assignor ",
                    _ => "",
                },
                if d.protocol.is_empty() {
                    "-"
                } else {
                    &d.protocol
                },
                d.members.len(),
                epochs,
            );
            let list = |tps: &[josefine::TopicPartition]| {
                let mut partitions: Vec<String> = tps
                    .iter()
                    .map(|tp| format!("{}/{}", tp.topic, tp.partition))
                    .collect();
                partitions.sort();
                if partitions.is_empty() {
                    "nothing".to_string()
                } else {
                    partitions.join(" ")
                }
            };
            for m in &d.members {
                println!(
                    "  {}  client {}  host {}{}{}\n    assigned: {}",
                    m.member_id,
                    m.client_id,
                    m.client_host,
                    m.group_instance_id
                        .as_deref()
                        .map(|i| format!("  instance {i}"))
                        .unwrap_or_default(),
                    m.member_epoch
                        .map(|e| format!("  epoch {e}"))
                        .unwrap_or_default(),
                    list(&m.assignment),
                );
                // Under the consumer protocol: where a member still reconciling goes.
                if m.member_epoch.is_some() && m.target_assignment != m.assignment {
                    println!("    target:   {}", list(&m.target_assignment));
                }
                if let Some(regex) = &m.subscribed_topic_regex {
                    println!("    subscribed: {regex}");
                }
            }
        }
        GroupsCommand::ResetOffsets(args) => {
            let to = args.to.resolve()?;
            let mut partitions = Vec::new();
            for spec in &args.topic {
                partitions.extend(topic_partitions(client, spec).await?);
            }
            let plan = admin
                .plan_offset_reset(&args.group, &partitions, to)
                .await?;
            println!(
                "{:<30} {:>9} {:>12} {:>12}",
                "topic", "partition", "current", "new"
            );
            for p in &plan {
                println!(
                    "{:<30} {:>9} {:>12} {:>12}",
                    p.partition.topic,
                    p.partition.partition,
                    p.current.map_or("-".to_string(), |c| c.to_string()),
                    p.target
                );
            }
            if args.execute {
                admin.commit_group_offsets(&args.group, &plan).await?;
                println!("group {}: {} partition(s) reset", args.group, plan.len());
            } else {
                println!("dry run: nothing changed; add --execute to commit this plan");
            }
        }
        GroupsCommand::Delete { group } => {
            admin.delete_group(&group).await?;
            println!("group {group} deleted");
        }
        GroupsCommand::DeleteOffsets { group, topic } => {
            let partitions = topic_partitions(client, &topic).await?;
            let outcomes = admin.delete_committed_offsets(&group, &partitions).await?;
            crate::output::print_outcomes(&outcomes, |()| "deleted".to_string(), "offsets")?;
        }
        GroupsCommand::Lag(args) => match args.watch {
            None => print_lag(client, &args.group).await?,
            // The live view, with rates.
            Some(seconds) => {
                crate::top::run(client, crate::top::TopArgs::watch(args.group, seconds)).await?
            }
        },
    }
    Ok(())
}

async fn print_lag(client: &Client, group: &str) -> anyhow::Result<()> {
    let lag = client.admin().group_lag(group).await?;
    anyhow::ensure!(
        !lag.partitions.is_empty(),
        "group {group} ({}) has no committed offsets and no assigned partitions: it does \
         not exist or never committed (josefine groups list shows the groups)",
        lag.state
    );
    println!(
        "{:<30} {:>9} {:>12} {:>14} {:>10}  owner",
        "topic", "partition", "committed", "high watermark", "lag"
    );
    for p in &lag.partitions {
        println!(
            "{:<30} {:>9} {:>12} {:>14} {:>10}  {}",
            p.topic,
            p.partition,
            p.committed.map_or("-".to_string(), |c| c.to_string()),
            p.high_watermark.map_or("-".to_string(), |h| h.to_string()),
            p.lag.map_or("-".to_string(), |l| l.to_string()),
            p.owner.as_ref().map_or("-", |o| if o.client_id.is_empty() {
                o.member_id.as_str()
            } else {
                o.client_id.as_str()
            })
        );
    }
    println!(
        "group {} ({}), total lag {}",
        lag.group_id, lag.state, lag.total_lag
    );
    Ok(())
}

/// `TOPIC` (every partition, from metadata) or `TOPIC:P,P,...`.
pub(crate) async fn topic_partitions(
    client: &Client,
    spec: &str,
) -> anyhow::Result<Vec<TopicPartition>> {
    let (topic, listed) = match spec.split_once(':') {
        Some((topic, list)) => (topic, Some(list)),
        None => (spec, None),
    };
    match listed {
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<i32>()
                    .map(|p| TopicPartition::new(topic, p))
                    .with_context(|| format!("--topic {spec:?}: {p:?} is not a partition number"))
            })
            .collect(),
        None => {
            let metadata = client.admin().describe_topics(&[topic]).await?;
            let topic_metadata = metadata
                .first()
                .with_context(|| format!("topic {topic} does not exist"))?;
            if let Some(code) = topic_metadata.error {
                anyhow::bail!("topic {topic}: {}", code.name());
            }
            Ok(topic_metadata
                .partitions
                .iter()
                .map(|p| TopicPartition::new(topic, p.id))
                .collect())
        }
    }
}

/// Milliseconds since the epoch from RFC 3339 (`2026-12-05T10:00:00Z`, with optional
/// fractional seconds and a `+HH:MM` offset) or from a plain number of milliseconds.
pub(crate) fn parse_datetime(flag: &str, text: &str) -> anyhow::Result<i64> {
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(millis);
    }
    let bad = || {
        anyhow::anyhow!(
            "{flag} {text:?}: expected RFC 3339 such as 2026-12-05T10:00:00Z or \
             2026-12-05T11:00:00+01:00, or milliseconds since the epoch"
        )
    };
    let (date, rest) = text.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let numbers = |s: &str, sep: char| -> Option<Vec<i64>> {
        s.split(sep).map(|n| n.parse::<i64>().ok()).collect()
    };
    let [year, month, day] = numbers(date, '-').ok_or_else(bad)?[..] else {
        return Err(bad());
    };
    let (time, offset_minutes) = if let Some(time) = rest.strip_suffix(['Z', 'z']) {
        (time, 0)
    } else {
        let at = rest.rfind(['+', '-']).ok_or_else(bad)?;
        let (time, offset) = rest.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let [h, m] = numbers(&offset[1..], ':').ok_or_else(bad)?[..] else {
            return Err(bad());
        };
        (time, sign * (h * 60 + m))
    };
    let (time, fraction) = time.split_once('.').unwrap_or((time, ""));
    let [hour, minute, second] = numbers(time, ':').ok_or_else(bad)?[..] else {
        return Err(bad());
    };
    let millis_fraction = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
        digits.parse::<i64>().map_err(|_| bad())?
    };
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..61).contains(&second);
    if !valid {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis_fraction)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_rfc3339_or_milliseconds() {
        assert_eq!(
            parse_datetime("--to-datetime", "1970-01-01T00:00:00Z").unwrap(),
            0
        );
        assert_eq!(
            parse_datetime("--to-datetime", "2026-12-05T10:00:00Z").unwrap(),
            1_796_464_800_000
        );
        assert_eq!(
            parse_datetime("--to-datetime", "2026-12-05T11:00:00.25+01:00").unwrap(),
            1_796_464_800_250
        );
        assert_eq!(
            parse_datetime("--to-datetime", "2000-03-01T00:00:00-00:30").unwrap(),
            951_870_600_000
        );
        assert_eq!(
            parse_datetime("--to-datetime", "1796464800000").unwrap(),
            1_796_464_800_000
        );
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-12-05",
            "2026-12-05T10:00",
        ] {
            assert!(parse_datetime("--to-datetime", bad).is_err(), "{bad}");
        }
    }
}
