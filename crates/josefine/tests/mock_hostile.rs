//! The client against a hostile or broken broker (`josefine-mock` with `Garbage`,
//! `Respond`, `Rewrite`): raw bytes, a length prefix near `i32::MAX`, a frame announced
//! and never sent, a wrong correlation id, array counts near `i32::MAX`/`u32::MAX` and
//! negative ones, truncated bodies, Metadata about topics nobody asked for, error codes
//! no Kafka version defines.
//!
//! Each case checks that the client returns a typed error (never panics, never aborts),
//! that the connection is dropped, and that the next request succeeds once the broker
//! behaves again. A counting allocator checks that no allocation follows a bogus length
//! or count: nothing in this file may allocate more than [`MEMORY_BOUND`] at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use josefine::protocol::Broker;
use josefine::protocol::ClientExt;
use josefine::{Client, ErrorKind, KafkaCode, Producer, ProducerRecord};
use josefine_mock::{Action, ApiKey, Intercept, MockBroker, RequestInfo};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

// ---------------------------------------------------------------------------------------
// Memory: the largest single allocation of the whole test binary

/// No allocation in this file may be larger: the hostile lengths and counts below
/// announce 100 MiB to 154 GB.
const MEMORY_BOUND: usize = 8 << 20;

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

fn assert_memory_bounded(case: &str) {
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= MEMORY_BOUND,
        "{case}: an allocation of {largest} bytes (bound {MEMORY_BOUND})"
    );
}

// ---------------------------------------------------------------------------------------
// Helpers

async fn broker_with_metadata_version(version: i16) -> MockBroker {
    MockBroker::builder()
        .api_versions(ApiKey::Metadata, version, version)
        .topic("t", 1)
        .start()
        .await
        .unwrap()
}

async fn client(broker: &MockBroker, request_timeout: Duration) -> Client {
    Client::builder()
        .bootstrap([broker.bootstrap()])
        .request_timeout(request_timeout)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .expect("connect to the mock broker")
}

/// Metadata for every topic (a null topic list).
fn all_topics() -> MetadataRequest {
    MetadataRequest::default().with_topics(None)
}

fn requests(broker: &MockBroker, api: ApiKey) -> usize {
    broker
        .requests()
        .iter()
        .filter(|r| r.api_key == api)
        .count()
}

fn put_string(body: &mut BytesMut, s: &str, flexible: bool) {
    if flexible {
        put_uvarint(body, s.len() as u32 + 1);
    } else {
        body.put_i16(s.len() as i16);
    }
    body.put_slice(s.as_bytes());
}

fn put_uvarint(body: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        body.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    body.put_u8(v as u8);
}

/// A Metadata body (v4 or v12) with one broker, then a topic array whose count is
/// written by `count` (raw bytes: `i32` for v1, a varint for v12) and `tail` after it.
fn metadata_body(version: i16, count: &[u8], tail: &[u8]) -> Bytes {
    let flexible = version >= 9;
    let mut body = BytesMut::new();
    if version >= 3 {
        body.put_i32(0); // throttle
    }
    if flexible {
        put_uvarint(&mut body, 2);
    } else {
        body.put_i32(1);
    }
    body.put_i32(1); // node id
    put_string(&mut body, "localhost", flexible);
    body.put_i32(9092);
    if flexible {
        body.put_u8(0); // rack: null
        body.put_u8(0); // broker tagged fields
        body.put_u8(0); // cluster id: null
    } else {
        body.put_i16(-1); // rack: null
        if version >= 2 {
            body.put_i16(-1); // cluster id: null
        }
    }
    body.put_i32(1); // controller
    body.put_slice(count);
    body.put_slice(tail);
    body.freeze()
}

