//! `queued.max.bytes`: the bytes fetched and not yet released by the user, across all
//! partitions of a consumer. Fetch loops stop fetching while the total is at the limit;
//! each handed-out batch carries a guard that gives its bytes back when dropped. A loop
//! may overshoot by one response, which `fetch.max.bytes` bounds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct QueuedBytes {
    used: AtomicUsize,
    limit: usize,
    released: Notify,
}

impl QueuedBytes {
    pub(super) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
            released: Notify::new(),
        })
    }

    pub(super) fn is_full(&self) -> bool {
        self.used.load(Ordering::Acquire) >= self.limit
    }

    /// Waits until the total drops below the limit.
    pub(super) async fn wait_for_room(&self) {
        loop {
            let released = self.released.notified();
            if !self.is_full() {
                return;
            }
            released.await;
        }
    }

    /// Counts `bytes` as queued until the guard is dropped.
    pub(super) fn hold(self: &Arc<Self>, bytes: usize) -> QueuedGuard {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        QueuedGuard {
            queue: self.clone(),
            bytes,
        }
    }

    pub(super) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes of one handed-out batch.
#[derive(Debug)]
pub(crate) struct QueuedGuard {
    queue: Arc<QueuedBytes>,
    bytes: usize,
}

impl Drop for QueuedGuard {
    fn drop(&mut self) {
        self.queue.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.queue.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guards_count_and_release() {
        let q = QueuedBytes::new(100);
        let a = q.hold(60);
        assert!(!q.is_full());
        let b = q.hold(60);
        assert!(q.is_full());
        assert_eq!(q.used(), 120);
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        waiter.await.unwrap();
        drop(b);
        assert_eq!(q.used(), 0);
    }
}
