//! The consumer protocol: the bytes consumers exchange through the group coordinator.
//!
//! A consumer joining a group lists, in JoinGroup, one protocol per assignor it supports
//! (protocol type [`PROTOCOL_TYPE`], name = the assignor's name); each protocol's metadata
//! is a [`Subscription`]. The leader decodes every member's subscription, runs the chosen
//! assignor and sends each member, through SyncGroup, an [`Assignment`].
//!
//! Both are Kafka "data" messages, `ConsumerProtocolSubscription.json` and
//! `ConsumerProtocolAssignment.json`, preceded by a big-endian `int16` version that the
//! schemas leave out. We write that prefix here; `kafka-protocol` writes the body.
//!
//! | version | subscription adds                          | assignment         |
//! |---------|--------------------------------------------|--------------------|
//! | 0       | topics, user data                          | partitions, user data |
//! | 1       | owned partitions (KIP-429, cooperative)    | same layout        |
//! | 2       | generation id (KIP-792)                    | same layout        |
//! | 3       | rack id (KIP-881)                          | same layout        |
//!
//! # Compatibility with the Java client and librdkafka
//!
//! * Encoding writes what the Java client's `ConsumerProtocol` writes for the same input:
//!   topics sorted (Java's `String` order) and owned partitions grouped by topic, sorted
//!   by topic then partition; assignment partitions grouped by topic in order of first
//!   appearance. Both clients write version 3 today ([`MAX_VERSION`]).
//! * Decoding is tolerant the way `ConsumerProtocol.deserialize*` is: a version newer than
//!   ours is read as our newest, because the schemas promise that newer versions only
//!   append fields; bytes after the last field we know are ignored. A negative version,
//!   or bytes that end early, is a [`ProtocolError`].
//! * A generation below zero means "none" and an empty rack id means "no rack", as in
//!   Java's `Subscription`.
//!
//! # Untrusted input
//!
//! The bytes come from other members, relayed verbatim by the coordinator. The decoders
//! in `kafka-protocol` 0.18 call `Vec::with_capacity` with whatever array length the wire
//! claims, so ten bytes claiming two billion topics would ask for tens of GiB before
//! noticing that the input is short. Before handing bytes to it we therefore
//!
//! 1. refuse inputs longer than [`MAX_MESSAGE_LEN`], and
//! 2. walk the whole (small, fixed) layout once with `Scan`, which checks every length
//!    prefix and array count against the bytes that remain; an element is never shorter
//!    than its own length prefix, so a count is rejected unless `count * min_size` bytes
//!    are left, and the walk then proves that every element is really there.
//!
//! After that every count `kafka-protocol` sees is backed by bytes of the input, so what
//! it allocates is bounded by a small multiple (about 16x, for arrays of empty strings)
//! of an input that is itself bounded.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as WireAssigned;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as WireOwned;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::TopicPartition;

/// The protocol type a consumer sends in JoinGroup (`ConsumerProtocol.PROTOCOL_TYPE`).
pub(crate) const PROTOCOL_TYPE: &str = "consumer";

/// The newest version of the subscription and assignment we know; what we write.
pub(crate) const MAX_VERSION: i16 = 3;

/// The longest subscription or assignment we decode.
///
/// The group coordinator stores all members' metadata in one record of
/// `__consumer_offsets`, whose default size limit is 1 MiB, so real messages stay far
/// below this; the limit only bounds what a hostile or broken member can make us allocate.
pub(crate) const MAX_MESSAGE_LEN: usize = 4 << 20;

const SUBSCRIPTION: &str = "subscription";
const ASSIGNMENT: &str = "assignment";

