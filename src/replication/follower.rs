//! A follower's decisions (Kafka's `AbstractFetcherThread` truncation and the follower
//! side of Fetch), over a pure view of its leader-epoch history (`&[EpochEntry]`, what
//! `LeaderEpochCache::entries` returns).
//!
//! The runtime, on becoming a follower of `leader` in `leader_epoch`, creates a
//! [`FollowerPartition`] and does what its [`FollowerAction`]s say:
//! - `AskEndOffset`: send OffsetForLeaderEpoch (the leader answers with
//!   `log::epochs::end_offset_for` over its history) and pass the answer to
//!   [`FollowerPartition::on_end_offset`];
//! - `Truncate`: truncate the log and its epoch history (entries starting at or past the
//!   offset go: [`truncate_history`]) to the offset, then call
//!   [`FollowerPartition::after_truncation`] with the new history and log end;
//! - once fetching, fetch from [`FollowerPartition::fetch_offset`], append what comes
//!   back (recording each batch's epoch in the history) and take
//!   [`FollowerPartition::on_fetched`]'s high watermark.
//!
//! Fetching starts from the high watermark, as a pre-KIP-320 follower does: anything
//! above it may have been written by a leader the new one does not follow.

use crate::log::epochs::{EpochEntry, UNDEFINED_EPOCH, UNDEFINED_OFFSET};

/// What the runtime does next for this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerAction {
    /// Send OffsetForLeaderEpoch for `epoch` (with the follower's `current_leader_epoch`).
    AskEndOffset {
        epoch: i32,
        current_leader_epoch: i32,
    },
    /// Truncate the log and the epoch history to `offset` (nothing when the log ends
    /// before it), then call `after_truncation`.
    Truncate { offset: i64 },
    /// Fetch from `offset`.
    Fetch { offset: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the OffsetForLeaderEpoch answer for this epoch.
    AwaitingEndOffset {
        epoch: i32,
    },
    /// Truncating; `done`: fetch next, else ask again.
    Truncating {
        done: bool,
    },
    Fetching {
        offset: i64,
    },
}

/// One partition this broker follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerPartition {
    leader_id: i32,
    leader_epoch: i32,
    /// Where truncation goes when the leader answers UNDEFINED (Kafka's initial fetch
    /// offset: the high watermark at the time this replica became a follower).
    initial_fetch_offset: i64,
    phase: Phase,
}

/// Drops the history entries that start at or past `offset` (Kafka's `truncateFromEnd`).
pub fn truncate_history(history: &mut Vec<EpochEntry>, offset: i64) {
    history.retain(|e| e.start_offset < offset);
}

/// The follower's high watermark: the leader's, but never past its own log.
pub fn follower_high_watermark(leader_high_watermark: i64, log_end_offset: i64) -> i64 {
    leader_high_watermark.min(log_end_offset).max(0)
}

/// The entries of epochs that wrote something: an epoch announced at the log end (a
/// leader that appended nothing) says nothing about the log, and asking about it would
/// truncate nothing, again and again (Kafka drops such entries when it loads the log).
fn written(history: &[EpochEntry], log_end_offset: i64) -> &[EpochEntry] {
    &history[..history.partition_point(|e| e.start_offset < log_end_offset)]
}

/// Kafka's `getOffsetTruncationState`: where to truncate given the leader's
/// OffsetForLeaderEpoch answer `(leader_epoch, leader_end_offset)`, and whether that
/// completes truncation (`false`: the leader answered with an epoch this replica does
/// not have; truncate to the end of the largest epoch below it and ask again).
pub fn truncation_offset(
    history: &[EpochEntry],
    log_end_offset: i64,
    initial_fetch_offset: i64,
    answer: (i32, i64),
) -> (i64, bool) {
    let (leader_epoch, leader_end_offset) = answer;
    let history = written(history, log_end_offset);
    if leader_end_offset == UNDEFINED_OFFSET {
        return (initial_fetch_offset.min(log_end_offset), true);
    }
    if leader_epoch == UNDEFINED_EPOCH {
        return (leader_end_offset.min(log_end_offset), true);
    }
    match crate::log::epochs::end_offset_for(history, leader_epoch, log_end_offset) {
        (UNDEFINED_EPOCH, _) => (leader_end_offset.min(log_end_offset), true),
        (epoch, end) if epoch != leader_epoch => (end.min(log_end_offset), false),
        (_, end) => (end.min(leader_end_offset).min(log_end_offset), true),
    }
}

