//! The consumer group protocol's (KIP-848) state machine on a fake clock:
//! every test drives `Coordinator` directly with explicit instants and a
//! topic snapshot, as the ConsumerGroupHeartbeat handler would.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::*;
use crate::group::{
    CommitRequest, Coordinator, GroupConfig, GroupState, JoinRequest, OffsetToCommit, Outcome,
    Protocol, TxnCommitRequest, COORDINATOR_LOAD_IN_PROGRESS, GROUP_ID_NOT_FOUND,
    ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, NONE, NON_EMPTY_GROUP, NOT_COORDINATOR,
};

const NODE: i32 = 1;
const GROUP: &str = "g";
const SESSION: Duration = Duration::from_millis(1_000);
const REBALANCE_MS: i32 = 3_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn tid(n: u64) -> Uuid {
    Uuid::from_u64_pair(7, n)
}

fn parts(list: &[(&str, i32)]) -> Partitions {
    list.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
}

fn of(topic: &str, partitions: &[i32]) -> Partitions {
    partitions.iter().map(|p| (topic.to_owned(), *p)).collect()
}

/// A coordinator on a clock the test moves, with the cluster's topics.
struct Harness {
    coordinator: Coordinator,
    now: Instant,
    topics: Topics,
}

impl Harness {
    fn new() -> Self {
        let config = GroupConfig {
            consumer_session_timeout: SESSION,
            consumer_heartbeat_interval: ms(100),
            ..GroupConfig::default()
        };
        let mut h = Harness {
            coordinator: Coordinator::new(vec![NODE, 2], config),
            now: Instant::now(),
            topics: Topics::new(),
        };
        h.topic("t", 1, 6);
        // Every group of these tests lives on NODE.
        h.coordinator.move_coordinator(h.now, GROUP, NODE);
        h
    }

    fn topic(&mut self, name: &str, id: u64, partitions: i32) {
        let meta = TopicMeta {
            id: tid(id),
            partitions,
        };
        self.topics.insert(name.to_owned(), meta);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.coordinator.tick(self.now);
    }

    /// A request as Josefine sends it: full (rebalance timeout, subscription
    /// and owned partitions) at epoch 0, `owned` otherwise when given.
    fn request(&self, member: &str, epoch: i32, owned: Option<&Partitions>) -> HeartbeatRequest {
        let full = epoch == 0;
        HeartbeatRequest {
            group_id: GROUP.to_owned(),
            member_id: member.to_owned(),
            member_epoch: epoch,
            rebalance_timeout_ms: if full { REBALANCE_MS } else { -1 },
            subscribed_topic_names: full.then(|| vec!["t".to_owned()]),
            owned: if full {
                Some(Vec::new())
            } else {
                owned.map(|o| self.by_id(o))
            },
            client_id: "client".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            version: 1,
            ..HeartbeatRequest::default()
        }
    }

    fn by_id(&self, owned: &Partitions) -> Vec<(Uuid, Vec<i32>)> {
        let mut out: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in owned {
            out.entry(self.topics[topic].id)
                .or_default()
                .push(*partition);
        }
        out.into_iter().collect()
    }

    fn send(&mut self, request: HeartbeatRequest) -> Result<HeartbeatResponse, Failure> {
        let topics = self.topics.clone();
        let answer = self
            .coordinator
            .consumer_heartbeat(NODE, self.now, request, &topics);
        self.coordinator.tick(self.now);
        answer
    }

    fn heartbeat(
        &mut self,
        member: &str,
        epoch: i32,
        owned: Option<&Partitions>,
    ) -> Result<HeartbeatResponse, Failure> {
        let request = self.request(member, epoch, owned);
        self.send(request)
    }

    fn join(&mut self, member: &str) -> HeartbeatResponse {
        self.heartbeat(member, 0, None).expect("joined")
    }

    fn code(&mut self, member: &str, epoch: i32, owned: Option<&Partitions>) -> i16 {
        match self.heartbeat(member, epoch, owned) {
            Ok(_) => NONE,
            Err(f) => f.code,
        }
    }

