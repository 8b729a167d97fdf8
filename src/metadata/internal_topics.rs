//! Kafka's internal topics: the broker's own state lives in them, so clients may read
//! them but not write, delete, or create them in a shape the broker cannot use.
//!
//! As in Kafka: a produce from a client gets INVALID_TOPIC_EXCEPTION ("Cannot append to
//! internal topic"), unless the client id is the admin client's; `__consumer_offsets` is
//! always created with `offsets.topic.num.partitions` shards and its compacted configs,
//! whether a group request, a CreateTopics or a Metadata auto-create brings it about.
//! Kafka's KRaft controller still lets DeleteTopics remove an internal topic (its CLI
//! refuses client-side); Millrace refuses it in the broker, with the same error code as a
//! produce, because a deleted offsets topic silently loses every group's commits.

use std::collections::BTreeMap;

use super::{ApiError, CreateTopicRequest, MetadataImage};
use crate::config::BrokerConfig;
use crate::protocol::errors;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
pub const SHARE_GROUP_STATE_TOPIC: &str = "__share_group_state";

/// Kafka's `Topic.isInternal`: the topics coordinators own.
pub fn is_internal(name: &str) -> bool {
    matches!(
        name,
        OFFSETS_TOPIC | TRANSACTION_STATE_TOPIC | SHARE_GROUP_STATE_TOPIC
    )
}

/// Kafka's `AdminUtils.ADMIN_CLIENT_ID`: the one client id allowed to append to internal
/// topics (Kafka's own tooling uses it).
pub const ADMIN_CLIENT_ID: &str = "__admin_client";

/// Why a client's produce to `topic` is refused, if it is.
pub fn check_client_append(topic: &str, client_id: Option<&str>) -> Result<(), ApiError> {
    if is_internal(topic) && client_id != Some(ADMIN_CLIENT_ID) {
        return Err(ApiError {
            code: errors::INVALID_TOPIC_EXCEPTION,
            message: format!("Cannot append to internal topic {topic}"),
        });
    }
    Ok(())
}

/// Why a client's DeleteTopics of `topic` is refused, if it is.
pub fn check_client_delete(topic: &str) -> Result<(), ApiError> {
    if is_internal(topic) {
        return Err(ApiError {
            code: errors::INVALID_TOPIC_EXCEPTION,
            message: format!("Cannot delete internal topic {topic}"),
        });
    }
    Ok(())
}

/// Why a client's CreatePartitions of `topic` is refused, if it is: a coordinator maps
/// its keys onto the partitions by count, so more partitions would move every group (or
/// transaction) to another shard and lose its state. Kafka's ZooKeeper-era TopicCommand
/// refused it client-side (KAFKA-7801); Kafka 4's controller does not check. Millrace
/// refuses it in the broker, with the delete's error code.
pub fn check_client_create_partitions(topic: &str) -> Result<(), ApiError> {
    if is_internal(topic) {
        return Err(ApiError {
            code: errors::INVALID_TOPIC_EXCEPTION,
            message: format!("Cannot add partitions to internal topic {topic}"),
        });
    }
    Ok(())
}

/// Why a client's AlterConfigs leaving `topic` with the overrides `configs` is refused,
/// if it is: the group coordinator keeps offsets and group state in `__consumer_offsets`
/// and relies on compaction, never on time or size retention, to keep the latest of
/// each, so its `cleanup.policy` override must stay and keep `compact` (without it the
/// broker's `log.cleanup.policy` would apply). Kafka does not check this.
pub fn check_client_config_change(
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let compacted = configs
        .get("cleanup.policy")
        .is_some_and(|policy| policy.split(',').any(|p| p.trim() == "compact"));
    if topic == OFFSETS_TOPIC && !compacted {
        return Err(ApiError {
            code: errors::INVALID_CONFIG,
            message: format!("Internal topic {OFFSETS_TOPIC} must keep cleanup.policy compact."),
        });
    }
    Ok(())
}

