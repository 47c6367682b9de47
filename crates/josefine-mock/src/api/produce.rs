//! Produce (key 0): appends one record batch per partition to the leader's
//! log, by topic name before v13 and by topic id from v13 (KIP-516).
//!
//! Per partition, in Kafka's order: the topic and partition must exist
//! (UNKNOWN_TOPIC_OR_PARTITION, or UNKNOWN_TOPIC_ID by id), this broker must
//! lead it (NOT_LEADER_OR_FOLLOWER, with the current leader and its endpoint
//! from v10, KIP-951), `records` must be exactly one valid magic-2 batch (see
//! [`validate_produced`](crate::batch::validate_produced) for the codes), and
//! a batch with a producer id must pass the idempotence checks (KIP-98,
//! KIP-360; see [`crate::log`]). A duplicate of one of the producer's last
//! five batches is answered with the offset it was first written at and not
//! written again. An `acks` other than -1, 0 or 1 fails every partition with
//! INVALID_REQUIRED_ACKS. `acks` 1 and -1 behave the same: every replica is
//! always in sync.
//!
//! Transactional batches (KIP-98) need the request's `transactional_id`
//! (without one, every partition gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! as Kafka answers) and are verified with the transaction coordinator
//! before the sequence checks, as Kafka 3.6+ verifies them (KIP-890 part 1,
//! `transaction.partition.verification.enable`): unless the producer already
//! has a transaction open on the partition, the partition must be in its
//! Ongoing transaction. A producer id that is not the transactional id's is
//! INVALID_PRODUCER_ID_MAPPING, an old epoch INVALID_PRODUCER_EPOCH, a
//! partition outside the transaction TRANSACTION_ABORTABLE from v11 and
//! INVALID_TXN_STATE before, and a transaction completing or a coordinator
//! loading NOT_ENOUGH_REPLICAS (Kafka's retriable stand-in). A producer
//! with a transaction open on the partition gets INVALID_TXN_STATE for a
//! non-transactional batch. An accepted batch opens the producer's
//! transaction on the partition, which holds the last stable offset back
//! until the transaction's marker.
//!
//! With `acks=0` there is no response at all, and the connection just reads
//! the next request; if any partition failed, the broker closes the
//! connection instead, which is how Kafka tells such a producer to refresh
//! its metadata (`KafkaApis.handleProduceRequest`).

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{Frame, Handler, Mode, Refusal, Reply};
use crate::batch::{self, BatchHeader};
use crate::broker::Node;
use crate::fetch_sessions::TopicKey;
use crate::log::SequenceCheck;
use crate::state::{ClusterState, NotServed};
use crate::txn::{self, Target};

pub(crate) struct Produce;

impl Handler for Produce {
    type Request = ProduceRequest;

    fn handle(node: &Node, request: ProduceRequest, version: i16) -> ProduceResponse {
        if request.transactional_id.is_none() && has_transactional_batches(&request) {
            let code = ResponseError::TransactionalIdAuthorizationFailed.code();
            return Produce::error_response(node, &request, version, code);
        }
        let transactional_id = request.transactional_id.as_ref().map(|id| id.as_str());
        let acks_valid = matches!(request.acks, -1..=1);
        let mut appended = false;
        let response = {
            let mut state = node.state();
            if transactional_id.is_some() {
                // Transactions past their timeout end before their batches
                // are checked.
                let now = crate::coordinator::now();
                appended |= txn::driver::settle(&node.shared, &mut state, now);
            }
            let mut leaders = BTreeSet::new();
            let topics = request
                .topic_data
                .iter()
                .map(|topic| {
                    let key = topic_key(topic, version);
                    let partitions = topic
                        .partition_data
                        .iter()
                        .map(|data| {
                            let result = if acks_valid {
                                append(
                                    &mut state,
                                    node.node_id,
                                    &key,
                                    data,
                                    transactional_id,
                                    version,
                                )
                            } else {
                                Err(Failure::code(ResponseError::InvalidRequiredAcks))
                            };
                            match result {
                                Ok(done) => {
                                    appended |= done.appended;
                                    success(data.index, done)
                                }
                                Err(failure) => {
                                    if failure.code == ResponseError::NotLeaderOrFollower.code() {
                                        leaders.extend(failure.leader.map(|(id, _)| id));
                                    }
                                    failed(data.index, &failure, version)
                                }
                            }
                        })
                        .collect();
                    topic_response(topic, version).with_partition_responses(partitions)
                })
                .collect();
            ProduceResponse::default()
                .with_responses(topics)
                .with_node_endpoints(node_endpoints(&state, &leaders, version))
        };
        if appended {
            node.shared.notify_changed();
        }
        response
    }

    fn error_response(
        _node: &Node,
        request: &ProduceRequest,
        version: i16,
        code: i16,
    ) -> ProduceResponse {
        let topics = request
            .topic_data
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partition_data
                    .iter()
                    .map(|data| {
                        let failure = Failure {
                            code,
                            message: None,
                            leader: None,
                        };
                        failed(data.index, &failure, version)
                    })
                    .collect();
                topic_response(topic, version).with_partition_responses(partitions)
            })
            .collect();
        ProduceResponse::default().with_responses(topics)
    }
}

/// Answers a Produce request, or does not (acks=0).
pub(crate) fn serve(
    node: &Node,
    header: &RequestHeader,
    body: Bytes,
    mode: Mode,
) -> Result<Reply, Refusal> {
    let version = header.request_api_version;
    let request = super::decode_for::<ProduceRequest>(node, header, body, mode)?;
    let acks = request.acks;
    let response = match mode {
        Mode::Normal => Produce::handle(node, request, version),
        Mode::Error(code) => Produce::error_response(node, &request, version, code),
    };
    if acks == 0 {
        let failed = response
            .responses
            .iter()
            .flat_map(|topic| &topic.partition_responses)
            .any(|partition| partition.error_code != 0);
        return Ok(if failed { Reply::Close } else { Reply::Nothing });
    }
    let frame: Frame = super::encode_response(header.correlation_id, version, &response)?;
    Ok(Reply::Frame(frame))
}

