//! Decoding: [`batches`] over a Fetch response's `records`, [`RecordBatch`] for one batch's
//! header, [`RecordIter`] parsing its records lazily.
//!
//! The batch walk follows Kafka's own `ByteBufferLogInputStream.nextBatch`: fewer bytes than
//! the 12-byte log overhead, or than the length field announces, is a partial batch the
//! broker cut at `max.partition.fetch.bytes`, so iteration just ends (and
//! [`Batches::truncated_bytes`] says how much was left); a length below the smallest
//! message of any format is corruption.
//!
//! Record parsing reads varints off a `&[u8]` with a plain cursor and only touches the
//! `Bytes` to cut the key, value and header-value slices, so a record costs its field reads
//! plus one atomic reference-count increment per non-empty slice (no allocation unless it
//! has headers). Those atomics are most of the per-record cost, so
//! [`RecordIter::next_ref`] offers the same records with borrowed `&[u8]` fields for
//! callers that only look at them.

use std::iter::FusedIterator;
use std::sync::OnceLock;

use bytes::Bytes;

use super::varint::{read_varint, read_varlong};
use super::{
    decompress, Compression, ControlRecord, DecodeOptions, Header, Record, RecordError,
    TimestampType, LOG_OVERHEAD, MAGIC_V2, RECORD_BATCH_OVERHEAD,
};

/// Offsets of the fixed header fields, from the start of the batch.
pub(super) mod at {
    pub(crate) const BASE_OFFSET: usize = 0;
    pub(crate) const LENGTH: usize = 8;
    pub(crate) const PARTITION_LEADER_EPOCH: usize = 12;
    pub(crate) const MAGIC: usize = 16;
    pub(crate) const CRC: usize = 17;
    pub(crate) const ATTRIBUTES: usize = 21;
    pub(crate) const LAST_OFFSET_DELTA: usize = 23;
    pub(crate) const BASE_TIMESTAMP: usize = 27;
    pub(crate) const MAX_TIMESTAMP: usize = 35;
    pub(crate) const PRODUCER_ID: usize = 43;
    pub(crate) const PRODUCER_EPOCH: usize = 51;
    pub(crate) const BASE_SEQUENCE: usize = 53;
    pub(crate) const RECORD_COUNT: usize = 57;
}

