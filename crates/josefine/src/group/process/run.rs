//! One claim under a [`Processor`](super::Processor): reads records while the buffer
//! allows, starts them as their lanes and the member's permits allow, marks the
//! watermark and done set, and drains on revoke.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::done_set::DoneSet;
use super::permits::LocalPermits;
use super::progress::{Lane, Lanes, Offer, Progress};
use super::{Failure, Shared, MARK_INTERVAL};
use crate::backoff::jitter_unit;
use crate::consumer::{ConsumerRecord, FetchedBatch};
use crate::error::{Error, ErrorKind, Result};
use crate::group::claims::{Claim, RevokeReason};
use crate::task::panic_message;

/// How a record's run ended.
struct Outcome {
    offset: i64,
    lane: Option<Lane>,
    /// `Err`: the record could not be processed nor dead-lettered; the claim fails.
    result: Result<()>,
}

/// Counts a claim in its processor's `claims` while alive, and gives back its share
/// of `buffered` when it ends.
struct Member<'a, F> {
    shared: &'a Shared<F>,
    held: usize,
}

impl<'a, F> Member<'a, F> {
    fn enter(shared: &'a Shared<F>) -> Self {
        shared.claims.fetch_add(1, Ordering::AcqRel);
        Self { shared, held: 0 }
    }

    /// This claim now holds `held` records.
    fn hold(&mut self, held: usize) {
        if held > self.held {
            self.shared
                .buffered
                .fetch_add(held - self.held, Ordering::AcqRel);
        } else {
            self.shared
                .buffered
                .fetch_sub(self.held - held, Ordering::AcqRel);
        }
        self.held = held;
    }

    /// Whether this claim may read more: while the member's buffer has room, or
    /// while this claim holds less than its share of it.
    fn may_read(&self) -> bool {
        let budget = self.shared.options.buffer_budget();
        let claims = self.shared.claims.load(Ordering::Acquire).max(1);
        self.held < (budget / claims).max(1)
            || self.shared.buffered.load(Ordering::Acquire) < budget
    }
}

