//! `josefine top GROUP`: a live view of any group's lag and rates, from outside (it
//! asks the cluster, like `groups lag`, so it watches members of any client). Each
//! refresh reads the group's committed offsets and the partitions' high watermarks;
//! the rates are their change since the last refresh: what the group consumed and what
//! producers wrote. On a terminal the screen is redrawn in place; elsewhere each frame
//! follows the last, so a log keeps the history.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use josefine::{Client, GroupLag};

use crate::progress::human;

#[derive(Args)]
pub struct TopArgs {
    group: String,
    /// Seconds between refreshes.
    #[arg(short, long, value_name = "SECONDS", default_value_t = 2.0)]
    interval: f64,
    /// Stop after this many frames (default: until Ctrl-C).
    #[arg(short = 'n', long)]
    iterations: Option<u64>,
}

impl TopArgs {
    /// `groups lag --watch SECONDS`: the same view.
    pub fn watch(group: String, seconds: u64) -> Self {
        Self {
            group,
            interval: seconds.max(1) as f64,
            iterations: None,
        }
    }
}

/// What a frame shows of a group's lag: [`GroupLag`] with what the view reads. Its
/// own type, because the library's report types are `#[non_exhaustive]` (the tests
/// could not build one).
struct Lag {
    group_id: String,
    state: String,
    total_lag: i64,
    partitions: Vec<PartitionRow>,
}

/// One partition's row of a [`Lag`].
struct PartitionRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    high_watermark: Option<i64>,
    lag: Option<i64>,
    owner: Option<Owner>,
}

/// The member that owns a partition.
struct Owner {
    member_id: String,
    client_id: String,
}

impl From<GroupLag> for Lag {
    fn from(lag: GroupLag) -> Self {
        Self {
            group_id: lag.group_id,
            state: lag.state.to_string(),
            total_lag: lag.total_lag,
            partitions: lag
                .partitions
                .into_iter()
                .map(|p| PartitionRow {
                    topic: p.topic,
                    partition: p.partition,
                    committed: p.committed,
                    high_watermark: p.high_watermark,
                    lag: p.lag,
                    owner: p.owner.map(|o| Owner {
                        member_id: o.member_id,
                        client_id: o.client_id,
                    }),
                })
                .collect(),
        }
    }
}

/// A partition's committed offset and high watermark at one refresh.
type Offsets = HashMap<(String, i32), (Option<i64>, Option<i64>)>;

pub async fn run(client: &Client, args: TopArgs) -> anyhow::Result<()> {
    let every = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| {
            format!(
                "--interval {}: give a positive number of seconds",
                args.interval
            )
        })?;
    let terminal = std::io::stdout().is_terminal();
    let mut signals = crate::shutdown::signals()?;
    let mut last: Option<(Instant, Offsets)> = None;
    let mut frames = 0;
    loop {
        let lag = Lag::from(client.admin().group_lag(&args.group).await?);
        anyhow::ensure!(
            !lag.partitions.is_empty() || last.is_some(),
            "group {} ({}) has no committed offsets and no assigned partitions: it does not \
             exist or never committed (josefine groups list shows the groups)",
            args.group,
            lag.state
        );
        let now = Instant::now();
        let since = last
            .as_ref()
            .map(|(at, offsets)| (now.duration_since(*at), offsets));
        let lines = frame(&lag, since);
        let mut out = std::io::stdout().lock();
        if terminal {
            // Home, clear, draw: the frame replaces the last one.
            write!(out, "\x1b[H\x1b[2J")?;
        } else if last.is_some() {
            writeln!(out)?;
        }
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        drop(out);
        last = Some((now, offsets(&lag)));
        frames += 1;
        if args.iterations.is_some_and(|n| frames >= n) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = signals.recv() => return Ok(()),
        }
    }
}

fn offsets(lag: &Lag) -> Offsets {
    lag.partitions
        .iter()
        .map(|p| {
            (
                (p.topic.clone(), p.partition),
                (p.committed, p.high_watermark),
            )
        })
        .collect()
}