/// Kafka's `LegacyRecord.RECORD_OVERHEAD_V0`: no batch of any format is shorter, so a length
/// below it is corruption even before the magic byte can be seen.
const MIN_ANY_FORMAT_LENGTH: i32 = 14;
/// Bytes up to and including the magic byte.
const HEADER_UP_TO_MAGIC: usize = at::MAGIC + 1;
/// The smallest `batch_length` of a v2 batch (the fixed header after the length field).
const MIN_V2_LENGTH: i32 = (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Walks the batches of a Fetch response's `records` (or of any concatenation of v2
/// batches). See [`Batches`].
pub fn batches(records: Bytes, opts: &DecodeOptions) -> Batches {
    Batches {
        data: records,
        pos: 0,
        opts: *opts,
        truncated: 0,
        done: false,
    }
}

/// Iterator of the batches in a byte buffer, yielding `Result<RecordBatch, RecordError>`.
///
/// Ends without an error at a partial trailing batch (see [`truncated_bytes`]); ends after
/// yielding the first error, since the position of the next batch is unknown after one.
///
/// [`truncated_bytes`]: Batches::truncated_bytes
#[derive(Debug, Clone)]
pub struct Batches {
    data: Bytes,
    pos: usize,
    opts: DecodeOptions,
    truncated: usize,
    done: bool,
}

impl Batches {
    /// Trailing bytes ignored because they hold only part of a batch. Zero until iteration
    /// has reached them.
    pub fn truncated_bytes(&self) -> usize {
        self.truncated
    }

    /// Bytes not yet walked.
    pub fn remaining_bytes(&self) -> usize {
        self.data.len() - self.pos
    }

    fn truncate_here(&mut self, rest: usize) -> Result<Option<RecordBatch>, RecordError> {
        self.truncated = rest;
        Ok(None)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, RecordError> {
        let rest = &self.data[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        if rest.len() < LOG_OVERHEAD {
            return self.truncate_here(rest.len());
        }
        let length = i32::from_be_bytes(array_at(rest, at::LENGTH));
        if length < MIN_ANY_FORMAT_LENGTH {
            return Err(RecordError::InvalidBatchLength { length });
        }
        if rest.len() < HEADER_UP_TO_MAGIC {
            return self.truncate_here(rest.len());
        }
        let magic = rest[at::MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic { magic });
        }
        if length < MIN_V2_LENGTH {
            return Err(RecordError::InvalidBatchLength { length });
        }
        let total = LOG_OVERHEAD + length as usize;
        if rest.len() < total {
            return self.truncate_here(rest.len());
        }
        let raw = self.data.slice(self.pos..self.pos + total);
        self.pos += total;
        RecordBatch::parse(raw, &self.opts).map(Some)
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_batch().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

impl FusedIterator for Batches {}

#[inline(always)]
fn array_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

/// One v2 record batch: every header field, and a lazy iterator over its records.
///
/// Cheap to clone (the bytes are shared). The records section is decompressed at most once,
/// on the first [`records`](RecordBatch::records) or
/// [`control_record`](RecordBatch::control_record) call, and kept for later calls.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    raw: Bytes,
    base_offset: i64,
    batch_length: i32,
    partition_leader_epoch: i32,
    magic: i8,
    crc: u32,
    attributes: i16,
    compression: Compression,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
    max_decompressed_bytes: usize,
    /// The uncompressed records section, or why it could not be had.
    records: OnceLock<Result<Bytes, RecordError>>,
}

impl RecordBatch {
    /// `raw` is exactly one batch, its length already checked against the length field.
    fn parse(raw: Bytes, opts: &DecodeOptions) -> Result<Self, RecordError> {
        let h: &[u8; RECORD_BATCH_OVERHEAD] = raw[..RECORD_BATCH_OVERHEAD]
            .try_into()
            .expect("Batches checked the length against the fixed header");
        let crc = u32::from_be_bytes(array_at(h, at::CRC));
        if opts.verify_crc {
            let actual = crc32c::crc32c(&raw[at::ATTRIBUTES..]);
            if actual != crc {
                return Err(RecordError::CrcMismatch {
                    expected: crc,
                    actual,
                });
            }
        }
        let attributes = i16::from_be_bytes(array_at(h, at::ATTRIBUTES));
        let id = (attributes & ATTR_COMPRESSION_MASK) as u8;
        let compression = Compression::from_id(id).ok_or(RecordError::UnknownCompression { id })?;
        // A batch this build cannot decompress is refused whole, here, not when its
        // records are read: a consumer stops at it as at a corrupt batch (the batches
        // before it delivered, then an error naming its offset), so nothing is skipped.
        compression.check_built()?;
        let record_count = i32::from_be_bytes(array_at(h, at::RECORD_COUNT));
        if record_count < 0 {
            return Err(RecordError::InvalidRecordCount {
                count: record_count,
            });
        }
        let records = if compression == Compression::None {
            OnceLock::from(Ok(raw.slice(RECORD_BATCH_OVERHEAD..)))
        } else {
            OnceLock::new()
        };
        Ok(RecordBatch {
            base_offset: i64::from_be_bytes(array_at(h, at::BASE_OFFSET)),
            batch_length: i32::from_be_bytes(array_at(h, at::LENGTH)),
            partition_leader_epoch: i32::from_be_bytes(array_at(h, at::PARTITION_LEADER_EPOCH)),
            magic: h[at::MAGIC] as i8,
            crc,
            attributes,
            compression,
            last_offset_delta: i32::from_be_bytes(array_at(h, at::LAST_OFFSET_DELTA)),
            base_timestamp: i64::from_be_bytes(array_at(h, at::BASE_TIMESTAMP)),
            max_timestamp: i64::from_be_bytes(array_at(h, at::MAX_TIMESTAMP)),
            producer_id: i64::from_be_bytes(array_at(h, at::PRODUCER_ID)),
            producer_epoch: i16::from_be_bytes(array_at(h, at::PRODUCER_EPOCH)),
            base_sequence: i32::from_be_bytes(array_at(h, at::BASE_SEQUENCE)),
            record_count,
            max_decompressed_bytes: opts.max_decompressed_bytes,
            records,
            raw,
        })
    }

    /// Offset of the first record (`baseOffset`).
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The `batchLength` field: bytes after it, to the end of the batch.
    pub fn batch_length(&self) -> i32 {
        self.batch_length
    }

    /// The whole batch's size on the wire (`batch_length + 12`).
    pub fn size_in_bytes(&self) -> usize {
        self.raw.len()
    }

    /// The batch exactly as received, e.g. to forward it without re-encoding.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// `partitionLeaderEpoch`, set by the leader that appended the batch.
    pub fn partition_leader_epoch(&self) -> i32 {
        self.partition_leader_epoch
    }

    /// Always 2: other formats are rejected while parsing.
    pub fn magic(&self) -> i8 {
        self.magic
    }

    /// The stored CRC32C.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// The raw attributes field.
    pub fn attributes(&self) -> i16 {
        self.attributes
    }

    /// The codec of the records section (attribute bits 0-2).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// What the timestamps mean (attribute bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Holds a control record (a COMMIT/ABORT marker) rather than user data (bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Compaction stored a delete horizon in `base_timestamp` (bit 6, KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & ATTR_DELETE_HORIZON != 0
    }

    /// `lastOffsetDelta`: offset of the last record minus the base offset. Compaction may
    /// have removed records, so this can exceed `record_count - 1`.
    pub fn last_offset_delta(&self) -> i32 {
        self.last_offset_delta
    }

    /// `baseTimestamp` (the first record's timestamp, or the delete horizon).
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// `maxTimestamp`: the largest record timestamp, or the log-append time.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// `producerId`, -1 without an idempotent producer.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// `producerEpoch`, -1 without an idempotent producer.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch
    }

    /// `baseSequence`, -1 without an idempotent producer.
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence
    }

    /// `recordsCount`, never negative.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Offset of the last record the batch covered when written.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset to fetch after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The uncompressed records section, inflating it on first use.
    fn records_section(&self) -> &Result<Bytes, RecordError> {
        self.records.get_or_init(|| {
            let body = &self.raw[RECORD_BATCH_OVERHEAD..];
            decompress(self.compression, body, self.max_decompressed_bytes).map(Bytes::from)
        })
    }

    /// The records, parsed one per `next()`. The first call on a compressed batch inflates
    /// the records section (once); if that fails, the iterator yields that error once.
    pub fn records(&self) -> RecordIter {
        let log_append_time = match self.timestamp_type() {
            TimestampType::LogAppendTime => Some(self.max_timestamp),
            TimestampType::CreateTime => None,
        };
        let (data, pending) = match self.records_section() {
            Ok(data) => (data.clone(), None),
            Err(e) => (Bytes::new(), Some(e.clone())),
        };
        RecordIter {
            data,
            pos: 0,
            remaining: if pending.is_some() {
                0
            } else {
                self.record_count
            },
            expected: self.record_count,
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp,
            log_append_time,
            pending,
            done: false,
        }
    }

    /// For a control batch, its marker (the key of its record); `None` for a data batch.
    pub fn control_record(&self) -> Option<Result<ControlRecord, RecordError>> {
        if !self.is_control() {
            return None;
        }
        Some(match self.records().next() {
            None => Err(RecordError::InvalidControlRecord {
                reason: "control batch without a record",
            }),
            Some(Err(e)) => Err(e),
            Some(Ok(record)) => match record.key() {
                Some(key) => ControlRecord::parse_key(key),
                None => Err(RecordError::InvalidControlRecord { reason: "null key" }),
            },
        })
    }
}

