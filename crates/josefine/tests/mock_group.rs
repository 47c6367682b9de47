//! Consumer groups against the mock cluster (three brokers) with faults: the
//! coordinator moving while the group is stable and while it rebalances, the
//! coordinator's broker crashing and coming back, REBALANCE_IN_PROGRESS on
//! OffsetCommit and SyncGroup, heartbeats answered UNKNOWN_MEMBER_ID or
//! ILLEGAL_GENERATION or answered slowly, a fenced static member, a subscribed
//! topic appearing, a coordinator loading its groups, Tansu's join quirks,
//! committed offsets that cannot be read for a while, a close while the
//! coordinator is being looked up, a handler slow to give its claims back,
//! a subscribed topic gaining partitions, cooperative rebalancing (KIP-429), a
//! handler stalled past `max.poll.interval.ms`, the stream API and the errors
//! channel.
//!
//! Every test checks at-least-once delivery: each record appended (straight into
//! the mock's log, one `BatchBuilder` batch per ten records) is processed by some
//! member, and after `close` the group's committed offset of every partition is
//! the partition's end. Some tests check more where the protocol promises more
//! (no record processed twice when no commit was lost; a session kept through a
//! coordinator move).
//!
//! Timings are short: 1.5 s sessions, 100 ms heartbeats and auto-commits, 200 ms
//! partition checks, 100 ms fetch long-polls (group requests have a connection of
//! their own, so they never wait behind one). Every wait is bounded by
//! `tokio::time::timeout` so a bug fails a test instead of hanging it, a wait
//! gives up at once when a member's `consume` fails, and a failed wait prints
//! what the members did.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use josefine::protocol::records::BatchBuilder;
use josefine::{AssignorKind, ConsumerGroupBuilder};
use josefine::{
    Claim, Client, ConsumerGroup, GroupHandler, KafkaCode, OffsetReset, Session, TopicPartition,
};
use josefine_mock::{
    Action, ApiKey, GroupState, Intercept, InterceptHandle, MockCluster, ResponseError,
};
use tokio::task::JoinHandle;

const TOPIC: &str = "events";
const PARTITIONS: i32 = 6;
/// Records per partition appended before the members start.
const FIRST: i64 = 30;
/// Records per batch.
const BATCH: i64 = 10;
/// The record at offset `o` has the timestamp `TS0 + o`.
const TS0: i64 = 1_700_000_000_000;
const SESSION: Duration = Duration::from_millis(1500);
/// How long the group may take to reach a state it should reach; long next to
/// what it needs (a second or two), short enough to fail a broken test fast.
const PATIENCE: Duration = Duration::from_secs(10);

// ---- the cluster and its records ----

async fn cluster() -> MockCluster {
    cluster_with(|b| b).await
}

async fn cluster_with(
    configure: impl FnOnce(josefine_mock::MockClusterBuilder) -> josefine_mock::MockClusterBuilder,
) -> MockCluster {
    common::trace();
    configure(MockCluster::builder().brokers(3).topic(TOPIC, PARTITIONS))
        .start()
        .await
        .unwrap()
}

/// Appends `offsets` to each of `partitions` of `topic`, ten records a batch.
fn append(cluster: &MockCluster, topic: &str, partitions: Range<i32>, offsets: Range<i64>) {
    for p in partitions {
        let mut base = offsets.start;
        while base < offsets.end {
            let end = (base + BATCH).min(offsets.end);
            let mut batch = BatchBuilder::new().base_offset(base);
            for o in base..end {
                let value = format!("{topic}-{p}-{o}");
                batch
                    .push(TS0 + o, None, Some(value.as_bytes()), &[])
                    .unwrap();
            }
            let at = cluster.append_batch(topic, p, batch.finish().unwrap());
            assert_eq!(
                at, base,
                "{topic}-{p}: the log end is not where the test thinks"
            );
            base = end;
        }
    }
}

/// Requests of `api` that all brokers received so far.
fn requests(cluster: &MockCluster, api: ApiKey) -> usize {
    cluster
        .brokers()
        .iter()
        .map(|b| b.requests().iter().filter(|r| r.api_key == api).count())
        .sum()
}

/// Requests of `api` that broker `node` received so far.
fn requests_at(cluster: &MockCluster, node: i32, api: ApiKey) -> usize {
    cluster
        .broker(node)
        .requests()
        .iter()
        .filter(|r| r.api_key == api)
        .count()
}

/// A broker other than `node`.
fn other_than(node: i32) -> i32 {
    node % 3 + 1
}

// ---- what the members did ----

/// One session as a member's handler saw it.
#[derive(Debug, Clone)]
struct SessionSeen {
    member: usize,
    member_id: String,
    generation: i32,
    claims: Vec<TopicPartition>,
    /// Where each claim started (committed offset or reset policy).
    starts: HashMap<TopicPartition, i64>,
    /// The offset after the highest record each claim marked in this session.
    marked: HashMap<TopicPartition, i64>,
    ended: bool,
}

impl SessionSeen {
    /// Whether this session's claims of `topic` stand at `end` or beyond: what a
    /// close commits then is `end` (records processed in an earlier session do not
    /// count, they are not this session's to commit).
    fn reached(&self, topic: &str, end: i64) -> bool {
        self.claims
            .iter()
            .filter(|tp| &*tp.topic == topic)
            .all(|tp| {
                self.starts.get(tp).is_some_and(|&o| o >= end)
                    || self.marked.get(tp).is_some_and(|&o| o >= end)
            })
    }
}

/// One claim as a member's handler saw it: under the cooperative protocol claims
/// come and go within a session.
#[derive(Debug, Clone)]
struct ClaimSeen {
    member: usize,
    tp: TopicPartition,
    ended: bool,
}

#[derive(Debug, Default)]
struct Log {
    /// Every processed offset per partition, duplicates kept.
    processed: HashMap<(String, i32), Vec<i64>>,
    sessions: Vec<SessionSeen>,
    claims: Vec<ClaimSeen>,
    errors: Vec<String>,
    /// Members whose `consume` returned an error, and the error.
    stopped: Vec<(usize, String)>,
}

type Shared = Arc<Mutex<Log>>;

impl Log {
    fn offsets(&self, topic: &str, partition: i32) -> &[i64] {
        self.processed
            .get(&(topic.to_string(), partition))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether every offset of `range` of every partition was processed at least
    /// `times` times.
    fn covered(&self, topic: &str, partitions: i32, range: Range<i64>, times: usize) -> bool {
        (0..partitions).all(|p| {
            let mut counts: HashMap<i64, usize> = HashMap::new();
            for &o in self.offsets(topic, p) {
                *counts.entry(o).or_default() += 1;
            }
            range
                .clone()
                .all(|o| counts.get(&o).is_some_and(|&n| n >= times))
        })
    }

    /// The latest session of `member`.
    fn latest(&self, member: usize) -> Option<&SessionSeen> {
        self.sessions.iter().rev().find(|s| s.member == member)
    }

    /// The generation in which `members` all run a session, their claims
    /// disjoint and covering every partition of `layout`; `None` otherwise.
    fn settled(&self, members: &[usize], layout: &[(&str, i32)]) -> Option<i32> {
        let latest: Vec<&SessionSeen> = members.iter().filter_map(|m| self.latest(*m)).collect();
        if latest.len() != members.len() || latest.iter().any(|s| s.ended) {
            return None;
        }
        let generations: BTreeSet<i32> = latest.iter().map(|s| s.generation).collect();
        if generations.len() != 1 {
            return None;
        }
        let mut claimed: Vec<TopicPartition> = latest
            .iter()
            .flat_map(|s| s.claims.iter().cloned())
            .collect();
        let total = claimed.len();
        claimed.sort_by(|a, b| (&*a.topic, a.partition).cmp(&(&*b.topic, b.partition)));
        claimed.dedup();
        let mut wanted: Vec<TopicPartition> = layout
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(*t, p)))
            .collect();
        wanted.sort_by(|a, b| (&*a.topic, a.partition).cmp(&(&*b.topic, b.partition)));
        if total == claimed.len() && claimed == wanted {
            generations.into_iter().next()
        } else {
            None
        }
    }

    /// The claims whose handler runs now, by member; `Some` only if they are
    /// disjoint and cover the `partitions` of `topic`, and every member of
    /// `members` has some.
    fn running_claims(
        &self,
        members: &[usize],
        topic: &str,
        partitions: i32,
    ) -> Option<HashMap<usize, BTreeSet<i32>>> {
        let mut by_member: HashMap<usize, BTreeSet<i32>> = HashMap::new();
        let mut all = Vec::new();
        for c in self
            .claims
            .iter()
            .filter(|c| !c.ended && &*c.tp.topic == topic)
        {
            by_member
                .entry(c.member)
                .or_default()
                .insert(c.tp.partition);
            all.push(c.tp.partition);
        }
        all.sort();
        let complete = all == (0..partitions).collect::<Vec<_>>()
            && members.iter().all(|m| by_member.contains_key(m))
            && by_member.keys().all(|m| members.contains(m));
        complete.then_some(by_member)
    }

    /// What the members did, for a failed wait's message.
    fn summary(&self) -> String {
        let mut out = String::new();
        for c in &self.claims {
            out.push_str(&format!(
                "\n  member {} claim {} ended {}",
                c.member, c.tp, c.ended
            ));
        }
        for s in &self.sessions {
            let mut claims: Vec<String> = s
                .claims
                .iter()
                .map(|tp| {
                    format!(
                        "{}-{}@{}",
                        tp.topic,
                        tp.partition,
                        s.starts.get(tp).unwrap_or(&-1)
                    )
                })
                .collect();
            claims.sort();
            out.push_str(&format!(
                "\n  member {} gen {} id {} ended {}: {}",
                s.member,
                s.generation,
                s.member_id,
                s.ended,
                claims.join(" ")
            ));
        }
        let mut keys: Vec<&(String, i32)> = self.processed.keys().collect();
        keys.sort();
        for key in keys {
            let offsets = &self.processed[key];
            let distinct: HashSet<i64> = offsets.iter().copied().collect();
            out.push_str(&format!(
                "\n  {}-{}: {} processed, {} distinct, max {:?}",
                key.0,
                key.1,
                offsets.len(),
                distinct.len(),
                distinct.iter().max()
            ));
        }
        for e in &self.errors {
            out.push_str(&format!("\n  error: {e}"));
        }
        for (member, e) in &self.stopped {
            out.push_str(&format!("\n  member {member}'s consume failed: {e}"));
        }
        out
    }
}

/// Records every session and every processed record, then marks it: a record is
/// in the log before its offset can be committed, which is what at-least-once
/// asks of a handler.
struct Recorder {
    member: usize,
    log: Shared,
    /// How long a claim takes to return once its session ends, in ms: a handler
    /// finishing the work in hand before it gives the partition back.
    linger_ms: Arc<AtomicU64>,
    /// How long the claim of partition 0 blocks its thread (never yielding) once
    /// its session ends, in ms: a handler that cannot be cancelled at once.
    block_ms: Arc<AtomicU64>,
    /// While set, the handler holds the record it just got (a stuck handler).
    stall: Arc<AtomicBool>,
}

