//! The producer: `send` buffers a record into its partition's batch; a sender task
//! drains ready batches into one Produce request per broker and delivers the reports.
//!
//! Life of a record: [`Producer::send`] picks the partition ([`partitioner`]), waits
//! for room in `buffer.memory`, and appends the record to the partition's open batch
//! ([`accumulator`]). The sender task ([`sender`]) takes batches that are full or have
//! lingered, stamps them with producer id, epoch and sequence when idempotence is on
//! ([`idempotence`]), and sends them with at most one batch per partition in flight and
//! at most `max.in.flight.requests.per.connection` requests per broker. Each record's
//! [`Delivery`] resolves with its offset, or with the error that ended its retries.
//!
//! A producer with a `transactional.id` sends inside transactions ([`transaction`]).
//!
//! KIPs: KIP-98 (idempotence, transactions), KIP-91 (`delivery.timeout.ms`), KIP-360
//! (epoch bump), KIP-447 (offsets in a transaction), KIP-480 (sticky partitioner).
//! Protocol: Produce, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn.

pub(crate) mod accumulator;
mod delivery;
pub(crate) mod idempotence;
pub(crate) mod partitioner;

mod builder;
mod sender;
mod transaction;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};

pub use builder::{Acks, ProducerBuilder};
pub use delivery::{Delivery, DeliveryReport};
pub use partitioner::{DefaultPartitioner, Partitioner};
pub use transaction::GroupMetadata;

/// Whether `err` from a transactional producer means it cannot go on (fenced, not
/// authorized, ...), as opposed to a transaction that must be aborted.
pub(crate) fn is_fatal_transaction_error(err: &Error) -> bool {
    transaction::classify(err) == transaction::Class::Fatal
}

use crate::client::Client;
use crate::error::{Error, ErrorKind, KafkaCode, Result};
use crate::protocol::records::{BatchBuilder, Header, RecordError, RECORD_BATCH_OVERHEAD};
use accumulator::{Accumulator, Appended, Topic, Unplaced};
use builder::ProducerConfig;

/// A record to produce.
///
/// ```
/// use josefine::ProducerRecord;
/// let record = ProducerRecord::new("orders")
///     .key("order-42")
///     .value(r#"{"total": 12}"#)
///     .header("trace-id", "abc")
///     .header("trace-id", "def"); // headers are ordered; keys may repeat
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerRecord {
    /// The topic to write to.
    pub topic: String,
    /// The key; `None` for a null key. Records with the same key go to the same partition
    /// (default partitioner).
    pub key: Option<Bytes>,
    /// The value; `None` for a null value (a tombstone on a compacted topic).
    pub value: Option<Bytes>,
    /// The headers, in order; a key may repeat.
    pub headers: Vec<Header>,
    /// `None`: the partitioner chooses.
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; `None`: the time of `send`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with no key, value or header; the partitioner picks the
    /// partition and the timestamp is the time of `send`.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            value: None,
            headers: Vec::new(),
            partition: None,
            timestamp: None,
        }
    }

    /// Sets the key: anything that converts into `Bytes` (`String`, `Vec<u8>`, a
    /// `&'static str`).
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value: anything that converts into `Bytes` (`String`, `Vec<u8>`, a
    /// `&'static str`).
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Appends a header (order is kept; a key may appear more than once).
    pub fn header(mut self, key: &str, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::from_bytes(
            Bytes::copy_from_slice(key.as_bytes()),
            Some(value.into()),
        ));
        self
    }

    /// Appends a header whose value is null (Kafka tells null from empty).
    pub fn null_header(mut self, key: &str) -> Self {
        self.headers.push(Header::from_bytes(
            Bytes::copy_from_slice(key.as_bytes()),
            None,
        ));
        self
    }

    /// Writes to this partition, bypassing the partitioner.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch (topics with
    /// `message.timestamp.type=LogAppendTime` replace it with the broker's time).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// State shared by the producer handles and the sender task.
