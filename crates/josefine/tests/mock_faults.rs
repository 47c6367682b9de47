//! The client against `josefine-mock` with injected faults: version negotiation and
//! fallback, typed errors, timeouts, broken connections, reconnects, coalescing.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use josefine::protocol::ClientExt;
use josefine::{Client, ErrorKind, KafkaCode};
use josefine_mock::{Action, ApiKey, Intercept, MockBroker, ResponseError};

async fn client(broker: &MockBroker) -> Client {
    client_with(broker, Duration::from_secs(5)).await
}

async fn client_with(broker: &MockBroker, request_timeout: Duration) -> Client {
    Client::builder()
        .bootstrap([broker.bootstrap()])
        .request_timeout(request_timeout)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .expect("connect to the mock broker")
}

fn versions_sent(broker: &MockBroker, api: ApiKey) -> Vec<i16> {
    broker
        .requests()
        .iter()
        .filter(|r| r.api_key == api)
        .map(|r| r.api_version)
        .collect()
}

#[tokio::test]
async fn api_versions_falls_back_when_the_broker_speaks_an_older_one() {
    let broker = MockBroker::builder()
        .api_versions(ApiKey::ApiVersions, 0, 2)
        .topic("t", 2)
        .start()
        .await
        .unwrap();
    let client = client(&broker).await;
    assert_eq!(client.partitions("t").await.unwrap(), [0, 1]);
    let sent = versions_sent(&broker, ApiKey::ApiVersions);
    assert!(sent.len() >= 2, "{sent:?}");
    assert!(sent[0] > 2, "first try uses our newest version: {sent:?}");
    assert_eq!(sent[1], 2, "the retry uses the broker's newest: {sent:?}");
}

#[tokio::test]
async fn each_api_uses_the_highest_version_both_sides_speak() {
    let broker = MockBroker::builder()
        .api_versions(ApiKey::Metadata, 0, 4)
        .topic("t", 1)
        .start()
        .await
        .unwrap();
    let client = client(&broker).await;
    client.refresh_metadata(&["t"]).await.unwrap();
    let sent = versions_sent(&broker, ApiKey::Metadata);
    assert!(!sent.is_empty() && sent.iter().all(|&v| v == 4), "{sent:?}");
}

#[tokio::test]
async fn an_api_the_broker_lacks_is_an_unsupported_version_error() {
    let broker = MockBroker::builder()
        .without_api(ApiKey::Metadata)
        .start()
        .await
        .unwrap();
    let err = Client::builder()
        .bootstrap([broker.bootstrap()])
        .connect()
        .await
        .unwrap_err();
    // Connect reports that no broker could answer, with the reason inside.
    assert_eq!(err.kind(), &ErrorKind::NoBrokerAvailable, "{err}");
    assert!(err.to_string().contains("Metadata"), "{err}");
}

#[tokio::test]
async fn topic_error_codes_become_typed_retriable_errors() {
    // Metadata v12: errors are per topic (v13 can also fail the whole response).
    let broker = MockBroker::builder()
        .api_versions(ApiKey::Metadata, 0, 12)
        .topic("t", 1)
        .start()
        .await
        .unwrap();
    let client = client(&broker).await;
    broker.intercept(
        Intercept::api(ApiKey::Metadata).once(),
        Action::error(ResponseError::LeaderNotAvailable),
    );
    let err = client.leader("t", 0).await.unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::LEADER_NOT_AVAILABLE), "{err}");
    assert!(err.is_retriable());
    assert_eq!(err.context().topic(), Some("t"));
    // The fault was one-off: the next lookup refreshes and succeeds.
    assert_eq!(
        client.leader("t", 0).await.unwrap().id(),
        Some(broker.node_id())
    );
}

#[tokio::test]
async fn concurrent_refreshes_are_coalesced() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let client = client(&broker).await;
    let before = versions_sent(&broker, ApiKey::Metadata).len();
    broker.intercept(
        Intercept::api(ApiKey::Metadata),
        Action::Delay(Duration::from_millis(200)),
    );
    let refreshes = (0..16).map(|_| client.refresh_metadata(&["t"]));
    for result in futures::future::join_all(refreshes).await {
        result.unwrap();
    }
    let sent = versions_sent(&broker, ApiKey::Metadata).len() - before;
    // One refresh for the first caller; the other fifteen join it (a second one at
    // most, if the first finished before all of them asked).
    assert!(
        sent <= 2,
        "{sent} Metadata requests for 16 concurrent refreshes"
    );
}

#[tokio::test]
async fn a_slow_broker_times_out_and_the_next_call_reconnects() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let client = client_with(&broker, Duration::from_millis(300)).await;
    let node = client.brokers().pop().unwrap();
    let connections = broker.connection_count();
    broker.intercept(
        Intercept::api(ApiKey::Metadata).once(),
        Action::Delay(Duration::from_secs(2)),
    );
    let err = node
        .call(&kafka_protocol::messages::MetadataRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(err.is_retriable());
    node.call(&kafka_protocol::messages::MetadataRequest::default())
        .await
        .unwrap();
    assert!(
        broker.connection_count() > connections,
        "a new connection replaced the stuck one"
    );
}

#[tokio::test]
async fn a_metadata_refresh_survives_one_stuck_connection() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let client = client_with(&broker, Duration::from_millis(300)).await;
    broker.intercept(
        Intercept::api(ApiKey::Metadata).once(),
        Action::Delay(Duration::from_secs(2)),
    );
    // The known broker times out; the refresh moves on to the next candidate.
    let md = client.refresh_metadata(&["t"]).await.unwrap();
    assert_eq!(md.topic("t").unwrap().partitions.len(), 1);
}

