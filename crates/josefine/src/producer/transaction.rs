//! Transactions (KIP-98) with offsets in the transaction (KIP-447): the transactional
//! producer's state machine, sans-io ([`TxnState`]), and the coordinator round trips
//! the producer's transaction methods drive.
//!
//! A producer built with a `transactional.id` gets its producer id from the
//! transaction coordinator of that id (FindCoordinator key type 1), which bumps the
//! epoch for every new instance: an older instance with the same id is fenced from
//! then on. A transaction is opened locally ([`Producer::begin_transaction`]); the
//! sender adds each partition to it (AddPartitionsToTxn) before its first batch goes
//! out; [`Producer::send_offsets_to_transaction`] adds a consumer group's offsets
//! (AddOffsetsToTxn, then TxnOffsetCommit to the group coordinator with the member id
//! and generation, so a member of an older generation is refused);
//! [`Producer::commit_transaction`] delivers every record and then asks the
//! coordinator to commit (EndTxn), [`Producer::abort_transaction`] drops what was not
//! sent and asks it to abort.
//!
//! Protocol: the classic transaction protocol (transaction.version 0/1), which every
//! Kafka since 0.11 speaks, Kafka 4.x included: AddPartitionsToTxn v3 (later versions
//! are for brokers), EndTxn up to v4 and TxnOffsetCommit up to v4 (v5 of either, and a
//! transactional Produce v12, belong to KIP-890's second protocol, where the broker
//! adds partitions itself and bumps the epoch at every EndTxn), Produce up to v11.
//!
//! Errors fall in three classes, as in the Java client:
//! - retried within `max.block.ms`: a coordinator moving or loading,
//!   CONCURRENT_TRANSACTIONS (the coordinator still completes the previous
//!   transaction), anything Kafka calls retriable;
//! - abortable: the transaction cannot commit, the producer can go on after
//!   [`Producer::abort_transaction`] (a record that failed, a refused offset commit of
//!   a member that left its generation, TRANSACTION_ABORTABLE, an authorization
//!   failure on a topic or group);
//! - fatal: the producer cannot go on and must be dropped (PRODUCER_FENCED, another
//!   instance with the same transactional id took over; INVALID_PRODUCER_EPOCH from a
//!   coordinator, INVALID_TXN_STATE, an authorization failure on the transactional id,
//!   an unsupported version).
//!
//! After sequence trouble (OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID) a
//! transactional producer cannot bump its own epoch as an idempotent one does: the
//! transaction becomes abortable, and the abort is followed by an InitProducerId with
//! the current id and epoch (KIP-360), which bumps the epoch and restarts sequences.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest,
    GroupId, InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::idempotence::ProducerIdentity;
use super::Producer;
use crate::backoff::jitter_unit;
use crate::client::Client;
use crate::error::{Error, ErrorKind, KafkaCode, Result};
use crate::group::OffsetAndMetadata;
use crate::net::Broker;
use crate::topic_partition::TopicPartition;

/// The highest Produce version a transactional producer sends: v12 would ask the
/// broker to add the partition to the transaction itself (KIP-890's protocol).
pub(crate) const PRODUCE_MAX_VERSION: i16 = 11;
const END_TXN_MAX_VERSION: i16 = 4;
const ADD_PARTITIONS_MAX_VERSION: i16 = 3;
const TXN_OFFSET_COMMIT_MAX_VERSION: i16 = 4;

/// Who a consumer group member is, for offsets committed in a transaction (KIP-447):
/// the group coordinator refuses them from a member that is no longer in the group
/// or in an older generation, so a zombie's transaction cannot commit its input.
///
/// From a running group: [`Session::group_metadata`](crate::Session::group_metadata).
/// For offsets of a group that no member runs (a standalone consumer that commits
/// under a group id), [`GroupMetadata::standalone`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMetadata {
    /// The group id (`group.id`).
    pub group_id: String,
    /// The member id; empty outside a group.
    pub member_id: String,
    /// The generation (the member epoch under the consumer protocol); -1 outside a
    /// group.
    pub generation_id: i32,
    /// The `group.instance.id` of a static member (KIP-345); `None` otherwise.
    pub group_instance_id: Option<String>,
}

impl GroupMetadata {
    /// Offsets of `group_id` committed without membership (no member id, generation
    /// -1), as a consumer that assigns itself partitions does.
    pub fn standalone(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            member_id: String::new(),
            generation_id: -1,
            group_instance_id: None,
        }
    }
}

/// Where the transactional producer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No producer id yet: the first [`Producer::begin_transaction`] gets one.
    Uninitialized,
    /// No transaction open.
    Ready,
    /// A transaction is open: records may be sent.
    Open,
    /// [`Producer::commit_transaction`] runs: records already accepted go out, no new
    /// ones are accepted.
    Committing,
    /// [`Producer::abort_transaction`] runs.
    Aborting,
    /// The transaction cannot commit; only an abort helps.
    Abortable,
    /// The producer cannot go on.
    Fatal,
}

