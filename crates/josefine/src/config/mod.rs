//! Configuration from Kafka properties (`bootstrap.servers`, `group.id`,
//! `session.timeout.ms`, ...), as the Java client and librdkafka name them, for
//! programs and tools that take their settings from files or the command line.
//!
//! ```
//! # fn main() -> josefine::Result<()> {
//! let config = josefine::Config::from_properties([
//!     ("bootstrap.servers", "localhost:9092"),
//!     ("group.id", "orders-service"),
//!     ("auto.offset.reset", "earliest"),
//! ])?;
//! assert_eq!(config.get("group.id"), Some("orders-service"));
//!
//! let typo = josefine::Config::from_properties([("sesion.timeout.ms", "3000")]).unwrap_err();
//! assert!(typo.to_string().contains("did you mean session.timeout.ms"));
//! # Ok(())
//! # }
//! ```
//!
//! Every key and value is checked when it is set, so a typo fails at once with the
//! closest known keys, not later (or never, as an ignored setting). The builders it
//! fills ([`Config::client_builder`], [`Config::producer_builder`],
//! [`Config::consumer_builder`], [`Config::group_builder`]) take only the keys that
//! concern them; the library's defaults apply to everything not set.

mod keys;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::consumer::{ConsumerBuilder, IsolationLevel, OffsetReset};
use crate::error::{Error, Result};
use crate::group::{AssignorKind, ConsumerGroup, ConsumerGroupBuilder, GroupProtocol};
use crate::net::sasl::{Credentials, SaslConfig};
use crate::net::tls::TlsConfig;
use crate::producer::{Acks, Producer, ProducerBuilder};
use crate::protocol::records::Compression;
use crate::{Client, ClientBuilder, Consumer};

/// Validated Kafka properties; see the module docs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets (SASL passwords and the like) never reach logs.
        f.debug_map()
            .entries(self.values.iter().map(|(k, v)| {
                let secret = k.contains("password") || k.contains("secret");
                (k, if secret { "[redacted]" } else { v.as_str() })
            }))
            .finish()
    }
}

impl Config {
    /// An empty configuration; every setting keeps the library's default.
    pub fn new() -> Self {
        Self::default()
    }

    /// A configuration from key/value pairs; the first bad one is the error.
    pub fn from_properties<I, K, V>(properties: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = Self::new();
        for (key, value) in properties {
            config.set(key.as_ref(), value.as_ref())?;
        }
        Ok(config)
    }

