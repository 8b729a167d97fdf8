//! The retention pass over the hosted partitions (Kafka's `LogManager.cleanupLogs`), run
//! every `log.retention.check.interval.ms` by the broker's retention task on a blocking
//! thread. Each partition's lock is taken per retired segment (its files' renames), so
//! appends and read planning interleave with a long pass. The settings are read from
//! each log's current config at check time.

use std::path::PathBuf;

use super::{Partition, PartitionError, PartitionManager};
use crate::log::{self, RetiredSegment};

impl Partition {
    /// Retires this log's segments that retention says must go at `now_ms`, oldest first,
    /// publishing the new log start offset after each. An IO error takes the log
    /// directory offline. `hosted` (asked under the lock) says whether the partition is
    /// still hosted: a deleted topic's directory is removed under the same lock, and a
    /// roll into it would fail. Blocking.
    fn enforce_retention(
        &self,
        now_ms: i64,
        hosted: impl Fn() -> bool,
    ) -> Result<Vec<RetiredSegment>, PartitionError> {
        let mut retired = Vec::new();
        loop {
            let segment = {
                let mut state = self.lock();
                self.check_online()?;
                if !hosted() {
                    return Ok(retired);
                }
                let segment = state
                    .log
                    .retire_oldest_segment(now_ms)
                    .map_err(|error| self.storage_failed(error))?;
                if segment.is_some() {
                    self.publish_offsets(&state.log);
                }
                segment
            };
            let Some(segment) = segment else {
                return Ok(retired);
            };
            tracing::info!(
                topic = %self.topic,
                partition = self.index,
                base_offset = segment.base_offset,
                size_bytes = segment.size_bytes,
                breach = ?segment.breach,
                log_start_offset = self.offsets().0,
                "segment removed by retention"
            );
            retired.push(segment);
        }
    }

    /// The bytes of this partition's log (DescribeLogDirs). Blocking: takes the lock,
    /// memory only.
    pub fn size_bytes(&self) -> u64 {
        self.lock().log.size_bytes()
    }
}

impl PartitionManager {
    /// One retention pass over every partition. The moved log start offsets go to the
    /// `log-start-offset-checkpoint` before this returns the retired segments, whose
    /// files the caller unlinks after their `delete_delay_ms` ([`Self::delete_retired_files`]).
    /// Blocking.
    pub fn enforce_retention(&self, now_ms: i64) -> Vec<RetiredSegment> {
        let mut retired = Vec::new();
        for partition in self.all() {
            let key = (partition.topic_id, partition.index);
            let hosted = || {
                self.partitions
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                    .is_some_and(|hosted| std::sync::Arc::ptr_eq(hosted, &partition))
            };
            match partition.enforce_retention(now_ms, hosted) {
                Ok(segments) => retired.extend(segments),
                // The log directory is offline (the failure was logged): stop.
                Err(_) => return retired,
            }
        }
        if !retired.is_empty() {
            if let Err(error) = self.write_log_start_checkpoint() {
                self.health.trip(&format_args!(
                    "cannot write the log start offset checkpoint: {error}"
                ));
            }
        }
        retired
    }

    /// Unlinks retired segments' `*.deleted` files. An IO error takes the log directory
    /// offline. Blocking.
    pub fn delete_retired_files(&self, files: &[PathBuf]) {
        if let Err(error) = log::delete_retired_files(files) {
            self.health.trip(&format_args!(
                "cannot delete retired segment files: {error}"
            ));
        }
    }
}
