//! [`ProducerBuilder`]: every setting with its default and the Kafka property it mirrors.

use std::sync::Arc;
use std::time::Duration;

use super::partitioner::Partitioner;
use super::Producer;
use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::protocol::records::Compression;

/// `acks`: how many replicas must have a record before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `acks=0`: the broker does not answer; offsets are unknown (-1) and nothing is
    /// retried. Fastest, and records can be lost.
    None,
    /// `acks=1`: the leader wrote it.
    Leader,
    /// `acks=all` (-1): every in-sync replica has it. Required by idempotence.
    #[default]
    All,
}

impl Acks {
    pub(crate) fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// The validated producer settings.
#[derive(Clone)]
pub(crate) struct ProducerConfig {
    pub acks: Acks,
    pub linger: Duration,
    pub batch_size: usize,
    pub compression: Compression,
    pub compression_level: Option<i32>,
    pub idempotence: bool,
    pub max_in_flight: usize,
    pub buffer_memory: usize,
    pub max_request_size: usize,
    pub request_timeout: Duration,
    pub delivery_timeout: Duration,
    pub max_block: Duration,
    pub retries: u32,
    pub retry_backoff: Backoff,
    /// `None`: the built-in placement (as [`DefaultPartitioner`](crate::DefaultPartitioner), kept in the
    /// accumulator).
    pub partitioner: Option<Arc<dyn Partitioner>>,
    pub transactional_id: Option<Arc<str>>,
    pub transaction_timeout: Duration,
}

/// Builds a [`Producer`] on a shared [`Client`].
///
/// ```no_run
/// # async fn demo(client: josefine::Client) -> josefine::Result<()> {
/// use std::time::Duration;
/// use josefine::{Acks, Compression, Producer};
/// let producer = Producer::builder(client)
///     .acks(Acks::All)
///     .linger(Duration::from_millis(10))
///     .compression(Compression::Zstd, Some(3))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProducerBuilder {
    client: Client,
    acks: Acks,
    linger: Duration,
    batch_size: usize,
    compression: Compression,
    compression_level: Option<i32>,
    idempotence: Option<bool>,
    max_in_flight: usize,
    buffer_memory: usize,
    max_request_size: usize,
    request_timeout: Duration,
    delivery_timeout: Duration,
    max_block: Duration,
    retries: u32,
    retry_backoff: Backoff,
    partitioner: Option<Arc<dyn Partitioner>>,
    transactional_id: Option<String>,
    transaction_timeout: Duration,
}

