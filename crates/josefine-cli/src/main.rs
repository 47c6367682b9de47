//! `josefine`: look at and manage a Kafka cluster from the shell.
//!
//! Subcommands map to the library's admin API; errors name what to check next.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use josefine::{Client, ClusterMetadata, NewTopic};

mod bench;

#[derive(Parser)]
#[command(
    name = "josefine",
    version,
    about = "A Kafka client built around consumer groups"
)]
struct Cli {
    /// Broker addresses (host:port, comma-separated).
    #[arg(
        short,
        long,
        env = "JOSEFINE_BOOTSTRAP",
        default_value = "localhost:9092",
        global = true
    )]
    bootstrap: String,

    /// Seconds to wait for any one broker response.
    #[arg(long, default_value_t = 30, global = true)]
    timeout: u64,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print brokers, controller, topics, partitions and leaders (the default).
    Cluster,
    /// Manage topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Throughput benchmarks (see docs/BENCHMARKS.md and scripts/bench.sh).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Produce N records and report msgs/s, CPU and peak RSS as one JSON line.
    Produce(bench::ProduceArgs),
    /// Read N records from the beginning of P partitions; same JSON report.
    Consume(bench::ConsumeArgs),
    /// Read N records as a consumer-group member (join included); same JSON report.
    Group(bench::GroupArgs),
}

#[derive(Subcommand)]
enum TopicCommand {
    /// List topics with their partition counts.
    List,
    /// Create a topic and wait until every partition has a leader.
    Create {
        name: String,
        #[arg(short, long, default_value_t = 1)]
        partitions: i32,
        #[arg(short, long, default_value_t = -1)]
        replication_factor: i16,
        /// Topic config as key=value (repeatable).
        #[arg(short, long = "config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic.
    Delete { name: String },
    /// Show partitions, leaders, replicas and ISR of a topic.
    Describe { name: String },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("JOSEFINE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", render_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping a cause whose text its parent already shows
/// (library errors print their source inline).
fn render_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str("\n  caused by: ");
            }
            out.push_str(&text);
        }
    }
    out
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::builder()
        .bootstrap([cli.bootstrap.as_str()])
        .client_id("josefine-cli")
        .request_timeout(Duration::from_secs(cli.timeout))
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot reach the cluster at {} (set --bootstrap or JOSEFINE_BOOTSTRAP)",
                cli.bootstrap
            )
        })?;
    let admin = client.admin();
    match cli.command.unwrap_or(Command::Cluster) {
        Command::Cluster => {
            let md = client.refresh_all_metadata().await?;
            print_cluster(&md);
        }
        Command::Topic(TopicCommand::List) => {
            for t in admin.list_topics().await? {
                let internal = if t.is_internal { " (internal)" } else { "" };
                println!("{}\t{} partitions{internal}", t.name, t.partitions);
            }
        }
        Command::Topic(TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        }) => {
            let mut topic = NewTopic::new(&name, partitions).replication_factor(replication_factor);
            for (k, v) in configs {
                topic = topic.config(k, v);
            }
            admin
                .create_topic(topic)
                .await
                .with_context(|| format!("creating topic {name}"))?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        Command::Topic(TopicCommand::Delete { name }) => {
            admin
                .delete_topic(&name)
                .await
                .with_context(|| format!("deleting topic {name}"))?;
            println!("deleted topic {name}");
        }
        Command::Bench(BenchCommand::Produce(args)) => bench::produce(client.clone(), args).await?,
        Command::Bench(BenchCommand::Consume(args)) => bench::consume(client.clone(), args).await?,
        Command::Bench(BenchCommand::Group(args)) => bench::group(client.clone(), args).await?,
        Command::Topic(TopicCommand::Describe { name }) => {
            let md = client.refresh_metadata(&[&name]).await?;
            md.topic_or_error(&name)?;
            print_topics(&md, Some(&name));
        }
    }
    client.close();
    Ok(())
}

fn print_cluster(md: &ClusterMetadata) {
    println!("cluster {}", md.cluster_id.as_deref().unwrap_or("(no id)"));
    println!("brokers:");
    for b in md.brokers.values() {
        let controller = if md.controller_id == Some(b.id) {
            "  (controller)"
        } else {
            ""
        };
        let rack = b
            .rack
            .as_deref()
            .map(|r| format!("  rack {r}"))
            .unwrap_or_default();
        println!("  {:>5}  {}{rack}{controller}", b.id, b.addr());
    }
    print_topics(md, None);
}

fn print_topics(md: &ClusterMetadata, only: Option<&str>) {
    let topics: Vec<_> = md
        .topics
        .values()
        .filter(|t| only.is_none_or(|n| t.name == n))
        .collect();
    println!("topics: {}", topics.len());
    for t in topics {
        let internal = if t.is_internal { " (internal)" } else { "" };
        println!(
            "  {}{internal}: {} partition(s)",
            t.name,
            t.partitions.len()
        );
        for p in &t.partitions {
            let leader = p.leader.map_or("none".to_string(), |l| l.to_string());
            let error = p.error.map(|e| format!("  error {e}")).unwrap_or_default();
            println!(
                "    partition {:>3}  leader {leader:>5}  epoch {:>3}  replicas {:?}  isr {:?}{error}",
                p.id, p.leader_epoch, p.replicas, p.isr
            );
        }
    }
}
