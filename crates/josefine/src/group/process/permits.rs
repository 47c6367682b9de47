//! `max_in_flight` for a whole member: a counting semaphore whose permits are plain
//! counts, taken and given back by the claims' loops (no guard object per record,
//! and no lock on the way back unless a claim is waiting).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Permits {
    available: AtomicUsize,
    /// Claims waiting in [`take`](Self::take).
    waiting: AtomicUsize,
    released: Notify,
}

impl Permits {
    pub fn new(permits: usize) -> Self {
        Self {
            available: AtomicUsize::new(permits),
            waiting: AtomicUsize::new(0),
            released: Notify::new(),
        }
    }

    /// A permit if one is free now.
    pub fn try_take(&self) -> bool {
        let mut available = self.available.load(Ordering::Acquire);
        while available > 0 {
            match self.available.compare_exchange_weak(
                available,
                available - 1,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => available = now,
            }
        }
        false
    }

    /// A permit, once one is free. Cancel-safe: a dropped call takes nothing.
    pub async fn take(&self) {
        loop {
            if self.try_take() {
                return;
            }
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            // Either `give` sees this count and wakes us, or this check sees its
            // permit (both sides SeqCst).
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.waiting);
            if self.try_take() {
                return;
            }
            released.await;
        }
    }

    /// Gives `n` permits back.
    pub fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.available.fetch_add(n, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.released.notify_waiters();
        }
    }

    pub fn available(&self) -> usize {
        self.available.load(Ordering::Acquire)
    }

    /// Up to `n` permits if any are free now (at least one), else 0.
    pub fn try_take_up_to(&self, n: usize) -> usize {
        let mut available = self.available.load(Ordering::Acquire);
        while available > 0 {
            let take = available.min(n.max(1));
            match self.available.compare_exchange_weak(
                available,
                available - take,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => return take,
                Err(now) => available = now,
            }
        }
        0
    }
}

/// A claim's permits taken from the member's but not in use yet, so that a claim
/// starting and finishing many records touches the shared count once per batch of
/// them, not twice per record. Given back before the claim waits.
#[derive(Debug, Default)]
pub(crate) struct LocalPermits {
    held: usize,
}

impl LocalPermits {
    /// A permit: a held one, or up to `chunk` from `permits`.
    pub fn try_take(&mut self, permits: &Permits, chunk: usize) -> bool {
        if self.held == 0 {
            self.held = permits.try_take_up_to(chunk);
        }
        if self.held == 0 {
            return false;
        }
        self.held -= 1;
        true
    }

    /// A permit back, held for the claim's next record.
    pub fn put(&mut self) {
        self.held += 1;
    }

    /// Every held permit back to the member.
    pub fn release(&mut self, permits: &Permits) {
        permits.give(std::mem::take(&mut self.held));
    }
}

/// Counts a waiter while alive.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn permits_are_counted() {
        let p = Permits::new(2);
        assert!(p.try_take() && p.try_take());
        assert!(!p.try_take());
        p.give(1);
        assert_eq!(p.available(), 1);
        assert!(p.try_take());
    }

    #[test]
    fn a_claim_takes_permits_in_chunks_and_gives_them_all_back() {
        let p = Permits::new(10);
        let mut local = LocalPermits::default();
        assert!(local.try_take(&p, 4));
        assert_eq!(p.available(), 6, "a chunk of 4 taken, one in use");
        local.put();
        assert!(local.try_take(&p, 4) && local.try_take(&p, 4));
        assert_eq!(p.available(), 6);
        local.release(&p);
        assert_eq!(p.available(), 8, "two in use");
        let mut greedy = LocalPermits::default();
        for _ in 0..8 {
            assert!(greedy.try_take(&p, 100));
        }
        assert!(!greedy.try_take(&p, 100));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_wakes_when_a_permit_comes_back() {
        let p = Arc::new(Permits::new(0));
        for _ in 0..200 {
            let waiter = tokio::spawn({
                let p = p.clone();
                async move { p.take().await }
            });
            tokio::task::yield_now().await;
            p.give(1);
            tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
                .await
                .expect("the waiter got the permit")
                .unwrap();
            assert_eq!(p.available(), 0);
        }
        assert_eq!(p.waiting.load(Ordering::SeqCst), 0);
    }
}
