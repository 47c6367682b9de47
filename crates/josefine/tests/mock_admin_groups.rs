//! Consumer-group administration against the mock cluster (three brokers): listing
//! the groups of every broker, describing a running group (members, client ids,
//! assignments, subscriptions), its lag while the handlers hold records back and
//! after they catch up, a commit outside the log, a coordinator that moves or is
//! loading, a broker whose ListGroups fails, a group that does not exist, and the
//! versions without group states or GROUP_ID_NOT_FOUND.
//!
//! A librdkafka member (through `tests/interop/rdkafka.py`, skipped without
//! `JOSEFINE_PYTHON` unless the run requires it) is described too, so the decoding
//! of another client's subscription and assignment is checked; Tansu does not
//! return them.
//!
//! Timings as in mock_group.rs: 1.5 s sessions, 100 ms heartbeats and auto-commits;
//! every wait is bounded so a bug fails a test instead of hanging it.

#[allow(unused_macros, unused_imports)]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use josefine::protocol::records::BatchBuilder;
use josefine::{
    Claim, Client, ConsumerGroup, GroupHandler, GroupState, KafkaCode, OffsetReset, Session,
    TopicPartition,
};
use josefine_mock::{Action, ApiKey, Intercept, MockCluster, ResponseError};
use tokio::task::JoinHandle;

const EVENTS: &str = "events";
const PARTITIONS: i32 = 6;
/// A topic the members subscribe to that starts empty: assigned, never committed.
const FRESH: &str = "fresh";
/// A topic the group committed once but nobody subscribes to any more.
const OLD: &str = "old";
/// A topic the group committed that no longer exists.
const GONE: &str = "gone";
/// Records per `events` partition before the members start.
const FIRST: i64 = 30;
const PATIENCE: Duration = Duration::from_secs(10);

async fn cluster_with(
    configure: impl FnOnce(josefine_mock::MockClusterBuilder) -> josefine_mock::MockClusterBuilder,
) -> MockCluster {
    configure(
        MockCluster::builder()
            .brokers(3)
            .topic(EVENTS, PARTITIONS)
            .topic(FRESH, 1)
            .topic(OLD, 1),
    )
    .start()
    .await
    .unwrap()
}

async fn cluster() -> MockCluster {
    cluster_with(|b| b).await
}

/// Appends `offsets` to `topic`/`partition`, ten records a batch.
fn append(cluster: &MockCluster, topic: &str, partition: i32, offsets: Range<i64>) {
    let mut base = offsets.start;
    while base < offsets.end {
        let end = (base + 10).min(offsets.end);
        let mut batch = BatchBuilder::new().base_offset(base);
        for o in base..end {
            batch
                .push(
                    0,
                    None,
                    Some(format!("{topic}-{partition}-{o}").as_bytes()),
                    &[],
                )
                .unwrap();
        }
        assert_eq!(
            cluster.append_batch(topic, partition, batch.finish().unwrap()),
            base
        );
        base = end;
    }
}

fn requests_at(cluster: &MockCluster, node: i32, api: ApiKey) -> usize {
    cluster
        .broker(node)
        .requests()
        .iter()
        .filter(|r| r.api_key == api)
        .count()
}

fn requests(cluster: &MockCluster, api: ApiKey) -> usize {
    (1..=3).map(|n| requests_at(cluster, n, api)).sum()
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

/// A group name whose coordinator is `node`.
fn group_at(cluster: &MockCluster, prefix: &str, node: i32) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|g| cluster.group_coordinator(g) == node)
        .unwrap()
}

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?} waiting for {what}"))
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A partition of a lag report: topic, partition, committed, high watermark, lag,
/// owner's client id.
type LagRow<'a> = (
    &'a str,
    i32,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<&'a str>,
);

/// Partition, committed, high watermark, lag.
type Offsets = (i32, Option<i64>, Option<i64>, Option<i64>);

// ---- members ----

/// What the members' handlers saw: each member's latest claims.
#[derive(Debug, Default)]
struct Seen {
    claims: HashMap<usize, (i32, Vec<TopicPartition>)>,
}

