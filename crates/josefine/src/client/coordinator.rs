//! Coordinator lookup (FindCoordinator, KIP-699 batching at v4+) and its cache.
//!
//! A group's coordinator is cached by group id until someone reports NOT_COORDINATOR
//! or a lost connection ([`Client::invalidate_coordinator`]). COORDINATOR_NOT_AVAILABLE
//! and COORDINATOR_LOAD_IN_PROGRESS are normal while a coordinator starts up: they are
//! retried with backoff within `request.timeout.ms`.
//!
//! Coordinators get a connection of their own, apart from the one fetches and
//! produces use to the same broker (the Java client and librdkafka do the same). A
//! broker answers one connection's requests in order, so on a shared connection a
//! heartbeat would wait behind a fetch long-poll (up to `fetch.max.wait.ms`), and a
//! fetch behind a JoinGroup the coordinator holds for up to the rebalance timeout,
//! which would stall consumption during a cooperative rebalance.

use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::Client;
use crate::backoff::jitter_unit;
use crate::error::{Error, Result};
use crate::net::Broker;

/// What a coordinator coordinates (FindCoordinator `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CoordinatorType {
    Group,
    Transaction,
}

impl CoordinatorType {
    fn key_type(self) -> i8 {
        match self {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        }
    }
}

pub(super) async fn coordinator(
    client: &Client,
    kind: CoordinatorType,
    key: &str,
) -> Result<Broker> {
    let cache_key = (kind, key.to_string());
    {
        let state = client.state();
        if let Some(broker) = state
            .coordinators
            .get(&cache_key)
            .and_then(|id| state.coordinator_links.get(id))
        {
            return Ok(broker.clone());
        }
    }
    let deadline = Instant::now() + client.inner.broker_config.request_timeout;
    let mut failures = 0;
    loop {
        let found = async {
            let broker = client.any_broker()?;
            let (version, response) = broker
                .call_versioned(|v| find_coordinator_request(v, kind, key))
                .await?;
            parse_find_coordinator(version, &response)
        };
        match found.await {
            Ok((id, addr)) => {
                let mut state = client.state();
                if state.closed {
                    return Err(Error::client_closed());
                }
                let broker =
                    Client::coordinator_link(&mut state, &client.inner.broker_config, id, addr);
                state.coordinators.insert(cache_key, id);
                tracing::debug!(group = key, coordinator = %broker, "found coordinator");
                return Ok(broker);
            }
            Err(err) if err.is_retriable() && Instant::now() < deadline => {
                failures += 1;
                let delay = client
                    .inner
                    .config
                    .retry_backoff
                    .delay(failures, jitter_unit());
                tracing::debug!(group = key, error = %err, ?delay, "coordinator lookup failed, retrying");
                tokio::time::sleep(delay).await;
            }
            Err(err) => return Err(err.with_group(key)),
        }
    }
}

/// FindCoordinator for one key, in the shape `version` needs.
pub(crate) fn find_coordinator_request(
    version: i16,
    kind: CoordinatorType,
    key: &str,
) -> FindCoordinatorRequest {
    let key = StrBytes::from_string(key.to_string());
    let request = FindCoordinatorRequest::default().with_key_type(kind.key_type());
    if version >= 4 {
        request.with_coordinator_keys(vec![key])
    } else {
        request.with_key(key)
    }
}

/// The coordinator's node id and address, or the error the broker gave.
pub(crate) fn parse_find_coordinator(
    version: i16,
    response: &FindCoordinatorResponse,
) -> Result<(i32, String)> {
    let (error_code, message, node, host, port) = if version >= 4 {
        let c = response
            .coordinators
            .first()
            .ok_or_else(|| Error::protocol("FindCoordinator response lists no coordinator"))?;
        (c.error_code, &c.error_message, c.node_id.0, &c.host, c.port)
    } else {
        (
            response.error_code,
            &response.error_message,
            response.node_id.0,
            &response.host,
            response.port,
        )
    };
    Error::check_code(error_code).map_err(|e| match message {
        Some(m) => Error::new(e.kind().clone(), m.to_string()),
        None => e,
    })?;
    if node < 0 {
        return Err(Error::kafka(crate::KafkaCode::COORDINATOR_NOT_AVAILABLE));
    }
    Ok((node, format!("{host}:{port}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::BrokerId;

    #[test]
    fn request_shape_follows_version() {
        let old = find_coordinator_request(3, CoordinatorType::Group, "g");
        assert_eq!(old.key.as_str(), "g");
        assert!(old.coordinator_keys.is_empty());
        let new = find_coordinator_request(4, CoordinatorType::Transaction, "t");
        assert_eq!(new.coordinator_keys.len(), 1);
        assert_eq!(new.key_type, 1);
    }

    #[test]
    fn parses_both_response_shapes() {
        let old = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(3))
            .with_host(StrBytes::from_static_str("h"))
            .with_port(9);
        assert_eq!(
            parse_find_coordinator(3, &old).unwrap(),
            (3, "h:9".to_string())
        );
        let new =
            FindCoordinatorResponse::default().with_coordinators(vec![Coordinator::default()
                .with_node_id(BrokerId(5))
                .with_host(StrBytes::from_static_str("x"))
                .with_port(1)]);
        assert_eq!(
            parse_find_coordinator(4, &new).unwrap(),
            (5, "x:1".to_string())
        );
    }

    #[test]
    fn coordinator_errors_are_typed_and_retriable_when_kafka_says_so() {
        let resp =
            FindCoordinatorResponse::default().with_coordinators(vec![Coordinator::default()
                .with_error_code(15)
                .with_node_id(BrokerId(-1))]);
        let err = parse_find_coordinator(4, &resp).unwrap_err();
        assert_eq!(
            err.code(),
            Some(crate::KafkaCode::COORDINATOR_NOT_AVAILABLE)
        );
        assert!(err.is_retriable());
        let empty = FindCoordinatorResponse::default();
        assert_eq!(
            parse_find_coordinator(4, &empty).unwrap_err().kind(),
            &crate::ErrorKind::Protocol
        );
    }
}
