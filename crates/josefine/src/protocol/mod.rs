//! The thin layer over the `kafka-protocol` crate: which request answers with which
//! response ([`KafkaRequest`]), framing ([`frame`]), the bounded pre-pass that keeps
//! hostile frames away from its decoders ([`guard`]), version negotiation ([`versions`])
//! and our own record-batch codec ([`records`]).
//!
//! Protocol reference: <https://kafka.apache.org/protocol> ("Common Request and Response
//! Structure", "The Messages"); KIP-482 (flexible versions, tagged fields); KIP-511
//! (client software name in ApiVersions). Nothing here does I/O.

pub mod frame;
pub mod guard;
pub mod records;
pub mod versions;

use bytes::Bytes;
use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, VersionRange};

use guard::WireSchema;

/// A request type the client can send, tied to its response type.
///
/// `kafka-protocol` has the same pairing (`Request`) only when both of its `client` and
/// `broker` features are on; we build with `client` alone, so we keep our own.
pub trait KafkaRequest: Encodable + Message + HeaderVersion + Send + Sync + 'static {
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

fn decode<R: KafkaRequest>(frame: Bytes, version: i16) -> crate::Result<()> {
    frame::decode_response::<R>(frame, version).map(drop)
}

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
