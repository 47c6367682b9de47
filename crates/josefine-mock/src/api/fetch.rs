//! Fetch (key 1): stored batches from the partition's leader, by topic name
//! before v13 and by topic id from v13 (KIP-516), with long polling and
//! incremental fetch sessions (KIP-227, see [`crate::fetch_sessions`]).
//!
//! Per partition, in Kafka's order: the topic and partition must exist
//! (UNKNOWN_TOPIC_OR_PARTITION, or UNKNOWN_TOPIC_ID by id); a
//! `current_leader_epoch` (v9+) must be the partition's (older:
//! FENCED_LEADER_EPOCH, newer: UNKNOWN_LEADER_EPOCH, KIP-320); this broker
//! must lead it (NOT_LEADER_OR_FOLLOWER; the mock never serves follower
//! fetches, KIP-392); and the fetch offset must lie between the log start
//! and end offsets (OFFSET_OUT_OF_RANGE). From v12 the first three carry the
//! current leader and epoch, and from v16 its endpoint (KIP-951).
//!
//! Records are the stored batches from the one holding the fetch offset (so
//! the first may start before it), concatenated: as many whole batches as
//! fit in `partition_max_bytes` and in what is left of the request's
//! `max_bytes`, except that the first batch of the response is sent whatever
//! its size (KIP-74). With `set_truncate_last_batch(true)` the budget is
//! filled exactly and the records end with the head of the next batch, as
//! Kafka's byte-range reads do. The high watermark is the log end offset
//! (every replica is in sync); the last stable offset is the first offset of
//! the partition's earliest open transaction, or the high watermark. Under
//! `read_committed` (isolation level 1) nothing at or past the LSO is read,
//! and `aborted_transactions` lists (producer id, first offset) of every
//! aborted transaction whose ABORT marker is at or after the fetch offset
//! and whose first offset is before the end of what was read, as Kafka's
//! `collectAbortedTransactions` does; under `read_uncommitted` it is null.
//! `last_fetched_epoch` is not checked: the mock's logs are never
//! truncated, so there is never a diverging epoch to report.
//!
//! Long polling: while the response would carry fewer than `min_bytes` bytes
//! of records and no error, the request waits, up to `max_wait_ms`, for an
//! append anywhere in the cluster, a leader move or a log truncation, then
//! reads again; the wait holds no lock and only delays this connection.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ProducerId, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::{Mode, Refusal, Reply};
use crate::broker::Node;
use crate::fetch_sessions::{Context, FetchTarget, Sent, TopicKey};
use crate::state::ClusterState;

const READ_COMMITTED: i8 = 1;

/// Answers a Fetch request, after waiting for data if it asks to.
pub(crate) async fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
) -> Result<Reply, Refusal> {
    let version = header.request_api_version;
    let request = super::decode_for::<FetchRequest>(node, header, body, mode)?;
    let response = match mode {
        Mode::Normal => fetch(node, &request, version).await,
        Mode::Error(code) => error_response(&request, version, code),
    };
    super::encode_response(header.correlation_id, version, &response).map(Reply::Frame)
}

/// The response to [`Action::Error`](crate::Action::Error): a fetch-session
/// error (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH,
/// FETCH_SESSION_TOPIC_ID_ERROR) goes top-level with no partitions, as Kafka
/// sends those (v7+); any other code goes on every partition the request
/// names. The session id is 0 and sessions are left alone, so a client in an
/// incremental session starts over with a full fetch.
fn error_response(request: &FetchRequest, version: i16, code: i16) -> FetchResponse {
    let session_errors = [
        ResponseError::FetchSessionIdNotFound.code(),
        ResponseError::InvalidFetchSessionEpoch.code(),
        ResponseError::FetchSessionTopicIdError.code(),
    ];
    if version >= 7 && session_errors.contains(&code) {
        return FetchResponse::default().with_error_code(code);
    }
    let failure = PartitionRead::failed(code, None);
    let targets = targets(request, version);
    let reads = vec![failure; targets.len()];
    let partitions = targets.iter().zip(&reads).map(|(target, read)| {
        (
            target,
            partition_data(target, read, request.isolation_level, version),
        )
    });
    FetchResponse::default().with_responses(group_by_topic(partitions, version))
}

