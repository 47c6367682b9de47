//! The transaction coordinator's state machine on a fake clock: every test
//! drives `TransactionCoordinator` directly with explicit instants, as the
//! driver would, and collects the completions it would carry out.

use std::time::{Duration, Instant};

use super::*;

const NODE: i32 = 1;
const ID: &str = "tx";
const TIMEOUT_MS: i32 = 60_000;

/// A coordinator on a clock the test moves, handing out producer ids from
/// 1000 and keeping the completions the driver would carry out.
struct Harness {
    coordinator: TransactionCoordinator,
    now: Instant,
    next_id: i64,
    completed: Vec<Completion>,
}

impl Harness {
    fn new() -> Self {
        Harness::with(TxnConfig::default())
    }

    fn with(config: TxnConfig) -> Self {
        Harness {
            coordinator: TransactionCoordinator::new(vec![NODE], config),
            now: Instant::now(),
            next_id: 1000,
            completed: Vec::new(),
        }
    }

    fn settle(&mut self) {
        self.coordinator.tick(self.now);
        self.completed.extend(self.coordinator.take_completions());
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.settle();
    }

    fn init_as(&mut self, expected: Expected) -> Result<(i64, i16), i16> {
        let next_id = &mut self.next_id;
        let mut allocate = || {
            let id = *next_id;
            *next_id += 1;
            id
        };
        let result = self.coordinator.init_producer_id(
            NODE,
            self.now,
            ID,
            TIMEOUT_MS,
            expected,
            &mut allocate,
        );
        self.settle();
        result
    }

    fn init(&mut self) -> Result<(i64, i16), i16> {
        self.init_as(None)
    }

    fn add(&mut self, (pid, epoch): (i64, i16), partitions: &[(&str, i32)]) -> i16 {
        let partitions: Vec<(String, i32)> = partitions
            .iter()
            .map(|(t, p)| ((*t).to_owned(), *p))
            .collect();
        let code = self
            .coordinator
            .add_partitions(NODE, self.now, ID, pid, epoch, &partitions);
        self.settle();
        code
    }

    fn add_group(&mut self, (pid, epoch): (i64, i16), group: &str) -> i16 {
        let code = self
            .coordinator
            .add_offsets(NODE, self.now, ID, pid, epoch, group);
        self.settle();
        code
    }

    fn end(&mut self, (pid, epoch): (i64, i16), commit: bool) -> i16 {
        let code = self
            .coordinator
            .end_txn(NODE, self.now, ID, pid, epoch, commit);
        self.settle();
        code
    }

    fn state(&self) -> TransactionState {
        self.coordinator.view(ID).unwrap().state
    }
}

fn partitions(list: &[(&str, i32)]) -> Vec<(String, i32)> {
    list.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
}

#[test]
fn init_allocates_then_bumps() {
    let mut h = Harness::new();
    assert!(h.coordinator.view(ID).is_none());
    assert_eq!(h.init(), Ok((1000, 0)));
    assert_eq!(h.state(), TransactionState::Empty);
    assert_eq!(h.init(), Ok((1000, 1)), "a new instance fences the old");
    assert_eq!(h.init(), Ok((1000, 2)));
    assert_eq!(
        h.coordinator.view(ID).unwrap().timeout,
        Duration::from_secs(60)
    );
}

#[test]
fn init_checks_its_arguments_first() {
    let mut h = Harness::new();
    let mut never = || -> i64 { panic!("no producer id for a refused request") };
    let mut init = |id: &str, timeout_ms: i32, node: i32| {
        h.coordinator
            .init_producer_id(node, h.now, id, timeout_ms, None, &mut never)
    };
    assert_eq!(init("", TIMEOUT_MS, NODE), Err(INVALID_REQUEST));
    assert_eq!(init(ID, 0, NODE), Err(INVALID_TRANSACTION_TIMEOUT));
    assert_eq!(init(ID, 900_001, NODE), Err(INVALID_TRANSACTION_TIMEOUT));
    assert_eq!(init(ID, TIMEOUT_MS, 2), Err(NOT_COORDINATOR));
    let mut h = Harness::with(TxnConfig {
        max_timeout: Duration::from_secs(1),
        ..TxnConfig::default()
    });
    assert_eq!(h.init(), Err(INVALID_TRANSACTION_TIMEOUT));
}

