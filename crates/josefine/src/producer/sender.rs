//! The sender task: drains ready batches into Produce requests (per broker, as many
//! as it has room in flight for) and turns responses into delivery reports, retries
//! or errors.
//!
//! It owns what must change in one place and order: in-flight counts per broker, the
//! idempotent producer's identity and sequences, epoch bumps. Requests themselves run
//! in spawned tasks (encoding and compressing batches there, in parallel) and report
//! back through a channel.
//!
//! Errors per batch:
//! - success, or DUPLICATE_SEQUENCE_NUMBER (the broker already has it): delivered;
//! - retriable (NOT_LEADER_OR_FOLLOWER, a lost connection, a timeout, ...): back to
//!   the front of its partition's queue after a backoff, with a metadata refresh when
//!   the leader may have moved, while `delivery.timeout.ms` and `retries` allow;
//! - OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID, INVALID_PRODUCER_EPOCH with
//!   idempotence: the broker lost our sequence state; bump the epoch (KIP-360) and
//!   retry, re-stamped from sequence 0;
//! - MESSAGE_TOO_LARGE for a batch of several records: split it in two and retry, so
//!   only a record too large on its own fails;
//! - anything else: the batch's records fail with the error. With idempotence, a batch
//!   that failed after being sent leaves its sequence unresolved, so the epoch is
//!   bumped before the partition sends again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;

use super::accumulator::{Batch, TopicPartition};
use super::builder::Acks;
use super::delivery::{Resolution, Resolver};
use super::idempotence::{ProducerIdentity, Sequences, Stamp};
use super::transaction::{self, Phase};
use super::Shared;
use crate::backoff::jitter_unit;
use crate::error::{Error, ErrorKind, KafkaCode, Result};
use crate::protocol::records::{batches, restamp_producer, BatchBuilder, DecodeOptions, Header};

const DUPLICATE_SEQUENCE_NUMBER: i16 = KafkaCode::DUPLICATE_SEQUENCE_NUMBER.code();

type ProducerBatch = Batch<()>;

/// tokio's timer ticks once a millisecond and fires a sleep at the first tick at or
/// after its deadline: a linger deadline would be missed by half a millisecond on
/// average, most of the difference between the two clients' median latency in the
/// latency benchmark (docs/BENCHMARKS.md). The loop sleeps until one resolution before a linger or
/// backoff deadline, and draining counts those within one resolution of now as
/// reached.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// A finished Produce request, back from its task.
struct Completion {
    broker: i32,
    batches: Vec<ProducerBatch>,
    result: Result<ProduceResponse>,
}

struct Sender {
    shared: Arc<Shared>,
    completions_tx: mpsc::UnboundedSender<Completion>,
    completions: mpsc::UnboundedReceiver<Completion>,
    in_flight: HashMap<i32, usize>,
    sequences: Sequences,
    /// Set when sequence state may be out of step with the brokers'.
    needs_epoch_bump: bool,
    /// Topics whose leaders must be looked up again, and when that was last asked.
    stale_topics: HashSet<Arc<str>>,
    last_refresh: Option<Instant>,
    /// Per-topic metric handles, looked up on a topic's first batch.
    metrics: HashMap<Arc<str>, crate::metrics::ProducerTopicMetrics>,
    buffer_gauge: metrics::Gauge,
}

pub(super) async fn run(shared: Arc<Shared>) {
    let (completions_tx, completions) = mpsc::unbounded_channel();
    let buffer_gauge = crate::metrics::producer_buffer(shared.client.client_id());
    let mut sender = Sender {
        shared,
        completions_tx,
        completions,
        in_flight: HashMap::new(),
        metrics: HashMap::new(),
        buffer_gauge,
        sequences: Sequences::default(),
        needs_epoch_bump: false,
        stale_topics: HashSet::new(),
        last_refresh: None,
    };
    sender.run().await;
}