/// Marks every record it gets, except while `hold` is set: then it keeps the record
/// in hand, unmarked, so the group's commits stand still while records pile up.
struct Gated {
    member: usize,
    seen: Arc<Mutex<Seen>>,
    hold: Arc<AtomicBool>,
}

impl GroupHandler for Gated {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        self.seen.lock().unwrap().claims.insert(
            self.member,
            (session.generation(), session.claims().to_vec()),
        );
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            let record = record?;
            while self.hold.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            session.mark(&record);
        }
        Ok(())
    }
}

struct Member {
    group: ConsumerGroup,
    task: JoinHandle<josefine::Result<()>>,
}

/// Starts member `index` (client id `m{index}`) of `group` on `topics`.
async fn start(
    cluster: &MockCluster,
    group: &str,
    index: usize,
    topics: &[&str],
    seen: &Arc<Mutex<Seen>>,
    hold: &Arc<AtomicBool>,
) -> Member {
    let client = client(cluster, &format!("m{index}")).await;
    let member = ConsumerGroup::builder(client, group)
        .session_timeout(Duration::from_millis(1500))
        .heartbeat_interval(Duration::from_millis(100))
        .rebalance_timeout(Duration::from_secs(10))
        .auto_commit_interval(Duration::from_millis(100))
        .auto_offset_reset(OffsetReset::Earliest)
        .consumer(|c| c.fetch_max_wait(Duration::from_millis(100)))
        .build()
        .unwrap();
    let handler = Gated {
        member: index,
        seen: seen.clone(),
        hold: hold.clone(),
    };
    let runner = member.clone();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let task = tokio::spawn(async move {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        runner.consume(&topics, handler).await
    });
    Member {
        group: member,
        task,
    }
}

