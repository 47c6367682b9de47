//! A multi-broker cluster: shared state, per-broker faults, brokers that
//! crash and come back.

mod common;

use std::io;

use common::records::{self, batch};
use common::requests::{fetch, list_offsets, produce};
use common::{metadata_all, metadata_for, RawClient};
use josefine_mock::{Action, ApiKey, Intercept, MockBroker, MockCluster};
use tokio::net::TcpStream;
use uuid::Uuid;

async fn three_brokers() -> MockCluster {
    MockCluster::builder()
        .brokers(3)
        .topic("t", 3)
        .start()
        .await
        .unwrap()
}

fn produce_code(response: &kafka_protocol::messages::ProduceResponse) -> i16 {
    response.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn every_broker_is_listed_and_has_its_own_faults_and_log() {
    let cluster = three_brokers().await;
    let addrs: Vec<String> = cluster.brokers().iter().map(|b| b.bootstrap()).collect();
    assert_eq!(cluster.bootstrap(), addrs.join(","));
    let ids: Vec<i32> = cluster.brokers().iter().map(|b| b.node_id()).collect();
    assert_eq!(ids, [1, 2, 3]);

    cluster
        .broker(2)
        .intercept(Intercept::api(ApiKey::Metadata), Action::Error(5));
    let mut one = RawClient::connect_to(&cluster, 1).await;
    let mut two = RawClient::connect_to(&cluster, 2).await;
    let fine = one.call(&metadata_all(12), 12).await;
    assert_eq!(fine.topics[0].error_code, 0, "broker 1 has no rule");
    let ports: Vec<i32> = fine.brokers.iter().map(|b| b.port).collect();
    let expected: Vec<i32> = cluster
        .brokers()
        .iter()
        .map(|b| i32::from(b.addr().port()))
        .collect();
    assert_eq!(ports, expected);
    assert_eq!(fine.controller_id.0, 1);
    assert_eq!(
        two.call(&metadata_all(12), 12).await.topics[0].error_code,
        5
    );

    assert_eq!(cluster.broker(1).requests().len(), 1);
    assert_eq!(cluster.broker(2).requests()[0].node_id, 2);
    assert_eq!(cluster.broker(3).connection_count(), 0);
}

#[tokio::test]
async fn a_stopped_broker_refuses_connections_and_restarts_on_the_same_port() {
    let cluster = three_brokers().await;
    let addr = cluster.broker(2).addr();
    let mut two = RawClient::connect_to(&cluster, 2).await;
    // A fetch session on broker 2, to see it lost in the crash.
    let full = fetch(&[("t", Uuid::nil(), 1, 0, 1024)], 12)
        .with_session_id(0)
        .with_session_epoch(0);
    let session_id = two.call(&full, 12).await.session_id;
    assert_ne!(session_id, 0);

    cluster.stop_broker(2).await;
    two.expect_closed().await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(cluster.broker(2).open_connections(), 0);

    // Until the controller reacts, the others still list it and it leads.
    let mut one = RawClient::connect_to(&cluster, 1).await;
    let metadata = one.call(&metadata_for(&["t"]), 12).await;
    assert_eq!(metadata.brokers.len(), 3);
    assert_eq!(metadata.topics[0].partitions[1].leader_id.0, 2);
    let request = produce("t", Uuid::nil(), 1, batch(&["x"]), 9);
    assert_eq!(produce_code(&one.call(&request, 9).await), 6);

    cluster.restart_broker(2).await.unwrap();
    assert_eq!(cluster.broker(2).addr(), addr);
    let mut again = RawClient::connect_to(&cluster, 2).await;
    assert_eq!(produce_code(&again.call(&request, 9).await), 0);
    let incremental = fetch(&[], 12)
        .with_session_id(session_id)
        .with_session_epoch(1);
    let lost = again.call(&incremental, 12).await;
    assert_eq!(lost.error_code, 70, "sessions die with the broker");
    assert_eq!(
        cluster.broker(2).connection_count(),
        2,
        "counted across restarts"
    );
    cluster.restart_broker(2).await.unwrap();
    cluster.stop_broker(2).await;
    cluster.stop_broker(2).await;
}

#[tokio::test]
async fn stopping_a_broker_ends_a_waiting_fetch() {
    let cluster = three_brokers().await;
    let mut one = RawClient::connect_to(&cluster, 1).await;
    let request = fetch(&[("t", Uuid::nil(), 0, 0, 1024)], 12).with_max_wait_ms(30_000);
    one.send(&request, 12).await;
    one.expect_silence(std::time::Duration::from_millis(50))
        .await;
    cluster.stop_broker(1).await;
    one.expect_closed().await;
}

#[tokio::test]
async fn removing_a_broker_from_metadata_is_the_controller_reacting() {
    let cluster = three_brokers().await;
    cluster.stop_broker(3).await;
    cluster.remove_broker_from_metadata(3);
    let mut one = RawClient::connect_to(&cluster, 1).await;
    let metadata = one.call(&metadata_for(&["t"]), 12).await;
    let listed: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(listed, [1, 2]);
    let partition = &metadata.topics[0].partitions[2];
    assert_eq!(partition.leader_id.0, 3, "leadership moves only when told");
    assert!(
        partition.isr_nodes.iter().all(|n| n.0 != 3),
        "out of the ISR"
    );

    cluster.move_leader("t", 2, 1);
    let request = produce("t", Uuid::nil(), 2, batch(&["failed over"]), 9);
    assert_eq!(produce_code(&one.call(&request, 9).await), 0);

    cluster.restart_broker(3).await.unwrap();
    let metadata = one.call(&metadata_for(&["t"]), 12).await;
    assert_eq!(
        metadata.brokers.len(),
        3,
        "a restarted broker registers again"
    );
}

#[tokio::test]
async fn a_lone_broker_stops_and_restarts_too() {
    let broker = MockBroker::builder()
        .topic("solo", 1)
        .start()
        .await
        .unwrap();
    broker.append_batch("solo", 0, batch(&["kept"]));
    broker.stop().await;
    assert!(TcpStream::connect(broker.addr()).await.is_err());
    broker.restart().await.unwrap();
    let mut client = RawClient::connect(&broker).await;
    let response = client
        .call(&fetch(&[("solo", Uuid::nil(), 0, 0, 1024)], 12), 12)
        .await;
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 1, "the log survives a restart");
}