/// Why a subscription or assignment could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ProtocolError {
    /// The input is longer than [`MAX_MESSAGE_LEN`].
    #[error("consumer protocol {what} is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// The input ends inside `field`: a length, count or value at byte `offset` (counted
    /// after the version prefix, except for the prefix itself) needs more bytes than are
    /// left. A count that claims more elements than the remaining bytes could hold is
    /// reported this way too.
    #[error("consumer protocol {what} ends early: {field} at byte {offset} is incomplete")]
    Truncated {
        what: &'static str,
        field: &'static str,
        offset: usize,
    },
    /// The version prefix is negative.
    #[error("consumer protocol {what} has unsupported version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
    /// A length or count is impossible (negative, or null where not nullable) or a
    /// string is not UTF-8.
    #[error("malformed consumer protocol {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// A value cannot be represented on the wire (a string longer than 32767 bytes, for
    /// example).
    #[error("cannot encode consumer protocol {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

/// What a member sends in JoinGroup: the topics it wants and what it owns now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// Topics the member subscribes to.
    pub topics: Vec<String>,
    /// Assignor-specific data (see `Assignor::subscription_user_data`).
    pub user_data: Option<Bytes>,
    /// Partitions the member owns while joining (v1+). Empty under the eager protocol,
    /// which revokes everything before joining.
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation in which `owned_partitions` were assigned (v2+); `None` if the
    /// member has none (the wire value -1).
    pub generation: Option<i32>,
    /// The member's `client.rack` (v3+).
    pub rack_id: Option<String>,
}

impl Subscription {
    /// A subscription to `topics` with nothing else set.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn new<T: Into<String>>(topics: impl IntoIterator<Item = T>) -> Self {
        Self {
            topics: topics.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Encodes the version prefix and the body at `version`; versions above
    /// [`MAX_VERSION`] are written as [`MAX_VERSION`], like the Java client does.
    /// Fields the version lacks are left out.
    ///
    /// The output is canonical, as the Java client's: topics sorted and deduplicated,
    /// owned partitions deduplicated and grouped by topic in sorted order.
    pub(crate) fn encode(&self, version: i16) -> Result<Bytes, ProtocolError> {
        let version = known_version(version, SUBSCRIPTION)?;

        let mut topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        topics.sort_by(|a, b| java_order(a, b));
        topics.dedup();

        let mut owned: Vec<&TopicPartition> = self.owned_partitions.iter().collect();
        owned.sort_by(|a, b| java_order(&a.topic, &b.topic).then(a.partition.cmp(&b.partition)));
        owned.dedup();
        let mut owned_by_topic: Vec<WireOwned> = Vec::new();
        for tp in owned {
            match owned_by_topic.last_mut() {
                Some(last) if *last.topic == *tp.topic => last.partitions.push(tp.partition),
                _ => owned_by_topic.push(
                    WireOwned::default()
                        .with_topic(topic_name(&tp.topic))
                        .with_partitions(vec![tp.partition]),
                ),
            }
        }

        let message = ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .into_iter()
                    .map(|t| StrBytes::from_string(t.to_owned()))
                    .collect(),
            )
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(owned_by_topic)
            .with_generation_id(self.generation.unwrap_or(-1))
            .with_rack_id(self.rack_id.clone().map(StrBytes::from_string));
        encode_prefixed(&message, version, SUBSCRIPTION)
    }

    /// Decodes a version-prefixed subscription, as found in JoinGroup member metadata.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let (version, body) = split_version(bytes, SUBSCRIPTION)?;
        scan_subscription(body, version)?;
        let mut buf = Bytes::copy_from_slice(body);
        let wire = ConsumerProtocolSubscription::decode(&mut buf, version)
            .map_err(|e| malformed(SUBSCRIPTION, e))?;

        let mut owned_partitions = Vec::new();
        for group in &wire.owned_partitions {
            let topic: Arc<str> = Arc::from(&**group.topic);
            owned_partitions.extend(group.partitions.iter().map(|&p| TopicPartition {
                topic: topic.clone(),
                partition: p,
            }));
        }
        Ok(Self {
            topics: wire.topics.iter().map(|t| t.to_string()).collect(),
            user_data: wire.user_data,
            owned_partitions,
            generation: (version >= 2 && wire.generation_id >= 0).then_some(wire.generation_id),
            rack_id: wire
                .rack_id
                .filter(|r| !r.is_empty())
                .map(|r| r.to_string()),
        })
    }
}

