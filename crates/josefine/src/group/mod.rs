//! Consumer groups (Sarama's `consumerGroup`): so far the pure building blocks, the
//! ConsumerProtocol carried in JoinGroup/SyncGroup ([`consumer_protocol`]) and the partition
//! assignors ([`assignor`]: range, roundrobin, sticky, cooperative-sticky; KIP-54,
//! KIP-429, KIP-341), and the membership state machine ([`membership`]: find, join,
//! sync, heartbeat, revoke, leave; sans-io), driven by [`driver`] against the
//! coordinator; [`ConsumerGroup`] runs sessions with claims and commits what the
//! handler marked ([`offsets`]).

pub(crate) mod assignor;
mod claims;
mod config;
mod consumer_group;
pub(crate) mod consumer_protocol;
mod driver;
mod errors;
mod handler;
mod kip848;
mod marks;
pub(crate) mod membership;
mod offsets;
mod process;
mod runner;
mod stream;
mod transact;

pub use assignor::AssignorKind;
pub use claims::{Claim, Revocation, RevokeReason, Session};
pub use config::{GroupProtocol, OnHandlerError};
pub use consumer_group::{ConsumerGroup, ConsumerGroupBuilder};
pub use errors::GroupErrors;
pub use handler::GroupHandler;
pub(crate) use marks::PendingCommit;
pub use offsets::OffsetAndMetadata;
pub(crate) use offsets::{
    at_coordinator, commit as commit_offsets, fetch_all_committed, fetch_committed,
    fetch_committed_as, Committer,
};
pub use process::{DoneSet, Failure, ProcessOptions, ProcessOrder, Processor};
pub use stream::{ClaimStream, GroupRecord, GroupStream};
