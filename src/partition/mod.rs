//! The partitions this broker hosts: their logs, idempotent producer state, and the
//! wake-ups long-polling fetches wait on.
//!
//! [`PartitionManager`] reconciles the local partitions with the metadata image (open a
//! log for every partition assigned here, delete the logs of deleted topics). A
//! [`Partition`] owns one log behind a mutex: a produce validates its batch outside the
//! lock, then checks the producer sequence, assigns offsets and appends under it.
//!
//! Threading: the log mutex is held across file IO, so async code never takes it. Appends
//! go through a per-partition FIFO drained on a blocking thread, one drainer per request
//! ([`AppendSubmission`]); reads take a [`ReadPlan`] under the mutex (memory only) and pread outside it;
//! the log start offset and high watermark are atomics. Everything else that touches
//! files (open/recovery, flush, close, delete) runs on blocking threads.
//!
//! Replicas: each partition knows its role from the metadata image ([`replica`]). The
//! leader takes produce requests and advances the high watermark to the least log end
//! offset of its in-sync replicas (followers report theirs by fetching); with only itself
//! in the ISR that is its own log end. Consumers read below the high watermark; acks=all
//! answers once it passes the batch.

mod append_queue;
#[cfg(test)]
mod append_validation_tests;
pub mod producer_state;
pub mod replica;
mod retention;
#[cfg(test)]
mod txn_tests;
mod verification;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::dynamic_config::LiveConfig;
use crate::log::batch::{self, BatchError, BatchHeader};
use crate::log::cleaner::CleanableLog;
use crate::log::dir::{self, LogDirHealth};
use crate::log::txn_index::AbortedTxn;
use crate::log::txn_marker::{self, EndTxnMarker};
use crate::log::validator::{self, RecordError, RecordRules, RejectKind, Rejection};
use crate::log::{Log, LogConfig, LogError};
use crate::metadata::partition_change::AlterPartitionRequest;
use crate::metadata::{AlterPartitionAnswer, PartitionRecord};
use crate::metadata::{MetadataImage, TopicImage};
use crate::replication::leader::{AckDecision, AlterPartitionAccepted, FetchError, LeaderConfig};
use append_queue::AppendQueue;
pub use append_queue::{AppendSubmission, PendingVerification, VerificationAnswer};
use producer_state::{
    CompletedTxn, ProducerSnapshot, ProducerStateTable, SequenceCheck, UnstableTxns,
};
use replica::{monotonic_ms, ReplicaState, Transition};
use verification::Verifications;
pub use verification::{Verification, VerificationGuard};

/// Kafka error codes the partition layer answers with.
pub mod error_code {
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_RECORD: i16 = 87;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
}

/// One producer's state as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerDescription {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    pub coordinator_epoch: i32,
    /// -1: no ongoing transaction.
    pub current_txn_start_offset: i64,
}

/// An error for one partition of a request: a Kafka error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    pub code: i16,
    pub message: String,
}

impl PartitionError {
    fn new(code: i16, message: impl Into<String>) -> Self {
        PartitionError {
            code,
            message: message.into(),
        }
    }
}

impl From<LogError> for PartitionError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::OffsetOutOfRange { .. } => {
                PartitionError::new(error_code::OFFSET_OUT_OF_RANGE, error.to_string())
            }
            // Write paths also take the log directory offline (see `Partition::storage_failed`),
            // which logs the one ERROR line.
            other => {
                tracing::warn!(error = %other, "log failure");
                PartitionError::new(error_code::KAFKA_STORAGE_ERROR, other.to_string())
            }
        }
    }
}

impl From<BatchError> for PartitionError {
    fn from(error: BatchError) -> Self {
        let code = match error {
            BatchError::Corrupt(_) | BatchError::CrcMismatch { .. } => error_code::CORRUPT_MESSAGE,
            BatchError::Invalid(_) => error_code::INVALID_RECORD,
            BatchError::Encode(_) => error_code::KAFKA_STORAGE_ERROR,
        };
        PartitionError::new(code, error.to_string())
    }
}

/// A refused append: the partition's error and, for per-record rules (timestamps, keys
/// of compacted topics), which records broke them (Produce v8+ `record_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendError {
    pub error: PartitionError,
    pub record_errors: Vec<RecordError>,
}

impl From<PartitionError> for AppendError {
    fn from(error: PartitionError) -> Self {
        AppendError {
            error,
            record_errors: Vec::new(),
        }
    }
}

impl From<LogError> for AppendError {
    fn from(error: LogError) -> Self {
        PartitionError::from(error).into()
    }
}

impl From<Rejection> for AppendError {
    fn from(rejection: Rejection) -> Self {
        let code = match rejection.kind {
            RejectKind::Corrupt => error_code::CORRUPT_MESSAGE,
            RejectKind::InvalidRecord => error_code::INVALID_RECORD,
            RejectKind::InvalidTimestamp => error_code::INVALID_TIMESTAMP,
            RejectKind::TooLarge => error_code::MESSAGE_TOO_LARGE,
        };
        AppendError {
            error: PartitionError::new(code, rejection.message),
            record_errors: rejection.record_errors,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    /// The offset after the batch: acks=all waits for the high watermark to reach it.
    pub next_offset: i64,
    pub log_start_offset: i64,
    /// The produce answer's logAppendTime: the append time in a LogAppendTime topic, a
    /// retry's stored maxTimestamp (as Kafka), else -1.
    pub log_append_time_ms: i64,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed only: the aborted transactions overlapping the records returned.
    pub aborted_transactions: Vec<AbortedTxn>,
    /// For a follower whose log diverged: (epoch, end offset) to truncate by (KIP-320).
    pub diverging_epoch: Option<(i32, i64)>,
}

/// Who reads: a consumer sees records below the high watermark; a follower replica (by
/// its node id) everything, and its fetch offset tells the leader what it has; this
/// node's own readers (a coordinator loading its shard) everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// isolation.level=read_uncommitted: below the high watermark.
    Consumer,
    /// isolation.level=read_committed: below the last stable offset, with the aborted
    /// transactions the records hold.
    CommittedConsumer,
    Follower {
        replica_id: i32,
        /// The leader epoch the follower fetches in (-1: not sent, Fetch < v9).
        current_leader_epoch: i32,
        /// The epoch of the follower's last batch (-1: none), to find divergence.
        last_fetched_epoch: i32,
    },
    Local,
}

/// Where a follower stands, for its next fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerPosition {
    pub log_end_offset: i64,
    pub log_start_offset: i64,
    /// The epoch of the last batch in the log (-1: none).
    pub last_fetched_epoch: i32,
}

/// Where a timestamp lookup landed: the first record at or after the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp_ms: i64,
}

const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Kafka's file of log start offsets moved past the first segment, one per log directory.
const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
/// Kafka's file of every partition's high watermark, one per log directory.
const HIGH_WATERMARK_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";
/// DeleteRecords' offset meaning "the high watermark".
const HIGH_WATERMARK: i64 = -1;
const PRODUCER_SNAPSHOT_FILE: &str = "producer-state.json";

struct PartitionState {
    log: Log,
    producers: ProducerStateTable,
}

/// Who appends: a client (sequence and epoch checked) or a coordinator writing its own
/// records (epoch checked).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Origin {
    Client,
    Coordinator,
}