impl Sender {
    async fn run(&mut self) {
        // A transactional producer's id comes from its transaction coordinator
        // (Producer::begin_transaction), not from here.
        if self.shared.config.idempotence && self.shared.txn.is_none() {
            self.init_producer_id().await;
        }
        loop {
            let now = now();
            self.expire(now);
            self.step_transaction();
            if self.needs_epoch_bump && self.in_flight_total() == 0 {
                self.init_producer_id().await;
            }
            let closing = self.shared.closed.load(Ordering::Acquire);
            if !self.needs_epoch_bump {
                self.dispatch(
                    now,
                    closing || self.shared.flushing.load(Ordering::Acquire) > 0,
                );
            }
            self.refresh_stale_metadata(now);
            if closing && self.in_flight_total() == 0 && self.shared.accumulator().is_empty() {
                return;
            }
            let deadline = self.next_wakeup(now);
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                Some(done) = self.completions.recv() => {
                    // Every request that finished meanwhile, in one turn.
                    self.complete(done);
                    while let Ok(done) = self.completions.try_recv() {
                        self.complete(done);
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    /// A transactional producer's part of a loop turn: takes a new producer id or
    /// epoch (sequences start again at 0), fails the batches of a transaction that
    /// can no longer commit, and starts AddPartitionsToTxn for partitions new to the
    /// transaction.
    fn step_transaction(&mut self) {
        let Some(txn) = &self.shared.txn else { return };
        let (identity, doomed, to_add) = {
            let mut state = transaction::lock(txn);
            let doomed = match state.phase() {
                Phase::Aborting => Some(Error::new(
                    ErrorKind::Closed,
                    "the transaction was aborted before this record was sent",
                )),
                // Of the cause's kind, so the record's error says what went wrong.
                Phase::Abortable | Phase::Fatal => state
                    .abortable()
                    .or_else(|| state.fatal())
                    .map(|cause| {
                        Error::new(
                            cause.kind().clone(),
                            format!(
                                "the transaction cannot commit ({cause}), so this record was not sent"
                            ),
                        )
                    }),
                _ => None,
            };
            (state.identity(), doomed, state.take_to_add())
        };
        if let Some(identity) = identity {
            if self.sequences.identity() != Some(identity) {
                self.sequences.reset(identity);
            }
        }
        if let Some(err) = doomed {
            let waiting = self.shared.accumulator().take_all_waiting();
            for batch in waiting {
                self.fail_waiting(batch, err.clone());
            }
        }
        if let Some((partitions, identity)) = to_add {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let Some(txn) = &shared.txn else { return };
                let id = transaction::lock(txn).id.clone();
                let deadline = tokio::time::Instant::now() + shared.config.max_block;
                let result = transaction::add_partitions(
                    &shared.client,
                    &id,
                    identity,
                    &partitions,
                    deadline,
                )
                .await;
                if let Err(err) = &result {
                    tracing::warn!(error = %err, "AddPartitionsToTxn failed");
                }
                transaction::lock(txn).added(partitions, result);
                shared.txn_added.notify_waiters();
                shared.wake.notify_one();
            });
        }
    }

    fn in_flight_total(&self) -> usize {
        self.in_flight.values().sum()
    }

    /// When to look again without being woken: a linger or backoff deadline, an
    /// expiry, or a metadata retry for batches without a leader.
    fn next_wakeup(&self, now: Instant) -> Instant {
        let mut acc = self.shared.accumulator();
        let mut deadline = now + Duration::from_secs(1);
        // Waiting for an epoch bump nothing is drained (the requests out end the wait):
        // a linger passed meanwhile would wake the loop again and again.
        let drain_at = (!self.needs_epoch_bump)
            .then(|| acc.next_deadline())
            .flatten()
            .map(|d| d.checked_sub(TIMER_RESOLUTION).unwrap_or(d));
        for candidate in [
            drain_at,
            acc.next_expiry(self.shared.config.delivery_timeout),
            (!self.stale_topics.is_empty()).then(|| now + self.shared.config.retry_backoff.initial),
        ]
        .into_iter()
        .flatten()
        {
            deadline = deadline.min(candidate.max(now));
        }
        deadline
    }

    /// Fails batches that waited longer than `delivery.timeout.ms`.
    fn expire(&mut self, now: Instant) {
        let timeout = self.shared.config.delivery_timeout;
        let expired = self.shared.accumulator().expire(now, timeout);
        for batch in expired {
            let last = batch
                .last_error
                .as_ref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            let err = Error::new(
                ErrorKind::Timeout,
                format!(
                    "delivery.timeout.ms ({timeout:?}) expired before the batch could be delivered after {} attempt(s){last}",
                    batch.attempts
                ),
            );
            self.fail_waiting(batch, err);
        }
    }

    /// Drains sendable batches into requests of at most `max.request.size`, as many
    /// per broker as it has room in flight for: a backlog bigger than one request
    /// (thousands of partitions' batches after a flush) goes out pipelined, not one
    /// request per response.
    fn dispatch(&mut self, now: Instant, force: bool) {
        let client = &self.shared.client;
        let config = &self.shared.config;
        let mut requests = Requests::new(config.max_in_flight, config.max_request_size);
        let mut leaderless = Vec::new();
        // The transaction's lock before the accumulator's (see TxnState).
        let mut txn = self.shared.txn.as_ref().map(transaction::lock);
        // A linger or backoff ending within the timer's resolution counts as ended (the
        // loop sleeps until a resolution before such a deadline: `TIMER_RESOLUTION`).
        let drained = self
            .shared
            .accumulator()
            .drain(now + TIMER_RESOLUTION, force, |tp, size| {
                if let Some(txn) = txn.as_mut() {
                    if !txn.may_send(tp) {
                        return None;
                    }
                }
                let leader = match client.cached_leader(&tp.topic, tp.partition) {
                    Ok(broker) => broker.id()?,
                    Err(_) => {
                        leaderless.push(tp.topic.clone());
                        return None;
                    }
                };
                let in_flight = self.in_flight.get(&leader).copied().unwrap_or(0);
                requests.place(leader, in_flight, size)
            });
        drop(txn);
        self.stale_topics.extend(leaderless);
        let mut by_request: BTreeMap<(i32, usize), Vec<ProducerBatch>> = BTreeMap::new();
        for (request, mut batch) in drained {
            batch.stamp = self
                .sequences
                .stamp(&batch.tp, batch.stamp, batch.record_count());
            by_request.entry(request).or_default().push(batch);
        }
        if !by_request.is_empty() {
            self.note_buffer();
        }
        for ((broker_id, _), batches) in by_request {
            let Some(broker) = self.shared.client.broker(broker_id) else {
                // The broker left the metadata between lookup and now.
                self.retry_all(batches, now, None);
                continue;
            };
            *self.in_flight.entry(broker_id).or_insert(0) += 1;
            let tx = self.completions_tx.clone();
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let (batches, result) = produce(&shared, &broker, batches).await;
                let _ = tx.send(Completion {
                    broker: broker_id,
                    batches,
                    result,
                });
            });
        }
    }

