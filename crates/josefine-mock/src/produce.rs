//! Producing without a client: [`Record`]s encoded into magic-2 record batches
//! and appended to the logs as the leader would, for tests that need data in
//! a topic before (or while) the client under test reads it.
//!
//! The encoder is the mock's own (like `batch.rs`, it shares no code with
//! Josefine's), so a consumer test decodes bytes that the client's codec did
//! not write. Batches are uncompressed, carry no producer id, and use
//! CreateTime; records are partitioned as Kafka's Java producer partitions
//! them (murmur2 of the key), so a test can predict where a keyed record
//! lands.
//!
//! Record layout (<https://kafka.apache.org/documentation/#record>):
//! `length: varint, attributes: int8, timestampDelta: varlong, offsetDelta:
//! varint, keyLength: varint, key, valueLength: varint, value, headers:
//! [headerKeyLength: varint, headerKey, headerValueLength: varint, value]`,
//! every length -1 for null.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::HEADER_LEN;
use crate::cluster::Shared;

/// Records in one batch stop growing past this many bytes (the Java
/// producer's `batch.size` default, 16 KiB), so a large `produce` makes
/// several batches, as a real producer would, and fetches see batch
/// boundaries.
const BATCH_BYTES: usize = 16 * 1024;

/// The timestamp of the record at offset 0 of every partition in a
/// [deterministic](crate::MockClusterBuilder::deterministic) cluster, when
/// the record names none: 2024-01-01T00:00:00Z. The record at offset `o` gets
/// this plus `o` milliseconds.
pub const DETERMINISTIC_EPOCH_MS: i64 = 1_704_067_200_000;

/// A record for [`MockCluster::produce`](crate::MockCluster::produce): key,
/// value and headers, and optionally the partition and timestamp.
///
/// ```
/// use josefine_mock::Record;
///
/// let order = Record::new()
///     .key("customer-7")
///     .value(r#"{"order": 42}"#)
///     .header("trace-id", "abc");
/// // Shorthands: a value alone, or a (key, value) pair.
/// let plain: Record = "just a value".into();
/// let keyed: Record = ("customer-7", "order 43").into();
/// # let _ = (order, plain, keyed);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Record {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<(String, Option<Bytes>)>,
    pub(crate) partition: Option<i32>,
    pub(crate) timestamp: Option<i64>,
}

impl Record {
    /// A record with a null key, a null value (a tombstone) and no headers.
    pub fn new() -> Self {
        Record::default()
    }

    /// The key, which also chooses the partition (murmur2, as Kafka's
    /// default partitioner) unless [`partition`](Self::partition) is set.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The value.
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Appends a header; order is kept and keys may repeat, as in Kafka.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// Appends a header with a null value.
    pub fn null_header(mut self, key: impl Into<String>) -> Self {
        self.headers.push((key.into(), None));
        self
    }

    /// Writes the record to this partition, whatever its key.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The record's CreateTime, in milliseconds since the Unix epoch.
    /// Default: the wall clock when it is produced, or in a deterministic
    /// cluster [`DETERMINISTIC_EPOCH_MS`] plus the record's offset.
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

impl From<&'static str> for Record {
    /// A record with this value and no key.
    fn from(value: &'static str) -> Self {
        Record::new().value(value)
    }
}

impl From<String> for Record {
    /// A record with this value and no key.
    fn from(value: String) -> Self {
        Record::new().value(value)
    }
}

impl From<Vec<u8>> for Record {
    /// A record with this value and no key.
    fn from(value: Vec<u8>) -> Self {
        Record::new().value(value)
    }
}

impl From<Bytes> for Record {
    /// A record with this value and no key.
    fn from(value: Bytes) -> Self {
        Record::new().value(value)
    }
}

impl<K: Into<Bytes>, V: Into<Bytes>> From<(K, V)> for Record {
    /// A record with this key and value.
    fn from((key, value): (K, V)) -> Self {
        Record::new().key(key).value(value)
    }
}

/// Where [`MockCluster::produce`](crate::MockCluster::produce) put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Produced {
    /// The partition it went to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its timestamp (CreateTime), milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// Why [`MockCluster::produce`](crate::MockCluster::produce) appended nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// The topic does not exist (the mock never creates topics on its own).
    #[error("the mock cluster has no topic {0:?}")]
    UnknownTopic(String),
    /// A record named a partition the topic does not have.
    #[error("the mock cluster's topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition the record asked for.
        partition: i32,
    },
}

