//! Idempotent and transactional producer state of one partition: per producer id, the
//! epoch, the last five appended batches (Kafka keeps five so that a client with up to
//! five requests in flight can retry any of them and be answered with the original
//! offset), the coordinator epoch of its last transaction marker and the first offset of
//! its ongoing transaction (Kafka's ProducerStateManager / ProducerAppendInfo).
//!
//! Pure data: the partition feeds it batch headers (on append and when rebuilding from
//! the log at open) and persists it through [`ProducerStateTable::to_snapshot`].

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::log::batch::BatchHeader;
use crate::log::txn_index::AbortedTxn;
use crate::log::txn_marker::EndTxnMarker;
use crate::log::{Log, LogError};

/// Batches remembered per producer for duplicate detection (Kafka's value).
pub const MAX_CACHED_BATCHES: usize = 5;

/// Bound on producers tracked per partition; the least recently active are dropped
/// first once it is reached (they then get OUT_OF_ORDER/UNKNOWN on a late retry).
pub const MAX_PRODUCERS_PER_PARTITION: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's stored maxTimestamp: a retry's answer carries it as the log append
    /// time, as Kafka's. (Absent from snapshots of older versions.)
    #[serde(default = "no_timestamp")]
    pub max_timestamp: i64,
}

fn no_timestamp() -> i64 {
    -1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<CachedBatch>,
    pub last_timestamp_ms: i64,
    /// The coordinator epoch of the producer's last transaction marker (-1: none).
    #[serde(default = "no_coordinator_epoch")]
    pub coordinator_epoch: i32,
    /// The first offset of the producer's ongoing transaction (Kafka's
    /// currentTxnFirstOffset): set by its first transactional batch, cleared by a marker.
    #[serde(default)]
    pub current_txn_first_offset: Option<i64>,
}

fn no_coordinator_epoch() -> i32 {
    -1
}

impl ProducerEntry {
    /// The sequence of the last record appended at this epoch (-1: none).
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_sequence)
    }
}

/// A transaction a marker ended (Kafka's CompletedTxn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// What an idempotent batch may do, decided before it is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Next in sequence (or not idempotent): append it.
    Append,
    /// A retry of a batch already in the log: answer success with its first offset and
    /// its stored maxTimestamp.
    Duplicate {
        first_offset: i64,
        max_timestamp: i64,
    },
}

/// Kafka error codes a produce can get from the sequence check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45)
    OutOfOrder,
    /// INVALID_PRODUCER_EPOCH (47)
    InvalidEpoch,
    /// UNKNOWN_PRODUCER_ID (59): no state for this producer and a non-zero sequence.
    UnknownProducer,
    /// INVALID_TXN_STATE (48): a non-transactional batch while the producer's
    /// transaction is ongoing.
    InvalidTxnState,
}

/// Why a transaction marker is refused (Kafka's appendEndTxnMarker checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerError {
    /// INVALID_PRODUCER_EPOCH (47): the marker's producer epoch is below the producer's.
    InvalidEpoch,
    /// TRANSACTION_COORDINATOR_FENCED (52): an older coordinator epoch than the last
    /// marker's.
    CoordinatorFenced,
}

impl MarkerError {
    pub fn code(self) -> i16 {
        match self {
            MarkerError::InvalidEpoch => 47,
            MarkerError::CoordinatorFenced => 52,
        }
    }
}