impl ProducerBuilder {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 256 * 1024,
            compression: Compression::None,
            compression_level: None,
            idempotence: None,
            max_in_flight: 5,
            buffer_memory: 32 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            max_block: Duration::from_secs(60),
            retries: u32::MAX,
            retry_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            partitioner: None,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }

    /// `acks`. Default [`Acks::All`].
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// `linger.ms`: how long a partition's batch waits for more records before it is
    /// sent. Default 5 ms (Kafka 4.0's default).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// `batch.size`: bytes at which a partition's batch is sent without waiting for
    /// `linger.ms`. Default 256 KiB. A record larger than this gets a batch of its own.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// `compression.type` and `compression.<codec>.level` (`None`: the codec's default).
    /// Default no compression.
    pub fn compression(mut self, compression: Compression, level: Option<i32>) -> Self {
        self.compression = compression;
        self.compression_level = level;
        self
    }

    /// `enable.idempotence`: retries never write a record twice (KIP-98). Default on,
    /// unless `acks` is set to something other than `all`, as in the Java client.
    pub fn idempotence(mut self, enable: bool) -> Self {
        self.idempotence = Some(enable);
        self
    }

    /// `max.in.flight.requests.per.connection`: Produce requests outstanding per broker.
    /// Default 5 (the most idempotence allows). Order within a partition never depends
    /// on it: each partition has at most one batch in flight.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// `buffer.memory`: bytes of records buffered before `send` waits. Default 32 MiB.
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }

    /// `max.request.size`: the largest Produce request, and so the largest record.
    /// Default 1 MiB.
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.max_request_size = bytes;
        self
    }

    /// `request.timeout.ms`: how long to wait for one Produce response. Default 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// `delivery.timeout.ms`: the bound on the time from `send` to a delivery report,
    /// retries included. Default 120 s. Must be at least `linger.ms` +
    /// `request.timeout.ms`.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// `max.block.ms`: how long `send` may wait for metadata of an unknown topic or for
    /// room in `buffer.memory`. Default 60 s.
    pub fn max_block(mut self, timeout: Duration) -> Self {
        self.max_block = timeout;
        self
    }

    /// `retries`: sends of a batch after the first. Default unlimited
    /// (`delivery.timeout.ms` bounds them).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// `retry.backoff.ms` and `retry.backoff.max.ms`. Default 100 ms up to 1 s.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_backoff = Backoff::new(initial, max);
        self
    }

    /// `partitioner.class`: where records without an explicit partition go. Default
    /// [`DefaultPartitioner`](crate::DefaultPartitioner) (murmur2 for keys, sticky for keyless records).
    pub fn partitioner(mut self, partitioner: impl Partitioner) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }

    /// `transactional.id`: makes this a transactional producer (which implies
    /// idempotence). Records are sent only inside a transaction
    /// ([`Producer::begin_transaction`] ... [`Producer::commit_transaction`]); a new
    /// producer with the same id fences this one. Give each instance of a pipeline its
    /// own stable id (e.g. the service name and the instance's ordinal), the same
    /// across restarts, so a restarted instance fences its own zombie. No default.
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// `transaction.timeout.ms`: how long the coordinator lets a transaction stay open
    /// before it aborts it and fences this producer. Must be at most the broker's
    /// `transaction.max.timeout.ms` (15 minutes by default). Default 60 s.
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// Validates the settings and starts the producer's sender task (so it must run
    /// inside a Tokio runtime).
    pub fn build(self) -> Result<Producer> {
        if let Some(id) = &self.transactional_id {
            if id.is_empty() {
                return Err(Error::config("transactional.id must not be empty"));
            }
            if self.idempotence == Some(false) {
                return Err(Error::config(
                    "a transactional producer is idempotent: do not disable enable.idempotence with transactional.id",
                ));
            }
            if self.acks != Acks::All {
                return Err(Error::config("a transactional producer needs acks=all"));
            }
            if self.transaction_timeout.is_zero()
                || self.transaction_timeout.as_millis() > i32::MAX as u128
            {
                return Err(Error::config(
                    "transaction.timeout.ms must be above zero and fit an i32 of milliseconds",
                ));
            }
        }
        let idempotence =
            match self
                .idempotence
                .or(self.transactional_id.as_ref().map(|_| true))
            {
                Some(true) if self.acks != Acks::All => return Err(Error::config(
                    "enable.idempotence requires acks=all; set acks to all or disable idempotence",
                )),
                Some(enabled) => enabled,
                // The Java client's rule: conflicting settings the user chose turn the
                // default idempotence off instead of failing.
                None => self.acks == Acks::All && self.max_in_flight <= 5 && self.retries > 0,
            };
        if idempotence && self.max_in_flight > 5 {
            return Err(Error::config(
                "max.in.flight.requests.per.connection must be at most 5 with idempotence",
            ));
        }
        if idempotence && self.retries == 0 {
            return Err(Error::config("enable.idempotence requires retries > 0"));
        }
        if self.max_in_flight == 0 {
            return Err(Error::config(
                "max.in.flight.requests.per.connection must be at least 1",
            ));
        }
        if self.batch_size == 0 || self.buffer_memory == 0 || self.max_request_size == 0 {
            return Err(Error::config(
                "batch.size, buffer.memory and max.request.size must be greater than zero",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::config(
                "request.timeout.ms must be greater than zero",
            ));
        }
        if self.delivery_timeout < self.linger + self.request_timeout {
            return Err(Error::config(format!(
                "delivery.timeout.ms ({:?}) must be at least linger.ms + request.timeout.ms ({:?})",
                self.delivery_timeout,
                self.linger + self.request_timeout
            )));
        }
        if let Some(feature) = self.compression.disabled_feature() {
            return Err(Error::feature_disabled(
                format_args!("compression.type={}", self.compression),
                feature,
            ));
        }
        self.compression
            .check_level(self.compression_level)
            .map_err(|e| {
                Error::config(format!("compression level for {}: {e}", self.compression))
            })?;
        let config = ProducerConfig {
            acks: self.acks,
            linger: self.linger,
            batch_size: self.batch_size,
            compression: self.compression,
            compression_level: self.compression_level,
            idempotence,
            max_in_flight: self.max_in_flight,
            buffer_memory: self.buffer_memory,
            max_request_size: self.max_request_size,
            request_timeout: self.request_timeout,
            delivery_timeout: self.delivery_timeout,
            max_block: self.max_block,
            retries: self.retries,
            retry_backoff: self.retry_backoff,
            partitioner: self.partitioner,
            transactional_id: self.transactional_id.map(Arc::from),
            transaction_timeout: self.transaction_timeout,
        };
        Ok(Producer::start(self.client, config))
    }
}
