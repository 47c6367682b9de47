//! Records between Josefine and the Java client (kafka-clients 4.4, the reference
//! implementation) through Apache Kafka 4.4: each writes every codec, the other reads
//! every field back: partition, offset, timestamp, null and non-null keys and values,
//! headers in order with a duplicate name and a null value. Kafka only: the Java
//! client is the peer that matters on the broker it ships with. (Groups with Java
//! members: broker_group.rs, `java_group_*`.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::real_kafka;

use josefine::protocol::FetchedBatchExt;
use josefine::{Client, Compression, Consumer, NewTopic, Producer, ProducerRecord, StartOffset};

const COUNT: usize = 40;
const PARTITIONS: i32 = 2;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// Record `i` as both peers write it (JavaPeer.java's `produce`).
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    partition: i32,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn expected(i: usize, codec: &str) -> Expected {
    Expected {
        partition: i as i32 % PARTITIONS,
        timestamp: BASE_TIMESTAMP + i as i64,
        key: (i as i64 % 5 != 0).then(|| format!("key-{i}").into_bytes()),
        value: (i % 7 != 3).then(|| format!("value-{i}-{codec}").into_bytes()),
        headers: vec![
            ("h".into(), Some(format!("a{i}").into_bytes())),
            ("h".into(), Some(b"b".to_vec())),
            ("empty".into(), None),
        ],
    }
}

/// The index a value or key names, from the timestamp (every record has one).
fn index_of(timestamp: i64) -> usize {
    (timestamp - BASE_TIMESTAMP) as usize
}

async fn topic(client: &Client, prefix: &str) -> String {
    let topic = common::unique(prefix);
    client
        .admin()
        .create_topic(NewTopic::new(&topic, PARTITIONS))
        .await
        .unwrap();
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn josefine_reads_what_the_java_client_writes_with_every_codec() {
    let kafka = real_kafka!();
    let Some(classpath) = common::java_peer() else {
        return;
    };
    let client = common::client(&kafka.plaintext).await;
    for codec in Compression::ALL {
        let name = codec.name(); // Kafka's compression.type
        let topic = topic(&client, &format!("java-writes-{name}")).await;
        let count = COUNT.to_string();
        let partitions = PARTITIONS.to_string();
        let out = tokio::task::spawn_blocking({
            let (classpath, bootstrap, topic) =
                (classpath.clone(), kafka.plaintext.clone(), topic.clone());
            move || {
                common::java(
                    &classpath,
                    &[
                        "produce",
                        "--bootstrap",
                        &bootstrap,
                        "--topic",
                        &topic,
                        "--count",
                        &count,
                        "--partitions",
                        &partitions,
                        "--compression",
                        name,
                    ],
                )
            }
        })
        .await
        .unwrap();
        assert_eq!(out.trim(), format!("{{\"produced\": {COUNT}}}"));

        let consumer = Consumer::builder(client.clone()).build().unwrap();
        let mut seen = BTreeMap::new();
        for p in 0..PARTITIONS {
            let mut reader = consumer
                .consume_partition(&topic, p, StartOffset::Earliest)
                .await
                .unwrap();
            let mut next_offset = 0;
            while next_offset < (COUNT / PARTITIONS as usize) as i64 {
                let batch = tokio::time::timeout(Duration::from_secs(20), reader.next_batch())
                    .await
                    .expect("records keep coming")
                    .expect("not closed")
                    .unwrap();
                for b in batch.record_batches() {
                    assert_eq!(b.compression(), codec, "{name}: the Java client's codec");
                }
                for record in &batch {
                    let record = record.unwrap();
                    assert_eq!(record.offset(), next_offset);
                    next_offset += 1;
                    let i = index_of(record.timestamp());
                    let got = Expected {
                        partition: p,
                        timestamp: record.timestamp(),
                        key: record.key().map(|k| k.to_vec()),
                        value: record.value().map(|v| v.to_vec()),
                        headers: record
                            .headers()
                            .iter()
                            .map(|h| {
                                let key = String::from_utf8(h.key().to_vec()).unwrap();
                                (key, h.value().map(|v| v.to_vec()))
                            })
                            .collect(),
                    };
                    assert_eq!(got, expected(i, name), "{name}: record {i}");
                    assert!(seen.insert(i, ()).is_none(), "{name}: record {i} twice");
                }
            }
        }
        assert_eq!(seen.len(), COUNT, "{name}: every record");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_client_reads_what_josefine_writes_with_every_codec() {
    let kafka = real_kafka!();
    let Some(classpath) = common::java_peer() else {
        return;
    };
    let client = common::client(&kafka.plaintext).await;
    for codec in Compression::ALL {
        let name = codec.name(); // Kafka's compression.type
        let topic = topic(&client, &format!("josefine-writes-{name}")).await;
        let producer = Producer::builder(client.clone())
            .compression(codec, None)
            .build()
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..COUNT {
            let e = expected(i, name);
            let mut record = ProducerRecord::new(&topic)
                .partition(e.partition)
                .timestamp(e.timestamp);
            if let Some(key) = e.key {
                record = record.key(key);
            }
            if let Some(value) = e.value {
                record = record.value(value);
            }
            for (k, v) in e.headers {
                record = match v {
                    Some(v) => record.header(&k, v),
                    None => record.null_header(&k),
                };
            }
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
        producer.close().await.unwrap();
        common::delivered(deliveries).await;

        let count = COUNT.to_string();
        let out = tokio::task::spawn_blocking({
            let (classpath, bootstrap, topic) =
                (classpath.clone(), kafka.plaintext.clone(), topic.clone());
            move || {
                common::java(
                    &classpath,
                    &[
                        "consume",
                        "--bootstrap",
                        &bootstrap,
                        "--topic",
                        &topic,
                        "--count",
                        &count,
                    ],
                )
            }
        })
        .await
        .unwrap();
        let mut seen = BTreeMap::new();
        let mut next_offset = [0i64; PARTITIONS as usize];
        for line in out.lines() {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            let bytes = |v: &serde_json::Value| v.as_str().map(common::unhex);
            let partition = json["p"].as_i64().unwrap() as i32;
            let offset = json["o"].as_i64().unwrap();
            assert_eq!(
                offset, next_offset[partition as usize],
                "{name}: dense offsets"
            );
            next_offset[partition as usize] += 1;
            let timestamp = json["t"].as_i64().unwrap();
            let got = Expected {
                partition,
                timestamp,
                key: bytes(&json["k"]),
                value: bytes(&json["v"]),
                headers: json["h"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (h[0].as_str().unwrap().to_string(), bytes(&h[1])))
                    .collect(),
            };
            let i = index_of(timestamp);
            assert_eq!(got, expected(i, name), "{name}: record {i} as Java read it");
            assert!(seen.insert(i, ()).is_none(), "{name}: record {i} twice");
        }
        assert_eq!(
            seen.len(),
            COUNT,
            "{name}: the Java client read every record"
        );
    }
}
