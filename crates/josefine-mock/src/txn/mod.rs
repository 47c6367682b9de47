//! The transaction coordinator: transactional ids, their producer ids and
//! epochs, and each one's transaction through Kafka's states (KIP-98, with
//! KIP-360's epoch bumps, KIP-588's PRODUCER_FENCED and KIP-890 part 1's
//! partition verification), for transaction.version 0/1 ("TV1": the client
//! adds partitions with AddPartitionsToTxn, and EndTxn does not bump the
//! epoch).
//!
//! Sans-io, like the group coordinator: every operation takes `now` and
//! returns its error code; when a transaction completes, the coordinator
//! leaves a [`Completion`] for the driver ([`driver`]) to carry out, which
//! writes the markers ([`marker`]) to the transaction's partitions and
//! commits or drops its consumer offsets. Deadlines (transaction timeouts,
//! and markers held back by [`TxnConfig::marker_delay`]) come out of
//! [`TransactionCoordinator::next_deadline`] and fire in
//! [`TransactionCoordinator::tick`].
//!
//! The semantics are Apache Kafka's `TransactionCoordinator` and
//! `TransactionMetadata` (3.x/4.0):
//!
//! ```text
//!          InitProducerId            AddPartitionsToTxn, AddOffsetsToTxn
//! (none) ----------------> Empty -------------------------------------> Ongoing
//!                            ^                                             |
//!                            | InitProducerId     EndTxn, a timeout, or    |
//!                            |                    InitProducerId (abort)   v
//! CompleteCommit, CompleteAbort <---- markers written ---- PrepareCommit, PrepareAbort
//!        |
//!        +---- AddPartitionsToTxn, AddOffsetsToTxn ----> Ongoing
//! ```
//!
//! * InitProducerId: the first call for an id allocates a producer id at
//!   epoch 0; each later one bumps the epoch, fencing the older instance.
//!   With KIP-360's producer id and epoch (v3+): the current epoch is bumped,
//!   the previous epoch is a retry that gets the current one back, anything
//!   else is PRODUCER_FENCED. Over an Ongoing transaction the coordinator
//!   bumps the epoch, aborts the transaction with that epoch and answers
//!   CONCURRENT_TRANSACTIONS; the client's retry bumps the epoch again. An
//!   epoch about to run out (`i16::MAX - 1`) moves the id to a new producer
//!   id at epoch 0.
//! * AddPartitionsToTxn and AddOffsetsToTxn (which adds the group, Kafka's
//!   `__consumer_offsets` partition): the producer id must be the id's
//!   (INVALID_PRODUCER_ID_MAPPING), its epoch the current one
//!   (PRODUCER_FENCED), and no transaction may be completing
//!   (CONCURRENT_TRANSACTIONS). The transaction becomes Ongoing and its
//!   timeout starts with the first addition.
//! * EndTxn: the same checks, then Ongoing moves to PrepareCommit or
//!   PrepareAbort and the answer goes out; the markers follow and the state
//!   becomes CompleteCommit or CompleteAbort. Repeating the last completion
//!   is answered NONE, asking the other one INVALID_TXN_STATE, as is an
//!   EndTxn with no transaction.
//! * A transaction Ongoing for longer than its timeout is aborted by the
//!   coordinator with a bumped epoch, which fences the producer: its next
//!   coordinator request gets PRODUCER_FENCED, its next Produce
//!   INVALID_PRODUCER_EPOCH.
//! * Verification (Produce, TxnOffsetCommit): the partition or group must be
//!   in the producer's Ongoing transaction, as Kafka 3.6+ checks with
//!   `transaction.partition.verification.enable` (the default).
//!
//! Placement is the group coordinator's (see [`crate::placement`]): the
//! `hash(id) % n`-th broker, unless a test moved it; other brokers answer
//! NOT_COORDINATOR. The state belongs to the cluster, as Kafka persists it
//! in `__transaction_state`, so it survives a move; a move bumps the id's
//! coordinator epoch, which markers carry.
//!
//! Where the mock parts from Kafka: markers are written the moment the
//! transaction ends (or [`TxnConfig::marker_delay`] later), never failing;
//! a timed-out transaction is aborted at its deadline, where Kafka looks
//! every `transaction.abort.timed.out.transaction.cleanup.interval.ms`
//! (10 s); transactional ids never expire (`transactional.id.expiration.ms`),
//! so no id is ever Dead.

