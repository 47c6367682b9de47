//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: Josefine records,
//! the application installs a recorder (an exporter) of its choice, such as
//! `metrics-exporter-prometheus`. Without one, recording costs a few loads per batch
//! and request. Install the recorder **before** building the [`Client`](crate::Client):
//! the client looks its handles up once per connection, partition and group.
//!
//! Every name is a constant here; `docs/METRICS.md` has the table with units, labels
//! and the Java client metric each corresponds to. Counters are per batch or per
//! request, never per record; histograms are in seconds (latency) or bytes.
//!
//! Labels: `broker` (`ID@HOST:PORT`, or the bootstrap address), `api` (Kafka's API
//! name), `topic`, `partition`, `group`, `result` (`ok` or `error`).

use std::sync::OnceLock;

use kafka_protocol::messages::ApiKey;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// Requests sent, by broker and API.
pub const REQUESTS: &str = "josefine.requests";
/// Requests that failed (an error in transport, a timeout, an undecodable answer);
/// Kafka error codes inside answers are counted where they are handled.
pub const REQUEST_ERRORS: &str = "josefine.request.errors";
/// From sending a request to its answer, seconds.
pub const REQUEST_LATENCY: &str = "josefine.request.latency.seconds";
/// Requests waiting for their answer, by broker.
pub const REQUESTS_IN_FLIGHT: &str = "josefine.requests.in_flight";
/// Bytes written to a broker (counter), by broker.
pub const BYTES_SENT: &str = "josefine.network.bytes.sent";
/// Bytes read from a broker (counter), by broker.
pub const BYTES_RECEIVED: &str = "josefine.network.bytes.received";
/// Connections opened (counter), by broker: counted once set up (socket, TLS,
/// ApiVersions, SASL).
pub const CONNECTS: &str = "josefine.connections.opened";
/// Connection attempts that failed, in any step of the set-up (counter), by broker.
pub const CONNECT_FAILURES: &str = "josefine.connections.failed";
/// Connections that ended, closed by an error, the broker or the client (counter), by
/// broker.
pub const DISCONNECTS: &str = "josefine.connections.closed";
/// After a failed connect: how long the broker waits before the next attempt
/// (`reconnect.backoff.ms`, growing with consecutive failures), seconds.
pub const RECONNECT_BACKOFF: &str = "josefine.connections.backoff.seconds";

/// Records fetched per partition (counted per batch as delivered to the partition's
/// reader).
pub const CONSUMER_RECORDS: &str = "josefine.consumer.records";
/// Record bytes fetched per partition (counted per batch as delivered to the
/// partition's reader).
pub const CONSUMER_BYTES: &str = "josefine.consumer.bytes";
/// The high watermark minus the next offset to fetch, after each fetch (Java:
/// `records-lag`).
pub const CONSUMER_LAG: &str = "josefine.consumer.lag";
/// The next offset to fetch.
pub const CONSUMER_POSITION: &str = "josefine.consumer.position";

/// Rebalances this member took part in (a new assignment: session start after a
/// join, a cooperative or KIP-848 update), by `reason` (`rebalance`: the member kept
/// its membership; `lost`: it had lost it, evicted, fenced or stalled, and joined
/// again).
pub const GROUP_REBALANCES: &str = "josefine.group.rebalances";
/// How long each rebalance kept the member from its new assignment, seconds
/// (histogram), by group.
pub const GROUP_REBALANCE_LATENCY: &str = "josefine.group.rebalance.seconds";
/// Heartbeats sent (classic Heartbeat or ConsumerGroupHeartbeat), by `result`.
pub const GROUP_HEARTBEATS: &str = "josefine.group.heartbeats";
/// A heartbeat's round trip, seconds (histogram), by group.
pub const GROUP_HEARTBEAT_LATENCY: &str = "josefine.group.heartbeat.latency.seconds";
/// Offset commits with something to commit, by `result`.
pub const GROUP_COMMITS: &str = "josefine.group.commits";
/// An offset commit's round trip (STALE_MEMBER_EPOCH retries included), seconds
/// (histogram), by group.
pub const GROUP_COMMIT_LATENCY: &str = "josefine.group.commit.latency.seconds";
/// Partitions this member claims now.
pub const GROUP_CLAIMS: &str = "josefine.group.claims";
/// The session's generation (classic) or member epoch (KIP-848).
pub const GROUP_GENERATION: &str = "josefine.group.generation";
/// Where the member is, by `state`: 1 for the current state, 0 for the ones it left
/// (classic: finding_coordinator, joining, syncing, stable, revoking, leaving, left,
/// failed; KIP-848: joining, member, releasing, leaving, left, failed).
pub const GROUP_STATE: &str = "josefine.group.state";
/// The last offset this member committed, per partition.
pub const GROUP_COMMITTED_OFFSET: &str = "josefine.group.committed_offset";

