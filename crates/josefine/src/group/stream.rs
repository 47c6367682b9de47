//! The group without a handler: [`ConsumerGroup::stream`](super::ConsumerGroup::stream)
//! hands out the records of every claim as one stream; [`ConsumerGroup::claims`]
//! (super::ConsumerGroup::claims) hands out the claims themselves as they are
//! assigned, each a partition's own record stream that ends when it is revoked, for
//! users who process partitions concurrently and want to see assignments.
//!
//! Underneath, `consume` runs in a background task ([`Background`]) with a handler
//! that forwards into one bounded channel: each claim's batches, or the claim itself
//! (its task then waits until the user drops it, so drain on revoke applies). For the
//! record stream two rules keep at-least-once intact:
//!
//! - A record of a claim that has ended (session over, partition revoked) is never
//!   handed out: it was not marked, so its new owner reads it again.
//! - A claim's handler does not return until the stream has been polled again after
//!   the claim ended. Polling means the user is done with the record it got before,
//!   so its mark is in before the final commit and the partition is given up, as
//!   `poll()` does in the Java client. The one exception: a group closed with
//!   `ConsumerGroup::close` while the stream is not polled (close the stream itself
//!   to keep the rule), whose close would otherwise wait for the drain deadline.
//! - A claim's read error (a corrupt batch) comes after the records fetched before
//!   it: the handler applies the group's handler-error policy only once the stream has
//!   got to the error (so a `Stop` cannot end the stream before them), and a revoked
//!   claim's error is dropped like its batches (the next owner meets it again).

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::claims::{Claim, ClaimState, RevokeReason, Session};
use super::consumer_group::ConsumerGroup;
use super::handler::GroupHandler;
use crate::consumer::batch::RecordCursor;
use crate::consumer::{ConsumerRecord, FetchedBatch};
use crate::error::{Error, Result};

// The stream is built on the facade (it runs `consume`), so its entry points live
// here rather than in `consumer_group.rs`, which imports nothing from this file.
impl ConsumerGroup {
    /// Consumes `topics` as a stream of records, for users who want records without
    /// writing a handler; see [`GroupStream`]. The group runs in a background task
    /// until the stream is closed or dropped.
    pub fn stream(&self, topics: &[&str]) -> Result<GroupStream> {
        if topics.is_empty() {
            return Err(Error::config("stream needs at least one topic"));
        }
        Ok(GroupStream::start(self.clone(), topics))
    }

    /// Consumes `topics` as a stream of claims: each item is a partition as it is
    /// assigned to this member, with its own records, ending when the partition is
    /// revoked; see [`ClaimStream`]. The group runs in a background task until the
    /// stream is closed or dropped.
    pub fn claims(&self, topics: &[&str]) -> Result<ClaimStream> {
        if topics.is_empty() {
            return Err(Error::config("claims needs at least one topic"));
        }
        Ok(ClaimStream::start(self.clone(), topics))
    }
}

/// Batches in flight between the claims and the stream.
const CHANNEL_BATCHES: usize = 8;

enum Item {
    Batch {
        session: Session,
        claim: Arc<ClaimState>,
        batch: FetchedBatch,
    },
    /// A claim's read error (a corrupt batch); `handed` fires when the stream got
    /// to it (handed out, or dropped with its revoked claim).
    Error {
        claim: Arc<ClaimState>,
        error: crate::Error,
        handed: oneshot::Sender<()>,
    },
    /// A claim ended; answer once the stream is polled again.
    Released(oneshot::Sender<()>),
}

/// The handler behind the stream.
struct Forward {
    items: mpsc::Sender<Item>,
}

impl GroupHandler for Forward {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> Result<()> {
        let state = claim.state();
        while let Some(batch) = claim.next_batch().await {
            let (item, failed) = match batch {
                Ok(batch) => (
                    Item::Batch {
                        session: session.clone(),
                        claim: state.clone(),
                        batch,
                    },
                    None,
                ),
                // The stream shows it; the group's handler-error policy decides what
                // happens to the partition (restart from the last mark by default).
                Err(err) => {
                    let (handed, reached) = oneshot::channel();
                    let item = Item::Error {
                        claim: state.clone(),
                        error: err.clone(),
                        handed,
                    };
                    (item, Some((err, reached)))
                }
            };
            tokio::select! {
                sent = self.items.send(item) => if sent.is_err() {
                    return Ok(()); // the stream is gone
                },
                // A full channel the user no longer drains: its batches go unread.
                _ = group_closed(&claim) => return Ok(()),
            }
            if let Some((err, reached)) = failed {
                // The policy applies once the user has had the records before the
                // error and the error itself (a `Stop` would otherwise end the
                // stream before them).
                let _ = reached.await;
                return Err(err);
            }
        }
        let (release, released) = oneshot::channel();
        tokio::select! {
            sent = self.items.send(Item::Released(release)) => if sent.is_ok() {
                tokio::select! {
                    _ = released => {}
                    _ = group_closed(&claim) => {}
                }
            },
            _ = group_closed(&claim) => {}
        }
        Ok(())
    }
}

