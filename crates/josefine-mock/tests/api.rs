//! The mock answers the APIs it implements the way a Kafka broker does.

mod common;

use common::{api_key, metadata_all, metadata_for, topic_name, RawClient};
use josefine_mock::MockBroker;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, DeleteTopicsRequest, DescribeAclsRequest,
    FetchRequest, InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
};
use kafka_protocol::protocol::{Encodable, Message, StrBytes};

fn advertised(response: &ApiVersionsResponse, key: ApiKey) -> Option<(i16, i16)> {
    response
        .api_keys
        .iter()
        .find(|k| k.api_key == key as i16)
        .map(|k| (k.min_version, k.max_version))
}

/// A CreatePartitions entry letting the broker place the new partitions.
fn grow(name: &str, count: i32) -> CreatePartitionsTopic {
    CreatePartitionsTopic::default()
        .with_name(topic_name(name))
        .with_count(count)
        .with_assignments(None)
}

fn grow_request(topics: Vec<CreatePartitionsTopic>) -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5_000)
}

fn result_codes(response: &CreatePartitionsResponse) -> Vec<(&str, i16)> {
    response
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.error_code))
        .collect()
}

fn create(name: &str, partitions: i32) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
}

#[tokio::test]
async fn api_versions_v0_lists_the_implemented_apis() {
    let broker = MockBroker::start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    let response = client.call(&ApiVersionsRequest::default(), 0).await;
    assert_eq!(response.error_code, 0);
    let ranges = |key| advertised(&response, key);
    assert_eq!(
        ranges(ApiKey::ApiVersions),
        Some((0, ApiVersionsRequest::VERSIONS.max))
    );
    assert_eq!(
        ranges(ApiKey::Metadata),
        Some((0, MetadataRequest::VERSIONS.max))
    );
    assert_eq!(
        ranges(ApiKey::CreateTopics),
        Some((2, CreateTopicsRequest::VERSIONS.max))
    );
    assert_eq!(
        ranges(ApiKey::DeleteTopics),
        Some((1, DeleteTopicsRequest::VERSIONS.max))
    );
    assert_eq!(
        ranges(ApiKey::Produce),
        Some((3, ProduceRequest::VERSIONS.max))
    );
    assert_eq!(ranges(ApiKey::Fetch), Some((4, FetchRequest::VERSIONS.max)));
    assert_eq!(
        ranges(ApiKey::ListOffsets),
        Some((1, ListOffsetsRequest::VERSIONS.max))
    );
    assert_eq!(
        ranges(ApiKey::InitProducerId),
        Some((0, InitProducerIdRequest::VERSIONS.max))
    );
    assert_eq!(
        ranges(ApiKey::CreatePartitions),
        Some((0, CreatePartitionsRequest::VERSIONS.max))
    );
    assert_eq!(
        ranges(ApiKey::DescribeAcls),
        None,
        "the mock does not implement DescribeAcls"
    );
}

