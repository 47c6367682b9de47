//! The Kafka APIs the mock answers, one module each, behind one dispatcher.
//!
//! Each module implements [`Handler`]: a synchronous function from a decoded
//! request to a response, plus the response a test gets when it asks for an
//! error with [`Action::Error`](crate::Action::Error). Decoding, version
//! checks and encoding live here, once, so a new API is one small file and one
//! line in [`serve`] and [`IMPLEMENTED`].
//!
//! Five APIs need more than a function: Produce with `acks=0` sends no
//! response at all ([`Reply::Nothing`]), Fetch may wait for data
//! (`max_wait_ms`), JoinGroup and SyncGroup wait for the rest of the
//! group (see [`crate::coordinator`]), and ConsumerGroupHeartbeat records
//! the client's address, so [`serve`] is async and their modules wrap their
//! handlers in a `serve` of their own.
//!
//! Protocol pages: <https://kafka.apache.org/protocol#protocol_api_keys>.

pub(crate) mod add_offsets_to_txn;
pub(crate) mod add_partitions_to_txn;
pub(crate) mod api_versions;
pub(crate) mod consumer_group_describe;
pub(crate) mod consumer_group_heartbeat;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_groups;
pub(crate) mod delete_topics;
pub(crate) mod describe_groups;
pub(crate) mod end_txn;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod heartbeat;
pub(crate) mod init_producer_id;
pub(crate) mod join_group;
pub(crate) mod leave_group;
pub(crate) mod list_groups;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod offset_commit;
pub(crate) mod offset_fetch;
pub(crate) mod produce;
pub(crate) mod sasl_authenticate;
pub(crate) mod sasl_handshake;
pub(crate) mod sync_group;
pub(crate) mod txn_offset_commit;

use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, VersionRange,
};
use kafka_protocol::ResponseError;

use crate::broker::Node;
use crate::coordinator;
use crate::sasl::{Admission, Session};

pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
pub(crate) const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();
pub(crate) const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();
pub(crate) const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();

