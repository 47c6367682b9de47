//! The mechanisms against the mock broker's SASL server, which is written separately
//! (its SCRAM shares no code with ours): a minimal sequential driver over a raw socket,
//! standing in for the connection-setup driver.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use josefine_mock::{MockBroker, SaslMechanism};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::protocol::frame::{decode_response, encode_request};
use crate::protocol::KafkaRequest;

/// How an exchange ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Authenticated,
    /// The broker's SaslHandshake or SaslAuthenticate error code and message.
    Refused(i16, String),
    /// Our mechanism refused to go on.
    Client(SaslError),
}

async fn call<R: KafkaRequest>(stream: &mut TcpStream, request: &R, version: i16) -> R::Response {
    let mut buf = BytesMut::new();
    encode_request(&mut buf, request, version, 1, None).unwrap();
    stream.write_all(&buf).await.unwrap();
    let len = stream.read_i32().await.expect("a response");
    let mut frame = vec![0; usize::try_from(len).unwrap()];
    stream.read_exact(&mut frame).await.unwrap();
    decode_response::<R>(Bytes::from(frame), version).unwrap()
}

async fn run(broker: &MockBroker, config: &SaslConfig, token: Option<OAuthToken>) -> End {
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let handshake = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_static_str(config.mechanism_name()));
    let answer = call(&mut stream, &handshake, 1).await;
    if answer.error_code != 0 {
        return End::Refused(answer.error_code, String::new());
    }
    let mut mechanism = mechanism(config, token).unwrap();
    let mut server: Option<Bytes> = None;
    loop {
        let next = match mechanism.step(server.as_deref()) {
            Ok(Some(next)) => next,
            Ok(None) => return End::Authenticated,
            Err(e) => return End::Client(e),
        };
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(next));
        let answer = call(&mut stream, &request, 2).await;
        if answer.error_code != 0 {
            let message = answer
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            return End::Refused(answer.error_code, message);
        }
        server = Some(answer.auth_bytes);
    }
}

async fn broker(
    configure: impl FnOnce(josefine_mock::MockBrokerBuilder) -> josefine_mock::MockBrokerBuilder,
) -> MockBroker {
    configure(MockBroker::builder().sasl_users([("alice", "secret"), ("b,o=b", "pw")]))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn plain_and_scram_authenticate_against_the_mock() {
    let broker = broker(|b| b).await;
    let alice = || Credentials::new("alice", "secret");
    for config in [
        SaslConfig::Plain(alice()),
        SaslConfig::ScramSha256(alice()),
        SaslConfig::ScramSha512(alice()),
        // A username that SCRAM must escape.
        SaslConfig::ScramSha256(Credentials::new("b,o=b", "pw")),
    ] {
        assert_eq!(
            run(&broker, &config, None).await,
            End::Authenticated,
            "{config:?}"
        );
    }
}

#[tokio::test]
async fn wrong_passwords_are_refused_by_the_mock() {
    let broker = broker(|b| b).await;
    let wrong = || Credentials::new("alice", "wrong");
    for config in [
        SaslConfig::Plain(wrong()),
        SaslConfig::ScramSha256(wrong()),
        SaslConfig::ScramSha512(wrong()),
    ] {
        match run(&broker, &config, None).await {
            End::Refused(58, message) => {
                assert!(message.starts_with("Authentication failed"), "{message}")
            }
            other => panic!("{config:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_forged_server_signature_is_caught() {
    let broker = broker(|b| b.sasl_forge_server_signature(true)).await;
    for config in [
        SaslConfig::ScramSha256(Credentials::new("alice", "secret")),
        SaslConfig::ScramSha512(Credentials::new("alice", "secret")),
    ] {
        assert_eq!(
            run(&broker, &config, None).await,
            End::Client(SaslError::ServerSignatureMismatch),
            "{config:?}"
        );
    }
}

#[tokio::test]
async fn a_disabled_mechanism_is_refused_at_the_handshake() {
    let broker = broker(|b| b.sasl_mechanisms([SaslMechanism::ScramSha512])).await;
    let config = SaslConfig::Plain(Credentials::new("alice", "secret"));
    assert_eq!(
        run(&broker, &config, None).await,
        End::Refused(33, String::new())
    );
}

#[tokio::test]
async fn oauthbearer_against_the_mock() {
    let broker = broker(|b| {
        b.sasl_mechanisms([SaslMechanism::OAuthBearer])
            .sasl_oauth_tokens([("good.token", "alice")])
    })
    .await;
    let provider: Arc<dyn OAuthTokenProvider> = Arc::new(OAuthToken::new("unused"));
    let config = SaslConfig::OAuthBearer(provider);

    let mut token = OAuthToken::new("good.token");
    token.principal = Some("alice".into());
    token.extensions.push(("traceId".into(), "42".into()));
    assert_eq!(run(&broker, &config, Some(token)).await, End::Authenticated);

    // RFC 7628's error path: the client acknowledges the JSON, the broker fails.
    match run(&broker, &config, Some(OAuthToken::new("bad.token"))).await {
        End::Refused(58, message) => assert!(message.contains("invalid_token"), "{message}"),
        other => panic!("{other:?}"),
    }
}