/// Lazy iterator over one batch's records, yielding `Result<Record, RecordError>`.
///
/// Yields exactly `record_count` records, or an error in place of the first record that
/// cannot be read: a records section that ends early is [`RecordError::MissingRecords`],
/// bytes left after the last record are [`RecordError::TrailingBytes`]. Ends after an error.
/// Owns a reference to the records bytes, so it may outlive the batch.
#[derive(Debug, Clone)]
pub struct RecordIter {
    data: Bytes,
    pos: usize,
    remaining: i32,
    expected: i32,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    /// Decompression failure to report on the first `next()`.
    pending: Option<RecordError>,
    done: bool,
}

impl RecordIter {
    /// Records not yet read, according to the batch header.
    pub fn remaining(&self) -> i32 {
        self.remaining
    }

    /// Borrowing variant of `next()`: the record's key, value and headers are lent as
    /// slices of the batch instead of `Bytes`, which saves the atomic reference-count
    /// increment (and later decrement) per slice: about 40% of the parse when the caller
    /// only needs to look at the bytes. [`RecordRef::to_record`] upgrades a record the
    /// caller decides to keep. Same items, errors and end as `next()`.
    #[inline]
    pub fn next_ref(&mut self) -> Option<Result<RecordRef<'_>, RecordError>> {
        if self.remaining > 0 {
            self.remaining -= 1;
            match self.parse_fields(None) {
                Ok(f) => Some(Ok(RecordRef {
                    data: &self.data,
                    offset: f.offset,
                    timestamp: f.timestamp,
                    key: f.key.map(|(s, e)| &self.data[s..e]),
                    value: f.value.map(|(s, e)| &self.data[s..e]),
                    headers: &self.data[f.headers.0..f.headers.1],
                    header_count: f.header_count,
                })),
                Err(e) => Some(Err(self.fail(e))),
            }
        } else {
            self.finish().map(Err)
        }
    }

    /// Reads one record's framing and fields, validating everything (headers included),
    /// and advances past it. Headers are collected into `headers` when given.
    #[inline(always)]
    fn parse_fields(
        &mut self,
        headers: Option<&mut Vec<Header>>,
    ) -> Result<RecordFields, RecordError> {
        let buf: &[u8] = &self.data;
        let mut pos = self.pos;
        if pos >= buf.len() {
            return Err(RecordError::MissingRecords {
                expected: self.expected,
                found: self.expected - self.remaining - 1,
            });
        }
        let length = read_varint(buf, &mut pos)?;
        let body = pos;
        let end = usize::try_from(length)
            .ok()
            .and_then(|len| body.checked_add(len))
            .filter(|&end| end <= buf.len())
            .ok_or(RecordError::InvalidLength {
                field: "record",
                length: i64::from(length),
            })?;
        // Every field read below is confined to this record.
        let rec = &buf[..end];
        if pos >= end {
            return Err(RecordError::UnexpectedEof {
                context: "record attributes",
            });
        }
        pos += 1; // attributes: unused in v2
        let timestamp_delta = read_varlong(rec, &mut pos)?;
        let offset_delta = read_varint(rec, &mut pos)?;
        let key = read_nullable(rec, &mut pos, "key")?;
        let value = read_nullable(rec, &mut pos, "value")?;
        let header_count = read_varint(rec, &mut pos)?;
        let headers_start = pos;
        let header_count = if header_count == 0 {
            0
        } else {
            read_headers(&self.data, rec, &mut pos, header_count, headers)?
        };
        if pos != end {
            return Err(RecordError::RecordLengthMismatch {
                declared: end - body,
                used: pos - body,
            });
        }
        self.pos = end;
        let timestamp = match self.log_append_time {
            Some(t) => t,
            None => self.base_timestamp.wrapping_add(timestamp_delta),
        };
        Ok(RecordFields {
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp,
            key,
            value,
            headers: (headers_start, end),
            header_count,
        })
    }

    #[inline]
    fn parse_record(&mut self) -> Result<Record, RecordError> {
        let mut headers = Vec::new();
        let f = self.parse_fields(Some(&mut headers))?;
        Ok(Record {
            offset: f.offset,
            timestamp: f.timestamp,
            key: f.key.map(|(s, e)| self.data.slice(s..e)),
            value: f.value.map(|(s, e)| self.data.slice(s..e)),
            headers,
        })
    }

    /// Ends the iteration after an error.
    #[cold]
    fn fail(&mut self, e: RecordError) -> RecordError {
        self.remaining = 0;
        self.done = true;
        e
    }

    /// Runs once all declared records are read: reports a pending decompression failure or
    /// leftover bytes, then ends the iteration.
    #[cold]
    fn finish(&mut self) -> Option<RecordError> {
        if self.done {
            return None;
        }
        self.done = true;
        if let Some(e) = self.pending.take() {
            return Some(e);
        }
        let left = self.data.len() - self.pos;
        if left > 0 {
            return Some(RecordError::TrailingBytes { bytes: left });
        }
        None
    }
}

