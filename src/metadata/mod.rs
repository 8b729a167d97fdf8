//! The metadata quorum: an ordered log of metadata records replicated by openraft
//! (one voter in the embedded default), stored in RocksDB under `<data dir>/meta`, and
//! applied to an in-memory [`MetadataImage`] that the request handlers read.
//!
//! CONTRACT STUB: the signatures below are the API the broker codes against; the bodies
//! are being written on the `metadata` branch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, Error)]
pub enum MetadataError {
    #[error("metadata storage: {0}")]
    Storage(String),
    #[error("metadata quorum: {0}")]
    Raft(String),
    #[error("metadata quorum is shutting down")]
    ShuttingDown,
}

/// A Kafka error code with its message, as the controller answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: i16,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionRecord>,
    /// Topic-level config overrides only (broker defaults are not copied in).
    pub configs: BTreeMap<String, String>,
}

/// What every handler reads: the state after the last applied metadata record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub topic_names_by_id: BTreeMap<Uuid, String>,
    /// First producer id not yet handed out to any broker.
    pub next_producer_id: i64,
}

pub struct QuorumConfig {
    pub node_id: i32,
    /// The broker's data dir; the quorum keeps its RocksDB under `meta/` inside it.
    pub data_dir: PathBuf,
    /// What clients are told to connect to for this node.
    pub advertised: SocketAddr,
    pub advertised_host: String,
}

pub struct CreateTopicRequest {
    pub name: String,
    /// -1: the broker default (`num.partitions`).
    pub num_partitions: i32,
    /// -1: the broker default (`default.replication.factor`).
    pub replication_factor: i16,
    /// Manual assignment: (partition, broker ids); empty for automatic placement.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Already validated topic-level configs.
    pub configs: BTreeMap<String, String>,
}

pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i16,
}

pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// A cheap, cloneable handle on the running quorum.
#[derive(Clone)]
pub struct MetadataQuorum {
    _private: (),
}

impl MetadataQuorum {
    /// Opens RocksDB, starts openraft, initialises a fresh single-voter cluster (cluster
    /// id, this broker's registration), and returns once this node serves metadata.
    pub async fn start(_config: QuorumConfig) -> Result<MetadataQuorum, MetadataError> {
        todo!("metadata branch")
    }
    pub fn image(&self) -> Arc<MetadataImage> {
        todo!("metadata branch")
    }
    pub fn watch(&self) -> watch::Receiver<Arc<MetadataImage>> {
        todo!("metadata branch")
    }
    /// Validates, writes and applies the topics; one result per request, in order.
    pub async fn create_topics(
        &self,
        _requests: Vec<CreateTopicRequest>,
        _defaults: &TopicDefaults,
        _validate_only: bool,
    ) -> Result<Vec<Result<Arc<TopicImage>, ApiError>>, MetadataError> {
        todo!("metadata branch")
    }
    pub async fn delete_topics(
        &self,
        _topics: Vec<TopicRef>,
    ) -> Result<Vec<Result<Arc<TopicImage>, ApiError>>, MetadataError> {
        todo!("metadata branch")
    }
    /// Reserves `count` producer ids for this broker; returns the first one.
    pub async fn allocate_producer_ids(&self, _count: i64) -> Result<i64, MetadataError> {
        todo!("metadata branch")
    }
    pub async fn shutdown(&self) {
        todo!("metadata branch")
    }
}
