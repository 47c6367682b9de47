//! The membership state machine on a fake clock: every path of the module docs.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::error::ErrorKind;

const SESSION: Duration = Duration::from_millis(3000);
const HEARTBEAT: Duration = Duration::from_millis(300);

fn config(instance_id: Option<&str>) -> MembershipConfig {
    MembershipConfig {
        session_timeout: SESSION,
        heartbeat_interval: HEARTBEAT,
        retry_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        instance_id: instance_id.map(String::from),
        cooperative: false,
    }
}

fn code(c: KafkaCode) -> Error {
    Error::kafka(c)
}

fn joined(member: &str, leader: &str, generation: i32) -> JoinOutcome {
    JoinOutcome::Joined {
        member_id: member.into(),
        generation,
        protocol: Some("range".into()),
        leader_id: leader.into(),
        members: vec![JoinedMember {
            member_id: member.into(),
            instance_id: None,
            metadata: Bytes::from_static(b"sub"),
        }],
    }
}

/// A member driven to Stable as a follower, generation 1.
fn stable(t0: Instant) -> Membership {
    let mut m = Membership::new(config(None));
    m.start(t0);
    m.coordinator_found(t0);
    m.joined(joined("me", "other", 1), t0);
    let actions = m.synced(Ok(Bytes::from_static(b"plan")), t0);
    assert!(matches!(
        actions[0],
        Action::StartSession { generation: 1, .. }
    ));
    assert_eq!(m.phase(), Phase::Stable);
    m
}

fn is_join(actions: &[Action], id: &str) -> bool {
    matches!(actions, [Action::Join { member_id }] if member_id == id)
}

#[test]
fn a_follower_finds_joins_syncs_and_starts_a_session() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(None));
    assert!(matches!(m.start(t0)[..], [Action::FindCoordinator]));
    assert!(is_join(&m.coordinator_found(t0), ""));
    // KIP-394: the first join of a new member gets an id to join with.
    assert!(is_join(
        &m.joined(JoinOutcome::MemberIdRequired("me".into()), t0),
        "me"
    ));
    let actions = m.joined(joined("me", "other", 4), t0);
    assert!(
        matches!(&actions[..], [Action::Sync { generation: 4, assignments, .. }] if assignments.is_empty())
    );
    assert!(!m.is_leader());
    let actions = m.synced(Ok(Bytes::from_static(b"plan")), t0);
    assert!(
        matches!(&actions[0], Action::StartSession { assignment, generation: 4, .. } if assignment == "plan")
    );
    assert_eq!((m.member_id(), m.generation()), ("me", 4));
}

#[test]
fn the_leader_assigns_before_syncing() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(None));
    m.start(t0);
    m.coordinator_found(t0);
    let actions = m.joined(joined("me", "me", 1), t0);
    assert!(matches!(&actions[..], [Action::Assign { members, .. }] if members.len() == 1));
    assert!(m.is_leader());
    let plan = vec![("me".to_string(), Bytes::from_static(b"p"))];
    let actions = m.assigned(plan.clone(), t0);
    assert!(matches!(&actions[..], [Action::Sync { assignments, .. }] if *assignments == plan));
}

#[test]
fn heartbeats_are_sent_every_interval_while_stable() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    // The first heartbeat is due one interval after the sync.
    assert!(matches!(m.poll(t0)[..], [Action::WaitUntil(at)] if at == t0 + HEARTBEAT));
    let t1 = t0 + HEARTBEAT;
    let actions = m.poll(t1);
    assert!(matches!(
        actions[0],
        Action::Heartbeat { generation: 1, .. }
    ));
    // One in flight: nothing new until it is answered.
    assert!(matches!(m.poll(t1 + HEARTBEAT)[..], [Action::WaitUntil(_)]));
    m.heartbeat_done(Ok(()), t1 + Duration::from_millis(10));
    let actions = m.poll(t1 + HEARTBEAT);
    assert!(matches!(actions[0], Action::Heartbeat { .. }));
}

