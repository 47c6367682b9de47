//! The consumer group protocol (KIP-848, `group.protocol=consumer`) against the
//! mock cluster's coordinator, with faults Kafka cannot be made to produce on
//! demand: heartbeats dropped, delayed, or answered and then lost; members fenced
//! (FENCED_MEMBER_EPOCH) or forgotten (UNKNOWN_MEMBER_ID); the coordinator moving
//! and loading; an assignment naming a topic id the client's metadata does not
//! know yet; a commit refused with STALE_MEMBER_EPOCH; a static member's instance
//! id still held by its crashed predecessor (UNRELEASED_INSTANCE_ID).
//!
//! Every test checks at-least-once delivery (each appended offset processed by some
//! member), that after `close` every partition's committed offset is its end, and
//! that no partition was ever owned twice: neither as the mock's coordinator saw it
//! (`consumer_group_overlaps`: two members reporting it, or one assigned it while
//! another still reported it) nor as the handlers saw it (a claim started while
//! another member's claim of the partition ran). Where no commit can be lost,
//! auto-commit is off, so the only commits are those that hand a partition over
//! and the final ones: a record processed twice then means a hand-over that did
//! not commit.
//!
//! Timings are short (a 1.5 s session, 100 ms heartbeats from the coordinator,
//! a 3 s rebalance timeout); every wait polls a condition, bounded, and fails at
//! once when a member's `consume` fails.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use josefine::{
    Claim, Client, ConsumerGroup, ConsumerGroupBuilder, GroupErrors, GroupHandler, GroupProtocol,
    OffsetReset, Session,
};
use josefine_mock::{
    Action, ApiKey, Intercept, InterceptHandle, MockCluster, Record, ResponseError,
};
use tokio::task::JoinHandle;

const TOPIC: &str = "events";
const PARTITIONS: i32 = 6;
const GROUP: &str = "kip848-group";
/// The coordinator's `group.consumer.session.timeout.ms`, and each member's own.
const SESSION: Duration = Duration::from_millis(1500);
/// How long a wait may take; long next to what the group needs (a second or two).
const PATIENCE: Duration = Duration::from_secs(15);