/// One hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    /// Role, leader epoch, ISR and (when leading) the followers' positions. Memory only,
    /// never held across IO; taken inside the append lock when both are needed.
    replica: Mutex<ReplicaState>,
    /// The topic's effective produce rules, read on every append; swapped by
    /// [`Partition::update_config`] (an uncontended read lock, no crate needed).
    record_rules: RwLock<RecordRules>,
    /// What the log was last given, so an unchanged config does not take the append lock.
    log_config: Mutex<LogConfig>,
    producer_id_expiration_ms: i64,
    /// The append lock: held across file IO, so only ever taken on blocking threads.
    state: Mutex<PartitionState>,
    /// Copies of the log's offsets, published after each append for async readers.
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    /// The epoch of the log's last batch (-1: none): a follower's `last_fetched_epoch`.
    last_epoch: AtomicI32,
    /// Only grows within a leader epoch; at most `log_end_offset`.
    high_watermark: AtomicI64,
    appends: Mutex<AppendQueue>,
    /// The last stable offset's inputs besides the high watermark. A leaf lock (memory
    /// only), taken inside the append lock when both are needed.
    unstable_txns: Mutex<UnstableTxns>,
    /// The last stable offset, published (under `unstable_txns`) whenever it or the high
    /// watermark may have moved: readers load it without a lock.
    last_stable_offset: AtomicI64,
    /// Transaction verification guards (KIP-890): a leaf lock, memory only, taken by
    /// produce handlers on async workers and inside the append lock.
    verifications: Mutex<Verifications>,
    /// Woken when the log end or the high watermark moves, so also when the last stable
    /// offset does (fetches park on it).
    data_arrived: Notify,
    /// Where this partition, leading, queues the ISR changes it asks the controller for.
    isr_changes: Arc<IsrChangeQueue>,
    health: Arc<LogDirHealth>,
    /// Set (under the append lock) when this broker stops hosting the partition (topic
    /// deleted, or reassigned away) and its directory goes: a replica fetcher or request
    /// still holding it must not write into a directory that is gone.
    removed: AtomicBool,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Partition {
    /// Opens (or creates) the partition directory, its log and its producer state.
    #[allow(clippy::too_many_arguments)]
    fn open(
        dir: &Path,
        topic: &TopicImage,
        index: i32,
        assignment: Assignment,
        log_config: LogConfig,
        record_rules: RecordRules,
        producer_id_expiration_ms: i64,
        health: Arc<LogDirHealth>,
        checkpointed: Checkpointed,
    ) -> Result<Partition, PartitionError> {
        let Assignment {
            node_id,
            record,
            leader_config,
            isr_changes,
        } = assignment;
        std::fs::create_dir_all(dir).map_err(LogError::from)?;
        write_partition_metadata(dir, topic.topic_id)?;
        let mut log = Log::open(dir, log_config.clone())?;
        if let Some(offset) = checkpointed.log_start {
            // Segments whose removal a crash interrupted go now.
            log.advance_log_start_offset(offset.clamp(0, log.log_end_offset()))?;
            log.delete_segments_below_start()?;
        }
        if record.leader == node_id {
            log.assign_leader_epoch(record.leader_epoch)?;
        }
        let producers = load_producer_state(dir, &mut log)?;
        let mut unstable_txns = UnstableTxns::default();
        unstable_txns.set_first_ongoing(producers.first_ongoing_offset());
        // A lone replica's whole log is committed. A replicated one starts from its
        // checkpointed high watermark (within the log), else from the log start, and
        // learns the rest from the followers' fetches (or the leader's answers).
        let high_watermark = if record.isr == [node_id] && record.leader == node_id {
            log.log_end_offset()
        } else {
            checkpointed
                .high_watermark
                .unwrap_or(0)
                .clamp(log.log_start_offset(), log.log_end_offset())
        };
        let replica = ReplicaState::new(
            node_id,
            record,
            leader_config,
            log.log_end_offset(),
            high_watermark,
            monotonic_ms(),
        );
        Ok(Partition {
            topic: topic.name.clone(),
            topic_id: topic.topic_id,
            index,
            replica: Mutex::new(replica),
            record_rules: RwLock::new(record_rules),
            log_config: Mutex::new(log_config),
            producer_id_expiration_ms,
            log_start_offset: AtomicI64::new(log.log_start_offset()),
            log_end_offset: AtomicI64::new(log.log_end_offset()),
            last_epoch: AtomicI32::new(log.latest_epoch().unwrap_or(-1)),
            high_watermark: AtomicI64::new(high_watermark),
            state: Mutex::new(PartitionState { log, producers }),
            appends: Mutex::new(AppendQueue::default()),
            last_stable_offset: AtomicI64::new(unstable_txns.last_stable_offset(high_watermark)),
            unstable_txns: Mutex::new(unstable_txns),
            verifications: Mutex::new(Verifications::default()),
            data_arrived: Notify::new(),
            isr_changes,
            health,
            removed: AtomicBool::new(false),
        })
    }

    /// A write, fsync or roll failed: the file may now hold (or have lost) data that
    /// memory does not describe, so the log directory goes offline (fail-stop) and the
    /// request gets KAFKA_STORAGE_ERROR.
    fn storage_failed(&self, error: LogError) -> PartitionError {
        self.health
            .trip(&format_args!("{}-{}: {error}", self.topic, self.index));
        PartitionError::new(error_code::KAFKA_STORAGE_ERROR, error.to_string())
    }

    /// Whether this partition's log directory went offline (a storage error tripped it):
    /// nothing more can be written or read here until a restart.
    pub fn is_offline(&self) -> bool {
        self.health.is_offline()
    }

    fn check_online(&self) -> Result<(), PartitionError> {
        if self.removed.load(Ordering::Acquire) {
            return Err(PartitionError::new(
                error_code::NOT_LEADER_OR_FOLLOWER,
                "this broker no longer hosts the partition",
            ));
        }
        if self.is_offline() {
            return Err(PartitionError::new(
                error_code::KAFKA_STORAGE_ERROR,
                format!("log directory {} is offline", self.health.dir().display()),
            ));
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, PartitionState> {
        // A panic while holding the lock leaves the log as it was on disk; carry on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn replica(&self) -> MutexGuard<'_, ReplicaState> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn leader_epoch(&self) -> i32 {
        self.replica().leader_epoch()
    }

    pub fn is_leader(&self) -> bool {
        self.replica().is_leader()
    }

    /// The ISR size as this node knows it.
    pub fn isr_len(&self) -> usize {
        self.replica().isr_len()
    }

    /// acks=all before the append: the ISR is at least `min.insync.replicas`.
    pub fn acks_all_allowed(&self) -> bool {
        self.replica().acks_all_allowed()
    }

    /// Takes the image's version of this partition and the topic's replication settings.
    /// Becoming leader in a new epoch records the epoch at the log end (Kafka's
    /// makeLeader). Blocking: may take the append lock and write the epoch checkpoint.
    pub fn apply_assignment(
        &self,
        record: PartitionRecord,
        leader_config: LeaderConfig,
        ineligible: &BTreeSet<i32>,
    ) -> Result<Transition, PartitionError> {
        let mut state = self.lock();
        let (transition, advanced) = self.replica().apply(
            record,
            leader_config,
            ineligible,
            state.log.log_end_offset(),
            self.high_watermark.load(Ordering::Acquire),
            monotonic_ms(),
        );
        match transition {
            Transition::BecomeLeader { leader_epoch } => {
                state
                    .log
                    .assign_leader_epoch(leader_epoch)
                    .map_err(|error| self.storage_failed(error))?;
                self.last_epoch
                    .store(state.log.latest_epoch().unwrap_or(-1), Ordering::Release);
                // Markers appended as a follower did not pass through the table.
                self.verifications().clear();
                tracing::info!(topic = %self.topic, partition = self.index, leader_epoch, "leading");
            }
            Transition::BecomeFollower {
                leader,
                leader_epoch,
            } => {
                tracing::info!(topic = %self.topic, partition = self.index, leader, leader_epoch, "following");
            }
            Transition::Unchanged => {}
        }
        drop(state);
        self.publish_high_watermark(advanced);
        // Parked acks=all produces re-check leadership; fetches re-read.
        self.data_arrived.notify_waiters();
        Ok(transition)
    }

    /// Hands the topic's new effective settings to the running partition: the next
    /// append validates against `record_rules`; the log rolls, indexes and flushes by
    /// `log_config` from then on. Blocking when the log config changed (it takes the
    /// append lock).
    pub fn update_config(&self, log_config: LogConfig, record_rules: RecordRules) {
        // Checked under the read lock first: every metadata image comes through here, and
        // a write lock would stall this partition's appends for nothing.
        if self.record_rules() != record_rules {
            *self.record_rules.write().unwrap_or_else(|p| p.into_inner()) = record_rules;
        }
        let mut applied = self.log_config.lock().unwrap_or_else(|p| p.into_inner());
        if *applied != log_config {
            self.lock().log.set_config(log_config.clone());
            *applied = log_config;
        }
    }

    /// The rules the next append is validated against.
    pub fn record_rules(&self) -> RecordRules {
        *self.record_rules.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates and appends the record set of one produce request for this partition.
    /// Blocking: call it on a blocking thread (async code uses [`AppendSubmission`]).
    pub fn append(&self, records: &[u8]) -> Result<AppendResult, AppendError> {
        self.append_from(records, Origin::Client, Verification::Off)
    }

    /// [`Self::append`] of a batch whose transaction verification is `verification`: a
    /// transactional batch that would start a transaction here is refused with
    /// INVALID_TXN_STATE unless its guard is still the producer's.
    pub fn append_verified(
        &self,
        records: &[u8],
        verification: Verification,
    ) -> Result<AppendResult, AppendError> {
        self.append_from(records, Origin::Client, verification)
    }

    fn verifications(&self) -> MutexGuard<'_, Verifications> {
        self.verifications.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts verifying a transactional batch of `producer_id` at `epoch`: the guard to
    /// verify it under, or None when its transaction is known ongoing here (no question
    /// needed). `adds_partition`: a transactions-v2 producer, whose question adds the
    /// partition. Memory only: callable on async workers.
    pub fn start_txn_verification(
        &self,
        producer_id: i64,
        epoch: i16,
        adds_partition: bool,
    ) -> Option<VerificationGuard> {
        self.verifications()
            .start(producer_id, epoch, adds_partition)
    }

    /// A coordinator's own records (Kafka's COORDINATOR origin): a transactional offset
    /// commit carries the client's producer id and epoch, but no sequence of its own, so
    /// only the epoch is checked.
    pub fn append_as_coordinator(&self, records: &[u8]) -> Result<AppendResult, AppendError> {
        self.append_from(records, Origin::Coordinator, Verification::Off)
    }

    /// The leader epoch an append is stamped with; NOT_LEADER_OR_FOLLOWER unless this node
    /// leads. Checked under the append lock, so no append lands after a change of
    /// leadership.
    fn leading_epoch(&self) -> Result<i32, PartitionError> {
        let replica = self.replica();
        if !replica.is_leader() {
            return Err(PartitionError::new(
                error_code::NOT_LEADER_OR_FOLLOWER,
                format!("this node does not lead; leader {}", replica.leader()),
            ));
        }
        Ok(replica.leader_epoch())
    }

    fn append_from(
        &self,
        records: &[u8],
        origin: Origin,
        verification: Verification,
    ) -> Result<AppendResult, AppendError> {
        let now = now_ms();
        let valid = validator::validate_produce(records, now, &self.record_rules())?;
        let header = valid.header;
        let mut state = self.lock();
        // Checked under the lock: once a storage error tripped the directory, no append
        // (nor a duplicate's answer, which may name a batch not known durable) is acked.
        self.check_online()?;
        let leader_epoch = self.leading_epoch()?;
        let check = match origin {
            Origin::Client => state.producers.check(&header),
            Origin::Coordinator => state.producers.check_epoch(&header),
        };
        let (base_offset, log_append_time_ms) = match check {
            Ok(SequenceCheck::Duplicate {
                first_offset,
                max_timestamp,
            }) => (first_offset, max_timestamp),
            Ok(SequenceCheck::Append) => {
                if let Verification::Guard(guard) = verification {
                    let starts_txn = header.is_transactional()
                        && state
                            .producers
                            .get(header.producer_id)
                            .is_none_or(|entry| entry.current_txn_first_offset.is_none());
                    if starts_txn && !self.verifications().holds(header.producer_id, guard) {
                        // Kafka's InvalidTxnStateException for a batch missing its
                        // required verification.
                        return Err(PartitionError::new(
                            error_code::INVALID_TXN_STATE,
                            "Record was not part of an ongoing transaction",
                        )
                        .into());
                    }
                }
                let base_offset = state.log.log_end_offset();
                let mut owned = records.to_vec();
                batch::patch_offset_and_epoch(&mut owned, base_offset, leader_epoch);
                if valid.needs_max_timestamp_fix {
                    batch::set_max_timestamp(
                        &mut owned,
                        header.is_log_append_time(),
                        header.max_timestamp,
                    );
                }
                let stored = BatchHeader {
                    base_offset,
                    partition_leader_epoch: leader_epoch,
                    ..header
                };
                #[cfg(feature = "failpoints")]
                stall_point(&self.topic);
                if let Err(error) = state.log.append(&owned, &stored, now) {
                    return Err(self.storage_failed(error).into());
                }
                state.producers.record(&stored, now);
                if stored.is_transactional() {
                    let first_ongoing = state.producers.first_ongoing_offset();
                    self.update_unstable_txns(|unstable| unstable.set_first_ongoing(first_ongoing));
                    if verification != Verification::Off {
                        self.verifications()
                            .appended(stored.producer_id, stored.producer_epoch);
                    }
                }
                debug_assert_eq!(state.log.log_end_offset(), stored.last_offset() + 1);
                let log_append_time_ms = if stored.is_log_append_time() {
                    stored.max_timestamp
                } else {
                    validator::NO_TIMESTAMP
                };
                (base_offset, log_append_time_ms)
            }
            Err(error) => {
                return Err(PartitionError::new(
                    error.code(),
                    format!(
                        "producer {} epoch {} sequence {}: {error:?}",
                        header.producer_id, header.producer_epoch, header.base_sequence
                    ),
                )
                .into())
            }
        };
        let log_start_offset = state.log.log_start_offset();
        self.publish_offsets(&state.log);
        let advanced = self
            .replica()
            .on_local_append(state.log.log_end_offset(), monotonic_ms());
        drop(state);
        self.publish_high_watermark(advanced);
        self.data_arrived.notify_waiters();
        Ok(AppendResult {
            base_offset,
            next_offset: header.last_offset() - header.base_offset + base_offset + 1,
            log_start_offset,
            log_append_time_ms,
        })
    }

    /// Whole batches from `offset`, at most `max_bytes` (but at least one batch if
    /// `min_one_batch`), with the offsets every fetch answer carries.
    /// Blocking (preads): call it on a blocking thread. The append lock is held only while
    /// the read is planned, never across the preads.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        reader: Reader,
    ) -> Result<ReadResult, PartitionError> {
        let (plan, high_watermark, last_stable_offset, log_start_offset, aborted) = {
            let state = self.lock();
            // An offline directory serves nothing: its log end may hold a batch whose
            // fsync failed, which was never acknowledged and may not be on disk.
            self.check_online()?;
            if let Reader::Follower {
                replica_id,
                current_leader_epoch,
                last_fetched_epoch,
            } = reader
            {
                // KIP-320: a follower whose last epoch ends earlier here (or is unknown)
                // holds records this log does not; it must truncate before it fetches.
                if last_fetched_epoch >= 0 {
                    let (epoch, end_offset) = state.log.end_offset_for_epoch(last_fetched_epoch);
                    if epoch < last_fetched_epoch || end_offset < offset {
                        return Ok(ReadResult {
                            records: Bytes::new(),
                            high_watermark: self.high_watermark.load(Ordering::Acquire),
                            last_stable_offset: self.last_stable_offset(),
                            log_start_offset: state.log.log_start_offset(),
                            aborted_transactions: Vec::new(),
                            diverging_epoch: Some((epoch, end_offset)),
                        });
                    }
                }
                self.record_follower_fetch(replica_id, current_leader_epoch, offset)?;
            }
            let high_watermark = self.high_watermark.load(Ordering::Acquire);
            let last_stable_offset = self.last_stable_offset_at(high_watermark);
            // Consumers see committed records only (read_committed: no record of a
            // transaction not yet decided); followers copy everything.
            let max_offset = match reader {
                Reader::Consumer => high_watermark,
                Reader::CommittedConsumer => last_stable_offset,
                Reader::Follower { .. } | Reader::Local => state.log.log_end_offset(),
            };
            let aborted = match reader {
                Reader::CommittedConsumer => {
                    state.log.collect_aborted_txns(offset, last_stable_offset)
                }
                _ => Vec::new(),
            };
            (
                state
                    .log
                    .read_plan(offset, max_offset, max_bytes, min_one_batch)?,
                high_watermark,
                last_stable_offset,
                state.log.log_start_offset(),
                aborted,
            )
        };
        let records = plan.read()?;
        // Only the transactions the returned records overlap (Kafka bounds the search by
        // the end of the fetched data).
        let upper_bound_offset = end_of_records(&records);
        let aborted_transactions = aborted
            .into_iter()
            .filter(|txn| txn.first_offset < upper_bound_offset)
            .collect();
        Ok(ReadResult {
            records,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            aborted_transactions,
            diverging_epoch: None,
        })
    }

    /// Changes the LSO's inputs and publishes the LSO; with an identity `change`, after
    /// the high watermark moved. Serialized by the leaf lock, so the last store is
    /// computed from the latest high watermark.
    fn update_unstable_txns(&self, change: impl FnOnce(&mut UnstableTxns)) {
        let mut unstable = self.unstable_txns.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut unstable);
        let high_watermark = self.high_watermark.load(Ordering::Acquire);
        self.last_stable_offset.store(
            unstable.last_stable_offset(high_watermark),
            Ordering::Release,
        );
    }

    /// The last stable offset: below it every transaction is decided and its marker
    /// committed (Kafka's LSO, at most the high watermark). Lock-free.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable_offset_at(self.high_watermark.load(Ordering::Acquire))
    }

    /// The LSO as of `high_watermark` (a reader's earlier load); never below the log
    /// start (a transaction whose start DeleteRecords or retention removed holds nothing
    /// back there). The published LSO may lag a high watermark move by an instant: it is
    /// then lower, never wrongly higher (a transaction only starts at the log end).
    fn last_stable_offset_at(&self, high_watermark: i64) -> i64 {
        let log_start_offset = self.log_start_offset.load(Ordering::Acquire);
        self.last_stable_offset
            .load(Ordering::Acquire)
            .min(high_watermark)
            .max(log_start_offset.min(high_watermark))
    }

    /// Appends a transaction marker (COMMIT or ABORT) for `producer_id` as the leader
    /// (Kafka's appendAsLeader with a COORDINATOR origin): refused with
    /// INVALID_PRODUCER_EPOCH when `producer_epoch` is below the producer's, and with
    /// TRANSACTION_COORDINATOR_FENCED when `coordinator_epoch` is below its last marker's.
    /// The marker ends the producer's ongoing transaction; an aborted one goes into the
    /// transaction index. Blocking: async code uses [`Partition::submit_txn_marker`].
    pub fn append_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<AppendResult, AppendError> {
        let now = now_ms();
        let marker = EndTxnMarker {
            commit,
            coordinator_epoch,
        };
        let mut state = self.lock();
        self.check_online()?;
        let leader_epoch = self.leading_epoch()?;
        state
            .producers
            .check_marker(producer_id, producer_epoch, coordinator_epoch)
            .map_err(|error| {
                PartitionError::new(
                    error.code(),
                    format!(
                        "marker for producer {producer_id} epoch {producer_epoch} coordinator epoch {coordinator_epoch}: {error:?}"
                    ),
                )
            })?;
        let base_offset = state.log.log_end_offset();
        let mut bytes = txn_marker::encode_marker_batch(producer_id, producer_epoch, marker, now);
        batch::patch_offset_and_epoch(&mut bytes, base_offset, leader_epoch);
        let stored = BatchHeader::parse(&bytes).map_err(PartitionError::from)?;
        if let Err(error) = state.log.append(&bytes, &stored, now) {
            return Err(self.storage_failed(error).into());
        }
        let completed = state.producers.record_marker(&stored, marker, now);
        // A verification under way for this producer was for the transaction that ended,
        // unless it is a later one's (see `Verifications::ended`).
        self.verifications().ended(producer_id, producer_epoch);
        self.end_txn(&mut state, completed)?;
        let log_start_offset = state.log.log_start_offset();
        self.publish_offsets(&state.log);
        let advanced = self
            .replica()
            .on_local_append(state.log.log_end_offset(), monotonic_ms());
        drop(state);
        self.publish_high_watermark(advanced);
        self.data_arrived.notify_waiters();
        Ok(AppendResult {
            base_offset,
            next_offset: base_offset + 1,
            log_start_offset,
            log_append_time_ms: validator::NO_TIMESTAMP,
        })
    }

    /// After a marker was appended (leader or follower): the transaction it ended stays
    /// unstable until the marker is committed; an aborted one is indexed.
    fn end_txn(
        &self,
        state: &mut PartitionState,
        completed: Option<CompletedTxn>,
    ) -> Result<(), PartitionError> {
        let first_ongoing = state.producers.first_ongoing_offset();
        self.update_unstable_txns(|unstable| {
            unstable.set_first_ongoing(first_ongoing);
            if let Some(done) = &completed {
                unstable.completed(done);
            }
        });
        let Some(done) = completed else {
            return Ok(());
        };
        if done.aborted {
            let entry = AbortedTxn {
                producer_id: done.producer_id,
                first_offset: done.first_offset,
                last_offset: done.last_offset,
                last_stable_offset: state.producers.last_stable_offset_after(&done),
            };
            state
                .log
                .add_aborted_txn(entry)
                .map_err(|error| self.storage_failed(error))?;
        }
        Ok(())
    }

    /// DescribeProducers: the producers with state here, as the leader knows them.
    /// Blocking: takes the append lock (memory only under it).
    pub fn describe_producers(&self) -> Result<Vec<ProducerDescription>, PartitionError> {
        let state = self.lock();
        self.check_online()?;
        if !self.is_leader() {
            return Err(PartitionError::new(
                error_code::NOT_LEADER_OR_FOLLOWER,
                "this node does not lead the partition",
            ));
        }
        let mut producers: Vec<ProducerDescription> = state
            .producers
            .iter()
            .map(|(producer_id, entry)| ProducerDescription {
                producer_id,
                producer_epoch: entry.epoch,
                last_sequence: entry.last_sequence(),
                last_timestamp_ms: entry.last_timestamp_ms,
                coordinator_epoch: entry.coordinator_epoch,
                current_txn_start_offset: entry.current_txn_first_offset.unwrap_or(-1),
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        Ok(producers)
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark),
    /// then `checkpoint` persists it, then the segments wholly below it are removed.
    /// Returns the new log start offset (Kafka's low watermark). Blocking.
    fn delete_records(
        &self,
        offset: i64,
        checkpoint: impl FnOnce() -> Result<(), LogError>,
    ) -> Result<i64, PartitionError> {
        let moved = {
            let mut state = self.lock();
            self.check_online()?;
            let high_watermark = self.high_watermark.load(Ordering::Acquire);
            let offset = if offset == HIGH_WATERMARK {
                high_watermark
            } else {
                offset
            };
            // Kafka's bound: records not yet committed cannot be deleted.
            if offset > high_watermark {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: state.log.log_start_offset(),
                    log_end: high_watermark,
                }
                .into());
            }
            let moved = state.log.advance_log_start_offset(offset)?;
            self.publish_offsets(&state.log);
            moved
        };
        if moved {
            // Memory now says the records are gone: if that cannot be made durable, the
            // directory goes offline rather than resurrect them after a restart.
            checkpoint().map_err(|error| self.storage_failed(error))?;
            let mut state = self.lock();
            self.check_online()?;
            state
                .log
                .delete_segments_below_start()
                .map_err(|error| self.storage_failed(error))?;
            tracing::info!(
                topic = %self.topic,
                partition = self.index,
                log_start_offset = state.log.log_start_offset(),
                "log start offset moved by DeleteRecords"
            );
        }
        Ok(self.offsets().0)
    }

    /// (log start offset, high watermark), without the append lock: async code may call it.
    pub fn offsets(&self) -> (i64, i64) {
        // Both only grow; loading the start first keeps start <= high watermark.
        let log_start_offset = self.log_start_offset.load(Ordering::Acquire);
        let high_watermark = self.high_watermark.load(Ordering::Acquire);
        (log_start_offset, high_watermark.max(log_start_offset))
    }

    /// Publishes the log's offsets after an append or a start move; the leader may then
    /// commit more. Call it under the append lock.
    fn publish_offsets(&self, log: &Log) {
        self.log_end_offset
            .store(log.log_end_offset(), Ordering::Release);
        self.last_epoch
            .store(log.latest_epoch().unwrap_or(-1), Ordering::Release);
        self.log_start_offset
            .store(log.log_start_offset(), Ordering::Release);
    }

    /// Leader side: publishes a high watermark the ISR moved (it only grows), waking
    /// acks=all waiters and parked consumer fetches.
    fn publish_high_watermark(&self, advanced: Option<i64>) {
        if let Some(high_watermark) = advanced {
            if self
                .high_watermark
                .fetch_max(high_watermark, Ordering::AcqRel)
                < high_watermark
            {
                self.update_unstable_txns(|_| {});
                self.data_arrived.notify_waiters();
            }
        }
    }

    /// Leader side: a follower fetched from `fetch_offset` in `current_leader_epoch`, so
    /// it holds everything below: the high watermark may move, and a follower back in
    /// sync is proposed for the ISR. A fetch in another epoch is refused with its code.
    fn record_follower_fetch(
        &self,
        replica_id: i32,
        current_leader_epoch: i32,
        fetch_offset: i64,
    ) -> Result<(), PartitionError> {
        let update = self.replica().on_follower_fetch(
            replica_id,
            current_leader_epoch,
            fetch_offset,
            monotonic_ms(),
        );
        match update {
            Ok(update) => {
                self.publish_high_watermark(update.high_watermark);
                if let Some(request) = update.alter_partition {
                    self.isr_changes.push(self.topic_id, self.index, request);
                }
                Ok(())
            }
            Err(FetchError::LeaderEpoch(code)) => Err(PartitionError::new(
                code,
                "the follower's leader epoch is not the leader's",
            )),
            // Not counted (not a replica, or beyond the log, which the read refuses).
            Err(FetchError::UnknownReplica | FetchError::OffsetOutOfRange) => Ok(()),
        }
    }

    /// Leading: the ISR change due now (a follower lagging longer than
    /// `replica.lag.time.max.ms`), or the pending one again when `resend`.
    pub fn isr_change_due(&self, resend: bool) -> Option<AlterPartitionRequest> {
        self.replica().isr_change_due(monotonic_ms(), resend)
    }

    /// Leading: the controller's answer to `sent` (a controller error code, or the
    /// partition after the change). Returns a request to send again after a back-off.
    pub fn on_alter_partition_result(
        &self,
        sent: &AlterPartitionRequest,
        result: Result<AlterPartitionAnswer, i16>,
    ) -> Option<AlterPartitionRequest> {
        let result = result.map(|answer| AlterPartitionAccepted {
            leader_epoch: answer.leader_epoch,
            partition_epoch: answer.partition_epoch,
            isr: answer.isr,
        });
        let outcome = self
            .replica()
            .on_alter_partition_result(sent, result, monotonic_ms());
        match outcome {
            Ok(advanced) => {
                self.publish_high_watermark(advanced);
                None
            }
            Err(resend) => Some(resend),
        }
    }

    /// Follower side: where the next fetch starts. Lock-free (async callers).
    pub fn follower_position(&self) -> FollowerPosition {
        FollowerPosition {
            log_end_offset: self.log_end_offset.load(Ordering::Acquire),
            log_start_offset: self.log_start_offset.load(Ordering::Acquire),
            last_fetched_epoch: self.last_epoch.load(Ordering::Acquire),
        }
    }

    /// Follower side: appends batches fetched from the leader of `leader_epoch` as they
    /// are (offsets and epochs assigned by the leader). Returns whether the log grew.
    /// Refused once this node is no longer a follower in that epoch. Blocking.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        leader_epoch: i32,
    ) -> Result<bool, PartitionError> {
        let mut state = self.lock();
        self.check_online()?;
        self.check_following(leader_epoch)?;
        let now = now_ms();
        let appended = state
            .log
            .append_as_follower(records, now)
            .map_err(|error| match error {
                LogError::Io(_) => self.storage_failed(error),
                other => other.into(),
            })?;
        // The leader's producer state, transactions and transaction index, replayed.
        let mut position = 0;
        for header in &appended.headers {
            let bytes = &records[position..position + header.total_size()];
            position += header.total_size();
            match header
                .is_control()
                .then(|| txn_marker::parse_marker(bytes))
                .flatten()
            {
                Some(marker) => {
                    let completed = state.producers.record_marker(header, marker, now);
                    self.end_txn(&mut state, completed)?;
                }
                None => {
                    state.producers.record(header, now);
                    if header.is_transactional() {
                        let first_ongoing = state.producers.first_ongoing_offset();
                        self.update_unstable_txns(|unstable| {
                            unstable.set_first_ongoing(first_ongoing)
                        });
                    }
                }
            }
        }
        self.publish_offsets(&state.log);
        Ok(!appended.headers.is_empty())
    }

    fn check_following(&self, leader_epoch: i32) -> Result<(), PartitionError> {
        let replica = self.replica();
        if replica.is_leader() || replica.leader_epoch() != leader_epoch {
            return Err(PartitionError::new(
                error_code::NOT_LEADER_OR_FOLLOWER,
                format!(
                    "no longer following in leader epoch {leader_epoch} (now {})",
                    replica.leader_epoch()
                ),
            ));
        }
        Ok(())
    }

    /// Follower side: where to truncate to after the leader answered a diverging epoch
    /// (Kafka's rules, KIP-320): the leader's end of that epoch, capped by where that
    /// epoch (or the largest earlier one) ends here; an unknown epoch on the leader
    /// truncates to the high watermark. Blocking (takes the append lock).
    pub fn truncation_offset(&self, leader_epoch: i32, leader_end_offset: i64) -> i64 {
        let state = self.lock();
        let log_end = state.log.log_end_offset();
        if leader_epoch < 0 || leader_end_offset < 0 {
            return self.high_watermark.load(Ordering::Acquire).min(log_end);
        }
        let (local_epoch, local_end) = state.log.end_offset_for_epoch(leader_epoch);
        let target = leader_end_offset.min(log_end);
        if local_epoch < 0 {
            target
        } else {
            target.min(local_end)
        }
    }

    /// Follower side: removes everything from `offset` on (records the leader does not
    /// have) and rebuilds producer state to match. Blocking.
    pub fn truncate_as_follower(&self, offset: i64) -> Result<(), PartitionError> {
        let mut state = self.lock();
        self.check_online()?;
        if offset > state.log.log_end_offset() {
            return Ok(());
        }
        if offset < state.log.log_end_offset() {
            tracing::info!(
                topic = %self.topic,
                partition = self.index,
                from = offset,
                log_end_offset = state.log.log_end_offset(),
                "truncating divergent records"
            );
        }
        state
            .log
            .truncate_to(offset)
            .map_err(|error| self.storage_failed(error))?;
        self.after_truncation(&mut state)
    }

    /// Follower side, on OFFSET_OUT_OF_RANGE: starts the log over at the leader's log
    /// start (`fully`: our log end is below it), or truncates to `offset`. Blocking.
    pub fn follower_restart_at(&self, offset: i64, fully: bool) -> Result<(), PartitionError> {
        if !fully {
            return self.truncate_as_follower(offset);
        }
        let mut state = self.lock();
        self.check_online()?;
        tracing::info!(
            topic = %self.topic,
            partition = self.index,
            log_start_offset = offset,
            "log is behind the leader's log start: starting over there"
        );
        state
            .log
            .truncate_fully_and_start_at(offset)
            .map_err(|error| self.storage_failed(error))?;
        self.after_truncation(&mut state)
    }

    fn after_truncation(&self, state: &mut PartitionState) -> Result<(), PartitionError> {
        state.producers = producer_state::rebuild_producer_state(&mut state.log, None)
            .map_err(|error| self.storage_failed(error))?;
        let log_end = state.log.log_end_offset();
        self.log_end_offset.store(log_end, Ordering::Release);
        self.log_start_offset
            .store(state.log.log_start_offset(), Ordering::Release);
        self.last_epoch
            .store(state.log.latest_epoch().unwrap_or(-1), Ordering::Release);
        // The high watermark never passes the log end; a follower's may move back here.
        self.high_watermark.fetch_min(log_end, Ordering::AcqRel);
        let first_ongoing = state.producers.first_ongoing_offset();
        self.update_unstable_txns(|unstable| {
            unstable.clear_completed();
            unstable.set_first_ongoing(first_ongoing);
        });
        Ok(())
    }

    /// Follower side: takes the leader's high watermark (capped at the local log end) and
    /// log start offset from a fetch answer.
    pub fn update_follower_offsets(&self, leader_high_watermark: i64, leader_log_start: i64) {
        let log_end = self.log_end_offset.load(Ordering::Acquire);
        let high_watermark = leader_high_watermark.min(log_end);
        if self
            .high_watermark
            .fetch_max(high_watermark, Ordering::AcqRel)
            < high_watermark
        {
            self.update_unstable_txns(|_| {});
            self.data_arrived.notify_waiters();
        }
        // Retention and DeleteRecords on the leader move the followers' start too.
        if leader_log_start > self.log_start_offset.load(Ordering::Acquire) {
            let mut state = self.lock();
            let offset = leader_log_start.min(state.log.log_end_offset());
            if let Ok(true) = state.log.advance_log_start_offset(offset) {
                self.log_start_offset
                    .store(state.log.log_start_offset(), Ordering::Release);
            }
        }
    }

    /// acks=all's second stage: waits until the high watermark passes `next_offset` and
    /// answers as Kafka's delayed produce: NONE, NOT_ENOUGH_REPLICAS_AFTER_APPEND when
    /// the ISR shrank below `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER when
    /// leadership moved, KAFKA_STORAGE_ERROR when the log went offline, and
    /// REQUEST_TIMED_OUT after `timeout` (the batch stays: a retry is a duplicate).
    pub async fn wait_for_acks(&self, next_offset: i64, timeout: Duration) -> Result<(), i16> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let wakeup = self.data_arrived();
            tokio::pin!(wakeup);
            wakeup.as_mut().enable();
            if self.is_offline() {
                return Err(error_code::KAFKA_STORAGE_ERROR);
            }
            let decision = self.replica().can_acknowledge(next_offset);
            match decision {
                Some(AckDecision::Acknowledged) => return Ok(()),
                Some(AckDecision::NotEnoughReplicasAfterAppend) => {
                    return Err(error_code::NOT_ENOUGH_REPLICAS_AFTER_APPEND)
                }
                Some(AckDecision::Wait) => {}
                None => return Err(error_code::NOT_LEADER_OR_FOLLOWER),
            }
            if tokio::time::timeout_at(deadline, wakeup).await.is_err() {
                return Err(error_code::REQUEST_TIMED_OUT);
            }
        }
    }

    /// A future that completes at the next append; create it before checking for data.
    pub fn data_arrived(&self) -> tokio::sync::futures::Notified<'_> {
        self.data_arrived.notified()
    }

    /// ListOffsets by timestamp: the first record with timestamp >= `timestamp_ms`.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampOffset>, PartitionError> {
        let (found, log_start) = {
            let state = self.lock();
            (
                state.log.first_batch_at_or_after_timestamp(timestamp_ms)?,
                state.log.log_start_offset(),
            )
        };
        match found {
            None => Ok(None),
            Some(bytes) => first_record_at_or_after(bytes, |offset, ts| {
                offset >= log_start && ts >= timestamp_ms
            }),
        }
    }

    /// OffsetForLeaderEpoch: (the largest epoch <= `epoch` that wrote here, where its
    /// writes end), (-1, -1) when none did. Blocking: takes the append lock.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64), PartitionError> {
        let state = self.lock();
        self.check_online()?;
        Ok(state.log.end_offset_for_epoch(epoch))
    }

    /// ListOffsets MAX_TIMESTAMP: the first record carrying the log's largest timestamp.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampOffset>, PartitionError> {
        let found = self.lock().log.batch_with_max_timestamp()?;
        let Some(bytes) = found else {
            return Ok(None);
        };
        let header = BatchHeader::parse(&bytes)?;
        first_record_at_or_after(bytes, |_, ts| ts >= header.max_timestamp)
    }

    fn flush_if_due(&self, now: i64) -> Result<(), PartitionError> {
        let mut state = self.lock();
        self.check_online()?;
        state
            .log
            .flush_if_due(now)
            .map_err(|error| self.storage_failed(error))
    }

    /// Flushes the log and writes the producer-state snapshot (clean shutdown).
    fn close(&self, dir: &Path) -> Result<(), PartitionError> {
        let mut state = self.lock();
        self.check_online()?;
        state
            .log
            .flush()
            .map_err(|error| self.storage_failed(error))?;
        state
            .producers
            .expire(now_ms(), self.producer_id_expiration_ms);
        let snapshot = ProducerSnapshot {
            next_offset: state.log.log_end_offset(),
            table: state.producers.clone(),
        };
        let snapshot_bytes = serde_json::to_vec(&snapshot)
            .map_err(|e| PartitionError::new(error_code::KAFKA_STORAGE_ERROR, e.to_string()))?;
        dir::write_file_atomically(&dir.join(PRODUCER_SNAPSHOT_FILE), &snapshot_bytes)
            .map_err(|error| self.storage_failed(error.into()))
    }
}

