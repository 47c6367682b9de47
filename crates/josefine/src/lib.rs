//! Josefine: a Kafka client for Rust built around consumer groups.
//!
//! Everything is at the crate root: a [`Client`] (built with [`Client::builder`] or
//! from a properties file with [`Config`]) shares connections and the cluster view
//! with what hangs off it: a [`Producer`], a [`Consumer`] of single partitions, a
//! [`ConsumerGroup`] (a [`GroupHandler`] per claim, a [`GroupStream`], parallel
//! processing with [`ConsumerGroup::process`], exactly-once with
//! [`ConsumerGroup::transact`]) and the [`Admin`] API. Errors are one [`Error`] with an
//! [`ErrorKind`]. The names recorded through the `metrics` facade are in [`metrics`].
//! How it is built inside is in `docs/DESIGN.md`.
//!
//! ```no_run
//! # async fn demo() -> josefine::Result<()> {
//! use josefine::{Client, NewTopic};
//! let client = Client::builder().bootstrap(["localhost:9092"]).connect().await?;
//! client.admin().create_topic(NewTopic::new("orders", 6)).await?;
//! for topic in client.admin().list_topics().await? {
//!     println!("{} ({} partitions)", topic.name, topic.partitions);
//! }
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! All on by default; `default-features = false` leaves them out to build less:
//!
//! - `zstd`: zstd record batches, read and written (builds the zstd C library).
//! - `tls`: TLS to brokers (`security.protocol=SSL`, `SASL_SSL`) with rustls.
//! - `sasl`: SASL SCRAM-SHA-256/512. PLAIN and OAUTHBEARER need no extra crate and are
//!   always there.
//!
//! Without a feature its settings still compile (`TlsConfig`, `SaslConfig::ScramSha256`,
//! `Compression::Zstd`), so one program builds either way; using one fails with an
//! [`ErrorKind::Config`] error that names the feature to enable, and a consumer that
//! fetches a zstd batch without `zstd` stops at that batch with such an error.
//!
//! Off by default, and outside semver:
//!
//! - `unstable-protocol`: the `protocol` module, the layer under the client (the
//!   record-batch codec, request framing, raw broker handles that send any request of
//!   the `kafka-protocol` crate). Any release may change it.

// What is `pub` in a private module is the API only through a root re-export; the rest
// says pub(crate). Linted with the unstable protocol layer on, where its items are
// public (every build with dev-dependencies, so clippy --all-targets).
#![cfg_attr(feature = "unstable-protocol", warn(unreachable_pub))]
#![warn(missing_docs)]

mod admin;
mod backoff;
mod client;
mod config;
mod consumer;
mod error;
mod fast_hash;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod group;
pub mod metrics;
mod net;
mod producer;
#[cfg(feature = "unstable-protocol")]
pub mod protocol;
// Without the feature, what the library does not use itself (parts of the codec's
// reading API, the frame helpers) is there for the feature's users: not dead code.
#[cfg(not(feature = "unstable-protocol"))]
#[allow(dead_code, unused_imports)]
mod protocol;
mod task;
mod topic_partition;

pub use admin::{
    AclBinding, AclFilter, AclOperation, AclPermission, Admin, ClusterDescription, ConfigChange,
    ConfigEntry, ConfigSource, GroupDescription, GroupLag, GroupListing, GroupState,
    MemberDescription, NewTopic, PartitionLag, PartitionOwner, PatternType, PlannedOffset, ResetTo,
    ResourceType, TopicListing,
};
pub use client::{
    BrokerInfo, Client, ClientBuilder, ClusterMetadata, PartitionMetadata, TopicMetadata,
};
pub use config::Config;
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerRecord, FetchedBatch, FetchedRecords, IsolationLevel,
    OffsetReset, PartitionConsumer, StartOffset,
};
pub use error::{Error, ErrorContext, ErrorKind, KafkaCode, Result};
pub use group::{
    AssignorKind, Claim, ClaimStream, ConsumerGroup, ConsumerGroupBuilder, DoneSet, Failure,
    GroupErrors, GroupHandler, GroupProtocol, GroupRecord, GroupStream, OffsetAndMetadata,
    OnHandlerError, ProcessOptions, ProcessOrder, Processor, Revocation, RevokeReason, Session,
};
pub use net::sasl::{Credentials, OAuthToken, OAuthTokenProvider, SaslConfig};
pub use net::tls::TlsConfig;
pub use producer::{
    Acks, DefaultPartitioner, Delivery, DeliveryReport, GroupMetadata, Partitioner, Producer,
    ProducerBuilder, ProducerRecord,
};
pub use protocol::records::{Compression, Header, Record};
pub use topic_partition::TopicPartition;
