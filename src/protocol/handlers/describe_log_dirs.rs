//! DescribeLogDirs (`kafka-log-dirs --describe`, Admin `describeLogDirs`): the one log
//! directory (absolute path, as Kafka reports it), the bytes of every hosted partition
//! asked for (all when `topics` is null; unknown ones are left out, as in Kafka), and
//! since v4 the volume's total and usable bytes. One replica per partition: the offset lag
//! is 0 and nothing is a future replica. An offline directory answers KAFKA_STORAGE_ERROR
//! with no topics. The sizes and statvfs are read on a blocking thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::log::dir;
use crate::partition::PartitionManager;
use crate::protocol::{errors, RequestContext};

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // None: every partition.
    let wanted: Option<HashMap<String, HashSet<i32>>> = request.topics.map(|topics| {
        let mut wanted: HashMap<String, HashSet<i32>> = HashMap::new();
        for topic in topics {
            wanted
                .entry(topic.topic.0.to_string())
                .or_default()
                .extend(topic.partitions);
        }
        wanted
    });
    let manager = ctx.broker.partitions.clone();
    let data_dir = ctx.broker.config.data_dir.clone();
    let log_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
    let shown = StrBytes::from_string(log_dir.display().to_string());
    let described =
        tokio::task::spawn_blocking(move || describe(&manager, log_dir, wanted.as_ref())).await;
    let result = match described {
        Ok(result) => result,
        Err(error) => {
            tracing::error!(%error, "describing the log directory failed");
            DescribeLogDirsResult::default().with_error_code(errors::UNKNOWN_SERVER_ERROR)
        }
    };
    DescribeLogDirsResponse::default().with_results(vec![result.with_log_dir(shown)])
}

/// Blocking: takes each partition's lock in turn (memory only) and calls statvfs.
fn describe(
    manager: &Arc<PartitionManager>,
    log_dir: PathBuf,
    wanted: Option<&HashMap<String, HashSet<i32>>>,
) -> DescribeLogDirsResult {
    if manager.health().is_offline() {
        return DescribeLogDirsResult::default().with_error_code(errors::KAFKA_STORAGE_ERROR);
    }
    let (total_bytes, usable_bytes) = match dir::disk_space(&log_dir) {
        Ok(space) => space,
        Err(error) => {
            tracing::warn!(dir = %log_dir.display(), %error, "cannot read the log directory's volume size");
            return DescribeLogDirsResult::default().with_error_code(errors::KAFKA_STORAGE_ERROR);
        }
    };
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for partition in manager.all() {
        let asked = wanted.is_none_or(|wanted| {
            wanted
                .get(&partition.topic)
                .is_some_and(|indexes| indexes.contains(&partition.index))
        });
        if !asked {
            continue;
        }
        topics.entry(partition.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition.index)
                .with_partition_size(partition.size_bytes().min(i64::MAX as u64) as i64)
                .with_offset_lag(0)
                .with_is_future_key(false),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    DescribeLogDirsResult::default()
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes)
}
