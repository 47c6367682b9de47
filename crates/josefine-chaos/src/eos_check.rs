//! The verdict on an exactly-once run (pure): members ran `ConsumerGroup::transact`,
//! writing one output record per input, whose value names the input
//! ([`crate::logs::output_value`]); the output topic was read back `read_committed`.
//!
//! - **Lost**: an input in the topic without a committed output (or one the producer
//!   was told was written at an offset where the topic holds something else).
//! - **Duplicates**: every committed output of an input but the first. Unlike the
//!   at-least-once modes nothing explains a duplicate here: a transaction that wrote
//!   an output either committed the input's offset with it, so no later owner
//!   transforms the input again, or aborted, so its output is invisible.
//! - **Strays**: a committed output naming an input the topic does not hold (wrong
//!   sequence number, no such offset, a value that does not parse).
//! - **Offsets not at the end**: partitions whose committed offset, read after every
//!   member closed, is not the input's end: all consumed means all committed.
//! - **Transforms** and **redone**: how often members transformed a record (their
//!   `T` lines), and how many of those were repeats: the work of aborted
//!   transactions (a killed member's, a refused commit's) done again. Not a failure:
//!   it shows the run went through the abort paths whose outputs must stay hidden.

use std::collections::{BTreeMap, HashMap};

use crate::audit::{Output, Stored};
use crate::check::{check_acks, note, Acks, Incarnation};
use crate::logs::{parse_output_value, ProducerLog};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct EosVerdict {
    pub acks: Acks,
    /// Committed output records read.
    pub outputs: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub strays: usize,
    pub offsets_not_at_end: usize,
    pub transforms: usize,
    pub redone: usize,
    /// The first few problems, for the report.
    pub problems: Vec<String>,
}

impl EosVerdict {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.strays == 0 && self.offsets_not_at_end == 0
    }
}