    /// Asks for fresh metadata of topics whose batches have no leader or hit a leader
    /// error, at most once per `retry.backoff.ms`.
    fn refresh_stale_metadata(&mut self, now: Instant) {
        if self.stale_topics.is_empty() {
            return;
        }
        let backoff = self.shared.config.retry_backoff.initial;
        if self.last_refresh.is_some_and(|t| now < t + backoff) {
            return;
        }
        self.last_refresh = Some(now);
        let topics: Vec<String> = self.stale_topics.drain().map(|t| t.to_string()).collect();
        let client = self.shared.client.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            if let Err(err) = client.refresh_metadata(&names).await {
                tracing::debug!(error = %err, "producer metadata refresh failed");
            }
            shared.wake.notify_one();
        });
    }

    /// Handles a finished request.
    fn complete(&mut self, done: Completion) {
        if let Some(n) = self.in_flight.get_mut(&done.broker) {
            *n = n.saturating_sub(1);
        }
        let now = now();
        match done.result {
            Err(err) => {
                tracing::debug!(broker = done.broker, error = %err, "produce request failed");
                for batch in done.batches {
                    self.retry_or_fail(batch, err.clone(), now);
                }
            }
            Ok(response) => {
                let acks_none = self.shared.config.acks == Acks::None;
                for batch in done.batches {
                    match partition_result(&response, &batch.tp) {
                        _ if acks_none => self.deliver(batch, -1, -1),
                        None => {
                            let err = Error::protocol(
                                "the Produce response does not mention the partition",
                            );
                            self.retry_or_fail(batch, err, now);
                        }
                        Some((0 | DUPLICATE_SEQUENCE_NUMBER, base_offset, append_time)) => {
                            self.deliver(batch, base_offset, append_time)
                        }
                        Some((code, _, _)) => {
                            let err =
                                Error::kafka(KafkaCode::from_code(code).expect("non-zero code"));
                            self.retry_or_fail(batch, err, now);
                        }
                    }
                }
            }
        }
        self.shared.wake.notify_one();
    }

    fn topic_metrics(&mut self, topic: &Arc<str>) -> &crate::metrics::ProducerTopicMetrics {
        self.metrics
            .entry(topic.clone())
            .or_insert_with(|| crate::metrics::ProducerTopicMetrics::new(topic))
    }

    /// What the buffer holds now, for its gauge.
    fn note_buffer(&self) {
        let free = self.shared.memory.available_permits();
        let used = self.shared.config.buffer_memory.saturating_sub(free);
        self.buffer_gauge.set(used as f64);
    }

    fn deliver(&mut self, batch: ProducerBatch, base_offset: i64, append_time: i64) {
        let n = batch.replies.len();
        let (size, took) = (batch.size(), batch.created.elapsed());
        let metrics = self.topic_metrics(&batch.tp.topic);
        metrics.records.increment(n as u64);
        metrics.batches.increment(1);
        metrics.batch_bytes.record(size as f64);
        if batch.uncompressed > 0 {
            let ratio = size as f64 / batch.uncompressed as f64;
            metrics.compression_ratio.record(ratio);
        }
        metrics.latency.record(took.as_secs_f64());
        batch.resolver.resolve(Resolution::Written {
            base_offset,
            append_time,
        });
        self.shared.accumulator().complete(&batch.tp);
        self.shared.memory.add_permits(batch.reserved);
        self.note_buffer();
        self.shared.finished(n);
    }

    /// Fails a batch that was in flight: its partition is unmuted.
    fn fail(&mut self, batch: ProducerBatch, err: Error) {
        let tp = batch.tp.clone();
        self.fail_waiting(batch, err);
        self.shared.accumulator().complete(&tp);
    }

    /// Fails a batch taken from its queue without being sent (expired, or every
    /// waiting batch at once): its partition's batch in flight, if any, keeps it muted.
    fn fail_waiting(&mut self, batch: ProducerBatch, err: Error) {
        let what = match err.code() {
            Some(code) => code.name().to_string(),
            None => format!("{:?}", err.kind()),
        };
        crate::metrics::produce_failed(&batch.tp.topic, &what);
        let err = err
            .with_topic(&*batch.tp.topic)
            .with_partition(batch.tp.partition);
        tracing::warn!(error = %err, records = batch.replies.len(), "produce failed");
        if let Some(txn) = &self.shared.txn {
            // The transaction cannot commit without this batch; its sequences are
            // unresolved (the broker may have it, or expects it next) until the epoch
            // is bumped, which a transactional producer does after the abort (KIP-360).
            let mut state = transaction::lock(txn);
            // Stamped is enough: its sequence numbers were taken, sent or not.
            if batch.stamp.is_some() {
                state.require_epoch_bump();
            }
            state.fail(err.clone());
        } else if self.shared.config.idempotence && batch.encoded.is_some() {
            // The broker may or may not have this batch: its sequences are unresolved.
            self.needs_epoch_bump = true;
        }
        let n = batch.replies.len();
        batch.resolver.resolve(Resolution::Failed(err));
        self.shared.memory.add_permits(batch.reserved);
        self.note_buffer();
        self.shared.finished(n);
    }

    fn retry_or_fail(&mut self, batch: ProducerBatch, err: Error, now: Instant) {
        let config = &self.shared.config;
        let code = err.code();
        let transactional = self.shared.txn.is_some();
        let sequence_trouble = config.idempotence
            && matches!(
                code,
                Some(
                    KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER
                        | KafkaCode::UNKNOWN_PRODUCER_ID
                        | KafkaCode::INVALID_PRODUCER_EPOCH
                )
            );
        let too_large = code == Some(KafkaCode::MESSAGE_TOO_LARGE) && batch.record_count() > 1;
        let in_time = now < batch.created + config.delivery_timeout;
        let attempts_left = batch.attempts <= config.retries;
        if code == Some(KafkaCode::PRODUCER_FENCED) {
            return self.fail(batch, err);
        }
        // A transactional producer cannot bump its own epoch, nor give the halves of
        // a split batch fresh sequences: the transaction has to be aborted (fail()
        // makes it abortable and asks for the epoch bump after the abort).
        if transactional && (sequence_trouble || too_large) {
            return self.fail(batch, err);
        }
        // The coordinator is still writing the previous transaction's markers.
        let concurrent = transactional && code == Some(KafkaCode::CONCURRENT_TRANSACTIONS);
        if !(err.is_retriable() || sequence_trouble || too_large || concurrent)
            || !in_time
            || !attempts_left
        {
            let err = if !in_time {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "delivery.timeout.ms expired after {} attempt(s); last error: {err}",
                        batch.attempts
                    ),
                )
            } else {
                err
            };
            return self.fail(batch, err);
        }
        if sequence_trouble {
            tracing::info!(error = %err, "broker lost our producer state; bumping the epoch");
            self.needs_epoch_bump = true;
        }
        if err.is_stale_metadata() {
            self.stale_topics.insert(batch.tp.topic.clone());
        }
        let delay = config.retry_backoff.delay(batch.attempts, jitter_unit());
        self.topic_metrics(&batch.tp.topic).retries.increment(1);
        let config = &self.shared.config;
        let mut batch = batch;
        batch.last_error = Some(err.clone());
        tracing::debug!(topic = %batch.tp.topic, partition = batch.tp.partition, attempt = batch.attempts, error = %err, ?delay, "retrying batch");
        if too_large {
            match split(batch) {
                Ok(halves) => {
                    // The halves need fresh sequences; only a new epoch gives them.
                    if config.idempotence {
                        self.needs_epoch_bump = true;
                    }
                    self.shared.accumulator().retry(halves, now);
                }
                Err((batch, split_err)) => self.fail(batch, split_err),
            }
            return;
        }
        self.retry_all(vec![batch], now, Some(delay));
    }

    fn retry_all(&mut self, batches: Vec<ProducerBatch>, now: Instant, delay: Option<Duration>) {
        let at = now + delay.unwrap_or(self.shared.config.retry_backoff.initial);
        self.shared.accumulator().retry(batches, at);
    }

    /// Gets a producer id, or a new epoch for ours (KIP-360). Retries retriable errors;
    /// a non-retriable one makes the producer fail every record from then on.
    ///
    /// An idempotent (non-transactional) producer bumps its epoch itself, as the Java
    /// client does: Kafka answers InitProducerId without a transactional id with a
    /// fresh producer id whatever id and epoch it is sent, and accepts the next epoch
    /// of a known id when its sequences start again at 0. No round trip, the producer
    /// id is kept, and a broker whose transaction coordinator is unavailable does not
    /// stall the producer. Only an exhausted epoch asks for a new id.
    async fn init_producer_id(&mut self) {
        let current = self.sequences.identity();
        if let Some(id) = current.filter(|id| id.epoch < i16::MAX - 1) {
            let bumped = ProducerIdentity {
                id: id.id,
                epoch: id.epoch + 1,
            };
            tracing::debug!(id = id.id, epoch = bumped.epoch, "producer epoch bumped");
            self.sequences.reset(bumped);
            self.needs_epoch_bump = false;
            return;
        }
        let mut failures = 0;
        loop {
            let attempt = async {
                let broker = self.shared.client.any_broker()?;
                let (version, response) = broker
                    .call_versioned(|_| {
                        InitProducerIdRequest::default()
                            // Not transactional: null, not the default empty string.
                            .with_transactional_id(None)
                            .with_transaction_timeout_ms(i32::MAX)
                            .with_producer_id(ProducerId(-1))
                            .with_producer_epoch(-1)
                    })
                    .await?;
                Error::check_code(response.error_code)?;
                tracing::debug!(
                    version,
                    id = response.producer_id.0,
                    epoch = response.producer_epoch,
                    "producer id"
                );
                Ok::<_, Error>(ProducerIdentity {
                    id: response.producer_id.0,
                    epoch: response.producer_epoch,
                })
            };
            match attempt.await {
                Ok(identity) => {
                    self.sequences.reset(identity);
                    self.needs_epoch_bump = false;
                    return;
                }
                // Retried for as long as records wait: a broker that starts up answers
                // COORDINATOR_LOAD_IN_PROGRESS for a while. Closing does not stop it
                // (close delivers what is buffered); waiting records expire after
                // `delivery.timeout.ms`, as they do whatever holds them back.
                Err(err) if err.is_retriable() => {
                    self.expire(now());
                    if self.shared.closed.load(Ordering::Acquire)
                        && self.shared.accumulator().is_empty()
                    {
                        return;
                    }
                    failures += 1;
                    let delay = self
                        .shared
                        .config
                        .retry_backoff
                        .delay(failures, jitter_unit());
                    tracing::debug!(error = %err, ?delay, "InitProducerId failed, retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(err) => {
                    let err = Error::new(
                        err.kind().clone(),
                        format!("cannot get a producer id: {err}"),
                    );
                    tracing::error!(error = %err, "idempotent producer cannot continue");
                    let _ = self.shared.fatal.set(err.clone());
                    let waiting = self.shared.accumulator().take_all_waiting();
                    for batch in waiting {
                        self.fail_waiting(batch, err.clone());
                    }
                    self.needs_epoch_bump = false;
                    return;
                }
            }
        }
    }
}

