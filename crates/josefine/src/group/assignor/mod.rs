//! Partition assignors: which member of a consumer group consumes which partition.
//!
//! The group leader (the member the coordinator picks in JoinGroup) runs the assignor
//! all members agreed on, over every member's [`Subscription`] and the partition counts
//! from metadata, and sends each member its share in SyncGroup. The assignors here are
//! the ones the Java client and librdkafka ship, under the same protocol names, so a
//! Josefine consumer can share a group with either and lead it:
//!
//! | [`AssignorKind`]     | name                   | protocol    | what it does |
//! |----------------------|------------------------|-------------|--------------|
//! | `Range`              | `range`                | eager       | per topic, contiguous ranges |
//! | `RoundRobin`         | `roundrobin`           | eager       | all partitions dealt in turn |
//! | `Sticky`             | `sticky`               | eager       | balanced, keeps previous owners (KIP-54, KIP-341) |
//! | `CooperativeSticky`  | `cooperative-sticky`   | cooperative | sticky, and never hands over a partition in the round it is revoked (KIP-429) |
//!
//! Everything here is pure: no I/O, no clock, deterministic for a given input (members
//! are sorted first, so their order in the slice does not matter).
//!
//! Members are ordered as the Java client's `AbstractPartitionAssignor.MemberInfo`: static
//! members (KIP-345, with a `group.instance.id`) first, by instance id, then dynamic
//! members by member id, comparing strings like Java's `String.compareTo`. The range and
//! round-robin assignors use that order; the sticky assignors order by member id only,
//! as Java's do.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::group::consumer_protocol::{
    java_order, Assignment, ProtocolError, Subscription, MAX_VERSION,
};
use crate::TopicPartition;

pub(crate) mod cooperative_sticky;
pub(crate) mod range;
pub(crate) mod round_robin;
pub(crate) mod sticky;

pub(crate) use cooperative_sticky::CooperativeStickyAssignor;
pub(crate) use range::RangeAssignor;
pub(crate) use round_robin::RoundRobinAssignor;
pub(crate) use sticky::StickyAssignor;

/// An assignor's result: member id to the partitions it owns from now on, sorted. Every
/// member passed in has an entry, possibly empty; the leader must send each of them an
/// assignment.
pub(crate) type GroupAssignment = BTreeMap<String, Vec<TopicPartition>>;

/// How members hand over partitions during a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub(crate) enum RebalanceProtocol {
    /// Every member revokes all its partitions before joining; the new assignment is
    /// complete.
    Eager,
    /// KIP-429 incremental cooperative rebalancing: members keep their partitions while
    /// rebalancing; a partition that changes owner is first only revoked (left out of
    /// every assignment), and a follow-up rebalance assigns it.
    Cooperative,
}

impl RebalanceProtocol {
    /// The protocol a consumer configured with `assignors` follows: cooperative only if
    /// every one of them supports it. The Java client's `ConsumerCoordinator` picks the
    /// highest protocol all its assignors support the same way; cooperative assignors
    /// also work eagerly, eager ones never cooperatively. `Eager` for an empty list.
    pub(crate) fn common<'a>(assignors: impl IntoIterator<Item = &'a dyn Assignor>) -> Self {
        let mut any = false;
        for assignor in assignors {
            any = true;
            if assignor.protocol() == RebalanceProtocol::Eager {
                return RebalanceProtocol::Eager;
            }
        }
        if any {
            RebalanceProtocol::Cooperative
        } else {
            RebalanceProtocol::Eager
        }
    }
}

/// A partition assignment strategy.
pub(crate) trait Assignor: Send + Sync + 'static {
    /// The protocol name in JoinGroup: `range`, `roundrobin`, `sticky`,
    /// `cooperative-sticky`.
    fn name(&self) -> &'static str;

    /// The most capable rebalance protocol this assignor supports. A cooperative
    /// assignor also works under the eager protocol (members then own nothing while
    /// joining, so nothing needs to be held back). Default eager.
    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    /// What this member puts in [`Subscription::user_data`] for this assignor.
    ///
    /// `owned` and `generation` are, for the sticky assignor, the partitions of the last
    /// assignment this member received and the generation it was received in, kept even
    /// after an eager revocation (that is what makes it sticky); for the
    /// cooperative-sticky assignor the generation of the partitions the member owns now.
    /// A generation below zero means "none". Default: no user data.
    fn subscription_user_data(&self, _owned: &[TopicPartition], _generation: i32) -> Option<Bytes> {
        None
    }

    /// Assigns the partitions of `partitions` (topic to partition count, from metadata) to
    /// `members`. Topics no member subscribes to, and subscribed topics missing from
    /// `partitions` or with no partitions, are skipped.
    fn assign(
        &self,
        members: &[Member],
        partitions: &BTreeMap<String, i32>,
    ) -> Result<GroupAssignment, AssignError>;
}

