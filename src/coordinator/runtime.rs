//! The runtime around the pure shard cores of one coordinator type: one task owns every
//! shard of the type's internal topic on this broker, the wall clock and the timers;
//! file IO is handed to blocking threads and its completions come back to the task as
//! events, so a slow disk never stops the task from answering (heartbeats of other
//! groups keep flowing).
//!
//! A request is routed to its shard and applied to the core at once; the core's
//! [`Effects`] then wait in the shard's queue: their records are appended (as one batch,
//! one write in flight per shard) to the shard's partition and committed before their
//! responses are sent and their follow-up work starts, so an acknowledged change is in
//! the log. Later requests proceed on the core's in-memory state, but their responses
//! wait behind the earlier writes (as in Kafka's coordinator runtime). A failed write
//! reloads the shard from its log. At start, and when the topic is first created (on
//! the type's first request, as Kafka does), every shard this node leads replays its
//! partition into a fresh core on a blocking thread; requests for a shard wait until it
//! is loaded.
//!
//! Timers fire on the monotonic clock; a fired timer is treated as due even if the wall
//! clock stepped back meanwhile (see [`timer_now_ms`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::records::RecordBatchDecoder;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};

use super::{Call, Effects, Record, ReplayRecord, RequestId, RequestMeta, Sender, Shard};
use crate::config::BrokerConfig;
use crate::log::batch::{
    encode_transactional, encode_uncompressed, BatchHeader, PlainRecord, ProducerIdentity,
};
use crate::metadata::{MetadataQuorum, TopicDefaults};
use crate::partition::{
    error_code, now_ms, AppendError, AppendResult, Partition, PartitionError, PartitionManager,
    Reader,
};

/// Requests queued for a coordinator task before callers wait for room.
const COMMAND_QUEUE_BOUND: usize = 4096;
/// Bytes read per step while replaying a shard at load.
const LOAD_READ_BYTES: usize = 1 << 20;
/// How long a coordinator write may wait for the in-sync replicas (Kafka's
/// `offsets.commit.timeout.ms` default); then the shard reloads and clients retry.
const COMMIT_TIMEOUT: Duration = Duration::from_millis(5_000);

#[derive(Debug, Error)]
pub enum CoordinatorError {
    /// The shard is not loaded (topic unavailable, load or write failure): clients get
    /// COORDINATOR_NOT_AVAILABLE and retry.
    #[error("coordinator not available: {0}")]
    NotAvailable(String),
}

struct Command<S: Shard> {
    shard: i32,
    call: Call<S::Request>,
    /// None: a follow-up's completion, which nobody waits for.
    reply: Option<oneshot::Sender<ResponseKind>>,
}

/// A cloneable handle for the request handlers.
pub struct CoordinatorRuntime<S: Shard> {
    commands: mpsc::Sender<Command<S>>,
    num_shards: i32,
}

impl<S: Shard> Clone for CoordinatorRuntime<S> {
    fn clone(&self) -> Self {
        CoordinatorRuntime {
            commands: self.commands.clone(),
            num_shards: self.num_shards,
        }
    }
}

impl<S: Shard> CoordinatorRuntime<S> {
    /// Spawns the coordinator task; it loads existing shards at once and stops when
    /// `stop` is cancelled. `sender` starts the shards' follow-up work.
    pub fn start(
        config: BrokerConfig,
        metadata: MetadataQuorum,
        partitions: Arc<PartitionManager>,
        sender: Option<Sender<S>>,
        stop: CancellationToken,
    ) -> (CoordinatorRuntime<S>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE_BOUND);
        let (events, events_rx) = mpsc::unbounded_channel();
        let num_shards = S::num_shards(&config);
        let task = Task::<S> {
            config,
            metadata,
            partitions,
            sender,
            commands: tx.clone(),
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
            CoordinatorRuntime {
                commands: tx,
                num_shards,
            },
            handle,
        )
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
        request: S::Request,
        meta: RequestMeta,
    ) -> Result<ResponseKind, CoordinatorError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(Command {
                shard,
                call: Call {
                    version,
                    request,
                    meta,
                },
                reply: Some(reply),
            })
            .await
            .map_err(|_| CoordinatorError::NotAvailable("coordinator stopped".to_string()))?;
        response.await.map_err(|_| {
            CoordinatorError::NotAvailable("request dropped by the coordinator".to_string())
        })
    }
}

