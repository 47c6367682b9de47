//! Exactly-once consume-transform-produce ([`ConsumerGroup::transact`]): every record
//! of the member's claims is transformed into output records, which a transactional
//! producer writes in the same transaction as the input offsets (KIP-98, KIP-447).
//! A `read_committed` reader of the output sees each input's outputs exactly once,
//! through crashes and rebalances.
//!
//! One transaction spans all the member's claims. Each claim runs on its own task:
//! it transforms a record, hands its outputs to the producer and notes the input's
//! next offset, all under a shared gate. Every `commit_interval` the committer closes
//! the gate (waiting for records in progress), sends the noted offsets with the
//! session's group metadata (member id and generation, so a member that is no longer
//! in the group cannot commit), commits, opens a new transaction and reopens the gate.
//!
//! When a commit fails (a member of an older generation, an output that could not be
//! written, a transform that failed), the transaction is aborted and every claim goes
//! back to its last committed offset before its next record: what the aborted
//! transaction held is transformed again. A fatal error (another instance with the
//! same transactional id fenced this one) stops the group and is what `transact`
//! returns.
//!
//! **Revocation commits.** A claim that is revoked (a rebalance, a close) commits the
//! open transaction before it returns, within the drain deadline, so the partition's
//! next owner starts where this member stopped instead of after an abort's rewind.
//! That is safe because the group coordinator checks the generation: a member whose
//! partitions were already taken from it (its session expired: the claim is revoked
//! as lost) is refused, and the transaction is aborted instead. This is the choice of
//! Kafka Streams (commit on revoke); franz-go's `GroupTransactSession` aborts instead,
//! trading repeated work for never holding a rebalance up with a commit.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify, RwLock};

use super::{Claim, ConsumerGroup, GroupHandler, Session};
use crate::consumer::ConsumerRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::group::OffsetAndMetadata;
use crate::producer::{Producer, ProducerRecord};
use crate::topic_partition::TopicPartition;

/// The group handler behind [`ConsumerGroup::transact`]; its state is shared with
/// the session's committer task.
pub(crate) struct Transactor<F>(Arc<Core<F>>);

impl<F> Clone for Transactor<F> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

struct Core<F> {
    producer: Producer,
    work: F,
    commit_interval: Duration,
    /// Held shared while a record is transformed and its outputs handed over; held
    /// exclusively while the transaction commits or aborts.
    gate: RwLock<()>,
    state: Mutex<Offsets>,
    /// Bumped by every abort: a claim that sees it change goes back to its last
    /// committed offset (at once, even when it waits for records).
    aborts: watch::Sender<u64>,
    /// A fatal error; the group is closed and `transact` returns it.
    fatal: Mutex<Option<Error>>,
    group: ConsumerGroup,
    committer: Mutex<Option<(Arc<Notify>, tokio::task::JoinHandle<()>)>>,
}

#[derive(Default)]
struct Offsets {
    /// The next offset of each partition, as the open transaction would commit it.
    pending: HashMap<TopicPartition, i64>,
    /// Where each claim goes back to after an abort: the last committed offset.
    committed: HashMap<TopicPartition, i64>,
}

impl<F, Fut, E> Transactor<F>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Vec<ProducerRecord>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    pub(crate) fn new(
        group: ConsumerGroup,
        producer: Producer,
        commit_interval: Duration,
        work: F,
    ) -> Self {
        Self(Arc::new(Core {
            producer,
            work,
            commit_interval,
            gate: RwLock::new(()),
            state: Mutex::new(Offsets::default()),
            aborts: watch::Sender::new(0),
            fatal: Mutex::new(None),
            group,
            committer: Mutex::new(None),
        }))
    }

    /// The fatal error that stopped the group, if one did.
    pub(crate) fn fatal(&self) -> Option<Error> {
        self.0.fatal()
    }
}