/// Runs one hostile answer to a Metadata request through `Broker::call`, checks the
/// typed error, then that the next call reconnects and succeeds.
async fn hostile_metadata_case(
    broker: &MockBroker,
    seed: &Broker,
    name: &str,
    action: Action,
    kind: ErrorKind,
    says: &str,
) {
    let connections = broker.connection_count();
    broker.intercept(Intercept::api(ApiKey::Metadata).once(), action);
    let err = seed.call(&all_topics()).await.expect_err(name);
    assert_eq!(err.kind(), &kind, "{name}: {err}");
    assert!(err.to_string().contains(says), "{name}: {err}");
    assert_eq!(err.context().api(), Some("Metadata"), "{name}");
    assert!(err.context().broker().is_some(), "{name}: {err}");
    // Recovery: the broker behaves again and the next call works, on a new connection.
    let response = seed
        .call(&all_topics())
        .await
        .unwrap_or_else(|e| panic!("after {name}: {e}"));
    assert!(response
        .topics
        .iter()
        .any(|t| t.name.as_deref().map(|n| &**n) == Some("t")));
    assert!(
        broker.connection_count() > connections,
        "{name}: the connection was not dropped"
    );
    assert_memory_bounded(name);
}

// ---------------------------------------------------------------------------------------
// Frames that are not Kafka

#[tokio::test]
async fn raw_bytes_and_absurd_lengths_are_protocol_errors_then_recovered() {
    let broker = broker_with_metadata_version(12).await;
    let client = client(&broker, Duration::from_secs(5)).await;
    let seed = client.brokers().pop().unwrap();

    let mut junk = BytesMut::new();
    junk.put_i32(16);
    junk.put_slice(b"\x13\x37 not a kafka frame");
    let cases = [
        (
            "arbitrary bytes",
            Action::Garbage(junk.freeze()),
            "correlation id",
        ),
        (
            "a length prefix near i32::MAX, then nothing",
            Action::Garbage(Bytes::copy_from_slice(&(i32::MAX - 1).to_be_bytes())),
            "exceeds the maximum",
        ),
        (
            "a negative length prefix",
            Action::Garbage(Bytes::copy_from_slice(&(-4i32).to_be_bytes())),
            "invalid frame length",
        ),
        (
            "a wrong correlation id",
            Action::rewrite(|_: &RequestInfo, frame: Bytes| {
                let mut out = BytesMut::from(&frame[..]);
                let id = i32::from_be_bytes(frame[..4].try_into().unwrap());
                out[..4].copy_from_slice(&id.wrapping_add(1).to_be_bytes());
                out.freeze()
            }),
            "correlation id",
        ),
    ];
    for (name, action, says) in cases {
        hostile_metadata_case(&broker, &seed, name, action, ErrorKind::Protocol, says).await;
    }
}

