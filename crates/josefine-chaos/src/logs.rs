//! The line formats the member and producer processes append to their logs, and their
//! parsers, in one place so writer and checker cannot drift apart.
//!
//! Member log (one file per process incarnation):
//!
//! ```text
//! S <session> <generation> <unix_ms> <partitions|->   a session started (setup)
//! R <session> <partition> <offset> <seq> <unix_ms>   a record was processed
//! C <session> <partition> <next_offset> <unix_ms>    a commit of ours succeeded
//! E <session> <unix_ms> <p>:<committed>:<marked>,... a session ended (cleanup)
//! X <unix_ms> <text>                                 an error the member saw
//! T <partition> <offset> <seq> <unix_ms>             a record was transformed
//!                                                    (exactly-once mode: the
//!                                                    transaction holding its output
//!                                                    may still abort)
//! ```
//!
//! In the exactly-once mode members run `ConsumerGroup::transact`, whose handler is
//! the library's: they log `T` and `X` lines only (no sessions), and each output
//! record's value names the input it came from and who wrote it
//! ([`output_value`]).
//!
//! Producer log: `A <seq> <partition> <offset>` (acknowledged) and `F <seq> <text>`
//! (failed). Lines are written whole with one `write(2)` before the work they record
//! is marked, so a SIGKILL can only cut the last line short; parsers drop a last line
//! without its newline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context};

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn session_start(session: u64, generation: i32, partitions: &[i32]) -> String {
    format!(
        "S {session} {generation} {} {}\n",
        now_ms(),
        list(partitions.iter())
    )
}

/// `at_ms`: when it was processed ([`now_ms`], read once per batch by callers that
/// log many).
pub fn record(out: &mut String, session: u64, partition: i32, offset: i64, seq: u64, at_ms: u64) {
    let _ = writeln!(out, "R {session} {partition} {offset} {seq} {at_ms}");
}

pub fn commit(session: u64, partition: i32, next_offset: i64) -> String {
    format!("C {session} {partition} {next_offset} {}\n", now_ms())
}

/// `ends`: partition, committed (next offset), marked (next offset, -1 if none).
pub fn session_end(session: u64, ends: &[(i32, i64, i64)]) -> String {
    let parts = ends.iter().map(|(p, c, m)| format!("{p}:{c}:{m}"));
    format!("E {session} {} {}\n", now_ms(), list(parts))
}

pub fn transformed(partition: i32, offset: i64, seq: u64) -> String {
    format!("T {partition} {offset} {seq} {}\n", now_ms())
}

/// The value of the output record written for the input `partition`@`offset`
/// (sequence number `seq`) by incarnation `incarnation` of member `member`.
pub fn output_value(
    seq: u64,
    partition: i32,
    offset: i64,
    member: usize,
    incarnation: u32,
) -> String {
    format!("{seq} {partition} {offset} {member}.{incarnation}")
}

/// What an output record's value says: the input it came from and its writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputOf {
    pub seq: u64,
    pub partition: i32,
    pub offset: i64,
    pub member: usize,
    pub incarnation: u32,
}

pub fn parse_output_value(value: &str) -> anyhow::Result<OutputOf> {
    let mut f = value.split(' ');
    let seq = num(f.next(), "seq")?;
    let partition = num(f.next(), "partition")?;
    let offset = num(f.next(), "offset")?;
    let writer = f.next().context("missing writer")?;
    let (member, incarnation) = writer
        .split_once('.')
        .context("writer is not member.incarnation")?;
    if f.next().is_some() {
        bail!("trailing fields");
    }
    Ok(OutputOf {
        seq,
        partition,
        offset,
        member: num(Some(member), "member")?,
        incarnation: num(Some(incarnation), "incarnation")?,
    })
}

pub fn error(text: &str) -> String {
    format!("X {} {}\n", now_ms(), text.replace('\n', " "))
}

pub fn acked(seq: u64, partition: i32, offset: i64) -> String {
    format!("A {seq} {partition} {offset}\n")
}

pub fn failed(seq: u64, text: &str) -> String {
    format!("F {seq} {}\n", text.replace('\n', " "))
}

fn list<T: ToString>(items: impl Iterator<Item = T>) -> String {
    let joined: Vec<String> = items.map(|i| i.to_string()).collect();
    if joined.is_empty() {
        "-".into()
    } else {
        joined.join(",")
    }
}