#[tokio::test]
async fn added_partitions_are_led_around_the_cluster_and_listed_everywhere() {
    let cluster = three_brokers().await;
    let id = cluster.topic_id("t");
    assert!(!cluster.add_partitions("t", 3), "not an increase");
    assert!(!cluster.add_partitions("nope", 4), "no such topic");
    assert!(cluster.add_partitions("t", 5));
    assert_eq!(cluster.partition_count("t"), Some(5));
    assert_eq!(cluster.topic_id("t"), id);
    for node in 1..=3 {
        let mut client = RawClient::connect_to(&cluster, node).await;
        let metadata = client.call(&metadata_for(&["t"]), 12).await;
        let topic = &metadata.topics[0];
        assert_eq!(Some(topic.topic_id), id, "broker {node}");
        let leaders: Vec<(i32, i32, i32)> = topic
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0, p.leader_epoch))
            .collect();
        assert_eq!(
            leaders,
            [(0, 1, 0), (1, 2, 0), (2, 3, 0), (3, 1, 0), (4, 2, 0)],
            "broker {node}: the new partitions continue the round"
        );
        assert_eq!(topic.partitions[4].replica_nodes.len(), 3);
        assert_eq!(topic.partitions[4].isr_nodes.len(), 3);
    }
}

#[tokio::test]
async fn an_added_partition_takes_produce_and_serves_fetch_at_its_leader() {
    let cluster = three_brokers().await;
    assert!(cluster.add_partitions("t", 5));
    let id = cluster.topic_id("t").unwrap();
    let mut leader = RawClient::connect_to(&cluster, 2).await;
    let mut other = RawClient::connect_to(&cluster, 1).await;
    let sent = batch(&["new", "partition"]);
    let request = produce("t", Uuid::nil(), 4, sent.clone(), 9);
    assert_eq!(produce_code(&other.call(&request, 9).await), 6);
    assert_eq!(produce_code(&leader.call(&request, 9).await), 0);
    let by_id = produce("t", id, 4, batch(&["by id"]), 13);
    assert_eq!(produce_code(&leader.call(&by_id, 13).await), 0);
    assert_eq!(cluster.log_end_offset("t", 4), 3);

    for version in [12, 13] {
        let request = fetch(&[("t", id, 4, 0, 1 << 20)], version);
        let response = leader.call(&request, version).await;
        let p = &response.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 3), "v{version}");
        let (batches, _) = records::split(p.records.as_deref().unwrap_or_default());
        assert_eq!(batches.len(), 2, "v{version}");
        assert_eq!(records::payload(&batches[0]), records::payload(&sent));
        assert_eq!(records::base_offset(&batches[1]), 2);
    }
    let latest = leader.call(&list_offsets("t", 4, -1), 7).await;
    assert_eq!(latest.topics[0].partitions[0].offset, 3);
}

#[tokio::test]
async fn builder_refuses_an_empty_cluster() {
    let err = MockCluster::builder().brokers(0).start().await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
