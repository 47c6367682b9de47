//! The record accumulator: one queue of batches per partition, sans-io.
//!
//! `send` appends records to the partition's *open* batch (encoding them into its
//! buffer right away); a batch closes when the next record would push it past
//! `batch.size`. The sender drains, per partition, the oldest closed batch, or the open
//! one once `linger.ms` has passed since it was opened (or at once when flushing).
//!
//! A sender turn does not go over every partition with a record waiting: a partition
//! whose batch can go (closed, or its linger ended) is *listed*, and one whose open
//! batch lingers, or whose retry backs off, has a timer. Drain looks at the listed
//! partitions and at those whose timer ran out; with 10,000 partitions each holding an
//! open batch, a turn costs what is ready, not what waits.
//!
//! At most one batch per partition is in flight: a partition is *muted* from drain to
//! completion. That is what keeps retries from reordering records (a retried batch
//! goes back to the front of its queue) without relying on the broker to reject
//! out-of-order sequences, and it keeps sequence numbers simple. Throughput comes from
//! many partitions per request and several requests per broker.
//!
//! Time is passed in; replies are a type parameter, so this module is tested without a
//! runtime.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::delivery::{Delivery, Resolver};
use super::idempotence::Stamp;
use super::partitioner::{partition_for_key, Sticky};
use crate::fast_hash::FastMap;
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
    /// Boxed: the queues live in a map of one per partition (with a hash table's
    /// spare slots), and most have no open batch most of the time.
    open: Option<Box<Batch<R>>>,
    closed: VecDeque<Batch<R>>,
    in_flight: bool,
    retry_at: Option<Instant>,
    /// In [`Ready::listed`]: the next drain looks at it.
    listed: bool,
}

impl<R> PartitionQueue<R> {
    fn new(tp: TopicPartition) -> Self {
        Self {
            tp,
            open: None,
            closed: VecDeque::new(),
            in_flight: false,
            retry_at: None,
            listed: false,
        }
    }
}

impl<R> PartitionQueue<R> {
    fn is_idle(&self) -> bool {
        self.open.is_none() && self.closed.is_empty() && !self.in_flight
    }

    /// Idle and not listed: it can leave the map (a timer left for it finds no queue
    /// and is dropped).
    fn is_removable(&self) -> bool {
        self.is_idle() && !self.listed
    }

    /// A timer of [`Ready::lingers`] at `at` still counts: its open batch lingers
    /// until then, and the partition is not muted (its completion lists it).
    fn lingers_until(&self, linger: Duration, at: Instant) -> bool {
        !self.in_flight && self.open.as_ref().is_some_and(|b| b.created + linger == at)
    }

    /// A timer of [`Ready::backoffs`] at `at` still counts.
    fn backs_off_until(&self, at: Instant) -> bool {
        !self.in_flight && self.retry_at == Some(at)
    }

    /// A deque's first push makes room for four batches (1 KB), in each of 10,000
    /// partitions' queues; most never hold more than one.
    fn room_for_one(&mut self) {
        if self.closed.capacity() == 0 {
            self.closed.reserve_exact(1);
        }
    }

    fn close_open(&mut self) -> bool {
        match self.open.take() {
            Some(batch) => {
                self.room_for_one();
                self.closed.push_back(*batch);
                true
            }
            None => false,
        }
    }
}

/// What an append did, for the caller to act on.
#[derive(Debug)]
pub(crate) struct Appended {
    /// A new batch opened.
    pub new_batch: bool,
    /// The sender must look again: the partition has a batch to send, or the new
    /// batch's linger ends before any other timer (which the sender sleeps until).
    pub wake: bool,
    /// A batch of this partition closed because it was full.
    pub batch_full: bool,
    /// The record's delivery report, to come.
    pub delivery: Delivery,
}

/// A topic's queues and what the built-in partitioner keeps of it: the partition
/// count records are placed among and where keyless records stick. Records find
/// their queue by one look-up of the topic's name, then one of the partition.
struct TopicEntry<R> {
    /// The topic's name, shared by its partition queues and batches.
    name: Arc<str>,
    /// The partition count, as of metadata version `version` (`None`: never read).
    partitions: i32,
    version: Option<u64>,
    sticky: Sticky,
    /// Partitions with a batch waiting or in flight; an idle queue is removed.
    queues: FastMap<i32, PartitionQueue<R>>,
    /// No batch of this topic waiting (not in flight) was created before this: the
    /// sender looks for expired batches, and computes its next expiry, without going
    /// over every partition's queue each turn. A lower bound only (a batch that went
    /// out leaves it as it was); `None`: none waits.
    oldest: Option<Instant>,
}

