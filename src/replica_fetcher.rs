//! Followers copy their leaders' logs the Kafka way: one fetcher task per leader broker
//! sends Fetch requests naming this node as the replica (v12: `replica_id`, fetch offset
//! = the local log end, `last_fetched_epoch` = the epoch of the last local batch), and
//! appends what comes back as it is stored on the leader. The leader learns each
//! follower's position from those fetch offsets and advances the high watermark; the
//! follower takes the leader's high watermark (capped at its own log end) from each
//! answer. A diverging epoch in the answer (KIP-320) means the local log holds records
//! the leader does not: the follower truncates ([`truncation_offset`]) and fetches again.
//!
//! Which partitions each task fetches follows the metadata image
//! ([`ReplicaFetchers::update`], after every reconcile). Appends and truncations write
//! files, so they run on blocking threads; the task itself only does network IO.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ReplicaFetchConfig;
use crate::inter_broker::BrokerConnection;
use crate::metadata::MetadataImage;
use crate::partition::{Partition, PartitionManager};
use crate::replication::throttle::{lists_replica, ReplicationQuota, FOLLOWER_THROTTLED_REPLICAS};

/// The Fetch version followers send: topics by name, `replica_id` in the request body,
/// diverging epochs in the answer (v12, Kafka 2.7+).
const REPLICA_FETCH_VERSION: i16 = 12;
const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Room for the answer's framing and partition headers beyond the record bytes.
const RESPONSE_OVERHEAD_BYTES: usize = 1 << 20;

/// A partition this node follows, as of the last image.
#[derive(Clone)]
struct Followed {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Out of the ISR and listed in the topic's `follower.replication.throttled.replicas`
    /// for this node: fetched within `follower.replication.throttled.rate`.
    throttled: bool,
}

/// What one fetcher task needs: where its leader listens and what to fetch from it.
#[derive(Clone)]
struct FetchAssignment {
    leader_address: Option<String>,
    partitions: Arc<BTreeMap<(String, i32), Followed>>,
}

struct FetcherTask {
    assignment: watch::Sender<FetchAssignment>,
    stop: CancellationToken,
}

/// The fetcher tasks of this node, one per leader it follows.
pub struct ReplicaFetchers {
    node_id: i32,
    config: ReplicaFetchConfig,
    tasks: Mutex<HashMap<i32, FetcherTask>>,
    /// Stops every task at shutdown.
    stop: CancellationToken,
    /// `follower.replication.throttled.rate`, shared by every task.
    throttle: Arc<ReplicationQuota>,
}

impl ReplicaFetchers {
    pub fn new(node_id: i32, config: ReplicaFetchConfig, stop: CancellationToken) -> Self {
        ReplicaFetchers {
            node_id,
            config,
            tasks: Mutex::new(HashMap::new()),
            stop,
            throttle: Arc::new(ReplicationQuota::new(std::time::Instant::now())),
        }
    }

    /// `follower.replication.throttled.rate` as the effective config has it now.
    pub fn set_throttle_rate(&self, rate_bytes_per_second: i64) {
        self.throttle.set_rate(rate_bytes_per_second);
    }

    /// Points the fetcher tasks at the image's leaders: a task per leader this node
    /// follows a partition of, each given exactly those partitions; tasks without
    /// partitions stop. Call it after the partitions reconciled with `image`.
    pub fn update(&self, image: &MetadataImage, partitions: &PartitionManager) {
        let mut wanted: BTreeMap<i32, BTreeMap<(String, i32), Followed>> = BTreeMap::new();
        for topic in image.topics.values() {
            for record in &topic.partitions {
                let follows = record.leader >= 0
                    && record.leader != self.node_id
                    && record.replicas.contains(&self.node_id);
                if !follows {
                    continue;
                }
                let Some(partition) = partitions.get(topic.topic_id, record.partition) else {
                    continue;
                };
                let throttled = !record.isr.contains(&self.node_id)
                    && topic
                        .configs
                        .get(FOLLOWER_THROTTLED_REPLICAS)
                        .is_some_and(|v| lists_replica(v, record.partition, self.node_id));
                wanted.entry(record.leader).or_default().insert(
                    (topic.name.clone(), record.partition),
                    Followed {
                        partition,
                        leader_epoch: record.leader_epoch,
                        throttled,
                    },
                );
            }
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|leader, task| {
            let keep = wanted.contains_key(leader);
            if !keep {
                task.stop.cancel();
            }
            keep
        });
        for (leader, followed) in wanted {
            let assignment = FetchAssignment {
                leader_address: image
                    .brokers
                    .get(&leader)
                    .map(|b| format!("{}:{}", b.host, b.port)),
                partitions: Arc::new(followed),
            };
            match tasks.get(&leader) {
                Some(task) => {
                    task.assignment.send_replace(assignment);
                }
                None => {
                    let (sender, receiver) = watch::channel(assignment);
                    let stop = self.stop.child_token();
                    tokio::spawn(fetch_from_leader(
                        self.node_id,
                        leader,
                        self.config.clone(),
                        self.throttle.clone(),
                        receiver,
                        stop.clone(),
                    ));
                    tasks.insert(
                        leader,
                        FetcherTask {
                            assignment: sender,
                            stop,
                        },
                    );
                }
            }
        }
    }
}

