//! The metadata quorum: an ordered log of metadata records replicated by openraft
//! (one voter in the embedded default), stored in RocksDB under `<data dir>/meta`, and
//! applied to an in-memory [`MetadataImage`] that the request handlers read.
//!
//! - `records`: the log payload ([`MetadataRecord`] batches) and the pure apply function.
//! - `controller`: request validation and placement (Kafka's error codes), also pure.
//! - `partition_change`: the controller's pure leader/ISR/ELR decisions for one partition.
//! - `store`: the Raft log on RocksDB; `state_machine`: the image and its snapshots.
//! - `network`: the Raft transport (none yet: a single voter needs no peers).
//!
//! [`MetadataQuorum`] ties them together: controller operations run one at a time under an
//! async lock (plan against the current image, then write), so two concurrent requests can
//! never both pass validation for the same name.

mod controller;
pub mod internal_topics;
mod network;
pub mod partition_change;
mod records;
mod state_machine;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{Fatal, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{watch, Mutex, MutexGuard};
use tokio::time::Instant;
use uuid::Uuid;

/// Kafka's `Uuid.randomUuid` text form, also used for `meta.properties` `directory.id`.
pub(crate) use controller::new_cluster_id as new_kafka_uuid;
pub(crate) use controller::validate_topic_name;
pub use controller::{MAX_PARTITIONS_PER_BATCH, MAX_PRODUCER_ID_BLOCK};
pub use records::{apply_batch, BatchOutcome, MetadataRecord, RecordBatch};

/// One resource's planned config change: its whole new override map.
pub type ConfigChange = (ConfigTarget, BTreeMap<String, String>);

use controller::codes;
use network::NoPeers;
use state_machine::StateMachine;
use store::LogStore;

openraft::declare_raft_types!(
    /// openraft's type parameters: a log entry carries one [`RecordBatch`]; node ids are
    /// broker ids (non-negative `i32` widened to `u64`).
    pub(crate) TypeConfig:
        D = RecordBatch,
        R = BatchOutcome,
        NodeId = u64,
        Node = BasicNode,
);

/// Raft timing: short enough that a lone voter without a leader elects itself well within
/// a second, with heartbeats well under the election timeout so that (future) followers
/// do not start needless elections.
const HEARTBEAT_INTERVAL_MS: u64 = 100;
const ELECTION_TIMEOUT_MIN_MS: u64 = 300;
const ELECTION_TIMEOUT_MAX_MS: u64 = 600;
/// Snapshot (and let openraft purge the log) every this many entries.
const SNAPSHOT_EVERY_LOGS: u64 = 1_000;
/// Entries kept behind a snapshot, for followers that are only slightly behind.
const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 100;

/// How long `start` waits for this node to lead and catch up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an operation waits for its write to commit (only a lost quorum makes it slow).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `shutdown` waits for openraft's tasks to release the database.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Eligible leader replicas (KIP-966): replicas that left the ISR while it was below
    /// `min.insync.replicas` and so still hold every committed record; a leader may be
    /// elected from them when the ISR is empty. Absent from images written before
    /// replication, hence the serde defaults.
    #[serde(default)]
    pub elr: Vec<i32>,
    /// KIP-966's last known ELR: replicas of the ELR that may have lost data since.
    #[serde(default)]
    pub last_known_elr: Vec<i32>,
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
    /// Dynamic broker configs (AlterConfigs on a BROKER resource): the cluster-wide
    /// default (`--entity-default`) and per node id. Absent from images written before
    /// they existed, hence the serde defaults.
    #[serde(default)]
    pub default_broker_configs: BTreeMap<String, String>,
    #[serde(default)]
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
}

impl MetadataImage {
    /// The dynamic configs of node `node_id`: (cluster default, per broker).
    pub fn dynamic_broker_configs(
        &self,
        node_id: i32,
    ) -> (&BTreeMap<String, String>, &BTreeMap<String, String>) {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        (
            &self.default_broker_configs,
            self.broker_configs.get(&node_id).unwrap_or(&EMPTY),
        )
    }
}

