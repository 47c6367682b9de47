//! Turning start positions (earliest, latest, a timestamp) into offsets with
//! ListOffsets at the partitions' leaders (KIP-79 for timestamps): one request per
//! leader with all of its partitions, so a session that starts 10,000 partitions
//! sends one request per broker, not 10,000.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::backoff::{jitter_unit, Backoff};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::net::Broker;
use crate::TopicPartition;

/// ListOffsets' special timestamps.
pub(crate) const LATEST: i64 = -1;
pub(crate) const EARLIEST: i64 = -2;

/// How many rounds a partition is tried before its error is final.
const ATTEMPTS: u32 = 10;

/// The offset for `timestamp` (or [`EARLIEST`] / [`LATEST`]) in `tp`: [`list_offsets`]
/// for one partition, without its lists and maps (a consumer opening 10,000 readers
/// at once holds 10,000 of these lookups; `mock_memory.rs` keeps them small).
pub(crate) async fn list_offset(
    client: &Client,
    tp: &TopicPartition,
    timestamp: i64,
    isolation_level: i8,
    backoff: Backoff,
) -> Result<Option<i64>> {
    let wanted = [(tp.clone(), timestamp)];
    let mut failures = 0;
    loop {
        let attempt = async {
            let leader = client.leader(&tp.topic, tp.partition).await?;
            let request = build_request(client, &wanted, &[0], isolation_level);
            let response = leader.call(&request).await?;
            let (_, outcome) = read(&response, &wanted, &[0]).pop().expect("one asked");
            outcome
        };
        match attempt.await {
            Ok(offset) => return Ok(offset),
            Err(err) if err.is_retriable() && failures + 1 < ATTEMPTS => {
                failures += 1;
                if err.is_stale_metadata() {
                    let _ = client.refresh_metadata(&[&tp.topic]).await;
                }
                let delay = backoff
                    .delay(failures, jitter_unit())
                    .max(Duration::from_millis(10));
                tokio::time::sleep(delay).await;
            }
            Err(err) => return Err(err.with_topic(&*tp.topic).with_partition(tp.partition)),
        }
    }
}

