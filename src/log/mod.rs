//! A partition's on-disk log: segments of record batches in Kafka's format, a sparse
//! offset index and a time index per segment, recovery at open, rolling, flush policy.
//!
//! Layout (one directory per partition, as in Kafka): per segment, `<base>.log`,
//! `<base>.index`, `<base>.timeindex` and, once it holds an aborted transaction's
//! marker, `<base>.txnindex`, `<base>` being the segment's base offset
//! zero-padded to 20 digits. See `segment.rs` for the file formats and bounds.
//!
//! Recovery at open scans only the active (last) segment, truncating it at the first
//! torn, truncated, corrupt or overlapping batch. Sealed segments were fsynced when
//! they were rolled; their indexes are trusted when sane, else rebuilt by a scan.
//!
//! A follower replica appends the leader's batches as stored and truncates where its log
//! diverged (`follower.rs`).
//!
//! Retention (`retention.rs`) removes whole segments, oldest first, by `retention.bytes`
//! and `retention.ms`.
//!
//! Resources: every segment keeps its three files open (3 descriptors per segment; a
//! fourth once its `.txnindex` was written since open) and its indexes in memory; see
//! `segment.rs` for the per-segment entry bound (`txn_index.rs`: one 34-byte entry per
//! ABORT marker at most).

pub mod batch;
pub mod cleaner;
pub mod dir;
pub mod epochs;
mod follower;
#[cfg(test)]
mod follower_tests;
mod retention;
mod segment;
#[cfg(test)]
mod tests;
pub mod txn_index;
pub mod txn_marker;
pub mod validator;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use thiserror::Error;

use batch::BatchHeader;
use epochs::{EpochEntry, LeaderEpochCache};
pub use follower::AppendedAsFollower;
pub use retention::{delete_retired_files, RetentionBreach, RetiredSegment};
use segment::{Segment, SegmentView, MAX_RELATIVE_OFFSET, MAX_SEGMENT_BYTES};
use txn_index::AbortedTxn;
use txn_marker::EndTxnMarker;

/// Bytes read from a control batch to parse its marker (a marker batch is ~80 bytes).
const MARKER_READ_BYTES: u64 = 512;

/// `cleanup.policy` / `log.cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

/// Per-log settings, under Kafka's topic-level names.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes` / `log.segment.bytes`: roll once the active segment reaches this.
    pub segment_bytes: u64,
    /// `segment.ms` / `log.roll.ms`: roll once the active segment is this old.
    pub segment_ms: u64,
    /// `index.interval.bytes`: bytes between two offset/time index entries.
    pub index_interval_bytes: u64,
    /// `flush.messages` / `log.flush.interval.messages`: fsync after this many messages.
    pub flush_interval_messages: u64,
    /// `flush.ms` / `log.flush.interval.ms`: fsync once the oldest unflushed append is this old.
    pub flush_interval_ms: u64,
    /// `cleanup.policy` / `log.cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms` / `log.retention.ms` (or `.minutes`, `.hours`): a segment whose
    /// largest timestamp is older than this goes (with `delete` in the policy); -1 forever.
    pub retention_ms: i64,
    /// `retention.bytes` / `log.retention.bytes`: the oldest segments go while the log
    /// stays at least this big without them (with `delete` in the policy); -1 unbounded.
    pub retention_bytes: i64,
    /// `file.delete.delay.ms` / `log.segment.delete.delay.ms`: how long a segment removed
    /// by retention stays on disk as `*.deleted` before its files are unlinked.
    pub file_delete_delay_ms: u64,
    /// `delete.retention.ms` / `log.cleaner.delete.retention.ms`: how long a tombstone
    /// outlives the clean that first kept it (its batch's delete horizon).
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` / `log.cleaner.min.cleanable.ratio`: the dirty share of
    /// the log above which it is cleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms` / `log.cleaner.min.compaction.lag.ms`: segments holding a
    /// record younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms` / `log.cleaner.max.compaction.lag.ms`: a dirty segment older
    /// than this is cleaned whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            flush_interval_messages: u64::MAX,
            flush_interval_ms: u64::MAX,
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: false,
            },
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            file_delete_delay_ms: 60_000,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

