//! Shared by the integration tests: where the real broker is, unique names, a client;
//! [`tls`] starts a broker behind TLS.
#![allow(dead_code)]

pub mod tls;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use josefine::Client;

/// The real broker's address from `JOSEFINE_BROKER` (set by `scripts/test.sh`).
///
/// Without it the test is skipped with a note, unless `CI` or `JOSEFINE_REQUIRE_BROKER`
/// is set: there a missing broker is a failure, never a silent skip.
pub fn broker() -> Option<String> {
    match std::env::var("JOSEFINE_BROKER") {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ => {
            assert!(
                !required(),
                "JOSEFINE_BROKER is not set but a broker is required: run scripts/test.sh"
            );
            eprintln!(
                "skipped: JOSEFINE_BROKER is not set (run scripts/test.sh to start a broker)"
            );
            None
        }
    }
}

/// Which broker `JOSEFINE_BROKER` is (`JOSEFINE_BROKER_KIND`, set by `scripts/test.sh`):
/// the real-broker suites (`broker_*.rs`) run against both, and check what only one of
/// them does where it matters (docs/BROKERS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Apache Kafka 4.4 (KRaft), the primary test broker.
    Kafka,
    /// Tansu 0.6, the second broker for the core suites.
    Tansu,
}

/// The kind of the broker at `JOSEFINE_BROKER`; Kafka unless told otherwise.
pub fn kind() -> Kind {
    match std::env::var("JOSEFINE_BROKER_KIND").as_deref() {
        Ok("tansu") => Kind::Tansu,
        _ => Kind::Kafka,
    }
}

pub fn is_kafka() -> bool {
    kind() == Kind::Kafka
}

/// What the Kafka-only suites (`kafka_*.rs`) connect to: the listeners of the
/// single-node Kafka 4.4 that `scripts/test.sh` starts (`JOSEFINE_KAFKA*`).
#[derive(Clone, Debug)]
pub struct Kafka {
    /// PLAINTEXT, `127.0.0.1:P`; principal ANONYMOUS, a super user.
    pub plaintext: String,
    /// SASL_PLAINTEXT, `127.0.0.1:P`: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
    pub sasl: String,
    /// SSL, `localhost:P`, a server certificate for localhost signed by [`Kafka::ca`].
    pub ssl: String,
    /// The CA's PEM file.
    pub ca: String,
    /// A SASL user (and password) known to every mechanism.
    pub user: (String, String),
    /// A second SASL user, for authorization tests.
    pub other_user: (String, String),
}

/// The test Kafka's listeners, or `None` (skipped, or failed under `CI` /
/// `JOSEFINE_REQUIRE_BROKER`) when `JOSEFINE_KAFKA` is not set.
pub fn kafka() -> Option<Kafka> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match var("JOSEFINE_KAFKA") {
        Some(plaintext) => Some(Kafka {
            plaintext,
            sasl: var("JOSEFINE_KAFKA_SASL").expect("JOSEFINE_KAFKA_SASL"),
            ssl: var("JOSEFINE_KAFKA_SSL").expect("JOSEFINE_KAFKA_SSL"),
            ca: var("JOSEFINE_KAFKA_CA").expect("JOSEFINE_KAFKA_CA"),
            user: (
                var("JOSEFINE_KAFKA_USER").expect("JOSEFINE_KAFKA_USER"),
                var("JOSEFINE_KAFKA_PASSWORD").expect("JOSEFINE_KAFKA_PASSWORD"),
            ),
            other_user: (
                var("JOSEFINE_KAFKA_OTHER_USER").expect("JOSEFINE_KAFKA_OTHER_USER"),
                var("JOSEFINE_KAFKA_OTHER_PASSWORD").expect("JOSEFINE_KAFKA_OTHER_PASSWORD"),
            ),
        }),
        None => {
            assert!(
                !required(),
                "JOSEFINE_KAFKA is not set but Kafka is required: run scripts/test.sh"
            );
            eprintln!("skipped: JOSEFINE_KAFKA is not set (run scripts/test.sh to start Kafka)");
            None
        }
    }
}

