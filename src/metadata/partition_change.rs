//! The controller's pure decisions for one partition (Kafka's `PartitionChangeBuilder`
//! and the AlterPartition checks of `ReplicationControlManager`): given the partition's
//! current [`PartitionRecord`], what the brokers' states are and what happened, the
//! [`PartitionChange`] record to write (or none).
//!
//! Events in, records out, no IO: the controller (the quorum's operation lock) calls
//! - [`on_broker_fenced`] for every partition whose ISR/ELR holds a broker that was just
//!   fenced (session timeout, re-registration after a crash: `unclean_shutdown`) or
//!   that leads it;
//! - [`on_broker_unfenced`] for every leaderless partition that lists the broker;
//! - [`alter_partition`] for each partition of a leader's AlterPartition request;
//! - [`elect_preferred`] and [`elect_unclean`] for ElectLeaders and the leader balancer;
//! - [`change_assignment`] for a reassignment (`reassignment.rs` plans it); every change
//!   also completes an ongoing reassignment once all replicas that stay are in sync;
//!
//! and writes the returned record; [`super::records`] applies it (a leader change bumps
//! the leader epoch, any change the partition epoch).
//!
//! Eligible leader replicas (KIP-966) are on: Kafka 4.4's latest production
//! `eligible.leader.replicas.version` is 1 (bootstrapped from metadata version 4.1), so a
//! new 4.4 cluster has them. With them the ISR may become empty: a fenced last ISR member
//! moves to the ELR and is elected again (cleanly) when it comes back. When the ISR and
//! the ELR are both empty (the ELR members shut down uncleanly), 4.4's default recovery
//! elects the last known leader once it is back (`last_known_elr`), marked unclean; with
//! `unclean.leader.election.enable` an unclean election may pick any live replica.
//! Not modelled: the leader recovery state (RECOVERING after an unclean election),
//! broker epochs in the AlterPartition ISR, log directory assignments.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PartitionRecord;

/// Kafka's `LeaderConstants.NO_LEADER`: the partition is offline.
pub const NO_LEADER: i32 = -1;

/// AlterPartition answers (Kafka's error codes).
pub mod codes {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const INVALID_UPDATE_VERSION: i16 = 108;
    pub const INELIGIBLE_REPLICA: i16 = 107;
}

/// One partition's change (Kafka's `PartitionChangeRecord`): only the fields that change
/// are set. The serialized form is part of the metadata log format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The new leader (`NO_LEADER` for none); set means a new leader epoch.
    #[serde(default)]
    pub leader: Option<i32>,
    #[serde(default)]
    pub isr: Option<Vec<i32>>,
    #[serde(default)]
    pub elr: Option<Vec<i32>>,
    #[serde(default)]
    pub last_known_elr: Option<Vec<i32>>,
    /// A reassignment's new replica list, adding and removing replicas.
    #[serde(default)]
    pub replicas: Option<Vec<i32>>,
    #[serde(default)]
    pub adding_replicas: Option<Vec<i32>>,
    #[serde(default)]
    pub removing_replicas: Option<Vec<i32>>,
}

/// What the controller knows about the cluster and the topic when it decides.
pub struct ChangeContext<'a> {
    /// Registered, unfenced and not shutting down (Kafka's `ClusterControlManager.isActive`).
    pub is_active: &'a dyn Fn(i32) -> bool,
    /// The topic's effective `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// The topic's effective `unclean.leader.election.enable`.
    pub unclean_leader_election: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Election {
    Preferred,
    Online,
    Unclean,
}

/// Kafka's PartitionChangeBuilder over one partition: a target ISR and an election.
struct Builder<'a> {
    partition: &'a PartitionRecord,
    acceptable: &'a dyn Fn(i32) -> bool,
    min_isr: usize,
    election: Election,
    target_isr: Vec<i32>,
    target_elr: Vec<i32>,
    unclean_shutdown: Option<i32>,
    target_replicas: Vec<i32>,
    target_adding: Vec<i32>,
    target_removing: Vec<i32>,
}

