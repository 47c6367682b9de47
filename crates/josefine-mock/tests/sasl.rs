//! SASL on the mock broker, seen from raw requests: the gate before
//! authentication, each mechanism's server side, failures that close the
//! connection, and session lifetimes with re-authentication (KIP-368).
//!
//! The SCRAM client here is the test's own, a third reading of RFC 5802 beside
//! the mock's server and Josefine's client.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use common::{metadata_all, RawClient};
use hmac::{Hmac, Mac};
use josefine_mock::{
    Action, ApiKey, Intercept, MockBroker, MockCluster, ResponseError, SaslMechanism,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, MetadataRequest, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Message, Request, StrBytes};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::AsyncReadExt;

const SASL_AUTHENTICATION_FAILED: i16 = ResponseError::SaslAuthenticationFailed.code();
const UNSUPPORTED_SASL_MECHANISM: i16 = ResponseError::UnsupportedSaslMechanism.code();
const ILLEGAL_SASL_STATE: i16 = ResponseError::IllegalSaslState.code();

async fn sasl_broker() -> MockBroker {
    MockBroker::builder()
        .topic("t", 1)
        .sasl_users([("alice", "secret")])
        .start()
        .await
        .unwrap()
}

async fn handshake(client: &mut RawClient, mechanism: &'static str) -> SaslHandshakeResponse {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    client.call(&request, 1).await
}

async fn authenticate(
    client: &mut RawClient,
    version: i16,
    bytes: impl Into<Vec<u8>>,
) -> SaslAuthenticateResponse {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes.into()));
    client.call(&request, version).await
}

async fn plain_login(
    client: &mut RawClient,
    user: &str,
    password: &str,
) -> SaslAuthenticateResponse {
    let response = handshake(client, "PLAIN").await;
    assert_eq!(response.error_code, 0);
    authenticate(client, 2, format!("\0{user}\0{password}")).await
}

fn message(response: &SaslAuthenticateResponse) -> &str {
    response.error_message.as_deref().unwrap_or_default()
}

/// A SCRAM client, computed from RFC 5802's definitions.
#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Hash::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hi(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations)
                    .to_vec()
            }
            Hash::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password.as_bytes(), salt, iterations)
                    .to_vec()
            }
        }
    }
}

/// What a SCRAM exchange ended with.
#[derive(Debug)]
enum ScramEnd {
    /// The server accepted the proof; whether its signature was the right one.
    Accepted { signature_ok: bool },
    /// The server refused, with this response.
    Refused(SaslAuthenticateResponse),
}

