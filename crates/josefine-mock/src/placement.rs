//! Which broker coordinates a key: a consumer group's id for the group
//! coordinator, a transactional id for the transaction coordinator.
//!
//! Kafka hashes the key onto a partition of an internal topic
//! (`__consumer_offsets`, `__transaction_state`) and the partition's leader
//! coordinates it. The mock has no internal topics; it hashes the key onto
//! the sorted list of brokers instead, with the same hash (Java's
//! `String.hashCode`, made non-negative as Kafka's `Utils.abs` does), so the
//! placement is stable from run to run and spreads keys over the brokers.

/// Java's `String.hashCode` over UTF-16 code units, so a key lands on the
/// index Kafka's `partitionFor` would pick for the same count.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `abs(hash(key)) % n`-th of `nodes` (sorted), or `fallback` when there
/// are none.
pub(crate) fn by_hash(key: &str, nodes: &[i32], fallback: i32) -> i32 {
    let hash = java_hash(key);
    // Kafka's Utils.abs: i32::MIN maps to 0 rather than overflowing.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    let index = usize::try_from(positive).unwrap_or(0) % nodes.len().max(1);
    nodes.get(index).copied().unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_hash_goes_to_the_first_node() {
        // "polygenelubricants".hashCode() is Integer.MIN_VALUE in Java.
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(by_hash("polygenelubricants", &[1, 2, 3], 9), 1);
    }

    #[test]
    fn spreads_over_the_nodes() {
        assert_eq!(by_hash("a", &[1, 2, 3], 9), [1, 2, 3][97 % 3]);
        assert_eq!(by_hash("a", &[], 9), 9);
    }
}
