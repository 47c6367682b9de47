//! The offset bookkeeping of a claimed partition, without I/O: what the handler marked,
//! what the coordinator acknowledged, and what the next commit carries.
//!
//! At-least-once rests on one rule: an offset is committed only after its record was
//! handed to the user and the user marked it. A mark stores `offset + 1` (the next
//! offset to read) with an atomic max: no lock, no allocation, and marks never move
//! backwards. A commit sends a claim's mark only when it moved past what was last
//! acknowledged, and an acknowledgement only ever raises the committed offset, so a
//! late answer cannot move it backwards. When a claim ends its marks are sealed: what
//! was marked by then is what its last commit may carry; a mark that comes later (a
//! handler that overran its drain deadline, a stream record marked after its partition
//! moved) is never committed, because the partition may be someone else's by then.
//!
//! The I/O (OffsetFetch, OffsetCommit) is in [`offsets`](super::offsets); the session
//! decides when to commit ([`session`](super::session)).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::TopicPartition;

/// No mark yet.
const UNMARKED: i64 = -1;
/// Not sealed.
const OPEN: i64 = i64::MAX;

/// One claim's offsets. Shared by the claim's handler (which marks) and the session's
/// commits (which read and acknowledge).
#[derive(Debug)]
pub(crate) struct Marks {
    /// The next offset to read after the last marked record; `UNMARKED` before any.
    marked: AtomicI64,
    /// What the coordinator has (or what the claim started from).
    committed: AtomicI64,
    /// The highest mark a commit may carry: `OPEN` until the claim is sealed.
    seal: AtomicI64,
    /// `mark_offset`'s metadata, committed with the offset. Only marks that carry
    /// metadata take this lock.
    metadata: Mutex<Option<Arc<str>>>,
}

/// One partition's offset to commit: the next offset to read, and the metadata the
/// user attached with `mark_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingCommit {
    pub partition: TopicPartition,
    pub offset: i64,
    pub metadata: Option<Arc<str>>,
}

impl Marks {
    /// A claim that starts reading at `start` (its committed offset, or where the
    /// reset policy put it).
    pub fn new(start: i64) -> Self {
        Self {
            marked: AtomicI64::new(UNMARKED),
            committed: AtomicI64::new(start),
            seal: AtomicI64::new(OPEN),
            metadata: Mutex::new(None),
        }
    }

    /// Everything before `next_offset` was processed.
    pub fn mark(&self, next_offset: i64) {
        self.marked.fetch_max(next_offset, Ordering::AcqRel);
    }

    /// As [`mark`](Self::mark), with metadata for the commit.
    pub fn mark_with_metadata(&self, next_offset: i64, metadata: &str) {
        *self.metadata.lock().expect("metadata lock never poisoned") = Some(metadata.into());
        self.mark(next_offset);
    }

    /// Ends the claim's marks: later ones are never committed. Returns the last mark
    /// a commit may carry (`None` when nothing was marked).
    pub fn seal(&self) -> Option<i64> {
        let last = self.marked.load(Ordering::Acquire);
        self.seal.fetch_min(last, Ordering::AcqRel);
        (last != UNMARKED).then_some(last)
    }

    pub fn is_sealed(&self) -> bool {
        self.seal.load(Ordering::Acquire) != OPEN
    }

    /// The mark a commit would carry now: the last mark, capped by the seal.
    fn committable(&self) -> i64 {
        self.marked
            .load(Ordering::Acquire)
            .min(self.seal.load(Ordering::Acquire))
    }

    /// What the next commit of this claim carries, if its mark moved past what was
    /// acknowledged.
    pub fn pending(&self, partition: TopicPartition) -> Option<PendingCommit> {
        let offset = self.committable();
        (offset > self.committed()).then(|| PendingCommit {
            partition,
            offset,
            metadata: self
                .metadata
                .lock()
                .expect("metadata lock never poisoned")
                .clone(),
        })
    }

    /// The coordinator acknowledged a commit of `offset`.
    pub fn acknowledge(&self, offset: i64) {
        self.committed.fetch_max(offset, Ordering::AcqRel);
    }

    /// The committed offset (or where the claim started).
    pub fn committed(&self) -> i64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Where a restarted claim reads from: after the last committable mark, or the
    /// committed offset when nothing newer was marked.
    pub fn resume_at(&self) -> i64 {
        self.committable().max(self.committed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn offset(marks: &Marks) -> Option<i64> {
        marks.pending(tp()).map(|p| p.offset)
    }

    #[test]
    fn only_a_mark_past_the_committed_offset_is_pending() {
        let marks = Marks::new(10);
        assert_eq!(offset(&marks), None, "nothing marked");
        marks.mark(10);
        assert_eq!(offset(&marks), None, "marked what was committed");
        marks.mark(15);
        marks.mark(12);
        assert_eq!(offset(&marks), Some(15), "marks never move backwards");
    }

    #[test]
    fn acknowledgements_clear_the_mark_and_never_move_backwards() {
        let marks = Marks::new(0);
        marks.mark(5);
        marks.acknowledge(5);
        assert_eq!(offset(&marks), None);
        marks.mark(9);
        marks.acknowledge(3); // a late answer to an older commit
        assert_eq!(marks.committed(), 5);
        assert_eq!(offset(&marks), Some(9));
    }

    #[test]
    fn marks_after_the_seal_are_never_committed() {
        let marks = Marks::new(0);
        marks.mark(4);
        assert_eq!(marks.seal(), Some(4));
        assert!(marks.is_sealed());
        marks.mark(8);
        assert_eq!(offset(&marks), Some(4));
        marks.acknowledge(4);
        assert_eq!(offset(&marks), None, "the late mark stays uncommitted");
        assert_eq!(marks.resume_at(), 4);
    }

    #[test]
    fn a_claim_sealed_before_any_mark_commits_nothing() {
        let marks = Marks::new(7);
        assert_eq!(marks.seal(), None);
        marks.mark(20);
        assert_eq!(offset(&marks), None);
    }

    #[test]
    fn metadata_travels_with_the_mark() {
        let marks = Marks::new(0);
        marks.mark_with_metadata(3, "why");
        let pending = marks.pending(tp()).unwrap();
        assert_eq!(
            (pending.offset, pending.metadata.as_deref()),
            (3, Some("why"))
        );
    }

    #[test]
    fn a_restart_resumes_after_the_last_mark_or_at_the_commit() {
        let marks = Marks::new(10);
        assert_eq!(marks.resume_at(), 10);
        marks.mark(14);
        assert_eq!(marks.resume_at(), 14);
        marks.acknowledge(14);
        assert_eq!(marks.resume_at(), 14);
    }
}