    /// A configuration from a Java `.properties` file: `key=value` (or `key: value`)
    /// per line, `#` and `!` comment lines.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::parse_properties(&text)
            .map_err(|e| Error::config(format!("{}: {}", path.display(), e.message())))
    }

    /// Parses the text of a `.properties` file (see [`from_file`](Self::from_file)).
    pub fn parse_properties(text: &str) -> Result<Self> {
        let mut config = Self::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line.split_once(['=', ':']) else {
                return Err(Error::config(format!(
                    "line {}: expected key=value, got {line:?}",
                    number + 1
                )));
            };
            config
                .set(key.trim(), value.trim())
                .map_err(|e| Error::config(format!("line {}: {}", number + 1, e.message())))?;
        }
        Ok(config)
    }

    /// Sets one property (later settings win), after checking the key is known and the
    /// value has the right form.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        let key = key.trim();
        let Some(kind) = keys::kind(key) else {
            let hint = match keys::closest(key).as_slice() {
                [] => "see the list of supported properties in the josefine docs".to_string(),
                close => format!("did you mean {}?", close.join(" or ")),
            };
            return Err(Error::config(format!("unknown property {key:?}; {hint}")));
        };
        keys::check(kind, value)
            .map_err(|why| Error::config(format!("property {key}={value:?}: {why}")))?;
        self.values
            .insert(key.to_string(), value.trim().to_string());
        Ok(self)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every property set, as key and value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn millis(&self, key: &str) -> Option<Duration> {
        self.number(key).map(Duration::from_millis)
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.get(key)
            .map(|v| v.parse().expect("checked when it was set"))
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| v.eq_ignore_ascii_case("true"))
    }

    fn word(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_ascii_lowercase)
    }

    fn list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
    }

    /// A [`ClientBuilder`] from `bootstrap.servers`, `client.id`, timeouts and
    /// backoffs. `bootstrap.servers` is required.
    pub fn client_builder(&self) -> Result<ClientBuilder> {
        let servers = self.list("bootstrap.servers").ok_or_else(|| {
            Error::config("bootstrap.servers is not set: give host:port of at least one broker")
        })?;
        let mut builder = Client::builder().bootstrap(servers);
        let protocol = self.word("security.protocol");
        let tls_wanted = matches!(protocol.as_deref(), Some("ssl" | "sasl_ssl"));
        if tls_wanted {
            builder = builder.tls(self.tls_config());
        } else if self.values.keys().any(|k| k.starts_with("ssl.")) {
            return Err(Error::config(
                "ssl.* settings are set but security.protocol is not SSL or SASL_SSL",
            ));
        }
        if let Some(sasl) = self.sasl_config(protocol.as_deref())? {
            builder = builder.sasl(sasl);
        }
        if let Some(id) = self.get("client.id") {
            builder = builder.client_id(id);
        }
        if let Some(t) = self.millis("request.timeout.ms") {
            builder = builder.request_timeout(t);
        }
        if let Some(t) = self.millis("socket.connection.setup.timeout.ms") {
            builder = builder.connect_timeout(t);
        }
        if let Some((initial, max)) = self.backoff("reconnect.backoff", 50, 1000) {
            builder = builder.reconnect_backoff(initial, max);
        }
        if let Some((initial, max)) = self.backoff("retry.backoff", 100, 1000) {
            builder = builder.retry_backoff(initial, max);
        }
        if let Some(t) = self.millis("metadata.max.age.ms") {
            builder = builder.metadata_max_age(t);
        }
        if let Some(allow) = self.flag("allow.auto.create.topics") {
            builder = builder.allow_auto_create_topics(allow);
        }
        Ok(builder)
    }

    fn tls_config(&self) -> TlsConfig {
        let mut tls = TlsConfig::new();
        if let Some(ca) = self.get("ssl.ca.location") {
            tls = tls.ca_location(ca);
        }
        if let (Some(cert), Some(key)) = (
            self.get("ssl.certificate.location"),
            self.get("ssl.key.location"),
        ) {
            tls = tls.client_certificate(cert, key);
        }
        if self
            .word("ssl.endpoint.identification.algorithm")
            .as_deref()
            == Some("none")
        {
            tls = tls.verify_hostname(false);
        }
        tls
    }

    /// The SASL settings when `protocol` asks for SASL; errors when something needed
    /// is missing, or when SASL is configured but the protocol does not use it.
    fn sasl_config(&self, protocol: Option<&str>) -> Result<Option<SaslConfig>> {
        let wanted = matches!(protocol, Some("sasl_plaintext" | "sasl_ssl"));
        let configured = self.values.keys().any(|k| k.starts_with("sasl."));
        if !wanted {
            if configured {
                return Err(Error::config(
                    "sasl.* settings are set but security.protocol is not SASL_PLAINTEXT or SASL_SSL",
                ));
            }
            return Ok(None);
        }
        let mechanism = self
            .get("sasl.mechanism")
            .unwrap_or("PLAIN")
            .to_ascii_uppercase();
        let credentials = || -> Result<Credentials> {
            match (self.get("sasl.username"), self.get("sasl.password")) {
                (Some(user), Some(password)) => Ok(Credentials::new(user, password)),
                _ => Err(Error::config(format!(
                    "sasl.mechanism={mechanism} needs sasl.username and sasl.password"
                ))),
            }
        };
        Ok(Some(match mechanism.as_str() {
            "SCRAM-SHA-256" => SaslConfig::ScramSha256(credentials()?),
            "SCRAM-SHA-512" => SaslConfig::ScramSha512(credentials()?),
            "OAUTHBEARER" => {
                return Err(Error::config(
                    "sasl.mechanism=OAUTHBEARER needs a token provider: set it in code with \
                     ClientBuilder::sasl(SaslConfig::OAuthBearer(..))",
                ))
            }
            _ => SaslConfig::Plain(credentials()?),
        }))
    }

    /// Connects a [`Client`] (see [`client_builder`](Self::client_builder)).
    pub async fn client(&self) -> Result<Client> {
        self.client_builder()?.connect().await
    }

    /// `PREFIX.ms` and `PREFIX.max.ms` as a pair, if either is set; the other keeps
    /// its default (the maximum never below the initial).
    fn backoff(&self, prefix: &str, initial_ms: u64, max_ms: u64) -> Option<(Duration, Duration)> {
        let initial = self.millis(&format!("{prefix}.ms"));
        let max = self.millis(&format!("{prefix}.max.ms"));
        if initial.is_none() && max.is_none() {
            return None;
        }
        let initial = initial.unwrap_or(Duration::from_millis(initial_ms));
        let max = max.unwrap_or(Duration::from_millis(max_ms)).max(initial);
        Some((initial, max))
    }

    /// A [`ProducerBuilder`] from `acks`, `compression.type`, `linger.ms`,
    /// `batch.size`, `enable.idempotence`, `transactional.id`, and the producer's
    /// limits and timeouts.
    pub fn producer_builder(&self, client: Client) -> Result<ProducerBuilder> {
        let mut builder = Producer::builder(client);
        if let Some(acks) = self.word("acks") {
            builder = builder.acks(match acks.as_str() {
                "0" => Acks::None,
                "1" => Acks::Leader,
                _ => Acks::All,
            });
        }
        if let Some(codec) = self.word("compression.type") {
            let level = self.get("compression.level").map(|l| {
                l.parse::<i32>()
                    .map_err(|_| Error::config("compression.level must fit in 32 bits"))
            });
            let compression = match codec.as_str() {
                "gzip" => Compression::Gzip,
                "snappy" => Compression::Snappy,
                "lz4" => Compression::Lz4,
                "zstd" => Compression::Zstd,
                _ => Compression::None,
            };
            builder = builder.compression(compression, level.transpose()?);
        }
        if let Some(t) = self.millis("linger.ms") {
            builder = builder.linger(t);
        }
        if let Some(n) = self.count("batch.size")? {
            builder = builder.batch_size(n);
        }
        if let Some(on) = self.flag("enable.idempotence") {
            builder = builder.idempotence(on);
        }
        if let Some(id) = self.get("transactional.id") {
            builder = builder.transactional_id(id);
        }
        if let Some(t) = self.millis("transaction.timeout.ms") {
            builder = builder.transaction_timeout(t);
        }
        if let Some(n) = self.count("max.in.flight.requests.per.connection")? {
            builder = builder.max_in_flight(n);
        }
        if let Some(n) = self.count("buffer.memory")? {
            builder = builder.buffer_memory(n);
        }
        if let Some(n) = self.count("max.request.size")? {
            builder = builder.max_request_size(n);
        }
        if let Some(t) = self.millis("request.timeout.ms") {
            builder = builder.request_timeout(t);
        }
        if let Some(t) = self.millis("delivery.timeout.ms") {
            builder = builder.delivery_timeout(t);
        }
        if let Some(t) = self.millis("max.block.ms") {
            builder = builder.max_block(t);
        }
        if let Some(n) = self.number("retries") {
            builder = builder.retries(u32::try_from(n).unwrap_or(u32::MAX));
        }
        if let Some((initial, max)) = self.backoff("retry.backoff", 100, 1000) {
            builder = builder.retry_backoff(initial, max);
        }
        Ok(builder)
    }

    fn count(&self, key: &str) -> Result<Option<usize>> {
        self.number(key)
            .map(|n| {
                usize::try_from(n).map_err(|_| Error::config(format!("{key}={n} is too large")))
            })
            .transpose()
    }

    fn count_i32(&self, key: &str) -> Result<Option<i32>> {
        self.number(key)
            .map(|n| {
                i32::try_from(n)
                    .map_err(|_| Error::config(format!("{key}={n} is too large (max 2^31-1)")))
            })
            .transpose()
    }

    /// A [`ConsumerBuilder`] from the fetch settings, `isolation.level`,
    /// `check.crcs` and `auto.offset.reset`.
    pub fn consumer_builder(&self, client: Client) -> Result<ConsumerBuilder> {
        self.apply_consumer(Consumer::builder(client))
    }

    fn apply_consumer(&self, mut builder: ConsumerBuilder) -> Result<ConsumerBuilder> {
        if let Some(n) = self.count_i32("fetch.min.bytes")? {
            builder = builder.fetch_min_bytes(n);
        }
        if let Some(t) = self.millis("fetch.max.wait.ms") {
            builder = builder.fetch_max_wait(t);
        }
        if let Some(n) = self.count_i32("fetch.max.bytes")? {
            builder = builder.fetch_max_bytes(n);
        }
        if let Some(n) = self.count_i32("max.partition.fetch.bytes")? {
            builder = builder.max_partition_fetch_bytes(n);
        }
        if let Some(kib) = self.count("queued.max.messages.kbytes")? {
            builder = builder.queued_max_bytes(kib.saturating_mul(1024));
        }
        if let Some(level) = self.word("isolation.level") {
            builder = builder.isolation_level(if level == "read_committed" {
                IsolationLevel::ReadCommitted
            } else {
                IsolationLevel::ReadUncommitted
            });
        }
        if let Some(on) = self.flag("check.crcs") {
            builder = builder.check_crcs(on);
        }
        if let Some(reset) = self.offset_reset() {
            builder = builder.auto_offset_reset(reset);
        }
        if let Some(t) = self.millis("request.timeout.ms") {
            builder = builder.request_timeout(t);
        }
        Ok(builder)
    }

    fn offset_reset(&self) -> Option<OffsetReset> {
        self.word("auto.offset.reset")
            .map(|reset| match reset.as_str() {
                "earliest" => OffsetReset::Earliest,
                "none" => OffsetReset::None,
                _ => OffsetReset::Latest,
            })
    }

    /// A [`ConsumerGroupBuilder`] from `group.id` (required), the membership settings,
    /// `partition.assignment.strategy`, commits, and the consumer settings.
    pub fn group_builder(&self, client: Client) -> Result<ConsumerGroupBuilder> {
        let group = self
            .get("group.id")
            .ok_or_else(|| Error::config("group.id is not set: name the consumer group"))?;
        let consumer = self.apply_consumer(Consumer::builder(client.clone()))?;
        let mut builder = ConsumerGroup::builder(client, group).consumer(|_| consumer);
        if let Some(t) = self.millis("session.timeout.ms") {
            builder = builder.session_timeout(t);
        }
        if let Some(t) = self.millis("heartbeat.interval.ms") {
            builder = builder.heartbeat_interval(t);
        }
        if let Some(t) = self.millis("max.poll.interval.ms") {
            builder = builder.rebalance_timeout(t);
        }
        if let Some(id) = self.get("group.instance.id") {
            builder = builder.instance_id(id);
        }
        if let Some(protocol) = self.word("group.protocol") {
            builder = builder.protocol(match protocol.as_str() {
                "consumer" => GroupProtocol::Consumer,
                _ => GroupProtocol::Classic,
            });
        }
        if let Some(name) = self.get("group.remote.assignor") {
            builder = builder.remote_assignor(name);
        }
        if let Some(names) = self.list("partition.assignment.strategy") {
            let assignors = names
                .iter()
                .map(|name| assignor(name))
                .collect::<Result<Vec<_>>>()?;
            builder = builder.assignors(assignors);
        }
        if let Some(reset) = self.offset_reset() {
            builder = builder.auto_offset_reset(reset);
        }
        if let Some(on) = self.flag("enable.auto.commit") {
            builder = builder.auto_commit(on);
        }
        if let Some(t) = self.millis("auto.commit.interval.ms") {
            builder = builder.auto_commit_interval(t);
        }
        if let Some((initial, max)) = self.backoff("retry.backoff", 100, 1000) {
            builder = builder.retry_backoff(initial, max);
        }
        Ok(builder)
    }
}

