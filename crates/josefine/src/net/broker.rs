//! A broker as the rest of the client sees it: an address (and, once metadata named it,
//! a node id) with a lazily opened, version-negotiated connection.
//!
//! [`Broker`] handles are shared: the metadata cache, coordinator cache, fetch loops
//! and producers all hold clones of the same one, so each broker gets one connection.
//! The connection opens on first use. When it fails (refused, reset, poisoned) the
//! next use reconnects after a backoff that grows with consecutive failures
//! (`reconnect.backoff.ms`, `reconnect.backoff.max.ms`).
//!
//! Connecting is a spawned task whose result is shared by every caller that wants the
//! connection meanwhile, so concurrent first uses open one socket, and no lock is held
//! across an `.await`.
//!
//! After the TCP connect comes ApiVersions (KIP-35): we send the newest ApiVersions we
//! speak; a broker that does not speak it answers with a v0 body carrying
//! UNSUPPORTED_VERSION and we retry at the version it lists (KIP-511).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Buf;
use futures::future::{BoxFuture, FutureExt, Shared};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::{HeaderVersion, Message, StrBytes};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::connection::{Connection, ConnectionConfig};
use crate::backoff::{jitter_unit, Backoff};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::frame::decode_guarded;
use crate::protocol::versions::{api_versions_fallback, ApiVersionTable};
use crate::protocol::KafkaRequest;
use crate::task::OwnedTask;

/// How to reach brokers; shared by every [`Broker`] of one client.
#[derive(Debug, Clone)]
pub(crate) struct BrokerConfig {
    pub connection: ConnectionConfig,
    /// `socket.connection.setup.timeout.ms`: TCP connect plus ApiVersions.
    pub connect_timeout: Duration,
    /// `request.timeout.ms`: default wait for a response.
    pub request_timeout: Duration,
    /// `reconnect.backoff.ms` / `reconnect.backoff.max.ms`.
    pub reconnect_backoff: Backoff,
    /// KIP-511 client software name and version, sent in ApiVersions v3+.
    pub software_name: StrBytes,
    pub software_version: StrBytes,
    /// TLS for every connection, when set.
    pub(crate) tls: Option<super::tls::Connector>,
    /// SASL after ApiVersions on every connection, when set.
    pub(crate) sasl: Option<super::sasl::SaslConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            reconnect_backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(1)),
            software_name: StrBytes::from_static_str("josefine"),
            software_version: StrBytes::from_static_str(env!("CARGO_PKG_VERSION")),
            tls: None,
            sasl: None,
        }
    }
}

/// A broker: node id (when known), address, and its shared lazy connection.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

/// A [`Broker`] handle that does not keep it alive (see [`Broker::downgrade`]).
pub(crate) struct WeakBroker(std::sync::Weak<Inner>);

impl WeakBroker {
    pub(crate) fn upgrade(&self) -> Option<Broker> {
        self.0.upgrade().map(|inner| Broker { inner })
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.0.strong_count() == 0
    }
}

struct Inner {
    /// `None` for bootstrap addresses, whose node id is not known yet.
    id: Option<i32>,
    addr: String,
    config: Arc<BrokerConfig>,
    state: Mutex<State>,
}

impl Inner {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("broker state lock is never held across a panic")
    }

    /// `ID@HOST:PORT`, or the address alone for a bootstrap broker: how errors, logs
    /// and metrics name it.
    fn name(&self) -> String {
        match self.id {
            Some(id) => format!("{id}@{}", self.addr),
            None => self.addr.clone(),
        }
    }
}

/// A usable connection plus what the broker told us about its API versions.
#[derive(Clone)]
struct Ready {
    connection: Connection,
    versions: Arc<ApiVersionTable>,
    /// The task re-authenticating the connection (KIP-368); stopped with the last
    /// handle to this connection.
    _reauthentication: Option<Arc<OwnedTask<()>>>,
}

type Connecting = Shared<BoxFuture<'static, Result<Ready>>>;

