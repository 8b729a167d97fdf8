//! Request dispatch: one handler file per Kafka API under [`handlers`], and the table of
//! API versions this broker serves (what ApiVersions advertises and what the framing
//! layer accepts: the two can never disagree).

pub mod errors;
pub mod fetch_session;
pub mod handlers;

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

use crate::auth::Session;
use crate::broker::Broker;

pub struct RequestContext {
    pub broker: Arc<Broker>,
    /// The connection's listener, authenticated principal and client address
    /// (DescribeGroups shows the address as the member's host).
    pub session: Arc<Session>,
    pub header: RequestHeader,
    pub api_key: ApiKey,
}

impl RequestContext {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
}

/// What a handler asks the connection to do.
pub enum Outcome {
    Respond(Box<ResponseKind>),
    /// acks=0 produce: no response is sent.
    NoResponse,
    /// Kafka closes the connection instead of answering (e.g. acks=0 produce errors).
    Close(String),
}

/// Versions served, per API: every version of the Kafka 4.1 schema, which starts at
/// Kafka 4's baseline (KIP-896). Handlers cover each version's fields.
pub fn supported_versions(api_key: ApiKey) -> Option<VersionRange> {
    let range = match api_key {
        ApiKey::Produce => ProduceRequest::VERSIONS,
        ApiKey::Fetch => FetchRequest::VERSIONS,
        ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
        ApiKey::Metadata => MetadataRequest::VERSIONS,
        ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
        ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
        ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
        ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
        ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
        ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
        ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
        ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
        ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
        ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
        ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
        ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
        ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
        ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
        ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
        ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
        ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
        ApiKey::DescribeTopicPartitions => DescribeTopicPartitionsRequest::VERSIONS,
        ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
        ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::VERSIONS,
        ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
        ApiKey::DescribeLogDirs => DescribeLogDirsRequest::VERSIONS,
        ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
        ApiKey::DescribeQuorum => DescribeQuorumRequest::VERSIONS,
        ApiKey::ElectLeaders => ElectLeadersRequest::VERSIONS,
        ApiKey::AlterPartitionReassignments => AlterPartitionReassignmentsRequest::VERSIONS,
        ApiKey::ListPartitionReassignments => ListPartitionReassignmentsRequest::VERSIONS,
        ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::VERSIONS,
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::VERSIONS,
        ApiKey::EndTxn => EndTxnRequest::VERSIONS,
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::VERSIONS,
        ApiKey::DescribeTransactions => DescribeTransactionsRequest::VERSIONS,
        // v2's transactional id pattern needs a regular expression engine: not yet.
        ApiKey::ListTransactions => VersionRange { min: 0, max: 1 },
        ApiKey::WriteTxnMarkers => WriteTxnMarkersRequest::VERSIONS,
        ApiKey::DescribeProducers => DescribeProducersRequest::VERSIONS,
        ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsRequest::VERSIONS,
        ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsRequest::VERSIONS,
        _ => return None,
    };
    Some(range)
}

/// The advertised list, in api key order.
pub fn api_version_entries() -> Vec<ApiVersion> {
    ApiKey::iter()
        .filter_map(|key| {
            supported_versions(key).map(|range| {
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(range.min)
                    .with_max_version(range.max)
            })
        })
        .collect()
}

/// KIP-511: an ApiVersions request at an unknown version gets UNSUPPORTED_VERSION with
/// the ApiVersions range alone (as Kafka answers), so that the client can retry at a
/// version both sides know and then learn the rest.
pub fn unsupported_api_versions_response() -> ApiVersionsResponse {
    let range = ApiVersionsRequest::VERSIONS;
    ApiVersionsResponse::default()
        .with_error_code(errors::UNSUPPORTED_VERSION)
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(range.min)
            .with_max_version(range.max)])
}

