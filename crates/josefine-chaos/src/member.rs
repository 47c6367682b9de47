//! `josefine-chaos member`: one group member, as its own OS process, so the controller
//! can SIGKILL it.
//!
//! Per batch, the handler appends one `R` line per record to the incarnation's log
//! with a single `write(2)` and only then marks the batch, so every record that can
//! be committed is in the log, whatever kills the process. Auto-commit is off: a
//! committer task calls `Session::commit` every interval and logs `C` lines after it
//! succeeds (what it logs was marked before the commit started, so it is covered);
//! `cleanup` logs what the session's final commit covered (`E`), read back with
//! `Session::committed_offset`. The checker needs both to tell an honest duplicate
//! (processed after the last commit of a member that then died) from a broken one.
//!
//! SIGTERM closes the group (final commit, LeaveGroup) and exits 0.
//!
//! With `--exactly-once` the member is another program, `eos_member`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use josefine::{
    Claim, Client, ConsumerGroup, ConsumerRecord, GroupHandler, GroupProtocol, OffsetReset,
    ProcessOptions, ProcessOrder, Processor, Session,
};
use tokio::signal::unix::{signal, SignalKind};

use crate::logs;
use crate::status::Status;

#[derive(Args, Debug, Clone)]
pub struct MemberArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub group: String,
    #[arg(long)]
    pub topic: String,
    /// Where logs and status files go.
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub id: usize,
    #[arg(long)]
    pub incarnation: u32,
    #[arg(long, default_value_t = 3000)]
    pub session_timeout_ms: u64,
    /// `group.protocol`: classic, or consumer (KIP-848).
    #[arg(long, default_value = "classic")]
    pub group_protocol: String,
    #[arg(long, default_value_t = 300)]
    pub heartbeat_ms: u64,
    #[arg(long, default_value_t = 6000)]
    pub rebalance_timeout_ms: u64,
    #[arg(long, default_value_t = 500)]
    pub commit_interval_ms: u64,
    /// Simulated work per batch, between logging it and marking it (per record in
    /// parallel mode, before logging it; per record in exactly-once mode, after its
    /// `T` line).
    #[arg(long, default_value_t = 5)]
    pub work_ms: u64,
    /// Process records with `ConsumerGroup::process` (key-ordered) with this many in
    /// flight; 0: one batch at a time per partition.
    #[arg(long, default_value_t = 0)]
    pub parallel: usize,
    /// Exactly-once mode: run `ConsumerGroup::transact` writing one record per input
    /// to `--output-topic` (see `eos_member`).
    #[arg(long, requires = "output_topic")]
    pub exactly_once: bool,
    #[arg(long)]
    pub output_topic: Option<String>,
    /// Exactly-once mode: `transaction.timeout.ms`, how soon the coordinator aborts
    /// the open transaction of a member that was SIGKILLed.
    #[arg(long, default_value_t = 5000)]
    pub transaction_timeout_ms: u64,
}

pub fn log_path(dir: &Path, id: usize, incarnation: u32) -> PathBuf {
    dir.join(format!("member-{id}-{incarnation}.log"))
}

pub fn status_path(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("member-{id}.status"))
}

/// The member's state shared by the handler, the committer and `main`.
struct Member {
    log: Mutex<File>,
    status_path: PathBuf,
    status: Mutex<Status>,
    /// The running session and its number in this incarnation.
    current: Mutex<Option<(u64, Session)>>,
    sessions: Mutex<u64>,
    /// What this session marked, per partition (next offset).
    marked: Mutex<BTreeMap<i32, i64>>,
    /// The highest commit logged per partition in this session.
    logged: Mutex<BTreeMap<i32, i64>>,
    /// Held by the committer while its commit is in flight, and by cleanup: the `E`
    /// line is written after any commit of ours has finished.
    committing: tokio::sync::Mutex<()>,
    work: Duration,
    /// Parallel mode: commits log what the coordinator acknowledged (the processor
    /// marks, not the handler).
    parallel: bool,
}

impl Member {
    /// Appends `text` with one write; a member that cannot log must not go on (it
    /// would mark records the checker never hears of).
    fn append(&self, text: &str) {
        let mut log = self.log.lock().expect("log lock never poisoned");
        if let Err(err) = log.write_all(text.as_bytes()) {
            eprintln!("member: cannot write its log: {err}");
            std::process::exit(3);
        }
    }

    fn update_status(&self, change: impl FnOnce(&mut Status)) {
        let mut status = self.status.lock().expect("status lock never poisoned");
        change(&mut status);
        if let Err(err) = status.write(&self.status_path) {
            self.append(&logs::error(&format!("cannot write status: {err}")));
        }
    }

    fn session_number(&self, session: &Session) -> Option<u64> {
        match &*self.current.lock().expect("never poisoned") {
            Some((n, s)) if s.generation() == session.generation() => Some(*n),
            _ => None,
        }
    }

