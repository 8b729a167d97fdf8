//! The runtime around the pure [`GroupCoordinator`] cores: one task owns every shard of
//! `__consumer_offsets` on this broker, the wall clock, the timers and the IO.
//!
//! A request is routed to its group's shard; the core's [`Effects`] are applied in order:
//! records are appended (as one batch) to the shard's partition before any response is
//! sent, so an acknowledged commit is in the log. At start, and when the offsets topic is
//! first created (on the first group request, as Kafka does), every shard replays its
//! partition into a fresh core.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::records::RecordBatchDecoder;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};

use super::{
    partition_for_group, Effects, GroupCoordinator, GroupRequest, RequestId, RequestMeta, TimerKey,
};
use crate::config::BrokerConfig;
use crate::log::batch::{encode_uncompressed, PlainRecord, ProducerIdentity};
use crate::metadata::{CreateTopicRequest, MetadataQuorum, TopicDefaults};
use crate::partition::{error_code, now_ms, Partition, PartitionError, PartitionManager};

/// Kafka's answer to offsets whose records exceed the offsets topic's batch limit.
const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Requests queued for the coordinator task before callers wait for room.
const COMMAND_QUEUE_BOUND: usize = 4096;
/// Bytes read per step while replaying a shard at load.
const LOAD_READ_BYTES: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum GroupError {
    /// The shard is not loaded (offsets topic unavailable, load or write failure):
    /// clients get COORDINATOR_NOT_AVAILABLE and retry.
    #[error("group coordinator not available: {0}")]
    NotAvailable(String),
}

struct Command {
    shard: i32,
    version: i16,
    request: GroupRequest,
    meta: RequestMeta,
    reply: oneshot::Sender<ResponseKind>,
}

/// A cloneable handle for the request handlers.
#[derive(Clone)]
pub struct GroupRuntime {
    commands: mpsc::Sender<Command>,
    num_shards: i32,
}

impl GroupRuntime {
    /// Spawns the coordinator task; it loads existing shards at once and stops when
    /// `stop` is cancelled.
    pub fn start(
        config: BrokerConfig,
        metadata: MetadataQuorum,
        partitions: Arc<PartitionManager>,
        stop: CancellationToken,
    ) -> (GroupRuntime, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE_BOUND);
        let num_shards = config.offsets_topic_num_partitions;
        let task = Task {
            config,
            metadata,
            partitions,
            shards: HashMap::new(),
            timers: DelayQueue::new(),
            timer_keys: HashMap::new(),
            pending: HashMap::new(),
            next_request_id: 0,
        };
        let handle = tokio::spawn(task.run(rx, stop));
        (
            GroupRuntime {
                commands: tx,
                num_shards,
            },
            handle,
        )
    }

    pub fn shard_of(&self, group_id: &str) -> i32 {
        partition_for_group(group_id, self.num_shards)
    }

    pub fn num_shards(&self) -> i32 {
        self.num_shards
    }

    /// Sends a request to a shard and waits for its response (a JoinGroup can wait for a
    /// whole rebalance).
    pub async fn call(
        &self,
        shard: i32,
        version: i16,
        request: GroupRequest,
        meta: RequestMeta,
    ) -> Result<ResponseKind, GroupError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(Command {
                shard,
                version,
                request,
                meta,
                reply,
            })
            .await
            .map_err(|_| GroupError::NotAvailable("coordinator stopped".to_string()))?;
        response
            .await
            .map_err(|_| GroupError::NotAvailable("request dropped by the coordinator".to_string()))
    }

    /// Makes sure the offsets topic exists and its shards are loaded (FindCoordinator).
    pub async fn ensure_ready(&self) -> Result<(), GroupError> {
        // An empty ListGroups to shard 0 loads everything as a side effect.
        self.call(
            0,
            0,
            GroupRequest::ListGroups(Default::default()),
            RequestMeta::default(),
        )
        .await
        .map(|_| ())
    }
}

struct Shard {
    core: GroupCoordinator,
    partition: Arc<Partition>,
}

