//! The fixed header of a magic-2 record batch (KIP-98), which is all of the
//! stored data the mock ever reads.
//!
//! Layout (<https://kafka.apache.org/documentation/#recordbatch>), big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | base offset |
//! | 8..12 | length (of everything after this field) |
//! | 12..16 | partition leader epoch |
//! | 16 | magic (2) |
//! | 17..21 | CRC-32C of bytes 21.. |
//! | 21..23 | attributes |
//! | 23..27 | last offset delta |
//! | 27..35 | base timestamp |
//! | 35..43 | max timestamp |
//! | 43..51 | producer id |
//! | 51..53 | producer epoch |
//! | 53..57 | base sequence |
//! | 57..61 | record count |
//!
//! The base offset and the partition leader epoch lie outside the CRC on
//! purpose: the leader assigns both on append without re-checksumming, and
//! the mock does the same. Records themselves are never parsed, so the mock
//! stores compressed batches of any codec as they came.

use kafka_protocol::ResponseError;

/// Bytes in the fixed header, up to and including the record count.
pub(crate) const HEADER_LEN: usize = 61;

/// The base offset and length fields that precede every batch.
pub(crate) const LOG_OVERHEAD: usize = 12;

/// Kafka's `max.message.bytes` default (1 MiB plus the log overhead): the
/// largest batch a topic accepts.
pub(crate) const MAX_BATCH_BYTES: usize = 1_048_588;

const CRC_START: usize = 21;

const COMPRESSION_MASK: i16 = 0x07;
const ZSTD: i16 = 4;
/// Attribute bit 4: the batch belongs to a transaction (KIP-98).
pub(crate) const TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: the batch holds a control record (a transaction marker).
pub(crate) const CONTROL: i16 = 0x20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) base_offset: i64,
    pub(crate) length: i32,
    pub(crate) partition_leader_epoch: i32,
    pub(crate) magic: i8,
    pub(crate) crc: u32,
    pub(crate) attributes: i16,
    pub(crate) last_offset_delta: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) record_count: i32,
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

impl BatchHeader {
    /// Reads the fixed header; `None` when fewer than [`HEADER_LEN`] bytes.
    /// Nothing is validated.
    pub(crate) fn parse(bytes: &[u8]) -> Option<BatchHeader> {
        let bytes = bytes.get(..HEADER_LEN)?;
        Some(BatchHeader {
            base_offset: i64::from_be_bytes(array(bytes, 0)),
            length: i32::from_be_bytes(array(bytes, 8)),
            partition_leader_epoch: i32::from_be_bytes(array(bytes, 12)),
            magic: i8::from_be_bytes(array(bytes, 16)),
            crc: u32::from_be_bytes(array(bytes, 17)),
            attributes: i16::from_be_bytes(array(bytes, 21)),
            last_offset_delta: i32::from_be_bytes(array(bytes, 23)),
            base_timestamp: i64::from_be_bytes(array(bytes, 27)),
            max_timestamp: i64::from_be_bytes(array(bytes, 35)),
            producer_id: i64::from_be_bytes(array(bytes, 43)),
            producer_epoch: i16::from_be_bytes(array(bytes, 51)),
            base_sequence: i32::from_be_bytes(array(bytes, 53)),
            record_count: i32::from_be_bytes(array(bytes, 57)),
        })
    }

    /// Whether the batch carries a producer id (Kafka's `hasProducerId`).
    pub(crate) fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Whether the batch belongs to a transaction (attribute bit 4).
    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    /// Whether the batch is a control batch (attribute bit 5).
    pub(crate) fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }

    /// The sequence number of the last record, wrapping past `i32::MAX` to 0
    /// as Kafka's `DefaultRecordBatch.incrementSequence` does.
    pub(crate) fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0. Computed in `i64`
/// so that nonsense from a test's hand-made batch cannot overflow.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let next = i64::from(sequence) + i64::from(increment);
    let wrapped = if next > i64::from(i32::MAX) {
        next - i64::from(i32::MAX) - 1
    } else {
        next
    };
    i32::try_from(wrapped).unwrap_or(-1)
}

/// Why a produced `records` field is refused, as the per-partition error
/// code Kafka would answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) code: i16,
    pub(crate) message: &'static str,
}

impl Invalid {
    const fn new(error: ResponseError, message: &'static str) -> Self {
        Invalid {
            code: error.code(),
            message,
        }
    }
}

