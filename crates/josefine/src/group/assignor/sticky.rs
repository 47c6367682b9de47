//! The `sticky` assignor (KIP-54, KIP-341), as Java's `StickyAssignor`, and the sticky
//! algorithm it shares with the `cooperative-sticky` assignor (Java's
//! `AbstractStickyAssignor`).
//!
//! # Goals, in order
//!
//! 1. Balance. With identical subscriptions, counts differ by at most one. Otherwise,
//!    Java's definition: no member with at least two partitions fewer than another could
//!    take one of that other member's partitions (it does not subscribe to any of them).
//! 2. Stickiness: as many partitions as possible stay with their previous owner.
//!
//! # Previous ownership
//!
//! Each member reports what it owned and in which generation (`MemberData`). A
//! partition claimed by several members goes to the claimant with the highest generation;
//! if two or more claim it in that same highest generation, nobody keeps it (Java and
//! librdkafka log this as an error and invalidate the claims). Claims on partitions of
//! topics the member no longer subscribes to, or that no longer exist, are dropped.
//!
//! # Algorithm
//!
//! When every member subscribes to the same topics (the common case), Java's "constrained"
//! algorithm is optimal and simple: with `P` partitions and `N` members, each member gets
//! `P / N` (the min quota), and `P % N` of them one more (the max quota). Each member keeps
//! its owned partitions up to its quota (the first ones by partition number, then topic,
//! as Java); the rest are dealt round-robin to members below the min quota, then one each
//! to members at the min quota until `P % N` members are at the max quota.
//!
//! Otherwise we run our own version of the "general" algorithm: members keep all valid
//! owned partitions; unowned partitions (topics with the fewest subscribers first) go one
//! by one to the least loaded subscribed member; then, while some member `a` holds a
//! partition of a topic that a member `b` with at least two partitions fewer subscribes
//! to, one such partition moves from `a` to `b` (most loaded `a` first, then the least
//! loaded `b`). Partitions `a` did not own before this rebalance are moved first (they
//! cost no stickiness), and among them one going back to `b` (it was `b`'s, or `b` claimed
//! it in an older generation) so that moves undo moves. Each move lowers the sum of
//! squared counts, so the loop ends, and it ends exactly when goal 1 holds. Loads are
//! indexed per topic, so finding a move costs a look-up per topic the donor holds: the
//! leader's whole work for 1,000 members on 10,000 partitions, each member subscribed to
//! half the topics, takes about 4 ms (`benches/assignors.rs`; Java's takes 0.19 s).
//!
//! Java's general algorithm reaches the same balance with a different search (and a
//! partition-movement bookkeeping to avoid moving partitions of one topic back and forth
//! between two members, which our preference order achieves); which partitions move where
//! can differ from Java's in the general case, and in the constrained case when Java's
//! result depends on `HashMap` iteration order. Any member can follow any leader's
//! assignment, so these differences do not affect interoperability.
//!
//! The cooperative assignor then leaves out partitions that change owner (see
//! [`cooperative_sticky`](super::cooperative_sticky)) and makes sure the follow-up
//! rebalance completes the assignment (`Sticky::settle`).
//!
//! # User data
//!
//! The sticky assignor predates owned partitions in the subscription (and runs the eager
//! protocol, so members own nothing when they join): each member sends its last assignment
//! and generation in the user data, in the Java client's `STICKY_ASSIGNOR_USER_DATA_V1`
//! schema, `[topic STRING, partitions [INT32]] generation INT32` (V0 lacks the
//! generation). As in Java the leader always believes the user data; when a member sends
//! none (librdkafka does, Java clients before their first assignment do not) we fall back
//! to the subscription's owned partitions and generation, which is what librdkafka's
//! sticky assignor reads.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::{validate, AssignError, Assignor, GroupAssignment, Member};
use crate::group::consumer_protocol::{java_order, Scan, Subscription, MIN_TOPIC_PARTITIONS};
use crate::TopicPartition;

/// The protocol name.
pub(crate) const NAME: &str = "sticky";

/// The generation a member without one is treated as having (Java's
/// `DEFAULT_GENERATION`).
const NO_GENERATION: i32 = -1;

/// Java's `StickyAssignor`: sticky, eager.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StickyAssignor;

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The last assignment received and its generation, in the V1 schema; nothing before
    /// the first assignment (no partitions and no generation), as Java.
    fn subscription_user_data(&self, owned: &[TopicPartition], generation: i32) -> Option<Bytes> {
        if owned.is_empty() && generation < 0 {
            return None;
        }
        encode_user_data(owned, Some(generation))
    }

    fn assign(
        &self,
        members: &[Member],
        partitions: &BTreeMap<String, i32>,
    ) -> Result<GroupAssignment, AssignError> {
        validate(members, partitions)?;
        let data: Vec<MemberData> = members
            .iter()
            .map(|m| member_data(&m.subscription))
            .collect();
        Ok(assign_sticky(members, partitions, &data, false))
    }
}

/// What a member owned before this rebalance, as its assignor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberData {
    pub(crate) owned: Vec<TopicPartition>,
    pub(crate) generation: Option<i32>,
}

/// The sticky assignor reads ownership from the user data (Java's
/// `StickyAssignor.memberData`), falling back to the subscription's fields when there is
/// no user data. Unreadable user data counts as owning nothing, in no generation.
fn member_data(subscription: &Subscription) -> MemberData {
    match &subscription.user_data {
        Some(user_data) if !user_data.is_empty() => {
            decode_user_data(user_data).unwrap_or(MemberData {
                owned: Vec::new(),
                generation: Some(NO_GENERATION),
            })
        }
        _ => MemberData {
            owned: subscription.owned_partitions.clone(),
            generation: subscription.generation,
        },
    }
}

