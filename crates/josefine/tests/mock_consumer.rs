//! The consumer against the mock cluster with faults: leader moves, dead brokers,
//! offsets out of range under each `auto.offset.reset`, corrupt and truncated
//! batches, a fetch slower than the request timeout, a partition nobody reads, a
//! small `queued.max.bytes`, injected per-partition and fetch-session errors; and
//! around them pause, seek, start positions from ListOffsets, transaction markers,
//! topic ids, compressed batches and a partition read twice.
//!
//! Records go straight into the mock's log (`append_batch`), the record at offset
//! `o` of partition `p` holding the value `p{p}-{o}`, so every test can check that
//! each offset reaches the reader exactly once, in order, with its own value.
//!
//! The tests run on tokio's current-thread runtime, which the mock's tasks share: a
//! run of mock calls with no `.await` between them is one atomic step as far as the
//! consumer can tell. Some tests rely on that to change the log under a consumer
//! without a fetch slipping in between.
//!
//! Not covered: read_committed dropping an aborted transaction. The mock has no
//! transactions and its Fetch always answers an empty `aborted_transactions`, so an
//! aborted batch is indistinguishable from a committed one there; only the hiding of
//! transaction markers is tested.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use josefine::protocol::records::{BatchBuilder, Compression, ControlRecord, ControlRecordType};
use josefine::protocol::FetchedBatchExt;
use josefine::{
    Client, Consumer, ErrorKind, FetchedBatch, KafkaCode, OffsetReset, PartitionConsumer,
    StartOffset,
};
use josefine::{ConsumerBuilder, IsolationLevel};
use josefine_mock::{Action, ApiKey, Intercept, MockCluster, ResponseError};

const TOPIC: &str = "events";
/// The record at offset `o` has the timestamp `TS0 + o`.
const TS0: i64 = 1_700_000_000_000;
/// The longest wait for anything the consumer should deliver, so a bug fails the
/// test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(3);
/// How long a partition that must stay silent is watched: several fetch rounds, as
/// `fetch.max.wait` is 50 ms here.
const SILENCE: Duration = Duration::from_millis(250);

async fn cluster(brokers: i32, partitions: i32) -> MockCluster {
    MockCluster::builder()
        .brokers(brokers)
        .topic(TOPIC, partitions)
        .start()
        .await
        .unwrap()
}

async fn client(cluster: &MockCluster) -> Client {
    Client::builder()
        .bootstrap([cluster.bootstrap()])
        .request_timeout(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect()
        .await
        .unwrap()
}

async fn consumer(
    cluster: &MockCluster,
    configure: impl FnOnce(ConsumerBuilder) -> ConsumerBuilder,
) -> Consumer {
    let builder = Consumer::builder(client(cluster).await)
        .fetch_max_wait(Duration::from_millis(50))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50));
    configure(builder).build().unwrap()
}

fn value(partition: i32, offset: i64) -> String {
    format!("p{partition}-{offset}")
}

/// One batch holding `offsets` of `partition`, each record keyed with `key_bytes`
/// bytes (to make a batch as large as a test needs without touching the values).
fn padded_batch(partition: i32, offsets: Range<i64>, key_bytes: usize) -> Bytes {
    let key = vec![b'k'; key_bytes];
    let mut builder = BatchBuilder::new().base_offset(offsets.start);
    for offset in offsets {
        let key = (key_bytes > 0).then_some(&key[..]);
        builder
            .push(
                TS0 + offset,
                key,
                Some(value(partition, offset).as_bytes()),
                &[],
            )
            .unwrap();
    }
    builder.finish().unwrap()
}

fn batch(partition: i32, offsets: Range<i64>) -> Bytes {
    padded_batch(partition, offsets, 0)
}

/// Appends `offsets` to `partition`, `per_batch` records a batch.
fn append(cluster: &MockCluster, partition: i32, offsets: Range<i64>, per_batch: i64) {
    let mut base = offsets.start;
    while base < offsets.end {
        let end = (base + per_batch).min(offsets.end);
        let at = cluster.append_batch(TOPIC, partition, batch(partition, base..end));
        assert_eq!(
            at, base,
            "partition {partition}: the log end is not where the test thinks"
        );
        base = end;
    }
}

