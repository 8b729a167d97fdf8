//! One segment of a partition log: a `.log` file of record batches exactly as appended,
//! plus its sparse offset index (`.index`) and time index (`.timeindex`).
//!
//! On disk, all integers are big-endian as in Kafka:
//! - `.index`: 8-byte entries, relative offset u32 + file position u32. The relative
//!   offset is the *last* offset of the batch that starts at the position (Kafka's choice),
//!   so the entry at or below a target offset points at a batch at or before it.
//! - `.timeindex`: 12-byte entries, timestamp i64 + relative offset u32: the segment's
//!   running max timestamp and the last offset of the batch holding it. Timestamps are
//!   strictly increasing.
//!
//! Bounds: an entry is added at most once per `index_interval_bytes` of appended data and
//! at most once per batch, so a segment holds at most
//! `min(size_bytes / max(index_interval_bytes, 1), size_bytes / HEADER_SIZE) + 1` entries of
//! each kind (+1 for the time entry written when the segment is sealed). Positions fit in
//! u32 because a batch only starts below `MAX_SEGMENT_BYTES`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::dir::failpoint;
use super::txn_index::{AbortedTxn, TxnIndex};
use super::LogError;

pub(super) const OFFSET_ENTRY_BYTES: usize = 8;
pub(super) const TIME_ENTRY_BYTES: usize = 12;
/// Largest position a batch may start at, and the cap on `segment.bytes` (Kafka's limit:
/// `segment.bytes` is an int), so that positions and relative offsets fit the index format.
pub(super) const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// Largest offset distance from the segment base (Kafka rolls before relative offsets
/// overflow an int).
pub(super) const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// Kafka's suffix for the files of a segment that retention removed, until unlinked.
pub(super) const DELETED_SUFFIX: &str = ".deleted";

pub(super) fn file_name(base_offset: i64, extension: &str) -> String {
    debug_assert!(base_offset >= 0);
    format!("{base_offset:020}.{extension}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffsetEntry {
    relative_offset: u32,
    position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeEntry {
    timestamp_ms: i64,
    relative_offset: u32,
}

/// Where the segment's largest max timestamp lives (the first batch holding it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MaxTimestamp {
    pub(super) timestamp_ms: i64,
    pub(super) relative_offset: u32,
    pub(super) position: u64,
}

/// In-memory copy of both indexes plus the bookkeeping that decides when to add entries.
/// Shared by `append` and the recovery scan so both produce identical indexes.
#[derive(Debug, Default)]
struct SegmentIndex {
    offset_entries: Vec<OffsetEntry>,
    time_entries: Vec<TimeEntry>,
    bytes_since_index_entry: u64,
    max_timestamp: Option<MaxTimestamp>,
}

impl SegmentIndex {
    /// Accounts for one batch at `position`; returns the entries to append on disk.
    fn observe(
        &mut self,
        base_offset: i64,
        header: &BatchHeader,
        position: u32,
        index_interval_bytes: u64,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let relative_last = header.last_offset() - base_offset;
        debug_assert!((0..=MAX_RELATIVE_OFFSET).contains(&relative_last));
        let relative_offset = relative_last as u32;
        if self
            .max_timestamp
            .is_none_or(|max| header.max_timestamp > max.timestamp_ms)
        {
            self.max_timestamp = Some(MaxTimestamp {
                timestamp_ms: header.max_timestamp,
                relative_offset,
                position: position as u64,
            });
        }
        self.bytes_since_index_entry += header.total_size() as u64;
        if self.bytes_since_index_entry < index_interval_bytes {
            return (None, None);
        }
        self.bytes_since_index_entry = 0;
        let offset_entry = OffsetEntry {
            relative_offset,
            position,
        };
        debug_assert!(self
            .offset_entries
            .last()
            .is_none_or(|last| last.relative_offset < relative_offset && last.position < position));
        self.offset_entries.push(offset_entry);
        (Some(offset_entry), self.maybe_time_entry())
    }

    /// A time entry for the running max, if it grew since the last entry.
    fn maybe_time_entry(&mut self) -> Option<TimeEntry> {
        let max = self.max_timestamp?;
        if self
            .time_entries
            .last()
            .is_some_and(|last| last.timestamp_ms >= max.timestamp_ms)
        {
            return None;
        }
        let entry = TimeEntry {
            timestamp_ms: max.timestamp_ms,
            relative_offset: max.relative_offset,
        };
        self.time_entries.push(entry);
        Some(entry)
    }

    /// Position of the batch to start scanning from for `offset`: the nearest indexed
    /// batch whose last offset is <= `offset`, or the segment start.
    fn offset_lookup(&self, base_offset: i64, offset: i64) -> u32 {
        let after = self
            .offset_entries
            .partition_point(|e| base_offset + e.relative_offset as i64 <= offset);
        match after {
            0 => 0,
            n => self.offset_entries[n - 1].position,
        }
    }

    fn offset_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offset_entries.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.offset_entries {
            out.extend_from_slice(&encode_offset_entry(entry));
        }
        out
    }

    fn time_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.time_entries.len() * TIME_ENTRY_BYTES);
        for entry in &self.time_entries {
            out.extend_from_slice(&encode_time_entry(entry));
        }
        out
    }
}