/// Encodes `STICKY_ASSIGNOR_USER_DATA_V1` (V0 without a generation), partitions grouped by
/// topic in sorted order. `None` only if a topic name is too long for the wire.
///
/// This schema is defined in the Java client's code, not in Kafka's message JSON, so
/// `kafka-protocol` has no type for it and keeps its primitive codecs private; it is
/// small enough to write directly.
pub(crate) fn encode_user_data(
    partitions: &[TopicPartition],
    generation: Option<i32>,
) -> Option<Bytes> {
    let mut sorted: Vec<&TopicPartition> = partitions.iter().collect();
    sorted.sort_by(|a, b| java_order(&a.topic, &b.topic).then(a.partition.cmp(&b.partition)));
    sorted.dedup();
    let mut groups: Vec<(&str, Vec<i32>)> = Vec::new();
    for tp in sorted {
        match groups.last_mut() {
            Some((topic, partitions)) if **topic == *tp.topic => partitions.push(tp.partition),
            _ => groups.push((&tp.topic, vec![tp.partition])),
        }
    }

    let size = 4
        + groups
            .iter()
            .map(|(t, ps)| 2 + t.len() + 4 + 4 * ps.len())
            .sum::<usize>()
        + 4;
    let mut buf = BytesMut::with_capacity(size);
    buf.put_i32(i32::try_from(groups.len()).ok()?);
    for (topic, partitions) in &groups {
        buf.put_i16(i16::try_from(topic.len()).ok()?);
        buf.put_slice(topic.as_bytes());
        buf.put_i32(i32::try_from(partitions.len()).ok()?);
        for &p in partitions {
            buf.put_i32(p);
        }
    }
    if let Some(generation) = generation {
        buf.put_i32(generation);
    }
    Some(buf.freeze())
}

/// Decodes V1, or V0 when the generation is missing (Java tries V1, then V0); `None` if
/// neither parses. Trailing bytes are ignored, as Java's `Schema.read` does. Every count
/// is checked against the bytes left before anything is allocated for it (see
/// `consumer_protocol`'s `Scan`).
pub(crate) fn decode_user_data(bytes: &[u8]) -> Option<MemberData> {
    let mut scan = Scan::new(bytes, "sticky user data");
    let mut owned = Vec::new();
    scan.array("previous_assignment", MIN_TOPIC_PARTITIONS, |s| {
        let topic: Arc<str> = Arc::from(s.str("topic")?);
        s.array("partitions", 4, |s| {
            let partition = s.i32("partitions")?;
            owned.push(TopicPartition {
                topic: topic.clone(),
                partition,
            });
            Ok(())
        })
    })
    .ok()?;
    let generation = scan.i32("generation").ok();
    Some(MemberData { owned, generation })
}

/// One topic taking part in the assignment.
struct Topic {
    name: Arc<str>,
    /// Global index of partition 0; partition `p` is `first + p`.
    first: usize,
    count: usize,
    /// Members (indices into the sorted member list) subscribed to it.
    subscribers: Vec<usize>,
}

/// The working state of one sticky assignment. Members are indices into the member list
/// sorted by id (Java order); partitions are global indices, ordered by topic (Java
/// order) then partition number.
struct Sticky {
    topics: Vec<Topic>,
    /// The topic of each partition.
    topic_of: Vec<usize>,
    /// Sorted topic indices each member subscribes to.
    subscribed: Vec<Vec<usize>>,
    /// Sorted partitions each member claims, valid or not (for cooperative revocation).
    claims: Vec<Vec<usize>>,
    /// How many members claim each partition.
    claimants: Vec<u32>,
    /// Partitions claimed by several members in the same, highest, generation.
    contested: Vec<bool>,
    /// Each partition's previous owner after resolving conflicts, if it may keep it.
    owner: Vec<Option<usize>>,
    /// For a partition claimed by several members, the best claimant other than `owner`.
    runner_up: Vec<Option<usize>>,
    /// The assignment being built.
    assigned: Vec<Vec<usize>>,
    holder: Vec<Option<usize>>,
}

impl Sticky {
    fn new(members: &[&Member], data: &[&MemberData], partitions: &BTreeMap<String, i32>) -> Self {
        let subscriptions: Vec<HashSet<&str>> = members
            .iter()
            .map(|m| m.subscription.topics.iter().map(String::as_str).collect())
            .collect();

        let mut names: Vec<(&str, usize)> = partitions
            .iter()
            .filter(|(name, &count)| {
                count > 0 && subscriptions.iter().any(|s| s.contains(name.as_str()))
            })
            .map(|(name, &count)| (name.as_str(), count as usize))
            .collect();
        names.sort_by(|a, b| java_order(a.0, b.0));

        let mut topics = Vec::with_capacity(names.len());
        let mut topic_of = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(names.len());
        for (t, &(name, count)) in names.iter().enumerate() {
            index.insert(name, t);
            topics.push(Topic {
                name: Arc::from(name),
                first: topic_of.len(),
                count,
                subscribers: (0..members.len())
                    .filter(|&m| subscriptions[m].contains(name))
                    .collect(),
            });
            topic_of.resize(topic_of.len() + count, t);
        }
        let total = topic_of.len();

        let subscribed: Vec<Vec<usize>> = subscriptions
            .iter()
            .map(|s| {
                let mut ts: Vec<usize> = s
                    .iter()
                    .filter_map(|name| index.get(name).copied())
                    .collect();
                ts.sort_unstable();
                ts
            })
            .collect();

        let claims: Vec<Vec<usize>> = data
            .iter()
            .map(|d| {
                let mut pids: Vec<usize> = d
                    .owned
                    .iter()
                    .filter_map(|tp| {
                        let topic = &topics[*index.get(&*tp.topic)?];
                        let p = usize::try_from(tp.partition)
                            .ok()
                            .filter(|&p| p < topic.count)?;
                        Some(topic.first + p)
                    })
                    .collect();
                pids.sort_unstable();
                pids.dedup();
                pids
            })
            .collect();

        let mut sticky = Sticky {
            topics,
            topic_of,
            subscribed,
            claims,
            claimants: vec![0; total],
            contested: vec![false; total],
            owner: vec![None; total],
            runner_up: vec![None; total],
            assigned: vec![Vec::new(); members.len()],
            holder: vec![None; total],
        };
        sticky.resolve_claims(data);
        sticky
    }

    /// The highest generation wins a partition; a tie at the top invalidates it.
    fn resolve_claims(&mut self, data: &[&MemberData]) {
        let generation = |m: usize| data[m].generation.unwrap_or(NO_GENERATION);
        let mut by_partition: Vec<(usize, usize)> = self
            .claims
            .iter()
            .enumerate()
            .flat_map(|(m, pids)| pids.iter().map(move |&p| (p, m)))
            .collect();
        by_partition.sort_unstable();
        for group in by_partition.chunk_by(|a, b| a.0 == b.0) {
            let pid = group[0].0;
            self.claimants[pid] = group.len() as u32;
            // Highest generation first; among equals the member that sorts first.
            let mut ranked: Vec<usize> = group.iter().map(|&(_, m)| m).collect();
            ranked.sort_by_key(|&m| (std::cmp::Reverse(generation(m)), m));
            if ranked.len() > 1 && generation(ranked[0]) == generation(ranked[1]) {
                self.contested[pid] = true;
                continue;
            }
            let winner = ranked[0];
            if self.subscribes(winner, self.topic_of[pid]) {
                self.owner[pid] = Some(winner);
            }
            self.runner_up[pid] = ranked.get(1).copied();
        }
    }

