//! Incremental fetch sessions (KIP-227), client side, for one broker: the session id
//! and epoch of each Fetch request, which partitions it must carry, and what to make of
//! the response. Sans-io: the fetch loop owns the socket and calls in here.
//!
//! Protocol: KIP-227 (incremental fetch requests, Fetch v7+), KIP-516 (topic ids, Fetch
//! v13+), KIP-219 (throttled empty responses); <https://kafka.apache.org/protocol>,
//! "Fetch API".
//!
//! # The protocol in short
//!
//! - A **full** request lists every partition. With `session_epoch` 0 it asks the broker
//!   to create a session (and closes `session_id` if that is not 0); with -1 it wants no
//!   session. The response's `session_id` is the new session, or 0 when the broker
//!   declined (its session cache is full, or it does not do sessions).
//! - In a session, each request is **incremental**: `session_id` plus the next epoch
//!   (1, 2, ... wrapping from `i32::MAX` to 1). It lists only partitions that are new to
//!   the session or whose `fetch_offset`, `current_leader_epoch` or
//!   `partition_max_bytes` changed, and lists in `forgotten_topics_data` those that
//!   leave (by name before v13, by topic id from v13). The broker applies additions
//!   first, then removals, and fetches every partition of the session.
//! - The broker caches, per partition, exactly what we last sent: it never moves a
//!   cached fetch offset by itself. So a partition whose data we consumed must be sent
//!   again with its new offset, and one that got nothing (same offset) must not.
//! - An incremental **response** lists only partitions with news: records, an error, a
//!   changed high watermark or log start offset, a preferred replica, a diverging
//!   epoch. A session partition absent from it has no change.
//! - Top-level errors FETCH_SESSION_ID_NOT_FOUND (70, the broker evicted the session),
//!   INVALID_FETCH_SESSION_EPOCH (71) and FETCH_SESSION_TOPIC_ID_ERROR (106, topic
//!   names used in a topic-id session or the reverse) carry no partitions; the client
//!   drops its session and sends a full request next, which cannot fail this way.
//!
//! # Decisions
//!
//! - **Partitions the loop does not want this round are forgotten**, whatever the
//!   reason (paused, queue full, backoff, stopped, moved away), as the Java client does
//!   (franz-go 1.2.4 fixed the same point). A partition left in the session is fetched
//!   by the broker every round: its records come back only to be dropped, and since
//!   they satisfy `fetch.min.bytes` the long poll returns at once, a busy loop for as
//!   long as the partition is paused. Re-adding it later costs one entry in one request.
//!   A re-added partition is sent as new, at whatever offset the loop then holds.
//! - **A broker that declines a session** (full response with session id 0) gets a full
//!   request with epoch 0 again next time, as the Java client does: every such request
//!   is complete anyway, and the broker can open a session once its cache has room.
//! - **Every `build` is followed by exactly one `handle_response` or `reset`.** The epoch
//!   advances only when a response arrives. A request whose fate is unknown (timeout,
//!   lost connection) may or may not have advanced the broker's epoch, so `reset`
//!   drops the session; the next full request names the old session id so the broker
//!   frees it (Java's `nextCloseExistingAttemptNew`).
//! - After FETCH_SESSION_ID_NOT_FOUND the next request carries session id 0 (the id is
//!   gone and could be handed to someone else); after any other top-level error it
//!   carries the old id, to close that session while opening a new one.
//! - A change of Fetch version across v13 (names to ids) or below v7 (no sessions)
//!   starts over with a full request rather than confusing the broker.
//! - Requests carry both topic names and topic ids (the encoder writes the one the
//!   version has), so a request built for one version still encodes at another.
//! - The session's partition table is kept in every mode, so a v13+ response, which
//!   names topics by id only, can be mapped back with [`FetchSession::topic_name`].
//! - Unlike the Java client, a full response is not checked to list every requested
//!   partition: the loop treats a missing partition as "no news" anyway (a KIP-219
//!   throttled full response lists none).
//!
//! # Use from the fetch loop
//!
//! Each round: collect the fetchable partitions as [`WantedPartition`]s (all of them,
//! not only those with new offsets), learn the Fetch version, fill the request's other
//! fields, call [`FetchSession::build`], send. On a response call
//! [`FetchSession::handle_response`] before anything else and follow its
//! [`SessionOutcome`]; on any failure to get a response call [`FetchSession::reset`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::fast_hash::FastSet;
use crate::TopicPartition;

/// The first Fetch version with sessions (KIP-227).
const FIRST_SESSION_VERSION: i16 = 7;
/// The first Fetch version naming topics by id (KIP-516).
const FIRST_TOPIC_ID_VERSION: i16 = 13;

/// `session_id` of a request or response without a session.
const NO_SESSION: i32 = 0;
/// `session_epoch` of a full request that creates (or re-creates) a session.
const INITIAL_EPOCH: i32 = 0;
/// `session_epoch` of a full request that wants no session.
const FINAL_EPOCH: i32 = -1;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

/// A partition the fetch loop wants in this round, with the values a request would
/// carry for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WantedPartition {
    pub tp: TopicPartition,
    /// The topic id from metadata; nil when unknown (Fetch v13+ then cannot name it).
    pub topic_id: Uuid,
    pub fetch_offset: i64,
    /// KIP-320: the leader epoch from metadata, -1 when unknown.
    pub current_leader_epoch: i32,
    pub partition_max_bytes: i32,
}