/// Parallel processing (`ConsumerGroup::process`, docs/PROCESSING.md), per group:
/// records running now over the member's claims (gauge, set with each mark, at most
/// every 50 ms).
pub const PROCESS_IN_FLIGHT: &str = "josefine.process.in_flight";
/// Parallel processing, per group: records read but not finished over the member's
/// claims, running or waiting (gauge, set with each mark, at most every 50 ms).
pub const PROCESS_BUFFERED: &str = "josefine.process.buffered";
/// Parallel processing, per group: failed attempts tried again (counter).
pub const PROCESS_RETRIES: &str = "josefine.process.retries";
/// Parallel processing, per group: records handed to the dead-letter hook after their
/// last attempt failed (counter).
pub const PROCESS_DEAD_LETTERS: &str = "josefine.process.dead_letters";
/// Parallel processing, per group: records skipped because the previous owner's done
/// set named them as finished (counter).
pub const PROCESS_SKIPPED: &str = "josefine.process.skipped";

/// Records acknowledged, per topic (counted per batch).
pub const PRODUCER_RECORDS: &str = "josefine.producer.records";
/// Batches acknowledged, per topic.
pub const PRODUCER_BATCHES: &str = "josefine.producer.batches";
/// A batch's size on the wire (after compression), bytes.
pub const PRODUCER_BATCH_BYTES: &str = "josefine.producer.batch.bytes";
/// A batch's records section compressed over uncompressed (1 without compression;
/// Java: `compression-rate`).
pub const PRODUCER_COMPRESSION_RATIO: &str = "josefine.producer.compression.ratio";
/// From a batch's first record being enqueued to its acknowledgement, seconds.
pub const PRODUCER_LATENCY: &str = "josefine.producer.latency.seconds";
/// Batches sent again after a retriable error.
pub const PRODUCER_RETRIES: &str = "josefine.producer.retries";
/// Batches that failed for good, by error.
pub const PRODUCER_ERRORS: &str = "josefine.producer.errors";
/// Bytes of records in the producer's buffer (`buffer.memory` in use), by `client`
/// (`client.id`: give producers distinct ids to tell their buffers apart).
pub const PRODUCER_BUFFER_BYTES: &str = "josefine.producer.buffer.bytes";

/// Enough slots for every API key Kafka defines today; later ones share the last.
const API_SLOTS: usize = 96;

/// One API's handles on one connection.
#[derive(Debug)]
pub(crate) struct ApiMetrics {
    pub requests: Counter,
    pub errors: Counter,
    pub latency: Histogram,
}

/// A connection's handles, looked up once.
#[derive(Debug)]
pub(crate) struct ConnectionMetrics {
    broker: String,
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
    pub in_flight: Gauge,
    apis: Vec<OnceLock<ApiMetrics>>,
}

