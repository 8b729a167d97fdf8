//! The log cleaner: compaction of the logs whose `cleanup.policy` has `compact`, after
//! Kafka's LogCleaner, LogCleanerManager and Cleaner.
//!
//! One dedicated thread ([`LogCleaner`]) repeatedly picks the dirtiest compacted log (the
//! largest share of bytes past its cleaner checkpoint, above `min.cleanable.dirty.ratio`,
//! or any log with a segment older than `max.compaction.lag.ms`), backing off
//! `log.cleaner.backoff.ms` when there is none. Only sealed segments are cleaned, and
//! not those holding a record younger than `min.compaction.lag.ms`.
//!
//! A clean: (1) a key -> latest offset map of the dirty section, bounded by
//! `log.cleaner.dedupe.buffer.size` (when it fills, fewer segments are cleaned this time);
//! (2) the log from its first segment up to where the map ends is rewritten, group of
//! segments by group (a group fits one segment), each into `<base>.log.cleaned`: a record
//! survives if no later offset of its key is in the map, and a tombstone (null value) also
//! only until its batch's delete horizon (KIP-534: set to now + `delete.retention.ms` by
//! the first clean that keeps it, in the batch's baseTimestamp); retained records keep
//! their offsets, their batch its base offset, lastOffsetDelta, producer id, epoch and base
//! sequence; a batch left empty is dropped, unless it is the last batch of an idempotent
//! producer the partition still tracks or ends the cleaned range (kept as an empty
//! header, as Kafka does); control batches are kept as they are; (3) the file is fsynced,
//! renamed `.swap`, and under the partition lock, briefly, the old segments leave the log
//! (readers keep their open file handles), the `.swap` becomes `<base>.log`, its indexes
//! (built in memory while writing) are written, and a sealed segment takes their place;
//! (4) `cleaner-offset-checkpoint` (Kafka's format) records how far the log is clean.
//! Produce and fetch are never blocked by the reads and writes of a clean.
//!
//! Recovery ([`recover_interrupted_swaps`], at log open, as Kafka's LogLoader): `.cleaned`
//! files are deleted; a `.swap` file replaces the segments its offsets cover.
//!
//! IO is throttled to `log.cleaner.io.max.bytes.per.second`. An IO error takes the log
//! directory offline (fail-stop); bytes that do not parse mark the log uncleanable until
//! a restart (Kafka's uncleanable partitions), never a panic.
//!
//! Not yet: transactions (aborted batches would be removed here, control markers after
//! their delete horizon); Millrace has none, so every batch counts as committed and
//! control batches are kept.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::BuildHasher;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::batch::{self, BatchHeader, ATTR_DELETE_HORIZON, HEADER_SIZE};
use super::dir::{self, LogDirHealth};
use super::segment::{file_name, CleanedSegment, Segment, SegmentView, MAX_SEGMENT_BYTES};
use super::txn_index::AbortedTxn;
use super::txn_marker;
use super::{sync_dir, Log, LogConfig, LogError};

/// Kafka's file of how far each log is cleaned, one per log directory.
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const CLEANED_SUFFIX: &str = "cleaned";
const SWAP_SUFFIX: &str = "swap";
/// One offset map slot: a 16-byte digest of the key and an 8-byte offset (the layout of
/// Kafka's SkimpyOffsetMap with MD5), so the buffer size is the map's memory.
const MAP_SLOT_BYTES: u64 = 24;
/// Kafka's `log.cleaner.io.buffer.load.factor` default: the map counts as full at 90%.
const MAP_LOAD_FACTOR: f64 = 0.9;
/// A dedupe buffer must hold at least one key (Kafka: slots * load factor > 1).
pub const MIN_DEDUPE_BUFFER_BYTES: u64 = 2 * MAP_SLOT_BYTES;
/// Larger buffers are cut to this (Kafka: at most 2 GiB per cleaner thread).
const MAX_DEDUPE_BUFFER_BYTES: u64 = i32::MAX as u64;
/// How often the throttler compares the IO rate with its bound (Kafka's 300 ms).
const THROTTLE_CHECK_INTERVAL: Duration = Duration::from_millis(300);
/// Decompressed bytes of one stored batch are bounded like a produced batch's: this many
/// times its size, at least [`MIN_DECOMPRESSION_BASE_BYTES`] (see `config.rs`).
const DECOMPRESSION_RATIO_BOUND: u64 = 64;
const MIN_DECOMPRESSION_BASE_BYTES: u64 = 1 << 20;
const NO_TIMESTAMP: i64 = -1;
/// The codec bits of a batch's attributes.
const CODEC_MASK: i16 = 0x07;

/// Broker-level cleaner settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`
    pub enable: bool,
    /// `log.cleaner.threads`: Millrace runs one.
    pub threads: u32,
    /// `log.cleaner.io.max.bytes.per.second`: read plus written bytes.
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.dedupe.buffer.size`: memory of the key -> offset map.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.backoff.ms`: sleep when no log needs cleaning.
    pub backoff_ms: u64,
}

/// A log the cleaner may compact, lent out by its owner (the partition).
pub trait CleanableLog: Send + Sync {
    /// `(topic, partition)`: the log's key in the checkpoint.
    fn topic_partition(&self) -> (String, i32);
    /// Runs `f` on the log under the owner's lock; not at all once the log is offline.
    /// The cleaner only does memory work and the brief swap in there.
    fn with_log(&self, f: &mut dyn FnMut(&mut Log));
    /// The last offset of every idempotent producer the owner still tracks: those
    /// batches are kept (emptied if need be) so that the producers' sequences survive.
    fn producer_last_offsets(&self) -> HashMap<i64, i64>;
    /// The last stable offset: nothing at or past it is cleaned (an undecided
    /// transaction's records might still be aborted).
    fn last_stable_offset(&self) -> i64;
}

type LogKey = (String, i32);

/// Stops the cleaner thread, also out of a throttling sleep.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Sleeps up to `duration`; returns whether the cleaner was stopped.
    fn sleep(&self, duration: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, duration, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *stopped
    }
}