    /// One commit of ours: what was marked before it started is covered once it
    /// succeeds, and logged as such.
    async fn commit_once(&self) {
        let _in_flight = self.committing.lock().await;
        let current = self.current.lock().expect("never poisoned").clone();
        let Some((number, session)) = current else {
            return;
        };
        if session.is_cancelled() {
            return;
        }
        let mut marked = self.marked.lock().expect("never poisoned").clone();
        match tokio::time::timeout(Duration::from_secs(3), session.commit()).await {
            Ok(Ok(())) => {
                if self.parallel {
                    // The watermark the processor marked and this commit carried.
                    marked = session
                        .claims()
                        .iter()
                        .filter_map(|tp| {
                            let committed = session.committed_offset(&tp.topic, tp.partition)?;
                            Some((tp.partition, committed))
                        })
                        .collect();
                }
                let mut text = String::new();
                {
                    let mut logged = self.logged.lock().expect("never poisoned");
                    for (&p, &next) in &marked {
                        let slot = logged.entry(p).or_insert(-1);
                        if next > *slot {
                            *slot = next;
                            text += &logs::commit(number, p, next);
                        }
                    }
                }
                // Only a commit that carried new offsets went to the coordinator (an
                // empty one succeeds without asking it): only that one shows the
                // membership works.
                if !text.is_empty() {
                    self.append(&text);
                    // The generation rises within a session (cooperative, KIP-848).
                    self.update_status(|s| {
                        s.last_commit_ms = logs::now_ms();
                        s.generation = session.generation();
                    });
                }
            }
            Ok(Err(err)) => self.append(&logs::error(&format!("commit failed: {err}"))),
            Err(_) => self.append(&logs::error("commit timed out (outcome unknown)")),
        }
    }
}