fn encode_offset_entry(entry: &OffsetEntry) -> [u8; OFFSET_ENTRY_BYTES] {
    let mut out = [0u8; OFFSET_ENTRY_BYTES];
    out[..4].copy_from_slice(&entry.relative_offset.to_be_bytes());
    out[4..].copy_from_slice(&entry.position.to_be_bytes());
    out
}

fn encode_time_entry(entry: &TimeEntry) -> [u8; TIME_ENTRY_BYTES] {
    let mut out = [0u8; TIME_ENTRY_BYTES];
    out[..8].copy_from_slice(&entry.timestamp_ms.to_be_bytes());
    out[8..].copy_from_slice(&entry.relative_offset.to_be_bytes());
    out
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Result of scanning a `.log` file from the start.
struct Scan {
    /// Bytes of complete, valid batches with increasing offsets from the start of the file.
    valid_bytes: u64,
    next_offset: i64,
    index: SegmentIndex,
    first_batch_max_timestamp_ms: Option<i64>,
    /// Why the scan stopped before the end of the file, if it did.
    stop_reason: Option<String>,
}

/// Reads every batch of the file, checking completeness, CRC and that offsets increase,
/// and rebuilds the indexes. Stops at the first bad batch; never trusts a length field
/// beyond the bytes actually present. Any segment may hold compacted batches (fewer
/// records than offsets) and gaps between batches: a sealed one after a clean, the active
/// one once a follower copied a compacted leader's log or was truncated into a sealed
/// segment (Kafka's recovery does not require contiguous offsets either).
fn scan(
    file: &File,
    file_bytes: u64,
    base_offset: i64,
    index_interval_bytes: u64,
) -> Result<Scan, LogError> {
    let mut result = Scan {
        valid_bytes: 0,
        next_offset: base_offset,
        index: SegmentIndex::default(),
        first_batch_max_timestamp_ms: None,
        stop_reason: None,
    };
    let mut buf = Vec::new();
    while result.valid_bytes < file_bytes {
        let position = result.valid_bytes;
        let remaining_bytes = file_bytes - position;
        if position > MAX_SEGMENT_BYTES {
            result.stop_reason = Some("batch starts beyond the maximum segment size".into());
            break;
        }
        if remaining_bytes < HEADER_SIZE as u64 {
            result.stop_reason = Some("torn batch header".into());
            break;
        }
        let mut header_bytes = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header_bytes, position)?;
        let header = match BatchHeader::parse(&header_bytes) {
            Ok(header) => header,
            Err(e) => {
                result.stop_reason = Some(e.to_string());
                break;
            }
        };
        let size_bytes = header.total_size() as u64;
        if size_bytes > remaining_bytes {
            result.stop_reason = Some("truncated batch".into());
            break;
        }
        buf.resize(size_bytes as usize, 0);
        file.read_exact_at(&mut buf, position)?;
        if let Err(e) = batch::validate_stored(&buf) {
            result.stop_reason = Some(e.to_string());
            break;
        }
        if header.base_offset < result.next_offset {
            result.stop_reason = Some(format!(
                "batch base offset {} is below the expected {}",
                header.base_offset, result.next_offset
            ));
            break;
        }
        let fits = header
            .base_offset
            .checked_add(header.last_offset_delta as i64)
            .is_some_and(|last_offset| last_offset - base_offset <= MAX_RELATIVE_OFFSET);
        if !fits {
            result.stop_reason = Some("relative offset overflows the index format".into());
            break;
        }
        result
            .first_batch_max_timestamp_ms
            .get_or_insert(header.max_timestamp);
        result
            .index
            .observe(base_offset, &header, position as u32, index_interval_bytes);
        result.next_offset = header.last_offset() + 1;
        result.valid_bytes = position + size_bytes;
    }
    debug_assert!(result.valid_bytes <= file_bytes);
    Ok(result)
}