/// Logs to the test's output with `JOSEFINE_TEST_LOG` set to a filter (as the
/// other suites: `JOSEFINE_TEST_LOG=josefine=debug,josefine_mock=debug`).
fn trace() {
    if let Ok(filter) = std::env::var("JOSEFINE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

// ---- the cluster and its records ----

async fn cluster() -> MockCluster {
    MockCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .consumer_group_session_timeout(SESSION)
        .consumer_group_heartbeat_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap()
}

/// Appends `offsets` to every partition of `topic` (`partitions` of them).
fn produce(cluster: &MockCluster, topic: &str, partitions: i32, offsets: Range<i64>) {
    let records = (0..partitions).flat_map(|p| {
        offsets
            .clone()
            .map(move |o| Record::new().partition(p).value(format!("{p}-{o}")))
    });
    cluster.produce(topic, records).unwrap();
    for p in 0..partitions {
        assert_eq!(cluster.log_end_offset(topic, p), offsets.end);
    }
}

/// Heartbeats from the member whose client id is `client`.
fn heartbeats_of(client: &'static str) -> Intercept {
    Intercept::api(ApiKey::ConsumerGroupHeartbeat)
        .when(move |r| r.client_id.as_deref() == Some(client))
}

fn coordinator(cluster: &MockCluster) -> &josefine_mock::MockBroker {
    cluster.broker(cluster.group_coordinator(GROUP))
}

/// A broker other than `node`.
fn other_than(node: i32) -> i32 {
    node % 3 + 1
}

// ---- what the members did ----

#[derive(Debug, Clone)]
struct SessionSeen {
    member: usize,
    member_id: String,
}

#[derive(Debug, Clone)]
struct ClaimSeen {
    member: usize,
    partition: (String, i32),
    ended: bool,
}

#[derive(Debug, Default)]
struct Log {
    /// Every processed offset per partition, duplicates kept.
    processed: HashMap<(String, i32), Vec<i64>>,
    sessions: Vec<SessionSeen>,
    claims: Vec<ClaimSeen>,
    /// Claims started while another member's claim of the partition ran.
    overlaps: Vec<String>,
    /// Members whose `consume` failed, and how.
    stopped: Vec<(usize, String)>,
}

type Shared = Arc<Mutex<Log>>;

impl Log {
    fn offsets(&self, topic: &str, partition: i32) -> &[i64] {
        self.processed
            .get(&(topic.to_owned(), partition))
            .map_or(&[], Vec::as_slice)
    }

    fn covered(&self, topic: &str, partitions: i32, range: Range<i64>) -> bool {
        (0..partitions).all(|p| {
            let seen: HashSet<i64> = self.offsets(topic, p).iter().copied().collect();
            range.clone().all(|o| seen.contains(&o))
        })
    }

    /// The partitions of `topic` whose claims run now, by member, if they cover
    /// the topic once and exactly `members` run claims.
    fn running(
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
            .filter(|c| !c.ended && c.partition.0 == topic)
        {
            by_member.entry(c.member).or_default().insert(c.partition.1);
            all.push(c.partition.1);
        }
        all.sort_unstable();
        let complete = all == (0..partitions).collect::<Vec<_>>()
            && members.iter().all(|m| by_member.contains_key(m))
            && by_member.keys().all(|m| members.contains(m));
        complete.then_some(by_member)
    }

    /// Whether `members` share the topic evenly (counts differ by one at most).
    fn balanced(&self, members: &[usize]) -> bool {
        self.running(members, TOPIC, PARTITIONS).is_some_and(|by| {
            let counts: Vec<usize> = by.values().map(BTreeSet::len).collect();
            counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1
        })
    }

    fn sessions_of(&self, member: usize) -> Vec<&SessionSeen> {
        self.sessions
            .iter()
            .filter(|s| s.member == member)
            .collect()
    }

    /// A crashed member's claims stopped without their handlers noticing.
    fn forget_claims_of(&mut self, member: usize) {
        for c in self.claims.iter_mut().filter(|c| c.member == member) {
            c.ended = true;
        }
    }

    fn summary(&self) -> String {
        let mut out = String::new();
        for s in &self.sessions {
            out.push_str(&format!(
                "\n  member {} session as {}",
                s.member, s.member_id
            ));
        }
        for c in self.claims.iter().filter(|c| !c.ended) {
            out.push_str(&format!(
                "\n  member {} runs {}-{}",
                c.member, c.partition.0, c.partition.1
            ));
        }
        let mut keys: Vec<&(String, i32)> = self.processed.keys().collect();
        keys.sort();
        for key in keys {
            let offsets = &self.processed[key];
            let distinct: HashSet<&i64> = offsets.iter().collect();
            out.push_str(&format!(
                "\n  {}-{}: {} processed, {} distinct",
                key.0,
                key.1,
                offsets.len(),
                distinct.len()
            ));
        }
        for o in &self.overlaps {
            out.push_str(&format!("\n  overlap: {o}"));
        }
        for (member, e) in &self.stopped {
            out.push_str(&format!("\n  member {member}'s consume failed: {e}"));
        }
        out
    }
}

/// Logs sessions, claims and records (a record is logged before it is marked,
/// which is what at-least-once asks of a handler).
struct Recorder {
    member: usize,
    log: Shared,
    /// Set when one of this member's claims ends (a revocation, before close).
    claim_ended: Arc<AtomicBool>,
}

impl GroupHandler for Recorder {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        self.log.lock().unwrap().sessions.push(SessionSeen {
            member: self.member,
            member_id: session.member_id().to_owned(),
        });
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        let partition = (claim.topic().to_owned(), claim.partition());
        let index = {
            let mut log = self.log.lock().unwrap();
            if let Some(other) = log
                .claims
                .iter()
                .find(|c| !c.ended && c.partition == partition)
            {
                let overlap = format!(
                    "{}-{} claimed by member {} while member {} held it",
                    partition.0, partition.1, self.member, other.member
                );
                log.overlaps.push(overlap);
            }
            log.claims.push(ClaimSeen {
                member: self.member,
                partition: partition.clone(),
                ended: false,
            });
            log.claims.len() - 1
        };
        while let Some(record) = claim.next().await {
            let record = record?;
            self.log
                .lock()
                .unwrap()
                .processed
                .entry(partition.clone())
                .or_default()
                .push(record.offset());
            session.mark(&record);
        }
        self.log.lock().unwrap().claims[index].ended = true;
        self.claim_ended.store(true, Ordering::Release);
        Ok(())
    }
}

// ---- members ----

struct Member {
    group: ConsumerGroup,
    task: JoinHandle<josefine::Result<()>>,
    errors: GroupErrors,
    claim_ended: Arc<AtomicBool>,
}

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

/// A consumer-protocol member: short timings, earliest for partitions without a
/// commit, and no auto-commit (see the module docs).
fn settings(client: Client) -> ConsumerGroupBuilder {
    ConsumerGroup::builder(client, GROUP)
        .protocol(GroupProtocol::Consumer)
        .session_timeout(SESSION)
        .heartbeat_interval(Duration::from_millis(100))
        .rebalance_timeout(Duration::from_secs(3))
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .auto_commit(false)
        .auto_offset_reset(OffsetReset::Earliest)
        .consumer(|c| c.fetch_max_wait(Duration::from_millis(100)))
}

/// Starts member `index` as client `client_id`, consuming `topic`.
async fn start_with(
    cluster: &MockCluster,
    log: &Shared,
    index: usize,
    client_id: &str,
    topic: &str,
    configure: impl FnOnce(ConsumerGroupBuilder) -> ConsumerGroupBuilder,
) -> Member {
    let group = configure(settings(client(cluster, client_id).await))
        .build()
        .unwrap();
    let errors = group.errors();
    let claim_ended = Arc::new(AtomicBool::new(false));
    let handler = Recorder {
        member: index,
        log: log.clone(),
        claim_ended: claim_ended.clone(),
    };
    let (runner, failures, topic) = (group.clone(), log.clone(), topic.to_owned());
    let task = tokio::spawn(async move {
        let result = runner.consume(&[&topic], handler).await;
        if let Err(err) = &result {
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
        errors,
        claim_ended,
    }
}

/// Member `index`, client id `m{index}`, on the test topic.
async fn start(cluster: &MockCluster, log: &Shared, index: usize) -> Member {
    let client_id = format!("m{index}");
    start_with(cluster, log, index, &client_id, TOPIC, |b| b).await
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
    }
}

/// Polls `condition` on what the members did until it holds; fails with the log
/// on timeout, or at once when a member's `consume` failed.
async fn wait_for(log: &Shared, what: &str, mut condition: impl FnMut(&Log) -> bool) {
    let polled = tokio::time::timeout(PATIENCE, async {
        loop {
            {
                let log = log.lock().unwrap();
                if condition(&log) {
                    return true;
                }
                if !log.stopped.is_empty() {
                    return false;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    if polled != Ok(true) {
        panic!(
            "gave up waiting for {what}; the members did:{}",
            log.lock().unwrap().summary()
        );
    }
}

/// Polls a condition on anything else (the mock, an intercept).
async fn until(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits until `members` share the topic evenly and every record below `end` was
/// processed.
async fn settle(log: &Shared, members: &[usize], end: i64) {
    wait_for(
        log,
        &format!("members {members:?} sharing the topic and every record below {end}"),
        |l| l.balanced(members) && l.covered(TOPIC, PARTITIONS, 0..end),
    )
    .await;
}

async fn close(member: Member, index: usize) {
    member.group.close().await.unwrap();
    within(&format!("member {index}'s consume to end"), member.task)
        .await
        .expect("consume does not panic")
        .unwrap_or_else(|e| panic!("member {index}'s consume failed: {e}"));
}

async fn close_all(members: Vec<Member>) {
    for m in &members {
        m.group.close().await.unwrap();
    }
    for (i, m) in members.into_iter().enumerate() {
        within(&format!("member {i}'s consume to end"), m.task)
            .await
            .expect("consume does not panic")
            .unwrap_or_else(|e| panic!("member {i}'s consume failed: {e}"));
    }
}

/// What every test checks at the end: every record below `end` processed, every
/// partition committed at `end`, no partition ever owned twice.
fn assert_delivered(cluster: &MockCluster, log: &Shared, topic: &str, partitions: i32, end: i64) {
    let log = log.lock().unwrap();
    assert!(
        log.covered(topic, partitions, 0..end),
        "{topic}: a record below {end} nobody processed:{}",
        log.summary()
    );
    let committed: Vec<Option<i64>> = (0..partitions)
        .map(|p| cluster.committed(GROUP, topic, p))
        .collect();
    assert!(
        committed.iter().all(|c| *c == Some(end)),
        "{topic}: every partition committed at its end {end}, got {committed:?}"
    );
    assert!(
        log.overlaps.is_empty(),
        "handlers overlapped:{}",
        log.summary()
    );
    let overlaps = cluster.consumer_group_overlaps(GROUP);
    assert!(
        overlaps.is_empty(),
        "the coordinator saw overlaps: {overlaps:?}"
    );
}

/// No record processed twice: what a run without a lost commit must give.
fn assert_processed_once(log: &Shared) {
    let log = log.lock().unwrap();
    for p in 0..PARTITIONS {
        let offsets = log.offsets(TOPIC, p);
        let distinct: HashSet<&i64> = offsets.iter().collect();
        assert_eq!(
            distinct.len(),
            offsets.len(),
            "{TOPIC}-{p}: records processed twice though no commit was lost:{}",
            log.summary()
        );
    }
}

/// Each of `members` ran one session: no fault cost a membership.
fn assert_one_session_each(log: &Shared, members: &[usize]) {
    let log = log.lock().unwrap();
    for m in members {
        assert_eq!(
            log.sessions_of(*m).len(),
            1,
            "member {m} lost its membership:{}",
            log.summary()
        );
    }
}

fn member_id(log: &Shared, member: usize) -> String {
    let log = log.lock().unwrap();
    let sessions = log.sessions_of(member);
    sessions
        .last()
        .expect("the member has a session")
        .member_id
        .clone()
}

fn new_log() -> Shared {
    Arc::new(Mutex::new(Log::default()))
}

// ---- the tests ----

/// Members join one at a time and leave one at a time: each hand-over waits for
/// the previous owner (revoke, commit, report) and nothing is processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_join_one_by_one_and_leave() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let mut members = vec![start(&cluster, &log, 0).await];
    settle(&log, &[0], 30).await;
    assert_eq!(cluster.consumer_group_epoch(GROUP), Some(1));
    members.push(start(&cluster, &log, 1).await);
    settle(&log, &[0, 1], 30).await;
    members.push(start(&cluster, &log, 2).await);
    settle(&log, &[0, 1, 2], 30).await;
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    settle(&log, &[0, 1, 2], 60).await;
    until(
        "the coordinator's view: three members at the group epoch, two partitions each",
        || {
            let listed = cluster.consumer_group_members(GROUP);
            let epoch = cluster.consumer_group_epoch(GROUP);
            listed.len() == 3
                && listed
                    .iter()
                    .all(|(_, e, assigned)| Some(*e) == epoch && assigned.len() == 2)
        },
    )
    .await;
    close(members.pop().unwrap(), 2).await;
    settle(&log, &[0, 1], 60).await;
    produce(&cluster, TOPIC, PARTITIONS, 60..90);
    settle(&log, &[0, 1], 90).await;
    close(members.pop().unwrap(), 1).await;
    settle(&log, &[0], 90).await;
    produce(&cluster, TOPIC, PARTITIONS, 90..120);
    settle(&log, &[0], 120).await;
    close_all(members).await;
    assert_eq!(cluster.group_state(GROUP), josefine_mock::GroupState::Empty);
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 120);
    assert_processed_once(&log);
    assert_one_session_each(&log, &[0, 1, 2]);
}

/// Heartbeats lost with their connection while a member joins: retried, full, and
/// the membership survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_heartbeats_are_retried() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let mut members = vec![
        start(&cluster, &log, 0).await,
        start(&cluster, &log, 1).await,
    ];
    settle(&log, &[0, 1], 30).await;
    let drops = coordinator(&cluster).intercept(heartbeats_of("m0").times(3), Action::Disconnect);
    members.push(start(&cluster, &log, 2).await);
    until("three heartbeats dropped", || drops.hits() == 3).await;
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    settle(&log, &[0, 1, 2], 60).await;
    close_all(members).await;
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 60);
    assert_one_session_each(&log, &[0, 1, 2]);
}

/// A coordinator answering heartbeats slowly (many heartbeat intervals) is not a
/// lost membership, and the hand-over still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_heartbeats_keep_the_membership() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let mut members = vec![start(&cluster, &log, 0).await];
    settle(&log, &[0], 30).await;
    let slow = coordinator(&cluster).intercept(
        heartbeats_of("m0").times(4),
        Action::Delay(Duration::from_millis(800)),
    );
    members.push(start(&cluster, &log, 1).await);
    until("four slow heartbeats", || slow.hits() == 4).await;
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    settle(&log, &[0, 1], 60).await;
    close_all(members).await;
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 60);
    assert_processed_once(&log);
    assert_one_session_each(&log, &[0, 1]);
}

/// The coordinator acts on a heartbeat but its answer is lost (half of it, then
/// the connection closes): the member sends it again with its old epoch, which the
/// coordinator accepts (the previous epoch, owning a subset of the assignment).
/// First the join's answer, then (most likely) the one that moved the member to
/// the next epoch after it gave partitions up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_heartbeat_keeps_the_member_and_its_epoch() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let lost_join =
        coordinator(&cluster).intercept(heartbeats_of("m0").once(), Action::HalfResponse);
    let mut members = vec![start(&cluster, &log, 0).await];
    settle(&log, &[0], 30).await;
    assert_eq!(lost_join.hits(), 1);
    let m0 = member_id(&log, 0);
    let listed = cluster.consumer_group_members(GROUP);
    assert_eq!(
        listed.len(),
        1,
        "the replayed join is the same member: {listed:?}"
    );
    assert_eq!((listed[0].0.as_str(), listed[0].1), (m0.as_str(), 1));
    assert_eq!(cluster.consumer_group_epoch(GROUP), Some(1));

    // Armed once member 0 gave a partition back to member 1: its next heartbeat
    // reports the revocation and moves it to the next epoch.
    let armed = members[0].claim_ended.clone();
    let lost_ack = coordinator(&cluster).intercept(
        heartbeats_of("m0")
            .when(move |_| armed.load(Ordering::Acquire))
            .once(),
        Action::HalfResponse,
    );
    members.push(start(&cluster, &log, 1).await);
    settle(&log, &[0, 1], 30).await;
    until("a heartbeat answer lost after the revocation", || {
        lost_ack.hits() == 1
    })
    .await;
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    settle(&log, &[0, 1], 60).await;
    close_all(members).await;
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 60);
    assert_processed_once(&log);
    assert_one_session_each(&log, &[0, 1]);
}