#[derive(Debug, Error)]
pub enum LogError {
    #[error("log io: {0}")]
    Io(#[from] std::io::Error),
    #[error("log corrupt: {0}")]
    Corrupt(String),
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// A follower append whose first batch starts below the log end (Kafka's
    /// UnexpectedAppendOffsetException): the caller truncates or refetches.
    #[error("follower append starts at offset {first_offset}, below the log end {log_end}")]
    UnexpectedAppendOffset { first_offset: i64, log_end: i64 },
    /// A follower append whose batches' offsets do not increase (Kafka's
    /// OffsetsOutOfOrderException).
    #[error("follower append: batch at offset {base_offset} after offset {previous_last_offset}")]
    OffsetsOutOfOrder {
        base_offset: i64,
        previous_last_offset: i64,
    },
    /// Bytes from the leader that are not whole valid batches (bad length, magic, CRC;
    /// Kafka's CorruptRecordException). Nothing was appended.
    #[error("follower append: corrupt batch at byte {position}: {error}")]
    CorruptRecords {
        position: usize,
        error: batch::BatchError,
    },
}

/// One partition's log. Appends take `&mut self`; reads take `&self`.
///
/// Reads use positional reads of the segment files, bounded by the in-memory segment
/// sizes, so they only ever see whole appended batches.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Segments by base offset; never empty. The last one is the active segment.
    segments: BTreeMap<i64, Segment>,
    /// Records appended since the last fsync.
    unflushed_messages: u64,
    /// `now_ms` of the oldest append not yet fsynced.
    oldest_unflushed_append_ms: Option<i64>,
    /// The first offset readers may see: the first segment's base, or higher once
    /// DeleteRecords moved it ([`Log::advance_log_start_offset`]).
    log_start_offset: i64,
    /// Which leader epoch wrote from which offset (`leader-epoch-checkpoint`).
    epochs: LeaderEpochCache,
    /// How many truncations ([`Log::truncate_to`]) this log has seen: a clean planned
    /// before one is abandoned.
    truncations: u64,
    /// The lowest offset the log was truncated to since the cleaner last asked: its
    /// checkpoint must not stay above it (Kafka's maybeTruncateCheckpoint).
    truncated_to_for_cleaner: Option<i64>,
    /// False when a `.txnindex` read at open was untrusted (and removed): producer state
    /// must then be replayed from the log start, which rebuilds it.
    txn_indexes_trusted: bool,
}

