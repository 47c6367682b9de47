//! One fetch loop per broker (Sarama's `brokerConsumer`): every partition the broker
//! leads, for every partition consumer of this consumer, goes into one Fetch request.
//!
//! A partition is fetched when it is not paused, not stopped by an error, out of
//! backoff, and has room in its queue (so a partition nobody reads costs nothing and
//! never slows the others), and while `queued.max.bytes` is not reached. Responses are
//! checked batch by batch (CRC, completeness) here; records are decoded later on the
//! reader's task.
//!
//! Per partition, errors lead to:
//! - NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION,
//!   a lost connection...: the partition leaves this loop and is dispatched again,
//!   after a metadata refresh, to its leader's loop (Sarama's trigger/dispatcher);
//! - OFFSET_OUT_OF_RANGE: `auto.offset.reset` (earliest, latest), or an error to the
//!   reader and a stop until it seeks;
//! - a corrupt batch: the batches before it are delivered, then an error naming its
//!   offset; the partition stops there until the reader seeks: never a silent skip;
//! - other retriable codes: a backoff; other codes: an error to the reader, then a stop.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::Instrument;

use super::batch::{AbortedTransaction, FetchedBatch};
use super::fetch_session::{FetchSession, SessionOutcome, WantedPartition};
use super::list_offsets::{list_offset, EARLIEST, LATEST};
use super::partition::{Fetched, PartitionShared};
use super::queue;
use super::scan::scan;
use super::{ConsumerShared, IsolationLevel, OffsetReset};
use crate::backoff::jitter_unit;
use crate::client::TopicMetadata;
use crate::error::{Error, ErrorKind, KafkaCode};
use crate::net::Broker;

/// A partition as a fetch loop (or the dispatcher between loops) holds it.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub shared: Arc<PartitionShared>,
    pub tx: queue::Sender,
    /// The next offset to fetch.
    pub offset: i64,
    /// Current per-partition byte limit (grows when one batch does not fit).
    pub max_bytes: i32,
    pub generation: u64,
    pub retry_at: Option<Instant>,
    /// Consecutive failures, for the backoff.
    pub failures: u32,
    /// Waiting for the reader to seek (after an error that must not be skipped).
    pub stopped: bool,
    /// The leader may have moved: refresh metadata before the next dispatch.
    pub stale: bool,
}

impl Subscription {
    /// Applies a pending seek and reports whether the reader closed the partition.
    fn sync_with_reader(&mut self) -> bool {
        if let Some((generation, offset)) = self.shared.take_seek() {
            self.generation = generation;
            self.offset = offset;
            self.stopped = false;
            self.retry_at = None;
            self.failures = 0;
        }
        self.shared.closed.load(Ordering::Acquire) || self.tx.is_closed()
    }

    fn fetchable(&self, now: Instant) -> bool {
        !self.stopped
            && !self.shared.paused.load(Ordering::Acquire)
            && self.retry_at.is_none_or(|t| t <= now)
            && self.tx.capacity() >= 2
    }

    /// Sends an error to the reader (there is always a slot: see `QUEUE_SLOTS`).
    /// Queues `error` for the reader; `false` when its queue is full (the reader is
    /// behind): then nothing changes, and the next fetch meets the error again.
    fn report(&self, error: Error) -> bool {
        let error = error
            .with_topic(&*self.shared.tp.topic)
            .with_partition(self.shared.tp.partition)
            .with_offset(self.offset);
        tracing::debug!(error = %error, "partition error");
        self.tx
            .try_send(Fetched::Error {
                generation: self.generation,
                error,
            })
            .is_ok()
    }

    /// Reports an error the reader must act on (seek) and stops fetching the
    /// partition until it does; if the reader's queue is full, the partition is
    /// fetched again later and meets the error then.
    fn stop_with(&mut self, error: Error) {
        if self.report(error) {
            self.stopped = true;
        }
    }
}

