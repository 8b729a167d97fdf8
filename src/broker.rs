//! The broker's shared state and its lifecycle: start the metadata quorum, open the
//! local partitions, serve clients until shutdown, then flush and close everything.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::dynamic_config::LiveConfig;
use crate::group::runtime::GroupRuntime;
use crate::log::cleaner::LogCleaner;
use crate::log::dir::{self, MetaPropertiesError};
use crate::metadata::{MetadataError, MetadataImage, MetadataQuorum};
use crate::partition::PartitionManager;
use crate::protocol::fetch_session::FetchSessionCache;
use crate::replica_fetcher::ReplicaFetchers;
use crate::replication::throttle::ReplicationQuota;
use crate::server;
use crate::txn;
use crate::txn::runtime::TxnRuntime;

/// Producer ids reserved from the quorum at a time (one metadata write per block).
const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    MetaProperties(#[from] MetaPropertiesError),
    /// A storage error took the log directory offline; already logged when it happened.
    #[error("log directory {dir} went offline: {cause}")]
    LogDirOffline { dir: String, cause: String },
}

/// What every request handler can reach.
pub struct Broker {
    /// The static config (file, env, flags). Settings that AlterConfigs can change are
    /// read through [`Broker::effective_config`].
    pub config: BrokerConfig,
    pub live_config: Arc<LiveConfig>,
    pub metadata: MetadataQuorum,
    pub partitions: Arc<PartitionManager>,
    pub groups: GroupRuntime,
    pub txns: TxnRuntime,
    pub fetch_sessions: FetchSessionCache,
    /// Connections to transaction coordinators for produce verification (KIP-890).
    pub txn_verify_connections: crate::inter_broker::ConnectionPool,
    /// This node's followers' fetchers, one task per leader it follows.
    pub replica_fetchers: ReplicaFetchers,
    /// `leader.replication.throttled.rate`: what this node, leading, sends the
    /// throttled replicas of a reassignment (`replication::throttle`).
    pub leader_throttle: ReplicationQuota,
    producer_ids: tokio::sync::Mutex<Range<i64>>,
}

impl Broker {
    /// The config in force now: the static one with the latest image's dynamic broker
    /// configs over it (cheap when they did not change).
    pub fn effective_config(&self) -> Arc<BrokerConfig> {
        self.live_config.effective(&self.metadata.image())
    }

    /// Hands out one producer id for InitProducerId, reserving a new block when needed.
    pub async fn next_producer_id(&self) -> Result<i64, MetadataError> {
        let mut block = self.producer_ids.lock().await;
        if block.is_empty() {
            let first = self
                .metadata
                .allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)
                .await?;
            *block = first..first + PRODUCER_ID_BLOCK_SIZE;
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }

    /// Reconciles the local partitions with the latest metadata image right away, so a
    /// handler that just created a topic can answer with its partitions ready.
    pub async fn reconcile_partitions(&self) {
        let image = self.metadata.image();
        self.partitions.reconcile_blocking(image.clone()).await;
        self.replica_fetchers.update(&image, &self.partitions);
        self.update_throttle_rates(&image);
    }

    /// The replication throttle rates of the effective config as of `image`.
    fn update_throttle_rates(&self, image: &MetadataImage) {
        let config = self.live_config.effective(image);
        self.leader_throttle
            .set_rate(config.leader_replication_throttled_rate_bytes);
        self.replica_fetchers
            .set_throttle_rate(config.follower_replication_throttled_rate_bytes);
    }
}

