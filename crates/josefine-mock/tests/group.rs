//! The group coordinator over the wire: FindCoordinator, the classic
//! rebalance protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), offsets,
//! the admin APIs, and the coordinator faults a consumer must survive.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{metadata_all, topic_name, RawClient, CLIENT_ID, IO_TIMEOUT};
use josefine_mock::{Action, ApiKey, GroupState, Intercept, MockBroker, MockCluster};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Message, StrBytes};
use tokio::task::JoinHandle;

const GROUP: &str = "orders-app";

/// Kafka's error codes, by name, for readable assertions.
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

const JOIN_MAX: i16 = JoinGroupRequest::VERSIONS.max;
const SYNC_MAX: i16 = SyncGroupRequest::VERSIONS.max;
const HEARTBEAT_MAX: i16 = HeartbeatRequest::VERSIONS.max;

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn group_id(value: &str) -> GroupId {
    GroupId(s(value))
}

/// A consumer's JoinGroup, spelled for `version`.
fn join_request(
    member_id: &str,
    instance_id: Option<&str>,
    session_ms: i32,
    version: i16,
) -> JoinGroupRequest {
    let request = JoinGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_session_timeout_ms(session_ms)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))]);
    let request = if version >= 1 {
        request.with_rebalance_timeout_ms(3 * session_ms)
    } else {
        request
    };
    if version >= 5 {
        request.with_group_instance_id(instance_id.map(s))
    } else {
        request
    }
}

fn sync_request(
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    plan: &[(&str, &'static [u8])],
    version: i16,
) -> SyncGroupRequest {
    let request = SyncGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(
            plan.iter()
                .map(|(member, assignment)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(member))
                        .with_assignment(Bytes::from_static(assignment))
                })
                .collect(),
        );
    let request = if version >= 3 {
        request.with_group_instance_id(instance_id.map(s))
    } else {
        request
    };
    if version >= 5 {
        request
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
    } else {
        request
    }
}

fn heartbeat_request(
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(group_id(GROUP))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance_id.map(s))
}

fn commit_request(
    member_id: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let entry = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(s("meta")));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(entry),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(GROUP))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(topics)
}

fn commit_codes(response: &OffsetCommitResponse) -> Vec<i16> {
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

async fn heartbeat(client: &mut RawClient, member_id: &str, generation: i32) -> i16 {
    let request = heartbeat_request(member_id, None, generation);
    client.call(&request, HEARTBEAT_MAX).await.error_code
}

/// Sends a JoinGroup that may have to wait for the rest of the group, on a
/// task of its own so the test can go on meanwhile.
fn spawn_join(
    mut client: RawClient,
    request: JoinGroupRequest,
    version: i16,
) -> JoinHandle<(RawClient, JoinGroupResponse)> {
    tokio::spawn(async move {
        let response = client.call(&request, version).await;
        (client, response)
    })
}

/// A SyncGroup that may wait for the leader's, on a task of its own.
fn spawn_sync(
    mut client: RawClient,
    request: SyncGroupRequest,
    version: i16,
) -> JoinHandle<(RawClient, SyncGroupResponse)> {
    tokio::spawn(async move {
        let response = client.call(&request, version).await;
        (client, response)
    })
}

/// Polls `condition` until it holds, failing after IO_TIMEOUT.
async fn until(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn finish<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(IO_TIMEOUT, task)
        .await
        .expect("answered within IO_TIMEOUT")
        .expect("the task did not panic")
}

/// The first JoinGroup of a dynamic member at v4+: MEMBER_ID_REQUIRED with
/// the id to use.
async fn member_id(client: &mut RawClient, session_ms: i32) -> String {
    let first = client
        .call(&join_request("", None, session_ms, JOIN_MAX), JOIN_MAX)
        .await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert_eq!(first.generation_id, -1);
    assert!(
        first.member_id.starts_with(CLIENT_ID),
        "{}",
        first.member_id
    );
    first.member_id.to_string()
}

/// A member that joined an empty group alone and synced: generation 1.
async fn lone_stable_member(broker: &MockBroker, session_ms: i32) -> (RawClient, String) {
    let mut client = RawClient::connect(broker).await;
    let id = member_id(&mut client, session_ms).await;
    let joined = client
        .call(&join_request(&id, None, session_ms, JOIN_MAX), JOIN_MAX)
        .await;
    assert_eq!(joined.error_code, NONE);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), id);
    let synced = client
        .call(
            &sync_request(&id, None, 1, &[(&id, b"all")], SYNC_MAX),
            SYNC_MAX,
        )
        .await;
    assert_eq!(synced.error_code, NONE);
    assert_eq!(synced.assignment, Bytes::from_static(b"all"));
    (client, id)
}

async fn broker_with_topic() -> MockBroker {
    MockBroker::builder().topic("t", 2).start().await.unwrap()
}

