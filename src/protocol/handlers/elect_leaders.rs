//! ElectLeaders (`kafka-leader-election.sh`): the controller in the metadata quorum
//! elects the preferred replica (or, UNCLEAN, any live replica of a leaderless
//! partition) and writes the change; the brokers follow their images. Version 0 has no
//! election type (preferred) nor top-level error code. No ACLs yet, so no
//! CLUSTER_AUTHORIZATION_FAILED.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::metadata::leader_election::{ElectionType, TopicElections};
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let Some(election) = ElectionType::from_wire(request.election_type) else {
        let message = format!("Unknown election type {}", request.election_type);
        return failed(ctx, &request, errors::INVALID_REQUEST, message);
    };
    let topics = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect()
    });
    match ctx.broker.metadata.elect_leaders(election, topics).await {
        Ok(results) => ElectLeadersResponse::default()
            .with_replica_election_results(results.into_iter().map(topic_result).collect()),
        Err(error) => {
            tracing::warn!(%error, "ElectLeaders failed in the metadata quorum");
            failed(ctx, &request, errors::NOT_CONTROLLER, error.to_string())
        }
    }
}

fn topic_result(topic: TopicElections) -> ReplicaElectionResult {
    ReplicaElectionResult::default()
        .with_topic(TopicName(StrBytes::from_string(topic.topic)))
        .with_partition_result(
            topic
                .partitions
                .into_iter()
                .map(|p| {
                    PartitionResult::default()
                        .with_partition_id(p.partition)
                        .with_error_code(p.code)
                        .with_error_message(p.message.map(StrBytes::from_string))
                })
                .collect(),
        )
}

/// Kafka's `ElectLeadersRequest.getErrorResponse`: the error at the top (from version 1)
/// and on every named partition.
fn failed(
    ctx: &RequestContext,
    request: &ElectLeadersRequest,
    code: i16,
    message: String,
) -> ElectLeadersResponse {
    let results = request
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            PartitionResult::default()
                                .with_partition_id(p)
                                .with_error_code(code)
                                .with_error_message(Some(StrBytes::from_string(message.clone())))
                        })
                        .collect(),
                )
        })
        .collect();
    let top_level = if ctx.version() >= 1 {
        code
    } else {
        errors::NONE
    };
    ElectLeadersResponse::default()
        .with_error_code(top_level)
        .with_replica_election_results(results)
}
