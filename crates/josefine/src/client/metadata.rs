//! The cluster view built from Metadata responses, pure data: brokers by id,
//! topic -> partitions -> leader, leader epoch, replicas, ISR.
//!
//! A refresh for some topics is merged into the previous view ([`ClusterMetadata::merge`])
//! so that topics not asked about keep their last known state. A partition whose
//! leader epoch went *down* in an update keeps its cached state: the answering broker
//! has stale metadata (KIP-320).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::MetadataResponse;

use crate::error::{Error, KafkaCode, Result};

/// One broker as listed in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerInfo {
    /// The broker's node id (`node.id`, `broker.id`).
    pub id: i32,
    /// The host the broker advertises (`advertised.listeners`).
    pub host: String,
    /// The port the broker advertises.
    pub port: i32,
    /// The broker's `broker.rack`, if set.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, ready for a TCP connect.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionMetadata {
    /// The partition's number within its topic.
    pub id: i32,
    /// `None` while the partition has no leader (LEADER_NOT_AVAILABLE, election).
    pub leader: Option<i32>,
    /// -1 when the broker does not report epochs (Metadata < v7).
    pub leader_epoch: i32,
    /// The node ids of every replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The node ids of the in-sync replicas (ISR).
    pub isr: Vec<i32>,
    /// The node ids of replicas whose log directory is offline.
    pub offline_replicas: Vec<i32>,
    /// The partition's error in the Metadata answer (LEADER_NOT_AVAILABLE, say); `None`
    /// without one.
    pub error: Option<KafkaCode>,
}

/// One topic; `partitions` is sorted by partition id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// The topic id (KIP-516), `None` before Metadata v10 or when the broker has none.
    /// Fetch v13+ addresses topics by id.
    pub topic_id: Option<uuid::Uuid>,
    /// The topic's error in the Metadata answer (UNKNOWN_TOPIC_OR_PARTITION,
    /// TOPIC_AUTHORIZATION_FAILED, ...); `None` without one.
    pub error: Option<KafkaCode>,
    /// Whether it is one of Kafka's internal topics (`__consumer_offsets`,
    /// `__transaction_state`).
    pub is_internal: bool,
    /// The partitions, sorted by id.
    pub partitions: Vec<PartitionMetadata>,
}

/// An immutable snapshot of the cluster; the client swaps in a new `Arc` per refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterMetadata {
    /// The cluster's id; `None` from a broker too old to send one.
    pub cluster_id: Option<String>,
    /// The node id the cluster reports as its controller (under KRaft, a broker that
    /// forwards controller requests); `None` if unknown.
    pub controller_id: Option<i32>,
    /// Every broker, by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// The topics known, by name: those asked about so far, or all after a refresh of every
    /// topic.
    pub topics: BTreeMap<String, Arc<TopicMetadata>>,
}

fn node(id: i32) -> Option<i32> {
    (id >= 0).then_some(id)
}

impl TopicMetadata {
    /// Partition `id`, found in the sorted list.
    pub(crate) fn partition(&self, id: i32) -> Option<&PartitionMetadata> {
        self.partitions
            .binary_search_by_key(&id, |p| p.id)
            .ok()
            .map(|i| &self.partitions[i])
    }
}