impl<F, Fut, E> Core<F>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Vec<ProducerRecord>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    fn fatal(&self) -> Option<Error> {
        lock(&self.fatal).clone()
    }

    /// Commits the open transaction with the offsets noted so far (or, when that
    /// fails, aborts it and rewinds every claim), then opens the next one. Waits for
    /// the records in progress.
    async fn commit_round(&self, session: &Session) -> Result<()> {
        let _closed = self.gate.write().await;
        if let Some(err) = self.fatal() {
            return Err(err);
        }
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = lock(&self.state)
            .pending
            .iter()
            .map(|(tp, &o)| (tp.clone(), OffsetAndMetadata::new(o)))
            .collect();
        let result = async {
            if !offsets.is_empty() {
                self.producer
                    .send_offsets_to_transaction(&offsets, &session.group_metadata())
                    .await?;
            }
            self.producer.commit_transaction().await
        }
        .await;
        match result {
            Ok(()) => {
                let mut state = lock(&self.state);
                state.pending.clear();
                for (tp, o) in &offsets {
                    state.committed.insert(tp.clone(), o.offset);
                    // The claim restarts from here after a handler error, and the
                    // plain commit of the mark repeats what the transaction committed.
                    session.mark_next(&tp.topic, tp.partition, o.offset);
                }
            }
            Err(err) => self.abort(err).await?,
        }
        self.producer
            .begin_transaction()
            .await
            .map_err(|e| self.fail(e))
    }

    /// Aborts after `err`: the transaction's records are dropped, its offsets not
    /// committed, and every claim goes back to its last committed offset. A fatal
    /// error stops the group.
    async fn abort(&self, err: Error) -> Result<()> {
        if is_fatal(&err) {
            return Err(self.fail(err));
        }
        tracing::warn!(error = %err, "the transaction cannot commit; aborting it and going back to the last committed offsets");
        self.producer
            .abort_transaction()
            .await
            .map_err(|e| self.fail(e))?;
        lock(&self.state).pending.clear();
        self.aborts.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Records a fatal error and closes the group (from another task: the close
    /// waits for this claim's task).
    fn fail(&self, err: Error) -> Error {
        tracing::error!(error = %err, "exactly-once processing cannot go on; the group closes");
        lock(&self.fatal).get_or_insert_with(|| err.clone());
        let group = self.group.clone();
        tokio::spawn(async move {
            let _ = group.close().await;
        });
        err
    }

    /// Goes back to the claim's last committed offset if an abort happened since
    /// `seen_aborts`; `true` if it did. Called under the gate.
    fn rewind(&self, claim: &mut Claim, tp: &TopicPartition, seen_aborts: &mut u64) -> bool {
        let aborts = *self.aborts.borrow();
        if aborts == *seen_aborts {
            return false;
        }
        *seen_aborts = aborts;
        let back = lock(&self.state).committed.get(tp).copied();
        claim.seek(back.unwrap_or_else(|| claim.initial_offset()));
        true
    }

    /// Transforms one record and hands its outputs to the producer, unless an abort
    /// happened since `seen_aborts`: then the claim goes back to its last committed
    /// offset and the record is dropped.
    async fn transform(
        &self,
        claim: &mut Claim,
        tp: &TopicPartition,
        record: ConsumerRecord,
        seen_aborts: &mut u64,
    ) -> Result<()> {
        let _open = self.gate.read().await;
        if self.rewind(claim, tp, seen_aborts) {
            return Ok(());
        }
        if let Some(err) = self.fatal() {
            return Err(err);
        }
        let next = record.offset() + 1;
        let outputs = (self.work)(record)
            .await
            .map_err(|e| Error::handler_boxed(e.into()))?;
        for output in outputs {
            // The delivery is awaited by the commit (which flushes); a failed one
            // makes the transaction abortable and the commit fails.
            let _delivery = self.producer.enqueue(output).await?;
        }
        lock(&self.state).pending.insert(tp.clone(), next);
        Ok(())
    }

    async fn run_claim(&self, claim: &mut Claim) -> Result<()> {
        let tp = TopicPartition::new(claim.topic(), claim.partition());
        let mut aborted = self.aborts.subscribe();
        let mut seen_aborts = *aborted.borrow_and_update();
        lock(&self.state)
            .committed
            .insert(tp.clone(), claim.initial_offset());
        loop {
            let record = tokio::select! {
                // `None` once the claim is revoked.
                record = claim.next() => record,
                // A claim waiting for records rewinds at once: the aborted
                // transaction may hold all it read.
                _ = aborted.changed() => {
                    let _open = self.gate.read().await;
                    self.rewind(claim, &tp, &mut seen_aborts);
                    continue;
                }
            };
            let Some(record) = record else {
                return Ok(());
            };
            let record = record?;
            if let Err(err) = self.transform(claim, &tp, record, &mut seen_aborts).await {
                // The transaction holds this claim's earlier records: abort it, so
                // they are transformed again along with this one.
                let _closed = self.gate.write().await;
                self.abort(Error::new(
                    ErrorKind::Handler,
                    format!("a record of {tp} failed: {err}"),
                ))
                .await?;
                self.producer
                    .begin_transaction()
                    .await
                    .map_err(|e| self.fail(e))?;
                return Err(err);
            }
        }
    }
}

impl<F, Fut, E> GroupHandler for Transactor<F>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<Vec<ProducerRecord>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    async fn setup(&self, session: &Session) -> Result<()> {
        let core = &self.0;
        if !core.producer.in_transaction() {
            core.producer
                .begin_transaction()
                .await
                .map_err(|e| core.fail(e))?;
        }
        let stop = Arc::new(Notify::new());
        let committer = {
            let (stop, session, core) = (stop.clone(), session.clone(), core.clone());
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(core.commit_interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = stop.notified() => return,
                    }
                    if let Err(err) = core.commit_round(&session).await {
                        if core.fatal().is_some() {
                            return;
                        }
                        tracing::warn!(error = %err, "transaction commit failed");
                    }
                }
            })
        };
        *lock(&core.committer) = Some((stop, committer));
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> Result<()> {
        let core = &self.0;
        let result = core.run_claim(&mut claim).await;
        // Revoked: commit what this claim's records produced before the partition
        // is given up (module docs).
        if result.is_ok() {
            core.commit_round(session).await?;
        }
        result
    }

    /// Stops the committer (after the round it may be in: a round cut short would
    /// leave the producer mid-commit).
    async fn cleanup(&self, _session: &Session) -> Result<()> {
        let committer = lock(&self.0.committer).take();
        if let Some((stop, task)) = committer {
            stop.notify_one();
            let _ = task.await;
        }
        Ok(())
    }
}

fn is_fatal(err: &Error) -> bool {
    crate::producer::is_fatal_transaction_error(err)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("never held across a panic")
}
