//! The user's end of one partition: [`PartitionConsumer`], and the state it shares
//! with whichever fetch loop currently feeds it.
//!
//! A fetch loop pushes [`Fetched`] items into a small bounded channel (so a partition
//! nobody reads holds at most a couple of fetches and never slows the others); the
//! partition consumer pulls them, batch at a time ([`PartitionConsumer::next_batch`])
//! or record at a time (its `Stream`). Taking an item frees a slot, which wakes the
//! loop so the partition is fetched again: the next fetch is under way while the user
//! works on the current one.
//!
//! A seek bumps a generation counter; items fetched for an older generation are
//! dropped on arrival, so nothing from before the seek leaks out after it.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::Notify;

use super::batch::{ConsumerRecord, FetchedBatch, RecordCursor};
use super::queue;
use super::ConsumerShared;
use crate::error::{Error, Result};
use crate::TopicPartition;

/// Items queued per partition. A fetch needs two free slots (a batch and an error that
/// may follow it), so at most one fetched batch waits beyond the one being read.
pub(crate) const QUEUE_SLOTS: usize = 3;

/// What a fetch loop delivers to a partition consumer.
#[derive(Debug)]
pub(crate) enum Fetched {
    Batch {
        generation: u64,
        /// Boxed: small items keep the partition's queue small when it holds a few.
        batch: Box<FetchedBatch>,
    },
    Error {
        generation: u64,
        error: Error,
    },
}

/// State shared between a [`PartitionConsumer`] and the fetch loop serving it.
#[derive(Debug)]
pub(crate) struct PartitionShared {
    pub tp: TopicPartition,
    pub paused: AtomicBool,
    pub closed: AtomicBool,
    pub high_watermark: AtomicI64,
    /// Bumped by every seek.
    pub generation: AtomicU64,
    /// The newest seek not yet applied by the fetch loop: (generation, offset).
    pub seek: Mutex<Option<(u64, i64)>>,
    /// The notify of the fetch loop that owns the partition now.
    pub loop_wake: Mutex<Option<Arc<Notify>>>,
    pub metrics: crate::metrics::PartitionMetrics,
}

impl PartitionShared {
    pub(crate) fn new(tp: TopicPartition) -> Self {
        Self {
            metrics: crate::metrics::PartitionMetrics::new(&tp.topic, tp.partition),
            tp,
            paused: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            high_watermark: AtomicI64::new(-1),
            generation: AtomicU64::new(0),
            seek: Mutex::new(None),
            loop_wake: Mutex::new(None),
        }
    }

    pub(crate) fn wake_loop(&self) {
        let wake = self
            .loop_wake
            .lock()
            .expect("wake lock is never held across a panic")
            .clone();
        if let Some(wake) = wake {
            wake.notify_one();
        }
    }

    pub(crate) fn take_seek(&self) -> Option<(u64, i64)> {
        self.seek
            .lock()
            .expect("seek lock is never held across a panic")
            .take()
    }
}

/// Consumes one partition. Records arrive in offset order; errors name topic,
/// partition and offset. Dropping it (or [`close`](Self::close)) stops its fetching.
pub struct PartitionConsumer {
    shared: Arc<PartitionShared>,
    rx: queue::Receiver,
    /// Keeps the consumer (and its fetch loops) alive while this partition is read.
    consumer: Arc<ConsumerShared>,
    generation: u64,
    position: i64,
    /// The batch the [`Stream`] reads records from. Boxed: a claim holds its reader
    /// and a group member holds a claim per partition, inside the claim's task, in
    /// every future that moves it (8 bytes instead of about 300, per copy).
    current: Option<Box<(FetchedBatch, RecordCursor)>>,
}

impl std::fmt::Debug for PartitionConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionConsumer")
            .field("topic", &self.shared.tp.topic)
            .field("partition", &self.shared.tp.partition)
            .field("position", &self.position)
            .field("paused", &self.shared.paused.load(Ordering::Relaxed))
            .field(
                "high_watermark",
                &self.shared.high_watermark.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl PartitionConsumer {
    pub(crate) fn new(
        shared: Arc<PartitionShared>,
        rx: queue::Receiver,
        consumer: Arc<ConsumerShared>,
        position: i64,
    ) -> Self {
        Self {
            shared,
            rx,
            consumer,
            generation: 0,
            position,
            current: None,
        }
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.shared.tp.topic
    }

    /// The partition read.
    pub fn partition(&self) -> i32 {
        self.shared.tp.partition
    }

    /// The offset of the next record this consumer will hand out.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The partition's high watermark as of the latest fetch (-1 before the first).
    pub fn high_watermark(&self) -> i64 {
        self.shared.high_watermark.load(Ordering::Acquire)
    }

    /// Records between the position and the high watermark.
    pub fn lag(&self) -> i64 {
        (self.high_watermark() - self.position).max(0)
    }

    /// Stops fetching this partition; what was already fetched is still handed out.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::Release);
    }

    /// Fetches again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::Release);
        self.shared.wake_loop();
    }

    /// Whether [`pause`](Self::pause) stopped fetching.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Acquire)
    }

    /// Continues from `offset`: anything fetched before is dropped. Also the way on
    /// after an error that stopped the partition (a corrupt batch, an offset out of
    /// range with no reset policy).
    pub fn seek(&mut self, offset: i64) {
        let generation = self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *self
            .shared
            .seek
            .lock()
            .expect("seek lock is never held across a panic") = Some((generation, offset));
        self.generation = generation;
        self.position = offset;
        self.current = None;
        self.shared.wake_loop();
    }

    /// The next fetched batch (its records share the fetched buffer). `None` once
    /// closed.
    pub async fn next_batch(&mut self) -> Option<Result<FetchedBatch>> {
        std::future::poll_fn(|cx| self.poll_next_batch(cx)).await
    }

    fn poll_next_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<FetchedBatch>>> {
        loop {
            let item = match self.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => item,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            // A slot is free: let the loop fetch this partition again.
            self.shared.wake_loop();
            match item {
                Fetched::Batch { generation, batch } if generation == self.generation => {
                    // Not max(): an offset reset may move the position back.
                    self.position = batch.next_offset();
                    return Poll::Ready(Some(Ok(*batch)));
                }
                Fetched::Error { generation, error } if generation == self.generation => {
                    return Poll::Ready(Some(Err(error)));
                }
                // Fetched before the latest seek.
                _ => continue,
            }
        }
    }

    /// Stops fetching and releases what is queued.
    pub fn close(self) {}
}

impl Drop for PartitionConsumer {
    fn drop(&mut self) {
        self.consumer.release(&self.shared.tp);
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake_loop();
    }
}

impl Stream for PartitionConsumer {
    type Item = Result<ConsumerRecord>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(current) = &mut this.current {
                let (batch, cursor) = &mut **current;
                match cursor.next(batch) {
                    Some(Ok(record)) => {
                        return Poll::Ready(Some(Ok(ConsumerRecord::new(
                            batch.topic.clone(),
                            batch.partition,
                            record,
                        ))))
                    }
                    Some(Err(err)) => {
                        this.current = None;
                        return Poll::Ready(Some(Err(err)));
                    }
                    None => this.current = None,
                }
            }
            match this.poll_next_batch(cx) {
                Poll::Ready(Some(Ok(batch))) => {
                    this.current = Some(Box::new((batch, RecordCursor::default())))
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