#[tokio::test]
async fn api_versions_v3_flexible_is_answered() {
    let broker = MockBroker::start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("josefine"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    // `recv` decodes the response header at ApiVersionsResponse's header
    // version, v0 even for flexible requests, so this also checks that.
    for version in 3..=ApiVersionsRequest::VERSIONS.max {
        let response = client.call(&request, version).await;
        assert_eq!(response.error_code, 0, "v{version}");
        // 9 data and topic APIs, 10 group coordinator APIs, 2 SASL APIs,
        // 4 transaction APIs.
        assert_eq!(response.api_keys.len(), 27, "v{version}");
    }
}

#[tokio::test]
async fn api_versions_above_the_supported_max_falls_back_to_v0() {
    let broker = MockBroker::start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    let too_high = ApiVersionsRequest::VERSIONS.max + 1;
    // A newer client would send a body the codec cannot write; any body does,
    // since the broker must not need to parse it.
    let correlation_id = client
        .send_as(api_key(ApiKey::ApiVersions), too_high, |buf| {
            ApiVersionsRequest::default().encode(buf, 3).unwrap();
        })
        .await;
    let response = client.recv::<ApiVersionsRequest>(0, correlation_id).await;
    assert_eq!(response.error_code, 35, "UNSUPPORTED_VERSION");
    assert_eq!(
        advertised(&response, ApiKey::ApiVersions),
        Some((0, ApiVersionsRequest::VERSIONS.max))
    );
    // The connection stays usable for the retry at a supported version.
    let retry = client.call(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(retry.error_code, 0);
}

#[tokio::test]
async fn api_versions_override_is_advertised_and_enforced() {
    let broker = MockBroker::builder()
        .api_versions(ApiKey::Metadata, 1, 4)
        .api_versions(ApiKey::ApiVersions, 0, 2)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;

    let correlation_id = client.send(&ApiVersionsRequest::default(), 3).await;
    let fallback = client.recv::<ApiVersionsRequest>(0, correlation_id).await;
    assert_eq!(fallback.error_code, 35, "v3 is above the overridden max 2");
    let response = client.call(&ApiVersionsRequest::default(), 2).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(advertised(&response, ApiKey::Metadata), Some((1, 4)));
    assert_eq!(advertised(&response, ApiKey::ApiVersions), Some((0, 2)));

    let metadata = client.call(&metadata_all(4), 4).await;
    assert_eq!(metadata.brokers.len(), 1);
    // Outside the advertised range the broker hangs up, as Kafka does.
    client.send(&metadata_all(5), 5).await;
    client.expect_closed().await;
}

#[tokio::test]
async fn without_api_hides_and_refuses_it() {
    let broker = MockBroker::builder()
        .without_api(ApiKey::DeleteTopics)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    let response = client.call(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(advertised(&response, ApiKey::DeleteTopics), None);
    client.send(&DeleteTopicsRequest::default(), 4).await;
    client.expect_closed().await;
}

#[tokio::test]
async fn metadata_lists_every_topic_at_every_version() {
    let broker = MockBroker::builder()
        .node_id(7)
        .cluster_id("test-cluster")
        .topic("orders", 3)
        .topic("audit", 1)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    for version in 0..=MetadataRequest::VERSIONS.max {
        let response = client.call(&metadata_all(version), version).await;
        assert_eq!(response.brokers.len(), 1, "v{version}");
        let me = &response.brokers[0];
        assert_eq!(me.node_id, BrokerId(7));
        assert_eq!(me.host.as_str(), "127.0.0.1");
        assert_eq!(me.port, i32::from(broker.addr().port()));
        if version >= 1 {
            assert_eq!(response.controller_id, BrokerId(7), "v{version}");
        }
        if version >= 2 {
            assert_eq!(
                response.cluster_id.as_deref(),
                Some("test-cluster"),
                "v{version}"
            );
        }
        let names: Vec<&str> = response
            .topics
            .iter()
            .map(|t| t.name.as_ref().unwrap().as_str())
            .collect();
        assert_eq!(names, ["audit", "orders"], "v{version}");
        let orders = &response.topics[1];
        assert_eq!(orders.error_code, 0);
        assert_eq!(orders.partitions.len(), 3);
        for (index, partition) in orders.partitions.iter().enumerate() {
            assert_eq!(partition.partition_index, index as i32);
            assert_eq!(partition.leader_id, BrokerId(7));
            assert_eq!(partition.replica_nodes, [BrokerId(7)]);
            assert_eq!(partition.isr_nodes, [BrokerId(7)]);
        }
        if version >= 10 {
            assert!(!orders.topic_id.is_nil(), "v{version} carries topic ids");
        }
    }
}

#[tokio::test]
async fn metadata_for_an_unknown_topic_is_unknown_topic_or_partition() {
    let broker = MockBroker::builder()
        .topic("orders", 2)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    for version in [1, 4, 9, 12, 13] {
        // allow_auto_topic_creation defaults to true: the mock must refuse anyway.
        let request = metadata_for(&["nope", "orders"]);
        let response = client.call(&request, version).await;
        assert_eq!(response.topics.len(), 2);
        assert_eq!(response.topics[0].error_code, 3, "v{version}");
        assert!(response.topics[0].partitions.is_empty());
        assert_eq!(response.topics[1].error_code, 0, "v{version}");
        assert_eq!(response.topics[1].partitions.len(), 2);
    }
    assert_eq!(broker.topics(), ["orders"], "Metadata never auto-creates");
    // From v1 an empty list asks for no topics at all.
    let none = client.call(&metadata_for(&[]), 1).await;
    assert!(none.topics.is_empty());
}

#[tokio::test]
async fn metadata_finds_topics_by_id() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    let broker = MockBroker::builder()
        .topic("orders", 1)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    let all = client.call(&metadata_all(12), 12).await;
    let id = all.topics[0].topic_id;
    let unknown = uuid::Uuid::from_u128(42);
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_topic_id(id)
            .with_name(None),
        MetadataRequestTopic::default()
            .with_topic_id(unknown)
            .with_name(None),
    ]));
    let response = client.call(&request, 12).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(
        response.topics[0].name.as_deref().map(|n| n.as_str()),
        Some("orders")
    );
    assert_eq!(response.topics[1].error_code, 100, "UNKNOWN_TOPIC_ID");
    assert_eq!(response.topics[1].topic_id, unknown);
}

