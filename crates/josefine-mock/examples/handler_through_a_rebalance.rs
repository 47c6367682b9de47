//! Testing your own consumer-group handler through rebalances, with no Kafka.
//!
//! The application under test is an order processor: a [`GroupHandler`] that
//! parses each record of the `orders` topic and writes the order to a store
//! (in memory here; a database in production), marking the record only once
//! the write is done. What we want to know is the at-least-once promise under
//! membership changes: whatever rebalances happen, every order ends up in the
//! store and the group's committed offsets reach the end of every partition.
//!
//! The scenario, against a three-broker mock cluster:
//!
//! 1. 300 orders wait in six partitions; members `a` and `b` join and share
//!    them (the first rebalance hands `a` everything, `b`'s join a second).
//! 2. Member `c` joins while more orders arrive: the group rebalances to three.
//! 3. Member `a` leaves (a deploy, say) while more orders arrive: the group
//!    rebalances to two, and `a`'s partitions move to `b` and `c`.
//! 4. Everyone closes. Every order is in the store, every partition's
//!    committed offset is its log end.
//!
//! Run it with `cargo run -p josefine-mock --example handler_through_a_rebalance`;
//! `tests/examples.rs` runs the same scenario as a test.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use josefine::{Claim, ConsumerGroup, GroupHandler, OffsetReset, Session};
use josefine_mock::{GroupState, MockCluster, Record};
use tokio::task::JoinHandle;

type BoxError = Box<dyn Error + Send + Sync>;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
const GROUP: &str = "order-processors";
/// How long any step may take before the scenario gives up: far more than it
/// needs (well under a second each), so a hang fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(20);

// ---- the application: what a user would have in their own crate ----

/// An order, as the application stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The order's id.
    pub id: u64,
    /// Who placed it (also the record's key, so a customer's orders stay in order).
    pub customer: String,
    /// Its amount, in cents.
    pub amount_cents: u64,
}

impl Order {
    /// The record's value: `id,customer,amount_cents`.
    fn parse(value: &[u8]) -> Option<Order> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.split(',');
        let order = Order {
            id: fields.next()?.parse().ok()?,
            customer: fields.next()?.to_owned(),
            amount_cents: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(order)
    }
}

/// The application's store. Writes are idempotent (keyed by order id), as
/// they must be under at-least-once delivery; `writes` counts them all, so the
/// test can see redeliveries.
#[derive(Debug, Default)]
pub struct OrderStore {
    /// Every order stored, by id.
    pub orders: BTreeMap<u64, Order>,
    /// Every write, duplicates included.
    pub writes: u64,
    /// Writes per member.
    pub by_member: BTreeMap<&'static str, u64>,
    /// Each session a member's handler saw: (member, generation, partitions).
    pub sessions: Vec<(&'static str, i32, Vec<i32>)>,
}

/// The handler under test.
pub struct OrderProcessor {
    member: &'static str,
    store: Arc<Mutex<OrderStore>>,
}

impl GroupHandler for OrderProcessor {
    async fn setup(&self, session: &Session) -> josefine::Result<()> {
        let partitions = session.claims().iter().map(|tp| tp.partition).collect();
        let mut store = self
            .store
            .lock()
            .expect("the store's lock is never poisoned");
        store
            .sessions
            .push((self.member, session.generation(), partitions));
        Ok(())
    }