/// What [`FetchSession::handle_response`] tells the loop to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionOutcome {
    /// Handle the response's partitions. A partition that was wanted but is absent has
    /// no news (an incremental response lists only changes): keep its offset, high
    /// watermark and error state as they are, and do not count it as a failure.
    Data,
    /// The response holds no usable partition data: a fetch-session error (70, 71,
    /// 106), or `error_code` 0 when the broker answered with a session id that is not
    /// ours. The session is dropped and the next request is full, which cannot fail
    /// this way: fetch again at once, without backing off.
    Retry { error_code: i16 },
    /// Another top-level error: no partition data. The session is dropped too (the
    /// broker may or may not have moved its epoch); back off as for a failed fetch.
    Error { error_code: i16 },
}

/// The fetch session with one broker. See the module documentation.
#[derive(Debug)]
pub(crate) struct FetchSession {
    /// `false`: every request is full and sessionless (epoch -1).
    enabled: bool,
    state: State,
    /// The kind of the request built and not yet answered (or reset).
    in_flight: Option<InFlight>,
    /// The partitions of the session, each as last sent: what the broker holds.
    partitions: BTreeMap<TopicPartition, Sent>,
    /// Topic id to name, counting the session's partitions of each, for v13+ responses.
    topic_names: HashMap<Uuid, (Arc<str>, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The next request is full. `close` is a session to close on the broker on the
    /// way (`NO_SESSION` for none).
    Full { close: i32 },
    /// A session is open: the next request is incremental at `epoch`.
    Open {
        id: i32,
        epoch: i32,
        uses_topic_ids: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    /// Full, epoch -1: the response creates nothing.
    Sessionless,
    /// Full, epoch 0: the response may open a session.
    Full { uses_topic_ids: bool },
    /// Incremental in session `id` at `epoch`.
    Incremental {
        id: i32,
        epoch: i32,
        uses_topic_ids: bool,
    },
}

/// One partition as last sent, which is exactly what the broker's session caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    topic_id: Uuid,
    fetch_offset: i64,
    current_leader_epoch: i32,
    partition_max_bytes: i32,
}

/// A partition leaving the session: its topic both ways (the version picks one) and
/// its index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forget {
    topic: Arc<str>,
    topic_id: Uuid,
    partition: i32,
}

impl From<&WantedPartition> for Sent {
    fn from(w: &WantedPartition) -> Self {
        Self {
            topic_id: w.topic_id,
            fetch_offset: w.fetch_offset,
            current_leader_epoch: w.current_leader_epoch,
            partition_max_bytes: w.partition_max_bytes,
        }
    }
}

