//! Faults on a timer: [`MockCluster::after`], [`MockCluster::every`] and
//! [`FaultScript`]s, so a test can start its client and let the faults come
//! while it works, as they would in production.
//!
//! Each schedule is one tokio task that sleeps on tokio's clock (a paused
//! test clock drives it too) and holds only a weak reference to the cluster
//! while it sleeps: dropping the cluster ends it, and it never keeps the
//! brokers alive. A step runs with a full handle, so it may call anything on
//! the cluster, including the async operations (with
//! [`after_async`](FaultScript::after_async)).
//!
//! A step that panics (say, `move_leader` to a broker that does not exist)
//! ends its schedule; [`Scheduled::wait`] re-raises the panic in the test.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use crate::{lock, MockCluster};

type StepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Step = Box<dyn FnOnce(MockCluster) -> StepFuture + Send>;

/// A sequence of faults, each after a delay counted from the end of the one
/// before; built with [`MockCluster::script`], started with
/// [`start`](Self::start).
///
/// ```
/// use std::time::Duration;
/// use josefine_mock::MockCluster;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let cluster = MockCluster::builder().brokers(3).topic("orders", 3).start().await?;
/// let step = Duration::from_millis(100);
/// let script = cluster
///     .script()
///     .after(step, |c| c.move_leader("orders", 0, 2))
///     .after(step, |c| c.set_latency(Duration::from_millis(50)))
///     .after_async(step, |c| async move { c.stop_broker(3).await })
///     .after(step, |c| c.set_latency(Duration::ZERO))
///     .start();
/// // ... run the client meanwhile, then:
/// script.wait().await;
/// assert_eq!(script.fired(), 4);
/// # Ok(())
/// # }
/// ```
#[must_use = "a script does nothing until start() is called"]
pub struct FaultScript {
    cluster: MockCluster,
    steps: Vec<(Duration, Step)>,
}

impl FaultScript {
    pub(crate) fn new(cluster: MockCluster) -> Self {
        FaultScript {
            cluster,
            steps: Vec::new(),
        }
    }

    /// Adds a step: `delay` after the previous step (or the start), run
    /// `fault`.
    pub fn after(
        mut self,
        delay: Duration,
        fault: impl FnOnce(&MockCluster) + Send + 'static,
    ) -> Self {
        self.steps.push((
            delay,
            Box::new(move |cluster: MockCluster| {
                fault(&cluster);
                Box::pin(async {}) as StepFuture
            }),
        ));
        self
    }

    /// Adds an async step, for the operations that wait (stopping and
    /// restarting brokers): `delay` after the previous step, run the future
    /// `fault` returns, to the end, before the next step's delay starts.
    pub fn after_async<F, Fut>(mut self, delay: Duration, fault: F) -> Self
    where
        F: FnOnce(MockCluster) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.steps.push((
            delay,
            Box::new(move |cluster: MockCluster| Box::pin(fault(cluster)) as StepFuture),
        ));
        self
    }

    /// Starts the script in a task of its own. Must be called within a tokio
    /// runtime.
    pub fn start(self) -> Scheduled {
        let weak = self.cluster.downgrade();
        let steps = self.steps;
        Scheduled::spawn(move |fired| async move {
            for (delay, step) in steps {
                tokio::time::sleep(delay).await;
                let Some(cluster) = MockCluster::upgrade(&weak) else {
                    return;
                };
                tracing::debug!(step = fired.load(Ordering::Acquire) + 1, "scheduled fault");
                step(cluster).await;
                fired.fetch_add(1, Ordering::AcqRel);
            }
        })
    }
}

impl fmt::Debug for FaultScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let delays: Vec<Duration> = self.steps.iter().map(|(d, _)| *d).collect();
        f.debug_struct("FaultScript")
            .field("delays", &delays)
            .finish_non_exhaustive()
    }
}

/// A running schedule of faults: [`MockCluster::after`],
/// [`MockCluster::every`] or a [`FaultScript`].
///
/// Dropping the handle leaves the schedule running; [`cancel`](Self::cancel)
/// stops it.
pub struct Scheduled {
    abort: AbortHandle,
    fired: Arc<AtomicUsize>,
    /// Closed when the task ends, however it ends.
    ended: watch::Receiver<()>,
    /// Taken by the first [`wait`](Scheduled::wait), to re-raise a panic.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Scheduled {
    fn spawn<F, Fut>(body: F) -> Scheduled
    where
        F: FnOnce(Arc<AtomicUsize>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fired = Arc::new(AtomicUsize::new(0));
        let (ended_tx, ended) = watch::channel(());
        let run = body(Arc::clone(&fired));
        let task = tokio::spawn(async move {
            // Dropped when the task ends, returns, panics or is aborted.
            let _ended = ended_tx;
            run.await;
        });
        Scheduled {
            abort: task.abort_handle(),
            fired,
            ended,
            task: Mutex::new(Some(task)),
        }
    }

