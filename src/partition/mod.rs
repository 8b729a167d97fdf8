//! The partitions this broker hosts: their logs, idempotent producer state, and the
//! wake-ups long-polling fetches wait on.
//!
//! [`PartitionManager`] reconciles the local partitions with the metadata image (open a
//! log for every partition assigned here, delete the logs of deleted topics). A
//! [`Partition`] owns one log behind a mutex: a produce validates its batch outside the
//! lock, then checks the producer sequence, assigns offsets and appends under it.
//!
//! Single node: this broker is the only replica, so the high watermark is the log end
//! offset and acks=all is satisfied by the local append.

#[cfg(test)]
mod append_validation_tests;
pub mod producer_state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::log::batch::{self, BatchError, BatchHeader};
use crate::log::validator::{self, RecordError, RecordRules, RejectKind, Rejection};
use crate::log::{Log, LogConfig, LogError};
use crate::metadata::{MetadataImage, TopicImage};
use producer_state::{ProducerSnapshot, ProducerStateTable, SequenceCheck};

/// Kafka error codes the partition layer answers with.
pub mod error_code {
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_RECORD: i16 = 87;
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
            other => {
                tracing::error!(error = %other, "log failure");
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
    pub log_start_offset: i64,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Where a timestamp lookup landed: the first record at or after the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp_ms: i64,
}

const PARTITION_METADATA_FILE: &str = "partition.metadata";
const PRODUCER_SNAPSHOT_FILE: &str = "producer-state.json";

struct PartitionState {
    log: Log,
    producers: ProducerStateTable,
}

/// One hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    leader_epoch: i32,
    record_rules: RecordRules,
    producer_id_expiration_ms: i64,
    state: Mutex<PartitionState>,
    data_arrived: Notify,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Partition {
    /// Opens (or creates) the partition directory, its log and its producer state.
    fn open(
        dir: &Path,
        topic: &TopicImage,
        index: i32,
        leader_epoch: i32,
        log_config: LogConfig,
        record_rules: RecordRules,
        producer_id_expiration_ms: i64,
    ) -> Result<Partition, PartitionError> {
        std::fs::create_dir_all(dir).map_err(LogError::from)?;
        write_partition_metadata(dir, topic.topic_id)?;
        let log = Log::open(dir, log_config)?;
        let producers = load_producer_state(dir, &log)?;
        Ok(Partition {
            topic: topic.name.clone(),
            topic_id: topic.topic_id,
            index,
            leader_epoch,
            record_rules,
            producer_id_expiration_ms,
            state: Mutex::new(PartitionState { log, producers }),
            data_arrived: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PartitionState> {
        // A panic while holding the lock leaves the log as it was on disk; carry on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Validates and appends the record set of one produce request for this partition.
    pub fn append(&self, records: &[u8]) -> Result<AppendResult, AppendError> {
        let now = now_ms();
        let valid = validator::validate_produce(records, now, &self.record_rules)?;
        let header = valid.header;
        if header.is_transactional() {
            return Err(PartitionError::new(
                error_code::INVALID_TXN_STATE,
                "transactional produce is not supported yet",
            )
            .into());
        }
        let mut state = self.lock();
        let base_offset = match state.producers.check(&header) {
            Ok(SequenceCheck::Duplicate { first_offset }) => first_offset,
            Ok(SequenceCheck::Append) => {
                let base_offset = state.log.log_end_offset();
                let mut owned = records.to_vec();
                batch::patch_offset_and_epoch(&mut owned, base_offset, self.leader_epoch);
                if valid.needs_max_timestamp_fix {
                    batch::set_create_time_max_timestamp(&mut owned, header.max_timestamp);
                }
                let stored = BatchHeader {
                    base_offset,
                    partition_leader_epoch: self.leader_epoch,
                    ..header
                };
                state.log.append(&owned, &stored, now)?;
                state.producers.record(&stored, now);
                debug_assert_eq!(state.log.log_end_offset(), stored.last_offset() + 1);
                base_offset
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
        drop(state);
        self.data_arrived.notify_waiters();
        Ok(AppendResult {
            base_offset,
            log_start_offset,
        })
    }

    /// Whole batches from `offset`, at most `max_bytes` (but at least one batch if
    /// `min_one_batch`), with the offsets every fetch answer carries.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, PartitionError> {
        let state = self.lock();
        let records = state.log.read(offset, max_bytes, min_one_batch)?;
        Ok(ReadResult {
            records,
            high_watermark: state.log.log_end_offset(),
            log_start_offset: state.log.log_start_offset(),
        })
    }

    /// (log start offset, high watermark).
    pub fn offsets(&self) -> (i64, i64) {
        let state = self.lock();
        (state.log.log_start_offset(), state.log.log_end_offset())
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
        let found = self
            .lock()
            .log
            .first_batch_at_or_after_timestamp(timestamp_ms)?;
        match found {
            None => Ok(None),
            Some(bytes) => first_record_at_or_after(bytes, |ts| ts >= timestamp_ms),
        }
    }

    /// ListOffsets MAX_TIMESTAMP: the first record carrying the log's largest timestamp.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampOffset>, PartitionError> {
        let found = self.lock().log.batch_with_max_timestamp()?;
        let Some(bytes) = found else {
            return Ok(None);
        };
        let header = BatchHeader::parse(&bytes)?;
        first_record_at_or_after(bytes, |ts| ts >= header.max_timestamp)
    }

    fn flush_if_due(&self, now: i64) -> Result<(), PartitionError> {
        self.lock().log.flush_if_due(now)?;
        Ok(())
    }

    /// Flushes the log and writes the producer-state snapshot (clean shutdown).
    fn close(&self, dir: &Path) -> Result<(), PartitionError> {
        let mut state = self.lock();
        state.log.flush()?;
        state
            .producers
            .expire(now_ms(), self.producer_id_expiration_ms);
        let snapshot = ProducerSnapshot {
            next_offset: state.log.log_end_offset(),
            table: state.producers.clone(),
        };
        write_file_atomically(
            &dir.join(PRODUCER_SNAPSHOT_FILE),
            &serde_json::to_vec(&snapshot)
                .map_err(|e| PartitionError::new(error_code::KAFKA_STORAGE_ERROR, e.to_string()))?,
        )?;
        Ok(())
    }
}

/// Decodes one stored batch (any codec) and finds the first record whose timestamp
/// matches. Off the hot path: only ListOffsets by timestamp gets here.
fn first_record_at_or_after(
    mut bytes: Bytes,
    matches: impl Fn(i64) -> bool,
) -> Result<Option<TimestampOffset>, PartitionError> {
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| {
        PartitionError::new(
            error_code::KAFKA_STORAGE_ERROR,
            format!("stored batch does not decode: {e}"),
        )
    })?;
    Ok(set
        .records
        .iter()
        .find(|record| matches(record.timestamp))
        .map(|record| TimestampOffset {
            offset: record.offset,
            timestamp_ms: record.timestamp,
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
            write_file_atomically(&path, wanted.as_bytes())
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

fn write_file_atomically(path: &Path, contents: &[u8]) -> Result<(), PartitionError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, contents)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| LogError::from(e).into())
}

/// Producer state at open: the clean-shutdown snapshot if it is still valid for this
/// log, then every batch after it replayed from the log (all of it after a crash).
fn load_producer_state(dir: &Path, log: &Log) -> Result<ProducerStateTable, PartitionError> {
    let path = dir.join(PRODUCER_SNAPSHOT_FILE);
    let snapshot = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ProducerSnapshot>(&bytes).ok())
        .filter(|s| {
            s.next_offset <= log.log_end_offset() && s.next_offset >= log.log_start_offset()
        });
    // The snapshot describes the log only up to the moment it was written: remove it so
    // that a crash later cannot pair it with a log it does not describe.
    if path.exists() {
        std::fs::remove_file(&path).map_err(LogError::from)?;
    }
    let (mut table, replay_from) = match snapshot {
        Some(s) => (s.table, s.next_offset),
        None => (ProducerStateTable::default(), log.log_start_offset()),
    };
    for header in log.batch_headers_from(replay_from)? {
        if header.base_offset >= replay_from {
            table.record(&header, header.max_timestamp);
        }
    }
    Ok(table)
}

type PartitionKey = (Uuid, i32);

/// All partitions hosted here, reconciled with the metadata image.
pub struct PartitionManager {
    config: BrokerConfig,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    /// Serialises reconciliations (handlers and the metadata watcher both trigger them).
    reconcile_lock: Mutex<()>,
}

impl PartitionManager {
    pub fn new(config: BrokerConfig) -> PartitionManager {
        PartitionManager {
            config,
            partitions: RwLock::new(HashMap::new()),
            reconcile_lock: Mutex::new(()),
        }
    }

    fn dir_for(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    pub fn get(&self, topic_id: Uuid, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic_id, partition))
            .cloned()
    }

    /// Opens the partitions the image assigns to this node and deletes those whose topic
    /// is gone. Idempotent. A partition that fails to open is logged and left out
    /// (its produce and fetch requests get KAFKA_STORAGE_ERROR).
    pub fn reconcile(&self, image: &MetadataImage) {
        let _guard = self
            .reconcile_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let node_id = self.config.node_id;
        let mut wanted: BTreeMap<PartitionKey, (&Arc<TopicImage>, i32)> = BTreeMap::new();
        for topic in image.topics.values() {
            for p in &topic.partitions {
                if p.replicas.contains(&node_id) {
                    wanted.insert((topic.topic_id, p.partition), (topic, p.leader_epoch));
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
        for key in existing.iter().filter(|k| !wanted.contains_key(k)) {
            let removed = self
                .partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            if let Some(partition) = removed {
                self.remove_dir(&partition.topic, partition.index);
            }
        }
        for (key, (topic, leader_epoch)) in wanted {
            if existing.contains(&key) {
                continue;
            }
            let dir = self.dir_for(&topic.name, key.1);
            // A directory of an older topic with the same name (deleted while we were
            // down) is stale: its records must not appear in the new topic.
            if let Some(old_id) = partition_metadata_topic_id(&dir) {
                if old_id != topic.topic_id.to_string() {
                    tracing::warn!(dir = %dir.display(), "removing log of a deleted topic with the same name");
                    self.remove_dir(&topic.name, key.1);
                }
            }
            let opened = Partition::open(
                &dir,
                topic,
                key.1,
                leader_epoch,
                self.config.topic_log_config(&topic.configs),
                self.config.topic_record_rules(&topic.configs),
                self.config.producer_id_expiration_ms,
            );
            match opened {
                Ok(partition) => {
                    self.partitions
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, Arc::new(partition));
                }
                Err(error) => {
                    tracing::error!(dir = %dir.display(), code = error.code, message = %error.message, "cannot open partition");
                }
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

    fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Applies `flush.ms` to every partition; called by the flush scheduler.
    pub fn flush_due(&self) {
        let now = now_ms();
        for partition in self.all() {
            if let Err(error) = partition.flush_if_due(now) {
                tracing::error!(topic = %partition.topic, partition = partition.index, message = %error.message, "scheduled flush failed");
            }
        }
    }

    /// Clean shutdown: flush every log and snapshot producer state.
    pub fn close_all(&self) {
        for partition in self.all() {
            let dir = self.dir_for(&partition.topic, partition.index);
            if let Err(error) = partition.close(&dir) {
                tracing::error!(topic = %partition.topic, partition = partition.index, message = %error.message, "close failed");
            }
        }
    }
}
