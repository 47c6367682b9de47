//! The fuzz targets of `fuzz/` on stable, briefly: seeds from real traffic (the client
//! against the mock broker, every response recorded), from `kafka-protocol`'s encoders,
//! from the guard's layouts and from our `BatchBuilder` with every codec; then a seeded
//! mutator (`josefine::fuzzing::Mutator`) for a bounded number of inputs per target.
//!
//! A counting global allocator checks that no single allocation made by a target
//! exceeds the client's frame size limit (`fuzzing::MAX_FRAME_SIZE`, 100 MiB); a panic
//! or an oversized allocation prints the input in hex.
//!
//! * `JOSEFINE_FUZZ_ITERATIONS=n` runs `n` mutated inputs per target (default: a
//!   count that keeps the whole file under ~30 s in a debug build; SCRAM gets a
//!   twentieth, as each input may cost a PBKDF2).
//! * `JOSEFINE_FUZZ_SEED=s` picks another deterministic sequence.
//! * `JOSEFINE_FUZZ_CORPUS_OUT=dir` writes every seed to `dir/<target>/` for
//!   `cargo +nightly fuzz run <target> dir/<target>` (see `fuzz/README.md`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use josefine::fuzzing::{self, seeds, Target, MAX_FRAME_SIZE};
use josefine::protocol::frame::decode_response;
use josefine::protocol::records::Compression;
use josefine::Acks;
use josefine::{Client, ConsumerGroup, OffsetReset, Producer, ProducerRecord};
use josefine_mock::{Action, Intercept, MockBroker, RequestInfo};
use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::{Encodable, Message};

// ---------------------------------------------------------------------------------------
// The counting allocator

struct Counting;

thread_local! {
    /// Whether this thread is running a target (only its allocations are judged).
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    /// The largest single allocation while tracking.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The input being run, for the report of an oversized allocation (which may abort).
static INPUT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    let tracking = TRACKING.try_with(Cell::get).unwrap_or(false);
    if !tracking {
        return;
    }
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    if size > MAX_FRAME_SIZE {
        // Report now: the allocation may abort the process. Writing to stderr does not
        // allocate; tracking is off while we do it anyway.
        TRACKING.with(|t| t.set(false));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\nallocation of {size} bytes, over the {MAX_FRAME_SIZE}-byte frame limit; input: "
        );
        let ptr = INPUT.load(Ordering::Relaxed);
        let len = INPUT_LEN.load(Ordering::Relaxed);
        if !ptr.is_null() {
            // SAFETY: `run_one` keeps the input alive while tracking is on.
            let input = unsafe { std::slice::from_raw_parts(ptr, len) };
            for b in input {
                let _ = write!(err, "{b:02x}");
            }
        }
        let _ = writeln!(err);
        TRACKING.with(|t| t.set(true));
    }
}

// SAFETY: forwards to the system allocator; `note` only reads thread-locals and atomics
// and writes to stderr.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` on `input` with allocation tracking; returns the largest allocation.
fn tracked(input: &[u8], f: &dyn Fn(&[u8])) -> usize {
    INPUT.store(input.as_ptr().cast_mut(), Ordering::Relaxed);
    INPUT_LEN.store(input.len(), Ordering::Relaxed);
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(input)));
    TRACKING.with(|t| t.set(false));
    INPUT.store(std::ptr::null_mut(), Ordering::Relaxed);
    if let Err(panic) = outcome {
        eprintln!("input that panicked: {}", hex(input));
        panic::resume_unwind(panic);
    }
    LARGEST.with(Cell::get)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// Real traffic: the client against the mock broker, every response recorded

type Captured = Vec<(ApiKey, i16, Bytes)>;

/// Every response frame (header and body) the mock sent during a client workload:
/// topics created, records produced with every codec, read back by a partition consumer
/// and a consumer group, groups listed and described, lag, a topic deleted. Run twice:
/// at the newest versions both sides speak, and with the mock advertising only the
/// oldest version we speak of each API.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let mut out = runtime.block_on(capture(false));
        out.extend(runtime.block_on(capture(true)));
        out
    })
}

