//! One claim under a [`Processor`](super::Processor): reads records while the buffer
//! allows, starts them as their lanes and the member's permits allow, marks the
//! watermark and done set, and drains on revoke.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::done_set::DoneSet;
use super::progress::{Lane, Lanes, Offer, Progress};
use super::{Failure, Shared, MARK_INTERVAL};
use crate::backoff::jitter_unit;
use crate::consumer::{ConsumerRecord, FetchedBatch};
use crate::error::{Error, ErrorKind, Result};
use crate::group::session::{Claim, RevokeReason};
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
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
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
    let mut progress = Progress::new(start, restored);
    let mut lanes = Lanes::new(shared.options.order);
    let mut member = Member::enter(shared);
    let mut marker = Marker {
        limit: shared.options.metadata_limit,
        last: None,
        due: None,
    };
    let span = DoneSet::max_span(shared.options.metadata_limit);
    let mut running = FuturesUnordered::new();
    let state = claim.state();
    let mut drain_until: Option<Instant> = None;
    let mut failed: Option<Error> = None;

    loop {
        // Start what may start without waiting. Only records within `span` of the
        // watermark start, so that the done set always fits the metadata limit.
        let below = |progress: &Progress| Some(progress.watermark().saturating_add(span));
        if drain_until.is_none() {
            while lanes.has_ready(below(&progress)) {
                let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
                    break;
                };
                let (lane, record) = lanes.start(below(&progress)).expect("a ready record");
                running.push(attempt(shared.clone(), permit, lane, record));
            }
        }
        if drain_until.is_some() && running.is_empty() {
            break;
        }
        let wants_permit = drain_until.is_none() && lanes.has_ready(below(&progress));
        let may_read = drain_until.is_none() && member.may_read();
        tokio::select! {
            biased;
            revocation = state.revoked(), if drain_until.is_none() => {
                if revocation.reason == RevokeReason::Lost {
                    // Nothing more is committed for this claim.
                    break;
                }
                // Leave time to mark before the deadline.
                let left = revocation.deadline.saturating_duration_since(Instant::now());
                drain_until = Some(revocation.deadline - (left / 10).min(Duration::from_millis(50)));
            }
            Some(outcome) = running.next(), if !running.is_empty() => {
                let outcome: Outcome = outcome;
                if let Err(err) = outcome.result {
                    failed = Some(err);
                    break;
                }
                progress.finish(outcome.offset);
                lanes.done(outcome.lane);
                member.hold(progress.outstanding());
                state.progressed();
                marker.dirty();
            }
            permit = shared.permits.clone().acquire_owned(), if wants_permit => {
                let permit = permit.expect("the processor's semaphore is never closed");
                if let Some((lane, record)) = lanes.start(below(&progress)) {
                    running.push(attempt(shared.clone(), permit, lane, record));
                }
            }
            batch = claim.next_batch(), if may_read => match batch {
                // Revoked: the revocation branch sees it next.
                None => {}
                Some(Err(err)) => {
                    failed = Some(err);
                    break;
                }
                Some(Ok(batch)) => {
                    match take(&batch, &mut progress, &mut lanes) {
                        Ok(0) => {}
                        Ok(skipped) => metrics.skipped.increment(skipped),
                        Err(err) => {
                            failed = Some(err);
                            break;
                        }
                    }
                    member.hold(progress.outstanding());
                    marker.dirty();
                }
            },
            _ = sleep_until(marker.due), if marker.due.is_some() => {
                marker.mark(&claim, &progress);
                let in_flight = shared.options.max_in_flight - shared.permits.available_permits();
                metrics.in_flight.set(in_flight as f64);
                metrics.buffered.set(shared.buffered.load(Ordering::Acquire) as f64);
            }
            _ = sleep_until(drain_until), if drain_until.is_some() => break,
        }
    }
    // What finished is marked for the commit that hands the partition over; what is
    // still running is dropped (its records run again at the next owner).
    if state
        .revocation()
        .is_none_or(|r| r.reason != RevokeReason::Lost)
    {
        marker.mark(&claim, &progress);
    }
    drop(running);
    match failed {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Offers a fetched batch's records to the partition's progress and lanes; returns
/// how many the previous owner's done set skipped.
fn take(batch: &FetchedBatch, progress: &mut Progress, lanes: &mut Lanes) -> Result<u64> {
    let topic: Arc<str> = batch.topic().into();
    let mut skipped = 0;
    for record in batch {
        let record = record?;
        match progress.offer(record.offset()) {
            Offer::Process => lanes.push(ConsumerRecord::new(
                topic.clone(),
                batch.partition(),
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

/// Runs one record: tries, backs off, tries again, then hands it to the dead-letter
/// hook. The permit is held throughout: a record backing off counts as in flight.
async fn attempt<F, Fut, E>(
    shared: Arc<Shared<F>>,
    _permit: OwnedSemaphorePermit,
    lane: Option<Lane>,
    record: ConsumerRecord,
) -> Outcome
where
    F: Fn(ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let offset = record.offset();
    let options = &shared.options;
    let mut failures = 0u32;
    let error = loop {
        let err = match AssertUnwindSafe((shared.work)(record.clone()))
            .catch_unwind()
            .await
        {
            Ok(Ok(())) => {
                return Outcome {
                    offset,
                    lane,
                    result: Ok(()),
                }
            }
            Ok(Err(err)) => Error::handler_boxed(err.into()),
            Err(panic) => Error::new(
                ErrorKind::Handler,
                format!("processing panicked: {}", panic_message(panic.as_ref())),
            ),
        };
        failures += 1;
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
            hook(record, failure).await.map_err(|err| {
                Error::new(
                    ErrorKind::Handler,
                    format!("the dead-letter hook failed at offset {offset}; the record stays uncommitted"),
                )
                .with_source(err)
            })
        }
        None => Err(Error::new(
            ErrorKind::Handler,
            format!(
                "processing the record at offset {offset} failed {failures} times and there is no dead-letter hook; it stays uncommitted"
            ),
        )
        .with_source(error)),
    };
    Outcome {
        offset,
        lane,
        result,
    }
}
