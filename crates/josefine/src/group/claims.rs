//! A group session (Sarama's `consumerGroupSession`) and its claims: what the member's
//! membership hands the handler, and the offsets it marks.
//!
//! Each claim's offsets are kept by [`Marks`] (see [`marks`](super::marks) for the
//! at-least-once rule): marking is an atomic max on the claim's own slot. Commits read
//! the slots and send only the ones that moved since their last commit, one commit at
//! a time so a late answer can never move a committed offset backwards.
//!
//! Under the eager protocol a session is one generation. Under the cooperative one
//! (KIP-429) a session outlives rebalances: its generation rises, claims are added and
//! revoked one by one, and it ends only when the membership does. Under the consumer
//! protocol (KIP-848) the same holds, with the member epoch as the generation: the
//! membership driver raises it as heartbeats answer, and a commit the broker finds
//! stale (STALE_MEMBER_EPOCH) is sent again once the newer epoch is known.
//!
//! A claim ends with a [`Revocation`]: its records stop, and its handler has until the
//! revocation's deadline to finish what it holds and mark it (drain on revoke); the
//! commit that hands the partition over covers every mark made by then.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use super::marks::{Marks, PendingCommit};
use super::offsets::{commit, Committer};
use crate::client::Client;
use crate::consumer::{ConsumerRecord, FetchedBatch, PartitionConsumer};
use crate::error::{Error, KafkaCode, Result};
use crate::metrics::GroupMetrics;
use crate::TopicPartition;

/// Why a claim ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeReason {
    /// A cooperative rebalance moved the partition to another member; the member's
    /// other claims go on.
    Reassigned,
    /// An eager rebalance ended the session: every claim ends and the member rejoins
    /// (it may get the partition back).
    Rebalance,
    /// The membership was lost (evicted, fenced): nothing more is committed for this
    /// claim, and another member may already be reading the partition.
    Lost,
    /// The member is closing.
    Close,
}

/// How a claim ended: why, and until when its handler may finish the records it
/// holds and mark them. Marks made after the deadline are never committed, and the
/// handler's task is cancelled at its next `.await`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revocation {
    /// Why the claim ended.
    pub reason: RevokeReason,
    /// Until when the handler may finish and mark the records it holds; marks after it are
    /// never committed.
    pub deadline: Instant,
}

/// The shared state of one claimed partition: its offsets, whether it was revoked, and
/// how the handler polls it (for `max.poll.interval.ms`).
#[derive(Debug)]
pub(crate) struct ClaimState {
    pub(crate) marks: Marks,
    revocation: OnceLock<Revocation>,
    revoke: Notify,
    paused: AtomicBool,
    /// Bumped when the handler starts waiting for records and again when it gets them
    /// (or stops waiting): odd while it waits, even while it processes. Only the
    /// claim's own task writes it, so a load and a store suffice.
    polls: AtomicU64,
}

impl ClaimState {
    fn new(start: i64, metadata: Option<Arc<str>>) -> Self {
        Self {
            marks: Marks::new(start, metadata),
            revocation: OnceLock::new(),
            revoke: Notify::new(),
            paused: AtomicBool::new(false),
            polls: AtomicU64::new(0),
        }
    }

    /// Ends the claim (the first revocation wins).
    pub(crate) fn revoke(&self, revocation: Revocation) {
        let _ = self.revocation.set(revocation);
        self.revoke.notify_waiters();
    }

    /// The claim ended: its session ended or its partition was revoked.
    pub(crate) fn is_revoked(&self) -> bool {
        self.revocation.get().is_some()
    }

    pub(crate) fn revocation(&self) -> Option<Revocation> {
        self.revocation.get().copied()
    }