/// Requests of `api` that broker `node` received so far.
fn count(cluster: &MockCluster, node: i32, api: ApiKey) -> usize {
    cluster
        .broker(node)
        .requests()
        .iter()
        .filter(|r| r.api_key == api)
        .count()
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `condition` until it holds. For conditions on the mock's request log,
/// which has no notification to wait on.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

async fn next_batch(pc: &mut PartitionConsumer) -> josefine::Result<FetchedBatch> {
    let what = format!("a batch of {}/{}", pc.topic(), pc.partition());
    within(&what, pc.next_batch())
        .await
        .expect("the partition consumer is open")
}

/// Checks the records of `batch` continue the partition at `*next`, dense and with
/// their own values, and moves `*next` past them.
fn check_batch(batch: &FetchedBatch, next: &mut i64) {
    let p = batch.partition();
    for record in batch {
        let record = record.unwrap_or_else(|e| panic!("partition {p} at {next}: {e}"));
        assert_eq!(
            record.offset(),
            *next,
            "partition {p}: an offset was lost, duplicated or reordered"
        );
        assert_eq!(
            record.value().map(|v| &v[..]),
            Some(value(p, *next).as_bytes()),
            "partition {p}: the value at offset {next}"
        );
        *next += 1;
    }
}

/// Reads batch at a time up to `end`, asserting that every offset of `from..end`
/// arrives once, in order, with its value, that nothing beyond `end` comes with
/// them, and that the position then says `end`.
async fn expect_records(pc: &mut PartitionConsumer, from: i64, end: i64) {
    let p = pc.partition();
    let mut next = from;
    while next < end {
        let batch = next_batch(pc)
            .await
            .unwrap_or_else(|e| panic!("partition {p}, expecting offset {next}: {e}"));
        check_batch(&batch, &mut next);
        assert!(
            next <= end,
            "partition {p}: delivered up to offset {next}, past the log end {end}"
        );
    }
    assert_eq!(
        pc.position(),
        end,
        "partition {p}: position() after every record up to {end} was handed out"
    );
}

/// Asserts the reader gets nothing, neither records nor an error, for a while.
async fn assert_silent(pc: &mut PartitionConsumer, why: &str) {
    if let Ok(item) = tokio::time::timeout(SILENCE, pc.next_batch()).await {
        panic!("{why}, yet partition {} delivered {item:?}", pc.partition());
    }
}

/// Waits until broker 1 got a ListOffsets beyond the first `lists_before` and a
/// Fetch after it. A partition is not fetched again before its reset's ListOffsets
/// is answered, and the callers consume one partition only, so that Fetch is from
/// the reset position.
async fn wait_for_reset(cluster: &MockCluster, lists_before: usize) {
    wait_until("the offset reset and the fetch after it", || {
        let requests = cluster.broker(1).requests();
        let lists: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].api_key == ApiKey::ListOffsets)
            .collect();
        lists.len() > lists_before
            && requests[lists[lists.len() - 1]..]
                .iter()
                .any(|r| r.api_key == ApiKey::Fetch)
    })
    .await
}

/// How many of the responses to a one-partition reader of `partition`, fetching
/// `limit` bytes at a time, end with the head of a batch when the mock truncates:
/// the first batch of a response comes whole (KIP-74), then whole batches while
/// they fit, then as much of the next as fits.
fn cut_responses(cluster: &MockCluster, partition: i32, limit: usize) -> usize {
    let sizes: Vec<usize> = cluster
        .batches(TOPIC, partition)
        .iter()
        .map(Bytes::len)
        .collect();
    let (mut cuts, mut i) = (0, 0);
    while i < sizes.len() {
        let mut used = sizes[i];
        i += 1;
        while i < sizes.len() && used + sizes[i] <= limit {
            used += sizes[i];
            i += 1;
        }
        if i < sizes.len() && used < limit {
            cuts += 1;
        }
    }
    cuts
}

#[tokio::test]
async fn a_leader_move_mid_consume_continues_at_the_next_offset_on_the_new_leader() {
    let cluster = cluster(3, 1).await;
    append(&cluster, 0, 0..100, 10);
    // One batch a fetch, so the move lands with most of the log still unread.
    let one_batch = batch(0, 0..10).len() as i32;
    let consumer = consumer(&cluster, |b| b.max_partition_fetch_bytes(one_batch)).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, 30).await;
    cluster.move_leader(TOPIC, 0, 2);
    expect_records(&mut pc, 30, 100).await;
    // Again while caught up and long-polling on broker 2: what is appended after the
    // move comes from broker 3.
    cluster.move_leader(TOPIC, 0, 3);
    append(&cluster, 0, 100..150, 10);
    expect_records(&mut pc, 100, 150).await;
    assert_eq!(pc.high_watermark(), 150);
    assert_eq!(pc.lag(), 0);
    let debug = format!("{pc:?}");
    for part in [
        TOPIC,
        "partition: 0",
        "position: 150",
        "high_watermark: 150",
    ] {
        assert!(debug.contains(part), "{debug} names {part}");
    }
    for node in [2, 3] {
        assert!(
            count(&cluster, node, ApiKey::Fetch) > 0,
            "broker {node} served fetches once it led the partition"
        );
    }
}

#[tokio::test]
async fn a_dead_leader_that_comes_back_delivers_what_was_appended_while_it_was_down() {
    let cluster = cluster(3, 1).await;
    append(&cluster, 0, 0..50, 10);
    let consumer = consumer(&cluster, |b| b).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, 50).await;
    cluster.stop_broker(1).await;
    // The shared log grows while its leader is down, as if the records had been
    // written just before the crash.
    append(&cluster, 0, 50..100, 10);
    assert_silent(&mut pc, "the partition's only leader is down").await;
    cluster.restart_broker(1).await.unwrap();
    expect_records(&mut pc, 50, 100).await;
    append(&cluster, 0, 100..120, 10);
    expect_records(&mut pc, 100, 120).await;
}