impl FetchSession {
    /// A session handler with no session yet. `enabled == false` makes every request
    /// full and sessionless (session id 0, epoch -1), as before KIP-227.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            state: State::Full { close: NO_SESSION },
            in_flight: None,
            partitions: BTreeMap::new(),
            topic_names: HashMap::new(),
        }
    }

    /// Fills `session_id`, `session_epoch`, `topics` and `forgotten_topics_data` of
    /// `request` for this round; the caller sets the other fields.
    ///
    /// `wanted` is every partition the loop wants this round, in the order it prefers
    /// them (topics appear in the order of their first partition); a partition listed
    /// twice counts once, the first time. Session partitions not in `wanted` are
    /// forgotten. `version` is the Fetch version the request will be sent at.
    ///
    /// Must be followed by [`handle_response`](Self::handle_response) or
    /// [`reset`](Self::reset); a second `build` without either assumes the previous
    /// request was lost and resets first.
    pub(crate) fn build(
        &mut self,
        request: &mut FetchRequest,
        wanted: &[WantedPartition],
        version: i16,
    ) {
        if self.in_flight.is_some() {
            self.reset();
        }
        let mut seen = FastSet::with_capacity_and_hasher(wanted.len(), Default::default());
        let wanted: Vec<&WantedPartition> = wanted.iter().filter(|w| seen.insert(&w.tp)).collect();
        let uses_topic_ids = version >= FIRST_TOPIC_ID_VERSION;

        if !self.enabled || version < FIRST_SESSION_VERSION {
            // Below v7 the session fields are not even on the wire. A session we had
            // stays in `state` as one to close, should a later request be v7+.
            self.state = State::Full {
                close: self.session_to_close(),
            };
            self.replace_partitions(&wanted);
            request.session_id = NO_SESSION;
            request.session_epoch = FINAL_EPOCH;
            request.topics = fetch_topics(wanted.iter().copied());
            request.forgotten_topics_data = Vec::new();
            self.in_flight = Some(InFlight::Sessionless);
            return;
        }

        match self.state {
            State::Open {
                id,
                epoch,
                uses_topic_ids: session_uses_ids,
            } if session_uses_ids == uses_topic_ids => {
                let (send, forget) = self.diff(&wanted, &seen, uses_topic_ids);
                request.session_id = id;
                request.session_epoch = epoch;
                request.topics = fetch_topics(send);
                request.forgotten_topics_data = forgotten_topics(forget);
                self.in_flight = Some(InFlight::Incremental {
                    id,
                    epoch,
                    uses_topic_ids,
                });
            }
            _ => {
                // No session, or one keyed the other way (names vs ids) than this
                // version: a full request that closes the old session, if any, and
                // asks for a new one.
                request.session_id = self.session_to_close();
                request.session_epoch = INITIAL_EPOCH;
                self.replace_partitions(&wanted);
                request.topics = fetch_topics(wanted.iter().copied());
                request.forgotten_topics_data = Vec::new();
                self.in_flight = Some(InFlight::Full { uses_topic_ids });
            }
        }
    }

    /// Digests a response to the request last built, before the loop looks at its
    /// partitions: moves the session on, or drops it after an error so that the next
    /// request is full.
    pub(crate) fn handle_response(&mut self, response: &FetchResponse) -> SessionOutcome {
        let Some(in_flight) = self.in_flight.take() else {
            // Nothing was built (a caller bug): whatever this answers, start over.
            self.reset();
            return match response.error_code {
                0 => SessionOutcome::Data,
                code => error_outcome(code),
            };
        };
        if response.error_code != 0 {
            // The broker did not process the request as a session step; Java's client
            // re-creates the session after any top-level error, and so do we.
            self.reset();
            if response.error_code == FETCH_SESSION_ID_NOT_FOUND {
                self.state = State::Full { close: NO_SESSION };
            }
            return error_outcome(response.error_code);
        }
        match in_flight {
            InFlight::Sessionless => SessionOutcome::Data,
            InFlight::Full { uses_topic_ids } => {
                // The broker closed the session we named, if any. A session id of 0
                // means it declined to open one (or throttled us, KIP-219: then the
                // response is empty): the next request is full again, with epoch 0
                // in case it has room by then.
                self.state = if response.session_id == NO_SESSION {
                    State::Full { close: NO_SESSION }
                } else {
                    State::Open {
                        id: response.session_id,
                        epoch: next_epoch(INITIAL_EPOCH),
                        uses_topic_ids,
                    }
                };
                SessionOutcome::Data
            }
            InFlight::Incremental {
                id,
                epoch,
                uses_topic_ids,
            } => {
                if response.session_id == id {
                    self.state = State::Open {
                        id,
                        epoch: next_epoch(epoch),
                        uses_topic_ids,
                    };
                    SessionOutcome::Data
                } else if response.session_id == NO_SESSION {
                    // The broker closed the session (it does when the last partition
                    // is forgotten) and answered this request without one.
                    self.state = State::Full { close: NO_SESSION };
                    SessionOutcome::Data
                } else {
                    // Another session's answer would describe another session's
                    // offsets: do not trust its data.
                    self.reset();
                    SessionOutcome::Retry { error_code: 0 }
                }
            }
        }
    }

    /// Forgets the session: the next request is full. Call it whenever a built request
    /// gets no response (send error, timeout, connection lost, loop restarted): the
    /// broker may have seen the request and moved its epoch. The old session id goes
    /// into the next full request so that the broker frees it.
    pub(crate) fn reset(&mut self) {
        let close = match self.in_flight.take() {
            Some(InFlight::Incremental { id, .. }) => id,
            _ => self.session_to_close(),
        };
        self.state = State::Full { close };
        self.partitions.clear();
        self.topic_names.clear();
    }

    /// The name of the topic with id `topic_id` among the session's partitions (the
    /// partitions of the request last built), for v13+ responses, which name topics by
    /// id only.
    pub(crate) fn topic_name(&self, topic_id: Uuid) -> Option<&Arc<str>> {
        self.topic_names.get(&topic_id).map(|(name, _)| name)
    }

    /// The session id the next full request names for the broker to close.
    fn session_to_close(&self) -> i32 {
        match self.state {
            State::Full { close } => close,
            State::Open { id, .. } => id,
        }
    }

    /// The session becomes `wanted`, all of it sent (a full request).
    fn replace_partitions(&mut self, wanted: &[&WantedPartition]) {
        self.partitions.clear();
        self.topic_names.clear();
        for w in wanted {
            self.partitions.insert(w.tp.clone(), Sent::from(*w));
            count_topic(&mut self.topic_names, w.topic_id, &w.tp.topic);
        }
    }

    /// The incremental step from the session to `wanted`: the partitions to send (new
    /// or changed) and those to forget. Updates the session to what the broker will
    /// hold once it has applied the request.
    fn diff<'a>(
        &mut self,
        wanted: &[&'a WantedPartition],
        seen: &FastSet<&TopicPartition>,
        uses_topic_ids: bool,
    ) -> (Vec<&'a WantedPartition>, Vec<Forget>) {
        let mut send = Vec::new();
        let mut forget = Vec::new();
        for &w in wanted {
            let next = Sent::from(w);
            match self.partitions.get_mut(&w.tp) {
                None => {
                    self.partitions.insert(w.tp.clone(), next);
                    count_topic(&mut self.topic_names, w.topic_id, &w.tp.topic);
                    send.push(w);
                }
                Some(prev) if *prev == next => {}
                Some(prev) => {
                    if prev.topic_id != next.topic_id {
                        // The topic was deleted and re-created under the same name.
                        // From v13 the broker keys partitions by id, so the old one is
                        // a partition of its own: forget it, or it would linger there,
                        // answering UNKNOWN_TOPIC_ID every round. Below v13 the name
                        // is the key and sending the partition again is enough.
                        if uses_topic_ids {
                            forget.push(Forget {
                                topic: w.tp.topic.clone(),
                                topic_id: prev.topic_id,
                                partition: w.tp.partition,
                            });
                        }
                        uncount_topic(&mut self.topic_names, prev.topic_id);
                        count_topic(&mut self.topic_names, next.topic_id, &w.tp.topic);
                    }
                    *prev = next;
                    send.push(w);
                }
            }
        }
        let mut gone = Vec::new();
        self.partitions.retain(|tp, sent| {
            let keep = seen.contains(tp);
            if !keep {
                gone.push(Forget {
                    topic: tp.topic.clone(),
                    topic_id: sent.topic_id,
                    partition: tp.partition,
                });
            }
            keep
        });
        for f in &gone {
            uncount_topic(&mut self.topic_names, f.topic_id);
        }
        forget.extend(gone);
        (send, forget)
    }
}

