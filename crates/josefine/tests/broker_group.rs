//! Consumer groups against the real brokers (Kafka 4.4, then Tansu): three members share a 6-partition topic,
//! every record is processed at least once, commits end at the end of each partition,
//! and members leaving and joining rebalance the group; librdkafka members (on both
//! brokers) and Java client members (on Kafka) share a group with ours under every
//! assignor, either side leading.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::real_broker;
use josefine::{
    Claim, Client, ConsumerGroup, GroupHandler, NewTopic, OffsetReset, Session, TopicPartition,
};

const PARTITIONS: i32 = 6;

const PER_PARTITION: i64 = 500;

/// What all members saw: offsets per partition, and each member's latest claims.
#[derive(Default)]
struct Seen {
    offsets: HashMap<i32, BTreeSet<i64>>,
    claims: HashMap<usize, (i32, Vec<TopicPartition>)>,
}

struct Recorder {
    member: usize,
    seen: Arc<Mutex<Seen>>,
}

impl GroupHandler for Recorder {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        let mut seen = self.seen.lock().unwrap();
        seen.claims.insert(
            self.member,
            (session.generation(), session.claims().to_vec()),
        );
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

/// A client, a fresh 6-partition topic filled with `PER_PARTITION` records per
/// partition, and a fresh group id.
async fn filled_group_topic(addr: &str, prefix: &str) -> (Client, String, String) {
    let client = common::client(addr).await;
    let topic = common::unique(prefix);
    client
        .admin()
        .create_topic(NewTopic::new(&topic, PARTITIONS))
        .await
        .unwrap();
    fill(&client, &topic).await;
    (client, topic, common::unique("group"))
}

async fn fill(client: &Client, topic: &str) {
    common::produce_values(client, topic, PARTITIONS, |_| 0..PER_PARTITION).await;
}

fn member(client: Client, group: &str) -> ConsumerGroup {
    ConsumerGroup::builder(client, group)
        .session_timeout(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(300))
        .rebalance_timeout(Duration::from_secs(6))
        .auto_commit_interval(Duration::from_millis(200))
        .auto_offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap()
}

async fn committed(client: &Client, group: &str, topic: &str) -> HashMap<i32, i64> {
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    client
        .admin()
        .committed_offsets(group, &partitions)
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, offset)| (tp.partition, offset))
        .collect()
}