#[test]
fn kip_360_bumps_retries_and_fences() {
    let mut h = Harness::new();
    let (pid, epoch) = h.init().unwrap();
    // The producer's own bump: the current epoch.
    assert_eq!(h.init_as(Some((pid, epoch))), Ok((pid, 1)));
    // Its answer was lost; the retry with the old epoch gets the same one.
    assert_eq!(h.init_as(Some((pid, epoch))), Ok((pid, 1)));
    assert_eq!(h.init_as(Some((pid, 7))), Err(PRODUCER_FENCED));
    assert_eq!(h.init_as(Some((pid + 1, 1))), Err(PRODUCER_FENCED));
    // A new instance (no producer id) forgets the previous epoch, so the
    // old instance's retry is fenced.
    assert_eq!(h.init(), Ok((pid, 2)));
    assert_eq!(h.init_as(Some((pid, 1))), Err(PRODUCER_FENCED));
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let mut h = Harness::new();
    h.init().unwrap();
    h.coordinator.ids.get_mut(ID).unwrap().epoch = LAST_EPOCH;
    assert_eq!(h.init(), Ok((1001, 0)));
    // The previous producer id, at the last epoch, may still retry.
    h.coordinator.ids.get_mut(ID).unwrap().epoch = LAST_EPOCH;
    assert_eq!(h.init_as(Some((1001, LAST_EPOCH))), Ok((1002, 0)));
    assert_eq!(
        h.init_as(Some((1001, LAST_EPOCH))),
        Ok((1002, 0)),
        "a retry"
    );
}

