//! Fetch: stored batches as they are, with long polling.
//!
//! The answer waits until `min_bytes` are available or `max_wait_ms` passes; an append to
//! any fetched partition wakes it at once (no timer polling). Byte limits: whole batches
//! up to `partition_max_bytes` per partition and `max_bytes` (capped by the broker's
//! `fetch.max.bytes`) in all, but the first batch found is returned even when larger.
//!
//! Reads run on a blocking thread: the log lock is held only to plan a read, and the
//! preads (up to `fetch.max.bytes` per answer) are done outside it.
//!
//! Incremental fetch sessions (KIP-227): the request goes through the broker's
//! [`FetchSessionCache`] first, which says which partitions to read (a session's cached
//! ones for an incremental request) and, once they are read, which the answer carries
//! and whether a full request opens a session.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::{find_topic, hinted_endpoints, leader_hint, led_partition};
use crate::log::batch::{BatchHeader, HEADER_SIZE};
use crate::partition::{Partition, PartitionError, Reader};
use crate::protocol::fetch_session::{
    FetchContext, FetchSessionCache, PartitionKey, PartitionOutcome, PartitionParams,
    SessionRequest, TopicKey, NO_SESSION,
};
use crate::protocol::{errors, RequestContext};
use crate::replication::throttle::{lists_replica, ReplicationQuota, LEADER_THROTTLED_REPLICAS};

/// Upper bound on how long a fetch may park, whatever the client asks.
const MAX_WAIT_CAP_MS: i32 = 30_000;
const ZSTD_CODEC: i16 = 4;

struct Slot {
    partition: i32,
    fetch_offset: i64,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    partition_max_bytes: i32,
    local: Result<Arc<Partition>, PartitionError>,
    /// KIP-951 (v12+): the leader to go to after NOT_LEADER_OR_FOLLOWER.
    leader_hint: Option<(i32, i32)>,
    /// A follower out of the ISR of a partition listed in the topic's
    /// `leader.replication.throttled.replicas` for this node: its records count against
    /// `leader.replication.throttled.rate`.
    throttled: bool,
}