impl ClusterMetadata {
    /// Converts a Metadata response. Topics without a name (only possible when asking
    /// by topic id, which we never do) are skipped.
    pub(crate) fn from_response(response: &MetadataResponse) -> Self {
        let brokers = response
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (info.id, info)
            })
            .collect();
        let topics = response
            .topics
            .iter()
            .filter_map(|t| {
                let name = t.name.as_ref()?.0.to_string();
                let mut partitions: Vec<PartitionMetadata> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionMetadata {
                        id: p.partition_index,
                        leader: node(p.leader_id.0),
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                        error: KafkaCode::from_code(p.error_code),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.id);
                let topic = TopicMetadata {
                    name: name.clone(),
                    topic_id: (!t.topic_id.is_nil()).then_some(t.topic_id),
                    error: KafkaCode::from_code(t.error_code),
                    is_internal: t.is_internal,
                    partitions,
                };
                Some((name, Arc::new(topic)))
            })
            .collect();
        Self {
            cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
            controller_id: node(response.controller_id.0),
            brokers,
            topics,
        }
    }

    /// The view after `update`, an answer for `requested` topics (`None`: all topics).
    ///
    /// Topics in the answer that were not requested are ignored: a broker has no
    /// business answering for them, and a broken or hostile one must not be able to
    /// overwrite what another answer said about them (or fill the cache with names
    /// nobody uses). Brokers and the controller are taken from every answer.
    pub(crate) fn merge(
        &self,
        update: ClusterMetadata,
        requested: Option<&[String]>,
    ) -> ClusterMetadata {
        let mut topics = match requested {
            // Asked for everything: topics missing from the answer are gone.
            None => BTreeMap::new(),
            Some(names) => {
                let mut kept = self.topics.clone();
                for name in names {
                    kept.remove(name);
                }
                kept
            }
        };
        let wanted: Option<BTreeSet<&str>> =
            requested.map(|names| names.iter().map(String::as_str).collect());
        for (name, fresh) in update.topics {
            if wanted.as_ref().is_some_and(|w| !w.contains(name.as_str())) {
                tracing::debug!(topic = %name, "metadata answer lists a topic not asked about; ignored");
                continue;
            }
            let merged = match self.topics.get(&name) {
                Some(old) => keep_newer_epochs(old, fresh),
                None => fresh,
            };
            topics.insert(name, merged);
        }
        ClusterMetadata {
            cluster_id: update.cluster_id.or_else(|| self.cluster_id.clone()),
            controller_id: update.controller_id,
            brokers: update.brokers,
            topics,
        }
    }

    /// The topic's metadata, if the view has it (errors included; see
    /// [`topic_or_error`](Self::topic_or_error)).
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMetadata>> {
        self.topics.get(name)
    }

    /// The topic, or the error its metadata carried (UNKNOWN_TOPIC_OR_PARTITION when
    /// it is not in the view at all).
    pub fn topic_or_error(&self, name: &str) -> Result<&Arc<TopicMetadata>> {
        match self.topics.get(name) {
            None => Err(Error::kafka(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION).with_topic(name)),
            Some(t) => match t.error {
                Some(code) => Err(Error::kafka(code).with_topic(name)),
                None => Ok(t),
            },
        }
    }

    /// The partition's metadata, or the topic's error (UNKNOWN_TOPIC_OR_PARTITION for a
    /// topic or partition the view does not have).
    pub fn partition(&self, topic: &str, partition: i32) -> Result<&PartitionMetadata> {
        let t = self.topic_or_error(topic)?;
        t.partition(partition).ok_or_else(|| {
            Error::kafka(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
                .with_topic(topic)
                .with_partition(partition)
        })
    }

    /// The leader's node id, or a retriable error while there is none.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<i32> {
        let p = self.partition(topic, partition)?;
        match (p.leader, p.error) {
            (Some(leader), _) => Ok(leader),
            (None, code) => Err(
                Error::kafka(code.unwrap_or(KafkaCode::LEADER_NOT_AVAILABLE))
                    .with_topic(topic)
                    .with_partition(partition),
            ),
        }
    }
}

