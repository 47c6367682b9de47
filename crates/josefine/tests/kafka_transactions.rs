//! Transactions against Apache Kafka 4.4 (KIP-98, KIP-447): what a committed and an
//! aborted transaction leave visible to `read_committed` and `read_uncommitted`
//! readers (ours and the Java client), fencing by a newer instance of a
//! transactional id, offsets committed with the transaction (and not with an aborted
//! one), offsets of a member from an older generation refused, and an abandoned
//! transaction aborted by the coordinator after `transaction.timeout.ms`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::real_kafka;
use josefine::OffsetAndMetadata;
use josefine::{
    Claim, Client, ConsumerGroup, ErrorKind, GroupHandler, GroupMetadata, IsolationLevel,
    KafkaCode, NewTopic, OffsetReset, Producer, ProducerRecord, Session, TopicPartition,
};

async fn topic(client: &Client, prefix: &str, partitions: i32) -> String {
    let topic = common::unique(prefix);
    client
        .admin()
        .create_topic(NewTopic::new(&topic, partitions))
        .await
        .unwrap();
    topic
}

fn transactional(client: &Client, id: &str) -> Producer {
    Producer::builder(client.clone())
        .transactional_id(id)
        .linger(Duration::from_millis(1))
        .build()
        .unwrap()
}

