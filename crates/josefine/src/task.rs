//! Spawned tasks with an owner: an [`OwnedTask`] aborts its task when dropped, so a
//! task never outlives the value that started it (docs/DESIGN.md has the task table).

use std::any::Any;

use tokio::task::{JoinError, JoinHandle};

/// A spawned task, aborted when this handle is dropped.
#[derive(Debug)]
pub(crate) struct OwnedTask<T>(JoinHandle<T>);

impl<T: Send + 'static> OwnedTask<T> {
    pub(crate) fn spawn(task: impl std::future::Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }

    /// Waits for the task to end: its output, or why it did not finish.
    pub(crate) async fn join(mut self) -> Result<T, JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for OwnedTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a panic said, when it said it with a string (as `panic!` and `expect` do).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_owner_stops_the_task() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let task = OwnedTask::spawn(async move {
            let _tx = tx; // closes the channel when the task stops
            std::future::pending::<()>().await
        });
        drop(task);
        assert!(rx.recv().await.is_none(), "the task was aborted");
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        let literal = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(literal.as_ref()), "static");
        let formatted = std::panic::catch_unwind(|| panic!("{}", 42)).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "42");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(other.as_ref()), "a panic without a message");
    }
}