/// FENCED_MEMBER_EPOCH, injected and from the coordinator: the member gives its
/// partitions up (no commit) and rejoins at epoch 0 with the same member id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_member_rejoins_with_its_member_id() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let members = vec![
        start(&cluster, &log, 0).await,
        start(&cluster, &log, 1).await,
    ];
    settle(&log, &[0, 1], 30).await;
    let id = member_id(&log, 0);

    let fenced = coordinator(&cluster).intercept(
        heartbeats_of("m0").once(),
        Action::error(ResponseError::FencedMemberEpoch),
    );
    wait_for(&log, "member 0's second session", |l| {
        l.sessions_of(0).len() == 2
    })
    .await;
    assert_eq!(fenced.hits(), 1);
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    settle(&log, &[0, 1], 60).await;

    assert!(cluster.fence_consumer_group_member(GROUP, &id));
    wait_for(&log, "member 0's third session", |l| {
        l.sessions_of(0).len() == 3
    })
    .await;
    produce(&cluster, TOPIC, PARTITIONS, 60..90);
    settle(&log, &[0, 1], 90).await;
    {
        let log = log.lock().unwrap();
        let ids: Vec<&str> = log
            .sessions_of(0)
            .iter()
            .map(|s| s.member_id.as_str())
            .collect();
        assert_eq!(ids, [id.as_str(); 3], "a fenced member keeps its member id");
    }
    let listed: Vec<String> = cluster
        .consumer_group_members(GROUP)
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert!(listed.contains(&id), "{listed:?}");
    close_all(members).await;
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 90);
    assert_one_session_each(&log, &[1]);
}

