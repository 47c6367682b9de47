//! The consumer: partition consumers fed by one fetch loop per broker (Sarama's
//! `consumer`, `partitionConsumer` and `brokerConsumer`).
//!
//! [`Consumer::consume_partition`] resolves the start position (ListOffsets for
//! earliest, latest or a timestamp), then *dispatches* the partition: finds its leader
//! and hands it to that broker's fetch loop ([`fetch_loop`]), starting the loop if
//! needed. When the leader moves or the broker is lost, the loop hands the partition
//! back and it is dispatched again after a metadata refresh, so a partition consumer
//! keeps going whoever leads its partition. The reader side is [`PartitionConsumer`].
//!
//! Protocol: Fetch (KIP-74 byte limits, KIP-320 leader epochs, KIP-98 isolation),
//! ListOffsets (KIP-79).

pub(crate) mod batch;
mod fetch_loop;
pub(crate) mod fetch_session;
pub(crate) mod list_offsets;
mod memory;
pub(crate) mod partition;
pub(crate) mod queue;
pub(crate) mod scan;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

pub use batch::{ConsumerRecord, FetchedBatch, FetchedRecords};
pub use partition::PartitionConsumer;

use crate::backoff::{jitter_unit, Backoff};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::protocol::records::DecodeOptions;
use crate::TopicPartition;
use fetch_loop::{LoopHandle, Subscription};
use memory::QueuedBytes;
use partition::{PartitionShared, QUEUE_SLOTS};

/// Where a partition consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartOffset {
    /// The oldest record still in the log.
    Earliest,
    /// After the newest record: only records written from now on.
    Latest,
    /// This offset (out of range: `auto.offset.reset` decides).
    Offset(i64),
    /// The first record with a timestamp at or after this one (ms since the epoch);
    /// the end of the log if there is none.
    Timestamp(i64),
}

/// `auto.offset.reset`: what to do when the position is not in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OffsetReset {
    /// Move to the oldest record still in the log.
    Earliest,
    /// Kafka's default.
    #[default]
    Latest,
    /// Report an error and stop the partition until the reader seeks.
    None,
}

/// `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record, committed or not, aborted or not.
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions (and non-transactional ones), up to the
    /// last stable offset.
    ReadCommitted,
}

impl IsolationLevel {
    fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Validated consumer settings.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerConfig {
    pub fetch_min_bytes: i32,
    pub fetch_max_wait: Duration,
    pub fetch_max_bytes: i32,
    pub max_partition_fetch_bytes: i32,
    pub queued_max_bytes: usize,
    pub isolation: IsolationLevel,
    pub auto_offset_reset: OffsetReset,
    pub check_crcs: bool,
    pub request_timeout: Duration,
    pub retry_backoff: Backoff,
}

impl ConsumerConfig {
    fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            verify_crc: self.check_crcs,
            ..DecodeOptions::default()
        }
    }
}

/// Builds a [`Consumer`]; every setter names the Kafka property it mirrors.
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    client: Client,
    config: ConsumerConfig,
}

impl ConsumerBuilder {
    /// `fetch.min.bytes`: the broker answers once it has this much. Default 1.
    pub fn fetch_min_bytes(mut self, bytes: i32) -> Self {
        self.config.fetch_min_bytes = bytes;
        self
    }

    /// `fetch.max.wait.ms`: how long the broker may wait for `fetch.min.bytes`.
    /// Default 500 ms.
    pub fn fetch_max_wait(mut self, wait: Duration) -> Self {
        self.config.fetch_max_wait = wait;
        self
    }

    /// `fetch.max.bytes`: bytes per Fetch response. Default 50 MiB.
    pub fn fetch_max_bytes(mut self, bytes: i32) -> Self {
        self.config.fetch_max_bytes = bytes;
        self
    }

    /// `max.partition.fetch.bytes`: bytes per partition per fetch; grows on its own
    /// (up to `fetch.max.bytes`) when one batch is larger. Default 1 MiB.
    pub fn max_partition_fetch_bytes(mut self, bytes: i32) -> Self {
        self.config.max_partition_fetch_bytes = bytes;
        self
    }