/// Whose config overrides a [`MetadataRecord::SetConfigs`] replaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigTarget {
    /// A topic, by id (a new topic of the same name is another resource).
    Topic { topic_id: Uuid },
    /// The cluster-wide dynamic broker default (Kafka's empty broker name).
    BrokerDefault,
    /// One broker's dynamic config.
    Broker { node_id: i32 },
}

pub struct QuorumConfig {
    pub node_id: i32,
    /// The broker's data dir; the quorum keeps its RocksDB under `meta/` inside it.
    pub data_dir: PathBuf,
    /// What clients are told to connect to for this node.
    pub advertised: SocketAddr,
    pub advertised_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

/// CreatePartitions for one topic: grow it to `count` partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePartitionsRequest {
    pub name: String,
    pub count: i32,
    /// Replicas of each new partition, in order; None for automatic placement.
    pub assignments: Option<Vec<Vec<i32>>>,
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
    inner: Arc<Inner>,
}

struct Inner {
    node_id: i32,
    raft: Raft<TypeConfig>,
    /// Latest applied image, published by the state machine.
    images: watch::Receiver<Arc<MetadataImage>>,
    /// Serializes controller operations: each plans against the image and writes while
    /// holding it.
    ops: Mutex<()>,
    closed: AtomicBool,
    /// `None` once shut down; the lock also makes concurrent `shutdown` calls wait for the
    /// first one.
    db: Mutex<Option<Arc<DB>>>,
}

impl MetadataQuorum {
    /// Opens RocksDB, starts openraft, initialises a fresh single-voter cluster (cluster
    /// id, this broker's registration), and returns once this node serves metadata.
    pub async fn start(config: QuorumConfig) -> Result<MetadataQuorum, MetadataError> {
        let raft_id = u64::try_from(config.node_id).map_err(|_| {
            MetadataError::Raft(format!("node id {} must not be negative", config.node_id))
        })?;
        let raft_config = openraft::Config {
            cluster_name: "millrace-metadata".to_string(),
            heartbeat_interval: HEARTBEAT_INTERVAL_MS,
            election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_LOGS),
            max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetadataError::Raft(format!("raft config: {e}")))?;