/// The handle the dispatcher keeps for a running loop.
#[derive(Clone)]
pub(crate) struct LoopHandle {
    pub tx: mpsc::UnboundedSender<Subscription>,
    pub wake: Arc<Notify>,
}

/// Starts the loop for `broker` and returns its handle. The loop fetches on a
/// connection of its own: a broker answers a connection's requests in order, so on
/// the client's shared connection every produce, metadata or admin request would
/// wait behind a long poll (up to `fetch.max.wait.ms`).
pub(crate) fn spawn(shared: Arc<ConsumerShared>, broker: Broker) -> LoopHandle {
    let broker = shared.client.dedicated(&broker);
    let (tx, rx) = mpsc::unbounded_channel();
    let wake = Arc::new(Notify::new());
    let handle = LoopHandle {
        tx,
        wake: wake.clone(),
    };
    let span = tracing::debug_span!("fetch_loop", broker = %broker);
    tokio::spawn(tracing::Instrument::instrument(
        FetchLoop {
            shared,
            broker,
            rx,
            wake,
            subs: Vec::new(),
            session: FetchSession::new(true),
            round: 0,
        }
        .run(),
        span,
    ));
    handle
}

struct FetchLoop {
    shared: Arc<ConsumerShared>,
    broker: Broker,
    rx: mpsc::UnboundedReceiver<Subscription>,
    wake: Arc<Notify>,
    subs: Vec<Subscription>,
    session: FetchSession,
    /// Fetch rounds so far, for rotating the partition order.
    round: usize,
}

impl FetchLoop {
    async fn run(mut self) {
        loop {
            while let Ok(sub) = self.rx.try_recv() {
                self.add(sub);
            }
            self.subs.retain_mut(|s| !s.sync_with_reader());
            if self.subs.is_empty() && self.exit_if_idle() {
                return;
            }
            let now = Instant::now();
            let fetchable: Vec<usize> = (0..self.subs.len())
                .filter(|&i| self.subs[i].fetchable(now))
                .collect();
            if fetchable.is_empty() || self.shared.queued.is_full() {
                self.wait_for_work(now).await;
                continue;
            }
            self.follow_address_change();
            // Rotate who comes first: only the first partition of a response is sure
            // to get a whole batch past the response's byte budget (KIP-74).
            let mut fetchable = fetchable;
            let len = fetchable.len();
            fetchable.rotate_left(self.round % len);
            self.round = self.round.wrapping_add(1);
            let wanted = self.wanted(&fetchable);
            let request = self.fetch_request();
            let config = &self.shared.config;
            let timeout = config.request_timeout + config.fetch_max_wait;
            let span = tracing::trace_span!("fetch", round = self.round, partitions = len);
            let session = &mut self.session;
            let sent = self
                .broker
                .call_versioned_with_timeout(
                    |version| {
                        let mut request = request;
                        session.build(&mut request, &wanted, version);
                        request
                    },
                    timeout,
                )
                .instrument(span.clone())
                .await;
            match sent {
                Ok((_, response)) => {
                    self.handle_response(response, &fetchable)
                        .instrument(span)
                        .await
                }
                Err(err) => {
                    // The broker may have lost our session with the connection.
                    self.session.reset();
                    let _in_round = span.enter();
                    self.handle_failure(err);
                }
            }
        }
    }

    /// The broker moved (metadata lists another address for its node id): fetch
    /// there from now on, on a new connection of our own.
    fn follow_address_change(&mut self) {
        let Some(id) = self.broker.id() else { return };
        if let Some(current) = self.shared.client.broker(id) {
            if current.addr() != self.broker.addr() {
                tracing::debug!(
                    from = self.broker.addr(),
                    to = current.addr(),
                    "broker moved"
                );
                self.broker.disconnect();
                self.broker = self.shared.client.dedicated(&current);
                self.session.reset();
            }
        }
    }