    /// `queued.max.messages.kbytes` (librdkafka): fetched bytes held for readers
    /// across all partitions before fetching pauses. Default 64 MiB.
    pub fn queued_max_bytes(mut self, bytes: usize) -> Self {
        self.config.queued_max_bytes = bytes;
        self
    }

    /// `isolation.level`. Default read_uncommitted.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.config.isolation = level;
        self
    }

    /// `auto.offset.reset`. Default latest.
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.config.auto_offset_reset = reset;
        self
    }

    /// `check.crcs`: verify each batch's CRC32C. Default true.
    pub fn check_crcs(mut self, check: bool) -> Self {
        self.config.check_crcs = check;
        self
    }

    /// `request.timeout.ms`, added to `fetch.max.wait.ms` for a fetch. Default 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// `retry.backoff.ms` / `retry.backoff.max.ms`. Default 100 ms up to 1 s.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.retry_backoff = Backoff::new(initial, max);
        self
    }

    /// Checks the settings and builds the consumer; no I/O. An
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) error names a bad setting.
    pub fn build(self) -> Result<Consumer> {
        let c = &self.config;
        if c.fetch_min_bytes < 0 || c.fetch_max_bytes <= 0 || c.max_partition_fetch_bytes <= 0 {
            return Err(Error::config(
                "fetch.min.bytes must be >= 0; fetch.max.bytes and max.partition.fetch.bytes > 0",
            ));
        }
        if c.queued_max_bytes == 0 || c.request_timeout.is_zero() {
            return Err(Error::config(
                "queued.max.bytes and request.timeout.ms must be greater than zero",
            ));
        }
        Ok(Consumer {
            shared: Arc::new(ConsumerShared {
                queued: QueuedBytes::new(self.config.queued_max_bytes),
                client: self.client,
                config: self.config,
                loops: Mutex::new(HashMap::new()),
                active: Mutex::new(HashSet::new()),
            }),
        })
    }
}

/// Reads partitions; cheap to clone. See the module docs.
///
/// ```no_run
/// # async fn demo(client: josefine::Client) -> josefine::Result<()> {
/// use josefine::{Consumer, StartOffset};
/// let consumer = Consumer::builder(client).build()?;
/// let mut reader = consumer
///     .consume_partition("orders", 0, StartOffset::Earliest)
///     .await?;
/// while let Some(batch) = reader.next_batch().await {
///     for record in batch?.iter() {
///         let record = record?;
///         println!("offset {}: {:?}", record.offset(), record.value());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Consumer {
    shared: Arc<ConsumerShared>,
}

pub(crate) struct ConsumerShared {
    client: Client,
    config: ConsumerConfig,
    /// Running fetch loops by broker id.
    loops: Mutex<HashMap<i32, LoopHandle>>,
    queued: Arc<QueuedBytes>,
    /// Partitions with an open reader: one reader per partition per consumer, since
    /// a fetch loop (and its fetch session) knows a partition once.
    active: Mutex<HashSet<TopicPartition>>,
}

/// A partition marked as having a reader, until `keep` hands it to the reader.
struct Reservation<'a> {
    shared: &'a ConsumerShared,
    tp: Option<TopicPartition>,
}

impl Reservation<'_> {
    fn keep(mut self) {
        self.tp = None;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(tp) = &self.tp {
            self.shared.release(tp);
        }
    }
}

impl ConsumerShared {
    /// Forgets the reader of `tp` (it was dropped).
    pub(crate) fn release(&self, tp: &TopicPartition) {
        self.active
            .lock()
            .expect("active lock is never held across a panic")
            .remove(tp);
    }
}

impl Consumer {
    /// Whether this consumer reads only committed transactions.
    pub(crate) fn reads_committed(&self) -> bool {
        self.shared.config.isolation == IsolationLevel::ReadCommitted
    }

    /// A builder with the default settings (each setter names its default); configure, then
    /// [`build`](ConsumerBuilder::build).
    pub fn builder(client: Client) -> ConsumerBuilder {
        ConsumerBuilder {
            client,
            config: ConsumerConfig {
                fetch_min_bytes: 1,
                fetch_max_wait: Duration::from_millis(500),
                fetch_max_bytes: 50 * 1024 * 1024,
                max_partition_fetch_bytes: 1024 * 1024,
                queued_max_bytes: 64 * 1024 * 1024,
                isolation: IsolationLevel::ReadUncommitted,
                auto_offset_reset: OffsetReset::Latest,
                check_crcs: true,
                request_timeout: Duration::from_secs(30),
                retry_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            },
        }
    }