struct LoadedShard<S: Shard> {
    core: S,
    partition: Arc<Partition>,
    /// Tells this load of the shard from a later one: completions of an unloaded shard's
    /// writes are ignored.
    generation: u64,
    /// Effects waiting for this shard's earlier write, in order (responses without records
    /// too: they may show state that is not yet written).
    queue: VecDeque<Effects<S>>,
    /// The responses and follow-ups of the write being appended, released once it is
    /// committed.
    writing: Option<Effects<S>>,
}

/// Completions of the blocking work the task hands off, back to its loop.
enum Event<S: Shard> {
    Loaded {
        shard: i32,
        partition: Arc<Partition>,
        replayed: Result<(S, usize), String>,
    },
    Written {
        shard: i32,
        generation: u64,
        result: Result<(), PartitionError>,
    },
}

struct Task<S: Shard> {
    config: BrokerConfig,
    metadata: MetadataQuorum,
    partitions: Arc<PartitionManager>,
    sender: Option<Sender<S>>,
    /// For follow-ups' completions, which come back as commands.
    commands: mpsc::Sender<Command<S>>,
    shards: HashMap<i32, LoadedShard<S>>,
    /// Shards being replayed, with the commands that came for them meanwhile.
    loading: HashMap<i32, Vec<Command<S>>>,
    next_generation: u64,
    /// Shards have been loaded at least once (so later leaderships load theirs too).
    started: bool,
    /// Unbounded, but holds at most one load and one write completion per shard.
    events: mpsc::UnboundedSender<Event<S>>,
    /// Each timer's wall-clock deadline rides along: a fired timer is due by the
    /// monotonic clock whatever the wall clock did meanwhile.
    timers: DelayQueue<(i32, S::Timer, i64)>,
    timer_keys: HashMap<(i32, S::Timer), delay_queue::Key>,
    /// Requests a core has not answered yet, with their shard (no reply: a follow-up).
    pending: HashMap<RequestId, (i32, Option<oneshot::Sender<ResponseKind>>)>,
    next_request_id: RequestId,
}

/// The `now_ms` for the core when a timer armed for `deadline_ms` fires: the timer is due
/// (it fires on the monotonic clock), so "now" is at least its deadline even if the wall
/// clock stepped back meanwhile (the core would ignore a fire it thinks is early, and
/// nothing would re-arm it).
pub(crate) fn timer_now_ms(wall_now_ms: i64, deadline_ms: i64) -> i64 {
    wall_now_ms.max(deadline_ms)
}

