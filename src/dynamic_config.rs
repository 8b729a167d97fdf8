//! Live configuration (AlterConfigs, IncrementalAlterConfigs): which broker configs may
//! change at runtime, the incremental operations, the validation of a resource's new
//! override set, and the effective broker config (static ⊕ dynamic cluster default ⊕
//! dynamic per-broker, Kafka's precedence) that partitions and handlers read.
//!
//! A change is planned against the metadata image under the quorum's operation lock and
//! written as one `SetConfigs` record per resource carrying its whole new override set;
//! every image then yields the effective configs (see `PartitionManager::reconcile`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::config::{
    topic_config_def, validate_topic_config, BrokerConfig, ConfigType, TOPIC_CONFIGS,
};
use crate::metadata::internal_topics;
use crate::metadata::{ApiError, ConfigChange, ConfigTarget, MetadataImage};
use crate::protocol::errors;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Broker configs without a topic synonym that Millrace applies live: the listener's
/// connection quotas (Kafka's `SocketServer` reconfigurables) and the log cleaner's
/// settings (`LogCleaner`'s).
const DYNAMIC_SERVER_KEYS: &[&str] = &[
    "max.connections",
    "max.connections.per.ip",
    // The cleaner reads these every round (Kafka's LogCleaner reconfigurable configs).
    "log.cleaner.threads",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.backoff.ms",
    // The replication throttles read them on every image (`replication::throttle`).
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
];

/// Whether a broker config may be set dynamically: the topic configs' broker synonyms
/// (Kafka's `DynamicLogConfig.ReconfigurableConfigs`) and the connection quotas.
pub fn is_dynamic_broker_key(key: &str) -> bool {
    DYNAMIC_SERVER_KEYS.contains(&key)
        || (!key.is_empty() && TOPIC_CONFIGS.iter().any(|d| d.broker_synonym == key))
}

/// The config resource an alter request names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Resource {
    Topic(String),
    /// The cluster-wide dynamic default (`--entity-default`, the empty broker name).
    BrokerDefault,
    /// This broker's own dynamic config.
    Broker(i32),
}

/// What one resource of a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Alteration {
    /// Legacy AlterConfigs: the given set replaces every override.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: operations applied in order to the current overrides.
    Incremental(Vec<(String, AlterOp)>),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AlterOp {
    Set(String),
    Delete,
    /// Adds list elements not yet present (list-typed configs only).
    Append(String),
    /// Removes list elements (list-typed configs only).
    Subtract(String),
}

impl AlterOp {
    /// Kafka's `AlterConfigOp.OpType` ids; `value` is ignored by DELETE and required by
    /// the others.
    pub fn from_wire(key: &str, op: i8, value: Option<String>) -> Result<AlterOp, ApiError> {
        let value = || {
            value
                .clone()
                .ok_or_else(|| invalid_request(format!("Null value not supported for : {key}")))
        };
        match op {
            0 => Ok(AlterOp::Set(value()?)),
            1 => Ok(AlterOp::Delete),
            2 => Ok(AlterOp::Append(value()?)),
            3 => Ok(AlterOp::Subtract(value()?)),
            other => Err(invalid_request(format!("Unknown operations type {other}"))),
        }
    }
}

fn invalid_request(message: String) -> ApiError {
    ApiError {
        code: errors::INVALID_REQUEST,
        message,
    }
}

fn invalid_config(message: String) -> ApiError {
    ApiError {
        code: errors::INVALID_CONFIG,
        message,
    }
}

/// Resolves an alter request's resource as Kafka's broker does (`ConfigAdminManager`):
/// a broker name must be empty or this node's id.
pub fn parse_resource(resource_type: i8, name: &str, node_id: i32) -> Result<Resource, ApiError> {
    match resource_type {
        RESOURCE_TOPIC if name.is_empty() => Err(invalid_request(
            "Default topic resources are not allowed.".to_string(),
        )),
        RESOURCE_TOPIC => Ok(Resource::Topic(name.to_string())),
        RESOURCE_BROKER if name.is_empty() => Ok(Resource::BrokerDefault),
        RESOURCE_BROKER => match name.parse::<i32>() {
            Ok(id) if id == node_id => Ok(Resource::Broker(id)),
            Ok(_) => Err(invalid_request(format!(
                "Unexpected broker id, expected {node_id}, but received {name}"
            ))),
            Err(_) => Err(invalid_request(format!(
                "Node id must be an integer, but it is: {name}"
            ))),
        },
        other => Err(invalid_request(format!("Unknown resource type {other}"))),
    }
}

