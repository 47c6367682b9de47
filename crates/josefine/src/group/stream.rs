//! [`ConsumerGroup::stream`](super::ConsumerGroup::stream): the group's records as one
//! stream, for users who do not want to write a handler.
//!
//! Underneath, `consume` runs in a background task with a handler that forwards each
//! claim's batches into one bounded channel. Two rules keep at-least-once intact:
//!
//! - A record of a claim that has ended (session over, partition revoked) is never
//!   handed out: it was not marked, so its new owner reads it again.
//! - A claim's handler does not return until the stream has been polled again after
//!   the claim ended. Polling means the user is done with the record it got before,
//!   so its mark is in before the final commit and the partition is given up, as
//!   `poll()` does in the Java client.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::consumer_group::{ConsumerGroup, GroupHandler};
use super::session::{Claim, ClaimState, Session};
use crate::consumer::batch::RecordCursor;
use crate::consumer::{ConsumerRecord, FetchedBatch};
use crate::error::Result;

/// Batches in flight between the claims and the stream.
const CHANNEL_BATCHES: usize = 8;

enum Item {
    Batch {
        session: Session,
        claim: Arc<ClaimState>,
        batch: FetchedBatch,
    },
    Error(crate::Error),
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
            let item = match batch {
                Ok(batch) => Item::Batch {
                    session: session.clone(),
                    claim: state.clone(),
                    batch,
                },
                Err(err) => Item::Error(err),
            };
            if self.items.send(item).await.is_err() {
                return Ok(()); // the stream is gone
            }
        }
        let (release, released) = oneshot::channel();
        if self.items.send(Item::Released(release)).await.is_ok() {
            let _ = released.await;
        }
        Ok(())
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
/// and before a partition is given up. A claim's read error (a corrupt batch: its
/// partition stops there, as the handler API's `Claim` does) comes as an `Err` item,
/// and so does a fatal group error, last; other non-fatal errors (failed commits) are
/// on [`ConsumerGroup::errors`]. [`close`](Self::close) commits and leaves the group;
/// dropping the stream leaves it too, without waiting.
pub struct GroupStream {
    group: ConsumerGroup,
    items: mpsc::Receiver<Item>,
    current: Option<Current>,
    task: Option<JoinHandle<Result<()>>>,
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
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let task = tokio::spawn({
            let group = group.clone();
            async move {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                group.consume(&topics, Forward { items: items_tx }).await
            }
        });
        Self {
            group,
            items,
            current: None,
            task: Some(task),
        }
    }

    /// Commits the marked offsets, leaves the group and waits until it has (for at
    /// most the group's `close_timeout`); returns the group's fatal error if it had
    /// one.
    pub async fn close(mut self) -> Result<()> {
        // Release every ended claim, so the final commit is not held up.
        self.items.close();
        self.group.request_close().await;
        while let Some(item) = self.items.recv().await {
            if let Item::Released(release) = item {
                let _ = release.send(());
            }
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let timeout = self.group.config().close_timeout;
        match tokio::time::timeout(timeout, task).await {
            Ok(outcome) => outcome.unwrap_or_else(|err| Err(task_failed(err))),
            Err(_) => Err(crate::Error::new(
                crate::ErrorKind::Timeout,
                format!("the group was not left within close_timeout ({timeout:?})"),
            )
            .with_group(self.group.group_id())),
        }
    }

    /// The group this stream reads for (its errors, or a manual close).
    pub fn group(&self) -> &ConsumerGroup {
        &self.group
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
                Poll::Ready(Some(Item::Error(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(Some(Item::Released(release))) => {
                    let _ = release.send(());
                }
                Poll::Ready(None) => {
                    // `consume` ended: hand out its fatal error, if any, then end.
                    let Some(task) = this.task.as_mut() else {
                        return Poll::Ready(None);
                    };
                    let outcome = futures::ready!(Pin::new(task).poll(cx));
                    this.task = None;
                    return Poll::Ready(match outcome {
                        Ok(Ok(())) => None,
                        Ok(Err(err)) => Some(Err(err)),
                        Err(err) => Some(Err(task_failed(err))),
                    });
                }
            }
        }
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

impl Drop for GroupStream {
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
