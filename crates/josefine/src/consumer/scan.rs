//! What a fetch loop needs to know about a partition's fetched bytes before handing
//! them on: where the complete batches end, the next offset to fetch, and whether a
//! batch is corrupt. Sans-io; headers and CRCs only, records stay undecoded (the
//! consumer's own task decodes them, in parallel with the next fetch).
//!
//! Kafka may end a partition's records with a partial batch (the byte limit cut it);
//! that tail is ignored and fetched again. If not even one batch is complete, the
//! partition's byte limit was smaller than one batch: the caller grows it (old brokers;
//! KIP-74 brokers always return one whole batch).

use bytes::Bytes;

use crate::protocol::records::{batches, DecodeOptions, RecordBatch, RecordError};

/// The outcome of scanning one partition's records.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The complete, CRC-checked batches, in order.
    pub batches: Vec<RecordBatch>,
    /// A batch that failed its checks: its offset (the fetch offset when unknown) and why.
    pub corrupt: Option<(i64, RecordError)>,
    /// Bytes were returned but not one whole batch: the byte limit must grow.
    pub needs_larger_fetch: bool,
}

pub(crate) fn scan(records: Bytes, fetch_offset: i64, options: &DecodeOptions) -> Scan {
    let total = records.len();
    let mut iter = batches(records, options);
    let mut out = Vec::new();
    let mut corrupt = None;
    for batch in iter.by_ref() {
        match batch {
            Ok(batch) => out.push(batch),
            Err(err) => {
                let at = out.last().map_or(fetch_offset, RecordBatch::next_offset);
                corrupt = Some((at, err));
                break;
            }
        }
    }
    let needs_larger_fetch =
        out.is_empty() && corrupt.is_none() && total > 0 && iter.truncated_bytes() > 0;
    Scan {
        batches: out,
        corrupt,
        needs_larger_fetch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::BatchBuilder;

    fn batch(base: i64, n: usize) -> Bytes {
        let mut b = BatchBuilder::new().base_offset(base);
        for i in 0..n {
            b.push(i as i64, None, Some(b"value"), &[]).unwrap();
        }
        b.finish().unwrap()
    }

    fn concat(parts: &[&[u8]]) -> Bytes {
        Bytes::from(parts.concat())
    }

    #[test]
    fn complete_batches_give_the_next_offset() {
        let data = concat(&[&batch(0, 3), &batch(3, 2)]);
        let s = scan(data, 0, &DecodeOptions::default());
        assert_eq!(s.batches.len(), 2);
        assert_eq!(s.batches.last().unwrap().next_offset(), 5);
        assert!(s.corrupt.is_none() && !s.needs_larger_fetch);
    }

    #[test]
    fn a_partial_trailing_batch_is_left_for_the_next_fetch() {
        let second = batch(3, 2);
        let data = concat(&[&batch(0, 3), &second[..second.len() / 2]]);
        let s = scan(data, 0, &DecodeOptions::default());
        assert_eq!(s.batches.len(), 1);
        assert_eq!(s.batches.last().unwrap().next_offset(), 3);
        assert!(!s.needs_larger_fetch);
    }

    #[test]
    fn no_whole_batch_means_the_limit_must_grow() {
        let only = batch(0, 50);
        let s = scan(only.slice(..only.len() - 1), 0, &DecodeOptions::default());
        assert!(s.batches.is_empty());
        assert!(s.needs_larger_fetch);
    }

    #[test]
    fn a_corrupt_batch_is_reported_at_its_offset_after_the_good_ones() {
        let mut bad = batch(3, 2).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let data = concat(&[&batch(0, 3), &bad, &batch(5, 1)]);
        let s = scan(data, 0, &DecodeOptions::default());
        assert_eq!(s.batches.len(), 1);
        let (offset, err) = s.corrupt.unwrap();
        assert_eq!(offset, 3);
        assert!(matches!(err, RecordError::CrcMismatch { .. }), "{err:?}");
    }

    #[test]
    fn empty_records_are_nothing() {
        let s = scan(Bytes::new(), 7, &DecodeOptions::default());
        assert!(s.batches.is_empty() && s.corrupt.is_none() && !s.needs_larger_fetch);
    }
}
