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
//! decides when to commit ([`claims`](super::claims)).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
    /// The metadata marked with an offset (`mark_offset`, the parallel processor's
    /// done set). Only marks that carry metadata take this lock.
    noted: Mutex<Option<Noted>>,
    /// The version of the last metadata the coordinator acknowledged.
    acked_version: AtomicU64,
}

/// Metadata and the offset it was marked with: a commit carries it only with that
/// offset. Each new one gets a higher version, so a commit of the same offset with new
/// metadata is still pending.
#[derive(Debug, Clone)]
struct Noted {
    offset: i64,
    metadata: Arc<str>,
    version: u64,
}

/// One partition's offset to commit: the next offset to read, and the metadata the
/// user attached with `mark_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingCommit {
    pub partition: TopicPartition,
    pub offset: i64,
    pub metadata: Option<Arc<str>>,
    /// Which metadata this is (0: none, or what the claim started with).
    pub metadata_version: u64,
}

impl Marks {
    /// A claim that starts reading at `start` (its committed offset, or where the
    /// reset policy put it), with the metadata committed with it.
    pub(crate) fn new(start: i64, metadata: Option<Arc<str>>) -> Self {
        Self {
            marked: AtomicI64::new(UNMARKED),
            committed: AtomicI64::new(start),
            seal: AtomicI64::new(OPEN),
            noted: Mutex::new(metadata.map(|metadata| Noted {
                offset: start,
                metadata,
                version: 0,
            })),
            acked_version: AtomicU64::new(0),
        }
    }

