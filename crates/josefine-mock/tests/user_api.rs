//! The user-facing helpers: producing without a client, faults on a timer,
//! the network knobs (latency, jitter, drop rate, dropped connections),
//! waiting on the cluster, deterministic mode, and cluster handles.
//!
//! Timing tests run on tokio's paused clock, where the mock's sleeps are
//! virtual and exact.

mod common;

use std::time::Duration;

use common::{metadata_all, RawClient};
use josefine_mock::{ApiKey, MockCluster, ProduceError, Record, DETERMINISTIC_EPOCH_MS};
use kafka_protocol::messages::MetadataRequest;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn cluster() -> MockCluster {
    MockCluster::builder()
        .brokers(3)
        .topic("orders", 3)
        .start()
        .await
        .unwrap()
}

// ---- produce ----

#[tokio::test]
async fn produce_places_records_as_kafkas_partitioner_does() {
    let cluster = cluster().await;
    let produced = cluster
        .produce(
            "orders",
            [
                Record::new().key("customer-1").value("a"),
                Record::new().value("keyless 1"),
                Record::new().key("customer-1").value("b"),
                Record::new().value("keyless 2"),
                Record::new().key("anything").value("c").partition(2),
                Record::new().value("keyless 3"),
                Record::new().value("keyless 4"),
            ],
        )
        .unwrap();
    assert_eq!(produced.len(), 7);
    // The same key, the same partition (murmur2, as Java's producer).
    assert_eq!(produced[0].partition, produced[2].partition);
    // Keyless records go round-robin from partition 0.
    let keyless: Vec<i32> = [1, 3, 5, 6]
        .iter()
        .map(|i| produced[*i].partition)
        .collect();
    assert_eq!(keyless, [0, 1, 2, 0]);
    assert_eq!(produced[4].partition, 2);
    // Offsets count up per partition, in input order.
    for p in 0..3 {
        let offsets: Vec<i64> = produced
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, expected, "partition {p}");
        assert_eq!(cluster.log_end_offset("orders", p), offsets.len() as i64);
    }
    // The round-robin goes on in the next call.
    let next = cluster.produce("orders", ["keyless 5"]).unwrap();
    assert_eq!(next[0].partition, 1);
}

#[tokio::test]
async fn produce_is_all_or_nothing() {
    let cluster = cluster().await;
    assert_eq!(
        cluster.produce("nope", ["x"]),
        Err(ProduceError::UnknownTopic("nope".into()))
    );
    let err = cluster
        .produce(
            "orders",
            [Record::from("fine"), Record::from("bad").partition(3)],
        )
        .unwrap_err();
    assert_eq!(
        err,
        ProduceError::UnknownPartition {
            topic: "orders".into(),
            partition: 3
        }
    );
    assert!(err.to_string().contains("no partition 3"), "{err}");
    for p in 0..3 {
        assert_eq!(cluster.log_end_offset("orders", p), 0);
    }
}

#[tokio::test]
async fn produce_batches_like_a_producer_and_stamps_timestamps() {
    let cluster = cluster().await;
    // 100 records of 1 KiB to one partition: several 16 KiB batches.
    let big = vec![7u8; 1024];
    let produced = cluster
        .produce(
            "orders",
            (0..100).map(|_| Record::new().value(big.clone()).partition(1)),
        )
        .unwrap();
    assert_eq!(produced.last().map(|p| p.offset), Some(99));
    let batches = cluster.batches("orders", 1);
    assert!(batches.len() > 3, "{} batches", batches.len());
    // An explicit timestamp is kept; others take the wall clock.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stamped = cluster
        .produce(
            "orders",
            [Record::from("a").timestamp(5), Record::from("b")],
        )
        .unwrap();
    assert_eq!(stamped[0].timestamp, 5);
    assert!(stamped[1].timestamp >= before);
}

