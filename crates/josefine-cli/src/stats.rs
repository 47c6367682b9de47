//! The client's own figures while a command runs: `--metrics-addr` serves them to
//! Prometheus, `consume --stats` shows them on stderr. Both read the library's metrics
//! (docs/METRICS.md) through one recorder installed before the client is built; with
//! both flags the recorder fans out to the two.
//!
//! `--stats` redraws a block of lines in place on a terminal and writes one `stats:`
//! line per interval anywhere else (a log keeps a history), plus a last one at the end.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use josefine::metrics::{self as m, MemoryRecorder, MetricValue};
use metrics_util::layers::FanoutBuilder;

use crate::progress::human;

/// Installs the process's recorder: a Prometheus exporter at `metrics_addr`, a memory
/// recorder when `stats` (returned, for [`StatsView`]), both, or none.
pub fn install(
    metrics_addr: Option<SocketAddr>,
    stats: bool,
) -> anyhow::Result<Option<MemoryRecorder>> {
    let memory = stats.then(MemoryRecorder::default);
    let prometheus = match metrics_addr {
        None => None,
        Some(addr) => {
            let (recorder, exporter) = metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .build()
                .with_context(|| format!("cannot serve metrics at {addr}"))?;
            tokio::spawn(async move {
                if exporter.await.is_err() {
                    eprintln!("warning: the metrics listener at {addr} stopped");
                }
            });
            tracing::info!(%addr, "serving metrics");
            Some(recorder)
        }
    };
    let refused = || anyhow::anyhow!("a metrics recorder is installed already");
    match (prometheus, &memory) {
        (None, None) => {}
        (Some(prometheus), None) => {
            metrics::set_global_recorder(prometheus).map_err(|_| refused())?;
        }
        (None, Some(memory)) => {
            metrics::set_global_recorder(memory.clone()).map_err(|_| refused())?;
        }
        (Some(prometheus), Some(memory)) => {
            let both = FanoutBuilder::default()
                .add_recorder(prometheus)
                .add_recorder(memory.clone())
                .build();
            metrics::set_global_recorder(both).map_err(|_| refused())?;
        }
    }
    Ok(memory)
}

/// The partitions this process reads now: a partition's lag gauge keeps its last
/// value after the partition is gone, so the view sums only these.
#[derive(Default)]
pub struct Held(Mutex<BTreeSet<(String, i32)>>);

impl Held {
    /// Counts `partition` of `topic` as read until the guard drops.
    pub fn hold(self: &Arc<Self>, topic: &str, partition: i32) -> HeldGuard {
        let key = (topic.to_string(), partition);
        self.0.lock().expect("never poisoned").insert(key.clone());
        HeldGuard {
            held: self.clone(),
            key,
        }
    }

    fn contains(&self, topic: &str, partition: &str) -> bool {
        let Ok(partition) = partition.parse() else {
            return false;
        };
        let held = self.0.lock().expect("never poisoned");
        held.contains(&(topic.to_string(), partition))
    }

    fn len(&self) -> usize {
        self.0.lock().expect("never poisoned").len()
    }
}

/// Removes its partition from [`Held`] when dropped.
pub struct HeldGuard {
    held: Arc<Held>,
    key: (String, i32),
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.held
            .0
            .lock()
            .expect("never poisoned")
            .remove(&self.key);
    }
}

/// The counters rates are computed from.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Totals {
    records: u64,
    bytes: u64,
    requests: u64,
}

/// What one frame shows, read from a recorder's snapshot.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    totals: Totals,
    /// Summed over the held partitions with a lag gauge; the largest one.
    lag: i64,
    lag_partitions: usize,
    most_behind: Option<(String, i64)>,
    /// Present when the command is a group member.
    group: Option<GroupFigures>,
    request_latency: m::HistogramSummary,
    in_flight: f64,
    opened: u64,
    closed: u64,
    failed: u64,
}