/// `fresh`, except partitions whose cached leader epoch is newer than the fresh one.
fn keep_newer_epochs(old: &Arc<TopicMetadata>, fresh: Arc<TopicMetadata>) -> Arc<TopicMetadata> {
    let stale = |p: &PartitionMetadata| {
        old.partition(p.id)
            .filter(|o| p.leader_epoch >= 0 && o.leader_epoch > p.leader_epoch)
    };
    if !fresh.partitions.iter().any(|p| stale(p).is_some()) {
        return fresh;
    }
    let mut topic = (*fresh).clone();
    for p in &mut topic.partitions {
        if let Some(newer) = stale(p) {
            *p = newer.clone();
        }
    }
    Arc::new(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn partition(id: i32, leader: i32, epoch: i32) -> MetadataResponsePartition {
        MetadataResponsePartition::default()
            .with_partition_index(id)
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(epoch)
            .with_replica_nodes(vec![BrokerId(leader)])
            .with_isr_nodes(vec![BrokerId(leader)])
    }

    fn topic(name: &str, partitions: Vec<MetadataResponsePartition>) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_partitions(partitions)
    }

    fn response(topics: Vec<MetadataResponseTopic>) -> ClusterMetadata {
        ClusterMetadata::from_response(
            &MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("h1"))
                    .with_port(9092)])
                .with_controller_id(BrokerId(1))
                .with_cluster_id(Some(StrBytes::from_static_str("c")))
                .with_topics(topics),
        )
    }

    #[test]
    fn converts_response_and_sorts_partitions() {
        let md = response(vec![topic(
            "t",
            vec![partition(2, 1, 0), partition(0, 1, 0), partition(1, -1, 0)],
        )]);
        assert_eq!(md.brokers[&1].addr(), "h1:9092");
        assert_eq!(md.controller_id, Some(1));
        let ids: Vec<i32> = md
            .topic("t")
            .unwrap()
            .partitions
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!(md.leader("t", 2).unwrap(), 1);
        let err = md.leader("t", 1).unwrap_err();
        assert_eq!(err.code(), Some(KafkaCode::LEADER_NOT_AVAILABLE));
        assert!(err.is_retriable());
    }

    #[test]
    fn unknown_topic_and_partition_are_typed_errors() {
        let md = response(vec![
            topic("t", vec![partition(0, 1, 0)]),
            topic("gone", vec![]).with_error_code(3),
        ]);
        let err = md.leader("nope", 0).unwrap_err();
        assert_eq!(err.code(), Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(err.context().topic(), Some("nope"));
        let err = md.leader("t", 7).unwrap_err();
        assert_eq!(err.context().partition(), Some(7));
        assert_eq!(
            md.leader("gone", 0).unwrap_err().code(),
            Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
        );
    }

    #[test]
    fn partial_refresh_keeps_other_topics() {
        let old = response(vec![
            topic("a", vec![partition(0, 1, 0)]),
            topic("b", vec![partition(0, 1, 0)]),
        ]);
        let update = response(vec![topic(
            "a",
            vec![partition(0, 1, 1), partition(1, 1, 1)],
        )]);
        let merged = old.merge(update, Some(&["a".to_string()]));
        assert_eq!(merged.topic("a").unwrap().partitions.len(), 2);
        assert!(merged.topic("b").is_some());
    }

    #[test]
    fn topics_not_asked_about_are_ignored() {
        let old = response(vec![topic("b", vec![partition(0, 1, 7)])]);
        // Asked for "a"; the answer also claims "b" (leaderless) and a stranger.
        let update = response(vec![
            topic("a", vec![partition(0, 1, 0)]),
            topic("b", vec![partition(0, -1, 9), partition(1, -1, 9)]),
            topic("never-asked", vec![partition(0, 1, 0)]),
        ]);
        let merged = old.merge(update, Some(&["a".to_string()]));
        assert!(merged.topic("a").is_some());
        assert!(merged.topic("never-asked").is_none());
        assert_eq!(merged.topic("b"), old.topic("b"));
        assert_eq!(merged.leader("b", 0).unwrap(), 1);
    }

    #[test]
    fn full_refresh_drops_deleted_topics() {
        let old = response(vec![
            topic("a", vec![partition(0, 1, 0)]),
            topic("b", vec![partition(0, 1, 0)]),
        ]);
        let update = response(vec![topic("a", vec![partition(0, 1, 0)])]);
        let merged = old.merge(update, None);
        assert!(merged.topic("b").is_none());
    }

    #[test]
    fn requested_topic_missing_from_answer_is_dropped() {
        let old = response(vec![topic("a", vec![partition(0, 1, 0)])]);
        let merged = old.merge(response(vec![]), Some(&["a".to_string()]));
        assert!(merged.topic("a").is_none());
    }

    #[test]
    fn stale_leader_epoch_does_not_overwrite_newer() {
        let old = response(vec![topic(
            "a",
            vec![partition(0, 1, 5), partition(1, 1, 5)],
        )]);
        // A lagging broker reports epoch 4 for partition 0 (stale) and 6 for partition 1.
        let mut update = response(vec![topic(
            "a",
            vec![partition(0, 2, 4), partition(1, 2, 6)],
        )]);
        update.brokers.insert(
            2,
            BrokerInfo {
                id: 2,
                host: "h2".into(),
                port: 1,
                rack: None,
            },
        );
        let merged = old.merge(update, Some(&["a".to_string()]));
        assert_eq!(merged.leader("a", 0).unwrap(), 1);
        assert_eq!(merged.partition("a", 0).unwrap().leader_epoch, 5);
        assert_eq!(merged.leader("a", 1).unwrap(), 2);
    }
}
