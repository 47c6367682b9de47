//! Fetch and ListOffsets read the logs the way Kafka does: offsets, epochs,
//! byte limits, long polling and incremental fetch sessions.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::records::{self, batch, batch_at};
use common::requests::{fetch, fetch_topics, list_offsets, produce, Part};
use common::{metadata_for, RawClient};
use josefine_mock::{Action, ApiKey, Intercept, MockBroker, MockCluster};
use kafka_protocol::messages::fetch_request::ForgottenTopic;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use kafka_protocol::protocol::Message;
use uuid::Uuid;

async fn broker_with(topic: &str, partitions: i32) -> MockBroker {
    MockBroker::builder()
        .topic(topic, partitions)
        .start()
        .await
        .unwrap()
}

/// Every partition of every topic, in response order.
fn partitions(response: &FetchResponse) -> Vec<&PartitionData> {
    response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .collect()
}

fn batches_in(p: &PartitionData) -> (Vec<Bytes>, usize) {
    records::split(p.records.as_deref().unwrap_or_default())
}

fn part(topic: &str, partition: i32, offset: i64, max_bytes: i32) -> Part<'_> {
    (topic, Uuid::nil(), partition, offset, max_bytes)
}

#[tokio::test]
async fn fetch_starts_at_the_batch_holding_the_offset() {
    let broker = broker_with("log", 1).await;
    for values in [&["a", "b", "c"][..], &["d", "e"], &["f"]] {
        broker.append_batch("log", 0, batch(values));
    }
    let mut client = RawClient::connect(&broker).await;
    let starts = |offset| fetch(&[part("log", 0, offset, 1 << 20)], 11);
    for (offset, first_base, count) in [(0, 0, 3), (2, 0, 3), (3, 3, 2), (4, 3, 2), (5, 5, 1)] {
        let response = client.call(&starts(offset), 11).await;
        let (batches, _) = batches_in(partitions(&response)[0]);
        assert_eq!(batches.len(), count, "from {offset}");
        assert_eq!(
            records::base_offset(&batches[0]),
            first_base,
            "from {offset}"
        );
    }
    let at_end = client.call(&starts(6), 11).await;
    let p = partitions(&at_end)[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 6));
    assert!(
        p.records.as_ref().unwrap().is_empty(),
        "the log end is no error"
    );
}

#[tokio::test]
async fn offsets_outside_the_log_are_out_of_range() {
    let broker = broker_with("log", 1).await;
    for _ in 0..3 {
        broker.append_batch("log", 0, batch(&["x", "y"]));
    }
    let mut client = RawClient::connect(&broker).await;
    let code_at = |offset| fetch(&[part("log", 0, offset, 1 << 20)], 12);
    let response = client.call(&code_at(7), 12).await;
    let p = partitions(&response)[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.log_start_offset),
        (1, -1, -1)
    );

    broker.delete_records_before("log", 0, 3);
    assert_eq!(broker.log_start_offset("log", 0), 3);
    let response = client.call(&code_at(1), 12).await;
    assert_eq!(partitions(&response)[0].error_code, 1, "below the start");
    let response = client.call(&code_at(3), 12).await;
    let p = partitions(&response)[0];
    assert_eq!((p.error_code, p.log_start_offset), (0, 3));
    let (batches, _) = batches_in(p);
    assert_eq!(
        records::base_offset(&batches[0]),
        2,
        "the straddling batch is served whole"
    );

    // ListOffsets follows the start; the consumer's reset lands there.
    let earliest = client.call(&list_offsets("log", 0, -2), 5).await;
    assert_eq!(earliest.topics[0].partitions[0].offset, 3);
}

