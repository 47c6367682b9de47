//! `josefine consume`: print records, as a consumer-group member (`--group`: offsets of
//! what was printed are committed, Ctrl-C leaves the group after a final commit) or
//! straight from partitions (`--partition`, `--offset`).
//!
//! Records are written a batch at a time under one lock and flushed before their
//! offsets are marked, so a committed offset never runs ahead of what reached stdout.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use josefine::metrics::MemoryRecorder;
use josefine::{
    Claim, Client, Config, FetchedBatch, GroupHandler, OffsetReset, Session, StartOffset,
};
use tokio::sync::Notify;

use crate::output::{Format, Printer, Template};
use crate::progress::Progress;
use crate::shutdown;
use crate::stats::{Held, StatsView};

#[derive(Args)]
pub struct ConsumeArgs {
    /// Topic to read (repeat for several with --group).
    #[arg(short, long = "topic", required = true)]
    topics: Vec<String>,
    /// Consume as a member of this group, committing what was printed (else
    /// `group.id` from the config; without either, read partitions directly).
    #[arg(short, long)]
    group: Option<String>,
    /// Start where nothing was committed (group) or at all (direct) at the earliest
    /// offset instead of the latest.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// With --format text, print `key<SEP>value`.
    #[arg(short = 'K', long)]
    key_separator: Option<String>,
    /// Direct mode: the partitions to read (repeatable; default all).
    #[arg(short, long = "partition")]
    partitions: Vec<i32>,
    /// Direct mode: earliest, latest, an offset, or @TIME (the first record at or
    /// after it: @2026-12-05T10:00:00Z or @MILLIS) to start at (default latest).
    #[arg(short, long)]
    offset: Option<String>,
    /// Direct mode: stop once every partition is read up to where it ended when the
    /// command started (kcat's -e).
    #[arg(short, long)]
    exit_at_end: bool,
    /// Print each record as this template (kcat's -f), instead of --format: %t topic,
    /// %p partition, %o offset, %T timestamp, %k key, %s value, %K / %S their lengths
    /// (-1 when null), %h headers (k=v,...), %% a percent sign; \n, \t and \\ escapes.
    #[arg(short = 'F', long, value_name = "TEMPLATE")]
    format_string: Option<String>,
    /// Print at most this many bytes of each key and value (a guard on huge values):
    /// the cut is marked `...[+N bytes]` (text, templates) or `value_truncated: N`
    /// (json); raw output is only cut.
    #[arg(long, value_name = "BYTES")]
    max_bytes: Option<usize>,
    /// Show the client's figures on stderr every SECONDS (default 1): records and
    /// bytes with their rates, lag, the group's generation, claims, rebalances,
    /// commits and heartbeats, requests and connections (docs/METRICS.md). Redrawn in
    /// place on a terminal; elsewhere one `stats:` line each time, and one at the end.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "1")]
    pub(crate) stats: Option<f64>,
}

/// Where records go: stdout, counted, up to `--count`.
struct Sink {
    out: Mutex<BufWriter<Stdout>>,
    printer: Printer,
    printed: AtomicU64,
    limit: Option<u64>,
    /// The limit was reached, or writing failed: everyone stops.
    finished: AtomicBool,
    finish: Notify,
    failure: Mutex<Option<anyhow::Error>>,
}

