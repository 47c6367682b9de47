//! Every intercept action does, observably, what it says.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{metadata_all, metadata_for, topic_name, RawClient, CLIENT_ID};
use josefine_mock::{Action, ApiKey, Intercept, MockBroker, RequestInfo, ResponseError};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
};

async fn broker_with_orders() -> MockBroker {
    MockBroker::builder()
        .topic("orders", 2)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn error_action_code_reaches_the_client() {
    let broker = broker_with_orders().await;
    broker.intercept(
        Intercept::api(ApiKey::Metadata),
        Action::error(ResponseError::LeaderNotAvailable),
    );
    let mut client = RawClient::connect(&broker).await;

    let response = client.call(&metadata_for(&["orders", "other"]), 9).await;
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [5, 5]);
    assert_eq!(response.brokers.len(), 1, "still a well-formed response");

    let all = client.call(&metadata_all(1), 1).await;
    assert_eq!(
        all.topics.len(),
        1,
        "without a topic list, every topic errs"
    );
    assert_eq!(all.topics[0].error_code, 5);

    let v13 = client.call(&metadata_all(13), 13).await;
    assert_eq!(v13.error_code, 5, "v13 has a top-level error code");
}

#[tokio::test]
async fn error_action_on_topic_admin_apis_sets_every_topic() {
    let broker = broker_with_orders().await;
    broker.intercept(Intercept::api(ApiKey::CreateTopics), Action::Error(41));
    broker.intercept(Intercept::api(ApiKey::DeleteTopics), Action::Error(41));
    broker.intercept(Intercept::api(ApiKey::CreatePartitions), Action::Error(41));
    let mut client = RawClient::connect(&broker).await;

    let create = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name("a"))
            .with_num_partitions(1),
        CreatableTopic::default()
            .with_name(topic_name("b"))
            .with_num_partitions(1),
    ]);
    let response = client.call(&create, 7).await;
    assert!(response.topics.iter().all(|t| t.error_code == 41));
    assert_eq!(response.topics.len(), 2);

    let grow = CreatePartitionsRequest::default().with_topics(vec![
        CreatePartitionsTopic::default()
            .with_name(topic_name("orders"))
            .with_count(4),
        CreatePartitionsTopic::default()
            .with_name(topic_name("b"))
            .with_count(2),
    ]);
    let response = client.call(&grow, 3).await;
    let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [41, 41]);
    assert_eq!(broker.partition_count("orders"), Some(2));

    let delete = DeleteTopicsRequest::default().with_topic_names(vec![topic_name("orders")]);
    let response = client.call(&delete, 4).await;
    assert_eq!(response.responses[0].error_code, 41);
    assert_eq!(
        broker.topics(),
        ["orders"],
        "an intercepted request has no effect"
    );
}

