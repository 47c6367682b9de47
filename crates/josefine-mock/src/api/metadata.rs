//! Metadata (key 3): brokers, controller, cluster id and topic placement.
//!
//! Follows the protocol page's rules for the topic list: at v0 an empty list
//! means every topic, from v1 a null list does and an empty one means none;
//! from v12 a topic may be named by id alone (KIP-516). Topics are never
//! auto-created, whatever `allow_auto_topic_creation` says, so a client's
//! handling of UNKNOWN_TOPIC_OR_PARTITION is always exercised.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{Handler, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION};
use crate::broker::Node;
use crate::state::{ClusterState, TopicState};

pub(crate) struct Metadata;

impl Handler for Metadata {
    type Request = MetadataRequest;

    fn handle(node: &Node, request: MetadataRequest, version: i16) -> MetadataResponse {
        let state = node.state();
        let topics = match requested(&request, version) {
            None => state
                .topics
                .iter()
                .map(|(name, topic)| describe(name, topic))
                .collect(),
            Some(wanted) => wanted.iter().map(|t| lookup(&state, t)).collect(),
        };
        cluster(&state).with_topics(topics)
    }

    fn error_response(
        node: &Node,
        request: &MetadataRequest,
        version: i16,
        code: i16,
    ) -> MetadataResponse {
        let state = node.state();
        let topics: Vec<MetadataResponseTopic> = match requested(request, version) {
            // Before v13 there is no top-level error code, so "all topics"
            // must carry the error on every topic for the client to see it.
            None => state
                .topics
                .iter()
                .map(|(name, topic)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(topic_name(name)))
                        .with_topic_id(topic.id)
                })
                .collect(),
            Some(wanted) => wanted
                .iter()
                .map(|t| {
                    MetadataResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                })
                .collect(),
        };
        let topics = topics
            .into_iter()
            .map(|t| t.with_error_code(code))
            .collect();
        cluster(&state).with_topics(topics).with_error_code(code)
    }
}

/// The requested topics, or `None` for "every topic".
fn requested(request: &MetadataRequest, version: i16) -> Option<&[MetadataRequestTopic]> {
    match &request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    }
}

fn cluster(state: &ClusterState) -> MetadataResponse {
    let brokers = state
        .brokers
        .values()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(state.cluster_id.clone())))
        .with_controller_id(BrokerId(state.controller_id))
}

fn lookup(state: &ClusterState, wanted: &MetadataRequestTopic) -> MetadataResponseTopic {
    match &wanted.name {
        Some(name) => match state.topics.get(name.as_str()) {
            Some(topic) => describe(name, topic),
            None => MetadataResponseTopic::default()
                .with_name(Some(name.clone()))
                .with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
        },
        None => match state.topic_by_id(wanted.topic_id) {
            Some((name, topic)) if wanted.topic_id != Uuid::nil() => describe(name, topic),
            _ => MetadataResponseTopic::default()
                .with_name(None)
                .with_topic_id(wanted.topic_id)
                .with_error_code(UNKNOWN_TOPIC_ID),
        },
    }
}

fn describe(name: &str, topic: &TopicState) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .zip(0..)
        .map(|(p, index)| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}
