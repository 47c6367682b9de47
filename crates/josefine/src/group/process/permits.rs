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
    pub(super) fn new(permits: usize) -> Self {
        Self {
            available: AtomicUsize::new(permits),
            waiting: AtomicUsize::new(0),
            released: Notify::new(),
        }
    }

    /// A permit if one is free now.
    pub(super) fn try_take(&self) -> bool {
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
    pub(super) async fn take(&self) {
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
    pub(super) fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.available.fetch_add(n, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.released.notify_waiters();
        }
    }

    pub(super) fn available(&self) -> usize {
        self.available.load(Ordering::Acquire)
    }

    /// Whether a claim waits in [`take`](Self::take).
    pub(super) fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Up to `n` permits if any are free now (at least one), else 0.
    pub(super) fn try_take_up_to(&self, n: usize) -> usize {
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

/// A claim's permits: how many it holds from the member's pool (running records and
/// idle ones), so that a claim starting and finishing many records touches the
/// shared count once per batch of them, not twice per record. Idle ones go back
/// before the claim waits, at once when another claim waits for one, and all of
/// them when the claim ends (whatever still runs is dropped with it).
#[derive(Debug, Default)]
pub(crate) struct LocalPermits {
    /// Held, not in use.
    idle: usize,
    /// Held in all: idle plus in use.
    held: usize,
}

impl LocalPermits {
    /// A permit: an idle one, or up to `chunk` from `permits`.
    pub(super) fn try_take(&mut self, permits: &Permits, chunk: usize) -> bool {
        if self.idle == 0 {
            let taken = permits.try_take_up_to(chunk);
            self.idle += taken;
            self.held += taken;
        }
        if self.idle == 0 {
            return false;
        }
        self.idle -= 1;
        true
    }

    /// A permit taken from `permits` directly ([`Permits::take`]), now in use.
    pub(super) fn taken(&mut self) {
        self.held += 1;
    }

    /// A record finished: its permit is idle, or the member's at once when another
    /// claim waits for one.
    pub(super) fn put(&mut self, permits: &Permits) {
        if permits.has_waiters() {
            self.held -= 1;
            permits.give(1);
        } else {
            self.idle += 1;
        }
    }

    /// Idle permits back to the member.
    pub(super) fn release_idle(&mut self, permits: &Permits) {
        self.held -= self.idle;
        permits.give(std::mem::take(&mut self.idle));
    }

    /// Every permit back: the claim ended.
    pub(super) fn release_all(&mut self, permits: &Permits) {
        self.idle = 0;
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
        local.put(&p);
        assert!(local.try_take(&p, 4) && local.try_take(&p, 4));
        assert_eq!(p.available(), 6);
        local.release_idle(&p);
        assert_eq!(p.available(), 8, "two in use");
        let mut greedy = LocalPermits::default();
        for _ in 0..8 {
            assert!(greedy.try_take(&p, 100));
        }
        assert!(!greedy.try_take(&p, 100));
        greedy.release_all(&p);
        local.release_all(&p);
        assert_eq!(
            p.available(),
            10,
            "a claim that ends gives back what it runs"
        );
    }

    #[tokio::test]
    async fn a_finished_record_s_permit_goes_to_a_waiting_claim() {
        let p = Arc::new(Permits::new(1));
        let mut busy = LocalPermits::default();
        assert!(busy.try_take(&p, 1));
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.take().await }
        });
        while !p.has_waiters() {
            tokio::task::yield_now().await;
        }
        busy.put(&p);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("the waiting claim got the permit")
            .unwrap();
        assert!(!busy.try_take(&p, 1), "the busy claim did not keep it");
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
