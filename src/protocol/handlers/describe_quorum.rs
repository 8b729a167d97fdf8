//! DescribeQuorum (KIP-595/836/853): the metadata quorum's leader, epoch, high watermark
//! and each voter's replication state, as `kafka-metadata-quorum describe` shows them. A
//! broker that does not lead the quorum asks the leader (as Kafka forwards it to the
//! active controller). Broker-only nodes follow the log as openraft learners: Kafka's
//! observers.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::{errors, RequestContext};

/// Kafka's name for the metadata log, the only topic DescribeQuorum knows.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let described = ctx.broker.metadata.describe_quorum().await;
    let mut nodes = Vec::new();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let known_topic = topic.topic_name.0.as_str() == METADATA_TOPIC;
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let entry = PartitionData::default().with_partition_index(p.partition_index);
                    if !known_topic || p.partition_index != 0 {
                        return entry
                            .with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_leader_id(BrokerId(-1));
                    }
                    let d = match &described {
                        Ok(d) => d,
                        Err(error) => {
                            return entry
                                .with_error_code(errors::NOT_LEADER_OR_FOLLOWER)
                                .with_error_message(Some(StrBytes::from_string(error.to_string())))
                                .with_leader_id(BrokerId(-1))
                                .with_leader_epoch(-1)
                                .with_high_watermark(-1)
                        }
                    };
                    let states = |replicas: &[crate::metadata::ReplicaState]| {
                        replicas
                            .iter()
                            .map(|v| {
                                ReplicaState::default()
                                    .with_replica_id(BrokerId(v.replica_id))
                                    .with_log_end_offset(v.log_end_offset)
                                    .with_last_fetch_timestamp(v.last_fetch_timestamp)
                                    .with_last_caught_up_timestamp(v.last_caught_up_timestamp)
                            })
                            .collect()
                    };
                    entry
                        .with_leader_id(BrokerId(d.leader_id))
                        .with_leader_epoch(d.leader_epoch)
                        .with_high_watermark(d.high_watermark)
                        .with_current_voters(states(&d.voters))
                        .with_observers(states(&d.observers))
                })
                .collect();
            TopicData::default()
                .with_topic_name(TopicName(topic.topic_name.0))
                .with_partitions(partitions)
        })
        .collect();
    if let Ok(d) = &described {
        nodes = d
            .endpoints
            .iter()
            .map(|(id, name, host, port)| {
                Node::default()
                    .with_node_id(BrokerId(*id))
                    .with_listeners(vec![Listener::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_port(*port)])
            })
            .collect();
    }
    DescribeQuorumResponse::default()
        .with_topics(topics)
        .with_nodes(nodes)
}
