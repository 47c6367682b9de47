//! The transactional producer and `transact` against the mock's transaction
//! coordinator, with the faults a real cluster rarely shows on demand: the
//! coordinator moving mid-transaction, CONCURRENT_TRANSACTIONS, an abortable error
//! followed by a new transaction, and a refused offset commit inside `transact`
//! (aborted, rewound, transformed again: still exactly once).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use josefine::OffsetAndMetadata;
use josefine::{
    Client, ConsumerGroup, GroupMetadata, IsolationLevel, KafkaCode, OffsetReset, Producer,
    ProducerRecord, TopicPartition,
};
use josefine_mock::{Action, ApiKey, Intercept, MockCluster, ResponseError, TransactionState};

const IN: &str = "in";
const OUT: &str = "out";

async fn cluster() -> MockCluster {
    common::trace();
    MockCluster::builder()
        .brokers(3)
        .topic(IN, 3)
        .topic(OUT, 2)
        .start()
        .await
        .unwrap()
}

async fn client(cluster: &MockCluster) -> Client {
    Client::builder()
        .bootstrap([cluster.bootstrap()])
        .request_timeout(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .unwrap()
}

fn transactional(client: &Client, id: &str) -> Producer {
    Producer::builder(client.clone())
        .transactional_id(id)
        .linger(Duration::from_millis(1))
        .build()
        .unwrap()
}

async fn send(producer: &Producer, values: &[&str]) {
    for value in values {
        producer
            .send(
                ProducerRecord::new(OUT)
                    .partition(0)
                    .value(value.to_string()),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_records_never_reach_read_committed_readers() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let producer = transactional(&client, "visibility");
    producer.begin_transaction().await.unwrap();
    send(&producer, &["a1", "a2"]).await;
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().await.unwrap();
    send(&producer, &["c1"]).await;
    producer.commit_transaction().await.unwrap();
    producer.begin_transaction().await.unwrap();
    send(&producer, &["a3"]).await;
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().await.unwrap();
    send(&producer, &["c2", "end"]).await;
    producer.commit_transaction().await.unwrap();

    let committed = common::read_until(&client, OUT, 0, IsolationLevel::ReadCommitted, "end").await;
    assert_eq!(committed, ["c1", "c2", "end"]);
    let all = common::read_until(&client, OUT, 0, IsolationLevel::ReadUncommitted, "end").await;
    assert_eq!(all, ["a1", "a2", "c1", "a3", "c2", "end"]);
    assert_eq!(cluster.aborted_transactions(OUT, 0).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_fences_the_first() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let old = transactional(&client, "fence");
    old.begin_transaction().await.unwrap();
    send(&old, &["zombie"]).await;
    let new = transactional(&client, "fence");
    new.begin_transaction().await.unwrap();
    send(&new, &["fresh", "end"]).await;
    new.commit_transaction().await.unwrap();

    let err = old.commit_transaction().await.unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::PRODUCER_FENCED), "{err}");
    assert!(
        old.begin_transaction().await.is_err(),
        "fatal: no new transaction"
    );
    let committed = common::read_until(&client, OUT, 0, IsolationLevel::ReadCommitted, "end").await;
    assert_eq!(committed, ["fresh", "end"]);
}

/// The coordinator moves between the transaction's writes and its commit: the old
/// node answers NOT_COORDINATOR, the producer looks the coordinator up again and
/// commits there. CONCURRENT_TRANSACTIONS on EndTxn and on AddPartitionsToTxn is
/// retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_coordinator_and_concurrent_transactions_are_retried() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let producer = transactional(&client, "moving");
    producer.begin_transaction().await.unwrap();
    send(&producer, &["m1"]).await;
    let from = cluster.transaction_coordinator("moving");
    let to = if from == 1 { 2 } else { 1 };
    cluster.move_transaction_coordinator("moving", to);
    let busy = cluster.broker(to).intercept(
        Intercept::api(ApiKey::EndTxn).times(2),
        Action::error(ResponseError::ConcurrentTransactions),
    );
    producer.commit_transaction().await.unwrap();
    assert_eq!(
        busy.hits(),
        2,
        "EndTxn retried past CONCURRENT_TRANSACTIONS"
    );
    assert_eq!(
        cluster.transaction("moving").unwrap().state,
        TransactionState::CompleteCommit
    );

    let busy = cluster.broker(to).intercept(
        Intercept::api(ApiKey::AddPartitionsToTxn).times(2),
        Action::error(ResponseError::ConcurrentTransactions),
    );
    producer.begin_transaction().await.unwrap();
    send(&producer, &["m2", "end"]).await;
    producer.commit_transaction().await.unwrap();
    assert_eq!(busy.hits(), 2);
    let committed = common::read_until(&client, OUT, 0, IsolationLevel::ReadCommitted, "end").await;
    assert_eq!(committed, ["m1", "m2", "end"]);
}

/// An abortable error (the coordinator refuses a partition with
/// TOPIC_AUTHORIZATION_FAILED): the record fails, the commit is refused, the abort
/// succeeds and the next transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abortable_error_then_a_new_transaction() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let producer = transactional(&client, "abortable");
    producer.begin_transaction().await.unwrap();
    let coordinator = cluster.transaction_coordinator("abortable");
    let refusal = cluster.broker(coordinator).intercept(
        Intercept::api(ApiKey::AddPartitionsToTxn).times(1),
        Action::error(ResponseError::TopicAuthorizationFailed),
    );
    let failed = producer
        .send(ProducerRecord::new(OUT).partition(0).value("refused"))
        .await
        .unwrap_err();
    assert_eq!(refusal.hits(), 1);
    assert_eq!(
        failed.code(),
        Some(KafkaCode::TOPIC_AUTHORIZATION_FAILED),
        "{failed}"
    );
    let err = producer.commit_transaction().await.unwrap_err();
    assert_ne!(
        err.code(),
        Some(KafkaCode::PRODUCER_FENCED),
        "abortable: {err}"
    );
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().await.unwrap();
    send(&producer, &["ok", "end"]).await;
    producer.commit_transaction().await.unwrap();
    let committed = common::read_until(&client, OUT, 0, IsolationLevel::ReadCommitted, "end").await;
    assert_eq!(committed, ["ok", "end"]);
}

