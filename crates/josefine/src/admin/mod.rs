//! Admin basics: create, delete and list topics; describe the cluster; list, describe
//! and measure the lag of consumer groups (`groups.rs`).
//!
//! CreateTopics and DeleteTopics go to the controller (required before KIP-590
//! forwarding; harmless after it). A broker acknowledges a new topic before every
//! broker's metadata shows it, so [`Admin::create_topic`] also waits until metadata
//! lists the topic with a leader for every partition: code that produces right after
//! creating a topic then does not race the cluster.

mod acls;
mod configs;
mod groups;
mod offsets;
mod reset;
mod watermarks;

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::client::{BrokerInfo, Client, TopicMetadata};
use crate::error::{Error, KafkaCode, Result};

pub use acls::{AclBinding, AclFilter, AclOperation, AclPermission, PatternType, ResourceType};
pub use configs::{ConfigChange, ConfigEntry, ConfigSource};
pub use groups::{
    GroupDescription, GroupLag, GroupListing, GroupState, MemberDescription, PartitionLag,
    PartitionOwner,
};
pub use reset::{PlannedOffset, ResetTo};

/// How long [`Admin::create_topic`] waits for metadata to show a new topic.
const TOPIC_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewTopic {
    /// The topic's name: 1 to 249 ASCII letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// -1: the broker's `num.partitions`.
    pub partitions: i32,
    /// -1: the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs such as `cleanup.policy`, in order.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic named `name` with `partitions` partitions (-1: the broker's
    /// `num.partitions`), the broker's default replication factor and no configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    /// The number of replicas of each partition (-1, the default: the broker's
    /// `default.replication.factor`).
    pub fn replication_factor(mut self, factor: i16) -> Self {
        self.replication_factor = factor;
        self
    }

    /// Adds a topic config, such as `("cleanup.policy", "compact")` or `("retention.ms",
    /// "86400000")`.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }

    /// What Kafka would refuse (and some brokers accept, or wait on forever), checked
    /// before anything is sent.
    fn check(&self) -> Result<()> {
        check_topic_name(&self.name)?;
        if self.partitions != -1 && self.partitions < 1 {
            return Err(Error::config(format!(
                "topic {}: a topic needs at least 1 partition (or -1 for the broker's \
                 num.partitions), got {}",
                self.name, self.partitions
            )));
        }
        if self.replication_factor != -1 && self.replication_factor < 1 {
            return Err(Error::config(format!(
                "topic {}: the replication factor must be at least 1 (or -1 for the \
                 broker's default.replication.factor), got {}",
                self.name, self.replication_factor
            )));
        }
        Ok(())
    }
}

/// Kafka's rules for a topic name: 1 to 249 characters of ASCII letters, digits, `.`,
/// `_` and `-`, and neither `.` nor `..`.
pub(crate) fn check_topic_name(name: &str) -> Result<()> {
    const MAX: usize = 249;
    let why = if name.is_empty() {
        "a topic name cannot be empty".to_string()
    } else if name == "." || name == ".." {
        format!("{name:?} is not a legal topic name")
    } else if name.len() > MAX {
        format!(
            "topic name {:?}... is {} bytes long; Kafka allows at most {MAX}",
            name.chars().take(20).collect::<String>(),
            name.len()
        )
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        format!(
            "topic name {name:?} contains {c:?}; Kafka allows only ASCII letters, digits, \
             '.', '_' and '-'"
        )
    } else {
        return Ok(());
    };
    Err(Error::config(why))
}

/// One topic of [`Admin::list_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicListing {
    /// The topic's name.
    pub name: String,
    /// Its number of partitions.
    pub partitions: usize,
    /// Whether it is one of Kafka's internal topics (`__consumer_offsets`,
    /// `__transaction_state`).
    pub is_internal: bool,
}

/// The cluster as [`Admin::describe_cluster`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterDescription {
    /// The cluster's id; `None` from a broker too old to send one.
    pub cluster_id: Option<String>,
    /// The node id the cluster reports as its controller (under KRaft, a broker that
    /// forwards controller requests); `None` if unknown.
    pub controller_id: Option<i32>,
    /// Every broker of the cluster.
    pub brokers: Vec<BrokerInfo>,
}

/// Admin operations over a [`Client`]; get one with [`Client::admin`].
///
/// ```no_run
/// # async fn demo(client: josefine::Client) -> josefine::Result<()> {
/// use josefine::NewTopic;
/// let admin = client.admin();
/// let topic = NewTopic::new("orders", 6)
///     .replication_factor(3)
///     .config("retention.ms", "604800000");
/// admin.create_topic(topic).await?;
/// let lag = admin.group_lag("orders-service").await?;
/// println!("{} is {} records behind", lag.group_id, lag.total_lag);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn timeout_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

// Defined here, not in `client/`, so the client imports nothing from the admin API
// built on it.
impl Client {
    /// The admin API on this client.
    pub fn admin(&self) -> Admin {
        Admin::new(self)
    }
}

