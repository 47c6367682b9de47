//! The record accumulator: one queue of batches per partition, sans-io.
//!
//! `send` appends records to the partition's *open* batch (encoding them into its
//! buffer right away); a batch closes when the next record would push it past
//! `batch.size`. The sender drains, per partition, the oldest closed batch, or the open
//! one once `linger.ms` has passed since it was opened (or at once when flushing).
//!
//! At most one batch per partition is in flight: a partition is *muted* from drain to
//! completion. That is what keeps retries from reordering records (a retried batch
//! goes back to the front of its queue) without relying on the broker to reject
//! out-of-order sequences, and it keeps sequence numbers simple. Throughput comes from
//! many partitions per request and several requests per broker.
//!
//! Time is passed in; replies are a type parameter, so this module is tested without a
//! runtime.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::delivery::{Delivery, Resolver};
use super::idempotence::Stamp;
use crate::fast_hash::{FastMap, FastSet};
use crate::protocol::records::{BatchBuilder, Compression, Header, RecordError};
pub(crate) use crate::topic_partition::TopicPartition;

/// How batches are shaped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchConfig {
    pub batch_size: usize,
    pub linger: Duration,
    pub compression: Compression,
    pub compression_level: Option<i32>,
}

/// A batch of one partition, from its first record to its delivery.
#[derive(Debug)]
pub(crate) struct Batch<R> {
    pub tp: TopicPartition,
    /// The records, until the batch is encoded for its first send.
    pub builder: Option<BatchBuilder>,
    /// The encoded batch and the producer stamp it carries, once sent.
    pub encoded: Option<(Bytes, Option<Stamp>)>,
    /// Its size before compression, once encoded (for the compression ratio).
    pub uncompressed: usize,
    /// The stamp the next send must carry (assigned by the sender, idempotence only).
    pub stamp: Option<Stamp>,
    /// One reply per record, in offset order.
    pub replies: Vec<R>,
    /// The outcome the records' [`Delivery`] futures wait on.
    pub resolver: Resolver,
    pub created: Instant,
    /// Bytes of `buffer.memory` this batch holds until it is done.
    pub reserved: usize,
    /// Sends so far.
    pub attempts: u32,
    /// Why the last send failed, for the error if the batch runs out of time.
    pub last_error: Option<crate::error::Error>,
}

impl<R> Batch<R> {
    pub(crate) fn record_count(&self) -> i32 {
        self.replies.len() as i32
    }

    /// Size on the wire: exact once encoded, an upper bound before.
    pub(crate) fn size(&self) -> usize {
        match (&self.encoded, &self.builder) {
            (Some((bytes, _)), _) => bytes.len(),
            (None, Some(builder)) => builder.estimated_size(),
            (None, None) => 0,
        }
    }
}

struct PartitionQueue<R> {
    tp: TopicPartition,
    open: Option<Batch<R>>,
    closed: VecDeque<Batch<R>>,
    in_flight: bool,
    retry_at: Option<Instant>,
}

impl<R> PartitionQueue<R> {
    fn new(tp: TopicPartition) -> Self {
        Self {
            tp,
            open: None,
            closed: VecDeque::new(),
            in_flight: false,
            retry_at: None,
        }
    }
}

impl<R> PartitionQueue<R> {
    fn is_idle(&self) -> bool {
        self.open.is_none() && self.closed.is_empty() && !self.in_flight
    }

    fn close_open(&mut self) -> bool {
        match self.open.take() {
            Some(batch) => {
                self.closed.push_back(batch);
                true
            }
            None => false,
        }
    }
}

/// What an append did, for the caller to act on.
#[derive(Debug)]
pub(crate) struct Appended {
    /// A new open batch was started (the sender must schedule its linger deadline).
    pub new_batch: bool,
    /// A batch of this partition closed because it was full.
    pub batch_full: bool,
    /// The record's delivery report, to come.
    pub delivery: Delivery,
}

/// The partition map's key: a [`TopicPartition`] that a record's `(&str, i32)` finds
/// without building one (no reference count touched per record).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key(TopicPartition);

/// What both [`Key`] and a borrowed `(topic, partition)` look like to the map.
trait Lookup {
    fn parts(&self) -> (&str, i32);
}

impl Lookup for Key {
    fn parts(&self) -> (&str, i32) {
        (&self.0.topic, self.0.partition)
    }
}

impl Lookup for (&str, i32) {
    fn parts(&self) -> (&str, i32) {
        *self
    }
}

impl<'a> Borrow<dyn Lookup + 'a> for Key {
    fn borrow(&self) -> &(dyn Lookup + 'a) {
        self
    }
}

