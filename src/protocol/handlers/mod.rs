//! One file per Kafka API, named after it.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
mod groups;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;
mod txns;
pub mod write_txn_markers;

use std::sync::Arc;

use crate::metadata::TopicImage;
use crate::partition::{Partition, PartitionError};
use crate::protocol::{errors, RequestContext};

const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// The local partition a produce, fetch or ListOffsets may use, or Kafka's reason why
/// not: unknown topic (`unknown_topic_code` differs by whether the request named it by
/// id), unknown partition, not the leader, a stale or future leader epoch
/// (`current_leader_epoch` -1 skips that check), or a replica that failed to open.
pub async fn led_partition(
    ctx: &RequestContext,
    topic: Option<&Arc<TopicImage>>,
    unknown_topic_code: i16,
    index: i32,
    current_leader_epoch: i32,
) -> Result<Arc<Partition>, PartitionError> {
    let error = |code: i16, message: &str| PartitionError {
        code,
        message: message.to_string(),
    };
    let topic = topic.ok_or_else(|| error(unknown_topic_code, "unknown topic"))?;
    let assignment = topic
        .partitions
        .iter()
        .find(|p| p.partition == index)
        .ok_or_else(|| error(errors::UNKNOWN_TOPIC_OR_PARTITION, "unknown partition"))?;
    if assignment.leader != ctx.broker.config.node_id {
        return Err(error(errors::NOT_LEADER_OR_FOLLOWER, "not the leader"));
    }
    if current_leader_epoch >= 0 && current_leader_epoch < assignment.leader_epoch {
        return Err(error(
            FENCED_LEADER_EPOCH,
            "leader epoch is older than the leader's",
        ));
    }
    if current_leader_epoch > assignment.leader_epoch {
        return Err(error(
            UNKNOWN_LEADER_EPOCH,
            "leader epoch is newer than the leader's",
        ));
    }
    let local = || ctx.broker.partitions.get(topic.topic_id, index);
    // The metadata watcher may not have opened a just-created partition yet.
    // Awaits only on that path: produce relies on reaching its submit without yielding.
    let found = match local() {
        Some(partition) => Some(partition),
        None => {
            ctx.broker.reconcile_partitions().await;
            local()
        }
    };
    found.ok_or_else(|| error(errors::KAFKA_STORAGE_ERROR, "partition is not online"))
}

/// KIP-951: where a client that got NOT_LEADER_OR_FOLLOWER should go instead: the
/// partition's leader and leader epoch in this node's image, when the leader is another
/// live broker.
pub fn leader_hint(
    image: &crate::metadata::MetadataImage,
    topic: Option<&Arc<TopicImage>>,
    index: i32,
    own_id: i32,
) -> Option<(i32, i32)> {
    let p = topic?.partitions.iter().find(|p| p.partition == index)?;
    (p.leader != own_id && image.is_live_broker(p.leader)).then_some((p.leader, p.leader_epoch))
}

/// KIP-951's `node_endpoints`: (id, host, port, rack) of the given live brokers, each once.
pub fn hinted_endpoints(
    image: &crate::metadata::MetadataImage,
    ids: impl IntoIterator<Item = i32>,
) -> Vec<(i32, String, i32, Option<String>)> {
    let ids: std::collections::BTreeSet<i32> = ids.into_iter().collect();
    ids.into_iter()
        .filter_map(|id| image.brokers.get(&id).filter(|b| !b.fenced))
        .map(|b| (b.node_id, b.host.clone(), b.port, b.rack.clone()))
        .collect()
}

/// Looks a topic up by id (requests of versions that carry ids) or by name.
pub fn find_topic<'a>(
    image: &'a crate::metadata::MetadataImage,
    by_id: bool,
    name: &str,
    id: uuid::Uuid,
) -> (Option<&'a Arc<TopicImage>>, i16) {
    if by_id {
        let topic = image
            .topic_names_by_id
            .get(&id)
            .and_then(|name| image.topics.get(name));
        (topic, errors::UNKNOWN_TOPIC_ID)
    } else {
        (image.topics.get(name), errors::UNKNOWN_TOPIC_OR_PARTITION)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::{BrokerRegistration, MetadataImage, PartitionRecord};

    fn broker(id: i32, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            node_id: id,
            host: format!("h{id}"),
            port: 9000 + id,
            rack: Some("r".to_string()),
            broker_epoch: 1,
            incarnation_id: uuid::Uuid::nil(),
            listeners: vec![],
            fenced,
        }
    }

    #[test]
    fn kip_951_hints_name_a_live_other_leader() {
        let image = MetadataImage {
            brokers: BTreeMap::from([
                (1, broker(1, false)),
                (2, broker(2, false)),
                (3, broker(3, true)),
            ]),
            ..Default::default()
        };
        let partition = |p: i32, leader: i32| PartitionRecord {
            partition: p,
            replicas: vec![leader],
            isr: vec![leader],
            leader,
            leader_epoch: 4,
            partition_epoch: 0,
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        let topic = Arc::new(TopicImage {
            name: "t".to_string(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: vec![partition(0, 2), partition(1, 1), partition(2, 3)],
            configs: BTreeMap::new(),
        });
        assert_eq!(leader_hint(&image, Some(&topic), 0, 1), Some((2, 4)));
        // Ourselves, a fenced leader, an unknown partition or topic: no hint.
        assert_eq!(leader_hint(&image, Some(&topic), 1, 1), None);
        assert_eq!(leader_hint(&image, Some(&topic), 2, 1), None);
        assert_eq!(leader_hint(&image, Some(&topic), 9, 1), None);
        assert_eq!(leader_hint(&image, None, 0, 1), None);
        assert_eq!(
            hinted_endpoints(&image, [2, 3, 2]),
            vec![(2, "h2".to_string(), 9002, Some("r".to_string()))]
        );
    }
}