pub(crate) struct Shared {
    client: Client,
    config: ProducerConfig,
    /// Per record, the batch keeps nothing but the record's bytes: its delivery waits
    /// on the batch's shared outcome ([`delivery`]).
    accumulator: Mutex<Accumulator<()>>,
    /// Wakes the sender: a batch filled or opened, a flush, close.
    wake: Notify,
    /// `buffer.memory`, in bytes; a batch returns its bytes when it is done.
    memory: Semaphore,
    /// Records accepted by `send` and not yet reported.
    pending: AtomicUsize,
    /// Signalled whenever `pending` drops to zero.
    idle: Notify,
    flushing: AtomicUsize,
    closed: AtomicBool,
    /// Set when the producer cannot go on (InitProducerId failed for good).
    fatal: OnceLock<Error>,
    /// A transactional producer's state ([`transaction`]).
    txn: Option<Mutex<transaction::TxnState>>,
    /// Signalled when an AddPartitionsToTxn answers.
    txn_added: Notify,
}

impl Shared {
    fn accumulator(&self) -> std::sync::MutexGuard<'_, Accumulator<()>> {
        self.accumulator
            .lock()
            .expect("accumulator lock is never held across a panic")
    }

    fn fatal(&self) -> Option<Error> {
        let txn_fatal = self
            .txn
            .as_ref()
            .and_then(|txn| transaction::lock(txn).fatal());
        txn_fatal.or_else(|| self.fatal.get().cloned())
    }

    /// Records `n` reports as delivered (or failed).
    fn finished(&self, n: usize) {
        if self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
    }
}