/// The running cleaner thread.
pub struct LogCleaner {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl LogCleaner {
    /// Starts the cleaner thread (none when `log.cleaner.enable` is false). `config`
    /// gives the current settings, read again every round (Kafka changes the cleaner's
    /// throttle, dedupe buffer and back-off live); `logs` lists the hosted logs each
    /// round; the cleaner picks the compacted ones. An IO error trips `health` and ends
    /// the thread.
    pub fn start(
        config: impl Fn() -> CleanerConfig + Send + 'static,
        data_dir: &Path,
        health: Arc<LogDirHealth>,
        logs: impl Fn() -> Vec<Arc<dyn CleanableLog>> + Send + 'static,
    ) -> io::Result<LogCleaner> {
        let stop = Arc::new(Stop::default());
        let initial = config();
        if !initial.enable {
            return Ok(LogCleaner { stop, thread: None });
        }
        let mut cleaner = Cleaner::with_stop(initial, data_dir, stop.clone());
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("log-cleaner-0".to_string())
            .spawn(move || {
                while !thread_stop.is_stopped() && !health.is_offline() {
                    cleaner.set_config(config());
                    match cleaner.clean_filthiest(&logs(), now_ms()) {
                        Ok(true) => {}
                        Ok(false) => {
                            thread_stop
                                .sleep(Duration::from_millis(cleaner.config.backoff_ms.max(1)));
                        }
                        Err(error) => {
                            health.trip(&format_args!("log cleaner: {error}"));
                            return;
                        }
                    }
                }
            })?;
        Ok(LogCleaner {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (a clean in progress is abandoned, its `.cleaned` file removed)
    /// and waits for it. Blocking.
    pub fn shutdown(mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the log cleaner thread panicked");
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What went on in one clean, for the log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_retained: u64,
    /// Where the next clean's dirty section starts.
    pub end_offset: i64,
}

/// The cleaner's state across rounds: its checkpoint, offset map and throttler.
pub struct Cleaner {
    config: CleanerConfig,
    checkpoint_path: PathBuf,
    /// Loaded lazily, on the first round.
    checkpoint: Option<HashMap<LogKey, i64>>,
    map: OffsetMap,
    throttler: Throttler,
    stop: Arc<Stop>,
    /// Logs whose bytes would not parse: skipped until a restart.
    uncleanable: HashSet<LogKey>,
    /// The last clean's numbers.
    pub last_stats: CleanStats,
}

/// The offsets and sizes that decide whether, and how much of, a log is cleaned
/// (Kafka's LogToClean), with views of its sealed segments, taken under the log lock.
struct Candidate {
    log: Arc<dyn CleanableLog>,
    key: LogKey,
    config: LogConfig,
    dir: PathBuf,
    first_dirty: i64,
    /// The base of the first segment that may not be cleaned (the active one at most).
    first_uncleanable: i64,
    /// Every sealed segment, oldest first.
    segments: Vec<SegmentView>,
    /// The aborted transactions of the cleanable range, by first offset (from the
    /// transaction indexes).
    aborted: Vec<AbortedTxn>,
    clean_bytes: u64,
    cleanable_bytes: u64,
    /// The checkpoint was past the log (or before its start) and was reset.
    reset_checkpoint: bool,
    /// [`Log::truncations`] when the candidate was taken: a truncation since invalidates
    /// the views (their files may be shorter now), so the clean is abandoned.
    truncations: u64,
}

impl Candidate {
    /// Whether the log was truncated since the candidate was taken.
    fn truncated_since(&self) -> bool {
        let mut truncations = self.truncations;
        self.log
            .with_log(&mut |log: &mut Log| truncations = log.truncations());
        truncations != self.truncations
    }
}

impl Candidate {
    fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.cleanable_bytes;
        if total == 0 {
            return 0.0;
        }
        self.cleanable_bytes as f64 / total as f64
    }
}

impl Cleaner {
    /// A cleaner driven by its caller ([`Cleaner::clean_filthiest`]); the checkpoint file
    /// lives in `data_dir`.
    pub fn new(config: CleanerConfig, data_dir: &Path) -> Cleaner {
        Cleaner::with_stop(config, data_dir, Arc::new(Stop::default()))
    }

    /// Takes new settings between cleans: the throttle's rate at once, a new dedupe
    /// buffer size from the next clean on.
    pub fn set_config(&mut self, config: CleanerConfig) {
        if config == self.config {
            return;
        }
        if config.dedupe_buffer_bytes != self.config.dedupe_buffer_bytes {
            self.map = OffsetMap::new(config.dedupe_buffer_bytes.min(MAX_DEDUPE_BUFFER_BYTES));
        }
        self.throttler.bytes_per_second = config.io_max_bytes_per_second;
        tracing::info!(?config, "log cleaner settings changed");
        self.config = config;
    }

    fn with_stop(config: CleanerConfig, data_dir: &Path, stop: Arc<Stop>) -> Cleaner {
        let map_bytes = config.dedupe_buffer_bytes.min(MAX_DEDUPE_BUFFER_BYTES);
        Cleaner {
            throttler: Throttler::new(config.io_max_bytes_per_second),
            map: OffsetMap::new(map_bytes),
            config,
            checkpoint_path: data_dir.join(CHECKPOINT_FILE),
            checkpoint: None,
            stop,
            uncleanable: HashSet::new(),
            last_stats: CleanStats::default(),
        }
    }

    /// One round: cleans the dirtiest log that needs it. Returns whether one was cleaned;
    /// an error is an IO error (the caller takes the log directory offline).
    pub fn clean_filthiest(
        &mut self,
        logs: &[Arc<dyn CleanableLog>],
        now_ms: i64,
    ) -> Result<bool, LogError> {
        let checkpoint = self.load_checkpoint()?.clone();
        let mut best: Option<(Candidate, f64)> = None;
        for log in logs {
            let key = log.topic_partition();
            if self.uncleanable.contains(&key) {
                continue;
            }
            let mut checkpointed = checkpoint.get(&key).copied();
            // Kafka's maybeTruncateCheckpoint: a follower's truncation below the clean
            // offset makes what is appended there again dirty.
            let mut truncated_to = None;
            log.with_log(&mut |l: &mut Log| truncated_to = l.take_truncation_for_cleaner());
            if let (Some(clean), Some(truncated)) = (checkpointed, truncated_to) {
                if truncated < clean {
                    self.set_checkpoint(&key, truncated, logs)?;
                    checkpointed = Some(truncated);
                }
            }
            let Some(candidate) = candidate(log, key, checkpointed, now_ms) else {
                continue;
            };
            let ratio = candidate.dirty_ratio();
            let due = match max_compaction_delay_due(&candidate, now_ms) {
                Ok(due) => due,
                // Read from a segment a truncation shortened meanwhile.
                Err(_) if candidate.truncated_since() => continue,
                Err(error) => {
                    self.give_up_on(&candidate.key, error)?;
                    continue;
                }
            };
            let cleanable = (due && candidate.cleanable_bytes > 0)
                || ratio > candidate.config.min_cleanable_dirty_ratio;
            if candidate.reset_checkpoint {
                self.set_checkpoint(&candidate.key, candidate.first_dirty, logs)?;
            }
            if cleanable
                && best
                    .as_ref()
                    .is_none_or(|(_, best_ratio)| ratio > *best_ratio)
            {
                best = Some((candidate, ratio));
            }
        }
        let Some((candidate, _)) = best else {
            return Ok(false);
        };
        let key = candidate.key.clone();
        match self.clean(&candidate, now_ms) {
            Ok(Some(stats)) => {
                tracing::info!(
                    topic = %key.0,
                    partition = key.1,
                    from = candidate.first_dirty,
                    to = stats.end_offset,
                    read_bytes = stats.bytes_read,
                    written_bytes = stats.bytes_written,
                    read_records = stats.records_read,
                    kept_records = stats.records_retained,
                    "log cleaned"
                );
                self.last_stats = stats;
                self.set_checkpoint(&key, stats.end_offset, logs)?;
                Ok(true)
            }
            Ok(None) => Ok(false),
            // The topic was deleted under the clean: nothing left to clean or to fail.
            Err(LogError::Io(_)) if !candidate.dir.exists() => Ok(false),
            // A follower truncated the log under the clean (its reads may have hit the
            // shortened files): the next round starts over.
            Err(_) if candidate.truncated_since() => Ok(false),
            Err(error) => {
                self.give_up_on(&key, error)?;
                Ok(false)
            }
        }
    }

    /// Bad bytes make a log uncleanable (warned once); an IO error goes up.
    fn give_up_on(&mut self, key: &LogKey, error: LogError) -> Result<(), LogError> {
        match error {
            LogError::Io(error) => Err(LogError::Io(error)),
            error => {
                tracing::warn!(topic = %key.0, partition = key.1, %error, "log cannot be cleaned; skipped until restart");
                self.uncleanable.insert(key.clone());
                Ok(())
            }
        }
    }

    fn load_checkpoint(&mut self) -> Result<&HashMap<LogKey, i64>, LogError> {
        if self.checkpoint.is_none() {
            self.checkpoint = Some(read_checkpoint(&self.checkpoint_path)?);
        }
        Ok(self.checkpoint.get_or_insert_with(HashMap::new))
    }

    /// Records `offset` for `key` and rewrites the file with the hosted logs' entries.
    fn set_checkpoint(
        &mut self,
        key: &LogKey,
        offset: i64,
        logs: &[Arc<dyn CleanableLog>],
    ) -> Result<(), LogError> {
        let hosted: HashSet<LogKey> = logs.iter().map(|log| log.topic_partition()).collect();
        let entries = self.checkpoint.get_or_insert_with(HashMap::new);
        entries.insert(key.clone(), offset);
        entries.retain(|key, _| hosted.contains(key));
        write_checkpoint(&self.checkpoint_path, entries)
    }

    /// Cleans the candidate; None when it was abandoned (shutdown, or the log changed
    /// under it: a segment was removed by retention or DeleteRecords).
    fn clean(
        &mut self,
        candidate: &Candidate,
        now_ms: i64,
    ) -> Result<Option<CleanStats>, LogError> {
        let mut stats = CleanStats::default();
        let Some(end_offset) = self.build_offset_map(candidate, &mut stats)? else {
            return Ok(None);
        };
        if end_offset <= candidate.first_dirty {
            return Err(LogError::Corrupt(format!(
                "log.cleaner.dedupe.buffer.size {} cannot hold a single key of the dirty section",
                self.config.dedupe_buffer_bytes
            )));
        }
        stats.end_offset = end_offset;
        let producers = candidate.log.producer_last_offsets();
        let to_clean: Vec<&SegmentView> = candidate
            .segments
            .iter()
            .filter(|view| view.base_offset < end_offset)
            .collect();
        let rules = RetentionRules {
            now_ms,
            delete_retention_ms: candidate.config.delete_retention_ms,
            upper_bound: candidate.first_uncleanable,
            producers: &producers,
        };
        // One pass over the groups in offset order: the transaction state carries over.
        let mut txns = CleanedTxns::new(&candidate.aborted, i64::MIN);
        for group in group_by_size(&to_clean, &candidate.config, candidate.first_uncleanable) {
            let base = group[0].base_offset;
            let cleaned_path = candidate
                .dir
                .join(format!("{}.{CLEANED_SUFFIX}", file_name(base, "log")));
            let mut cleaned =
                CleanedSegment::create(&cleaned_path, base, candidate.config.index_interval_bytes)?;
            let mut completed = true;
            for view in &group {
                if !self.clean_into(view, &mut cleaned, &rules, &mut txns, &mut stats)? {
                    completed = false;
                    break;
                }
            }
            if completed {
                cleaned.flush()?;
                let mut slot = Some(cleaned);
                let mut aborted = Some(txns.take_retained());
                let mut swapped = Ok(false);
                candidate.log.with_log(&mut |log| {
                    swapped = swap_in(
                        log,
                        &group,
                        &cleaned_path,
                        &mut slot,
                        aborted.take().unwrap_or_default(),
                        candidate.truncations,
                    );
                });
                if swapped? {
                    continue;
                }
            }
            remove_if_exists(&cleaned_path)?;
            return Ok(None);
        }
        Ok(Some(stats))
    }

    /// Maps every key of the dirty section to its latest offset, until the map is full;
    /// returns the offset up to which the map is complete (exclusive), None if stopped.
    fn build_offset_map(
        &mut self,
        candidate: &Candidate,
        stats: &mut CleanStats,
    ) -> Result<Option<i64>, LogError> {
        self.map.clear();
        let start = candidate.first_dirty;
        let end = candidate.first_uncleanable;
        let dirty: Vec<&SegmentView> = candidate
            .segments
            .iter()
            .filter(|view| view.base_offset < end && view.next_offset() > start)
            .collect();
        // Aborted transactions' records never enter the map (Kafka's buildOffsetMap).
        let mut txns = CleanedTxns::new(&candidate.aborted, start);
        for (i, view) in dirty.iter().enumerate() {
            let next_start = dirty.get(i + 1).map_or(end, |next| next.base_offset);
            let mut position = 0;
            while position < view.size_bytes() {
                if self.stop.is_stopped() {
                    return Ok(None);
                }
                let (header, bytes) = read_batch(view, position)?;
                position += bytes.len() as u64;
                stats.bytes_read += bytes.len() as u64;
                if !self.throttler.throttle(bytes.len() as u64, &self.stop) {
                    return Ok(None);
                }
                if header.last_offset() < start {
                    continue;
                }
                let aborted = txns.on_batch(&header, &bytes);
                if !header.is_control() && !aborted {
                    let records = batch_records(&header, &bytes)?;
                    for record in RecordIter::new(&records, header.record_count) {
                        let record = record?;
                        let offset = header.base_offset + record.offset_delta as i64;
                        let Some(key) = record.key else {
                            continue;
                        };
                        if offset < start {
                            continue;
                        }
                        if !self.map.put(key, offset) {
                            return Ok(Some(self.map.latest_offset + 1));
                        }
                    }
                }
                self.map.latest_offset = self.map.latest_offset.max(header.last_offset());
            }
            // Offsets may be missing at the segment's end: the map covers them too.
            self.map.latest_offset = self.map.latest_offset.max(next_start - 1);
        }
        Ok(Some(self.map.latest_offset + 1))
    }

    /// Copies the batches of one old segment into the cleaned one, keeping what
    /// [`RetentionRules`] keeps. Returns false if stopped.
    fn clean_into(
        &mut self,
        view: &SegmentView,
        cleaned: &mut CleanedSegment,
        rules: &RetentionRules<'_>,
        txns: &mut CleanedTxns,
        stats: &mut CleanStats,
    ) -> Result<bool, LogError> {
        let mut position = 0;
        while position < view.size_bytes() {
            if self.stop.is_stopped() {
                return Ok(false);
            }
            let (header, bytes) = read_batch(view, position)?;
            position += bytes.len() as u64;
            stats.bytes_read += bytes.len() as u64;
            let discard = txns.on_batch(&header, &bytes);
            let kept = filter_batch(&header, &bytes, &self.map, rules, discard, stats)?;
            let written = match &kept {
                Kept::Original => Some((header, &bytes[..])),
                Kept::Rebuilt(new_header, new_bytes) => Some((*new_header, &new_bytes[..])),
                Kept::Nothing => None,
            };
            if let Some((header, bytes)) = written {
                if !cleaned.fits(bytes.len() as u64, header.last_offset()) {
                    return Err(LogError::Corrupt(format!(
                        "cleaned segment {} would overflow the segment format",
                        view.base_offset
                    )));
                }
                cleaned.append(bytes, &header)?;
                stats.bytes_written += bytes.len() as u64;
            }
            let io_bytes = bytes.len() as u64 + written.map_or(0, |(_, b)| b.len() as u64);
            if !self.throttler.throttle(io_bytes, &self.stop) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Takes the candidate's numbers under the log lock (memory only); None when the log is
/// not compacted, offline or empty.
fn candidate(
    log: &Arc<dyn CleanableLog>,
    key: LogKey,
    checkpoint: Option<i64>,
    now_ms: i64,
) -> Option<Candidate> {
    let mut out = None;
    let mut truncations = 0;
    let mut aborted = Vec::new();
    // Read before the log lock (the owner's LSO takes its own); it only grows, but for a
    // truncation, which abandons the clean anyway.
    let last_stable_offset = log.last_stable_offset();
    log.with_log(&mut |l: &mut Log| {
        truncations = l.truncations();
        out = candidate_of(l, checkpoint, now_ms, last_stable_offset);
        if let Some((_, _, _, first_uncleanable, segments, _)) = &out {
            let from = segments.first().map_or(i64::MAX, |s| s.base_offset);
            aborted = l.collect_aborted_txns(from, *first_uncleanable);
        }
    });
    aborted.sort_by_key(|txn| txn.first_offset);
    let (config, dir, first_dirty, first_uncleanable, segments, reset_checkpoint) = out?;
    let clean_bytes = segments
        .iter()
        .filter(|view| view.base_offset < first_dirty)
        .map(SegmentView::size_bytes)
        .sum();
    let cleanable_bytes = segments
        .iter()
        .filter(|view| view.next_offset() > first_dirty && view.base_offset < first_uncleanable)
        .map(SegmentView::size_bytes)
        .sum::<u64>();
    if clean_bytes + cleanable_bytes == 0 {
        return None;
    }
    Some(Candidate {
        log: log.clone(),
        key,
        config,
        dir,
        first_dirty,
        first_uncleanable,
        segments,
        aborted,
        clean_bytes,
        cleanable_bytes,
        reset_checkpoint,
        truncations,
    })
}

type CandidateParts = (LogConfig, PathBuf, i64, i64, Vec<SegmentView>, bool);

/// Kafka's cleanableOffsets: the dirty section starts at the checkpoint (the log start if
/// it is missing or out of range) and ends before the active segment, before the first
/// segment holding a record younger than `min.compaction.lag.ms`, and at the last stable
/// offset.
fn candidate_of(
    log: &Log,
    checkpoint: Option<i64>,
    now_ms: i64,
    last_stable_offset: i64,
) -> Option<CandidateParts> {
    let config = log.config.clone();
    if !config.cleanup_policy.compact {
        return None;
    }
    let log_start = log.log_start_offset();
    let (first_dirty, reset_checkpoint) = match checkpoint {
        Some(offset) if offset >= log_start && offset <= log.log_end_offset() => (offset, false),
        Some(_) => (log_start, true),
        None => (log_start, false),
    };
    let active_base = *log.segments.keys().next_back()?;
    let sealed = || {
        log.segments
            .values()
            .filter(|s| s.base_offset < active_base)
    };
    let min_lag_ms = config.min_compaction_lag_ms.max(0);
    let too_young = if min_lag_ms > 0 {
        sealed()
            .filter(|s| s.next_offset() > first_dirty)
            .find(|s| {
                s.max_timestamp()
                    .is_some_and(|max| max.timestamp_ms > now_ms.saturating_sub(min_lag_ms))
            })
            .map(|s| s.base_offset)
    } else {
        None
    };
    let uncleanable = too_young
        .unwrap_or(active_base)
        .min(active_base)
        .min(last_stable_offset)
        .max(first_dirty);
    // Round down to a segment base: only whole segments are cleaned.
    let first_uncleanable = log
        .segments
        .range(..=uncleanable)
        .next_back()
        .map_or(active_base, |(&base, segment)| {
            if segment.next_offset() <= uncleanable {
                segment.next_offset()
            } else {
                base
            }
        })
        .min(active_base);
    let segments = sealed().map(Segment::view).collect();
    Some((
        config,
        log.dir.clone(),
        first_dirty,
        first_uncleanable,
        segments,
        reset_checkpoint,
    ))
}

/// Kafka's maxCompactionDelay > 0: a dirty sealed segment's first batch is older than
/// `max.compaction.lag.ms`. Reads one header per dirty segment, outside the log lock.
fn max_compaction_delay_due(candidate: &Candidate, now_ms: i64) -> Result<bool, LogError> {
    let max_lag_ms = candidate.config.max_compaction_lag_ms.max(0);
    if max_lag_ms == i64::MAX {
        return Ok(false);
    }
    let clean_until = now_ms.saturating_sub(max_lag_ms);
    for view in candidate
        .segments
        .iter()
        .filter(|view| view.next_offset() > candidate.first_dirty && !view.is_empty())
    {
        let first = view.header_at(0)?;
        if first.max_timestamp > 0 && first.max_timestamp < clean_until {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Kafka's groupSegmentsBySize: consecutive segments whose bytes fit one segment and
/// whose offsets fit the index format.
fn group_by_size<'a>(
    segments: &[&'a SegmentView],
    config: &LogConfig,
    first_uncleanable: i64,
) -> Vec<Vec<&'a SegmentView>> {
    let max_bytes = config.segment_bytes.min(MAX_SEGMENT_BYTES);
    let mut groups: Vec<Vec<&SegmentView>> = Vec::new();
    let mut rest = segments;
    while let Some((&first, tail)) = rest.split_first() {
        let mut group = vec![first];
        let mut bytes = first.size_bytes();
        rest = tail;
        while let Some((&next, tail)) = rest.split_first() {
            let last_offset = tail
                .first()
                .map_or(first_uncleanable, |after| after.base_offset)
                - 1;
            let fits_bytes = bytes + next.size_bytes() <= max_bytes;
            let fits_offsets =
                next.is_empty() || last_offset - group[0].base_offset <= i32::MAX as i64;
            if !(fits_bytes && fits_offsets) {
                break;
            }
            bytes += next.size_bytes();
            group.push(next);
            rest = tail;
        }
        groups.push(group);
    }
    groups
}

/// Replaces the group's segments by the cleaned one, under the log lock, with `aborted`
/// as its transaction index (the aborted transactions whose ABORT marker the clean
/// kept because it still removed records of them). Returns false, changing nothing, if
/// the log no longer holds exactly those segments.
fn swap_in(
    log: &mut Log,
    group: &[&SegmentView],
    cleaned_path: &Path,
    cleaned: &mut Option<CleanedSegment>,
    aborted: Vec<AbortedTxn>,
    truncations: u64,
) -> Result<bool, LogError> {
    let first = group[0].base_offset;
    let last = group[group.len() - 1].base_offset;
    // A truncation may have shortened a segment and appends brought it back to the viewed
    // size: the count tells.
    let unchanged = log.truncations() == truncations
        && log.segments.range(first..=last).count() == group.len()
        && group.iter().all(|view| {
            log.segments
                .get(&view.base_offset)
                .is_some_and(|segment| segment.is_viewed_by(view))
        })
        && log
            .segments
            .keys()
            .next_back()
            .is_some_and(|&active| active > last);
    let Some(cleaned) = cleaned.take().filter(|_| unchanged) else {
        return Ok(false);
    };
    let dir = log.dir.clone();
    let swap_path = cleaned_path.with_extension(SWAP_SUFFIX);
    // From here on a crash completes the swap at the next open.
    dir::failpoint("log::cleaner::swap")?;
    fs::rename(cleaned_path, &swap_path)?;
    sync_dir(&dir)?;
    for view in group {
        if let Some(old) = log.segments.remove(&view.base_offset) {
            if view.base_offset == first {
                // The rename below replaces its `.log`; its indexes go now.
                drop(old);
                for extension in ["index", "timeindex"] {
                    remove_if_exists(&dir.join(file_name(first, extension)))?;
                }
            } else {
                old.delete_files(&dir)?;
            }
        }
    }
    fs::rename(&swap_path, dir.join(file_name(first, "log")))?;
    let next_offset = group[group.len() - 1].next_offset();
    let mut segment = Segment::from_cleaned(&dir, cleaned, next_offset)?;
    segment.replace_aborted_txns(aborted)?;
    log.segments.insert(first, segment);
    sync_dir(&dir)?;
    Ok(true)
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

/// Finishes or undoes a clean a crash interrupted, before the log's segments are listed
/// (Kafka's LogLoader): `.cleaned` files are deleted; a `<base>.log.swap` replaces the
/// segments whose base lies in `[base, its next offset)`.
pub(super) fn recover_interrupted_swaps(dir: &Path) -> Result<(), LogError> {
    let mut swaps = Vec::new();
    let mut changed = false;
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.ends_with(&format!(".{CLEANED_SUFFIX}")) {
            fs::remove_file(dir.join(name))?;
            changed = true;
        } else if let Some(base) = name
            .strip_suffix(&format!(".log.{SWAP_SUFFIX}"))
            .and_then(parse_base)
        {
            swaps.push(base);
        } else if let Some(base) = [".log", ".index", ".timeindex", ".txnindex"]
            .iter()
            .find_map(|extension| name.strip_suffix(extension))
            .and_then(parse_base)
        {
            bases.push(base);
        }
    }
    for base in swaps {
        let swap_path = dir.join(format!("{}.{SWAP_SUFFIX}", file_name(base, "log")));
        let next_offset = swap_next_offset(&swap_path, base)?;
        tracing::info!(swap = %swap_path.display(), next_offset, "completing an interrupted log clean");
        bases.sort_unstable();
        bases.dedup();
        // The swap's own base included: its `.log` is replaced by the rename, its
        // indexes are rebuilt at open.
        for &old in bases
            .iter()
            .filter(|&&old| old >= base && old < next_offset)
        {
            for extension in ["index", "timeindex"] {
                remove_if_exists(&dir.join(file_name(old, extension)))?;
            }
            if old != base {
                // The base's own `.txnindex` stays; entries of the others come back from
                // the replay of the log at open (producer state is rebuilt after a crash).
                remove_if_exists(&dir.join(file_name(old, "txnindex")))?;
                remove_if_exists(&dir.join(file_name(old, "log")))?;
            }
        }
        fs::rename(&swap_path, dir.join(file_name(base, "log")))?;
        changed = true;
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}

fn parse_base(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// One past the last offset of the batches in a `.swap` file (its base when empty);
/// stops at the first header that does not parse or fit.
fn swap_next_offset(path: &Path, base: i64) -> Result<i64, LogError> {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(path)?;
    let file_bytes = file.metadata()?.len();
    let mut next_offset = base;
    let mut position = 0u64;
    let mut header_bytes = [0u8; HEADER_SIZE];
    while position + HEADER_SIZE as u64 <= file_bytes {
        file.read_exact_at(&mut header_bytes, position)?;
        let Ok(header) = BatchHeader::parse(&header_bytes) else {
            break;
        };
        if position + header.total_size() as u64 > file_bytes || header.last_offset_delta < 0 {
            break;
        }
        next_offset = next_offset.max(
            header
                .base_offset
                .saturating_add(header.last_offset_delta as i64)
                + 1,
        );
        position += header.total_size() as u64;
    }
    Ok(next_offset)
}

/// Reads the whole batch at `position` of a segment view.
fn read_batch(view: &SegmentView, position: u64) -> Result<(BatchHeader, Vec<u8>), LogError> {
    let header = view.header_at(position)?;
    let mut bytes = Vec::new();
    view.read_into(position, header.total_size() as u64, &mut bytes)?;
    batch::validate_stored(&bytes).map_err(|e| {
        LogError::Corrupt(format!(
            "segment {} position {position}: {e}",
            view.base_offset
        ))
    })?;
    Ok((header, bytes))
}

/// The record bytes of a stored batch, decompressed.
fn batch_records<'b>(
    header: &BatchHeader,
    bytes: &'b [u8],
) -> Result<std::borrow::Cow<'b, [u8]>, LogError> {
    let body = &bytes[HEADER_SIZE..];
    let codec = header.compression_codec();
    if codec == 0 {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let max_bytes =
        DECOMPRESSION_RATIO_BOUND * (bytes.len() as u64).max(MIN_DECOMPRESSION_BASE_BYTES);
    super::validator::decompress(codec, body, max_bytes)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| LogError::Corrupt(format!("batch at offset {}: {e}", header.base_offset)))
}

/// What the filter decided for one batch.
enum Kept {
    /// Every record stays and nothing changes: the batch is copied as it is.
    Original,
    /// Some records (or none, an empty header) stay in a rewritten batch.
    Rebuilt(BatchHeader, Vec<u8>),
    Nothing,
}

/// The inputs of Kafka's retention rules besides the offset map.
struct RetentionRules<'a> {
    now_ms: i64,
    delete_retention_ms: i64,
    /// The first uncleanable offset: the batch ending there is kept, even empty.
    upper_bound: i64,
    producers: &'a HashMap<i64, i64>,
}

/// Kafka's checkBatchRetention + shouldRetainRecord + MemoryRecords.filterTo for one
/// batch. `discard` is the transaction verdict ([`CleanedTxns::on_batch`]): an aborted
/// transaction's data batch loses every record; a marker whose transaction has no
/// record left is kept until `delete.retention.ms` after the clean that first saw it so
/// (its delete horizon, as for tombstones), then removed.
fn filter_batch(
    header: &BatchHeader,
    bytes: &[u8],
    map: &OffsetMap,
    rules: &RetentionRules<'_>,
    discard: bool,
    stats: &mut CleanStats,
) -> Result<Kept, LogError> {
    let retain_empty = (header.has_producer_id()
        && rules.producers.get(&header.producer_id) == Some(&header.last_offset()))
        || header.last_offset() + 1 == rules.upper_bound;
    let horizon = header.delete_horizon_ms();
    let record_count = header.record_count.max(0) as u64;
    if header.is_control() {
        stats.records_read += record_count;
        let expired = discard && horizon.is_some_and(|horizon| horizon <= rules.now_ms);
        if expired {
            return empty_or_nothing(header, retain_empty);
        }
        stats.records_retained += record_count;
        if discard && horizon.is_none() {
            let horizon = rules.now_ms.saturating_add(rules.delete_retention_ms);
            return with_delete_horizon(header, bytes, horizon);
        }
        return Ok(Kept::Original);
    }
    if discard {
        stats.records_read += record_count;
        return empty_or_nothing(header, retain_empty);
    }
    let keep_tombstones = horizon.is_none_or(|horizon| rules.now_ms < horizon);
    let records = batch_records(header, bytes)?;
    let mut retained: Vec<RawRecord<'_>> = Vec::new();
    let mut all_retained = true;
    let mut has_tombstone = false;
    for record in RecordIter::new(&records, header.record_count) {
        let record = record?;
        stats.records_read += 1;
        let offset = header.base_offset + record.offset_delta as i64;
        let keep = offset > map.latest_offset
            || record.key.is_some_and(|key| {
                offset >= map.get(key) && (record.value_present || keep_tombstones)
            });
        if keep {
            has_tombstone |= !record.value_present;
            retained.push(record);
        } else {
            all_retained = false;
        }
    }
    stats.records_retained += retained.len() as u64;
    let set_horizon = has_tombstone && horizon.is_none();
    if !retained.is_empty() && all_retained && !set_horizon {
        return Ok(Kept::Original);
    }
    if retained.is_empty() {
        return empty_or_nothing(header, retain_empty);
    }
    let (attributes, base_timestamp) = if set_horizon {
        let horizon = rules.now_ms.saturating_add(rules.delete_retention_ms);
        (header.attributes | ATTR_DELETE_HORIZON, horizon)
    } else {
        match horizon {
            Some(horizon) => (header.attributes, horizon),
            None => (
                header.attributes,
                retained[0].timestamp(header.base_timestamp),
            ),
        }
    };
    let mut body = Vec::with_capacity(records.len());
    let mut max_timestamp = NO_TIMESTAMP;
    for record in &retained {
        let timestamp = record.timestamp(header.base_timestamp);
        max_timestamp = max_timestamp.max(timestamp);
        record.encode(timestamp - base_timestamp, &mut body);
    }
    if header.is_log_append_time() {
        max_timestamp = header.max_timestamp;
    }
    let body = compress(header.compression_codec(), &body)?;
    let rebuilt = BatchHeader {
        attributes,
        base_timestamp,
        max_timestamp,
        record_count: retained.len() as i32,
        ..*header
    };
    let bytes = batch::assemble(&rebuilt, &body);
    let rebuilt = BatchHeader::parse(&bytes).map_err(|e| LogError::Corrupt(e.to_string()))?;
    Ok(Kept::Rebuilt(rebuilt, bytes))
}

/// A batch all of whose records go: kept as an empty header when `retain_empty` (a
/// producer's last batch, or the batch ending the cleanable range), else removed.
fn empty_or_nothing(header: &BatchHeader, retain_empty: bool) -> Result<Kept, LogError> {
    if !retain_empty {
        return Ok(Kept::Nothing);
    }
    let empty = BatchHeader {
        attributes: header.attributes & !(CODEC_MASK | ATTR_DELETE_HORIZON),
        base_timestamp: NO_TIMESTAMP,
        record_count: 0,
        ..*header
    };
    let bytes = batch::assemble(&empty, &[]);
    let empty = BatchHeader::parse(&bytes).map_err(|e| LogError::Corrupt(e.to_string()))?;
    Ok(Kept::Rebuilt(empty, bytes))
}

/// The batch with every record, its delete horizon set to `horizon_ms` (the base
/// timestamp carries it; record timestamps are re-based on it).
fn with_delete_horizon(
    header: &BatchHeader,
    bytes: &[u8],
    horizon_ms: i64,
) -> Result<Kept, LogError> {
    let records = batch_records(header, bytes)?;
    let mut body = Vec::with_capacity(records.len());
    for record in RecordIter::new(&records, header.record_count) {
        let record = record?;
        let timestamp = record.timestamp(header.base_timestamp);
        record.encode(timestamp.saturating_sub(horizon_ms), &mut body);
    }
    let body = compress(header.compression_codec(), &body)?;
    let rebuilt = BatchHeader {
        attributes: header.attributes | ATTR_DELETE_HORIZON,
        base_timestamp: horizon_ms,
        ..*header
    };
    let bytes = batch::assemble(&rebuilt, &body);
    let rebuilt = BatchHeader::parse(&bytes).map_err(|e| LogError::Corrupt(e.to_string()))?;
    Ok(Kept::Rebuilt(rebuilt, bytes))
}

/// Kafka's CleanedTransactionMetadata: walking batches in offset order, which belong to
/// an aborted transaction (their records go) and which markers end a transaction that
/// has no batch left in what this clean keeps (they may go after their delete horizon).
struct CleanedTxns {
    /// Aborted transactions not yet reached, by first offset.
    pending: std::collections::VecDeque<AbortedTxn>,
    /// Producers inside an aborted transaction at the current offset, and whether a
    /// batch of it was seen (removed) in this walk.
    ongoing_aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers whose transactional batches were seen (kept) since their last marker.
    ongoing_committed: HashSet<i64>,
    /// The index entries of the ABORT markers kept since the last `take_retained`.
    retained: Vec<AbortedTxn>,
}

impl CleanedTxns {
    /// From the aborted transactions (sorted by first offset) whose marker is at or past
    /// `from` (the first offset the walk reads).
    fn new(aborted: &[AbortedTxn], from: i64) -> CleanedTxns {
        CleanedTxns {
            pending: aborted
                .iter()
                .filter(|txn| txn.last_offset >= from)
                .copied()
                .collect(),
            ongoing_aborted: HashMap::new(),
            ongoing_committed: HashSet::new(),
            retained: Vec::new(),
        }
    }

    /// The transaction index of the cleaned segment just written.
    fn take_retained(&mut self) -> Vec<AbortedTxn> {
        std::mem::take(&mut self.retained)
    }

    /// Whether the batch may be discarded: a data batch of an aborted transaction, or a
    /// marker whose transaction left nothing behind (or an empty control batch).
    fn on_batch(&mut self, header: &BatchHeader, bytes: &[u8]) -> bool {
        while self
            .pending
            .front()
            .is_some_and(|txn| txn.first_offset <= header.last_offset())
        {
            if let Some(txn) = self.pending.pop_front() {
                self.ongoing_aborted
                    .entry(txn.producer_id)
                    .or_insert((txn, false));
            }
        }
        let producer_id = header.producer_id;
        if header.is_control() {
            if header.record_count == 0 {
                // The whole transaction was cleaned away already.
                return true;
            }
            return match txn_marker::parse_marker(bytes) {
                // Kept (and indexed) while this walk still removed records of its
                // transaction; discardable from the next clean on.
                Some(marker) if !marker.commit => match self.ongoing_aborted.remove(&producer_id) {
                    Some((txn, true)) => {
                        self.retained.push(txn);
                        false
                    }
                    _ => true,
                },
                // Discardable unless a batch of its transaction was kept.
                Some(_) => !self.ongoing_committed.remove(&producer_id),
                None => false,
            };
        }
        if !header.is_transactional() {
            return false;
        }
        if let Some((_, seen)) = self.ongoing_aborted.get_mut(&producer_id) {
            *seen = true;
            return true;
        }
        self.ongoing_committed.insert(producer_id);
        false
    }
}

/// Compresses rebuilt records with the batch's codec, as Kafka keeps a batch's codec.
fn compress(codec: i16, records: &[u8]) -> Result<Vec<u8>, LogError> {
    let mut out = BytesMut::new();
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(records);
        Ok(())
    };
    let compressed = match codec {
        0 => return Ok(records.to_vec()),
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        _ => {
            return Err(LogError::Corrupt(format!(
                "unknown compression codec {codec}"
            )))
        }
    };
    compressed.map_err(|e| {
        LogError::Io(io::Error::other(format!(
            "compressing a cleaned batch: {e}"
        )))
    })?;
    Ok(out.to_vec())
}

/// One record of a batch, as stored: what the cleaner needs, and the bytes from the key
/// length on (key, value, headers) to copy unchanged.
#[derive(Clone, Copy)]
struct RawRecord<'a> {
    attributes: u8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value_present: bool,
    tail: &'a [u8],
}

impl RawRecord<'_> {
    fn timestamp(&self, base_timestamp: i64) -> i64 {
        base_timestamp.wrapping_add(self.timestamp_delta)
    }

    /// Appends the record with a new timestamp delta (the batch's base timestamp moved).
    fn encode(&self, timestamp_delta: i64, out: &mut Vec<u8>) {
        let mut head = Vec::with_capacity(16);
        head.push(self.attributes);
        write_varlong(timestamp_delta, &mut head);
        write_varlong(self.offset_delta as i64, &mut head);
        write_varlong((head.len() + self.tail.len()) as i64, out);
        out.extend_from_slice(&head);
        out.extend_from_slice(self.tail);
    }
}

/// The records of a batch's (decompressed) record bytes; every length is checked against
/// the bytes left.
struct RecordIter<'a> {
    rest: &'a [u8],
    left: i32,
}

impl<'a> RecordIter<'a> {
    fn new(records: &'a [u8], record_count: i32) -> Self {
        RecordIter {
            rest: records,
            left: record_count.max(0),
        }
    }
}

fn corrupt_record(what: &str) -> LogError {
    LogError::Corrupt(format!("record: {what}"))
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RawRecord<'a>, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let parsed = parse_record(&mut self.rest);
        if parsed.is_err() {
            self.left = 0;
        }
        Some(parsed)
    }
}

fn parse_record<'a>(rest: &mut &'a [u8]) -> Result<RawRecord<'a>, LogError> {
    let length = read_varlong(rest).ok_or_else(|| corrupt_record("bad length"))?;
    if length < 0 || length as u64 > rest.len() as u64 {
        return Err(corrupt_record("length past the batch"));
    }
    let (mut body, after) = rest.split_at(length as usize);
    *rest = after;
    let (&attributes, tail) = body.split_first().ok_or_else(|| corrupt_record("empty"))?;
    body = tail;
    let timestamp_delta = read_varlong(&mut body).ok_or_else(|| corrupt_record("bad timestamp"))?;
    let offset_delta = read_varlong(&mut body)
        .and_then(|v| i32::try_from(v).ok())
        .filter(|&v| v >= 0)
        .ok_or_else(|| corrupt_record("bad offset delta"))?;
    let tail = body;
    let key = read_bytes_field(&mut body)?;
    let value_present = read_bytes_field(&mut body)?.is_some();
    Ok(RawRecord {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value_present,
        tail,
    })
}

/// A varint-length-prefixed bytes field (-1: null).
fn read_bytes_field<'a>(body: &mut &'a [u8]) -> Result<Option<&'a [u8]>, LogError> {
    let length = read_varlong(body).ok_or_else(|| corrupt_record("bad field length"))?;
    if length == -1 {
        return Ok(None);
    }
    if length < 0 || length as u64 > body.len() as u64 {
        return Err(corrupt_record("field past the record"));
    }
    let (field, rest) = body.split_at(length as usize);
    *body = rest;
    Ok(Some(field))
}