/// Runs a broker until `shutdown` is cancelled. `ready` receives the bound address.
pub async fn serve(
    config: BrokerConfig,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<(), BrokerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    for key in config.unknown_keys() {
        tracing::warn!(key, "unknown config ignored");
    }
    // Before the metadata store opens: it would create itself empty over old data.
    dir::check_metadata_store_present(&config.data_dir)?;
    let metadata = MetadataQuorum::start(&config, &shutdown).await?;
    let checked = dir::check_or_write_meta_properties(
        &config.data_dir,
        &metadata.image().cluster_id,
        config.node_id,
        crate::metadata::new_kafka_uuid,
    );
    if let Err(error) = checked {
        metadata.shutdown().await;
        return Err(error.into());
    }
    if !config.cluster.roles.broker {
        // A controller-only node (Kafka's isolated mode) runs the quorum and the controller
        // duties on its controller listener, and nothing of a broker: no client listener,
        // partitions, log cleaner or group coordinator, and no broker registration.
        tracing::info!(
            node_id = config.node_id,
            cluster_id = %metadata.image().cluster_id,
            "millrace controller serving"
        );
        shutdown.cancelled().await;
        metadata.shutdown().await;
        tracing::info!("millrace stopped");
        return Ok(());
    }
    let live_config = Arc::new(LiveConfig::new(config.clone()));
    let partitions = Arc::new(PartitionManager::new(live_config.clone()));
    partitions.reconcile_blocking(metadata.image()).await;
    let cleaner = LogCleaner::start(
        {
            let (live_config, metadata) = (live_config.clone(), metadata.clone());
            move || live_config.effective(&metadata.image()).cleaner.clone()
        },
        &config.data_dir,
        partitions.health().clone(),
        {
            let partitions = partitions.clone();
            move || partitions.cleanable_logs()
        },
    )
    .map_err(|source| BrokerError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let background = CancellationToken::new();
    let (groups, group_task) = GroupRuntime::start(
        config.clone(),
        metadata.clone(),
        partitions.clone(),
        None,
        background.clone(),
    );
    let (txns, txn_task) = TxnRuntime::start(
        config.clone(),
        metadata.clone(),
        partitions.clone(),
        Some(txn::markers::sender(
            config.node_id,
            metadata.clone(),
            background.clone(),
        )),
        background.clone(),
    );
    let broker = Arc::new(Broker {
        live_config,
        partitions,
        groups,
        txns,
        metadata,
        producer_ids: tokio::sync::Mutex::new(0..0),
        fetch_sessions: FetchSessionCache::new(config.fetch_sessions),
        txn_verify_connections: crate::inter_broker::ConnectionPool::new("millrace-txn-verify"),
        replica_fetchers: ReplicaFetchers::new(
            config.node_id,
            config.replica_fetch.clone(),
            background.clone(),
        ),
        leader_throttle: ReplicationQuota::new(std::time::Instant::now()),
        config,
    });
    broker
        .replica_fetchers
        .update(&broker.metadata.image(), &broker.partitions);
    broker.update_throttle_rates(&broker.metadata.image());

    let listener = match TcpListener::bind(broker.config.listener).await {
        Ok(listener) => listener,
        Err(source) => {
            background.cancel();
            let _ = group_task.await;
            let _ = txn_task.await;
            let _ = tokio::task::spawn_blocking(move || cleaner.shutdown()).await;
            broker.metadata.shutdown().await;
            return Err(BrokerError::Listen {
                address: broker.config.listener.to_string(),
                source,
            });
        }
    };
    let local = listener.local_addr().unwrap_or(broker.config.listener);
    tracing::info!(
        listener = %local,
        data_dir = %broker.config.data_dir.display(),
        cluster_id = %broker.metadata.image().cluster_id,
        node_id = broker.config.node_id,
        "millrace serving"
    );
    if let Some(ready) = ready {
        let _ = ready.send(local);
    }

    let watcher = tokio::spawn(watch_metadata(broker.clone(), background.clone()));
    let flusher = tokio::spawn(flush_scheduler(broker.clone(), background.clone()));
    let retention = tokio::spawn(log_retention(broker.clone(), background.clone()));
    let isr = tokio::spawn(isr_changes(broker.clone(), background.clone()));
    let checkpoints = tokio::spawn(high_watermark_checkpoints(
        broker.clone(),
        background.clone(),
    ));
    // Fail-stop: a storage error anywhere shuts the whole broker down.
    let fail_stop = tokio::spawn({
        let health = broker.partitions.health().clone();
        let shutdown = shutdown.clone();
        async move {
            health.offline().await;
            shutdown.cancel();
        }
    });

    // In a cluster, a stop first moves this broker's leaderships away (controlled
    // shutdown), bounded by `broker.session.timeout.ms` (after which the controller would
    // fence it anyway), and only then stops serving.
    let serving = CancellationToken::new();
    let controlled_shutdown = tokio::spawn({
        let (broker, shutdown, serving) = (broker.clone(), shutdown.clone(), serving.clone());
        async move {
            shutdown.cancelled().await;
            let cluster = &broker.config.cluster;
            if cluster.is_multi_node() && !broker.partitions.health().is_offline() {
                let bound = Duration::from_millis(cluster.broker_session_timeout_ms);
                match tokio::time::timeout(bound, broker.metadata.controlled_shutdown()).await {
                    Ok(Ok(())) => tracing::info!("controlled shutdown: leaderships moved"),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "controlled shutdown failed; stopping anyway")
                    }
                    Err(_) => tracing::warn!("controlled shutdown timed out; stopping anyway"),
                }
            }
            serving.cancel();
        }
    });
    server::run(listener, broker.clone(), serving).await;
    // Should the server stop by itself, this stop is a shutdown too.
    shutdown.cancel();
    let _ = controlled_shutdown.await;
    fail_stop.abort();

    background.cancel();
    let _ = watcher.await;
    let _ = flusher.await;
    let _ = retention.await;
    let _ = isr.await;
    let _ = checkpoints.await;
    let _ = group_task.await;
    let _ = txn_task.await;
    // Before the logs are closed; a clean in progress is abandoned.
    if let Err(error) = tokio::task::spawn_blocking(move || cleaner.shutdown()).await {
        tracing::error!(%error, "stopping the log cleaner failed");
    }
    let health = broker.partitions.health();
    if let Some(cause) = health.cause() {
        // Like Kafka, which halts when its last log dir fails: no flush, no snapshot, and
        // no metadata store close either (it lives in the same directory; RocksDB's
        // closing WAL sync on a full disk aborts the process). Its WAL recovers it. The
        // quorum is kept alive (not dropped, which would close it) for the caller to
        // halt the process.
        std::mem::forget(broker.clone());
        return Err(BrokerError::LogDirOffline {
            dir: health.dir().display().to_string(),
            cause: cause.to_string(),
        });
    }
    let partitions = broker.partitions.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || partitions.close_all()).await {
        tracing::error!(%error, "closing the partitions failed");
    }
    broker.metadata.shutdown().await;
    tracing::info!("millrace stopped");
    Ok(())
}