impl<R> TopicEntry<R> {
    /// A batch created at `created` waits (again).
    fn waits(&mut self, created: Instant) {
        self.oldest = Some(self.oldest.map_or(created, |o| o.min(created)));
    }
}

/// Why [`Topic::place`] found no partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unplaced {
    /// The topic's partition count is not in the cached metadata.
    UnknownTopic,
    /// The record asked for a partition the topic does not have.
    NoSuchPartition(i32),
}

/// Where a partition's queue is: its topic's place in [`Accumulator::topics`] and the
/// partition. Small and `Copy`, for [`Ready`]'s entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    topic: u32,
    partition: i32,
}

impl Key {
    fn new(topic: usize, partition: i32) -> Self {
        Self {
            topic: topic as u32,
            partition,
        }
    }
}

/// A timer: when, and whose.
type Timer = Reverse<(Instant, Key)>;

/// The partitions drain looks at: those listed, and those whose timer ran out. A
/// timer's entry is not removed when it stops counting (its batch went, its partition
/// was muted): it is dropped when it comes up, so none wakes the sender for nothing.
#[derive(Default)]
struct Ready {
    /// In the order they were listed, each once ([`PartitionQueue::listed`]); a
    /// partition the route leaves keeps its place, ahead of those listed after it.
    listed: VecDeque<Key>,
    /// Open batches' linger ends: pushed when a batch opens, and again when drain
    /// finds one still lingering (its partition was listed by a completion).
    lingers: BinaryHeap<Timer>,
    /// Retries' backoff ends, while each is its partition's `retry_at`.
    backoffs: BinaryHeap<Timer>,
}

/// Lists the partition, unless it is listed already.
fn list<R>(listed: &mut VecDeque<Key>, key: Key, queue: &mut PartitionQueue<R>) {
    if !queue.listed {
        queue.listed = true;
        listed.push_back(key);
    }
}

/// Pops the timers of `heap` that ran out by `until` (every one with `None`) and lists
/// the partitions of those that still `count`.
fn run_out<R>(
    heap: &mut BinaryHeap<Timer>,
    until: Option<Instant>,
    topics: &mut [TopicEntry<R>],
    listed: &mut VecDeque<Key>,
    count: impl Fn(&PartitionQueue<R>, Instant) -> bool,
) {
    while let Some(&Reverse((at, key))) = heap.peek() {
        if until.is_some_and(|until| at > until) {
            break;
        }
        heap.pop();
        if let Some(queue) = topics[key.topic as usize].queues.get_mut(&key.partition) {
            if count(queue, at) {
                list(listed, key, queue);
            }
        }
    }
}

impl Ready {
    fn list<R>(&mut self, key: Key, queue: &mut PartitionQueue<R>) {
        list(&mut self.listed, key, queue);
    }

    /// Lists a partition whose closed batch can go now (not muted, not backing off:
    /// its backoff's timer lists it); whether this call listed it.
    fn list_closed<R>(&mut self, key: Key, queue: &mut PartitionQueue<R>) -> bool {
        let can_go = !queue.in_flight && queue.retry_at.is_none() && !queue.closed.is_empty();
        let newly = can_go && !queue.listed;
        if newly {
            self.list(key, queue);
        }
        newly
    }

    /// Whether a timer at `at` would run out before every other (then a sleeping
    /// sender must be woken to see it).
    fn is_earliest(&self, at: Instant) -> bool {
        [self.lingers.peek(), self.backoffs.peek()]
            .into_iter()
            .flatten()
            .all(|Reverse((t, _))| at < *t)
    }
}

/// All partitions' queues, by topic.
pub(crate) struct Accumulator<R> {
    config: BatchConfig,
    /// Every topic seen, in the order first seen. An entry outlives its queues: it
    /// keeps the topic's name (a new partition queue allocates none) and its
    /// placement state.
    topics: Vec<TopicEntry<R>>,
    /// Where each topic's entry is in `topics` (an index, so a look-up is one hash).
    index: FastMap<Arc<str>, usize>,
    /// The entry found last: a producer mostly writes to one topic, and comparing
    /// the name is cheaper than hashing it.
    last: usize,
    ready: Ready,
}

/// One topic of the [`Accumulator`], found once per record.
pub(crate) struct Topic<'a, R> {
    config: BatchConfig,
    /// The topic's place in [`Accumulator::topics`].
    at: usize,
    entry: &'a mut TopicEntry<R>,
    ready: &'a mut Ready,
}

impl<R> Accumulator<R> {
    pub(crate) fn new(config: BatchConfig) -> Self {
        Self {
            config,
            topics: Vec::new(),
            index: FastMap::default(),
            last: 0,
            ready: Ready::default(),
        }
    }