#[test]
fn a_transaction_commits_through_its_states() {
    let mut h = Harness::new();
    let producer = h.init().unwrap();
    assert_eq!(h.end(producer, true), INVALID_TXN_STATE, "nothing to end");
    assert_eq!(h.add(producer, &[("t", 0), ("t", 1)]), NONE);
    assert_eq!(h.state(), TransactionState::Ongoing);
    assert_eq!(h.add(producer, &[("t", 1)]), NONE, "already in");
    assert_eq!(h.add_group(producer, "g"), NONE);
    let view = h.coordinator.view(ID).unwrap();
    assert_eq!(view.partitions, partitions(&[("t", 0), ("t", 1)]));
    assert_eq!(view.groups, ["g"]);
    assert_eq!(h.end(producer, true), NONE);
    assert_eq!(h.state(), TransactionState::CompleteCommit);
    assert_eq!(
        h.completed,
        [Completion {
            transactional_id: ID.to_owned(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            commit: true,
            coordinator_epoch: 0,
            partitions: partitions(&[("t", 0), ("t", 1)]),
            groups: vec!["g".to_owned()],
        }]
    );
    assert!(h.coordinator.view(ID).unwrap().partitions.is_empty());
    // A retry of the same outcome is fine, the other one is not.
    assert_eq!(h.end(producer, true), NONE);
    assert_eq!(h.end(producer, false), INVALID_TXN_STATE);
    assert_eq!(h.completed.len(), 1, "no second set of markers");
    // The next transaction, same epoch.
    assert_eq!(h.add(producer, &[("t", 2)]), NONE);
    assert_eq!(h.end(producer, false), NONE);
    assert_eq!(h.state(), TransactionState::CompleteAbort);
    assert!(!h.completed[1].commit);
    assert_eq!(h.end(producer, false), NONE);
    assert_eq!(h.end(producer, true), INVALID_TXN_STATE);
}

#[test]
fn requests_are_checked_against_the_producer() {
    let mut h = Harness::new();
    assert_eq!(
        h.add((1000, 0), &[("t", 0)]),
        INVALID_PRODUCER_ID_MAPPING,
        "unknown id"
    );
    let (pid, epoch) = h.init().unwrap();
    assert_eq!(
        h.add((pid + 1, epoch), &[("t", 0)]),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(h.add((pid, epoch + 1), &[("t", 0)]), PRODUCER_FENCED);
    assert_eq!(
        h.add_group((pid + 1, epoch), "g"),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(h.end((pid, epoch + 1), true), PRODUCER_FENCED);
    let code = h
        .coordinator
        .add_partitions(NODE, h.now, "", pid, epoch, &partitions(&[("t", 0)]));
    assert_eq!(code, INVALID_REQUEST);
    assert_eq!(h.state(), TransactionState::Empty, "nothing was added");
}

#[test]
fn a_second_instance_aborts_the_first_ones_transaction() {
    let mut h = Harness::new();
    let old = h.init().unwrap();
    assert_eq!(h.add(old, &[("t", 0)]), NONE);
    assert_eq!(h.add_group(old, "g"), NONE);
    // The abort completes at once (no marker delay), with the fencing epoch.
    assert_eq!(h.init(), Err(CONCURRENT_TRANSACTIONS));
    assert_eq!(h.state(), TransactionState::CompleteAbort);
    assert_eq!(h.completed.len(), 1);
    let abort = &h.completed[0];
    assert_eq!((abort.commit, abort.producer_epoch), (false, 1));
    assert_eq!(abort.partitions, partitions(&[("t", 0)]));
    assert_eq!(abort.groups, ["g"]);
    // The retry bumps again; the fencing epoch is never handed out.
    assert_eq!(h.init(), Ok((old.0, 2)));
    assert_eq!(h.add(old, &[("t", 0)]), PRODUCER_FENCED);
    assert_eq!(h.end(old, true), PRODUCER_FENCED);
    assert_eq!(h.add_group(old, "g"), PRODUCER_FENCED);
}

#[test]
fn markers_held_back_make_the_coordinator_answer_concurrent_transactions() {
    let delay = Duration::from_millis(100);
    let mut h = Harness::with(TxnConfig {
        marker_delay: delay,
        ..TxnConfig::default()
    });
    let producer = h.init().unwrap();
    h.add(producer, &[("t", 0)]);
    assert_eq!(h.end(producer, true), NONE, "answered once prepared");
    assert_eq!(h.state(), TransactionState::PrepareCommit);
    assert!(h.completed.is_empty());
    assert_eq!(h.coordinator.next_deadline(), Some(h.now + delay));
    assert_eq!(h.end(producer, true), CONCURRENT_TRANSACTIONS);
    assert_eq!(h.end(producer, false), INVALID_TXN_STATE);
    assert_eq!(h.add(producer, &[("t", 1)]), CONCURRENT_TRANSACTIONS);
    assert_eq!(h.add_group(producer, "g"), CONCURRENT_TRANSACTIONS);
    assert_eq!(h.init(), Err(CONCURRENT_TRANSACTIONS));
    let verified = h
        .coordinator
        .verify(ID, producer.0, producer.1, Target::Partition("t", 0));
    assert_eq!(verified, Err(CONCURRENT_TRANSACTIONS));
    h.advance(delay);
    assert_eq!(h.state(), TransactionState::CompleteCommit);
    assert_eq!(h.completed.len(), 1);
    assert_eq!(h.add(producer, &[("t", 1)]), NONE);
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new();
    let producer = h.init().unwrap();
    h.add(producer, &[("t", 0)]);
    let timeout = Duration::from_millis(u64::try_from(TIMEOUT_MS).unwrap());
    assert_eq!(h.coordinator.next_deadline(), Some(h.now + timeout));
    // Adding more does not restart the timeout.
    h.advance(timeout / 2);
    h.add(producer, &[("t", 1)]);
    h.advance(timeout / 2 - Duration::from_millis(1));
    assert_eq!(h.state(), TransactionState::Ongoing);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.state(), TransactionState::CompleteAbort);
    let abort = &h.completed[0];
    assert_eq!(
        (abort.commit, abort.producer_epoch),
        (false, producer.1 + 1)
    );
    assert_eq!(abort.partitions, partitions(&[("t", 0), ("t", 1)]));
    assert_eq!(
        h.coordinator.view(ID).unwrap().producer_epoch,
        producer.1 + 1
    );
    assert_eq!(h.add(producer, &[("t", 0)]), PRODUCER_FENCED);
    assert_eq!(h.end(producer, false), PRODUCER_FENCED);
    assert_eq!(h.init_as(Some(producer)), Err(PRODUCER_FENCED));
    assert_eq!(h.init(), Ok((producer.0, producer.1 + 2)));
    assert_eq!(h.coordinator.next_deadline(), None);
}

#[test]
fn verification_wants_the_target_in_the_ongoing_transaction() {
    let mut h = Harness::new();
    let (pid, epoch) = h.init().unwrap();
    let verify = |h: &Harness, pid: i64, epoch: i16, target: Target<'_>| {
        h.coordinator.verify(ID, pid, epoch, target)
    };
    let t0 = Target::Partition("t", 0);
    assert_eq!(verify(&h, pid, epoch, t0), Err(TRANSACTION_ABORTABLE));
    h.add((pid, epoch), &[("t", 0)]);
    assert_eq!(verify(&h, pid, epoch, t0), Ok(()));
    assert_eq!(
        verify(&h, pid, epoch, Target::Partition("t", 1)),
        Err(TRANSACTION_ABORTABLE)
    );
    assert_eq!(
        verify(&h, pid, epoch, Target::Group("g")),
        Err(TRANSACTION_ABORTABLE)
    );
    h.add_group((pid, epoch), "g");
    assert_eq!(verify(&h, pid, epoch, Target::Group("g")), Ok(()));
    assert_eq!(verify(&h, pid, epoch - 1, t0), Err(PRODUCER_FENCED));
    assert_eq!(
        verify(&h, pid + 1, epoch, t0),
        Err(INVALID_PRODUCER_ID_MAPPING)
    );
    assert_eq!(
        h.coordinator.verify("other", pid, epoch, t0),
        Err(INVALID_PRODUCER_ID_MAPPING)
    );
    h.end((pid, epoch), true);
    assert_eq!(
        verify(&h, pid, epoch, t0),
        Err(TRANSACTION_ABORTABLE),
        "ended"
    );
}

#[test]
fn a_moved_coordinator_keeps_the_state_and_bumps_its_epoch() {
    let mut h = Harness::new();
    h.coordinator = TransactionCoordinator::new(vec![1, 2, 3], TxnConfig::default());
    let home = h.coordinator.coordinator_of(ID);
    assert_eq!(home, crate::placement::by_hash(ID, &[1, 2, 3], 1));
    let other = if home == 1 { 2 } else { 1 };
    let mut allocate = || 1000;
    let producer = h
        .coordinator
        .init_producer_id(home, h.now, ID, TIMEOUT_MS, None, &mut allocate)
        .unwrap();
    let add = |h: &mut Harness, node: i32| {
        h.coordinator.add_partitions(
            node,
            h.now,
            ID,
            producer.0,
            producer.1,
            &partitions(&[("t", 0)]),
        )
    };
    assert_eq!(add(&mut h, other), NOT_COORDINATOR);
    assert_eq!(add(&mut h, home), NONE);
    h.coordinator.move_coordinator(ID, other);
    assert_eq!(h.coordinator.coordinator_of(ID), other);
    assert_eq!(add(&mut h, home), NOT_COORDINATOR);
    assert_eq!(
        h.coordinator
            .end_txn(other, h.now, ID, producer.0, producer.1, true),
        NONE,
        "the transaction moved along"
    );
    h.settle();
    assert_eq!(h.completed[0].coordinator_epoch, 1);
}

#[test]
fn a_loading_or_stopped_coordinator_holds_its_timers() {
    let mut h = Harness::new();
    let producer = h.init().unwrap();
    h.add(producer, &[("t", 0)]);
    h.coordinator.set_loading(ID, true);
    assert_eq!(h.add(producer, &[("t", 1)]), COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(h.end(producer, true), COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(
        h.coordinator
            .verify(ID, producer.0, producer.1, Target::Partition("t", 0)),
        Err(COORDINATOR_LOAD_IN_PROGRESS)
    );
    assert_eq!(h.coordinator.next_deadline(), None);
    h.advance(Duration::from_secs(120));
    assert_eq!(h.state(), TransactionState::Ongoing);
    h.coordinator.set_loading(ID, false);
    h.coordinator.broker_stopped(NODE);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.state(), TransactionState::Ongoing);
    h.coordinator.broker_started(NODE);
    h.advance(Duration::from_millis(1));
    assert_eq!(
        h.state(),
        TransactionState::CompleteAbort,
        "overdue, aborted"
    );
}

#[test]
fn fencing_maps_for_old_clients() {
    assert_eq!(fenced_for(PRODUCER_FENCED, true), PRODUCER_FENCED);
    assert_eq!(fenced_for(PRODUCER_FENCED, false), INVALID_PRODUCER_EPOCH);
    assert_eq!(fenced_for(NONE, false), NONE);
}