// As `Key`'s derived `Hash` and `Eq` (those of `TopicPartition`: the name's bytes, then
// the partition), which the map requires of a borrowed form.
impl Hash for dyn Lookup + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (topic, partition) = self.parts();
        topic.hash(state);
        partition.hash(state);
    }
}

impl PartialEq for dyn Lookup + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Lookup + '_ {}

/// `tp` as a map look-up.
fn lookup(tp: &TopicPartition) -> (&str, i32) {
    (&tp.topic, tp.partition)
}

/// The shared name of `topic`, allocated once per topic.
fn intern(topics: &mut FastSet<Arc<str>>, topic: &str) -> Arc<str> {
    match topics.get(topic) {
        Some(name) => name.clone(),
        None => {
            let name: Arc<str> = Arc::from(topic);
            topics.insert(name.clone());
            name
        }
    }
}

/// All partitions' queues.
pub(crate) struct Accumulator<R> {
    config: BatchConfig,
    partitions: FastMap<Key, PartitionQueue<R>>,
    /// Topic names seen, so a new partition queue allocates no name.
    topics: FastSet<Arc<str>>,
    /// Rotates where draining starts, so a request-size limit never starves the
    /// partitions that happen to come last.
    drain_start: usize,
}

impl<R> Accumulator<R> {
    pub(crate) fn new(config: BatchConfig) -> Self {
        Self {
            config,
            partitions: FastMap::default(),
            topics: FastSet::default(),
            drain_start: 0,
        }
    }