    /// The queues of `topic`, its entry made the first time it is seen.
    pub(crate) fn topic(&mut self, topic: &str) -> Topic<'_, R> {
        let at = if self
            .topics
            .get(self.last)
            .is_some_and(|t| &*t.name == topic)
        {
            self.last
        } else if let Some(&at) = self.index.get(topic) {
            at
        } else {
            let name: Arc<str> = Arc::from(topic);
            self.topics.push(TopicEntry {
                name: name.clone(),
                partitions: 0,
                version: None,
                sticky: Sticky::default(),
                queues: FastMap::default(),
                oldest: None,
            });
            self.index.insert(name, self.topics.len() - 1);
            self.topics.len() - 1
        };
        self.last = at;
        Topic {
            config: self.config,
            at,
            entry: &mut self.topics[at],
            ready: &mut self.ready,
        }
    }

    fn queues(&self) -> impl Iterator<Item = &PartitionQueue<R>> {
        self.topics.iter().flat_map(|t| t.queues.values())
    }

    fn queues_mut(&mut self) -> impl Iterator<Item = &mut PartitionQueue<R>> {
        self.topics.iter_mut().flat_map(|t| t.queues.values_mut())
    }

    /// Drops the queues with nothing waiting or in flight (those [`Ready`] still
    /// names go when drain comes to them).
    fn remove_idle(&mut self) {
        for topic in &mut self.topics {
            topic.queues.retain(|_, q| !q.is_removable());
        }
    }

    /// Takes sendable batches: per unmuted partition out of backoff, the oldest closed
    /// batch, else the open one if its linger passed (or `force`). `route` sees each
    /// candidate and its size and returns where it goes (a broker id), or `None` to
    /// leave it (no leader, no room in flight on its broker). Taken partitions are muted.
    /// Looks only at listed partitions and those whose timer ran out (with `force`,
    /// every timer counts as run out).
    pub(crate) fn drain<K>(
        &mut self,
        now: Instant,
        force: bool,
        mut route: impl FnMut(&TopicPartition, usize) -> Option<K>,
    ) -> Vec<(K, Batch<R>)> {
        let linger = self.config.linger;
        let (topics, ready) = (&mut self.topics, &mut self.ready);
        // Timers that ran out list their partitions; on flush or close every lingering
        // batch goes at once, but backoffs still run their course.
        let linger_until = (!force).then_some(now);
        run_out(
            &mut ready.lingers,
            linger_until,
            topics,
            &mut ready.listed,
            |q, at| q.lingers_until(linger, at),
        );
        run_out(
            &mut ready.backoffs,
            Some(now),
            topics,
            &mut ready.listed,
            |q, at| q.backs_off_until(at),
        );
        let mut out = Vec::new();
        // Those the route leaves go back to the end in their order, ahead of nothing:
        // nothing is listed while this runs.
        for _ in 0..ready.listed.len() {
            let key = ready.listed.pop_front().expect("counted");
            let topic = &mut topics[key.topic as usize];
            let Some(queue) = topic.queues.get_mut(&key.partition) else {
                continue;
            };
            queue.listed = false;
            if !queue.in_flight {
                match queue.retry_at {
                    // Its backoff's timer lists it when it ends.
                    Some(at) if at > now => {}
                    _ => {
                        // A passed backoff is forgotten, and an open batch past its
                        // linger closed, even when the batch cannot go now: it waits
                        // for an event (a response, metadata) listed, not for a
                        // deadline in the past, which would wake the sender at once,
                        // again and again.
                        queue.retry_at = None;
                        let lingered = |b: &Batch<R>| force || b.created + linger <= now;
                        if queue.closed.is_empty() && queue.open.as_deref().is_some_and(lingered) {
                            queue.close_open();
                        }
                        if let Some(size) = queue.closed.front().map(Batch::size) {
                            match route(&queue.tp, size) {
                                Some(to) => {
                                    let batch = queue.closed.pop_front().expect("checked");
                                    // Muted: its completion lists it again.
                                    queue.in_flight = true;
                                    out.push((to, batch));
                                }
                                None => ready.list(key, queue),
                            }
                        } else if let Some(open) = &queue.open {
                            ready.lingers.push(Reverse((open.created + linger, key)));
                        }
                    }
                }
            }
            if queue.is_removable() {
                topic.queues.remove(&key.partition);
            }
        }
        out
    }

    /// When the next drain could find something new: the earliest linger deadline or
    /// end of a backoff among partitions that are not muted. Timers that no longer
    /// count are dropped on the way.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        let linger = self.config.linger;
        let topics = &self.topics;
        let queue = |key: Key| topics[key.topic as usize].queues.get(&key.partition);
        let first = |heap: &mut BinaryHeap<Timer>,
                     counts: &dyn Fn(&PartitionQueue<R>, Instant) -> bool| {
            while let Some(&Reverse((at, key))) = heap.peek() {
                if queue(key).is_some_and(|q| counts(q, at)) {
                    return Some(at);
                }
                heap.pop();
            }
            None
        };
        let linger_end = first(&mut self.ready.lingers, &|q, at| {
            q.lingers_until(linger, at)
        });
        let backoff_end = first(&mut self.ready.backoffs, &|q, at| q.backs_off_until(at));
        linger_end.into_iter().chain(backoff_end).min()
    }

    /// No waiting (not in-flight) batch runs out of `timeout` before this (a lower
    /// bound: waking then may find none, and computes it again).
    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.topics
            .iter()
            .filter_map(|t| t.oldest)
            .min()
            .map(|oldest| oldest + timeout)
    }

    /// Removes waiting batches created `timeout` or longer ago. In-flight batches wait
    /// for their response (the request timeout bounds that). Goes over a topic's
    /// queues only when its oldest waiting batch may have run out.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Batch<R>> {
        let mut expired = Vec::new();
        let expired_at = |b: &Batch<R>| b.created + timeout <= now;
        for (at, topic) in self.topics.iter_mut().enumerate() {
            if topic.oldest.is_none_or(|oldest| now < oldest + timeout) {
                continue;
            }
            let mut oldest: Option<Instant> = None;
            for (&partition, queue) in topic.queues.iter_mut() {
                let before = expired.len();
                if queue.closed.iter().any(expired_at) {
                    let (keep, gone): (VecDeque<_>, VecDeque<_>) =
                        queue.closed.drain(..).partition(|b| !expired_at(b));
                    queue.closed = keep;
                    expired.extend(gone);
                }
                if queue.open.as_ref().is_some_and(|b| expired_at(b)) {
                    expired.extend(queue.open.take().map(|b| *b));
                }
                if expired.len() > before && !queue.in_flight && !queue.is_idle() {
                    // What is left may have waited behind the backoff, whose timer
                    // stops counting below, or had its linger timer used up meanwhile:
                    // drain looks at it again (and times it again if it lingers).
                    self.ready.list(Key::new(at, partition), queue);
                }
                if queue.closed.is_empty() {
                    // The backoff was the retried batch's.
                    queue.retry_at = None;
                }
                for batch in queue.closed.iter().chain(queue.open.as_deref()) {
                    oldest = Some(oldest.map_or(batch.created, |o| o.min(batch.created)));
                }
            }
            topic.oldest = oldest;
            topic.queues.retain(|_, q| !q.is_removable());
        }
        expired
    }

    /// The in-flight batch of `tp` is done (delivered or failed): unmute the partition,
    /// listed if anything else waits in it.
    pub(crate) fn complete(&mut self, tp: &TopicPartition) {
        if let Some(&at) = self.index.get(&*tp.topic) {
            let topic = &mut self.topics[at];
            if let Some(queue) = topic.queues.get_mut(&tp.partition) {
                queue.in_flight = false;
                if !queue.is_idle() {
                    self.ready.list(Key::new(at, tp.partition), queue);
                } else if queue.is_removable() {
                    topic.queues.remove(&tp.partition);
                }
            }
        }
    }

    /// Puts batches back at the front of their partition's queue (in the given order)
    /// to be sent again no earlier than `retry_at`, and unmutes the partition.
    pub(crate) fn retry(&mut self, batches: Vec<Batch<R>>, retry_at: Instant) {
        for batch in batches.into_iter().rev() {
            let topic = self.topic(&batch.tp.topic);
            let key = Key::new(topic.at, batch.tp.partition);
            let entry = topic.entry;
            entry.waits(batch.created);
            let queue = entry
                .queues
                .entry(batch.tp.partition)
                .or_insert_with(|| PartitionQueue::new(batch.tp.clone()));
            queue.in_flight = false;
            queue.retry_at = Some(retry_at);
            queue.room_for_one();
            queue.closed.push_front(batch);
            topic.ready.backoffs.push(Reverse((retry_at, key)));
        }
    }

    /// Whether no partition has a record waiting or in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.queues().all(PartitionQueue::is_idle)
    }

    /// Removes every waiting batch (in-flight ones stay), to fail them.
    pub(crate) fn take_all_waiting(&mut self) -> Vec<Batch<R>> {
        let mut out = Vec::new();
        for queue in self.queues_mut() {
            out.extend(queue.closed.drain(..));
            out.extend(queue.open.take().map(|b| *b));
            queue.retry_at = None;
        }
        self.remove_idle();
        out
    }
}

