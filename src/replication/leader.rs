//! A partition's state on its leader: Kafka's `Partition` and `Replica` as the leader
//! keeps them, without IO.
//!
//! The runtime owns one [`PartitionLeader`] per led partition and feeds it:
//! - [`PartitionLeader::new`] when the metadata names this broker leader (a new leader
//!   epoch starts at the local log end; the runtime also records that epoch's start in
//!   the leader-epoch history, as Kafka's `maybeAssignEpochStartOffset`);
//! - [`PartitionLeader::on_metadata`] for every later version of the partition (an ISR
//!   the controller changed, a new epoch; `Err(NotLeader)` means: become a follower);
//! - [`PartitionLeader::on_local_append`] after a produce is written;
//! - [`PartitionLeader::on_follower_fetch`] for each follower Fetch (its fetch offset is
//!   its log end offset);
//! - [`PartitionLeader::maybe_shrink_isr`] periodically (Kafka: every
//!   `replica.lag.time.max.ms` / 2);
//! - [`PartitionLeader::on_alter_partition_result`] with the controller's answer.
//!
//! Decisions come back as values: a new high watermark to publish (then complete the
//! waiting acks=all produces with [`PartitionLeader::can_acknowledge`]) and
//! [`AlterPartitionRequest`]s to send (one in flight at a time; the runtime resends
//! [`PartitionLeader::pending_alter_partition`] when the controller does not answer).
//!
//! The high watermark is the smallest log end offset over the maximal ISR (the committed
//! ISR plus a replica whose addition is in flight, KIP-497) and the caught-up eligible
//! followers, capped by the local log end; it only moves forward, and not at all while
//! the ISR is below `min.insync.replicas` (KIP-966).

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::partition_change::{codes, AlterPartitionRequest};
use crate::metadata::PartitionRecord;

/// A follower log end offset the leader has not heard yet.
pub const UNKNOWN_OFFSET: i64 = -1;
/// "Never" as a time: Kafka uses 0, which only works with wall-clock times.
const NEVER_MS: i64 = i64::MIN;
/// Kafka's OPERATION_NOT_ATTEMPTED (AlterPartition v1 for an ineligible replica).
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const UNKNOWN_TOPIC_ID: i16 = 100;
const NEW_LEADER_ELECTED: i16 = 109;
/// Fetch answers for a follower whose leader epoch does not match.
pub const FENCED_LEADER_EPOCH: i16 = codes::FENCED_LEADER_EPOCH;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// The topic configs the leader decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `replica.lag.time.max.ms`
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas`
    pub min_insync_replicas: usize,
}

/// What the leader knows of one follower (Kafka's `ReplicaState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    pub log_end_offset: i64,
    /// The leader's log end when this follower last fetched.
    pub last_fetch_leader_log_end_offset: i64,
    pub last_fetch_time_ms: i64,
    pub last_caught_up_time_ms: i64,
}

impl FollowerState {
    /// Kafka's `isCaughtUp`: at the leader's end, or caught up within the lag bound.
    fn is_caught_up(&self, leader_log_end_offset: i64, now_ms: i64, max_lag_ms: i64) -> bool {
        self.log_end_offset == leader_log_end_offset
            || now_ms.saturating_sub(self.last_caught_up_time_ms) <= max_lag_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum IsrState {
    Committed,
    PendingExpand {
        replica: i32,
        sent: AlterPartitionRequest,
    },
    PendingShrink {
        sent: AlterPartitionRequest,
    },
}

/// The controller's answer to an AlterPartition (the partition after the change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionAccepted {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// acks=all: whether a produce whose records end at `required_offset` can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckDecision {
    /// The high watermark passed it with enough replicas in sync.
    Acknowledged,
    /// Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND: committed, but the ISR shrank below
    /// `min.insync.replicas` meanwhile.
    NotEnoughReplicasAfterAppend,
    /// Not committed yet.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLeader;

/// Kafka's NOT_ENOUGH_REPLICAS: acks=all refused before the append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotEnoughReplicas;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The fetch names an older leader epoch (FENCED_LEADER_EPOCH) or a newer one this
    /// leader does not know yet (UNKNOWN_LEADER_EPOCH): the Kafka error code.
    LeaderEpoch(i16),
    /// Not a replica of the partition (NOT_LEADER_OR_FOLLOWER).
    UnknownReplica,
    /// Past the leader's log end (OFFSET_OUT_OF_RANGE).
    OffsetOutOfRange,
}

/// What a follower fetch changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    pub high_watermark: Option<i64>,
    pub alter_partition: Option<AlterPartitionRequest>,
}

