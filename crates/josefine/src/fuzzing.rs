//! Fuzz target bodies, seeds and a deterministic mutator.
//!
//! **Not part of the public API**: built only with the `fuzzing` cargo feature, hidden
//! from the docs, no stability promise. It is public so that two harnesses run the same
//! code: the libFuzzer targets in `fuzz/` (nightly, `cargo fuzz run <target>`, for long
//! local runs; `fuzz/Cargo.toml` turns the feature on) and the short seeded run on
//! stable in `tests/fuzz_short.rs` (part of `cargo test --workspace`; josefine's
//! dev-dependency on itself turns the feature on for its own tests).
//!
//! Each target takes arbitrary bytes and must neither panic nor allocate more than the
//! frame size limit (the harnesses check the latter with a counting allocator). Targets
//! also assert properties of their own, so a fuzzer finds wrong answers, not just
//! crashes; the strongest is in [`responses`]: the guard and `kafka-protocol`'s decoder
//! must agree on how many bytes a body takes.
//!
//! | target              | input                                              | code under test |
//! |---------------------|----------------------------------------------------|-----------------|
//! | [`frame`]           | chunk size, then a byte stream of frames           | `frame::split_frame`, `frame_length`, `correlation_id`, header decode |
//! | [`responses`]       | response type, version, then one frame             | `frame::decode_response` (guard + decoder) for every response type and version we speak, then what the client derives from it |
//! | [`record_batches`]  | flags, then a Fetch `records` field                | `records::batches`, every codec, every record and header, the fetch scan |
//! | [`consumer_protocol`] | kind, then a version-prefixed message            | `Subscription::decode`, `Assignment::decode` |
//! | [`scram`]           | hash, server-first, `0xff`, server-final           | the SCRAM client state machine |

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, ResponseHeader};
use kafka_protocol::protocol::Message;

use crate::client::coordinator::parse_find_coordinator;
use crate::client::metadata::ClusterMetadata;
use crate::group::consumer_protocol::{Assignment, Subscription};
#[cfg(feature = "sasl")]
use crate::net::sasl::{Credentials, Mechanism, SaslError, Scram, ScramHash};
use crate::protocol::frame::{self, decode_response, DEFAULT_MAX_FRAME_SIZE, LENGTH_PREFIX};
use crate::protocol::guard::{self, generate, GuardError, Rng};
use crate::protocol::records::{
    self, BatchBuilder, Compression, DecodeOptions, Header, TimestampType,
};
use crate::protocol::versions::{api_versions_fallback, ApiVersionTable};
use crate::protocol::{ResponseType, RESPONSE_TYPES};
use crate::TopicPartition;

/// The client's response frame limit ([`DEFAULT_MAX_FRAME_SIZE`], 100 MiB): no single
/// allocation made while decoding a response may exceed it.
pub const MAX_FRAME_SIZE: usize = DEFAULT_MAX_FRAME_SIZE;

/// The frame limit the [`frame`] target splits with. Smaller than the client's, so a
/// fuzzer is not slowed down by 100 MiB buffers for frames that never arrive; the
/// reservation logic is the same.
pub const FRAME_TARGET_MAX_FRAME: usize = 1 << 20;

