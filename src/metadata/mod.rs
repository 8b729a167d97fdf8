//! The metadata quorum: an ordered log of metadata records replicated by openraft
//! (one voter in the embedded default), stored in RocksDB under `<data dir>/meta`, and
//! applied to an in-memory [`MetadataImage`] that the request handlers read.
//!
//! - `records`: the log payload ([`MetadataRecord`] batches) and the pure apply function.
//! - `controller`: request validation and placement (Kafka's error codes), also pure.
//! - `partition_change`: the controller's pure leader/ISR/ELR decisions for one partition.
//! - `leader_election`: ElectLeaders and the controller's leader balancing, also pure.
//! - `store`: the Raft log on RocksDB; `state_machine`: the image and its snapshots.
//! - `network`: the transport between voters on the controller listener (Raft RPCs and
//!   forwarded controller calls); `forward`: those calls and their answers.
//!
//! [`MetadataQuorum`] ties them together: controller operations run on the quorum leader
//! (a follower forwards them), one at a time under an async lock (plan against the
//! current image, then write), so two concurrent requests can never both pass validation
//! for the same name. The leader also keeps the brokers' heartbeat sessions and fences
//! the brokers whose heartbeats stop.

mod controller;
mod forward;
pub mod internal_topics;
pub mod leader_election;
mod network;
pub mod partition_change;
mod reassignment;
mod records;
mod replication_control;
mod scram_control;
mod state_machine;
mod store;
#[cfg(test)]
mod test_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{Fatal, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, ServerState, SnapshotPolicy};
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex, MutexGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::scram::{ScramCredential, ScramMechanism};
use crate::config::cluster::{join_host_port, Voter};
use crate::config::BrokerConfig;
use crate::dynamic_config::{self, Alteration, Resource};

/// Kafka's `Uuid.randomUuid` text form, also used for `meta.properties` `directory.id`.
pub(crate) use controller::new_cluster_id as new_kafka_uuid;
pub(crate) use controller::validate_topic_name;
pub use controller::{MAX_PARTITIONS_PER_BATCH, MAX_PRODUCER_ID_BLOCK};
pub use reassignment::{ongoing as ongoing_reassignments, OngoingReassignment, TopicReassignment};
pub use records::{apply_batch, BatchOutcome, MetadataRecord, RecordBatch};
pub use replication_control::AlterPartitionAnswer;
pub use scram_control::{ScramDeletion, ScramResults, ScramUpsertion};

/// One resource's planned config change: its whole new override map.
pub type ConfigChange = (ConfigTarget, BTreeMap<String, String>);

pub use forward::{QuorumDescription, ReplicaState};

use controller::codes;
use forward::{ControllerCall, ControllerReply, ReplyBody};
use network::{CallError, LeaderContact, PeerClient, PeerContacts, TcpNetwork, TransportLimits};
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

/// How long a single voter's `start` waits for itself to lead and catch up (a cluster
/// waits for its peers as long as it takes).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a controller call waits for a leader to be known before NOT_CONTROLLER: a
/// few election timeouts.
const LEADER_WAIT: Duration = Duration::from_millis(4 * ELECTION_TIMEOUT_MAX_MS);
/// Idle connections kept per leader address for forwarded calls.
const MAX_IDLE_FORWARDERS: usize = 4;
/// How long an operation waits for its write to commit (only a lost quorum makes it slow).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The least time a heartbeat may take before the next one is sent instead.
const MIN_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// A learner whose broker has not heartbeated for this long is removed from the quorum
/// (Kafka's leader forgets such an observer: `LeaderState.OBSERVER_SESSION_TIMEOUT_MS`,
/// a constant there too); should it come back, it joins again. Short in unit tests.
const OBSERVER_SESSION_TIMEOUT: Duration = if cfg!(test) {
    Duration::from_secs(2)
} else {
    Duration::from_secs(300)
};
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
    /// This node does not lead the quorum and the leader could not be reached, or
    /// leadership moved during the call: clients retry (NOT_CONTROLLER).
    #[error("not the metadata quorum leader: {0}")]
    NotController(String),
}

/// A Kafka error code with its message, as the controller answers a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: i16,
    pub message: String,
}

/// A broker as the controller registered it (KRaft's BrokerRegistrationRecord): `host`
/// and `port` are its advertised client endpoint (what Metadata lists). Fields after
/// `rack` are absent from records written before they existed, hence the serde defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Chosen by the controller at registration, larger than any earlier epoch of any
    /// broker; heartbeats name it, so a restarted process is told apart from its
    /// predecessor.
    #[serde(default)]
    pub broker_epoch: i64,
    /// Random per process start.
    #[serde(default)]
    pub incarnation_id: Uuid,
    /// Every advertised listener (name, host, port).
    #[serde(default)]
    pub listeners: Vec<ListenerEndpoint>,
    /// Fenced by the active controller when its heartbeats stopped for
    /// `broker.session.timeout.ms`: not offered to clients nor given new replicas.
    #[serde(default)]
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
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
    /// An ongoing reassignment (`reassignment.rs`): replicas being added (already in
    /// `replicas`, catching up) and being removed (still in `replicas` until every
    /// adding one is in sync). Both empty when none is in progress.
    #[serde(default)]
    pub adding_replicas: Vec<i32>,
    #[serde(default)]
    pub removing_replicas: Vec<i32>,
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
    /// SASL/SCRAM credentials by user and mechanism (AlterUserScramCredentials).
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