/// For each partition, the offset for its timestamp (or [`EARLIEST`] / [`LATEST`]);
/// `None` when no record has a timestamp at or after it. Outcomes in the order
/// asked. All leaders are asked at once, each once per round; a partition that
/// failed retriably (a leader move, a broker still loading) is asked again after a
/// backoff, and after a metadata refresh when its leader may have moved, until it
/// has failed [`ATTEMPTS`] rounds.
pub(crate) async fn list_offsets(
    client: &Client,
    wanted: &[(TopicPartition, i64)],
    isolation_level: i8,
    backoff: Backoff,
) -> Vec<Result<Option<i64>>> {
    let mut outcomes: Vec<Option<Result<Option<i64>>>> = vec![None; wanted.len()];
    let mut pending: Vec<usize> = (0..wanted.len()).collect();
    let mut failures = 0;
    while !pending.is_empty() {
        let (by_leader, mut failed) = by_leader(client, wanted, pending).await;
        let ask = |r: Request| async move {
            let request = build_request(client, wanted, &r.asked, isolation_level);
            let response = r.broker.call(&request).await;
            (r.asked, response)
        };
        for (asked, response) in futures::future::join_all(by_leader.into_iter().map(ask)).await {
            match response {
                Ok(response) => {
                    for (i, outcome) in read(&response, wanted, &asked) {
                        match outcome {
                            Ok(offset) => outcomes[i] = Some(Ok(offset)),
                            Err(err) => failed.push((i, err)),
                        }
                    }
                }
                Err(err) => failed.extend(asked.into_iter().map(|i| (i, err.clone()))),
            }
        }
        failures += 1;
        let mut stale: Vec<&str> = Vec::new();
        pending = Vec::new();
        for (i, err) in failed {
            let tp = &wanted[i].0;
            if err.is_retriable() && failures < ATTEMPTS {
                if err.is_stale_metadata() && !stale.contains(&&*tp.topic) {
                    stale.push(&tp.topic);
                }
                pending.push(i);
            } else {
                outcomes[i] = Some(Err(err.with_topic(&*tp.topic).with_partition(tp.partition)));
            }
        }
        if pending.is_empty() {
            break;
        }
        if !stale.is_empty() {
            let _ = client.refresh_metadata(&stale).await;
        }
        let delay = backoff
            .delay(failures, jitter_unit())
            .max(Duration::from_millis(10));
        tokio::time::sleep(delay).await;
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every partition asked has an outcome"))
        .collect()
}

/// One ListOffsets to send: the partitions `asked` (indexes into `wanted`) of one
/// leader, each named once.
struct Request {
    leader: i32,
    /// How often these partitions came before in this round's list.
    round: usize,
    broker: Broker,
    asked: Vec<usize>,
}

/// The partitions `pending` (indexes into `wanted`) by leader (and by how often the
/// partition came before in `pending`), from the cached
/// metadata, refreshed once for the topics it has no leader for; those still without
/// one come back as failures of this round.
async fn by_leader(
    client: &Client,
    wanted: &[(TopicPartition, i64)],
    pending: Vec<usize>,
) -> (Vec<Request>, Vec<(usize, Error)>) {
    let mut unknown: Vec<&str> = Vec::new();
    for &i in &pending {
        let tp = &wanted[i].0;
        if client.cached_leader(&tp.topic, tp.partition).is_err() && !unknown.contains(&&*tp.topic)
        {
            unknown.push(&tp.topic);
        }
    }
    let refreshed = match unknown.is_empty() {
        true => Ok(()),
        false => client.refresh_metadata(&unknown).await.map(|_| ()),
    };
    // A partition asked twice (two timestamps) goes in two requests: Kafka refuses a
    // request that names a partition twice. (No maps for one partition: a consumer
    // opening 10,000 readers at once holds 10,000 of these lookups.)
    let single = pending.len() == 1;
    let mut by_leader: Vec<Request> = Vec::new();
    let mut seen: HashMap<&TopicPartition, usize> = HashMap::new();
    let mut failed = Vec::new();
    for i in pending {
        let tp = &wanted[i].0;
        match client.cached_leader(&tp.topic, tp.partition) {
            Ok(leader) => {
                let id = leader.id().unwrap_or(-1);
                let round = match single {
                    true => 0,
                    false => {
                        let times = seen.entry(tp).or_insert(0);
                        *times += 1;
                        *times - 1
                    }
                };
                match by_leader
                    .iter_mut()
                    .find(|r| r.leader == id && r.round == round)
                {
                    Some(request) => request.asked.push(i),
                    None => by_leader.push(Request {
                        leader: id,
                        round,
                        broker: leader,
                        asked: vec![i],
                    }),
                }
            }
            // A failed refresh says more than the missing leader it left.
            Err(err) => failed.push((i, refreshed.clone().err().unwrap_or(err))),
        }
    }
    (by_leader, failed)
}

/// One leader's request: the partitions `asked` (indexes into `wanted`), by topic.
fn build_request(
    client: &Client,
    wanted: &[(TopicPartition, i64)],
    asked: &[usize],
    isolation_level: i8,
) -> ListOffsetsRequest {
    let metadata = client.metadata();
    // Most requests name one topic (a B-tree node was ~500 bytes for each of 10,000
    // readers looking their own start up).
    let mut topics: Vec<(&str, Vec<ListOffsetsPartition>)> = Vec::new();
    for &i in asked {
        let (tp, timestamp) = &wanted[i];
        let epoch = metadata
            .partition(&tp.topic, tp.partition)
            .map_or(-1, |p| p.leader_epoch);
        let partition = ListOffsetsPartition::default()
            .with_partition_index(tp.partition)
            .with_current_leader_epoch(epoch)
            .with_timestamp(*timestamp);
        match topics.iter_mut().rev().find(|(t, _)| **t == *tp.topic) {
            Some((_, partitions)) => partitions.push(partition),
            None => topics.push((&tp.topic, vec![partition])),
        }
    }
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// Each partition `asked` (indexes into `wanted`) with what `response` says of it: its
/// offset (`None` for -1, no such record), its error, or a protocol error when the
/// response leaves it out.
fn read(
    response: &ListOffsetsResponse,
    wanted: &[(TopicPartition, i64)],
    asked: &[usize],
) -> Vec<(usize, Result<Option<i64>>)> {
    let mut answers: HashMap<(&str, i32), (i16, i64)> = HashMap::new();
    for topic in &response.topics {
        let name: &str = &topic.name.0;
        for p in &topic.partitions {
            answers.insert((name, p.partition_index), (p.error_code, p.offset));
        }
    }
    asked
        .iter()
        .map(|&i| {
            let tp = &wanted[i].0;
            let outcome = match answers.get(&(&*tp.topic, tp.partition)) {
                None => Err(Error::protocol(
                    "ListOffsets response does not mention the partition",
                )),
                Some(&(code, offset)) => {
                    Error::check_code(code).map(|()| (offset >= 0).then_some(offset))
                }
            };
            (i, outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };

    fn topic(name: &str, partitions: &[(i32, i16, i64)]) -> ListOffsetsTopicResponse {
        ListOffsetsTopicResponse::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(index, code, offset)| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(index)
                            .with_error_code(code)
                            .with_offset(offset)
                    })
                    .collect(),
            )
    }

    #[test]
    fn every_partition_gets_its_own_answer_offset_error_or_absence() {
        // Two topics with the same partition numbers, answered out of order.
        let response = ListOffsetsResponse::default().with_topics(vec![
            topic("b", &[(0, 0, 7), (1, 6, -1)]),
            topic("a", &[(1, 0, -1), (0, 0, 42)]),
        ]);
        let tp = |t: &str, p| (TopicPartition::new(t, p), EARLIEST);
        let wanted = [tp("a", 0), tp("a", 1), tp("b", 0), tp("b", 1), tp("b", 2)];
        let read = read(&response, &wanted, &[4, 0, 1, 2, 3]);
        let indexes: Vec<usize> = read.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [4, 0, 1, 2, 3]);
        let outcome = |i: usize| &read.iter().find(|(j, _)| *j == i).unwrap().1;
        assert_eq!(outcome(0).as_ref().unwrap(), &Some(42));
        assert_eq!(outcome(1).as_ref().unwrap(), &None, "-1: no such record");
        assert_eq!(outcome(2).as_ref().unwrap(), &Some(7));
        let moved = outcome(3).as_ref().unwrap_err();
        assert!(moved.is_stale_metadata() && moved.is_retriable(), "{moved}");
        let missing = outcome(4).as_ref().unwrap_err();
        assert!(!missing.is_retriable(), "{missing}");
    }
}