pub(crate) mod driver;
pub(crate) mod marker;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

pub(crate) const NONE: i16 = 0;
pub(crate) const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();
pub(crate) const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
pub(crate) const COORDINATOR_LOAD_IN_PROGRESS: i16 =
    ResponseError::CoordinatorLoadInProgress.code();
pub(crate) const INVALID_TRANSACTION_TIMEOUT: i16 = ResponseError::InvalidTransactionTimeout.code();
pub(crate) const INVALID_PRODUCER_ID_MAPPING: i16 = ResponseError::InvalidProducerIdMapping.code();
pub(crate) const PRODUCER_FENCED: i16 = ResponseError::ProducerFenced.code();
pub(crate) const INVALID_PRODUCER_EPOCH: i16 = ResponseError::InvalidProducerEpoch.code();
pub(crate) const CONCURRENT_TRANSACTIONS: i16 = ResponseError::ConcurrentTransactions.code();
pub(crate) const INVALID_TXN_STATE: i16 = ResponseError::InvalidTxnState.code();
pub(crate) const TRANSACTION_ABORTABLE: i16 = ResponseError::TransactionAbortable.code();

/// The epoch at which Kafka stops bumping and moves a transactional id to a
/// new producer id (`TransactionMetadata.isEpochExhausted`).
const LAST_EPOCH: i16 = i16::MAX - 1;

/// The state of a transactional id's transaction: Kafka's
/// `TransactionState`, as DescribeTransactions names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransactionState {
    /// Initialised (or re-initialised), no transaction yet.
    Empty,
    /// A transaction has partitions or a group added and is running.
    Ongoing,
    /// EndTxn asked to commit; the markers are being written.
    PrepareCommit,
    /// EndTxn, a timeout or a new producer instance aborted it; the markers
    /// are being written.
    PrepareAbort,
    /// The last transaction committed; ready for the next.
    CompleteCommit,
    /// The last transaction aborted; ready for the next.
    CompleteAbort,
    /// An expired transactional id. Never reached in the mock, which does
    /// not expire ids (`transactional.id.expiration.ms`).
    Dead,
}

impl TransactionState {
    /// Kafka's name: `"Ongoing"`, `"PrepareCommit"`, `"CompleteAbort"`...
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
        }
    }

    fn is_preparing(self) -> bool {
        matches!(
            self,
            TransactionState::PrepareCommit | TransactionState::PrepareAbort
        )
    }

    /// Empty or Complete*: no transaction, ready for one.
    fn is_ready(self) -> bool {
        matches!(
            self,
            TransactionState::Empty
                | TransactionState::CompleteCommit
                | TransactionState::CompleteAbort
        )
    }
}

impl fmt::Display for TransactionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transactional id as its coordinator holds it, from
/// [`MockCluster::transaction`](crate::MockCluster::transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionView {
    /// The producer id the id currently maps to.
    pub producer_id: i64,
    /// Its current epoch; older epochs are fenced.
    pub producer_epoch: i16,
    /// Where its transaction stands.
    pub state: TransactionState,
    /// The partitions of the current transaction, sorted; empty once it
    /// completed.
    pub partitions: Vec<(String, i32)>,
    /// The consumer groups whose offsets the current transaction commits
    /// (AddOffsetsToTxn), sorted.
    pub groups: Vec<String>,
    /// The transaction timeout the producer asked for at InitProducerId.
    pub timeout: Duration,
}

/// The coordinator's settings (Kafka's `transaction.*` broker configs).
#[derive(Debug, Clone)]
pub(crate) struct TxnConfig {
    /// `transaction.max.timeout.ms` (Kafka: 15 min): InitProducerId with a
    /// longer transaction timeout gets INVALID_TRANSACTION_TIMEOUT.
    pub(crate) max_timeout: Duration,
    /// How long after a transaction ends its markers are written (Kafka:
    /// as soon as the brokers answer). Meanwhile it is PrepareCommit or
    /// PrepareAbort and the coordinator answers CONCURRENT_TRANSACTIONS.
    pub(crate) marker_delay: Duration,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout: Duration::from_secs(15 * 60),
            marker_delay: Duration::ZERO,
        }
    }
}

