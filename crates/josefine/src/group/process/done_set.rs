//! The offsets finished above a partition's committed offset, written into the
//! OffsetCommit metadata string so that the partition's next owner skips them.
//!
//! A parallel processor finishes records out of order: it commits the lowest offset
//! not yet finished (the watermark), and everything finished above it goes into the
//! commit's metadata. The format is versioned and names the watermark it belongs to:
//!
//! ```text
//! jd1 <kind> <base> . <payload>         (no spaces)
//! ```
//!
//! `kind` is `b` (a bitset: bit `i` of the payload, least significant first, is
//! offset `base + 1 + i`) or `r` (runs: unsigned varints alternating "not done" and
//! "done" counts from `base + 1`, so the first count may be 0); `base` is the
//! committed offset in decimal (itself never done: it is the watermark); `payload` is
//! URL-safe base64 without padding. The encoder writes whichever kind is shorter.
//!
//! A set too large for the broker's limit (`offset.metadata.max.bytes`, 4096 by
//! default) loses its highest offsets until it fits: the next owner then processes
//! those records again, which at-least-once allows; it never skips a record that was
//! not finished. A string that does not decode, or names another base, is ignored
//! the same way.

use std::ops::Range;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The prefix of a done set's metadata (format version 1).
const PREFIX: &str = "jd1";

/// Offsets finished above a partition's committed offset, as a
/// [`Processor`](crate::Processor) writes them into a commit's metadata: the building
/// block for users who finish records out of order themselves (from a
/// [`ClaimStream`](crate::ClaimStream), say): [`encode`](Self::encode) the set above
/// the offset you mark with [`Claim::mark_offset`](crate::Claim::mark_offset), and
/// [`decode`](Self::decode) [`Claim::metadata`](crate::Claim::metadata) when a claim
/// starts to skip what the previous owner finished. Held as sorted, disjoint ranges:
/// memory is bounded by the number of ranges, whatever they span.
///
/// ```
/// use josefine::DoneSet;
/// // Committed offset 10 (not finished); 12, 13 and 20 finished above it.
/// let done = DoneSet::from_ranges([12..14, 20..21]);
/// let metadata = done.encode(10, 4096).unwrap();
/// let back = DoneSet::decode(&metadata, 10).unwrap();
/// assert!(back.contains(13) && !back.contains(14));
/// assert_eq!(DoneSet::decode(&metadata, 11), None, "it belongs to offset 10");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoneSet {
    ranges: Vec<Range<i64>>,
}

impl DoneSet {
    /// From ranges sorted by start (overlapping and adjacent ones are merged, empty
    /// ones dropped).
    pub fn from_ranges(ranges: impl IntoIterator<Item = Range<i64>>) -> Self {
        let mut out: Vec<Range<i64>> = Vec::new();
        for r in ranges {
            if r.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        Self { ranges: out }
    }

    /// Whether it holds no offset.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The offsets, as sorted, disjoint, non-adjacent ranges.
    pub fn ranges(&self) -> &[Range<i64>] {
        &self.ranges
    }

    /// How many offsets it holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| (r.end - r.start) as u64).sum()
    }