#[tokio::test]
async fn a_frame_announced_and_never_sent_times_out_without_reserving_it() {
    let broker = broker_with_metadata_version(12).await;
    let client = client(&broker, Duration::from_millis(300)).await;
    let seed = client.brokers().pop().unwrap();
    // Just under the client's 100 MiB limit, so the length itself is acceptable; the
    // client must not reserve it before the bytes arrive.
    let mut announced = BytesMut::new();
    announced.put_i32(100 * 1024 * 1024 - 8);
    announced.put_slice(&[0; 64]);
    hostile_metadata_case(
        &broker,
        &seed,
        "a frame announced and never sent",
        Action::Garbage(announced.freeze()),
        ErrorKind::Timeout,
        "no response",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Bodies that do not decode

#[tokio::test]
async fn hostile_counts_in_a_non_flexible_body_are_protocol_errors() {
    // v4: the oldest at which the client can say allow_auto_topic_creation=false.
    let broker = broker_with_metadata_version(4).await;
    let client = client(&broker, Duration::from_secs(5)).await;
    let seed = client.brokers().pop().unwrap();
    let raw = |count: i32, tail: &'static [u8]| {
        Action::respond_raw(move |req: &RequestInfo| {
            metadata_body(req.api_version, &count.to_be_bytes(), tail)
        })
    };
    let cases = [
        // 72 bytes that asked kafka-protocol 0.18 for ~154 GB and aborted the process.
        (
            "topics: i32::MAX",
            raw(i32::MAX, &[0; 20]),
            "claims 2147483647 elements",
        ),
        (
            "topics: i32::MAX - 1",
            raw(i32::MAX - 1, &[0; 20]),
            "claims 2147483646",
        ),
        ("topics: 2^28", raw(1 << 28, &[0; 64]), "claims 268435456"),
        ("topics: -7", raw(-7, &[]), "length -7"),
        (
            "a count one past the elements sent",
            // One topic claimed: error code, name "t", not internal, 2 partitions
            // claimed and one sent (v4: error, index, leader, replicas, isr).
            raw(
                1,
                b"\x00\x00\x00\x01t\x00\x00\x00\x00\x02\
                  \x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
            "`partitions`",
        ),
        (
            "a truncated body",
            Action::rewrite(|_: &RequestInfo, frame: Bytes| frame.slice(..frame.len() / 2)),
            "cannot decode Metadata v4",
        ),
    ];
    for (name, action, says) in cases {
        hostile_metadata_case(&broker, &seed, name, action, ErrorKind::Protocol, says).await;
    }
}

#[tokio::test]
async fn hostile_counts_in_a_flexible_body_are_protocol_errors() {
    let broker = broker_with_metadata_version(12).await;
    let client = client(&broker, Duration::from_secs(5)).await;
    let seed = client.brokers().pop().unwrap();
    let raw = |count: &'static [u8]| {
        Action::respond_raw(move |req: &RequestInfo| {
            metadata_body(req.api_version, count, &[0; 24])
        })
    };
    let cases = [
        // Compact counts are varints of count + 1: u32::MAX, and 2^31.
        (
            "topics: u32::MAX - 1",
            raw(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            "claims 4294967294",
        ),
        (
            "topics: 2^31",
            raw(&[0x81, 0x80, 0x80, 0x80, 0x08]),
            "claims 2147483648",
        ),
    ];
    for (name, action, says) in cases {
        hostile_metadata_case(&broker, &seed, name, action, ErrorKind::Protocol, says).await;
    }
}

/// Bytes after a complete body are what a newer broker may append at a version we do
/// not know; the body is still what the schema says, so it is accepted (and logged).
#[tokio::test]
async fn trailing_bytes_after_a_valid_body_are_accepted() {
    let broker = broker_with_metadata_version(12).await;
    let client = client(&broker, Duration::from_secs(5)).await;
    let seed = client.brokers().pop().unwrap();
    broker.intercept(
        Intercept::api(ApiKey::Metadata).once(),
        Action::rewrite(|_: &RequestInfo, frame: Bytes| {
            let mut out = BytesMut::from(&frame[..]);
            out.put_slice(&[0xff; 100]);
            out.freeze()
        }),
    );
    let response = seed.call(&all_topics()).await.unwrap();
    assert_eq!(response.topics.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Answers that decode but say nonsense

fn broker_entry(broker: &MockBroker) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id()))
        .with_host(StrBytes::from_string(broker.addr().ip().to_string()))
        .with_port(i32::from(broker.addr().port()))
}

fn topic_entry(name: &str, partitions: i32, leader: i32, error: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
        .with_error_code(error)
        .with_partitions(
            (0..partitions)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(leader))
                        .with_replica_nodes(vec![BrokerId(leader)])
                        .with_isr_nodes(vec![BrokerId(leader)])
                })
                .collect(),
        )
}

