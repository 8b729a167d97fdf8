//! DescribeConfigs for topics, this broker and the cluster-wide broker default, with
//! Kafka's sources and synonyms (`ConfigHelper`): a value comes from the most specific
//! of a topic override (DYNAMIC_TOPIC_CONFIG), this broker's dynamic config
//! (DYNAMIC_BROKER_CONFIG), the cluster default (DYNAMIC_DEFAULT_BROKER_CONFIG), the
//! file, env or flags (STATIC_BROKER_CONFIG) and the built-in default (DEFAULT_CONFIG);
//! the synonyms list every level that has one, most specific first.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::config::{BrokerConfig, ConfigType, KNOWN_BROKER_KEYS, TOPIC_CONFIGS};
use crate::dynamic_config::{is_dynamic_broker_key, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::metadata::MetadataImage;
use crate::protocol::{errors, RequestContext};

pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// One described config, before it is shaped into a response of some API.
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub config_type: ConfigType,
    pub read_only: bool,
    /// (name, value, source), most specific first.
    pub synonyms: Vec<(String, String, i8)>,
    pub documentation: Option<String>,
}

/// Broker keys whose Kafka default is null, derived from another key: (key, the key
/// Kafka reports as its DEFAULT_CONFIG synonym, that key's Kafka default when Millrace
/// does not read it).
const DERIVED_DEFAULTS: &[(&str, &str, &str)] = &[
    ("log.retention.ms", "log.retention.hours", "168"),
    ("log.roll.ms", "log.roll.hours", "168"),
    (
        "log.flush.interval.ms",
        "log.flush.scheduler.interval.ms",
        "9223372036854775807",
    ),
];

/// Where a broker-level value can come from, for one image.
pub struct ConfigSources<'a> {
    pub static_config: &'a BrokerConfig,
    pub dynamic_default: &'a BTreeMap<String, String>,
    pub dynamic_broker: &'a BTreeMap<String, String>,
}

impl<'a> ConfigSources<'a> {
    pub fn new(static_config: &'a BrokerConfig, image: &'a MetadataImage) -> ConfigSources<'a> {
        let (dynamic_default, dynamic_broker) = image.dynamic_broker_configs(static_config.node_id);
        ConfigSources {
            static_config,
            dynamic_default,
            dynamic_broker,
        }
    }

    /// Every level at which broker key `key` has a value, most specific first, as Kafka
    /// lists them: a key whose Kafka default is derived from another key has that key as
    /// its DEFAULT_CONFIG synonym, and entries before the first one named `key` are
    /// dropped (Kafka's `configSynonyms`).
    fn broker_synonyms(&self, key: &str) -> Vec<(String, String, i8)> {
        let mut synonyms = Vec::new();
        for (map, source) in [
            (self.dynamic_broker, SOURCE_DYNAMIC_BROKER),
            (self.dynamic_default, SOURCE_DYNAMIC_DEFAULT_BROKER),
        ] {
            if let Some(value) = map.get(key) {
                synonyms.push((key.to_string(), value.clone(), source));
            }
        }
        let explicit = matches!(self.static_config.broker_value(key), Some((_, true)));
        if let Some(value) = self.static_config.explicit.get(key) {
            synonyms.push((key.to_string(), value.clone(), SOURCE_STATIC_BROKER));
        }
        if let Some(&(_, default_key, value)) = DERIVED_DEFAULTS.iter().find(|d| d.0 == key) {
            let value = BrokerConfig::default_value(default_key).unwrap_or(value.to_string());
            synonyms.push((default_key.to_string(), value, SOURCE_DEFAULT));
        } else {
            let default = if explicit {
                BrokerConfig::default_value(key)
            } else {
                self.static_config.broker_value(key).map(|(value, _)| value)
            };
            if let Some(value) = default {
                synonyms.push((key.to_string(), value, SOURCE_DEFAULT));
            }
        }
        let first = synonyms.iter().position(|(name, _, _)| name == key);
        synonyms.split_off(first.unwrap_or(synonyms.len()))
    }

    /// The value broker key `key` has: the most specific level that sets it.
    fn broker_value(&self, key: &str) -> Option<String> {
        self.dynamic_broker
            .get(key)
            .or_else(|| self.dynamic_default.get(key))
            .cloned()
            .or_else(|| self.static_config.broker_value(key).map(|(value, _)| value))
    }

    /// Every topic config with its effective value: the override, else the broker's.
    pub fn topic_entries(&self, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        TOPIC_CONFIGS
            .iter()
            .map(|def| {
                let mut synonyms = Vec::new();
                if let Some(value) = overrides.get(def.name) {
                    synonyms.push((def.name.to_string(), value.clone(), SOURCE_DYNAMIC_TOPIC));
                }
                synonyms.extend(self.broker_synonyms(def.broker_synonym));
                let value = overrides
                    .get(def.name)
                    .cloned()
                    .or_else(|| self.broker_value(def.broker_synonym))
                    .unwrap_or_default();
                let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2);
                ConfigEntry {
                    name: def.name,
                    value,
                    source,
                    config_type: def.config_type,
                    read_only: false,
                    synonyms,
                    documentation: documentation(def.name).map(str::to_string),
                }
            })
            .collect()
    }

    /// This broker's configs: every key it knows, with its effective value.
    fn broker_entries(&self) -> Vec<ConfigEntry> {
        KNOWN_BROKER_KEYS
            .iter()
            .filter_map(|&name| {
                let value = self.broker_value(name)?;
                let synonyms = self.broker_synonyms(name);
                let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2);
                Some(broker_entry(name, value, source, synonyms))
            })
            .collect()
    }

    /// The cluster-wide default resource: only the keys set there, as Kafka shows it.
    fn default_entries(&self) -> Vec<ConfigEntry> {
        KNOWN_BROKER_KEYS
            .iter()
            .filter_map(|&name| {
                let value = self.dynamic_default.get(name)?.clone();
                let synonyms = vec![(
                    name.to_string(),
                    value.clone(),
                    SOURCE_DYNAMIC_DEFAULT_BROKER,
                )];
                Some(broker_entry(
                    name,
                    value,
                    SOURCE_DYNAMIC_DEFAULT_BROKER,
                    synonyms,
                ))
            })
            .collect()
    }
}

