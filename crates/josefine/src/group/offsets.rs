//! The offset manager's I/O: committed offsets from OffsetFetch, and OffsetCommit.
//! Both go to the group coordinator; NOT_COORDINATOR or a lost connection drops the
//! cached coordinator and the call is tried once more at the new one
//! ([`at_coordinator`], which the admin API's group calls use too).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::marks::PendingCommit;
use crate::client::Client;
use crate::error::{Error, ErrorKind, KafkaCode, Result};
use crate::TopicPartition;

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn by_topic(
    tps: impl IntoIterator<Item = TopicPartition>,
) -> BTreeMap<std::sync::Arc<str>, Vec<i32>> {
    let mut topics: BTreeMap<std::sync::Arc<str>, Vec<i32>> = BTreeMap::new();
    for tp in tps {
        topics.entry(tp.topic).or_default().push(tp.partition);
    }
    topics
}

/// Tries `call` at the coordinator, once more after rediscovering it if the first
/// answer says the coordinator moved (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a
/// lost connection). Other errors, COORDINATOR_LOAD_IN_PROGRESS included, go back to
/// the caller as they are.
pub(crate) async fn at_coordinator<T, F, Fut>(client: &Client, group: &str, call: F) -> Result<T>
where
    F: Fn(crate::net::Broker) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let coordinator = client.coordinator(group).await?;
    match call(coordinator).await {
        Err(err) if moved(&err) => {
            client.invalidate_coordinator(group);
            let coordinator = client.coordinator(group).await?;
            call(coordinator).await
        }
        other => other,
    }
}

fn moved(err: &Error) -> bool {
    err.is_connection_lost()
        || matches!(
            err.code(),
            Some(KafkaCode::NOT_COORDINATOR | KafkaCode::COORDINATOR_NOT_AVAILABLE)
        )
}

/// The committed offsets of `partitions` in `group`; partitions without a commit are
/// absent from the map.
pub(crate) async fn fetch_committed(
    client: &Client,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<HashMap<TopicPartition, i64>> {
    let topics = Some(by_topic(partitions.iter().cloned()));
    Ok(offsets_only(
        fetch_offsets(client, group, topics, None, false).await?,
    ))
}

/// As [`fetch_committed`], with each offset's metadata, as a member: of a
/// consumer-protocol group (KIP-848) when `member` is given, for from OffsetFetch v9
/// the coordinator checks the member and its epoch (STALE_MEMBER_EPOCH when a newer
/// one is on its way: ask again with it).
pub(crate) async fn fetch_committed_as(
    client: &Client,
    group: &str,
    partitions: &[TopicPartition],
    member: Option<(&str, i32)>,
    require_stable: bool,
) -> Result<HashMap<TopicPartition, OffsetAndMetadata>> {
    let topics = Some(by_topic(partitions.iter().cloned()));
    fetch_offsets(client, group, topics, member, require_stable).await
}

/// Every offset `group` has committed: OffsetFetch with a null topic list, which
/// needs v2+ (KIP-88).
pub(crate) async fn fetch_all_committed(
    client: &Client,
    group: &str,
) -> Result<HashMap<TopicPartition, i64>> {
    Ok(offsets_only(
        fetch_offsets(client, group, None, None, false).await?,
    ))
}

/// The partitions an OffsetCommit answer refused with `tolerated`, by topic; any
/// other error code is the error (with its topic and partition).
fn partition_errors(
    response: &kafka_protocol::messages::OffsetCommitResponse,
    tolerated: Option<KafkaCode>,
) -> Result<BTreeMap<Arc<str>, Vec<i32>>> {
    let mut refused: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            if tolerated.is_some_and(|code| p.error_code == code.code()) {
                refused
                    .entry(Arc::from(&*t.name.0))
                    .or_default()
                    .push(p.partition_index);
                continue;
            }
            Error::check_code(p.error_code)
                .map_err(|e| e.with_topic(&*t.name.0).with_partition(p.partition_index))?;
        }
    }
    Ok(refused)
}

/// A committed offset (the next offset to read) and the metadata committed with it
/// (the Java client's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OffsetAndMetadata {
    /// The committed offset: the next offset the group reads.
    pub offset: i64,
    /// `None` when empty (Kafka stores an absent metadata as "").
    pub metadata: Option<Arc<str>>,
}

impl OffsetAndMetadata {
    /// `offset` (the next offset to read) without metadata.
    pub fn new(offset: i64) -> Self {
        Self {
            offset,
            metadata: None,
        }
    }

    /// With `metadata` (at most the broker's `offset.metadata.max.bytes`).
    pub fn with_metadata(mut self, metadata: impl Into<Arc<str>>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }
}

fn offsets_only(
    committed: HashMap<TopicPartition, OffsetAndMetadata>,
) -> HashMap<TopicPartition, i64> {
    committed
        .into_iter()
        .map(|(tp, c)| (tp, c.offset))
        .collect()
}

/// First OffsetFetch version accepting a null topic list ("all topics", KIP-88).
const ALL_TOPICS_VERSION: i16 = 2;