impl<'a> Builder<'a> {
    fn new(
        partition: &'a PartitionRecord,
        ctx: &ChangeContext<'_>,
        acceptable: &'a dyn Fn(i32) -> bool,
    ) -> Self {
        Builder {
            partition,
            acceptable,
            min_isr: ctx.min_insync_replicas,
            election: if ctx.unclean_leader_election {
                Election::Unclean
            } else {
                Election::Online
            },
            target_isr: partition.isr.clone(),
            target_elr: partition.elr.clone(),
            unclean_shutdown: None,
            target_replicas: partition.replicas.clone(),
            target_adding: partition.adding_replicas.clone(),
            target_removing: partition.removing_replicas.clone(),
        }
    }

    /// In the ISR, or in the ELR while the ISR is empty, and acceptable.
    fn is_valid_new_leader(&self, replica: i32) -> bool {
        (self.target_isr.contains(&replica)
            || (self.target_isr.is_empty() && self.target_elr.contains(&replica)))
            && (self.acceptable)(replica)
    }

    /// Kafka 4.4's default "balanced" recovery: with the ISR and the ELR empty, the last
    /// leader (kept in `last_known_elr`) may lead again once it is back, as an unclean
    /// election (it may have lost unflushed records).
    fn can_elect_last_known_leader(&self) -> bool {
        self.target_elr.is_empty()
            && self.target_isr.is_empty()
            && self.partition.last_known_elr.len() == 1
            && (self.acceptable)(self.partition.last_known_elr[0])
    }

    /// (leader, unclean)
    fn elect(&self) -> (i32, bool) {
        let replicas = &self.target_replicas;
        if self.election == Election::Preferred {
            if let Some(&first) = replicas.first() {
                if self.is_valid_new_leader(first) {
                    return (first, false);
                }
            }
        }
        if self.is_valid_new_leader(self.partition.leader) {
            return (self.partition.leader, false);
        }
        if let Some(&r) = replicas.iter().find(|&&r| self.is_valid_new_leader(r)) {
            return (r, false);
        }
        if self.can_elect_last_known_leader() {
            return (self.partition.last_known_elr[0], true);
        }
        if self.election == Election::Unclean {
            if let Some(&r) = replicas.iter().find(|&&r| (self.acceptable)(r)) {
                return (r, true);
            }
        }
        (NO_LEADER, false)
    }

    /// KIP-966: while the ISR is below min ISR, replicas that leave it (cleanly) become
    /// eligible leaders; at or above min ISR there are none.
    fn populate_elr(&mut self) {
        if self.target_isr.len() >= self.min_isr {
            self.target_elr.clear();
            return;
        }
        let mut candidates = self.target_elr.clone();
        for &r in &self.partition.isr {
            if !candidates.contains(&r) {
                candidates.push(r);
            }
        }
        candidates.retain(|r| !self.target_isr.contains(r) && Some(*r) != self.unclean_shutdown);
        self.target_elr = candidates;
    }

    /// A reassignment is done once every replica that stays is in the (target) ISR:
    /// the removed replicas leave the replica list and the ISR (Kafka's
    /// `PartitionReassignmentReplicas.maybeCompleteReassignment`).
    fn complete_reassignment_if_needed(&mut self) {
        if self.target_adding.is_empty() && self.target_removing.is_empty() {
            return;
        }
        let removing = &self.target_removing;
        let isr: Vec<i32> = self
            .target_isr
            .iter()
            .copied()
            .filter(|r| !removing.contains(r))
            .collect();
        let replicas: Vec<i32> = self
            .target_replicas
            .iter()
            .copied()
            .filter(|r| !removing.contains(r))
            .collect();
        if isr.is_empty() || replicas.is_empty() || !replicas.iter().all(|r| isr.contains(r)) {
            return;
        }
        self.target_isr = isr;
        self.target_replicas = replicas;
        self.target_adding.clear();
        self.target_removing.clear();
    }