pub async fn dispatch(ctx: &RequestContext, body: RequestKind) -> Outcome {
    use handlers::*;
    let response = match body {
        RequestKind::ApiVersions(req) => ResponseKind::ApiVersions(api_versions::handle(ctx, req)),
        RequestKind::Metadata(req) => ResponseKind::Metadata(metadata::handle(ctx, req).await),
        RequestKind::CreateTopics(req) => {
            ResponseKind::CreateTopics(create_topics::handle(ctx, req).await)
        }
        RequestKind::DeleteTopics(req) => {
            ResponseKind::DeleteTopics(delete_topics::handle(ctx, req).await)
        }
        RequestKind::Produce(req) => return produce::handle(ctx, req).await,
        RequestKind::Fetch(req) => ResponseKind::Fetch(fetch::handle(ctx, req).await),
        RequestKind::ListOffsets(req) => {
            ResponseKind::ListOffsets(list_offsets::handle(ctx, req).await)
        }
        RequestKind::InitProducerId(req) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, req).await)
        }
        RequestKind::DescribeConfigs(req) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(ctx, req))
        }
        RequestKind::DescribeCluster(req) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, req))
        }
        RequestKind::FindCoordinator(req) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, req).await)
        }
        RequestKind::JoinGroup(req) => ResponseKind::JoinGroup(join_group::handle(ctx, req).await),
        RequestKind::SyncGroup(req) => ResponseKind::SyncGroup(sync_group::handle(ctx, req).await),
        RequestKind::Heartbeat(req) => ResponseKind::Heartbeat(heartbeat::handle(ctx, req).await),
        RequestKind::LeaveGroup(req) => {
            ResponseKind::LeaveGroup(leave_group::handle(ctx, req).await)
        }
        RequestKind::OffsetCommit(req) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, req).await)
        }
        RequestKind::OffsetFetch(req) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(ctx, req).await)
        }
        RequestKind::OffsetDelete(req) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, req).await)
        }
        RequestKind::DescribeGroups(req) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, req).await)
        }
        RequestKind::ListGroups(req) => {
            ResponseKind::ListGroups(list_groups::handle(ctx, req).await)
        }
        RequestKind::DeleteGroups(req) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, req).await)
        }
        RequestKind::DescribeTopicPartitions(req) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(ctx, req))
        }
        RequestKind::DeleteRecords(req) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, req).await)
        }
        RequestKind::OffsetForLeaderEpoch(req) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, req).await)
        }
        RequestKind::DescribeQuorum(req) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(ctx, req).await)
        }
        RequestKind::CreatePartitions(req) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, req).await)
        }
        RequestKind::DescribeLogDirs(req) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, req).await)
        }
        RequestKind::AlterConfigs(req) => {
            ResponseKind::AlterConfigs(alter_configs::handle(ctx, req).await)
        }
        RequestKind::IncrementalAlterConfigs(req) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(ctx, req).await)
        }
        RequestKind::ElectLeaders(req) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(ctx, req).await)
        }
        RequestKind::AlterPartitionReassignments(req) => ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(ctx, req).await,
        ),
        RequestKind::ListPartitionReassignments(req) => {
            ResponseKind::ListPartitionReassignments(list_partition_reassignments::handle(ctx, req))
        }
        RequestKind::AddPartitionsToTxn(req) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(ctx, req).await)
        }
        RequestKind::AddOffsetsToTxn(req) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(ctx, req).await)
        }
        RequestKind::EndTxn(req) => ResponseKind::EndTxn(end_txn::handle(ctx, req).await),
        RequestKind::TxnOffsetCommit(req) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(ctx, req).await)
        }
        RequestKind::DescribeTransactions(req) => {
            ResponseKind::DescribeTransactions(describe_transactions::handle(ctx, req).await)
        }
        RequestKind::ListTransactions(req) => {
            ResponseKind::ListTransactions(list_transactions::handle(ctx, req).await)
        }
        RequestKind::WriteTxnMarkers(req) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(ctx, req).await)
        }
        RequestKind::DescribeProducers(req) => {
            ResponseKind::DescribeProducers(describe_producers::handle(ctx, req).await)
        }
        RequestKind::DescribeUserScramCredentials(req) => {
            ResponseKind::DescribeUserScramCredentials(describe_user_scram_credentials::handle(
                ctx, req,
            ))
        }
        RequestKind::AlterUserScramCredentials(req) => ResponseKind::AlterUserScramCredentials(
            alter_user_scram_credentials::handle(ctx, req).await,
        ),
        // The framing layer only passes APIs listed in `supported_versions`.
        other => {
            return Outcome::Close(format!(
                "no handler for {:?}",
                std::mem::discriminant(&other)
            ))
        }
    };
    Outcome::Respond(Box::new(response))
}
