//! The verdict on a run, from the logs and the topic's content (pure).
//!
//! - **Lost**: a record in the topic that no member logged, or one acknowledged at an
//!   offset where the topic holds something else: the group's (or the client's)
//!   fault, always a failure.
//! - **Broker lost**: a record the producer was told was a duplicate
//!   (DUPLICATE_SEQUENCE_NUMBER, delivered without an offset) that the topic does
//!   not hold: the broker claimed to have it and did not (Tansu after a kill -9; see
//!   docs/RELIABILITY.md). Counted apart; the group cannot process what is not there.
//! - **Duplicates**: every processing of a record but the last, in the order the
//!   members logged them (each `R` line has its time; the order of sessions is no
//!   guide, as a KIP-848 session lasts as long as its process). Each is explained by
//!   the session that processed it, as of the next processing:
//!   - processed again below an offset that session had committed by then: a
//!     **violation** (the next owner must start at or after the commit);
//!   - the session was cut short by a SIGKILL of its process (no end line) and the
//!     record lies at or after its last logged commit: **kill**, the expected
//!     at-least-once cost;
//!   - the session ended (cleanup ran) with the record marked but its final commit
//!     not covering it: **session lost**; the membership was lost or the commit
//!     failed. Counted apart, by cause: the session ended within
//!     `BROKER_WINDOW_MS` after a broker kill, or the member's own commits timed out
//!     during it (the coordinator did not answer in time, so the member gave the
//!     session up: see docs/RELIABILITY.md), or neither;
//!   - cut short by a crash of the member process: **crash**;
//!   - anything else: **unexplained** (a violation).
//! - **Mismatch**: a member logged a record the topic does not hold at that offset.

use std::collections::{HashMap, HashSet};

use crate::audit::Stored;
use crate::logs::{MemberLog, ProducerLog};

/// A session that lost its commit this long after a broker kill counts as caused by it.
pub const BROKER_WINDOW_MS: u64 = 30_000;

/// How a member process's incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// SIGKILLed by the controller.
    Killed,
    /// SIGTERMed by the controller (left the group) and exited by itself.
    Left,
    /// Stopped at the end of the run (SIGTERM).
    Stopped,
    /// Exited on its own, or had to be killed after a SIGTERM.
    Crashed,
}

#[derive(Debug, Clone)]
pub struct Incarnation {
    pub member: usize,
    pub incarnation: u32,
    pub end: End,
    pub log: MemberLog,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    /// Records in the topic at the end.
    pub in_topic: usize,
    pub acked: usize,
    /// Of `acked`, delivered as duplicates (no offset known).
    pub acked_as_duplicate: usize,
    pub failed_sends: usize,
    /// Sequence numbers the topic holds more than once (a retried send written twice).
    pub stored_twice: usize,
    pub processed: usize,
    pub lost: usize,
    pub broker_lost: usize,
    pub duplicates: usize,
    pub dup_kill: usize,
    pub dup_session_lost: usize,
    /// Of `dup_session_lost`, those whose session ended within the broker window.
    pub dup_session_lost_near_broker_kill: usize,
    /// Of `dup_session_lost`, the others whose session saw a commit time out.
    pub dup_session_lost_coordinator_timeout: usize,
    pub dup_crash: usize,
    pub dup_unexplained: usize,
    pub below_commit: usize,
    pub mismatches: usize,
    /// The first few problems, for the report.
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.dup_unexplained == 0
            && self.below_commit == 0
            && self.mismatches == 0
    }

    fn problem(&mut self, text: String) {
        note(&mut self.problems, text);
    }
}

/// Keeps the first problems for the report (a broken run can have thousands).
pub fn note(problems: &mut Vec<String>, text: String) {
    if problems.len() < 50 {
        problems.push(text);
    }
}

/// The producer's delivery reports against what the topic holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Acks {
    /// Records in the topic.
    pub in_topic: usize,
    pub acked: usize,
    /// Of `acked`, delivered as duplicates (no offset known).
    pub acked_as_duplicate: usize,
    pub failed_sends: usize,
    /// Sequence numbers the topic holds more than once (a retried send written twice).
    pub stored_twice: usize,
    /// Acknowledged as duplicates, not in the topic (see the module docs).
    pub broker_lost: usize,
    /// Acknowledged at an offset where the topic holds something else.
    pub lost: usize,
    pub problems: Vec<String>,
}