#[test]
fn rebalance_in_progress_ends_the_session_then_rejoins_with_the_same_id() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    m.poll(t0);
    let actions = m.heartbeat_done(Err(code(KafkaCode::REBALANCE_IN_PROGRESS)), t0);
    assert!(matches!(
        actions[..],
        [Action::EndSession(SessionEnd::Rebalance)]
    ));
    assert_eq!(m.phase(), Phase::Revoking);
    // No join before the claims are released.
    assert!(m.poll(t0 + SESSION / 2).is_empty());
    assert!(is_join(&m.session_ended(t0), "me"));
}

#[test]
fn unknown_member_and_illegal_generation_lose_the_session_without_commit() {
    for (error, id_after) in [
        (KafkaCode::UNKNOWN_MEMBER_ID, ""),
        (KafkaCode::ILLEGAL_GENERATION, "me"),
    ] {
        let t0 = Instant::now();
        let mut m = stable(t0);
        m.poll(t0);
        let actions = m.heartbeat_done(Err(code(error)), t0);
        assert!(
            matches!(actions[..], [Action::EndSession(SessionEnd::Lost)]),
            "{error:?}"
        );
        assert_eq!(m.generation(), -1);
        assert!(is_join(&m.session_ended(t0), id_after), "{error:?}");
    }
}

#[test]
fn join_errors_follow_the_java_client() {
    let t0 = Instant::now();
    let cases: Vec<(Error, &str)> = vec![
        (code(KafkaCode::UNKNOWN_MEMBER_ID), "join-fresh"),
        (code(KafkaCode::REBALANCE_IN_PROGRESS), "join-again"),
        (code(KafkaCode::NOT_COORDINATOR), "find"),
        (code(KafkaCode::COORDINATOR_NOT_AVAILABLE), "find"),
        (code(KafkaCode::COORDINATOR_LOAD_IN_PROGRESS), "find"),
        (Error::new(ErrorKind::ConnectionClosed, "gone"), "find"),
        (code(KafkaCode::from_code(82).unwrap()), "fail"),
        (code(KafkaCode::from_code(30).unwrap()), "fail"),
        (code(KafkaCode::from_code(23).unwrap()), "fail"),
    ];
    for (err, expected) in cases {
        let mut m = Membership::new(config(None));
        m.start(t0);
        m.coordinator_found(t0);
        m.joined(JoinOutcome::MemberIdRequired("me".into()), t0);
        let actions = m.joined(JoinOutcome::Failed(err.clone()), t0);
        match expected {
            "join-fresh" => assert!(is_join(&actions, ""), "{err}"),
            "join-again" => assert!(is_join(&actions, "me"), "{err}"),
            "find" => {
                assert_eq!(m.phase(), Phase::FindingCoordinator, "{err}");
                assert!(
                    matches!(actions[..], [Action::WaitUntil(_)]),
                    "{err}: backoff first"
                );
                let later = m.poll(t0 + Duration::from_secs(2));
                assert!(matches!(later[..], [Action::FindCoordinator]), "{err}");
            }
            _ => {
                assert!(matches!(actions[..], [Action::Fail(_)]), "{err}");
                assert_eq!(m.phase(), Phase::Failed);
            }
        }
    }
}

#[test]
fn sync_errors_rejoin_or_fail() {
    let t0 = Instant::now();
    for (error, expected_id) in [
        (KafkaCode::REBALANCE_IN_PROGRESS, Some("me")),
        (KafkaCode::UNKNOWN_MEMBER_ID, Some("")),
        (KafkaCode::ILLEGAL_GENERATION, Some("me")),
        (KafkaCode::from_code(82).unwrap(), None),
    ] {
        let mut m = Membership::new(config(None));
        m.start(t0);
        m.coordinator_found(t0);
        m.joined(joined("me", "other", 2), t0);
        let actions = m.synced(Err(code(error)), t0);
        match expected_id {
            Some(id) => assert!(is_join(&actions, id), "{error:?}: {actions:?}"),
            None => assert!(matches!(actions[..], [Action::Fail(_)])),
        }
    }
}

