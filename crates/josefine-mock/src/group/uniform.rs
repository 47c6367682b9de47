//! The "uniform" server-side assignor of consumer groups (KIP-848), as the
//! mock computes a group's target assignment: balanced and sticky.
//!
//! Kafka's `UniformAssignor` spreads the partitions of the subscribed topics
//! so that member counts differ by at most one, keeping each member's
//! current partitions where it can. The mock reaches the same kind of
//! result with a simpler method, which also serves members with different
//! subscriptions:
//!
//! 1. Every member keeps the partitions of its previous target that still
//!    exist and that it still subscribes to (the first member, by id, wins
//!    a partition two members claim).
//! 2. Each partition nobody kept goes to the member with the fewest
//!    partitions among those subscribed to its topic (ties: the smallest
//!    member id).
//! 3. While a member holds two partitions more than another member that
//!    could take one of them, the largest such partition moves from the
//!    member with the most to the one with the fewest. Each move lowers the
//!    sum of the squared counts, so this ends; with one subscription shared
//!    by every member it ends balanced, having moved as few partitions as
//!    balancing needs.
//!
//! The result is a function of its inputs alone (no hash-map order, no
//! randomness), so runs repeat. Racks are not considered.

use std::collections::{BTreeMap, BTreeSet};

/// A partition by topic name.
pub(crate) type Tp = (String, i32);

/// A set of partitions by topic name, sorted.
pub(crate) type Partitions = BTreeSet<Tp>;

/// One member as the assignor sees it.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber<'a> {
    pub(crate) member_id: &'a str,
    /// The topics it subscribes to that exist.
    pub(crate) topics: &'a BTreeSet<String>,
    /// Its previous target assignment.
    pub(crate) current: &'a Partitions,
}

/// The target assignment of every subscriber, by member id; `partitions`
/// gives each existing topic's partition count.
pub(crate) fn assign(
    subscribers: &[Subscriber<'_>],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Partitions> {
    let mut sorted: Vec<&Subscriber<'_>> = subscribers.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(b.member_id));
    let eligible = |s: &Subscriber<'_>, (topic, partition): &Tp| {
        s.topics.contains(topic) && partitions.get(topic).is_some_and(|n| *partition < *n)
    };
    let mut target: BTreeMap<String, Partitions> = sorted
        .iter()
        .map(|s| (s.member_id.to_owned(), Partitions::new()))
        .collect();
    // 1. Stickiness.
    let mut taken = Partitions::new();
    for s in &sorted {
        for tp in s.current {
            if eligible(s, tp) && taken.insert(tp.clone()) {
                target
                    .entry(s.member_id.to_owned())
                    .or_default()
                    .insert(tp.clone());
            }
        }
    }
    // 2. The partitions nobody kept, to the least loaded.
    let wanted: BTreeSet<&String> = sorted.iter().flat_map(|s| s.topics.iter()).collect();
    for topic in wanted {
        let Some(&count) = partitions.get(topic) else {
            continue;
        };
        for partition in 0..count {
            let tp = (topic.clone(), partition);
            if taken.contains(&tp) {
                continue;
            }
            let receiver = sorted.iter().filter(|s| eligible(s, &tp)).min_by_key(|s| {
                (
                    target.get(s.member_id).map_or(0, BTreeSet::len),
                    s.member_id,
                )
            });
            if let Some(receiver) = receiver {
                target
                    .entry(receiver.member_id.to_owned())
                    .or_default()
                    .insert(tp.clone());
                taken.insert(tp);
            }
        }
    }
    // 3. Balance.
    while let Some((donor, receiver, tp)) = best_move(&sorted, &target, &eligible) {
        if let Some(from) = target.get_mut(&donor) {
            from.remove(&tp);
        }
        target.entry(receiver).or_default().insert(tp);
    }
    target
}

