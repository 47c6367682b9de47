//! The accept loop and the per-connection tasks.
//!
//! Framing is Kafka's (<https://kafka.apache.org/protocol#protocol_common>):
//! an `i32` big-endian size, then a request header and body. Each connection
//! task reads one request, answers it (or does what an intercept rule says),
//! and only then reads the next, which is how a Kafka broker orders a
//! connection's responses; so a delayed or stalled request, a Fetch
//! long-polling for data, or a JoinGroup or SyncGroup waiting for the rest of
//! its group, holds up the ones pipelined behind it (on its connection only),
//! as it would on a real broker. A Produce with `acks=0` gets no response at
//! all.
//!
//! Anything the mock cannot make sense of (an absurd length, a header that
//! does not decode, an unknown API key or version) closes the connection, the
//! way Kafka does, with a `warn` saying why. Nothing read from the network can
//! panic the mock.
//!
//! One hole is upstream: kafka-protocol's decoders reserve `Vec` capacity for
//! whatever array length the wire claims, so a request body claiming ~2^31
//! elements makes the allocation fail, which aborts the process (Metadata v1
//! with a topic count of `i32::MAX` asks for 154 GB). Requests come from the
//! client under test, so a test hitting this fails loudly rather than wrongly;
//! the fix is to cap that capacity by the bytes remaining, in kafka-protocol.
//! (The client does not share the hole: it walks every response with
//! its response guard (`protocol::guard` in josefine) before decoding it.)

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::decode_request_header_from_buffer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::api::{self, Mode, Refusal, Reply};
use crate::broker::Node;
use crate::intercept::{Action, RequestInfo};
use crate::lock;
use crate::network::Fate;
use crate::sasl::Session;

/// How long the accept loop waits after a failed `accept` (say, out of file
/// descriptors) before trying again, so it does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// The open connection tasks of one broker.
///
/// Once `closed`, the accept loop drops new sockets instead of registering
/// them: `MockBroker`'s drop cannot wait for the accept task to finish, and
/// without the flag a connection accepted in that window would outlive it.
#[derive(Default)]
pub(crate) struct Connections {
    closed: bool,
    tasks: HashMap<u64, JoinHandle<()>>,
}

impl Connections {
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }
}

/// Takes the open connection tasks for the caller to abort; with `close`,
/// also stops any new connection from being registered.
pub(crate) fn take_connections(node: &Node, close: bool) -> Vec<JoinHandle<()>> {
    let mut connections = lock(&node.connections);
    connections.closed |= close;
    connections.tasks.drain().map(|(_, task)| task).collect()
}

/// Lets a stopped broker's connections register again, for a restart.
pub(crate) fn reopen(node: &Node) {
    lock(&node.connections).closed = false;
}

pub(crate) fn spawn_accept_loop(listener: TcpListener, node: Arc<Node>) -> JoinHandle<()> {
    let span = tracing::info_span!("mock_broker", node_id = node.node_id);
    tokio::spawn(accept_loop(listener, node).instrument(span))
}

async fn accept_loop(listener: TcpListener, node: Arc<Node>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => start_connection(&node, stream, peer),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

fn start_connection(node: &Arc<Node>, stream: TcpStream, peer: SocketAddr) {
    // Requests and responses are small and latency is what tests measure.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    // The lock is held across the spawn so the task cannot deregister itself
    // before it is registered, even on a multi-threaded runtime.
    let mut connections = lock(&node.connections);
    if connections.closed {
        return;
    }
    let id = node.accepted.fetch_add(1, Ordering::AcqRel) + 1;
    let span = tracing::debug_span!("connection", id, %peer);
    let task = tokio::spawn(connection_task(Arc::clone(node), id, stream, peer).instrument(span));
    connections.tasks.insert(id, task);
}

/// Removes a connection's task from the table however the task ends,
/// including by abort.
struct Deregister {
    node: Arc<Node>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        lock(&self.node.connections).tasks.remove(&self.id);
    }
}

