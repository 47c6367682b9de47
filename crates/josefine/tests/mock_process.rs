//! Parallel processing (`ConsumerGroup::process`) against the mock cluster: key order
//! under concurrency, gap-free commits with the done set in their metadata, a member
//! killed mid-run and its successor skipping what it finished, a rebalance mid-flight,
//! poisoned records with and without a dead-letter hook, the metadata limit, and the
//! member-wide buffer bound.
//!
//! Every wait is for a condition, bounded by `PATIENCE` so a bug fails the test
//! instead of hanging it.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use josefine::protocol::records::BatchBuilder;
use josefine::{
    Client, ConsumerGroup, ConsumerGroupBuilder, DoneSet, ErrorKind, OffsetAndMetadata,
    OffsetReset, ProcessOptions, ProcessOrder, Processor, TopicPartition,
};
use josefine_mock::MockCluster;
use tokio::task::JoinHandle;

const TOPIC: &str = "work";
const PATIENCE: Duration = Duration::from_secs(20);

async fn cluster(partitions: i32) -> MockCluster {
    common::trace();
    MockCluster::builder()
        .brokers(1)
        .topic(TOPIC, partitions)
        .start()
        .await
        .unwrap()
}

/// The key of the record at `offset`: `keys` keys round robin.
fn key_of(offset: i64, keys: i64) -> String {
    format!("k{}", offset % keys)
}

/// Appends `records` keyed records to `partition`, a hundred per batch.
fn append(cluster: &MockCluster, partition: i32, records: i64, keys: i64) {
    let mut base = 0;
    while base < records {
        let end = (base + 100).min(records);
        let mut batch = BatchBuilder::new().base_offset(base);
        for o in base..end {
            let key = key_of(o, keys);
            batch
                .push(0, Some(key.as_bytes()), Some(b"v"), &[])
                .unwrap();
        }
        assert_eq!(
            cluster.append_batch(TOPIC, partition, batch.finish().unwrap()),
            base
        );
        base = end;
    }
}

async fn client(cluster: &MockCluster) -> Client {
    Client::builder()
        .bootstrap([cluster.bootstrap()])
        .request_timeout(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .unwrap()
}

fn settings(client: Client, group: &str) -> ConsumerGroupBuilder {
    ConsumerGroup::builder(client, group)
        .session_timeout(Duration::from_millis(1500))
        .heartbeat_interval(Duration::from_millis(100))
        .rebalance_timeout(Duration::from_secs(4))
        .auto_commit_interval(Duration::from_millis(100))
        .auto_offset_reset(OffsetReset::Earliest)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .consumer(|c| c.fetch_max_wait(Duration::from_millis(50)))
}

/// Waits until `done` holds, checking every 10 ms, for at most `PATIENCE`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn committed(
    client: &Client,
    group: &str,
    partitions: i32,
) -> HashMap<i32, OffsetAndMetadata> {
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    client
        .admin()
        .committed_offsets_and_metadata(group, &tps)
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, c)| (tp.partition, c))
        .collect()
}

/// The offsets a commit says are finished below `end`: below its offset, and the done
/// set in its metadata.
fn finished_by(commit: &OffsetAndMetadata, end: i64) -> BTreeSet<i64> {
    let done = commit
        .metadata
        .as_deref()
        .and_then(|m| DoneSet::decode(m, commit.offset))
        .unwrap_or_default();
    (0..end)
        .filter(|&o| o < commit.offset || done.contains(o))
        .collect()
}

/// Processed records: (partition, offset) in the order they finished, per member.
type Log = Arc<Mutex<Vec<(usize, i32, i64)>>>;

fn processed(log: &Log) -> Vec<(i32, i64)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|&(_, p, o)| (p, o))
        .collect()
}

fn spawn_process<F, Fut>(
    group: &ConsumerGroup,
    options: ProcessOptions,
    work: F,
) -> JoinHandle<josefine::Result<()>>
where
    F: Fn(josefine::ConsumerRecord) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), std::io::Error>> + Send + 'static,
{
    let group = group.clone();
    tokio::spawn(async move { group.process(&[TOPIC], options, work).await })
}

