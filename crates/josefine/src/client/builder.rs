//! [`ClientBuilder`]: every setting with its default and the Kafka property it mirrors.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientConfig, Inner, State};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::net::tls::TlsConfig;
use crate::net::{Broker, BrokerConfig};

/// Builds a [`Client`].
///
/// ```no_run
/// # async fn demo() -> josefine::Result<()> {
/// use std::time::Duration;
/// let client = josefine::Client::builder()
///     .bootstrap(["localhost:9092"])
///     .client_id("orders")
///     .request_timeout(Duration::from_secs(10))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    bootstrap: Vec<String>,
    client_id: String,
    broker: BrokerConfig,
    metadata_max_age: Duration,
    retry_backoff: Backoff,
    allow_auto_topic_creation: bool,
    tls: Option<TlsConfig>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            client_id: "josefine".to_string(),
            broker: BrokerConfig::default(),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            allow_auto_topic_creation: false,
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// `bootstrap.servers`: `host:port` seed addresses; each item may itself be a
    /// comma-separated list. Required. A dead seed is skipped; all are tried.
    pub fn bootstrap<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for item in servers {
            self.bootstrap.extend(
                item.as_ref()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        self
    }

    /// `client.id`, sent with every request (broker logs and quotas). Default `josefine`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// `request.timeout.ms`: how long to wait for a response before the connection is
    /// presumed stuck and closed. Default 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.broker.request_timeout = timeout;
        self
    }

    /// `socket.connection.setup.timeout.ms`: TCP connect plus version negotiation.
    /// Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.broker.connect_timeout = timeout;
        self
    }

    /// `reconnect.backoff.ms` and `reconnect.backoff.max.ms`: wait before reconnecting
    /// to a broker, doubling per consecutive failure. Default 50 ms up to 1 s.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.broker.reconnect_backoff = Backoff::new(initial, max);
        self
    }

    /// `retry.backoff.ms` and `retry.backoff.max.ms`: wait between retries of a failed
    /// request (coordinator lookup, metadata). Default 100 ms up to 1 s.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_backoff = Backoff::new(initial, max);
        self
    }

    /// `metadata.max.age.ms`: background refresh period of the metadata cache.
    /// Default 5 minutes.
    pub fn metadata_max_age(mut self, age: Duration) -> Self {
        self.metadata_max_age = age;
        self
    }

    /// `allow.auto.create.topics`: whether metadata requests may create topics on
    /// brokers configured to allow it. Default false.
    pub fn allow_auto_create_topics(mut self, allow: bool) -> Self {
        self.allow_auto_topic_creation = allow;
        self
    }

    /// Largest response frame accepted from a broker (Kafka's
    /// `socket.request.max.bytes` on the other side). Default 100 MiB.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.broker.connection.max_frame_size = bytes;
        self
    }

    /// TLS on every connection (`security.protocol=SSL`, or `SASL_SSL` with
    /// [`sasl`](Self::sasl)). Its files are read when the client is built. Needs the
    /// `tls` feature (on by default); without it, building fails with an error naming it.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// SASL authentication on every connection, after ApiVersions
    /// (`security.protocol=SASL_PLAINTEXT`, or `SASL_SSL` with [`tls`](Self::tls)):
    /// PLAIN, SCRAM-SHA-256/512 or OAUTHBEARER with your token provider. SCRAM needs the
    /// `sasl` feature (on by default); without it, building fails with an error naming it.
    pub fn sasl(mut self, sasl: crate::net::sasl::SaslConfig) -> Self {
        self.broker.sasl = Some(sasl);
        self
    }

    /// Validates the settings, then fetches cluster metadata from the seeds: an
    /// unreachable cluster fails here, with the reason, rather than on first use.
    pub async fn connect(self) -> Result<Client> {
        let client = self.build()?;
        client.refresh_metadata(&[]).await?;
        Ok(client)
    }

    /// Validates and builds without any I/O; must run inside a Tokio runtime (it
    /// starts the background metadata refresh).
    pub fn build(mut self) -> Result<Client> {
        self.validate()?;
        if let Some(tls) = &self.tls {
            self.broker.tls = Some(tls.build()?);
        }
        self.broker.connection.client_id = Some(StrBytes::from_string(self.client_id.clone()));
        let broker_config = Arc::new(self.broker);
        let seeds = self
            .bootstrap
            .iter()
            .map(|addr| Broker::new(None, strip_scheme(addr), broker_config.clone()))
            .collect();
        let inner = Arc::new(Inner {
            config: ClientConfig {
                retry_backoff: self.retry_backoff,
                allow_auto_topic_creation: self.allow_auto_topic_creation,
            },
            broker_config,
            seeds,
            state: Mutex::new(State::default()),
            metadata_version: AtomicU64::new(0),
            background: Mutex::new(None),
        });
        let task = tokio::spawn(refresh_periodically(
            Arc::downgrade(&inner),
            self.metadata_max_age,
        ));
        *inner.background.lock().expect("fresh lock") = Some(task);
        Ok(Client { inner })
    }

    fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(Error::config(
                "bootstrap.servers is empty: give at least one host:port of a broker",
            ));
        }
        for addr in &self.bootstrap {
            let addr = strip_scheme(addr);
            let port = addr.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) {
                return Err(Error::config(format!(
                    "bootstrap.servers entry {addr:?} is not host:port (for example localhost:9092)"
                )));
            }
        }
        for (name, value) in [
            ("request.timeout.ms", self.broker.request_timeout),
            (
                "socket.connection.setup.timeout.ms",
                self.broker.connect_timeout,
            ),
            ("metadata.max.age.ms", self.metadata_max_age),
        ] {
            if value.is_zero() {
                return Err(Error::config(format!("{name} must be greater than zero")));
            }
        }
        if let Some(sasl) = &self.broker.sasl {
            sasl.check_built()?;
        }
        if self.broker.connection.max_frame_size < 1024 {
            return Err(Error::config(
                "the maximum response size must be at least 1 KiB",
            ));
        }
        Ok(())
    }
}

/// Accepts `PLAINTEXT://host:port` and `tcp://host:port` as well as `host:port`.
fn strip_scheme(addr: &str) -> &str {
    addr.split_once("://").map_or(addr, |(_, rest)| rest)
}

async fn refresh_periodically(client: std::sync::Weak<Inner>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = client.upgrade() else {
            return;
        };
        let client = Client { inner };
        if let Err(err) = client.refresh_metadata(&[]).await {
            tracing::warn!(error = %err, "background metadata refresh failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn bootstrap_accepts_lists_and_schemes() {
        let b = ClientBuilder::default().bootstrap(["a:1, b:2", "PLAINTEXT://c:3"]);
        assert_eq!(b.bootstrap, ["a:1", "b:2", "PLAINTEXT://c:3"]);
        assert!(b.validate().is_ok());
    }

    #[test]
    fn invalid_settings_name_the_property() {
        let err = ClientBuilder::default().validate().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Config);
        assert!(err.to_string().contains("bootstrap.servers"), "{err}");
        let err = ClientBuilder::default()
            .bootstrap(["localhost"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("host:port"), "{err}");
        let err = ClientBuilder::default()
            .bootstrap(["localhost:9092"])
            .request_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("request.timeout.ms"), "{err}");
    }
}