#[tokio::test]
async fn leader_epochs_are_checked_before_leadership() {
    let cluster = MockCluster::builder()
        .brokers(2)
        .topic("epochs", 1)
        .start()
        .await
        .unwrap();
    cluster.append_batch("epochs", 0, batch(&["x"]));
    let mut client = RawClient::connect_to(&cluster, 1).await;
    let with_epoch = |epoch: i32| {
        let mut request = fetch(&[part("epochs", 0, 0, 1 << 20)], 12);
        request.topics[0].partitions[0].current_leader_epoch = epoch;
        request
    };
    let code = |response: &FetchResponse| partitions(response)[0].error_code;
    assert_eq!(code(&client.call(&with_epoch(0), 12).await), 0);
    assert_eq!(
        code(&client.call(&with_epoch(-1), 12).await),
        0,
        "no opinion"
    );
    assert_eq!(
        code(&client.call(&with_epoch(1), 12).await),
        75,
        "UNKNOWN_LEADER_EPOCH"
    );

    cluster.move_leader("epochs", 0, 2);
    let fenced = client.call(&with_epoch(0), 12).await;
    let p = partitions(&fenced)[0];
    assert_eq!(p.error_code, 74, "FENCED_LEADER_EPOCH");
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (2, 1)
    );
    assert_eq!(
        code(&client.call(&with_epoch(1), 12).await),
        6,
        "right epoch, wrong broker"
    );

    let list_with_epoch = |epoch: i32| {
        let mut request = list_offsets("epochs", 0, -1);
        request.topics[0].partitions[0].current_leader_epoch = epoch;
        request
    };
    let mut leader = RawClient::connect_to(&cluster, 2).await;
    let code = |r: &ListOffsetsResponse| r.topics[0].partitions[0].error_code;
    assert_eq!(code(&leader.call(&list_with_epoch(0), 4).await), 74);
    assert_eq!(code(&leader.call(&list_with_epoch(2), 4).await), 75);
    let ok = leader.call(&list_with_epoch(1), 4).await;
    assert_eq!((code(&ok), ok.topics[0].partitions[0].leader_epoch), (0, 1));
}

#[tokio::test]
async fn byte_limits_hold_but_the_first_batch_always_comes() {
    let broker = broker_with("big", 2).await;
    for p in 0..2 {
        for _ in 0..3 {
            broker.append_batch("big", p, batch(&["0123456789"; 4]));
        }
    }
    let size = broker.batches("big", 0)[0].len() as i32;
    let mut client = RawClient::connect(&broker).await;
    let counts = |response: &FetchResponse| -> Vec<(usize, usize)> {
        partitions(response)
            .iter()
            .map(|p| batches_in(p))
            .map(|(b, rest)| (b.len(), rest))
            .collect()
    };

    let tiny = fetch(&[part("big", 0, 0, 1)], 11);
    assert_eq!(
        counts(&client.call(&tiny, 11).await),
        [(1, 0)],
        "KIP-74: one anyway"
    );
    let two = fetch(&[part("big", 0, 0, 2 * size + 1)], 11);
    assert_eq!(counts(&client.call(&two, 11).await), [(2, 0)]);

    // The response budget spans partitions: once it is spent, the next
    // partition gets nothing, not even its first batch.
    let both = fetch(
        &[part("big", 0, 0, i32::MAX), part("big", 1, 0, i32::MAX)],
        11,
    );
    let capped = both.clone().with_max_bytes(size + 1);
    assert_eq!(counts(&client.call(&capped, 11).await), [(1, 0), (0, 0)]);
    let starved = both.with_max_bytes(1);
    assert_eq!(counts(&client.call(&starved, 11).await), [(1, 0), (0, 0)]);
    // The exemption goes to the first partition that has data.
    let first_empty = fetch(&[part("big", 0, 12, i32::MAX), part("big", 1, 0, 1)], 11);
    assert_eq!(
        counts(&client.call(&first_empty, 11).await),
        [(0, 0), (1, 0)]
    );

    // Kafka-style byte-range reads end with a partial batch.
    broker.set_truncate_last_batch(true);
    let partial = fetch(&[part("big", 0, 0, size + 10)], 11);
    let response = client.call(&partial, 11).await;
    assert_eq!(counts(&response), [(1, 10)]);
    assert_eq!(
        partitions(&response)[0].records.as_ref().unwrap().len(),
        size as usize + 10
    );
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_data_arrives() {
    let broker = broker_with("slow", 1).await;
    let mut client = RawClient::connect(&broker).await;
    let request = fetch(&[part("slow", 0, 0, 1 << 20)], 12).with_max_wait_ms(20_000);
    let started = Instant::now();
    let (response, ()) = tokio::join!(client.call(&request, 12), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        broker.append_batch("slow", 0, batch(&["finally"]));
    });
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "woke after {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(100), "waited: {elapsed:?}");
    let (batches, _) = batches_in(partitions(&response)[0]);
    assert_eq!(batches.len(), 1);
}