/// A Kafka producer; cheap to clone. Dropping the last clone closes it in the
/// background (records already sent are still delivered); [`close`](Self::close)
/// waits for that.
///
/// ```no_run
/// # async fn demo(client: josefine::Client) -> josefine::Result<()> {
/// use josefine::{Producer, ProducerRecord};
/// let producer = Producer::builder(client).build()?;
/// // `send` waits for the broker's acknowledgement.
/// let record = ProducerRecord::new("orders").key("customer-1").value("first order");
/// let report = producer.send(record).await?;
/// println!("{}/{} offset {}", report.topic, report.partition, report.offset);
/// // `enqueue` returns once the record is buffered; await its delivery later.
/// let delivery = producer.enqueue(ProducerRecord::new("orders").value("second")).await?;
/// delivery.await?;
/// producer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl Producer {
    /// A builder with every setting at its default.
    pub fn builder(client: Client) -> ProducerBuilder {
        ProducerBuilder::new(client)
    }

    fn start(client: Client, config: ProducerConfig) -> Self {
        let accumulator = Accumulator::new(accumulator::BatchConfig {
            batch_size: config.batch_size,
            linger: config.linger,
            compression: config.compression,
            compression_level: config.compression_level,
        });
        let txn = config
            .transactional_id
            .clone()
            .map(|id| Mutex::new(transaction::TxnState::new(id, config.transaction_timeout)));
        let shared = Arc::new(Shared {
            client,
            txn,
            txn_added: Notify::new(),
            memory: Semaphore::new(config.buffer_memory),
            config,
            accumulator: Mutex::new(accumulator),
            wake: Notify::new(),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            flushing: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            fatal: OnceLock::new(),
        });
        let task = tokio::spawn(sender::run(shared.clone()));
        Self {
            inner: Arc::new(Inner {
                shared,
                sender: Mutex::new(Some(task)),
            }),
        }
    }

    /// Sends `record` and waits for its delivery report.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryReport> {
        self.enqueue(record).await?.await
    }

    /// Buffers `record` (waiting, up to `max.block.ms`, for metadata of its topic and
    /// for room in `buffer.memory`) and returns its [`Delivery`] without waiting for
    /// it: many records can be in flight from one task.
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<Delivery> {
        // Most records need no wait: they take the synchronous path, whose stack frame
        // is small; only a record that must wait (for metadata or memory) or joins a
        // transaction builds the larger future, boxed so it does not grow this one.
        match self.try_enqueue(&record) {
            Some(done) => done,
            None => Box::pin(self.enqueue_waiting(record)).await,
        }
    }

    /// [`enqueue`](Self::enqueue) without waiting: the record's delivery or error, or
    /// `None` when it would have to wait (or is transactional). The record is
    /// borrowed, not moved: it is 136 bytes.
    fn try_enqueue(&self, record: &ProducerRecord) -> Option<Result<Delivery>> {
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Some(Err(Error::new(ErrorKind::Closed, "the producer is closed")));
        }
        if shared.txn.is_some() {
            return None;
        }
        if let Some(err) = shared.fatal.get() {
            return Some(Err(err.clone()));
        }
        let size = match self.record_size(record) {
            Ok(size) => size,
            Err(err) => return Some(Err(err)),
        };
        // A partitioner of the user's runs before the accumulator's lock is taken: user
        // code never runs under it.
        let chosen = match (&shared.config.partitioner, record.partition) {
            (Some(partitioner), None) => {
                let count = shared.client.cached_partition_count(&record.topic)?;
                Some(custom_partition(partitioner.as_ref(), record, count))
            }
            _ => None,
        };
        match shared.memory.try_acquire_many(size as u32) {
            // The bytes are returned when the batch is done.
            Ok(permit) => permit.forget(),
            Err(_) => return None,
        }
        let version = shared.client.metadata_version();
        let mut accumulator = shared.accumulator();
        let mut topic = accumulator.topic(&record.topic);
        let partition = match chosen {
            Some(partition) => partition,
            None => match topic.place(record.key.as_deref(), record.partition, version, || {
                shared.client.cached_partition_count(&record.topic)
            }) {
                Ok(partition) => partition,
                Err(unplaced) => {
                    drop(accumulator);
                    shared.memory.add_permits(size);
                    return match unplaced {
                        // Waits for metadata on the slow path.
                        Unplaced::UnknownTopic => None,
                        Unplaced::NoSuchPartition(p) => {
                            Some(Err(no_such_partition(&record.topic, p)))
                        }
                    };
                }
            },
        };
        shared.pending.fetch_add(1, Ordering::AcqRel);
        let appended = append(&mut topic, record, partition, size);
        drop(accumulator);
        Some(
            self.appended(appended, record, partition, size)
                .map_err(Rejected::into_error),
        )
    }

    /// [`enqueue`](Self::enqueue) for a record that may have to wait.
    async fn enqueue_waiting(&self, record: ProducerRecord) -> Result<Delivery> {
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "the producer is closed"));
        }
        if let Some(err) = shared.fatal() {
            return Err(err);
        }
        let Some(txn) = &shared.txn else {
            return self.accept(record).await.map_err(Rejected::into_error);
        };
        transaction::lock(txn).check_send()?;
        match self.accept(record).await {
            Ok(delivery) => Ok(delivery),
            // The transaction changed phase meanwhile (a commit began, or it can
            // no longer commit): this record is refused, the transaction unchanged.
            Err(Rejected::Refused(err)) => Err(err),
            // A record of the transaction failed (too large, no such partition,
            // max.block.ms passed): the transaction cannot commit without it.
            Err(Rejected::Failed(err)) => {
                transaction::lock(txn).fail(err.clone());
                Err(err)
            }
        }
    }

    /// The record's size in a batch, or why it can never be sent.
    fn record_size(&self, record: &ProducerRecord) -> Result<usize> {
        let config = &self.inner.shared.config;
        let size = BatchBuilder::record_size_upper_bound(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        let limit = config.max_request_size.min(config.buffer_memory);
        if size + RECORD_BATCH_OVERHEAD > limit {
            return Err(Error::new(
                ErrorKind::Kafka(KafkaCode::MESSAGE_TOO_LARGE),
                format!(
                    "the record is {} bytes serialized, more than max.request.size / buffer.memory ({limit} bytes)",
                    size + RECORD_BATCH_OVERHEAD
                ),
            )
            .with_topic(&record.topic));
        }
        Ok(size)
    }

    /// The part of [`enqueue`](Self::enqueue) after the checks: size, partition,
    /// memory, then into its batch.
    async fn accept(&self, record: ProducerRecord) -> std::result::Result<Delivery, Rejected> {
        let shared = &self.inner.shared;
        let size = self.record_size(&record).map_err(Rejected::Failed)?;
        let max_block = || tokio::time::Instant::now() + shared.config.max_block;
        let partition = self
            .partition_of(&record, max_block)
            .await
            .map_err(Rejected::Failed)?;
        // Fast path without a timer: room is usually there.
        let permit = match shared.memory.try_acquire_many(size as u32) {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout_at(max_block(), shared.memory.acquire_many(size as u32))
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "buffer.memory stayed full for max.block.ms ({:?})",
                            shared.config.max_block
                        ),
                    )
                    .with_topic(&record.topic)
                })
                .map_err(Rejected::Failed)?
                .map_err(|_| {
                    Rejected::Failed(Error::new(ErrorKind::Closed, "the producer is closed"))
                })?,
        };
        // The bytes are returned when the batch is done, not when this function ends.
        permit.forget();
        match &shared.txn {
            // Counted as pending under the transaction's lock, so a commit that starts
            // now waits for this record (and one that started refuses it).
            Some(txn) => {
                let mut state = transaction::lock(txn);
                if let Err(err) = state.check_send() {
                    drop(state);
                    shared.memory.add_permits(size);
                    return Err(Rejected::Refused(err.with_topic(&record.topic)));
                }
                shared.pending.fetch_add(1, Ordering::AcqRel);
                if state.note_partition(&record.topic, partition) {
                    shared.wake.notify_one();
                }
            }
            None => {
                shared.pending.fetch_add(1, Ordering::AcqRel);
            }
        }
        let appended = append(
            &mut shared.accumulator().topic(&record.topic),
            &record,
            partition,
            size,
        );
        self.appended(appended, &record, partition, size)
    }

    /// What follows [`append`] once the accumulator's lock is released: wake the
    /// sender when it must look again, or undo the record's accounting if the batch
    /// refused it.
    fn appended(
        &self,
        appended: std::result::Result<Appended, RecordError>,
        record: &ProducerRecord,
        partition: i32,
        size: usize,
    ) -> std::result::Result<Delivery, Rejected> {
        let shared = &self.inner.shared;
        match appended {
            Ok(appended) => {
                if let (true, Some(partitioner)) = (appended.batch_full, &shared.config.partitioner)
                {
                    partitioner.on_batch_full(&record.topic, partition);
                }
                // While flushing, every batch goes at once, not at its linger's end.
                if appended.wake
                    || (appended.new_batch && shared.flushing.load(Ordering::Acquire) > 0)
                {
                    shared.wake.notify_one();
                }
                Ok(appended.delivery)
            }
            Err(err) => {
                // The batch before it may have closed without a wake-up.
                shared.wake.notify_one();
                shared.memory.add_permits(size);
                shared.finished(1);
                Err(Rejected::Failed(
                    Error::from(err)
                        .with_topic(&record.topic)
                        .with_partition(partition),
                ))
            }
        }
    }

    /// The record's partition: its own, checked against the topic, or the
    /// partitioner's choice. Waits (until `max_block()`) for metadata of a topic the
    /// cache does not know yet.
    async fn partition_of(
        &self,
        record: &ProducerRecord,
        max_block: impl Fn() -> tokio::time::Instant,
    ) -> Result<i32> {
        let shared = &self.inner.shared;
        // Read before the count: a count is then never cached with a version newer
        // than the metadata it came from (a refresh in between makes the next record
        // read the count again, never trust an old one).
        let version = shared.client.metadata_version();
        let count = match shared.client.cached_partition_count(&record.topic) {
            Some(count) => count,
            None => self.wait_for_partitions(record, max_block()).await?,
        };
        self.choose_partition(record, count, version)
    }

    /// The record's partition of a topic of `count` partitions, as of metadata
    /// `version`.
    fn choose_partition(&self, record: &ProducerRecord, count: i32, version: u64) -> Result<i32> {
        let shared = &self.inner.shared;
        if let (Some(partitioner), None) = (&shared.config.partitioner, record.partition) {
            return Ok(custom_partition(partitioner.as_ref(), record, count));
        }
        shared
            .accumulator()
            .topic(&record.topic)
            .place(record.key.as_deref(), record.partition, version, || {
                Some(count)
            })
            .map_err(|unplaced| match unplaced {
                Unplaced::NoSuchPartition(p) => no_such_partition(&record.topic, p),
                // Not from a count given as `Some`; said as what it would mean.
                Unplaced::UnknownTopic => {
                    Error::kafka(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION).with_topic(&record.topic)
                }
            })
    }

    /// The partition count of a topic missing from the cache, asking the cluster with
    /// backoff until `deadline`.
    async fn wait_for_partitions(
        &self,
        record: &ProducerRecord,
        deadline: tokio::time::Instant,
    ) -> Result<i32> {
        let shared = &self.inner.shared;
        let mut failures = 0;
        loop {
            match shared.client.partitions(&record.topic).await {
                Ok(ids) => return Ok(ids.len() as i32),
                Err(err) if err.is_retriable() => {
                    failures += 1;
                    let delay = shared
                        .config
                        .retry_backoff
                        .delay(failures, crate::backoff::jitter_unit());
                    if tokio::time::Instant::now() + delay >= deadline {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "no metadata for topic {} within max.block.ms ({:?}): {err}",
                                record.topic, shared.config.max_block
                            ),
                        )
                        .with_topic(&record.topic));
                    }
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err.with_topic(&record.topic)),
            }
        }
    }

    /// Sends every buffered record now (ignoring `linger.ms`) and waits until all
    /// records sent so far have their delivery reports.
    pub async fn flush(&self) {
        /// Ends the flush however the wait ends (a caller may cancel it).
        struct Flushing<'a>(&'a AtomicUsize);
        impl Drop for Flushing<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let shared = &self.inner.shared;
        shared.flushing.fetch_add(1, Ordering::AcqRel);
        let _flushing = Flushing(&shared.flushing);
        shared.wake.notify_one();
        loop {
            let idle = shared.idle.notified();
            if shared.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
    }

    /// Stops accepting records, delivers every buffered one (within
    /// `delivery.timeout.ms`) and stops the sender. No record is left behind: each gets
    /// its report or its error.
    pub async fn close(&self) -> Result<()> {
        let shared = &self.inner.shared;
        shared.closed.store(true, Ordering::Release);
        shared.wake.notify_one();
        let task = self
            .inner
            .sender
            .lock()
            .expect("sender lock is never held across a panic")
            .take();
        if let Some(task) = task {
            task.await.map_err(|e| {
                Error::new(ErrorKind::Closed, format!("the sender task failed: {e}"))
            })?;
        }
        Ok(())
    }

    /// Records accepted and not yet reported.
    pub fn pending(&self) -> usize {
        self.inner.shared.pending.load(Ordering::Acquire)
    }
}