    async fn consume_claim(&self, session: &Session, mut claim: Claim) -> josefine::Result<()> {
        // Ends when the session ends (a rebalance, or close), after which the
        // runner commits what was marked.
        while let Some(record) = claim.next().await {
            let record = record?;
            let Some(order) = record.value().and_then(|v| Order::parse(v)) else {
                tracing::warn!(offset = record.offset(), "not an order; skipped");
                session.mark(&record);
                continue;
            };
            {
                let mut store = self
                    .store
                    .lock()
                    .expect("the store's lock is never poisoned");
                store.orders.insert(order.id, order);
                store.writes += 1;
                *store.by_member.entry(self.member).or_default() += 1;
            }
            // Only now: a crash before this line redelivers the order.
            session.mark(&record);
        }
        Ok(())
    }
}

// ---- the test harness ----

/// One member of the group: its handle (to close it) and its `consume` task.
struct Member {
    group: ConsumerGroup,
    task: JoinHandle<josefine::Result<()>>,
}

/// Starts member `name` consuming `orders` with the processor, with timings
/// short enough for a test: 100 ms heartbeats and auto-commits, 100 ms fetch
/// long-polls.
async fn start_member(
    cluster: &MockCluster,
    name: &'static str,
    store: &Arc<Mutex<OrderStore>>,
) -> Result<Member, BoxError> {
    let client = cluster.client_builder().client_id(name).connect().await?;
    let group = ConsumerGroup::builder(client, GROUP)
        .session_timeout(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(100))
        .auto_commit_interval(Duration::from_millis(100))
        .auto_offset_reset(OffsetReset::Earliest)
        .consumer(|c| c.fetch_max_wait(Duration::from_millis(100)))
        .build()?;
    let handler = OrderProcessor {
        member: name,
        store: Arc::clone(store),
    };
    let runner = group.clone();
    let task = tokio::spawn(async move { runner.consume(&[TOPIC], handler).await });
    Ok(Member { group, task })
}

impl Member {
    /// Leaves the group (LeaveGroup, after a final commit) and checks that
    /// `consume` ended cleanly.
    async fn close(self) -> Result<(), BoxError> {
        self.group.close().await?;
        self.task.await??;
        Ok(())
    }
}

/// Orders `ids`, keyed by customer, with amounts that vary.
fn orders(ids: std::ops::Range<u64>) -> impl Iterator<Item = Record> {
    ids.map(|id| {
        let customer = format!("customer-{}", id % 20);
        let value = format!("{id},{customer},{}", 100 + id * 7 % 900);
        Record::new().key(customer).value(value)
    })
}

/// Waits until the group is Stable with `members` members, each member's handler
/// started its session of that generation, and the store holds `orders` orders.
/// (Stable alone is the coordinator's view: a member learns of its assignment a
/// moment later, and orders may all have been stored by the previous generation.)
async fn settle(
    cluster: &MockCluster,
    store: &Arc<Mutex<OrderStore>>,
    members: usize,
    orders: usize,
) -> Result<(), BoxError> {
    let settled = cluster
        .wait_until(PATIENCE, |c| {
            let store = store.lock().expect("never poisoned");
            let started = |generation: i32| {
                let mut seen: Vec<&str> = store
                    .sessions
                    .iter()
                    .filter(|(_, g, _)| *g == generation)
                    .map(|(m, _, _)| *m)
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                seen.len() == members
            };
            c.group_state(GROUP) == GroupState::Stable
                && c.group_members(GROUP).len() == members
                && c.group_generation(GROUP).is_some_and(started)
                && store.orders.len() == orders
        })
        .await;
    if settled {
        return Ok(());
    }
    let stored = store.lock().expect("never poisoned").orders.len();
    Err(format!(
        "gave up waiting for {members} members and {orders} orders: the group is {} with {} \
         members, the store has {stored} orders",
        cluster.group_state(GROUP),
        cluster.group_members(GROUP).len(),
    )
    .into())
}

/// What the scenario saw, for `main` to print and the test to check.
#[derive(Debug)]
pub struct Report {
    /// The orders produced.
    pub produced: u64,
    /// The store at the end.
    pub store: OrderStore,
    /// Per partition: (committed offset, log end offset).
    pub committed: Vec<(Option<i64>, i64)>,
    /// The group's generation at the end.
    pub generation: Option<i32>,
}

/// Runs the scenario and checks the at-least-once promise, returning what
/// happened.
pub async fn run() -> Result<Report, BoxError> {
    let cluster = MockCluster::builder()
        .brokers(3)
        .topic(TOPIC, PARTITIONS)
        .start()
        .await?;
    let store = Arc::new(Mutex::new(OrderStore::default()));

    // 1. Two members share the first 300 orders.
    cluster.produce(TOPIC, orders(0..300))?;
    let a = start_member(&cluster, "a", &store).await?;
    let b = start_member(&cluster, "b", &store).await?;
    settle(&cluster, &store, 2, 300).await?;

    // 2. A third member joins while orders keep coming.
    let c = start_member(&cluster, "c", &store).await?;
    cluster.produce(TOPIC, orders(300..450))?;
    settle(&cluster, &store, 3, 450).await?;

    // 3. One leaves; its partitions move to the other two.
    a.close().await?;
    cluster.produce(TOPIC, orders(450..600))?;
    settle(&cluster, &store, 2, 600).await?;

    // 4. Everyone leaves; each commits what it marked on the way out.
    b.close().await?;
    c.close().await?;

    let store = std::mem::take(&mut *store.lock().expect("never poisoned"));
    let committed: Vec<(Option<i64>, i64)> = (0..PARTITIONS)
        .map(|p| {
            (
                cluster.committed(GROUP, TOPIC, p),
                cluster.log_end_offset(TOPIC, p),
            )
        })
        .collect();
    let report = Report {
        produced: 600,
        generation: cluster.group_generation(GROUP),
        store,
        committed,
    };

    // At least once: every order stored...
    let missing: Vec<u64> = (0..report.produced)
        .filter(|id| !report.store.orders.contains_key(id))
        .collect();
    if !missing.is_empty() {
        return Err(format!("orders never stored: {missing:?}").into());
    }
    // ... and every partition committed to its end, so a restart redelivers nothing.
    for (p, (committed, end)) in report.committed.iter().enumerate() {
        if *committed != Some(*end) {
            return Err(format!("partition {p} committed {committed:?}, its end is {end}").into());
        }
    }
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // RUST_LOG=debug shows what the client and the mock do.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let report = run().await?;
    println!(
        "{} orders produced, {} stored, {} writes ({} redelivered)",
        report.produced,
        report.store.orders.len(),
        report.store.writes,
        report.store.writes - report.produced,
    );
    for (member, generation, partitions) in &report.store.sessions {
        println!("member {member}, generation {generation}: partitions {partitions:?}");
    }
    println!("writes per member: {:?}", report.store.by_member);
    println!(
        "committed offsets (committed, log end) per partition: {:?}; final generation {:?}",
        report.committed, report.generation
    );
    Ok(())
}
