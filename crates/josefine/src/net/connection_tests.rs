//! Connection fault tests against an in-memory peer (`tokio::io::duplex`): the peer is
//! scripted byte by byte, so each failure mode is exact and no real time passes
//! (the clock is paused).

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{HeartbeatRequest, ProduceRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The request header fields the peer needs.
struct Received {
    api_key: i16,
    correlation_id: i32,
}

fn connect() -> (Connection, DuplexStream) {
    connect_with(ConnectionConfig::default())
}

fn connect_with(config: ConnectionConfig) -> (Connection, DuplexStream) {
    let (client_end, peer) = tokio::io::duplex(1 << 20);
    (Connection::spawn(client_end, "peer", config), peer)
}

async fn read_request(peer: &mut DuplexStream) -> Received {
    let len = peer.read_i32().await.expect("request length") as usize;
    let mut body = vec![0u8; len];
    peer.read_exact(&mut body).await.expect("request body");
    Received {
        api_key: i16::from_be_bytes([body[0], body[1]]),
        correlation_id: i32::from_be_bytes(body[4..8].try_into().unwrap()),
    }
}

/// A Heartbeat v0 response frame: header v0 (correlation id) + error code.
fn heartbeat_response(correlation_id: i32, error_code: i16) -> BytesMut {
    let mut frame = BytesMut::new();
    frame.put_i32(6);
    frame.put_i32(correlation_id);
    frame.put_i16(error_code);
    frame
}

async fn heartbeat(conn: &Connection) -> Result<i16> {
    conn.call(&HeartbeatRequest::default(), 0, TIMEOUT)
        .await
        .map(|r| r.error_code)
}

#[tokio::test(start_paused = true)]
async fn pipelined_requests_each_get_their_own_response() {
    let (conn, mut peer) = connect();
    let calls = tokio::spawn({
        let conn = conn.clone();
        async move { futures::future::join_all((0..3).map(|_| heartbeat(&conn))).await }
    });
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(read_request(&mut peer).await.correlation_id);
    }
    // Answer in reverse order, each with its correlation id as error code, to prove
    // routing is by id and not by position.
    for &id in ids.iter().rev() {
        peer.write_all(&heartbeat_response(id, 100 + id as i16))
            .await
            .unwrap();
    }
    let results: Vec<i16> = calls
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let mut expected: Vec<i16> = ids.iter().map(|&id| 100 + id as i16).collect();
    expected.sort();
    let mut got = results.clone();
    got.sort();
    assert_eq!(got, expected);
    assert!(!conn.is_closed());
}

#[tokio::test(start_paused = true)]
async fn response_split_across_many_writes_is_reassembled() {
    let (conn, mut peer) = connect();
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    let req = read_request(&mut peer).await;
    for byte in heartbeat_response(req.correlation_id, 7).iter() {
        peer.write_all(&[*byte]).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(call.await.unwrap().unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn hang_up_mid_response_fails_every_waiter_and_poisons() {
    let (conn, mut peer) = connect();
    let calls = tokio::spawn({
        let conn = conn.clone();
        async move { futures::future::join(heartbeat(&conn), heartbeat(&conn)).await }
    });
    let first = read_request(&mut peer).await;
    read_request(&mut peer).await;
    let frame = heartbeat_response(first.correlation_id, 0);
    peer.write_all(&frame[..7]).await.unwrap();
    drop(peer);
    let (a, b) = calls.await.unwrap();
    for result in [a, b] {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::ConnectionClosed, "{err}");
        assert_eq!(err.context().api(), Some("Heartbeat"));
    }
    assert!(conn.is_closed());
    // A poisoned connection refuses new work with the same error, at once.
    let err = heartbeat(&conn).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::ConnectionClosed);
}

#[tokio::test(start_paused = true)]
async fn garbage_bytes_are_a_protocol_error() {
    let (conn, mut peer) = connect();
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    read_request(&mut peer).await;
    peer.write_all(b"\xde\xad\xbe\xef garbage garbage")
        .await
        .unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
    assert!(conn.is_closed());
}

#[tokio::test(start_paused = true)]
async fn absurd_length_prefix_is_rejected_before_allocating() {
    let (conn, mut peer) = connect_with(ConnectionConfig {
        max_frame_size: 1024 * 1024,
        ..ConnectionConfig::default()
    });
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    read_request(&mut peer).await;
    peer.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol);
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
}

#[test]
fn deliver_frames_does_not_reserve_an_unvalidated_length() {
    let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
    let mut in_flight = HashMap::new();
    assert!(deliver_frames(&mut buf, &mut in_flight, 1 << 20).is_err());
    assert!(buf.capacity() < 1 << 20, "capacity {}", buf.capacity());
}