#[tokio::test]
async fn a_deterministic_cluster_stamps_records_from_a_fixed_epoch() {
    let cluster = MockCluster::builder()
        .deterministic(1)
        .topic("t", 1)
        .start()
        .await
        .unwrap();
    let produced = cluster.produce("t", ["a", "b", "c"]).unwrap();
    let timestamps: Vec<i64> = produced.iter().map(|p| p.timestamp).collect();
    assert_eq!(
        timestamps,
        [0, 1, 2].map(|o| DETERMINISTIC_EPOCH_MS + o),
        "epoch plus offset"
    );
    let again = cluster.produce("t", ["d"]).unwrap();
    assert_eq!(again[0].timestamp, DETERMINISTIC_EPOCH_MS + 3);
}

// ---- deterministic mode ----

#[tokio::test]
async fn seeds_fix_topic_ids() {
    async fn ids(seed: Option<u64>) -> Vec<uuid::Uuid> {
        let mut builder = MockCluster::builder().topic("a", 1).topic("b", 1);
        if let Some(seed) = seed {
            builder = builder.deterministic(seed);
        }
        let cluster = builder.start().await.unwrap();
        cluster.create_topic("c", 1);
        ["a", "b", "c"]
            .iter()
            .map(|t| cluster.topic_id(t).unwrap())
            .collect()
    }
    let first = ids(Some(11)).await;
    assert_eq!(first, ids(Some(11)).await);
    assert_ne!(first, ids(Some(12)).await);
    assert_ne!(ids(None).await, ids(None).await, "unique without a seed");
    let mut distinct = first.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);
}

// ---- the network knobs ----

