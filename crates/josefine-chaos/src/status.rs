//! Who owns what, now: each member rewrites a one-line status file on every session
//! start and end and after each successful commit, and the controller decides from
//! those whether the group has settled. (Tansu's DescribeGroups leaves assignments
//! empty, so the broker cannot tell us.)
//!
//! ```text
//! <incarnation> <session> <generation> <active|idle> <last_commit_ms> <partitions|->
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub incarnation: u32,
    pub session: u64,
    pub generation: i32,
    pub active: bool,
    /// When a commit of new offsets last succeeded (0: none in this session).
    pub last_commit_ms: u64,
    pub partitions: Vec<i32>,
}

impl Status {
    pub fn line(&self) -> String {
        let partitions = if self.partitions.is_empty() {
            "-".to_string()
        } else {
            let p: Vec<String> = self.partitions.iter().map(|p| p.to_string()).collect();
            p.join(",")
        };
        format!(
            "{} {} {} {} {} {}\n",
            self.incarnation,
            self.session,
            self.generation,
            if self.active { "active" } else { "idle" },
            self.last_commit_ms,
            partitions
        )
    }

    pub fn parse(line: &str) -> anyhow::Result<Self> {
        let f: Vec<&str> = line.split_whitespace().collect();
        anyhow::ensure!(f.len() == 6, "status needs 6 fields: {line:?}");
        let partitions = if f[5] == "-" {
            Vec::new()
        } else {
            f[5].split(',')
                .map(|p| p.parse().context("partition"))
                .collect::<anyhow::Result<_>>()?
        };
        Ok(Self {
            incarnation: f[0].parse().context("incarnation")?,
            session: f[1].parse().context("session")?,
            generation: f[2].parse().context("generation")?,
            active: f[3] == "active",
            last_commit_ms: f[4].parse().context("last commit")?,
            partitions,
        })
    }

    /// Replaces the file at `path` atomically (write aside, rename), so a reader never
    /// sees half a line and a SIGKILL never leaves one.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let aside = path.with_extension("tmp");
        std::fs::write(&aside, self.line())?;
        std::fs::rename(&aside, path)
    }

    /// `None` when there is no status yet.
    pub fn read(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

/// Whether the group has settled: every member that should be in it (`expected`: id
/// and incarnation of each running process) is in an active session of one
/// generation, the sessions own every partition exactly once, and each member has
/// committed since `since_ms` (so its membership works again at the coordinator).
/// `Err` says what is still missing.
pub fn settled(
    expected: &[(usize, u32)],
    statuses: &HashMap<usize, Status>,
    partitions: i32,
    since_ms: u64,
) -> Result<(), String> {
    if expected.is_empty() {
        return Err("no member runs".into());
    }
    let mut generation = None;
    let mut owned = BTreeSet::new();
    for &(id, incarnation) in expected {
        let status = match statuses.get(&id) {
            Some(s) if s.incarnation == incarnation => s,
            _ => return Err(format!("member {id} has not started a session")),
        };
        if !status.active {
            return Err(format!("member {id} is between sessions"));
        }
        match generation {
            None => generation = Some(status.generation),
            Some(g) if g != status.generation => {
                return Err(format!(
                    "generations differ ({g} and {} at member {id})",
                    status.generation
                ))
            }
            Some(_) => {}
        }
        if status.last_commit_ms < since_ms {
            return Err(format!("member {id} has not committed since"));
        }
        for &p in &status.partitions {
            if !owned.insert(p) {
                return Err(format!("partition {p} owned twice"));
            }
        }
    }
    let missing: Vec<i32> = (0..partitions).filter(|p| !owned.contains(p)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("partitions {missing:?} have no owner"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(incarnation: u32, generation: i32, partitions: &[i32]) -> Status {
        Status {
            incarnation,
            session: 1,
            generation,
            active: true,
            last_commit_ms: 100,
            partitions: partitions.to_vec(),
        }
    }

    #[test]
    fn a_status_line_round_trips() {
        let s = status(2, 7, &[1, 4]);
        assert_eq!(Status::parse(&s.line()).unwrap(), s);
        let idle = Status {
            active: false,
            partitions: vec![],
            ..s
        };
        assert_eq!(Status::parse(&idle.line()).unwrap(), idle);
    }

    #[test]
    fn settled_needs_every_member_one_generation_and_every_partition_once() {
        let expected = [(0, 0), (1, 3)];
        let mut st = HashMap::from([(0, status(0, 5, &[0, 1])), (1, status(3, 5, &[2]))]);
        assert_eq!(settled(&expected, &st, 3, 50), Ok(()));
        assert!(settled(&expected, &st, 4, 50)
            .unwrap_err()
            .contains("no owner"));
        assert!(settled(&expected, &st, 3, 200)
            .unwrap_err()
            .contains("not committed"));
        st.insert(1, status(2, 5, &[2]));
        assert!(settled(&expected, &st, 3, 50)
            .unwrap_err()
            .contains("not started"));
        st.insert(1, status(3, 6, &[2]));
        assert!(settled(&expected, &st, 3, 50)
            .unwrap_err()
            .contains("generations differ"));
        st.insert(1, status(3, 5, &[1, 2]));
        assert!(settled(&expected, &st, 3, 50)
            .unwrap_err()
            .contains("owned twice"));
        st.get_mut(&1).unwrap().active = false;
        assert!(settled(&expected, &st, 3, 50)
            .unwrap_err()
            .contains("between sessions"));
    }
}