/// One transactional id (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone)]
struct Metadata {
    producer_id: i64,
    /// The producer id before the epoch ran out, for KIP-360 retries.
    last_producer_id: i64,
    /// -1 until the first InitProducerId completes.
    epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId gets
    /// the current one back; -1 when a new instance fenced the old one.
    last_epoch: i16,
    timeout: Duration,
    state: TransactionState,
    partitions: BTreeSet<(String, i32)>,
    groups: BTreeSet<String>,
    /// When the current transaction started (its first addition).
    started: Option<Instant>,
    /// When a Prepare* transaction's markers are written.
    markers_due: Option<Instant>,
}

impl Metadata {
    fn view(&self) -> TransactionView {
        TransactionView {
            producer_id: self.producer_id,
            producer_epoch: self.epoch,
            state: self.state,
            partitions: self.partitions.iter().cloned().collect(),
            groups: self.groups.iter().cloned().collect(),
            timeout: self.timeout,
        }
    }

    /// The timeout's deadline while Ongoing.
    fn expires(&self) -> Option<Instant> {
        match self.state {
            TransactionState::Ongoing => self.started.map(|at| at + self.timeout),
            _ => None,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.expires().or(self.markers_due)
    }

    /// Checks the producer id and epoch a coordinator request carries.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), i16> {
        if producer_id != self.producer_id {
            return Err(INVALID_PRODUCER_ID_MAPPING);
        }
        if epoch != self.epoch {
            return Err(PRODUCER_FENCED);
        }
        Ok(())
    }
}

/// A transaction whose end the driver must carry out: a marker for each
/// partition, and the offsets of each group committed or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Completion {
    pub(crate) transactional_id: String,
    pub(crate) producer_id: i64,
    /// The epoch the markers carry: the producer's, or the bumped one of an
    /// abort that fenced it.
    pub(crate) producer_epoch: i16,
    pub(crate) commit: bool,
    pub(crate) coordinator_epoch: i32,
    pub(crate) partitions: Vec<(String, i32)>,
    pub(crate) groups: Vec<String>,
}

/// What a Produce batch or a TxnOffsetCommit writes to, for
/// [`TransactionCoordinator::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    Partition(&'a str, i32),
    Group(&'a str),
}

/// Every transactional id of the cluster and where each is coordinated.
#[derive(Debug)]
pub(crate) struct TransactionCoordinator {
    config: TxnConfig,
    /// The cluster's brokers, sorted: the default placement's range.
    nodes: Vec<i32>,
    /// Coordinators moved by a test.
    moved: HashMap<String, i32>,
    /// How often each id's coordinator moved: its coordinator epoch.
    coordinator_epochs: HashMap<String, i32>,
    /// Ids whose coordinator is "loading" them (a test's fault).
    loading: HashSet<String>,
    /// Stopped brokers: the timers of the ids they coordinate stand still.
    down: BTreeSet<i32>,
    ids: BTreeMap<String, Metadata>,
    completions: Vec<Completion>,
}

/// The expected producer id and epoch of a KIP-360 InitProducerId.
pub(crate) type Expected = Option<(i64, i16)>;

impl TransactionCoordinator {
    pub(crate) fn new(mut nodes: Vec<i32>, config: TxnConfig) -> Self {
        nodes.sort_unstable();
        nodes.dedup();
        TransactionCoordinator {
            config,
            nodes,
            moved: HashMap::new(),
            coordinator_epochs: HashMap::new(),
            loading: HashSet::new(),
            down: BTreeSet::new(),
            ids: BTreeMap::new(),
            completions: Vec::new(),
        }
    }

    pub(crate) fn config_mut(&mut self) -> &mut TxnConfig {
        &mut self.config
    }

    /// The broker that coordinates `transactional_id`, moved or not.
    pub(crate) fn coordinator_of(&self, transactional_id: &str) -> i32 {
        match self.moved.get(transactional_id) {
            Some(node) => *node,
            None => crate::placement::by_hash(transactional_id, &self.nodes, 1),
        }
    }