    /// Starts consuming `topic`/`partition` at `start`.
    pub async fn consume_partition(
        &self,
        topic: &str,
        partition: i32,
        start: StartOffset,
    ) -> Result<PartitionConsumer> {
        let shared = &self.shared;
        shared.client.check_partition(topic, partition).await?;
        let tp = TopicPartition::new(topic, partition);
        if !shared
            .active
            .lock()
            .expect("active lock is never held across a panic")
            .insert(tp.clone())
        {
            return Err(Error::config(format!(
                "{tp} already has a reader in this consumer; drop it first (or use another Consumer)"
            )));
        }
        // Released again if resolving fails or the caller gives up while it runs.
        let reservation = Reservation {
            shared,
            tp: Some(tp.clone()),
        };
        let offset = self.resolve(&tp, start).await?;
        reservation.keep();
        let (tx, rx) = queue::channel(QUEUE_SLOTS);
        let partition_shared = Arc::new(PartitionShared::new(tp));
        let sub = Subscription {
            shared: partition_shared.clone(),
            tx,
            offset,
            max_bytes: shared.config.max_partition_fetch_bytes,
            generation: 0,
            retry_at: None,
            failures: 0,
            stopped: false,
            stale: false,
        };
        tokio::spawn(dispatch(shared.clone(), sub));
        Ok(PartitionConsumer::new(
            partition_shared,
            rx,
            shared.clone(),
            offset,
        ))
    }

    /// One partition's start ([`resolve_all`](Self::resolve_all) for one, without its
    /// lists: a consumer opening 10,000 readers at once holds 10,000 of these).
    async fn resolve(&self, tp: &TopicPartition, start: StartOffset) -> Result<i64> {
        let config = &self.shared.config;
        let lookup = |timestamp| {
            list_offsets::list_offset(
                &self.shared.client,
                tp,
                timestamp,
                config.isolation.wire(),
                config.retry_backoff,
            )
        };
        match start {
            StartOffset::Offset(offset) if offset >= 0 => Ok(offset),
            StartOffset::Offset(offset) => {
                Err(Error::config(format!("start offset {offset} is negative")))
            }
            StartOffset::Earliest => Ok(lookup(list_offsets::EARLIEST).await?.unwrap_or(0)),
            StartOffset::Latest => Ok(lookup(list_offsets::LATEST).await?.unwrap_or(0)),
            StartOffset::Timestamp(ts) => match lookup(ts).await? {
                Some(offset) => Ok(offset),
                None => Ok(lookup(list_offsets::LATEST).await?.unwrap_or(0)),
            },
        }
    }

    /// The offset each start position means, in the order given: ListOffsets for
    /// the earliest, latest and timestamp positions, batched per leader (a group
    /// session's new claims resolve together). A timestamp after every record means
    /// the end of the log.
    pub(crate) async fn resolve_all(
        &self,
        starts: &[(TopicPartition, StartOffset)],
    ) -> Vec<Result<i64>> {
        let config = &self.shared.config;
        let mut offsets: Vec<Option<Result<i64>>> = vec![None; starts.len()];
        // Up to two rounds: the positions, then the end for timestamps past the last record.
        let mut lookups: Vec<(usize, i64)> = Vec::new();
        for (i, (_, start)) in starts.iter().enumerate() {
            match *start {
                StartOffset::Offset(offset) if offset >= 0 => offsets[i] = Some(Ok(offset)),
                StartOffset::Offset(offset) => {
                    offsets[i] = Some(Err(Error::config(format!(
                        "start offset {offset} is negative"
                    ))))
                }
                StartOffset::Earliest => lookups.push((i, list_offsets::EARLIEST)),
                StartOffset::Latest => lookups.push((i, list_offsets::LATEST)),
                StartOffset::Timestamp(ts) => lookups.push((i, ts)),
            }
        }
        while !lookups.is_empty() {
            let wanted: Vec<(TopicPartition, i64)> = lookups
                .iter()
                .map(|&(i, timestamp)| (starts[i].0.clone(), timestamp))
                .collect();
            let found = list_offsets::list_offsets(
                &self.shared.client,
                &wanted,
                config.isolation.wire(),
                config.retry_backoff,
            )
            .await;
            let mut past_the_end = Vec::new();
            for (&(i, timestamp), found) in lookups.iter().zip(found) {
                offsets[i] = Some(match found {
                    Ok(Some(offset)) => Ok(offset),
                    Ok(None) if timestamp >= 0 => {
                        past_the_end.push((i, list_offsets::LATEST));
                        continue;
                    }
                    Ok(None) => Ok(0),
                    Err(err) => Err(err),
                });
            }
            lookups = past_the_end;
        }
        offsets
            .into_iter()
            .map(|o| o.expect("every start position resolved"))
            .collect()
    }