    fn subscribes(&self, member: usize, topic: usize) -> bool {
        self.subscribed[member].binary_search(&topic).is_ok()
    }

    fn give(&mut self, pid: usize, member: usize) {
        self.assigned[member].push(pid);
        self.holder[pid] = Some(member);
    }

    fn owned_by(&self, member: usize) -> impl Iterator<Item = usize> + '_ {
        self.claims[member]
            .iter()
            .copied()
            .filter(move |&p| self.owner[p] == Some(member))
    }

    /// Java's constrained assignment, for identical subscriptions.
    fn assign_uniform(&mut self) {
        let members = self.assigned.len();
        let total = self.topic_of.len();
        let min_quota = total / members;
        let max_quota = total.div_ceil(members);
        let expected_at_max = total % members;
        let mut at_max = 0;
        // Members below the min quota, and members at it that may take one more.
        let mut under = Vec::new();
        let mut at_min = VecDeque::new();

        for m in 0..members {
            let mut owned: Vec<usize> = self.owned_by(m).collect();
            // Keep the lowest partition numbers across topics, as Java.
            owned.sort_by_key(|&p| (p - self.topics[self.topic_of[p]].first, self.topic_of[p]));
            let keep = if owned.len() < min_quota {
                under.push(m);
                owned.len()
            } else if owned.len() >= max_quota && at_max < expected_at_max {
                at_max += 1;
                if at_max == expected_at_max {
                    at_min.clear();
                }
                max_quota
            } else {
                if at_max < expected_at_max {
                    at_min.push_back(m);
                }
                min_quota
            };
            for &p in &owned[..keep] {
                self.give(p, m);
            }
        }

        let unassigned: Vec<usize> = (0..total).filter(|&p| self.holder[p].is_none()).collect();
        let mut cursor = 0;
        for pid in unassigned {
            if !under.is_empty() {
                if cursor >= under.len() {
                    cursor = 0;
                }
                let m = under[cursor];
                self.give(pid, m);
                if self.assigned[m].len() >= min_quota {
                    under.remove(cursor);
                    at_min.push_back(m);
                } else {
                    cursor += 1;
                }
            } else if let Some(m) = at_min.pop_front() {
                self.give(pid, m);
            } else {
                // Unreachable by the quota arithmetic (Java throws here); stay valid by
                // giving the partition to the least loaded member rather than failing.
                let m = (0..members)
                    .min_by_key(|&m| (self.assigned[m].len(), m))
                    .unwrap_or(0);
                self.give(pid, m);
            }
        }
    }

    /// The general assignment, for members with different subscriptions.
    fn assign_general(&mut self) {
        let total = self.topic_of.len();
        for pid in 0..total {
            if let Some(m) = self.owner[pid] {
                self.give(pid, m);
            }
        }
        let origin = self.holder.clone();

        // Topics with the fewest possible consumers first, as Java.
        let mut unassigned: Vec<usize> = (0..total).filter(|&p| self.holder[p].is_none()).collect();
        unassigned.sort_by_key(|&p| (self.topics[self.topic_of[p]].subscribers.len(), p));
        for pid in unassigned {
            let topic = &self.topics[self.topic_of[pid]];
            if let Some(&m) = topic
                .subscribers
                .iter()
                .min_by_key(|&&m| (self.assigned[m].len(), m))
            {
                self.give(pid, m);
            }
        }

        let mut balance = Balance::new(self, &origin);
        balance.run(self, &origin);
        for (m, held) in balance.held.into_iter().enumerate() {
            self.assigned[m] = held.into_values().flat_map(Held::into_partitions).collect();
        }
    }

    /// KIP-429: a partition goes to a member that did not claim it only once no other
    /// member claims it; until then it is left out, its claimants see it missing from
    /// their assignment and revoke it, and the follow-up rebalance assigns it. Contested
    /// partitions are left out even for their claimants, so that all of them revoke
    /// first (Java's `partitionsTransferringOwnership`). Returns whether anything was
    /// left out.
    fn withhold_transfers(&mut self) -> bool {
        let mut withheld = false;
        for m in 0..self.assigned.len() {
            let mut kept = std::mem::take(&mut self.assigned[m]);
            kept.retain(|&p| {
                let claimed_here = self.claims[m].binary_search(&p).is_ok();
                let transfer = self.contested[p] || (!claimed_here && self.claimants[p] > 0);
                if transfer {
                    self.holder[p] = None;
                    withheld = true;
                }
                !transfer
            });
            self.assigned[m] = kept;
        }
        withheld
    }

    /// Makes sure the follow-up rebalance finishes the job.
    ///
    /// After a round that withheld partitions, the members revoke and rejoin, each
    /// owning exactly what it was assigned now. With different subscriptions, that round
    /// can place the withheld partitions differently and need to move an owned partition
    /// again, costing a third rebalance (Java's tests allow up to four). So we run that
    /// next round here, against the assignment we are about to hand out, and take away
    /// now whatever it would take away then; repeat until it would take nothing. What is
    /// left out is then either revoked (someone else claimed it) or never given, and the
    /// follow-up round, seeing what we simulated, only adds. Something was withheld, so
    /// some member revokes and the follow-up rebalance does happen.
    ///
    /// This only assumes membership, subscriptions and metadata stay as they are; if they
    /// change, the next rebalance starts over anyway. Each pass removes at least one
    /// partition; passes are capped, and any intermediate result is already a valid
    /// cooperative assignment.
    fn settle(&mut self, members: &[&Member], partitions: &BTreeMap<String, i32>) {
        const MAX_PASSES: usize = 16;
        for _ in 0..MAX_PASSES {
            // What each member will claim next round, all in the same (new) generation.
            let data: Vec<MemberData> = (0..members.len())
                .map(|m| MemberData {
                    owned: self.partitions_of(m),
                    generation: Some(0),
                })
                .collect();
            let data: Vec<&MemberData> = data.iter().collect();
            let mut next = Sticky::new(members, &data, partitions);
            next.run();

            let mut changed = false;
            for m in 0..self.assigned.len() {
                let mut kept_next = next.assigned[m].clone();
                kept_next.sort_unstable();
                let mut taken = std::mem::take(&mut self.assigned[m]);
                taken.retain(|&p| {
                    let keep = kept_next.binary_search(&p).is_ok();
                    if !keep {
                        self.holder[p] = None;
                        changed = true;
                    }
                    keep
                });
                self.assigned[m] = taken;
            }
            if !changed {
                return;
            }
        }
    }

    fn run(&mut self) {
        if self.assigned.is_empty() {
            return;
        }
        if self.subscribed.windows(2).all(|w| w[0] == w[1]) {
            self.assign_uniform();
        } else {
            self.assign_general();
        }
    }

    fn partitions_of(&self, member: usize) -> Vec<TopicPartition> {
        let mut pids = self.assigned[member].clone();
        pids.sort_unstable();
        pids.into_iter()
            .map(|p| {
                let topic = &self.topics[self.topic_of[p]];
                TopicPartition {
                    topic: topic.name.clone(),
                    partition: (p - topic.first) as i32,
                }
            })
            .collect()
    }
}