async fn fetch(node: &Node, request: &FetchRequest, version: i16) -> FetchResponse {
    let requested = targets(request, version);
    let opened = if version >= 7 {
        node.state().fetch_sessions.open(
            node.node_id,
            request.session_id,
            request.session_epoch,
            version >= 13,
            requested,
            &forgotten(request, version),
        )
    } else {
        Ok((Context::Sessionless, requested))
    };
    let (context, targets) = match opened {
        Ok(opened) => opened,
        Err(code) => return FetchResponse::default().with_error_code(code),
    };
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let deadline = Instant::now() + wait;
    loop {
        // Registered before reading, so an append between the read and the
        // wait still wakes this fetch.
        let changed = node.shared.changed().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut state = node.state();
            let reads = read_all(
                &state,
                node.node_id,
                &targets,
                request.max_bytes,
                request.isolation_level == READ_COMMITTED,
            );
            if Instant::now() >= deadline || ready(&reads, request.min_bytes) {
                return respond(
                    &mut state, node, context, &targets, &reads, request, version,
                );
            }
        }
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Kafka answers at once when there is enough data or anything went wrong
/// (`ReplicaManager.fetchMessages`); an empty fetch has nothing to wait for.
fn ready(reads: &[PartitionRead], min_bytes: i32) -> bool {
    let bytes: usize = reads.iter().map(|r| r.records.len()).sum();
    reads.is_empty()
        || reads.iter().any(|r| r.error_code != 0)
        || bytes >= usize::try_from(min_bytes).unwrap_or(0)
}

fn targets(request: &FetchRequest, version: i16) -> Vec<FetchTarget> {
    request
        .topics
        .iter()
        .flat_map(|topic| {
            let key = topic_key(&topic.topic, topic.topic_id, version);
            topic.partitions.iter().map(move |p| FetchTarget {
                topic: key.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect()
}

fn forgotten(request: &FetchRequest, version: i16) -> Vec<(TopicKey, i32)> {
    request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| {
            let key = topic_key(&topic.topic, topic.topic_id, version);
            topic.partitions.iter().map(move |p| (key.clone(), *p))
        })
        .collect()
}

fn topic_key(name: &TopicName, id: uuid::Uuid, version: i16) -> TopicKey {
    if version >= 13 {
        TopicKey::Id(id)
    } else {
        TopicKey::Name(name.as_str().to_owned())
    }
}

/// One partition's part of a response.
#[derive(Debug, Clone)]
struct PartitionRead {
    error_code: i16,
    /// The current leader and epoch, reported with leadership errors.
    leader: Option<(i32, i32)>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    records: Bytes,
    /// (producer id, first offset) of the aborted transactions in range,
    /// for `read_committed`.
    aborted: Vec<(i64, i64)>,
}

impl PartitionRead {
    fn failed(error_code: i16, leader: Option<(i32, i32)>) -> Self {
        PartitionRead {
            error_code,
            leader,
            // Kafka's UnifiedLog.UnknownOffset, what it sends with errors.
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: Bytes::new(),
            aborted: Vec::new(),
        }
    }
}

/// How a fetch reads: the response's byte budget and the read options.
#[derive(Debug, Clone, Copy)]
struct ReadOptions {
    budget: usize,
    min_one: bool,
    truncate: bool,
    read_committed: bool,
}

/// Reads every target against one response budget; only the first batch of
/// the whole response may exceed its limits.
fn read_all(
    state: &ClusterState,
    node_id: i32,
    targets: &[FetchTarget],
    max_bytes: i32,
    read_committed: bool,
) -> Vec<PartitionRead> {
    let mut options = ReadOptions {
        budget: usize::try_from(max_bytes).unwrap_or(0),
        min_one: true,
        truncate: state.settings.truncate_last_batch,
        read_committed,
    };
    targets
        .iter()
        .map(|target| {
            let read = read_one(state, node_id, target, options);
            options.budget = options.budget.saturating_sub(read.records.len());
            options.min_one &= read.records.is_empty();
            read
        })
        .collect()
}

fn read_one(
    state: &ClusterState,
    node_id: i32,
    target: &FetchTarget,
    options: ReadOptions,
) -> PartitionRead {
    let partition = match state.served_partition(
        node_id,
        &target.topic,
        target.partition,
        target.current_leader_epoch,
    ) {
        Ok(partition) => partition,
        Err(not_served) => return PartitionRead::failed(not_served.code, not_served.leader),
    };
    let log = &partition.log;
    if target.fetch_offset < log.start_offset() || target.fetch_offset > log.end_offset() {
        return PartitionRead::failed(ResponseError::OffsetOutOfRange.code(), None);
    }
    let limit = options
        .budget
        .min(usize::try_from(target.max_bytes).unwrap_or(0));
    let last_stable_offset = log.last_stable_offset();
    let max_offset = if options.read_committed {
        last_stable_offset
    } else {
        i64::MAX
    };
    let read = log.read(
        target.fetch_offset,
        limit,
        options.min_one,
        options.truncate,
        max_offset,
    );
    let aborted = if options.read_committed {
        log.aborted_between(target.fetch_offset, read.upper_bound)
    } else {
        Vec::new()
    };
    PartitionRead {
        error_code: 0,
        leader: None,
        high_watermark: log.end_offset(),
        last_stable_offset,
        log_start_offset: log.start_offset(),
        records: read.records,
        aborted,
    }
}

fn respond(
    state: &mut ClusterState,
    node: &Node,
    context: Context,
    targets: &[FetchTarget],
    reads: &[PartitionRead],
    request: &FetchRequest,
    version: i16,
) -> FetchResponse {
    let sent: Vec<Sent> = reads
        .iter()
        .map(|r| Sent {
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            has_records: !r.records.is_empty(),
            error_code: r.error_code,
        })
        .collect();
    let include = state
        .fetch_sessions
        .select(node.node_id, context, targets, &sent);
    let mut leaders = BTreeSet::new();
    let partitions = targets
        .iter()
        .zip(reads)
        .zip(include)
        .filter(|(_, include)| *include)
        .map(|((target, read), _)| {
            leaders.extend(read.leader.map(|(id, _)| id));
            (
                target,
                partition_data(target, read, request.isolation_level, version),
            )
        });
    let topics = group_by_topic(partitions, version);
    let endpoints = if version >= 16 {
        leaders
            .iter()
            .filter_map(|id| state.brokers.get(id))
            .map(|broker| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(broker.node_id))
                    .with_host(StrBytes::from_string(broker.host.clone()))
                    .with_port(broker.port)
            })
            .collect()
    } else {
        Vec::new()
    };
    FetchResponse::default()
        .with_session_id(context.session_id())
        .with_responses(topics)
        .with_node_endpoints(endpoints)
}

fn partition_data(
    target: &FetchTarget,
    read: &PartitionRead,
    isolation_level: i8,
    version: i16,
) -> PartitionData {
    let aborted = (isolation_level == READ_COMMITTED).then(|| {
        read.aborted
            .iter()
            .map(|(producer_id, first_offset)| {
                AbortedTransaction::default()
                    .with_producer_id(ProducerId(*producer_id))
                    .with_first_offset(*first_offset)
            })
            .collect()
    });
    let data = PartitionData::default()
        .with_partition_index(target.partition)
        .with_error_code(read.error_code)
        .with_high_watermark(read.high_watermark)
        .with_last_stable_offset(read.last_stable_offset)
        .with_log_start_offset(read.log_start_offset)
        .with_aborted_transactions(aborted)
        .with_records(Some(read.records.clone()));
    match read.leader {
        // A tagged field from v12; the codec refuses it set below that.
        Some((leader, epoch)) if version >= 12 => data.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch),
        ),
        _ => data,
    }
}

/// Collects partitions under their topics, in order of first appearance.
fn group_by_topic<'a>(
    partitions: impl Iterator<Item = (&'a FetchTarget, PartitionData)>,
    version: i16,
) -> Vec<FetchableTopicResponse> {
    let mut topics: Vec<(TopicKey, FetchableTopicResponse)> = Vec::new();
    for (target, data) in partitions {
        match topics.iter_mut().find(|(key, _)| *key == target.topic) {
            Some((_, topic)) => topic.partitions.push(data),
            None => {
                let topic = match &target.topic {
                    TopicKey::Id(id) if version >= 13 => {
                        FetchableTopicResponse::default().with_topic_id(*id)
                    }
                    TopicKey::Id(_) => FetchableTopicResponse::default(),
                    TopicKey::Name(name) => FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_string(name.clone()))),
                };
                topics.push((target.topic.clone(), topic.with_partitions(vec![data])));
            }
        }
    }
    topics.into_iter().map(|(_, topic)| topic).collect()
}