impl MetadataImage {
    /// The registered brokers clients may use: not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn is_live_broker(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| !b.fenced)
    }

    /// The controller id Metadata and DescribeCluster report on broker `this_node`: the
    /// quorum leader when it is a live broker (combined mode). A controller-only leader is
    /// no broker clients can reach, so, as Kafka's brokers do, a live broker (this one,
    /// which forwards controller requests) stands in for it.
    pub fn client_controller_id(&self, this_node: i32) -> i32 {
        if self.is_live_broker(self.controller_id) {
            self.controller_id
        } else if self.is_live_broker(this_node) {
            this_node
        } else {
            self.live_brokers().next().map_or(-1, |b| b.node_id)
        }
    }

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

    /// The credential a SCRAM exchange of `user` checks against.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        self.scram_credentials.get(user)?.get(&mechanism).cloned()
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePartitionsRequest {
    pub name: String,
    pub count: i32,
    /// Replicas of each new partition, in order; None for automatic placement.
    pub assignments: Option<Vec<Vec<i32>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The static config: roles, voters, listeners, session timings, and the base that
    /// AlterConfigs plans validate against.
    config: BrokerConfig,
    limits: TransportLimits,
    /// Latest applied image, published by the state machine.
    images: watch::Receiver<Arc<MetadataImage>>,
    /// Serializes controller operations: each plans against the image and writes while
    /// holding it.
    ops: Mutex<()>,
    closed: AtomicBool,
    /// Set by a controlled shutdown: heartbeats stop, so the controller's fence stands.
    shutting_down: AtomicBool,
    /// `None` once shut down; the lock also makes concurrent `shutdown` calls wait for the
    /// first one.
    db: Mutex<Option<Arc<DB>>>,
    /// Idle connections to the leader(s), by address, for forwarded calls: a call takes
    /// one (or dials) and puts it back after, so calls never wait for each other.
    forwarders: std::sync::Mutex<HashMap<String, Vec<PeerClient>>>,
    contacts: PeerContacts,
    /// A broker-only node's address for the leader's Raft traffic (see `start`).
    learner_address: Option<String>,
    /// When a leader last sent this node entries (see `heartbeats`).
    leader_contact: LeaderContact,
    /// Active controller only: when each broker last heartbeated (monotonic), and the
    /// term these were collected in (a new term starts every session afresh).
    sessions: std::sync::Mutex<Sessions>,
    /// This broker's current registration epoch (-1 before it registered).
    broker_epoch: AtomicI64,
    incarnation_id: Uuid,
    /// Stops the controller listener, the heartbeat task and the controller duties.
    background: CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Sessions {
    term: Option<u64>,
    since: Option<Instant>,
    last_heartbeat: HashMap<i32, Instant>,
}

enum Route {
    Local,
    Leader { id: u64, addr: String },
}

impl MetadataQuorum {
    /// Opens RocksDB, starts openraft and the controller listener, forms the cluster on a
    /// fresh store (the configured voters, or this node alone), waits until a leader is
    /// known and (a broker) this node registered with its image caught up to that.
    /// A cancelled `stop` (the broker's shutdown) ends the wait with `ShuttingDown`.
    pub async fn start(
        config: &BrokerConfig,
        stop: &CancellationToken,
    ) -> Result<MetadataQuorum, MetadataError> {
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
            // A broker-only node is a learner: it must never stand for election.
            enable_elect: config.cluster.roles.controller,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetadataError::Raft(format!("raft config: {e}")))?;
        let cluster = &config.cluster;
        let limits = TransportLimits {
            max_frame_bytes: config.socket_request_max_bytes,
            connect_timeout: Duration::from_millis(cluster.quorum_request_timeout_ms),
            call_timeout: Duration::from_millis(cluster.controller_socket_timeout_ms),
        };
        // Bound before anything else opens, so a taken port fails start cleanly.
        let bind = |addr: std::net::SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                MetadataError::Raft(format!("cannot listen on controller listener {addr}: {e}"))
            })
        };
        let (controller_listener, learner_address) = if let Some(addr) = cluster.controller_bind {
            (Some(bind(addr).await?), None)
        } else if !cluster.roles.controller && cluster.is_multi_node() {
            // A broker-only node has no controller listener (Kafka forbids one), yet the
            // leader pushes the metadata log to its learners: it takes an ephemeral port on
            // its broker listener's host (reachable by the controllers, who reach its
            // advertised host anyway) and tells the leader that address when it joins.
            let listener = bind(std::net::SocketAddr::new(config.listener.ip(), 0)).await?;
            let port = listener
                .local_addr()
                .map_err(|e| MetadataError::Raft(format!("learner listener: {e}")))?
                .port();
            let address = join_host_port(&config.advertised_host, port);
            (Some(listener), Some(address))
        } else {
            (None, None)
        };

        let db = store::open_db(&config.data_dir.join("meta"))?;
        let (state_machine, images) = StateMachine::open(db.clone())?;
        let contacts = PeerContacts::default();
        let network = TcpNetwork {
            limits,
            contacts: contacts.clone(),
        };
        let raft = Raft::new(
            raft_id,
            Arc::new(raft_config),
            network,
            LogStore::new(db.clone()),
            state_machine,
        )
        .await
        .map_err(fatal)?;
        let quorum = MetadataQuorum {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                raft,
                config: config.clone(),
                limits,
                images,
                ops: Mutex::new(()),
                closed: AtomicBool::new(false),
                shutting_down: AtomicBool::new(false),
                db: Mutex::new(Some(db)),
                forwarders: Default::default(),
                contacts,
                learner_address,
                leader_contact: Arc::new(AtomicI64::new(crate::partition::now_ms())),
                sessions: Default::default(),
                broker_epoch: AtomicI64::new(-1),
                incarnation_id: Uuid::new_v4(),
                background: CancellationToken::new(),
                tasks: Default::default(),
            }),
        };
        if let Some(listener) = controller_listener {
            let serving = quorum.clone();
            let handler = move |call| {
                let quorum = serving.clone();
                async move { quorum.serve_call(call).await }
            };
            quorum.spawn(network::serve(
                listener,
                quorum.inner.raft.clone(),
                handler,
                limits,
                quorum.inner.leader_contact.clone(),
                quorum.inner.background.clone(),
            ));
        }
        if cluster.roles.controller {
            quorum.spawn(quorum.clone().controller_duties());
        }
        match quorum.bootstrap(raft_id, stop).await {
            Ok(()) => Ok(quorum),
            Err(e) => {
                quorum.shutdown().await;
                Err(e)
            }
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.push(handle);
        }
    }

    /// Forms the cluster on a fresh store, waits for a leader and the cluster id, then
    /// registers this broker and starts its heartbeats.
    async fn bootstrap(&self, raft_id: u64, stop: &CancellationToken) -> Result<(), MetadataError> {
        let raft = &self.inner.raft;
        let config = &self.inner.config;
        let cluster = &config.cluster;
        if cluster.roles.controller && !raft.is_initialized().await.map_err(fatal)? {
            let members: BTreeMap<u64, BasicNode> = if cluster.voters.is_empty() {
                // The single voter never dials itself; its address is informational.
                let addr = join_host_port(&config.advertised_host, config.advertised_port);
                BTreeMap::from([(raft_id, BasicNode::new(addr))])
            } else {
                // Every voter initialises with the same membership (openraft allows it);
                // the first elected leader's blank entry settles it.
                cluster
                    .voters
                    .iter()
                    .map(|v| (v.id as u64, BasicNode::new(v.address())))
                    .collect()
            };
            match raft.initialize(members).await {
                // Not allowed: the store already holds a cluster, which is what we want.
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(RaftError::Fatal(e)) => return Err(fatal(e)),
                Err(RaftError::APIError(e)) => return Err(MetadataError::Raft(e.to_string())),
            }
        }

        if !cluster.roles.controller {
            self.join_as_learner(stop).await?;
        }

        // A single voter can only wait for itself; a cluster waits for its peers as long
        // as it takes (they may start later), saying so now and then.
        let deadline = (!cluster.is_multi_node()).then(|| Instant::now() + START_TIMEOUT);
        let stuck = |what: &str| {
            MetadataError::Raft(format!(
                "{what} within {START_TIMEOUT:?} (is node {} the node id {} was created with?)",
                config.node_id,
                config.data_dir.display()
            ))
        };
        let mut images = self.inner.images.clone();
        let mut next_note = Instant::now() + Duration::from_secs(10);
        loop {
            let leader = raft.metrics().borrow().current_leader;
            if leader.is_some() && !images.borrow_and_update().cluster_id.is_empty() {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(stuck("no metadata leader elected"));
            }
            if stop.is_cancelled() {
                return Err(MetadataError::ShuttingDown);
            }
            if Instant::now() >= next_note {
                tracing::info!(
                    voters = ?cluster.voters.iter().map(Voter::address).collect::<Vec<_>>(),
                    "waiting for the metadata quorum to elect a leader"
                );
                next_note = Instant::now() + Duration::from_secs(10);
            }
            tokio::select! {
                _ = images.changed() => {}
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }

        if cluster.roles.broker {
            loop {
                let registered = tokio::select! {
                    registered = self.register() => registered,
                    _ = stop.cancelled() => Err(MetadataError::ShuttingDown),
                };
                match registered {
                    Ok(()) => break,
                    Err(e) if deadline.is_some_and(|d| Instant::now() >= d) => {
                        return Err(stuck(&format!("broker not registered ({e})")));
                    }
                    Err(MetadataError::ShuttingDown) => return Err(MetadataError::ShuttingDown),
                    Err(e) => {
                        tracing::info!(error = %e, "broker registration failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            self.spawn(self.clone().heartbeats());
        }
        Ok(())
    }

    /// A broker-only node asks the quorum leader to add it as a learner at its address
    /// (again after each restart: the address is new), trying each of the voters or
    /// bootstrap servers in turn until the leader accepts; it then receives the log.
    async fn join_as_learner(&self, stop: &CancellationToken) -> Result<(), MetadataError> {
        let cluster = &self.inner.config.cluster;
        let address = self
            .inner
            .learner_address
            .clone()
            .ok_or_else(|| MetadataError::Raft("a broker-only node needs a quorum".into()))?;
        let call = ControllerCall::AddLearner {
            node_id: self.inner.node_id,
            address: address.clone(),
        };
        let contacts = cluster.quorum_contacts();
        let mut next_note = Instant::now() + Duration::from_secs(10);
        loop {
            for contact in &contacts {
                if stop.is_cancelled() {
                    return Err(MetadataError::ShuttingDown);
                }
                let answer = tokio::select! {
                    answer = self.forward(contact, call.clone()) => answer,
                    _ = stop.cancelled() => return Err(MetadataError::ShuttingDown),
                };
                match answer {
                    Ok(ControllerReply {
                        result: Ok(ReplyBody::LearnerAdded),
                        ..
                    }) => {
                        tracing::info!(%address, via = %contact, "joined the metadata quorum as a learner");
                        return Ok(());
                    }
                    Ok(reply) => tracing::debug!(%contact, ?reply.result, "not added as learner"),
                    Err(error) => tracing::debug!(%contact, %error, "quorum contact unreachable"),
                }
            }
            if Instant::now() >= next_note {
                tracing::info!(
                    ?contacts,
                    "waiting for the metadata quorum leader to add this broker"
                );
                next_note = Instant::now() + Duration::from_secs(10);
            }
            tokio::select! {
                _ = stop.cancelled() => return Err(MetadataError::ShuttingDown),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Registers this broker (a new epoch) and waits until its own image holds that.
    async fn register(&self) -> Result<(), MetadataError> {
        let config = &self.inner.config;
        let registration = BrokerRegistration {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: i32::from(config.advertised_port),
            rack: config.cluster.rack.clone(),
            broker_epoch: -1,
            incarnation_id: self.inner.incarnation_id,
            listeners: config
                .cluster
                .advertised_listeners
                .iter()
                .map(|e| ListenerEndpoint {
                    name: e.name.clone(),
                    host: e.host.clone(),
                    port: e.port,
                })
                .collect(),
            fenced: false,
        };
        match self
            .call(ControllerCall::RegisterBroker(registration))
            .await?
        {
            ReplyBody::Registered { broker_epoch } => {
                self.inner
                    .broker_epoch
                    .store(broker_epoch, Ordering::SeqCst);
                tracing::info!(broker_epoch, "broker registered with the metadata quorum");
                Ok(())
            }
            other => Err(mismatched(&other)),
        }
    }

    /// Heartbeats every `broker.heartbeat.interval.ms`; registers again when the
    /// controller no longer knows this registration (STALE_BROKER_EPOCH).
    async fn heartbeats(self) {
        let period = Duration::from_millis(self.inner.config.cluster.broker_heartbeat_interval_ms);
        let stop = self.inner.background.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            if self.inner.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            let call = ControllerCall::BrokerHeartbeat {
                node_id: self.inner.node_id,
                broker_epoch: self.inner.broker_epoch.load(Ordering::SeqCst),
            };
            // Bounded: a heartbeat stuck on a quorum leader that stopped answering (paused,
            // partitioned) must not hold back the next one, which goes to the new leader;
            // else this broker is fenced although it is alive.
            let answer = match tokio::time::timeout(
                period.max(MIN_HEARTBEAT_TIMEOUT),
                self.call(call),
            )
            .await
            {
                Ok(answer) => answer,
                Err(_) => Err(MetadataError::NotController(
                    "heartbeat timed out".to_string(),
                )),
            };
            // Whatever the answer: a forgotten learner's heartbeats time out waiting for
            // an applied index it is never sent.
            self.rejoin_if_forgotten().await;
            match answer {
                Ok(ReplyBody::Heartbeat(Ok(()))) => {}
                Ok(ReplyBody::Heartbeat(Err(e))) => {
                    tracing::info!(error = %e.message, "heartbeat refused; registering again");
                    if let Err(error) = self.register().await {
                        tracing::warn!(%error, "broker registration failed");
                    }
                }
                Ok(other) => tracing::warn!(error = %mismatched(&other), "heartbeat"),
                Err(error) => tracing::debug!(%error, "heartbeat not delivered"),
            }
        }
    }

    /// A learner no leader fed for `broker.session.timeout.ms` (leaders send every 100 ms)
    /// was removed from the quorum (see `expired_learners`), has a stale address there,
    /// or the quorum is down: it joins again, waiting until a leader accepts.
    async fn rejoin_if_forgotten(&self) {
        let cluster = &self.inner.config.cluster;
        if cluster.roles.controller {
            return;
        }
        let last = self.inner.leader_contact.load(Ordering::Relaxed);
        let silent_ms = crate::partition::now_ms().saturating_sub(last);
        if silent_ms < cluster.broker_session_timeout_ms as i64 {
            return;
        }
        tracing::info!(
            silent_ms,
            "no metadata from the quorum leader; joining again as a learner"
        );
        if let Err(error) = self.join_as_learner(&self.inner.background).await {
            tracing::debug!(%error, "joining again as a learner");
        }
        self.inner
            .leader_contact
            .store(crate::partition::now_ms(), Ordering::Relaxed);
    }

    /// The active controller's periodic work: write the cluster id on a fresh cluster,
    /// fence the brokers whose heartbeats stopped for `broker.session.timeout.ms`
    /// (counted from this node's election at the earliest), and move leaderships back to
    /// preferred replicas when due (`leader_election::BalanceSchedule`).
    async fn controller_duties(self) {
        let cluster = &self.inner.config.cluster;
        let session = Duration::from_millis(cluster.broker_session_timeout_ms);
        // A broker is fenced at most a tick after its session expired (a quarter second
        // with Kafka's defaults: a failover's pause is the session timeout plus this).
        let tick = Duration::from_millis((cluster.broker_heartbeat_interval_ms / 4).clamp(50, 250));
        let stop = self.inner.background.clone();
        // Woken by the clock (session expiry) and by Raft state changes, so that a new
        // leader writes the cluster id at once.
        let mut raft_metrics = self.inner.raft.metrics();
        // One line per change of quorum leader (openraft's own narration is filtered out).
        let mut known_leader = None;
        let mut balance = leader_election::BalanceSchedule::new(&self.inner.config);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
                changed = raft_metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let metrics = raft_metrics.borrow_and_update().clone();
            if metrics.current_leader != known_leader {
                known_leader = metrics.current_leader;
                match known_leader {
                    Some(leader) => tracing::info!(
                        leader,
                        term = metrics.current_term,
                        "metadata quorum leader"
                    ),
                    None => {
                        tracing::info!(term = metrics.current_term, "metadata quorum has no leader")
                    }
                }
            }
            if metrics.state != ServerState::Leader {
                balance.reset();
                continue;
            }
            if balance.poll(Instant::now(), || {
                leader_election::imbalanced(&self.image())
            }) {
                self.balance_leaders(&mut balance).await;
            }
            let expired = self.expired_sessions(metrics.current_term, session);
            if !self
                .expired_learners(metrics.membership_config.membership())
                .is_empty()
            {
                self.remove_expired_learners().await;
            }
            if !self.image().cluster_id.is_empty() && expired.is_empty() {
                continue;
            }
            let Ok(_op) = self.begin_op().await else {
                continue;
            };
            // Again under the op: a registration or heartbeat may have landed meanwhile.
            let expired = self.expired_sessions(metrics.current_term, session);
            let image = self.image();
            let mut records = Vec::new();
            if image.cluster_id.is_empty() {
                let cluster_id = controller::new_cluster_id();
                tracing::info!(%cluster_id, "initialising a new metadata cluster");
                records.push(MetadataRecord::ClusterInit { cluster_id });
            }
            let fenced: Vec<i32> = expired.iter().map(|(node_id, _)| *node_id).collect();
            for (node_id, broker_epoch) in expired {
                tracing::info!(
                    node_id,
                    broker_epoch,
                    "fencing broker: no heartbeat within broker.session.timeout.ms"
                );
                records.push(MetadataRecord::FenceBroker {
                    node_id,
                    broker_epoch,
                });
            }
            // Its leaderships move and it leaves every ISR, in the same entry.
            records.extend(replication_control::brokers_leaving(
                &image,
                &fenced,
                &self.inner.config,
            ));
            if let Err(error) = self.write(records).await {
                tracing::warn!(%error, "controller write failed");
            }
        }
    }

    /// The unfenced brokers (id, epoch) whose last heartbeat, or this controller's
    /// election in `term` if later, is more than `session` ago.
    fn expired_sessions(&self, term: u64, session: Duration) -> Vec<(i32, i64)> {
        let now = Instant::now();
        let Ok(mut sessions) = self.inner.sessions.lock() else {
            return Vec::new();
        };
        if sessions.term != Some(term) {
            *sessions = Sessions {
                term: Some(term),
                since: Some(now),
                last_heartbeat: HashMap::new(),
            };
        }
        let since = sessions.since.unwrap_or(now);
        self.image()
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let last = sessions.last_heartbeat.get(&b.node_id).copied();
                now.duration_since(last.unwrap_or(since).max(since)) > session
            })
            .map(|b| (b.node_id, b.broker_epoch))
            .collect()
    }

    /// The learners whose broker has not heartbeated for `OBSERVER_SESSION_TIMEOUT` (or
    /// never did since this controller's election that long ago). Call after
    /// `expired_sessions`, which starts the sessions of a new term.
    fn expired_learners(&self, membership: &openraft::Membership<u64, BasicNode>) -> Vec<u64> {
        let now = Instant::now();
        let Ok(sessions) = self.inner.sessions.lock() else {
            return Vec::new();
        };
        let since = sessions.since.unwrap_or(now);
        membership
            .learner_ids()
            .filter(|id| {
                let last = i32::try_from(*id)
                    .ok()
                    .and_then(|id| sessions.last_heartbeat.get(&id).copied());
                now.duration_since(last.unwrap_or(since).max(since)) >= OBSERVER_SESSION_TIMEOUT
            })
            .collect()
    }

    /// Takes gone brokers' learners out of the quorum, so the leader stops sending to
    /// addresses nobody listens on. Checked again under the operation lock: one may have
    /// just joined again (`add_learner_here`).
    async fn remove_expired_learners(&self) {
        let Ok(_op) = self.begin_op().await else {
            return;
        };
        let membership = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let ids = self.expired_learners(&membership);
        if ids.is_empty() {
            return;
        }
        tracing::info!(
            ?ids,
            "removing metadata learners: their brokers stopped heartbeating"
        );
        let nodes: BTreeSet<u64> = ids.into_iter().collect();
        let change = self
            .inner
            .raft
            .change_membership(ChangeMembers::RemoveNodes(nodes), false);
        match tokio::time::timeout(WRITE_TIMEOUT, change).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "removing metadata learners failed"),
            Err(_) => tracing::warn!("removing metadata learners timed out"),
        }
    }

    /// One leader balancing round (`auto.leader.rebalance.enable`): preferred replicas
    /// that are in sync lead again.
    async fn balance_leaders(&self, schedule: &mut leader_election::BalanceSchedule) {
        let Ok(_op) = self.begin_op().await else {
            return;
        };
        let (records, more) = leader_election::balance_leaders(
            &self.image(),
            &self.inner.config,
            leader_election::MAX_ELECTIONS_PER_BALANCE,
        );
        schedule.ran(Instant::now(), more);
        if records.is_empty() {
            return;
        }
        tracing::info!(
            partitions = records.len(),
            "leader imbalance: moving leaderships back to preferred replicas"
        );
        if let Err(error) = self.write(records).await {
            tracing::warn!(%error, "controller write failed");
        }
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
        let call = ControllerCall::CreateTopics {
            requests,
            defaults: defaults.clone(),
            validate_only,
        };
        match self.call(call).await? {
            ReplyBody::Topics(results) => Ok(results
                .into_iter()
                .map(|r| r.map(|topic| self.image_topic(topic)))
                .collect()),
            other => Err(mismatched(&other)),
        }
    }

    /// The image's own copy of a topic a call returned, when it is the same.
    fn image_topic(&self, topic: TopicImage) -> Arc<TopicImage> {
        match self.image().topics.get(&topic.name) {
            Some(known) if **known == topic => known.clone(),
            _ => Arc::new(topic),
        }
    }

    /// Deletes topics by name or id; one result per reference, in order, with the deleted
    /// topic on success. All deletions are written in one log entry.
    pub async fn delete_topics(
        &self,
        topics: Vec<TopicRef>,
    ) -> Result<Vec<Result<Arc<TopicImage>, ApiError>>, MetadataError> {
        match self.call(ControllerCall::DeleteTopics { topics }).await? {
            ReplyBody::Topics(results) => {
                Ok(results.into_iter().map(|r| r.map(Arc::new)).collect())
            }
            other => Err(mismatched(&other)),
        }
    }

    /// Grows topics (CreatePartitions); one result per request, in order: the topic's
    /// partition count after it. All growths that pass validation are written in one log
    /// entry; with `validate_only` nothing is written.
    pub async fn create_partitions(
        &self,
        requests: Vec<CreatePartitionsRequest>,
        validate_only: bool,
    ) -> Result<Vec<Result<usize, ApiError>>, MetadataError> {
        let call = ControllerCall::CreatePartitions {
            requests,
            validate_only,
        };
        match self.call(call).await? {
            ReplyBody::PartitionCounts(results) => Ok(results),
            other => Err(mismatched(&other)),
        }
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
        let call = ControllerCall::AllocateProducerIds {
            broker_id: self.inner.node_id,
            count,
        };
        match self.call(call).await? {
            ReplyBody::ProducerIds { first_id } => Ok(first_id),
            other => Err(mismatched(&other)),
        }
    }

    /// AlterConfigs / IncrementalAlterConfigs: on the quorum leader, under the operation
    /// lock (so concurrent incremental changes compose), `dynamic_config::plan` computes
    /// each resource's new override map or its error against the current image and the
    /// leader's static config. Every planned change is written in one log entry (unless
    /// `validate_only`); one result per resource, in order.
    pub async fn alter_configs(
        &self,
        requests: Vec<(Resource, Alteration)>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), ApiError>>, MetadataError> {
        let call = ControllerCall::AlterConfigs {
            requests,
            validate_only,
        };
        match self.call(call).await? {
            ReplyBody::Configs(results) => Ok(results),
            other => Err(mismatched(&other)),
        }
    }

    /// AlterUserScramCredentials: on the quorum leader, under the operation lock (a
    /// deletion's "does it exist" check reads the image), `scram_control::plan` checks each
    /// user; the accepted changes are written in one log entry. One result per user.
    pub async fn alter_scram_credentials(
        &self,
        deletions: Vec<ScramDeletion>,
        upsertions: Vec<ScramUpsertion>,
    ) -> Result<ScramResults, MetadataError> {
        let call = ControllerCall::AlterScramCredentials {
            deletions,
            upsertions,
        };
        match self.call(call).await? {
            ReplyBody::ScramCredentials(results) => Ok(results),
            other => Err(mismatched(&other)),
        }
    }

    /// Controlled shutdown (Kafka's, as KRaft does it): heartbeats stop, and the controller
    /// fences this broker, which moves its leaderships to other in-sync replicas and takes
    /// it out of the ISRs before the process stops, so clients move at once instead of
    /// after `broker.session.timeout.ms`. Returns once the change is in this node's image.
    pub async fn controlled_shutdown(&self) -> Result<(), MetadataError> {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let call = ControllerCall::ControlledShutdown {
            node_id: self.inner.node_id,
            broker_epoch: self.inner.broker_epoch.load(Ordering::SeqCst),
        };
        match self.call(call).await? {
            ReplyBody::Heartbeat(Ok(())) => Ok(()),
            ReplyBody::Heartbeat(Err(error)) => Err(MetadataError::Raft(error.message)),
            other => Err(mismatched(&other)),
        }
    }

    /// AlterPartition: the leader of a partition asks for `request.new_isr`; the answer is
    /// the partition after the change (leader epoch, partition epoch, ISR) or Kafka's
    /// error code for that partition.
    pub async fn alter_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        request: partition_change::AlterPartitionRequest,
    ) -> Result<Result<AlterPartitionAnswer, i16>, MetadataError> {
        let call = ControllerCall::AlterPartition {
            topic_id,
            partition,
            request,
        };
        match self.call(call).await? {
            ReplyBody::AlterPartition(result) => Ok(result),
            other => Err(mismatched(&other)),
        }
    }

    /// ElectLeaders: the controller elects the preferred (or, unclean, any live) replica
    /// of the named partitions, or of every partition when `topics` is None; one result
    /// per topic with Kafka's code per partition. Returns once the changes are in this
    /// node's image.
    pub async fn elect_leaders(
        &self,
        election: leader_election::ElectionType,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<leader_election::TopicElections>, MetadataError> {
        match self
            .call(ControllerCall::ElectLeaders { election, topics })
            .await?
        {
            ReplyBody::Elections(results) => Ok(results),
            other => Err(mismatched(&other)),
        }
    }

    /// AlterPartitionReassignments: one result per partition, in request order. All
    /// accepted changes are written in one entry.
    pub async fn alter_partition_reassignments(
        &self,
        topics: Vec<TopicReassignment>,
        allow_replication_factor_change: bool,
    ) -> Result<Vec<Vec<Result<(), ApiError>>>, MetadataError> {
        let call = ControllerCall::AlterPartitionReassignments {
            topics,
            allow_replication_factor_change,
        };
        match self.call(call).await? {
            ReplyBody::Reassignments(results) => Ok(results),
            other => Err(mismatched(&other)),
        }
    }

    /// DescribeQuorum, answered by the leader.
    pub async fn describe_quorum(&self) -> Result<QuorumDescription, MetadataError> {
        match self.call(ControllerCall::DescribeQuorum).await? {
            ReplyBody::Quorum(description) => Ok(description),
            other => Err(mismatched(&other)),
        }
    }

    /// The quorum leader's id, if one is known to this node.
    pub fn leader_id(&self) -> Option<i32> {
        let leader = self.inner.raft.metrics().borrow().current_leader;
        leader.and_then(|id| i32::try_from(id).ok())
    }

    /// Runs `call` here when this node leads the quorum, else on the leader (waiting a
    /// moment for one to be elected); a forwarded write is awaited in the local image.
    async fn call(&self, call: ControllerCall) -> Result<ReplyBody, MetadataError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(MetadataError::ShuttingDown);
        }
        match self.route().await? {
            Route::Local => self.execute(call).await,
            Route::Leader { id, addr } => {
                let reply = self.forward(&addr, call).await.map_err(|e| {
                    MetadataError::NotController(format!(
                        "forwarding to leader {id} at {addr}: {e}"
                    ))
                })?;
                if let Some(index) = reply.applied_index {
                    // Read-your-writes on this node; a slow follower answers anyway.
                    let _ = self
                        .inner
                        .raft
                        .wait(Some(self.inner.limits.call_timeout))
                        .applied_index_at_least(Some(index), "forwarded write applied")
                        .await;
                }
                reply.result.map_err(MetadataError::NotController)
            }
        }
    }

    async fn route(&self) -> Result<Route, MetadataError> {
        let wait = self.inner.raft.wait(Some(LEADER_WAIT));
        let metrics = wait
            .metrics(|m| m.current_leader.is_some(), "metadata leader known")
            .await
            .map_err(|_| {
                MetadataError::NotController(format!(
                    "no metadata quorum leader within {LEADER_WAIT:?}"
                ))
            })?;
        let Some(leader) = metrics.current_leader else {
            return Err(MetadataError::NotController(
                "no metadata quorum leader".to_string(),
            ));
        };
        if leader == metrics.id {
            return Ok(Route::Local);
        }
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|node| node.addr.clone())
            .ok_or_else(|| {
                MetadataError::NotController(format!("leader {leader} has no address"))
            })?;
        Ok(Route::Leader { id: leader, addr })
    }

    async fn forward(
        &self,
        addr: &str,
        call: ControllerCall,
    ) -> Result<ControllerReply, CallError> {
        let pooled = self
            .inner
            .forwarders
            .lock()
            .ok()
            .and_then(|mut pool| pool.get_mut(addr).and_then(Vec::pop));
        let mut client =
            pooled.unwrap_or_else(|| PeerClient::new(addr.to_string(), self.inner.limits));
        let request = network::Request::Controller(call);
        let response = client
            .call(&request, self.inner.limits.call_timeout)
            .await?;
        if let Ok(mut pool) = self.inner.forwarders.lock() {
            let idle = pool.entry(addr.to_string()).or_default();
            if idle.len() < MAX_IDLE_FORWARDERS {
                idle.push(client);
            }
        }
        match response {
            network::Response::Controller(reply) => Ok(reply),
            _ => Err(CallError::Network(std::io::Error::other(
                "mismatched response kind",
            ))),
        }
    }

    /// A call that arrived on the controller listener: run it if this node leads, never
    /// forward again (a stale sender retries after NOT_CONTROLLER).
    async fn serve_call(&self, call: ControllerCall) -> ControllerReply {
        let result = if self.inner.closed.load(Ordering::SeqCst) {
            Err(MetadataError::ShuttingDown)
        } else {
            self.execute(call).await
        };
        ControllerReply {
            applied_index: self.applied_index(),
            result: result.map_err(|e| e.to_string()),
        }
    }

    fn applied_index(&self) -> Option<u64> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|id| id.index)
    }

    /// Runs a controller call on this node, which must lead the quorum.
    async fn execute(&self, call: ControllerCall) -> Result<ReplyBody, MetadataError> {
        match call {
            ControllerCall::CreateTopics {
                requests,
                defaults,
                validate_only,
            } => self
                .create_topics_here(requests, &defaults, validate_only)
                .await
                .map(ReplyBody::Topics),
            ControllerCall::DeleteTopics { topics } => {
                self.delete_topics_here(topics).await.map(ReplyBody::Topics)
            }
            ControllerCall::CreatePartitions {
                requests,
                validate_only,
            } => self
                .create_partitions_here(requests, validate_only)
                .await
                .map(ReplyBody::PartitionCounts),
            ControllerCall::AllocateProducerIds { broker_id, count } => self
                .allocate_producer_ids_here(broker_id, count)
                .await
                .map(|first_id| ReplyBody::ProducerIds { first_id }),
            ControllerCall::AlterConfigs {
                requests,
                validate_only,
            } => self
                .alter_configs_here(requests, validate_only)
                .await
                .map(ReplyBody::Configs),
            ControllerCall::AlterScramCredentials {
                deletions,
                upsertions,
            } => self
                .alter_scram_credentials_here(deletions, upsertions)
                .await
                .map(ReplyBody::ScramCredentials),
            ControllerCall::RegisterBroker(registration) => self
                .register_here(registration)
                .await
                .map(|broker_epoch| ReplyBody::Registered { broker_epoch }),
            ControllerCall::BrokerHeartbeat {
                node_id,
                broker_epoch,
            } => self
                .heartbeat_here(node_id, broker_epoch)
                .await
                .map(ReplyBody::Heartbeat),
            ControllerCall::DescribeQuorum => self.describe_quorum_here().map(ReplyBody::Quorum),
            ControllerCall::ControlledShutdown {
                node_id,
                broker_epoch,
            } => self
                .controlled_shutdown_here(node_id, broker_epoch)
                .await
                .map(ReplyBody::Heartbeat),
            ControllerCall::AlterPartition {
                topic_id,
                partition,
                request,
            } => self
                .alter_partition_here(topic_id, partition, request)
                .await
                .map(ReplyBody::AlterPartition),
            ControllerCall::ElectLeaders { election, topics } => self
                .elect_leaders_here(election, topics)
                .await
                .map(ReplyBody::Elections),
            ControllerCall::AlterPartitionReassignments {
                topics,
                allow_replication_factor_change,
            } => self
                .alter_partition_reassignments_here(topics, allow_replication_factor_change)
                .await
                .map(ReplyBody::Reassignments),
            ControllerCall::AddLearner { node_id, address } => self
                .add_learner_here(node_id, address)
                .await
                .map(|()| ReplyBody::LearnerAdded),
        }
    }

    async fn alter_partition_reassignments_here(
        &self,
        topics: Vec<TopicReassignment>,
        allow_replication_factor_change: bool,
    ) -> Result<Vec<Vec<Result<(), ApiError>>>, MetadataError> {
        let _op = self.begin_op().await?;
        let image = self.image();
        let mut records = Vec::new();
        let results = topics
            .iter()
            .map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|(index, target)| {
                        let change = reassignment::alter(
                            &image,
                            &topic.topic,
                            *index,
                            target.as_deref(),
                            allow_replication_factor_change,
                            &self.inner.config,
                        )?;
                        tracing::info!(
                            topic = %topic.topic,
                            partition = index,
                            ?target,
                            ?change,
                            "partition reassignment"
                        );
                        records.extend(change.map(MetadataRecord::PartitionChange));
                        Ok(())
                    })
                    .collect()
            })
            .collect();
        if !records.is_empty() {
            self.write(records).await?;
        }
        Ok(results)
    }

    /// A broker shutting down: fenced now, with the partition changes that moves its
    /// leaderships and takes it out of the ISRs, in one entry.
    async fn controlled_shutdown_here(
        &self,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<Result<(), ApiError>, MetadataError> {
        let _op = self.begin_op().await?;
        let image = self.image();
        let current = image.brokers.get(&node_id);
        let Some(broker) = current.filter(|b| b.broker_epoch == broker_epoch) else {
            return Ok(Err(ApiError {
                code: codes::STALE_BROKER_EPOCH,
                message: format!("Broker {node_id} is not registered with epoch {broker_epoch}."),
            }));
        };
        if broker.fenced {
            return Ok(Ok(()));
        }
        tracing::info!(
            node_id,
            broker_epoch,
            "controlled shutdown: fencing the broker and moving its leaderships"
        );
        let mut records = vec![MetadataRecord::FenceBroker {
            node_id,
            broker_epoch,
        }];
        records.extend(replication_control::brokers_leaving(
            &image,
            &[node_id],
            &self.inner.config,
        ));
        self.write(records).await?;
        Ok(Ok(()))
    }

    async fn elect_leaders_here(
        &self,
        election: leader_election::ElectionType,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<leader_election::TopicElections>, MetadataError> {
        let _op = self.begin_op().await?;
        let (records, results) = leader_election::elect_leaders(
            &self.image(),
            election,
            topics.as_deref(),
            &self.inner.config,
        );
        if !records.is_empty() {
            tracing::info!(?election, partitions = records.len(), "electing leaders");
            self.write(records).await?;
        }
        Ok(results)
    }

    async fn alter_partition_here(
        &self,
        topic_id: Uuid,
        partition: i32,
        request: partition_change::AlterPartitionRequest,
    ) -> Result<Result<AlterPartitionAnswer, i16>, MetadataError> {
        let _op = self.begin_op().await?;
        let image = self.image();
        let planned = replication_control::alter_partition(
            &image,
            topic_id,
            partition,
            &request,
            &self.inner.config,
        );
        let (change, answer) = match planned {
            Ok(planned) => planned,
            Err(code) => return Ok(Err(code)),
        };
        if let Some(change) = change {
            tracing::info!(
                %topic_id,
                partition,
                isr = ?answer.isr,
                leader = request.leader_id,
                "ISR change"
            );
            self.write(vec![MetadataRecord::PartitionChange(change)])
                .await?;
        }
        Ok(Ok(answer))
    }

    async fn create_topics_here(
        &self,
        requests: Vec<CreateTopicRequest>,
        defaults: &TopicDefaults,
        validate_only: bool,
    ) -> Result<Vec<Result<TopicImage, ApiError>>, MetadataError> {
        let _op = self.begin_op().await?;
        let planned = controller::plan_create_topics(&self.image(), &requests, defaults);
        let records: Vec<MetadataRecord> = planned
            .iter()
            .flatten()
            .map(|topic| MetadataRecord::CreateTopic(topic.clone()))
            .collect();
        if validate_only || records.is_empty() {
            return Ok(planned);
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
                    Some(created) if created.topic_id == topic.topic_id => {
                        Ok(created.as_ref().clone())
                    }
                    _ => Err(not_applied(&topic.name)),
                }
            })
            .collect())
    }

    async fn delete_topics_here(
        &self,
        topics: Vec<TopicRef>,
    ) -> Result<Vec<Result<TopicImage, ApiError>>, MetadataError> {
        let _op = self.begin_op().await?;
        let planned = controller::plan_delete_topics(&self.image(), &topics);
        // A topic named once by name and once by id is deleted once.
        let ids: BTreeSet<Uuid> = planned.iter().flatten().map(|t| t.topic_id).collect();
        let planned = planned
            .into_iter()
            .map(|r| r.map(|topic| topic.as_ref().clone()))
            .collect::<Vec<_>>();
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

    async fn create_partitions_here(
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

    async fn allocate_producer_ids_here(
        &self,
        broker_id: i32,
        count: i64,
    ) -> Result<i64, MetadataError> {
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
                broker_id,
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

    async fn alter_configs_here(
        &self,
        requests: Vec<(Resource, Alteration)>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), ApiError>>, MetadataError> {
        let _op = self.begin_op().await?;
        let planned = dynamic_config::plan(&self.inner.config, &self.image(), &requests);
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

    async fn alter_scram_credentials_here(
        &self,
        deletions: Vec<ScramDeletion>,
        upsertions: Vec<ScramUpsertion>,
    ) -> Result<ScramResults, MetadataError> {
        let _op = self.begin_op().await?;
        let (records, results) = scram_control::plan(&self.image(), &deletions, &upsertions);
        if records.is_empty() {
            return Ok(results);
        }
        let outcome = self.write(records).await?;
        // Under the lock apply refuses nothing the plan accepted; if it did, no result
        // may claim success.
        if outcome.accepted.iter().all(|&a| a) {
            return Ok(results);
        }
        Ok(results
            .into_iter()
            .map(|(user, result)| {
                let result = result.and(Err(ApiError {
                    code: codes::UNKNOWN_SERVER_ERROR,
                    message: format!("The credential change of user {user} was not applied."),
                }));
                (user, result)
            })
            .collect())
    }

    /// Adds a broker-only node as a learner, or points an existing learner at its new
    /// address (it restarted). Learners never count towards a commit or an election, so a
    /// dead one only costs the leader retries to an unreachable address, never writes.
    async fn add_learner_here(&self, node_id: i32, address: String) -> Result<(), MetadataError> {
        let raft_id = u64::try_from(node_id)
            .map_err(|_| MetadataError::Raft(format!("node id {node_id} must not be negative")))?;
        let _op = self.begin_op().await?;
        let membership = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.voter_ids().any(|id| id == raft_id) {
            return Err(MetadataError::Raft(format!(
                "node {node_id} is a voter; it cannot join as a learner"
            )));
        }
        let node = BasicNode::new(address.clone());
        let raft = &self.inner.raft;
        let change = async {
            match membership.get_node(&raft_id) {
                Some(known) if known.addr == address => Ok(()),
                Some(_) => {
                    let nodes = BTreeMap::from([(raft_id, node)]);
                    raft.change_membership(ChangeMembers::SetNodes(nodes), true)
                        .await
                        .map(|_| ())
                }
                None => raft.add_learner(raft_id, node, false).await.map(|_| ()),
            }
        };
        // Joining is a sign of life: its last heartbeat may be from before it went away,
        // and `expired_learners` must not remove it again before it registers.
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.last_heartbeat.insert(node_id, Instant::now());
        }
        tokio::time::timeout(WRITE_TIMEOUT, change)
            .await
            .map_err(|_| {
                MetadataError::NotController(format!(
                    "learner {node_id} not added within {WRITE_TIMEOUT:?}"
                ))
            })?
            .map_err(raft_error)?;
        tracing::info!(node_id, %address, "metadata learner added");
        Ok(())
    }

    /// A broker (re)registers: a new epoch above every epoch so far, unfenced (it
    /// registers once its image caught up), its session starting now.
    async fn register_here(&self, registration: BrokerRegistration) -> Result<i64, MetadataError> {
        if registration.node_id < 0 {
            return Err(MetadataError::Raft(format!(
                "broker id {} must not be negative",
                registration.node_id
            )));
        }
        let _op = self.begin_op().await?;
        let image = self.image();
        let broker_epoch = image
            .brokers
            .values()
            .map(|b| b.broker_epoch)
            .max()
            .unwrap_or(0)
            .max(0)
            + 1;
        let node_id = registration.node_id;
        // A restarted broker lost what it knew as leader (followers' positions, the high
        // watermark): its leaderships move and it leaves the ISRs first, as if fenced,
        // then it may lead the partitions that have no other leader.
        let mut records = if image.brokers.get(&node_id).is_some_and(|b| !b.fenced) {
            replication_control::brokers_leaving(&image, &[node_id], &self.inner.config)
        } else {
            Vec::new()
        };
        records.push(MetadataRecord::RegisterBroker(BrokerRegistration {
            broker_epoch,
            fenced: false,
            ..registration
        }));
        let (registered, _) = apply_batch(&image, self.inner.node_id, &records);
        records.extend(replication_control::broker_back(
            &registered,
            node_id,
            &self.inner.config,
        ));
        // Its session starts now, before the registration is visible: the controller's
        // duties must not find the new epoch with an old heartbeat time and fence it.
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.last_heartbeat.insert(node_id, Instant::now());
        }
        self.write(records).await?;
        Ok(broker_epoch)
    }

    /// A heartbeat renews the broker's session and unfences it; an epoch that is not the
    /// broker's current registration is STALE_BROKER_EPOCH (it registers again).
    async fn heartbeat_here(
        &self,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<Result<(), ApiError>, MetadataError> {
        if self.inner.raft.metrics().borrow().state != ServerState::Leader {
            return Err(MetadataError::NotController(
                "not the quorum leader".to_string(),
            ));
        }
        let current = self.image().brokers.get(&node_id).cloned();
        let Some(broker) = current.filter(|b| b.broker_epoch == broker_epoch) else {
            return Ok(Err(ApiError {
                code: codes::STALE_BROKER_EPOCH,
                message: format!("Broker {node_id} is not registered with epoch {broker_epoch}."),
            }));
        };
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.last_heartbeat.insert(node_id, Instant::now());
        }
        if broker.fenced {
            let _op = self.begin_op().await?;
            tracing::info!(node_id, broker_epoch, "unfencing broker: heartbeat");
            let mut records = vec![MetadataRecord::UnfenceBroker {
                node_id,
                broker_epoch,
            }];
            // Partitions left without a leader may elect it again.
            let (unfenced, _) = apply_batch(&self.image(), self.inner.node_id, &records);
            records.extend(replication_control::broker_back(
                &unfenced,
                node_id,
                &self.inner.config,
            ));
            self.write(records).await?;
        }
        Ok(Ok(()))
    }

    fn describe_quorum_here(&self) -> Result<QuorumDescription, MetadataError> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return Err(MetadataError::NotController(
                "not the quorum leader".to_string(),
            ));
        }
        let now = crate::partition::now_ms();
        // Kafka's offsets are exclusive ends; openraft's indexes name the last entry.
        let leader_end = metrics.last_log_index.map_or(0, |i| i as i64 + 1);
        let membership = metrics.membership_config.membership().clone();
        let contacts = self
            .inner
            .contacts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        // A replica other than the leader, as the leader's replication progress knows it.
        let replica = |id: u64| {
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map_or(-1, |log_id| log_id.index as i64 + 1);
            let last_fetch = contacts.get(&id).copied().unwrap_or(-1);
            ReplicaState {
                replica_id: id as i32,
                log_end_offset: matched,
                last_fetch_timestamp: last_fetch,
                last_caught_up_timestamp: if matched == leader_end {
                    last_fetch
                } else {
                    -1
                },
            }
        };
        let voters: Vec<ReplicaState> = membership
            .voter_ids()
            .map(|id| {
                if id == metrics.id {
                    return ReplicaState {
                        replica_id: id as i32,
                        log_end_offset: leader_end,
                        last_fetch_timestamp: -1,
                        last_caught_up_timestamp: now,
                    };
                }
                replica(id)
            })
            .collect();
        let observers: Vec<ReplicaState> = membership.learner_ids().map(replica).collect();
        let mut ends: Vec<i64> = voters.iter().map(|v| v.log_end_offset.max(0)).collect();
        // The majority's end: what a majority holds is committed.
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let high_watermark = ends.get(ends.len() / 2).copied().unwrap_or(0);
        let listener_name = self
            .inner
            .config
            .cluster
            .controller_listener_names
            .first()
            .cloned()
            .unwrap_or_else(|| "CONTROLLER".to_string());
        let endpoints = membership
            .nodes()
            .filter_map(|(id, node)| {
                let (host, port) = node.addr.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((
                    *id as i32,
                    listener_name.clone(),
                    host.to_string(),
                    port.parse().ok()?,
                ))
            })
            .filter(|(id, ..)| membership.voter_ids().any(|v| v as i32 == *id))
            .filter(|_| self.inner.config.cluster.is_multi_node())
            .collect();
        Ok(QuorumDescription {
            leader_id: metrics.id as i32,
            leader_epoch: i32::try_from(metrics.current_term).unwrap_or(i32::MAX),
            high_watermark,
            voters,
            observers,
            endpoints,
        })
    }

    /// Stops the controller listener, heartbeats and openraft, and closes RocksDB.
    /// Idempotent; later operations fail with [`MetadataError::ShuttingDown`] while
    /// `image()` keeps answering the last image.
    pub async fn shutdown(&self) {
        let mut db_slot = self.inner.db.lock().await;
        let Some(db) = db_slot.take() else {
            return;
        };
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.background.cancel();
        let tasks = self
            .inner
            .tasks
            .lock()
            .map(|mut tasks| std::mem::take(&mut *tasks))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
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
                MetadataError::NotController(format!(
                    "leadership not confirmed within {WRITE_TIMEOUT:?}"
                ))
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
                MetadataError::NotController(format!(
                    "metadata write not committed within {WRITE_TIMEOUT:?}"
                ))
            })?
            .map_err(raft_error)?;
        Ok(response.data)
    }
}

