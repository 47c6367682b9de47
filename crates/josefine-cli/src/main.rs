//! `josefine`: consume, produce, look at and manage a Kafka cluster from the shell.
//!
//! Settings use Kafka's property names: `--config FILE.properties`, then
//! `--bootstrap`, then `-X key=value` (later wins), before or after the subcommand. Errors are one line saying what is
//! wrong and what to try, with a non-zero exit.

use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use josefine::{ClusterMetadata, Config, ErrorKind, NewTopic};

mod acls;
mod bench;
mod consume;
mod demo;
mod groups;
mod latency_bench;
mod local_broker;
mod mock;
mod output;
mod produce;
mod progress;
mod rebalance_bench;
mod shutdown;
mod stats;
mod top;

#[derive(Parser)]
#[command(
    name = "josefine",
    version,
    about = "A Kafka client built around consumer groups"
)]
struct Cli {
    /// Broker addresses (host:port, comma-separated); default localhost:9092 unless the
    /// config sets bootstrap.servers.
    #[arg(short, long, env = "JOSEFINE_BOOTSTRAP", global = true)]
    bootstrap: Option<String>,

    /// A Kafka property, key=value (repeatable), e.g. -X session.timeout.ms=10000.
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    properties: Vec<String>,

    /// A Java .properties file with Kafka properties (repeatable; later files win).
    #[arg(long, value_name = "FILE", global = true)]
    config: Vec<PathBuf>,

    /// Serve the client's metrics (docs/METRICS.md) in Prometheus text format at
    /// http://ADDR/metrics while the command runs, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", global = true)]
    metrics_addr: Option<std::net::SocketAddr>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print brokers, controller, topics, partitions and leaders (the default).
    Cluster,
    /// A broker's config entries with where each comes from.
    BrokerConfig {
        /// The broker's node id (see `josefine cluster`).
        id: i32,
        /// Only the entries not at Kafka's default.
        #[arg(long)]
        overrides: bool,
    },
    /// Print records of topics, as a group member (--group) or from partitions.
    Consume(consume::ConsumeArgs),
    /// Write records from stdin, a file, or generated ones.
    Produce(produce::ProduceArgs),
    /// Manage topics.
    #[command(subcommand, alias = "topic")]
    Topics(TopicCommand),
    /// Consumer groups: list, describe, lag, reset offsets, delete.
    #[command(subcommand, alias = "group")]
    Groups(groups::GroupsCommand),
    /// A live view of a group's lag and rates (consumed and produced per second,
    /// when it catches up), refreshed until Ctrl-C.
    Top(top::TopArgs),
    /// ACLs: list, create, delete (Kafka's filter semantics).
    #[command(subcommand)]
    Acls(acls::AclsCommand),
    /// A consumer group at work: starts a local broker (unless --bootstrap or
    /// bootstrap.servers names a cluster), produces, consumes with a group of three,
    /// rebalances, and shows the lag reaching zero.
    Demo(demo::DemoArgs),
    /// A mock Kafka cluster in memory (the josefine-mock crate) until Ctrl-C: prints
    /// its bootstrap address first; no JVM, nothing to install.
    Mock(mock::MockArgs),
    /// Throughput benchmarks (see docs/BENCHMARKS.md and scripts/bench.sh).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a shell completion script: `josefine completions bash > /etc/bash_completion.d/josefine`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `josefine man > josefine.1`.
    Man,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Produce N records and report msgs/s, CPU and peak RSS as one JSON line.
    Produce(bench::ProduceArgs),
    /// Read N records from the beginning of P partitions; same JSON report.
    Consume(bench::ConsumeArgs),
    /// Read N records as a consumer-group member (join included); same JSON report.
    Group(bench::GroupArgs),
    /// Rebalance time and the pause of unmoved partitions under one group protocol.
    Rebalance(rebalance_bench::RebalanceArgs),
    /// One member of `bench rebalance --processes`, driven over stdin and stdout.
    #[command(hide = true)]
    RebalanceMember(rebalance_bench::MemberArgs),
    /// End-to-end latency percentiles of records produced at a fixed rate and read by
    /// a group member in this process; same JSON report.
    Latency(latency_bench::LatencyArgs),
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
        /// Topic config as key=value (repeatable), e.g. -c retention.ms=3600000.
        #[arg(short = 'c', long = "topic-config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic.
    Delete { name: String },
    /// Delete the records before an offset: the partitions' logs then start there.
    DeleteRecords {
        /// TOPIC:P[,P...]
        partitions: String,
        /// The first offset to keep.
        #[arg(long)]
        before: i64,
    },
    /// Grow a topic to TOTAL partitions (keyed records then map to other partitions).
    AddPartitions {
        name: String,
        #[arg(long)]
        total: i32,
    },
    /// Print a topic's config entries with where each value comes from.
    DescribeConfig {
        name: String,
        /// Only the entries set on the topic itself.
        #[arg(long)]
        overrides: bool,
    },
    /// Change a topic's config, entry by entry (the others keep their values).
    AlterConfig {
        name: String,
        /// KEY=VALUE to set (repeatable).
        #[arg(long, value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// KEY to remove from the topic (its default applies again; repeatable).
        #[arg(long)]
        delete: Vec<String>,
        /// KEY=VALUE to add to a list entry (repeatable).
        #[arg(long, value_parser = parse_key_value)]
        append: Vec<(String, String)>,
        /// KEY=VALUE to remove from a list entry (repeatable).
        #[arg(long, value_parser = parse_key_value)]
        subtract: Vec<(String, String)>,
    },
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
    // `josefine ... | head`: a reader that goes away ends the process quietly, as it
    // does cat or kcat (Rust ignores SIGPIPE, and println! then panics). A group
    // consumer stopped so commits nothing more: its records are read again.
    // SAFETY: signal(2) only sets the disposition back to the default; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("JOSEFINE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let mut cli = Cli::parse();
    (cli.config, cli.properties) = every_level(
        std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned()),
    );
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
/// `name=value\t(source)` per entry `show` keeps; sensitive values are not printed.
fn print_config(entries: &[josefine::ConfigEntry], show: impl Fn(&josefine::ConfigEntry) -> bool) {
    for entry in entries.iter().filter(|e| show(e)) {
        let value = match (&entry.value, entry.sensitive) {
            (_, true) => "(sensitive)",
            (Some(value), false) => value.as_str(),
            (None, false) => "(null)",
        };
        println!("{}={value}\t({})", entry.name, entry.source);
    }
}

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

