//! Produce appends to the leader's log the way Kafka does, idempotence and
//! all, and InitProducerId hands out the ids it checks.

mod common;

use common::records::{self, batch, idempotent};
use common::requests::{fetch, produce, produce_many};
use common::{metadata_for, RawClient};
use josefine_mock::{Action, ApiKey, Intercept, MockBroker, MockCluster, UnknownProducer};
use kafka_protocol::messages::{
    FetchRequest, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, ProduceRequest,
    ProduceResponse, TransactionalId,
};
use kafka_protocol::protocol::{Message, StrBytes};
use uuid::Uuid;

/// (error code, base offset) of the first partition of the first topic.
fn first(response: &ProduceResponse) -> (i16, i64) {
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn broker_with(topic: &str, partitions: i32) -> MockBroker {
    MockBroker::builder()
        .topic(topic, partitions)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn produce_then_fetch_returns_the_batches_at_every_version() {
    let broker = broker_with("orders", 1).await;
    let id = broker.topic_id("orders").unwrap();
    let mut client = RawClient::connect(&broker).await;
    let mut produced = Vec::new();
    for version in ProduceRequest::VERSIONS.min..=ProduceRequest::VERSIONS.max {
        let sent = batch(&[&format!("v{version}"), "second"]);
        let response = client
            .call(&produce("orders", id, 0, sent.clone(), version), version)
            .await;
        let topic = &response.responses[0];
        if version >= 13 {
            assert_eq!(topic.topic_id, id, "v13 answers by topic id");
        } else {
            assert_eq!(topic.name.as_str(), "orders", "v{version}");
        }
        let p = &topic.partition_responses[0];
        assert_eq!(p.error_code, 0, "v{version}: {:?}", p.error_message);
        assert_eq!(p.base_offset, 2 * produced.len() as i64, "v{version}");
        assert_eq!(p.log_append_time_ms, -1);
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        produced.push(sent);
    }
    let end = 2 * produced.len() as i64;
    assert_eq!(broker.log_end_offset("orders", 0), end);

    let stored = broker.batches("orders", 0);
    assert_eq!(stored.len(), produced.len());
    for (i, (stored, sent)) in stored.iter().zip(&produced).enumerate() {
        assert_eq!(
            records::base_offset(stored),
            2 * i as i64,
            "offsets assigned"
        );
        assert_eq!(records::leader_epoch(stored), 0, "leader epoch stamped");
        assert_eq!(records::payload(stored), records::payload(sent));
        assert!(records::crc_ok(stored), "the rewrite keeps the CRC valid");
    }

    for version in FetchRequest::VERSIONS.min..=FetchRequest::VERSIONS.max {
        let request = fetch(&[("orders", id, 0, 0, 1 << 20)], version);
        let response = client.call(&request, version).await;
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.session_id, 0, "a sessionless fetch");
        let topic = &response.responses[0];
        if version >= 13 {
            assert_eq!(topic.topic_id, id, "v{version}");
        } else {
            assert_eq!(topic.topic.as_str(), "orders", "v{version}");
        }
        let p = &topic.partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!((p.high_watermark, p.last_stable_offset), (end, end));
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let (batches, partial) = records::split(p.records.as_deref().unwrap());
        assert_eq!(partial, 0, "v{version}");
        assert_eq!(batches, stored, "v{version}");
    }
}

#[tokio::test]
async fn partitions_spread_over_three_brokers_and_only_leaders_accept() {
    let cluster = MockCluster::builder()
        .brokers(3)
        .topic("spread", 6)
        .start()
        .await
        .unwrap();
    let mut clients = Vec::new();
    for node in 1..=3 {
        clients.push(RawClient::connect_to(&cluster, node).await);
    }
    for partition in 0..6 {
        let leader = cluster.leader("spread", partition).unwrap();
        assert_eq!(leader, 1 + partition % 3);
        for (node, client) in (1..).zip(clients.iter_mut()) {
            let request = produce("spread", Uuid::nil(), partition, batch(&["x"]), 9);
            let (code, offset) = first(&client.call(&request, 9).await);
            if node == leader {
                assert_eq!((code, offset), (0, 0), "p{partition} on its leader");
            } else {
                assert_eq!((code, offset), (6, -1), "p{partition} on broker {node}");
            }
        }
        assert_eq!(cluster.log_end_offset("spread", partition), 1);
    }

    // One request for every partition: broker 2 takes only its own.
    let parts: Vec<_> = (0..6)
        .map(|p| ("spread", Uuid::nil(), p, batch(&["y"])))
        .collect();
    let response = clients[1].call(&produce_many(&parts, 9), 9).await;
    let codes: Vec<i16> = response
        .responses
        .iter()
        .map(|t| t.partition_responses[0].error_code)
        .collect();
    assert_eq!(codes, [6, 0, 6, 6, 0, 6]);

    // Metadata from any broker lists all three and the same leaders.
    let metadata = clients[2].call(&metadata_for(&["spread"]), 12).await;
    assert_eq!(metadata.brokers.len(), 3);
    let leaders: Vec<i32> = metadata.topics[0]
        .partitions
        .iter()
        .map(|p| p.leader_id.0)
        .collect();
    assert_eq!(leaders, [1, 2, 3, 1, 2, 3]);
    assert_eq!(metadata.topics[0].partitions[0].replica_nodes.len(), 3);
}

#[tokio::test]
async fn after_move_leader_the_old_leader_refuses_and_the_new_one_accepts() {
    let cluster = MockCluster::builder()
        .brokers(3)
        .topic("moving", 1)
        .start()
        .await
        .unwrap();
    let id = cluster.topic_id("moving").unwrap();
    let mut old = RawClient::connect_to(&cluster, 1).await;
    let mut new = RawClient::connect_to(&cluster, 2).await;
    let produce_v10 = || produce("moving", id, 0, batch(&["m"]), 10);
    assert_eq!(first(&old.call(&produce_v10(), 10).await), (0, 0));

    cluster.move_leader("moving", 0, 2);
    assert_eq!(cluster.leader("moving", 0), Some(2));
    assert_eq!(cluster.leader_epoch("moving", 0), Some(1));

    let refused = old.call(&produce_v10(), 10).await;
    let p = &refused.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (2, 1),
        "KIP-951 names the new leader"
    );
    assert_eq!(refused.node_endpoints.len(), 1);
    assert_eq!(refused.node_endpoints[0].node_id.0, 2);
    assert_eq!(
        refused.node_endpoints[0].port,
        i32::from(cluster.broker(2).addr().port())
    );
    assert_eq!(first(&new.call(&produce_v10(), 10).await), (0, 1));
    let stored = cluster.batches("moving", 0);
    assert_eq!(records::leader_epoch(&stored[0]), 0);
    assert_eq!(
        records::leader_epoch(&stored[1]),
        1,
        "appended under epoch 1"
    );

    // Every broker's metadata shows the move at once.
    let mut third = RawClient::connect_to(&cluster, 3).await;
    let metadata = third.call(&metadata_for(&["moving"]), 9).await;
    let partition = &metadata.topics[0].partitions[0];
    assert_eq!((partition.leader_id.0, partition.leader_epoch), (2, 1));

    // Fetch and ListOffsets on the old leader, with no epoch: not the leader.
    let response = old
        .call(&fetch(&[("moving", id, 0, 0, 1024)], 16), 16)
        .await;
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 6);
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (2, 1)
    );
    assert_eq!(response.node_endpoints.len(), 1, "v16 sends the endpoint");
    let offsets = old
        .call(&common::requests::list_offsets("moving", 0, -1), 7)
        .await;
    assert_eq!(offsets.topics[0].partitions[0].error_code, 6);
    let offsets = new
        .call(&common::requests::list_offsets("moving", 0, -1), 7)
        .await;
    assert_eq!(offsets.topics[0].partitions[0].offset, 2);
}