async fn send_values(producer: &Producer, topic: &str, values: &[&str]) {
    for value in values {
        producer
            .send(
                ProducerRecord::new(topic)
                    .partition(0)
                    .value(value.to_string()),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_are_visible_and_aborted_ones_are_not() {
    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let topic = topic(&client, "txn-visibility", 1).await;
    let producer = transactional(&client, &common::unique("txn-visibility"));

    producer.begin_transaction().await.unwrap();
    send_values(&producer, &topic, &["a1", "a2", "a3"]).await;
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().await.unwrap();
    send_values(&producer, &topic, &["c1", "c2"]).await;
    producer.commit_transaction().await.unwrap();
    producer.begin_transaction().await.unwrap();
    send_values(&producer, &topic, &["a4"]).await;
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().await.unwrap();
    send_values(&producer, &topic, &["c3", "end"]).await;
    producer.commit_transaction().await.unwrap();

    let committed =
        common::read_until(&client, &topic, 0, IsolationLevel::ReadCommitted, "end").await;
    assert_eq!(committed, ["c1", "c2", "c3", "end"]);
    let everything =
        common::read_until(&client, &topic, 0, IsolationLevel::ReadUncommitted, "end").await;
    assert_eq!(
        everything,
        ["a1", "a2", "a3", "c1", "c2", "a4", "c3", "end"]
    );

    // The Java client, read_committed, sees the committed records only.
    if let Some(classpath) = common::java_peer() {
        let (bootstrap, topic) = (kafka.plaintext.clone(), topic.clone());
        let out = tokio::task::spawn_blocking(move || {
            common::java(
                &classpath,
                &[
                    "consume",
                    "--bootstrap",
                    &bootstrap,
                    "--topic",
                    &topic,
                    "--count",
                    "4",
                    "--isolation",
                    "read_committed",
                ],
            )
        })
        .await
        .unwrap();
        let values: Vec<String> = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| String::from_utf8(common::unhex(v["v"].as_str().unwrap())).unwrap())
            .collect();
        assert_eq!(
            values,
            ["c1", "c2", "c3", "end"],
            "the Java client read {out}"
        );
    }
    producer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_fences_the_old_one_and_aborts_its_transaction() {
    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let topic = topic(&client, "txn-fence", 1).await;
    let id = common::unique("txn-fence");
    let old = transactional(&client, &id);
    old.begin_transaction().await.unwrap();
    send_values(&old, &topic, &["zombie"]).await;

    let new = transactional(&client, &id);
    new.begin_transaction().await.unwrap();
    send_values(&new, &topic, &["fresh", "end"]).await;
    new.commit_transaction().await.unwrap();

    let err = old.commit_transaction().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(KafkaCode::PRODUCER_FENCED),
        "the old instance is fenced: {err}"
    );
    let again = old
        .send(ProducerRecord::new(&topic).partition(0).value("late"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(KafkaCode::PRODUCER_FENCED), "{again}");
    assert!(old.begin_transaction().await.is_err());

    let committed =
        common::read_until(&client, &topic, 0, IsolationLevel::ReadCommitted, "end").await;
    assert_eq!(
        committed,
        ["fresh", "end"],
        "the zombie's record was aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_commit_with_the_transaction_and_not_with_an_aborted_one() {
    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let input = topic(&client, "txn-offsets-in", 2).await;
    let output = topic(&client, "txn-offsets-out", 1).await;
    let group = common::unique("txn-offsets");
    let producer = transactional(&client, &common::unique("txn-offsets"));
    let tp = |p| TopicPartition::new(input.as_str(), p);
    let at = OffsetAndMetadata::new;

    producer.begin_transaction().await.unwrap();
    send_values(&producer, &output, &["out-1"]).await;
    producer
        .send_offsets_to_transaction(
            &[(tp(0), at(10)), (tp(1), at(20))],
            &GroupMetadata::standalone(&group),
        )
        .await
        .unwrap();
    producer.abort_transaction().await.unwrap();
    let admin = client.admin();
    let committed = admin
        .committed_offsets(&group, &[tp(0), tp(1)])
        .await
        .unwrap();
    assert!(committed.is_empty(), "aborted offsets: {committed:?}");

    producer.begin_transaction().await.unwrap();
    send_values(&producer, &output, &["out-2"]).await;
    producer
        .send_offsets_to_transaction(
            &[(tp(0), at(11)), (tp(1), at(21))],
            &GroupMetadata::standalone(&group),
        )
        .await
        .unwrap();
    producer.commit_transaction().await.unwrap();
    // The coordinator writes the commit markers after EndTxn answers: an OffsetFetch
    // without require_stable returns the offsets once they are written.
    let wanted = HashMap::from([(tp(0), 11), (tp(1), 21)]);
    tokio::time::timeout(Duration::from_secs(30), async {
        while admin
            .committed_offsets(&group, &[tp(0), tp(1)])
            .await
            .unwrap()
            != wanted
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the transaction's offsets are committed");
    producer.close().await.unwrap();
}

/// Captures each session's group metadata, and keeps claims open.
struct Capture(Arc<Mutex<Vec<GroupMetadata>>>);

impl GroupHandler for Capture {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        self.0.lock().unwrap().push(session.group_metadata());
        Ok(())
    }

    async fn consume_claim(&self, _session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            record?;
        }
        Ok(())
    }
}

/// KIP-447: offsets sent with the metadata of a generation the group has left are
/// refused; the transaction is then abortable, and the producer goes on after the
/// abort with the current generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_an_older_generation_are_refused_and_the_transaction_aborts() {
    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let input = topic(&client, "txn-zombie-in", 2).await;
    let group_id = common::unique("txn-zombie");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let start = |seen: Arc<Mutex<Vec<GroupMetadata>>>| {
        let (addr, group_id, input) = (kafka.plaintext.clone(), group_id.clone(), input.clone());
        async move {
            let member_client = common::client(&addr).await;
            let group = ConsumerGroup::builder(member_client, &group_id)
                .session_timeout(Duration::from_secs(6))
                .build()
                .unwrap();
            let runner = group.clone();
            let task = tokio::spawn(async move { runner.consume(&[&input], Capture(seen)).await });
            (group, task)
        }
    };
    let (first, first_task) = start(seen.clone()).await;
    let wait = |n: usize| {
        let seen = seen.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    if seen.lock().unwrap().len() >= n {
                        return seen.lock().unwrap()[n - 1].clone();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("a session")
        }
    };
    let old = wait(1).await;
    // A second member joins: the first member's session ends, a new generation
    // starts (for the first member too).
    let (second, second_task) = start(Arc::new(Mutex::new(Vec::new()))).await;
    let current = wait(2).await;
    assert_ne!(
        (old.member_id.clone(), old.generation_id),
        (current.member_id.clone(), current.generation_id)
    );

    let producer = transactional(&client, &common::unique("txn-zombie"));
    let tp = TopicPartition::new(input.as_str(), 0);
    let at = OffsetAndMetadata::new(5);
    producer.begin_transaction().await.unwrap();
    let err = producer
        .send_offsets_to_transaction(&[(tp.clone(), at.clone())], &old)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Some(
                KafkaCode::ILLEGAL_GENERATION
                    | KafkaCode::UNKNOWN_MEMBER_ID
                    | KafkaCode::FENCED_INSTANCE_ID
            )
        ),
        "an older generation's offsets are refused: {err}"
    );
    let refused = producer.commit_transaction().await.unwrap_err();
    assert!(
        !matches!(refused.kind(), ErrorKind::Kafka(KafkaCode::PRODUCER_FENCED)),
        "abortable, not fatal: {refused}"
    );
    producer.abort_transaction().await.unwrap();

    // The producer goes on, with the first member's current metadata. The group may
    // rebalance once more while the second member settles: then that generation is
    // refused too, and the next one is tried.
    let mut current = current;
    for attempt in 0.. {
        producer.begin_transaction().await.unwrap();
        let sent = producer
            .send_offsets_to_transaction(&[(tp.clone(), at.clone())], &current)
            .await;
        match sent {
            Ok(()) => break,
            Err(err) if attempt < 10 && !err.is_producer_fatal() => {
                producer.abort_transaction().await.unwrap();
                // Pacing only: the loop ends on an accepted commit, not on time.
                tokio::time::sleep(Duration::from_millis(200)).await;
                current = seen.lock().unwrap().last().cloned().unwrap();
            }
            Err(err) => panic!("the current generation's offsets were refused: {err}"),
        }
    }
    producer.commit_transaction().await.unwrap();

    for (group, task) in [(first, first_task), (second, second_task)] {
        group.close().await.unwrap();
        task.await.unwrap().unwrap();
    }
    // The coordinator writes the commit markers after EndTxn answers: an OffsetFetch
    // without require_stable shows the offset once they are written.
    let admin = client.admin();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let committed = admin
                .committed_offsets(&group_id, std::slice::from_ref(&tp))
                .await
                .unwrap();
            if committed.get(&tp) == Some(&5) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the transaction's offset is committed");
}

/// A transaction left open past `transaction.timeout.ms` is aborted by the
/// coordinator, which bumps the epoch: the producer is fenced when it tries to
/// finish it, and its records are never visible to read_committed readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_transaction_is_aborted_by_the_coordinator() {
    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let topic = topic(&client, "txn-timeout", 1).await;
    let producer = Producer::builder(client.clone())
        .transactional_id(common::unique("txn-timeout"))
        .transaction_timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    producer.begin_transaction().await.unwrap();
    send_values(&producer, &topic, &["abandoned"]).await;

    // Another producer writes after it; read_committed readers see its record only
    // once the abandoned transaction ended (the last stable offset waits for it).
    let other = transactional(&client, &common::unique("txn-timeout-other"));
    other.begin_transaction().await.unwrap();
    send_values(&other, &topic, &["end"]).await;
    other.commit_transaction().await.unwrap();
    let committed =
        common::read_until(&client, &topic, 0, IsolationLevel::ReadCommitted, "end").await;
    assert_eq!(committed, ["end"], "the abandoned record was aborted");

    let err = producer.commit_transaction().await.unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::PRODUCER_FENCED), "{err}");
}