/// A fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Frame,
    Responses,
    RecordBatches,
    ConsumerProtocol,
    Scram,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Frame,
        Target::Responses,
        Target::RecordBatches,
        Target::ConsumerProtocol,
        Target::Scram,
    ];

    /// The name of its `fuzz/fuzz_targets/<name>.rs`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Frame => "frame",
            Target::Responses => "responses",
            Target::RecordBatches => "record_batches",
            Target::ConsumerProtocol => "consumer_protocol",
            Target::Scram => "scram",
        }
    }

    /// Runs the target on one input.
    pub fn run(self, data: &[u8]) {
        match self {
            Target::Frame => frame(data),
            Target::Responses => responses(data),
            Target::RecordBatches => record_batches(data),
            Target::ConsumerProtocol => consumer_protocol(data),
            Target::Scram => scram(data),
        }
    }

    /// Seeds built here: generated from the layouts, encoded by our own encoders, or
    /// test vectors. The stable harness adds real traffic from the mock broker.
    pub fn seeds(self) -> Vec<Vec<u8>> {
        match self {
            Target::Frame => seeds::frame(),
            Target::Responses => seeds::responses(),
            Target::RecordBatches => seeds::record_batches(),
            Target::ConsumerProtocol => seeds::consumer_protocol(),
            Target::Scram => seeds::scram(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Targets

/// A byte stream as the connection task sees it: arriving `data[0] % 16 + 1` bytes at
/// a time, split into frames, each frame's correlation id and header decoded.
pub fn frame(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    if let Some(prefix) = stream.first_chunk::<LENGTH_PREFIX>() {
        // The client's own limit too: a pure function, no allocation.
        let _ = frame::frame_length(*prefix, MAX_FRAME_SIZE);
    }
    let chunk = usize::from(chunk % 16) + 1;
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match frame::split_frame(&mut buf, FRAME_TARGET_MAX_FRAME) {
                Ok(Some(f)) => {
                    assert!(f.len() >= 4 && f.len() <= FRAME_TARGET_MAX_FRAME);
                    frame::correlation_id(&f).expect("a split frame holds a correlation id");
                    for header_version in 0..=1 {
                        let mut body = f.clone();
                        let _ = frame::decode_guarded::<ResponseHeader>(&mut body, header_version);
                    }
                }
                Ok(None) => break,
                // The connection poisons itself here; so does the stream.
                Err(_) => return,
            }
        }
        // Growth may double a buffer that already held most of a frame.
        assert!(
            buf.capacity() <= 2 * (LENGTH_PREFIX + FRAME_TARGET_MAX_FRAME) + 64 * 1024,
            "buffer of {} bytes for a validated frame",
            buf.capacity()
        );
    }
}

/// Picks the response type and version from the first two bytes and decodes the rest
/// as that response's frame (correlation id first), as `Connection::call` does; then
/// feeds the result to what the client derives from it.
///
/// Checked besides "no panic": when the guard passes, `kafka-protocol`'s decoder
/// consumes exactly the bytes the guard walked (or fails for a reason the guard does not
/// look at, like UTF-8); when the guard fails before any array count is refused, the
/// decoder fails too (the guard is not stricter than the decoder).
pub fn responses(data: &[u8]) {
    let [api, version, frame @ ..] = data else {
        return;
    };
    let rt = RESPONSE_TYPES[usize::from(*api) % RESPONSE_TYPES.len()];
    let span = (rt.versions.max - rt.versions.min + 1) as u16;
    let version = rt.versions.min + (u16::from(*version) % span) as i16;
    let frame = Bytes::copy_from_slice(frame);
    check_agreement(&rt, frame.clone(), version);
    derive(rt.api, frame, version);
}

fn check_agreement(rt: &ResponseType, frame: Bytes, version: i16) {
    let mut body = frame;
    let header_version = (rt.header_version)(version);
    if frame::decode_guarded::<ResponseHeader>(&mut body, header_version).is_err() {
        return;
    }
    let walked = guard::check_schema(rt.schema, &body, version);
    match walked {
        Ok(walked) => {
            let mut buf = body.clone();
            if (rt.decode_unguarded)(&mut buf, version).is_ok() {
                assert_eq!(
                    body.len() - buf.len(),
                    walked,
                    "{:?} v{version}: the guard walked {walked} bytes, the decoder read {}",
                    rt.api,
                    body.len() - buf.len()
                );
            }
        }
        // The decoder would allocate for this count: that is what the guard is for.
        Err(GuardError::CountTooLarge { .. }) => {}
        Err(e) => {
            // Every count before the failure was checked, so the decoder is safe to run.
            let mut buf = body.clone();
            assert!(
                (rt.decode_unguarded)(&mut buf, version).is_err(),
                "{:?} v{version}: the guard refused ({e}) a body the decoder accepts",
                rt.api
            );
        }
    }
}

/// The production decode of `api`, then what the client computes from the response.
fn derive(api: ApiKey, frame: Bytes, version: i16) {
    let options = DecodeOptions::default();
    match api {
        ApiKey::ApiVersions => {
            if let Ok(r) = crate::net::broker::decode_api_versions(frame, version) {
                let _ = api_versions_fallback(&r, version);
                if let Ok(table) = ApiVersionTable::from_response(&r) {
                    let _ = table
                        .negotiate(ApiKey::Metadata, <m::MetadataRequest as Message>::VERSIONS);
                }
            }
        }
        ApiKey::Metadata => {
            if let Ok(r) = decode_response::<m::MetadataRequest>(frame, version) {
                let update = ClusterMetadata::from_response(&r);
                let asked = ["a".to_owned()];
                let merged = ClusterMetadata::default().merge(update.clone(), Some(&asked));
                assert!(
                    merged.topics.keys().all(|t| t == "a"),
                    "an answer for [a] added other topics"
                );
                let merged = ClusterMetadata::default().merge(update, None);
                for (name, topic) in &merged.topics {
                    for p in &topic.partitions {
                        let _ = merged.leader(name, p.id);
                    }
                }
            }
        }
        ApiKey::FindCoordinator => {
            if let Ok(r) = decode_response::<m::FindCoordinatorRequest>(frame, version) {
                let _ = parse_find_coordinator(version, &r);
            }
        }
        ApiKey::Fetch => {
            if let Ok(r) = decode_response::<m::FetchRequest>(frame, version) {
                for topic in &r.responses {
                    for p in &topic.partitions {
                        if let Some(records) = &p.records {
                            let scan = crate::consumer::scan::scan(records.clone(), 0, &options);
                            for batch in &scan.batches {
                                drain_batch(batch);
                            }
                        }
                    }
                }
            }
        }
        ApiKey::JoinGroup => {
            if let Ok(r) = decode_response::<m::JoinGroupRequest>(frame, version) {
                for member in &r.members {
                    let _ = Subscription::decode(&member.metadata);
                }
            }
        }
        ApiKey::SyncGroup => {
            if let Ok(r) = decode_response::<m::SyncGroupRequest>(frame, version) {
                let _ = Assignment::decode(&r.assignment);
            }
        }
        ApiKey::DescribeGroups => {
            if let Ok(r) = decode_response::<m::DescribeGroupsRequest>(frame, version) {
                for group in &r.groups {
                    for member in &group.members {
                        let _ = Subscription::decode(&member.member_metadata);
                        let _ = Assignment::decode(&member.member_assignment);
                    }
                }
            }
        }
        _ => {
            let rt = RESPONSE_TYPES
                .iter()
                .find(|rt| rt.api == api)
                .expect("api comes from RESPONSE_TYPES");
            let _ = (rt.decode)(frame, version);
        }
    }
}

/// Every record and header of a batch, through both iterators, and its control record.
fn drain_batch(batch: &records::RecordBatch) {
    let _ = batch.control_record();
    let mut owned = 0usize;
    for record in batch.records() {
        match record {
            Ok(record) => {
                owned += 1;
                for header in record.headers() {
                    let _ = header.key_str();
                    let _ = header.value();
                }
                let _ = (
                    record.offset(),
                    record.timestamp(),
                    record.key(),
                    record.value(),
                );
            }
            Err(_) => break,
        }
    }
    let mut iter = batch.records();
    let mut lent = 0usize;
    while let Some(record) = iter.next_ref() {
        match record {
            Ok(record) => {
                lent += 1;
                let headers = record.headers();
                assert_eq!(headers.len(), record.header_count());
                let _ = headers.count();
                let _ = record.to_record();
            }
            Err(_) => break,
        }
    }
    assert_eq!(owned, lent, "the two record iterators disagree");
}

/// Decodes `data[1..]` as the `records` field of a Fetch partition: every batch, every
/// record, every header, with every codec. Bit 0 of `data[0]` turns the CRC check off, so
/// mutated inputs reach the record and codec parsers (which must be safe without it).
pub fn record_batches(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let options = DecodeOptions {
        verify_crc: flags & 1 == 0,
        ..DecodeOptions::default()
    };
    let input = Bytes::copy_from_slice(rest);
    let mut total = 0usize;
    for batch in records::batches(input.clone(), &options) {
        match batch {
            Ok(batch) => {
                total += batch.size_in_bytes();
                let _ = (
                    batch.base_offset(),
                    batch.last_offset(),
                    batch.next_offset(),
                    batch.compression(),
                    batch.timestamp_type(),
                    batch.is_transactional(),
                    batch.is_control(),
                    batch.producer_id(),
                    batch.record_count(),
                );
                drain_batch(&batch);
            }
            Err(_) => break,
        }
    }
    assert!(
        total <= rest.len(),
        "batches cover more bytes than the input"
    );
    let _ = crate::consumer::scan::scan(input, 0, &options);
}

/// `data[0]` even: a subscription, odd: an assignment. What decodes must re-encode, the
/// re-encoding must decode to the same content, and encoding is stable from there.
///
/// "The same content", not the same value: encoding is canonical (subscriptions sort
/// and deduplicate, assignments group partitions by topic in order of first
/// appearance, as the Java client writes them), and a member may send a topic in two
/// groups. The fuzzer found that our first version of this property, `decode(encode(a))
/// == a`, does not hold for such input.
pub fn consumer_protocol(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        if let Ok(s) = Subscription::decode(bytes) {
            let again = s.encode(3).expect("a decoded subscription encodes");
            let decoded = Subscription::decode(&again).expect("our encoding decodes");
            assert_eq!(decoded.encode(3).ok(), Some(again));
        }
    } else if let Ok(a) = Assignment::decode(bytes) {
        let again = a.encode(3).expect("a decoded assignment encodes");
        let decoded = Assignment::decode(&again).expect("our encoding decodes");
        let sorted = |a: &Assignment| {
            let mut p: Vec<(String, i32)> = a
                .partitions
                .iter()
                .map(|tp| (tp.topic.to_string(), tp.partition))
                .collect();
            p.sort();
            p
        };
        assert_eq!(
            sorted(&decoded),
            sorted(&a),
            "re-encoding changed the partitions"
        );
        assert_eq!(decoded.user_data, a.user_data);
        assert_eq!(decoded.encode(3).ok(), Some(again));
    }
}