#[tokio::test]
async fn acks_zero_is_not_answered_but_the_next_request_is() {
    let broker = broker_with("fire", 1).await;
    let mut client = RawClient::connect(&broker).await;
    let request = produce("fire", Uuid::nil(), 0, batch(&["and forget"]), 9).with_acks(0);
    client.send(&request, 9).await;
    let correlation_id = client.send(&metadata_for(&["fire"]), 9).await;
    // `recv` checks the correlation id: the first frame back is Metadata's.
    let metadata = client.recv::<MetadataRequest>(9, correlation_id).await;
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(broker.log_end_offset("fire", 0), 1, "written all the same");

    // A failed acks=0 produce closes the connection, Kafka's only signal.
    let request = produce("fire", Uuid::nil(), 7, batch(&["lost"]), 9).with_acks(0);
    client.send(&request, 9).await;
    client.expect_closed().await;
}

#[tokio::test]
async fn idempotent_batches_are_checked_like_kafka() {
    let broker = broker_with("idem", 1).await;
    let mut client = RawClient::connect(&broker).await;
    let init = client.call(&init_request(-1, -1), 4).await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert_eq!((pid, epoch), (1000, 0));

    let c = &mut client;
    assert_eq!(send(c, pid, 0, 0, &["a", "b"]).await, (0, 0), "in order");
    assert_eq!(send(c, pid, 0, 2, &["c"]).await, (0, 2), "in order");
    assert_eq!(
        send(c, pid, 0, 0, &["a", "b"]).await,
        (0, 0),
        "duplicate: original offset"
    );
    assert_eq!(
        send(c, pid, 0, 2, &["c"]).await,
        (0, 2),
        "duplicate: original offset"
    );
    assert_eq!(send(c, pid, 0, 5, &["gap"]).await, (45, -1), "a gap");
    assert_eq!(
        send(c, pid, 0, 1, &["overlap"]).await,
        (45, -1),
        "an overlap"
    );
    assert_eq!(
        broker.log_end_offset("idem", 0),
        3,
        "duplicates not stored again"
    );
    assert_eq!(broker.batches("idem", 0).len(), 2);

    // KIP-360: a bump gives the same id at the next epoch...
    let bumped = client.call(&init_request(pid, 0), 4).await;
    assert_eq!(
        (
            bumped.error_code,
            bumped.producer_id.0,
            bumped.producer_epoch
        ),
        (0, pid, 1)
    );
    // ...whose first batch must start the sequence over.
    let c = &mut client;
    let v = &["v"];
    assert_eq!(
        send(c, pid, 1, 3, v).await,
        (45, -1),
        "a new epoch starts at 0"
    );
    assert_eq!(send(c, pid, 1, 0, v).await, (0, 3));
    assert_eq!(
        send(c, pid, 0, 3, v).await,
        (47, -1),
        "INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(send(c, pid, 1, 1, v).await, (0, 4));

    broker.forget_producer_state();
    let lost = send(c, pid, 1, 2, v).await;
    assert_eq!(lost, (45, -1), "lost state: OUT_OF_ORDER_SEQUENCE_NUMBER");
    broker.set_unknown_producer(UnknownProducer::UnknownProducerId);
    let lost = send(c, pid, 1, 2, v).await;
    assert_eq!(lost, (59, -1), "lost state: UNKNOWN_PRODUCER_ID");
    broker.set_unknown_producer(UnknownProducer::Accept);
    let lost = send(c, pid, 1, 2, v).await;
    assert_eq!(lost, (0, 5), "lost state: accepted, as Kafka 2.5+");
    assert_eq!(
        send(c, pid, 1, 3, v).await,
        (0, 6),
        "and tracked from there"
    );

    // Without a producer id nothing is checked: the same batch twice is
    // written twice.
    let plain = batch(&["plain"]);
    for offset in [7, 8] {
        let request = produce("idem", Uuid::nil(), 0, plain.clone(), 9);
        assert_eq!(first(&client.call(&request, 9).await), (0, offset));
    }
}

/// An idempotent batch to partition 0 of "idem", v9.
async fn send(
    client: &mut RawClient,
    pid: i64,
    epoch: i16,
    seq: i32,
    values: &[&str],
) -> (i16, i64) {
    let request = produce(
        "idem",
        Uuid::nil(),
        0,
        idempotent(pid, epoch, seq, values),
        9,
    );
    first(&client.call(&request, 9).await)
}

fn init_request(producer_id: i64, epoch: i16) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(producer_id.into())
        .with_producer_epoch(epoch)
}