/// Reads an index file whole, if its size is a multiple of `entry_bytes` and at most
/// `max_entries` entries (a garbage size must not make us allocate).
fn read_index_file(
    file: &File,
    entry_bytes: usize,
    max_entries: u64,
) -> Result<Option<Vec<u8>>, LogError> {
    let file_bytes = file.metadata()?.len();
    if file_bytes % entry_bytes as u64 != 0 || file_bytes / entry_bytes as u64 > max_entries {
        return Ok(None);
    }
    let mut bytes = vec![0u8; file_bytes as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(Some(bytes))
}

pub(super) struct Segment {
    pub(super) base_offset: i64,
    /// Shared with read snapshots ([`SegmentView`]), which pread it outside the log lock.
    log_file: Arc<File>,
    offset_index_file: File,
    time_index_file: File,
    size_bytes: u64,
    /// One past the last offset in this segment (its base offset when empty).
    next_offset: i64,
    index: SegmentIndex,
    /// Aborted transactions whose ABORT marker is in this segment (`.txnindex`).
    txn_index: TxnIndex,
    /// What `segment.ms` ages are measured from: the first append's `now_ms`, or after
    /// recovery the first batch's max timestamp (Kafka's choice, so that a restart does
    /// not reset the age). None while empty.
    rolling_base_ms: Option<i64>,
    /// An index write failed (or a rewrite did not finish): the files no longer mirror
    /// memory, and a retried seal rewrites them whole.
    index_files_stale: bool,
}

fn open_file(path: &Path) -> Result<File, LogError> {
    failpoint("log::segment::open")?;
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?)
}

impl Segment {
    /// Creates a fresh, empty segment. An empty `.log` already there (left by a roll that
    /// failed part-way, before or after a restart) is reused, so a retried roll cannot
    /// fail on it; a non-empty one is refused rather than overwritten.
    pub(super) fn create(dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        failpoint("log::segment::create")?;
        let log_path = dir.join(file_name(base_offset, "log"));
        let log_file = Arc::new(open_file(&log_path)?);
        if log_file.metadata()?.len() != 0 {
            return Err(LogError::Corrupt(format!(
                "{} already exists and is not empty",
                log_path.display()
            )));
        }
        let offset_index_file = open_file(&dir.join(file_name(base_offset, "index")))?;
        let time_index_file = open_file(&dir.join(file_name(base_offset, "timeindex")))?;
        // Leftover index files of a segment that no longer exists must not leak in.
        offset_index_file.set_len(0)?;
        time_index_file.set_len(0)?;
        let txn_index = TxnIndex::create(dir, base_offset)?;
        Ok(Segment {
            base_offset,
            log_file,
            offset_index_file,
            time_index_file,
            size_bytes: 0,
            next_offset: base_offset,
            index: SegmentIndex::default(),
            txn_index,
            rolling_base_ms: None,
            index_files_stale: false,
        })
    }

