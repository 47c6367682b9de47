//! The KIP-848 membership state machine on a fake clock.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn config() -> Config {
    Config {
        instance_id: None,
        session_timeout: Duration::from_secs(45),
        heartbeat_interval: Duration::from_secs(3),
        retry_backoff: Backoff::new(Duration::from_millis(100), SECOND),
    }
}

fn ids() -> Box<dyn FnMut() -> String + Send> {
    let mut n = 0;
    Box::new(move || {
        n += 1;
        format!("id-{n}")
    })
}

fn topic() -> Uuid {
    Uuid::from_u128(7)
}

fn assignment(partitions: &[i32]) -> Assignment {
    if partitions.is_empty() {
        return Assignment::new();
    }
    Assignment::from([(topic(), partitions.to_vec())])
}

fn reply(epoch: i32, assignment: Option<Assignment>) -> Reply {
    Reply {
        member_id: None,
        epoch,
        heartbeat_interval_ms: 500,
        assignment,
    }
}

fn heartbeat(actions: &[Action]) -> Heartbeat {
    match actions {
        [Action::Heartbeat(h)] => h.clone(),
        other => panic!("expected one heartbeat, got {other:?}"),
    }
}

/// A member at `epoch` owning `partitions`, its owned set acknowledged.
fn member(partitions: &[i32], t0: Instant) -> Membership {
    let mut m = Membership::new(config(), ids());
    heartbeat(&m.start(t0));
    let actions = m.heartbeat_done(Ok(reply(1, Some(assignment(partitions)))), t0);
    assert!(matches!(actions[0], Action::StartSession { epoch: 1, .. }));
    assert!(matches!(actions[1], Action::Reconcile { epoch: 1, .. }));
    let h = heartbeat(&m.reconciled(assignment(partitions), true, t0));
    assert_eq!(h.owned, Some(assignment(partitions)));
    m.heartbeat_done(Ok(reply(1, None)), t0);
    m
}

#[test]
fn the_join_is_a_full_heartbeat_at_epoch_0_with_nothing_owned() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(), ids());
    let h = heartbeat(&m.start(t0));
    assert_eq!(h.member_id, "id-1");
    assert_eq!(h.epoch, 0);
    assert!(h.full);
    assert_eq!(h.owned, Some(Assignment::new()));
}

#[test]
fn after_the_join_heartbeats_are_lean_and_follow_the_brokers_interval() {
    let t0 = Instant::now();
    let mut m = member(&[0, 1], t0);
    let next = t0 + Duration::from_millis(500);
    assert_eq!(m.poll(t0), vec![Action::WaitUntil(next)]);
    let h = heartbeat(&m.poll(next));
    assert_eq!(h.epoch, 1);
    assert!(!h.full);
    assert_eq!(h.owned, None, "owned partitions unchanged: not sent");
}

#[test]
fn a_non_positive_interval_falls_back_to_the_configured_one() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(), ids());
    m.start(t0);
    let mut r = reply(1, None);
    r.heartbeat_interval_ms = 0;
    let actions = m.heartbeat_done(Ok(r), t0);
    assert!(matches!(actions[0], Action::StartSession { .. }));
    assert_eq!(
        m.poll(t0),
        vec![Action::WaitUntil(t0 + Duration::from_secs(3))]
    );
}

#[test]
fn a_revocation_is_reported_by_a_heartbeat_at_once_after_reconciling() {
    let t0 = Instant::now();
    let mut m = member(&[0, 1, 2], t0);
    let actions = m.heartbeat_done(Ok(reply(1, Some(assignment(&[0])))), t0);
    heartbeat(&m.poll(t0 + SECOND)); // the heartbeat that got the answer above
    assert_eq!(
        actions,
        vec![Action::Reconcile {
            epoch: 1,
            assignment: assignment(&[0])
        }]
    );
    let t1 = t0 + 2 * SECOND;
    m.heartbeat_done(Ok(reply(1, None)), t1);
    let h = heartbeat(&m.reconciled(assignment(&[0]), true, t1));
    assert_eq!(h.owned, Some(assignment(&[0])));
    assert!(!h.full);
}