/// The transactional state shared by the producer's methods and its sender task.
/// Locked briefly, never across an `.await`; when both are taken, this lock is taken
/// before the accumulator's.
#[derive(Debug)]
pub(crate) struct TxnState {
    pub(crate) id: Arc<str>,
    pub(crate) timeout: Duration,
    phase: Phase,
    /// Why the phase is `Abortable` or `Fatal`.
    error: Option<Error>,
    identity: Option<ProducerIdentity>,
    /// Partitions the coordinator has in the open transaction, by topic (looked up
    /// by `&str` for every record).
    added: HashMap<Arc<str>, HashSet<i32>>,
    /// Partitions whose batches wait for AddPartitionsToTxn (those of an add in
    /// flight included, until it answers).
    to_add: BTreeSet<TopicPartition>,
    /// An AddPartitionsToTxn is in flight.
    adding: bool,
    /// The coordinator knows of the open transaction (a partition or a group was
    /// added to it): only then does ending it take an EndTxn.
    started: bool,
    /// Sequence state may be out of step with the brokers': after the abort, bump
    /// the epoch (KIP-360).
    bump_epoch: bool,
    /// An EndTxn(commit) went unanswered (the coordinator unreachable until
    /// `max.block.ms`): the commit may have happened, so it is retried, not aborted.
    commit_unanswered: bool,
}

impl TxnState {
    pub(crate) fn new(id: Arc<str>, timeout: Duration) -> Self {
        Self {
            id,
            timeout,
            phase: Phase::Uninitialized,
            error: None,
            identity: None,
            added: HashMap::new(),
            to_add: BTreeSet::new(),
            adding: false,
            started: false,
            bump_epoch: false,
            commit_unanswered: false,
        }
    }

    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    pub(crate) fn identity(&self) -> Option<ProducerIdentity> {
        self.identity
    }

    /// The error that made the producer unusable, if it is.
    pub(crate) fn fatal(&self) -> Option<Error> {
        (self.phase == Phase::Fatal)
            .then(|| self.error.clone())
            .flatten()
    }

    /// The error that ended the transaction's chance to commit, if it did.
    pub(crate) fn abortable(&self) -> Option<Error> {
        (self.phase == Phase::Abortable)
            .then(|| self.error.clone())
            .flatten()
    }

    /// What stops a new transaction, or `None` when one may begin.
    fn refuse(&self, what: &str) -> Option<Error> {
        let state = |msg: String| Some(Error::new(ErrorKind::Config, msg));
        match &self.phase {
            Phase::Fatal => self.error.clone(),
            // Of the cause's kind, so it is classed as the cause is (abortable).
            Phase::Abortable => self.error.as_ref().map(|cause| {
                Error::new(
                    cause.kind().clone(),
                    format!(
                        "cannot {what}: the transaction cannot commit ({cause}); abort it \
                         (abort_transaction), then begin a new one"
                    ),
                )
            }),
            Phase::Committing | Phase::Aborting => {
                state(format!("cannot {what}: a commit or abort is in progress"))
            }
            _ => None,
        }
    }

    /// Installs the producer id and epoch from InitProducerId.
    pub(crate) fn initialized(&mut self, identity: ProducerIdentity) {
        self.identity = Some(identity);
        self.bump_epoch = false;
        if self.phase == Phase::Uninitialized {
            self.phase = Phase::Ready;
        }
    }

    /// Opens a transaction.
    pub(crate) fn begin(&mut self) -> Result<()> {
        if let Some(err) = self.refuse("begin a transaction") {
            return Err(err);
        }
        match self.phase {
            Phase::Ready => {
                self.phase = Phase::Open;
                Ok(())
            }
            Phase::Open => Err(Error::new(
                ErrorKind::Config,
                "a transaction is already open: commit or abort it first",
            )),
            _ => Err(Error::new(
                ErrorKind::Internal,
                format!("begin in phase {:?}", self.phase),
            )),
        }
    }

    /// Whether a record may be accepted now.
    pub(crate) fn check_send(&self) -> Result<()> {
        match self.phase {
            Phase::Open => Ok(()),
            Phase::Ready | Phase::Uninitialized => Err(Error::new(
                ErrorKind::Config,
                "a transactional producer sends only inside a transaction: call begin_transaction first",
            )),
            _ => Err(self.refuse("send").unwrap_or_else(|| {
                Error::new(ErrorKind::Internal, "send refused without a reason")
            })),
        }
    }

    /// Whether offsets may be added now (same rule as records).
    fn check_offsets(&self) -> Result<()> {
        self.check_send()
    }

    /// Starts a commit; `Ok(true)` when it retries one whose EndTxn went unanswered
    /// (the records were delivered then).
    pub(crate) fn start_commit(&mut self) -> Result<bool> {
        match self.phase {
            Phase::Open => {
                self.phase = Phase::Committing;
                Ok(false)
            }
            Phase::Committing if self.commit_unanswered => Ok(true),
            Phase::Ready | Phase::Uninitialized => Err(no_transaction("commit")),
            _ => Err(self
                .refuse("commit")
                .unwrap_or_else(|| Error::new(ErrorKind::Internal, "commit refused"))),
        }
    }