/// Whether any partition's records start with a transactional batch
/// (Kafka's `ProduceRequest.hasTransactionalRecords`).
fn has_transactional_batches(request: &ProduceRequest) -> bool {
    request
        .topic_data
        .iter()
        .flat_map(|topic| &topic.partition_data)
        .filter_map(|data| data.records.as_deref().and_then(BatchHeader::parse))
        .any(|header| header.is_transactional())
}

fn topic_key(topic: &TopicProduceData, version: i16) -> TopicKey {
    if version >= 13 {
        TopicKey::Id(topic.topic_id)
    } else {
        TopicKey::Name(topic.name.to_string())
    }
}

fn topic_response(topic: &TopicProduceData, version: i16) -> TopicProduceResponse {
    let response = TopicProduceResponse::default();
    if version >= 13 {
        response.with_topic_id(topic.topic_id)
    } else {
        response.with_name(topic.name.clone())
    }
}

struct Appended {
    base_offset: i64,
    log_start_offset: i64,
    appended: bool,
}

struct Failure {
    code: i16,
    message: Option<&'static str>,
    leader: Option<(i32, i32)>,
}

impl Failure {
    fn code(error: ResponseError) -> Self {
        Failure::from_code(error.code())
    }

    fn from_code(code: i16) -> Self {
        Failure {
            code,
            message: None,
            leader: None,
        }
    }
}

/// A failed verification as Kafka's `ReplicaManager` answers the producer:
/// a fenced epoch is INVALID_PRODUCER_EPOCH; a coordinator that cannot
/// answer now (a transaction completing, loading) NOT_ENOUGH_REPLICAS, which
/// every client retries; a partition outside the transaction
/// TRANSACTION_ABORTABLE for clients that know it (v11+), INVALID_TXN_STATE
/// before.
fn unverified(code: i16, version: i16) -> i16 {
    match code {
        txn::PRODUCER_FENCED => txn::INVALID_PRODUCER_EPOCH,
        txn::CONCURRENT_TRANSACTIONS | txn::COORDINATOR_LOAD_IN_PROGRESS => {
            ResponseError::NotEnoughReplicas.code()
        }
        txn::TRANSACTION_ABORTABLE if version <= 10 => txn::INVALID_TXN_STATE,
        code => code,
    }
}

impl From<NotServed> for Failure {
    fn from(not_served: NotServed) -> Self {
        Failure {
            code: not_served.code,
            message: None,
            leader: not_served.leader,
        }
    }
}

fn append(
    state: &mut ClusterState,
    node_id: i32,
    key: &TopicKey,
    data: &PartitionProduceData,
    transactional_id: Option<&str>,
    version: i16,
) -> Result<Appended, Failure> {
    let unknown_producer = state.settings.unknown_producer;
    // Produce carries no leader epoch, so only leadership is checked.
    let partition = state.served_partition(node_id, key, data.index, -1)?;
    let records = data.records.as_deref().unwrap_or_default();
    let header = batch::validate_produced(records, version).map_err(|invalid| Failure {
        code: invalid.code,
        message: Some(invalid.message),
        leader: None,
    })?;
    if header.is_transactional() && !partition.log.has_open_txn(header.producer_id) {
        let topic = state
            .resolve(key)
            .map(|(name, _)| name.to_owned())
            .unwrap_or_default();
        state
            .transactions
            .verify(
                transactional_id.unwrap_or_default(),
                header.producer_id,
                header.producer_epoch,
                Target::Partition(&topic, data.index),
            )
            .map_err(|code| Failure::from_code(unverified(code, version)))?;
    }
    let partition = state.served_partition_mut(node_id, key, data.index, -1)?;
    let log = &mut partition.log;
    if header.has_producer_id() {
        match log.check_sequence(&header, unknown_producer) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate(base_offset) => {
                return Ok(Appended {
                    base_offset,
                    log_start_offset: log.start_offset(),
                    appended: false,
                })
            }
            SequenceCheck::Refuse(code) => return Err(Failure::from_code(code)),
        }
        log.check_transactional(&header)
            .map_err(Failure::from_code)?;
    }
    let base_offset = log.append(records, partition.leader_epoch);
    if header.has_producer_id() {
        log.record_producer_batch(&header, base_offset);
    }
    Ok(Appended {
        base_offset,
        log_start_offset: log.start_offset(),
        appended: true,
    })
}

fn success(index: i32, done: Appended) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(done.base_offset)
        // CreateTime topics: Kafka only fills this in for LogAppendTime.
        .with_log_append_time_ms(-1)
        .with_log_start_offset(done.log_start_offset)
}

fn failed(index: i32, failure: &Failure, version: i16) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(failure.code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(failure.message.map(StrBytes::from_static_str));
    match failure.leader {
        Some((leader, epoch)) if version >= 10 => response.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch),
        ),
        _ => response,
    }
}

/// The endpoints of the leaders named in NOT_LEADER_OR_FOLLOWER answers
/// (v10+, KIP-951), so the producer can go straight there.
fn node_endpoints(
    state: &ClusterState,
    leaders: &BTreeSet<i32>,
    version: i16,
) -> Vec<NodeEndpoint> {
    if version < 10 {
        return Vec::new();
    }
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
}
