//! Fault injection: rules that take over a request before the broker answers it.
//!
//! A rule is an [`Intercept`] (which requests) plus an [`Action`] (what the
//! broker does instead of, or before, answering). Rules are tried in the order
//! they were added and the first one that matches wins; a rule limited with
//! [`Intercept::times`] stops matching once it has fired that many times, so a
//! test can script "fail twice, then work" with one line.
//!
//! Matching runs on every request of every connection, concurrently. User
//! predicates are called on a snapshot of the rule list, outside any lock, so
//! a predicate that calls back into the broker cannot deadlock it; claiming a
//! limited rule is a compare-and-swap, so two connections racing for the last
//! use of a `times(1)` rule cannot both win.

use std::fmt;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use kafka_protocol::ResponseError;

use crate::lock;

/// One request as the broker saw it, after decoding its header.
///
/// Every request whose header decodes is recorded (see
/// [`MockBroker::requests`](crate::MockBroker::requests)) and offered to the
/// intercept rules, including requests the mock then refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestInfo {
    /// The broker that received the request.
    pub node_id: i32,
    /// Which accepted connection it came on, counting from 1, so a test can
    /// tell that a client reconnected.
    pub connection_id: u64,
    /// The request's API.
    pub api_key: ApiKey,
    /// The version of the API the request was sent at.
    pub api_version: i16,
    /// The client's correlation id, which its response echoes.
    pub correlation_id: i32,
    /// As the client sent it; `None` for a null client id.
    pub client_id: Option<String>,
}

type Predicate = Arc<dyn Fn(&RequestInfo) -> bool + Send + Sync>;

/// Which requests a rule applies to.
///
/// Conditions combine with AND. Without [`times`](Self::times) a rule matches
/// forever.
///
/// ```
/// use josefine_mock::{ApiKey, Intercept};
///
/// // The first two Metadata requests at version 9 or above.
/// let rule = Intercept::api(ApiKey::Metadata).versions(9..).times(2);
/// # let _ = rule;
/// ```
#[derive(Clone)]
#[must_use = "an Intercept does nothing until passed to MockBroker::intercept"]
pub struct Intercept {
    api_key: Option<ApiKey>,
    predicates: Vec<Predicate>,
    times: Option<usize>,
}

impl Intercept {
    /// Matches every request.
    pub fn any() -> Self {
        Intercept {
            api_key: None,
            predicates: Vec::new(),
            times: None,
        }
    }

    /// Matches requests of one API.
    pub fn api(api_key: ApiKey) -> Self {
        Intercept {
            api_key: Some(api_key),
            ..Intercept::any()
        }
    }

    /// Also requires the request's API version to lie in `range`.
    pub fn versions(self, range: impl RangeBounds<i16>) -> Self {
        // A pair of owned bounds is itself a range, so any range type can be
        // kept without boxing it.
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.when(move |req| bounds.contains(&req.api_version))
    }

    /// Also requires `predicate` to hold. It runs on connection tasks, so it
    /// should be quick; it may call back into the broker.
    pub fn when(
        mut self,
        predicate: impl Fn(&RequestInfo) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicates.push(Arc::new(predicate));
        self
    }

    /// Stops matching after `n` matches.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    /// Same as `times(1)`.
    pub fn once(self) -> Self {
        self.times(1)
    }

    fn matches(&self, req: &RequestInfo) -> bool {
        self.api_key.is_none_or(|key| key == req.api_key) && self.predicates.iter().all(|p| p(req))
    }
}

impl fmt::Debug for Intercept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intercept")
            .field("api_key", &self.api_key)
            .field("predicates", &self.predicates.len())
            .field("times", &self.times)
            .finish()
    }
}

