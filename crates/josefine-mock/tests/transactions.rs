//! Transactions (KIP-98) over the wire, as a TV1 producer and a
//! `read_committed` consumer see them: the transaction coordinator's APIs,
//! markers and the last stable offset in the logs, fencing, timeouts, and
//! offsets committed in a transaction.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::records::{self, batch, transactional};
use common::requests::{fetch, list_offsets, produce};
use common::RawClient;
use josefine_mock::{Action, ApiKey, Intercept, MockCluster, ResponseError, TransactionState};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    ApiVersionsRequest, EndTxnRequest, FetchRequest, FetchResponse, FindCoordinatorRequest,
    GroupId, InitProducerIdRequest, ListOffsetsRequest, OffsetFetchRequest, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const TOPIC: &str = "t";
const ID: &str = "tx";
const GROUP: &str = "g";

const NONE: i16 = 0;
const NOT_ENOUGH_REPLICAS: i16 = ResponseError::NotEnoughReplicas.code();
const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
const INVALID_PRODUCER_EPOCH: i16 = ResponseError::InvalidProducerEpoch.code();
const INVALID_TXN_STATE: i16 = ResponseError::InvalidTxnState.code();
const INVALID_PRODUCER_ID_MAPPING: i16 = ResponseError::InvalidProducerIdMapping.code();
const INVALID_TRANSACTION_TIMEOUT: i16 = ResponseError::InvalidTransactionTimeout.code();
const CONCURRENT_TRANSACTIONS: i16 = ResponseError::ConcurrentTransactions.code();
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 =
    ResponseError::TransactionalIdAuthorizationFailed.code();
const OPERATION_NOT_ATTEMPTED: i16 = ResponseError::OperationNotAttempted.code();
const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const UNSTABLE_OFFSET_COMMIT: i16 = ResponseError::UnstableOffsetCommit.code();
const PRODUCER_FENCED: i16 = ResponseError::ProducerFenced.code();
const TRANSACTION_ABORTABLE: i16 = ResponseError::TransactionAbortable.code();

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A one-broker cluster (broker 1 coordinates everything) with a topic of
/// two partitions, both led by broker 1.
async fn single() -> (MockCluster, RawClient) {
    let cluster = MockCluster::builder()
        .brokers(1)
        .topic(TOPIC, 2)
        .start()
        .await
        .unwrap();
    let client = RawClient::connect_to(&cluster, 1).await;
    (cluster, client)
}

fn init_request(id: &str, timeout_ms: i32) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(timeout_ms)
}

/// InitProducerId v4 for `ID`: (error, producer id, epoch).
async fn init(client: &mut RawClient) -> (i16, i64, i16) {
    let response = client.call(&init_request(ID, 60_000), 4).await;
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// A producer id and epoch from a successful InitProducerId.
async fn producer(client: &mut RawClient) -> (i64, i16) {
    let (code, pid, epoch) = init(client).await;
    assert_eq!(code, NONE, "InitProducerId");
    (pid, epoch)
}

fn add_request((pid, epoch): (i64, i16), partitions: &[i32]) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(ID)))
        .with_v3_and_below_producer_id(pid.into())
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(common::topic_name(TOPIC))
            .with_partitions(partitions.to_vec())])
}

fn codes(response: &AddPartitionsToTxnResponse) -> Vec<i16> {
    response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

/// AddPartitionsToTxn v3 for partitions of `TOPIC`: one code per partition.
async fn add(client: &mut RawClient, producer: (i64, i16), partitions: &[i32]) -> Vec<i16> {
    codes(&client.call(&add_request(producer, partitions), 3).await)
}

async fn add_offsets(client: &mut RawClient, (pid, epoch): (i64, i16)) -> i16 {
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s(ID)))
        .with_producer_id(pid.into())
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(s(GROUP)));
    client.call(&request, 4).await.error_code
}

fn end_request((pid, epoch): (i64, i16), commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(ID)))
        .with_producer_id(pid.into())
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

