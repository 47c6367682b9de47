//! Consumer-group features that only Apache Kafka (4.4, started by scripts/test.sh)
//! does right among our test brokers; Tansu breaks static membership, has no
//! CreatePartitions and no OffsetDelete (docs/BROKERS.md), and the mock's own versions
//! of these are in mock_group.rs and mock_admin_groups.rs.
//!
//! - static membership (KIP-345): a member restarted with its `group.instance.id`
//!   within the session timeout gets its partitions back at the same generation, and
//!   the other member never stops; a second member with the same id fences the first;
//! - a partition-count increase (CreatePartitions) rebalances a live group onto the
//!   new partitions, and their records are consumed;
//! - OffsetDelete removes an idle group's commits, and is refused per partition while
//!   a member subscribes to the topic.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::real_kafka;
use josefine::{
    Claim, Client, ConsumerGroup, ConsumerGroupBuilder, GroupHandler, KafkaCode, NewTopic,
    OffsetReset, Session, TopicPartition,
};

/// What every member saw: the offsets per partition, and each member's sessions as
/// (generation, partitions) in the order they started.
#[derive(Default)]
struct Seen {
    offsets: HashMap<i32, BTreeSet<i64>>,
    sessions: HashMap<&'static str, Vec<(i32, Vec<i32>)>>,
}

struct Recorder {
    member: &'static str,
    seen: Arc<Mutex<Seen>>,
}

impl GroupHandler for Recorder {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        let mut partitions: Vec<i32> = session.claims().iter().map(|tp| tp.partition).collect();
        partitions.sort();
        self.seen
            .lock()
            .unwrap()
            .sessions
            .entry(self.member)
            .or_default()
            .push((session.generation(), partitions));
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            let record = record?;
            self.seen
                .lock()
                .unwrap()
                .offsets
                .entry(record.partition())
                .or_default()
                .insert(record.offset());
            session.mark(&record);
        }
        Ok(())
    }
}

async fn client(addr: &str, id: &str) -> Client {
    Client::builder()
        .bootstrap([addr])
        .client_id(id)
        .metadata_max_age(Duration::from_secs(1))
        .connect()
        .await
        .unwrap()
}

fn member(client: Client, group: &str) -> ConsumerGroupBuilder {
    ConsumerGroup::builder(client, group)
        .session_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_millis(300))
        .rebalance_timeout(Duration::from_secs(10))
        .auto_commit_interval(Duration::from_millis(200))
        .partition_check_interval(Duration::from_millis(500))
        .auto_offset_reset(OffsetReset::Earliest)
}

type Running = tokio::task::JoinHandle<josefine::Result<()>>;

fn start(
    group: &ConsumerGroup,
    topic: &str,
    name: &'static str,
    seen: &Arc<Mutex<Seen>>,
) -> Running {
    let (group, topic, seen) = (group.clone(), topic.to_string(), seen.clone());
    tokio::spawn(async move {
        group
            .consume(&[&topic], Recorder { member: name, seen })
            .await
    })
}