/// One turn's Produce requests as they are filled: a batch joins its leader's last
/// request while that stays within `max.request.size` (a bigger batch goes alone), else
/// begins another while the broker has room in flight for it.
struct Requests {
    max_in_flight: usize,
    max_request_size: usize,
    /// Per broker: the requests begun this turn, and the bytes of the last one.
    building: HashMap<i32, (usize, usize)>,
}

impl Requests {
    fn new(max_in_flight: usize, max_request_size: usize) -> Self {
        Self {
            max_in_flight,
            max_request_size,
            building: HashMap::new(),
        }
    }

    /// The request (leader, number within the turn) a batch of `size` bytes joins, or
    /// `None` when the leader, with `in_flight` requests out, has no room for it.
    fn place(&mut self, leader: i32, in_flight: usize, size: usize) -> Option<(i32, usize)> {
        let (requests, bytes) = self.building.entry(leader).or_insert((0, 0));
        if *requests == 0 || *bytes + size > self.max_request_size {
            if in_flight + *requests >= self.max_in_flight {
                return None;
            }
            *requests += 1;
            *bytes = 0;
        }
        *bytes += size;
        Some((leader, *requests))
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The error code, base offset and append time the response gives `tp`.
fn partition_result(response: &ProduceResponse, tp: &TopicPartition) -> Option<(i16, i64, i64)> {
    response
        .responses
        .iter()
        .filter(|t| t.name.0.is_empty() || *t.name.0 == *tp.topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == tp.partition)
        .map(|p| (p.error_code, p.base_offset, p.log_append_time_ms))
}

/// Encodes the batches (once; re-stamped if the producer epoch changed) and sends them
/// in one Produce request.
async fn produce(
    shared: &Shared,
    broker: &crate::net::Broker,
    mut batches: Vec<ProducerBatch>,
) -> (Vec<ProducerBatch>, Result<ProduceResponse>) {
    let config = &shared.config;
    let mut topics: BTreeMap<Arc<str>, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut encode_failures = Vec::new();
    for (i, batch) in batches.iter_mut().enumerate() {
        batch.attempts += 1;
        match encode(batch, shared.txn.is_some()) {
            Ok(bytes) => topics.entry(batch.tp.topic.clone()).or_default().push(
                PartitionProduceData::default()
                    .with_index(batch.tp.partition)
                    .with_records(Some(bytes)),
            ),
            Err(err) => encode_failures.push((i, err)),
        }
    }
    if let Some((_, err)) = encode_failures.into_iter().next() {
        // An encoding failure is a bug or a record the format cannot hold; no retry helps.
        return (batches, Err(err));
    }
    let metadata = shared.client.metadata();
    let request = ProduceRequest::default()
        .with_transactional_id(config.transactional_id.as_deref().map(|id| {
            kafka_protocol::messages::TransactionalId(StrBytes::from_string(id.to_string()))
        }))
        .with_acks(config.acks.wire())
        .with_timeout_ms(i32::try_from(config.request_timeout.as_millis()).unwrap_or(i32::MAX))
        .with_topic_data(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let topic_id = metadata
                        .topic(&topic)
                        .and_then(|t| t.topic_id)
                        .unwrap_or_default();
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_topic_id(topic_id)
                        .with_partition_data(partitions)
                })
                .collect(),
        );
    // The broker may hold the request for its own timeout; allow for the trip.
    let timeout = config.request_timeout + Duration::from_secs(5);
    let result = if shared.txn.is_some() {
        broker
            .call_at_most(transaction::PRODUCE_MAX_VERSION, |_| request, timeout)
            .await
            .map(|(_, response)| response)
    } else {
        broker.call_with_timeout(&request, timeout).await
    };
    (batches, result)
}