/// Kafka's murmur2 (`Utils.murmur2`: 32-bit, seed `0x9747b28c`).
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java's int arithmetic wraps; `as` keeps the length's low 32 bits as
    // Java's `int length` would hold them.
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record:
/// `toPositive(murmur2(key)) % partitions`.
pub(crate) fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

fn put_varint(buf: &mut BytesMut, value: i64) {
    // Zigzag, then base-128 little-endian groups (protobuf's varints).
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, -1),
        Some(bytes) => {
            put_varint(buf, bytes.len() as i64);
            buf.put_slice(bytes);
        }
    }
}

/// One record's bytes, length prefix included.
fn encode_record(record: &Record, timestamp_delta: i64, offset_delta: i64) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i8(0); // attributes: unused
    put_varint(&mut body, timestamp_delta);
    put_varint(&mut body, offset_delta);
    put_nullable(&mut body, record.key.as_deref());
    put_nullable(&mut body, record.value.as_deref());
    put_varint(&mut body, record.headers.len() as i64);
    for (key, value) in &record.headers {
        put_nullable(&mut body, Some(key.as_bytes()));
        put_nullable(&mut body, value.as_deref());
    }
    let mut out = BytesMut::with_capacity(body.len() + 5);
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// The batch header fields a batch's writer chooses besides its records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchFields {
    pub(crate) attributes: i16,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
}