    fn leave(
        &mut self,
        member: &str,
        epoch: i32,
        instance: Option<&str>,
    ) -> Result<HeartbeatResponse, Failure> {
        let request = HeartbeatRequest {
            instance_id: instance.map(str::to_owned),
            ..self.request(member, epoch, None)
        };
        self.send(request)
    }

    fn epoch(&self) -> i32 {
        self.coordinator
            .consumer_group_epoch(GROUP)
            .expect("the group exists")
    }

    fn state(&self) -> GroupState {
        self.coordinator.state(GROUP)
    }

    fn assigned(&self, member: &str) -> Partitions {
        self.coordinator
            .consumer_group_members(GROUP)
            .into_iter()
            .find(|(id, _, _)| id == member)
            .map(|(_, _, a)| a.into_iter().collect())
            .unwrap_or_default()
    }

    fn overlaps(&self) -> Vec<String> {
        self.coordinator.consumer_group_overlaps(GROUP)
    }

    fn commit(&mut self, member: &str, epoch: i32, version: i16) -> Result<Vec<i16>, i16> {
        let request = CommitRequest {
            group_id: GROUP.to_owned(),
            member_id: member.to_owned(),
            instance_id: None,
            generation: epoch,
            version,
            offsets: vec![OffsetToCommit {
                topic: "t".to_owned(),
                partition: 0,
                offset: 42,
                leader_epoch: -1,
                metadata: None,
            }],
        };
        self.coordinator.commit(NODE, self.now, &request)
    }

    /// A alone with all six partitions at epoch 1, B joined at epoch 2: A is
    /// asked to give three back. Returns A's and B's answers.
    fn a_then_b(&mut self) -> (HeartbeatResponse, HeartbeatResponse) {
        let a = self.join("a");
        assert_eq!(
            (a.member_epoch, a.assignment.clone()),
            (1, Some(of("t", &[0, 1, 2, 3, 4, 5])))
        );
        let b = self.join("b");
        assert_eq!(b.member_epoch, 2, "b moves to the group epoch at once");
        assert_eq!(
            b.assignment,
            Some(Partitions::new()),
            "a still holds everything"
        );
        (a, b)
    }
}

#[test]
fn the_first_member_gets_every_partition_and_the_group_is_stable() {
    let mut h = Harness::new();
    let a = h.join("a");
    assert_eq!(a.member_id, "a");
    assert_eq!(a.member_epoch, 1);
    assert_eq!(a.heartbeat_interval_ms, 100);
    assert_eq!(a.assignment, Some(of("t", &[0, 1, 2, 3, 4, 5])));
    assert_eq!(h.epoch(), 1);
    assert_eq!(h.state(), GroupState::Stable);
    // A lean heartbeat: nothing changed, no assignment in the answer.
    let again = h.heartbeat("a", 1, None).unwrap();
    assert_eq!((again.member_epoch, again.assignment), (1, None));
}

#[test]
fn partitions_move_only_after_their_owner_reports_them_gone() {
    let mut h = Harness::new();
    h.a_then_b();
    assert_eq!(h.state(), GroupState::Reconciling);
    // A learns it must revoke three; it stays at epoch 1.
    let all = of("t", &[0, 1, 2, 3, 4, 5]);
    let a = h.heartbeat("a", 1, Some(&all)).unwrap();
    assert_eq!(a.member_epoch, 1);
    let kept = a.assignment.expect("changed, so sent");
    assert_eq!(kept.len(), 3);
    // A lean heartbeat counts as still owning them: nothing moves.
    assert_eq!(h.heartbeat("a", 1, None).unwrap().member_epoch, 1);
    let b = h.heartbeat("b", 2, Some(&Partitions::new())).unwrap();
    assert_eq!(
        b.assignment, None,
        "nothing free yet: unchanged, so not sent"
    );
    // A reports the three gone: it moves to epoch 2.
    let a = h.heartbeat("a", 1, Some(&kept)).unwrap();
    assert_eq!((a.member_epoch, a.assignment), (2, None));
    // B gets them at its next heartbeat.
    let b = h.heartbeat("b", 2, None).unwrap();
    let freed: Partitions = all.difference(&kept).cloned().collect();
    assert_eq!(b.assignment, Some(freed.clone()));
    h.heartbeat("b", 2, Some(&freed)).unwrap();
    assert_eq!(h.state(), GroupState::Stable);
    assert!(h.overlaps().is_empty(), "{:?}", h.overlaps());
}

