//! Consumer groups (Sarama's `consumerGroup`): so far the pure building blocks, the
//! ConsumerProtocol carried in JoinGroup/SyncGroup ([`protocol`]) and the partition
//! assignors ([`assignor`]: range, roundrobin, sticky, cooperative-sticky; KIP-54,
//! KIP-429, KIP-341), and the membership state machine ([`membership`]: find, join,
//! sync, heartbeat, revoke, leave; sans-io), driven by [`driver`] against the
//! coordinator; [`ConsumerGroup`] runs sessions with claims and commits what the
//! handler marked ([`offsets`]).

pub mod assignor;
mod consumer_group;
mod driver;
mod errors;
mod kip848;
mod marks;
pub mod membership;
mod offsets;
mod process;
pub mod protocol;
mod runner;
mod session;
mod stream;
mod transact;

pub use assignor::AssignorKind;
pub use consumer_group::{
    ConsumerGroup, ConsumerGroupBuilder, GroupHandler, GroupProtocol, OnHandlerError,
};
pub use errors::GroupErrors;
pub(crate) use marks::PendingCommit;
pub use offsets::OffsetAndMetadata;
pub(crate) use offsets::{
    at_coordinator, commit as commit_offsets, fetch_all_committed, fetch_committed,
    fetch_committed_as, Committer,
};
pub use process::{DoneSet, Failure, ProcessOptions, ProcessOrder, Processor, MARK_INTERVAL};
pub use session::{Claim, Revocation, RevokeReason, Session};
pub use stream::{ClaimStream, GroupRecord, GroupStream};
