//! `josefine mock`: the mock cluster of the `josefine-mock` crate in its own process, for
//! trying an application (or a benchmark, scripts/bench.sh) against a cluster whose
//! group coordinator answers at once and which needs no JVM and no install.
//!
//! Prints the bootstrap address as the first line of stdout, then serves until
//! Ctrl-C, SIGTERM, or (with `--until-stdin-closes`) the end of stdin. The state is in
//! memory and goes with the process.

use clap::Args;
use josefine_mock::MockCluster;
use tokio::io::AsyncReadExt;

#[derive(Args)]
pub struct MockArgs {
    /// How many brokers (node ids 1..=N), each on its own loopback port.
    #[arg(long, default_value_t = 1)]
    brokers: i32,
    /// A topic to create at start, NAME:PARTITIONS (repeatable); clients can also
    /// create topics.
    #[arg(long, value_name = "NAME:PARTITIONS", value_parser = topic)]
    topic: Vec<(String, i32)>,
    /// Also stop when stdin ends (for a parent process that owns this one).
    #[arg(long)]
    until_stdin_closes: bool,
}

fn topic(arg: &str) -> Result<(String, i32), String> {
    let (name, partitions) = arg
        .rsplit_once(':')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| format!("{arg:?} is not NAME:PARTITIONS, e.g. orders:6"))?;
    let partitions: i32 = partitions
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{partitions:?} is not a partition count of at least 1"))?;
    Ok((name.to_string(), partitions))
}

pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.brokers >= 1, "--brokers must be at least 1");
    let mut builder = MockCluster::builder().brokers(args.brokers);
    for (name, partitions) in args.topic {
        builder = builder.topic(name, partitions);
    }
    // Before the address is out: a parent may stop us as soon as it has read it.
    let mut signals = crate::shutdown::signals()?;
    let cluster = builder.start().await?;
    println!("{}", cluster.bootstrap());
    eprintln!(
        "josefine mock: {} broker(s) at {}; Ctrl-C stops it",
        args.brokers,
        cluster.bootstrap()
    );
    let stdin_closed = async {
        if !args.until_stdin_closes {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while !matches!(stdin.read(&mut buf).await, Ok(0) | Err(_)) {}
    };
    let signalled = tokio::select! {
        why = signals.recv() => {
            eprintln!("josefine mock: {why}, stopping");
            true
        }
        () = stdin_closed => false,
    };
    cluster.shutdown().await;
    if signalled && args.until_stdin_closes {
        // The stdin read blocks a runtime thread that cannot be cancelled: leaving
        // main would wait for stdin to end.
        std::process::exit(0);
    }
    Ok(())
}
