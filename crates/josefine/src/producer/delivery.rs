//! Delivery reports: one shared outcome per batch, one small future per record.
//!
//! A batch's records share one [`Outcome`], allocated when the batch opens and resolved
//! once, by the sender, when the batch is delivered or fails: a record's [`Delivery`]
//! is that outcome and the record's index in the batch, so a record costs no allocation
//! and no channel of its own, and resolving a batch is one store and one wake-up per
//! waiting task, whatever its record count (the Java client's `ProduceRequestResult`
//! works the same way). A batch the broker finds too large is split: its outcome then
//! points the records at the two halves' outcomes ([`Resolution::Moved`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, ErrorKind, Result};

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryReport {
    /// The record's topic.
    pub topic: Arc<str>,
    /// The partition it was written to.
    pub partition: i32,
    /// -1 with `acks=0`, where the broker does not say.
    pub offset: i64,
    /// The record's timestamp, or the broker's append time for topics with
    /// `message.timestamp.type=LogAppendTime`.
    pub timestamp: i64,
}

/// How a batch ended.
#[derive(Debug)]
pub(crate) enum Resolution {
    /// Written at `base_offset` (-1 with `acks=0`); `append_time` is the broker's
    /// time for `LogAppendTime` topics, else -1.
    Written {
        base_offset: i64,
        append_time: i64,
    },
    Failed(Error),
    /// Split in two: records from index `start` on belong to that outcome, at index
    /// minus `start` (the list is sorted by `start`; the first is 0).
    Moved(Vec<(u32, Arc<Outcome>)>),
}

/// The outcome every record of one batch waits on.
pub(crate) struct Outcome {
    topic: Arc<str>,
    partition: i32,
    resolution: OnceLock<Resolution>,
    /// Tasks waiting before the resolution, one slot per waiting [`Delivery`].
    waiting: Mutex<Vec<Option<Waker>>>,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("resolution", &self.resolution.get())
            .finish_non_exhaustive()
    }
}

impl Outcome {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Waker>>> {
        self.waiting
            .lock()
            .expect("delivery waker lock is never held across a panic")
    }
}

/// The sender's side of a batch's [`Outcome`]: resolves it once. Dropped unresolved
/// (the producer stopped with the batch still buffered), it fails the batch's records
/// with `Closed`, so no delivery waits forever.
#[derive(Debug)]
pub(crate) struct Resolver(Arc<Outcome>);

impl Resolver {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Self {
        Self(Arc::new(Outcome {
            topic,
            partition,
            resolution: OnceLock::new(),
            waiting: Mutex::new(Vec::new()),
        }))
    }

    /// The future of the record at `index` in this batch.
    pub(crate) fn delivery(&self, index: u32, timestamp: i64) -> Delivery {
        Delivery {
            outcome: self.0.clone(),
            index,
            slot: NO_SLOT,
            timestamp,
        }
    }

    /// The outcome, for a split batch's [`Resolution::Moved`].
    pub(crate) fn outcome(&self) -> &Arc<Outcome> {
        &self.0
    }

    /// Resolves the batch (only the first resolution counts) and wakes its waiters.
    pub(crate) fn resolve(&self, resolution: Resolution) {
        if self.0.resolution.set(resolution).is_err() {
            return;
        }
        // Taken under the lock a waiter registers under, after the store: a waiter
        // either saw the resolution or is in this list.
        let waiting = std::mem::take(&mut *self.0.lock());
        for waker in waiting.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.resolve(Resolution::Failed(Error::new(
            ErrorKind::Closed,
            "the producer stopped before delivering",
        )));
    }
}

/// The future delivery report of one record; see [`Producer::enqueue`](crate::Producer::enqueue).
#[must_use = "a Delivery does nothing unless awaited; dropping it does not cancel the send"]
pub struct Delivery {
    outcome: Arc<Outcome>,
    /// The record's index in the outcome's batch.
    index: u32,
    /// Where this future's waker sits in the outcome's list, once registered, else
    /// [`NO_SLOT`]. (A `u32`, not an `Option<usize>`: a caller may hold a `Delivery` for
    /// each of hundreds of thousands of buffered records, and this keeps one at 24
    /// bytes, not 40.)
    slot: u32,
    /// The record's own timestamp.
    timestamp: i64,
}

/// [`Delivery::slot`] before the future registered a waker.
const NO_SLOT: u32 = u32::MAX;

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.outcome.topic)
            .field("partition", &self.outcome.partition)
            .finish_non_exhaustive()
    }
}