fn broker_entry(
    name: &'static str,
    value: String,
    source: i8,
    synonyms: Vec<(String, String, i8)>,
) -> ConfigEntry {
    let topic_def = TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == name);
    ConfigEntry {
        name,
        value,
        source,
        config_type: topic_def.map_or_else(|| broker_config_type(name), |d| d.config_type),
        read_only: !is_dynamic_broker_key(name),
        synonyms,
        documentation: match topic_def {
            Some(def) => documentation(def.name)
                .map(|doc| format!("{doc} The broker-wide default of `{}`.", def.name)),
            None => documentation(name).map(str::to_string),
        },
    }
}

/// The type Kafka 4.4.0 reports for a broker key without a topic synonym (read from its
/// DescribeConfigs); Millrace's own keys by their values; STRING for any other.
fn broker_config_type(name: &str) -> ConfigType {
    match name {
        "auto.create.topics.enable"
        | "unclean.leader.election.enable"
        | "auto.leader.rebalance.enable"
        | "transaction.partition.verification.enable" => ConfigType::Boolean,
        "listeners"
        | "advertised.listeners"
        | "log.dirs"
        | "log.dir"
        | "process.roles"
        | "controller.quorum.voters"
        | "controller.quorum.bootstrap.servers" => ConfigType::List,
        "offsets.topic.replication.factor" | "transaction.state.log.replication.factor" => {
            ConfigType::Short
        }
        "queued.max.request.bytes"
        | "millrace.queued.max.response.bytes"
        | "min.incremental.fetch.session.eviction.ms"
        | "millrace.incremental.fetch.session.cache.max.bytes"
        | "log.flush.scheduler.interval.ms"
        | "replica.fetch.backoff.ms"
        | "replica.lag.time.max.ms"
        | "leader.imbalance.check.interval.seconds"
        | "connections.max.idle.ms" => ConfigType::Long,
        "node.id"
        | "broker.id"
        | "num.partitions"
        | "default.replication.factor"
        | "socket.request.max.bytes"
        | "queued.max.requests"
        | "max.connections"
        | "max.connections.per.ip"
        | "fetch.max.bytes"
        | "replica.fetch.max.bytes"
        | "replica.fetch.response.max.bytes"
        | "replica.fetch.wait.max.ms"
        | "replica.fetch.min.bytes"
        | "replica.socket.timeout.ms"
        | "max.incremental.fetch.session.cache.slots"
        | "max.request.partition.size.limit"
        | "producer.id.expiration.ms"
        | "offsets.topic.num.partitions"
        | "offsets.topic.segment.bytes"
        | "group.min.session.timeout.ms"
        | "group.max.session.timeout.ms"
        | "group.initial.rebalance.delay.ms"
        | "group.max.size"
        | "offsets.retention.minutes"
        | "offset.metadata.max.bytes"
        | "broker.session.timeout.ms"
        | "broker.heartbeat.interval.ms"
        | "controller.quorum.request.timeout.ms"
        | "controller.socket.timeout.ms"
        | "transaction.state.log.num.partitions"
        | "transaction.state.log.min.isr"
        | "transaction.state.log.segment.bytes"
        | "transaction.max.timeout.ms"
        | "transactional.id.expiration.ms"
        | "transaction.abort.timed.out.transaction.cleanup.interval.ms"
        | "transaction.remove.expired.transaction.cleanup.interval.ms"
        | "add.partitions.to.txn.retry.backoff.ms"
        | "add.partitions.to.txn.retry.backoff.max.ms" => ConfigType::Int,
        _ => ConfigType::String,
    }
}