/// Test seam for a slow disk on one topic: `partition::append::stall=return(<topic>:<ms>)`
/// holds that topic's appends for `<ms>` under the append lock, as a slow write would.
#[cfg(feature = "failpoints")]
fn stall_point(topic: &str) {
    fail::fail_point!("partition::append::stall", |arg: Option<String>| {
        let stall = arg.as_deref().and_then(|arg| arg.split_once(':'));
        if let Some((stalled_topic, ms)) = stall {
            if stalled_topic == topic {
                let ms = ms.parse().unwrap_or(0);
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
    });
}

/// One past the last offset of the whole batches in `records` (i64::MIN when none).
fn end_of_records(mut records: &[u8]) -> i64 {
    let mut end = i64::MIN;
    while let Ok(header) = BatchHeader::parse(records) {
        end = header.last_offset() + 1;
        if header.total_size() >= records.len() {
            break;
        }
        records = &records[header.total_size()..];
    }
    end
}

/// Decodes one stored batch (any codec) and finds the first record whose offset and
/// timestamp match. Off the hot path: only ListOffsets by timestamp gets here.
fn first_record_at_or_after(
    mut bytes: Bytes,
    matches: impl Fn(i64, i64) -> bool,
) -> Result<Option<TimestampOffset>, PartitionError> {
    // A LogAppendTime batch's records all carry the batch's maxTimestamp (the append
    // time); their own bytes still hold the producer's.
    let log_append_time_ms = BatchHeader::parse(&bytes)
        .ok()
        .filter(BatchHeader::is_log_append_time)
        .map(|header| header.max_timestamp);
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| {
        PartitionError::new(
            error_code::KAFKA_STORAGE_ERROR,
            format!("stored batch does not decode: {e}"),
        )
    })?;
    Ok(set
        .records
        .iter()
        .map(|record| {
            (
                record.offset,
                log_append_time_ms.unwrap_or(record.timestamp),
            )
        })
        .find(|&(offset, timestamp_ms)| matches(offset, timestamp_ms))
        .map(|(offset, timestamp_ms)| TimestampOffset {
            offset,
            timestamp_ms,
        }))
}

/// Kafka's `partition.metadata`: ties a directory to a topic id, so that a directory left
/// behind by a deleted topic is never mistaken for a new topic of the same name.
fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<(), PartitionError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let wanted = format!("version: 0\ntopic_id: {topic_id}\n");
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == wanted => Ok(()),
        Ok(_) => Err(PartitionError::new(
            error_code::KAFKA_STORAGE_ERROR,
            format!("{} belongs to another topic id", dir.display()),
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            dir::write_file_atomically(&path, wanted.as_bytes())
                .map_err(|e| LogError::from(e).into())
        }
        Err(error) => Err(LogError::from(error).into()),
    }
}