/// KIP-227: epochs run 1, 2, ... `i32::MAX`, then 1 again (0 and -1 mean full).
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

fn error_outcome(error_code: i16) -> SessionOutcome {
    match error_code {
        FETCH_SESSION_ID_NOT_FOUND | INVALID_FETCH_SESSION_EPOCH | FETCH_SESSION_TOPIC_ID_ERROR => {
            SessionOutcome::Retry { error_code }
        }
        _ => SessionOutcome::Error { error_code },
    }
}

fn count_topic(names: &mut HashMap<Uuid, (Arc<str>, usize)>, topic_id: Uuid, topic: &Arc<str>) {
    if topic_id.is_nil() {
        return;
    }
    let entry = names.entry(topic_id).or_insert_with(|| (topic.clone(), 0));
    entry.1 += 1;
}

fn uncount_topic(names: &mut HashMap<Uuid, (Arc<str>, usize)>, topic_id: Uuid) {
    if let Some(entry) = names.get_mut(&topic_id) {
        entry.1 -= 1;
        if entry.1 == 0 {
            names.remove(&topic_id);
        }
    }
}

/// A topic name as the wire wants it.
fn wire_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// Groups partitions by topic (name and id), topics in order of first appearance.
fn fetch_topics<'a>(partitions: impl IntoIterator<Item = &'a WantedPartition>) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut index: HashMap<(&str, Uuid), usize> = HashMap::new();
    for w in partitions {
        let i = *index.entry((&*w.tp.topic, w.topic_id)).or_insert_with(|| {
            topics.push(
                FetchTopic::default()
                    .with_topic(wire_name(&w.tp.topic))
                    .with_topic_id(w.topic_id),
            );
            topics.len() - 1
        });
        topics[i].partitions.push(
            FetchPartition::default()
                .with_partition(w.tp.partition)
                .with_fetch_offset(w.fetch_offset)
                .with_current_leader_epoch(w.current_leader_epoch)
                // Only followers report a log start offset.
                .with_log_start_offset(-1)
                .with_partition_max_bytes(w.partition_max_bytes),
        );
    }
    topics
}