/// What a config does, for `include_documentation`: topic configs and the broker
/// configs that can be changed at runtime.
fn documentation(name: &str) -> Option<&'static str> {
    Some(match name {
        "cleanup.policy" => {
            "How old segments are cleaned: `delete` (by retention) and/or `compact` \
             (keep the latest record per key)."
        }
        "compression.type" => {
            "The codec batches are stored with; `producer` keeps what the producer sent."
        }
        "flush.messages" => "Force an fsync of the log after this many appended messages.",
        "flush.ms" => "Force an fsync once the oldest unflushed append is this many ms old.",
        "index.interval.bytes" => "Bytes of appended data between two offset index entries.",
        "max.message.bytes" => "The largest record batch (as sent) the topic accepts.",
        "message.timestamp.after.max.ms" => {
            "How far ahead of the broker's clock a record's CreateTime may be."
        }
        "message.timestamp.before.max.ms" => {
            "How far behind the broker's clock a record's CreateTime may be."
        }
        "message.timestamp.type" => "Which timestamp records carry: CreateTime.",
        "min.insync.replicas" => "Replicas that must acknowledge an acks=all produce.",
        "retention.bytes" => "The size a partition's log may grow to before old segments go.",
        "retention.ms" => "How long a segment is kept after its newest record.",
        "segment.bytes" => "Roll to a new segment once the active one reaches this size.",
        "segment.ms" => "Roll to a new segment once the active one is this many ms old.",
        "max.connections" => "Connections the broker accepts at once; further ones wait.",
        "max.connections.per.ip" => {
            "Connections one address may hold; a further one is closed at once."
        }
        _ => return None,
    })
}

fn error_result(
    result: DescribeConfigsResult,
    code: i16,
    message: String,
) -> DescribeConfigsResult {
    result
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_string(message)))
}