async fn close_all(members: Vec<Member>) {
    for m in &members {
        m.group.close().await.unwrap();
    }
    for m in members {
        within("consume to return after close", m.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// The members' latest claims, once they are all of the group's generation and
/// together cover `layout` exactly once.
fn settled_claims(
    cluster: &MockCluster,
    group: &str,
    seen: &Mutex<Seen>,
    members: usize,
    layout: &[(&str, i32)],
) -> Option<HashMap<usize, Vec<TopicPartition>>> {
    let seen = seen.lock().unwrap();
    let generation = cluster.group_generation(group)?;
    if seen.claims.len() != members || seen.claims.values().any(|(g, _)| *g != generation) {
        return None;
    }
    let mut all: Vec<TopicPartition> = seen
        .claims
        .values()
        .flat_map(|(_, c)| c.iter().cloned())
        .collect();
    all.sort();
    let wanted: Vec<TopicPartition> = layout
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(*t, p)))
        .collect();
    (all == wanted).then(|| {
        seen.claims
            .iter()
            .map(|(m, (_, c))| {
                let mut c = c.clone();
                c.sort();
                (*m, c)
            })
            .collect()
    })
}

fn committed_everywhere(cluster: &MockCluster, group: &str, offset: impl Fn(i32) -> i64) -> bool {
    (0..PARTITIONS).all(|p| cluster.committed(group, EVENTS, p) == Some(offset(p)))
}

// ---- 1. a running group ----

/// Two members on `events` and `fresh`; the group also holds a commit on `old`
/// (nobody's now) and on `gone` (deleted). Lists, describes and measures it while
/// the handlers hold new records back (lag = appended - committed) and after they
/// caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_group_is_listed_described_and_measured() {
    let cluster = cluster().await;
    for p in 0..PARTITIONS {
        append(&cluster, EVENTS, p, 0..FIRST);
    }
    append(&cluster, OLD, 0, 0..20);
    // The groups of the test, one coordinated by each broker.
    let group = group_at(&cluster, "running", 2);
    let offsets_only = group_at(&cluster, "offsets-only", 3);
    let other = group_at(&cluster, "other", 1);
    cluster.set_committed(&group, OLD, 0, 5);
    cluster.set_committed(&group, GONE, 0, 7);
    cluster.set_committed(&offsets_only, OLD, 0, 20);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let hold = Arc::new(AtomicBool::new(false));
    cluster.set_group_initial_rebalance_delay(Duration::from_millis(300));
    let mut members = Vec::new();
    for i in 0..2 {
        members.push(start(&cluster, &group, i, &[EVENTS, FRESH], &seen, &hold).await);
    }
    let lone = start(&cluster, &other, 9, &[OLD], &seen_other(), &hold).await;
    let layout = [(EVENTS, PARTITIONS), (FRESH, 1)];
    wait_until("the group to settle and commit every record", || {
        settled_claims(&cluster, &group, &seen, 2, &layout).is_some()
            && committed_everywhere(&cluster, &group, |_| FIRST)
    })
    .await;
    wait_until("the other group to be stable", || {
        cluster.group_state(&other) == josefine_mock::GroupState::Stable
    })
    .await;
    let claims = settled_claims(&cluster, &group, &seen, 2, &layout).unwrap();

    let admin = client(&cluster, "admin").await.admin();

    // list: every broker asked once, each group once, with its coordinator.
    let listed = admin.list_groups().await.unwrap();
    for node in 1..=3 {
        assert_eq!(
            requests_at(&cluster, node, ApiKey::ListGroups),
            1,
            "broker {node} asked once"
        );
    }
    let summary: Vec<(&str, &str, Option<&GroupState>, Option<i32>)> = listed
        .iter()
        .map(|g| {
            (
                g.group_id.as_str(),
                g.protocol_type.as_str(),
                g.state.as_ref(),
                g.coordinator,
            )
        })
        .collect();
    let mut expected = vec![
        (
            group.as_str(),
            "consumer",
            Some(&GroupState::Stable),
            Some(2),
        ),
        (offsets_only.as_str(), "", Some(&GroupState::Empty), Some(3)),
        (
            other.as_str(),
            "consumer",
            Some(&GroupState::Stable),
            Some(1),
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(summary, expected);

    // describe: the members as the handlers know them.
    let described = admin.describe_group(&group).await.unwrap();
    assert_eq!(described.group_id, group);
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.protocol_type, "consumer");
    assert_eq!(described.protocol, "range");
    assert_eq!(described.coordinator, Some(2));
    let mut by_client: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    for m in &described.members {
        assert!(!m.member_id.is_empty());
        assert!(!m.client_host.is_empty());
        assert_eq!(m.group_instance_id, None);
        assert_eq!(m.subscribed_topics, [EVENTS, FRESH]);
        by_client.insert(m.client_id.clone(), m.assignment.clone());
    }
    let expected: BTreeMap<String, Vec<TopicPartition>> = claims
        .iter()
        .map(|(i, c)| (format!("m{i}"), c.clone()))
        .collect();
    assert_eq!(by_client, expected, "assignments are the handlers' claims");
    let owner_of: HashMap<TopicPartition, String> = described
        .members
        .iter()
        .flat_map(|m| {
            m.assignment
                .iter()
                .map(move |tp| (tp.clone(), m.client_id.clone()))
        })
        .collect();

    // lag while the handlers hold records back: commits stay at FIRST.
    hold.store(true, Ordering::Release);
    for p in 0..PARTITIONS {
        append(&cluster, EVENTS, p, FIRST..FIRST + 3 * (i64::from(p) + 1));
    }
    append(&cluster, FRESH, 0, 0..4);
    let lag = admin.group_lag(&group).await.unwrap();
    assert!(committed_everywhere(&cluster, &group, |_| FIRST));
    assert_eq!(cluster.committed(&group, FRESH, 0), None);
    assert_eq!(lag.group_id, group);
    assert_eq!(lag.state, GroupState::Stable);
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
                p.owner.as_ref().map(|o| o.client_id.as_str()),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for p in 0..PARTITIONS {
        let appended = 3 * (i64::from(p) + 1);
        let owner = owner_of[&TopicPartition::new(EVENTS, p)].as_str();
        expected.push((
            EVENTS,
            p,
            Some(FIRST),
            Some(FIRST + appended),
            Some(appended),
            Some(owner),
        ));
    }
    let fresh_owner = owner_of[&TopicPartition::new(FRESH, 0)].as_str();
    expected.push((FRESH, 0, None, Some(4), None, Some(fresh_owner)));
    expected.push((GONE, 0, Some(7), None, None, None));
    expected.push((OLD, 0, Some(5), Some(20), Some(15), None));
    assert_eq!(rows, expected);
    let appended: i64 = (1..=6).map(|p| 3 * p).sum();
    assert_eq!(lag.total_lag, appended + 15);
    for p in &lag.partitions {
        if let Some(owner) = &p.owner {
            let member = described
                .members
                .iter()
                .find(|m| m.client_id == owner.client_id)
                .unwrap();
            assert_eq!(owner.member_id, member.member_id);
            assert_eq!(owner.client_host, member.client_host);
        }
    }

    // Caught up: only `old` lags.
    hold.store(false, Ordering::Release);
    wait_until("the handlers to catch up and commit", || {
        committed_everywhere(&cluster, &group, |p| FIRST + 3 * (i64::from(p) + 1))
            && cluster.committed(&group, FRESH, 0) == Some(4)
    })
    .await;
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!(lag.total_lag, 15);
    assert!(lag
        .partitions
        .iter()
        .filter(|p| p.topic == EVENTS || p.topic == FRESH)
        .all(|p| p.lag == Some(0)));

    // Closed: Empty, no members, no owners, the commits still measured.
    close_all(members).await;
    close_all(vec![lone]).await;
    let described = admin.describe_group(&group).await.unwrap();
    assert_eq!(described.state, GroupState::Empty);
    assert!(described.members.is_empty());
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!(lag.state, GroupState::Empty);
    assert_eq!(lag.partitions.len(), PARTITIONS as usize + 3);
    assert!(lag.partitions.iter().all(|p| p.owner.is_none()));
    assert_eq!(lag.total_lag, 15);
}

fn seen_other() -> Arc<Mutex<Seen>> {
    Arc::new(Mutex::new(Seen::default()))
}

// ---- 2. offsets outside the log ----

/// A commit below the log start (records deleted) and one past the end: Fetch at
/// those offsets answers OFFSET_OUT_OF_RANGE with no high watermark, as Kafka does;
/// the lag still comes out, from a fetch at the log start, and is never negative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_outside_the_log_still_get_high_watermarks() {
    let cluster = cluster().await;
    append(&cluster, EVENTS, 0, 0..30);
    append(&cluster, EVENTS, 1, 0..30);
    append(&cluster, EVENTS, 2, 0..30);
    cluster.delete_records_before(EVENTS, 0, 20);
    let group = "outside";
    cluster.set_committed(group, EVENTS, 0, 5); // below the log start (20)
    cluster.set_committed(group, EVENTS, 1, 50); // past the end (30)
    cluster.set_committed(group, EVENTS, 2, 10); // inside

    let admin = client(&cluster, "admin").await.admin();
    let lag = admin.group_lag(group).await.unwrap();
    let rows: Vec<Offsets> = lag
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed, p.high_watermark, p.lag))
        .collect();
    assert_eq!(
        rows,
        [
            (0, Some(5), Some(30), Some(25)),
            (1, Some(50), Some(30), Some(0)),
            (2, Some(10), Some(30), Some(20)),
        ]
    );
    assert_eq!(lag.total_lag, 45);
    assert_eq!(lag.state, GroupState::Empty);
    assert_eq!(
        requests(&cluster, ApiKey::ListOffsets),
        2,
        "the log start was looked up for the two partitions out of range"
    );
}

