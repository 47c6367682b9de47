//! Consumer-group administration against the real brokers (Kafka, then Tansu): a running group is listed,
//! described and measured; its lag is the number of records produced past its
//! commits (counted by the test, never taken from ListOffsets, which Tansu gets wrong
//! for multi-record batches); a group that does not exist has no members and no lag;
//! a librdkafka group's commits are measured.
//!
//! Tansu 0.6 answers less than Kafka (see `../shared/notes/tansu.md`): DescribeGroups
//! leaves client id, client host, protocol, member metadata and assignments empty,
//! names the state "Unknown" while the group rebalances, and describes a group that
//! does not exist as "Empty"; ListGroups lists only groups with committed offsets,
//! in state "Unknown". On Kafka (the primary broker) every field is checked; on Tansu
//! only those it fills. The mock tests (mock_admin_groups.rs) check all of them too.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::real_broker;
use josefine::{
    Admin, Claim, Client, ConsumerGroup, GroupHandler, GroupState, NewTopic, OffsetReset, Session,
    TopicPartition,
};

const PARTITIONS: i32 = 3;

/// Produces `count(p)` records to each partition `p` of `topic`.
async fn produce(client: &Client, topic: &str, count: impl Fn(i32) -> i64) {
    common::produce_values(client, topic, PARTITIONS, |p| 0..count(p)).await;
}

async fn client(addr: &str, client_id: &str) -> Client {
    Client::builder()
        .bootstrap([addr])
        .client_id(client_id)
        .connect()
        .await
        .expect("connect to the test broker")
}

/// Marks every record it gets, except while `hold` is set: then it keeps the record
/// in hand, unmarked, so the commits stand still. Counts the records it marked.
struct Gated {
    hold: Arc<AtomicBool>,
    marked: Arc<AtomicI64>,
}

