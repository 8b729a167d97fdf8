//! DeleteRecords: moves each partition's log start offset up to the requested offset
//! (-1: the high watermark), as Kafka Streams does to purge repartition topics. Offsets
//! below it are gone at once (fetch answers OFFSET_OUT_OF_RANGE, ListOffsets earliest
//! returns it), the segments wholly below it are removed, and the new start survives
//! restarts (`log-start-offset-checkpoint`, written before the answer). Beyond the high
//! watermark is OFFSET_OUT_OF_RANGE; internal topics are INVALID_TOPIC_EXCEPTION and
//! topics without the `delete` cleanup policy POLICY_VIOLATION, as in Kafka. One
//! replica: nothing to wait for, so `timeout_ms` is not used.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{find_topic, led_partition};
use crate::metadata::internal_topics::is_internal;
use crate::metadata::TopicImage;
use crate::partition::PartitionError;
use crate::protocol::{errors, RequestContext};

const POLICY_VIOLATION: i16 = 44;

pub async fn handle(ctx: &RequestContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = ctx.broker.metadata.image();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str();
        let (found, unknown_code) = find_topic(&image, false, name, uuid::Uuid::nil());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let result = if is_internal(name) {
                Err(errors::INVALID_TOPIC_EXCEPTION)
            } else {
                match led_partition(ctx, found, unknown_code, p.partition_index, -1).await {
                    Err(error) => Err(error.code),
                    Ok(_) if found.is_some_and(|t| !deletes(ctx, t)) => Err(POLICY_VIOLATION),
                    Ok(partition) => {
                        let manager = ctx.broker.partitions.clone();
                        let offset = p.offset;
                        // Moves files: on a blocking thread.
                        tokio::task::spawn_blocking(move || {
                            manager.delete_records(&partition, offset)
                        })
                        .await
                        .unwrap_or_else(|error| {
                            Err(PartitionError {
                                code: errors::KAFKA_STORAGE_ERROR,
                                message: format!("delete records failed: {error}"),
                            })
                        })
                        .map_err(|error| error.code)
                    }
                }
            };
            let answer =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            partitions.push(match result {
                Ok(low_watermark) => answer.with_low_watermark(low_watermark),
                Err(code) => answer.with_low_watermark(-1).with_error_code(code),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Whether the topic's `cleanup.policy` (or the broker's) includes `delete`.
fn deletes(ctx: &RequestContext, topic: &TopicImage) -> bool {
    topic
        .configs
        .get("cleanup.policy")
        .unwrap_or(&ctx.broker.effective_config().log_cleanup_policy)
        .split(',')
        .any(|policy| policy.trim() == "delete")
}