pub async fn handle(ctx: &RequestContext, request: FetchRequest) -> FetchResponse {
    let version = ctx.version();
    let by_id = version >= 13;
    let sessions: &FetchSessionCache = &ctx.broker.fetch_sessions;
    let topic_key = |name: &TopicName, id: uuid::Uuid| {
        if by_id {
            TopicKey::Id(id)
        } else {
            TopicKey::Name(name.0.to_string())
        }
    };
    let mut fetch_data = IndexMap::new();
    for fetch_topic in &request.topics {
        let topic = topic_key(&fetch_topic.topic, fetch_topic.topic_id);
        for p in &fetch_topic.partitions {
            let key = PartitionKey {
                topic: topic.clone(),
                partition: p.partition,
            };
            let params = PartitionParams {
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
            };
            // A partition named twice is fetched once, with its last parameters (Kafka
            // reads the request into a map).
            fetch_data.insert(key, params);
        }
    }
    let forgotten: Vec<PartitionKey> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = topic_key(&t.topic, t.topic_id);
            t.partitions.iter().map(move |&partition| PartitionKey {
                topic: topic.clone(),
                partition,
            })
        })
        .collect();
    let session_request = SessionRequest {
        version,
        session_id: request.session_id,
        epoch: request.session_epoch,
        privileged: request.replica_id.0 >= 0 || request.replica_state.replica_id.0 >= 0,
    };
    let context = sessions.new_context(&session_request, fetch_data, &forgotten, sessions.now_ms());
    let partitions = match &context {
        FetchContext::SessionError(code) => {
            return FetchResponse::default().with_error_code(*code);
        }
        FetchContext::Sessionless(partitions)
        | FetchContext::Full { partitions, .. }
        | FetchContext::Incremental { partitions, .. } => partitions,
    };

    // A follower names itself: in the replica state from v15 (KIP-903), before that in
    // replica_id. Consumers send -1.
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let follower = (replica_id >= 0).then_some(replica_id);
    // isolation.level (v4+): 1 = READ_COMMITTED reads up to the last stable offset.
    let read_committed = version >= 4 && request.isolation_level == 1;

    let image = ctx.broker.metadata.image();
    let node_id = ctx.broker.config.node_id;
    let mut slots = Vec::with_capacity(partitions.len());
    for (key, params) in partitions {
        let (topic, unknown_code) = match &key.topic {
            TopicKey::Id(id) => find_topic(&image, true, "", *id),
            TopicKey::Name(name) => find_topic(&image, false, name, uuid::Uuid::nil()),
        };
        let local = led_partition(
            ctx,
            topic,
            unknown_code,
            key.partition,
            params.current_leader_epoch,
        )
        .await;
        let leader_hint = match &local {
            Err(e) if e.code == errors::NOT_LEADER_OR_FOLLOWER && version >= 12 => {
                leader_hint(&image, topic, key.partition, ctx.broker.config.node_id)
            }
            _ => None,
        };
        let throttled = follower.is_some_and(|replica| {
            topic.is_some_and(|topic| {
                let listed = topic
                    .configs
                    .get(LEADER_THROTTLED_REPLICAS)
                    .is_some_and(|v| lists_replica(v, key.partition, node_id));
                listed
                    && topic
                        .partitions
                        .iter()
                        .find(|p| p.partition == key.partition)
                        .is_some_and(|p| !p.isr.contains(&replica))
            })
        });
        slots.push(Slot {
            throttled,
            partition: key.partition,
            fetch_offset: params.fetch_offset,
            current_leader_epoch: params.current_leader_epoch,
            last_fetched_epoch: params.last_fetched_epoch,
            partition_max_bytes: params.partition_max_bytes,
            local,
            leader_hint,
        });
    }

    let max_bytes = if version >= 3 {
        request.max_bytes.min(ctx.broker.config.fetch_max_bytes)
    } else {
        ctx.broker.config.fetch_max_bytes
    }
    .max(0) as usize;
    let wait_ms = request.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS);
    let deadline = Instant::now() + Duration::from_millis(wait_ms as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let slots = Arc::new(slots);

    let answers = loop {
        // Register for wake-ups before reading, so an append in between is not missed.
        let mut wakeups: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = slots
            .iter()
            .filter_map(|s| s.local.as_ref().ok())
            .map(|p| Box::pin(p.data_arrived()))
            .collect();
        for wakeup in &mut wakeups {
            wakeup.as_mut().enable();
        }
        // The preads run on a blocking thread, never on an async worker.
        let reading = slots.clone();
        let broker = ctx.broker.clone();
        let read = tokio::task::spawn_blocking(move || {
            read_all(
                &reading,
                max_bytes,
                version,
                follower,
                read_committed,
                &broker.leader_throttle,
            )
        });
        let (answers, total_bytes, any_error) = match read.await {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(%error, "fetch read failed");
                failed_all(&slots)
            }
        };
        let done = total_bytes >= min_bytes
            || any_error
            || wakeups.is_empty()
            || Instant::now() >= deadline;
        if done {
            break answers;
        }
        tokio::select! {
            _ = futures::future::select_all(wakeups) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    };

    let outcome = |data: &PartitionData| PartitionOutcome {
        high_watermark: data.high_watermark,
        log_start_offset: data.log_start_offset,
        has_records: data.records.as_ref().is_some_and(|r| !r.is_empty()),
        has_error: data.error_code != errors::NONE,
    };
    let now_ms = sessions.now_ms();
    let (session_id, include) = match &context {
        FetchContext::SessionError(_) | FetchContext::Sessionless(_) => (NO_SESSION, None),
        FetchContext::Full {
            partitions,
            privileged,
            uses_topic_ids,
        } => {
            let answered: Vec<_> = partitions
                .iter()
                .zip(&answers)
                .map(|((key, params), data)| (key.clone(), *params, outcome(data)))
                .collect();
            let id = sessions.finish_full(*privileged, *uses_topic_ids, &answered, now_ms);
            (id, None)
        }
        FetchContext::Incremental {
            session_id,
            epoch,
            partitions,
        } => {
            let answered: Vec<_> = partitions
                .iter()
                .zip(&answers)
                .map(|((key, _), data)| (key.clone(), outcome(data)))
                .collect();
            match sessions.finish_incremental(*session_id, *epoch, &answered) {
                Ok(include) => (*session_id, Some(include)),
                Err(code) => {
                    return FetchResponse::default()
                        .with_error_code(code)
                        .with_session_id(*session_id);
                }
            }
        }
    };

    // Consecutive partitions of one topic share a topic entry, as in Kafka's answer.
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut last_topic: Option<&TopicKey> = None;
    for (i, ((key, _), data)) in partitions.iter().zip(answers).enumerate() {
        if include.as_ref().is_some_and(|include| !include[i]) {
            continue;
        }
        if last_topic != Some(&key.topic) {
            let entry = match &key.topic {
                TopicKey::Id(id) => FetchableTopicResponse::default().with_topic_id(*id),
                TopicKey::Name(name) => FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(name.clone()))),
            };
            topics.push(entry);
            last_topic = Some(&key.topic);
        }
        if let Some(entry) = topics.last_mut() {
            entry.partitions.push(data);
        }
    }
    // node_endpoints exist from v16 (KIP-951).
    let node_endpoints = if version >= 16 {
        let leaders = slots
            .iter()
            .filter_map(|slot| slot.leader_hint.map(|(id, _)| id));
        hinted_endpoints(&image, leaders)
            .into_iter()
            .map(|(id, host, port, rack)| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port)
                    .with_rack(rack.map(StrBytes::from_string))
            })
            .collect()
    } else {
        Vec::new()
    };
    FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics)
        .with_node_endpoints(node_endpoints)
}