impl Future for Delivery {
    type Output = Result<DeliveryReport>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match this.outcome.resolution.get() {
                Some(Resolution::Written {
                    base_offset,
                    append_time,
                }) => {
                    return Poll::Ready(Ok(DeliveryReport {
                        topic: this.outcome.topic.clone(),
                        partition: this.outcome.partition,
                        offset: if *base_offset < 0 {
                            -1
                        } else {
                            base_offset + i64::from(this.index)
                        },
                        timestamp: if *append_time >= 0 {
                            *append_time
                        } else {
                            this.timestamp
                        },
                    }))
                }
                Some(Resolution::Failed(err)) => return Poll::Ready(Err(err.clone())),
                Some(Resolution::Moved(parts)) => {
                    let (start, next) = parts
                        .iter()
                        .rev()
                        .find(|(start, _)| *start <= this.index)
                        .expect("a split's first part starts at index 0");
                    this.index -= start;
                    this.outcome = next.clone();
                    this.slot = NO_SLOT;
                }
                None => {
                    let mut waiting = this.outcome.lock();
                    if this.outcome.resolution.get().is_some() {
                        continue;
                    }
                    match waiting.get_mut(this.slot as usize) {
                        Some(Some(waker)) if waker.will_wake(cx.waker()) => {}
                        Some(entry) => *entry = Some(cx.waker().clone()),
                        None => {
                            this.slot = u32::try_from(waiting.len())
                                .ok()
                                .filter(|&slot| slot != NO_SLOT)
                                .expect("a batch holds fewer than u32::MAX records");
                            waiting.push(Some(cx.waker().clone()));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // A dropped waiter's waker would only be woken for nothing; free it.
        if self.slot != NO_SLOT && self.outcome.resolution.get().is_none() {
            if let Some(entry) = self.outcome.lock().get_mut(self.slot as usize) {
                *entry = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(d: &mut Delivery, waker: &Waker) -> Poll<Result<DeliveryReport>> {
        Pin::new(d).poll(&mut Context::from_waker(waker))
    }

    fn resolver() -> Resolver {
        Resolver::new(Arc::from("t"), 3)
    }

    #[test]
    fn every_record_of_a_written_batch_gets_its_own_offset_and_timestamp() {
        let c = resolver();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut first = c.delivery(0, 100);
        let mut second = c.delivery(1, 200);
        assert!(poll(&mut first, &waker).is_pending());
        assert!(poll(&mut second, &waker).is_pending());
        c.resolve(Resolution::Written {
            base_offset: 40,
            append_time: -1,
        });
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "both waiters woken");
        let Poll::Ready(Ok(report)) = poll(&mut second, &waker) else {
            panic!("resolved")
        };
        assert_eq!(
            (report.partition, report.offset, report.timestamp),
            (3, 41, 200)
        );
        let Poll::Ready(Ok(report)) = poll(&mut first, &waker) else {
            panic!("resolved")
        };
        assert_eq!((report.offset, report.timestamp), (40, 100));
    }

    #[test]
    fn append_time_and_acks_0_shape_the_report() {
        let c = resolver();
        let mut d = c.delivery(5, 100);
        c.resolve(Resolution::Written {
            base_offset: -1,
            append_time: 777,
        });
        let waker = Waker::noop();
        let Poll::Ready(Ok(report)) = poll(&mut d, waker) else {
            panic!("resolved")
        };
        assert_eq!((report.offset, report.timestamp), (-1, 777));
    }

    #[test]
    fn a_repolled_delivery_keeps_one_slot() {
        let c = resolver();
        let mut d = c.delivery(0, 0);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        for _ in 0..3 {
            assert!(poll(&mut d, &waker).is_pending());
        }
        assert_eq!(c.outcome().lock().len(), 1);
        c.resolve(Resolution::Failed(Error::new(ErrorKind::Timeout, "gone")));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(
            matches!(poll(&mut d, &waker), Poll::Ready(Err(e)) if *e.kind() == ErrorKind::Timeout)
        );
    }

    #[test]
    fn a_split_batch_sends_each_record_to_its_half() {
        let whole = resolver();
        let mut early = whole.delivery(1, 0);
        let mut late = whole.delivery(3, 0);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(poll(&mut late, &waker).is_pending());
        let (a, b) = (resolver(), resolver());
        // A record already waiting on the half takes its first slot: the moved
        // future must take a slot of its own there, not keep the one it had.
        let mut other = b.delivery(0, 0);
        let other_count = Arc::new(Count(AtomicUsize::new(0)));
        assert!(poll(&mut other, &Waker::from(other_count.clone())).is_pending());
        whole.resolve(Resolution::Moved(vec![
            (0, a.outcome().clone()),
            (2, b.outcome().clone()),
        ]));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "woken to follow the move"
        );
        assert!(
            poll(&mut late, &waker).is_pending(),
            "now waits on its half"
        );
        b.resolve(Resolution::Written {
            base_offset: 10,
            append_time: -1,
        });
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(
            other_count.0.load(Ordering::SeqCst),
            1,
            "both waiters woken"
        );
        assert!(matches!(poll(&mut late, &waker), Poll::Ready(Ok(r)) if r.offset == 11));
        a.resolve(Resolution::Written {
            base_offset: 20,
            append_time: -1,
        });
        assert!(matches!(poll(&mut early, &waker), Poll::Ready(Ok(r)) if r.offset == 21));
    }

    #[test]
    fn a_batch_dropped_unresolved_fails_its_records_as_closed() {
        let c = resolver();
        let mut d = c.delivery(0, 0);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(poll(&mut d, &waker).is_pending());
        drop(c);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(
            matches!(poll(&mut d, &waker), Poll::Ready(Err(e)) if *e.kind() == ErrorKind::Closed)
        );
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_delivery_is_three_words() {
        // Callers hold one per buffered record (the benchmark, 200,000).
        assert_eq!(std::mem::size_of::<Delivery>(), 24);
    }

    #[test]
    fn a_dropped_waiter_frees_its_waker() {
        let c = resolver();
        let mut d = c.delivery(0, 0);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(poll(&mut d, &waker).is_pending());
        drop(d);
        c.resolve(Resolution::Written {
            base_offset: 0,
            append_time: -1,
        });
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }
}