pub fn check_acks(producer: &[ProducerLog], topic: &[Stored]) -> Acks {
    let mut a = Acks::default();
    let stored: HashMap<(i32, i64), u64> = topic.iter().map(|&(p, o, seq)| ((p, o), seq)).collect();
    a.in_topic = stored.len();
    let mut stored_seqs: HashSet<u64> = HashSet::new();
    for &(_, _, seq) in topic {
        if !stored_seqs.insert(seq) {
            a.stored_twice += 1;
        }
    }
    for log in producer {
        a.failed_sends += log.failed.len();
        for &(seq, p, o) in &log.acked {
            a.acked += 1;
            if o < 0 {
                a.acked_as_duplicate += 1;
                if !stored_seqs.contains(&seq) {
                    a.broker_lost += 1;
                    note(&mut a.problems, format!("broker lost: seq {seq} (partition {p}) acknowledged as a duplicate, not in the topic"));
                }
            } else if stored.get(&(p, o)) != Some(&seq) {
                a.lost += 1;
                note(
                    &mut a.problems,
                    format!(
                        "lost: seq {seq} acknowledged at {p}@{o}, the topic holds {:?} there",
                        stored.get(&(p, o))
                    ),
                );
            }
        }
    }
    a
}

/// One processing of a record: when, and by which incarnation and session.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at_ms: u64,
    started_ms: u64,
    incarnation: usize,
    session: usize,
    seq: u64,
}

pub fn check(
    producer: &[ProducerLog],
    topic: &[Stored],
    members: &[Incarnation],
    broker_kills_ms: &[u64],
) -> Verdict {
    let mut v = Verdict::default();
    let stored: HashMap<(i32, i64), u64> = topic.iter().map(|&(p, o, seq)| ((p, o), seq)).collect();
    let acks = check_acks(producer, topic);
    v.in_topic = acks.in_topic;
    v.stored_twice = acks.stored_twice;
    v.failed_sends = acks.failed_sends;
    v.acked = acks.acked;
    v.acked_as_duplicate = acks.acked_as_duplicate;
    v.broker_lost = acks.broker_lost;
    v.lost = acks.lost;
    for problem in acks.problems {
        v.problem(problem);
    }

    let mut seen: HashMap<(i32, i64), Vec<Seen>> = HashMap::new();
    for (i, inc) in members.iter().enumerate() {
        for (s, session) in inc.log.sessions.iter().enumerate() {
            for r in &session.records {
                v.processed += 1;
                seen.entry((r.partition, r.offset)).or_default().push(Seen {
                    at_ms: r.at_ms,
                    started_ms: session.started_ms,
                    incarnation: i,
                    session: s,
                    seq: r.seq,
                });
            }
        }
    }

    let mut never: Vec<&(i32, i64)> = stored.keys().filter(|k| !seen.contains_key(k)).collect();
    never.sort();
    v.lost += never.len();
    for (p, o) in never.iter().take(20) {
        v.problem(format!(
            "lost: {p}@{o} (seq {}) is in the topic, no member processed it",
            stored[&(*p, *o)]
        ));
    }

    let mut seen: Vec<((i32, i64), Vec<Seen>)> = seen.into_iter().collect();
    seen.sort_by_key(|(key, _)| *key);
    for ((p, o), list) in &mut seen {
        let (p, o) = (*p, *o);
        match stored.get(&(p, o)) {
            Some(&seq) if list.iter().all(|s| s.seq == seq) => {}
            other => {
                v.mismatches += 1;
                v.problem(format!(
                    "{p}@{o}: the topic holds {other:?}, members processed {:?}",
                    list.iter().map(|s| s.seq).collect::<Vec<_>>()
                ));
            }
        }
        if list.len() < 2 {
            continue;
        }
        list.sort_by_key(|s| (s.at_ms, s.started_ms, s.incarnation, s.session));
        for pair in list.windows(2) {
            v.duplicates += 1;
            classify(
                &mut v,
                members,
                broker_kills_ms,
                &pair[0],
                pair[1].at_ms,
                p,
                o,
            );
        }
    }
    v
}

