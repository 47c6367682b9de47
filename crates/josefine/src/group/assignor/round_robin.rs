//! The `roundrobin` assignor, as Java's `RoundRobinAssignor`.
//!
//! All partitions of all subscribed topics, topics sorted by name and partitions by
//! number, are dealt to the members in member order (see the parent module) like cards,
//! skipping a member when it does not subscribe to the partition's topic. With identical
//! subscriptions the counts differ by at most one; with different subscriptions they can
//! be lopsided (see the javadoc example in the tests), which the sticky assignors avoid.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::{
    empty_assignment, ordered_members, validate, AssignError, Assignor, GroupAssignment, Member,
};
use crate::group::consumer_protocol::java_order;
use crate::TopicPartition;

/// The protocol name.
pub(crate) const NAME: &str = "roundrobin";

/// Java's `RoundRobinAssignor`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        NAME
    }

    fn assign(
        &self,
        members: &[Member],
        partitions: &BTreeMap<String, i32>,
    ) -> Result<GroupAssignment, AssignError> {
        validate(members, partitions)?;
        let mut assignment = empty_assignment(members);

        let (ordered, subscribed) = ordered_members(members);

        // Each topic once (a set first: every member names its topics, and sorting all
        // those names before the dedup cost more than the dealing), then in order.
        let mut topics: Vec<&str> = subscribed
            .iter()
            .flatten()
            .copied()
            .filter(|t| partitions.get(*t).is_some_and(|&n| n > 0))
            .collect::<HashSet<&str>>()
            .into_iter()
            .collect();
        topics.sort_by(|a, b| java_order(a, b));

        // Dealt by position in `ordered`, moved into the assignment by id at the end: a
        // look-up by id for every partition was most of the dealing's cost.
        let mut dealt: Vec<Vec<TopicPartition>> = vec![Vec::new(); ordered.len()];
        // The next member in the circle; it only advances past members that take a
        // partition or do not subscribe to its topic.
        let mut next = 0;
        for topic in topics {
            let name: Arc<str> = Arc::from(topic);
            let takes: Vec<bool> = subscribed.iter().map(|s| s.contains(topic)).collect();
            for partition in 0..partitions[topic] {
                // Some member subscribes to `topic` (that is where it came from), so this
                // finds one within a full turn.
                let Some(turn) = (0..ordered.len()).find(|i| takes[(next + i) % ordered.len()])
                else {
                    break;
                };
                let taker = (next + turn) % ordered.len();
                dealt[taker].push(TopicPartition {
                    topic: name.clone(),
                    partition,
                });
                next = taker + 1;
            }
        }
        for (member, partitions) in ordered.iter().zip(dealt) {
            *assignment
                .get_mut(&member.id)
                .expect("every member has an entry") = partitions;
        }
        Ok(assignment)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn javadoc_identical_subscriptions() {
        // C0: [t0p0, t0p2, t1p1], C1: [t0p1, t1p0, t1p2]
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let partitions = counts(&[("t0", 3), ("t1", 3)]);
        let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(got["C0"], tps(&["t0p0", "t0p2", "t1p1"]));
        assert_eq!(got["C1"], tps(&["t0p1", "t1p0", "t1p2"]));
    }

    #[test]
    fn javadoc_different_subscriptions() {
        // C0 subscribes to t0; C1 to t0, t1; C2 to t0, t1, t2 (1, 2 and 3 partitions).
        // C0: [t0p0], C1: [t1p0], C2: [t1p1, t2p0, t2p1, t2p2]
        let members = [
            member("C0", &["t0"]),
            member("C1", &["t0", "t1"]),
            member("C2", &["t0", "t1", "t2"]),
        ];
        let partitions = counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(got["C0"], tps(&["t0p0"]));
        assert_eq!(got["C1"], tps(&["t1p0"]));
        assert_eq!(got["C2"], tps(&["t1p1", "t2p0", "t2p1", "t2p2"]));
    }

    #[test]
    fn javadoc_three_consumers() {
        // C0: [t0p0, t1p0], C1: [t0p1, t1p1], C2: [t0p2, t1p2]
        let members = [
            member("C0", &["t0", "t1"]),
            member("C1", &["t0", "t1"]),
            member("C2", &["t0", "t1"]),
        ];
        let partitions = counts(&[("t0", 3), ("t1", 3)]);
        let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(got["C0"], tps(&["t0p0", "t1p0"]));
        assert_eq!(got["C1"], tps(&["t0p1", "t1p1"]));
        assert_eq!(got["C2"], tps(&["t0p2", "t1p2"]));
    }

    #[test]
    fn java_unit_test_cases() {
        // RoundRobinAssignorTest.testMultipleConsumersMixedTopics
        let members = [
            member("consumer1", &["topic1"]),
            member("consumer2", &["topic1", "topic2"]),
            member("consumer3", &["topic1"]),
        ];
        let partitions = counts(&[("topic1", 3), ("topic2", 2)]);
        let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(got["consumer1"], vec![tp("topic1", 0)]);
        assert_eq!(
            got["consumer2"],
            vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 1)]
        );
        assert_eq!(got["consumer3"], vec![tp("topic1", 2)]);

        // testTwoStaticConsumersTwoTopicsSixPartitions: instance ids decide the order.
        let members = [
            static_member("consumer-b", "instance1", &["topic1", "topic2"]),
            static_member("consumer-a", "instance2", &["topic1", "topic2"]),
        ];
        let partitions = counts(&[("topic1", 3), ("topic2", 3)]);
        let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(
            got["consumer-b"],
            vec![tp("topic1", 0), tp("topic1", 2), tp("topic2", 1)]
        );
        assert_eq!(
            got["consumer-a"],
            vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 2)]
        );

        // testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions
        let members = [
            static_member("consumer-b", "instance1", &["topic1", "topic2"]),
            member("consumer-a", &["topic1", "topic2"]),
        ];
        let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(
            got["consumer-b"],
            vec![tp("topic1", 0), tp("topic1", 2), tp("topic2", 1)]
        );
        assert_eq!(
            got["consumer-a"],
            vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 2)]
        );

        // testStaticMemberRoundRobinAssignmentPersistent: three static members and a
        // dynamic one; replacing the dynamic one changes nothing for the others.
        let statics = [
            static_member("consumer1", "instance1", &["topic1", "topic2"]),
            static_member("consumer2", "instance2", &["topic1", "topic2"]),
            static_member("consumer3", "instance3", &["topic1", "topic2"]),
        ];
        for dynamic in ["consumer4", "consumer5"] {
            let mut members = statics.to_vec();
            members.push(member(dynamic, &["topic1", "topic2"]));
            let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
            assert_eq!(got["consumer1"], vec![tp("topic1", 0), tp("topic2", 1)]);
            assert_eq!(got["consumer2"], vec![tp("topic1", 1), tp("topic2", 2)]);
            assert_eq!(got["consumer3"], vec![tp("topic1", 2)]);
            assert_eq!(got[dynamic], vec![tp("topic2", 0)]);
        }

        // testStaticMemberRoundRobinAssignmentPersistentAfterMemberIdChanges
        let partitions = counts(&[("topic1", 5), ("topic2", 5)]);
        for ids in [
            ["consumer1", "consumer2", "consumer3"],
            ["consumer1", "consumer5", "consumer4"],
        ] {
            let members: Vec<Member> = ids
                .iter()
                .zip(["instance1", "instance2", "instance3"])
                .map(|(id, instance)| static_member(id, instance, &["topic1", "topic2"]))
                .collect();
            let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
            assert_eq!(
                got[ids[0]],
                vec![
                    tp("topic1", 0),
                    tp("topic1", 3),
                    tp("topic2", 1),
                    tp("topic2", 4)
                ]
            );
            assert_eq!(
                got[ids[1]],
                vec![tp("topic1", 1), tp("topic1", 4), tp("topic2", 2)]
            );
            assert_eq!(
                got[ids[2]],
                vec![tp("topic1", 2), tp("topic2", 0), tp("topic2", 3)]
            );
        }
    }

    proptest! {
        #[test]
        fn prop_valid_and_complete(
            subs in proptest::collection::vec(proptest::collection::btree_set(0..4usize, 0..4), 0..6),
            sizes in proptest::collection::vec(0..9i32, 4),
        ) {
            let topics = ["a", "b", "c", "d"];
            let members: Vec<Member> = subs
                .iter()
                .enumerate()
                .map(|(i, s)| member(&format!("m{i}"), &s.iter().map(|&t| topics[t]).collect::<Vec<_>>()))
                .collect();
            let partitions: BTreeMap<String, i32> =
                topics.iter().zip(&sizes).map(|(t, &n)| (t.to_string(), n)).collect();
            let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
            check_complete(&members, &partitions, &got);
        }

        #[test]
        fn prop_balanced_with_identical_subscriptions(
            n_members in 1..8usize,
            sizes in proptest::collection::vec(0..12i32, 1..4),
        ) {
            let topics: Vec<String> = (0..sizes.len()).map(|t| format!("t{t}")).collect();
            let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            let members: Vec<Member> = (0..n_members).map(|i| member(&format!("m{i}"), &topic_refs)).collect();
            let partitions: BTreeMap<String, i32> = topics.iter().cloned().zip(sizes).collect();
            let got = RoundRobinAssignor.assign(&members, &partitions).unwrap();
            check_complete(&members, &partitions, &got);
            check_balanced(&got);
        }
    }
}
