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

use std::collections::HashMap;

use super::groups::patiently;
use super::Admin;
use crate::consumer::StartOffset;
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
#[non_exhaustive]
pub struct PlannedOffset {
    /// The group's partition.
    pub partition: TopicPartition,
    /// What the group has committed now, if anything.
    pub current: Option<i64>,
    /// Where the reset moves it (the next offset a member reads).
    pub target: i64,
}

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
        let targets: HashMap<TopicPartition, i64> = match to {
            // Inside the log by construction.
            ResetTo::Earliest => self.list_offsets(partitions, StartOffset::Earliest).await?,
            ResetTo::Latest => self.list_offsets(partitions, StartOffset::Latest).await?,
            ResetTo::Timestamp(ts) => {
                self.list_offsets(partitions, StartOffset::Timestamp(ts))
                    .await?
            }
            // Kept inside the log.
            ResetTo::Offset(_) | ResetTo::ShiftBy(_) => {
                let (starts, ends) = tokio::try_join!(
                    self.list_offsets(partitions, StartOffset::Earliest),
                    self.end_offsets(partitions),
                )?;
                partitions
                    .iter()
                    .map(|tp| {
                        let (start, end) = (starts[tp], ends[tp]);
                        let from = committed.get(tp).copied().unwrap_or(start);
                        let wanted = match to {
                            ResetTo::ShiftBy(n) => from.saturating_add(n),
                            ResetTo::Offset(offset) => offset,
                            _ => unreachable!("the other targets are matched above"),
                        };
                        (tp.clone(), wanted.clamp(start, end.max(start)))
                    })
                    .collect()
            }
        };
        Ok(partitions
            .iter()
            .map(|tp| PlannedOffset {
                partition: tp.clone(),
                current: committed.get(tp).copied(),
                target: targets[tp],
            })
            .collect())
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
                metadata_version: 0,
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
            crate::ErrorKind::Kafka(KafkaCode::NON_EMPTY_GROUP),
            format!(
                "group {group} has {} member(s) ({}): stop them before moving its offsets",
                description.members.len(),
                description.state
            ),
        )
        .with_group(group))
    }
}