/// The one shape `__consumer_offsets` is created in: `offsets.topic.num.partitions`
/// shards, `offsets.topic.replication.factor` capped at the unfenced brokers, compacted,
/// batches stored as the coordinator writes them.
pub fn offsets_topic_request(config: &BrokerConfig, image: &MetadataImage) -> CreateTopicRequest {
    let brokers = i16::try_from(image.live_brokers().count().max(1)).unwrap_or(i16::MAX);
    CreateTopicRequest {
        name: OFFSETS_TOPIC.to_string(),
        num_partitions: config.offsets_topic_num_partitions,
        replication_factor: config.offsets_topic_replication_factor.min(brokers),
        assignments: Vec::new(),
        configs: [
            ("cleanup.policy", "compact".to_string()),
            ("compression.type", "producer".to_string()),
            (
                "segment.bytes",
                config.offsets_topic_segment_bytes.to_string(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect(),
    }
}

/// How the transaction coordinator creates `__transaction_state` on first use, as Kafka
/// does: `transaction.state.log.num.partitions` partitions, compacted, no unclean
/// election; its replication factor and `transaction.state.log.min.isr` capped at the
/// registered brokers (Kafka refuses to create it on fewer brokers than the factor; the
/// offsets topic is capped the same way, so `millrace serve` alone can use both).
pub fn transaction_state_topic_request(
    config: &BrokerConfig,
    image: &MetadataImage,
) -> CreateTopicRequest {
    let brokers = i16::try_from(image.live_brokers().count().max(1)).unwrap_or(i16::MAX);
    let txn = &config.txn;
    let replication_factor = txn.state_log_replication_factor.min(brokers);
    // Capped with the replication factor, so a single node can commit transactions.
    let min_isr = txn.state_log_min_isr.min(i32::from(replication_factor));
    CreateTopicRequest {
        name: TRANSACTION_STATE_TOPIC.to_string(),
        num_partitions: txn.state_log_num_partitions,
        replication_factor,
        assignments: Vec::new(),
        configs: [
            ("cleanup.policy", "compact".to_string()),
            ("compression.type", "uncompressed".to_string()),
            ("min.insync.replicas", min_isr.to_string()),
            ("segment.bytes", txn.state_log_segment_bytes.to_string()),
            ("unclean.leader.election.enable", "false".to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect(),
    }
}

/// A client's CreateTopics or Metadata auto-create of `request.name`, as the controller
/// should see it: unchanged for an ordinary topic; for `__consumer_offsets` the broker's
/// own shape (a request that asks for another shape is refused); refused for the other
/// internal topics, which only their coordinators create.
pub fn vet_client_creation(
    request: CreateTopicRequest,
    config: &BrokerConfig,
    image: &MetadataImage,
) -> Result<CreateTopicRequest, ApiError> {
    if !is_internal(&request.name) {
        return Ok(request);
    }
    if request.name != OFFSETS_TOPIC {
        return Err(ApiError {
            code: errors::INVALID_REQUEST,
            message: format!(
                "Creation of internal topic {} is prohibited: its coordinator creates it.",
                request.name
            ),
        });
    }
    let shape = offsets_topic_request(config, image);
    let refuse = |code: i16, what: &str| {
        Err(ApiError {
            code,
            message: format!(
                "Internal topic {OFFSETS_TOPIC} is created with {} partitions \
                 (offsets.topic.num.partitions), replication factor {} and its own configs; \
                 the request asked for other {what}.",
                shape.num_partitions, shape.replication_factor
            ),
        })
    };
    if request.num_partitions != -1 && request.num_partitions != shape.num_partitions {
        return refuse(errors::INVALID_PARTITIONS, "partitions");
    }
    if request.replication_factor != -1 && request.replication_factor != shape.replication_factor {
        return refuse(errors::INVALID_REPLICATION_FACTOR, "replication");
    }
    if !request.assignments.is_empty() {
        return refuse(errors::INVALID_REQUEST, "assignments");
    }
    if !request.configs.is_empty() {
        return refuse(errors::INVALID_CONFIG, "configs");
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BrokerConfig {
        BrokerConfig::load(None, std::iter::empty(), &[]).expect("default config")
    }

    fn request(name: &str, num_partitions: i32) -> CreateTopicRequest {
        CreateTopicRequest {
            name: name.to_string(),
            num_partitions,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Default::default(),
        }
    }

    #[test]
    fn clients_cannot_append_to_or_delete_internal_topics() {
        for topic in [
            OFFSETS_TOPIC,
            TRANSACTION_STATE_TOPIC,
            SHARE_GROUP_STATE_TOPIC,
        ] {
            let refused = check_client_append(topic, Some("rdkafka")).unwrap_err();
            assert_eq!(refused.code, errors::INVALID_TOPIC_EXCEPTION);
            assert!(check_client_append(topic, None).is_err());
            assert!(check_client_append(topic, Some(ADMIN_CLIENT_ID)).is_ok());
            assert_eq!(
                check_client_delete(topic).unwrap_err().code,
                errors::INVALID_TOPIC_EXCEPTION
            );
        }
        assert!(check_client_append("orders", Some("rdkafka")).is_ok());
        assert!(check_client_delete("__consumer_offsets_not").is_ok());
    }

    #[test]
    fn the_offsets_topic_is_only_ever_created_in_its_own_shape() {
        let config = config();
        let image = MetadataImage::default();
        let created = vet_client_creation(request(OFFSETS_TOPIC, -1), &config, &image).unwrap();
        assert_eq!(created.num_partitions, config.offsets_topic_num_partitions);
        assert_eq!(
            created.replication_factor, 1,
            "capped at one registered broker"
        );
        assert_eq!(created.configs["cleanup.policy"], "compact");
        let same = request(OFFSETS_TOPIC, config.offsets_topic_num_partitions);
        assert_eq!(vet_client_creation(same, &config, &image).unwrap(), created);
        let wrong = vet_client_creation(request(OFFSETS_TOPIC, 1), &config, &image).unwrap_err();
        assert_eq!(wrong.code, errors::INVALID_PARTITIONS);
        let mut with_configs = request(OFFSETS_TOPIC, -1);
        with_configs
            .configs
            .insert("cleanup.policy".into(), "delete".into());
        assert_eq!(
            vet_client_creation(with_configs, &config, &image)
                .unwrap_err()
                .code,
            errors::INVALID_CONFIG
        );
        let txn = vet_client_creation(request(TRANSACTION_STATE_TOPIC, -1), &config, &image);
        assert_eq!(txn.unwrap_err().code, errors::INVALID_REQUEST);
        let ordinary = request("orders", 1);
        assert_eq!(
            vet_client_creation(ordinary.clone(), &config, &image).unwrap(),
            ordinary
        );
    }
}