async fn capture(oldest: bool) -> Captured {
    let mut builder = MockBroker::builder()
        .topic("seed", 2)
        .group_initial_rebalance_delay(Duration::from_millis(10));
    if oldest {
        for rt in oldest_versions() {
            builder = builder.api_versions(rt.0, rt.1, rt.1);
        }
    }
    let broker = builder.start().await.expect("the mock starts");
    let log: Arc<Mutex<Captured>> = Arc::default();
    let tap = log.clone();
    broker.intercept(
        Intercept::any(),
        Action::rewrite(move |req: &RequestInfo, frame: Bytes| {
            tap.lock()
                .unwrap()
                .push((req.api_key, req.api_version, frame.clone()));
            frame
        }),
    );
    if let Err(e) = tokio::time::timeout(Duration::from_secs(20), workload(&broker, oldest)).await {
        panic!("the capture workload (oldest: {oldest}) did not finish: {e}");
    }
    let out = log.lock().unwrap().clone();
    out
}

/// (api, oldest version the client speaks) for the APIs of the workload.
fn oldest_versions() -> Vec<(ApiKey, i16)> {
    vec![
        // Below v4 the request cannot say allow_auto_topic_creation=false.
        (ApiKey::Metadata, 4),
        (
            ApiKey::Produce,
            <m::ProduceRequest as Message>::VERSIONS.min,
        ),
        (ApiKey::Fetch, <m::FetchRequest as Message>::VERSIONS.min),
        (
            ApiKey::ListOffsets,
            <m::ListOffsetsRequest as Message>::VERSIONS.min,
        ),
        (
            ApiKey::CreateTopics,
            <m::CreateTopicsRequest as Message>::VERSIONS.min,
        ),
        (
            ApiKey::DeleteTopics,
            <m::DeleteTopicsRequest as Message>::VERSIONS.min,
        ),
        (
            ApiKey::ListGroups,
            <m::ListGroupsRequest as Message>::VERSIONS.min,
        ),
        (
            ApiKey::DescribeGroups,
            <m::DescribeGroupsRequest as Message>::VERSIONS.min,
        ),
        (
            ApiKey::InitProducerId,
            <m::InitProducerIdRequest as Message>::VERSIONS.min,
        ),
    ]
}

