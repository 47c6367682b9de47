//! ConsumerGroupDescribe (key 69): a consumer-protocol group (KIP-848) as
//! admin clients see it: its state, group and target-assignment epochs, its
//! assignor, and per member the ids, client id and host, subscription, the
//! assignment it has and the one it is moving to.
//!
//! Per group: NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS from the wrong
//! or a loading broker; GROUP_ID_NOT_FOUND, with Kafka's message, for a
//! group that does not exist or is a classic group. Partitions go out by
//! topic id and name (a topic deleted since is left out). The assignor is
//! the one a member named, else "uniform". Authorized operations, when asked
//! for, are READ, DELETE and DESCRIBE (there are no ACLs); v1 adds each
//! member's type, always 1 (the consumer protocol: the mock has no mixed
//! groups).

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::consumer_group_heartbeat::{by_id, topics};
use super::Handler;
use crate::broker::Node;
use crate::coordinator;
use crate::group::consumer::Topics;
use crate::group::uniform::Partitions;
use crate::group::GROUP_ID_NOT_FOUND;

/// Kafka's `AclOperation` codes as a bit field: READ (3), DELETE (6),
/// DESCRIBE (8).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// What the field holds when nobody asked.
const OPERATIONS_OMITTED: i32 = i32::MIN;
/// `member_type` (v1): a member of the consumer protocol.
const CONSUMER_MEMBER: i8 = 1;

pub(crate) struct ConsumerGroupDescribe;

fn string(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

fn assignment(partitions: &Partitions, topics: &Topics) -> Assignment {
    let topic_partitions = by_id(partitions, topics)
        .into_iter()
        .map(|(id, name, partitions)| {
            TopicPartitions::default()
                .with_topic_id(id)
                .with_topic_name(TopicName(string(name)))
                .with_partitions(partitions)
        })
        .collect();
    Assignment::default().with_topic_partitions(topic_partitions)
}

impl Handler for ConsumerGroupDescribe {
    type Request = ConsumerGroupDescribeRequest;

    fn handle(
        node: &Node,
        request: ConsumerGroupDescribeRequest,
        _version: i16,
    ) -> ConsumerGroupDescribeResponse {
        let operations = if request.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            OPERATIONS_OMITTED
        };
        // Read before asking the coordinator: the two locks are never held
        // together.
        let topics = topics(node);
        let groups = request
            .group_ids
            .iter()
            .map(|id| {
                let described = coordinator::read(&node.shared, |c| {
                    c.consumer_describe(node.node_id, id.as_str())
                });
                let group = DescribedGroup::default().with_group_id(id.clone());
                let d = match described {
                    Err(code) => return group.with_error_code(code),
                    Ok(None) => {
                        let message = format!("Group {} is not a consumer group.", id.as_str());
                        return group
                            .with_error_code(GROUP_ID_NOT_FOUND)
                            .with_error_message(Some(string(message)));
                    }
                    Ok(Some(d)) => d,
                };
                let members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        Member::default()
                            .with_member_id(string(m.member_id))
                            .with_instance_id(m.instance_id.map(string))
                            .with_rack_id(m.rack_id.map(string))
                            .with_member_epoch(m.epoch)
                            .with_client_id(string(m.client_id))
                            .with_client_host(string(m.client_host))
                            .with_subscribed_topic_names(
                                m.subscribed_topic_names
                                    .into_iter()
                                    .map(|t| TopicName(string(t)))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(m.subscribed_topic_regex.map(string))
                            .with_assignment(assignment(&m.assignment, &topics))
                            .with_target_assignment(assignment(&m.target, &topics))
                            .with_member_type(CONSUMER_MEMBER)
                    })
                    .collect();
                group
                    .with_group_state(StrBytes::from_static_str(d.state.as_str()))
                    .with_group_epoch(d.epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(string(d.assignor))
                    .with_members(members)
                    .with_authorized_operations(operations)
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }

    fn error_response(
        _node: &Node,
        request: &ConsumerGroupDescribeRequest,
        _version: i16,
        code: i16,
    ) -> ConsumerGroupDescribeResponse {
        let groups = request
            .group_ids
            .iter()
            .map(|id| {
                DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(code)
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }
}
