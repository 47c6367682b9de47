//! Who owns what according to the group coordinator, for the exactly-once mode (pure,
//! fed with observations). Its members run `ConsumerGroup::transact`, whose handler
//! is the library's, so they keep no status file ([`crate::status`]); under the
//! consumer protocol (KIP-848) the coordinator knows each member's assignment and
//! whether the member has reconciled to its target (ConsumerGroupDescribe), and the
//! committed offsets show whether the members' transactions commit.
//!
//! Members are told apart by their client id, one per process incarnation
//! ([`client_id`]): a SIGKILLed incarnation stays in the group until the broker's
//! session timeout removes it, and the group is not settled until it has.

use std::collections::BTreeMap;

use josefine::{GroupDescription, GroupState, TopicPartition};

/// The `client.id` of incarnation `incarnation` of member `member`.
pub fn client_id(member: usize, incarnation: u32) -> String {
    format!("chaos-member-{member}-{incarnation}")
}

/// What [`CoordinatorView::settled`] reads of a [`GroupDescription`]. Its own type,
/// because the library's descriptions are `#[non_exhaustive]` (the tests could not
/// build one).
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    pub state: GroupState,
    pub members: Vec<MemberSnapshot>,
}

/// One member of a [`GroupSnapshot`].
#[derive(Debug, Clone)]
pub struct MemberSnapshot {
    pub client_id: String,
    pub assignment: Vec<TopicPartition>,
    pub target_assignment: Vec<TopicPartition>,
}

impl From<&GroupDescription> for GroupSnapshot {
    fn from(group: &GroupDescription) -> Self {
        Self {
            state: group.state.clone(),
            members: group
                .members
                .iter()
                .map(|m| MemberSnapshot {
                    client_id: m.client_id.clone(),
                    assignment: m.assignment.clone(),
                    target_assignment: m.target_assignment.clone(),
                })
                .collect(),
        }
    }
}

/// Each member's partitions, by client id.
type Assignment = BTreeMap<String, Vec<i32>>;

/// Remembers the assignment last seen and the committed offsets when it was first
/// seen, to tell commits of the current owners from those of the previous ones.
#[derive(Debug, Default)]
pub struct CoordinatorView {
    /// Client id to partitions, and the committed offsets polled with it.
    first_seen: Option<(Assignment, BTreeMap<i32, i64>)>,
}