/// The client nonce of the SCRAM target's exchanges (RFC 7677's example).
pub const SCRAM_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";

/// Without the `sasl` feature there is no SCRAM client to fuzz.
#[cfg(not(feature = "sasl"))]
pub fn scram(_data: &[u8]) {}

/// `data[0]` picks SHA-256 (even) or SHA-512; the rest is the server-first message, a
/// `0xff` byte (never in UTF-8), and the server-final message.
#[cfg(feature = "sasl")]
pub fn scram(data: &[u8]) {
    let Some((&hash, rest)) = data.split_first() else {
        return;
    };
    let hash = if hash % 2 == 0 {
        ScramHash::Sha256
    } else {
        ScramHash::Sha512
    };
    let (server_first, server_final) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut scram = Scram::with_nonce(
        hash,
        Credentials::new("user", "pencil"),
        SCRAM_NONCE.to_owned(),
    );
    scram
        .step(None)
        .expect("the client-first message needs no input")
        .expect("SCRAM starts with a client message");
    let Ok(client_final) = scram.step(Some(server_first)) else {
        return;
    };
    let client_final = client_final.expect("a client-final message follows server-first");
    assert!(client_final.starts_with(b"c=biws,r="));
    let Some(server_final) = server_final else {
        return;
    };
    let outcome = scram.step(Some(server_final));
    if outcome.is_ok() {
        assert_eq!(outcome, Ok(None), "nothing follows a verified server-final");
    }
    assert!(matches!(
        scram.step(Some(b"v=")),
        Err(SaslError::UnexpectedStep(_))
    ));
}