/// The test Kafka, or skip the test (see [`kafka`]).
#[allow(unused_macros)]
macro_rules! real_kafka {
    () => {
        match common::kafka() {
            Some(kafka) => kafka,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use real_kafka;

/// Whether a missing broker must fail the run (CI, or the test script) rather than
/// skip the test.
fn required() -> bool {
    ["CI", "JOSEFINE_REQUIRE_BROKER"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// Connects to the real broker, or skips the test (see [`broker`]).
#[allow(unused_macros)]
macro_rules! real_broker {
    () => {
        match common::broker() {
            Some(addr) => addr,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use real_broker;

/// A topic or group name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn client(addr: &str) -> Client {
    Client::builder()
        .bootstrap([addr])
        .client_id("josefine-tests")
        .connect()
        .await
        .expect("connect to the test broker")
}

/// The venv's Python (with confluent-kafka) from `JOSEFINE_PYTHON`, under the same
/// skip-or-fail rule as [`broker`].
pub fn python() -> Option<std::path::PathBuf> {
    match std::env::var("JOSEFINE_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p.into()),
        _ => {
            assert!(
                !required(),
                "JOSEFINE_PYTHON is not set but interop is required: run scripts/test.sh"
            );
            eprintln!("skipped interop: JOSEFINE_PYTHON is not set (run scripts/test.sh)");
            None
        }
    }
}

/// Runs `tests/interop/rdkafka.py` with `args`, feeding `stdin`; returns its stdout.
pub fn rdkafka(python: &std::path::Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/rdkafka.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the interop script");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("interop script runs");
    assert!(out.status.success(), "interop script {args:?} failed");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The classpath of the Java client interop peer (`tests/interop/JavaPeer.java`,
/// compiled by `scripts/test.sh`) from `JOSEFINE_JAVA_PEER_CP`, under the same
/// skip-or-fail rule as [`broker`].
pub fn java_peer() -> Option<String> {
    match std::env::var("JOSEFINE_JAVA_PEER_CP") {
        Ok(cp) if !cp.is_empty() => Some(cp),
        _ => {
            assert!(
                !required(),
                "JOSEFINE_JAVA_PEER_CP is not set but interop is required: run scripts/test.sh"
            );
            eprintln!(
                "skipped Java interop: JOSEFINE_JAVA_PEER_CP is not set (run scripts/test.sh)"
            );
            None
        }
    }
}

/// Runs the Java peer with `args` and returns its stdout (it must succeed).
pub fn java(classpath: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("java")
        .args([
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            classpath,
            "JavaPeer",
        ])
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("start the Java peer");
    assert!(out.status.success(), "Java peer {args:?} failed");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// One Fetch of `topic`/`partition` from `offset` at the leader; the records bytes.
/// A leader that moved or went away (a killed broker, a partition just created) is
/// looked up again, for up to 30 s, as a client would.
pub async fn fetch_records(
    client: &Client,
    topic: &str,
    partition: i32,
    offset: i64,
) -> bytes::Bytes {
    use josefine::protocol::ClientExt;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let leader = client.leader(topic, partition).await.unwrap();
        let topic_id = client
            .metadata()
            .topic(topic)
            .and_then(|t| t.topic_id)
            .unwrap_or_default();
        let request = FetchRequest::default()
            .with_max_wait_ms(200)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)])]);
        let failure = match leader.call(&request).await {
            Ok(response) => {
                assert_eq!(response.error_code, 0, "fetch {topic}/{partition}@{offset}");
                let data = &response.responses[0].partitions[0];
                match josefine::KafkaCode::from_code(data.error_code) {
                    None => return data.records.clone().unwrap_or_default(),
                    Some(code) if code.is_retriable() => format!("{code:?}"),
                    Some(code) => panic!("fetch {topic}/{partition}@{offset}: {code:?}"),
                }
            }
            Err(err) if err.is_retriable() => err.to_string(),
            Err(err) => panic!("fetch {topic}/{partition}@{offset}: {err}"),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "fetch {topic}/{partition}@{offset}: still failing after 30 s: {failure}"
        );
        let _ = client.refresh_metadata(&[topic]).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Repeats `attempt` (which returns a partition's error code and its answer) while the
/// code is retriable, for up to 10 s, and returns the answer once the code is 0: a
/// partition Kafka has just created answers NOT_LEADER_OR_FOLLOWER for a moment after
/// CreateTopics returns, and a client retries. Any other code fails the test.
pub async fn until_served<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (i16, T)>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, answer) = attempt().await;
        let retriable = josefine::KafkaCode::from_code(code).is_some_and(|c| c.is_retriable());
        if code == 0 || !retriable || tokio::time::Instant::now() > deadline {
            assert_eq!(code, 0, "{what}");
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every record of `topic`/`partition` from offset 0 until `count` were read (the
/// low-level way, so producer tests do not depend on the consumer).
pub async fn read_partition(
    client: &Client,
    topic: &str,
    partition: i32,
    count: usize,
) -> Vec<josefine::protocol::records::Record> {
    use josefine::protocol::records::{batches, DecodeOptions};
    let mut records = Vec::with_capacity(count);
    let mut offset = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while records.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic}/{partition}: read {} of {count} records",
            records.len()
        );
        let data = fetch_records(client, topic, partition, offset).await;
        for batch in batches(data, &DecodeOptions::default()) {
            let batch = batch.expect("valid batch");
            for record in batch.records() {
                let record = record.expect("valid record");
                if record.offset() >= offset {
                    offset = record.offset() + 1;
                    records.push(record);
                }
            }
        }
    }
    records
}

/// Every batch of `topic`/`partition` from offset 0 up to the end of the log (until a
/// Fetch comes back empty), read the low-level way; each batch once.
pub async fn partition_batches(
    client: &Client,
    topic: &str,
    partition: i32,
) -> Vec<josefine::protocol::records::RecordBatch> {
    use josefine::protocol::records::{batches, DecodeOptions};
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let data = fetch_records(client, topic, partition, offset).await;
        if data.is_empty() {
            return out;
        }
        for batch in batches(data, &DecodeOptions::default()) {
            let batch = batch.expect("valid batch");
            if batch.last_offset() >= offset {
                offset = batch.last_offset() + 1;
                out.push(batch);
            }
        }
    }
}

/// Tansu fences concurrent idempotent producers (see broker_producer.rs): the tests of
/// one binary take turns.
pub static ONE_PRODUCER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Produces the records `offsets(p)` to each partition `p` in `0..partitions` of
/// `topic`, value `p{p}-{i}` for the i-th, with one idempotent producer (taking its
/// turn) and its batching.
pub async fn produce_values(
    client: &Client,
    topic: &str,
    partitions: i32,
    offsets: impl Fn(i32) -> std::ops::Range<i64>,
) {
    let _turn = ONE_PRODUCER_AT_A_TIME.lock().await;
    let producer = josefine::Producer::builder(client.clone()).build().unwrap();
    let mut deliveries = Vec::new();
    for p in 0..partitions {
        for i in offsets(p) {
            let record = josefine::ProducerRecord::new(topic)
                .partition(p)
                .value(format!("p{p}-{i}"));
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
    }
    producer.close().await.unwrap();
    delivered(deliveries).await;
}

/// The values of `topic`/`partition` from offset 0 as a reader at `isolation` sees
/// them, up to and including the first value `last` (for up to 30 s).
pub async fn read_until(
    client: &Client,
    topic: &str,
    partition: i32,
    isolation: josefine::IsolationLevel,
    last: &str,
) -> Vec<String> {
    let consumer = josefine::Consumer::builder(client.clone())
        .isolation_level(isolation)
        .build()
        .unwrap();
    let mut reader = consumer
        .consume_partition(topic, partition, josefine::StartOffset::Earliest)
        .await
        .unwrap();
    let mut values = Vec::new();
    let read = async {
        while let Some(batch) = reader.next_batch().await {
            for record in batch.unwrap().iter() {
                let record = record.unwrap();
                let value = String::from_utf8(record.value().unwrap().to_vec()).unwrap();
                let done = value == last;
                values.push(value);
                if done {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("{topic}/{partition}: {last} never arrived; read {values:?}"));
    values
}

/// Every value of `topic` (partitions `0..partitions`) a read_committed reader sees,
/// up to the end of each partition as it is now (its high watermark: reached once no
/// transaction is open there).
pub async fn committed_values(client: &Client, topic: &str, partitions: i32) -> Vec<String> {
    let tps: Vec<josefine::TopicPartition> = (0..partitions)
        .map(|p| josefine::TopicPartition::new(topic, p))
        .collect();
    let ends = client.admin().end_offsets(&tps).await.unwrap();
    let consumer = josefine::Consumer::builder(client.clone())
        .isolation_level(josefine::IsolationLevel::ReadCommitted)
        .build()
        .unwrap();
    let mut values = Vec::new();
    for tp in &tps {
        let end = ends[tp];
        let mut reader = consumer
            .consume_partition(topic, tp.partition, josefine::StartOffset::Earliest)
            .await
            .unwrap();
        let read = async {
            while reader.position() < end {
                let batch = reader.next_batch().await.unwrap().unwrap();
                for record in batch.iter() {
                    let record = record.unwrap();
                    values.push(String::from_utf8(record.value().unwrap().to_vec()).unwrap());
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .unwrap_or_else(|_| panic!("{tp}: the end {end} was never reached"));
    }
    values
}

/// The bytes of the Java peer's hex strings.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Asserts that every delivery succeeded (close() waits for them but reports none).
pub async fn delivered(deliveries: Vec<josefine::Delivery>) {
    for delivery in deliveries {
        delivery.await.expect("the record was delivered");
    }
}

/// Installs a log subscriber for this test binary when `JOSEFINE_TEST_LOG` is set
/// (an `EnvFilter` such as `josefine=debug`); the output goes with the test's own.
pub fn trace() {
    if let Ok(filter) = std::env::var("JOSEFINE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}
