//! Transaction verification guards (KIP-890 part 1, Kafka's VerificationGuard and
//! VerificationStateEntry): before a producer's first transactional batch of a
//! transaction is appended to a partition, its leader asks the transaction coordinator
//! whether the partition is in the producer's ongoing transaction. A guard is taken when
//! that question is asked; a marker for the producer (its transaction ended) or an epoch
//! bump drops it, and the append is refused unless the guard it was verified under is
//! still the producer's. So a batch verified for a transaction that was aborted while the
//! answer was on its way does not start a new, hanging one.
//!
//! A leaf table (memory only, never held across IO), so a produce handler can take a
//! guard on an async worker without the append lock. It also remembers which producers'
//! transactions are known ongoing here, so their later batches skip the question; the
//! append lock's producer state stays the authority at append time.

use std::collections::HashMap;

/// The verification a batch was appended under. Equal guards are the same verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationGuard(u64);

/// At most this many producers are tracked (as `MAX_PRODUCERS_PER_PARTITION`): a dropped
/// guard only costs its batch an INVALID_TXN_STATE, a dropped ongoing mark a question.
const MAX_ENTRIES: usize = 100_000;

/// What an append checks of verification: nothing (a non-transactional batch, or
/// verification off), or that its batch, if it starts a transaction here, was verified
/// under the guard it names (None: the table knew the transaction ongoing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Off,
    Guard(Option<VerificationGuard>),
}

#[derive(Default)]
pub(super) struct Verifications {
    next_guard: u64,
    producers: HashMap<i64, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    epoch: i16,
    /// A transactions-v2 producer: its question adds the partition (and its epoch is
    /// bumped by every transaction end).
    adds_partition: bool,
    state: EntryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryState {
    /// A verification was started under this guard and no transactional batch has been
    /// appended since.
    Verifying(VerificationGuard),
    /// A transactional batch of the producer at `epoch` was appended after verification:
    /// its transaction is ongoing here until a marker.
    Ongoing,
}

impl Verifications {
    /// The guard to verify a transactional batch of `producer_id` at `epoch` under, or
    /// None when its transaction is already known ongoing here. A verification already
    /// under way at the same epoch is shared (Kafka reuses the entry).
    pub(super) fn start(
        &mut self,
        producer_id: i64,
        epoch: i16,
        adds_partition: bool,
    ) -> Option<VerificationGuard> {
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            match entry.state {
                EntryState::Ongoing if entry.epoch == epoch => return None,
                EntryState::Verifying(guard) if entry.epoch == epoch => return Some(guard),
                _ => {}
            }
        }
        if self.producers.len() >= MAX_ENTRIES && !self.producers.contains_key(&producer_id) {
            if let Some(&victim) = self.producers.keys().next() {
                self.producers.remove(&victim);
            }
        }
        self.next_guard += 1;
        let guard = VerificationGuard(self.next_guard);
        self.producers.insert(
            producer_id,
            Entry {
                epoch,
                adds_partition,
                state: EntryState::Verifying(guard),
            },
        );
        Some(guard)
    }

    /// Whether a transactional batch that starts a transaction here may be appended:
    /// only under the producer's current guard (Kafka's
    /// `batchMissingRequiredVerification`).
    pub(super) fn holds(&self, producer_id: i64, guard: Option<VerificationGuard>) -> bool {
        match (self.producers.get(&producer_id), guard) {
            (Some(entry), Some(guard)) => entry.state == EntryState::Verifying(guard),
            _ => false,
        }
    }

    /// A transactional batch of the producer was appended: its transaction is ongoing.
    pub(super) fn appended(&mut self, producer_id: i64, epoch: i16) {
        self.producers.insert(
            producer_id,
            Entry {
                epoch,
                adds_partition: false,
                state: EntryState::Ongoing,
            },
        );
    }

    /// A marker at `marker_epoch` for the producer was appended: its transaction ended, so
    /// a verification under way is for a transaction that is over, unless it is for a
    /// later one: at a later epoch, or, for a transactions-v2 producer, at the marker's
    /// epoch (the end of a v2 transaction bumps the epoch, and its markers carry the bumped
    /// one, which the next transaction uses; its own end bumps the epoch again).
    pub(super) fn ended(&mut self, producer_id: i64, marker_epoch: i16) {
        let later = self.producers.get(&producer_id).is_some_and(|entry| {
            matches!(entry.state, EntryState::Verifying(_))
                && (entry.epoch > marker_epoch
                    || (entry.adds_partition && entry.epoch == marker_epoch))
        });
        if !later {
            self.producers.remove(&producer_id);
        }
    }

    /// Leadership changed: what this table knew may be stale.
    pub(super) fn clear(&mut self) {
        self.producers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_holds_until_a_marker_or_an_epoch_bump() {
        let mut table = Verifications::default();
        let guard = table.start(7, 0, false).expect("verification needed");
        assert!(table.holds(7, Some(guard)));
        // A second request of the same producer shares the verification.
        assert_eq!(table.start(7, 0, false), Some(guard));
        // The transaction was aborted while the answer was on its way.
        table.ended(7, 0);
        assert!(!table.holds(7, Some(guard)));
        let newer = table.start(7, 0, false).expect("verification needed");
        assert_ne!(newer, guard);
        // An epoch bump replaces the guard too.
        let bumped = table.start(7, 1, false).expect("verification needed");
        assert!(!table.holds(7, Some(newer)));
        assert!(table.holds(7, Some(bumped)));
        assert!(!table.holds(7, None));
        assert!(!table.holds(8, Some(bumped)));
    }

    #[test]
    fn a_marker_keeps_the_verification_of_a_later_transaction() {
        let mut table = Verifications::default();
        // Transactions v2: the next transaction (epoch 5) asks while the previous one's
        // markers, at the bumped epoch 5, are still being written.
        let next = table.start(7, 5, true).expect("verification needed");
        table.ended(7, 5);
        assert!(table.holds(7, Some(next)));
        // Its own abort bumps the epoch: that marker ends it.
        table.ended(7, 6);
        assert!(!table.holds(7, Some(next)));
        // Transactions v1: a marker at the verified epoch ends its transaction.
        let v1 = table.start(8, 2, false).expect("verification needed");
        table.ended(8, 2);
        assert!(!table.holds(8, Some(v1)));
        // A verification at a later epoch than the marker is for a later transaction.
        let later = table.start(8, 3, false).expect("verification needed");
        table.ended(8, 2);
        assert!(table.holds(8, Some(later)));
    }

    #[test]
    fn an_ongoing_transaction_needs_no_verification_at_its_epoch() {
        let mut table = Verifications::default();
        let guard = table.start(7, 3, false).expect("verification needed");
        table.appended(7, 3);
        assert!(!table.holds(7, Some(guard)));
        assert_eq!(table.start(7, 3, false), None);
        // The next epoch's transaction is a new one.
        assert!(table.start(7, 4, false).is_some());
        table.clear();
        assert!(table.start(7, 4, false).is_some());
    }
}