async fn close(group: &ConsumerGroup, task: JoinHandle<josefine::Result<()>>) {
    group.close().await.unwrap();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("process returns after close")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_key_never_overlap_and_run_in_offset_order() {
    const RECORDS: i64 = 3000;
    const KEYS: i64 = 60;
    let cluster = cluster(1).await;
    append(&cluster, 0, RECORDS, KEYS);
    let group = settings(client(&cluster).await, "keyed").build().unwrap();

    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let order: Arc<Mutex<HashMap<String, Vec<i64>>>> = Arc::default();
    let overlaps = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let task = {
        let (busy, order, overlaps) = (busy.clone(), order.clone(), overlaps.clone());
        let (peak, running) = (peak.clone(), running.clone());
        spawn_process(
            &group,
            ProcessOptions::new(ProcessOrder::Key, 40),
            move |record| {
                let (busy, order, overlaps) = (busy.clone(), order.clone(), overlaps.clone());
                let (peak, running) = (peak.clone(), running.clone());
                async move {
                    let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
                    if !busy.lock().unwrap().insert(key.clone()) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    order
                        .lock()
                        .unwrap()
                        .entry(key.clone())
                        .or_default()
                        .push(record.offset());
                    tokio::time::sleep(Duration::from_micros(
                        200 + (record.offset() as u64 * 7919) % 1500,
                    ))
                    .await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    busy.lock().unwrap().remove(&key);
                    Ok(())
                }
            },
        )
    };
    until("every record ran", || {
        order.lock().unwrap().values().map(Vec::len).sum::<usize>() == RECORDS as usize
    })
    .await;
    let admin = client(&cluster).await;
    until_committed(&admin, "keyed", 1, RECORDS).await;
    close(&group, task).await;

    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two records of one key ran at once"
    );
    let order = order.lock().unwrap();
    for k in 0..KEYS {
        let key = format!("k{k}");
        let expected: Vec<i64> = (0..RECORDS).filter(|o| o % KEYS == k).collect();
        assert_eq!(
            order[&key], expected,
            "{key} ran in offset order, each record once"
        );
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak > 10 && peak <= 40,
        "records ran concurrently, within max_in_flight: {peak}"
    );
}

