//! OffsetForLeaderEpoch: for each partition, the end offset of the largest leader epoch
//! <= the requested one (the log's leader-epoch history, `log::epochs`). Consumers send
//! it after a leader change to check that the log was not truncated under their
//! position (KIP-320). The current leader epoch fences as in Fetch: older ->
//! FENCED_LEADER_EPOCH, newer -> UNKNOWN_LEADER_EPOCH, -1 skips the check.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{find_topic, led_partition};
use crate::partition::PartitionError;
use crate::protocol::{errors, RequestContext};

pub async fn handle(
    ctx: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = ctx.broker.metadata.image();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let (found, unknown_code) = find_topic(&image, false, &topic.topic.0, uuid::Uuid::nil());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let answer = EpochEndOffset::default().with_partition(p.partition);
            let result = match led_partition(
                ctx,
                found,
                unknown_code,
                p.partition,
                p.current_leader_epoch,
            )
            .await
            {
                Ok(partition) => {
                    let requested = p.leader_epoch;
                    // The append lock guards the history: take it on a blocking thread.
                    tokio::task::spawn_blocking(move || partition.end_offset_for_epoch(requested))
                        .await
                        .unwrap_or_else(|error| {
                            Err(PartitionError {
                                code: errors::KAFKA_STORAGE_ERROR,
                                message: format!("epoch lookup failed: {error}"),
                            })
                        })
                }
                Err(error) => Err(error),
            };
            partitions.push(match result {
                Ok((epoch, end_offset)) => {
                    answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                }
                Err(error) => answer.with_error_code(error.code),
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