    fn build(mut self, topic_id: Uuid) -> Option<PartitionChange> {
        self.complete_reassignment_if_needed();
        let mut change = PartitionChange {
            topic_id,
            partition: self.partition.partition,
            leader: None,
            isr: None,
            elr: None,
            last_known_elr: None,
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
        };
        self.populate_elr();
        // Replicas a reassignment removed are not eligible for anything any more.
        let replicas = self.target_replicas.clone();
        self.target_elr.retain(|r| replicas.contains(r));
        let (leader, unclean) = self.elect();
        if leader != self.partition.leader {
            if self.target_elr.contains(&leader) {
                // Elected from the ELR: it is the whole ISR now.
                self.target_isr = vec![leader];
                self.target_elr.retain(|&r| r != leader);
            }
            change.leader = Some(leader);
            if unclean {
                // Data loss is accepted: the new leader alone is in sync.
                change.isr = Some(vec![leader]);
            }
        }
        if change.leader.is_none()
            && !self
                .partition
                .replicas
                .iter()
                .all(|r| self.target_replicas.contains(r))
        {
            // A replica left: a new leader epoch fences it (Kafka's
            // `triggerLeaderEpochBumpForReplicaReassignmentIfNeeded`).
            change.leader = Some(self.partition.leader);
        }
        if change.isr.is_some() {
            // An unclean election: nobody else is known to hold its records.
            self.target_elr.clear();
        }
        if self.target_elr != self.partition.elr {
            change.elr = Some(self.target_elr.clone());
        }
        if change.isr.is_none() && self.target_isr != self.partition.isr {
            change.isr = Some(self.target_isr);
        }
        // The last known leader: recorded when the ISR empties, forgotten once the
        // partition has a leader again (Kafka's `maybeUpdateLastKnownLeader`).
        let last_leader = self.partition.leader;
        if change.isr.as_ref().is_some_and(|isr| isr.is_empty()) {
            if last_leader != NO_LEADER && self.partition.last_known_elr != [last_leader] {
                change.last_known_elr = Some(vec![last_leader]);
            }
        } else if (change.leader.is_some_and(|l| l >= 0)
            || (last_leader != NO_LEADER && change.leader != Some(NO_LEADER)))
            && !self.partition.last_known_elr.is_empty()
        {
            change.last_known_elr = Some(Vec::new());
        }
        let last_known = change
            .last_known_elr
            .as_ref()
            .unwrap_or(&self.partition.last_known_elr);
        if last_known.iter().any(|r| !replicas.contains(r)) {
            change.last_known_elr = Some(
                last_known
                    .iter()
                    .copied()
                    .filter(|r| replicas.contains(r))
                    .collect(),
            );
        }
        if self.target_replicas != self.partition.replicas {
            change.replicas = Some(self.target_replicas);
        }
        if self.target_adding != self.partition.adding_replicas {
            change.adding_replicas = Some(self.target_adding);
        }
        if self.target_removing != self.partition.removing_replicas {
            change.removing_replicas = Some(self.target_removing);
        }
        let no_op = change.leader.is_none()
            && change.isr.is_none()
            && change.elr.is_none()
            && change.last_known_elr.is_none()
            && change.replicas.is_none()
            && change.adding_replicas.is_none()
            && change.removing_replicas.is_none();
        (!no_op).then_some(change)
    }
}

/// `broker` was fenced (or re-registered after an unclean shutdown: then it also leaves
/// the ELR, since it may have lost unflushed records): it leaves the ISR, and a new
/// leader is elected if it led. Kafka's `generateLeaderAndIsrUpdates` with
/// `brokerToRemove`.
pub fn on_broker_fenced(
    topic_id: Uuid,
    partition: &PartitionRecord,
    broker: i32,
    unclean_shutdown: bool,
    ctx: &ChangeContext<'_>,
) -> Option<PartitionChange> {
    let acceptable = |r: i32| r != broker && (ctx.is_active)(r);
    let mut builder = Builder::new(partition, ctx, &acceptable);
    builder.target_isr.retain(|&r| r != broker);
    if unclean_shutdown {
        builder.unclean_shutdown = Some(broker);
        builder.target_elr.retain(|&r| r != broker);
    }
    builder.build(topic_id)
}