/// Checks what a Produce request (v3+) carries for one partition: exactly
/// one well-formed magic-2 batch, in the order Kafka checks
/// (`ProduceRequest.validateRecords`, then `LogValidator`).
///
/// * null, empty, a second batch or trailing bytes, a magic other than 2, a
///   record count that disagrees with the last offset delta, a control batch
///   or a producer id without a base sequence: INVALID_RECORD;
/// * a length that disagrees with the bytes, a bad CRC or an unknown codec:
///   CORRUPT_MESSAGE;
/// * zstd below Produce v7: UNSUPPORTED_COMPRESSION_TYPE (KIP-110);
/// * larger than `max.message.bytes`: MESSAGE_TOO_LARGE.
///
/// Whether a transactional batch may be written is the transaction
/// coordinator's question, asked by Produce afterwards.
pub(crate) fn validate_produced(records: &[u8], version: i16) -> Result<BatchHeader, Invalid> {
    use ResponseError as E;
    if records.is_empty() {
        return Err(Invalid::new(
            E::InvalidRecord,
            "Produce requests must have at least one record batch per partition",
        ));
    }
    if let Some(&magic) = records.get(16) {
        if magic != 2 {
            return Err(Invalid::new(
                E::InvalidRecord,
                "Produce requests with version 3 and above may only contain magic 2 record batches",
            ));
        }
    }
    let header = BatchHeader::parse(records).ok_or(Invalid::new(
        E::CorruptMessage,
        "The record batch is shorter than its header",
    ))?;
    let size = usize::try_from(header.length)
        .ok()
        .filter(|length| *length >= HEADER_LEN - LOG_OVERHEAD)
        .map(|length| length + LOG_OVERHEAD)
        .ok_or(Invalid::new(
            E::CorruptMessage,
            "The record batch length is too small for its header",
        ))?;
    if size > records.len() {
        return Err(Invalid::new(
            E::CorruptMessage,
            "The record batch is longer than the records sent",
        ));
    }
    if size < records.len() {
        return Err(Invalid::new(
            E::InvalidRecord,
            "Produce requests with version 3 and above may only contain exactly one record batch per partition",
        ));
    }
    if size > MAX_BATCH_BYTES {
        return Err(Invalid::new(
            E::MessageTooLarge,
            "The record batch is larger than max.message.bytes",
        ));
    }
    if crc32c::crc32c(&records[CRC_START..]) != header.crc {
        return Err(Invalid::new(
            E::CorruptMessage,
            "The record batch's CRC-32C does not match its contents",
        ));
    }
    match header.attributes & COMPRESSION_MASK {
        ZSTD if version < 7 => {
            return Err(Invalid::new(
                E::UnsupportedCompressionType,
                "zstd needs Produce v7 or above",
            ))
        }
        codec if codec > ZSTD => {
            return Err(Invalid::new(
                E::CorruptMessage,
                "The record batch names an unknown compression codec",
            ))
        }
        _ => {}
    }
    if header.record_count <= 0
        || header.last_offset_delta.checked_add(1) != Some(header.record_count)
    {
        return Err(Invalid::new(
            E::InvalidRecord,
            "The record count disagrees with the last offset delta",
        ));
    }
    if header.is_control() {
        return Err(Invalid::new(
            E::InvalidRecord,
            "Clients are not allowed to write control records",
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(Invalid::new(
            E::InvalidRecord,
            "A batch with a producer id needs a base sequence",
        ));
    }
    Ok(header)
}

/// Writes the offset the log assigned into a stored batch.
pub(crate) fn set_base_offset(batch: &mut [u8], offset: i64) {
    if let Some(field) = batch.get_mut(0..8) {
        field.copy_from_slice(&offset.to_be_bytes());
    }
}

/// Stamps the leader epoch under which a batch was appended, as a Kafka
/// leader does; consumers read it back for KIP-320's truncation detection.
pub(crate) fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if let Some(field) = batch.get_mut(12..16) {
        field.copy_from_slice(&epoch.to_be_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid batch: `count` records' worth of header and an opaque
    /// body, with a correct CRC.
    pub(crate) fn batch(count: i32, producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
        let body = vec![0xabu8; 10];
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&1_000i64.to_be_bytes());
        b.extend_from_slice(&(1_000 + i64::from(count)).to_be_bytes());
        b.extend_from_slice(&producer_id.to_be_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(&sequence.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&body);
        fix_crc(&mut b);
        b
    }

    pub(crate) fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn a_valid_batch_passes_and_parses() {
        let b = batch(3, 7, 1, 5);
        let header = validate_produced(&b, 9).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.producer_id, 7);
        assert_eq!(header.last_sequence(), 7);
        assert_eq!(header.length as usize + LOG_OVERHEAD, b.len());
    }

    #[test]
    fn refusals_carry_kafkas_codes() {
        let code = |b: &[u8], v: i16| validate_produced(b, v).unwrap_err().code;
        let good = batch(2, -1, -1, -1);
        assert_eq!(code(&[], 9), 87);
        assert_eq!(code(&good[..30], 9), 2, "truncated header");
        assert_eq!(code(&good[..good.len() - 1], 9), 2, "truncated body");
        let mut two = good.clone();
        two.extend_from_slice(&good);
        assert_eq!(code(&two, 9), 87);
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        assert_eq!(code(&bad_crc, 9), 2);
        let mut magic1 = good.clone();
        magic1[16] = 1;
        assert_eq!(code(&magic1, 9), 87);
        let mut zstd = good.clone();
        zstd[22] = 4;
        fix_crc(&mut zstd);
        assert_eq!(code(&zstd, 6), 76);
        assert!(validate_produced(&zstd, 7).is_ok());
        let mut miscounted = good.clone();
        miscounted[60] = 9;
        fix_crc(&mut miscounted);
        assert_eq!(code(&miscounted, 9), 87);
        let mut transactional = batch(1, 5, 0, 0);
        transactional[22] = 0x10;
        fix_crc(&mut transactional);
        let header = validate_produced(&transactional, 9).unwrap();
        assert!(header.is_transactional() && !header.is_control());
        assert_eq!(code(&batch(1, 5, 0, -1), 9), 87, "pid without sequence");
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(5, 2), 7);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn offset_and_epoch_rewrites_keep_the_crc_valid() {
        let mut b = batch(2, -1, -1, -1);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 3);
        let header = validate_produced(&b, 9).unwrap();
        assert_eq!((header.base_offset, header.partition_leader_epoch), (42, 3));
    }
}
