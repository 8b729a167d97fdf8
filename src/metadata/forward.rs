//! Controller operations as messages: what a node that does not lead the quorum sends to
//! the leader (on the controller listener, see `network`), and the leader's answer. The
//! leader runs the same code for its own requests, so there is one path for both.

use serde::{Deserialize, Serialize};

use super::{
    ApiError, BrokerRegistration, CreatePartitionsRequest, CreateTopicRequest, TopicDefaults,
    TopicImage, TopicRef,
};
use crate::dynamic_config::{Alteration, Resource};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ControllerCall {
    CreateTopics {
        requests: Vec<CreateTopicRequest>,
        defaults: TopicDefaults,
        validate_only: bool,
    },
    DeleteTopics {
        topics: Vec<TopicRef>,
    },
    CreatePartitions {
        requests: Vec<CreatePartitionsRequest>,
        validate_only: bool,
    },
    AllocateProducerIds {
        broker_id: i32,
        count: i64,
    },
    AlterConfigs {
        requests: Vec<(Resource, Alteration)>,
        validate_only: bool,
    },
    AlterScramCredentials {
        deletions: Vec<super::ScramDeletion>,
        upsertions: Vec<super::ScramUpsertion>,
    },
    /// The controller picks the broker epoch; the rest is the broker's.
    RegisterBroker(BrokerRegistration),
    BrokerHeartbeat {
        node_id: i32,
        broker_epoch: i64,
    },
    DescribeQuorum,
    /// A broker about to stop asks to be fenced with its leaderships moved.
    ControlledShutdown {
        node_id: i32,
        broker_epoch: i64,
    },
    /// A partition leader asks for a new ISR.
    AlterPartition {
        topic_id: uuid::Uuid,
        partition: i32,
        request: super::partition_change::AlterPartitionRequest,
    },
    /// ElectLeaders: `topics` None is every partition.
    ElectLeaders {
        election: super::leader_election::ElectionType,
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    AlterPartitionReassignments {
        topics: Vec<super::TopicReassignment>,
        allow_replication_factor_change: bool,
    },
    /// A broker-only node asks to receive the metadata log as a non-voting member (an
    /// openraft learner, Kafka's observer), the leader pushing it to `address`.
    AddLearner {
        node_id: i32,
        address: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ControllerReply {
    /// The leader's last applied log index once the call was done: the caller waits until
    /// its own image got that far, so it reads its own write.
    pub applied_index: Option<u64>,
    /// `Err`: the leader could not run the call (it lost leadership, a write timed out);
    /// the caller answers NOT_CONTROLLER, which clients retry.
    pub result: Result<ReplyBody, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ReplyBody {
    Topics(Vec<Result<TopicImage, ApiError>>),
    PartitionCounts(Vec<Result<usize, ApiError>>),
    ProducerIds { first_id: i64 },
    Configs(Vec<Result<(), ApiError>>),
    ScramCredentials(super::ScramResults),
    Registered { broker_epoch: i64 },
    Heartbeat(Result<(), ApiError>),
    Quorum(QuorumDescription),
    AlterPartition(Result<super::replication_control::AlterPartitionAnswer, i16>),
    Elections(Vec<super::leader_election::TopicElections>),
    Reassignments(Vec<Vec<Result<(), ApiError>>>),
    LearnerAdded,
}

/// DescribeQuorum's view of the metadata log, from the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader_id: i32,
    /// The Raft term (KRaft's leader epoch).
    pub leader_epoch: i32,
    /// The committed log end (exclusive), as Kafka's high watermark.
    pub high_watermark: i64,
    pub voters: Vec<ReplicaState>,
    /// The learners (broker-only nodes), Kafka's observers.
    pub observers: Vec<ReplicaState>,
    /// Each voter's controller endpoint: (node id, listener name, host, port).
    pub endpoints: Vec<(i32, String, String, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub replica_id: i32,
    /// Exclusive end of the replica's log as the leader knows it, -1 if unknown.
    pub log_end_offset: i64,
    /// When it last answered the leader (ms since the epoch), -1 if unknown or the leader.
    pub last_fetch_timestamp: i64,
    /// When it last held everything the leader had, -1 if unknown.
    pub last_caught_up_timestamp: i64,
}
