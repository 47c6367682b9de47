//! Every metric of `docs/METRICS.md`, driven by the behaviour it counts against the
//! mock cluster and read back through `josefine::metrics::MemoryRecorder`, installed
//! once for this test binary. Tests run concurrently: each reads only its own labels
//! (its own cluster's brokers, topics and groups).

use std::sync::OnceLock;
use std::time::Duration;

use josefine::metrics::{self as m, MemoryRecorder};
use josefine::{
    Claim, Client, ConsumerGroup, GroupHandler, GroupProtocol, OffsetReset, Producer,
    ProducerRecord, Session, StartOffset,
};
use josefine_mock::{Action, ApiKey, Intercept, MockCluster, Record, ResponseError};

fn recorder() -> &'static MemoryRecorder {
    static RECORDER: OnceLock<MemoryRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder = MemoryRecorder::default();
        recorder
            .install()
            .expect("the only recorder of this binary");
        recorder
    })
}

async fn client(cluster: &MockCluster) -> Client {
    recorder();
    Client::builder()
        .bootstrap([cluster.bootstrap()])
        .request_timeout(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .unwrap()
}

/// The `broker` label of broker 1 of `cluster` (`ID@HOST:PORT`).
fn broker(cluster: &MockCluster) -> String {
    let bootstrap = cluster.bootstrap();
    let first = bootstrap.split(',').next().unwrap();
    format!("1@{first}")
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 30 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_bytes_connections_and_their_failures_are_counted() {
    let cluster = MockCluster::builder().topic("t", 1).start().await.unwrap();
    let client = client(&cluster).await;
    let producer = Producer::builder(client.clone()).build().unwrap();
    producer
        .send(ProducerRecord::new("t").value("v"))
        .await
        .unwrap();
    let r = recorder();
    let b = broker(&cluster);
    let produce = [("broker", b.as_str()), ("api", "Produce")];
    assert_eq!(r.counter(m::REQUESTS, &produce), 1);
    assert_eq!(r.histogram(m::REQUEST_LATENCY, &produce).count, 1);
    let bootstrap = cluster.bootstrap();
    let first = bootstrap.split(',').next().unwrap();
    assert!(r.counter(m::REQUESTS, &[("broker", first), ("api", "Metadata")]) >= 1);
    assert!(r.counter(m::BYTES_SENT, &[("broker", &b)]) > 0);
    assert!(r.counter(m::BYTES_RECEIVED, &[("broker", &b)]) > 0);
    assert_eq!(r.counter(m::CONNECTS, &[("broker", &b)]), 1);
    assert_eq!(r.gauge(m::REQUESTS_IN_FLIGHT, &[("broker", &b)]), Some(0.0));

    // A dropped connection: the request fails (counted), the client reconnects.
    cluster
        .broker(1)
        .intercept(Intercept::api(ApiKey::Produce).once(), Action::Disconnect);
    producer
        .send(ProducerRecord::new("t").value("again"))
        .await
        .unwrap();
    assert_eq!(r.counter(m::REQUEST_ERRORS, &produce), 1);
    assert_eq!(
        r.counter(m::REQUESTS, &produce),
        3,
        "the failed one and its retry"
    );
    until("the disconnect", || {
        r.counter(m::DISCONNECTS, &[("broker", &b)]) == 1
    })
    .await;
    assert_eq!(r.counter(m::CONNECTS, &[("broker", &b)]), 2, "reconnected");

    // A broker that cannot be reached: a failed connect.
    let unreachable = Client::builder()
        .bootstrap(["127.0.0.1:1"])
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await;
    assert!(unreachable.is_err());
    assert!(r.counter(m::CONNECT_FAILURES, &[("broker", "127.0.0.1:1")]) >= 1);
    let backoff = r.histogram(m::RECONNECT_BACKOFF, &[("broker", "127.0.0.1:1")]);
    assert!(backoff.count >= 1 && backoff.min > 0.0, "{backoff:?}");
    producer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_batches_retries_failures_and_the_buffer_are_measured() {
    let cluster = MockCluster::builder()
        .topic("p", 1)
        .topic("denied", 1)
        .topic("z", 1)
        .start()
        .await
        .unwrap();
    recorder();
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .client_id("metrics-producer")
        .connect()
        .await
        .unwrap();
    let producer = Producer::builder(client.clone())
        .linger(Duration::from_millis(20))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    // One retriable refusal first.
    cluster.broker(1).intercept(
        Intercept::api(ApiKey::Produce).once(),
        Action::error(ResponseError::NotLeaderOrFollower),
    );
    let deliveries: Vec<_> = futures::future::join_all(
        (0..10).map(|i| producer.enqueue(ProducerRecord::new("p").value(format!("v{i}")))),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for d in deliveries {
        d.await.unwrap();
    }
    let r = recorder();
    let p = [("topic", "p")];
    assert_eq!(r.counter(m::PRODUCER_RECORDS, &p), 10);
    let batches = r.counter(m::PRODUCER_BATCHES, &p);
    assert!(batches >= 1, "{batches}");
    let sizes = r.histogram(m::PRODUCER_BATCH_BYTES, &p);
    assert_eq!(sizes.count, batches);
    assert!(sizes.min > 0.0);
    let latency = r.histogram(m::PRODUCER_LATENCY, &p);
    assert_eq!(latency.count, batches);
    assert!(
        latency.min >= 0.010,
        "at least the retry's backoff: {latency:?}"
    );
    assert_eq!(r.counter(m::PRODUCER_RETRIES, &p), 1);
    let uncompressed = r.histogram(m::PRODUCER_COMPRESSION_RATIO, &p);
    assert_eq!(uncompressed.count, batches);
    assert_eq!((uncompressed.min, uncompressed.max), (1.0, 1.0));
    // Compressed batches of repetitive values: well under half their raw size.
    let compressing = Producer::builder(client.clone())
        .compression(josefine::Compression::Lz4, None)
        .build()
        .unwrap();
    let value = "abc".repeat(100);
    let deliveries: Vec<_> = futures::future::join_all(
        (0..20).map(|_| compressing.enqueue(ProducerRecord::new("z").value(value.clone()))),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for d in deliveries {
        d.await.unwrap();
    }
    let compressed = r.histogram(m::PRODUCER_COMPRESSION_RATIO, &[("topic", "z")]);
    assert_eq!(
        compressed.count,
        r.counter(m::PRODUCER_BATCHES, &[("topic", "z")])
    );
    assert!(compressed.max < 0.5, "{compressed:?}");
    compressing.close().await.unwrap();

    // A refusal that is not retriable fails the batch, counted by error.
    cluster.broker(1).intercept(
        Intercept::api(ApiKey::Produce).once(),
        Action::error(ResponseError::TopicAuthorizationFailed),
    );
    let err = producer
        .send(ProducerRecord::new("denied").value("x"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(josefine::KafkaCode::TOPIC_AUTHORIZATION_FAILED)
    );
    assert_eq!(
        r.counter(
            m::PRODUCER_ERRORS,
            &[("topic", "denied"), ("error", "TopicAuthorizationFailed")]
        ),
        1
    );
    // Everything delivered or failed: the buffer is empty again.
    producer.flush().await;
    assert_eq!(
        r.gauge(m::PRODUCER_BUFFER_BYTES, &[("client", "metrics-producer")]),
        Some(0.0)
    );
    producer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_records_bytes_position_and_lag_per_partition() {
    let cluster = MockCluster::builder().topic("c", 2).start().await.unwrap();
    cluster
        .produce(
            "c",
            (0..30).map(|i| Record::new().partition(0).value(format!("r{i}"))),
        )
        .unwrap();
    let client = client(&cluster).await;
    let consumer = josefine::Consumer::builder(client).build().unwrap();
    let mut reader = consumer
        .consume_partition("c", 0, StartOffset::Earliest)
        .await
        .unwrap();
    let mut seen = 0;
    while seen < 30 {
        futures::StreamExt::next(&mut reader)
            .await
            .unwrap()
            .unwrap();
        seen += 1;
    }
    let r = recorder();
    let p0 = [("topic", "c"), ("partition", "0")];
    until("the position at the end", || {
        r.gauge(m::CONSUMER_POSITION, &p0) == Some(30.0)
    })
    .await;
    assert_eq!(r.counter(m::CONSUMER_RECORDS, &p0), 30);
    assert!(r.counter(m::CONSUMER_BYTES, &p0) > 30 * 2);
    assert_eq!(r.gauge(m::CONSUMER_LAG, &p0), Some(0.0));
    // Five more: counted, and the lag is back to 0 once they are fetched.
    cluster
        .produce(
            "c",
            (0..5).map(|i| Record::new().partition(0).value(format!("s{i}"))),
        )
        .unwrap();
    until("the five new records", || {
        r.counter(m::CONSUMER_RECORDS, &p0) == 35
    })
    .await;
    until("the position at the new end", || {
        r.gauge(m::CONSUMER_POSITION, &p0) == Some(35.0)
    })
    .await;
    assert_eq!(r.gauge(m::CONSUMER_LAG, &p0), Some(0.0));
    assert_eq!(
        r.counter(m::CONSUMER_RECORDS, &[("topic", "c"), ("partition", "1")]),
        0
    );
}

struct Marking;

impl GroupHandler for Marking {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            session.mark(&record?);
        }
        Ok(())
    }
}

async fn group_member(
    cluster: &MockCluster,
    group: &str,
    protocol: GroupProtocol,
) -> ConsumerGroup {
    ConsumerGroup::builder(client(cluster).await, group)
        .protocol(protocol)
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_millis(100))
        .auto_commit_interval(Duration::from_millis(50))
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap()
}

async fn group_metrics(protocol: GroupProtocol, group: &str) {
    let cluster = MockCluster::builder().topic("g", 4).start().await.unwrap();
    for p in 0..4 {
        cluster
            .produce(
                "g",
                (0..10).map(|i| Record::new().partition(p).value(format!("{i}"))),
            )
            .unwrap();
    }
    let r = recorder();
    let g = [("group", group)];
    let a = group_member(&cluster, group, protocol).await;
    let a_task = {
        let a = a.clone();
        tokio::spawn(async move { a.consume(&["g"], Marking).await })
    };
    until("a claims all four", || {
        r.gauge(m::GROUP_CLAIMS, &g) == Some(4.0)
    })
    .await;
    until("every offset committed", || {
        (0..4).all(|p| {
            let p = p.to_string();
            r.gauge(
                m::GROUP_COMMITTED_OFFSET,
                &[("group", group), ("topic", "g"), ("partition", &p)],
            ) == Some(10.0)
        })
    })
    .await;
    assert!(r.counter(m::GROUP_COMMITS, &[("group", group), ("result", "ok")]) >= 1);
    assert!(r.histogram(m::GROUP_COMMIT_LATENCY, &g).count >= 1);
    until("heartbeats", || {
        r.counter(m::GROUP_HEARTBEATS, &[("group", group), ("result", "ok")]) >= 2
    })
    .await;
    assert!(r.histogram(m::GROUP_HEARTBEAT_LATENCY, &g).count >= 2);
    assert!(r.gauge(m::GROUP_GENERATION, &g).unwrap() >= 1.0);
    let classic = protocol == GroupProtocol::Classic;
    let settled = if classic { "stable" } else { "member" };
    until("the member's state", || {
        r.gauge(m::GROUP_STATE, &[("group", group), ("state", settled)]) == Some(1.0)
    })
    .await;
    assert_eq!(
        r.gauge(m::GROUP_STATE, &[("group", group), ("state", "joining")]),
        Some(0.0),
        "joined once, and left that state"
    );
    let rebalances = r.counter(m::GROUP_REBALANCES, &g);

    // A second member: a rebalance for the first, its claims halved.
    let b = group_member(&cluster, group, protocol).await;
    let b_task = {
        let b = b.clone();
        tokio::spawn(async move { b.consume(&["g"], Marking).await })
    };
    until("a rebalance", || {
        r.counter(m::GROUP_REBALANCES, &g) > rebalances
    })
    .await;
    assert!(r.histogram(m::GROUP_REBALANCE_LATENCY, &g).count >= 1);
    assert_eq!(
        r.counter(m::GROUP_REBALANCES, &[("group", group), ("reason", "lost")]),
        0
    );

    // A membership the coordinator no longer knows: the member joins again, and
    // counts that new assignment as after a lost membership.
    let heartbeat = if classic {
        ApiKey::Heartbeat
    } else {
        ApiKey::ConsumerGroupHeartbeat
    };
    for broker in cluster.brokers() {
        broker.intercept(
            Intercept::api(heartbeat).once(),
            Action::error(ResponseError::UnknownMemberId),
        );
    }
    until("a rebalance after a lost membership", || {
        r.counter(m::GROUP_REBALANCES, &[("group", group), ("reason", "lost")]) >= 1
    })
    .await;

    // A failed commit is counted as one.
    let failed = r.counter(m::GROUP_COMMITS, &[("group", group), ("result", "error")]);
    // At whichever broker coordinates the group.
    for broker in cluster.brokers() {
        broker.intercept(
            Intercept::api(ApiKey::OffsetCommit).once(),
            Action::error(ResponseError::UnknownServerError),
        );
    }
    for p in 0..4 {
        cluster
            .produce(
                "g",
                (10..12).map(|i| Record::new().partition(p).value(format!("{i}"))),
            )
            .unwrap();
    }
    until("the failed commit", || {
        r.counter(m::GROUP_COMMITS, &[("group", group), ("result", "error")]) > failed
    })
    .await;
    for (member, task) in [(a, a_task), (b, b_task)] {
        member.close().await.unwrap();
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        r.gauge(m::GROUP_STATE, &[("group", group), ("state", "left")]),
        Some(1.0)
    );
    assert_eq!(
        r.gauge(m::GROUP_STATE, &[("group", group), ("state", settled)]),
        Some(0.0)
    );
    assert!(
        r.counter(
            m::GROUP_HEARTBEATS,
            &[("group", group), ("result", "error")]
        ) <= 10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_reports_heartbeats_commits_claims_and_rebalances() {
    group_metrics(GroupProtocol::Classic, "metrics-classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_protocol_group_reports_the_same() {
    group_metrics(GroupProtocol::Consumer, "metrics-kip848").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_counts_retries_dead_letters_and_skipped_records() {
    use josefine::protocol::records::BatchBuilder;
    use josefine::{ProcessOptions, ProcessOrder};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    const RECORDS: i64 = 200;
    const POISON: i64 = 7;
    const STUCK: i64 = 50;
    let cluster = MockCluster::builder()
        .topic("processed", 1)
        .start()
        .await
        .unwrap();
    let mut batch = BatchBuilder::new();
    for o in 0..RECORDS {
        batch
            .push(0, Some(format!("k{}", o % 10).as_bytes()), Some(b"v"), &[])
            .unwrap();
    }
    cluster.append_batch("processed", 0, batch.finish().unwrap());
    let group_id = "processing";
    let member = |client: Client| {
        ConsumerGroup::builder(client, group_id)
            .session_timeout(Duration::from_millis(1500))
            .heartbeat_interval(Duration::from_millis(100))
            .auto_commit_interval(Duration::from_millis(100))
            .drain_timeout(Duration::from_millis(300))
            .auto_offset_reset(OffsetReset::Earliest)
            .build()
            .unwrap()
    };
    let finished = Arc::new(AtomicUsize::new(0));
    let stuck = Arc::new(AtomicBool::new(true));
    let run = |group: ConsumerGroup| {
        let (finished, stuck) = (finished.clone(), stuck.clone());
        tokio::spawn(async move {
            let options = ProcessOptions::new(ProcessOrder::Unordered, 50)
                .attempts(3, Duration::from_millis(1), Duration::from_millis(1))
                .dead_letter(|_, _| async { Ok(()) });
            group
                .process(&["processed"], options, move |record| {
                    let (finished, stuck) = (finished.clone(), stuck.clone());
                    async move {
                        if record.offset() == POISON {
                            return Err(std::io::Error::other("poison"));
                        }
                        if record.offset() == STUCK && stuck.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        finished.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                })
                .await
        })
    };
    let r = recorder();
    let labels = [("group", group_id)];
    let first = member(client(&cluster).await);
    let task = run(first.clone());
    until("all but the stuck and the poisoned record ran", || {
        finished.load(Ordering::SeqCst) == RECORDS as usize - 2
            && r.counter(m::PROCESS_DEAD_LETTERS, &labels) == 1
    })
    .await;
    assert_eq!(
        r.counter(m::PROCESS_RETRIES, &labels),
        2,
        "3 attempts: 2 retries"
    );
    until("the gauges show the stuck record", || {
        r.gauge(m::PROCESS_IN_FLIGHT, &labels) == Some(1.0)
            && r.gauge(m::PROCESS_BUFFERED, &labels) == Some(1.0)
    })
    .await;
    first.close().await.unwrap();
    task.await.unwrap().unwrap();

    // The next member skips what the first finished above its commit (50).
    stuck.store(false, Ordering::SeqCst);
    let second = member(client(&cluster).await);
    let task = run(second.clone());
    until("the stuck record ran", || {
        finished.load(Ordering::SeqCst) == RECORDS as usize - 1
    })
    .await;
    assert_eq!(
        r.counter(m::PROCESS_SKIPPED, &labels),
        (RECORDS - STUCK - 1) as u64,
        "every record above the commit but the stuck one was skipped"
    );
    second.close().await.unwrap();
    task.await.unwrap().unwrap();
}
