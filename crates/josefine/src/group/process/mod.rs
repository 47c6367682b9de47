//! Parallel processing inside a partition: records run concurrently, as the ordering
//! mode allows, and commits stay gap-free.
//!
//! [`ConsumerGroup::process`](super::ConsumerGroup::process) runs an async function
//! on every record of the subscribed topics, up to `max_in_flight` at a time per
//! member, where [`consume`](super::ConsumerGroup::consume) runs one record at a time
//! per partition. The ordering mode says which records may overlap:
//! [`ProcessOrder::Key`] runs the records of one key one at a time in offset order
//! (the order Kafka gives a key), [`ProcessOrder::Partition`] one record per partition
//! (today's consume), [`ProcessOrder::Unordered`] any.
//!
//! **Commits.** Records finish out of order, so a partition's commit is the lowest
//! offset not yet finished (the watermark), and the offsets finished above it travel
//! in the commit's metadata (a compact done set, see [`done_set`]). A member that
//! takes the partition over reads from the watermark and skips what the done set
//! names: after a crash or a rebalance only the records that were in flight (or not
//! yet marked, up to one mark interval) run again. Marks are made every
//! [`MARK_INTERVAL`] and when a claim ends; the group's auto-commit sends them.
//!
//! **Memory.** Records read and not finished are bounded per member by
//! `max_buffered`: a partition holding more than its share stops reading (its fetches
//! stop once its queue is full), so the busiest partitions pause first; a fetch may
//! overshoot the budget by one fetch's records per partition. A record starts only
//! within [`DoneSet::max_span`] of the watermark (24,408 offsets for the default
//! 4,096 bytes), so the done set always fits the metadata limit: behind a record
//! that takes long, the rest of its partition runs that far ahead and then waits.
//!
//! **Failures.** A record whose function fails (or panics) is tried again after a
//! backoff, up to the configured attempts; then the dead-letter hook gets it and it
//! counts as done. Without a hook, or when the hook fails, the claim fails with the
//! error and the group's [`OnHandlerError`](super::OnHandlerError) policy applies (by
//! default the claim restarts from its watermark, skipping what finished): a record
//! is never dropped silently.
//!
//! **Rebalances.** A revoked partition stops starting records; what is in flight has
//! until the revocation's deadline to finish, then the claim marks its final
//! watermark and done set for the commit that hands the partition over. Results that
//! arrive later are dropped with the claim. The member's other partitions keep
//! running.

mod done_set;
mod permits;

pub use done_set::DoneSet;
mod progress;
mod run;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::claims::{Claim, Session};
use super::handler::GroupHandler;
use crate::backoff::Backoff;
use crate::consumer::ConsumerRecord;
use crate::error::{Error, Result};

/// How often a claim marks its watermark and done set while records finish.
pub(super) const MARK_INTERVAL: Duration = Duration::from_millis(50);

/// Which records of a partition may run at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessOrder {
    /// One record at a time per partition, in offset order: what
    /// [`consume`](super::ConsumerGroup::consume) does.
    Partition,
    /// Records with the same key never run at the same time, and run in offset order.
    /// A key is ordered within its partition, which with Kafka's default partitioner
    /// is where all its records are. Records with a null key have no order: each
    /// runs on its own.
    Key,
    /// Any record may run at any time.
    Unordered,
}

/// A record given up on: what the dead-letter hook receives with it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure {
    /// How many times it was tried.
    pub attempts: u32,
    /// The last attempt's error (kind [`Handler`](crate::ErrorKind::Handler)).
    pub error: Error,
}

type DeadLetterFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
type DeadLetter = Arc<dyn Fn(ConsumerRecord, Failure) -> DeadLetterFuture + Send + Sync>;

/// How [`ConsumerGroup::process`](super::ConsumerGroup::process) runs records.
#[derive(Clone)]
pub struct ProcessOptions {
    order: ProcessOrder,
    max_in_flight: usize,
    max_buffered: Option<usize>,
    attempts: u32,
    backoff: Backoff,
    dead_letter: Option<DeadLetter>,
    metadata_limit: usize,
}

impl std::fmt::Debug for ProcessOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessOptions")
            .field("order", &self.order)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_buffered", &self.buffer_budget())
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("dead_letter", &self.dead_letter.is_some())
            .field("metadata_limit", &self.metadata_limit)
            .finish()
    }
}

impl ProcessOptions {
    /// Records run in `order`, at most `max_in_flight` at a time per member (at least
    /// 1). Defaults: 3 attempts per record with a backoff from 100 ms to 5 s, no
    /// dead-letter hook, `max_buffered` ten times `max_in_flight` (at least 1,000),
    /// metadata up to 4,096 bytes (Kafka's default `offset.metadata.max.bytes`).
    pub fn new(order: ProcessOrder, max_in_flight: usize) -> Self {
        Self {
            order,
            max_in_flight: max_in_flight.max(1),
            max_buffered: None,
            attempts: 3,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            dead_letter: None,
            metadata_limit: 4096,
        }
    }

