//! Broker configuration under Apache Kafka's names.
//!
//! Layers, later wins: built-in defaults, a TOML file (`--config`; flat quoted keys such
//! as `"log.dirs" = "..."` or nested tables, which flatten with dots), `MILLRACE_*`
//! environment variables (`MILLRACE_LOG_DIRS` -> `log.dirs`), and `--override key=value`
//! flags (as `kafka-server-start.sh --override`). Environment variables name known keys
//! only (tools share the prefix); unknown keys from the file or flags are reported once and
//! ignored, so that a Kafka `server.properties` carried over does not stop the broker.
//!
//! Topic-level configs (what CreateTopics and DescribeConfigs see) are described by
//! [`TOPIC_CONFIGS`]: each has a broker-level synonym that supplies its default.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::log::cleaner::CleanerConfig;
use crate::log::validator::RecordRules;
use crate::log::{CleanupPolicy, LogConfig};

pub mod cluster;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("invalid value for {key}: {value:?} ({reason})")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("malformed --override {0:?}: expected key=value")]
    Override(String),
}

/// Broker-level settings, resolved and typed.
/// Kafka's `replica.*` fetch settings: how a follower fetches from its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchConfig {
    /// `replica.fetch.max.bytes`: per partition (the first batch may exceed it).
    pub max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: per fetch response.
    pub response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`: how long the leader may hold a fetch with no data.
    pub wait_max_ms: i32,
    /// `replica.fetch.min.bytes`
    pub min_bytes: i32,
    /// `replica.fetch.backoff.ms`: pause after a failed fetch.
    pub backoff_ms: u64,
    /// `replica.socket.timeout.ms`: connect and answer deadline of a follower's fetch.
    pub socket_timeout_ms: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR
    /// (the leader asks the controller), and one that catches up is added back.
    pub lag_time_max_ms: i64,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`
    pub node_id: i32,
    /// The `listeners` entry named by `inter.broker.listener.name`: where the broker
    /// accepts Kafka clients (a controller-only node serves none).
    pub listener: SocketAddr,
    /// Its `advertised.listeners` entry: host and port returned in Metadata.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// `process.roles`, the quorum, every listener, rack and broker session timings.
    pub cluster: cluster::ClusterConfig,
    /// `log.dirs` (first entry): partitions and the metadata store live here.
    pub data_dir: PathBuf,
    /// `num.partitions`: partitions of an auto-created topic or a CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `unclean.leader.election.enable`: elect an out-of-sync replica when no in-sync one
    /// is left (it may lack acknowledged records).
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`: the active controller moves leaderships back to
    /// the preferred (first) replicas by itself.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how long a partition may stay led by
    /// another replica than its preferred one before the controller tries to move it back.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `message.max.bytes`: largest record batch accepted (topic `max.message.bytes`).
    pub message_max_bytes: i32,
    /// `socket.request.max.bytes`: a frame larger than this closes the connection.
    pub socket_request_max_bytes: usize,
    /// `queued.max.requests` per connection: requests read but not yet answered.
    pub max_in_flight_requests_per_connection: usize,
    /// `queued.max.request.bytes`, broker-wide: bytes of requests read but not yet
    /// handled; `None` (a value <= 0) is unbounded, as in Kafka.
    pub queued_max_request_bytes: Option<u64>,
    /// `millrace.queued.max.response.bytes`, per connection: response bytes not yet
    /// written plus the `max_bytes` reserved by fetches still being handled.
    pub queued_max_response_bytes: u64,
    /// `max.connections`: broker-wide; accepting waits at the bound.
    pub max_connections: usize,
    /// `max.connections.per.ip` and `max.connections.per.ip.overrides`: a connection over
    /// its address's bound is closed at once.
    pub max_connections_per_ip: usize,
    pub max_connections_per_ip_overrides: HashMap<IpAddr, usize>,
    /// `fetch.max.bytes`: bound on one fetch response's record bytes.
    pub fetch_max_bytes: i32,
    /// How followers fetch from leaders: Kafka's `replica.*` keys.
    pub replica_fetch: ReplicaFetchConfig,
    /// `max.incremental.fetch.session.cache.slots`, `min.incremental.fetch.session.eviction.ms`
    /// and `millrace.incremental.fetch.session.cache.max.bytes`.
    pub fetch_sessions: crate::protocol::fetch_session::SessionCacheConfig,
    /// `max.request.partition.size.limit`: partitions in one DescribeTopicPartitions answer.
    pub max_request_partition_size_limit: i32,
    /// `log.segment.bytes`, `log.roll.ms`, `log.index.interval.bytes`,
    /// `log.flush.interval.messages`, `log.flush.interval.ms`, `log.cleanup.policy`,
    /// `log.retention.ms` (else `.minutes`, else `.hours`), `log.retention.bytes`,
    /// `log.segment.delete.delay.ms`: the topic defaults.
    /// `log.cleaner.delete.retention.ms`, `log.cleaner.min.cleanable.ratio`,
    /// `log.cleaner.min.compaction.lag.ms`, `log.cleaner.max.compaction.lag.ms`.
    pub log: LogConfig,
    /// `log.cleaner.enable`, `log.cleaner.threads`, `log.cleaner.io.max.bytes.per.second`,
    /// `log.cleaner.dedupe.buffer.size`, `log.cleaner.backoff.ms`.
    pub cleaner: CleanerConfig,
    /// `leader.replication.throttled.rate` / `follower.replication.throttled.rate`:
    /// bytes/s for the replicas a reassignment throttles (`replication::throttle`).
    pub leader_replication_throttled_rate_bytes: i64,
    pub follower_replication_throttled_rate_bytes: i64,
    /// `log.flush.scheduler.interval.ms`: how often `log.flush.interval.ms` is checked.
    pub log_flush_scheduler_interval_ms: u64,
    /// `log.retention.check.interval.ms`: how often retention is enforced.
    pub log_retention_check_interval_ms: u64,
    /// `log.initial.task.delay.ms`: the wait before the first retention check.
    pub log_initial_task_delay_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often every partition's high
    /// watermark is written to `replication-offset-checkpoint`.
    pub high_watermark_checkpoint_interval_ms: u64,
    /// `log.cleanup.policy` as given (also parsed into `log.cleanup_policy`).
    pub log_cleanup_policy: String,
    /// `compression.type` (topic default `producer`: keep what the producer sent).
    pub compression_type: String,
    /// `log.message.timestamp.type`: CreateTime or LogAppendTime (the broker stamps batches).
    pub log_message_timestamp_type: String,
    /// `log.message.timestamp.before.max.ms` / `log.message.timestamp.after.max.ms`: how
    /// far a record's CreateTime may lie behind / ahead of the broker's clock.
    pub log_message_timestamp_before_max_ms: i64,
    pub log_message_timestamp_after_max_ms: i64,
    /// `min.insync.replicas`
    pub min_insync_replicas: i32,
    /// `producer.id.expiration.ms`: idle idempotent producers are forgotten after this.
    pub producer_id_expiration_ms: i64,
    /// `connections.max.idle.ms`
    pub connections_max_idle_ms: u64,
    /// `offsets.topic.num.partitions`: shards of `__consumer_offsets`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (capped at the registered brokers).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`
    pub offsets_topic_segment_bytes: i64,
    /// `group.*` and `offsets.retention.minutes` / `offset.metadata.max.bytes`.
    pub group: crate::group::GroupConfig,
    /// `transaction.state.log.*`, `transaction.*` and `transactional.id.expiration.ms`.
    pub txn: crate::txn::TxnConfig,
    /// Every key as set by file, env or flag, for DescribeConfigs (source STATIC_BROKER_CONFIG).
    pub explicit: BTreeMap<String, String>,
}

/// How a broker or topic config is typed, for DescribeConfigs `config_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// A topic-level config Millrace knows, with the broker config that supplies its default.
pub struct TopicConfigDef {
    pub name: &'static str,
    pub broker_synonym: &'static str,
    pub config_type: ConfigType,
    /// Values the topic may be set to; `None` means any value that parses as the type.
    pub allowed: Option<&'static [&'static str]>,
}

const fn topic_config(
    name: &'static str,
    broker_synonym: &'static str,
    config_type: ConfigType,
    allowed: Option<&'static [&'static str]>,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_synonym,
        config_type,
        allowed,
    }
}

