//! Topic and broker configs: **DescribeConfigs** (key 32) reads them with where each
//! value comes from, **IncrementalAlterConfigs** (key 44, KIP-339) changes single
//! entries (set, delete back to the default, append to or subtract from a list)
//! without resending the others, as `kafka-configs.sh --alter` does. Topic requests go
//! to any broker (the controller of the metadata); a broker's own configs to that
//! broker. Sensitive values (passwords) come back null, as Kafka sends them.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use super::Admin;
use crate::error::{Error, Result};

/// ConfigResource types on the wire.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigSource {
    /// Set on this topic.
    Topic,
    /// Set dynamically on this broker.
    DynamicBroker,
    /// Set dynamically as the default of every broker.
    DynamicDefaultBroker,
    /// From the broker's server.properties.
    StaticBroker,
    /// Kafka's default.
    Default,
    /// A source this client does not know (the wire value).
    Other(i8),
}

impl ConfigSource {
    fn from_wire(source: i8) -> Self {
        match source {
            1 => Self::Topic,
            2 => Self::DynamicBroker,
            3 => Self::DynamicDefaultBroker,
            4 => Self::StaticBroker,
            5 => Self::Default,
            other => Self::Other(other),
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Topic => f.write_str("topic"),
            Self::DynamicBroker => f.write_str("dynamic broker"),
            Self::DynamicDefaultBroker => f.write_str("dynamic default broker"),
            Self::StaticBroker => f.write_str("static broker"),
            Self::Default => f.write_str("default"),
            Self::Other(source) => write!(f, "source {source}"),
        }
    }
}

/// One config entry of a topic or broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigEntry {
    /// The config's name, such as `retention.ms`.
    pub name: String,
    /// `None` for a sensitive value (Kafka never sends those) or an unset one.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether the config cannot be changed at run time (a static broker setting, say).
    pub read_only: bool,
    /// Whether the value is a secret (a password); its `value` is then `None`.
    pub sensitive: bool,
}

/// One change of [`Admin::alter_topic_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set the entry to this value.
    Set(String, String),
    /// Remove the topic's own value: the broker's (or Kafka's) default applies again.
    Delete(String),
    /// Add this value to a list entry (e.g. `cleanup.policy`).
    Append(String, String),
    /// Remove this value from a list entry.
    Subtract(String, String),
}

fn wire(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Admin {
    /// Every config entry of `topic`, with its source.
    pub async fn describe_topic_config(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let broker = self.client.controller().await?;
        self.describe_configs(broker, TOPIC, topic)
            .await
            .map_err(|e| e.with_topic(topic))
    }

    /// Every config entry of broker `id`, with its source.
    pub async fn describe_broker_config(&self, id: i32) -> Result<Vec<ConfigEntry>> {
        let broker = match self.client.broker(id) {
            Some(broker) => broker,
            None => {
                self.client.refresh_metadata(&[]).await?;
                self.client.broker(id).ok_or_else(|| {
                    Error::config(format!("no broker {id} in the cluster's metadata"))
                })?
            }
        };
        self.describe_configs(broker, BROKER, &id.to_string()).await
    }

    async fn describe_configs(
        &self,
        broker: crate::net::Broker,
        resource_type: i8,
        name: &str,
    ) -> Result<Vec<ConfigEntry>> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(wire(name))
                .with_configuration_keys(None),
        ]);
        let response = broker.call(&request).await?;
        let mut entries = Vec::new();
        for result in response.results {
            Error::check_code(result.error_code).map_err(|e| match result.error_message {
                Some(message) if !message.is_empty() => {
                    Error::new(e.kind().clone(), message.to_string())
                }
                _ => e,
            })?;
            entries.extend(result.configs.into_iter().map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from_wire(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            }));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Changes `topic`'s config, entry by entry (IncrementalAlterConfigs); entries not
    /// named keep their values. All or nothing: an unknown name or a bad value fails
    /// the call (INVALID_CONFIG, with Kafka's message).
    pub async fn alter_topic_config(&self, topic: &str, changes: &[ConfigChange]) -> Result<()> {
        let configs = changes
            .iter()
            .map(|change| {
                let (name, operation, value) = match change {
                    ConfigChange::Set(name, value) => (name, 0, Some(value)),
                    ConfigChange::Delete(name) => (name, 1, None),
                    ConfigChange::Append(name, value) => (name, 2, Some(value)),
                    ConfigChange::Subtract(name, value) => (name, 3, Some(value)),
                };
                AlterableConfig::default()
                    .with_name(wire(name))
                    .with_config_operation(operation)
                    .with_value(value.map(|v| wire(v)))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(wire(topic))
                .with_configs(configs),
        ]);
        let broker = self.client.controller().await?;
        let response = broker.call(&request).await?;
        for result in response.responses {
            Error::check_code(result.error_code)
                .map_err(|e| match result.error_message {
                    Some(message) if !message.is_empty() => {
                        Error::new(e.kind().clone(), message.to_string())
                    }
                    _ => e,
                })
                .map_err(|e| e.with_topic(topic))?;
        }
        Ok(())
    }
}
