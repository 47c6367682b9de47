//! The consumer group protocol (KIP-848) over the wire: ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe at both versions, topic ids, errors with Kafka's
//! messages, injected errors, NOT_COORDINATOR, and ListGroups' group types.

mod common;

use common::{RawClient, CLIENT_ID};
use josefine_mock::{Action, ApiKey, Intercept, MockBroker, MockCluster, ResponseError};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    GroupId, ListGroupsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const GROUP: &str = "kip848";
const NONE: i16 = 0;
const NOT_COORDINATOR: i16 = 16;
const INVALID_REQUEST: i16 = 42;
const GROUP_ID_NOT_FOUND: i16 = 69;
const FENCED_MEMBER_EPOCH: i16 = 110;

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A join: epoch 0 with every field, subscribed to `t`.
fn join(member_id: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member_id))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
        .with_topic_partitions(Some(Vec::new()))
}

fn assigned(response: &ConsumerGroupHeartbeatResponse) -> Vec<(uuid::Uuid, Vec<i32>)> {
    response
        .assignment
        .as_ref()
        .expect("an assignment")
        .topic_partitions
        .iter()
        .map(|t| (t.topic_id, t.partitions.clone()))
        .collect()
}

#[tokio::test]
async fn members_join_at_both_versions_and_describe_shows_them() {
    let broker = MockBroker::builder().topic("t", 4).start().await.unwrap();
    let topic_id = broker.topic_id("t").unwrap();
    let mut client = RawClient::connect(&broker).await;

    let first = client.call(&join("m1"), 1).await;
    assert_eq!(first.error_code, NONE, "{:?}", first.error_message);
    assert_eq!(first.member_id.as_deref(), Some("m1"));
    assert_eq!((first.member_epoch, first.heartbeat_interval_ms), (1, 500));
    assert_eq!(assigned(&first), vec![(topic_id, vec![0, 1, 2, 3])]);

    // v0 may leave the member id to the broker.
    let second = client.call(&join(""), 0).await;
    assert_eq!(second.error_code, NONE, "{:?}", second.error_message);
    let generated = second.member_id.clone().expect("a member id").to_string();
    assert!(!generated.is_empty());
    assert_eq!(second.member_epoch, 2);
    assert_eq!(assigned(&second), Vec::new(), "m1 still holds everything");

    // m1 gives two partitions back, reporting what it still owns.
    let asked = client
        .call(
            &join("m1")
                .with_member_epoch(1)
                .with_rebalance_timeout_ms(-1)
                .with_subscribed_topic_names(None)
                .with_topic_partitions(Some(vec![TopicPartitions::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![0, 1, 2, 3])])),
            1,
        )
        .await;
    assert_eq!(
        asked.member_epoch, 1,
        "m1 stays at its epoch until it revokes"
    );
    assert_eq!(assigned(&asked), vec![(topic_id, vec![0, 1])]);

    for version in [0, 1] {
        let request = ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s(GROUP)), GroupId(s("nope"))])
            .with_include_authorized_operations(true);
        let response = client.call(&request, version).await;
        let group = &response.groups[0];
        assert_eq!(group.error_code, NONE);
        assert_eq!(group.group_state.as_str(), "Reconciling");
        assert_eq!((group.group_epoch, group.assignment_epoch), (2, 2));
        assert_eq!(group.assignor_name.as_str(), "uniform");
        let m1 = &group.members[0];
        assert_eq!(m1.member_id.as_str(), "m1");
        assert_eq!((m1.member_epoch, m1.client_id.as_str()), (1, CLIENT_ID));
        assert!(m1.client_host.starts_with("/127.0.0.1"));
        assert_eq!(m1.subscribed_topic_names, vec![TopicName(s("t"))]);
        let parts = &m1.assignment.topic_partitions[0];
        assert_eq!((parts.topic_id, parts.topic_name.as_str()), (topic_id, "t"));
        assert_eq!(parts.partitions, vec![0, 1]);
        let target = &group.members[1].target_assignment.topic_partitions[0];
        assert_eq!(target.partitions, vec![2, 3]);
        assert_eq!(group.members[1].member_id.as_str(), generated);
        if version >= 1 {
            assert_eq!(m1.member_type, 1);
        }
        assert_eq!(response.groups[1].error_code, GROUP_ID_NOT_FOUND);
    }

    let listed = client.call(&ListGroupsRequest::default(), 5).await.groups;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].group_type.as_str(), "consumer");
    assert_eq!(listed[0].protocol_type.as_str(), "consumer");
}

#[tokio::test]
async fn errors_come_top_level_with_kafkas_messages() {
    let broker = MockBroker::builder().topic("t", 1).start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    let refused = client.call(&join(""), 1).await;
    assert_eq!(refused.error_code, INVALID_REQUEST);
    assert_eq!(
        refused.error_message.as_deref(),
        Some("MemberId can't be empty.")
    );
    let rule = broker.intercept(
        Intercept::api(ApiKey::ConsumerGroupHeartbeat).once(),
        Action::error(ResponseError::FencedMemberEpoch),
    );
    let injected = client.call(&join("m1"), 1).await;
    assert_eq!((injected.error_code, rule.hits()), (FENCED_MEMBER_EPOCH, 1));
    assert_eq!(
        broker.consumer_group_members(GROUP),
        Vec::new(),
        "an injected error does not act"
    );
    let describe = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]);
    let rule = broker.intercept(
        Intercept::api(ApiKey::ConsumerGroupDescribe).once(),
        Action::error(ResponseError::CoordinatorLoadInProgress),
    );
    assert_eq!(client.call(&describe, 1).await.groups[0].error_code, 14);
    assert_eq!(rule.hits(), 1);
}

#[tokio::test]
async fn only_the_coordinator_answers() {
    let cluster = MockCluster::builder()
        .brokers(3)
        .topic("t", 2)
        .start()
        .await
        .unwrap();
    let coordinator = cluster.group_coordinator(GROUP);
    let other = coordinator % 3 + 1;
    let mut wrong = RawClient::connect_to(&cluster, other).await;
    assert_eq!(wrong.call(&join("m1"), 1).await.error_code, NOT_COORDINATOR);
    let mut right = RawClient::connect_to(&cluster, coordinator).await;
    assert_eq!(right.call(&join("m1"), 1).await.member_epoch, 1);
    assert_eq!(cluster.consumer_group_epoch(GROUP), Some(1));
    assert_eq!(cluster.consumer_group_members(GROUP)[0].2.len(), 2);
}
