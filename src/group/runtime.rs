//! The runtime around the pure [`GroupCoordinator`] cores: one task owns every shard of
//! `__consumer_offsets` on this broker, the wall clock and the timers; file IO is handed
//! to blocking threads and its completions come back to the task as events, so a slow
//! disk never stops the task from answering (heartbeats of other groups keep flowing).
//!
//! A request is routed to its group's shard and applied to the core at once; the core's
//! [`Effects`] then wait in the shard's queue: their records are appended (as one batch,
//! one write in flight per shard) to the shard's partition before their responses are
//! sent, so an acknowledged commit is in the log. Later requests proceed on the core's
//! in-memory state, but their responses wait behind the earlier writes (as in Kafka's
//! coordinator runtime). A failed write reloads the shard from its log. At start, and
//! when the offsets topic is first created (on the first group request, as Kafka does),
//! every shard replays its partition into a fresh core on a blocking thread; requests for
//! a shard wait until it is loaded.
//!
//! Timers fire on the monotonic clock; a fired timer is treated as due even if the wall
//! clock stepped back meanwhile (see [`timer_now_ms`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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
use crate::log::batch::{encode_uncompressed, BatchHeader, PlainRecord, ProducerIdentity};
use crate::metadata::internal_topics::offsets_topic_request;
use crate::metadata::{MetadataQuorum, TopicDefaults};
use crate::partition::{error_code, now_ms, Partition, PartitionError, PartitionManager, Reader};

/// Kafka's answer to offsets whose records exceed the offsets topic's batch limit.
const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;

pub use crate::metadata::internal_topics::OFFSETS_TOPIC;