/// What the leader sends each member in SyncGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// The partitions the member owns from now on.
    pub partitions: Vec<TopicPartition>,
    /// Assignor-specific data; none of the built-in assignors sets it.
    pub user_data: Option<Bytes>,
}

impl Assignment {
    /// An assignment of `partitions` without user data.
    pub(crate) fn new(partitions: Vec<TopicPartition>) -> Self {
        Self {
            partitions,
            user_data: None,
        }
    }

    /// Encodes the version prefix and the body at `version` (clamped to
    /// [`MAX_VERSION`]). Partitions are grouped by topic in order of first appearance and
    /// keep their order within a topic, as the Java client writes them.
    pub(crate) fn encode(&self, version: i16) -> Result<Bytes, ProtocolError> {
        let version = known_version(version, ASSIGNMENT)?;

        let mut groups: Vec<WireAssigned> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for tp in &self.partitions {
            let i = *index.entry(&*tp.topic).or_insert_with(|| {
                groups.push(WireAssigned::default().with_topic(topic_name(&tp.topic)));
                groups.len() - 1
            });
            groups[i].partitions.push(tp.partition);
        }

        let message = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(groups)
            .with_user_data(self.user_data.clone());
        encode_prefixed(&message, version, ASSIGNMENT)
    }

    /// Decodes a version-prefixed assignment, as found in a SyncGroup response.
    ///
    /// An empty input is an error here; the Java client treats an empty SyncGroup
    /// assignment as a leader bug too (`onJoinComplete`).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let (version, body) = split_version(bytes, ASSIGNMENT)?;
        scan_assignment(body)?;
        let mut buf = Bytes::copy_from_slice(body);
        let wire = ConsumerProtocolAssignment::decode(&mut buf, version)
            .map_err(|e| malformed(ASSIGNMENT, e))?;

        let mut partitions = Vec::new();
        for group in &wire.assigned_partitions {
            let topic: Arc<str> = Arc::from(&**group.topic);
            partitions.extend(group.partitions.iter().map(|&p| TopicPartition {
                topic: topic.clone(),
                partition: p,
            }));
        }
        Ok(Self {
            partitions,
            user_data: wire.user_data,
        })
    }
}

/// Orders strings like Java's `String.compareTo`, by UTF-16 code unit, so that sorted
/// lists (topics on the wire, members in the assignors) come out in the Java client's
/// order. It differs from `str::cmp` only between characters above U+FFFF and those in
/// U+E000..=U+FFFF.
pub(crate) fn java_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn known_version(version: i16, what: &'static str) -> Result<i16, ProtocolError> {
    if version < 0 {
        return Err(ProtocolError::UnsupportedVersion { what, version });
    }
    Ok(version.min(MAX_VERSION))
}

fn encode_prefixed<M: Encodable>(
    message: &M,
    version: i16,
    what: &'static str,
) -> Result<Bytes, ProtocolError> {
    let size = message
        .compute_size(version)
        .map_err(|e| ProtocolError::Encode {
            what,
            reason: e.to_string(),
        })?;
    let mut buf = BytesMut::with_capacity(2 + size);
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| ProtocolError::Encode {
            what,
            reason: e.to_string(),
        })?;
    Ok(buf.freeze())
}

/// Checks the size, reads the version prefix and returns the version to decode the body
/// at (at most [`MAX_VERSION`]) with the body.
fn split_version<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(i16, &'a [u8]), ProtocolError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(ProtocolError::TooLarge {
            what,
            len: bytes.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let Some((prefix, body)) = bytes.split_first_chunk::<2>() else {
        return Err(ProtocolError::Truncated {
            what,
            field: "version",
            offset: 0,
        });
    };
    Ok((known_version(i16::from_be_bytes(*prefix), what)?, body))
}