impl<S: Shard> Task<S> {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command<S>>,
        mut events: mpsc::UnboundedReceiver<Event<S>>,
        stop: CancellationToken,
    ) {
        if self.metadata.image().topics.contains_key(S::TOPIC) {
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
                    let (shard, timer, deadline_ms) = expired.into_inner();
                    self.timer_keys.remove(&(shard, timer.clone()));
                    if let Some(s) = self.shards.get_mut(&shard) {
                        tracing::debug!(shard, ?timer, "{} timer fired", S::KIND);
                        let now = timer_now_ms(now_ms(), deadline_ms);
                        let effects = s.core.on_timer(now, timer);
                        self.apply(shard, effects, now);
                    }
                }
            }
        }
    }

    async fn on_command(&mut self, command: Command<S>) {
        if self.shards.is_empty() && self.loading.is_empty() {
            if let Err(error) = self.create_topic().await {
                tracing::warn!(%error, "cannot create {}", S::TOPIC);
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

    fn handle(&mut self, command: Command<S>) {
        let image = self.metadata.image();
        let Some(shard) = self.shards.get_mut(&command.shard) else {
            return;
        };
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Some(what) = S::describe(&command.call.request) {
                tracing::debug!(request_id, client_id = %command.call.meta.client_id, "{} request {what}", S::KIND);
            }
        }
        self.pending
            .insert(request_id, (command.shard, command.reply));
        let now = now_ms();
        let effects = shard.core.handle(now, request_id, command.call, &image);
        self.apply(command.shard, effects, now);
    }

    fn on_event(&mut self, event: Event<S>) {
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
                let written = s.writing.take().unwrap_or_default();
                match result {
                    Ok(()) => {
                        self.release(shard, written);
                        self.write_next(shard);
                    }
                    Err(error) => self.on_write_failure(shard, error, written.responses),
                }
            }
        }
    }

    /// Arms the effects' timers now (the core's state already moved on) and queues their
    /// records, responses and follow-ups behind the shard's earlier writes. `now` is what
    /// the core was given: deadlines are relative to it.
    fn apply(&mut self, shard: i32, effects: Effects<S>, now: i64) {
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        let Effects {
            records,
            producer,
            marker,
            responses,
            timers,
            sends,
        } = effects;
        for (timer, deadline_ms) in timers {
            let slot = (shard, timer);
            if let Some(existing) = self.timer_keys.remove(&slot) {
                self.timers.remove(&existing);
            }
            if let Some(deadline_ms) = deadline_ms {
                let delay = Duration::from_millis(deadline_ms.saturating_sub(now).max(0) as u64);
                let (shard, timer) = slot.clone();
                let key = self
                    .timers
                    .insert_at((shard, timer, deadline_ms), Instant::now() + delay);
                self.timer_keys.insert(slot, key);
            }
        }
        if records.is_empty() && marker.is_none() && responses.is_empty() && sends.is_empty() {
            return;
        }
        s.queue.push_back(Effects {
            records,
            producer,
            marker,
            responses,
            timers: Vec::new(),
            sends,
        });
        self.write_next(shard);
    }

    /// Starts the shard's next write unless one is in flight, releasing record-less
    /// effects on the way. The append runs on the partition's blocking drainer; its
    /// completion comes back as [`Event::Written`].
    fn write_next(&mut self, shard: i32) {
        loop {
            let Some(s) = self.shards.get_mut(&shard) else {
                return;
            };
            if s.writing.is_some() {
                return;
            }
            let Some(next) = s.queue.pop_front() else {
                return;
            };
            let appended: BoxFuture<'static, Result<AppendResult, AppendError>> =
                match (next.marker, next.records.is_empty()) {
                    (Some(marker), _) => Box::pin(s.partition.submit_txn_marker(
                        marker.producer_id,
                        marker.producer_epoch,
                        marker.coordinator_epoch,
                        marker.commit,
                    )),
                    (None, true) => {
                        self.release(shard, next);
                        continue;
                    }
                    (None, false) => match encode_records(&next.records, next.producer) {
                        Ok(bytes) if next.producer.is_some() => {
                            Box::pin(s.partition.submit_coordinator_append(bytes))
                        }
                        Ok(bytes) => Box::pin(s.partition.submit_append(bytes)),
                        Err(error) => {
                            self.on_write_failure(shard, error, next.responses);
                            return;
                        }
                    },
                };
            s.writing = Some(Effects {
                records: Vec::new(),
                ..next
            });
            let (events, generation) = (self.events.clone(), s.generation);
            let partition = s.partition.clone();
            tokio::spawn(async move {
                // Answered once committed (the in-sync replicas have it), as Kafka's
                // coordinator runtime waits for the high watermark: an acknowledged
                // change survives the coordinator's failover.
                let result = match appended.await {
                    Ok(appended) => partition
                        .wait_for_acks(appended.next_offset, COMMIT_TIMEOUT)
                        .await
                        .map_err(|code| PartitionError {
                            code,
                            message: "the coordinator records were not committed in time"
                                .to_string(),
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

    /// Sends the responses of written effects and starts their follow-ups.
    fn release(&mut self, shard: i32, written: Effects<S>) {
        for (request_id, response) in written.responses {
            if let Some((_, Some(reply))) = self.pending.remove(&request_id) {
                if let Some(what) = S::describe_response(&response) {
                    tracing::debug!(request_id, "{} response {what}", S::KIND);
                }
                // The client may have gone away; nothing to do then.
                let _ = reply.send(response);
            }
        }
        let Some(sender) = &self.sender else {
            return;
        };
        for send in written.sends {
            let work = sender(shard, send);
            let commands = self.commands.clone();
            tokio::spawn(async move {
                if let Some(request) = work.await {
                    let _ = commands
                        .send(Command {
                            shard,
                            call: Call {
                                version: 0,
                                request,
                                meta: RequestMeta::default(),
                            },
                            reply: None,
                        })
                        .await;
                }
            });
        }
    }

    async fn create_topic(&self) -> Result<(), String> {
        let image = self.metadata.image();
        if !image.topics.contains_key(S::TOPIC) {
            let request = S::topic_request(&self.config, &image);
            let defaults = TopicDefaults {
                num_partitions: request.num_partitions,
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
        let Some(topic) = image.topics.get(S::TOPIC) else {
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
                "{} coordinator shard unloaded: no longer its leader",
                S::KIND
            );
            self.unload(shard);
        }
        // Only once the runtime is in use (the topic exists and loads began).
        if !self.shards.is_empty() || !self.loading.is_empty() || self.started {
            self.load_shards();
        }
    }

    /// Starts replaying every local shard that is neither loaded nor loading.
    fn load_shards(&mut self) {
        self.started = true;
        let image = self.metadata.image();
        let Some(topic) = image.topics.get(S::TOPIC) else {
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
                    "{} partition is not online; its {} coordinator is unavailable",
                    S::TOPIC,
                    S::KIND
                );
                continue;
            };
            self.start_load(shard, partition, assignment.leader_epoch);
        }
    }

    /// Replays the shard's partition into a fresh core on a blocking thread; the result
    /// comes back as [`Event::Loaded`]. Requests for the shard wait meanwhile.
    fn start_load(&mut self, shard: i32, partition: Arc<Partition>, leader_epoch: i32) {
        self.loading.insert(shard, Vec::new());
        let (config, events) = (self.config.clone(), self.events.clone());
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let replayed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut core = S::new_core(&config, leader_epoch);
                replay_partition(&partition, &mut core).map(|count| (core, count))
            }))
            .unwrap_or_else(|_| Err("replay panicked".to_string()));
            if let Ok((_, records)) = &replayed {
                tracing::info!(
                    shard,
                    records,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "{} coordinator shard loaded",
                    S::KIND
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
        replayed: Result<(S, usize), String>,
    ) {
        let Some(parked) = self.loading.remove(&shard) else {
            return;
        };
        let mut core = match replayed {
            Ok((core, _)) => core,
            // An offline log directory has its own ERROR line and stops the broker.
            Err(error) if partition.is_offline() => {
                tracing::warn!(shard, %error, "cannot load {} partition: its log directory is offline", S::TOPIC);
                return;
            }
            Err(error) => {
                tracing::error!(shard, %error, "cannot load {} partition; its {} coordinator is unavailable", S::TOPIC, S::KIND);
                return;
            }
        };
        let now = now_ms();
        let effects = core.loaded(now);
        self.next_generation += 1;
        self.shards.insert(
            shard,
            LoadedShard {
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
    /// COORDINATOR_NOT_AVAILABLE and retries), except those the shard type answers
    /// otherwise ([`Shard::on_write_failure`]).
    fn on_write_failure(
        &mut self,
        shard: i32,
        error: PartitionError,
        responses: Vec<(RequestId, ResponseKind)>,
    ) {
        // Warn only: a storage error has already taken the log directory offline with
        // its own ERROR line.
        tracing::warn!(shard, code = error.code, message = %error.message, "cannot persist {} records; reloading the shard", S::KIND);
        let mut answers = Vec::new();
        for (request_id, response) in responses {
            if let Some(answer) = S::on_write_failure(error.code, response) {
                if let Some((_, Some(reply))) = self.pending.remove(&request_id) {
                    answers.push((reply, answer));
                }
            }
        }
        if let Some(old) = self.unload(shard) {
            // An offline log directory stops the broker: a reload could only fail too.
            if !old.partition.is_offline() {
                let leader_epoch = old.partition.leader_epoch();
                self.start_load(shard, old.partition, leader_epoch);
            }
        }
        for (reply, response) in answers {
            let _ = reply.send(response);
        }
    }

    /// Removes a shard's core with its timers and the requests parked in it (dropping
    /// their replies answers them COORDINATOR_NOT_AVAILABLE).
    fn unload(&mut self, shard: i32) -> Option<LoadedShard<S>> {
        self.pending.retain(|_, (owner, _)| *owner != shard);
        let timers: Vec<(i32, S::Timer)> = self
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
pub(crate) fn replay_partition<S: Shard>(
    partition: &Partition,
    core: &mut S,
) -> Result<usize, String> {
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
                core.replay(&ReplayRecord {
                    offset: record.offset,
                    producer_id: record.producer_id,
                    producer_epoch: record.producer_epoch,
                    transactional: record.transactional,
                    control: record.control,
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                })?;
                count += 1;
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

/// Encodes the records as one uncompressed batch for the shard's partition (a
/// transactional one of `producer` when set).
fn encode_records(
    records: &[Record],
    producer: Option<(i64, i16)>,
) -> Result<Bytes, PartitionError> {
    let timestamp_ms = now_ms();
    let plain: Vec<PlainRecord> = records
        .iter()
        .map(|r| PlainRecord {
            key: Some(r.key.clone()),
            value: r.value.clone(),
            timestamp_ms,
        })
        .collect();
    let encoded = match producer {
        None => encode_uncompressed(&plain, ProducerIdentity::NONE),
        Some((producer_id, producer_epoch)) => encode_transactional(
            &plain,
            ProducerIdentity {
                producer_id,
                producer_epoch,
                base_sequence: 0,
            },
        ),
    };
    encoded.map_err(|e| PartitionError {
        code: error_code::KAFKA_STORAGE_ERROR,
        message: e.to_string(),
    })
}
