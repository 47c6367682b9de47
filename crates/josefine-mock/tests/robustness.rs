//! Bad input costs the offending connection only, and a stopped broker leaves
//! nothing listening.

mod common;

use std::time::Duration;

use common::{api_key, metadata_all, RawClient, IO_TIMEOUT};
use josefine_mock::{ApiKey, MockBroker};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// After a bad connection, the broker still serves a fresh one.
async fn still_serving(broker: &MockBroker) {
    let mut client = RawClient::connect(broker).await;
    let response = client.call(&metadata_all(9), 9).await;
    assert_eq!(response.brokers.len(), 1);
}

async fn send_raw(broker: &MockBroker, bytes: &[u8]) -> RawClient {
    let mut client = RawClient::connect(broker).await;
    client.stream.write_all(bytes).await.unwrap();
    client
}

#[tokio::test]
async fn absurd_length_prefixes_close_the_connection() {
    let broker = MockBroker::builder()
        .max_frame_size(1024)
        .start()
        .await
        .unwrap();
    for length in [i32::MAX, -1, i32::MIN, 1025] {
        let mut client = send_raw(&broker, &length.to_be_bytes()).await;
        client.expect_closed().await;
    }
    still_serving(&broker).await;
    assert!(broker
        .requests()
        .iter()
        .all(|r| r.api_key == ApiKey::Metadata));
}

#[tokio::test]
async fn frame_too_short_for_a_header_closes_the_connection() {
    let broker = MockBroker::start().await.unwrap();
    for frame in [
        &[0, 0, 0, 0][..],
        &[0, 0, 0, 2, 0, 3],
        &[0, 0, 0, 5, 0, 3, 0, 9, 0],
    ] {
        let mut client = send_raw(&broker, frame).await;
        client.expect_closed().await;
    }
    still_serving(&broker).await;
}

#[tokio::test]
async fn unknown_api_key_closes_the_connection() {
    let broker = MockBroker::start().await.unwrap();
    // Key 9999, v0, correlation id 1, null client id: a well-formed v1 header.
    let mut frame = 10i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&9_999i16.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    let mut client = send_raw(&broker, &frame).await;
    client.expect_closed().await;
    assert!(
        broker.requests().is_empty(),
        "an unknown key has no RequestInfo"
    );
    still_serving(&broker).await;
}

#[tokio::test]
async fn malformed_body_closes_the_connection() {
    let broker = MockBroker::start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    // Metadata v1: a topic array promising five names, then nothing.
    client
        .send_as(api_key(ApiKey::Metadata), 1, |buf| {
            buf.extend_from_slice(&5i32.to_be_bytes())
        })
        .await;
    client.expect_closed().await;
    assert_eq!(
        broker.requests().len(),
        1,
        "the header was fine, so it is logged"
    );
    still_serving(&broker).await;
}

#[tokio::test]
async fn truncated_frame_is_dropped_quietly() {
    let broker = MockBroker::start().await.unwrap();
    let mut client = send_raw(&broker, &[0, 0, 0, 100, 0, 3, 0, 9]).await;
    client.stream.shutdown().await.unwrap();
    client.expect_closed().await;
    still_serving(&broker).await;
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_every_connection() {
    let broker = MockBroker::start().await.unwrap();
    let addr = broker.addr();
    let mut client = RawClient::connect(&broker).await;
    client.call(&metadata_all(9), 9).await;
    broker.shutdown().await;
    client.expect_closed().await;
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "nothing listens after shutdown");
}

#[tokio::test]
async fn drop_closes_the_listener_and_every_connection() {
    let broker = MockBroker::start().await.unwrap();
    let addr = broker.addr();
    let mut client = RawClient::connect(&broker).await;
    client.call(&metadata_all(9), 9).await;
    drop(broker);
    client.expect_closed().await;
    // Drop cannot wait for the aborted accept task, so give it a moment.
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