/// What the broker does with an intercepted request.
///
/// Connections are served one request at a time, in order, as Kafka does; so
/// an action that holds up one request (`Delay`, `Stall`) holds up every
/// request pipelined behind it on the same connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Wait, then answer normally.
    Delay(Duration),
    /// Answer with a well-formed response of the request's API carrying this
    /// error code, without acting on the request: the top-level error code
    /// where the API has one (ApiVersions, Metadata v13+, InitProducerId),
    /// every per-topic error code for Metadata, CreateTopics and
    /// DeleteTopics, and every per-partition error code for Produce,
    /// ListOffsets and Fetch. For Metadata without a topic list, every
    /// existing topic carries the error. A fetch-session error
    /// (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH,
    /// FETCH_SESSION_TOPIC_ID_ERROR) goes top-level in Fetch v7+, as Kafka
    /// sends it; an error on a Produce with `acks=0` closes the connection,
    /// as Kafka does. The group APIs carry it where Kafka puts coordinator
    /// errors: top-level for FindCoordinator v0-v3, JoinGroup, SyncGroup,
    /// Heartbeat, LeaveGroup, ListGroups, ConsumerGroupHeartbeat and
    /// OffsetFetch v2-v7; per key for FindCoordinator v4+, per group for
    /// OffsetFetch v8+, DescribeGroups, ConsumerGroupDescribe and
    /// DeleteGroups, per partition for OffsetCommit and OffsetFetch v1. The
    /// transaction APIs likewise: top-level for AddOffsetsToTxn and EndTxn,
    /// per partition for AddPartitionsToTxn and TxnOffsetCommit. For an API
    /// the mock does not implement, the connection is closed.
    Error(i16),
    /// Close the connection without answering.
    Disconnect,
    /// Write these bytes, as they are, instead of a response.
    Garbage(Bytes),
    /// Never answer, and never answer anything after it on this connection,
    /// but keep the connection open until the client closes it.
    Stall,
    /// Write this frame body (response header and all) after a correct length
    /// prefix, for wrong correlation ids, truncated bodies and the like.
    RawResponse(Bytes),
    /// Write the length prefix and the first half of the real response, then
    /// close the connection.
    HalfResponse,
    /// Answer with a response the test built, without acting on the request;
    /// see [`Action::respond`] (a `kafka-protocol` response, encoded at the
    /// request's version) and [`Action::respond_raw`] (body bytes as they
    /// are, for counts and lengths no encoder would write). If the responder
    /// fails, the connection is closed.
    Respond(Responder),
    /// Serve the request as usual, then pass the response frame (header and
    /// body, without the length prefix) through the test's function and write
    /// what it returns behind a correct length prefix: a wrong correlation id,
    /// a patched count, trailing bytes. See [`Action::rewrite`]. A request
    /// without a response (Produce with `acks=0`) is left alone.
    Rewrite(Rewriter),
}

impl Action {
    /// [`Action::Error`] with a named error.
    pub fn error(error: ResponseError) -> Self {
        Action::Error(error.code())
    }

    /// [`Action::Respond`] with `response`, encoded at the request's version
    /// behind a response header with the request's correlation id. A response
    /// type that does not match the request's API is the test's business: the
    /// client will see a body it cannot decode.
    ///
    /// ```
    /// use josefine_mock::{Action, ApiKey, Intercept};
    /// use kafka_protocol::messages::MetadataResponse;
    ///
    /// // A Metadata answer that lists no brokers and no topics.
    /// let rule = (Intercept::api(ApiKey::Metadata), Action::respond(MetadataResponse::default()));
    /// # let _ = rule;
    /// ```
    pub fn respond<R>(response: R) -> Self
    where
        R: Encodable + HeaderVersion + Send + Sync + 'static,
    {
        Action::Respond(Responder(Arc::new(move |req: &RequestInfo| {
            let version = req.api_version;
            let mut frame = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(req.correlation_id)
                .encode(&mut frame, R::header_version(version))
                .and_then(|()| response.encode(&mut frame, version))
                .map_err(|e| format!("cannot encode the test's response at v{version}: {e}"))?;
            Ok(frame.freeze())
        })))
    }

    /// [`Action::Respond`] with a body built by `body` from the request,
    /// written after a correct response header (the request's correlation id,
    /// and tagged fields where the API's header version has them).
    pub fn respond_raw(body: impl Fn(&RequestInfo) -> Bytes + Send + Sync + 'static) -> Self {
        Action::Respond(Responder(Arc::new(move |req: &RequestInfo| {
            let mut frame = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(req.correlation_id)
                .encode(
                    &mut frame,
                    req.api_key.response_header_version(req.api_version),
                )
                .map_err(|e| format!("cannot encode a response header: {e}"))?;
            frame.extend_from_slice(&body(req));
            Ok(frame.freeze())
        })))
    }

    /// [`Action::Rewrite`] with `rewrite`, which gets the request and the real
    /// response frame (header and body) and returns the frame to send.
    pub fn rewrite(rewrite: impl Fn(&RequestInfo, Bytes) -> Bytes + Send + Sync + 'static) -> Self {
        Action::Rewrite(Rewriter(Arc::new(rewrite)))
    }
}

type RespondFn = dyn Fn(&RequestInfo) -> Result<Bytes, String> + Send + Sync;
type RewriteFn = dyn Fn(&RequestInfo, Bytes) -> Bytes + Send + Sync;

/// The function of an [`Action::Respond`]; equal only to its own clones.
#[derive(Clone)]
pub struct Responder(Arc<RespondFn>);

impl Responder {
    /// The response frame (header and body, no length prefix) for `req`.
    pub(crate) fn frame(&self, req: &RequestInfo) -> Result<Bytes, String> {
        (self.0)(req)
    }
}

/// The function of an [`Action::Rewrite`]; equal only to its own clones.
#[derive(Clone)]
pub struct Rewriter(Arc<RewriteFn>);

impl Rewriter {
    pub(crate) fn apply(&self, req: &RequestInfo, frame: Bytes) -> Bytes {
        (self.0)(req, frame)
    }
}

macro_rules! identity_eq {
    ($($t:ident),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($t), "(..)"))
            }
        }
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0)
            }
        }
        impl Eq for $t {}
    )*};
}