async fn connection_task(node: Arc<Node>, id: u64, stream: TcpStream, peer: SocketAddr) {
    let _deregister = Deregister {
        node: Arc::clone(&node),
        id,
    };
    tracing::debug!("accepted");
    match serve_connection(&node, id, stream, peer).await {
        Ok(()) => tracing::debug!("closed"),
        Err(ConnectionError::Io(e)) => tracing::debug!(error = %e, "connection failed"),
        Err(e) => tracing::warn!(error = %e, "closing connection"),
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("frame length {0} is negative or above max_frame_size ({1})")]
    FrameLength(i32, usize),
    #[error("connection closed in the middle of a frame")]
    TruncatedFrame,
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("malformed request header: {0}")]
    MalformedHeader(String),
    #[error("{0}")]
    Refused(String),
}

impl From<Refusal> for ConnectionError {
    fn from(refusal: Refusal) -> Self {
        ConnectionError::Refused(refusal.0)
    }
}

/// What to do after a request.
enum Next {
    Continue,
    Close,
}

async fn serve_connection(
    node: &Node,
    connection_id: u64,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), ConnectionError> {
    // The connection's SASL state: what it may ask before, during and after
    // authentication.
    let mut session = Session::default();
    while let Some(frame) = read_frame(&mut stream, node.max_frame_size).await? {
        match handle_request(node, connection_id, frame, &mut stream, peer, &mut session).await? {
            Next::Continue => {}
            Next::Close => break,
        }
    }
    Ok(())
}

/// Reads one frame body; `None` when the client closed between frames.
async fn read_frame(
    stream: &mut TcpStream,
    max_frame_size: usize,
) -> Result<Option<Bytes>, ConnectionError> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match stream.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(ConnectionError::TruncatedFrame),
            n => filled += n,
        }
    }
    let length = i32::from_be_bytes(prefix);
    // Checked before allocating: the length comes straight off the wire.
    let size = usize::try_from(length)
        .ok()
        .filter(|size| *size <= max_frame_size)
        .ok_or(ConnectionError::FrameLength(length, max_frame_size))?;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ConnectionError::TruncatedFrame
        } else {
            ConnectionError::Io(e)
        }
    })?;
    Ok(Some(Bytes::from(body)))
}

fn decode_header(frame: &mut Bytes) -> Result<RequestHeader, ConnectionError> {
    // decode_request_header_from_buffer slices the key and version out
    // without a length check, and reports an unknown key without the key.
    let Some(&[k0, k1, _, _]) = frame.get(..4) else {
        return Err(ConnectionError::MalformedHeader(format!(
            "{} bytes is too short for a request header",
            frame.len()
        )));
    };
    let api_key = i16::from_be_bytes([k0, k1]);
    if ApiKey::try_from(api_key).is_err() {
        return Err(ConnectionError::UnknownApiKey(api_key));
    }
    api::decode_guarded(|| decode_request_header_from_buffer(frame))
        .map_err(ConnectionError::MalformedHeader)
}

