//! What this node is for one partition — leader or follower, in which leader epoch, with
//! which replicas and in-sync replicas — as the latest metadata image says. Leading, it
//! holds the pure [`PartitionLeader`] (followers' positions, the ISR it believes in, the
//! high watermark, ISR changes to ask the controller for) and feeds it the events of the
//! running partition.
//!
//! Memory only: [`ReplicaState`] sits behind its own small mutex, never held across IO.

use std::collections::BTreeSet;

use crate::metadata::partition_change::AlterPartitionRequest;
use crate::metadata::PartitionRecord;
use crate::replication::leader::{
    AckDecision, AlterPartitionAccepted, FetchError, LeaderConfig, PartitionLeader,
};

/// Milliseconds on a monotonic clock (from the first call): the replica lag rules compare
/// times, which a wall-clock step must not break.
pub fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis()
        .min(i64::MAX as u128) as i64
}

/// What a new assignment asks of this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Same role and leader epoch (maybe another ISR or partition epoch).
    Unchanged,
    /// Lead from this (new) epoch: the epoch starts at the log end.
    BecomeLeader { leader_epoch: i32 },
    /// Follow `leader` (-1: none yet) from this epoch: stop taking produce requests.
    BecomeFollower { leader: i32, leader_epoch: i32 },
}

/// A leader-side decision the partition acts on: a high watermark to publish and/or an
/// ISR change to send to the controller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderUpdate {
    pub high_watermark: Option<i64>,
    pub alter_partition: Option<AlterPartitionRequest>,
}

/// Role and replica bookkeeping of one hosted partition.
#[derive(Debug)]
pub struct ReplicaState {
    node_id: i32,
    record: PartitionRecord,
    config: LeaderConfig,
    /// Present while this node leads.
    leader: Option<PartitionLeader>,
}