/// A member log, parsed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemberLog {
    pub sessions: Vec<SessionLog>,
    pub errors: Vec<String>,
    /// Exactly-once mode: every record transformed, in order.
    pub transformed: Vec<Processed>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionLog {
    pub id: u64,
    pub generation: i32,
    pub started_ms: u64,
    pub partitions: Vec<i32>,
    pub records: Vec<Processed>,
    /// Every commit we saw succeed, in log order.
    pub commits: Vec<Commit>,
    pub end: Option<SessionEndLog>,
    /// The errors the member logged while this session ran.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processed {
    pub partition: i32,
    pub offset: i64,
    pub seq: u64,
    /// When the member logged it: what orders two processings of one record (the
    /// order of sessions does not: under KIP-848 a session lasts as long as its
    /// process and sees partitions come and go).
    pub at_ms: u64,
}

/// A commit of ours that succeeded: `next_offset` for `partition`, logged at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub partition: i32,
    pub next_offset: i64,
    pub at_ms: u64,
}

impl SessionLog {
    /// The highest next offset this session committed for `partition` by `by_ms`
    /// (its commits and its end line), -1 if none.
    pub fn committed_by(&self, partition: i32, by_ms: u64) -> i64 {
        let commits = self
            .commits
            .iter()
            .filter(|c| c.partition == partition && c.at_ms <= by_ms)
            .map(|c| c.next_offset);
        let end = self
            .end
            .as_ref()
            .filter(|e| e.ended_ms <= by_ms)
            .and_then(|e| e.partitions.get(&partition))
            .map(|&(committed, _)| committed);
        commits.chain(end).max().unwrap_or(-1)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionEndLog {
    pub ended_ms: u64,
    /// Per partition: (committed next offset, marked next offset or -1).
    pub partitions: BTreeMap<i32, (i64, i64)>,
}

/// The complete lines of `text` (a cut last line dropped).
fn complete_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i + 1, l))
}

fn num<T: std::str::FromStr>(field: Option<&str>, what: &str) -> anyhow::Result<T> {
    let field = field.with_context(|| format!("missing {what}"))?;
    field
        .parse()
        .map_err(|_| anyhow::anyhow!("bad {what}: {field:?}"))
}

pub fn parse_member_log(text: &str) -> anyhow::Result<MemberLog> {
    let mut log = MemberLog::default();
    for (n, line) in complete_lines(text) {
        parse_member_line(&mut log, line).with_context(|| format!("line {n}: {line:?}"))?;
    }
    Ok(log)
}

fn parse_member_line(log: &mut MemberLog, line: &str) -> anyhow::Result<()> {
    let mut f = line.split(' ');
    let kind = f.next().unwrap_or_default();
    if kind == "X" {
        let text: String = line.splitn(3, ' ').nth(2).unwrap_or("").into();
        if let Some(session) = log.sessions.last_mut().filter(|s| s.end.is_none()) {
            session.errors.push(text.clone());
        }
        log.errors.push(text);
        return Ok(());
    }
    if kind == "T" {
        log.transformed.push(Processed {
            partition: num(f.next(), "partition")?,
            offset: num(f.next(), "offset")?,
            seq: num(f.next(), "seq")?,
            at_ms: num(f.next(), "time")?,
        });
        return Ok(());
    }
    let session: u64 = num(f.next(), "session")?;
    if kind == "S" {
        let generation = num(f.next(), "generation")?;
        let started_ms = num(f.next(), "time")?;
        let partitions = match f.next() {
            Some("-") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|p| num(Some(p), "partition"))
                .collect::<anyhow::Result<_>>()?,
            None => bail!("missing partitions"),
        };
        log.sessions.push(SessionLog {
            id: session,
            generation,
            started_ms,
            partitions,
            records: Vec::new(),
            commits: Vec::new(),
            end: None,
            errors: Vec::new(),
        });
        return Ok(());
    }
    let current = log
        .sessions
        .iter_mut()
        .rev()
        .find(|s| s.id == session)
        .with_context(|| format!("session {session} never started"))?;
    match kind {
        "R" => current.records.push(Processed {
            partition: num(f.next(), "partition")?,
            offset: num(f.next(), "offset")?,
            seq: num(f.next(), "seq")?,
            at_ms: num(f.next(), "time")?,
        }),
        "C" => current.commits.push(Commit {
            partition: num(f.next(), "partition")?,
            next_offset: num(f.next(), "offset")?,
            at_ms: num(f.next(), "time")?,
        }),
        "E" => {
            let ended_ms = num(f.next(), "time")?;
            let mut partitions = BTreeMap::new();
            match f.next() {
                Some("-") => {}
                Some(list) => {
                    for item in list.split(',') {
                        let mut v = item.split(':');
                        let p = num(v.next(), "partition")?;
                        let committed = num(v.next(), "committed")?;
                        let marked = num(v.next(), "marked")?;
                        partitions.insert(p, (committed, marked));
                    }
                }
                None => bail!("missing partitions"),
            }
            current.end = Some(SessionEndLog {
                ended_ms,
                partitions,
            });
        }
        other => bail!("unknown line kind {other:?}"),
    }
    Ok(())
}