// ---- 3. the coordinator ----

/// The coordinator moves after the admin cached it: DescribeGroups and OffsetFetch
/// at the old one get NOT_COORDINATOR, the admin looks it up again and asks the new
/// one. Refused again, it keeps asking with backoff until `request.timeout.ms`, then
/// fails with the retriable error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_move_is_followed() {
    let cluster = cluster().await;
    append(&cluster, EVENTS, 0, 0..30);
    let group = group_at(&cluster, "moving", 1);
    cluster.set_committed(&group, EVENTS, 0, 10);
    let admin = client(&cluster, "admin").await.admin();
    assert_eq!(
        admin.describe_group(&group).await.unwrap().coordinator,
        Some(1)
    );
    let lookups = requests(&cluster, ApiKey::FindCoordinator);

    cluster.move_coordinator(&group, 3);
    let described = admin.describe_group(&group).await.unwrap();
    assert_eq!(described.coordinator, Some(3));
    assert_eq!(described.state, GroupState::Empty);
    assert_eq!(requests_at(&cluster, 1, ApiKey::DescribeGroups), 2);
    assert_eq!(requests_at(&cluster, 3, ApiKey::DescribeGroups), 1);
    assert_eq!(requests(&cluster, ApiKey::FindCoordinator), lookups + 1);
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!(lag.total_lag, 20);
    assert_eq!(requests_at(&cluster, 1, ApiKey::OffsetFetch), 0);

    // It moves back while group_lag's DescribeGroups and OffsetFetch run concurrently.
    // The first of the two to be sent reaches the old coordinator (3) and is retried
    // at the new one. The second reaches 3 as well unless 3 answered the first before
    // it was sent (the polling thread preempted in between, as under load): then the
    // cache already names 1. Either way no request goes twice to either broker.
    cluster.move_coordinator(&group, 1);
    let count = |node, api| requests_at(&cluster, node, api);
    let before = [
        count(1, ApiKey::DescribeGroups),
        count(3, ApiKey::DescribeGroups),
        count(1, ApiKey::OffsetFetch),
        count(3, ApiKey::OffsetFetch),
    ];
    assert_eq!(admin.group_lag(&group).await.unwrap().total_lag, 20);
    let [describes_new, describes_old, fetches_new, fetches_old] = [
        count(1, ApiKey::DescribeGroups) - before[0],
        count(3, ApiKey::DescribeGroups) - before[1],
        count(1, ApiKey::OffsetFetch) - before[2],
        count(3, ApiKey::OffsetFetch) - before[3],
    ];
    assert_eq!((describes_new, fetches_new), (1, 1));
    assert!(describes_old <= 1 && fetches_old <= 1);
    assert!(
        describes_old + fetches_old >= 1,
        "the cached (old) coordinator was asked first"
    );

    // OffsetFetch alone refused with NOT_COORDINATOR (deterministically, whatever the
    // order of the two requests): looked up again and retried once at the answer.
    let refusal = cluster.broker(1).intercept(
        Intercept::api(ApiKey::OffsetFetch).times(1),
        Action::error(ResponseError::NotCoordinator),
    );
    let (describes, fetches) = (
        count(1, ApiKey::DescribeGroups),
        count(1, ApiKey::OffsetFetch),
    );
    let lookups = requests(&cluster, ApiKey::FindCoordinator);
    assert_eq!(admin.group_lag(&group).await.unwrap().total_lag, 20);
    assert_eq!(refusal.hits(), 1);
    assert_eq!(count(1, ApiKey::OffsetFetch), fetches + 2);
    assert_eq!(count(1, ApiKey::DescribeGroups), describes + 1);
    assert!(requests(&cluster, ApiKey::FindCoordinator) > lookups);

    // NOT_COORDINATOR twice from the coordinator: looked up again and asked again,
    // with backoff, until it answers.
    let refusal = cluster.broker(1).intercept(
        Intercept::api(ApiKey::DescribeGroups).times(2),
        Action::error(ResponseError::NotCoordinator),
    );
    let before = requests_at(&cluster, 1, ApiKey::DescribeGroups);
    let described = admin.describe_group(&group).await.unwrap();
    assert_eq!(described.coordinator, Some(1));
    assert_eq!(refusal.hits(), 2);
    assert_eq!(requests_at(&cluster, 1, ApiKey::DescribeGroups), before + 3);

    // Refused for good: once request.timeout.ms (2 s here) has passed, the typed,
    // retriable error with the group and the API.
    cluster.broker(1).intercept(
        Intercept::api(ApiKey::DescribeGroups),
        Action::error(ResponseError::NotCoordinator),
    );
    let started = tokio::time::Instant::now();
    let err = admin.describe_group(&group).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(2), "gave up early");
    assert_eq!(err.code(), Some(KafkaCode::NOT_COORDINATOR), "{err}");
    assert!(err.is_retriable());
    assert_eq!(err.context().group(), Some(group.as_str()));
    assert_eq!(err.context().api(), Some("DescribeGroups"));
}