impl GroupHandler for Recorder {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        self.log.lock().unwrap().sessions.push(SessionSeen {
            member: self.member,
            member_id: session.member_id().to_string(),
            generation: session.generation(),
            claims: session.claims().to_vec(),
            starts: HashMap::new(),
            marked: HashMap::new(),
            ended: false,
        });
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        let tp = TopicPartition::new(claim.topic(), claim.partition());
        let claim_index = {
            let mut log = self.log.lock().unwrap();
            let member = self.member;
            if let Some(s) = log.sessions.iter_mut().rev().find(|s| s.member == member) {
                s.starts.insert(tp.clone(), claim.initial_offset());
            }
            log.claims.push(ClaimSeen {
                member,
                tp: tp.clone(),
                ended: false,
            });
            log.claims.len() - 1
        };
        let result = self.process(session, &mut claim, &tp).await;
        self.log.lock().unwrap().claims[claim_index].ended = true;
        result
    }

    async fn cleanup(&self, session: &Session) -> josefine::Result<()> {
        let mut log = self.log.lock().unwrap();
        let member = self.member;
        if let Some(s) = log
            .sessions
            .iter_mut()
            .rev()
            .find(|s| s.member == member && s.generation == session.generation())
        {
            s.ended = true;
        }
        Ok(())
    }
}

impl Recorder {
    async fn process(
        &self,
        session: &Session,
        claim: &mut Claim,
        tp: &TopicPartition,
    ) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            let record = match record {
                Ok(record) => record,
                Err(err) => {
                    self.log
                        .lock()
                        .unwrap()
                        .errors
                        .push(format!("member {} {tp}: {err}", self.member));
                    return Err(err);
                }
            };
            while self.stall.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            {
                let mut log = self.log.lock().unwrap();
                log.processed
                    .entry((record.topic().to_string(), record.partition()))
                    .or_default()
                    .push(record.offset());
                let (member, generation) = (self.member, session.generation());
                if let Some(s) = log
                    .sessions
                    .iter_mut()
                    .rev()
                    .find(|s| s.member == member && s.generation == generation)
                {
                    s.marked.insert(tp.clone(), record.offset() + 1);
                }
            }
            session.mark(&record);
        }
        let linger = self.linger_ms.load(Ordering::Acquire);
        if linger > 0 {
            tokio::time::sleep(Duration::from_millis(linger)).await;
        }
        let block = self.block_ms.load(Ordering::Acquire);
        if block > 0 && tp.partition == 0 {
            std::thread::sleep(Duration::from_millis(block));
        }
        Ok(())
    }
}

// ---- members ----

struct Member {
    group: ConsumerGroup,
    task: JoinHandle<josefine::Result<()>>,
    linger_ms: Arc<AtomicU64>,
    block_ms: Arc<AtomicU64>,
    stall: Arc<AtomicBool>,
}

/// A client whose requests carry `client_id`, so intercepts can single it out.
async fn client(cluster: &MockCluster, client_id: &str) -> Client {
    Client::builder()
        .bootstrap([cluster.bootstrap()])
        .client_id(client_id)
        .request_timeout(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .unwrap()
}

/// The test's member settings: everything short, earliest for partitions
/// without a commit.
fn settings(client: Client, group: &str) -> ConsumerGroupBuilder {
    ConsumerGroup::builder(client, group)
        .session_timeout(SESSION)
        .heartbeat_interval(Duration::from_millis(100))
        .rebalance_timeout(Duration::from_secs(3))
        .auto_commit_interval(Duration::from_millis(100))
        .partition_check_interval(Duration::from_millis(200))
        .auto_offset_reset(OffsetReset::Earliest)
        .consumer(|c| c.fetch_max_wait(Duration::from_millis(100)))
}

/// Starts member `index` (client id `m{index}`) consuming `topics`.
async fn start(
    cluster: &MockCluster,
    group: &str,
    index: usize,
    log: &Shared,
    topics: &[&str],
    configure: impl FnOnce(ConsumerGroupBuilder) -> ConsumerGroupBuilder,
) -> Member {
    let client = client(cluster, &format!("m{index}")).await;
    start_on(client, group, index, log, topics, configure)
}

/// [`start`] on the test's own client.
fn start_on(
    client: Client,
    group: &str,
    index: usize,
    log: &Shared,
    topics: &[&str],
    configure: impl FnOnce(ConsumerGroupBuilder) -> ConsumerGroupBuilder,
) -> Member {
    let group = configure(settings(client, group)).build().unwrap();
    let linger_ms = Arc::new(AtomicU64::new(0));
    let block_ms = Arc::new(AtomicU64::new(0));
    let stall = Arc::new(AtomicBool::new(false));
    let handler = Recorder {
        member: index,
        log: log.clone(),
        linger_ms: linger_ms.clone(),
        block_ms: block_ms.clone(),
        stall: stall.clone(),
    };
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let runner = group.clone();
    let failures = log.clone();
    let task = tokio::spawn(async move {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let result = runner.consume(&topics, handler).await;
        if let Err(err) = &result {
            // A member that stopped fails the waits at once, with its error.
            failures
                .lock()
                .unwrap()
                .stopped
                .push((index, err.to_string()));
        }
        result
    });
    Member {
        group,
        task,
        linger_ms,
        block_ms,
        stall,
    }
}

async fn start_plain(cluster: &MockCluster, group: &str, index: usize, log: &Shared) -> Member {
    start(cluster, group, index, log, &[TOPIC], |b| b).await
}

/// Members 0 and 1 forming the group together: the initial rebalance waits
/// 300 ms for both (Kafka's `group.initial.rebalance.delay.ms`), so the fault
/// under test meets a group in its first generation rather than mid-handover.
async fn pair(cluster: &MockCluster, group: &str, log: &Shared, topics: &[&str]) -> Vec<Member> {
    cluster.set_group_initial_rebalance_delay(Duration::from_millis(300));
    vec![
        start(cluster, group, 0, log, topics, |b| b).await,
        start(cluster, group, 1, log, topics, |b| b).await,
    ]
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
    }
}