#[tokio::test(start_paused = true)]
async fn unknown_correlation_id_poisons_the_connection() {
    let (conn, mut peer) = connect();
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    let req = read_request(&mut peer).await;
    peer.write_all(&heartbeat_response(req.correlation_id + 1000, 0))
        .await
        .unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol);
    assert!(err.to_string().contains("correlation id"), "{err}");
    assert!(conn.is_closed());
}

#[tokio::test(start_paused = true)]
async fn peer_slower_than_timeout_times_out_and_poisons() {
    let (conn, mut peer) = connect();
    let slow = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call(&HeartbeatRequest::default(), 0, Duration::from_millis(200))
                .await
        }
    });
    let other = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    read_request(&mut peer).await;
    read_request(&mut peer).await;
    // The peer never answers; the paused clock jumps to the timeout.
    let err = slow.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout);
    // The stuck connection is closed, so the other request fails too, not hangs.
    let err = other.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(conn.is_closed());
}

#[tokio::test(start_paused = true)]
async fn cancelled_caller_leaves_the_stream_in_step() {
    let (conn, mut peer) = connect();
    let abandoned = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    let first = read_request(&mut peer).await;
    abandoned.abort();
    let _ = abandoned.await;
    let next = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    let second = read_request(&mut peer).await;
    peer.write_all(&heartbeat_response(first.correlation_id, 1))
        .await
        .unwrap();
    peer.write_all(&heartbeat_response(second.correlation_id, 2))
        .await
        .unwrap();
    assert_eq!(next.await.unwrap().unwrap(), 2);
    assert!(!conn.is_closed());
}

#[tokio::test(start_paused = true)]
async fn produce_with_acks_zero_expects_no_response() {
    let (conn, mut peer) = connect();
    let request = ProduceRequest::default().with_acks(0);
    let response = conn.call(&request, 3, TIMEOUT).await.unwrap();
    assert!(response.responses.is_empty());
    let received = read_request(&mut peer).await;
    assert_eq!(received.api_key, ApiKey::Produce as i16);
    // The next answered request still lines up.
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    let req = read_request(&mut peer).await;
    peer.write_all(&heartbeat_response(req.correlation_id, 3))
        .await
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn truncated_response_body_is_a_protocol_error_not_a_panic() {
    let (conn, mut peer) = connect();
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(&HeartbeatRequest::default(), 1, TIMEOUT).await }
    });
    let req = read_request(&mut peer).await;
    // v1 needs throttle time + error code (6 bytes); send 1.
    let mut frame = BytesMut::new();
    frame.put_i32(5);
    frame.put_i32(req.correlation_id);
    frame.put_u8(0);
    peer.write_all(&frame).await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
    // A response we cannot read poisons the connection: the next call reconnects.
    assert!(conn.is_closed());
}

/// The frame DESIGN.md's old "Known limitations" named: a Metadata v1 answer whose topic
/// array claims i32::MAX elements. kafka-protocol would reserve ~154 GB for it and the
/// allocator would abort the process; the guard turns it into a protocol error.
#[tokio::test(start_paused = true)]
async fn a_hostile_array_count_is_a_protocol_error_not_an_abort() {
    let (conn, mut peer) = connect();
    let call = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call(
                &kafka_protocol::messages::MetadataRequest::default(),
                1,
                TIMEOUT,
            )
            .await
        }
    });
    let req = read_request(&mut peer).await;
    let mut body = BytesMut::new();
    body.put_i32(req.correlation_id);
    body.put_i32(1); // brokers
    body.put_i32(1);
    body.put_i16(9);
    body.put_slice(b"localhost");
    body.put_i32(9092);
    body.put_i16(-1);
    body.put_i32(1); // controller
    body.put_i32(i32::MAX); // topics
    body.put_slice(&[0; 30]);
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    peer.write_all(&frame).await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("`topics`"), "{err}");
    assert_eq!(err.context().api(), Some("Metadata"));
    assert!(conn.is_closed());
}

/// A length just under the limit and then silence: the buffer grows with what
/// arrives, so this costs about a megabyte, not the hundred announced.
#[tokio::test(start_paused = true)]
async fn an_announced_frame_that_never_comes_reserves_little() {
    let (conn, mut peer) = connect();
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { heartbeat(&conn).await }
    });
    read_request(&mut peer).await;
    let announced = (frame::DEFAULT_MAX_FRAME_SIZE - 8) as i32;
    peer.write_all(&announced.to_be_bytes()).await.unwrap();
    peer.write_all(&[0; 1000]).await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(conn.is_closed());
}