/// UNKNOWN_MEMBER_ID, injected and after an eviction (`kick_member`): the
/// coordinator forgot the member, which rejoins under a new member id. One member
/// only: an evicted member keeps consuming until its next heartbeat tells it, so
/// another member given its partitions at once would overlap it (as in Kafka,
/// whose evictions come after a session timeout, by when the member gave up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_member_rejoins_with_a_new_member_id() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let member = start(&cluster, &log, 0).await;
    settle(&log, &[0], 30).await;
    let first = member_id(&log, 0);

    let unknown = coordinator(&cluster).intercept(
        heartbeats_of("m0").once(),
        Action::error(ResponseError::UnknownMemberId),
    );
    wait_for(&log, "member 0's second session", |l| {
        l.sessions_of(0).len() == 2
    })
    .await;
    assert_eq!(unknown.hits(), 1);
    let second = member_id(&log, 0);
    assert_ne!(second, first, "a forgotten member takes a new member id");
    // The coordinator never forgot the first id (the error was injected): it
    // holds its partitions until its session ends.
    until("the abandoned member id's session to end", || {
        cluster
            .group_members(GROUP)
            .iter()
            .all(|(id, _)| *id != first)
    })
    .await;
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    settle(&log, &[0], 60).await;

    assert!(cluster.kick_member(GROUP, &second));
    wait_for(&log, "member 0's third session", |l| {
        l.sessions_of(0).len() == 3
    })
    .await;
    let third = member_id(&log, 0);
    assert!(
        third != first && third != second,
        "{first} {second} {third}"
    );
    produce(&cluster, TOPIC, PARTITIONS, 60..90);
    settle(&log, &[0], 90).await;
    assert_eq!(cluster.group_members(GROUP), vec![(third, None)]);
    close(member, 0).await;
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 90);
}

