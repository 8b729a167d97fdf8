//! Groups on the coordinator runtime: the `__consumer_offsets` shard type. The runtime
//! (`coordinator::runtime`) owns IO, the clock and timers; this file says how a group
//! shard is created, replayed, called and logged.

use kafka_protocol::messages::ResponseKind;

use super::{partition_for_group, Effects, GroupCoordinator, GroupRequest, RequestMeta, TimerKey};
use crate::config::BrokerConfig;
use crate::coordinator::runtime::{CoordinatorError, CoordinatorRuntime};
use crate::coordinator::{self, Call, ReplayRecord, RequestId, Shard};
use crate::metadata::internal_topics::offsets_topic_request;
use crate::metadata::{CreateTopicRequest, MetadataImage};
use crate::partition::error_code;

pub use crate::metadata::internal_topics::OFFSETS_TOPIC;

/// Kafka's answer to offsets whose records exceed the offsets topic's batch limit.
const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;

/// The group coordinator's runtime handle.
pub type GroupRuntime = CoordinatorRuntime<GroupCoordinator>;
/// Kept under its old name for the handlers.
pub type GroupError = CoordinatorError;

impl From<Effects> for coordinator::Effects<GroupCoordinator> {
    fn from(effects: Effects) -> Self {
        coordinator::Effects {
            producer: effects.producer,
            marker: effects.marker.map(|m| coordinator::TxnMarker {
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                coordinator_epoch: m.coordinator_epoch,
                commit: m.commit,
            }),
            records: effects.records,
            responses: effects.responses,
            timers: effects.timers,
            sends: Vec::new(),
        }
    }
}

/// What a group shard is asked: a client's request, or (WriteTxnMarkers on this
/// shard's partition) to end a producer's transaction.
#[derive(Debug)]
pub enum GroupCall {
    /// Boxed: a request is far larger than a marker.
    Request(Box<GroupRequest>),
    CompleteTransaction(coordinator::TxnMarker),
}

impl From<GroupRequest> for GroupCall {
    fn from(request: GroupRequest) -> Self {
        GroupCall::Request(Box::new(request))
    }
}

/// The transaction result a control record's key holds (version, then type: 0 abort,
/// 1 commit); None for a key too short to say.
fn marker_commits(key: &[u8]) -> Option<bool> {
    let kind = key.get(2..4)?;
    Some(i16::from_be_bytes([kind[0], kind[1]]) == 1)
}

impl Shard for GroupCoordinator {
    type Request = GroupCall;
    type Timer = TimerKey;
    /// Groups start no follow-up work.
    type Send = std::convert::Infallible;
    const KIND: &'static str = "group";
    const TOPIC: &'static str = OFFSETS_TOPIC;

    fn num_shards(config: &BrokerConfig) -> i32 {
        config.offsets_topic_num_partitions
    }

    fn topic_request(config: &BrokerConfig, image: &MetadataImage) -> CreateTopicRequest {
        offsets_topic_request(config, image)
    }

    fn new_core(config: &BrokerConfig, _coordinator_epoch: i32) -> Self {
        GroupCoordinator::new(config.group.clone())
    }

    fn replay(&mut self, record: &ReplayRecord<'_>) -> Result<(), String> {
        let Some(key) = record.key else {
            return Ok(());
        };
        if record.control {
            if let Some(commit) = marker_commits(key) {
                self.replay_marker(record.offset, record.producer_id, commit);
            }
            return Ok(());
        }
        let transactional_producer = record.transactional.then_some(record.producer_id);
        self.replay_at(record.offset, transactional_producer, key, record.value)
            .map_err(|e| e.to_string())
    }

    fn loaded(&mut self, now_ms: i64) -> coordinator::Effects<Self> {
        GroupCoordinator::loaded(self, now_ms).into()
    }

    fn handle(
        &mut self,
        now_ms: i64,
        request_id: RequestId,
        call: Call<GroupCall>,
        image: &MetadataImage,
    ) -> coordinator::Effects<Self> {
        let request = match call.request {
            GroupCall::Request(request) => *request,
            GroupCall::CompleteTransaction(marker) => {
                let mut effects: coordinator::Effects<Self> = self
                    .complete_transaction(
                        marker.producer_id,
                        marker.producer_epoch,
                        marker.coordinator_epoch,
                        marker.commit,
                    )
                    .into();
                // Answered once the marker is written; the caller only needs to know that.
                effects.responses.push((
                    request_id,
                    ResponseKind::WriteTxnMarkers(Default::default()),
                ));
                return effects;
            }
        };
        let partition_exists = |topic: &str, partition: i32| {
            image
                .topics
                .get(topic)
                .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
        };
        self.handle_with_meta(
            now_ms,
            request_id,
            call.version,
            request,
            &call.meta,
            &partition_exists,
        )
        .into()
    }

