//! The examples' scenarios as tests, so they cannot rot: each example's
//! `run` is the scenario and checks its own promises (returning an error
//! when one is broken); these tests run it, on tokio's real clock and on a
//! paused one, and check the report a little further.

#[allow(dead_code)] // the example's `main`
#[path = "../examples/handler_through_a_rebalance.rs"]
mod handler_through_a_rebalance;

#[allow(dead_code)]
#[path = "../examples/faults.rs"]
mod faults;

#[allow(dead_code)]
#[path = "../examples/deterministic.rs"]
mod deterministic;

fn check_rebalances(report: &handler_through_a_rebalance::Report) {
    assert_eq!(report.store.orders.len() as u64, report.produced);
    assert!(report.store.writes >= report.produced);
    for member in ["a", "b", "c"] {
        assert!(
            report.store.sessions.iter().any(|(m, _, _)| *m == member),
            "member {member} had a session: {:?}",
            report.store.sessions
        );
    }
    // Some generation had all three members, each with partitions.
    let three = report.store.sessions.iter().any(|(_, generation, _)| {
        report
            .store
            .sessions
            .iter()
            .filter(|(_, g, partitions)| g == generation && !partitions.is_empty())
            .count()
            == 3
    });
    assert!(three, "a generation of three: {:?}", report.store.sessions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_through_joins_and_leaves() {
    let report = handler_through_a_rebalance::run()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    check_rebalances(&report);
}

/// The same on a paused clock: the mock's timers and the client's run in
/// virtual time, so the scenario takes no real time waiting.
#[tokio::test(start_paused = true)]
async fn a_handler_through_joins_and_leaves_on_a_paused_clock() {
    let report = handler_through_a_rebalance::run()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    check_rebalances(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_and_a_consumer_recover_from_faults() {
    let report = faults::run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.delivered, 300);
    assert_eq!(report.injected_errors, 2);
    assert!(
        report.connections > 3,
        "the clients reconnected after the drops: {} connections",
        report.connections
    );
}

#[tokio::test(start_paused = true)]
async fn a_producer_and_a_consumer_recover_from_faults_on_a_paused_clock() {
    let report = faults::run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.injected_errors, 2);
}

#[tokio::test(start_paused = true)]
async fn deterministic_runs_agree() {
    let [first, second, other] = deterministic::compare()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, second);
    assert_ne!(first.topic_id, other.topic_id);
    assert_eq!(first.leader_epoch, Some(1), "the scheduled leader move ran");
    assert_eq!(first.members.len(), 2);
    assert!(first.members[0].starts_with("a-") && first.members[1].starts_with("b-"));
}