#[tokio::test]
async fn a_leader_moved_off_a_dead_broker_is_followed_to_the_new_one() {
    // Partition 0 is led by broker 1, partition 1 by broker 2.
    let cluster = cluster(3, 2).await;
    for p in 0..2 {
        append(&cluster, p, 0..50, 10);
    }
    let consumer = consumer(&cluster, |b| b).await;
    let mut p0 = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    let mut p1 = consumer
        .consume_partition(TOPIC, 1, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut p0, 0, 50).await;
    expect_records(&mut p1, 0, 50).await;
    cluster.stop_broker(1).await;
    for p in 0..2 {
        append(&cluster, p, 50..80, 10);
    }
    // The partition on a live broker is not held up by the dead one.
    expect_records(&mut p1, 50, 80).await;
    // The controller notices: broker 1 leaves the metadata, partition 0 moves.
    cluster.remove_broker_from_metadata(1);
    cluster.move_leader(TOPIC, 0, 3);
    expect_records(&mut p0, 50, 80).await;
    append(&cluster, 0, 80..100, 10);
    expect_records(&mut p0, 80, 100).await;
    assert!(count(&cluster, 3, ApiKey::Fetch) > 0);
}

#[tokio::test]
async fn offset_out_of_range_with_reset_earliest_restarts_at_the_log_start() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..30, 10);
    let consumer = consumer(&cluster, |b| b.auto_offset_reset(OffsetReset::Earliest)).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(0))
        .await
        .unwrap();
    expect_records(&mut pc, 0, 30).await;
    // Retention overtakes the caught-up reader: new records arrive and the log
    // start moves past its position in one step (see the module docs).
    append(&cluster, 0, 30..60, 10);
    cluster.delete_records_before(TOPIC, 0, 50);
    expect_records(&mut pc, 50, 60).await;
    drop(pc);

    // A start offset beyond the log end is out of range too; the reset goes back to
    // the log start, and the position must follow it there.
    let mut beyond = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(1000))
        .await
        .unwrap();
    expect_records(&mut beyond, 50, 60).await;
}

#[tokio::test]
async fn offset_out_of_range_with_reset_latest_skips_to_the_log_end() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..30, 10);
    let consumer = consumer(&cluster, |b| b.auto_offset_reset(OffsetReset::Latest)).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(0))
        .await
        .unwrap();
    expect_records(&mut pc, 0, 30).await;
    let lists = count(&cluster, 1, ApiKey::ListOffsets);
    append(&cluster, 0, 30..60, 10);
    cluster.delete_records_before(TOPIC, 0, 50);
    // Latest is wherever the log ends when the reset asks, so append only after it.
    wait_for_reset(&cluster, lists).await;
    append(&cluster, 0, 60..70, 10);
    // Not one record of 50..60, which were in the log before the reset.
    expect_records(&mut pc, 60, 70).await;
    drop(pc);

    let lists = count(&cluster, 1, ApiKey::ListOffsets);
    let mut beyond = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(1000))
        .await
        .unwrap();
    wait_for_reset(&cluster, lists).await;
    append(&cluster, 0, 70..80, 10);
    expect_records(&mut beyond, 70, 80).await;
}

#[tokio::test]
async fn offset_out_of_range_without_reset_stops_the_partition_until_a_seek() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..30, 10);
    let consumer = consumer(&cluster, |b| b.auto_offset_reset(OffsetReset::None)).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(0))
        .await
        .unwrap();
    expect_records(&mut pc, 0, 30).await;
    append(&cluster, 0, 30..60, 10);
    cluster.delete_records_before(TOPIC, 0, 50);

    let err = next_batch(&mut pc)
        .await
        .expect_err("an out-of-range position with no reset policy is an error");
    assert_eq!(err.code(), Some(KafkaCode::OFFSET_OUT_OF_RANGE), "{err}");
    assert_eq!(err.context().topic(), Some(TOPIC), "{err}");
    assert_eq!(err.context().partition(), Some(0), "{err}");
    assert_eq!(err.context().offset(), Some(30), "{err}");
    let fetches = count(&cluster, 1, ApiKey::Fetch);
    append(&cluster, 0, 60..70, 10);
    assert_silent(&mut pc, "the partition is stopped until the reader seeks").await;
    assert_eq!(
        count(&cluster, 1, ApiKey::Fetch),
        fetches,
        "a stopped partition is not fetched"
    );
    pc.seek(50);
    expect_records(&mut pc, 50, 70).await;
    drop(pc);

    // A start beyond the log end: the same error, at the start offset.
    let mut beyond = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(1000))
        .await
        .unwrap();
    let err = next_batch(&mut beyond)
        .await
        .expect_err("a start beyond the log end with no reset policy is an error");
    assert_eq!(err.code(), Some(KafkaCode::OFFSET_OUT_OF_RANGE), "{err}");
    assert_eq!(err.context().offset(), Some(1000), "{err}");
    beyond.seek(65);
    expect_records(&mut beyond, 65, 70).await;
}

/// How a test breaks a batch.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// A byte of the last record changes: the stored CRC no longer matches.
    Payload,
    /// The stored CRC itself is wrong.
    Crc,
}

fn damaged_batch(partition: i32, offsets: Range<i64>, damage: Damage) -> Bytes {
    let mut bytes = batch(partition, offsets).to_vec();
    match damage {
        Damage::Payload => {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x01;
        }
        // After base offset (8), batch length (4), leader epoch (4) and magic (1).
        Damage::Crc => bytes[17] ^= 0xff,
    }
    Bytes::from(bytes)
}