enum State {
    Idle {
        failures: u32,
        retry_at: Option<Instant>,
    },
    Connecting(Connecting),
    Ready(Ready),
    /// Closed with its client ([`Broker::close`]): never connects again.
    Closed,
}

impl Broker {
    pub(crate) fn new(id: Option<i32>, addr: impl Into<String>, config: Arc<BrokerConfig>) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                addr: addr.into(),
                config,
                state: Mutex::new(State::Idle {
                    failures: 0,
                    retry_at: None,
                }),
            }),
        }
    }

    /// A handle to the same broker with a connection of its own: for requests that
    /// would hold up others on a shared connection (a broker answers one connection's
    /// requests in order, so a Fetch long poll delays whatever is queued behind it).
    pub(crate) fn dedicated(&self) -> Self {
        Self::new(
            self.inner.id,
            self.inner.addr.clone(),
            self.inner.config.clone(),
        )
    }

    /// A handle that does not keep the broker's connection open.
    pub(crate) fn downgrade(&self) -> WeakBroker {
        WeakBroker(Arc::downgrade(&self.inner))
    }

    /// The node id, `None` for a bootstrap address.
    pub fn id(&self) -> Option<i32> {
        self.inner.id
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Whether a connection is open right now (no I/O).
    #[cfg_attr(not(feature = "unstable-protocol"), allow(dead_code))]
    pub fn is_connected(&self) -> bool {
        matches!(&*self.lock(), State::Ready(r) if !r.connection.is_closed())
    }

    /// Sends `request` at the highest version both sides support and waits for the
    /// response for at most `request.timeout.ms`.
    pub async fn call<R: KafkaRequest>(&self, request: &R) -> Result<R::Response> {
        self.call_with_timeout(request, self.inner.config.request_timeout)
            .await
    }

    /// Like [`call`](Self::call) with an explicit timeout (long-poll Fetch needs
    /// `request.timeout.ms` plus its own wait).
    pub async fn call_with_timeout<R: KafkaRequest>(
        &self,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let ready = self.ready().await?;
        let version = ready
            .versions
            .negotiate(R::API_KEY, R::VERSIONS)
            .map_err(|e| e.with_broker(self))?;
        ready
            .connection
            .call(request, version, timeout)
            .await
            .map_err(|e| e.with_broker(self))
    }

    /// Sends a request built for the negotiated version: for requests whose fields
    /// differ between versions (FindCoordinator v4 batches its keys, for example).
    pub async fn call_versioned<R: KafkaRequest>(
        &self,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response)> {
        self.call_versioned_with_timeout(build, self.inner.config.request_timeout)
            .await
    }

    /// [`call_versioned`](Self::call_versioned) with an explicit timeout.
    pub async fn call_versioned_with_timeout<R: KafkaRequest>(
        &self,
        build: impl FnOnce(i16) -> R,
        timeout: Duration,
    ) -> Result<(i16, R::Response)> {
        self.call_at_most(R::VERSIONS.max, build, timeout).await
    }

    /// [`call_versioned_with_timeout`](Self::call_versioned_with_timeout) at version
    /// `max` or below: for a protocol whose newer versions change what the request
    /// means (a transactional Produce v12 asks the broker to add the partition to the
    /// transaction itself, KIP-890).
    pub(crate) async fn call_at_most<R: KafkaRequest>(
        &self,
        max: i16,
        build: impl FnOnce(i16) -> R,
        timeout: Duration,
    ) -> Result<(i16, R::Response)> {
        let ready = self.ready().await?;
        let ours = kafka_protocol::protocol::VersionRange {
            min: R::VERSIONS.min,
            max: max.min(R::VERSIONS.max),
        };
        let version = ready
            .versions
            .negotiate(R::API_KEY, ours)
            .map_err(|e| e.with_broker(self))?;
        let request = build(version);
        let response = ready
            .connection
            .call(&request, version, timeout)
            .await
            .map_err(|e| e.with_broker(self))?;
        Ok((version, response))
    }

    /// The version that would be used for `R`, connecting first if needed.
    pub async fn version<R: KafkaRequest>(&self) -> Result<i16> {
        let ready = self.ready().await?;
        ready
            .versions
            .negotiate(R::API_KEY, R::VERSIONS)
            .map_err(|e| e.with_broker(self))
    }

    /// The broker's advertised API versions, connecting first if needed.
    #[cfg_attr(not(feature = "unstable-protocol"), allow(dead_code))]
    pub async fn api_versions(&self) -> Result<Arc<ApiVersionTable>> {
        Ok(self.ready().await?.versions)
    }

    /// Drops the current connection, failing its in-flight requests; the next use
    /// reconnects (unless the broker was closed with its client). Used when the
    /// broker left the cluster or changed address.
    pub fn disconnect(&self) {
        let mut state = self.lock();
        if matches!(*state, State::Closed) {
            return;
        }
        let previous = std::mem::replace(
            &mut *state,
            State::Idle {
                failures: 0,
                retry_at: None,
            },
        );
        drop(state);
        if let State::Ready(ready) = previous {
            ready.connection.poison(Error::new(
                ErrorKind::ConnectionClosed,
                "disconnected by the client",
            ));
        }
    }

    /// Drops the current connection, failing its in-flight requests, for good: every
    /// later use fails with [`ErrorKind::Closed`] (the client was closed).
    pub(crate) fn close(&self) {
        let previous = std::mem::replace(&mut *self.lock(), State::Closed);
        if let State::Ready(ready) = previous {
            ready.connection.poison(Error::client_closed());
        }
    }

    /// Returns the open connection, or joins (or starts) connecting.
    async fn ready(&self) -> Result<Ready> {
        let connecting = {
            let mut state = self.lock();
            match &*state {
                State::Ready(ready) if !ready.connection.is_closed() => return Ok(ready.clone()),
                State::Connecting(connecting) => connecting.clone(),
                State::Ready(_) => self.start_connecting(&mut state, 0, None),
                State::Idle { failures, retry_at } => {
                    let (failures, retry_at) = (*failures, *retry_at);
                    self.start_connecting(&mut state, failures, retry_at)
                }
                State::Closed => return Err(Error::client_closed()),
            }
        };
        connecting.await
    }

    fn start_connecting(
        &self,
        state: &mut State,
        failures: u32,
        retry_at: Option<Instant>,
    ) -> Connecting {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            if let Some(at) = retry_at {
                tokio::time::sleep_until(at).await;
            }
            if matches!(*inner.lock_state(), State::Closed) {
                return Err(Error::client_closed());
            }
            let result = connect(&inner).await;
            let mut state = inner.lock_state();
            match &result {
                // Closed while connecting: the new connection goes at once.
                Ok(ready) if matches!(*state, State::Closed) => {
                    ready.connection.poison(Error::client_closed());
                    return Err(Error::client_closed());
                }
                Ok(ready) => *state = State::Ready(ready.clone()),
                Err(_) if matches!(*state, State::Closed) => return Err(Error::client_closed()),
                Err(err) => {
                    let failures = failures.saturating_add(1);
                    let delay = inner
                        .config
                        .reconnect_backoff
                        .delay(failures, jitter_unit());
                    tracing::debug!(broker = %inner.addr, failures, ?delay, error = %err, "connect failed");
                    crate::metrics::reconnect_backoff(&inner.name(), delay);
                    *state = State::Idle {
                        failures,
                        retry_at: Some(Instant::now() + delay),
                    };
                }
            }
            result
        });
        let connecting = async move {
            task.await.unwrap_or_else(|e| {
                Err(Error::new(
                    ErrorKind::ConnectionClosed,
                    format!("connect task failed: {e}"),
                ))
            })
        }
        .boxed()
        .shared();
        *state = State::Connecting(connecting.clone());
        connecting
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock_state()
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.id {
            Some(id) => write!(f, "{id}@{}", self.inner.addr),
            None => write!(f, "{} (bootstrap)", self.inner.addr),
        }
    }
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broker({self})")
    }
}