#[tokio::test]
async fn init_producer_id_hands_out_and_bumps_ids_at_every_version() {
    let cluster = MockCluster::builder().brokers(2).start().await.unwrap();
    let mut one = RawClient::connect_to(&cluster, 1).await;
    let mut two = RawClient::connect_to(&cluster, 2).await;
    let mut expected = 1000;
    for version in InitProducerIdRequest::VERSIONS.min..=InitProducerIdRequest::VERSIONS.max {
        let client = if version % 2 == 0 { &mut one } else { &mut two };
        let response: InitProducerIdResponse = client.call(&init_request(-1, -1), version).await;
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(
            (response.producer_id.0, response.producer_epoch),
            (expected, 0),
            "v{version}: ids are cluster-wide"
        );
        expected += 1;
    }
    let pid = expected - 1;
    let bump = |epoch| init_request(pid, epoch);
    let code_of = |r: &InitProducerIdResponse| (r.error_code, r.producer_id.0, r.producer_epoch);
    assert_eq!(code_of(&two.call(&bump(0), 3).await), (0, pid, 1));
    assert_eq!(
        code_of(&one.call(&bump(1), 5).await),
        (0, pid, 2),
        "on any broker"
    );
    assert_eq!(
        code_of(&one.call(&bump(1), 5).await),
        (47, -1, -1),
        "a stale epoch"
    );
    assert_eq!(
        code_of(&one.call(&init_request(4242, 0), 5).await),
        (47, -1, -1),
        "an id never handed out"
    );
    assert_eq!(
        code_of(&one.call(&init_request(-1, 3), 5).await).0,
        42,
        "INVALID_REQUEST"
    );

    cluster.set_init_producer_id_bumps_epoch(false);
    assert_eq!(
        code_of(&one.call(&bump(2), 5).await),
        (0, expected, 0),
        "Apache Kafka's answer: a fresh id"
    );

    // A transactional id is its transaction coordinator's business (see
    // tests/transactions.rs); producer ids still come from the one counter.
    let transactional = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let (at, elsewhere) = if cluster.transaction_coordinator("tx") == 1 {
        (&mut one, &mut two)
    } else {
        (&mut two, &mut one)
    };
    assert_eq!(
        elsewhere.call(&transactional, 4).await.error_code,
        16,
        "NOT_COORDINATOR"
    );
    assert_eq!(
        code_of(&at.call(&transactional, 4).await),
        (0, expected + 1, 0)
    );
}

