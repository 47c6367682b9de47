//! Memory held while a consumer opens many partitions at once, measured by a counting
//! global allocator (this binary holds one test, so nothing else allocates meanwhile).
//!
//! A group member with 10,000 partitions opens its claims concurrently, each reader
//! waiting on a ListOffsets round trip. Each `consume_partition` once copied the topic's
//! whole partition list and held it across that wait: 10,000 x 40 KB = 400 MB alive at
//! once (and O(n^2) copying): most of the 475 MB peak of one `josefine consume
//! --group` member reading a 10,000-partition topic on Tansu.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use josefine::{Client, Consumer, StartOffset};
use josefine_mock::MockCluster;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TOPIC: &str = "wide";
const PARTITIONS: i32 = 10_000;

#[tokio::test]
async fn opening_ten_thousand_partitions_at_once_holds_little_memory() {
    let cluster = MockCluster::builder()
        .brokers(1)
        .topic(TOPIC, PARTITIONS)
        .start()
        .await
        .unwrap();
    let client = Client::builder()
        .bootstrap([cluster.bootstrap()])
        .request_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    // The topic's metadata is loaded before measuring.
    assert_eq!(
        client.partitions(TOPIC).await.unwrap().len(),
        PARTITIONS as usize
    );
    let consumer = Consumer::builder(client).build().unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    // As the group runner opens a session's claims: all at once, each starting at the
    // earliest offset (a ListOffsets round trip).
    let readers = futures::future::join_all(
        (0..PARTITIONS).map(|p| consumer.consume_partition(TOPIC, p, StartOffset::Earliest)),
    )
    .await;
    let opened = readers.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        opened,
        PARTITIONS as usize,
        "{:?}",
        readers.iter().find_map(|r| r.as_ref().err())
    );
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let per_partition = peak / PARTITIONS as usize;
    // Measured 1.9 KB a reader: its queue, shared state, a fetch-loop entry, its
    // ListOffsets request in flight. A copy of the partition list each was 42 KB,
    // unboxed queue slots 5.1 KB, and a tokio channel as the queue (32 slots allocated
    // whatever the bound) 2.6 KB.
    assert!(
        per_partition < 2_400,
        "opening {PARTITIONS} readers peaked at {} MB above the start, {per_partition} B each",
        peak >> 20
    );
}
