//! High watermarks for lag, read from Fetch responses rather than ListOffsets.
//!
//! Every Fetch response carries each partition's high watermark. ListOffsets LATEST
//! should give the same number, but Tansu answers it with the base offset of the last
//! batch plus one, which is short by the rest of that batch (see
//! `../shared/notes/tansu.md`); the Fetch field is right on every broker we know.
//!
//! One Fetch per leader covers all the partitions it leads: `min_bytes` 0 so the
//! broker answers at once, byte limits of 1 so the answer carries at most one batch
//! (KIP-74 still sends the first partition's first batch whole), read_uncommitted so
//! the number is the high watermark and not the last stable offset. `max_wait_ms` is
//! [`MAX_WAIT_MS`], not 0: Kafka answers at once anyway (min_bytes 0), but Tansu 0.6
//! answers a Fetch with `max_wait_ms` 0 with no partitions at all (and with a wait,
//! waits it out when there is nothing to read). Requests are sessionless (KIP-227
//! epoch -1) and built by the consumer's [`FetchSession`], which also maps v13+ topic
//! ids back to names.
//!
//! Per partition:
//! - no error: its high watermark;
//! - OFFSET_OUT_OF_RANGE (a commit below the log start, or past the end): Apache
//!   Kafka answers it with high watermark -1 (`ReplicaManager` builds the error's read
//!   result with `UnknownOffset`), so we look up the log start with ListOffsets
//!   EARLIEST and fetch there. A broker that does put a high watermark next to the
//!   error is taken at its word.
//! - stale leadership (NOT_LEADER_OR_FOLLOWER, leader epochs, UNKNOWN_TOPIC_OR_PARTITION)
//!   or a lost connection: metadata is refreshed and the partition asked again at
//!   its (new) leader; other retriable codes: asked again; other codes: the error.
//! - left out of the response: asked again at once.
//!
//! A round that settles no partition counts as a failure; after [`ATTEMPTS`] of them
//! the last error is returned. Each other round settles at least one partition, so
//! the rounds are bounded either way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};

use crate::backoff::jitter_unit;
use crate::client::Client;
use crate::consumer::fetch_session::{FetchSession, SessionOutcome, WantedPartition};
use crate::consumer::list_offsets::{list_offset, EARLIEST};
use crate::error::{Error, KafkaCode, Result};
use crate::net::Broker;
use crate::TopicPartition;

/// Rounds without progress before the last error is final.
const ATTEMPTS: u32 = 5;

/// `isolation_level` read_uncommitted: the response's high watermark is the real one.
const READ_UNCOMMITTED: i8 = 0;

/// `max_wait_ms` of the Fetch; see the module docs for why not 0.
const MAX_WAIT_MS: i32 = 100;

/// A partition still waiting for its high watermark.
#[derive(Debug, Clone)]
struct Pending {
    tp: TopicPartition,
    /// Where to fetch: the committed offset, or the log start.
    offset: i64,
    /// The last answer was OFFSET_OUT_OF_RANGE without a high watermark: look up the
    /// log start before the next round.
    out_of_range: bool,
}

/// What a Fetch response says about one partition.
#[derive(Debug)]
enum Answer {
    HighWatermark(i64),
    /// OFFSET_OUT_OF_RANGE without a high watermark: fetch again at the log start.
    OutOfRange,
    /// Ask again (after a metadata refresh if the error says so).
    Retry(Error),
    Fatal(Error),
}

fn classify(data: &PartitionData) -> Answer {
    let hwm = data.high_watermark;
    match KafkaCode::from_code(data.error_code) {
        None if hwm >= 0 => Answer::HighWatermark(hwm),
        None => Answer::Retry(Error::protocol(format!(
            "Fetch answered without error but with high watermark {hwm}"
        ))),
        Some(KafkaCode::OFFSET_OUT_OF_RANGE) if hwm >= 0 => Answer::HighWatermark(hwm),
        Some(KafkaCode::OFFSET_OUT_OF_RANGE) => Answer::OutOfRange,
        Some(code) => {
            let err = Error::kafka(code);
            if err.is_retriable() {
                Answer::Retry(err)
            } else {
                Answer::Fatal(err)
            }
        }
    }
}