    pub(crate) fn start_abort(&mut self) -> Result<()> {
        match self.phase {
            Phase::Open | Phase::Abortable => {
                self.phase = Phase::Aborting;
                Ok(())
            }
            // The commit may have happened: if it did, the coordinator refuses the
            // abort (INVALID_TXN_STATE, fatal).
            Phase::Committing if self.commit_unanswered => {
                self.commit_unanswered = false;
                self.phase = Phase::Aborting;
                Ok(())
            }
            Phase::Ready | Phase::Uninitialized => Err(no_transaction("abort")),
            _ => Err(self
                .refuse("abort")
                .unwrap_or_else(|| Error::new(ErrorKind::Internal, "abort refused"))),
        }
    }

    /// The transaction ended (committed or aborted) or failed to commit: a new one may
    /// begin.
    pub(crate) fn finish(&mut self) {
        if matches!(self.phase, Phase::Committing | Phase::Aborting) {
            self.phase = Phase::Ready;
            self.error = None;
        }
        self.commit_unanswered = false;
        self.added.clear();
        self.to_add.clear();
        self.started = false;
    }

    /// Records a failure. A fatal one ends the producer; an abortable one ends the
    /// transaction's chance to commit (ignored while aborting: the abort goes on).
    pub(crate) fn fail(&mut self, err: Error) {
        match classify(&err) {
            Class::Fatal => {
                if self.phase != Phase::Fatal {
                    self.phase = Phase::Fatal;
                    self.error = Some(err);
                }
            }
            _ => {
                if matches!(self.phase, Phase::Open | Phase::Committing) {
                    self.phase = Phase::Abortable;
                    self.error = Some(err);
                }
            }
        }
    }

    /// An EndTxn(commit) that failed: unanswered (retriable until the deadline), the
    /// commit is retried by the next commit_transaction; otherwise the transaction
    /// is abortable, or the producer failed.
    pub(crate) fn commit_failed(&mut self, err: Error) {
        if classify(&err) == Class::Retry {
            self.commit_unanswered = true;
            self.error = Some(err);
        } else {
            self.fail(err);
        }
    }

    /// A commit or abort whose caller stopped waiting (its future was dropped): the
    /// transaction is abortable, so the producer can go on with an abort. A commit
    /// cancelled while its EndTxn was out may have happened; the abort then fails
    /// with INVALID_TXN_STATE.
    pub(crate) fn cancelled(&mut self, what: &str) {
        if matches!(self.phase, Phase::Committing | Phase::Aborting) {
            self.phase = Phase::Abortable;
            self.commit_unanswered = false;
            self.error = Some(Error::new(
                ErrorKind::Timeout,
                format!("{what} was cancelled before it finished"),
            ));
        }
    }

    /// An abort that could not finish: the producer fails if the error is fatal;
    /// otherwise the transaction stays abortable, so calling abort again retries it.
    pub(crate) fn abort_failed(&mut self, err: Error) {
        if classify(&err) == Class::Fatal {
            self.phase = Phase::Fatal;
        } else {
            self.phase = Phase::Abortable;
        }
        self.error = Some(err);
    }

    /// After sequence trouble: the epoch must be bumped once the transaction is
    /// aborted.
    pub(crate) fn require_epoch_bump(&mut self) {
        self.bump_epoch = true;
    }

    fn is_added(&self, topic: &str, partition: i32) -> bool {
        self.added
            .get(topic)
            .is_some_and(|partitions| partitions.contains(&partition))
    }

    /// Notes that a record for `topic`/`partition` was accepted: a partition new to
    /// the transaction is queued for AddPartitionsToTxn. Returns whether it was
    /// (the sender should be woken to add it).
    pub(crate) fn note_partition(&mut self, topic: &str, partition: i32) -> bool {
        if self.is_added(topic, partition) {
            return false;
        }
        let tp = TopicPartition::new(topic, partition);
        self.to_add.insert(tp)
    }

    /// Whether a batch of `tp` may go out now: only once its partition is in the
    /// transaction, and only while the transaction is open or committing.
    pub(crate) fn may_send(&mut self, tp: &TopicPartition) -> bool {
        if !matches!(self.phase, Phase::Open | Phase::Committing) {
            return false;
        }
        if self.is_added(&tp.topic, tp.partition) {
            return true;
        }
        if !self.to_add.contains(tp) {
            self.to_add.insert(tp.clone());
        }
        false
    }

    /// The partitions to add now, if an AddPartitionsToTxn should start.
    pub(crate) fn take_to_add(&mut self) -> Option<(Vec<TopicPartition>, ProducerIdentity)> {
        if self.adding
            || self.to_add.is_empty()
            || !matches!(self.phase, Phase::Open | Phase::Committing)
        {
            return None;
        }
        let identity = self.identity?;
        self.adding = true;
        Some((self.to_add.iter().cloned().collect(), identity))
    }

    /// The outcome of an AddPartitionsToTxn: the partitions added, or the error that
    /// makes the transaction abortable or the producer fail.
    pub(crate) fn added(&mut self, partitions: Vec<TopicPartition>, result: Result<()>) {
        self.adding = false;
        for tp in &partitions {
            self.to_add.remove(tp);
        }
        match result {
            Ok(()) => {
                self.started = true;
                for tp in partitions {
                    self.added.entry(tp.topic).or_default().insert(tp.partition);
                }
            }
            Err(err) => self.fail(err),
        }
    }
}