impl Sink {
    fn new(printer: Printer, limit: Option<u64>) -> Self {
        Self {
            out: Mutex::new(BufWriter::with_capacity(1 << 16, std::io::stdout())),
            printer,
            printed: AtomicU64::new(0),
            limit,
            finished: AtomicBool::new(limit == Some(0)),
            finish: Notify::new(),
            failure: Mutex::new(None),
        }
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    fn stop(&self, failure: Option<anyhow::Error>) {
        if let Some(err) = failure {
            self.failure
                .lock()
                .expect("never poisoned")
                .get_or_insert(err);
        }
        self.finished.store(true, Ordering::Release);
        self.finish.notify_waiters();
    }

    async fn finished(&self) {
        loop {
            let notified = self.finish.notified();
            if self.is_finished() {
                return;
            }
            notified.await;
        }
    }

    /// Prints the batch's records (up to the limit) and flushes; the offset after
    /// the last one printed, if any was. A write error stops everything.
    fn write_batch(&self, batch: &FetchedBatch) -> Option<i64> {
        let mut out = self.out.lock().expect("never poisoned");
        let mut next = None;
        for record in batch {
            if self.is_finished() {
                break;
            }
            let written = record.map_err(anyhow::Error::from).and_then(|record| {
                self.printer
                    .write(&mut *out, batch.topic(), batch.partition(), &record)
                    .map(|()| record.offset())
            });
            match written {
                Ok(offset) => {
                    next = Some(offset + 1);
                    let printed = self.printed.fetch_add(1, Ordering::AcqRel) + 1;
                    if self.limit.is_some_and(|limit| printed >= limit) {
                        self.stop(None);
                    }
                }
                Err(err) => {
                    self.stop(Some(err));
                    break;
                }
            }
        }
        if let Err(err) = out.flush() {
            // Not on stdout after all (a closed pipe): commit none of it.
            self.stop(Some(anyhow::Error::from(err).context("writing to stdout")));
            return None;
        }
        next
    }
}

/// The group handler: print each batch, then mark it.
struct PrintClaims {
    sink: Arc<Sink>,
    held: Arc<Held>,
}

impl GroupHandler for PrintClaims {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        let _held = self.held.hold(claim.topic(), claim.partition());
        while !self.sink.is_finished() {
            let batch = tokio::select! {
                batch = claim.next_batch() => batch,
                _ = self.sink.finished() => None,
            };
            let Some(batch) = batch else { break };
            let batch = match batch {
                Ok(batch) => batch,
                Err(err) => {
                    let context = format!("reading {}/{}", claim.topic(), claim.partition());
                    self.sink
                        .stop(Some(anyhow::Error::from(err).context(context)));
                    break;
                }
            };
            if let Some(next) = self.sink.write_batch(&batch) {
                session.mark_next(claim.topic(), claim.partition(), next);
            }
        }
        Ok(())
    }
}