fn partition_metadata_topic_id(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("topic_id: "))
        .map(str::to_string)
}

/// Producer state at open: the clean-shutdown snapshot if it is still valid for this
/// log, then every batch after it replayed from the log (all of it after a crash).
fn load_producer_state(dir: &Path, log: &mut Log) -> Result<ProducerStateTable, PartitionError> {
    let path = dir.join(PRODUCER_SNAPSHOT_FILE);
    let snapshot = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ProducerSnapshot>(&bytes).ok());
    // The snapshot describes the log only up to the moment it was written: remove it so
    // that a crash later cannot pair it with a log it does not describe.
    if path.exists() {
        std::fs::remove_file(&path).map_err(LogError::from)?;
    }
    Ok(producer_state::rebuild_producer_state(log, snapshot)?)
}

/// What a log directory's checkpoint files hold for a partition being opened.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Checkpointed {
    /// `log-start-offset-checkpoint`
    pub log_start: Option<i64>,
    /// `replication-offset-checkpoint`
    pub high_watermark: Option<i64>,
}

/// Kafka's checkpoint file format, version 0; None when malformed.
fn parse_offset_checkpoint(text: &str) -> Option<HashMap<(String, i32), i64>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = HashMap::new();
    for line in lines.by_ref().take(count) {
        let mut fields = line.split(' ');
        let topic = fields.next()?.to_string();
        let partition = fields.next()?.parse().ok()?;
        let offset = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        entries.insert((topic, partition), offset);
    }
    (entries.len() == count && lines.next().is_none()).then_some(entries)
}