/// Round-trip time of one Metadata request on a fresh connection to `node`.
async fn round_trip(cluster: &MockCluster, node: i32) -> Duration {
    let mut client = RawClient::connect_to(cluster, node).await;
    let started = Instant::now();
    client.call(&metadata_all(12), 12).await;
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_request_and_jitter_adds_to_it() {
    let cluster = cluster().await;
    cluster.set_latency(ms(50));
    for node in 1..=3 {
        assert_eq!(cluster.broker(node).latency(), ms(50));
        assert_eq!(round_trip(&cluster, node).await, ms(50));
    }
    cluster.broker(2).set_latency(Duration::ZERO);
    assert_eq!(round_trip(&cluster, 2).await, Duration::ZERO);

    cluster.set_latency_jitter(ms(20));
    let mut seen = Vec::new();
    for _ in 0..20 {
        let rtt = round_trip(&cluster, 1).await;
        // tokio's timers round up to the millisecond.
        assert!(rtt >= ms(50) && rtt <= ms(70), "{rtt:?}");
        seen.push(rtt);
    }
    seen.dedup();
    assert!(seen.len() > 1, "the jitter varies: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn jitter_is_a_function_of_the_seed_and_the_request() {
    async fn delays(seed: u64) -> Vec<Duration> {
        let cluster = MockCluster::builder()
            .deterministic(seed)
            .brokers(1)
            .start()
            .await
            .unwrap();
        cluster.set_latency_jitter(ms(100));
        let mut client = RawClient::connect_to(&cluster, 1).await;
        let mut out = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            client.call(&metadata_all(12), 12).await;
            out.push(started.elapsed());
        }
        out
    }
    let first = delays(3).await;
    assert_eq!(first, delays(3).await);
    assert_ne!(first, delays(4).await);
}

#[tokio::test]
async fn the_drop_rate_closes_connections_instead_of_answering() {
    let cluster = cluster().await;
    cluster.set_drop_rate(1.0);
    assert_eq!(cluster.broker(3).drop_rate(), 1.0);
    let mut client = RawClient::connect_to(&cluster, 1).await;
    client.send(&MetadataRequest::default(), 12).await;
    client.expect_closed().await;
    assert_eq!(
        cluster.broker(1).requests().last().map(|r| r.api_key),
        Some(ApiKey::Metadata),
        "a dropped request is still logged"
    );
    cluster.set_drop_rate(0.0);
    let mut client = RawClient::connect_to(&cluster, 1).await;
    client.call(&metadata_all(12), 12).await;
}

#[tokio::test]
async fn drop_connections_closes_every_open_connection() {
    let cluster = cluster().await;
    let mut clients = Vec::new();
    for node in 1..=3 {
        let mut client = RawClient::connect_to(&cluster, node).await;
        client.call(&metadata_all(12), 12).await;
        clients.push(client);
    }
    let open: usize = cluster.brokers().iter().map(|b| b.open_connections()).sum();
    assert_eq!(open, 3);
    cluster.drop_connections();
    for client in &mut clients {
        client.expect_closed().await;
    }
    assert!(
        cluster
            .wait_until(ms(1000), |c| c
                .brokers()
                .iter()
                .all(|b| b.open_connections() == 0))
            .await
    );
    // Still listening.
    RawClient::connect_to(&cluster, 2)
        .await
        .call(&metadata_all(12), 12)
        .await;
}

// ---- faults on a timer ----

#[tokio::test(start_paused = true)]
async fn after_runs_a_fault_on_time() {
    let cluster = cluster().await;
    let start = Instant::now();
    let moved = cluster.after(ms(200), |c| c.move_leader("orders", 0, 3));
    assert!(!moved.is_finished());
    assert_eq!(moved.fired(), 0);
    moved.wait().await;
    assert_eq!(start.elapsed(), ms(200));
    assert_eq!(cluster.leader("orders", 0), Some(3));
    assert_eq!(moved.fired(), 1);
    assert!(moved.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_script_runs_its_steps_in_order_with_relative_delays() {
    let cluster = cluster().await;
    let start = Instant::now();
    let script = cluster
        .script()
        .after(ms(100), |c| c.move_leader("orders", 0, 2))
        .after_async(ms(100), |c| async move { c.stop_broker(3).await })
        .after(ms(100), |c| c.move_leader("orders", 2, 1))
        .after_async(ms(100), |c| async move {
            c.restart_broker(3).await.unwrap();
        })
        .start();
    tokio::time::sleep(ms(150)).await;
    assert_eq!(script.fired(), 1);
    assert_eq!(cluster.leader("orders", 0), Some(2));
    script.wait().await;
    assert_eq!(start.elapsed(), ms(400));
    assert_eq!(script.fired(), 4);
    assert_eq!(cluster.leader("orders", 2), Some(1));
    assert_eq!(cluster.leader_epoch("orders", 2), Some(1));
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_orphaned_schedules_do_nothing() {
    let cluster = cluster().await;
    let cancelled = cluster.after(ms(100), |c| c.move_leader("orders", 0, 2));
    cancelled.cancel();
    cancelled.wait().await;
    assert_eq!(cancelled.fired(), 0);

    // A schedule holds no handle on the cluster: dropping the cluster ends it.
    let orphan = cluster.after(ms(100), |c| c.move_leader("orders", 0, 2));
    drop(cluster);
    orphan.wait().await;
    assert_eq!(orphan.fired(), 0);
}

#[tokio::test(start_paused = true)]
async fn every_repeats_until_cancelled() {
    let cluster = cluster().await;
    let moving = cluster.every(ms(100), |c| c.move_leader("orders", 1, 1));
    tokio::time::sleep(ms(350)).await;
    assert_eq!(moving.fired(), 3);
    assert_eq!(cluster.leader_epoch("orders", 1), Some(3));
    moving.cancel();
    moving.wait().await;
    tokio::time::sleep(ms(500)).await;
    assert_eq!(cluster.leader_epoch("orders", 1), Some(3));
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "no broker 9")]
async fn a_panicking_step_panics_the_waiter() {
    let cluster = cluster().await;
    let bad = cluster.after(ms(10), |c| c.move_leader("orders", 0, 9));
    bad.wait().await;
}

// ---- waiting and handles ----

#[tokio::test(start_paused = true)]
async fn wait_until_gives_up_after_the_timeout() {
    let cluster = cluster().await;
    let start = Instant::now();
    assert!(
        !cluster
            .wait_until(ms(250), |c| c.leader("orders", 0) == Some(3))
            .await
    );
    assert!(start.elapsed() >= ms(250) && start.elapsed() < ms(260));
    cluster.after(ms(100), |c| c.move_leader("orders", 0, 3));
    assert!(
        cluster
            .wait_until(ms(250), |c| c.leader("orders", 0) == Some(3))
            .await
    );
}

#[tokio::test]
async fn clones_share_the_cluster_until_the_last_is_dropped() {
    let cluster = cluster().await;
    let addr = cluster.broker(1).addr();
    let clone = cluster.clone();
    clone.produce("orders", ["x"]).unwrap();
    assert_eq!(cluster.log_end_offset("orders", 0), 1);
    drop(cluster);
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("the clone keeps the brokers up");
    drop(clone);
    // The listener closes once the last handle is gone.
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(ms(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .expect("connections refused after the last handle dropped");
}

// ---- with a Josefine client (the `client` feature) ----

/// What `produce` writes is what a consumer reads: key, value, headers (in
/// order, repeats and nulls kept), timestamp and offset.
#[cfg(feature = "client")]
#[tokio::test]
async fn produced_records_read_back_through_josefine() {
    use josefine::{Consumer, StartOffset};

    let cluster = cluster().await;
    let produced = cluster
        .produce(
            "orders",
            [
                Record::new()
                    .key("k1")
                    .value("v1")
                    .header("h", "1")
                    .header("h", "2")
                    .null_header("n")
                    .timestamp(1_000)
                    .partition(1),
                Record::new().partition(1).timestamp(999),
                Record::new().key("").value(vec![0u8; 70_000]).partition(1),
            ],
        )
        .unwrap();
    let client = cluster.client().await.unwrap();
    assert_eq!(client.partitions("orders").await.unwrap(), [0, 1, 2]);
    let consumer = Consumer::builder(client).build().unwrap();
    let mut reader = consumer
        .consume_partition("orders", 1, StartOffset::Earliest)
        .await
        .unwrap();
    let mut records = Vec::new();
    while records.len() < 3 {
        let batch = tokio::time::timeout(Duration::from_secs(10), reader.next_batch())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for record in &batch {
            records.push(record.unwrap());
        }
    }
    let first = &records[0];
    assert_eq!(first.offset(), produced[0].offset);
    assert_eq!(first.key().map(|k| &k[..]), Some(&b"k1"[..]));
    assert_eq!(first.value().map(|v| &v[..]), Some(&b"v1"[..]));
    assert_eq!(first.timestamp(), 1_000);
    let headers: Vec<(&[u8], Option<&[u8]>)> = first
        .headers()
        .iter()
        .map(|h| (&h.key()[..], h.value().map(|v| &v[..])))
        .collect();
    assert_eq!(
        headers,
        [
            (&b"h"[..], Some(&b"1"[..])),
            (&b"h"[..], Some(&b"2"[..])),
            (&b"n"[..], None)
        ]
    );
    let tombstone = &records[1];
    assert_eq!((tombstone.key(), tombstone.value()), (None, None));
    assert_eq!(tombstone.timestamp(), 999, "a timestamp below the base");
    assert_eq!(records[2].key().map(|k| k.len()), Some(0));
    assert_eq!(records[2].value().map(|v| v.len()), Some(70_000));
}

#[cfg(feature = "client")]
#[tokio::test]
async fn a_lone_broker_hands_out_clients_too() {
    let broker = josefine_mock::MockBroker::builder()
        .topic("t", 2)
        .start()
        .await
        .unwrap();
    let client = broker
        .client_builder()
        .client_id("me")
        .connect()
        .await
        .unwrap();
    assert_eq!(client.partitions("t").await.unwrap(), [0, 1]);
    assert!(broker
        .requests()
        .iter()
        .all(|r| r.client_id.as_deref() == Some("me")));
    let again = broker.client().await.unwrap();
    assert_eq!(again.partitions("t").await.unwrap(), [0, 1]);
}