#[tokio::test]
async fn find_coordinator_answers_every_version() {
    let cluster = MockCluster::builder().brokers(3).start().await.unwrap();
    let mut client = RawClient::connect_to(&cluster, 1).await;
    let groups = ["alpha", "beta", "gamma", "delta"];
    let address = |node_id: i32| {
        let addr = cluster.broker(node_id).addr();
        (addr.ip().to_string(), i32::from(addr.port()))
    };
    let placed: Vec<i32> = groups
        .iter()
        .map(|g| cluster.group_coordinator(g))
        .collect();
    assert!(
        placed.iter().any(|n| *n != placed[0]),
        "groups spread over brokers: {placed:?}"
    );
    for version in 0..=3 {
        for group in groups {
            let request = FindCoordinatorRequest::default().with_key(s(group));
            let response = client.call(&request, version).await;
            assert_eq!(response.error_code, NONE, "v{version}");
            let node_id = cluster.group_coordinator(group);
            assert_eq!(response.node_id.0, node_id, "v{version} {group}");
            let (host, port) = address(node_id);
            assert_eq!((response.host.to_string(), response.port), (host, port));
        }
    }
    for version in 4..=FindCoordinatorRequest::VERSIONS.max {
        let request = FindCoordinatorRequest::default()
            .with_coordinator_keys(groups.iter().map(|g| s(g)).collect());
        let response = client.call(&request, version).await;
        let keys: Vec<&str> = response
            .coordinators
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(keys, groups, "v{version}");
        for coordinator in &response.coordinators {
            assert_eq!(coordinator.error_code, NONE);
            assert_eq!(
                coordinator.node_id.0,
                cluster.group_coordinator(coordinator.key.as_str())
            );
        }
    }
    // Transactional ids are placed too; other key types are refused.
    let transactional = FindCoordinatorRequest::default()
        .with_key(s("tx-1"))
        .with_key_type(1);
    assert_eq!(client.call(&transactional, 3).await.error_code, NONE);
    let share = FindCoordinatorRequest::default()
        .with_coordinator_keys(vec![s("g")])
        .with_key_type(2);
    let refused = client.call(&share, 6).await;
    assert_eq!(refused.coordinators[0].error_code, INVALID_REQUEST);
    assert_eq!(refused.coordinators[0].node_id.0, -1);
}

#[tokio::test]
async fn find_coordinator_follows_moves_and_a_dead_coordinator() {
    let cluster = MockCluster::builder().brokers(3).start().await.unwrap();
    let home = cluster.group_coordinator(GROUP);
    let elsewhere = if home == 3 { 1 } else { home + 1 };
    let asker = if elsewhere == 3 { 1 } else { elsewhere + 1 };
    cluster.move_coordinator(GROUP, elsewhere);
    let mut client = RawClient::connect_to(&cluster, asker).await;
    let request = FindCoordinatorRequest::default().with_key(s(GROUP));
    assert_eq!(client.call(&request, 0).await.node_id.0, elsewhere);

    cluster.stop_broker(elsewhere).await;
    assert_eq!(
        client.call(&request, 0).await.node_id.0,
        elsewhere,
        "until the controller notices"
    );
    cluster.remove_broker_from_metadata(elsewhere);
    let lost = client.call(&request, 2).await;
    assert_eq!(lost.error_code, COORDINATOR_NOT_AVAILABLE);
    assert_eq!((lost.node_id.0, lost.port), (-1, -1));
}