/// Polls `condition` until it holds, [`within`] the patience.
async fn until(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Polls `condition` until it holds (the mock and the handler have nothing to
/// wait on); fails with what the members did on timeout, or as soon as a
/// member's `consume` failed.
async fn wait_for(log: &Shared, what: &str, mut condition: impl FnMut(&Log) -> bool) {
    let polled = tokio::time::timeout(PATIENCE, async {
        loop {
            {
                let log = log.lock().unwrap();
                if condition(&log) {
                    return Ok(());
                }
                if !log.stopped.is_empty() {
                    return Err(());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if polled != Ok(Ok(())) {
        panic!(
            "gave up waiting for {what}; the members did:{}",
            log.lock().unwrap().summary()
        );
    }
}

/// Waits until `members` hold one generation's claims covering the topic, every
/// record below `end` was processed, and each claim of that generation stands at
/// `end` (so closing now commits `end`); returns the generation.
async fn settle(log: &Shared, members: &[usize], end: i64) -> i32 {
    wait_for(
        log,
        &format!("members {members:?} to settle and process every record below {end}"),
        |l| {
            l.settled(members, &[(TOPIC, PARTITIONS)]).is_some()
                && l.covered(TOPIC, PARTITIONS, 0..end, 1)
                && members
                    .iter()
                    .all(|m| l.latest(*m).is_some_and(|s| s.reached(TOPIC, end)))
        },
    )
    .await;
    log.lock()
        .unwrap()
        .settled(members, &[(TOPIC, PARTITIONS)])
        .expect("settled a moment ago")
}

/// Closes every member and checks each `consume` ends with `Ok`.
async fn close_all(members: Vec<Member>) {
    for m in &members {
        m.group.close().await.unwrap();
    }
    for (i, m) in members.into_iter().enumerate() {
        within(
            &format!("member {i}'s consume to return after close"),
            m.task,
        )
        .await
        .expect("consume does not panic")
        .unwrap_or_else(|e| panic!("member {i}'s consume failed: {e}"));
    }
}

/// At-least-once, the committing half: every partition's commit is its end.
fn assert_committed(cluster: &MockCluster, group: &str, topic: &str, partitions: i32, end: i64) {
    let committed: Vec<Option<i64>> = (0..partitions)
        .map(|p| cluster.committed(group, topic, p))
        .collect();
    assert!(
        committed.iter().all(|c| *c == Some(end)),
        "{topic}: every partition committed at its end {end}, got {committed:?}"
    );
}

/// At-least-once, the processing half.
fn assert_processed(log: &Shared, topic: &str, partitions: i32, end: i64) {
    let log = log.lock().unwrap();
    assert!(
        log.covered(topic, partitions, 0..end, 1),
        "{topic}: a record below {end} nobody processed:{}",
        log.summary()
    );
}

/// No record processed twice: what a run without a lost commit must give.
fn assert_processed_once(log: &Shared, topic: &str, partitions: i32) {
    let log = log.lock().unwrap();
    for p in 0..partitions {
        let offsets = log.offsets(topic, p);
        let distinct: HashSet<i64> = offsets.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            offsets.len(),
            "{topic}-{p}: records processed twice though no commit was lost:{}",
            log.summary()
        );
    }
}

fn new_log() -> Shared {
    Arc::new(Mutex::new(Log::default()))
}

// ---- 1. sharing the partitions ----

/// `n` members split six partitions, disjointly, in one generation; each record
/// is processed exactly once (every rebalance commits before it gives a
/// partition away); close sends one LeaveGroup per member and commits to the end.
async fn members_share_the_partitions(n: usize) {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "share";
    let log = new_log();
    let mut members = Vec::new();
    for i in 0..n {
        members.push(start_plain(&cluster, group, i, &log).await);
    }
    let all: Vec<usize> = (0..n).collect();
    settle(&log, &all, FIRST).await;
    {
        let log = log.lock().unwrap();
        for i in &all {
            assert_eq!(
                log.latest(*i).unwrap().claims.len(),
                PARTITIONS as usize / n,
                "range splits six partitions evenly:{}",
                log.summary()
            );
        }
    }
    // Records that arrive while the group is stable go to their owners.
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..FIRST + 10);
    settle(&log, &all, FIRST + 10).await;
    close_all(members).await;

    assert_eq!(
        requests(&cluster, ApiKey::LeaveGroup),
        n,
        "each closing member leaves once"
    );
    assert_eq!(cluster.group_state(group), GroupState::Empty);
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST + 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_partitions_and_commit_to_the_end() {
    members_share_the_partitions(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_split_the_partitions_and_commit_to_the_end() {
    members_share_the_partitions(3).await;
}

/// Holds forever, unanswered, every JoinGroup from client `client_id` after its
/// first `passed` (at whichever broker coordinates the group): one rule per broker.
fn hold_joins(cluster: &MockCluster, client_id: &'static str, passed: u64) -> Vec<InterceptHandle> {
    let joins = Arc::new(AtomicU64::new(0));
    cluster
        .brokers()
        .iter()
        .map(|broker| {
            let joins = joins.clone();
            broker.intercept(
                Intercept::api(ApiKey::JoinGroup).when(move |r| {
                    r.client_id.as_deref() == Some(client_id)
                        && joins.fetch_add(1, Ordering::SeqCst) >= passed
                }),
                Action::Stall,
            )
        })
        .collect()
}

/// The JoinGroups `hold_joins` holds so far.
fn holds(held: &[InterceptHandle]) -> usize {
    held.iter().map(|h| h.hits()).sum()
}

/// A member closed while the coordinator holds its JoinGroup (Kafka holds one until
/// the group's members have joined, up to the rebalance timeout) gives the join up
/// and leaves at once. The join went on a connection of its own: a held join keeps
/// anything behind it on its connection unanswered. Here m1's join with its member
/// id is never answered; its close must not wait for it (20 s rebalance timeout)
/// nor for a LeaveGroup stuck behind it (10 s request timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_closed_during_its_join_leaves_at_once() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "held-join";
    let log = new_log();
    let m0 = start_plain(&cluster, group, 0, &log).await;
    settle(&log, &[0], FIRST).await;

    // m1's first JoinGroup gets its member id (MEMBER_ID_REQUIRED); the second,
    // with it, is held forever.
    let held = hold_joins(&cluster, "m1", 1);
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .client_id("m1")
        .request_timeout(Duration::from_secs(10))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    let m1 = start_on(client, group, 1, &log, &[TOPIC], |b| {
        b.rebalance_timeout(Duration::from_secs(20))
            .close_timeout(Duration::from_secs(2))
    });
    until("m1's join to be held", || holds(&held) == 1).await;
    let leaves = requests(&cluster, ApiKey::LeaveGroup);
    m1.group
        .close()
        .await
        .expect("m1 closes within its 2 s close timeout");
    within("m1's consume to return", m1.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        requests(&cluster, ApiKey::LeaveGroup),
        leaves + 1,
        "m1 left"
    );

    // m0 was never disturbed and commits everything.
    close_all(vec![m0]).await;
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

/// Closing the client ends a member whose JoinGroup the coordinator holds: the
/// join's connection of its own closes with the client's other connections, so
/// the member does not wait out the rebalance timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_client_ends_a_held_join() {
    let cluster = cluster().await;
    let group = "held-join-client-closed";
    let log = new_log();
    let held = hold_joins(&cluster, "m0", 0);
    let client = client(&cluster, "m0").await;
    let m0 = start_on(client.clone(), group, 0, &log, &[TOPIC], |b| {
        b.rebalance_timeout(Duration::from_secs(20))
    });
    until("m0's join to be held", || holds(&held) >= 1).await;
    client.close();
    let ended = within("m0's consume to end once its client is closed", m0.task)
        .await
        .unwrap();
    assert!(
        ended.is_err(),
        "a member whose client closed fails: {ended:?}"
    );
}

/// A cooperative member's session runs on while it rejoins. Closed while the
/// coordinator holds that JoinGroup, it commits what its handler processed and
/// leaves at once, without waiting for the rebalance: the join goes on a
/// connection of the member's own, so the commit and the LeaveGroup do not queue
/// behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_member_closed_during_its_join_commits_and_leaves_at_once() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "held-cooperative-join";
    let log = new_log();
    // m0's first two JoinGroups make it a member; the third, the rejoin m1's
    // arrival asks for, is held forever.
    let held = hold_joins(&cluster, "m0", 2);
    // Only the close commits: no periodic commit could stand in for it.
    let m0 = start(&cluster, group, 0, &log, &[TOPIC], |b| {
        cooperative(b)
            .rebalance_timeout(Duration::from_secs(20))
            .auto_commit_interval(Duration::from_secs(3600))
            .close_timeout(Duration::from_secs(2))
    })
    .await;
    settle(&log, &[0], FIRST).await;
    let m1 = start(&cluster, group, 1, &log, &[TOPIC], cooperative).await;
    until("m0's rejoin to be held", || holds(&held) == 1).await;
    let leaves = requests(&cluster, ApiKey::LeaveGroup);
    m0.group
        .close()
        .await
        .expect("m0 closes within its 2 s close timeout");
    within("m0's consume to return", m0.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        requests(&cluster, ApiKey::LeaveGroup),
        leaves + 1,
        "m0 left"
    );

    // m1 gets every partition once m0 has left, and starts where m0 committed.
    wait_for(&log, "m1 to claim every partition", |l| {
        l.settled(&[1], &[(TOPIC, PARTITIONS)]).is_some()
    })
    .await;
    close_all(vec![m1]).await;
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

/// Two groups on one client: one member's JoinGroup, held by the coordinator,
/// does not hold up the other group's heartbeats (a broker answers one
/// connection's requests in order; the join goes on a connection of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_join_does_not_hold_up_another_groups_heartbeats() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let log = new_log();
    // The steady group's member makes two JoinGroups; the joining group's
    // member's first (MEMBER_ID_REQUIRED) passes, its second is held forever.
    let held = hold_joins(&cluster, "shared", 3);
    let client = client(&cluster, "shared").await;
    let steady = start_on(client.clone(), "steady", 0, &log, &[TOPIC], |b| b);
    settle(&log, &[0], FIRST).await;
    let joining = start_on(client, "joining", 1, &log, &[TOPIC], |b| {
        b.rebalance_timeout(Duration::from_secs(20))
            .close_timeout(Duration::from_secs(2))
    });
    until("the joining member's join to be held", || holds(&held) == 1).await;
    // The test means something only if both groups have the same coordinator.
    let coordinator = held.iter().position(|h| h.hits() == 1).unwrap();
    let heartbeats_there = || {
        cluster.brokers()[coordinator]
            .requests()
            .iter()
            .filter(|r| r.api_key == ApiKey::Heartbeat)
            .count()
    };
    assert_eq!(
        heartbeats_there(),
        requests(&cluster, ApiKey::Heartbeat),
        "the two groups share a coordinator"
    );
    let heartbeats = heartbeats_there();
    until("five more heartbeats of the steady group", || {
        heartbeats_there() >= heartbeats + 5
    })
    .await;
    joining
        .group
        .close()
        .await
        .expect("the joining member closes within its close timeout");
    within("the joining member's consume to return", joining.task)
        .await
        .unwrap()
        .unwrap();
    close_all(vec![steady]).await;
    let sessions = log.lock().unwrap().sessions.len();
    assert_eq!(sessions, 1, "the steady member kept its one session");
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, "steady", TOPIC, PARTITIONS, FIRST);
}

/// A session's new claims without a commit look up their start together: one
/// ListOffsets per leader, not one per partition (at 10,000 partitions that is
/// 10,000 requests at once). A leader's refusal is asked again, once, at the
/// leader, and the partitions behind it start where they should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_claims_look_up_their_start_once_per_leader() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let refused = cluster.broker(1).intercept(
        Intercept::api(ApiKey::ListOffsets).times(1),
        Action::error(ResponseError::NotLeaderOrFollower),
    );
    let group = "starts";
    let log = new_log();
    let members = vec![start_plain(&cluster, group, 0, &log).await];
    settle(&log, &[0], FIRST).await;
    close_all(members).await;

    assert_eq!(refused.hits(), 1);
    let per_broker: Vec<usize> = (1..=3)
        .map(|node| requests_at(&cluster, node, ApiKey::ListOffsets))
        .collect();
    assert_eq!(
        per_broker,
        [2, 1, 1],
        "one ListOffsets per leader for six partitions, and broker 1's again after its refusal"
    );
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

// ---- 2. the coordinator moves ----

/// The coordinator moves under a stable group: heartbeats and commits get
/// NOT_COORDINATOR, the members find the new one and keep their sessions (the
/// new coordinator loads the same generation), and nothing is processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_move_under_a_stable_group_keeps_the_sessions() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "moved-stable";
    let log = new_log();
    let members = pair(&cluster, group, &log, &[TOPIC]).await;
    let generation = settle(&log, &[0, 1], FIRST).await;
    let sessions = log.lock().unwrap().sessions.len();
    let old = cluster.group_coordinator(group);
    let new = other_than(old);
    let lookups = requests(&cluster, ApiKey::FindCoordinator);
    cluster.move_coordinator(group, new);
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    wait_for(
        &log,
        "heartbeats and commits at the new coordinator",
        |_| {
            requests_at(&cluster, new, ApiKey::Heartbeat) > 0
                && (0..PARTITIONS).all(|p| cluster.committed(group, TOPIC, p) == Some(2 * FIRST))
        },
    )
    .await;
    assert_eq!(settle(&log, &[0, 1], 2 * FIRST).await, generation);
    assert!(
        requests(&cluster, ApiKey::FindCoordinator) >= lookups + 2,
        "each member looked the coordinator up again after NOT_COORDINATOR"
    );
    assert_eq!(
        log.lock().unwrap().sessions.len(),
        sessions,
        "a coordinator move alone does not end a session:{}",
        log.lock().unwrap().summary()
    );
    close_all(members).await;
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

/// The coordinator moves while a third member's arrival rebalances the group:
/// the waiting JoinGroups get NOT_COORDINATOR, every member finds the new
/// coordinator and joins there, and the three settle with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_move_during_a_rebalance_is_survived() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "moved-rebalancing";
    let log = new_log();
    let mut members = pair(&cluster, group, &log, &[TOPIC]).await;
    let before = settle(&log, &[0, 1], FIRST).await;
    let old = cluster.group_coordinator(group);
    let new = other_than(old);
    // Member 1's rejoin is held at the coordinator, so the rebalance member 2
    // starts is still waiting for it when the coordinator moves.
    let held = cluster.broker(old).intercept(
        Intercept::api(ApiKey::JoinGroup)
            .when(|r| r.client_id.as_deref() == Some("m1"))
            .once(),
        Action::Delay(Duration::from_millis(500)),
    );
    members.push(start_plain(&cluster, group, 2, &log).await);
    wait_for(&log, "member 1 to rejoin", |_| held.hits() == 1).await;
    assert_eq!(
        cluster.group_state(group),
        GroupState::PreparingRebalance,
        "the rebalance is under way when the coordinator moves"
    );
    cluster.move_coordinator(group, new);
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    let after = settle(&log, &[0, 1, 2], 2 * FIRST).await;
    assert!(after > before, "a new generation with the third member");
    assert!(requests_at(&cluster, new, ApiKey::JoinGroup) > 0);
    assert!(requests_at(&cluster, new, ApiKey::SyncGroup) > 0);
    close_all(members).await;
    assert_processed(&log, TOPIC, PARTITIONS, 2 * FIRST);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

// ---- 3. REBALANCE_IN_PROGRESS ----

/// An auto-commit answered REBALANCE_IN_PROGRESS leaves its offsets dirty; a
/// later commit carries them, so the commits reach the end while the members
/// still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_commit_rebalance_in_progress_is_committed_later() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "commit-rebalancing";
    let rejected = cluster.broker(cluster.group_coordinator(group)).intercept(
        Intercept::api(ApiKey::OffsetCommit).once(),
        Action::error(ResponseError::RebalanceInProgress),
    );
    let log = new_log();
    let members = pair(&cluster, group, &log, &[TOPIC]).await;
    settle(&log, &[0, 1], FIRST).await;
    wait_for(&log, "the commits to reach the end before close", |_| {
        (0..PARTITIONS).all(|p| cluster.committed(group, TOPIC, p) == Some(FIRST))
    })
    .await;
    assert_eq!(rejected.hits(), 1);
    close_all(members).await;
    assert_processed(&log, TOPIC, PARTITIONS, FIRST);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

/// The final commit of a rebalance is answered REBALANCE_IN_PROGRESS: the
/// offsets are not committed, so the next session starts where the last commit
/// was and processes the records again (at-least-once, never at-most-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_final_commit_means_the_records_are_processed_again() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "final-commit-rejected";
    let log = new_log();
    // Without auto-commit the session's final commit is its only one.
    let member = start(&cluster, group, 0, &log, &[TOPIC], |b| b.auto_commit(false)).await;
    settle(&log, &[0], FIRST).await;
    let rejected = cluster.broker(cluster.group_coordinator(group)).intercept(
        Intercept::api(ApiKey::OffsetCommit).once(),
        Action::error(ResponseError::RebalanceInProgress),
    );
    assert!(cluster.force_rebalance(group));
    wait_for(&log, "a second session processing everything again", |l| {
        l.sessions.len() == 2 && l.covered(TOPIC, PARTITIONS, 0..FIRST, 2)
    })
    .await;
    assert_eq!(rejected.hits(), 1, "the final commit was the one rejected");
    assert!(
        (0..PARTITIONS).all(|p| cluster.committed(group, TOPIC, p).is_none()),
        "nothing committed yet"
    );
    close_all(vec![member]).await;
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

/// A SyncGroup answered REBALANCE_IN_PROGRESS sends that member back to
/// JoinGroup; the group settles and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_group_rebalance_in_progress_rejoins() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "sync-rebalancing";
    let rejected = cluster.broker(cluster.group_coordinator(group)).intercept(
        Intercept::api(ApiKey::SyncGroup).once(),
        Action::error(ResponseError::RebalanceInProgress),
    );
    let log = new_log();
    let members = pair(&cluster, group, &log, &[TOPIC]).await;
    settle(&log, &[0, 1], FIRST).await;
    assert_eq!(rejected.hits(), 1);
    assert!(
        requests(&cluster, ApiKey::SyncGroup) >= 3,
        "the rejected SyncGroup was sent again after a rejoin"
    );
    close_all(members).await;
    assert_processed(&log, TOPIC, PARTITIONS, FIRST);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

// ---- 4. static membership ----

/// A second member with the same `group.instance.id` takes the first one's
/// place: the older one's next request gets FENCED_INSTANCE_ID and its `consume`
/// fails; the newer one carries on and commits everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_static_member_fails_and_its_replacement_continues() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "static";
    let log = new_log();
    let older = start(&cluster, group, 0, &log, &[TOPIC], |b| {
        b.instance_id("box-1")
    })
    .await;
    settle(&log, &[0], FIRST).await;
    let newer = start(&cluster, group, 1, &log, &[TOPIC], |b| {
        b.instance_id("box-1")
    })
    .await;
    let err = within("the fenced member's consume to fail", older.task)
        .await
        .expect("consume does not panic")
        .expect_err("a fenced instance is fatal");
    assert_eq!(
        err.code(),
        KafkaCode::from_code(ResponseError::FencedInstanceId.code()),
        "fenced: {err}"
    );
    // Expected, so not a reason for the waits below to give up.
    log.lock().unwrap().stopped.clear();
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    settle(&log, &[1], 2 * FIRST).await;
    close_all(vec![newer]).await;
    let members = cluster.group_members(group);
    assert_eq!(members.len(), 1, "one incarnation of box-1: {members:?}");
    assert_eq!(members[0].1.as_deref(), Some("box-1"));
    assert_processed(&log, TOPIC, PARTITIONS, 2 * FIRST);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

// ---- 5. the subscription grows ----

/// A subscribed topic that does not exist yet appears (a partition count going
/// from none to some; a topic gaining partitions is
/// `a_partition_count_increase_rebalances`): the partition check notices, the
/// group rebalances, and the new partitions are consumed and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_topic_that_appears_is_consumed() {
    const LATER: &str = "later";
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "appearing";
    let log = new_log();
    let members = pair(&cluster, group, &log, &[TOPIC, LATER]).await;
    let before = settle(&log, &[0, 1], FIRST).await;
    assert!(cluster.create_topic(LATER, 4));
    append(&cluster, LATER, 0..4, 0..FIRST);
    wait_for(
        &log,
        "the new topic's partitions to be claimed and consumed",
        |l| {
            l.settled(&[0, 1], &[(TOPIC, PARTITIONS), (LATER, 4)])
                .is_some_and(|g| g > before)
                && l.covered(LATER, 4, 0..FIRST, 1)
        },
    )
    .await;
    close_all(members).await;
    assert_processed(&log, TOPIC, PARTITIONS, FIRST);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
    assert_committed(&cluster, group, LATER, 4, FIRST);
}

// ---- 6. heartbeat errors ----

/// A heartbeat answered `error` ends the session as lost: no final commit (the
/// partitions may be someone else's by now), a rejoin, and the next session
/// starts from the last commit, so the records are processed again.
async fn a_heartbeat_error_loses_the_session(error: ResponseError, new_member_id: bool) {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = format!("heartbeat-{}", error.code());
    let log = new_log();
    // Without auto-commit only a session's end commits, so any commit here
    // would be the lost session's.
    let member = start(&cluster, &group, 0, &log, &[TOPIC], |b| {
        b.auto_commit(false)
    })
    .await;
    settle(&log, &[0], FIRST).await;
    let first = log.lock().unwrap().latest(0).cloned().unwrap();
    let failed = cluster.broker(cluster.group_coordinator(&group)).intercept(
        Intercept::api(ApiKey::Heartbeat).once(),
        Action::error(error),
    );
    wait_for(&log, "a new session after the failed heartbeat", |l| {
        l.sessions.len() == 2 && !l.sessions[1].ended && l.covered(TOPIC, PARTITIONS, 0..FIRST, 2)
    })
    .await;
    assert_eq!(failed.hits(), 1);
    assert_eq!(
        requests(&cluster, ApiKey::OffsetCommit),
        0,
        "a lost session commits nothing"
    );
    let second = log.lock().unwrap().latest(0).cloned().unwrap();
    assert!(second.generation > first.generation);
    assert_eq!(
        second.member_id != first.member_id,
        new_member_id,
        "UNKNOWN_MEMBER_ID rejoins under a new member id, ILLEGAL_GENERATION under the same"
    );
    close_all(vec![member]).await;
    assert_committed(&cluster, &group, TOPIC, PARTITIONS, FIRST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_unknown_member_id_loses_the_session_and_rejoins() {
    a_heartbeat_error_loses_the_session(ResponseError::UnknownMemberId, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_illegal_generation_loses_the_session_and_rejoins() {
    a_heartbeat_error_loses_the_session(ResponseError::IllegalGeneration, false).await;
}

/// Heartbeat answers slower than the heartbeat interval (each held 300 ms at the
/// coordinator, three intervals; a heartbeat queued behind a long-polling Fetch
/// on the same connection is as slow) must not pause the heartbeats: the next
/// one goes out as soon as the last is answered, never a session timeout later.
///
/// The member reads a topic led by another broker, so nothing but the delay
/// holds its heartbeats up and the gaps between them can be measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heartbeat_answers_do_not_pause_the_heartbeats() {
    const QUIET: &str = "quiet";
    let cluster = cluster().await;
    assert!(cluster.create_topic(QUIET, 1));
    assert_eq!(cluster.leader(QUIET, 0), Some(1));
    append(&cluster, QUIET, 0..1, 0..FIRST);
    let group = "slow-heartbeats";
    let coordinator = 2;
    cluster.move_coordinator(group, coordinator);
    let log = new_log();
    let member = start(&cluster, group, 0, &log, &[QUIET], |b| b).await;
    wait_for(&log, "the records", |l| l.covered(QUIET, 1, 0..FIRST, 1)).await;
    let slow = cluster.broker(coordinator).intercept(
        Intercept::api(ApiKey::Heartbeat),
        Action::Delay(Duration::from_millis(300)),
    );
    // A pause is an absence, so this watches the clock (real sockets, so no
    // paused tokio clock): heartbeats are logged as they arrive, before the delay.
    let mut arrivals = Vec::new();
    let mut seen = requests_at(&cluster, coordinator, ApiKey::Heartbeat);
    let watch = tokio::time::Instant::now();
    while watch.elapsed() < SESSION + SESSION / 3 {
        let now = requests_at(&cluster, coordinator, ApiKey::Heartbeat);
        if now != seen {
            arrivals.push(watch.elapsed());
            seen = now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    arrivals.push(watch.elapsed());
    let longest = arrivals
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest < SESSION / 2,
        "heartbeats paused for {longest:?} (arrivals {arrivals:?})"
    );
    slow.remove();
    append(&cluster, QUIET, 0..1, FIRST..2 * FIRST);
    wait_for(&log, "the later records", |l| {
        l.covered(QUIET, 1, 0..2 * FIRST, 1)
    })
    .await;
    close_all(vec![member]).await;
    assert_eq!(
        log.lock().unwrap().sessions.len(),
        1,
        "one session throughout"
    );
    assert_processed_once(&log, QUIET, 1);
    assert_committed(&cluster, group, QUIET, 1, 2 * FIRST);
}

/// `close` while the member looks for its coordinator again (a heartbeat got
/// NOT_COORDINATOR; the session goes on meanwhile) still ends the session with
/// its final commit before LeaveGroup: after the leave, the coordinator would
/// refuse the commit and the processed records would be processed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_while_the_coordinator_is_rediscovered_still_commits() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "close-rediscovering";
    let log = new_log();
    // Without auto-commit the final commit is the only one.
    let member = start(&cluster, group, 0, &log, &[TOPIC], |b| b.auto_commit(false)).await;
    settle(&log, &[0], FIRST).await;
    let moved = cluster.broker(cluster.group_coordinator(group)).intercept(
        Intercept::api(ApiKey::Heartbeat),
        Action::error(ResponseError::NotCoordinator),
    );
    wait_for(&log, "a heartbeat answered NOT_COORDINATOR", |_| {
        moved.hits() > 0
    })
    .await;
    close_all(vec![member]).await;
    assert_eq!(
        log.lock().unwrap().sessions.len(),
        1,
        "no rejoin before the close"
    );
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

// ---- 7. the coordinator's broker crashes ----

/// The coordinator's broker is down for less than a session timeout: heartbeats
/// and commits fail, the members keep their sessions, and once it is back (with
/// the group as it was) commits resume; partitions it leads catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_coordinator_outage_keeps_the_sessions() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "outage-short";
    let log = new_log();
    let members = pair(&cluster, group, &log, &[TOPIC]).await;
    let generation = settle(&log, &[0, 1], FIRST).await;
    let sessions = log.lock().unwrap().sessions.len();
    let coordinator = cluster.group_coordinator(group);
    cluster.stop_broker(coordinator).await;
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    tokio::time::sleep(SESSION / 3).await;
    cluster.restart_broker(coordinator).await.unwrap();
    assert_eq!(settle(&log, &[0, 1], 2 * FIRST).await, generation);
    wait_for(&log, "the commits to reach the end", |_| {
        (0..PARTITIONS).all(|p| cluster.committed(group, TOPIC, p) == Some(2 * FIRST))
    })
    .await;
    assert_eq!(
        log.lock().unwrap().sessions.len(),
        sessions,
        "an outage shorter than the session timeout ends no session:{}",
        log.lock().unwrap().summary()
    );
    close_all(members).await;
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

/// The coordinator's broker is down for longer than a session timeout: the
/// members give their sessions up as lost, and rejoin once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_coordinator_outage_loses_the_sessions_and_the_group_recovers() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "outage-long";
    let log = new_log();
    let members = pair(&cluster, group, &log, &[TOPIC]).await;
    let before = settle(&log, &[0, 1], FIRST).await;
    let coordinator = cluster.group_coordinator(group);
    cluster.stop_broker(coordinator).await;
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    wait_for(&log, "both members to give their sessions up", |l| {
        [0, 1].iter().all(|m| l.latest(*m).is_some_and(|s| s.ended))
    })
    .await;
    cluster.restart_broker(coordinator).await.unwrap();
    let after = settle(&log, &[0, 1], 2 * FIRST).await;
    assert!(after > before, "the group rebalanced after the outage");
    close_all(members).await;
    assert_processed(&log, TOPIC, PARTITIONS, 2 * FIRST);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

// ---- 8. more ----

/// While the coordinator loads the group (COORDINATOR_LOAD_IN_PROGRESS to every
/// group request), nobody joins; once loaded the group forms. Loading again
/// under a stable group, briefly, costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_load_in_progress_delays_the_group_but_loses_nothing() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "loading";
    cluster.set_coordinator_loading(group, true);
    let log = new_log();
    let members = pair(&cluster, group, &log, &[TOPIC]).await;
    wait_for(&log, "the members to try joining", |_| {
        requests(&cluster, ApiKey::JoinGroup) >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        log.lock().unwrap().sessions.is_empty(),
        "no session while the coordinator loads"
    );
    cluster.set_coordinator_loading(group, false);
    let generation = settle(&log, &[0, 1], FIRST).await;

    cluster.set_coordinator_loading(group, true);
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    tokio::time::sleep(SESSION / 3).await;
    cluster.set_coordinator_loading(group, false);
    assert_eq!(settle(&log, &[0, 1], 2 * FIRST).await, generation);
    close_all(members).await;
    assert_processed(&log, TOPIC, PARTITIONS, 2 * FIRST);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

/// Tansu's coordinator: MEMBER_ID_REQUIRED at every JoinGroup version (here
/// v0-v3, where Kafka never sends it) and generations from 0. The members join
/// with the id they are given and commit under generation 0 like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_member_id_required_at_every_version_and_generation_zero() {
    let cluster = cluster_with(|b| {
        b.member_id_required_at_every_version(true)
            .group_generations_start_at_zero(true)
            .api_versions(ApiKey::JoinGroup, 0, 3)
    })
    .await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "tansu";
    let log = new_log();
    let first = start_plain(&cluster, group, 0, &log).await;
    assert_eq!(
        settle(&log, &[0], FIRST).await,
        0,
        "the first generation is 0"
    );
    // Commits under generation 0 are accepted.
    wait_for(&log, "commits under generation 0", |_| {
        (0..PARTITIONS).all(|p| cluster.committed(group, TOPIC, p) == Some(FIRST))
    })
    .await;
    let second = start_plain(&cluster, group, 1, &log).await;
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    assert_eq!(settle(&log, &[0, 1], 2 * FIRST).await, 1);
    close_all(vec![first, second]).await;
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

/// The committed offsets cannot be read for a while (OffsetFetch answered
/// COORDINATOR_LOAD_IN_PROGRESS for 3 s, as while a big `__consumer_offsets`
/// partition loads). The member must not fall back to `auto.offset.reset`
/// (here latest) for partitions that have a commit: that would skip every
/// record between the commit and the log end. It waits, then starts at the
/// commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_committed_offsets_never_skip_records() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "offsets-loading";
    let committed = 10;
    for p in 0..PARTITIONS {
        cluster.set_committed(group, TOPIC, p, committed);
    }
    let since: Arc<OnceLock<std::time::Instant>> = Arc::new(OnceLock::new());
    let loading = cluster.broker(cluster.group_coordinator(group)).intercept(
        Intercept::api(ApiKey::OffsetFetch).when(move |_| {
            since.get_or_init(std::time::Instant::now).elapsed() < Duration::from_secs(3)
        }),
        Action::error(ResponseError::CoordinatorLoadInProgress),
    );
    let log = new_log();
    let member = start(&cluster, group, 0, &log, &[TOPIC], |b| {
        b.auto_offset_reset(OffsetReset::Latest)
    })
    .await;
    wait_for(&log, "the first session's claims to start", |l| {
        l.sessions
            .first()
            .is_some_and(|s| s.starts.len() == PARTITIONS as usize)
    })
    .await;
    let starts = log.lock().unwrap().sessions[0].starts.clone();
    assert!(loading.hits() > 0);
    assert!(
        starts.values().all(|&o| o == committed),
        "every claim starts at the commit {committed}, not at the reset policy's \
         log end {FIRST}: {starts:?}"
    );
    wait_for(&log, "the records after the commits", |l| {
        l.covered(TOPIC, PARTITIONS, committed..FIRST, 1)
    })
    .await;
    close_all(vec![member]).await;
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

/// A handler that needs longer than the session timeout (but less than the
/// rebalance timeout, which the builder documents as the time a handler may
/// take to finish a claim) to give its claims back at a rebalance keeps its
/// membership: the member heartbeats meanwhile, its final commit is accepted,
/// and its next session starts at that commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_revoke_within_the_rebalance_timeout_keeps_the_membership() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "slow-revoke";
    let log = new_log();
    let member = start(&cluster, group, 0, &log, &[TOPIC], |b| {
        b.rebalance_timeout(Duration::from_secs(5))
            .drain_timeout(Duration::from_secs(4))
            .auto_commit(false)
    })
    .await;
    settle(&log, &[0], FIRST).await;
    let first = log.lock().unwrap().latest(0).cloned().unwrap();
    // Longer than the session timeout, well within the drain and rebalance timeouts
    // (the drain's default, half the rebalance timeout, would be 2.5 s: a race).
    member.linger_ms.store(2500, Ordering::Release);
    assert!(cluster.force_rebalance(group));
    wait_for(&log, "the first session to end", |l| l.sessions[0].ended).await;
    member.linger_ms.store(0, Ordering::Release);
    wait_for(&log, "the next session", |l| {
        l.sessions.len() == 2 && l.sessions[1].starts.len() == PARTITIONS as usize
    })
    .await;
    let second = log.lock().unwrap().latest(0).cloned().unwrap();
    let committed: Vec<Option<i64>> = (0..PARTITIONS)
        .map(|p| cluster.committed(group, TOPIC, p))
        .collect();
    assert!(
        committed.iter().all(|c| *c == Some(FIRST)),
        "the slow session's final commit was accepted: {committed:?}"
    );
    assert_eq!(
        second.member_id, first.member_id,
        "the member was not evicted while it finished its claims"
    );
    assert!(second.starts.values().all(|&o| o == FIRST));
    close_all(vec![member]).await;
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

/// A handler that blocks its thread past the drain deadline cannot be cancelled
/// until it yields, and keeps its partition's reader until then: the next session
/// starts only once it is gone, so it reads every partition again (without the
/// wait, the new session's claim of partition 0 finds the old reader alive and the
/// partition goes unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_cancelled_at_the_drain_deadline_gives_its_partition_back() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "blocked-revoke";
    let log = new_log();
    let member = start(&cluster, group, 0, &log, &[TOPIC], |b| {
        b.rebalance_timeout(Duration::from_secs(5))
            .drain_timeout(Duration::from_millis(200))
    })
    .await;
    settle(&log, &[0], FIRST).await;
    member.block_ms.store(1500, Ordering::Release);
    assert!(cluster.force_rebalance(group));
    wait_for(&log, "the first session to end", |l| l.sessions[0].ended).await;
    member.block_ms.store(0, Ordering::Release);
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    let generation = settle(&log, &[0], 2 * FIRST).await;
    assert!(generation > 1);
    close_all(vec![member]).await;
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

// ---- 9. a topic gains partitions ----

/// A subscribed topic grows from two partitions to four, as an admin's
/// CreatePartitions would grow it, while two members consume it: the partition
/// check (every 100 ms here) sees the new count, the group rebalances into a
/// later generation whose claims cover all four partitions, and the records
/// written into the new partitions are consumed and committed like the old
/// ones'. Without that rebalance the new partitions would be nobody's claim and
/// the wait for them would time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_count_increase_rebalances() {
    const GROWING: &str = "growing";
    const CHECK: Duration = Duration::from_millis(100);
    let cluster = cluster().await;
    assert!(cluster.create_topic(GROWING, 2));
    append(&cluster, GROWING, 0..2, 0..FIRST);
    let group = "growing";
    let log = new_log();
    // As `pair` does, with the short partition check on each member.
    cluster.set_group_initial_rebalance_delay(Duration::from_millis(300));
    let mut members = Vec::new();
    for index in 0..2 {
        members.push(
            start(&cluster, group, index, &log, &[GROWING], |b| {
                b.partition_check_interval(CHECK)
            })
            .await,
        );
    }
    wait_for(
        &log,
        "the members to share and consume two partitions",
        |l| l.settled(&[0, 1], &[(GROWING, 2)]).is_some() && l.covered(GROWING, 2, 0..FIRST, 1),
    )
    .await;
    let before = log.lock().unwrap().settled(&[0, 1], &[(GROWING, 2)]);
    let before = before.expect("settled a moment ago");

    assert!(cluster.add_partitions(GROWING, 4));
    // The new partitions get as many records as the old ones end up with, so
    // one offset range covers the whole topic.
    append(&cluster, GROWING, 2..4, 0..2 * FIRST);
    append(&cluster, GROWING, 0..2, FIRST..2 * FIRST);
    wait_for(
        &log,
        "a rebalance claiming all four partitions, and every record",
        |l| {
            l.settled(&[0, 1], &[(GROWING, 4)])
                .is_some_and(|g| g > before)
                && l.covered(GROWING, 4, 0..2 * FIRST, 1)
        },
    )
    .await;
    assert!(
        cluster.group_generation(group) > Some(before),
        "the coordinator saw the rebalance too"
    );
    close_all(members).await;
    assert_processed_once(&log, GROWING, 4);
    assert_committed(&cluster, group, GROWING, 4, 2 * FIRST);
}

// ---- 10. cooperative rebalancing (KIP-429) ----

fn cooperative(b: ConsumerGroupBuilder) -> ConsumerGroupBuilder {
    b.assignor(AssignorKind::CooperativeSticky)
}

/// Waits until `members` run disjoint claims covering the topic and every record
/// below `end` was processed; returns who runs which partitions.
async fn settle_claims(log: &Shared, members: &[usize], end: i64) -> HashMap<usize, BTreeSet<i32>> {
    wait_for(
        log,
        &format!("members {members:?} to run claims covering the topic and process every record below {end}"),
        |l| {
            l.running_claims(members, TOPIC, PARTITIONS).is_some()
                && l.covered(TOPIC, PARTITIONS, 0..end, 1)
        },
    )
    .await;
    log.lock()
        .unwrap()
        .running_claims(members, TOPIC, PARTITIONS)
        .expect("settled a moment ago")
}

/// The claims of `member` that ended so far.
fn ended_claims(log: &Shared, member: usize) -> usize {
    log.lock()
        .unwrap()
        .claims
        .iter()
        .filter(|c| c.member == member && c.ended)
        .count()
}

/// A third member joins a cooperative group of two: only the two partitions it
/// takes stop (their owners commit them first, then the follow-up rebalance
/// hands them over); the other four claims never end, no session ends, and no
/// record is processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_join_stops_only_the_partitions_that_move() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "coop-join";
    let log = new_log();
    cluster.set_group_initial_rebalance_delay(Duration::from_millis(300));
    let mut members = vec![
        start(&cluster, group, 0, &log, &[TOPIC], cooperative).await,
        start(&cluster, group, 1, &log, &[TOPIC], cooperative).await,
    ];
    let before = settle_claims(&log, &[0, 1], FIRST).await;
    assert_eq!(
        before.values().map(BTreeSet::len).collect::<Vec<_>>(),
        [3, 3]
    );
    let generation = cluster.group_generation(group).unwrap();

    members.push(start(&cluster, group, 2, &log, &[TOPIC], cooperative).await);
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..FIRST + 10);
    let after = settle_claims(&log, &[0, 1, 2], FIRST + 10).await;
    assert!(after.values().all(|c| c.len() == 2), "{after:?}");
    for m in [0, 1] {
        assert!(
            after[&m].is_subset(&before[&m]),
            "member {m} kept what it did not give up: {before:?} -> {after:?}"
        );
        assert_eq!(
            ended_claims(&log, m),
            1,
            "member {m} stopped exactly the one claim that moved:{}",
            log.lock().unwrap().summary()
        );
    }
    {
        let log = log.lock().unwrap();
        assert_eq!(
            log.sessions.len(),
            3,
            "one session per member, never restarted:{}",
            log.summary()
        );
        assert!(log.sessions.iter().all(|s| !s.ended));
    }
    assert!(
        cluster.group_generation(group).unwrap() >= generation + 2,
        "a rebalance that revokes, then the follow-up that assigns"
    );
    close_all(members).await;
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST + 10);
}

/// A member of a cooperative group of three leaves: the other two keep every
/// claim they had and take over the leaver's, which it committed on close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_leave_hands_over_only_the_leavers_partitions() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "coop-leave";
    let log = new_log();
    cluster.set_group_initial_rebalance_delay(Duration::from_millis(500));
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(start(&cluster, group, i, &log, &[TOPIC], cooperative).await);
    }
    let before = settle_claims(&log, &[0, 1, 2], FIRST).await;
    let ended_before: Vec<usize> = (0..2).map(|m| ended_claims(&log, m)).collect();

    let leaver = members.pop().unwrap();
    leaver.group.close().await.unwrap();
    within("the leaver's consume to return", leaver.task)
        .await
        .unwrap()
        .unwrap();
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..FIRST + 10);
    let after = settle_claims(&log, &[0, 1], FIRST + 10).await;
    for m in [0, 1] {
        assert!(
            before[&m].is_subset(&after[&m]),
            "member {m} kept its claims: {before:?} -> {after:?}"
        );
        assert_eq!(
            ended_claims(&log, m),
            ended_before[m],
            "member {m} stopped nothing"
        );
    }
    close_all(members).await;
    assert_processed_once(&log, TOPIC, PARTITIONS);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST + 10);
}