/// Returns once `claim` was revoked because the group closes, and never otherwise.
/// The group was closed with `ConsumerGroup::close` rather than the stream's own
/// `close`: the user polls no more, so waiting for a poll would hold the close up
/// until the drain deadline. The mark of a record still in the user's hands may then
/// miss the final commit (its next owner reads it again: at least once still holds).
async fn group_closed(claim: &Claim) {
    if claim.revoked().await.reason != RevokeReason::Close {
        std::future::pending::<()>().await;
    }
}

/// A record from [`GroupStream`], with the session it belongs to. Dereferences to
/// the [`ConsumerRecord`].
#[derive(Debug, Clone)]
pub struct GroupRecord {
    record: ConsumerRecord,
    session: Session,
    claim: Arc<ClaimState>,
}

impl GroupRecord {
    /// Marks the record as processed: the next commit includes `offset + 1` (no lock;
    /// a mark made after its partition was handed over is never committed).
    pub fn mark(&self) {
        self.claim.marks.mark(self.record.offset() + 1);
    }

    /// The session the record was read in (member id, generation, commit).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The record without its session.
    pub fn into_record(self) -> ConsumerRecord {
        self.record
    }
}

impl Deref for GroupRecord {
    type Target = ConsumerRecord;

    fn deref(&self) -> &ConsumerRecord {
        &self.record
    }
}

/// The records of a consumer group as a [`Stream`]. Mark each record once processed
/// ([`GroupRecord::mark`]); marked offsets are committed on the auto-commit interval
/// and before a partition is given up. A claim's read error (a corrupt batch) comes as
/// an `Err` item, and the group's [`OnHandlerError`](super::OnHandlerError) decides
/// what follows, as for a handler: the partition is read again from its last mark
/// after a backoff (the default), the member rejoins, or the stream ends with the
/// error. A fatal group error comes as an `Err` item, last; other non-fatal errors (failed commits) are
/// on [`ConsumerGroup::errors`]. [`close`](Self::close) commits and leaves the group;
/// dropping the stream leaves it too, without waiting.
pub struct GroupStream {
    background: Background,
    items: mpsc::Receiver<Item>,
    current: Option<Current>,
}

struct Current {
    session: Session,
    claim: Arc<ClaimState>,
    batch: FetchedBatch,
    cursor: RecordCursor,
}

impl GroupStream {
    pub(crate) fn start(group: ConsumerGroup, topics: &[&str]) -> Self {
        let (items_tx, items) = mpsc::channel(CHANNEL_BATCHES);
        Self {
            background: Background::start(group, topics, Forward { items: items_tx }),
            items,
            current: None,
        }
    }

    /// Commits the marked offsets, leaves the group and waits until it has (for at
    /// most the group's `close_timeout`); returns the group's fatal error if it had
    /// one.
    pub async fn close(mut self) -> Result<()> {
        // Release every ended claim, so the final commit is not held up.
        self.background
            .close(&mut self.items, |item| {
                if let Item::Released(release) = item {
                    let _ = release.send(());
                }
            })
            .await
    }

    /// The group this stream reads for (its errors, or a manual close).
    pub fn group(&self) -> &ConsumerGroup {
        &self.background.group
    }

    fn next_from_current(&mut self) -> Option<Result<GroupRecord>> {
        let current = self.current.as_mut()?;
        if current.claim.is_revoked() {
            self.current = None;
            return None;
        }
        match current.cursor.next(&current.batch) {
            Some(record) => Some(record.map(|record| GroupRecord {
                record: ConsumerRecord::new(
                    current.batch.topic.clone(),
                    current.batch.partition,
                    record,
                ),
                session: current.session.clone(),
                claim: current.claim.clone(),
            })),
            None => {
                self.current = None;
                None
            }
        }
    }
}

impl Stream for GroupStream {
    type Item = Result<GroupRecord>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(next) = this.next_from_current() {
                return Poll::Ready(Some(next));
            }
            match this.items.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Item::Batch {
                    session,
                    claim,
                    batch,
                })) => {
                    if !claim.is_revoked() {
                        this.current = Some(Current {
                            session,
                            claim,
                            batch,
                            cursor: RecordCursor::default(),
                        });
                    }
                }
                // Like its batches, a revoked claim's error is not handed out: the
                // partition's next owner reads from the commit and meets it again.
                Poll::Ready(Some(Item::Error {
                    claim,
                    error,
                    handed,
                })) => {
                    // Decided before the handler hears it got here: its policy may
                    // revoke the claim (and close the group) the moment it does.
                    let revoked = claim.is_revoked();
                    let _ = handed.send(());
                    if !revoked {
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                Poll::Ready(Some(Item::Released(release))) => {
                    let _ = release.send(());
                }
                // `consume` ended: hand out its fatal error, if any, then end.
                Poll::Ready(None) => return this.background.poll_end(cx),
            }
        }
    }
}