async fn handle_request(
    node: &Node,
    connection_id: u64,
    mut frame: Bytes,
    stream: &mut TcpStream,
    peer: SocketAddr,
    session: &mut Session,
) -> Result<Next, ConnectionError> {
    let header = decode_header(&mut frame)?;
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|()| ConnectionError::UnknownApiKey(header.request_api_key))?;
    let request = RequestInfo {
        node_id: node.node_id,
        connection_id,
        api_key,
        api_version: header.request_api_version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.as_ref().map(|id| id.to_string()),
    };
    tracing::debug!(
        api_key = ?request.api_key,
        api_version = request.api_version,
        correlation_id = request.correlation_id,
        "request"
    );
    node.record(request.clone());

    match node.network.fate(node.shared.entropy(), &request) {
        Fate::Drop => {
            tracing::debug!(
                correlation_id = request.correlation_id,
                "dropped (drop rate)"
            );
            return Ok(Next::Close);
        }
        Fate::Delay(latency) if !latency.is_zero() => tokio::time::sleep(latency).await,
        Fate::Delay(_) => {}
    }

    let Some(action) = node.interceptor.take(&request) else {
        let reply = api::serve(node, &header, frame, Mode::Normal, peer, session).await?;
        return write_reply(stream, reply).await;
    };
    tracing::debug!(
        ?action,
        correlation_id = request.correlation_id,
        "intercepted"
    );
    match action {
        Action::Delay(delay) => {
            tokio::time::sleep(delay).await;
            let reply = api::serve(node, &header, frame, Mode::Normal, peer, session).await?;
            write_reply(stream, reply).await
        }
        Action::Error(code) => {
            let reply = api::serve(node, &header, frame, Mode::Error(code), peer, session).await?;
            write_reply(stream, reply).await
        }
        Action::Disconnect => Ok(Next::Close),
        Action::Garbage(bytes) => {
            write_all(stream, &bytes).await?;
            Ok(Next::Continue)
        }
        Action::Stall => {
            drain(stream).await;
            Ok(Next::Close)
        }
        Action::RawResponse(body) => {
            write_prefixed(stream, &body).await?;
            Ok(Next::Continue)
        }
        Action::Respond(responder) => {
            let body = responder
                .frame(&request)
                .map_err(ConnectionError::Refused)?;
            write_prefixed(stream, &body).await?;
            Ok(Next::Continue)
        }
        Action::Rewrite(rewriter) => {
            match api::serve(node, &header, frame, Mode::Normal, peer, session).await? {
                Reply::Frame(response) => {
                    let body = rewriter.apply(&request, response.freeze().slice(4..));
                    write_prefixed(stream, &body).await?;
                    Ok(Next::Continue)
                }
                Reply::FrameThenClose(response) => {
                    let body = rewriter.apply(&request, response.freeze().slice(4..));
                    write_prefixed(stream, &body).await?;
                    Ok(Next::Close)
                }
                Reply::Nothing => Ok(Next::Continue),
                Reply::Close => Ok(Next::Close),
            }
        }
        Action::HalfResponse => {
            // The request takes effect (a topic is created, say) and only the
            // answer is lost, which is the case a client's retry must handle.
            // An acks=0 Produce has no answer to halve; the close remains.
            if let Reply::Frame(response) | Reply::FrameThenClose(response) =
                api::serve(node, &header, frame, Mode::Normal, peer, session).await?
            {
                let body_len = response.len() - 4;
                write_all(stream, &response[..4 + body_len / 2]).await?;
            }
            Ok(Next::Close)
        }
    }
}

/// Writes what the API handler decided: a response, nothing (Produce with
/// acks=0), or a hang-up (acks=0 with a failed partition, Kafka's only way
/// to tell such a producer).
async fn write_reply(stream: &mut TcpStream, reply: Reply) -> Result<Next, ConnectionError> {
    match reply {
        Reply::Frame(frame) => {
            write_all(stream, &frame).await?;
            Ok(Next::Continue)
        }
        Reply::FrameThenClose(frame) => {
            write_all(stream, &frame).await?;
            Ok(Next::Close)
        }
        Reply::Nothing => Ok(Next::Continue),
        Reply::Close => Ok(Next::Close),
    }
}

/// Writes `body` behind its length prefix.
async fn write_prefixed(stream: &mut TcpStream, body: &[u8]) -> Result<(), ConnectionError> {
    let length = i32::try_from(body.len())
        .map_err(|_| ConnectionError::Refused("response body larger than 2 GiB".to_owned()))?;
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_i32(length);
    out.extend_from_slice(body);
    write_all(stream, &out).await
}

async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), ConnectionError> {
    stream.write_all(bytes).await?;
    Ok(())
}

/// Swallows whatever the client sends until it hangs up, so a stalled
/// connection stays open without its task outliving the client.
async fn drain(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}