impl SequenceError {
    pub fn code(self) -> i16 {
        match self {
            SequenceError::OutOfOrder => 45,
            SequenceError::InvalidEpoch => 47,
            SequenceError::UnknownProducer => 59,
            SequenceError::InvalidTxnState => 48,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every ongoing transaction: the lowest bounds the
    /// last stable offset. Derived from `producers` (rebuilt by `reindex` after loading).
    #[serde(skip)]
    ongoing: BTreeSet<(i64, i64)>,
}

/// The on-disk form: the table plus the log offset it is valid up to (exclusive).
#[derive(Debug, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    pub next_offset: i64,
    pub table: ProducerStateTable,
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every tracked producer (DescribeProducers).
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&id, entry)| (id, entry))
    }

    /// The first offset of the earliest ongoing transaction.
    pub fn first_ongoing_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|&(offset, _)| offset)
    }

    /// The LSO an aborted transaction's index entry records (Kafka's
    /// lastStableOffset(completedTxn)): the earliest other ongoing transaction's first
    /// offset, else just past the marker. Call it after `record_marker`.
    pub fn last_stable_offset_after(&self, done: &CompletedTxn) -> i64 {
        self.first_ongoing_offset().unwrap_or(done.last_offset + 1)
    }

    /// Rebuilds the derived index of ongoing transactions (after deserializing).
    fn reindex(&mut self) {
        self.ongoing = self
            .producers
            .iter()
            .filter_map(|(&id, entry)| Some((entry.current_txn_first_offset?, id)))
            .collect();
    }

    /// The last offset written by each producer tracked here (the log cleaner keeps
    /// those batches, so that a producer's last sequence survives compaction).
    pub fn last_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(&id, entry)| Some((id, entry.batches.back()?.last_offset)))
            .collect()
    }

    /// Decides whether a batch from a client may be appended.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        let check = self.check_sequence(header)?;
        let ongoing = self
            .producers
            .get(&header.producer_id)
            .is_some_and(|entry| entry.current_txn_first_offset.is_some());
        if check == SequenceCheck::Append && ongoing && !header.is_transactional() {
            return Err(SequenceError::InvalidTxnState);
        }
        Ok(check)
    }

    /// Decides whether a coordinator's own batch may be appended: its producer's epoch
    /// must not be older than the one seen (Kafka skips the sequence check for the
    /// COORDINATOR origin).
    pub fn check_epoch(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        match self.producers.get(&header.producer_id) {
            Some(entry) if header.has_producer_id() && header.producer_epoch < entry.epoch => {
                Err(SequenceError::InvalidEpoch)
            }
            _ => Ok(SequenceCheck::Append),
        }
    }

    fn check_sequence(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        if !header.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let first = header.base_sequence;
        let last = header.last_sequence();
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return if first == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::UnknownProducer)
            };
        };
        if header.producer_epoch < entry.epoch {
            return Err(SequenceError::InvalidEpoch);
        }
        if header.producer_epoch > entry.epoch {
            // A bumped epoch restarts its sequence at zero.
            return if first == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder)
            };
        }
        if let Some(cached) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate {
                first_offset: cached.first_offset,
                max_timestamp: cached.max_timestamp,
            });
        }
        match entry.batches.back() {
            Some(latest) if first == next_sequence(latest.last_sequence) => {
                Ok(SequenceCheck::Append)
            }
            // Only a transaction marker seen at this epoch: no last sequence yet.
            None if first == 0 => Ok(SequenceCheck::Append),
            _ => Err(SequenceError::OutOfOrder),
        }
    }

    /// Records an appended batch (base offset already assigned), the leader's own or one
    /// a follower copied. A control batch (a transaction marker, which a follower copies
    /// from its leader) carries no sequence: it moves the producer's epoch and time only,
    /// as Kafka's appendEndTxnMarker.
    pub fn record(&mut self, header: &BatchHeader, timestamp_ms: i64) {
        if !header.has_producer_id() {
            return;
        }
        if !self.producers.contains_key(&header.producer_id)
            && self.producers.len() >= MAX_PRODUCERS_PER_PARTITION
        {
            self.evict_oldest();
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(MAX_CACHED_BATCHES),
                last_timestamp_ms: timestamp_ms,
                coordinator_epoch: -1,
                current_txn_first_offset: None,
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if header.is_control() {
            entry.last_timestamp_ms = entry.last_timestamp_ms.max(timestamp_ms);
            return;
        }
        if entry.batches.len() == MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(CachedBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        });
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(timestamp_ms);
        debug_assert!(entry.batches.len() <= MAX_CACHED_BATCHES);
        if header.is_transactional() && entry.current_txn_first_offset.is_none() {
            // The producer's first batch of a transaction begins it.
            entry.current_txn_first_offset = Some(header.base_offset);
            self.ongoing
                .insert((header.base_offset, header.producer_id));
        }
    }

    /// Whether a marker for `producer_id` may be appended (Kafka's appendEndTxnMarker
    /// checks; a producer never seen here may get one).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), MarkerError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(MarkerError::InvalidEpoch);
        }
        if entry.coordinator_epoch > coordinator_epoch {
            return Err(MarkerError::CoordinatorFenced);
        }
        Ok(())
    }

    /// Records an appended marker batch (`header` as stored): it ends the producer's
    /// ongoing transaction, if any, which is returned (a marker without data changes no
    /// LSO and needs no transaction index entry, as in Kafka).
    pub fn record_marker(
        &mut self,
        header: &BatchHeader,
        marker: EndTxnMarker,
        timestamp_ms: i64,
    ) -> Option<CompletedTxn> {
        self.record(header, timestamp_ms);
        let entry = self.producers.get_mut(&header.producer_id)?;
        entry.coordinator_epoch = marker.coordinator_epoch;
        let first_offset = entry.current_txn_first_offset.take()?;
        self.ongoing.remove(&(first_offset, header.producer_id));
        Some(CompletedTxn {
            producer_id: header.producer_id,
            first_offset,
            last_offset: header.base_offset,
            aborted: !marker.commit,
        })
    }

    /// Forgets producers idle for longer than `producer.id.expiration.ms`; one with an
    /// ongoing transaction stays (Kafka's isProducerExpired).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms
        });
    }

    fn evict_oldest(&mut self) {
        if let Some((&oldest, _)) = self
            .producers
            .iter()
            .filter(|(_, entry)| entry.current_txn_first_offset.is_none())
            .min_by_key(|(_, entry)| entry.last_timestamp_ms)
        {
            self.producers.remove(&oldest);
        }
    }
}

