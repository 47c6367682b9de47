//! The `range` assignor, as Java's `RangeAssignor`.
//!
//! Per topic, the partitions in numeric order are cut into contiguous ranges, one per
//! subscribed member in member order (see the parent module); with `n` partitions and
//! `m` members, the first `n % m` members get one extra. Topics are independent, so
//! members that sort first can end up with more partitions overall; in exchange, members
//! subscribed to the same topics get the same partition numbers of each (co-partitioning).
//!
//! Not implemented: the rack-aware variant (KIP-881), which needs the replicas' racks;
//! without them Java's assignor produces exactly this assignment.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    empty_assignment, ordered_members, validate, AssignError, Assignor, GroupAssignment, Member,
};
use crate::TopicPartition;

/// The protocol name.
pub(crate) const NAME: &str = "range";

/// Java's `RangeAssignor`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RangeAssignor;

impl Assignor for RangeAssignor {
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

        for (topic, &count) in partitions {
            let consumers: Vec<&Member> = ordered
                .iter()
                .zip(&subscribed)
                .filter(|(_, topics)| topics.contains(topic.as_str()))
                .map(|(m, _)| *m)
                .collect();
            if count <= 0 || consumers.is_empty() {
                continue;
            }
            let name: Arc<str> = Arc::from(topic.as_str());
            let per_member = count / consumers.len() as i32;
            let with_extra = count as usize % consumers.len();
            let mut next = 0;
            for (i, m) in consumers.iter().enumerate() {
                let len = per_member + i32::from(i < with_extra);
                let entry = assignment
                    .get_mut(&m.id)
                    .expect("every member has an entry");
                entry.extend((next..next + len).map(|p| TopicPartition {
                    topic: name.clone(),
                    partition: p,
                }));
                next += len;
            }
        }
        Ok(assignment)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use proptest::prelude::*;