fn no_transaction(what: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("no transaction to {what}: call begin_transaction first"),
    )
}

/// What a transactional request's error asks of the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Ask the coordinator again (after looking it up again when it moved).
    Retry,
    /// The transaction must be aborted.
    Abortable,
    /// The producer must be dropped.
    Fatal,
}

/// Kafka's classes of transactional errors (the Java client's TransactionManager).
pub(crate) fn classify(err: &Error) -> Class {
    let Some(code) = err.code() else {
        return match err.kind() {
            ErrorKind::UnsupportedVersion | ErrorKind::Config => Class::Fatal,
            _ if err.is_retriable() => Class::Retry,
            // A record that failed for a reason of its own (too large, timed out,
            // corrupt) fails the transaction, not the producer.
            _ => Class::Abortable,
        };
    };
    match code {
        KafkaCode::PRODUCER_FENCED
        | KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        | KafkaCode::CLUSTER_AUTHORIZATION_FAILED
        | KafkaCode::UNSUPPORTED_VERSION
        | KafkaCode::INVALID_TXN_STATE
        | KafkaCode::INVALID_PRODUCER_ID_MAPPING
        | KafkaCode::INVALID_TRANSACTION_TIMEOUT => Class::Fatal,
        KafkaCode::CONCURRENT_TRANSACTIONS
        | KafkaCode::COORDINATOR_LOAD_IN_PROGRESS
        | KafkaCode::COORDINATOR_NOT_AVAILABLE
        | KafkaCode::NOT_COORDINATOR => Class::Retry,
        code if code.is_retriable() => Class::Retry,
        _ => Class::Abortable,
    }
}

/// Whether the coordinator may have moved (look it up again before retrying).
fn coordinator_moved(err: &Error) -> bool {
    matches!(
        err.code(),
        Some(KafkaCode::NOT_COORDINATOR | KafkaCode::COORDINATOR_NOT_AVAILABLE)
    ) || matches!(
        err.kind(),
        ErrorKind::Io | ErrorKind::ConnectionClosed | ErrorKind::Timeout
    )
}

/// Which coordinator a transactional request goes to.
#[derive(Clone, Copy)]
enum To<'a> {
    Transaction(&'a str),
    Group(&'a str),
}

/// Runs `attempt` against the coordinator until it succeeds, fails for good, or
/// `deadline` passes; looks the coordinator up again when it moved, and backs off
/// between tries (briefly for CONCURRENT_TRANSACTIONS, which clears as soon as the
/// coordinator wrote the previous transaction's markers).
async fn with_coordinator<T, F, Fut>(
    client: &Client,
    to: To<'_>,
    deadline: Instant,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(Broker) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut failures = 0;
    loop {
        let broker = match to {
            To::Transaction(id) => client.transaction_coordinator(id).await,
            To::Group(group) => client.coordinator(group).await,
        };
        let result = match broker {
            Ok(broker) => attempt(broker).await,
            Err(err) => Err(err),
        };
        let err = match result {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if classify(&err) != Class::Retry {
            return Err(fenced_if_stale(err));
        }
        if coordinator_moved(&err) {
            match to {
                To::Transaction(id) => client.invalidate_transaction_coordinator(id),
                To::Group(group) => client.invalidate_coordinator(group),
            }
        }
        failures += 1;
        let delay = if err.code() == Some(KafkaCode::CONCURRENT_TRANSACTIONS) {
            // The coordinator is writing the last transaction's markers, usually for
            // a millisecond or two: 1, 2, 4 ... ms, at most 20. (A fixed 20 ms made
            // back-to-back transactions of 1,000 records run at a quarter of
            // librdkafka's rate: most first AddPartitionsToTxn meet this.)
            Duration::from_millis((1u64 << (failures - 1).min(5)).min(20))
        } else {
            client.retry_backoff().delay(failures, jitter_unit())
        };
        if Instant::now() + delay >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("max.block.ms passed before the coordinator answered; last error: {err}"),
            ));
        }
        tracing::debug!(error = %err, ?delay, "transactional request failed, retrying");
        tokio::time::sleep(delay).await;
    }
}

/// A coordinator that answers INVALID_PRODUCER_EPOCH no longer knows our epoch as
/// current: another instance took the transactional id over, or the coordinator
/// aborted our transaction after `transaction.timeout.ms` and bumped the epoch.
/// Either way the producer is fenced (the Java client says so too).
fn fenced_if_stale(err: Error) -> Error {
    if err.code() != Some(KafkaCode::INVALID_PRODUCER_EPOCH) {
        return err;
    }
    Error::new(
        ErrorKind::Kafka(KafkaCode::PRODUCER_FENCED),
        "fenced: the transaction coordinator no longer accepts our epoch; another producer \
         with this transactional id took over, or the transaction outlived \
         transaction.timeout.ms and was aborted: drop this producer and build a new one",
    )
    .with_source(err)
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// InitProducerId for `id`: a fresh producer id and epoch (fencing older instances),
/// or with `current`, the next epoch of ours (KIP-360, after sequence trouble).
pub(crate) async fn init_producer_id(
    client: &Client,
    id: &str,
    timeout: Duration,
    current: Option<ProducerIdentity>,
    deadline: Instant,
) -> Result<ProducerIdentity> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    with_coordinator(client, To::Transaction(id), deadline, |broker| async move {
        let (_, response) = broker
            .call_versioned(|version| {
                let (pid, epoch) = match current {
                    Some(c) if version >= 3 => (c.id, c.epoch),
                    _ => (-1, -1),
                };
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn_id(id)))
                    .with_transaction_timeout_ms(timeout_ms)
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
            })
            .await?;
        Error::check_code(response.error_code)?;
        Ok(ProducerIdentity {
            id: response.producer_id.0,
            epoch: response.producer_epoch,
        })
    })
    .await
    .map_err(|e| e.with_api(kafka_protocol::messages::ApiKey::InitProducerId))
}

