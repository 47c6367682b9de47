//! Incremental fetch sessions (KIP-227), as Kafka's `FetchManager` keeps them.
//!
//! A Fetch request (v7+) names a session id and epoch:
//!
//! | session id | epoch | meaning |
//! |---|---|---|
//! | 0 | -1 | a sessionless full fetch; the response's session id is 0 |
//! | any | 0 | a full fetch that closes the given session (if any) and opens a new one |
//! | n | -1 | a full fetch that closes session n and opens none |
//! | n | > 0 | an incremental fetch in session n at that epoch |
//!
//! An incremental request lists only the partitions it adds or changes and
//! the ones it drops (`forgotten_topics_data`); the rest keep the fetch
//! offset they had. Its response lists only the partitions with something
//! new: records, an error, or a high watermark or log start offset different
//! from the last one sent. Each accepted incremental request moves the
//! session to the next epoch; a wrong epoch is INVALID_FETCH_SESSION_EPOCH,
//! an unknown session FETCH_SESSION_ID_NOT_FOUND, and switching between
//! topic names and topic ids (Fetch v13, KIP-516) within a session
//! FETCH_SESSION_TOPIC_ID_ERROR; each of these leaves the session as it was.
//!
//! Sessions belong to one broker and are lost when it stops, as a real
//! broker's are on restart. Each broker keeps at most
//! [`MAX_SESSIONS_PER_BROKER`] (Kafka's `max.incremental.fetch.session.cache.slots`
//! default), evicting the least recently used; Kafka's eviction also weighs
//! session size and follower privilege, which clients cannot observe.

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use uuid::Uuid;

pub(crate) const MAX_SESSIONS_PER_BROKER: usize = 1000;

/// How a fetch names its topic: by name before Fetch v13, by id from v13.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TopicKey {
    Name(String),
    Id(Uuid),
}

/// One partition a fetch reads, with the client's position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchTarget {
    pub(crate) topic: TopicKey,
    pub(crate) partition: i32,
    pub(crate) fetch_offset: i64,
    pub(crate) max_bytes: i32,
    pub(crate) current_leader_epoch: i32,
}

impl FetchTarget {
    fn same_partition(&self, topic: &TopicKey, partition: i32) -> bool {
        self.topic == *topic && self.partition == partition
    }
}

#[derive(Debug, Clone)]
struct CachedPartition {
    target: FetchTarget,
    /// What the last response said, `None` before any response or after an
    /// error, so the partition is sent again.
    high_watermark: Option<i64>,
    log_start_offset: Option<i64>,
}

#[derive(Debug)]
struct Session {
    epoch: i32,
    uses_topic_ids: bool,
    partitions: Vec<CachedPartition>,
    last_used: u64,
}

impl Session {
    fn upsert(&mut self, target: FetchTarget) {
        match self
            .partitions
            .iter_mut()
            .find(|p| p.target.same_partition(&target.topic, target.partition))
        {
            Some(cached) => cached.target = target,
            None => self.partitions.push(CachedPartition {
                target,
                high_watermark: None,
                log_start_offset: None,
            }),
        }
    }
}

/// Which kind of response a fetch gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// Every partition, session id 0.
    Sessionless,
    /// Every partition, in a session just opened with this id.
    Full(i32),
    /// Only the partitions with news, in this session.
    Incremental(i32),
}

impl Context {
    pub(crate) fn session_id(self) -> i32 {
        match self {
            Context::Sessionless => 0,
            Context::Full(id) | Context::Incremental(id) => id,
        }
    }
}

/// What one partition's response carries, as far as a session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) high_watermark: i64,
    pub(crate) log_start_offset: i64,
    pub(crate) has_records: bool,
    pub(crate) error_code: i16,
}

#[derive(Debug, Default)]
pub(crate) struct FetchSessions {
    sessions: HashMap<(i32, i32), Session>,
    last_id: i32,
    clock: u64,
}