/// A broker asked about topic `t` also answers for `stranger` (never asked about) and
/// for `u` (cached from an all-topics answer, not asked about now, claimed leaderless
/// with an error). Neither enters the cache: an answer only updates the topics it was
/// asked for. (What a broker says about a topic it was asked for is taken as the
/// truth, as from any broker, but for leader epochs that went backwards.)
#[tokio::test]
async fn topics_never_asked_about_do_not_enter_the_metadata_cache() {
    let broker = MockBroker::builder()
        .topic("t", 1)
        .topic("u", 3)
        .start()
        .await
        .unwrap();
    let client = client(&broker, Duration::from_secs(5)).await;
    // Cached without entering the client's wanted topics (an all-topics refresh).
    client.refresh_all_metadata().await.unwrap();
    assert_eq!(client.cached_partition_count("u"), Some(3));

    let hostile = MetadataResponse::default()
        .with_brokers(vec![broker_entry(&broker)])
        .with_controller_id(BrokerId(broker.node_id()))
        .with_topics(vec![
            topic_entry("t", 1, broker.node_id(), 0),
            topic_entry("stranger", 1000, 42, 0),
            topic_entry("u", 0, -1, KafkaCode::LEADER_NOT_AVAILABLE.code()),
        ]);
    broker.intercept(
        Intercept::api(ApiKey::Metadata).once(),
        Action::respond(hostile),
    );
    let md = client.refresh_metadata(&["t"]).await.unwrap();
    assert!(md.topic("t").is_some());
    assert!(
        md.topic("stranger").is_none(),
        "an unasked topic entered the cache"
    );
    assert_eq!(client.cached_partition_count("stranger"), None);
    // What the cache knew about `u` stands.
    assert_eq!(client.cached_partition_count("u"), Some(3));
    assert_eq!(
        client.cached_leader("u", 2).unwrap().id(),
        Some(broker.node_id())
    );
}

// ---------------------------------------------------------------------------------------
// Error codes no Kafka version defines

const UNKNOWN: i16 = 9999;

#[tokio::test]
async fn an_unknown_error_code_on_a_topic_surfaces_with_its_number() {
    let broker = broker_with_metadata_version(12).await;
    let client = client(&broker, Duration::from_secs(5)).await;
    let before = requests(&broker, ApiKey::Metadata);
    broker.intercept(
        Intercept::api(ApiKey::Metadata).once(),
        Action::Error(UNKNOWN),
    );
    let err = client
        .refresh_metadata(&["t"])
        .await
        .and_then(|md| md.topic_or_error("t").map(drop));
    let err = err.unwrap_err();
    assert_eq!(err.code(), KafkaCode::from_code(UNKNOWN), "{err}");
    assert_eq!(err.code().unwrap().code(), UNKNOWN);
    assert!(err.to_string().contains("9999"), "{err}");
    assert!(!err.is_retriable(), "an unknown code is not retriable");
    // One request, not a retry loop.
    assert_eq!(requests(&broker, ApiKey::Metadata) - before, 1);
    // And the next refresh, with the broker behaving, clears it.
    let md = client.refresh_metadata(&["t"]).await.unwrap();
    assert!(md.topic_or_error("t").is_ok());
}

#[tokio::test]
async fn an_unknown_error_code_on_produce_fails_the_record_without_retrying() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let client = client(&broker, Duration::from_secs(5)).await;
    let producer = Producer::builder(client)
        .linger(Duration::from_millis(1))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    broker.intercept(
        Intercept::api(ApiKey::Produce).once(),
        Action::Error(UNKNOWN),
    );
    let err = producer
        .send(ProducerRecord::new("t").partition(0).value("v"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), KafkaCode::from_code(UNKNOWN), "{err}");
    assert!(!err.is_retriable());
    assert_eq!(
        requests(&broker, ApiKey::Produce),
        1,
        "retried an unknown code"
    );
    // The next record goes through.
    producer
        .send(ProducerRecord::new("t").partition(0).value("w"))
        .await
        .unwrap();
    producer.close().await.unwrap();
}

#[tokio::test]
async fn an_unknown_error_code_from_find_coordinator_surfaces_with_its_number() {
    let broker = MockBroker::builder().start().await.unwrap();
    let client = client(&broker, Duration::from_secs(5)).await;
    broker.intercept(
        Intercept::api(ApiKey::FindCoordinator).once(),
        Action::Error(UNKNOWN),
    );
    let err = client.coordinator("g").await.unwrap_err();
    assert_eq!(err.code(), KafkaCode::from_code(UNKNOWN), "{err}");
    assert_eq!(requests(&broker, ApiKey::FindCoordinator), 1);
    assert_eq!(
        client.coordinator("g").await.unwrap().id(),
        Some(broker.node_id())
    );
}
