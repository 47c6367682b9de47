//! Request/response framing: `[i32 length][header][body]`, big-endian.
//!
//! Requests are encoded into one buffer with the length patched in afterwards. Produce
//! requests are the exception: the client writes their record batches from the
//! batches' own buffers, by vectored writes, without copying them into the frame. Responses are handed in as one
//! `Bytes` frame (without the length prefix); decoding slices it, so record data in a
//! Fetch response stays a view of the frame the socket read.

use std::any::Any;
use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ProduceRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};

use super::guard::{self, WireSchema};
use super::KafkaRequest;
use crate::error::{Error, Result};

/// Size of the length prefix in front of every frame.
pub const LENGTH_PREFIX: usize = 4;

/// Default cap on a response frame: 100 MiB, Kafka's `socket.request.max.bytes`.
/// A peer announcing more is treated as garbage rather than trusted with memory.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Encodes `request` at `version` with its header into `buf`, length prefix included.
pub fn encode_request<R: KafkaRequest>(
    buf: &mut BytesMut,
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: Option<&StrBytes>,
) -> Result<()> {
    let start = buf.len();
    buf.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(R::API_KEY as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.cloned());
    header
        .encode(buf, R::header_version(version))
        .and_then(|()| request.encode(buf, version))
        .map_err(|e| {
            buf.truncate(start);
            Error::protocol(format!("cannot encode {:?} v{version}: {e}", R::API_KEY))
        })?;
    let prefix = length_prefix(buf.len() - start - LENGTH_PREFIX)?;
    buf[start..start + LENGTH_PREFIX].copy_from_slice(&prefix);
    Ok(())
}

/// The length prefix of a request whose frame holds `len` bytes after it.
fn length_prefix(len: usize) -> Result<[u8; LENGTH_PREFIX]> {
    i32::try_from(len)
        .map(i32::to_be_bytes)
        .map_err(|_| Error::protocol(format!("request of {len} bytes does not fit a frame")))
}

/// The frame of `request` (length prefix and header included) as the parts to write,
/// in order: [`encode_request`]'s one buffer for every request but Produce, whose
/// record batches stay in their own buffers ([`encode_produce`]). A part may be empty.
///
/// The Produce encoding is ours and refuses two things `kafka-protocol`'s would write:
/// unknown tagged fields (the client sets none; the crate's encoder for them is
/// private) and, in flexible versions, strings over `i16::MAX` bytes (Kafka's own
/// limit).
pub(crate) fn encode_request_parts<R: KafkaRequest>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: Option<&StrBytes>,
) -> Result<Vec<Bytes>> {
    if let Some(produce) = (request as &dyn Any).downcast_ref::<ProduceRequest>() {
        return encode_produce(produce, version, correlation_id, client_id);
    }
    let mut buf = BytesMut::new();
    encode_request(&mut buf, request, version, correlation_id, client_id)?;
    Ok(vec![buf.freeze()])
}