impl ReplicaState {
    /// The state for `record`; when it names this node leader, leading from
    /// `log_end_offset` with the high watermark at `high_watermark`.
    pub fn new(
        node_id: i32,
        record: PartitionRecord,
        config: LeaderConfig,
        log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> ReplicaState {
        let leader = PartitionLeader::new(
            node_id,
            &record,
            log_end_offset,
            high_watermark,
            config,
            now_ms,
        );
        ReplicaState {
            node_id,
            record,
            config,
            leader,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.is_some()
    }

    pub fn leader(&self) -> i32 {
        self.record.leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader
            .as_ref()
            .map_or(self.record.leader_epoch, PartitionLeader::leader_epoch)
    }

    /// The ISR as this node knows it (the leader's may be newer than the image).
    pub fn isr_len(&self) -> usize {
        self.leader
            .as_ref()
            .map_or(self.record.isr.len(), |leader| leader.isr().len())
    }

    /// Takes the image's version of the partition (and the topic's current settings, and
    /// the brokers that are fenced or gone) and says what changed for this replica. A stale version (older leader epoch) is ignored.
    pub fn apply(
        &mut self,
        record: PartitionRecord,
        config: LeaderConfig,
        ineligible: &BTreeSet<i32>,
        log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> (Transition, Option<i64>) {
        if record.leader_epoch < self.record.leader_epoch {
            return (Transition::Unchanged, None);
        }
        let new_epoch = record.leader_epoch != self.record.leader_epoch;
        let config_changed = config != self.config;
        self.config = config;
        let mut advanced = None;
        let transition = match self.leader.as_mut() {
            Some(leader) => match leader.on_metadata(&record, now_ms) {
                Ok(moved) => {
                    advanced = moved;
                    if config_changed {
                        advanced = leader.set_config(config, now_ms).or(advanced);
                    }
                    if new_epoch {
                        Transition::BecomeLeader {
                            leader_epoch: record.leader_epoch,
                        }
                    } else {
                        Transition::Unchanged
                    }
                }
                Err(_) => {
                    self.leader = None;
                    Transition::BecomeFollower {
                        leader: record.leader,
                        leader_epoch: record.leader_epoch,
                    }
                }
            },
            None => {
                self.leader = PartitionLeader::new(
                    self.node_id,
                    &record,
                    log_end_offset,
                    high_watermark,
                    config,
                    now_ms,
                );
                if self.leader.is_some() {
                    Transition::BecomeLeader {
                        leader_epoch: record.leader_epoch,
                    }
                } else if new_epoch || record.leader != self.record.leader {
                    Transition::BecomeFollower {
                        leader: record.leader,
                        leader_epoch: record.leader_epoch,
                    }
                } else {
                    Transition::Unchanged
                }
            }
        };
        // Kafka's ISR eligibility: a fenced (or unregistered) broker's stale position must
        // not hold the high watermark back while it waits to be caught up.
        if let Some(leader) = self.leader.as_mut() {
            for &replica in record.replicas.iter().filter(|&&r| r != self.node_id) {
                let moved =
                    leader.set_broker_eligible(replica, !ineligible.contains(&replica), now_ms);
                advanced = moved.or(advanced);
            }
        }
        self.record = record;
        (transition, advanced)
    }

    /// Leading: a produce wrote up to `log_end_offset`.
    pub fn on_local_append(&mut self, log_end_offset: i64, now_ms: i64) -> Option<i64> {
        self.leader
            .as_mut()
            .and_then(|leader| leader.on_local_append(log_end_offset, now_ms))
    }

    /// Leading: follower `replica_id` fetched from `fetch_offset` (so it has everything
    /// below) in `current_leader_epoch`. Not leading, or a fetch the leader does not
    /// count (a stale epoch, an unknown replica): no update.
    pub fn on_follower_fetch(
        &mut self,
        replica_id: i32,
        current_leader_epoch: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<LeaderUpdate, FetchError> {
        let Some(leader) = self.leader.as_mut() else {
            return Ok(LeaderUpdate::default());
        };
        // Followers of Fetch < v9 send no epoch: take them as current.
        let epoch = if current_leader_epoch < 0 {
            leader.leader_epoch()
        } else {
            current_leader_epoch
        };
        let outcome = leader.on_follower_fetch(replica_id, epoch, fetch_offset, now_ms)?;
        Ok(LeaderUpdate {
            high_watermark: outcome.high_watermark,
            alter_partition: outcome.alter_partition,
        })
    }

    /// Leading: the ISR shrink to ask for now (followers behind for longer than
    /// `replica.lag.time.max.ms`), or the pending request again when `resend`.
    pub fn isr_change_due(&mut self, now_ms: i64, resend: bool) -> Option<AlterPartitionRequest> {
        let leader = self.leader.as_mut()?;
        if let Some(pending) = leader.pending_alter_partition() {
            return resend.then(|| pending.clone());
        }
        leader.maybe_shrink_isr(now_ms)
    }

    /// Leading: the controller's answer to `sent`. `Err` carries a request to send again.
    pub fn on_alter_partition_result(
        &mut self,
        sent: &AlterPartitionRequest,
        result: Result<AlterPartitionAccepted, i16>,
        now_ms: i64,
    ) -> Result<Option<i64>, AlterPartitionRequest> {
        match self.leader.as_mut() {
            Some(leader) => leader.on_alter_partition_result(sent, result, now_ms),
            None => Ok(None),
        }
    }

    /// acks=all before the append: is the ISR large enough (`min.insync.replicas`)?
    pub fn acks_all_allowed(&self) -> bool {
        self.leader
            .as_ref()
            .is_some_and(|leader| leader.check_acks_all_append().is_ok())
    }

    /// acks=all after the append: may the batch ending before `next_offset` be answered?
    /// None when not leading.
    pub fn can_acknowledge(&self, next_offset: i64) -> Option<AckDecision> {
        self.leader
            .as_ref()
            .map(|leader| leader.can_acknowledge(next_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: LeaderConfig = LeaderConfig {
        replica_lag_time_max_ms: 1_000,
        min_insync_replicas: 1,
    };

    fn record(leader: i32, leader_epoch: i32, replicas: &[i32], isr: &[i32]) -> PartitionRecord {
        PartitionRecord {
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch,
            partition_epoch: leader_epoch,
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    #[test]
    fn transitions_follow_leader_and_epoch() {
        let mut state = ReplicaState::new(1, record(1, 0, &[1, 2], &[1, 2]), CONFIG, 0, 0, 0);
        assert!(state.is_leader());
        let mut shrunk = record(1, 0, &[1, 2], &[1]);
        shrunk.partition_epoch = 1;
        assert_eq!(
            state.apply(shrunk, CONFIG, &BTreeSet::new(), 0, 0, 0).0,
            Transition::Unchanged
        );
        assert_eq!(state.isr_len(), 1);
        assert_eq!(
            state
                .apply(
                    record(2, 1, &[1, 2], &[2]),
                    CONFIG,
                    &BTreeSet::new(),
                    0,
                    0,
                    0
                )
                .0,
            Transition::BecomeFollower {
                leader: 2,
                leader_epoch: 1
            }
        );
        assert!(!state.is_leader());
        // Stale images change nothing.
        assert_eq!(
            state
                .apply(
                    record(1, 0, &[1, 2], &[1]),
                    CONFIG,
                    &BTreeSet::new(),
                    0,
                    0,
                    0
                )
                .0,
            Transition::Unchanged
        );
        assert_eq!(state.leader(), 2);
        assert_eq!(
            state
                .apply(
                    record(1, 2, &[1, 2], &[1, 2]),
                    CONFIG,
                    &BTreeSet::new(),
                    0,
                    0,
                    0
                )
                .0,
            Transition::BecomeLeader { leader_epoch: 2 }
        );
    }

    #[test]
    fn a_leader_that_loses_to_the_preferred_replica_follows_in_the_new_epoch() {
        // 2 took over while 1 was away; 1 is back in sync and a preferred election (or
        // the leader balancer) names it leader in epoch 5, the ISR unchanged.
        let mut state = ReplicaState::new(2, record(2, 4, &[1, 2, 3], &[1, 2, 3]), CONFIG, 9, 9, 0);
        assert!(state.is_leader());
        assert!(state.acks_all_allowed());
        let (transition, _) = state.apply(
            record(1, 5, &[1, 2, 3], &[1, 2, 3]),
            CONFIG,
            &BTreeSet::new(),
            9,
            9,
            0,
        );
        assert_eq!(
            transition,
            Transition::BecomeFollower {
                leader: 1,
                leader_epoch: 5
            }
        );
        // No longer answers acks=all produces nor counts follower fetches.
        assert!(!state.is_leader());
        assert!(!state.acks_all_allowed());
        assert_eq!(state.can_acknowledge(9), None);
        assert_eq!((state.leader(), state.leader_epoch()), (1, 5));
    }

    #[test]
    fn the_high_watermark_waits_for_the_isr_and_acks_follow_it() {
        let mut state = ReplicaState::new(1, record(1, 3, &[1, 2, 3], &[1, 2]), CONFIG, 0, 0, 0);
        assert!(state.acks_all_allowed());
        // Replica 2 (in the ISR) has not fetched past 0: nothing new is committed.
        assert_eq!(state.on_local_append(10, 1), None);
        assert_eq!(state.can_acknowledge(10), Some(AckDecision::Wait));
        let update = state.on_follower_fetch(2, 3, 7, 2).unwrap();
        assert_eq!(update.high_watermark, Some(7));
        let update = state.on_follower_fetch(2, 3, 10, 3).unwrap();
        assert_eq!(update.high_watermark, Some(10));
        assert_eq!(state.can_acknowledge(10), Some(AckDecision::Acknowledged));
        // A stale epoch is not counted.
        assert!(state.on_follower_fetch(2, 2, 10, 4).is_err());
        // Replica 3 catches up: the leader asks to add it to the ISR.
        let update = state.on_follower_fetch(3, 3, 10, 5).unwrap();
        assert_eq!(
            update.alter_partition.map(|request| request.new_isr),
            Some(vec![1, 2, 3])
        );
        let follower = ReplicaState::new(2, record(1, 0, &[1, 2], &[1, 2]), CONFIG, 5, 5, 0);
        assert_eq!(follower.can_acknowledge(5), None);
        assert!(!follower.acks_all_allowed());
    }

    #[test]
    fn a_silent_follower_is_dropped_from_the_isr_after_the_lag_time() {
        let mut state = ReplicaState::new(1, record(1, 0, &[1, 2], &[1, 2]), CONFIG, 0, 0, 0);
        state.on_local_append(5, 10);
        assert_eq!(state.isr_change_due(500, false), None);
        let shrink = state.isr_change_due(2_000, false).expect("a shrink");
        assert_eq!(shrink.new_isr, vec![1]);
        // One request in flight; resent only when asked.
        assert_eq!(state.isr_change_due(2_100, false), None);
        assert_eq!(state.isr_change_due(2_100, true), Some(shrink));
    }
}
