//! The one public error type.
//!
//! Shaped like tokio-postgres' error: an opaque [`Error`] with a `#[non_exhaustive]`
//! [`ErrorKind`], so new failure modes can be added without breaking users, plus the
//! context a Kafka operator needs to act on it (broker, API, topic, partition) and the
//! protocol's own verdict on whether retrying can help ([`Error::is_retriable`]).
//!
//! Kafka error codes are listed in the protocol guide ("Error Codes") and in the Java
//! client's `Errors.java`; [`KafkaCode`] wraps the numeric code and borrows names and the
//! retriable flag from the `kafka-protocol` crate's table.

use std::fmt;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::protocol::records::RecordError;

/// Shorthand for results whose error is Josefine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Kafka protocol error code, as returned in a response field.
///
/// Unknown codes (from a broker newer than this client) are kept as they are and are
/// treated as not retriable, as the Java client does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaCode(i16);

impl KafkaCode {
    /// Wraps a code; `None` for 0, which means "no error".
    pub fn from_code(code: i16) -> Option<Self> {
        (code != 0).then_some(Self(code))
    }

    /// The numeric code, as on the wire.
    pub const fn code(self) -> i16 {
        self.0
    }

    /// The protocol's name for the code, for example `NotLeaderOrFollower`.
    pub fn name(self) -> String {
        match ResponseError::try_from_code(self.0) {
            Some(ResponseError::Unknown(_)) | None => format!("UnknownErrorCode({})", self.0),
            Some(known) => known.to_string(),
        }
    }

    /// Whether the protocol marks this code as retriable (a later retry may succeed).
    pub fn is_retriable(self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|e| e.is_retriable())
    }
}