/// The bytes to send for `batch`, encoding it on first use and re-stamping it when its
/// stamp changed since (epoch bump). A transactional producer's batches carry the
/// transactional attribute: without it the broker takes them for plain idempotent
/// data, visible at once and untouched by an abort.
fn encode(batch: &mut ProducerBatch, transactional: bool) -> Result<Bytes> {
    if let Some(builder) = batch.builder.take() {
        let builder = match batch.stamp {
            Some(s) => builder
                .producer(s.producer_id, s.producer_epoch, s.base_sequence)
                .transactional(transactional),
            None => builder,
        };
        batch.uncompressed = builder.estimated_size();
        let bytes = builder.finish()?;
        batch.encoded = Some((bytes.clone(), batch.stamp));
        return Ok(bytes);
    }
    let (bytes, stamped) = batch
        .encoded
        .clone()
        .ok_or_else(|| Error::protocol("a batch with neither records nor bytes"))?;
    if stamped == batch.stamp {
        return Ok(bytes);
    }
    let Stamp {
        producer_id,
        producer_epoch,
        base_sequence,
    } = batch.stamp.unwrap_or(Stamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    });
    let bytes = restamp_producer(&bytes, producer_id, producer_epoch, base_sequence)?;
    batch.encoded = Some((bytes.clone(), batch.stamp));
    Ok(bytes)
}