#[test]
fn an_assignment_arriving_during_a_reconciliation_waits_for_it() {
    let t0 = Instant::now();
    let mut m = member(&[0, 1], t0);
    heartbeat(&m.poll(t0 + SECOND));
    let actions = m.heartbeat_done(Ok(reply(2, Some(assignment(&[0])))), t0 + SECOND);
    assert!(matches!(actions[..], [Action::Reconcile { .. }]));
    heartbeat(&m.poll(t0 + 2 * SECOND));
    let actions = m.heartbeat_done(Ok(reply(3, Some(assignment(&[0, 5])))), t0 + 2 * SECOND);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Reconcile { .. })),
        "one reconciliation at a time: {actions:?}"
    );
    let actions = m.reconciled(assignment(&[0]), true, t0 + 2 * SECOND);
    assert_eq!(
        actions,
        vec![Action::Reconcile {
            epoch: 3,
            assignment: assignment(&[0, 5])
        }]
    );
}

#[test]
fn unresolved_topic_ids_are_reconciled_again_after_a_backoff() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(), ids());
    m.start(t0);
    m.heartbeat_done(Ok(reply(1, Some(assignment(&[0])))), t0);
    // The topic id was unknown: nothing owned yet.
    let actions = m.reconciled(Assignment::new(), false, t0);
    let Action::WaitUntil(at) = actions[0] else {
        panic!("{actions:?}")
    };
    assert!(
        at < t0 + Duration::from_millis(500),
        "the retry comes first"
    );
    assert_eq!(
        m.poll(at),
        vec![Action::Reconcile {
            epoch: 1,
            assignment: assignment(&[0])
        }]
    );
}

#[test]
fn heartbeat_answers_do_not_retry_unresolved_ids_before_the_backoff() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(), ids());
    m.start(t0);
    m.heartbeat_done(Ok(reply(1, Some(assignment(&[0])))), t0);
    let actions = m.reconciled(Assignment::new(), false, t0);
    let Action::WaitUntil(retry) = actions[0] else {
        panic!("{actions:?}")
    };
    // A lean answer in between: no reconciliation (and no metadata refresh) yet.
    let early = t0 + Duration::from_millis(10);
    assert!(early < retry);
    let actions = m.heartbeat_done(Ok(reply(1, None)), early);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Reconcile { .. })),
        "{actions:?}"
    );
    // A new assignment is tried at once.
    let actions = m.heartbeat_done(Ok(reply(2, Some(assignment(&[0, 1])))), early);
    assert_eq!(
        actions,
        vec![Action::Reconcile {
            epoch: 2,
            assignment: assignment(&[0, 1])
        }]
    );
}

#[test]
fn a_fenced_member_loses_its_claims_and_rejoins_with_the_same_id() {
    let t0 = Instant::now();
    let mut m = member(&[0], t0);
    heartbeat(&m.poll(t0 + SECOND));
    let actions = m.heartbeat_done(
        Err(Error::kafka(KafkaCode::FENCED_MEMBER_EPOCH)),
        t0 + SECOND,
    );
    assert_eq!(actions, vec![Action::EndSession(SessionEnd::Lost)]);
    assert_eq!(
        m.poll(t0 + 10 * SECOND),
        vec![],
        "no heartbeats while releasing"
    );
    let h = heartbeat(&m.session_ended(t0 + 2 * SECOND));
    assert_eq!((h.member_id.as_str(), h.epoch, h.full), ("id-1", 0, true));
    assert_eq!(h.owned, Some(Assignment::new()));
}

#[test]
fn a_forgotten_member_rejoins_with_a_new_id() {
    let t0 = Instant::now();
    let mut m = member(&[0], t0);
    heartbeat(&m.poll(t0 + SECOND));
    m.heartbeat_done(Err(Error::kafka(KafkaCode::UNKNOWN_MEMBER_ID)), t0 + SECOND);
    let h = heartbeat(&m.session_ended(t0 + SECOND));
    assert_eq!((h.member_id.as_str(), h.epoch), ("id-2", 0));
}

#[test]
fn a_transport_error_retries_with_a_full_heartbeat() {
    let t0 = Instant::now();
    let mut m = member(&[0], t0);
    heartbeat(&m.poll(t0 + SECOND));
    let actions = m.heartbeat_done(Err(Error::kafka(KafkaCode::NOT_COORDINATOR)), t0 + SECOND);
    let Action::WaitUntil(at) = actions[0] else {
        panic!("{actions:?}")
    };
    let h = heartbeat(&m.poll(at));
    assert!(h.full);
    assert_eq!(h.epoch, 1, "a retry keeps the epoch");
    assert_eq!(h.owned, Some(assignment(&[0])));
}

