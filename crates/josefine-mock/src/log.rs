//! One partition's log: the stored batches, the offsets around them, and the
//! idempotent producers' sequence state (KIP-98, with KIP-360's epoch bumps).
//!
//! Entries are whole batches, kept as bytes with the offset range they
//! cover. Offsets are contiguous: each append starts at the log end offset,
//! and the log start offset only moves forward (DeleteRecords). There are no
//! segments, no retention and no compaction, so an offset range never has
//! holes a consumer would have to skip.
//!
//! Producer state follows Kafka's `ProducerStateManager`: per producer id the
//! epoch, the last sequence and the last five batches (the most a producer
//! may have in flight per partition), so a retried batch is recognised as a
//! duplicate and answered with the offset it was first written at.
//!
//! Transactions (KIP-98) leave two more things here, as in Kafka's producer
//! state and transaction index: the first offset of each producer's open
//! transaction on the partition, whose minimum is the last stable offset
//! (LSO), and the aborted transactions (producer id, first offset, offset of
//! the ABORT marker) that a `read_committed` Fetch reports so the consumer can
//! drop their records. Control batches (the COMMIT and ABORT markers) are
//! written by the transaction coordinator ([`crate::txn`]) through
//! [`PartitionLog::append_marker`].

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use crate::batch::{self, BatchHeader};

/// How many batches per producer Kafka remembers for duplicate detection,
/// which is why `max.in.flight.requests.per.connection` must be at most 5 for
/// an idempotent producer.
pub(crate) const PRODUCER_BATCH_MEMORY: usize = 5;

/// What a partition without state for a producer id says to a batch that
/// does not start at sequence 0.
///
/// Set with `set_unknown_producer` on a [`MockBroker`](crate::MockBroker) or
/// [`MockCluster`](crate::MockCluster); a broker that lost its producer state
/// ([`forget_producer_state`](crate::MockCluster::forget_producer_state)) is
/// the usual way to get there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownProducer {
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45). The default.
    #[default]
    OutOfOrderSequence,
    /// UNKNOWN_PRODUCER_ID (59), as brokers before Kafka 2.5 answered.
    UnknownProducerId,
    /// Accept the batch and start tracking from its sequence. This is what
    /// Apache Kafka 2.5+ does (`ProducerAppendInfo.checkSequence` accepts any
    /// sequence when it has no epoch on record for the producer).
    Accept,
}

/// A stored batch and the offsets it covers.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) base_offset: i64,
    /// One past the last offset in the batch.
    pub(crate) next_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) bytes: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMetadata {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    last_seq: i32,
    batches: VecDeque<BatchMetadata>,
}

/// What the sequence check says about an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Append,
    /// Already written at this base offset: answer success, append nothing.
    Duplicate(i64),
    /// Refuse with this error code.
    Refuse(i16),
}

/// A transaction that ended with an ABORT marker on this partition (Kafka's
/// `AbortedTxn`, without the LSO it also keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTxn {
    pub(crate) producer_id: i64,
    /// The offset of the transaction's first batch on this partition.
    pub(crate) first_offset: i64,
    /// The offset of its ABORT marker.
    pub(crate) last_offset: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionLog {
    start_offset: i64,
    end_offset: i64,
    entries: Vec<Entry>,
    producers: HashMap<i64, ProducerEntry>,
    /// The first offset of each producer's open transaction here (Kafka's
    /// `currentTxnFirstOffset`). Kept apart from `producers` so that
    /// forgetting the idempotence state does not unsettle the LSO.
    open_txns: HashMap<i64, i64>,
    /// Aborted transactions in the order of their markers (Kafka's
    /// transaction index).
    aborted: Vec<AbortedTxn>,
}