#[tokio::test]
async fn malformed_records_are_refused_with_kafkas_codes() {
    let broker = broker_with("strict", 1).await;
    let mut client = RawClient::connect(&broker).await;
    let good = batch(&["a", "b"]);
    let mut two = good.to_vec();
    two.extend_from_slice(&good);
    let mut bad_crc = good.to_vec();
    *bad_crc.last_mut().unwrap() ^= 0x01;
    let truncated = good.slice(..good.len() - 3);
    let cases: [(&str, bytes::Bytes, i16); 4] = [
        ("two batches", two.into(), 87),
        ("bad crc", bad_crc.into(), 2),
        ("truncated", truncated, 2),
        ("empty", bytes::Bytes::new(), 87),
    ];
    for (what, records, code) in cases {
        let request = produce("strict", Uuid::nil(), 0, records, 9);
        let response = client.call(&request, 9).await;
        let p = &response.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (code, -1), "{what}");
        assert!(p.error_message.is_some(), "{what}: v8+ explains");
    }
    assert_eq!(broker.log_end_offset("strict", 0), 0, "nothing written");
}

#[tokio::test]
async fn unknown_topics_partitions_ids_and_acks_are_refused() {
    let broker = broker_with("known", 2).await;
    let mut client = RawClient::connect(&broker).await;
    let cases = [
        (produce("unknown", Uuid::nil(), 0, batch(&["x"]), 9), 9, 3),
        (produce("known", Uuid::nil(), 2, batch(&["x"]), 9), 9, 3),
        (produce("known", Uuid::nil(), -1, batch(&["x"]), 9), 9, 3),
        (
            produce("", Uuid::from_u128(99), 0, batch(&["x"]), 13),
            13,
            100,
        ),
        (
            produce("known", Uuid::nil(), 0, batch(&["x"]), 9).with_acks(2),
            9,
            21,
        ),
    ];
    for (request, version, code) in cases {
        assert_eq!(first(&client.call(&request, version).await).0, code);
    }
    assert_eq!(broker.log_end_offset("known", 0), 0);
}