/// The handler behind [`ClaimStream`]: hands each claim over, and keeps its task
/// until the user drops it.
struct HandOver {
    claims: mpsc::Sender<Claim>,
}

impl GroupHandler for HandOver {
    async fn consume_claim(&self, _session: &Session, mut claim: Claim) -> Result<()> {
        let released = claim.released();
        let state = claim.state();
        tokio::select! {
            sent = self.claims.send(claim) => {
                if sent.is_ok() {
                    let _ = released.await;
                }
            }
            // Revoked before the user took it: it goes back unread.
            _ = state.revoked() => {}
        }
        Ok(())
    }
}

/// The claims of a consumer group as a [`Stream`]: each item is a partition just
/// assigned to this member, a [`Claim`] with its own records (`next`, `next_batch`),
/// marks, `pause`/`resume`/`seek`, and its end ([`Claim::revoked`]: the records end;
/// drop the claim once you have marked what you finished, before the deadline).
/// Process claims concurrently, e.g. one task each (what franz-go users do with
/// `EachPartition`). A fatal group error comes as an `Err` item, last; non-fatal
/// ones are on [`ConsumerGroup::errors`]. [`close`](Self::close) commits and leaves
/// the group; dropping the stream leaves it too, without waiting.
pub struct ClaimStream {
    background: Background,
    claims: mpsc::Receiver<Claim>,
}

impl ClaimStream {
    pub(crate) fn start(group: ConsumerGroup, topics: &[&str]) -> Self {
        let (claims_tx, claims) = mpsc::channel(CHANNEL_BATCHES);
        Self {
            background: Background::start(group, topics, HandOver { claims: claims_tx }),
            claims,
        }
    }

    /// Leaves the group (every claim is revoked; commit what you marked by dropping
    /// the claims you hold) and waits until it has, for at most the group's
    /// `close_timeout`; returns the group's fatal error if it had one.
    pub async fn close(mut self) -> Result<()> {
        // Claims assigned but never taken go back unread.
        self.background.close(&mut self.claims, drop).await
    }

    /// The group this stream consumes for.
    pub fn group(&self) -> &ConsumerGroup {
        &self.background.group
    }
}

impl Stream for ClaimStream {
    type Item = Result<Claim>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.claims.poll_recv(cx) {
            Poll::Ready(Some(claim)) => Poll::Ready(Some(Ok(claim))),
            Poll::Ready(None) => this.background.poll_end(cx),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The `consume` task behind a stream, and its group.
struct Background {
    group: ConsumerGroup,
    task: Option<JoinHandle<Result<()>>>,
}

impl Background {
    fn start(group: ConsumerGroup, topics: &[&str], handler: impl GroupHandler + 'static) -> Self {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let task = tokio::spawn({
            let group = group.clone();
            async move {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                group.consume(&topics, handler).await
            }
        });
        Self {
            group,
            task: Some(task),
        }
    }

    /// Asks `consume` to close, hands what is still in the stream's channel to
    /// `leftover` (so no claim waits on a stream that is going away), and waits (at
    /// most `close_timeout`) for `consume` to end.
    async fn close<T>(
        &mut self,
        items: &mut mpsc::Receiver<T>,
        leftover: impl Fn(T),
    ) -> Result<()> {
        items.close();
        self.group.request_close().await;
        while let Some(item) = items.recv().await {
            leftover(item);
        }
        self.group.wait_closed().await?;
        match self.task.take() {
            // `consume` has returned (or is returning): its outcome.
            Some(task) => task.await.unwrap_or_else(|err| Err(task_failed(err))),
            None => Ok(()),
        }
    }

    /// The stream's last item, once its channel closed: `consume`'s fatal error, if
    /// any.
    fn poll_end<T>(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let Some(task) = self.task.as_mut() else {
            return Poll::Ready(None);
        };
        let outcome = futures::ready!(Pin::new(task).poll(cx));
        self.task = None;
        Poll::Ready(match outcome {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(Err(err)),
            Err(err) => Some(Err(task_failed(err))),
        })
    }
}

/// The stream's task did not finish: it panicked (a bug) or the runtime is going away.
fn task_failed(err: tokio::task::JoinError) -> crate::Error {
    let why = match err.try_into_panic() {
        Ok(panic) => format!("panicked: {}", crate::task::panic_message(panic.as_ref())),
        Err(err) => err.to_string(),
    };
    crate::Error::new(
        crate::ErrorKind::Internal,
        format!("the group stream's task {why}; please report this bug"),
    )
}

impl Drop for Background {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        if task.is_finished() {
            return;
        }
        // Leave the group (claims waiting on this stream see it gone and return); if
        // `consume` has not started yet, there is nothing to leave: stop it instead.
        let group = self.group.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if !group.request_close().await {
                        task.abort();
                    }
                });
            }
            Err(_) => task.abort(),
        }
    }
}