/// Waits (bounded) until `done` holds for what the members saw.
async fn until(seen: &Arc<Mutex<Seen>>, what: &str, done: impl Fn(&Seen) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(&seen.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 60 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn consumed_up_to(seen: &Seen, partitions: i32, end: i64) -> bool {
    (0..partitions).all(|p| seen.offsets.get(&p).is_some_and(|o| o.len() as i64 >= end))
}

async fn topic_with_records(
    addr: &str,
    prefix: &str,
    partitions: i32,
    per: i64,
) -> (Client, String) {
    let client = client(addr, "admin").await;
    let topic = common::unique(prefix);
    client
        .admin()
        .create_topic(NewTopic::new(&topic, partitions))
        .await
        .unwrap();
    common::produce_values(&client, &topic, partitions, |_| 0..per).await;
    (client, topic)
}

async fn committed(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: i32,
) -> HashMap<i32, i64> {
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    client
        .admin()
        .committed_offsets(group, &tps)
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, o)| (tp.partition, o))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "static", 4, 50).await;
    let group = common::unique("static-group");
    let seen = Arc::new(Mutex::new(Seen::default()));

    let a = member(client(&kafka.plaintext, "a").await, &group)
        .instance_id("box-a")
        .build()
        .unwrap();
    let a_task = start(&a, &topic, "a", &seen);
    until(&seen, "a's first session", |s| s.sessions.contains_key("a")).await;
    let b = member(client(&kafka.plaintext, "b").await, &group)
        .instance_id("box-b")
        .build()
        .unwrap();
    let b_task = start(&b, &topic, "b", &seen);
    until(
        &seen,
        "two members sharing the partitions, every record consumed",
        |s| {
            let shared = |m| {
                s.sessions
                    .get(m)
                    .and_then(|v| v.last())
                    .is_some_and(|(_, p)| p.len() == 2)
            };
            shared("a") && shared("b") && consumed_up_to(s, 4, 50)
        },
    )
    .await;
    let (a_generation, a_partitions) = seen.lock().unwrap().sessions["a"].last().cloned().unwrap();
    let b_sessions = seen.lock().unwrap().sessions["b"].len();

    // A stops (a static member sends no LeaveGroup) and comes back as the same
    // instance well within the session timeout.
    a.close().await.unwrap();
    a_task.await.unwrap().unwrap();
    let restarted = member(client(&kafka.plaintext, "a").await, &group)
        .instance_id("box-a")
        .build()
        .unwrap();
    let a_task = start(&restarted, &topic, "a", &seen);
    until(&seen, "a's session after the restart", |s| {
        s.sessions["a"].len() == 2
    })
    .await;
    let (generation, partitions) = seen.lock().unwrap().sessions["a"][1].clone();
    assert_eq!(partitions, a_partitions, "the same partitions come back");
    assert_eq!(
        generation, a_generation,
        "no rebalance: the generation is unchanged"
    );

    // New records reach both; B never started another session.
    common::produce_values(&admin, &topic, 4, |_| 50..80).await;
    until(&seen, "the new records", |s| consumed_up_to(s, 4, 80)).await;
    assert_eq!(
        seen.lock().unwrap().sessions["b"].len(),
        b_sessions,
        "b never stopped"
    );
    restarted.close().await.unwrap();
    b.close().await.unwrap();
    a_task.await.unwrap().unwrap();
    b_task.await.unwrap().unwrap();
    let offsets = committed(&admin, &group, &topic, 4).await;
    assert!((0..4).all(|p| offsets.get(&p) == Some(&80)), "{offsets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_with_the_same_instance_id_fences_the_first() {
    let kafka = real_kafka!();
    let (_admin, topic) = topic_with_records(&kafka.plaintext, "fenced", 2, 10).await;
    let group = common::unique("fenced-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let first = member(client(&kafka.plaintext, "first").await, &group)
        .instance_id("box-1")
        .build()
        .unwrap();
    let first_task = start(&first, &topic, "first", &seen);
    until(&seen, "the first member's records", |s| {
        consumed_up_to(s, 2, 10)
    })
    .await;

    let second = member(client(&kafka.plaintext, "second").await, &group)
        .instance_id("box-1")
        .build()
        .unwrap();
    let second_task = start(&second, &topic, "second", &seen);
    let err = tokio::time::timeout(Duration::from_secs(30), first_task)
        .await
        .expect("the fenced member stops")
        .unwrap()
        .expect_err("fenced");
    assert_eq!(err.code(), Some(KafkaCode::FENCED_INSTANCE_ID), "{err}");
    assert!(!err.is_retriable());
    assert_eq!(err.context().group(), Some(group.as_str()), "{err}");
    until(&seen, "the second member's session", |s| {
        s.sessions.contains_key("second")
    })
    .await;
    second.close().await.unwrap();
    second_task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_the_topic_rebalances_a_live_group_onto_the_new_partitions() {
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "grow", 2, 20).await;
    let group = common::unique("grow-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let members: Vec<(ConsumerGroup, Running)> =
        futures::future::join_all(["m1", "m2"].map(|name| {
            let (addr, group, topic, seen) = (
                kafka.plaintext.clone(),
                group.clone(),
                topic.clone(),
                seen.clone(),
            );
            async move {
                let m = member(client(&addr, name).await, &group).build().unwrap();
                let task = start(&m, &topic, name, &seen);
                (m, task)
            }
        }))
        .await;
    until(&seen, "the first records", |s| consumed_up_to(s, 2, 20)).await;

    admin.admin().create_partitions(&topic, 4).await.unwrap();
    let described = admin
        .admin()
        .describe_topics(&[topic.as_str()])
        .await
        .unwrap();
    assert_eq!(described[0].partitions.len(), 4);
    until(&seen, "a generation owning all four partitions", |s| {
        let mut owned = BTreeSet::new();
        for sessions in s.sessions.values() {
            if let Some((_, p)) = sessions.last() {
                owned.extend(p.iter().copied());
            }
        }
        owned.len() == 4
    })
    .await;
    common::produce_values(&admin, &topic, 4, |p| if p < 2 { 20..30 } else { 0..30 }).await;
    until(&seen, "the records of the new partitions", |s| {
        consumed_up_to(s, 4, 30)
    })
    .await;
    for (m, task) in members {
        m.close().await.unwrap();
        task.await.unwrap().unwrap();
    }
    let offsets = committed(&admin, &group, &topic, 4).await;
    assert!((0..4).all(|p| offsets.get(&p) == Some(&30)), "{offsets:?}");

    // Kafka never shrinks a topic: a typed error naming it.
    let err = admin
        .admin()
        .create_partitions(&topic, 3)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::INVALID_PARTITIONS), "{err}");
    assert_eq!(err.context().topic(), Some(topic.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_delete_removes_an_idle_groups_commits_and_not_a_subscribed_ones() {
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "offset-delete", 2, 10).await;
    let group = common::unique("offset-delete-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let m = member(client(&kafka.plaintext, "m").await, &group)
        .build()
        .unwrap();
    let task = start(&m, &topic, "m", &seen);
    until(&seen, "every record", |s| consumed_up_to(s, 2, 10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while committed(&admin, &group, &topic, 2).await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no commits");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Subscribed: refused for each partition, nothing deleted.
    let p0 = TopicPartition::new(topic.as_str(), 0);
    let outcomes = admin
        .admin()
        .delete_committed_offsets(&group, std::slice::from_ref(&p0))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    let err = outcomes[0].1.as_ref().unwrap_err();
    assert_eq!(
        err.code(),
        Some(KafkaCode::GROUP_SUBSCRIBED_TO_TOPIC),
        "{err}"
    );
    assert_eq!(committed(&admin, &group, &topic, 2).await.len(), 2);

    // Idle: partition 0's commit goes, partition 1's stays.
    m.close().await.unwrap();
    task.await.unwrap().unwrap();
    let outcomes = admin
        .admin()
        .delete_committed_offsets(&group, std::slice::from_ref(&p0))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].0, p0);
    outcomes[0].1.as_ref().unwrap();
    let left = committed(&admin, &group, &topic, 2).await;
    assert_eq!(left, HashMap::from([(1, 10)]));

    // A group that does not exist: one error for the call.
    let err = admin
        .admin()
        .delete_committed_offsets(&common::unique("no-such-group"), &[p0])
        .await
        .unwrap_err();
    assert_eq!(
        err.code().map(|c| c.code()),
        Some(69),
        "GROUP_ID_NOT_FOUND: {err}"
    );
}