/// Splits a batch the broker found too large into two, re-encoding its records.
#[allow(clippy::result_large_err)]
fn split(
    mut batch: ProducerBatch,
) -> std::result::Result<Vec<ProducerBatch>, (ProducerBatch, Error)> {
    // Only an idempotent or plain producer's batches are split (see retry_or_fail).
    let bytes = match encode(&mut batch, false) {
        Ok(bytes) => bytes,
        Err(err) => return Err((batch, err)),
    };
    let decoded = batches(bytes, &DecodeOptions::default())
        .next()
        .and_then(|b| b.ok())
        .map(|b| b.records().collect::<std::result::Result<Vec<_>, _>>());
    let records = match decoded {
        Some(Ok(records)) if records.len() == batch.replies.len() => records,
        _ => {
            return Err((
                batch,
                Error::protocol("cannot split a batch that does not decode"),
            ))
        }
    };
    let compression = batch_compression(&batch);
    let mid = records.len() / 2;
    let mut replies = std::mem::take(&mut batch.replies);
    let second_replies = replies.split_off(mid);
    let mut halves: Vec<ProducerBatch> = Vec::new();
    let reserved_first = batch.reserved / 2;
    for (part, replies, reserved) in [
        (&records[..mid], replies, reserved_first),
        (
            &records[mid..],
            second_replies,
            batch.reserved - reserved_first,
        ),
    ] {
        let mut builder = BatchBuilder::new().compression(compression.0, compression.1);
        for r in part {
            let headers: Vec<Header> = r.headers().to_vec();
            if let Err(e) = builder.push(
                r.timestamp(),
                r.key().map(|k| &k[..]),
                r.value().map(|v| &v[..]),
                &headers,
            ) {
                // Unreachable in practice: these records were encoded once already.
                tracing::error!(error = %e, "re-encoding a split batch failed");
            }
        }
        halves.push(Batch {
            tp: batch.tp.clone(),
            builder: Some(builder),
            encoded: None,
            uncompressed: 0,
            stamp: None,
            replies,
            resolver: Resolver::new(batch.tp.topic.clone(), batch.tp.partition),
            created: batch.created,
            reserved,
            attempts: batch.attempts,
            last_error: batch.last_error.clone(),
        });
    }
    batch.resolver.resolve(Resolution::Moved(vec![
        (0, halves[0].resolver.outcome().clone()),
        (mid as u32, halves[1].resolver.outcome().clone()),
    ]));
    Ok(halves)
}

