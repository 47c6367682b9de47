//! What a partition consumer hands out: a [`FetchedBatch`] (the records of one fetch of
//! one partition, sharing the fetched buffer) and [`ConsumerRecord`]s.
//!
//! The view applies three rules while iterating, so users never see what Kafka clients
//! hide: records before the position asked for (a fetch returns whole batches, which may
//! start earlier), control records (transaction markers), and, under read_committed,
//! records of aborted transactions (the Fetch response lists each aborted producer and
//! its first offset; its data is skipped until that producer's ABORT marker; KIP-98).

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::protocol::records::{ControlRecordType, Record, RecordBatch, RecordIter};

/// An aborted transaction from a Fetch response: its producer and first offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// The records of one fetch of one partition. Cheap to iterate; keys and values are
/// slices of the fetched buffer (no copy). Holding it holds its share of
/// `queued.max.bytes`.
pub struct FetchedBatch {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) batches: Vec<RecordBatch>,
    /// Records below this offset are skipped.
    pub(crate) position: i64,
    pub(crate) high_watermark: i64,
    /// `Some` under read_committed, sorted by first offset.
    pub(crate) aborted: Option<Vec<AbortedTransaction>>,
    pub(crate) _memory: Option<super::memory::QueuedGuard>,
}

impl std::fmt::Debug for FetchedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedBatch")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("batches", &self.batches.len())
            .field("position", &self.position)
            .field("next_offset", &self.next_offset())
            .finish()
    }
}

impl FetchedBatch {
    /// The topic the records are from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition the records are from.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The partition's high watermark when this was fetched.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The offset after the last record of this fetch: where consumption continues.
    pub fn next_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.position, |b| b.next_offset().max(self.position))
    }

    /// The record batches as fetched (before skipping), for callers that want the
    /// borrowing fast path ([`RecordIter::next_ref`]) and do their own filtering.
    pub(crate) fn record_batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The records, in offset order, with the rules of the module docs applied.
    pub fn iter(&self) -> FetchedRecords<'_> {
        FetchedRecords {
            batch: self,
            cursor: RecordCursor::default(),
        }
    }

    /// Whether no record in it is for the user (all skipped or control).
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<'a> IntoIterator for &'a FetchedBatch {
    type Item = Result<Record>;
    type IntoIter = FetchedRecords<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`FetchedBatch`]'s records. A record that fails to decode is an
/// error naming topic, partition and offset; iteration ends after it.
pub struct FetchedRecords<'a> {
    batch: &'a FetchedBatch,
    cursor: RecordCursor,
}

impl Iterator for FetchedRecords<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.cursor.next(self.batch)
    }
}

/// Where an iteration over a [`FetchedBatch`] stands, kept apart from the batch so a
/// stream can own both.
#[derive(Debug, Default)]
pub(crate) struct RecordCursor {
    index: usize,
    records: Option<RecordIter>,
    /// Producers whose aborted transaction is open at the current position.
    aborting: HashSet<i64>,
    next_aborted: usize,
}

impl RecordCursor {
    pub(crate) fn next(&mut self, batch: &FetchedBatch) -> Option<Result<Record>> {
        loop {
            if let Some(records) = &mut self.records {
                match records.next() {
                    Some(Ok(record)) if record.offset() < batch.position => continue,
                    Some(Ok(record)) => return Some(Ok(record)),
                    Some(Err(err)) => {
                        let offset = batch.batches[self.index - 1].base_offset();
                        self.records = None;
                        self.index = batch.batches.len();
                        return Some(Err(Error::from(err)
                            .with_topic(&*batch.topic)
                            .with_partition(batch.partition)
                            .with_offset(offset)));
                    }
                    None => self.records = None,
                }
            }
            if !self.next_batch(batch) {
                return None;
            }
        }
    }

    /// Moves to the next record batch holding user records; `false` at the end.
    fn next_batch(&mut self, fetched: &FetchedBatch) -> bool {
        while let Some(batch) = fetched.batches.get(self.index) {
            self.index += 1;
            if batch.next_offset() <= fetched.position {
                continue;
            }
            if let Some(aborted) = &fetched.aborted {
                while let Some(t) = aborted.get(self.next_aborted) {
                    if t.first_offset > batch.last_offset() {
                        break;
                    }
                    self.aborting.insert(t.producer_id);
                    self.next_aborted += 1;
                }
                if batch.is_control() {
                    if let Some(Ok(marker)) = batch.control_record() {
                        if marker.kind == ControlRecordType::Abort {
                            self.aborting.remove(&batch.producer_id());
                        }
                    }
                    continue;
                }
                if batch.is_transactional() && self.aborting.contains(&batch.producer_id()) {
                    continue;
                }
            } else if batch.is_control() {
                continue;
            }
            self.records = Some(batch.records());
            return true;
        }
        false
    }
}