impl ConnectionMetrics {
    pub(crate) fn new(broker: &str) -> Self {
        let b = broker.to_string();
        Self {
            bytes_sent: counter!(BYTES_SENT, "broker" => b.clone()),
            bytes_received: counter!(BYTES_RECEIVED, "broker" => b.clone()),
            in_flight: gauge!(REQUESTS_IN_FLIGHT, "broker" => b.clone()),
            broker: b,
            apis: (0..API_SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }

    pub(crate) fn api(&self, api: ApiKey) -> &ApiMetrics {
        let slot = usize::try_from(api as i16).unwrap_or(0).min(API_SLOTS - 1);
        self.apis[slot].get_or_init(|| {
            // `ApiKey`'s Debug is its variant name, which is Kafka's name.
            let (broker, name) = (self.broker.clone(), format!("{api:?}"));
            ApiMetrics {
                requests: counter!(REQUESTS, "broker" => broker.clone(), "api" => name.clone()),
                errors: counter!(REQUEST_ERRORS, "broker" => broker.clone(), "api" => name.clone()),
                latency: histogram!(REQUEST_LATENCY, "broker" => broker, "api" => name),
            }
        })
    }
}

/// A failed connect: the broker waits `delay` before the next attempt.
pub(crate) fn reconnect_backoff(broker: &str, delay: std::time::Duration) {
    histogram!(RECONNECT_BACKOFF, "broker" => broker.to_string()).record(delay.as_secs_f64());
}

/// A connection was opened, or failed to open.
pub(crate) fn connected(broker: &str, ok: bool) {
    let name = if ok { CONNECTS } else { CONNECT_FAILURES };
    counter!(name, "broker" => broker.to_string()).increment(1);
}

pub(crate) fn disconnected(broker: &str) {
    counter!(DISCONNECTS, "broker" => broker.to_string()).increment(1);
}

/// A consumed partition's handles.
#[derive(Debug, Clone)]
pub(crate) struct PartitionMetrics {
    pub records: Counter,
    pub bytes: Counter,
    pub lag: Gauge,
    pub position: Gauge,
}

impl PartitionMetrics {
    pub(crate) fn new(topic: &str, partition: i32) -> Self {
        let (t, p) = (topic.to_string(), partition.to_string());
        Self {
            records: counter!(CONSUMER_RECORDS, "topic" => t.clone(), "partition" => p.clone()),
            bytes: counter!(CONSUMER_BYTES, "topic" => t.clone(), "partition" => p.clone()),
            lag: gauge!(CONSUMER_LAG, "topic" => t.clone(), "partition" => p.clone()),
            position: gauge!(CONSUMER_POSITION, "topic" => t, "partition" => p),
        }
    }
}

/// A group member's handles.
#[derive(Debug, Clone)]
pub(crate) struct GroupMetrics {
    group: String,
    rebalances: Counter,
    rebalances_lost: Counter,
    pub rebalance_latency: Histogram,
    pub heartbeats_ok: Counter,
    pub heartbeats_failed: Counter,
    pub heartbeat_latency: Histogram,
    pub commits_ok: Counter,
    pub commits_failed: Counter,
    pub commit_latency: Histogram,
    pub claims: Gauge,
    pub generation: Gauge,
}

/// A processor's handles (one group's).
#[derive(Clone)]
pub(crate) struct ProcessMetrics {
    pub in_flight: Gauge,
    pub buffered: Gauge,
    pub retries: Counter,
    pub dead_letters: Counter,
    pub skipped: Counter,
}

impl ProcessMetrics {
    pub(crate) fn new(group: &str) -> Self {
        let g = group.to_string();
        Self {
            in_flight: gauge!(PROCESS_IN_FLIGHT, "group" => g.clone()),
            buffered: gauge!(PROCESS_BUFFERED, "group" => g.clone()),
            retries: counter!(PROCESS_RETRIES, "group" => g.clone()),
            dead_letters: counter!(PROCESS_DEAD_LETTERS, "group" => g.clone()),
            skipped: counter!(PROCESS_SKIPPED, "group" => g),
        }
    }
}

impl GroupMetrics {
    pub(crate) fn new(group: &str) -> Self {
        let g = group.to_string();
        Self {
            rebalances: counter!(GROUP_REBALANCES, "group" => g.clone(), "reason" => "rebalance"),
            rebalances_lost: counter!(GROUP_REBALANCES, "group" => g.clone(), "reason" => "lost"),
            rebalance_latency: histogram!(GROUP_REBALANCE_LATENCY, "group" => g.clone()),
            heartbeats_ok: counter!(GROUP_HEARTBEATS, "group" => g.clone(), "result" => "ok"),
            heartbeats_failed: counter!(GROUP_HEARTBEATS, "group" => g.clone(), "result" => "error"),
            heartbeat_latency: histogram!(GROUP_HEARTBEAT_LATENCY, "group" => g.clone()),
            commits_ok: counter!(GROUP_COMMITS, "group" => g.clone(), "result" => "ok"),
            commits_failed: counter!(GROUP_COMMITS, "group" => g.clone(), "result" => "error"),
            commit_latency: histogram!(GROUP_COMMIT_LATENCY, "group" => g.clone()),
            claims: gauge!(GROUP_CLAIMS, "group" => g.clone()),
            generation: gauge!(GROUP_GENERATION, "group" => g.clone()),
            group: g,
        }
    }

    /// A new assignment, `took` after the member lost its last one (`lost`: it had
    /// lost its membership, not only its partitions).
    pub(crate) fn rebalanced(&self, lost: bool, took: std::time::Duration) {
        match lost {
            true => self.rebalances_lost.increment(1),
            false => self.rebalances.increment(1),
        }
        self.rebalance_latency.record(took.as_secs_f64());
    }

    /// The member's state gauge, for its driver.
    pub(crate) fn state(&self) -> GroupStateGauge {
        GroupStateGauge {
            group: self.group.clone(),
            current: None,
        }
    }

    pub(crate) fn heartbeat(&self, ok: bool, took: std::time::Duration) {
        match ok {
            true => self.heartbeats_ok.increment(1),
            false => self.heartbeats_failed.increment(1),
        }
        self.heartbeat_latency.record(took.as_secs_f64());
    }

    pub(crate) fn committed(&self, topic: &str, partition: i32, offset: i64) {
        gauge!(GROUP_COMMITTED_OFFSET, "group" => self.group.clone(),
            "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(offset as f64);
    }
}

/// [`GROUP_STATE`]: 1 for the state the member is in, 0 for the one it left. Looked
/// up on each change (a few per rebalance), owned by the membership driver.
#[derive(Debug)]
pub(crate) struct GroupStateGauge {
    group: String,
    current: Option<(&'static str, Gauge)>,
}

impl GroupStateGauge {
    pub(crate) fn set(&mut self, state: &'static str) {
        if self.current.as_ref().is_some_and(|(now, _)| *now == state) {
            return;
        }
        if let Some((_, left)) = self.current.take() {
            left.set(0.0);
        }
        let gauge = gauge!(GROUP_STATE, "group" => self.group.clone(), "state" => state);
        gauge.set(1.0);
        self.current = Some((state, gauge));
    }
}

/// A producer's handles for one topic.
#[derive(Debug, Clone)]
pub(crate) struct ProducerTopicMetrics {
    pub records: Counter,
    pub batches: Counter,
    pub batch_bytes: Histogram,
    pub compression_ratio: Histogram,
    pub latency: Histogram,
    pub retries: Counter,
}

impl ProducerTopicMetrics {
    pub(crate) fn new(topic: &str) -> Self {
        let t = topic.to_string();
        Self {
            records: counter!(PRODUCER_RECORDS, "topic" => t.clone()),
            batches: counter!(PRODUCER_BATCHES, "topic" => t.clone()),
            batch_bytes: histogram!(PRODUCER_BATCH_BYTES, "topic" => t.clone()),
            compression_ratio: histogram!(PRODUCER_COMPRESSION_RATIO, "topic" => t.clone()),
            latency: histogram!(PRODUCER_LATENCY, "topic" => t.clone()),
            retries: counter!(PRODUCER_RETRIES, "topic" => t),
        }
    }
}

/// A batch failed for good.
pub(crate) fn produce_failed(topic: &str, error: &str) {
    counter!(PRODUCER_ERRORS, "topic" => topic.to_string(), "error" => error.to_string())
        .increment(1);
}

pub(crate) fn producer_buffer(client_id: &str) -> Gauge {
    gauge!(PRODUCER_BUFFER_BYTES, "client" => client_id.to_string())
}

/// A recorder that keeps every value in memory: for applications without a metrics
/// backend (read [`snapshot`](Self::snapshot) now and then, or serve it) and for
/// tests. Counters and gauges hold their value; a histogram holds its count, sum,
/// minimum and maximum (never the samples: memory stays bounded).
///
/// ```
/// let stats = josefine::metrics::MemoryRecorder::default();
/// stats.install().expect("no other recorder installed");
/// // ... build the client, consume ...
/// let fetched = stats.counter(josefine::metrics::CONSUMER_RECORDS, &[("topic", "orders")]);
/// # assert_eq!(fetched, 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryRecorder {
    metrics: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<MetricKey, Slot>>>,
}

/// A metric's name and labels (sorted by label name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    /// The metric's name, one of this module's constants for Josefine's own.
    pub name: String,
    /// The labels as `(name, value)` pairs, sorted by name.
    pub labels: Vec<(String, String)>,
}

/// A metric's value in a [`MemoryRecorder`] snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's last value.
    Gauge(f64),
    /// What is kept of a histogram's samples.
    Histogram(HistogramSummary),
}

/// What a [`MemoryRecorder`] keeps of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct HistogramSummary {
    /// How many samples were recorded.
    pub count: u64,
    /// The samples' sum.
    pub sum: f64,
    /// The smallest sample; 0 before the first.
    pub min: f64,
    /// The largest sample; 0 before the first.
    pub max: f64,
}

