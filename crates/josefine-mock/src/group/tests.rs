//! The coordinator's state machine on a fake clock: every test drives
//! `Coordinator` directly with explicit instants, as the driver would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::placement::java_hash;

const NODE: i32 = 1;
const GROUP: &str = "g";
const SESSION_MS: i32 = 1_000;
const REBALANCE_MS: i32 = 3_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: (*n).to_owned(),
            metadata: Bytes::from(format!("{n}-meta")),
        })
        .collect()
}

/// A coordinator on a clock the test moves, collecting the answers to
/// waiting requests as the driver would deliver them.
struct Harness {
    coordinator: Coordinator,
    now: Instant,
    answers: HashMap<Waiter, Reply>,
}

impl Harness {
    fn new() -> Self {
        Harness::with(GroupConfig::default())
    }

    fn with(config: GroupConfig) -> Self {
        Harness {
            coordinator: Coordinator::new(vec![NODE], config),
            now: Instant::now(),
            answers: HashMap::new(),
        }
    }

    /// Fires what is due and files the answers, as the driver does after
    /// every request.
    fn settle(&mut self) {
        self.coordinator.tick(self.now);
        for (waiter, reply) in self.coordinator.take_replies() {
            assert!(
                self.answers.insert(waiter, reply).is_none(),
                "waiter {waiter} answered twice"
            );
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.settle();
    }

    fn request(&self, member_id: &str) -> JoinRequest {
        JoinRequest {
            group_id: GROUP.to_owned(),
            member_id: member_id.to_owned(),
            instance_id: None,
            client_id: "client".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".to_owned(),
            protocols: protocols(&["range"]),
            requires_known_member_id: true,
            supports_skip_assignment: true,
        }
    }

    fn join_with(&mut self, request: JoinRequest) -> Outcome<JoinResponse> {
        let outcome = self.coordinator.join(NODE, self.now, request);
        self.settle();
        outcome
    }

    fn join(&mut self, member_id: &str) -> Outcome<JoinResponse> {
        let request = self.request(member_id);
        self.join_with(request)
    }

    /// The answer to a join, if it has one yet.
    fn joined(&mut self, outcome: &Outcome<JoinResponse>) -> Option<JoinResponse> {
        match outcome {
            Outcome::Done(response) => Some(response.clone()),
            Outcome::Wait(waiter) => match self.answers.remove(waiter) {
                Some(Reply::Join(response)) => Some(response),
                Some(other) => panic!("a join answered with {other:?}"),
                None => None,
            },
        }
    }

    /// A new dynamic member: MEMBER_ID_REQUIRED, then the join with the id.
    fn new_member(&mut self) -> (String, Outcome<JoinResponse>) {
        let first = self.join("");
        let response = self.joined(&first).expect("answered at once");
        assert_eq!(response.error, MEMBER_ID_REQUIRED);
        let id = response.member_id;
        let second = self.join(&id);
        (id, second)
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        plan: &[(&str, &str)],
    ) -> Outcome<SyncResponse> {
        let request = SyncRequest {
            group_id: GROUP.to_owned(),
            member_id: member_id.to_owned(),
            instance_id: None,
            generation,
            protocol_type: Some("consumer".to_owned()),
            protocol_name: None,
            assignments: plan
                .iter()
                .map(|(m, a)| ((*m).to_owned(), Bytes::from(a.to_string())))
                .collect(),
        };
        let outcome = self.coordinator.sync(NODE, self.now, request);
        self.settle();
        outcome
    }

    fn synced(&mut self, outcome: &Outcome<SyncResponse>) -> Option<SyncResponse> {
        match outcome {
            Outcome::Done(response) => Some(response.clone()),
            Outcome::Wait(waiter) => match self.answers.remove(waiter) {
                Some(Reply::Sync(response)) => Some(response),
                Some(other) => panic!("a sync answered with {other:?}"),
                None => None,
            },
        }
    }

    fn heartbeat(&mut self, member_id: &str, generation: i32) -> i16 {
        let code = self
            .coordinator
            .heartbeat(NODE, self.now, GROUP, member_id, None, generation);
        self.settle();
        code
    }

    fn commit(&mut self, member_id: &str, generation: i32, version: i16) -> Result<Vec<i16>, i16> {
        let request = CommitRequest {
            group_id: GROUP.to_owned(),
            member_id: member_id.to_owned(),
            instance_id: None,
            generation,
            version,
            offsets: vec![OffsetToCommit {
                topic: "t".to_owned(),
                partition: 0,
                offset: 42,
                leader_epoch: 3,
                metadata: Some("m".to_owned()),
            }],
        };
        let result = self.coordinator.commit(NODE, self.now, &request);
        self.settle();
        result
    }

    fn state(&self) -> GroupState {
        self.coordinator.state(GROUP)
    }

    fn member_ids(&self) -> Vec<String> {
        self.coordinator
            .members(GROUP)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// One member, joined and synced: generation 1, Stable.
    fn stable_with_one(&mut self) -> String {
        let (a, join) = self.new_member();
        let joined = self
            .joined(&join)
            .expect("the first member completes alone");
        assert_eq!((joined.error, joined.generation), (NONE, 1));
        let sync = self.sync(&a, 1, &[(&a, "a-plan")]);
        assert_eq!(self.synced(&sync).map(|r| r.error), Some(NONE));
        a
    }
}

#[test]
fn java_hash_matches_string_hash_code() {
    assert_eq!(java_hash(""), 0);
    assert_eq!(java_hash("a"), 97);
    assert_eq!(java_hash("hello"), 99_162_322);
    // Overflows wrap as in Java.
    assert_eq!(java_hash("polygenelubricants"), i32::MIN);
    let coordinator = Coordinator::new(vec![3, 1, 2], GroupConfig::default());
    assert_eq!(
        coordinator.coordinator_of("polygenelubricants"),
        1,
        "abs(MIN) is 0"
    );
    assert_eq!(coordinator.coordinator_of("hello"), 1 + 99_162_322 % 3);
}

#[test]
fn the_first_member_needs_an_id_then_leads_a_group_of_one() {
    let mut h = Harness::new();
    let (a, join) = h.new_member();
    assert!(a.starts_with("client-"), "{a}");
    let joined = h.joined(&join).expect("the initial delay is 0");
    assert_eq!(joined.error, NONE);
    assert_eq!(joined.generation, 1);
    assert_eq!(joined.leader, a);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, Bytes::from("range-meta"));
    assert_eq!(h.state(), GroupState::CompletingRebalance);

    let sync = h.sync(&a, 1, &[(&a, "plan")]);
    let synced = h.synced(&sync).expect("the leader's sync completes itself");
    assert_eq!(synced.assignment, Bytes::from("plan"));
    assert_eq!(synced.protocol_name.as_deref(), Some("range"));
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat(&a, 1), NONE);
}

