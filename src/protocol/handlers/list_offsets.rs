//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4),
//! latest tiered (-5, none here: no tiered storage), or the first record at or after a
//! timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{find_topic, led_partition};
use crate::partition::{Partition, PartitionError, TimestampOffset};
use crate::protocol::{errors, RequestContext};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(ctx: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    // leader_epoch exists from v4; the protocol crate refuses to encode it earlier.
    let with_epoch = ctx.version() >= 4;
    // isolation_level (v2+): 1 = READ_COMMITTED, whose latest offset is the LSO.
    let read_committed = ctx.version() >= 2 && request.isolation_level == 1;
    let image = ctx.broker.metadata.image();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let (found, unknown_code) = find_topic(&image, false, &topic.name.0, uuid::Uuid::nil());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let answer =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let result = match led_partition(
                ctx,
                found,
                unknown_code,
                p.partition_index,
                p.current_leader_epoch,
            )
            .await
            {
                Ok(partition) => {
                    let epoch = partition.leader_epoch();
                    lookup(partition, p.timestamp, read_committed)
                        .await
                        .map(|r| (r, epoch))
                }
                Err(error) => Err(error),
            };
            partitions.push(match result {
                Ok((Some(found), epoch)) => answer
                    .with_offset(found.offset)
                    .with_timestamp(found.timestamp_ms)
                    .with_leader_epoch(if with_epoch { epoch } else { -1 }),
                Ok((None, _)) => answer.with_offset(-1).with_timestamp(-1),
                Err(error) => answer
                    .with_error_code(error.code)
                    .with_offset(-1)
                    .with_timestamp(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn lookup(
    partition: Arc<Partition>,
    timestamp: i64,
    read_committed: bool,
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
        LATEST if read_committed => Ok(at(partition.last_stable_offset())),
        LATEST => Ok(at(high_watermark)),
        LATEST_TIERED => Ok(None),
        // Timestamp lookups read the log: on a blocking thread. Kafka answers only
        // offsets the reader could fetch: below the LSO for read_committed, else below
        // the high watermark.
        target => tokio::task::spawn_blocking(move || {
            let fetchable = if read_committed {
                partition.last_stable_offset()
            } else {
                high_watermark
            };
            let found = if target == MAX_TIMESTAMP {
                partition.offset_of_max_timestamp()
            } else {
                partition.offset_for_timestamp(target)
            };
            found.map(|found| found.filter(|found| found.offset < fetchable))
        })
        .await
        .unwrap_or_else(|error| {
            Err(PartitionError {
                code: errors::KAFKA_STORAGE_ERROR,
                message: format!("timestamp lookup failed: {error}"),
            })
        }),
    }
}