/// `recorder` is the memory recorder `--stats` reads (installed by the caller).
pub async fn run(
    client: Client,
    config: &Config,
    args: ConsumeArgs,
    recorder: Option<MemoryRecorder>,
) -> anyhow::Result<()> {
    check_topics_exist(&client, &args.topics).await?;
    let template = args
        .format_string
        .as_deref()
        .map(Template::parse)
        .transpose()?;
    let sink = Arc::new(Sink::new(
        Printer {
            format: args.format,
            key_separator: args.key_separator.clone(),
            template,
            max_bytes: args.max_bytes,
        },
        args.count,
    ));
    let group_id = args
        .group
        .clone()
        .or_else(|| config.get("group.id").map(String::from));
    if args.exit_at_end && group_id.is_some() {
        bail!(
            "--exit-at-end reads partitions directly; drop --group (and group.id), or stop a \
             group member with --count or Ctrl-C"
        );
    }
    let started = Instant::now();
    let held = Arc::new(Held::default());
    let view = match (recorder, args.stats) {
        (Some(recorder), Some(seconds)) => {
            let every = Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("--stats {seconds}: give a positive number of seconds"))?;
            let view = StatsView::new(recorder, held.clone(), group_id.clone());
            let view = Arc::new(Mutex::new(view));
            Some((view.clone(), StatsView::spawn(view, every)))
        }
        _ => None,
    };
    // The figures replace the progress bar.
    let progress = view.is_none().then(|| show_progress(sink.clone()));
    let outcome = match group_id {
        Some(group) => consume_group(client, config, &args, &group, sink.clone(), held).await,
        None => consume_direct(client, config, &args, sink.clone(), held).await,
    };
    if let Some(progress) = progress {
        progress.abort();
    }
    if let Some((view, task)) = view {
        task.abort();
        let _ = task.await;
        view.lock().expect("never poisoned").finish();
    }
    let printed = sink.printed.load(Ordering::Acquire);
    if let Some(err) = sink.failure.lock().expect("never poisoned").take() {
        return Err(err);
    }
    outcome?;
    eprintln!(
        "consumed {printed} record(s) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Progress on a terminal's stderr while stdout goes to a file or pipe (when stdout
/// is the terminal, the records themselves show progress; when stderr is a log, it
/// would only fill it).
fn show_progress(sink: Arc<Sink>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            return;
        }
        let mut progress = Progress::new("consumed", "records", sink.limit);
        loop {
            progress.tick(sink.printed.load(Ordering::Acquire));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn consume_group(
    client: Client,
    config: &Config,
    args: &ConsumeArgs,
    group_id: &str,
    sink: Arc<Sink>,
    held: Arc<Held>,
) -> anyhow::Result<()> {
    let mut config = config.clone();
    config.set("group.id", group_id)?;
    let mut builder = config.group_builder(client)?;
    if args.from_beginning {
        builder = builder.auto_offset_reset(OffsetReset::Earliest);
    }
    let group = builder.build()?;
    let mut errors = group.errors();
    let member = group.clone();
    let topics = args.topics.clone();
    let handler = PrintClaims {
        sink: sink.clone(),
        held,
    };
    let mut running = tokio::spawn(async move {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        member.consume(&topics, handler).await
    });
    let mut signals = shutdown::signals()?;
    let early_end = loop {
        tokio::select! {
            result = &mut running => break Some(result),
            _ = sink.finished() => break None,
            signal = signals.recv() => {
                eprintln!("{signal}: committing what was printed and leaving group {group_id}");
                // Print nothing more: what is on stdout now is what gets committed.
                sink.stop(None);
                break None;
            }
            Some(err) = errors.recv() => eprintln!("warning: {err}"),
        }
    };
    let result = match early_end {
        Some(result) => result,
        None => {
            group
                .close()
                .await
                .with_context(|| format!("leaving group {group_id}"))?;
            running.await
        }
    };
    result
        .context("the group task panicked")?
        .with_context(|| format!("consuming as a member of group {group_id}"))
}

async fn consume_direct(
    client: Client,
    config: &Config,
    args: &ConsumeArgs,
    sink: Arc<Sink>,
    held: Arc<Held>,
) -> anyhow::Result<()> {
    let start = match (args.offset.as_deref(), args.from_beginning) {
        (Some("earliest" | "beginning"), _) | (None, true) => StartOffset::Earliest,
        (Some("latest" | "end") | None, _) => StartOffset::Latest,
        (Some(at), _) if at.starts_with('@') => {
            StartOffset::Timestamp(crate::groups::parse_datetime("--offset @", &at[1..])?)
        }
        (Some(n), _) => StartOffset::Offset(n.parse().with_context(|| {
            format!(
                "--offset {n:?}: give earliest, latest, an offset number, or @TIME (RFC 3339 \
                 or milliseconds since the epoch)"
            )
        })?),
    };
    let consumer = config.consumer_builder(client.clone())?.build()?;
    let mut opened = Vec::new();
    for topic in &args.topics {
        let all = client.partitions(topic).await?;
        let wanted: Vec<i32> = if args.partitions.is_empty() {
            all.clone()
        } else {
            args.partitions.clone()
        };
        for p in wanted {
            if !all.contains(&p) {
                bail!(
                    "topic {topic} has no partition {p} (it has {}); pick one with --partition",
                    all.len()
                );
            }
            let reader = consumer
                .consume_partition(topic, p, start)
                .await
                .with_context(|| format!("starting to read {topic}/{p}"))?;
            opened.push((josefine::TopicPartition::new(topic.as_str(), p), reader));
        }
    }
    // With --exit-at-end: each partition's end now; those already there are not read.
    let ends = if args.exit_at_end {
        let partitions: Vec<josefine::TopicPartition> =
            opened.iter().map(|(tp, _)| tp.clone()).collect();
        let ends = client.admin().end_offsets(&partitions).await?;
        opened.retain(|(tp, reader)| reader.position() < ends[tp]);
        if opened.is_empty() {
            sink.stop(None);
        }
        ends
    } else {
        std::collections::HashMap::new()
    };
    // The partitions still short of their end.
    let short = Arc::new(std::sync::atomic::AtomicUsize::new(opened.len()));
    let mut readers = Vec::new();
    for (tp, mut reader) in opened {
        let end = ends.get(&tp).copied();
        let (sink, short) = (sink.clone(), short.clone());
        let held = held.hold(&tp.topic, tp.partition);
        readers.push(tokio::spawn(async move {
            let _held = held;
            while !sink.is_finished() {
                let batch = tokio::select! {
                    batch = reader.next_batch() => batch,
                    _ = sink.finished() => None,
                };
                match batch {
                    Some(Ok(batch)) => {
                        sink.write_batch(&batch);
                        if end.is_some_and(|end| reader.position() >= end) {
                            if short.fetch_sub(1, Ordering::AcqRel) == 1 {
                                sink.stop(None);
                            }
                            break;
                        }
                    }
                    Some(Err(err)) => {
                        sink.stop(Some(anyhow::Error::from(err)));
                    }
                    None => break,
                }
            }
        }));
    }
    let mut signals = shutdown::signals()?;
    tokio::select! {
        _ = sink.finished() => {}
        signal = signals.recv() => eprintln!("{signal}: stopping"),
    }
    sink.stop(None);
    for reader in readers {
        let _ = reader.await;
    }
    Ok(())
}

/// Fails with what to do when a topic does not exist.
pub async fn check_topics_exist(client: &Client, topics: &[String]) -> anyhow::Result<()> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let metadata = client.refresh_metadata(&names).await?;
    for topic in topics {
        if metadata.topic_or_error(topic).is_err() {
            bail!(
                "topic {topic:?} does not exist; create it with `josefine topics create {topic} --partitions N` \
                 or check the name with `josefine topics list`"
            );
        }
    }
    Ok(())
}