impl BatchFields {
    /// No compression, CreateTime, no producer id.
    pub(crate) const PLAIN: BatchFields = BatchFields {
        attributes: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// One uncompressed magic-2 batch of `records` with these timestamps, base
/// offset 0 and leader epoch -1 (the log rewrites both), no producer id.
pub(crate) fn encode_batch(records: &[(&Record, i64)]) -> Bytes {
    encode_batch_as(records, BatchFields::PLAIN)
}

/// [`encode_batch`] with these header fields (a transaction marker's, say).
pub(crate) fn encode_batch_as(records: &[(&Record, i64)], fields: BatchFields) -> Bytes {
    let base_timestamp = records.first().map_or(0, |(_, ts)| *ts);
    let max_timestamp = records.iter().map(|(_, ts)| *ts).max().unwrap_or(-1);
    let mut body = BytesMut::new();
    for (delta, (record, timestamp)) in records.iter().enumerate() {
        body.extend_from_slice(&encode_record(
            record,
            timestamp - base_timestamp,
            delta as i64,
        ));
    }
    let count = i32::try_from(records.len()).expect("a batch holds few records");
    let mut batch = BytesMut::with_capacity(HEADER_LEN + body.len());
    batch.put_i64(0); // base offset
    let length = HEADER_LEN - 12 + body.len();
    batch.put_i32(i32::try_from(length).expect("a batch stays far below 2 GiB"));
    batch.put_i32(-1); // partition leader epoch
    batch.put_i8(2); // magic
    batch.put_u32(0); // CRC, below
    batch.put_i16(fields.attributes);
    batch.put_i32(count - 1); // last offset delta
    batch.put_i64(base_timestamp);
    batch.put_i64(max_timestamp);
    batch.put_i64(fields.producer_id);
    batch.put_i16(fields.producer_epoch);
    batch.put_i32(fields.base_sequence);
    batch.put_i32(count);
    batch.extend_from_slice(&body);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

/// Cuts `records` (all for one partition, with their timestamps) into
/// batches of about [`BATCH_BYTES`], at least one record each.
pub(crate) fn encode_batches(records: &[(&Record, i64)]) -> Vec<(usize, Bytes)> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (record, _)) in records.iter().enumerate() {
        let size = record.key.as_ref().map_or(0, Bytes::len)
            + record.value.as_ref().map_or(0, Bytes::len)
            + record
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
            + 16;
        if i > start && bytes + size > BATCH_BYTES {
            batches.push((i - start, encode_batch(&records[start..i])));
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        batches.push((records.len() - start, encode_batch(&records[start..])));
    }
    batches
}

pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The test-facing produce, which `cluster_ops!` exposes.
impl Shared {
    /// Partitions `records`, then appends them under one lock: either all of
    /// them are appended, or (for an unknown topic or partition) none.
    pub(crate) fn produce(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Produced>, ProduceError> {
        let mut state = self.state();
        let count = state
            .topics
            .get(topic)
            .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))
            .ok_or_else(|| ProduceError::UnknownTopic(topic.to_owned()))?;
        let mut next_keyless = state.next_keyless.get(topic).copied().unwrap_or(0);
        // Partition indices, in input order within each partition.
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            let partition = match (record.partition, &record.key) {
                (Some(p), _) if (0..count).contains(&p) => p,
                (Some(p), _) => {
                    return Err(ProduceError::UnknownPartition {
                        topic: topic.to_owned(),
                        partition: p,
                    })
                }
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => {
                    // `count` is at least 1, so the remainder fits an i32.
                    let p = i32::try_from(next_keyless % count.unsigned_abs()).unwrap_or(0);
                    next_keyless = next_keyless.wrapping_add(1);
                    p
                }
            };
            by_partition.entry(partition).or_default().push(index);
        }
        state.next_keyless.insert(topic.to_owned(), next_keyless);
        let deterministic = state.seed.is_some();
        let now = wall_clock_ms();
        let mut produced: Vec<Option<Produced>> = vec![None; records.len()];
        for (partition, indices) in by_partition {
            let Some(p) = state.partition_mut(topic, partition) else {
                unreachable!("partition {partition} was checked against the count");
            };
            let end = p.log.end_offset();
            let stamped: Vec<(&Record, i64)> = (0i64..)
                .zip(&indices)
                .map(|(i, &index)| {
                    let record = &records[index];
                    let default = if deterministic {
                        DETERMINISTIC_EPOCH_MS + end + i
                    } else {
                        now
                    };
                    (record, record.timestamp.unwrap_or(default))
                })
                .collect();
            let mut done = 0;
            for (n, batch) in encode_batches(&stamped) {
                let base = p.log.append(&batch, p.leader_epoch);
                for (j, offset) in (base..).take(n).enumerate() {
                    produced[indices[done + j]] = Some(Produced {
                        partition,
                        offset,
                        timestamp: stamped[done + j].1,
                    });
                }
                done += n;
            }
        }
        drop(state);
        self.notify_changed();
        Ok(produced
            .into_iter()
            .map(|p| p.expect("every record went to exactly one batch"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate_produced;

    #[test]
    fn murmur2_matches_kafkas_own_test_values() {
        // clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn varints_are_zigzag_base_128() {
        let encode = |v: i64| {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v);
            buf.to_vec()
        };
        assert_eq!(encode(0), [0]);
        assert_eq!(encode(-1), [1]);
        assert_eq!(encode(1), [2]);
        assert_eq!(encode(63), [0x7e]);
        assert_eq!(encode(64), [0x80, 0x01]);
        assert_eq!(encode(-65), [0x81, 0x01]);
        assert_eq!(encode(i64::MIN).len(), 10);
    }

    #[test]
    fn batches_pass_the_produce_checks() {
        let records = [
            Record::new().key("k").value("v").header("h", "1"),
            Record::new(),
            Record::new().value("x").null_header("n"),
        ];
        let with_ts: Vec<(&Record, i64)> = records.iter().zip([10, 5, 30]).collect();
        let batch = encode_batch(&with_ts);
        let header = validate_produced(&batch, 9).expect("a valid batch");
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!((header.base_timestamp, header.max_timestamp), (10, 30));
        assert!(!header.has_producer_id());
        // The first record: length, attributes, timestamp delta 0, offset
        // delta 0, key "k", value "v", one header "h" = "1".
        assert_eq!(
            &batch[HEADER_LEN..HEADER_LEN + 14],
            &[24, 0, 0, 0, 2, b'k', 2, b'v', 2, 2, b'h', 2, b'1', 12]
        );
    }

    #[test]
    fn large_inputs_make_several_batches() {
        let big = Record::new().value(vec![0u8; 6000]);
        let records: Vec<(&Record, i64)> = (0..7).map(|i| (&big, i)).collect();
        let batches = encode_batches(&records);
        let counts: Vec<usize> = batches.iter().map(|(n, _)| *n).collect();
        assert_eq!(counts, [2, 2, 2, 1]);
        let huge = Record::new().value(vec![0u8; 40_000]);
        assert_eq!(encode_batches(&[(&huge, 0)]).len(), 1);
    }
}