/// The result of reading from an offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) records: Bytes,
    /// Whole batches in `records`, so a caller can tell a partial trailing
    /// batch from a full one.
    pub(crate) batches: usize,
    /// The first offset after what was read (whole or partial batches): the
    /// upper bound of the aborted transactions a `read_committed` Fetch
    /// reports, as Kafka's `fetchUpperBoundOffset`.
    pub(crate) upper_bound: i64,
}

impl PartitionLog {
    pub(crate) fn start_offset(&self) -> i64 {
        self.start_offset
    }

    pub(crate) fn end_offset(&self) -> i64 {
        self.end_offset
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The last stable offset: the first offset of the earliest open
    /// transaction, or the high watermark (the log end offset, every replica
    /// being in sync) when none is open. Never below the log start offset.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.open_txns
            .values()
            .min()
            .map_or(self.end_offset, |first| (*first).max(self.start_offset))
    }

    /// Whether `producer_id` has a transaction open on this partition.
    pub(crate) fn has_open_txn(&self, producer_id: i64) -> bool {
        self.open_txns.contains_key(&producer_id)
    }

    /// Every aborted transaction still in the log, oldest marker first.
    pub(crate) fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// The aborted transactions a `read_committed` Fetch from `start` that
    /// read up to `upper_bound` reports: those whose marker is at or after
    /// `start` and whose first offset is before `upper_bound` (Kafka's
    /// `collectAbortedTransactions`), as (producer id, first offset).
    pub(crate) fn aborted_between(&self, start: i64, upper_bound: i64) -> Vec<(i64, i64)> {
        self.aborted
            .iter()
            .filter(|txn| txn.last_offset >= start && txn.first_offset < upper_bound)
            .map(|txn| (txn.producer_id, txn.first_offset))
            .collect()
    }

    /// Appends a batch at the log end offset, rewriting its base offset and
    /// stamping `leader_epoch`, and returns the base offset.
    pub(crate) fn append(&mut self, batch: &[u8], leader_epoch: i32) -> i64 {
        let mut bytes = batch.to_vec();
        let base_offset = self.end_offset;
        batch::set_base_offset(&mut bytes, base_offset);
        batch::set_partition_leader_epoch(&mut bytes, leader_epoch);
        let header = BatchHeader::parse(&bytes);
        let span = header.map_or(1, |h| i64::from(h.last_offset_delta.max(0)) + 1);
        self.push(Entry {
            base_offset,
            next_offset: base_offset + span,
            max_timestamp: header.map_or(-1, |h| h.max_timestamp),
            leader_epoch,
            bytes: Bytes::from(bytes),
        });
        base_offset
    }