#[tokio::test]
async fn a_long_poll_gives_up_after_max_wait_and_blocks_no_one_else() {
    let cluster = MockCluster::builder()
        .brokers(2)
        .topic("quiet", 2)
        .start()
        .await
        .unwrap();
    let mut waiting = RawClient::connect_to(&cluster, 1).await;
    let mut other = RawClient::connect_to(&cluster, 1).await;
    let mut producer = RawClient::connect_to(&cluster, 2).await;

    let request = fetch(&[part("quiet", 0, 0, 1 << 20)], 12).with_max_wait_ms(300);
    let started = Instant::now();
    let correlation_id = waiting.send(&request, 12).await;
    // Another connection to the same broker is served meanwhile.
    let metadata = other.call(&metadata_for(&["quiet"]), 12).await;
    assert_eq!(metadata.topics[0].error_code, 0);
    assert!(started.elapsed() < Duration::from_millis(300));
    let response = waiting.recv::<FetchRequest>(12, correlation_id).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let p = partitions(&response)[0];
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().unwrap().is_empty());

    // A produce on another broker (to the partition it leads) does not wake
    // a fetch of this one's partition... but one to this partition does.
    let request = fetch(&[part("quiet", 0, 0, 1 << 20)], 12).with_max_wait_ms(20_000);
    let started = Instant::now();
    let correlation_id = waiting.send(&request, 12).await;
    let elsewhere = producer
        .call(&produce("quiet", Uuid::nil(), 1, batch(&["p1"]), 9), 9)
        .await;
    assert_eq!(elsewhere.responses[0].partition_responses[0].error_code, 0);
    let mut leader = RawClient::connect_to(&cluster, 1).await;
    leader
        .call(&produce("quiet", Uuid::nil(), 0, batch(&["p0"]), 9), 9)
        .await;
    let response = waiting.recv::<FetchRequest>(12, correlation_id).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(batches_in(partitions(&response)[0]).0.len(), 1);
}