impl<R> Topic<'_, R> {
    /// The partition of a record placed by the built-in partitioner: `partition` when
    /// the record names one (checked against the count), else murmur2 of `key`, else
    /// the topic's sticky partition (KIP-480: it moves on when its batch fills). The
    /// partition count is the one cached with metadata `version`; `count` reads it
    /// again only when the version moved.
    pub(crate) fn place(
        &mut self,
        key: Option<&[u8]>,
        partition: Option<i32>,
        version: u64,
        count: impl FnOnce() -> Option<i32>,
    ) -> Result<i32, Unplaced> {
        let entry = &mut *self.entry;
        if entry.version != Some(version) {
            // Not cached when unknown: the caller waits for metadata, then asks again.
            entry.partitions = count().ok_or(Unplaced::UnknownTopic)?;
            entry.version = Some(version);
        }
        let partitions = entry.partitions;
        Ok(match (partition, key) {
            (Some(p), _) if (0..partitions).contains(&p) => p,
            (Some(p), _) => return Err(Unplaced::NoSuchPartition(p)),
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => entry.sticky.choose(partitions),
        })
    }

    /// Appends one record to the open batch of `partition`; `now` is asked only if a
    /// batch opens. `size` is the record's size in a batch at most
    /// ([`BatchBuilder::record_size_upper_bound`], which the caller has computed), and
    /// also the bytes of `buffer.memory` the record holds. On failure (only the wire
    /// format's own limits) the reply is handed back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        partition: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        reply: R,
        size: usize,
        now: impl FnOnce() -> Instant,
    ) -> Result<Appended, (R, RecordError)> {
        let config = self.config;
        let here = Key::new(self.at, partition);
        let entry = &mut *self.entry;
        let queue = match entry.queues.get_mut(&partition) {
            Some(queue) => queue,
            None => entry.queues.entry(partition).or_insert_with(|| {
                PartitionQueue::new(TopicPartition {
                    topic: entry.name.clone(),
                    partition,
                })
            }),
        };
        let (mut opened, mut batch_full) = (None, false);
        if let Some(open) = &queue.open {
            let open_size = open
                .builder
                .as_ref()
                .map_or(0, BatchBuilder::estimated_size);
            if open_size + size > config.batch_size {
                queue.close_open();
                batch_full = true;
            }
        }
        let open = queue.open.get_or_insert_with(|| {
            let created = now();
            opened = Some(created);
            entry.oldest = Some(entry.oldest.map_or(created, |o| o.min(created)));
            Box::new(Batch {
                tp: queue.tp.clone(),
                builder: Some(
                    BatchBuilder::new().compression(config.compression, config.compression_level),
                ),
                encoded: None,
                uncompressed: 0,
                stamp: None,
                replies: Vec::new(),
                resolver: Resolver::new(queue.tp.topic.clone(), queue.tp.partition),
                created,
                reserved: 0,
                attempts: 0,
                last_error: None,
            })
        });
        let builder = open
            .builder
            .as_mut()
            .expect("an open batch is never encoded");
        if let Err(err) = builder.push(timestamp, key, value, headers) {
            if open.replies.is_empty() {
                queue.open = None;
            }
            // The batch before it may have closed for this record: it can go.
            self.ready.list_closed(here, queue);
            return Err((reply, err));
        }
        let delivery = open.resolver.delivery(open.replies.len() as u32, timestamp);
        open.replies.push(reply);
        open.reserved += size;
        if builder.estimated_size() >= config.batch_size {
            queue.close_open();
            batch_full = true;
        }
        if batch_full {
            entry.sticky.batch_full(partition);
        }
        // A muted partition is listed when its batch completes; one listed already,
        // or backing off (its timer runs), waits for drain to come to it.
        let ready = &mut *self.ready;
        let linger_end = opened.map(|created| created + config.linger);
        let waits_alone = !queue.in_flight && !queue.listed && queue.closed.is_empty();
        let wake = ready.list_closed(here, queue)
            || (waits_alone && linger_end.is_some_and(|at| ready.is_earliest(at)));
        if let (Some(at), false) = (linger_end, queue.in_flight) {
            ready.lingers.push(Reverse((at, here)));
        }
        Ok(Appended {
            new_batch: opened.is_some(),
            wake,
            batch_full,
            delivery,
        })
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

    /// The size of the records [`push`] appends.
    fn pushed_size() -> usize {
        BatchBuilder::record_size_upper_bound(None, Some(&[0u8; 100]), &[])
    }

    fn push(a: &mut Accumulator<u32>, p: i32, id: u32, now: Instant) -> Appended {
        let size = pushed_size();
        a.topic("t")
            .append(p, 0, None, Some(&[0u8; 100]), &[], id, size, || now)
            .unwrap()
    }

    fn ids(batch: &Batch<u32>) -> Vec<u32> {
        batch.replies.clone()
    }

    #[test]
    fn open_batch_waits_for_linger_unless_forced() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        assert!(push(&mut a, 0, 1, t0).wake);
        assert!(!push(&mut a, 0, 2, t0).wake);
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
    fn a_waiting_partition_holds_little() {
        // One queue per partition, in a hash table with spare slots: the open batch
        // (272 bytes) is boxed.
        let queue = std::mem::size_of::<PartitionQueue<u32>>();
        assert!(queue <= 128, "a partition's queue is {queue} bytes");
        // A batch the route refuses waits closed, alone in room for one.
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        assert!(a.drain(t0, true, |_, _| None::<()>).is_empty());
        let queue = a.topics[0].queues.get(&0).expect("the partition waits");
        assert_eq!(queue.closed.len(), 1);
        assert_eq!(queue.closed.capacity(), 1);
    }

    #[test]
    fn a_refused_batch_past_its_backoff_sets_no_deadline() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        let (_, batch) = a.drain(t0, true, |_, _| Some(())).pop().unwrap();
        let backoff = t0 + Duration::from_millis(100);
        a.retry(vec![batch], backoff);
        assert_eq!(a.next_deadline(), Some(backoff));
        // Past its backoff, but its broker has no slot: it waits for an event (a
        // response), not for a deadline already passed, which would wake the sender
        // at once, again and again.
        let later = t0 + Duration::from_millis(200);
        assert!(a.drain(later, false, |_, _| None::<()>).is_empty());
        assert_eq!(a.next_deadline(), None);
        let sent = a.drain(later, false, |_, _| Some(()));
        assert_eq!(ids(&sent[0].1), [1]);
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

    /// Expiry is found from each topic's oldest waiting batch, not by going over
    /// every queue each turn: a batch sent off and retried brings its age back with it.
    #[test]
    fn a_retried_batch_brings_the_next_expiry_back() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(1);
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        let mut sent = a.drain(t0, true, |_, _| Some(()));
        let t1 = t0 + Duration::from_millis(500);
        push(&mut a, 1, 2, t1);
        // Only partition 1 waits: nothing runs out at t0 + timeout, and the next
        // expiry becomes partition 1's.
        assert!(a.expire(t0 + timeout, timeout).is_empty());
        assert_eq!(a.next_expiry(timeout), Some(t1 + timeout));
        // Partition 0's batch comes back (created at t0) and runs out first.
        let ((), batch) = sent.pop().unwrap();
        a.retry(vec![batch], t0 + timeout);
        assert_eq!(a.next_expiry(timeout), Some(t0 + timeout));
        let expired = a.expire(t0 + timeout, timeout);
        assert_eq!(expired.len(), 1);
        assert_eq!(ids(&expired[0]), [1]);
        assert_eq!(a.next_expiry(timeout), Some(t1 + timeout));
    }

    #[test]
    fn memory_reservations_add_up_per_batch() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        push(&mut a, 0, 2, t0);
        let (_, batch) = a.drain(t0, true, |_, _| Some(())).pop().unwrap();
        assert_eq!(batch.reserved, 2 * pushed_size());
        assert_eq!(batch.record_count(), 2);
        assert!(batch.size() > 200);
    }

    #[test]
    fn a_partition_the_route_left_goes_before_those_ready_after_it() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        for p in 0..4 {
            push(&mut a, p, p as u32, t0);
        }
        // Room for one batch per drain: the others wait, in their order.
        let one = |a: &mut Accumulator<u32>| {
            let mut taken = false;
            let got = a.drain(t0, true, |_, _| {
                (!std::mem::replace(&mut taken, true)).then_some(())
            });
            assert_eq!(got.len(), 1);
            got[0].1.tp.partition
        };
        assert_eq!(one(&mut a), 0);
        push(&mut a, 9, 9, t0);
        assert_eq!(one(&mut a), 1);
        a.complete(&tp(0));
        push(&mut a, 0, 10, t0);
        assert_eq!(
            [one(&mut a), one(&mut a), one(&mut a), one(&mut a)],
            [2, 3, 9, 0]
        );
    }

    /// A turn costs what is ready, not what waits: with many partitions lingering,
    /// drain looks at none of them until a timer runs out or a batch fills.
    #[test]
    fn a_turn_looks_only_at_partitions_that_may_send() {
        let t0 = Instant::now();
        let mut a = acc(400);
        for p in 0..1_000 {
            let at = t0 + Duration::from_micros(p as u64);
            a.topic("t")
                .append(p, 0, None, Some(&[0u8; 100]), &[], 0, pushed_size(), || at)
                .unwrap();
        }
        assert!(
            a.ready.listed.is_empty(),
            "nothing is listed while it lingers"
        );
        assert_eq!(a.ready.lingers.len(), 1_000);
        assert!(a.drain(t0, false, |_, _| Some(())).is_empty());
        assert_eq!(
            a.ready.lingers.len(),
            1_000,
            "and drain finds no timer run out"
        );
        let mut filled = 0;
        while !push(&mut a, 7, 1, t0).batch_full {
            filled += 1;
        }
        assert!(filled > 0);
        assert_eq!(a.ready.listed.len(), 1, "the full batch is listed");
        let mut looked = 0;
        let sent = a.drain(t0, false, |_, _| {
            looked += 1;
            Some(())
        });
        assert_eq!((looked, sent.len()), (1, 1));
        // Partition 0's linger ends first, then 1's: a drain then takes just those.
        assert_eq!(a.next_deadline(), Some(t0 + LINGER));
        let sent = a.drain(t0 + LINGER + Duration::from_micros(1), false, |tp, _| {
            Some(tp.partition)
        });
        let mut got: Vec<i32> = sent.iter().map(|(p, _)| *p).collect();
        got.sort();
        assert_eq!(got, [0, 1]);
        assert_eq!(a.ready.listed.len(), 0);
    }

    /// A new batch wakes the sender only when it must: when its partition has a batch
    /// to send, or its linger ends before every other timer.
    #[test]
    fn a_new_batch_wakes_the_sender_only_if_its_linger_ends_first() {
        let t0 = Instant::now();
        let mut a = acc(400);
        assert!(push(&mut a, 0, 1, t0).wake, "the first timer");
        assert!(
            !push(&mut a, 1, 2, t0 + LINGER).wake,
            "ends after partition 0's"
        );
        // A full batch wakes; a muted partition's does not (its completion lists it).
        let mut full = push(&mut a, 2, 3, t0);
        while !full.batch_full {
            full = push(&mut a, 2, 3, t0);
        }
        assert!(full.wake);
        let sent = a.drain(t0, false, |_, _| Some(()));
        assert_eq!(sent.len(), 1);
        let mut full = push(&mut a, 2, 4, t0);
        while !full.batch_full {
            full = push(&mut a, 2, 4, t0);
        }
        assert!(!full.wake, "partition 2 is in flight");
    }

    /// A timer whose batch went before its linger ended, or whose partition is muted,
    /// wakes nobody: the sender would turn for nothing once per such batch.
    #[test]
    fn a_timer_that_no_longer_counts_wakes_nobody() {
        let t0 = Instant::now();
        let mut a = acc(400);
        let mut pushed = push(&mut a, 0, 1, t0);
        while !pushed.batch_full {
            pushed = push(&mut a, 0, 1, t0);
        }
        assert_eq!(a.drain(t0, false, |_, _| Some(())).len(), 1);
        // Partition 0 is muted, its first batch gone: no deadline, no timer kept.
        assert_eq!(a.next_deadline(), None);
        assert!(a.ready.lingers.is_empty());
    }

    /// A retried batch that runs out of time takes its backoff with it: the record
    /// behind it goes at its linger's end, not at the old backoff's.
    #[test]
    fn an_expired_retry_leaves_no_backoff_behind() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(100);
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        let (_, batch) = a.drain(t0, true, |_, _| Some(())).pop().unwrap();
        a.retry(vec![batch], t0 + Duration::from_secs(10));
        push(&mut a, 0, 2, t0 + Duration::from_millis(60));
        let t1 = t0 + timeout;
        assert_eq!(ids(&a.expire(t1, timeout)[0]), [1]);
        let sent = a.drain(t1, false, |_, _| Some(()));
        assert_eq!(sent.len(), 1, "record 2 lingered out");
        assert_eq!(ids(&sent[0].1), [2]);
    }

    /// A batch that lingered out while its partition was in flight goes at the next
    /// drain after the completion; one still lingering then gets its timer.
    #[test]
    fn a_completed_partition_sends_what_lingered_meanwhile() {
        let t0 = Instant::now();
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        push(&mut a, 1, 2, t0);
        let sent = a.drain(t0, true, |_, _| Some(()));
        assert_eq!(sent.len(), 2);
        let t1 = t0 + Duration::from_millis(1);
        assert!(!push(&mut a, 0, 3, t1).wake);
        assert!(!push(&mut a, 1, 4, t1).wake);
        assert_eq!(a.next_deadline(), None, "muted partitions have no timer");
        // Partition 1 completes before its batch's linger ends: drain times it.
        a.complete(&tp(1));
        assert!(a.drain(t1, false, |_, _| Some(())).is_empty());
        let t2 = t1 + LINGER;
        assert_eq!(a.next_deadline(), Some(t2));
        // Partition 0 completes after its batch's linger ended: it goes at once.
        a.complete(&tp(0));
        let mut sent: Vec<Vec<u32>> = a
            .drain(t2, false, |_, _| Some(()))
            .iter()
            .map(|(_, b)| ids(b))
            .collect();
        sent.sort();
        assert_eq!(sent, [[3], [4]]);
    }

    /// A batch opened while its partition was in flight, behind a retried batch that
    /// then runs out of time, still goes: expiry lists what is left.
    #[test]
    fn a_batch_behind_an_expired_retry_is_not_stranded() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(100);
        let mut a = acc(1 << 20);
        push(&mut a, 0, 1, t0);
        let (_, batch) = a.drain(t0, true, |_, _| Some(())).pop().unwrap();
        // Opened while the partition is muted: no timer of its own.
        push(&mut a, 0, 2, t0 + Duration::from_millis(10));
        a.retry(vec![batch], t0 + Duration::from_secs(10));
        // A turn during the backoff finds nothing to send.
        assert!(a
            .drain(t0 + Duration::from_millis(50), false, |_, _| Some(()))
            .is_empty());
        let t1 = t0 + timeout;
        assert_eq!(ids(&a.expire(t1, timeout)[0]), [1]);
        let sent = a.drain(t1, false, |_, _| Some(()));
        assert_eq!(sent.len(), 1, "record 2 is not stranded");
        assert_eq!(ids(&sent[0].1), [2]);
    }

    #[test]
    fn placement_is_murmur2_for_keys_and_sticky_for_keyless_records() {
        // Batches of one record: every append fills its batch.
        let mut a = acc(1);
        let never = || -> Option<i32> { panic!("the count is cached for version 1") };
        let mut t = a.topic("t");
        assert_eq!(t.place(None, None, 1, || Some(8)).map(|p| p < 8), Ok(true));
        for key in [&b"a"[..], b"order-42", b""] {
            assert_eq!(
                t.place(Some(key), None, 1, never),
                Ok(partition_for_key(key, 8))
            );
        }
        let first = t.place(None, None, 1, never).unwrap();
        for _ in 0..100 {
            assert_eq!(t.place(None, None, 1, never), Ok(first));
        }
        // A full batch elsewhere does not move keyless records; theirs does.
        let other = (first + 1) % 8;
        assert!(push(&mut a, other, 1, Instant::now()).batch_full);
        assert_eq!(a.topic("t").place(None, None, 1, never), Ok(first));
        assert!(push(&mut a, first, 2, Instant::now()).batch_full);
        let next = a.topic("t").place(None, None, 1, never).unwrap();
        assert_ne!(next, first);
        // Topics stick apart.
        assert_eq!(a.topic("u").place(None, None, 1, || Some(1)), Ok(0));
        assert_eq!(a.topic("t").place(None, None, 1, never), Ok(next));
    }

    #[test]
    fn placement_rereads_the_count_when_the_metadata_version_moves() {
        let mut a = acc(1_000);
        let mut t = a.topic("t");
        // Unknown: nothing is cached, the next call asks again.
        assert_eq!(
            t.place(Some(b"k"), None, 1, || None),
            Err(Unplaced::UnknownTopic)
        );
        assert_eq!(
            t.place(Some(b"k"), None, 1, || Some(3)),
            Ok(partition_for_key(b"k", 3))
        );
        assert_eq!(t.place(None, Some(2), 1, || None), Ok(2));
        assert_eq!(
            t.place(None, Some(5), 1, || None),
            Err(Unplaced::NoSuchPartition(5))
        );
        // The topic grew: a new version reads the new count.
        assert_eq!(t.place(None, Some(5), 2, || Some(12)), Ok(5));
        assert_ne!(partition_for_key(b"k", 3), partition_for_key(b"k", 12));
        assert_eq!(
            t.place(Some(b"k"), None, 2, || None),
            Ok(partition_for_key(b"k", 12))
        );
        assert_eq!(
            t.place(None, Some(-1), 2, || None),
            Err(Unplaced::NoSuchPartition(-1))
        );
    }
}
