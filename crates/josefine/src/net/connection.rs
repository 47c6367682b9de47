//! One connection to one broker: a task that owns the socket, and cheap cloneable
//! [`Connection`] handles that send it requests.
//!
//! # Life cycle
//! The task runs while the socket is healthy and at least one handle exists. It is
//! `Active` until the first fatal error: end of stream, an I/O error, a frame whose
//! length is absurd, a response with a correlation id we never sent, a response that
//! does not decode (see `protocol::guard`), or a request timeout (the broker is
//! presumed stuck, as the Java client does). Then the connection is *poisoned*: the
//! error is stored, every waiting caller and every queued request gets a copy of it,
//! and the task ends, closing the socket. A poisoned connection is never reused; the
//! broker layer above opens a new one.
//!
//! # Pipelining and cancellation
//! Kafka answers the requests of one connection in order, identified by correlation
//! id. Callers encode their request on their own task (so encoding runs in parallel),
//! get a correlation id from an atomic counter, and hand the frame to the task with a
//! oneshot reply channel. A caller that gives up (drops its future) only drops the
//! receiving end: the task still reads that response off the socket and discards it,
//! so the byte stream stays in step and nothing is corrupted.
//!
//! # Memory
//! Each response is read into one buffer; once its length prefix has been checked
//! against `max_frame_size`, the buffer grows with the bytes that arrive (doubling, at
//! least 1 MiB ahead), so a length announced but never sent costs little. The decoded
//! response borrows from the buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::Instrument;

use super::tls;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::frame::{self, LENGTH_PREFIX};
use crate::protocol::KafkaRequest;

/// Requests queued to the task before `send` waits: backpressure for callers.
const COMMAND_QUEUE: usize = 128;
/// Bytes of encoded requests the task buffers before it stops taking new ones.
const WRITE_HIGH_WATER: usize = 8 * 1024 * 1024;
/// Read granularity when no frame is in progress.
const READ_CHUNK: usize = 64 * 1024;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionConfig {
    /// Sent in every request header (`client.id`).
    pub client_id: Option<StrBytes>,
    /// Largest response frame accepted.
    pub max_frame_size: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: None,
            max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE,
        }
    }
}

/// A handle to a connection task. Cloning is cheap; the task ends when the last
/// handle is dropped or on the first fatal error.
#[derive(Clone)]
pub(crate) struct Connection {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Who is at the other end, for error context and logs.
    peer: String,
    config: ConnectionConfig,
    next_correlation_id: AtomicI32,
    /// Set once, when the connection is poisoned.
    poison: Mutex<Option<Error>>,
    /// Wakes the task when a caller poisons the connection (request timeout).
    close: Notify,
    metrics: crate::metrics::ConnectionMetrics,
}

struct Command {
    correlation_id: i32,
    api: ApiKey,
    /// The frame's parts, written in order (see [`frame::encode_request_parts`]).
    frame: Vec<Bytes>,
    /// `None` for requests the broker does not answer (Produce with acks=0).
    reply: Option<oneshot::Sender<Result<Bytes>>>,
}

struct Waiter {
    api: ApiKey,
    reply: oneshot::Sender<Result<Bytes>>,
}

