//! The tokio side of the group coordinator: the channels waiting requests
//! are answered on, and the task that fires the groups' timers.
//!
//! The state machine ([`crate::group`]) is sans-io; this driver feeds it the
//! time (tokio's clock, so a paused test clock drives it too), keeps a
//! oneshot sender per waiting JoinGroup or SyncGroup, and delivers the
//! answers the state machine produces. Every operation runs under one
//! `std::sync::Mutex`, never held across an `.await`: a JoinGroup that has to
//! wait registers its channel, releases the lock and awaits the channel, so
//! it holds up its own connection only, as a Kafka broker parks the request
//! in its purgatory.
//!
//! After each operation the driver fires whatever deadline is already due
//! (an initial rebalance delay of 0 completes the join right away) and
//! wakes the timer task, whose next deadline may have moved.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::cluster::Shared;
use crate::group::consumer::ListedMember;
use crate::group::{
    Coordinator, JoinRequest, JoinResponse, Outcome, Reply, SyncRequest, SyncResponse, Waiter,
    NOT_COORDINATOR,
};

/// The coordinator and the requests waiting on it.
#[derive(Debug)]
pub(crate) struct Groups {
    pub(crate) coordinator: Coordinator,
    waiters: HashMap<Waiter, oneshot::Sender<Reply>>,
}

impl Groups {
    pub(crate) fn new(coordinator: Coordinator) -> Self {
        Groups {
            coordinator,
            waiters: HashMap::new(),
        }
    }

    /// Fires due deadlines and sends every answer that is ready. A request
    /// whose connection has gone (its receiver dropped) is simply skipped.
    fn settle(&mut self, now: Instant) {
        self.coordinator.tick(now);
        for (waiter, reply) in self.coordinator.take_replies() {
            if let Some(sender) = self.waiters.remove(&waiter) {
                let _ = sender.send(reply);
            }
        }
    }
}

/// The mock's clock: tokio's, so tests with a paused runtime clock move the
/// coordinator's timers too.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs a non-waiting operation on the coordinator and delivers what it set
/// off.
pub(crate) fn with<T>(shared: &Shared, f: impl FnOnce(&mut Coordinator, Instant) -> T) -> T {
    let now = now();
    let result = {
        let mut groups = shared.groups();
        let result = f(&mut groups.coordinator, now);
        groups.settle(now);
        result
    };
    shared.group_timer().notify_one();
    result
}

/// Reads the coordinator without changing it.
pub(crate) fn read<T>(shared: &Shared, f: impl FnOnce(&Coordinator) -> T) -> T {
    f(&shared.groups().coordinator)
}

/// Runs an operation that may have to wait, and waits for its answer
/// without holding the lock.
async fn wait_for<T>(
    shared: &Shared,
    start: impl FnOnce(&mut Coordinator, Instant) -> Outcome<T>,
    unwrap: impl FnOnce(Reply) -> Option<T>,
    lost: impl FnOnce() -> T,
) -> T {
    let now = now();
    let receiver = {
        let mut groups = shared.groups();
        let outcome = start(&mut groups.coordinator, now);
        let receiver = match outcome {
            Outcome::Done(answer) => {
                groups.settle(now);
                drop(groups);
                shared.group_timer().notify_one();
                return answer;
            }
            Outcome::Wait(waiter) => {
                // Registered before settling: the operation may have
                // completed its own wait already.
                let (sender, receiver) = oneshot::channel();
                groups.waiters.insert(waiter, sender);
                receiver
            }
        };
        groups.settle(now);
        receiver
    };
    shared.group_timer().notify_one();
    // The state machine answers every waiter eventually (rebalance
    // timeouts bound the wait); a dropped sender means the coordinator went
    // away, which a client handles as NOT_COORDINATOR.
    match receiver.await {
        Ok(reply) => unwrap(reply).unwrap_or_else(lost),
        Err(_) => lost(),
    }
}