fn mismatched(body: &ReplyBody) -> MetadataError {
    MetadataError::Raft(format!("mismatched controller reply: {body:?}"))
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
        // Not (or no longer) the leader, or no quorum: retriable for the client.
        RaftError::APIError(e) => MetadataError::NotController(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tempfile::TempDir;

    use super::*;

    fn config(dir: &Path, node_id: i32, port: u16) -> BrokerConfig {
        let overrides = [
            format!("node.id={node_id}"),
            format!("log.dirs={}", dir.display()),
            format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
            format!("advertised.listeners=PLAINTEXT://localhost:{port}"),
        ];
        BrokerConfig::load(None, std::iter::empty(), &overrides).unwrap()
    }

    async fn start(dir: &TempDir) -> MetadataQuorum {
        MetadataQuorum::start(&config(dir.path(), 1, 9092), &CancellationToken::new())
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

    #[test]
    fn clients_are_told_a_live_broker_as_controller() {
        let broker = |node_id, fenced| BrokerRegistration {
            node_id,
            host: "localhost".to_string(),
            port: 9092,
            rack: None,
            broker_epoch: 1,
            incarnation_id: Uuid::nil(),
            listeners: vec![],
            fenced,
        };
        let mut image = MetadataImage {
            controller_id: 2,
            brokers: BTreeMap::from([(2, broker(2, false)), (4, broker(4, false))]),
            ..Default::default()
        };
        // Combined mode: the quorum leader is a broker.
        assert_eq!(image.client_controller_id(4), 2);
        // A controller-only leader: the answering broker, else any live one.
        image.controller_id = 1;
        assert_eq!(image.client_controller_id(4), 4);
        assert_eq!(image.client_controller_id(5), 2);
        image.brokers = BTreeMap::from([(4, broker(4, true))]);
        assert_eq!(image.client_controller_id(4), -1);
    }

    #[tokio::test]
    async fn fresh_start_initialises_cluster() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        let image = q.image();
        assert_eq!(image.cluster_id.len(), 22);
        assert_eq!(image.controller_id, 1);
        let broker = &image.brokers[&1];
        assert_eq!(
            (
                broker.node_id,
                broker.host.as_str(),
                broker.port,
                &broker.rack
            ),
            (1, "localhost", 9092, &None)
        );
        assert_eq!(broker.broker_epoch, 1);
        assert!(!broker.fenced);
        assert_eq!(broker.listeners[0].name, "PLAINTEXT");
        assert_eq!(image.next_producer_id, 0);
        assert!(dir.path().join("meta").is_dir());
        q.shutdown().await;
    }

    /// The topics as a restart leaves them: the restarted broker re-registers, its
    /// leaderships lapse and come back in a new leader epoch (two partition changes).
    fn restarted(topics: &BTreeMap<String, Arc<TopicImage>>) -> BTreeMap<String, Arc<TopicImage>> {
        topics
            .iter()
            .map(|(name, topic)| {
                let mut topic = topic.as_ref().clone();
                for partition in &mut topic.partitions {
                    partition.leader_epoch += 2;
                    partition.partition_epoch += 2;
                }
                (name.clone(), Arc::new(topic))
            })
            .collect()
    }

    /// Three voters in this process, each with its own controller listener.
    async fn three_voters(dirs: &[TempDir; 3]) -> Vec<MetadataQuorum> {
        let ports: Vec<u16> = (0..6)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            })
            .collect();
        let voters = (0..3)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let starts = (0..3).map(|i| {
            let overrides = [
                format!("node.id={}", i + 1),
                format!("log.dirs={}", dirs[i].path().display()),
                format!(
                    "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                    ports[2 * i],
                    ports[2 * i + 1]
                ),
                format!("controller.quorum.voters={voters}"),
                "controller.listener.names=CONTROLLER".to_string(),
                format!("broker.rack=r{i}"),
                "broker.session.timeout.ms=1000".to_string(),
                "broker.heartbeat.interval.ms=100".to_string(),
            ];
            let config = BrokerConfig::load(None, std::iter::empty(), &overrides).unwrap();
            async move {
                MetadataQuorum::start(&config, &CancellationToken::new())
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(starts).await
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A broker-only node (node 4) of the voters' cluster, found through
    /// `controller.quorum.bootstrap.servers`.
    async fn broker_only(dir: &TempDir, voters: &MetadataQuorum) -> MetadataQuorum {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let contacts = voters.inner.config.cluster.quorum_contacts().join(",");
        let overrides = [
            "node.id=4".to_string(),
            "process.roles=broker".to_string(),
            format!("log.dirs={}", dir.path().display()),
            format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
            format!("controller.quorum.bootstrap.servers={contacts}"),
            "controller.listener.names=CONTROLLER".to_string(),
            "broker.session.timeout.ms=1000".to_string(),
            "broker.heartbeat.interval.ms=100".to_string(),
        ];
        let config = BrokerConfig::load(None, std::iter::empty(), &overrides).unwrap();
        MetadataQuorum::start(&config, &CancellationToken::new())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_only_node_is_a_learner_that_rejoins_after_restart() {
        let dirs = [
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
        ];
        let nodes = three_voters(&dirs).await;
        let learner_dir = TempDir::new().unwrap();
        let learner = broker_only(&learner_dir, &nodes[0]).await;
        // Registered as a broker, with the voters' image, and never a candidate.
        assert!(learner.image().is_live_broker(4));
        assert_eq!(learner.image().cluster_id, nodes[0].image().cluster_id);
        assert_eq!(
            learner.inner.raft.metrics().borrow().state,
            ServerState::Learner
        );
        // Its calls go to the leader; the log comes back to it.
        create(&learner, vec![topic("from-learner", 2)]).await;
        for q in &nodes {
            wait_for("the learner's topic everywhere", || {
                q.image().topics.contains_key("from-learner")
            })
            .await;
        }
        let described = nodes[1].describe_quorum().await.unwrap();
        assert_eq!(described.voters.len(), 3);
        assert_eq!(
            described
                .observers
                .iter()
                .map(|o| o.replica_id)
                .collect::<Vec<_>>(),
            [4]
        );
        // Only voters have controller endpoints.
        assert_eq!(described.endpoints.len(), 3);

        // Removed by the leader while alive (as if its heartbeats had stopped): it hears
        // nothing more, notices, and joins again.
        let leader = nodes
            .iter()
            .find(|q| q.leader_id() == Some(q.inner.node_id))
            .unwrap();
        let removal = ChangeMembers::RemoveNodes(BTreeSet::from([4]));
        leader
            .inner
            .raft
            .change_membership(removal, false)
            .await
            .unwrap();
        assert!(leader.describe_quorum().await.unwrap().observers.is_empty());
        wait_for("the removed learner back", || {
            leader
                .inner
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .learner_ids()
                .eq([4])
        })
        .await;
        create(&nodes[0], vec![topic("after-rejoin", 1)]).await;
        wait_for("the rejoined learner fed", || {
            learner.image().topics.contains_key("after-rejoin")
        })
        .await;

        // Gone: fenced, and writes still commit without it (learners do not count); its
        // learner is removed once its heartbeats stopped long enough.
        let epoch = learner.inner.broker_epoch.load(Ordering::SeqCst);
        learner.shutdown().await;
        wait_for("the stopped learner fenced", || {
            nodes[0].image().brokers[&4].fenced
        })
        .await;
        create(&nodes[0], vec![topic("while-away", 1)]).await;
        wait_for("the stopped learner removed", || {
            leader
                .inner
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .learner_ids()
                .next()
                .is_none()
        })
        .await;

        // Back on a new address: added again, caught up, registered anew.
        let learner = broker_only(&learner_dir, &nodes[0]).await;
        assert!(learner.image().topics.contains_key("while-away"));
        assert!(learner.inner.broker_epoch.load(Ordering::SeqCst) > epoch);
        wait_for("the restarted learner unfenced", || {
            nodes[0].image().is_live_broker(4)
        })
        .await;
        let observers = nodes[2].describe_quorum().await.unwrap().observers;
        assert_eq!(observers.len(), 1);
        learner.shutdown().await;
        for q in &nodes {
            q.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_voters_forward_describe_and_fence() {
        let dirs = [
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
        ];
        let nodes = three_voters(&dirs).await;
        let leader = nodes[0].leader_id().unwrap();
        let followers: Vec<&MetadataQuorum> =
            nodes.iter().filter(|q| q.inner.node_id != leader).collect();
        // Each start waited for its own registration; the others' follow.
        for q in &nodes {
            wait_for("three registrations", || q.image().brokers.len() == 3).await;
            assert_eq!(q.image().cluster_id, nodes[0].image().cluster_id);
        }

        // Forwarded: a follower creates a topic and reads its own write at once.
        let created = create(
            followers[0],
            vec![CreateTopicRequest {
                replication_factor: 3,
                ..topic("spread", 6)
            }],
        )
        .await;
        assert!(followers[0].image().topics.contains_key("spread"));
        let leaders: BTreeSet<i32> = created[0].partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, BTreeSet::from([1, 2, 3]));
        let first = followers[1].allocate_producer_ids(10).await.unwrap();
        assert_eq!(
            nodes[0].allocate_producer_ids(10).await.unwrap(),
            first + 10
        );

        // SCRAM credentials: forwarded, read back by the writer at once, replicated to
        // the other follower.
        let upsertion = ScramUpsertion {
            name: "alice".to_string(),
            mechanism: ScramMechanism::Sha512.type_id(),
            iterations: 4096,
            salt: b"salt".to_vec(),
            salted_password: vec![7; 64],
        };
        let results = followers[0]
            .alter_scram_credentials(Vec::new(), vec![upsertion])
            .await
            .unwrap();
        assert_eq!(results, [("alice".to_string(), Ok(()))]);
        let stored = followers[0]
            .image()
            .scram_credential("alice", ScramMechanism::Sha512)
            .unwrap();
        wait_for("the credential on every node", || {
            nodes.iter().all(|q| {
                q.image().scram_credential("alice", ScramMechanism::Sha512) == Some(stored.clone())
            })
        })
        .await;

        // DescribeQuorum from a follower is the leader's view.
        let described = followers[1].describe_quorum().await.unwrap();
        assert_eq!(described.leader_id, leader);
        assert_eq!(described.voters.len(), 3);
        assert_eq!(described.endpoints.len(), 3);
        assert!(described.high_watermark > 0);

        // A follower stops: the leader fences it after the session timeout.
        let gone = followers[1].inner.node_id;
        followers[1].shutdown().await;
        wait_for("the stopped broker fenced", || {
            followers[0].image().brokers[&gone].fenced
        })
        .await;
        assert!(!followers[0].image().is_live_broker(gone));
        // A heartbeat of its current epoch unfences it (as after a network partition); a
        // stale epoch is STALE_BROKER_EPOCH.
        let epoch = followers[0].image().brokers[&gone].broker_epoch;
        let beat = |broker_epoch| ControllerCall::BrokerHeartbeat {
            node_id: gone,
            broker_epoch,
        };
        match followers[0].call(beat(epoch - 1)).await.unwrap() {
            ReplyBody::Heartbeat(Err(e)) => assert_eq!(e.code, codes::STALE_BROKER_EPOCH),
            other => panic!("stale heartbeat answered {other:?}"),
        }
        assert!(matches!(
            followers[0].call(beat(epoch)).await.unwrap(),
            ReplyBody::Heartbeat(Ok(()))
        ));
        assert!(followers[0].image().is_live_broker(gone));
        wait_for("fenced again without heartbeats", || {
            followers[0].image().brokers[&gone].fenced
        })
        .await;
        // Placement now has two brokers: RF 3 is refused, RF 2 avoids the fenced one.
        let refused = followers[0]
            .create_topics(
                vec![CreateTopicRequest {
                    replication_factor: 3,
                    ..topic("too-wide", 1)
                }],
                &DEFAULTS,
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            refused[0].as_ref().unwrap_err().code,
            codes::INVALID_REPLICATION_FACTOR
        );
        let narrow = create(
            followers[0],
            vec![CreateTopicRequest {
                replication_factor: 2,
                ..topic("narrow", 4)
            }],
        )
        .await;
        assert!(narrow[0]
            .partitions
            .iter()
            .all(|p| !p.replicas.contains(&gone)));
        for q in &nodes {
            q.shutdown().await;
        }
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
        let q = MetadataQuorum::start(&config(dir.path(), 1, 9093), &CancellationToken::new())
            .await
            .unwrap();
        let after = q.image();
        assert_eq!(after.cluster_id, before.cluster_id);
        assert_eq!(restarted(&before.topics), after.topics);
        assert_eq!(after.topic_names_by_id, before.topic_names_by_id);
        assert_eq!(after.next_producer_id, 1000);
        assert_eq!(after.controller_id, 1);
        assert_eq!(after.brokers[&1].port, 9093);
        assert_eq!(after.topics["a"].topic_id, created[0].topic_id);
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
        let grown = BTreeMap::from([("grow".to_string(), grown)]);
        assert_eq!(q.image().topics["grow"], restarted(&grown)["grow"]);
        q.shutdown().await;
    }

    #[tokio::test]
    async fn restart_from_snapshot_and_purged_log() {
        let dir = TempDir::new().unwrap();
        let q = start(&dir).await;
        create(&q, vec![topic("snap", 1)]).await;
        let upsertion = |name: &str, mechanism: ScramMechanism| ScramUpsertion {
            name: name.to_string(),
            mechanism: mechanism.type_id(),
            iterations: 8192,
            salt: b"salt".to_vec(),
            salted_password: vec![7; 32],
        };
        let upserted = q
            .alter_scram_credentials(
                Vec::new(),
                vec![
                    upsertion("alice", ScramMechanism::Sha256),
                    upsertion("bob", ScramMechanism::Sha512),
                ],
            )
            .await
            .unwrap();
        assert!(upserted.iter().all(|(_, r)| r.is_ok()), "{upserted:?}");
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
        let bob = ScramDeletion {
            name: "bob".to_string(),
            mechanism: ScramMechanism::Sha512.type_id(),
        };
        let deleted = q.alter_scram_credentials(vec![bob], Vec::new()).await;
        assert_eq!(deleted.unwrap(), [("bob".to_string(), Ok(()))]);
        let before = q.image();
        q.shutdown().await;

        let q = start(&dir).await;
        let metrics = q.inner.raft.metrics().borrow().clone();
        assert_eq!(metrics.snapshot, applied);
        assert_eq!(metrics.purged, applied);
        let after = q.image();
        assert_eq!(after.cluster_id, before.cluster_id);
        assert_eq!(after.topics, restarted(&before.topics));
        assert_eq!(after.topics.len(), 2);
        // The credentials: alice's from the snapshot, bob's removal replayed from the log.
        assert_eq!(after.scram_credentials, before.scram_credentials);
        assert!(after
            .scram_credential("alice", ScramMechanism::Sha256)
            .is_some());
        assert!(!after.scram_credentials.contains_key("bob"));
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
        match MetadataQuorum::start(&config(dir.path(), 1, 9092), &CancellationToken::new()).await {
            Err(MetadataError::Storage(_)) => {}
            Err(e) => panic!("expected a storage error, got {e}"),
            Ok(_) => panic!("started on a corrupt log"),
        }
    }

    #[tokio::test]
    async fn negative_node_id_is_refused() {
        let dir = TempDir::new().unwrap();
        let mut config = config(dir.path(), 1, 9092);
        config.node_id = -1;
        assert!(MetadataQuorum::start(&config, &CancellationToken::new())
            .await
            .is_err());
    }
}
