//! Consumer groups (Sarama's `consumerGroup`): so far the pure building blocks, the
//! ConsumerProtocol carried in JoinGroup/SyncGroup ([`protocol`]) and the partition
//! assignors ([`assignor`]: range, roundrobin, sticky, cooperative-sticky; KIP-54,
//! KIP-429, KIP-341), and the membership state machine ([`membership`]: find, join,
//! sync, heartbeat, revoke, leave; sans-io). The driver, sessions with claims and the
//! offset manager come next.

pub mod assignor;
pub mod membership;
pub mod protocol;
