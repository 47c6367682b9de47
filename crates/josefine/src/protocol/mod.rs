//! The thin layer over the `kafka-protocol` crate: which request answers with which
//! response ([`KafkaRequest`]), framing ([`frame`]), version negotiation ([`versions`])
//! and our own record-batch codec ([`records`]).
//!
//! Protocol reference: <https://kafka.apache.org/protocol> ("Common Request and Response
//! Structure", "The Messages"); KIP-482 (flexible versions, tagged fields); KIP-511
//! (client software name in ApiVersions). Nothing here does I/O.

pub mod frame;
pub mod records;
pub mod versions;

use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message};

/// A request type the client can send, tied to its response type.
///
/// `kafka-protocol` has the same pairing (`Request`) only when both of its `client` and
/// `broker` features are on; we build with `client` alone, so we keep our own.
pub trait KafkaRequest: Encodable + Message + HeaderVersion + Send + Sync + 'static {
    const API_KEY: ApiKey;
    type Response: Decodable + HeaderVersion + Default + Send + 'static;

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

macro_rules! kafka_requests {
    ($($key:ident: $req:ident => $resp:ident,)*) => {
        $(
            impl KafkaRequest for m::$req {
                const API_KEY: ApiKey = ApiKey::$key;
                type Response = m::$resp;
            }
        )*
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
}
