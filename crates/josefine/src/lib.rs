//! Josefine: a Kafka client for Rust built around consumer groups.
//!
//! The crate is layered like Sarama's consume flow (see `docs/DESIGN.md`):
//! [`protocol`] (wire format over the `kafka-protocol` crate plus our own record-batch
//! codec), [`net`] (one task per socket, brokers with lazy reconnecting connections),
//! [`client`] (metadata and coordinator caches), and [`admin`].
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

pub mod admin;
pub mod backoff;
pub mod client;
pub mod config;
pub mod consumer;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod metrics;
pub mod net;
pub mod producer;
pub mod protocol;
mod task;
mod topic_partition;

pub use admin::{
    AclBinding, AclFilter, AclOperation, AclPermission, Admin, ClusterDescription, ConfigChange,
    ConfigEntry, ConfigSource, GroupDescription, GroupLag, GroupListing, GroupState,
    MemberDescription, NewTopic, PartitionLag, PartitionOwner, PatternType, PlannedOffset, ResetTo,
    ResourceType, TopicListing,
};
pub use client::{Client, ClientBuilder, ClusterMetadata};
pub use config::Config;
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerRecord, FetchedBatch, IsolationLevel, OffsetReset,
    PartitionConsumer, StartOffset,
};
pub use error::{Error, ErrorContext, ErrorKind, KafkaCode, Result};
pub use group::{
    AssignorKind, Claim, ClaimStream, ConsumerGroup, ConsumerGroupBuilder, DoneSet, Failure,
    GroupErrors, GroupHandler, GroupProtocol, GroupRecord, GroupStream, OffsetAndMetadata,
    OnHandlerError, ProcessOptions, ProcessOrder, Processor, Revocation, RevokeReason, Session,
};
pub use kafka_protocol;
pub use net::sasl::{Credentials, OAuthToken, OAuthTokenProvider, SaslConfig};
pub use net::tls::TlsConfig;
pub use producer::{
    Acks, Delivery, DeliveryReport, GroupMetadata, Producer, ProducerBuilder, ProducerRecord,
};
pub use protocol::records::{Compression, Header, Record};
pub use topic_partition::TopicPartition;