async fn end(client: &mut RawClient, producer: (i64, i16), commit: bool) -> i16 {
    client
        .call(&end_request(producer, commit), 4)
        .await
        .error_code
}

/// Produce v9 (or `version`) of one batch to a partition of `TOPIC`, as
/// the transactional producer `ID`: (error, base offset).
async fn produce_as(
    client: &mut RawClient,
    partition: i32,
    records: Bytes,
    version: i16,
) -> (i16, i64) {
    let request = produce(TOPIC, Uuid::nil(), partition, records, version)
        .with_transactional_id(Some(TransactionalId(s(ID))));
    let response = client.call(&request, version).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A sessionless Fetch v12 of one partition from `offset`.
async fn fetch_at(
    client: &mut RawClient,
    partition: i32,
    offset: i64,
    read_committed: bool,
) -> FetchResponse {
    let request: FetchRequest = fetch(&[(TOPIC, Uuid::nil(), partition, offset, 1 << 20)], 12)
        .with_isolation_level(i8::from(read_committed));
    client.call(&request, 12).await
}

/// (producer id, first offset) of each aborted transaction a fetch lists.
type Aborted = Option<Vec<(i64, i64)>>;

/// (records' batches, last stable offset, aborted transactions) of a fetch.
fn read(response: &FetchResponse) -> (Vec<Bytes>, i64, Aborted) {
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, NONE);
    let (batches, partial) = records::split(p.records.as_deref().unwrap_or_default());
    assert_eq!(partial, 0);
    let aborted = p.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect()
    });
    (batches, p.last_stable_offset, aborted)
}

/// ListOffsets v5 latest offset of partition 0.
async fn latest(client: &mut RawClient, read_committed: bool) -> i64 {
    let request: ListOffsetsRequest =
        list_offsets(TOPIC, 0, -1).with_isolation_level(i8::from(read_committed));
    let response = client.call(&request, 5).await;
    response.topics[0].partitions[0].offset
}

#[tokio::test]
async fn api_versions_advertise_the_transaction_apis() {
    let (_cluster, mut client) = single().await;
    let response = client.call(&ApiVersionsRequest::default(), 3).await;
    let range = |key: ApiKey| {
        response
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::AddPartitionsToTxn), Some((0, 3)));
    assert_eq!(range(ApiKey::AddOffsetsToTxn), Some((0, 4)));
    assert_eq!(range(ApiKey::EndTxn), Some((0, 4)));
    assert_eq!(range(ApiKey::TxnOffsetCommit), Some((0, 4)));
    assert_eq!(range(ApiKey::InitProducerId), Some((0, 5)));
}

#[tokio::test]
async fn a_committed_transaction_becomes_readable_at_its_marker() {
    let (cluster, mut client) = single().await;
    let tx = producer(&mut client).await;
    assert_eq!(tx, (1000, 0));
    assert_eq!(add(&mut client, tx, &[0]).await, [NONE]);
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::Ongoing
    );
    let sent = transactional(tx.0, tx.1, 0, &["a", "b", "c"]);
    assert_eq!(produce_as(&mut client, 0, sent.clone(), 9).await, (NONE, 0));
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 0);

    // read_committed stops at the LSO; read_uncommitted sees the data.
    let (batches, lso, aborted) = read(&fetch_at(&mut client, 0, 0, true).await);
    assert!(batches.is_empty());
    assert_eq!((lso, aborted), (0, Some(Vec::new())));
    let (batches, lso, aborted) = read(&fetch_at(&mut client, 0, 0, false).await);
    assert_eq!((batches.len(), lso, aborted), (1, 0, None));
    assert_eq!(records::payload(&batches[0]), records::payload(&sent));
    assert_eq!(latest(&mut client, true).await, 0);
    assert_eq!(latest(&mut client, false).await, 3);

    assert_eq!(end(&mut client, tx, true).await, NONE);
    let view = cluster.transaction(ID).unwrap();
    assert_eq!(view.state, TransactionState::CompleteCommit);
    assert!(view.partitions.is_empty());
    assert_eq!(
        cluster.log_end_offset(TOPIC, 0),
        4,
        "the marker took offset 3"
    );
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 4);
    assert_eq!(
        cluster.log_end_offset(TOPIC, 1),
        0,
        "not in the transaction"
    );
    let (batches, lso, aborted) = read(&fetch_at(&mut client, 0, 0, true).await);
    assert_eq!((batches.len(), lso, aborted), (2, 4, Some(Vec::new())));
    let marker = &batches[1];
    assert_eq!(records::base_offset(marker), 3);
    assert_eq!(
        records::attributes(marker),
        0x30,
        "control and transactional"
    );
    assert!(records::crc_ok(marker));
    assert_eq!(i64::from_be_bytes(marker[43..51].try_into().unwrap()), tx.0);
    assert_eq!(latest(&mut client, true).await, 4);

    // The same outcome again is fine, the other is not, and the producer
    // goes on with its sequence in a new transaction.
    assert_eq!(end(&mut client, tx, true).await, NONE);
    assert_eq!(end(&mut client, tx, false).await, INVALID_TXN_STATE);
    assert_eq!(add(&mut client, tx, &[0]).await, [NONE]);
    let next = transactional(tx.0, tx.1, 3, &["d"]);
    assert_eq!(produce_as(&mut client, 0, next, 9).await, (NONE, 4));
}