/// Offsets sent with an aborted transaction are never committed; with a committed
/// one they are, and only once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_follow_the_transaction() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let producer = transactional(&client, "offsets");
    let tp = TopicPartition::new(IN, 0);
    let group = GroupMetadata::standalone("offsets-group");
    producer.begin_transaction().await.unwrap();
    producer
        .send_offsets_to_transaction(&[(tp.clone(), OffsetAndMetadata::new(7))], &group)
        .await
        .unwrap();
    assert_eq!(cluster.pending_offset("offsets-group", IN, 0), Some(7));
    assert_eq!(cluster.committed("offsets-group", IN, 0), None);
    producer.abort_transaction().await.unwrap();
    assert_eq!(cluster.committed("offsets-group", IN, 0), None);
    assert_eq!(cluster.pending_offset("offsets-group", IN, 0), None);

    producer.begin_transaction().await.unwrap();
    producer
        .send_offsets_to_transaction(&[(tp, OffsetAndMetadata::new(9))], &group)
        .await
        .unwrap();
    assert_eq!(cluster.committed("offsets-group", IN, 0), None);
    producer.commit_transaction().await.unwrap();
    assert_eq!(cluster.committed("offsets-group", IN, 0), Some(9));
}

/// Inputs for the `transact` tests: `inputs` records over the three partitions of IN.
async fn produce_inputs(client: &Client, inputs: usize) {
    let producer = Producer::builder(client.clone()).build().unwrap();
    let mut deliveries = Vec::new();
    for i in 0..inputs {
        let record = ProducerRecord::new(IN)
            .key(format!("k{i}"))
            .value(i.to_string());
        deliveries.push(producer.enqueue(record).await.unwrap());
    }
    producer.close().await.unwrap();
    common::delivered(deliveries).await;
}

fn pipeline_group(client: &Client) -> ConsumerGroup {
    ConsumerGroup::builder(client.clone(), "pipeline")
        .session_timeout(Duration::from_secs(2))
        .heartbeat_interval(Duration::from_millis(200))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .auto_offset_reset(OffsetReset::Earliest)
        .consumer(|c| c.isolation_level(IsolationLevel::ReadCommitted))
        .build()
        .unwrap()
}

/// Waits until the group committed every input, closes it, and checks that a
/// read_committed reader of OUT sees each input's output exactly once.
async fn finish_exactly_once(
    cluster: &MockCluster,
    client: &Client,
    group: ConsumerGroup,
    task: tokio::task::JoinHandle<josefine::Result<()>>,
    inputs: usize,
) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let done: i64 = (0..3)
                .map(|p| cluster.committed("pipeline", IN, p).unwrap_or(0))
                .sum();
            if done == inputs as i64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every input committed");
    group.close().await.unwrap();
    task.await.unwrap().unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for value in common::committed_values(client, OUT, 2).await {
        *counts.entry(value).or_default() += 1;
    }
    let lost: Vec<usize> = (0..inputs)
        .filter(|i| !counts.contains_key(&format!("out-{i}")))
        .collect();
    let duplicated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        lost.is_empty() && duplicated.is_empty(),
        "lost {lost:?}, duplicated {duplicated:?}"
    );
}

fn requests(cluster: &MockCluster, api: ApiKey) -> usize {
    cluster
        .brokers()
        .iter()
        .map(|b| b.requests().iter().filter(|r| r.api_key == api).count())
        .sum()
}

