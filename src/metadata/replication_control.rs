//! The active controller's replication duties over the whole image (Kafka's
//! `ReplicationControlManager`): which [`PartitionChange`] records a fenced or unfenced
//! broker and a leader's AlterPartition call for, decided per partition by the pure
//! rules of [`partition_change`]. Pure: image in, records out; the quorum writes them.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::partition_change::{self, AlterPartitionRequest, ChangeContext, PartitionChange};
use super::{MetadataImage, MetadataRecord, PartitionRecord, TopicImage};
use crate::config::BrokerConfig;

/// The partition after an accepted AlterPartition, as the leader is told.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterPartitionAnswer {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// A topic's effective `min.insync.replicas` and `unclean.leader.election.enable`: its
/// override, else the cluster-wide dynamic default, else the controller's static config.
pub(super) fn topic_settings(
    image: &MetadataImage,
    topic: &TopicImage,
    config: &BrokerConfig,
) -> (usize, bool) {
    let setting = |key: &str| {
        topic
            .configs
            .get(key)
            .or_else(|| image.default_broker_configs.get(key))
            .map(|value| value.trim().to_string())
    };
    let min_insync = setting("min.insync.replicas")
        .and_then(|value| value.parse::<i32>().ok())
        .unwrap_or(config.min_insync_replicas)
        .max(1) as usize;
    let unclean = setting("unclean.leader.election.enable")
        .map(|value| value.eq_ignore_ascii_case("true"))
        .unwrap_or(config.unclean_leader_election_enable);
    (min_insync, unclean)
}

/// Registered and not fenced, and not among `leaving`.
pub(super) fn is_active(image: &MetadataImage, leaving: &BTreeSet<i32>, broker: i32) -> bool {
    !leaving.contains(&broker) && image.brokers.get(&broker).is_some_and(|b| !b.fenced)
}

/// Every change that `brokers` leaving (fenced, or re-registered after a restart) calls
/// for: each leaves every ISR, and the partitions it led elect a new leader. Brokers are
/// taken one after another, each seeing the changes of the ones before.
pub(super) fn brokers_leaving(
    image: &MetadataImage,
    brokers: &[i32],
    config: &BrokerConfig,
) -> Vec<MetadataRecord> {
    let leaving: BTreeSet<i32> = brokers.iter().copied().collect();
    let mut records = Vec::new();
    for topic in image.topics.values() {
        let (min_insync_replicas, unclean_leader_election) = topic_settings(image, topic, config);
        let active = |broker: i32| is_active(image, &leaving, broker);
        let ctx = ChangeContext {
            is_active: &active,
            min_insync_replicas,
            unclean_leader_election,
        };
        for partition in &topic.partitions {
            let mut current = partition.clone();
            for &broker in brokers {
                let involved = current.leader == broker
                    || current.isr.contains(&broker)
                    || current.elr.contains(&broker);
                if !involved {
                    continue;
                }
                if let Some(change) = partition_change::on_broker_fenced(
                    topic.topic_id,
                    &current,
                    broker,
                    false,
                    &ctx,
                ) {
                    partition_change::apply(&mut current, &change);
                    records.push(MetadataRecord::PartitionChange(change));
                }
            }
        }
    }
    records
}

/// Every leaderless partition that `broker` (just unfenced) may lead again.
pub(super) fn broker_back(
    image: &MetadataImage,
    broker: i32,
    config: &BrokerConfig,
) -> Vec<MetadataRecord> {
    let none = BTreeSet::new();
    let mut records = Vec::new();
    for topic in image.topics.values() {
        let (min_insync_replicas, unclean_leader_election) = topic_settings(image, topic, config);
        let active = |b: i32| b == broker || is_active(image, &none, b);
        let ctx = ChangeContext {
            is_active: &active,
            min_insync_replicas,
            unclean_leader_election,
        };
        for partition in &topic.partitions {
            if partition.leader >= 0 || !partition.replicas.contains(&broker) {
                continue;
            }
            if let Some(change) =
                partition_change::on_broker_unfenced(topic.topic_id, partition, broker, &ctx)
            {
                records.push(MetadataRecord::PartitionChange(change));
            }
        }
    }
    records
}

/// A leader's AlterPartition for one partition: the change to write (none when the ISR
/// is already the requested one) and the partition as it will be, or Kafka's error code.
pub(super) fn alter_partition(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    request: &AlterPartitionRequest,
    config: &BrokerConfig,
) -> Result<(Option<PartitionChange>, AlterPartitionAnswer), i16> {
    let topic = image
        .topic_names_by_id
        .get(&topic_id)
        .and_then(|name| image.topics.get(name))
        .ok_or(partition_change::codes::UNKNOWN_TOPIC_OR_PARTITION)?;
    let record: &PartitionRecord = topic
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .ok_or(partition_change::codes::UNKNOWN_TOPIC_OR_PARTITION)?;
    let (min_insync_replicas, unclean_leader_election) = topic_settings(image, topic, config);
    let none = BTreeSet::new();
    let active = |broker: i32| is_active(image, &none, broker);
    let ctx = ChangeContext {
        is_active: &active,
        min_insync_replicas,
        unclean_leader_election,
    };
    let change = partition_change::alter_partition(topic_id, record, request, &ctx)?;
    let mut after = record.clone();
    if let Some(change) = &change {
        partition_change::apply(&mut after, change);
    }
    Ok((
        change,
        AlterPartitionAnswer {
            leader_epoch: after.leader_epoch,
            partition_epoch: after.partition_epoch,
            isr: after.isr,
        },
    ))
}