    fn noted(&self) -> std::sync::MutexGuard<'_, Option<Noted>> {
        self.noted.lock().expect("metadata lock never poisoned")
    }

    /// Everything before `next_offset` was processed.
    pub(crate) fn mark(&self, next_offset: i64) {
        self.marked.fetch_max(next_offset, Ordering::AcqRel);
    }

    /// As [`mark`](Self::mark), with metadata a commit of `next_offset` carries. A
    /// mark behind an earlier metadata mark, or after the seal, leaves the metadata
    /// as it was.
    pub(crate) fn mark_with_metadata(&self, next_offset: i64, metadata: &str) {
        let mut noted = self.noted();
        if self.is_sealed() || noted.as_ref().is_some_and(|n| n.offset > next_offset) {
            drop(noted);
            self.mark(next_offset);
            return;
        }
        let version = noted.as_ref().map_or(0, |n| n.version) + 1;
        *noted = Some(Noted {
            offset: next_offset,
            metadata: metadata.into(),
            version,
        });
        self.mark(next_offset);
    }

    /// The metadata marked (or committed) with `offset`, if any.
    pub(crate) fn metadata_at(&self, offset: i64) -> Option<Arc<str>> {
        self.noted()
            .as_ref()
            .filter(|n| n.offset == offset)
            .map(|n| n.metadata.clone())
    }

    /// Ends the claim's marks: later ones are never committed. Returns the last mark
    /// a commit may carry (`None` when nothing was marked).
    pub(crate) fn seal(&self) -> Option<i64> {
        let last = self.marked.load(Ordering::Acquire);
        self.seal.fetch_min(last, Ordering::AcqRel);
        (last != UNMARKED).then_some(last)
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.seal.load(Ordering::Acquire) != OPEN
    }

    /// The mark a commit would carry now: the last mark, capped by the seal.
    fn committable(&self) -> i64 {
        self.marked
            .load(Ordering::Acquire)
            .min(self.seal.load(Ordering::Acquire))
    }

    /// What the next commit of this claim carries: its mark, if it moved past what
    /// was acknowledged or was marked again with new metadata.
    pub(crate) fn pending(&self, partition: TopicPartition) -> Option<PendingCommit> {
        let offset = self.committable();
        let committed = self.committed();
        if offset < committed {
            return None;
        }
        let noted = self
            .noted()
            .as_ref()
            .filter(|n| n.offset == offset)
            .cloned();
        let new_metadata = noted
            .as_ref()
            .is_some_and(|n| n.version > self.acked_version.load(Ordering::Acquire));
        (offset > committed || new_metadata).then(|| PendingCommit {
            partition,
            offset,
            metadata_version: noted.as_ref().map_or(0, |n| n.version),
            metadata: noted.map(|n| n.metadata),
        })
    }

    /// The coordinator acknowledged `commit`.
    pub(crate) fn acknowledge(&self, commit: &PendingCommit) {
        self.committed.fetch_max(commit.offset, Ordering::AcqRel);
        self.acked_version
            .fetch_max(commit.metadata_version, Ordering::AcqRel);
    }

    /// The committed offset (or where the claim started).
    pub(crate) fn committed(&self) -> i64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Where a restarted claim reads from: after the last committable mark, or the
    /// committed offset when nothing newer was marked.
    pub(crate) fn resume_at(&self) -> i64 {
        self.committable().max(self.committed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn commit(offset: i64) -> PendingCommit {
        PendingCommit {
            partition: tp(),
            offset,
            metadata: None,
            metadata_version: 0,
        }
    }

    fn offset(marks: &Marks) -> Option<i64> {
        marks.pending(tp()).map(|p| p.offset)
    }

    #[test]
    fn only_a_mark_past_the_committed_offset_is_pending() {
        let marks = Marks::new(10, None);
        assert_eq!(offset(&marks), None, "nothing marked");
        marks.mark(10);
        assert_eq!(offset(&marks), None, "marked what was committed");
        marks.mark(15);
        marks.mark(12);
        assert_eq!(offset(&marks), Some(15), "marks never move backwards");
    }

    #[test]
    fn acknowledgements_clear_the_mark_and_never_move_backwards() {
        let marks = Marks::new(0, None);
        marks.mark(5);
        marks.acknowledge(&commit(5));
        assert_eq!(offset(&marks), None);
        marks.mark(9);
        marks.acknowledge(&commit(3)); // a late answer to an older commit
        assert_eq!(marks.committed(), 5);
        assert_eq!(offset(&marks), Some(9));
    }

    #[test]
    fn marks_after_the_seal_are_never_committed() {
        let marks = Marks::new(0, None);
        marks.mark(4);
        assert_eq!(marks.seal(), Some(4));
        assert!(marks.is_sealed());
        marks.mark(8);
        assert_eq!(offset(&marks), Some(4));
        marks.acknowledge(&commit(4));
        assert_eq!(offset(&marks), None, "the late mark stays uncommitted");
        assert_eq!(marks.resume_at(), 4);
    }

    #[test]
    fn a_claim_sealed_before_any_mark_commits_nothing() {
        let marks = Marks::new(7, None);
        assert_eq!(marks.seal(), None);
        marks.mark(20);
        assert_eq!(offset(&marks), None);
    }

    #[test]
    fn metadata_travels_with_the_mark() {
        let marks = Marks::new(0, None);
        marks.mark_with_metadata(3, "why");
        let pending = marks.pending(tp()).unwrap();
        assert_eq!(
            (pending.offset, pending.metadata.as_deref()),
            (3, Some("why"))
        );
    }

    #[test]
    fn metadata_goes_only_with_its_own_offset() {
        let marks = Marks::new(0, None);
        marks.mark_with_metadata(3, "at 3");
        marks.mark(5);
        let pending = marks.pending(tp()).unwrap();
        assert_eq!((pending.offset, pending.metadata), (5, None));
        assert_eq!(marks.metadata_at(3).as_deref(), Some("at 3"));
        marks.mark_with_metadata(2, "behind");
        assert_eq!(marks.metadata_at(3).as_deref(), Some("at 3"), "kept");
    }

    #[test]
    fn new_metadata_at_the_committed_offset_is_committed_again() {
        let marks = Marks::new(4, Some("started".into()));
        assert_eq!(marks.metadata_at(4).as_deref(), Some("started"));
        assert_eq!(
            offset(&marks),
            None,
            "what the claim started from is no mark"
        );
        marks.mark_with_metadata(4, "more done");
        let pending = marks.pending(tp()).unwrap();
        assert_eq!(
            (pending.offset, pending.metadata.as_deref()),
            (4, Some("more done"))
        );
        marks.acknowledge(&pending);
        assert_eq!(offset(&marks), None, "acknowledged");
        marks.mark_with_metadata(4, "even more");
        assert!(marks.pending(tp()).is_some());
    }

    #[test]
    fn metadata_marked_after_the_seal_is_never_committed() {
        let marks = Marks::new(0, None);
        marks.mark_with_metadata(2, "before");
        marks.seal();
        marks.mark_with_metadata(2, "after");
        assert_eq!(
            marks.pending(tp()).unwrap().metadata.as_deref(),
            Some("before")
        );
    }

    #[test]
    fn a_restart_resumes_after_the_last_mark_or_at_the_commit() {
        let marks = Marks::new(10, None);
        assert_eq!(marks.resume_at(), 10);
        marks.mark(14);
        assert_eq!(marks.resume_at(), 14);
        marks.acknowledge(&commit(14));
        assert_eq!(marks.resume_at(), 14);
    }
}
