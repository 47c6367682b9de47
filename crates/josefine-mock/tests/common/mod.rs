//! A deliberately dumb client for the mock's tests: raw TCP, Kafka framing and
//! kafka-protocol codecs, no retries and no version negotiation, so every
//! test sees exactly what the broker put on the wire.

#![allow(dead_code)] // each test binary uses its own subset

use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use josefine_mock::{MockBroker, MockCluster};
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

    pub async fn connect_to(cluster: &MockCluster, node_id: i32) -> RawClient {
        RawClient::connect(cluster.broker(node_id)).await
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

pub mod records {
    //! Hand-made magic-2 record batches (KIP-98), uncompressed, so the tests
    //! do not lean on the code under test to build their input.
    //! <https://kafka.apache.org/documentation/#recordbatch>

    use bytes::{BufMut, Bytes, BytesMut};

    /// What goes into a batch besides its values.
    #[derive(Debug, Clone, Copy)]
    pub struct Spec {
        pub base_timestamp: i64,
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_sequence: i32,
        /// Attribute bit 4 (KIP-98).
        pub transactional: bool,
    }

    impl Default for Spec {
        fn default() -> Self {
            Spec {
                base_timestamp: 1_000,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                transactional: false,
            }
        }
    }

    fn varint(buf: &mut BytesMut, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            buf.put_u8((zigzag as u8) | 0x80);
            zigzag >>= 7;
        }
        buf.put_u8(zigzag as u8);
    }

    /// A batch of one record per value, record `i` stamped
    /// `base_timestamp + i`, with a valid CRC-32C and base offset 0.
    pub fn batch_with(spec: Spec, values: &[&str]) -> Bytes {
        assert!(!values.is_empty(), "a batch needs a record");
        let mut records = BytesMut::new();
        for (i, value) in values.iter().enumerate() {
            let mut record = BytesMut::new();
            record.put_i8(0); // attributes
            varint(&mut record, i as i64); // timestamp delta
            varint(&mut record, i as i64); // offset delta
            varint(&mut record, -1); // null key
            varint(&mut record, value.len() as i64);
            record.put_slice(value.as_bytes());
            varint(&mut record, 0); // no headers
            varint(&mut records, record.len() as i64);
            records.put_slice(&record);
        }
        let last_delta = values.len() as i32 - 1;
        let mut batch = BytesMut::new();
        batch.put_i64(0); // base offset, assigned by the broker
        batch.put_i32(0); // length, patched below
        batch.put_i32(-1); // partition leader epoch, stamped by the broker
        batch.put_i8(2); // magic
        batch.put_u32(0); // crc, patched below
                          // Attributes: uncompressed, CreateTime, maybe transactional.
        batch.put_i16(if spec.transactional { 0x10 } else { 0 });
        batch.put_i32(last_delta);
        batch.put_i64(spec.base_timestamp);
        batch.put_i64(spec.base_timestamp + i64::from(last_delta));
        batch.put_i64(spec.producer_id);
        batch.put_i16(spec.producer_epoch);
        batch.put_i32(spec.base_sequence);
        batch.put_i32(values.len() as i32);
        batch.put_slice(&records);
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch.freeze()
    }

    pub fn batch(values: &[&str]) -> Bytes {
        batch_with(Spec::default(), values)
    }

    /// A batch whose records start at `base_timestamp`.
    pub fn batch_at(base_timestamp: i64, values: &[&str]) -> Bytes {
        batch_with(
            Spec {
                base_timestamp,
                ..Spec::default()
            },
            values,
        )
    }

    /// An idempotent producer's batch.
    pub fn idempotent(producer_id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
        batch_with(
            Spec {
                producer_id,
                producer_epoch: epoch,
                base_sequence,
                ..Spec::default()
            },
            values,
        )
    }

    /// A transactional producer's batch.
    pub fn transactional(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        values: &[&str],
    ) -> Bytes {
        batch_with(
            Spec {
                producer_id,
                producer_epoch: epoch,
                base_sequence,
                transactional: true,
                ..Spec::default()
            },
            values,
        )
    }

    /// A transaction marker as the coordinator writes it: one control
    /// record (key: version 0, type 1 COMMIT or 0 ABORT; value: version 0,
    /// coordinator epoch 0) in a control, transactional batch.
    pub fn marker(producer_id: i64, epoch: i16, commit: bool) -> Bytes {
        let mut record = BytesMut::new();
        record.put_i8(0); // attributes
        varint(&mut record, 0); // timestamp delta
        varint(&mut record, 0); // offset delta
        varint(&mut record, 4);
        record.put_i16(0);
        record.put_i16(i16::from(commit));
        varint(&mut record, 6);
        record.put_i16(0);
        record.put_i32(0);
        varint(&mut record, 0); // no headers
        let mut body = BytesMut::new();
        varint(&mut body, record.len() as i64);
        body.put_slice(&record);
        let mut batch = BytesMut::new();
        batch.put_i64(0);
        batch.put_i32(0); // length, patched below
        batch.put_i32(-1);
        batch.put_i8(2);
        batch.put_u32(0); // crc, patched below
        batch.put_i16(0x30); // control | transactional
        batch.put_i32(0);
        batch.put_i64(1_000);
        batch.put_i64(1_000);
        batch.put_i64(producer_id);
        batch.put_i16(epoch);
        batch.put_i32(-1);
        batch.put_i32(1);
        batch.put_slice(&body);
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch.freeze()
    }

    /// The attributes of a batch.
    pub fn attributes(batch: &[u8]) -> i16 {
        i16::from_be_bytes(batch[21..23].try_into().unwrap())
    }

    pub fn base_offset(batch: &[u8]) -> i64 {
        i64::from_be_bytes(batch[0..8].try_into().unwrap())
    }

    pub fn leader_epoch(batch: &[u8]) -> i32 {
        i32::from_be_bytes(batch[12..16].try_into().unwrap())
    }

    /// Whether the batch's CRC-32C still matches.
    pub fn crc_ok(batch: &[u8]) -> bool {
        u32::from_be_bytes(batch[17..21].try_into().unwrap()) == crc32c::crc32c(&batch[21..])
    }

    /// Splits a Fetch response's records into whole batches, and the bytes
    /// of a trailing partial one.
    pub fn split(records: &[u8]) -> (Vec<Bytes>, usize) {
        let mut batches = Vec::new();
        let mut rest = records;
        while rest.len() >= 12 {
            let size = 12 + i32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize;
            if size > rest.len() {
                break;
            }
            batches.push(Bytes::copy_from_slice(&rest[..size]));
            rest = &rest[size..];
        }
        (batches, rest.len())
    }

    /// Everything but the base offset and leader epoch, which the broker
    /// assigns: the part a fetched batch must share with the produced one.
    pub fn payload(batch: &[u8]) -> &[u8] {
        &batch[16..]
    }
}