/// Requests queued for the coordinator task before callers wait for room.
const COMMAND_QUEUE_BOUND: usize = 4096;
/// Bytes read per step while replaying a shard at load.
const LOAD_READ_BYTES: usize = 1 << 20;
/// How long a group write may wait for the in-sync replicas (Kafka's
/// `offsets.commit.timeout.ms` default); then the shard reloads and clients retry.
const COMMIT_TIMEOUT: Duration = Duration::from_millis(5_000);

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
        let (events, events_rx) = mpsc::unbounded_channel();
        let num_shards = config.offsets_topic_num_partitions;
        let task = Task {
            config,
            metadata,
            partitions,
            shards: HashMap::new(),
            loading: HashMap::new(),
            next_generation: 0,
            started: false,
            events,
            timers: DelayQueue::new(),
            timer_keys: HashMap::new(),
            pending: HashMap::new(),
            next_request_id: 0,
        };
        let handle = tokio::spawn(task.run(rx, events_rx, stop));
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

    /// Makes sure the offsets topic exists and the shards this node leads are loaded, and
    /// that `shard` answers here (FindCoordinator, when this node leads it).
    pub async fn ensure_ready(&self, shard: i32) -> Result<(), GroupError> {
        // An empty ListGroups loads everything as a side effect.
        self.call(
            shard,
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
    /// Tells this load of the shard from a later one: completions of an unloaded shard's
    /// writes are ignored.
    generation: u64,
    /// Effects waiting for this shard's earlier write, in order (responses without records
    /// too: they may show state that is not yet written).
    queue: VecDeque<Effects>,
    /// The responses of the write being appended, sent once it is in the log.
    writing: Option<Vec<(RequestId, ResponseKind)>>,
}

/// Completions of the blocking work the task hands off, back to its loop.
enum Event {
    Loaded {
        shard: i32,
        partition: Arc<Partition>,
        replayed: Result<(GroupCoordinator, usize), String>,
    },
    Written {
        shard: i32,
        generation: u64,
        result: Result<(), PartitionError>,
    },
}

struct Task {
    config: BrokerConfig,
    metadata: MetadataQuorum,
    partitions: Arc<PartitionManager>,
    shards: HashMap<i32, Shard>,
    /// Shards being replayed, with the commands that came for them meanwhile.
    loading: HashMap<i32, Vec<Command>>,
    next_generation: u64,
    /// Shards have been loaded at least once (so later leaderships load theirs too).
    started: bool,
    /// Unbounded, but holds at most one load and one write completion per shard.
    events: mpsc::UnboundedSender<Event>,
    /// Each timer's wall-clock deadline rides along: a fired timer is due by the
    /// monotonic clock whatever the wall clock did meanwhile.
    timers: DelayQueue<(i32, TimerKey, i64)>,
    timer_keys: HashMap<(i32, TimerKey), delay_queue::Key>,
    /// Requests a core has not answered yet, with their shard.
    pending: HashMap<RequestId, (i32, oneshot::Sender<ResponseKind>)>,
    next_request_id: RequestId,
}

/// The `now_ms` for the core when a timer armed for `deadline_ms` fires: the timer is due
/// (it fires on the monotonic clock), so "now" is at least its deadline even if the wall
/// clock stepped back meanwhile (the core would ignore a fire it thinks is early, and
/// nothing would re-arm it).
pub(crate) fn timer_now_ms(wall_now_ms: i64, deadline_ms: i64) -> i64 {
    wall_now_ms.max(deadline_ms)
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::UnboundedReceiver<Event>,
        stop: CancellationToken,
    ) {
        if self.metadata.image().topics.contains_key(OFFSETS_TOPIC) {
            self.load_shards();
        }
        let mut images = self.metadata.watch();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = images.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    images.borrow_and_update();
                    self.follow_leadership();
                }
                command = commands.recv() => match command {
                    None => return,
                    Some(command) => self.on_command(command).await,
                },
                Some(event) = events.recv() => self.on_event(event),
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => {
                    let (shard, key, deadline_ms) = expired.into_inner();
                    self.timer_keys.remove(&(shard, key.clone()));
                    if let Some(s) = self.shards.get_mut(&shard) {
                        tracing::debug!(shard, timer = key.as_str(), "group timer fired");
                        let now = timer_now_ms(now_ms(), deadline_ms);
                        let effects = s.core.on_timer(now, key);
                        self.apply(shard, effects, now);
                    }
                }
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        if self.shards.is_empty() && self.loading.is_empty() {
            if let Err(error) = self.create_offsets_topic().await {
                tracing::warn!(%error, "cannot create {OFFSETS_TOPIC}");
                return; // dropping the reply answers COORDINATOR_NOT_AVAILABLE
            }
            self.load_shards();
        }
        match self.loading.get_mut(&command.shard) {
            // Answered once the shard is loaded, as if it had arrived then.
            Some(parked) => parked.push(command),
            None => self.handle(command),
        }
    }

    fn handle(&mut self, command: Command) {
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
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Some(what) = describe_request(&command.request) {
                tracing::debug!(request_id, client_id = %command.meta.client_id, "group request {what}");
            }
        }
        self.pending
            .insert(request_id, (command.shard, command.reply));
        let now = now_ms();
        let effects = shard.core.handle_with_meta(
            now,
            request_id,
            command.version,
            command.request,
            &command.meta,
            &partition_exists,
        );
        self.apply(command.shard, effects, now);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Loaded {
                shard,
                partition,
                replayed,
            } => self.on_loaded(shard, partition, replayed),
            Event::Written {
                shard,
                generation,
                result,
            } => {
                let Some(s) = self.shards.get_mut(&shard) else {
                    return;
                };
                if s.generation != generation {
                    return;
                }
                let responses = s.writing.take().unwrap_or_default();
                match result {
                    Ok(()) => {
                        self.respond(responses);
                        self.write_next(shard);
                    }
                    Err(error) => self.on_write_failure(shard, error, responses),
                }
            }
        }
    }

    /// Arms the effects' timers now (the core's state already moved on) and queues their
    /// records and responses behind the shard's earlier writes. `now` is what the core
    /// was given: deadlines are relative to it.
    fn apply(&mut self, shard: i32, effects: Effects, now: i64) {
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        let Effects {
            records,
            producer,
            marker,
            responses,
            timers,
        } = effects;
        // Compile shim until the generic runtime lands: this runtime routes no
        // TxnOffsetCommit and completes no transaction, so neither is ever set.
        debug_assert!(producer.is_none() && marker.is_none());
        for (key, deadline_ms) in timers {
            let slot = (shard, key);
            if let Some(existing) = self.timer_keys.remove(&slot) {
                self.timers.remove(&existing);
            }
            if let Some(deadline_ms) = deadline_ms {
                let delay = Duration::from_millis(deadline_ms.saturating_sub(now).max(0) as u64);
                let (shard, key) = slot.clone();
                let key = self
                    .timers
                    .insert_at((shard, key, deadline_ms), Instant::now() + delay);
                self.timer_keys.insert(slot, key);
            }
        }
        if records.is_empty() && responses.is_empty() {
            return;
        }
        s.queue.push_back(Effects {
            records,
            responses,
            timers: Vec::new(),
            ..Effects::default()
        });
        self.write_next(shard);
    }

    /// Starts the shard's next write unless one is in flight, answering record-less
    /// effects on the way. The append runs on the partition's blocking drainer; its
    /// completion comes back as [`Event::Written`].
    fn write_next(&mut self, shard: i32) {
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        while s.writing.is_none() {
            let Some(next) = s.queue.pop_front() else {
                return;
            };
            if next.records.is_empty() {
                let mut ready = Vec::new();
                for (request_id, response) in next.responses {
                    if let Some((_, reply)) = self.pending.remove(&request_id) {
                        ready.push((request_id, reply, response));
                    }
                }
                for (request_id, reply, response) in ready {
                    log_response(request_id, &response);
                    // The client may have gone away; nothing to do then.
                    let _ = reply.send(response);
                }
                continue;
            }
            let bytes = match encode_records(&next.records) {
                Ok(bytes) => bytes,
                Err(error) => {
                    self.on_write_failure(shard, error, next.responses);
                    return;
                }
            };
            let appended = s.partition.submit_append(bytes);
            s.writing = Some(next.responses);
            let (events, generation) = (self.events.clone(), s.generation);
            let partition = s.partition.clone();
            tokio::spawn(async move {
                // Answered once committed (the in-sync replicas have it), as Kafka's
                // coordinator runtime waits for the high watermark: an acknowledged
                // commit survives the coordinator's failover.
                let result = match appended.await {
                    Ok(appended) => partition
                        .wait_for_acks(appended.next_offset, COMMIT_TIMEOUT)
                        .await
                        .map_err(|code| PartitionError {
                            code,
                            message: "the group records were not committed in time".to_string(),
                        }),
                    Err(error) => Err(error.error),
                };
                let _ = events.send(Event::Written {
                    shard,
                    generation,
                    result,
                });
            });
        }
    }

    fn respond(&mut self, responses: Vec<(RequestId, ResponseKind)>) {
        for (request_id, response) in responses {
            if let Some((_, reply)) = self.pending.remove(&request_id) {
                log_response(request_id, &response);
                // The client may have gone away; nothing to do then.
                let _ = reply.send(response);
            }
        }
    }

    async fn create_offsets_topic(&self) -> Result<(), String> {
        let image = self.metadata.image();
        if !image.topics.contains_key(OFFSETS_TOPIC) {
            let request = offsets_topic_request(&self.config, &image);
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
        self.partitions
            .reconcile_blocking(self.metadata.image())
            .await;
        Ok(())
    }

    /// Coordinators follow shard leadership (Kafka's onElection / onResignation): a shard
    /// this node no longer leads is unloaded (its waiting requests are dropped, answered
    /// COORDINATOR_NOT_AVAILABLE, and clients find the new coordinator); a shard it now
    /// leads is loaded from its log, which as a follower it replicated.
    fn follow_leadership(&mut self) {
        let image = self.metadata.image();
        let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        let node_id = self.config.node_id;
        let resigned: Vec<i32> = self
            .shards
            .keys()
            .copied()
            .filter(|&shard| {
                topic
                    .partitions
                    .iter()
                    .find(|p| p.partition == shard)
                    .is_none_or(|p| p.leader != node_id)
            })
            .collect();
        for shard in resigned {
            tracing::info!(
                shard,
                "group coordinator shard unloaded: no longer its leader"
            );
            self.shards.remove(&shard);
            self.timer_keys.retain(|(timer_shard, _), key| {
                if *timer_shard == shard {
                    self.timers.remove(key);
                    false
                } else {
                    true
                }
            });
            self.pending
                .retain(|_, (pending_shard, _)| *pending_shard != shard);
        }
        // Only once the runtime is in use (the offsets topic exists and loads began).
        if !self.shards.is_empty() || !self.loading.is_empty() || self.started {
            self.load_shards();
        }
    }

    /// Starts replaying every local shard of the offsets topic that is neither loaded nor
    /// loading.
    fn load_shards(&mut self) {
        self.started = true;
        let image = self.metadata.image();
        let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        for assignment in &topic.partitions {
            let shard = assignment.partition;
            if assignment.leader != self.config.node_id
                || self.shards.contains_key(&shard)
                || self.loading.contains_key(&shard)
            {
                continue;
            }
            let Some(partition) = self.partitions.get(topic.topic_id, shard) else {
                tracing::error!(
                    shard,
                    "offsets partition is not online; its groups are unavailable"
                );
                continue;
            };
            self.start_load(shard, partition);
        }
    }

    /// Replays the shard's partition into a fresh core on a blocking thread; the result
    /// comes back as [`Event::Loaded`]. Requests for the shard wait meanwhile.
    fn start_load(&mut self, shard: i32, partition: Arc<Partition>) {
        self.loading.insert(shard, Vec::new());
        let (config, events) = (self.config.group.clone(), self.events.clone());
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let replayed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut core = GroupCoordinator::new(config);
                replay_partition(&partition, &mut core).map(|count| (core, count))
            }))
            .unwrap_or_else(|_| Err("replay panicked".to_string()));
            if let Ok((_, records)) = &replayed {
                tracing::info!(
                    shard,
                    records,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "group coordinator shard loaded"
                );
            }
            let _ = events.send(Event::Loaded {
                shard,
                partition,
                replayed,
            });
        });
    }

    /// A replay finished: install the core and start its timers, then handle the
    /// requests that waited for it (or drop them if the replay failed).
    fn on_loaded(
        &mut self,
        shard: i32,
        partition: Arc<Partition>,
        replayed: Result<(GroupCoordinator, usize), String>,
    ) {
        let Some(parked) = self.loading.remove(&shard) else {
            return;
        };
        let mut core = match replayed {
            Ok((core, _)) => core,
            // An offline log directory has its own ERROR line and stops the broker.
            Err(error) if partition.is_offline() => {
                tracing::warn!(shard, %error, "cannot load offsets partition: its log directory is offline");
                return;
            }
            Err(error) => {
                tracing::error!(shard, %error, "cannot load offsets partition; its groups are unavailable");
                return;
            }
        };
        let now = now_ms();
        let effects = core.loaded(now);
        self.next_generation += 1;
        self.shards.insert(
            shard,
            Shard {
                core,
                partition,
                generation: self.next_generation,
                queue: VecDeque::new(),
                writing: None,
            },
        );
        self.apply(shard, effects, now);
        for command in parked {
            self.handle(command);
        }
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
        // Warn only: a storage error has already taken the log directory offline with
        // its own ERROR line.
        tracing::warn!(shard, code = error.code, message = %error.message, "cannot persist group records; reloading the shard");
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
            // An offline log directory stops the broker: a reload could only fail too.
            if !old.partition.is_offline() {
                self.start_load(shard, old.partition);
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

/// Logs the answer to a membership request at debug level.
fn log_response(request_id: RequestId, response: &ResponseKind) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let what = match response {
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
        _ => return,
    };
    tracing::debug!(request_id, "group response {what}");
}

/// Reads a shard's partition from its start and replays every record; returns how many.
fn replay_partition(partition: &Partition, core: &mut GroupCoordinator) -> Result<usize, String> {
    let (mut offset, end) = partition.offsets();
    let mut count = 0usize;
    while offset < end {
        let read = partition
            .read(offset, LOAD_READ_BYTES, true, Reader::Local)
            .map_err(|e| e.message)?;
        if read.records.is_empty() {
            break;
        }
        let batches_end = batches_end_offset(&read.records);
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
        // Compaction leaves gaps, and empty batches: go on after the last batch read.
        offset = offset.max(batches_end);
        if offset == before {
            return Err(format!("no progress replaying at offset {offset}"));
        }
    }
    Ok(count)
}

/// One past the last offset of the whole batches in `bytes` (0 if none parse).
fn batches_end_offset(mut bytes: &[u8]) -> i64 {
    let mut end = 0;
    while let Ok(header) = BatchHeader::parse(bytes) {
        if header.total_size() > bytes.len() {
            break;
        }
        end = header.last_offset() + 1;
        bytes = &bytes[header.total_size()..];
    }
    end
}

/// Encodes the records as one uncompressed batch for the shard's partition.
fn encode_records(records: &[super::Record]) -> Result<Bytes, PartitionError> {
    let timestamp_ms = now_ms();
    let plain: Vec<PlainRecord> = records
        .iter()
        .map(|r| PlainRecord {
            key: Some(r.key.clone()),
            value: r.value.clone(),
            timestamp_ms,
        })
        .collect();
    encode_uncompressed(&plain, ProducerIdentity::NONE).map_err(|e| PartitionError {
        code: error_code::KAFKA_STORAGE_ERROR,
        message: e.to_string(),
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

    use super::*;
    use crate::group::records::{offset_key, offset_value, OffsetValue};
    use crate::log::cleaner::Cleaner;
    use crate::metadata::{MetadataImage, PartitionRecord, TopicImage};

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
