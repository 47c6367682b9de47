//! CreatePartitions (key 37): grows topics' partition counts, or with
//! `validate_only` just checks that it could (KIP-195).
//!
//! Validation mirrors Kafka's controller so clients meet the same errors:
//! UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist,
//! INVALID_PARTITIONS for a count that is not an increase,
//! INVALID_REPLICA_ASSIGNMENT for a bad explicit assignment, and
//! INVALID_REQUEST for a topic named twice in one request. New partitions
//! start empty and keep the topic's id and replication factor.

use std::collections::HashMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Handler, INVALID_REQUEST};
use crate::broker::Node;
use crate::state::{ClusterState, Rejection};

pub(crate) struct CreatePartitions;

impl Handler for CreatePartitions {
    type Request = CreatePartitionsRequest;

    fn handle(
        node: &Node,
        request: CreatePartitionsRequest,
        _version: i16,
    ) -> CreatePartitionsResponse {
        let mut occurrences: HashMap<&str, usize> = HashMap::new();
        for topic in &request.topics {
            *occurrences.entry(topic.name.as_str()).or_default() += 1;
        }
        let mut state = node.state();
        let results = request
            .topics
            .iter()
            .map(|topic| {
                let outcome = if occurrences[topic.name.as_str()] > 1 {
                    Err(duplicate(topic))
                } else {
                    grow(&mut state, topic, request.validate_only)
                };
                result(topic, outcome)
            })
            .collect();
        CreatePartitionsResponse::default().with_results(results)
    }

    fn error_response(
        _node: &Node,
        request: &CreatePartitionsRequest,
        _version: i16,
        code: i16,
    ) -> CreatePartitionsResponse {
        let results = request
            .topics
            .iter()
            .map(|topic| {
                CreatePartitionsTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_error_code(code)
                    .with_error_message(None)
            })
            .collect();
        CreatePartitionsResponse::default().with_results(results)
    }
}

/// Checks one entry and, unless only validating, adds its partitions.
fn grow(
    state: &mut ClusterState,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Rejection> {
    let name = topic.name.as_str();
    // A null list asks the broker to place the partitions itself.
    let assignment: Option<Vec<Vec<i32>>> = topic.assignments.as_ref().map(|lists| {
        lists
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect()
    });
    let replicas = state.plan_new_partitions(name, topic.count, assignment.as_deref())?;
    if !validate_only {
        state.add_partitions(name, replicas);
    }
    Ok(())
}

fn duplicate(topic: &CreatePartitionsTopic) -> Rejection {
    Rejection {
        code: INVALID_REQUEST,
        message: format!(
            "Create partitions request contains multiple entries for the topic {}.",
            topic.name.as_str()
        ),
    }
}

fn result(
    topic: &CreatePartitionsTopic,
    outcome: Result<(), Rejection>,
) -> CreatePartitionsTopicResult {
    let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
    match outcome {
        Ok(()) => result.with_error_message(None),
        Err(rejection) => result
            .with_error_code(rejection.code)
            .with_error_message(Some(StrBytes::from_string(rejection.message))),
    }
}
