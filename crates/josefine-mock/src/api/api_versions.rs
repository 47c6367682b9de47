//! ApiVersions (key 18): which APIs and versions this broker speaks.
//!
//! Implements KIP-35 (the API itself) and KIP-511's fallback: a client that
//! opens with an ApiVersions version the broker does not know gets a v0
//! response with UNSUPPORTED_VERSION and the broker's ranges, which every
//! client can parse, so it can retry with a version both sides support.
//! The advertised ranges come from the builder (see
//! [`MockBrokerBuilder::api_versions`](crate::MockBrokerBuilder::api_versions)).

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};

use super::{Frame, Handler, Mode, Refusal, UNSUPPORTED_VERSION};
use crate::broker::Node;

pub(crate) struct ApiVersions;

impl Handler for ApiVersions {
    type Request = ApiVersionsRequest;

    fn handle(node: &Node, _request: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(api_keys(node))
    }

    fn error_response(
        node: &Node,
        _request: &ApiVersionsRequest,
        _version: i16,
        code: i16,
    ) -> ApiVersionsResponse {
        let response = ApiVersionsResponse::default().with_error_code(code);
        // Kafka only lists its ranges alongside UNSUPPORTED_VERSION; with any
        // other error the client has nothing to negotiate.
        if code == UNSUPPORTED_VERSION {
            response.with_api_keys(api_keys(node))
        } else {
            response
        }
    }
}

pub(crate) fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
) -> Result<Frame, Refusal> {
    let version = header.request_api_version;
    let key = ApiKey::ApiVersions as i16;
    if node.advertises(key, version) && super::codec_supports::<ApiVersionsRequest>(version) {
        return super::serve_with::<ApiVersions>(node, header, body, mode);
    }
    // The body of an unknown version cannot be parsed, and need not be: the
    // fallback answer depends on nothing in it.
    let code = match mode {
        Mode::Normal => UNSUPPORTED_VERSION,
        Mode::Error(code) => code,
    };
    let response = ApiVersions::error_response(node, &ApiVersionsRequest::default(), 0, code);
    super::encode_response(header.correlation_id, 0, &response)
}

fn api_keys(node: &Node) -> Vec<ApiVersion> {
    node.advertised()
        .map(|(key, range)| {
            ApiVersion::default()
                .with_api_key(key)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect()
}