    pub(crate) fn repeat(
        cluster: &MockCluster,
        period: Duration,
        mut fault: impl FnMut(&MockCluster) + Send + 'static,
    ) -> Scheduled {
        let weak = cluster.downgrade();
        Scheduled::spawn(move |fired| async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(cluster) = MockCluster::upgrade(&weak) else {
                    return;
                };
                fault(&cluster);
                fired.fetch_add(1, Ordering::AcqRel);
            }
        })
    }

    /// Stops the schedule: steps that have not started never run, and an
    /// async step that is running stops at its next `.await`.
    pub fn cancel(&self) {
        self.abort.abort();
    }

    /// How many steps have run to the end (for [`MockCluster::every`], how
    /// many times the fault ran).
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::Acquire)
    }

    /// Whether the schedule is over: every step ran, it was cancelled, a step
    /// panicked, or the cluster was dropped.
    pub fn is_finished(&self) -> bool {
        self.abort.is_finished()
    }

    /// Waits until the schedule is over (see
    /// [`is_finished`](Self::is_finished)). A schedule made with
    /// [`MockCluster::every`] is over only once cancelled or once the cluster
    /// is gone.
    ///
    /// # Panics
    ///
    /// Re-raises the panic of a step that panicked, in the first caller.
    pub async fn wait(&self) {
        let mut ended = self.ended.clone();
        // Err once the task dropped its sender: it has ended.
        while ended.changed().await.is_ok() {}
        let task = lock(&self.task).take();
        if let Some(task) = task {
            if let Err(err) = task.await {
                if err.is_panic() {
                    std::panic::resume_unwind(err.into_panic());
                }
            }
        }
    }
}

impl fmt::Debug for Scheduled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduled")
            .field("fired", &self.fired())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// The schedulers, on the cluster.
impl MockCluster {
    /// Runs `fault` once, `delay` from now (on tokio's clock), in a task of
    /// its own, while the test goes on driving its client:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use josefine_mock::MockCluster;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let cluster = MockCluster::builder().brokers(3).topic("orders", 6).start().await?;
    /// let moved = cluster.after(Duration::from_millis(200), |c| c.move_leader("orders", 2, 3));
    /// // ... consume meanwhile; the consumer must follow partition 2 to broker 3.
    /// moved.wait().await;
    /// assert_eq!(cluster.leader("orders", 2), Some(3));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Must be called within a tokio runtime. For several faults in a row,
    /// see [`script`](Self::script); for one that waits (stopping a broker),
    /// [`after_async`](Self::after_async).
    pub fn after(
        &self,
        delay: Duration,
        fault: impl FnOnce(&MockCluster) + Send + 'static,
    ) -> Scheduled {
        self.script().after(delay, fault).start()
    }

    /// Like [`after`](Self::after), for a fault that is a future: `fault`
    /// gets a handle on the cluster to move into it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use josefine_mock::MockCluster;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let cluster = MockCluster::builder().brokers(3).start().await?;
    /// cluster.after_async(Duration::from_millis(200), |c| async move {
    ///     c.stop_broker(2).await;
    ///     tokio::time::sleep(Duration::from_millis(500)).await;
    ///     c.restart_broker(2).await.expect("the port is still free");
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn after_async<F, Fut>(&self, delay: Duration, fault: F) -> Scheduled
    where
        F: FnOnce(MockCluster) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.script().after_async(delay, fault).start()
    }

    /// Runs `fault` every `period` (the first time one `period` from now)
    /// until [cancelled](Scheduled::cancel) or the cluster is dropped: a
    /// flaky network with [`drop_connections`](Self::drop_connections), a
    /// partition whose leader keeps moving, a group rebalancing over and over
    /// with [`force_rebalance`](Self::force_rebalance).
    pub fn every(
        &self,
        period: Duration,
        fault: impl FnMut(&MockCluster) + Send + 'static,
    ) -> Scheduled {
        Scheduled::repeat(self, period, fault)
    }

    /// A [`FaultScript`] on this cluster, empty: add steps with
    /// [`FaultScript::after`], then [`start`](FaultScript::start) it.
    pub fn script(&self) -> FaultScript {
        FaultScript::new(self.clone())
    }
}
