//! AlterPartitionReassignments (KIP-455, `kafka-reassign-partitions --execute` and
//! `--cancel`): the controller in the metadata quorum plans each partition's move
//! (`metadata/reassignment.rs`) and writes the changes; the brokers named in the new
//! replica lists open and follow the partitions, those left out delete them.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::metadata::{ApiError, TopicReassignment};
use crate::protocol::{errors, RequestContext};

pub async fn handle(
    ctx: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let topics: Vec<TopicReassignment> = request
        .topics
        .iter()
        .map(|topic| TopicReassignment {
            topic: topic.name.0.to_string(),
            partitions: topic
                .partitions
                .iter()
                .map(|p| {
                    let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                    (p.partition_index, target)
                })
                .collect(),
        })
        .collect();
    let allow = request.allow_replication_factor_change;
    let response =
        AlterPartitionReassignmentsResponse::default().with_allow_replication_factor_change(allow);
    let (results, top_level) = match ctx
        .broker
        .metadata
        .alter_partition_reassignments(topics, allow)
        .await
    {
        Ok(results) => (results, None),
        Err(error) => {
            tracing::warn!(%error, "AlterPartitionReassignments failed in the metadata quorum");
            let failure = ApiError {
                code: errors::NOT_CONTROLLER,
                message: error.to_string(),
            };
            let results = request
                .topics
                .iter()
                .map(|t| vec![Err(failure.clone()); t.partitions.len()])
                .collect();
            (results, Some(failure))
        }
    };
    let responses = request
        .topics
        .into_iter()
        .zip(results)
        .map(|(topic, results)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(results)
                .map(|(p, result)| {
                    let answer = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match result {
                        Ok(()) => answer,
                        Err(error) => answer
                            .with_error_code(error.code)
                            .with_error_message(Some(StrBytes::from_string(error.message))),
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    let response = response.with_responses(responses);
    match top_level {
        Some(error) => response
            .with_error_code(error.code)
            .with_error_message(Some(StrBytes::from_string(error.message))),
        None => response,
    }
}
