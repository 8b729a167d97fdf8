//! DescribeConfigs for topics and this broker (read-only for now: no AlterConfigs).
//! Sources follow Kafka: a topic override is DYNAMIC_TOPIC_CONFIG, a broker setting given
//! in the file, env or flags is STATIC_BROKER_CONFIG, anything else DEFAULT_CONFIG.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::config::{BrokerConfig, ConfigType, KNOWN_BROKER_KEYS, TOPIC_CONFIGS};
use crate::protocol::{errors, RequestContext};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// One described config, before it is shaped into a response of some API.
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub config_type: ConfigType,
    /// (name, value, source), most specific first.
    pub synonyms: Vec<(String, String, i8)>,
}

/// Every topic config with its effective value: the override, else the broker's value.
pub fn topic_config_entries(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (broker_value, explicit) = config
                .broker_value(def.broker_synonym)
                .unwrap_or_else(|| (String::new(), false));
            let broker_source = if explicit {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(def.name) {
                synonyms.push((def.name.to_string(), value.clone(), SOURCE_DYNAMIC_TOPIC));
            }
            synonyms.push((
                def.broker_synonym.to_string(),
                broker_value.clone(),
                broker_source,
            ));
            let (value, source) = match overrides.get(def.name) {
                Some(value) => (value.clone(), SOURCE_DYNAMIC_TOPIC),
                None => (broker_value, broker_source),
            };
            ConfigEntry {
                name: def.name,
                value,
                source,
                config_type: def.config_type,
                synonyms,
            }
        })
        .collect()
}

fn broker_config_entries(config: &BrokerConfig) -> Vec<ConfigEntry> {
    KNOWN_BROKER_KEYS
        .iter()
        .filter_map(|&name| {
            let (value, explicit) = config.broker_value(name)?;
            let source = if explicit {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            Some(ConfigEntry {
                name,
                synonyms: vec![(name.to_string(), value.clone(), source)],
                value,
                source,
                config_type: ConfigType::String,
            })
        })
        .collect()
}

pub fn handle(ctx: &RequestContext, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let version = ctx.version();
    let config = &ctx.broker.config;
    let image = ctx.broker.metadata.image();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            let (entries, read_only) = match resource.resource_type {
                RESOURCE_TOPIC => match image.topics.get(&name) {
                    Some(topic) => (topic_config_entries(config, &topic.configs), false),
                    None => {
                        return result
                            .with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Topic {name} does not exist"
                            ))))
                    }
                },
                // "" is the cluster-wide dynamic default, of which there is none yet.
                RESOURCE_BROKER if name.is_empty() => (Vec::new(), true),
                RESOURCE_BROKER if name == config.node_id.to_string() => {
                    (broker_config_entries(config), true)
                }
                RESOURCE_BROKER => {
                    return result
                        .with_error_code(errors::INVALID_REQUEST)
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "Unexpected broker id {name}"
                        ))))
                }
                other => {
                    return result
                        .with_error_code(errors::INVALID_REQUEST)
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "Unsupported resource type {other}"
                        ))))
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
                        .with_read_only(read_only)
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
                    }
                    out
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
