//! Partition reassignment (KIP-455 as Kafka's KRaft controller runs it): the pure rules
//! behind AlterPartitionReassignments and ListPartitionReassignments. Image in, records
//! out; the quorum writes them under its operation lock.
//!
//! A reassignment to target replicas `T` of a partition with replicas `C`:
//! 1. one [`PartitionChange`] makes the replicas `T` followed by `C − T` (the removing
//!    ones), with `adding = T − C` and `removing = C − T`: the brokers in `adding` open
//!    the partition and follow its leader;
//! 2. the leader's AlterPartition takes each caught-up adding replica into the ISR;
//! 3. the change that puts the last of `T` into the ISR also completes the reassignment
//!    (`partition_change::Builder::complete_reassignment_if_needed`): replicas become
//!    `T`, the removing ones leave the ISR, a removed leader hands over to the first
//!    of `T` in sync (new leader epoch), and brokers no longer listed delete their copy.
//!
//! When the ISR already holds all of `T` (a reordering, or a pure removal) step 1
//! completes at once. A null target cancels: the adding replicas go, the removing ones
//! stay (Kafka's `PartitionReassignmentRevert`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::controller::codes;
use super::partition_change::{self, AssignmentTarget, ChangeContext, PartitionChange};
use super::replication_control::{is_active, topic_settings};
use super::{ApiError, MetadataImage, PartitionRecord};
use crate::config::BrokerConfig;

/// Kafka's NO_REASSIGNMENT_IN_PROGRESS.
pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;

/// One topic of an AlterPartitionReassignments request: per partition the target
/// replicas, or `None` to cancel that partition's reassignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicReassignment {
    pub topic: String,
    pub partitions: Vec<(i32, Option<Vec<i32>>)>,
}

/// A partition with a reassignment in progress, as ListPartitionReassignments shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

fn error(code: i16, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
    }
}

pub fn in_progress(partition: &PartitionRecord) -> bool {
    !partition.adding_replicas.is_empty() || !partition.removing_replicas.is_empty()
}

/// The partition's change for one request entry (none when nothing changes), or
/// Kafka's per-partition error. `allow_replication_factor_change` false (KIP-860,
/// request v1) refuses a target with another replica count.
pub(super) fn alter(
    image: &MetadataImage,
    topic_name: &str,
    index: i32,
    target: Option<&[i32]>,
    allow_replication_factor_change: bool,
    config: &BrokerConfig,
) -> Result<Option<PartitionChange>, ApiError> {
    let topic = image.topics.get(topic_name).ok_or_else(|| {
        error(
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            format!("Unable to find a topic named {topic_name}."),
        )
    })?;
    let partition = topic
        .partitions
        .iter()
        .find(|p| p.partition == index)
        .ok_or_else(|| {
            error(
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                format!("Unable to find partition {topic_name}:{index}."),
            )
        })?;
    let (min_insync_replicas, unclean_leader_election) = topic_settings(image, topic, config);
    let none = BTreeSet::new();
    let active = |broker: i32| is_active(image, &none, broker);
    let ctx = ChangeContext {
        is_active: &active,
        min_insync_replicas,
        unclean_leader_election,
    };
    let target = match target {
        None => revert(partition, topic_name, unclean_leader_election)?,
        Some(target) => {
            validate_target(image, target)?;
            let original = partition
                .replicas
                .iter()
                .filter(|r| !partition.adding_replicas.contains(r))
                .count();
            if !allow_replication_factor_change && target.len() != original {
                return Err(error(
                    codes::INVALID_REPLICATION_FACTOR,
                    format!(
                        "The replication factor is changed from {original} to {} but \
                         AllowReplicationFactorChange is false.",
                        target.len()
                    ),
                ));
            }
            plan(&partition.replicas, target)
        }
    };
    Ok(partition_change::change_assignment(
        topic.topic_id,
        partition,
        target,
        &ctx,
    ))
}