async fn workload(broker: &MockBroker, oldest: bool) {
    let client = Client::builder()
        .bootstrap([broker.bootstrap()])
        .request_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the mock");
    let admin = client.admin();
    admin
        .create_topic(josefine::NewTopic::new("created", 1))
        .await
        .expect("create a topic");
    for (i, codec) in Compression::ALL.into_iter().enumerate() {
        if oldest && codec == Compression::Zstd {
            // zstd needs Produce v7 (KIP-110).
            continue;
        }
        let producer = Producer::builder(client.clone())
            .compression(codec, None)
            .idempotence(i % 2 == 0)
            .acks(Acks::All)
            .linger(Duration::from_millis(1))
            .build()
            .expect("a producer");
        for r in 0..4 {
            let record = ProducerRecord::new("seed")
                .partition(0)
                .key(format!("key-{r}"))
                .value(format!("{codec:?} value {r} repeated repeated repeated"))
                .header("h", "1")
                .header("h", "2");
            producer.send(record).await.expect("delivered");
        }
        producer.close().await.expect("closed");
    }
    let consumer = josefine::Consumer::builder(client.clone())
        .fetch_max_wait(Duration::from_millis(10))
        .build()
        .expect("a consumer");
    let mut partition = consumer
        .consume_partition("seed", 0, josefine::StartOffset::Earliest)
        .await
        .expect("consume");
    let mut seen = 0;
    while seen < if oldest { 16 } else { 20 } {
        let batch = partition
            .next_batch()
            .await
            .expect("a batch")
            .expect("no error");
        seen += batch.iter().count();
    }
    drop(partition);

    let group = ConsumerGroup::builder(client.clone(), "seed-group")
        .auto_offset_reset(OffsetReset::Earliest)
        .heartbeat_interval(Duration::from_millis(50))
        .auto_commit_interval(Duration::from_millis(20))
        .consumer(|c| c.fetch_max_wait(Duration::from_millis(10)))
        .build()
        .expect("a group");
    let mut stream = group.stream(&["seed"]).expect("a stream");
    for _ in 0..5 {
        let record = stream.next().await.expect("a record").expect("no error");
        record.mark();
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    let _ = admin.list_groups().await;
    let _ = admin.describe_group("seed-group").await;
    let _ = admin.group_lag("seed-group").await;
    stream.close().await.expect("the stream closes");
    admin.delete_topic("created").await.expect("delete a topic");
}

// ---------------------------------------------------------------------------------------
// Seeds

/// `Default` of every response type, encoded by `kafka-protocol` at every version we
/// speak (the `broker` feature the mock enables gives responses an encoder).
fn encoder_seeds() -> Vec<Vec<u8>> {
    fn one<R: Encodable + Default>(
        api: ApiKey,
        versions: std::ops::RangeInclusive<i16>,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for version in versions {
            let mut frame = BytesMut::new();
            frame.extend_from_slice(&7i32.to_be_bytes());
            if api.response_header_version(version) >= 1 {
                frame.extend_from_slice(&[0]);
            }
            if R::default().encode(&mut frame, version).is_ok() {
                out.extend(seeds::response_input(api, version, &frame));
            }
        }
        out
    }
    macro_rules! all {
        ($($key:ident: $req:ident => $resp:ident,)*) => {{
            let mut out = Vec::new();
            $(
                let v = <m::$req as Message>::VERSIONS;
                out.extend(one::<m::$resp>(ApiKey::$key, v.min..=v.max));
            )*
            out
        }};
    }
    all! {
        Produce: ProduceRequest => ProduceResponse,
        Fetch: FetchRequest => FetchResponse,
        ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
        Metadata: MetadataRequest => MetadataResponse,
        OffsetCommit: OffsetCommitRequest => OffsetCommitResponse,
        OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
        FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
        JoinGroup: JoinGroupRequest => JoinGroupResponse,
        Heartbeat: HeartbeatRequest => HeartbeatResponse,
        LeaveGroup: LeaveGroupRequest => LeaveGroupResponse,
        SyncGroup: SyncGroupRequest => SyncGroupResponse,
        DescribeGroups: DescribeGroupsRequest => DescribeGroupsResponse,
        ListGroups: ListGroupsRequest => ListGroupsResponse,
        SaslHandshake: SaslHandshakeRequest => SaslHandshakeResponse,
        ApiVersions: ApiVersionsRequest => ApiVersionsResponse,
        CreateTopics: CreateTopicsRequest => CreateTopicsResponse,
        DeleteTopics: DeleteTopicsRequest => DeleteTopicsResponse,
        InitProducerId: InitProducerIdRequest => InitProducerIdResponse,
        SaslAuthenticate: SaslAuthenticateRequest => SaslAuthenticateResponse,
        DescribeCluster: DescribeClusterRequest => DescribeClusterResponse,
    }
}

fn seeds_for(target: Target) -> Vec<Vec<u8>> {
    let mut out = target.seeds();
    let captured = captured();
    match target {
        Target::Responses => {
            for (api, version, frame) in captured {
                out.extend(seeds::response_input(*api, *version, frame));
            }
            out.extend(encoder_seeds());
        }
        Target::Frame => {
            // The recorded responses of one connection's worth, back to back.
            for (i, chunk) in captured.chunks(4).enumerate() {
                let mut stream = vec![i as u8];
                for (_, _, frame) in chunk {
                    stream.extend_from_slice(&(frame.len() as i32).to_be_bytes());
                    stream.extend_from_slice(frame);
                }
                out.push(stream);
            }
        }
        Target::RecordBatches => {
            // What the mock's Fetch responses carried: every codec, as produced.
            for (api, version, frame) in captured {
                if *api != ApiKey::Fetch {
                    continue;
                }
                let response = decode_response::<m::FetchRequest>(frame.clone(), *version)
                    .expect("the mock's Fetch responses decode");
                for topic in &response.responses {
                    for p in &topic.partitions {
                        if let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) {
                            out.push([&[0u8][..], records].concat());
                        }
                    }
                }
            }
        }
        Target::ConsumerProtocol => {
            for (api, version, frame) in captured {
                match api {
                    ApiKey::JoinGroup => {
                        let r = decode_response::<m::JoinGroupRequest>(frame.clone(), *version)
                            .expect("decodes");
                        for member in &r.members {
                            out.push([&[0u8][..], &member.metadata].concat());
                        }
                    }
                    ApiKey::SyncGroup => {
                        let r = decode_response::<m::SyncGroupRequest>(frame.clone(), *version)
                            .expect("decodes");
                        out.push([&[1u8][..], &r.assignment].concat());
                    }
                    _ => {}
                }
            }
        }
        Target::Scram => {}
    }
    out
}