/// `broker` was unfenced: a leaderless partition may elect it (`brokerToAdd`).
pub fn on_broker_unfenced(
    topic_id: Uuid,
    partition: &PartitionRecord,
    broker: i32,
    ctx: &ChangeContext<'_>,
) -> Option<PartitionChange> {
    let acceptable = |r: i32| r == broker || (ctx.is_active)(r);
    Builder::new(partition, ctx, &acceptable).build(topic_id)
}

/// Preferred-leader election: the first replica if it is a valid leader, else the
/// current leader stays.
pub fn elect_preferred(
    topic_id: Uuid,
    partition: &PartitionRecord,
    ctx: &ChangeContext<'_>,
) -> Option<PartitionChange> {
    let mut builder = Builder::new(partition, ctx, ctx.is_active);
    builder.election = Election::Preferred;
    builder.build(topic_id)
}

/// ElectLeaders UNCLEAN: an online election that, with no in-sync or eligible replica
/// left, may pick any live replica whatever the topic's `unclean.leader.election.enable`.
pub fn elect_unclean(
    topic_id: Uuid,
    partition: &PartitionRecord,
    ctx: &ChangeContext<'_>,
) -> Option<PartitionChange> {
    let mut builder = Builder::new(partition, ctx, ctx.is_active);
    builder.election = Election::Unclean;
    builder.build(topic_id)
}

/// A reassignment's assignment for one partition (`reassignment.rs` decides it): the
/// replica list with the adding and removing replicas, and for a cancellation the ISR
/// to fall back to.
pub struct AssignmentTarget {
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
    pub isr: Option<Vec<i32>>,
}

/// Moves `partition` to `target` (Kafka's `changePartitionReassignment` and
/// `cancelPartitionReassignment` through the PartitionChangeBuilder): completes at once
/// when the ISR already holds every replica that stays, and elects a new leader when the
/// current one is no longer a valid one.
pub fn change_assignment(
    topic_id: Uuid,
    partition: &PartitionRecord,
    target: AssignmentTarget,
    ctx: &ChangeContext<'_>,
) -> Option<PartitionChange> {
    let mut builder = Builder::new(partition, ctx, ctx.is_active);
    builder.target_replicas = target.replicas;
    builder.target_adding = target.adding;
    builder.target_removing = target.removing;
    if let Some(isr) = target.isr {
        builder.target_isr = isr;
    }
    builder.build(topic_id)
}

/// One partition of an AlterPartition request, as the leader sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// Validates a leader's AlterPartition for `partition` (Kafka's
/// `validateAlterPartitionData`, in its order) and returns the change to write (none when
/// the ISR is already the requested one). The answer to the leader is the partition
/// after the change: leader epoch, partition epoch and ISR.
pub fn alter_partition(
    topic_id: Uuid,
    partition: &PartitionRecord,
    request: &AlterPartitionRequest,
    ctx: &ChangeContext<'_>,
) -> Result<Option<PartitionChange>, i16> {
    if request.leader_epoch > partition.leader_epoch
        || request.partition_epoch > partition.partition_epoch
    {
        // The leader knows newer metadata than this controller.
        return Err(codes::NOT_CONTROLLER);
    }
    if request.leader_epoch < partition.leader_epoch {
        return Err(codes::FENCED_LEADER_EPOCH);
    }
    if request.leader_id != partition.leader {
        return Err(codes::INVALID_REQUEST);
    }
    if request.partition_epoch < partition.partition_epoch {
        return Err(codes::INVALID_UPDATE_VERSION);
    }
    let mut seen = Vec::with_capacity(request.new_isr.len());
    for &r in &request.new_isr {
        if !partition.replicas.contains(&r) || seen.contains(&r) {
            return Err(codes::INVALID_REQUEST);
        }
        seen.push(r);
    }
    if !request.new_isr.contains(&partition.leader) {
        return Err(codes::INVALID_REQUEST);
    }
    if !request.new_isr.iter().all(|&r| (ctx.is_active)(r)) {
        return Err(codes::INELIGIBLE_REPLICA);
    }
    let mut builder = Builder::new(partition, ctx, ctx.is_active);
    builder.target_isr = request.new_isr.clone();
    Ok(builder.build(topic_id))
}