    /// Appends one record to the open batch of `topic`/`partition`; `now` is asked
    /// only if a batch opens. On failure (only the wire format's own limits) the reply
    /// is handed back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        reply: R,
        reserved: usize,
        now: impl FnOnce() -> Instant,
    ) -> Result<Appended, (R, RecordError)> {
        let config = self.config;
        let lookup: &dyn Lookup = &(topic, partition);
        let queue = match self.partitions.get_mut(lookup) {
            Some(queue) => queue,
            None => {
                let tp = TopicPartition {
                    topic: intern(&mut self.topics, topic),
                    partition,
                };
                self.partitions
                    .entry(Key(tp.clone()))
                    .or_insert_with(|| PartitionQueue::new(tp))
            }
        };
        let (mut new_batch, mut batch_full) = (false, false);
        let needed = BatchBuilder::record_size_upper_bound(key, value, headers);
        if let Some(open) = &queue.open {
            let size = open
                .builder
                .as_ref()
                .map_or(0, BatchBuilder::estimated_size);
            if size + needed > config.batch_size {
                queue.close_open();
                batch_full = true;
            }
        }
        let open = queue.open.get_or_insert_with(|| {
            new_batch = true;
            Batch {
                tp: queue.tp.clone(),
                builder: Some(
                    BatchBuilder::new().compression(config.compression, config.compression_level),
                ),
                encoded: None,
                uncompressed: 0,
                stamp: None,
                replies: Vec::new(),
                resolver: Resolver::new(queue.tp.topic.clone(), queue.tp.partition),
                created: now(),
                reserved: 0,
                attempts: 0,
                last_error: None,
            }
        });
        let builder = open
            .builder
            .as_mut()
            .expect("an open batch is never encoded");
        if let Err(err) = builder.push(timestamp, key, value, headers) {
            if open.replies.is_empty() {
                queue.open = None;
            }
            return Err((reply, err));
        }
        let delivery = open.resolver.delivery(open.replies.len() as u32, timestamp);
        open.replies.push(reply);
        open.reserved += reserved;
        if builder.estimated_size() >= config.batch_size {
            queue.close_open();
            batch_full = true;
        }
        Ok(Appended {
            new_batch,
            batch_full,
            delivery,
        })
    }

    /// Takes sendable batches: per unmuted partition out of backoff, the oldest closed
    /// batch, else the open one if its linger passed (or `force`). `route` sees each
    /// candidate and its size and returns where it goes (a broker id), or `None` to
    /// leave it (no leader, broker busy, request full). Taken partitions are muted.
    pub(crate) fn drain<K>(
        &mut self,
        now: Instant,
        force: bool,
        mut route: impl FnMut(&TopicPartition, usize) -> Option<K>,
    ) -> Vec<(K, Batch<R>)> {
        let linger = self.config.linger;
        let mut keys: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, q)| !q.in_flight && q.retry_at.is_none_or(|t| t <= now))
            .filter(|(_, q)| {
                !q.closed.is_empty()
                    || q.open
                        .as_ref()
                        .is_some_and(|b| force || b.created + linger <= now)
            })
            .map(|(key, _)| key.0.clone())
            .collect();
        keys.sort();
        if !keys.is_empty() {
            let start = self.drain_start % keys.len();
            keys.rotate_left(start);
            self.drain_start = self.drain_start.wrapping_add(1);
        }
        let mut out = Vec::new();
        for tp in keys {
            let queue = self
                .partitions
                .get_mut(&lookup(&tp) as &dyn Lookup)
                .expect("key taken from the map");
            if queue.closed.is_empty() {
                queue.close_open();
            }
            let size = queue.closed.front().map_or(0, Batch::size);
            if let Some(key) = route(&tp, size) {
                let batch = queue.closed.pop_front().expect("checked non-empty");
                queue.in_flight = true;
                queue.retry_at = None;
                out.push((key, batch));
            }
        }
        out
    }

    /// When the next drain could find something new: the earliest linger deadline or
    /// end of a backoff among partitions that are not muted.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.partitions
            .values()
            .filter(|q| !q.in_flight)
            .filter_map(|q| {
                let ready = match (&q.closed.front(), &q.open) {
                    (Some(_), _) => q.retry_at,
                    (None, Some(open)) => {
                        Some(q.retry_at.map_or(open.created + self.config.linger, |r| {
                            r.max(open.created + self.config.linger)
                        }))
                    }
                    (None, None) => None,
                };
                ready
            })
            .min()
    }

    /// The earliest moment a waiting (not in-flight) batch runs out of `timeout`.
    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.partitions
            .values()
            .flat_map(|q| q.closed.iter().chain(q.open.iter()))
            .map(|b| b.created + timeout)
            .min()
    }

    /// Removes waiting batches created `timeout` or longer ago. In-flight batches wait
    /// for their response (the request timeout bounds that).
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Batch<R>> {
        let mut expired = Vec::new();
        let expired_at = |b: &Batch<R>| b.created + timeout <= now;
        for queue in self.partitions.values_mut() {
            // Rebuilt only when something expired: this runs every sender turn, over
            // every partition.
            if queue.closed.iter().any(expired_at) {
                let (keep, gone): (VecDeque<_>, VecDeque<_>) =
                    queue.closed.drain(..).partition(|b| !expired_at(b));
                queue.closed = keep;
                expired.extend(gone);
            }
            if queue
                .open
                .as_ref()
                .is_some_and(|b| b.created + timeout <= now)
            {
                expired.extend(queue.open.take());
            }
        }
        self.partitions.retain(|_, q| !q.is_idle());
        expired
    }

    /// The in-flight batch of `tp` is done (delivered or failed): unmute the partition.
    pub(crate) fn complete(&mut self, tp: &TopicPartition) {
        if let Some(queue) = self.partitions.get_mut(&lookup(tp) as &dyn Lookup) {
            queue.in_flight = false;
            if queue.is_idle() {
                self.partitions.remove(&lookup(tp) as &dyn Lookup);
            }
        }
    }

    /// Puts batches back at the front of their partition's queue (in the given order)
    /// to be sent again no earlier than `retry_at`, and unmutes the partition.
    pub(crate) fn retry(&mut self, batches: Vec<Batch<R>>, retry_at: Instant) {
        for batch in batches.into_iter().rev() {
            let queue = self
                .partitions
                .entry(Key(batch.tp.clone()))
                .or_insert_with(|| PartitionQueue::new(batch.tp.clone()));
            queue.in_flight = false;
            queue.retry_at = Some(retry_at);
            queue.closed.push_front(batch);
        }
    }

    /// Whether no partition has a record waiting or in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.partitions.values().all(PartitionQueue::is_idle)
    }

    /// Removes every waiting batch (in-flight ones stay), to fail them.
    pub(crate) fn take_all_waiting(&mut self) -> Vec<Batch<R>> {
        let mut out = Vec::new();
        for queue in self.partitions.values_mut() {
            out.extend(queue.closed.drain(..));
            out.extend(queue.open.take());
        }
        self.partitions.retain(|_, q| !q.is_idle());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(5);

    fn acc(batch_size: usize) -> Accumulator<u32> {
        Accumulator::new(BatchConfig {
            batch_size,
            linger: LINGER,
            compression: Compression::None,
            compression_level: None,
        })
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from("t"),
            partition: p,
        }
    }

    fn push(a: &mut Accumulator<u32>, p: i32, id: u32, now: Instant) -> Appended {
        a.append("t", p, 0, None, Some(&[0u8; 100]), &[], id, 100, || now)
            .unwrap()
    }

    fn ids(batch: &Batch<u32>) -> Vec<u32> {
        batch.replies.clone()
    }

    #[test]
    fn open_batch_waits_for_linger_unless_forced() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        assert!(push(&mut a, 0, 1, t0).new_batch);
        assert!(!push(&mut a, 0, 2, t0).new_batch);
        assert!(a.drain(t0, false, |_, _| Some(())).is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + LINGER));
        let forced = a.drain(t0, true, |_, _| Some(()));
        assert_eq!(ids(&forced[0].1), [1, 2]);
    }

    #[test]
    fn linger_expiry_makes_the_batch_sendable() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        let drained = a.drain(t0 + LINGER, false, |_, _| Some(7));
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].0, 7);
    }

    #[test]
    fn full_batches_close_and_the_next_record_opens_a_new_one() {
        let t0 = Instant::now();
        let mut a = acc(400);
        let mut full = 0;
        for i in 0..10 {
            if push(&mut a, 0, i, t0).batch_full {
                full += 1;
            }
        }
        assert!(full >= 2, "{full}");
        // Closed batches go without waiting for linger, one per drain (muted after).
        let first = a.drain(t0, false, |_, _| Some(()));
        assert_eq!(first.len(), 1);
        assert_eq!(ids(&first[0].1)[0], 0);
        assert!(
            a.drain(t0, false, |_, _| Some(())).is_empty(),
            "partition is muted"
        );
        a.complete(&tp(0));
        let second = a.drain(t0, false, |_, _| Some(()));
        assert_eq!(ids(&second[0].1)[0], *ids(&first[0].1).last().unwrap() + 1);
    }

    #[test]
    fn a_retried_batch_goes_first_after_its_backoff() {
        let t0 = Instant::now();
        let mut a = acc(250);
        for i in 0..6 {
            push(&mut a, 0, i, t0);
        }
        let (_, first) = a.drain(t0, true, |_, _| Some(())).pop().unwrap();
        let first_ids = ids(&first);
        a.retry(vec![first], t0 + Duration::from_millis(100));
        assert!(a
            .drain(t0 + Duration::from_millis(50), true, |_, _| Some(()))
            .is_empty());
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_millis(100)));
        let (_, again) = a
            .drain(t0 + Duration::from_millis(100), true, |_, _| Some(()))
            .pop()
            .unwrap();
        assert_eq!(ids(&again), first_ids, "no reordering");
    }

    #[test]
    fn route_can_refuse_and_partitions_are_independent() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        for p in 0..4 {
            push(&mut a, p, p as u32, t0);
        }
        // Partition 1 has no leader: it stays.
        let drained = a.drain(t0, true, |tp, _| {
            (tp.partition != 1).then_some(tp.partition)
        });
        let mut got: Vec<i32> = drained.iter().map(|(k, _)| *k).collect();
        got.sort();
        assert_eq!(got, [0, 2, 3]);
        let later = a.drain(t0, true, |tp, _| Some(tp.partition));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].0, 1);
    }

    #[test]
    fn waiting_batches_expire_but_in_flight_ones_do_not() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        push(&mut a, 1, 2, t0);
        let _in_flight = a.drain(t0, true, |tp, _| (tp.partition == 0).then_some(()));
        let timeout = Duration::from_secs(1);
        assert_eq!(a.next_expiry(timeout), Some(t0 + timeout));
        assert!(a
            .expire(t0 + Duration::from_millis(999), timeout)
            .is_empty());
        let expired = a.expire(t0 + timeout, timeout);
        assert_eq!(expired.len(), 1);
        assert_eq!(ids(&expired[0]), [2]);
        assert!(!a.is_empty(), "partition 0 is still in flight");
        a.complete(&tp(0));
        assert!(a.is_empty());
    }

    #[test]
    fn memory_reservations_add_up_per_batch() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        push(&mut a, 0, 2, t0);
        let (_, batch) = a.drain(t0, true, |_, _| Some(())).pop().unwrap();
        assert_eq!(batch.reserved, 200);
        assert_eq!(batch.record_count(), 2);
        assert!(batch.size() > 200);
    }

    #[test]
    fn drain_start_rotates_for_fairness() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        let mut firsts = std::collections::HashSet::new();
        for round in 0..4 {
            for p in 0..4 {
                push(&mut a, p, round, t0);
            }
            // Room for one batch per drain.
            let mut taken = false;
            let got = a.drain(t0, true, |_, _| {
                (!std::mem::replace(&mut taken, true)).then_some(())
            });
            let (_, b) = &got[0];
            firsts.insert(b.tp.partition);
            a.complete(&b.tp.clone());
            a.take_all_waiting();
        }
        assert!(
            firsts.len() > 1,
            "always the same partition first: {firsts:?}"
        );
    }
}
