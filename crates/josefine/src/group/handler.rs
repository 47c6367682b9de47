//! [`GroupHandler`]: what the application runs on a session's claims. The runner
//! below the facade calls it, and the handlers the group builds for itself
//! (`stream`'s, `process`'s, `transact`'s) implement it, so it lives apart from
//! [`ConsumerGroup`](super::ConsumerGroup).

use std::future::Future;

use super::claims::{Claim, Session};
use crate::error::Result;

/// What the application does with a session's claims (Sarama's
/// `ConsumerGroupHandler`). `consume_claim` runs once per claimed partition, each on
/// its own task (so claims run in parallel on a multi-thread runtime); it should
/// return when the claim's records end. What happens when it fails is the builder's
/// [`on_handler_error`](super::ConsumerGroupBuilder::on_handler_error).
///
/// ```no_run
/// use josefine::{Claim, ConsumerGroup, GroupHandler, Session};
///
/// struct Printer;
///
/// impl GroupHandler for Printer {
///     async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
///         // Ends when the partition is revoked or the group closes.
///         while let Some(record) = claim.next().await {
///             let record = record?;
///             println!("{}/{} offset {}", record.topic(), record.partition(), record.offset());
///             session.mark(&record);
///         }
///         Ok(())
///     }
/// }
///
/// # async fn demo(group: ConsumerGroup) -> josefine::Result<()> {
/// // Runs until `group.close()` or a fatal error.
/// group.consume(&["orders"], Printer).await
/// # }
/// ```
pub trait GroupHandler: Send + Sync {
    /// Before any claim is consumed.
    fn setup(&self, _session: &Session) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Processes one claimed partition until its records end (then it has until
    /// [`Claim::revoked`]'s deadline to finish what it holds and mark it).
    fn consume_claim(
        &self,
        session: &Session,
        claim: Claim,
    ) -> impl Future<Output = Result<()>> + Send;

    /// After every claim returned and the final commit, before the member rejoins.
    fn cleanup(&self, _session: &Session) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}