    pub(crate) async fn revoked(&self) -> Revocation {
        loop {
            let notified = self.revoke.notified();
            if let Some(revocation) = self.revocation() {
                return revocation;
            }
            notified.await;
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The poll counter; see the field.
    pub(crate) fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// The handler made progress without waiting for records (a parallel processor
    /// finished one): the watchdog sees a new, still even, count.
    pub(crate) fn progressed(&self) {
        self.polls
            .store(self.polls.load(Ordering::Relaxed) + 2, Ordering::Relaxed);
    }

    fn bump_polls(&self) {
        self.polls
            .store(self.polls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn pause_for_test(&self) {
        self.paused.store(true, Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn bump_polls_for_test(&self, times: u64) {
        for _ in 0..times {
            self.bump_polls();
        }
    }
}

/// Marks a claim as waiting for records while alive.
struct Waiting<'a>(&'a ClaimState);

impl<'a> Waiting<'a> {
    fn new(state: &'a ClaimState) -> Self {
        state.bump_polls();
        Self(state)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.bump_polls();
    }
}

/// Claims by topic, then partition: `mark` finds a slot from a `&str` topic without
/// allocating, in O(log n) however many partitions the member owns.
#[derive(Debug, Default)]
struct ClaimTable(BTreeMap<Arc<str>, BTreeMap<i32, Arc<ClaimState>>>);

impl ClaimTable {
    fn get(&self, topic: &str, partition: i32) -> Option<&Arc<ClaimState>> {
        self.0.get(topic)?.get(&partition)
    }

    fn insert(&mut self, tp: TopicPartition, state: Arc<ClaimState>) {
        self.0
            .entry(tp.topic)
            .or_default()
            .insert(tp.partition, state);
    }

    fn remove(&mut self, tp: &TopicPartition) {
        if let Some(partitions) = self.0.get_mut(&*tp.topic) {
            partitions.remove(&tp.partition);
            if partitions.is_empty() {
                self.0.remove(&*tp.topic);
            }
        }
    }

    /// How many claims: a sum over the topics, not a walk over the claims (a member
    /// adds its claims one by one, so a walk would make a session's start O(n²)).
    fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    /// Every claim, sorted by topic and partition.
    fn iter(&self) -> impl Iterator<Item = (TopicPartition, &Arc<ClaimState>)> {
        self.0.iter().flat_map(|(topic, partitions)| {
            partitions.iter().map(move |(&partition, state)| {
                (
                    TopicPartition {
                        topic: topic.clone(),
                        partition,
                    },
                    state,
                )
            })
        })
    }
}

/// The membership's claims and the offsets marked in them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

#[derive(Debug)]
struct SessionInner {
    group: String,
    member_id: String,
    instance_id: Option<String>,
    generation: Generation,
    claims: RwLock<ClaimTable>,
    cancelled: AtomicBool,
    cancel: Notify,
    /// A cooperative rebalance is under way: commits wait for its end.
    rebalancing: AtomicBool,
    /// One commit at a time (see the module docs).
    commit_lock: tokio::sync::Mutex<()>,
    client: Client,
    metrics: GroupMetrics,
}

/// Who a session belongs to.
pub(crate) struct SessionOwner {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: Generation,
    pub metrics: GroupMetrics,
}

/// A session's generation (classic) or member epoch (KIP-848), shared by the session
/// and the membership driver, which raises it as the coordinator answers.
#[derive(Debug, Clone)]
pub(crate) struct Generation(Arc<watch::Sender<i32>>);

impl Generation {
    pub(crate) fn new(generation: i32) -> Self {
        Self(Arc::new(watch::Sender::new(generation)))
    }

    pub(crate) fn get(&self) -> i32 {
        *self.0.borrow()
    }

    /// Raises it; never lowers it (a late answer cannot undo a newer one).
    pub(crate) fn raise(&self, generation: i32) {
        self.0.send_if_modified(|current| {
            let higher = generation > *current;
            if higher {
                *current = generation;
            }
            higher
        });
    }

    /// Waits until it is not `from`, for at most `limit`; whether it changed.
    pub(crate) async fn changed_from(&self, from: i32, limit: Duration) -> bool {
        let mut seen = self.0.subscribe();
        let changed = tokio::time::timeout(limit, seen.wait_for(|g| *g != from)).await;
        matches!(changed, Ok(Ok(_)))
    }
}

/// How often a commit the broker found stale (STALE_MEMBER_EPOCH) is sent again, and
/// how long each retry waits for the newer epoch a heartbeat brings.
const STALE_EPOCH_RETRIES: u32 = 3;
const STALE_EPOCH_WAIT: Duration = Duration::from_secs(10);

impl Session {
    pub(crate) fn new(owner: SessionOwner, client: Client) -> Self {
        Self {
            inner: Arc::new(SessionInner {
                group: owner.group,
                member_id: owner.member_id,
                instance_id: owner.instance_id,
                generation: owner.generation,
                claims: RwLock::new(ClaimTable::default()),
                cancelled: AtomicBool::new(false),
                cancel: Notify::new(),
                rebalancing: AtomicBool::new(false),
                commit_lock: tokio::sync::Mutex::new(()),
                client,
                metrics: owner.metrics,
            }),
        }
    }

    /// The group id (`group.id`).
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// This member's id in the group: the coordinator's (classic protocol) or the client's
    /// (consumer protocol).
    pub fn member_id(&self) -> &str {
        &self.inner.member_id
    }

    /// The current generation (under the cooperative protocol it rises with each
    /// rebalance the session survives; under the consumer protocol it is the member
    /// epoch).
    pub fn generation(&self) -> i32 {
        self.inner.generation.get()
    }

    /// Who this member is in this generation, for offsets committed in a
    /// transaction ([`Producer::send_offsets_to_transaction`](crate::Producer::send_offsets_to_transaction)):
    /// once the group moved on to a later generation, the coordinator refuses them.
    pub fn group_metadata(&self) -> crate::GroupMetadata {
        crate::GroupMetadata {
            group_id: self.inner.group.clone(),
            member_id: self.inner.member_id.clone(),
            generation_id: self.generation(),
            group_instance_id: self.inner.instance_id.clone(),
        }
    }

    /// The partitions this member consumes now, sorted.
    pub fn claims(&self) -> Vec<TopicPartition> {
        self.read_claims().iter().map(|(tp, _)| tp).collect()
    }

    /// Marks `record` as processed: the next commit may include `offset + 1`.
    pub fn mark(&self, record: &ConsumerRecord) {
        self.mark_next(record.topic(), record.partition(), record.offset() + 1);
    }

    /// Marks everything before `next_offset` in `topic`/`partition` as processed
    /// (Sarama's `MarkOffset`: the offset given is the next one to read). Marks never
    /// move backwards. A partition this session does not claim is ignored (it may have
    /// been revoked).
    pub fn mark_next(&self, topic: &str, partition: i32, next_offset: i64) {
        if let Some(slot) = self.slot(topic, partition) {
            slot.marks.mark(next_offset);
        }
    }

    /// As [`mark_next`](Self::mark_next), with `metadata` committed alongside the
    /// offset (the Java client's `OffsetAndMetadata`); see [`Claim::mark_offset`].
    pub fn mark_offset(&self, topic: &str, partition: i32, next_offset: i64, metadata: &str) {
        if let Some(slot) = self.slot(topic, partition) {
            slot.marks.mark_with_metadata(next_offset, metadata);
        }
    }

    /// Commits what was marked since the last commit, now, and waits for the answer.
    /// Auto-commit does the same on its interval. During a cooperative rebalance this
    /// fails with REBALANCE_IN_PROGRESS: try again once it is over, as the
    /// Java client's `commitSync` does (Kafka does not flag that code retriable: it
    /// is the caller who decides to commit again).
    pub async fn commit(&self) -> Result<()> {
        if self.inner.rebalancing.load(Ordering::Acquire) {
            return Err(Error::kafka(KafkaCode::REBALANCE_IN_PROGRESS).with_group(self.group()));
        }
        self.commit_marked().await
    }

    /// The offset this session last committed for a claimed partition (the next
    /// offset to read), or where the claim started if it committed none since;
    /// `None` for a partition the session does not claim. Read in
    /// [`GroupHandler::cleanup`](super::GroupHandler::cleanup), it says what the
    /// session's final commit covered: less than what was marked means the commit
    /// failed or was skipped because the membership was lost, so those records will
    /// be processed again by the partition's next owner.
    pub fn committed_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.slot(topic, partition)
            .map(|slot| slot.marks.committed())
    }

    /// Whether the session is ending (a rebalance, a lost membership, close).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Resolves when the session ends.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.cancel.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    fn read_claims(&self) -> std::sync::RwLockReadGuard<'_, ClaimTable> {
        self.inner
            .claims
            .read()
            .expect("claims lock never poisoned")
    }

    fn write_claims(&self) -> std::sync::RwLockWriteGuard<'_, ClaimTable> {
        self.inner
            .claims
            .write()
            .expect("claims lock never poisoned")
    }

    fn slot(&self, topic: &str, partition: i32) -> Option<Arc<ClaimState>> {
        self.read_claims().get(topic, partition).cloned()
    }

    /// Ends the session: every claim's records end.
    pub(crate) fn cancel(&self, revocation: Revocation) {
        self.inner.cancelled.store(true, Ordering::Release);
        for (_, claim) in self.read_claims().iter() {
            claim.revoke(revocation);
        }
        self.inner.cancel.notify_waiters();
    }

    /// Adds a claim starting at `start` (its committed offset and that commit's
    /// metadata, or where the reset policy put it).
    pub(crate) fn add_claim(
        &self,
        tp: TopicPartition,
        start: i64,
        metadata: Option<Arc<str>>,
    ) -> Arc<ClaimState> {
        let state = Arc::new(ClaimState::new(start, metadata));
        let mut claims = self.write_claims();
        claims.insert(tp, state.clone());
        self.inner.metrics.claims.set(claims.len() as f64);
        state
    }

    /// Forgets revoked claims; their pending marks are dropped (they were committed
    /// before, or the partition was lost).
    pub(crate) fn remove_claims(&self, tps: &[TopicPartition]) {
        let mut claims = self.write_claims();
        for tp in tps {
            claims.remove(tp);
        }
        self.inner.metrics.claims.set(claims.len() as f64);
    }

    pub(crate) fn claim_state(&self, tp: &TopicPartition) -> Option<Arc<ClaimState>> {
        self.slot(&tp.topic, tp.partition)
    }

    pub(crate) fn claim_states(&self) -> Vec<(TopicPartition, Arc<ClaimState>)> {
        self.read_claims()
            .iter()
            .map(|(tp, s)| (tp, s.clone()))
            .collect()
    }

    pub(crate) fn set_generation(&self, generation: i32) {
        self.inner.generation.raise(generation);
        self.inner.metrics.generation.set(self.generation() as f64);
    }

    pub(crate) fn set_rebalancing(&self, rebalancing: bool) {
        self.inner.rebalancing.store(rebalancing, Ordering::Release);
    }

    pub(crate) fn is_rebalancing(&self) -> bool {
        self.inner.rebalancing.load(Ordering::Acquire)
    }

    /// Commits the dirty offsets; on failure they stay dirty for the next try.
    pub(crate) async fn commit_marked(&self) -> Result<()> {
        let _one_at_a_time = self.inner.commit_lock.lock().await;
        let dirty = self.dirty_offsets();
        if dirty.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let span =
            tracing::debug_span!("commit", group = %self.inner.group, partitions = dirty.len());
        let result = tracing::Instrument::instrument(self.commit_dirty(&dirty), span).await;
        let metrics = &self.inner.metrics;
        metrics
            .commit_latency
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => {
                metrics.commits_ok.increment(1);
                for pending in &dirty {
                    metrics.committed(
                        &pending.partition.topic,
                        pending.partition.partition,
                        pending.offset,
                    );
                }
            }
            Err(_) => metrics.commits_failed.increment(1),
        }
        result?;
        self.committed(&dirty);
        Ok(())
    }

    /// One OffsetCommit of `dirty`, sent again with the next member epoch when the
    /// broker finds ours stale.
    async fn commit_dirty(&self, dirty: &[PendingCommit]) -> Result<()> {
        let mut stale = 0;
        loop {
            let committer = Committer {
                group: self.inner.group.clone(),
                member_id: self.inner.member_id.clone(),
                generation: self.generation(),
                instance_id: self.inner.instance_id.clone(),
            };
            match commit(&self.inner.client, &committer, dirty).await {
                Ok(()) => return Ok(()),
                // The broker moved the member to a newer epoch; the heartbeat answer
                // that says so is on its way. Never a reason to give the offsets up.
                Err(err)
                    if err.code() == Some(KafkaCode::STALE_MEMBER_EPOCH)
                        && stale < STALE_EPOCH_RETRIES =>
                {
                    stale += 1;
                    tracing::debug!(
                        epoch = committer.generation,
                        "commit with a stale member epoch; retrying with the next one"
                    );
                    if !self
                        .inner
                        .generation
                        .changed_from(committer.generation, STALE_EPOCH_WAIT)
                        .await
                    {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Offsets marked since their last commit.
    pub(crate) fn dirty_offsets(&self) -> Vec<PendingCommit> {
        self.read_claims()
            .iter()
            .filter_map(|(tp, slot)| slot.marks.pending(tp))
            .collect()
    }

    /// Records a successful commit of these offsets.
    fn committed(&self, offsets: &[PendingCommit]) {
        let claims = self.read_claims();
        for pending in offsets {
            if let Some(slot) = claims.get(&pending.partition.topic, pending.partition.partition) {
                slot.marks.acknowledge(pending);
            }
        }
    }
}

/// One claimed partition, handed to [`GroupHandler::consume_claim`](super::GroupHandler),
/// which runs on its own task. Its records end (`None`) when the claim is revoked; see
/// [`revoked`](Self::revoked) for the time the handler then has to finish.
pub struct Claim {
    /// Boxed: a claim is moved into the handler's future, which lives as long as the
    /// claim, one per partition, and an `async fn` keeps its argument twice.
    inner: Box<ClaimParts>,
}

struct ClaimParts {
    reader: PartitionConsumer,
    state: Arc<ClaimState>,
    initial_offset: i64,
    session: Session,
    /// Dropped with the claim: tells a claim stream's forwarder the user let go.
    _released: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("topic", &self.topic())
            .field("partition", &self.partition())
            .field("initial_offset", &self.inner.initial_offset)
            .field("revocation", &self.inner.state.revocation())
            .finish()
    }
}

impl Claim {
    pub(crate) fn new(
        reader: PartitionConsumer,
        state: Arc<ClaimState>,
        initial_offset: i64,
        session: Session,
    ) -> Self {
        Self {
            inner: Box::new(ClaimParts {
                reader,
                state,
                initial_offset,
                session,
                _released: None,
            }),
        }
    }

    /// Resolves once this claim is dropped.
    pub(crate) fn released(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.inner._released = Some(tx);
        rx
    }

    /// The session this claim belongs to (member id, generation, `commit`).
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The claimed partition's topic.
    pub fn topic(&self) -> &str {
        self.inner.reader.topic()
    }

    /// The claimed partition.
    pub fn partition(&self) -> i32 {
        self.inner.reader.partition()
    }

    /// Where this claim started: the committed offset, the reset policy's, or (for a
    /// claim restarted after a handler error) the offset after the last mark.
    pub fn initial_offset(&self) -> i64 {
        self.inner.initial_offset
    }

    /// The partition's high watermark as of the latest fetch (-1 before the first).
    pub fn high_watermark(&self) -> i64 {
        self.inner.reader.high_watermark()
    }

    /// The metadata that goes with [`initial_offset`](Self::initial_offset): what was
    /// committed with it (Java's `OffsetAndMetadata.metadata()`), or, for a claim
    /// restarted after a handler error, what was marked with it. `None` when there
    /// is none or it was empty.
    pub fn metadata(&self) -> Option<Arc<str>> {
        self.inner
            .state
            .marks
            .metadata_at(self.inner.initial_offset)
    }

    /// As [`mark_next`](Self::mark_next), with `metadata` for the commit of
    /// `next_offset` (Sarama's `MarkOffset`). A commit carries metadata only with the
    /// offset it was marked with; marking the same offset again with new metadata
    /// commits it again.
    pub fn mark_offset(&self, next_offset: i64, metadata: &str) {
        self.inner
            .state
            .marks
            .mark_with_metadata(next_offset, metadata);
    }

    /// Marks `record` (of this claim) as processed: the next commit may include
    /// `offset + 1`. Takes no lock; a mark made after the claim's drain deadline is
    /// never committed.
    pub fn mark(&self, record: &ConsumerRecord) {
        self.inner.state.marks.mark(record.offset() + 1);
    }

    /// Marks everything before `next_offset` as processed (see [`mark`](Self::mark)).
    pub fn mark_next(&self, next_offset: i64) {
        self.inner.state.marks.mark(next_offset);
    }

    /// Whether the claim's records have ended (session over, partition revoked).
    pub fn is_revoked(&self) -> bool {
        self.inner.state.is_revoked()
    }

    /// Resolves when the claim is revoked, with the reason and the deadline until
    /// which the handler may finish the records it holds (in flight elsewhere, say)
    /// and mark them: the commit that hands the partition over covers those marks.
    /// A handler still running at the deadline is reported on
    /// [`errors`](super::ConsumerGroup::errors) and cancelled; the rebalance never
    /// waits longer than that.
    pub async fn revoked(&self) -> Revocation {
        self.inner.state.revoked().await
    }

    /// Stops fetching this partition (what was fetched is still handed out); the
    /// membership stays, and a paused claim never counts as a stalled handler.
    pub fn pause(&self) {
        self.inner.state.paused.store(true, Ordering::Release);
        self.inner.reader.pause();
    }

    /// Fetches again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.inner.state.paused.store(false, Ordering::Release);
        self.inner.reader.resume();
    }

    /// Whether [`pause`](Self::pause) stopped fetching.
    pub fn is_paused(&self) -> bool {
        self.inner.state.is_paused()
    }

    /// Reads on from `offset` (back, to process records again; or forward): anything
    /// fetched before is dropped. Marks are unaffected: they never move backwards.
    pub fn seek(&mut self, offset: i64) {
        self.inner.reader.seek(offset);
    }

    pub(crate) fn state(&self) -> Arc<ClaimState> {
        self.inner.state.clone()
    }

    /// The next batch (records share the fetched buffer), or `None` once the claim
    /// ends.
    pub async fn next_batch(&mut self) -> Option<Result<FetchedBatch>> {
        if self.inner.state.is_revoked() {
            return None;
        }
        let _waiting = Waiting::new(&self.inner.state);
        tokio::select! {
            biased;
            _ = self.inner.state.revoked() => None,
            batch = self.inner.reader.next_batch() => batch,
        }
    }

    /// The next record, or `None` once the claim ends.
    pub async fn next(&mut self) -> Option<Result<ConsumerRecord>> {
        use futures::StreamExt;
        if self.inner.state.is_revoked() {
            return None;
        }
        let _waiting = Waiting::new(&self.inner.state);
        tokio::select! {
            biased;
            _ = self.inner.state.revoked() => None,
            record = self.inner.reader.next() => record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_one_pointer() {
        // Every handler's future holds its claim (twice, as an `async fn` argument),
        // one future per partition: 88 bytes unboxed, 10,000 partitions.
        assert_eq!(std::mem::size_of::<Claim>(), std::mem::size_of::<usize>());
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn session(claims: &[(i32, i64)]) -> Session {
        let client = Client::builder()
            .bootstrap(["127.0.0.1:1"])
            .build()
            .expect("a client that never connects");
        let s = Session::new(
            SessionOwner {
                group: "g".into(),
                member_id: "m".into(),
                instance_id: None,
                generation: Generation::new(3),
                metrics: GroupMetrics::new("g"),
            },
            client,
        );
        for &(p, start) in claims {
            s.add_claim(tp(p), start, None);
        }
        s
    }

    fn offsets(pending: &[PendingCommit]) -> Vec<(TopicPartition, i64)> {
        pending
            .iter()
            .map(|p| (p.partition.clone(), p.offset))
            .collect()
    }

    #[tokio::test]
    async fn only_marked_offsets_become_dirty_and_commits_clear_them() {
        let s = session(&[(0, 10), (1, -1)]);
        assert!(
            s.dirty_offsets().is_empty(),
            "nothing marked, nothing to commit"
        );
        s.mark_next("t", 0, 15);
        s.mark_next("t", 0, 12); // marks never go backwards
        s.mark_next("t", 9, 1); // not claimed: ignored
        let dirty = s.dirty_offsets();
        assert_eq!(offsets(&dirty), vec![(tp(0), 15)]);
        s.committed(&dirty);
        assert!(s.dirty_offsets().is_empty());
        s.mark_offset("t", 1, 1, "why");
        let dirty = s.dirty_offsets();
        assert_eq!(offsets(&dirty), vec![(tp(1), 1)]);
        assert_eq!(dirty[0].metadata.as_deref(), Some("why"));
    }

    #[tokio::test]
    async fn committed_offset_starts_at_the_claim_start_and_follows_commits() {
        let s = session(&[(0, 10)]);
        assert_eq!(s.committed_offset("t", 0), Some(10));
        assert_eq!(s.committed_offset("t", 1), None, "not claimed");
        s.mark_next("t", 0, 15);
        assert_eq!(
            s.committed_offset("t", 0),
            Some(10),
            "marked, not committed"
        );
        s.committed(&s.dirty_offsets());
        assert_eq!(s.committed_offset("t", 0), Some(15));
    }

    #[tokio::test]
    async fn revoked_claims_are_forgotten_with_their_marks() {
        let s = session(&[(0, 0), (1, 0)]);
        s.mark_next("t", 1, 7);
        s.remove_claims(&[tp(1)]);
        assert_eq!(s.claims(), vec![tp(0)]);
        assert!(s.dirty_offsets().is_empty());
        s.mark_next("t", 1, 9);
        assert!(
            s.dirty_offsets().is_empty(),
            "a revoked partition's mark is ignored"
        );
    }

    #[tokio::test]
    async fn a_commit_during_a_cooperative_rebalance_is_refused_until_it_ends() {
        let s = session(&[(0, 0)]);
        s.mark_next("t", 0, 1);
        s.set_rebalancing(true);
        let err = s.commit().await.unwrap_err();
        assert_eq!(err.code(), Some(KafkaCode::REBALANCE_IN_PROGRESS));
        assert_eq!(
            s.dirty_offsets().len(),
            1,
            "the mark waits for the next commit"
        );
    }

    #[tokio::test]
    async fn cancel_wakes_waiters_and_revokes_every_claim() {
        let s = session(&[(0, 0)]);
        let claim = s.claim_states().remove(0).1;
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.cancelled().await }
        });
        tokio::task::yield_now().await;
        s.cancel(Revocation {
            reason: RevokeReason::Close,
            deadline: Instant::now(),
        });
        waiter.await.unwrap();
        assert!(s.is_cancelled());
        assert!(claim.is_revoked());
    }

    #[test]
    fn the_poll_counter_is_odd_only_while_waiting() {
        let state = ClaimState::new(0, None);
        assert_eq!(state.polls() % 2, 0);
        {
            let _w = Waiting::new(&state);
            assert_eq!(state.polls() % 2, 1);
        }
        assert_eq!(state.polls(), 2);
    }
}