impl CleanableLog for Partition {
    fn topic_partition(&self) -> (String, i32) {
        (self.topic.clone(), self.index)
    }

    fn with_log(&self, f: &mut dyn FnMut(&mut Log)) {
        let mut state = self.lock();
        if !self.is_offline() {
            f(&mut state.log);
        }
    }

    fn producer_last_offsets(&self) -> HashMap<i64, i64> {
        self.lock().producers.last_offsets()
    }

    fn last_stable_offset(&self) -> i64 {
        Partition::last_stable_offset(self)
    }
}

type PartitionKey = (Uuid, i32);

/// What a partition is opened with: this node, the image's version of the partition, the
/// topic's replication settings, and where to queue ISR changes.
struct Assignment {
    node_id: i32,
    record: PartitionRecord,
    leader_config: LeaderConfig,
    isr_changes: Arc<IsrChangeQueue>,
}

#[cfg(test)]
impl Assignment {
    /// The only replica, leading in epoch 0 (tests of a partition on its own).
    fn sole_leader(node_id: i32) -> Assignment {
        Assignment {
            node_id,
            record: PartitionRecord {
                partition: 0,
                replicas: vec![node_id],
                isr: vec![node_id],
                leader: node_id,
                leader_epoch: 0,
                partition_epoch: 0,
                elr: Vec::new(),
                last_known_elr: Vec::new(),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
            leader_config: LeaderConfig {
                replica_lag_time_max_ms: 30_000,
                min_insync_replicas: 1,
            },
            isr_changes: Arc::new(IsrChangeQueue::default()),
        }
    }
}

/// ISR changes (AlterPartition) that led partitions ask the controller for, one per
/// partition at most (a newer request replaces an unsent one; a partition leader keeps
/// one in flight), so the queue is bounded by the partitions hosted here.
#[derive(Default)]
pub struct IsrChangeQueue {
    pending: Mutex<BTreeMap<PartitionKey, AlterPartitionRequest>>,
    ready: Notify,
}

impl IsrChangeQueue {
    pub fn push(&self, topic_id: Uuid, partition: i32, request: AlterPartitionRequest) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((topic_id, partition), request);
        self.ready.notify_one();
    }