/// One group member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The member id the coordinator gave it.
    pub id: String,
    /// Its `group.instance.id`, for static members (KIP-345).
    pub instance_id: Option<String>,
    /// Its decoded protocol metadata.
    pub subscription: Subscription,
}

impl Member {
    /// A dynamic member.
    pub(crate) fn new(id: impl Into<String>, subscription: Subscription) -> Self {
        Self {
            id: id.into(),
            instance_id: None,
            subscription,
        }
    }

    /// A member from one JoinGroup response entry: its id, instance id and the metadata
    /// bytes of the protocol the coordinator chose.
    pub(crate) fn from_join_group(
        id: impl Into<String>,
        instance_id: Option<String>,
        metadata: &[u8],
    ) -> Result<Self, ProtocolError> {
        Ok(Self {
            id: id.into(),
            instance_id,
            subscription: Subscription::decode(metadata)?,
        })
    }
}

/// Why an assignment could not be computed. The input came from the coordinator and
/// metadata; each of these means one of them is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AssignError {
    /// Two members share an id.
    #[error("member id {member_id:?} appears more than once")]
    DuplicateMember { member_id: String },
    /// Metadata reported a negative partition count.
    #[error("topic {topic:?} has a negative partition count ({count})")]
    InvalidPartitionCount { topic: String, count: i32 },
}

/// The built-in assignors, for configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AssignorKind {
    /// `range`, Java's `RangeAssignor`.
    Range,
    /// `roundrobin`, Java's `RoundRobinAssignor`.
    RoundRobin,
    /// `sticky`, Java's `StickyAssignor`.
    Sticky,
    /// `cooperative-sticky`, Java's `CooperativeStickyAssignor`.
    CooperativeSticky,
}

impl AssignorKind {
    /// Every built-in assignor.
    pub const ALL: [AssignorKind; 4] = [
        Self::Range,
        Self::RoundRobin,
        Self::Sticky,
        Self::CooperativeSticky,
    ];

    /// The Java client's default `partition.assignment.strategy` since Kafka 3.0: range,
    /// with cooperative-sticky listed so that a group can later move to it with one
    /// rolling bounce. (librdkafka's default is `range,roundrobin`.)
    pub const JAVA_DEFAULT: [AssignorKind; 2] = [Self::Range, Self::CooperativeSticky];

    /// The protocol name in JoinGroup.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Range => range::NAME,
            Self::RoundRobin => round_robin::NAME,
            Self::Sticky => sticky::NAME,
            Self::CooperativeSticky => cooperative_sticky::NAME,
        }
    }

    /// The rebalance protocol the assignor supports.
    #[cfg(test)]
    pub(crate) const fn protocol(self) -> RebalanceProtocol {
        match self {
            Self::CooperativeSticky => RebalanceProtocol::Cooperative,
            _ => RebalanceProtocol::Eager,
        }
    }

    /// The assignor with protocol name `name`, if it is a built-in one.
    pub fn by_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// An instance of the assignor.
    pub(crate) fn assignor(self) -> Arc<dyn Assignor> {
        match self {
            Self::Range => Arc::new(RangeAssignor),
            Self::RoundRobin => Arc::new(RoundRobinAssignor),
            Self::Sticky => Arc::new(StickyAssignor),
            Self::CooperativeSticky => Arc::new(CooperativeStickyAssignor),
        }
    }
}

impl fmt::Display for AssignorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The built-in assignor with protocol name `name`: what the leader looks up with the
/// protocol name the coordinator chose.
pub(crate) fn by_name(name: &str) -> Option<Arc<dyn Assignor>> {
    AssignorKind::by_name(name).map(AssignorKind::assignor)
}