/// A member of an exactly-once pipeline: `transact` with its own transactional id,
/// writing `out-<input value>` for every input.
struct Pipeline {
    group: ConsumerGroup,
    client: Client,
    task: tokio::task::JoinHandle<josefine::Result<()>>,
    /// Records this member transformed (committed or not).
    transformed: Arc<std::sync::atomic::AtomicUsize>,
}

impl Pipeline {
    /// Waits until this member transformed `more` records beyond what it had.
    async fn transforms(&self, more: usize) {
        use std::sync::atomic::Ordering;
        let target = self.transformed.load(Ordering::Acquire) + more;
        tokio::time::timeout(Duration::from_secs(60), async {
            while self.transformed.load(Ordering::Acquire) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the member transforms records");
    }
}

async fn pipeline(addr: &str, group_id: &str, input: &str, output: &str, member: &str) -> Pipeline {
    let client = common::client(addr).await;
    let group = ConsumerGroup::builder(client.clone(), group_id)
        .session_timeout(Duration::from_secs(6))
        .auto_offset_reset(OffsetReset::Earliest)
        .consumer(|c| c.isolation_level(IsolationLevel::ReadCommitted))
        .build()
        .unwrap();
    let producer = Producer::builder(client.clone())
        .transactional_id(format!("{group_id}-{member}"))
        .transaction_timeout(Duration::from_secs(5))
        .linger(Duration::from_millis(2))
        .build()
        .unwrap();
    let (runner, input, output) = (group.clone(), input.to_string(), output.to_string());
    let transformed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = transformed.clone();
    let task = tokio::spawn(async move {
        runner
            .transact(
                &[&input],
                producer,
                Duration::from_millis(100),
                move |record| {
                    let output = output.clone();
                    counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    async move {
                        let value = String::from_utf8_lossy(record.value().unwrap()).to_string();
                        Ok::<_, std::io::Error>(vec![
                            ProducerRecord::new(output).value(format!("out-{value}"))
                        ])
                    }
                },
            )
            .await
    });
    Pipeline {
        group,
        client,
        task,
        transformed,
    }
}

async fn produce_inputs(client: &Client, topic: &str, range: std::ops::Range<usize>) {
    let producer = Producer::builder(client.clone()).build().unwrap();
    let mut deliveries = Vec::new();
    for i in range {
        deliveries.push(
            producer
                .enqueue(
                    ProducerRecord::new(topic)
                        .key(format!("k{i}"))
                        .value(i.to_string()),
                )
                .await
                .unwrap(),
        );
    }
    producer.close().await.unwrap();
    common::delivered(deliveries).await;
}

/// Waits until the output holds `n` committed records.
async fn wait_for_outputs(client: &Client, topic: &str, partitions: i32, n: usize) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if common::committed_values(client, topic, partitions)
                .await
                .len()
                >= n
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{topic}: {n} committed outputs never arrived"));
}

/// Every input's output exactly once under read_committed.
fn assert_exactly_once(outputs: &[String], inputs: usize) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for o in outputs {
        *counts.entry(o.as_str()).or_default() += 1;
    }
    let lost: Vec<usize> = (0..inputs)
        .filter(|i| !counts.contains_key(format!("out-{i}").as_str()))
        .collect();
    let duplicated: Vec<(&&str, &usize)> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        lost.is_empty() && duplicated.is_empty() && outputs.len() == inputs,
        "{} outputs for {inputs} inputs; lost {:?}...; duplicated {:?}...",
        outputs.len(),
        &lost[..lost.len().min(10)],
        &duplicated[..duplicated.len().min(10)]
    );
}