/// The high watermark of each partition of `wanted`, each fetched from its offset
/// (a committed offset, or 0 for none; see the module docs for offsets out of
/// range). `None` for partitions that metadata says do not exist (a deleted topic the
/// group still has commits for).
pub(crate) async fn high_watermarks(
    client: &Client,
    wanted: &[(TopicPartition, i64)],
) -> Result<HashMap<TopicPartition, Option<i64>>> {
    let mut out = HashMap::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(out);
    }
    let topics: Vec<&str> = wanted
        .iter()
        .map(|(tp, _)| &*tp.topic)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let md = client.refresh_metadata(&topics).await?;
    let mut pending = Vec::with_capacity(wanted.len());
    for (tp, offset) in wanted {
        match md.partition(&tp.topic, tp.partition) {
            Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                out.insert(tp.clone(), None);
            }
            _ => pending.push(Pending {
                tp: tp.clone(),
                offset: (*offset).max(0),
                out_of_range: false,
            }),
        }
    }

    let backoff = client.retry_backoff();
    let mut failures = 0;
    while !pending.is_empty() {
        let mut last_error = None;
        let mut stale = false;
        let mut by_leader: BTreeMap<i32, (Broker, Vec<usize>)> = BTreeMap::new();
        for (i, p) in pending.iter().enumerate() {
            match client.cached_leader(&p.tp.topic, p.tp.partition) {
                Ok(leader) => {
                    let id = leader.id().unwrap_or(-1);
                    by_leader
                        .entry(id)
                        .or_insert((leader, Vec::new()))
                        .1
                        .push(i);
                }
                Err(err) => {
                    stale = true;
                    last_error = Some(err);
                }
            }
        }
        let rounds = futures::future::join_all(
            by_leader
                .into_values()
                .map(|(broker, indices)| fetch_at(client, broker, &pending, indices)),
        )
        .await;

        let mut settled = vec![false; pending.len()];
        for round in rounds {
            let answers = match round {
                Ok(answers) => answers,
                Err(err) if err.is_retriable() => {
                    stale |= err.is_stale_metadata();
                    last_error = Some(err);
                    continue;
                }
                Err(err) => return Err(err),
            };
            for (i, answer) in answers {
                let p = &mut pending[i];
                let tp = p.tp.clone();
                let here = |e: Error| e.with_topic(&*tp.topic).with_partition(tp.partition);
                match answer {
                    Answer::HighWatermark(hwm) => {
                        out.insert(p.tp.clone(), Some(hwm));
                        settled[i] = true;
                    }
                    Answer::OutOfRange => {
                        p.out_of_range = true;
                        last_error = Some(here(
                            Error::kafka(KafkaCode::OFFSET_OUT_OF_RANGE).with_offset(p.offset),
                        ));
                    }
                    Answer::Retry(err) => {
                        stale |= err.is_stale_metadata();
                        last_error = Some(here(err));
                    }
                    Answer::Fatal(err) => return Err(here(err)),
                }
            }
        }
        let progress = settled.iter().any(|&s| s);
        let mut index = 0;
        pending.retain(|_| {
            index += 1;
            !settled[index - 1]
        });
        if pending.is_empty() {
            break;
        }
        if !progress {
            failures += 1;
            let err = last_error.unwrap_or_else(|| {
                let p = &pending[0];
                Error::protocol("Fetch responses never mentioned the partition")
                    .with_topic(&*p.tp.topic)
                    .with_partition(p.tp.partition)
            });
            if failures >= ATTEMPTS {
                return Err(err);
            }
            tracing::debug!(error = %err, failures, "high watermark fetch failed, retrying");
            tokio::time::sleep(backoff.delay(failures, jitter_unit())).await;
        }
        if stale {
            // A topic deleted meanwhile is reported as gone, not retried until the
            // attempts run out.
            let md = client.refresh_metadata(&topics).await?;
            pending.retain(|p| match md.partition(&p.tp.topic, p.tp.partition) {
                Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                    out.insert(p.tp.clone(), None);
                    false
                }
                _ => true,
            });
        }
        for p in pending.iter_mut().filter(|p| p.out_of_range) {
            let start = list_offset(client, &p.tp, EARLIEST, READ_UNCOMMITTED, backoff).await?;
            tracing::debug!(partition = %p.tp, from = p.offset, to = ?start, "offset out of range, fetching at the log start");
            p.offset = start.unwrap_or(0);
            p.out_of_range = false;
        }
    }
    Ok(out)
}

