//! Kafka record batches (message format v2, "magic 2"): a zero-copy, lazy decoder and a
//! one-batch-per-partition encoder.
//!
//! Implements:
//! - the "Record Batch" and "Record" layouts of Kafka's message format v2 (Kafka protocol
//!   documentation, section "Message Format" / "Record Batch"), introduced by KIP-98
//!   together with the producer id, producer epoch, base sequence and the transactional and
//!   control attributes (and control records: COMMIT/ABORT markers);
//! - record headers (KIP-82): an ordered list in which a key may repeat;
//! - the delete-horizon attribute of compacted batches (KIP-534), exposed read-only;
//! - the five codecs of `compression.type`, see [`compression`].
//!
//! Why our own codec rather than kafka-protocol's: that one keeps headers in a map (losing
//! duplicates), splits a produce into one batch per record, treats a truncated trailing
//! batch (normal in a Fetch response) as an error, builds a `Vec` of records up front and
//! fixes the LZ4 level. It stays in our tests as a cross-check.
//!
//! # Decoding
//! [`batches`] walks the concatenated batches of a Fetch response's `records` field. Each
//! [`RecordBatch`] keeps the batch bytes as a slice of the input; its [`records`] iterator
//! parses one record per `next()`, handing out keys, values and header values as
//! [`Bytes`] slices of the input, or, for a compressed batch, of the one buffer the batch
//! inflates into. Decompression is lazy: it runs on the first `records()` (or
//! `control_record()`) call and its result is cached in the batch, so a consumer that skips
//! a batch (an aborted transaction, an offset before the one it asked for) never inflates
//! it. CRC32C is checked when the batch is parsed, before anything else looks at its body.
//! [`RecordIter::next_ref`] is the allocation- and atomic-free variant of `next()`, lending
//! fields as `&[u8]` (about twice as fast; see `benches/record_decode.rs`).
//!
//! Nothing in the input can panic the decoder or make it allocate more than the input, the
//! caller's decompression limit, or a record's own byte length allows.
//!
//! # Encoding
//! [`BatchBuilder`] appends records to one uncompressed buffer and, in
//! [`finish`](BatchBuilder::finish), compresses it once and writes exactly one batch, as
//! Apache Kafka requires for a partition in a Produce request (v3+).
//!
//! [`records`]: RecordBatch::records

pub mod compression;
mod decode;
mod encode;
mod error;
mod varint;

use bytes::Bytes;

pub use compression::{compress, decompress, Compression};
pub use decode::{batches, Batches, HeaderRefs, RecordBatch, RecordIter, RecordRef};
pub use encode::{restamp_producer, BatchBuilder};
pub use error::RecordError;

/// Bytes before a batch's `partitionLeaderEpoch`: base offset (8) and batch length (4).
/// The batch length counts the bytes after these.
pub const LOG_OVERHEAD: usize = 12;

/// The fixed header of a v2 batch, up to and including the record count.
pub const RECORD_BATCH_OVERHEAD: usize = 61;

/// The `magic` value of the format this module reads and writes.
pub const MAGIC_V2: i8 = 2;

/// `producer_id` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producer_epoch` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `base_sequence` of a batch from a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;
/// `partition_leader_epoch` as a producer writes it (the leader fills it in).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Default [`DecodeOptions::max_decompressed_bytes`]: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// How [`batches`] treats its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Check each batch's CRC32C (over attributes..end) before using it. Default `true`;
    /// Kafka's `check.crcs` consumer setting.
    pub verify_crc: bool,
    /// The most bytes one batch's records section may inflate to. A batch that would
    /// inflate further yields [`RecordError::DecompressedTooLarge`] instead of an
    /// allocation of whatever size the input claims. Default
    /// [`DEFAULT_MAX_DECOMPRESSED_BYTES`].
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            verify_crc: true,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// What a batch's timestamps mean: attribute bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer (`message.timestamp.type=CreateTime`).
    #[default]
    CreateTime,
    /// Set by the broker on append: every record's timestamp is the batch's
    /// `max_timestamp`.
    LogAppendTime,
}

/// One record header (KIP-82). A record's headers are an ordered list; keys may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    key: Bytes,
    value: Option<Bytes>,
}