impl<F> Drop for Member<'_, F> {
    fn drop(&mut self) {
        self.hold(0);
        self.shared.claims.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The claim's marks: what was marked last, so an unchanged state is not marked
/// again.
struct Marker {
    limit: usize,
    last: Option<(i64, Option<String>)>,
    due: Option<Instant>,
}

impl Marker {
    fn mark(&mut self, claim: &Claim, progress: &Progress) {
        self.due = None;
        let watermark = progress.watermark();
        let done = progress.done_set();
        let metadata = done.encode(watermark, self.limit);
        let now = (watermark, metadata);
        if self.last.as_ref() == Some(&now) {
            return;
        }
        match &now.1 {
            Some(metadata) => claim.mark_offset(watermark, metadata),
            None => claim.mark_next(watermark),
        }
        self.last = Some(now);
    }

    /// Something finished: mark within the interval.
    fn dirty(&mut self) {
        if self.due.is_none() {
            self.due = Some(Instant::now() + MARK_INTERVAL);
        }
    }
}

pub(super) async fn run_claim<F, Fut, E>(shared: &Arc<Shared<F>>, mut claim: Claim) -> Result<()>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let start = claim.initial_offset();
    let restored = claim
        .metadata()
        .and_then(|m| DoneSet::decode(&m, start))
        .unwrap_or_default();
    if !restored.is_empty() {
        tracing::debug!(
            topic = claim.topic(),
            partition = claim.partition(),
            start,
            done = restored.len(),
            "claim resumes with the previous owner's done set"
        );
    }
    let metrics = shared
        .metrics
        .get_or_init(|| crate::metrics::ProcessMetrics::new(claim.session().group()));
    let shared: &Shared<F> = shared;
    let state = claim.state();
    let mut run = ClaimRun {
        shared,
        progress: Progress::new(start, restored),
        lanes: Lanes::new(shared.options.order),
        member: Member::enter(shared),
        marker: Marker {
            limit: shared.options.metadata_limit,
            last: None,
            due: None,
        },
        span: DoneSet::max_span(shared.options.metadata_limit),
        state: &state,
        local: LocalPermits::default(),
        batches: VecDeque::new(),
    };
    // Each record's run, once it had to wait; one permit each.
    let mut running = FuturesUnordered::new();
    let revoked = state.revoked();
    tokio::pin!(revoked);
    let mut drain_until: Option<Instant> = None;
    let mut failed: Option<Error> = None;
    // The records ended without a revocation (the consumer closed): run what is
    // read until the revocation comes.
    let mut reader_ended = false;

    'claim: loop {
        if drain_until.is_none() {
            if let Err(err) = run.start_ready(&mut running) {
                failed = Some(err);
                break;
            }
        } else if running.is_empty() {
            break;
        }
        run.member.hold(run.progress.outstanding());
        // Permits this claim does not use now are the member's while it waits.
        run.local.release_idle(&shared.permits);
        // Fetched batches stay until every record in them finished: what the
        // claim holds counts against queued.max.bytes, as the bytes its records
        // keep alive (they are slices of the fetched buffers).
        let watermark = run.progress.watermark();
        while run
            .batches
            .front()
            .is_some_and(|b| b.next_offset() <= watermark)
        {
            run.batches.pop_front();
        }
        let wants_permit = drain_until.is_none() && run.lanes.has_ready(run.below());
        let may_read = drain_until.is_none() && !reader_ended && run.member.may_read();
        tokio::select! {
            biased;
            revocation = &mut revoked, if drain_until.is_none() => {
                if revocation.reason == RevokeReason::Lost {
                    // Nothing more is committed for this claim.
                    break;
                }
                // Leave time to mark before the deadline.
                let left = revocation.deadline.saturating_duration_since(Instant::now());
                drain_until = Some(revocation.deadline - (left / 10).min(Duration::from_millis(50)));
            }
            Some(outcome) = running.next(), if !running.is_empty() => {
                // This one and every other that is done by now.
                let mut next = Some(outcome);
                while let Some(outcome) = next {
                    if let Err(err) = run.finished(outcome) {
                        failed = Some(err);
                        break 'claim;
                    }
                    next = running.next().now_or_never().flatten();
                }
            }
            // Marks before reading: a backlog read without pause must not hold
            // commits back.
            _ = sleep_until(run.marker.due), if run.marker.due.is_some() => {
                run.marker.mark(&claim, &run.progress);
                let in_flight = shared.options.max_in_flight - shared.permits.available();
                metrics.in_flight.set(in_flight as f64);
                metrics.buffered.set(shared.buffered.load(Ordering::Acquire) as f64);
            }
            () = shared.permits.take(), if wants_permit => {
                run.local.taken();
                if let Err(err) = run.start_one(&mut running) {
                    failed = Some(err);
                    break;
                }
            }
            batch = claim.next_batch(), if may_read => match batch {
                // Revoked (the revocation branch sees it next), or the reader
                // ended.
                None => reader_ended = !state.is_revoked(),
                Some(Err(err)) => {
                    failed = Some(err);
                    break;
                }
                Some(Ok(batch)) => {
                    match take(&batch, &mut run.progress, &mut run.lanes) {
                        Ok(0) => {}
                        Ok(skipped) => metrics.skipped.increment(skipped),
                        Err(err) => {
                            failed = Some(err);
                            break;
                        }
                    }
                    run.marker.dirty();
                    run.batches.push_back(batch);
                }
            },
            _ = sleep_until(drain_until), if drain_until.is_some() => break,
        }
    }
    // What finished is marked for the commit that hands the partition over; what is
    // still running is dropped (its records run again at the next owner), and its
    // permits given back.
    if state
        .revocation()
        .is_none_or(|r| r.reason != RevokeReason::Lost)
    {
        run.marker.mark(&claim, &run.progress);
    }
    drop(running);
    match failed {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// A record's run, boxed once it had to wait.
type Running<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

impl<F> Drop for ClaimRun<'_, F> {
    /// The claim ended (or its loop unwound): every permit it holds goes back,
    /// those of records still running too (they are dropped with the claim).
    fn drop(&mut self) {
        self.local.release_all(&self.shared.permits);
    }
}