impl CoordinatorView {
    /// Whether the group is settled: the coordinator calls it Stable; its members are
    /// exactly the running incarnations (`expected`, by client id), each at its
    /// target assignment; the assignments cover `topic`'s partitions exactly once;
    /// and, with `need_progress`, every partition's committed offset has grown since
    /// this assignment was first seen (its owner's transactions commit). `Err` says
    /// what is still missing. `group` and `committed` come from the same poll.
    pub fn settled(
        &mut self,
        expected: &[String],
        group: &GroupSnapshot,
        committed: &BTreeMap<i32, i64>,
        topic: &str,
        partitions: i32,
        need_progress: bool,
    ) -> Result<(), String> {
        if expected.is_empty() {
            return Err("no member runs".into());
        }
        if group.state != GroupState::Stable {
            return Err(format!("the coordinator says {}", group.state));
        }
        let mut assignment = Assignment::new();
        for m in &group.members {
            if !expected.contains(&m.client_id) {
                return Err(format!("{} is still a member", m.client_id));
            }
            if m.assignment != m.target_assignment {
                return Err(format!("{} is reconciling", m.client_id));
            }
            let mut owned: Vec<i32> = m
                .assignment
                .iter()
                .filter(|tp| &*tp.topic == topic)
                .map(|tp| tp.partition)
                .collect();
            owned.sort_unstable();
            if assignment.insert(m.client_id.clone(), owned).is_some() {
                return Err(format!("{} is a member twice", m.client_id));
            }
        }
        if let Some(missing) = expected.iter().find(|c| !assignment.contains_key(*c)) {
            return Err(format!("{missing} has not joined"));
        }
        let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
        for &p in assignment.values().flatten() {
            *owners.entry(p).or_default() += 1;
        }
        if let Some((p, _)) = owners.iter().find(|(_, &n)| n > 1) {
            return Err(format!("partition {p} owned twice"));
        }
        let missing: Vec<i32> = (0..partitions)
            .filter(|p| !owners.contains_key(p))
            .collect();
        if !missing.is_empty() {
            return Err(format!("partitions {missing:?} have no owner"));
        }
        if self.first_seen.as_ref().map(|(seen, _)| seen) != Some(&assignment) {
            self.first_seen = Some((assignment, committed.clone()));
        }
        let (_, before) = self.first_seen.as_ref().expect("set just above");
        if need_progress {
            let idle: Vec<i32> = (0..partitions)
                .filter(|p| committed.get(p).unwrap_or(&-1) <= before.get(p).unwrap_or(&-1))
                .collect();
            if !idle.is_empty() {
                return Err(format!(
                    "partitions {idle:?} have no commit since this assignment"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(client: &str, owned: &[i32], target: &[i32]) -> MemberSnapshot {
        let tps = |ps: &[i32]| ps.iter().map(|&p| TopicPartition::new("in", p)).collect();
        MemberSnapshot {
            client_id: client.into(),
            assignment: tps(owned),
            target_assignment: tps(target),
        }
    }

    fn group(state: GroupState, members: Vec<MemberSnapshot>) -> GroupSnapshot {
        GroupSnapshot { state, members }
    }

    #[test]
    fn settled_needs_the_running_incarnations_reconciled_over_every_partition() {
        let mut view = CoordinatorView::default();
        let expected = vec![client_id(0, 0), client_id(1, 2)];
        let committed = BTreeMap::new();
        let mut check = |g: &GroupSnapshot| view.settled(&expected, g, &committed, "in", 3, false);
        let a = member("chaos-member-0-0", &[0, 1], &[0, 1]);
        let b = member("chaos-member-1-2", &[2], &[2]);
        assert_eq!(
            check(&group(GroupState::Stable, vec![a.clone(), b.clone()])),
            Ok(())
        );
        let err = |r: Result<(), String>| r.unwrap_err();
        assert!(err(check(&group(
            GroupState::Reconciling,
            vec![a.clone(), b.clone()]
        )))
        .contains("Reconciling"));
        let zombie = member("chaos-member-1-1", &[], &[]);
        assert!(err(check(&group(
            GroupState::Stable,
            vec![a.clone(), b.clone(), zombie]
        )))
        .contains("chaos-member-1-1 is still a member"));
        assert!(err(check(&group(GroupState::Stable, vec![a.clone()]))).contains("not joined"));
        let moving = member("chaos-member-1-2", &[2], &[1, 2]);
        assert!(
            err(check(&group(GroupState::Stable, vec![a.clone(), moving]))).contains("reconciling")
        );
        let twice = member("chaos-member-1-2", &[1, 2], &[1, 2]);
        assert!(
            err(check(&group(GroupState::Stable, vec![a.clone(), twice]))).contains("owned twice")
        );
        let short = member("chaos-member-0-0", &[0], &[0]);
        assert!(err(check(&group(GroupState::Stable, vec![short, b]))).contains("no owner"));
    }

    #[test]
    fn progress_counts_only_commits_after_the_assignment_was_first_seen() {
        let mut view = CoordinatorView::default();
        let expected = vec![client_id(0, 0), client_id(1, 0)];
        let first = group(
            GroupState::Stable,
            vec![
                member("chaos-member-0-0", &[0], &[0]),
                member("chaos-member-1-0", &[1], &[1]),
            ],
        );
        let at = |a: i64, b: i64| BTreeMap::from([(0, a), (1, b)]);
        assert!(view
            .settled(&expected, &first, &at(5, 5), "in", 2, true)
            .unwrap_err()
            .contains("[0, 1]"));
        assert!(view
            .settled(&expected, &first, &at(6, 5), "in", 2, true)
            .unwrap_err()
            .contains("[1]"));
        assert_eq!(
            view.settled(&expected, &first, &at(6, 7), "in", 2, true),
            Ok(())
        );
        // A new assignment: the commits so far were the previous owners'.
        let swapped = group(
            GroupState::Stable,
            vec![
                member("chaos-member-0-0", &[1], &[1]),
                member("chaos-member-1-0", &[0], &[0]),
            ],
        );
        assert!(view
            .settled(&expected, &swapped, &at(6, 7), "in", 2, true)
            .is_err());
        assert_eq!(
            view.settled(&expected, &swapped, &at(6, 7), "in", 2, false),
            Ok(())
        );
        assert_eq!(
            view.settled(&expected, &swapped, &at(8, 9), "in", 2, true),
            Ok(())
        );
    }
}
