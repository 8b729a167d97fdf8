//! Metadata records: the payload of the Raft log, and the pure function that folds them
//! into a [`MetadataImage`].
//!
//! Every replica applies the same committed entries in the same order, so applying must be
//! deterministic: everything that varies (topic ids, cluster id, producer id ranges) is
//! decided by the controller *before* the write and carried inside the record.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use std::collections::BTreeMap;

use super::partition_change::{self, PartitionChange};
use super::{BrokerRegistration, ConfigTarget, MetadataImage, PartitionRecord, TopicImage};
use crate::auth::scram::{ScramCredential, ScramMechanism};

/// One change to the cluster metadata.
///
/// The serialized form is the on-disk log format: variants and fields may be added, but
/// never renamed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// Sets the cluster id once; later ones are ignored so the id never changes.
    ClusterInit {
        cluster_id: String,
    },
    /// Adds or replaces a broker's registration.
    RegisterBroker(BrokerRegistration),
    /// Adds a topic with all its partitions.
    CreateTopic(TopicImage),
    DeleteTopic {
        topic_id: Uuid,
    },
    /// Appends partitions to an existing topic (CreatePartitions); they continue its
    /// numbering, so a topic's partitions stay 0..n-1.
    CreatePartitions {
        topic_id: Uuid,
        partitions: Vec<PartitionRecord>,
    },
    /// Hands `first_id..first_id + count` to `broker_id`.
    AllocateProducerIds {
        broker_id: i32,
        first_id: i64,
        count: i64,
    },
    /// The active controller fences the broker whose heartbeats stopped (only the
    /// registration with this epoch: a newer one is left alone).
    FenceBroker {
        node_id: i32,
        broker_epoch: i64,
    },
    /// A heartbeat of a fenced broker's current registration unfences it.
    UnfenceBroker {
        node_id: i32,
        broker_epoch: i64,
    },
    /// Replaces the whole config override set of `target` (AlterConfigs and
    /// IncrementalAlterConfigs both resolve to the new set before writing, so apply is a
    /// plain replace). An empty set removes every override.
    SetConfigs {
        target: ConfigTarget,
        configs: BTreeMap<String, String>,
    },
    /// A partition's leader, ISR or ELR changed (`partition_change.rs` decides it).
    PartitionChange(PartitionChange),
    /// Kafka's `UserScramCredentialRecord`: adds or replaces `name`'s credential for one
    /// mechanism (keys derived by the controller; the password is never written).
    UserScramCredential {
        name: String,
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        iterations: i32,
    },
    /// Kafka's `RemoveUserScramCredentialRecord`.
    RemoveUserScramCredential {
        name: String,
        mechanism: ScramMechanism,
    },
}

/// The application payload of one Raft log entry: records applied together, so a reader of
/// the image never sees half of a controller operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub records: Vec<MetadataRecord>,
}

/// What applying one log entry did: per record, whether it was accepted (`false`: ignored
/// by a defensive check, e.g. a topic name that already exists).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome {
    pub accepted: Vec<bool>,
}

/// Applies one log entry written by leader `leader_id` to `image`; returns the new image and
/// the per-record outcome. Pure: the input image is untouched.
///
/// The writer of an entry is the leader of its term, so every entry (including the blank
/// entry each new leader commits first) also moves `controller_id` to that leader.
pub fn apply_batch(
    image: &MetadataImage,
    leader_id: i32,
    records: &[MetadataRecord],
) -> (MetadataImage, BatchOutcome) {
    let mut next = image.clone();
    next.controller_id = leader_id;
    let accepted = records
        .iter()
        .map(|record| apply_record(&mut next, record))
        .collect();
    (next, BatchOutcome { accepted })
}