    fn add(&mut self, sub: Subscription) {
        *sub.shared
            .loop_wake
            .lock()
            .expect("wake lock is never held across a panic") = Some(self.wake.clone());
        tracing::debug!(partition = %sub.shared.tp, offset = sub.offset, "partition joins fetch loop");
        self.subs.push(sub);
    }

    /// With no partition left, removes this loop from the consumer's table and ends,
    /// unless a partition arrived meanwhile. The table lock makes the check and the
    /// removal one step for the dispatcher.
    fn exit_if_idle(&mut self) -> bool {
        let mut loops = self
            .shared
            .loops
            .lock()
            .expect("loops lock is never held across a panic");
        if let Ok(sub) = self.rx.try_recv() {
            drop(loops);
            self.add(sub);
            return false;
        }
        let id = self.broker.id().unwrap_or(-1);
        if loops
            .get(&id)
            .is_some_and(|h| Arc::ptr_eq(&h.wake, &self.wake))
        {
            loops.remove(&id);
        }
        tracing::debug!("fetch loop idle, stopping");
        true
    }

    /// Sleeps until a partition arrives, a reader frees a slot or resumes, memory is
    /// released, or a backoff ends.
    async fn wait_for_work(&mut self, now: Instant) {
        let next_retry = self
            .subs
            .iter()
            .filter_map(|s| s.retry_at)
            .filter(|&t| t > now)
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        let queued = self.shared.queued.clone();
        tokio::select! {
            sub = self.rx.recv() => {
                if let Some(sub) = sub {
                    self.add(sub);
                }
            }
            _ = self.wake.notified() => {}
            _ = queued.wait_for_room(), if queued.is_full() => {}
            _ = tokio::time::sleep_until(next_retry) => {}
        }
    }

    /// What this round fetches: every fetchable partition at its position. The fetch
    /// session (KIP-227) decides which of them the request must actually carry.
    fn wanted(&self, fetchable: &[usize]) -> Vec<WantedPartition> {
        let metadata = self.shared.client.metadata();
        // A topic's partitions usually come one after another: look each topic up once
        // per run of them, not once per partition.
        let mut topic: Option<(&str, Option<&TopicMetadata>)> = None;
        fetchable
            .iter()
            .map(|&i| {
                let sub = &self.subs[i];
                let tp = &sub.shared.tp;
                let meta = match topic {
                    Some((name, meta)) if name == &*tp.topic => meta,
                    _ => {
                        let meta = metadata.topic(&tp.topic).map(|t| &**t);
                        topic = Some((&tp.topic, meta));
                        meta
                    }
                };
                WantedPartition {
                    tp: tp.clone(),
                    topic_id: meta.and_then(|t| t.topic_id).unwrap_or_default(),
                    fetch_offset: sub.offset,
                    current_leader_epoch: meta
                        .filter(|t| t.error.is_none())
                        .and_then(|t| t.partition(tp.partition))
                        .map_or(-1, |p| p.leader_epoch),
                    partition_max_bytes: sub.max_bytes,
                }
            })
            .collect()
    }

    /// The request's fixed fields; the session fills in partitions and session ids.
    fn fetch_request(&self) -> FetchRequest {
        let config = &self.shared.config;
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(millis(config.fetch_max_wait))
            .with_min_bytes(config.fetch_min_bytes)
            .with_max_bytes(config.fetch_max_bytes)
            .with_isolation_level(config.isolation.wire())
    }

    /// The request failed as a whole: the broker may be gone, so every partition it
    /// was serving goes back to the dispatcher.
    fn handle_failure(&mut self, err: Error) {
        tracing::debug!(error = %err, partitions = self.subs.len(), "fetch failed");
        if err.kind() == &ErrorKind::Closed {
            // The client was closed: each reader gets the error, then its end.
            for sub in std::mem::take(&mut self.subs) {
                sub.report(err.clone());
            }
            return;
        }
        // Does not go away by fetching elsewhere: the readers get the error.
        if err.kind() == &ErrorKind::UnsupportedVersion {
            for sub in &mut self.subs {
                sub.stop_with(err.clone());
            }
            return;
        }
        for sub in std::mem::take(&mut self.subs) {
            self.redispatch(sub);
        }
    }