/// An assignor by its protocol name (`range`, `cooperative-sticky`, ...) or the Java
/// class name users copy from Java configs.
fn assignor(name: &str) -> Result<AssignorKind> {
    let short = match name.rsplit('.').next().unwrap_or(name) {
        "RangeAssignor" => "range",
        "RoundRobinAssignor" => "roundrobin",
        "StickyAssignor" => "sticky",
        "CooperativeStickyAssignor" => "cooperative-sticky",
        _ => name,
    };
    AssignorKind::by_name(&short.to_ascii_lowercase()).ok_or_else(|| {
        Error::config(format!(
            "partition.assignment.strategy: unknown assignor {name:?}; \
             use range, roundrobin, sticky or cooperative-sticky"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_the_closest_known_ones() {
        let err = Config::from_properties([("sesion.timeout.ms", "3000")]).unwrap_err();
        assert!(
            err.to_string().contains("did you mean session.timeout.ms"),
            "{err}"
        );
        let err = Config::from_properties([("zzzz", "1")]).unwrap_err();
        assert!(
            err.to_string().contains("unknown property \"zzzz\""),
            "{err}"
        );
    }

    #[test]
    fn malformed_values_say_what_was_expected() {
        let err = Config::from_properties([("session.timeout.ms", "3s")]).unwrap_err();
        assert!(
            err.to_string().contains("session.timeout.ms=\"3s\""),
            "{err}"
        );
        assert!(err.to_string().contains("milliseconds"), "{err}");
        let err = Config::from_properties([("acks", "some")]).unwrap_err();
        assert!(err.to_string().contains("all, -1, 0, 1"), "{err}");
    }

    #[test]
    fn properties_files_parse_with_comments_and_both_separators() {
        let config = Config::parse_properties(
            "# a comment\n! another\n\nbootstrap.servers = a:1,b:2\ngroup.id: orders\n",
        )
        .unwrap();
        assert_eq!(config.get("bootstrap.servers"), Some("a:1,b:2"));
        assert_eq!(config.get("group.id"), Some("orders"));
        let err = Config::parse_properties("group.id orders").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = Config::parse_properties("\ngroupid=x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid configuration: line 2: unknown property \"groupid\""),
            "said once, with the line: {err}"
        );
    }

    #[test]
    fn later_settings_win() {
        let mut config = Config::from_properties([("group.id", "a")]).unwrap();
        config.set("group.id", "b").unwrap();
        assert_eq!(config.get("group.id"), Some("b"));
    }

    #[test]
    fn assignors_by_protocol_or_java_class_name() {
        assert_eq!(assignor("range").unwrap(), AssignorKind::Range);
        assert_eq!(
            assignor("org.apache.kafka.clients.consumer.CooperativeStickyAssignor").unwrap(),
            AssignorKind::CooperativeSticky
        );
        assert!(assignor("fair").is_err());
    }

    #[tokio::test]
    async fn builders_need_their_required_keys() {
        let config = Config::new();
        let err = config.client_builder().unwrap_err();
        assert!(err.to_string().contains("bootstrap.servers"), "{err}");
        let config = Config::from_properties([
            ("bootstrap.servers", "127.0.0.1:1"),
            ("security.protocol", "SASL_SSL"),
        ])
        .unwrap();
        let err = config.client_builder().unwrap_err();
        assert!(err.to_string().contains("needs sasl.username"), "{err}");
        let config = Config::from_properties([
            ("bootstrap.servers", "127.0.0.1:1"),
            ("ssl.ca.location", "/ca.pem"),
        ])
        .unwrap();
        let err = config.client_builder().unwrap_err();
        assert!(err.to_string().contains("security.protocol"), "{err}");
        let config = Config::from_properties([("bootstrap.servers", "127.0.0.1:1")]).unwrap();
        let client = config.client_builder().unwrap().build().unwrap();
        let err = config.group_builder(client).err().unwrap();
        assert!(err.to_string().contains("group.id"), "{err}");
    }

    /// A client from `bootstrap.servers` and `pairs`.
    #[cfg(not(all(feature = "tls", feature = "sasl", feature = "zstd")))]
    fn client_with(pairs: &[(&str, &str)]) -> Result<Client> {
        let mut config = Config::from_properties(pairs.iter().copied())?;
        config.set("bootstrap.servers", "127.0.0.1:1")?;
        config.client_builder()?.build()
    }

    #[cfg(not(all(feature = "tls", feature = "sasl", feature = "zstd")))]
    fn assert_names_feature(err: Error, feature: &str) {
        assert_eq!(err.kind(), &crate::ErrorKind::Config, "{err}");
        let wanted = format!("`{feature}` feature");
        assert!(err.to_string().contains(&wanted), "{err}");
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn tls_settings_without_the_tls_feature_name_it() {
        assert_names_feature(
            client_with(&[("security.protocol", "SSL")]).unwrap_err(),
            "tls",
        );
        let sasl_ssl = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ];
        assert_names_feature(client_with(&sasl_ssl).unwrap_err(), "tls");
        client_with(&[("security.protocol", "PLAINTEXT")]).unwrap();
    }

    #[cfg(not(feature = "sasl"))]
    #[tokio::test]
    async fn scram_without_the_sasl_feature_names_it() {
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let err = client_with(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", mechanism),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ])
            .unwrap_err();
            assert!(err.to_string().contains(mechanism), "{err}");
            assert_names_feature(err, "sasl");
        }
        // PLAIN needs no feature.
        client_with(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ])
        .unwrap();
    }

    #[cfg(not(feature = "zstd"))]
    #[tokio::test]
    async fn zstd_compression_without_the_zstd_feature_names_it() {
        let client = client_with(&[]).unwrap();
        let producer = |codec: &str| {
            Config::from_properties([("compression.type", codec)])
                .unwrap()
                .producer_builder(client.clone())
                .unwrap()
                .build()
        };
        let err = producer("zstd").err().unwrap();
        assert!(err.to_string().contains("compression.type=zstd"), "{err}");
        assert_names_feature(err, "zstd");
        producer("lz4").unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut config = Config::new();
        config
            .values
            .insert("sasl.password".into(), "hunter2".into());
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
