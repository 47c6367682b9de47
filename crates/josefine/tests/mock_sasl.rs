//! SASL against the mock broker's user store: PLAIN and both SCRAM variants log in
//! and the client works; a wrong password, an unknown user, a mechanism the broker
//! does not enable and a forged SCRAM server signature are each refused with an
//! authentication error naming the mechanism and the broker (and never the
//! password); a limited session is renewed on the same connection (KIP-368).

use std::time::Duration;

use josefine::protocol::ClientExt;
use josefine::{Client, ErrorKind, NewTopic};
use josefine::{Credentials, SaslConfig};
use josefine_mock::{ApiKey, MockCluster};

const PASSWORD: &str = "correct horse battery staple";

async fn cluster(
    configure: impl FnOnce(josefine_mock::MockClusterBuilder) -> josefine_mock::MockClusterBuilder,
) -> MockCluster {
    configure(
        MockCluster::builder()
            .brokers(2)
            .topic("t", 2)
            .sasl_users([("alice", PASSWORD)]),
    )
    .start()
    .await
    .unwrap()
}

async fn connect(cluster: &MockCluster, sasl: SaslConfig) -> josefine::Result<Client> {
    Client::builder()
        .bootstrap([cluster.bootstrap()])
        .sasl(sasl)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

fn alice(password: &str) -> Credentials {
    Credentials::new("alice", password)
}

fn every_mechanism(credentials: Credentials) -> [SaslConfig; 3] {
    [
        SaslConfig::Plain(credentials.clone()),
        SaslConfig::ScramSha256(credentials.clone()),
        SaslConfig::ScramSha512(credentials),
    ]
}

#[tokio::test]
async fn every_mechanism_logs_in_and_the_client_works() {
    let cluster = cluster(|b| b).await;
    for sasl in every_mechanism(alice(PASSWORD)) {
        let name = sasl.mechanism_name();
        let client = connect(&cluster, sasl)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Requests to every broker go through authenticated connections.
        let topic = format!("created-with-{name}");
        client
            .admin()
            .create_topic(NewTopic::new(&topic, 4))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for broker in client.brokers() {
            broker.api_versions().await.unwrap();
        }
        client.close();
    }
    let handshakes: usize = cluster
        .brokers()
        .iter()
        .map(|b| {
            b.requests()
                .iter()
                .filter(|r| r.api_key == ApiKey::SaslHandshake)
                .count()
        })
        .sum();
    assert!(
        handshakes >= 3,
        "one handshake per connection at least: {handshakes}"
    );
}

/// Asserts `err` is an authentication failure naming `mechanism` and the broker,
/// without the password, and containing `detail`.
fn assert_refused(err: &josefine::Error, mechanism: &str, detail: &str) {
    let text = err.to_string();
    assert!(
        matches!(err.kind(), ErrorKind::Authentication) || text.contains("authentication failed"),
        "{mechanism}: not an authentication error: {text}"
    );
    assert!(text.contains(mechanism), "names the mechanism: {text}");
    assert!(text.contains("127.0.0.1:"), "names the broker: {text}");
    assert!(
        !text.contains(PASSWORD) && !text.contains("wrong-password"),
        "leaks a password: {text}"
    );
    assert!(text.to_lowercase().contains(detail), "{detail:?} in {text}");
    assert!(
        !err.is_retriable(),
        "the same credentials fail again: {text}"
    );
}

#[tokio::test]
async fn a_wrong_password_or_an_unknown_user_is_refused() {
    let cluster = cluster(|b| b).await;
    for sasl in every_mechanism(alice("wrong-password")) {
        let name = sasl.mechanism_name();
        let err = connect(&cluster, sasl).await.unwrap_err();
        assert_refused(&err, name, "refused the credentials");
    }
    for sasl in every_mechanism(Credentials::new("mallory", PASSWORD)) {
        let name = sasl.mechanism_name();
        let err = connect(&cluster, sasl).await.unwrap_err();
        assert_refused(&err, name, "refused the credentials");
    }
}

#[tokio::test]
async fn a_mechanism_the_broker_does_not_enable_names_what_it_offers() {
    let cluster = cluster(|b| b.sasl_mechanisms([josefine_mock::SaslMechanism::Plain])).await;
    let err = connect(&cluster, SaslConfig::ScramSha512(alice(PASSWORD)))
        .await
        .unwrap_err();
    assert_refused(&err, "SCRAM-SHA-512", "it offers plain");
}

#[tokio::test]
async fn a_forged_scram_server_signature_is_refused() {
    let cluster = cluster(|b| b.sasl_forge_server_signature(true)).await;
    for sasl in [
        SaslConfig::ScramSha256(alice(PASSWORD)),
        SaslConfig::ScramSha512(alice(PASSWORD)),
    ] {
        let name = sasl.mechanism_name();
        let err = connect(&cluster, sasl).await.unwrap_err();
        assert_refused(&err, name, "signature");
    }
}

/// The broker limits sessions to 1 s: the client re-authenticates on the same
/// connection before each ends and keeps working for several lifetimes without
/// reconnecting.
#[tokio::test]
async fn a_limited_session_is_renewed_on_the_same_connection() {
    let cluster = cluster(|b| b.sasl_session_lifetime(Duration::from_secs(1))).await;
    let client = connect(&cluster, SaslConfig::ScramSha256(alice(PASSWORD)))
        .await
        .unwrap();
    let broker = client.brokers().remove(0);
    let node = broker.id().unwrap();
    // Open (and authenticate) the node's connection before counting: the seed
    // connection used to bootstrap is a different one.
    broker.api_versions().await.unwrap();
    for other in client.brokers() {
        other.api_versions().await.unwrap();
    }
    let connections = cluster.broker(node).connection_count();
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    while tokio::time::Instant::now() < until {
        client.refresh_metadata(&["t"]).await.unwrap();
        broker.api_versions().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handshakes = cluster
        .broker(node)
        .requests()
        .iter()
        .filter(|r| r.api_key == ApiKey::SaslHandshake)
        .count();
    assert!(
        handshakes >= 3,
        "re-authenticated about every 0.9 s: {handshakes} handshakes"
    );
    assert_eq!(
        cluster.broker(node).connection_count(),
        connections,
        "no new connection was needed"
    );
}

#[test]
fn credentials_never_show_in_debug_output() {
    let sasl = SaslConfig::ScramSha512(alice(PASSWORD));
    let shown = format!("{sasl:?} {:?}", alice(PASSWORD));
    assert!(shown.contains("alice"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    let builder = Client::builder().bootstrap(["127.0.0.1:1"]).sasl(sasl);
    assert!(!format!("{builder:?}").contains(PASSWORD));
    let config = josefine::Config::from_properties([
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", "alice"),
        ("sasl.password", PASSWORD),
    ])
    .unwrap();
    assert!(!format!("{config:?}").contains(PASSWORD));
}

/// OAUTHBEARER with a token from the user's provider (here a fixed token, its own
/// provider): a token the broker knows logs in, another is refused.
#[tokio::test]
async fn oauthbearer_logs_in_with_the_providers_token() {
    use josefine::OAuthToken;
    use std::sync::Arc;
    let cluster = cluster(|b| {
        b.sasl_mechanisms([josefine_mock::SaslMechanism::OAuthBearer])
            .sasl_oauth_tokens([("token-for-alice", "alice")])
    })
    .await;
    let client = connect(
        &cluster,
        SaslConfig::OAuthBearer(Arc::new(OAuthToken::new("token-for-alice"))),
    )
    .await
    .unwrap();
    client.refresh_metadata(&["t"]).await.unwrap();
    client.close();
    let err = connect(
        &cluster,
        SaslConfig::OAuthBearer(Arc::new(OAuthToken::new("forged-token"))),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), &ErrorKind::Authentication, "{text}");
    assert!(
        text.contains("OAUTHBEARER") && !text.contains("forged-token"),
        "{text}"
    );
}