struct Task {
    config: BrokerConfig,
    metadata: MetadataQuorum,
    partitions: Arc<PartitionManager>,
    shards: HashMap<i32, Shard>,
    timers: DelayQueue<(i32, TimerKey)>,
    timer_keys: HashMap<(i32, TimerKey), delay_queue::Key>,
    /// Requests a core has not answered yet, with their shard.
    pending: HashMap<RequestId, (i32, oneshot::Sender<ResponseKind>)>,
    next_request_id: RequestId,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        if self.metadata.image().topics.contains_key(OFFSETS_TOPIC) {
            self.load_shards();
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                command = commands.recv() => match command {
                    None => return,
                    Some(command) => self.on_command(command).await,
                },
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => {
                    let (shard, key) = expired.into_inner();
                    self.timer_keys.remove(&(shard, key.clone()));
                    if let Some(s) = self.shards.get_mut(&shard) {
                        let effects = s.core.on_timer(now_ms(), key);
                        self.apply(shard, effects);
                    }
                }
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        if self.shards.is_empty() {
            if let Err(error) = self.create_offsets_topic().await {
                tracing::warn!(%error, "cannot create {OFFSETS_TOPIC}");
                return; // dropping the reply answers COORDINATOR_NOT_AVAILABLE
            }
            self.load_shards();
        }
        let image = self.metadata.image();
        let partition_exists = |topic: &str, partition: i32| {
            image
                .topics
                .get(topic)
                .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
        };
        let Some(shard) = self.shards.get_mut(&command.shard) else {
            return;
        };
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.pending
            .insert(request_id, (command.shard, command.reply));
        let effects = shard.core.handle_with_meta(
            now_ms(),
            request_id,
            command.version,
            command.request,
            &command.meta,
            &partition_exists,
        );
        self.apply(command.shard, effects);
    }

    fn apply(&mut self, shard: i32, effects: Effects) {
        let Effects {
            records,
            responses,
            timers,
        } = effects;
        if !records.is_empty() {
            let written = match self.shards.get(&shard) {
                Some(s) => append_records(&s.partition, &records),
                None => Err(PartitionError {
                    code: error_code::KAFKA_STORAGE_ERROR,
                    message: "shard not loaded".to_string(),
                }),
            };
            if let Err(error) = written {
                self.on_write_failure(shard, error, responses);
                return;
            }
        }
        for (key, deadline_ms) in timers {
            let slot = (shard, key);
            if let Some(existing) = self.timer_keys.remove(&slot) {
                self.timers.remove(&existing);
            }
            if let Some(deadline_ms) = deadline_ms {
                let delay =
                    Duration::from_millis(deadline_ms.saturating_sub(now_ms()).max(0) as u64);
                let key = self.timers.insert_at(slot.clone(), Instant::now() + delay);
                self.timer_keys.insert(slot, key);
            }
        }
        for (request_id, response) in responses {
            if let Some((_, reply)) = self.pending.remove(&request_id) {
                // The client may have gone away; nothing to do then.
                let _ = reply.send(response);
            }
        }
    }

    async fn create_offsets_topic(&self) -> Result<(), String> {
        let image = self.metadata.image();
        if !image.topics.contains_key(OFFSETS_TOPIC) {
            let brokers = image.brokers.len().max(1) as i16;
            let request = CreateTopicRequest {
                name: OFFSETS_TOPIC.to_string(),
                num_partitions: self.config.offsets_topic_num_partitions,
                replication_factor: self.config.offsets_topic_replication_factor.min(brokers),
                assignments: Vec::new(),
                configs: [
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("compression.type".to_string(), "producer".to_string()),
                    (
                        "segment.bytes".to_string(),
                        self.config.offsets_topic_segment_bytes.to_string(),
                    ),
                ]
                .into_iter()
                .collect(),
            };
            let defaults = TopicDefaults {
                num_partitions: self.config.offsets_topic_num_partitions,
                replication_factor: 1,
            };
            let results = self
                .metadata
                .create_topics(vec![request], &defaults, false)
                .await
                .map_err(|e| e.to_string())?;
            match results.into_iter().next() {
                Some(Ok(_)) => {}
                // Created concurrently by another path: fine.
                Some(Err(e)) if e.code == 36 => {}
                Some(Err(e)) => return Err(e.message),
                None => return Err("no result".to_string()),
            }
        }
        self.partitions.reconcile(&self.metadata.image());
        Ok(())
    }

    /// Replays every local shard of the offsets topic into a fresh core.
    fn load_shards(&mut self) {
        let image = self.metadata.image();
        let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        let started = std::time::Instant::now();
        let mut loaded_records = 0usize;
        for assignment in &topic.partitions {
            if assignment.leader != self.config.node_id {
                continue;
            }
            let shard = assignment.partition;
            let Some(partition) = self.partitions.get(topic.topic_id, shard) else {
                tracing::error!(
                    shard,
                    "offsets partition is not online; its groups are unavailable"
                );
                continue;
            };
            match self.load_shard(shard, partition) {
                Ok(count) => loaded_records += count,
                Err(error) => {
                    tracing::error!(shard, %error, "cannot load offsets partition; its groups are unavailable");
                }
            }
        }
        tracing::info!(
            shards = self.shards.len(),
            records = loaded_records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded"
        );
    }

