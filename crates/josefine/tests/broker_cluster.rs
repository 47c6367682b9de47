//! Against the real brokers (Kafka 4.4, then Tansu, both started by scripts/test.sh):
//! version negotiation, metadata, coordinator lookup and the admin basics. The core of
//! every client, so it runs on both.

mod common;

use std::time::Duration;

use common::real_broker;
use josefine::protocol::ClientExt;
use josefine::{Client, ErrorKind, KafkaCode, NewTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::protocol::Message;

#[tokio::test]
async fn api_versions_are_negotiated_per_broker() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let broker = client
        .brokers()
        .into_iter()
        .next()
        .expect("metadata lists a broker");
    let table = broker.api_versions().await.unwrap();
    // What we measured each broker to advertise (docs/BROKERS.md).
    let metadata = table
        .broker_range(ApiKey::Metadata)
        .expect("Metadata advertised");
    let advertised = match common::kind() {
        common::Kind::Kafka => (0, 13),
        common::Kind::Tansu => (0, 12),
    };
    assert_eq!((metadata.min, metadata.max), advertised);
    // The negotiated version is the highest both sides speak.
    let v = broker.version::<MetadataRequest>().await.unwrap();
    assert_eq!(v, MetadataRequest::VERSIONS.max.min(advertised.1));
    let fetch = broker.version::<FetchRequest>().await.unwrap();
    assert!(
        (4..=FetchRequest::VERSIONS.max).contains(&fetch),
        "fetch v{fetch}"
    );
    let produce = broker.version::<ProduceRequest>().await.unwrap();
    assert!(produce >= 3, "produce v{produce}");
}

#[tokio::test]
async fn topics_are_created_listed_and_deleted() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let admin = client.admin();
    let name = common::unique("admin");

    admin.create_topic(NewTopic::new(&name, 6)).await.unwrap();
    let listed = admin.list_topics().await.unwrap();
    let topic = listed
        .iter()
        .find(|t| t.name == name)
        .expect("new topic is listed");
    assert_eq!(topic.partitions, 6);

    let err = admin
        .create_topic(NewTopic::new(&name, 6))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::TOPIC_ALREADY_EXISTS), "{err}");
    assert_eq!(err.context().topic(), Some(name.as_str()));

    admin.delete_topic(&name).await.unwrap();
    let listed = admin.list_topics().await.unwrap();
    assert!(
        listed.iter().all(|t| t.name != name),
        "deleted topic still listed"
    );
}

#[tokio::test]
async fn metadata_of_a_six_partition_topic_is_read_and_refreshed() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let name = common::unique("meta");
    client
        .admin()
        .create_topic(NewTopic::new(&name, 6))
        .await
        .unwrap();

    let md = client.refresh_metadata(&[&name]).await.unwrap();
    let topic = md.topic_or_error(&name).unwrap();
    let ids: Vec<i32> = topic.partitions.iter().map(|p| p.id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
    for p in &topic.partitions {
        let leader = p.leader.expect("every partition has a leader");
        assert!(
            md.brokers.contains_key(&leader),
            "leader {leader} is a listed broker"
        );
        assert!(p.replicas.contains(&leader));
        assert!(p.isr.contains(&leader));
        let broker = client.leader(&name, p.id).await.unwrap();
        assert_eq!(broker.id(), Some(leader));
    }
    assert_eq!(client.partitions(&name).await.unwrap().len(), 6);

    // Concurrent refreshes all succeed (and coalesce into fewer requests).
    let topics = [name.as_str()];
    let refreshes = (0..16).map(|_| client.refresh_metadata(&topics));
    for result in futures::future::join_all(refreshes).await {
        assert_eq!(result.unwrap().topic(&name).unwrap().partitions.len(), 6);
    }

    let err = client.leader(&name, 6).await.unwrap_err();
    assert_eq!(err.code(), Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION));
    let missing = common::unique("missing");
    let err = client.leader(&missing, 0).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{err}"
    );
    assert_eq!(err.context().topic(), Some(missing.as_str()));
}

#[tokio::test]
async fn background_refresh_picks_up_a_new_topic() {
    let addr = real_broker!();
    let watcher = Client::builder()
        .bootstrap([addr.as_str()])
        .metadata_max_age(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let name = common::unique("background");
    // Ask about the topic before it exists: it joins the wanted set.
    assert!(watcher.partitions(&name).await.is_err());
    common::client(&addr)
        .await
        .admin()
        .create_topic(NewTopic::new(&name, 3))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(topic) = watcher.metadata().topic(&name) {
            if topic.error.is_none() {
                assert_eq!(topic.partitions.len(), 3);
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "background refresh never saw {name}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_dead_seed_is_skipped() {
    let addr = real_broker!();
    // Port 1 on loopback refuses connections.
    let client = Client::builder()
        .bootstrap(["127.0.0.1:1", addr.as_str()])
        .connect()
        .await
        .expect("the live seed is used");
    assert!(!client.brokers().is_empty());
}

#[tokio::test]
async fn no_live_seed_is_a_clear_error() {
    let _ = real_broker!();
    let err = Client::builder()
        .bootstrap(["127.0.0.1:1", "127.0.0.1:2"])
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NoBrokerAvailable, "{err}");
    assert!(err.to_string().contains("bootstrap.servers"), "{err}");
}

#[tokio::test]
async fn group_coordinator_is_found_and_cached() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let group = common::unique("group");
    let coordinator = client.coordinator(&group).await.unwrap();
    assert!(coordinator.id().is_some());
    assert!(client
        .metadata()
        .brokers
        .contains_key(&coordinator.id().unwrap()));
    let again = client.coordinator(&group).await.unwrap();
    assert_eq!(again.id(), coordinator.id());
    client.invalidate_coordinator(&group);
    assert_eq!(
        client.coordinator(&group).await.unwrap().id(),
        coordinator.id()
    );
}

#[tokio::test]
async fn describe_cluster_names_the_broker_and_controller() {
    let addr = real_broker!();
    let client = common::client(&addr).await;
    let cluster = client.admin().describe_cluster().await.unwrap();
    assert!(!cluster.brokers.is_empty());
    let controller = cluster.controller_id.expect("a controller");
    assert!(cluster.brokers.iter().any(|b| b.id == controller));
    assert!(
        cluster.brokers.iter().any(|b| b.addr() == addr),
        "{cluster:?} lists {addr}"
    );
}