/// Where one validated record's fields sit in the records section.
struct RecordFields {
    offset: i64,
    timestamp: i64,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    /// Byte range of the header list (after the count).
    headers: (usize, usize),
    header_count: usize,
}

/// A record lent by [`RecordIter::next_ref`]: fields are slices of the batch's bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    data: &'a Bytes,
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: usize,
}

impl<'a> RecordRef<'a> {
    /// See [`Record::offset`].
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// See [`Record::timestamp`].
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The key; `None` is a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The value; `None` is a null value.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count
    }

    /// The headers in wire order, as `(key, value)`; keys are UTF-8 by Kafka's rules but
    /// not checked here.
    pub fn headers(&self) -> HeaderRefs<'a> {
        HeaderRefs {
            buf: self.headers,
            pos: 0,
            remaining: self.header_count,
        }
    }

    /// An owned [`Record`] whose fields share the batch's buffer.
    pub fn to_record(self) -> Record {
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(|k| self.data.slice_ref(k)),
            value: self.value.map(|v| self.data.slice_ref(v)),
            headers: self
                .headers()
                .map(|(k, v)| Header {
                    key: self.data.slice_ref(k),
                    value: v.map(|v| self.data.slice_ref(v)),
                })
                .collect(),
        }
    }
}

/// The headers of a [`RecordRef`], already validated when the record was read.
#[derive(Debug, Clone)]
pub struct HeaderRefs<'a> {
    buf: &'a [u8],
    pos: usize,
    remaining: usize,
}

impl<'a> Iterator for HeaderRefs<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The record parser validated these bytes; a failure here cannot happen, and
        // would just end the list.
        let key = read_nullable(self.buf, &mut self.pos, "header key").ok()??;
        let value = read_nullable(self.buf, &mut self.pos, "header value").ok()?;
        Some((&self.buf[key.0..key.1], value.map(|(s, e)| &self.buf[s..e])))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for HeaderRefs<'_> {}

/// A nullable byte field (length -1 = null) as a range of `rec`.
#[inline(always)]
fn read_nullable(
    rec: &[u8],
    pos: &mut usize,
    field: &'static str,
) -> Result<Option<(usize, usize)>, RecordError> {
    let length = read_varint(rec, pos)?;
    if length < 0 {
        if length == -1 {
            return Ok(None);
        }
        return Err(RecordError::InvalidLength {
            field,
            length: i64::from(length),
        });
    }
    let start = *pos;
    let end = start
        .checked_add(length as usize)
        .filter(|&end| end <= rec.len())
        .ok_or(RecordError::InvalidLength {
            field,
            length: i64::from(length),
        })?;
    *pos = end;
    Ok(Some((start, end)))
}

/// Reads `count` headers, pushing them to `out` when given (else only validating), and
/// returns how many there were.
#[inline(never)]
fn read_headers(
    data: &Bytes,
    rec: &[u8],
    pos: &mut usize,
    count: i32,
    mut out: Option<&mut Vec<Header>>,
) -> Result<usize, RecordError> {
    // A header takes at least two bytes (two one-byte lengths), so the record's own size
    // bounds the allocation whatever the count claims.
    let room = (rec.len() - *pos) / 2;
    let n = usize::try_from(count)
        .ok()
        .filter(|&n| n <= room)
        .ok_or(RecordError::InvalidHeaderCount { count })?;
    if let Some(out) = out.as_deref_mut() {
        out.reserve_exact(n);
    }
    for _ in 0..n {
        let Some((ks, ke)) = read_nullable(rec, pos, "header key")? else {
            return Err(RecordError::InvalidLength {
                field: "header key",
                length: -1,
            });
        };
        let value = read_nullable(rec, pos, "header value")?;
        if let Some(out) = out.as_deref_mut() {
            out.push(Header {
                key: data.slice(ks..ke),
                value: value.map(|(s, e)| data.slice(s..e)),
            });
        }
    }
    Ok(n)
}

impl Iterator for RecordIter {
    type Item = Result<Record, RecordError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining > 0 {
            self.remaining -= 1;
            match self.parse_record() {
                Ok(record) => Some(Ok(record)),
                Err(e) => Some(Err(self.fail(e))),
            }
        } else {
            self.finish().map(Err)
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // The count comes from the input: promise nothing below it, and one item more for
        // a possible trailing error.
        (0, Some(self.remaining as usize + 1))
    }
}

impl FusedIterator for RecordIter {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::{BatchBuilder, ControlRecordType};

    fn opts() -> DecodeOptions {
        DecodeOptions::default()
    }

    fn sample_batch(n: usize, compression: Compression) -> Bytes {
        let mut b = BatchBuilder::new()
            .base_offset(100)
            .compression(compression, None);
        for i in 0..n {
            let value = format!("value-{i}");
            b.push(
                1_000 + i as i64,
                Some(format!("k{i}").as_bytes()),
                Some(value.as_bytes()),
                &[Header::new("h", Some(b"x"))],
            )
            .unwrap();
        }
        b.finish().unwrap()
    }

    fn collect(data: Bytes) -> (Vec<Result<Vec<Record>, RecordError>>, usize) {
        let mut it = batches(data, &opts());
        let out = it
            .by_ref()
            .map(|b| b.and_then(|b| b.records().collect::<Result<Vec<_>, _>>()))
            .collect();
        (out, it.truncated_bytes())
    }