/// The producer state of `log` as it is now, from the table in `snapshot` if it still
/// describes a prefix of the log (its offset within [log start, log end]) and the log's
/// transaction indexes were all trusted, then every batch after it replayed from the
/// log; without one, all of the log is replayed. Ongoing transactions replay too (one
/// begun before a crash stays open until its marker). Every aborted transaction the
/// replay ends goes into the transaction index if missing there (Kafka rebuilds it when
/// recovering segments). Used at open, and by a follower after [`Log::truncate_to`].
/// Blocking: reads one header per replayed batch (and the marker of a control batch).
pub fn rebuild_producer_state(
    log: &mut Log,
    snapshot: Option<ProducerSnapshot>,
) -> Result<ProducerStateTable, LogError> {
    let snapshot = snapshot.filter(|s| {
        log.txn_indexes_trusted()
            && s.next_offset <= log.log_end_offset()
            && s.next_offset >= log.log_start_offset()
    });
    let (mut table, replay_from) = match snapshot {
        Some(mut s) => {
            s.table.reindex();
            (s.table, s.next_offset)
        }
        None => (ProducerStateTable::default(), log.log_start_offset()),
    };
    let mut aborted = Vec::new();
    log.visit_batches_for_producer_state(replay_from, |header, marker| {
        if header.base_offset < replay_from {
            return;
        }
        let Some(marker) = marker else {
            table.record(header, header.max_timestamp);
            return;
        };
        if let Some(done) = table.record_marker(header, marker, header.max_timestamp) {
            if done.aborted {
                let last_stable_offset = table.last_stable_offset_after(&done);
                aborted.push(AbortedTxn {
                    producer_id: done.producer_id,
                    first_offset: done.first_offset,
                    last_offset: done.last_offset,
                    last_stable_offset,
                });
            }
        }
    })?;
    for entry in aborted {
        log.add_aborted_txn(entry)?;
    }
    Ok(table)
}

/// The inputs of the last stable offset besides the high watermark (Kafka's
/// firstUnstableOffset): the first offset of the earliest ongoing transaction, and the
/// transactions a marker ended whose marker is not yet below the high watermark (a
/// read_committed consumer must not see their records before it can see the marker).
/// Memory only; bounded by the markers appended since the high watermark last moved.
#[derive(Debug, Default)]
pub struct UnstableTxns {
    first_ongoing: Option<i64>,
    /// (first offset, marker offset), in marker order.
    unreplicated: VecDeque<(i64, i64)>,
}

impl UnstableTxns {
    pub fn set_first_ongoing(&mut self, first_offset: Option<i64>) {
        self.first_ongoing = first_offset;
    }

    pub fn completed(&mut self, txn: &CompletedTxn) {
        self.unreplicated
            .push_back((txn.first_offset, txn.last_offset));
    }

    /// Forgets the completed transactions (after a rebuild: their markers are in the log).
    pub fn clear_completed(&mut self) {
        self.unreplicated.clear();
    }

