//! `josefine-chaos`: the chaos suite (docs/RELIABILITY.md). `run` is the suite; it
//! starts this same binary as `producer` and `member` processes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod check;
mod controller;
mod eos_check;
mod eos_member;
mod group_view;
mod logs;
mod member;
mod process;
mod producer;
mod rng;
mod run;
mod schedule;
mod status;
mod watch;

#[derive(Parser)]
#[command(
    name = "josefine-chaos",
    about = "Chaos suite for josefine consumer groups"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The suite: Tansu on S3 (moto), a producer, members as processes, a seeded plan
    /// of SIGKILLs, leaves and broker kill -9s, then the checks and one summary line.
    Run(run::RunArgs),
    /// One group member (started by `run`).
    Member(member::MemberArgs),
    /// The sequence-numbered producer (started by `run`).
    Producer(producer::ProducerArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JOSEFINE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // One thread: the processes are many and small, and the controller spawns its
    // children from this thread, which PR_SET_PDEATHSIG ties them to.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Member(args) => member::run(args).await.map(|()| true),
            Command::Producer(args) => producer::run(args).await.map(|()| true),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