#[tokio::test]
async fn error_action_on_api_versions() {
    let broker = MockBroker::start().await.unwrap();
    broker.intercept(
        Intercept::api(ApiKey::ApiVersions).once(),
        Action::Error(35),
    );
    let mut client = RawClient::connect(&broker).await;
    let response = client.call(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(response.error_code, 35);
    assert!(
        !response.api_keys.is_empty(),
        "UNSUPPORTED_VERSION lists the ranges"
    );
}

#[tokio::test]
async fn version_predicate_matches_only_newer_versions() {
    let broker = broker_with_orders().await;
    broker.intercept(
        Intercept::any().when(|req: &RequestInfo| req.api_version > 4),
        Action::Error(35),
    );
    let mut client = RawClient::connect(&broker).await;
    let ok = client.call(&metadata_for(&["orders"]), 4).await;
    assert_eq!(ok.topics[0].error_code, 0);
    let refused = client.call(&metadata_for(&["orders"]), 5).await;
    assert_eq!(refused.topics[0].error_code, 35);
}

#[tokio::test]
async fn delay_action_delays_then_answers() {
    let broker = broker_with_orders().await;
    let delay = Duration::from_millis(200);
    broker.intercept(Intercept::api(ApiKey::Metadata), Action::Delay(delay));
    let mut client = RawClient::connect(&broker).await;
    let started = Instant::now();
    let response = client.call(&metadata_for(&["orders"]), 9).await;
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(response.topics[0].error_code, 0);
}

#[tokio::test]
async fn disconnect_action_closes_without_answering() {
    let broker = broker_with_orders().await;
    broker.intercept(Intercept::api(ApiKey::Metadata).once(), Action::Disconnect);
    let mut client = RawClient::connect(&broker).await;
    client.send(&metadata_all(9), 9).await;
    client.expect_closed().await;

    let mut again = RawClient::connect(&broker).await;
    let response = again.call(&metadata_all(9), 9).await;
    assert_eq!(response.topics.len(), 1);
    assert_eq!(broker.connection_count(), 2);
}

#[tokio::test]
async fn garbage_action_writes_the_bytes_and_keeps_serving() {
    let broker = broker_with_orders().await;
    let garbage = Bytes::from_static(b"\xde\xad\xbe\xef not kafka");
    broker.intercept(
        Intercept::api(ApiKey::Metadata).once(),
        Action::Garbage(garbage.clone()),
    );
    let mut client = RawClient::connect(&broker).await;
    client.send(&metadata_all(9), 9).await;
    let mut received = vec![0; garbage.len()];
    tokio::io::AsyncReadExt::read_exact(&mut client.stream, &mut received)
        .await
        .unwrap();
    assert_eq!(received, garbage);
    let response = client.call(&metadata_all(9), 9).await;
    assert_eq!(response.topics.len(), 1);
}

#[tokio::test]
async fn stall_action_never_answers_and_keeps_the_connection() {
    let broker = broker_with_orders().await;
    broker.intercept(Intercept::api(ApiKey::Metadata), Action::Stall);
    let mut client = RawClient::connect(&broker).await;
    client.send(&metadata_all(9), 9).await;
    client.expect_silence(Duration::from_millis(300)).await;
    // Later requests on the connection queue behind the stalled one.
    client.send(&ApiVersionsRequest::default(), 3).await;
    client.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(broker.open_connections(), 1);

    // Once the client gives up, the stalled connection's task ends too.
    drop(client);
    let deadline = Instant::now() + common::IO_TIMEOUT;
    while broker.open_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "stalled connection outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_share_a_limited_rule_exactly() {
    let broker = broker_with_orders().await;
    let rule = broker.intercept(Intercept::api(ApiKey::Metadata).times(5), Action::Error(5));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let addr = broker.addr();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut client = RawClient::from_stream(stream);
                client.call(&metadata_for(&["orders"]), 9).await.topics[0].error_code
            })
        })
        .collect();
    let mut errors = 0;
    for client in clients {
        if client.await.unwrap() == 5 {
            errors += 1;
        }
    }
    assert_eq!(errors, 5);
    assert_eq!(rule.hits(), 5);
    assert_eq!(broker.connection_count(), 20);
}

#[tokio::test]
async fn raw_response_action_frames_the_given_body() {
    let broker = broker_with_orders().await;
    // A v0 response header with a correlation id the client never used.
    let mut body = BytesMut::new();
    body.put_i32(-999);
    body.put_slice(b"rest");
    let body = body.freeze();
    broker.intercept(Intercept::any().once(), Action::RawResponse(body.clone()));
    let mut client = RawClient::connect(&broker).await;
    client.send(&metadata_all(9), 9).await;
    assert_eq!(client.recv_frame().await.unwrap(), body);
    let response = client.call(&metadata_all(9), 9).await;
    assert_eq!(response.topics.len(), 1, "the connection goes on");
}

#[tokio::test]
async fn half_response_action_sends_half_then_closes() {
    let broker = MockBroker::start().await.unwrap();
    broker.intercept(Intercept::api(ApiKey::CreateTopics), Action::HalfResponse);
    let mut client = RawClient::connect(&broker).await;
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name("lost-answer"))
        .with_num_partitions(3)
        .with_replication_factor(1)]);
    client.send(&request, 7).await;

    let mut rest = Vec::new();
    tokio::time::timeout(
        common::IO_TIMEOUT,
        tokio::io::AsyncReadExt::read_to_end(&mut client.stream, &mut rest),
    )
    .await
    .expect("closed within IO_TIMEOUT")
    .unwrap();
    let promised = i32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
    assert!(promised > 0);
    assert_eq!(
        rest.len() - 4,
        promised / 2,
        "half of a {promised}-byte body"
    );
    assert_eq!(
        broker.partition_count("lost-answer"),
        Some(3),
        "the request took effect; only its answer was lost"
    );
}