#[tokio::test]
async fn an_aborted_transaction_is_listed_for_read_committed_fetches() {
    let (cluster, mut client) = single().await;
    let plain = produce(TOPIC, Uuid::nil(), 0, batch(&["x"]), 9);
    client.call(&plain, 9).await;
    let tx = producer(&mut client).await;
    add(&mut client, tx, &[0, 1]).await;
    let sent = transactional(tx.0, tx.1, 0, &["a", "b"]);
    assert_eq!(produce_as(&mut client, 0, sent, 9).await, (NONE, 1));
    client.call(&plain, 9).await; // offset 3, behind the open transaction
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 1);
    let (batches, lso, _) = read(&fetch_at(&mut client, 0, 0, true).await);
    assert_eq!((batches.len(), lso), (1, 1), "up to the LSO only");

    assert_eq!(end(&mut client, tx, false).await, NONE);
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::CompleteAbort
    );
    assert_eq!(cluster.aborted_transactions(TOPIC, 0), [(tx.0, 1, 4)]);
    assert!(
        cluster.aborted_transactions(TOPIC, 1).is_empty(),
        "no data there"
    );
    assert_eq!(cluster.log_end_offset(TOPIC, 1), 1, "but a marker");
    let (batches, lso, aborted) = read(&fetch_at(&mut client, 0, 0, true).await);
    assert_eq!((batches.len(), lso), (4, 5));
    assert_eq!(aborted, Some(vec![(tx.0, 1)]));
    // From past the marker, nothing is aborted any more.
    let (_, _, aborted) = read(&fetch_at(&mut client, 0, 5, true).await);
    assert_eq!(aborted, Some(Vec::new()));
    // read_uncommitted gets no list.
    let (_, _, aborted) = read(&fetch_at(&mut client, 0, 0, false).await);
    assert_eq!(aborted, None);
}

#[tokio::test]
async fn hand_made_transactions_can_be_appended() {
    let (cluster, mut client) = single().await;
    cluster.append_batch(TOPIC, 0, transactional(7, 0, 0, &["a", "b"]));
    cluster.append_batch(TOPIC, 0, batch(&["plain"]));
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 0);
    assert_eq!(
        cluster.append_batch(TOPIC, 0, records::marker(7, 0, false)),
        3
    );
    assert_eq!(cluster.aborted_transactions(TOPIC, 0), [(7, 0, 3)]);
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 4);
    let (batches, lso, aborted) = read(&fetch_at(&mut client, 0, 0, true).await);
    assert_eq!((batches.len(), lso, aborted), (3, 4, Some(vec![(7, 0)])));
    // A COMMIT marker closes a transaction without listing it.
    cluster.append_batch(TOPIC, 1, transactional(8, 0, 0, &["c"]));
    cluster.append_batch(TOPIC, 1, records::marker(8, 0, true));
    assert_eq!(cluster.last_stable_offset(TOPIC, 1), 2);
    assert!(cluster.aborted_transactions(TOPIC, 1).is_empty());
}

