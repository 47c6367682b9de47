//! What the controller watches while the run goes on (pure, fed with observations):
//! how long the group takes to settle after each disturbance, and whether any
//! partition's committed offset ever goes down.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Settle times: from a disturbance (an event of ours) until the group is settled
/// again (see [`crate::status::settled`]) and stays so for `stable_for`: right after
/// a broker restart the old sessions may look fine for a moment before the
/// coordinator rebalances them away, which is not settled.
#[derive(Debug)]
pub struct SettleWatch {
    timeout: Duration,
    stable_for: Duration,
    open: Option<Open>,
    /// What disturbed, and how long the group took to settle after it.
    pub times: Vec<(String, Duration)>,
    /// Disturbances followed by another before the group settled (their time is not
    /// measured; the later one's is).
    pub overlapped: usize,
    /// Disturbances after which the group did not settle within the timeout.
    pub timeouts: Vec<String>,
    /// Times the group became unsettled with no event of ours.
    pub spontaneous: usize,
}

#[derive(Debug)]
struct Open {
    what: String,
    at: Instant,
    at_ms: u64,
    reason: String,
    timed_out: bool,
    /// Settled since then, not yet for `stable_for`.
    settled_since: Option<Instant>,
}

impl SettleWatch {
    pub fn new(timeout: Duration, stable_for: Duration) -> Self {
        Self {
            timeout,
            stable_for,
            open: None,
            times: Vec::new(),
            overlapped: 0,
            timeouts: Vec::new(),
            spontaneous: 0,
        }
    }

    pub fn disturb(&mut self, what: impl Into<String>, now: Instant, now_ms: u64) {
        if self.open.take().is_some() {
            self.overlapped += 1;
        }
        self.open = Some(Open {
            what: what.into(),
            at: now,
            at_ms: now_ms,
            reason: String::new(),
            timed_out: false,
            settled_since: None,
        });
    }

    /// Members must have committed since this (unix ms) to count as settled.
    pub fn since_ms(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.at_ms)
    }

    pub fn is_settled(&self) -> bool {
        self.open.is_none()
    }

    /// The disturbance the group has not settled from yet.
    pub fn disturbance(&self) -> Option<&str> {
        self.open.as_ref().map(|o| o.what.as_str())
    }

    /// Why the group is not settled, if it is not.
    pub fn waiting_for(&self) -> Option<String> {
        self.open
            .as_ref()
            .map(|o| format!("after {}: {}", o.what, o.reason))
    }

    /// One look at the group; returns the settle time (from the disturbance to the
    /// start of the stable stretch) once the group has stayed settled long enough.
    pub fn observe(
        &mut self,
        settled: Result<(), String>,
        now: Instant,
        now_ms: u64,
    ) -> Option<Duration> {
        match (&mut self.open, settled) {
            (Some(open), Ok(())) => {
                let since = *open.settled_since.get_or_insert(now);
                if now - since < self.stable_for {
                    open.reason = "settled, watching that it stays so".into();
                    return None;
                }
                let took = since - open.at;
                self.times.push((open.what.clone(), took));
                self.open = None;
                Some(took)
            }
            (Some(open), Err(reason)) => {
                open.settled_since = None;
                open.reason = reason;
                if !open.timed_out && now - open.at > self.timeout {
                    open.timed_out = true;
                    self.timeouts
                        .push(format!("{}: still {}", open.what, open.reason));
                }
                None
            }
            (None, Ok(())) => None,
            (None, Err(reason)) => {
                self.spontaneous += 1;
                self.disturb(format!("nothing ({reason})"), now, now_ms);
                None
            }
        }
    }

    pub fn max(&self) -> Duration {
        self.times.iter().map(|(_, d)| *d).max().unwrap_or_default()
    }
}

/// Committed offsets seen by polling the coordinator: each partition's must never
/// go down.
#[derive(Debug, Default)]
pub struct CommitWatch {
    pub last: BTreeMap<i32, i64>,
    pub polls: usize,
    pub regressions: Vec<String>,
}

impl CommitWatch {
    pub fn observe(&mut self, committed: &BTreeMap<i32, i64>, at: &str) {
        self.polls += 1;
        for (&p, &offset) in committed {
            match self.last.get(&p) {
                Some(&before) if offset < before => {
                    self.regressions.push(format!(
                        "partition {p}: committed offset went from {before} down to {offset} ({at})"
                    ));
                    self.last.insert(p, offset);
                }
                Some(&before) if offset == before => {}
                _ => {
                    self.last.insert(p, offset);
                }
            }
        }
        for &p in self.last.keys() {
            if !committed.contains_key(&p) {
                self.regressions.push(format!(
                    "partition {p}: committed offset disappeared ({at})"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STABLE: Duration = Duration::from_secs(2);

    #[test]
    fn settle_time_runs_from_the_last_disturbance_to_a_stable_settle() {
        let mut w = SettleWatch::new(Duration::from_secs(10), STABLE);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        w.disturb("kill", t0, 1000);
        assert_eq!(w.since_ms(), 1000);
        assert_eq!(w.observe(Err("x".into()), at(1000), 0), None);
        w.disturb("restart", at(2000), 3000);
        // Settled for a moment only: not counted.
        assert_eq!(w.observe(Ok(()), at(3000), 0), None);
        assert_eq!(w.observe(Err("rebalancing".into()), at(4000), 0), None);
        assert_eq!(w.observe(Ok(()), at(5000), 0), None);
        assert_eq!(w.observe(Ok(()), at(6000), 0), None);
        assert_eq!(w.observe(Ok(()), at(7000), 0), Some(Duration::from_secs(3)));
        assert_eq!(w.overlapped, 1);
        assert_eq!(w.max(), Duration::from_secs(3));
        assert!(w.is_settled());
    }

    #[test]
    fn no_settle_within_the_timeout_is_reported_once_and_unprovoked_unsettling_counts() {
        let mut w = SettleWatch::new(Duration::from_secs(10), STABLE);
        let t0 = Instant::now();
        w.disturb("broker kill", t0, 0);
        for s in [5, 11, 12] {
            w.observe(Err("no owner".into()), t0 + Duration::from_secs(s), 0);
        }
        assert_eq!(w.timeouts.len(), 1);
        w.observe(Ok(()), t0 + Duration::from_secs(13), 0);
        w.observe(Ok(()), t0 + Duration::from_secs(15), 0);
        assert!(w.is_settled());
        w.observe(Err("idle".into()), t0 + Duration::from_secs(16), 0);
        assert_eq!(w.spontaneous, 1);
        assert!(!w.is_settled());
    }

    #[test]
    fn a_committed_offset_going_down_or_away_is_a_regression() {
        let mut c = CommitWatch::default();
        c.observe(&BTreeMap::from([(0, 5), (1, 3)]), "t1");
        c.observe(&BTreeMap::from([(0, 7), (1, 3)]), "t2");
        assert!(c.regressions.is_empty());
        c.observe(&BTreeMap::from([(0, 6)]), "t3");
        assert_eq!(c.regressions.len(), 2, "{:?}", c.regressions);
    }
}