/// AddPartitionsToTxn (v3 or below) for `partitions`.
pub(crate) async fn add_partitions(
    client: &Client,
    id: &str,
    identity: ProducerIdentity,
    partitions: &[TopicPartition],
    deadline: Instant,
) -> Result<()> {
    let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let topics: Vec<AddPartitionsToTxnTopic> = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    let timeout = client.inner_request_timeout();
    with_coordinator(client, To::Transaction(id), deadline, |broker| {
        let topics = topics.clone();
        async move {
            let (_, response) = broker
                .call_at_most(
                    ADD_PARTITIONS_MAX_VERSION,
                    |_| {
                        AddPartitionsToTxnRequest::default()
                            .with_v3_and_below_transactional_id(txn_id(id))
                            .with_v3_and_below_producer_id(ProducerId(identity.id))
                            .with_v3_and_below_producer_epoch(identity.epoch)
                            .with_v3_and_below_topics(topics)
                    },
                    timeout,
                )
                .await?;
            add_partitions_result(&response)
        }
    })
    .await
    .map_err(|e| e.with_api(kafka_protocol::messages::ApiKey::AddPartitionsToTxn))
}

/// The first error of an AddPartitionsToTxn answer that is not OPERATION_NOT_ATTEMPTED
/// (which Kafka gives the partitions it skipped because another one failed).
fn add_partitions_result(response: &AddPartitionsToTxnResponse) -> Result<()> {
    Error::check_code(response.error_code)?;
    let mut skipped = false;
    for topic in &response.results_by_topic_v3_and_below {
        for p in &topic.results_by_partition {
            match KafkaCode::from_code(p.partition_error_code) {
                None => {}
                Some(KafkaCode::OPERATION_NOT_ATTEMPTED) => skipped = true,
                Some(code) => {
                    return Err(Error::kafka(code)
                        .with_topic(topic.name.0.as_str())
                        .with_partition(p.partition_index))
                }
            }
        }
    }
    if skipped {
        return Err(Error::kafka(KafkaCode::OPERATION_NOT_ATTEMPTED));
    }
    Ok(())
}

/// EndTxn (v4 or below): commit or abort.
async fn end_txn(
    client: &Client,
    id: &str,
    identity: ProducerIdentity,
    commit: bool,
    deadline: Instant,
) -> Result<()> {
    let timeout = client.inner_request_timeout();
    with_coordinator(client, To::Transaction(id), deadline, |broker| async move {
        let (_, response) = broker
            .call_at_most(
                END_TXN_MAX_VERSION,
                |_| {
                    EndTxnRequest::default()
                        .with_transactional_id(txn_id(id))
                        .with_producer_id(ProducerId(identity.id))
                        .with_producer_epoch(identity.epoch)
                        .with_committed(commit)
                },
                timeout,
            )
            .await?;
        Error::check_code(response.error_code)
    })
    .await
    .map_err(|e| e.with_api(kafka_protocol::messages::ApiKey::EndTxn))
}