/// What a member sends for `assignor` in JoinGroup: its topics, and what it owns.
///
/// `owned` is the last assignment the member received and `generation` the generation it
/// came in (below zero: none). A cooperative member reports both as owned; an eager one
/// revoked everything before joining, so it owns nothing, while the sticky assignor's user
/// data still carries the last assignment with its generation, as Java's does, so that
/// the leader can tell a current claim from a stale one.
pub(crate) fn join_subscription(
    assignor: &dyn Assignor,
    topics: &[String],
    owned: &[TopicPartition],
    generation: i32,
    cooperative: bool,
) -> Subscription {
    let user_data = assignor.subscription_user_data(owned, generation);
    let (owned_partitions, generation) = if cooperative {
        (owned.to_vec(), generation)
    } else {
        (Vec::new(), -1)
    };
    Subscription {
        topics: topics.to_vec(),
        user_data,
        owned_partitions,
        generation: Some(generation),
        rack_id: None,
    }
}

/// The leader's view of one JoinGroup member. Metadata that does not decode makes a
/// member without a subscription, which the assignors give nothing: Java fails the whole
/// rebalance instead; this keeps the rest of the group consuming.
pub(crate) fn joined_member(id: &str, instance_id: Option<String>, metadata: &[u8]) -> Member {
    Member::from_join_group(id, instance_id.clone(), metadata).unwrap_or_else(|err| {
        tracing::warn!(member = %id, error = %err, "undecodable subscription; the member gets nothing");
        Member {
            instance_id,
            ..Member::new(id, Subscription::default())
        }
    })
}

/// Each member's assignment as SyncGroup carries it.
pub(crate) fn encode_assignments(
    plan: GroupAssignment,
) -> Result<Vec<(String, Bytes)>, ProtocolError> {
    plan.into_iter()
        .map(|(member, partitions)| {
            Assignment::new(partitions)
                .encode(MAX_VERSION)
                .map(|bytes| (member, bytes))
        })
        .collect()
}

/// Rejects inputs no assignor can make sense of.
pub(crate) fn validate(
    members: &[Member],
    partitions: &BTreeMap<String, i32>,
) -> Result<(), AssignError> {
    let mut ids = HashSet::with_capacity(members.len());
    for member in members {
        if !ids.insert(member.id.as_str()) {
            return Err(AssignError::DuplicateMember {
                member_id: member.id.clone(),
            });
        }
    }
    if let Some((topic, &count)) = partitions.iter().find(|(_, &count)| count < 0) {
        return Err(AssignError::InvalidPartitionCount {
            topic: topic.clone(),
            count,
        });
    }
    Ok(())
}

/// An entry for every member, with no partitions yet.
pub(crate) fn empty_assignment(members: &[Member]) -> GroupAssignment {
    members.iter().map(|m| (m.id.clone(), Vec::new())).collect()
}

/// Members in Java's assignment order, with each one's subscribed topics as a set.
pub(crate) fn ordered_members(members: &[Member]) -> (Vec<&Member>, Vec<HashSet<&str>>) {
    let mut ordered: Vec<&Member> = members.iter().collect();
    ordered.sort_by(|a, b| member_order(a, b));
    let subscribed = ordered
        .iter()
        .map(|m| m.subscription.topics.iter().map(String::as_str).collect())
        .collect();
    (ordered, subscribed)
}

