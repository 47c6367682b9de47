//! Idempotent-producer state, sans-io: the producer id and epoch from InitProducerId,
//! and the next sequence number of every partition (KIP-98; epoch bumps of KIP-360).
//!
//! A batch gets its stamp (producer id, epoch, base sequence) when it is first sent and
//! keeps it across retries, so the broker recognises a retry of a batch it already
//! wrote and does not write it twice. After an epoch bump every partition starts again
//! at sequence 0, and a batch stamped under the old epoch is stamped afresh.

use std::collections::HashMap;

use super::accumulator::TopicPartition;

/// What an idempotent batch carries in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// The producer id and epoch the broker gave us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

/// Sequence numbers of one idempotent producer.
#[derive(Debug, Default)]
pub(crate) struct Sequences {
    identity: Option<ProducerIdentity>,
    next: HashMap<TopicPartition, i32>,
}

impl Sequences {
    pub(crate) fn identity(&self) -> Option<ProducerIdentity> {
        self.identity
    }

    /// Installs a new identity (first InitProducerId or an epoch bump): every partition
    /// starts again at sequence 0.
    pub(crate) fn reset(&mut self, identity: ProducerIdentity) {
        self.identity = Some(identity);
        self.next.clear();
    }

    /// The stamp a batch of `count` records for `tp` must carry now. A batch that
    /// already has a stamp of the current identity keeps it (a retry); otherwise it
    /// gets the partition's next sequence, which then advances by `count`.
    pub(crate) fn stamp(
        &mut self,
        tp: &TopicPartition,
        current: Option<Stamp>,
        count: i32,
    ) -> Option<Stamp> {
        let identity = self.identity?;
        if let Some(stamp) = current {
            if stamp.producer_id == identity.id && stamp.producer_epoch == identity.epoch {
                return Some(stamp);
            }
        }
        let next = self.next.entry(tp.clone()).or_insert(0);
        let stamp = Stamp {
            producer_id: identity.id,
            producer_epoch: identity.epoch,
            base_sequence: *next,
        };
        *next = increment_sequence(*next, count);
        Some(stamp)
    }
}

/// Sequence arithmetic as Kafka's `DefaultRecordBatch.incrementSequence`: sequences
/// wrap from `i32::MAX` to 0.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from("t"),
            partition: p,
        }
    }

    #[test]
    fn no_identity_no_stamp() {
        let mut s = Sequences::default();
        assert_eq!(s.stamp(&tp(0), None, 5), None);
    }

    #[test]
    fn sequences_advance_per_partition_and_retries_keep_their_stamp() {
        let mut s = Sequences::default();
        s.reset(ProducerIdentity { id: 9, epoch: 0 });
        let a = s.stamp(&tp(0), None, 5).unwrap();
        assert_eq!(a.base_sequence, 0);
        let b = s.stamp(&tp(0), None, 3).unwrap();
        assert_eq!(b.base_sequence, 5);
        assert_eq!(s.stamp(&tp(1), None, 1).unwrap().base_sequence, 0);
        // A retry of `a` keeps sequence 0 and does not advance the counter.
        assert_eq!(s.stamp(&tp(0), Some(a), 5), Some(a));
        assert_eq!(s.stamp(&tp(0), None, 1).unwrap().base_sequence, 8);
    }

    #[test]
    fn an_epoch_bump_restamps_from_zero() {
        let mut s = Sequences::default();
        s.reset(ProducerIdentity { id: 9, epoch: 0 });
        let old = s.stamp(&tp(0), None, 5).unwrap();
        s.stamp(&tp(0), None, 5);
        s.reset(ProducerIdentity { id: 9, epoch: 1 });
        let new = s.stamp(&tp(0), Some(old), 5).unwrap();
        assert_eq!((new.producer_epoch, new.base_sequence), (1, 0));
        assert_eq!(s.stamp(&tp(0), None, 1).unwrap().base_sequence, 5);
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(0, 5), 5);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 5), 3);
    }
}