#[tokio::test]
async fn two_members_join_sync_and_rebalance() {
    let broker = broker_with_topic().await;
    let (mut a, a_id) = lone_stable_member(&broker, 10_000).await;
    assert_eq!(broker.group_state(GROUP), GroupState::Stable);
    assert_eq!(heartbeat(&mut a, &a_id, 1).await, NONE);

    // b asks for an id, then waits for the rebalance its join started.
    let mut b = RawClient::connect(&broker).await;
    let b_id = member_id(&mut b, 10_000).await;
    let b_join = spawn_join(b, join_request(&b_id, None, 10_000, JOIN_MAX), JOIN_MAX);
    let mut rejoin_needed = false;
    for _ in 0..100 {
        match heartbeat(&mut a, &a_id, 1).await {
            REBALANCE_IN_PROGRESS => {
                rejoin_needed = true;
                break;
            }
            code => assert_eq!(code, NONE),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        rejoin_needed,
        "a learns of the rebalance from its heartbeat"
    );
    assert_eq!(broker.group_state(GROUP), GroupState::PreparingRebalance);

    // b's waiting join holds up its own connection only.
    let mut other = RawClient::connect(&broker).await;
    assert_eq!(other.call(&metadata_all(12), 12).await.brokers.len(), 1);

    let a_joined = a
        .call(&join_request(&a_id, None, 10_000, JOIN_MAX), JOIN_MAX)
        .await;
    let (b, b_joined) = finish(b_join).await;
    assert_eq!((a_joined.error_code, b_joined.error_code), (NONE, NONE));
    assert_eq!((a_joined.generation_id, b_joined.generation_id), (2, 2));
    assert_eq!(
        a_joined.leader.as_str(),
        a_id,
        "the leader rejoined and leads"
    );
    assert_eq!(b_joined.leader.as_str(), a_id);
    assert_eq!(a_joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(a_joined.protocol_type.as_deref(), Some("consumer"));
    let listed: Vec<&str> = a_joined
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(listed, [a_id.as_str(), b_id.as_str()]);
    assert!(a_joined
        .members
        .iter()
        .all(|m| m.metadata == Bytes::from_static(b"subscription")));
    assert!(b_joined.members.is_empty());
    assert_eq!(broker.group_state(GROUP), GroupState::CompletingRebalance);

    // The follower's SyncGroup waits for the leader's plan.
    let b_sync = spawn_sync(b, sync_request(&b_id, None, 2, &[], SYNC_MAX), SYNC_MAX);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!b_sync.is_finished());
    let plan: &[(&str, &'static [u8])] = &[(&a_id, b"t-0"), (&b_id, b"t-1")];
    let a_synced = a
        .call(&sync_request(&a_id, None, 2, plan, SYNC_MAX), SYNC_MAX)
        .await;
    let (mut b, b_synced) = finish(b_sync).await;
    assert_eq!(a_synced.assignment, Bytes::from_static(b"t-0"));
    assert_eq!(b_synced.assignment, Bytes::from_static(b"t-1"));
    assert_eq!(b_synced.protocol_name.as_deref(), Some("range"));
    assert_eq!(broker.group_state(GROUP), GroupState::Stable);
    assert_eq!(broker.group_generation(GROUP), Some(2));
    assert_eq!(
        broker.group_members(GROUP),
        [(a_id.clone(), None), (b_id.clone(), None)]
    );
    assert_eq!(heartbeat(&mut b, &b_id, 2).await, NONE);
    assert_eq!(heartbeat(&mut b, &b_id, 1).await, ILLEGAL_GENERATION);
    assert_eq!(heartbeat(&mut b, "stranger", 2).await, UNKNOWN_MEMBER_ID);
    let stale = b
        .call(&sync_request(&b_id, None, 1, &[], SYNC_MAX), SYNC_MAX)
        .await;
    assert_eq!(stale.error_code, ILLEGAL_GENERATION);
}

#[tokio::test]
async fn three_members_join_one_generation_within_the_initial_delay() {
    let broker = MockBroker::builder()
        .topic("t", 3)
        .group_initial_rebalance_delay(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut joins = Vec::new();
    for _ in 0..3 {
        let mut client = RawClient::connect(&broker).await;
        let id = member_id(&mut client, 10_000).await;
        joins.push(spawn_join(
            client,
            join_request(&id, None, 10_000, JOIN_MAX),
            JOIN_MAX,
        ));
        ids.push(id);
    }
    let mut answers = Vec::new();
    for join in joins {
        answers.push(finish(join).await);
    }
    assert!(answers
        .iter()
        .all(|(_, r)| r.error_code == NONE && r.generation_id == 1));
    let leader = answers[0].1.leader.to_string();
    let leader_index = ids
        .iter()
        .position(|id| *id == leader)
        .expect("a member leads");
    let listed: Vec<&str> = answers[leader_index]
        .1
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(listed.len(), 3);
    assert!(ids.iter().all(|id| listed.contains(&id.as_str())));
    assert_eq!(
        answers
            .iter()
            .filter(|(_, r)| !r.members.is_empty())
            .count(),
        1,
        "only the leader gets the members"
    );

    // Followers sync (v0) and wait; the leader's plan gives member i "p{i}".
    let mut clients: Vec<Option<RawClient>> = answers.into_iter().map(|(c, _)| Some(c)).collect();
    let mut syncs = Vec::new();
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != leader_index) {
        let client = clients[i].take().expect("each client once");
        syncs.push((i, spawn_sync(client, sync_request(id, None, 1, &[], 0), 0)));
    }
    let plans: [&'static [u8]; 3] = [b"p0", b"p1", b"p2"];
    let plan: Vec<(&str, &'static [u8])> = ids.iter().map(|id| id.as_str()).zip(plans).collect();
    let mut leader_client = clients[leader_index].take().expect("the leader's client");
    let synced = leader_client
        .call(&sync_request(&leader, None, 1, &plan, 0), 0)
        .await;
    assert_eq!(synced.assignment, Bytes::from_static(plans[leader_index]));
    for (i, sync) in syncs {
        let (_, response) = finish(sync).await;
        assert_eq!(response.assignment, Bytes::from_static(plans[i]));
    }

    // The admin APIs see the same group.
    let describe = DescribeGroupsRequest::default().with_groups(vec![group_id(GROUP)]);
    let described = leader_client.call(&describe, 5).await;
    let group = &described.groups[0];
    assert_eq!(group.error_code, NONE);
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.protocol_type.as_str(), "consumer");
    assert_eq!(group.protocol_data.as_str(), "range");
    assert_eq!(group.members.len(), 3);
    for member in &group.members {
        let i = ids
            .iter()
            .position(|id| *id == member.member_id.as_str())
            .unwrap();
        assert_eq!(member.member_assignment, Bytes::from_static(plans[i]));
        assert_eq!(member.member_metadata, Bytes::from_static(b"subscription"));
    }
    assert_eq!(group.members[0].client_id.as_str(), CLIENT_ID);
    assert_eq!(group.members[0].client_host.as_str(), "/127.0.0.1");
    let listed = leader_client.call(&ListGroupsRequest::default(), 4).await;
    assert_eq!(listed.error_code, NONE);
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_state.as_str(), "Stable");
    let empty_only = ListGroupsRequest::default().with_states_filter(vec![s("empty")]);
    assert!(leader_client.call(&empty_only, 4).await.groups.is_empty());
    let stable_only = ListGroupsRequest::default()
        .with_states_filter(vec![s("STABLE")])
        .with_types_filter(vec![s("Classic")]);
    let listed = leader_client.call(&stable_only, 5).await;
    assert_eq!(listed.groups[0].group_type.as_str(), "classic");
}

#[tokio::test]
async fn a_member_that_stops_heartbeating_is_evicted() {
    let broker = broker_with_topic().await;
    let (mut a, a_id) = lone_stable_member(&broker, 400).await;
    let (mut b, b_id) = {
        let mut b = RawClient::connect(&broker).await;
        let id = member_id(&mut b, 400).await;
        let join = spawn_join(b, join_request(&id, None, 400, JOIN_MAX), JOIN_MAX);
        let a_joined = a
            .call(&join_request(&a_id, None, 400, JOIN_MAX), JOIN_MAX)
            .await;
        assert_eq!(a_joined.generation_id, 2);
        let (b, _) = finish(join).await;
        (b, id)
    };
    let plan: &[(&str, &'static [u8])] = &[(&a_id, b"x"), (&b_id, b"y")];
    let b_sync = spawn_sync(b, sync_request(&b_id, None, 2, &[], SYNC_MAX), SYNC_MAX);
    a.call(&sync_request(&a_id, None, 2, plan, SYNC_MAX), SYNC_MAX)
        .await;
    (b, _) = finish(b_sync).await;
    assert_eq!(heartbeat(&mut b, &b_id, 2).await, NONE);

    // b goes silent; a heartbeats until told to rejoin.
    let started = tokio::time::Instant::now();
    let code = loop {
        let code = heartbeat(&mut a, &a_id, 2).await;
        if code != NONE || started.elapsed() > Duration::from_secs(5) {
            break code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, REBALANCE_IN_PROGRESS);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(broker.group_members(GROUP), [(a_id.clone(), None)]);
    let rejoined = a
        .call(&join_request(&a_id, None, 400, JOIN_MAX), JOIN_MAX)
        .await;
    assert_eq!(rejoined.generation_id, 3);
    assert_eq!(rejoined.members.len(), 1);
    assert_eq!(heartbeat(&mut b, &b_id, 2).await, UNKNOWN_MEMBER_ID);
}

#[tokio::test]
async fn leaving_triggers_a_rebalance_and_kick_member_does_too() {
    let broker = broker_with_topic().await;
    let (mut a, a_id) = lone_stable_member(&broker, 10_000).await;
    let mut b = RawClient::connect(&broker).await;
    let b_id = member_id(&mut b, 10_000).await;
    let b_join = spawn_join(b, join_request(&b_id, None, 10_000, JOIN_MAX), JOIN_MAX);
    a.call(&join_request(&a_id, None, 10_000, JOIN_MAX), JOIN_MAX)
        .await;
    let (mut b, _) = finish(b_join).await;

    // v3+ leave, batched, one of them unknown.
    let leave = LeaveGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&b_id)),
            MemberIdentity::default()
                .with_member_id(s(""))
                .with_group_instance_id(Some(s("nobody"))),
        ]);
    let left = b.call(&leave, 5).await;
    assert_eq!(left.error_code, NONE);
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [NONE, UNKNOWN_MEMBER_ID]);
    assert_eq!(heartbeat(&mut a, &a_id, 2).await, REBALANCE_IN_PROGRESS);
    let alone = a
        .call(&join_request(&a_id, None, 10_000, JOIN_MAX), JOIN_MAX)
        .await;
    assert_eq!(alone.generation_id, 3);
    assert_eq!(broker.group_members(GROUP), [(a_id.clone(), None)]);

    // v0 names one member and answers with one code.
    let leave = LeaveGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_member_id(s(&b_id));
    assert_eq!(b.call(&leave, 0).await.error_code, UNKNOWN_MEMBER_ID);

    assert!(broker.kick_member(GROUP, &a_id));
    assert_eq!(broker.group_state(GROUP), GroupState::Empty);
    assert_eq!(broker.group_generation(GROUP), Some(4));
    assert_eq!(heartbeat(&mut a, &a_id, 3).await, UNKNOWN_MEMBER_ID);
}

#[tokio::test]
async fn force_rebalance_makes_heartbeats_ask_for_a_rejoin() {
    let broker = broker_with_topic().await;
    let (mut a, a_id) = lone_stable_member(&broker, 10_000).await;
    assert!(broker.force_rebalance(GROUP));
    assert!(!broker.force_rebalance(GROUP), "already preparing");
    assert_eq!(heartbeat(&mut a, &a_id, 1).await, REBALANCE_IN_PROGRESS);
    let rejoined = a
        .call(&join_request(&a_id, None, 10_000, JOIN_MAX), JOIN_MAX)
        .await;
    assert_eq!(rejoined.generation_id, 2);
}

#[tokio::test]
async fn a_restarted_static_member_fences_its_old_id() {
    let broker = broker_with_topic().await;
    let mut old = RawClient::connect(&broker).await;
    let first = old
        .call(
            &join_request("", Some("host-1"), 10_000, JOIN_MAX),
            JOIN_MAX,
        )
        .await;
    assert_eq!(first.error_code, NONE, "static members need no member id");
    let old_id = first.member_id.to_string();
    assert!(old_id.starts_with("host-1-"), "{old_id}");
    let plan: &[(&str, &'static [u8])] = &[(&old_id, b"mine")];
    old.call(
        &sync_request(&old_id, Some("host-1"), 1, plan, SYNC_MAX),
        SYNC_MAX,
    )
    .await;

    // The same instance comes back without its member id.
    let mut new = RawClient::connect(&broker).await;
    let second = new
        .call(
            &join_request("", Some("host-1"), 10_000, JOIN_MAX),
            JOIN_MAX,
        )
        .await;
    let new_id = second.member_id.to_string();
    assert_ne!(new_id, old_id);
    assert_eq!(second.generation_id, 1, "a Stable group does not rebalance");
    assert!(
        second.skip_assignment,
        "v9: the leader keeps the assignment"
    );
    assert_eq!(
        broker.group_members(GROUP),
        [(new_id.clone(), Some("host-1".to_owned()))]
    );

    let fenced = old
        .call(
            &heartbeat_request(&old_id, Some("host-1"), 1),
            HEARTBEAT_MAX,
        )
        .await;
    assert_eq!(fenced.error_code, FENCED_INSTANCE_ID);
    let commit =
        commit_request(&old_id, 1, &[("t", 0, 5)]).with_group_instance_id(Some(s("host-1")));
    assert_eq!(
        commit_codes(&old.call(&commit, 7).await),
        [FENCED_INSTANCE_ID]
    );
    let sync = old
        .call(
            &sync_request(&old_id, Some("host-1"), 1, &[], SYNC_MAX),
            SYNC_MAX,
        )
        .await;
    assert_eq!(sync.error_code, FENCED_INSTANCE_ID);

    let synced = new
        .call(
            &sync_request(&new_id, Some("host-1"), 1, &[], SYNC_MAX),
            SYNC_MAX,
        )
        .await;
    assert_eq!(
        synced.assignment,
        Bytes::from_static(b"mine"),
        "kept across the restart"
    );
    let alive = new
        .call(
            &heartbeat_request(&new_id, Some("host-1"), 1),
            HEARTBEAT_MAX,
        )
        .await;
    assert_eq!(alive.error_code, NONE);

    // An admin removes the static member by its instance id alone; the old
    // incarnation's id cannot leave in its place.
    let impostor = LeaveGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_members(vec![MemberIdentity::default()
            .with_member_id(s(&old_id))
            .with_group_instance_id(Some(s("host-1")))]);
    let refused = old.call(&impostor, 3).await;
    assert_eq!(refused.members[0].error_code, FENCED_INSTANCE_ID);
    let admin = LeaveGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_members(vec![MemberIdentity::default()
            .with_member_id(s(""))
            .with_group_instance_id(Some(s("host-1")))]);
    assert_eq!(old.call(&admin, 3).await.members[0].error_code, NONE);
    assert!(broker.group_members(GROUP).is_empty());
    assert_eq!(broker.group_state(GROUP), GroupState::Empty);
}

#[tokio::test]
async fn followers_of_a_leader_that_never_syncs_are_told_to_rejoin() {
    let broker = broker_with_topic().await;
    let mut a = RawClient::connect(&broker).await;
    let a_id = member_id(&mut a, 300).await;
    let mut b = RawClient::connect(&broker).await;
    let b_id = member_id(&mut b, 300).await;
    // a joins first, alone (no initial delay), then b: a's rejoin makes
    // generation 2, which a leads but never syncs.
    let a_joined = a
        .call(&join_request(&a_id, None, 300, JOIN_MAX), JOIN_MAX)
        .await;
    assert_eq!(a_joined.generation_id, 1);
    let b_join = spawn_join(b, join_request(&b_id, None, 300, JOIN_MAX), JOIN_MAX);
    until(|| broker.group_state(GROUP) == GroupState::PreparingRebalance).await;
    let a_rejoined = a
        .call(&join_request(&a_id, None, 300, JOIN_MAX), JOIN_MAX)
        .await;
    let (b, b_joined) = finish(b_join).await;
    assert_eq!(a_rejoined.generation_id, 2);
    assert_eq!(
        (b_joined.generation_id, b_joined.leader.as_str()),
        (2, a_id.as_str())
    );

    let started = tokio::time::Instant::now();
    let b_sync = spawn_sync(b, sync_request(&b_id, None, 2, &[], SYNC_MAX), SYNC_MAX);
    let (_, synced) = finish(b_sync).await;
    assert_eq!(synced.error_code, REBALANCE_IN_PROGRESS);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        broker.group_members(GROUP),
        [(b_id, None)],
        "the leader was dropped"
    );
}

#[tokio::test]
async fn commits_are_checked_against_member_generation_and_state() {
    let broker = broker_with_topic().await;
    let mut admin = RawClient::connect(&broker).await;
    // A simple commit (no member, generation -1) creates the group.
    let simple = commit_request("", -1, &[("t", 0, 10), ("t", 1, 11)]);
    assert_eq!(commit_codes(&admin.call(&simple, 2).await), [NONE, NONE]);
    assert_eq!(broker.committed(GROUP, "t", 1), Some(11));
    assert_eq!(broker.group_state(GROUP), GroupState::Empty);
    let unknown = commit_request("", -1, &[("t", 0, 12), ("t", 7, 1), ("nope", 0, 1)]);
    assert_eq!(
        commit_codes(&admin.call(&unknown, 9).await),
        [NONE, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_OR_PARTITION]
    );

    let (mut a, a_id) = lone_stable_member(&broker, 10_000).await;
    let cases = [
        (commit_request("", -1, &[("t", 0, 1)]), UNKNOWN_MEMBER_ID),
        (
            commit_request("stranger", 1, &[("t", 0, 1)]),
            UNKNOWN_MEMBER_ID,
        ),
        (commit_request(&a_id, 0, &[("t", 0, 1)]), ILLEGAL_GENERATION),
        (commit_request(&a_id, 1, &[("t", 0, 20)]), NONE),
    ];
    for version in [2, OffsetCommitRequest::VERSIONS.max] {
        for (request, expected) in &cases {
            let codes = commit_codes(&a.call(request, version).await);
            assert_eq!(codes, [*expected], "v{version} {request:?}");
        }
    }
    assert_eq!(broker.committed(GROUP, "t", 0), Some(20));

    // PreparingRebalance still takes commits; CompletingRebalance refuses.
    assert!(broker.force_rebalance(GROUP));
    let during = commit_request(&a_id, 1, &[("t", 0, 21)]);
    assert_eq!(commit_codes(&a.call(&during, 8).await), [NONE]);
    let rejoined = a
        .call(&join_request(&a_id, None, 10_000, JOIN_MAX), JOIN_MAX)
        .await;
    assert_eq!(rejoined.generation_id, 2);
    let completing = commit_request(&a_id, 2, &[("t", 0, 22)]);
    assert_eq!(
        commit_codes(&a.call(&completing, 8).await),
        [REBALANCE_IN_PROGRESS]
    );
    let stale = commit_request(&a_id, 1, &[("t", 0, 22)]);
    assert_eq!(commit_codes(&a.call(&stale, 8).await), [ILLEGAL_GENERATION]);
    assert_eq!(broker.committed(GROUP, "t", 0), Some(21));

    // A member's commit to a group that does not exist.
    let other = commit_request("m", 3, &[("t", 0, 1)]).with_group_id(group_id("other"));
    assert_eq!(
        commit_codes(&admin.call(&other, 8).await),
        [ILLEGAL_GENERATION]
    );
    assert_eq!(
        commit_codes(&admin.call(&other, 9).await),
        [GROUP_ID_NOT_FOUND]
    );
}

#[tokio::test]
async fn offset_fetch_returns_commits_and_minus_one_at_every_version() {
    let broker = broker_with_topic().await;
    broker.set_committed(GROUP, "t", 0, 42);
    let mut client = RawClient::connect(&broker).await;
    let with_epoch = commit_request("", -1, &[("t", 1, 7)]);
    let with_epoch = {
        let mut request = with_epoch;
        request.topics[0].partitions[0].committed_leader_epoch = 4;
        request
    };
    assert_eq!(commit_codes(&client.call(&with_epoch, 8).await), [NONE]);

    for version in 1..=7 {
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(GROUP))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name("t"))
                .with_partition_indexes(vec![0, 1, 5])]));
        let response = client.call(&request, version).await;
        assert_eq!(response.error_code, NONE, "v{version}");
        let partitions = &response.topics[0].partitions;
        let offsets: Vec<(i32, i64)> = partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset))
            .collect();
        assert_eq!(offsets, [(0, 42), (1, 7), (5, -1)], "v{version}");
        assert_eq!(partitions[1].metadata.as_deref(), Some("meta"));
        let epoch = if version >= 5 { 4 } else { -1 };
        assert_eq!(partitions[1].committed_leader_epoch, epoch, "v{version}");
        if version >= 2 {
            let all = OffsetFetchRequest::default()
                .with_group_id(group_id(GROUP))
                .with_topics(None);
            let response = client.call(&all, version).await;
            let partitions: Vec<i32> = response.topics[0]
                .partitions
                .iter()
                .map(|p| p.partition_index)
                .collect();
            assert_eq!(partitions, [0, 1], "v{version}: every committed partition");
        }
    }
    for version in 8..=OffsetFetchRequest::VERSIONS.max {
        let request = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id(GROUP))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic_name("t"))
                    .with_partition_indexes(vec![1])])),
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id("never-committed"))
                .with_topics(None),
        ]);
        let response = client.call(&request, version).await;
        assert_eq!(response.groups.len(), 2);
        let known = &response.groups[0];
        assert_eq!(known.error_code, NONE);
        assert_eq!(known.topics[0].partitions[0].committed_offset, 7);
        assert_eq!(known.topics[0].partitions[0].committed_leader_epoch, 4);
        assert!(response.groups[1].topics.is_empty(), "v{version}");
    }
}