#[test]
fn deliver_frames_grows_a_partial_frame_with_its_bytes() {
    let mut buf = BytesMut::new();
    buf.put_i32((frame::DEFAULT_MAX_FRAME_SIZE - 8) as i32);
    buf.put_slice(&[0; 1000]);
    let mut in_flight = HashMap::new();
    deliver_frames(&mut buf, &mut in_flight, frame::DEFAULT_MAX_FRAME_SIZE).unwrap();
    assert!(
        buf.capacity() <= 2 * frame::MIN_READ_AHEAD,
        "capacity {}",
        buf.capacity()
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_ends_the_task() {
    let (conn, mut peer) = connect();
    drop(conn);
    // The task closes its end: the peer reads EOF.
    let mut buf = [0u8; 1];
    assert_eq!(peer.read(&mut buf).await.unwrap(), 0);
}

/// A Produce request of `partitions` batches with acks=0 (no response to script), and
/// its bytes at `version` as one buffer. The first batch is empty, and before v9 the
/// frame ends with the last batch: both make empty parts.
fn many_batches(partitions: i32, version: i16) -> (ProduceRequest, Vec<u8>) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    let request =
        ProduceRequest::default()
            .with_acks(0)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(
                    (0..partitions)
                        .map(|p| {
                            PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(Bytes::from(vec![p as u8; p as usize * 7])))
                        })
                        .collect(),
                )]);
    let mut whole = BytesMut::new();
    // Correlation id 0: the connection's first request.
    frame::encode_request(&mut whole, &request, version, 0, None).unwrap();
    (request, whole.to_vec())
}

async fn read_frame<S: AsyncReadExt + Unpin>(peer: &mut S) -> Vec<u8> {
    let len = peer.read_i32().await.expect("request length");
    let mut frame = len.to_be_bytes().to_vec();
    frame.resize(4 + len as usize, 0);
    peer.read_exact(&mut frame[4..])
        .await
        .expect("request body");
    frame
}

/// A stream without vectored writes (as a transport may be): the parts go one at a time.
struct Plain(DuplexStream);

impl AsyncRead for Plain {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn a_produce_frame_in_parts_arrives_whole_through_plain_writes() {
    let (client_end, mut peer) = tokio::io::duplex(1 << 20);
    let client_end = Plain(client_end);
    assert!(!client_end.is_write_vectored());
    let conn = Connection::spawn(client_end, "peer", ConnectionConfig::default());
    // v8: a write of an empty part would read as a closed socket.
    let (request, whole) = many_batches(300, 8);
    conn.call(&request, 8, TIMEOUT).await.unwrap();
    assert_eq!(read_frame(&mut peer).await, whole);
}

#[tokio::test(start_paused = true)]
async fn a_produce_frame_in_parts_arrives_whole_through_partial_vectored_writes() {
    // A duplex stream takes many parts a write, up to its room: 997 bytes end every
    // write inside a part.
    let (client_end, mut peer) = tokio::io::duplex(997);
    assert!(client_end.is_write_vectored());
    let conn = Connection::spawn(client_end, "peer", ConnectionConfig::default());
    for version in [8, 9] {
        let (request, whole) = many_batches(40, version);
        conn.call(&request, version, TIMEOUT).await.unwrap();
        let mut whole = whole;
        // The second frame's correlation id is 1.
        if version == 9 {
            whole[8..12].copy_from_slice(&1i32.to_be_bytes());
        }
        assert_eq!(read_frame(&mut peer).await, whole, "v{version}");
    }
}

#[tokio::test]
async fn a_produce_frame_in_parts_arrives_whole_through_vectored_writes() {
    // A socket takes many parts a write: 601 parts need several writes, some partial
    // (the peer reads only once the request is queued).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    assert!(client.is_write_vectored());
    let (mut peer, _) = listener.accept().await.unwrap();
    let conn = Connection::spawn(client, "peer", ConnectionConfig::default());
    let (request, whole) = many_batches(300, 9);
    conn.call(&request, 9, TIMEOUT).await.unwrap();
    assert_eq!(read_frame(&mut peer).await, whole);
}

#[test]
fn written_bytes_leave_the_queue_across_parts() {
    let mut queue: VecDeque<Bytes> = [&b"abc"[..], b"de", b"fgh"]
        .into_iter()
        .map(Bytes::from_static)
        .collect();
    consume(&mut queue, 4);
    assert_eq!(
        queue,
        [Bytes::from_static(b"e"), Bytes::from_static(b"fgh")]
    );
    consume(&mut queue, 1);
    assert_eq!(queue, [Bytes::from_static(b"fgh")]);
    consume(&mut queue, 3);
    assert!(queue.is_empty());
}
