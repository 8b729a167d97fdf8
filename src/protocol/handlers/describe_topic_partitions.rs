//! DescribeTopicPartitions (KIP-966): topics by name (all of them when the list is
//! empty) with their partitions, paginated: at most `ResponsePartitionLimit` partitions
//! (capped by `max.request.partition.size.limit`) per answer, then a cursor naming the
//! topic and partition to continue from. Topics go in name order. As in Kafka, a
//! request whose cursor is not among its topics, or names a negative partition, gets
//! INVALID_REQUEST for every topic; unknown topics are UNKNOWN_TOPIC_OR_PARTITION (or
//! INVALID_TOPIC_EXCEPTION for an illegal name) when named, left out when listing all.

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::metadata::internal_topics::is_internal;
use crate::metadata::{validate_topic_name, MetadataImage, TopicImage};
use crate::protocol::{errors, RequestContext};

/// Kafka without an authorizer grants every operation a topic supports: READ, WRITE,
/// CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS (bits 3-8, 10, 11).
const TOPIC_AUTHORIZED_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Kafka's `MetadataResponse.NO_LEADER_ID`.
const NO_LEADER_ID: i32 = -1;

pub fn handle(
    ctx: &RequestContext,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = ctx.broker.metadata.image();
    let limit = request
        .response_partition_limit
        .min(ctx.broker.config.max_request_partition_size_limit)
        .max(1) as usize;
    match describe(&image, &request, limit) {
        Ok(response) => response,
        Err(()) => invalid_request(request),
    }
}

fn describe(
    image: &MetadataImage,
    request: &DescribeTopicPartitionsRequest,
    limit: usize,
) -> Result<DescribeTopicPartitionsResponse, ()> {
    let list_all = request.topics.is_empty();
    let cursor_topic = request
        .cursor
        .as_ref()
        .map(|c| c.topic_name.0.as_str())
        .unwrap_or("");
    // Named topics at or after the cursor, each once, in name order.
    let names: BTreeSet<&str> = if list_all {
        image
            .topics
            .keys()
            .map(String::as_str)
            .filter(|name| *name >= cursor_topic)
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.0.as_str())
            .filter(|name| *name >= cursor_topic)
            .collect()
    };
    if let Some(cursor) = &request.cursor {
        if (!list_all && !names.contains(cursor.topic_name.0.as_str()))
            || cursor.partition_index < 0
        {
            return Err(());
        }
    }

    let mut response = DescribeTopicPartitionsResponse::default();
    let mut remaining = limit;
    for name in names {
        if remaining == 0 {
            // The previous topic was answered whole: continue at this one's start.
            response.next_cursor = Some(cursor_at(name, 0));
            break;
        }
        let Some(topic) = image.topics.get(name) else {
            if !list_all {
                let code = match validate_topic_name(name) {
                    Ok(()) => errors::UNKNOWN_TOPIC_OR_PARTITION,
                    Err(_) => errors::INVALID_TOPIC_EXCEPTION,
                };
                response.topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(code)
                        .with_name(Some(topic_name(name)))
                        .with_is_internal(is_internal(name)),
                );
            }
            continue;
        };
        let start = match &request.cursor {
            Some(cursor) if cursor.topic_name.0.as_str() == name => cursor.partition_index,
            _ => 0,
        };
        let (partitions, next) = partitions_from(image, topic, start, remaining);
        remaining -= partitions.len();
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(name)))
                .with_topic_id(topic.topic_id)
                .with_is_internal(is_internal(name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(TOPIC_AUTHORIZED_OPERATIONS),
        );
        if let Some(next) = next {
            response.next_cursor = Some(cursor_at(name, next));
            break;
        }
    }
    Ok(response)
}

/// Partitions `start..` of `topic`, at most `max`; and the next partition index when
/// some are left over.
fn partitions_from(
    image: &MetadataImage,
    topic: &TopicImage,
    start: i32,
    max: usize,
) -> (Vec<DescribeTopicPartitionsResponsePartition>, Option<i32>) {
    let count = topic.partitions.len();
    let upper = count.min((start.max(0) as usize).saturating_add(max));
    let next = (upper < count).then_some(upper as i32);
    let wanted = start.max(0)..upper as i32;
    let partitions = topic
        .partitions
        .iter()
        .filter(|p| wanted.contains(&p.partition))
        .map(|p| {
            let alive = |id: &i32| image.is_live_broker(*id);
            let leader = if alive(&p.leader) {
                p.leader
            } else {
                NO_LEADER_ID
            };
            let offline = p.replicas.iter().copied().filter(|id| !alive(id));
            DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
                // No eligible leader replicas (KIP-966) without an ISR to shrink.
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(offline.map(BrokerId).collect())
        })
        .collect();
    (partitions, next)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn cursor_at(name: &str, partition_index: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(topic_name(name))
        .with_partition_index(partition_index)
}

/// Kafka's error answer: every named topic with the error, no partitions.
fn invalid_request(request: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(errors::INVALID_REQUEST)
                .with_name(Some(t.name))
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}
