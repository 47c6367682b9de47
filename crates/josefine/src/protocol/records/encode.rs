//! Encoding: [`BatchBuilder`] writes the records of one partition's produce into exactly
//! one v2 batch.
//!
//! Records are appended, already in wire form, to one buffer that starts with 61 bytes
//! reserved for the batch header; `finish` compresses the records section once (or, for
//! an uncompressed batch, fills the header in place, copying nothing), then computes the
//! CRC32C over attributes..end as Kafka's `DefaultRecordBatch` does.

use bytes::Bytes;

use super::decode::at;
use super::varint::{varint_len, varlong_len, write_varint, write_varlong};
use super::{
    compress, Compression, Header, RecordError, TimestampType, LOG_OVERHEAD, MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    RECORD_BATCH_OVERHEAD,
};

/// Builds one record batch (magic v2).
///
/// ```
/// use josefine::protocol::records::{batches, BatchBuilder, Compression, DecodeOptions, Header};
///
/// let mut builder = BatchBuilder::new().compression(Compression::Zstd, Some(3));
/// builder.push(1_700_000_000_000, Some(b"key"), Some(b"value"), &[Header::new("trace", None)])?;
/// let batch = builder.finish()?;
///
/// let decoded = batches(batch, &DecodeOptions::default()).next().unwrap()?;
/// assert_eq!(decoded.records().next().unwrap()?.value().unwrap(), "value");
/// # Ok::<(), josefine::protocol::records::RecordError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    timestamp_type: TimestampType,
    compression: Compression,
    level: Option<i32>,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
    /// The reserved header, then the uncompressed records.
    buf: Vec<u8>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes room for `more` bytes, growing by half again rather than doubling: a
/// producer keeps a batch open per partition, and with 10,000 partitions each holding
/// a few KB, doubling's slack (up to half of every buffer) was about 4 MiB of the
/// producer's peak RSS.
fn grow(buf: &mut Vec<u8>, more: usize) {
    if buf.capacity() - buf.len() < more {
        buf.reserve_exact(more.max(buf.capacity() / 2));
    }
}

