//! WriteTxnMarkers: the transaction coordinator (of this or another broker) ends a
//! transaction on the partitions it touched by appending a COMMIT or ABORT marker to
//! each (Kafka's handleWriteTxnMarkersRequest). Per partition: UNKNOWN_TOPIC_OR_PARTITION
//! for a partition the metadata does not know, NOT_LEADER_OR_FOLLOWER when this node
//! does not lead it, the marker checks' codes (INVALID_PRODUCER_EPOCH,
//! TRANSACTION_COORDINATOR_FENCED), else the answer once the marker is committed (Kafka
//! appends markers with acks=-1). The markers of one request are queued before any
//! await, so they keep the request's order on each partition. An offsets partition's
//! marker goes through its group coordinator shard, which applies the transaction's
//! offsets with it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{find_topic, led_partition};
use crate::coordinator::TxnMarker;
use crate::group::runtime::GroupRuntime;
use crate::metadata::internal_topics::OFFSETS_TOPIC;
use crate::partition::{AppendError, AppendResult, AppendSubmission, Partition};
use crate::protocol::{errors, RequestContext};

/// How long a marker waits to be committed: Kafka's default `request.timeout.ms`, which
/// its broker uses for marker appends.
const MARKER_COMMIT_TIMEOUT_MS: u64 = 30_000;

pub async fn handle(
    ctx: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let image = ctx.broker.metadata.image();
    let mut submission = AppendSubmission::new();
    // (marker index, topic name, partition, the marker's outcome: a Kafka error code)
    let mut pending: Vec<(usize, TopicName, i32, BoxFuture<'static, i16>)> = Vec::new();
    for (marker_index, marker) in request.markers.iter().enumerate() {
        for topic in &marker.topics {
            let name = topic.name.0.as_str();
            let (found, unknown_code) = find_topic(&image, false, name, uuid::Uuid::nil());
            for &index in &topic.partition_indexes {
                let outcome: BoxFuture<'static, i16> =
                    match led_partition(ctx, found, unknown_code, index, -1).await {
                        Err(error) => Box::pin(std::future::ready(error.code)),
                        Ok(partition) if name == OFFSETS_TOPIC => Box::pin(complete_in_group(
                            ctx.broker.groups.clone(),
                            partition.index,
                            TxnMarker {
                                producer_id: marker.producer_id.0,
                                producer_epoch: marker.producer_epoch,
                                coordinator_epoch: marker.coordinator_epoch,
                                commit: marker.transaction_result,
                            },
                        )),
                        Ok(partition) => {
                            let append = submission.submit_txn_marker(
                                &partition,
                                marker.producer_id.0,
                                marker.producer_epoch,
                                marker.coordinator_epoch,
                                marker.transaction_result,
                            );
                            Box::pin(committed(partition, append))
                        }
                    };
                pending.push((marker_index, topic.name.clone(), index, outcome));
            }
        }
    }
    // Dropping the submission starts the appends.
    drop(submission);
    let mut results: Vec<WritableTxnMarkerResult> = request
        .markers
        .iter()
        .map(|marker| WritableTxnMarkerResult::default().with_producer_id(marker.producer_id))
        .collect();
    for (marker_index, name, index, outcome) in pending {
        let code = outcome.await;
        let topics = &mut results[marker_index].topics;
        if topics.last().is_none_or(|t| t.name != name) {
            topics.push(WritableTxnMarkerTopicResult::default().with_name(name));
        }
        if let Some(topic) = topics.last_mut() {
            topic.partitions.push(
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(index)
                    .with_error_code(code),
            );
        }
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}

/// A marker appended to an ordinary partition, once committed (Kafka appends markers
/// with acks=-1).
async fn committed(
    partition: Arc<Partition>,
    append: impl Future<Output = Result<AppendResult, AppendError>>,
) -> i16 {
    match append.await {
        Err(AppendError { error, .. }) => error.code,
        Ok(appended) => {
            let timeout = Duration::from_millis(MARKER_COMMIT_TIMEOUT_MS);
            match partition.wait_for_acks(appended.next_offset, timeout).await {
                Ok(()) => errors::NONE,
                Err(code) => code,
            }
        }
    }
}

/// A marker for an offsets partition goes through its group coordinator shard, which
/// commits or drops the transaction's offsets and writes the marker (Kafka's
/// completeTransaction).
async fn complete_in_group(groups: GroupRuntime, shard: i32, marker: TxnMarker) -> i16 {
    match groups.complete_transaction(shard, marker).await {
        Ok(()) => errors::NONE,
        // Not loaded here (any more): the transaction coordinator retries.
        Err(_) => errors::NOT_LEADER_OR_FOLLOWER,
    }
}
