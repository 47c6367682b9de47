//! A deliberately dumb client for the mock's tests: raw TCP, Kafka framing and
//! kafka-protocol codecs, no retries and no version negotiation, so every
//! test sees exactly what the broker put on the wire.

#![allow(dead_code)] // each test binary uses its own subset

use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use josefine_mock::MockBroker;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for a loaded CI machine, short enough to fail a hung test fast.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub const CLIENT_ID: &str = "mock-tests";

pub struct RawClient {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl RawClient {
    pub async fn connect(broker: &MockBroker) -> RawClient {
        let stream = TcpStream::connect(broker.addr())
            .await
            .expect("connect to mock");
        RawClient::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> RawClient {
        RawClient {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Sends `request` at `version` and returns its correlation id.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> i32 {
        self.send_as(R::KEY, version, |buf| {
            request.encode(buf, version).expect("encode request")
        })
        .await
    }

    /// Sends a header for `api_key`/`version` followed by whatever `body`
    /// writes, so tests can send versions or bodies the codecs refuse.
    pub async fn send_as(
        &mut self,
        api_key: i16,
        version: i16,
        body: impl FnOnce(&mut BytesMut),
    ) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        encode_request_header_into_buffer(&mut frame, &header).expect("encode header");
        body(&mut frame);
        let len = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&frame).await.expect("write request");
        correlation_id
    }

    /// Reads one length-prefixed frame body.
    pub async fn recv_frame(&mut self) -> io::Result<Bytes> {
        tokio::time::timeout(IO_TIMEOUT, async {
            let len = self.stream.read_i32().await?;
            let mut body = vec![0; usize::try_from(len).expect("non-negative length")];
            self.stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        })
        .await
        .expect("response within IO_TIMEOUT")
    }

    /// Reads a response to `R` at `version`, checking its correlation id.
    pub async fn recv<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let mut frame = self.recv_frame().await.expect("read response frame");
        let header_version = R::Response::header_version(version);
        let header = ResponseHeader::decode(&mut frame, header_version).expect("response header");
        assert_eq!(header.correlation_id, correlation_id, "correlation id");
        let response = R::Response::decode(&mut frame, version).expect("response body");
        assert!(
            frame.is_empty(),
            "{} trailing bytes after the response",
            frame.len()
        );
        response
    }

    pub async fn call<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let correlation_id = self.send(request, version).await;
        self.recv::<R>(version, correlation_id).await
    }

    /// Waits for the broker to close the connection, failing if it sends
    /// anything first. A reset counts as closed: Linux resets instead of
    /// sending FIN when unread bytes remain.
    pub async fn expect_closed(&mut self) {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut buf))
            .await
            .expect("connection closed within IO_TIMEOUT");
        match read {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected the connection closed, got {n} bytes: {:?}",
                &buf[..n]
            ),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
    }

    /// Asserts nothing arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        let mut buf = [0u8; 64];
        if let Ok(read) = tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            panic!("expected silence, got {read:?}");
        }
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

pub fn metadata_for(topics: &[&str]) -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
            .collect(),
    ))
}

/// A request for every topic, spelled the way `version` spells it.
pub fn metadata_all(version: i16) -> MetadataRequest {
    let topics = if version == 0 { Some(Vec::new()) } else { None };
    MetadataRequest::default().with_topics(topics)
}

pub fn api_key(key: ApiKey) -> i16 {
    key as i16
}