#[tokio::test]
async fn a_corrupt_batch_is_an_error_at_its_offset_and_only_a_seek_gets_past_it() {
    // Large fetches see the corrupt batch behind good ones in the same response;
    // one-batch fetches see it first in a response of its own. The second case
    // reads through the record stream rather than batch at a time.
    for (damage, one_batch_fetches) in [(Damage::Payload, false), (Damage::Crc, true)] {
        let cluster = cluster(1, 1).await;
        append(&cluster, 0, 0..20, 10);
        let at = cluster.append_raw(TOPIC, 0, damaged_batch(0, 20..30, damage));
        assert_eq!(at, 20);
        append(&cluster, 0, 30..40, 10);
        let limit = if one_batch_fetches {
            batch(0, 0..10).len() as i32
        } else {
            1 << 20
        };
        let consumer = consumer(&cluster, |b| b.max_partition_fetch_bytes(limit)).await;
        let mut pc = consumer
            .consume_partition(TOPIC, 0, StartOffset::Earliest)
            .await
            .unwrap();
        let err = if one_batch_fetches {
            for offset in 0..20 {
                let record = within("a record", pc.next())
                    .await
                    .expect("open")
                    .unwrap_or_else(|e| panic!("{damage:?} at {offset}: {e}"));
                assert_eq!(record.offset(), offset, "{damage:?}");
                assert_eq!(record.value().unwrap(), value(0, offset).as_bytes());
            }
            within("the corruption error", pc.next())
                .await
                .expect("open")
                .expect_err("the corrupt batch is reported")
        } else {
            expect_records(&mut pc, 0, 20).await;
            next_batch(&mut pc)
                .await
                .expect_err("the corrupt batch is reported")
        };
        assert_eq!(err.kind(), &ErrorKind::CorruptRecords, "{damage:?}: {err}");
        assert_eq!(err.context().offset(), Some(20), "{damage:?}: {err}");
        assert_eq!(err.context().topic(), Some(TOPIC), "{err}");
        assert_eq!(err.context().partition(), Some(0), "{err}");
        assert!(!err.is_retriable(), "{err}");
        assert_eq!(pc.position(), 20, "{damage:?}");
        assert_silent(
            &mut pc,
            "nothing after a corrupt batch is delivered silently",
        )
        .await;
        pc.seek(30);
        expect_records(&mut pc, 30, 40).await;
    }
}

#[tokio::test]
async fn truncated_trailing_batches_are_fetched_again_not_lost() {
    let cluster = cluster(1, 1).await;
    cluster.set_truncate_last_batch(true);
    // Uneven batches, so each response is cut at a different place in a batch.
    let mut end = 0;
    for records in [3, 11, 7, 1, 13, 5].into_iter().cycle().take(30) {
        append(&cluster, 0, end..end + records, records);
        end += records;
    }
    let limit = 250;
    assert!(
        cut_responses(&cluster, 0, limit) >= 10,
        "the test means most responses to end in a cut batch"
    );
    let consumer = consumer(&cluster, |b| b.max_partition_fetch_bytes(limit as i32)).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, end).await;
    append(&cluster, 0, end..end + 40, 4);
    expect_records(&mut pc, end, end + 40).await;
}

#[tokio::test]
async fn a_partition_limit_smaller_than_a_batch_grows_until_the_batch_fits() {
    let cluster = cluster(1, 2).await;
    cluster.set_truncate_last_batch(true);
    for p in 0..2 {
        append(&cluster, p, 0..100, 10);
    }
    // Smaller than any batch. The first partition of a response gets its first
    // batch whole anyway (KIP-74); the one behind it gets only the head of a batch,
    // so its limit has to grow.
    let consumer = consumer(&cluster, |b| b.max_partition_fetch_bytes(64)).await;
    let mut p0 = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(0))
        .await
        .unwrap();
    let mut p1 = consumer
        .consume_partition(TOPIC, 1, StartOffset::Offset(0))
        .await
        .unwrap();
    tokio::join!(
        expect_records(&mut p0, 0, 100),
        expect_records(&mut p1, 0, 100)
    );
}

#[tokio::test]
async fn a_batch_cut_by_the_response_budget_is_not_taken_for_one_too_large() {
    let cluster = cluster(1, 2).await;
    cluster.set_truncate_last_batch(true);
    // Partition 0: plenty of small batches, first in every response.
    append(&cluster, 0, 0..400, 10);
    // Partition 1: one batch larger than what partition 0 leaves of a response, yet
    // smaller than fetch.max.bytes, so Kafka serves it whole as soon as partition 1
    // comes first in a response.
    let big = padded_batch(1, 0..10, 330);
    let fetch_max_bytes = 4096;
    assert!(big.len() > 3100 && big.len() < fetch_max_bytes);
    assert_eq!(cluster.append_batch(TOPIC, 1, big), 0);
    append(&cluster, 1, 10..50, 10);
    let consumer = consumer(&cluster, |b| {
        b.fetch_max_bytes(fetch_max_bytes as i32)
            .max_partition_fetch_bytes(1024)
    })
    .await;
    let mut p0 = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(0))
        .await
        .unwrap();
    // Partition 0 joins the fetch loop first, so it comes first in each request.
    let mut next = 0;
    check_batch(&next_batch(&mut p0).await.unwrap(), &mut next);
    let mut p1 = consumer
        .consume_partition(TOPIC, 1, StartOffset::Offset(0))
        .await
        .unwrap();
    tokio::join!(
        expect_records(&mut p0, next, 400),
        expect_records(&mut p1, 0, 50)
    );
}