    /// Records read and not yet finished, per member (at least `max_in_flight`).
    pub fn max_buffered(mut self, records: usize) -> Self {
        self.max_buffered = Some(records);
        self
    }

    /// How many times a record is tried (at least 1), and the backoff between tries
    /// (doubling from `initial` up to `max`, with jitter).
    pub fn attempts(mut self, attempts: u32, initial: Duration, max: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.backoff = Backoff::new(initial, max);
        self
    }

    /// What to do with a record that failed every attempt: produce it to a dead-letter
    /// topic, say. Once the hook returns `Ok` the record counts as done; when it fails,
    /// the claim fails (the group's `on_handler_error` applies) and the record is not
    /// committed.
    pub fn dead_letter<H, Fut>(mut self, hook: H) -> Self
    where
        H: Fn(ConsumerRecord, Failure) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.dead_letter = Some(Arc::new(move |record, failure| {
            Box::pin(hook(record, failure)) as DeadLetterFuture
        }));
        self
    }

    /// The broker's `offset.metadata.max.bytes`, if not Kafka's default 4,096: the
    /// done set stays within it.
    pub fn metadata_limit(mut self, bytes: usize) -> Self {
        self.metadata_limit = bytes;
        self
    }

    fn buffer_budget(&self) -> usize {
        self.max_buffered
            .unwrap_or((self.max_in_flight * 10).max(1000))
            .max(self.max_in_flight)
    }
}

/// Runs an async function on records with [`ProcessOptions`]; a [`GroupHandler`], so
/// it can also run inside [`consume`](super::ConsumerGroup::consume) or on the claims
/// of a [`ClaimStream`](super::ClaimStream) ([`run_claim`](Self::run_claim)).
/// [`ConsumerGroup::process`](super::ConsumerGroup::process) is the short way. The
/// member-wide limits (`max_in_flight`, `max_buffered`) are shared by every claim it
/// runs.
///
/// ```no_run
/// # async fn demo(group: josefine::ConsumerGroup) -> josefine::Result<()> {
/// use josefine::{ProcessOptions, ProcessOrder, Processor};
/// // Up to 50 records at a time, records of one key in order.
/// let options = ProcessOptions::new(ProcessOrder::Key, 50);
/// let processor = Processor::new(options, |record| async move {
///     // Write the record somewhere.
///     let _ = record.value();
///     Ok::<(), std::io::Error>(())
/// });
/// // A clone shares the counts, to watch them while the group runs.
/// let progress = processor.clone();
/// println!("{} records in flight", progress.in_flight());
/// group.consume(&["orders"], processor).await
/// # }
/// ```
pub struct Processor<F> {
    shared: Arc<Shared<F>>,
}

impl<F> Clone for Processor<F> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<F> std::fmt::Debug for Processor<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("options", &self.shared.options)
            .field("in_flight", &self.in_flight())
            .field("buffered", &self.shared.buffered.load(Ordering::Relaxed))
            .finish()
    }
}

/// What every claim of a processor shares.
struct Shared<F> {
    options: ProcessOptions,
    work: F,
    /// One permit per record in flight.
    permits: permits::Permits,
    /// Records read and not finished, over every claim.
    buffered: AtomicUsize,
    /// Claims running.
    claims: AtomicUsize,
    /// For the group of the first claim (a processor serves one group).
    metrics: std::sync::OnceLock<crate::metrics::ProcessMetrics>,
}

impl<F, Fut, E> Processor<F>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    /// A processor running `work` on each record. `work` gets the record by value and
    /// returns `Ok` once it is done with it; an `Err` (any error type) is a failed
    /// attempt.
    pub fn new(options: ProcessOptions, work: F) -> Self {
        Self {
            shared: Arc::new(Shared {
                permits: permits::Permits::new(options.max_in_flight),
                options,
                work,
                buffered: AtomicUsize::new(0),
                claims: AtomicUsize::new(0),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Processes one claim until it is revoked, then drains it (see the module docs).
    pub async fn run_claim(&self, claim: Claim) -> Result<()> {
        run::run_claim(&self.shared, claim).await
    }
}

impl<F> Processor<F> {
    /// Records running now (or backing off between attempts), over every claim.
    pub fn in_flight(&self) -> usize {
        self.shared.options.max_in_flight - self.shared.permits.available()
    }

    /// Records read and not finished (running or waiting), over every claim.
    pub fn buffered(&self) -> usize {
        self.shared.buffered.load(Ordering::Acquire)
    }
}

impl<F, Fut, E> GroupHandler for Processor<F>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    async fn consume_claim(&self, _session: &Session, claim: Claim) -> Result<()> {
        self.run_claim(claim).await
    }
}
