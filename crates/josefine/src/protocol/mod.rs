//! The layer under the client, for tools and tests that speak the wire protocol
//! themselves: which request answers with which response ([`KafkaRequest`]), framing
//! ([`frame`]), the bounded pre-pass that keeps hostile frames away from the decoders
//! ([`guard`]), version negotiation ([`versions`]), our own record-batch codec
//! ([`records`]), and the client's broker handles ([`Broker`], reached through
//! [`ClientExt`]), which send any [`KafkaRequest`].
//!
//! **Unstable.** This module exists only with the `unstable-protocol` cargo feature
//! and is outside semver: any release may change or remove what is here. Its types
//! are the `kafka-protocol` crate's, at the exact version josefine pins, so a
//! josefine release that moves that pin changes this module too. The stable API is
//! the crate root; [`Compression`](crate::Compression), [`Header`](crate::Header) and
//! [`Record`](crate::Record) are re-exported there from [`records`].
//!
//! Protocol reference: <https://kafka.apache.org/protocol> ("Common Request and Response
//! Structure", "The Messages"); KIP-482 (flexible versions, tagged fields); KIP-511
//! (client software name in ApiVersions). Nothing here but [`Broker`] does I/O.

pub mod frame;
pub mod guard;
pub mod records;
pub mod versions;

use std::future::Future;

use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message};
// For RESPONSE_TYPES, which only the fuzz bodies and tests use.
#[cfg(any(test, feature = "fuzzing"))]
use {bytes::Bytes, kafka_protocol::protocol::VersionRange};

use guard::WireSchema;

pub use crate::net::broker::Broker;
use crate::{Client, FetchedBatch, Result as JResult};

/// The brokers behind a [`Client`]: the handles it sends its own requests through,
/// for sending requests of your own (`client.leader(topic, partition).await?.call(&request)`).
/// Import the trait to call these on a `Client`.
pub trait ClientExt {
    /// The leader of `topic`/`partition`, refreshing metadata once if the cached view
    /// has none.
    fn leader(&self, topic: &str, partition: i32) -> impl Future<Output = JResult<Broker>> + Send;

    /// The leader according to the cached view only.
    fn cached_leader(&self, topic: &str, partition: i32) -> JResult<Broker>;

    /// The broker with node id `id`, if metadata listed it.
    fn broker(&self, id: i32) -> Option<Broker>;

    /// Every broker the metadata lists, by node id.
    fn brokers(&self) -> Vec<Broker>;

    /// The controller broker.
    fn controller(&self) -> impl Future<Output = JResult<Broker>> + Send;

    /// Some broker to send a cluster-wide request to: a known one, else a seed.
    fn any_broker(&self) -> JResult<Broker>;

    /// The coordinator of consumer group `group`, from the cache or FindCoordinator.
    fn coordinator(&self, group: &str) -> impl Future<Output = JResult<Broker>> + Send;

    /// Forgets the cached coordinator of `group`, so the next
    /// [`coordinator`](Self::coordinator) asks for it again.
    fn invalidate_coordinator(&self, group: &str);
}

impl ClientExt for Client {
    fn leader(&self, topic: &str, partition: i32) -> impl Future<Output = JResult<Broker>> + Send {
        Client::leader(self, topic, partition)
    }

    fn cached_leader(&self, topic: &str, partition: i32) -> JResult<Broker> {
        Client::cached_leader(self, topic, partition)
    }

    fn broker(&self, id: i32) -> Option<Broker> {
        Client::broker(self, id)
    }

    fn brokers(&self) -> Vec<Broker> {
        Client::brokers(self)
    }

    fn controller(&self) -> impl Future<Output = JResult<Broker>> + Send {
        Client::controller(self)
    }

    fn any_broker(&self) -> JResult<Broker> {
        Client::any_broker(self)
    }

    fn coordinator(&self, group: &str) -> impl Future<Output = JResult<Broker>> + Send {
        Client::coordinator(self, group)
    }

    fn invalidate_coordinator(&self, group: &str) {
        Client::invalidate_coordinator(self, group)
    }
}

/// The record batches of a [`FetchedBatch`] as fetched, before the consumer's
/// filtering (records before the position, control records, aborted transactions).
pub trait FetchedBatchExt {
    /// The batches, for the borrowing fast path ([`records::RecordIter::next_ref`]) or
    /// a look at their attributes (compression, producer, transactional).
    fn record_batches(&self) -> &[records::RecordBatch];
}

impl FetchedBatchExt for FetchedBatch {
    fn record_batches(&self) -> &[records::RecordBatch] {
        FetchedBatch::record_batches(self)
    }
}

/// A request type the client can send, tied to its response type.
///
/// `kafka-protocol` has the same pairing (`Request`) only when both of its `client` and
/// `broker` features are on; we build with `client` alone, so we keep our own.
pub trait KafkaRequest: Encodable + Message + HeaderVersion + Send + Sync + 'static {
    /// The request's API key.
    const API_KEY: ApiKey;
    /// Decoded only after [`guard::check`] walked it ([`WireSchema`]).
    type Response: Decodable + HeaderVersion + WireSchema + Default + Send + 'static;

    /// Whether the broker answers this request. Only Produce with `acks=0` is not answered.
    fn expects_response(&self) -> bool {
        true
    }
}

impl KafkaRequest for m::ProduceRequest {
    const API_KEY: ApiKey = ApiKey::Produce;
    type Response = m::ProduceResponse;