    fn on_timer(&mut self, now_ms: i64, timer: TimerKey) -> coordinator::Effects<Self> {
        GroupCoordinator::on_timer(self, now_ms, timer).into()
    }

    /// Kafka answers an OffsetCommit whose records were too large to write
    /// INVALID_COMMIT_OFFSET_SIZE.
    fn on_write_failure(code: i16, response: ResponseKind) -> Option<ResponseKind> {
        match response {
            ResponseKind::OffsetCommit(mut commit) if code == error_code::MESSAGE_TOO_LARGE => {
                for partition in commit
                    .topics
                    .iter_mut()
                    .flat_map(|t| t.partitions.iter_mut())
                {
                    partition.error_code = INVALID_COMMIT_OFFSET_SIZE;
                }
                Some(ResponseKind::OffsetCommit(commit))
            }
            _ => None,
        }
    }

    fn describe(call: &GroupCall) -> Option<String> {
        match call {
            GroupCall::Request(request) => describe_request(request),
            GroupCall::CompleteTransaction(marker) => Some(format!(
                "complete transaction producer_id={} epoch={} commit={}",
                marker.producer_id, marker.producer_epoch, marker.commit
            )),
        }
    }

    fn describe_response(response: &ResponseKind) -> Option<String> {
        describe_response(response)
    }
}

impl CoordinatorRuntime<GroupCoordinator> {
    pub fn shard_of(&self, group_id: &str) -> i32 {
        partition_for_group(group_id, self.num_shards())
    }

    /// Makes sure the offsets topic exists and the shards this node leads are loaded, and
    /// that `shard` answers here (FindCoordinator, when this node leads it).
    pub async fn ensure_ready(&self, shard: i32) -> Result<(), GroupError> {
        // An empty ListGroups loads everything as a side effect.
        self.call(
            shard,
            0,
            GroupRequest::ListGroups(Default::default()).into(),
            RequestMeta::default(),
        )
        .await
        .map(|_| ())
    }

    /// Ends a producer's transaction on `shard` (WriteTxnMarkers reached an offsets
    /// partition): its pending offsets are committed or dropped and the marker written;
    /// Ok once it is committed.
    pub async fn complete_transaction(
        &self,
        shard: i32,
        marker: coordinator::TxnMarker,
    ) -> Result<(), GroupError> {
        self.call(
            shard,
            0,
            GroupCall::CompleteTransaction(marker),
            RequestMeta::default(),
        )
        .await
        .map(|_| ())
    }
}

/// The membership fields of a group request, for the debug log (None: not logged).
fn describe_request(request: &GroupRequest) -> Option<String> {
    Some(match request {
        GroupRequest::JoinGroup(r) => format!(
            "JoinGroup group={} member={:?} rebalance_timeout_ms={} session_timeout_ms={}",
            r.group_id.0.as_str(),
            r.member_id.as_str(),
            r.rebalance_timeout_ms,
            r.session_timeout_ms
        ),
        GroupRequest::SyncGroup(r) => format!(
            "SyncGroup group={} member={:?} generation={} assignments={}",
            r.group_id.0.as_str(),
            r.member_id.as_str(),
            r.generation_id,
            r.assignments.len()
        ),
        GroupRequest::Heartbeat(r) => format!(
            "Heartbeat group={} member={:?} generation={}",
            r.group_id.0.as_str(),
            r.member_id.as_str(),
            r.generation_id
        ),
        GroupRequest::LeaveGroup(r) => format!(
            "LeaveGroup group={} member={:?} members={:?}",
            r.group_id.0.as_str(),
            r.member_id.as_str(),
            r.members
                .iter()
                .map(|m| m.member_id.as_str())
                .collect::<Vec<_>>()
        ),
        GroupRequest::OffsetCommit(r) => format!(
            "OffsetCommit group={} member={:?} generation={}",
            r.group_id.0.as_str(),
            r.member_id.as_str(),
            r.generation_id_or_member_epoch
        ),
        _ => return None,
    })
}

/// The answer to a membership request, for the debug log (None: not logged).
fn describe_response(response: &ResponseKind) -> Option<String> {
    Some(match response {
        ResponseKind::JoinGroup(r) => format!(
            "JoinGroup error={} generation={} member={:?} leader={:?} members={}",
            r.error_code,
            r.generation_id,
            r.member_id.as_str(),
            r.leader.as_str(),
            r.members.len()
        ),
        ResponseKind::SyncGroup(r) => format!(
            "SyncGroup error={} assignment_bytes={}",
            r.error_code,
            r.assignment.len()
        ),
        ResponseKind::Heartbeat(r) => format!("Heartbeat error={}", r.error_code),
        ResponseKind::LeaveGroup(r) => format!("LeaveGroup error={}", r.error_code),
        ResponseKind::OffsetCommit(r) => format!(
            "OffsetCommit errors={:?}",
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect::<Vec<_>>()
        ),
        _ => return None,
    })
}

