//! Non-fatal group errors for the user (Sarama's `Errors()` channel): a failed commit,
//! a handler that returned an error, a claim that could not be opened, a stalled
//! handler. Fatal errors end `consume` instead.
//!
//! A broadcast channel of bounded size: the group never waits for a slow reader, and
//! a reader that falls behind is told how many errors it missed. Every error is also
//! logged, so nothing is lost when nobody listens.

use tokio::sync::broadcast;

use crate::error::Error;

/// How many errors a lagging reader can fall behind before it misses some.
const CAPACITY: usize = 256;

/// Where the group reports non-fatal errors. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ErrorSink {
    sender: broadcast::Sender<Error>,
}

impl Default for ErrorSink {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl ErrorSink {
    /// Logs `err` with `what` happened and hands it to every [`GroupErrors`] reader.
    pub(super) fn report(&self, what: &str, err: Error) {
        tracing::warn!(error = %err, "{what}");
        // No reader is fine: the log has it.
        let _ = self.sender.send(err);
    }

    pub(super) fn subscribe(&self) -> GroupErrors {
        GroupErrors {
            receiver: self.sender.subscribe(),
        }
    }
}

/// A reader of a consumer group's non-fatal errors, from
/// [`ConsumerGroup::errors`](super::ConsumerGroup::errors). Errors reported before it was
/// created are not seen.
#[derive(Debug)]
pub struct GroupErrors {
    receiver: broadcast::Receiver<Error>,
}

impl GroupErrors {
    /// The next error; `None` once the group is dropped. A reader that fell more than
    /// 256 errors behind skips the oldest (they were logged).
    pub async fn recv(&mut self) -> Option<Error> {
        loop {
            match self.receiver.recv().await {
                Ok(err) => return Some(err),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "group error reader fell behind; oldest errors skipped"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next error if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Error> {
        loop {
            match self.receiver.try_recv() {
                Ok(err) => return Some(err),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KafkaCode;

    #[tokio::test]
    async fn readers_see_errors_reported_after_they_subscribed() {
        let sink = ErrorSink::default();
        sink.report("before", Error::kafka(KafkaCode::NOT_COORDINATOR));
        let mut reader = sink.subscribe();
        assert!(reader.try_recv().is_none());
        sink.report("after", Error::kafka(KafkaCode::REBALANCE_IN_PROGRESS));
        let err = reader.recv().await.unwrap();
        assert_eq!(err.code(), Some(KafkaCode::REBALANCE_IN_PROGRESS));
    }

    #[tokio::test]
    async fn a_lagging_reader_skips_the_oldest_and_never_blocks_the_group() {
        let sink = ErrorSink::default();
        let mut reader = sink.subscribe();
        for _ in 0..CAPACITY + 10 {
            sink.report("x", Error::kafka(KafkaCode::NOT_COORDINATOR));
        }
        let mut seen = 0;
        while reader.try_recv().is_some() {
            seen += 1;
        }
        assert_eq!(seen, CAPACITY);
        drop(sink);
        assert!(reader.recv().await.is_none());
    }
}
