//! WriteTxnMarkers: the transaction coordinator (of this or another broker) ends a
//! transaction on the partitions it touched by appending a COMMIT or ABORT marker to
//! each (Kafka's handleWriteTxnMarkersRequest). Per partition: UNKNOWN_TOPIC_OR_PARTITION
//! for a partition the metadata does not know, NOT_LEADER_OR_FOLLOWER when this node
//! does not lead it, the marker checks' codes (INVALID_PRODUCER_EPOCH,
//! TRANSACTION_COORDINATOR_FENCED), else the answer once the marker is committed (Kafka
//! appends markers with acks=-1). The markers of one request are queued before any
//! await, so they keep the request's order on each partition.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{find_topic, led_partition};
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
    // (marker index, topic name, partition, pending append or error code)
    let mut pending = Vec::new();
    for (marker_index, marker) in request.markers.iter().enumerate() {
        for topic in &marker.topics {
            let name = topic.name.0.as_str();
            let (found, unknown_code) = find_topic(&image, false, name, uuid::Uuid::nil());
            for &index in &topic.partition_indexes {
                let outcome = match led_partition(ctx, found, unknown_code, index, -1).await {
                    Err(error) => Err(error.code),
                    Ok(partition) => {
                        let append = route_marker(
                            &mut submission,
                            &partition,
                            marker.producer_id.0,
                            marker.producer_epoch,
                            marker.coordinator_epoch,
                            marker.transaction_result,
                        );
                        Ok((partition, append))
                    }
                };
                pending.push((marker_index, topic.name.clone(), index, outcome));
            }
        }
    }
    // Dropping the submission starts the appends.
    drop(submission);
    let timeout = Duration::from_millis(MARKER_COMMIT_TIMEOUT_MS);
    let mut results: Vec<WritableTxnMarkerResult> = request
        .markers
        .iter()
        .map(|marker| WritableTxnMarkerResult::default().with_producer_id(marker.producer_id))
        .collect();
    for (marker_index, name, index, outcome) in pending {
        let code = match outcome {
            Err(code) => code,
            Ok((partition, append)) => match append.await {
                Err(AppendError { error, .. }) => error.code,
                Ok(appended) => {
                    match partition.wait_for_acks(appended.next_offset, timeout).await {
                        Ok(()) => errors::NONE,
                        Err(code) => code,
                    }
                }
            },
        };
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

/// Where a marker goes. Every partition, `__consumer_offsets` included, gets it in its
/// log for now; the offsets topic's markers are to go through the group coordinator
/// (which must also apply the transaction's offsets), and this is the one place to
/// change for that.
fn route_marker(
    submission: &mut AppendSubmission,
    partition: &Arc<Partition>,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
) -> impl Future<Output = Result<AppendResult, AppendError>> + Send + 'static {
    submission.submit_txn_marker(
        partition,
        producer_id,
        producer_epoch,
        coordinator_epoch,
        commit,
    )
}