#[derive(Debug, Default, PartialEq)]
struct GroupFigures {
    generation: f64,
    claims: f64,
    rebalances: u64,
    rebalance: m::HistogramSummary,
    commits_ok: u64,
    commits_failed: u64,
    commit_latency: m::HistogramSummary,
    heartbeats_ok: u64,
    heartbeats_failed: u64,
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn figures(recorder: &MemoryRecorder, held: &Held, group: Option<&str>) -> Figures {
    let mut f = Figures::default();
    for (key, value) in recorder.snapshot() {
        match (key.name.as_str(), value) {
            (m::CONSUMER_RECORDS, MetricValue::Counter(n)) => f.totals.records += n,
            (m::CONSUMER_BYTES, MetricValue::Counter(n)) => f.totals.bytes += n,
            (m::REQUESTS, MetricValue::Counter(n)) => f.totals.requests += n,
            (m::CONSUMER_LAG, MetricValue::Gauge(lag)) => {
                let (topic, partition) =
                    (label(&key.labels, "topic"), label(&key.labels, "partition"));
                if held.contains(topic, partition) {
                    let lag = lag as i64;
                    f.lag += lag;
                    f.lag_partitions += 1;
                    if f.most_behind.as_ref().is_none_or(|(_, most)| lag > *most) {
                        f.most_behind = Some((format!("{topic}/{partition}"), lag));
                    }
                }
            }
            (m::REQUESTS_IN_FLIGHT, MetricValue::Gauge(n)) => f.in_flight += n,
            (m::CONNECTS, MetricValue::Counter(n)) => f.opened += n,
            (m::DISCONNECTS, MetricValue::Counter(n)) => f.closed += n,
            (m::CONNECT_FAILURES, MetricValue::Counter(n)) => f.failed += n,
            _ => {}
        }
    }
    f.request_latency = recorder.histogram(m::REQUEST_LATENCY, &[]);
    f.group = group.map(|g| {
        let of = [("group", g)];
        let result = |r: &'static str| [("group", g), ("result", r)];
        GroupFigures {
            generation: recorder.gauge(m::GROUP_GENERATION, &of).unwrap_or(0.0),
            claims: recorder.gauge(m::GROUP_CLAIMS, &of).unwrap_or(0.0),
            rebalances: recorder.counter(m::GROUP_REBALANCES, &of),
            rebalance: recorder.histogram(m::GROUP_REBALANCE_LATENCY, &of),
            commits_ok: recorder.counter(m::GROUP_COMMITS, &result("ok")),
            commits_failed: recorder.counter(m::GROUP_COMMITS, &result("error")),
            commit_latency: recorder.histogram(m::GROUP_COMMIT_LATENCY, &of),
            heartbeats_ok: recorder.counter(m::GROUP_HEARTBEATS, &result("ok")),
            heartbeats_failed: recorder.counter(m::GROUP_HEARTBEATS, &result("error")),
        }
    });
    f
}

fn millis(h: &m::HistogramSummary) -> String {
    h.mean()
        .map_or("-".to_string(), |mean| format!("{:.1} ms", mean * 1e3))
}

/// A frame's lines; `per_second` holds the counters' rates since the last frame.
fn render(f: &Figures, per_second: Option<(f64, f64, f64)>, held: usize) -> Vec<String> {
    let rate = |r: Option<f64>| r.map_or(String::new(), |r| format!(" ({}/s)", human(r)));
    let (records, bytes, requests) = match per_second {
        Some((a, b, c)) => (Some(a), Some(b), Some(c)),
        None => (None, None, None),
    };
    let behind = f
        .most_behind
        .as_ref()
        .filter(|(_, lag)| *lag > 0)
        .map_or(String::new(), |(tp, lag)| format!(", most on {tp}: {lag}"));
    let mut lines = vec![format!(
        "records {}{}, bytes {}{}, lag {} over {}/{held} partitions{behind}",
        f.totals.records,
        rate(records),
        human(f.totals.bytes as f64),
        rate(bytes),
        f.lag,
        f.lag_partitions,
    )];
    if let Some(g) = &f.group {
        lines.push(format!(
            "group: generation {}, {} claims, {} rebalances ({} last), commits {} ok {} failed ({}), heartbeats {} ok {} failed",
            g.generation,
            g.claims,
            g.rebalances,
            g.rebalance
                .mean()
                .map_or("-".to_string(), |_| format!("{:.2} s", g.rebalance.max)),
            g.commits_ok,
            g.commits_failed,
            millis(&g.commit_latency),
            g.heartbeats_ok,
            g.heartbeats_failed,
        ));
    }
    lines.push(format!(
        "network: requests {}{} ({} mean), {} in flight, connections {} opened {} closed {} failed",
        f.totals.requests,
        rate(requests),
        millis(&f.request_latency),
        f.in_flight,
        f.opened,
        f.closed,
        f.failed,
    ));
    lines
}

/// Draws the figures every interval until aborted, and a last time on [`finish`].
pub struct StatsView {
    recorder: MemoryRecorder,
    held: Arc<Held>,
    group: Option<String>,
    terminal: bool,
    last: Option<(Instant, Totals)>,
    drawn_lines: usize,
}

impl StatsView {
    pub fn new(recorder: MemoryRecorder, held: Arc<Held>, group: Option<String>) -> Self {
        Self {
            recorder,
            held,
            group,
            terminal: std::io::stderr().is_terminal(),
            last: None,
            drawn_lines: 0,
        }
    }