identity_eq!(Responder, Rewriter);

struct Rule {
    intercept: Intercept,
    action: Action,
    hits: AtomicUsize,
    removed: AtomicBool,
}

impl Rule {
    fn is_live(&self) -> bool {
        !self.removed.load(Ordering::Acquire)
            && self
                .intercept
                .times
                .is_none_or(|n| self.hits.load(Ordering::Acquire) < n)
    }

    /// Takes one use of the rule; false when another connection took the last.
    fn claim(&self) -> bool {
        let limit = self.intercept.times;
        self.hits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hits| match limit {
                Some(n) if hits >= n => None,
                _ => Some(hits + 1),
            })
            .is_ok()
    }
}

/// A rule added with [`MockBroker::intercept`](crate::MockBroker::intercept).
///
/// Dropping the handle keeps the rule; call [`remove`](Self::remove) to end
/// it early.
#[derive(Clone)]
pub struct InterceptHandle {
    rule: Arc<Rule>,
}

impl InterceptHandle {
    /// How many requests the rule has taken over so far.
    pub fn hits(&self) -> usize {
        self.rule.hits.load(Ordering::Acquire)
    }

    /// Whether the rule can still match: not removed, and not used up.
    pub fn is_active(&self) -> bool {
        self.rule.is_live()
    }

    /// Stops the rule from matching any further request.
    pub fn remove(&self) {
        self.rule.removed.store(true, Ordering::Release);
    }
}

impl fmt::Debug for InterceptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterceptHandle")
            .field("intercept", &self.rule.intercept)
            .field("action", &self.rule.action)
            .field("hits", &self.hits())
            .field("active", &self.is_active())
            .finish()
    }
}

/// The ordered rule list of one broker.
#[derive(Default)]
pub(crate) struct Interceptor {
    rules: Mutex<Vec<Arc<Rule>>>,
}

impl Interceptor {
    pub(crate) fn add(&self, intercept: Intercept, action: Action) -> InterceptHandle {
        let rule = Arc::new(Rule {
            intercept,
            action,
            hits: AtomicUsize::new(0),
            removed: AtomicBool::new(false),
        });
        lock(&self.rules).push(Arc::clone(&rule));
        InterceptHandle { rule }
    }

    pub(crate) fn clear(&self) {
        for rule in lock(&self.rules).drain(..) {
            rule.removed.store(true, Ordering::Release);
        }
    }

    /// The action of the first live rule matching `req`, using it up.
    pub(crate) fn take(&self, req: &RequestInfo) -> Option<Action> {
        let snapshot: Vec<Arc<Rule>> = {
            let mut rules = lock(&self.rules);
            rules.retain(|rule| rule.is_live());
            rules.clone()
        };
        snapshot
            .iter()
            .find(|rule| rule.is_live() && rule.intercept.matches(req) && rule.claim())
            .map(|rule| rule.action.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(api_key: ApiKey, api_version: i16) -> RequestInfo {
        RequestInfo {
            node_id: 1,
            connection_id: 1,
            api_key,
            api_version,
            correlation_id: 7,
            client_id: None,
        }
    }

    #[test]
    fn first_matching_rule_wins_and_times_expire() {
        let rules = Interceptor::default();
        let once = rules.add(Intercept::api(ApiKey::Metadata).once(), Action::Error(5));
        rules.add(Intercept::any(), Action::Disconnect);
        assert_eq!(
            rules.take(&req(ApiKey::Metadata, 1)),
            Some(Action::Error(5))
        );
        assert_eq!(
            rules.take(&req(ApiKey::Metadata, 1)),
            Some(Action::Disconnect)
        );
        assert_eq!(once.hits(), 1);
        assert!(!once.is_active());
    }

    #[test]
    fn versions_and_predicates_combine() {
        let rules = Interceptor::default();
        rules.add(
            Intercept::any()
                .versions(3..=4)
                .when(|r| r.correlation_id == 7),
            Action::Stall,
        );
        assert_eq!(rules.take(&req(ApiKey::Fetch, 2)), None);
        assert_eq!(rules.take(&req(ApiKey::Fetch, 4)), Some(Action::Stall));
        assert_eq!(rules.take(&req(ApiKey::Fetch, 5)), None);
    }

    #[test]
    fn removed_and_cleared_rules_stop_matching() {
        let rules = Interceptor::default();
        let handle = rules.add(Intercept::any(), Action::Stall);
        handle.remove();
        assert_eq!(rules.take(&req(ApiKey::Fetch, 4)), None);
        let handle = rules.add(Intercept::any(), Action::Stall);
        rules.clear();
        assert!(!handle.is_active());
        assert_eq!(rules.take(&req(ApiKey::Fetch, 4)), None);
    }

    #[test]
    fn times_zero_never_matches() {
        let rules = Interceptor::default();
        rules.add(Intercept::any().times(0), Action::Stall);
        assert_eq!(rules.take(&req(ApiKey::Fetch, 4)), None);
    }
}