/// The partitions of one topic a member holds during balancing.
#[derive(Debug, Clone, Default)]
struct Held {
    /// Partitions it did not own when balancing started: moving them costs nothing.
    fresh: BTreeSet<usize>,
    /// Partitions it owned.
    kept: BTreeSet<usize>,
    /// The subset of `kept` that another member also claimed, in an older generation.
    kept_contested: BTreeSet<usize>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.kept.is_empty()
    }

    fn into_partitions(self) -> impl Iterator<Item = usize> {
        self.fresh.into_iter().chain(self.kept)
    }
}

/// The balancing step of the general assignment. Loads are indexed two ways so that
/// finding a move costs about one look-up per topic a donor holds, not a scan of all
/// member pairs: globally, to visit donors from the most loaded down, and per topic, to
/// find the least loaded member that could take one of its partitions.
struct Balance {
    load: Vec<usize>,
    by_load: BTreeSet<(usize, usize)>,
    /// Per topic, its subscribers by load.
    topic_load: Vec<BTreeSet<(usize, usize)>>,
    /// Per member, what it holds of each topic.
    held: Vec<BTreeMap<usize, Held>>,
}

impl Balance {
    fn new(sticky: &Sticky, origin: &[Option<usize>]) -> Self {
        let load: Vec<usize> = sticky.assigned.iter().map(Vec::len).collect();
        let mut held: Vec<BTreeMap<usize, Held>> = vec![BTreeMap::new(); load.len()];
        for (m, pids) in sticky.assigned.iter().enumerate() {
            for &p in pids {
                let entry = held[m].entry(sticky.topic_of[p]).or_default();
                if origin[p] == Some(m) {
                    entry.kept.insert(p);
                    if sticky.runner_up[p].is_some() {
                        entry.kept_contested.insert(p);
                    }
                } else {
                    entry.fresh.insert(p);
                }
            }
        }
        let by_load = (0..load.len()).map(|m| (load[m], m)).collect();
        let topic_load = sticky
            .topics
            .iter()
            .map(|t| t.subscribers.iter().map(|&m| (load[m], m)).collect())
            .collect();
        Self {
            load,
            by_load,
            topic_load,
            held,
        }
    }

    /// Moves partitions until no member could take one from a member with two or more
    /// partitions more. Each move lowers the sum of squared loads, so this ends.
    fn run(&mut self, sticky: &Sticky, origin: &[Option<usize>]) {
        // Moving a partition that arrived in this rebalance costs no stickiness (and, for
        // the cooperative assignor, no revocation), so exhaust those moves first.
        while let Some((pid, from, to)) = self
            .find_move(sticky, origin, true)
            .or_else(|| self.find_move(sticky, origin, false))
        {
            self.apply(sticky, origin, pid, from, to);
        }
    }

    /// The most loaded donor with a partition some member two or more partitions lighter
    /// subscribes to; that lightest member; and the partition: one going back to it if
    /// any, else one the donor did not own before, else the lowest.
    fn find_move(
        &self,
        sticky: &Sticky,
        origin: &[Option<usize>],
        only_fresh: bool,
    ) -> Option<(usize, usize, usize)> {
        for &(load_a, a) in self.by_load.iter().rev() {
            if load_a < 2 {
                return None;
            }
            let mut best: Option<((usize, usize), usize)> = None;
            for (&t, held) in &self.held[a] {
                if only_fresh && held.fresh.is_empty() {
                    continue;
                }
                let Some(&(load_b, b)) = self.topic_load[t].first() else {
                    continue;
                };
                let lighter = match best {
                    Some((lightest, _)) => (load_b, b) < lightest,
                    None => true,
                };
                if load_b + 2 <= load_a && lighter {
                    best = Some(((load_b, b), t));
                }
            }
            let Some(((_, b), t)) = best else { continue };
            let held = &self.held[a][&t];
            let back_to_b = |p: &usize| origin[*p] == Some(b) || sticky.runner_up[*p] == Some(b);
            let pid = held
                .fresh
                .iter()
                .copied()
                .find(back_to_b)
                .or_else(|| held.fresh.first().copied())
                .or_else(|| held.kept_contested.iter().copied().find(back_to_b))
                .or_else(|| held.kept.first().copied())?;
            return Some((pid, a, b));
        }
        None
    }

    fn apply(
        &mut self,
        sticky: &Sticky,
        origin: &[Option<usize>],
        pid: usize,
        from: usize,
        to: usize,
    ) {
        let t = sticky.topic_of[pid];
        if let Some(held) = self.held[from].get_mut(&t) {
            held.fresh.remove(&pid);
            held.kept.remove(&pid);
            held.kept_contested.remove(&pid);
            if held.is_empty() {
                self.held[from].remove(&t);
            }
        }
        let held = self.held[to].entry(t).or_default();
        if origin[pid] == Some(to) {
            held.kept.insert(pid);
            if sticky.runner_up[pid].is_some() {
                held.kept_contested.insert(pid);
            }
        } else {
            held.fresh.insert(pid);
        }
        self.set_load(sticky, from, self.load[from] - 1);
        self.set_load(sticky, to, self.load[to] + 1);
    }

    fn set_load(&mut self, sticky: &Sticky, m: usize, load: usize) {
        self.by_load.remove(&(self.load[m], m));
        self.by_load.insert((load, m));
        for &t in &sticky.subscribed[m] {
            self.topic_load[t].remove(&(self.load[m], m));
            self.topic_load[t].insert((load, m));
        }
        self.load[m] = load;
    }
}

