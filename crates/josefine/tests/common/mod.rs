//! Shared by the integration tests: where the real broker is, unique names, a client.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use josefine::Client;

/// The real broker's address from `JOSEFINE_BROKER` (set by `scripts/test.sh`).
///
/// Without it the test is skipped with a note, unless `CI` or `JOSEFINE_REQUIRE_BROKER`
/// is set: there a missing broker is a failure, never a silent skip.
pub fn broker() -> Option<String> {
    match std::env::var("JOSEFINE_BROKER") {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ => {
            let required = ["CI", "JOSEFINE_REQUIRE_BROKER"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
            assert!(
                !required,
                "JOSEFINE_BROKER is not set but a broker is required: run scripts/test.sh"
            );
            eprintln!(
                "skipped: JOSEFINE_BROKER is not set (run scripts/test.sh to start a broker)"
            );
            None
        }
    }
}

/// Connects to the real broker, or skips the test (see [`broker`]).
macro_rules! real_broker {
    () => {
        match common::broker() {
            Some(addr) => addr,
            None => return,
        }
    };
}
pub(crate) use real_broker;

/// A topic or group name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn client(addr: &str) -> Client {
    Client::builder()
        .bootstrap([addr])
        .client_id("josefine-tests")
        .connect()
        .await
        .expect("connect to the test broker")
}