    /// Rewrites the CRC after a test edits a batch, so the edit reaches the record parser.
    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[at::ATTRIBUTES..]);
        batch[at::CRC..at::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn empty_input_is_no_batches() {
        let (out, truncated) = collect(Bytes::new());
        assert!(out.is_empty());
        assert_eq!(truncated, 0);
    }

    #[test]
    fn header_fields_are_exposed() {
        let data = sample_batch(3, Compression::None);
        let batch = batches(data.clone(), &opts()).next().unwrap().unwrap();
        assert_eq!(batch.base_offset(), 100);
        assert_eq!(batch.batch_length() as usize, data.len() - LOG_OVERHEAD);
        assert_eq!(batch.size_in_bytes(), data.len());
        assert_eq!(batch.magic(), 2);
        assert_eq!(batch.record_count(), 3);
        assert_eq!(batch.last_offset_delta(), 2);
        assert_eq!(batch.last_offset(), 102);
        assert_eq!(batch.next_offset(), 103);
        assert_eq!(batch.base_timestamp(), 1_000);
        assert_eq!(batch.max_timestamp(), 1_002);
        assert_eq!(batch.producer_id(), -1);
        assert_eq!(batch.producer_epoch(), -1);
        assert_eq!(batch.base_sequence(), -1);
        assert_eq!(batch.partition_leader_epoch(), -1);
        assert_eq!(batch.compression(), Compression::None);
        assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
        assert!(!batch.is_transactional());
        assert!(!batch.is_control());
        assert!(!batch.has_delete_horizon());
        assert!(batch.control_record().is_none());
        assert_eq!(batch.as_bytes(), &data);
        let records: Vec<_> = batch.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].offset(), 102);
        assert_eq!(records[2].timestamp(), 1_002);
        assert_eq!(records[2].key().unwrap(), "k2");
        assert_eq!(records[2].value().unwrap(), "value-2");
    }

    #[test]
    fn slices_share_the_input_buffer() {
        let data = sample_batch(2, Compression::None);
        let range = data.as_ptr_range();
        let batch = batches(data.clone(), &opts()).next().unwrap().unwrap();
        for r in batch.records() {
            let r = r.unwrap();
            let v = r.value().unwrap();
            assert!(range.contains(&v.as_ptr()), "value is a slice of the input");
            assert!(range.contains(&r.headers()[0].key().as_ptr()));
        }
    }

    /// A compressed codec for tests where any will do: zstd when built (the codec most
    /// Kafka topics use), else lz4.
    const COMPRESSED: Compression = if cfg!(feature = "zstd") {
        Compression::Zstd
    } else {
        Compression::Lz4
    };

    #[test]
    fn compressed_batch_inflates_once() {
        let data = sample_batch(50, COMPRESSED);
        let batch = batches(data, &opts()).next().unwrap().unwrap();
        let first: Vec<_> = batch.records().map(Result::unwrap).collect();
        let second: Vec<_> = batch.records().map(Result::unwrap).collect();
        assert_eq!(first, second);
        assert_eq!(
            first[0].value().unwrap().as_ptr(),
            second[0].value().unwrap().as_ptr(),
            "both iterations slice the same inflated buffer"
        );
    }

    #[test]
    fn several_batches_then_a_truncated_one() {
        let a = sample_batch(2, Compression::None);
        let b = sample_batch(3, Compression::Lz4);
        for cut in 1..b.len() {
            let mut data = a.to_vec();
            data.extend_from_slice(&b);
            data.extend_from_slice(&b[..cut]);
            let (out, truncated) = collect(Bytes::from(data));
            assert_eq!(out.len(), 2, "cut {cut}");
            assert_eq!(out[0].as_ref().unwrap().len(), 2);
            assert_eq!(out[1].as_ref().unwrap().len(), 3);
            assert_eq!(truncated, cut);
        }
    }

    #[test]
    fn every_prefix_is_truncation_never_a_panic() {
        for c in [Compression::None, Compression::Gzip, Compression::Snappy] {
            let data = sample_batch(5, c);
            for cut in 0..data.len() {
                let (out, truncated) = collect(data.slice(..cut));
                assert!(out.is_empty(), "{c} cut {cut}");
                assert_eq!(truncated, cut);
            }
        }
    }

    #[test]
    fn every_bit_flip_is_an_error_or_harmless() {
        // With CRC checking off, a corrupted batch reaches every parser; none may panic.
        let data = sample_batch(4, Compression::None).to_vec();
        let lax = DecodeOptions {
            verify_crc: false,
            ..DecodeOptions::default()
        };
        for i in 0..data.len() {
            for bit in [0x01u8, 0x40, 0x80] {
                let mut bad = data.clone();
                bad[i] ^= bit;
                for b in batches(Bytes::from(bad.clone()), &lax).flatten() {
                    b.records().for_each(drop);
                    let _ = b.control_record();
                }
                // With CRC checking on, any flip after the CRC field is caught.
                if i >= at::ATTRIBUTES {
                    let first = batches(Bytes::from(bad), &opts()).next();
                    assert!(
                        matches!(first, Some(Err(RecordError::CrcMismatch { .. }))),
                        "byte {i}: {first:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn crc_mismatch_reports_both_values() {
        let mut data = sample_batch(1, Compression::None).to_vec();
        let stored = u32::from_be_bytes(data[at::CRC..at::CRC + 4].try_into().unwrap());
        let last = data.len() - 1;
        data[last] ^= 0xff;
        let actual = crc32c::crc32c(&data[at::ATTRIBUTES..]);
        let err = batches(Bytes::from(data.clone()), &opts())
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err,
            RecordError::CrcMismatch {
                expected: stored,
                actual
            }
        );
        // And the iterator ends after it.
        let mut it = batches(Bytes::from(data), &opts());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn absurd_batch_lengths() {
        let good = sample_batch(1, Compression::None);
        for length in [-1i32, i32::MIN, 0, 13, 14, 48] {
            let mut data = good.to_vec();
            data[at::LENGTH..at::LENGTH + 4].copy_from_slice(&length.to_be_bytes());
            let err = batches(Bytes::from(data), &opts())
                .next()
                .unwrap()
                .unwrap_err();
            assert_eq!(err, RecordError::InvalidBatchLength { length });
        }
        // A negative length is caught even with too few bytes to see the magic.
        let mut short = good[..LOG_OVERHEAD].to_vec();
        short[at::LENGTH..at::LENGTH + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            batches(Bytes::from(short), &opts()).next(),
            Some(Err(RecordError::InvalidBatchLength { length: -5 }))
        ));
        // A huge but well-formed length is just a truncated batch.
        let mut huge = good.to_vec();
        huge[at::LENGTH..at::LENGTH + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        let (out, truncated) = collect(Bytes::from(huge));
        assert!(out.is_empty());
        assert_eq!(truncated, good.len());
    }

    #[test]
    fn legacy_magic_is_unsupported() {
        for magic in [0i8, 1, 3, -1] {
            let mut data = sample_batch(1, Compression::None).to_vec();
            data[at::MAGIC] = magic as u8;
            let err = batches(Bytes::from(data), &opts())
                .next()
                .unwrap()
                .unwrap_err();
            assert_eq!(err, RecordError::UnsupportedMagic { magic });
        }
    }

    /// A zstd batch (marked so, its records section left plain: it is refused before
    /// anything reads it) in a build without the `zstd` feature.
    #[cfg(not(feature = "zstd"))]
    #[test]
    fn a_zstd_batch_without_the_feature_is_refused_naming_it() {
        let mut data = sample_batch(2, Compression::None).to_vec();
        data[at::ATTRIBUTES + 1] |= Compression::Zstd.id();
        fix_crc(&mut data);
        let err = batches(Bytes::from(data), &opts())
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err,
            RecordError::CodecDisabled {
                codec: Compression::Zstd,
                feature: "zstd"
            }
        );
        let err = crate::Error::from(err);
        assert_eq!(err.kind(), &crate::ErrorKind::Config);
        assert!(err.to_string().contains("`zstd` feature"), "{err}");
    }

    #[test]
    fn unknown_codec_and_negative_count() {
        let mut data = sample_batch(1, Compression::None).to_vec();
        data[at::ATTRIBUTES + 1] |= 0x07;
        fix_crc(&mut data);
        assert_eq!(
            batches(Bytes::from(data), &opts())
                .next()
                .unwrap()
                .unwrap_err(),
            RecordError::UnknownCompression { id: 7 }
        );
        let mut data = sample_batch(1, Compression::None).to_vec();
        data[at::RECORD_COUNT..at::RECORD_COUNT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut data);
        assert_eq!(
            batches(Bytes::from(data), &opts())
                .next()
                .unwrap()
                .unwrap_err(),
            RecordError::InvalidRecordCount { count: -1 }
        );
    }

    fn with_count(count: i32, c: Compression) -> Vec<Result<Record, RecordError>> {
        let mut data = sample_batch(3, c).to_vec();
        data[at::RECORD_COUNT..at::RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut data);
        let batch = batches(Bytes::from(data), &opts()).next().unwrap().unwrap();
        batch.records().collect()
    }

    #[test]
    fn record_count_higher_than_actual() {
        for c in [Compression::None, Compression::Snappy] {
            let out = with_count(5, c);
            assert_eq!(out.len(), 4, "three records, then the error, then the end");
            assert!(out[..3].iter().all(Result::is_ok));
            assert_eq!(
                out[3],
                Err(RecordError::MissingRecords {
                    expected: 5,
                    found: 3
                })
            );
        }
    }

    #[test]
    fn record_count_lower_than_actual() {
        let out = with_count(2, Compression::None);
        assert_eq!(out.len(), 3);
        assert!(out[..2].iter().all(Result::is_ok));
        assert!(matches!(out[2], Err(RecordError::TrailingBytes { .. })));
        // Zero records declared but a non-empty section: still reported.
        let out = with_count(0, Compression::Gzip);
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0], Err(RecordError::TrailingBytes { .. })));
    }

    /// A batch of one record whose body is `body` (after its length prefix).
    fn batch_with_record_body(body: &[u8]) -> RecordBatch {
        let mut section = Vec::new();
        crate::protocol::records::varint::write_varint(&mut section, body.len() as i32);
        section.extend_from_slice(body);
        let mut data = sample_batch(1, Compression::None).to_vec();
        data.truncate(RECORD_BATCH_OVERHEAD);
        data.extend_from_slice(&section);
        let length = (data.len() - LOG_OVERHEAD) as i32;
        data[at::LENGTH..at::LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        fix_crc(&mut data);
        batches(Bytes::from(data), &opts()).next().unwrap().unwrap()
    }

    #[test]
    fn absurd_header_count_does_not_allocate() {
        // attributes, ts delta 0, offset delta 0, null key, null value, header count
        // i32::MAX (zigzag 0xfffffffe).
        let body = [0, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f];
        let batch = batch_with_record_body(&body);
        let out: Vec<_> = batch.records().collect();
        assert_eq!(
            out,
            vec![Err(RecordError::InvalidHeaderCount { count: i32::MAX })]
        );
        let body = [0, 0, 0, 1, 1, 0x01]; // header count -1
        let out: Vec<_> = batch_with_record_body(&body).records().collect();
        assert_eq!(
            out,
            vec![Err(RecordError::InvalidHeaderCount { count: -1 })]
        );
    }

    #[test]
    fn bad_field_lengths() {
        // Key length -2.
        let out: Vec<_> = batch_with_record_body(&[0, 0, 0, 3, 1, 0])
            .records()
            .collect();
        assert_eq!(
            out,
            vec![Err(RecordError::InvalidLength {
                field: "key",
                length: -2
            })]
        );
        // Value longer than the record.
        let out: Vec<_> = batch_with_record_body(&[0, 0, 0, 1, 20, b'a', 0])
            .records()
            .collect();
        assert_eq!(
            out,
            vec![Err(RecordError::InvalidLength {
                field: "value",
                length: 10
            })]
        );
        // Null header key.
        let out: Vec<_> = batch_with_record_body(&[0, 0, 0, 1, 1, 2, 1, 1])
            .records()
            .collect();
        assert_eq!(
            out,
            vec![Err(RecordError::InvalidLength {
                field: "header key",
                length: -1
            })]
        );
        // A spare byte inside the record after its last field.
        let out: Vec<_> = batch_with_record_body(&[0, 0, 0, 1, 1, 0, 0xaa])
            .records()
            .collect();
        assert_eq!(
            out,
            vec![Err(RecordError::RecordLengthMismatch {
                declared: 7,
                used: 6
            })]
        );
        // Empty record body.
        let out: Vec<_> = batch_with_record_body(&[]).records().collect();
        assert_eq!(
            out,
            vec![Err(RecordError::UnexpectedEof {
                context: "record attributes"
            })]
        );
    }

    #[test]
    fn null_empty_and_duplicate_headers_decode() {
        // ts delta -1 (zigzag 1), offset delta 0, empty key, null value, two headers "a".
        let body = [0, 1, 0, 0, 1, 4, 2, b'a', 1, 2, b'a', 0];
        let batch = batch_with_record_body(&body);
        let r = batch.records().next().unwrap().unwrap();
        assert_eq!(r.timestamp(), batch.base_timestamp() - 1);
        assert_eq!(r.key().map(|k| k.len()), Some(0));
        assert_eq!(r.value(), None);
        assert_eq!(r.headers().len(), 2);
        assert_eq!(r.headers()[0].value(), None);
        assert_eq!(r.headers()[1].value().map(|v| v.len()), Some(0));
        assert_eq!(r.last_header("a"), Some(&r.headers()[1]));
        assert_eq!(r.headers()[0].key_str(), Ok("a"));
    }

    #[test]
    fn log_append_time_overrides_record_timestamps() {
        let mut data = sample_batch(3, Compression::None).to_vec();
        data[at::ATTRIBUTES + 1] |= ATTR_LOG_APPEND_TIME as u8;
        data[at::MAX_TIMESTAMP..at::MAX_TIMESTAMP + 8].copy_from_slice(&777i64.to_be_bytes());
        fix_crc(&mut data);
        let batch = batches(Bytes::from(data), &opts()).next().unwrap().unwrap();
        assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
        assert!(batch.records().all(|r| r.unwrap().timestamp() == 777));
    }

    #[test]
    fn garbage_compressed_payload_is_typed_and_cached() {
        for c in Compression::built().filter(|&c| c != Compression::None) {
            let mut data = sample_batch(3, c).to_vec();
            for b in &mut data[RECORD_BATCH_OVERHEAD..] {
                *b = b.wrapping_mul(31).wrapping_add(7);
            }
            fix_crc(&mut data);
            let batch = batches(Bytes::from(data), &opts()).next().unwrap().unwrap();
            for _ in 0..2 {
                let out: Vec<_> = batch.records().collect();
                assert_eq!(out.len(), 1, "{c}");
                assert!(
                    matches!(&out[0], Err(RecordError::Decompression { codec, .. }) if *codec == c),
                    "{c}: {out:?}"
                );
            }
        }
    }

    #[test]
    fn zip_bomb_hits_the_limit() {
        // One record whose value is 8 MiB of zeros: a few KiB compressed.
        let zeros = vec![0u8; 8 << 20];
        let codecs = [Compression::Gzip, Compression::Zstd, Compression::Lz4];
        for c in codecs
            .into_iter()
            .filter(|c| c.disabled_feature().is_none())
        {
            let mut b = BatchBuilder::new().compression(c, None);
            b.push(0, None, Some(&zeros), &[]).unwrap();
            let data = b.finish().unwrap();
            assert!(data.len() < 1 << 20, "{c}: {}", data.len());
            let small = DecodeOptions {
                max_decompressed_bytes: 1 << 20,
                ..DecodeOptions::default()
            };
            let batch = batches(data.clone(), &small).next().unwrap().unwrap();
            let out: Vec<_> = batch.records().collect();
            assert_eq!(
                out,
                vec![Err(RecordError::DecompressedTooLarge {
                    codec: c,
                    limit: 1 << 20
                })]
            );
            // The default limit lets it through.
            let batch = batches(data, &opts()).next().unwrap().unwrap();
            let r = batch.records().next().unwrap().unwrap();
            assert_eq!(r.value().unwrap().len(), 8 << 20);
        }
    }

    #[test]
    fn control_batches() {
        for (kind, id) in [
            (ControlRecordType::Abort, 0),
            (ControlRecordType::Commit, 1),
        ] {
            let marker = ControlRecord { version: 0, kind };
            let key = marker.key_bytes();
            assert_eq!(key, [0, 0, 0, id]);
            // Value: EndTxnMarker version 0, coordinator epoch 5.
            let value = [0, 0, 0, 0, 0, 5];
            let mut b = BatchBuilder::new()
                .producer(42, 3, -1)
                .transactional(true)
                .control(true);
            b.push(10, Some(&key), Some(&value), &[]).unwrap();
            let batch = batches(b.finish().unwrap(), &opts())
                .next()
                .unwrap()
                .unwrap();
            assert!(batch.is_control());
            assert!(batch.is_transactional());
            assert_eq!(batch.producer_id(), 42);
            assert_eq!(batch.producer_epoch(), 3);
            assert_eq!(batch.control_record(), Some(Ok(marker)));
        }
        // A control key of another type, and a malformed one.
        assert_eq!(
            ControlRecord::parse_key(&[0, 0, 0, 2]).unwrap().kind,
            ControlRecordType::Other(2)
        );
        assert!(ControlRecord::parse_key(&[0, 0, 0]).is_err());
        assert!(ControlRecord::parse_key(&[0xff, 0xff, 0, 0]).is_err());
        let mut b = BatchBuilder::new().control(true);
        b.push(10, None, None, &[]).unwrap();
        let batch = batches(b.finish().unwrap(), &opts())
            .next()
            .unwrap()
            .unwrap();
        assert!(matches!(
            batch.control_record(),
            Some(Err(RecordError::InvalidControlRecord { .. }))
        ));
    }

    #[test]
    fn crc_check_can_be_disabled() {
        let mut data = sample_batch(2, Compression::None).to_vec();
        data[at::CRC] ^= 0xff;
        let lax = DecodeOptions {
            verify_crc: false,
            ..DecodeOptions::default()
        };
        let batch = batches(Bytes::from(data), &lax).next().unwrap().unwrap();
        assert_eq!(batch.records().count(), 2);
    }

    /// Everything `next_ref` yields, upgraded to owned records.
    fn collect_refs(batch: &RecordBatch) -> Vec<Result<Record, RecordError>> {
        let mut it = batch.records();
        let mut out = Vec::new();
        while let Some(r) = it.next_ref() {
            out.push(r.map(|r| r.to_record()));
        }
        assert!(it.next_ref().is_none(), "fused");
        out
    }

    #[test]
    fn borrowed_records_match_owned_ones() {
        for c in [Compression::None, Compression::Lz4] {
            let data = sample_batch(20, c);
            let batch = batches(data, &opts()).next().unwrap().unwrap();
            let owned: Vec<_> = batch.records().collect();
            assert_eq!(collect_refs(&batch), owned);
            let mut it = batch.records();
            let r = it.next_ref().unwrap().unwrap();
            assert_eq!(r.offset(), 100);
            assert_eq!(r.timestamp(), 1_000);
            assert_eq!(r.key(), Some(&b"k0"[..]));
            assert_eq!(r.value(), Some(&b"value-0"[..]));
            assert_eq!(r.header_count(), 1);
            assert_eq!(
                r.headers().collect::<Vec<_>>(),
                vec![(&b"h"[..], Some(&b"x"[..]))]
            );
        }
        // Duplicates, nulls and empties through the borrowed path.
        let body = [0, 1, 0, 0, 1, 4, 2, b'a', 1, 2, b'a', 0];
        let batch = batch_with_record_body(&body);
        let mut it = batch.records();
        let r = it.next_ref().unwrap().unwrap();
        assert_eq!(r.key(), Some(&b""[..]));
        assert_eq!(r.value(), None);
        assert_eq!(
            r.headers().collect::<Vec<_>>(),
            vec![(&b"a"[..], None), (&b"a"[..], Some(&b""[..]))]
        );
        assert_eq!(r.headers().len(), 2);
    }

    #[test]
    fn borrowed_path_reports_the_same_errors() {
        for count in [2i32, 5] {
            let mut data = sample_batch(3, Compression::None).to_vec();
            data[at::RECORD_COUNT..at::RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
            fix_crc(&mut data);
            let batch = batches(Bytes::from(data), &opts()).next().unwrap().unwrap();
            assert_eq!(collect_refs(&batch), batch.records().collect::<Vec<_>>());
        }
        for body in [
            &[0, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f][..],
            &[0, 0, 0, 3, 1, 0],
            &[0, 0, 0, 1, 1, 2, 1, 1],
            &[0, 0, 0, 1, 1, 0, 0xaa],
        ] {
            let batch = batch_with_record_body(body);
            let refs = collect_refs(&batch);
            assert_eq!(refs, batch.records().collect::<Vec<_>>());
            assert!(refs[0].is_err());
        }
        let mut data = sample_batch(3, Compression::Gzip).to_vec();
        data[RECORD_BATCH_OVERHEAD + 3] ^= 0xff;
        fix_crc(&mut data);
        let batch = batches(Bytes::from(data), &opts()).next().unwrap().unwrap();
        let refs = collect_refs(&batch);
        assert!(matches!(refs[..], [Err(RecordError::Decompression { .. })]));
    }

    #[test]
    fn record_iter_outlives_its_batch_and_is_fused() {
        let data = sample_batch(2, Compression::Snappy);
        let mut it = {
            let batch = batches(data, &opts()).next().unwrap().unwrap();
            batch.records()
        };
        assert_eq!(it.remaining(), 2);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().is_none());
        assert!(it.next().is_none());
        assert_eq!(it.size_hint(), (0, Some(0)));
    }
}