    fn expects_response(&self) -> bool {
        self.acks != 0
    }
}

/// One response type the client decodes, for code that must visit them all (the fuzz
/// targets, the guard's agreement tests).
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Clone, Copy)]
pub(crate) struct ResponseType {
    pub(crate) api: ApiKey,
    /// The versions we may negotiate: the request type's own range.
    pub(crate) versions: VersionRange,
    pub(crate) header_version: fn(i16) -> i16,
    pub(crate) schema: &'static guard::Schema,
    /// `kafka-protocol`'s decoder alone, without the guard: only for inputs the guard
    /// passed, or that fail it before any array count (see `crate::fuzzing`).
    pub(crate) decode_unguarded: fn(&mut Bytes, i16) -> Result<(), String>,
    /// The production path: [`frame::decode_response`] (guard, then decoder).
    pub(crate) decode: fn(Bytes, i16) -> crate::Result<()>,
}

#[cfg(any(test, feature = "fuzzing"))]
fn decode<R: KafkaRequest>(frame: Bytes, version: i16) -> crate::Result<()> {
    frame::decode_response::<R>(frame, version).map(drop)
}

#[cfg(any(test, feature = "fuzzing"))]
fn decode_unguarded<M: Decodable>(buf: &mut Bytes, version: i16) -> Result<(), String> {
    M::decode(buf, version).map(drop).map_err(|e| e.to_string())
}

macro_rules! kafka_requests {
    ($($key:ident: $req:ident => $resp:ident,)*) => {
        $(
            impl KafkaRequest for m::$req {
                const API_KEY: ApiKey = ApiKey::$key;
                type Response = m::$resp;
            }
        )*

        /// Every [`KafkaRequest::Response`], Produce first.
        #[cfg(any(test, feature = "fuzzing"))]
        pub(crate) static RESPONSE_TYPES: &[ResponseType] = &[
            ResponseType {
                api: ApiKey::Produce,
                versions: m::ProduceRequest::VERSIONS,
                header_version: m::ProduceResponse::header_version,
                schema: <m::ProduceResponse as WireSchema>::SCHEMA,
                decode_unguarded: decode_unguarded::<m::ProduceResponse>,
                decode: decode::<m::ProduceRequest>,
            },
            $(
                ResponseType {
                    api: ApiKey::$key,
                    versions: m::$req::VERSIONS,
                    header_version: m::$resp::header_version,
                    schema: <m::$resp as WireSchema>::SCHEMA,
                    decode_unguarded: decode_unguarded::<m::$resp>,
                    decode: decode::<m::$req>,
                },
            )*
        ];
    };
}

kafka_requests! {
    Fetch: FetchRequest => FetchResponse,
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
    Metadata: MetadataRequest => MetadataResponse,
    OffsetCommit: OffsetCommitRequest => OffsetCommitResponse,
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
    JoinGroup: JoinGroupRequest => JoinGroupResponse,
    Heartbeat: HeartbeatRequest => HeartbeatResponse,
    LeaveGroup: LeaveGroupRequest => LeaveGroupResponse,
    SyncGroup: SyncGroupRequest => SyncGroupResponse,
    DescribeGroups: DescribeGroupsRequest => DescribeGroupsResponse,
    ListGroups: ListGroupsRequest => ListGroupsResponse,
    SaslHandshake: SaslHandshakeRequest => SaslHandshakeResponse,
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse,
    CreateTopics: CreateTopicsRequest => CreateTopicsResponse,
    DeleteTopics: DeleteTopicsRequest => DeleteTopicsResponse,
    DeleteRecords: DeleteRecordsRequest => DeleteRecordsResponse,
    InitProducerId: InitProducerIdRequest => InitProducerIdResponse,
    OffsetForLeaderEpoch: OffsetForLeaderEpochRequest => OffsetForLeaderEpochResponse,
    DescribeConfigs: DescribeConfigsRequest => DescribeConfigsResponse,
    AlterConfigs: AlterConfigsRequest => AlterConfigsResponse,
    SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticateResponse,
    CreatePartitions: CreatePartitionsRequest => CreatePartitionsResponse,
    DeleteGroups: DeleteGroupsRequest => DeleteGroupsResponse,
    IncrementalAlterConfigs: IncrementalAlterConfigsRequest => IncrementalAlterConfigsResponse,
    OffsetDelete: OffsetDeleteRequest => OffsetDeleteResponse,
    DescribeCluster: DescribeClusterRequest => DescribeClusterResponse,
    ConsumerGroupHeartbeat: ConsumerGroupHeartbeatRequest => ConsumerGroupHeartbeatResponse,
    ConsumerGroupDescribe: ConsumerGroupDescribeRequest => ConsumerGroupDescribeResponse,
    CreateAcls: CreateAclsRequest => CreateAclsResponse,
    DescribeAcls: DescribeAclsRequest => DescribeAclsResponse,
    DeleteAcls: DeleteAclsRequest => DeleteAclsResponse,
    AddPartitionsToTxn: AddPartitionsToTxnRequest => AddPartitionsToTxnResponse,
    AddOffsetsToTxn: AddOffsetsToTxnRequest => AddOffsetsToTxnResponse,
    EndTxn: EndTxnRequest => EndTxnResponse,
    TxnOffsetCommit: TxnOffsetCommitRequest => TxnOffsetCommitResponse,
}
