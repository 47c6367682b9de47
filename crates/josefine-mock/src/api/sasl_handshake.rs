//! SaslHandshake (key 17): the client names its SASL mechanism (KIP-43).
//!
//! Only v1 is advertised: after a v0 handshake Kafka expects raw SASL tokens
//! outside Kafka's framing (before KIP-152), which the mock does not speak. The
//! answer lists the enabled mechanisms; an unknown or disabled mechanism gets
//! UNSUPPORTED_SASL_MECHANISM and the connection closes after it, as Kafka's
//! `SaslServerAuthenticator` does. See [`crate::sasl`] for the state machine.

use bytes::Bytes;
use kafka_protocol::messages::{RequestHeader, SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::protocol::VersionRange;

use super::{Mode, Refusal, Reply};
use crate::broker::Node;
use crate::sasl::Session;

/// What the mock advertises.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

pub(crate) fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
    session: &mut Session,
) -> Result<Reply, Refusal> {
    let version = header.request_api_version;
    let request = super::decode_for::<SaslHandshakeRequest>(node, header, body, mode)?;
    let (code, mechanisms, close) = {
        let server = node.shared.sasl();
        match mode {
            // A test's error leaves the connection's SASL state alone.
            Mode::Error(code) => (code, server.mechanism_names(), false),
            Mode::Normal => {
                let answer = session.handshake(&server, request.mechanism.as_str());
                tracing::debug!(
                    mechanism = request.mechanism.as_str(),
                    error = answer.code,
                    "sasl handshake"
                );
                (answer.code, answer.mechanisms, answer.close)
            }
        }
    };
    let response = SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(
            mechanisms
                .into_iter()
                .map(StrBytes::from_static_str)
                .collect(),
        );
    let frame = super::encode_response(header.correlation_id, version, &response)?;
    Ok(if close {
        Reply::FrameThenClose(frame)
    } else {
        Reply::Frame(frame)
    })
}
