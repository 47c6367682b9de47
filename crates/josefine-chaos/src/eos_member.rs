//! `josefine-chaos member --exactly-once`: one member of the exactly-once mode, as its
//! own OS process, so the controller can SIGKILL it.
//!
//! It runs `ConsumerGroup::transact` over the input topic (read_committed) with a
//! transactional producer whose id belongs to the member's index,
//! `<group>-member-<id>`, the same in every incarnation: a restarted member fences
//! its predecessor and aborts the transaction a SIGKILL left open, if the
//! coordinator has not already (`--transaction-timeout-ms`, 5 s). Transactions
//! commit every `--commit-interval-ms` (the controller passes 100 ms) and when
//! partitions are revoked.
//!
//! Per input record the work appends a `T` line to the incarnation's log (one
//! `write(2)`), sleeps `--work-ms` and returns one output record: the input's
//! partition number and key, and a value naming the input and this incarnation
//! ([`logs::output_value`]), so the checker can tell which input each committed
//! output stands for and who wrote it.
//!
//! The client id names the incarnation ([`client_id`]): the controller finds the
//! member in ConsumerGroupDescribe by it. SIGTERM closes the group (the open
//! transaction commits as the partitions are revoked, then the member leaves),
//! closes the producer and exits 0. A fatal error (this instance was fenced) ends
//! `transact` with that error: the process exits 2, a crash for the controller.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use josefine::{
    Client, ConsumerGroup, ConsumerRecord, GroupProtocol, IsolationLevel, OffsetReset, Producer,
    ProducerRecord,
};
use tokio::signal::unix::{signal, SignalKind};

use crate::group_view::client_id;
use crate::logs;
use crate::member::{log_path, seq_of, MemberArgs};

/// The incarnation's log.
struct Log(Mutex<File>);

impl Log {
    /// Appends `text` with one write; a member that cannot log must not go on.
    fn append(&self, text: &str) {
        let mut log = self.0.lock().expect("log lock never poisoned");
        if let Err(err) = log.write_all(text.as_bytes()) {
            eprintln!("member: cannot write its log: {err}");
            std::process::exit(3);
        }
    }
}

pub async fn run(args: MemberArgs) -> anyhow::Result<()> {
    let output = args
        .output_topic
        .clone()
        .context("--exactly-once needs --output-topic")?;
    let path = log_path(&args.dir, args.id, args.incarnation);
    let file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let log = Arc::new(Log(Mutex::new(file)));
    let mut terminate = signal(SignalKind::terminate())?;

    let client = loop {
        match Client::builder()
            .bootstrap([args.bootstrap.as_str()])
            .client_id(client_id(args.id, args.incarnation))
            .connect()
            .await
        {
            Ok(client) => break client,
            Err(err) => {
                log.append(&logs::error(&format!("connect: {err}")));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = terminate.recv() => return Ok(()),
                }
            }
        }
    };
    let group = ConsumerGroup::builder(client.clone(), &args.group)
        .session_timeout(Duration::from_millis(args.session_timeout_ms))
        .heartbeat_interval(Duration::from_millis(args.heartbeat_ms))
        .rebalance_timeout(Duration::from_millis(args.rebalance_timeout_ms))
        .auto_offset_reset(OffsetReset::Earliest)
        .protocol(match args.group_protocol.as_str() {
            "consumer" => GroupProtocol::Consumer,
            _ => GroupProtocol::Classic,
        })
        .consumer(|c| c.isolation_level(IsolationLevel::ReadCommitted))
        .build()?;
    let producer = Producer::builder(client)
        .transactional_id(format!("{}-member-{}", args.group, args.id))
        .transaction_timeout(Duration::from_millis(args.transaction_timeout_ms))
        .linger(Duration::from_millis(5))
        .build()?;
    let mut errors = group.errors();
    let transacting = tokio::spawn({
        let (group, producer, log) = (group.clone(), producer.clone(), log.clone());
        let (input, work) = (args.topic.clone(), Duration::from_millis(args.work_ms));
        let commit_interval = Duration::from_millis(args.commit_interval_ms);
        let (member, incarnation) = (args.id, args.incarnation);
        async move {
            let transform = move |record: ConsumerRecord| {
                let (log, output) = (log.clone(), output.clone());
                async move {
                    let (partition, offset, seq) =
                        (record.partition(), record.offset(), seq_of(&record));
                    log.append(&logs::transformed(partition, offset, seq));
                    if !work.is_zero() {
                        tokio::time::sleep(work).await;
                    }
                    let value = logs::output_value(seq, partition, offset, member, incarnation);
                    let mut out = ProducerRecord::new(output)
                        .partition(partition)
                        .value(value);
                    if let Some(key) = record.key() {
                        out = out.key(key.clone());
                    }
                    Ok::<_, std::io::Error>(vec![out])
                }
            };
            group
                .transact(&[input.as_str()], producer, commit_interval, transform)
                .await
        }
    });
    tokio::pin!(transacting);
    let outcome = loop {
        tokio::select! {
            result = &mut transacting => break result,
            _ = terminate.recv() => {
                log.append(&logs::error("SIGTERM: closing the group"));
                // close waits for transact to end: drive both.
                let (closed, result) = tokio::join!(group.close(), &mut transacting);
                if let Err(err) = closed {
                    log.append(&logs::error(&format!("close: {err}")));
                }
                break result;
            }
            Some(err) = errors.recv() => log.append(&logs::error(&format!("group: {err}"))),
        }
    };
    let closed = producer.close().await;
    match outcome {
        Ok(Ok(())) => closed.context("closing the producer"),
        Ok(Err(err)) => {
            log.append(&logs::error(&format!("transact failed: {err}")));
            Err(err).context("transact")
        }
        Err(err) => Err(anyhow::anyhow!("the transact task panicked: {err}")),
    }
}
