//! The producer against the real brokers (Kafka 4.4, then Tansu): completeness and order of 100,000 keyed
//! records, key placement identical to librdkafka's, every codec, and a librdkafka
//! consumer reading what we wrote.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::real_broker;
use josefine::{Compression, DefaultPartitioner, NewTopic, Partitioner, Producer, ProducerRecord};

const PARTITIONS: i32 = 6;

async fn topic(client: &josefine::Client, prefix: &str, partitions: i32) -> String {
    let name = common::unique(prefix);
    client
        .admin()
        .create_topic(NewTopic::new(&name, partitions))
        .await
        .unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_keyed_records_arrive_complete_and_in_order() {
    let addr = real_broker!();
    let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
    let client = common::client(&addr).await;
    let topic = topic(&client, "produce-100k", PARTITIONS).await;
    let producer = Producer::builder(client.clone()).build().unwrap();

    const N: usize = 100_000;
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        let record = ProducerRecord::new(&topic)
            .key(format!("key-{}", i % 1000))
            .value(format!("value-{i}"));
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    // Per key, records must come back in the order sent; per partition, offsets dense.
    let mut by_partition: HashMap<i32, usize> = HashMap::new();
    for delivery in deliveries {
        let report = delivery.await.unwrap();
        *by_partition.entry(report.partition).or_default() += 1;
    }
    producer.close().await.unwrap();
    assert_eq!(by_partition.values().sum::<usize>(), N);

    let mut seen = 0;
    let mut last_index_per_key: HashMap<String, usize> = HashMap::new();
    for p in 0..PARTITIONS {
        let count = by_partition.get(&p).copied().unwrap_or(0);
        let records = common::read_partition(&client, &topic, p, count).await;
        assert_eq!(records.len(), count, "partition {p}");
        for (expected_offset, record) in records.iter().enumerate() {
            assert_eq!(
                record.offset(),
                expected_offset as i64,
                "dense offsets in {p}"
            );
            let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
            let value = String::from_utf8(record.value().unwrap().to_vec()).unwrap();
            let index: usize = value.strip_prefix("value-").unwrap().parse().unwrap();
            assert_eq!(format!("key-{}", index % 1000), key);
            assert_eq!(
                DefaultPartitioner::default().partition(&topic, Some(key.as_bytes()), PARTITIONS),
                p
            );
            if let Some(prev) = last_index_per_key.insert(key.clone(), index) {
                assert!(prev < index, "{key}: {prev} then {index}");
            }
            seen += 1;
        }
    }
    assert_eq!(seen, N, "no record lost, none duplicated");
}

#[tokio::test]
async fn keys_land_where_librdkafka_puts_them() {
    let addr = real_broker!();
    let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
    let Some(python) = common::python() else {
        return;
    };
    let client = common::client(&addr).await;
    let ours = topic(&client, "placement-ours", PARTITIONS).await;
    let theirs = topic(&client, "placement-rdkafka", PARTITIONS).await;
    let keys: Vec<String> = (0..500)
        .map(|i| format!("k{i}-{}", "x".repeat(i % 13)))
        .chain(["", "21", "foobar", "a-little-bit-long-string"].map(String::from))
        .collect();

    let producer = Producer::builder(client.clone()).build().unwrap();
    let mut placed = HashMap::new();
    for key in &keys {
        let report = producer
            .send(ProducerRecord::new(&ours).key(key.clone()).value("x"))
            .await
            .unwrap();
        placed.insert(key.clone(), report.partition);
    }
    producer.close().await.unwrap();

    let stdout = common::rdkafka(
        &python,
        &[
            "partitions",
            "--bootstrap",
            &addr,
            "--topic",
            &theirs,
            "--partitions",
            "6",
        ],
        &keys.join("\n"),
    );
    let rdkafka: HashMap<String, i32> = parse_json_map(&stdout);
    let comparable: Vec<&String> = keys.iter().filter(|k| !k.is_empty()).collect();
    assert!(comparable.len() > 500);
    for key in comparable {
        assert_eq!(placed[key], rdkafka[key], "key {key:?}");
    }
}

/// A tiny parser for `{"key": 3, ...}`, to avoid a JSON dependency for one test.
fn parse_json_map(text: &str) -> HashMap<String, i32> {
    let body = text.trim().trim_start_matches('{').trim_end_matches('}');
    body.split(", \"")
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let entry = entry.trim_start_matches('"');
            let (key, value) = entry.rsplit_once("\": ").expect("key: value");
            (
                key.to_string(),
                value.trim().parse().expect("partition number"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_codec_round_trips_through_the_producer() {
    let addr = real_broker!();
    let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
    let client = common::client(&addr).await;
    let topic = topic(&client, "produce-codecs", Compression::ALL.len() as i32).await;
    for (p, codec) in Compression::ALL.into_iter().enumerate() {
        let producer = Producer::builder(client.clone())
            .compression(codec, None)
            .linger(Duration::from_millis(20))
            .build()
            .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..200 {
            let record = ProducerRecord::new(&topic)
                .partition(p as i32)
                .key(format!("k{i}"))
                .value(format!("{codec:?} payload {i} {}", "abc".repeat(i)))
                .header("h", "1")
                .header("h", "2");
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
        for d in deliveries {
            assert_eq!(d.await.unwrap().partition, p as i32);
        }
        producer.close().await.unwrap();
        let records = common::read_partition(&client, &topic, p as i32, 200).await;
        for (i, r) in records.iter().enumerate() {
            let expected = format!("{codec:?} payload {i} {}", "abc".repeat(i));
            assert_eq!(r.value().unwrap(), expected.as_bytes());
            let headers: Vec<_> = r
                .headers()
                .iter()
                .map(|h| h.value().unwrap().to_vec())
                .collect();
            assert_eq!(headers, [b"1".to_vec(), b"2".to_vec()]);
        }
    }
}

#[tokio::test]
async fn librdkafka_reads_what_we_produce() {
    let addr = real_broker!();
    let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
    let Some(python) = common::python() else {
        return;
    };
    let client = common::client(&addr).await;
    let topic = topic(&client, "interop-read", 3).await;
    let producer = Producer::builder(client.clone())
        .compression(Compression::Lz4, None)
        .build()
        .unwrap();
    const N: usize = 300;
    for i in 0..N {
        let record = ProducerRecord::new(&topic)
            .key(format!("key-{i}"))
            .value(format!("value-{i}"))
            .header("seq", i.to_string())
            .header("seq", "again");
        // Not awaited one by one: close() below delivers them all.
        drop(producer.enqueue(record).await.unwrap());
    }
    producer.close().await.unwrap();

    let stdout = common::rdkafka(
        &python,
        &[
            "consume",
            "--bootstrap",
            &addr,
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--count",
            &N.to_string(),
        ],
        "",
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), N);
    let mut values: Vec<String> = Vec::new();
    for line in lines {
        // {"partition": 0, "offset": 1, "key": "key-7", "value": "value-7", "headers": [["seq", "7"], ["seq", "again"]]}
        let key = field(line, "key");
        let value = field(line, "value");
        let i = value.strip_prefix("value-").unwrap();
        assert_eq!(key, format!("key-{i}"));
        assert!(
            line.contains(&format!(r#""headers": [["seq", "{i}"], ["seq", "again"]]"#)),
            "{line}"
        );
        values.push(value);
    }
    values.sort();
    values.dedup();
    assert_eq!(values.len(), N, "every record once");
}

fn field(line: &str, name: &str) -> String {
    let start = line
        .find(&format!("\"{name}\": \""))
        .expect("field present")
        + name.len()
        + 5;
    let end = start + line[start..].find('"').unwrap();
    line[start..end].to_string()
}

#[tokio::test]
async fn flush_delivers_everything_buffered_and_reports_offsets() {
    let addr = real_broker!();
    let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
    let client = common::client(&addr).await;
    let topic = topic(&client, "flush", 1).await;
    // A linger far longer than the test: only flush can send these.
    let producer = Producer::builder(client.clone())
        .linger(Duration::from_secs(60))
        .delivery_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new(&topic).value(format!("{i}")))
                .await
                .unwrap(),
        );
    }
    tokio::time::timeout(Duration::from_secs(10), producer.flush())
        .await
        .expect("flush returns");
    assert_eq!(producer.pending(), 0);
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, i as i64);
    }
}

#[tokio::test]
async fn a_record_too_large_fails_alone_with_a_clear_error() {
    let addr = real_broker!();
    let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
    let client = common::client(&addr).await;
    let topic = topic(&client, "too-large", 1).await;
    let producer = Producer::builder(client.clone())
        .max_request_size(64 * 1024)
        .build()
        .unwrap();
    let small = producer
        .enqueue(ProducerRecord::new(&topic).value("small"))
        .await
        .unwrap();
    let err = producer
        .enqueue(ProducerRecord::new(&topic).value(vec![7u8; 100 * 1024]))
        .await
        .expect_err("too large");
    assert_eq!(
        err.code(),
        Some(josefine::KafkaCode::MESSAGE_TOO_LARGE),
        "{err}"
    );
    assert!(err.to_string().contains("max.request.size"), "{err}");
    assert_eq!(
        small.await.unwrap().offset,
        0,
        "the other record is unaffected"
    );
    producer.close().await.unwrap();
}

#[tokio::test]
async fn an_unknown_topic_fails_after_max_block() {
    let addr = real_broker!();
    let _turn = common::ONE_PRODUCER_AT_A_TIME.lock().await;
    let client = common::client(&addr).await;
    let producer = Producer::builder(client)
        .max_block(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = producer
        .send(ProducerRecord::new(common::unique("nope")).value("x"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("max.block.ms"), "{err}");
}