    /// Stores `bytes` untouched at the log end offset. They cover as many
    /// offsets as their header claims (last offset delta + 1), or one when
    /// they are too short or claim nonsense.
    pub(crate) fn append_raw(&mut self, bytes: Bytes) -> i64 {
        let base_offset = self.end_offset;
        let field = |range: std::ops::Range<usize>| bytes.get(range);
        let span = field(23..27)
            .map(|d| i32::from_be_bytes([d[0], d[1], d[2], d[3]]))
            .filter(|delta| *delta >= 0)
            .map_or(1, |delta| i64::from(delta) + 1);
        let max_timestamp = field(35..43).map_or(-1, |t| {
            i64::from_be_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]])
        });
        let leader_epoch =
            field(12..16).map_or(-1, |e| i32::from_be_bytes([e[0], e[1], e[2], e[3]]));
        self.push(Entry {
            base_offset,
            next_offset: base_offset + span,
            max_timestamp,
            leader_epoch,
            bytes,
        });
        base_offset
    }

    fn push(&mut self, entry: Entry) {
        self.end_offset = entry.next_offset;
        self.entries.push(entry);
    }

    /// Moves the log start offset up to `offset` (at most the log end), as
    /// DeleteRecords does, dropping batches wholly below it. A batch that
    /// straddles the new start stays, and is still served whole.
    pub(crate) fn delete_before(&mut self, offset: i64) {
        let offset = offset.min(self.end_offset);
        if offset <= self.start_offset {
            return;
        }
        self.start_offset = offset;
        self.entries.retain(|entry| entry.next_offset > offset);
        self.aborted.retain(|txn| txn.last_offset >= offset);
    }

    /// The index of the batch holding `offset`, or of the first batch after
    /// it.
    fn position(&self, offset: i64) -> usize {
        self.entries
            .partition_point(|entry| entry.next_offset <= offset)
    }

    /// Batches from the one holding `offset`, as many whole ones as fit in
    /// `limit` bytes; the first is returned whatever its size when
    /// `min_one` (KIP-74), and with `partial` the rest of `limit` is filled
    /// with the start of the next batch, as Kafka's byte-range log reads do.
    /// Nothing at or after `max_offset` is read (the LSO of a
    /// `read_committed` fetch; `i64::MAX` for no bound). The caller checks
    /// `offset` against the log's bounds.
    pub(crate) fn read(
        &self,
        offset: i64,
        limit: usize,
        min_one: bool,
        partial: bool,
        max_offset: i64,
    ) -> Read {
        let mut out = Vec::new();
        let mut batches = 0;
        let mut upper_bound = self.end_offset;
        for entry in &self.entries[self.position(offset)..] {
            if entry.base_offset >= max_offset {
                upper_bound = entry.base_offset;
                break;
            }
            let size = entry.bytes.len();
            if out.len() + size <= limit || (min_one && batches == 0) {
                out.extend_from_slice(&entry.bytes);
                batches += 1;
                continue;
            }
            upper_bound = entry.base_offset;
            if partial {
                let room = limit.saturating_sub(out.len());
                out.extend_from_slice(&entry.bytes[..room.min(size)]);
                if room > 0 {
                    upper_bound = entry.next_offset;
                }
            }
            break;
        }
        Read {
            records: Bytes::from(out),
            batches,
            upper_bound,
        }
    }

    /// The first batch whose max timestamp is at least `timestamp`, as
    /// (base offset, max timestamp, leader epoch). Kafka answers with the
    /// exact record; the mock does not parse records, so it names the batch.
    pub(crate) fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64, i32)> {
        self.entries
            .iter()
            .find(|entry| entry.max_timestamp >= timestamp)
            .map(|entry| {
                (
                    entry.base_offset.max(self.start_offset),
                    entry.max_timestamp,
                    entry.leader_epoch,
                )
            })
    }

    /// The batch with the largest max timestamp, the earliest on a tie
    /// (KIP-734), as (base offset, max timestamp, leader epoch).
    pub(crate) fn max_timestamp(&self) -> Option<(i64, i64, i32)> {
        let mut best: Option<&Entry> = None;
        for entry in &self.entries {
            if best.is_none_or(|b| entry.max_timestamp > b.max_timestamp) {
                best = Some(entry);
            }
        }
        best.map(|entry| {
            (
                entry.base_offset.max(self.start_offset),
                entry.max_timestamp,
                entry.leader_epoch,
            )
        })
    }

    /// The leader epoch of the batch holding `offset`, if any.
    pub(crate) fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.entries
            .get(self.position(offset))
            .filter(|entry| entry.base_offset <= offset)
            .map(|entry| entry.leader_epoch)
    }

    /// Kafka's sequence checks for a batch with a producer id
    /// (`ProducerStateManager.findDuplicateBatch` and
    /// `ProducerAppendInfo.checkSequence`).
    pub(crate) fn check_sequence(
        &self,
        header: &BatchHeader,
        unknown: UnknownProducer,
    ) -> SequenceCheck {
        let first_seq = header.base_sequence;
        let last_seq = header.last_sequence();
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return match unknown {
                _ if first_seq == 0 => SequenceCheck::Append,
                UnknownProducer::Accept => SequenceCheck::Append,
                UnknownProducer::UnknownProducerId => {
                    SequenceCheck::Refuse(ResponseError::UnknownProducerId.code())
                }
                UnknownProducer::OutOfOrderSequence => {
                    SequenceCheck::Refuse(ResponseError::OutOfOrderSequenceNumber.code())
                }
            };
        };
        let out_of_order = SequenceCheck::Refuse(ResponseError::OutOfOrderSequenceNumber.code());
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::Refuse(ResponseError::InvalidProducerEpoch.code());
        }
        if header.producer_epoch > entry.epoch {
            // A new epoch restarts the sequence (KIP-360).
            return if first_seq == 0 {
                SequenceCheck::Append
            } else {
                out_of_order
            };
        }
        if let Some(duplicate) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate(duplicate.base_offset);
        }
        if first_seq == batch::increment_sequence(entry.last_seq, 1) {
            SequenceCheck::Append
        } else {
            out_of_order
        }
    }

    /// Kafka's check that follows the sequence checks
    /// (`ProducerAppendInfo.appendDataBatch`): a producer with a transaction
    /// open here may only write transactional batches (INVALID_TXN_STATE).
    pub(crate) fn check_transactional(&self, header: &BatchHeader) -> Result<(), i16> {
        if !header.is_transactional() && self.has_open_txn(header.producer_id) {
            return Err(ResponseError::InvalidTxnState.code());
        }
        Ok(())
    }

    /// Records an appended idempotent batch, resetting the producer's state
    /// when its epoch moved on; a transactional batch opens the producer's
    /// transaction here unless it is open already.
    pub(crate) fn record_producer_batch(&mut self, header: &BatchHeader, base_offset: i64) {
        if header.is_transactional() && !header.is_control() {
            self.open_txns
                .entry(header.producer_id)
                .or_insert(base_offset);
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                last_seq: -1,
                batches: VecDeque::new(),
            });
        if entry.epoch != header.producer_epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_seq = header.last_sequence();
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: entry.last_seq,
            base_offset,
        });
        while entry.batches.len() > PRODUCER_BATCH_MEMORY {
            entry.batches.pop_front();
        }
    }

    pub(crate) fn forget_producers(&mut self) {
        self.producers.clear();
    }

    /// Appends a transaction marker (a control batch, see
    /// [`crate::txn::marker`]) and settles the producer's transaction here,
    /// as Kafka's `ProducerAppendInfo.appendEndTxnMarker` does: an open
    /// transaction closes, and if it aborted it joins the aborted list (a
    /// marker with no data before it leaves nothing to report); the
    /// producer's epoch becomes the marker's, which fences an older one
    /// (INVALID_PRODUCER_EPOCH), its sequence going on. Returns the marker's
    /// offset.
    pub(crate) fn append_marker(&mut self, marker: &[u8], commit: bool, leader_epoch: i32) -> i64 {
        let offset = self.append(marker, leader_epoch);
        let Some(header) = BatchHeader::parse(marker) else {
            return offset;
        };
        let producer_id = header.producer_id;
        if let Some(first_offset) = self.open_txns.remove(&producer_id) {
            if !commit {
                self.aborted.push(AbortedTxn {
                    producer_id,
                    first_offset,
                    last_offset: offset,
                });
            }
        }
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                last_seq: -1,
                batches: VecDeque::new(),
            });
        if entry.epoch != header.producer_epoch {
            // Kafka forgets the batches of the old epoch, and with them the
            // last sequence: the new epoch starts at 0.
            entry.epoch = header.producer_epoch;
            entry.last_seq = -1;
            entry.batches.clear();
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::batch;

    fn header(b: &[u8]) -> BatchHeader {
        BatchHeader::parse(b).unwrap()
    }

    #[test]
    fn appends_assign_contiguous_offsets() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(&batch(3, -1, -1, -1), 0), 0);
        assert_eq!(log.append(&batch(2, -1, -1, -1), 4), 3);
        assert_eq!(log.end_offset(), 5);
        let second = header(&log.entries()[1].bytes);
        assert_eq!((second.base_offset, second.partition_leader_epoch), (3, 4));
    }

    #[test]
    fn reads_start_at_the_batch_holding_the_offset_and_respect_limits() {
        let mut log = PartitionLog::default();
        for _ in 0..3 {
            log.append(&batch(2, -1, -1, -1), 0);
        }
        let size = log.entries()[0].bytes.len();
        let read = log.read(3, usize::MAX, true, false, i64::MAX);
        assert_eq!(read.batches, 2, "offset 3 is inside the second batch");
        assert_eq!(header(&read.records).base_offset, 2);
        assert_eq!(
            log.read(0, size + 1, true, false, i64::MAX).records.len(),
            size
        );
        assert_eq!(
            log.read(0, 1, true, false, i64::MAX).batches,
            1,
            "KIP-74: one anyway"
        );
        assert!(log.read(0, 1, false, false, i64::MAX).records.is_empty());
        let partial = log.read(0, size + 10, true, true, i64::MAX);
        assert_eq!((partial.batches, partial.records.len()), (1, size + 10));
        assert!(log
            .read(6, usize::MAX, true, false, i64::MAX)
            .records
            .is_empty());
    }

    #[test]
    fn delete_before_moves_the_start_and_keeps_a_straddling_batch() {
        let mut log = PartitionLog::default();
        log.append(&batch(2, -1, -1, -1), 0);
        log.append(&batch(2, -1, -1, -1), 0);
        log.delete_before(3);
        assert_eq!(log.start_offset(), 3);
        assert_eq!(log.entries().len(), 1);
        log.delete_before(1);
        assert_eq!(log.start_offset(), 3, "never moves back");
        log.delete_before(99);
        assert_eq!(log.start_offset(), 4, "at most the end");
    }

    #[test]
    fn timestamps_find_batches() {
        let mut log = PartitionLog::default();
        log.append(&batch(1, -1, -1, -1), 0); // max timestamp 1001
        log.append(&batch(5, -1, -1, -1), 1); // max timestamp 1005
        log.append(&batch(2, -1, -1, -1), 2); // max timestamp 1002
        assert_eq!(log.offset_for_timestamp(0), Some((0, 1001, 0)));
        assert_eq!(log.offset_for_timestamp(1003), Some((1, 1005, 1)));
        assert_eq!(log.offset_for_timestamp(2000), None);
        assert_eq!(log.max_timestamp(), Some((1, 1005, 1)));
        assert_eq!(log.epoch_at(7), Some(2));
        assert_eq!(log.epoch_at(8), None);
    }

    #[test]
    fn raw_bytes_are_stored_untouched() {
        let mut log = PartitionLog::default();
        log.append(&batch(1, -1, -1, -1), 0);
        let raw = Bytes::from_static(b"garbage");
        assert_eq!(log.append_raw(raw.clone()), 1);
        assert_eq!(log.end_offset(), 2);
        assert_eq!(log.entries()[1].bytes, raw);
        let mut corrupt = batch(3, -1, -1, -1);
        corrupt[60] ^= 0xff;
        assert_eq!(log.append_raw(Bytes::from(corrupt)), 2);
        assert_eq!(log.end_offset(), 5, "spans what its header claims");
    }

    /// A transactional batch of `count` records.
    fn txn_batch(count: i32, producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
        let mut b = batch(count, producer_id, epoch, sequence);
        b[22] |= 0x10;
        crate::batch::tests::fix_crc(&mut b);
        b
    }

    fn write(log: &mut PartitionLog, b: &[u8]) -> i64 {
        let h = header(b);
        let offset = log.append(b, 0);
        if h.has_producer_id() {
            log.record_producer_batch(&h, offset);
        }
        offset
    }

    fn marker(log: &mut PartitionLog, producer_id: i64, epoch: i16, commit: bool) -> i64 {
        let bytes = crate::txn::marker::encode(producer_id, epoch, commit, 0, 0);
        log.append_marker(&bytes, commit, 0)
    }

    #[test]
    fn open_transactions_hold_the_last_stable_offset() {
        let mut log = PartitionLog::default();
        write(&mut log, &batch(2, -1, -1, -1)); // 0-1
        assert_eq!(log.last_stable_offset(), 2);
        write(&mut log, &txn_batch(2, 7, 0, 0)); // 2-3
        write(&mut log, &txn_batch(1, 8, 0, 0)); // 4
        write(&mut log, &txn_batch(1, 7, 0, 2)); // 5, same transaction
        write(&mut log, &batch(1, -1, -1, -1)); // 6
        assert!(log.has_open_txn(7) && log.has_open_txn(8));
        assert_eq!((log.last_stable_offset(), log.end_offset()), (2, 7));
        assert_eq!(marker(&mut log, 7, 0, true), 7);
        assert_eq!(log.last_stable_offset(), 4, "8's transaction is open");
        assert_eq!(marker(&mut log, 8, 0, false), 8);
        assert_eq!(log.last_stable_offset(), 9);
        assert_eq!(
            log.aborted(),
            [AbortedTxn {
                producer_id: 8,
                first_offset: 4,
                last_offset: 8
            }]
        );
        // A marker without data before it leaves nothing to report.
        marker(&mut log, 9, 0, false);
        assert_eq!(log.aborted().len(), 1);
        assert_eq!(log.last_stable_offset(), 10);
    }

    #[test]
    fn reads_stop_at_a_bound_and_report_aborted_transactions_in_range() {
        let mut log = PartitionLog::default();
        write(&mut log, &txn_batch(2, 7, 0, 0)); // 0-1
        marker(&mut log, 7, 0, false); // 2
        write(&mut log, &batch(1, -1, -1, -1)); // 3
        write(&mut log, &txn_batch(1, 8, 0, 0)); // 4, open
        write(&mut log, &batch(1, -1, -1, -1)); // 5
        let lso = log.last_stable_offset();
        assert_eq!(lso, 4);
        let read = log.read(0, usize::MAX, true, false, lso);
        assert_eq!((read.batches, read.upper_bound), (3, 4));
        assert_eq!(log.aborted_between(0, read.upper_bound), [(7, 0)]);
        assert_eq!(log.aborted_between(3, 4), [], "its marker is before 3");
        assert_eq!(log.aborted_between(2, 4), [(7, 0)]);
        let uncommitted = log.read(0, usize::MAX, true, false, i64::MAX);
        assert_eq!((uncommitted.batches, uncommitted.upper_bound), (5, 6));
        let at_lso = log.read(4, usize::MAX, true, false, lso);
        assert!(at_lso.records.is_empty(), "nothing at or past the LSO");
        // A byte limit ends the read early: the bound is the next batch.
        let size = log.entries()[0].bytes.len();
        let read = log.read(0, size, false, false, lso);
        assert_eq!((read.batches, read.upper_bound), (1, 2));
        assert_eq!(log.aborted_between(0, read.upper_bound), [(7, 0)]);
        let read = log.read(0, size + 5, false, true, lso);
        assert_eq!(read.upper_bound, 3, "a partial batch counts as read");
        log.delete_before(3);
        assert!(log.aborted().is_empty(), "its marker went with the log");
    }

    #[test]
    fn transactional_producers_are_checked_and_fenced_by_markers() {
        use SequenceCheck::*;
        let unknown = UnknownProducer::OutOfOrderSequence;
        let mut log = PartitionLog::default();
        write(&mut log, &txn_batch(2, 7, 0, 0));
        let plain = header(&batch(1, 7, 0, 2));
        assert_eq!(log.check_sequence(&plain, unknown), Append);
        assert_eq!(
            log.check_transactional(&plain),
            Err(48),
            "inside a transaction"
        );
        assert_eq!(
            log.check_transactional(&header(&txn_batch(1, 7, 0, 2))),
            Ok(())
        );
        // A fencing abort carries the next epoch: the old one is refused,
        // and the epoch after it starts at sequence 0.
        marker(&mut log, 7, 1, false);
        let old = header(&txn_batch(1, 7, 0, 2));
        assert_eq!(log.check_sequence(&old, unknown), Refuse(47));
        assert_eq!(
            log.check_sequence(&header(&txn_batch(1, 7, 2, 3)), unknown),
            Refuse(45)
        );
        assert_eq!(
            log.check_sequence(&header(&txn_batch(1, 7, 2, 0)), unknown),
            Append
        );
        // A commit in the same epoch keeps the sequence going.
        write(&mut log, &txn_batch(1, 8, 0, 0));
        marker(&mut log, 8, 0, true);
        assert_eq!(
            log.check_sequence(&header(&txn_batch(1, 8, 0, 1)), unknown),
            Append
        );
        assert_eq!(
            log.check_sequence(&header(&txn_batch(1, 8, 0, 0)), unknown),
            Duplicate(3)
        );
        // Forgetting the idempotence state keeps the transactions.
        write(&mut log, &txn_batch(1, 8, 0, 1));
        log.forget_producers();
        assert!(log.has_open_txn(8));
    }

    #[test]
    fn idempotent_sequences_follow_kafka() {
        use SequenceCheck::*;
        let unknown = UnknownProducer::OutOfOrderSequence;
        let mut log = PartitionLog::default();
        let write = |log: &mut PartitionLog, b: Vec<u8>| {
            let h = header(&b);
            let check = log.check_sequence(&h, unknown);
            if check == Append {
                let offset = log.append(&b, 0);
                log.record_producer_batch(&h, offset);
            }
            check
        };
        assert_eq!(
            write(&mut log, batch(2, 9, 0, 1)),
            Refuse(45),
            "unknown, not 0"
        );
        assert_eq!(write(&mut log, batch(2, 9, 0, 0)), Append);
        assert_eq!(write(&mut log, batch(2, 9, 0, 2)), Append);
        assert_eq!(write(&mut log, batch(2, 9, 0, 0)), Duplicate(0));
        assert_eq!(write(&mut log, batch(2, 9, 0, 2)), Duplicate(2));
        assert_eq!(write(&mut log, batch(2, 9, 0, 1)), Refuse(45), "overlap");
        assert_eq!(write(&mut log, batch(2, 9, 0, 5)), Refuse(45), "gap");
        assert_eq!(
            write(&mut log, batch(1, 9, 1, 3)),
            Refuse(45),
            "new epoch, not 0"
        );
        assert_eq!(write(&mut log, batch(1, 9, 1, 0)), Append);
        assert_eq!(write(&mut log, batch(1, 9, 0, 4)), Refuse(47), "old epoch");
        assert_eq!(log.end_offset(), 5);
        // Only the last five batches are remembered.
        for seq in 1..=5 {
            assert_eq!(write(&mut log, batch(1, 9, 1, seq)), Append);
        }
        assert_eq!(write(&mut log, batch(1, 9, 1, 0)), Refuse(45));
        assert_eq!(write(&mut log, batch(1, 9, 1, 1)), Duplicate(5));
        log.forget_producers();
        assert_eq!(write(&mut log, batch(1, 9, 1, 6)), Refuse(45));
        assert_eq!(
            log.check_sequence(
                &header(&batch(1, 9, 1, 6)),
                UnknownProducer::UnknownProducerId
            ),
            Refuse(59)
        );
        assert_eq!(
            log.check_sequence(&header(&batch(1, 9, 1, 6)), UnknownProducer::Accept),
            Append
        );
    }
}