async fn scram_login(client: &mut RawClient, hash: Hash, user: &str, password: &str) -> ScramEnd {
    let response = handshake(client, hash.mechanism()).await;
    assert_eq!(response.error_code, 0);
    let bare = format!("n={user},r=test-client-nonce");
    let first = authenticate(client, 2, format!("n,,{bare}")).await;
    if first.error_code != 0 {
        return ScramEnd::Refused(first);
    }
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
    let mut fields = server_first.split(',');
    let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
    assert!(nonce.len() > "test-client-nonce".len());
    assert!(nonce.starts_with("test-client-nonce"), "{server_first}");
    let salt = BASE64
        .decode(fields.next().unwrap().strip_prefix("s=").unwrap())
        .unwrap();
    let iterations: u32 = fields
        .next()
        .unwrap()
        .strip_prefix("i=")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(iterations, 4096);

    let salted = hash.hi(password, &salt, iterations);
    let client_key = hash.hmac(&salted, b"Client Key");
    let stored_key = hash.h(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hash.hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let last = authenticate(
        client,
        2,
        format!("{without_proof},p={}", BASE64.encode(proof)),
    )
    .await;
    if last.error_code != 0 {
        return ScramEnd::Refused(last);
    }
    let server_key = hash.hmac(&salted, b"Server Key");
    let expected = format!(
        "v={}",
        BASE64.encode(hash.hmac(&server_key, auth_message.as_bytes()))
    );
    ScramEnd::Accepted {
        signature_ok: last.auth_bytes == expected.as_bytes(),
    }
}

async fn metadata_works(client: &mut RawClient) {
    let response = client.call(&metadata_all(12), 12).await;
    assert_eq!(response.topics.len(), 1);
}

#[tokio::test]
async fn api_versions_is_answered_before_authentication_and_lists_the_sasl_apis() {
    let broker = sasl_broker().await;
    let mut client = RawClient::connect(&broker).await;
    let response = client.call(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(response.error_code, 0);
    let range = |key: ApiKey| {
        response
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::SaslHandshake), Some((1, 1)));
    assert_eq!(
        range(ApiKey::SaslAuthenticate),
        Some((0, SaslAuthenticateRequest::VERSIONS.max))
    );
    // Still allowed to authenticate afterwards.
    assert_eq!(
        plain_login(&mut client, "alice", "secret").await.error_code,
        0
    );
}

#[tokio::test]
async fn plain_authentication_unlocks_the_other_apis() {
    let broker = sasl_broker().await;
    let mut client = RawClient::connect(&broker).await;
    let response = handshake(&mut client, "PLAIN").await;
    assert_eq!(response.error_code, 0);
    let mechanisms: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(mechanisms, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    let response = authenticate(&mut client, 2, "\0alice\0secret").await;
    assert_eq!(response.error_code, 0, "{}", message(&response));
    assert!(response.auth_bytes.is_empty());
    assert_eq!(response.session_lifetime_ms, 0, "no lifetime configured");
    metadata_works(&mut client).await;
}

#[tokio::test]
async fn a_wrong_password_fails_and_closes_the_connection() {
    let broker = sasl_broker().await;
    let mut client = RawClient::connect(&broker).await;
    let response = plain_login(&mut client, "alice", "wrong").await;
    assert_eq!(response.error_code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(
        message(&response),
        "Authentication failed: Invalid username or password"
    );
    client.expect_closed().await;
}

#[tokio::test]
async fn an_unknown_user_fails_and_closes_the_connection() {
    let broker = sasl_broker().await;
    let mut client = RawClient::connect(&broker).await;
    let response = plain_login(&mut client, "mallory", "secret").await;
    assert_eq!(response.error_code, SASL_AUTHENTICATION_FAILED);
    assert!(message(&response).starts_with("Authentication failed"));
    client.expect_closed().await;

    let mut client = RawClient::connect(&broker).await;
    match scram_login(&mut client, Hash::Sha256, "mallory", "secret").await {
        ScramEnd::Refused(response) => {
            assert_eq!(response.error_code, SASL_AUTHENTICATION_FAILED);
            assert!(
                message(&response)
                    .contains("invalid credentials with SASL mechanism SCRAM-SHA-256"),
                "{}",
                message(&response)
            );
        }
        other => panic!("{other:?}"),
    }
    client.expect_closed().await;
}

#[tokio::test]
async fn scram_authenticates_and_proves_the_server_knows_the_password() {
    let broker = sasl_broker().await;
    for hash in [Hash::Sha256, Hash::Sha512] {
        let mut client = RawClient::connect(&broker).await;
        match scram_login(&mut client, hash, "alice", "secret").await {
            ScramEnd::Accepted { signature_ok } => assert!(signature_ok, "{}", hash.mechanism()),
            other => panic!("{}: {other:?}", hash.mechanism()),
        }
        metadata_works(&mut client).await;
    }
}

#[tokio::test]
async fn scram_with_a_wrong_password_fails_at_the_proof() {
    let broker = sasl_broker().await;
    let mut client = RawClient::connect(&broker).await;
    match scram_login(&mut client, Hash::Sha512, "alice", "wrong").await {
        ScramEnd::Refused(response) => {
            assert_eq!(response.error_code, SASL_AUTHENTICATION_FAILED);
            assert!(
                message(&response).contains("SCRAM-SHA-512"),
                "{}",
                message(&response)
            );
        }
        other => panic!("{other:?}"),
    }
    client.expect_closed().await;
}

#[tokio::test]
async fn a_forged_server_signature_does_not_verify() {
    let broker = MockBroker::builder()
        .sasl_users([("alice", "secret")])
        .sasl_forge_server_signature(true)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    match scram_login(&mut client, Hash::Sha256, "alice", "secret").await {
        ScramEnd::Accepted { signature_ok } => assert!(!signature_ok, "the signature is forged"),
        other => panic!("{other:?}"),
    }
    broker.set_sasl_forge_server_signature(false);
    let mut client = RawClient::connect(&broker).await;
    match scram_login(&mut client, Hash::Sha256, "alice", "secret").await {
        ScramEnd::Accepted { signature_ok } => assert!(signature_ok),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn requests_out_of_turn_close_the_connection() {
    let broker = sasl_broker().await;

    // Metadata before authentication: closed without an answer, as Kafka does.
    let mut client = RawClient::connect(&broker).await;
    client.send(&metadata_all(12), 12).await;
    client.expect_closed().await;
    assert!(broker
        .requests()
        .iter()
        .any(|r| r.api_key == ApiKey::Metadata));

    // SaslAuthenticate without a handshake.
    let mut client = RawClient::connect(&broker).await;
    let request =
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0alice\0secret"));
    client.send(&request, 2).await;
    client.expect_closed().await;

    // After the handshake only SaslAuthenticate: not even ApiVersions.
    let mut client = RawClient::connect(&broker).await;
    assert_eq!(handshake(&mut client, "PLAIN").await.error_code, 0);
    client.send(&ApiVersionsRequest::default(), 3).await;
    client.expect_closed().await;
}

#[tokio::test]
async fn an_unsupported_mechanism_gets_the_enabled_list_then_a_close() {
    let broker = MockBroker::builder()
        .sasl_users([("alice", "secret")])
        .sasl_mechanisms([SaslMechanism::ScramSha512, SaslMechanism::Plain])
        .start()
        .await
        .unwrap();
    for mechanism in ["SCRAM-SHA-256", "GSSAPI"] {
        let mut client = RawClient::connect(&broker).await;
        let response = handshake(&mut client, mechanism).await;
        assert_eq!(
            response.error_code, UNSUPPORTED_SASL_MECHANISM,
            "{mechanism}"
        );
        let listed: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
        assert_eq!(listed, ["SCRAM-SHA-512", "PLAIN"]);
        client.expect_closed().await;
    }
}

#[tokio::test]
async fn without_sasl_the_sasl_apis_answer_illegal_sasl_state() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    assert_eq!(
        handshake(&mut client, "PLAIN").await.error_code,
        ILLEGAL_SASL_STATE
    );
    let response = authenticate(&mut client, 2, "\0alice\0secret").await;
    assert_eq!(response.error_code, ILLEGAL_SASL_STATE);
    metadata_works(&mut client).await;
}

/// Reads one response without a timer: under a paused clock any pending timer
/// would let tokio jump the clock while the response is on its way.
async fn call_untimed<R: Request>(
    client: &mut RawClient,
    request: &R,
    version: i16,
) -> R::Response {
    let correlation_id = client.send(request, version).await;
    let len = client.stream.read_i32().await.expect("a response");
    let mut frame = vec![0; usize::try_from(len).unwrap()];
    client.stream.read_exact(&mut frame).await.unwrap();
    let mut frame = Bytes::from(frame);
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    R::Response::decode(&mut frame, version).unwrap()
}

async fn plain_login_untimed(client: &mut RawClient) -> SaslAuthenticateResponse {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    assert_eq!(call_untimed(client, &request, 1).await.error_code, 0);
    let request =
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0alice\0secret"));
    call_untimed(client, &request, 2).await
}

async fn expect_closed_untimed(client: &mut RawClient) {
    let mut buf = [0u8; 16];
    match client.stream.read(&mut buf).await {
        Ok(0) => {}
        Ok(n) => panic!("expected a close, got {n} bytes"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[tokio::test(start_paused = true)]
async fn sessions_expire_and_reauthentication_resets_the_lifetime() {
    let broker = MockBroker::builder()
        .topic("t", 1)
        .sasl_users([("alice", "secret")])
        .sasl_session_lifetime(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    let response = plain_login_untimed(&mut client).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.session_lifetime_ms, 60_000);

    // Re-authenticate (KIP-368) on the same connection at 40 s ...
    tokio::time::advance(Duration::from_secs(40)).await;
    let response = plain_login_untimed(&mut client).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.session_lifetime_ms, 60_000);

    // ... so at 90 s, past the first session's end, the connection still serves.
    tokio::time::advance(Duration::from_secs(50)).await;
    let metadata = call_untimed(&mut client, &metadata_all(12), 12).await;
    assert_eq!(metadata.topics.len(), 1);

    // At 100 s the second session is over too: the next request closes it.
    tokio::time::advance(Duration::from_secs(10)).await;
    client.send(&MetadataRequest::default(), 12).await;
    expect_closed_untimed(&mut client).await;

    // A connection that authenticated without re-authenticating is closed at
    // its first request after the lifetime, ApiVersions included.
    let mut client = RawClient::connect(&broker).await;
    assert_eq!(plain_login_untimed(&mut client).await.error_code, 0);
    tokio::time::advance(Duration::from_secs(60)).await;
    client.send(&ApiVersionsRequest::default(), 3).await;
    expect_closed_untimed(&mut client).await;
}

#[tokio::test]
async fn sasl_authenticate_v0_has_no_session_lifetime_field() {
    let broker = MockBroker::builder()
        .sasl_users([("alice", "secret")])
        .sasl_session_lifetime(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    assert_eq!(handshake(&mut client, "PLAIN").await.error_code, 0);
    let response = authenticate(&mut client, 0, "\0alice\0secret").await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.session_lifetime_ms, 0);
}

#[tokio::test]
async fn oauthbearer_accepts_registered_tokens_and_reports_others() {
    let broker = MockBroker::builder()
        .topic("t", 1)
        .sasl_mechanisms([SaslMechanism::OAuthBearer])
        .sasl_oauth_tokens([("good-token", "alice")])
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    assert_eq!(handshake(&mut client, "OAUTHBEARER").await.error_code, 0);
    let response = authenticate(&mut client, 2, "n,,\x01auth=Bearer good-token\x01\x01").await;
    assert_eq!(response.error_code, 0, "{}", message(&response));
    metadata_works(&mut client).await;

    // RFC 7628: the error comes as a challenge, the client acknowledges it.
    let mut client = RawClient::connect(&broker).await;
    assert_eq!(handshake(&mut client, "OAUTHBEARER").await.error_code, 0);
    let response = authenticate(&mut client, 2, "n,,\x01auth=Bearer bad-token\x01\x01").await;
    assert_eq!(response.error_code, 0);
    assert_eq!(
        response.auth_bytes,
        Bytes::from_static(br#"{"status":"invalid_token"}"#)
    );
    let response = authenticate(&mut client, 2, "\x01").await;
    assert_eq!(response.error_code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(message(&response), r#"{"status":"invalid_token"}"#);
    client.expect_closed().await;
}

#[tokio::test]
async fn a_cluster_requires_sasl_on_every_broker_with_shared_users() {
    let cluster = MockCluster::builder()
        .brokers(2)
        .topic("t", 1)
        .sasl_users([("alice", "secret")])
        .start()
        .await
        .unwrap();
    for node_id in [1, 2] {
        let mut client = RawClient::connect_to(&cluster, node_id).await;
        client.send(&metadata_all(12), 12).await;
        client.expect_closed().await;
    }
    cluster.set_sasl_user("bob", "pw");
    let mut client = RawClient::connect_to(&cluster, 2).await;
    assert_eq!(plain_login(&mut client, "bob", "pw").await.error_code, 0);
    metadata_works(&mut client).await;

    assert!(cluster.remove_sasl_user("bob"));
    assert!(!cluster.remove_sasl_user("bob"));
    let mut client = RawClient::connect_to(&cluster, 1).await;
    assert_eq!(
        plain_login(&mut client, "bob", "pw").await.error_code,
        SASL_AUTHENTICATION_FAILED
    );
}

#[tokio::test]
async fn an_injected_error_leaves_the_exchange_where_it_was() {
    let broker = sasl_broker().await;
    let rule = broker.intercept(
        Intercept::api(ApiKey::SaslAuthenticate).once(),
        Action::error(ResponseError::SaslAuthenticationFailed),
    );
    let mut client = RawClient::connect(&broker).await;
    let response = plain_login(&mut client, "alice", "secret").await;
    assert_eq!(response.error_code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(rule.hits(), 1);
    // Not closed, and still waiting for the token.
    let response = authenticate(&mut client, 2, "\0alice\0secret").await;
    assert_eq!(response.error_code, 0);
    metadata_works(&mut client).await;
}

/// Deterministic mode: the same seed gives the same SCRAM salts and server
/// nonces (so the same server-first message to the same client-first), and
/// logins still work; without a seed, salts are random.
#[tokio::test]
async fn a_seed_fixes_scram_salts_and_nonces() {
    async fn server_firsts(seed: Option<u64>) -> Vec<String> {
        let mut builder = MockCluster::builder()
            .brokers(1)
            .sasl_users([("alice", "secret"), ("bob", "pw")]);
        if let Some(seed) = seed {
            builder = builder.deterministic(seed);
        }
        let cluster = builder.start().await.unwrap();
        let mut out = Vec::new();
        for user in ["alice", "bob", "alice"] {
            let mut client = RawClient::connect_to(&cluster, 1).await;
            assert_eq!(handshake(&mut client, "SCRAM-SHA-256").await.error_code, 0);
            let first = authenticate(&mut client, 2, format!("n,,n={user},r=fixed")).await;
            assert_eq!(first.error_code, 0);
            out.push(String::from_utf8(first.auth_bytes.to_vec()).unwrap());
        }
        let mut client = RawClient::connect_to(&cluster, 1).await;
        assert!(matches!(
            scram_login(&mut client, Hash::Sha512, "bob", "pw").await,
            ScramEnd::Accepted { signature_ok: true }
        ));
        out
    }
    let salt = |server_first: &str| server_first.split(',').nth(1).unwrap().to_owned();
    let first = server_firsts(Some(5)).await;
    assert_eq!(first, server_firsts(Some(5)).await);
    assert_eq!(salt(&first[0]), salt(&first[2]), "one salt per user");
    assert_ne!(salt(&first[0]), salt(&first[1]));
    assert_ne!(first[0], first[2], "a fresh nonce per exchange");
    let other = server_firsts(Some(6)).await;
    assert_ne!(salt(&first[0]), salt(&other[0]));
    let random = server_firsts(None).await;
    assert_ne!(salt(&random[0]), salt(&server_firsts(None).await[0]));
}
