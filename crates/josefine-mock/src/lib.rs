//! An in-process mock Kafka broker with fault injection, for testing Kafka
//! clients without a Kafka.
//!
//! A [`MockBroker`] listens on `127.0.0.1` and answers ApiVersions, Metadata,
//! CreateTopics and DeleteTopics, at every version the `kafka-protocol` crate
//! supports, from an in-memory cluster state. Its point is the faults: any
//! request can be [intercepted](MockBroker::intercept) and answered with an
//! error code, delayed, stalled, dropped with the connection, or replaced by
//! raw or garbage bytes, and the broker records every request and connection
//! so a test can assert what the client did about it.
//!
//! ```
//! use std::time::Duration;
//! use josefine_mock::{Action, ApiKey, Intercept, MockBroker, ResponseError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let broker = MockBroker::builder().topic("orders", 3).start().await?;
//!
//! // The first Metadata request fails with a retriable error; later ones are
//! // answered normally, each after 50 ms.
//! let flaky = broker.intercept(
//!     Intercept::api(ApiKey::Metadata).once(),
//!     Action::error(ResponseError::LeaderNotAvailable),
//! );
//! broker.intercept(
//!     Intercept::api(ApiKey::Metadata),
//!     Action::Delay(Duration::from_millis(50)),
//! );
//!
//! let bootstrap: String = broker.bootstrap(); // "127.0.0.1:<port>", for the client
//! # let _ = bootstrap;
//! // ... run the client under test against `bootstrap`, then:
//! assert_eq!(flaky.hits(), 0);
//! assert!(broker.requests().iter().all(|r| r.api_key != ApiKey::Produce));
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Behaving like Kafka
//!
//! * ApiVersions advertises, per implemented API, the versions the crate can
//!   encode, or what [`MockBrokerBuilder::api_versions`] says. A request
//!   outside the advertised range closes the connection; an ApiVersions
//!   request above it gets the v0 UNSUPPORTED_VERSION fallback (KIP-511).
//! * A request for an API the mock does not implement, an absurd length
//!   prefix, or a request that does not decode closes the connection with a
//!   `tracing` warning, as Kafka does.
//! * Each connection is served one request at a time, in order.
//!
//! # Layout
//!
//! `broker.rs` (public handle and builder), `server.rs` (accept loop,
//! framing, per-connection task), `intercept.rs` (rules and actions),
//! `state.rs` (cluster state: brokers, topics, partitions), `api/` (one file
//! per Kafka API). The state is shared by the whole cluster and the rest is
//! per broker, so a multi-broker cluster can be added without reshaping it.

mod api;
mod broker;
mod intercept;
mod server;
mod state;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use broker::{MockBroker, MockBrokerBuilder, DEFAULT_MAX_FRAME_SIZE};
pub use intercept::{Action, Intercept, InterceptHandle, RequestInfo};
pub use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::ResponseError;

/// Locks a mutex, ignoring poison: a test that panicked while holding one of
/// the mock's locks must not turn every later use of the mock into a second,
/// misleading panic. Every critical section leaves its data consistent after
/// each step, so there is nothing half-done for poison to protect.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