    /// Whether `offset` is in it.
    pub fn contains(&self, offset: i64) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= offset);
        self.ranges.get(i).is_some_and(|r| r.start <= offset)
    }

    /// The part of it at or above `from`.
    pub(crate) fn at_or_above(&self, from: i64) -> impl Iterator<Item = Range<i64>> + '_ {
        let i = self.ranges.partition_point(|r| r.end <= from);
        self.ranges[i..]
            .iter()
            .map(move |r| r.start.max(from)..r.end)
    }

    /// How far above its base a done set may reach and always fit in `limit` bytes
    /// (as a bitset, with the longest base): what a
    /// [`Processor`](crate::Processor) starts records within.
    pub fn max_span(limit: usize) -> i64 {
        let header = PREFIX.len() + 1 + "-9223372036854775808".len() + 1;
        let payload = limit.saturating_sub(header) / 4 * 3;
        (payload as i64 * 8).max(1)
    }

    /// The metadata string for this set above `base`, at most `limit` bytes: the
    /// highest offsets are left out until it fits. Offsets at or below `base` are
    /// ignored. `None` when there is nothing to write (or not even one range fits).
    pub fn encode(&self, base: i64, limit: usize) -> Option<String> {
        let ranges: Vec<Range<i64>> = self.at_or_above(base + 1).collect();
        let mut keep = ranges.len();
        while keep > 0 {
            let text = encode_ranges(base, &ranges[..keep]);
            if text.len() <= limit {
                return Some(text);
            }
            // Drop ranges in proportion to the excess (at least one) and try again:
            // a few rounds at most.
            let excess = (text.len() - limit) as f64 / text.len() as f64;
            let drop = ((keep as f64 * excess).ceil() as usize).max(1);
            keep = keep.saturating_sub(drop);
        }
        None
    }

    /// The set in `metadata`, if it is a done set above `base`; anything else (other
    /// metadata, another base, a malformed string) is `None`. Never panics, and holds
    /// at most four ranges per payload byte.
    pub fn decode(metadata: &str, base: i64) -> Option<Self> {
        let rest = metadata.strip_prefix(PREFIX)?;
        let kind = rest.as_bytes().first().copied()?;
        let (base_text, payload) = rest.get(1..)?.split_once('.')?;
        if base_text.parse::<i64>().ok()? != base {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let first = base.checked_add(1)?;
        match kind {
            b'b' => decode_bits(first, &bytes),
            b'r' => decode_runs(first, &bytes),
            _ => None,
        }
    }
}

fn encode_ranges(base: i64, ranges: &[Range<i64>]) -> String {
    let first = base + 1;
    let span = ranges.last().map_or(0, |r| (r.end - first) as u64);
    let mut runs = Vec::with_capacity(ranges.len() * 4);
    let mut at = first;
    for r in ranges {
        put_varint(&mut runs, (r.start - at) as u64);
        put_varint(&mut runs, (r.end - r.start) as u64);
        at = r.end;
    }
    let bits_len = span.div_ceil(8);
    let (kind, payload) = if bits_len < runs.len() as u64 {
        let mut bits = vec![0u8; bits_len as usize];
        for r in ranges {
            for offset in r.clone() {
                let i = (offset - first) as usize;
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        ('b', bits)
    } else {
        ('r', runs)
    };
    format!("{PREFIX}{kind}{base}.{}", URL_SAFE_NO_PAD.encode(payload))
}

fn decode_bits(first: i64, bits: &[u8]) -> Option<DoneSet> {
    first.checked_add(i64::try_from(bits.len()).ok()?.checked_mul(8)?)?;
    let mut ranges: Vec<Range<i64>> = Vec::new();
    for (i, byte) in bits.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                let offset = first + (i * 8 + bit) as i64;
                match ranges.last_mut() {
                    Some(last) if last.end == offset => last.end += 1,
                    _ => ranges.push(offset..offset + 1),
                }
            }
        }
    }
    Some(DoneSet { ranges })
}