/// `ends`: each input partition's end (next offset); `committed`: the group's
/// committed offsets after every member closed.
pub fn check_exactly_once(
    producer: &[ProducerLog],
    input: &[Stored],
    outputs: &[Output],
    members: &[Incarnation],
    partitions: i32,
    ends: &BTreeMap<i32, i64>,
    committed: &BTreeMap<i32, i64>,
) -> EosVerdict {
    let mut v = EosVerdict {
        acks: check_acks(producer, input),
        outputs: outputs.len(),
        ..EosVerdict::default()
    };
    v.lost = v.acks.lost;
    v.problems = v.acks.problems.clone();
    let stored: HashMap<(i32, i64), u64> = input.iter().map(|&(p, o, seq)| ((p, o), seq)).collect();

    // Per input: where its committed outputs are and who wrote them.
    let mut written: HashMap<(i32, i64), Vec<String>> = HashMap::new();
    for (op, oo, value) in outputs {
        let of = match parse_output_value(value) {
            Ok(of) => of,
            Err(err) => {
                v.strays += 1;
                note(
                    &mut v.problems,
                    format!("stray: output {op}@{oo} {value:?} does not parse: {err}"),
                );
                continue;
            }
        };
        if stored.get(&(of.partition, of.offset)) != Some(&of.seq) {
            v.strays += 1;
            note(
                &mut v.problems,
                format!(
                    "stray: output {op}@{oo} names input {}@{} seq {}, the input holds {:?} there",
                    of.partition,
                    of.offset,
                    of.seq,
                    stored.get(&(of.partition, of.offset))
                ),
            );
            continue;
        }
        written
            .entry((of.partition, of.offset))
            .or_default()
            .push(format!(
                "output {op}@{oo} by member {} incarnation {}",
                of.member, of.incarnation
            ));
    }

    let mut keys: Vec<&(i32, i64)> = stored.keys().collect();
    keys.sort();
    let mut unwritten = 0;
    for key in keys {
        let (p, o) = *key;
        match written.get(key).map_or(0, Vec::len) {
            0 => {
                unwritten += 1;
                if unwritten <= 20 {
                    note(
                        &mut v.problems,
                        format!(
                            "lost: input {p}@{o} (seq {}) has no committed output",
                            stored[key]
                        ),
                    );
                }
            }
            1 => {}
            n => {
                v.duplicates += n - 1;
                note(
                    &mut v.problems,
                    format!(
                        "duplicate: input {p}@{o} (seq {}) has {n} committed outputs: {}",
                        stored[key],
                        written[key].join("; ")
                    ),
                );
            }
        }
    }
    v.lost += unwritten;

    let mut transformed: HashMap<(i32, i64), usize> = HashMap::new();
    for inc in members {
        for t in &inc.log.transformed {
            v.transforms += 1;
            *transformed.entry((t.partition, t.offset)).or_default() += 1;
        }
    }
    v.redone = transformed.values().map(|n| n - 1).sum();

    for p in 0..partitions {
        let end = ends.get(&p).copied().unwrap_or(0);
        let at = committed.get(&p).copied();
        if at.unwrap_or(0) != end {
            v.offsets_not_at_end += 1;
            note(
                &mut v.problems,
                format!(
                    "partition {p}: the group committed {at:?} at the end, the input ends at {end}"
                ),
            );
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::End;
    use crate::logs::{output_value, parse_member_log, parse_producer_log};

    const INPUT: &[Stored] = &[(0, 0, 10), (0, 1, 11), (1, 0, 12)];

    fn producer() -> Vec<ProducerLog> {
        vec![parse_producer_log("A 10 0 0\nA 11 0 1\nA 12 1 0\n").unwrap()]
    }

    fn member(member: usize, text: &str) -> Incarnation {
        Incarnation {
            member,
            incarnation: 0,
            end: End::Stopped,
            log: parse_member_log(text).unwrap(),
        }
    }

    fn out(partition: i32, offset: i64, seq: u64, member: usize) -> String {
        output_value(seq, partition, offset, member, 0)
    }

    fn ends() -> BTreeMap<i32, i64> {
        BTreeMap::from([(0, 2), (1, 1)])
    }

    #[test]
    fn every_input_once_with_offsets_at_the_end_passes_and_redone_work_is_counted() {
        // Member 0 transformed 0@0 and 0@1, its transaction aborted; member 1 did
        // them again and committed.
        let a = member(0, "T 0 0 10 1\nT 0 1 11 1\n");
        let b = member(1, "T 0 0 10 2\nT 0 1 11 2\nT 1 0 12 2\n");
        let outputs = vec![
            (0, 5, out(0, 0, 10, 1)),
            (0, 6, out(0, 1, 11, 1)),
            (1, 3, out(1, 0, 12, 1)),
        ];
        let v = check_exactly_once(&producer(), INPUT, &outputs, &[a, b], 2, &ends(), &ends());
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.outputs, v.transforms, v.redone), (3, 5, 2));
    }

    #[test]
    fn a_second_committed_output_is_a_duplicate_and_a_missing_one_is_lost() {
        let outputs = vec![
            (0, 5, out(0, 0, 10, 0)),
            (0, 9, out(0, 0, 10, 1)),
            (1, 3, out(1, 0, 12, 1)),
        ];
        let v = check_exactly_once(&producer(), INPUT, &outputs, &[], 2, &ends(), &ends());
        assert_eq!((v.duplicates, v.lost, v.strays), (1, 1, 0));
        assert!(!v.ok());
        assert!(v
            .problems
            .iter()
            .any(|p| p.contains("member 0") && p.contains("member 1")));
    }

    #[test]
    fn outputs_naming_no_input_are_strays() {
        let outputs = vec![
            (0, 5, out(0, 0, 10, 0)),
            (0, 6, out(0, 1, 99, 0)),
            (0, 7, "garbage".to_string()),
            (1, 3, out(1, 0, 12, 1)),
            (1, 4, out(1, 7, 12, 1)),
        ];
        let v = check_exactly_once(&producer(), INPUT, &outputs, &[], 2, &ends(), &ends());
        assert_eq!((v.strays, v.lost, v.duplicates), (3, 1, 0));
        assert!(!v.ok());
    }

    #[test]
    fn committed_offsets_short_of_the_end_fail() {
        let outputs = vec![
            (0, 5, out(0, 0, 10, 0)),
            (0, 6, out(0, 1, 11, 0)),
            (1, 3, out(1, 0, 12, 1)),
        ];
        let short = BTreeMap::from([(0, 1), (1, 1)]);
        let v = check_exactly_once(&producer(), INPUT, &outputs, &[], 3, &ends(), &short);
        // Partition 0 is behind; partition 2 is empty and uncommitted, as it should be.
        assert_eq!(v.offsets_not_at_end, 1, "{:?}", v.problems);
        assert!(!v.ok());
    }
}