impl BatchBuilder {
    /// An empty, uncompressed, non-idempotent batch at base offset 0.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Like [`new`](Self::new), with room for `bytes` of batch (e.g. the producer's
    /// `batch.size`) so pushes do not reallocate.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(RECORD_BATCH_OVERHEAD));
        buf.resize(RECORD_BATCH_OVERHEAD, 0);
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
            timestamp_type: TimestampType::CreateTime,
            compression: Compression::None,
            level: None,
            base_timestamp: 0,
            max_timestamp: 0,
            record_count: 0,
            buf,
        }
    }

    /// `baseOffset`. Default 0, which is what producers send; the leader assigns offsets.
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// `partitionLeaderEpoch`. Default -1, which is what producers send.
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// The idempotent producer's id, epoch and the sequence of the first record (KIP-98).
    /// Default -1/-1/-1 (not idempotent). May be set right before `finish`, when the
    /// sender knows the sequence.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as part of a transaction (attribute bit 4). Default false.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Marks the batch as a control batch (attribute bit 5), whose single record carries a
    /// [`ControlRecord`](super::ControlRecord) key. Brokers write these; the flag exists for
    /// mock brokers and tests. Default false.
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// The timestamp type bit. Default [`TimestampType::CreateTime`].
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }

    /// The codec (`compression.type`) and level (`compression.<codec>.level`; `None` for the
    /// codec's default). The level is checked by [`finish`](Self::finish) (against
    /// [`Compression::level_range`]). Default [`Compression::None`].
    pub fn compression(mut self, compression: Compression, level: Option<i32>) -> Self {
        self.compression = compression;
        self.level = level;
        self
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// No record pushed yet.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Size of the batch if it were finished uncompressed now: exact for
    /// [`Compression::None`], an upper bound (but for a few bytes of framing on
    /// incompressible data) for the other codecs. This is what a producer compares with
    /// `batch.size`.
    pub fn estimated_size(&self) -> usize {
        self.buf.len()
    }

    /// The most bytes [`push`](Self::push) can add for a record with these fields, whatever
    /// its timestamp and position: for checking `batch.size` before pushing.
    pub fn record_size_upper_bound(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        // Length prefix and offset delta up to 5 bytes, timestamp delta up to 10.
        let nullable = |b: Option<&[u8]>| 5 + b.map_or(0, <[u8]>::len);
        5 + 1
            + 10
            + 5
            + nullable(key)
            + nullable(value)
            + 5
            + headers
                .iter()
                .map(|h| nullable(Some(&h.key)) + nullable(h.value.as_deref()))
                .sum::<usize>()
    }

    /// Appends a record with this timestamp (ms), key, value and headers (in order,
    /// duplicates allowed). The record's offset is the next offset of the batch.
    ///
    /// Fails only on the wire format's limits (more than `i32::MAX` records, a field or
    /// record longer than `i32::MAX`), leaving the builder unchanged.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), RecordError> {
        let offset_delta = self.record_count;
        if offset_delta == i32::MAX {
            return Err(RecordError::TooLarge {
                what: "more than i32::MAX records",
            });
        }
        let base_timestamp = if offset_delta == 0 {
            timestamp
        } else {
            self.base_timestamp
        };
        // Java computes the same difference in wrapping long arithmetic, and the decoder
        // adds it back the same way, so every i64 timestamp survives the round trip.
        let timestamp_delta = timestamp.wrapping_sub(base_timestamp);

        let field = |b: Option<&[u8]>| -> Result<usize, RecordError> {
            match b {
                None => Ok(1),
                Some(b) => {
                    let len = i32::try_from(b.len()).map_err(|_| RecordError::TooLarge {
                        what: "field longer than i32::MAX",
                    })?;
                    Ok(varint_len(len) + b.len())
                }
            }
        };
        let header_count = i32::try_from(headers.len()).map_err(|_| RecordError::TooLarge {
            what: "more than i32::MAX headers",
        })?;
        let mut body = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + field(key)?
            + field(value)?
            + varint_len(header_count);
        for h in headers {
            body += field(Some(&h.key))? + field(h.value.as_deref())?;
        }
        let body = i32::try_from(body).map_err(|_| RecordError::TooLarge {
            what: "record longer than i32::MAX",
        })?;

        let buf = &mut self.buf;
        grow(buf, varint_len(body) + body as usize);
        write_varint(buf, body);
        buf.push(0); // record attributes: none defined in v2
        write_varlong(buf, timestamp_delta);
        write_varint(buf, offset_delta);
        put_nullable(buf, key);
        put_nullable(buf, value);
        write_varint(buf, header_count);
        for h in headers {
            put_nullable(buf, Some(&h.key));
            put_nullable(buf, h.value.as_deref());
        }

        self.base_timestamp = base_timestamp;
        self.max_timestamp = if offset_delta == 0 {
            timestamp
        } else {
            self.max_timestamp.max(timestamp)
        };
        self.record_count += 1;
        Ok(())
    }

    /// Writes the batch: compresses the records once, fills in the header and CRC32C.
    pub fn finish(self) -> Result<Bytes, RecordError> {
        if self.record_count == 0 {
            return Err(RecordError::EmptyBatch);
        }
        self.compression.check_level(self.level)?;
        let mut out = if self.compression == Compression::None {
            self.buf
        } else {
            let records = &self.buf[RECORD_BATCH_OVERHEAD..];
            let mut out = Vec::with_capacity(RECORD_BATCH_OVERHEAD + records.len() / 2);
            out.resize(RECORD_BATCH_OVERHEAD, 0);
            compress(self.compression, self.level, records, &mut out)?;
            out
        };
        let length =
            i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| RecordError::TooLarge {
                what: "batch longer than i32::MAX",
            })?;

        let mut attributes = i16::from(self.compression.id());
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= 0x08;
        }
        if self.transactional {
            attributes |= 0x10;
        }
        if self.control {
            attributes |= 0x20;
        }

        let h = &mut out[..RECORD_BATCH_OVERHEAD];
        put(h, at::BASE_OFFSET, &self.base_offset.to_be_bytes());
        put(h, at::LENGTH, &length.to_be_bytes());
        put(
            h,
            at::PARTITION_LEADER_EPOCH,
            &self.partition_leader_epoch.to_be_bytes(),
        );
        h[at::MAGIC] = MAGIC_V2 as u8;
        put(h, at::ATTRIBUTES, &attributes.to_be_bytes());
        put(
            h,
            at::LAST_OFFSET_DELTA,
            &(self.record_count - 1).to_be_bytes(),
        );
        put(h, at::BASE_TIMESTAMP, &self.base_timestamp.to_be_bytes());
        put(h, at::MAX_TIMESTAMP, &self.max_timestamp.to_be_bytes());
        put(h, at::PRODUCER_ID, &self.producer_id.to_be_bytes());
        put(h, at::PRODUCER_EPOCH, &self.producer_epoch.to_be_bytes());
        put(h, at::BASE_SEQUENCE, &self.base_sequence.to_be_bytes());
        put(h, at::RECORD_COUNT, &self.record_count.to_be_bytes());
        let crc = crc32c::crc32c(&out[at::ATTRIBUTES..]);
        put(&mut out, at::CRC, &crc.to_be_bytes());
        Ok(Bytes::from(out))
    }
}