// ---------------------------------------------------------------------------------------
// The runs

fn iterations(target: Target) -> u64 {
    let base = std::env::var("JOSEFINE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    match (target, base) {
        (Target::Scram, Some(n)) => (n / 20).max(1),
        (_, Some(n)) => n,
        // Defaults sized for a debug build on a shared CI machine.
        (Target::Frame, None) => 250_000,
        (Target::Responses, None) => 400_000,
        (Target::RecordBatches, None) => 120_000,
        (Target::ConsumerProtocol, None) => 400_000,
        (Target::Scram, None) => 300,
    }
}

fn seed() -> u64 {
    std::env::var("JOSEFINE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6a6f_7365_6669_6e65)
}

fn fuzz(target: Target) {
    let seeds = seeds_for(target);
    assert!(!seeds.is_empty(), "{} has no seeds", target.name());
    if let Ok(dir) = std::env::var("JOSEFINE_FUZZ_CORPUS_OUT") {
        let dir = std::path::Path::new(&dir).join(target.name());
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:05}")), s).expect("write a seed");
        }
    }
    let started = Instant::now();
    let mut largest = 0usize;
    let mut largest_ratio = 0f64;
    let stats = fuzzing::run(target, &seeds, iterations(target), seed(), |input, run| {
        let big = tracked(input, run);
        assert!(
            big <= MAX_FRAME_SIZE,
            "{}: allocation of {big} bytes, over the frame limit, for input {}",
            target.name(),
            hex(input)
        );
        largest = largest.max(big);
        largest_ratio = largest_ratio.max(big as f64 / input.len().max(1) as f64);
    });
    let elapsed = started.elapsed();
    println!(
        "fuzz {}: {} seeds, {} execs in {:.2?} ({:.0}/s), longest input {} B, \
         largest allocation {} B ({:.0}x its input at most)",
        target.name(),
        seeds.len(),
        stats.execs,
        elapsed,
        stats.execs as f64 / elapsed.as_secs_f64(),
        stats.max_input_len,
        largest,
        largest_ratio,
    );
}

#[test]
fn fuzz_frame() {
    fuzz(Target::Frame);
}

#[test]
fn fuzz_responses() {
    fuzz(Target::Responses);
}

#[test]
fn fuzz_record_batches() {
    fuzz(Target::RecordBatches);
}

#[test]
fn fuzz_consumer_protocol() {
    fuzz(Target::ConsumerProtocol);
}

#[test]
fn fuzz_scram() {
    fuzz(Target::Scram);
}

/// The recorded traffic covers what it should, so the seeds stay meaningful as the
/// client changes: every API of the workload, at more than one version.
#[test]
fn captured_traffic_covers_the_workload() {
    let captured = captured();
    for api in [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::Produce,
        ApiKey::InitProducerId,
        ApiKey::ListOffsets,
        ApiKey::Fetch,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::OffsetFetch,
        ApiKey::OffsetCommit,
        ApiKey::LeaveGroup,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteTopics,
    ] {
        let versions: std::collections::BTreeSet<i16> = captured
            .iter()
            .filter(|(a, _, _)| *a == api)
            .map(|(_, v, _)| *v)
            .collect();
        assert!(!versions.is_empty(), "no {api:?} response recorded");
    }
}