#[tokio::test]
async fn a_new_instance_aborts_and_fences_the_old_one() {
    let (cluster, mut client) = single().await;
    let old = producer(&mut client).await;
    add(&mut client, old, &[0]).await;
    let sent = transactional(old.0, old.1, 0, &["a"]);
    assert_eq!(produce_as(&mut client, 0, sent, 9).await, (NONE, 0));

    // The new instance's InitProducerId aborts the transaction first.
    assert_eq!(init(&mut client).await.0, CONCURRENT_TRANSACTIONS);
    assert_eq!(cluster.aborted_transactions(TOPIC, 0), [(old.0, 0, 1)]);
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 2);
    let marker = &cluster.batches(TOPIC, 0)[1];
    assert_eq!(
        i16::from_be_bytes(marker[51..53].try_into().unwrap()),
        1,
        "the fencing epoch"
    );
    let new = producer(&mut client).await;
    assert_eq!(new, (old.0, 2), "bumped twice");

    // The old instance is fenced everywhere.
    assert_eq!(add(&mut client, old, &[0]).await, [PRODUCER_FENCED]);
    let v1 = codes(&client.call(&add_request(old, &[0]), 1).await);
    assert_eq!(v1, [INVALID_PRODUCER_EPOCH], "before KIP-588");
    assert_eq!(end(&mut client, old, true).await, PRODUCER_FENCED);
    assert_eq!(add_offsets(&mut client, old).await, PRODUCER_FENCED);
    let late = transactional(old.0, old.1, 1, &["b"]);
    assert_eq!(
        produce_as(&mut client, 0, late, 9).await.0,
        INVALID_PRODUCER_EPOCH
    );

    // The new one starts its sequence over.
    assert_eq!(add(&mut client, new, &[0]).await, [NONE]);
    let fresh = transactional(new.0, new.1, 0, &["c"]);
    assert_eq!(produce_as(&mut client, 0, fresh, 9).await, (NONE, 2));
}

#[tokio::test]
async fn init_producer_id_checks_the_id_and_the_timeout() {
    let cluster = MockCluster::builder()
        .brokers(1)
        .transaction_max_timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let mut client = RawClient::connect_to(&cluster, 1).await;
    let code = |r: kafka_protocol::messages::InitProducerIdResponse| r.error_code;
    assert_eq!(
        code(client.call(&init_request(ID, 60_001), 4).await),
        INVALID_TRANSACTION_TIMEOUT
    );
    assert_eq!(
        code(client.call(&init_request("", 1_000), 4).await),
        42,
        "INVALID_REQUEST"
    );
    let (pid, epoch) = producer(&mut client).await;
    // KIP-360: the producer's own bump, then a fenced epoch.
    let bump = init_request(ID, 1_000)
        .with_producer_id(pid.into())
        .with_producer_epoch(epoch);
    let bumped = client.call(&bump, 4).await;
    assert_eq!(
        (bumped.error_code, bumped.producer_epoch),
        (NONE, epoch + 1)
    );
    let stale = init_request(ID, 1_000)
        .with_producer_id(pid.into())
        .with_producer_epoch(7);
    assert_eq!(code(client.call(&stale, 4).await), PRODUCER_FENCED);
    assert_eq!(
        code(client.call(&stale, 3).await),
        INVALID_PRODUCER_EPOCH,
        "before KIP-588"
    );
    // Without a transactional id, InitProducerId stays idempotent.
    let idempotent = init_request(ID, 1_000).with_transactional_id(None);
    let response = client.call(&idempotent, 4).await;
    assert_eq!(
        (response.error_code, response.producer_id.0),
        (NONE, pid + 1)
    );
    assert!(cluster.transaction("other").is_none());
}