impl Header {
    /// A header from borrowed parts (copied).
    pub fn new(key: &str, value: Option<&[u8]>) -> Self {
        Header {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: value.map(Bytes::copy_from_slice),
        }
    }

    /// A header from owned parts, without copying. Kafka requires the key to be UTF-8; this
    /// constructor does not check (the decoder uses it for keys as they come off the wire).
    pub fn from_bytes(key: Bytes, value: Option<Bytes>) -> Self {
        Header { key, value }
    }

    /// The key's bytes.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The key as text, or why it is not UTF-8.
    pub fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.key)
    }

    /// The value; `None` is a null value, distinct from an empty one.
    pub fn value(&self) -> Option<&Bytes> {
        self.value.as_ref()
    }

    /// Key and value, without copying.
    pub fn into_parts(self) -> (Bytes, Option<Bytes>) {
        (self.key, self.value)
    }
}

/// One decoded record, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
}

impl Record {
    /// A record at `offset` with this timestamp (milliseconds since the Unix epoch),
    /// key, value and headers. The client builds records from the batches it fetches;
    /// build one yourself to test code that takes records without a broker (see
    /// [`ConsumerRecord::new`](crate::ConsumerRecord::new)).
    pub fn new(
        offset: i64,
        timestamp: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<Header>,
    ) -> Self {
        Self {
            offset,
            timestamp,
            key,
            value,
            headers,
        }
    }

    /// The record's offset: the batch's base offset plus the record's offset delta.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp in milliseconds: the batch's base timestamp plus the record's
    /// delta, or the batch's `max_timestamp` when the batch uses log append time (the
    /// topic's `message.timestamp.type=LogAppendTime`).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The key; `None` is a null key.
    pub fn key(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// The value; `None` is a null value (a tombstone on a compacted topic).
    pub fn value(&self) -> Option<&Bytes> {
        self.value.as_ref()
    }

    /// The headers, in wire order, duplicates kept.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The last header with this key, as Kafka's `Headers.lastHeader` picks it.
    pub fn last_header(&self, key: &str) -> Option<&Header> {
        self.headers
            .iter()
            .rev()
            .find(|h| h.key.as_ref() == key.as_bytes())
    }

    /// Key, value and headers, without copying.
    pub fn into_parts(self) -> (Option<Bytes>, Option<Bytes>, Vec<Header>) {
        (self.key, self.value, self.headers)
    }
}

/// The kind of a control record (the `type` field of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordType {
    /// A transaction was aborted (type 0).
    Abort,
    /// A transaction was committed (type 1).
    Commit,
    /// Any other type (KRaft and future markers), by its number.
    Other(i16),
}

impl ControlRecordType {
    /// The wire value.
    pub const fn id(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
            ControlRecordType::Other(id) => id,
        }
    }

    /// The type for a wire value.
    pub const fn from_id(id: i16) -> Self {
        match id {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            other => ControlRecordType::Other(other),
        }
    }
}

/// The key of the record in a control batch (KIP-98): a version and a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlRecord {
    /// Key version (0 today).
    pub version: i16,
    /// Commit, abort or other.
    pub kind: ControlRecordType,
}

impl ControlRecord {
    /// Size of a version-0 control record key.
    pub const KEY_SIZE: usize = 4;

    /// Parses a control record key. Like Kafka, a newer version is read as far as the
    /// fields we know; a negative version or a short key is an error.
    pub fn parse_key(key: &[u8]) -> Result<Self, RecordError> {
        let Some(&[v0, v1, t0, t1]) = key.first_chunk::<4>() else {
            return Err(RecordError::InvalidControlRecord {
                reason: "key shorter than 4 bytes",
            });
        };
        let version = i16::from_be_bytes([v0, v1]);
        if version < 0 {
            return Err(RecordError::InvalidControlRecord {
                reason: "negative key version",
            });
        }
        Ok(ControlRecord {
            version,
            kind: ControlRecordType::from_id(i16::from_be_bytes([t0, t1])),
        })
    }

    /// The key bytes, for writing a control batch.
    pub fn key_bytes(&self) -> [u8; Self::KEY_SIZE] {
        let v = self.version.to_be_bytes();
        let t = self.kind.id().to_be_bytes();
        [v[0], v[1], t[0], t[1]]
    }
}