/// The group's coordinator moves to another broker mid-run, then loads the
/// group for a while (COORDINATOR_LOAD_IN_PROGRESS); then a member joins. The
/// group is the coordinator's persisted state: nobody loses its membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_moves_and_loads_mid_run() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let mut members = vec![
        start(&cluster, &log, 0).await,
        start(&cluster, &log, 1).await,
    ];
    settle(&log, &[0, 1], 30).await;
    let epoch = cluster.consumer_group_epoch(GROUP);

    let old = cluster.group_coordinator(GROUP);
    let new = other_than(old);
    let heartbeats_at = |node: i32| {
        cluster
            .broker(node)
            .requests()
            .iter()
            .filter(|r| r.api_key == ApiKey::ConsumerGroupHeartbeat)
            .count()
    };
    cluster.move_coordinator(GROUP, new);
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    settle(&log, &[0, 1], 60).await;
    until("heartbeats at the new coordinator", || {
        heartbeats_at(new) >= 4
    })
    .await;
    assert_eq!(
        cluster.consumer_group_epoch(GROUP),
        epoch,
        "the move changed no membership"
    );

    cluster.set_coordinator_loading(GROUP, true);
    let before = heartbeats_at(new);
    until("heartbeats refused while loading", || {
        heartbeats_at(new) >= before + 4
    })
    .await;
    cluster.set_coordinator_loading(GROUP, false);

    members.push(start(&cluster, &log, 2).await);
    produce(&cluster, TOPIC, PARTITIONS, 60..90);
    settle(&log, &[0, 1, 2], 90).await;
    close_all(members).await;
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 90);
    assert_processed_once(&log);
    assert_one_session_each(&log, &[0, 1, 2]);
}