/// A producer log, parsed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProducerLog {
    /// (seq, partition, offset) of every acknowledged record.
    pub acked: Vec<(u64, i32, i64)>,
    pub failed: Vec<(u64, String)>,
}

pub fn parse_producer_log(text: &str) -> anyhow::Result<ProducerLog> {
    let mut log = ProducerLog::default();
    for (n, line) in complete_lines(text) {
        let parsed: anyhow::Result<()> = (|| {
            let mut f = line.splitn(3, ' ');
            match f.next() {
                Some("A") => {
                    let seq = num(f.next(), "seq")?;
                    let mut rest = f.next().unwrap_or_default().split(' ');
                    let p = num(rest.next(), "partition")?;
                    let o = num(rest.next(), "offset")?;
                    log.acked.push((seq, p, o));
                }
                Some("F") => {
                    let seq = num(f.next(), "seq")?;
                    log.failed.push((seq, f.next().unwrap_or_default().into()));
                }
                other => bail!("unknown line kind {other:?}"),
            }
            Ok(())
        })();
        parsed.with_context(|| format!("line {n}: {line:?}"))?;
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lines_round_trip_and_a_cut_last_line_is_dropped() {
        let mut text = session_start(1, 4, &[0, 3]);
        record(&mut text, 1, 0, 10, 100, 5);
        record(&mut text, 1, 3, 7, 103, 6);
        text += "C 1 0 11 20\nC 1 0 9 30\n";
        text += &error("commit failed:\nbroker gone");
        text += "E 1 40 0:12:12,3:5:8\n";
        text += &session_start(2, 5, &[]);
        text += "R 2 1 4"; // cut by a SIGKILL
        let log = parse_member_log(&text).unwrap();
        assert_eq!(log.sessions.len(), 2);
        let s = &log.sessions[0];
        assert_eq!(
            (s.id, s.generation, s.partitions.clone()),
            (1, 4, vec![0, 3])
        );
        let record = |partition, offset, seq, at_ms| Processed {
            partition,
            offset,
            seq,
            at_ms,
        };
        assert_eq!(s.records, vec![record(0, 10, 100, 5), record(3, 7, 103, 6)]);
        assert_eq!(s.committed_by(0, 19), -1, "nothing committed yet");
        assert_eq!(s.committed_by(0, 20), 11);
        assert_eq!(s.committed_by(0, 39), 11, "the highest commit counts");
        assert_eq!(
            s.committed_by(0, 40),
            12,
            "the end line counts from its time"
        );
        assert_eq!(s.committed_by(3, 40), 5);
        let end = s.end.as_ref().unwrap();
        assert_eq!(end.partitions.get(&3), Some(&(5, 8)));
        assert!(log.sessions[1].records.is_empty());
        assert!(log.sessions[1].partitions.is_empty());
        assert_eq!(log.errors, vec!["commit failed: broker gone".to_string()]);
        assert_eq!(
            log.sessions[0].errors, log.errors,
            "the error came during session 1"
        );
    }

    #[test]
    fn transform_lines_and_output_values_round_trip() {
        let text = transformed(2, 40, 7) + &error("x") + &transformed(2, 41, 13) + "T 2 4";
        let log = parse_member_log(&text).unwrap();
        assert!(log.sessions.is_empty());
        let done: Vec<_> = log
            .transformed
            .iter()
            .map(|t| (t.partition, t.offset, t.seq))
            .collect();
        assert_eq!(done, vec![(2, 40, 7), (2, 41, 13)]);
        assert!(log.transformed.iter().all(|t| t.at_ms > 0));
        let value = output_value(13, 2, 41, 4, 3);
        assert_eq!(
            parse_output_value(&value).unwrap(),
            OutputOf {
                seq: 13,
                partition: 2,
                offset: 41,
                member: 4,
                incarnation: 3
            }
        );
        assert!(parse_output_value("13 2 41").is_err());
        assert!(parse_output_value("13 2 41 4.3 x").is_err());
    }

    #[test]
    fn producer_lines_round_trip() {
        let text = acked(1, 2, 30) + &failed(2, "timed out") + &acked(3, 0, 4);
        let log = parse_producer_log(&text).unwrap();
        assert_eq!(log.acked, vec![(1, 2, 30), (3, 0, 4)]);
        assert_eq!(log.failed, vec![(2, "timed out".to_string())]);
    }

    #[test]
    fn a_record_of_an_unknown_session_is_an_error() {
        assert!(parse_member_log("R 3 0 1 1 1\n").is_err());
        assert!(
            parse_member_log("S 1 0 1 -\nR 1 0 1 1\n").is_err(),
            "a record line without its time"
        );
        assert!(parse_member_log("Q 1\n").is_err());
    }
}