#[tokio::test]
async fn times_rules_expire_and_rules_match_in_order() {
    let broker = broker_with_orders().await;
    let first = broker.intercept(Intercept::api(ApiKey::Metadata).times(1), Action::Error(5));
    let second = broker.intercept(Intercept::api(ApiKey::Metadata).times(2), Action::Error(6));
    let mut client = RawClient::connect(&broker).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        let response = client.call(&metadata_for(&["orders"]), 9).await;
        codes.push(response.topics[0].error_code);
    }
    assert_eq!(codes, [5, 6, 6, 0]);
    assert_eq!((first.hits(), second.hits()), (1, 2));
    assert!(!first.is_active() && !second.is_active());
}

#[tokio::test]
async fn removed_and_cleared_rules_stop_matching() {
    let broker = broker_with_orders().await;
    let rule = broker.intercept(Intercept::api(ApiKey::Metadata), Action::Error(5));
    let mut client = RawClient::connect(&broker).await;
    assert_eq!(
        client.call(&metadata_all(9), 9).await.topics[0].error_code,
        5
    );
    rule.remove();
    assert_eq!(
        client.call(&metadata_all(9), 9).await.topics[0].error_code,
        0
    );
    broker.intercept(Intercept::any(), Action::Error(5));
    broker.clear_intercepts();
    assert_eq!(
        client.call(&metadata_all(9), 9).await.topics[0].error_code,
        0
    );
}

#[tokio::test]
async fn requests_log_records_every_request() {
    let broker = broker_with_orders().await;
    broker.intercept(Intercept::api(ApiKey::CreateTopics), Action::Error(41));
    let mut client = RawClient::connect(&broker).await;
    client.call(&ApiVersionsRequest::default(), 3).await;
    client.call(&metadata_all(12), 12).await;
    client.call(&CreateTopicsRequest::default(), 4).await;
    let log = broker.requests();
    let seen: Vec<(ApiKey, i16, i32)> = log
        .iter()
        .map(|r| (r.api_key, r.api_version, r.correlation_id))
        .collect();
    assert_eq!(
        seen,
        [
            (ApiKey::ApiVersions, 3, 1),
            (ApiKey::Metadata, 12, 2),
            (ApiKey::CreateTopics, 4, 3),
        ]
    );
    assert!(log
        .iter()
        .all(|r| r.client_id.as_deref() == Some(CLIENT_ID)));
    assert!(log.iter().all(|r| r.connection_id == 1 && r.node_id == 1));
}

#[tokio::test]
async fn connection_count_counts_reconnects() {
    let broker = broker_with_orders().await;
    assert_eq!(broker.connection_count(), 0);
    let mut first = RawClient::connect(&broker).await;
    first.call(&metadata_all(9), 9).await;
    let mut second = RawClient::connect(&broker).await;
    second.call(&metadata_all(9), 9).await;
    assert_eq!(broker.connection_count(), 2);
    assert_eq!(broker.open_connections(), 2);

    broker.disconnect_all();
    first.expect_closed().await;
    second.expect_closed().await;
    let mut third = RawClient::connect(&broker).await;
    third.call(&metadata_all(9), 9).await;
    assert_eq!(broker.connection_count(), 3);
    let connections: Vec<u64> = broker.requests().iter().map(|r| r.connection_id).collect();
    assert_eq!(connections, [1, 2, 3]);
}

#[tokio::test]
async fn intercepts_can_target_a_client_by_request_fields() {
    let broker = broker_with_orders().await;
    broker.intercept(
        Intercept::api(ApiKey::Metadata)
            .versions(..=8)
            .when(|req| req.connection_id == 1),
        Action::Disconnect,
    );
    let mut old = RawClient::connect(&broker).await;
    let mut new = RawClient::connect(&broker).await;
    let ok = new.call(&metadata_all(8), 8).await;
    assert_eq!(ok.topics.len(), 1, "another connection is not matched");
    old.call(&metadata_all(9), 9).await;
    old.send(&metadata_all(8), 8).await;
    old.expect_closed().await;
}