/// Applies every new metadata image to the local partitions (topics created or
/// deleted through any path, config changes).
async fn watch_metadata(broker: Arc<Broker>, stop: CancellationToken) {
    let mut images = broker.metadata.watch();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = images.changed() => {
                if changed.is_err() {
                    return;
                }
                let image = images.borrow_and_update().clone();
                broker.partitions.reconcile_blocking(image.clone()).await;
                broker.replica_fetchers.update(&image, &broker.partitions);
                broker.update_throttle_rates(&image);
            }
        }
    }
}

/// Sends the ISR changes the partitions led here ask for (AlterPartition, to the
/// controller through the metadata quorum) and hands back the answers; every
/// `replica.lag.time.max.ms` / 2 asks each led partition whether a follower lags too far
/// behind (Kafka's isr-expiration task) and resends changes the controller did not
/// answer. One call in flight per partition at most.
async fn isr_changes(broker: Arc<Broker>, stop: CancellationToken) {
    let lag_ms = broker.config.replica_fetch.lag_time_max_ms.max(2) as u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(lag_ms / 2));
    let backoff = Duration::from_millis(broker.config.replica_fetch.backoff_ms.max(1));
    let queue = broker.partitions.isr_changes().clone();
    let mut resend = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = queue.ready() => {}
            _ = ticker.tick() => {
                for partition in broker.partitions.all() {
                    if let Some(request) = partition.isr_change_due(resend) {
                        queue.push(partition.topic_id, partition.index, request);
                    }
                }
                // Pending requests are resent every other tick: an answer lost with a
                // controller that died must not leave the ISR stuck.
                resend = !resend;
            }
        }
        for ((topic_id, index), request) in queue.take_all() {
            let broker = broker.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let answer = broker
                    .metadata
                    .alter_partition(topic_id, index, request.clone())
                    .await;
                let result = answer.unwrap_or_else(|error| {
                    tracing::debug!(%error, "AlterPartition not answered");
                    Err(crate::metadata::partition_change::codes::NOT_CONTROLLER)
                });
                let Some(partition) = broker.partitions.get(topic_id, index) else {
                    return;
                };
                if let Some(again) = partition.on_alter_partition_result(&request, result) {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {
                            broker.partitions.isr_changes().push(topic_id, index, again);
                        }
                    }
                }
            });
        }
    }
}