/// A cooperative member whose heartbeat says UNKNOWN_MEMBER_ID has lost its
/// partitions: the session ends without a commit and a new one starts; nothing
/// is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_member_that_loses_its_membership_starts_over() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "coop-lost";
    let log = new_log();
    let members = vec![start(&cluster, group, 0, &log, &[TOPIC], cooperative).await];
    settle_claims(&log, &[0], FIRST).await;
    let member_id = log.lock().unwrap().sessions[0].member_id.clone();
    assert!(cluster.kick_member(group, &member_id));
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..FIRST + 10);
    wait_for(
        &log,
        "a second session after the membership was lost",
        |l| {
            l.sessions.len() == 2
                && l.sessions[0].ended
                && l.covered(TOPIC, PARTITIONS, 0..FIRST + 10, 1)
        },
    )
    .await;
    // The lost session committed nothing at its end: the new one reads again from
    // the last commit and auto-commits up to the end.
    within(
        "the new session's commits to reach the end",
        wait_committed(&cluster, group, FIRST + 10),
    )
    .await;
    close_all(members).await;
    assert_processed(&log, TOPIC, PARTITIONS, FIRST + 10);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST + 10);
}

/// Waits until every partition of the topic is committed at `end`.
async fn wait_committed(cluster: &MockCluster, group: &str, end: i64) {
    while (0..PARTITIONS).any(|p| cluster.committed(group, TOPIC, p) != Some(end)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- 11. a handler stalled past max.poll.interval.ms ----

/// Member 0's handler holds a record for longer than its `max.poll.interval.ms`
/// (1 s): the member reports it on `errors()`, leaves the group (LeaveGroup),
/// and member 1 takes every partition and processes what member 0 held. When
/// the handler lets go, member 0 rejoins as a new member and the two share the
/// partitions again. The held records were never committed by member 0, so
/// nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handler_makes_its_member_leave_and_rejoin_later() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "stall";
    let log = new_log();
    cluster.set_group_initial_rebalance_delay(Duration::from_millis(300));
    let members = vec![
        start(&cluster, group, 0, &log, &[TOPIC], |b| {
            b.rebalance_timeout(Duration::from_secs(1))
        })
        .await,
        start(&cluster, group, 1, &log, &[TOPIC], |b| b).await,
    ];
    let mut errors = members[0].group.errors();
    settle(&log, &[0, 1], FIRST).await;
    let first_id = log.lock().unwrap().latest(0).unwrap().member_id.clone();
    let leaves = requests(&cluster, ApiKey::LeaveGroup);

    members[0].stall.store(true, Ordering::Release);
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..FIRST + 10);
    let err = within("the stall report", errors.recv()).await.unwrap();
    assert_eq!(err.kind(), &josefine::ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("max.poll.interval.ms"), "{err}");
    wait_for(&log, "member 1 alone to process every record", |l| {
        l.latest(1)
            .is_some_and(|s| s.claims.len() == PARTITIONS as usize && !s.ended)
            && l.covered(TOPIC, PARTITIONS, 0..FIRST + 10, 1)
    })
    .await;
    assert_eq!(
        requests(&cluster, ApiKey::LeaveGroup),
        leaves + 1,
        "the stalled member left"
    );

    members[0].stall.store(false, Ordering::Release);
    settle(&log, &[0, 1], FIRST + 10).await;
    let second_id = log.lock().unwrap().latest(0).unwrap().member_id.clone();
    assert_ne!(first_id, second_id, "rejoined as a new member");
    close_all(members).await;
    assert_processed(&log, TOPIC, PARTITIONS, FIRST + 10);
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST + 10);
}