/// Explains `first`, a processing of `p`@`o` that was done again at `again_ms`.
fn classify(
    v: &mut Verdict,
    members: &[Incarnation],
    broker_kills_ms: &[u64],
    first: &Seen,
    again_ms: u64,
    p: i32,
    o: i64,
) {
    let inc = &members[first.incarnation];
    let session = &inc.log.sessions[first.session];
    let who = format!(
        "member {} incarnation {} session {}",
        inc.member, inc.incarnation, session.id
    );
    let committed = session.committed_by(p, again_ms);
    if o < committed {
        v.below_commit += 1;
        v.problem(format!(
            "{p}@{o} processed again although {who} had committed {committed}"
        ));
        return;
    }
    match (&session.end, inc.end) {
        (Some(end), _) => {
            v.dup_session_lost += 1;
            if broker_kills_ms
                .iter()
                .any(|&k| end.ended_ms >= k && end.ended_ms <= k + BROKER_WINDOW_MS)
            {
                v.dup_session_lost_near_broker_kill += 1;
            } else if session.errors.iter().any(|e| e.contains("timed out")) {
                v.dup_session_lost_coordinator_timeout += 1;
            }
        }
        (None, End::Killed) => v.dup_kill += 1,
        (None, End::Crashed) => v.dup_crash += 1,
        (None, End::Left | End::Stopped) => {
            v.dup_unexplained += 1;
            v.problem(format!(
                "{p}@{o} processed again after {who} ended gracefully without a session end"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{parse_member_log, parse_producer_log};

    fn producer(lines: &str) -> Vec<ProducerLog> {
        vec![parse_producer_log(lines).unwrap()]
    }

    fn member(member: usize, end: End, text: &str) -> Incarnation {
        Incarnation {
            member,
            incarnation: 0,
            end,
            log: parse_member_log(text).unwrap(),
        }
    }

    const ACKED: &str = "A 0 0 0\nA 1 0 1\nA 2 0 2\nA 3 0 3\n";
    const TOPIC: &[Stored] = &[(0, 0, 0), (0, 1, 1), (0, 2, 2), (0, 3, 3)];

    #[test]
    fn a_kill_after_the_last_commit_explains_its_duplicates() {
        let a = member(
            0,
            End::Killed,
            "S 1 0 10 0\nR 1 0 0 0 11\nR 1 0 1 1 11\nC 1 0 1 11\nR 1 0 2 2 11\n",
        );
        let b = member(
            1,
            End::Stopped,
            "S 1 1 20 0\nR 1 0 1 1 21\nR 1 0 2 2 21\nR 1 0 3 3 21\nE 1 30 0:4:4\n",
        );
        let v = check(&producer(ACKED), TOPIC, &[a, b], &[]);
        assert_eq!((v.acked, v.lost), (4, 0));
        // Offset 1 was committed (next offset 1 means offset 0 done): 1 and 2 repeat.
        assert_eq!((v.duplicates, v.dup_kill, v.below_commit), (2, 2, 0));
        assert!(v.ok(), "{v:?}");
    }

    #[test]
    fn a_record_processed_again_below_a_commit_is_a_violation() {
        let a = member(
            0,
            End::Killed,
            "S 1 0 10 0\nR 1 0 0 0 11\nR 1 0 1 1 11\nC 1 0 2 11\n",
        );
        let b = member(
            1,
            End::Stopped,
            "S 1 1 20 0\nR 1 0 1 1 21\nR 1 0 2 2 21\nR 1 0 3 3 21\nE 1 30 0:4:4\n",
        );
        let v = check(&producer(ACKED), TOPIC, &[a, b], &[]);
        assert_eq!(v.below_commit, 1);
        assert!(!v.ok());
    }

    #[test]
    fn duplicates_are_explained_in_the_order_they_were_processed_not_by_session_start() {
        // KIP-848: b's session started first and lasts; a processed 1 and 2 later,
        // committed 1, and was killed; b then took the partition over.
        let a = member(
            0,
            End::Killed,
            "S 1 0 20 0\nR 1 0 0 0 21\nR 1 0 1 1 22\nC 1 0 1 23\nR 1 0 2 2 24\n",
        );
        let b = member(
            1,
            End::Stopped,
            "S 1 1 10 -\nR 1 0 1 1 50\nR 1 0 2 2 50\nR 1 0 3 3 50\nC 1 0 4 60\nE 1 70 0:4:4\n",
        );
        let v = check(&producer(ACKED), TOPIC, &[a, b.clone()], &[]);
        assert_eq!((v.duplicates, v.dup_kill, v.below_commit), (2, 2, 0));
        assert!(v.ok(), "{v:?}");
        // A commit counts from when it was logged: had a committed 3 before b
        // processed 1 and 2 again, both would be violations.
        let a = member(
            0,
            End::Killed,
            "S 1 0 20 0\nR 1 0 0 0 21\nR 1 0 1 1 22\nR 1 0 2 2 24\nC 1 0 3 30\n",
        );
        let v = check(&producer(ACKED), TOPIC, &[a, b], &[]);
        assert_eq!((v.duplicates, v.below_commit), (2, 2));
        assert!(!v.ok());
    }

    #[test]
    fn lost_records_and_wrong_sequence_numbers_are_violations() {
        let a = member(
            0,
            End::Stopped,
            "S 1 0 10 0\nR 1 0 0 0 11\nR 1 0 1 9 11\nE 1 30 0:2:2\n",
        );
        let v = check(&producer(ACKED), TOPIC, &[a], &[]);
        assert_eq!((v.lost, v.mismatches), (2, 1));
        assert!(!v.ok());
    }

    #[test]
    fn a_session_that_ended_without_its_commit_counts_apart_and_near_broker_kills() {
        let a = member(
            0,
            End::Stopped,
            "S 1 0 10 0\nR 1 0 0 0 11\nR 1 0 1 1 11\nE 1 1000 0:0:2\nS 2 1 2000 -\nE 2 3000 -\n",
        );
        let b = member(
            1,
            End::Stopped,
            "S 1 1 2000 0\nR 1 0 0 0 2001\nR 1 0 1 1 2001\nR 1 0 2 2 2001\nR 1 0 3 3 2001\nE 1 3000 0:4:4\n",
        );
        let v = check(&producer(ACKED), TOPIC, &[a.clone(), b.clone()], &[900]);
        assert_eq!(
            (
                v.duplicates,
                v.dup_session_lost,
                v.dup_session_lost_near_broker_kill
            ),
            (2, 2, 2)
        );
        assert!(v.ok());
        let v = check(&producer(ACKED), TOPIC, &[a, b.clone()], &[]);
        assert_eq!(v.dup_session_lost_near_broker_kill, 0);
        assert_eq!(v.dup_session_lost_coordinator_timeout, 0);
        let timed_out = "S 1 0 10 0\nR 1 0 0 0 11\nX 900 commit timed out\nE 1 1000 0:0:1\n";
        let a = member(0, End::Stopped, timed_out);
        let v = check(&producer(ACKED), TOPIC, &[a, b], &[]);
        assert_eq!(
            (v.dup_session_lost, v.dup_session_lost_coordinator_timeout),
            (1, 1)
        );
    }

    #[test]
    fn a_duplicate_ack_the_topic_lacks_is_the_brokers_loss_and_a_missing_offset_ours() {
        let all =
            "S 1 0 10 0\nR 1 0 0 0 11\nR 1 0 1 1 11\nR 1 0 2 2 11\nR 1 0 3 3 11\nE 1 30 0:4:4\n";
        let a = member(0, End::Stopped, all);
        let acks = producer(&format!("{ACKED}A 1 0 -1\nA 5 0 -1\n"));
        let v = check(&acks, TOPIC, std::slice::from_ref(&a), &[]);
        assert_eq!((v.acked_as_duplicate, v.broker_lost, v.lost), (2, 1, 0));
        assert!(v.ok());
        let v = check(&producer(&format!("{ACKED}A 6 0 4\n")), TOPIC, &[a], &[]);
        assert_eq!(
            v.lost, 1,
            "acknowledged at an offset the topic does not hold"
        );
    }

    #[test]
    fn a_graceful_exit_without_a_session_end_leaves_duplicates_unexplained() {
        let a = member(0, End::Left, "S 1 0 10 0\nR 1 0 0 0 11\n");
        let b = member(
            1,
            End::Stopped,
            "S 1 1 20 0\nR 1 0 0 0 21\nR 1 0 1 1 21\nR 1 0 2 2 21\nR 1 0 3 3 21\nE 1 30 0:4:4\n",
        );
        let v = check(&producer(ACKED), TOPIC, &[a, b], &[]);
        assert_eq!(v.dup_unexplained, 1);
        assert!(!v.ok());
    }
}