/// Whether a config of this resource is list-typed (APPEND/SUBTRACT allowed).
fn is_list(topic: bool, key: &str) -> bool {
    let def = if topic {
        topic_config_def(key)
    } else {
        TOPIC_CONFIGS
            .iter()
            .find(|d| !key.is_empty() && d.broker_synonym == key)
    };
    def.is_some_and(|d| d.config_type == ConfigType::List)
}

/// The built-in default a list op starts from when the key is not overridden (Kafka's
/// `configSchema.getDefault`).
fn builtin_default(topic: bool, key: &str) -> Option<String> {
    let broker_key = if topic {
        topic_config_def(key)?.broker_synonym
    } else {
        key
    };
    BrokerConfig::default_value(broker_key)
}

fn list_parts(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect()
}

/// Applies incremental operations, in order, to a resource's current overrides (Kafka's
/// `ConfigurationControlManager.incrementalAlterConfigResource`).
pub fn apply_ops(
    topic: bool,
    current: &BTreeMap<String, String>,
    ops: &[(String, AlterOp)],
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut next = current.clone();
    for (key, op) in ops {
        match op {
            AlterOp::Set(value) => {
                next.insert(key.clone(), value.clone());
            }
            AlterOp::Delete => {
                next.remove(key);
            }
            AlterOp::Append(value) | AlterOp::Subtract(value) => {
                let name = if matches!(op, AlterOp::Append(_)) {
                    "APPEND"
                } else {
                    "SUBTRACT"
                };
                if !is_list(topic, key) {
                    // The controller's words for topics, the broker's for broker configs.
                    return Err(invalid_config(if topic {
                        format!("Can't {name} to key {key} because its type is not LIST.")
                    } else {
                        format!(
                            "Config value {} is not allowed for config key: {key}",
                            name.to_ascii_lowercase()
                        )
                    }));
                }
                let old = next
                    .get(key)
                    .cloned()
                    .or_else(|| builtin_default(topic, key))
                    .unwrap_or_default();
                let mut parts = list_parts(&old);
                for element in value.split(',') {
                    if matches!(op, AlterOp::Append(_)) {
                        if !parts.iter().any(|p| p == element) {
                            parts.push(element.to_string());
                        }
                    } else if let Some(at) = parts.iter().position(|p| p == element) {
                        parts.remove(at);
                    }
                }
                next.insert(key.clone(), parts.join(","));
            }
        }
    }
    Ok(next)
}

/// Checks a topic's whole new override set (Kafka's `LogConfig.validate`: INVALID_CONFIG).
pub fn validate_topic_overrides(
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    for (key, value) in configs {
        validate_topic_config(key, value).map_err(invalid_config)?;
    }
    internal_topics::check_client_config_change(topic, configs)
}

/// Checks a broker resource's whole new dynamic set, as Kafka's `DynamicBrokerConfig
/// .validate`: only dynamic keys, values valid for their key and the effective config
/// they produce valid. Kafka answers every failure with INVALID_REQUEST (KAFKA-13609).
pub fn validate_broker_overrides(
    static_config: &BrokerConfig,
    image: &MetadataImage,
    target: &ConfigTarget,
    configs: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let not_dynamic: Vec<&str> = configs
        .keys()
        .map(String::as_str)
        .filter(|key| !is_dynamic_broker_key(key))
        .collect();
    if !not_dynamic.is_empty() {
        return Err(invalid_request(format!(
            "Cannot update these configs dynamically: [{}]",
            not_dynamic.join(", ")
        )));
    }
    for (key, value) in configs {
        if let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == key) {
            validate_topic_config(def.name, value)
                .map_err(|reason| invalid_request(reason.replace(def.name, key)))?;
        }
    }
    let (default, per_broker) = image.dynamic_broker_configs(static_config.node_id);
    let result = match target {
        ConfigTarget::BrokerDefault => static_config.with_dynamic(configs, per_broker),
        _ => static_config.with_dynamic(default, configs),
    };
    result.map(drop).map_err(|e| invalid_request(e.to_string()))
}

