//! Our record-batch codec against the real brokers (Kafka 4.4 and Tansu): a batch of
//! every codec produced with the low-level call and fetched back byte-identical,
//! duplicate headers included. Both brokers, because each stores batches its own way.

mod common;

use bytes::Bytes;
use common::real_broker;
use josefine::protocol::records::{batches, BatchBuilder, Compression, DecodeOptions, Header};
use josefine::protocol::ClientExt;
use josefine::{Client, NewTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

const CODECS: [Compression; 5] = Compression::ALL;

/// What we put in each record, to compare with what comes back.
struct Input {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

fn inputs() -> Vec<Input> {
    (0..50i64)
        .map(|i| Input {
            timestamp: 1_700_000_000_000 + i * 7,
            key: (i % 5 != 0).then(|| format!("key-{i}").into_bytes()),
            value: (i % 11 != 3)
                .then(|| format!("value {i} {}", "x".repeat(i as usize * 3)).into_bytes()),
            // Duplicate keys, in a deliberate order, plus a null value.
            headers: vec![
                Header::new("trace", Some(format!("a{i}").as_bytes())),
                Header::new("trace", Some(b"b")),
                Header::new("empty", None),
                Header::new("trace", Some(b"c")),
            ],
        })
        .collect()
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

async fn produce(client: &Client, topic: &str, partition: i32, batch: Bytes) -> i64 {
    let leader = client.leader(topic, partition).await.unwrap();
    // Produce v13 (Kafka 4) names topics by id only; older versions by name.
    let topic_id = client
        .metadata()
        .topic(topic)
        .and_then(|t| t.topic_id)
        .unwrap_or_default();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_topic_id(topic_id)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    common::until_served(&format!("produce to {topic}/{partition}"), || async {
        let response = leader.call(&request).await.unwrap();
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    })
    .await
}

#[tokio::test]
async fn a_batch_of_every_codec_round_trips_byte_identical() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let topic = common::unique("codecs");
    client
        .admin()
        .create_topic(NewTopic::new(&topic, CODECS.len() as i32))
        .await
        .unwrap();
    let inputs = inputs();

    for (partition, codec) in CODECS.into_iter().enumerate() {
        let partition = partition as i32;
        let mut builder = BatchBuilder::new().compression(codec, None);
        for r in &inputs {
            builder
                .push(
                    r.timestamp,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &r.headers,
                )
                .unwrap();
        }
        let produced = builder.finish().unwrap();
        let base = produce(&client, &topic, partition, produced.clone()).await;

        let fetched = common::fetch_records(&client, &topic, partition, base).await;
        let mut decoded = batches(fetched, &DecodeOptions::default());
        let batch = decoded.next().expect("one batch").unwrap();
        assert!(decoded.next().is_none(), "{codec:?}: exactly one batch");
        assert_eq!(batch.compression(), codec);
        assert_eq!(batch.base_offset(), base);

        // The broker owns base offset (bytes 0..8) and partition leader epoch (12..16);
        // everything else, CRC and compressed payload included, must come back as sent.
        let got = batch.as_bytes();
        assert_eq!(got.len(), produced.len(), "{codec:?}: batch size");
        assert_eq!(got[8..12], produced[8..12], "{codec:?}: batch length");
        assert_eq!(
            got[16..],
            produced[16..],
            "{codec:?}: batch bytes from magic on"
        );

        let records: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), inputs.len());
        for (i, (record, input)) in records.iter().zip(&inputs).enumerate() {
            assert_eq!(record.offset(), base + i as i64);
            assert_eq!(record.timestamp(), input.timestamp);
            assert_eq!(record.key().map(|k| k.to_vec()), input.key);
            assert_eq!(record.value().map(|v| v.to_vec()), input.value);
            assert_eq!(
                record.headers(),
                &input.headers[..],
                "{codec:?}: headers of record {i}"
            );
        }
    }
}