#[tokio::test]
async fn create_topics_then_metadata_shows_them_at_every_version() {
    let broker = MockBroker::start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    for version in CreateTopicsRequest::VERSIONS.min..=CreateTopicsRequest::VERSIONS.max {
        let name = format!("created-v{version}");
        let request = CreateTopicsRequest::default()
            .with_topics(vec![create(&name, 4)])
            .with_timeout_ms(5_000);
        let response = client.call(&request, version).await;
        let result = &response.topics[0];
        assert_eq!(result.name, topic_name(&name));
        assert_eq!(
            result.error_code, 0,
            "v{version}: {:?}",
            result.error_message
        );
        if version >= 5 {
            assert_eq!(result.num_partitions, 4);
            assert_eq!(result.replication_factor, 1);
        }
        if version >= 7 {
            assert!(!result.topic_id.is_nil());
        }
        let metadata = client.call(&metadata_for(&[&name]), 9).await;
        assert_eq!(metadata.topics[0].error_code, 0, "v{version}");
        assert_eq!(metadata.topics[0].partitions.len(), 4, "v{version}");
    }
}

#[tokio::test]
async fn create_topics_rejects_what_kafka_rejects() {
    let broker = MockBroker::builder()
        .topic("exists", 1)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    let request = CreateTopicsRequest::default().with_topics(vec![
        create("exists", 1),
        create("zero", 0),
        create("negative", -2),
        create("default", -1),
        create("too-replicated", 1).with_replication_factor(3),
        create("bad/name", 1),
        create("twice", 1),
        create("twice", 1),
        CreatableTopic::default()
            .with_name(topic_name("assigned"))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(vec![
                CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(vec![BrokerId(1)]),
                CreatableReplicaAssignment::default()
                    .with_partition_index(1)
                    .with_broker_ids(vec![BrokerId(1)]),
            ]),
    ]);
    let response = client.call(&request, 7).await;
    let codes: Vec<(&str, i16)> = response
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("exists", 36),
            ("zero", 37),
            ("negative", 37),
            ("default", 0),
            ("too-replicated", 38),
            ("bad/name", 17),
            ("twice", 42),
            ("twice", 42),
            ("assigned", 0),
        ]
    );
    assert!(response.topics[0].error_message.is_some());
    assert_eq!(
        response.topics[3].num_partitions, 1,
        "-1 means one partition"
    );
    assert_eq!(broker.partition_count("default"), Some(1));
    assert_eq!(broker.partition_count("assigned"), Some(2));
    assert_eq!(broker.topics(), ["assigned", "default", "exists"]);
}

#[tokio::test]
async fn create_topics_validate_only_creates_nothing() {
    let broker = MockBroker::start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    let request = CreateTopicsRequest::default()
        .with_topics(vec![create("dry-run", 6), create("bad", 0)])
        .with_validate_only(true);
    let response = client.call(&request, 5).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].num_partitions, 6);
    assert_eq!(response.topics[1].error_code, 37, "validation still runs");
    assert!(broker.topics().is_empty());
}

#[tokio::test]
async fn create_partitions_then_metadata_lists_them_at_every_version() {
    let broker = MockBroker::builder()
        .node_id(4)
        .topic("orders", 1)
        .start()
        .await
        .unwrap();
    let id = broker.topic_id("orders").unwrap();
    let mut client = RawClient::connect(&broker).await;
    for version in CreatePartitionsRequest::VERSIONS.min..=CreatePartitionsRequest::VERSIONS.max {
        let count = i32::from(version) + 2;
        let response = client
            .call(&grow_request(vec![grow("orders", count)]), version)
            .await;
        assert_eq!(result_codes(&response), [("orders", 0)], "v{version}");
        assert_eq!(response.results[0].error_message, None, "v{version}");
        let metadata = client.call(&metadata_for(&["orders"]), 12).await;
        let topic = &metadata.topics[0];
        assert_eq!(topic.topic_id, id, "v{version}: the topic keeps its id");
        let listed: Vec<(i32, BrokerId)> = topic
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id))
            .collect();
        let expected: Vec<(i32, BrokerId)> = (0..count).map(|p| (p, BrokerId(4))).collect();
        assert_eq!(listed, expected, "v{version}");
    }
    assert_eq!(broker.partition_count("orders"), Some(5));
}

