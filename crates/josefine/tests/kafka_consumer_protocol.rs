//! The consumer group protocol (KIP-848, `group.protocol=consumer`) on Apache Kafka
//! 4.4, started by scripts/test.sh (`group.consumer.session.timeout.ms` 10 s, heartbeat
//! interval 500 ms; docs/BROKERS.md).
//!
//! Every test checks, as it goes, that no partition is ever claimed by two members at
//! once (a claim starts only after the previous owner's claim ended), and counts each
//! record's deliveries.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::real_kafka;
use josefine::{
    Claim, Client, ConsumerGroup, ConsumerGroupBuilder, GroupHandler, GroupProtocol, NewTopic,
    OffsetReset, Session, TopicPartition,
};

/// What the members saw.
#[derive(Default)]
struct Seen {
    /// Deliveries per (topic, partition, offset).
    deliveries: HashMap<(String, i32, i64), u32>,
    /// Who claims each partition now.
    owner: HashMap<(String, i32), &'static str>,
    /// Claims started, per member and partition.
    claims: BTreeMap<(&'static str, String, i32), u32>,
    /// A partition claimed while another member held it.
    overlaps: Vec<String>,
}

impl Seen {
    fn delivered(&self, topic: &str, partition: i32, end: i64) -> bool {
        (0..end).all(|o| {
            self.deliveries
                .contains_key(&(topic.to_string(), partition, o))
        })
    }

    /// No record was delivered twice.
    fn assert_once(&self) {
        let mut twice: Vec<_> = self
            .deliveries
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(k, _)| k.clone())
            .collect();
        twice.sort();
        assert!(
            twice.is_empty(),
            "{} records delivered more than once, the first: {:?}",
            twice.len(),
            &twice[..twice.len().min(3)]
        );
    }

    fn owned_by(&self, member: &str) -> BTreeSet<(String, i32)> {
        self.owner
            .iter()
            .filter(|(_, m)| **m == member)
            .map(|(tp, _)| tp.clone())
            .collect()
    }
}

struct Recorder {
    member: &'static str,
    seen: Arc<Mutex<Seen>>,
}