    /// The client this consumer reads through.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }
}

/// Finds `sub`'s leader and hands it to that broker's fetch loop, retrying with
/// backoff while the leader is unknown. Ends early if the reader closed it.
pub(crate) async fn dispatch(shared: Arc<ConsumerShared>, mut sub: Subscription) {
    let mut reported = false;
    loop {
        if sub.shared.closed.load(std::sync::atomic::Ordering::Acquire) || sub.tx.is_closed() {
            return;
        }
        if shared.client.is_closed() {
            // Nothing to retry: the reader learns why its records stopped.
            let error = Error::client_closed()
                .with_topic(&*sub.shared.tp.topic)
                .with_partition(sub.shared.tp.partition);
            let _ = sub.tx.try_send(partition::Fetched::Error {
                generation: sub.generation,
                error,
            });
            return;
        }
        if let Some(at) = sub.retry_at.take() {
            tokio::time::sleep_until(at).await;
        }
        let tp = sub.shared.tp.clone();
        if sub.stale {
            if let Err(err) = shared.client.refresh_metadata(&[&tp.topic]).await {
                tracing::debug!(partition = %tp, error = %err, "metadata refresh failed");
            }
            sub.stale = false;
        }
        let leader = match shared.client.leader(&tp.topic, tp.partition).await {
            Ok(leader) => leader,
            Err(err) => {
                if !reported && !err.is_retriable() {
                    // Tell the reader once; keep trying (the topic may come back).
                    let _ = sub.tx.try_send(partition::Fetched::Error {
                        generation: sub.generation,
                        error: err
                            .clone()
                            .with_topic(&*tp.topic)
                            .with_partition(tp.partition),
                    });
                    reported = true;
                }
                sub.failures += 1;
                sub.stale = true;
                let delay = shared
                    .config
                    .retry_backoff
                    .delay(sub.failures, jitter_unit());
                sub.retry_at = Some(tokio::time::Instant::now() + delay);
                continue;
            }
        };
        let Some(id) = leader.id() else { continue };
        let handle = {
            let mut loops = shared
                .loops
                .lock()
                .expect("loops lock is never held across a panic");
            loops
                .entry(id)
                .or_insert_with(|| fetch_loop::spawn(shared.clone(), leader.clone()))
                .clone()
        };
        match handle.tx.send(sub) {
            Ok(()) => {
                handle.wake.notify_one();
                return;
            }
            Err(mpsc::error::SendError(back)) => {
                // The loop ended between lookup and send; it removed itself, so the
                // next round starts a new one.
                sub = back;
                let mut loops = shared
                    .loops
                    .lock()
                    .expect("loops lock is never held across a panic");
                if loops
                    .get(&id)
                    .is_some_and(|h| Arc::ptr_eq(&h.wake, &handle.wake))
                {
                    loops.remove(&id);
                }
            }
        }
    }
}

impl std::fmt::Debug for ConsumerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerShared")
            .field("config", &self.config)
            .field("queued_bytes", &self.queued.used())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_move_between_tasks() {
        fn is_send<T: Send + 'static>() {}
        is_send::<PartitionConsumer>();
        is_send::<Consumer>();
        is_send::<FetchedBatch>();
    }
}