    /// Draws every `every` until the task is aborted.
    pub fn spawn(view: Arc<Mutex<Self>>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                view.lock().expect("never poisoned").draw();
            }
        })
    }

    /// The last frame, after the command's work.
    pub fn finish(&mut self) {
        self.draw();
    }

    fn draw(&mut self) {
        let figures = figures(&self.recorder, &self.held, self.group.as_deref());
        let now = Instant::now();
        let per_second = self.last.map(|(at, before)| {
            let seconds = now.duration_since(at).as_secs_f64().max(1e-3);
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds;
            let t = figures.totals;
            (
                rate(t.records, before.records),
                rate(t.bytes, before.bytes),
                rate(t.requests, before.requests),
            )
        });
        self.last = Some((now, figures.totals));
        let lines = render(&figures, per_second, self.held.len());
        let mut err = std::io::stderr().lock();
        if self.terminal {
            // Back over the last frame, then each line cleared and written again.
            if self.drawn_lines > 0 {
                let _ = write!(err, "\x1b[{}A", self.drawn_lines);
            }
            for line in &lines {
                let _ = writeln!(err, "\r\x1b[2K{line}");
            }
            self.drawn_lines = lines.len();
        } else {
            let _ = writeln!(err, "stats: {}", lines.join(" | "));
        }
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metric's name, labels and value.
    type Sample<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

    fn recorder_with(values: &[Sample<'_>]) -> MemoryRecorder {
        use metrics::Recorder;
        let recorder = MemoryRecorder::default();
        let meta = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
        for (name, labels, value) in values {
            let labels: Vec<metrics::Label> = labels
                .iter()
                .map(|(k, v)| metrics::Label::new(k.to_string(), v.to_string()))
                .collect();
            let key = metrics::Key::from_parts(name.to_string(), labels);
            if *name == m::CONSUMER_LAG {
                recorder.register_gauge(&key, &meta).set(*value);
            } else {
                recorder
                    .register_counter(&key, &meta)
                    .increment(*value as u64);
            }
        }
        recorder
    }

    #[test]
    fn lag_counts_only_the_partitions_held_now() {
        let recorder = recorder_with(&[
            (
                m::CONSUMER_RECORDS,
                &[("topic", "t"), ("partition", "0")],
                7.0,
            ),
            (
                m::CONSUMER_RECORDS,
                &[("topic", "t"), ("partition", "1")],
                3.0,
            ),
            (m::CONSUMER_LAG, &[("topic", "t"), ("partition", "0")], 5.0),
            // A partition given up: its gauge keeps its last value.
            (m::CONSUMER_LAG, &[("topic", "t"), ("partition", "1")], 40.0),
            (m::CONSUMER_LAG, &[("topic", "t"), ("partition", "2")], 9.0),
        ]);
        let held = Arc::new(Held::default());
        let _p0 = held.hold("t", 0);
        let p2 = held.hold("t", 2);
        let f = figures(&recorder, &held, None);
        assert_eq!(f.totals.records, 10);
        assert_eq!((f.lag, f.lag_partitions), (14, 2));
        assert_eq!(f.most_behind, Some(("t/2".to_string(), 9)));
        drop(p2);
        let f = figures(&recorder, &held, None);
        assert_eq!((f.lag, f.lag_partitions), (5, 1));
        let line = &render(&f, Some((100.0, 2048.0, 3.0)), held.len())[0];
        assert_eq!(
            line,
            "records 10 (100/s), bytes 0 (2048/s), lag 5 over 1/1 partitions, most on t/0: 5"
        );
    }
}