/// Checks `flush.ms` (per topic, defaulting to `log.flush.interval.ms`) every
/// `log.flush.scheduler.interval.ms`. The fsyncs run on a blocking thread; a tick that
/// comes while they are still running is skipped, not queued.
async fn flush_scheduler(broker: Arc<Broker>, stop: CancellationToken) {
    let period = Duration::from_millis(broker.config.log_flush_scheduler_interval_ms.max(1));
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {
                let partitions = broker.partitions.clone();
                if let Err(error) = tokio::task::spawn_blocking(move || partitions.flush_due()).await {
                    tracing::error!(%error, "scheduled flush failed");
                }
            }
        }
    }
}

/// Writes every partition's high watermark to `replication-offset-checkpoint` every
/// `replica.high.watermark.checkpoint.interval.ms` (Kafka's highwatermark-checkpoint
/// task), on a blocking thread. A failed write takes the log directory offline, as in
/// Kafka. The last one is written when the partitions close.
async fn high_watermark_checkpoints(broker: Arc<Broker>, stop: CancellationToken) {
    let period = Duration::from_millis(broker.config.high_watermark_checkpoint_interval_ms);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let partitions = broker.partitions.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = partitions.write_high_watermark_checkpoint();
            if let Err(error) = &result {
                partitions.health().trip(&format_args!(
                    "cannot write the high watermark checkpoint: {error}"
                ));
            }
            result.is_ok()
        });
        if !matches!(written.await, Ok(true)) {
            return;
        }
    }
}

/// Enforces `retention.ms` / `retention.bytes` every `log.retention.check.interval.ms`
/// (first after `log.initial.task.delay.ms`), as Kafka's `kafka-log-retention` task, and
/// unlinks each retired segment's `*.deleted` files once its `file.delete.delay.ms` has
/// passed (those still waiting at shutdown are removed when the log opens next). All file
/// work runs on blocking threads; a tick that comes while a pass runs is not queued.
async fn log_retention(broker: Arc<Broker>, stop: CancellationToken) {
    use tokio::time::{Instant, MissedTickBehavior};
    let period = Duration::from_millis(broker.config.log_retention_check_interval_ms.max(1));
    let first = Instant::now() + Duration::from_millis(broker.config.log_initial_task_delay_ms);
    let mut ticker = tokio::time::interval_at(first, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Retired files by when they may go.
    let mut pending: Vec<(Instant, Vec<PathBuf>)> = Vec::new();
    loop {
        let next_due = pending.iter().map(|(due, _)| *due).min();
        // Only a placeholder when nothing is pending (the branch is then disabled).
        let wake = next_due.unwrap_or_else(|| Instant::now() + period);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {
                let partitions = broker.partitions.clone();
                let pass = tokio::task::spawn_blocking(move || {
                    partitions.enforce_retention(crate::partition::now_ms())
                });
                match pass.await {
                    Ok(retired) => {
                        let now = Instant::now();
                        pending.extend(retired.into_iter().map(|segment| {
                            (now + Duration::from_millis(segment.delete_delay_ms), segment.files)
                        }));
                    }
                    Err(error) => tracing::error!(%error, "retention check failed"),
                }
            }
            _ = tokio::time::sleep_until(wake), if next_due.is_some() => {
                let now = Instant::now();
                let (due, later): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|(due, _)| *due <= now);
                pending = later;
                let files: Vec<PathBuf> = due.into_iter().flat_map(|(_, files)| files).collect();
                let partitions = broker.partitions.clone();
                let unlink = tokio::task::spawn_blocking(move || {
                    partitions.delete_retired_files(&files)
                });
                if let Err(error) = unlink.await {
                    tracing::error!(%error, "deleting retired segment files failed");
                }
            }
        }
    }
}
