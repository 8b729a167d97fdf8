//! Metadata: brokers, cluster id, controller, and topics with their partitions. Unknown
//! topics are auto-created when both the request and `auto.create.topics.enable` allow
//! it; the answer then already carries the new topic's ready partitions.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::metadata::internal_topics::{is_internal, vet_client_creation};
use crate::metadata::{CreateTopicRequest, MetadataImage, TopicDefaults, TopicImage};
use crate::protocol::{errors, RequestContext};

enum Wanted {
    Name(String),
    Id(Uuid),
}

pub async fn handle(ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let version = ctx.version();
    let mut image = ctx.broker.metadata.image();
    let wanted: Option<Vec<Wanted>> = match request.topics {
        None => None,
        // v0 has no null: an empty list asks for every topic.
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| match t.name {
                    Some(name) => Wanted::Name(name.0.to_string()),
                    None => Wanted::Id(t.topic_id),
                })
                .collect(),
        ),
    };
    let allow_auto_create = ctx.broker.config.auto_create_topics_enable
        && (version < 4 || request.allow_auto_topic_creation);

    let mut create_failures: Vec<(String, i16)> = Vec::new();
    if let (Some(wanted), true) = (&wanted, allow_auto_create) {
        let missing: Vec<String> = wanted
            .iter()
            .filter_map(|w| match w {
                Wanted::Name(name) if !image.topics.contains_key(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            create_failures = auto_create(ctx, &missing).await;
            image = ctx.broker.metadata.image();
        }
    }

    let topics = match wanted {
        None => image.topics.values().map(topic_entry).collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|w| match w {
                Wanted::Name(name) => match image.topics.get(&name) {
                    Some(topic) => topic_entry(topic),
                    None => {
                        let code = create_failures
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, code)| *code)
                            .unwrap_or(errors::UNKNOWN_TOPIC_OR_PARTITION);
                        MetadataResponseTopic::default()
                            .with_error_code(code)
                            .with_name(Some(TopicName(StrBytes::from_string(name))))
                    }
                },
                Wanted::Id(id) => match image
                    .topic_names_by_id
                    .get(&id)
                    .and_then(|n| image.topics.get(n))
                {
                    Some(topic) => topic_entry(topic),
                    None => MetadataResponseTopic::default()
                        .with_error_code(errors::UNKNOWN_TOPIC_ID)
                        .with_topic_id(id),
                },
            })
            .collect(),
    };

    let mut response = MetadataResponse::default()
        .with_brokers(brokers(&image))
        .with_topics(topics);
    if version >= 1 {
        response = response.with_controller_id(BrokerId(
            image.client_controller_id(ctx.broker.config.node_id),
        ));
    }
    if version >= 2 {
        response = response.with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())));
    }
    response
}

/// Creates the missing topics with the broker defaults (`__consumer_offsets` in its own
/// shape; the other internal topics not at all); returns the error code for each topic
/// that could not be created (an invalid name, say).
async fn auto_create(ctx: &RequestContext, names: &[String]) -> Vec<(String, i16)> {
    let config = &ctx.broker.config;
    let image = ctx.broker.metadata.image();
    let mut failures = Vec::new();
    let mut requests = Vec::new();
    for name in names {
        let request = CreateTopicRequest {
            name: name.clone(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Default::default(),
        };
        match vet_client_creation(request, config, &image) {
            Ok(request) => requests.push(request),
            Err(_) => failures.push((name.clone(), errors::UNKNOWN_TOPIC_OR_PARTITION)),
        }
    }
    if requests.is_empty() {
        return failures;
    }
    let requested: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    let defaults = TopicDefaults {
        num_partitions: config.num_partitions,
        replication_factor: config.default_replication_factor,
    };
    let results = match ctx
        .broker
        .metadata
        .create_topics(requests, &defaults, false)
        .await
    {
        Ok(results) => results,
        Err(error) => {
            tracing::warn!(%error, "auto-create failed");
            failures.extend(
                requested
                    .into_iter()
                    .map(|n| (n, errors::LEADER_NOT_AVAILABLE)),
            );
            return failures;
        }
    };
    ctx.broker.reconcile_partitions().await;
    failures.extend(
        requested
            .into_iter()
            .zip(results)
            .filter_map(|(name, result)| match result {
                Ok(_) => None,
                // Lost a race with another creator: the topic exists, which is what we wanted.
                Err(e) if e.code == 36 => None,
                Err(e) if e.code == errors::INVALID_TOPIC_EXCEPTION => Some((name, e.code)),
                Err(_) => Some((name, errors::UNKNOWN_TOPIC_OR_PARTITION)),
            }),
    );
    failures
}

fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .live_brokers()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect()
}

fn topic_entry(topic: &Arc<TopicImage>) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}
