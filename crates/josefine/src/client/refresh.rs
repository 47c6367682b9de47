//! Metadata refresh: which topics to ask for, coalescing, and applying the answer.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClusterMetadata};
use crate::error::{Error, ErrorKind, Result};

type Refreshing = Shared<BoxFuture<'static, Result<Arc<ClusterMetadata>>>>;

/// A Metadata request on its way; later callers whose topics it covers join it.
pub(super) struct InFlight {
    id: u64,
    /// `None`: all topics.
    topics: Option<BTreeSet<String>>,
    future: Refreshing,
}

static NEXT_REFRESH_ID: AtomicU64 = AtomicU64::new(0);

/// Refreshes `topics` plus the wanted set (`None`: every topic in the cluster).
pub(super) async fn refresh(
    client: &Client,
    topics: Option<&[&str]>,
) -> Result<Arc<ClusterMetadata>> {
    let future = {
        let mut state = client.state();
        if state.closed {
            return Err(Error::client_closed());
        }
        let asked: Option<BTreeSet<String>> =
            topics.map(|ts| ts.iter().map(|t| t.to_string()).collect());
        if let Some(asked) = &asked {
            state.wanted_topics.extend(asked.iter().cloned());
        }
        match &state.refresh {
            // A finished future (its task died before clearing the slot) is never joined.
            Some(in_flight)
                if in_flight.future.peek().is_none()
                    && covers(in_flight.topics.as_ref(), asked.as_ref()) =>
            {
                in_flight.future.clone()
            }
            _ => {
                let request_topics = asked.is_some().then(|| state.wanted_topics.clone());
                let id = NEXT_REFRESH_ID.fetch_add(1, Ordering::Relaxed);
                let task = tokio::spawn(run(client.clone(), id, request_topics.clone()));
                let future = async move {
                    task.await.unwrap_or_else(|e| {
                        Err(Error::new(
                            ErrorKind::Closed,
                            format!("metadata refresh stopped: {e}"),
                        ))
                    })
                }
                .boxed()
                .shared();
                state.refresh = Some(InFlight {
                    id,
                    topics: request_topics,
                    future: future.clone(),
                });
                future
            }
        }
    };
    future.await
}

/// Whether a refresh for `in_flight` topics answers a caller asking for `asked`.
fn covers(in_flight: Option<&BTreeSet<String>>, asked: Option<&BTreeSet<String>>) -> bool {
    match (in_flight, asked) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(have), Some(want)) => want.is_subset(have),
    }
}

/// Fetches and applies one refresh; runs as its own task so a cancelled caller does
/// not cancel it for the others.
async fn run(
    client: Client,
    id: u64,
    topics: Option<BTreeSet<String>>,
) -> Result<Arc<ClusterMetadata>> {
    let result = fetch(&client, topics.as_ref()).await;
    let mut state = client.state();
    if state.refresh.as_ref().is_some_and(|r| r.id == id) {
        state.refresh = None;
    }
    let update = result?;
    if state.closed {
        return Err(Error::client_closed());
    }
    let requested: Option<Vec<String>> = topics.map(|t| t.into_iter().collect());
    let merged = state.metadata.merge(update, requested.as_deref());
    let config = client.inner.broker_config.clone();
    for info in merged.brokers.values() {
        Client::broker_handle(&mut state, &config, info.id, info.addr());
    }
    state
        .brokers
        .retain(|id, _| merged.brokers.contains_key(id));
    let merged = Arc::new(merged);
    state.metadata = merged.clone();
    client
        .inner
        .metadata_version
        .fetch_add(1, Ordering::Release);
    tracing::debug!(
        brokers = merged.brokers.len(),
        topics = merged.topics.len(),
        "metadata refreshed"
    );
    Ok(merged)
}

/// Asks each candidate broker in turn until one answers.
async fn fetch(client: &Client, topics: Option<&BTreeSet<String>>) -> Result<ClusterMetadata> {
    let candidates = client.candidates();
    if candidates.is_empty() {
        return Err(Error::client_closed());
    }
    let auto_create = client.inner.config.allow_auto_topic_creation;
    let mut last_error = None;
    for broker in &candidates {
        let answer = broker
            .call_versioned(|_| metadata_request(topics, auto_create))
            .await
            .and_then(|(_, response)| {
                // Metadata v13 can fail as a whole (KIP-1102).
                Error::check_code(response.error_code)?;
                Ok(ClusterMetadata::from_response(&response))
            });
        match answer {
            Ok(metadata) => return Ok(metadata),
            Err(err) => {
                tracing::debug!(broker = %broker, error = %err, "metadata request failed, trying the next broker");
                last_error = Some(err);
            }
        }
    }
    // A certificate or credentials problem is the answer, not "no broker": say it as
    // it is (typed, not retriable), so the user fixes the setting it names.
    if let Some(last) = last_error.take() {
        if matches!(last.kind(), ErrorKind::Tls | ErrorKind::Authentication) {
            return Err(last);
        }
        last_error = Some(last);
    }
    let mut err = Error::new(
        ErrorKind::NoBrokerAvailable,
        format!(
            "none of {} broker(s) answered a metadata request; check that bootstrap.servers \
             points at running brokers and that they are reachable from here",
            candidates.len()
        ),
    );
    if let Some(last) = last_error {
        err = err.with_source(last);
    }
    Err(err)
}

fn metadata_request(
    topics: Option<&BTreeSet<String>>,
    allow_auto_topic_creation: bool,
) -> MetadataRequest {
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|name| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
            })
            .collect()
    });
    MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(allow_auto_topic_creation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn coverage_rules() {
        assert!(covers(None, None));
        assert!(covers(None, Some(&set(&["a"]))));
        assert!(!covers(Some(&set(&["a"])), None));
        assert!(covers(Some(&set(&["a", "b"])), Some(&set(&["a"]))));
        assert!(covers(Some(&set(&["a"])), Some(&set(&[]))));
        assert!(!covers(Some(&set(&["a"])), Some(&set(&["a", "c"]))));
    }

    #[test]
    fn request_lists_topics_or_asks_for_all() {
        assert!(metadata_request(None, false).topics.is_none());
        let req = metadata_request(Some(&set(&["x", "y"])), true);
        assert_eq!(req.topics.as_ref().unwrap().len(), 2);
        assert!(req.allow_auto_topic_creation);
    }
}