impl GroupHandler for Gated {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            let record = record?;
            while self.hold.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            session.mark(&record);
            self.marked.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// Evaluates `$attempt` (an `Option`, may `.await`) every 100 ms until it is `Some`,
/// for at most 60 s.
macro_rules! eventually {
    ($what:expr, $attempt:expr) => {{
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(value) = $attempt {
                break value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up after 60 s waiting for {}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

async fn committed(admin: &Admin, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    admin
        .committed_offsets(group, &partitions)
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, offset)| (tp.partition, offset))
        .collect()
}

/// A partition of a lag report: topic, partition, committed, high watermark, lag.
type LagRow<'a> = (&'a str, i32, Option<i64>, Option<i64>, Option<i64>);

/// Partition, committed, high watermark, lag.
type Offsets = (i32, Option<i64>, Option<i64>, Option<i64>);

/// The offsets `produced` records per partition end at.
fn ends(produced: impl Fn(i32) -> i64) -> BTreeMap<i32, i64> {
    (0..PARTITIONS).map(|p| (p, produced(p))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_group_is_listed_described_and_its_lag_is_what_was_produced() {
    let addr = real_broker!();
    let producer_client = common::client(&addr).await;
    let admin = client(&addr, "admin").await.admin();
    let topic = common::unique("admin-groups");
    let group = common::unique("admin-group");
    admin
        .create_topic(NewTopic::new(&topic, PARTITIONS))
        .await
        .unwrap();
    let first = |p: i32| 40 + 10 * i64::from(p);
    produce(&producer_client, &topic, first).await;

    let hold = Arc::new(AtomicBool::new(false));
    let marked = Arc::new(AtomicI64::new(0));
    let mut members = Vec::new();
    for i in 0..2 {
        let member = ConsumerGroup::builder(client(&addr, &format!("m{i}")).await, &group)
            .session_timeout(Duration::from_secs(3))
            .heartbeat_interval(Duration::from_millis(300))
            .rebalance_timeout(Duration::from_secs(20))
            .auto_commit_interval(Duration::from_millis(200))
            .auto_offset_reset(OffsetReset::Earliest)
            .build()
            .unwrap();
        let (runner, topic) = (member.clone(), topic.clone());
        let handler = Gated {
            hold: hold.clone(),
            marked: marked.clone(),
        };
        let task = tokio::spawn(async move { runner.consume(&[&topic], handler).await });
        members.push((member, task));
    }

    // Both members in, every record consumed and committed.
    let described = eventually!("two stable members and every record committed", {
        let d = admin.describe_group(&group).await.unwrap();
        let done = committed(&admin, &group, &topic).await == ends(first);
        (d.state == GroupState::Stable && d.members.len() == 2 && done).then_some(d)
    });
    assert_eq!(described.group_id, group);
    assert_eq!(described.protocol_type, "consumer");
    // Member ids start with the client id, on Kafka and on Tansu alike.
    let mut member_ids: Vec<&str> = described
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    member_ids.sort();
    assert!(
        member_ids[0].starts_with("m0-") && member_ids[1].starts_with("m1-"),
        "{member_ids:?}"
    );
    let all: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic.as_str(), p))
        .collect();
    // Tansu fills none of these, Kafka all of them.
    let kafka = common::is_kafka();
    if kafka || described.members.iter().any(|m| !m.client_id.is_empty()) {
        let mut clients: Vec<&str> = described
            .members
            .iter()
            .map(|m| m.client_id.as_str())
            .collect();
        clients.sort();
        assert_eq!(clients, ["m0", "m1"]);
    }
    if kafka || !described.protocol.is_empty() {
        assert_eq!(described.protocol, "range");
    }
    if kafka {
        for m in &described.members {
            assert_eq!(m.client_host, "/127.0.0.1", "{m:?}");
        }
    }
    if kafka || described.members.iter().any(|m| !m.assignment.is_empty()) {
        let mut assigned: Vec<TopicPartition> = Vec::new();
        for m in &described.members {
            assert_eq!(m.subscribed_topics, [topic.as_str()]);
            assigned.extend(m.assignment.iter().cloned());
        }
        assigned.sort();
        assert_eq!(assigned, all, "the assignments cover the topic once");
    }

    // Listed (on Tansu because it has commits), by the broker that describes it.
    let listed = admin.list_groups().await.unwrap();
    let ours = listed
        .iter()
        .find(|g| g.group_id == group)
        .unwrap_or_else(|| panic!("{group} not in {listed:?}"));
    assert_eq!(ours.protocol_type, "consumer");
    assert!(
        ours.state.is_some(),
        "ListGroups v4+ names a state: {ours:?}"
    );
    assert_eq!(ours.coordinator, described.coordinator);

    // Records pile up behind the held handlers: lag = what was produced since.
    hold.store(true, Ordering::Release);
    let more = |p: i32| 7 + 5 * i64::from(p);
    produce(&producer_client, &topic, more).await;
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!(committed(&admin, &group, &topic).await, ends(first));
    assert_eq!(lag.group_id, group);
    let rows: Vec<LagRow> = lag
        .partitions
        .iter()
        .map(|p| {
            (
                p.topic.as_str(),
                p.partition,
                p.committed,
                p.high_watermark,
                p.lag,
            )
        })
        .collect();
    let expected: Vec<LagRow> = (0..PARTITIONS)
        .map(|p| {
            (
                topic.as_str(),
                p,
                Some(first(p)),
                Some(first(p) + more(p)),
                Some(more(p)),
            )
        })
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(lag.total_lag, (0..PARTITIONS).map(more).sum::<i64>());
    for p in &lag.partitions {
        // Owners come from the assignments, which Tansu does not describe.
        assert!(
            !kafka || p.owner.is_some(),
            "Kafka names every owner: {p:?}"
        );
        if let Some(owner) = &p.owner {
            let member = described
                .members
                .iter()
                .find(|m| m.member_id == owner.member_id)
                .expect("the owner is a member");
            assert!(member
                .assignment
                .contains(&TopicPartition::new(topic.as_str(), p.partition)));
        }
    }

    // Caught up: no lag.
    hold.store(false, Ordering::Release);
    let total = |p: i32| first(p) + more(p);
    eventually!("the members to catch up", {
        (committed(&admin, &group, &topic).await == ends(total)).then_some(())
    });
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!(lag.total_lag, 0, "{lag:?}");
    assert!(lag.partitions.iter().all(|p| p.lag == Some(0)), "{lag:?}");
    assert_eq!(
        marked.load(Ordering::Acquire),
        (0..PARTITIONS).map(total).sum::<i64>(),
        "every record marked once"
    );

    // Closed: Empty, no members; the commits are still measured.
    for (member, _) in &members {
        member.close().await.unwrap();
    }
    for (_, task) in members {
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("consume returns after close")
            .unwrap()
            .unwrap();
    }
    let described = admin.describe_group(&group).await.unwrap();
    assert_eq!(described.state, GroupState::Empty, "{described:?}");
    assert!(described.members.is_empty());
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!(lag.state, GroupState::Empty);
    assert_eq!(lag.partitions.len(), PARTITIONS as usize);
    assert!(lag.partitions.iter().all(|p| p.owner.is_none()));
    assert_eq!(lag.total_lag, 0);
}

/// Kafka says Dead; Tansu says Empty (with no protocol type). Either way: no members,
/// nothing to measure, not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_does_not_exist_has_no_members_and_no_lag() {
    let addr = real_broker!();
    let admin = client(&addr, "admin").await.admin();
    let group = common::unique("no-such-group");
    let described = admin.describe_group(&group).await.unwrap();
    assert_eq!(described.group_id, group);
    let expected = if common::is_kafka() {
        GroupState::Dead
    } else {
        GroupState::Empty
    };
    assert_eq!(described.state, expected, "{described:?}");
    assert!(described.members.is_empty());
    assert_eq!(described.protocol_type, "");
    let lag = admin.group_lag(&group).await.unwrap();
    assert!(lag.partitions.is_empty(), "{lag:?}");
    assert_eq!(lag.total_lag, 0);
    assert!(!admin
        .list_groups()
        .await
        .unwrap()
        .iter()
        .any(|g| g.group_id == group));
}

/// A librdkafka group: while its member runs it is the group's one member (its id
/// starts with librdkafka's client id); afterwards its commits are measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_librdkafka_group_is_described_and_measured() {
    let addr = real_broker!();
    let Some(python) = common::python() else {
        return;
    };
    let admin = client(&addr, "admin").await.admin();
    let topic = common::unique("admin-rdkafka");
    let group = common::unique("admin-rdkafka-group");
    admin
        .create_topic(NewTopic::new(&topic, PARTITIONS))
        .await
        .unwrap();
    let produced = |p: i32| 20 + i64::from(p);
    produce(&common::client(&addr).await, &topic, produced).await;
    let rdkafka = {
        let (addr, topic, group) = (addr.clone(), topic.clone(), group.clone());
        tokio::task::spawn_blocking(move || {
            common::rdkafka(
                &python,
                &[
                    "group",
                    "--bootstrap",
                    &addr,
                    "--topic",
                    &topic,
                    "--group",
                    &group,
                    "--idle",
                    "3",
                ],
                "",
            )
        })
    };
    let member = eventually!("the librdkafka member to be stable", {
        let d = admin.describe_group(&group).await.unwrap();
        (d.state == GroupState::Stable && d.members.len() == 1).then(|| d.members[0].clone())
    });
    assert!(member.member_id.starts_with("rdkafka-"), "{member:?}");
    let output = rdkafka.await.unwrap();
    let consumed = output.lines().filter(|l| l.contains("\"offset\"")).count() as i64;
    assert_eq!(consumed, (0..PARTITIONS).map(produced).sum::<i64>());

    let lag = admin.group_lag(&group).await.unwrap();
    let rows: Vec<Offsets> = lag
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed, p.high_watermark, p.lag))
        .collect();
    let expected: Vec<Offsets> = (0..PARTITIONS)
        .map(|p| (p, Some(produced(p)), Some(produced(p)), Some(0)))
        .collect();
    assert_eq!(rows, expected, "librdkafka committed everything");
    assert_eq!(lag.total_lag, 0);
}