/// The move that evens out the most: from the fullest member to the
/// emptiest one that can take one of its partitions, when they differ by
/// two or more.
fn best_move(
    sorted: &[&Subscriber<'_>],
    target: &BTreeMap<String, Partitions>,
    eligible: &impl Fn(&Subscriber<'_>, &Tp) -> bool,
) -> Option<(String, String, Tp)> {
    let count = |s: &Subscriber<'_>| target.get(s.member_id).map_or(0, BTreeSet::len);
    let mut best: Option<(usize, String, String, Tp)> = None;
    for donor in sorted {
        for receiver in sorted {
            let (have, lack) = (count(donor), count(receiver));
            if have < lack + 2 || best.as_ref().is_some_and(|(gap, ..)| have - lack <= *gap) {
                continue;
            }
            let movable = target
                .get(donor.member_id)
                .into_iter()
                .flatten()
                .rev()
                .find(|tp| eligible(receiver, tp));
            if let Some(tp) = movable {
                best = Some((
                    have - lack,
                    donor.member_id.to_owned(),
                    receiver.member_id.to_owned(),
                    tp.clone(),
                ));
            }
        }
    }
    best.map(|(_, donor, receiver, tp)| (donor, receiver, tp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn tps(list: &[(&str, i32)]) -> Partitions {
        list.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
    }

    fn counts(target: &BTreeMap<String, Partitions>) -> Vec<usize> {
        target.values().map(BTreeSet::len).collect()
    }

    #[test]
    fn a_lone_member_gets_everything_and_a_second_takes_half() {
        let t = topics(&["t"]);
        let sizes = BTreeMap::from([("t".to_owned(), 6)]);
        let empty = Partitions::new();
        let one = assign(
            &[Subscriber {
                member_id: "a",
                topics: &t,
                current: &empty,
            }],
            &sizes,
        );
        assert_eq!(one["a"].len(), 6);
        let two = assign(
            &[
                Subscriber {
                    member_id: "a",
                    topics: &t,
                    current: &one["a"],
                },
                Subscriber {
                    member_id: "b",
                    topics: &t,
                    current: &empty,
                },
            ],
            &sizes,
        );
        assert_eq!(counts(&two), vec![3, 3]);
        assert!(two["a"].is_subset(&one["a"]), "a keeps what it had");
    }

    #[test]
    fn members_keep_their_partitions_up_to_their_share() {
        let t = topics(&["t"]);
        let sizes = BTreeMap::from([("t".to_owned(), 7)]);
        let a = tps(&[("t", 0), ("t", 1), ("t", 2), ("t", 3)]);
        let b = tps(&[("t", 4), ("t", 5), ("t", 6)]);
        let empty = Partitions::new();
        let subscribers = [
            Subscriber {
                member_id: "a",
                topics: &t,
                current: &a,
            },
            Subscriber {
                member_id: "b",
                topics: &t,
                current: &b,
            },
            Subscriber {
                member_id: "c",
                topics: &t,
                current: &empty,
            },
        ];
        let target = assign(&subscribers, &sizes);
        let mut sorted = counts(&target);
        sorted.sort_unstable();
        assert_eq!(sorted, vec![2, 2, 3]);
        assert!(target["a"].is_subset(&a) && target["b"].is_subset(&b));
        let all: Partitions = target.values().flatten().cloned().collect();
        assert_eq!(all.len(), 7, "every partition assigned once");
    }

    #[test]
    fn different_subscriptions_get_only_their_topics_and_deleted_ones_go() {
        let (x, xy) = (topics(&["x"]), topics(&["x", "y"]));
        let sizes = BTreeMap::from([("x".to_owned(), 2), ("y".to_owned(), 2)]);
        let stale = tps(&[("gone", 0), ("x", 5)]);
        let empty = Partitions::new();
        let target = assign(
            &[
                Subscriber {
                    member_id: "a",
                    topics: &x,
                    current: &stale,
                },
                Subscriber {
                    member_id: "b",
                    topics: &xy,
                    current: &empty,
                },
            ],
            &sizes,
        );
        assert!(target["a"].iter().all(|(t, _)| t == "x"));
        assert_eq!(target["a"].len() + target["b"].len(), 4);
        assert_eq!(target["a"].len(), 2, "a takes x while b has y: {target:?}");
    }
}