/// The sticky assignment shared by the sticky and cooperative-sticky assignors. `data`
/// is each member's ownership, in the order of `members`; input already validated.
pub(crate) fn assign_sticky(
    members: &[Member],
    partitions: &BTreeMap<String, i32>,
    data: &[MemberData],
    cooperative: bool,
) -> GroupAssignment {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| java_order(&members[a].id, &members[b].id));
    let sorted: Vec<&Member> = order.iter().map(|&i| &members[i]).collect();
    let sorted_data: Vec<&MemberData> = order.iter().map(|&i| &data[i]).collect();

    let mut sticky = Sticky::new(&sorted, &sorted_data, partitions);
    sticky.run();
    if cooperative && sticky.withhold_transfers() {
        sticky.settle(&sorted, partitions);
    }
    sorted
        .iter()
        .enumerate()
        .map(|(m, member)| (member.id.clone(), sticky.partitions_of(m)))
        .collect()
}

/// Test helpers shared with the cooperative-sticky tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::super::testing::*;
    use super::*;

    /// The Java balance rule: counts within one, or no member could take a partition
    /// from a member with two or more partitions more.
    pub(crate) fn check_sticky_balance(members: &[Member], assignment: &GroupAssignment) {
        for a in members {
            for b in members {
                let (na, nb) = (assignment[&a.id].len(), assignment[&b.id].len());
                if na >= nb + 2 {
                    let movable = assignment[&a.id]
                        .iter()
                        .find(|p| b.subscription.topics.iter().any(|t| **t == *p.topic));
                    assert!(
                        movable.is_none(),
                        "{movable:?} could move from {} ({na}) to {} ({nb})",
                        a.id,
                        b.id
                    );
                }
            }
        }
    }

    /// Members, partition counts, and each member's previous partitions and generation.
    pub(crate) type RandomGroup = (
        Vec<Member>,
        BTreeMap<String, i32>,
        Vec<(Vec<TopicPartition>, i32)>,
    );

    /// Random groups: member subscriptions over topics `t0`, `t1`, ... (one per entry of
    /// `sizes`, every topic when `identical`), partition counts, and a random previous
    /// ownership `(member, topic, partition)` (partitions may not exist) with generations.
    pub(crate) fn random_group(
        subs: &[BTreeSet<usize>],
        sizes: &[i32],
        owned: &[(usize, usize, i32)],
        generations: &[i32],
        identical: bool,
    ) -> RandomGroup {
        let topics: Vec<String> = (0..sizes.len()).map(|t| format!("t{t}")).collect();
        let partitions: BTreeMap<String, i32> =
            topics.iter().cloned().zip(sizes.iter().copied()).collect();
        let members: Vec<Member> = subs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let names: Vec<&str> = if identical {
                    topics.iter().map(String::as_str).collect()
                } else {
                    s.iter()
                        .map(|&t| topics[t % topics.len()].as_str())
                        .collect()
                };
                member(&format!("m{i:02}"), &names)
            })
            .collect();
        let mut previous: Vec<(Vec<TopicPartition>, i32)> = (0..members.len())
            .map(|i| (Vec::new(), generations.get(i).copied().unwrap_or(1)))
            .collect();
        if !members.is_empty() {
            for &(m, t, p) in owned {
                previous[m % members.len()]
                    .0
                    .push(tp(&topics[t % topics.len()], p));
            }
        }
        (members, partitions, previous)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::testing::*;
    use super::*;
    use proptest::prelude::*;

    /// A member whose user data says it owned `owned` in `generation` (how Java's tests
    /// build StickyAssignor subscriptions).
    fn with_history(
        id: &str,
        topics: &[&str],
        owned: &[TopicPartition],
        generation: i32,
    ) -> Member {
        let mut m = member(id, topics);
        m.subscription.user_data = StickyAssignor.subscription_user_data(owned, generation);
        m
    }

    #[test]
    fn user_data_matches_the_java_schema() {
        // [ "t" : [0, 2] ] generation 5, grouped and sorted:
        //   array of 1            00 00 00 01
        //   topic "t"             00 01 74
        //   partitions [0, 2]     00 00 00 02 00 00 00 00 00 00 00 02
        //   generation 5          00 00 00 05
        let bytes = StickyAssignor
            .subscription_user_data(&[tp("t", 2), tp("t", 0)], 5)
            .unwrap();
        let expected: &[u8] = &[
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 5,
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(
            decode_user_data(expected),
            Some(MemberData {
                owned: vec![tp("t", 0), tp("t", 2)],
                generation: Some(5)
            })
        );
        // V0 (no generation), from clients before KIP-341.
        assert_eq!(
            decode_user_data(&expected[..expected.len() - 4]),
            Some(MemberData {
                owned: vec![tp("t", 0), tp("t", 2)],
                generation: None
            })
        );
        // Nothing before the first assignment.
        assert_eq!(StickyAssignor.subscription_user_data(&[], -1), None);
        // Garbage, and a count larger than the input.
        assert_eq!(decode_user_data(&[1, 2, 3]), None);
        assert_eq!(decode_user_data(&[0x7f, 0xff, 0xff, 0xff, 0, 0]), None);
    }

    #[test]
    fn member_data_prefers_user_data() {
        // StickyAssignorTest.testMemberDataWillHonorUserData / ...WithInconsistentData
        let mut s = Subscription::new(["t"]);
        s.user_data = StickyAssignor.subscription_user_data(&[tp("t", 1)], 4);
        s.owned_partitions = vec![tp("t", 0)];
        s.generation = Some(5);
        assert_eq!(
            member_data(&s),
            MemberData {
                owned: vec![tp("t", 1)],
                generation: Some(4)
            }
        );
        // Without user data, the subscription's fields (what librdkafka reads).
        s.user_data = None;
        assert_eq!(
            member_data(&s),
            MemberData {
                owned: vec![tp("t", 0)],
                generation: Some(5)
            }
        );
        // Unreadable user data: nothing owned, default generation.
        s.user_data = Some(Bytes::from_static(b"\x01"));
        assert_eq!(
            member_data(&s),
            MemberData {
                owned: vec![],
                generation: Some(-1)
            }
        );
    }

    #[test]
    fn javadoc_example_1() {
        // Three consumers, four topics of two partitions each, all subscribed to all.
        let topics = ["t0", "t1", "t2", "t3"];
        let partitions = counts(&[("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)]);
        let members = [
            member("C0", &topics),
            member("C1", &topics),
            member("C2", &topics),
        ];
        let got = StickyAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(got["C0"], tps(&["t0p0", "t1p1", "t3p0"]));
        assert_eq!(got["C1"], tps(&["t0p1", "t2p0", "t3p1"]));
        assert_eq!(got["C2"], tps(&["t1p0", "t2p1"]));

        // C1 leaves: everything C0 and C2 had stays put; C1's three partitions are
        // shared out. (The javadoc shows [t0p0, t1p1, t3p0, t2p0] / [t1p0, t2p1, t0p1,
        // t3p1], from the pre-2.8 algorithm; Java's current code deals C1's partitions
        // round-robin in partition order, as we do.)
        let members = [
            with_history("C0", &topics, &got["C0"], 1),
            with_history("C2", &topics, &got["C2"], 1),
        ];
        let next = StickyAssignor.assign(&members, &partitions).unwrap();
        assert!(set(&next["C0"]).is_superset(&set(&got["C0"])));
        assert!(set(&next["C2"]).is_superset(&set(&got["C2"])));
        assert_eq!(next["C0"], tps(&["t0p0", "t0p1", "t1p1", "t3p0"]));
        assert_eq!(next["C2"], tps(&["t1p0", "t2p0", "t2p1", "t3p1"]));
    }

    #[test]
    fn javadoc_example_2() {
        // C0 subscribes to t0; C1 to t0, t1; C2 to t0, t1, t2 (1, 2 and 3 partitions).
        let partitions = counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let members = [
            member("C0", &["t0"]),
            member("C1", &["t0", "t1"]),
            member("C2", &["t0", "t1", "t2"]),
        ];
        let got = StickyAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(got["C0"], tps(&["t0p0"]));
        assert_eq!(got["C1"], tps(&["t1p0", "t1p1"]));
        assert_eq!(got["C2"], tps(&["t2p0", "t2p1", "t2p2"]));

        // C0 leaves: C1 [t1p0, t1p1, t0p0], C2 [t2p0, t2p1, t2p2], as the javadoc says.
        let members = [
            with_history("C1", &["t0", "t1"], &got["C1"], 1),
            with_history("C2", &["t0", "t1", "t2"], &got["C2"], 1),
        ];
        let next = StickyAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(set(&next["C1"]), set(&tps(&["t1p0", "t1p1", "t0p0"])));
        assert_eq!(set(&next["C2"]), set(&tps(&["t2p0", "t2p1", "t2p2"])));
    }

    #[test]
    fn java_unit_test_cases() {
        struct Case {
            name: &'static str,
            members: Vec<Member>,
            partitions: BTreeMap<String, i32>,
            expected: Vec<(&'static str, Vec<TopicPartition>)>,
        }
        let t = ["topic"];
        let t12 = ["topic1", "topic2"];
        let cases = vec![
            Case {
                name: "testTwoConsumersOneTopicTwoPartitions",
                members: vec![member("consumer1", &t), member("consumer2", &t)],
                partitions: counts(&[("topic", 2)]),
                expected: vec![
                    ("consumer1", vec![tp("topic", 0)]),
                    ("consumer2", vec![tp("topic", 1)]),
                ],
            },
            Case {
                name: "testMultipleConsumersMixedTopicSubscriptions",
                members: vec![
                    member("consumer1", &["topic1"]),
                    member("consumer2", &["topic1", "topic2"]),
                    member("consumer3", &["topic1"]),
                ],
                partitions: counts(&[("topic1", 3), ("topic2", 2)]),
                expected: vec![
                    ("consumer1", vec![tp("topic1", 0), tp("topic1", 2)]),
                    ("consumer2", vec![tp("topic2", 0), tp("topic2", 1)]),
                    ("consumer3", vec![tp("topic1", 1)]),
                ],
            },
            Case {
                name: "testTwoConsumersTwoTopicsSixPartitions",
                members: vec![member("consumer1", &t12), member("consumer2", &t12)],
                partitions: counts(&[("topic1", 3), ("topic2", 3)]),
                expected: vec![
                    (
                        "consumer1",
                        vec![tp("topic1", 0), tp("topic1", 2), tp("topic2", 1)],
                    ),
                    (
                        "consumer2",
                        vec![tp("topic1", 1), tp("topic2", 0), tp("topic2", 2)],
                    ),
                ],
            },
            Case {
                // Two members claim topic-0 in the same generation: neither keeps it.
                name: "testAllConsumersHaveOwnedPartitionInvalidated...EqualPartitionsPerConsumer",
                members: vec![
                    with_history("consumer1", &t, &[tp("topic", 0), tp("topic", 1)], 1),
                    with_history("consumer2", &t, &[tp("topic", 0), tp("topic", 2)], 1),
                    with_history("consumer3", &t, &[], 1),
                ],
                partitions: counts(&[("topic", 3)]),
                expected: vec![
                    ("consumer1", vec![tp("topic", 1)]),
                    ("consumer2", vec![tp("topic", 2)]),
                    ("consumer3", vec![tp("topic", 0)]),
                ],
            },
            Case {
                name:
                    "testAllConsumersHaveOwnedPartitionInvalidated...UnequalPartitionsPerConsumer",
                members: vec![
                    with_history("consumer1", &t, &[tp("topic", 0), tp("topic", 1)], 1),
                    with_history("consumer2", &t, &[tp("topic", 0), tp("topic", 2)], 1),
                    with_history("consumer3", &t, &[], 1),
                ],
                partitions: counts(&[("topic", 4)]),
                expected: vec![
                    ("consumer1", vec![tp("topic", 1), tp("topic", 3)]),
                    ("consumer2", vec![tp("topic", 2)]),
                    ("consumer3", vec![tp("topic", 0)]),
                ],
            },
            Case {
                name: "testConsumerOwningMinQuotaExpectedMaxQuota",
                members: vec![
                    with_history("consumer1", &t12, &[tp("topic1", 0), tp("topic2", 1)], 1),
                    with_history("consumer2", &t12, &[tp("topic1", 1), tp("topic2", 2)], 1),
                ],
                partitions: counts(&[("topic1", 2), ("topic2", 3)]),
                expected: vec![
                    (
                        "consumer1",
                        vec![tp("topic1", 0), tp("topic2", 0), tp("topic2", 1)],
                    ),
                    ("consumer2", vec![tp("topic1", 1), tp("topic2", 2)]),
                ],
            },
            Case {
                name: "testAllConsumersAreUnderMinQuota",
                members: vec![
                    with_history("consumer1", &t12, &[tp("topic1", 0)], 1),
                    with_history("consumer2", &t12, &[tp("topic1", 1)], 1),
                    with_history("consumer3", &t12, &[], 1),
                ],
                partitions: counts(&[("topic1", 2), ("topic2", 3)]),
                expected: vec![
                    ("consumer1", vec![tp("topic1", 0), tp("topic2", 1)]),
                    ("consumer2", vec![tp("topic1", 1), tp("topic2", 2)]),
                    ("consumer3", vec![tp("topic2", 0)]),
                ],
            },
            Case {
                name: "testAllConsumersReachExpectedQuotaAndAreConsideredFilled",
                members: vec![
                    with_history("consumer1", &t, &[tp("topic", 0), tp("topic", 1)], 1),
                    with_history("consumer2", &t, &[tp("topic", 2)], 1),
                    with_history("consumer3", &t, &[], 1),
                ],
                partitions: counts(&[("topic", 4)]),
                expected: vec![
                    ("consumer1", vec![tp("topic", 0), tp("topic", 1)]),
                    ("consumer2", vec![tp("topic", 2)]),
                    ("consumer3", vec![tp("topic", 3)]),
                ],
            },
            Case {
                // A stale generation loses every conflict.
                name: "testOwnedPartitionsAreInvalidatedForConsumerWithStaleGeneration",
                members: vec![
                    with_history(
                        "consumer1",
                        &["topic", "topic2"],
                        &tps(&["topicp0", "topicp2", "topic2p1"]),
                        10,
                    ),
                    with_history(
                        "consumer2",
                        &["topic", "topic2"],
                        &tps(&["topicp0", "topicp2", "topic2p1"]),
                        9,
                    ),
                ],
                partitions: counts(&[("topic", 3), ("topic2", 3)]),
                expected: vec![
                    ("consumer1", tps(&["topicp0", "topicp2", "topic2p1"])),
                    ("consumer2", tps(&["topicp1", "topic2p0", "topic2p2"])),
                ],
            },
            Case {
                name: "testEnsurePartitionsAssignedToHighestGeneration",
                members: vec![
                    with_history(
                        "consumer1",
                        &["t", "t2", "t3"],
                        &tps(&["tp0", "t2p0", "t3p0"]),
                        10,
                    ),
                    with_history(
                        "consumer2",
                        &["t", "t2", "t3"],
                        &tps(&["tp1", "t2p1", "t3p1"]),
                        9,
                    ),
                    with_history(
                        "consumer3",
                        &["t", "t2", "t3"],
                        &tps(&["t2p1", "t3p0", "t3p2"]),
                        8,
                    ),
                ],
                partitions: counts(&[("t", 3), ("t2", 3), ("t3", 3)]),
                expected: vec![
                    ("consumer1", tps(&["tp0", "t2p0", "t3p0"])),
                    ("consumer2", tps(&["tp1", "t2p1", "t3p1"])),
                    ("consumer3", tps(&["tp2", "t2p2", "t3p2"])),
                ],
            },
            Case {
                name: "testNoReassignmentOnCurrentMembers",
                members: vec![
                    with_history("consumer1", &["t", "t1", "t2", "t3"], &[], -1),
                    with_history(
                        "consumer2",
                        &["t", "t1", "t2", "t3"],
                        &tps(&["tp0", "t2p0", "t1p0"]),
                        9,
                    ),
                    with_history(
                        "consumer3",
                        &["t", "t1", "t2", "t3"],
                        &tps(&["t3p2", "t2p2", "t1p1"]),
                        8,
                    ),
                    with_history(
                        "consumer4",
                        &["t", "t1", "t2", "t3"],
                        &tps(&["t3p1", "tp1", "tp2"]),
                        7,
                    ),
                ],
                partitions: counts(&[("t", 3), ("t1", 3), ("t2", 3), ("t3", 3)]),
                expected: vec![("consumer1", tps(&["t1p2", "t2p1", "t3p0"]))],
            },
            Case {
                name: "testOwnedPartitionsAreInvalidatedForConsumerWithMultipleGeneration",
                members: vec![
                    with_history("consumer1", &["t", "t2"], &tps(&["tp0", "t2p1", "tp1"]), 10),
                    with_history("consumer2", &["t", "t2"], &tps(&["tp0", "t2p1", "t2p2"]), 8),
                ],
                partitions: counts(&[("t", 3), ("t2", 3)]),
                expected: vec![
                    ("consumer1", tps(&["tp0", "t2p1", "tp1"])),
                    ("consumer2", tps(&["tp2", "t2p2", "t2p0"])),
                ],
            },
        ];
        for case in cases {
            let got = StickyAssignor
                .assign(&case.members, &case.partitions)
                .unwrap();
            check_complete(&case.members, &case.partitions, &got);
            check_sticky_balance(&case.members, &got);
            for (id, expected) in &case.expected {
                assert_eq!(set(&got[*id]), set(expected), "{}: {id}", case.name);
            }
        }
    }

    #[test]
    fn quota_for_more_owners_at_max_than_needed() {
        // testMaxQuotaConsumerMoreThanNumExpectedMaxCapacityMembers: both owners hold two
        // partitions, only one may keep two. Java's pick depends on HashMap order; ours
        // keeps the member that sorts first at the max quota. Either way three partitions
        // stay and one moves to consumer3.
        let t12 = ["topic1", "topic2"];
        let members = [
            with_history("consumer1", &t12, &[tp("topic1", 0), tp("topic2", 0)], 1),
            with_history("consumer2", &t12, &[tp("topic1", 1), tp("topic2", 1)], 1),
            with_history("consumer3", &t12, &[], 1),
        ];
        let partitions = counts(&[("topic1", 2), ("topic2", 2)]);
        let got = StickyAssignor.assign(&members, &partitions).unwrap();
        assert_eq!(got["consumer1"], vec![tp("topic1", 0), tp("topic2", 0)]);
        assert_eq!(got["consumer2"], vec![tp("topic1", 1)]);
        assert_eq!(got["consumer3"], vec![tp("topic2", 1)]);
    }

    #[test]
    fn conflicting_previous_generations_in_the_general_case() {
        // StickyAssignorTest.testAssignmentWithConflictingPreviousGenerations, different
        // subscriptions: consumer1 (generation 1) loses all four claims, then gets topic's
        // four partitions back through rebalancing.
        let partitions = counts(&[("topic", 4), ("topic2", 4), ("topic3", 4)]);
        let c2_before = tps(&[
            "topicp0", "topicp1", "topic2p0", "topic2p1", "topic2p2", "topic2p3",
        ]);
        let c3_before = tps(&[
            "topicp2", "topicp3", "topic3p0", "topic3p1", "topic3p2", "topic3p3",
        ]);
        let members = [
            with_history(
                "consumer1",
                &["topic"],
                &tps(&["topicp0", "topicp1", "topicp2", "topicp3"]),
                1,
            ),
            with_history("consumer2", &["topic", "topic2"], &c2_before, 2),
            with_history("consumer3", &["topic", "topic2", "topic3"], &c3_before, 2),
        ];
        let got = StickyAssignor.assign(&members, &partitions).unwrap();
        check_complete(&members, &partitions, &got);
        assert!(got.values().all(|v| v.len() == 4), "{got:?}");
        assert!(set(&c2_before).is_superset(&set(&got["consumer2"])));
        assert!(set(&c3_before).is_superset(&set(&got["consumer3"])));
    }

    #[test]
    fn schema_backward_compatibility() {
        // StickyAssignorTest.testSchemaBackwardCompatibility: one member sends V0 user data.
        let t = ["topic"];
        let v0 = encode_user_data(&[tp("topic", 1)], None);
        let members = [
            with_history("consumer1", &t, &[tp("topic", 0), tp("topic", 2)], 1),
            Member::new(
                "consumer2",
                Subscription {
                    user_data: v0,
                    ..Subscription::new(t)
                },
            ),
            member("consumer3", &t),
        ];
        let partitions = counts(&[("topic", 3)]);
        let got = StickyAssignor.assign(&members, &partitions).unwrap();
        assert!(got.values().all(|v| v.len() == 1));
        assert!(set(&[tp("topic", 0), tp("topic", 2)]).is_superset(&set(&got["consumer1"])));
        assert_eq!(got["consumer2"], vec![tp("topic", 1)]);
    }

    /// Feeds each member's assignment back as its history, at `generation`.
    fn next_round(
        members: &[Member],
        assignment: &GroupAssignment,
        generation: i32,
    ) -> Vec<Member> {
        members
            .iter()
            .map(|m| {
                let topics: Vec<&str> = m.subscription.topics.iter().map(String::as_str).collect();
                with_history(&m.id, &topics, &assignment[&m.id], generation)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn prop_valid_complete_balanced(
            subs in proptest::collection::vec(proptest::collection::btree_set(0..4usize, 0..4), 0..7),
            sizes in proptest::collection::vec(0..9i32, 4),
            owned in proptest::collection::vec((0..7usize, 0..4usize, -1..10i32), 0..20),
            generations in proptest::collection::vec(-1..4i32, 7),
            identical in any::<bool>(),
        ) {
            let (members, partitions, previous) = random_group(&subs, &sizes, &owned, &generations, identical);
            let members: Vec<Member> = members
                .iter()
                .zip(&previous)
                .map(|(m, (owned, generation))| {
                    let topics: Vec<&str> = m.subscription.topics.iter().map(String::as_str).collect();
                    with_history(&m.id, &topics, owned, *generation)
                })
                .collect();
            let got = StickyAssignor.assign(&members, &partitions).unwrap();
            check_complete(&members, &partitions, &got);
            check_sticky_balance(&members, &got);
            if identical {
                check_balanced(&got);
            }

            // Same members, previous assignment = this one: nothing moves.
            let again = StickyAssignor.assign(&next_round(&members, &got, 5), &partitions).unwrap();
            prop_assert_eq!(&again, &got);
        }

        #[test]
        fn prop_when_a_member_leaves_only_its_partitions_move(
            n_members in 2..8usize,
            sizes in proptest::collection::vec(0..12i32, 1..4),
            leaver in any::<prop::sample::Index>(),
        ) {
            let topics: Vec<String> = (0..sizes.len()).map(|t| format!("t{t}")).collect();
            let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            let partitions: BTreeMap<String, i32> = topics.iter().cloned().zip(sizes).collect();
            let members: Vec<Member> = (0..n_members).map(|i| member(&format!("m{i}"), &refs)).collect();
            let first = StickyAssignor.assign(&members, &partitions).unwrap();

            let mut rest = next_round(&members, &first, 1);
            let gone = rest.remove(leaver.index(n_members));
            let second = StickyAssignor.assign(&rest, &partitions).unwrap();
            check_complete(&rest, &partitions, &second);
            check_balanced(&second);
            for m in &rest {
                prop_assert!(set(&second[&m.id]).is_superset(&set(&first[&m.id])), "{} lost partitions", m.id);
            }
            // And what moved is exactly what the leaver had.
            let moved: usize = rest.iter().map(|m| second[&m.id].len() - first[&m.id].len()).sum();
            prop_assert_eq!(moved, first[&gone.id].len());
        }

        #[test]
        fn prop_balanced_previous_assignment_is_kept(
            n_members in 1..7usize,
            sizes in proptest::collection::vec(1..10i32, 1..4),
            seed in proptest::collection::vec(any::<u32>(), 40),
        ) {
            // Any balanced dealing of the partitions (not just ours) is kept as it is.
            let topics: Vec<String> = (0..sizes.len()).map(|t| format!("t{t}")).collect();
            let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            let partitions: BTreeMap<String, i32> = topics.iter().cloned().zip(sizes.iter().copied()).collect();
            let mut all: Vec<TopicPartition> =
                topics.iter().zip(&sizes).flat_map(|(t, &n)| (0..n).map(move |p| tp(t, p))).collect();
            for i in (1..all.len()).rev() {
                let j = seed[i % seed.len()] as usize % (i + 1);
                all.swap(i, j);
            }
            let mut previous: GroupAssignment = (0..n_members).map(|i| (format!("m{i}"), Vec::new())).collect();
            for (i, p) in all.into_iter().enumerate() {
                previous.get_mut(&format!("m{}", i % n_members)).unwrap().push(p);
            }
            let members: Vec<Member> = (0..n_members).map(|i| member(&format!("m{i}"), &refs)).collect();
            let got = StickyAssignor.assign(&next_round(&members, &previous, 3), &partitions).unwrap();
            for (id, owned) in &previous {
                prop_assert_eq!(set(&got[id]), set(owned));
            }
        }
    }
}