/// `transact` through a rebalance (a second member joins mid-stream) and a crash (a
/// member vanishes without leaving or ending its transaction: its partitions move
/// after its session times out, their pending offsets wait for the coordinator to
/// abort its transaction): every input's output once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transact_writes_each_output_once_through_a_rebalance_and_a_crash() {
    common::trace();
    let kafka = real_kafka!();
    let client = common::client(&kafka.plaintext).await;
    let input = topic(&client, "eos-in", 4).await;
    let output = topic(&client, "eos-out", 2).await;
    let group_id = common::unique("eos");
    // Inputs keep arriving throughout: 6,000 in chunks of 50 every 50 ms.
    let inputs = tokio::spawn({
        let (client, input) = (client.clone(), input.clone());
        async move {
            for chunk in 0..120 {
                produce_inputs(&client, &input, chunk * 50..(chunk + 1) * 50).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let a = pipeline(&kafka.plaintext, &group_id, &input, &output, "a").await;
    a.transforms(300).await;
    // B joins mid-stream: the group rebalances; A commits its revoked partitions'
    // transaction before giving them up.
    let b = pipeline(&kafka.plaintext, &group_id, &input, &output, "b").await;
    b.transforms(200).await;
    // B crashes mid-stream: no commit, no abort, no LeaveGroup. Its open
    // transaction holds outputs and offsets until the coordinator aborts it
    // (transaction.timeout.ms, 5 s); A gets its partitions once B's session expires
    // and waits for their offsets to be stable.
    b.task.abort();
    b.client.close();
    drop(b.group);
    inputs.await.unwrap();
    wait_for_outputs(&client, &output, 2, 6000).await;

    a.group.close().await.unwrap();
    a.task.await.unwrap().unwrap();
    assert_exactly_once(&common::committed_values(&client, &output, 2).await, 6000);
}