/// Start-up replay of `__consumer_offsets` before and after compaction (issue 9's
/// measurement): 1M offset commits of 100 groups, as 100k OffsetCommit batches of 10
/// partitions each, written to one shard, replayed as the runtime replays a shard at
/// start, then the cleaner runs and the shard is replayed again. Timing is printed, not
/// asserted; run with
/// `cargo test --release --lib replay_before_and_after_compaction -- --ignored --nocapture`.
#[cfg(test)]
mod replay_measurement {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use uuid::Uuid;

    use std::sync::Arc;

    use super::*;
    use crate::coordinator::runtime::replay_partition;
    use crate::group::records::{offset_key, offset_value, OffsetValue};
    use crate::log::batch::{encode_uncompressed, PlainRecord, ProducerIdentity};
    use crate::log::cleaner::Cleaner;
    use crate::metadata::{MetadataImage, PartitionRecord, TopicImage};
    use crate::partition::{now_ms, PartitionManager};

    const GROUPS: usize = 100;
    const PARTITIONS_PER_GROUP: usize = 10;
    const COMMITS: usize = 1_000_000;

    /// Returns the records replayed after compaction.
    fn measure(segment_bytes: u64) -> usize {
        let tmp = tempfile::tempdir().unwrap();
        let config = BrokerConfig::load(
            None,
            std::iter::empty(),
            &[
                format!("log.dirs={}", tmp.path().display()),
                format!("offsets.topic.segment.bytes={segment_bytes}"),
            ],
        )
        .unwrap();
        let manager = PartitionManager::new(Arc::new(crate::dynamic_config::LiveConfig::new(
            config.clone(),
        )));
        let topic_id = Uuid::from_u128(1);
        let mut image = MetadataImage::default();
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), segment_bytes.to_string()),
        ]);
        image.topics.insert(
            OFFSETS_TOPIC.to_string(),
            Arc::new(TopicImage {
                name: OFFSETS_TOPIC.to_string(),
                topic_id,
                partitions: vec![PartitionRecord {
                    partition: 0,
                    leader: config.node_id,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    elr: Vec::new(),
                    last_known_elr: Vec::new(),
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                    replicas: vec![config.node_id],
                    isr: vec![config.node_id],
                }],
                configs,
            }),
        );
        manager.reconcile(&image);
        let partition = manager.get(topic_id, 0).unwrap();
        let started = Instant::now();
        for commit in 0..COMMITS / PARTITIONS_PER_GROUP {
            let group = format!("group-{}", commit % GROUPS);
            let records: Vec<PlainRecord> = (0..PARTITIONS_PER_GROUP)
                .map(|p| PlainRecord {
                    key: Some(offset_key(&group, "orders", p as i32)),
                    value: Some(offset_value(&OffsetValue {
                        offset: commit as i64,
                        leader_epoch: 0,
                        metadata: String::new(),
                        commit_timestamp: now_ms(),
                        expire_timestamp: None,
                    })),
                    timestamp_ms: now_ms(),
                })
                .collect();
            let batch = encode_uncompressed(&records, ProducerIdentity::NONE).unwrap();
            partition.append(&batch).unwrap();
        }
        let write_ms = started.elapsed().as_millis();
        let replay = |what: &str| {
            let started = Instant::now();
            let mut core = GroupCoordinator::new(config.group.clone());
            let count = replay_partition(&partition, &mut core).unwrap();
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            println!("segment.bytes {segment_bytes}: replay {what}: {count} records in {elapsed_ms:.0} ms");
            count
        };
        let before = replay("before compaction");
        let log_bytes = || -> u64 {
            std::fs::read_dir(tmp.path().join(format!("{OFFSETS_TOPIC}-0")))
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .map(|e| e.metadata().unwrap().len())
                .sum()
        };
        let bytes_before = log_bytes();
        let mut cleaner = Cleaner::new(config.cleaner.clone(), tmp.path());
        let started = Instant::now();
        let mut cleans = 0;
        while cleaner
            .clean_filthiest(&manager.cleanable_logs(), now_ms())
            .unwrap()
        {
            cleans += 1;
        }
        let clean_s = started.elapsed().as_secs_f64();
        let after = replay("after compaction");
        println!(
            "segment.bytes {segment_bytes}: wrote {COMMITS} commits in {write_ms} ms; {cleans} cleans in {clean_s:.2} s; log {bytes_before} -> {} bytes",
            log_bytes()
        );
        assert_eq!(before, COMMITS);
        after
    }

    #[test]
    #[ignore = "a measurement: 1M commits, seconds to minutes"]
    fn replay_before_and_after_compaction() {
        // Kafka's default offsets.topic.segment.bytes (100 MiB): the 61 MB of commits stay
        // in the active segment, which is never cleaned.
        assert_eq!(measure(104_857_600), COMMITS);
        // The smallest allowed: all but the last MiB is cleaned down to the live keys.
        assert!(measure(1_048_576) < COMMITS / 10);
    }
}