/// One leader's fetcher: (re)connects, fetches, applies the answers, backs off on errors.
async fn fetch_from_leader(
    node_id: i32,
    leader: i32,
    config: ReplicaFetchConfig,
    throttle: Arc<ReplicationQuota>,
    mut assignment: watch::Receiver<FetchAssignment>,
    stop: CancellationToken,
) {
    let backoff = Duration::from_millis(config.backoff_ms.max(1));
    let mut connection: Option<BrokerConnection> = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let current = assignment.borrow_and_update().clone();
        let result = match (&mut connection, &current.leader_address) {
            (_, None) => Err(format!("leader {leader} has no registered address")),
            (Some(conn), Some(address)) if conn.address() == address => {
                fetch_once(node_id, &config, &throttle, conn, &current, &stop).await
            }
            (_, Some(address)) => {
                match BrokerConnection::connect(
                    address,
                    "millrace-replica-fetcher",
                    config.socket_timeout_ms,
                )
                .await
                {
                    Ok(conn) => {
                        connection = Some(conn);
                        continue;
                    }
                    Err(error) => Err(error),
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(leader, %error, "replica fetch failed; backing off");
            connection = None;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
                _ = assignment.changed() => {}
            }
        }
    }
}

/// One Fetch round trip and its answers applied. Partition-level errors back off only
/// that partition's progress (the next round asks again); connection errors go up.
async fn fetch_once(
    node_id: i32,
    config: &ReplicaFetchConfig,
    throttle: &ReplicationQuota,
    connection: &mut BrokerConnection,
    assignment: &FetchAssignment,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    // Over the rate, throttled partitions sit this round out (Kafka's
    // `shouldFollowerThrottle`).
    let hold_throttled = throttle.exceeded(std::time::Instant::now());
    for ((topic, index), followed) in assignment.partitions.iter() {
        if followed.throttled && hold_throttled {
            continue;
        }
        let position = followed.partition.follower_position();
        topics.entry(topic).or_default().push(
            FetchPartition::default()
                .with_partition(*index)
                .with_current_leader_epoch(followed.leader_epoch)
                .with_fetch_offset(position.log_end_offset)
                .with_last_fetched_epoch(position.last_fetched_epoch)
                .with_log_start_offset(position.log_start_offset)
                .with_partition_max_bytes(config.max_bytes),
        );
    }
    if topics.is_empty() {
        if hold_throttled && !assignment.partitions.is_empty() {
            // Every partition waits for the throttle: as Kafka's fetcher, back off.
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(config.backoff_ms.max(1))) => {}
            }
            return Ok(());
        }
        return Err("nothing to fetch".to_string());
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(node_id))
        .with_max_wait_ms(config.wait_max_ms)
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.response_max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let max_response_bytes = config.response_max_bytes.max(0) as usize + RESPONSE_OVERHEAD_BYTES;
    let response = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        response = connection.send(
            &request,
            REPLICA_FETCH_VERSION,
            max_response_bytes,
            // replica.socket.timeout.ms plus the time the leader may hold the fetch.
            Duration::from_millis(config.socket_timeout_ms.max(1) + config.wait_max_ms.max(0) as u64),
        ) => response?,
    };
    if response.error_code != NONE {
        return Err(format!("fetch error {}", response.error_code));
    }
    let mut answers = Vec::new();
    for topic in response.responses {
        for data in topic.partitions {
            let key = (topic.topic.0.to_string(), data.partition_index);
            if let Some(followed) = assignment.partitions.get(&key) {
                if followed.throttled {
                    let bytes = data.records.as_ref().map_or(0, |r| r.len());
                    throttle.record(bytes, std::time::Instant::now());
                }
                answers.push((followed.clone(), data));
            }
        }
    }
    let applied = tokio::task::spawn_blocking(move || {
        let mut progress = false;
        for (followed, data) in answers {
            match apply_answer(&followed, data) {
                Ok(moved) => progress |= moved,
                Err(error) => tracing::debug!(
                    topic = %followed.partition.topic,
                    partition = followed.partition.index,
                    %error,
                    "replica fetch answer not applied"
                ),
            }
        }
        progress
    })
    .await
    .map_err(|e| format!("applying the fetch answer failed: {e}"))?;
    if !applied {
        // Nothing moved (errors, or the leader held the fetch for nothing): do not spin
        // on a leader that answers at once with an error.
        let pause = Duration::from_millis(config.backoff_ms.clamp(1, 100));
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    Ok(())
}

/// Applies one partition's answer on the follower: truncation on a diverging epoch or an
/// out-of-range offset, else the records appended and the high watermark taken.
/// Returns whether the local log moved. Blocking.
fn apply_answer(followed: &Followed, data: PartitionData) -> Result<bool, String> {
    let partition = &followed.partition;
    match data.error_code {
        NONE => {}
        OFFSET_OUT_OF_RANGE => {
            // Our log end is outside the leader's log: behind its start (retention ran)
            // or, without epochs to compare, past its end.
            let position = partition.follower_position();
            let restart_at = if position.log_end_offset < data.log_start_offset {
                data.log_start_offset
            } else {
                data.high_watermark.max(0)
            };
            partition
                .follower_restart_at(restart_at, position.log_end_offset < data.log_start_offset)
                .map_err(|e| e.message)?;
            return Ok(true);
        }
        code => return Err(format!("error {code}")),
    }
    let diverging = &data.diverging_epoch;
    if diverging.epoch >= 0 || diverging.end_offset >= 0 {
        let target = partition.truncation_offset(diverging.epoch, diverging.end_offset);
        partition
            .truncate_as_follower(target)
            .map_err(|e| e.message)?;
        return Ok(true);
    }
    let records = data.records.unwrap_or_default();
    let appended = if records.is_empty() {
        false
    } else {
        partition
            .append_as_follower(&records, followed.leader_epoch)
            .map_err(|e| e.message)?
    };
    partition.update_follower_offsets(data.high_watermark, data.log_start_offset);
    Ok(appended)
}
