//! CreateTopics: configs are checked here against the known topic configs; names,
//! partition counts and assignments by the controller in the metadata quorum.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::ConfigSources;
use crate::config::validate_topic_config;
use crate::metadata::internal_topics::vet_client_creation;
use crate::metadata::{ApiError, CreateTopicRequest, TopicDefaults};
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let version = ctx.version();
    let config = &ctx.broker.config;
    let mut results: Vec<Option<Result<CreatableTopicResult, ApiError>>> =
        Vec::with_capacity(request.topics.len());
    let mut to_create = Vec::new();
    let mut names = Vec::new();
    let image = ctx.broker.metadata.image();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        names.push(topic.name.clone());
        let vetted = topic_configs(&topic.configs).and_then(|configs| {
            let request = CreateTopicRequest {
                name,
                num_partitions: topic.num_partitions,
                replication_factor: topic.replication_factor,
                assignments: topic
                    .assignments
                    .iter()
                    .map(|a| {
                        (
                            a.partition_index,
                            a.broker_ids.iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect(),
                configs,
            };
            vet_client_creation(request, config, &image)
        });
        match vetted {
            Err(error) => results.push(Some(Err(error))),
            Ok(request) => {
                results.push(None);
                to_create.push(request);
            }
        }
    }
    let defaults = TopicDefaults {
        num_partitions: config.num_partitions,
        replication_factor: config.default_replication_factor,
    };
    let created = if to_create.is_empty() {
        Ok(Vec::new())
    } else {
        ctx.broker
            .metadata
            .create_topics(to_create, &defaults, request.validate_only)
            .await
    };
    let mut created = match created {
        Ok(created) => created.into_iter(),
        Err(error) => {
            tracing::warn!(%error, "CreateTopics failed in the metadata quorum");
            let failure = ApiError {
                code: errors::NOT_CONTROLLER,
                message: error.to_string(),
            };
            vec![Err(failure); results.iter().filter(|r| r.is_none()).count()].into_iter()
        }
    };
    if !request.validate_only {
        ctx.broker.reconcile_partitions().await;
    }
    let topics = results
        .into_iter()
        .zip(names)
        .map(|(early, name)| {
            let outcome = match early {
                Some(result) => result,
                None => created
                    .next()
                    .unwrap_or_else(|| {
                        Err(ApiError {
                            code: errors::UNKNOWN_SERVER_ERROR,
                            message: "missing result".to_string(),
                        })
                    })
                    .map(|topic| {
                        let mut result = CreatableTopicResult::default()
                            .with_topic_id(topic.topic_id)
                            .with_num_partitions(topic.partitions.len() as i32)
                            .with_replication_factor(
                                topic.partitions.first().map_or(0, |p| p.replicas.len()) as i16,
                            );
                        if version >= 5 {
                            result = result.with_configs(Some(
                                ConfigSources::new(config, &ctx.broker.metadata.image())
                                    .topic_entries(&topic.configs)
                                    .into_iter()
                                    .map(|entry| {
                                        CreatableTopicConfigs::default()
                                            .with_name(StrBytes::from_static_str(entry.name))
                                            .with_value(Some(StrBytes::from_string(entry.value)))
                                            .with_config_source(entry.source)
                                    })
                                    .collect(),
                            ));
                        }
                        result
                    }),
            };
            match outcome {
                Ok(result) => result.with_name(name),
                Err(error) => CreatableTopicResult::default()
                    .with_name(name)
                    .with_error_code(error.code)
                    .with_error_message(Some(StrBytes::from_string(error.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn topic_configs(
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for entry in configs {
        let name = entry.name.to_string();
        let value = entry.value.as_ref().ok_or_else(|| ApiError {
            code: errors::INVALID_REQUEST,
            message: format!("Null value not supported for topic configs: {name}"),
        })?;
        validate_topic_config(&name, value).map_err(|message| ApiError {
            code: errors::INVALID_CONFIG,
            message,
        })?;
        out.insert(name, value.to_string());
    }
    Ok(out)
}