    /// Everything queued, emptying the queue.
    pub fn take_all(&self) -> Vec<((Uuid, i32), AlterPartitionRequest)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }

    /// Completes once something was pushed since the last wake-up.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

/// All partitions hosted here, reconciled with the metadata image.
pub struct PartitionManager {
    /// The static config (data dir, node id); topic settings come from `live`.
    config: BrokerConfig,
    live: Arc<LiveConfig>,
    /// The (single) log directory's health, shared by all its partitions.
    health: Arc<LogDirHealth>,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    /// ISR changes the partitions led here ask the controller for.
    isr_changes: Arc<IsrChangeQueue>,
    /// Serialises reconciliations (handlers and the metadata watcher both trigger them).
    reconcile_lock: Mutex<()>,
    /// Serialises writes of the log start offset checkpoint.
    checkpoint_lock: Mutex<()>,
}

impl PartitionManager {
    pub fn new(live: Arc<LiveConfig>) -> PartitionManager {
        let config = live.static_config().clone();
        PartitionManager {
            health: Arc::new(LogDirHealth::new(&config.data_dir)),
            config,
            live,
            partitions: RwLock::new(HashMap::new()),
            isr_changes: Arc::new(IsrChangeQueue::default()),
            reconcile_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
        }
    }

    /// DeleteRecords on one hosted partition (see [`Partition::delete_records`]): the
    /// new log start offset is in the checkpoint before the answer. Blocking.
    pub fn delete_records(
        &self,
        partition: &Partition,
        offset: i64,
    ) -> Result<i64, PartitionError> {
        partition.delete_records(offset, || self.write_log_start_checkpoint())
    }

    /// Writes Kafka's `log-start-offset-checkpoint` for every partition whose log start
    /// offset is past 0. Kafka writes it every
    /// `log.flush.start.offset.checkpoint.interval.ms` and relies on other replicas
    /// meanwhile; a single replica writes it before answering.
    fn write_log_start_checkpoint(&self) -> Result<(), LogError> {
        self.write_offset_checkpoint(LOG_START_OFFSET_CHECKPOINT_FILE, |p| {
            Some(p.offsets().0).filter(|log_start| *log_start > 0)
        })
    }

    /// Writes Kafka's `replication-offset-checkpoint`: every hosted partition's high
    /// watermark, where a restarted replica starts from (every
    /// `replica.high.watermark.checkpoint.interval.ms` and at shutdown). Blocking.
    pub fn write_high_watermark_checkpoint(&self) -> Result<(), LogError> {
        self.write_offset_checkpoint(HIGH_WATERMARK_CHECKPOINT_FILE, |p| {
            Some(p.high_watermark.load(Ordering::Acquire))
        })
    }

    /// Writes checkpoint `file` (version 0, a count, then `topic partition offset`
    /// lines, sorted) with `offset_of` each hosted partition that has one, atomically.
    fn write_offset_checkpoint(
        &self,
        file: &str,
        offset_of: impl Fn(&Partition) -> Option<i64>,
    ) -> Result<(), LogError> {
        let _guard = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<(String, i32, i64)> = self
            .all()
            .iter()
            .filter_map(|p| offset_of(p).map(|offset| (p.topic.clone(), p.index, offset)))
            .collect();
        entries.sort();
        let mut text = format!("0\n{}\n", entries.len());
        for (topic, partition, offset) in entries {
            text.push_str(&format!("{topic} {partition} {offset}\n"));
        }
        Ok(dir::write_file_atomically(
            &self.config.data_dir.join(file),
            text.as_bytes(),
        )?)
    }