impl Connection {
    /// Spawns the task that owns `stream` and returns the first handle to it.
    pub(crate) fn spawn<S>(stream: S, peer: impl Into<String>, config: ConnectionConfig) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let peer = peer.into();
        let shared = Arc::new(Shared {
            metrics: crate::metrics::ConnectionMetrics::new(&peer),
            peer,
            config,
            next_correlation_id: AtomicI32::new(0),
            poison: Mutex::new(None),
            close: Notify::new(),
        });
        // A root span: it lives as long as the socket, not under the `connect` span
        // (or a request's) that happened to open it.
        let span = tracing::debug_span!(parent: None, "connection", broker = %shared.peer);
        tokio::spawn(run(stream, rx, shared.clone()).instrument(span));
        Self { commands, shared }
    }

    /// Whether the connection is poisoned or its task has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.commands.is_closed() || self.poison_error().is_some()
    }

    /// Sends `request` at `version` and waits for its response, at most `timeout`.
    ///
    /// Requests the broker does not answer (Produce with acks=0) return the response
    /// type's default once the request is queued for writing.
    pub(crate) async fn call<R: KafkaRequest>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        match self.call_raw(request, version, timeout).await? {
            Some(frame) => frame::decode_response::<R>(frame, version).map_err(|e| {
                // A response we cannot read: the broker is broken, hostile or speaks
                // another version than we negotiated. Nothing more from this socket
                // can be trusted; the broker layer reconnects for the next request.
                let err = self.context(e, R::API_KEY);
                self.poison(err.clone());
                err
            }),
            None => Ok(R::Response::default()),
        }
    }

    /// Like [`call`](Self::call) but returns the undecoded response frame (correlation
    /// id first), or `None` when no response is expected.
    pub(crate) async fn call_raw<R: KafkaRequest>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<Option<Bytes>> {
        let correlation_id = self
            .shared
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed);
        let parts = frame::encode_request_parts(
            request,
            version,
            correlation_id,
            self.shared.config.client_id.as_ref(),
        )
        .map_err(|e| self.context(e, R::API_KEY))?;
        let expects_response = request.expects_response();
        tracing::trace!(api = ?R::API_KEY, version, correlation_id, bytes = parts.iter().map(Bytes::len).sum::<usize>(), "request");
        // In the caller's task and span (a group phase, a fetch round), so it names
        // the broker itself; trace level keeps it quiet.
        let span = tracing::trace_span!(
            "request",
            broker = %self.shared.peer,
            api = ?R::API_KEY,
            version,
            correlation_id
        );
        self.send_frame(R::API_KEY, correlation_id, parts, expects_response, timeout)
            .instrument(span)
            .await
            .map_err(|e| self.context(e, R::API_KEY))
    }

    async fn send_frame(
        &self,
        api: ApiKey,
        correlation_id: i32,
        frame: Vec<Bytes>,
        expects_response: bool,
        timeout: Duration,
    ) -> Result<Option<Bytes>> {
        let (reply, response) = if expects_response {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let command = Command {
            correlation_id,
            api,
            frame,
            reply,
        };
        let metrics = self.shared.metrics.api(api);
        metrics.requests.increment(1);
        let in_flight = InFlight::start(&self.shared.metrics);
        let exchange = async {
            self.commands
                .send(command)
                .await
                .map_err(|_| self.closed_error())?;
            match response {
                None => Ok(None),
                Some(rx) => match rx.await {
                    Ok(result) => result.map(Some),
                    // The task ended without answering: it was poisoned meanwhile.
                    Err(_) => Err(self.closed_error()),
                },
            }
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                let err = Error::new(
                    ErrorKind::Timeout,
                    format!("no response within {timeout:?} (correlation id {correlation_id})"),
                );
                self.poison(err.clone());
                Err(err)
            }
        };
        match &result {
            Ok(_) => metrics.latency.record(in_flight.elapsed().as_secs_f64()),
            Err(_) => metrics.errors.increment(1),
        }
        result
    }

    /// Poisons the connection from outside the task: the task fails every waiter
    /// with `err` and closes the socket.
    pub(crate) fn poison(&self, err: Error) {
        {
            let mut poison = self
                .shared
                .poison
                .lock()
                .expect("poison lock is never held across a panic");
            if poison.is_none() {
                *poison = Some(err);
            }
        }
        self.shared.close.notify_one();
    }

    fn poison_error(&self) -> Option<Error> {
        self.shared
            .poison
            .lock()
            .expect("poison lock is never held across a panic")
            .clone()
    }

    fn closed_error(&self) -> Error {
        self.poison_error()
            .unwrap_or_else(|| Error::new(ErrorKind::ConnectionClosed, "connection task ended"))
    }

    fn context(&self, err: Error, api: ApiKey) -> Error {
        err.with_api(api).with_broker(&self.shared.peer)
    }
}

/// A request in flight, for the gauge: counted until dropped (answered, failed, or
/// its caller gone).
struct InFlight<'a> {
    metrics: &'a crate::metrics::ConnectionMetrics,
    since: std::time::Instant,
}