/// Kafka's `FetchMetadata.nextEpoch`.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl FetchSessions {
    /// Resolves a v7+ fetch's session fields into the partitions to read and
    /// the kind of response, updating the session; `Err` is the top-level
    /// error code of a session failure.
    pub(crate) fn open(
        &mut self,
        node_id: i32,
        session_id: i32,
        epoch: i32,
        uses_topic_ids: bool,
        requested: Vec<FetchTarget>,
        forgotten: &[(TopicKey, i32)],
    ) -> Result<(Context, Vec<FetchTarget>), i16> {
        self.clock += 1;
        if epoch == 0 || epoch == -1 {
            if session_id != 0 {
                self.sessions.remove(&(node_id, session_id));
            }
            if epoch == -1 || requested.is_empty() {
                return Ok((Context::Sessionless, requested));
            }
            let mut session = Session {
                epoch: 1,
                uses_topic_ids,
                partitions: Vec::new(),
                last_used: self.clock,
            };
            for target in requested {
                session.upsert(target);
            }
            let targets = session
                .partitions
                .iter()
                .map(|p| p.target.clone())
                .collect();
            let id = self.insert(node_id, session);
            return Ok((Context::Full(id), targets));
        }
        let Some(session) = self.sessions.get_mut(&(node_id, session_id)) else {
            return Err(ResponseError::FetchSessionIdNotFound.code());
        };
        if session.uses_topic_ids != uses_topic_ids {
            return Err(ResponseError::FetchSessionTopicIdError.code());
        }
        if session.epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch.code());
        }
        for target in requested {
            session.upsert(target);
        }
        session.partitions.retain(|p| {
            !forgotten
                .iter()
                .any(|(t, i)| p.target.same_partition(t, *i))
        });
        if session.partitions.is_empty() {
            self.sessions.remove(&(node_id, session_id));
            return Ok((Context::Sessionless, Vec::new()));
        }
        session.epoch = next_epoch(epoch);
        session.last_used = self.clock;
        let targets = session
            .partitions
            .iter()
            .map(|p| p.target.clone())
            .collect();
        Ok((Context::Incremental(session_id), targets))
    }

    fn insert(&mut self, node_id: i32, session: Session) -> i32 {
        let mine = self
            .sessions
            .keys()
            .filter(|(node, _)| *node == node_id)
            .count();
        if mine >= MAX_SESSIONS_PER_BROKER {
            let oldest = self
                .sessions
                .iter()
                .filter(|((node, _), _)| *node == node_id)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        // Ids only need to be unique per broker and never 0; a counter keeps
        // them reproducible where Kafka draws them at random.
        loop {
            self.last_id = if self.last_id == i32::MAX {
                1
            } else {
                self.last_id + 1
            };
            if !self.sessions.contains_key(&(node_id, self.last_id)) {
                break;
            }
        }
        self.sessions.insert((node_id, self.last_id), session);
        self.last_id
    }

    /// Which of `targets` (as returned by [`open`](Self::open)) the response
    /// lists, given what each would carry; remembers what is sent.
    pub(crate) fn select(
        &mut self,
        node_id: i32,
        context: Context,
        targets: &[FetchTarget],
        sent: &[Sent],
    ) -> Vec<bool> {
        let session = match context {
            Context::Sessionless => None,
            Context::Full(id) | Context::Incremental(id) => self.sessions.get_mut(&(node_id, id)),
        };
        let Some(session) = session else {
            return vec![true; targets.len()];
        };
        targets
            .iter()
            .zip(sent)
            .map(|(target, sent)| {
                let Some(cached) = session
                    .partitions
                    .iter_mut()
                    .find(|p| p.target.same_partition(&target.topic, target.partition))
                else {
                    return true;
                };
                let changed = sent.has_records
                    || sent.error_code != 0
                    || cached.high_watermark != Some(sent.high_watermark)
                    || cached.log_start_offset != Some(sent.log_start_offset);
                if sent.error_code == 0 {
                    cached.high_watermark = Some(sent.high_watermark);
                    cached.log_start_offset = Some(sent.log_start_offset);
                } else {
                    cached.high_watermark = None;
                    cached.log_start_offset = None;
                }
                matches!(context, Context::Full(_)) || changed
            })
            .collect()
    }

    /// Drops the sessions of a broker that stopped.
    pub(crate) fn close_broker(&mut self, node_id: i32) {
        self.sessions.retain(|(node, _), _| *node != node_id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(partition: i32, fetch_offset: i64) -> FetchTarget {
        FetchTarget {
            topic: TopicKey::Name("t".into()),
            partition,
            fetch_offset,
            max_bytes: 1024,
            current_leader_epoch: -1,
        }
    }

    fn sent(high_watermark: i64, has_records: bool) -> Sent {
        Sent {
            high_watermark,
            log_start_offset: 0,
            has_records,
            error_code: 0,
        }
    }

    #[test]
    fn full_then_incremental_sends_only_news() {
        let mut sessions = FetchSessions::default();
        let (context, targets) = sessions
            .open(1, 0, 0, false, vec![target(0, 0), target(1, 0)], &[])
            .unwrap();
        let Context::Full(id) = context else {
            panic!("{context:?}")
        };
        assert_ne!(id, 0);
        let first = sessions.select(1, context, &targets, &[sent(5, true), sent(0, false)]);
        assert_eq!(first, [true, true]);

        // Epoch 1, moving partition 0 on; nothing new anywhere.
        let (context, targets) = sessions
            .open(1, id, 1, false, vec![target(0, 5)], &[])
            .unwrap();
        assert_eq!(context, Context::Incremental(id));
        assert_eq!(targets[0].fetch_offset, 5);
        assert_eq!(targets[1].fetch_offset, 0, "partition 1 keeps its offset");
        let quiet = sessions.select(1, context, &targets, &[sent(5, false), sent(0, false)]);
        assert_eq!(quiet, [false, false]);

        // Epoch 2: partition 1 grows.
        let (context, targets) = sessions.open(1, id, 2, false, vec![], &[]).unwrap();
        let news = sessions.select(1, context, &targets, &[sent(5, false), sent(3, true)]);
        assert_eq!(news, [false, true]);
    }

    #[test]
    fn session_errors_leave_the_session_alone() {
        let mut sessions = FetchSessions::default();
        let (Context::Full(id), _) = sessions
            .open(1, 0, 0, false, vec![target(0, 0)], &[])
            .unwrap()
        else {
            panic!("no session")
        };
        assert_eq!(sessions.open(1, id, 5, false, vec![], &[]), Err(71));
        assert_eq!(sessions.open(1, id + 1, 1, false, vec![], &[]), Err(70));
        assert_eq!(
            sessions.open(2, id, 1, false, vec![], &[]),
            Err(70),
            "per broker"
        );
        assert_eq!(sessions.open(1, id, 1, true, vec![], &[]), Err(106));
        assert!(sessions.open(1, id, 1, false, vec![], &[]).is_ok());
    }

    #[test]
    fn forgetting_every_partition_or_a_final_epoch_closes_the_session() {
        let mut sessions = FetchSessions::default();
        let (Context::Full(id), _) = sessions
            .open(1, 0, 0, false, vec![target(0, 0)], &[])
            .unwrap()
        else {
            panic!("no session")
        };
        let forget = [(TopicKey::Name("t".into()), 0)];
        let (context, targets) = sessions.open(1, id, 1, false, vec![], &forget).unwrap();
        assert_eq!((context, targets.len()), (Context::Sessionless, 0));
        assert_eq!(sessions.len(), 0);

        let (Context::Full(id), _) = sessions
            .open(1, 0, 0, false, vec![target(0, 0)], &[])
            .unwrap()
        else {
            panic!("no session")
        };
        let (context, _) = sessions
            .open(1, id, -1, false, vec![target(0, 0)], &[])
            .unwrap();
        assert_eq!(context, Context::Sessionless);
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn the_cache_is_bounded_per_broker() {
        let mut sessions = FetchSessions::default();
        for _ in 0..MAX_SESSIONS_PER_BROKER + 5 {
            sessions
                .open(1, 0, 0, false, vec![target(0, 0)], &[])
                .unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS_PER_BROKER);
        sessions.close_broker(1);
        assert_eq!(sessions.len(), 0);
    }
}