/// One Fetch at `broker` for `pending[indices]`; the answers by index into `pending`.
/// Partitions the response leaves out have no answer.
async fn fetch_at(
    client: &Client,
    broker: Broker,
    pending: &[Pending],
    indices: Vec<usize>,
) -> Result<Vec<(usize, Answer)>> {
    let md = client.metadata();
    let wanted: Vec<WantedPartition> = indices
        .iter()
        .map(|&i| {
            let tp = &pending[i].tp;
            WantedPartition {
                tp: tp.clone(),
                topic_id: md
                    .topic(&tp.topic)
                    .and_then(|t| t.topic_id)
                    .unwrap_or_default(),
                fetch_offset: pending[i].offset,
                current_leader_epoch: md
                    .partition(&tp.topic, tp.partition)
                    .map_or(-1, |p| p.leader_epoch),
                partition_max_bytes: 1,
            }
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(0)
        .with_max_bytes(1)
        .with_isolation_level(READ_UNCOMMITTED);
    let mut session = FetchSession::new(false);
    let timeout = client.inner_request_timeout() + Duration::from_millis(MAX_WAIT_MS as u64);
    let (_, response) = broker
        .call_versioned_with_timeout(
            |version| {
                let mut request = request;
                session.build(&mut request, &wanted, version);
                request
            },
            timeout,
        )
        .await?;
    let by_partition = partitions_by_name(&response, &mut session).map_err(|e| {
        e.with_broker(&broker)
            .with_api(kafka_protocol::messages::ApiKey::Fetch)
    })?;
    Ok(indices
        .into_iter()
        .filter_map(|i| {
            let tp = &pending[i].tp;
            by_partition
                .get(&(tp.topic.clone(), tp.partition))
                .map(|data| (i, classify(data)))
        })
        .collect())
}

/// The response's partitions by topic name and index, or its top-level error.
fn partitions_by_name<'a>(
    response: &'a FetchResponse,
    session: &mut FetchSession,
) -> Result<HashMap<(Arc<str>, i32), &'a PartitionData>> {
    match session.handle_response(response) {
        SessionOutcome::Data => {}
        SessionOutcome::Retry { error_code } | SessionOutcome::Error { error_code } => {
            return Err(Error::check_code(error_code)
                .err()
                .unwrap_or_else(|| Error::protocol("Fetch answered for another session")));
        }
    }
    let mut out = HashMap::new();
    for topic in &response.responses {
        let name: Arc<str> = if topic.topic.0.is_empty() {
            // v13+ names topics by id only.
            match session.topic_name(topic.topic_id) {
                Some(name) => name.clone(),
                None => continue,
            }
        } else {
            Arc::from(topic.topic.0.as_str())
        };
        for p in &topic.partitions {
            out.entry((name.clone(), p.partition_index)).or_insert(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid;

    fn data(error_code: i16, high_watermark: i64) -> PartitionData {
        PartitionData::default()
            .with_error_code(error_code)
            .with_high_watermark(high_watermark)
    }

    #[test]
    fn answers_follow_error_and_high_watermark() {
        assert!(matches!(classify(&data(0, 42)), Answer::HighWatermark(42)));
        assert!(matches!(classify(&data(0, 0)), Answer::HighWatermark(0)));
        assert!(matches!(classify(&data(0, -1)), Answer::Retry(_)));
        // Kafka: out of range comes with -1; a broker giving the number is believed.
        assert!(matches!(classify(&data(1, -1)), Answer::OutOfRange));
        assert!(matches!(classify(&data(1, 17)), Answer::HighWatermark(17)));
        match classify(&data(6, -1)) {
            Answer::Retry(e) => assert!(e.is_stale_metadata()),
            other => panic!("NOT_LEADER_OR_FOLLOWER is retried: {other:?}"),
        }
        match classify(&data(29, -1)) {
            Answer::Fatal(e) => assert_eq!(e.code().map(KafkaCode::code), Some(29)),
            other => panic!("TOPIC_AUTHORIZATION_FAILED is final: {other:?}"),
        }
    }

    fn wanted(topic: &str, id: Uuid, partition: i32) -> WantedPartition {
        WantedPartition {
            tp: TopicPartition::new(topic, partition),
            topic_id: id,
            fetch_offset: 0,
            current_leader_epoch: -1,
            partition_max_bytes: 1,
        }
    }

    #[test]
    fn v13_responses_are_mapped_back_to_names() {
        let id = Uuid::from_u128(7);
        let mut session = FetchSession::new(false);
        let mut request = FetchRequest::default();
        session.build(&mut request, &[wanted("t", id, 0), wanted("t", id, 1)], 13);
        assert_eq!(request.session_epoch, -1, "sessionless");
        let response = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic_id(id)
                .with_partitions(vec![data(0, 5).with_partition_index(1)]),
            // An id we never asked about is skipped.
            FetchableTopicResponse::default()
                .with_topic_id(Uuid::from_u128(8))
                .with_partitions(vec![data(0, 9).with_partition_index(0)]),
        ]);
        let map = partitions_by_name(&response, &mut session).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map[&(Arc::from("t"), 1)].high_watermark, 5);
    }

    #[test]
    fn names_are_used_below_v13_and_top_level_errors_fail() {
        let mut session = FetchSession::new(false);
        let mut request = FetchRequest::default();
        session.build(&mut request, &[wanted("t", Uuid::nil(), 0)], 12);
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![data(0, 3)])]);
        let map = partitions_by_name(&response, &mut session).unwrap();
        assert_eq!(map[&(Arc::from("t"), 0)].high_watermark, 3);

        session.build(&mut request, &[wanted("t", Uuid::nil(), 0)], 12);
        let failed = FetchResponse::default().with_error_code(7);
        let err = partitions_by_name(&failed, &mut session).unwrap_err();
        assert_eq!(err.code(), Some(KafkaCode::REQUEST_TIMED_OUT));
    }
}