/// Well-known codes the client branches on. Values are from the protocol guide.
impl KafkaCode {
    /// `UNKNOWN_SERVER_ERROR`: the broker hit an unexpected error of its own while handling
    /// the request; its log says more. Not retriable.
    pub const UNKNOWN_SERVER_ERROR: Self = Self(-1);
    /// `OFFSET_OUT_OF_RANGE`: a fetch or list-offsets asked for an offset outside the
    /// partition's log (deleted by retention, or past its end). The consumer resets per
    /// `auto.offset.reset`.
    pub const OFFSET_OUT_OF_RANGE: Self = Self(1);
    /// `CORRUPT_MESSAGE`: a produced batch failed its CRC check, was too large to parse, or
    /// had a null key for a compacted topic. Retriable.
    pub const CORRUPT_MESSAGE: Self = Self(2);
    /// `UNKNOWN_TOPIC_OR_PARTITION`: the broker hosts no such topic or partition: it does
    /// not exist (yet), or the client's metadata is stale. Retriable.
    pub const UNKNOWN_TOPIC_OR_PARTITION: Self = Self(3);
    /// `LEADER_NOT_AVAILABLE`: the partition has no leader right now, during a leader
    /// election or just after the topic was created. Retriable.
    pub const LEADER_NOT_AVAILABLE: Self = Self(5);
    /// `NOT_LEADER_OR_FOLLOWER`: the broker does not lead (or replicate) the partition;
    /// leadership moved. Retriable after a metadata refresh.
    pub const NOT_LEADER_OR_FOLLOWER: Self = Self(6);
    /// `REQUEST_TIMED_OUT`: the broker gave up on the request within its own timeout (for a
    /// produce: waiting for replicas to acknowledge). Retriable.
    pub const REQUEST_TIMED_OUT: Self = Self(7);
    /// `MESSAGE_TOO_LARGE`: a batch is larger than the broker or topic accepts
    /// (`message.max.bytes`, `max.message.bytes`). Not retriable: send smaller records or
    /// raise the limit.
    pub const MESSAGE_TOO_LARGE: Self = Self(10);
    /// `OFFSET_METADATA_TOO_LARGE`: the metadata string of an offset commit is longer than
    /// the broker allows (`offset.metadata.max.bytes`).
    pub const OFFSET_METADATA_TOO_LARGE: Self = Self(12);
    /// `COORDINATOR_LOAD_IN_PROGRESS`: the group or transaction coordinator is still
    /// loading its state after a move. Retriable.
    pub const COORDINATOR_LOAD_IN_PROGRESS: Self = Self(14);
    /// `COORDINATOR_NOT_AVAILABLE`: no coordinator is available for the group or
    /// transactional id (its internal topic's partition has no leader, or it is not created
    /// yet). Retriable.
    pub const COORDINATOR_NOT_AVAILABLE: Self = Self(15);
    /// `NOT_COORDINATOR`: the broker is not the coordinator of the group or transactional
    /// id; it moved. Retriable after finding the coordinator again.
    pub const NOT_COORDINATOR: Self = Self(16);
    /// `ILLEGAL_GENERATION`: the group member's generation is old: the group rebalanced
    /// without it, and its commit or heartbeat is refused. The member rejoins.
    pub const ILLEGAL_GENERATION: Self = Self(22);
    /// `UNKNOWN_MEMBER_ID`: the coordinator does not know this member id (its session
    /// expired, or it was removed). The member rejoins with a new id.
    pub const UNKNOWN_MEMBER_ID: Self = Self(25);
    /// `REBALANCE_IN_PROGRESS`: the group is rebalancing; the member must rejoin before it
    /// can commit or heartbeat again.
    pub const REBALANCE_IN_PROGRESS: Self = Self(27);
    /// `TOPIC_AUTHORIZATION_FAILED`: the principal lacks the ACL the request needs on a
    /// topic. Not retriable: grant it.
    pub const TOPIC_AUTHORIZATION_FAILED: Self = Self(29);
    /// `GROUP_AUTHORIZATION_FAILED`: the principal lacks the ACL the request needs on the
    /// consumer group. Not retriable: grant it.
    pub const GROUP_AUTHORIZATION_FAILED: Self = Self(30);
    /// `CLUSTER_AUTHORIZATION_FAILED`: the principal lacks the ACL the request needs on the
    /// cluster resource. Not retriable: grant it.
    pub const CLUSTER_AUTHORIZATION_FAILED: Self = Self(31);
    /// `UNSUPPORTED_VERSION`: the broker does not support the request's API version (or the
    /// feature it needs).
    pub const UNSUPPORTED_VERSION: Self = Self(35);
    /// `TOPIC_ALREADY_EXISTS`: CreateTopics named a topic that already exists.
    pub const TOPIC_ALREADY_EXISTS: Self = Self(36);
    /// `INVALID_PARTITIONS`: a partition count is invalid: below 1 when creating a topic,
    /// or not more than the current count when adding partitions.
    pub const INVALID_PARTITIONS: Self = Self(37);
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`: an idempotent producer's batch skipped a sequence
    /// number the broker expected; records in between may be lost.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: Self = Self(45);
    /// `DUPLICATE_SEQUENCE_NUMBER`: an idempotent producer sent a sequence number the
    /// broker had already written (a retried batch); the client counts the batch as
    /// delivered.
    pub const DUPLICATE_SEQUENCE_NUMBER: Self = Self(46);
    /// `INVALID_PRODUCER_EPOCH`: the producer's epoch is older than the broker's for its
    /// producer id: a newer instance with the same id has taken over.
    pub const INVALID_PRODUCER_EPOCH: Self = Self(47);
    /// `INVALID_TXN_STATE`: a transactional request does not fit the transaction's current
    /// state (for example a commit with no transaction begun).
    pub const INVALID_TXN_STATE: Self = Self(48);
    /// `INVALID_PRODUCER_ID_MAPPING`: the producer id is not the one currently assigned to
    /// the transactional id.
    pub const INVALID_PRODUCER_ID_MAPPING: Self = Self(49);
    /// `INVALID_TRANSACTION_TIMEOUT`: the transaction timeout (`transaction.timeout.ms`) is
    /// above the broker's `transaction.max.timeout.ms`.
    pub const INVALID_TRANSACTION_TIMEOUT: Self = Self(50);
    /// `CONCURRENT_TRANSACTIONS`: the transaction is still completing an earlier commit or
    /// abort; the request is retried after a short wait.
    pub const CONCURRENT_TRANSACTIONS: Self = Self(51);
    /// `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`: the principal lacks the ACL the request
    /// needs on the transactional id. Fatal for the producer.
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: Self = Self(53);
    /// `OPERATION_NOT_ATTEMPTED`: the broker skipped this part of a batched request because
    /// another part of it failed.
    pub const OPERATION_NOT_ATTEMPTED: Self = Self(55);
    /// `UNKNOWN_PRODUCER_ID`: the broker has no state for the producer id, for example
    /// after retention deleted all of that producer's records.
    pub const UNKNOWN_PRODUCER_ID: Self = Self(59);
    /// `NON_EMPTY_GROUP`: the request (deleting a group, resetting its offsets) needs a
    /// group with no active members, and this one has some.
    pub const NON_EMPTY_GROUP: Self = Self(68);
    /// `UNSTABLE_OFFSET_COMMIT`: an offset fetch that requires stable offsets found a
    /// transactional commit still pending on the partition. Retriable.
    pub const UNSTABLE_OFFSET_COMMIT: Self = Self(88);
    /// `PRODUCER_FENCED`: another producer with the same `transactional.id` started and
    /// fenced this one. Fatal for the producer: drop it.
    pub const PRODUCER_FENCED: Self = Self(90);
    /// `TRANSACTION_ABORTABLE`: the broker failed the transaction; abort it, and the
    /// transactional id can be used again.
    pub const TRANSACTION_ABORTABLE: Self = Self(120);
    /// `FENCED_LEADER_EPOCH`: the request's leader epoch is older than the broker's: the
    /// client's metadata is stale. Retriable after a refresh.
    pub const FENCED_LEADER_EPOCH: Self = Self(74);
    /// `UNKNOWN_LEADER_EPOCH`: the request's leader epoch is newer than the broker's: the
    /// broker has not caught up yet. Retriable.
    pub const UNKNOWN_LEADER_EPOCH: Self = Self(75);
    /// `MEMBER_ID_REQUIRED`: the first JoinGroup of a member is refused with a member id to
    /// join again with; the client does so.
    pub const MEMBER_ID_REQUIRED: Self = Self(79);
    /// `FENCED_INSTANCE_ID`: another member registered with the same `group.instance.id`
    /// and fenced this one (static membership). Two instances share an id.
    pub const FENCED_INSTANCE_ID: Self = Self(82);
    /// `GROUP_SUBSCRIBED_TO_TOPIC`: an OffsetDelete named a topic that the group's active
    /// members are subscribed to.
    pub const GROUP_SUBSCRIBED_TO_TOPIC: Self = Self(86);
    /// `UNKNOWN_TOPIC_ID`: the broker hosts no topic with that id: it was deleted (and
    /// perhaps recreated), or the metadata is stale. Retriable.
    pub const UNKNOWN_TOPIC_ID: Self = Self(100);
    /// `GROUP_ID_NOT_FOUND`: the group does not exist on its coordinator (for a delete or
    /// describe).
    pub const GROUP_ID_NOT_FOUND: Self = Self(69);
    /// `GROUP_MAX_SIZE_REACHED`: the group already has the most members the broker allows
    /// (`group.max.size`, `group.consumer.max.size`).
    pub const GROUP_MAX_SIZE_REACHED: Self = Self(81);
    /// `FENCED_MEMBER_EPOCH`: (KIP-848) the coordinator fenced the member's epoch; the
    /// member gives up its partitions and rejoins.
    pub const FENCED_MEMBER_EPOCH: Self = Self(110);
    /// `UNRELEASED_INSTANCE_ID`: (KIP-848) the `group.instance.id` is still held by another
    /// member, which must leave first.
    pub const UNRELEASED_INSTANCE_ID: Self = Self(111);
    /// `UNSUPPORTED_ASSIGNOR`: (KIP-848) the broker does not have the assignor named by
    /// `group.remote.assignor`.
    pub const UNSUPPORTED_ASSIGNOR: Self = Self(112);
    /// `STALE_MEMBER_EPOCH`: (KIP-848) the member's epoch is behind the coordinator's;
    /// retried once a heartbeat brings the current epoch.
    pub const STALE_MEMBER_EPOCH: Self = Self(113);
    /// `INVALID_REGULAR_EXPRESSION`: (KIP-848) the broker cannot parse the subscription's
    /// regular expression.
    pub const INVALID_REGULAR_EXPRESSION: Self = Self(128);
}

impl fmt::Debug for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.name(), self.0)
    }
}

/// What went wrong, coarsely; match on it to decide what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The broker answered with a Kafka error code.
    Kafka(KafkaCode),
    /// The socket failed (connect refused, reset, ...).
    Io,
    /// The connection was closed: by the peer (EOF), or poisoned by an earlier fatal error.
    ConnectionClosed,
    /// No response arrived within the request timeout.
    Timeout,
    /// The bytes from the network broke the protocol: bad frame length, unknown
    /// correlation id, undecodable response. The connection is dropped.
    Protocol,
    /// A record batch failed to decode (CRC mismatch, truncation inside a batch, ...).
    CorruptRecords,
    /// The broker supports no version of an API that this client can speak.
    UnsupportedVersion,
    /// None of the bootstrap or known brokers could be reached.
    NoBrokerAvailable,
    /// The configuration is invalid; the message says which setting. Also a setting (or a
    /// fetched zstd batch) that needs a cargo feature this build of josefine leaves out;
    /// the message names the feature to enable.
    Config,
    /// The client (or the component) was closed.
    Closed,
    /// The TLS handshake failed; the message names the certificate problem.
    Tls,
    /// SASL authentication failed (wrong credentials, unknown user, a mechanism the
    /// broker does not enable, a broker that failed SCRAM verification). Not retried:
    /// the same credentials fail again.
    Authentication,
    /// Your handler's own error ([`Error::handler`]); its source is that error. Also a
    /// handler that panicked or overran its drain deadline (the message says).
    Handler,
    /// A bug in josefine (one of its tasks panicked); the message says where. Please
    /// report it.
    Internal,
}

/// Where an error happened, as far as it is known: each part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorContext {
    pub(crate) broker: Option<String>,
    /// The API's name, as `ApiKey`'s Debug writes it (the protocol guide's name).
    pub(crate) api: Option<String>,
    pub(crate) topic: Option<String>,
    pub(crate) partition: Option<i32>,
    pub(crate) group: Option<String>,
    pub(crate) offset: Option<i64>,
}

impl ErrorContext {
    /// The broker, as `id@host:port`, or just the address before its id is known.
    pub fn broker(&self) -> Option<&str> {
        self.broker.as_deref()
    }

    /// The Kafka API of the failed request, by the protocol guide's name: `Metadata`,
    /// `Produce`, `JoinGroup`, ...
    pub fn api(&self) -> Option<&str> {
        self.api.as_deref()
    }

    /// The topic the error is about.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The partition the error is about.
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    /// The consumer group, for coordinator and membership errors.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The record offset, for errors about a position in a partition.
    pub fn offset(&self) -> Option<i64> {
        self.offset
    }
}

/// Josefine's error: a kind, context, a message and an optional source.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    context: ErrorContext,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error of `kind` with a human message (what happened, what to do).
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind,
            message: message.into(),
            context: ErrorContext::default(),
            source: None,
        }))
    }

    /// Your own error, returned from a group handler or a stream consumer as a
    /// Josefine error of kind [`ErrorKind::Handler`] with `err` as its source (shown
    /// in its text): `do_work(&record).map_err(Error::handler)?`.
    pub fn handler(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(ErrorKind::Handler, String::new()).with_source(err)
    }

    /// As [`handler`](Self::handler), for an error already boxed (`anyhow`'s, say).
    pub(crate) fn handler_boxed(err: Box<dyn std::error::Error + Send + Sync>) -> Self {
        let mut out = Self::new(ErrorKind::Handler, String::new());
        out.0.source = Some(err);
        out
    }

    /// An error for a Kafka error code returned by a broker.
    pub(crate) fn kafka(code: KafkaCode) -> Self {
        Self::new(ErrorKind::Kafka(code), String::new())
    }

    /// The error for `code` if it is not 0.
    pub(crate) fn check_code(code: i16) -> Result<()> {
        match KafkaCode::from_code(code) {
            None => Ok(()),
            Some(code) => Err(Self::kafka(code)),
        }
    }

    /// [`check_code`](Self::check_code), with the broker's error message (when it
    /// sent one) after the code's description.
    pub(crate) fn check_code_with(code: i16, message: Option<&str>) -> Result<()> {
        Self::check_code(code).map_err(|e| match message {
            Some(m) if !m.is_empty() => Error::new(e.kind().clone(), format!("{e}: {m}")),
            _ => e,
        })
    }

    /// A socket's I/O error. A TLS stream's errors go through `net::tls`, which knows
    /// which of them are TLS failures.
    pub(crate) fn io(err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, String::new()).with_source(err)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// [`Client::close`](crate::Client::close) was called: nothing of that client
    /// works any more.
    pub(crate) fn client_closed() -> Self {
        Self::new(ErrorKind::Closed, "the client is closed")
    }

    /// `what` (a setting, as the user wrote it) needs the cargo `feature`, which is
    /// disabled in this build.
    pub(crate) fn feature_disabled(what: impl fmt::Display, feature: &str) -> Self {
        Self::config(format!(
            "{what} needs josefine's `{feature}` feature, which is disabled in this build; \
             enable it where josefine is a dependency: features = [\"{feature}\"]"
        ))
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// Adds the broker to the context, keeping one already set.
    pub(crate) fn with_broker(mut self, broker: impl fmt::Display) -> Self {
        self.0
            .context
            .broker
            .get_or_insert_with(|| broker.to_string());
        self
    }

    /// Adds the API to the context, keeping one already set.
    pub(crate) fn with_api(mut self, api: ApiKey) -> Self {
        if self.0.context.api.is_none() {
            self.0.context.api = Some(format!("{api:?}"));
        }
        self
    }

    /// Adds the topic to the context, keeping one already set.
    pub(crate) fn with_topic(mut self, topic: impl Into<String>) -> Self {
        if self.0.context.topic.is_none() {
            self.0.context.topic = Some(topic.into());
        }
        self
    }

    /// Adds the partition to the context, keeping one already set.
    pub(crate) fn with_partition(mut self, partition: i32) -> Self {
        self.0.context.partition.get_or_insert(partition);
        self
    }

    /// Adds the offset to the context, keeping one already set.
    pub(crate) fn with_offset(mut self, offset: i64) -> Self {
        self.0.context.offset.get_or_insert(offset);
        self
    }

    /// Adds the consumer group to the context, keeping one already set.
    pub(crate) fn with_group(mut self, group: impl Into<String>) -> Self {
        if self.0.context.group.is_none() {
            self.0.context.group = Some(group.into());
        }
        self
    }

    /// What went wrong, coarsely.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// What went wrong, without the kind's words or the context.
    pub(crate) fn message(&self) -> &str {
        &self.0.message
    }

    /// The Kafka error code, if the broker returned one.
    pub fn code(&self) -> Option<KafkaCode> {
        match self.0.kind {
            ErrorKind::Kafka(code) => Some(code),
            _ => None,
        }
    }

    /// Where it went wrong: broker, API, topic, partition, group, offset.
    pub fn context(&self) -> &ErrorContext {
        &self.0.context
    }

    /// From a transactional producer: whether the producer cannot go on and must be
    /// dropped (PRODUCER_FENCED: another instance took its transactional id over;
    /// an authorization failure on the id; an unsupported version). Any other error
    /// from a transaction leaves it abortable: `abort_transaction`, then go on.
    pub fn is_producer_fatal(&self) -> bool {
        crate::producer::is_fatal_transaction_error(self)
    }

    /// Whether retrying the same operation (perhaps after a metadata refresh or a
    /// reconnect) can succeed. Kafka codes follow the protocol's table; transport
    /// failures are retriable because a new connection may work; protocol violations,
    /// corrupt records and configuration errors are not.
    pub fn is_retriable(&self) -> bool {
        match &self.0.kind {
            ErrorKind::Kafka(code) => code.is_retriable(),
            ErrorKind::Io
            | ErrorKind::ConnectionClosed
            | ErrorKind::Timeout
            | ErrorKind::NoBrokerAvailable => true,
            ErrorKind::Protocol
            | ErrorKind::CorruptRecords
            | ErrorKind::UnsupportedVersion
            | ErrorKind::Config
            | ErrorKind::Closed
            | ErrorKind::Tls
            | ErrorKind::Authentication
            | ErrorKind::Handler
            | ErrorKind::Internal => false,
        }
    }

    /// Whether the error says our view of who leads a partition may be stale, so a
    /// retry should come after a metadata refresh: leadership and leader-epoch codes,
    /// an unknown topic or partition, and a lost or timed-out connection.
    pub(crate) fn is_stale_metadata(&self) -> bool {
        self.is_connection_lost()
            || self.0.kind == ErrorKind::Timeout
            || matches!(
                self.code(),
                Some(
                    KafkaCode::NOT_LEADER_OR_FOLLOWER
                        | KafkaCode::LEADER_NOT_AVAILABLE
                        | KafkaCode::UNKNOWN_TOPIC_OR_PARTITION
                        | KafkaCode::FENCED_LEADER_EPOCH
                        | KafkaCode::UNKNOWN_LEADER_EPOCH
                )
            )
    }

    /// Whether the error means the connection it came from is gone.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::Io | ErrorKind::ConnectionClosed | ErrorKind::Protocol
        )
    }
}

impl Clone for Error {
    /// Clones kind, message and context; the source is kept as its rendered text
    /// because arbitrary sources are not `Clone`. A poisoned connection hands the same
    /// error to every waiter, which needs this.
    fn clone(&self) -> Self {
        let mut message = self.0.message.clone();
        if let Some(source) = &self.0.source {
            if message.is_empty() {
                message = source.to_string();
            } else {
                message = format!("{message}: {source}");
            }
        }
        Self(Box::new(Inner {
            kind: self.0.kind.clone(),
            message,
            context: self.0.context.clone(),
            source: None,
        }))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.kind {
            ErrorKind::Kafka(code) => write!(f, "broker returned {code}")?,
            ErrorKind::Io => f.write_str("I/O error")?,
            ErrorKind::ConnectionClosed => f.write_str("connection closed")?,
            ErrorKind::Timeout => f.write_str("request timed out")?,
            ErrorKind::Protocol => f.write_str("protocol violation")?,
            ErrorKind::CorruptRecords => f.write_str("corrupt record batch")?,
            ErrorKind::UnsupportedVersion => f.write_str("unsupported API version")?,
            ErrorKind::NoBrokerAvailable => f.write_str("no broker available")?,
            ErrorKind::Config => f.write_str("invalid configuration")?,
            ErrorKind::Closed => f.write_str("closed")?,
            ErrorKind::Tls => f.write_str("TLS failure")?,
            ErrorKind::Authentication => f.write_str("authentication failed")?,
            ErrorKind::Handler => f.write_str("handler failed")?,
            ErrorKind::Internal => f.write_str("internal error")?,
        }
        if !self.0.message.is_empty() {
            write!(f, ": {}", self.0.message)?;
        }
        let ctx = &self.0.context;
        if let Some(api) = &ctx.api {
            write!(f, " [api {api}]")?;
        }
        if let Some(broker) = &ctx.broker {
            write!(f, " [broker {broker}]")?;
        }
        if let Some(group) = &ctx.group {
            write!(f, " [group {group}]")?;
        }
        match (&ctx.topic, ctx.partition) {
            (Some(t), Some(p)) => write!(f, " [{t}/{p}]")?,
            (Some(t), None) => write!(f, " [topic {t}]")?,
            (None, Some(p)) => write!(f, " [partition {p}]")?,
            (None, None) => {}
        }
        if let Some(offset) = ctx.offset {
            write!(f, " [offset {offset}]")?;
        }
        if let Some(source) = &self.0.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("message", &self.0.message)
            .field("context", &self.0.context)
            .field("source", &self.0.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<RecordError> for Error {
    fn from(err: RecordError) -> Self {
        // A batch this build cannot decompress is not corrupt: the build needs a feature.
        let kind = match err {
            RecordError::CodecDisabled { .. } => ErrorKind::Config,
            _ => ErrorKind::CorruptRecords,
        };
        Self::new(kind, String::new()).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handlers_own_error_is_kept_as_the_source() {
        #[derive(Debug)]
        struct Unpaid(u32);
        impl fmt::Display for Unpaid {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "invoice {} is unpaid", self.0)
            }
        }
        impl std::error::Error for Unpaid {}
        fn bill() -> std::result::Result<(), Unpaid> {
            Err(Unpaid(7))
        }
        fn work() -> Result<()> {
            bill().map_err(Error::handler)?;
            Ok(())
        }
        let err = work().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Handler);
        assert!(!err.is_retriable());
        assert_eq!(err.to_string(), "handler failed: invoice 7 is unpaid");
        let source = std::error::Error::source(&err).expect("the source is kept");
        assert_eq!(source.downcast_ref::<Unpaid>().map(|u| u.0), Some(7));
    }

    #[test]
    fn kafka_codes_carry_name_and_retriable_flag() {
        assert_eq!(KafkaCode::from_code(0), None);
        let nl = KafkaCode::NOT_LEADER_OR_FOLLOWER;
        assert!(nl.is_retriable());
        assert_eq!(nl.name(), "NotLeaderOrFollower");
        assert!(!KafkaCode::TOPIC_ALREADY_EXISTS.is_retriable());
    }

    #[test]
    fn unknown_codes_are_kept_and_not_retriable() {
        let code = KafkaCode::from_code(31_000).unwrap();
        assert_eq!(code.code(), 31_000);
        assert!(!code.is_retriable());
        assert!(code.name().contains("31000"), "{}", code.name());
        assert!(!Error::kafka(code).is_retriable());
    }

    #[test]
    fn display_includes_context() {
        let err = Error::kafka(KafkaCode::NOT_LEADER_OR_FOLLOWER)
            .with_api(ApiKey::Produce)
            .with_broker("1@127.0.0.1:9092")
            .with_topic("orders")
            .with_partition(3);
        let text = err.to_string();
        assert!(text.contains("NotLeaderOrFollower"), "{text}");
        assert!(text.contains("Produce"), "{text}");
        assert!(text.contains("1@127.0.0.1:9092"), "{text}");
        assert!(text.contains("orders/3"), "{text}");
        assert!(err.is_retriable());
        assert_eq!(err.code(), Some(KafkaCode::NOT_LEADER_OR_FOLLOWER));
    }

    #[test]
    fn context_is_not_overwritten_by_outer_layers() {
        let err = Error::protocol("x")
            .with_broker("inner")
            .with_broker("outer");
        assert_eq!(err.context().broker.as_deref(), Some("inner"));
    }

    #[test]
    fn clone_keeps_source_text() {
        let err = Error::io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "peer reset",
        ));
        let copy = err.clone();
        assert_eq!(copy.kind(), &ErrorKind::Io);
        assert!(copy.to_string().contains("peer reset"), "{copy}");
    }
}