impl Admin {
    /// The admin API on `client` (a clone of it: they share connections and metadata).
    pub(crate) fn new(client: &Client) -> Self {
        Self {
            client: client.clone(),
        }
    }

    /// Creates one topic and waits until metadata shows a leader for each partition.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        let name = topic.name.clone();
        let (_, result) = self
            .create_topics(vec![topic])
            .await?
            .pop()
            .ok_or_else(|| Error::protocol("CreateTopics answered without the topic"))?;
        result?;
        self.wait_for_topic(&name, TOPIC_PROPAGATION_TIMEOUT).await
    }

    /// Creates topics; returns each topic's own outcome (TOPIC_ALREADY_EXISTS, ...).
    /// Does not wait for propagation.
    pub async fn create_topics(&self, topics: Vec<NewTopic>) -> Result<Vec<(String, Result<()>)>> {
        // Topics the broker would refuse get their error here, unsent.
        let (topics, refused): (Vec<NewTopic>, Vec<NewTopic>) =
            topics.into_iter().partition(|t| t.check().is_ok());
        let mut outcomes: Vec<(String, Result<()>)> = refused
            .into_iter()
            .map(|t| {
                let err = t.check().expect_err("partitioned as refused");
                (t.name, Err(err))
            })
            .collect();
        if topics.is_empty() {
            return Ok(outcomes);
        }
        let timeout = self.request_timeout();
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(timeout_ms(timeout))
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let controller = self.client.controller().await?;
        let response = controller.call(&request).await?;
        outcomes.extend(response.topics.into_iter().map(|t| {
            let name = t.name.0.to_string();
            let result = topic_result(t.error_code, t.error_message.as_ref(), &name);
            (name, result)
        }));
        Ok(outcomes)
    }

    /// Grows `topic` to `total` partitions (CreatePartitions) and waits until metadata
    /// shows a leader for each. Kafka never shrinks a topic: a `total` at or below the
    /// current count is INVALID_PARTITIONS. Records with keys map to other partitions
    /// afterwards, and consumer groups subscribed to the topic rebalance.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        if total < 1 {
            return Err(Error::new(
                crate::error::ErrorKind::Config,
                format!("a topic needs at least one partition, not {total}"),
            )
            .with_topic(topic));
        }
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout_ms(self.request_timeout()))
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total)
                // Null: the controller places the new partitions. (Its default, an
                // empty list, asks for zero explicit assignments and is refused.)
                .with_assignments(None)]);
        let controller = self.client.controller().await?;
        let response = controller.call(&request).await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.name.0.as_str() == topic)
            .ok_or_else(|| Error::protocol("CreatePartitions answered without the topic"))?;
        topic_result(result.error_code, result.error_message.as_ref(), topic)?;
        self.wait_for_partitions(topic, total, TOPIC_PROPAGATION_TIMEOUT)
            .await
    }

    /// Deletes one topic and waits until metadata no longer lists it: Kafka answers
    /// DeleteTopics once its controller has deleted the topic, and its brokers drop it
    /// from their metadata a moment later (a list right after the call could still
    /// show it).
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let (_, result) = self
            .delete_topics(&[name])
            .await?
            .pop()
            .ok_or_else(|| Error::protocol("DeleteTopics answered without the topic"))?;
        result?;
        let deadline = Instant::now() + TOPIC_PROPAGATION_TIMEOUT;
        let mut delay = Duration::from_millis(20);
        loop {
            let md = self.client.refresh_metadata(&[name]).await?;
            match md.topic_or_error(name) {
                Err(err) if err.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                    return Ok(())
                }
                _ if Instant::now() + delay < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                _ => {
                    return Err(Error::new(
                        crate::error::ErrorKind::Timeout,
                        "deleted, but the brokers still list the topic; check with `topics list`",
                    )
                    .with_topic(name))
                }
            }
        }
    }

    /// Deletes topics by name; returns each topic's own outcome.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let timeout = timeout_ms(self.request_timeout());
        let controller = self.client.controller().await?;
        let (_, response) = controller
            .call_versioned(|version| {
                let request = DeleteTopicsRequest::default().with_timeout_ms(timeout);
                if version >= 6 {
                    request.with_topics(
                        names
                            .iter()
                            .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                            .collect(),
                    )
                } else {
                    request.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
                }
            })
            .await?;
        Ok(response
            .responses
            .into_iter()
            .map(|t| {
                let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
                let result = topic_result(t.error_code, t.error_message.as_ref(), &name);
                (name, result)
            })
            .collect())
    }

    /// Every topic in the cluster (internal ones included, flagged), by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicListing>> {
        let md = self.client.refresh_all_metadata().await?;
        Ok(md
            .topics
            .values()
            .filter(|t| t.error.is_none())
            .map(|t| TopicListing {
                name: t.name.clone(),
                partitions: t.partitions.len(),
                is_internal: t.is_internal,
            })
            .collect())
    }

    /// Partitions, leaders, replicas and ISR of the given topics.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<Arc<TopicMetadata>>> {
        let md = self.client.refresh_metadata(names).await?;
        names
            .iter()
            .map(|n| md.topic_or_error(n).cloned())
            .collect()
    }

    /// Cluster id, controller and brokers, freshly fetched.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let md = self.client.refresh_metadata(&[]).await?;
        Ok(ClusterDescription {
            cluster_id: md.cluster_id.clone(),
            controller_id: md.controller_id,
            brokers: md.brokers.values().cloned().collect(),
        })
    }

    /// The offsets `group` has committed for `partitions` (the next offset to read);
    /// partitions without a commit are absent.
    pub async fn committed_offsets(
        &self,
        group: &str,
        partitions: &[crate::TopicPartition],
    ) -> Result<std::collections::HashMap<crate::TopicPartition, i64>> {
        groups::patiently(&self.client, group, || {
            crate::group::fetch_committed(&self.client, group, partitions)
        })
        .await
    }

    /// As [`committed_offsets`](Self::committed_offsets), with the metadata committed
    /// with each offset (a parallel processor's [`DoneSet`](crate::DoneSet), say).
    pub async fn committed_offsets_and_metadata(
        &self,
        group: &str,
        partitions: &[crate::TopicPartition],
    ) -> Result<std::collections::HashMap<crate::TopicPartition, crate::OffsetAndMetadata>> {
        groups::patiently(&self.client, group, || {
            crate::group::fetch_committed_as(&self.client, group, partitions, None, false)
        })
        .await
    }

    /// The end of each partition now: its high watermark (the offset the next record
    /// will get; what a read-everything consumer stops at), read from Fetch answers
    /// at the leaders (not ListOffsets LATEST, which Tansu answers wrongly). A
    /// partition whose end could not be read is an error.
    pub async fn end_offsets(
        &self,
        partitions: &[crate::TopicPartition],
    ) -> Result<std::collections::HashMap<crate::TopicPartition, i64>> {
        let wanted: Vec<(crate::TopicPartition, i64)> =
            partitions.iter().map(|tp| (tp.clone(), 0)).collect();
        watermarks::high_watermarks(&self.client, &wanted)
            .await?
            .into_iter()
            .map(|(tp, end)| match end {
                Some(end) => Ok((tp, end)),
                None => Err(Error::new(
                    crate::ErrorKind::Kafka(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION),
                    "no high watermark for the partition",
                )
                .with_topic(&*tp.topic)
                .with_partition(tp.partition)),
            })
            .collect()
    }

    /// Waits until metadata lists `topic` with a leader for every partition.
    pub async fn wait_for_topic(&self, topic: &str, timeout: Duration) -> Result<()> {
        self.wait_for_partitions(topic, 1, timeout).await
    }

    /// Waits until metadata lists at least `count` partitions of `topic`, each with a
    /// leader.
    async fn wait_for_partitions(&self, topic: &str, count: i32, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(20);
        loop {
            let md = self.client.refresh_metadata(&[topic]).await?;
            let ready = md.topic_or_error(topic).map(|t| {
                t.partitions.len() >= count.max(1) as usize
                    && t.partitions.iter().all(|p| p.leader.is_some())
            });
            match ready {
                Ok(true) => return Ok(()),
                Ok(false) | Err(_) if Instant::now() + delay < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Ok(false) => {
                    return Err(Error::kafka(KafkaCode::LEADER_NOT_AVAILABLE).with_topic(topic));
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn request_timeout(&self) -> Duration {
        self.client.inner_request_timeout()
    }
}

fn topic_result(code: i16, message: Option<&StrBytes>, topic: &str) -> Result<()> {
    Error::check_code(code).map_err(|e| {
        let e = match message {
            Some(m) if !m.is_empty() => Error::new(e.kind().clone(), m.to_string()),
            _ => e,
        };
        e.with_topic(topic)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for good in ["t", "orders.v2", "a_b-c", &"x".repeat(249)] {
            assert!(check_topic_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "not a legal"),
            ("..", "not a legal"),
            ("bad name!", "contains ' '"),
            ("caf\u{e9}", "contains '\u{e9}'"),
            (&"\u{e9}".repeat(200), "bytes long"),
        ] {
            let err = check_topic_name(bad).expect_err(bad);
            assert_eq!(err.kind(), &ErrorKind::Config);
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn partition_and_replica_counts_are_checked_before_sending() {
        assert!(NewTopic::new("t", -1).check().is_ok());
        assert!(NewTopic::new("t", 3).replication_factor(-1).check().is_ok());
        let err = NewTopic::new("t", 0).check().unwrap_err();
        assert!(err.to_string().contains("at least 1 partition"), "{err}");
        let err = NewTopic::new("t", 1)
            .replication_factor(0)
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("replication factor"), "{err}");
    }
}