/// `transact` with refused offset commits (TxnOffsetCommit answers
/// ILLEGAL_GENERATION twice): each time the transaction is aborted and every claim
/// goes back to its last committed offset; the outputs are still each input's once.
/// Offsets go only through transactions: no plain OffsetCommit is ever sent (a later
/// plain commit would win over a transaction's offsets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transact_rewinds_after_an_abort_and_writes_each_output_once() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let inputs = 600;
    produce_inputs(&client, inputs).await;
    let group = pipeline_group(&client);
    let coordinator = cluster.group_coordinator("pipeline");
    let refusals = cluster.broker(coordinator).intercept(
        Intercept::api(ApiKey::TxnOffsetCommit).times(2),
        Action::error(ResponseError::IllegalGeneration),
    );
    let producer = transactional(&client, "pipeline-0");
    let runner = group.clone();
    let task = tokio::spawn(async move {
        runner
            .transact(
                &[IN],
                producer,
                Duration::from_millis(50),
                |record| async move {
                    let value = String::from_utf8_lossy(record.value().unwrap()).to_string();
                    Ok::<_, std::io::Error>(vec![
                        ProducerRecord::new(OUT).value(format!("out-{value}"))
                    ])
                },
            )
            .await
    });
    finish_exactly_once(&cluster, &client, group, task, inputs).await;
    assert_eq!(refusals.hits(), 2, "both refusals were met");
    assert_eq!(
        requests(&cluster, ApiKey::OffsetCommit),
        0,
        "no plain commit"
    );
}

/// An output that cannot be written (larger than max.request.size, once) in the
/// middle of a record's outputs: the transaction holding the record's first output
/// is aborted, so that output is never committed without its input's offset; the
/// record is transformed again and all its outputs written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_output_aborts_the_transaction_with_the_record_s_other_outputs() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let inputs = 300;
    produce_inputs(&client, inputs).await;
    let group = pipeline_group(&client);
    let producer = Producer::builder(client.clone())
        .transactional_id("pipeline-1")
        .max_request_size(64 * 1024)
        .linger(Duration::from_millis(1))
        .build()
        .unwrap();
    let failed_once = Arc::new(AtomicBool::new(false));
    let failed = failed_once.clone();
    let runner = group.clone();
    let task = tokio::spawn(async move {
        runner
            .transact(&[IN], producer, Duration::from_millis(50), move |record| {
                let failed = failed.clone();
                async move {
                    let value = String::from_utf8_lossy(record.value().unwrap()).to_string();
                    let mut outputs = vec![ProducerRecord::new(OUT).value(format!("out-{value}"))];
                    // Input 150's second output is too large, the first time only.
                    if value == "150" && !failed.swap(true, Ordering::AcqRel) {
                        outputs.push(ProducerRecord::new(OUT).value(vec![b'x'; 100 * 1024]));
                    }
                    Ok::<_, std::io::Error>(outputs)
                }
            })
            .await
    });
    finish_exactly_once(&cluster, &client, group, task, inputs).await;
    assert!(
        failed_once.load(Ordering::Acquire),
        "the large output was tried"
    );
}

/// A record refused before it reaches a batch (larger than max.request.size) still
/// fails its transaction: the records sent with it must not commit without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_refused_by_enqueue_makes_the_transaction_abortable() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    let producer = Producer::builder(client.clone())
        .transactional_id("refused")
        .max_request_size(64 * 1024)
        .build()
        .unwrap();
    producer.begin_transaction().await.unwrap();
    send(&producer, &["first"]).await;
    let refused = producer
        .enqueue(
            ProducerRecord::new(OUT)
                .partition(0)
                .value(vec![b'x'; 100 * 1024]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(KafkaCode::MESSAGE_TOO_LARGE),
        "{refused}"
    );
    let err = producer.commit_transaction().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(KafkaCode::MESSAGE_TOO_LARGE),
        "abortable: {err}"
    );
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().await.unwrap();
    send(&producer, &["end"]).await;
    producer.commit_transaction().await.unwrap();
    let committed = common::read_until(&client, OUT, 0, IsolationLevel::ReadCommitted, "end").await;
    assert_eq!(
        committed,
        ["end"],
        "the first record went with its transaction"
    );
}

/// A `transact` future dropped mid-session (no close) lets go of everything it held:
/// its committer task held the pipeline, and the pipeline held the task, so before
/// the fix nothing stopped it (the task, the producer and the work function lived on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transact_stops_its_committer() {
    let cluster = cluster().await;
    let client = client(&cluster).await;
    produce_inputs(&client, 30).await;
    let group = pipeline_group(&client);
    let producer = transactional(&client, "pipeline-dropped");
    // Held by the work function, so by the pipeline: gone once the pipeline is.
    let held = std::sync::Arc::new(());
    let watch = std::sync::Arc::downgrade(&held);
    let runner = group.clone();
    let task = tokio::spawn(async move {
        runner
            .transact(&[IN], producer, Duration::from_millis(20), move |record| {
                let _held = held.clone();
                async move {
                    let value = String::from_utf8_lossy(record.value().unwrap()).to_string();
                    Ok::<_, std::io::Error>(vec![ProducerRecord::new(OUT).value(value)])
                }
            })
            .await
    });
    tokio::time::timeout(Duration::from_secs(30), async {
        while (0..3)
            .map(|p| cluster.committed("pipeline", IN, p).unwrap_or(0))
            .sum::<i64>()
            < 30
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every input committed");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    tokio::time::timeout(Duration::from_secs(10), async {
        while watch.upgrade().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the pipeline, its committer and its work function dropped");
}