/// Opens the socket and negotiates versions, within `connect_timeout`.
async fn connect(inner: &Inner) -> Result<Ready> {
    let config = &inner.config;
    let name = inner.name();
    let attempt = async {
        let stream = TcpStream::connect(&inner.addr)
            .await
            .map_err(|e| Error::io(e).with_broker(&name))?;
        // Requests are written whole; Nagle would only delay them.
        stream.set_nodelay(true).map_err(Error::io)?;
        let connection = match &config.tls {
            Some(tls) => {
                let stream = tls
                    .connect(stream, &inner.addr)
                    .await
                    .map_err(|e| e.with_broker(&name))?;
                Connection::spawn(stream, name.clone(), config.connection.clone())
            }
            None => Connection::spawn(stream, name.clone(), config.connection.clone()),
        };
        let versions = Arc::new(negotiate_versions(&connection, config).await?);
        let mut reauthentication = None;
        if let Some(sasl) = &config.sasl {
            let timeout = config.request_timeout;
            let lifetime =
                super::authenticate::authenticate(&connection, &versions, sasl, &name, timeout)
                    .await?;
            if let Some(lifetime) = lifetime {
                let task = OwnedTask::spawn(super::authenticate::keep_authenticated(
                    connection.clone(),
                    versions.clone(),
                    sasl.clone(),
                    name.clone(),
                    timeout,
                    lifetime,
                ));
                reauthentication = Some(Arc::new(task));
            }
        }
        tracing::debug!(broker = %name, "connected");
        Ok(Ready {
            connection,
            versions,
            _reauthentication: reauthentication,
        })
    };
    // TCP, TLS, ApiVersions and SASL: one span, so a slow or failing step shows where.
    let span = tracing::debug_span!("connect", broker = %name, tls = config.tls.is_some());
    let attempt = tracing::Instrument::instrument(attempt, span);
    let result = match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("connecting took longer than {:?}", config.connect_timeout),
        )
        .with_broker(&name)),
    };
    crate::metrics::connected(&name, result.is_ok());
    result
}

