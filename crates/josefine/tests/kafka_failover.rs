//! Failover on a three-broker Apache Kafka 4.4 cluster (one KRaft controller, three
//! brokers, replication factor 3, `min.insync.replicas` 2), started by scripts/test.sh
//! for this suite alone, since it kills a broker: `start_kafka_cluster` exports
//! `JOSEFINE_KAFKA_CLUSTER` and the brokers' pids. The tests are `#[ignore]`d so the
//! main pass skips them; the cluster pass runs them with `--ignored`.
//!
//! While an idempotent producer (acks=all) writes keyed, sequence-numbered records and
//! a consumer group of two reads them, the leader of partition 0 is killed with
//! SIGKILL. The producer retries to the new leaders, the consumers follow them (and the
//! group its coordinator, if it lived there): every acknowledged record is in the log
//! exactly once, each key's records in the order sent, and the group processed every
//! acknowledged record.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use josefine::protocol::ClientExt;
use josefine::{
    Claim, Client, ConsumerGroup, GroupHandler, NewTopic, OffsetReset, Producer, ProducerRecord,
    Session,
};

const PARTITIONS: i32 = 6;
const KEYS: usize = 24;
/// Records acknowledged before the kill, and at least as many after it.
const BEFORE: usize = 3_000;
const AFTER: usize = 3_000;

/// The cluster's bootstrap list and node id -> pid, or a failure: the suite runs only
/// where scripts/test.sh started the cluster for it.
fn cluster() -> (Vec<String>, HashMap<i32, i32>) {
    let brokers = std::env::var("JOSEFINE_KAFKA_CLUSTER")
        .expect("JOSEFINE_KAFKA_CLUSTER: run with scripts/test.sh, which starts the cluster");
    let pids = std::env::var("JOSEFINE_KAFKA_CLUSTER_PIDS").expect("JOSEFINE_KAFKA_CLUSTER_PIDS");
    let pids = pids
        .split(',')
        .map(|pair| {
            let (node, pid) = pair.split_once(':').unwrap();
            (node.parse().unwrap(), pid.parse().unwrap())
        })
        .collect();
    (brokers.split(',').map(String::from).collect(), pids)
}

