//! What this node is for one partition — leader or follower, in which leader epoch, with
//! which replicas and in-sync replicas — as the latest metadata image says, and the two
//! offsets that follow from it: the log end offset (what this replica has) and the high
//! watermark (what the in-sync replicas have: consumers read below it, acks=all answers
//! once it passes a batch).
//!
//! Memory only: [`ReplicaState`] sits behind its own small mutex, never held across IO.

use std::collections::BTreeMap;

use crate::metadata::PartitionRecord;

/// A partition's assignment as of one metadata image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// -1: no leader (offline).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl From<&PartitionRecord> for Assignment {
    fn from(record: &PartitionRecord) -> Assignment {
        Assignment {
            leader: record.leader,
            leader_epoch: record.leader_epoch,
            partition_epoch: record.partition_epoch,
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
        }
    }
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

/// A follower as its leader sees it, from the follower's fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FollowerPosition {
    /// The follower's log end offset: the offset it last fetched from.
    log_end_offset: i64,
}

/// Role and replica bookkeeping of one hosted partition.
#[derive(Debug)]
pub struct ReplicaState {
    node_id: i32,
    assignment: Assignment,
    /// Leader side: the followers' positions in the current leader epoch.
    followers: BTreeMap<i32, FollowerPosition>,
}

impl ReplicaState {
    pub fn new(node_id: i32, assignment: Assignment) -> ReplicaState {
        ReplicaState {
            node_id,
            assignment,
            followers: BTreeMap::new(),
        }
    }

    /// The only replica, leading in epoch 0 (tests of a partition on its own).
    #[cfg(test)]
    pub fn sole_leader(node_id: i32) -> ReplicaState {
        ReplicaState::new(
            node_id,
            Assignment {
                leader: node_id,
                leader_epoch: 0,
                partition_epoch: 0,
                replicas: vec![node_id],
                isr: vec![node_id],
            },
        )
    }

    pub fn is_leader(&self) -> bool {
        self.assignment.leader == self.node_id
    }

    pub fn leader(&self) -> i32 {
        self.assignment.leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.assignment.leader_epoch
    }

    pub fn isr_len(&self) -> usize {
        self.assignment.isr.len()
    }

    /// Takes the image's assignment and says what changed for this replica. A stale
    /// assignment (older leader epoch) is ignored.
    pub fn apply(&mut self, assignment: Assignment) -> Transition {
        if assignment.leader_epoch < self.assignment.leader_epoch {
            return Transition::Unchanged;
        }
        let new_epoch = assignment.leader_epoch != self.assignment.leader_epoch;
        let was_leader = self.is_leader();
        self.assignment = assignment;
        let is_leader = self.is_leader();
        if new_epoch {
            self.followers.clear();
        }
        match (was_leader, is_leader, new_epoch) {
            (_, true, true) | (false, true, false) => Transition::BecomeLeader {
                leader_epoch: self.assignment.leader_epoch,
            },
            (_, false, true) | (true, false, false) => Transition::BecomeFollower {
                leader: self.assignment.leader,
                leader_epoch: self.assignment.leader_epoch,
            },
            _ => Transition::Unchanged,
        }
    }

    /// Leader side: a follower fetched from `fetch_offset` (so it has everything below).
    /// Ignored for nodes that are not replicas.
    pub fn record_follower_fetch(&mut self, replica_id: i32, fetch_offset: i64) {
        if replica_id == self.node_id || !self.assignment.replicas.contains(&replica_id) {
            return;
        }
        self.followers.insert(
            replica_id,
            FollowerPosition {
                log_end_offset: fetch_offset,
            },
        );
    }

    /// Leader side: the high watermark the ISR supports, given this replica's log end
    /// offset: the least log end offset over the ISR (a member not heard from in this
    /// epoch supports nothing new). None when this node is not the leader.
    pub fn high_watermark_candidate(&self, local_log_end_offset: i64) -> Option<i64> {
        if !self.is_leader() {
            return None;
        }
        let mut candidate = local_log_end_offset;
        for member in &self.assignment.isr {
            if *member == self.node_id {
                continue;
            }
            let Some(position) = self.followers.get(member) else {
                return Some(i64::MIN);
            };
            candidate = candidate.min(position.log_end_offset);
        }
        Some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(leader: i32, leader_epoch: i32, replicas: &[i32], isr: &[i32]) -> Assignment {
        Assignment {
            leader,
            leader_epoch,
            partition_epoch: leader_epoch,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn transitions_follow_leader_and_epoch() {
        let mut state = ReplicaState::new(1, assignment(1, 0, &[1, 2], &[1, 2]));
        assert!(state.is_leader());
        assert_eq!(
            state.apply(assignment(1, 0, &[1, 2], &[1])),
            Transition::Unchanged
        );
        assert_eq!(
            state.apply(assignment(2, 1, &[1, 2], &[2])),
            Transition::BecomeFollower {
                leader: 2,
                leader_epoch: 1
            }
        );
        // Stale images change nothing.
        assert_eq!(
            state.apply(assignment(1, 0, &[1, 2], &[1])),
            Transition::Unchanged
        );
        assert_eq!(state.leader(), 2);
        assert_eq!(
            state.apply(assignment(1, 2, &[1, 2], &[1, 2])),
            Transition::BecomeLeader { leader_epoch: 2 }
        );
    }

    #[test]
    fn high_watermark_is_the_least_isr_log_end() {
        let mut state = ReplicaState::new(1, assignment(1, 3, &[1, 2, 3], &[1, 2]));
        // Replica 2 has not fetched in this epoch: nothing new is committed.
        assert_eq!(state.high_watermark_candidate(10), Some(i64::MIN));
        state.record_follower_fetch(2, 7);
        // Replica 3 is outside the ISR: its position does not hold the HW back.
        state.record_follower_fetch(3, 1);
        assert_eq!(state.high_watermark_candidate(10), Some(7));
        state.record_follower_fetch(2, 10);
        assert_eq!(state.high_watermark_candidate(10), Some(10));
        // Not a replica: ignored.
        state.record_follower_fetch(9, 0);
        assert_eq!(state.high_watermark_candidate(10), Some(10));
        // A new epoch forgets the positions.
        state.apply(assignment(1, 4, &[1, 2, 3], &[1, 2]));
        assert_eq!(state.high_watermark_candidate(10), Some(i64::MIN));
        let single = ReplicaState::new(1, assignment(1, 0, &[1], &[1]));
        assert_eq!(single.high_watermark_candidate(5), Some(5));
        let follower = ReplicaState::new(2, assignment(1, 0, &[1, 2], &[1, 2]));
        assert_eq!(follower.high_watermark_candidate(5), None);
    }
}