/// One partition led by this broker.
#[derive(Debug, Clone)]
pub struct PartitionLeader {
    local_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    /// The committed ISR (the last one the controller accepted or published).
    isr: Vec<i32>,
    state: IsrState,
    leader_epoch_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    followers: BTreeMap<i32, FollowerState>,
    /// Followers that are fenced or shutting down in the local metadata view.
    ineligible: BTreeSet<i32>,
    config: LeaderConfig,
}

impl PartitionLeader {
    /// This broker leads `partition` (None if the record names another leader). The
    /// epoch starts at `log_end_offset`; `high_watermark` is the local one (as a
    /// follower it may lag the previous leader's; it catches up as followers fetch).
    /// The caller publishes [`Self::high_watermark`], which may already be past it.
    pub fn new(
        local_id: i32,
        partition: &PartitionRecord,
        log_end_offset: i64,
        high_watermark: i64,
        config: LeaderConfig,
        now_ms: i64,
    ) -> Option<PartitionLeader> {
        if partition.leader != local_id {
            return None;
        }
        let mut leader = PartitionLeader {
            local_id,
            leader_epoch: partition.leader_epoch,
            partition_epoch: partition.partition_epoch,
            replicas: partition.replicas.clone(),
            isr: partition.isr.clone(),
            state: IsrState::Committed,
            leader_epoch_start_offset: log_end_offset,
            log_end_offset,
            high_watermark: high_watermark.min(log_end_offset),
            followers: BTreeMap::new(),
            ineligible: BTreeSet::new(),
            config,
        };
        leader.reset_followers(now_ms, true);
        // A lone ISR commits at once (Kafka's makeLeader ends with maybeIncrementLeaderHW).
        leader.maybe_advance_high_watermark(now_ms);
        Some(leader)
    }

    /// Kafka's `resetReplicaState`: an ISR member counts as caught up now, any other as
    /// never (so it does not hold the high watermark back until it fetches).
    fn reset_followers(&mut self, now_ms: i64, new_leader: bool) {
        let leo = self.log_end_offset;
        let previous = std::mem::take(&mut self.followers);
        for &id in self.replicas.iter().filter(|&&r| r != self.local_id) {
            let in_sync = self.isr.contains(&id);
            let caught_up = if in_sync { now_ms } else { NEVER_MS };
            let state = match previous.get(&id) {
                Some(old) if !new_leader => FollowerState {
                    log_end_offset: old.log_end_offset,
                    last_fetch_leader_log_end_offset: leo,
                    last_fetch_time_ms: caught_up,
                    last_caught_up_time_ms: caught_up,
                },
                _ => FollowerState {
                    log_end_offset: UNKNOWN_OFFSET,
                    last_fetch_leader_log_end_offset: UNKNOWN_OFFSET,
                    last_fetch_time_ms: NEVER_MS,
                    last_caught_up_time_ms: caught_up,
                },
            };
            self.followers.insert(id, state);
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }
    pub fn leader_epoch_start_offset(&self) -> i64 {
        self.leader_epoch_start_offset
    }
    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }
    pub fn follower(&self, id: i32) -> Option<&FollowerState> {
        self.followers.get(&id)
    }

