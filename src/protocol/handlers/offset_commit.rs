//! OffsetCommit: member commits (generation checked) and simple/admin commits; the
//! answer is sent only once the offsets are in `__consumer_offsets`.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    // Kept to answer every partition with an error if the coordinator cannot.
    let asked: Vec<OffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
                        })
                        .collect(),
                )
        })
        .collect();
    match groups::call(ctx, &group_id, GroupRequest::OffsetCommit(request)).await {
        Some(ResponseKind::OffsetCommit(response)) => response,
        _ => OffsetCommitResponse::default().with_topics(asked),
    }
}