#[test]
fn no_answer_for_the_session_timeout_loses_the_claims() {
    let t0 = Instant::now();
    let mut m = member(&[0], t0);
    let mut now = t0;
    let mut lost = false;
    for _ in 0..200 {
        let actions = m.poll(now);
        match actions.as_slice() {
            [Action::Heartbeat(_)] => {
                m.heartbeat_done(Err(Error::kafka(KafkaCode::COORDINATOR_NOT_AVAILABLE)), now);
            }
            [Action::WaitUntil(at)] => now = *at,
            [Action::EndSession(SessionEnd::Lost)] => {
                lost = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(lost);
    assert!(now >= t0 + Duration::from_secs(45) && now < t0 + Duration::from_secs(47));
}

#[test]
fn unreleased_instance_id_is_retried_a_bounded_number_of_times() {
    let t0 = Instant::now();
    let mut m = Membership::new(
        Config {
            instance_id: Some("i".into()),
            ..config()
        },
        ids(),
    );
    let mut now = t0;
    let mut actions = m.start(now);
    let mut attempts = 0;
    loop {
        match actions.as_slice() {
            [Action::Heartbeat(h)] => {
                assert_eq!(h.instance_id.as_deref(), Some("i"));
                attempts += 1;
                actions =
                    m.heartbeat_done(Err(Error::kafka(KafkaCode::UNRELEASED_INSTANCE_ID)), now);
            }
            [Action::WaitUntil(at)] => {
                now = *at;
                actions = m.poll(now);
            }
            [Action::Fail(err)] => {
                assert!(err.to_string().contains("group.instance.id"), "{err}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(attempts, UNRELEASED_RETRIES + 1);
}

#[test]
fn fatal_errors_say_what_to_do() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(), ids());
    m.start(t0);
    let actions = m.heartbeat_done(Err(Error::kafka(KafkaCode::UNSUPPORTED_VERSION)), t0);
    let [Action::Fail(err)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert!(err.to_string().contains("group.protocol=classic"), "{err}");
    assert_eq!(m.phase(), Phase::Failed);
}

#[test]
fn close_drains_with_heartbeats_then_leaves_with_epoch_minus_one() {
    let t0 = Instant::now();
    let mut m = member(&[0], t0);
    assert_eq!(m.close(t0), vec![Action::EndSession(SessionEnd::Close)]);
    // Still a member while the claims drain.
    let h = heartbeat(&m.poll(t0 + SECOND));
    assert_eq!(h.epoch, 1);
    m.heartbeat_done(Ok(reply(1, Some(assignment(&[0, 1])))), t0 + SECOND);
    let actions = m.session_ended(t0 + 2 * SECOND);
    let [Action::Leave(leave)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (leave.member_id.as_str(), leave.epoch),
        ("id-1", LEAVE_EPOCH)
    );
    m.left();
    assert_eq!(m.phase(), Phase::Left);
}

#[test]
fn a_static_member_leaves_with_epoch_minus_two() {
    let t0 = Instant::now();
    let mut m = Membership::new(
        Config {
            instance_id: Some("i".into()),
            ..config()
        },
        ids(),
    );
    m.start(t0);
    m.heartbeat_done(Ok(reply(1, None)), t0);
    m.close(t0);
    let actions = m.session_ended(t0);
    let [Action::Leave(leave)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(leave.epoch, STATIC_LEAVE_EPOCH);
}

#[test]
fn a_stalled_member_leaves_then_rejoins_once_released() {
    let t0 = Instant::now();
    let mut m = member(&[0], t0);
    let actions = m.stalled(t0);
    assert!(matches!(&actions[0], Action::Leave(h) if h.epoch == LEAVE_EPOCH));
    assert_eq!(actions[1], Action::EndSession(SessionEnd::Lost));
    m.left();
    assert_eq!(m.phase(), Phase::Releasing, "not closing: it rejoins");
    let h = heartbeat(&m.session_ended(t0 + SECOND));
    assert_eq!((h.member_id.as_str(), h.epoch), ("id-1", 0));
}

#[test]
fn a_rejoin_request_reconciles_the_same_assignment_again() {
    let t0 = Instant::now();
    let mut m = member(&[0, 1], t0);
    assert_eq!(
        m.rejoin(t0),
        vec![Action::Reconcile {
            epoch: 1,
            assignment: assignment(&[0, 1])
        }]
    );
}

#[test]
fn a_member_id_from_the_broker_replaces_ours() {
    let t0 = Instant::now();
    let mut m = Membership::new(config(), ids());
    m.start(t0);
    let mut r = reply(1, None);
    r.member_id = Some("broker-made".into());
    m.heartbeat_done(Ok(r), t0);
    assert_eq!(m.member_id(), "broker-made");
}