#[tokio::test]
async fn garbage_disconnects_and_half_responses_are_typed_errors_then_recovered() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let client = client(&broker).await;
    let seed_broker = client.brokers().pop().unwrap();

    let cases: Vec<(Action, ErrorKind)> = vec![
        (
            Action::Garbage(Bytes::from_static(b"\x7f\xff\xff\xffnot kafka")),
            ErrorKind::Protocol,
        ),
        (Action::Disconnect, ErrorKind::ConnectionClosed),
        (Action::HalfResponse, ErrorKind::ConnectionClosed),
    ];
    for (action, kind) in cases {
        let connections = broker.connection_count();
        broker.intercept(Intercept::api(ApiKey::Metadata).once(), action.clone());
        let err = seed_broker
            .call(&kafka_protocol::messages::MetadataRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &kind, "{action:?}: {err}");
        assert_eq!(err.context().api(), Some("Metadata"));
        assert!(err.context().broker().is_some(), "{err}");
        assert!(err.is_retriable() || kind == ErrorKind::Protocol);
        // The next call reconnects on its own.
        seed_broker
            .call(&kafka_protocol::messages::MetadataRequest::default())
            .await
            .unwrap_or_else(|e| panic!("after {action:?}: {e}"));
        assert!(
            broker.connection_count() > connections,
            "{action:?} forced a reconnect"
        );
    }
}

#[tokio::test]
async fn a_response_with_a_foreign_correlation_id_is_a_protocol_error() {
    let broker = MockBroker::builder().start().await.unwrap();
    let client = client(&broker).await;
    let mut body = BytesMut::new();
    body.put_i32(987_654); // a correlation id no request used
    body.put_slice(&[0; 16]);
    broker.intercept(
        Intercept::api(ApiKey::Metadata).once(),
        Action::RawResponse(body.freeze()),
    );
    let b = client.brokers().pop().unwrap();
    let err = b
        .call(&kafka_protocol::messages::MetadataRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("correlation id"), "{err}");
}

#[tokio::test]
async fn metadata_falls_over_to_the_next_seed() {
    let broken = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let healthy = MockBroker::builder().topic("t", 1).start().await.unwrap();
    broken.intercept(Intercept::api(ApiKey::Metadata), Action::Disconnect);
    let client = Client::builder()
        .bootstrap([broken.bootstrap(), healthy.bootstrap()])
        .connect()
        .await
        .expect("the healthy seed answers");
    assert_eq!(client.partitions("t").await.unwrap(), [0]);
}

#[tokio::test]
async fn every_connection_lost_at_once_is_recovered_on_next_use() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let client = client(&broker).await;
    client.refresh_metadata(&["t"]).await.unwrap();
    let connections = broker.connection_count();
    broker.disconnect_all();
    // The first use may still see the dead connection; it must recover by the second.
    let mut result = client.refresh_metadata(&["t"]).await;
    if result.is_err() {
        result = client.refresh_metadata(&["t"]).await;
    }
    result.unwrap();
    assert!(broker.connection_count() > connections);
}

#[tokio::test]
async fn a_closed_client_refuses_work() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let client = client(&broker).await;
    client.close();
    let err = client.refresh_metadata(&["t"]).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Closed);
    assert!(client.is_closed());
}

/// A broker handle kept past the client's close (as a fetch loop or a group member
/// keeps one) never connects again: its calls fail with Closed.
#[tokio::test]
async fn a_closed_client_s_brokers_never_connect_again() {
    use kafka_protocol::messages::MetadataRequest;
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let client = client(&broker).await;
    client.refresh_metadata(&["t"]).await.unwrap();
    let handle = client.brokers().pop().expect("the broker is known");
    handle.call(&MetadataRequest::default()).await.unwrap();
    let connections = broker.connection_count();
    client.close();
    let err = handle.call(&MetadataRequest::default()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Closed, "{err}");
    assert_eq!(
        broker.connection_count(),
        connections,
        "no connection opened"
    );
}

/// Kafka's brokers drop a deleted topic from their metadata a moment after
/// DeleteTopics returns (found on Kafka 4.4: a list right after the delete still
/// showed it). Here the broker answers DeleteTopics "done" without deleting, and the
/// topic goes only when the test deletes it, after the client asked for metadata
/// again: `delete_topic` returns once metadata no longer lists the topic, so a list
/// right after it is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topic_waits_until_metadata_drops_the_topic() {
    use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
    use kafka_protocol::messages::{DeleteTopicsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let broker = MockBroker::builder()
        .topic("doomed", 2)
        .start()
        .await
        .unwrap();
    let client = client(&broker).await;
    broker.intercept(
        Intercept::api(ApiKey::DeleteTopics).times(1),
        Action::respond(DeleteTopicsResponse::default().with_responses(vec![
            DeletableTopicResult::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("doomed")))),
        ])),
    );
    let deleting = {
        let admin = client.admin();
        tokio::spawn(async move { admin.delete_topic("doomed").await })
    };
    // Wait (bounded) for a Metadata request after the DeleteTopics: the client is
    // checking whether the topic is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let apis: Vec<ApiKey> = broker.requests().iter().map(|r| r.api_key).collect();
        let asked_again = apis
            .iter()
            .position(|a| *a == ApiKey::DeleteTopics)
            .is_some_and(|at| apis[at..].contains(&ApiKey::Metadata));
        if asked_again {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delete_topic never looked at metadata after DeleteTopics: {apis:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !deleting.is_finished(),
        "returned while the topic was listed"
    );
    assert!(broker.delete_topic("doomed"));
    deleting.await.unwrap().unwrap();
    let listed = client.admin().list_topics().await.unwrap();
    assert!(listed.iter().all(|t| t.name != "doomed"), "{listed:?}");
}
