//! TxnOffsetCommit: a transactional producer commits a group's offsets inside its
//! transaction; they become visible when the transaction commits.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(
    ctx: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    // Every partition gets the error when the coordinator cannot answer.
    let failed = TxnOffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    match groups::call(ctx, &group_id, GroupRequest::TxnOffsetCommit(request)).await {
        Some(ResponseKind::TxnOffsetCommit(response)) => response,
        _ => failed,
    }
}
