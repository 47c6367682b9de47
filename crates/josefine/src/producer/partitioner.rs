//! Choosing a partition for a record.
//!
//! Keyed records go where the Java client's `BuiltInPartitioner` (and librdkafka's
//! `murmur2_random`) send them: `toPositive(murmur2(key)) % partitions`, so producers
//! in any language agree on where a key lives. Records without a key use the sticky
//! partitioner of KIP-480: every keyless record of a topic goes to one partition until
//! that partition's batch fills, then a different partition is picked. Batches fill up
//! instead of many tiny batches going everywhere.

use crate::fast_hash::FastMap;
use std::sync::Mutex;

/// Picks the partition of a record whose partition the caller did not set.
///
/// Implement it for custom placement; it must be cheap (it runs in `send`).
pub trait Partitioner: Send + Sync + 'static {
    /// A partition in `0..partitions` for a record of `topic` with `key`.
    fn partition(&self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32;

    /// Called when the batch of `partition` closed because it was full, so sticky
    /// strategies can move on. The default does nothing.
    fn on_batch_full(&self, _topic: &str, _partition: i32) {}
}

/// Kafka's murmur2 (32-bit, seed `0x9747b28c`), as `Utils.murmur2` in the Java client.
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
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
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives `key` among `partitions`.
pub(crate) fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// murmur2 for keyed records, KIP-480 sticky for keyless ones. The default.
///
/// A producer built without [`partitioner`](crate::ProducerBuilder::partitioner)
/// places records this same way, with the sticky choice kept beside the topic's
/// batches (no lock of its own); this type is for partitioners that wrap or fall back
/// to the default one.
#[derive(Debug, Default)]
pub struct DefaultPartitioner {
    sticky: Mutex<FastMap<String, Sticky>>,
}

/// A topic's sticky choice for keyless records (KIP-480): the partition they go to,
/// or, after its batch filled, the one to move away from.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Sticky {
    /// Nothing chosen yet.
    #[default]
    Unset,
    Current(i32),
    MoveFrom(i32),
}

impl Sticky {
    /// The partition for the next keyless record among `partitions`.
    pub(crate) fn choose(&mut self, partitions: i32) -> i32 {
        let avoid = match *self {
            Sticky::Current(p) if p < partitions => return p,
            Sticky::MoveFrom(p) => Some(p),
            _ => None,
        };
        let p = random_partition(partitions, avoid);
        *self = Sticky::Current(p);
        p
    }

    /// The batch of `partition` closed because it was full: keyless records move on if
    /// they were sticking to it. A keyed batch filling up elsewhere says nothing.
    pub(crate) fn batch_full(&mut self, partition: i32) {
        if matches!(self, Sticky::Current(p) if *p == partition) {
            *self = Sticky::MoveFrom(partition);
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32 {
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        let mut sticky = self
            .sticky
            .lock()
            .expect("sticky map lock is never held across a panic");
        match sticky.get_mut(topic) {
            Some(state) => state.choose(partitions),
            None => {
                let mut state = Sticky::Unset;
                let p = state.choose(partitions);
                sticky.insert(topic.to_string(), state);
                p
            }
        }
    }

    fn on_batch_full(&self, topic: &str, partition: i32) {
        let mut sticky = self
            .sticky
            .lock()
            .expect("sticky map lock is never held across a panic");
        if let Some(state) = sticky.get_mut(topic) {
            state.batch_full(partition);
        }
    }
}

/// A random partition in `0..partitions`, other than `avoid` when there is a choice.
fn random_partition(partitions: i32, avoid: Option<i32>) -> i32 {
    let partitions = partitions.max(1);
    loop {
        let p = (crate::backoff::jitter_unit() * f64::from(partitions)) as i32;
        let p = p.min(partitions - 1);
        if partitions == 1 || Some(p) != avoid {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn keyed_records_land_where_java_puts_them() {
        // toPositive(-973932308) % 6 = 1173551340 % 6
        assert_eq!(partition_for_key(b"21", 6), 1_173_551_340 % 6);
        let p = DefaultPartitioner::default();
        for key in [&b"a"[..], b"order-42", b""] {
            assert_eq!(p.partition("t", Some(key), 12), partition_for_key(key, 12));
        }
    }

    #[test]
    fn keyless_records_stick_until_the_batch_fills() {
        let p = DefaultPartitioner::default();
        let first = p.partition("t", None, 8);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, 8), first);
        }
        p.on_batch_full("t", first);
        let next = p.partition("t", None, 8);
        assert_ne!(next, first);
        assert!((0..8).contains(&next));
        // A full batch of another partition does not move the sticky one.
        p.on_batch_full("t", (next + 1) % 8);
        assert_eq!(p.partition("t", None, 8), next);
    }

    #[test]
    fn sticky_partition_is_redrawn_when_partitions_shrink() {
        let p = DefaultPartitioner::default();
        for _ in 0..50 {
            assert!(p.partition("t", None, 3) < 3);
            p.on_batch_full("t", p.partition("t", None, 3));
        }
        assert_eq!(p.partition("u", None, 1), 0);
    }
}
