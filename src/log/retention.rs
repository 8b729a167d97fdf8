//! Time and size retention of one log (Kafka's `UnifiedLog.deleteRetentionSizeBreachedSegments`
//! and `deleteRetentionMsBreachedSegments`), one segment at a time so that the caller
//! holds the log's lock for one segment's renames, never for a whole pass.
//!
//! Rules (Kafka 4.4), with `delete` in `cleanup.policy` only, oldest segment first, whole
//! segments only:
//! - size: while the log without its oldest segment is still at least `retention.bytes`;
//! - time: while the oldest segment's largest timestamp (else its file's modification
//!   time) is more than `retention.ms` before now;
//! - the active segment counts too when every older one went: if it breaches and is not
//!   empty it is rolled first, so a log always keeps an (empty) active segment.
//!
//! A retired segment leaves the log at once (the log start offset moves to the next
//! segment's base, so reads below it are out of range) and its files are renamed to
//! `*.deleted`; the caller unlinks them after `file.delete.delay.ms`
//! ([`delete_retired_files`]). Leftover `*.deleted` files are removed when a log opens.

use std::fs;
use std::path::{Path, PathBuf};

use super::dir::failpoint;
use super::segment::DELETED_SUFFIX;
use super::{Log, LogError};

/// Which retention limit removed a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionBreach {
    /// `retention.bytes`
    Size,
    /// `retention.ms`
    Time,
}

/// A segment retention took out of a log, its files renamed to `*.deleted`.
#[derive(Debug)]
pub struct RetiredSegment {
    pub base_offset: i64,
    pub size_bytes: u64,
    pub breach: RetentionBreach,
    /// The renamed files, to unlink once `delete_delay_ms` has passed.
    pub files: Vec<PathBuf>,
    /// The log's `file.delete.delay.ms` when the segment was retired.
    pub delete_delay_ms: u64,
}

impl Log {
    /// The bytes of all segments (what DescribeLogDirs reports and `retention.bytes`
    /// bounds).
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size_bytes()).sum()
    }

    /// Retires the oldest segment if the log's current retention settings say it must go
    /// at `now_ms`, else returns None. Call it until None for a whole pass.
    pub fn retire_oldest_segment(
        &mut self,
        now_ms: i64,
    ) -> Result<Option<RetiredSegment>, LogError> {
        if !self.config.cleanup_policy.delete {
            return Ok(None);
        }
        let Some(breach) = self.oldest_segment_breach(now_ms)? else {
            return Ok(None);
        };
        if self.segments.len() == 1 {
            // Only the active segment is left and it breaches: roll, so that it can go
            // and the log keeps an active segment at its end.
            self.roll(self.log_end_offset())?;
        }
        let (&base_offset, oldest) = self
            .segments
            .first_key_value()
            .expect("a log always has an active segment");
        let size_bytes = oldest.size_bytes();
        let next_base = oldest.next_offset();
        // Renamed before it leaves the map: if renaming fails (the caller then takes the
        // directory offline) the segment is still readable through its open handles.
        let files = oldest.retire_files(&self.dir)?;
        self.segments.remove(&base_offset);
        debug_assert_eq!(self.segments.keys().next(), Some(&next_base));
        self.log_start_offset = self.log_start_offset.max(next_base);
        Ok(Some(RetiredSegment {
            base_offset,
            size_bytes,
            breach,
            files,
            delete_delay_ms: self.config.file_delete_delay_ms,
        }))
    }

    /// Whether the oldest segment breaches `retention.bytes` or `retention.ms` (Kafka checks
    /// size first). An empty active segment never does.
    fn oldest_segment_breach(&self, now_ms: i64) -> Result<Option<RetentionBreach>, LogError> {
        let oldest = self
            .segments
            .values()
            .next()
            .expect("a log always has an active segment");
        if self.segments.len() == 1 && oldest.is_empty() {
            return Ok(None);
        }
        let retention_bytes = self.config.retention_bytes;
        if retention_bytes >= 0 {
            let without_oldest = self.size_bytes() - oldest.size_bytes();
            if without_oldest >= retention_bytes as u64 {
                return Ok(Some(RetentionBreach::Size));
            }
        }
        let retention_ms = self.config.retention_ms;
        if retention_ms >= 0 && now_ms.saturating_sub(oldest.largest_timestamp_ms()?) > retention_ms
        {
            return Ok(Some(RetentionBreach::Time));
        }
        Ok(None)
    }
}

/// Unlinks the files of retired segments once their delay has passed. Files already gone
/// are fine (their partition may have been deleted meanwhile).
pub fn delete_retired_files(files: &[PathBuf]) -> Result<(), LogError> {
    for file in files {
        failpoint("log::segment::delete")?;
        match fs::remove_file(file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
            _ => {}
        }
    }
    Ok(())
}

/// At open: `*.deleted` files a shutdown or crash left before their delay ran out.
pub(super) fn remove_leftover_deleted_files(dir: &Path) -> Result<(), LogError> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with(DELETED_SUFFIX)
        {
            tracing::info!(file = %entry.path().display(), "removing a retired segment file");
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