/// Plans each resource's new override set against `image` (run under the quorum's
/// operation lock): the per-resource result of an AlterConfigs or IncrementalAlterConfigs.
pub fn plan(
    static_config: &BrokerConfig,
    image: &MetadataImage,
    requests: &[(Resource, Alteration)],
) -> Vec<Result<ConfigChange, ApiError>> {
    requests
        .iter()
        .map(|(resource, alteration)| {
            let (target, current) = match resource {
                Resource::Topic(name) => {
                    let topic = image.topics.get(name).ok_or_else(|| ApiError {
                        code: errors::UNKNOWN_TOPIC_OR_PARTITION,
                        message: format!("The topic '{name}' does not exist."),
                    })?;
                    (
                        ConfigTarget::Topic {
                            topic_id: topic.topic_id,
                        },
                        &topic.configs,
                    )
                }
                Resource::BrokerDefault => {
                    (ConfigTarget::BrokerDefault, &image.default_broker_configs)
                }
                Resource::Broker(id) => (
                    ConfigTarget::Broker { node_id: *id },
                    image.dynamic_broker_configs(*id).1,
                ),
            };
            let is_topic = matches!(resource, Resource::Topic(_));
            let next = match alteration {
                Alteration::Replace(configs) => configs.clone(),
                Alteration::Incremental(ops) => apply_ops(is_topic, current, ops)?,
            };
            match resource {
                Resource::Topic(name) => validate_topic_overrides(name, &next)?,
                _ => validate_broker_overrides(static_config, image, &target, &next)?,
            }
            Ok((target, next))
        })
        .collect()
}

/// The effective broker config for the latest metadata, recomputed only when the
/// image's dynamic broker configs differ from the last ones seen.
pub struct LiveConfig {
    static_config: BrokerConfig,
    cache: Mutex<Cached>,
}

struct Cached {
    default: BTreeMap<String, String>,
    per_broker: BTreeMap<String, String>,
    effective: Arc<BrokerConfig>,
}

impl LiveConfig {
    pub fn new(static_config: BrokerConfig) -> LiveConfig {
        LiveConfig {
            cache: Mutex::new(Cached {
                default: BTreeMap::new(),
                per_broker: BTreeMap::new(),
                effective: Arc::new(static_config.clone()),
            }),
            static_config,
        }
    }

    /// The config as given at start (file, env, flags): STATIC_BROKER_CONFIG.
    pub fn static_config(&self) -> &BrokerConfig {
        &self.static_config
    }

    /// The static config with `image`'s dynamic broker configs layered over it.
    pub fn effective(&self, image: &MetadataImage) -> Arc<BrokerConfig> {
        let (default, per_broker) = image.dynamic_broker_configs(self.static_config.node_id);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.default != *default || cache.per_broker != *per_broker {
            let effective = layered(&self.static_config, default, per_broker);
            *cache = Cached {
                default: default.clone(),
                per_broker: per_broker.clone(),
                effective: Arc::new(effective),
            };
        }
        cache.effective.clone()
    }
}