#[tokio::test]
async fn offsets_commit_with_their_transaction() {
    let (cluster, mut client) = single().await;
    let tx = producer(&mut client).await;
    let commit = |version_offset: i64, epoch: i16| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(ID)))
            .with_group_id(GroupId(s(GROUP)))
            .with_producer_id(tx.0.into())
            .with_producer_epoch(epoch)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(common::topic_name(TOPIC))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(version_offset)
                    .with_committed_metadata(Some(s("meta")))])])
    };
    let commit_code = |response: kafka_protocol::messages::TxnOffsetCommitResponse| {
        response.topics[0].partitions[0].error_code
    };
    // Not added to the transaction yet: refused, as each version knows how.
    assert_eq!(
        commit_code(client.call(&commit(10, tx.1), 3).await),
        INVALID_TXN_STATE
    );
    assert_eq!(
        commit_code(client.call(&commit(10, tx.1), 4).await),
        TRANSACTION_ABORTABLE
    );
    assert_eq!(add_offsets(&mut client, tx).await, NONE);
    assert_eq!(
        commit_code(client.call(&commit(10, tx.1 + 1), 3).await),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(commit_code(client.call(&commit(10, tx.1), 3).await), NONE);
    assert_eq!(cluster.committed(GROUP, TOPIC, 0), None);
    assert_eq!(cluster.pending_offset(GROUP, TOPIC, 0), Some(10));

    // OffsetFetch: unstable with require_stable, the last commit without.
    let v7 = |stable: bool| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(common::topic_name(TOPIC))
                .with_partition_indexes(vec![0])]))
            .with_require_stable(stable)
    };
    let v8 = OffsetFetchRequest::default()
        .with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(common::topic_name(TOPIC))
                .with_partition_indexes(vec![0])]))])
        .with_require_stable(true);
    let unstable = client.call(&v7(true), 7).await;
    let p = &unstable.topics[0].partitions[0];
    assert_eq!(
        (unstable.error_code, p.error_code, p.committed_offset),
        (NONE, UNSTABLE_OFFSET_COMMIT, -1)
    );
    let relaxed = client.call(&v7(false), 7).await;
    assert_eq!(relaxed.topics[0].partitions[0].committed_offset, -1);
    let grouped = client.call(&v8, 8).await;
    assert_eq!(grouped.groups[0].error_code, NONE);
    assert_eq!(
        grouped.groups[0].topics[0].partitions[0].error_code,
        UNSTABLE_OFFSET_COMMIT
    );

    assert_eq!(end(&mut client, tx, true).await, NONE);
    assert_eq!(cluster.committed(GROUP, TOPIC, 0), Some(10));
    assert_eq!(cluster.pending_offset(GROUP, TOPIC, 0), None);
    let stable = client.call(&v7(true), 7).await;
    let p = &stable.topics[0].partitions[0];
    assert_eq!((p.error_code, p.committed_offset), (NONE, 10));
    assert_eq!(p.metadata.as_deref(), Some("meta"));

    // An aborted transaction's offsets go.
    assert_eq!(add_offsets(&mut client, tx).await, NONE);
    assert_eq!(commit_code(client.call(&commit(20, tx.1), 4).await), NONE);
    assert_eq!(end(&mut client, tx, false).await, NONE);
    assert_eq!(cluster.committed(GROUP, TOPIC, 0), Some(10));
    assert_eq!(cluster.pending_offset(GROUP, TOPIC, 0), None);
}