        let db = store::open_db(&config.data_dir.join("meta"))?;
        let (state_machine, images) = StateMachine::open(db.clone())?;
        let raft = Raft::new(
            raft_id,
            Arc::new(raft_config),
            NoPeers,
            LogStore::new(db.clone()),
            state_machine,
        )
        .await
        .map_err(fatal)?;
        let quorum = MetadataQuorum {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                raft,
                images,
                ops: Mutex::new(()),
                closed: AtomicBool::new(false),
                db: Mutex::new(Some(db)),
            }),
        };
        match quorum.bootstrap(&config, raft_id).await {
            Ok(()) => Ok(quorum),
            Err(e) => {
                quorum.shutdown().await;
                Err(e)
            }
        }
    }

    /// Forms the cluster on a fresh store, waits until this node leads with everything
    /// committed applied, then records what a fresh cluster or a moved broker lacks.
    async fn bootstrap(&self, config: &QuorumConfig, raft_id: u64) -> Result<(), MetadataError> {
        let raft = &self.inner.raft;
        if !raft.is_initialized().await.map_err(fatal)? {
            // The node's address is what a future transport dials (see `network`).
            let addr = format!("{}:{}", config.advertised_host, config.advertised.port());
            let members = BTreeMap::from([(raft_id, BasicNode::new(addr))]);
            match raft.initialize(members).await {
                // Not allowed: the store already holds a cluster, which is what we want.
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(raft_error(e)),
            }
        }

        let deadline = Instant::now() + START_TIMEOUT;
        raft.wait(Some(START_TIMEOUT))
            .state(ServerState::Leader, "metadata quorum start")
            .await
            .map_err(|e| {
                MetadataError::Raft(format!(
                    "node {} did not become metadata leader within {START_TIMEOUT:?} (is \
                     it the node id {} was created with?): {e}",
                    config.node_id,
                    config.data_dir.display()
                ))
            })?;
        tokio::time::timeout_at(deadline, raft.ensure_linearizable())
            .await
            .map_err(|_| {
                MetadataError::Raft(format!("metadata log not applied within {START_TIMEOUT:?}"))
            })?
            .map_err(raft_error)?;

        let _op = self.inner.ops.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        if image.cluster_id.is_empty() {
            let cluster_id = controller::new_cluster_id();
            tracing::info!(%cluster_id, "initialising a new metadata cluster");
            records.push(MetadataRecord::ClusterInit { cluster_id });
        }
        let registration = BrokerRegistration {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: i32::from(config.advertised.port()),
            rack: None,
        };
        let registered = image
            .brokers
            .get(&config.node_id)
            .is_some_and(|r| r.host == registration.host && r.port == registration.port);
        if !registered {
            records.push(MetadataRecord::RegisterBroker(registration));
        }
        if !records.is_empty() {
            self.write(records).await?;
        }
        Ok(())
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.images.borrow().clone()
    }

    /// A receiver that reports changes published after this call.
    pub fn watch(&self) -> watch::Receiver<Arc<MetadataImage>> {
        let mut receiver = self.inner.images.clone();
        receiver.mark_unchanged();
        receiver
    }

    /// Validates, writes and applies the topics; one result per request, in order.
    ///
    /// All topics that pass validation are written in one log entry. With `validate_only`
    /// nothing is written and the successes are the topics that would have been created.
    pub async fn create_topics(
        &self,
        requests: Vec<CreateTopicRequest>,
        defaults: &TopicDefaults,
        validate_only: bool,
    ) -> Result<Vec<Result<Arc<TopicImage>, ApiError>>, MetadataError> {
        let _op = self.begin_op().await?;
        let planned = controller::plan_create_topics(&self.image(), &requests, defaults);
        let records: Vec<MetadataRecord> = planned
            .iter()
            .flatten()
            .map(|topic| MetadataRecord::CreateTopic(topic.clone()))
            .collect();
        if validate_only || records.is_empty() {
            return Ok(planned.into_iter().map(|r| r.map(Arc::new)).collect());
        }
        self.write(records).await?;
        // Answer with the image's own copies; a topic missing there was refused by apply,
        // which the lock makes impossible unless the image moved under us.
        let image = self.image();
        Ok(planned
            .into_iter()
            .map(|result| {
                let topic = result?;
                match image.topics.get(&topic.name) {
                    Some(created) if created.topic_id == topic.topic_id => Ok(created.clone()),
                    _ => Err(not_applied(&topic.name)),
                }
            })
            .collect())
    }

    /// Deletes topics by name or id; one result per reference, in order, with the deleted
    /// topic on success. All deletions are written in one log entry.
    pub async fn delete_topics(
        &self,
        topics: Vec<TopicRef>,
    ) -> Result<Vec<Result<Arc<TopicImage>, ApiError>>, MetadataError> {
        let _op = self.begin_op().await?;
        let planned = controller::plan_delete_topics(&self.image(), &topics);
        // A topic named once by name and once by id is deleted once.
        let ids: BTreeSet<Uuid> = planned.iter().flatten().map(|t| t.topic_id).collect();
        if ids.is_empty() {
            return Ok(planned);
        }
        let records = ids
            .into_iter()
            .map(|topic_id| MetadataRecord::DeleteTopic { topic_id })
            .collect();
        self.write(records).await?;
        let image = self.image();
        Ok(planned
            .into_iter()
            .map(|result| {
                let topic = result?;
                if image.topic_names_by_id.contains_key(&topic.topic_id) {
                    Err(not_applied(&topic.name))
                } else {
                    Ok(topic)
                }
            })
            .collect())
    }

    /// Grows topics (CreatePartitions); one result per request, in order: the topic's
    /// partition count after it. All growths that pass validation are written in one log
    /// entry; with `validate_only` nothing is written.
    pub async fn create_partitions(
        &self,
        requests: Vec<CreatePartitionsRequest>,
        validate_only: bool,
    ) -> Result<Vec<Result<usize, ApiError>>, MetadataError> {
        let _op = self.begin_op().await?;
        let planned = controller::plan_create_partitions(&self.image(), &requests);
        let records: Vec<MetadataRecord> = planned
            .iter()
            .flatten()
            .map(|(topic_id, partitions)| MetadataRecord::CreatePartitions {
                topic_id: *topic_id,
                partitions: partitions.clone(),
            })
            .collect();
        if !validate_only && !records.is_empty() {
            self.write(records).await?;
        }
        let image = self.image();
        Ok(planned
            .into_iter()
            .zip(&requests)
            .map(|(result, request)| {
                let (_, partitions) = result?;
                let wanted = partitions.last().map_or(0, |p| p.partition as usize + 1);
                if validate_only {
                    return Ok(wanted);
                }
                // The lock makes a refusal by apply impossible unless the image moved.
                match image.topics.get(&request.name) {
                    Some(topic) if topic.partitions.len() == wanted => Ok(wanted),
                    _ => Err(not_applied(&request.name)),
                }
            })
            .collect())
    }

    /// Reserves `count` producer ids for this broker; returns the first one.
    ///
    /// `count` must be within `1..=MAX_PRODUCER_ID_BLOCK`; a value outside is a caller bug
    /// and is refused with `MetadataError::Raft` (the error type has no better variant).
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, MetadataError> {
        if !(1..=MAX_PRODUCER_ID_BLOCK).contains(&count) {
            return Err(MetadataError::Raft(format!(
                "producer id block of {count} is outside 1..={MAX_PRODUCER_ID_BLOCK}"
            )));
        }
        let _op = self.begin_op().await?;
        let first_id = self.image().next_producer_id;
        if first_id.checked_add(count).is_none() {
            return Err(MetadataError::Raft("producer ids exhausted".to_string()));
        }
        let outcome = self
            .write(vec![MetadataRecord::AllocateProducerIds {
                broker_id: self.inner.node_id,
                first_id,
                count,
            }])
            .await?;
        if outcome.accepted != [true] {
            return Err(MetadataError::Raft(format!(
                "producer id block at {first_id} was refused by the state machine"
            )));
        }
        Ok(first_id)
    }

    /// AlterConfigs / IncrementalAlterConfigs: `plan` computes, against the current image
    /// and under the operation lock (so concurrent incremental changes compose), each
    /// resource's new override map or its error. Every planned change is written in one
    /// log entry (unless `validate_only`); one result per planned resource, in order.
    pub async fn alter_configs<F>(
        &self,
        plan: F,
        validate_only: bool,
    ) -> Result<Vec<Result<(), ApiError>>, MetadataError>
    where
        F: FnOnce(&MetadataImage) -> Vec<Result<ConfigChange, ApiError>>,
    {
        let _op = self.begin_op().await?;
        let planned = plan(&self.image());
        let records: Vec<MetadataRecord> = planned
            .iter()
            .flatten()
            .map(|(target, configs)| MetadataRecord::SetConfigs {
                target: target.clone(),
                configs: configs.clone(),
            })
            .collect();
        let outcome = if validate_only || records.is_empty() {
            None
        } else {
            Some(self.write(records).await?)
        };
        let mut accepted = outcome.iter().flat_map(|o| o.accepted.iter().copied());
        Ok(planned
            .into_iter()
            .map(|result| {
                let (target, _) = result?;
                // Under the lock apply can only refuse if the image moved (a topic deleted).
                if outcome.is_some() && accepted.next() != Some(true) {
                    return Err(ApiError {
                        code: codes::UNKNOWN_SERVER_ERROR,
                        message: format!("The config change of {target:?} was not applied."),
                    });
                }
                Ok(())
            })
            .collect())
    }

    /// Stops openraft and closes RocksDB. Idempotent; later operations fail with
    /// [`MetadataError::ShuttingDown`] while `image()` keeps answering the last image.
    pub async fn shutdown(&self) {
        let mut db_slot = self.inner.db.lock().await;
        let Some(db) = db_slot.take() else {
            return;
        };
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!("metadata raft did not stop cleanly: {e}");
        }
        // openraft's state machine task drops its handles shortly after the core stops;
        // RocksDB closes when the last one goes, and must be closed before the directory
        // can be opened again (same process restarts, tests).
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while Arc::strong_count(&db) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Err(e) = db.flush_wal(true) {
            tracing::warn!("syncing the metadata WAL at shutdown: {e}");
        }
        if Arc::strong_count(&db) > 1 {
            tracing::warn!("metadata RocksDB still in use at shutdown; it closes when released");
        }
    }

    /// Takes the operation lock, then makes sure this node still leads and its image holds
    /// every committed entry, so the plan is made against the latest metadata.
    async fn begin_op(&self) -> Result<MutexGuard<'_, ()>, MetadataError> {
        let guard = self.inner.ops.lock().await;
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(MetadataError::ShuttingDown);
        }
        tokio::time::timeout(WRITE_TIMEOUT, self.inner.raft.ensure_linearizable())
            .await
            .map_err(|_| {
                MetadataError::Raft(format!("leadership not confirmed within {WRITE_TIMEOUT:?}"))
            })?
            .map_err(raft_error)?;
        Ok(guard)
    }

    /// Writes one log entry and returns once it is committed and applied (the new image is
    /// published by then).
    async fn write(&self, records: Vec<MetadataRecord>) -> Result<BatchOutcome, MetadataError> {
        let write = self.inner.raft.client_write(RecordBatch { records });
        let response = tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| {
                MetadataError::Raft(format!(
                    "metadata write not committed within {WRITE_TIMEOUT:?}"
                ))
            })?
            .map_err(raft_error)?;
        Ok(response.data)
    }
}