/// `static_config.with_dynamic`, leaving out (with a warning) dynamic keys that no longer
/// make a valid config (a static setting changed under them), as Kafka ignores invalid
/// dynamic configs at load.
fn layered(
    static_config: &BrokerConfig,
    default: &BTreeMap<String, String>,
    per_broker: &BTreeMap<String, String>,
) -> BrokerConfig {
    if let Ok(config) = static_config.with_dynamic(default, per_broker) {
        return config;
    }
    let keep = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        map.iter()
            .filter(|(key, value)| {
                let single = BTreeMap::from([((*key).clone(), (*value).clone())]);
                let valid = static_config
                    .with_dynamic(&BTreeMap::new(), &single)
                    .is_ok();
                if !valid {
                    tracing::warn!(key = %key, value = %value, "ignoring an invalid dynamic broker config");
                }
                valid
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    static_config
        .with_dynamic(&keep(default), &keep(per_broker))
        .unwrap_or_else(|_| static_config.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::internal_topics::OFFSETS_TOPIC;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn set(key: &str, value: &str) -> (String, AlterOp) {
        (key.to_string(), AlterOp::Set(value.to_string()))
    }

    #[test]
    fn incremental_ops_follow_kafka() {
        let current = map(&[("retention.ms", "1000"), ("segment.ms", "5")]);
        let next = apply_ops(
            true,
            &current,
            &[
                set("retention.ms", "2000"),
                ("segment.ms".to_string(), AlterOp::Delete),
                ("flush.ms".to_string(), AlterOp::Delete), // absent: no-op
            ],
        )
        .unwrap();
        assert_eq!(next, map(&[("retention.ms", "2000")]));

        // APPEND starts from the built-in default ("delete") when not overridden, and
        // does not repeat elements; SUBTRACT removes them.
        let append = |value: &str| ("cleanup.policy".to_string(), AlterOp::Append(value.into()));
        let subtract = |value: &str| {
            (
                "cleanup.policy".to_string(),
                AlterOp::Subtract(value.into()),
            )
        };
        let next = apply_ops(true, &BTreeMap::new(), &[append("compact")]).unwrap();
        assert_eq!(next, map(&[("cleanup.policy", "delete,compact")]));
        let next = apply_ops(true, &next, &[append("compact,delete")]).unwrap();
        assert_eq!(next, map(&[("cleanup.policy", "delete,compact")]));
        let next = apply_ops(true, &next, &[subtract("delete")]).unwrap();
        assert_eq!(next, map(&[("cleanup.policy", "compact")]));
        let next = apply_ops(true, &next, &[subtract("compact")]).unwrap();
        assert_eq!(next, map(&[("cleanup.policy", "")]));
        // Broker side: the list-typed synonym.
        let next = apply_ops(
            false,
            &BTreeMap::new(),
            &[(
                "log.cleanup.policy".to_string(),
                AlterOp::Append("compact".into()),
            )],
        )
        .unwrap();
        assert_eq!(next, map(&[("log.cleanup.policy", "delete,compact")]));

        let err = apply_ops(
            true,
            &current,
            &[("retention.ms".to_string(), AlterOp::Append("1".into()))],
        )
        .unwrap_err();
        assert_eq!(err.code, errors::INVALID_CONFIG);
        assert!(err.message.contains("not LIST"), "{}", err.message);
        let err = apply_ops(
            false,
            &BTreeMap::new(),
            &[(
                "log.retention.ms".to_string(),
                AlterOp::Subtract("1".into()),
            )],
        )
        .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                errors::INVALID_CONFIG,
                "Config value subtract is not allowed for config key: log.retention.ms"
            )
        );
        assert_eq!(
            AlterOp::from_wire("k", 7, None).unwrap_err().code,
            errors::INVALID_REQUEST
        );
        assert_eq!(
            AlterOp::from_wire("k", 0, None).unwrap_err().code,
            errors::INVALID_REQUEST
        );
        assert_eq!(AlterOp::from_wire("k", 1, None), Ok(AlterOp::Delete));
    }

    #[test]
    fn resources_are_resolved_like_kafkas_broker() {
        assert_eq!(
            parse_resource(RESOURCE_TOPIC, "t", 1),
            Ok(Resource::Topic("t".into()))
        );
        assert_eq!(
            parse_resource(RESOURCE_BROKER, "", 1),
            Ok(Resource::BrokerDefault)
        );
        assert_eq!(
            parse_resource(RESOURCE_BROKER, "1", 1),
            Ok(Resource::Broker(1))
        );
        for (kind, name) in [
            (RESOURCE_TOPIC, ""),
            (RESOURCE_BROKER, "2"),
            (RESOURCE_BROKER, "one"),
            (8, "1"),
        ] {
            assert_eq!(
                parse_resource(kind, name, 1).unwrap_err().code,
                errors::INVALID_REQUEST,
                "{kind} {name:?}"
            );
        }
    }

    fn config() -> BrokerConfig {
        BrokerConfig::load(None, Vec::new(), &["log.retention.ms=1000".to_string()]).unwrap()
    }

    #[test]
    fn broker_overrides_only_dynamic_keys_with_valid_values() {
        let static_config = config();
        let image = MetadataImage::default();
        let check = |configs| {
            validate_broker_overrides(
                &static_config,
                &image,
                &ConfigTarget::BrokerDefault,
                &configs,
            )
        };
        assert!(check(map(&[
            ("log.retention.ms", "5"),
            ("message.max.bytes", "2000"),
            ("log.cleanup.policy", "compact"),
            ("max.connections", "10"),
            ("log.cleaner.io.max.bytes.per.second", "1048576"),
            ("log.cleaner.dedupe.buffer.size", "1048576"),
            ("log.cleaner.backoff.ms", "100"),
        ]))
        .is_ok());
        let err = check(map(&[("node.id", "7"), ("log.dirs", "/x")])).unwrap_err();
        assert_eq!(err.code, errors::INVALID_REQUEST);
        assert_eq!(
            err.message,
            "Cannot update these configs dynamically: [log.dirs, node.id]"
        );
        for bad in [
            ("log.segment.bytes", "10"),
            ("log.retention.ms", "soon"),
            ("log.cleanup.policy", "shred"),
            ("max.connections", "-1"),
            // One cleaner thread is all Millrace runs.
            ("log.cleaner.threads", "2"),
            ("log.cleaner.io.max.bytes.per.second", "0"),
        ] {
            let err = check(map(&[bad])).unwrap_err();
            assert_eq!(err.code, errors::INVALID_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn plan_resolves_each_resource_against_the_image() {
        let static_config = config();
        let image = MetadataImage::default();
        let results = plan(
            &static_config,
            &image,
            &[
                (
                    Resource::Topic("missing".into()),
                    Alteration::Replace(BTreeMap::new()),
                ),
                (
                    Resource::BrokerDefault,
                    Alteration::Incremental(vec![set("log.retention.ms", "5")]),
                ),
                (
                    Resource::Broker(1),
                    Alteration::Replace(map(&[("segment.bytes", "1048576")])),
                ),
            ],
        );
        assert_eq!(
            results[0].as_ref().unwrap_err().code,
            errors::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(
            results[1].as_ref().unwrap(),
            &(
                ConfigTarget::BrokerDefault,
                map(&[("log.retention.ms", "5")])
            )
        );
        // A topic config name is not a broker config.
        assert_eq!(
            results[2].as_ref().unwrap_err().code,
            errors::INVALID_REQUEST
        );
        let bad_topic = validate_topic_overrides("t", &map(&[("retention.ms", "x")]));
        assert_eq!(bad_topic.unwrap_err().code, errors::INVALID_CONFIG);
        let offsets_delete =
            validate_topic_overrides(OFFSETS_TOPIC, &map(&[("cleanup.policy", "delete")]));
        assert_eq!(offsets_delete.unwrap_err().code, errors::INVALID_CONFIG);
    }

    #[test]
    fn effective_config_layers_per_broker_over_default_over_static() {
        let live = LiveConfig::new(config());
        let mut image = MetadataImage::default();
        assert_eq!(live.effective(&image).log.retention_ms, 1000);
        image.default_broker_configs =
            map(&[("log.retention.ms", "2000"), ("message.max.bytes", "300")]);
        image
            .broker_configs
            .insert(1, map(&[("log.retention.ms", "3000")]));
        image
            .broker_configs
            .insert(2, map(&[("message.max.bytes", "9")]));
        let effective = live.effective(&image);
        assert_eq!(effective.log.retention_ms, 3000);
        assert_eq!(effective.message_max_bytes, 300);
        assert_eq!(
            effective
                .topic_record_rules(&map(&[("max.message.bytes", "50")]))
                .max_message_bytes,
            50
        );
        // Unchanged dynamic configs: the same Arc.
        assert!(Arc::ptr_eq(&effective, &live.effective(&image)));
        // An invalid stored value is left out, the rest kept.
        image.broker_configs.insert(
            1,
            map(&[("log.retention.ms", "3000"), ("log.segment.bytes", "1")]),
        );
        let effective = live.effective(&image);
        assert_eq!(effective.log.retention_ms, 3000);
        assert_eq!(effective.log.segment_bytes, config().log.segment_bytes);
        assert_eq!(live.static_config().log.retention_ms, 1000);
    }
}