#[tokio::test]
async fn incremental_fetch_sessions_send_only_what_changed() {
    let broker = broker_with("s", 2).await;
    broker.append_batch("s", 0, batch(&["a"]));
    let mut client = RawClient::connect(&broker).await;
    let both = [part("s", 0, 0, 1 << 20), part("s", 1, 0, 1 << 20)];
    let session = |id: i32, epoch: i32, parts: &[Part<'_>]| {
        fetch(parts, 12)
            .with_session_id(id)
            .with_session_epoch(epoch)
    };
    let listed = |r: &FetchResponse| -> Vec<(i32, usize)> {
        partitions(r)
            .iter()
            .map(|p| (p.partition_index, batches_in(p).0.len()))
            .collect()
    };

    let full = client.call(&session(0, 0, &both), 12).await;
    let id = full.session_id;
    assert_ne!(id, 0, "a new session");
    assert_eq!(listed(&full), [(0, 1), (1, 0)]);

    // Partition 0 moves on; nothing new anywhere, so nothing is listed.
    let quiet = client
        .call(&session(id, 1, &[part("s", 0, 1, 1 << 20)]), 12)
        .await;
    assert_eq!((quiet.error_code, quiet.session_id), (0, id));
    assert!(listed(&quiet).is_empty(), "{:?}", listed(&quiet));

    broker.append_batch("s", 1, batch(&["b"]));
    let news = client.call(&session(id, 2, &[]), 12).await;
    assert_eq!(listed(&news), [(1, 1)], "only the partition with news");

    let stale = client.call(&session(id, 2, &[]), 12).await;
    assert_eq!(stale.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let unknown = client.call(&session(id + 1000, 1, &[]), 12).await;
    assert_eq!(unknown.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    let switched = client
        .call(&session(id, 3, &[]).with_topics(vec![]), 13)
        .await;
    assert_eq!(switched.error_code, 106, "names, then ids");

    // Forgetting partition 1: its news no longer comes.
    let forget = session(id, 3, &[]).with_forgotten_topics_data(vec![ForgottenTopic::default()
        .with_topic(common::topic_name("s"))
        .with_partitions(vec![1])]);
    assert!(listed(&client.call(&forget, 12).await).is_empty());
    broker.append_batch("s", 1, batch(&["c"]));
    broker.append_batch("s", 0, batch(&["d"]));
    let after = client.call(&session(id, 4, &[]), 12).await;
    assert_eq!(listed(&after), [(0, 1)]);

    // A final epoch closes the session with a full response.
    let closing = client.call(&session(id, -1, &both), 12).await;
    assert_eq!(closing.session_id, 0);
    assert_eq!(listed(&closing).len(), 2);
    let gone = client.call(&session(id, 5, &[]), 12).await;
    assert_eq!(gone.error_code, 70);
}

#[tokio::test]
async fn stored_raw_bytes_are_served_as_they_are() {
    let broker = broker_with("raw", 1).await;
    broker.append_batch("raw", 0, batch(&["fine"]));
    let mut corrupt = batch(&["bad", "crc"]).to_vec();
    *corrupt.last_mut().unwrap() ^= 0xff;
    let corrupt = Bytes::from(corrupt);
    assert_eq!(broker.append_raw("raw", 0, corrupt.clone()), 1);
    assert_eq!(broker.log_end_offset("raw", 0), 3, "spans its two records");
    let mut client = RawClient::connect(&broker).await;
    let response = client
        .call(&fetch(&[part("raw", 0, 1, 1 << 20)], 12), 12)
        .await;
    assert_eq!(
        partitions(&response)[0].records.as_ref().unwrap(),
        &corrupt,
        "untouched, base offset and all"
    );
}

#[tokio::test]
async fn list_offsets_finds_earliest_latest_and_timestamps_at_every_version() {
    let broker = broker_with("times", 1).await;
    broker.append_batch("times", 0, batch_at(100, &["a", "b"])); // 0..2, max 101
    broker.append_batch("times", 0, batch_at(500, &["c"])); // 2, max 500
    broker.append_batch("times", 0, batch_at(200, &["d", "e", "f"])); // 3..6, max 202
    let mut client = RawClient::connect(&broker).await;
    for version in ListOffsetsRequest::VERSIONS.min..=ListOffsetsRequest::VERSIONS.max {
        let mut answers = Vec::new();
        for timestamp in [-2, -1, 0, 101, 102, 201, 501] {
            let response = client
                .call(&list_offsets("times", 0, timestamp), version)
                .await;
            let p = &response.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "v{version} at {timestamp}");
            answers.push((p.offset, p.timestamp));
        }
        assert_eq!(
            answers,
            [
                (0, -1),
                (6, -1),
                (0, 101),
                (0, 101),
                (2, 500),
                (2, 500),
                (-1, -1)
            ],
            "v{version}"
        );
        if version >= 7 {
            let max = client.call(&list_offsets("times", 0, -3), version).await;
            let p = &max.topics[0].partitions[0];
            assert_eq!(
                (p.offset, p.timestamp),
                (2, 500),
                "v{version} max timestamp"
            );
        }
    }
    let unknown = client.call(&list_offsets("nope", 0, -1), 5).await;
    assert_eq!(unknown.topics[0].partitions[0].error_code, 3);
}

#[tokio::test]
async fn fetch_by_topic_id_and_unknown_ids() {
    let broker = broker_with("by-id", 1).await;
    broker.append_batch("by-id", 0, batch(&["x"]));
    let id = broker.topic_id("by-id").unwrap();
    let mut client = RawClient::connect(&broker).await;
    for version in 13..=FetchRequest::VERSIONS.max {
        let request = fetch(
            &[
                ("", id, 0, 0, 1 << 20),
                ("", Uuid::from_u128(5), 0, 0, 1024),
            ],
            version,
        );
        let response = client.call(&request, version).await;
        assert_eq!(response.responses[0].topic_id, id);
        let ps = partitions(&response);
        assert_eq!(
            (ps[0].error_code, batches_in(ps[0]).0.len()),
            (0, 1),
            "v{version}"
        );
        assert_eq!(ps[1].error_code, 100, "v{version}: UNKNOWN_TOPIC_ID");
    }
}

#[tokio::test]
async fn error_action_on_fetch_sets_partitions_or_the_session() {
    let broker = broker_with("faulty", 2).await;
    broker.intercept(Intercept::api(ApiKey::Fetch).once(), Action::Error(6));
    broker.intercept(Intercept::api(ApiKey::Fetch).once(), Action::Error(70));
    broker.intercept(Intercept::api(ApiKey::ListOffsets).once(), Action::Error(6));
    let mut client = RawClient::connect(&broker).await;
    let request = fetch(
        &[part("faulty", 0, 0, 1024), part("faulty", 1, 0, 1024)],
        12,
    );
    let response = client.call(&request, 12).await;
    let codes: Vec<i16> = partitions(&response).iter().map(|p| p.error_code).collect();
    assert_eq!((response.error_code, codes), (0, vec![6, 6]));
    let response = client.call(&request, 12).await;
    assert_eq!(response.error_code, 70, "session errors go top-level");
    assert!(response.responses.is_empty());
    let offsets = client.call(&list_offsets("faulty", 1, -1), 6).await;
    assert_eq!(offsets.topics[0].partitions[0].error_code, 6);
    let normal = client.call(&request, 12).await;
    assert_eq!(normal.error_code, 0);

    // A long poll behind a Delay still answers.
    broker.intercept(
        Intercept::api(ApiKey::Fetch).once(),
        Action::Delay(Duration::from_millis(10)),
    );
    let delayed = client
        .call(
            &fetch_topics(&[part("faulty", 0, 0, 1024)], 12).with_max_wait_ms(10),
            12,
        )
        .await;
    assert_eq!(partitions(&delayed)[0].error_code, 0);
}