/// AddOffsetsToTxn to the transaction coordinator, then TxnOffsetCommit (v4 or below)
/// to the group's coordinator.
async fn commit_offsets(
    client: &Client,
    id: &str,
    identity: ProducerIdentity,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
    group: &GroupMetadata,
    deadline: Instant,
) -> Result<()> {
    let group_id = group.group_id.as_str();
    with_coordinator(client, To::Transaction(id), deadline, |broker| async move {
        let response = broker
            .call(
                &AddOffsetsToTxnRequest::default()
                    .with_transactional_id(txn_id(id))
                    .with_producer_id(ProducerId(identity.id))
                    .with_producer_epoch(identity.epoch)
                    .with_group_id(GroupId(StrBytes::from_string(group_id.to_string()))),
            )
            .await?;
        Error::check_code(response.error_code)
    })
    .await
    .map_err(|e| {
        e.with_api(kafka_protocol::messages::ApiKey::AddOffsetsToTxn)
            .with_group(group_id)
    })?;

    let mut by_topic: HashMap<&str, Vec<TxnOffsetCommitRequestPartition>> = HashMap::new();
    for (tp, o) in offsets {
        by_topic.entry(&tp.topic).or_default().push(
            TxnOffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(o.offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::from_string(
                    o.metadata.as_deref().unwrap_or("").to_string(),
                ))),
        );
    }
    let topics: Vec<TxnOffsetCommitRequestTopic> = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    let timeout = client.inner_request_timeout();
    with_coordinator(client, To::Group(group_id), deadline, |broker| {
        let topics = topics.clone();
        async move {
            // Below v3 the coordinator cannot check the member and generation: a
            // zombie's offsets would be accepted (KIP-447 needs Kafka 2.5+).
            if group.generation_id >= 0 && broker.version::<TxnOffsetCommitRequest>().await? < 3 {
                return Err(Error::new(
                    ErrorKind::UnsupportedVersion,
                    "the group coordinator speaks TxnOffsetCommit below v3, which cannot \
                     fence a member of an older generation: exactly-once with a consumer \
                     group needs Kafka 2.5 or later",
                ));
            }
            let (_, response) = broker
                .call_at_most(
                    TXN_OFFSET_COMMIT_MAX_VERSION,
                    |_| {
                        TxnOffsetCommitRequest::default()
                            .with_transactional_id(txn_id(id))
                            .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
                            .with_producer_id(ProducerId(identity.id))
                            .with_producer_epoch(identity.epoch)
                            .with_generation_id(group.generation_id)
                            .with_member_id(StrBytes::from_string(group.member_id.clone()))
                            .with_group_instance_id(
                                group.group_instance_id.clone().map(StrBytes::from_string),
                            )
                            .with_topics(topics)
                    },
                    timeout,
                )
                .await?;
            for topic in &response.topics {
                for p in &topic.partitions {
                    if let Some(code) = KafkaCode::from_code(p.error_code) {
                        return Err(Error::kafka(code)
                            .with_topic(topic.name.0.as_str())
                            .with_partition(p.partition_index));
                    }
                }
            }
            Ok(())
        }
    })
    .await
    .map_err(|e| {
        e.with_api(kafka_protocol::messages::ApiKey::TxnOffsetCommit)
            .with_group(group_id)
    })
}

/// The transaction methods of a producer built with
/// [`transactional_id`](super::ProducerBuilder::transactional_id).
impl Producer {
    fn txn(&self) -> Result<&std::sync::Mutex<TxnState>> {
        self.inner.shared.txn.as_ref().ok_or_else(|| {
            Error::config(
                "not a transactional producer: build it with ProducerBuilder::transactional_id",
            )
        })
    }

    fn txn_deadline(&self) -> Instant {
        Instant::now() + self.inner.shared.config.max_block
    }

    /// Waits until every record accepted so far has its report and no
    /// AddPartitionsToTxn is in flight: an add that reached the coordinator after
    /// EndTxn would open a transaction nobody ends.
    async fn settle(&self, txn: &std::sync::Mutex<TxnState>) {
        self.flush().await;
        loop {
            let answered = self.inner.shared.txn_added.notified();
            if !lock(txn).adding {
                return;
            }
            answered.await;
        }
    }

    /// Makes the open transaction abortable: `transact` dooms a transaction that may
    /// hold outputs without their input's offset.
    pub(crate) fn doom_transaction(&self, err: Error) {
        if let Ok(txn) = self.txn() {
            lock(txn).fail(err);
        }
    }

    /// Whether the last commit_transaction failed unanswered (retry it, do not
    /// abort: it may have happened).
    pub(crate) fn commit_unanswered(&self) -> bool {
        self.txn().is_ok_and(|txn| lock(txn).commit_unanswered)
    }

    /// Whether a transaction is open (or cannot commit and waits for its abort).
    pub(crate) fn in_transaction(&self) -> bool {
        self.txn().is_ok_and(|txn| {
            matches!(
                lock(txn).phase(),
                Phase::Open | Phase::Committing | Phase::Abortable
            )
        })
    }

    /// Opens a transaction. The first call gets the producer id from the transaction
    /// coordinator, which fences any older producer with the same transactional id
    /// (its next transactional request fails with PRODUCER_FENCED) and aborts the
    /// transaction it left open.
    pub async fn begin_transaction(&self) -> Result<()> {
        let txn = self.txn()?;
        let (uninitialized, id, timeout) = {
            let state = lock(txn);
            (
                *state.phase() == Phase::Uninitialized,
                state.id.clone(),
                state.timeout,
            )
        };
        if uninitialized {
            let client = &self.inner.shared.client;
            match init_producer_id(client, &id, timeout, None, self.txn_deadline()).await {
                Ok(identity) => {
                    tracing::debug!(transactional_id = %id, producer_id = identity.id, epoch = identity.epoch, "transactional producer initialized");
                    lock(txn).initialized(identity)
                }
                Err(err) => {
                    // Nothing else to go on with: a later begin tries again unless
                    // the error says the producer cannot go on.
                    if classify(&err) == Class::Fatal {
                        lock(txn).fail(err.clone());
                    }
                    return Err(err);
                }
            }
        }
        lock(txn).begin()
    }