/// The claim's state between `select!`s.
struct ClaimRun<'a, F> {
    shared: &'a Shared<F>,
    progress: Progress,
    lanes: Lanes,
    member: Member<'a, F>,
    marker: Marker,
    /// Records start only this far above the watermark, so that the done set always
    /// fits the metadata limit.
    span: i64,
    state: &'a crate::group::claims::ClaimState,
    local: LocalPermits,
    /// Fetched batches with records not all finished.
    batches: VecDeque<FetchedBatch>,
}

impl<'a, F, Fut, E> ClaimRun<'a, F>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    fn below(&self) -> Option<i64> {
        Some(self.progress.watermark().saturating_add(self.span))
    }

    /// Starts ready records while permits are free.
    fn start_ready(&mut self, running: &mut FuturesUnordered<Running<'a>>) -> Result<()> {
        let claims = self.shared.claims.load(Ordering::Relaxed).max(1);
        let chunk = (self.shared.options.max_in_flight / (4 * claims)).clamp(1, 32);
        while self.lanes.has_ready(self.below()) && self.local.try_take(&self.shared.permits, chunk)
        {
            self.start_one(running)?;
        }
        Ok(())
    }

    /// Starts the lowest ready record with a permit already taken. Its first try is
    /// polled once here, so a record that needs no waiting never becomes a task.
    fn start_one(&mut self, running: &mut FuturesUnordered<Running<'a>>) -> Result<()> {
        let Some((lane, record)) = self.lanes.start(self.below()) else {
            self.local.put(&self.shared.permits);
            return Ok(());
        };
        let offset = record.offset();
        let mut first = match call(self.shared, record.clone()) {
            Ok(first) => Box::pin(first),
            Err(err) => {
                let failed = First::<TryOf<Fut>>::Failed(err);
                running.push(Box::pin(attempt(self.shared, lane, record, failed)));
                return Ok(());
            }
        };
        match first.as_mut().now_or_never().map(tried) {
            Some(Ok(())) => self.finished(Outcome {
                offset,
                lane,
                result: Ok(()),
            }),
            Some(Err(err)) => {
                let failed = First::<TryOf<Fut>>::Failed(err);
                running.push(Box::pin(attempt(self.shared, lane, record, failed)));
                Ok(())
            }
            None => {
                running.push(Box::pin(attempt(
                    self.shared,
                    lane,
                    record,
                    First::Running(first),
                )));
                Ok(())
            }
        }
    }

    /// A record's run ended: its permit goes back, its offset is done, its lane's
    /// next record may start.
    fn finished(&mut self, outcome: Outcome) -> Result<()> {
        self.local.put(&self.shared.permits);
        outcome.result?;
        self.progress.finish(outcome.offset);
        self.lanes.done(outcome.lane);
        self.state.progressed();
        self.marker.dirty();
        Ok(())
    }
}

/// Offers a fetched batch's records to the partition's progress and lanes; returns
/// how many the previous owner's done set skipped.
fn take(batch: &FetchedBatch, progress: &mut Progress, lanes: &mut Lanes) -> Result<u64> {
    let mut skipped = 0;
    for record in batch {
        let record = record?;
        match progress.offer(record.offset()) {
            Offer::Process => lanes.push(ConsumerRecord::new(
                batch.topic.clone(),
                batch.partition,
                record,
            )),
            Offer::Done => skipped += 1,
            Offer::Skip => {}
        }
    }
    progress.read_to(batch.next_offset());
    Ok(skipped)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a try of the user's function gave: its result, or a panic.
type Tried<E> = std::result::Result<std::result::Result<(), E>, Box<dyn std::any::Any + Send>>;

/// A record's first try: the user's future with panics caught.
type TryOf<Fut> = futures::future::CatchUnwind<AssertUnwindSafe<Fut>>;

/// A first try, when it did not succeed at once: still running, or failed.
enum First<T> {
    Running(Pin<Box<T>>),
    Failed(Error),
}

/// Calls the user's function: a panic while it makes its future (not only while
/// the future runs) is a failed try.
fn call<F, Fut, E>(shared: &Shared<F>, record: ConsumerRecord) -> Result<TryOf<Fut>>
where
    F: Fn(ConsumerRecord) -> Fut,
    Fut: Future<Output = std::result::Result<(), E>>,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| (shared.work)(record))) {
        Ok(fut) => Ok(AssertUnwindSafe(fut).catch_unwind()),
        Err(panic) => Err(Error::new(
            ErrorKind::Handler,
            format!("processing panicked: {}", panic_message(panic.as_ref())),
        )),
    }
}