#[tokio::test]
async fn the_old_coordinator_says_not_coordinator_after_a_move() {
    let cluster = MockCluster::builder()
        .brokers(3)
        .topic("t", 3)
        .start()
        .await
        .unwrap();
    let home = cluster.group_coordinator(GROUP);
    let target = if home == 3 { 1 } else { home + 1 };
    let (mut a, a_id) = lone_stable_member(cluster.broker(home), 10_000).await;
    let commit = commit_request(&a_id, 1, &[("t", 0, 5)]);
    assert_eq!(commit_codes(&a.call(&commit, 8).await), [NONE]);

    // b's join waits on the old coordinator when the group moves.
    let mut b = RawClient::connect_to(&cluster, home).await;
    let b_id = member_id(&mut b, 10_000).await;
    let b_join = spawn_join(b, join_request(&b_id, None, 10_000, JOIN_MAX), JOIN_MAX);
    until(|| cluster.group_state(GROUP) == GroupState::PreparingRebalance).await;
    cluster.move_coordinator(GROUP, target);
    let (_, answer) = finish(b_join).await;
    assert_eq!(answer.error_code, NOT_COORDINATOR);
    assert_eq!(heartbeat(&mut a, &a_id, 1).await, NOT_COORDINATOR);
    let sync = a
        .call(&sync_request(&a_id, None, 1, &[], SYNC_MAX), SYNC_MAX)
        .await;
    assert_eq!(sync.error_code, NOT_COORDINATOR);
    let fetch = OffsetFetchRequest::default()
        .with_group_id(group_id(GROUP))
        .with_topics(None);
    assert_eq!(a.call(&fetch, 7).await.error_code, NOT_COORDINATOR);
    let v1_fetch = OffsetFetchRequest::default()
        .with_group_id(group_id(GROUP))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name("t"))
            .with_partition_indexes(vec![0])]));
    let v1 = a.call(&v1_fetch, 1).await;
    assert_eq!(
        v1.topics[0].partitions[0].error_code, NOT_COORDINATOR,
        "v1: per partition"
    );

    // The new coordinator loaded the group as persisted: a, generation 1.
    let find = FindCoordinatorRequest::default().with_key(s(GROUP));
    assert_eq!(a.call(&find, 2).await.node_id.0, target);
    let mut a = RawClient::connect_to(&cluster, target).await;
    assert_eq!(heartbeat(&mut a, &a_id, 1).await, NONE);
    assert_eq!(cluster.group_members(GROUP), [(a_id.clone(), None)]);
    assert_eq!(
        a.call(&fetch, 7).await.topics[0].partitions[0].committed_offset,
        5
    );
}