/// A record with the topic and partition it came from. Dereferences to the
/// [`Record`] (offset, timestamp, key, value, headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    topic: Arc<str>,
    partition: i32,
    record: Record,
}

impl ConsumerRecord {
    /// `record` as read from `topic`'s `partition`. Consumers build these; build one
    /// yourself to test code that takes records (a handler's or a
    /// [`Processor`](crate::Processor)'s work) without a broker.
    ///
    /// ```
    /// use josefine::{ConsumerRecord, Record};
    ///
    /// let record = Record::new(42, 1_700_000_000_000, Some("k".into()), Some("v".into()), vec![]);
    /// let record = ConsumerRecord::new("orders", 3, record);
    /// assert_eq!((record.topic(), record.partition(), record.offset()), ("orders", 3, 42));
    /// ```
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, record: Record) -> Self {
        Self {
            topic: topic.into(),
            partition,
            record,
        }
    }

    /// The record's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The record's partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record without its topic and partition.
    pub fn into_record(self) -> Record {
        self.record
    }
}

impl Deref for ConsumerRecord {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::{batches, BatchBuilder, ControlRecord, DecodeOptions};
    use bytes::Bytes;

    fn data_batch(base: i64, values: &[&str], producer: Option<i64>) -> Bytes {
        let mut b = BatchBuilder::new().base_offset(base);
        if let Some(pid) = producer {
            b = b.producer(pid, 0, 0).transactional(true);
        }
        for v in values {
            b.push(0, None, Some(v.as_bytes()), &[]).unwrap();
        }
        b.finish().unwrap()
    }

    fn marker(base: i64, pid: i64, kind: ControlRecordType) -> Bytes {
        let mut b = BatchBuilder::new()
            .base_offset(base)
            .producer(pid, 0, 0)
            .transactional(true)
            .control(true);
        let key = ControlRecord { version: 0, kind }.key_bytes();
        b.push(0, Some(&key), Some(&[0, 0, 0, 0, 0, 0]), &[])
            .unwrap();
        b.finish().unwrap()
    }

    fn fetched(
        parts: &[Bytes],
        position: i64,
        aborted: Option<Vec<AbortedTransaction>>,
    ) -> FetchedBatch {
        let all = Bytes::from(parts.iter().flat_map(|p| p.to_vec()).collect::<Vec<u8>>());
        FetchedBatch {
            topic: Arc::from("t"),
            partition: 0,
            batches: batches(all, &DecodeOptions::default())
                .map(|b| b.unwrap())
                .collect(),
            position,
            high_watermark: 100,
            aborted,
            _memory: None,
        }
    }

    fn values(batch: &FetchedBatch) -> Vec<String> {
        batch
            .iter()
            .map(|r| String::from_utf8(r.unwrap().value().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn records_before_the_position_are_skipped() {
        let b = fetched(
            &[
                data_batch(0, &["a", "b", "c"], None),
                data_batch(3, &["d"], None),
            ],
            2,
            None,
        );
        assert_eq!(values(&b), ["c", "d"]);
        assert_eq!(b.next_offset(), 4);
    }

    #[test]
    fn control_records_are_hidden() {
        let b = fetched(
            &[
                data_batch(0, &["a"], Some(7)),
                marker(1, 7, ControlRecordType::Commit),
                data_batch(2, &["b"], None),
            ],
            0,
            None,
        );
        assert_eq!(values(&b), ["a", "b"]);
        assert_eq!(b.next_offset(), 3);
    }

    #[test]
    fn read_committed_drops_aborted_transactions_only() {
        let aborted = vec![AbortedTransaction {
            producer_id: 7,
            first_offset: 0,
        }];
        let b = fetched(
            &[
                data_batch(0, &["aborted-1"], Some(7)),
                data_batch(1, &["committed"], Some(8)),
                data_batch(2, &["aborted-2"], Some(7)),
                marker(3, 7, ControlRecordType::Abort),
                data_batch(4, &["after-abort"], Some(7)),
                marker(5, 8, ControlRecordType::Commit),
            ],
            0,
            Some(aborted),
        );
        assert_eq!(values(&b), ["committed", "after-abort"]);
    }

    #[test]
    fn a_corrupt_record_is_an_error_with_its_offset() {
        let mut bytes = data_batch(10, &["a", "b"], None).to_vec();
        // Break the record count so the records section ends early.
        bytes[60] = 9;
        let batch = crate::protocol::records::batches(
            Bytes::from(bytes),
            &DecodeOptions {
                verify_crc: false,
                ..DecodeOptions::default()
            },
        )
        .next()
        .unwrap()
        .unwrap();
        let b = FetchedBatch {
            topic: Arc::from("t"),
            partition: 3,
            batches: vec![batch],
            position: 10,
            high_watermark: 12,
            aborted: None,
            _memory: None,
        };
        let results: Vec<_> = b.iter().collect();
        let err = results.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.context().partition(), Some(3));
        assert_eq!(err.context().offset(), Some(10));
    }
}