/// One frame: a summary line, then a row per partition. `since` is the time since the
/// last refresh and its offsets; without it, rates show as `-`.
fn frame(lag: &Lag, since: Option<(Duration, &Offsets)>) -> Vec<String> {
    let per_second =
        |now: Option<i64>, before: Option<Option<i64>>, seconds: f64| match (now, before.flatten())
        {
            (Some(now), Some(before)) if seconds > 0.0 => {
                Some(now.saturating_sub(before).max(0) as f64 / seconds)
            }
            _ => None,
        };
    let seconds = since.map_or(0.0, |(d, _)| d.as_secs_f64());
    let mut consumed_total = since.map(|_| 0.0);
    let mut produced_total = since.map(|_| 0.0);
    let mut rows = Vec::new();
    let members: BTreeSet<&str> = lag
        .partitions
        .iter()
        .filter_map(|p| p.owner.as_ref().map(|o| o.member_id.as_str()))
        .collect();
    for p in &lag.partitions {
        let before = since.and_then(|(_, offsets)| offsets.get(&(p.topic.clone(), p.partition)));
        let consumed = per_second(p.committed, before.map(|b| b.0), seconds);
        let produced = per_second(p.high_watermark, before.map(|b| b.1), seconds);
        for (total, rate) in [
            (&mut consumed_total, consumed),
            (&mut produced_total, produced),
        ] {
            if let (Some(total), Some(rate)) = (total.as_mut(), rate) {
                *total += rate;
            }
        }
        let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let rate = |r: Option<f64>| r.map_or("-".to_string(), human);
        rows.push(format!(
            "{:<30} {:>9} {:>12} {:>14} {:>10} {:>10} {:>10}  {}",
            p.topic,
            p.partition,
            show(p.committed),
            show(p.high_watermark),
            show(p.lag),
            rate(consumed),
            rate(produced),
            p.owner.as_ref().map_or("-", |o| if o.client_id.is_empty() {
                o.member_id.as_str()
            } else {
                o.client_id.as_str()
            })
        ));
    }
    let rates = match (consumed_total, produced_total) {
        (Some(consumed), Some(produced)) => {
            let outlook = if lag.total_lag == 0 {
                "caught up".to_string()
            } else if consumed > produced {
                format!(
                    "caught up in about {:.0} s",
                    lag.total_lag as f64 / (consumed - produced)
                )
            } else {
                "not catching up".to_string()
            };
            format!(
                ", consuming {}/s, producers {}/s, {outlook}",
                human(consumed),
                human(produced)
            )
        }
        _ => String::new(),
    };
    let mut lines = vec![format!(
        "group {} ({}), {} member(s) own partitions, total lag {}{rates}",
        lag.group_id,
        lag.state,
        members.len(),
        lag.total_lag
    )];
    lines.push(format!(
        "{:<30} {:>9} {:>12} {:>14} {:>10} {:>10} {:>10}  owner",
        "topic", "partition", "committed", "high watermark", "lag", "consumed/s", "produced/s"
    ));
    lines.extend(rows);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(committed: [i64; 2], ends: [i64; 2]) -> Lag {
        let partitions: Vec<PartitionRow> = (0..2)
            .map(|p| PartitionRow {
                topic: "t".to_string(),
                partition: p as i32,
                committed: Some(committed[p]),
                high_watermark: Some(ends[p]),
                lag: Some(ends[p] - committed[p]),
                owner: (p == 0).then(|| Owner {
                    member_id: "m-1".to_string(),
                    client_id: "c".to_string(),
                }),
            })
            .collect();
        Lag {
            group_id: "g".to_string(),
            state: "Stable".to_string(),
            total_lag: partitions.iter().filter_map(|p| p.lag).sum(),
            partitions,
        }
    }

    #[test]
    fn rates_come_from_the_change_since_the_last_refresh() {
        let first = lag([100, 0], [300, 50]);
        let lines = frame(&first, None);
        assert_eq!(
            lines[0],
            "group g (Stable), 1 member(s) own partitions, total lag 250"
        );
        assert!(lines[2].ends_with("-          -  c"), "{}", lines[2]);
        // Two seconds later: 200 + 20 consumed, 100 + 10 produced.
        let second = lag([300, 20], [400, 60]);
        let lines = frame(&second, Some((Duration::from_secs(2), &offsets(&first))));
        assert_eq!(
            lines[0],
            "group g (Stable), 1 member(s) own partitions, total lag 140, consuming 110/s, \
             producers 55/s, caught up in about 3 s"
        );
        assert!(lines[2].contains(" 100         50  c"), "{}", lines[2]);
        let stalled = lag([300, 20], [500, 60]);
        let lines = frame(&stalled, Some((Duration::from_secs(1), &offsets(&second))));
        assert!(lines[0].ends_with("not catching up"), "{}", lines[0]);
    }
}