    async fn handle_response(&mut self, response: FetchResponse, fetchable: &[usize]) {
        match self.session.handle_response(&response) {
            SessionOutcome::Data => {}
            SessionOutcome::Retry { error_code } => {
                // The session is gone; the next round sends a full request at once.
                tracing::debug!(error_code, "fetch session reset");
                return;
            }
            SessionOutcome::Error { error_code } => {
                tracing::debug!(error_code, "fetch response error");
                let now = Instant::now();
                for &i in fetchable {
                    let sub = &mut self.subs[i];
                    sub.failures += 1;
                    sub.retry_at = Some(
                        now + self
                            .shared
                            .config
                            .retry_backoff
                            .delay(sub.failures, jitter_unit()),
                    );
                }
                return;
            }
        }
        let metadata = self.shared.client.metadata();
        // Keyed by owned names: the session's names must not stay borrowed while the
        // partitions are handled (which needs the loop mutably).
        let mut by_partition: HashMap<(Arc<str>, i32), &PartitionData> = HashMap::new();
        for topic in &response.responses {
            let name: Arc<str> = if topic.topic.0.is_empty() {
                // v13+: by id; the session remembers the ids it sent, even of topics
                // gone from metadata since.
                match self.session.topic_name(topic.topic_id) {
                    Some(name) => name.clone(),
                    None => match metadata
                        .topics
                        .values()
                        .find(|t| t.topic_id == Some(topic.topic_id))
                    {
                        Some(t) => Arc::from(t.name.as_str()),
                        None => continue,
                    },
                }
            } else {
                Arc::from(topic.topic.0.as_str())
            };
            for p in &topic.partitions {
                by_partition.insert((name.clone(), p.partition_index), p);
            }
        }
        if by_partition.is_empty() {
            // An incremental answer with nothing new (an idle session's every round).
            return;
        }
        // Partitions of one response share its buffer, and with it one reference count
        // that every record's key and value touch: readers on different threads would
        // fight over that cache line (measured: +40% CPU for a group reading six
        // partitions on two threads). Each partition gets its own copy then.
        let with_data = by_partition
            .values()
            .filter(|p| p.records.as_ref().is_some_and(|r| !r.is_empty()))
            .count();
        let copy = with_data > 1;
        let mut leaving = Vec::new();
        for &i in fetchable {
            let tp = &self.subs[i].shared.tp;
            let Some(data) = by_partition.get(&(tp.topic.clone(), tp.partition)) else {
                continue;
            };
            match self.handle_partition(i, data, copy) {
                Outcome::Keep => {}
                outcome => leaving.push((i, outcome)),
            }
        }
        leaving.sort_unstable_by_key(|l| std::cmp::Reverse(l.0));
        for (i, outcome) in leaving {
            let mut sub = self.subs.swap_remove(i);
            match outcome {
                Outcome::Reset(target) => self.reset_offset(sub, target),
                _ => {
                    sub.stale = true;
                    self.redispatch(sub);
                }
            }
        }
    }