/// Groups partitions by topic (name and id), in order of first appearance. Both name
/// and id are set: v7-12 encode the name, v13+ the id.
fn forgotten_topics(partitions: Vec<Forget>) -> Vec<ForgottenTopic> {
    let mut topics: Vec<ForgottenTopic> = Vec::new();
    let mut index: HashMap<(Arc<str>, Uuid), usize> = HashMap::new();
    for Forget {
        topic,
        topic_id,
        partition,
    } in partitions
    {
        let i = *index.entry((topic.clone(), topic_id)).or_insert_with(|| {
            topics.push(
                ForgottenTopic::default()
                    .with_topic(wire_name(&topic))
                    .with_topic_id(topic_id),
            );
            topics.len() - 1
        });
        topics[i].partitions.push(partition);
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    const A: Uuid = Uuid::from_u128(0xa);
    const B: Uuid = Uuid::from_u128(0xb);

    fn want(topic: &str, id: Uuid, partition: i32, offset: i64) -> WantedPartition {
        WantedPartition {
            tp: TopicPartition::new(topic, partition),
            topic_id: id,
            fetch_offset: offset,
            current_leader_epoch: 5,
            partition_max_bytes: 1 << 20,
        }
    }

    /// a/0, a/1 and b/0 at offsets 10, 20, 30.
    fn three() -> Vec<WantedPartition> {
        vec![
            want("a", A, 0, 10),
            want("a", A, 1, 20),
            want("b", B, 0, 30),
        ]
    }

    fn build(s: &mut FetchSession, wanted: &[WantedPartition], version: i16) -> FetchRequest {
        let mut request = FetchRequest::default();
        s.build(&mut request, wanted, version);
        request
    }

    fn ok(session_id: i32) -> FetchResponse {
        FetchResponse::default().with_session_id(session_id)
    }

    fn error(code: i16) -> FetchResponse {
        FetchResponse::default().with_error_code(code)
    }

    /// (topic, partition, offset) of every partition in the request, in order.
    fn sent(r: &FetchRequest) -> Vec<(String, i32, i64)> {
        r.topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.to_string(), p.partition, p.fetch_offset))
            })
            .collect()
    }

    /// (topic, topic id, partition) of every forgotten partition, in order.
    fn forgotten(r: &FetchRequest) -> Vec<(String, Uuid, i32)> {
        r.forgotten_topics_data
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |&p| (t.topic.0.to_string(), t.topic_id, p))
            })
            .collect()
    }

    fn all(offsets: [i64; 3]) -> Vec<(String, i32, i64)> {
        vec![
            ("a".into(), 0, offsets[0]),
            ("a".into(), 1, offsets[1]),
            ("b".into(), 0, offsets[2]),
        ]
    }

    /// A session opened at `version` with `three()`, id 42: the next request is
    /// incremental at epoch 1.
    fn open(version: i16) -> FetchSession {
        let mut s = FetchSession::new(true);
        build(&mut s, &three(), version);
        assert_eq!(s.handle_response(&ok(42)), SessionOutcome::Data);
        s
    }

    #[test]
    fn first_request_is_full_with_epoch_0() {
        for version in [7, 12, 13, 18] {
            let mut s = FetchSession::new(true);
            let r = build(&mut s, &three(), version);
            assert_eq!((r.session_id, r.session_epoch), (0, 0), "v{version}");
            assert_eq!(sent(&r), all([10, 20, 30]), "v{version}");
            assert!(r.forgotten_topics_data.is_empty());
            // Topics grouped in first-appearance order, with both name and id.
            assert_eq!(r.topics.len(), 2);
            assert_eq!(r.topics[0].topic_id, A);
            assert_eq!(r.topics[1].topic_id, B);
            let p = &r.topics[0].partitions[0];
            assert_eq!(p.current_leader_epoch, 5);
            assert_eq!(p.partition_max_bytes, 1 << 20);
            assert_eq!(p.log_start_offset, -1);
        }
    }

    #[test]
    fn incremental_request_carries_only_new_and_changed_partitions() {
        struct Case {
            name: &'static str,
            change: fn(&mut Vec<WantedPartition>),
            sent: Vec<(String, i32, i64)>,
        }
        let cases = [
            Case {
                name: "nothing changed",
                change: |_| {},
                sent: vec![],
            },
            Case {
                name: "offset moved after data",
                change: |w| w[1].fetch_offset = 25,
                sent: vec![("a".into(), 1, 25)],
            },
            Case {
                name: "offset moved back to another value (seek)",
                change: |w| w[2].fetch_offset = 3,
                sent: vec![("b".into(), 0, 3)],
            },
            Case {
                name: "partition_max_bytes grew",
                change: |w| w[0].partition_max_bytes *= 2,
                sent: vec![("a".into(), 0, 10)],
            },
            Case {
                name: "leader epoch moved",
                change: |w| w[2].current_leader_epoch = 6,
                sent: vec![("b".into(), 0, 30)],
            },
            Case {
                name: "new partition",
                change: |w| w.push(want("c", Uuid::from_u128(0xc), 7, 70)),
                sent: vec![("c".into(), 7, 70)],
            },
            Case {
                name: "two changes in two topics",
                change: |w| {
                    w[0].fetch_offset = 11;
                    w[2].fetch_offset = 31;
                },
                sent: vec![("a".into(), 0, 11), ("b".into(), 0, 31)],
            },
        ];
        for version in [7, 12, 13] {
            for case in &cases {
                let mut s = open(version);
                let mut wanted = three();
                (case.change)(&mut wanted);
                let r = build(&mut s, &wanted, version);
                assert_eq!((r.session_id, r.session_epoch), (42, 1), "{}", case.name);
                assert_eq!(sent(&r), case.sent, "v{version}: {}", case.name);
                assert!(r.forgotten_topics_data.is_empty(), "{}", case.name);
            }
        }
    }

    #[test]
    fn a_partition_is_compared_with_what_was_last_sent() {
        let mut s = open(12);
        let mut wanted = three();
        // Round 1: data for a/0, the loop moved to 15: sent.
        wanted[0].fetch_offset = 15;
        assert_eq!(sent(&build(&mut s, &wanted, 12)), vec![("a".into(), 0, 15)]);
        s.handle_response(&ok(42));
        // Round 2: no data anywhere: nothing to send, the broker keeps fetching at 15.
        let r = build(&mut s, &wanted, 12);
        assert_eq!((r.session_epoch, sent(&r)), (2, vec![]));
        s.handle_response(&ok(42));
        // Round 3: a seek back to the first offset ever sent (10) is a change too.
        wanted[0].fetch_offset = 10;
        assert_eq!(sent(&build(&mut s, &wanted, 12)), vec![("a".into(), 0, 10)]);
    }

    #[test]
    fn partitions_not_wanted_are_forgotten_by_name_or_id() {
        for version in [7, 11, 12, 13, 18] {
            let mut s = open(version);
            let r = build(&mut s, &three()[..1], version);
            assert_eq!(sent(&r), vec![], "v{version}");
            // Both forms are filled; the version picks one on the wire.
            let expect = vec![("a".to_string(), A, 1), ("b".to_string(), B, 0)];
            assert_eq!(forgotten(&r), expect, "v{version}");

            // On the wire, v7-12 name the topic and v13+ give its id.
            let mut bytes = Vec::new();
            r.encode(&mut bytes, version).unwrap();
            let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            let by_id = version >= 13;
            assert_eq!(has(B.as_bytes()), by_id, "v{version}");
            assert_eq!(has(&[0, 1, b'b']) || has(&[2, b'b']), !by_id, "v{version}");
        }
    }

    #[test]
    fn forgotten_partition_comes_back_as_new() {
        let mut s = open(13);
        // Paused: forgotten.
        let r = build(&mut s, &three()[1..], 13);
        assert_eq!(forgotten(&r), vec![("a".to_string(), A, 0)]);
        s.handle_response(&ok(42));
        // Still paused: nothing at all.
        let r = build(&mut s, &three()[1..], 13);
        assert_eq!((sent(&r), forgotten(&r)), (vec![], vec![]));
        s.handle_response(&ok(42));
        // Resumed at the very offset it had: sent again all the same.
        let r = build(&mut s, &three(), 13);
        assert_eq!(sent(&r), vec![("a".into(), 0, 10)]);
        assert!(r.forgotten_topics_data.is_empty());
        assert_eq!(r.session_epoch, 3);
    }

    #[test]
    fn recreated_topic_replaces_the_old_id_from_v13() {
        let new_a = Uuid::from_u128(0xaa);
        for (version, forgets_old) in [(12, false), (13, true)] {
            let mut s = open(version);
            let mut wanted = three();
            wanted[0].topic_id = new_a;
            let r = build(&mut s, &wanted, version);
            assert_eq!(sent(&r), vec![("a".into(), 0, 10)], "v{version}");
            assert_eq!(r.topics[0].topic_id, new_a);
            let expect = if forgets_old {
                vec![("a".to_string(), A, 0)]
            } else {
                vec![]
            };
            assert_eq!(forgotten(&r), expect, "v{version}");
            // a/1 still uses the old id: both ids resolve.
            assert_eq!(s.topic_name(A).map(|n| &**n), Some("a"));
            assert_eq!(s.topic_name(new_a).map(|n| &**n), Some("a"));
        }
    }

    #[test]
    fn epoch_counts_up_and_wraps_to_1() {
        let mut s = open(12);
        for expected in 1..=5 {
            let r = build(&mut s, &three(), 12);
            assert_eq!((r.session_id, r.session_epoch), (42, expected));
            s.handle_response(&ok(42));
        }
        s.state = State::Open {
            id: 42,
            epoch: i32::MAX - 1,
            uses_topic_ids: false,
        };
        for expected in [i32::MAX - 1, i32::MAX, 1, 2] {
            let r = build(&mut s, &three(), 12);
            assert_eq!((r.session_id, r.session_epoch), (42, expected));
            s.handle_response(&ok(42));
        }
    }

    #[test]
    fn session_errors_lead_to_a_full_request() {
        // (error code, outcome, session id the next full request names to close)
        let cases = [
            (70, SessionOutcome::Retry { error_code: 70 }, 0),
            (71, SessionOutcome::Retry { error_code: 71 }, 42),
            (106, SessionOutcome::Retry { error_code: 106 }, 42),
            (-1, SessionOutcome::Error { error_code: -1 }, 42),
        ];
        for (code, outcome, close) in cases {
            let mut s = open(13);
            let mut wanted = three();
            wanted[0].fetch_offset = 11;
            let r = build(&mut s, &wanted[1..], 13);
            assert_eq!(r.session_epoch, 1);
            assert_eq!(s.handle_response(&error(code)), outcome, "code {code}");
            let r = build(&mut s, &wanted, 13);
            assert_eq!((r.session_id, r.session_epoch), (close, 0), "code {code}");
            assert_eq!(sent(&r), all([11, 20, 30]), "code {code}");
            assert!(r.forgotten_topics_data.is_empty());
            // The broker opens a new session: incremental again from epoch 1.
            s.handle_response(&ok(43));
            let r = build(&mut s, &wanted, 13);
            assert_eq!((r.session_id, r.session_epoch, sent(&r)), (43, 1, vec![]));
        }
    }

    #[test]
    fn declined_session_means_full_requests_with_epoch_0() {
        let mut s = FetchSession::new(true);
        let mut wanted = three();
        for round in 0..3 {
            wanted[0].fetch_offset = 10 + round;
            let r = build(&mut s, &wanted, 12);
            assert_eq!((r.session_id, r.session_epoch), (0, 0), "round {round}");
            assert_eq!(sent(&r), all([10 + round, 20, 30]), "round {round}");
            assert_eq!(s.handle_response(&ok(0)), SessionOutcome::Data);
        }
        // The broker has room now.
        build(&mut s, &wanted, 12);
        s.handle_response(&ok(9));
        let r = build(&mut s, &wanted, 12);
        assert_eq!((r.session_id, r.session_epoch, sent(&r)), (9, 1, vec![]));
    }

    #[test]
    fn broker_closing_the_session_leads_to_a_full_request() {
        let mut s = open(12);
        // Everything forgotten: the broker drops the now empty session.
        let r = build(&mut s, &[], 12);
        assert_eq!(forgotten(&r).len(), 3);
        assert_eq!(s.handle_response(&ok(0)), SessionOutcome::Data);
        let r = build(&mut s, &three(), 12);
        assert_eq!((r.session_id, r.session_epoch), (0, 0));
        assert_eq!(sent(&r), all([10, 20, 30]));
    }

    #[test]
    fn answer_from_another_session_is_not_trusted() {
        let mut s = open(12);
        build(&mut s, &three(), 12);
        assert_eq!(
            s.handle_response(&ok(7)),
            SessionOutcome::Retry { error_code: 0 }
        );
        let r = build(&mut s, &three(), 12);
        assert_eq!((r.session_id, r.session_epoch), (42, 0));
        assert_eq!(sent(&r), all([10, 20, 30]));
    }

    #[test]
    fn disabled_or_old_versions_are_always_full_and_sessionless() {
        for (enabled, version) in [(false, 12), (false, 13), (true, 4), (true, 6)] {
            let mut s = FetchSession::new(enabled);
            let mut wanted = three();
            for round in 0..3 {
                let r = build(&mut s, &wanted, version);
                let what = format!("enabled {enabled}, v{version}, round {round}");
                assert_eq!((r.session_id, r.session_epoch), (0, -1), "{what}");
                assert_eq!(sent(&r).len(), wanted.len(), "{what}");
                assert!(r.forgotten_topics_data.is_empty(), "{what}");
                // Even a broker that hands out a session id does not make one.
                assert_eq!(s.handle_response(&ok(42)), SessionOutcome::Data);
                wanted.pop();
            }
        }
    }

    #[test]
    fn version_change_starts_a_new_session() {
        // Across v13 (names to ids): a full request closing the old session.
        let mut s = open(12);
        let r = build(&mut s, &three(), 13);
        assert_eq!((r.session_id, r.session_epoch), (42, 0));
        assert_eq!(sent(&r), all([10, 20, 30]));
        s.handle_response(&ok(43));
        let r = build(&mut s, &three(), 13);
        assert_eq!((r.session_id, r.session_epoch, sent(&r)), (43, 1, vec![]));
        s.handle_response(&ok(43));

        // Below v7 and back: sessionless, then the old session is closed.
        let r = build(&mut s, &three(), 6);
        assert_eq!((r.session_id, r.session_epoch), (0, -1));
        s.handle_response(&ok(0));
        let r = build(&mut s, &three(), 13);
        assert_eq!((r.session_id, r.session_epoch), (43, 0));
    }

    #[test]
    fn reset_makes_the_next_request_full_and_closes_the_old_session() {
        let mut s = open(13);
        let mut wanted = three();
        wanted[1].fetch_offset = 21;
        build(&mut s, &wanted, 13);
        // Timeout or lost connection: no response.
        s.reset();
        assert_eq!(s.topic_name(A), None);
        let r = build(&mut s, &wanted, 13);
        assert_eq!((r.session_id, r.session_epoch), (42, 0));
        assert_eq!(sent(&r), all([10, 21, 30]));
        // And if that request is lost too, the old id is still the one to close.
        s.reset();
        let r = build(&mut s, &wanted, 13);
        assert_eq!((r.session_id, r.session_epoch), (42, 0));

        // A fresh handler (a restarted loop) knows no session at all.
        let r = build(&mut FetchSession::new(true), &wanted, 13);
        assert_eq!((r.session_id, r.session_epoch), (0, 0));
    }

    #[test]
    fn build_without_an_answer_to_the_previous_request_resets() {
        let mut s = open(12);
        build(&mut s, &three(), 12);
        let r = build(&mut s, &three(), 12);
        assert_eq!((r.session_id, r.session_epoch), (42, 0));
        assert_eq!(sent(&r), all([10, 20, 30]));
    }

    #[test]
    fn response_without_a_request_resets() {
        let mut s = open(12);
        assert_eq!(s.handle_response(&ok(42)), SessionOutcome::Data);
        let r = build(&mut s, &three(), 12);
        assert_eq!((r.session_id, r.session_epoch), (42, 0));
    }

    #[test]
    fn duplicates_in_wanted_count_once() {
        let mut s = FetchSession::new(true);
        let mut wanted = three();
        wanted.push(want("a", A, 0, 99));
        let r = build(&mut s, &wanted, 12);
        assert_eq!(sent(&r), all([10, 20, 30]));
        s.handle_response(&ok(42));
        let r = build(&mut s, &wanted, 12);
        assert_eq!((sent(&r), forgotten(&r)), (vec![], vec![]));
    }

    #[test]
    fn topic_ids_resolve_to_session_topics() {
        let mut s = open(13);
        assert_eq!(s.topic_name(A).map(|n| &**n), Some("a"));
        assert_eq!(s.topic_name(B).map(|n| &**n), Some("b"));
        assert_eq!(s.topic_name(Uuid::nil()), None);
        // a/0 forgotten: a/1 still holds the name.
        build(&mut s, &three()[1..], 13);
        assert_eq!(s.topic_name(A).map(|n| &**n), Some("a"));
        s.handle_response(&ok(42));
        // b forgotten entirely.
        build(&mut s, &three()[1..2], 13);
        assert_eq!(s.topic_name(B), None);
        assert_eq!(s.topic_name(A).map(|n| &**n), Some("a"));
    }

    /// A broker's side of KIP-227, as Kafka's `FetchManager` and `FetchSession` do it:
    /// what it will fetch for the client after each request.
    #[derive(Default)]
    struct Broker {
        sessions: HashMap<i32, BrokerSession>,
        last_id: i32,
        decline: bool,
    }

    struct BrokerSession {
        epoch: i32,
        uses_topic_ids: bool,
        partitions: HashMap<Key, Sent>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    enum Key {
        Name(String, i32),
        Id(Uuid, i32),
    }

    type View = HashMap<Key, Sent>;

    impl Broker {
        /// The response, and what the broker now fetches (for an error: nothing).
        fn fetch(&mut self, r: &FetchRequest, version: i16) -> (FetchResponse, View) {
            let by_id = version >= 13;
            let key = |name: &TopicName, id: Uuid, p: i32| {
                if by_id {
                    Key::Id(id, p)
                } else {
                    Key::Name(name.0.to_string(), p)
                }
            };
            let mut request = View::new();
            for t in &r.topics {
                for p in &t.partitions {
                    let sent = Sent {
                        topic_id: t.topic_id,
                        fetch_offset: p.fetch_offset,
                        current_leader_epoch: p.current_leader_epoch,
                        partition_max_bytes: p.partition_max_bytes,
                    };
                    let old = request.insert(key(&t.topic, t.topic_id, p.partition), sent);
                    assert!(old.is_none(), "a partition twice in one request");
                }
            }
            if version < 7 || r.session_epoch <= 0 {
                assert!(r.forgotten_topics_data.is_empty());
                self.sessions.remove(&r.session_id);
                if version < 7 || r.session_epoch == -1 || self.decline {
                    return (ok(0), request);
                }
                self.last_id += 1;
                let session = BrokerSession {
                    epoch: 1,
                    uses_topic_ids: by_id,
                    partitions: request.clone(),
                };
                self.sessions.insert(self.last_id, session);
                return (ok(self.last_id), request);
            }
            let Some(session) = self.sessions.get_mut(&r.session_id) else {
                return (error(FETCH_SESSION_ID_NOT_FOUND), View::new());
            };
            if session.epoch != r.session_epoch {
                return (error(INVALID_FETCH_SESSION_EPOCH), View::new());
            }
            if session.uses_topic_ids != by_id {
                return (error(FETCH_SESSION_TOPIC_ID_ERROR), View::new());
            }
            // Additions and updates first, then removals, as Kafka does.
            session.partitions.extend(request);
            for t in &r.forgotten_topics_data {
                for &p in &t.partitions {
                    session.partitions.remove(&key(&t.topic, t.topic_id, p));
                }
            }
            if session.partitions.is_empty() {
                self.sessions.remove(&r.session_id);
                return (ok(0), View::new());
            }
            session.epoch = next_epoch(session.epoch);
            (ok(r.session_id), session.partitions.clone())
        }
    }

    /// A small deterministic generator, so the model test needs no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Many random rounds against the broker model: whatever happens (data, pauses,
    /// seeks, growing limits, leader moves, re-created topics, partitions coming and
    /// going, evictions, lost responses, version changes, declined sessions), after
    /// every successful response the broker fetches exactly the wanted partitions at
    /// exactly the wanted positions.
    #[test]
    fn broker_always_fetches_exactly_what_is_wanted() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut broker = Broker::default();
            let mut s = FetchSession::new(true);
            let mut version: i16 = 13;
            // Whether the broker evicted a session since our last full request: the
            // only way a session error can happen here.
            let mut evicted = false;
            let mut ids: Vec<Uuid> = (0..4).map(|t| Uuid::from_u128(t + 1)).collect();
            // Every partition the loop has, and whether it is fetchable right now.
            let mut all: Vec<(WantedPartition, bool)> = Vec::new();
            for t in 0..4u32 {
                for p in 0..3 {
                    let mut w = want(&format!("t{t}"), ids[t as usize], p, 0);
                    w.fetch_offset = rng.below(100) as i64;
                    all.push((w, true));
                }
            }
            for round in 0..300 {
                for (w, fetchable) in &mut all {
                    if rng.chance(30) {
                        w.fetch_offset += 1 + rng.below(50) as i64;
                    }
                    if rng.chance(2) {
                        w.fetch_offset = rng.below(100) as i64;
                    }
                    if rng.chance(2) {
                        // Grown after a batch too large, or back to the default.
                        w.partition_max_bytes ^= 3 << 20;
                    }
                    if rng.chance(2) {
                        w.current_leader_epoch += 1;
                    }
                    if rng.chance(10) {
                        *fetchable = !*fetchable;
                    }
                }
                if rng.chance(3) {
                    // A topic is deleted and re-created under its name.
                    let t = rng.below(4) as usize;
                    ids[t] = Uuid::from_u128(u128::from(rng.next()) | (1 << 64));
                    let name = format!("t{t}");
                    for (w, _) in &mut all {
                        if *w.tp.topic == *name {
                            w.topic_id = ids[t];
                        }
                    }
                }
                if rng.chance(3) {
                    // A partition leaves this loop (leader moved); another one joins.
                    let i = rng.below(all.len() as u64) as usize;
                    all.remove(i);
                    let t = rng.below(4) as usize;
                    let p = 3 + rng.below(20) as i32;
                    let fresh = want(&format!("t{t}"), ids[t], p, rng.below(100) as i64);
                    if !all.iter().any(|(w, _)| w.tp == fresh.tp) {
                        all.push((fresh, true));
                    }
                }
                if rng.chance(2) {
                    version = [6, 12, 13, 16][rng.below(4) as usize];
                }
                broker.decline = rng.chance(5);
                if rng.chance(2) {
                    // The broker evicted the session.
                    broker.sessions.clear();
                    evicted = true;
                }

                let wanted: Vec<WantedPartition> = all
                    .iter()
                    .filter(|(_, fetchable)| *fetchable)
                    .map(|(w, _)| w.clone())
                    .collect();
                let request = build(&mut s, &wanted, version);
                if request.session_epoch <= 0 {
                    evicted = false;
                }
                let mut bytes = Vec::new();
                request.encode(&mut bytes, version).unwrap();
                let (response, view) = broker.fetch(&request, version);

                if rng.chance(3) {
                    // The broker did its part but the response was lost.
                    s.reset();
                    continue;
                }
                let what = format!("seed {seed}, round {round}, v{version}");
                match s.handle_response(&response) {
                    SessionOutcome::Data => {
                        let expected: View = wanted
                            .iter()
                            .map(|w| {
                                let key = if version >= 13 {
                                    Key::Id(w.topic_id, w.tp.partition)
                                } else {
                                    Key::Name(w.tp.topic.to_string(), w.tp.partition)
                                };
                                (key, Sent::from(w))
                            })
                            .collect();
                        if wanted.is_empty() {
                            // An emptied session is closed: nothing is fetched.
                            assert!(view.is_empty(), "{what}");
                        } else {
                            assert_eq!(view, expected, "{what}");
                        }
                        if version >= 13 {
                            for w in &wanted {
                                assert_eq!(s.topic_name(w.topic_id), Some(&w.tp.topic), "{what}");
                            }
                        }
                    }
                    SessionOutcome::Retry { error_code } => {
                        assert_eq!(error_code, FETCH_SESSION_ID_NOT_FOUND, "{what}");
                        assert!(evicted, "{what}");
                        assert!(view.is_empty(), "{what}");
                        // The retry is a full request, which cannot fail this way.
                        assert!(matches!(s.state, State::Full { .. }), "{what}");
                    }
                    SessionOutcome::Error { error_code } => {
                        panic!("{what}: unexpected error {error_code}")
                    }
                }
            }
        }
    }
}