#[tokio::test]
async fn create_partitions_rejects_what_kafka_rejects() {
    let broker = MockBroker::builder()
        .node_id(1)
        .topic("two", 2)
        .topic("same", 2)
        .topic("fewer", 2)
        .topic("twice", 1)
        .topic("misassigned", 1)
        .topic("assigned", 1)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    let assignment = |brokers: &[i32]| {
        CreatePartitionsAssignment::default()
            .with_broker_ids(brokers.iter().copied().map(BrokerId).collect())
    };
    let request = grow_request(vec![
        grow("missing", 3),
        grow("same", 2),
        grow("fewer", 1),
        grow("twice", 2),
        grow("twice", 3),
        grow("misassigned", 3).with_assignments(Some(vec![assignment(&[1])])),
        grow("assigned", 3).with_assignments(Some(vec![assignment(&[1]), assignment(&[1])])),
        grow("two", 3),
    ]);
    let response = client.call(&request, 3).await;
    assert_eq!(
        result_codes(&response),
        [
            ("missing", 3),
            ("same", 37),
            ("fewer", 37),
            ("twice", 42),
            ("twice", 42),
            ("misassigned", 39),
            ("assigned", 0),
            ("two", 0),
        ]
    );
    assert!(response.results[..6]
        .iter()
        .all(|r| r.error_message.as_ref().is_some_and(|m| !m.is_empty())));
    let counts: Vec<Option<i32>> = ["missing", "same", "fewer", "twice", "misassigned"]
        .iter()
        .map(|t| broker.partition_count(t))
        .collect();
    assert_eq!(
        counts,
        [None, Some(2), Some(2), Some(1), Some(1)],
        "a rejected entry changes nothing"
    );
    assert_eq!(broker.partition_count("assigned"), Some(3));
    assert_eq!(broker.partition_count("two"), Some(3));
    assert!(
        !broker.topics().contains(&"missing".to_owned()),
        "never auto-created"
    );
}

#[tokio::test]
async fn create_partitions_validate_only_changes_nothing() {
    let broker = MockBroker::builder()
        .topic("orders", 2)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    let request =
        grow_request(vec![grow("orders", 6), grow("orders-too", 1)]).with_validate_only(true);
    let response = client.call(&request, 2).await;
    assert_eq!(
        result_codes(&response),
        [("orders", 0), ("orders-too", 3)],
        "validation still runs"
    );
    assert_eq!(broker.partition_count("orders"), Some(2));
    let metadata = client.call(&metadata_for(&["orders"]), 12).await;
    assert_eq!(metadata.topics[0].partitions.len(), 2);
}

#[tokio::test]
async fn delete_topics_by_name_and_by_id() {
    let broker = MockBroker::builder()
        .topic("old", 1)
        .topic("older", 1)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;

    let by_name = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name("old"), topic_name("missing")])
        .with_timeout_ms(5_000);
    let response = client.call(&by_name, 1).await;
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(
        response.responses[1].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let metadata = client.call(&metadata_for(&["old"]), 1).await;
    assert_eq!(metadata.topics[0].error_code, 3, "deleted topics are gone");

    let id = client.call(&metadata_for(&["older"]), 12).await.topics[0].topic_id;
    let by_id = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(id),
        DeleteTopicState::default()
            .with_name(None)
            .with_topic_id(uuid::Uuid::from_u128(7)),
    ]);
    let response = client.call(&by_id, 6).await;
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(
        response.responses[0].name.as_deref().map(|n| n.as_str()),
        Some("older")
    );
    assert_eq!(response.responses[1].error_code, 100, "UNKNOWN_TOPIC_ID");
    assert!(broker.topics().is_empty());
}

#[tokio::test]
async fn unimplemented_api_closes_the_connection_but_is_logged() {
    let broker = MockBroker::start().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    client.send(&DescribeAclsRequest::default(), 1).await;
    client.expect_closed().await;
    let requests = broker.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].api_key, ApiKey::DescribeAcls);
}
