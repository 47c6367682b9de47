//! Transaction markers: the control batches the transaction coordinator
//! writes to every partition of a transaction when it ends (KIP-98).
//!
//! A marker is a magic-2 batch with attributes `CONTROL | TRANSACTIONAL`,
//! the producer's id and epoch, no sequence, and one control record
//! (<https://kafka.apache.org/documentation/#controlbatch>):
//!
//! * key: version (int16, 0) and type (int16: 0 ABORT, 1 COMMIT);
//! * value (Kafka's `EndTransactionMarker`): version (int16, 0) and the
//!   coordinator epoch (int32).
//!
//! Consumers skip control batches; under `read_committed` an ABORT marker
//! ends the aborted producer's records, a COMMIT marker nothing at all.

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{CONTROL, TRANSACTIONAL};
use crate::produce::{encode_batch_as, BatchFields, Record};

/// The control record type of an ABORT marker.
pub(crate) const ABORT: i16 = 0;
/// The control record type of a COMMIT marker.
pub(crate) const COMMIT: i16 = 1;

/// The marker ending `producer_id`'s transaction at `producer_epoch`, with
/// base offset 0 and leader epoch -1 for the log to fill in.
pub(crate) fn encode(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Bytes {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(if commit { COMMIT } else { ABORT });
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let record = Record::new().key(key.freeze()).value(value.freeze());
    encode_batch_as(
        &[(&record, timestamp)],
        BatchFields {
            attributes: CONTROL | TRANSACTIONAL,
            producer_id,
            producer_epoch,
            base_sequence: -1,
        },
    )
}

/// Whether a control batch is a COMMIT (`Some(true)`) or an ABORT
/// (`Some(false)`) marker, read from its first record's key; `None` when the
/// batch is compressed, too short, or not a marker. For batches a test
/// appends itself ([`MockCluster::append_batch`](crate::MockCluster::append_batch)).
pub(crate) fn control_type(batch: &[u8]) -> Option<bool> {
    let header = crate::batch::BatchHeader::parse(batch)?;
    if !header.is_control() || header.attributes & 0x07 != 0 {
        return None;
    }
    let mut rest = batch.get(crate::batch::HEADER_LEN..)?;
    let _length = read_varint(&mut rest)?;
    let (_attributes, tail) = rest.split_first()?;
    rest = tail;
    let _timestamp_delta = read_varint(&mut rest)?;
    let _offset_delta = read_varint(&mut rest)?;
    let key_length = read_varint(&mut rest)?;
    if key_length < 4 {
        return None;
    }
    match i16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]) {
        COMMIT => Some(true),
        ABORT => Some(false),
        _ => None,
    }
}

/// A zigzag varint (protobuf's), advancing `bytes` past it.
fn read_varint(bytes: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let signed = i64::try_from(value >> 1).ok()?;
            return Some(if value & 1 == 0 { signed } else { -signed - 1 });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchHeader, HEADER_LEN};

    #[test]
    fn a_marker_is_one_control_record_with_the_producer() {
        let marker = encode(1000, 3, true, 7, 42);
        let header = BatchHeader::parse(&marker).unwrap();
        assert!(header.is_control() && header.is_transactional());
        assert_eq!((header.producer_id, header.producer_epoch), (1000, 3));
        assert_eq!((header.base_sequence, header.record_count), (-1, 1));
        assert_eq!((header.base_timestamp, header.max_timestamp), (42, 42));
        assert_eq!(header.crc, crc32c::crc32c(&marker[21..]));
        // The record: length 16, attributes, timestamp and offset deltas 0,
        // key of 4 bytes (zigzag 8), value of 6 bytes (zigzag 12), no headers.
        let record = &marker[HEADER_LEN..];
        assert_eq!(
            record,
            [32, 0, 0, 0, 8, 0, 0, 0, 1, 12, 0, 0, 0, 0, 0, 7, 0]
        );
        let abort = encode(1000, 3, false, 0, 42);
        assert_eq!(abort[HEADER_LEN + 5..HEADER_LEN + 9], [0, 0, 0, 0]);
        assert_eq!(control_type(&marker), Some(true));
        assert_eq!(control_type(&abort), Some(false));
        assert_eq!(control_type(&marker[..HEADER_LEN + 6]), None, "cut short");
    }

    #[test]
    fn varints_read_back() {
        for (bytes, value) in [(&[0u8][..], 0), (&[1], -1), (&[2], 1), (&[0xac, 0x02], 150)] {
            let mut rest = bytes;
            assert_eq!(read_varint(&mut rest), Some(value));
            assert!(rest.is_empty());
        }
        assert_eq!(read_varint(&mut &[0x80u8][..]), None);
    }
}