#[test]
fn a_new_member_makes_everybody_rejoin_in_the_next_generation() {
    let mut h = Harness::new();
    let a = h.stable_with_one();
    let (b, b_join) = h.new_member();
    assert_eq!(h.joined(&b_join), None, "waits for a to rejoin");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&a, 1), REBALANCE_IN_PROGRESS);
    assert_eq!(
        h.commit(&a, 1, 8),
        Ok(vec![NONE]),
        "commits still work while preparing"
    );

    let a_join = h.join(&a);
    let a_joined = h.joined(&a_join).expect("everybody rejoined");
    let b_joined = h.joined(&b_join).expect("everybody rejoined");
    assert_eq!((a_joined.generation, b_joined.generation), (2, 2));
    assert_eq!(a_joined.leader, a, "the leader stays the leader");
    assert_eq!(b_joined.leader, a);
    assert_eq!(a_joined.members.len(), 2);
    assert!(b_joined.members.is_empty(), "followers get no member list");

    // The follower's sync waits for the leader's.
    let b_sync = h.sync(&b, 2, &[]);
    assert_eq!(h.synced(&b_sync), None);
    assert_eq!(h.commit(&b, 2, 8), Err(REBALANCE_IN_PROGRESS));
    assert_eq!(h.commit(&b, 1, 8), Err(ILLEGAL_GENERATION));
    let a_sync = h.sync(&a, 2, &[(&a, "for-a"), (&b, "for-b")]);
    assert_eq!(h.synced(&a_sync).unwrap().assignment, Bytes::from("for-a"));
    assert_eq!(h.synced(&b_sync).unwrap().assignment, Bytes::from("for-b"));
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat(&b, 2), NONE);
    assert_eq!(h.heartbeat(&b, 1), ILLEGAL_GENERATION);
    assert_eq!(h.heartbeat("nobody", 2), UNKNOWN_MEMBER_ID);
}