/// The APIs the mock implements and, by default, advertises: every version
/// the kafka-protocol crate can decode and encode, except SaslHandshake (v1
/// only) and the transaction APIs, which stop before transaction.version 2
/// (KIP-890 part 2: AddPartitionsToTxn v4+ is broker-to-broker, EndTxn v5
/// and TxnOffsetCommit v5 bump epochs per transaction).
pub(crate) const IMPLEMENTED: [(ApiKey, VersionRange); 27] = [
    (ApiKey::Produce, ProduceRequest::VERSIONS),
    (ApiKey::Fetch, FetchRequest::VERSIONS),
    (ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
    (ApiKey::Metadata, MetadataRequest::VERSIONS),
    (ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS),
    (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
    (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
    (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
    (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
    (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
    (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
    (ApiKey::DescribeGroups, DescribeGroupsRequest::VERSIONS),
    (ApiKey::ListGroups, ListGroupsRequest::VERSIONS),
    (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
    (ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS),
    (ApiKey::DeleteTopics, DeleteTopicsRequest::VERSIONS),
    (ApiKey::InitProducerId, InitProducerIdRequest::VERSIONS),
    (ApiKey::DeleteGroups, DeleteGroupsRequest::VERSIONS),
    (ApiKey::CreatePartitions, CreatePartitionsRequest::VERSIONS),
    (ApiKey::SaslHandshake, sasl_handshake::VERSIONS),
    (ApiKey::SaslAuthenticate, SaslAuthenticateRequest::VERSIONS),
    (
        ApiKey::ConsumerGroupHeartbeat,
        ConsumerGroupHeartbeatRequest::VERSIONS,
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        ConsumerGroupDescribeRequest::VERSIONS,
    ),
    (ApiKey::AddPartitionsToTxn, add_partitions_to_txn::VERSIONS),
    (ApiKey::AddOffsetsToTxn, add_offsets_to_txn::VERSIONS),
    (ApiKey::EndTxn, end_txn::VERSIONS),
    (ApiKey::TxnOffsetCommit, txn_offset_commit::VERSIONS),
];

/// How to answer a request: as a broker would, or with the error code a test
/// asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal,
    Error(i16),
}

/// Why the mock closes a connection instead of answering, as Kafka does for
/// requests it cannot parse or does not support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) String);

/// A complete response frame: the length prefix, the response header and the
/// body, ready to write.
pub(crate) type Frame = BytesMut;

/// What the connection does after a request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Write this response.
    Frame(Frame),
    /// Write nothing and read the next request (Produce with acks=0).
    Nothing,
    /// Close the connection without a response (Produce with acks=0 that
    /// failed).
    Close,
    /// Write this response, then close the connection (a failed SASL
    /// authentication).
    FrameThenClose(Frame),
}

pub(crate) trait Handler {
    type Request: Request + Default;

    fn handle(
        node: &Node,
        request: Self::Request,
        version: i16,
    ) -> <Self::Request as Request>::Response;

    /// A well-formed response that carries `code` wherever the API has room
    /// for an error code.
    fn error_response(
        node: &Node,
        request: &Self::Request,
        version: i16,
        code: i16,
    ) -> <Self::Request as Request>::Response;
}

/// Answers one request whose header has been decoded; `body` is what follows
/// the header, `peer` the client's address (JoinGroup records it as the
/// member's host), `session` the connection's SASL state.
///
/// In [`Mode::Normal`] the SASL gate comes first: on a broker that requires
/// SASL, a request the connection may not make yet (or any more, once its
/// session expired) is refused, which closes the connection as Kafka does. A
/// test's [`Mode::Error`] is answered regardless.
pub(crate) async fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
    peer: SocketAddr,
    session: &mut Session,
) -> Result<Reply, Refusal> {
    if let (Mode::Normal, Ok(api_key)) = (mode, ApiKey::try_from(header.request_api_key)) {
        let admission = session.admit(&node.shared.sasl(), api_key, coordinator::now());
        if let Admission::Close(reason) = admission {
            return Err(Refusal(reason));
        }
    }
    let frame = match ApiKey::try_from(header.request_api_key) {
        Ok(ApiKey::Produce) => return produce::serve(node, header, body, mode),
        Ok(ApiKey::Fetch) => return fetch::serve(node, header, body, mode).await,
        Ok(ApiKey::JoinGroup) => return join_group::serve(node, header, body, mode, peer).await,
        Ok(ApiKey::SyncGroup) => return sync_group::serve(node, header, body, mode).await,
        Ok(ApiKey::ConsumerGroupHeartbeat) => {
            return consumer_group_heartbeat::serve(node, header, body, mode, peer).await
        }
        Ok(ApiKey::ConsumerGroupDescribe) => {
            serve_with::<consumer_group_describe::ConsumerGroupDescribe>(node, header, body, mode)
        }
        Ok(ApiKey::FindCoordinator) => {
            serve_with::<find_coordinator::FindCoordinator>(node, header, body, mode)
        }
        Ok(ApiKey::Heartbeat) => serve_with::<heartbeat::Heartbeat>(node, header, body, mode),
        Ok(ApiKey::LeaveGroup) => serve_with::<leave_group::LeaveGroup>(node, header, body, mode),
        Ok(ApiKey::OffsetCommit) => {
            serve_with::<offset_commit::OffsetCommit>(node, header, body, mode)
        }
        Ok(ApiKey::OffsetFetch) => {
            serve_with::<offset_fetch::OffsetFetch>(node, header, body, mode)
        }
        Ok(ApiKey::DescribeGroups) => {
            serve_with::<describe_groups::DescribeGroups>(node, header, body, mode)
        }
        Ok(ApiKey::ListGroups) => serve_with::<list_groups::ListGroups>(node, header, body, mode),
        Ok(ApiKey::DeleteGroups) => {
            serve_with::<delete_groups::DeleteGroups>(node, header, body, mode)
        }
        Ok(ApiKey::ListOffsets) => {
            serve_with::<list_offsets::ListOffsets>(node, header, body, mode)
        }
        Ok(ApiKey::Metadata) => serve_with::<metadata::Metadata>(node, header, body, mode),
        Ok(ApiKey::ApiVersions) => api_versions::serve(node, header, body, mode),
        Ok(ApiKey::SaslHandshake) => {
            return sasl_handshake::serve(node, header, body, mode, session)
        }
        Ok(ApiKey::SaslAuthenticate) => {
            return sasl_authenticate::serve(node, header, body, mode, session)
        }
        Ok(ApiKey::CreateTopics) => {
            serve_with::<create_topics::CreateTopics>(node, header, body, mode)
        }
        Ok(ApiKey::DeleteTopics) => {
            serve_with::<delete_topics::DeleteTopics>(node, header, body, mode)
        }
        Ok(ApiKey::CreatePartitions) => {
            serve_with::<create_partitions::CreatePartitions>(node, header, body, mode)
        }
        Ok(ApiKey::InitProducerId) => {
            serve_with::<init_producer_id::InitProducerId>(node, header, body, mode)
        }
        Ok(ApiKey::AddPartitionsToTxn) => {
            serve_with::<add_partitions_to_txn::AddPartitionsToTxn>(node, header, body, mode)
        }
        Ok(ApiKey::AddOffsetsToTxn) => {
            serve_with::<add_offsets_to_txn::AddOffsetsToTxn>(node, header, body, mode)
        }
        Ok(ApiKey::EndTxn) => serve_with::<end_txn::EndTxn>(node, header, body, mode),
        Ok(ApiKey::TxnOffsetCommit) => {
            serve_with::<txn_offset_commit::TxnOffsetCommit>(node, header, body, mode)
        }
        Ok(other) => Err(Refusal(format!("{other:?} is not implemented by the mock"))),
        Err(()) => Err(Refusal(format!(
            "unknown api key {}",
            header.request_api_key
        ))),
    };
    frame.map(Reply::Frame)
}

/// Decodes a request body after the version checks, or refuses it.
///
/// In [`Mode::Error`] the test asked for an error, so it gets one even when
/// the mock could not parse the request (or never advertised the version):
/// the request is then the default one and the response names nothing.
fn decode_for<R: Request + Default>(
    node: &Node,
    header: &RequestHeader,
    mut body: Bytes,
    mode: Mode,
) -> Result<R, Refusal> {
    let version = header.request_api_version;
    let key = header.request_api_key;
    if !codec_supports::<R>(version) {
        return Err(Refusal(format!(
            "api key {key} v{version} is beyond what kafka-protocol can encode ({})",
            <R as Message>::VERSIONS
        )));
    }
    match mode {
        Mode::Normal => {
            if !node.advertises(key, version) {
                return Err(Refusal(format!(
                    "api key {key} v{version} is outside the advertised versions"
                )));
            }
            decode::<R>(&mut body, version)
                .map_err(|e| Refusal(format!("malformed api key {key} v{version} request: {e}")))
        }
        Mode::Error(_) => Ok(decode::<R>(&mut body, version).unwrap_or_default()),
    }
}

fn serve_with<H: Handler>(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
) -> Result<Frame, Refusal> {
    let version = header.request_api_version;
    let request = decode_for::<H::Request>(node, header, body, mode)?;
    let response = match mode {
        Mode::Normal => H::handle(node, request, version),
        Mode::Error(code) => H::error_response(node, &request, version, code),
    };
    encode_response(header.correlation_id, version, &response)
}

/// Whether kafka-protocol can decode and encode version `version` of `M`.
fn codec_supports<M: Message>(version: i16) -> bool {
    (M::VERSIONS.min..=M::VERSIONS.max).contains(&version)
}

/// Runs a kafka-protocol decoder, turning a panic into an error: the decoders
/// are generated code fed with bytes from the network, and one bad frame must
/// cost its connection, not the test's output.
pub(crate) fn decode_guarded<T, E: std::fmt::Display>(
    decode: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    match panic::catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("decoder panicked".to_owned()),
    }
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, String> {
    decode_guarded(|| T::decode(body, version))
}

/// Encodes the response header (in the version the response type dictates;
/// ApiVersions always uses v0, KIP-511) and the body behind a length prefix.
pub(crate) fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<Frame, Refusal> {
    let mut frame = BytesMut::with_capacity(64);
    frame.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut frame, R::header_version(version))
        .and_then(|()| response.encode(&mut frame, version))
        .map_err(|e| {
            Refusal(format!(
                "mock bug: cannot encode a v{version} response: {e}"
            ))
        })?;
    let len = i32::try_from(frame.len() - 4)
        .map_err(|_| Refusal("mock bug: response larger than 2 GiB".to_owned()))?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}
