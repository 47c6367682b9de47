//! The queue from a fetch loop to one partition's reader: a few items, one sender,
//! one receiver.
//!
//! A tokio channel allocates its first block of 32 slots and its cache-padded state
//! when it is made, whatever its bound: about 1.3 KB per partition, 13 MB for a
//! member with 10,000 partitions, most of them empty most of the time. This queue is
//! a mutex over a deque of at most `capacity` items: nothing allocated until the
//! first item, then room for a few. The lock is held for a push or a pop, never
//! across an `.await`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::partition::Fetched;

/// A queue of at most `capacity` items.
pub(crate) fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        capacity,
        state: Mutex::new(State::default()),
    });
    (Sender(shared.clone()), Receiver(shared))
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Fetched>,
    /// The receiver's, while it waits for an item.
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("partition queue lock is never held across a panic")
    }
}

/// The fetch loop's end.
#[derive(Debug)]
pub(crate) struct Sender(Arc<Shared>);

impl Sender {
    /// Queues `item`, or hands it back when the queue is full or the receiver gone.
    pub(crate) fn try_send(&self, item: Fetched) -> Result<(), Fetched> {
        let mut state = self.0.state();
        if state.receiver_gone || state.items.len() >= self.0.capacity {
            return Err(item);
        }
        state.items.push_back(item);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Free slots: how many items [`try_send`](Self::try_send) would take now.
    pub(crate) fn capacity(&self) -> usize {
        let state = self.0.state();
        self.0.capacity.saturating_sub(state.items.len())
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.state().receiver_gone
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.sender_gone = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The reader's end.
#[derive(Debug)]
pub(crate) struct Receiver(Arc<Shared>);

impl Receiver {
    /// The next item; `None` once the queue is empty and the sender gone.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Fetched>> {
        let mut state = self.0.state();
        if let Some(item) = state.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued.
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Result<Fetched, Empty> {
        self.0.state().items.pop_front().ok_or(Empty)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.receiver_gone = true;
        state.waker = None;
        // What is queued holds `queued.max.bytes`: released now, not when the fetch
        // loop lets go of its end.
        let items = std::mem::take(&mut state.items);
        drop(state);
        drop(items);
    }
}

/// Nothing queued.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Empty;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    fn item(generation: u64) -> Fetched {
        Fetched::Error {
            generation,
            error: Error::protocol("item"),
        }
    }

    fn generation(item: Fetched) -> u64 {
        match item {
            Fetched::Error { generation, .. } | Fetched::Batch { generation, .. } => generation,
        }
    }

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn holds_up_to_its_capacity_in_order() {
        let (tx, mut rx) = channel(2);
        assert_eq!(tx.capacity(), 2);
        tx.try_send(item(1)).unwrap();
        tx.try_send(item(2)).unwrap();
        assert_eq!(tx.capacity(), 0);
        assert_eq!(generation(tx.try_send(item(3)).unwrap_err()), 3);
        assert_eq!(generation(rx.try_recv().unwrap()), 1);
        assert_eq!(tx.capacity(), 1);
        tx.try_send(item(3)).unwrap();
        assert_eq!(generation(rx.try_recv().unwrap()), 2);
        assert_eq!(generation(rx.try_recv().unwrap()), 3);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_an_item_and_reads_what_came_before_the_end() {
        let (tx, mut rx) = channel(2);
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.try_send(item(1)).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(Some(_))));
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.try_send(item(2)).unwrap();
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2, "woken by the item");
        // What was queued before the sender left is still read, then the end.
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(Some(_))));
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn the_sender_leaving_wakes_a_waiting_receiver() {
        let (tx, mut rx) = channel(2);
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        assert!(rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            rx.poll_recv(&mut Context::from_waker(&waker)),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn the_receiver_leaving_closes_the_queue_and_drops_what_it_held() {
        let (tx, rx) = channel(2);
        tx.try_send(item(1)).unwrap();
        assert!(!tx.is_closed());
        let held = Arc::downgrade(&rx.0);
        drop(rx);
        assert!(tx.is_closed());
        assert!(tx.try_send(item(2)).is_err());
        assert!(held.upgrade().unwrap().state().items.is_empty());
    }
}