impl Log {
    /// Replaces the log's settings (a config change reached it, see `dynamic_config`):
    /// later appends, rolls and flush checks follow the new values; nothing already
    /// written changes.
    pub fn set_config(&mut self, config: LogConfig) {
        debug_assert!(config.segment_bytes > 0);
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Opens the log in `dir` (created if missing), recovering the active segment.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, LogError> {
        debug_assert!(config.segment_bytes > 0);
        let created = !dir.exists();
        fs::create_dir_all(dir)?;
        retention::remove_leftover_deleted_files(dir)?;
        cleaner::recover_interrupted_swaps(dir)?;
        let bases = segment_base_offsets(dir)?;
        let mut segments = BTreeMap::new();
        for (i, &base_offset) in bases.iter().enumerate() {
            let segment = match bases.get(i + 1) {
                Some(&next_base) => {
                    Segment::open_sealed(dir, base_offset, next_base, config.index_interval_bytes)?
                }
                None => Segment::open_active(dir, base_offset, config.index_interval_bytes)?,
            };
            segments.insert(base_offset, segment);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(dir, 0)?);
            sync_dir(dir)?;
            if created {
                sync_dir(parent_dir(dir))?;
            }
        }
        let mut txn_indexes_trusted = true;
        for segment in segments.values_mut() {
            txn_indexes_trusted &= segment.load_txn_index(dir)?;
        }
        let log_start_offset = segments.keys().next().copied().unwrap_or(0);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            unflushed_messages: 0,
            oldest_unflushed_append_ms: None,
            log_start_offset,
            epochs: LeaderEpochCache::empty(dir),
            truncations: 0,
            truncated_to_for_cleaner: None,
            txn_indexes_trusted,
        };
        debug_assert!(log.log_start_offset() <= log.log_end_offset());
        log.epochs = match LeaderEpochCache::load(dir, log.log_end_offset())? {
            Some(epochs) => epochs,
            None => {
                // No checkpoint (a log from before it existed, or a damaged file):
                // the stored batches carry their epochs.
                let headers = log.batch_headers_from(log.log_start_offset())?;
                LeaderEpochCache::rebuild(
                    dir,
                    headers.iter().map(|h| EpochEntry {
                        epoch: h.partition_leader_epoch,
                        start_offset: h.base_offset,
                    }),
                )?
            }
        };
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Moves the log start offset up to `offset` (never down): offsets below it are gone
    /// for readers at once, their segments are removed by
    /// [`Log::delete_segments_below_start`]. Beyond the log end is out of range.
    /// Returns whether it moved.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<bool, LogError> {
        let log_end = self.log_end_offset();
        if offset < 0 || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(false);
        }
        self.log_start_offset = offset;
        Ok(true)
    }

    /// Removes every segment that holds only offsets below the log start offset (the next
    /// segment starts at or below it, Kafka's rule); the active segment always stays.
    /// Reads planned before keep their open file handles. Returns how many went.
    pub fn delete_segments_below_start(&mut self) -> Result<usize, LogError> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let doomed: Vec<i64> = bases
            .windows(2)
            .take_while(|pair| pair[1] <= self.log_start_offset)
            .map(|pair| pair[0])
            .collect();
        for base in &doomed {
            if let Some(segment) = self.segments.remove(base) {
                segment.delete_files(&self.dir)?;
            }
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(doomed.len())
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Appends one validated batch whose base offset is already `log_end_offset()`.
    ///
    /// The batch has reached the kernel when this returns, and the disk too if the flush
    /// policy says so. When the write itself fails nothing was appended; when only the
    /// policy's fsync fails the batch is in the log but not known durable, so callers
    /// should treat any `Io` error here as fatal for the log (Kafka takes the log
    /// directory offline).
    pub fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<(), LogError> {
        debug_assert_eq!(header.base_offset, self.log_end_offset());
        debug_assert_eq!(header.total_size(), batch.len());
        debug_assert!(header.last_offset() >= header.base_offset);
        if self.should_roll(0, batch.len() as u64, header, now_ms) {
            self.roll(self.log_end_offset())?;
        }
        self.write_run(batch, std::slice::from_ref(header), now_ms)?;
        debug_assert_eq!(self.log_end_offset(), header.last_offset() + 1);
        self.flush_if_many_unflushed()
    }

    /// Writes whole batches, all going into the active segment, with one write: their
    /// epochs first (the checkpoint must cover every epoch in the log), then the bytes.
    fn write_run(
        &mut self,
        batches: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<(), LogError> {
        if headers.is_empty() {
            return Ok(());
        }
        for header in headers {
            self.epochs
                .assign(header.partition_leader_epoch, header.base_offset)?;
        }
        let index_interval_bytes = self.config.index_interval_bytes;
        self.active_mut()
            .append_run(batches, headers, now_ms, index_interval_bytes)?;
        let messages: u64 = headers.iter().map(|h| h.record_count.max(0) as u64).sum();
        self.unflushed_messages += messages;
        self.oldest_unflushed_append_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Applies `flush.messages` after an append.
    fn flush_if_many_unflushed(&mut self) -> Result<(), LogError> {
        if self.unflushed_messages >= self.config.flush_interval_messages {
            self.flush()?;
        }
        Ok(())
    }

    /// Whether a batch must go into a new segment, `pending_bytes` being already bound for
    /// the active one in the same write.
    fn should_roll(
        &self,
        pending_bytes: u64,
        batch_bytes: u64,
        header: &BatchHeader,
        now_ms: i64,
    ) -> bool {
        let active = self.active();
        // Kafka rolls before relative offsets overflow an index entry; a follower's batch
        // may start far past an empty active segment's base.
        if header.last_offset() - active.base_offset > MAX_RELATIVE_OFFSET {
            return true;
        }
        if active.is_empty() && pending_bytes == 0 {
            // A batch larger than a segment still goes into an empty one.
            return false;
        }
        let segment_bytes = self.config.segment_bytes.min(MAX_SEGMENT_BYTES);
        let too_big = active.size_bytes() + pending_bytes + batch_bytes > segment_bytes;
        let segment_ms = self.config.segment_ms.min(i64::MAX as u64) as i64;
        let rolling_base_ms = active
            .rolling_base_ms()
            .or((pending_bytes > 0).then_some(now_ms));
        let too_old =
            rolling_base_ms.is_some_and(|base_ms| now_ms.saturating_sub(base_ms) >= segment_ms);
        too_big || too_old
    }

    /// Seals the active segment (fsyncing it) and starts a new one at `base_offset`: the
    /// log end, or (a follower's batch after a gap) the next batch's base offset, as Kafka.
    fn roll(&mut self, base_offset: i64) -> Result<(), LogError> {
        debug_assert!(base_offset >= self.log_end_offset());
        self.active_mut().seal()?;
        let segment = Segment::create(&self.dir, base_offset)?;
        // Insert before syncing the directory: the file exists either way, and a retried
        // roll must not try to create it again.
        self.segments.insert(base_offset, segment);
        sync_dir(&self.dir)?;
        // Sealing fsynced everything appended so far.
        self.unflushed_messages = 0;
        self.oldest_unflushed_append_ms = None;
        Ok(())
    }

    fn check_offset(&self, offset: i64) -> Result<(), LogError> {
        let (log_start, log_end) = (self.log_start_offset(), self.log_end_offset());
        if offset < log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        Ok(())
    }

    /// The segment base and position of the batch holding `offset` (or the first batch
    /// after it), None at the log end.
    fn locate(&self, offset: i64) -> Result<Option<(i64, u64)>, LogError> {
        let Some((&first_base, _)) = self.segments.range(..=offset).next_back() else {
            return Ok(None);
        };
        for (&base_offset, segment) in self.segments.range(first_base..) {
            if base_offset == first_base {
                if let Some((position, _)) = segment.find_batch(offset)? {
                    return Ok(Some((base_offset, position)));
                }
            } else if !segment.is_empty() {
                return Ok(Some((base_offset, 0)));
            }
        }
        Ok(None)
    }

    /// This node leads the log from `epoch` on (Kafka's makeLeader): the epoch starts at
    /// the log end, so OffsetForLeaderEpoch knows it before its first batch.
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> Result<(), LogError> {
        let log_end_offset = self.log_end_offset();
        Ok(self.epochs.assign(epoch, log_end_offset)?)
    }

    /// The latest leader epoch that wrote (or, leading, will write) to this log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch's answer for `epoch`: (the largest known epoch <= it, the
    /// offset where that epoch's writes end), Kafka's (-1, -1) when there is none.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes`; at least one
    /// whole batch when `min_one_batch`. Empty at the log end.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Bytes, LogError> {
        self.read_plan(offset, self.log_end_offset(), max_bytes, min_one_batch)?
            .read()
    }

    /// Everything [`Log::read`] needs, taken from memory without any IO, so that the
    /// caller can drop the log lock before [`ReadPlan::read`] does the preads. Batches
    /// from `max_offset` on are left out (consumers read below the high watermark, a batch
    /// boundary); `offset` may be anywhere in the log.
    pub fn read_plan(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadPlan, LogError> {
        self.check_offset(offset)?;
        let mut plan = ReadPlan {
            offset,
            max_offset,
            start_position: 0,
            segments: Vec::new(),
            max_bytes,
            min_one_batch,
        };
        if offset >= max_offset.min(self.log_end_offset()) {
            return Ok(plan);
        }
        let Some((&first_base, first)) = self.segments.range(..=offset).next_back() else {
            return Ok(plan);
        };
        plan.start_position = first.index_position(offset);
        plan.segments = self
            .segments
            .range(first_base..)
            .map(|(_, segment)| segment.view())
            .collect();
        Ok(plan)
    }

    /// The first batch whose max timestamp is >= `timestamp_ms`.
    /// Batches wholly below the log start offset are skipped.
    pub fn first_batch_at_or_after_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<Bytes>, LogError> {
        for segment in self.segments.values() {
            // The in-memory max timestamp skips whole segments without touching them.
            if segment
                .max_timestamp()
                .is_none_or(|max| max.timestamp_ms < timestamp_ms)
            {
                continue;
            }
            if let Some((position, header)) =
                segment.find_batch_by_timestamp(timestamp_ms, self.log_start_offset)?
            {
                return Ok(Some(read_batch(segment, position, &header)?));
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp in the log (the first such batch).
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Bytes>, LogError> {
        let mut best: Option<(&Segment, segment::MaxTimestamp)> = None;
        for segment in self.segments.values() {
            if let Some(max) = segment.max_timestamp() {
                // Strictly greater: the earliest segment wins a tie.
                if best.is_none_or(|(_, best_max)| max.timestamp_ms > best_max.timestamp_ms) {
                    best = Some((segment, max));
                }
            }
        }
        let Some((segment, max)) = best else {
            return Ok(None);
        };
        let position = max.position;
        let header = segment.header_at(position)?;
        if header.max_timestamp != max.timestamp_ms {
            return Err(LogError::Corrupt(format!(
                "segment {} position {position}: max timestamp index disagrees with the log",
                segment.base_offset
            )));
        }
        Ok(Some(read_batch(segment, position, &header)?))
    }

    /// Headers of all batches with last offset >= `offset`, in log order.
    pub fn batch_headers_from(&self, offset: i64) -> Result<Vec<BatchHeader>, LogError> {
        let mut headers = Vec::new();
        self.visit_batch_headers_from(offset, |header| headers.push(*header))?;
        Ok(headers)
    }

    /// Calls `visit` with the header of every batch with last offset >= `offset`, in log
    /// order, one header read at a time (a rebuild over a long log holds no list of them).
    pub fn visit_batch_headers_from(
        &self,
        offset: i64,
        mut visit: impl FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        self.walk_batches_from(offset, |_, _, header| {
            visit(header);
            Ok(())
        })
    }

    /// Like [`Log::visit_batch_headers_from`], with the transaction marker of each control
    /// batch (None for a data batch, or a control batch that holds no marker): what
    /// rebuilding producer state needs. Reads a marker's first bytes only.
    pub fn visit_batches_for_producer_state(
        &self,
        offset: i64,
        mut visit: impl FnMut(&BatchHeader, Option<EndTxnMarker>),
    ) -> Result<(), LogError> {
        self.walk_batches_from(offset, |segment, position, header| {
            let marker = if header.is_control() {
                let mut bytes = Vec::new();
                let len = (header.total_size() as u64).min(MARKER_READ_BYTES);
                segment.read_into(position, len, &mut bytes)?;
                txn_marker::parse_marker(&bytes)
            } else {
                None
            };
            visit(header, marker);
            Ok(())
        })
    }

    /// Walks the batches from the one holding `offset` (at least the log start) to the log
    /// end, handing each one's segment, position in it and header to `visit`.
    fn walk_batches_from(
        &self,
        offset: i64,
        mut visit: impl FnMut(&Segment, u64, &BatchHeader) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let offset = offset.max(self.log_start_offset());
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let Some((start_base, start_position)) = self.locate(offset)? else {
            return Ok(());
        };
        for (&base_offset, segment) in self.segments.range(start_base..) {
            let mut position = if base_offset == start_base {
                start_position
            } else {
                0
            };
            while position < segment.size_bytes() {
                let header = segment.header_at(position)?;
                visit(segment, position, &header)?;
                position += header.total_size() as u64;
            }
        }
        Ok(())
    }

    /// Whether every `.txnindex` read at open was trusted (see `rebuild_producer_state`).
    pub fn txn_indexes_trusted(&self) -> bool {
        self.txn_indexes_trusted
    }

    /// Records an aborted transaction in the transaction index of the segment holding its
    /// marker (`entry.last_offset`, already appended); an entry for that marker already
    /// there is kept. An `Io` error is fatal for the log, as for [`Log::append`].
    pub fn add_aborted_txn(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        let Some((_, segment)) = self.segments.range_mut(..=entry.last_offset).next_back() else {
            return Ok(());
        };
        if entry.last_offset >= segment.next_offset() {
            return Ok(());
        }
        segment.add_aborted_txn(entry)
    }

    /// Kafka's collectAbortedTransactions: the aborted transactions overlapping
    /// `[fetch_offset, upper_bound_offset)`, from the transaction indexes of the segment
    /// holding `fetch_offset` on (memory only). A segment whose entry recorded an LSO at
    /// or past the bound ends the search, as in Kafka.
    pub fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<AbortedTxn> {
        let start = self
            .segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(&base, _)| base);
        let mut found = Vec::new();
        for segment in self.segments.range(start..).map(|(_, s)| s) {
            if segment.base_offset >= upper_bound_offset {
                break;
            }
            let entries = segment.aborted_txns();
            found
                .extend(txn_index::overlapping(entries, fetch_offset, upper_bound_offset).copied());
            if entries
                .iter()
                .any(|e| e.last_stable_offset >= upper_bound_offset)
            {
                break;
            }
        }
        found
    }

    /// fsyncs the active segment's data (sealed segments were fsynced when rolled).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.active().flush()?;
        self.unflushed_messages = 0;
        self.oldest_unflushed_append_ms = None;
        Ok(())
    }

    /// Applies `flush.ms`: fsyncs when the oldest unflushed append is older than it.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<(), LogError> {
        let Some(oldest_ms) = self.oldest_unflushed_append_ms else {
            return Ok(());
        };
        let flush_interval_ms = self.config.flush_interval_ms.min(i64::MAX as u64) as i64;
        if self.config.flush_interval_ms != u64::MAX
            && now_ms.saturating_sub(oldest_ms) >= flush_interval_ms
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Removes every file of this log, then its directory. Nothing is flushed first: the
    /// data is going away.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        // Close the files before removing them.
        drop(self);
        fs::remove_dir_all(&dir)?;
        sync_dir(parent_dir(&dir))?;
        Ok(())
    }
}

/// A read of whole batches over immutable segment prefixes (see [`Log::read_plan`]):
/// appends that land meanwhile are past the views and not seen.
pub struct ReadPlan {
    offset: i64,
    /// Exclusive: the read stops at the batch starting here.
    max_offset: i64,
    /// Where in the first segment the scan for `offset` starts (from its offset index).
    start_position: u64,
    /// The segment holding `offset` and every later one; empty at the log end.
    segments: Vec<SegmentView>,
    max_bytes: usize,
    min_one_batch: bool,
}

impl ReadPlan {
    /// Does the preads; call it without holding the log lock.
    pub fn read(&self) -> Result<Bytes, LogError> {
        let Some((start_index, start_position)) = self.locate()? else {
            return Ok(Bytes::new());
        };
        let max_bytes = self.max_bytes as u64;
        let mut out = Vec::new();
        for (i, segment) in self.segments.iter().enumerate().skip(start_index) {
            let run_start = if i == start_index { start_position } else { 0 };
            let mut position = run_start;
            let mut full = false;
            while position < segment.size_bytes() {
                let header = segment.header_at(position)?;
                if header.base_offset >= self.max_offset {
                    full = true;
                    break;
                }
                let batch_bytes = header.total_size() as u64;
                let taken_bytes = out.len() as u64 + (position - run_start);
                if taken_bytes + batch_bytes > max_bytes {
                    if taken_bytes == 0 && self.min_one_batch {
                        position += batch_bytes;
                    }
                    full = true;
                    break;
                }
                position += batch_bytes;
            }
            segment.read_into(run_start, position - run_start, &mut out)?;
            if full {
                break;
            }
        }
        debug_assert!(out.len() as u64 <= max_bytes || self.min_one_batch);
        Ok(Bytes::from(out))
    }

    /// The segment (index into `segments`) and position of the batch holding `offset`, or
    /// of the first batch after it; None at the end of the views.
    fn locate(&self) -> Result<Option<(usize, u64)>, LogError> {
        for (i, segment) in self.segments.iter().enumerate() {
            if i == 0 {
                if let Some((position, _)) =
                    segment.find_batch_from(self.start_position, self.offset)?
                {
                    return Ok(Some((0, position)));
                }
            } else if !segment.is_empty() {
                return Ok(Some((i, 0)));
            }
        }
        Ok(None)
    }
}

fn read_batch(segment: &Segment, position: u64, header: &BatchHeader) -> Result<Bytes, LogError> {
    let mut out = Vec::new();
    segment.read_into(position, header.total_size() as u64, &mut out)?;
    Ok(Bytes::from(out))
}

/// Base offsets of the segments in `dir`, from `<20 digits>.log` names; other files are
/// not ours to judge and are ignored.
fn segment_base_offsets(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match stem.parse::<i64>() {
            Ok(base) => bases.push(base),
            Err(_) => tracing::warn!(file = stem, "segment base offset out of range; ignored"),
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// The directory holding `dir`; a bare relative name's parent is the working directory.
fn parent_dir(dir: &Path) -> &Path {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// fsyncs a directory so that file creations and removals in it are durable.
fn sync_dir(dir: &Path) -> Result<(), LogError> {
    Ok(dir::sync_dir(dir)?)
}