// ---- 12. the stream API and the errors channel ----

/// Two members read the group as streams, marking every record; the second one
/// joins while the first is reading (an eager rebalance). Every record reaches
/// one of them, and closing commits everything that was marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_share_the_records_and_commit_what_was_marked() {
    use futures::StreamExt;
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "streams";
    let log = new_log();
    let mut readers = Vec::new();
    let mut groups = Vec::new();
    for i in 0..2 {
        let client = client(&cluster, &format!("s{i}")).await;
        let member = settings(client, group).build().unwrap();
        let mut stream = member.stream(&[TOPIC]).unwrap();
        groups.push(member);
        let seen = log.clone();
        readers.push(tokio::spawn(async move {
            let mut count = 0u64;
            while let Some(record) = stream.next().await {
                let record = record.expect("no record errors here");
                seen.lock()
                    .unwrap()
                    .processed
                    .entry((record.topic().to_string(), record.partition()))
                    .or_default()
                    .push(record.offset());
                record.mark();
                count += 1;
                if count == 20 {
                    // Some records in, the other reader joins.
                    tokio::task::yield_now().await;
                }
            }
            stream
        }));
        if i == 0 {
            wait_for(&log, "the first stream's records", |l| {
                l.covered(TOPIC, PARTITIONS, 0..5, 1)
            })
            .await;
        }
    }
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..FIRST + 10);
    wait_for(&log, "every record through the streams", |l| {
        l.covered(TOPIC, PARTITIONS, 0..FIRST + 10, 1)
    })
    .await;
    // Everything read was marked; give auto-commit a moment to see every mark,
    // then close (which commits again) through the group handles.
    for g in &groups {
        g.close().await.unwrap();
    }
    for r in readers {
        let stream = within("a stream to end after close", r).await.unwrap();
        within("the stream's close", stream.close()).await.unwrap();
    }
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST + 10);
}