/// A Produce request's frame without copying its record batches: every other byte
/// goes into one small buffer, and the parts are that buffer's pieces with each
/// batch's own `Bytes` between them. The bytes are `encode_request`'s (a test checks
/// every version); copying the batches cost a pass over every produced byte and, with
/// requests in flight, held a second copy of up to `max.in.flight` x
/// `max.request.size` bytes.
fn encode_produce(
    request: &ProduceRequest,
    version: i16,
    correlation_id: i32,
    client_id: Option<&StrBytes>,
) -> Result<Vec<Bytes>> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::protocol(format!("cannot encode Produce v{version}: {e}"))
    };
    let versions = ProduceRequest::VERSIONS;
    if version < versions.min || version > versions.max {
        return Err(fail(&"version not supported"));
    }
    let flexible = version >= 9;
    let partitions: usize = request
        .topic_data
        .iter()
        .map(|t| t.partition_data.len())
        .sum();
    let mut head = BytesMut::with_capacity(64 + 16 * request.topic_data.len() + 16 * partitions);
    // Where a batch goes: its offset in `head`, and the batch.
    let mut batches: Vec<(usize, &Bytes)> = Vec::with_capacity(partitions);
    head.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ProduceRequest::API_KEY as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.cloned())
        .encode(&mut head, ProduceRequest::header_version(version))
        .map_err(|e| fail(&e))?;
    // A length: i32 in the classic encoding; unsigned varint of length + 1 in the
    // compact one, where 0 is null.
    let length = |head: &mut BytesMut, len: Option<usize>| -> Result<()> {
        if flexible {
            let mut v = match len {
                Some(len) => u32::try_from(len + 1).map_err(|_| fail(&"too long"))?,
                None => 0,
            };
            while v >= 0x80 {
                head.put_u8((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            head.put_u8(v as u8);
        } else {
            match len {
                Some(len) => head.put_i32(i32::try_from(len).map_err(|_| fail(&"too long"))?),
                None => head.put_i32(-1),
            }
        }
        Ok(())
    };
    let string = |head: &mut BytesMut, value: Option<&str>| -> Result<()> {
        match value {
            Some(s) if s.len() > i16::MAX as usize => Err(fail(&"a string too long")),
            Some(s) if flexible => {
                length(head, Some(s.len()))?;
                head.put_slice(s.as_bytes());
                Ok(())
            }
            Some(s) => {
                head.put_i16(s.len() as i16);
                head.put_slice(s.as_bytes());
                Ok(())
            }
            None if flexible => length(head, None),
            None => {
                head.put_i16(-1);
                Ok(())
            }
        }
    };
    // Tagged fields exist in flexible versions only. The client sets none; writing
    // someone else's would need the crate's private encoder.
    let no_tags = |head: &mut BytesMut, tags: &BTreeMap<i32, Bytes>| -> Result<()> {
        if flexible {
            if !tags.is_empty() {
                return Err(fail(&"unknown tagged fields are not sent"));
            }
            head.put_u8(0);
        }
        Ok(())
    };
    string(
        &mut head,
        request.transactional_id.as_deref().map(|id| &**id),
    )?;
    head.put_i16(request.acks);
    head.put_i32(request.timeout_ms);
    length(&mut head, Some(request.topic_data.len()))?;
    for topic in &request.topic_data {
        if version <= 12 {
            string(&mut head, Some(&topic.name))?;
        } else {
            head.put_slice(topic.topic_id.as_bytes());
        }
        length(&mut head, Some(topic.partition_data.len()))?;
        for partition in &topic.partition_data {
            head.put_i32(partition.index);
            match &partition.records {
                None => length(&mut head, None)?,
                Some(records) => {
                    length(&mut head, Some(records.len()))?;
                    batches.push((head.len(), records));
                }
            }
            no_tags(&mut head, &partition.unknown_tagged_fields)?;
        }
        no_tags(&mut head, &topic.unknown_tagged_fields)?;
    }
    no_tags(&mut head, &request.unknown_tagged_fields)?;
    let len = head.len() - LENGTH_PREFIX + batches.iter().map(|(_, b)| b.len()).sum::<usize>();
    head[..LENGTH_PREFIX].copy_from_slice(&length_prefix(len)?);
    let mut head = head.freeze();
    let mut parts = Vec::with_capacity(2 * batches.len() + 1);
    let mut at = 0;
    for (offset, batch) in batches {
        parts.push(head.split_to(offset - at));
        at = offset;
        parts.push(batch.clone());
    }
    parts.push(head);
    Ok(parts)
}

/// Validates a frame's length prefix. Negative or oversized lengths are a protocol
/// violation: we must not allocate what an untrusted peer asks for.
pub fn frame_length(prefix: [u8; LENGTH_PREFIX], max_frame_size: usize) -> Result<usize> {
    let len = i32::from_be_bytes(prefix);
    // A response frame holds at least the correlation id.
    if len < 4 {
        return Err(Error::protocol(format!("invalid frame length {len}")));
    }
    let len = len as usize;
    if len > max_frame_size {
        return Err(Error::protocol(format!(
            "frame of {len} bytes exceeds the maximum of {max_frame_size} bytes; \
             raise the client's max frame size if the broker legitimately sends more"
        )));
    }
    Ok(len)
}

/// Reads the correlation id, which opens every response header version.
pub fn correlation_id(frame: &[u8]) -> Result<i32> {
    match frame.first_chunk::<4>() {
        Some(bytes) => Ok(i32::from_be_bytes(*bytes)),
        None => Err(Error::protocol("response frame shorter than its header")),
    }
}

/// Decodes a response frame (without length prefix) of `R` at `version`.
///
/// The header and the body go through [`guard::check`] before `kafka-protocol` sees
/// them, so a hostile array count is a protocol error rather than an allocation of
/// whatever size it claims.
pub fn decode_response<R: KafkaRequest>(mut frame: Bytes, version: i16) -> Result<R::Response> {
    let header_version = R::Response::header_version(version);
    decode_guarded::<ResponseHeader>(&mut frame, header_version)
        .map_err(|e| Error::protocol(format!("bad {:?} response header: {e}", R::API_KEY)))?;
    let response = decode_guarded::<R::Response>(&mut frame, version).map_err(|e| {
        Error::protocol(format!(
            "cannot decode {:?} v{version} response: {e}",
            R::API_KEY
        ))
    })?;
    if frame.has_remaining() {
        // Newer brokers may append fields we do not know at this version; the data we
        // decoded is still what the schema says, so this is logged, not fatal.
        tracing::debug!(api = ?R::API_KEY, version, trailing = frame.remaining(), "response has trailing bytes");
    }
    Ok(response)
}

/// Decodes a `M` at `version` off the front of `buf`, once [`guard::check`] has
/// proved that every array count in it is backed by bytes of `buf`.
pub fn decode_guarded<M: Decodable + WireSchema>(
    buf: &mut Bytes,
    version: i16,
) -> std::result::Result<M, String> {
    guard::check::<M>(buf, version).map_err(|e| e.to_string())?;
    M::decode(buf, version).map_err(|e| e.to_string())
}

/// How far ahead of the bytes received [`split_frame`] reserves room for a partial
/// frame, at least.
pub const MIN_READ_AHEAD: usize = 1 << 20;

/// [`split_frame`] grows the room for a partial frame once less than this is left (or
/// less than the rest of the frame).
const GROW_BELOW: usize = 64 * 1024;

/// Takes the next complete frame (without its length prefix) off the front of `buf`, or
/// `None` if `buf` holds only part of one.
///
/// For a partial frame, and only once its length is validated, `buf` gets room for
/// more of it: the rest of the frame, but no more than what has arrived so far (at
/// least [`MIN_READ_AHEAD`]). So the buffer grows by doubling with the bytes that
/// really arrive, and a peer announcing a 100 MiB frame and sending nothing costs
/// 1 MiB, not 100.
///
/// The room is exactly that, never rounded up: a large response (a fetch answer of
/// tens of MB) is held whole while it is handled, and `BytesMut::reserve` rounds up
/// by doubling (measured: a 20 MB fetch answer held in a 34.5 MB buffer; the member's
/// peak RSS at 10,000 partitions on Kafka fell from 89 to 77 MB with exact room).
pub fn split_frame(buf: &mut BytesMut, max_frame_size: usize) -> Result<Option<Bytes>> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let len = frame_length(*prefix, max_frame_size)?;
    let needed = LENGTH_PREFIX + len;
    if buf.len() < needed {
        let missing = needed - buf.len();
        // Grown only once (nearly) full, so the room doubles: growing whenever the room
        // is short of `ahead` would reallocate on every read of a large frame.
        if buf.capacity() - buf.len() < missing.min(GROW_BELOW) {
            let ahead = missing.min(buf.len().max(MIN_READ_AHEAD));
            // Through a `Vec` for its exact reserve, which keeps `realloc` (a large
            // buffer in a mapping of its own grows by remapping its pages; a fresh
            // buffer and a copy cost twice the system time, measured). The bytes
            // received move to the front of the allocation, or are copied when an
            // earlier frame still shares it: either way only the partial frame.
            let mut grown = Vec::from(std::mem::take(buf));
            grown.reserve_exact(ahead);
            *buf = BytesMut::from(Bytes::from(grown));
        }
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiKey, MetadataRequest};

    #[test]
    fn request_frame_has_length_prefix_and_header() {
        let mut buf = BytesMut::new();
        let client_id = StrBytes::from_static_str("josefine");
        encode_request(
            &mut buf,
            &MetadataRequest::default(),
            1,
            42,
            Some(&client_id),
        )
        .unwrap();
        let len = i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len() - 4);
        let mut body = buf.freeze().slice(4..);
        assert_eq!(body.get_i16(), ApiKey::Metadata as i16);
        assert_eq!(body.get_i16(), 1);
        assert_eq!(body.get_i32(), 42);
        assert_eq!(body.get_i16(), 8);
        assert_eq!(&body[..8], b"josefine");
    }

    fn produce_request(transactional: bool) -> ProduceRequest {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{TopicName, TransactionalId};
        let topic = |name: &'static str, id: u128, partitions: Vec<(i32, Option<Bytes>)>| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_topic_id(uuid::Uuid::from_u128(id))
                .with_partition_data(
                    partitions
                        .into_iter()
                        .map(|(index, records)| {
                            PartitionProduceData::default()
                                .with_index(index)
                                .with_records(records)
                        })
                        .collect(),
                )
        };
        ProduceRequest::default()
            .with_transactional_id(
                transactional.then(|| TransactionalId(StrBytes::from_static_str("txn-1"))),
            )
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                topic(
                    "orders",
                    7,
                    vec![
                        (0, Some(Bytes::from(vec![1u8; 300]))),
                        (3, None),
                        (5, Some(Bytes::new())),
                        (9, Some(Bytes::from_static(b"batch"))),
                    ],
                ),
                topic("", 8, vec![]),
                // 200 bytes: its compact length takes two varint bytes.
                topic("payments", 9, vec![(1, Some(Bytes::from(vec![2u8; 200])))]),
            ])
    }

    #[test]
    fn a_produce_frame_is_the_crates_encoding_without_copying_its_batches() {
        let client_id = StrBytes::from_static_str("josefine");
        for version in 3..=13 {
            for transactional in [false, true] {
                let request = produce_request(transactional);
                let mut expected = BytesMut::new();
                encode_request(&mut expected, &request, version, 42, Some(&client_id)).unwrap();
                let parts = encode_request_parts(&request, version, 42, Some(&client_id)).unwrap();
                let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
                assert_eq!(
                    joined,
                    expected[..],
                    "v{version}, transactional {transactional}"
                );
                // Every non-empty batch is written from its own buffer.
                for records in request
                    .topic_data
                    .iter()
                    .flat_map(|t| &t.partition_data)
                    .filter_map(|p| p.records.as_ref())
                    .filter(|r| !r.is_empty())
                {
                    assert!(
                        parts.iter().any(|p| p.as_ptr() == records.as_ptr()),
                        "v{version}: a batch was copied"
                    );
                }
            }
        }
    }

    #[test]
    fn other_requests_are_one_buffer() {
        let parts = encode_request_parts(&MetadataRequest::default(), 12, 1, None).unwrap();
        assert_eq!(parts.len(), 1);
    }

    #[test]
    fn a_produce_frame_refuses_what_it_cannot_write() {
        let request = produce_request(false);
        assert!(encode_request_parts(&request, 2, 1, None).is_err());
        assert!(encode_request_parts(&request, 14, 1, None).is_err());
        let tagged = request.with_unknown_tagged_field(0, Bytes::from_static(b"x"));
        assert!(encode_request_parts(&tagged, 9, 1, None).is_err());
        // The classic encoding has no tagged fields to refuse.
        assert!(encode_request_parts(&tagged, 8, 1, None).is_ok());
    }

    #[test]
    fn frame_length_rejects_negative_tiny_and_oversized() {
        assert!(frame_length((-1i32).to_be_bytes(), 1000).is_err());
        assert!(frame_length(3i32.to_be_bytes(), 1000).is_err());
        assert!(frame_length(1001i32.to_be_bytes(), 1000).is_err());
        assert!(frame_length(i32::MAX.to_be_bytes(), DEFAULT_MAX_FRAME_SIZE).is_err());
        assert_eq!(frame_length(1000i32.to_be_bytes(), 1000).unwrap(), 1000);
    }

    #[test]
    fn split_frame_reserves_with_what_arrives_not_with_what_is_announced() {
        let max = 100 << 20;
        let mut buf = BytesMut::new();
        buf.put_i32((max - 8) as i32);
        buf.put_slice(&[0; 100]);
        assert!(split_frame(&mut buf, max).unwrap().is_none());
        assert!(buf.capacity() <= 2 * MIN_READ_AHEAD, "{}", buf.capacity());
        // As bytes arrive, the room grows with them, and the frame completes.
        let mut sent = 104;
        while sent < max - 8 + 4 {
            let n = (buf.capacity() - buf.len()).min(max - 8 + 4 - sent);
            buf.put_bytes(7, n);
            sent += n;
            assert!(
                buf.capacity() <= 2 * sent.max(MIN_READ_AHEAD) + 64,
                "{} for {sent}",
                buf.capacity()
            );
            // Never room beyond the frame itself: it would live as long as the frame.
            assert!(
                buf.capacity() <= max - 8 + 4,
                "{} for {sent}",
                buf.capacity()
            );
            if let Some(frame) = split_frame(&mut buf, max).unwrap() {
                assert_eq!(frame.len(), max - 8);
                return;
            }
        }
        panic!("the frame never completed");
    }

    #[test]
    fn a_large_frame_arriving_in_small_reads_grows_its_room_by_doubling() {
        let max = 100 << 20;
        let len = max - 8;
        let mut buf = BytesMut::new();
        buf.put_i32(len as i32);
        let mut sent = 4;
        let mut growths = 0;
        let mut capacity = buf.capacity();
        loop {
            if let Some(frame) = split_frame(&mut buf, max).unwrap() {
                assert_eq!(frame.len(), len);
                break;
            }
            if buf.capacity() != capacity {
                growths += 1;
                capacity = buf.capacity();
            }
            // Reads of 64 KiB at most, as a socket gives them.
            let n = (buf.capacity() - buf.len())
                .min(64 * 1024)
                .min(len + 4 - sent);
            assert!(n > 0, "no room for the rest of the frame");
            buf.put_bytes(7, n);
            sent += n;
        }
        // 1 MiB, then doubling up to 100 MiB: 8 growths. Growing whenever the room was
        // short of the next step made 801 here, about one per two reads.
        assert!(growths <= 10, "{growths} growths");
    }

    #[test]
    fn growing_keeps_the_partial_frame_and_leaves_an_earlier_frame_alone() {
        let max = 10 << 20;
        let mut buf = BytesMut::new();
        // A whole 8-byte frame, then the start of a 3 MiB one.
        buf.put_i32(8);
        buf.put_slice(b"12345678");
        buf.put_i32(3 << 20);
        buf.put_slice(b"abcd");
        let first = split_frame(&mut buf, max).unwrap().expect("a whole frame");
        assert!(split_frame(&mut buf, max).unwrap().is_none());
        assert_eq!(&first[..], b"12345678", "the earlier frame changed");
        assert_eq!(&buf[..4], (3i32 << 20).to_be_bytes());
        assert_eq!(&buf[4..], b"abcd");
        assert!(buf.capacity() - buf.len() >= MIN_READ_AHEAD);
    }

    #[test]
    fn truncated_response_is_a_typed_error() {
        // Correlation id only; a Metadata v1 body is missing entirely.
        let frame = Bytes::from_static(&[0, 0, 0, 7]);
        let err = decode_response::<MetadataRequest>(frame, 1).unwrap_err();
        assert_eq!(err.kind(), &crate::ErrorKind::Protocol);
        assert!(correlation_id(&[0, 0]).is_err());
    }
}
