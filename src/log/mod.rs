//! A partition's on-disk log: segments of record batches in Kafka's format, a sparse
//! offset index and a time index per segment, recovery at open, rolling, flush policy.
//!
//! CONTRACT STUB: the signatures below are the API the partition layer codes against;
//! the bodies are being written on the `log` branch.

pub mod batch;

use std::path::Path;

use bytes::Bytes;
use thiserror::Error;

use batch::BatchHeader;

/// Per-log settings, under Kafka's topic-level names.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            flush_interval_messages: u64::MAX,
            flush_interval_ms: u64::MAX,
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
}

/// One partition's log. Appends take `&mut self`; reads take `&self`.
pub struct Log {
    _private: (),
}

impl Log {
    /// Opens the log in `dir` (created if missing), recovering the active segment.
    pub fn open(_dir: &Path, _config: LogConfig) -> Result<Log, LogError> {
        todo!("log branch")
    }
    pub fn dir(&self) -> &Path {
        todo!("log branch")
    }
    pub fn log_start_offset(&self) -> i64 {
        todo!("log branch")
    }
    pub fn log_end_offset(&self) -> i64 {
        todo!("log branch")
    }
    /// Appends one validated batch whose base offset is already `log_end_offset()`.
    pub fn append(
        &mut self,
        _batch: &[u8],
        _header: &BatchHeader,
        _now_ms: i64,
    ) -> Result<(), LogError> {
        todo!("log branch")
    }
    /// Whole batches from the one containing `offset`, up to `max_bytes`; at least one
    /// whole batch when `min_one_batch`. Empty at the log end.
    pub fn read(
        &self,
        _offset: i64,
        _max_bytes: usize,
        _min_one_batch: bool,
    ) -> Result<Bytes, LogError> {
        todo!("log branch")
    }
    /// The first batch whose max timestamp is >= `timestamp_ms`.
    pub fn first_batch_at_or_after_timestamp(
        &self,
        _timestamp_ms: i64,
    ) -> Result<Option<Bytes>, LogError> {
        todo!("log branch")
    }
    /// The batch holding the largest timestamp in the log (the first such batch).
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Bytes>, LogError> {
        todo!("log branch")
    }
    /// Headers of all batches with last offset >= `offset`, in log order.
    pub fn batch_headers_from(&self, _offset: i64) -> Result<Vec<BatchHeader>, LogError> {
        todo!("log branch")
    }
    pub fn flush(&mut self) -> Result<(), LogError> {
        todo!("log branch")
    }
    /// Applies `flush.ms`: fsyncs when the oldest unflushed append is older than it.
    pub fn flush_if_due(&mut self, _now_ms: i64) -> Result<(), LogError> {
        todo!("log branch")
    }
    /// Flushes and removes every file of this log, then its directory.
    pub fn delete(self) -> Result<(), LogError> {
        todo!("log branch")
    }
}