/// With auto-commit off, `Session::commit` commits at once; a failing commit is
/// an `Err` for the caller and also reaches `errors()` when auto-commit fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_commits_and_commit_errors_reach_the_user() {
    use futures::StreamExt;
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..1, 0..FIRST);
    let group = "manual";
    let client = client(&cluster, "manual").await;
    let member = settings(client, group).auto_commit(false).build().unwrap();
    let mut stream = member.stream(&[TOPIC]).unwrap();
    let mut errors = member.errors();
    let first = within("a record", stream.next()).await.unwrap().unwrap();
    first.mark();
    assert_eq!(
        cluster.committed(group, TOPIC, first.partition()),
        None,
        "no auto-commit"
    );
    first.session().commit().await.unwrap();
    assert_eq!(
        cluster.committed(group, TOPIC, first.partition()),
        Some(first.offset() + 1)
    );

    // The coordinator refuses the next commit: the caller gets the error, and the
    // mark stays for the next try.
    let refusal = cluster.broker(cluster.group_coordinator(group)).intercept(
        Intercept::api(ApiKey::OffsetCommit).once(),
        Action::error(ResponseError::GroupAuthorizationFailed),
    );
    let second = within("a record", stream.next()).await.unwrap().unwrap();
    second.mark();
    let err = second.session().commit().await.unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::GROUP_AUTHORIZATION_FAILED));
    assert_eq!(refusal.hits(), 1);
    second.session().commit().await.unwrap();
    assert_eq!(
        cluster.committed(group, TOPIC, second.partition()),
        Some(second.offset() + 1)
    );

    // With auto-commit on, the same refusal comes through errors().
    drop(stream);
    member.close().await.unwrap();
    let client = self::client(&cluster, "auto").await;
    let member = settings(client, group).build().unwrap();
    let mut errors_auto = member.errors();
    cluster.broker(cluster.group_coordinator(group)).intercept(
        Intercept::api(ApiKey::OffsetCommit).once(),
        Action::error(ResponseError::GroupAuthorizationFailed),
    );
    let mut stream = member.stream(&[TOPIC]).unwrap();
    let record = within("a record", stream.next()).await.unwrap().unwrap();
    record.mark();
    let err = within("the auto-commit failure", errors_auto.recv())
        .await
        .unwrap();
    assert_eq!(
        err.code(),
        Some(KafkaCode::GROUP_AUTHORIZATION_FAILED),
        "{err}"
    );
    assert!(
        errors.try_recv().is_none(),
        "the first member's errors are its own"
    );
    within("close", stream.close()).await.unwrap();
    assert!(cluster.committed(group, TOPIC, 0).unwrap() > record.offset());
}

