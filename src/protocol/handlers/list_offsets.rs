//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4),
//! latest tiered (-5, none here: no tiered storage), or the first record at or after a
//! timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{find_topic, led_partition};
use crate::partition::{Partition, PartitionError, TimestampOffset};
use crate::protocol::RequestContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(ctx: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    // leader_epoch exists from v4; the protocol crate refuses to encode it earlier.
    let with_epoch = ctx.version() >= 4;
    let image = ctx.broker.metadata.image();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let (found, unknown_code) = find_topic(&image, false, &topic.name.0, uuid::Uuid::nil());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let result = led_partition(
                        ctx,
                        found,
                        unknown_code,
                        p.partition_index,
                        p.current_leader_epoch,
                    )
                    .and_then(|partition| {
                        lookup(&partition, p.timestamp).map(|r| (r, partition.leader_epoch()))
                    });
                    match result {
                        Ok((Some(found), epoch)) => answer
                            .with_offset(found.offset)
                            .with_timestamp(found.timestamp_ms)
                            .with_leader_epoch(if with_epoch { epoch } else { -1 }),
                        Ok((None, _)) => answer.with_offset(-1).with_timestamp(-1),
                        Err(error) => answer
                            .with_error_code(error.code)
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn lookup(
    partition: &Partition,
    timestamp: i64,
) -> Result<Option<TimestampOffset>, PartitionError> {
    let (log_start, high_watermark) = partition.offsets();
    let at = |offset| {
        Some(TimestampOffset {
            offset,
            timestamp_ms: -1,
        })
    };
    match timestamp {
        EARLIEST | EARLIEST_LOCAL => Ok(at(log_start)),
        // Single replica, no transactions: the last stable offset is the high watermark.
        LATEST => Ok(at(high_watermark)),
        MAX_TIMESTAMP => partition.offset_of_max_timestamp(),
        LATEST_TIERED => Ok(None),
        target => partition.offset_for_timestamp(target),
    }
}
