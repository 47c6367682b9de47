//! Everything random the mock does, in one place, so that a seed
//! ([`MockClusterBuilder::deterministic`](crate::MockClusterBuilder::deterministic))
//! can fix all of it.
//!
//! Two kinds of draws:
//!
//! * [`Entropy::keyed`]: a value that depends only on the seed and on what it
//!   is for (a SCRAM salt for user `alice`, the latency jitter of request 7
//!   on connection 3 of broker 2). With a seed, the same request gets the same
//!   value however the runtime interleaved the connections.
//! * [`Entropy::fill`]: the next bytes of a stream (SCRAM server nonces). With
//!   a seed the stream is fixed, but which exchange gets which bytes depends on
//!   the order the exchanges happen in.
//!
//! Without a seed both come from the operating system's generator, as a real
//! broker's do. The derivation is SplitMix64 (Steele, Lea and Flood, 2014):
//! statistically fine, not cryptographic, which a mock does not need.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore as _;

/// The seed, if any, and the stream's position.
#[derive(Debug, Default)]
pub(crate) struct Entropy {
    seed: Option<u64>,
    draws: AtomicU64,
}

/// One step of SplitMix64: a well-mixed function of `x`.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Folds bytes into a running hash, so a key can hold strings and numbers.
fn absorb(state: u64, bytes: &[u8]) -> u64 {
    let mut h = mix(state ^ bytes.len() as u64);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    h
}

/// Fills `out` from a SplitMix64 stream starting at `state`.
fn expand(mut state: u64, out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        state = mix(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

impl Entropy {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Entropy {
            seed,
            draws: AtomicU64::new(0),
        }
    }

    pub(crate) fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Fills `out` with bytes for the thing `key` names (`key`'s parts are
    /// hashed in order): random without a seed, a function of the seed and
    /// `key` with one.
    pub(crate) fn keyed(&self, key: &[&[u8]], out: &mut [u8]) {
        match self.seed {
            None => rand::rng().fill_bytes(out),
            Some(seed) => {
                let state = key.iter().fold(mix(seed), |h, part| absorb(h, part));
                expand(state, out);
            }
        }
    }

    /// A number in `[0, 1)` for the thing `key` names; see [`keyed`](Self::keyed).
    pub(crate) fn keyed_unit(&self, key: &[&[u8]]) -> f64 {
        let mut bytes = [0u8; 8];
        self.keyed(key, &mut bytes);
        // The top 53 bits, as a double's mantissa holds them.
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fills `out` with the next bytes of the stream labelled `label`:
    /// random without a seed, the seed's fixed sequence with one.
    pub(crate) fn fill(&self, label: &str, out: &mut [u8]) {
        match self.seed {
            None => rand::rng().fill_bytes(out),
            Some(_) => {
                let draw = self.draws.fetch_add(1, Ordering::Relaxed);
                self.keyed(&[b"stream", label.as_bytes(), &draw.to_le_bytes()], out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_keyed_draws_and_the_stream() {
        let (a, b) = (Entropy::new(Some(7)), Entropy::new(Some(7)));
        let draw = |e: &Entropy, key: &[u8]| {
            let mut out = [0u8; 20];
            e.keyed(&[b"salt", key], &mut out);
            out
        };
        assert_eq!(draw(&a, b"alice"), draw(&b, b"alice"));
        assert_ne!(draw(&a, b"alice"), draw(&a, b"bob"));
        assert_ne!(draw(&a, b"alice"), draw(&Entropy::new(Some(8)), b"alice"));

        let stream = |e: &Entropy| {
            let mut out = [[0u8; 12]; 3];
            for o in &mut out {
                e.fill("nonce", o);
            }
            out
        };
        let first = stream(&a);
        assert_eq!(first, stream(&b));
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn units_lie_in_zero_to_one() {
        let e = Entropy::new(Some(1));
        for i in 0u64..1000 {
            let u = e.keyed_unit(&[&i.to_le_bytes()]);
            assert!((0.0..1.0).contains(&u), "{u}");
        }
        let random = Entropy::new(None).keyed_unit(&[b"x"]);
        assert!((0.0..1.0).contains(&random));
    }
}