#[test]
fn each_member_votes_for_its_favourite_common_protocol() {
    let cases: [(&[&[&str]], &str); 4] = [
        // b and c outvote the leader.
        (&[&["x", "y"], &["y", "x"], &["y", "x"]], "y"),
        // A tie goes the leader's way.
        (&[&["x", "y"], &["y", "x"]], "x"),
        // Only what everyone supports counts.
        (&[&["x", "y", "z"], &["z", "y"], &["y", "z"]], "y"),
        (&[&["z", "y"], &["x", "z"]], "z"),
    ];
    for (members, expected) in cases {
        let config = GroupConfig {
            initial_rebalance_delay: ms(100),
            ..GroupConfig::default()
        };
        let mut h = Harness::with(config);
        let mut joins = Vec::new();
        for names in members {
            let request = JoinRequest {
                protocols: protocols(names),
                requires_known_member_id: false,
                ..h.request("")
            };
            joins.push(h.join_with(request));
        }
        // The later joins extend the delay once.
        h.advance(ms(100));
        h.advance(ms(100));
        let chosen: Vec<Option<String>> = joins
            .iter()
            .map(|j| h.joined(j).expect("joined").protocol_name)
            .collect();
        assert!(
            chosen.iter().all(|c| c.as_deref() == Some(expected)),
            "{members:?}: {chosen:?}"
        );
    }
}