/// The topic configs CreateTopics accepts and DescribeConfigs reports.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    topic_config(
        "cleanup.policy",
        "log.cleanup.policy",
        ConfigType::List,
        Some(&["delete", "compact", "compact,delete", "delete,compact"]),
    ),
    topic_config(
        "compression.type",
        "compression.type",
        ConfigType::String,
        Some(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
    ),
    topic_config(
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        ConfigType::Long,
        None,
    ),
    topic_config(
        "flush.messages",
        "log.flush.interval.messages",
        ConfigType::Long,
        None,
    ),
    topic_config(
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        ConfigType::Long,
        None,
    ),
    topic_config("flush.ms", "log.flush.interval.ms", ConfigType::Long, None),
    topic_config(
        "index.interval.bytes",
        "log.index.interval.bytes",
        ConfigType::Int,
        None,
    ),
    topic_config(
        "max.message.bytes",
        "message.max.bytes",
        ConfigType::Int,
        None,
    ),
    topic_config(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        ConfigType::Long,
        None,
    ),
    topic_config(
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        ConfigType::Long,
        None,
    ),
    topic_config(
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        ConfigType::Long,
        None,
    ),
    topic_config(
        "message.timestamp.type",
        "log.message.timestamp.type",
        ConfigType::String,
        Some(&["CreateTime", "LogAppendTime"]),
    ),
    topic_config(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        ConfigType::Double,
        None,
    ),
    topic_config(
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        ConfigType::Long,
        None,
    ),
    topic_config(
        "min.insync.replicas",
        "min.insync.replicas",
        ConfigType::Int,
        None,
    ),
    topic_config(
        "retention.bytes",
        "log.retention.bytes",
        ConfigType::Long,
        None,
    ),
    topic_config("retention.ms", "log.retention.ms", ConfigType::Long, None),
    topic_config("segment.bytes", "log.segment.bytes", ConfigType::Int, None),
    topic_config("segment.ms", "log.roll.ms", ConfigType::Long, None),
    // No broker synonym (""): their default is the empty list.
    topic_config(
        crate::replication::throttle::LEADER_THROTTLED_REPLICAS,
        "",
        ConfigType::List,
        None,
    ),
    topic_config(
        crate::replication::throttle::FOLLOWER_THROTTLED_REPLICAS,
        "",
        ConfigType::List,
        None,
    ),
    topic_config(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        Some(&["true", "false"]),
    ),
];

pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// `queued.max.request.bytes` when not set (Kafka's default, -1, is unbounded): room for
/// two and a half maximal requests, a bound on what clients can make the broker buffer.
const DEFAULT_QUEUED_MAX_REQUEST_BYTES: i64 = 268_435_456;

/// Smallest segment a topic or the broker may ask for: Kafka 4's bound for
/// `segment.bytes` and `log.segment.bytes` (KIP-1030), so that a topic cannot turn every
/// batch into a segment roll (three new files and their fsyncs).
const MIN_SEGMENT_BYTES: i64 = 1_048_576;

/// Kafka's test-only topic config that overrides `segment.bytes` below its minimum.
pub const INTERNAL_SEGMENT_BYTES: &str = "internal.segment.bytes";

/// The floor for `internal.segment.bytes`: the smallest record (Kafka's
/// `LegacyRecord.RECORD_OVERHEAD_V0`, the pre-4.0 bound of `segment.bytes`).
const MIN_INTERNAL_SEGMENT_BYTES: i64 = 14;

/// A compressed batch may decompress to at most this many times the topic's
/// `max.message.bytes` (at least [`MIN_DECOMPRESSION_BASE_BYTES`]): far above what real
/// codecs reach on real data (zstd/gzip rarely beat 20x), yet it stops a decompression
/// bomb after a bounded amount of work. The walk streams, so memory does not grow with it.
const DECOMPRESSION_RATIO_BOUND: u64 = 64;
const MIN_DECOMPRESSION_BASE_BYTES: u64 = 1 << 20;

/// Checks one topic-level config of a CreateTopics request; the error text is what
/// the client sees next to INVALID_CONFIG.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    if name == INTERNAL_SEGMENT_BYTES {
        return validate_number(name, value, MIN_INTERNAL_SEGMENT_BYTES, ConfigType::Int);
    }
    let def = topic_config_def(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    if def.broker_synonym.is_empty() {
        return crate::replication::throttle::validate_replica_list(name, value);
    }
    if let Some(allowed) = def.allowed {
        if !allowed.contains(&value) {
            return Err(format!(
                "Invalid value {value} for configuration {name}: String must be one of: {}",
                allowed.join(", ")
            ));
        }
        return Ok(());
    }
    if def.config_type == ConfigType::Double {
        return validate_ratio(name, value);
    }
    let min = match name {
        "segment.bytes" => MIN_SEGMENT_BYTES,
        "retention.ms" => -1,
        // Kafka gives `retention.bytes` no bound: any negative value is unbounded.
        "retention.bytes" => i64::MIN,
        "min.insync.replicas" | "flush.messages" | "segment.ms" | "max.compaction.lag.ms" => 1,
        _ => 0,
    };
    validate_number(name, value, min, def.config_type)
}

/// A Double between 0 and 1 (Kafka's `between(0, 1)`).
fn validate_ratio(name: &str, value: &str) -> Result<(), String> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
        Ok(_) => Err(format!(
            "Invalid value {value} for configuration {name}: Value must be between 0 and 1"
        )),
        Err(_) => Err(format!(
            "Invalid value {value} for configuration {name}: Not a number"
        )),
    }
}

/// Parses `cleanup.policy` (already validated against the allowed lists).
pub fn parse_cleanup_policy(value: &str) -> CleanupPolicy {
    let has = |name: &str| value.split(',').any(|policy| policy.trim() == name);
    CleanupPolicy {
        delete: has("delete"),
        compact: has("compact"),
    }
}

fn validate_number(
    name: &str,
    value: &str,
    min: i64,
    config_type: ConfigType,
) -> Result<(), String> {
    let number: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("Invalid value {value} for configuration {name}: Not a number"))?;
    if number < min {
        return Err(format!(
            "Invalid value {value} for configuration {name}: Value must be at least {min}"
        ));
    }
    if config_type == ConfigType::Int && number > i32::MAX as i64 {
        return Err(format!(
            "Invalid value {value} for configuration {name}: Value must fit in an int"
        ));
    }
    Ok(())
}

