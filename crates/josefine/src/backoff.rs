//! Exponential backoff with jitter, pure: the caller supplies the randomness, so tests
//! are deterministic and the state machine needs no clock.
//!
//! Mirrors the Java client's `reconnect.backoff.ms` / `reconnect.backoff.max.ms`
//! (KIP-144) and `retry.backoff.ms` / `retry.backoff.max.ms` (KIP-580): the delay
//! doubles per failure up to the maximum, with +-20% jitter so that many clients
//! that lost the same broker do not reconnect in lockstep.

use std::time::Duration;

/// Backoff settings; `delay(n)` is the wait before attempt `n + 1` after `n` failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

/// Fraction of the delay that jitter may add or remove.
const JITTER: f64 = 0.2;

impl Backoff {
    pub(crate) const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay after `failures` consecutive failures (0 means no wait), with `unit` a
    /// random number in [0, 1) choosing the jitter.
    pub(crate) fn delay(&self, failures: u32, unit: f64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exp = 2f64.powi(failures.saturating_sub(1).min(62) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jitter = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base * jitter).min(self.max.as_secs_f64()))
    }
}

/// A cheap source of jitter: not cryptographic, just different across processes and
/// calls, without pulling in a random-number crate for the library.
pub(crate) fn jitter_unit() -> f64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9E37_79B9_7F4A_7C15);
            h.finish() | 1
        });
    }
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));

    #[test]
    fn no_failure_no_wait() {
        assert_eq!(B.delay(0, 0.7), Duration::ZERO);
    }

    #[test]
    fn doubles_up_to_max() {
        let mid = 0.5; // no jitter
        assert_eq!(B.delay(1, mid), Duration::from_millis(100));
        assert_eq!(B.delay(2, mid), Duration::from_millis(200));
        assert_eq!(B.delay(3, mid), Duration::from_millis(400));
        assert_eq!(B.delay(5, mid), Duration::from_secs(1));
        assert_eq!(B.delay(u32::MAX, mid), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_under_max() {
        assert_eq!(B.delay(1, 0.0), Duration::from_millis(80));
        assert_eq!(B.delay(1, 1.0), Duration::from_millis(120));
        assert!(B.delay(10, 1.0) <= B.max);
    }

    #[test]
    fn jitter_unit_is_in_range_and_varies() {
        let xs: Vec<f64> = (0..1000).map(|_| jitter_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let distinct = xs
            .iter()
            .map(|x| x.to_bits())
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 990);
    }
}