// ---------------------------------------------------------------------------------------
// Mutator

/// Values that make length and count fields interesting.
const INTERESTING_I32: [i32; 14] = [
    i32::MAX,
    i32::MAX - 1,
    0x7fff_fff0,
    0x4000_0000,
    0x1000_0000,
    0x0100_0000,
    65_536,
    -1,
    -2,
    i32::MIN,
    0,
    1,
    255,
    100 * 1024 * 1024 + 1,
];
const INTERESTING_I16: [i16; 7] = [i16::MAX, i16::MAX - 1, -1, -2, i16::MIN, 0, 0x100];
/// Unsigned varints: u32::MAX, 2^31, 2^28 and an over-long six-byte encoding.
const INTERESTING_VARINTS: [&[u8]; 4] = [
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x80, 0x80, 0x80, 0x80, 0x08],
    &[0x80, 0x80, 0x80, 0x80, 0x01],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
];

/// A deterministic byte mutator in the spirit of libFuzzer's, without coverage: stacks
/// one to four of bit flips, interesting bytes, inserts, deletes, length fields set near
/// `i32::MAX` (and varints near `u32::MAX`), off-by-one arithmetic, truncation,
/// chunk copies and splices with another input.
#[derive(Debug, Clone)]
pub struct Mutator {
    rng: Rng,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
        }
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.rng.below(n)
    }

    /// A mutation of `input`, at most `max_len` bytes; `others` supplies splices.
    pub fn mutate(&mut self, input: &[u8], others: &[Vec<u8>], max_len: usize) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.rng.below(4) {
            self.one(&mut out, others);
        }
        out.truncate(max_len);
        out
    }

    fn pos(&mut self, len: usize) -> usize {
        self.rng.below(len.max(1))
    }

    fn one(&mut self, out: &mut Vec<u8>, others: &[Vec<u8>]) {
        let rng = &mut self.rng;
        match rng.below(12) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0, 1, 0x7f, 0x80, 0xff, rng.next_u64() as u8][rng.below(6)];
            }
            2 => {
                let i = rng.below(out.len() + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(i..i, bytes);
            }
            3 if !out.is_empty() => {
                let i = rng.below(out.len());
                let n = (1 + rng.below(16)).min(out.len() - i);
                out.drain(i..i + n);
            }
            4 if out.len() >= 4 => {
                let i = rng.below(out.len() - 3);
                let v = if rng.chance(4) {
                    // A count just past what is left.
                    (out.len() - i) as i32 + rng.below(3) as i32 - 1
                } else {
                    INTERESTING_I32[rng.below(INTERESTING_I32.len())]
                };
                out[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            5 if out.len() >= 2 => {
                let i = rng.below(out.len() - 1);
                let v = INTERESTING_I16[rng.below(INTERESTING_I16.len())];
                out[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            6 => {
                let i = rng.below(out.len() + 1);
                let v = INTERESTING_VARINTS[rng.below(INTERESTING_VARINTS.len())];
                let end = (i + 1).min(out.len());
                out.splice(i..end, v.iter().copied());
            }
            7 if out.len() >= 4 => {
                // Off by a little: lengths one short or one long.
                let i = rng.below(out.len() - 3);
                let v = i32::from_be_bytes(out[i..i + 4].try_into().expect("four bytes"));
                let delta = rng.below(33) as i32 - 16;
                out[i..i + 4].copy_from_slice(&v.wrapping_add(delta).to_be_bytes());
            }
            8 if !out.is_empty() => {
                let at = rng.below(out.len());
                out.truncate(at);
            }
            9 if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                let at = rng.below(out.len() + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            10 if out.len() >= 2 => {
                let from = rng.below(out.len());
                let n = (1 + rng.below(32)).min(out.len() - from);
                let chunk = out[from..from + n].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, chunk);
            }
            _ => {
                let len = out.len();
                let i = self.pos(len);
                if i < out.len() {
                    out[i] = out[i].wrapping_add(self.rng.below(5) as u8).wrapping_sub(2);
                }
            }
        }
    }
}

/// What [`run`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    /// Inputs the target ran on, seeds included.
    pub execs: u64,
    /// The longest input.
    pub max_input_len: usize,
}

/// Runs `target` on every seed, then on `iterations` mutated inputs, deterministically
/// for a given `seed`. `check` runs around each input (the harness's allocation and
/// panic bookkeeping): it gets the input and a closure running the target on it.
///
/// Without coverage feedback, some variety comes from a small pool: one mutated input
/// in eight joins it (replacing a random older one), so mutations stack over rounds.
pub fn run(
    target: Target,
    seeds: &[Vec<u8>],
    iterations: u64,
    seed: u64,
    mut check: impl FnMut(&[u8], &dyn Fn(&[u8])),
) -> RunStats {
    const POOL: usize = 256;
    const MAX_LEN: usize = 64 * 1024;
    let mut stats = RunStats::default();
    let mut exec = |input: &[u8], stats: &mut RunStats| {
        check(input, &|data| target.run(data));
        stats.execs += 1;
        stats.max_input_len = stats.max_input_len.max(input.len());
    };
    for s in seeds {
        exec(s, &mut stats);
    }
    if seeds.is_empty() {
        return stats;
    }
    let mut mutator = Mutator::new(seed);
    let mut pool: Vec<Vec<u8>> = Vec::new();
    for _ in 0..iterations {
        let base = if !pool.is_empty() && mutator.below(3) == 0 {
            &pool[mutator.below(pool.len())]
        } else {
            &seeds[mutator.below(seeds.len())]
        };
        let input = mutator.mutate(base, seeds, MAX_LEN);
        exec(&input, &mut stats);
        if mutator.below(8) == 0 {
            if pool.len() < POOL {
                pool.push(input);
            } else {
                let i = mutator.below(POOL);
                pool[i] = input;
            }
        }
    }
    stats
}

// ---------------------------------------------------------------------------------------
// Seeds

/// Seeds built in the library; see [`Target::seeds`].
pub mod seeds {
    use super::*;

    /// A `responses` input: type index, version offset, then the frame.
    pub fn response_input(api: ApiKey, version: i16, frame: &[u8]) -> Option<Vec<u8>> {
        let index = RESPONSE_TYPES.iter().position(|rt| rt.api == api)?;
        let rt = RESPONSE_TYPES[index];
        if !(rt.versions.min..=rt.versions.max).contains(&version) {
            return None;
        }
        let mut out = vec![index as u8, (version - rt.versions.min) as u8];
        out.extend_from_slice(frame);
        Some(out)
    }

    /// Response frames generated from the layouts: every type, every version we speak.
    pub fn response_frames(per_version: usize, seed: u64) -> Vec<(ApiKey, i16, Vec<u8>)> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::new();
        for rt in RESPONSE_TYPES {
            for version in rt.versions.min..=rt.versions.max {
                for _ in 0..per_version {
                    let mut frame = Vec::new();
                    frame.put_i32(rng.below(1 << 16) as i32);
                    if (rt.header_version)(version) >= 1 {
                        frame.push(0);
                    }
                    frame.extend_from_slice(&generate(rt.schema, version, &mut rng));
                    out.push((rt.api, version, frame));
                }
            }
        }
        out
    }

    pub fn responses() -> Vec<Vec<u8>> {
        response_frames(2, 1)
            .into_iter()
            .filter_map(|(api, version, frame)| response_input(api, version, &frame))
            .collect()
    }

    pub fn frame() -> Vec<Vec<u8>> {
        let frames = response_frames(1, 2);
        let mut out = Vec::new();
        for (i, group) in frames.chunks(3).enumerate() {
            let mut stream = vec![i as u8];
            for (_, _, f) in group {
                stream.put_i32(f.len() as i32);
                stream.extend_from_slice(f);
            }
            if i % 4 == 3 {
                // A partial frame at the end, as a socket delivers it.
                stream.truncate(stream.len() - 3);
            }
            out.push(stream);
        }
        out.push(vec![0, 0, 0, 0, 4, 0, 0, 0, 1]);
        out
    }

    /// Batches from our `BatchBuilder`: every codec, duplicate header keys, null keys and
    /// values, transactional and control flags, LogAppendTime, batches back to back.
    pub fn record_batches() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (i, codec) in Compression::built().enumerate() {
            let mut stream = Vec::new();
            for n in 1..=3usize {
                let mut b = BatchBuilder::new()
                    .base_offset((i * 100 + n * 10) as i64)
                    .compression(codec, None)
                    .producer(7, 1, n as i32 * 10)
                    .transactional(n == 2)
                    .timestamp_type(if n == 3 {
                        TimestampType::LogAppendTime
                    } else {
                        TimestampType::CreateTime
                    });
                for r in 0..n * 3 {
                    let headers = [
                        Header::new("k", Some(b"v1")),
                        Header::new("k", Some(b"v2")),
                        Header::new("nil", None),
                    ];
                    let value = format!("value {r} with some repeated text text text");
                    let key = (r % 2 == 0).then_some(b"key".as_slice());
                    b.push(
                        1_700_000_000_000 + r as i64,
                        key,
                        Some(value.as_bytes()),
                        &headers[..r % 4],
                    )
                    .expect("a small record fits");
                }
                let batch = b.finish().expect("a batch with records encodes");
                out.push([&[0u8][..], &batch].concat());
                out.push([&[1u8][..], &batch].concat());
                stream.extend_from_slice(&batch);
            }
            out.push([&[0u8][..], &stream].concat());
            // A truncated tail, as Fetch responses end.
            out.push([&[0u8][..], &stream[..stream.len() - 7]].concat());
        }
        // A control batch (an abort marker: version 0, type 0).
        let mut control = BatchBuilder::new().control(true).transactional(true);
        control
            .push(1, Some(&[0, 0, 0, 0]), Some(&[0, 0, 0, 0, 0, 0]), &[])
            .expect("a control record fits");
        out.push([&[0u8][..], &control.finish().expect("encodes")].concat());
        out
    }

    pub fn consumer_protocol() -> Vec<Vec<u8>> {
        let tp = |t: &str, p| TopicPartition::new(t, p);
        let mut out = Vec::new();
        for version in 0..=3 {
            let s = Subscription {
                topics: vec!["orders".into(), "payments".into(), "b".into()],
                user_data: (version % 2 == 1).then(|| Bytes::from_static(b"user data")),
                owned_partitions: vec![tp("orders", 0), tp("orders", 3), tp("b", 1)],
                generation: Some(5),
                rack_id: Some("rack-1".into()),
            };
            out.push([&[0u8][..], &s.encode(version).expect("encodes")].concat());
            out.push(
                [
                    &[0u8][..],
                    &Subscription::new(["x"]).encode(version).expect("encodes"),
                ]
                .concat(),
            );
            let a = Assignment {
                partitions: vec![tp("orders", 0), tp("orders", 1), tp("payments", 2)],
                user_data: (version == 2).then(|| Bytes::from_static(b"ud")),
            };
            out.push([&[1u8][..], &a.encode(version).expect("encodes")].concat());
        }
        out
    }

    pub fn scram() -> Vec<Vec<u8>> {
        // RFC 7677 §3, SHA-256: the complete, valid exchange.
        let first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        let join = |hash: u8, a: &str, b: &str| {
            let mut v = vec![hash];
            v.extend_from_slice(a.as_bytes());
            v.push(0xff);
            v.extend_from_slice(b.as_bytes());
            v
        };
        vec![
            join(0, first, last),
            join(1, first, last),
            join(0, first, "e=invalid-proof"),
            join(0, first, "v=AAAA,ext=1"),
            join(0, "r=rOprNGfwEbeRWgbNEkqOxyz,s=c2FsdA==,i=4096,ext", "v="),
            join(1, "m=ext,r=rOprNGfwEbeRWgbNEkqO1,s=c2FsdA==,i=4096", ""),
            join(0, "e=other-error", ""),
        ]
    }
}