/// The assignment names a topic id the member's metadata does not know (the topic
/// was created after the member joined, and its Metadata requests fail for a
/// while): the partitions stay pending and are taken up once metadata knows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_of_an_unknown_topic_id_waits_for_metadata() {
    const LATE: &str = "late";
    trace();
    let cluster = cluster().await;
    let log = new_log();
    let member = start_with(&cluster, &log, 0, "m0", LATE, |b| b).await;
    wait_for(&log, "member 0's session", |l| l.sessions_of(0).len() == 1).await;

    // The next twelve Metadata requests of member 0 fail (top-level, Metadata
    // v13+). A refresh tries every broker it knows and the bootstrap list (six
    // here) before it gives up, so the first refreshes fail.
    let budget = Arc::new(AtomicUsize::new(12));
    let rules: Vec<InterceptHandle> = cluster
        .brokers()
        .iter()
        .map(|broker| {
            let budget = budget.clone();
            broker.intercept(
                Intercept::api(ApiKey::Metadata).when(move |r| {
                    r.client_id.as_deref() == Some("m0")
                        && budget
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                            .is_ok()
                }),
                Action::error(ResponseError::UnknownTopicOrPartition),
            )
        })
        .collect();
    assert!(cluster.create_topic(LATE, 3));
    produce(&cluster, LATE, 3, 0..20);
    until("member 0 assigned the new topic", || {
        cluster
            .consumer_group_members(GROUP)
            .first()
            .is_some_and(|(_, _, assigned)| assigned.len() == 3)
    })
    .await;
    wait_for(&log, "the new topic's records", |l| {
        l.covered(LATE, 3, 0..20)
    })
    .await;
    assert_eq!(
        budget.load(Ordering::Acquire),
        0,
        "the member asked for metadata again"
    );
    let refused: usize = rules.iter().map(InterceptHandle::hits).sum();
    assert_eq!(refused, 12);
    close(member, 0).await;
    assert_delivered(&cluster, &log, LATE, 3, 20);
}