#[test]
fn a_replayed_heartbeat_with_the_previous_epoch_is_accepted() {
    let mut h = Harness::new();
    h.a_then_b();
    let all = of("t", &[0, 1, 2, 3, 4, 5]);
    let kept = h.heartbeat("a", 1, Some(&all)).unwrap().assignment.unwrap();
    // The answer moving A to epoch 2 is lost; A sends its epoch-1 heartbeat
    // again, full, with what it owns.
    assert_eq!(h.heartbeat("a", 1, Some(&kept)).unwrap().member_epoch, 2);
    let replay = HeartbeatRequest {
        rebalance_timeout_ms: REBALANCE_MS,
        subscribed_topic_names: Some(vec!["t".to_owned()]),
        ..h.request("a", 1, Some(&kept))
    };
    let replay = h.send(replay).unwrap();
    assert_eq!(
        (replay.member_epoch, replay.assignment),
        (2, Some(kept.clone())),
        "a full request gets the assignment"
    );
    // Not without owned partitions, nor owning more than assigned.
    assert_eq!(h.code("a", 1, None), FENCED_MEMBER_EPOCH);
    assert_eq!(h.code("a", 1, Some(&all)), FENCED_MEMBER_EPOCH);
    // An epoch from the future, or older than the previous one, is fenced.
    assert_eq!(h.code("a", 3, Some(&kept)), FENCED_MEMBER_EPOCH);
    // Nothing was lost: A is still at epoch 2.
    assert_eq!(h.heartbeat("a", 2, Some(&kept)).unwrap().member_epoch, 2);
}

#[test]
fn a_replayed_join_is_the_same_member() {
    let mut h = Harness::new();
    let first = h.join("a");
    // The answer was lost: the member joins again, same id, epoch 0.
    let again = h.join("a");
    assert_eq!(again, first);
    assert_eq!(h.epoch(), 1, "no second member, no bump");
    assert_eq!(h.coordinator.consumer_group_members(GROUP).len(), 1);
}

#[test]
fn a_fenced_member_rejoins_from_scratch_with_its_member_id() {
    let mut h = Harness::new();
    h.join("a");
    assert!(h.coordinator.fence_consumer_group_member(GROUP, "a"));
    assert_eq!(h.code("a", 1, None), FENCED_MEMBER_EPOCH);
    assert_eq!(h.commit("a", 1, 9), Err(STALE_MEMBER_EPOCH));
    let rejoined = h.join("a");
    assert_eq!(
        rejoined.member_epoch, 2,
        "a new member: the group epoch goes up"
    );
    assert_eq!(rejoined.assignment, Some(of("t", &[0, 1, 2, 3, 4, 5])));
    assert_eq!(h.commit("a", 2, 9), Ok(vec![NONE]));
    assert!(!h.coordinator.fence_consumer_group_member(GROUP, "nobody"));
}