/// A coordinator loading its groups: DescribeGroups and the lag are asked again with
/// backoff while it loads, and get the typed, retriable COORDINATOR_LOAD_IN_PROGRESS
/// once `request.timeout.ms` has passed; the broker's ListGroups fails the whole list
/// with the broker named. Once loaded, the same calls answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loading_coordinator_fails_with_typed_errors() {
    let cluster = cluster().await;
    let group = group_at(&cluster, "loading", 2);
    cluster.set_committed(&group, EVENTS, 0, 1);
    let admin = client(&cluster, "admin").await.admin();
    cluster.set_coordinator_loading(&group, true);

    let err = admin.describe_group(&group).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(KafkaCode::COORDINATOR_LOAD_IN_PROGRESS),
        "{err}"
    );
    assert!(err.is_retriable());
    assert!(
        requests_at(&cluster, 2, ApiKey::DescribeGroups) > 1,
        "asked again"
    );
    let err = admin.group_lag(&group).await.unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::COORDINATOR_LOAD_IN_PROGRESS));

    let err = admin.list_groups().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(KafkaCode::COORDINATOR_LOAD_IN_PROGRESS),
        "{err}"
    );
    let broker = err.context().broker().unwrap_or_default().to_string();
    assert!(broker.starts_with("2@"), "the error names broker 2: {err}");
    assert_eq!(err.context().api(), Some("ListGroups"));

    cluster.set_coordinator_loading(&group, false);
    let listed = admin.list_groups().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].group_id, group);
    assert_eq!(admin.group_lag(&group).await.unwrap().group_id, group);
}