/// Java's `MemberInfo.compareTo`: static members first by instance id, then dynamic
/// members by member id. Ties between equal instance ids (which the coordinator does not
/// allow) fall back to the member id so the order stays total.
pub(crate) fn member_order(a: &Member, b: &Member) -> Ordering {
    match (&a.instance_id, &b.instance_id) {
        (Some(x), Some(y)) => java_order(x, y).then_with(|| java_order(&a.id, &b.id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => java_order(&a.id, &b.id),
    }
}

/// Test helpers shared by the assignors' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::collections::BTreeSet;

    pub(crate) fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    pub(crate) fn member(id: &str, topics: &[&str]) -> Member {
        Member::new(id, Subscription::new(topics.iter().copied()))
    }

    pub(crate) fn static_member(id: &str, instance: &str, topics: &[&str]) -> Member {
        Member {
            instance_id: Some(instance.into()),
            ..member(id, topics)
        }
    }

    pub(crate) fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
    }

    /// Parses "t0p1" style names used by the Java javadoc examples.
    pub(crate) fn tps(names: &[&str]) -> Vec<TopicPartition> {
        names
            .iter()
            .map(|n| {
                let (topic, partition) = n.rsplit_once('p').expect("name like t0p1");
                tp(topic, partition.parse().expect("partition number"))
            })
            .collect()
    }

    pub(crate) fn set(partitions: &[TopicPartition]) -> BTreeSet<TopicPartition> {
        partitions.iter().cloned().collect()
    }

    /// Every partition of a subscribed topic is assigned at most once, only to members
    /// subscribed to its topic, and only partitions that exist are assigned. Returns the
    /// set of assigned partitions.
    pub(crate) fn check_valid(
        members: &[Member],
        partitions: &BTreeMap<String, i32>,
        assignment: &GroupAssignment,
    ) -> BTreeSet<TopicPartition> {
        let ids: BTreeSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            assignment.keys().map(String::as_str).collect(),
            "one entry per member"
        );
        let mut seen = BTreeSet::new();
        for m in members {
            for p in &assignment[&m.id] {
                assert!(
                    m.subscription.topics.iter().any(|t| **t == *p.topic),
                    "{p} given to {} which does not subscribe to it",
                    m.id
                );
                assert!(
                    p.partition >= 0 && p.partition < partitions[&*p.topic],
                    "{p} does not exist"
                );
                assert!(seen.insert(p.clone()), "{p} assigned twice");
            }
        }
        seen
    }

    /// All partitions of all topics some member subscribes to.
    pub(crate) fn subscribed_partitions(
        members: &[Member],
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeSet<TopicPartition> {
        let topics: BTreeSet<&str> = members
            .iter()
            .flat_map(|m| m.subscription.topics.iter().map(String::as_str))
            .collect();
        topics
            .into_iter()
            .filter_map(|t| partitions.get(t).map(|&n| (t, n)))
            .flat_map(|(t, n)| (0..n).map(move |p| tp(t, p)))
            .collect()
    }

    /// Validity plus completeness: every subscribed partition assigned exactly once.
    pub(crate) fn check_complete(
        members: &[Member],
        partitions: &BTreeMap<String, i32>,
        assignment: &GroupAssignment,
    ) {
        let assigned = check_valid(members, partitions, assignment);
        assert_eq!(
            assigned,
            subscribed_partitions(members, partitions),
            "every subscribed partition assigned"
        );
    }

    /// Counts differ by at most one.
    pub(crate) fn check_balanced(assignment: &GroupAssignment) {
        let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
        if let (Some(min), Some(max)) = (sizes.iter().min(), sizes.iter().max()) {
            assert!(max - min <= 1, "unbalanced: {assignment:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    /// An eager sticky member owns nothing while joining, but its user data names its
    /// last assignment's generation: the leader needs it to prefer a current claim to a
    /// stale one (a member that missed its eviction still claims its old partitions).
    #[test]
    fn a_joining_member_reports_its_last_assignment_and_its_generation() {
        let owned = [TopicPartition::new("t", 0), TopicPartition::new("t", 3)];
        let topics = ["t".to_string()];

        let eager = join_subscription(&StickyAssignor, &topics, &owned, 5, false);
        assert!(eager.owned_partitions.is_empty());
        assert_eq!(eager.generation, Some(-1));
        let data = sticky::decode_user_data(eager.user_data.as_deref().unwrap()).unwrap();
        assert_eq!(
            (data.owned.as_slice(), data.generation),
            (&owned[..], Some(5))
        );

        let cooperative = join_subscription(&CooperativeStickyAssignor, &topics, &owned, 5, true);
        assert_eq!(cooperative.owned_partitions, owned);
        assert_eq!(cooperative.generation, Some(5));
        assert_eq!(
            cooperative.user_data.as_deref(),
            Some(&5i32.to_be_bytes()[..])
        );

        // Before its first assignment a member has nothing to report.
        let first = join_subscription(&StickyAssignor, &topics, &[], -1, false);
        assert_eq!((first.user_data, first.generation), (None, Some(-1)));
    }

    #[test]
    fn kinds_have_the_java_names_and_protocols() {
        let expected = [
            (AssignorKind::Range, "range", RebalanceProtocol::Eager),
            (
                AssignorKind::RoundRobin,
                "roundrobin",
                RebalanceProtocol::Eager,
            ),
            (AssignorKind::Sticky, "sticky", RebalanceProtocol::Eager),
            (
                AssignorKind::CooperativeSticky,
                "cooperative-sticky",
                RebalanceProtocol::Cooperative,
            ),
        ];
        for (kind, name, protocol) in expected {
            assert_eq!(kind.name(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(kind.protocol(), protocol);
            assert_eq!(AssignorKind::by_name(name), Some(kind));
            let assignor = by_name(name).expect("built in");
            assert_eq!(assignor.name(), name);
            assert_eq!(assignor.protocol(), protocol);
        }
        assert_eq!(AssignorKind::by_name("Range"), None);
        assert!(by_name("uniform").is_none());
    }

    #[test]
    fn common_protocol_is_cooperative_only_if_all_are() {
        let coop = CooperativeStickyAssignor;
        let range = RangeAssignor;
        assert_eq!(
            RebalanceProtocol::common([&coop as &dyn Assignor]),
            RebalanceProtocol::Cooperative
        );
        assert_eq!(
            RebalanceProtocol::common([&range as &dyn Assignor, &coop as &dyn Assignor]),
            RebalanceProtocol::Eager
        );
        assert_eq!(
            RebalanceProtocol::common(std::iter::empty()),
            RebalanceProtocol::Eager
        );
    }

    #[test]
    fn invalid_input_is_rejected_by_every_assignor() {
        for kind in AssignorKind::ALL {
            let assignor = kind.assignor();
            let twice = [member("a", &["t"]), member("a", &["t"])];
            assert_eq!(
                assignor.assign(&twice, &counts(&[("t", 1)])),
                Err(AssignError::DuplicateMember {
                    member_id: "a".into()
                }),
                "{kind}"
            );
            assert_eq!(
                assignor.assign(&[member("a", &["t"])], &counts(&[("t", -1)])),
                Err(AssignError::InvalidPartitionCount {
                    topic: "t".into(),
                    count: -1
                }),
                "{kind}"
            );
        }
    }

    #[test]
    fn edge_cases_for_every_assignor() {
        for kind in AssignorKind::ALL {
            let assignor = kind.assignor();
            // No members.
            assert_eq!(
                assignor.assign(&[], &counts(&[("t", 3)])).unwrap(),
                GroupAssignment::new(),
                "{kind}"
            );
            // No partitions at all, a topic with zero partitions, a topic missing from
            // metadata, and a member subscribed to nothing: everyone gets an empty list.
            let members = [
                member("a", &["t", "gone"]),
                member("b", &[]),
                member("c", &["empty"]),
            ];
            for partitions in [counts(&[]), counts(&[("empty", 0)])] {
                let got = assignor.assign(&members, &partitions).unwrap();
                assert!(got.values().all(Vec::is_empty), "{kind}: {got:?}");
                assert_eq!(got.len(), 3);
            }
            // More members than partitions.
            let members: Vec<Member> = (0..5).map(|i| member(&format!("m{i}"), &["t"])).collect();
            let partitions = counts(&[("t", 2)]);
            let got = assignor.assign(&members, &partitions).unwrap();
            check_complete(&members, &partitions, &got);
            assert_eq!(got.values().filter(|v| v.len() == 1).count(), 2, "{kind}");
            // One member takes everything it subscribes to, nothing else.
            let members = [member("solo", &["a", "b"])];
            let partitions = counts(&[("a", 2), ("b", 1), ("c", 4)]);
            let got = assignor.assign(&members, &partitions).unwrap();
            assert_eq!(
                got["solo"],
                vec![tp("a", 0), tp("a", 1), tp("b", 0)],
                "{kind}"
            );
        }
    }

    #[test]
    fn member_order_puts_static_members_first() {
        let a = static_member("consumer-b", "instance1", &[]);
        let b = static_member("consumer-a", "instance2", &[]);
        let c = member("consumer-0", &[]);
        let mut members = vec![c.clone(), b.clone(), a.clone()];
        members.sort_by(member_order);
        assert_eq!(members, vec![a, b, c]);
    }

    #[test]
    fn member_from_join_group_decodes_metadata() {
        let subscription = Subscription::new(["t"]);
        let bytes = subscription.encode(3).unwrap();
        let m = Member::from_join_group("m-1", Some("i-1".into()), &bytes).unwrap();
        assert_eq!(m.subscription, subscription);
        assert_eq!(m.instance_id.as_deref(), Some("i-1"));
        assert!(Member::from_join_group("m-1", None, &[0]).is_err());
    }
}
