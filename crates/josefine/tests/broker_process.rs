//! Parallel processing (`ConsumerGroup::process`) against the real brokers (Kafka 4.4,
//! then Tansu): one partition of 10,000 records over 500 keys, work of 5 ms each,
//! 200 in flight: every record runs once, no two records of a key ever run at the
//! same time, each key runs in offset order, and the commit reaches the end.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::real_broker;
use josefine::{
    ConsumerGroup, NewTopic, OffsetReset, ProcessOptions, ProcessOrder, Producer, ProducerRecord,
    TopicPartition,
};

const RECORDS: i64 = 10_000;
const KEYS: i64 = 500;
const IN_FLIGHT: usize = 200;

/// A fresh one-partition topic holding `records` records, keyed `k{offset % keys}`,
/// valued with their offset.
async fn keyed_topic(client: &josefine::Client, prefix: &str, records: i64, keys: i64) -> String {
    let topic = common::unique(prefix);
    client
        .admin()
        .create_topic(NewTopic::new(&topic, 1))
        .await
        .unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    let mut deliveries = Vec::new();
    for o in 0..records {
        let record = ProducerRecord::new(&topic)
            .partition(0)
            .key(format!("k{}", o % keys))
            .value(o.to_string());
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    producer.close().await.unwrap();
    common::delivered(deliveries).await;
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ordered_parallel_processing_runs_every_record_once_in_key_order() {
    let addr = real_broker!();
    common::trace();
    let client = common::client(&addr).await;
    let topic = keyed_topic(&client, "process", RECORDS, KEYS).await;

    let group_id = common::unique("process-group");
    let group = ConsumerGroup::builder(common::client(&addr).await, &group_id)
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_millis(500))
        .auto_commit_interval(Duration::from_millis(200))
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let order: Arc<Mutex<HashMap<String, Vec<i64>>>> = Arc::default();
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let task = {
        let group = group.clone();
        let (busy, order, overlaps) = (busy.clone(), order.clone(), overlaps.clone());
        let (running, peak) = (running.clone(), peak.clone());
        let topic = topic.clone();
        tokio::spawn(async move {
            group
                .process(
                    &[&topic],
                    ProcessOptions::new(ProcessOrder::Key, IN_FLIGHT),
                    move |record| {
                        let (busy, order, overlaps) =
                            (busy.clone(), order.clone(), overlaps.clone());
                        let (running, peak) = (running.clone(), peak.clone());
                        async move {
                            let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
                            if !busy.lock().unwrap().insert(key.clone()) {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            peak.fetch_max(
                                running.fetch_add(1, Ordering::SeqCst) + 1,
                                Ordering::SeqCst,
                            );
                            order
                                .lock()
                                .unwrap()
                                .entry(key.clone())
                                .or_default()
                                .push(record.offset());
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            busy.lock().unwrap().remove(&key);
                            Ok::<(), std::io::Error>(())
                        }
                    },
                )
                .await
        })
    };

    let tp = [TopicPartition::new(topic.as_str(), 0)];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let committed = client
            .admin()
            .committed_offsets_and_metadata(&group_id, &tp)
            .await
            .unwrap();
        if committed.get(&tp[0]).is_some_and(|c| c.offset == RECORDS) {
            assert_eq!(
                committed[&tp[0]].metadata, None,
                "nothing done above the end"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the commit did not reach {RECORDS} in 90 s: {committed:?}, {} records ran",
            order.lock().unwrap().values().map(Vec::len).sum::<usize>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    group.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("process returns after close")
        .unwrap()
        .unwrap();

    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two records of one key ran at once"
    );
    let order = order.lock().unwrap();
    assert_eq!(order.len(), KEYS as usize);
    for k in 0..KEYS {
        let expected: Vec<i64> = (0..RECORDS).filter(|o| o % KEYS == k).collect();
        assert_eq!(
            order[&format!("k{k}")],
            expected,
            "key k{k}: once each, in offset order"
        );
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak > IN_FLIGHT / 2 && peak <= IN_FLIGHT,
        "records ran concurrently, within max_in_flight: peak {peak}"
    );
}

/// A member that cannot finish some records closes (their drain deadline passes):
/// its last commit is the first of them, with everything it finished above in the
/// done set, which Kafka keeps as the commit's metadata; the next member runs
/// exactly what the first did not finish (on Tansu, which drops the metadata,
/// everything from the commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_member_runs_only_what_the_last_one_left_unfinished() {
    const RECORDS: i64 = 2000;
    const KEYS: i64 = 50;
    const STUCK: [i64; 2] = [300, 1234];
    let addr = real_broker!();
    common::trace();
    let client = common::client(&addr).await;
    let topic = keyed_topic(&client, "process-handover", RECORDS, KEYS).await;

    let group_id = common::unique("process-handover");
    let member = |client: josefine::Client| {
        ConsumerGroup::builder(client, &group_id)
            .session_timeout(Duration::from_secs(6))
            .heartbeat_interval(Duration::from_millis(500))
            .auto_commit_interval(Duration::from_millis(200))
            .drain_timeout(Duration::from_millis(500))
            .auto_offset_reset(OffsetReset::Earliest)
            .build()
            .unwrap()
    };
    let run = |group: ConsumerGroup, log: Arc<Mutex<Vec<i64>>>, stuck: bool| {
        let topic = topic.clone();
        tokio::spawn(async move {
            let options = ProcessOptions::new(ProcessOrder::Key, 50);
            group
                .process(&[&topic], options, move |record| {
                    let log = log.clone();
                    async move {
                        if stuck && STUCK.contains(&record.offset()) {
                            std::future::pending::<()>().await;
                        }
                        log.lock().unwrap().push(record.offset());
                        Ok::<(), std::io::Error>(())
                    }
                })
                .await
        })
    };
    let blocked: std::collections::BTreeSet<i64> = (0..RECORDS)
        .filter(|&o| STUCK.iter().any(|&s| o >= s && o % KEYS == s % KEYS))
        .collect();
    let first_log: Arc<Mutex<Vec<i64>>> = Arc::default();
    let first = member(common::client(&addr).await);
    let first_task = run(first.clone(), first_log.clone(), true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while first_log.lock().unwrap().len() < RECORDS as usize - blocked.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first member stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), first_task)
        .await
        .expect("process returns after close")
        .unwrap()
        .unwrap();

    let tp = [TopicPartition::new(topic.as_str(), 0)];
    let committed = client
        .admin()
        .committed_offsets_and_metadata(&group_id, &tp)
        .await
        .unwrap()
        .remove(&tp[0])
        .expect("a commit");
    assert_eq!(committed.offset, STUCK[0]);
    // Tansu keeps no commit metadata (docs/BROKERS.md): the next member runs
    // everything from the commit again, which at-least-once allows.
    let expected_rerun = if common::is_kafka() {
        let done = josefine::DoneSet::decode(
            committed.metadata.as_deref().expect("metadata"),
            committed.offset,
        )
        .expect("a done set");
        let finished: std::collections::BTreeSet<i64> =
            first_log.lock().unwrap().iter().copied().collect();
        let named: std::collections::BTreeSet<i64> = (0..RECORDS)
            .filter(|&o| o < committed.offset || done.contains(o))
            .collect();
        assert_eq!(
            named, finished,
            "the commit names exactly what the member finished"
        );
        blocked
    } else {
        assert_eq!(
            committed.metadata, None,
            "Tansu now keeps metadata: update BROKERS.md"
        );
        (STUCK[0]..RECORDS).collect()
    };

    let second_log: Arc<Mutex<Vec<i64>>> = Arc::default();
    let second = member(common::client(&addr).await);
    let second_task = run(second.clone(), second_log.clone(), false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = client
            .admin()
            .committed_offsets_and_metadata(&group_id, &tp)
            .await
            .unwrap();
        if c.get(&tp[0]).is_some_and(|c| c.offset == RECORDS) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second member did not finish: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), second_task)
        .await
        .expect("process returns after close")
        .unwrap()
        .unwrap();
    let rerun = second_log.lock().unwrap().clone();
    let rerun_set: std::collections::BTreeSet<i64> = rerun.iter().copied().collect();
    assert_eq!(rerun.len(), rerun_set.len(), "each record once");
    assert_eq!(
        rerun_set, expected_rerun,
        "the second member ran exactly what the first left"
    );
}