/// The leader's side of a rebalance without its I/O, for the assignor benchmark
/// (`benches/assignors.rs`), through the functions the group driver calls: each member's
/// JoinGroup metadata decoded, the assignor run, each assignment encoded for SyncGroup.
pub mod leader {
    use std::collections::BTreeMap;

    use bytes::Bytes;

    use crate::group::assignor::{
        encode_assignments, join_subscription, joined_member, AssignorKind, Member,
        RebalanceProtocol,
    };
    use crate::group::consumer_protocol::{Assignment, MAX_VERSION};
    use crate::TopicPartition;

    /// What a member sends for `kind` in JoinGroup, subscribed to `topics`, owning
    /// `owned` since `generation` (below zero: nothing yet).
    pub fn join_metadata(
        kind: AssignorKind,
        topics: &[String],
        owned: &[TopicPartition],
        generation: i32,
    ) -> Bytes {
        let assignor = kind.assignor();
        let cooperative = assignor.protocol() == RebalanceProtocol::Cooperative;
        join_subscription(assignor.as_ref(), topics, owned, generation, cooperative)
            .encode(MAX_VERSION)
            .expect("a subscription encodes")
    }

    /// The leader's work for `members` (member id, JoinGroup metadata) over `partitions`
    /// (topic to partition count): member id to its encoded assignment.
    pub fn lead(
        kind: AssignorKind,
        members: &[(String, Bytes)],
        partitions: &BTreeMap<String, i32>,
    ) -> Vec<(String, Bytes)> {
        let members: Vec<Member> = members
            .iter()
            .map(|(id, metadata)| joined_member(id, None, metadata))
            .collect();
        let plan = kind
            .assignor()
            .assign(&members, partitions)
            .expect("valid input");
        encode_assignments(plan).expect("an assignment encodes")
    }