    /// Replays one shard's partition into a fresh core and starts its timers; returns
    /// how many records were replayed.
    fn load_shard(&mut self, shard: i32, partition: Arc<Partition>) -> Result<usize, String> {
        let mut core = GroupCoordinator::new(self.config.group.clone());
        let count = replay_partition(&partition, &mut core)?;
        let effects = core.loaded(now_ms());
        self.shards.insert(shard, Shard { core, partition });
        self.apply(shard, effects);
        Ok(count)
    }

    /// The core is ahead of its log: reload the shard from the log, as Kafka unloads a
    /// failed coordinator. Every request waiting on it is dropped (its client gets
    /// COORDINATOR_NOT_AVAILABLE and retries), except an OffsetCommit whose records were
    /// too large to write: Kafka answers that one INVALID_COMMIT_OFFSET_SIZE.
    fn on_write_failure(
        &mut self,
        shard: i32,
        error: PartitionError,
        responses: Vec<(RequestId, ResponseKind)>,
    ) {
        tracing::error!(shard, code = error.code, message = %error.message, "cannot persist group records; reloading the shard");
        let mut answers = Vec::new();
        if error.code == error_code::MESSAGE_TOO_LARGE {
            for (request_id, response) in responses {
                if let ResponseKind::OffsetCommit(mut commit) = response {
                    for partition in commit
                        .topics
                        .iter_mut()
                        .flat_map(|t| t.partitions.iter_mut())
                    {
                        partition.error_code = INVALID_COMMIT_OFFSET_SIZE;
                    }
                    if let Some((_, reply)) = self.pending.remove(&request_id) {
                        answers.push((reply, ResponseKind::OffsetCommit(commit)));
                    }
                }
            }
        }
        if let Some(old) = self.unload(shard) {
            if let Err(error) = self.load_shard(shard, old.partition) {
                tracing::error!(shard, %error, "cannot reload offsets partition; its groups are unavailable");
            }
        }
        for (reply, response) in answers {
            let _ = reply.send(response);
        }
    }

    /// Removes a shard's core with its timers and the requests parked in it (dropping
    /// their replies answers them COORDINATOR_NOT_AVAILABLE).
    fn unload(&mut self, shard: i32) -> Option<Shard> {
        self.pending.retain(|_, (owner, _)| *owner != shard);
        let timers: Vec<(i32, TimerKey)> = self
            .timer_keys
            .keys()
            .filter(|(owner, _)| *owner == shard)
            .cloned()
            .collect();
        for slot in timers {
            if let Some(key) = self.timer_keys.remove(&slot) {
                self.timers.remove(&key);
            }
        }
        self.shards.remove(&shard)
    }
}

/// Reads a shard's partition from its start and replays every record; returns how many.
fn replay_partition(partition: &Partition, core: &mut GroupCoordinator) -> Result<usize, String> {
    let (mut offset, end) = partition.offsets();
    let mut count = 0usize;
    while offset < end {
        let read = partition
            .read(offset, LOAD_READ_BYTES, true)
            .map_err(|e| e.message)?;
        if read.records.is_empty() {
            break;
        }
        let mut bytes = read.records;
        let sets = RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| e.to_string())?;
        let before = offset;
        for set in sets {
            for record in set.records {
                // A fetch starts at the batch holding `offset`: skip what was replayed.
                if record.offset < offset {
                    continue;
                }
                if let Some(key) = &record.key {
                    core.replay(key, record.value.as_deref())
                        .map_err(|e| e.to_string())?;
                    count += 1;
                }
                offset = record.offset + 1;
            }
        }
        if offset == before {
            return Err(format!("no progress replaying at offset {offset}"));
        }
    }
    Ok(count)
}

/// Encodes the records as one uncompressed batch and appends it to the shard.
fn append_records(partition: &Partition, records: &[super::Record]) -> Result<(), PartitionError> {
    let timestamp_ms = now_ms();
    let plain: Vec<PlainRecord> = records
        .iter()
        .map(|r| PlainRecord {
            key: Some(r.key.clone()),
            value: r.value.clone(),
            timestamp_ms,
        })
        .collect();
    let bytes =
        encode_uncompressed(&plain, ProducerIdentity::NONE).map_err(|e| PartitionError {
            code: error_code::KAFKA_STORAGE_ERROR,
            message: e.to_string(),
        })?;
    partition.append(&bytes).map(|_| ()).map_err(|e| e.error)
}
