//! What the guard (`protocol::guard`) costs next to the decode it protects.
//!
//! For each response: `guard` is `guard::check` alone, `decode` is kafka-protocol's
//! decoder alone, `guarded` is both (what `frame::decode_response` runs). Cases:
//! - `metadata_v12`: 1,000 topics x 10 partitions x 3 replicas, a large cluster's full
//!   Metadata answer (~580 KB);
//! - `fetch_v12`: 100 partitions x 100 KiB of records each (~10 MiB): the records are
//!   skipped by their length, so the guard's cost must not grow with them;
//! - `heartbeat_v4`: the smallest answer, for the fixed overhead.
//!
//! Run: `cargo bench --bench response_guard`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use josefine::protocol::guard::{self, WireSchema};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchResponse, HeartbeatResponse, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn encode<M: Encodable>(m: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    m.encode(&mut buf, version)
        .expect("benchmark message encodes");
    buf.freeze()
}

fn metadata() -> Bytes {
    let brokers = (0..6)
        .map(|i| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(i))
                .with_host(StrBytes::from_string(format!("broker-{i}.example.com")))
                .with_port(9092)
        })
        .collect();
    let topics = (0..1000)
        .map(|t| {
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(format!(
                    "service.events.topic-{t:04}"
                )))))
                .with_partitions(
                    (0..10)
                        .map(|p| {
                            let replicas: Vec<BrokerId> =
                                (0..3).map(|r| BrokerId((p + r) % 6)).collect();
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(replicas[0])
                                .with_leader_epoch(7)
                                .with_replica_nodes(replicas.clone())
                                .with_isr_nodes(replicas)
                        })
                        .collect(),
                )
        })
        .collect();
    encode(
        &MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(topics),
        12,
    )
}

fn fetch() -> Bytes {
    let records = Bytes::from(vec![0x5a; 100 * 1024]);
    let topics = (0..10)
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))))
                .with_partitions(
                    (0..10)
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p)
                                .with_high_watermark(1_000_000)
                                .with_records(Some(records.clone()))
                        })
                        .collect(),
                )
        })
        .collect();
    encode(&FetchResponse::default().with_responses(topics), 12)
}

fn case<M: Decodable + WireSchema>(c: &mut Criterion, name: &str, body: Bytes, version: i16) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("guard", |b| {
        b.iter(|| black_box(guard::check::<M>(black_box(&body), version).unwrap()))
    });
    group.bench_function("decode", |b| {
        b.iter(|| black_box(M::decode(&mut body.clone(), version).unwrap()))
    });
    group.bench_function("guarded", |b| {
        b.iter(|| {
            guard::check::<M>(black_box(&body), version).unwrap();
            black_box(M::decode(&mut body.clone(), version).unwrap())
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    case::<MetadataResponse>(c, "metadata_v12", metadata(), 12);
    case::<FetchResponse>(c, "fetch_v12", fetch(), 12);
    case::<HeartbeatResponse>(
        c,
        "heartbeat_v4",
        encode(&HeartbeatResponse::default(), 4),
        4,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