/// OffsetFetch for `topics` (partition indexes by topic), or for every committed
/// partition when `None`.
async fn fetch_offsets(
    client: &Client,
    group: &str,
    topics: Option<BTreeMap<std::sync::Arc<str>, Vec<i32>>>,
    member: Option<(&str, i32)>,
    require_stable: bool,
) -> Result<HashMap<TopicPartition, OffsetAndMetadata>> {
    at_coordinator(client, group, |broker| {
        let topics = topics.clone();
        async move {
            if topics.is_none()
                && broker.version::<OffsetFetchRequest>().await? < ALL_TOPICS_VERSION
            {
                return Err(Error::new(
                    ErrorKind::UnsupportedVersion,
                    "OffsetFetch of all topics needs v2+",
                )
                .with_broker(&broker));
            }
            let (version, response) = broker
                .call_versioned(|version| {
                    // KIP-447: with require_stable (v7+) a partition whose offsets
                    // are still pending in an open transaction answers
                    // UNSTABLE_OFFSET_COMMIT (retriable) instead of the older commit.
                    let request = OffsetFetchRequest::default()
                        .with_require_stable(require_stable && version >= 7);
                    if version >= 8 {
                        request.with_groups(vec![OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(name(group)))
                            .with_member_id(member.filter(|_| version >= 9).map(|(m, _)| name(m)))
                            .with_member_epoch(
                                member.filter(|_| version >= 9).map_or(-1, |(_, e)| e),
                            )
                            .with_topics(topics.as_ref().map(|topics| {
                                topics
                                    .iter()
                                    .map(|(t, ps)| {
                                        OffsetFetchRequestTopics::default()
                                            .with_name(TopicName(name(t)))
                                            .with_partition_indexes(ps.clone())
                                    })
                                    .collect()
                            }))])
                    } else {
                        request.with_group_id(GroupId(name(group))).with_topics(
                            topics.as_ref().map(|topics| {
                                topics
                                    .iter()
                                    .map(|(t, ps)| {
                                        OffsetFetchRequestTopic::default()
                                            .with_name(TopicName(name(t)))
                                            .with_partition_indexes(ps.clone())
                                    })
                                    .collect()
                            }),
                        )
                    }
                })
                .await?;
            let mut out = HashMap::new();
            let mut collect = |topic: &str,
                               partition: i32,
                               offset: i64,
                               metadata: Option<&StrBytes>,
                               code: i16|
             -> Result<()> {
                Error::check_code(code)
                    .map_err(|e| e.with_topic(topic).with_partition(partition))?;
                if offset >= 0 {
                    let metadata = metadata.filter(|m| !m.is_empty()).map(|m| Arc::from(&**m));
                    out.insert(
                        TopicPartition::new(topic, partition),
                        OffsetAndMetadata { offset, metadata },
                    );
                }
                Ok(())
            };
            if version >= 8 {
                for g in &response.groups {
                    Error::check_code(g.error_code)?;
                    for t in &g.topics {
                        for p in &t.partitions {
                            collect(
                                &t.name.0,
                                p.partition_index,
                                p.committed_offset,
                                p.metadata.as_ref(),
                                p.error_code,
                            )?;
                        }
                    }
                }
            } else {
                Error::check_code(response.error_code)?;
                for t in &response.topics {
                    for p in &t.partitions {
                        collect(
                            &t.name.0,
                            p.partition_index,
                            p.committed_offset,
                            p.metadata.as_ref(),
                            p.error_code,
                        )?;
                    }
                }
            }
            Ok(out)
        }
    })
    .await
    .map_err(|e| e.with_group(group))
}

/// Who commits: the member and generation the coordinator must recognise.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    pub instance_id: Option<String>,
}

/// Commits `offsets`. The first failing partition's error is returned; the caller
/// keeps those offsets dirty.
pub(crate) async fn commit(
    client: &Client,
    who: &Committer,
    offsets: &[PendingCommit],
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut topics: BTreeMap<std::sync::Arc<str>, Vec<OffsetCommitRequestPartition>> =
        BTreeMap::new();
    for pending in offsets {
        let metadata = pending.metadata.as_deref().unwrap_or("");
        topics
            .entry(pending.partition.topic.clone())
            .or_default()
            .push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(pending.partition.partition)
                    .with_committed_offset(pending.offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(name(metadata))),
            );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(&who.group)))
        .with_generation_id_or_member_epoch(who.generation)
        .with_member_id(name(&who.member_id))
        .with_group_instance_id(who.instance_id.as_deref().map(name))
        // Keep offsets as long as the broker's offsets.retention.minutes says.
        .with_retention_time_ms(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(name(&t)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    at_coordinator(client, &who.group, |broker| {
        let request = request.clone();
        async move {
            let response = broker.call(&request).await?;
            let too_large =
                partition_errors(&response, Some(KafkaCode::OFFSET_METADATA_TOO_LARGE))?;
            if too_large.is_empty() {
                return Ok(());
            }
            // The broker's offset.metadata.max.bytes is below what was marked: the
            // offsets go without their metadata (a processor's done set: its
            // records run again at the next owner), rather than not at all.
            tracing::warn!(
                group = %who.group,
                "offset metadata longer than the broker allows (offset.metadata.max.bytes); \
                 committing those offsets without it: lower ProcessOptions::metadata_limit"
            );
            let mut retry = request.clone();
            retry
                .topics
                .retain_mut(|t| match too_large.get(&*t.name.0) {
                    Some(partitions) => {
                        t.partitions
                            .retain(|p| partitions.contains(&p.partition_index));
                        for p in &mut t.partitions {
                            p.committed_metadata = Some(name(""));
                        }
                        true
                    }
                    None => false,
                });
            let response = broker.call(&retry).await?;
            partition_errors(&response, None)?;
            Ok(())
        }
    })
    .await
    .map_err(|e| e.with_group(&who.group))
}