/// Why [`Producer::accept`] did not take a record.
enum Rejected {
    /// The transaction's phase refused it; nothing else changes.
    Refused(Error),
    /// The record failed.
    Failed(Error),
}

impl Rejected {
    fn into_error(self) -> Error {
        match self {
            Rejected::Refused(err) | Rejected::Failed(err) => err,
        }
    }
}

/// Appends an accepted record (its memory taken, counted as pending) to its
/// partition's batch, under the accumulator's lock; the built-in partitioner's sticky
/// choice moves on if the batch filled.
fn append(
    topic: &mut Topic<'_, ()>,
    record: &ProducerRecord,
    partition: i32,
    size: usize,
) -> std::result::Result<Appended, RecordError> {
    topic
        .append(
            partition,
            record.timestamp.unwrap_or_else(now_millis),
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
            (),
            size,
            || tokio::time::Instant::now().into_std(),
        )
        .map_err(|((), err)| err)
}

/// The partition a user's partitioner picks for `record` among `count`.
fn custom_partition(partitioner: &dyn Partitioner, record: &ProducerRecord, count: i32) -> i32 {
    partitioner
        .partition(&record.topic, record.key.as_deref(), count)
        .rem_euclid(count.max(1))
}

/// The error of a record that names a partition its topic does not have.
fn no_such_partition(topic: &str, partition: i32) -> Error {
    Error::kafka(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
        .with_topic(topic)
        .with_partition(partition)
}

fn now_millis() -> i64 {
    // Seconds and milliseconds apart: `as_millis` divides a u128, per record.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs() as i64 * 1_000 + i64::from(d.subsec_millis())
    })
}