/// Loading for a moment, as a coordinator that has just started: the admin waits it
/// out instead of failing (found by Kafka 4.4's first DescribeGroups after start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_still_loading_is_waited_for() {
    let cluster = cluster().await;
    let group = group_at(&cluster, "starting", 3);
    cluster.set_committed(&group, EVENTS, 0, 4);
    let admin = client(&cluster, "admin").await.admin();
    let loading = cluster.broker(3).intercept(
        Intercept::api(ApiKey::DescribeGroups).times(3),
        Action::error(ResponseError::CoordinatorLoadInProgress),
    );
    let fetch = cluster.broker(3).intercept(
        Intercept::api(ApiKey::OffsetFetch).times(2),
        Action::error(ResponseError::NotCoordinator),
    );
    let lag = admin.group_lag(&group).await.unwrap();
    assert_eq!((loading.hits(), fetch.hits()), (3, 2));
    assert_eq!(
        lag.partitions
            .iter()
            .find(|p| p.topic == EVENTS && p.partition == 0)
            .and_then(|p| p.committed),
        Some(4)
    );
}

/// A broker that drops the connection on ListGroups fails the list too: a list
/// missing that broker's groups would look complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_groups_fails_rather_than_return_a_partial_list() {
    let cluster = cluster().await;
    for node in 1..=3 {
        cluster.set_committed(&group_at(&cluster, "g", node), EVENTS, 0, 1);
    }
    let admin = client(&cluster, "admin").await.admin();
    assert_eq!(admin.list_groups().await.unwrap().len(), 3);
    cluster
        .broker(3)
        .intercept(Intercept::api(ApiKey::ListGroups), Action::Disconnect);
    let err = admin.list_groups().await.unwrap_err();
    assert!(err.is_connection_lost(), "{err}");
    let broker = err.context().broker().unwrap_or_default().to_string();
    assert!(broker.starts_with("3@"), "the error names broker 3: {err}");
}