    /// Checkpoint `file`'s entries by (topic, partition); none when it is missing.
    fn read_offset_checkpoint(&self, file: &str) -> Result<HashMap<(String, i32), i64>, LogError> {
        let path = self.config.data_dir.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(error) => return Err(error.into()),
        };
        parse_offset_checkpoint(&text)
            .ok_or_else(|| LogError::Corrupt(format!("{} is malformed", path.display())))
    }

    pub fn health(&self) -> &Arc<LogDirHealth> {
        &self.health
    }

    fn dir_for(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// The ISR changes waiting to be sent to the controller.
    pub fn isr_changes(&self) -> &Arc<IsrChangeQueue> {
        &self.isr_changes
    }

    pub fn get(&self, topic_id: Uuid, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic_id, partition))
            .cloned()
    }

    /// [`Self::reconcile`] on a blocking thread, for async callers.
    pub async fn reconcile_blocking(self: &Arc<Self>, image: Arc<MetadataImage>) {
        let manager = self.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || manager.reconcile(&image)).await {
            tracing::error!(%error, "reconciling partitions failed");
        }
    }

    /// Opens the partitions the image assigns to this node, deletes those whose topic
    /// is gone, and hands every hosted partition its topic's effective config (static ⊕
    /// dynamic broker configs ⊕ topic overrides, as of this image). Idempotent. Blocking (opens and recovers logs, removes directories). A partition that fails to open is logged and left out
    /// (its produce and fetch requests get KAFKA_STORAGE_ERROR).
    pub fn reconcile(&self, image: &MetadataImage) {
        let _guard = self
            .reconcile_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let node_id = self.config.node_id;
        let config = self.live.effective(image);
        let mut wanted: BTreeMap<PartitionKey, (&Arc<TopicImage>, &PartitionRecord)> =
            BTreeMap::new();
        for topic in image.topics.values() {
            for p in &topic.partitions {
                if p.replicas.contains(&node_id) {
                    wanted.insert((topic.topic_id, p.partition), (topic, p));
                }
            }
        }
        let existing: Vec<PartitionKey> = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        let mut removed_any = false;
        for key in existing.iter().filter(|k| !wanted.contains_key(k)) {
            let removed = self
                .partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            if let Some(partition) = removed {
                // Under its lock: a retention pass holding it checks that the partition
                // is still hosted before it rolls (creates files) in the directory.
                let _state = partition.lock();
                partition.removed.store(true, Ordering::Release);
                self.remove_dir(&partition.topic, partition.index);
                removed_any = true;
            }
        }
        // A deleted partition's entry must not outlive it (a new topic may take the name).
        if removed_any {
            if let Err(error) = self.write_log_start_checkpoint() {
                self.health.trip(&format_args!(
                    "cannot write the log start offset checkpoint: {error}"
                ));
                return;
            }
        }
        // Brokers whose replicas may not hold a high watermark back (Kafka's ISR
        // eligibility): fenced, or no longer registered.
        let ineligible: BTreeSet<i32> = image
            .topics
            .values()
            .flat_map(|topic| topic.partitions.iter().flat_map(|p| p.replicas.iter()))
            .copied()
            .filter(|&broker| image.brokers.get(&broker).is_none_or(|b| b.fenced))
            .collect();
        // Both checkpoint files, read when the first partition that was here before opens.
        let mut checkpoints: Option<[HashMap<(String, i32), i64>; 2]> = None;
        // Each topic's effective settings, worked out once for all its partitions.
        let mut topic_configs: HashMap<Uuid, (LogConfig, RecordRules)> = HashMap::new();
        for (key, (topic, record)) in wanted {
            let leader_config = LeaderConfig {
                replica_lag_time_max_ms: config.replica_fetch.lag_time_max_ms,
                min_insync_replicas: topic
                    .configs
                    .get("min.insync.replicas")
                    .and_then(|value| value.trim().parse::<i32>().ok())
                    .unwrap_or(config.min_insync_replicas)
                    .max(1) as usize,
            };
            let (log_config, record_rules) = topic_configs
                .entry(topic.topic_id)
                .or_insert_with(|| {
                    (
                        config.topic_log_config(&topic.configs),
                        config.topic_record_rules(&topic.configs),
                    )
                })
                .clone();
            if existing.contains(&key) {
                if let Some(partition) = self.get(key.0, key.1) {
                    partition.update_config(log_config, record_rules);
                    // A failure took the log directory offline (and said why).
                    let _ = partition.apply_assignment(record.clone(), leader_config, &ineligible);
                }
                continue;
            }
            let dir = self.dir_for(&topic.name, key.1);
            // A directory of an older topic with the same name (deleted while we were
            // down) is stale: its records must not appear in the new topic.
            let mut same_topic = false;
            if let Some(old_id) = partition_metadata_topic_id(&dir) {
                same_topic = old_id == topic.topic_id.to_string();
                if !same_topic {
                    tracing::warn!(dir = %dir.display(), "removing log of a deleted topic with the same name");
                    self.remove_dir(&topic.name, key.1);
                }
            }
            // Only a log that was here before has checkpointed offsets.
            let mut checkpointed = Checkpointed::default();
            if same_topic {
                if checkpoints.is_none() {
                    let read = [
                        LOG_START_OFFSET_CHECKPOINT_FILE,
                        HIGH_WATERMARK_CHECKPOINT_FILE,
                    ]
                    .map(|file| (file, self.read_offset_checkpoint(file)));
                    match read {
                        [(_, Ok(log_starts)), (_, Ok(high_watermarks))] => {
                            checkpoints = Some([log_starts, high_watermarks]);
                        }
                        [(file, Err(error)), _] | [_, (file, Err(error))] => {
                            self.health
                                .trip(&format_args!("cannot read {file}: {error}"));
                            return;
                        }
                    }
                }
                if let Some([log_starts, high_watermarks]) = &checkpoints {
                    let key = (topic.name.clone(), key.1);
                    checkpointed = Checkpointed {
                        log_start: log_starts.get(&key).copied(),
                        high_watermark: high_watermarks.get(&key).copied(),
                    };
                }
            }
            let opened = Partition::open(
                &dir,
                topic,
                key.1,
                Assignment {
                    node_id,
                    record: record.clone(),
                    leader_config,
                    isr_changes: self.isr_changes.clone(),
                },
                log_config,
                record_rules,
                self.config.producer_id_expiration_ms,
                self.health.clone(),
                checkpointed,
            );
            match opened {
                Ok(partition) => {
                    // Which replicas may hold its high watermark back (changes nothing
                    // else: the same version of the partition).
                    let _ = partition.apply_assignment(record.clone(), leader_config, &ineligible);
                    self.partitions
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, Arc::new(partition));
                }
                // Kafka takes the log directory offline when a log fails to load.
                Err(error) => self.health.trip(&format_args!(
                    "cannot open partition {}: {}",
                    dir.display(),
                    error.message
                )),
            }
        }
    }

    fn remove_dir(&self, topic: &str, partition: i32) {
        let dir = self.dir_for(topic, partition);
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(dir = %dir.display(), %error, "cannot remove partition directory");
            }
        }
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every hosted log, for the log cleaner (which compacts those whose policy says so).
    pub fn cleanable_logs(&self) -> Vec<Arc<dyn CleanableLog>> {
        self.all()
            .into_iter()
            .map(|partition| partition as Arc<dyn CleanableLog>)
            .collect()
    }

    /// Applies `flush.ms` to every partition; called by the flush scheduler.
    pub fn flush_due(&self) {
        let now = now_ms();
        for partition in self.all() {
            // A failure took the log directory offline; that is the whole report.
            if partition.flush_if_due(now).is_err() {
                return;
            }
        }
    }

    /// Clean shutdown: flush every log and snapshot producer state. Not after a storage
    /// error: restart recovers from what is on disk instead.
    pub fn close_all(&self) {
        if self.health.is_offline() {
            tracing::info!(
                "log directory offline: logs not flushed, producer state not snapshotted"
            );
            return;
        }
        for partition in self.all() {
            let dir = self.dir_for(&partition.topic, partition.index);
            // A failure took the log directory offline (and logged why): stop there.
            if partition.close(&dir).is_err() {
                return;
            }
        }
        if let Err(error) = self.write_high_watermark_checkpoint() {
            self.health.trip(&format_args!(
                "cannot write the high watermark checkpoint: {error}"
            ));
        }
    }
}

#[cfg(test)]
mod delete_records_tests {
    use super::*;
    use crate::log::batch::test_support::batch_with;

    fn image(node_id: i32, topic_id: Uuid) -> MetadataImage {
        let mut image = MetadataImage::default();
        let topic = TopicImage {
            name: "t".to_string(),
            topic_id,
            partitions: vec![crate::metadata::PartitionRecord {
                partition: 0,
                leader: node_id,
                leader_epoch: 0,
                partition_epoch: 0,
                elr: Vec::new(),
                last_known_elr: Vec::new(),
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                replicas: vec![node_id],
                isr: vec![node_id],
            }],
            configs: BTreeMap::new(),
        };
        image.topics.insert("t".to_string(), Arc::new(topic));
        image
    }

    fn open_manager(dir: &Path) -> PartitionManager {
        let log_dirs = format!("log.dirs={}", dir.display());
        let config = BrokerConfig::load(None, std::iter::empty(), &[log_dirs]).unwrap();
        PartitionManager::new(Arc::new(LiveConfig::new(config)))
    }

    #[test]
    fn a_config_change_reaches_the_running_partition() {
        let tmp = tempfile::tempdir().unwrap();
        let topic_id = Uuid::from_u128(11);
        let manager = open_manager(tmp.path());
        let mut image = image(manager.config.node_id, topic_id);
        manager.reconcile(&image);
        let partition = manager.get(topic_id, 0).unwrap();
        let value = [7u8; 500];
        partition
            .append(&batch_with(&[&value], now_ms(), 1, 0, 0))
            .unwrap();

        // A topic override lowers max.message.bytes: the next append is refused.
        let mut topic = (*image.topics["t"]).clone();
        topic
            .configs
            .insert("max.message.bytes".to_string(), "100".to_string());
        image.topics.insert("t".to_string(), Arc::new(topic));
        manager.reconcile(&image);
        assert!(Arc::ptr_eq(&partition, &manager.get(topic_id, 0).unwrap()));
        let refused = partition
            .append(&batch_with(&[&value], now_ms(), 1, 0, 1))
            .unwrap_err();
        assert_eq!(refused.error.code, error_code::MESSAGE_TOO_LARGE);

        // A dynamic broker default reaches the log of a topic without that override.
        image
            .default_broker_configs
            .insert("log.segment.bytes".to_string(), "2097152".to_string());
        manager.reconcile(&image);
        assert_eq!(partition.lock().log.config().segment_bytes, 2_097_152);
        assert_eq!(partition.record_rules().max_message_bytes, 100);
    }

    #[test]
    fn the_log_start_offset_survives_a_restart_but_not_the_topic() {
        let tmp = tempfile::tempdir().unwrap();
        let topic_id = Uuid::from_u128(7);
        let manager = open_manager(tmp.path());
        let node_id = manager.config.node_id;
        manager.reconcile(&image(node_id, topic_id));
        let partition = manager.get(topic_id, 0).unwrap();
        for sequence in 0..4 {
            partition
                .append(&batch_with(&[b"v"], now_ms(), 1, 0, sequence))
                .unwrap();
        }
        let out_of_range = manager.delete_records(&partition, 5).unwrap_err();
        assert_eq!(out_of_range.code, error_code::OFFSET_OUT_OF_RANGE);
        assert_eq!(manager.delete_records(&partition, 2).unwrap(), 2);
        assert_eq!(partition.offsets(), (2, 4));
        let below = partition
            .read(1, usize::MAX, true, Reader::Consumer)
            .unwrap_err();
        assert_eq!(below.code, error_code::OFFSET_OUT_OF_RANGE);
        // -1 is the high watermark.
        assert_eq!(
            manager.delete_records(&partition, HIGH_WATERMARK).unwrap(),
            4
        );
        let checkpoint = std::fs::read_to_string(tmp.path().join(LOG_START_OFFSET_CHECKPOINT_FILE));
        assert_eq!(checkpoint.unwrap(), "0\n1\nt 0 4\n");
        drop(partition);
        manager.close_all();
        drop(manager);

        let manager = open_manager(tmp.path());
        manager.reconcile(&image(node_id, topic_id));
        assert_eq!(manager.get(topic_id, 0).unwrap().offsets(), (4, 4));
        // Deleting the topic drops its entry; a new topic of the same name starts at 0.
        manager.reconcile(&MetadataImage::default());
        let checkpoint = std::fs::read_to_string(tmp.path().join(LOG_START_OFFSET_CHECKPOINT_FILE));
        assert_eq!(checkpoint.unwrap(), "0\n0\n");
        let new_id = Uuid::from_u128(8);
        manager.reconcile(&image(node_id, new_id));
        assert_eq!(manager.get(new_id, 0).unwrap().offsets(), (0, 0));
    }

    /// `image(node, id)` with partition 0 on nodes `replicas`, in-sync `isr`, led by `node`.
    fn replicated_image(
        node_id: i32,
        topic_id: Uuid,
        replicas: &[i32],
        isr: &[i32],
    ) -> MetadataImage {
        let mut image = image(node_id, topic_id);
        let mut topic = (*image.topics["t"]).clone();
        topic.partitions[0].replicas = replicas.to_vec();
        topic.partitions[0].isr = isr.to_vec();
        image.topics.insert("t".to_string(), Arc::new(topic));
        image
    }