impl HistogramSummary {
    /// The samples' mean, `sum / count`; `None` without samples.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

#[derive(Debug, Clone)]
enum Slot {
    Counter(std::sync::Arc<std::sync::atomic::AtomicU64>),
    Gauge(std::sync::Arc<std::sync::atomic::AtomicU64>),
    Histogram(std::sync::Arc<SummaryCell>),
}

impl Slot {
    fn value(&self) -> MetricValue {
        use std::sync::atomic::Ordering;
        match self {
            Slot::Counter(c) => MetricValue::Counter(c.load(Ordering::Relaxed)),
            Slot::Gauge(g) => MetricValue::Gauge(f64::from_bits(g.load(Ordering::Relaxed))),
            Slot::Histogram(h) => MetricValue::Histogram(*h.0.lock().expect("never poisoned")),
        }
    }
}

#[derive(Debug, Default)]
struct SummaryCell(std::sync::Mutex<HistogramSummary>);

impl metrics::HistogramFn for SummaryCell {
    fn record(&self, value: f64) {
        let mut s = self.0.lock().expect("never poisoned");
        if s.count == 0 {
            s.min = value;
            s.max = value;
        } else {
            s.min = s.min.min(value);
            s.max = s.max.max(value);
        }
        s.count += 1;
        s.sum += value;
    }
}

impl MemoryRecorder {
    /// Makes this the process's recorder (once per process; fails if one is set).
    pub fn install(&self) -> crate::Result<()> {
        metrics::set_global_recorder(self.clone()).map_err(|_| {
            crate::Error::config("a metrics recorder is installed already (one per process)")
        })
    }

