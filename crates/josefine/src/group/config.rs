//! The group's settings: [`GroupConfig`] (validated by the builder) and the choices
//! it names ([`GroupProtocol`], [`OnHandlerError`]). The facade builds it; the driver,
//! the runner and the handlers below read it, so it imports nothing from them.

use std::sync::Arc;
use std::time::Duration;

use super::assignor::{Assignor, AssignorKind, RebalanceProtocol};
use crate::backoff::Backoff;
use crate::consumer::OffsetReset;

/// Validated group settings.
#[derive(Debug, Clone)]
pub(crate) struct GroupConfig {
    pub group_id: String,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub rebalance_timeout: Duration,
    pub instance_id: Option<String>,
    pub assignors: Vec<AssignorKind>,
    pub auto_offset_reset: OffsetReset,
    pub auto_commit: bool,
    pub auto_commit_interval: Duration,
    pub partition_check_interval: Duration,
    pub retry_backoff: Backoff,
    /// How long a revoked claim's handler may finish what it holds; `None`: from
    /// the rebalance timeout (see [`GroupConfig::drain_timeout`]).
    pub drain_timeout: Option<Duration>,
    /// How long `close` waits for the group to be left; `None`: the rebalance timeout.
    pub close_timeout: Option<Duration>,
    pub on_handler_error: OnHandlerError,
    pub protocol: GroupProtocol,
    /// `group.remote.assignor` (consumer protocol only).
    pub remote_assignor: Option<String>,
}

/// `group.protocol`: who assigns partitions and how a rebalance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup with a client-side assignor (eager or cooperative); every
    /// Kafka broker since 0.9 and Kafka-compatible brokers speak it. The default.
    #[default]
    Classic,
    /// KIP-848 (Kafka 4.0+): the broker assigns and members reconcile
    /// incrementally with ConsumerGroupHeartbeat; a rebalance stops only the
    /// partitions that move and waits for no group-wide barrier. The session timeout,
    /// heartbeat interval and assignor are the broker's (`group.consumer.*`);
    /// `session.timeout.ms` only bounds how long this member keeps its partitions
    /// without an answer from the coordinator.
    Consumer,
}

/// What happens when `consume_claim` returns an error or panics while its claim is
/// still live. The error goes to [`ConsumerGroup::errors`](super::ConsumerGroup::errors) in every case (or is what
/// `consume` returns, for `Stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnHandlerError {
    /// Run the claim again, from the offset after its last mark, after a backoff
    /// (`retry.backoff.ms`, growing with consecutive failures). The default.
    #[default]
    RestartClaim,
    /// Leave the claim idle and rejoin the group: the partition is read again from
    /// its committed offset by whichever member the rebalance gives it to.
    Rejoin,
    /// Commit what was marked, leave the group, and end `consume` with the error.
    Stop,
}

impl GroupConfig {
    /// Half the rebalance timeout unless set: the other half is for the commit and the
    /// rejoin.
    pub(super) fn drain_timeout(&self) -> Duration {
        self.drain_timeout.unwrap_or(self.rebalance_timeout / 2)
    }

    pub(super) fn close_timeout(&self) -> Duration {
        self.close_timeout.unwrap_or(self.rebalance_timeout)
    }

    /// Cooperative (KIP-429) only if every configured assignor supports it, as the
    /// Java client decides.
    pub(super) fn cooperative(&self) -> bool {
        let assignors: Vec<Arc<dyn Assignor>> =
            self.assignors.iter().map(|k| k.assignor()).collect();
        RebalanceProtocol::common(assignors.iter().map(|a| a.as_ref()))
            == RebalanceProtocol::Cooperative
    }
}
