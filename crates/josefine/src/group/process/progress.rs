//! A parallel processor's bookkeeping for one partition, without I/O: which offsets
//! are read and not yet finished (the commit's watermark is the lowest of them),
//! which are done above it (the done set), and which record may start next without
//! breaking the ordering mode ([`Lanes`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use super::done_set::DoneSet;
use super::ProcessOrder;
use crate::consumer::ConsumerRecord;

/// Offsets read and not finished, in order. Every offset below `read_to` that is not
/// outstanding is done: processed, done by the previous owner, or never handed out
/// (compacted away, a transaction marker).
#[derive(Debug)]
pub(crate) struct Progress {
    /// Outstanding offsets in read order, with whether each has finished since; a
    /// finished front is popped at once, so the front is the watermark, and the
    /// finished ones behind it are dropped once they are half the ring (a finished
    /// offset is done whether it is in the ring or not).
    ring: VecDeque<(i64, bool)>,
    /// Entries of `ring` not finished.
    unfinished: usize,
    /// The next offset the partition's records continue at.
    read_to: i64,
    /// The previous owner's done set, for offsets not read yet.
    restored: DoneSet,
}

/// What to do with a record just read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Process it: it is outstanding until [`Progress::finish`].
    Process,
    /// Done by the previous owner (its done set): skip it.
    Done,
    /// Below what was read already: skip it.
    Skip,
}

impl Progress {
    /// A partition read from `start`, the previous owner's done set above it
    /// already done.
    pub(super) fn new(start: i64, restored: DoneSet) -> Self {
        Self {
            ring: VecDeque::new(),
            unfinished: 0,
            read_to: start,
            restored,
        }
    }

    /// A record at `offset` was read.
    pub(super) fn offer(&mut self, offset: i64) -> Offer {
        if offset < self.read_to {
            return Offer::Skip;
        }
        self.read_to = offset.saturating_add(1);
        if !self.restored.is_empty() && self.restored.contains(offset) {
            return Offer::Done;
        }
        self.ring.push_back((offset, false));
        self.unfinished += 1;
        Offer::Process
    }

    /// The partition's records continue at `next_offset`: anything below it not
    /// offered was never handed out, and counts as done.
    pub(super) fn read_to(&mut self, next_offset: i64) {
        self.read_to = self.read_to.max(next_offset);
    }

    /// The record at `offset` finished (processed, or given up on and handed to the
    /// dead-letter hook). Returns whether the watermark moved.
    pub(super) fn finish(&mut self, offset: i64) -> bool {
        // Records mostly finish in about the order they started.
        let i = if self.ring.front().is_some_and(|&(o, _)| o == offset) {
            0
        } else {
            match self.ring.binary_search_by_key(&offset, |&(o, _)| o) {
                Ok(i) => i,
                Err(_) => return false,
            }
        };
        if std::mem::replace(&mut self.ring[i].1, true) {
            return false;
        }
        self.unfinished -= 1;
        if i != 0 {
            if self.ring.len() > 2 * self.unfinished + 64 {
                self.ring.retain(|&(_, done)| !done);
            }
            return false;
        }
        while self.ring.front().is_some_and(|&(_, done)| done) {
            self.ring.pop_front();
        }
        true
    }

    /// The offset to commit: the lowest not finished.
    pub(super) fn watermark(&self) -> i64 {
        self.ring.front().map_or(self.read_to, |&(o, _)| o)
    }

    /// Read and not finished: what the processor's buffer accounting counts.
    pub(super) fn outstanding(&self) -> usize {
        self.unfinished
    }

    /// Everything done above the watermark: finished records, offsets never handed
    /// out between the outstanding ones, and the previous owner's done set not read
    /// yet.
    pub(super) fn done_set(&self) -> DoneSet {
        let mut ranges: Vec<Range<i64>> = Vec::new();
        let mut push = |r: Range<i64>| match ranges.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => ranges.push(r),
        };
        let mut at = self.watermark().saturating_add(1);
        for &(offset, done) in self.ring.iter().skip(1) {
            if done {
                continue;
            }
            if offset > at {
                push(at..offset);
            }
            at = offset + 1;
        }
        if self.read_to > at {
            push(at..self.read_to);
        }
        for r in self.restored.at_or_above(self.read_to) {
            push(r);
        }
        DoneSet::from_ranges(ranges)
    }
}