    /// The partitions of an encoded assignment.
    pub fn partitions(assignment: &[u8]) -> Vec<TopicPartition> {
        Assignment::decode(assignment)
            .expect("an assignment decodes")
            .partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Inputs the fuzzers found, kept as regression tests.
    #[test]
    fn regressions() {
        // consumer_protocol: an assignment naming topic "" in two separate groups;
        // re-encoding groups them, so decode(encode(a)) != a (harness property fixed).
        consumer_protocol(&unhex(
            "0100020000000500066f726400000000000000000000000006000040000000002a00020000003500\
             01620020000803020000090008000000000000000000000a00000003020000000000410000001000\
             00000000000000000800000000000000003a00000000000500066f72640000000000000000000000\
             0006000040000000002a000200000035000162ffffffffffffffffffffffffffffffffffffffffff\
             ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\
             ffffffffffffffffffffffffffff0000010000000024000000000000000000000000010000000000\
             0012000100087061",
        ));
    }

    #[test]
    fn every_target_runs_its_seeds() {
        for target in Target::ALL {
            let seeds = target.seeds();
            assert!(!seeds.is_empty(), "{target:?}");
            for s in &seeds {
                target.run(s);
            }
        }
    }

    #[test]
    fn the_mutator_is_deterministic() {
        let seeds = Target::ConsumerProtocol.seeds();
        let a: Vec<Vec<u8>> = {
            let mut m = Mutator::new(9);
            (0..100)
                .map(|i| m.mutate(&seeds[i % seeds.len()], &seeds, 4096))
                .collect()
        };
        let mut m = Mutator::new(9);
        for (i, want) in a.iter().enumerate() {
            assert_eq!(&m.mutate(&seeds[i % seeds.len()], &seeds, 4096), want);
        }
    }
}