fn not_applied(topic: &str) -> ApiError {
    ApiError {
        code: codes::UNKNOWN_SERVER_ERROR,
        message: format!("The change to topic '{topic}' was not applied."),
    }
}

fn fatal(e: Fatal<u64>) -> MetadataError {
    match e {
        Fatal::Stopped => MetadataError::ShuttingDown,
        Fatal::StorageError(e) => MetadataError::Storage(e.to_string()),
        Fatal::Panicked => MetadataError::Raft("metadata raft task panicked".to_string()),
    }
}

fn raft_error<E: std::fmt::Display>(e: RaftError<u64, E>) -> MetadataError {
    match e {
        RaftError::Fatal(e) => fatal(e),
        RaftError::APIError(e) => MetadataError::Raft(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tempfile::TempDir;

    use super::*;

    fn config(dir: &Path, node_id: i32, port: u16) -> QuorumConfig {
        QuorumConfig {
            node_id,
            data_dir: dir.to_path_buf(),
            advertised: SocketAddr::from(([127, 0, 0, 1], port)),
            advertised_host: "localhost".to_string(),
        }
    }

    async fn start(dir: &TempDir) -> MetadataQuorum {
        MetadataQuorum::start(config(dir.path(), 1, 9092))
            .await
            .unwrap()
    }

    const DEFAULTS: TopicDefaults = TopicDefaults {
        num_partitions: 3,
        replication_factor: 1,
    };

    fn topic(name: &str, num_partitions: i32) -> CreateTopicRequest {
        CreateTopicRequest {
            name: name.to_string(),
            num_partitions,
            replication_factor: -1,
            assignments: vec![],
            configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        }
    }

    async fn create(q: &MetadataQuorum, requests: Vec<CreateTopicRequest>) -> Vec<Arc<TopicImage>> {
        q.create_topics(requests, &DEFAULTS, false)
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test]
    async fn fresh_start_initialises_cluster() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let image = q.image();
        assert_eq!(image.cluster_id.len(), 22);
        assert_eq!(image.controller_id, 1);
        assert_eq!(
            image.brokers[&1],
            BrokerRegistration {
                node_id: 1,
                host: "localhost".to_string(),
                port: 9092,
                rack: None,
            }
        );
        assert_eq!(image.next_producer_id, 0);
        assert!(dir.path().join("meta").is_dir());
        q.shutdown().await;
    }

    #[tokio::test]
    async fn state_survives_restart() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let created = create(&q, vec![topic("a", 2), topic("b", 5)]).await;
        assert_eq!(q.allocate_producer_ids(1000).await.unwrap(), 0);
        let before = q.image();
        q.shutdown().await;

        // A new port: the broker's registration follows it.
        let q = MetadataQuorum::start(config(dir.path(), 1, 9093))
            .await
            .unwrap();
        let after = q.image();
        assert_eq!(after.cluster_id, before.cluster_id);
        assert_eq!(after.topics, before.topics);
        assert_eq!(after.topic_names_by_id, before.topic_names_by_id);
        assert_eq!(after.next_producer_id, 1000);
        assert_eq!(after.controller_id, 1);
        assert_eq!(after.brokers[&1].port, 9093);
        assert_eq!(*after.topics["a"], *created[0]);
        assert_eq!(after.topics["b"].configs["retention.ms"], "1000");

        // And it keeps working.
        create(&q, vec![topic("c", 1)]).await;
        assert_eq!(q.allocate_producer_ids(10).await.unwrap(), 1000);
        assert_eq!(q.image().topics.len(), 3);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn create_partitions_is_written_replayed_and_validate_only_writes_nothing() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let created = create(&q, vec![topic("grow", 1)]).await;
        let grow = |count| CreatePartitionsRequest {
            name: "grow".to_string(),
            count,
            assignments: None,
        };
        let dry = q.create_partitions(vec![grow(5)], true).await.unwrap();
        assert_eq!(dry, vec![Ok(5)]);
        assert_eq!(q.image().topics["grow"].partitions.len(), 1);
        let results = q
            .create_partitions(
                vec![
                    grow(3),
                    CreatePartitionsRequest {
                        name: "missing".to_string(),
                        ..grow(2)
                    },
                ],
                false,
            )
            .await
            .unwrap();
        assert_eq!(results[0], Ok(3));
        assert_eq!(
            results[1].as_ref().unwrap_err().code,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        let grown = q.image().topics["grow"].clone();
        assert_eq!(grown.partitions.len(), 3);
        assert_eq!(grown.topic_id, created[0].topic_id);
        assert_eq!(grown.configs, created[0].configs);
        q.shutdown().await;

        let q = start(&dir).await;
        assert_eq!(q.image().topics["grow"], grown);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn restart_from_snapshot_and_purged_log() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        create(&q, vec![topic("snap", 1)]).await;
        let raft = &q.inner.raft;
        raft.trigger().snapshot().await.unwrap();
        let applied = raft.metrics().borrow().last_applied;
        raft.wait(Some(Duration::from_secs(10)))
            .snapshot(applied.unwrap(), "snapshot built")
            .await
            .unwrap();
        raft.trigger()
            .purge_log(applied.unwrap().index)
            .await
            .unwrap();
        raft.wait(Some(Duration::from_secs(10)))
            .purged(applied, "log purged")
            .await
            .unwrap();
        // Written after the snapshot: restored by replaying the log.
        create(&q, vec![topic("after", 1)]).await;
        let before = q.image();
        q.shutdown().await;

        let q = start(&dir).await;
        let metrics = q.inner.raft.metrics().borrow().clone();
        assert_eq!(metrics.snapshot, applied);
        assert_eq!(metrics.purged, applied);
        let after = q.image();
        assert_eq!(after.cluster_id, before.cluster_id);
        assert_eq!(after.topics, before.topics);
        assert_eq!(after.topics.len(), 2);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn delete_by_name_and_id() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let created = create(&q, vec![topic("x", 1), topic("y", 1)]).await;
        let results = q
            .delete_topics(vec![
                TopicRef::Name("x".to_string()),
                TopicRef::Id(created[1].topic_id),
                TopicRef::Name("nope".to_string()),
                TopicRef::Id(Uuid::new_v4()),
            ])
            .await
            .unwrap();
        assert_eq!(results[0].as_ref().unwrap().topic_id, created[0].topic_id);
        assert_eq!(results[1].as_ref().unwrap().name, "y");
        assert_eq!(results[2].as_ref().unwrap_err().code, 3);
        assert_eq!(results[3].as_ref().unwrap_err().code, 100);
        let image = q.image();
        assert!(image.topics.is_empty());
        assert!(image.topic_names_by_id.is_empty());
        // The same name can be created again, with a new id.
        let again = create(&q, vec![topic("x", 1)]).await;
        assert_ne!(again[0].topic_id, created[0].topic_id);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn validate_only_writes_nothing() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let last_log = q.inner.raft.metrics().borrow().last_log_index;
        let results = q
            .create_topics(vec![topic("v", 4), topic("bad name", 1)], &DEFAULTS, true)
            .await
            .unwrap();
        let v = results[0].as_ref().unwrap();
        assert_eq!(v.partitions.len(), 4);
        assert!(!v.topic_id.is_nil());
        assert_eq!(results[1].as_ref().unwrap_err().code, 17);
        assert!(q.image().topics.is_empty());
        assert_eq!(q.inner.raft.metrics().borrow().last_log_index, last_log);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn create_errors_and_existing_topic() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        create(&q, vec![topic("t", 1)]).await;
        let results = q
            .create_topics(
                vec![
                    topic("t", 1),
                    topic("u", 0),
                    CreateTopicRequest {
                        replication_factor: 2,
                        ..topic("w", 1)
                    },
                    topic("ok", -1),
                ],
                &DEFAULTS,
                false,
            )
            .await
            .unwrap();
        let e = results[0].as_ref().unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (36, "Topic 't' already exists.")
        );
        assert_eq!(results[1].as_ref().unwrap_err().code, 37);
        assert_eq!(results[2].as_ref().unwrap_err().code, 38);
        assert_eq!(results[3].as_ref().unwrap().partitions.len(), 3);
        assert_eq!(q.image().topics.len(), 2);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn producer_ids_unique_across_restart() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let mut ranges = Vec::new();
        for count in [1, 1000, 7] {
            ranges.push((q.allocate_producer_ids(count).await.unwrap(), count));
        }
        assert!(q.allocate_producer_ids(0).await.is_err());
        assert!(q
            .allocate_producer_ids(MAX_PRODUCER_ID_BLOCK + 1)
            .await
            .is_err());
        q.shutdown().await;
        let q = start(&dir).await;
        ranges.push((q.allocate_producer_ids(5).await.unwrap(), 5));
        // Contiguous, increasing, never overlapping.
        let mut next = 0;
        for (first, count) in ranges {
            assert_eq!(first, next);
            next = first + count;
        }
        assert_eq!(q.image().next_producer_id, next);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn watchers_see_created_topics() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let mut rx = q.watch();
        assert!(!rx.has_changed().unwrap());
        create(&q, vec![topic("seen", 1)]).await;
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow_and_update().topics.contains_key("seen"));
        q.shutdown().await;
    }

    #[tokio::test]
    async fn concurrent_creates_of_one_name() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let attempts: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    q.create_topics(vec![topic("race", 2)], &DEFAULTS, false)
                        .await
                        .unwrap()
                        .remove(0)
                })
            })
            .collect();
        let mut wins = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(_) => wins += 1,
                Err(e) => assert_eq!(e.code, 36),
            }
        }
        assert_eq!(wins, 1);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_is_idempotent_and_stops_operations() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let cluster_id = q.image().cluster_id.clone();
        let other = q.clone();
        tokio::join!(q.shutdown(), other.shutdown());
        q.shutdown().await;
        assert!(matches!(
            q.allocate_producer_ids(1).await,
            Err(MetadataError::ShuttingDown)
        ));
        assert!(matches!(
            q.create_topics(vec![topic("late", 1)], &DEFAULTS, false)
                .await,
            Err(MetadataError::ShuttingDown)
        ));
        // The last image stays readable, and the directory can be opened again.
        assert_eq!(q.image().cluster_id, cluster_id);
        let q = start(&dir).await;
        assert_eq!(q.image().cluster_id, cluster_id);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn corrupt_log_fails_start_with_storage_error() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        create(&q, vec![topic("t", 1)]).await;
        let last = q.inner.raft.metrics().borrow().last_log_index.unwrap();
        q.shutdown().await;
        {
            let db = store::open_db(&dir.path().join("meta")).unwrap();
            let logs = db.cf_handle(store::CF_LOGS).unwrap();
            db.put_cf(logs, last.to_be_bytes(), b"\xff garbage")
                .unwrap();
        }
        match MetadataQuorum::start(config(dir.path(), 1, 9092)).await {
            Err(MetadataError::Storage(_)) => {}
            Err(e) => panic!("expected a storage error, got {e}"),
            Ok(_) => panic!("started on a corrupt log"),
        }
    }

    #[tokio::test]
    async fn negative_node_id_is_refused() {
        let dir = TempDir::new().unwrap();
        assert!(MetadataQuorum::start(config(dir.path(), -1, 9092))
            .await
            .is_err());
    }
}