/// A zig-zag varint of up to 10 bytes (Kafka's varint and varlong both decode here).
pub(super) fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let mut raw: u64 = 0;
    for (i, &byte) in buf.iter().take(10).enumerate() {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

pub(super) fn write_varlong(value: i64, out: &mut Vec<u8>) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Key -> latest offset, in a fixed buffer of `log.cleaner.dedupe.buffer.size` bytes
/// (Kafka's SkimpyOffsetMap): open addressing over 128-bit key digests (two keyed
/// SipHashes; a collision would wrongly drop a record, as an MD5 collision would in
/// Kafka). Allocated on first use and kept.
struct OffsetMap {
    slots: Vec<Slot>,
    slot_count: usize,
    entries: usize,
    max_entries: usize,
    hashers: (RandomState, RandomState),
    /// The last offset the map covers.
    latest_offset: i64,
}

#[derive(Clone, Copy)]
struct Slot {
    digest: [u64; 2],
    /// -1: free.
    offset: i64,
}

const FREE: Slot = Slot {
    digest: [0, 0],
    offset: -1,
};

impl OffsetMap {
    fn new(bytes: u64) -> OffsetMap {
        let slot_count = (bytes / MAP_SLOT_BYTES).max(2) as usize;
        OffsetMap {
            slots: Vec::new(),
            slot_count,
            entries: 0,
            max_entries: ((slot_count as f64 * MAP_LOAD_FACTOR) as usize).max(1),
            hashers: (RandomState::new(), RandomState::new()),
            latest_offset: -1,
        }
    }

    fn clear(&mut self) {
        if self.slots.is_empty() {
            self.slots = vec![FREE; self.slot_count];
        } else {
            self.slots.fill(FREE);
        }
        self.entries = 0;
        self.latest_offset = -1;
    }

    fn digest(&self, key: &[u8]) -> [u64; 2] {
        [self.hashers.0.hash_one(key), self.hashers.1.hash_one(key)]
    }

    /// The slot holding `digest`, or the free one where it would go.
    fn find(&self, digest: [u64; 2]) -> usize {
        let mut i = (digest[0] % self.slot_count as u64) as usize;
        loop {
            let slot = &self.slots[i];
            if slot.offset < 0 || slot.digest == digest {
                return i;
            }
            i = (i + 1) % self.slot_count;
        }
    }

    /// Records `offset` for `key`; false (and nothing recorded) once the map is full.
    fn put(&mut self, key: &[u8], offset: i64) -> bool {
        if self.entries >= self.max_entries {
            return false;
        }
        let digest = self.digest(key);
        let i = self.find(digest);
        if self.slots[i].offset < 0 {
            self.entries += 1;
        }
        self.slots[i] = Slot { digest, offset };
        self.latest_offset = self.latest_offset.max(offset);
        true
    }

    /// The latest offset of `key`, -1 if it is not in the map.
    fn get(&self, key: &[u8]) -> i64 {
        if self.slots.is_empty() {
            return -1;
        }
        self.slots[self.find(self.digest(key))].offset
    }
}

/// Kafka's Throttler: measures the bytes over periods of [`THROTTLE_CHECK_INTERVAL`] and
/// sleeps off any excess over the bound.
struct Throttler {
    bytes_per_second: f64,
    period_start: Instant,
    observed_bytes: f64,
}

impl Throttler {
    fn new(bytes_per_second: f64) -> Throttler {
        Throttler {
            bytes_per_second,
            period_start: Instant::now(),
            observed_bytes: 0.0,
        }
    }

    /// Accounts for `bytes` of IO; returns false if the cleaner was stopped meanwhile.
    fn throttle(&mut self, bytes: u64, stop: &Stop) -> bool {
        self.observed_bytes += bytes as f64;
        let elapsed = self.period_start.elapsed();
        if elapsed < THROTTLE_CHECK_INTERVAL {
            return true;
        }
        let allowed =
            Duration::from_secs_f64((self.observed_bytes / self.bytes_per_second).min(3600.0));
        self.period_start = Instant::now();
        self.observed_bytes = 0.0;
        if allowed > elapsed && stop.sleep(allowed - elapsed) {
            return false;
        }
        self.period_start = Instant::now();
        !stop.is_stopped()
    }
}

/// Kafka's offset checkpoint format (version 0, a count, `topic partition offset` lines).
fn read_checkpoint(path: &Path) -> Result<HashMap<LogKey, i64>, LogError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(error) if error.kind() == io::ErrorKind::InvalidData => String::new(),
        Err(error) => return Err(error.into()),
    };
    match parse_checkpoint(&text) {
        Some(entries) => Ok(entries),
        None => {
            // Only costs a re-clean of every compacted log.
            tracing::warn!(path = %path.display(), "malformed cleaner checkpoint ignored");
            Ok(HashMap::new())
        }
    }
}

fn parse_checkpoint(text: &str) -> Option<HashMap<LogKey, i64>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = HashMap::new();
    for _ in 0..count {
        let mut fields = lines.next()?.split(' ');
        let topic = fields.next()?.to_string();
        let partition = fields.next()?.parse().ok()?;
        let offset = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        entries.insert((topic, partition), offset);
    }
    Some(entries)
}

fn write_checkpoint(path: &Path, entries: &HashMap<LogKey, i64>) -> Result<(), LogError> {
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort();
    let mut text = format!("0\n{}\n", sorted.len());
    for ((topic, partition), offset) in sorted {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    Ok(dir::write_file_atomically(path, text.as_bytes())?)
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;