/// Parallel mode's work: one record, logged once its work is done.
type Work = Box<
    dyn Fn(
            ConsumerRecord,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>
        + Send
        + Sync,
>;

struct Handler(Arc<Member>, Option<Processor<Work>>);

/// A processor whose work sleeps `work`, then logs the record (after: a record in
/// the log is one that finished, whatever the drain deadline cancels) and notes the
/// highest finished offset per partition for the session's end line.
fn processor(member: Arc<Member>, in_flight: usize) -> Processor<Work> {
    let work: Work = Box::new(move |record: ConsumerRecord| {
        let m = member.clone();
        Box::pin(async move {
            if !m.work.is_zero() {
                tokio::time::sleep(m.work).await;
            }
            let number = m
                .current
                .lock()
                .expect("never poisoned")
                .as_ref()
                .map(|(n, _)| *n)
                .ok_or_else(|| std::io::Error::other("a record outside a session"))?;
            let mut line = String::new();
            logs::record(
                &mut line,
                number,
                record.partition(),
                record.offset(),
                seq_of(&record),
                logs::now_ms(),
            );
            m.append(&line);
            let mut marked = m.marked.lock().expect("never poisoned");
            let slot = marked.entry(record.partition()).or_insert(0);
            *slot = (*slot).max(record.offset() + 1);
            Ok(())
        })
    });
    Processor::new(ProcessOptions::new(ProcessOrder::Key, in_flight), work)
}

pub fn seq_of(record: &josefine::Record) -> u64 {
    record
        .value()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

impl GroupHandler for Handler {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        let m = &self.0;
        let number = {
            let mut n = m.sessions.lock().expect("never poisoned");
            *n += 1;
            *n
        };
        let partitions: Vec<i32> = session.claims().iter().map(|tp| tp.partition).collect();
        m.marked.lock().expect("never poisoned").clear();
        m.logged.lock().expect("never poisoned").clear();
        *m.current.lock().expect("never poisoned") = Some((number, session.clone()));
        m.append(&logs::session_start(
            number,
            session.generation(),
            &partitions,
        ));
        m.update_status(|s| {
            s.session = number;
            s.generation = session.generation();
            s.active = true;
            s.last_commit_ms = 0;
            s.partitions = partitions.clone();
        });
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        let m = &self.0;
        let Some(number) = m.session_number(session) else {
            return Ok(());
        };
        let (topic, partition) = (claim.topic().to_string(), claim.partition());
        // Claims come and go within a session under the cooperative and consumer
        // protocols: the status lists what is claimed now.
        m.update_status(|s| {
            if !s.partitions.contains(&partition) {
                s.partitions.push(partition);
                s.partitions.sort_unstable();
            }
            s.generation = session.generation();
        });
        let consumed = match &self.1 {
            Some(processor) => processor.run_claim(claim).await,
            None => {
                self.consume(session, &mut claim, number, &topic, partition)
                    .await
            }
        };
        m.update_status(|s| s.partitions.retain(|&p| p != partition));
        consumed
    }
    async fn cleanup(&self, session: &Session) -> josefine::Result<()> {
        let m = &self.0;
        let _no_commit_in_flight = m.committing.lock().await;
        let number = m.session_number(session);
        *m.current.lock().expect("never poisoned") = None;
        let Some(number) = number else {
            return Ok(());
        };
        let marked = m.marked.lock().expect("never poisoned").clone();
        let ends: Vec<(i32, i64, i64)> = session
            .claims()
            .iter()
            .map(|tp| {
                let committed = session
                    .committed_offset(&tp.topic, tp.partition)
                    .unwrap_or(-1);
                let marked = marked.get(&tp.partition).copied().unwrap_or(-1);
                (tp.partition, committed, marked)
            })
            .collect();
        m.append(&logs::session_end(number, &ends));
        m.update_status(|s| {
            s.active = false;
            s.partitions.clear();
        });
        Ok(())
    }
}

impl Handler {
    /// Records every record of the claim in the log and marks it.
    async fn consume(
        &self,
        session: &Session,
        claim: &mut Claim,
        number: u64,
        topic: &str,
        partition: i32,
    ) -> josefine::Result<()> {
        let m = &self.0;
        while let Some(batch) = claim.next_batch().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(err) => {
                    m.append(&logs::error(&format!("reading {partition}: {err}")));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mut lines = String::new();
            let mut next = None;
            let at_ms = logs::now_ms();
            for record in &batch {
                let record = match record {
                    Ok(record) => record,
                    Err(err) => {
                        m.append(&logs::error(&format!("decoding {partition}: {err}")));
                        break;
                    }
                };
                logs::record(
                    &mut lines,
                    number,
                    partition,
                    record.offset(),
                    seq_of(&record),
                    at_ms,
                );
                next = Some(record.offset() + 1);
            }
            let Some(next) = next else { continue };
            m.append(&lines);
            if !m.work.is_zero() {
                tokio::time::sleep(m.work).await;
            }
            session.mark_next(topic, partition, next);
            let mut marked = m.marked.lock().expect("never poisoned");
            let slot = marked.entry(partition).or_insert(next);
            *slot = (*slot).max(next);
        }
        Ok(())
    }
}

pub async fn run(args: MemberArgs) -> anyhow::Result<()> {
    if args.exactly_once {
        return crate::eos_member::run(args).await;
    }
    let log_path = log_path(&args.dir, args.id, args.incarnation);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let member = Arc::new(Member {
        log: Mutex::new(log),
        status_path: status_path(&args.dir, args.id),
        status: Mutex::new(Status {
            incarnation: args.incarnation,
            session: 0,
            generation: -1,
            active: false,
            last_commit_ms: 0,
            partitions: Vec::new(),
        }),
        current: Mutex::new(None),
        sessions: Mutex::new(0),
        marked: Mutex::new(BTreeMap::new()),
        logged: Mutex::new(BTreeMap::new()),
        committing: tokio::sync::Mutex::new(()),
        work: Duration::from_millis(args.work_ms),
        parallel: args.parallel > 0,
    });
    member.update_status(|_| {});
    let mut terminate = signal(SignalKind::terminate())?;

    // The broker may be down (the controller kills it too): keep trying.
    let client = loop {
        match Client::builder()
            .bootstrap([args.bootstrap.as_str()])
            .connect()
            .await
        {
            Ok(client) => break client,
            Err(err) => {
                member.append(&logs::error(&format!("connect: {err}")));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = terminate.recv() => return Ok(()),
                }
            }
        }
    };
    let group = ConsumerGroup::builder(client, &args.group)
        .session_timeout(Duration::from_millis(args.session_timeout_ms))
        .heartbeat_interval(Duration::from_millis(args.heartbeat_ms))
        .rebalance_timeout(Duration::from_millis(args.rebalance_timeout_ms))
        .auto_offset_reset(OffsetReset::Earliest)
        .auto_commit(false)
        .protocol(match args.group_protocol.as_str() {
            "consumer" => GroupProtocol::Consumer,
            _ => GroupProtocol::Classic,
        })
        .build()?;
    let mut errors = group.errors();
    let consuming = tokio::spawn({
        let group = group.clone();
        let processor = (args.parallel > 0).then(|| processor(member.clone(), args.parallel));
        let handler = Handler(member.clone(), processor);
        let topic = args.topic.clone();
        async move { group.consume(&[topic.as_str()], handler).await }
    });
    let committer = tokio::spawn({
        let member = member.clone();
        let every = Duration::from_millis(args.commit_interval_ms);
        async move {
            loop {
                tokio::time::sleep(every).await;
                member.commit_once().await;
            }
        }
    });
    tokio::pin!(consuming);
    let outcome = loop {
        tokio::select! {
            result = &mut consuming => break result,
            _ = terminate.recv() => {
                member.append(&logs::error("SIGTERM: closing the group"));
                // close waits for consume to end: drive both.
                let (closed, result) = tokio::join!(group.close(), &mut consuming);
                if let Err(err) = closed {
                    member.append(&logs::error(&format!("close: {err}")));
                }
                break result;
            }
            Some(err) = errors.recv() => member.append(&logs::error(&format!("group: {err}"))),
        }
    };
    committer.abort();
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => {
            member.append(&logs::error(&format!("consume failed: {err}")));
            Err(err).context("consuming")
        }
        Err(err) => Err(anyhow::anyhow!("the consume task panicked: {err}")),
    }
}