impl<'a> InFlight<'a> {
    fn start(metrics: &'a crate::metrics::ConnectionMetrics) -> Self {
        metrics.in_flight.increment(1.0);
        Self {
            metrics,
            since: std::time::Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.decrement(1.0);
    }
}

/// The task owning the socket. See the module docs for the life cycle.
async fn run<S>(stream: S, mut commands: mpsc::Receiver<Command>, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut in_flight: HashMap<i32, Waiter> = HashMap::new();
    let mut outgoing: VecDeque<Bytes> = VecDeque::new();
    let mut outgoing_bytes = 0usize;
    let mut read_buf = BytesMut::with_capacity(READ_CHUNK);
    let max_frame = shared.config.max_frame_size;

    let error = loop {
        tokio::select! {
            biased;
            _ = shared.close.notified() => {
                break shared.poison.lock().expect("poison lock is never held across a panic").clone()
                    .unwrap_or_else(|| Error::new(ErrorKind::ConnectionClosed, "connection closed"));
            }
            read = reader.read_buf(&mut read_buf) => match read {
                Ok(0) => break Error::new(ErrorKind::ConnectionClosed, "the broker closed the connection"),
                Ok(n) => {
                    shared.metrics.bytes_received.increment(n as u64);
                    if let Err(e) = deliver_frames(&mut read_buf, &mut in_flight, max_frame) {
                        break e;
                    }
                }
                Err(e) => break tls::stream_error(e),
            },
            written = write_front(&mut writer, &outgoing), if !outgoing.is_empty() => match written {
                Ok(0) => break Error::new(ErrorKind::ConnectionClosed, "the socket accepts no more bytes"),
                Ok(n) => {
                    shared.metrics.bytes_sent.increment(n as u64);
                    outgoing_bytes -= n;
                    consume(&mut outgoing, n);
                    if outgoing.is_empty() {
                        // Transports that buffer (TLS) need a flush to put bytes on the wire.
                        if let Err(e) = writer.flush().await {
                            break tls::stream_error(e);
                        }
                    }
                }
                Err(e) => break tls::stream_error(e),
            },
            command = commands.recv(), if outgoing_bytes < WRITE_HIGH_WATER => match command {
                // Every handle is gone: nobody can be waiting for a response.
                None => {
                    crate::metrics::disconnected(&shared.peer);
                    return;
                }
                Some(command) => {
                    // An empty part would be a write of nothing, which reads as a
                    // closed socket.
                    for part in command.frame.into_iter().filter(|part| !part.is_empty()) {
                        outgoing_bytes += part.len();
                        outgoing.push_back(part);
                    }
                    if let Some(reply) = command.reply {
                        in_flight.insert(command.correlation_id, Waiter { api: command.api, reply });
                    }
                }
            },
        }
    };

    tracing::debug!(error = %error, in_flight = in_flight.len(), "connection poisoned");
    crate::metrics::disconnected(&shared.peer);
    let error = error.with_broker(&shared.peer);
    {
        let mut poison = shared
            .poison
            .lock()
            .expect("poison lock is never held across a panic");
        if poison.is_none() {
            *poison = Some(error.clone());
        }
    }
    // Close first so no request can slip in after the drain below.
    commands.close();
    for (_, waiter) in in_flight.drain() {
        let _ = waiter.reply.send(Err(error.clone().with_api(waiter.api)));
    }
    while let Ok(command) = commands.try_recv() {
        if let Some(reply) = command.reply {
            let _ = reply.send(Err(error.clone().with_api(command.api)));
        }
    }
}

/// Parts handed to one vectored write at most (Linux takes 1,024).
const WRITE_PARTS: usize = 64;

/// Writes some of the oldest queued parts, up to [`WRITE_PARTS`] of them in one
/// vectored write (a Produce frame is two parts a batch), and returns the bytes
/// written, which [`consume`] then drops from the queue; pending forever when
/// nothing is queued (`select!` builds the future even when its branch is disabled).
async fn write_front<W: AsyncWrite + Unpin>(
    writer: &mut W,
    outgoing: &VecDeque<Bytes>,
) -> std::io::Result<usize> {
    if outgoing.is_empty() {
        return std::future::pending().await;
    }
    if outgoing.len() == 1 || !writer.is_write_vectored() {
        return writer.write(&outgoing[0]).await;
    }
    let mut slices = [std::io::IoSlice::new(&[]); WRITE_PARTS];
    let mut n = 0;
    for part in outgoing.iter().take(WRITE_PARTS) {
        slices[n] = std::io::IoSlice::new(part);
        n += 1;
    }
    writer.write_vectored(&slices[..n]).await
}

/// Drops the first `n` bytes of the queued parts: the parts written whole, and the
/// written start of the next.
fn consume(outgoing: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = outgoing.front_mut() else {
            return;
        };
        if n < front.len() {
            front.advance(n);
            return;
        }
        n -= front.len();
        outgoing.pop_front();
    }
}

/// Splits every complete frame off `buf` and hands it to its waiter. Leaves a partial
/// frame in place with room reserved for the rest of it.
fn deliver_frames(
    buf: &mut BytesMut,
    in_flight: &mut HashMap<i32, Waiter>,
    max_frame: usize,
) -> Result<()> {
    // `split_frame` sizes the buffer for a partial frame only once its length is
    // validated.
    while let Some(frame) = frame::split_frame(buf, max_frame)? {
        let len = frame.len();
        let correlation_id = frame::correlation_id(&frame)?;
        match in_flight.remove(&correlation_id) {
            Some(waiter) => {
                tracing::trace!(api = ?waiter.api, correlation_id, bytes = len, "response");
                // The caller may have given up; the frame was consumed either way.
                let _ = waiter.reply.send(Ok(frame));
            }
            None => {
                return Err(Error::protocol(format!(
                    "response with correlation id {correlation_id}, which no request in flight has"
                )))
            }
        }
    }
    // A partial frame has its room reserved already; otherwise read in chunks.
    if buf.len() < LENGTH_PREFIX && buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    Ok(())
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
