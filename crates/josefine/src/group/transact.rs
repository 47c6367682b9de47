//! Exactly-once consume-transform-produce
//! ([`ConsumerGroup::transact`](super::ConsumerGroup::transact)): every record of the
//! member's claims is transformed into output records, which a transactional producer
//! writes in the same transaction as the input offsets (KIP-98, KIP-447).
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
//! Offsets are committed only inside transactions: the claims never mark, so the
//! session's own commits (auto-commit, the final commit) have nothing to send. A
//! plain commit could land between a transaction's offsets and its commit and, being
//! later, win over them.
//!
//! **Failures.** A transaction that cannot commit (a member of an older generation,
//! an output that could not be written, a transform or a read that failed, a claim
//! cancelled at its drain deadline in the middle of a record) is aborted, and every
//! claim goes back to its last committed offset at once: what the aborted transaction
//! held is transformed again, after a backoff. A record that fails every time blocks
//! its partition (it is never skipped). A failure is counted against the transaction
//! it happened in only: claims that see the same failure abort it once. A fatal error
//! (another instance with the same transactional id fenced this one) closes the group
//! and is what `transact` returns.
//!
//! **Revocation commits.** A claim that is revoked by a rebalance or a close commits
//! the open transaction before it returns, within the drain deadline, so the
//! partition's next owner starts where this member stopped instead of after an abort's
//! rewind. That is safe because the group coordinator checks the generation: a member
//! whose partitions were already taken is refused, and the transaction is aborted. A
//! claim revoked as lost (the membership expired) aborts instead of trying. This is
//! the choice of Kafka Streams (commit on revoke); franz-go's `GroupTransactSession`
//! aborts on every revocation, trading repeated work for never holding a rebalance up
//! with a commit.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify, RwLock};

use super::claims::{Claim, RevokeReason, Session};
use super::handler::GroupHandler;
use super::offsets::OffsetAndMetadata;
use crate::backoff::{jitter_unit, Backoff};
use crate::consumer::ConsumerRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::producer::{Producer, ProducerRecord};
use crate::task::OwnedTask;
use crate::topic_partition::TopicPartition;

/// The group handler behind [`ConsumerGroup::transact`](super::ConsumerGroup::transact);
/// its state is shared with the session's committer task.
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
    backoff: Backoff,
    /// Held shared while a record is transformed and its outputs handed over; held
    /// exclusively while the transaction commits or aborts.
    gate: RwLock<()>,
    state: Mutex<Offsets>,
    /// Which transaction is open: a failure aborts the transaction it happened in,
    /// not a later one.
    txn_seq: AtomicU64,
    /// Bumped by every abort: a claim that sees it change goes back to its last
    /// committed offset (at once, even when it waits for records).
    aborts: watch::Sender<u64>,
    /// A fatal error: `transact` closes the group and returns it.
    fatal: Mutex<Option<Error>>,
    fatal_raised: Notify,
    /// The session's committer: it holds the core weakly, so dropping `transact`'s
    /// future (without a close) drops the core and, with it, stops the task.
    committer: Mutex<Option<(Arc<Notify>, OwnedTask<()>)>>,
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
    /// `backoff`: the group's `retry.backoff.ms`, before a rewound claim reads again.
    pub(crate) fn new(
        backoff: Backoff,
        producer: Producer,
        commit_interval: Duration,
        work: F,
    ) -> Self {
        Self(Arc::new(Core {
            producer,
            work,
            commit_interval,
            backoff,
            gate: RwLock::new(()),
            state: Mutex::new(Offsets::default()),
            txn_seq: AtomicU64::new(0),
            aborts: watch::Sender::new(0),
            fatal: Mutex::new(None),
            fatal_raised: Notify::new(),
            committer: Mutex::new(None),
        }))
    }

    /// The fatal error that stopped the pipeline, if one did.
    pub(crate) fn fatal(&self) -> Option<Error> {
        self.0.fatal()
    }

    /// Resolves once a fatal error was recorded.
    pub(crate) async fn fatal_raised(&self) {
        self.0.fatal_raised.notified().await
    }
}

/// What to do with a claim that is revoked (or cancelled) while it holds work of the
/// open transaction.
struct Doom<'a, F> {
    core: &'a Core<F>,
    armed: AtomicBool,
}