    /// min(first unstable offset, high watermark); completed transactions whose marker
    /// is below the high watermark are stable and forgotten.
    pub fn last_stable_offset(&mut self, high_watermark: i64) -> i64 {
        while self
            .unreplicated
            .front()
            .is_some_and(|&(_, marker)| marker < high_watermark)
        {
            self.unreplicated.pop_front();
        }
        let first_unreplicated = self.unreplicated.iter().map(|&(first, _)| first).min();
        [self.first_ongoing, first_unreplicated]
            .into_iter()
            .flatten()
            .fold(high_watermark, i64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{test_support::batch_with, BatchHeader};

    fn header(pid: i64, epoch: i16, seq: i32, count: usize, base_offset: i64) -> BatchHeader {
        let values: Vec<&[u8]> = (0..count).map(|_| &b"v"[..]).collect();
        let mut h = BatchHeader::parse(&batch_with(&values, 1, pid, epoch, seq)).unwrap();
        h.base_offset = base_offset;
        h
    }

    #[test]
    fn sequences_advance_and_retries_are_duplicates() {
        let mut t = ProducerStateTable::default();
        let first = header(7, 0, 0, 3, 0);
        assert_eq!(t.check(&first), Ok(SequenceCheck::Append));
        t.record(&first, 1);
        let second = header(7, 0, 3, 2, 3);
        assert_eq!(t.check(&second), Ok(SequenceCheck::Append));
        t.record(&second, 2);
        assert_eq!(
            t.check(&header(7, 0, 0, 3, 99)),
            Ok(SequenceCheck::Duplicate {
                first_offset: 0,
                max_timestamp: first.max_timestamp
            })
        );
        assert_eq!(
            t.check(&header(7, 0, 9, 1, 99)),
            Err(SequenceError::OutOfOrder)
        );
        assert_eq!(t.check(&header(7, 0, 5, 1, 5)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut t = ProducerStateTable::default();
        for i in 0..6 {
            t.record(&header(1, 0, i, 1, i as i64), 1);
        }
        assert_eq!(t.get(1).unwrap().batches.len(), MAX_CACHED_BATCHES);
        assert_eq!(
            t.check(&header(1, 0, 0, 1, 0)),
            Err(SequenceError::OutOfOrder)
        );
        let retry = header(1, 0, 1, 1, 0);
        assert_eq!(
            t.check(&retry),
            Ok(SequenceCheck::Duplicate {
                first_offset: 1,
                max_timestamp: retry.max_timestamp
            })
        );
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 3, 0, 1, 0), 1);
        assert_eq!(
            t.check(&header(1, 2, 1, 1, 0)),
            Err(SequenceError::InvalidEpoch)
        );
        assert_eq!(
            t.check(&header(1, 4, 5, 1, 0)),
            Err(SequenceError::OutOfOrder)
        );
        assert_eq!(t.check(&header(1, 4, 0, 1, 0)), Ok(SequenceCheck::Append));
        t.record(&header(1, 4, 0, 1, 1), 2);
        assert_eq!(t.get(1).unwrap().epoch, 4);
        assert_eq!(t.get(1).unwrap().batches.len(), 1);
    }

    #[test]
    fn unknown_producers_must_start_at_zero() {
        let t = ProducerStateTable::default();
        assert_eq!(
            t.check(&header(9, 0, 4, 1, 0)),
            Err(SequenceError::UnknownProducer)
        );
        assert_eq!(t.check(&header(9, 0, 0, 1, 0)), Ok(SequenceCheck::Append));
        assert_eq!(
            t.check(&header(-1, -1, -1, 1, 0)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn a_transaction_marker_moves_the_epoch_but_caches_no_sequence() {
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 0, 0, 2, 0), 1);
        let mut marker = header(1, 1, -1, 1, 2);
        marker.attributes |= 0x20;
        assert!(marker.is_control());
        t.record(&marker, 5);
        let entry = t.get(1).unwrap();
        assert_eq!((entry.epoch, entry.batches.len()), (1, 0));
        assert_eq!(entry.last_timestamp_ms, 5);
        // The new epoch starts its sequence at zero.
        assert_eq!(t.check(&header(1, 1, 0, 1, 3)), Ok(SequenceCheck::Append));
        assert_eq!(
            t.check(&header(1, 1, 4, 1, 3)),
            Err(SequenceError::OutOfOrder)
        );
        // A marker at the same epoch keeps the sequences.
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 0, 0, 2, 0), 1);
        marker.producer_epoch = 0;
        t.record(&marker, 2);
        assert_eq!(t.check(&header(1, 0, 2, 1, 3)), Ok(SequenceCheck::Append));
    }

    fn txn_header(pid: i64, epoch: i16, seq: i32, count: usize, base_offset: i64) -> BatchHeader {
        let mut h = header(pid, epoch, seq, count, base_offset);
        h.attributes |= 0x10;
        h
    }

    fn marker_header(pid: i64, epoch: i16, base_offset: i64) -> BatchHeader {
        let mut h = header(pid, epoch, -1, 1, base_offset);
        h.attributes |= 0x30;
        h
    }

    #[test]
    fn a_transaction_begins_with_its_first_batch_and_ends_with_a_marker() {
        let mut t = ProducerStateTable::default();
        t.record(&txn_header(1, 0, 0, 2, 10), 1);
        t.record(&txn_header(2, 0, 0, 1, 12), 1);
        t.record(&txn_header(1, 0, 2, 1, 13), 1);
        assert_eq!(t.get(1).unwrap().current_txn_first_offset, Some(10));
        assert_eq!(t.first_ongoing_offset(), Some(10));
        // Non-transactional data from a producer inside a transaction: INVALID_TXN_STATE.
        assert_eq!(
            t.check(&header(1, 0, 3, 1, 14)),
            Err(SequenceError::InvalidTxnState)
        );
        assert_eq!(
            t.check(&txn_header(1, 0, 3, 1, 14)),
            Ok(SequenceCheck::Append)
        );
        let commit = EndTxnMarker {
            commit: true,
            coordinator_epoch: 3,
        };
        let done = t
            .record_marker(&marker_header(1, 0, 14), commit, 2)
            .unwrap();
        assert_eq!(
            done,
            CompletedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 14,
                aborted: false
            }
        );
        assert_eq!(t.first_ongoing_offset(), Some(12));
        assert_eq!(t.last_stable_offset_after(&done), 12);
        assert_eq!(t.get(1).unwrap().coordinator_epoch, 3);
        // A marker without a transaction ends nothing; the checks fence stale senders.
        assert_eq!(t.record_marker(&marker_header(1, 0, 15), commit, 2), None);
        assert_eq!(t.check_marker(1, 0, 2), Err(MarkerError::CoordinatorFenced));
        assert_eq!(t.check_marker(2, -1, 0), Err(MarkerError::InvalidEpoch));
        assert_eq!(t.check_marker(9, 0, 0), Ok(()));
        // The open transaction outlives expiration and round-trips through a snapshot.
        t.expire(1_000_000, 10);
        assert!(t.get(1).is_none());
        assert!(t.get(2).is_some());
        let json = serde_json::to_vec(&t).unwrap();
        let mut back: ProducerStateTable = serde_json::from_slice(&json).unwrap();
        back.reindex();
        assert_eq!(back, t);
        assert_eq!(back.first_ongoing_offset(), Some(12));
    }

