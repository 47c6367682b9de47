//! A broker's network knobs: latency added to every request, its jitter, and
//! a rate of requests whose connection is dropped instead of answered.
//!
//! They act before the intercept rules, on every request of every connection
//! of the broker (ApiVersions and SASL included): a dropped request never
//! reaches the rules, and a delayed one is then intercepted or served as
//! usual, so an intercepted `Action::Delay` adds to the latency. Like
//! `Action::Delay`, latency holds up the requests pipelined behind it on the
//! same connection, as a slow broker does (the mock serves a connection one
//! request at a time).
//!
//! The jitter and the drop decision of a request are drawn from the
//! cluster's [`Entropy`] keyed by (broker, connection id, correlation id): in
//! a deterministic cluster the same request gets the same fate in every run,
//! whatever else the runtime interleaved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::entropy::Entropy;
use crate::intercept::RequestInfo;

/// Latency, jitter (both in nanoseconds) and the drop rate (an `f64`'s
/// bits), as atomics: every request reads them, tests change them rarely.
#[derive(Debug, Default)]
pub(crate) struct NetworkFaults {
    latency_ns: AtomicU64,
    jitter_ns: AtomicU64,
    drop_rate: AtomicU64,
}

/// What happens to a request before the broker looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Close the connection without answering.
    Drop,
    /// Wait this long, then go on as usual.
    Delay(Duration),
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl NetworkFaults {
    pub(crate) fn set_latency(&self, latency: Duration) {
        self.latency_ns.store(nanos(latency), Ordering::Release);
    }

    pub(crate) fn set_jitter(&self, jitter: Duration) {
        self.jitter_ns.store(nanos(jitter), Ordering::Release);
    }

    /// `rate` is clamped to `0.0..=1.0`; NaN is 0.
    pub(crate) fn set_drop_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.drop_rate.store(rate.to_bits(), Ordering::Release);
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_ns.load(Ordering::Acquire))
    }

    pub(crate) fn jitter(&self) -> Duration {
        Duration::from_nanos(self.jitter_ns.load(Ordering::Acquire))
    }

    pub(crate) fn drop_rate(&self) -> f64 {
        f64::from_bits(self.drop_rate.load(Ordering::Acquire))
    }

    /// The fate of `request`: dropped with probability `drop_rate`,
    /// otherwise delayed by the latency plus up to `jitter` more.
    pub(crate) fn fate(&self, entropy: &Entropy, request: &RequestInfo) -> Fate {
        let draw = |label: &[u8]| {
            entropy.keyed_unit(&[
                label,
                &request.node_id.to_le_bytes(),
                &request.connection_id.to_le_bytes(),
                &request.correlation_id.to_le_bytes(),
            ])
        };
        let drop_rate = self.drop_rate();
        if drop_rate > 0.0 && draw(b"drop") < drop_rate {
            return Fate::Drop;
        }
        let jitter_ns = self.jitter_ns.load(Ordering::Acquire);
        // Uniform in 0..jitter: the product stays below jitter_ns.
        let extra = if jitter_ns == 0 {
            0
        } else {
            (draw(b"jitter") * (jitter_ns as f64)) as u64
        };
        Fate::Delay(Duration::from_nanos(
            self.latency_ns
                .load(Ordering::Acquire)
                .saturating_add(extra),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    fn request(connection_id: u64, correlation_id: i32) -> RequestInfo {
        RequestInfo {
            node_id: 1,
            connection_id,
            api_key: ApiKey::Metadata,
            api_version: 12,
            correlation_id,
            client_id: None,
        }
    }

    #[test]
    fn off_by_default() {
        let faults = NetworkFaults::default();
        let entropy = Entropy::new(None);
        assert_eq!(
            faults.fate(&entropy, &request(1, 1)),
            Fate::Delay(Duration::ZERO)
        );
    }

    #[test]
    fn jitter_stays_in_range_and_is_fixed_by_the_seed() {
        let faults = NetworkFaults::default();
        faults.set_latency(Duration::from_millis(10));
        faults.set_jitter(Duration::from_millis(5));
        let seeded = Entropy::new(Some(3));
        let mut delays = Vec::new();
        for correlation_id in 0..200 {
            let Fate::Delay(d) = faults.fate(&seeded, &request(1, correlation_id)) else {
                panic!("no drop rate, no drop");
            };
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(15));
            delays.push(d);
        }
        let again: Vec<Fate> = (0..200)
            .map(|c| faults.fate(&Entropy::new(Some(3)), &request(1, c)))
            .collect();
        assert_eq!(
            again,
            delays.iter().map(|d| Fate::Delay(*d)).collect::<Vec<_>>()
        );
        delays.dedup();
        assert!(delays.len() > 100, "the jitter varies");
    }

    #[test]
    fn the_drop_rate_drops_about_that_share() {
        let faults = NetworkFaults::default();
        faults.set_drop_rate(0.25);
        let entropy = Entropy::new(Some(9));
        let dropped = (0..4000)
            .filter(|c| faults.fate(&entropy, &request(2, *c)) == Fate::Drop)
            .count();
        assert!((800..1200).contains(&dropped), "{dropped}");
        faults.set_drop_rate(1.0);
        assert_eq!(faults.fate(&entropy, &request(2, 0)), Fate::Drop);
        faults.set_drop_rate(f64::NAN);
        assert_eq!(faults.drop_rate(), 0.0);
    }
}