#[test]
fn a_coordinator_lost_while_stable_keeps_the_session_until_the_timeout() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    m.poll(t0);
    let actions = m.heartbeat_done(Err(code(KafkaCode::NOT_COORDINATOR)), t0);
    assert_eq!(m.phase(), Phase::FindingCoordinator);
    assert!(!actions.iter().any(|a| matches!(a, Action::EndSession(_))));
    // Found again in time: back to stable, same session, a heartbeat goes out at once.
    let t1 = t0 + Duration::from_millis(500);
    let actions = m.coordinator_found(t1);
    assert_eq!(m.phase(), Phase::Stable);
    assert!(
        matches!(actions[0], Action::Heartbeat { generation: 1, .. }),
        "{actions:?}"
    );
}

#[test]
fn no_answer_for_a_session_timeout_means_the_claims_are_lost() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    m.poll(t0);
    m.heartbeat_done(Err(code(KafkaCode::COORDINATOR_NOT_AVAILABLE)), t0);
    // The coordinator stays unreachable past the session timeout.
    let actions = m.poll(t0 + SESSION);
    assert!(
        matches!(actions[..], [Action::EndSession(SessionEnd::Lost)]),
        "{actions:?}"
    );
    assert_eq!(m.member_id(), "");
    // Heartbeats never answered at all, too.
    let mut m = stable(t0);
    m.poll(t0);
    assert!(matches!(
        m.poll(t0 + SESSION)[..],
        [Action::EndSession(SessionEnd::Lost)]
    ));
}

#[test]
fn a_partition_count_change_triggers_a_rebalance_that_commits() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    assert!(matches!(
        m.rejoin(t0)[..],
        [Action::EndSession(SessionEnd::Rebalance)]
    ));
    assert!(is_join(&m.session_ended(t0), "me"));
    // Outside a session it is a no-op.
    assert!(!m
        .rejoin(t0)
        .iter()
        .any(|a| matches!(a, Action::EndSession(_))));
}

#[test]
fn close_commits_ends_the_session_and_leaves() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    assert!(matches!(
        m.close(t0)[..],
        [Action::EndSession(SessionEnd::Close)]
    ));
    assert!(matches!(&m.session_ended(t0)[..], [Action::Leave { member_id }] if member_id == "me"));
    m.left();
    assert_eq!(m.phase(), Phase::Left);
}

#[test]
fn a_static_member_does_not_leave() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(Some("instance-1")));
    m.start(t0);
    m.coordinator_found(t0);
    m.joined(joined("me", "other", 1), t0);
    m.synced(Ok(Bytes::new()), t0);
    m.close(t0);
    assert!(m.session_ended(t0).is_empty());
    assert_eq!(m.phase(), Phase::Left);
}

#[test]
fn close_during_a_revoke_leaves_after_it() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    m.poll(t0);
    m.heartbeat_done(Err(code(KafkaCode::REBALANCE_IN_PROGRESS)), t0);
    assert!(m.close(t0).is_empty());
    assert!(matches!(&m.session_ended(t0)[..], [Action::Leave { .. }]));
}

#[test]
fn fenced_instance_id_on_heartbeat_is_fatal_and_loses_the_session() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    m.poll(t0);
    let actions = m.heartbeat_done(Err(code(KafkaCode::from_code(82).unwrap())), t0);
    assert!(matches!(
        actions[..],
        [Action::EndSession(SessionEnd::Lost), Action::Fail(_)]
    ));
    assert!(m.session_ended(t0).is_empty());
    assert_eq!(m.phase(), Phase::Failed);
}

#[test]
fn a_closed_client_fails_the_member_at_once() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    m.poll(t0);
    let closed = Error::client_closed();
    let actions = m.heartbeat_done(Err(closed), t0);
    assert!(matches!(
        actions[..],
        [Action::EndSession(SessionEnd::Lost), Action::Fail(_)]
    ));
    assert!(m.session_ended(t0).is_empty());
    assert_eq!(m.phase(), Phase::Failed);
}

#[test]
fn stale_answers_are_ignored() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    // A late JoinGroup or SyncGroup answer from an earlier round changes nothing.
    m.joined(joined("me", "me", 9), t0);
    m.synced(Ok(Bytes::new()), t0);
    assert_eq!((m.phase(), m.generation()), (Phase::Stable, 1));
}