#[tokio::test]
async fn a_loading_coordinator_answers_coordinator_load_in_progress() {
    let broker = broker_with_topic().await;
    let (mut a, a_id) = lone_stable_member(&broker, 400).await;
    broker.set_coordinator_loading(GROUP, true);
    assert_eq!(
        heartbeat(&mut a, &a_id, 1).await,
        COORDINATOR_LOAD_IN_PROGRESS
    );
    let join = a
        .call(&join_request(&a_id, None, 400, JOIN_MAX), JOIN_MAX)
        .await;
    assert_eq!(join.error_code, COORDINATOR_LOAD_IN_PROGRESS);
    let commit = commit_request(&a_id, 1, &[("t", 0, 1)]);
    assert_eq!(
        commit_codes(&a.call(&commit, 8).await),
        [COORDINATOR_LOAD_IN_PROGRESS]
    );
    let describe = DescribeGroupsRequest::default().with_groups(vec![group_id(GROUP)]);
    assert_eq!(
        a.call(&describe, 0).await.groups[0].error_code,
        COORDINATOR_LOAD_IN_PROGRESS
    );
    assert_eq!(
        a.call(&ListGroupsRequest::default(), 0).await.error_code,
        COORDINATOR_LOAD_IN_PROGRESS
    );
    // The session does not run out while the group loads.
    tokio::time::sleep(Duration::from_millis(600)).await;
    broker.set_coordinator_loading(GROUP, false);
    assert_eq!(heartbeat(&mut a, &a_id, 1).await, NONE);
}