#[test]
fn unknown_members_and_malformed_requests_are_refused() {
    let mut h = Harness::new();
    h.join("a");
    assert_eq!(h.code("zombie", 3, None), UNKNOWN_MEMBER_ID);
    // v1: the client makes the member id.
    assert_eq!(h.code("", 0, None), INVALID_REQUEST);
    // v0: the broker makes one.
    let v0 = HeartbeatRequest {
        version: 0,
        ..h.request("", 0, None)
    };
    let answer = h.send(v0).unwrap();
    assert!(!answer.member_id.is_empty());
    let no_timeout = HeartbeatRequest {
        rebalance_timeout_ms: -1,
        ..h.request("c", 0, None)
    };
    assert_eq!(h.send(no_timeout).unwrap_err().code, INVALID_REQUEST);
    let owning = HeartbeatRequest {
        owned: Some(vec![(tid(1), vec![0])]),
        ..h.request("c", 0, None)
    };
    assert_eq!(h.send(owning).unwrap_err().code, INVALID_REQUEST);
    let no_subscription = HeartbeatRequest {
        subscribed_topic_names: None,
        ..h.request("c", 0, None)
    };
    assert_eq!(h.send(no_subscription).unwrap_err().code, INVALID_REQUEST);
    assert_eq!(h.code("a", -3, None), INVALID_REQUEST);
    let assignor = HeartbeatRequest {
        server_assignor: Some("sticky".to_owned()),
        ..h.request("c", 0, None)
    };
    assert_eq!(h.send(assignor).unwrap_err().code, UNSUPPORTED_ASSIGNOR);
    let regex = HeartbeatRequest {
        subscribed_topic_names: None,
        subscribed_topic_regex: Some("(".to_owned()),
        ..h.request("c", 0, None)
    };
    assert_eq!(h.send(regex).unwrap_err().code, INVALID_REGULAR_EXPRESSION);
    assert!(
        h.coordinator
            .consumer_group_members(GROUP)
            .iter()
            .all(|(id, ..)| id != "c"),
        "a refused join leaves nothing behind"
    );
}

