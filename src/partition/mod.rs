//! The partitions this broker hosts: their logs, idempotent producer state, and the
//! wake-ups long-polling fetches wait on.
//!
//! [`PartitionManager`] reconciles the local partitions with the metadata image (open a
//! log for every partition assigned here, delete the logs of deleted topics). A
//! [`Partition`] owns one log behind a mutex: a produce validates its batch outside the
//! lock, then checks the producer sequence, assigns offsets and appends under it.
//!
//! Threading: the log mutex is held across file IO, so async code never takes it. Appends
//! go through a per-partition FIFO ([`Partition::submit_append`]) drained on a blocking
//! thread; reads take a [`ReadPlan`] under the mutex (memory only) and pread outside it;
//! the log start offset and high watermark are atomics. Everything else that touches
//! files (open/recovery, flush, close, delete) runs on blocking threads.
//!
//! Single node: this broker is the only replica, so the high watermark is the log end
//! offset and acks=all is satisfied by the local append.

pub mod producer_state;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::log::batch::{self, BatchError, BatchHeader};
use crate::log::{Log, LogConfig, LogError, ReadPlan};
use crate::metadata::{MetadataImage, TopicImage};
use producer_state::{ProducerSnapshot, ProducerStateTable, SequenceCheck};

/// Kafka error codes the partition layer answers with.
pub mod error_code {
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
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

/// Appends waiting for this partition's blocking drainer, in submission order.
#[derive(Default)]
struct AppendQueue {
    jobs: VecDeque<AppendJob>,
    /// A drainer is running (or about to): at most one per partition, so jobs are
    /// appended in exactly the order they were queued.
    draining: bool,
}

struct AppendJob {
    records: Bytes,
    done: oneshot::Sender<Result<AppendResult, PartitionError>>,
}

/// One hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    leader_epoch: i32,
    max_message_bytes: i32,
    producer_id_expiration_ms: i64,
    /// The append lock: held across file IO, so only ever taken on blocking threads.
    state: Mutex<PartitionState>,
    /// Copies of the log's offsets, published after each append for async readers.
    log_start_offset: AtomicI64,
    high_watermark: AtomicI64,
    appends: Mutex<AppendQueue>,
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
        max_message_bytes: i32,
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
            max_message_bytes,
            producer_id_expiration_ms,
            log_start_offset: AtomicI64::new(log.log_start_offset()),
            high_watermark: AtomicI64::new(log.log_end_offset()),
            state: Mutex::new(PartitionState { log, producers }),
            appends: Mutex::new(AppendQueue::default()),
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

    /// Queues an append of `records` (one produce request's batch) behind every append
    /// already queued for this partition, and returns its result. The order is fixed when
    /// this returns, before any await: a connection's pipelined requests keep their
    /// order if the handler submits before it first awaits. The append itself runs on a
    /// blocking thread. Must be called inside a tokio runtime.
    pub fn submit_append(
        self: &Arc<Self>,
        records: Bytes,
    ) -> impl std::future::Future<Output = Result<AppendResult, PartitionError>> + Send + 'static
    {
        let (done, result) = oneshot::channel();
        let start_drainer = {
            let mut queue = self.appends.lock().unwrap_or_else(|p| p.into_inner());
            queue.jobs.push_back(AppendJob { records, done });
            !std::mem::replace(&mut queue.draining, true)
        };
        if start_drainer {
            let partition = self.clone();
            tokio::task::spawn_blocking(move || partition.drain_appends());
        }
        async move {
            result.await.unwrap_or_else(|_| {
                Err(PartitionError::new(
                    error_code::KAFKA_STORAGE_ERROR,
                    "the append was abandoned",
                ))
            })
        }
    }