impl FollowerPartition {
    /// This broker follows `leader_id` in `leader_epoch`; its log ends at
    /// `log_end_offset` with `high_watermark` and epoch history `history`.
    pub fn new(
        leader_id: i32,
        leader_epoch: i32,
        history: &[EpochEntry],
        log_end_offset: i64,
        high_watermark: i64,
    ) -> (FollowerPartition, FollowerAction) {
        let mut follower = FollowerPartition {
            leader_id,
            leader_epoch,
            initial_fetch_offset: high_watermark.min(log_end_offset),
            phase: Phase::Truncating { done: false },
        };
        let action = follower.after_truncation(history, log_end_offset);
        (follower, action)
    }

    pub fn leader_id(&self) -> i32 {
        self.leader_id
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The offset to fetch from, once truncation is done.
    pub fn fetch_offset(&self) -> Option<i64> {
        match self.phase {
            Phase::Fetching { offset } => Some(offset),
            _ => None,
        }
    }

    /// The OffsetForLeaderEpoch request to send (again) while it is awaited.
    pub fn awaited_end_offset(&self) -> Option<FollowerAction> {
        match self.phase {
            Phase::AwaitingEndOffset { epoch } => Some(FollowerAction::AskEndOffset {
                epoch,
                current_leader_epoch: self.leader_epoch,
            }),
            _ => None,
        }
    }

    /// The leader answered the OffsetForLeaderEpoch for `epoch`. Answers to anything
    /// not awaited (a resent request's duplicate) are ignored: None.
    pub fn on_end_offset(
        &mut self,
        epoch: i32,
        answer: (i32, i64),
        history: &[EpochEntry],
        log_end_offset: i64,
    ) -> Option<FollowerAction> {
        if self.phase != (Phase::AwaitingEndOffset { epoch }) {
            return None;
        }
        let (offset, done) =
            truncation_offset(history, log_end_offset, self.initial_fetch_offset, answer);
        self.phase = Phase::Truncating { done };
        Some(FollowerAction::Truncate { offset })
    }

    /// The log was truncated (or nothing needed it): fetch, or ask about the latest
    /// epoch left. A log without epochs truncates to the initial fetch offset.
    pub fn after_truncation(
        &mut self,
        history: &[EpochEntry],
        log_end_offset: i64,
    ) -> FollowerAction {
        let done = matches!(self.phase, Phase::Truncating { done: true });
        if done {
            self.phase = Phase::Fetching {
                offset: log_end_offset,
            };
            return FollowerAction::Fetch {
                offset: log_end_offset,
            };
        }
        match written(history, log_end_offset).last() {
            Some(latest) => {
                self.phase = Phase::AwaitingEndOffset {
                    epoch: latest.epoch,
                };
                FollowerAction::AskEndOffset {
                    epoch: latest.epoch,
                    current_leader_epoch: self.leader_epoch,
                }
            }
            None if log_end_offset > self.initial_fetch_offset => {
                self.phase = Phase::Truncating { done: true };
                FollowerAction::Truncate {
                    offset: self.initial_fetch_offset,
                }
            }
            None => {
                self.phase = Phase::Fetching {
                    offset: log_end_offset,
                };
                FollowerAction::Fetch {
                    offset: log_end_offset,
                }
            }
        }
    }

    /// A fetch answer was appended: the log now ends at `log_end_offset`. Returns the
    /// follower high watermark to publish.
    pub fn on_fetched(&mut self, log_end_offset: i64, leader_high_watermark: i64) -> i64 {
        if let Phase::Fetching { offset } = &mut self.phase {
            *offset = log_end_offset;
        }
        follower_high_watermark(leader_high_watermark, log_end_offset)
    }

    /// The leader said the fetch offset is past its log end: truncate again from the
    /// start (ask about the latest epoch).
    pub fn on_offset_out_of_range(
        &mut self,
        history: &[EpochEntry],
        log_end_offset: i64,
    ) -> FollowerAction {
        self.phase = Phase::Truncating { done: false };
        self.after_truncation(history, log_end_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(i32, i64)]) -> Vec<EpochEntry> {
        entries
            .iter()
            .map(|&(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect()
    }

    #[test]
    fn truncation_follows_kafka() {
        let h = history(&[(1, 0), (3, 10), (4, 25)]);
        // Same epoch on both sides: the smaller end.
        assert_eq!(truncation_offset(&h, 40, 5, (4, 30)), (30, true));
        assert_eq!(truncation_offset(&h, 28, 5, (4, 30)), (28, true));
        // The leader's epoch 3 ended at 20: the follower's epoch-3 records past it go.
        assert_eq!(truncation_offset(&h, 40, 5, (3, 20)), (20, true));
        // The leader answers epoch 2, unknown here: cut to the end of epoch 1 and ask again.
        assert_eq!(truncation_offset(&h, 40, 5, (2, 12)), (10, false));
        // The leader does not know the epoch at all: the initial fetch offset.
        assert_eq!(truncation_offset(&h, 40, 5, (-1, -1)), (5, true));
        // Older than anything here: the leader's end offset.
        assert_eq!(truncation_offset(&h[1..], 40, 5, (1, 7)), (7, true));
    }

    #[test]
    fn a_follower_truncates_then_fetches_from_its_end() {
        let mut h = history(&[(1, 0), (3, 10)]);
        let (mut f, action) = FollowerPartition::new(2, 5, &h, 18, 12);
        assert_eq!(
            action,
            FollowerAction::AskEndOffset {
                epoch: 3,
                current_leader_epoch: 5
            }
        );
        assert_eq!(f.on_end_offset(1, (2, 9), &h, 18), None, "not awaited");
        // Asked about epoch 3, the leader answers its epoch 2 (unknown here) ending at 14.
        assert_eq!(
            f.on_end_offset(3, (2, 14), &h, 18),
            Some(FollowerAction::Truncate { offset: 10 })
        );
        truncate_history(&mut h, 10);
        assert_eq!(
            f.after_truncation(&h, 10),
            FollowerAction::AskEndOffset {
                epoch: 1,
                current_leader_epoch: 5
            }
        );
        assert_eq!(
            f.on_end_offset(1, (1, 8), &h, 10),
            Some(FollowerAction::Truncate { offset: 8 })
        );
        assert_eq!(
            f.after_truncation(&h, 8),
            FollowerAction::Fetch { offset: 8 }
        );
        assert_eq!(f.fetch_offset(), Some(8));
        assert_eq!(f.on_fetched(20, 15), 15);
        assert_eq!(f.on_fetched(22, 30), 22);
        assert_eq!(f.fetch_offset(), Some(22));
    }

    #[test]
    fn a_log_without_epochs_truncates_to_the_high_watermark() {
        let (mut f, action) = FollowerPartition::new(2, 5, &[], 9, 4);
        assert_eq!(action, FollowerAction::Truncate { offset: 4 });
        assert_eq!(
            f.after_truncation(&[], 4),
            FollowerAction::Fetch { offset: 4 }
        );
        let (_, action) = FollowerPartition::new(2, 5, &[], 0, 0);
        assert_eq!(action, FollowerAction::Fetch { offset: 0 });
    }

    #[test]
    fn an_epoch_that_wrote_nothing_is_not_asked_about() {
        // This replica led epoch 2 without appending, then became a follower.
        let h = history(&[(0, 0), (2, 174)]);
        let (mut f, action) = FollowerPartition::new(3, 4, &h, 174, 100);
        assert_eq!(
            action,
            FollowerAction::AskEndOffset {
                epoch: 0,
                current_leader_epoch: 4
            }
        );
        assert_eq!(
            f.on_end_offset(0, (0, 174), &h, 174),
            Some(FollowerAction::Truncate { offset: 174 })
        );
        assert_eq!(
            f.after_truncation(&h, 174),
            FollowerAction::Fetch { offset: 174 }
        );
    }
}