fn tried<E>(tried: Tried<E>) -> Result<()>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tried {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(Error::handler_boxed(err.into())),
        Err(panic) => Err(Error::new(
            ErrorKind::Handler,
            format!("processing panicked: {}", panic_message(panic.as_ref())),
        )),
    }
}

/// Runs one record from its first try (still running, or failed): awaits it, then
/// backs off, tries again, and hands it to the dead-letter hook. Its permit is held
/// throughout: a record backing off counts as in flight. The retries are boxed, so
/// the future stays small.
async fn attempt<F, Fut, E, T>(
    shared: &Shared<F>,
    lane: Option<Lane>,
    record: ConsumerRecord,
    first: First<T>,
) -> Outcome
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    T: Future<Output = Tried<E>>,
{
    let offset = record.offset();
    let first = match first {
        First::Running(running) => tried(running.await),
        First::Failed(err) => Err(err),
    };
    let result = match first {
        Ok(()) => Ok(()),
        Err(err) => Box::pin(retry(shared, record, err)).await,
    };
    Outcome {
        offset,
        lane,
        result,
    }
}

/// One try; a panic is an error that says so.
async fn try_once<F, Fut, E>(shared: &Shared<F>, record: ConsumerRecord) -> Result<()>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    match call(shared, record) {
        Ok(running) => tried(running.await),
        Err(err) => Err(err),
    }
}

/// After a failed first try: the other attempts, then the dead-letter hook.
async fn retry<F, Fut, E>(shared: &Shared<F>, record: ConsumerRecord, first: Error) -> Result<()>
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let offset = record.offset();
    let options = &shared.options;
    let mut failures = 1u32;
    let mut err = first;
    let error = loop {
        if failures >= options.attempts {
            break err
                .with_topic(record.topic())
                .with_partition(record.partition());
        }
        tracing::debug!(error = %err, offset, failures, "processing a record failed; retrying");
        if let Some(metrics) = shared.metrics.get() {
            metrics.retries.increment(1);
        }
        tokio::time::sleep(options.backoff.delay(failures, jitter_unit())).await;
        match try_once(shared, record.clone()).await {
            Ok(()) => return Ok(()),
            Err(next) => err = next,
        }
        failures += 1;
    };
    let result = match &options.dead_letter {
        Some(hook) => {
            tracing::warn!(error = %error, offset, attempts = failures, "giving up on a record; dead-lettering it");
            let failure = Failure {
                attempts: failures,
                error,
            };
            if let Some(metrics) = shared.metrics.get() {
                metrics.dead_letters.increment(1);
            }
            let failed = |why: String| {
                Error::new(
                    ErrorKind::Handler,
                    format!("the dead-letter hook {why} at offset {offset}; the record stays uncommitted"),
                )
            };
            // A panicking hook fails the claim like a failing one.
            match std::panic::catch_unwind(AssertUnwindSafe(|| hook(record, failure))) {
                Ok(hooked) => match AssertUnwindSafe(hooked).catch_unwind().await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(failed("failed".into()).with_source(err)),
                    Err(panic) => Err(failed(format!("panicked ({})", panic_message(panic.as_ref())))),
                },
                Err(panic) => Err(failed(format!("panicked ({})", panic_message(panic.as_ref())))),
            }
        }
        None => Err(Error::new(
            ErrorKind::Handler,
            format!(
                "processing the record at offset {offset} failed {failures} times and there is no dead-letter hook; it stays uncommitted"
            ),
        )
        .with_source(error)),
    };
    result
}