/// Dropping a stream leaves the group (LeaveGroup), with its marks committed:
/// no member lingers until the session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_leaves_the_group() {
    use futures::StreamExt;
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..1, 0..FIRST);
    let group = "dropped";
    let member = settings(client(&cluster, "dropped").await, group)
        .build()
        .unwrap();
    let mut stream = member.stream(&[TOPIC]).unwrap();
    let record = within("a record", stream.next()).await.unwrap().unwrap();
    record.mark();
    assert_eq!(cluster.group_members(group).len(), 1);
    drop(stream);
    within("the member to leave", async {
        while !cluster.group_members(group).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(requests(&cluster, ApiKey::LeaveGroup), 1);
    assert!(
        cluster.committed(group, TOPIC, record.partition()) > Some(record.offset()),
        "the final commit carried the mark"
    );
}

/// The group closed with `ConsumerGroup::close` (not the stream's `close`) while its
/// stream lives on unpolled: the close does not wait for a poll that never comes
/// (before, it waited until the drain deadline, half the rebalance timeout), and the
/// marks made are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_group_of_an_unpolled_stream_does_not_wait_for_a_poll() {
    use futures::StreamExt;
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..1, 0..FIRST);
    let group = "unpolled";
    let member = settings(client(&cluster, "unpolled").await, group)
        .rebalance_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut stream = member.stream(&[TOPIC]).unwrap();
    for _ in 0..FIRST {
        within("a record", stream.next())
            .await
            .unwrap()
            .unwrap()
            .mark();
    }
    within("close", member.close()).await.unwrap();
    assert_eq!(cluster.committed(group, TOPIC, 0), Some(FIRST));
    drop(stream);
}

// ---- 13. the runtime: claims on their own tasks, drain on revoke, failing handlers ----

/// What a [`Scripted`] handler does besides processing and marking each record.
#[derive(Clone, Default)]
struct Script {
    /// Hold every record unmarked (work in flight elsewhere) until the claim is
    /// revoked, then finish it: mark them once `drained` is set.
    hold_until_revoked: bool,
    drained: Arc<AtomicBool>,
    /// After its revocation, keep running (and mark one more record later): a
    /// handler that overruns its drain deadline.
    overrun: bool,
    /// Fail once, at this partition and offset: with an error, or a panic.
    fail_at: Option<(i32, i64)>,
    panic: bool,
}

/// Processed records by partition, revocations seen, whether the failure happened.
#[derive(Default)]
struct ScriptLog {
    processed: HashMap<i32, Vec<i64>>,
    revocations: Vec<(i32, josefine::RevokeReason)>,
    failed: bool,
}

#[derive(Clone)]
struct Scripted {
    script: Script,
    log: Arc<Mutex<ScriptLog>>,
}

impl Scripted {
    fn new(script: Script) -> Self {
        Self {
            script,
            log: Arc::default(),
        }
    }

    fn processed(&self, partition: i32) -> Vec<i64> {
        self.log
            .lock()
            .unwrap()
            .processed
            .get(&partition)
            .cloned()
            .unwrap_or_default()
    }

    /// Every record below `end` of `partitions` processed at least once.
    fn covered(&self, partitions: Range<i32>, end: i64) -> bool {
        partitions.into_iter().all(|p| {
            let seen: HashSet<i64> = self.processed(p).into_iter().collect();
            (0..end).all(|o| seen.contains(&o))
        })
    }

    async fn wait(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        until(what, || condition(self)).await
    }
}

impl GroupHandler for Scripted {
    async fn consume_claim(&self, _session: &Session, mut claim: Claim) -> josefine::Result<()> {
        let partition = claim.partition();
        let mut held = Vec::new();
        while let Some(record) = claim.next().await {
            let record = record?;
            if self.script.fail_at == Some((partition, record.offset())) {
                let first = !std::mem::replace(&mut self.log.lock().unwrap().failed, true);
                if first && self.script.panic {
                    panic!("scripted panic at {partition}/{}", record.offset());
                }
                if first {
                    return Err(josefine::Error::handler(std::io::Error::other(format!(
                        "scripted failure at {partition}/{}",
                        record.offset()
                    ))));
                }
            }
            self.log
                .lock()
                .unwrap()
                .processed
                .entry(partition)
                .or_default()
                .push(record.offset());
            if self.script.hold_until_revoked {
                held.push(record);
            } else {
                claim.mark(&record);
            }
        }
        let revocation = claim.revoked().await;
        self.log
            .lock()
            .unwrap()
            .revocations
            .push((partition, revocation.reason));
        if self.script.hold_until_revoked {
            while !self.script.drained.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for record in &held {
                claim.mark(record);
            }
        }
        if self.script.overrun {
            tokio::time::sleep_until(revocation.deadline + Duration::from_millis(200)).await;
            claim.mark_next(i64::MAX / 2);
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// A member consuming `TOPIC` with `handler`, configured by `configure`; its
/// errors from before it starts.
async fn start_scripted(
    cluster: &MockCluster,
    group: &str,
    index: usize,
    handler: Scripted,
    configure: impl FnOnce(ConsumerGroupBuilder) -> ConsumerGroupBuilder,
) -> (
    ConsumerGroup,
    josefine::GroupErrors,
    JoinHandle<josefine::Result<()>>,
) {
    let client = client(cluster, &format!("m{index}")).await;
    let group = configure(settings(client, group)).build().unwrap();
    let errors = group.errors();
    let runner = group.clone();
    let task = tokio::spawn(async move { runner.consume(&[TOPIC], handler).await });
    (group, errors, task)
}

/// The coordinator answers OffsetCommit only after 20 s (longer than the test
/// waits for anything): while that commit is held, the handlers go on
/// processing records appended after it was sent. Commits run on their own task;
/// a runner that awaited the commit among its claims froze every handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_keep_processing_while_a_commit_is_held() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "held-commit";
    let handler = Scripted::new(Script::default());
    // The held commit must not time out first; heartbeats wait behind it on the
    // coordinator's connection.
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .request_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let member = settings(client, group)
        .session_timeout(Duration::from_secs(40))
        .heartbeat_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let task = tokio::spawn({
        let (member, handler) = (member.clone(), handler.clone());
        async move { member.consume(&[TOPIC], handler).await }
    });
    handler
        .wait("the first records", |h| h.covered(0..PARTITIONS, FIRST))
        .await;
    within("the first commits", wait_committed(&cluster, group, FIRST)).await;
    let coordinator = cluster.broker(cluster.group_coordinator(group));
    let held = coordinator.intercept(
        Intercept::api(ApiKey::OffsetCommit).once(),
        Action::Delay(Duration::from_secs(20)),
    );
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..FIRST + 1);
    until("a commit to be held", || held.hits() > 0).await;
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST + 1..2 * FIRST);
    handler
        .wait("records appended while the commit is held", |h| {
            h.covered(0..PARTITIONS, 2 * FIRST)
        })
        .await;
    // Release the held commit (its connection drops; the commit is sent again).
    coordinator.disconnect_all();
    member.close().await.unwrap();
    task.await.unwrap().unwrap();
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

/// Drain on revoke. Member 0 holds every record unmarked until its claim is
/// revoked (work in flight elsewhere). Member 1 joins a cooperative group: the
/// partitions that move are revoked from member 0, whose handlers take their time
/// to finish. Meanwhile member 0's other claims go on processing, and member 1
/// does not get the moved partitions. Once the handlers finish and mark, their
/// marks are committed before the handover: member 1 starts the moved partitions
/// after them and processes none of member 0's records again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_claim_drains_and_its_marks_are_committed_before_the_handover() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "drain";
    let drained = Arc::new(AtomicBool::new(false));
    let first = Scripted::new(Script {
        hold_until_revoked: true,
        drained: drained.clone(),
        ..Script::default()
    });
    let (m0, _, t0) = start_scripted(&cluster, group, 0, first.clone(), cooperative).await;
    first
        .wait("member 0 to read everything", |h| {
            h.covered(0..PARTITIONS, FIRST)
        })
        .await;
    let second = Scripted::new(Script::default());
    let (m1, _, t1) = start_scripted(&cluster, group, 1, second.clone(), cooperative).await;
    first
        .wait("member 0's revocations", |h| {
            !h.log.lock().unwrap().revocations.is_empty()
        })
        .await;
    let moved: BTreeSet<i32> = first
        .log
        .lock()
        .unwrap()
        .revocations
        .iter()
        .map(|(p, reason)| {
            assert_eq!(*reason, josefine::RevokeReason::Reassigned);
            *p
        })
        .collect();
    let kept: Vec<i32> = (0..PARTITIONS).filter(|p| !moved.contains(p)).collect();
    assert!(!kept.is_empty(), "member 0 keeps some partitions");
    // While the moved claims drain, the kept ones go on.
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    first
        .wait("member 0's kept partitions while the others drain", |h| {
            kept.iter().all(|&p| h.covered(p..p + 1, 2 * FIRST))
        })
        .await;
    assert!(
        moved.iter().all(|&p| second.processed(p).is_empty()),
        "the moved partitions are not handed over while they drain"
    );
    drained.store(true, Ordering::Release);
    second
        .wait("member 1 to read the moved partitions", |h| {
            moved
                .iter()
                .all(|&p| h.processed(p).contains(&(2 * FIRST - 1)))
        })
        .await;
    for &p in &moved {
        let processed = second.processed(p);
        assert_eq!(
            processed.first(),
            Some(&FIRST),
            "partition {p}: member 1 starts after member 0's drained marks"
        );
    }
    m1.close().await.unwrap();
    m0.close().await.unwrap();
    t0.await.unwrap().unwrap();
    t1.await.unwrap().unwrap();
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

/// A revoked handler that never returns does not hold up the rebalance past its
/// drain deadline: it is reported on `errors()` and cancelled, and the new owner
/// reads the partition from what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_drain_deadline_is_abandoned_without_blocking_the_rebalance() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "overrun";
    let first = Scripted::new(Script {
        overrun: true,
        ..Script::default()
    });
    let (m0, mut errors, t0) = start_scripted(&cluster, group, 0, first.clone(), |b| {
        cooperative(b).drain_timeout(Duration::from_millis(300))
    })
    .await;
    first
        .wait("member 0 to read everything", |h| {
            h.covered(0..PARTITIONS, FIRST)
        })
        .await;
    within("the first commits", wait_committed(&cluster, group, FIRST)).await;
    let second = Scripted::new(Script::default());
    let (m1, _, t1) = start_scripted(&cluster, group, 1, second.clone(), cooperative).await;
    first
        .wait("member 0's revocations", |h| {
            !h.log.lock().unwrap().revocations.is_empty()
        })
        .await;
    // Past the revocation: only the new owner can read these.
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    let err = within("the overrun to be reported", errors.recv())
        .await
        .expect("an error");
    assert_eq!(err.kind(), &josefine::ErrorKind::Handler, "{err}");
    assert!(err.to_string().contains("deadline"), "{err}");
    let moved: Vec<i32> = first
        .log
        .lock()
        .unwrap()
        .revocations
        .iter()
        .map(|(p, _)| *p)
        .collect();
    assert!(!moved.is_empty());
    second
        .wait("member 1 to read the moved partitions", |h| {
            moved
                .iter()
                .all(|&p| h.processed(p).contains(&(2 * FIRST - 1)))
        })
        .await;
    m1.close().await.unwrap();
    m0.close().await.unwrap();
    t0.await.unwrap().unwrap();
    t1.await.unwrap().unwrap();
    for p in 0..PARTITIONS {
        let committed = cluster.committed(group, TOPIC, p).unwrap();
        assert!(committed <= 2 * FIRST, "{p}: committed {committed}");
    }
}

