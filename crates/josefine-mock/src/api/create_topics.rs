//! CreateTopics (key 19): creates topics, or with `validate_only` just checks
//! that it could (KIP-108).
//!
//! Validation mirrors Kafka's controller so clients meet the same errors:
//! INVALID_TOPIC_EXCEPTION for bad names, TOPIC_ALREADY_EXISTS,
//! INVALID_PARTITIONS for 0 or below -1 partitions, INVALID_REPLICATION_FACTOR
//! for more replicas than brokers, INVALID_REPLICA_ASSIGNMENT for a bad
//! explicit assignment, and INVALID_REQUEST for a topic named twice in one
//! request. -1 partitions or replicas means the broker default (KIP-464).
//! Topic configs are accepted and ignored.

use std::collections::HashMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Handler, INVALID_REQUEST};
use crate::broker::Node;
use crate::state::{ClusterState, Rejection};

pub(crate) struct CreateTopics;

impl Handler for CreateTopics {
    type Request = CreateTopicsRequest;

    fn handle(node: &Node, request: CreateTopicsRequest, _version: i16) -> CreateTopicsResponse {
        let mut occurrences: HashMap<&str, usize> = HashMap::new();
        for topic in &request.topics {
            *occurrences.entry(topic.name.as_str()).or_default() += 1;
        }
        let mut state = node.state();
        let results = request
            .topics
            .iter()
            .map(|topic| {
                let result = CreatableTopicResult::default().with_name(topic.name.clone());
                if occurrences[topic.name.as_str()] > 1 {
                    return rejected(
                        result,
                        Rejection {
                            code: INVALID_REQUEST,
                            message: format!(
                                "Create topics request contains multiple entries for the topic {}.",
                                topic.name.as_str()
                            ),
                        },
                    );
                }
                match create(&mut state, topic, request.validate_only) {
                    Ok(created) => result
                        .with_topic_id(created.topic_id)
                        .with_error_message(None)
                        .with_num_partitions(created.partitions)
                        .with_replication_factor(created.replication_factor),
                    Err(rejection) => rejected(result, rejection),
                }
            })
            .collect();
        CreateTopicsResponse::default().with_topics(results)
    }

    fn error_response(
        _node: &Node,
        request: &CreateTopicsRequest,
        _version: i16,
        code: i16,
    ) -> CreateTopicsResponse {
        let results = request
            .topics
            .iter()
            .map(|topic| {
                CreatableTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_error_code(code)
                    .with_error_message(None)
                    .with_configs(None)
            })
            .collect();
        CreateTopicsResponse::default().with_topics(results)
    }
}

struct Created {
    topic_id: uuid::Uuid,
    partitions: i32,
    replication_factor: i16,
}

fn create(
    state: &mut ClusterState,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<Created, Rejection> {
    let name = topic.name.as_str();
    let replicas = if topic.assignments.is_empty() {
        let (partitions, replication_factor) =
            state.check_new_topic(name, topic.num_partitions, topic.replication_factor)?;
        state.assign_replicas(partitions, replication_factor)
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(Rejection {
                code: INVALID_REQUEST,
                message:
                    "Both numPartitions or replicationFactor and replicasAssignments were set. \
                          Both cannot be used at the same time."
                        .to_owned(),
            });
        }
        state.check_new_topic(name, -1, -1)?;
        let assignment: Vec<(i32, Vec<i32>)> = topic
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect();
        state.check_replica_assignment(&assignment)?
    };
    let partitions = i32::try_from(replicas.len()).unwrap_or(i32::MAX);
    let replication_factor = replicas
        .first()
        .map_or(0, |r| i16::try_from(r.len()).unwrap_or(i16::MAX));
    let topic_id = if validate_only {
        uuid::Uuid::nil()
    } else {
        state.create_topic(name, replicas).id
    };
    Ok(Created {
        topic_id,
        partitions,
        replication_factor,
    })
}

fn rejected(result: CreatableTopicResult, rejection: Rejection) -> CreatableTopicResult {
    result
        .with_error_code(rejection.code)
        .with_error_message(Some(StrBytes::from_string(rejection.message)))
        .with_configs(None)
}