#[tokio::test]
async fn a_fetch_slower_than_the_request_timeout_is_abandoned_and_nothing_is_lost() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..50, 10);
    let consumer = consumer(&cluster, |b| b.request_timeout(Duration::from_millis(300))).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, 50).await;
    let connections = cluster.broker(1).connection_count();
    let slow = cluster.broker(1).intercept(
        Intercept::api(ApiKey::Fetch).once(),
        Action::Delay(Duration::from_millis(1500)),
    );
    let started = tokio::time::Instant::now();
    // The fetch in flight passed the rule already; the next one is held up.
    wait_until("the slow fetch", || slow.hits() == 1).await;
    append(&cluster, 0, 50..100, 10);
    expect_records(&mut pc, 50, 100).await;
    assert!(
        cluster.broker(1).connection_count() > connections,
        "the consumer gave up on the stuck connection and opened another"
    );
    // The held-up answer, carrying 50..100 again, goes out on the abandoned
    // connection; nothing of it may reach the reader.
    tokio::time::sleep_until(started + Duration::from_millis(1600)).await;
    append(&cluster, 0, 100..110, 10);
    expect_records(&mut pc, 100, 110).await;
}

#[tokio::test]
async fn a_partition_nobody_reads_does_not_hold_up_the_others_on_its_broker() {
    // Every partition on broker 1, so all three share one fetch loop.
    let cluster = cluster(1, 3).await;
    for p in 0..3 {
        append(&cluster, p, 0..300, 10);
    }
    // One batch per partition per fetch: the unread partition would need 30 fetches.
    let one_batch = batch(0, 290..300).len() as i32;
    let consumer = consumer(&cluster, |b| b.max_partition_fetch_bytes(one_batch)).await;
    let mut readers = Vec::new();
    for p in 0..3 {
        readers.push(
            consumer
                .consume_partition(TOPIC, p, StartOffset::Offset(0))
                .await
                .unwrap(),
        );
    }
    let [p0, p1, unread] = &mut readers[..] else {
        unreachable!()
    };
    tokio::join!(expect_records(p0, 0, 300), expect_records(p1, 0, 300));
    // With its queue full, the unread partition is left out of the fetches: records
    // appended to it now are not seen (its high watermark stays), although the loop
    // goes on fetching for partition 0.
    append(&cluster, 2, 300..310, 10);
    append(&cluster, 0, 300..310, 10);
    expect_records(p0, 300, 310).await;
    assert_eq!(
        unread.high_watermark(),
        300,
        "a partition whose reader is not keeping up was fetched anyway"
    );
    // Read now, it has everything, once.
    expect_records(unread, 0, 310).await;
}

#[tokio::test]
async fn queued_max_bytes_bounds_what_is_held_and_everything_still_arrives() {
    let cluster = cluster(1, 2).await;
    for p in 0..2 {
        append(&cluster, p, 0..200, 10);
    }
    let one_batch = batch(0, 190..200).len();
    let limit = 3 * one_batch;
    let response = 2 * one_batch;
    let consumer = consumer(&cluster, |b| {
        b.queued_max_bytes(limit)
            .max_partition_fetch_bytes(one_batch as i32)
            .fetch_max_bytes(response as i32)
    })
    .await;
    let mut p0 = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(0))
        .await
        .unwrap();
    let mut p1 = consumer
        .consume_partition(TOPIC, 1, StartOffset::Offset(0))
        .await
        .unwrap();
    // The reader keeps every batch it gets, as a slow application would: what it
    // holds counts against queued.max.bytes until dropped.
    let mut held = Vec::new();
    loop {
        let item = tokio::select! {
            item = p0.next_batch() => item,
            item = p1.next_batch() => item,
            () = tokio::time::sleep(SILENCE) => break,
        };
        held.push(item.expect("open").expect("no error"));
        assert!(held.len() < 100, "fetching never stopped");
    }
    let held_bytes: usize = held
        .iter()
        .flat_map(|b| b.record_batches())
        .map(|b| b.size_in_bytes())
        .sum();
    assert!(
        held_bytes >= limit,
        "fetching stopped at {held_bytes} bytes, short of queued.max.bytes ({limit})"
    );
    // The limit is checked before each fetch, so one response may overshoot it.
    assert!(
        held_bytes < limit + response,
        "{held_bytes} bytes fetched with queued.max.bytes at {limit} and responses of at most {response}"
    );
    let fetches = count(&cluster, 1, ApiKey::Fetch);
    tokio::time::sleep(SILENCE).await;
    assert_eq!(
        count(&cluster, 1, ApiKey::Fetch),
        fetches,
        "no fetch while the queued bytes are at the limit"
    );
    let mut next = [0, 0];
    for batch in &held {
        check_batch(batch, &mut next[batch.partition() as usize]);
    }
    // Releasing them lets fetching go on where it stopped.
    drop(held);
    tokio::join!(
        expect_records(&mut p0, next[0], 200),
        expect_records(&mut p1, next[1], 200)
    );
}