/// `--config` and `-X` wherever they were written, in order. clap keeps a global
/// argument given both before and after a subcommand only where it was given last
/// (it syncs the values of every level to the deepest one's), so they are read off
/// the command line here, as clap splits it: `-X K=V`, `-XK=V`, `-X=K=V`,
/// `--config F`, `--config=F`, up to a `--`.
fn every_level(args: impl IntoIterator<Item = String>) -> (Vec<PathBuf>, Vec<String>) {
    let (mut configs, mut properties) = (Vec::new(), Vec::new());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        } else if arg == "-X" {
            properties.extend(args.next());
        } else if let Some(value) = arg.strip_prefix("-X") {
            properties.push(value.strip_prefix('=').unwrap_or(value).to_string());
        } else if arg == "--config" {
            configs.extend(args.next().map(PathBuf::from));
        } else if let Some(value) = arg.strip_prefix("--config=") {
            configs.push(PathBuf::from(value));
        }
    }
    (configs, properties)
}

/// The settings: the config files, then --bootstrap, then -X (later wins); and
/// whether they name a cluster (else localhost:9092 is assumed).
fn settings(cli: &Cli) -> anyhow::Result<(Config, bool)> {
    let mut config = Config::new();
    for path in &cli.config {
        for (key, value) in Config::from_file(path)?.iter() {
            config.set(key, value)?;
        }
    }
    if let Some(servers) = &cli.bootstrap {
        config.set("bootstrap.servers", servers)?;
    }
    for property in &cli.properties {
        let (key, value) = property.split_once('=').with_context(|| {
            format!("-X {property:?}: expected key=value, e.g. -X session.timeout.ms=10000")
        })?;
        config.set(key, value)?;
    }
    let cluster_given = config.get("bootstrap.servers").is_some();
    if !cluster_given {
        config.set("bootstrap.servers", "localhost:9092")?;
    }
    // Defaults for an interactive tool, where the Java client's are for services: a
    // 10 s session makes joins quick (some brokers, Tansu among them, hold a join for
    // half the session timeout) and a killed `consume` leaves the group sooner.
    for (key, value) in [
        ("client.id", "josefine-cli"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
    ] {
        if config.get(key).is_none() {
            config.set(key, value)?;
        }
    }
    Ok((config, cluster_given))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (config, cluster_given) = settings(&cli)?;
    // Before any client exists: handles are looked up when clients are built.
    let wants_stats = matches!(&cli.command, Some(Command::Consume(args)) if args.stats.is_some());
    let recorder = stats::install(cli.metrics_addr, wants_stats)?;
    let command = cli.command.unwrap_or(Command::Cluster);
    // Neither needs a cluster.
    match command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "josefine",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let command = match command {
        Command::Demo(args) => return demo::run(&config, cluster_given, args).await,
        Command::Mock(args) => return mock::run(args).await,
        Command::Bench(BenchCommand::RebalanceMember(args)) => {
            return rebalance_bench::member(args).await
        }
        command => command,
    };
    let servers = config
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_string();
    let client = match config.client().await {
        Ok(client) => client,
        // A certificate or credentials problem says what to fix on its own.
        Err(err) if matches!(err.kind(), ErrorKind::Tls | ErrorKind::Authentication) => {
            return Err(err.into())
        }
        Err(err) => {
            return Err(anyhow::Error::from(err).context(format!(
                "cannot reach the cluster at {servers}; check that a broker runs there, \
                 or point --bootstrap (or -X bootstrap.servers) at one"
            )))
        }
    };
    let admin = client.admin();
    match command {
        Command::Cluster => {
            let md = client.refresh_all_metadata().await?;
            print_cluster(&md);
        }
        Command::Topics(TopicCommand::List) => {
            for t in admin.list_topics().await? {
                let internal = if t.is_internal { " (internal)" } else { "" };
                println!("{}\t{} partitions{internal}", t.name, t.partitions);
            }
        }
        Command::Topics(TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        }) => {
            let mut topic = NewTopic::new(&name, partitions).replication_factor(replication_factor);
            for (k, v) in configs {
                topic = topic.config(k, v);
            }
            // Its errors name the topic (and a bad name or count is refused unsent).
            admin.create_topic(topic).await?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        Command::Topics(TopicCommand::Delete { name }) => {
            admin
                .delete_topic(&name)
                .await
                .with_context(|| format!("deleting topic {name}"))?;
            println!("deleted topic {name}");
        }
        Command::Topics(TopicCommand::DescribeConfig { name, overrides }) => {
            let entries = admin.describe_topic_config(&name).await?;
            print_config(&entries, |e| {
                !overrides || e.source == josefine::ConfigSource::Topic
            });
        }
        Command::BrokerConfig { id, overrides } => {
            let entries = admin.describe_broker_config(id).await?;
            print_config(&entries, |e| {
                !overrides || e.source != josefine::ConfigSource::Default
            });
        }
        Command::Topics(TopicCommand::AlterConfig {
            name,
            set,
            delete,
            append,
            subtract,
        }) => {
            use josefine::ConfigChange;
            let changes: Vec<ConfigChange> = set
                .into_iter()
                .map(|(k, v)| ConfigChange::Set(k, v))
                .chain(delete.into_iter().map(ConfigChange::Delete))
                .chain(append.into_iter().map(|(k, v)| ConfigChange::Append(k, v)))
                .chain(
                    subtract
                        .into_iter()
                        .map(|(k, v)| ConfigChange::Subtract(k, v)),
                )
                .collect();
            anyhow::ensure!(
                !changes.is_empty(),
                "nothing to change: give --set, --delete, --append or --subtract"
            );
            admin.alter_topic_config(&name, &changes).await?;
            println!("topic {name}: {} config change(s) applied", changes.len());
        }
        Command::Topics(TopicCommand::AddPartitions { name, total }) => {
            admin.create_partitions(&name, total).await?;
            println!("topic {name} now has {total} partition(s)");
        }
        Command::Demo(_)
        | Command::Mock(_)
        | Command::Bench(BenchCommand::RebalanceMember(_))
        | Command::Completions { .. }
        | Command::Man => {
            unreachable!("handled before connecting")
        }
        Command::Groups(command) => groups::run(&client, command).await?,
        Command::Top(args) => top::run(&client, args).await?,
        Command::Acls(command) => acls::run(&client, command).await?,
        Command::Consume(args) => consume::run(client.clone(), &config, args, recorder).await?,
        Command::Produce(args) => produce::run(client.clone(), &config, args).await?,
        Command::Bench(BenchCommand::Produce(args)) => {
            bench::produce(client.clone(), &config, args).await?
        }
        Command::Bench(BenchCommand::Consume(args)) => bench::consume(client.clone(), args).await?,
        Command::Bench(BenchCommand::Group(args)) => bench::group(client.clone(), args).await?,
        Command::Bench(BenchCommand::Latency(args)) => {
            latency_bench::latency(client.clone(), args).await?
        }
        Command::Bench(BenchCommand::Rebalance(args)) => {
            rebalance_bench::rebalance(client.clone(), &config, args).await?
        }
        Command::Topics(TopicCommand::Describe { name }) => {
            let md = client.refresh_metadata(&[&name]).await?;
            let topic = md.topic_or_error(&name)?;
            let partitions: Vec<josefine::TopicPartition> = topic
                .partitions
                .iter()
                .map(|p| josefine::TopicPartition::new(name.as_str(), p.id))
                .collect();
            let (starts, ends) = tokio::try_join!(
                admin.list_offsets(&partitions, josefine::StartOffset::Earliest),
                admin.list_offsets(&partitions, josefine::StartOffset::Latest),
            )?;
            print_topics(&md, Some(&name));
            for tp in &partitions {
                println!(
                    "    partition {:>3}  offsets {}..{}",
                    tp.partition, starts[tp], ends[tp]
                );
            }
        }
        Command::Topics(TopicCommand::DeleteRecords { partitions, before }) => {
            let partitions = groups::topic_partitions(&client, &partitions).await?;
            let wanted: Vec<(josefine::TopicPartition, i64)> =
                partitions.into_iter().map(|tp| (tp, before)).collect();
            let outcomes = admin.delete_records(&wanted).await?;
            output::print_outcomes(
                &outcomes,
                |start| format!("the log starts at {start}"),
                "records",
            )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// What `every_level` reads, for arguments clap accepts.
    fn levels(args: &[&str]) -> (Vec<PathBuf>, Vec<String>) {
        let argv = std::iter::once("josefine").chain(args.iter().copied());
        assert!(Cli::try_parse_from(argv).is_ok(), "clap accepts {args:?}");
        every_level(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn settings_accumulate_before_and_after_the_subcommand() {
        let (configs, properties) = levels(&[
            "-X",
            "security.protocol=SSL",
            "--config",
            "a.properties",
            "consume",
            "--topic",
            "t",
            "-X",
            "session.timeout.ms=2000",
            "--config",
            "b.properties",
        ]);
        assert_eq!(
            properties,
            ["security.protocol=SSL", "session.timeout.ms=2000"]
        );
        assert_eq!(
            configs,
            [PathBuf::from("a.properties"), PathBuf::from("b.properties")]
        );
        // Nested subcommands, and settings only before or only after.
        let (_, properties) = levels(&["-X", "a.b=1", "topics", "list", "-X", "c.d=2"]);
        assert_eq!(properties, ["a.b=1", "c.d=2"]);
        let (_, properties) = levels(&["-X", "a.b=1", "-X", "c.d=2", "topics", "list"]);
        assert_eq!(properties, ["a.b=1", "c.d=2"]);
        let (_, properties) = levels(&["topics", "list", "-X", "c.d=2"]);
        assert_eq!(properties, ["c.d=2"]);
        let (configs, properties) =
            levels(&["-Xa.b=1", "-X=c.d=2", "--config=x.properties", "cluster"]);
        assert_eq!(properties, ["a.b=1", "c.d=2"]);
        assert_eq!(configs, [PathBuf::from("x.properties")]);
    }
}