#[test]
fn a_protocol_nobody_else_supports_is_refused() {
    let mut h = Harness::new();
    h.stable_with_one();
    let request = JoinRequest {
        protocols: protocols(&["sticky"]),
        ..h.request("")
    };
    let outcome = h.join_with(request);
    assert_eq!(
        h.joined(&outcome).unwrap().error,
        INCONSISTENT_GROUP_PROTOCOL
    );
    let request = JoinRequest {
        protocol_type: "connect".to_owned(),
        ..h.request("")
    };
    let outcome = h.join_with(request);
    assert_eq!(
        h.joined(&outcome).unwrap().error,
        INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn the_initial_delay_grows_while_members_keep_arriving() {
    let config = GroupConfig {
        initial_rebalance_delay: ms(300),
        ..GroupConfig::default()
    };
    let mut h = Harness::with(config);
    let (_, a) = h.new_member();
    h.advance(ms(200));
    let (_, b) = h.new_member();
    h.advance(ms(100));
    assert_eq!(h.joined(&a), None, "b's arrival extended the delay");
    h.advance(ms(299));
    assert_eq!(h.joined(&a), None);
    h.advance(ms(1));
    let (a, b) = (h.joined(&a).unwrap(), h.joined(&b).unwrap());
    assert_eq!((a.generation, b.generation), (1, 1));
    assert_eq!(a.members.len(), 2);
}

#[test]
fn the_initial_delay_ends_within_the_rebalance_timeout_however_many_arrive() {
    let config = GroupConfig {
        initial_rebalance_delay: ms(1_000),
        ..GroupConfig::default()
    };
    let mut h = Harness::with(config);
    let (_, first) = h.new_member();
    let mut waited = Duration::ZERO;
    while h.joined(&first).is_none() {
        // A new member every 500 ms would extend the delay forever.
        let _ = h.new_member();
        h.advance(ms(500));
        waited += ms(500);
        let limit = ms(REBALANCE_MS as u64 + 1_000);
        assert!(waited <= limit, "still waiting after {waited:?}");
    }
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped() {
    let mut h = Harness::new();
    let a = h.stable_with_one();
    let (b, b_join) = h.new_member();
    // a keeps heartbeating but never rejoins.
    for _ in 0..5 {
        h.advance(ms(500));
        assert_eq!(h.heartbeat(&a, 1), REBALANCE_IN_PROGRESS);
    }
    assert_eq!(h.joined(&b_join), None);
    h.advance(ms(500));
    let joined = h.joined(&b_join).expect("the rebalance timed out");
    assert_eq!((joined.generation, joined.leader.as_str()), (2, b.as_str()));
    assert_eq!(h.member_ids(), [b]);
    assert_eq!(h.heartbeat(&a, 1), UNKNOWN_MEMBER_ID);
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    let mut h = Harness::new();
    let a = h.stable_with_one();
    h.advance(ms(999));
    assert_eq!(h.state(), GroupState::Stable);
    h.advance(ms(1));
    assert!(h.member_ids().is_empty());
    assert_eq!(h.state(), GroupState::Empty, "the last member left");
    assert_eq!(h.coordinator.generation(GROUP), Some(2));
    assert_eq!(h.heartbeat(&a, 1), UNKNOWN_MEMBER_ID);
}

#[test]
fn heartbeats_and_commits_keep_a_session_alive_and_a_waiting_join_counts() {
    let mut h = Harness::new();
    let a = h.stable_with_one();
    for _ in 0..3 {
        h.advance(ms(800));
        assert_eq!(h.heartbeat(&a, 1), NONE);
    }
    h.advance(ms(800));
    assert_eq!(h.commit(&a, 1, 8), Ok(vec![NONE]));
    h.advance(ms(800));
    assert_eq!(h.member_ids(), std::slice::from_ref(&a));

    // A rejoin waits for b's MEMBER_ID_REQUIRED round trip, far beyond a's
    // session: a is kept because its join is waiting.
    let b_first = h.join("");
    let b = h.joined(&b_first).unwrap().member_id;
    let a_join = h.join(&a);
    h.advance(ms(900));
    let b_join = h.join(&b);
    let joined = h.joined(&a_join).expect("both joined");
    assert_eq!(joined.generation, 2);
    assert!(h.joined(&b_join).is_some());
}

#[test]
fn an_unused_member_id_expires_and_stops_holding_up_the_rebalance() {
    let mut h = Harness::new();
    let a = h.stable_with_one();
    h.force_rebalance();
    let first = h.join("");
    assert_eq!(h.joined(&first).unwrap().error, MEMBER_ID_REQUIRED);
    let a_join = h.join(&a);
    assert_eq!(h.joined(&a_join), None, "waits for the pending member");
    h.advance(ms(1_000));
    assert_eq!(h.joined(&a_join).unwrap().generation, 2);
}

impl Harness {
    fn force_rebalance(&mut self) {
        assert!(self.coordinator.force_rebalance(self.now, GROUP));
        self.settle();
    }
}

#[test]
fn followers_waiting_for_a_leader_that_never_syncs_must_rejoin() {
    let config = GroupConfig {
        initial_rebalance_delay: ms(10),
        ..GroupConfig::default()
    };
    let mut h = Harness::with(config);
    let (a, a_join) = h.new_member();
    let (b, b_join) = h.new_member();
    h.advance(ms(10));
    assert_eq!(h.joined(&a_join), None, "b extended the initial delay");
    h.advance(ms(10));
    let leader = h.joined(&a_join).unwrap().leader;
    assert_eq!(leader, a);
    assert!(h.joined(&b_join).is_some());
    let b_sync = h.sync(&b, 1, &[]);
    // The leader heartbeats but never syncs.
    for _ in 0..5 {
        h.advance(ms(500));
        assert_eq!(h.heartbeat(&a, 1), NONE);
    }
    h.advance(ms(499));
    assert_eq!(h.synced(&b_sync), None);
    h.advance(ms(1));
    assert_eq!(h.synced(&b_sync).unwrap().error, REBALANCE_IN_PROGRESS);
    assert_eq!(
        h.member_ids(),
        std::slice::from_ref(&b),
        "the leader was dropped"
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let b_join = h.join(&b);
    assert_eq!(h.joined(&b_join).unwrap().leader, b);
}

#[test]
fn leaving_starts_a_rebalance_and_can_complete_one() {
    let mut h = Harness::new();
    let a = h.stable_with_one();
    let (b, b_join) = h.new_member();
    assert_eq!(h.joined(&b_join), None);
    let left = h.coordinator.leave(
        NODE,
        h.now,
        GROUP,
        &[(a.clone(), None), ("ghost".into(), None)],
    );
    h.settle();
    assert_eq!(left, Ok(vec![NONE, UNKNOWN_MEMBER_ID]));
    let joined = h.joined(&b_join).expect("a was all b waited for");
    assert_eq!((joined.generation, joined.leader), (2, b.clone()));
    assert_eq!(
        h.coordinator.leave(NODE, h.now, "other", &[(b, None)]),
        Err(UNKNOWN_MEMBER_ID)
    );
}

fn static_request(h: &Harness, member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        instance_id: Some(instance.to_owned()),
        ..h.request(member_id)
    }
}

#[test]
fn a_restarted_static_member_takes_over_and_fences_its_old_id() {
    let mut h = Harness::new();
    // Static members get no MEMBER_ID_REQUIRED.
    let request = static_request(&h, "", "i-1");
    let first = h.join_with(request);
    let old = h.joined(&first).unwrap();
    assert_eq!(old.error, NONE);
    assert!(old.member_id.starts_with("i-1-"), "{}", old.member_id);
    let sync = h.sync(&old.member_id, 1, &[(&old.member_id, "plan")]);
    assert!(h.synced(&sync).is_some());

    // The same instance, restarted: a new id, no rebalance.
    let request = static_request(&h, "", "i-1");
    let again = h.join_with(request);
    let new = h.joined(&again).expect("a Stable group answers at once");
    assert_ne!(new.member_id, old.member_id);
    assert_eq!(new.generation, 1);
    assert!(new.skip_assignment, "v9: the leader keeps the assignment");
    assert_eq!(new.leader, new.member_id);
    assert_eq!(h.state(), GroupState::Stable);
    let fenced = h
        .coordinator
        .heartbeat(NODE, h.now, GROUP, &old.member_id, Some("i-1"), 1);
    assert_eq!(fenced, FENCED_INSTANCE_ID);
    let commit = CommitRequest {
        group_id: GROUP.into(),
        member_id: old.member_id.clone(),
        instance_id: Some("i-1".into()),
        generation: 1,
        version: 7,
        offsets: Vec::new(),
    };
    assert_eq!(
        h.coordinator.commit(NODE, h.now, &commit),
        Err(FENCED_INSTANCE_ID)
    );
    let sync = h.sync(&new.member_id, 1, &[]);
    assert_eq!(h.synced(&sync).unwrap().assignment, Bytes::from("plan"));

    // Before v9 the leader id is the old one, so the restarted leader does
    // not reassign.
    let request = JoinRequest {
        supports_skip_assignment: false,
        ..static_request(&h, "", "i-1")
    };
    let third = h.join_with(request);
    let third = h.joined(&third).unwrap();
    assert_eq!(third.leader, new.member_id);
    assert!(!third.skip_assignment);
    assert_eq!(h.member_ids(), [third.member_id]);
}

#[test]
fn a_static_member_replaced_while_joining_gets_fenced() {
    let config = GroupConfig {
        initial_rebalance_delay: ms(100),
        ..GroupConfig::default()
    };
    let mut h = Harness::with(config);
    let request = static_request(&h, "", "i-1");
    let first = h.join_with(request);
    let request = static_request(&h, "", "i-1");
    let second = h.join_with(request);
    let fenced = h.joined(&first).expect("fenced at once");
    assert_eq!(fenced.error, FENCED_INSTANCE_ID);
    h.advance(ms(100));
    let joined = h.joined(&second).unwrap();
    assert_eq!(joined.error, NONE);
    assert_eq!(h.member_ids(), [joined.member_id]);
}

#[test]
fn commit_validation_follows_kafka() {
    let mut h = Harness::new();
    // A simple commit creates the group; a member's commit to an unknown
    // group is refused by version.
    assert_eq!(h.commit("m", 3, 8), Err(ILLEGAL_GENERATION));
    assert_eq!(h.commit("m", 3, 9), Err(GROUP_ID_NOT_FOUND));
    assert_eq!(h.commit("", -1, 8), Ok(vec![NONE]));
    assert_eq!(h.coordinator.committed(GROUP, "t", 0), Some(42));
    assert_eq!(h.state(), GroupState::Empty);

    let a = h.stable_with_one();
    assert_eq!(
        h.commit("", -1, 8),
        Err(UNKNOWN_MEMBER_ID),
        "not while it has members"
    );
    assert_eq!(h.commit("stranger", 1, 8), Err(UNKNOWN_MEMBER_ID));
    assert_eq!(h.commit(&a, 0, 8), Err(ILLEGAL_GENERATION));
    assert_eq!(h.commit(&a, 1, 8), Ok(vec![NONE]));

    let request = CommitRequest {
        group_id: GROUP.into(),
        member_id: a.clone(),
        instance_id: None,
        generation: 1,
        version: 8,
        offsets: vec![OffsetToCommit {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            leader_epoch: -1,
            metadata: Some("x".repeat(4097)),
        }],
    };
    assert_eq!(
        h.coordinator.commit(NODE, h.now, &request),
        Ok(vec![OFFSET_METADATA_TOO_LARGE])
    );
    let fetched = h
        .coordinator
        .fetch_offsets(NODE, GROUP, None, false)
        .unwrap();
    assert_eq!(fetched.len(), 1);
    let (topic, partitions) = &fetched[0];
    assert_eq!(topic, "t");
    let committed = partitions[0].1.clone().unwrap().unwrap();
    assert_eq!((committed.offset, committed.leader_epoch), (42, 3));
    assert_eq!(committed.metadata, "m");
    let wanted = [("t".to_owned(), vec![0, 5]), ("u".to_owned(), vec![0])];
    let fetched = h
        .coordinator
        .fetch_offsets(NODE, GROUP, Some(&wanted), false)
        .unwrap();
    assert_eq!(fetched[0].1[1], (5, Ok(None)));
    assert_eq!(fetched[1].1[0], (0, Ok(None)));
}

#[test]
fn coordinator_checks_come_after_the_request_checks() {
    let mut h = Harness::new();
    let request = JoinRequest {
        group_id: String::new(),
        ..h.request("")
    };
    let outcome = h.join_with(request);
    assert_eq!(h.joined(&outcome).unwrap().error, INVALID_GROUP_ID);
    let request = JoinRequest {
        session_timeout_ms: 0,
        ..h.request("")
    };
    let outcome = h.join_with(request);
    assert_eq!(h.joined(&outcome).unwrap().error, INVALID_SESSION_TIMEOUT);
    let outcome = h.join("known-member-of-no-group");
    assert_eq!(h.joined(&outcome).unwrap().error, UNKNOWN_MEMBER_ID);

    h.coordinator.move_coordinator(h.now, GROUP, 2);
    let outcome = h.join("");
    assert_eq!(h.joined(&outcome).unwrap().error, NOT_COORDINATOR);
    assert_eq!(h.coordinator.check(2, GROUP), Ok(()));
    h.coordinator.move_coordinator(h.now, GROUP, NODE);
    h.coordinator.set_loading(h.now, GROUP, true);
    let outcome = h.join("");
    assert_eq!(
        h.joined(&outcome).unwrap().error,
        COORDINATOR_LOAD_IN_PROGRESS
    );
    assert_eq!(h.coordinator.list(NODE), Ok(Vec::new()), "no group yet");
    h.coordinator.set_loading(h.now, GROUP, false);
    let (_, outcome) = h.new_member();
    assert_eq!(h.joined(&outcome).unwrap().error, NONE);
}

#[test]
fn moving_the_coordinator_answers_waiters_and_reloads_the_persisted_group() {
    let mut h = Harness::new();
    let a = h.stable_with_one();
    let (b, b_join) = h.new_member();
    let a_join = h.join(&a);
    let joined = h.joined(&a_join).unwrap();
    assert_eq!(joined.generation, 2);
    assert!(h.joined(&b_join).is_some());
    let b_sync = h.sync(&b, 2, &[]);

    h.coordinator.move_coordinator(h.now, GROUP, 2);
    h.settle();
    assert_eq!(h.synced(&b_sync).unwrap().error, NOT_COORDINATOR);
    // The new coordinator knows what was persisted: generation 1, a alone.
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.coordinator.generation(GROUP), Some(1));
    assert_eq!(h.member_ids(), std::slice::from_ref(&a));
    let code = h.coordinator.heartbeat(2, h.now, GROUP, &a, None, 1);
    assert_eq!(code, NONE);
    assert_eq!(h.heartbeat(&a, 1), NOT_COORDINATOR);

    // Sessions restarted on load; a stopped coordinator freezes them.
    h.coordinator.broker_stopped(h.now, 2);
    h.advance(ms(10_000));
    assert_eq!(h.member_ids(), std::slice::from_ref(&a));
    h.coordinator.broker_started(h.now, 2);
    h.advance(ms(999));
    assert_eq!(h.member_ids(), [a]);
    h.advance(ms(1));
    assert!(h.member_ids().is_empty());
}

#[test]
fn kicking_a_member_rebalances_and_answers_its_waiting_join() {
    let mut h = Harness::new();
    let a = h.stable_with_one();
    let (b, b_join) = h.new_member();
    assert!(h.coordinator.kick_member(h.now, GROUP, &b));
    h.settle();
    assert_eq!(h.joined(&b_join).unwrap().error, UNKNOWN_MEMBER_ID);
    assert!(!h.coordinator.kick_member(h.now, GROUP, &b));
    let a_join = h.join(&a);
    assert_eq!(h.joined(&a_join).unwrap().generation, 2);
}

#[test]
fn deleting_needs_an_empty_group() {
    let mut h = Harness::new();
    assert_eq!(h.coordinator.delete(NODE, GROUP), GROUP_ID_NOT_FOUND);
    let a = h.stable_with_one();
    assert_eq!(h.coordinator.delete(NODE, GROUP), NON_EMPTY_GROUP);
    assert_eq!(
        h.coordinator.leave(NODE, h.now, GROUP, &[(a, None)]),
        Ok(vec![NONE])
    );
    h.settle();
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.coordinator.delete(NODE, GROUP), NONE);
    assert_eq!(h.state(), GroupState::Dead);
    assert_eq!(h.coordinator.generation(GROUP), None);
}

#[test]
fn tansu_mode_requires_ids_at_every_version_and_counts_from_zero() {
    let config = GroupConfig {
        member_id_required_at_every_version: true,
        first_generation: 0,
        ..GroupConfig::default()
    };
    let mut h = Harness::with(config);
    let request = JoinRequest {
        requires_known_member_id: false,
        ..h.request("")
    };
    let first = h.join_with(request);
    let first = h.joined(&first).unwrap();
    assert_eq!(first.error, MEMBER_ID_REQUIRED);
    let second = h.join(&first.member_id);
    assert_eq!(h.joined(&second).unwrap().generation, 0);
}

fn txn_commit(
    h: &mut Harness,
    producer_id: i64,
    member_id: &str,
    generation: i32,
    offset: i64,
) -> Result<Vec<i16>, i16> {
    let request = TxnCommitRequest {
        group_id: GROUP.to_owned(),
        producer_id,
        member_id: member_id.to_owned(),
        instance_id: None,
        generation,
        offsets: vec![OffsetToCommit {
            topic: "t".to_owned(),
            partition: 0,
            offset,
            leader_epoch: 2,
            metadata: Some("txn".to_owned()),
        }],
    };
    h.coordinator.txn_commit(NODE, &request)
}

#[test]
fn transactional_offsets_wait_for_their_transaction() {
    let mut h = Harness::new();
    // Without a generation, the group is created as a simple one.
    assert_eq!(txn_commit(&mut h, 7, "", -1, 10), Ok(vec![NONE]));
    assert_eq!(h.coordinator.committed(GROUP, "t", 0), None, "pending");
    assert_eq!(h.coordinator.pending_offset(GROUP, "t", 0), Some(10));
    let wanted = [("t".to_owned(), vec![0])];
    let fetch = |h: &Harness, stable: bool| {
        h.coordinator
            .fetch_offsets(NODE, GROUP, Some(&wanted), stable)
            .unwrap()[0]
            .1[0]
            .1
            .clone()
    };
    assert_eq!(fetch(&h, true), Err(UNSTABLE_OFFSET_COMMIT));
    assert_eq!(fetch(&h, false), Ok(None));
    h.coordinator.complete_transaction(GROUP, 7, true);
    assert_eq!(h.coordinator.committed(GROUP, "t", 0), Some(10));
    let committed = fetch(&h, true).unwrap().unwrap();
    assert_eq!(
        (committed.leader_epoch, committed.metadata.as_str()),
        (2, "txn")
    );
    // An aborted transaction's offsets go.
    assert_eq!(txn_commit(&mut h, 7, "", -1, 20), Ok(vec![NONE]));
    let all = h
        .coordinator
        .fetch_offsets(NODE, GROUP, None, true)
        .unwrap();
    assert_eq!(all[0].1[0], (0, Err(UNSTABLE_OFFSET_COMMIT)));
    h.coordinator.complete_transaction(GROUP, 7, false);
    assert_eq!(h.coordinator.committed(GROUP, "t", 0), Some(10));
    assert_eq!(h.coordinator.pending_offset(GROUP, "t", 0), None);
    assert_eq!(fetch(&h, true).map(|c| c.map(|c| c.offset)), Ok(Some(10)));
}

#[test]
fn transactional_commits_check_the_member_but_not_the_group_state() {
    let mut h = Harness::new();
    assert_eq!(
        txn_commit(&mut h, 7, "m", 3, 1),
        Err(ILLEGAL_GENERATION),
        "no group"
    );
    let a = h.stable_with_one();
    assert_eq!(
        txn_commit(&mut h, 7, "stranger", 1, 1),
        Err(UNKNOWN_MEMBER_ID)
    );
    assert_eq!(txn_commit(&mut h, 7, &a, 0, 1), Err(ILLEGAL_GENERATION));
    assert_eq!(txn_commit(&mut h, 7, &a, 1, 1), Ok(vec![NONE]));
    // v0-v2 send no member: accepted whatever the group's state.
    assert_eq!(txn_commit(&mut h, 7, "", -1, 2), Ok(vec![NONE]));
    // A rebalance waiting for the leader's assignment refuses OffsetCommit,
    // not TxnOffsetCommit.
    let (_, _) = h.new_member();
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(txn_commit(&mut h, 7, &a, 1, 3), Ok(vec![NONE]));
    let rejoined = h.join(&a);
    assert_eq!(h.joined(&rejoined).map(|j| j.generation), Some(2));
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.commit(&a, 2, 8), Err(REBALANCE_IN_PROGRESS));
    assert_eq!(txn_commit(&mut h, 7, &a, 2, 4), Ok(vec![NONE]));
    let request = TxnCommitRequest {
        group_id: String::new(),
        producer_id: 7,
        member_id: String::new(),
        instance_id: None,
        generation: -1,
        offsets: Vec::new(),
    };
    assert_eq!(
        h.coordinator.txn_commit(NODE, &request),
        Err(INVALID_GROUP_ID)
    );
    assert_eq!(
        h.coordinator.txn_commit(
            2,
            &TxnCommitRequest {
                group_id: GROUP.into(),
                ..request
            }
        ),
        Err(NOT_COORDINATOR)
    );
}