/// Waits until the group's commit of every partition is `end`.
async fn until_committed(admin: &Client, group: &str, partitions: i32, end: i64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let c = committed(admin, group, partitions).await;
        if (0..partitions).all(|p| c.get(&p).is_some_and(|c| c.offset == end)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the commits did not reach {end}: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_members_successor_runs_only_what_it_had_not_finished() {
    const RECORDS: i64 = 2000;
    const KEYS: i64 = 50;
    // These never finish at the first member; the later records of their keys wait
    // behind them.
    const STUCK: [i64; 3] = [100, 733, 1500];
    let cluster = cluster(1).await;
    append(&cluster, 0, RECORDS, KEYS);
    let admin = client(&cluster).await;

    let first_log: Log = Arc::default();
    let first = settings(client(&cluster).await, "killed").build().unwrap();
    let first_task = {
        let log = first_log.clone();
        spawn_process(
            &first,
            ProcessOptions::new(ProcessOrder::Key, 50),
            move |record| {
                let log = log.clone();
                async move {
                    if STUCK.contains(&record.offset()) {
                        std::future::pending::<()>().await;
                    }
                    log.lock()
                        .unwrap()
                        .push((0, record.partition(), record.offset()));
                    Ok(())
                }
            },
        )
    };
    let blocked: BTreeSet<i64> = (0..RECORDS)
        .filter(|&o| STUCK.iter().any(|&s| o >= s && o % KEYS == s % KEYS))
        .collect();
    let expected_first = RECORDS as usize - blocked.len();
    until("the first member finished all it could", || {
        first_log.lock().unwrap().len() == expected_first
    })
    .await;
    let finished_first: BTreeSet<i64> = processed(&first_log).into_iter().map(|(_, o)| o).collect();
    assert_eq!(finished_first.len(), expected_first, "each record once");
    // Its commit covers exactly what it finished: offset 100 (the first stuck
    // record) with the rest in the done set.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let c = committed(&admin, "killed", 1).await;
        if let Some(c) = c.get(&0) {
            if c.offset == STUCK[0] && finished_by(c, RECORDS) == finished_first {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the done set was not committed: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed: no final commit, no LeaveGroup; the coordinator drops it after its
    // session timeout.
    first_task.abort();
    let _ = first_task.await;

    let second_log: Log = Arc::default();
    let second = settings(client(&cluster).await, "killed").build().unwrap();
    let second_task = {
        let log = second_log.clone();
        spawn_process(
            &second,
            ProcessOptions::new(ProcessOrder::Key, 50),
            move |record| {
                let log = log.clone();
                async move {
                    log.lock()
                        .unwrap()
                        .push((1, record.partition(), record.offset()));
                    Ok(())
                }
            },
        )
    };
    until("the successor ran the rest", || {
        second_log.lock().unwrap().len() >= blocked.len()
    })
    .await;
    until_committed(&admin, "killed", 1, RECORDS).await;
    close(&second, second_task).await;
    let rerun: Vec<i64> = processed(&second_log).into_iter().map(|(_, o)| o).collect();
    let rerun_set: BTreeSet<i64> = rerun.iter().copied().collect();
    assert_eq!(
        rerun.len(),
        rerun_set.len(),
        "each record once at the successor"
    );
    assert_eq!(
        rerun_set, blocked,
        "the successor ran exactly the records the killed member had not finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_mid_flight_loses_nothing_and_repeats_nothing() {
    const PARTITIONS: i32 = 6;
    const RECORDS: i64 = 400;
    let cluster = cluster(PARTITIONS).await;
    for p in 0..PARTITIONS {
        append(&cluster, p, RECORDS, 20);
    }
    let admin = client(&cluster).await;
    let log: Log = Arc::default();
    let work = |member: usize, log: Log| {
        move |record: josefine::ConsumerRecord| {
            let log = log.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                log.lock()
                    .unwrap()
                    .push((member, record.partition(), record.offset()));
                Ok::<(), std::io::Error>(())
            }
        }
    };
    let options = ProcessOptions::new(ProcessOrder::Key, 30);
    let first = settings(client(&cluster).await, "rebalanced")
        .build()
        .unwrap();
    let first_task = spawn_process(&first, options.clone(), work(0, log.clone()));
    until("the first member is under way", || {
        log.lock().unwrap().len() > 300
    })
    .await;
    let second = settings(client(&cluster).await, "rebalanced")
        .build()
        .unwrap();
    let second_task = spawn_process(&second, options, work(1, log.clone()));
    let total = (PARTITIONS as i64 * RECORDS) as usize;
    until("every record ran", || {
        let log = log.lock().unwrap();
        log.iter()
            .map(|&(_, p, o)| (p, o))
            .collect::<HashSet<_>>()
            .len()
            == total
    })
    .await;
    until_committed(&admin, "rebalanced", PARTITIONS, RECORDS).await;
    close(&second, second_task).await;
    close(&first, first_task).await;
    let log = log.lock().unwrap();
    let members: HashSet<usize> = log.iter().map(|&(m, _, _)| m).collect();
    assert_eq!(members.len(), 2, "both members processed records");
    // The revoked partitions drained (their work is 2 ms) and committed their done
    // sets before the other member started them: nothing ran twice.
    assert_eq!(log.len(), total, "no record ran twice");
}

/// What the dead-letter hook got: offset, attempts, error kind, the error's source.
type DeadLettered = (i64, u32, ErrorKind, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_record_goes_to_the_dead_letter_hook_after_its_attempts() {
    const RECORDS: i64 = 500;
    const POISON: i64 = 123;
    let cluster = cluster(1).await;
    append(&cluster, 0, RECORDS, 10);
    let admin = client(&cluster).await;
    let group = settings(client(&cluster).await, "poisoned")
        .build()
        .unwrap();
    let tries = Arc::new(AtomicUsize::new(0));
    let done: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let dead: Arc<Mutex<Vec<DeadLettered>>> = Arc::default();
    let options = {
        let dead = dead.clone();
        ProcessOptions::new(ProcessOrder::Key, 20)
            .attempts(4, Duration::from_millis(5), Duration::from_millis(20))
            .dead_letter(move |record, failure| {
                let dead = dead.clone();
                async move {
                    let source = std::error::Error::source(&failure.error)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    dead.lock().unwrap().push((
                        record.offset(),
                        failure.attempts,
                        failure.error.kind().clone(),
                        source,
                    ));
                    Ok(())
                }
            })
    };
    let task = {
        let (tries, done) = (tries.clone(), done.clone());
        spawn_process(&group, options, move |record| {
            let (tries, done) = (tries.clone(), done.clone());
            async move {
                if record.offset() == POISON {
                    tries.fetch_add(1, Ordering::SeqCst);
                    return Err(std::io::Error::other("poison"));
                }
                done.lock().unwrap().insert(record.offset());
                Ok(())
            }
        })
    };
    until_committed(&admin, "poisoned", 1, RECORDS).await;
    close(&group, task).await;
    assert_eq!(
        tries.load(Ordering::SeqCst),
        4,
        "tried as many times as configured"
    );
    assert_eq!(
        *dead.lock().unwrap(),
        [(POISON, 4, ErrorKind::Handler, "poison".to_string())]
    );
    assert_eq!(
        done.lock().unwrap().len(),
        RECORDS as usize - 1,
        "every other record ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_hook_a_poisoned_record_is_never_committed() {
    const RECORDS: i64 = 300;
    const POISON: i64 = 42;
    let cluster = cluster(1).await;
    append(&cluster, 0, RECORDS, 10);
    let admin = client(&cluster).await;
    let group = settings(client(&cluster).await, "no-hook").build().unwrap();
    let mut errors = group.errors();
    let done: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let task = {
        let done = done.clone();
        spawn_process(
            &group,
            ProcessOptions::new(ProcessOrder::Unordered, 20).attempts(
                2,
                Duration::from_millis(5),
                Duration::from_millis(5),
            ),
            move |record| {
                let done = done.clone();
                async move {
                    if record.offset() == POISON {
                        return Err(std::io::Error::other("poison"));
                    }
                    done.lock().unwrap().insert(record.offset());
                    Ok(())
                }
            },
        )
    };
    // The claim fails, is reported, and restarts from its watermark (the poisoned
    // record) skipping what finished.
    let reported = tokio::time::timeout(PATIENCE, errors.recv())
        .await
        .expect("the failure is reported")
        .unwrap();
    assert!(
        reported.to_string().contains("no dead-letter hook"),
        "{reported}"
    );
    until("every other record ran", || {
        done.lock().unwrap().len() == RECORDS as usize - 1
    })
    .await;
    let commit = loop {
        let c = committed(&admin, "no-hook", 1).await;
        match c.get(&0) {
            Some(c) if finished_by(c, RECORDS).len() == RECORDS as usize - 1 => break c.clone(),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(
        commit.offset, POISON,
        "never committed past the poisoned record"
    );
    assert!(!finished_by(&commit, RECORDS).contains(&POISON));
    close(&group, task).await;
    let c = committed(&admin, "no-hook", 1).await;
    assert_eq!(c[&0].offset, POISON, "nor at close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_done_set_stays_within_the_metadata_limit() {
    const RECORDS: i64 = 3000;
    const LIMIT: usize = 120;
    let cluster = cluster(1).await;
    append(&cluster, 0, RECORDS, 1);
    let admin = client(&cluster).await;
    let group = settings(client(&cluster).await, "limited").build().unwrap();
    let done: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    // Every 7th record waits until the test lets it go: the done set is full of gaps.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let task = {
        let (done, gate) = (done.clone(), gate.clone());
        spawn_process(
            &group,
            ProcessOptions::new(ProcessOrder::Unordered, 1000)
                .max_buffered(RECORDS as usize)
                .metadata_limit(LIMIT),
            move |record| {
                let (done, gate) = (done.clone(), gate.clone());
                async move {
                    if record.offset() % 7 == 0 {
                        let _ = gate.acquire().await.unwrap();
                    }
                    done.lock().unwrap().insert(record.offset());
                    Ok(())
                }
            },
        )
    };
    // Records start only so far above the watermark (0, stuck) that the done set
    // always fits: once all of those finished, and their commit is in, the work
    // waits. Without that bound the commits would leave finished records out.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let commit = loop {
        let c = committed(&admin, "limited", 1).await;
        let finished = done.lock().unwrap().clone();
        if let Some(c) = c.get(&0) {
            let len = c.metadata.as_deref().map_or(0, str::len);
            assert!(len <= LIMIT, "metadata of {len} bytes: {c:?}");
            let named = finished_by(c, RECORDS);
            assert!(
                named.is_subset(&finished),
                "a commit names only finished records"
            );
            if finished.len() > 100 && named == finished {
                break c.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no commit named every finished record: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(commit.offset, 0);
    let highest = *done.lock().unwrap().last().unwrap();
    assert!(
        highest < 8 * LIMIT as i64,
        "records far above the watermark ran: {highest}"
    );
    gate.add_permits(RECORDS as usize);
    until_committed(&admin, "limited", 1, RECORDS).await;
    close(&group, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_records_stay_within_the_member_budget() {
    const RECORDS: i64 = 5000;
    const BUDGET: usize = 200;
    let cluster = cluster(2).await;
    append(&cluster, 0, RECORDS, 5);
    append(&cluster, 1, RECORDS, 5);
    let group = settings(client(&cluster).await, "bounded")
        .consumer(|c| {
            c.fetch_max_wait(Duration::from_millis(50))
                .max_partition_fetch_bytes(2048)
        })
        .build()
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let processor = {
        let (gate, started) = (gate.clone(), started.clone());
        Processor::new(
            ProcessOptions::new(ProcessOrder::Key, 10).max_buffered(BUDGET),
            move |_record: josefine::ConsumerRecord| {
                let (gate, started) = (gate.clone(), started.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.acquire().await.unwrap();
                    Ok::<(), std::io::Error>(())
                }
            },
        )
    };
    let task = {
        let (group, processor) = (group.clone(), processor.clone());
        tokio::spawn(async move { group.consume(&[TOPIC], processor).await })
    };
    // Five keys per partition, two partitions: ten records run, the rest wait.
    until("ten records run", || started.load(Ordering::SeqCst) == 10).await;
    until("both partitions read up to the budget", || {
        processor.buffered() >= BUDGET
    })
    .await;
    for _ in 0..20 {
        let held = processor.buffered();
        // At most one fetch (one 100-record batch: a fetch returns at least one
        // whole batch) per partition past the budget; 10,000 without it.
        assert!(held <= BUDGET + 2 * 100, "{held} records buffered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(processor.in_flight(), 10);
    gate.add_permits(2 * RECORDS as usize);
    let admin = client(&cluster).await;
    until_committed(&admin, "bounded", 2, RECORDS).await;
    close(&group, task).await;
}

/// Records still running when their claim ends (the drain deadline passed) give
/// their permits and their place in the buffer back: the member's limits are not
/// worn down by every rebalance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_ends_mid_flight_gives_its_permits_back() {
    let cluster = cluster(2).await;
    append(&cluster, 0, 300, 30);
    append(&cluster, 1, 300, 30);
    let group = settings(client(&cluster).await, "permits")
        .drain_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let processor = {
        let started = started.clone();
        Processor::new(
            ProcessOptions::new(ProcessOrder::Key, 20),
            move |_record: josefine::ConsumerRecord| {
                let started = started.clone();
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    Ok::<(), std::io::Error>(())
                }
            },
        )
    };
    let task = {
        let (group, processor) = (group.clone(), processor.clone());
        tokio::spawn(async move { group.consume(&[TOPIC], processor).await })
    };
    until("every permit is in use", || processor.in_flight() == 20).await;
    assert!(processor.buffered() > 20);
    close(&group, task).await;
    assert_eq!(processor.in_flight(), 0, "the permits came back");
    assert_eq!(processor.buffered(), 0, "the buffer emptied");
}

/// A function that panics while it makes its future (before any `.await`) fails
/// that try like an error would: retried, then dead-lettered; its permit comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_before_the_future_exists_is_a_failed_try() {
    const RECORDS: i64 = 100;
    const BAD: i64 = 17;
    let cluster = cluster(1).await;
    append(&cluster, 0, RECORDS, 10);
    let admin = client(&cluster).await;
    let group = settings(client(&cluster).await, "panics").build().unwrap();
    let dead: Arc<Mutex<Vec<(i64, u32)>>> = Arc::default();
    let tries = Arc::new(AtomicUsize::new(0));
    let options = {
        let dead = dead.clone();
        ProcessOptions::new(ProcessOrder::Key, 8)
            .attempts(3, Duration::from_millis(1), Duration::from_millis(1))
            .dead_letter(move |record, failure| {
                let dead = dead.clone();
                async move {
                    assert!(
                        failure.error.to_string().contains("panicked"),
                        "{}",
                        failure.error
                    );
                    dead.lock()
                        .unwrap()
                        .push((record.offset(), failure.attempts));
                    Ok(())
                }
            })
    };
    let processor = {
        let tries = tries.clone();
        Processor::new(options, move |record: josefine::ConsumerRecord| {
            if record.offset() == BAD {
                tries.fetch_add(1, Ordering::SeqCst);
                panic!("no future for you");
            }
            async { Ok::<(), std::io::Error>(()) }
        })
    };
    let task = {
        let (group, processor) = (group.clone(), processor.clone());
        tokio::spawn(async move { group.consume(&[TOPIC], processor).await })
    };
    until_committed(&admin, "panics", 1, RECORDS).await;
    close(&group, task).await;
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    assert_eq!(*dead.lock().unwrap(), [(BAD, 3)]);
    assert_eq!(processor.in_flight(), 0);
}

/// Metadata longer than the broker's `offset.metadata.max.bytes` (the mock's is
/// Kafka's default, 4,096) does not hold the offset back: the offset is committed
/// without it (the broker answers OFFSET_METADATA_TOO_LARGE for that partition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_the_broker_refuses_is_dropped_not_the_offset() {
    struct Marker;
    impl josefine::GroupHandler for Marker {
        async fn consume_claim(
            &self,
            _session: &josefine::Session,
            mut claim: josefine::Claim,
        ) -> josefine::Result<()> {
            let long = "x".repeat(5000);
            while let Some(record) = claim.next().await {
                let record = record?;
                claim.mark_offset(record.offset() + 1, &long);
            }
            Ok(())
        }
    }
    let cluster = cluster(1).await;
    append(&cluster, 0, 50, 5);
    let admin = client(&cluster).await;
    let group = settings(client(&cluster).await, "too-long")
        .build()
        .unwrap();
    let task = {
        let group = group.clone();
        tokio::spawn(async move { group.consume(&[TOPIC], Marker).await })
    };
    until_committed(&admin, "too-long", 1, 50).await;
    close(&group, task).await;
    assert_eq!(committed(&admin, "too-long", 1).await[&0].metadata, None);
}