fn complete(seen: &Seen) -> bool {
    (0..PARTITIONS).all(|p| {
        seen.offsets
            .get(&p)
            .is_some_and(|o| o.len() as i64 == PER_PARTITION)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_the_partitions_and_commit_to_the_end() {
    let addr = real_broker!();
    let (client, topic, group) = filled_group_topic(&addr, "group-three").await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut members = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let m = member(common::client(&addr).await, &group);
        let (m2, seen, topic) = (m.clone(), seen.clone(), topic.clone());
        tasks.push(tokio::spawn(async move {
            m2.consume(&[&topic], Recorder { member: i, seen }).await
        }));
        members.push(m);
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        {
            let seen = seen.lock().unwrap();
            let generations: BTreeSet<i32> = seen.claims.values().map(|(g, _)| *g).collect();
            if complete(&seen) && seen.claims.len() == 3 && generations.len() == 1 {
                // One generation: the three claim sets are disjoint and cover the topic.
                let mut all: Vec<i32> = seen
                    .claims
                    .values()
                    .flat_map(|(_, c)| c.iter().map(|tp| tp.partition))
                    .collect();
                all.sort();
                if all == (0..PARTITIONS).collect::<Vec<_>>() {
                    break;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group did not settle and finish in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for m in &members {
        m.close().await.unwrap();
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("consume returns after close")
            .unwrap()
            .unwrap();
    }
    let offsets = committed(&client, &group, &topic).await;
    for p in 0..PARTITIONS {
        assert_eq!(
            offsets.get(&p),
            Some(&PER_PARTITION),
            "partition {p} committed to its end: {offsets:?}"
        );
    }
}

async fn produce_more(client: &Client, topic: &str, from: i64, to: i64) {
    common::produce_values(client, topic, PARTITIONS, |_| from..to).await;
}

/// Waits until the members in `members` hold claims of one generation covering every
/// partition disjointly, and all `per_partition` offsets were seen.
async fn settled(seen: &Arc<Mutex<Seen>>, members: &[usize], per_partition: i64) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        {
            let seen = seen.lock().unwrap();
            let claims: Vec<&(i32, Vec<TopicPartition>)> =
                members.iter().filter_map(|m| seen.claims.get(m)).collect();
            let generations: BTreeSet<i32> = claims.iter().map(|(g, _)| *g).collect();
            let mut all: Vec<i32> = claims
                .iter()
                .flat_map(|(_, c)| c.iter().map(|tp| tp.partition))
                .collect();
            all.sort();
            let done = (0..PARTITIONS).all(|p| {
                seen.offsets
                    .get(&p)
                    .is_some_and(|o| o.len() as i64 >= per_partition)
            });
            if claims.len() == members.len()
                && generations.len() == 1
                && all == (0..PARTITIONS).collect::<Vec<_>>()
                && done
            {
                return *generations.iter().next().unwrap();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {members:?} did not settle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_rebalance_and_nothing_is_lost() {
    let addr = real_broker!();
    let (client, topic, group) = filled_group_topic(&addr, "group-churn").await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = |i: usize| {
        let (seen, topic, group, addr) = (seen.clone(), topic.clone(), group.clone(), addr.clone());
        async move {
            let m = member(common::client(&addr).await, &group);
            let runner = m.clone();
            let task = tokio::spawn(async move {
                runner
                    .consume(&[&topic], Recorder { member: i, seen })
                    .await
            });
            (m, task)
        }
    };
    let (a, a_task) = start(0).await;
    let g1 = settled(&seen, &[0], PER_PARTITION).await;
    let (b, b_task) = start(1).await;
    let g2 = settled(&seen, &[0, 1], PER_PARTITION).await;
    assert!(g2 > g1, "a join rebalances");
    b.close().await.unwrap();
    b_task.await.unwrap().unwrap();
    seen.lock().unwrap().claims.remove(&1);
    produce_more(&client, &topic, PER_PARTITION, PER_PARTITION + 100).await;
    let g3 = settled(&seen, &[0], PER_PARTITION + 100).await;
    assert!(g3 > g2, "a leave rebalances");
    a.close().await.unwrap();
    a_task.await.unwrap().unwrap();
    let offsets = committed(&client, &group, &topic).await;
    for p in 0..PARTITIONS {
        assert_eq!(
            offsets.get(&p),
            Some(&(PER_PARTITION + 100)),
            "partition {p}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.offsets[&p].len() as i64,
            PER_PARTITION + 100,
            "every offset of {p} seen"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_is_replaced_after_the_session_timeout() {
    let addr = real_broker!();
    let (client, topic, group) = filled_group_topic(&addr, "group-crash").await;
    let seen = Arc::new(Mutex::new(Seen::default()));

    let a = member(common::client(&addr).await, &group);
    let a_task = {
        let (a, seen, topic) = (a.clone(), seen.clone(), topic.clone());
        tokio::spawn(async move { a.consume(&[&topic], Recorder { member: 0, seen }).await })
    };
    let b_client = common::client(&addr).await;
    let b = member(b_client.clone(), &group);
    let b_task = {
        let (b, seen, topic) = (b.clone(), seen.clone(), topic.clone());
        tokio::spawn(async move { b.consume(&[&topic], Recorder { member: 1, seen }).await })
    };
    settled(&seen, &[0, 1], PER_PARTITION).await;
    // B dies: no LeaveGroup, no final commit, its connections gone.
    b_task.abort();
    b_client.close();
    seen.lock().unwrap().claims.remove(&1);
    produce_more(&client, &topic, PER_PARTITION, PER_PARTITION + 50).await;
    // A alone owns everything once the coordinator evicted B (after ~3 s).
    settled(&seen, &[0], PER_PARTITION + 50).await;
    a.close().await.unwrap();
    a_task.await.unwrap().unwrap();
    let offsets = committed(&client, &group, &topic).await;
    for p in 0..PARTITIONS {
        assert_eq!(
            offsets.get(&p),
            Some(&(PER_PARTITION + 50)),
            "partition {p}"
        );
    }
}

/// One Josefine member and one member of another client in one group: each decodes the
/// other's plan, every partition is consumed by exactly one of them, nothing is missed.
/// The other client in a mixed group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// librdkafka through confluent-kafka (tests/interop/rdkafka.py).
    Rdkafka,
    /// The Java client (tests/interop/JavaPeer.java); Kafka only, the reference pair.
    Java,
}

/// Runs a peer with its arguments and returns its stdout.
type PeerRun = Box<dyn FnOnce(&[&str]) -> String + Send>;

/// The peer's group member: `args` after the mode, run to its end on a blocking
/// thread; its stdout in rdkafka.py's group format. `None` when the peer is skipped.
fn peer_member(peer: Peer, args: Vec<String>) -> Option<tokio::task::JoinHandle<String>> {
    let run: PeerRun = match peer {
        Peer::Rdkafka => {
            let python = common::python()?;
            Box::new(move |args| common::rdkafka(&python, args, ""))
        }
        Peer::Java => {
            if !common::is_kafka() {
                eprintln!("skipped: the Java client interop runs against Kafka");
                return None;
            }
            let classpath = common::java_peer()?;
            Box::new(move |args| common::java(&classpath, args))
        }
    };
    Some(tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    }))
}

async fn mixed_group(assignor: josefine::AssignorKind, peer_first: bool) {
    mixed_group_with(Peer::Rdkafka, assignor, peer_first).await;
}

async fn mixed_group_with(peer: Peer, assignor: josefine::AssignorKind, peer_first: bool) {
    let addr = real_broker!();
    let (client, topic, group) = filled_group_topic(&addr, "group-mixed").await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let history = Arc::new(Mutex::new(Vec::<Vec<i32>>::new()));

    let args: Vec<String> = [
        "group",
        "--bootstrap",
        &addr,
        "--topic",
        &topic,
        "--group",
        &group,
        "--assignor",
        assignor.name(),
    ]
    .map(String::from)
    .to_vec();
    let start_peer = || peer_member(peer, args.clone());
    let peer_member = if peer_first {
        match start_peer() {
            Some(member) => Some(member),
            None => return,
        }
    } else {
        None
    };
    if peer_first {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let ours = ConsumerGroup::builder(common::client(&addr).await, &group)
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_millis(500))
        .auto_commit_interval(Duration::from_millis(200))
        .auto_offset_reset(OffsetReset::Earliest)
        .assignors([assignor])
        .build()
        .unwrap();
    let ours_task = {
        let (ours, seen, topic, history) =
            (ours.clone(), seen.clone(), topic.clone(), history.clone());
        tokio::spawn(async move {
            ours.consume(
                &[&topic],
                Tracker {
                    inner: Recorder { member: 0, seen },
                    running: Mutex::new(BTreeSet::new()),
                    history,
                    shared: AtomicBool::new(false),
                },
            )
            .await
        })
    };
    let peer_member = match peer_member {
        Some(r) => r,
        None => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match start_peer() {
                Some(member) => member,
                None => {
                    ours.close().await.unwrap();
                    ours_task.await.unwrap().unwrap();
                    return;
                }
            }
        }
    };
    let output = peer_member.await.unwrap();
    // The peer left: wait until we own every partition, then stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !history
        .lock()
        .unwrap()
        .iter()
        .any(|h| h.len() == PARTITIONS as usize)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rebalance after {peer:?} left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ours.close().await.unwrap();
    ours_task.await.unwrap().unwrap();

    // The peer's assignment as it changed: added and revoked partitions.
    let mut theirs = BTreeSet::new();
    let mut theirs_last: Vec<i32> = Vec::new();
    let mut theirs_records = 0;
    let list = |rest: &str| -> Vec<i32> {
        rest.trim_end_matches("]}")
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    };
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix(r#"{"assigned": ["#) {
            theirs.extend(list(rest));
            theirs_last = theirs.iter().copied().collect();
        } else if let Some(rest) = line.strip_prefix(r#"{"revoked": ["#) {
            for p in list(rest) {
                theirs.remove(&p);
            }
            // The revocation on close leaves nothing; keep the last real share.
            if !theirs.is_empty() {
                theirs_last = theirs.iter().copied().collect();
            }
        } else {
            // {"partition": p, "offset": o}
            let numbers: Vec<i64> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let mut seen = seen.lock().unwrap();
            seen.offsets
                .entry(numbers[0] as i32)
                .or_default()
                .insert(numbers[1]);
            theirs_records += 1;
        }
    }
    assert!(!theirs_last.is_empty(), "{peer:?} got partitions: {output}");
    assert!(theirs_records > 0, "{peer:?} consumed records");
    // Between the two members, every offset was processed.
    assert!(
        complete(&seen.lock().unwrap()),
        "an offset nobody processed"
    );
    // Some generation of ours complements the peer's last assignment exactly.
    let history = history.lock().unwrap().clone();
    let complement = history.iter().any(|ours| {
        let mut all: Vec<i32> = ours.iter().chain(&theirs_last).copied().collect();
        all.sort();
        all == (0..PARTITIONS).collect::<Vec<_>>()
    });
    assert!(
        complement,
        "{assignor:?}: ours {history:?} vs {peer:?} {theirs_last:?}"
    );
    if assignor == josefine::AssignorKind::CooperativeSticky {
        // Cooperative: our claims never all stopped between the first and the
        // close; the eager protocol would stop every claim at each rebalance.
        let first = history.iter().position(|h| !h.is_empty()).unwrap();
        let last = history.iter().rposition(|h| !h.is_empty()).unwrap();
        assert!(
            history[first..=last].iter().all(|h| !h.is_empty()),
            "a cooperative rebalance stopped every claim: {history:?}"
        );
    }
    let offsets = committed(&client, &group, &topic).await;
    for p in 0..PARTITIONS {
        assert_eq!(
            offsets.get(&p),
            Some(&PER_PARTITION),
            "partition {p}: {offsets:?}"
        );
    }
}

/// A recorder that also keeps every set of partitions it consumed at once: a
/// snapshot after each claim starts or ends (eager sessions and cooperative
/// increments alike).
///
/// It processes nothing until the group was first shared: a session with fewer than
/// all partitions (eager) or a claim revoked (cooperative). Without that, the first
/// member to join could read and commit every record before librdkafka joined (Kafka
/// completes a join at once), leaving librdkafka nothing to read.
struct Tracker {
    inner: Recorder,
    running: Mutex<BTreeSet<i32>>,
    history: Arc<Mutex<Vec<Vec<i32>>>>,
    shared: AtomicBool,
}

impl Tracker {
    fn change(&self, partition: i32, running: bool) {
        let mut set = self.running.lock().unwrap();
        if running {
            set.insert(partition);
        } else {
            set.remove(&partition);
        }
        self.history
            .lock()
            .unwrap()
            .push(set.iter().copied().collect());
    }
}

impl GroupHandler for Tracker {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        if session.claims().len() < PARTITIONS as usize {
            self.shared.store(true, Ordering::SeqCst);
        }
        self.inner.setup(session).await
    }

    async fn consume_claim(&self, session: &Session, claim: Claim) -> josefine::Result<()> {
        let partition = claim.partition();
        self.change(partition, true);
        while !self.shared.load(Ordering::SeqCst) {
            if claim.is_revoked() {
                self.shared.store(true, Ordering::SeqCst);
            }
            if claim.is_revoked() || session.is_cancelled() {
                self.change(partition, false);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let result = self.inner.consume_claim(session, claim).await;
        self.change(partition, false);
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_group_range_librdkafka_leads() {
    mixed_group(josefine::AssignorKind::Range, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_group_range_josefine_leads() {
    mixed_group(josefine::AssignorKind::Range, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_group_roundrobin_librdkafka_leads() {
    mixed_group(josefine::AssignorKind::RoundRobin, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_group_roundrobin_josefine_leads() {
    mixed_group(josefine::AssignorKind::RoundRobin, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_group_cooperative_sticky_librdkafka_leads() {
    mixed_group(josefine::AssignorKind::CooperativeSticky, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_group_cooperative_sticky_josefine_leads() {
    mixed_group(josefine::AssignorKind::CooperativeSticky, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_group_range_java_leads() {
    mixed_group_with(Peer::Java, josefine::AssignorKind::Range, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_group_range_josefine_leads() {
    mixed_group_with(Peer::Java, josefine::AssignorKind::Range, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_group_roundrobin_java_leads() {
    mixed_group_with(Peer::Java, josefine::AssignorKind::RoundRobin, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_group_roundrobin_josefine_leads() {
    mixed_group_with(Peer::Java, josefine::AssignorKind::RoundRobin, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_group_cooperative_sticky_java_leads() {
    mixed_group_with(Peer::Java, josefine::AssignorKind::CooperativeSticky, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_group_cooperative_sticky_josefine_leads() {
    mixed_group_with(Peer::Java, josefine::AssignorKind::CooperativeSticky, false).await;
}

/// Two members read the group as streams under the cooperative protocol, the
/// second joining while the first reads: every record reaches one of them and
/// the commits end at the end of every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_streams_share_the_records_and_commit_them() {
    use futures::StreamExt;
    let addr = real_broker!();
    let (client, topic, group) = filled_group_topic(&addr, "group-stream").await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut members = Vec::new();
    for _ in 0..2 {
        let m = ConsumerGroup::builder(common::client(&addr).await, &group)
            .session_timeout(Duration::from_secs(3))
            .heartbeat_interval(Duration::from_millis(300))
            .auto_commit_interval(Duration::from_millis(200))
            .auto_offset_reset(OffsetReset::Earliest)
            .assignor(josefine::AssignorKind::CooperativeSticky)
            .build()
            .unwrap();
        let mut stream = m.stream(&[&topic]).unwrap();
        let seen = seen.clone();
        let reader = tokio::spawn(async move {
            while let Some(record) = stream.next().await {
                let record = record.unwrap();
                seen.lock()
                    .unwrap()
                    .offsets
                    .entry(record.partition())
                    .or_default()
                    .insert(record.offset());
                record.mark();
            }
            stream
        });
        members.push((m, reader));
        // The second member joins while the first is reading.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !complete(&seen.lock().unwrap()) {
        assert!(tokio::time::Instant::now() < deadline, "records missing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (m, _) in &members {
        m.close().await.unwrap();
    }
    for (_, reader) in members {
        reader.await.unwrap().close().await.unwrap();
    }
    let offsets = committed(&client, &group, &topic).await;
    for p in 0..PARTITIONS {
        assert_eq!(
            offsets.get(&p),
            Some(&PER_PARTITION),
            "partition {p}: {offsets:?}"
        );
    }
}