#[tokio::test(start_paused = true)]
async fn a_transaction_past_its_timeout_is_aborted_and_fences_its_producer() {
    let (cluster, mut client) = single().await;
    let request = init_request(ID, 1_000);
    let response = client.call(&request, 4).await;
    let tx = (response.producer_id.0, response.producer_epoch);
    add(&mut client, tx, &[0]).await;
    let sent = transactional(tx.0, tx.1, 0, &["a"]);
    assert_eq!(produce_as(&mut client, 0, sent, 9).await, (NONE, 0));
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 0);

    tokio::time::sleep(Duration::from_millis(999)).await;
    assert!(cluster.aborted_transactions(TOPIC, 0).is_empty(), "not yet");
    tokio::time::sleep(Duration::from_millis(2)).await;
    // The coordinator's timer aborted it, with no request to prompt it.
    assert_eq!(cluster.aborted_transactions(TOPIC, 0), [(tx.0, 0, 1)]);
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 2);
    let view = cluster.transaction(ID).unwrap();
    assert_eq!(
        (view.state, view.producer_epoch),
        (TransactionState::CompleteAbort, tx.1 + 1)
    );

    assert_eq!(add(&mut client, tx, &[0]).await, [PRODUCER_FENCED]);
    assert_eq!(end(&mut client, tx, true).await, PRODUCER_FENCED);
    let late = transactional(tx.0, tx.1, 1, &["b"]);
    assert_eq!(
        produce_as(&mut client, 0, late, 9).await.0,
        INVALID_PRODUCER_EPOCH
    );
}

#[tokio::test]
async fn produce_checks_the_partition_is_in_the_transaction() {
    let (cluster, mut client) = single().await;
    let tx = producer(&mut client).await;
    let sent = || transactional(tx.0, tx.1, 0, &["a"]);
    assert_eq!(
        produce_as(&mut client, 0, sent(), 10).await.0,
        INVALID_TXN_STATE
    );
    assert_eq!(
        produce_as(&mut client, 0, sent(), 11).await.0,
        TRANSACTION_ABORTABLE
    );
    // Transactional batches need the request's transactional id.
    let anonymous = produce(TOPIC, Uuid::nil(), 0, sent(), 9);
    let response = client.call(&anonymous, 9).await;
    let code = response.responses[0].partition_responses[0].error_code;
    assert_eq!(code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    let stranger = transactional(tx.0 + 5, 0, 0, &["a"]);
    assert_eq!(
        produce_as(&mut client, 0, stranger, 9).await.0,
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(cluster.log_end_offset(TOPIC, 0), 0, "nothing written");

    // Inside the transaction, only transactional batches from the producer.
    add(&mut client, tx, &[0, 1]).await;
    assert_eq!(produce_as(&mut client, 0, sent(), 9).await, (NONE, 0));
    let plain = records::idempotent(tx.0, tx.1, 1, &["b"]);
    let request = produce(TOPIC, Uuid::nil(), 0, plain, 9);
    let response = client.call(&request, 9).await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        INVALID_TXN_STATE
    );

    // While the markers are on their way, a partition not yet written
    // cannot be verified: NOT_ENOUGH_REPLICAS, which producers retry.
    cluster.set_transaction_marker_delay(Duration::from_millis(200));
    assert_eq!(end(&mut client, tx, true).await, NONE);
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::PrepareCommit
    );
    assert_eq!(end(&mut client, tx, true).await, CONCURRENT_TRANSACTIONS);
    assert_eq!(add(&mut client, tx, &[0]).await, [CONCURRENT_TRANSACTIONS]);
    let other = transactional(tx.0, tx.1, 0, &["c"]);
    assert_eq!(
        produce_as(&mut client, 1, other, 9).await.0,
        NOT_ENOUGH_REPLICAS
    );
    assert_eq!(cluster.last_stable_offset(TOPIC, 0), 0, "no marker yet");
    let written = cluster
        .wait_until(Duration::from_secs(10), |c| {
            c.last_stable_offset(TOPIC, 0) == 2
        })
        .await;
    assert!(written, "the markers come after the delay");
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::CompleteCommit
    );
    assert_eq!(
        cluster.log_end_offset(TOPIC, 1),
        1,
        "partition 1 got its marker"
    );
}