    /// Opens the active segment: scans every batch, truncates at the first torn or corrupt
    /// one, and rewrites both indexes from the scan.
    pub(super) fn open_active(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> Result<Segment, LogError> {
        let mut segment = Self::open_files(dir, base_offset)?;
        let file_bytes = segment.log_file.metadata()?.len();
        let scan = scan(
            &segment.log_file,
            file_bytes,
            base_offset,
            index_interval_bytes,
        )?;
        if let Some(reason) = &scan.stop_reason {
            tracing::warn!(
                segment = %dir.join(file_name(base_offset, "log")).display(),
                file_bytes,
                valid_bytes = scan.valid_bytes,
                truncated_bytes = file_bytes - scan.valid_bytes,
                %reason,
                "truncating the active log segment at its first bad batch"
            );
            segment.log_file.set_len(scan.valid_bytes)?;
            segment.log_file.sync_all()?;
        }
        segment.size_bytes = scan.valid_bytes;
        segment.next_offset = scan.next_offset;
        segment.rolling_base_ms = scan.first_batch_max_timestamp_ms;
        segment.index = scan.index;
        segment.rewrite_index_files()?;
        Ok(segment)
    }

    /// Opens a sealed segment, trusting its index files if they are sane, else rebuilding
    /// them by a scan. `next_segment_base` bounds the offsets it may hold. A corrupt sealed
    /// segment is not truncated (later segments depend on it): it is cut short in memory to
    /// its valid prefix, so reads skip from there to the next segment.
    pub(super) fn open_sealed(
        dir: &Path,
        base_offset: i64,
        next_segment_base: i64,
        index_interval_bytes: u64,
    ) -> Result<Segment, LogError> {
        debug_assert!(base_offset < next_segment_base);
        let mut segment = Self::open_files(dir, base_offset)?;
        segment.size_bytes = segment.log_file.metadata()?.len();
        segment.next_offset = next_segment_base;
        if segment.load_index_files()? {
            return Ok(segment);
        }
        let scan = scan(
            &segment.log_file,
            segment.size_bytes,
            base_offset,
            index_interval_bytes,
        )?;
        if let Some(reason) = &scan.stop_reason {
            tracing::warn!(
                segment = %dir.join(file_name(base_offset, "log")).display(),
                file_bytes = segment.size_bytes,
                valid_bytes = scan.valid_bytes,
                %reason,
                "sealed log segment has a bad batch; indexing its valid prefix only"
            );
        }
        segment.size_bytes = scan.valid_bytes;
        segment.next_offset = scan.next_offset;
        segment.index = scan.index;
        // Sealed segments carry a final time entry for their max timestamp (see `seal`).
        segment.index.maybe_time_entry();
        segment.rewrite_index_files()?;
        Ok(segment)
    }

    /// The sealed segment the cleaner wrote (see [`CleanedSegment`]), once its file has been
    /// renamed to `<base>.log`: its indexes come from memory and are written and fsynced
    /// here, so that swapping it in reads nothing.
    pub(super) fn from_cleaned(
        dir: &Path,
        cleaned: CleanedSegment,
        next_offset: i64,
    ) -> Result<Segment, LogError> {
        debug_assert!(cleaned.next_offset <= next_offset);
        let mut segment = Self::open_files(dir, cleaned.base_offset)?;
        segment.size_bytes = cleaned.size_bytes;
        segment.next_offset = next_offset;
        segment.index = cleaned.index;
        segment.index.maybe_time_entry();
        segment.rewrite_index_files()?;
        failpoint("log::segment::fsync")?;
        segment.offset_index_file.sync_all()?;
        segment.time_index_file.sync_all()?;
        Ok(segment)
    }

    /// Whether `view` was taken of this very segment (not of one since replaced).
    pub(super) fn is_viewed_by(&self, view: &SegmentView) -> bool {
        Arc::ptr_eq(&self.log_file, &view.log_file) && self.size_bytes == view.size_bytes
    }

    fn open_files(dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        Ok(Segment {
            base_offset,
            log_file: Arc::new(open_file(&dir.join(file_name(base_offset, "log")))?),
            offset_index_file: open_file(&dir.join(file_name(base_offset, "index")))?,
            time_index_file: open_file(&dir.join(file_name(base_offset, "timeindex")))?,
            size_bytes: 0,
            next_offset: base_offset,
            index: SegmentIndex::default(),
            txn_index: TxnIndex::create_unloaded(dir, base_offset),
            rolling_base_ms: None,
            index_files_stale: false,
        })
    }

    /// Loads the `.txnindex` once size and offsets are known; false when it was untrusted
    /// (removed: the log's replay puts its entries back).
    pub(super) fn load_txn_index(&mut self, dir: &Path) -> Result<bool, LogError> {
        let (txn_index, trusted) =
            TxnIndex::load(dir, self.base_offset, self.next_offset, self.size_bytes)?;
        self.txn_index = txn_index;
        Ok(trusted)
    }

    pub(super) fn aborted_txns(&self) -> &[AbortedTxn] {
        self.txn_index.entries()
    }

    /// Records an aborted transaction whose marker is in this segment (once).
    pub(super) fn add_aborted_txn(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        debug_assert!(
            entry.last_offset >= self.base_offset && entry.last_offset < self.next_offset
        );
        if self.txn_index.contains_marker(entry.last_offset) {
            return Ok(());
        }
        self.txn_index.append(entry)
    }

    /// The cleaner's merged entries for the segments a cleaned one replaces.
    pub(super) fn replace_aborted_txns(
        &mut self,
        entries: Vec<AbortedTxn>,
    ) -> Result<(), LogError> {
        self.txn_index.replace(entries)?;
        self.txn_index.flush()
    }

    /// Loads both index files of a sealed segment; false if either is not sane.
    fn load_index_files(&mut self) -> Result<bool, LogError> {
        let base = self.base_offset;
        let max_relative = self.next_offset - 1 - base;
        // Each entry is for a distinct batch, and a batch is at least a header.
        let max_entries = self.size_bytes / HEADER_SIZE as u64 + 1;
        let Some(offset_bytes) =
            read_index_file(&self.offset_index_file, OFFSET_ENTRY_BYTES, max_entries)?
        else {
            return Ok(false);
        };
        let Some(time_bytes) =
            read_index_file(&self.time_index_file, TIME_ENTRY_BYTES, max_entries)?
        else {
            return Ok(false);
        };
        let mut index = SegmentIndex::default();
        for chunk in offset_bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let entry = OffsetEntry {
                relative_offset: be_u32(&chunk[..4]),
                position: be_u32(&chunk[4..]),
            };
            let increasing = index.offset_entries.last().is_none_or(|last| {
                last.relative_offset < entry.relative_offset && last.position < entry.position
            });
            if !increasing
                || entry.relative_offset as i64 > max_relative
                || entry.position as u64 + HEADER_SIZE as u64 > self.size_bytes
            {
                return Ok(false);
            }
            index.offset_entries.push(entry);
        }
        for chunk in time_bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let entry = TimeEntry {
                timestamp_ms: be_i64(&chunk[..8]),
                relative_offset: be_u32(&chunk[8..]),
            };
            let increasing = index.time_entries.last().is_none_or(|last| {
                last.timestamp_ms < entry.timestamp_ms
                    && last.relative_offset <= entry.relative_offset
            });
            if !increasing || entry.relative_offset as i64 > max_relative {
                return Ok(false);
            }
            index.time_entries.push(entry);
        }
        // The last time entry is the segment's max timestamp (written at seal); find the
        // batch holding it, which also checks the entry against the log.
        let Some(last_time) = index.time_entries.last().copied() else {
            // Only an empty segment has no time entry.
            return Ok(self.size_bytes == 0);
        };
        self.index = index;
        match self.check_loaded_index(last_time) {
            Some(max_timestamp) => {
                self.index.max_timestamp = Some(max_timestamp);
                Ok(true)
            }
            None => {
                self.index = SegmentIndex::default();
                Ok(false)
            }
        }
    }

    /// Checks the loaded index against the log where it is cheap: the last offset entry
    /// must point at the batch it names, and the last time entry must name a batch with
    /// that max timestamp. Returns where the max timestamp lives. (Checking every entry
    /// would read a header per entry at every open.)
    fn check_loaded_index(&self, last_time: TimeEntry) -> Option<MaxTimestamp> {
        if let Some(last) = self.index.offset_entries.last() {
            let header = self.header_at(last.position as u64).ok()?;
            if header.last_offset() != self.base_offset + last.relative_offset as i64 {
                return None;
            }
        }
        let offset = self.base_offset + last_time.relative_offset as i64;
        let (position, header) = self.find_batch(offset).ok()??;
        if header.max_timestamp != last_time.timestamp_ms {
            return None;
        }
        Some(MaxTimestamp {
            timestamp_ms: last_time.timestamp_ms,
            relative_offset: last_time.relative_offset,
            position,
        })
    }

    fn rewrite_index_files(&mut self) -> Result<(), LogError> {
        self.index_files_stale = true;
        failpoint("log::index::write")?;
        let offset_bytes = self.index.offset_bytes();
        self.offset_index_file.set_len(0)?;
        self.offset_index_file.write_all_at(&offset_bytes, 0)?;
        let time_bytes = self.index.time_bytes();
        self.time_index_file.set_len(0)?;
        self.time_index_file.write_all_at(&time_bytes, 0)?;
        self.index_files_stale = false;
        Ok(())
    }

    pub(super) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub(super) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub(super) fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub(super) fn rolling_base_ms(&self) -> Option<i64> {
        self.rolling_base_ms
    }

    pub(super) fn max_timestamp(&self) -> Option<MaxTimestamp> {
        self.index.max_timestamp
    }

    /// Writes a run of whole, validated batches at the end of the segment (one positional
    /// write(2), so they reach the kernel before returning) and indexes each. Offsets
    /// increase from `next_offset` on (a follower's copy of a compacted log may skip some).
    pub(super) fn append_run(
        &mut self,
        batches: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
        index_interval_bytes: u64,
    ) -> Result<(), LogError> {
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return Ok(());
        };
        debug_assert!(first.base_offset >= self.next_offset);
        debug_assert_eq!(
            headers.iter().map(BatchHeader::total_size).sum::<usize>(),
            batches.len()
        );
        debug_assert!(
            self.is_empty() || self.size_bytes + batches.len() as u64 <= MAX_SEGMENT_BYTES
        );
        debug_assert!(last.last_offset() - self.base_offset <= MAX_RELATIVE_OFFSET);
        let run_position = self.size_bytes;
        let written = failpoint("log::segment::write")
            .and_then(|()| self.log_file.write_all_at(batches, run_position));
        if let Err(e) = written {
            // Size and offsets stay put. Drop a partial write so recovery does not have to
            // (if this fails too, recovery truncates the torn tail).
            let _ = self.log_file.set_len(run_position);
            return Err(e.into());
        }
        self.size_bytes += batches.len() as u64;
        self.next_offset = last.last_offset() + 1;
        self.rolling_base_ms.get_or_insert(now_ms);
        let mut position = run_position;
        for header in headers {
            let (offset_entry, time_entry) = self.index.observe(
                self.base_offset,
                header,
                position as u32,
                index_interval_bytes,
            );
            position += header.total_size() as u64;
            // The batches are in the file now, but an index write error is a storage error
            // like any other (the caller takes the log directory offline); the active
            // segment's index files are rebuilt by recovery anyway.
            if let Some(entry) = offset_entry {
                let at = (self.index.offset_entries.len() - 1) * OFFSET_ENTRY_BYTES;
                self.write_index_entry(true, &encode_offset_entry(&entry), at as u64)?;
            }
            if let Some(entry) = time_entry {
                let at = (self.index.time_entries.len() - 1) * TIME_ENTRY_BYTES;
                self.write_index_entry(false, &encode_time_entry(&entry), at as u64)?;
            }
        }
        Ok(())
    }

    /// Cuts the segment at `position`, a batch boundary, and makes `next_offset` its end
    /// (Kafka's LogSegment.truncateTo): the indexes are rebuilt from the headers left
    /// (one header read per batch kept), the file is shortened and fsynced. The segment is
    /// the log's active one afterwards (the caller removed every later one).
    pub(super) fn truncate_at(
        &mut self,
        position: u64,
        next_offset: i64,
        index_interval_bytes: u64,
    ) -> Result<(), LogError> {
        debug_assert!(position <= self.size_bytes);
        debug_assert!(next_offset >= self.base_offset);
        let view = self.view();
        let mut index = SegmentIndex::default();
        let mut first_max_timestamp_ms = None;
        let mut at = 0;
        while at < position {
            let header = view.header_at(at)?;
            first_max_timestamp_ms.get_or_insert(header.max_timestamp);
            index.observe(self.base_offset, &header, at as u32, index_interval_bytes);
            at += header.total_size() as u64;
        }
        if at != position {
            return Err(view.corrupt(position, "truncation point is not a batch boundary"));
        }
        failpoint("log::segment::truncate")?;
        self.txn_index.truncate_to(next_offset)?;
        self.log_file.set_len(position)?;
        self.size_bytes = position;
        self.next_offset = next_offset;
        self.index = index;
        // An active segment keeps its age; a sealed one is aged from its first batch, as
        // recovery would (see `open_active`).
        self.rolling_base_ms = match position {
            0 => None,
            _ => self.rolling_base_ms.or(first_max_timestamp_ms),
        };
        self.rewrite_index_files()?;
        failpoint("log::segment::fsync")?;
        self.log_file.sync_all()?;
        Ok(())
    }

    fn write_index_entry(
        &mut self,
        offset_index: bool,
        bytes: &[u8],
        at: u64,
    ) -> Result<(), LogError> {
        if self.index_files_stale {
            // Rewritten whole by the next seal.
            return Ok(());
        }
        let file = if offset_index {
            &self.offset_index_file
        } else {
            &self.time_index_file
        };
        let written = failpoint("log::index::write").and_then(|()| file.write_all_at(bytes, at));
        if let Err(e) = written {
            self.index_files_stale = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// Makes this segment read-only for good: records its max timestamp as a final time
    /// entry (so reopening need not scan it) and fsyncs all three files.
    pub(super) fn seal(&mut self) -> Result<(), LogError> {
        if let Some(entry) = self.index.maybe_time_entry() {
            let at = (self.index.time_entries.len() - 1) * TIME_ENTRY_BYTES;
            self.write_index_entry(false, &encode_time_entry(&entry), at as u64)?;
        }
        if self.index_files_stale {
            self.rewrite_index_files()?;
        }
        failpoint("log::segment::fsync")?;
        self.log_file.sync_all()?;
        self.offset_index_file.sync_all()?;
        self.time_index_file.sync_all()?;
        self.txn_index.flush()?;
        Ok(())
    }

    /// fsyncs the data. Index files are not synced: the active segment's are rebuilt at
    /// open, and `seal` syncs them once they become trusted.
    pub(super) fn flush(&self) -> Result<(), LogError> {
        failpoint("log::segment::fsync")?;
        self.log_file.sync_data()?;
        self.txn_index.flush()?;
        Ok(())
    }

    /// Closes the segment and removes its files: the indexes first, so that a crash
    /// part-way leaves a `.log` whose indexes are rebuilt rather than an orphan index.
    /// The caller syncs the directory.
    pub(super) fn delete_files(self, dir: &Path) -> Result<(), LogError> {
        let base_offset = self.base_offset;
        drop(self);
        failpoint("log::segment::delete")?;
        for extension in ["index", "timeindex", "txnindex", "log"] {
            match std::fs::remove_file(dir.join(file_name(base_offset, extension))) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error.into())
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// What time retention measures a segment's age from (Kafka's `largestTimestamp`):
    /// its largest record timestamp, or the `.log` file's modification time when it holds
    /// none (empty, or only batches without timestamps).
    pub(super) fn largest_timestamp_ms(&self) -> Result<i64, LogError> {
        if let Some(max) = self.index.max_timestamp.filter(|max| max.timestamp_ms >= 0) {
            return Ok(max.timestamp_ms);
        }
        let modified = self.log_file.metadata()?.modified()?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |age| age.as_millis().min(i64::MAX as u128) as i64))
    }

    /// Renames the segment's files to `<name>.deleted` (Kafka's marking of a segment
    /// retention removed), for them to be unlinked after `file.delete.delay.ms`; open
    /// handles (this segment's, read views') keep working. Returns the new paths. Files
    /// already gone are skipped (the topic's directory may be going away).
    pub(super) fn retire_files(&self, dir: &Path) -> Result<Vec<PathBuf>, LogError> {
        let base_offset = self.base_offset;
        failpoint("log::segment::retire")?;
        let mut renamed = Vec::with_capacity(4);
        // The `.log` last: a crash part-way leaves a segment whose indexes are rebuilt.
        for extension in ["index", "timeindex", "txnindex", "log"] {
            let from = dir.join(file_name(base_offset, extension));
            let to = dir.join(format!(
                "{}{DELETED_SUFFIX}",
                file_name(base_offset, extension)
            ));
            match std::fs::rename(&from, &to) {
                Ok(()) => renamed.push(to),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(renamed)
    }

    /// The header of the batch starting at `position`, checked to fit in the segment.
    pub(super) fn header_at(&self, position: u64) -> Result<BatchHeader, LogError> {
        self.view().header_at(position)
    }

    /// `len_bytes` bytes from `position`, appended to `out`.
    pub(super) fn read_into(
        &self,
        position: u64,
        len_bytes: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        self.view().read_into(position, len_bytes, out)
    }

    /// What a read needs of this segment as it is now: appends only ever add bytes past
    /// `size_bytes`, so the view stays valid (and readable without the log lock) while
    /// appends continue.
    pub(super) fn view(&self) -> SegmentView {
        SegmentView {
            base_offset: self.base_offset,
            log_file: self.log_file.clone(),
            size_bytes: self.size_bytes,
            next_offset: self.next_offset,
        }
    }

    /// Where a scan for `offset` may start, from the in-memory offset index (no IO).
    pub(super) fn index_position(&self, offset: i64) -> u64 {
        self.index.offset_lookup(self.base_offset, offset) as u64
    }

    /// The batch whose last offset is the first >= `offset`, with its position; None if
    /// the segment ends before `offset`.
    pub(super) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        self.view()
            .find_batch_from(self.index_position(offset), offset)
    }

    /// The first batch whose max timestamp is >= `timestamp_ms` and whose last offset is
    /// >= `min_offset`, with its position.
    pub(super) fn find_batch_by_timestamp(
        &self,
        timestamp_ms: i64,
        min_offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        // Every batch up to a time entry's offset has a max timestamp <= the entry's, so
        // scanning may start at the last entry below the target.
        let after = self
            .index
            .time_entries
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        let mut position = match after {
            0 => 0,
            n => {
                let entry = self.index.time_entries[n - 1];
                let offset = self.base_offset + entry.relative_offset as i64;
                self.index.offset_lookup(self.base_offset, offset) as u64
            }
        };
        while position < self.size_bytes {
            let header = self.header_at(position)?;
            if header.max_timestamp >= timestamp_ms && header.last_offset() >= min_offset {
                return Ok(Some((position, header)));
            }
            position += header.total_size() as u64;
        }
        Ok(None)
    }
}

/// A new segment file being written by the log cleaner (`<base>.log.cleaned`): batches
/// appended in offset order, indexed as `Segment::append` indexes them.
pub(super) struct CleanedSegment {
    file: File,
    base_offset: i64,
    size_bytes: u64,
    next_offset: i64,
    index: SegmentIndex,
    index_interval_bytes: u64,
}

impl CleanedSegment {
    /// Creates (truncating any leftover) the file at `path`.
    pub(super) fn create(
        path: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> Result<CleanedSegment, LogError> {
        let file = open_file(path)?;
        file.set_len(0)?;
        Ok(CleanedSegment {
            file,
            base_offset,
            size_bytes: 0,
            next_offset: base_offset,
            index: SegmentIndex::default(),
            index_interval_bytes,
        })
    }

    /// Whether a batch of `batch_bytes` ending at `last_offset` still fits the segment
    /// format (positions and relative offsets are u32 in the indexes).
    pub(super) fn fits(&self, batch_bytes: u64, last_offset: i64) -> bool {
        (self.size_bytes == 0 || self.size_bytes + batch_bytes <= MAX_SEGMENT_BYTES)
            && last_offset - self.base_offset <= MAX_RELATIVE_OFFSET
    }

    pub(super) fn append(&mut self, batch: &[u8], header: &BatchHeader) -> Result<(), LogError> {
        debug_assert!(header.base_offset >= self.next_offset);
        debug_assert!(self.fits(batch.len() as u64, header.last_offset()));
        failpoint("log::segment::write")?;
        self.file.write_all_at(batch, self.size_bytes)?;
        self.index.observe(
            self.base_offset,
            header,
            self.size_bytes as u32,
            self.index_interval_bytes,
        );
        self.size_bytes += batch.len() as u64;
        self.next_offset = header.last_offset() + 1;
        Ok(())
    }

    /// fsyncs the file: it must be durable before it is renamed into the log.
    pub(super) fn flush(&self) -> Result<(), LogError> {
        failpoint("log::segment::fsync")?;
        self.file.sync_all()?;
        Ok(())
    }
}

/// An immutable prefix of a segment: whole batches up to `size_bytes`, read by pread on a
/// shared file handle. Taken under the log lock, read without it.
#[derive(Clone)]
pub(super) struct SegmentView {
    pub(super) base_offset: i64,
    log_file: Arc<File>,
    size_bytes: u64,
    next_offset: i64,
}

impl SegmentView {
    /// One past the last offset the segment covers (the next segment's base once sealed).
    pub(super) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub(super) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// The header of the batch starting at `position`, checked to fit in the segment.
    pub(super) fn header_at(&self, position: u64) -> Result<BatchHeader, LogError> {
        debug_assert!(position < self.size_bytes);
        if position + HEADER_SIZE as u64 > self.size_bytes {
            return Err(self.corrupt(position, "batch header past the segment end"));
        }
        let mut header_bytes = [0u8; HEADER_SIZE];
        self.log_file.read_exact_at(&mut header_bytes, position)?;
        let header = BatchHeader::parse(&header_bytes)
            .map_err(|e| self.corrupt(position, &e.to_string()))?;
        if position + header.total_size() as u64 > self.size_bytes {
            return Err(self.corrupt(position, "batch extends past the segment end"));
        }
        // Sealed segments are not validated at open: check the offsets before anyone does
        // arithmetic on them.
        let in_segment = header.base_offset >= self.base_offset
            && header.last_offset_delta >= 0
            && header
                .base_offset
                .checked_add(header.last_offset_delta as i64)
                .is_some_and(|last_offset| last_offset < self.next_offset);
        if !in_segment {
            return Err(self.corrupt(position, "batch offsets outside the segment"));
        }
        Ok(header)
    }

    fn corrupt(&self, position: u64, what: &str) -> LogError {
        LogError::Corrupt(format!(
            "segment {} position {position}: {what}",
            self.base_offset
        ))
    }

    /// `len_bytes` bytes from `position`, appended to `out`.
    pub(super) fn read_into(
        &self,
        position: u64,
        len_bytes: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        debug_assert!(position + len_bytes <= self.size_bytes);
        let start = out.len();
        out.resize(start + len_bytes as usize, 0);
        self.log_file.read_exact_at(&mut out[start..], position)?;
        Ok(())
    }

    /// From `position`, the first batch whose last offset is >= `offset`, with its
    /// position; None if the view ends before it.
    pub(super) fn find_batch_from(
        &self,
        mut position: u64,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        while position < self.size_bytes {
            let header = self.header_at(position)?;
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.total_size() as u64;
        }
        Ok(None)
    }
}