impl BrokerConfig {
    /// Resolves the config from a TOML file (optional), an environment and overrides.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<BrokerConfig, ConfigError> {
        let mut explicit = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Toml {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?;
            flatten_toml("", &table, &mut explicit);
        }
        for (key, value) in env {
            // Only known keys: tools share the prefix (MILLRACE_BIN, MILLRACE_CACHE, ...).
            if let Some(rest) = key.strip_prefix("MILLRACE_") {
                let name = rest.to_ascii_lowercase().replace('_', ".");
                if KNOWN_BROKER_KEYS.contains(&name.as_str()) {
                    explicit.insert(name, value);
                }
            }
        }
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::Override(item.clone()))?;
            explicit.insert(key.trim().to_string(), value.trim().to_string());
        }
        BrokerConfig::from_map(explicit, None)
    }

    /// The effective config once the dynamic broker configs (Kafka's precedence: per
    /// broker over cluster default over static) are layered over this static one. The
    /// result's `explicit` holds the merged keys, so `broker_value` answers effective
    /// values; the static config stays the source of STATIC_BROKER_CONFIG.
    pub fn with_dynamic(
        &self,
        cluster_default: &BTreeMap<String, String>,
        per_broker: &BTreeMap<String, String>,
    ) -> Result<BrokerConfig, ConfigError> {
        let mut merged = self.explicit.clone();
        for (key, value) in cluster_default.iter().chain(per_broker) {
            merged.insert(key.clone(), value.clone());
        }
        // The per-ip overrides are static: reuse what start-up resolved.
        BrokerConfig::from_map(merged, Some(self.max_connections_per_ip_overrides.clone()))
    }

    /// Kafka's built-in value of a broker key (DescribeConfigs' DEFAULT_CONFIG synonym).
    pub fn default_value(key: &str) -> Option<String> {
        static DEFAULTS: std::sync::OnceLock<Option<BrokerConfig>> = std::sync::OnceLock::new();
        DEFAULTS
            .get_or_init(|| BrokerConfig::from_map(BTreeMap::new(), None).ok())
            .as_ref()?
            .broker_value(key)
            .map(|(value, _)| value)
    }

    fn from_map(
        explicit: BTreeMap<String, String>,
        resolved_per_ip_overrides: Option<HashMap<IpAddr, usize>>,
    ) -> Result<BrokerConfig, ConfigError> {
        let map = &explicit;
        let get = |key: &str| map.get(key).map(String::as_str);
        let node_id: i32 = number(map, "node.id", 1)?;
        let cluster = cluster::parse(map, node_id)?;
        let (listener, advertised_host, advertised_port) = client_listener(&cluster)?;
        let data_dir = get("log.dirs")
            .or(get("log.dir"))
            .map(|dirs| dirs.split(',').next().unwrap_or(dirs).trim().to_string())
            .unwrap_or_else(|| "./millrace-data".to_string());
        let defaults = LogConfig::default();
        let flush_messages = number(map, "log.flush.interval.messages", i64::MAX)?;
        let flush_ms = number(map, "log.flush.interval.ms", i64::MAX)?;
        let socket_request_max_bytes: usize = number(map, "socket.request.max.bytes", 104_857_600)?;
        let config = BrokerConfig {
            node_id,
            listener,
            advertised_host,
            advertised_port,
            cluster,
            data_dir: PathBuf::from(data_dir),
            num_partitions: number(map, "num.partitions", 1)?,
            default_replication_factor: number(map, "default.replication.factor", 1)?,
            auto_create_topics_enable: boolean(map, "auto.create.topics.enable", true)?,
            unclean_leader_election_enable: boolean(map, "unclean.leader.election.enable", false)?,
            auto_leader_rebalance_enable: boolean(map, "auto.leader.rebalance.enable", true)?,
            leader_imbalance_check_interval_seconds: {
                // Kafka: a long, at least 1.
                let seconds: i64 = number(map, "leader.imbalance.check.interval.seconds", 300)?;
                u64::try_from(seconds)
                    .ok()
                    .filter(|&s| s >= 1)
                    .ok_or_else(|| ConfigError::Invalid {
                        key: "leader.imbalance.check.interval.seconds".to_string(),
                        value: seconds.to_string(),
                        reason: "must be at least 1".to_string(),
                    })?
            },
            message_max_bytes: number(map, "message.max.bytes", 1_048_588)?,
            socket_request_max_bytes,
            max_in_flight_requests_per_connection: number(map, "queued.max.requests", 500)?,
            queued_max_request_bytes: {
                // The default stays valid when only socket.request.max.bytes is raised.
                let default = DEFAULT_QUEUED_MAX_REQUEST_BYTES.max(socket_request_max_bytes as i64);
                let bytes: i64 = number(map, "queued.max.request.bytes", default)?;
                u64::try_from(bytes).ok().filter(|&b| b > 0)
            },
            queued_max_response_bytes: number(
                map,
                "millrace.queued.max.response.bytes",
                57_671_680,
            )?,
            max_connections: number::<u32>(map, "max.connections", i32::MAX as u32)? as usize,
            max_connections_per_ip: number::<u32>(map, "max.connections.per.ip", i32::MAX as u32)?
                as usize,
            max_connections_per_ip_overrides: match resolved_per_ip_overrides {
                Some(resolved) => resolved,
                None => per_ip_overrides(get("max.connections.per.ip.overrides").unwrap_or(""))?,
            },
            fetch_max_bytes: number(map, "fetch.max.bytes", 57_671_680)?,
            replica_fetch: ReplicaFetchConfig {
                max_bytes: number(map, "replica.fetch.max.bytes", 1_048_576)?,
                response_max_bytes: number(map, "replica.fetch.response.max.bytes", 10_485_760)?,
                wait_max_ms: number(map, "replica.fetch.wait.max.ms", 500)?,
                min_bytes: number(map, "replica.fetch.min.bytes", 1)?,
                backoff_ms: number(map, "replica.fetch.backoff.ms", 1_000)?,
                socket_timeout_ms: number(map, "replica.socket.timeout.ms", 30_000)?,
                lag_time_max_ms: number(map, "replica.lag.time.max.ms", 30_000)?,
            },
            fetch_sessions: crate::protocol::fetch_session::SessionCacheConfig {
                max_slots: number(map, "max.incremental.fetch.session.cache.slots", 1000)?,
                eviction_ms: number(map, "min.incremental.fetch.session.eviction.ms", 120_000)?,
                max_bytes: number(
                    map,
                    "millrace.incremental.fetch.session.cache.max.bytes",
                    67_108_864,
                )?,
            },
            max_request_partition_size_limit: at_least_one(
                map,
                "max.request.partition.size.limit",
                2000,
            )?,
            log: LogConfig {
                segment_bytes: number(map, "log.segment.bytes", defaults.segment_bytes)?,
                segment_ms: number(map, "log.roll.ms", defaults.segment_ms)?,
                index_interval_bytes: number(
                    map,
                    "log.index.interval.bytes",
                    defaults.index_interval_bytes,
                )?,
                flush_interval_messages: positive_or_never(flush_messages),
                flush_interval_ms: positive_or_never(flush_ms),
                cleanup_policy: parse_cleanup_policy(get("log.cleanup.policy").unwrap_or("delete")),
                retention_ms: broker_retention_ms(map)?,
                retention_bytes: number::<i64>(map, "log.retention.bytes", -1)?.max(-1),
                file_delete_delay_ms: number(
                    map,
                    "log.segment.delete.delay.ms",
                    defaults.file_delete_delay_ms,
                )?,
                delete_retention_ms: number(
                    map,
                    "log.cleaner.delete.retention.ms",
                    defaults.delete_retention_ms,
                )?,
                min_cleanable_dirty_ratio: number(
                    map,
                    "log.cleaner.min.cleanable.ratio",
                    defaults.min_cleanable_dirty_ratio,
                )?,
                min_compaction_lag_ms: number(
                    map,
                    "log.cleaner.min.compaction.lag.ms",
                    defaults.min_compaction_lag_ms,
                )?,
                max_compaction_lag_ms: number(
                    map,
                    "log.cleaner.max.compaction.lag.ms",
                    defaults.max_compaction_lag_ms,
                )?,
            },
            cleaner: CleanerConfig {
                enable: boolean(map, "log.cleaner.enable", true)?,
                threads: number(map, "log.cleaner.threads", 1)?,
                io_max_bytes_per_second: number(
                    map,
                    "log.cleaner.io.max.bytes.per.second",
                    f64::MAX,
                )?,
                dedupe_buffer_bytes: number(map, "log.cleaner.dedupe.buffer.size", 134_217_728)?,
                backoff_ms: number(map, "log.cleaner.backoff.ms", 15_000)?,
            },
            leader_replication_throttled_rate_bytes: number(
                map,
                "leader.replication.throttled.rate",
                crate::replication::throttle::UNTHROTTLED_RATE,
            )?,
            follower_replication_throttled_rate_bytes: number(
                map,
                "follower.replication.throttled.rate",
                crate::replication::throttle::UNTHROTTLED_RATE,
            )?,
            log_flush_scheduler_interval_ms: number(map, "log.flush.scheduler.interval.ms", 1_000)?,
            log_retention_check_interval_ms: number(
                map,
                "log.retention.check.interval.ms",
                300_000,
            )?,
            log_initial_task_delay_ms: number(map, "log.initial.task.delay.ms", 30_000)?,
            high_watermark_checkpoint_interval_ms: number(
                map,
                "replica.high.watermark.checkpoint.interval.ms",
                5_000,
            )?,
            log_cleanup_policy: get("log.cleanup.policy").unwrap_or("delete").to_string(),
            compression_type: get("compression.type").unwrap_or("producer").to_string(),
            log_message_timestamp_type: get("log.message.timestamp.type")
                .unwrap_or("CreateTime")
                .to_string(),
            // Kafka 4 defaults (KIP-1030): unbounded in the past, one hour ahead.
            log_message_timestamp_before_max_ms: number(
                map,
                "log.message.timestamp.before.max.ms",
                i64::MAX,
            )?,
            log_message_timestamp_after_max_ms: number(
                map,
                "log.message.timestamp.after.max.ms",
                3_600_000,
            )?,
            min_insync_replicas: number(map, "min.insync.replicas", 1)?,
            producer_id_expiration_ms: number(map, "producer.id.expiration.ms", 86_400_000)?,
            connections_max_idle_ms: number(map, "connections.max.idle.ms", 600_000)?,
            offsets_topic_num_partitions: number(map, "offsets.topic.num.partitions", 50)?,
            offsets_topic_replication_factor: number(map, "offsets.topic.replication.factor", 3)?,
            offsets_topic_segment_bytes: number(map, "offsets.topic.segment.bytes", 104_857_600)?,
            group: crate::group::GroupConfig {
                min_session_timeout_ms: number(map, "group.min.session.timeout.ms", 6_000)?,
                max_session_timeout_ms: number(map, "group.max.session.timeout.ms", 1_800_000)?,
                initial_rebalance_delay_ms: number(map, "group.initial.rebalance.delay.ms", 3_000)?,
                max_size: number(map, "group.max.size", i32::MAX)?,
                offsets_retention_ms: number::<i64>(map, "offsets.retention.minutes", 10_080)?
                    .saturating_mul(60_000),
                offset_metadata_max_bytes: number(map, "offset.metadata.max.bytes", 4096)?,
            },
            txn: crate::txn::TxnConfig {
                state_log_num_partitions: at_least_one(
                    map,
                    "transaction.state.log.num.partitions",
                    50,
                )?,
                state_log_replication_factor: number(
                    map,
                    "transaction.state.log.replication.factor",
                    3,
                )?,
                state_log_min_isr: at_least_one(map, "transaction.state.log.min.isr", 2)?,
                state_log_segment_bytes: at_least_one(
                    map,
                    "transaction.state.log.segment.bytes",
                    104_857_600,
                )?,
                max_timeout_ms: at_least_one(map, "transaction.max.timeout.ms", 900_000)?,
                transactional_id_expiration_ms: i64::from(at_least_one(
                    map,
                    "transactional.id.expiration.ms",
                    604_800_000,
                )?),
                abort_timed_out_interval_ms: i64::from(at_least_one(
                    map,
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                    10_000,
                )?),
                remove_expired_interval_ms: i64::from(at_least_one(
                    map,
                    "transaction.remove.expired.transaction.cleanup.interval.ms",
                    3_600_000,
                )?),
                partition_verification_enable: boolean(
                    map,
                    "transaction.partition.verification.enable",
                    true,
                )?,
                add_partitions_retry_backoff_ms: at_least_one(
                    map,
                    "add.partitions.to.txn.retry.backoff.ms",
                    20,
                )?
                .unsigned_abs(),
                add_partitions_retry_backoff_max_ms: number(
                    map,
                    "add.partitions.to.txn.retry.backoff.max.ms",
                    100,
                )?,
            },
            explicit,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, reason: &str| ConfigError::Invalid {
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        };
        if self.num_partitions < 1 {
            return Err(invalid(
                "num.partitions",
                self.num_partitions.to_string(),
                "must be >= 1",
            ));
        }
        if self.message_max_bytes < 0 {
            return Err(invalid(
                "message.max.bytes",
                self.message_max_bytes.to_string(),
                "must be >= 0",
            ));
        }
        if self.socket_request_max_bytes < 1024 {
            return Err(invalid(
                "socket.request.max.bytes",
                self.socket_request_max_bytes.to_string(),
                "must be >= 1024",
            ));
        }
        if !(1..=1000).contains(&self.offsets_topic_num_partitions) {
            return Err(invalid(
                "offsets.topic.num.partitions",
                self.offsets_topic_num_partitions.to_string(),
                "must be between 1 and 1000",
            ));
        }
        if self.offsets_topic_replication_factor < 1 {
            return Err(invalid(
                "offsets.topic.replication.factor",
                self.offsets_topic_replication_factor.to_string(),
                "must be >= 1",
            ));
        }
        if self.txn.state_log_replication_factor < 1 {
            return Err(invalid(
                "transaction.state.log.replication.factor",
                self.txn.state_log_replication_factor.to_string(),
                "must be >= 1",
            ));
        }
        if self.group.min_session_timeout_ms > self.group.max_session_timeout_ms {
            return Err(invalid(
                "group.min.session.timeout.ms",
                self.group.min_session_timeout_ms.to_string(),
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        if self.max_in_flight_requests_per_connection == 0 {
            return Err(invalid(
                "queued.max.requests",
                "0".to_string(),
                "must be >= 1",
            ));
        }
        if (self.log.segment_bytes as i64) < MIN_SEGMENT_BYTES {
            return Err(invalid(
                "log.segment.bytes",
                self.log.segment_bytes.to_string(),
                "must be >= 1048576",
            ));
        }
        if self.log.segment_ms == 0 {
            return Err(invalid("log.roll.ms", "0".to_string(), "must be >= 1"));
        }
        if self.log_retention_check_interval_ms == 0 {
            return Err(invalid(
                "log.retention.check.interval.ms",
                "0".to_string(),
                "must be >= 1",
            ));
        }
        if self.high_watermark_checkpoint_interval_ms == 0 {
            return Err(invalid(
                "replica.high.watermark.checkpoint.interval.ms",
                "0".to_string(),
                "must be >= 1",
            ));
        }
        if let Some(bytes) = self.queued_max_request_bytes {
            if bytes < self.socket_request_max_bytes as u64 {
                return Err(invalid(
                    "queued.max.request.bytes",
                    bytes.to_string(),
                    "must be -1 or at least socket.request.max.bytes",
                ));
            }
        }
        if self.max_connections_per_ip == 0 && self.max_connections_per_ip_overrides.is_empty() {
            return Err(invalid(
                "max.connections.per.ip",
                "0".to_string(),
                "can be 0 only if max.connections.per.ip.overrides is set",
            ));
        }
        for (key, value) in [
            (
                "log.message.timestamp.before.max.ms",
                self.log_message_timestamp_before_max_ms,
            ),
            (
                "log.message.timestamp.after.max.ms",
                self.log_message_timestamp_after_max_ms,
            ),
        ] {
            if value < 0 {
                return Err(invalid(key, value.to_string(), "must be >= 0"));
            }
        }
        if !["CreateTime", "LogAppendTime"].contains(&self.log_message_timestamp_type.as_str()) {
            return Err(invalid(
                "log.message.timestamp.type",
                self.log_message_timestamp_type.clone(),
                "String must be one of: CreateTime, LogAppendTime",
            ));
        }
        self.check_cleaner()?;
        for (name, value) in [
            ("log.cleanup.policy", &self.log_cleanup_policy),
            ("compression.type", &self.compression_type),
        ] {
            let topic_name = TOPIC_CONFIGS
                .iter()
                .find(|def| def.broker_synonym == name)
                .map(|def| def.name)
                .unwrap_or(name);
            validate_topic_config(topic_name, value)
                .map_err(|reason| invalid(name, value.clone(), &reason))?;
        }
        Ok(())
    }

    /// The log cleaner's bounds, as Kafka's validators have them (one thread only).
    fn check_cleaner(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, reason: &str| ConfigError::Invalid {
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        };
        let log = &self.log;
        for (key, value, min) in [
            (
                "log.cleaner.delete.retention.ms",
                log.delete_retention_ms,
                0,
            ),
            (
                "log.cleaner.min.compaction.lag.ms",
                log.min_compaction_lag_ms,
                0,
            ),
            (
                "log.cleaner.max.compaction.lag.ms",
                log.max_compaction_lag_ms,
                1,
            ),
        ] {
            if value < min {
                return Err(invalid(
                    key,
                    value.to_string(),
                    &format!("must be >= {min}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&log.min_cleanable_dirty_ratio) {
            return Err(invalid(
                "log.cleaner.min.cleanable.ratio",
                log.min_cleanable_dirty_ratio.to_string(),
                "must be between 0 and 1",
            ));
        }
        for (key, rate) in [
            (
                "leader.replication.throttled.rate",
                self.leader_replication_throttled_rate_bytes,
            ),
            (
                "follower.replication.throttled.rate",
                self.follower_replication_throttled_rate_bytes,
            ),
        ] {
            if rate < 0 {
                return Err(invalid(key, rate.to_string(), "must be >= 0"));
            }
        }
        let cleaner = &self.cleaner;
        if cleaner.threads != 1 {
            return Err(invalid(
                "log.cleaner.threads",
                cleaner.threads.to_string(),
                "Millrace runs exactly one cleaner thread",
            ));
        }
        if cleaner.io_max_bytes_per_second.is_nan() || cleaner.io_max_bytes_per_second <= 0.0 {
            return Err(invalid(
                "log.cleaner.io.max.bytes.per.second",
                cleaner.io_max_bytes_per_second.to_string(),
                "must be > 0",
            ));
        }
        if cleaner.dedupe_buffer_bytes < crate::log::cleaner::MIN_DEDUPE_BUFFER_BYTES {
            return Err(invalid(
                "log.cleaner.dedupe.buffer.size",
                cleaner.dedupe_buffer_bytes.to_string(),
                "too small to hold even one key",
            ));
        }
        Ok(())
    }

    /// Keys given that this broker does not know, to be reported once at start.
    pub fn unknown_keys(&self) -> Vec<&str> {
        self.explicit
            .keys()
            .map(String::as_str)
            .filter(|key| !KNOWN_BROKER_KEYS.contains(key))
            .collect()
    }

    /// The broker-level value of a config, as DescribeConfigs reports it, and whether it
    /// was set explicitly (file, env or flag) rather than defaulted.
    pub fn broker_value(&self, key: &str) -> Option<(String, bool)> {
        if let Some(value) = self.explicit.get(key) {
            return Some((value.clone(), true));
        }
        let value = match key {
            "node.id" | "broker.id" => self.node_id.to_string(),
            "listeners" => join_endpoints(&self.cluster.listeners),
            "advertised.listeners" => join_endpoints(&self.cluster.advertised_listeners),
            "process.roles" => {
                let roles = self.cluster.roles;
                [("broker", roles.broker), ("controller", roles.controller)]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(",")
            }
            "controller.quorum.voters" => self
                .cluster
                .voters
                .iter()
                .map(|v| format!("{}@{}", v.id, v.address()))
                .collect::<Vec<_>>()
                .join(","),
            "controller.listener.names" => self.cluster.controller_listener_names.join(","),
            "inter.broker.listener.name" => self.cluster.inter_broker_listener_name.clone(),
            "broker.rack" => self.cluster.rack.clone()?,
            "broker.session.timeout.ms" => self.cluster.broker_session_timeout_ms.to_string(),
            "broker.heartbeat.interval.ms" => self.cluster.broker_heartbeat_interval_ms.to_string(),
            "controller.quorum.request.timeout.ms" => {
                self.cluster.quorum_request_timeout_ms.to_string()
            }
            "controller.socket.timeout.ms" => self.cluster.controller_socket_timeout_ms.to_string(),
            "log.dirs" => self.data_dir.display().to_string(),
            "num.partitions" => self.num_partitions.to_string(),
            "default.replication.factor" => self.default_replication_factor.to_string(),
            "auto.create.topics.enable" => self.auto_create_topics_enable.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable.to_string(),
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds.to_string()
            }
            "message.max.bytes" => self.message_max_bytes.to_string(),
            "socket.request.max.bytes" => self.socket_request_max_bytes.to_string(),
            "queued.max.requests" => self.max_in_flight_requests_per_connection.to_string(),
            "queued.max.request.bytes" => self
                .queued_max_request_bytes
                .map_or("-1".to_string(), |bytes| bytes.to_string()),
            "millrace.queued.max.response.bytes" => self.queued_max_response_bytes.to_string(),
            "max.connections" => self.max_connections.to_string(),
            "max.connections.per.ip" => self.max_connections_per_ip.to_string(),
            "max.connections.per.ip.overrides" => String::new(),
            "fetch.max.bytes" => self.fetch_max_bytes.to_string(),
            "replica.fetch.max.bytes" => self.replica_fetch.max_bytes.to_string(),
            "replica.fetch.response.max.bytes" => self.replica_fetch.response_max_bytes.to_string(),
            "replica.fetch.wait.max.ms" => self.replica_fetch.wait_max_ms.to_string(),
            "replica.fetch.min.bytes" => self.replica_fetch.min_bytes.to_string(),
            "replica.fetch.backoff.ms" => self.replica_fetch.backoff_ms.to_string(),
            "replica.socket.timeout.ms" => self.replica_fetch.socket_timeout_ms.to_string(),
            "replica.lag.time.max.ms" => self.replica_fetch.lag_time_max_ms.to_string(),
            "log.segment.bytes" => self.log.segment_bytes.to_string(),
            "log.roll.ms" => self.log.segment_ms.to_string(),
            "log.index.interval.bytes" => self.log.index_interval_bytes.to_string(),
            "log.flush.interval.messages" => never_as_kafka(self.log.flush_interval_messages),
            "log.flush.interval.ms" => never_as_kafka(self.log.flush_interval_ms),
            "log.flush.scheduler.interval.ms" => self.log_flush_scheduler_interval_ms.to_string(),
            "log.retention.ms" => self.log.retention_ms.to_string(),
            // Unset: log.retention.ms says it all (Kafka reports these as null).
            "log.retention.minutes" => return None,
            "log.retention.hours" => "168".to_string(),
            "log.retention.bytes" => self.log.retention_bytes.to_string(),
            "log.retention.check.interval.ms" => self.log_retention_check_interval_ms.to_string(),
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.high_watermark_checkpoint_interval_ms.to_string()
            }
            // An internal config in Kafka: DescribeConfigs does not list it.
            "log.initial.task.delay.ms" => return None,
            "log.segment.delete.delay.ms" => self.log.file_delete_delay_ms.to_string(),
            "log.cleanup.policy" => self.log_cleanup_policy.clone(),
            "log.cleaner.delete.retention.ms" => self.log.delete_retention_ms.to_string(),
            "log.cleaner.min.cleanable.ratio" => java_double(self.log.min_cleanable_dirty_ratio),
            "log.cleaner.min.compaction.lag.ms" => self.log.min_compaction_lag_ms.to_string(),
            "log.cleaner.max.compaction.lag.ms" => self.log.max_compaction_lag_ms.to_string(),
            "log.cleaner.enable" => self.cleaner.enable.to_string(),
            "log.cleaner.threads" => self.cleaner.threads.to_string(),
            "log.cleaner.io.max.bytes.per.second" => {
                java_double(self.cleaner.io_max_bytes_per_second)
            }
            "log.cleaner.dedupe.buffer.size" => self.cleaner.dedupe_buffer_bytes.to_string(),
            "log.cleaner.backoff.ms" => self.cleaner.backoff_ms.to_string(),
            "leader.replication.throttled.rate" => {
                self.leader_replication_throttled_rate_bytes.to_string()
            }
            "follower.replication.throttled.rate" => {
                self.follower_replication_throttled_rate_bytes.to_string()
            }
            "compression.type" => self.compression_type.clone(),
            "log.message.timestamp.type" => self.log_message_timestamp_type.clone(),
            "log.message.timestamp.before.max.ms" => {
                self.log_message_timestamp_before_max_ms.to_string()
            }
            "log.message.timestamp.after.max.ms" => {
                self.log_message_timestamp_after_max_ms.to_string()
            }
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "producer.id.expiration.ms" => self.producer_id_expiration_ms.to_string(),
            "connections.max.idle.ms" => self.connections_max_idle_ms.to_string(),
            "offsets.topic.num.partitions" => self.offsets_topic_num_partitions.to_string(),
            "offsets.topic.replication.factor" => self.offsets_topic_replication_factor.to_string(),
            "offsets.topic.segment.bytes" => self.offsets_topic_segment_bytes.to_string(),
            "group.min.session.timeout.ms" => self.group.min_session_timeout_ms.to_string(),
            "group.max.session.timeout.ms" => self.group.max_session_timeout_ms.to_string(),
            "group.initial.rebalance.delay.ms" => self.group.initial_rebalance_delay_ms.to_string(),
            "group.max.size" => self.group.max_size.to_string(),
            "offsets.retention.minutes" => (self.group.offsets_retention_ms / 60_000).to_string(),
            "offset.metadata.max.bytes" => self.group.offset_metadata_max_bytes.to_string(),
            "transaction.state.log.num.partitions" => self.txn.state_log_num_partitions.to_string(),
            "transaction.state.log.replication.factor" => {
                self.txn.state_log_replication_factor.to_string()
            }
            "transaction.state.log.min.isr" => self.txn.state_log_min_isr.to_string(),
            "transaction.state.log.segment.bytes" => self.txn.state_log_segment_bytes.to_string(),
            "transaction.max.timeout.ms" => self.txn.max_timeout_ms.to_string(),
            "transactional.id.expiration.ms" => self.txn.transactional_id_expiration_ms.to_string(),
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.txn.abort_timed_out_interval_ms.to_string()
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.txn.remove_expired_interval_ms.to_string()
            }
            "transaction.partition.verification.enable" => {
                self.txn.partition_verification_enable.to_string()
            }
            "add.partitions.to.txn.retry.backoff.ms" => {
                self.txn.add_partitions_retry_backoff_ms.to_string()
            }
            "add.partitions.to.txn.retry.backoff.max.ms" => {
                self.txn.add_partitions_retry_backoff_max_ms.to_string()
            }
            _ => return None,
        };
        Some((value, false))
    }

    /// The effective log settings of a topic: its overrides on top of the broker's.
    pub fn topic_log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let parsed = |key: &str| {
            overrides
                .get(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        LogConfig {
            segment_bytes: parsed(INTERNAL_SEGMENT_BYTES)
                .or_else(|| parsed("segment.bytes"))
                .map(|v| v as u64)
                .unwrap_or(self.log.segment_bytes),
            segment_ms: parsed("segment.ms")
                .map(|v| v as u64)
                .unwrap_or(self.log.segment_ms),
            index_interval_bytes: parsed("index.interval.bytes")
                .map(|v| v as u64)
                .unwrap_or(self.log.index_interval_bytes),
            flush_interval_messages: parsed("flush.messages")
                .map(positive_or_never)
                .unwrap_or(self.log.flush_interval_messages),
            flush_interval_ms: parsed("flush.ms")
                .map(positive_or_never)
                .unwrap_or(self.log.flush_interval_ms),
            cleanup_policy: overrides
                .get("cleanup.policy")
                .map(|policy| parse_cleanup_policy(policy))
                .unwrap_or(self.log.cleanup_policy),
            retention_ms: parsed("retention.ms")
                .map(|ms| ms.max(-1))
                .unwrap_or(self.log.retention_ms),
            retention_bytes: parsed("retention.bytes")
                .map(|bytes| bytes.max(-1))
                .unwrap_or(self.log.retention_bytes),
            file_delete_delay_ms: parsed("file.delete.delay.ms")
                .map(|ms| ms.max(0) as u64)
                .unwrap_or(self.log.file_delete_delay_ms),
            delete_retention_ms: parsed("delete.retention.ms")
                .unwrap_or(self.log.delete_retention_ms),
            min_cleanable_dirty_ratio: overrides
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(self.log.min_cleanable_dirty_ratio),
            min_compaction_lag_ms: parsed("min.compaction.lag.ms")
                .unwrap_or(self.log.min_compaction_lag_ms),
            max_compaction_lag_ms: parsed("max.compaction.lag.ms")
                .unwrap_or(self.log.max_compaction_lag_ms),
        }
    }

    /// The rules a topic's produced records are validated against: `max.message.bytes`,
    /// the timestamp bounds (falling back to the broker's), the cleanup policy, and the
    /// decompression bound.
    pub fn topic_record_rules(&self, overrides: &BTreeMap<String, String>) -> RecordRules {
        let parsed = |key: &str, default: i64| {
            overrides
                .get(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        let compacted = parse_cleanup_policy(
            overrides
                .get("cleanup.policy")
                .unwrap_or(&self.log_cleanup_policy),
        )
        .compact;
        let max_message_bytes = self.topic_max_message_bytes(overrides).max(0) as u64;
        RecordRules {
            max_message_bytes: max_message_bytes as usize,
            timestamp_before_max_ms: parsed(
                "message.timestamp.before.max.ms",
                self.log_message_timestamp_before_max_ms,
            ),
            timestamp_after_max_ms: parsed(
                "message.timestamp.after.max.ms",
                self.log_message_timestamp_after_max_ms,
            ),
            compacted,
            log_append_time: overrides
                .get("message.timestamp.type")
                .unwrap_or(&self.log_message_timestamp_type)
                == "LogAppendTime",
            max_decompressed_bytes: DECOMPRESSION_RATIO_BOUND
                * max_message_bytes.max(MIN_DECOMPRESSION_BASE_BYTES),
        }
    }

    /// A topic's `max.message.bytes`, falling back to the broker's `message.max.bytes`.
    pub fn topic_max_message_bytes(&self, overrides: &BTreeMap<String, String>) -> i32 {
        overrides
            .get("max.message.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(self.message_max_bytes)
    }
}

/// Broker keys this broker reads; anything else is reported as unknown.
pub const KNOWN_BROKER_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "listener.security.protocol.map",
    "controller.listener.names",
    "inter.broker.listener.name",
    "broker.rack",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "controller.quorum.request.timeout.ms",
    "controller.socket.timeout.ms",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "message.max.bytes",
    "socket.request.max.bytes",
    "queued.max.requests",
    "queued.max.request.bytes",
    "millrace.queued.max.response.bytes",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "fetch.max.bytes",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.fetch.min.bytes",
    "replica.fetch.backoff.ms",
    "replica.socket.timeout.ms",
    "replica.lag.time.max.ms",
    "max.incremental.fetch.session.cache.slots",
    "min.incremental.fetch.session.eviction.ms",
    "millrace.incremental.fetch.session.cache.max.bytes",
    "max.request.partition.size.limit",
    "log.segment.bytes",
    "log.roll.ms",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.flush.scheduler.interval.ms",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "replica.high.watermark.checkpoint.interval.ms",
    "log.initial.task.delay.ms",
    "log.segment.delete.delay.ms",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.enable",
    "log.cleaner.threads",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.dedupe.buffer.size",
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "log.cleaner.backoff.ms",
    "compression.type",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "min.insync.replicas",
    "producer.id.expiration.ms",
    "connections.max.idle.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offsets.topic.segment.bytes",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
    "offsets.retention.minutes",
    "offset.metadata.max.bytes",
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.segment.bytes",
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
    "transaction.partition.verification.enable",
    "add.partitions.to.txn.retry.backoff.ms",
    "add.partitions.to.txn.retry.backoff.max.ms",
];

/// Kafka's precedence: `log.retention.ms`, else `log.retention.minutes`, else
/// `log.retention.hours` (168); any negative result is -1 (forever).
fn broker_retention_ms(map: &BTreeMap<String, String>) -> Result<i64, ConfigError> {
    let ms = match map.get("log.retention.ms") {
        Some(_) => number::<i64>(map, "log.retention.ms", 0)?,
        None => match map.get("log.retention.minutes") {
            Some(_) => i64::from(number::<i32>(map, "log.retention.minutes", 0)?) * 60_000,
            None => i64::from(number::<i32>(map, "log.retention.hours", 168)?) * 3_600_000,
        },
    };
    Ok(ms.max(-1))
}

/// Kafka uses Long.MAX_VALUE for "never flush by policy"; non-positive values mean the same.
fn positive_or_never(value: i64) -> u64 {
    if value <= 0 || value == i64::MAX {
        u64::MAX
    } else {
        value as u64
    }
}

/// `host:count,host:count`, hosts resolved once at load (Kafka resolves them when the
/// quotas are built); an empty string is no overrides.
fn per_ip_overrides(text: &str) -> Result<HashMap<IpAddr, usize>, ConfigError> {
    let key = "max.connections.per.ip.overrides";
    let invalid = |reason: &str| ConfigError::Invalid {
        key: key.to_string(),
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let mut out = HashMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected host:count entries"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| invalid("count is not a non-negative number"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => (host, 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .map(|addr| addr.ip())
                .ok_or_else(|| invalid("cannot resolve host"))?,
        };
        out.insert(ip, count as usize);
    }
    Ok(out)
}

/// A Double as Java's `Double.toString` prints it (`0.5`, `1.0`, `1.7976931348623157E308`),
/// which is how Kafka reports Double configs.
fn java_double(value: f64) -> String {
    if value.abs() >= 1e7 {
        format!("{value:E}")
    } else if value.fract() == 0.0 {
        format!("{value:.1}")
    } else {
        value.to_string()
    }
}

fn never_as_kafka(value: u64) -> String {
    value.min(i64::MAX as u64).to_string()
}

fn flatten_toml(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (key, value) in table {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten_toml(&full, inner, out),
            toml::Value::String(s) => {
                out.insert(full, s.clone());
            }
            toml::Value::Array(items) => {
                let joined: Vec<String> = items
                    .iter()
                    .map(|item| match item {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                out.insert(full, joined.join(","));
            }
            other => {
                out.insert(full, other.to_string());
            }
        }
    }
}

fn number<T: std::str::FromStr>(
    map: &BTreeMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, ConfigError> {
    match map.get(key) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| ConfigError::Invalid {
            key: key.to_string(),
            value: text.clone(),
            reason: "not a number in range".to_string(),
        }),
    }
}

/// An int config Kafka defines with `atLeast(1)`.
fn at_least_one(
    map: &BTreeMap<String, String>,
    key: &str,
    default: i32,
) -> Result<i32, ConfigError> {
    let value: i32 = number(map, key, default)?;
    if value < 1 {
        return Err(ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason: "must be at least 1".to_string(),
        });
    }
    Ok(value)
}

fn boolean(map: &BTreeMap<String, String>, key: &str, default: bool) -> Result<bool, ConfigError> {
    match map.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(ConfigError::Invalid {
            key: key.to_string(),
            value: v,
            reason: "expected true or false".to_string(),
        }),
    }
}

/// The served client listener (`inter.broker.listener.name`) as (bind address,
/// advertised host, advertised port); a controller-only node has none and reports its
/// controller listener, which it never serves Kafka clients on.
fn client_listener(
    cluster: &cluster::ClusterConfig,
) -> Result<(SocketAddr, String, u16), ConfigError> {
    let name = &cluster.inter_broker_listener_name;
    let endpoint = cluster
        .listeners
        .iter()
        .find(|l| &l.name == name)
        .or_else(|| cluster.listeners.first())
        .ok_or_else(|| ConfigError::Invalid {
            key: "listeners".to_string(),
            value: String::new(),
            reason: "no listener given".to_string(),
        })?;
    let bind = cluster::resolve("listeners", &endpoint.host, endpoint.port)?;
    let advertised = cluster
        .advertised_listeners
        .iter()
        .find(|a| a.name == endpoint.name)
        .unwrap_or(endpoint);
    let host = if advertised.host.is_empty() {
        "0.0.0.0".to_string()
    } else {
        advertised.host.clone()
    };
    Ok((bind, host, advertised.port))
}

fn join_endpoints(endpoints: &[cluster::Endpoint]) -> String {
    endpoints
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], overrides: &[&str]) -> Result<BrokerConfig, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        BrokerConfig::load(None, env, &overrides)
    }

    #[test]
    fn defaults_are_the_embedded_single_node() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.listener, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(c.data_dir, PathBuf::from("./millrace-data"));
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.log.flush_interval_messages, u64::MAX);
    }

    #[test]
    fn fetch_session_and_partition_limit_keys() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.fetch_sessions.max_slots, 1000);
        assert_eq!(c.fetch_sessions.eviction_ms, 120_000);
        assert_eq!(c.max_request_partition_size_limit, 2000);
        let c = load(
            &[],
            &[
                "max.incremental.fetch.session.cache.slots=0",
                "max.request.partition.size.limit=7",
            ],
        )
        .unwrap();
        assert_eq!(c.fetch_sessions.max_slots, 0);
        assert_eq!(c.max_request_partition_size_limit, 7);
        assert!(load(&[], &["max.request.partition.size.limit=0"]).is_err());
        assert!(load(&[], &["max.incremental.fetch.session.cache.slots=-1"]).is_err());
    }

    #[test]
    fn env_then_overrides_win_in_order() {
        let c = load(
            &[
                ("MILLRACE_NUM_PARTITIONS", "3"),
                ("MILLRACE_LOG_DIRS", "/tmp/a"),
                ("MILLRACE_BIN", "/usr/bin/millrace"),
                ("HOME", "/x"),
            ],
            &["log.dirs=/tmp/b", "log.flush.interval.messages=1"],
        )
        .unwrap();
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/b"));
        assert_eq!(c.log.flush_interval_messages, 1);
        assert_eq!(
            c.broker_value("num.partitions"),
            Some(("3".to_string(), true))
        );
        assert!(c.unknown_keys().is_empty(), "{:?}", c.unknown_keys());
    }

    #[test]
    fn toml_file_flattens_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(
            &path,
            "listeners = \"PLAINTEXT://127.0.0.1:19092\"\n\"message.max.bytes\" = 2000\n[log]\nsegment.bytes = 2097152\n",
        )
        .unwrap();
        let c = BrokerConfig::load(Some(&path), Vec::new(), &[]).unwrap();
        assert_eq!(c.listener.port(), 19092);
        assert_eq!(c.message_max_bytes, 2000);
        assert_eq!(c.log.segment_bytes, 2_097_152);
    }

    #[test]
    fn bad_values_are_rejected_with_the_key() {
        let err = load(&[], &["num.partitions=zero"]).unwrap_err();
        assert!(err.to_string().contains("num.partitions"));
        assert!(load(&[], &["listeners=SSL://h:1"]).is_err());
        assert!(load(&[], &["novalue"]).is_err());
        assert!(load(&[], &["log.cleanup.policy=shred"]).is_err());
    }

    #[test]
    fn unknown_keys_are_listed_not_fatal() {
        let c = load(&[], &["controller.quorum.votes=1@x:1"]).unwrap();
        assert_eq!(c.unknown_keys(), vec!["controller.quorum.votes"]);
    }

    #[test]
    fn topic_configs_validate_like_kafka() {
        assert!(validate_topic_config("cleanup.policy", "compact").is_ok());
        assert!(validate_topic_config("cleanup.policy", "nope").is_err());
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        assert!(validate_topic_config("segment.bytes", "10").is_err());
        // Kafka 4's floors: 1 MiB segments, 1 ms rolls; the test-only override goes lower.
        assert!(validate_topic_config("segment.bytes", "1048575").is_err());
        assert!(validate_topic_config("segment.bytes", "1048576").is_ok());
        assert!(validate_topic_config("segment.ms", "0").is_err());
        assert!(validate_topic_config("segment.ms", "1").is_ok());
        assert!(validate_topic_config(INTERNAL_SEGMENT_BYTES, "1024").is_ok());
        assert!(validate_topic_config(INTERNAL_SEGMENT_BYTES, "13").is_err());
        assert!(validate_topic_config("segment.bytes", "99999999999").is_err());
        assert!(validate_topic_config("no.such.config", "1").is_err());
    }

    #[test]
    fn broker_bounds_validate_like_kafka() {
        assert!(load(&[], &["log.segment.bytes=1048575"]).is_err());
        assert!(load(&[], &["log.segment.bytes=1048576"]).is_ok());
        assert!(load(&[], &["log.roll.ms=0"]).is_err());
        // Kafka: queued.max.request.bytes is -1 (unbounded) or >= socket.request.max.bytes.
        assert!(load(&[], &["queued.max.request.bytes=1000"]).is_err());
        let c = load(&[], &["queued.max.request.bytes=-1"]).unwrap();
        assert_eq!(c.queued_max_request_bytes, None);
        assert_eq!(
            load(&[], &[]).unwrap().queued_max_request_bytes,
            Some(268_435_456)
        );
        let big_requests = load(&[], &["socket.request.max.bytes=536870912"]).unwrap();
        assert_eq!(big_requests.queued_max_request_bytes, Some(536_870_912));
        // Per-ip 0 only with overrides, as Kafka requires.
        assert!(load(&[], &["max.connections.per.ip=0"]).is_err());
        let c = load(
            &[],
            &[
                "max.connections.per.ip=0",
                "max.connections.per.ip.overrides=127.0.0.2:4, [::1]:7",
            ],
        )
        .unwrap();
        assert_eq!(c.max_connections_per_ip, 0);
        assert_eq!(
            c.max_connections_per_ip_overrides
                .get(&"127.0.0.2".parse::<IpAddr>().unwrap()),
            Some(&4)
        );
        assert_eq!(
            c.max_connections_per_ip_overrides
                .get(&"::1".parse::<IpAddr>().unwrap()),
            Some(&7)
        );
        assert!(load(&[], &["max.connections.per.ip.overrides=127.0.0.1"]).is_err());
        assert!(load(&[], &["max.connections.per.ip.overrides=127.0.0.1:-1"]).is_err());
        assert!(c.unknown_keys().is_empty(), "{:?}", c.unknown_keys());
    }

    #[test]
    fn topic_overrides_reach_the_log_config() {
        let c = load(&[], &[]).unwrap();
        let mut overrides = BTreeMap::new();
        overrides.insert("segment.bytes".to_string(), "1024".to_string());
        overrides.insert("flush.messages".to_string(), "1".to_string());
        overrides.insert("max.message.bytes".to_string(), "77".to_string());
        let log = c.topic_log_config(&overrides);
        assert_eq!(log.segment_bytes, 1024);
        overrides.insert(INTERNAL_SEGMENT_BYTES.to_string(), "100".to_string());
        assert_eq!(c.topic_log_config(&overrides).segment_bytes, 100);
        assert_eq!(log.flush_interval_messages, 1);
        assert_eq!(c.topic_max_message_bytes(&overrides), 77);
    }

    #[test]
    fn retention_keys_resolve_like_kafka() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.log.retention_ms, 168 * 3_600_000);
        assert_eq!(c.log.retention_bytes, -1);
        assert_eq!(c.log.file_delete_delay_ms, 60_000);
        assert_eq!(c.log_retention_check_interval_ms, 300_000);
        assert_eq!(c.log_initial_task_delay_ms, 30_000);
        assert_eq!(
            c.log.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: false
            }
        );
        // ms, else minutes, else hours; any negative value is forever.
        let retention = |overrides: &[&str]| load(&[], overrides).unwrap().log.retention_ms;
        assert_eq!(retention(&["log.retention.hours=1"]), 3_600_000);
        assert_eq!(
            retention(&["log.retention.hours=1", "log.retention.minutes=2"]),
            120_000
        );
        assert_eq!(
            retention(&["log.retention.minutes=2", "log.retention.ms=5"]),
            5
        );
        assert_eq!(retention(&["log.retention.ms=-7"]), -1);
        assert_eq!(retention(&["log.retention.hours=-1"]), -1);
        let c = load(
            &[],
            &[
                "log.retention.bytes=-9",
                "log.segment.delete.delay.ms=0",
                "log.retention.check.interval.ms=250",
                "log.cleanup.policy=compact,delete",
            ],
        )
        .unwrap();
        assert_eq!(c.log.retention_bytes, -1);
        assert_eq!(c.log.file_delete_delay_ms, 0);
        assert_eq!(c.log_retention_check_interval_ms, 250);
        assert!(c.log.cleanup_policy.delete && c.log.cleanup_policy.compact);
        assert!(c.unknown_keys().is_empty(), "{:?}", c.unknown_keys());
        assert_eq!(
            c.broker_value("log.segment.delete.delay.ms"),
            Some(("0".to_string(), true))
        );
        assert_eq!(
            c.broker_value("log.retention.ms"),
            Some((604_800_000.to_string(), false))
        );
        // Kafka's bounds.
        assert!(load(&[], &["log.retention.check.interval.ms=0"]).is_err());
        assert!(load(&[], &["log.segment.delete.delay.ms=-1"]).is_err());
        assert!(validate_topic_config("retention.ms", "-2").is_err());
        assert!(validate_topic_config("retention.bytes", "-5").is_ok());
        assert!(validate_topic_config("file.delete.delay.ms", "0").is_ok());
        assert!(validate_topic_config("file.delete.delay.ms", "-1").is_err());
    }

    #[test]
    fn topic_retention_overrides_reach_the_log_config() {
        let c = load(&[], &["log.segment.delete.delay.ms=5"]).unwrap();
        let mut overrides = BTreeMap::new();
        assert_eq!(c.topic_log_config(&overrides).file_delete_delay_ms, 5);
        overrides.insert("retention.ms".to_string(), "1000".to_string());
        overrides.insert("retention.bytes".to_string(), "2048".to_string());
        overrides.insert("file.delete.delay.ms".to_string(), "0".to_string());
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());
        let log = c.topic_log_config(&overrides);
        assert_eq!(
            (
                log.retention_ms,
                log.retention_bytes,
                log.file_delete_delay_ms
            ),
            (1000, 2048, 0)
        );
        assert_eq!(
            log.cleanup_policy,
            CleanupPolicy {
                delete: false,
                compact: true
            }
        );
    }

    #[test]
    fn compaction_configs_validate_default_and_override_like_kafka() {
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "0.01").is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "half").is_err());
        assert!(validate_topic_config("delete.retention.ms", "0").is_ok());
        assert!(validate_topic_config("delete.retention.ms", "-1").is_err());
        assert!(validate_topic_config("max.compaction.lag.ms", "0").is_err());
        assert!(validate_topic_config("min.compaction.lag.ms", "0").is_ok());
        let c = load(&[], &[]).unwrap();
        let defaults = c.topic_log_config(&BTreeMap::new());
        assert!(defaults.cleanup_policy.delete && !defaults.cleanup_policy.compact);
        assert_eq!(defaults.delete_retention_ms, 86_400_000);
        assert_eq!(defaults.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(defaults.max_compaction_lag_ms, i64::MAX);
        assert!(c.cleaner.enable);
        assert_eq!(c.cleaner.dedupe_buffer_bytes, 134_217_728);
        assert_eq!(
            c.broker_value("log.cleaner.min.cleanable.ratio"),
            Some(("0.5".to_string(), false))
        );
        assert_eq!(
            c.broker_value("log.cleaner.io.max.bytes.per.second"),
            Some(("1.7976931348623157E308".to_string(), false))
        );
        let mut overrides = BTreeMap::new();
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());
        overrides.insert("min.cleanable.dirty.ratio".to_string(), "0.01".to_string());
        overrides.insert("delete.retention.ms".to_string(), "100".to_string());
        let log = c.topic_log_config(&overrides);
        assert!(log.cleanup_policy.compact && !log.cleanup_policy.delete);
        assert_eq!(log.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(log.delete_retention_ms, 100);
        let c = load(
            &[],
            &[
                "log.cleanup.policy=compact,delete",
                "log.cleaner.delete.retention.ms=5",
            ],
        )
        .unwrap();
        let log = c.topic_log_config(&BTreeMap::new());
        assert!(log.cleanup_policy.compact && log.cleanup_policy.delete);
        assert_eq!(log.delete_retention_ms, 5);
        assert!(c.unknown_keys().is_empty());
        assert!(load(&[], &["log.cleaner.threads=2"]).is_err());
        assert!(load(&[], &["log.cleaner.dedupe.buffer.size=10"]).is_err());
        assert!(load(&[], &["log.cleaner.io.max.bytes.per.second=0"]).is_err());
        assert!(load(&[], &["log.cleaner.min.cleanable.ratio=2"]).is_err());
        assert!(load(&[], &["log.cleaner.max.compaction.lag.ms=0"]).is_err());
    }

    #[test]
    fn timestamp_bounds_default_like_kafka_4_and_topics_override_them() {
        let c = load(&[], &["log.message.timestamp.before.max.ms=5000"]).unwrap();
        let rules = c.topic_record_rules(&BTreeMap::new());
        assert_eq!(rules.timestamp_before_max_ms, 5000);
        assert_eq!(rules.timestamp_after_max_ms, 3_600_000);
        assert!(!rules.compacted);
        assert_eq!(rules.max_decompressed_bytes, 64 * 1_048_588);
        assert_eq!(rules.max_message_bytes, 1_048_588);
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "message.timestamp.after.max.ms".to_string(),
            "10".to_string(),
        );
        overrides.insert("cleanup.policy".to_string(), "delete,compact".to_string());
        overrides.insert("max.message.bytes".to_string(), (4 << 20).to_string());
        let rules = c.topic_record_rules(&overrides);
        assert_eq!(rules.timestamp_after_max_ms, 10);
        assert_eq!(rules.timestamp_before_max_ms, 5000);
        assert!(rules.compacted);
        assert_eq!(rules.max_decompressed_bytes, 256 << 20);
        assert!(load(&[], &["log.message.timestamp.after.max.ms=-1"]).is_err());
        assert!(validate_topic_config("message.timestamp.before.max.ms", "-1").is_err());
        assert_eq!(
            load(&[], &[])
                .unwrap()
                .broker_value("log.message.timestamp.before.max.ms"),
            Some((i64::MAX.to_string(), false))
        );
    }
}
