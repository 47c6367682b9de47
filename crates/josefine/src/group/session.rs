//! A group session (Sarama's `consumerGroupSession`) and its claims: what one
//! generation of membership hands the handler, and the offsets it marks.
//!
//! At-least-once rests on one rule: an offset is committed only after its record was
//! handed to the user and the user marked it. `mark` stores `offset + 1` in the
//! partition's slot (an atomic max, no lock); commits read the slots and send only the
//! ones that moved since their last commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::consumer::{ConsumerRecord, FetchedBatch, PartitionConsumer};
use crate::error::Result;
use crate::TopicPartition;

/// Offsets of one claimed partition.
#[derive(Debug)]
pub(crate) struct OffsetSlot {
    /// The next offset to read after the last marked record; -1 before any mark.
    marked: AtomicI64,
    /// What the coordinator has (or what the session started from).
    committed: AtomicI64,
}

impl OffsetSlot {
    fn new(start: i64) -> Self {
        Self {
            marked: AtomicI64::new(-1),
            committed: AtomicI64::new(start),
        }
    }
}

/// One generation of group membership: its claims and the offsets marked in it.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

#[derive(Debug)]
struct SessionInner {
    group: String,
    member_id: String,
    generation: i32,
    claims: Vec<TopicPartition>,
    slots: HashMap<TopicPartition, OffsetSlot>,
    cancelled: AtomicBool,
    cancel: Notify,
}

impl Session {
    pub(crate) fn new(
        group: String,
        member_id: String,
        generation: i32,
        claims: Vec<(TopicPartition, i64)>,
    ) -> Self {
        let slots = claims
            .iter()
            .map(|(tp, start)| (tp.clone(), OffsetSlot::new(*start)))
            .collect();
        Self {
            inner: Arc::new(SessionInner {
                group,
                member_id,
                generation,
                claims: claims.into_iter().map(|(tp, _)| tp).collect(),
                slots,
                cancelled: AtomicBool::new(false),
                cancel: Notify::new(),
            }),
        }
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    pub fn member_id(&self) -> &str {
        &self.inner.member_id
    }

    pub fn generation(&self) -> i32 {
        self.inner.generation
    }

    /// The partitions this member consumes in this session.
    pub fn claims(&self) -> &[TopicPartition] {
        &self.inner.claims
    }

    /// Marks `record` as processed: the next commit may include `offset + 1`.
    pub fn mark(&self, record: &ConsumerRecord) {
        self.mark_next(record.topic(), record.partition(), record.offset() + 1);
    }

    /// Marks everything before `next_offset` in `topic`/`partition` as processed.
    /// A partition this session does not claim is ignored (it may have been revoked).
    pub fn mark_next(&self, topic: &str, partition: i32, next_offset: i64) {
        let tp = TopicPartition::new(topic, partition);
        if let Some(slot) = self.inner.slots.get(&tp) {
            slot.marked.fetch_max(next_offset, Ordering::AcqRel);
        }
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

    pub(crate) fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::Release);
        self.inner.cancel.notify_waiters();
    }

    /// Offsets marked since their last commit: (partition, next offset to read).
    pub(crate) fn dirty_offsets(&self) -> Vec<(TopicPartition, i64)> {
        self.inner
            .slots
            .iter()
            .filter_map(|(tp, slot)| {
                let marked = slot.marked.load(Ordering::Acquire);
                (marked > slot.committed.load(Ordering::Acquire)).then(|| (tp.clone(), marked))
            })
            .collect()
    }

    /// Records a successful commit of these offsets.
    pub(crate) fn committed(&self, offsets: &[(TopicPartition, i64)]) {
        for (tp, offset) in offsets {
            if let Some(slot) = self.inner.slots.get(tp) {
                slot.committed.fetch_max(*offset, Ordering::AcqRel);
            }
        }
    }
}

/// One claimed partition, handed to [`GroupHandler::consume_claim`](super::GroupHandler).
/// Its records end (`None`) when the session ends.
pub struct Claim {
    reader: PartitionConsumer,
    session: Session,
    initial_offset: i64,
}

impl Claim {
    pub(crate) fn new(reader: PartitionConsumer, session: Session, initial_offset: i64) -> Self {
        Self {
            reader,
            session,
            initial_offset,
        }
    }

    pub fn topic(&self) -> &str {
        self.reader.topic()
    }

    pub fn partition(&self) -> i32 {
        self.reader.partition()
    }

    /// Where this claim started: the committed offset, or the reset policy's.
    pub fn initial_offset(&self) -> i64 {
        self.initial_offset
    }

    pub fn high_watermark(&self) -> i64 {
        self.reader.high_watermark()
    }

    /// The next batch (records share the fetched buffer), or `None` once the session
    /// ends.
    pub async fn next_batch(&mut self) -> Option<Result<FetchedBatch>> {
        if self.session.is_cancelled() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.session.cancelled() => None,
            batch = self.reader.next_batch() => batch,
        }
    }

    /// The next record, or `None` once the session ends.
    pub async fn next(&mut self) -> Option<Result<ConsumerRecord>> {
        use futures::StreamExt;
        if self.session.is_cancelled() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.session.cancelled() => None,
            record = self.reader.next() => record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn only_marked_offsets_become_dirty_and_commits_clear_them() {
        let s = Session::new("g".into(), "m".into(), 3, vec![(tp(0), 10), (tp(1), -1)]);
        assert!(
            s.dirty_offsets().is_empty(),
            "nothing marked, nothing to commit"
        );
        s.mark_next("t", 0, 15);
        s.mark_next("t", 0, 12); // marks never go backwards
        s.mark_next("t", 9, 1); // not claimed: ignored
        assert_eq!(s.dirty_offsets(), vec![(tp(0), 15)]);
        s.committed(&[(tp(0), 15)]);
        assert!(s.dirty_offsets().is_empty());
        s.mark_next("t", 1, 1);
        assert_eq!(s.dirty_offsets(), vec![(tp(1), 1)]);
    }

    #[tokio::test]
    async fn cancel_wakes_waiters() {
        let s = Session::new("g".into(), "m".into(), 1, vec![]);
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.cancelled().await }
        });
        tokio::task::yield_now().await;
        s.cancel();
        waiter.await.unwrap();
        assert!(s.is_cancelled());
    }
}