#[tokio::test]
async fn a_paused_partition_is_not_fetched_and_resume_continues_at_its_position() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..30, 10);
    let consumer = consumer(&cluster, |b| b).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, 30).await;
    pc.pause();
    assert!(pc.is_paused());
    // The long poll in flight when it paused ends empty; after it, nothing.
    assert_silent(&mut pc, "nothing was appended").await;
    let fetches = count(&cluster, 1, ApiKey::Fetch);
    append(&cluster, 0, 30..60, 10);
    assert_silent(&mut pc, "the partition is paused").await;
    assert_eq!(
        count(&cluster, 1, ApiKey::Fetch),
        fetches,
        "a paused partition is not fetched"
    );
    pc.resume();
    assert!(!pc.is_paused());
    expect_records(&mut pc, 30, 60).await;
}

#[tokio::test]
async fn seeking_back_and_forth_drops_what_was_fetched_before_the_seek() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..100, 10);
    let one_batch = batch(0, 0..10).len() as i32;
    let consumer = consumer(&cluster, |b| b.max_partition_fetch_bytes(one_batch)).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    // Batches beyond 60 are queued by now; none of them may show up after the seek.
    expect_records(&mut pc, 0, 60).await;
    pc.seek(15);
    assert_eq!(pc.position(), 15);
    // Mid-batch: the batch holding 15 is fetched whole, its first records skipped.
    expect_records(&mut pc, 15, 40).await;
    pc.seek(90);
    expect_records(&mut pc, 90, 100).await;
}

#[tokio::test]
async fn start_offsets_come_from_list_offsets() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..100, 10);
    cluster.delete_records_before(TOPIC, 0, 20);
    let consumer = consumer(&cluster, |b| b).await;
    let lists = count(&cluster, 1, ApiKey::ListOffsets);

    // Record o has timestamp TS0 + o, and 50 starts a batch, so the mock (which
    // answers per batch) and Kafka (per record) agree.
    let mut at_time = consumer
        .consume_partition(TOPIC, 0, StartOffset::Timestamp(TS0 + 50))
        .await
        .unwrap();
    assert_eq!(at_time.position(), 50);
    expect_records(&mut at_time, 50, 100).await;
    drop(at_time);

    let mut earliest = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    assert_eq!(earliest.position(), 20, "the log start, after the deletion");
    expect_records(&mut earliest, 20, 100).await;
    drop(earliest);

    // No record that late: the log end, like Latest.
    let mut after_last = consumer
        .consume_partition(TOPIC, 0, StartOffset::Timestamp(TS0 + 1000))
        .await
        .unwrap();
    assert_eq!(after_last.position(), 100);
    append(&cluster, 0, 100..105, 5);
    expect_records(&mut after_last, 100, 105).await;
    drop(after_last);

    let mut latest = consumer
        .consume_partition(TOPIC, 0, StartOffset::Latest)
        .await
        .unwrap();
    assert_eq!(latest.position(), 105);
    append(&cluster, 0, 105..110, 5);
    expect_records(&mut latest, 105, 110).await;
    assert!(count(&cluster, 1, ApiKey::ListOffsets) >= lists + 4);
}

#[tokio::test]
async fn transaction_markers_are_hidden_at_both_isolation_levels() {
    let cluster = cluster(1, 1).await;
    // A committed transaction of producer 7 (offsets 0..5), its COMMIT marker at 5,
    // then plain records 6..11.
    let mut txn = BatchBuilder::new().producer(7, 0, 0).transactional(true);
    for offset in 0..5 {
        txn.push(TS0 + offset, None, Some(value(0, offset).as_bytes()), &[])
            .unwrap();
    }
    assert_eq!(cluster.append_batch(TOPIC, 0, txn.finish().unwrap()), 0);
    let mut marker = BatchBuilder::new()
        .producer(7, 0, 5)
        .transactional(true)
        .control(true);
    let key = ControlRecord {
        version: 0,
        kind: ControlRecordType::Commit,
    }
    .key_bytes();
    marker
        .push(TS0 + 5, Some(&key), Some(&[0, 0, 0, 0, 0, 0]), &[])
        .unwrap();
    assert_eq!(cluster.append_batch(TOPIC, 0, marker.finish().unwrap()), 5);
    append(&cluster, 0, 6..11, 5);

    for level in [
        IsolationLevel::ReadUncommitted,
        IsolationLevel::ReadCommitted,
    ] {
        let consumer = consumer(&cluster, |b| b.isolation_level(level)).await;
        let mut pc = consumer
            .consume_partition(TOPIC, 0, StartOffset::Earliest)
            .await
            .unwrap();
        let mut offsets = Vec::new();
        while pc.position() < 11 {
            let batch = next_batch(&mut pc).await.unwrap();
            for record in &batch {
                let record = record.unwrap();
                assert_eq!(
                    record.value().unwrap(),
                    value(0, record.offset()).as_bytes()
                );
                offsets.push(record.offset());
            }
        }
        let expected: Vec<i64> = (0..5).chain(6..11).collect();
        assert_eq!(offsets, expected, "{level:?}");
        assert_eq!(pc.position(), 11, "{level:?}");
    }
}