#[test]
fn coordinator_lookup_failures_back_off_and_non_retriable_ones_fail() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(None));
    m.start(t0);
    let actions = m.coordinator_failed(&code(KafkaCode::COORDINATOR_NOT_AVAILABLE), t0);
    assert!(matches!(actions[..], [Action::WaitUntil(at)] if at > t0));
    assert!(matches!(
        m.poll(t0 + Duration::from_secs(1))[..],
        [Action::FindCoordinator]
    ));
    let actions = m.coordinator_failed(&code(KafkaCode::from_code(30).unwrap()), t0);
    assert!(matches!(actions[..], [Action::Fail(_)]));
}

#[test]
fn close_while_rediscovering_the_coordinator_commits_before_leaving() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    m.poll(t0 + HEARTBEAT);
    m.heartbeat_done(Err(code(KafkaCode::NOT_COORDINATOR)), t0 + HEARTBEAT);
    assert_eq!(m.phase(), Phase::FindingCoordinator);
    // The session is still ours: end it (final commit) first, then leave.
    assert!(matches!(
        m.close(t0 + HEARTBEAT)[..],
        [Action::EndSession(SessionEnd::Close)]
    ));
    assert!(matches!(
        &m.session_ended(t0 + HEARTBEAT)[..],
        [Action::Leave { .. }]
    ));
}

/// A cooperative member driven to Stable as a follower, generation 1.
fn stable_cooperative(t0: Instant, instance_id: Option<&str>) -> Membership {
    let mut m = Membership::new(MembershipConfig {
        cooperative: true,
        ..config(instance_id)
    });
    m.start(t0);
    m.coordinator_found(t0);
    m.joined(joined("me", "other", 1), t0);
    let actions = m.synced(Ok(Bytes::from_static(b"plan-1")), t0);
    assert!(matches!(
        actions[0],
        Action::StartSession { generation: 1, .. }
    ));
    m
}

#[test]
fn a_cooperative_rebalance_keeps_the_session_and_updates_it() {
    let t0 = Instant::now();
    let mut m = stable_cooperative(t0, None);
    m.poll(t0);
    let actions = m.heartbeat_done(Err(code(KafkaCode::REBALANCE_IN_PROGRESS)), t0);
    assert!(
        matches!(&actions[..], [Action::SessionRebalancing, Action::Join { member_id }] if member_id == "me"),
        "rejoins at once, no EndSession: {actions:?}"
    );
    m.joined(joined("me", "other", 2), t0);
    let actions = m.synced(Ok(Bytes::from_static(b"plan-2")), t0);
    assert!(
        matches!(&actions[0], Action::UpdateSession { generation: 2, assignment } if assignment == "plan-2"),
        "{actions:?}"
    );
    assert_eq!(m.phase(), Phase::Stable);
    // Partitions were revoked: the follow-up rebalance starts right away.
    let actions = m.session_updated(true, None, t0);
    assert!(matches!(
        &actions[..],
        [Action::SessionRebalancing, Action::Join { .. }]
    ));
    m.joined(joined("me", "other", 3), t0);
    m.synced(Ok(Bytes::from_static(b"plan-3")), t0);
    // Nothing revoked: stay stable.
    assert!(!m
        .session_updated(false, None, t0)
        .iter()
        .any(|a| matches!(a, Action::Join { .. })));
}

#[test]
fn a_cooperative_member_that_loses_its_membership_while_rejoining_ends_the_session() {
    for error in [KafkaCode::UNKNOWN_MEMBER_ID, KafkaCode::ILLEGAL_GENERATION] {
        let t0 = Instant::now();
        let mut m = stable_cooperative(t0, None);
        m.rejoin(t0);
        assert_eq!(m.phase(), Phase::Joining);
        let actions = m.joined(JoinOutcome::Failed(code(error)), t0);
        assert!(
            matches!(actions[..], [Action::EndSession(SessionEnd::Lost)]),
            "{error:?}: {actions:?}"
        );
        // After the session ended, a fresh session starts (not an update).
        m.session_ended(t0);
        m.joined(joined("me", "other", 5), t0);
        let actions = m.synced(Ok(Bytes::new()), t0);
        assert!(
            matches!(actions[0], Action::StartSession { generation: 5, .. }),
            "{error:?}"
        );
    }
}