#[tokio::test]
async fn error_action_sets_every_partition_and_writes_nothing() {
    let broker = broker_with("faulty", 2).await;
    let rule = broker.intercept(Intercept::api(ApiKey::Produce).times(2), Action::Error(7));
    let mut client = RawClient::connect(&broker).await;
    let parts = [
        ("faulty", Uuid::nil(), 0, batch(&["a"])),
        ("faulty", Uuid::nil(), 1, batch(&["b"])),
    ];
    let response = client.call(&produce_many(&parts, 11), 11).await;
    let codes: Vec<i16> = response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(codes, [7, 7], "REQUEST_TIMED_OUT on both");
    assert_eq!(broker.log_end_offset("faulty", 0), 0);

    // With acks=0 an injected error closes the connection, as a real one would.
    client
        .send(&produce_many(&parts, 11).with_acks(0), 11)
        .await;
    client.expect_closed().await;
    assert_eq!(rule.hits(), 2);
}

#[tokio::test]
async fn refusals_encode_at_every_version() {
    use kafka_protocol::messages::ListOffsetsRequest;

    let cluster = MockCluster::builder()
        .brokers(2)
        .topic("r", 1)
        .start()
        .await
        .unwrap();
    let id = cluster.topic_id("r").unwrap();
    let mut leader = RawClient::connect_to(&cluster, 1).await;
    let mut follower = RawClient::connect_to(&cluster, 2).await;
    let mut two = batch(&["a"]).to_vec();
    two.extend_from_slice(&batch(&["b"]));
    let two = bytes::Bytes::from(two);
    for version in ProduceRequest::VERSIONS.min..=ProduceRequest::VERSIONS.max {
        let request = produce("r", id, 0, batch(&["x"]), version);
        let refused = follower.call(&request, version).await;
        assert_eq!(first(&refused).0, 6, "v{version}");
        let leader_id = refused.responses[0].partition_responses[0]
            .current_leader
            .leader_id
            .0;
        assert_eq!(leader_id, if version >= 10 { 1 } else { -1 }, "v{version}");
        let request = produce("r", id, 0, two.clone(), version);
        assert_eq!(
            first(&leader.call(&request, version).await).0,
            87,
            "v{version}"
        );
    }
    for version in FetchRequest::VERSIONS.min..=FetchRequest::VERSIONS.max {
        let request = fetch(&[("r", id, 0, 0, 1024)], version);
        let response = follower.call(&request, version).await;
        assert_eq!(
            response.responses[0].partitions[0].error_code, 6,
            "v{version}"
        );
    }
    for version in ListOffsetsRequest::VERSIONS.min..=ListOffsetsRequest::VERSIONS.max {
        let request = common::requests::list_offsets("r", 0, -1);
        let response = follower.call(&request, version).await;
        assert_eq!(response.topics[0].partitions[0].error_code, 6, "v{version}");
    }
    assert_eq!(cluster.log_end_offset("r", 0), 0);
}