#[tokio::test]
async fn fetch_names_topics_by_id_from_v13_and_by_name_before() {
    for newest_fetch in [None, Some(12)] {
        let mut builder = MockCluster::builder().brokers(1).topic(TOPIC, 2);
        if let Some(newest) = newest_fetch {
            builder = builder.api_versions(ApiKey::Fetch, 4, newest);
        }
        let cluster = builder.start().await.unwrap();
        for p in 0..2 {
            append(&cluster, p, 0..50, 10);
        }
        let consumer = consumer(&cluster, |b| b).await;
        let mut p0 = consumer
            .consume_partition(TOPIC, 0, StartOffset::Earliest)
            .await
            .unwrap();
        let mut p1 = consumer
            .consume_partition(TOPIC, 1, StartOffset::Earliest)
            .await
            .unwrap();
        expect_records(&mut p0, 0, 50).await;
        expect_records(&mut p1, 0, 50).await;
        let versions: Vec<i16> = cluster
            .broker(1)
            .requests()
            .iter()
            .filter(|r| r.api_key == ApiKey::Fetch)
            .map(|r| r.api_version)
            .collect();
        match newest_fetch {
            None => assert!(
                versions.iter().all(|&v| v >= 13),
                "topics by id (KIP-516): {versions:?}"
            ),
            Some(newest) => assert!(
                versions.iter().all(|&v| v == newest),
                "topics by name: {versions:?}"
            ),
        }
    }
}

#[tokio::test]
async fn injected_retriable_fetch_errors_are_retried_without_loss() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..10, 10);
    let consumer = consumer(&cluster, |b| b).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, 10).await;
    let mut end = 10;
    // (error, whether it means the leader may have moved, so metadata is asked again)
    let errors = [
        (ResponseError::NotLeaderOrFollower, true),
        (ResponseError::FencedLeaderEpoch, true),
        (ResponseError::UnknownLeaderEpoch, true),
        (ResponseError::UnknownTopicId, true),
        (ResponseError::KafkaStorageError, false),
        (ResponseError::ReplicaNotAvailable, false),
        // Top-level in Fetch v7+: the session is dropped and a full fetch follows.
        (ResponseError::FetchSessionIdNotFound, false),
        (ResponseError::InvalidFetchSessionEpoch, false),
    ];
    for (error, leadership) in errors {
        let metadata = count(&cluster, 1, ApiKey::Metadata);
        let rule = cluster
            .broker(1)
            .intercept(Intercept::api(ApiKey::Fetch).times(2), Action::error(error));
        wait_until(&format!("two fetches answered {error:?}"), || {
            rule.hits() == 2
        })
        .await;
        append(&cluster, 0, end..end + 10, 5);
        expect_records(&mut pc, end, end + 10).await;
        end += 10;
        if leadership {
            assert!(
                count(&cluster, 1, ApiKey::Metadata) > metadata,
                "{error:?} refreshes the metadata"
            );
        }
    }
}

#[tokio::test]
async fn a_fatal_fetch_error_reaches_the_reader_and_stops_the_partition_until_a_seek() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..10, 10);
    let consumer = consumer(&cluster, |b| b).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, 10).await;
    cluster.broker(1).intercept(
        Intercept::api(ApiKey::Fetch).once(),
        Action::error(ResponseError::TopicAuthorizationFailed),
    );
    let err = next_batch(&mut pc)
        .await
        .expect_err("a non-retriable error goes to the reader");
    assert_eq!(err.code().map(KafkaCode::code), Some(29), "{err}");
    assert_eq!(err.context().topic(), Some(TOPIC), "{err}");
    assert_eq!(err.context().partition(), Some(0), "{err}");
    assert_eq!(err.context().offset(), Some(10), "{err}");
    append(&cluster, 0, 10..20, 10);
    assert_silent(&mut pc, "the partition is stopped after a fatal error").await;
    let position = pc.position();
    pc.seek(position);
    expect_records(&mut pc, 10, 20).await;
}

#[tokio::test]
async fn one_partition_read_twice_by_one_consumer_gives_each_reader_its_own_records() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..100, 10);
    let one_batch = batch(0, 0..10).len() as i32;
    let consumer = consumer(&cluster, |b| b.max_partition_fetch_bytes(one_batch)).await;
    let mut late = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(60))
        .await
        .unwrap();
    expect_records(&mut late, 60, 70).await;
    // Refusing a second reader of the partition would be a fine answer (Sarama
    // does); serving both from one fetch loop must give each its own offsets.
    match consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(0))
        .await
    {
        Err(_) => expect_records(&mut late, 70, 100).await,
        Ok(mut early) => {
            tokio::join!(
                expect_records(&mut early, 0, 100),
                expect_records(&mut late, 70, 100)
            );
        }
    }
}