#[test]
fn leaving_frees_the_partitions_and_bumps_the_epoch() {
    let mut h = Harness::new();
    h.a_then_b();
    let left = h.leave("a", LEAVE_EPOCH, None).unwrap();
    assert_eq!(left.member_epoch, LEAVE_EPOCH);
    assert_eq!(h.epoch(), 3);
    assert_eq!(h.state(), GroupState::Assigning);
    let b = h.heartbeat("b", 2, Some(&Partitions::new())).unwrap();
    assert_eq!(
        (b.member_epoch, b.assignment),
        (3, Some(of("t", &[0, 1, 2, 3, 4, 5])))
    );
    assert_eq!(
        h.leave("a", LEAVE_EPOCH, None).unwrap_err().code,
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_static_member_that_leaves_keeps_its_partitions_for_its_next_incarnation() {
    let mut h = Harness::new();
    let static_join = |h: &mut Harness, member: &str| {
        let request = HeartbeatRequest {
            instance_id: Some("box".to_owned()),
            ..h.request(member, 0, None)
        };
        h.send(request)
    };
    static_join(&mut h, "a1").unwrap();
    h.join("b");
    let all = of("t", &[0, 1, 2, 3, 4, 5]);
    let kept = h
        .heartbeat("a1", 1, Some(&all))
        .unwrap()
        .assignment
        .unwrap();
    h.heartbeat("a1", 1, Some(&kept)).unwrap();
    let b_share: Partitions = all.difference(&kept).cloned().collect();
    h.heartbeat("b", 2, None).unwrap();
    // While a1 is alive, its instance id cannot be taken.
    assert_eq!(
        static_join(&mut h, "a2").unwrap_err().code,
        UNRELEASED_INSTANCE_ID
    );
    let left = h.leave("a1", STATIC_LEAVE_EPOCH, Some("box")).unwrap();
    assert_eq!(left.member_epoch, STATIC_LEAVE_EPOCH);
    assert_eq!(h.epoch(), 2, "a temporary leave moves nothing");
    // B does not get a1's partitions meanwhile.
    h.heartbeat("b", 2, Some(&b_share)).unwrap();
    assert_eq!(h.assigned("b"), b_share);
    // The next incarnation takes them over, at the same group epoch.
    let a2 = static_join(&mut h, "a2").unwrap();
    assert_eq!((a2.member_epoch, a2.assignment), (2, Some(kept)));
    assert_eq!(h.epoch(), 2);
    // The old member id is fenced by the new one.
    let stale = HeartbeatRequest {
        instance_id: Some("box".to_owned()),
        ..h.request("a1", 2, None)
    };
    assert_eq!(h.send(stale).unwrap_err().code, FENCED_INSTANCE_ID);
    assert!(h.overlaps().is_empty(), "{:?}", h.overlaps());
}

#[test]
fn a_static_member_gone_for_its_session_timeout_is_removed() {
    let mut h = Harness::new();
    let request = HeartbeatRequest {
        instance_id: Some("box".to_owned()),
        ..h.request("a1", 0, None)
    };
    h.send(request).unwrap();
    h.leave("a1", STATIC_LEAVE_EPOCH, Some("box")).unwrap();
    h.advance(SESSION);
    assert!(h.coordinator.consumer_group_members(GROUP).is_empty());
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.epoch(), 2);
}

#[test]
fn silent_members_are_removed_after_the_session_timeout() {
    let mut h = Harness::new();
    h.join("a");
    h.join("b");
    h.advance(ms(600));
    h.heartbeat("b", 2, Some(&Partitions::new())).unwrap();
    h.advance(ms(600));
    let members = h.coordinator.consumer_group_members(GROUP);
    assert_eq!(members.len(), 1, "a's session ended: {members:?}");
    assert_eq!(h.code("a", 1, None), UNKNOWN_MEMBER_ID);
    let b = h.heartbeat("b", 2, None).unwrap();
    assert_eq!(
        (b.member_epoch, b.assignment.map(|a| a.len())),
        (3, Some(6))
    );
}

#[test]
fn a_member_that_never_revokes_is_fenced_after_its_rebalance_timeout() {
    let mut h = Harness::new();
    h.a_then_b();
    let all = of("t", &[0, 1, 2, 3, 4, 5]);
    h.heartbeat("a", 1, Some(&all)).unwrap();
    // Heartbeats keep its session, but it never gives anything back.
    for _ in 0..5 {
        h.advance(ms(500));
        h.heartbeat("a", 1, Some(&all)).unwrap();
        h.heartbeat("b", 2, None).unwrap();
    }
    h.advance(ms(600));
    assert_eq!(h.code("a", 1, None), UNKNOWN_MEMBER_ID, "fenced at 3 s");
    let b = h.heartbeat("b", 2, None).unwrap();
    assert_eq!(b.assignment.map(|a| a.len()), Some(6));
}

#[test]
fn transactional_commits_take_the_member_epoch_as_generation() {
    let mut h = Harness::new();
    h.a_then_b();
    let commit = |h: &mut Harness, member: &str, epoch: i32| {
        let request = TxnCommitRequest {
            group_id: GROUP.to_owned(),
            producer_id: 7,
            member_id: member.to_owned(),
            instance_id: None,
            generation: epoch,
            offsets: vec![OffsetToCommit {
                topic: "t".to_owned(),
                partition: 0,
                offset: 5,
                leader_epoch: -1,
                metadata: None,
            }],
        };
        h.coordinator.txn_commit(NODE, &request)
    };
    assert_eq!(
        commit(&mut h, "", -1),
        Err(UNKNOWN_MEMBER_ID),
        "it has members"
    );
    assert_eq!(commit(&mut h, "nobody", 2), Err(UNKNOWN_MEMBER_ID));
    assert_eq!(
        commit(&mut h, "b", 1),
        Err(ILLEGAL_GENERATION),
        "a stale epoch"
    );
    assert_eq!(commit(&mut h, "b", 2), Ok(vec![NONE]));
    h.coordinator.complete_transaction(GROUP, 7, true);
    assert_eq!(h.coordinator.committed(GROUP, "t", 0), Some(5));
    assert_eq!(h.state(), GroupState::Reconciling, "still a consumer group");
}

#[test]
fn commits_need_the_current_member_epoch() {
    let mut h = Harness::new();
    // A simple commit while the group has no members (it creates a classic
    // group holding the offsets), then the group is a consumer group.
    assert_eq!(h.commit("", -1, 9), Ok(vec![NONE]));
    h.a_then_b();
    assert_eq!(h.coordinator.committed(GROUP, "t", 0), Some(42));
    assert_eq!(h.commit("", -1, 9), Err(UNKNOWN_MEMBER_ID));
    assert_eq!(h.commit("nobody", 1, 9), Err(UNKNOWN_MEMBER_ID));
    assert_eq!(h.commit("b", 1, 9), Err(STALE_MEMBER_EPOCH));
    assert_eq!(h.commit("b", 3, 9), Err(STALE_MEMBER_EPOCH));
    assert_eq!(h.commit("b", 2, 8), Err(UNSUPPORTED_VERSION));
    assert_eq!(h.commit("b", 2, 9), Ok(vec![NONE]));
    let fetched = h
        .coordinator
        .fetch_offsets(NODE, GROUP, Some(&[("t".to_owned(), vec![0, 1])]), false)
        .unwrap();
    let offset = |i: usize| fetched[0].1[i].1.clone().unwrap().map(|c| c.offset);
    assert_eq!(offset(0), Some(42));
    assert_eq!(offset(1), None);
}

#[test]
fn classic_and_consumer_groups_do_not_mix() {
    let mut h = Harness::new();
    let join = JoinRequest {
        group_id: GROUP.to_owned(),
        member_id: String::new(),
        instance_id: None,
        client_id: "classic".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout_ms: 1000,
        rebalance_timeout_ms: 1000,
        protocol_type: "consumer".to_owned(),
        protocols: vec![Protocol {
            name: "range".to_owned(),
            metadata: bytes::Bytes::new(),
        }],
        requires_known_member_id: false,
        supports_skip_assignment: true,
    };
    // A classic group with a member: no consumer-protocol member may join.
    let joined = h.coordinator.join(NODE, h.now, join.clone());
    assert!(matches!(joined, Outcome::Wait(_)));
    h.coordinator.tick(h.now);
    assert_eq!(
        h.heartbeat("a", 0, None).unwrap_err().code,
        GROUP_ID_NOT_FOUND
    );
    // Another group id: a consumer group, which classic members cannot join.
    let other = HeartbeatRequest {
        group_id: "c".to_owned(),
        ..h.request("a", 0, None)
    };
    h.coordinator.move_coordinator(h.now, "c", NODE);
    h.send(other).unwrap();
    let into_consumer = JoinRequest {
        group_id: "c".to_owned(),
        ..join
    };
    match h.coordinator.join(NODE, h.now, into_consumer.clone()) {
        Outcome::Done(response) => assert_eq!(response.error, INCONSISTENT_GROUP_PROTOCOL),
        Outcome::Wait(_) => panic!("a classic member joined a consumer group"),
    }
    assert_eq!(h.coordinator.delete(NODE, "c"), NON_EMPTY_GROUP);
    // Once empty, the consumer group becomes classic for a JoinGroup.
    let leave = HeartbeatRequest {
        group_id: "c".to_owned(),
        ..h.request("a", LEAVE_EPOCH, None)
    };
    h.send(leave).unwrap();
    assert!(matches!(
        h.coordinator.join(NODE, h.now, into_consumer),
        Outcome::Wait(_)
    ));
}

#[test]
fn topic_changes_bump_the_epoch_and_reach_the_members() {
    let mut h = Harness::new();
    let a = h.join("a");
    let mut owned = a.assignment.unwrap();
    // Two more partitions.
    h.topic("t", 1, 8);
    let grown = h.heartbeat("a", 1, Some(&owned)).unwrap();
    assert_eq!(grown.member_epoch, 2);
    owned = grown.assignment.unwrap();
    assert_eq!(owned.len(), 8);
    // A regex subscription sees a topic created later.
    let regex = HeartbeatRequest {
        subscribed_topic_names: None,
        subscribed_topic_regex: Some("r-.*".to_owned()),
        ..h.request("b", 0, None)
    };
    let b = h.send(regex).unwrap();
    assert_eq!(b.assignment, Some(Partitions::new()));
    h.topic("r-one", 2, 2);
    h.topic("other", 3, 2);
    let b = h.heartbeat("b", b.member_epoch, None).unwrap();
    assert_eq!(b.assignment, Some(parts(&[("r-one", 0), ("r-one", 1)])));
    assert!(h.assigned("a").iter().all(|(t, _)| t == "t"));
}

#[test]
fn two_members_reporting_one_partition_is_a_violation() {
    let mut h = Harness::new();
    h.a_then_b();
    let all = of("t", &[0, 1, 2, 3, 4, 5]);
    h.heartbeat("a", 1, Some(&all)).unwrap();
    // A client bug: B says it owns partition 0 while A still does.
    h.heartbeat("b", 2, Some(&of("t", &[0]))).unwrap();
    let overlaps = h.overlaps();
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert!(overlaps[0].contains("t-0"), "{overlaps:?}");
}

#[test]
fn a_moved_coordinator_keeps_the_group_and_restarts_its_timers() {
    let mut h = Harness::new();
    let a = h.join("a");
    h.commit("a", 1, 9).unwrap();
    h.advance(ms(900));
    h.coordinator.move_coordinator(h.now, GROUP, 2);
    assert_eq!(h.code("a", 1, None), NOT_COORDINATOR);
    // The session stood still while nobody coordinated... and restarts on
    // the new coordinator.
    h.advance(ms(900));
    let topics = h.topics.clone();
    let request = h.request("a", 1, None);
    let moved = h
        .coordinator
        .consumer_heartbeat(2, h.now, request, &topics)
        .unwrap();
    assert_eq!(moved.member_epoch, a.member_epoch);
    assert_eq!(h.coordinator.committed(GROUP, "t", 0), Some(42));
    // Loading: COORDINATOR_LOAD_IN_PROGRESS, timers stand still.
    h.coordinator.set_loading(h.now, GROUP, true);
    let request = h.request("a", 1, None);
    let loading = h.coordinator.consumer_heartbeat(2, h.now, request, &topics);
    assert_eq!(loading.unwrap_err().code, COORDINATOR_LOAD_IN_PROGRESS);
    h.advance(ms(5_000));
    h.coordinator.set_loading(h.now, GROUP, false);
    assert_eq!(h.coordinator.consumer_group_members(GROUP).len(), 1);
    h.advance(SESSION);
    assert!(
        h.coordinator.consumer_group_members(GROUP).is_empty(),
        "then it expires"
    );
}

#[test]
fn describe_and_list_show_the_consumer_group() {
    let mut h = Harness::new();
    h.a_then_b();
    let described = h
        .coordinator
        .consumer_describe(NODE, GROUP)
        .unwrap()
        .unwrap();
    assert_eq!(described.state, GroupState::Reconciling);
    assert_eq!((described.epoch, described.assignment_epoch), (2, 2));
    assert_eq!(described.assignor, "uniform");
    let ids: Vec<&str> = described
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(described.members[0].assignment.len(), 6);
    assert_eq!(described.members[0].target.len(), 3);
    assert_eq!(described.members[1].subscribed_topic_names, ["t"]);
    let listed = h.coordinator.list(NODE).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].group_type, listed[0].state),
        ("consumer", GroupState::Reconciling)
    );
    assert_eq!(
        h.coordinator.consumer_describe(2, GROUP).unwrap_err(),
        NOT_COORDINATOR
    );
    assert!(
        h.coordinator.describe(NODE, GROUP).unwrap().is_none(),
        "not a classic group"
    );
}

#[test]
fn a_stopped_coordinator_keeps_the_group_for_its_restart() {
    let mut h = Harness::new();
    h.a_then_b();
    let all = of("t", &[0, 1, 2, 3, 4, 5]);
    h.heartbeat("a", 1, Some(&all)).unwrap();
    h.coordinator.broker_stopped(h.now, NODE);
    // Nothing expires while the coordinator is down, however long.
    h.advance(ms(60_000));
    h.coordinator.broker_started(h.now, NODE);
    let members = h.coordinator.consumer_group_members(GROUP);
    assert_eq!(members.len(), 2, "{members:?}");
    assert_eq!(members[0].2.len(), 3, "a's revocation is still pending");
    // Sessions and the revocation's rebalance timeout started afresh with
    // the load: A, which heartbeats but never revokes, goes at 3 s.
    for _ in 0..3 {
        h.advance(ms(950));
        assert_eq!(h.heartbeat("a", 1, Some(&all)).unwrap().member_epoch, 1);
        h.heartbeat("b", 2, None).unwrap();
    }
    h.advance(ms(200));
    assert_eq!(h.code("a", 1, None), UNKNOWN_MEMBER_ID);
}
