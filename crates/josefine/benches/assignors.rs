//! What the group leader's assignment costs in a big group: 1,000 members, 10 topics of
//! 1,000 partitions each (10,000 partitions).
//!
//! Each iteration is the leader's whole work between JoinGroup and SyncGroup: decoding
//! every member's subscription (with its owned partitions or sticky user data), running
//! the assignor, encoding every member's assignment (`josefine::fuzzing::leader`, the
//! functions the group driver calls). Cases, for each assignor:
//! - `first`: nobody owns anything (a group's first generation);
//! - `again`: everybody owns its share of a balanced assignment (a rebalance that changes
//!   nothing, such as a member's restart or a new topic elsewhere);
//! - `leave`: one member of the balanced group is gone, its partitions to spread;
//! - `join`: a new member, owning nothing, joins the balanced group;
//! - `mixed`: members subscribe to different topics (each to 5 of the 10), which takes
//!   the sticky assignors' general algorithm, with ownership from a previous round.
//!
//! The goal (issue #17): under 1 s for the sticky assignors. Run:
//! `cargo bench --bench assignors`; `scripts/bench.sh` (section `assign`) runs it beside
//! the Java client's assignors on the same input (`JavaBenchPeer assign`). Under
//! `cargo test` (no `--bench` argument) each case runs once on a group a tenth of the
//! size, so the test command stays quick.

use std::collections::BTreeMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use josefine::fuzzing::leader::{join_metadata, lead, partitions};
use josefine::{AssignorKind, TopicPartition};

const TOPICS: usize = 10;

struct Size {
    members: usize,
    partitions_per_topic: i32,
}

/// 1,000 members x 1,000 partitions per topic under `cargo bench`, or the sizes in
/// `ASSIGN_MEMBERS` and `ASSIGN_PARTITIONS_PER_TOPIC` (scripts/bench.sh's smoke run
/// takes a small group); a tenth of each under `cargo test`.
fn size() -> Size {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if std::env::args().any(|a| a == "--bench") {
        Size {
            members: var("ASSIGN_MEMBERS", 1_000),
            partitions_per_topic: var("ASSIGN_PARTITIONS_PER_TOPIC", 1_000) as i32,
        }
    } else {
        Size {
            members: 100,
            partitions_per_topic: 100,
        }
    }
}

fn topic(t: usize) -> String {
    format!("topic-{t}")
}

/// Member `i`'s topics: all of them, or (`mixed`) 5 of the 10, starting at `i % 10`.
fn topics_of(i: usize, mixed: bool) -> Vec<String> {
    if mixed {
        (0..5).map(|k| topic((i + k) % TOPICS)).collect()
    } else {
        (0..TOPICS).map(topic).collect()
    }
}

fn member_id(i: usize) -> String {
    format!("consumer-{i:04}-5f8c2a1e-93d4-4b7a-a0c6-1d2e3f405162")
}

/// The JoinGroup members `ids` (indexes), each owning what `owned` says (nothing if
/// absent) since generation 7.
fn members(
    kind: AssignorKind,
    ids: impl Iterator<Item = usize>,
    mixed: bool,
    owned: &BTreeMap<String, Vec<TopicPartition>>,
) -> Vec<(String, Bytes)> {
    ids.map(|i| {
        let id = member_id(i);
        let (mine, generation) = match owned.get(&id) {
            Some(p) => (p.as_slice(), 7),
            None => (&[][..], -1),
        };
        let metadata = join_metadata(kind, &topics_of(i, mixed), mine, generation);
        (id, metadata)
    })
    .collect()
}

fn decoded(plan: Vec<(String, Bytes)>) -> BTreeMap<String, Vec<TopicPartition>> {
    plan.into_iter()
        .map(|(id, bytes)| (id, partitions(&bytes)))
        .collect()
}

fn assignors(c: &mut Criterion) {
    let size = size();
    let n = size.members;
    let counts: BTreeMap<String, i32> = (0..TOPICS)
        .map(|t| (topic(t), size.partitions_per_topic))
        .collect();
    let mut group = c.benchmark_group(format!(
        "assign {n} members x {} partitions",
        TOPICS as i32 * size.partitions_per_topic
    ));
    group.sample_size(10);
    for kind in AssignorKind::ALL {
        let none = BTreeMap::new();
        let first = members(kind, 0..n, false, &none);
        let balanced = decoded(lead(kind, &first, &counts));
        let mixed_first = members(kind, 0..n, true, &none);
        let mixed_owned = decoded(lead(kind, &mixed_first, &counts));
        let cases = [
            ("first", first),
            ("again", members(kind, 0..n, false, &balanced)),
            ("leave", members(kind, 1..n, false, &balanced)),
            ("join", members(kind, 0..n + 1, false, &balanced)),
            ("mixed", members(kind, 0..n, true, &mixed_owned)),
        ];
        for (case, joined) in cases {
            group.bench_with_input(BenchmarkId::new(kind.name(), case), &joined, |b, joined| {
                b.iter(|| black_box(lead(kind, joined, &counts)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, assignors);
criterion_main!(benches);
