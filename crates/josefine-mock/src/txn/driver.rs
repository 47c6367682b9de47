//! The tokio side of the transaction coordinator: it feeds the state machine
//! the time, carries out completed transactions, and runs the task that
//! fires their deadlines.
//!
//! The coordinator lives in the cluster state, behind the state lock, so a
//! Produce's check that its partition is in the transaction and its append
//! happen at once with respect to the transaction's end: no batch can slip
//! into a partition behind its marker. Carrying out a completion writes the
//! markers (state lock) and commits or drops the transaction's offsets in
//! the group coordinator, whose lock is taken while the state lock is held:
//! the one place both are held, always in that order (state, then groups),
//! so an OffsetFetch never sees a transaction half-done.
//!
//! Every operation first fires what is due (a transaction past its timeout
//! is aborted before the request that would find it Ongoing), then runs,
//! then fires again (an abort with no marker delay completes at once), and
//! wakes the timer task, whose next deadline may have moved.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{marker, Completion, TransactionView};
use crate::cluster::Shared;
use crate::coordinator;
use crate::produce::{wall_clock_ms, DETERMINISTIC_EPOCH_MS};
use crate::state::ClusterState;

/// Runs an operation on the cluster state (the transaction coordinator and
/// whatever else it needs), settling due deadlines before and after.
pub(crate) fn run<T>(shared: &Shared, op: impl FnOnce(&mut ClusterState, Instant) -> T) -> T {
    let now = coordinator::now();
    let (result, wrote) = {
        let mut state = shared.state();
        let before = settle(shared, &mut state, now);
        let result = op(&mut state, now);
        let after = settle(shared, &mut state, now);
        (result, before || after)
    };
    if wrote {
        shared.notify_changed();
    }
    shared.txn_timer().notify_one();
    result
}

/// Fires the coordinator's due deadlines and carries out every completed
/// transaction; true when markers were written (the caller wakes waiting
/// fetches once the state lock is released).
pub(crate) fn settle(shared: &Shared, state: &mut ClusterState, now: Instant) -> bool {
    state.transactions.tick(now);
    let completions = state.transactions.take_completions();
    if completions.is_empty() {
        return false;
    }
    for completion in &completions {
        write_markers(state, completion);
    }
    let with_offsets: Vec<&Completion> = completions
        .iter()
        .filter(|c| !c.groups.is_empty())
        .collect();
    if !with_offsets.is_empty() {
        // The lock order: state (held), then groups.
        coordinator::with(shared, |groups, _| {
            for completion in with_offsets {
                for group in &completion.groups {
                    groups.complete_transaction(group, completion.producer_id, completion.commit);
                }
            }
        });
    }
    true
}

/// Appends the transaction's marker to each of its partitions that still
/// exists, under the partition's current leader epoch.
fn write_markers(state: &mut ClusterState, completion: &Completion) {
    let deterministic = state.seed.is_some();
    tracing::debug!(
        transactional_id = %completion.transactional_id,
        producer_id = completion.producer_id,
        producer_epoch = completion.producer_epoch,
        commit = completion.commit,
        partitions = completion.partitions.len(),
        groups = completion.groups.len(),
        "transaction completed"
    );
    for (topic, index) in &completion.partitions {
        let Some(partition) = state.partition_mut(topic, *index) else {
            continue;
        };
        let offset = partition.log.end_offset();
        let timestamp = if deterministic {
            DETERMINISTIC_EPOCH_MS + offset
        } else {
            wall_clock_ms()
        };
        let batch = marker::encode(
            completion.producer_id,
            completion.producer_epoch,
            completion.commit,
            completion.coordinator_epoch,
            timestamp,
        );
        partition
            .log
            .append_marker(&batch, completion.commit, partition.leader_epoch);
    }
}

/// Starts the task that fires the transactions' deadlines (timeouts,
/// delayed markers). It holds the cluster only weakly, between wake-ups;
/// `Shared`'s drop aborts it.
pub(crate) fn spawn_timer(shared: &Arc<Shared>) -> JoinHandle<()> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let wake: Arc<Notify> = Arc::clone(shared.txn_timer());
    tokio::spawn(async move {
        loop {
            // Registered before reading the deadline, so a change made in
            // between still wakes the loop.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let next = {
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let now = coordinator::now();
                let (wrote, next) = {
                    let mut state = shared.state();
                    let wrote = settle(&shared, &mut state, now);
                    (wrote, state.transactions.next_deadline())
                };
                if wrote {
                    shared.notify_changed();
                }
                next
            };
            match next {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    tokio::select! {
                        () = &mut woken => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => woken.await,
            }
        }
    })
}

/// The test-facing transaction operations, which `cluster_ops!` exposes.
impl Shared {
    pub(crate) fn transaction(&self, transactional_id: &str) -> Option<TransactionView> {
        run(self, |state, _| state.transactions.view(transactional_id))
    }

    pub(crate) fn transaction_coordinator(&self, transactional_id: &str) -> i32 {
        self.state().transactions.coordinator_of(transactional_id)
    }

    #[track_caller]
    pub(crate) fn move_transaction_coordinator(&self, transactional_id: &str, node_id: i32) {
        let is_member = self.state().members.contains_key(&node_id);
        assert!(is_member, "the mock cluster has no broker {node_id}");
        run(self, |state, _| {
            state
                .transactions
                .move_coordinator(transactional_id, node_id)
        });
    }

    pub(crate) fn set_transaction_coordinator_loading(
        &self,
        transactional_id: &str,
        loading: bool,
    ) {
        run(self, |state, _| {
            state.transactions.set_loading(transactional_id, loading)
        });
    }

    pub(crate) fn set_transaction_marker_delay(&self, delay: Duration) {
        run(self, |state, _| {
            state.transactions.config_mut().marker_delay = delay;
        });
    }

    pub(crate) fn pending_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        coordinator::read(self, |c| c.pending_offset(group, topic, partition))
    }
}