/// ApiVersions with the UNSUPPORTED_VERSION fallback described in the module docs.
async fn negotiate_versions(
    connection: &Connection,
    config: &BrokerConfig,
) -> Result<ApiVersionTable> {
    let mut version = ApiVersionsRequest::VERSIONS.max;
    loop {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(config.software_name.clone())
            .with_client_software_version(config.software_version.clone());
        let frame = connection
            .call_raw(&request, version, config.connect_timeout)
            .await?
            .ok_or_else(|| Error::protocol("ApiVersions got no response"))?;
        let response = decode_api_versions(frame, version)?;
        if let Some(lower) = api_versions_fallback(&response, version) {
            tracing::debug!(
                tried = version,
                next = lower,
                "broker rejected ApiVersions version"
            );
            version = lower;
            continue;
        }
        return ApiVersionTable::from_response(&response)
            .map_err(|e| e.with_api(kafka_protocol::messages::ApiKey::ApiVersions));
    }
}

/// Decodes an ApiVersions response frame. The error code opens the body in every
/// version; an UNSUPPORTED_VERSION answer is always encoded as v0.
pub(crate) fn decode_api_versions(
    mut frame: bytes::Bytes,
    version: i16,
) -> Result<ApiVersionsResponse> {
    decode_guarded::<ResponseHeader>(&mut frame, ApiVersionsResponse::header_version(version))
        .map_err(|e| Error::protocol(format!("bad ApiVersions response header: {e}")))?;
    if frame.remaining() < 2 {
        return Err(Error::protocol(
            "ApiVersions response shorter than its error code",
        ));
    }
    let error_code = i16::from_be_bytes([frame[0], frame[1]]);
    let body_version = if error_code == crate::error::KafkaCode::UNSUPPORTED_VERSION.code() {
        0
    } else {
        version
    };
    decode_guarded::<ApiVersionsResponse>(&mut frame, body_version)
        .map_err(|e| Error::protocol(format!("bad ApiVersions v{body_version} response: {e}")))
}
