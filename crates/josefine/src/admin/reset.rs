//! Moving a group's committed offsets while it has no members (what
//! `kafka-consumer-groups.sh --reset-offsets` does): [`Admin::plan_offset_reset`]
//! works out where each partition goes, [`Admin::commit_group_offsets`] commits it.
//!
//! Both refuse a group with members (NON_EMPTY_GROUP): a running member would commit
//! over the reset, or read on from where it is. The commit is a "simple" OffsetCommit
//! (generation -1, no member id), which the coordinator accepts only from outside a
//! live group. Targets are kept inside the log, as Kafka's tool keeps them: below the
//! log start is the log start, above the end is the end. The end is the high
//! watermark from a Fetch, never ListOffsets LATEST (Tansu gets that wrong).

use super::groups::patiently;
use super::watermarks::high_watermarks;
use super::Admin;
use crate::consumer::list_offsets::{list_offset, EARLIEST};
use crate::error::{Error, KafkaCode, Result};
use crate::group::{commit_offsets, fetch_committed, Committer, PendingCommit};
use crate::TopicPartition;

/// Where [`Admin::plan_offset_reset`] moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetTo {
    /// The log start.
    Earliest,
    /// The log end (the high watermark): everything now in the log is skipped.
    Latest,
    /// The first record with a timestamp at or after this (ms since the epoch); the
    /// end when there is none.
    Timestamp(i64),
    /// This offset.
    Offset(i64),
    /// The committed offset (the log start without one) moved by this many records,
    /// back when negative.
    ShiftBy(i64),
}

/// One partition of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOffset {
    pub partition: TopicPartition,
    /// What the group has committed now, if anything.
    pub current: Option<i64>,
    /// Where the reset moves it (the next offset a member reads).
    pub target: i64,
}

/// NON_EMPTY_GROUP: the group has members.
const NON_EMPTY_GROUP: i16 = 68;

impl Admin {
    /// Where `group`'s committed offsets of `partitions` would move for `to`, without
    /// changing anything (a dry run); commit the plan with
    /// [`commit_group_offsets`](Self::commit_group_offsets). Fails with
    /// NON_EMPTY_GROUP while the group has members.
    pub async fn plan_offset_reset(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        to: ResetTo,
    ) -> Result<Vec<PlannedOffset>> {
        self.refuse_live_group(group).await?;
        let client = &self.client;
        let committed = patiently(client, group, || fetch_committed(client, group, partitions))
            .await
            .map_err(|e| e.with_group(group))?;
        let wanted: Vec<(TopicPartition, i64)> = partitions
            .iter()
            .map(|tp| (tp.clone(), committed.get(tp).copied().unwrap_or(0)))
            .collect();
        let ends = high_watermarks(client, &wanted).await?;
        let backoff = client.retry_backoff();
        let plans = futures::future::join_all(partitions.iter().map(|tp| {
            let current = committed.get(tp).copied();
            let end = ends.get(tp).copied().flatten();
            async move {
                let lookup =
                    |timestamp| list_offset(client, &tp.topic, tp.partition, timestamp, 0, backoff);
                let start = lookup(EARLIEST).await?.unwrap_or(0);
                let end = end.ok_or_else(|| {
                    Error::new(
                        crate::ErrorKind::Kafka(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION),
                        "no high watermark for the partition",
                    )
                    .with_topic(&*tp.topic)
                    .with_partition(tp.partition)
                })?;
                let wanted = match to {
                    ResetTo::Earliest => start,
                    ResetTo::Latest => end,
                    ResetTo::Timestamp(ts) => lookup(ts).await?.unwrap_or(end),
                    ResetTo::Offset(offset) => offset,
                    ResetTo::ShiftBy(n) => current.unwrap_or(start).saturating_add(n),
                };
                Ok::<_, Error>(PlannedOffset {
                    partition: tp.clone(),
                    current,
                    target: wanted.clamp(start, end.max(start)),
                })
            }
        }))
        .await;
        plans
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.with_group(group))
    }

    /// Commits `offsets` for `group` from outside it (a simple commit: no member, no
    /// generation), e.g. a plan from [`plan_offset_reset`](Self::plan_offset_reset).
    /// Fails with NON_EMPTY_GROUP while the group has members.
    pub async fn commit_group_offsets(&self, group: &str, offsets: &[PlannedOffset]) -> Result<()> {
        self.refuse_live_group(group).await?;
        let pending: Vec<PendingCommit> = offsets
            .iter()
            .map(|p| PendingCommit {
                partition: p.partition.clone(),
                offset: p.target,
                metadata: None,
            })
            .collect();
        let outside = Committer {
            group: group.to_string(),
            member_id: String::new(),
            generation: -1,
            instance_id: None,
        };
        patiently(&self.client, group, || {
            commit_offsets(&self.client, &outside, &pending)
        })
        .await
    }

    async fn refuse_live_group(&self, group: &str) -> Result<()> {
        let description = self.describe_group(group).await?;
        if description.members.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            crate::ErrorKind::Kafka(KafkaCode::from_code(NON_EMPTY_GROUP).expect("not 0")),
            format!(
                "group {group} has {} member(s) ({}): stop them before moving its offsets",
                description.members.len(),
                description.state
            ),
        )
        .with_group(group))
    }
}