pub fn handle(ctx: &RequestContext, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let version = ctx.version();
    let image = ctx.broker.metadata.image();
    let sources = ConfigSources::new(ctx.broker.live_config.static_config(), &image);
    let node_id = sources.static_config.node_id;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match image.topics.get(&name) {
                    Some(topic) => sources.topic_entries(&topic.configs),
                    None => {
                        return error_result(
                            result,
                            errors::UNKNOWN_TOPIC_OR_PARTITION,
                            format!("Topic {name} does not exist"),
                        )
                    }
                },
                RESOURCE_BROKER if name.is_empty() => sources.default_entries(),
                RESOURCE_BROKER => match name.parse::<i32>() {
                    Ok(id) if id == node_id => sources.broker_entries(),
                    Ok(_) => {
                        return error_result(
                            result,
                            errors::INVALID_REQUEST,
                            format!(
                                "Unexpected broker id, expected {node_id} or empty string, \
                                 but received {name}"
                            ),
                        )
                    }
                    Err(_) => {
                        return error_result(
                            result,
                            errors::INVALID_REQUEST,
                            format!("Broker id must be an integer, but it is: {name}"),
                        )
                    }
                },
                other => {
                    return error_result(
                        result,
                        errors::INVALID_REQUEST,
                        format!("Unsupported resource type {other}"),
                    )
                }
            };
            let configs = entries
                .into_iter()
                // Null and empty both mean every key, as in Kafka.
                .filter(|entry| {
                    resource.configuration_keys.as_ref().is_none_or(|keys| {
                        keys.is_empty() || keys.iter().any(|k| k.as_str() == entry.name)
                    })
                })
                .map(|entry| {
                    let mut out = DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str(entry.name))
                        .with_value(Some(StrBytes::from_string(entry.value)))
                        .with_read_only(entry.read_only)
                        .with_config_source(entry.source);
                    if request.include_synonyms {
                        out = out.with_synonyms(
                            entry
                                .synonyms
                                .into_iter()
                                .map(|(name, value, source)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(StrBytes::from_string(name))
                                        .with_value(Some(StrBytes::from_string(value)))
                                        .with_source(source)
                                })
                                .collect(),
                        );
                    }
                    if version >= 3 {
                        out = out.with_config_type(entry.config_type as i8);
                        if request.include_documentation {
                            out = out
                                .with_documentation(entry.documentation.map(StrBytes::from_string));
                        }
                    }
                    out
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'e>(entries: &'e [ConfigEntry], name: &str) -> &'e ConfigEntry {
        entries.iter().find(|e| e.name == name).unwrap()
    }

    #[test]
    fn sources_and_synonyms_follow_kafkas_precedence() {
        let static_config = BrokerConfig::load(
            None,
            Vec::new(),
            &[
                "log.retention.ms=1000".to_string(),
                "message.max.bytes=5000".to_string(),
            ],
        )
        .unwrap();
        let mut image = MetadataImage {
            default_broker_configs: BTreeMap::from([(
                "log.retention.ms".to_string(),
                "2000".to_string(),
            )]),
            ..MetadataImage::default()
        };
        image.broker_configs.insert(
            1,
            BTreeMap::from([("log.retention.ms".to_string(), "3000".to_string())]),
        );
        let sources = ConfigSources::new(&static_config, &image);
        let overrides = BTreeMap::from([("segment.ms".to_string(), "60000".to_string())]);
        let topic = sources.topic_entries(&overrides);
        let retention = entry(&topic, "retention.ms");
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("3000", SOURCE_DYNAMIC_BROKER)
        );
        let levels: Vec<(&str, i8)> = retention
            .synonyms
            .iter()
            .map(|(_, v, s)| (v.as_str(), *s))
            .collect();
        assert_eq!(
            levels,
            vec![
                ("3000", SOURCE_DYNAMIC_BROKER),
                ("2000", SOURCE_DYNAMIC_DEFAULT_BROKER),
                ("1000", SOURCE_STATIC_BROKER),
                // Kafka's log.retention.ms has no default of its own.
                ("168", SOURCE_DEFAULT),
            ]
        );
        let segment_ms = entry(&topic, "segment.ms");
        assert_eq!(segment_ms.source, SOURCE_DYNAMIC_TOPIC);
        // Kafka drops log.roll.hours, its default, with nothing named log.roll.ms before it.
        assert_eq!(segment_ms.synonyms.len(), 1);
        assert_eq!(segment_ms.synonyms[0].0, "segment.ms");
        let flush_ms = entry(&topic, "flush.ms");
        assert_eq!(
            (flush_ms.value.as_str(), flush_ms.synonyms.len()),
            ("9223372036854775807", 0)
        );
        let max_bytes = entry(&topic, "max.message.bytes");
        assert_eq!(
            (max_bytes.value.as_str(), max_bytes.source),
            ("5000", SOURCE_STATIC_BROKER)
        );
        assert_eq!(entry(&topic, "flush.ms").source, SOURCE_DEFAULT);

        let broker = sources.broker_entries();
        let retention = entry(&broker, "log.retention.ms");
        assert_eq!(retention.value, "3000");
        assert!(!retention.read_only);
        assert!(entry(&broker, "node.id").read_only);
        assert_eq!(entry(&broker, "node.id").config_type, ConfigType::Int);
        assert_eq!(entry(&broker, "log.dirs").config_type, ConfigType::List);
        assert_eq!(entry(&broker, "log.roll.ms").config_type, ConfigType::Long);
        let default = sources.default_entries();
        assert_eq!(default.len(), 1);
        assert_eq!(default[0].source, SOURCE_DYNAMIC_DEFAULT_BROKER);
        assert_eq!(default[0].synonyms.len(), 1);
    }
}