    fn handle_partition(&mut self, i: usize, data: &PartitionData, copy: bool) -> Outcome {
        let config = self.shared.config.clone();
        let queued = self.shared.queued.clone();
        let sub = &mut self.subs[i];
        let Some(code) = KafkaCode::from_code(data.error_code) else {
            sub.failures = 0;
            sub.shared
                .high_watermark
                .store(data.high_watermark, Ordering::Release);
            deliver(sub, data, copy, &config, &queued);
            // Lag as of this answer, records or not (a partition at its end says 0).
            let metrics = &sub.shared.metrics;
            metrics.position.set(sub.offset as f64);
            metrics
                .lag
                .set((data.high_watermark - sub.offset).max(0) as f64);
            return Outcome::Keep;
        };
        let err = Error::kafka(code);
        match code {
            KafkaCode::OFFSET_OUT_OF_RANGE => {
                let target = match config.auto_offset_reset {
                    OffsetReset::Earliest => EARLIEST,
                    OffsetReset::Latest => LATEST,
                    OffsetReset::None => {
                        sub.stop_with(Error::new(
                            ErrorKind::Kafka(code),
                            "the offset is out of range and auto.offset.reset is none; seek to continue",
                        ));
                        return Outcome::Keep;
                    }
                };
                Outcome::Reset(target)
            }
            _ if err.is_stale_metadata() => Outcome::Redispatch,
            _ if err.is_retriable() || code.code() == UNKNOWN_TOPIC_ID => {
                sub.failures += 1;
                sub.retry_at =
                    Some(Instant::now() + config.retry_backoff.delay(sub.failures, jitter_unit()));
                if code.code() == UNKNOWN_TOPIC_ID {
                    return Outcome::Redispatch;
                }
                Outcome::Keep
            }
            _ => {
                sub.stop_with(err);
                Outcome::Keep
            }
        }
    }

    /// Looks up the offset `auto.offset.reset` asks for on its own task (ListOffsets
    /// may be retried for a while, and must not hold up this loop's other partitions),
    /// then dispatches the partition again from there.
    fn reset_offset(&self, mut sub: Subscription, target: i64) {
        *sub.shared
            .loop_wake
            .lock()
            .expect("wake lock is never held across a panic") = None;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let config = &shared.config;
            let tp = sub.shared.tp.clone();
            let found = list_offset(
                &shared.client,
                &tp,
                target,
                config.isolation.wire(),
                config.retry_backoff,
            )
            .await;
            match found {
                Ok(offset) => {
                    let offset = offset.unwrap_or(0);
                    tracing::info!(partition = %tp, from = sub.offset, to = offset, "offset out of range, reset");
                    sub.offset = offset;
                    sub.failures = 0;
                }
                Err(err) => {
                    sub.failures += 1;
                    sub.retry_at = Some(
                        Instant::now() + config.retry_backoff.delay(sub.failures, jitter_unit()),
                    );
                    sub.report(err);
                }
            }
            super::dispatch(shared, sub).await;
        });
    }

    /// Hands `sub` back to the dispatcher, which finds its leader's loop.
    fn redispatch(&self, mut sub: Subscription) {
        sub.failures += 1;
        let delay = self
            .shared
            .config
            .retry_backoff
            .delay(sub.failures, jitter_unit());
        sub.retry_at = Some(Instant::now() + delay);
        sub.stale = true;
        *sub.shared
            .loop_wake
            .lock()
            .expect("wake lock is never held across a panic") = None;
        tracing::debug!(partition = %sub.shared.tp, ?delay, "partition leaves fetch loop");
        tokio::spawn(super::dispatch(self.shared.clone(), sub));
    }
}

const UNKNOWN_TOPIC_ID: i16 = 100;

enum Outcome {
    Keep,
    Redispatch,
    /// Out of range: reset to this ListOffsets target (earliest or latest).
    Reset(i64),
}

