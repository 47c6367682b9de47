//! SASL on a fresh connection, after ApiVersions: SaslHandshake names the mechanism,
//! then SaslAuthenticate (v1+ framing, KIP-152) carries the mechanism's messages
//! ([`super::sasl`]) until it is done.
//!
//! A broker may limit the session (KIP-368: `session_lifetime_ms` in the last
//! SaslAuthenticate answer). The connection then re-authenticates on its own at 85-95%
//! of the lifetime (the Java client's window), so it is never cut off; if that fails,
//! the connection is poisoned and the next use opens and authenticates a new one.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Message, StrBytes};

use super::connection::Connection;
use super::sasl::{mechanism, SaslConfig};
use crate::backoff::jitter_unit;
use crate::error::{Error, ErrorKind, KafkaCode, Result};
use crate::protocol::versions::ApiVersionTable;
use crate::protocol::KafkaRequest;

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// Authenticates `connection` to `broker`; the session lifetime the broker set, if any.
pub(crate) async fn authenticate(
    connection: &Connection,
    versions: &ApiVersionTable,
    sasl: &SaslConfig,
    broker: &str,
    timeout: Duration,
) -> Result<Option<Duration>> {
    let name = sasl.mechanism_name();
    let failed = |message: String| {
        Error::new(
            ErrorKind::Authentication,
            format!("SASL {name} at broker {broker}: {message}"),
        )
    };
    let token = match sasl {
        SaslConfig::OAuthBearer(provider) => Some(
            provider
                .token()
                .await
                .map_err(|e| failed(format!("the OAUTHBEARER token provider failed: {e}")))?,
        ),
        _ => None,
    };

    let handshake_version = versions
        .negotiate(
            SaslHandshakeRequest::API_KEY,
            SaslHandshakeRequest::VERSIONS,
        )
        .map_err(|_| {
            failed(
                "the broker does not speak SaslHandshake; is SASL enabled on this listener?".into(),
            )
        })?;
    if handshake_version < 1 {
        return Err(failed(
            "the broker only speaks SaslHandshake v0 (Kafka before 1.0), which this client does not support".into(),
        ));
    }
    let handshake = connection
        .call(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name)),
            handshake_version,
            timeout,
        )
        .await?;
    match handshake.error_code {
        0 => {}
        UNSUPPORTED_SASL_MECHANISM => {
            let offered: Vec<String> = handshake.mechanisms.iter().map(|m| m.to_string()).collect();
            let message = if offered.iter().any(|m| m == name) {
                // Tansu answers so for SCRAM without a credential store (librdkafka
                // sees the same).
                format!(
                    "the broker refused this mechanism although it lists it (offered: {}); \
                     it may have no credentials set up for it",
                    offered.join(", ")
                )
            } else {
                format!(
                    "the broker does not enable this mechanism; it offers {}",
                    if offered.is_empty() {
                        "none".to_string()
                    } else {
                        offered.join(", ")
                    }
                )
            };
            return Err(failed(message));
        }
        code => {
            return Err(failed(format!(
                "SaslHandshake answered {}",
                KafkaCode::from_code(code).map_or(code.to_string(), |c| c.to_string())
            )))
        }
    }

    let authenticate_version = versions
        .negotiate(
            SaslAuthenticateRequest::API_KEY,
            SaslAuthenticateRequest::VERSIONS,
        )
        .map_err(|e| failed(format!("{e}")))?;
    let mut exchange = mechanism(sasl, token)?;
    let mut server: Option<Bytes> = None;
    let mut lifetime = None;
    loop {
        let step = exchange
            .step(server.as_deref())
            .map_err(|e| failed(e.to_string()))?;
        let Some(message) = step else { break };
        let response = connection
            .call(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)),
                authenticate_version,
                timeout,
            )
            .await?;
        if response.error_code != 0 {
            let detail = response
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_else(|| response.error_code.to_string());
            return Err(failed(format!(
                "the broker refused the credentials: {detail}"
            )));
        }
        if response.session_lifetime_ms > 0 {
            lifetime = Some(Duration::from_millis(response.session_lifetime_ms as u64));
        }
        server = Some(response.auth_bytes);
    }
    Ok(lifetime)
}

/// Keeps re-authenticating `connection` before each session lifetime ends (KIP-368),
/// until the connection closes. Poisons it when re-authentication fails.
pub(crate) async fn keep_authenticated(
    connection: Connection,
    versions: std::sync::Arc<ApiVersionTable>,
    sasl: SaslConfig,
    broker: String,
    timeout: Duration,
    mut lifetime: Duration,
) {
    loop {
        // 85-95% of the lifetime, randomized so connections do not re-auth in step.
        let fraction = 0.85 + 0.10 * jitter_unit();
        tokio::time::sleep(lifetime.mul_f64(fraction)).await;
        if connection.is_closed() {
            return;
        }
        match authenticate(&connection, &versions, &sasl, &broker, timeout).await {
            Ok(Some(next)) => {
                tracing::debug!(broker, ?next, "re-authenticated");
                lifetime = next;
            }
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(broker, error = %err, "re-authentication failed; reconnecting");
                connection.poison(err);
                return;
            }
        }
    }
}