    /// Adds `offsets` (the next offset to read of each input partition) of consumer
    /// group `group` to the open transaction: they are committed if and only if the
    /// transaction commits. The group coordinator refuses them, and the transaction
    /// becomes abortable, if `group` names a member or generation that is no longer
    /// current (KIP-447).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &GroupMetadata,
    ) -> Result<()> {
        let txn = self.txn()?;
        let (id, identity) = {
            let state = lock(txn);
            state.check_offsets()?;
            (state.id.clone(), state.identity)
        };
        let identity = identity.ok_or_else(|| {
            Error::new(ErrorKind::Internal, "no producer id in an open transaction")
        })?;
        if offsets.is_empty() {
            return Ok(());
        }
        let client = &self.inner.shared.client;
        let result =
            commit_offsets(client, &id, identity, offsets, group, self.txn_deadline()).await;
        let mut state = lock(txn);
        match result {
            Ok(()) => {
                state.started = true;
                Ok(())
            }
            Err(err) => {
                state.started = true;
                state.fail(err.clone());
                Err(err)
            }
        }
    }

    /// Delivers every record of the open transaction, then commits it: its records
    /// become visible to `read_committed` consumers and its offsets are committed,
    /// all or none.
    ///
    /// An error that leaves the transaction abortable (a record that could not be
    /// delivered, offsets the group refused) is returned: call
    /// [`abort_transaction`](Self::abort_transaction), then go on. A fatal one
    /// ([`Error::is_producer_fatal`]: PRODUCER_FENCED, another instance took over)
    /// means drop this producer. A commit whose EndTxn went unanswered within
    /// `max.block.ms` may have happened: call commit_transaction again.
    pub async fn commit_transaction(&self) -> Result<()> {
        let txn = self.txn()?;
        let retry = lock(txn).start_commit()?;
        let guard = Unfinished::new(txn, "commit_transaction");
        if !retry {
            self.settle(txn).await;
        }
        let (id, identity, started) = {
            let state = lock(txn);
            if let Some(err) = state.fatal().or_else(|| state.abortable()) {
                guard.disarm();
                return Err(err);
            }
            (state.id.clone(), state.identity, state.started)
        };
        if started {
            let identity = identity.ok_or_else(|| {
                Error::new(ErrorKind::Internal, "no producer id in a transaction")
            })?;
            let client = &self.inner.shared.client;
            if let Err(err) = end_txn(client, &id, identity, true, self.txn_deadline()).await {
                guard.disarm();
                lock(txn).commit_failed(err.clone());
                return Err(err);
            }
        }
        guard.disarm();
        lock(txn).finish();
        Ok(())
    }

    /// Aborts the open transaction: records not sent yet fail with an error saying
    /// so, records already written stay invisible to `read_committed` consumers, and
    /// offsets added to it are not committed.
    pub async fn abort_transaction(&self) -> Result<()> {
        let txn = self.txn()?;
        lock(txn).start_abort()?;
        let guard = Unfinished::new(txn, "abort_transaction");
        // The sender fails what waits; what is in flight finishes.
        self.inner.shared.wake.notify_one();
        self.settle(txn).await;
        let (id, identity, started, bump) = {
            let state = lock(txn);
            if let Some(err) = state.fatal() {
                guard.disarm();
                return Err(err);
            }
            (
                state.id.clone(),
                state.identity,
                state.started,
                state.bump_epoch,
            )
        };
        let client = &self.inner.shared.client;
        if let Some(identity) = identity {
            if started {
                if let Err(err) = end_txn(client, &id, identity, false, self.txn_deadline()).await {
                    lock(txn).abort_failed(err.clone());
                    return Err(err);
                }
            }
            if bump {
                let timeout = lock(txn).timeout;
                match init_producer_id(client, &id, timeout, Some(identity), self.txn_deadline())
                    .await
                {
                    Ok(bumped) => lock(txn).initialized(bumped),
                    Err(err) => {
                        guard.disarm();
                        lock(txn).abort_failed(err.clone());
                        return Err(err);
                    }
                }
            }
        }
        guard.disarm();
        lock(txn).finish();
        Ok(())
    }
}

/// Makes a commit or abort whose future is dropped before it finished leave the
/// transaction abortable instead of mid-commit for ever.
struct Unfinished<'a> {
    txn: &'a std::sync::Mutex<TxnState>,
    what: &'static str,
    armed: std::cell::Cell<bool>,
}

impl<'a> Unfinished<'a> {
    fn new(txn: &'a std::sync::Mutex<TxnState>, what: &'static str) -> Self {
        Self {
            txn,
            what,
            armed: std::cell::Cell::new(true),
        }
    }

    fn disarm(&self) {
        self.armed.set(false);
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.armed.get() {
            lock(self.txn).cancelled(self.what);
        }
    }
}

