//! `josefine groups list | describe G | lag G [--watch]`.

use std::time::Duration;

use clap::{Args, Subcommand};
use josefine::Client;

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups with their state.
    List,
    /// Members of a group: client ids, hosts and assigned partitions.
    Describe { group: String },
    /// Committed offsets, high watermarks and lag per partition and in total.
    Lag(LagArgs),
}

#[derive(Args)]
pub struct LagArgs {
    group: String,
    /// Refresh every SECONDS until Ctrl-C.
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
            println!(
                "group {}  state {}  protocol {}  members {}",
                d.group_id,
                d.state,
                if d.protocol.is_empty() {
                    "-"
                } else {
                    &d.protocol
                },
                d.members.len()
            );
            for m in &d.members {
                let mut partitions: Vec<String> = m
                    .assignment
                    .iter()
                    .map(|tp| format!("{}/{}", tp.topic, tp.partition))
                    .collect();
                partitions.sort();
                println!(
                    "  {}  client {}  host {}{}\n    assigned: {}",
                    m.member_id,
                    m.client_id,
                    m.client_host,
                    m.group_instance_id
                        .as_deref()
                        .map(|i| format!("  instance {i}"))
                        .unwrap_or_default(),
                    if partitions.is_empty() {
                        "nothing".to_string()
                    } else {
                        partitions.join(" ")
                    }
                );
            }
        }
        GroupsCommand::Lag(args) => match args.watch {
            None => print_lag(client, &args.group).await?,
            Some(seconds) => {
                let mut signals = crate::shutdown::signals()?;
                loop {
                    print_lag(client, &args.group).await?;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(seconds.max(1))) => println!(),
                        _ = signals.recv() => return Ok(()),
                    }
                }
            }
        },
    }
    Ok(())
}

async fn print_lag(client: &Client, group: &str) -> anyhow::Result<()> {
    let lag = client.admin().group_lag(group).await?;
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