/// A copy of an encoded batch with new producer id, epoch and base sequence, and its
/// CRC recomputed. An idempotent producer needs this when it retries a batch after an
/// epoch bump (KIP-360): the records and their compression stay exactly as they were.
pub fn restamp_producer(
    batch: &[u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, RecordError> {
    if batch.len() < RECORD_BATCH_OVERHEAD {
        return Err(RecordError::UnexpectedEof {
            context: "batch header",
        });
    }
    let mut out = batch.to_vec();
    put(&mut out, at::PRODUCER_ID, &producer_id.to_be_bytes());
    put(&mut out, at::PRODUCER_EPOCH, &producer_epoch.to_be_bytes());
    put(&mut out, at::BASE_SEQUENCE, &base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&out[at::ATTRIBUTES..]);
    put(&mut out, at::CRC, &crc.to_be_bytes());
    Ok(Bytes::from(out))
}

#[inline]
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A length-prefixed nullable field; lengths were checked against `i32::MAX` by `push`.
#[inline]
fn put_nullable(buf: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => write_varint(buf, -1),
        Some(b) => {
            write_varint(buf, b.len() as i32);
            buf.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod restamp_tests {
    use super::*;
    use crate::protocol::records::{batches, DecodeOptions};

    #[test]
    fn restamp_changes_producer_fields_and_keeps_a_valid_crc() {
        let mut b = BatchBuilder::new()
            .producer(7, 0, 10)
            .compression(Compression::Lz4, None);
        b.push(1, Some(b"k"), Some(b"v"), &[]).unwrap();
        let original = b.finish().unwrap();
        let restamped = restamp_producer(&original, 7, 1, 0).unwrap();
        let batch = batches(restamped.clone(), &DecodeOptions::default())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                batch.producer_id(),
                batch.producer_epoch(),
                batch.base_sequence()
            ),
            (7, 1, 0)
        );
        assert_eq!(
            batch.records().next().unwrap().unwrap().value().unwrap(),
            "v"
        );
        assert_eq!(restamped[61..], original[61..], "records untouched");
        assert!(restamp_producer(&original[..20], 1, 1, 1).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::{batches, DecodeOptions, Record, RecordBatch};
    use kafka_protocol::records::{
        Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType as KpTimestampType,
    };
    use proptest::prelude::*;

    /// A record as the tests describe it: timestamp, key, value, headers.
    type Spec = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn headers_of(spec: &[(String, Option<Vec<u8>>)]) -> Vec<Header> {
        spec.iter()
            .map(|(k, v)| Header::new(k, v.as_deref()))
            .collect()
    }

    fn build(builder: BatchBuilder, specs: &[Spec]) -> Bytes {
        let mut b = builder;
        for (ts, k, v, h) in specs {
            b.push(*ts, k.as_deref(), v.as_deref(), &headers_of(h))
                .unwrap();
        }
        b.finish().unwrap()
    }

    fn decode_one(data: Bytes) -> (RecordBatch, Vec<Record>) {
        let mut it = batches(data, &DecodeOptions::default());
        let batch = it.next().unwrap().unwrap();
        assert!(it.next().is_none(), "exactly one batch");
        assert_eq!(it.truncated_bytes(), 0);
        let records = batch.records().collect::<Result<Vec<_>, _>>().unwrap();
        (batch, records)
    }

    fn assert_matches(records: &[Record], specs: &[Spec], base_offset: i64) {
        assert_eq!(records.len(), specs.len());
        for (i, (r, (ts, k, v, h))) in records.iter().zip(specs).enumerate() {
            assert_eq!(r.offset(), base_offset.wrapping_add(i as i64));
            assert_eq!(r.timestamp(), *ts);
            assert_eq!(r.key().map(|b| b.to_vec()), *k);
            assert_eq!(r.value().map(|b| b.to_vec()), *v);
            let got: Vec<(String, Option<Vec<u8>>)> = r
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.key_str().unwrap().to_owned(),
                        h.value().map(|v| v.to_vec()),
                    )
                })
                .collect();
            assert_eq!(&got, h);
        }
    }

    fn mixed_specs() -> Vec<Spec> {
        vec![
            (
                1_000,
                Some(b"key".to_vec()),
                Some(vec![7u8; 300]),
                vec![
                    ("dup".into(), Some(b"first".to_vec())),
                    ("other".into(), None),
                    ("dup".into(), Some(b"second".to_vec())),
                    ("dup".into(), Some(Vec::new())),
                ],
            ),
            (999, None, None, vec![]),
            (5_000, Some(Vec::new()), Some(Vec::new()), vec![]),
            (-3, None, Some(b"negative timestamp".to_vec()), vec![]),
        ]
    }

    #[test]
    fn round_trip_every_codec_and_level() {
        let specs = mixed_specs();
        for c in Compression::built() {
            let mut levels = vec![None];
            if let Some(range) = c.level_range() {
                levels.extend([Some(*range.start().max(&-3)), Some(*range.end())]);
            }
            for level in levels {
                let data = build(
                    BatchBuilder::new().base_offset(42).compression(c, level),
                    &specs,
                );
                let (batch, records) = decode_one(data);
                assert_eq!(batch.compression(), c);
                assert_eq!(batch.base_timestamp(), 1_000, "the first record's");
                assert_eq!(batch.max_timestamp(), 5_000);
                assert_eq!(batch.last_offset_delta(), 3);
                assert_eq!(batch.record_count(), 4);
                assert_matches(&records, &specs, 42);
            }
        }
    }

    #[test]
    fn duplicate_headers_keep_order() {
        let specs = mixed_specs();
        let (_, records) = decode_one(build(BatchBuilder::new(), &specs));
        let keys: Vec<_> = records[0]
            .headers()
            .iter()
            .map(|h| h.key_str().unwrap())
            .collect();
        assert_eq!(keys, ["dup", "other", "dup", "dup"]);
        assert_eq!(
            records[0].last_header("dup").unwrap().value().unwrap(),
            &b""[..]
        );
    }

    #[test]
    fn batch_attributes_round_trip() {
        let data = build(
            BatchBuilder::new()
                .producer(77, 4, 1_000)
                .transactional(true)
                .partition_leader_epoch(9)
                .timestamp_type(TimestampType::LogAppendTime),
            &mixed_specs(),
        );
        let (batch, records) = decode_one(data);
        assert!(batch.is_transactional());
        assert!(!batch.is_control());
        assert_eq!(batch.producer_id(), 77);
        assert_eq!(batch.producer_epoch(), 4);
        assert_eq!(batch.base_sequence(), 1_000);
        assert_eq!(batch.partition_leader_epoch(), 9);
        assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
        assert!(records.iter().all(|r| r.timestamp() == 5_000));
    }

    #[test]
    fn empty_batch_and_bad_level_are_errors() {
        assert_eq!(
            BatchBuilder::new().finish().unwrap_err(),
            RecordError::EmptyBatch
        );
        let mut b = BatchBuilder::new().compression(Compression::Snappy, Some(1));
        b.push(0, None, None, &[]).unwrap();
        assert_eq!(
            b.finish().unwrap_err(),
            RecordError::InvalidCompressionLevel {
                codec: Compression::Snappy,
                level: 1
            }
        );
    }

    /// A batch's buffer holds at most half again its bytes (and one record): with
    /// doubling, a batch just past a step held twice its bytes.
    #[test]
    fn a_growing_batch_holds_little_spare_room() {
        let mut b = BatchBuilder::new();
        while b.buf.len() < 64 << 10 {
            b.push(0, Some(b"key"), Some(&[7; 100]), &[]).unwrap();
            let (len, room) = (b.buf.len(), b.buf.capacity());
            assert!(room <= len * 3 / 2 + 128, "{room} bytes for {len}");
        }
    }

    #[test]
    fn sizes_are_tracked() {
        let mut b = BatchBuilder::with_capacity(16 << 10);
        assert!(b.is_empty());
        assert_eq!(b.estimated_size(), RECORD_BATCH_OVERHEAD);
        let headers = [Header::new("a", Some(b"b"))];
        for i in 0..10 {
            let before = b.estimated_size();
            let bound =
                BatchBuilder::record_size_upper_bound(Some(b"k"), Some(&[1; 100]), &headers);
            b.push(i * 1_000_000_007, Some(b"k"), Some(&[1; 100]), &headers)
                .unwrap();
            assert!(b.estimated_size() - before <= bound);
        }
        assert_eq!(b.record_count(), 10);
        let estimate = b.estimated_size();
        assert_eq!(b.finish().unwrap().len(), estimate);
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let specs: Vec<Spec> = [i64::MIN, i64::MAX, 0, -1, i64::MIN]
            .into_iter()
            .map(|ts| (ts, None, Some(b"v".to_vec()), vec![]))
            .collect();
        let (batch, records) = decode_one(build(BatchBuilder::new(), &specs));
        assert_eq!(batch.max_timestamp(), i64::MAX);
        assert_matches(&records, &specs, 0);
    }

    /// The wire layout, byte by byte, for one small batch. Field values are chosen so
    /// each is recognisable. The CRC was checked with a bitwise CRC32C (Castagnoli,
    /// reflected 0x82F63B78) outside this code, and kafka-protocol's
    /// decoder (which checks it) accepts the bytes.
    #[rustfmt::skip]
    const PINNED: [u8; 85] = [
        0, 0, 0, 0, 0, 0, 0, 5,             // base offset 5
        0, 0, 0, 73,                        // batch length: 49 + 24 bytes of records
        0, 0, 0, 7,                         // partition leader epoch 7
        2,                                  // magic
        0x3e, 0xb0, 0x23, 0x0d,             // CRC32C of attributes..end (checked by hand)
        0, 0x10,                            // attributes: transactional, no codec
        0, 0, 0, 1,                         // last offset delta
        0, 0, 0x01, 0x74, 0x87, 0x6e, 0x80, 0x00, // base timestamp 1_600_000_000_000
        0, 0, 0x01, 0x74, 0x87, 0x6e, 0x80, 0x05, // max timestamp (+5)
        0, 0, 0, 0, 0, 0, 0x04, 0xd2,       // producer id 1234
        0, 2,                               // producer epoch 2
        0, 0, 0, 10,                        // base sequence 10
        0, 0, 0, 2,                         // record count
        // record 0: length 16 (zigzag 32), attributes, ts delta 0, offset delta 0,
        // key "k", value "hello", one header "h" = "v".
        0x20, 0, 0, 0, 0x02, b'k', 0x0a, b'h', b'e', b'l', b'l', b'o', 0x02, 0x02, b'h', 0x02, b'v',
        // record 1: length 6, attributes, ts delta 5, offset delta 1, null key, empty
        // value, no headers.
        0x0c, 0, 0x0a, 0x02, 0x01, 0x00, 0x00,
    ];

    fn pinned_builder() -> BatchBuilder {
        let mut b = BatchBuilder::new()
            .base_offset(5)
            .partition_leader_epoch(7)
            .producer(1234, 2, 10)
            .transactional(true);
        b.push(
            1_600_000_000_000,
            Some(b"k"),
            Some(b"hello"),
            &[Header::new("h", Some(b"v"))],
        )
        .unwrap();
        b.push(1_600_000_000_005, None, Some(b""), &[]).unwrap();
        b
    }

    #[test]
    fn wire_layout_is_pinned() {
        let data = pinned_builder().finish().unwrap();
        assert_eq!(&data[..], &PINNED[..]);
        let crc = crc32c::crc32c(&PINNED[at::ATTRIBUTES..]);
        assert_eq!(PINNED[at::CRC..at::CRC + 4], crc.to_be_bytes());

        let mut buf = Bytes::from_static(&PINNED);
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        assert_eq!(sets.len(), 1);
        let r = &sets[0].records;
        assert_eq!(r.len(), 2);
        assert!(r[0].transactional);
        assert_eq!(
            (r[0].producer_id, r[0].producer_epoch, r[0].sequence),
            (1234, 2, 10)
        );
        assert_eq!(r[1].sequence, 11);
        assert_eq!(r[0].partition_leader_epoch, 7);
        assert_eq!((r[0].offset, r[1].offset), (5, 6));
        assert_eq!(r[1].timestamp, 1_600_000_000_005);
        assert_eq!(r[0].value.as_deref(), Some(&b"hello"[..]));
        assert_eq!(r[1].key, None);
        assert_eq!(r[1].value.as_deref(), Some(&b""[..]));
        assert_eq!(
            r[0].headers.get(b"h".as_slice()).cloned(),
            Some(Some(Bytes::from_static(b"v")))
        );
    }

    // ---- property tests ----

    fn header_strategy() -> impl Strategy<Value = (String, Option<Vec<u8>>)> {
        // A three-letter alphabet makes duplicate keys common.
        (
            "[abc]{0,2}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        )
    }

    fn spec_strategy(
        unique_headers: bool,
        timestamps: std::ops::Range<i64>,
    ) -> impl Strategy<Value = Spec> {
        (
            timestamps,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            proptest::collection::vec(header_strategy(), 0..5),
        )
            .prop_map(move |(ts, k, v, mut h)| {
                if unique_headers {
                    let mut seen = std::collections::HashSet::new();
                    h.retain(|(key, _)| seen.insert(key.clone()));
                }
                (ts, k, v, h)
            })
    }

    fn codec_strategy() -> impl Strategy<Value = Compression> {
        proptest::sample::select(Compression::built().collect::<Vec<_>>())
    }

    /// Timestamps and offsets kafka-protocol can handle: it adds deltas without wrapping.
    const SANE_TIMESTAMPS: std::ops::Range<i64> = 0..(1 << 45);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_batches_round_trip(
            specs in proptest::collection::vec(spec_strategy(false, i64::MIN..i64::MAX), 1..20),
            codec in codec_strategy(),
            base_offset: i64,
            producer in (any::<i64>(), any::<i16>(), any::<i32>()),
            transactional: bool,
        ) {
            let builder = BatchBuilder::new()
                .base_offset(base_offset)
                .producer(producer.0, producer.1, producer.2)
                .transactional(transactional)
                .compression(codec, None);
            let (batch, records) = decode_one(build(builder, &specs));
            prop_assert_eq!(batch.compression(), codec);
            prop_assert_eq!(batch.is_transactional(), transactional);
            prop_assert_eq!(batch.producer_id(), producer.0);
            prop_assert_eq!(batch.producer_epoch(), producer.1);
            prop_assert_eq!(batch.base_sequence(), producer.2);
            prop_assert_eq!(batch.max_timestamp(), specs.iter().map(|s| s.0).max().unwrap());
            assert_matches(&records, &specs, base_offset);
            let mut it = batch.records();
            let mut borrowed = Vec::new();
            while let Some(r) = it.next_ref() {
                borrowed.push(r.unwrap().to_record());
            }
            prop_assert_eq!(borrowed, records);
        }

        #[test]
        fn every_truncation_of_a_random_batch_is_clean(
            specs in proptest::collection::vec(spec_strategy(false, SANE_TIMESTAMPS), 1..4),
            codec in codec_strategy(),
        ) {
            let data = build(BatchBuilder::new().compression(codec, None), &specs);
            for cut in 0..data.len() {
                let mut it = batches(data.slice(..cut), &DecodeOptions::default());
                prop_assert!(it.next().is_none());
                prop_assert_eq!(it.truncated_bytes(), cut);
            }
        }

        #[test]
        fn kafka_protocol_decodes_ours(
            specs in proptest::collection::vec(spec_strategy(true, SANE_TIMESTAMPS), 1..20),
            base_offset in 0i64..(1 << 40),
            producer in (any::<i64>(), any::<i16>(), 0i32..(1 << 30)),
            transactional: bool,
        ) {
            let builder = BatchBuilder::new()
                .base_offset(base_offset)
                .producer(producer.0, producer.1, producer.2)
                .transactional(transactional);
            let mut data = build(builder, &specs);
            let sets = RecordBatchDecoder::decode_all(&mut data).unwrap();
            prop_assert_eq!(sets.len(), 1);
            let theirs = &sets[0].records;
            prop_assert_eq!(theirs.len(), specs.len());
            for (i, (r, (ts, k, v, h))) in theirs.iter().zip(&specs).enumerate() {
                prop_assert_eq!(r.offset, base_offset + i as i64);
                prop_assert_eq!(r.timestamp, *ts);
                prop_assert_eq!(r.sequence, producer.2 + i as i32);
                prop_assert_eq!(r.producer_id, producer.0);
                prop_assert_eq!(r.producer_epoch, producer.1);
                prop_assert_eq!(r.transactional, transactional);
                prop_assert_eq!(r.key.as_ref().map(|b| b.to_vec()), k.clone());
                prop_assert_eq!(r.value.as_ref().map(|b| b.to_vec()), v.clone());
                let got: Vec<(String, Option<Vec<u8>>)> = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec())))
                    .collect();
                prop_assert_eq!(&got, h);
            }
        }

        #[test]
        fn ours_decodes_kafka_protocol(
            specs in proptest::collection::vec(spec_strategy(true, SANE_TIMESTAMPS), 1..20),
            base_offset in 0i64..(1 << 40),
            producer in (any::<i64>(), any::<i16>()),
            contiguous_sequences: bool,
            transactional: bool,
        ) {
            // Equal offset-minus-sequence keeps kafka-protocol to one batch; otherwise it
            // writes one batch per record.
            let records: Vec<KpRecord> = specs
                .iter()
                .enumerate()
                .map(|(i, (ts, k, v, h))| KpRecord {
                    transactional,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: producer.0,
                    producer_epoch: producer.1,
                    timestamp_type: KpTimestampType::Creation,
                    offset: base_offset + i as i64,
                    sequence: if contiguous_sequences { i as i32 } else { (i * 2) as i32 },
                    timestamp: *ts,
                    key: k.clone().map(Bytes::from),
                    value: v.clone().map(Bytes::from),
                    headers: h
                        .iter()
                        .map(|(k, v)| (k.clone().into(), v.clone().map(Bytes::from)))
                        .collect(),
                })
                .collect();
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions { version: 2, compression: KpCompression::None },
            )
            .unwrap();
            let mut it = batches(buf.freeze(), &DecodeOptions::default());
            let mut ours = Vec::new();
            let mut count = 0;
            for batch in it.by_ref() {
                let batch = batch.unwrap();
                count += 1;
                prop_assert_eq!(batch.producer_id(), producer.0);
                prop_assert_eq!(batch.producer_epoch(), producer.1);
                prop_assert_eq!(batch.is_transactional(), transactional);
                for r in batch.records() {
                    ours.push(r.unwrap());
                }
            }
            prop_assert_eq!(it.truncated_bytes(), 0);
            let expected_batches = if contiguous_sequences || specs.len() == 1 { 1 } else { specs.len() };
            prop_assert_eq!(count, expected_batches);
            assert_matches(&ours, &specs, base_offset);
        }
    }
}