pub(crate) async fn join_group(
    shared: &Shared,
    node_id: i32,
    request: JoinRequest,
) -> JoinResponse {
    let member_id = request.member_id.clone();
    wait_for(
        shared,
        |coordinator, now| coordinator.join(node_id, now, request),
        |reply| match reply {
            Reply::Join(response) => Some(response),
            Reply::Sync(_) => None,
        },
        || JoinResponse::error(NOT_COORDINATOR, member_id),
    )
    .await
}

pub(crate) async fn sync_group(
    shared: &Shared,
    node_id: i32,
    request: SyncRequest,
) -> SyncResponse {
    wait_for(
        shared,
        |coordinator, now| coordinator.sync(node_id, now, request),
        |reply| match reply {
            Reply::Sync(response) => Some(response),
            Reply::Join(_) => None,
        },
        || SyncResponse::error(NOT_COORDINATOR),
    )
    .await
}

/// Starts the task that fires the coordinator's deadlines. It holds the
/// cluster only weakly, between wake-ups, so it never keeps a dropped
/// cluster alive; `Shared`'s drop aborts it.
pub(crate) fn spawn_timer(shared: &Arc<Shared>) -> JoinHandle<()> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let wake: Arc<Notify> = Arc::clone(shared.group_timer());
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
                let now = now();
                let mut groups = shared.groups();
                groups.settle(now);
                groups.coordinator.next_deadline()
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

/// The test-facing group operations, which `cluster_ops!` exposes.
impl Shared {
    pub(crate) fn group_members(&self, group: &str) -> Vec<(String, Option<String>)> {
        read(self, |c| c.members(group))
    }

    pub(crate) fn group_generation(&self, group: &str) -> Option<i32> {
        read(self, |c| c.generation(group))
    }

    pub(crate) fn group_state(&self, group: &str) -> crate::GroupState {
        read(self, |c| c.state(group))
    }

    pub(crate) fn group_coordinator(&self, group: &str) -> i32 {
        read(self, |c| c.coordinator_of(group))
    }

    pub(crate) fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        read(self, |c| c.committed(group, topic, partition))
    }

    pub(crate) fn set_committed(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        with(self, |c, _| {
            c.set_committed(group, topic, partition, offset)
        });
    }

    pub(crate) fn force_rebalance(&self, group: &str) -> bool {
        with(self, |c, now| c.force_rebalance(now, group))
    }

    pub(crate) fn kick_member(&self, group: &str, member_id: &str) -> bool {
        with(self, |c, now| c.kick_member(now, group, member_id))
    }

    #[track_caller]
    pub(crate) fn move_coordinator(&self, group: &str, node_id: i32) {
        let is_member = self.state().members.contains_key(&node_id);
        assert!(is_member, "the mock cluster has no broker {node_id}");
        with(self, |c, now| c.move_coordinator(now, group, node_id));
    }

    pub(crate) fn set_coordinator_loading(&self, group: &str, loading: bool) {
        with(self, |c, now| c.set_loading(now, group, loading));
    }

    pub(crate) fn group_settings(&self, f: impl FnOnce(&mut crate::group::GroupConfig)) {
        with(self, |c, _| f(c.config_mut()));
    }

    pub(crate) fn consumer_group_epoch(&self, group: &str) -> Option<i32> {
        read(self, |c| c.consumer_group_epoch(group))
    }

    pub(crate) fn consumer_group_members(&self, group: &str) -> Vec<ListedMember> {
        read(self, |c| c.consumer_group_members(group))
    }

    pub(crate) fn consumer_group_overlaps(&self, group: &str) -> Vec<String> {
        read(self, |c| c.consumer_group_overlaps(group))
    }

    pub(crate) fn fence_consumer_group_member(&self, group: &str, member_id: &str) -> bool {
        with(self, |c, _| c.fence_consumer_group_member(group, member_id))
    }
}