/// Hands the complete batches of one partition's data to its reader and advances;
/// `copy`: in a buffer of its own (see the caller).
fn deliver(
    sub: &mut Subscription,
    data: &PartitionData,
    copy: bool,
    config: &super::ConsumerConfig,
    queued: &Arc<super::memory::QueuedBytes>,
) {
    let records = data.records.clone().unwrap_or_default();
    if records.is_empty() {
        return;
    }
    let records = if copy {
        bytes::Bytes::copy_from_slice(&records)
    } else {
        records
    };
    let bytes = records.len();
    let scanned = scan(records, sub.offset, &config.decode_options());
    // The good batches and the error after them go together, or neither does: an
    // error queued (or an offset advanced) past batches the reader never got would
    // skip them. Without room, the next fetch brings them again.
    let slots = usize::from(!scanned.batches.is_empty()) + usize::from(scanned.corrupt.is_some());
    if sub.tx.capacity() < slots {
        return;
    }
    if !scanned.batches.is_empty() {
        let aborted = (config.isolation == IsolationLevel::ReadCommitted).then(|| {
            let mut list: Vec<AbortedTransaction> = data
                .aborted_transactions
                .iter()
                .flatten()
                .map(|t| AbortedTransaction {
                    producer_id: t.producer_id.0,
                    first_offset: t.first_offset,
                })
                .collect();
            list.sort_by_key(|t| t.first_offset);
            list
        });
        let batch = FetchedBatch {
            topic: sub.shared.tp.topic.clone(),
            partition: sub.shared.tp.partition,
            batches: scanned.batches,
            position: sub.offset,
            high_watermark: data.high_watermark,
            aborted,
            _memory: Some(queued.hold(bytes)),
        };
        let next = batch.next_offset();
        let records: i64 = batch
            .batches
            .iter()
            .map(|b| i64::from(b.record_count()))
            .sum();
        if sub
            .tx
            .try_send(Fetched::Batch {
                generation: sub.generation,
                batch: Box::new(batch),
            })
            .is_ok()
        {
            sub.offset = next;
            let metrics = &sub.shared.metrics;
            metrics.records.increment(records.max(0) as u64);
            metrics.bytes.increment(bytes as u64);
        }
    }
    if let Some((offset, err)) = scanned.corrupt {
        sub.offset = sub.offset.max(offset);
        sub.stop_with(Error::from(err));
    } else if scanned.needs_larger_fetch && bytes >= sub.max_bytes as usize {
        // The partition's own limit cut the batch (not the response's total budget,
        // which other partitions may have used up): grow it.
        if sub.max_bytes >= config.fetch_max_bytes {
            sub.stop_with(Error::new(
                ErrorKind::Kafka(KafkaCode::MESSAGE_TOO_LARGE),
                format!(
                    "a batch is larger than fetch.max.bytes ({}); raise it to read on",
                    config.fetch_max_bytes
                ),
            ));
        } else {
            sub.max_bytes = sub.max_bytes.saturating_mul(2).min(config.fetch_max_bytes);
            tracing::debug!(partition = %sub.shared.tp, max_bytes = sub.max_bytes, "batch larger than the partition limit, growing it");
        }
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::fetch_response::PartitionData;

    use super::*;
    use crate::backoff::Backoff;
    use crate::consumer::memory::QueuedBytes;
    use crate::consumer::partition::QUEUE_SLOTS;
    use crate::consumer::ConsumerConfig;
    use crate::protocol::records::BatchBuilder;
    use crate::TopicPartition;

    fn config() -> ConsumerConfig {
        ConsumerConfig {
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(100),
            fetch_max_bytes: 1 << 20,
            max_partition_fetch_bytes: 1 << 20,
            queued_max_bytes: 1 << 20,
            isolation: IsolationLevel::ReadUncommitted,
            auto_offset_reset: OffsetReset::Earliest,
            check_crcs: true,
            request_timeout: Duration::from_secs(1),
            retry_backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
        }
    }

    fn one_record(offset: i64) -> Bytes {
        let mut builder = BatchBuilder::new().base_offset(offset);
        builder.push(0, None, Some(b"v".as_slice()), &[]).unwrap();
        builder.finish().unwrap()
    }

    /// Offset 0 whole, then offset 1 with a broken CRC, in one fetch answer.
    fn good_then_corrupt() -> PartitionData {
        let mut records = BytesMut::new();
        records.extend_from_slice(&one_record(0));
        let mut corrupt = one_record(1).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x01;
        records.extend_from_slice(&corrupt);
        PartitionData::default()
            .with_high_watermark(2)
            .with_records(Some(records.freeze()))
    }

    fn subscription(tx: queue::Sender) -> Subscription {
        Subscription {
            shared: Arc::new(PartitionShared::new(TopicPartition::new("t", 0))),
            tx,
            offset: 0,
            max_bytes: 1 << 20,
            generation: 0,
            retry_at: None,
            failures: 0,
            stopped: false,
            stale: false,
        }
    }

    /// With one free slot, the good batch and the error after it do not both fit:
    /// neither goes (the offset stays; the next fetch brings them again), rather than
    /// the batch going and the error being dropped with the partition stopped.
    #[test]
    fn a_corrupt_batch_and_the_good_ones_before_it_are_queued_together_or_not_at_all() {
        let (tx, mut rx) = queue::channel(QUEUE_SLOTS);
        let mut sub = subscription(tx);
        let queued = QueuedBytes::new(1 << 20);
        for _ in 0..QUEUE_SLOTS - 1 {
            sub.tx
                .try_send(Fetched::Error {
                    generation: 0,
                    error: Error::protocol("filler"),
                })
                .unwrap();
        }
        deliver(&mut sub, &good_then_corrupt(), false, &config(), &queued);
        assert_eq!(sub.offset, 0, "nothing delivered, nothing skipped");
        assert!(!sub.stopped, "not stopped: the error was not queued");
        // The reader catches up; the same answer again: both go, in order.
        while rx.try_recv().is_ok() {}
        deliver(&mut sub, &good_then_corrupt(), false, &config(), &queued);
        assert!(matches!(rx.try_recv(), Ok(Fetched::Batch { .. })));
        match rx.try_recv() {
            Ok(Fetched::Error { error, .. }) => {
                assert_eq!(error.kind(), &ErrorKind::CorruptRecords, "{error}")
            }
            other => panic!("the error after the batch, not {other:?}"),
        }
        assert_eq!(sub.offset, 1);
        assert!(sub.stopped, "stopped until the reader seeks past it");
    }

    /// In a build without zstd, a zstd batch stops the partition as a corrupt one does:
    /// the batch before it is delivered, then a configuration error naming the feature;
    /// the batch after it is not, and the offset stays at the zstd batch.
    #[cfg(not(feature = "zstd"))]
    #[test]
    fn a_zstd_batch_without_the_feature_stops_the_partition_naming_it() {
        use crate::protocol::records::Compression;

        // Offset 1 marked zstd (attributes' low byte, at 22), its CRC (17..21, over
        // everything from the attributes on) made right again.
        let mut zstd = one_record(1).to_vec();
        zstd[22] |= Compression::Zstd.id();
        let crc = crc32c::crc32c(&zstd[21..]);
        zstd[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut records = BytesMut::new();
        records.extend_from_slice(&one_record(0));
        records.extend_from_slice(&zstd);
        records.extend_from_slice(&one_record(2));
        let data = PartitionData::default()
            .with_high_watermark(3)
            .with_records(Some(records.freeze()));

        let (tx, mut rx) = queue::channel(QUEUE_SLOTS);
        let mut sub = subscription(tx);
        deliver(
            &mut sub,
            &data,
            false,
            &config(),
            &QueuedBytes::new(1 << 20),
        );
        match rx.try_recv() {
            Ok(Fetched::Batch { batch, .. }) => assert_eq!(batch.next_offset(), 1),
            other => panic!("the batch before the zstd one, not {other:?}"),
        }
        match rx.try_recv() {
            Ok(Fetched::Error { error, .. }) => {
                assert_eq!(error.kind(), &ErrorKind::Config, "{error}");
                assert!(error.to_string().contains("`zstd` feature"), "{error}");
            }
            other => panic!("the error at the zstd batch, not {other:?}"),
        }
        assert!(rx.try_recv().is_err(), "nothing after the error");
        assert_eq!(sub.offset, 1, "the zstd batch is not skipped");
        assert!(sub.stopped, "stopped until the reader seeks past it");
    }
}