#[tokio::test]
async fn an_offset_reset_retrying_list_offsets_does_not_hold_up_other_partitions() {
    // Both partitions on broker 1, in one fetch loop.
    let cluster = cluster(1, 2).await;
    for p in 0..2 {
        append(&cluster, p, 0..30, 10);
    }
    // Long backoffs, so ListOffsets retries take a while.
    let consumer = consumer(&cluster, |b| {
        b.auto_offset_reset(OffsetReset::Earliest)
            .retry_backoff(Duration::from_millis(300), Duration::from_millis(600))
    })
    .await;
    let mut p0 = consumer
        .consume_partition(TOPIC, 0, StartOffset::Offset(0))
        .await
        .unwrap();
    let mut p1 = consumer
        .consume_partition(TOPIC, 1, StartOffset::Offset(0))
        .await
        .unwrap();
    expect_records(&mut p0, 0, 30).await;
    expect_records(&mut p1, 0, 30).await;
    // Partition 0's reset asks for the log start and is told three times to come
    // back later: at least 1.2 s of backoff. The answers are immediate, so the
    // connection, which the fetches share, is never held up; only the reset waits.
    let refusals = cluster.broker(1).intercept(
        Intercept::api(ApiKey::ListOffsets).times(3),
        Action::error(ResponseError::NotLeaderOrFollower),
    );
    append(&cluster, 0, 30..60, 10);
    cluster.delete_records_before(TOPIC, 0, 50);
    wait_until("partition 0's reset to ask", || refusals.hits() == 1).await;
    // Partition 1's new records need no ListOffsets; they must not wait for the
    // other partition's reset.
    append(&cluster, 1, 30..40, 10);
    let on_time =
        tokio::time::timeout(Duration::from_millis(600), expect_records(&mut p1, 30, 40)).await;
    assert!(
        on_time.is_ok(),
        "partition 1 waited for partition 0's reset ({} ListOffsets refused so far)",
        refusals.hits()
    );
    expect_records(&mut p0, 50, 60).await;
    assert_eq!(refusals.hits(), 3);
}

#[tokio::test]
async fn compressed_batches_of_every_codec_are_delivered_from_any_offset_in_them() {
    let cluster = cluster(1, 1).await;
    let mut base = 0;
    for codec in Compression::ALL {
        let mut builder = BatchBuilder::new().compression(codec, None);
        for offset in base..base + 10 {
            builder
                .push(TS0 + offset, None, Some(value(0, offset).as_bytes()), &[])
                .unwrap();
        }
        let at = cluster.append_batch(TOPIC, 0, builder.finish().unwrap());
        assert_eq!(at, base, "{codec:?}");
        base += 10;
    }
    let consumer = consumer(&cluster, |b| b).await;
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, base).await;
    // One reader of the partition at a time: two at once is another test's matter.
    drop(pc);
    // Starting inside a compressed batch: the records before the start are skipped.
    for start in [5, 25, 47] {
        let mut pc = consumer
            .consume_partition(TOPIC, 0, StartOffset::Offset(start))
            .await
            .unwrap();
        expect_records(&mut pc, start, base).await;
    }
}

/// A producer sharing the client with a consumer never sends on the consumer's fetch
/// connection: a broker answers a connection's requests in order, so a produce
/// queued behind a long poll waited up to `fetch.max.wait.ms` (seen as 300-800 ms
/// dead-letter sends from a parallel processor).
#[tokio::test]
async fn fetches_have_a_connection_of_their_own() {
    let cluster = cluster(1, 1).await;
    let client = client(&cluster).await;
    let consumer = Consumer::builder(client.clone())
        .fetch_max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut reader = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    let producer = josefine::Producer::builder(client.clone()).build().unwrap();
    for i in 0..5 {
        let record = josefine::ProducerRecord::new(TOPIC)
            .partition(0)
            .value(format!("r{i}"));
        producer.send(record).await.unwrap();
        // Every record is read before the next is sent: fetches and produces
        // interleave.
        let got = tokio::time::timeout(PATIENCE, reader.next())
            .await
            .expect("the record is read")
            .unwrap()
            .unwrap();
        assert_eq!(got.offset(), i);
    }
    producer.close().await.unwrap();
    let requests = cluster.broker(1).requests();
    let on = |api: ApiKey| -> std::collections::BTreeSet<u64> {
        requests
            .iter()
            .filter(|r| r.api_key == api)
            .map(|r| r.connection_id)
            .collect()
    };
    let (fetches, produces) = (on(ApiKey::Fetch), on(ApiKey::Produce));
    assert!(!fetches.is_empty() && !produces.is_empty());
    assert!(
        fetches.is_disjoint(&produces),
        "fetches on connections {fetches:?}, produces on {produces:?}"
    );
}

/// Closing the client stops its consumers' readers: the fetch loop's connection of
/// its own closes with the client's others, and the reader gets a Closed error,
/// never the records appended after the close.
#[tokio::test]
async fn closing_the_client_stops_its_readers() {
    let cluster = cluster(1, 1).await;
    append(&cluster, 0, 0..10, 10);
    let client = client(&cluster).await;
    let consumer = Consumer::builder(client.clone())
        .fetch_max_wait(Duration::from_millis(50))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    let mut pc = consumer
        .consume_partition(TOPIC, 0, StartOffset::Earliest)
        .await
        .unwrap();
    expect_records(&mut pc, 0, 10).await;
    client.close();
    append(&cluster, 0, 10..20, 10);
    match within("the reader to learn of the close", pc.next_batch()).await {
        Some(Err(err)) => assert_eq!(err.kind(), &ErrorKind::Closed, "{err}"),
        other => panic!("a reader of a closed client got {other:?}"),
    }
    let end = within("the reader's end", pc.next_batch()).await;
    assert!(end.is_none(), "after the close, the reader ends: {end:?}");
}
