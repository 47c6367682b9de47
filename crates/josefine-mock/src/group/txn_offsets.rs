//! Transactional offset commits (KIP-98): the offsets a TxnOffsetCommit
//! stores wait, per group and producer id, for their transaction to end.
//! A COMMIT makes them the group's committed offsets, an ABORT drops them;
//! until then OffsetFetch with `require_stable` (KIP-447) answers
//! UNSTABLE_OFFSET_COMMIT for their partitions, and a plain OffsetFetch the
//! last committed offset.
//!
//! Kafka's `OffsetMetadataManager` keeps them the same way
//! (`pendingTransactionalOffsets` by producer id, `openTransactionsByGroup`)
//! and settles them when the transaction's marker reaches the group's
//! `__consumer_offsets` partition. They belong to the cluster, not to the
//! group's coordinator: they survive a coordinator move, and a group deleted
//! meanwhile comes back when they commit.

use std::collections::BTreeMap;

use super::Committed;

/// Offsets by (topic, partition).
pub(crate) type Offsets = BTreeMap<(String, i32), Committed>;

/// Every transaction's pending offsets.
#[derive(Debug, Default)]
pub(crate) struct PendingOffsets {
    by_group: BTreeMap<String, BTreeMap<i64, Offsets>>,
}

impl PendingOffsets {
    /// Stores (or replaces) one pending offset of `producer_id` in `group`.
    pub(crate) fn store(
        &mut self,
        group: &str,
        producer_id: i64,
        key: (String, i32),
        committed: Committed,
    ) {
        self.by_group
            .entry(group.to_owned())
            .or_default()
            .entry(producer_id)
            .or_default()
            .insert(key, committed);
    }

    /// Takes out the pending offsets `producer_id` left in `group`, for its
    /// transaction's end.
    pub(crate) fn take(&mut self, group: &str, producer_id: i64) -> Offsets {
        let Some(producers) = self.by_group.get_mut(group) else {
            return Offsets::new();
        };
        let taken = producers.remove(&producer_id).unwrap_or_default();
        if producers.is_empty() {
            self.by_group.remove(group);
        }
        taken
    }

    /// Whether any transaction has an offset pending for the partition.
    pub(crate) fn is_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.by_group.get(group).is_some_and(|producers| {
            producers
                .values()
                .any(|offsets| offsets.contains_key(&(topic.to_owned(), partition)))
        })
    }

    /// The pending offset of the partition, if a transaction has one (the
    /// latest producer's, should two have one).
    pub(crate) fn pending(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let key = (topic.to_owned(), partition);
        self.by_group
            .get(group)?
            .values()
            .rev()
            .find_map(|offsets| offsets.get(&key).map(|c| c.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }

    #[test]
    fn offsets_wait_per_group_and_producer() {
        let mut pending = PendingOffsets::default();
        pending.store("g", 7, ("t".into(), 0), at(5));
        pending.store("g", 7, ("t".into(), 0), at(6));
        pending.store("g", 8, ("t".into(), 1), at(9));
        assert!(pending.is_pending("g", "t", 0));
        assert!(!pending.is_pending("h", "t", 0));
        assert_eq!(pending.pending("g", "t", 0), Some(6));
        let taken = pending.take("g", 7);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[&("t".to_owned(), 0)].offset, 6);
        assert!(!pending.is_pending("g", "t", 0));
        assert!(pending.is_pending("g", "t", 1));
        assert!(pending.take("g", 7).is_empty());
        pending.take("g", 8);
        assert!(pending.by_group.is_empty());
    }
}