/// A commit refused with STALE_MEMBER_EPOCH waits for the member's next epoch
/// (the other member leaving brings it) and is sent again with it: no error, and
/// nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_member_epoch_commit_is_retried_with_the_next_epoch() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let auto = |b: ConsumerGroupBuilder| {
        b.auto_commit(true)
            .auto_commit_interval(Duration::from_millis(100))
    };
    let mut m0 = start_with(&cluster, &log, 0, "m0", TOPIC, auto).await;
    let m1 = start_with(&cluster, &log, 1, "m1", TOPIC, auto).await;
    settle(&log, &[0, 1], 30).await;

    let stale = coordinator(&cluster).intercept(
        Intercept::api(ApiKey::OffsetCommit)
            .when(|r| r.client_id.as_deref() == Some("m0"))
            .once(),
        Action::error(ResponseError::StaleMemberEpoch),
    );
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    until("member 0's commit refused as stale", || stale.hits() == 1).await;
    let epoch_before = cluster
        .consumer_group_members(GROUP)
        .into_iter()
        .find(|(id, _, _)| *id == member_id(&log, 0))
        .map(|(_, epoch, _)| epoch);
    close(m1, 1).await;
    settle(&log, &[0], 60).await;
    let epoch_after = cluster
        .consumer_group_members(GROUP)
        .first()
        .map(|(_, epoch, _)| *epoch);
    assert!(
        epoch_after > epoch_before,
        "{epoch_before:?} -> {epoch_after:?}"
    );
    // Member 0's own partitions: committed by its retried commit, at the new epoch,
    // before anything else would commit them.
    produce(&cluster, TOPIC, PARTITIONS, 60..90);
    settle(&log, &[0], 90).await;
    until("member 0's commits reaching the end", || {
        (0..PARTITIONS).all(|p| cluster.committed(GROUP, TOPIC, p) == Some(90))
    })
    .await;
    let mut errors = Vec::new();
    while let Some(err) = m0.errors.try_recv() {
        errors.push(err.to_string());
    }
    assert!(
        errors.is_empty(),
        "a stale commit is retried, not reported: {errors:?}"
    );
    close(m0, 0).await;
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 90);
    assert_one_session_each(&log, &[0, 1]);
}