/// Which records may run now under the ordering mode: a lane holds the records of
/// one key (or of the whole partition) and runs one at a time, in offset order;
/// records without a lane run as soon as there is room. Ready records start lowest
/// offset first, which keeps the watermark moving.
#[derive(Debug)]
pub(crate) struct Lanes {
    order: ProcessOrder,
    /// Busy lanes and the records waiting behind the one running (the first of
    /// them is in `released` once the running one finished).
    busy: HashMap<Lane, VecDeque<ConsumerRecord>, BuildHasherDefault<LaneHasher>>,
    /// Records that could start as they were read, in offset order (the common
    /// case: no map for them).
    fresh: VecDeque<(Option<Lane>, ConsumerRecord)>,
    /// Lanes whose first waiting record may start, by that record's offset (small
    /// entries: the records stay in their lanes).
    released: BinaryHeap<Reverse<(i64, Lane)>>,
}

/// A lane: a 64-bit hash of the key (two keys with the same hash share a lane,
/// which costs parallelism, never order), or the partition's single lane.
pub(crate) type Lane = u64;

/// Lanes are hashes already.
#[derive(Default)]
pub(crate) struct LaneHasher(u64);

impl Hasher for LaneHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The lane of a key: FxHash (rustc's), eight bytes at a time. Keys are not an
/// attacker's choice here, and a collision only makes two keys share a lane.
fn key_lane(key: &[u8]) -> Lane {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h
}

impl Lanes {
    pub(super) fn new(order: ProcessOrder) -> Self {
        Self {
            order,
            busy: HashMap::default(),
            fresh: VecDeque::new(),
            released: BinaryHeap::new(),
        }
    }

    fn lane_of(&self, record: &ConsumerRecord) -> Option<Lane> {
        match self.order {
            ProcessOrder::Partition => Some(0),
            // A null key is its own lane: records without a key are independent.
            ProcessOrder::Key => record.key().map(|k| key_lane(k)),
            ProcessOrder::Unordered => None,
        }
    }

    /// A record to process, in offset order within the partition.
    pub(super) fn push(&mut self, record: ConsumerRecord) {
        let lane = self.lane_of(&record);
        if let Some(lane) = lane {
            if let Some(waiting) = self.busy.get_mut(&lane) {
                waiting.push_back(record);
                return;
            }
            self.busy.insert(lane, VecDeque::new());
        }
        self.fresh.push_back((lane, record));
    }

    /// The lowest ready offset, and whether it is a fresh one.
    fn lowest(&self) -> Option<(i64, bool)> {
        let fresh = self.fresh.front().map(|(_, r)| r.offset());
        let released = self.released.peek().map(|Reverse((o, _))| *o);
        match (fresh, released) {
            (Some(f), Some(r)) => Some(if f < r { (f, true) } else { (r, false) }),
            (Some(f), None) => Some((f, true)),
            (None, Some(r)) => Some((r, false)),
            (None, None) => None,
        }
    }

    /// Whether a record below `below` (if given) may start.
    pub(super) fn has_ready(&self, below: Option<i64>) -> bool {
        self.lowest()
            .is_some_and(|(o, _)| below.is_none_or(|b| o < b))
    }

    /// The lowest ready record below `below` (if given); its lane stays busy until
    /// [`done`](Self::done).
    pub(super) fn start(&mut self, below: Option<i64>) -> Option<(Option<Lane>, ConsumerRecord)> {
        let (offset, fresh) = self.lowest()?;
        if below.is_some_and(|b| offset >= b) {
            return None;
        }
        if fresh {
            return self.fresh.pop_front();
        }
        let Reverse((_, lane)) = self.released.pop()?;
        let record = self.busy.get_mut(&lane)?.pop_front()?;
        Some((Some(lane), record))
    }

    /// The record that ran in `lane` finished: the lane's next record becomes ready.
    pub(super) fn done(&mut self, lane: Option<Lane>) {
        let Some(lane) = lane else { return };
        let Some(waiting) = self.busy.get(&lane) else {
            return;
        };
        match waiting.front() {
            Some(next) => {
                self.released.push(Reverse((next.offset(), lane)));
            }
            None => {
                self.busy.remove(&lane);
            }
        }
    }

    /// Records waiting (ready or behind a busy lane).
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.fresh.len()
            + self.released.len()
            + self.busy.values().map(VecDeque::len).sum::<usize>()
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use crate::protocol::records::Record;
    use bytes::Bytes;

    fn progress(start: i64, restored: &[Range<i64>]) -> Progress {
        Progress::new(start, DoneSet::from_ranges(restored.iter().cloned()))
    }

    #[test]
    fn the_watermark_is_the_lowest_unfinished_offset() {
        let mut p = progress(10, &[]);
        for o in 10..15 {
            assert_eq!(p.offer(o), Offer::Process);
        }
        assert!(!p.finish(12));
        assert!(!p.finish(11));
        assert_eq!(p.watermark(), 10);
        assert_eq!(p.done_set().ranges(), [11..13]);
        assert!(p.finish(10));
        assert_eq!(p.watermark(), 13);
        assert_eq!(p.outstanding(), 2);
        assert!(p.finish(13) && p.finish(14));
        assert_eq!((p.watermark(), p.outstanding(), p.ring.len()), (15, 0, 0));
    }

    #[test]
    fn finished_offsets_are_dropped_from_the_ring_once_they_are_most_of_it() {
        let mut p = progress(0, &[]);
        for o in 0..1000 {
            p.offer(o);
        }
        for o in 1..1000 {
            p.finish(o);
            if o % 2 == 0 {
                p.finish(o); // twice: counted once
            }
        }
        assert_eq!(p.outstanding(), 1);
        assert!(p.ring.len() <= 66, "{}", p.ring.len());
        assert_eq!(p.watermark(), 0);
        assert_eq!(p.done_set().ranges(), [1..1000]);
        p.finish(0);
        assert_eq!((p.watermark(), p.ring.len()), (1000, 0));
    }

    #[test]
    fn offsets_never_handed_out_count_as_done() {
        let mut p = progress(0, &[]);
        p.offer(0);
        p.offer(5); // 1..5 compacted away
        p.offer(6);
        p.read_to(9); // 7 and 8: a transaction marker, say
        assert_eq!(p.watermark(), 0);
        p.finish(6);
        assert_eq!(p.done_set().ranges(), [1..5, 6..9]);
        p.finish(0);
        assert_eq!(p.watermark(), 5);
        p.finish(5);
        assert_eq!(p.watermark(), 9);
    }

    #[test]
    fn the_previous_owners_done_set_is_skipped_and_kept_until_read() {
        let mut p = progress(10, &[12..14, 20..22]);
        assert_eq!(p.offer(10), Offer::Process);
        assert_eq!(p.offer(11), Offer::Process);
        assert_eq!(p.offer(12), Offer::Done);
        assert_eq!(p.done_set().ranges(), [12..14, 20..22], "13: not read yet");
        assert_eq!(p.offer(13), Offer::Done);
        assert_eq!(p.offer(14), Offer::Process);
        p.finish(10);
        p.finish(11);
        assert_eq!(p.watermark(), 14);
        assert_eq!(p.done_set().ranges(), [20..22]);
        assert_eq!(p.offer(13), Offer::Skip, "below what was read");
    }

    fn record(offset: i64, key: Option<&'static str>) -> ConsumerRecord {
        let key = key.map(|k| Bytes::from_static(k.as_bytes()));
        ConsumerRecord::new("t", 0, Record::new(offset, 0, key, None, Vec::new()))
    }

    fn started(lanes: &mut Lanes) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some((_, r)) = lanes.start(None) {
            out.push(r.offset());
        }
        out
    }

    #[test]
    fn a_key_runs_one_record_at_a_time_in_offset_order() {
        let mut lanes = Lanes::new(ProcessOrder::Key);
        lanes.push(record(0, Some("a")));
        lanes.push(record(1, Some("b")));
        lanes.push(record(2, Some("a")));
        lanes.push(record(3, None));
        lanes.push(record(4, None));
        assert_eq!(started(&mut lanes), [0, 1, 3, 4]);
        assert_eq!(lanes.waiting(), 1);
        lanes.done(Some(key_lane(b"a")));
        assert_eq!(started(&mut lanes), [2]);
        lanes.done(Some(key_lane(b"a")));
        assert!(lanes.busy.len() == 1, "b still busy");
    }

    #[test]
    fn the_partition_order_runs_one_record_and_unordered_all() {
        let mut lanes = Lanes::new(ProcessOrder::Partition);
        for o in 0..3 {
            lanes.push(record(o, Some("k")));
        }
        assert_eq!(started(&mut lanes), [0]);
        lanes.done(Some(0));
        assert_eq!(started(&mut lanes), [1]);
        let mut lanes = Lanes::new(ProcessOrder::Unordered);
        for o in 0..3 {
            lanes.push(record(o, Some("k")));
        }
        assert_eq!(started(&mut lanes), [0, 1, 2]);
    }

    #[test]
    fn start_respects_the_bound_and_prefers_low_offsets() {
        let mut lanes = Lanes::new(ProcessOrder::Key);
        lanes.push(record(5, Some("a")));
        lanes.push(record(6, Some("a")));
        lanes.push(record(7, Some("b")));
        assert!(!lanes.has_ready(Some(5)));
        assert_eq!(lanes.start(Some(6)).map(|(_, r)| r.offset()), Some(5));
        assert_eq!(lanes.start(Some(6)).map(|(_, r)| r.offset()), None);
        lanes.done(Some(key_lane(b"a")));
        assert_eq!(started(&mut lanes), [6, 7]);
    }
}