/// Kafka's `validateManualPartitionAssignment`: not empty, registered brokers, each once.
fn validate_target(image: &MetadataImage, target: &[i32]) -> Result<(), ApiError> {
    if target.is_empty() {
        return Err(error(
            codes::INVALID_REPLICA_ASSIGNMENT,
            "The manual partition assignment includes an empty replica list.",
        ));
    }
    let mut seen = BTreeSet::new();
    for &broker in target {
        if !image.brokers.contains_key(&broker) {
            return Err(error(
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "The manual partition assignment includes broker {broker}, but no such \
                     broker is registered."
                ),
            ));
        }
        if !seen.insert(broker) {
            return Err(error(
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "The manual partition assignment includes the broker {broker} more than \
                     once."
                ),
            ));
        }
    }
    Ok(())
}

/// Kafka's `PartitionReassignmentReplicas(current, target)`: the target first, then
/// the replicas being removed; adding and removing sorted.
fn plan(current: &[i32], target: &[i32]) -> AssignmentTarget {
    let removing: BTreeSet<i32> = current
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let adding: BTreeSet<i32> = target
        .iter()
        .copied()
        .filter(|r| !current.contains(r))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(removing.iter().copied());
    AssignmentTarget {
        replicas,
        adding: adding.into_iter().collect(),
        removing: removing.into_iter().collect(),
        isr: None,
    }
}

/// Kafka's `PartitionReassignmentRevert`: back to the replicas before the reassignment,
/// the adding ones out of the ISR. If only adding replicas were in sync, the first
/// original replica becomes the ISR, an unclean election the topic must allow.
fn revert(
    partition: &PartitionRecord,
    topic_name: &str,
    unclean_allowed: bool,
) -> Result<AssignmentTarget, ApiError> {
    if !in_progress(partition) {
        return Err(error(
            NO_REASSIGNMENT_IN_PROGRESS,
            "No partition reassignment is in progress for this topic partition.",
        ));
    }
    let adding = &partition.adding_replicas;
    let replicas: Vec<i32> = partition
        .replicas
        .iter()
        .copied()
        .filter(|r| !adding.contains(r))
        .collect();
    let mut isr: Vec<i32> = partition
        .isr
        .iter()
        .copied()
        .filter(|r| !adding.contains(r))
        .collect();
    if isr.is_empty() {
        let Some(&first) = replicas.first() else {
            return Err(error(
                codes::INVALID_REPLICA_ASSIGNMENT,
                "Invalid replica assignment: addingReplicas contains all replicas.",
            ));
        };
        if !unclean_allowed {
            return Err(error(
                codes::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "Unable to revert partition assignment for {topic_name}:{} because it \
                     would require an unclean leader election.",
                    partition.partition
                ),
            ));
        }
        isr.push(first);
    }
    Ok(AssignmentTarget {
        replicas,
        adding: Vec::new(),
        removing: Vec::new(),
        isr: Some(isr),
    })
}