/// The default handler-error policy: a claim whose handler fails (an error, or a
/// panic) starts again from its last mark after a backoff; the error is reported;
/// every record is processed, exactly once, and the member never rejoins.
async fn a_failed_claim_restarts_from_its_last_mark(panic: bool) {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = if panic {
        "restart-panic"
    } else {
        "restart-error"
    };
    let handler = Scripted::new(Script {
        fail_at: Some((0, 5)),
        panic,
        ..Script::default()
    });
    let (member, mut errors, task) =
        start_scripted(&cluster, group, 0, handler.clone(), |b| b).await;
    handler
        .wait("every record", |h| h.covered(0..PARTITIONS, FIRST))
        .await;
    let err = within("the failure to be reported", errors.recv())
        .await
        .expect("an error");
    assert_eq!(err.kind(), &josefine::ErrorKind::Handler, "{err}");
    let expected = if panic {
        "panicked"
    } else {
        "scripted failure"
    };
    assert!(format!("{err:?}").contains(expected), "{err:?}");
    assert!(handler.log.lock().unwrap().failed);
    assert_eq!(
        handler.processed(0),
        (0..FIRST).collect::<Vec<_>>(),
        "partition 0 restarted at its last mark"
    );
    assert_eq!(cluster.group_generation(group), Some(1), "no rejoin");
    member.close().await.unwrap();
    task.await.unwrap().unwrap();
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_restarts_its_claim_from_its_last_mark() {
    a_failed_claim_restarts_from_its_last_mark(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_restarts_its_claim_from_its_last_mark() {
    a_failed_claim_restarts_from_its_last_mark(true).await;
}

/// `OnHandlerError::Stop`: `consume` commits what was marked, leaves the group
/// and returns the handler's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_under_the_stop_policy_ends_consume_with_its_error() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "stop";
    let handler = Scripted::new(Script {
        fail_at: Some((0, 5)),
        ..Script::default()
    });
    let (_member, _, task) = start_scripted(&cluster, group, 0, handler.clone(), |b| {
        b.on_handler_error(josefine::OnHandlerError::Stop)
    })
    .await;
    let err = within("consume to end", task)
        .await
        .unwrap()
        .expect_err("the handler's error");
    assert_eq!(err.kind(), &josefine::ErrorKind::Handler, "{err}");
    assert!(format!("{err:?}").contains("scripted failure"), "{err:?}");
    assert_eq!(
        cluster.committed(group, TOPIC, 0),
        Some(5),
        "marks committed"
    );
    assert!(
        cluster.group_members(group).is_empty(),
        "the member left the group"
    );
}

/// `OnHandlerError::Rejoin`: the member rejoins (a new generation) and the
/// partition is read again from its committed offset; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_under_the_rejoin_policy_rejoins_the_group() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "rejoin";
    let handler = Scripted::new(Script {
        fail_at: Some((0, 5)),
        ..Script::default()
    });
    let (member, _, task) = start_scripted(&cluster, group, 0, handler.clone(), |b| {
        b.on_handler_error(josefine::OnHandlerError::Rejoin)
    })
    .await;
    handler
        .wait("every record", |h| h.covered(0..PARTITIONS, FIRST))
        .await;
    assert!(
        cluster.group_generation(group) >= Some(2),
        "the member rejoined"
    );
    member.close().await.unwrap();
    task.await.unwrap().unwrap();
    assert_committed(&cluster, group, TOPIC, PARTITIONS, FIRST);
}

/// `close` before `consume` started: `consume` returns `Ok` at once and never
/// joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_closed_before_consume_never_joins() {
    let cluster = cluster().await;
    let group = settings(client(&cluster, "m0").await, "closed-early")
        .build()
        .unwrap();
    group.close().await.unwrap();
    within(
        "consume on a closed group",
        group.consume(&[TOPIC], Scripted::new(Script::default())),
    )
    .await
    .unwrap();
    assert_eq!(requests(&cluster, ApiKey::JoinGroup), 0);
}

/// `ConsumerGroup::claims`: each assigned partition arrives as a claim that the
/// user reads on a task of its own. A claim seeks back to read records again. When
/// a second member joins (cooperative), the moved claims' records end; the user
/// drops them after marking, and they are handed over with their marks committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_stream_hands_out_partitions_until_they_are_revoked() {
    use futures::StreamExt;

    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = "claim-stream";
    let member = cooperative(settings(client(&cluster, "m0").await, group))
        .build()
        .unwrap();
    let mut claims = member.claims(&[TOPIC]).unwrap();
    let processed: Arc<Mutex<HashMap<i32, Vec<i64>>>> = Arc::default();
    let ended: Arc<Mutex<Vec<i32>>> = Arc::default();
    let reader = tokio::spawn({
        let (processed, ended) = (processed.clone(), ended.clone());
        async move {
            let mut tasks = Vec::new();
            while let Some(claim) = claims.next().await {
                let mut claim = claim.expect("a claim");
                let (processed, ended) = (processed.clone(), ended.clone());
                tasks.push(tokio::spawn(async move {
                    let p = claim.partition();
                    let mut sought = false;
                    while let Some(record) = claim.next().await {
                        let record = record.unwrap();
                        processed
                            .lock()
                            .unwrap()
                            .entry(p)
                            .or_default()
                            .push(record.offset());
                        claim.mark(&record);
                        if p == 0 && record.offset() == 10 && !sought {
                            sought = true;
                            claim.seek(5);
                        }
                    }
                    ended.lock().unwrap().push(p);
                }));
            }
            claims
        }
    });
    let seen = |p: i32| {
        processed
            .lock()
            .unwrap()
            .get(&p)
            .cloned()
            .unwrap_or_default()
    };
    until("member 0 to read every partition", || {
        (0..PARTITIONS).all(|p| seen(p).contains(&(FIRST - 1)))
    })
    .await;
    let zero = seen(0);
    assert_eq!(
        &zero[..17],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 5, 6, 7, 8, 9, 10],
        "the seek read 5..=10 again"
    );
    within("the first commits", wait_committed(&cluster, group, FIRST)).await;
    // A second member takes some partitions: their claims end on member 0.
    let second = Scripted::new(Script::default());
    let (m1, _, t1) = start_scripted(&cluster, group, 1, second.clone(), cooperative).await;
    until("member 0's moved claims to end", || {
        !ended.lock().unwrap().is_empty()
    })
    .await;
    append(&cluster, TOPIC, 0..PARTITIONS, FIRST..2 * FIRST);
    until("every record, on one member or the other", || {
        (0..PARTITIONS).all(|p| {
            seen(p).contains(&(2 * FIRST - 1)) || second.processed(p).contains(&(2 * FIRST - 1))
        })
    })
    .await;
    for p in ended.lock().unwrap().iter() {
        assert_eq!(
            second.processed(*p).first(),
            Some(&FIRST),
            "partition {p} handed over after member 0's marks"
        );
    }
    m1.close().await.unwrap();
    t1.await.unwrap().unwrap();
    // Closing the group ends the stream (its task returns it); closing the stream
    // then finds the group left.
    member.close().await.unwrap();
    let stream = within("the claim stream to end", reader).await.unwrap();
    stream.close().await.unwrap();
    assert_committed(&cluster, group, TOPIC, PARTITIONS, 2 * FIRST);
}

/// A handler that never returns, even when revoked; counts the claims it got.
struct Stuck(Arc<AtomicU64>);

impl GroupHandler for Stuck {
    async fn consume_claim(&self, _session: &Session, _claim: Claim) -> josefine::Result<()> {
        self.0.fetch_add(1, Ordering::AcqRel);
        std::future::pending().await
    }
}

/// `close` is bounded by `close_timeout`: with a handler that ignores its
/// revocation and a drain deadline far away, `close` returns a timeout error and
/// `consume` still runs; dropping it stops everything at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gives_up_after_its_timeout() {
    let cluster = cluster().await;
    append(&cluster, TOPIC, 0..PARTITIONS, 0..FIRST);
    let group = settings(client(&cluster, "m0").await, "close-timeout")
        .drain_timeout(Duration::from_secs(60))
        .close_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Arc::new(AtomicU64::new(0));
    let consume = tokio::spawn({
        let (group, started) = (group.clone(), started.clone());
        async move { group.consume(&[TOPIC], Stuck(started)).await }
    });
    until("every claim to start", || {
        started.load(Ordering::Acquire) >= PARTITIONS as u64
    })
    .await;
    let err = within("close", group.close()).await.expect_err("a timeout");
    assert_eq!(err.kind(), &josefine::ErrorKind::Timeout, "{err}");
    assert!(!consume.is_finished(), "consume still drains");
    consume.abort();
    assert!(consume.await.unwrap_err().is_cancelled());
}

/// A corrupt batch read through `stream()` comes as an `Err` item and the
/// handler-error policy applies to its partition: under the default the claim
/// restarts from its last mark (meeting the batch again: another `Err` item);
/// under `Stop` the stream ends with the error after what was marked is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_in_the_record_stream_follows_the_handler_error_policy() {
    use futures::StreamExt;

    for stop in [false, true] {
        let cluster = MockCluster::builder()
            .brokers(1)
            .topic(TOPIC, 1)
            .start()
            .await
            .unwrap();
        append(&cluster, TOPIC, 0..1, 0..BATCH);
        let mut corrupt = BatchBuilder::new().base_offset(BATCH);
        corrupt.push(TS0, None, Some(b"x".as_slice()), &[]).unwrap();
        let mut corrupt = corrupt.finish().unwrap().to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x01;
        cluster.append_raw(TOPIC, 0, corrupt.into());
        let group_id = if stop {
            "corrupt-stop"
        } else {
            "corrupt-restart"
        };
        let policy = if stop {
            josefine::OnHandlerError::Stop
        } else {
            josefine::OnHandlerError::RestartClaim
        };
        let group = settings(client(&cluster, "m0").await, group_id)
            .on_handler_error(policy)
            .build()
            .unwrap();
        let mut stream = group.stream(&[TOPIC]).unwrap();
        for offset in 0..BATCH {
            let record = within("a record", stream.next()).await.unwrap().unwrap();
            assert_eq!(record.offset(), offset);
            record.mark();
        }
        let err = within("the corrupt batch", stream.next())
            .await
            .unwrap()
            .expect_err("corrupt");
        assert_eq!(err.kind(), &josefine::ErrorKind::CorruptRecords, "{err}");
        let next = within("what follows", stream.next()).await;
        if stop {
            let err = next
                .expect("the stream's end")
                .expect_err("the fatal error");
            assert_eq!(err.kind(), &josefine::ErrorKind::CorruptRecords, "{err}");
            assert!(within("the end", stream.next()).await.is_none());
            assert_eq!(cluster.committed(group_id, TOPIC, 0), Some(BATCH));
        } else {
            let again = next.expect("an item").expect_err("the batch again");
            assert_eq!(
                again.kind(),
                &josefine::ErrorKind::CorruptRecords,
                "{again}"
            );
            stream.close().await.unwrap();
            assert_eq!(cluster.committed(group_id, TOPIC, 0), Some(BATCH));
        }
    }
}