#[tokio::test]
async fn unknown_partitions_fail_the_whole_add() {
    let (cluster, mut client) = single().await;
    let tx = producer(&mut client).await;
    assert_eq!(
        add(&mut client, tx, &[0, 7]).await,
        [OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::Empty
    );
    let unknown = (tx.0 + 1, tx.1);
    assert_eq!(
        add(&mut client, unknown, &[0]).await,
        [INVALID_PRODUCER_ID_MAPPING]
    );
}

#[tokio::test]
async fn the_transaction_coordinator_is_found_and_moves() {
    let cluster = MockCluster::builder()
        .brokers(3)
        .topic(TOPIC, 1)
        .start()
        .await
        .unwrap();
    let home = cluster.transaction_coordinator(ID);
    let elsewhere = if home == 3 { 1 } else { home + 1 };
    let mut asker = RawClient::connect_to(&cluster, elsewhere).await;
    let find = FindCoordinatorRequest::default()
        .with_key(s(ID))
        .with_key_type(1);
    assert_eq!(asker.call(&find, 3).await.node_id.0, home);
    let batched = FindCoordinatorRequest::default()
        .with_coordinator_keys(vec![s(ID)])
        .with_key_type(1);
    assert_eq!(
        asker.call(&batched, 4).await.coordinators[0].node_id.0,
        home
    );
    assert_eq!(init(&mut asker).await.0, NOT_COORDINATOR);

    let mut at_home = RawClient::connect_to(&cluster, home).await;
    let tx = producer(&mut at_home).await;
    assert_eq!(add(&mut at_home, tx, &[0]).await, [NONE]);
    cluster.move_transaction_coordinator(ID, elsewhere);
    assert_eq!(cluster.transaction_coordinator(ID), elsewhere);
    assert_eq!(asker.call(&find, 3).await.node_id.0, elsewhere);
    assert_eq!(end(&mut at_home, tx, true).await, NOT_COORDINATOR);
    assert_eq!(
        end(&mut asker, tx, true).await,
        NONE,
        "the transaction moved too"
    );
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::CompleteCommit
    );
    // The marker carries the new coordinator epoch.
    let marker = &cluster.batches(TOPIC, 0)[0];
    assert_eq!(
        marker[marker.len() - 5..marker.len() - 1],
        1i32.to_be_bytes()
    );

    cluster.set_transaction_coordinator_loading(ID, true);
    assert_eq!(init(&mut asker).await.0, 14, "COORDINATOR_LOAD_IN_PROGRESS");
    cluster.set_transaction_coordinator_loading(ID, false);
    assert_eq!(init(&mut asker).await.0, NONE);
}

#[tokio::test]
async fn injected_errors_reach_the_transaction_apis() {
    let (cluster, mut client) = single().await;
    let tx = producer(&mut client).await;
    let busy = cluster.broker(1).intercept(
        Intercept::api(ApiKey::AddPartitionsToTxn).once(),
        Action::error(ResponseError::ConcurrentTransactions),
    );
    assert_eq!(
        add(&mut client, tx, &[0, 1]).await,
        [CONCURRENT_TRANSACTIONS; 2]
    );
    assert_eq!(busy.hits(), 1);
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::Empty,
        "not acted on"
    );
    assert_eq!(add(&mut client, tx, &[0, 1]).await, [NONE, NONE]);

    cluster.broker(1).intercept(
        Intercept::api(ApiKey::EndTxn).once(),
        Action::error(ResponseError::ConcurrentTransactions),
    );
    assert_eq!(end(&mut client, tx, true).await, CONCURRENT_TRANSACTIONS);
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::Ongoing
    );
    assert_eq!(end(&mut client, tx, true).await, NONE);
    assert_eq!(
        cluster.transaction(ID).unwrap().state,
        TransactionState::CompleteCommit
    );

    for key in [ApiKey::AddOffsetsToTxn, ApiKey::TxnOffsetCommit] {
        cluster.broker(1).intercept(
            Intercept::api(key).once(),
            Action::error(ResponseError::CoordinatorLoadInProgress),
        );
    }
    assert_eq!(add_offsets(&mut client, tx).await, 14);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(ID)))
        .with_group_id(GroupId(s(GROUP)))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(common::topic_name(TOPIC))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()])]);
    let response = client.call(&commit, 3).await;
    assert_eq!(response.topics[0].partitions[0].error_code, 14);
}