fn decode_runs(first: i64, mut bytes: &[u8]) -> Option<DoneSet> {
    let mut ranges = Vec::new();
    let mut at = first;
    while !bytes.is_empty() {
        let skip = i64::try_from(get_varint(&mut bytes)?).ok()?;
        let take = i64::try_from(get_varint(&mut bytes)?).ok()?;
        let start = at.checked_add(skip)?;
        let end = start.checked_add(take)?;
        ranges.push(start..end);
        at = end;
    }
    Some(DoneSet::from_ranges(ranges))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ranges: &[Range<i64>]) -> DoneSet {
        DoneSet::from_ranges(ranges.iter().cloned())
    }

    #[test]
    fn a_sparse_set_is_written_as_runs_and_a_dense_one_as_bits() {
        let sparse = set(&[11..12, 5000..5001]);
        let text = sparse.encode(10, 4096).unwrap();
        assert!(text.starts_with("jd1r10."), "{text}");
        assert_eq!(DoneSet::decode(&text, 10), Some(sparse));
        let dense = set(&[12..13, 14..15, 16..17, 18..19, 20..21, 22..23]);
        let text = dense.encode(10, 4096).unwrap();
        assert!(text.starts_with("jd1b10."), "{text}");
        assert_eq!(DoneSet::decode(&text, 10), Some(dense));
    }

    #[test]
    fn another_base_or_other_metadata_is_ignored() {
        let text = set(&[3..5]).encode(1, 4096).unwrap();
        assert_eq!(DoneSet::decode(&text, 2), None);
        assert_eq!(DoneSet::decode("my own metadata", 1), None);
        assert_eq!(DoneSet::decode("", 1), None);
        assert_eq!(DoneSet::decode("jd1x1.AA", 1), None);
        assert_eq!(DoneSet::decode("jd1r1.gICAgICAgICAgICA", 1), None);
    }

    #[test]
    fn nothing_above_the_base_writes_nothing() {
        assert_eq!(DoneSet::default().encode(7, 4096), None);
        assert_eq!(set(&[2..8]).encode(7, 4096), None);
    }

    #[test]
    fn a_set_within_the_max_span_always_fits() {
        for limit in [40, 120, 4096] {
            let span = DoneSet::max_span(limit);
            // The worst case for runs: every other offset.
            let base = i64::MAX - span - 10;
            let alternate = DoneSet::from_ranges((0..span / 2).map(|i| {
                let o = base + 1 + 2 * i;
                o..o + 1
            }));
            let text = alternate.encode(base, limit).unwrap();
            assert!(text.len() <= limit);
            assert_eq!(
                DoneSet::decode(&text, base),
                Some(alternate),
                "nothing left out"
            );
        }
    }

    #[test]
    fn membership() {
        let s = set(&[3..5, 8..9]);
        let inside: Vec<i64> = (0..10).filter(|&o| s.contains(o)).collect();
        assert_eq!(inside, [3, 4, 8]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.at_or_above(4).collect::<Vec<_>>(), [4..5, 8..9]);
    }

    /// Sorted disjoint ranges above `base` built from gaps and lengths.
    fn ranges_strategy() -> impl Strategy<Value = (i64, Vec<Range<i64>>)> {
        (
            0i64..1 << 40,
            prop::collection::vec((0i64..3000, 1i64..200), 0..300),
        )
            .prop_map(|(base, steps)| {
                let mut at = base + 1;
                let mut ranges = Vec::new();
                for (gap, len) in steps {
                    let start = at + gap;
                    ranges.push(start..start + len);
                    at = start + len + 1;
                }
                (base, ranges)
            })
    }

    proptest! {
        #[test]
        fn encoding_round_trips_within_the_limit((base, ranges) in ranges_strategy(), limit in 16usize..5000) {
            let done = DoneSet::from_ranges(ranges);
            match done.encode(base, limit) {
                None => prop_assert!(done.is_empty() || limit < 64),
                Some(text) => {
                    prop_assert!(text.len() <= limit);
                    let back = DoneSet::decode(&text, base).expect("decodes");
                    // What was left out is only ever the highest offsets.
                    let kept = back.ranges().len();
                    prop_assert!(kept >= 1);
                    prop_assert_eq!(&back.ranges()[..kept - 1], &done.ranges()[..kept - 1]);
                    let last = &back.ranges()[kept - 1];
                    prop_assert!(done.contains(last.start) && done.contains(last.end - 1));
                    for r in back.ranges() {
                        prop_assert!(done.contains(r.start) && done.contains(r.end - 1));
                    }
                    if text.len() < limit / 2 {
                        prop_assert_eq!(&back, &done);
                    }
                }
            }
        }

        #[test]
        fn the_shorter_kind_is_chosen((base, ranges) in ranges_strategy()) {
            let done = DoneSet::from_ranges(ranges);
            if let Some(text) = done.encode(base, usize::MAX) {
                let back = DoneSet::decode(&text, base);
                prop_assert_eq!(back.as_ref(), Some(&done));
                let first = base + 1;
                let span = (done.ranges().last().unwrap().end - first) as usize;
                let bits = span.div_ceil(8);
                let mut runs = Vec::new();
                let mut at = first;
                for r in done.ranges() {
                    put_varint(&mut runs, (r.start - at) as u64);
                    put_varint(&mut runs, (r.end - r.start) as u64);
                    at = r.end;
                }
                let payload = bits.min(runs.len());
                let header = format!("{PREFIX}b{base}.").len();
                prop_assert_eq!(text.len(), header + (4 * payload).div_ceil(3));
            }
        }

        #[test]
        fn any_string_decodes_without_panicking(s in ".{0,64}", base in any::<i64>()) {
            let _ = DoneSet::decode(&s, base);
            let _ = DoneSet::decode(&format!("jd1r{base}.{s}"), base);
            let _ = DoneSet::decode(&format!("jd1b{base}.{s}"), base);
        }
    }
}