impl<F> Drop for Doom<'_, F> {
    fn drop(&mut self) {
        if self.armed.load(Ordering::Acquire) {
            // Cancelled (at the drain deadline) in the middle of a record or a
            // commit: the transaction may hold outputs without their offsets.
            self.core.producer.doom_transaction(Error::new(
                ErrorKind::Handler,
                "a claim was cancelled in the middle of a record or a commit",
            ));
        }
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

    /// Records a fatal error (`transact` closes the group).
    fn fail(&self, err: Error) -> Error {
        tracing::error!(error = %err, "exactly-once processing cannot go on; the group closes");
        lock(&self.fatal).get_or_insert_with(|| err.clone());
        self.fatal_raised.notify_one();
        err
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
        match self.commit(session, &offsets).await {
            Ok(()) => {
                let mut state = lock(&self.state);
                state.pending.clear();
                for (tp, o) in offsets {
                    state.committed.insert(tp, o.offset);
                }
            }
            Err(err) => self.abort(err).await?,
        }
        self.begin().await
    }

    /// Sends the offsets and commits; an unanswered commit (the coordinator out of
    /// reach) is retried, never aborted: it may have happened.
    async fn commit(
        &self,
        session: &Session,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        if !offsets.is_empty() {
            self.producer
                .send_offsets_to_transaction(offsets, &session.group_metadata())
                .await?;
        }
        let mut failures = 0;
        loop {
            match self.producer.commit_transaction().await {
                Err(err) if self.producer.commit_unanswered() => {
                    failures += 1;
                    tracing::warn!(error = %err, "the transaction's commit went unanswered; retrying it");
                    tokio::time::sleep(self.backoff.delay(failures, jitter_unit())).await;
                }
                result => return result,
            }
        }
    }

    /// Aborts after `err`: the transaction's records are dropped, its offsets not
    /// committed, and every claim goes back to its last committed offset. Retried
    /// until it succeeds; a fatal error stops the group. The gate is held.
    async fn abort(&self, err: Error) -> Result<()> {
        if crate::producer::is_fatal_transaction_error(&err) {
            return Err(self.fail(err));
        }
        tracing::warn!(error = %err, "the transaction cannot commit; aborting it and going back to the last committed offsets");
        let mut failures = 0;
        while let Err(err) = self.producer.abort_transaction().await {
            if crate::producer::is_fatal_transaction_error(&err) {
                return Err(self.fail(err));
            }
            failures += 1;
            tracing::warn!(error = %err, "aborting the transaction failed; retrying");
            tokio::time::sleep(self.backoff.delay(failures, jitter_unit())).await;
        }
        lock(&self.state).pending.clear();
        self.aborts.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Opens the next transaction. The gate is held.
    async fn begin(&self) -> Result<()> {
        self.producer
            .begin_transaction()
            .await
            .map_err(|e| self.fail(e))?;
        self.txn_seq.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Aborts the transaction numbered `seq` after `err`, unless it already ended.
    async fn abort_round(&self, seq: u64, err: Error) -> Result<()> {
        let _closed = self.gate.write().await;
        if self.txn_seq.load(Ordering::Acquire) != seq {
            return Ok(());
        }
        self.abort(err).await?;
        self.begin().await
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
    /// happened since `seen_aborts` (then the claim goes back to its last committed
    /// offset and the record is dropped). A failure comes with the number of the
    /// transaction it happened in.
    async fn transform(
        &self,
        claim: &mut Claim,
        tp: &TopicPartition,
        record: Result<ConsumerRecord>,
        seen_aborts: &mut u64,
    ) -> std::result::Result<(), (u64, Error)> {
        let _open = self.gate.read().await;
        let seq = self.txn_seq.load(Ordering::Acquire);
        if self.rewind(claim, tp, seen_aborts) {
            return Ok(());
        }
        if let Some(err) = self.fatal() {
            return Err((seq, err));
        }
        let record = record.map_err(|e| (seq, e))?;
        let next = record.offset() + 1;
        let outputs = (self.work)(record)
            .await
            .map_err(|e| (seq, Error::handler_boxed(e.into())))?;
        for output in outputs {
            // The delivery is awaited by the commit (which flushes). A record that
            // fails here or later makes the transaction abortable, so the outputs
            // of this input handed over so far are never committed.
            let _delivery = self.producer.enqueue(output).await.map_err(|e| (seq, e))?;
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
        let mut failures = 0;
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
            match self.transform(claim, &tp, record, &mut seen_aborts).await {
                Ok(()) => failures = 0,
                Err((seq, err)) => {
                    if let Some(fatal) = self.fatal() {
                        return Err(fatal);
                    }
                    // The transaction holds this claim's earlier records (and maybe
                    // some outputs of this one): abort it, so they are all
                    // transformed again, after a backoff.
                    tracing::warn!(partition = %tp, error = %err, "a record failed; aborting the transaction");
                    self.abort_round(seq, err).await?;
                    failures += 1;
                    let delay = self.backoff.delay(failures, jitter_unit());
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = claim.revoked() => {}
                    }
                }
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
            let _closed = core.gate.write().await;
            core.begin().await?;
        }
        let stop = Arc::new(Notify::new());
        let committer = {
            let (stop, session) = (stop.clone(), session.clone());
            let (every, core) = (core.commit_interval, Arc::downgrade(core));
            OwnedTask::spawn(async move {
                let mut ticker = tokio::time::interval(every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = stop.notified() => return,
                    }
                    let Some(core) = core.upgrade() else { return };
                    if core.commit_round(&session).await.is_err() && core.fatal().is_some() {
                        return;
                    }
                }
            })
        };
        *lock(&core.committer) = Some((stop, committer));
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> Result<()> {
        let core = &*self.0;
        let doom = Doom {
            core,
            armed: AtomicBool::new(true),
        };
        let result = core.run_claim(&mut claim).await;
        // Revoked: commit what this claim's records produced before the partition
        // is given up (module docs); lost: abort, the partition is already another
        // member's.
        let ended = match result {
            Err(err) => Err(err),
            Ok(()) => match claim.is_revoked() {
                true if claim.revoked().await.reason == RevokeReason::Lost => {
                    let seq = core.txn_seq.load(Ordering::Acquire);
                    let lost = Error::new(
                        ErrorKind::Kafka(crate::KafkaCode::UNKNOWN_MEMBER_ID),
                        "the membership was lost",
                    );
                    core.abort_round(seq, lost).await
                }
                _ => core.commit_round(session).await,
            },
        };
        doom.armed.store(false, Ordering::Release);
        ended
    }

    /// Stops the committer (after the round it may be in).
    async fn cleanup(&self, _session: &Session) -> Result<()> {
        let committer = lock(&self.0.committer).take();
        if let Some((stop, task)) = committer {
            stop.notify_one();
            let _ = task.join().await;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("never held across a panic")
}