fn malformed(what: &'static str, error: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Malformed {
        what,
        reason: error.to_string(),
    }
}

/// Proves that `body` holds a complete subscription of `version` before `kafka-protocol`
/// decodes it (see the module documentation).
fn scan_subscription(body: &[u8], version: i16) -> Result<(), ProtocolError> {
    let mut scan = Scan::new(body, SUBSCRIPTION);
    scan.array("topics", MIN_STRING, |s| s.string("topics", false))?;
    scan.bytes("user_data", true)?;
    if version >= 1 {
        scan.topic_partitions("owned_partitions")?;
    }
    if version >= 2 {
        scan.i32("generation_id")?;
    }
    if version >= 3 {
        scan.string("rack_id", true)?;
    }
    Ok(())
}

fn scan_assignment(body: &[u8]) -> Result<(), ProtocolError> {
    let mut scan = Scan::new(body, ASSIGNMENT);
    scan.topic_partitions("assigned_partitions")?;
    scan.bytes("user_data", true)?;
    Ok(())
}

/// The fewest bytes a string takes: its `int16` length.
const MIN_STRING: usize = 2;
/// The fewest bytes a `(topic, [partition])` entry takes: two length prefixes.
pub(crate) const MIN_TOPIC_PARTITIONS: usize = 2 + 4;