#[test]
fn a_cooperative_sync_rebalance_in_progress_rejoins_keeping_the_session() {
    let t0 = Instant::now();
    let mut m = stable_cooperative(t0, None);
    m.rejoin(t0);
    m.joined(joined("me", "other", 2), t0);
    let actions = m.synced(Err(code(KafkaCode::REBALANCE_IN_PROGRESS)), t0);
    assert!(is_join(&actions, "me"), "{actions:?}");
}

#[test]
fn a_cooperative_member_closing_while_rejoining_commits_first() {
    let t0 = Instant::now();
    let mut m = stable_cooperative(t0, None);
    m.rejoin(t0);
    assert!(matches!(
        m.close(t0)[..],
        [Action::EndSession(SessionEnd::Close)]
    ));
    assert!(matches!(&m.session_ended(t0)[..], [Action::Leave { .. }]));
}

#[test]
fn a_cooperative_member_without_a_coordinator_for_a_session_timeout_loses_the_session() {
    let t0 = Instant::now();
    let mut m = stable_cooperative(t0, None);
    m.rejoin(t0);
    // The join fails for want of a coordinator, again and again.
    m.joined(
        JoinOutcome::Failed(code(KafkaCode::COORDINATOR_NOT_AVAILABLE)),
        t0,
    );
    assert_eq!(m.phase(), Phase::FindingCoordinator);
    let late = t0 + SESSION + Duration::from_millis(1);
    assert!(matches!(
        m.poll(late)[..],
        [Action::EndSession(SessionEnd::Lost)]
    ));
}

#[test]
fn a_stalled_handler_makes_the_member_leave_without_commit_then_rejoin_fresh() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    let actions = m.stalled(t0);
    assert!(
        matches!(&actions[..], [Action::Leave { member_id }, Action::EndSession(SessionEnd::Lost)] if member_id == "me"),
        "{actions:?}"
    );
    m.left();
    assert_eq!(m.phase(), Phase::Revoking, "a stall is not a close");
    assert!(is_join(&m.session_ended(t0), ""), "rejoins as a new member");
    // Outside a session a stall report is stale.
    assert!(!m
        .stalled(t0)
        .iter()
        .any(|a| matches!(a, Action::Leave { .. })));
}

#[test]
fn a_stalled_static_member_forgets_its_id_without_leave() {
    let t0 = Instant::now();
    let mut m = stable_cooperative(t0, Some("instance-1"));
    let actions = m.stalled(t0);
    assert!(
        matches!(actions[..], [Action::EndSession(SessionEnd::Lost)]),
        "{actions:?}"
    );
    assert!(is_join(&m.session_ended(t0), ""));
}

#[test]
fn a_rejoin_asked_while_the_coordinator_is_looked_up_again_is_not_lost() {
    let t0 = Instant::now();
    let mut m = stable(t0);
    m.poll(t0);
    m.heartbeat_done(Err(code(KafkaCode::NOT_COORDINATOR)), t0);
    assert_eq!(m.phase(), Phase::FindingCoordinator);
    m.rejoin(t0);
    let actions = m.coordinator_found(t0);
    assert!(
        matches!(actions[..], [Action::EndSession(SessionEnd::Rebalance)]),
        "{actions:?}"
    );
}

#[test]
fn a_heartbeat_error_while_claims_change_hands_decides_first() {
    let t0 = Instant::now();
    let mut m = stable_cooperative(t0, None);
    m.rejoin(t0);
    m.joined(joined("me", "other", 2), t0);
    m.synced(Ok(Bytes::new()), t0);
    let actions = m.session_updated(true, Some(Err(code(KafkaCode::UNKNOWN_MEMBER_ID))), t0);
    assert!(
        matches!(actions[..], [Action::EndSession(SessionEnd::Lost)]),
        "{actions:?}"
    );
}