    struct Case {
        name: &'static str,
        members: Vec<Member>,
        partitions: BTreeMap<String, i32>,
        expected: Vec<(&'static str, Vec<TopicPartition>)>,
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                // The javadoc example: C0 gets [t0p0, t0p1, t1p0, t1p1], C1 [t0p2, t1p2].
                name: "javadoc two consumers two topics",
                members: vec![member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])],
                partitions: counts(&[("t0", 3), ("t1", 3)]),
                expected: vec![
                    ("C0", tps(&["t0p0", "t0p1", "t1p0", "t1p1"])),
                    ("C1", tps(&["t0p2", "t1p2"])),
                ],
            },
            Case {
                name: "RangeAssignorTest.testOnlyAssignsPartitionsFromSubscribedTopics",
                members: vec![member("consumer", &["topic"])],
                partitions: counts(&[("topic", 3), ("other", 3)]),
                expected: vec![("consumer", vec![tp("topic", 0), tp("topic", 1), tp("topic", 2)])],
            },
            Case {
                name: "RangeAssignorTest.testMultipleConsumersMixedTopics",
                members: vec![
                    member("consumer1", &["topic1"]),
                    member("consumer2", &["topic1", "topic2"]),
                    member("consumer3", &["topic1"]),
                ],
                partitions: counts(&[("topic1", 3), ("topic2", 2)]),
                expected: vec![
                    ("consumer1", vec![tp("topic1", 0)]),
                    ("consumer2", vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 1)]),
                    ("consumer3", vec![tp("topic1", 2)]),
                ],
            },
            Case {
                name: "RangeAssignorTest.testTwoConsumersOneTopicOnePartition",
                members: vec![member("consumer1", &["topic"]), member("consumer2", &["topic"])],
                partitions: counts(&[("topic", 1)]),
                expected: vec![("consumer1", vec![tp("topic", 0)]), ("consumer2", vec![])],
            },
            Case {
                // Instance ids, not member ids, decide the order of static members.
                name: "RangeAssignorTest.testTwoStaticConsumersTwoTopicsSixPartitions",
                members: vec![
                    static_member("consumer-b", "instance1", &["topic1", "topic2"]),
                    static_member("consumer-a", "instance2", &["topic1", "topic2"]),
                ],
                partitions: counts(&[("topic1", 3), ("topic2", 3)]),
                expected: vec![
                    ("consumer-b", vec![tp("topic1", 0), tp("topic1", 1), tp("topic2", 0), tp("topic2", 1)]),
                    ("consumer-a", vec![tp("topic1", 2), tp("topic2", 2)]),
                ],
            },
            Case {
                // A static member sorts before a dynamic one.
                name: "RangeAssignorTest.testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions",
                members: vec![
                    static_member("consumer-b", "instance1", &["topic1", "topic2"]),
                    member("consumer-a", &["topic1", "topic2"]),
                ],
                partitions: counts(&[("topic1", 3), ("topic2", 3)]),
                expected: vec![
                    ("consumer-b", vec![tp("topic1", 0), tp("topic1", 1), tp("topic2", 0), tp("topic2", 1)]),
                    ("consumer-a", vec![tp("topic1", 2), tp("topic2", 2)]),
                ],
            },
            Case {
                name: "RangeAssignorTest.testStaticMemberRangeAssignmentPersistent",
                members: vec![
                    static_member("consumer1", "instance1", &["topic1", "topic2"]),
                    static_member("consumer2", "instance2", &["topic1", "topic2"]),
                    static_member("consumer3", "instance3", &["topic1", "topic2"]),
                    member("consumer4", &["topic1", "topic2"]),
                ],
                partitions: counts(&[("topic1", 5), ("topic2", 4)]),
                expected: vec![
                    ("consumer1", vec![tp("topic1", 0), tp("topic1", 1), tp("topic2", 0)]),
                    ("consumer2", vec![tp("topic1", 2), tp("topic2", 1)]),
                    ("consumer3", vec![tp("topic1", 3), tp("topic2", 2)]),
                    ("consumer4", vec![tp("topic1", 4), tp("topic2", 3)]),
                ],
            },
            Case {
                // Java compares member ids as strings: "consumer-10" < "consumer-9".
                name: "member ids compare as strings",
                members: vec![member("consumer-9", &["t"]), member("consumer-10", &["t"])],
                partitions: counts(&[("t", 3)]),
                expected: vec![("consumer-10", vec![tp("t", 0), tp("t", 1)]), ("consumer-9", vec![tp("t", 2)])],
            },
        ]
    }

    #[test]
    fn java_examples() {
        for case in cases() {
            let got = RangeAssignor
                .assign(&case.members, &case.partitions)
                .unwrap();
            check_complete(&case.members, &case.partitions, &got);
            for (id, expected) in &case.expected {
                assert_eq!(&got[*id], expected, "{}: {id}", case.name);
            }
        }
    }

    #[test]
    fn static_assignment_survives_member_id_changes() {
        // RangeAssignorTest.testStaticMemberRangeAssignmentPersistentAfterMemberIdChanges:
        // the same instances under new member ids get the same partitions.
        let partitions = counts(&[("topic1", 5), ("topic2", 5)]);
        let before = [
            static_member("consumer1", "instance1", &["topic1", "topic2"]),
            static_member("consumer2", "instance2", &["topic1", "topic2"]),
            static_member("consumer3", "instance3", &["topic1", "topic2"]),
        ];
        let after = [
            static_member("consumer1", "instance1", &["topic1", "topic2"]),
            static_member("consumer5", "instance2", &["topic1", "topic2"]),
            static_member("consumer4", "instance3", &["topic1", "topic2"]),
        ];
        let by_instance = |members: &[Member]| {
            let got = RangeAssignor.assign(members, &partitions).unwrap();
            members
                .iter()
                .map(|m| (m.instance_id.clone().unwrap(), got[&m.id].clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let expected = by_instance(&before);
        assert_eq!(
            expected["instance1"],
            vec![
                tp("topic1", 0),
                tp("topic1", 1),
                tp("topic2", 0),
                tp("topic2", 1)
            ]
        );
        assert_eq!(
            expected["instance2"],
            vec![
                tp("topic1", 2),
                tp("topic1", 3),
                tp("topic2", 2),
                tp("topic2", 3)
            ]
        );
        assert_eq!(
            expected["instance3"],
            vec![tp("topic1", 4), tp("topic2", 4)]
        );
        assert_eq!(by_instance(&after), expected);
    }

    proptest! {
        #[test]
        fn prop_valid_complete_and_ranged(
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
            let got = RangeAssignor.assign(&members, &partitions).unwrap();
            check_complete(&members, &partitions, &got);
            // Per topic, the subscribers' shares differ by at most one.
            for topic in topics {
                let shares: Vec<usize> = members
                    .iter()
                    .filter(|m| m.subscription.topics.iter().any(|t| t == topic))
                    .map(|m| got[&m.id].iter().filter(|p| &*p.topic == topic).count())
                    .collect();
                if let (Some(min), Some(max)) = (shares.iter().min(), shares.iter().max()) {
                    prop_assert!(max - min <= 1);
                }
            }
        }
    }
}