fn apply_record(image: &mut MetadataImage, record: &MetadataRecord) -> bool {
    match record {
        MetadataRecord::ClusterInit { cluster_id } => {
            if !image.cluster_id.is_empty() || cluster_id.is_empty() {
                return false;
            }
            image.cluster_id = cluster_id.clone();
            true
        }
        MetadataRecord::RegisterBroker(registration) => {
            if registration.node_id < 0 {
                return false;
            }
            image
                .brokers
                .insert(registration.node_id, registration.clone());
            true
        }
        MetadataRecord::CreateTopic(topic) => {
            if !is_well_formed(topic)
                || image.topics.contains_key(&topic.name)
                || image.topic_names_by_id.contains_key(&topic.topic_id)
            {
                return false;
            }
            image
                .topic_names_by_id
                .insert(topic.topic_id, topic.name.clone());
            image
                .topics
                .insert(topic.name.clone(), Arc::new(topic.clone()));
            true
        }
        MetadataRecord::DeleteTopic { topic_id } => {
            let Some(name) = image.topic_names_by_id.remove(topic_id) else {
                return false;
            };
            image.topics.remove(&name);
            true
        }
        MetadataRecord::CreatePartitions {
            topic_id,
            partitions,
        } => {
            let Some(topic) = image
                .topic_names_by_id
                .get(topic_id)
                .and_then(|name| image.topics.get_mut(name))
            else {
                return false;
            };
            let first = topic.partitions.len();
            let continues = partitions.iter().enumerate().all(|(i, p)| {
                usize::try_from(p.partition) == Ok(first + i) && !p.replicas.is_empty()
            });
            if partitions.is_empty() || !continues {
                return false;
            }
            Arc::make_mut(topic)
                .partitions
                .extend(partitions.iter().cloned());
            true
        }
        MetadataRecord::FenceBroker {
            node_id,
            broker_epoch,
        } => set_fenced(image, *node_id, *broker_epoch, true),
        MetadataRecord::UnfenceBroker {
            node_id,
            broker_epoch,
        } => set_fenced(image, *node_id, *broker_epoch, false),
        MetadataRecord::AllocateProducerIds {
            first_id, count, ..
        } => {
            // Only the exact next range is accepted: anything else would hand out ids twice
            // or leave the counter somewhere the controller did not plan.
            if *first_id != image.next_producer_id || *count <= 0 {
                return false;
            }
            match first_id.checked_add(*count) {
                Some(next) => {
                    image.next_producer_id = next;
                    true
                }
                None => false,
            }
        }
        MetadataRecord::SetConfigs { target, configs } => match target {
            ConfigTarget::Topic { topic_id } => {
                let Some(topic) = image
                    .topic_names_by_id
                    .get(topic_id)
                    .and_then(|name| image.topics.get_mut(name))
                else {
                    return false;
                };
                Arc::make_mut(topic).configs = configs.clone();
                true
            }
            ConfigTarget::BrokerDefault => {
                image.default_broker_configs = configs.clone();
                true
            }
            ConfigTarget::Broker { node_id } => {
                if *node_id < 0 {
                    return false;
                }
                if configs.is_empty() {
                    image.broker_configs.remove(node_id);
                } else {
                    image.broker_configs.insert(*node_id, configs.clone());
                }
                true
            }
        },
        MetadataRecord::PartitionChange(change) => {
            let Some(topic) = image
                .topic_names_by_id
                .get(&change.topic_id)
                .and_then(|name| image.topics.get_mut(name))
            else {
                return false;
            };
            let Some(index) = usize::try_from(change.partition)
                .ok()
                .filter(|&i| i < topic.partitions.len())
            else {
                return false;
            };
            let mut partition = topic.partitions[index].clone();
            if !partition_change::apply(&mut partition, change) {
                return false;
            }
            Arc::make_mut(topic).partitions[index] = partition;
            true
        }
        MetadataRecord::UserScramCredential {
            name,
            mechanism,
            salt,
            stored_key,
            server_key,
            iterations,
        } => {
            // Keys of another length could never verify a proof.
            let len = mechanism.hash_len();
            if name.is_empty() || stored_key.len() != len || server_key.len() != len {
                return false;
            }
            image
                .scram_credentials
                .entry(name.clone())
                .or_default()
                .insert(
                    *mechanism,
                    ScramCredential {
                        salt: salt.clone(),
                        stored_key: stored_key.clone(),
                        server_key: server_key.clone(),
                        iterations: *iterations,
                    },
                );
            true
        }
        MetadataRecord::RemoveUserScramCredential { name, mechanism } => {
            let Some(credentials) = image.scram_credentials.get_mut(name) else {
                return false;
            };
            if credentials.remove(mechanism).is_none() {
                return false;
            }
            if credentials.is_empty() {
                image.scram_credentials.remove(name);
            }
            true
        }
    }
}