pub(crate) fn lock(txn: &std::sync::Mutex<TxnState>) -> std::sync::MutexGuard<'_, TxnState> {
    txn.lock()
        .expect("the transaction lock is never held across a panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn ready() -> TxnState {
        let mut s = TxnState::new(Arc::from("tx"), Duration::from_secs(60));
        s.initialized(ProducerIdentity { id: 7, epoch: 0 });
        s
    }

    #[test]
    fn sends_only_inside_a_transaction() {
        let mut s = TxnState::new(Arc::from("tx"), Duration::from_secs(60));
        assert!(s.check_send().is_err(), "uninitialized");
        s.initialized(ProducerIdentity { id: 7, epoch: 0 });
        assert!(s.check_send().is_err(), "no transaction open");
        s.begin().unwrap();
        s.check_send().unwrap();
        assert!(s.begin().is_err(), "one transaction at a time");
        s.start_commit().unwrap();
        assert!(s.check_send().is_err(), "no sends while committing");
        s.finish();
        assert_eq!(*s.phase(), Phase::Ready);
        assert!(s.start_commit().is_err(), "nothing to commit");
        assert!(s.start_abort().is_err(), "nothing to abort");
    }

    #[test]
    fn partitions_wait_until_added_and_only_one_add_runs_at_a_time() {
        let mut s = ready();
        s.begin().unwrap();
        assert!(s.note_partition("t", 0), "a new partition asks for an add");
        assert!(!s.note_partition("t", 0), "once");
        assert!(!s.may_send(&tp(0)));
        assert!(!s.may_send(&tp(1)));
        let (parts, identity) = s.take_to_add().unwrap();
        assert_eq!(parts, vec![tp(0), tp(1)]);
        assert_eq!(identity.id, 7);
        assert!(!s.may_send(&tp(2)));
        assert!(!s.may_send(&tp(1)));
        assert!(
            s.take_to_add().is_none(),
            "one AddPartitionsToTxn in flight"
        );
        s.added(parts, Ok(()));
        assert!(s.may_send(&tp(0)) && s.may_send(&tp(1)));
        assert!(!s.may_send(&tp(2)));
        assert_eq!(s.take_to_add().unwrap().0, vec![tp(2)]);
        assert!(s.started);
        s.start_commit().unwrap();
        s.finish();
        s.begin().unwrap();
        assert!(
            !s.may_send(&tp(0)),
            "a new transaction adds its partitions again"
        );
        assert!(!s.started);
    }

    #[test]
    fn an_abortable_error_allows_only_an_abort() {
        let mut s = ready();
        s.begin().unwrap();
        s.fail(Error::kafka(KafkaCode::TOPIC_AUTHORIZATION_FAILED));
        assert_eq!(*s.phase(), Phase::Abortable);
        assert!(s.check_send().is_err());
        assert!(s.start_commit().is_err());
        assert!(s.begin().is_err());
        assert!(
            !s.may_send(&tp(0)),
            "nothing goes out of a doomed transaction"
        );
        s.start_abort().unwrap();
        // Failures while aborting change nothing.
        s.fail(Error::kafka(KafkaCode::NOT_LEADER_OR_FOLLOWER));
        assert_eq!(*s.phase(), Phase::Aborting);
        s.finish();
        s.begin().unwrap();
    }

    #[test]
    fn fencing_is_fatal_whatever_the_phase() {
        for setup in [
            |_: &mut TxnState| {},
            |s: &mut TxnState| s.begin().unwrap(),
            |s: &mut TxnState| {
                s.begin().unwrap();
                s.start_abort().unwrap();
            },
        ] {
            let mut s = ready();
            setup(&mut s);
            s.fail(Error::kafka(KafkaCode::PRODUCER_FENCED));
            assert_eq!(*s.phase(), Phase::Fatal);
            assert_eq!(s.fatal().unwrap().code(), Some(KafkaCode::PRODUCER_FENCED));
            assert!(s.begin().is_err() && s.check_send().is_err());
            assert!(s.start_abort().is_err() && s.start_commit().is_err());
        }
    }

    #[test]
    fn errors_are_classed_as_kafka_does() {
        let class = |code| classify(&Error::kafka(code));
        assert_eq!(class(KafkaCode::CONCURRENT_TRANSACTIONS), Class::Retry);
        assert_eq!(class(KafkaCode::NOT_COORDINATOR), Class::Retry);
        assert_eq!(class(KafkaCode::COORDINATOR_LOAD_IN_PROGRESS), Class::Retry);
        assert_eq!(class(KafkaCode::PRODUCER_FENCED), Class::Fatal);
        assert_eq!(class(KafkaCode::INVALID_TXN_STATE), Class::Fatal);
        assert_eq!(
            class(KafkaCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            Class::Fatal
        );
        assert_eq!(class(KafkaCode::ILLEGAL_GENERATION), Class::Abortable);
        assert_eq!(class(KafkaCode::UNKNOWN_MEMBER_ID), Class::Abortable);
        assert_eq!(class(KafkaCode::FENCED_INSTANCE_ID), Class::Abortable);
        assert_eq!(class(KafkaCode::TRANSACTION_ABORTABLE), Class::Abortable);
        assert_eq!(class(KafkaCode::INVALID_PRODUCER_EPOCH), Class::Abortable);
        assert_eq!(
            class(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER),
            Class::Abortable
        );
        assert_eq!(
            class(KafkaCode::GROUP_AUTHORIZATION_FAILED),
            Class::Abortable
        );
        assert_eq!(
            classify(&Error::new(ErrorKind::Timeout, "expired")),
            Class::Retry
        );
        assert_eq!(
            classify(&Error::new(ErrorKind::CorruptRecords, "x")),
            Class::Abortable
        );
    }
}