    /// The committed ISR plus a replica being added (KIP-497's maximal ISR).
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let IsrState::PendingExpand { replica, .. } = &self.state {
            isr.push(*replica);
        }
        isr
    }

    /// The AlterPartition in flight, to resend when the controller did not answer.
    pub fn pending_alter_partition(&self) -> Option<&AlterPartitionRequest> {
        match &self.state {
            IsrState::Committed => None,
            IsrState::PendingExpand { sent, .. } | IsrState::PendingShrink { sent } => Some(sent),
        }
    }

    /// `min.insync.replicas` capped by the replication factor (Kafka's `effectiveMinIsr`).
    fn effective_min_isr(&self) -> usize {
        self.config
            .min_insync_replicas
            .min(self.replicas.len())
            .max(1)
    }

    pub fn set_config(&mut self, config: LeaderConfig, now_ms: i64) -> Option<i64> {
        self.config = config;
        self.maybe_advance_high_watermark(now_ms)
    }

    /// A broker's eligibility in the local metadata view (unfenced, not shutting down):
    /// only eligible followers join the ISR or hold the high watermark while catching up.
    pub fn set_broker_eligible(&mut self, broker: i32, eligible: bool, now_ms: i64) -> Option<i64> {
        if eligible {
            self.ineligible.remove(&broker);
        } else {
            self.ineligible.insert(broker);
        }
        self.maybe_advance_high_watermark(now_ms)
    }

    /// A newer version of the partition from the metadata. A new leader epoch for this
    /// broker restarts the epoch at the local log end; the same epoch with a newer
    /// partition epoch takes the controller's ISR (and drops a pending change); older
    /// versions are ignored. Returns a high watermark that moved.
    pub fn on_metadata(
        &mut self,
        partition: &PartitionRecord,
        now_ms: i64,
    ) -> Result<Option<i64>, NotLeader> {
        if partition.leader_epoch < self.leader_epoch
            || (partition.leader_epoch == self.leader_epoch
                && partition.partition_epoch <= self.partition_epoch)
        {
            return Ok(None);
        }
        if partition.leader != self.local_id {
            return Err(NotLeader);
        }
        let new_epoch = partition.leader_epoch > self.leader_epoch;
        self.leader_epoch = partition.leader_epoch;
        self.partition_epoch = partition.partition_epoch;
        self.replicas = partition.replicas.clone();
        self.isr = partition.isr.clone();
        self.state = IsrState::Committed;
        if new_epoch {
            self.leader_epoch_start_offset = self.log_end_offset;
            self.reset_followers(now_ms, false);
        } else {
            let followers = std::mem::take(&mut self.followers);
            self.followers = self
                .replicas
                .iter()
                .filter(|&&r| r != self.local_id)
                .map(|&id| {
                    let state = followers.get(&id).copied().unwrap_or(FollowerState {
                        log_end_offset: UNKNOWN_OFFSET,
                        last_fetch_leader_log_end_offset: UNKNOWN_OFFSET,
                        last_fetch_time_ms: NEVER_MS,
                        last_caught_up_time_ms: NEVER_MS,
                    });
                    (id, state)
                })
                .collect();
        }
        Ok(self.maybe_advance_high_watermark(now_ms))
    }

    /// acks=all before the append (Kafka's `appendRecordsToLeader`): refused while the
    /// committed ISR is smaller than `min.insync.replicas`.
    pub fn check_acks_all_append(&self) -> Result<(), NotEnoughReplicas> {
        if self.isr.len() < self.effective_min_isr() {
            Err(NotEnoughReplicas)
        } else {
            Ok(())
        }
    }

    /// Records were appended locally; the log now ends at `log_end_offset`.
    pub fn on_local_append(&mut self, log_end_offset: i64, now_ms: i64) -> Option<i64> {
        self.log_end_offset = self.log_end_offset.max(log_end_offset);
        self.maybe_advance_high_watermark(now_ms)
    }

    /// A follower fetched at `fetch_offset` in `current_leader_epoch` (Kafka's
    /// `updateFollowerFetchState`, `maybeExpandIsr`, `maybeIncrementLeaderHW`).
    pub fn on_follower_fetch(
        &mut self,
        replica: i32,
        current_leader_epoch: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<FetchOutcome, FetchError> {
        if current_leader_epoch < self.leader_epoch {
            return Err(FetchError::LeaderEpoch(FENCED_LEADER_EPOCH));
        }
        if current_leader_epoch > self.leader_epoch {
            return Err(FetchError::LeaderEpoch(UNKNOWN_LEADER_EPOCH));
        }
        if fetch_offset > self.log_end_offset || fetch_offset < 0 {
            return Err(FetchError::OffsetOutOfRange);
        }
        let leo = self.log_end_offset;
        let Some(follower) = self.followers.get_mut(&replica) else {
            return Err(FetchError::UnknownReplica);
        };
        let previous_leo = follower.log_end_offset;
        // Kafka's lastCaughtUpTimeMs: now if it reached the leader's end; else the time
        // of its previous fetch if it reached the leader's end as of that fetch.
        if fetch_offset >= leo {
            follower.last_caught_up_time_ms = follower.last_caught_up_time_ms.max(now_ms);
        } else if fetch_offset >= follower.last_fetch_leader_log_end_offset {
            follower.last_caught_up_time_ms = follower
                .last_caught_up_time_ms
                .max(follower.last_fetch_time_ms);
        }
        follower.log_end_offset = fetch_offset;
        follower.last_fetch_leader_log_end_offset =
            follower.last_fetch_leader_log_end_offset.max(leo);
        follower.last_fetch_time_ms = now_ms;

        let mut outcome = FetchOutcome::default();
        if self.state == IsrState::Committed
            && !self.isr.contains(&replica)
            && !self.ineligible.contains(&replica)
            && fetch_offset >= self.high_watermark
            && fetch_offset >= self.leader_epoch_start_offset
        {
            let mut new_isr = self.isr.clone();
            new_isr.push(replica);
            let sent = self.request(new_isr);
            self.state = IsrState::PendingExpand {
                replica,
                sent: sent.clone(),
            };
            outcome.alter_partition = Some(sent);
        }
        if previous_leo != fetch_offset || outcome.alter_partition.is_some() {
            outcome.high_watermark = self.maybe_advance_high_watermark(now_ms);
        }
        Ok(outcome)
    }

    fn request(&self, new_isr: Vec<i32>) -> AlterPartitionRequest {
        AlterPartitionRequest {
            leader_id: self.local_id,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        }
    }

    /// ISR members (other than this leader) not caught up within
    /// `replica.lag.time.max.ms` (Kafka's `getOutOfSyncReplicas`); none while a change is
    /// in flight.
    pub fn out_of_sync_replicas(&self, now_ms: i64) -> Vec<i32> {
        if self.state != IsrState::Committed {
            return Vec::new();
        }
        self.isr
            .iter()
            .copied()
            .filter(|&r| r != self.local_id)
            .filter(|r| {
                self.followers.get(r).is_none_or(|f| {
                    !f.is_caught_up(
                        self.log_end_offset,
                        now_ms,
                        self.config.replica_lag_time_max_ms,
                    )
                })
            })
            .collect()
    }

    /// Kafka's `maybeShrinkIsr`: the AlterPartition that drops the out-of-sync replicas.
    pub fn maybe_shrink_isr(&mut self, now_ms: i64) -> Option<AlterPartitionRequest> {
        let out = self.out_of_sync_replicas(now_ms);
        if out.is_empty() {
            return None;
        }
        let new_isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| !out.contains(r))
            .collect();
        let sent = self.request(new_isr);
        self.state = IsrState::PendingShrink { sent: sent.clone() };
        Some(sent)
    }

    /// The controller answered `sent`. Accepted: the ISR and partition epoch commit.
    /// INELIGIBLE_REPLICA / OPERATION_NOT_ATTEMPTED: back to the committed ISR. Fenced
    /// epochs and the like: stay pending until the metadata brings the truth (Kafka's
    /// `handleAlterPartitionError`). Anything else: `Err(request)` to send again.
    pub fn on_alter_partition_result(
        &mut self,
        sent: &AlterPartitionRequest,
        result: Result<AlterPartitionAccepted, i16>,
        now_ms: i64,
    ) -> Result<Option<i64>, AlterPartitionRequest> {
        if self.pending_alter_partition() != Some(sent) {
            return Ok(None);
        }
        match result {
            Ok(accepted) => {
                if accepted.leader_epoch != self.leader_epoch
                    || accepted.partition_epoch < self.partition_epoch
                {
                    return Ok(None);
                }
                self.isr = accepted.isr;
                self.partition_epoch = accepted.partition_epoch;
                self.state = IsrState::Committed;
                Ok(self.maybe_advance_high_watermark(now_ms))
            }
            Err(codes::INELIGIBLE_REPLICA) | Err(OPERATION_NOT_ATTEMPTED) => {
                self.state = IsrState::Committed;
                Ok(self.maybe_advance_high_watermark(now_ms))
            }
            Err(
                codes::UNKNOWN_TOPIC_OR_PARTITION
                | UNKNOWN_TOPIC_ID
                | codes::FENCED_LEADER_EPOCH
                | codes::INVALID_UPDATE_VERSION
                | codes::INVALID_REQUEST
                | NEW_LEADER_ELECTED,
            ) => Ok(None),
            Err(_) => Err(sent.clone()),
        }
    }

    /// acks=all after the append (Kafka's `checkEnoughReplicasReachOffset`): the produce
    /// whose records end at `required_offset` (its last offset + 1).
    pub fn can_acknowledge(&self, required_offset: i64) -> AckDecision {
        if self.high_watermark < required_offset {
            AckDecision::Wait
        } else if self.maximal_isr().len() < self.effective_min_isr() {
            AckDecision::NotEnoughReplicasAfterAppend
        } else {
            AckDecision::Acknowledged
        }
    }

    fn maybe_advance_high_watermark(&mut self, now_ms: i64) -> Option<i64> {
        if self.isr.len() < self.effective_min_isr() {
            return None;
        }
        let maximal = self.maximal_isr();
        let leo = self.log_end_offset;
        let mut candidate = leo;
        for (id, f) in &self.followers {
            let holds = maximal.contains(id)
                || (f.is_caught_up(leo, now_ms, self.config.replica_lag_time_max_ms)
                    && !self.ineligible.contains(id));
            if holds && f.log_end_offset < candidate {
                candidate = f.log_end_offset;
            }
        }
        (candidate > self.high_watermark).then(|| {
            self.high_watermark = candidate;
            candidate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: LeaderConfig = LeaderConfig {
        replica_lag_time_max_ms: 30_000,
        min_insync_replicas: 2,
    };

    fn record(isr: &[i32], leader_epoch: i32, partition_epoch: i32) -> PartitionRecord {
        PartitionRecord {
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader: 1,
            leader_epoch,
            partition_epoch,
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn leader(isr: &[i32]) -> PartitionLeader {
        PartitionLeader::new(1, &record(isr, 3, 7), 10, 10, CONFIG, 0).unwrap()
    }

    #[test]
    fn high_watermark_is_the_smallest_isr_log_end_and_never_moves_back() {
        let mut l = leader(&[1, 2, 3]);
        assert_eq!(l.on_local_append(20, 1), None, "followers not heard yet");
        let fetch = |l: &mut PartitionLeader, r, o, t| l.on_follower_fetch(r, 3, o, t).unwrap();
        assert_eq!(fetch(&mut l, 2, 15, 2).high_watermark, None);
        assert_eq!(fetch(&mut l, 3, 12, 3).high_watermark, Some(12));
        assert_eq!(fetch(&mut l, 3, 20, 4).high_watermark, Some(15));
        assert_eq!(fetch(&mut l, 2, 20, 5).high_watermark, Some(20));
        // A follower that reports less (it truncated) cannot move the high watermark back.
        assert_eq!(fetch(&mut l, 2, 18, 6).high_watermark, None);
        assert_eq!(l.high_watermark(), 20);
        assert_eq!(
            l.on_follower_fetch(2, 2, 20, 7),
            Err(FetchError::LeaderEpoch(FENCED_LEADER_EPOCH))
        );
        assert_eq!(
            l.on_follower_fetch(2, 3, 21, 7),
            Err(FetchError::OffsetOutOfRange)
        );
        assert_eq!(
            l.on_follower_fetch(9, 3, 1, 7),
            Err(FetchError::UnknownReplica)
        );
    }

    #[test]
    fn a_caught_up_follower_joins_through_a_pending_expand_that_holds_the_high_watermark() {
        let mut l = leader(&[1, 2]);
        l.on_follower_fetch(2, 3, 10, 1).unwrap();
        l.on_local_append(30, 2);
        // 3 is behind the high watermark: no expansion.
        let out = l.on_follower_fetch(3, 3, 5, 3).unwrap();
        assert_eq!(out.alter_partition, None);
        let out = l.on_follower_fetch(3, 3, 10, 4).unwrap();
        let sent = out.alter_partition.unwrap();
        assert_eq!(sent.new_isr, vec![1, 2, 3]);
        assert_eq!((sent.leader_epoch, sent.partition_epoch), (3, 7));
        assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
        // 2 reaches 30 but 3 (maximal ISR) holds the high watermark at 10.
        assert_eq!(
            l.on_follower_fetch(2, 3, 30, 5).unwrap().high_watermark,
            None
        );
        let accepted = AlterPartitionAccepted {
            leader_epoch: 3,
            partition_epoch: 8,
            isr: vec![1, 2, 3],
        };
        assert_eq!(
            l.on_alter_partition_result(&sent, Ok(accepted), 6),
            Ok(None)
        );
        assert_eq!(l.isr(), &[1, 2, 3]);
        assert_eq!(
            l.on_follower_fetch(3, 3, 30, 7).unwrap().high_watermark,
            Some(30)
        );
    }

    #[test]
    fn expansion_needs_the_leader_epoch_start_offset() {
        // The epoch started at 10 with a high watermark of 4 (this node's follower one).
        let mut l = PartitionLeader::new(1, &record(&[1, 2], 3, 7), 10, 4, CONFIG, 0).unwrap();
        let out = l.on_follower_fetch(3, 3, 6, 1).unwrap();
        assert_eq!(
            out.alter_partition, None,
            "past the HW, before the epoch start"
        );
        assert!(l
            .on_follower_fetch(3, 3, 10, 2)
            .unwrap()
            .alter_partition
            .is_some());
    }

    #[test]
    fn lagging_followers_are_shrunk_out_and_a_rejected_change_reverts() {
        let mut l = leader(&[1, 2, 3]);
        l.on_follower_fetch(2, 3, 10, 1).unwrap();
        l.on_follower_fetch(3, 3, 10, 1).unwrap();
        l.on_local_append(12, 2);
        // 2 keeps fetching and catching up; 3 stops.
        l.on_follower_fetch(2, 3, 12, 20_000).unwrap();
        assert_eq!(l.out_of_sync_replicas(30_001), Vec::<i32>::new());
        assert_eq!(l.out_of_sync_replicas(30_002), vec![3]);
        let sent = l.maybe_shrink_isr(30_002).unwrap();
        assert_eq!(sent.new_isr, vec![1, 2]);
        assert_eq!(l.maybe_shrink_isr(30_003), None, "one change in flight");
        assert_eq!(
            l.on_alter_partition_result(&sent, Err(codes::INELIGIBLE_REPLICA), 30_004),
            Ok(None)
        );
        assert_eq!(l.isr(), &[1, 2, 3]);
        let sent = l.maybe_shrink_isr(30_005).unwrap();
        // An unexpected error: send again; a stale epoch: wait for metadata.
        assert_eq!(
            l.on_alter_partition_result(&sent, Err(41), 30_006),
            Err(sent.clone())
        );
        assert_eq!(
            l.on_alter_partition_result(&sent, Err(codes::FENCED_LEADER_EPOCH), 30_006),
            Ok(None)
        );
        assert_eq!(l.pending_alter_partition(), Some(&sent));
        // The metadata brings the controller's ISR.
        assert_eq!(l.on_metadata(&record(&[1, 2], 3, 8), 30_007), Ok(Some(12)));
        assert_eq!(l.pending_alter_partition(), None);
        let mut other = record(&[2], 4, 9);
        other.leader = 2;
        assert_eq!(l.on_metadata(&other, 30_008), Err(NotLeader));
    }

    #[test]
    fn acks_all_follows_min_insync_replicas() {
        let mut l = leader(&[1, 2]);
        assert_eq!(l.check_acks_all_append(), Ok(()));
        l.on_local_append(11, 1);
        assert_eq!(l.can_acknowledge(11), AckDecision::Wait);
        l.on_follower_fetch(2, 3, 11, 2).unwrap();
        assert_eq!(l.can_acknowledge(11), AckDecision::Acknowledged);
        l.on_local_append(12, 3);
        l.on_metadata(&record(&[1], 3, 8), 4).unwrap();
        assert_eq!(l.check_acks_all_append(), Err(NotEnoughReplicas));
        assert_eq!(
            l.can_acknowledge(11),
            AckDecision::NotEnoughReplicasAfterAppend
        );
        // Below min ISR the high watermark stays (KIP-966).
        assert_eq!(
            l.on_follower_fetch(2, 3, 12, 5).unwrap().high_watermark,
            None
        );
        assert_eq!(l.can_acknowledge(12), AckDecision::Wait);
    }

    #[test]
    fn a_lone_isr_commits_on_election() {
        let l = PartitionLeader::new(1, &record(&[1], 3, 7), 10, 6, CONFIG, 0).unwrap();
        assert_eq!(l.high_watermark(), 6, "below min ISR 2: it stays");
        let config = LeaderConfig {
            min_insync_replicas: 1,
            ..CONFIG
        };
        let l = PartitionLeader::new(1, &record(&[1], 3, 7), 10, 6, config, 0).unwrap();
        assert_eq!(l.high_watermark(), 10);
    }

    #[test]
    fn a_new_leader_waits_for_isr_followers_before_advancing() {
        let mut l = PartitionLeader::new(1, &record(&[1, 2, 3], 3, 7), 10, 6, CONFIG, 0).unwrap();
        assert_eq!(l.high_watermark(), 6);
        assert_eq!(
            l.on_follower_fetch(2, 3, 10, 1).unwrap().high_watermark,
            None
        );
        assert_eq!(
            l.on_follower_fetch(3, 3, 8, 1).unwrap().high_watermark,
            Some(8)
        );
        // A new epoch restarts at the log end; followers keep their offsets.
        l.on_local_append(14, 2);
        assert_eq!(l.on_metadata(&record(&[1, 2, 3], 4, 8), 3), Ok(None));
        assert_eq!(l.leader_epoch_start_offset(), 14);
        assert_eq!(l.follower(3).unwrap().log_end_offset, 8);
    }
}