    /// Whether a request for the id reaching `node_id` may be served.
    fn check(&self, node_id: i32, transactional_id: &str) -> Result<(), i16> {
        if self.coordinator_of(transactional_id) != node_id {
            return Err(NOT_COORDINATOR);
        }
        if self.loading.contains(transactional_id) {
            return Err(COORDINATOR_LOAD_IN_PROGRESS);
        }
        Ok(())
    }

    /// Whether the id's timers run: its coordinator is up and not loading.
    fn is_active(&self, transactional_id: &str) -> bool {
        !self.down.contains(&self.coordinator_of(transactional_id))
            && !self.loading.contains(transactional_id)
    }

    fn coordinator_epoch(&self, transactional_id: &str) -> i32 {
        self.coordinator_epochs
            .get(transactional_id)
            .copied()
            .unwrap_or(0)
    }

    /// The completions the driver has yet to carry out, oldest first.
    pub(crate) fn take_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.completions)
    }

    // ---- the protocol ----

    /// InitProducerId with a transactional id (the handler has dealt with a
    /// null one and with a half-given producer id and epoch): the producer
    /// id and epoch to use, or the error. `allocate` hands out a fresh
    /// producer id.
    pub(crate) fn init_producer_id(
        &mut self,
        node_id: i32,
        now: Instant,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Expected,
        allocate: &mut dyn FnMut() -> i64,
    ) -> Result<(i64, i16), i16> {
        if transactional_id.is_empty() {
            return Err(INVALID_REQUEST);
        }
        let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
        if timeout_ms <= 0 || timeout > self.config.max_timeout {
            return Err(INVALID_TRANSACTION_TIMEOUT);
        }
        self.check(node_id, transactional_id)?;
        let marker_delay = self.config.marker_delay;
        let metadata = self
            .ids
            .entry(transactional_id.to_owned())
            .or_insert_with(|| Metadata {
                producer_id: allocate(),
                last_producer_id: -1,
                epoch: -1,
                last_epoch: -1,
                timeout,
                state: TransactionState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                started: None,
                markers_due: None,
            });
        if let Some((producer_id, epoch)) = expected {
            // Kafka's `isValidProducerId`: a fresh id, the current producer
            // id, or the one before an epoch ran out.
            let valid = metadata.epoch == -1
                || producer_id == metadata.producer_id
                || (producer_id == metadata.last_producer_id && epoch >= LAST_EPOCH);
            if !valid {
                return Err(PRODUCER_FENCED);
            }
        }
        match metadata.state {
            TransactionState::PrepareCommit | TransactionState::PrepareAbort => {
                Err(CONCURRENT_TRANSACTIONS)
            }
            TransactionState::Ongoing => {
                // Fence the current instance: abort its transaction with a
                // bumped epoch, which is never handed out; the client
                // retries and bumps again.
                fence(metadata, now, marker_delay);
                Err(CONCURRENT_TRANSACTIONS)
            }
            TransactionState::Empty
            | TransactionState::CompleteCommit
            | TransactionState::CompleteAbort
            | TransactionState::Dead => {
                let exhausted = metadata.epoch >= LAST_EPOCH;
                if exhausted && expected.is_none_or(|(_, epoch)| epoch == metadata.epoch) {
                    metadata.last_producer_id = metadata.producer_id;
                    metadata.last_epoch = if expected.is_some() {
                        metadata.epoch
                    } else {
                        -1
                    };
                    metadata.producer_id = allocate();
                    metadata.epoch = 0;
                } else {
                    let (epoch, last_epoch) = match expected {
                        None => (metadata.epoch.saturating_add(1), -1),
                        Some((_, epoch)) if metadata.epoch == -1 || epoch == metadata.epoch => {
                            (metadata.epoch.saturating_add(1), metadata.epoch)
                        }
                        Some((_, epoch)) if epoch == metadata.last_epoch => {
                            (metadata.epoch, metadata.last_epoch)
                        }
                        Some(_) => return Err(PRODUCER_FENCED),
                    };
                    metadata.epoch = epoch;
                    metadata.last_epoch = last_epoch;
                }
                metadata.timeout = timeout;
                metadata.state = TransactionState::Empty;
                metadata.partitions.clear();
                metadata.groups.clear();
                metadata.started = None;
                Ok((metadata.producer_id, metadata.epoch))
            }
        }
    }

    /// AddPartitionsToTxn for partitions that exist (the handler answers
    /// the request's unknown ones itself).
    pub(crate) fn add_partitions(
        &mut self,
        node_id: i32,
        now: Instant,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> i16 {
        self.add(node_id, now, transactional_id, producer_id, epoch, |m| {
            m.partitions.extend(partitions.iter().cloned());
        })
    }

    /// AddOffsetsToTxn: the group joins the transaction, so its
    /// TxnOffsetCommits are accepted and its offsets follow the outcome.
    pub(crate) fn add_offsets(
        &mut self,
        node_id: i32,
        now: Instant,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> i16 {
        self.add(node_id, now, transactional_id, producer_id, epoch, |m| {
            m.groups.insert(group.to_owned());
        })
    }

    /// Kafka's `handleAddPartitionsToTransaction`; `add` adds to the
    /// metadata.
    fn add(
        &mut self,
        node_id: i32,
        now: Instant,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        add: impl FnOnce(&mut Metadata),
    ) -> i16 {
        if transactional_id.is_empty() {
            return INVALID_REQUEST;
        }
        if let Err(code) = self.check(node_id, transactional_id) {
            return code;
        }
        let Some(metadata) = self.ids.get_mut(transactional_id) else {
            return INVALID_PRODUCER_ID_MAPPING;
        };
        if let Err(code) = metadata.check_producer(producer_id, epoch) {
            return code;
        }
        if metadata.state.is_preparing() {
            return CONCURRENT_TRANSACTIONS;
        }
        if metadata.state.is_ready() {
            // A new transaction: its timeout runs from here.
            metadata.state = TransactionState::Ongoing;
            metadata.started = Some(now);
        }
        add(metadata);
        NONE
    }

    /// EndTxn: commit or abort the Ongoing transaction.
    pub(crate) fn end_txn(
        &mut self,
        node_id: i32,
        now: Instant,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> i16 {
        if transactional_id.is_empty() {
            return INVALID_REQUEST;
        }
        if let Err(code) = self.check(node_id, transactional_id) {
            return code;
        }
        let marker_delay = self.config.marker_delay;
        let Some(metadata) = self.ids.get_mut(transactional_id) else {
            return INVALID_PRODUCER_ID_MAPPING;
        };
        if let Err(code) = metadata.check_producer(producer_id, epoch) {
            return code;
        }
        use TransactionState as S;
        match (metadata.state, commit) {
            (S::Ongoing, _) => {
                metadata.state = if commit {
                    S::PrepareCommit
                } else {
                    S::PrepareAbort
                };
                metadata.markers_due = Some(now + marker_delay);
                NONE
            }
            (S::CompleteCommit, true) | (S::CompleteAbort, false) => NONE,
            (S::PrepareCommit, true) | (S::PrepareAbort, false) => CONCURRENT_TRANSACTIONS,
            _ => INVALID_TXN_STATE,
        }
    }

    /// Whether a transactional write may go ahead: `target` must be part of
    /// the producer's Ongoing transaction (Kafka's
    /// `handleVerifyPartitionsInTransaction`). The codes are the
    /// coordinator's; Produce and TxnOffsetCommit translate them as Kafka
    /// does. Any broker asks, so the coordinator's placement is not
    /// checked, its loading is.
    pub(crate) fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        target: Target<'_>,
    ) -> Result<(), i16> {
        if transactional_id.is_empty() {
            return Err(INVALID_REQUEST);
        }
        if self.loading.contains(transactional_id) {
            return Err(COORDINATOR_LOAD_IN_PROGRESS);
        }
        let metadata = self
            .ids
            .get(transactional_id)
            .ok_or(INVALID_PRODUCER_ID_MAPPING)?;
        metadata.check_producer(producer_id, epoch)?;
        if metadata.state.is_preparing() {
            return Err(CONCURRENT_TRANSACTIONS);
        }
        let added = match target {
            Target::Partition(topic, partition) => {
                metadata.partitions.contains(&(topic.to_owned(), partition))
            }
            Target::Group(group) => metadata.groups.contains(group),
        };
        if added {
            Ok(())
        } else {
            Err(TRANSACTION_ABORTABLE)
        }
    }

    // ---- time ----

    /// The earliest deadline of any id whose timers run.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.ids
            .iter()
            .filter(|(id, _)| self.is_active(id))
            .filter_map(|(_, m)| m.deadline())
            .min()
    }

    /// Aborts every transaction past its timeout and completes every one
    /// whose markers are due, leaving [`Completion`]s behind.
    pub(crate) fn tick(&mut self, now: Instant) {
        let active: Vec<String> = self
            .ids
            .keys()
            .filter(|id| self.is_active(id))
            .cloned()
            .collect();
        let marker_delay = self.config.marker_delay;
        for id in active {
            let coordinator_epoch = self.coordinator_epoch(&id);
            let Some(metadata) = self.ids.get_mut(&id) else {
                continue;
            };
            if metadata.expires().is_some_and(|at| at <= now) {
                tracing::debug!(transactional_id = %id, "transaction timed out: aborting");
                fence(metadata, now, marker_delay);
            }
            if metadata.state.is_preparing() && metadata.markers_due.is_some_and(|at| at <= now) {
                let commit = metadata.state == TransactionState::PrepareCommit;
                metadata.state = if commit {
                    TransactionState::CompleteCommit
                } else {
                    TransactionState::CompleteAbort
                };
                metadata.markers_due = None;
                metadata.started = None;
                self.completions.push(Completion {
                    transactional_id: id.clone(),
                    producer_id: metadata.producer_id,
                    producer_epoch: metadata.epoch,
                    commit,
                    coordinator_epoch,
                    partitions: std::mem::take(&mut metadata.partitions)
                        .into_iter()
                        .collect(),
                    groups: std::mem::take(&mut metadata.groups).into_iter().collect(),
                });
            }
        }
    }

    // ---- test-facing ----

    pub(crate) fn view(&self, transactional_id: &str) -> Option<TransactionView> {
        self.ids.get(transactional_id).map(Metadata::view)
    }

    pub(crate) fn move_coordinator(&mut self, transactional_id: &str, node_id: i32) {
        if self.coordinator_of(transactional_id) == node_id {
            return;
        }
        self.moved.insert(transactional_id.to_owned(), node_id);
        *self
            .coordinator_epochs
            .entry(transactional_id.to_owned())
            .or_insert(0) += 1;
    }

    pub(crate) fn set_loading(&mut self, transactional_id: &str, loading: bool) {
        if loading {
            self.loading.insert(transactional_id.to_owned());
        } else {
            self.loading.remove(transactional_id);
        }
    }

    pub(crate) fn broker_stopped(&mut self, node_id: i32) {
        self.down.insert(node_id);
    }

    pub(crate) fn broker_started(&mut self, node_id: i32) {
        self.down.remove(&node_id);
    }
}

/// Kafka's `prepareFenceProducerEpoch` followed by the abort: the epoch goes
/// up (so the markers fence the producer on every partition), the previous
/// epoch is forgotten (no KIP-360 retry can reclaim it), and the markers are
/// due after the delay.
fn fence(metadata: &mut Metadata, now: Instant, marker_delay: Duration) {
    metadata.epoch = metadata.epoch.saturating_add(1);
    metadata.last_epoch = -1;
    metadata.state = TransactionState::PrepareAbort;
    metadata.markers_due = Some(now + marker_delay);
}

/// PRODUCER_FENCED as a client that predates it (KIP-588) understands it:
/// INVALID_PRODUCER_EPOCH, as Kafka answers InitProducerId v0-v3 and
/// AddPartitionsToTxn, AddOffsetsToTxn and EndTxn v0-v1.
pub(crate) fn fenced_for(code: i16, knows_producer_fenced: bool) -> i16 {
    if code == PRODUCER_FENCED && !knows_producer_fenced {
        INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}