/// One pass over every requested partition; returns the partition answers, the record
/// bytes gathered and whether any partition failed (Kafka answers errors at once).
fn read_all(
    slots: &[Slot],
    max_bytes: usize,
    version: i16,
    follower: Option<i32>,
    read_committed: bool,
    throttle: &ReplicationQuota,
) -> (Vec<PartitionData>, usize, bool) {
    // Over the rate, throttled replicas get no records this time; their fetch offsets
    // still count (Kafka's `shouldLeaderThrottle`).
    let hold_throttled =
        slots.iter().any(|s| s.throttled) && throttle.exceeded(Instant::now().into_std());
    let mut total_bytes = 0usize;
    let mut any_error = false;
    let mut answers = Vec::with_capacity(slots.len());
    for slot in slots {
        let answer = PartitionData::default().with_partition_index(slot.partition);
        let result = slot
            .local
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|partition| {
                let held = slot.throttled && hold_throttled;
                let budget = if held {
                    0
                } else {
                    (slot.partition_max_bytes.max(0) as usize)
                        .min(max_bytes.saturating_sub(total_bytes))
                };
                // Only the first partition with data may exceed the limits (one whole batch),
                // so that an oversized batch can never stall a consumer.
                let min_one_batch = total_bytes == 0 && !held;
                let reader = match follower {
                    Some(replica_id) => Reader::Follower {
                        replica_id,
                        current_leader_epoch: slot.current_leader_epoch,
                        last_fetched_epoch: slot.last_fetched_epoch,
                    },
                    None if read_committed => Reader::CommittedConsumer,
                    None => Reader::Consumer,
                };
                partition.read(slot.fetch_offset, budget, min_one_batch, reader)
            });
        let answer = match result {
            Ok(read) => {
                let mut answer = answer
                    .with_high_watermark(read.high_watermark)
                    .with_last_stable_offset(read.last_stable_offset)
                    .with_log_start_offset(read.log_start_offset);
                if let Some((epoch, end_offset)) = read.diverging_epoch {
                    answer.diverging_epoch = EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset);
                }
                if version < 10 && contains_zstd(&read.records) {
                    any_error = true;
                    answer.with_error_code(errors::UNSUPPORTED_COMPRESSION_TYPE)
                } else {
                    total_bytes += read.records.len();
                    if slot.throttled {
                        throttle.record(read.records.len(), Instant::now().into_std());
                    }
                    // Kafka answers null unless the consumer reads committed.
                    let aborted = (read_committed && follower.is_none()).then(|| {
                        read.aborted_transactions
                            .iter()
                            .map(|txn| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(txn.producer_id))
                                    .with_first_offset(txn.first_offset)
                            })
                            .collect()
                    });
                    answer
                        .with_aborted_transactions(aborted)
                        .with_records(Some(read.records))
                }
            }
            Err(error) => {
                any_error = true;
                let answer = match slot.leader_hint {
                    Some((leader_id, leader_epoch)) => answer.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader_id))
                            .with_leader_epoch(leader_epoch),
                    ),
                    None => answer,
                };
                answer
                    .with_error_code(error.code)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
            }
        };
        answers.push(answer);
    }
    (answers, total_bytes, any_error)
}

/// Every partition answered KAFKA_STORAGE_ERROR (the read task died).
fn failed_all(slots: &[Slot]) -> (Vec<PartitionData>, usize, bool) {
    let answers = slots
        .iter()
        .map(|slot| {
            PartitionData::default()
                .with_partition_index(slot.partition)
                .with_error_code(errors::KAFKA_STORAGE_ERROR)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
        })
        .collect();
    (answers, 0, true)
}

/// Fetch versions before 10 predate zstd (KIP-110): such clients cannot read it.
fn contains_zstd(mut records: &[u8]) -> bool {
    while records.len() >= HEADER_SIZE {
        let Ok(header) = BatchHeader::parse(records) else {
            return false;
        };
        if header.compression_codec() == ZSTD_CODEC {
            return true;
        }
        records = &records[header.total_size().min(records.len())..];
    }
    false
}
