//! DescribeProducers (KIP-664): per partition, the producers this leader holds state
//! for: id, epoch, last sequence, last timestamp, the coordinator epoch of their last
//! marker and the first offset of their ongoing transaction (-1: none). A partition
//! not led here is NOT_LEADER_OR_FOLLOWER, one the metadata does not know
//! UNKNOWN_TOPIC_OR_PARTITION, as in Kafka.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use super::{find_topic, led_partition};
use crate::partition::PartitionError;
use crate::protocol::{errors, RequestContext};

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = ctx.broker.metadata.image();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let (found, unknown_code) = find_topic(&image, false, &topic.name.0, uuid::Uuid::nil());
        let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
        for &index in &topic.partition_indexes {
            let result = match led_partition(ctx, found, unknown_code, index, -1).await {
                Err(error) => Err(error),
                // Takes the append lock: on a blocking thread.
                Ok(partition) => {
                    tokio::task::spawn_blocking(move || partition.describe_producers())
                        .await
                        .unwrap_or_else(|error| {
                            Err(PartitionError {
                                code: errors::KAFKA_STORAGE_ERROR,
                                message: format!("describe producers failed: {error}"),
                            })
                        })
                }
            };
            let answer = PartitionResponse::default().with_partition_index(index);
            partitions.push(match result {
                Ok(producers) => answer.with_active_producers(
                    producers
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(p.producer_epoch as i32)
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp_ms)
                                .with_coordinator_epoch(p.coordinator_epoch)
                                .with_current_txn_start_offset(p.current_txn_start_offset)
                        })
                        .collect(),
                ),
                Err(error) => answer
                    .with_error_code(error.code)
                    .with_error_message(Some(StrBytes::from_string(error.message))),
            });
        }
        topics.push(
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