fn set_fenced(image: &mut MetadataImage, node_id: i32, broker_epoch: i64, fenced: bool) -> bool {
    match image.brokers.get_mut(&node_id) {
        Some(broker) if broker.broker_epoch == broker_epoch => {
            broker.fenced = fenced;
            true
        }
        _ => false,
    }
}

/// A topic the image can hold: a real id, a name, and partitions numbered 0..n-1 in order
/// (readers index `partitions` by partition number).
fn is_well_formed(topic: &TopicImage) -> bool {
    !topic.topic_id.is_nil()
        && !topic.name.is_empty()
        && !topic.partitions.is_empty()
        && topic
            .partitions
            .iter()
            .enumerate()
            .all(|(i, p)| usize::try_from(p.partition) == Ok(i) && !p.replicas.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: i32) -> TopicImage {
        TopicImage {
            name: name.to_string(),
            topic_id: Uuid::new_v4(),
            partitions: (0..partitions)
                .map(|p| PartitionRecord {
                    partition: p,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    elr: Vec::new(),
                    last_known_elr: Vec::new(),
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                })
                .collect(),
            configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        }
    }

    fn broker(id: i32, port: i32) -> BrokerRegistration {
        BrokerRegistration {
            node_id: id,
            host: "localhost".to_string(),
            port,
            rack: None,
            broker_epoch: i64::from(port),
            incarnation_id: Uuid::new_v4(),
            listeners: vec![],
            fenced: false,
        }
    }

    #[test]
    fn fencing_follows_the_current_registration_only() {
        let (image, _) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::RegisterBroker(broker(2, 9092))],
        );
        let fence = |epoch| MetadataRecord::FenceBroker {
            node_id: 2,
            broker_epoch: epoch,
        };
        let (image, out) = apply_batch(&image, 1, &[fence(1), fence(9092)]);
        assert_eq!(out.accepted, vec![false, true]);
        assert!(image.brokers[&2].fenced);
        // A new registration (restart) replaces the fenced one, unfenced.
        let (image, _) = apply_batch(
            &image,
            1,
            &[MetadataRecord::RegisterBroker(broker(2, 9093))],
        );
        assert!(!image.brokers[&2].fenced);
        let (image, out) = apply_batch(&image, 1, &[fence(9092)]);
        assert_eq!(out.accepted, vec![false]);
        assert!(!image.brokers[&2].fenced);
        let (image, out) = apply_batch(
            &image,
            1,
            &[
                fence(9093),
                MetadataRecord::UnfenceBroker {
                    node_id: 2,
                    broker_epoch: 9093,
                },
                MetadataRecord::UnfenceBroker {
                    node_id: 7,
                    broker_epoch: 9093,
                },
            ],
        );
        assert_eq!(out.accepted, vec![true, true, false]);
        assert!(!image.brokers[&2].fenced);
    }

    #[test]
    fn cluster_init_only_once() {
        let image = MetadataImage::default();
        let (image, out) = apply_batch(
            &image,
            1,
            &[
                MetadataRecord::ClusterInit {
                    cluster_id: "first".into(),
                },
                MetadataRecord::ClusterInit {
                    cluster_id: "second".into(),
                },
            ],
        );
        assert_eq!(image.cluster_id, "first");
        assert_eq!(out.accepted, vec![true, false]);
        assert_eq!(image.controller_id, 1);
    }

    #[test]
    fn register_broker_inserts_and_replaces() {
        let (image, _) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::RegisterBroker(broker(1, 9092))],
        );
        assert_eq!(image.brokers[&1].port, 9092);
        let (image, out) = apply_batch(
            &image,
            1,
            &[
                MetadataRecord::RegisterBroker(broker(1, 9093)),
                MetadataRecord::RegisterBroker(broker(-1, 9093)),
            ],
        );
        assert_eq!(out.accepted, vec![true, false]);
        assert_eq!(image.brokers.len(), 1);
        assert_eq!(image.brokers[&1].port, 9093);
    }

    #[test]
    fn create_and_delete_topic() {
        let t = topic("orders", 3);
        let (image, out) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::CreateTopic(t.clone())],
        );
        assert_eq!(out.accepted, vec![true]);
        assert_eq!(*image.topics["orders"], t);
        assert_eq!(image.topic_names_by_id[&t.topic_id], "orders");

        let (after, out) = apply_batch(
            &image,
            1,
            &[MetadataRecord::DeleteTopic {
                topic_id: t.topic_id,
            }],
        );
        assert_eq!(out.accepted, vec![true]);
        assert!(after.topics.is_empty());
        assert!(after.topic_names_by_id.is_empty());
        // Pure: the input image still has the topic.
        assert!(image.topics.contains_key("orders"));
    }

    #[test]
    fn create_topic_is_defensive() {
        let t = topic("orders", 1);
        let (image, _) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::CreateTopic(t.clone())],
        );
        let same_name = topic("orders", 2);
        let mut same_id = topic("payments", 1);
        same_id.topic_id = t.topic_id;
        let mut nil_id = topic("nil", 1);
        nil_id.topic_id = Uuid::nil();
        let mut gap = topic("gap", 2);
        gap.partitions[1].partition = 5;
        let no_partitions = topic("empty", 0);
        let (after, out) = apply_batch(
            &image,
            1,
            &[
                MetadataRecord::CreateTopic(same_name),
                MetadataRecord::CreateTopic(same_id),
                MetadataRecord::CreateTopic(nil_id),
                MetadataRecord::CreateTopic(gap),
                MetadataRecord::CreateTopic(no_partitions),
            ],
        );
        assert_eq!(out.accepted, vec![false; 5]);
        assert_eq!(after.topics, image.topics);
        assert_eq!(after.topic_names_by_id, image.topic_names_by_id);
    }

    fn partitions(range: std::ops::Range<i32>) -> Vec<PartitionRecord> {
        topic("x", range.end).partitions[range.start as usize..].to_vec()
    }

    #[test]
    fn create_partitions_appends_in_order() {
        let t = topic("orders", 1);
        let (image, _) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::CreateTopic(t.clone())],
        );
        let grow = |partitions| MetadataRecord::CreatePartitions {
            topic_id: t.topic_id,
            partitions,
        };
        let (grown, out) = apply_batch(&image, 1, &[grow(partitions(1..3))]);
        assert_eq!(out.accepted, vec![true]);
        let numbers: Vec<i32> = grown.topics["orders"]
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect();
        assert_eq!(numbers, vec![0, 1, 2]);
        assert_eq!(grown.topics["orders"].configs, t.configs);
        // Pure: the input image keeps one partition.
        assert_eq!(image.topics["orders"].partitions.len(), 1);

        let mut no_replicas = partitions(3..4);
        no_replicas[0].replicas.clear();
        let (after, out) = apply_batch(
            &grown,
            1,
            &[
                grow(partitions(1..2)), // already there
                grow(partitions(4..5)), // leaves a gap
                grow(vec![]),           // nothing to add
                grow(no_replicas),
                MetadataRecord::CreatePartitions {
                    topic_id: Uuid::new_v4(), // unknown topic
                    partitions: partitions(3..4),
                },
            ],
        );
        assert_eq!(out.accepted, vec![false; 5]);
        assert_eq!(after.topics, grown.topics);
    }

    #[test]
    fn delete_unknown_topic_is_ignored() {
        let (after, out) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::DeleteTopic {
                topic_id: Uuid::new_v4(),
            }],
        );
        assert_eq!(out.accepted, vec![false]);
        assert!(after.topics.is_empty());
    }

    #[test]
    fn producer_ids_only_advance_by_the_planned_range() {
        let alloc = |first_id, count| MetadataRecord::AllocateProducerIds {
            broker_id: 1,
            first_id,
            count,
        };
        let (image, out) = apply_batch(
            &MetadataImage::default(),
            1,
            &[alloc(0, 1000), alloc(1000, 5)],
        );
        assert_eq!(out.accepted, vec![true, true]);
        assert_eq!(image.next_producer_id, 1005);
        let (after, out) = apply_batch(
            &image,
            1,
            &[
                alloc(0, 10),          // already handed out
                alloc(2000, 10),       // would leave a gap the controller did not plan
                alloc(1005, 0),        // empty range
                alloc(1005, -3),       // negative range
                alloc(1005, i64::MAX), // overflow
            ],
        );
        assert_eq!(out.accepted, vec![false; 5]);
        assert_eq!(after.next_producer_id, 1005);
    }

    #[test]
    fn set_configs_replaces_the_whole_override_set() {
        let t = topic("orders", 1);
        let (image, _) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::CreateTopic(t.clone())],
        );
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let set = |target, configs| MetadataRecord::SetConfigs { target, configs };
        let (after, out) = apply_batch(
            &image,
            1,
            &[
                set(
                    ConfigTarget::Topic {
                        topic_id: t.topic_id,
                    },
                    map(&[("retention.ms", "1000")]),
                ),
                set(
                    ConfigTarget::BrokerDefault,
                    map(&[("log.retention.ms", "5")]),
                ),
                set(
                    ConfigTarget::Broker { node_id: 1 },
                    map(&[("message.max.bytes", "77")]),
                ),
                set(
                    ConfigTarget::Topic {
                        topic_id: Uuid::new_v4(),
                    },
                    map(&[("retention.ms", "1")]),
                ),
                set(ConfigTarget::Broker { node_id: -1 }, map(&[])),
            ],
        );
        assert_eq!(out.accepted, vec![true, true, true, false, false]);
        // Replaced, not merged: cleanup.policy=compact from creation is gone.
        assert_eq!(
            after.topics["orders"].configs,
            map(&[("retention.ms", "1000")])
        );
        assert_eq!(
            after.dynamic_broker_configs(1),
            (
                &map(&[("log.retention.ms", "5")]),
                &map(&[("message.max.bytes", "77")])
            )
        );
        assert!(after.dynamic_broker_configs(2).1.is_empty());
        // Pure: the input image keeps its configs.
        assert_eq!(image.topics["orders"].configs, t.configs);

        // An empty set removes the overrides (and the broker's entry).
        let (cleared, out) = apply_batch(
            &after,
            1,
            &[
                set(
                    ConfigTarget::Topic {
                        topic_id: t.topic_id,
                    },
                    map(&[]),
                ),
                set(ConfigTarget::Broker { node_id: 1 }, map(&[])),
            ],
        );
        assert_eq!(out.accepted, vec![true, true]);
        assert!(cleared.topics["orders"].configs.is_empty());
        assert!(cleared.broker_configs.is_empty());
        assert_eq!(cleared.default_broker_configs, after.default_broker_configs);
    }

    #[test]
    fn partition_change_moves_leader_and_epochs() {
        let mut t = topic("orders", 2);
        t.partitions[1].replicas = vec![1, 2, 3];
        t.partitions[1].isr = vec![1, 2, 3];
        let (image, _) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::CreateTopic(t.clone())],
        );
        let change = |partition, leader, isr: Option<Vec<i32>>| {
            MetadataRecord::PartitionChange(PartitionChange {
                topic_id: t.topic_id,
                partition,
                leader,
                isr,
                elr: None,
                last_known_elr: None,
                replicas: None,
                adding_replicas: None,
                removing_replicas: None,
            })
        };
        let (after, out) = apply_batch(
            &image,
            1,
            &[
                change(1, Some(2), Some(vec![2, 3])),
                change(1, None, Some(vec![2])),
                change(2, Some(1), None),        // no such partition
                change(1, Some(4), None),        // not a replica
                change(-1, None, Some(vec![1])), // negative index
            ],
        );
        assert_eq!(out.accepted, vec![true, true, false, false, false]);
        let p = &after.topics["orders"].partitions[1];
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert_eq!((p.leader_epoch, p.partition_epoch), (1, 2));
        assert_eq!(after.topics["orders"].partitions[0], t.partitions[0]);
        // Pure: the input image is untouched.
        assert_eq!(image.topics["orders"].partitions[1], t.partitions[1]);
    }

    #[test]
    fn partition_records_without_elr_still_decode() {
        let mut json = serde_json::to_value(topic("t", 1).partitions[0].clone()).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("elr");
        object.remove("last_known_elr");
        let p: PartitionRecord = serde_json::from_value(json).unwrap();
        assert!(p.elr.is_empty() && p.last_known_elr.is_empty());
    }

    #[test]
    fn images_without_broker_configs_still_decode() {
        let mut json = serde_json::to_value(MetadataImage::default()).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("default_broker_configs");
        object.remove("broker_configs");
        let image: MetadataImage = serde_json::from_value(json).unwrap();
        assert!(image.broker_configs.is_empty());
    }

    #[test]
    fn blank_batch_moves_controller_only() {
        let (image, _) = apply_batch(
            &MetadataImage::default(),
            1,
            &[MetadataRecord::ClusterInit {
                cluster_id: "c".into(),
            }],
        );
        let (after, out) = apply_batch(&image, 7, &[]);
        assert!(out.accepted.is_empty());
        assert_eq!(after.controller_id, 7);
        assert_eq!(after.cluster_id, "c");
    }

    #[test]
    fn batches_round_trip_through_json() {
        let batch = RecordBatch {
            records: vec![
                MetadataRecord::ClusterInit {
                    cluster_id: "abc".into(),
                },
                MetadataRecord::RegisterBroker(broker(1, 9092)),
                MetadataRecord::CreateTopic(topic("t", 2)),
                MetadataRecord::DeleteTopic {
                    topic_id: Uuid::new_v4(),
                },
                MetadataRecord::CreatePartitions {
                    topic_id: Uuid::new_v4(),
                    partitions: topic("t", 3).partitions[2..].to_vec(),
                },
                MetadataRecord::AllocateProducerIds {
                    broker_id: 1,
                    first_id: 0,
                    count: 10,
                },
                MetadataRecord::SetConfigs {
                    target: ConfigTarget::Broker { node_id: 1 },
                    configs: BTreeMap::from([("log.retention.ms".into(), "1".into())]),
                },
                MetadataRecord::PartitionChange(PartitionChange {
                    topic_id: Uuid::new_v4(),
                    partition: 0,
                    leader: Some(-1),
                    isr: Some(vec![]),
                    elr: Some(vec![2]),
                    last_known_elr: None,
                    replicas: None,
                    adding_replicas: None,
                    removing_replicas: None,
                }),
            ],
        };
        let bytes = serde_json::to_vec(&batch).unwrap();
        assert_eq!(
            serde_json::from_slice::<RecordBatch>(&bytes).unwrap(),
            batch
        );
    }
}
