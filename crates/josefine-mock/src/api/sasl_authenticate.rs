//! SaslAuthenticate (key 36): one SASL token each way (KIP-152), with the session
//! lifetime from v1 (KIP-368).
//!
//! A failed authentication is answered with its error code and message, then
//! the connection closes, as Kafka does. See [`crate::sasl`] for the state
//! machine and the mechanisms.

use bytes::Bytes;
use kafka_protocol::messages::{RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Mode, Refusal, Reply};
use crate::broker::Node;
use crate::coordinator;
use crate::sasl::{AuthenticateAnswer, Session};

pub(crate) fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
    session: &mut Session,
) -> Result<Reply, Refusal> {
    let version = header.request_api_version;
    let request = super::decode_for::<SaslAuthenticateRequest>(node, header, body, mode)?;
    let answer = match mode {
        // A test's error leaves the connection's SASL state alone.
        Mode::Error(code) => AuthenticateAnswer::Failed {
            code,
            message: "error injected by the test".to_owned(),
            close: false,
        },
        Mode::Normal => {
            let server = node.shared.sasl();
            session.authenticate(&server, &request.auth_bytes, coordinator::now())
        }
    };
    let mut close = false;
    let response = match answer {
        AuthenticateAnswer::Continue(bytes) => {
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes))
        }
        AuthenticateAnswer::Authenticated {
            auth_bytes,
            session_lifetime,
        } => {
            tracing::debug!(?session_lifetime, "sasl authenticated");
            let response =
                SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(auth_bytes));
            // The field exists from v1; v0 clients are not told (but still expire).
            match session_lifetime {
                Some(lifetime) if version >= 1 => response.with_session_lifetime_ms(
                    i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
                ),
                _ => response,
            }
        }
        AuthenticateAnswer::Failed {
            code,
            message,
            close: then_close,
        } => {
            tracing::debug!(error = code, %message, "sasl authentication failed");
            close = then_close;
            SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    };
    let frame = super::encode_response(header.correlation_id, version, &response)?;
    Ok(if close {
        Reply::FrameThenClose(frame)
    } else {
        Reply::Frame(frame)
    })
}