pub mod requests {
    //! Client-side requests, spelled the way each version needs.

    use bytes::Bytes;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, ProduceRequest};
    use uuid::Uuid;

    use super::topic_name;

    /// One batch to one partition, naming the topic by name, or by id from
    /// v13 (pass the id then).
    pub fn produce(
        topic: &str,
        id: Uuid,
        partition: i32,
        records: Bytes,
        version: i16,
    ) -> ProduceRequest {
        produce_many(&[(topic, id, partition, records)], version)
    }

    pub fn produce_many(parts: &[(&str, Uuid, i32, Bytes)], version: i16) -> ProduceRequest {
        let topics = parts
            .iter()
            .map(|(topic, id, partition, records)| {
                let data = TopicProduceData::default().with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(*partition)
                        .with_records(Some(records.clone())),
                ]);
                if version >= 13 {
                    data.with_topic_id(*id)
                } else {
                    data.with_name(topic_name(topic))
                }
            })
            .collect();
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(topics)
    }

    /// A partition to fetch: (topic, id, partition, offset, partition max bytes).
    pub type Part<'a> = (&'a str, Uuid, i32, i64, i32);

    /// A sessionless fetch that answers at once.
    pub fn fetch(parts: &[Part<'_>], version: i16) -> FetchRequest {
        fetch_topics(parts, version)
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(i32::MAX)
    }

    /// The topic list of a fetch, one topic entry per part.
    pub fn fetch_topics(parts: &[Part<'_>], version: i16) -> FetchRequest {
        let topics = parts
            .iter()
            .map(|(topic, id, partition, offset, max_bytes)| {
                let t = FetchTopic::default().with_partitions(vec![FetchPartition::default()
                    .with_partition(*partition)
                    .with_fetch_offset(*offset)
                    .with_partition_max_bytes(*max_bytes)]);
                if version >= 13 {
                    t.with_topic_id(*id)
                } else {
                    t.with_topic(topic_name(topic))
                }
            })
            .collect();
        FetchRequest::default().with_topics(topics)
    }

    pub fn list_offsets(topic: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
        ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])])
    }
}