    #[test]
    fn a_replicated_partition_restarts_from_its_checkpointed_high_watermark() {
        let tmp = tempfile::tempdir().unwrap();
        let topic_id = Uuid::from_u128(9);
        let manager = open_manager(tmp.path());
        let node_id = manager.config.node_id;
        let other = node_id + 1;
        // Alone in the ISR: every append is committed at once.
        manager.reconcile(&replicated_image(
            node_id,
            topic_id,
            &[node_id, other],
            &[node_id],
        ));
        let partition = manager.get(topic_id, 0).unwrap();
        for sequence in 0..4 {
            partition
                .append(&batch_with(&[b"v"], now_ms(), 1, 0, sequence))
                .unwrap();
        }
        assert_eq!(partition.offsets(), (0, 4));
        drop(partition);
        manager.close_all();
        drop(manager);
        let path = tmp.path().join(HIGH_WATERMARK_CHECKPOINT_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n1\nt 0 4\n");

        // With its follower in the ISR the high watermark is not simply the log end:
        // it comes from the checkpoint, within the log, else from the log start.
        let both = replicated_image(node_id, topic_id, &[node_id, other], &[node_id, other]);
        for (checkpoint, restored) in [
            (Some("0\n1\nt 0 4\n"), 4),
            (Some("0\n1\nt 0 2\n"), 2),
            (Some("0\n1\nt 0 99\n"), 4),
            (None, 0),
        ] {
            match checkpoint {
                Some(text) => std::fs::write(&path, text).unwrap(),
                None => std::fs::remove_file(&path).unwrap(),
            }
            let manager = open_manager(tmp.path());
            manager.reconcile(&both);
            assert_eq!(
                manager.get(topic_id, 0).unwrap().offsets(),
                (0, restored),
                "{checkpoint:?}"
            );
            // Not close_all: that would write the checkpoint the next round replaces.
            drop(manager);
        }
    }

    /// A failed checkpoint write: not answered, not applied after a restart. A failed
    /// segment removal: answered with an error too, but the checkpoint is written, so the
    /// restart applies it and removes the segments then.
    #[cfg(feature = "failpoints")]
    #[test]
    fn storage_faults_on_the_delete_path_take_the_directory_offline() {
        use crate::log::dir::test_support::ArmedFailpoints;
        let armed = ArmedFailpoints::new();
        let tmp = tempfile::tempdir().unwrap();
        let topic_id = Uuid::from_u128(9);
        let manager = open_manager(tmp.path());
        let node_id = manager.config.node_id;
        let mut image = image(node_id, topic_id);
        let mut topic = (*image.topics["t"]).clone();
        // One batch per segment.
        topic.configs.insert(
            crate::config::INTERNAL_SEGMENT_BYTES.to_string(),
            "20".to_string(),
        );
        image.topics.insert("t".to_string(), Arc::new(topic));
        manager.reconcile(&image);
        let partition = manager.get(topic_id, 0).unwrap();
        for sequence in 0..4 {
            partition
                .append(&batch_with(&[b"v"], now_ms(), 1, 0, sequence))
                .unwrap();
        }
        let dir = tmp.path().join("t-0");
        let logs = || {
            std::fs::read_dir(&dir)
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy().ends_with(".log")
                })
                .count()
        };
        assert_eq!(logs(), 4);

        armed.set("fs::write", "1*return(ENOSPC)");
        let error = manager.delete_records(&partition, 2).unwrap_err();
        assert_eq!(error.code, error_code::KAFKA_STORAGE_ERROR);
        assert!(manager.health().is_offline());
        drop(partition);
        drop(manager);
        let manager = open_manager(tmp.path());
        manager.reconcile(&image);
        let partition = manager.get(topic_id, 0).unwrap();
        assert_eq!(
            partition.offsets(),
            (0, 4),
            "an unanswered delete was applied"
        );

        armed.set("log::segment::delete", "1*return(EIO)");
        let error = manager.delete_records(&partition, 2).unwrap_err();
        assert_eq!(error.code, error_code::KAFKA_STORAGE_ERROR);
        assert!(manager.health().is_offline());
        drop(partition);
        drop(manager);
        let manager = open_manager(tmp.path());
        manager.reconcile(&image);
        assert_eq!(manager.get(topic_id, 0).unwrap().offsets(), (2, 4));
        assert_eq!(logs(), 2, "segments below the start left behind");
    }

    #[test]
    fn a_malformed_checkpoint_is_refused() {
        assert!(parse_offset_checkpoint("0\n1\nt 0 4\n").is_some());
        for bad in [
            "",
            "1\n0\n",
            "0\n2\nt 0 4\n",
            "0\n1\nt 0\n",
            "0\n1\nt 0 x\n",
            "0\n0\nt 0 1\n",
        ] {
            assert!(parse_offset_checkpoint(bad).is_none(), "{bad:?}");
        }
    }
}

/// Injected storage faults at the partition layer: after the first one nothing is
/// acknowledged, and a client's retry is stored exactly once across a restart.
#[cfg(all(test, feature = "failpoints"))]
mod fault_tests {
    use super::*;
    use crate::log::batch::test_support::batch_with;
    use crate::log::dir::test_support::ArmedFailpoints;

    const PRODUCER_ID: i64 = 7;

    fn topic() -> TopicImage {
        TopicImage {
            name: "t".to_string(),
            topic_id: Uuid::from_u128(42),
            partitions: Vec::new(),
            configs: BTreeMap::new(),
        }
    }

    fn open(dir: &Path) -> (Partition, Arc<LogDirHealth>) {
        let health = Arc::new(LogDirHealth::new(dir));
        let config = LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        };
        let partition = Partition::open(
            &dir.join("t-0"),
            &topic(),
            0,
            Assignment::sole_leader(1),
            config,
            RecordRules {
                max_message_bytes: 1 << 20,
                ..RecordRules::default()
            },
            i64::MAX,
            health.clone(),
            Checkpointed::default(),
        )
        .unwrap();
        (partition, health)
    }

    fn produce(partition: &Partition, sequence: i32) -> Result<AppendResult, PartitionError> {
        partition
            .append(&batch_with(&[b"v"], 1_000, PRODUCER_ID, 0, sequence))
            .map_err(|e| e.error)
    }

    /// Every storage fault on the append path: (failpoint, errno, whether the failed
    /// batch is in the file afterwards).
    const FAULTS: [(&str, &str, bool); 4] = [
        ("log::segment::write", "ENOSPC", false),
        ("log::segment::write", "EIO", false),
        ("log::segment::fsync", "EIO", true),
        ("log::segment::fsync", "ENOSPC", true),
    ];

    #[test]
    fn after_a_storage_error_nothing_is_acknowledged_and_the_retry_is_stored_once() {
        let armed = ArmedFailpoints::new();
        for (site, errno, batch_survives) in FAULTS {
            let tmp = tempfile::tempdir().unwrap();
            let (partition, health) = open(tmp.path());
            assert_eq!(produce(&partition, 0).unwrap().base_offset, 0);

            armed.set(site, &format!("1*return({errno})"));
            let error = produce(&partition, 1).unwrap_err();
            assert_eq!(
                error.code,
                error_code::KAFKA_STORAGE_ERROR,
                "{site} {errno}"
            );
            assert!(
                health.is_offline(),
                "{site} {errno}: directory still online"
            );
            assert!(health.cause().unwrap().contains("t-0"));
            // The failpoint has run out: the disk "works" again, yet neither the retry
            // (which would otherwise pass the sequence check) nor anything new, nor a
            // duplicate of an acknowledged batch, is answered with success.
            for sequence in [1, 2, 0] {
                let error = produce(&partition, sequence).unwrap_err();
                assert_eq!(
                    error.code,
                    error_code::KAFKA_STORAGE_ERROR,
                    "seq {sequence}"
                );
            }
            assert!(partition.flush_if_due(i64::MAX).is_err());
            let leo_before_restart = partition.offsets().1;
            drop(partition);

            // Restart: recovery and the producer state rebuilt from the log.
            let (partition, health) = open(tmp.path());
            assert!(!health.is_offline());
            let expected_leo = if batch_survives { 2 } else { 1 };
            assert_eq!(partition.offsets().1, expected_leo, "{site} {errno}");
            // A failed append is never published, whether or not its bytes reached the file.
            assert_eq!(leo_before_restart, 1, "{site} {errno}");
            let retry = produce(&partition, 1).unwrap();
            assert_eq!(
                retry.base_offset, 1,
                "{site} {errno}: retry stored elsewhere"
            );
            assert_eq!(
                partition.offsets().1,
                2,
                "{site} {errno}: retry stored twice"
            );
            assert_eq!(produce(&partition, 2).unwrap().base_offset, 2);
        }
    }

    #[test]
    fn a_failed_partition_metadata_write_takes_the_directory_offline() {
        let armed = ArmedFailpoints::new();
        let tmp = tempfile::tempdir().unwrap();
        let log_dirs = format!("log.dirs={}", tmp.path().display());
        let config = BrokerConfig::load(None, std::iter::empty(), &[log_dirs]).unwrap();
        let manager = PartitionManager::new(Arc::new(LiveConfig::new(config)));
        armed.set("fs::rename", "return(ENOSPC)");
        let mut image = MetadataImage::default();
        let mut topic = topic();
        topic.partitions.push(crate::metadata::PartitionRecord {
            partition: 0,
            leader: manager.config.node_id,
            leader_epoch: 0,
            partition_epoch: 0,
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            replicas: vec![manager.config.node_id],
            isr: vec![manager.config.node_id],
        });
        image
            .topics
            .insert(topic.name.clone(), Arc::new(topic.clone()));
        manager.reconcile(&image);
        assert!(manager.health().is_offline());
        assert!(manager.get(topic.topic_id, 0).is_none());
    }
}