fn batch_compression(
    batch: &ProducerBatch,
) -> (crate::protocol::records::Compression, Option<i32>) {
    let codec = batch
        .encoded
        .as_ref()
        .and_then(|(bytes, _)| batches(bytes.clone(), &DecodeOptions::default()).next())
        .and_then(|b| b.ok())
        .map_or(crate::protocol::records::Compression::None, |b| {
            b.compression()
        });
    (codec, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog bigger than one request goes out in as many requests as the broker
    /// has room in flight for, not one per response.
    #[test]
    fn a_backlog_fills_every_request_the_broker_has_room_for() {
        let mut requests = Requests::new(5, 1_000);
        let placed: Vec<_> = (0..20).map(|_| requests.place(1, 0, 300)).collect();
        let expected: Vec<_> = (1..=5)
            .flat_map(|n| [Some((1, n)); 3])
            .chain([None; 5])
            .collect();
        assert_eq!(placed, expected);
        // Another broker has its own room; one with four out has room for one more.
        assert_eq!(requests.place(2, 4, 300), Some((2, 1)));
        assert_eq!(requests.place(2, 4, 800), None);
        assert_eq!(requests.place(2, 4, 700), Some((2, 1)));
    }

    #[test]
    fn a_batch_bigger_than_a_request_goes_alone() {
        let mut requests = Requests::new(5, 1_000);
        assert_eq!(requests.place(1, 0, 100), Some((1, 1)));
        assert_eq!(requests.place(1, 0, 5_000), Some((1, 2)));
        assert_eq!(requests.place(1, 0, 100), Some((1, 3)));
        let mut full = Requests::new(1, 1_000);
        assert_eq!(full.place(1, 1, 100), None, "no room in flight");
    }
}
