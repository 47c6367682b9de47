//! DeleteTopics (key 20): deletes topics by name, or from v6 by id (KIP-516).
//!
//! Deletion is immediate; Kafka's is asynchronous, but a client cannot tell
//! the difference through Metadata except by timing, which the mock does not
//! model. Unknown names get UNKNOWN_TOPIC_OR_PARTITION, unknown ids
//! UNKNOWN_TOPIC_ID.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{Handler, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION};
use crate::broker::Node;

pub(crate) struct DeleteTopics;

impl Handler for DeleteTopics {
    type Request = DeleteTopicsRequest;

    fn handle(node: &Node, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
        let mut state = node.state();
        let results = targets(&request, version)
            .into_iter()
            .map(|(name, id)| {
                let result = DeletableTopicResult::default()
                    .with_name(name.clone())
                    .with_topic_id(id)
                    .with_error_message(None);
                // Like Kafka's controller, an id wins over a name when both
                // are given.
                let found = if id != Uuid::nil() {
                    state.topic_by_id(id).map(|(name, _)| name.to_owned())
                } else {
                    name.as_ref().map(|n| n.to_string())
                };
                match found.and_then(|n| state.delete_topic(&n).map(|t| (n, t))) {
                    Some((name, topic)) => result
                        .with_name(Some(TopicName(name.into())))
                        .with_topic_id(topic.id),
                    None if id != Uuid::nil() => result.with_error_code(UNKNOWN_TOPIC_ID),
                    None => result.with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
                }
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(results)
    }

    fn error_response(
        _node: &Node,
        request: &DeleteTopicsRequest,
        version: i16,
        code: i16,
    ) -> DeleteTopicsResponse {
        let results = targets(request, version)
            .into_iter()
            .map(|(name, id)| {
                DeletableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_error_code(code)
                    .with_error_message(None)
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(results)
    }
}

/// The topics a request names, as (name, id) whatever its version.
fn targets(request: &DeleteTopicsRequest, version: i16) -> Vec<(Option<TopicName>, Uuid)> {
    if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.clone()), Uuid::nil()))
            .collect()
    }
}