/// A static member crashes (no leave) and restarts under a new member id with the
/// same instance id: UNRELEASED_INSTANCE_ID until the crashed incarnation's session
/// ends, retried, then it joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreleased_instance_id_is_retried_until_the_old_session_ends() {
    trace();
    let cluster = cluster().await;
    produce(&cluster, TOPIC, PARTITIONS, 0..30);
    let log = new_log();
    let crashed = start_with(&cluster, &log, 0, "m0", TOPIC, |b| b.instance_id("box-0")).await;
    let m1 = start(&cluster, &log, 1).await;
    settle(&log, &[0, 1], 30).await;
    let old = member_id(&log, 0);

    // The crash: every task of the member stops, without a leave or a commit.
    crashed.task.abort();
    assert!(crashed.task.await.unwrap_err().is_cancelled());
    log.lock().unwrap().forget_claims_of(0);
    produce(&cluster, TOPIC, PARTITIONS, 30..60);
    let restarted = start_with(&cluster, &log, 2, "m0b", TOPIC, |b| b.instance_id("box-0")).await;
    // Its joins are refused while the old incarnation holds the instance id.
    let joins_of = |client: &str| {
        coordinator(&cluster)
            .requests()
            .iter()
            .filter(|r| {
                r.api_key == ApiKey::ConsumerGroupHeartbeat
                    && r.client_id.as_deref() == Some(client)
            })
            .count()
    };
    until("the restarted member asking twice", || joins_of("m0b") >= 2).await;
    // (Its session timeout is long next to two asks, but a very slow machine may
    // have let it run out already.)
    if cluster
        .group_members(GROUP)
        .iter()
        .any(|(id, _)| *id == old)
    {
        assert!(
            log.lock().unwrap().sessions_of(2).is_empty(),
            "a member joined with an instance id its crashed predecessor still holds"
        );
    }
    wait_for(&log, "the restarted member's session", |l| {
        l.sessions_of(2).len() == 1
    })
    .await;
    assert!(cluster
        .group_members(GROUP)
        .iter()
        .all(|(id, _)| *id != old));
    settle(&log, &[1, 2], 60).await;
    close_all(vec![m1, restarted]).await;
    assert_delivered(&cluster, &log, TOPIC, PARTITIONS, 60);
}