/// Applies `change` to `partition` (Kafka's `PartitionRegistration.merge`): a leader
/// change bumps the leader epoch, any change bumps the partition epoch. False (and
/// nothing changed) when the change names replicas the partition does not have.
pub(super) fn apply(partition: &mut PartitionRecord, change: &PartitionChange) -> bool {
    let replicas = change
        .replicas
        .clone()
        .unwrap_or_else(|| partition.replicas.clone());
    let distinct = replicas
        .iter()
        .enumerate()
        .all(|(i, r)| !replicas[..i].contains(r));
    // Every list as it will be (changed or kept) names replicas of the new list only.
    let known = |new: &Option<Vec<i32>>, current: &Vec<i32>| {
        new.as_ref()
            .unwrap_or(current)
            .iter()
            .all(|r| replicas.contains(r))
    };
    let leader = change.leader.unwrap_or(partition.leader);
    let leader_ok = leader == NO_LEADER || replicas.contains(&leader);
    if replicas.is_empty()
        || !distinct
        || !leader_ok
        || !known(&change.isr, &partition.isr)
        || !known(&change.elr, &partition.elr)
        || !known(&change.last_known_elr, &partition.last_known_elr)
        || !known(&change.adding_replicas, &partition.adding_replicas)
        || !known(&change.removing_replicas, &partition.removing_replicas)
    {
        return false;
    }
    if let Some(replicas) = &change.replicas {
        partition.replicas = replicas.clone();
    }
    if let Some(adding) = &change.adding_replicas {
        partition.adding_replicas = adding.clone();
    }
    if let Some(removing) = &change.removing_replicas {
        partition.removing_replicas = removing.clone();
    }
    if let Some(leader) = change.leader {
        partition.leader = leader;
        partition.leader_epoch += 1;
    }
    if let Some(isr) = &change.isr {
        partition.isr = isr.clone();
    }
    if let Some(elr) = &change.elr {
        partition.elr = elr.clone();
    }
    if let Some(last_known_elr) = &change.last_known_elr {
        partition.last_known_elr = last_known_elr.clone();
    }
    partition.partition_epoch += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRecord {
        PartitionRecord {
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 9,
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn ctx<'a>(
        active: &'a dyn Fn(i32) -> bool,
        min_isr: usize,
        unclean: bool,
    ) -> ChangeContext<'a> {
        ChangeContext {
            is_active: active,
            min_insync_replicas: min_isr,
            unclean_leader_election: unclean,
        }
    }

    fn merged(mut p: PartitionRecord, change: &PartitionChange) -> PartitionRecord {
        assert!(apply(&mut p, change));
        p
    }

    const T: Uuid = Uuid::nil();

    #[test]
    fn fencing_the_leader_elects_the_next_isr_member_in_replica_order() {
        let p = partition(&[1, 2, 3], &[3, 1, 2], 1);
        let active = |r: i32| r != 1;
        let change = on_broker_fenced(T, &p, 1, false, &ctx(&active, 1, false)).unwrap();
        assert_eq!(change.leader, Some(2));
        assert_eq!(change.isr, Some(vec![3, 2]));
        let after = merged(p, &change);
        assert_eq!((after.leader_epoch, after.partition_epoch), (6, 10));
    }

    #[test]
    fn fencing_a_follower_only_shrinks_the_isr() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let active = |r: i32| r != 3;
        let change = on_broker_fenced(T, &p, 3, false, &ctx(&active, 2, false)).unwrap();
        assert_eq!(change.leader, None);
        assert_eq!(change.isr, Some(vec![1, 2]));
        let after = merged(p, &change);
        assert_eq!((after.leader_epoch, after.partition_epoch), (5, 10));
    }

    #[test]
    fn below_min_isr_the_leavers_become_eligible_and_are_elected_back() {
        let p = partition(&[1, 2, 3], &[1, 2], 1);
        let active = |r: i32| r == 1;
        // 2 leaves an ISR of 2 with min ISR 2: it keeps every committed record.
        let change = on_broker_fenced(T, &p, 2, false, &ctx(&active, 2, false)).unwrap();
        assert_eq!(change.isr, Some(vec![1]));
        assert_eq!(change.elr, Some(vec![2]));
        let p = merged(p, &change);
        // The last ISR member goes too: the ISR is empty, the partition offline.
        let none = |_| false;
        let change = on_broker_fenced(T, &p, 1, false, &ctx(&none, 2, false)).unwrap();
        assert_eq!(change.leader, Some(NO_LEADER));
        assert_eq!(change.isr, Some(vec![]));
        assert_eq!(change.last_known_elr, Some(vec![1]));
        let p = merged(p, &change);
        assert_eq!(p.elr, vec![2, 1]);
        // 3 was never eligible; 2 comes back and is elected cleanly from the ELR.
        let only3 = |r: i32| r == 3;
        assert_eq!(on_broker_unfenced(T, &p, 3, &ctx(&only3, 2, false)), None);
        let only2 = |r: i32| r == 2;
        let change = on_broker_unfenced(T, &p, 2, &ctx(&only2, 2, false)).unwrap();
        assert_eq!(change.leader, Some(2));
        assert_eq!(change.isr, Some(vec![2]));
        assert_eq!(change.last_known_elr, Some(vec![]));
        let p = merged(p, &change);
        assert_eq!((p.leader, p.elr.clone()), (2, vec![1]));
    }

    #[test]
    fn the_last_known_leader_comes_back_when_nobody_is_eligible() {
        // min ISR 1: the lone leader's ISR was never below it, so no ELR until it goes.
        let p = partition(&[1, 2, 3], &[1], 1);
        let others = |r: i32| r != 1;
        let change = on_broker_fenced(T, &p, 1, false, &ctx(&others, 1, false)).unwrap();
        assert_eq!(change.leader, Some(NO_LEADER));
        assert_eq!(change.elr, Some(vec![1]));
        assert_eq!(change.last_known_elr, Some(vec![1]));
        let p = merged(p, &change);
        // It restarts after a crash: an unclean shutdown takes it out of the ELR.
        let change = on_broker_fenced(T, &p, 1, true, &ctx(&others, 1, false)).unwrap();
        assert_eq!((change.leader, change.elr.clone()), (None, Some(vec![])));
        let p = merged(p, &change);
        // 2 is live but never was in sync: no leader until 1 is back.
        assert_eq!(on_broker_unfenced(T, &p, 2, &ctx(&others, 1, false)), None);
        let all = |_| true;
        let change = on_broker_unfenced(T, &p, 1, &ctx(&all, 1, false)).unwrap();
        assert_eq!(change.leader, Some(1));
        assert_eq!(change.isr, Some(vec![1]));
        assert_eq!(change.last_known_elr, Some(vec![]));
    }

    #[test]
    fn an_unclean_shutdown_leaves_the_elr() {
        let mut p = partition(&[1, 2, 3], &[], NO_LEADER);
        p.elr = vec![1, 2];
        let active = |r: i32| r == 1;
        let change = on_broker_fenced(T, &p, 1, true, &ctx(&active, 2, false)).unwrap();
        assert_eq!(change.elr, Some(vec![2]));
        assert_eq!(change.leader, None);
    }

    #[test]
    fn unclean_election_only_when_enabled() {
        let p = partition(&[1, 2, 3], &[1], 1);
        let active = |r: i32| r == 3;
        let clean = on_broker_fenced(T, &p, 1, false, &ctx(&active, 1, false)).unwrap();
        assert_eq!(clean.leader, Some(NO_LEADER));
        let unclean = on_broker_fenced(T, &p, 1, false, &ctx(&active, 1, true)).unwrap();
        assert_eq!(unclean.leader, Some(3));
        assert_eq!(unclean.isr, Some(vec![3]));
        assert_eq!(unclean.elr, None);
    }

    #[test]
    fn preferred_election_moves_leadership_to_the_first_replica_in_sync() {
        let p = partition(&[1, 2, 3], &[2, 1], 2);
        let all = |_| true;
        let change = elect_preferred(T, &p, &ctx(&all, 1, false)).unwrap();
        assert_eq!(change.leader, Some(1));
        let out_of_sync = partition(&[1, 2, 3], &[2, 3], 2);
        assert_eq!(elect_preferred(T, &out_of_sync, &ctx(&all, 1, false)), None);
        let not1 = |r: i32| r != 1;
        assert_eq!(elect_preferred(T, &p, &ctx(&not1, 1, false)), None);
    }

    #[test]
    fn alter_partition_is_validated_in_kafkas_order() {
        let p = partition(&[1, 2, 3], &[1, 2], 1);
        let not3 = |r: i32| r != 3;
        let c = ctx(&not3, 1, false);
        let req = |leader_id, leader_epoch, partition_epoch, isr: &[i32]| AlterPartitionRequest {
            leader_id,
            leader_epoch,
            partition_epoch,
            new_isr: isr.to_vec(),
        };
        let alter = |r| alter_partition(T, &p, &r, &c);
        assert_eq!(alter(req(1, 6, 9, &[1])), Err(codes::NOT_CONTROLLER));
        assert_eq!(alter(req(1, 4, 9, &[1])), Err(codes::FENCED_LEADER_EPOCH));
        assert_eq!(alter(req(2, 5, 9, &[1])), Err(codes::INVALID_REQUEST));
        assert_eq!(
            alter(req(1, 5, 8, &[1])),
            Err(codes::INVALID_UPDATE_VERSION)
        );
        assert_eq!(alter(req(1, 5, 9, &[2])), Err(codes::INVALID_REQUEST));
        assert_eq!(alter(req(1, 5, 9, &[1, 4])), Err(codes::INVALID_REQUEST));
        assert_eq!(alter(req(1, 5, 9, &[1, 1])), Err(codes::INVALID_REQUEST));
        assert_eq!(alter(req(1, 5, 9, &[1, 3])), Err(codes::INELIGIBLE_REPLICA));
        assert_eq!(alter(req(1, 5, 9, &[1, 2])), Ok(None));
        let change = alter(req(1, 5, 9, &[1])).unwrap().unwrap();
        assert_eq!((change.leader, change.isr.clone()), (None, Some(vec![1])));
        let after = merged(p.clone(), &change);
        assert_eq!((after.leader_epoch, after.partition_epoch), (5, 10));
    }

    #[test]
    fn apply_refuses_unknown_replicas() {
        let mut p = partition(&[1, 2, 3], &[1, 2], 1);
        let before = p.clone();
        let change = PartitionChange {
            topic_id: T,
            partition: 0,
            leader: Some(7),
            isr: None,
            elr: None,
            last_known_elr: None,
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
        };
        assert!(!apply(&mut p, &change));
        let change = PartitionChange {
            leader: None,
            isr: Some(vec![1, 9]),
            ..change
        };
        assert!(!apply(&mut p, &change));
        assert_eq!(p, before);
    }
}