/// A cursor that walks the classic (non-flexible) Kafka encoding without building
/// anything, checking every length against the bytes that remain.
pub(crate) struct Scan<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.remaining() {
            return Err(ProtocolError::Truncated {
                what: self.what,
                field,
                offset: self.pos,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn malformed(&self, field: &'static str, reason: String) -> ProtocolError {
        ProtocolError::Malformed {
            what: self.what,
            reason: format!("{field} at byte {}: {reason}", self.pos),
        }
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        let b = self.take(field, 4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, ProtocolError> {
        let b = self.take(field, 2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// `STRING` or `NULLABLE_STRING`: an `int16` length (-1 for null), then the bytes.
    pub(crate) fn string(
        &mut self,
        field: &'static str,
        nullable: bool,
    ) -> Result<(), ProtocolError> {
        match self.i16(field)? {
            -1 if nullable => Ok(()),
            len if len < 0 => Err(self.malformed(field, format!("string length {len}"))),
            len => self.take(field, len as usize).map(drop),
        }
    }

    /// A non-null `STRING`'s value, which must be UTF-8.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, ProtocolError> {
        let len = self.i16(field)?;
        if len < 0 {
            return Err(self.malformed(field, format!("string length {len}")));
        }
        let bytes = self.take(field, len as usize)?;
        std::str::from_utf8(bytes).map_err(|e| self.malformed(field, e.to_string()))
    }

    /// `BYTES` or `NULLABLE_BYTES`: an `int32` length (-1 for null), then the bytes.
    fn bytes(&mut self, field: &'static str, nullable: bool) -> Result<(), ProtocolError> {
        match self.i32(field)? {
            -1 if nullable => Ok(()),
            len if len < 0 => Err(self.malformed(field, format!("bytes length {len}"))),
            len => self.take(field, len as usize).map(drop),
        }
    }

    /// A non-nullable `ARRAY` of elements at least `min_size` bytes long each.
    pub(crate) fn array(
        &mut self,
        field: &'static str,
        min_size: usize,
        mut element: impl FnMut(&mut Self) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let count = self.i32(field)?;
        if count < 0 {
            return Err(self.malformed(field, format!("array length {count}")));
        }
        let count = count as usize;
        // The input cannot hold that many elements: it was cut short, or the count lies.
        // Either way, fail before anyone reserves room for `count` elements.
        if count.saturating_mul(min_size) > self.remaining() {
            return Err(ProtocolError::Truncated {
                what: self.what,
                field,
                offset: self.pos,
            });
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    /// `[topic STRING, partitions [INT32]]`, the layout shared by owned partitions,
    /// assigned partitions and the sticky assignor's user data.
    pub(crate) fn topic_partitions(&mut self, field: &'static str) -> Result<(), ProtocolError> {
        self.array(field, MIN_TOPIC_PARTITIONS, |s| {
            s.string(field, false)?;
            s.array(field, 4, |s| s.i32(field).map(drop))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    /// A subscription using every field, in canonical (sorted) form.
    fn full_subscription() -> Subscription {
        Subscription {
            topics: vec!["orders".into(), "payments".into()],
            user_data: Some(Bytes::from_static(b"\x00\x01xyz")),
            owned_partitions: vec![tp("orders", 0), tp("orders", 3), tp("payments", 1)],
            generation: Some(7),
            rack_id: Some("eu-west-1a".into()),
        }
    }

    /// What survives an encoding at `version`.
    fn at_version(s: &Subscription, version: i16) -> Subscription {
        let mut s = s.clone();
        if version < 1 {
            s.owned_partitions.clear();
        }
        if version < 2 {
            s.generation = None;
        }
        if version < 3 {
            s.rack_id = None;
        }
        s
    }

    fn full_assignment() -> Assignment {
        Assignment {
            partitions: vec![tp("orders", 2), tp("orders", 0), tp("payments", 5)],
            user_data: Some(Bytes::from_static(b"opaque")),
        }
    }

    #[test]
    fn subscription_round_trips_at_every_version() {
        let s = full_subscription();
        for version in 0..=MAX_VERSION {
            let bytes = s.encode(version).unwrap();
            assert_eq!(&bytes[..2], &version.to_be_bytes(), "prefix at v{version}");
            assert_eq!(
                Subscription::decode(&bytes).unwrap(),
                at_version(&s, version),
                "v{version}"
            );
        }
        let empty = Subscription::default();
        for version in 0..=MAX_VERSION {
            assert_eq!(
                Subscription::decode(&empty.encode(version).unwrap()).unwrap(),
                empty
            );
        }
    }

    #[test]
    fn assignment_round_trips_at_every_version() {
        let a = full_assignment();
        for version in 0..=MAX_VERSION {
            let bytes = a.encode(version).unwrap();
            assert_eq!(&bytes[..2], &version.to_be_bytes());
            assert_eq!(Assignment::decode(&bytes).unwrap(), a, "v{version}");
        }
        let empty = Assignment::default();
        assert_eq!(
            Assignment::decode(&empty.encode(0).unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn subscription_v0_known_bytes() {
        // version: int16                          00 00
        // topics: [string]     2 entries          00 00 00 02
        //                      "ab"               00 02 61 62
        //                      "c"                00 01 63
        // user_data: bytes     2 bytes            00 00 00 02 01 02
        let wire: &[u8] = &[
            0x00, 0x00, //
            0x00, 0x00, 0x00, 0x02, //
            0x00, 0x02, b'a', b'b', //
            0x00, 0x01, b'c', //
            0x00, 0x00, 0x00, 0x02, 0x01, 0x02,
        ];
        let s = Subscription {
            topics: vec!["ab".into(), "c".into()],
            user_data: Some(Bytes::from_static(&[1, 2])),
            ..Subscription::default()
        };
        assert_eq!(Subscription::decode(wire).unwrap(), s);
        assert_eq!(&s.encode(0).unwrap()[..], wire);
    }

    #[test]
    fn subscription_v1_known_bytes() {
        // version: int16                              00 01
        // topics: [string]         1 entry            00 00 00 01
        //                          "t"                00 01 74
        // user_data: bytes         null               ff ff ff ff
        // owned_partitions: [      1 entry            00 00 00 01
        //   topic: string          "t"                00 01 74
        //   partitions: [int32]    2 entries          00 00 00 02
        //                          0                  00 00 00 00
        //                          2 ]                00 00 00 02
        let wire: &[u8] = &[
            0x00, 0x01, //
            0x00, 0x00, 0x00, 0x01, //
            0x00, 0x01, b't', //
            0xff, 0xff, 0xff, 0xff, //
            0x00, 0x00, 0x00, 0x01, //
            0x00, 0x01, b't', //
            0x00, 0x00, 0x00, 0x02, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x02,
        ];
        let s = Subscription {
            topics: vec!["t".into()],
            owned_partitions: vec![tp("t", 0), tp("t", 2)],
            ..Subscription::default()
        };
        assert_eq!(Subscription::decode(wire).unwrap(), s);
        assert_eq!(&s.encode(1).unwrap()[..], wire);
    }

    #[test]
    fn subscription_v3_known_bytes() {
        // version                      00 03
        // topics: []                   00 00 00 00
        // user_data: empty, not null   00 00 00 00
        // owned_partitions: []         00 00 00 00
        // generation_id: 5             00 00 00 05
        // rack_id: "r1"                00 02 72 31
        let wire: &[u8] = &[
            0x00, 0x03, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x05, //
            0x00, 0x02, b'r', b'1',
        ];
        let s = Subscription {
            user_data: Some(Bytes::new()),
            generation: Some(5),
            rack_id: Some("r1".into()),
            ..Subscription::default()
        };
        assert_eq!(Subscription::decode(wire).unwrap(), s);
        assert_eq!(&s.encode(3).unwrap()[..], wire);
    }

    #[test]
    fn assignment_v0_known_bytes() {
        // version: int16                              00 00
        // assigned_partitions: [   1 entry            00 00 00 01
        //   topic: string          "t0"               00 02 74 30
        //   partitions: [int32]    2 entries          00 00 00 02
        //                          1                  00 00 00 01
        //                          0 ]                00 00 00 00
        // user_data: bytes         null               ff ff ff ff
        let wire: &[u8] = &[
            0x00, 0x00, //
            0x00, 0x00, 0x00, 0x01, //
            0x00, 0x02, b't', b'0', //
            0x00, 0x00, 0x00, 0x02, //
            0x00, 0x00, 0x00, 0x01, //
            0x00, 0x00, 0x00, 0x00, //
            0xff, 0xff, 0xff, 0xff,
        ];
        let a = Assignment::new(vec![tp("t0", 1), tp("t0", 0)]);
        assert_eq!(Assignment::decode(wire).unwrap(), a);
        assert_eq!(&a.encode(0).unwrap()[..], wire);
    }

    #[test]
    fn assignment_v1_known_bytes() {
        // version: int16                              00 01
        // assigned_partitions: [   2 entries          00 00 00 02
        //   topic "b", [3]                            00 01 62  00 00 00 01  00 00 00 03
        //   topic "a", [0] ]                          00 01 61  00 00 00 01  00 00 00 00
        // user_data: bytes         1 byte             00 00 00 01 ff
        let wire: &[u8] = &[
            0x00, 0x01, //
            0x00, 0x00, 0x00, 0x02, //
            0x00, 0x01, b'b', 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, //
            0x00, 0x01, b'a', 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, //
            0x00, 0x00, 0x00, 0x01, 0xff,
        ];
        // "b" comes first: topics keep their order of first appearance, as in Java.
        let a = Assignment {
            partitions: vec![tp("b", 3), tp("a", 0)],
            user_data: Some(Bytes::from_static(&[0xff])),
        };
        assert_eq!(Assignment::decode(wire).unwrap(), a);
        assert_eq!(&a.encode(1).unwrap()[..], wire);
    }

    #[test]
    fn encoding_is_canonical_like_java() {
        let messy = Subscription {
            topics: vec!["b".into(), "a".into(), "b".into()],
            owned_partitions: vec![tp("b", 1), tp("a", 2), tp("b", 0), tp("a", 2)],
            ..Subscription::default()
        };
        let tidy = Subscription {
            topics: vec!["a".into(), "b".into()],
            owned_partitions: vec![tp("a", 2), tp("b", 0), tp("b", 1)],
            ..Subscription::default()
        };
        assert_eq!(messy.encode(3).unwrap(), tidy.encode(3).unwrap());
        assert_eq!(
            Subscription::decode(&messy.encode(3).unwrap()).unwrap(),
            tidy
        );
    }

    #[test]
    fn versions_above_ours_are_written_as_ours() {
        let s = full_subscription();
        assert_eq!(s.encode(9).unwrap(), s.encode(MAX_VERSION).unwrap());
        assert_eq!(
            s.encode(-1),
            Err(ProtocolError::UnsupportedVersion {
                what: SUBSCRIPTION,
                version: -1
            })
        );
    }

    #[test]
    fn newer_versions_decode_as_the_newest_we_know() {
        // A future v4 appends a field; we read the v3 fields and ignore the rest.
        let s = full_subscription();
        let mut future = BytesMut::from(&s.encode(3).unwrap()[..]);
        future[..2].copy_from_slice(&4i16.to_be_bytes());
        future.put_slice(b"\x00\x03new");
        assert_eq!(Subscription::decode(&future).unwrap(), s);
        future[..2].copy_from_slice(&i16::MAX.to_be_bytes());
        assert_eq!(Subscription::decode(&future).unwrap(), s);

        let a = full_assignment();
        let mut future = BytesMut::from(&a.encode(3).unwrap()[..]);
        future[..2].copy_from_slice(&100i16.to_be_bytes());
        future.put_slice(&[0xde, 0xad]);
        assert_eq!(Assignment::decode(&future).unwrap(), a);
    }

    #[test]
    fn negative_version_is_an_error() {
        let mut bytes = BytesMut::from(&full_subscription().encode(3).unwrap()[..]);
        bytes[..2].copy_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(
            Subscription::decode(&bytes),
            Err(ProtocolError::UnsupportedVersion {
                what: SUBSCRIPTION,
                version: -1
            })
        );
        assert!(matches!(
            Assignment::decode(&[0x80, 0x00, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(ProtocolError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_valid_encoding_is_an_error() {
        let s = full_subscription();
        for version in 0..=MAX_VERSION {
            let bytes = s.encode(version).unwrap();
            for len in 0..bytes.len() {
                let result = Subscription::decode(&bytes[..len]);
                assert!(
                    matches!(result, Err(ProtocolError::Truncated { .. })),
                    "v{version}, {len} of {} bytes: {result:?}",
                    bytes.len()
                );
            }
        }
        let a = full_assignment();
        for version in 0..=MAX_VERSION {
            let bytes = a.encode(version).unwrap();
            for len in 0..bytes.len() {
                let result = Assignment::decode(&bytes[..len]);
                assert!(
                    matches!(result, Err(ProtocolError::Truncated { .. })),
                    "{len}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn huge_counts_are_rejected_before_allocating() {
        // Version 0, then a topic count of i32::MAX and nothing else. kafka-protocol alone
        // would reserve ~64 GiB for the topic list here.
        let bytes = [0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0x00, 0x00];
        assert_eq!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Truncated {
                what: SUBSCRIPTION,
                field: "topics",
                offset: 4
            })
        );
        // Same for the partition count inside an assignment.
        let bytes = [
            0, 0, 0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0,
        ];
        assert!(matches!(
            Assignment::decode(&bytes),
            Err(ProtocolError::Truncated { .. })
        ));
        // And the user data length.
        let bytes = [0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Truncated { .. })
        ));
    }

    #[test]
    fn negative_lengths_and_nulls_where_not_allowed_are_errors() {
        // Topic count -1 (a null array).
        let bytes = [0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Malformed { .. })
        ));
        // A null topic name.
        let bytes = [0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Malformed { .. })
        ));
        // User data length -2.
        let bytes = [0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Malformed { .. })
        ));
        // Rack id length -5.
        let bytes = [
            0, 3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xfb,
        ];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let bytes = [0, 0, 0, 0, 0, 1, 0, 2, 0xc3, 0x28, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn oversized_input_is_refused() {
        let mut big = vec![0u8; MAX_MESSAGE_LEN + 1];
        big[5] = 0; // v0, zero topics, then lots of trailing zeros
        assert!(matches!(
            Subscription::decode(&big),
            Err(ProtocolError::TooLarge { .. })
        ));
        assert!(matches!(
            Assignment::decode(&big),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn generation_and_rack_follow_java_conventions() {
        let s = Subscription {
            generation: Some(-1),
            rack_id: Some(String::new()),
            ..Default::default()
        };
        let decoded = Subscription::decode(&s.encode(3).unwrap()).unwrap();
        assert_eq!(decoded.generation, None);
        assert_eq!(decoded.rack_id, None);
    }

    #[test]
    fn java_order_is_utf16_order() {
        // U+FF61 sorts after U+1F600 in UTF-8/code-point order but before it in UTF-16.
        assert_eq!("\u{ff61}".cmp("\u{1f600}"), Ordering::Less);
        assert_eq!(java_order("\u{ff61}", "\u{1f600}"), Ordering::Greater);
        assert_eq!(java_order("a", "b"), Ordering::Less);
        assert_eq!(java_order("consumer-10", "consumer-9"), Ordering::Less);
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        "[a-z]{1,3}"
    }

    fn subscription_strategy() -> impl Strategy<Value = Subscription> {
        (
            proptest::collection::btree_set(topic_strategy(), 0..5),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            proptest::collection::btree_set((topic_strategy(), 0..20i32), 0..8),
            proptest::option::of(0..1000i32),
            proptest::option::of("[a-z0-9-]{1,8}"),
        )
            .prop_map(
                |(topics, user_data, owned, generation, rack_id)| Subscription {
                    topics: topics.into_iter().collect(),
                    user_data: user_data.map(Bytes::from),
                    owned_partitions: owned.into_iter().map(|(t, p)| tp(&t, p)).collect(),
                    generation,
                    rack_id,
                },
            )
    }

    proptest! {
        #[test]
        fn prop_subscription_round_trip(s in subscription_strategy(), version in 0..=MAX_VERSION) {
            let decoded = Subscription::decode(&s.encode(version).unwrap()).unwrap();
            prop_assert_eq!(decoded, at_version(&s, version));
        }

        #[test]
        fn prop_assignment_round_trip(
            groups in proptest::collection::vec((topic_strategy(), proptest::collection::vec(any::<i32>(), 0..6)), 0..6),
            user_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            version in 0..=MAX_VERSION,
        ) {
            // Encoding groups by topic; build the input already grouped so it round-trips.
            let mut seen = std::collections::HashSet::new();
            let partitions: Vec<TopicPartition> = groups
                .into_iter()
                .filter(|(t, ps)| !ps.is_empty() && seen.insert(t.clone()))
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| tp(&t, p)))
                .collect();
            let a = Assignment { partitions, user_data: user_data.map(Bytes::from) };
            prop_assert_eq!(Assignment::decode(&a.encode(version).unwrap()).unwrap(), a);
        }

        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Subscription::decode(&bytes);
            let _ = Assignment::decode(&bytes);
        }

        #[test]
        fn prop_mutated_encodings_never_panic(
            s in subscription_strategy(),
            version in 0..=MAX_VERSION,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = s.encode(version).unwrap().to_vec();
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let _ = Subscription::decode(&bytes);
            let _ = Assignment::decode(&bytes);
        }
    }
}
