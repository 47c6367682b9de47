//! The name of one partition of one topic, shared cheaply.

use std::fmt;
use std::sync::Arc;

/// A topic and a partition of it. The topic name is shared (`Arc<str>`), so copies
/// made per batch or per record allocate nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The partition's number, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition` (a `&str`, `String` or `Arc<str>` topic).
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}
