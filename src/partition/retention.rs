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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use uuid::Uuid;

    use super::super::{error_code, now_ms, PartitionManager, LOG_START_OFFSET_CHECKPOINT_FILE};
    use crate::config::BrokerConfig;
    use crate::dynamic_config::LiveConfig;
    use crate::log::batch::test_support::batch_with;
    use crate::metadata::{MetadataImage, PartitionRecord, TopicImage};

    const TOPIC_ID: Uuid = Uuid::from_u128(11);

    /// Topic "t", one partition, one batch per segment, one hour of retention.
    fn image(node_id: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        let configs = BTreeMap::from([
            (
                crate::config::INTERNAL_SEGMENT_BYTES.to_string(),
                "20".to_string(),
            ),
            ("retention.ms".to_string(), "3600000".to_string()),
        ]);
        let topic = TopicImage {
            name: "t".to_string(),
            topic_id: TOPIC_ID,
            partitions: vec![PartitionRecord {
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
            configs,
        };
        image.topics.insert("t".to_string(), Arc::new(topic));
        image
    }

    fn open_manager(dir: &Path) -> PartitionManager {
        let log_dirs = format!("log.dirs={}", dir.display());
        let manager = PartitionManager::new(Arc::new(LiveConfig::new(
            BrokerConfig::load(None, std::iter::empty(), &[log_dirs]).unwrap(),
        )));
        manager.reconcile(&image(manager.config.node_id));
        manager
    }

    /// A partition holding two expired batches (timestamp 1 s after the epoch), each in
    /// its own segment (for the failpoint tests).
    #[cfg(feature = "failpoints")]
    fn two_old_batches(dir: &Path) -> (PartitionManager, Arc<super::super::Partition>) {
        let manager = open_manager(dir);
        let partition = manager.get(TOPIC_ID, 0).unwrap();
        for sequence in 0..2 {
            partition
                .append(&batch_with(&[b"v"], 1_000, 1, 0, sequence))
                .unwrap();
        }
        (manager, partition)
    }

    fn deleted_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("t-0"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".deleted")
            })
            .count()
    }

    /// Two hours old, then now: the old segments go, the log start moves (atomics and
    /// checkpoint, so a restart keeps it), reads below it are out of range.
    #[test]
    fn a_pass_retires_expired_segments_and_checkpoints_the_log_start() {
        let tmp = tempfile::tempdir().unwrap();
        let manager = open_manager(tmp.path());
        let partition = manager.get(TOPIC_ID, 0).unwrap();
        let now = now_ms();
        for (sequence, ts) in [now - 7_200_000, now - 7_200_000, now, now]
            .into_iter()
            .enumerate()
        {
            partition
                .append(&batch_with(&[b"v"], ts, 1, 0, sequence as i32))
                .unwrap();
        }
        let retired = manager.enforce_retention(now);
        assert_eq!(
            retired.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(partition.offsets(), (2, 4));
        let below = partition
            .read(1, usize::MAX, true, crate::partition::Reader::Consumer)
            .unwrap_err();
        assert_eq!(below.code, error_code::OFFSET_OUT_OF_RANGE);
        let checkpoint = std::fs::read_to_string(tmp.path().join(LOG_START_OFFSET_CHECKPOINT_FILE));
        assert_eq!(checkpoint.unwrap(), "0\n1\nt 0 2\n");
        assert_eq!(deleted_files(tmp.path()), 6);
        let files: Vec<_> = retired.into_iter().flat_map(|s| s.files).collect();
        manager.delete_retired_files(&files);
        assert_eq!(deleted_files(tmp.path()), 0);
        assert!(manager.enforce_retention(now).is_empty());
        assert!(!manager.health().is_offline());
        drop(partition);
        drop(manager);
        let manager = open_manager(tmp.path());
        assert_eq!(manager.get(TOPIC_ID, 0).unwrap().offsets(), (2, 4));
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_rename_takes_the_directory_offline() {
        use crate::log::dir::test_support::ArmedFailpoints;
        let armed = ArmedFailpoints::new();
        let tmp = tempfile::tempdir().unwrap();
        let (manager, partition) = two_old_batches(tmp.path());
        armed.set("log::segment::retire", "1*return(EIO)");
        assert!(manager.enforce_retention(now_ms()).is_empty());
        assert!(manager.health().is_offline());
        assert_eq!(partition.offsets(), (0, 2));
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_unlink_takes_the_directory_offline() {
        use crate::log::dir::test_support::ArmedFailpoints;
        let armed = ArmedFailpoints::new();
        let tmp = tempfile::tempdir().unwrap();
        let (manager, _) = two_old_batches(tmp.path());
        let retired = manager.enforce_retention(now_ms());
        assert_eq!(retired.len(), 2);
        assert!(!manager.health().is_offline());
        armed.set("log::segment::delete", "1*return(EIO)");
        manager.delete_retired_files(&retired[0].files);
        assert!(manager.health().is_offline());
    }
}
