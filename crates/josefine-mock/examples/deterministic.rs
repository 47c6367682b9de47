//! Reproducible runs: a deterministic mock cluster on tokio's paused clock.
//!
//! `MockClusterBuilder::deterministic(seed)` fixes what the mock would draw at
//! random (topic ids, SCRAM salts and nonces, latency jitter, which requests a
//! drop rate drops) and the default timestamps of produced records; member
//! ids, producer ids and fetch session ids count up in any mode. A paused
//! clock (`start_paused`, tokio's `test-util` feature) takes the wall clock
//! out: timers fire in virtual time, as soon as the runtime has nothing else
//! to do, so session timeouts and long polls cost no real time either.
//!
//! This example runs one scenario (records produced, two members joining a
//! group one after the other, latency with jitter, a scheduled leader move)
//! three times and compares what the mock decided: twice with seed 42, which
//! must agree, and once with seed 43, whose topic id must differ.
//!
//! What stays outside the seed's reach: the ports the brokers listen on,
//! the client's own randomness (Josefine's backoff jitter, its SCRAM nonces),
//! and the order in which tokio runs tasks. The scenario below therefore
//! waits for each step to finish before it starts the next, and compares only
//! what the mock decided.
//!
//! Run it with `cargo run -p josefine-mock --example deterministic`;
//! `tests/examples.rs` runs the same scenario as a test.

use std::error::Error;
use std::time::Duration;

use josefine::{Claim, ConsumerGroup, GroupHandler, OffsetReset, Session};
use josefine_mock::{GroupState, MockCluster, Produced, Record};

type BoxError = Box<dyn Error + Send + Sync>;

const TOPIC: &str = "events";
const GROUP: &str = "auditors";
const PATIENCE: Duration = Duration::from_secs(60);

/// What the mock decided in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// The topic's id (KIP-516).
    pub topic_id: Option<uuid::Uuid>,
    /// Where each produced record went, with its offset and timestamp.
    pub produced: Vec<Produced>,
    /// The group's member ids once both members joined, in join order.
    pub members: Vec<String>,
    /// The group's generation once both members joined.
    pub generation: Option<i32>,
    /// The committed offsets at the end.
    pub committed: Vec<Option<i64>>,
    /// Partition 1's leader epoch after the scheduled leader move.
    pub leader_epoch: Option<i32>,
}

/// A handler that marks every record.
struct Marker;

impl GroupHandler for Marker {
    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        while let Some(record) = claim.next().await {
            session.mark(&record?);
        }
        Ok(())
    }
}

async fn member(cluster: &MockCluster, name: &str) -> Result<ConsumerGroup, BoxError> {
    let client = cluster.client_builder().client_id(name).connect().await?;
    let group = ConsumerGroup::builder(client, GROUP)
        .session_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_millis(500))
        .auto_commit_interval(Duration::from_millis(200))
        .auto_offset_reset(OffsetReset::Earliest)
        .build()?;
    let runner = group.clone();
    tokio::spawn(async move { runner.consume(&[TOPIC], Marker).await });
    Ok(group)
}

async fn wait(
    cluster: &MockCluster,
    what: &str,
    condition: impl FnMut(&MockCluster) -> bool,
) -> Result<(), BoxError> {
    if cluster.wait_until(PATIENCE, condition).await {
        Ok(())
    } else {
        let committed: Vec<Option<i64>> =
            (0..3).map(|p| cluster.committed(GROUP, TOPIC, p)).collect();
        Err(format!(
            "gave up waiting for {what}: the group is {} with members {:?}, committed {committed:?}",
            cluster.group_state(GROUP),
            cluster.group_members(GROUP)
        )
        .into())
    }
}

/// Runs the scenario on a cluster seeded with `seed`.
pub async fn run(seed: u64) -> Result<Transcript, BoxError> {
    let cluster = MockCluster::builder()
        .deterministic(seed)
        .brokers(3)
        .topic(TOPIC, 3)
        .start()
        .await?;
    cluster.set_latency(Duration::from_millis(2));
    cluster.set_latency_jitter(Duration::from_millis(3));
    let produced = cluster.produce(
        TOPIC,
        (0..30).map(|i| {
            Record::new()
                .key(format!("user-{}", i % 10))
                .value(format!("event {i}"))
        }),
    )?;
    let moved = cluster.after(Duration::from_millis(300), |c| c.move_leader(TOPIC, 1, 3));

    let a = member(&cluster, "a").await?;
    wait(&cluster, "member a alone", |c| {
        c.group_state(GROUP) == GroupState::Stable && c.group_members(GROUP).len() == 1
    })
    .await?;
    let b = member(&cluster, "b").await?;
    wait(&cluster, "members a and b", |c| {
        c.group_state(GROUP) == GroupState::Stable && c.group_members(GROUP).len() == 2
    })
    .await?;
    let members = cluster
        .group_members(GROUP)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let generation = cluster.group_generation(GROUP);

    let ends: Vec<i64> = (0..3).map(|p| cluster.log_end_offset(TOPIC, p)).collect();
    // A partition without records has nothing to commit.
    wait(&cluster, "every partition committed to its end", |c| {
        (0..3).all(|p| {
            let end = ends[p as usize];
            end == 0 || c.committed(GROUP, TOPIC, p) == Some(end)
        })
    })
    .await?;
    a.close().await.unwrap();
    b.close().await.unwrap();
    moved.wait().await;

    Ok(Transcript {
        topic_id: cluster.topic_id(TOPIC),
        produced,
        members,
        generation,
        committed: (0..3).map(|p| cluster.committed(GROUP, TOPIC, p)).collect(),
        leader_epoch: cluster.leader_epoch(TOPIC, 1),
    })
}

/// Runs the scenario with seeds 42, 42 and 43 and checks that the first two
/// agree and the third differs where the seed matters.
pub async fn compare() -> Result<[Transcript; 3], BoxError> {
    let first = run(42).await?;
    let second = run(42).await?;
    let other = run(43).await?;
    if first != second {
        return Err(format!("two runs with seed 42 differ:\n{first:#?}\n{second:#?}").into());
    }
    if first.topic_id == other.topic_id {
        return Err("seeds 42 and 43 gave the same topic id".into());
    }
    // Partitioning and timestamps depend on the records, not the seed.
    if first.produced != other.produced {
        return Err("the same records landed differently with another seed".into());
    }
    Ok([first, second, other])
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    // RUST_LOG=debug shows what the client and the mock do.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let started = std::time::Instant::now();
    let [first, _, other] = compare().await?;
    println!("seed 42, twice: {first:#?}");
    println!("seed 43: topic id {:?}", other.topic_id);
    println!("three runs in {:?} of real time", started.elapsed());
    Ok(())
}