async fn client(brokers: &[String], id: &str) -> Client {
    Client::builder()
        .bootstrap(brokers.iter().map(String::as_str))
        .client_id(id)
        .request_timeout(Duration::from_secs(10))
        .metadata_max_age(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .connect()
        .await
        .unwrap()
}

/// (key, sequence) of every record the group processed, with how often.
type Processed = Arc<Mutex<HashMap<(String, u64), u32>>>;

struct Record(Processed);

impl GroupHandler for Record {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            let record = record?;
            let value = std::str::from_utf8(record.value().unwrap()).unwrap();
            let (key, seq) = value.split_once(':').unwrap();
            *self
                .0
                .lock()
                .unwrap()
                .entry((key.to_string(), seq.parse().unwrap()))
                .or_default() += 1;
            session.mark(&record);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the three-broker Kafka cluster that scripts/test.sh starts for it"]
async fn killing_a_partition_leader_loses_nothing_acknowledged_and_duplicates_nothing() {
    common::trace();
    let (brokers, pids) = cluster();
    let admin = client(&brokers, "admin").await;
    let topic = common::unique("failover");
    admin
        .admin()
        .create_topic(
            NewTopic::new(&topic, PARTITIONS)
                .replication_factor(3)
                .config("min.insync.replicas", "2"),
        )
        .await
        .unwrap();

    // The group: two members, each on a client of its own.
    let group_id = common::unique("failover-group");
    let processed: Processed = Arc::default();
    let mut members = Vec::new();
    for m in 0..2 {
        let group = ConsumerGroup::builder(client(&brokers, &format!("m{m}")).await, &group_id)
            .session_timeout(Duration::from_secs(6))
            .heartbeat_interval(Duration::from_millis(500))
            .auto_commit_interval(Duration::from_millis(200))
            .auto_offset_reset(OffsetReset::Earliest)
            .build()
            .unwrap();
        let task = {
            let (group, topic, processed) = (group.clone(), topic.clone(), processed.clone());
            tokio::spawn(async move { group.consume(&[&topic], Record(processed)).await })
        };
        members.push((group, task));
    }

    // The producer: keys in turn, a sequence per key, until told to stop; every
    // acknowledged (key, sequence) is kept.
    let acked: Arc<Mutex<BTreeSet<(String, u64)>>> = Arc::default();
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer_task = {
        let (acked, failed, stop, topic) =
            (acked.clone(), failed.clone(), stop.clone(), topic.clone());
        let producer = Producer::builder(client(&brokers, "producer").await)
            .linger(Duration::from_millis(2))
            .build()
            .unwrap();
        tokio::spawn(async move {
            let mut next = [0u64; KEYS];
            let mut pending = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Acquire) {
                let k = i % KEYS;
                let (key, seq) = (format!("key-{k}"), next[k]);
                next[k] += 1;
                i += 1;
                let delivery = producer
                    .enqueue(
                        ProducerRecord::new(&topic)
                            .key(key.clone())
                            .value(format!("{key}:{seq}")),
                    )
                    .await
                    .unwrap();
                pending.push((key, seq, delivery));
                if pending.len() >= 200 {
                    for (key, seq, d) in pending.drain(..) {
                        match d.await {
                            Ok(_) => {
                                acked.lock().unwrap().insert((key, seq));
                            }
                            Err(e) => failed.lock().unwrap().push(format!("{key}:{seq}: {e}")),
                        }
                    }
                }
            }
            producer.close().await.unwrap();
            for (key, seq, d) in pending {
                match d.await {
                    Ok(_) => {
                        acked.lock().unwrap().insert((key, seq));
                    }
                    Err(e) => failed.lock().unwrap().push(format!("{key}:{seq}: {e}")),
                }
            }
        })
    };

    let wait_acked = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            while acked.lock().unwrap().len() < n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the producer stalled"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_acked(BEFORE).await;

    // Kill -9 the leader of partition 0.
    let leader = admin.leader(&topic, 0).await.unwrap().id().unwrap();
    let pid = pids[&leader];
    eprintln!("killing broker {leader} (pid {pid}), the leader of {topic}/0");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);

    wait_acked(BEFORE + AFTER).await;
    stop.store(true, Ordering::Release);
    producer_task.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    // Idempotence with acks=all: the retries after the kill succeed within the
    // delivery timeout; nothing is reported failed.
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );

    // The group processes everything acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let missing = {
            let processed = processed.lock().unwrap();
            acked.iter().filter(|r| !processed.contains_key(*r)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} acknowledged records never processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (group, task) in members {
        group.close().await.unwrap();
        task.await.unwrap().unwrap();
    }
    let redelivered = processed
        .lock()
        .unwrap()
        .values()
        .filter(|n| **n > 1)
        .count();
    eprintln!(
        "{} acked, {redelivered} processed more than once (at-least-once)",
        acked.len()
    );

    // The log: every acknowledged record exactly once; per key, sequences in order.
    let mut in_log: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for p in 0..PARTITIONS {
        for batch in common::partition_batches(&admin, &topic, p).await {
            for record in batch.records() {
                let value = String::from_utf8(record.unwrap().value().unwrap().to_vec()).unwrap();
                let (key, seq) = value.split_once(':').unwrap();
                in_log
                    .entry(key.to_string())
                    .or_default()
                    .push(seq.parse().unwrap());
            }
        }
    }
    let mut count = 0;
    for (key, seqs) in &in_log {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{key}: out of order or duplicated in the log"
        );
        count += seqs.len();
    }
    for (key, seq) in &acked {
        assert!(
            in_log
                .get(key)
                .is_some_and(|s| s.binary_search(seq).is_ok()),
            "{key}:{seq} acknowledged but not in the log"
        );
    }
    // Anything in the log beyond the acknowledged records was sent after the last
    // acknowledgement was collected (none: close() waited for every delivery).
    assert_eq!(count, acked.len(), "records in the log vs acknowledged");
}