#[tokio::test]
async fn join_and_sync_at_their_lowest_and_highest_versions() {
    let broker = broker_with_topic().await;
    let mut a = RawClient::connect(&broker).await;
    // v0: no MEMBER_ID_REQUIRED, the session timeout doubles as the
    // rebalance timeout, and the protocol name is a plain string.
    let joined = a.call(&join_request("", None, 10_000, 0), 0).await;
    assert_eq!(joined.error_code, NONE);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let a_id = joined.member_id.to_string();
    let synced = a
        .call(&sync_request(&a_id, None, 1, &[(&a_id, b"v0")], 0), 0)
        .await;
    assert_eq!(
        (synced.error_code, synced.assignment.as_ref()),
        (NONE, &b"v0"[..])
    );
    let beat = a.call(&heartbeat_request(&a_id, None, 1), 0).await;
    assert_eq!(beat.error_code, NONE);
    // A v0 error response still carries a (empty) protocol name.
    let bad = a.call(&join_request("ghost", None, 10_000, 0), 0).await;
    assert_eq!(bad.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(bad.protocol_name.as_deref(), Some(""));

    // The highest versions, on a fresh group member.
    let mut b = RawClient::connect(&broker).await;
    let b_id = member_id(&mut b, 10_000).await;
    let b_join = spawn_join(b, join_request(&b_id, None, 10_000, JOIN_MAX), JOIN_MAX);
    let a_joined = a.call(&join_request(&a_id, None, 10_000, 0), 0).await;
    let (b, b_joined) = finish(b_join).await;
    assert_eq!((a_joined.generation_id, b_joined.generation_id), (2, 2));
    assert_eq!(b_joined.protocol_type.as_deref(), Some("consumer"));
    assert!(!b_joined.skip_assignment);
    let b_sync = spawn_sync(b, sync_request(&b_id, None, 2, &[], SYNC_MAX), SYNC_MAX);
    let plan: &[(&str, &'static [u8])] = &[(&b_id, b"v5")];
    a.call(&sync_request(&a_id, None, 2, plan, 0), 0).await;
    let (mut b, synced) = finish(b_sync).await;
    assert_eq!(synced.assignment, Bytes::from_static(b"v5"));
    assert_eq!(synced.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(synced.protocol_name.as_deref(), Some("range"));
    // v5 requires the protocol type and name.
    let bare = sync_request(&b_id, None, 2, &[], 4);
    assert_eq!(
        b.call(&bare, SYNC_MAX).await.error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    let wrong =
        sync_request(&b_id, None, 2, &[], SYNC_MAX).with_protocol_name(Some(s("roundrobin")));
    assert_eq!(
        b.call(&wrong, SYNC_MAX).await.error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
}

#[tokio::test]
async fn tansu_flavour_requires_member_ids_at_every_version_and_counts_from_zero() {
    let broker = MockBroker::builder()
        .topic("t", 1)
        .member_id_required_at_every_version(true)
        .group_generations_start_at_zero(true)
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect(&broker).await;
    let first = client.call(&join_request("", None, 10_000, 0), 0).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let id = first.member_id.to_string();
    let joined = client.call(&join_request(&id, None, 10_000, 0), 0).await;
    assert_eq!((joined.error_code, joined.generation_id), (NONE, 0));
    assert_eq!(broker.group_generation(GROUP), Some(0));
    broker.set_member_id_required_at_every_version(false);
    // Kafka's way again: a v3 member joins without MEMBER_ID_REQUIRED.
    let other = RawClient::connect(&broker).await;
    let direct = spawn_join(other, join_request("", None, 10_000, 3), 3);
    until(|| broker.group_members(GROUP).len() == 2).await;
    assert_eq!(heartbeat(&mut client, &id, 0).await, REBALANCE_IN_PROGRESS);
    client.call(&join_request(&id, None, 10_000, 0), 0).await;
    let (_, direct) = finish(direct).await;
    assert_eq!((direct.error_code, direct.generation_id), (NONE, 1));
}

#[tokio::test]
async fn group_state_and_offsets_survive_a_coordinator_restart() {
    let cluster = MockCluster::builder()
        .brokers(3)
        .topic("t", 1)
        .start()
        .await
        .unwrap();
    let home = cluster.group_coordinator(GROUP);
    let (mut a, a_id) = lone_stable_member(cluster.broker(home), 500).await;
    let commit = commit_request(&a_id, 1, &[("t", 0, 9)]);
    assert_eq!(commit_codes(&a.call(&commit, 8).await), [NONE]);

    cluster.stop_broker(home).await;
    a.expect_closed().await;
    // Down for longer than the session: no coordinator, no expiry.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(cluster.group_members(GROUP), [(a_id.clone(), None)]);
    assert_eq!(cluster.group_state(GROUP), GroupState::Stable);
    cluster.restart_broker(home).await.unwrap();
    let mut a = RawClient::connect_to(&cluster, home).await;
    assert_eq!(heartbeat(&mut a, &a_id, 1).await, NONE);
    assert_eq!(cluster.committed(GROUP, "t", 0), Some(9));
}

#[tokio::test]
async fn describe_list_and_delete_groups() {
    let broker = broker_with_topic().await;
    let mut client = RawClient::connect(&broker).await;
    let unknown = DescribeGroupsRequest::default().with_groups(vec![group_id("ghost")]);
    let v5 = client.call(&unknown, 5).await;
    assert_eq!(
        (v5.groups[0].error_code, v5.groups[0].group_state.as_str()),
        (NONE, "Dead")
    );
    let v6 = client.call(&unknown, 6).await;
    assert_eq!(v6.groups[0].error_code, GROUP_ID_NOT_FOUND);

    let (mut a, a_id) = lone_stable_member(&broker, 10_000).await;
    let commit = commit_request(&a_id, 1, &[("t", 0, 3)]);
    a.call(&commit, 8).await;
    let delete =
        DeleteGroupsRequest::default().with_groups_names(vec![group_id(GROUP), group_id("ghost")]);
    let refused = client.call(&delete, 2).await;
    let codes: Vec<i16> = refused.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND]);

    let leave = LeaveGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_member_id(s(&a_id));
    assert_eq!(a.call(&leave, 1).await.error_code, NONE);
    assert_eq!(broker.group_state(GROUP), GroupState::Empty);
    let described = client
        .call(
            &DescribeGroupsRequest::default().with_groups(vec![group_id(GROUP)]),
            0,
        )
        .await;
    assert_eq!(described.groups[0].group_state.as_str(), "Empty");
    let deleted = client.call(&delete, 0).await;
    assert_eq!(deleted.results[0].error_code, NONE);
    assert_eq!(broker.group_state(GROUP), GroupState::Dead);
    assert_eq!(
        broker.committed(GROUP, "t", 0),
        None,
        "offsets go with the group"
    );
    assert!(client
        .call(&ListGroupsRequest::default(), 0)
        .await
        .groups
        .is_empty());
}

#[tokio::test]
async fn error_intercepts_shape_every_group_response() {
    let broker = broker_with_topic().await;
    let (mut a, a_id) = lone_stable_member(&broker, 10_000).await;
    for key in [
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::DescribeGroups,
        ApiKey::ListGroups,
        ApiKey::DeleteGroups,
    ] {
        broker.intercept(Intercept::api(key).once(), Action::Error(NOT_COORDINATOR));
    }
    let find = FindCoordinatorRequest::default().with_key(s(GROUP));
    assert_eq!(a.call(&find, 3).await.error_code, NOT_COORDINATOR);
    let join = a.call(&join_request(&a_id, None, 10_000, 5), 5).await;
    assert_eq!(
        (join.error_code, join.member_id.as_str(), join.generation_id),
        (NOT_COORDINATOR, "", -1)
    );
    let sync = a.call(&sync_request(&a_id, None, 1, &[], 3), 3).await;
    assert_eq!(sync.error_code, NOT_COORDINATOR);
    assert_eq!(heartbeat(&mut a, &a_id, 1).await, NOT_COORDINATOR);
    let leave = LeaveGroupRequest::default()
        .with_group_id(group_id(GROUP))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&a_id))]);
    assert_eq!(a.call(&leave, 4).await.error_code, NOT_COORDINATOR);
    let commit = commit_request(&a_id, 1, &[("t", 0, 1), ("t", 1, 1)]);
    assert_eq!(
        commit_codes(&a.call(&commit, 8).await),
        [NOT_COORDINATOR; 2]
    );
    let fetch = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(group_id(GROUP))
        .with_topics(None)]);
    assert_eq!(
        a.call(&fetch, 8).await.groups[0].error_code,
        NOT_COORDINATOR
    );
    let describe = DescribeGroupsRequest::default().with_groups(vec![group_id(GROUP)]);
    assert_eq!(
        a.call(&describe, 3).await.groups[0].error_code,
        NOT_COORDINATOR
    );
    assert_eq!(
        a.call(&ListGroupsRequest::default(), 2).await.error_code,
        NOT_COORDINATOR
    );
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group_id(GROUP)]);
    assert_eq!(
        a.call(&delete, 1).await.results[0].error_code,
        NOT_COORDINATOR
    );

    // None of it acted on the group: the member is still there and Stable.
    assert_eq!(broker.group_state(GROUP), GroupState::Stable);
    assert_eq!(heartbeat(&mut a, &a_id, 1).await, NONE);
}