    /// Every metric recorded so far, sorted by name and labels.
    pub fn snapshot(&self) -> Vec<(MetricKey, MetricValue)> {
        let metrics = self.metrics.lock().expect("never poisoned");
        metrics
            .iter()
            .map(|(key, slot)| (key.clone(), slot.value()))
            .collect()
    }

    /// The values of `name` whose labels include every one of `labels` (read in
    /// place: no copy of the other metrics).
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<MetricValue> {
        let metrics = self.metrics.lock().expect("never poisoned");
        metrics
            .iter()
            .filter(|(key, _)| {
                key.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, slot)| slot.value())
            .collect()
    }

    /// The sum of the counters `name` with these labels (0 if none).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .iter()
            .map(|v| match v {
                MetricValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    }

    /// The gauge `name` with these labels, if exactly one matches.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.matching(name, labels).as_slice() {
            [MetricValue::Gauge(v)] => Some(*v),
            _ => None,
        }
    }

    /// The histograms `name` with these labels, merged.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> HistogramSummary {
        let mut merged = HistogramSummary::default();
        for value in self.matching(name, labels) {
            if let MetricValue::Histogram(h) = value {
                if h.count == 0 {
                    continue;
                }
                if merged.count == 0 {
                    merged = h;
                } else {
                    merged.count += h.count;
                    merged.sum += h.sum;
                    merged.min = merged.min.min(h.min);
                    merged.max = merged.max.max(h.max);
                }
            }
        }
        merged
    }

    fn slot(&self, key: &metrics::Key, make: impl FnOnce() -> Slot) -> Slot {
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
        let key = MetricKey {
            name: key.name().to_string(),
            labels,
        };
        self.metrics
            .lock()
            .expect("never poisoned")
            .entry(key)
            .or_insert_with(make)
            .clone()
    }
}

impl metrics::Recorder for MemoryRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> Counter {
        match self.slot(key, || Slot::Counter(Default::default())) {
            Slot::Counter(c) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> Gauge {
        match self.slot(key, || Slot::Gauge(Default::default())) {
            Slot::Gauge(g) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> Histogram {
        match self.slot(key, || Slot::Histogram(Default::default())) {
            Slot::Histogram(h) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}