    #[test]
    fn the_lso_waits_for_ongoing_and_unreplicated_transactions() {
        let mut u = UnstableTxns::default();
        assert_eq!(u.last_stable_offset(10), 10);
        u.set_first_ongoing(Some(4));
        assert_eq!(u.last_stable_offset(10), 4);
        assert_eq!(u.last_stable_offset(3), 3);
        // Ended by a marker at 8: unstable until the high watermark passes the marker.
        u.set_first_ongoing(None);
        u.completed(&CompletedTxn {
            producer_id: 1,
            first_offset: 4,
            last_offset: 8,
            aborted: true,
        });
        assert_eq!(u.last_stable_offset(8), 4);
        assert_eq!(u.last_stable_offset(9), 9);
        // Forgotten once stable, even if the high watermark were to be seen lower again.
        assert_eq!(u.last_stable_offset(8), 8);
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 0, i32::MAX, 1, 0), 1);
        assert_eq!(t.check(&header(1, 0, 0, 1, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn idle_producers_expire_and_snapshots_round_trip() {
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 0, 0, 1, 0), 1_000);
        t.record(&header(2, 0, 0, 1, 1), 5_000);
        let snapshot = ProducerSnapshot {
            next_offset: 2,
            table: t.clone(),
        };
        let json = serde_json::to_vec(&snapshot).unwrap();
        let back: ProducerSnapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.table, t);
        t.expire(6_000, 2_000);
        assert!(t.get(1).is_none());
        assert!(t.get(2).is_some());
    }
}