// ---- 4. groups that do not exist, older versions ----

async fn a_missing_group_is_dead(describe_groups_max: i16) {
    let cluster =
        cluster_with(|b| b.api_versions(ApiKey::DescribeGroups, 0, describe_groups_max)).await;
    cluster.set_committed("present", EVENTS, 0, 1);
    let admin = client(&cluster, "admin").await.admin();
    let described = admin.describe_group("absent").await.unwrap();
    assert_eq!(described.group_id, "absent");
    assert_eq!(described.state, GroupState::Dead);
    assert!(described.members.is_empty());
    let versions: BTreeSet<i16> = cluster
        .brokers()
        .iter()
        .flat_map(|b| b.requests())
        .filter(|r| r.api_key == ApiKey::DescribeGroups)
        .map(|r| r.api_version)
        .collect();
    assert_eq!(versions, BTreeSet::from([describe_groups_max]));

    let lag = admin.group_lag("absent").await.unwrap();
    assert_eq!(lag.state, GroupState::Dead);
    assert!(lag.partitions.is_empty());
    assert_eq!(lag.total_lag, 0);
    let listed = admin.list_groups().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|g| g.group_id.as_str())
            .collect::<Vec<_>>(),
        ["present"]
    );
}

/// DescribeGroups v6 answers GROUP_ID_NOT_FOUND (KIP-1043).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_group_is_dead_with_group_id_not_found() {
    a_missing_group_is_dead(6).await;
}

/// DescribeGroups v5 answers state "Dead" with no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_group_is_dead_before_v6() {
    a_missing_group_is_dead(5).await;
}

/// ListGroups before v4 carries no state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_groups_before_v4_has_no_state() {
    let cluster = cluster_with(|b| b.api_versions(ApiKey::ListGroups, 0, 3)).await;
    cluster.set_committed("a", EVENTS, 0, 1);
    let admin = client(&cluster, "admin").await.admin();
    let listed = admin.list_groups().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, None);
}

// ---- 5. another client's bytes ----

/// A librdkafka member's subscription and assignment (written by librdkafka's own
/// ConsumerProtocol encoder) decode; its commits are measured after it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_librdkafka_member_is_described() {
    let Some(python) = common::python() else {
        return;
    };
    let cluster = cluster().await;
    for p in 0..PARTITIONS {
        append(&cluster, EVENTS, p, 0..FIRST);
    }
    let group = "rdkafka";
    let rdkafka = {
        let bootstrap = cluster.bootstrap();
        tokio::task::spawn_blocking(move || {
            common::rdkafka(
                &python,
                &[
                    "group",
                    "--bootstrap",
                    &bootstrap,
                    "--topic",
                    EVENTS,
                    "--group",
                    group,
                    "--assignor",
                    "roundrobin",
                    "--idle",
                    "2",
                ],
                "",
            )
        })
    };
    let admin = client(&cluster, "admin").await.admin();
    let described = within("the librdkafka member to be stable", async {
        loop {
            let d = admin.describe_group(group).await.unwrap();
            if d.state == GroupState::Stable {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(described.protocol_type, "consumer");
    assert_eq!(described.protocol, "roundrobin");
    let member = &described.members[..];
    assert_eq!(member.len(), 1, "{described:?}");
    assert_eq!(member[0].client_id, "rdkafka");
    assert!(member[0].member_id.starts_with("rdkafka-"));
    assert_eq!(member[0].subscribed_topics, [EVENTS]);
    let all: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(EVENTS, p))
        .collect();
    assert_eq!(member[0].assignment, all);

    within("librdkafka to finish", rdkafka).await.unwrap();
    let lag = admin.group_lag(group).await.unwrap();
    assert_eq!(lag.partitions.len(), PARTITIONS as usize);
    assert!(
        lag.partitions
            .iter()
            .all(|p| p.committed == Some(FIRST) && p.lag == Some(0)),
        "{lag:?}"
    );
}
