//! Josefine clients connected to the mock (the `client` feature, on by
//! default): the shortest way from a [`MockCluster`] to the
//! [`josefine::Client`] a test hands to its producer, consumer or consumer
//! group.
//!
//! The client's timings are shortened for tests (see
//! [`MockCluster::client_builder`]); everything else is Josefine's default,
//! and any of it can be changed on the builder.

use std::time::Duration;

use crate::{MockBroker, MockCluster};

/// `request.timeout.ms` for clients made here: a stalled request fails a
/// test in seconds rather than Kafka's 30.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `reconnect.backoff.ms` and `retry.backoff.ms` (and their maxima): a
/// client recovers from an injected fault within a few milliseconds.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(100));

fn builder(bootstrap: String) -> josefine::ClientBuilder {
    josefine::Client::builder()
        .bootstrap([bootstrap])
        .request_timeout(REQUEST_TIMEOUT)
        .reconnect_backoff(BACKOFF.0, BACKOFF.1)
        .retry_backoff(BACKOFF.0, BACKOFF.1)
}

impl MockCluster {
    /// A [`josefine::ClientBuilder`] for this cluster: every broker as a
    /// bootstrap server, a 5 s request timeout (Kafka: 30 s), and reconnect
    /// and retry backoffs from 10 ms to 100 ms (Kafka: 50 ms to 1 s and
    /// 100 ms to 1 s), so that a client recovers from injected faults
    /// quickly. Change anything on it before
    /// [`connect`](josefine::ClientBuilder::connect):
    ///
    /// ```
    /// # use josefine_mock::MockCluster;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = MockCluster::builder().topic("orders", 3).start().await?;
    /// let client = cluster.client_builder().client_id("orders-service").connect().await?;
    /// assert_eq!(client.partitions("orders").await?, [0, 1, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn client_builder(&self) -> josefine::ClientBuilder {
        builder(self.bootstrap())
    }

    /// A [`josefine::Client`] connected to this cluster, with the settings of
    /// [`client_builder`](Self::client_builder).
    ///
    /// ```
    /// # use josefine_mock::MockCluster;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = MockCluster::builder().brokers(3).topic("orders", 6).start().await?;
    /// let client = cluster.client().await?;
    /// let group = josefine::ConsumerGroup::builder(client, "order-processors").build()?;
    /// # drop(group);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn client(&self) -> josefine::Result<josefine::Client> {
        self.client_builder().connect().await
    }
}

impl MockBroker {
    /// A [`josefine::ClientBuilder`] for this broker alone, with the settings
    /// of [`MockCluster::client_builder`].
    pub fn client_builder(&self) -> josefine::ClientBuilder {
        builder(self.bootstrap())
    }

    /// A [`josefine::Client`] connected to this broker; see
    /// [`MockCluster::client`].
    pub async fn client(&self) -> josefine::Result<josefine::Client> {
        self.client_builder().connect().await
    }
}