/// ListPartitionReassignments: every partition with a reassignment in progress, or
/// those of the named ones (unknown topics and partitions are left out, as Kafka does);
/// topics without any are not listed.
pub fn ongoing(
    image: &MetadataImage,
    topics: Option<&[(String, Vec<i32>)]>,
) -> Vec<(String, Vec<OngoingReassignment>)> {
    let describe = |p: &PartitionRecord| OngoingReassignment {
        partition: p.partition,
        replicas: p.replicas.clone(),
        adding: p.adding_replicas.clone(),
        removing: p.removing_replicas.clone(),
    };
    let listed: Vec<(String, Vec<OngoingReassignment>)> = match topics {
        None => image
            .topics
            .values()
            .map(|topic| {
                let partitions = topic.partitions.iter().filter(|p| in_progress(p));
                (topic.name.clone(), partitions.map(describe).collect())
            })
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|(name, indexes)| {
                let topic = image.topics.get(name)?;
                let partitions = indexes.iter().filter_map(|&i| {
                    topic
                        .partitions
                        .iter()
                        .find(|p| p.partition == i && in_progress(p))
                });
                Some((name.clone(), partitions.map(describe).collect()))
            })
            .collect(),
    };
    listed
        .into_iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;
    use crate::metadata::partition_change::{AlterPartitionRequest, NO_LEADER};
    use crate::metadata::test_support::{broker, partition_record};
    use crate::metadata::{replication_control, TopicImage};

    fn record(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRecord {
        partition_record(0, replicas, isr, leader)
    }

    fn image_with(partition: PartitionRecord, topic_configs: &[(&str, &str)]) -> MetadataImage {
        let topic_id = Uuid::from_u128(7);
        let topic = TopicImage {
            name: "t".to_string(),
            topic_id,
            partitions: vec![partition],
            configs: topic_configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        MetadataImage {
            brokers: (1..=4).map(|id| (id, broker(id, false))).collect(),
            topics: BTreeMap::from([("t".to_string(), Arc::new(topic))]),
            topic_names_by_id: BTreeMap::from([(topic_id, "t".to_string())]),
            ..MetadataImage::default()
        }
    }

    fn partition_of(image: &MetadataImage) -> &PartitionRecord {
        &image.topics["t"].partitions[0]
    }

    /// Applies `change` to the image's only partition.
    fn applied(mut image: MetadataImage, change: &PartitionChange) -> MetadataImage {
        let topic = image.topics.get_mut("t").unwrap();
        assert!(partition_change::apply(
            &mut Arc::make_mut(topic).partitions[0],
            change
        ));
        image
    }

    fn config() -> BrokerConfig {
        BrokerConfig::load(None, std::iter::empty(), &[]).expect("default config")
    }

    fn reassign(image: &MetadataImage, target: Option<&[i32]>) -> Result<MetadataImage, ApiError> {
        let change = alter(image, "t", 0, target, true, &config())?.expect("a change");
        Ok(applied(image.clone(), &change))
    }

    /// The leader asks for `isr` (AlterPartition) at the partition's current epochs.
    fn expand(image: &MetadataImage, isr: &[i32]) -> MetadataImage {
        let p = partition_of(image);
        let request = AlterPartitionRequest {
            leader_id: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr.to_vec(),
        };
        let topic_id = image.topics["t"].topic_id;
        let (change, _) =
            replication_control::alter_partition(image, topic_id, 0, &request, &config())
                .expect("accepted");
        applied(image.clone(), &change.expect("a change"))
    }

    #[test]
    fn a_move_adds_first_and_removes_once_the_new_replicas_are_in_sync() {
        let image = image_with(record(&[1, 2], &[1, 2], 1), &[]);
        let image = reassign(&image, Some(&[3, 2])).unwrap();
        let p = partition_of(&image);
        assert_eq!(p.replicas, vec![3, 2, 1]);
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![3], vec![1])
        );
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2]));
        let listed = ongoing(&image, None);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1[0].adding, vec![3]);
        // 3 caught up: the leader's ISR expansion completes the reassignment, and 1 (the
        // leader) leaves: the first target replica in sync leads, with a new epoch.
        let epoch = p.leader_epoch;
        let image = expand(&image, &[1, 2, 3]);
        let p = partition_of(&image);
        assert_eq!(p.replicas, vec![3, 2]);
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        assert_eq!(p.isr, vec![2, 3]);
        assert_eq!(p.leader, 3);
        assert_eq!(p.leader_epoch, epoch + 1);
        assert!(ongoing(&image, None).is_empty());
    }

    #[test]
    fn a_removal_of_a_follower_completes_at_once_with_a_new_leader_epoch() {
        let image = image_with(record(&[1, 2, 3], &[1, 2, 3], 1), &[]);
        let after = reassign(&image, Some(&[1, 2])).unwrap();
        let p = partition_of(&after);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![1, 2], vec![1, 2], 1)
        );
        assert_eq!(p.leader_epoch, 4);
        assert!(!in_progress(p));
        // A reordering alone is done at once too, with the same leader and epoch.
        let after = reassign(&image, Some(&[3, 2, 1])).unwrap();
        let p = partition_of(&after);
        assert_eq!(
            (p.replicas.clone(), p.leader, p.leader_epoch),
            (vec![3, 2, 1], 1, 3)
        );
        // The same target again changes nothing.
        assert_eq!(
            alter(&after, "t", 0, Some(&[3, 2, 1]), true, &config()),
            Ok(None)
        );
    }

    #[test]
    fn cancel_reverts_to_the_original_replicas() {
        let image = image_with(record(&[1, 2], &[1, 2], 1), &[]);
        let moving = reassign(&image, Some(&[3, 4])).unwrap();
        assert_eq!(partition_of(&moving).replicas, vec![3, 4, 1, 2]);
        // 3 caught up already: it leaves the ISR again on cancel.
        let moving = expand(&moving, &[1, 2, 3]);
        let reverted = reassign(&moving, None).unwrap();
        let p = partition_of(&reverted);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![1, 2], vec![1, 2], 1)
        );
        assert!(!in_progress(p));
        let no = reassign(&reverted, None).unwrap_err();
        assert_eq!(no.code, NO_REASSIGNMENT_IN_PROGRESS);
    }

    #[test]
    fn cancel_that_needs_an_unclean_election_only_when_allowed() {
        let mut p = record(&[3, 1], &[3], 3);
        p.adding_replicas = vec![3];
        p.removing_replicas = vec![1];
        let strict = image_with(p.clone(), &[]);
        let refused = alter(&strict, "t", 0, None, true, &config()).unwrap_err();
        assert_eq!(refused.code, codes::INVALID_REPLICA_ASSIGNMENT);
        let lax = image_with(p, &[("unclean.leader.election.enable", "true")]);
        let p = partition_of(&reassign(&lax, None).unwrap()).clone();
        assert_eq!((p.replicas, p.isr, p.leader), (vec![1], vec![1], 1));
    }

    #[test]
    fn targets_are_validated_as_kafka_does() {
        let image = image_with(record(&[1, 2], &[1, 2], 1), &[]);
        let code = |target: Option<&[i32]>, allow| {
            alter(&image, "t", 0, target, allow, &config())
                .map(|_| ())
                .map_err(|e| e.code)
        };
        assert_eq!(
            code(Some(&[]), true),
            Err(codes::INVALID_REPLICA_ASSIGNMENT)
        );
        assert_eq!(
            code(Some(&[1, 9]), true),
            Err(codes::INVALID_REPLICA_ASSIGNMENT)
        );
        assert_eq!(
            code(Some(&[1, 1]), true),
            Err(codes::INVALID_REPLICA_ASSIGNMENT)
        );
        assert_eq!(
            code(Some(&[1, 2, 3]), false),
            Err(codes::INVALID_REPLICATION_FACTOR)
        );
        assert_eq!(code(Some(&[3, 4]), false), Ok(()));
        assert_eq!(code(Some(&[1, 2, 3]), true), Ok(()));
        let unknown = |topic, index| alter(&image, topic, index, Some(&[1]), true, &config());
        assert_eq!(
            unknown("u", 0).unwrap_err().code,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(
            unknown("t", 5).unwrap_err().code,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
    }

    #[test]
    fn a_fenced_leader_being_removed_hands_over_within_the_targets() {
        let image = image_with(record(&[1, 2], &[1, 2], 1), &[]);
        let moving = reassign(&image, Some(&[2, 3])).unwrap();
        let mut image = moving.clone();
        image.brokers.insert(1, broker(1, true));
        let records = replication_control::brokers_leaving(&image, &[1], &config());
        let [crate::metadata::MetadataRecord::PartitionChange(change)] = records.as_slice() else {
            panic!("one change expected: {records:?}");
        };
        let p = partition_of(&applied(image.clone(), change)).clone();
        // 1 left the ISR; 3 is not in sync yet, so the reassignment is still open.
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert_eq!(p.adding_replicas, vec![3]);
        assert_ne!(p.leader, NO_LEADER);
    }

    #[test]
    fn list_filters_to_the_named_partitions() {
        let image = image_with(record(&[1, 2], &[1, 2], 1), &[]);
        let moving = reassign(&image, Some(&[3, 2])).unwrap();
        let named = |indexes: Vec<i32>| ongoing(&moving, Some(&[("t".to_string(), indexes)]));
        assert_eq!(named(vec![0])[0].1[0].removing, vec![1]);
        assert!(named(vec![1]).is_empty());
        assert!(ongoing(&moving, Some(&[("u".to_string(), vec![0])])).is_empty());
        assert!(ongoing(&image, None).is_empty());
    }
}