impl GroupHandler for Recorder {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        let tp = (claim.topic().to_string(), claim.partition());
        {
            let mut seen = self.seen.lock().unwrap();
            if let Some(other) = seen.owner.insert(tp.clone(), self.member) {
                seen.overlaps.push(format!(
                    "{tp:?} claimed by {} while {other} held it",
                    self.member
                ));
            }
            *seen
                .claims
                .entry((self.member, tp.0.clone(), tp.1))
                .or_default() += 1;
        }
        while let Some(record) = claim.next().await {
            let record = record?;
            *self
                .seen
                .lock()
                .unwrap()
                .deliveries
                .entry((
                    record.topic().to_string(),
                    record.partition(),
                    record.offset(),
                ))
                .or_default() += 1;
            session.mark(&record);
        }
        let mut seen = self.seen.lock().unwrap();
        if seen.owner.get(&tp) == Some(&self.member) {
            seen.owner.remove(&tp);
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

/// A member on the consumer protocol. Without auto-commit, so that the only commits
/// are the ones that hand a partition over (and the close): a record handed over
/// uncommitted shows up as a duplicate.
fn member(client: Client, group: &str) -> ConsumerGroupBuilder {
    ConsumerGroup::builder(client, group)
        .protocol(GroupProtocol::Consumer)
        .rebalance_timeout(Duration::from_secs(20))
        .auto_commit(false)
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

/// Waits (bounded) until `done` holds for what the members saw; no overlap ever.
async fn until(seen: &Arc<Mutex<Seen>>, what: &str, done: impl Fn(&Seen) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        {
            let seen = seen.lock().unwrap();
            assert!(seen.overlaps.is_empty(), "{:?}", seen.overlaps);
            if done(&seen) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 90 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

async fn committed(client: &Client, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let offsets = client.admin().committed_offsets(group, &tps).await.unwrap();
    (0..partitions)
        .map(|p| {
            offsets
                .iter()
                .find(|(tp, _)| tp.partition == p)
                .map_or(-1, |(_, o)| *o)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_consume_every_record_once_and_commit_to_the_end() {
    common::trace();
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "kip848-three", 6, 100).await;
    let group = common::unique("kip848-three-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut members = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let g = member(client(&kafka.plaintext, name).await, &group)
            .build()
            .unwrap();
        let task = start(&g, &topic, name, &seen);
        until(
            &seen,
            &format!("{} members sharing 6 partitions", i + 1),
            |s| s.owner.len() == 6 && s.owner.values().collect::<BTreeSet<_>>().len() == i + 1,
        )
        .await;
        members.push((g, task));
    }
    until(&seen, "every record", |s| {
        (0..6).all(|p| s.delivered(&topic, p, 100))
    })
    .await;
    {
        let s = seen.lock().unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(s.owned_by(name).len(), 2, "uniform: two each");
        }
    }
    // More records while all three run.
    common::produce_values(&admin, &topic, 6, |_| 100..150).await;
    until(&seen, "the new records", |s| {
        (0..6).all(|p| s.delivered(&topic, p, 150))
    })
    .await;
    for (g, task) in members {
        g.close().await.unwrap();
        task.await.unwrap().unwrap();
    }
    seen.lock().unwrap().assert_once();
    assert_eq!(committed(&admin, &group, &topic, 6).await, vec![150; 6]);
}

/// The claims `member` started per partition it owns now.
fn claims_of(seen: &Seen, member: &'static str) -> BTreeMap<i32, u32> {
    seen.claims
        .iter()
        .filter(|((m, _, _), _)| *m == member)
        .map(|((_, _, p), n)| (*p, *n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_and_leaving_stops_only_the_partitions_that_move() {
    common::trace();
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "kip848-moves", 6, 20).await;
    let group = common::unique("kip848-moves-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let a = member(client(&kafka.plaintext, "a").await, &group)
        .build()
        .unwrap();
    let a_task = start(&a, &topic, "a", &seen);
    until(&seen, "a owning all", |s| s.owned_by("a").len() == 6).await;
    let b = member(client(&kafka.plaintext, "b").await, &group)
        .build()
        .unwrap();
    let b_task = start(&b, &topic, "b", &seen);
    until(&seen, "a and b with three each", |s| {
        s.owned_by("a").len() == 3 && s.owned_by("b").len() == 3
    })
    .await;
    let (a_before, b_before) = {
        let s = seen.lock().unwrap();
        (s.owned_by("a"), s.owned_by("b"))
    };

    let c = member(client(&kafka.plaintext, "c").await, &group)
        .build()
        .unwrap();
    let c_task = start(&c, &topic, "c", &seen);
    until(&seen, "two each", |s| {
        ["a", "b", "c"].iter().all(|m| s.owned_by(m).len() == 2)
    })
    .await;
    common::produce_values(&admin, &topic, 6, |_| 20..40).await;
    until(&seen, "the records after c joined", |s| {
        (0..6).all(|p| s.delivered(&topic, p, 40))
    })
    .await;
    {
        let s = seen.lock().unwrap();
        // A partition that stayed with its owner was never stopped: one claim.
        for (name, before) in [("a", &a_before), ("b", &b_before)] {
            let claims = claims_of(&s, name);
            for tp in s.owned_by(name).intersection(before) {
                assert_eq!(claims[&tp.1], 1, "{name} kept {tp:?}: never restarted");
            }
        }
    }
    c.close().await.unwrap();
    c_task.await.unwrap().unwrap();
    until(&seen, "a and b with three each again", |s| {
        s.owned_by("a").len() + s.owned_by("b").len() == 6
    })
    .await;
    common::produce_values(&admin, &topic, 6, |_| 40..60).await;
    until(&seen, "the records after c left", |s| {
        (0..6).all(|p| s.delivered(&topic, p, 60))
    })
    .await;
    {
        let s = seen.lock().unwrap();
        for name in ["a", "b"] {
            let claims = claims_of(&s, name);
            let before = if name == "a" { &a_before } else { &b_before };
            // What a member kept through c's join and leave ran on one claim.
            for tp in s.owned_by(name).intersection(before) {
                if claims[&tp.1] == 1 {
                    continue;
                }
                // It moved to c and came back: two claims, never more.
                assert_eq!(claims[&tp.1], 2, "{name} {tp:?}");
                assert!(s.claims.contains_key(&("c", tp.0.clone(), tp.1)), "{tp:?}");
            }
        }
        // Hand-overs commit first.
        s.assert_once();
    }
    for (g, task) in [(a, a_task), (b, b_task)] {
        g.close().await.unwrap();
        task.await.unwrap().unwrap();
    }
    assert_eq!(committed(&admin, &group, &topic, 6).await, vec![60; 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_is_replaced_after_the_session_timeout() {
    common::trace();
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "kip848-kill", 4, 30).await;
    let group = common::unique("kip848-kill-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let a = member(client(&kafka.plaintext, "a").await, &group)
        .build()
        .unwrap();
    let a_task = start(&a, &topic, "a", &seen);
    until(&seen, "a owning all", |s| s.owned_by("a").len() == 4).await;
    let k = member(client(&kafka.plaintext, "k").await, &group)
        .build()
        .unwrap();
    let k_task = start(&k, &topic, "k", &seen);
    until(&seen, "k owning two", |s| s.owned_by("k").len() == 2).await;
    until(&seen, "every record", |s| {
        (0..4).all(|p| s.delivered(&topic, p, 30))
    })
    .await;

    // The crash: the member's tasks stop with no leave and no commit.
    k_task.abort();
    assert!(k_task.await.unwrap_err().is_cancelled());
    let killed_at = tokio::time::Instant::now();
    seen.lock().unwrap().owner.retain(|_, m| *m != "k");
    common::produce_values(&admin, &topic, 4, |_| 30..50).await;
    until(&seen, "a owning all again", |s| s.owned_by("a").len() == 4).await;
    let replaced_after = killed_at.elapsed();
    until(&seen, "every record after the kill", |s| {
        (0..4).all(|p| s.delivered(&topic, p, 50))
    })
    .await;
    assert!(
        replaced_after >= Duration::from_secs(5),
        "a member that stopped heartbeating is replaced after the broker's session timeout (10 s), not at once: {replaced_after:?}"
    );
    a.close().await.unwrap();
    a_task.await.unwrap().unwrap();
    assert_eq!(committed(&admin, &group, &topic, 4).await, vec![50; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_subscription_picks_up_a_topic_created_later() {
    common::trace();
    let kafka = real_kafka!();
    let prefix = common::unique("kip848-re");
    let admin = client(&kafka.plaintext, "admin").await;
    let first = format!("{prefix}-one");
    admin
        .admin()
        .create_topic(NewTopic::new(&first, 2))
        .await
        .unwrap();
    common::produce_values(&admin, &first, 2, |_| 0..10).await;
    let group = common::unique("kip848-re-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let g = member(client(&kafka.plaintext, "a").await, &group)
        .build()
        .unwrap();
    let regex = format!("^{}-.*", prefix.replace('-', "\\-"));
    let task = {
        let (g, seen, regex) = (g.clone(), seen.clone(), regex.clone());
        tokio::spawn(async move { g.consume(&[&regex], Recorder { member: "a", seen }).await })
    };
    until(&seen, "the first topic's records", |s| {
        (0..2).all(|p| s.delivered(&first, p, 10))
    })
    .await;
    let second = format!("{prefix}-two");
    admin
        .admin()
        .create_topic(NewTopic::new(&second, 3))
        .await
        .unwrap();
    common::produce_values(&admin, &second, 3, |_| 0..10).await;
    until(&seen, "the later topic's records", |s| {
        (0..3).all(|p| s.delivered(&second, p, 10))
    })
    .await;
    g.close().await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(committed(&admin, &group, &second, 3).await, vec![10; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_gets_its_partitions_back() {
    common::trace();
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "kip848-static", 4, 20).await;
    let group = common::unique("kip848-static-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let a = member(client(&kafka.plaintext, "a").await, &group)
        .instance_id("box-a")
        .build()
        .unwrap();
    let a_task = start(&a, &topic, "a", &seen);
    until(&seen, "a owning all", |s| s.owned_by("a").len() == 4).await;
    let b = member(client(&kafka.plaintext, "b").await, &group)
        .instance_id("box-b")
        .build()
        .unwrap();
    let b_task = start(&b, &topic, "b", &seen);
    until(&seen, "two each, every record", |s| {
        s.owned_by("b").len() == 2 && (0..4).all(|p| s.delivered(&topic, p, 20))
    })
    .await;
    let a_partitions = seen.lock().unwrap().owned_by("a");

    // A leaves as a static member (epoch -2) and comes back as the same instance
    // within the session timeout: its partitions wait for it.
    a.close().await.unwrap();
    a_task.await.unwrap().unwrap();
    let restarted = member(client(&kafka.plaintext, "a").await, &group)
        .instance_id("box-a")
        .build()
        .unwrap();
    let a_task = start(&restarted, &topic, "a", &seen);
    until(&seen, "a's partitions back", |s| {
        s.owned_by("a") == a_partitions
    })
    .await;
    common::produce_values(&admin, &topic, 4, |_| 20..30).await;
    until(&seen, "the new records", |s| {
        (0..4).all(|p| s.delivered(&topic, p, 30))
    })
    .await;
    {
        let s = seen.lock().unwrap();
        assert!(
            claims_of(&s, "b").values().all(|&n| n == 1),
            "b never stopped: {:?}",
            claims_of(&s, "b")
        );
        s.assert_once();
    }
    for (g, task) in [(restarted, a_task), (b, b_task)] {
        g.close().await.unwrap();
        task.await.unwrap().unwrap();
    }
    assert_eq!(committed(&admin, &group, &topic, 4).await, vec![30; 4]);
}

/// The other client in a mixed group.
#[derive(Clone, Copy, Debug)]
enum Peer {
    /// librdkafka through confluent-kafka (tests/interop/rdkafka.py).
    Rdkafka,
    /// The Java client (tests/interop/JavaPeer.java).
    Java,
}

/// Runs a peer with its arguments and returns its stdout.
type PeerRun = Box<dyn FnOnce(&[&str]) -> String + Send>;

/// The peer's group member with `group.protocol=consumer`, run to its end (it leaves
/// after 6 s without a record); its stdout. `None` when the peer is skipped.
fn peer_member(
    peer: Peer,
    addr: &str,
    topic: &str,
    group: &str,
) -> Option<tokio::task::JoinHandle<String>> {
    let args: Vec<String> = [
        "group",
        "--bootstrap",
        addr,
        "--topic",
        topic,
        "--group",
        group,
        "--protocol",
        "consumer",
        "--idle",
        "6",
        "--max",
        "80",
    ]
    .map(String::from)
    .to_vec();
    let run: PeerRun = match peer {
        Peer::Rdkafka => {
            let python = common::python()?;
            Box::new(move |args| common::rdkafka(&python, args, ""))
        }
        Peer::Java => {
            let classpath = common::java_peer()?;
            Box::new(move |args| common::java(&classpath, args))
        }
    };
    Some(tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    }))
}

/// One Josefine member and one member of another client, both on the consumer
/// protocol, in one group: the broker splits the partitions between them, every
/// record is processed by one of them, and when the peer leaves ours takes all.
async fn mixed_group(peer: Peer, peer_first: bool) {
    common::trace();
    let kafka = real_kafka!();
    let addr = kafka.plaintext.clone();
    let (admin, topic) = topic_with_records(&addr, "kip848-mixed", 4, 100).await;
    let group = common::unique("kip848-mixed-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ours = member(client(&addr, "ours").await, &group).build().unwrap();
    let (ours_task, peer_task);
    if peer_first {
        peer_task = match peer_member(peer, &addr, &topic, &group) {
            Some(task) => task,
            None => return,
        };
        // The peer consumed and committed everything: it owns the partitions.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while committed(&admin, &group, &topic, 4).await != vec![100; 4] {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{peer:?} never committed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ours_task = start(&ours, &topic, "ours", &seen);
    } else {
        ours_task = start(&ours, &topic, "ours", &seen);
        until(&seen, "ours with every record", |s| {
            (0..4).all(|p| s.delivered(&topic, p, 100))
        })
        .await;
        peer_task = match peer_member(peer, &addr, &topic, &group) {
            Some(task) => task,
            None => {
                ours.close().await.unwrap();
                ours_task.await.unwrap().unwrap();
                return;
            }
        };
    }
    until(&seen, "the partitions split between the two", |s| {
        s.owned_by("ours").len() == 2
    })
    .await;
    common::produce_values(&admin, &topic, 4, |_| 100..150).await;
    let output = peer_task.await.unwrap();
    until(
        &seen,
        "ours owning every partition after the peer left",
        |s| s.owned_by("ours").len() == 4,
    )
    .await;
    let mut peer_records = 0;
    let mut peer_assigned = false;
    for line in output.lines() {
        if line.starts_with(r#"{"assigned": ["#) && !line.contains("[]") {
            peer_assigned = true;
        } else if line.starts_with(r#"{"partition""#) {
            let numbers: Vec<i64> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            *seen
                .lock()
                .unwrap()
                .deliveries
                .entry((topic.clone(), numbers[0] as i32, numbers[1]))
                .or_default() += 1;
            peer_records += 1;
        }
    }
    assert!(peer_assigned, "{peer:?} got partitions: {output}");
    assert!(peer_records > 0, "{peer:?} consumed records: {output}");
    until(&seen, "every record, by one member or the other", |s| {
        (0..4).all(|p| s.delivered(&topic, p, 150))
    })
    .await;
    ours.close().await.unwrap();
    ours_task.await.unwrap().unwrap();
    assert_eq!(committed(&admin, &group, &topic, 4).await, vec![150; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_with_librdkafka_joining_second() {
    mixed_group(Peer::Rdkafka, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_with_librdkafka_joining_first() {
    mixed_group(Peer::Rdkafka, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_with_the_java_client_joining_second() {
    mixed_group(Peer::Java, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_with_the_java_client_joining_first() {
    mixed_group(Peer::Java, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_group_and_lag_show_a_consumer_protocol_group() {
    common::trace();
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "kip848-describe", 4, 10).await;
    let group = common::unique("kip848-describe-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let a = member(client(&kafka.plaintext, "client-a").await, &group)
        .instance_id("box-a")
        .build()
        .unwrap();
    let b = member(client(&kafka.plaintext, "client-b").await, &group)
        .build()
        .unwrap();
    let (a_task, b_task) = (start(&a, &topic, "a", &seen), start(&b, &topic, "b", &seen));
    until(&seen, "two each, every record", |s| {
        s.owned_by("a").len() == 2
            && s.owned_by("b").len() == 2
            && (0..4).all(|p| s.delivered(&topic, p, 10))
    })
    .await;
    // The broker's view catches up with the members' at their next heartbeat.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let d = loop {
        let d = admin.admin().describe_group(&group).await.unwrap();
        let settled = d.state == josefine::GroupState::Stable
            && d.members.len() == 2
            && d.members.iter().all(|m| m.assignment.len() == 2);
        if settled {
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(d.group_protocol, GroupProtocol::Consumer);
    assert_eq!(d.protocol, "uniform");
    assert!(
        d.group_epoch.unwrap() >= 2 && d.assignment_epoch.unwrap() >= 1,
        "{d:?}"
    );
    let mut all: Vec<TopicPartition> = Vec::new();
    for m in &d.members {
        assert_eq!(m.target_assignment, m.assignment, "reconciled: {m:?}");
        assert!(m.member_epoch.unwrap() >= 1);
        assert_eq!(m.subscribed_topics, vec![topic.clone()]);
        all.extend(m.assignment.iter().cloned());
    }
    all.sort();
    assert_eq!(
        all,
        (0..4)
            .map(|p| TopicPartition::new(topic.as_str(), p))
            .collect::<Vec<_>>()
    );
    let static_member = d
        .members
        .iter()
        .find(|m| m.client_id == "client-a")
        .unwrap();
    assert_eq!(static_member.group_instance_id.as_deref(), Some("box-a"));

    // Lag names each partition's owner while the group runs.
    let lag = admin.admin().group_lag(&group).await.unwrap();
    assert_eq!(lag.partitions.len(), 4, "{lag:?}");
    assert!(lag.partitions.iter().all(|p| p.owner.is_some()), "{lag:?}");
    a.close().await.unwrap();
    b.close().await.unwrap();
    a_task.await.unwrap().unwrap();
    b_task.await.unwrap().unwrap();
    let lag = admin.admin().group_lag(&group).await.unwrap();
    assert_eq!(lag.total_lag, 0, "{lag:?}");
    assert_eq!(lag.partitions.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_and_claim_streams_work_under_the_consumer_protocol() {
    use futures::StreamExt;
    common::trace();
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "kip848-streams", 4, 25).await;
    let group = common::unique("kip848-streams-group");
    // Records, one by one, marked.
    let records = member(client(&kafka.plaintext, "records").await, &group)
        .build()
        .unwrap();
    let mut stream = records.stream(&[&topic]).unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 100 {
        let record = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("records within 60 s")
            .expect("the stream goes on")
            .unwrap();
        assert!(
            seen.insert((record.partition(), record.offset())),
            "delivered twice"
        );
        record.mark();
    }
    stream.close().await.unwrap();
    assert_eq!(committed(&admin, &group, &topic, 4).await, vec![25; 4]);

    // Claims, each its own stream, picking up where the records stream committed.
    common::produce_values(&admin, &topic, 4, |_| 25..40).await;
    let claims_member = member(client(&kafka.plaintext, "claims").await, &group)
        .build()
        .unwrap();
    let mut claims = claims_member.claims(&[&topic]).unwrap();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut claim = tokio::time::timeout(Duration::from_secs(60), claims.next())
            .await
            .expect("a claim within 60 s")
            .expect("the stream goes on")
            .unwrap();
        readers.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            while offsets.len() < 15 {
                let record = claim.next().await.expect("records until 40").unwrap();
                offsets.push(record.offset());
                claim.mark(&record);
            }
            (claim.partition(), offsets)
        }));
    }
    for reader in readers {
        let (partition, offsets) = reader.await.unwrap();
        assert_eq!(
            offsets,
            (25..40).collect::<Vec<i64>>(),
            "partition {partition}"
        );
    }
    claims.close().await.unwrap();
    assert_eq!(committed(&admin, &group, &topic, 4).await, vec![40; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_assignor_is_the_brokers_and_an_unknown_one_is_refused() {
    common::trace();
    let kafka = real_kafka!();
    let (admin, topic) = topic_with_records(&kafka.plaintext, "kip848-assignor", 2, 5).await;
    let group = common::unique("kip848-range-group");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let g = member(client(&kafka.plaintext, "a").await, &group)
        .remote_assignor("range")
        .build()
        .unwrap();
    let task = start(&g, &topic, "a", &seen);
    until(&seen, "both partitions", |s| {
        (0..2).all(|p| s.delivered(&topic, p, 5))
    })
    .await;
    let described = admin.admin().describe_group(&group).await.unwrap();
    assert_eq!(described.protocol, "range", "{described:?}");
    g.close().await.unwrap();
    task.await.unwrap().unwrap();

    let bogus = member(
        client(&kafka.plaintext, "b").await,
        &common::unique("kip848-bogus"),
    )
    .remote_assignor("bogus")
    .build()
    .unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        bogus.consume(&[&topic], Recorder { member: "b", seen }),
    )
    .await
    .expect("consume ends")
    .unwrap_err();
    assert_eq!(
        err.code(),
        Some(josefine::KafkaCode::UNSUPPORTED_ASSIGNOR),
        "{err}"
    );
    assert!(err.to_string().contains("uniform or range"), "{err}");
}
