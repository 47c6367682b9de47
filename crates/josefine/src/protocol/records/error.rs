//! The one error type of the record-batch codec.
//!
//! Every variant is about the bytes (or about a setting of the encoder), never about I/O:
//! the codec is sans-io. The type is `Clone + Eq` because a batch caches the outcome of its
//! (lazy) decompression and hands the same error to every `records()` call, and so tests can
//! compare errors exactly.

use super::Compression;

/// What can go wrong while decoding or encoding Kafka record batches (magic v2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The input ended inside a field that must be complete (a batch header inside its own
    /// length, a record inside the records section, a varint, ...). A truncated *trailing
    /// batch* in a Fetch response is not this error: [`Batches`](super::Batches) stops and
    /// reports it through `truncated_bytes()`.
    #[error("unexpected end of input while reading {context}")]
    UnexpectedEof {
        /// The field being read.
        context: &'static str,
    },

    /// A varint (at most 5 bytes) or varlong (at most 10 bytes) whose continuation bit is
    /// still set on its last allowed byte.
    #[error("varint is longer than {max_bytes} bytes")]
    VarintTooLong {
        /// 5 for a varint, 10 for a varlong.
        max_bytes: usize,
    },

    /// A varint whose last byte carries bits beyond 32 (varint) or 64 (varlong) bits.
    #[error("varint does not fit in {bits} bits")]
    VarintOverflow {
        /// 32 for a varint, 64 for a varlong.
        bits: u32,
    },

    /// A batch length field that is negative or smaller than the fixed batch header.
    #[error("invalid record batch length {length}")]
    InvalidBatchLength {
        /// The value of the length field.
        length: i32,
    },

    /// The batch is a legacy message set (magic 0 or 1) or of an unknown future format.
    #[error("unsupported record batch magic {magic} (only magic 2 is supported)")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
    },

    /// The CRC32C stored in the batch does not match the bytes.
    #[error("record batch CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch {
        /// The CRC stored in the batch header.
        expected: u32,
        /// The CRC32C computed over attributes..end of batch.
        actual: u32,
    },

    /// Attribute bits 0-2 name a codec that does not exist (5, 6 or 7).
    #[error("unknown compression codec id {id}")]
    UnknownCompression {
        /// The codec id found in the attributes.
        id: u8,
    },

    /// A negative record count in the batch header.
    #[error("invalid record count {count}")]
    InvalidRecordCount {
        /// The value of the count field.
        count: i32,
    },

    /// The records section ended before `record_count` records were read.
    #[error("batch declares {expected} records but its records section holds only {found}")]
    MissingRecords {
        /// The batch header's record count.
        expected: i32,
        /// How many complete records were read.
        found: i32,
    },

    /// Bytes are left in the records section after `record_count` records.
    #[error("{bytes} bytes left over after the last record of the batch")]
    TrailingBytes {
        /// How many bytes were left over.
        bytes: usize,
    },

    /// A length field (record, key, value, header key or value) is negative (other than -1
    /// for null where null is allowed) or points past the end of its enclosing record.
    #[error("invalid length {length} for {field}")]
    InvalidLength {
        /// Which field.
        field: &'static str,
        /// The length found.
        length: i64,
    },

    /// The fields of a record did not add up to its length prefix.
    #[error("record length prefix says {declared} bytes but its fields use {used}")]
    RecordLengthMismatch {
        /// The record's length prefix.
        declared: usize,
        /// The bytes its fields took.
        used: usize,
    },

    /// A negative header count, or more headers than the record has bytes for.
    #[error("invalid header count {count}")]
    InvalidHeaderCount {
        /// The header count found.
        count: i32,
    },

    /// The compressed records section could not be decompressed.
    #[error("{codec} decompression failed: {message}")]
    Decompression {
        /// The batch's codec.
        codec: Compression,
        /// What the decompressor said.
        message: String,
    },

    /// Decompression would produce more than `DecodeOptions::max_decompressed_bytes`.
    #[error("{codec} records section inflates beyond the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The batch's codec.
        codec: Compression,
        /// The limit in force.
        limit: usize,
    },

    /// The compressor failed (only an out-of-memory style failure of the C zstd library is
    /// expected here).
    #[error("{codec} compression failed: {message}")]
    Compression {
        /// The codec.
        codec: Compression,
        /// What the compressor said.
        message: String,
    },

    /// The codec is one this build of josefine leaves out (zstd without the `zstd`
    /// feature): its batches can be neither written nor read.
    #[error("{codec} record batches need josefine's `{feature}` feature, which is disabled in this build")]
    CodecDisabled {
        /// The codec.
        codec: Compression,
        /// The cargo feature that builds it.
        feature: &'static str,
    },

    /// A compression level outside the codec's range, or a level for a codec without levels.
    #[error("compression level {level} is not valid for {codec}")]
    InvalidCompressionLevel {
        /// The codec.
        codec: Compression,
        /// The level asked for.
        level: i32,
    },

    /// `BatchBuilder::finish` on a builder without records: Kafka producers never send an
    /// empty batch, and its timestamps would be meaningless.
    #[error("a record batch needs at least one record")]
    EmptyBatch,

    /// The batch would exceed a limit of the wire format (more than `i32::MAX` records or
    /// bytes, a key or value longer than `i32::MAX`).
    #[error("record batch too large: {what}")]
    TooLarge {
        /// Which limit.
        what: &'static str,
    },

    /// A control batch whose record key is not a valid control record key.
    #[error("invalid control record: {reason}")]
    InvalidControlRecord {
        /// Why.
        reason: &'static str,
    },
}