    /// Appends queued jobs one by one until the queue is empty.
    fn drain_appends(&self) {
        loop {
            let job = {
                let mut queue = self.appends.lock().unwrap_or_else(|p| p.into_inner());
                match queue.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        queue.draining = false;
                        return;
                    }
                }
            };
            // A panic must not wedge the queue with `draining` stuck on.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.append(&job.records)
            }))
            .unwrap_or_else(|_| {
                Err(PartitionError::new(
                    error_code::KAFKA_STORAGE_ERROR,
                    "append panicked",
                ))
            });
            // The requester may be gone (connection closed); the append stands.
            let _ = job.done.send(result);
        }
    }

    /// Validates and appends the record set of one produce request for this partition.
    /// Blocking: call it on a blocking thread (async code uses [`Self::submit_append`]).
    pub fn append(&self, records: &[u8]) -> Result<AppendResult, PartitionError> {
        let headers = batch::validate_all(records)?;
        // Produce v3+ carries exactly one batch per partition (Kafka rejects more).
        let [header] = headers[..] else {
            return Err(PartitionError::new(
                error_code::INVALID_RECORD,
                "a produce request must carry exactly one record batch per partition",
            ));
        };
        if records.len() > self.max_message_bytes.max(0) as usize {
            return Err(PartitionError::new(
                error_code::MESSAGE_TOO_LARGE,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {}",
                    records.len(),
                    self.max_message_bytes
                ),
            ));
        }
        if header.is_control() {
            return Err(PartitionError::new(
                error_code::INVALID_RECORD,
                "clients may not produce control batches",
            ));
        }
        if header.is_transactional() {
            return Err(PartitionError::new(
                error_code::INVALID_TXN_STATE,
                "transactional produce is not supported yet",
            ));
        }
        let now = now_ms();
        let mut state = self.lock();
        let base_offset = match state.producers.check(&header) {
            Ok(SequenceCheck::Duplicate { first_offset }) => first_offset,
            Ok(SequenceCheck::Append) => {
                let base_offset = state.log.log_end_offset();
                let mut owned = records.to_vec();
                batch::patch_offset_and_epoch(&mut owned, base_offset, self.leader_epoch);
                let stored = BatchHeader {
                    base_offset,
                    partition_leader_epoch: self.leader_epoch,
                    ..header
                };
                #[cfg(feature = "failpoints")]
                stall_point(&self.topic);
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
                ))
            }
        };
        let log_start_offset = state.log.log_start_offset();
        self.publish_offsets(&state.log);
        drop(state);
        self.data_arrived.notify_waiters();
        Ok(AppendResult {
            base_offset,
            log_start_offset,
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
    ) -> Result<ReadResult, PartitionError> {
        let (plan, high_watermark, log_start_offset): (ReadPlan, i64, i64) = {
            let state = self.lock();
            (
                state.log.read_plan(offset, max_bytes, min_one_batch)?,
                state.log.log_end_offset(),
                state.log.log_start_offset(),
            )
        };
        Ok(ReadResult {
            records: plan.read()?,
            high_watermark,
            log_start_offset,
        })
    }

    /// (log start offset, high watermark), without the append lock: async code may call it.
    pub fn offsets(&self) -> (i64, i64) {
        // Both only grow; loading the start first keeps start <= high watermark.
        let log_start_offset = self.log_start_offset.load(Ordering::Acquire);
        let high_watermark = self.high_watermark.load(Ordering::Acquire);
        (log_start_offset, high_watermark.max(log_start_offset))
    }

    fn publish_offsets(&self, log: &Log) {
        self.high_watermark
            .store(log.log_end_offset(), Ordering::Release);
        self.log_start_offset
            .store(log.log_start_offset(), Ordering::Release);
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

    /// [`Self::reconcile`] on a blocking thread, for async callers.
    pub async fn reconcile_blocking(self: &Arc<Self>, image: Arc<MetadataImage>) {
        let manager = self.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || manager.reconcile(&image)).await {
            tracing::error!(%error, "reconciling partitions failed");
        }
    }

    /// Opens the partitions the image assigns to this node and deletes those whose topic
    /// is gone. Idempotent. Blocking (opens and recovers logs, removes directories). A partition that fails to open is logged and left out
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
                self.config.topic_max_message_bytes(&topic.configs),
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
