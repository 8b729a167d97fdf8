//! Leader elections asked for by an admin (ElectLeaders, Kafka's
//! `ReplicationControlManager.electLeaders`) and the active controller's own leader
//! balancing (`maybeBalancePartitionLeaders`): which partitions get a new leader and
//! what each requested partition is answered. Pure: image in, [`PartitionChange`]
//! records and results out; the quorum writes the records.
//!
//! A partition is balanced when its preferred replica (the first of its assignment)
//! leads. A preferred election moves leadership there when that replica is in the ISR
//! (or, with an empty ISR, eligible, KIP-966) and active; an unclean one gives a
//! leaderless partition a leader, from the in-sync or eligible replicas first, else any
//! live replica (it may lack acknowledged records).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use super::partition_change::{self, ChangeContext, PartitionChange};
use super::replication_control::{is_active, topic_settings};
use super::{MetadataImage, MetadataRecord, PartitionRecord, TopicImage};
use crate::config::BrokerConfig;

/// Kafka's error codes of an election result.
pub mod codes {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
}

/// Kafka's `MAX_ELECTIONS_PER_IMBALANCE`: partitions one balancing round may move; a
/// round that reaches it is followed by the next at once.
pub const MAX_ELECTIONS_PER_BALANCE: usize = 1_000;

/// ElectLeaders' `ElectionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// 0: the preferred replica leads again.
    Preferred,
    /// 1: a leaderless partition gets any live replica as leader.
    Unclean,
}

impl ElectionType {
    pub fn from_wire(value: i8) -> Option<ElectionType> {
        match value {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// One partition's answer: Kafka's error code (0 when a new leader was elected) and
/// message (null, as Kafka's, except for unknown topics and partitions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionElection {
    pub partition: i32,
    pub code: i16,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicElections {
    pub topic: String,
    pub partitions: Vec<PartitionElection>,
}

/// Kafka's `hasPreferredLeader`: the first replica leads (a leaderless partition is
/// imbalanced).
fn has_preferred_leader(partition: &PartitionRecord) -> bool {
    partition.replicas.first() == Some(&partition.leader)
}

/// Plans an ElectLeaders request: `topics` None means every partition of every topic,
/// and then (as Kafka) the partitions whose election was not needed are left out of the
/// answer. A partition named twice is planned against its state after the first
/// election, so it is changed once.
pub(super) fn elect_leaders(
    image: &MetadataImage,
    election: ElectionType,
    topics: Option<&[(String, Vec<i32>)]>,
    config: &BrokerConfig,
) -> (Vec<MetadataRecord>, Vec<TopicElections>) {
    let mut elected: HashMap<(Uuid, i32), PartitionRecord> = HashMap::new();
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut elect = |topic: &str, partition: i32, records: &mut Vec<MetadataRecord>| {
        let (code, message, change) =
            elect_one(image, topic, partition, election, config, &elected);
        if let Some((mut after, change)) = change {
            partition_change::apply(&mut after, &change);
            elected.insert((change.topic_id, partition), after);
            records.push(MetadataRecord::PartitionChange(change));
        }
        PartitionElection {
            partition,
            code,
            message,
        }
    };
    match topics {
        None => {
            for topic in image.topics.values() {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| elect(&topic.name, p.partition, &mut records))
                    .filter(|r| r.code != codes::ELECTION_NOT_NEEDED)
                    .collect();
                results.push(TopicElections {
                    topic: topic.name.clone(),
                    partitions,
                });
            }
        }
        Some(topics) => {
            for (topic, partitions) in topics {
                let partitions = partitions
                    .iter()
                    .map(|&p| elect(topic, p, &mut records))
                    .collect();
                results.push(TopicElections {
                    topic: topic.clone(),
                    partitions,
                });
            }
        }
    }
    (records, results)
}

type Planned = (
    i16,
    Option<String>,
    Option<(PartitionRecord, PartitionChange)>,
);

/// Kafka's `electLeader` for one partition: its answer and, on success, the partition
/// as planned so far and its change.
fn elect_one(
    image: &MetadataImage,
    topic_name: &str,
    index: i32,
    election: ElectionType,
    config: &BrokerConfig,
    elected: &HashMap<(Uuid, i32), PartitionRecord>,
) -> Planned {
    let Some(topic) = image.topics.get(topic_name) else {
        return (
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            Some(format!("No such topic as {topic_name}")),
            None,
        );
    };
    let Some(partition) = elected
        .get(&(topic.topic_id, index))
        .or_else(|| topic.partitions.iter().find(|p| p.partition == index))
    else {
        return (
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            Some(format!("No such partition as {topic_name}-{index}")),
            None,
        );
    };
    let not_needed = match election {
        ElectionType::Preferred => has_preferred_leader(partition),
        ElectionType::Unclean => partition.leader != partition_change::NO_LEADER,
    };
    if not_needed {
        return (codes::ELECTION_NOT_NEEDED, None, None);
    }
    let change = with_context(image, topic, config, |ctx| match election {
        ElectionType::Preferred => {
            partition_change::elect_preferred(topic.topic_id, partition, ctx)
        }
        ElectionType::Unclean => partition_change::elect_unclean(topic.topic_id, partition, ctx),
    });
    match change {
        Some(change) => (0, None, Some((partition.clone(), change))),
        None if election == ElectionType::Preferred => {
            (codes::PREFERRED_LEADER_NOT_AVAILABLE, None, None)
        }
        None => (codes::ELIGIBLE_LEADERS_NOT_AVAILABLE, None, None),
    }
}

fn with_context<T>(
    image: &MetadataImage,
    topic: &TopicImage,
    config: &BrokerConfig,
    decide: impl FnOnce(&ChangeContext<'_>) -> T,
) -> T {
    let (min_insync_replicas, unclean_leader_election) = topic_settings(image, topic, config);
    let none = BTreeSet::new();
    let active = |broker: i32| is_active(image, &none, broker);
    decide(&ChangeContext {
        is_active: &active,
        min_insync_replicas,
        unclean_leader_election,
    })
}

/// Whether some partition is not led by its preferred replica.
pub(super) fn imbalanced(image: &MetadataImage) -> bool {
    image
        .topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .any(|p| !has_preferred_leader(p))
}

/// One balancing round: a preferred election for each imbalanced partition whose
/// preferred replica can lead, at most `max` of them. The second value says the bound
/// was reached (more may be waiting).
pub(super) fn balance_leaders(
    image: &MetadataImage,
    config: &BrokerConfig,
    max: usize,
) -> (Vec<MetadataRecord>, bool) {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for partition in topic.partitions.iter().filter(|p| !has_preferred_leader(p)) {
            if records.len() >= max {
                return (records, true);
            }
            let change = with_context(image, topic, config, |ctx| {
                partition_change::elect_preferred(topic.topic_id, partition, ctx)
            });
            records.extend(change.map(MetadataRecord::PartitionChange));
        }
    }
    let more = records.len() >= max;
    (records, more)
}

/// When the active controller next balances leaders (Kafka's
/// `maybeScheduleNextBalancePartitionLeaders`): with `auto.leader.rebalance.enable`, a
/// round is due `leader.imbalance.check.interval.seconds` after an imbalance is seen,
/// and again that long after each round while it lasts (at once after a round that hit
/// its bound). A controller that loses leadership forgets the schedule.
#[derive(Debug)]
pub(super) struct BalanceSchedule {
    /// None: auto rebalance is off.
    interval: Option<Duration>,
    due: Option<Instant>,
}

impl BalanceSchedule {
    pub(super) fn new(config: &BrokerConfig) -> Self {
        BalanceSchedule {
            interval: config
                .auto_leader_rebalance_enable
                .then(|| Duration::from_secs(config.leader_imbalance_check_interval_seconds)),
            due: None,
        }
    }

    /// Called on each of the controller's ticks with whether some partition is not led
    /// by its preferred replica (asked only when auto rebalance is on): true when a round
    /// should run now.
    pub(super) fn poll(&mut self, now: Instant, imbalanced: impl FnOnce() -> bool) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        if !imbalanced() {
            self.due = None;
            return false;
        }
        match self.due {
            None => {
                self.due = Some(now + interval);
                false
            }
            Some(due) => now >= due,
        }
    }

    /// A round ran; `more` when it stopped at its bound.
    pub(super) fn ran(&mut self, now: Instant, more: bool) {
        self.due = more.then_some(now);
    }

    /// This node no longer leads the quorum.
    pub(super) fn reset(&mut self) {
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::metadata::apply_batch;
    use crate::metadata::test_support::{broker, partition_record};

    const T: Uuid = Uuid::from_u128(7);

    /// Brokers 1-3 (those in `fenced` fenced) and topic "t" with `partitions`.
    fn image(fenced: &[i32], partitions: Vec<PartitionRecord>) -> MetadataImage {
        MetadataImage {
            cluster_id: "c".to_string(),
            controller_id: 1,
            brokers: (1..=3)
                .map(|id| (id, broker(id, fenced.contains(&id))))
                .collect(),
            topics: BTreeMap::from([(
                "t".to_string(),
                Arc::new(TopicImage {
                    name: "t".to_string(),
                    topic_id: T,
                    partitions,
                    configs: BTreeMap::new(),
                }),
            )]),
            topic_names_by_id: BTreeMap::from([(T, "t".to_string())]),
            ..Default::default()
        }
    }

    fn config() -> BrokerConfig {
        BrokerConfig::load(None, Vec::new(), &[]).unwrap()
    }

    fn named(topic: &str, partitions: &[i32]) -> Vec<(String, Vec<i32>)> {
        vec![(topic.to_string(), partitions.to_vec())]
    }

    fn codes_of(results: &[TopicElections]) -> Vec<(String, i32, i16)> {
        results
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.clone(), p.partition, p.code))
            })
            .collect()
    }

    fn leader_after(image: &MetadataImage, records: &[MetadataRecord], index: i32) -> i32 {
        let (after, outcome) = apply_batch(image, 1, records);
        assert!(outcome.accepted.iter().all(|&a| a));
        after.topics["t"].partitions[index as usize].leader
    }

    #[test]
    fn preferred_election_answers_as_kafka_per_partition() {
        let img = image(
            &[3],
            vec![
                // Led by its preferred replica.
                partition_record(0, &[1, 2, 3], &[1, 2, 3], 1),
                // 2 leads, 1 (preferred) is back in sync: elected.
                partition_record(1, &[1, 2, 3], &[2, 1], 2),
                // 1 is not in sync yet.
                partition_record(2, &[1, 2, 3], &[2, 3], 2),
                // 3 is in sync but fenced.
                partition_record(3, &[3, 1, 2], &[1, 3], 1),
            ],
        );
        let request = named("t", &[0, 1, 2, 3, 9]);
        let (records, results) =
            elect_leaders(&img, ElectionType::Preferred, Some(&request), &config());
        assert_eq!(
            codes_of(&results),
            vec![
                ("t".to_string(), 0, codes::ELECTION_NOT_NEEDED),
                ("t".to_string(), 1, 0),
                ("t".to_string(), 2, codes::PREFERRED_LEADER_NOT_AVAILABLE),
                ("t".to_string(), 3, codes::PREFERRED_LEADER_NOT_AVAILABLE),
                ("t".to_string(), 9, codes::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        assert_eq!(
            results[0].partitions[4].message.as_deref(),
            Some("No such partition as t-9")
        );
        assert_eq!(results[0].partitions[0].message, None);
        assert_eq!(records.len(), 1);
        assert_eq!(leader_after(&img, &records, 1), 1);

        let (records, results) = elect_leaders(
            &img,
            ElectionType::Preferred,
            Some(&named("missing", &[0])),
            &config(),
        );
        assert!(records.is_empty());
        assert_eq!(
            results[0].partitions[0],
            PartitionElection {
                partition: 0,
                code: codes::UNKNOWN_TOPIC_OR_PARTITION,
                message: Some("No such topic as missing".to_string()),
            }
        );
    }

    #[test]
    fn all_partitions_leaves_out_those_not_needing_an_election() {
        let img = image(
            &[],
            vec![
                partition_record(0, &[1, 2, 3], &[1, 2, 3], 1),
                partition_record(1, &[2, 3, 1], &[3, 2], 3),
                partition_record(2, &[3, 1, 2], &[1, 2], 1),
            ],
        );
        let (records, results) = elect_leaders(&img, ElectionType::Preferred, None, &config());
        assert_eq!(
            codes_of(&results),
            vec![
                ("t".to_string(), 1, 0),
                ("t".to_string(), 2, codes::PREFERRED_LEADER_NOT_AVAILABLE),
            ]
        );
        assert_eq!(leader_after(&img, &records, 1), 2);
        // Once balanced, every topic is still listed, with no partitions.
        let balanced = image(&[], vec![partition_record(0, &[1, 2, 3], &[1, 2, 3], 1)]);
        let (records, results) = elect_leaders(&balanced, ElectionType::Preferred, None, &config());
        assert!(records.is_empty());
        assert_eq!(
            results,
            vec![TopicElections {
                topic: "t".to_string(),
                partitions: vec![],
            }]
        );
    }

    #[test]
    fn a_partition_named_twice_is_elected_once() {
        let img = image(&[], vec![partition_record(0, &[1, 2, 3], &[2, 1], 2)]);
        let request = named("t", &[0, 0]);
        let (records, results) =
            elect_leaders(&img, ElectionType::Preferred, Some(&request), &config());
        assert_eq!(records.len(), 1);
        assert_eq!(
            codes_of(&results),
            vec![
                ("t".to_string(), 0, 0),
                ("t".to_string(), 0, codes::ELECTION_NOT_NEEDED),
            ]
        );
    }

    #[test]
    fn unclean_election_picks_any_live_replica_for_a_leaderless_partition() {
        // 1 (the only in-sync replica and leader) is fenced: offline.
        let mut offline = partition_record(0, &[1, 2, 3], &[], partition_change::NO_LEADER);
        offline.last_known_elr = vec![1];
        let img = image(
            &[1],
            vec![
                offline,
                partition_record(1, &[1, 2, 3], &[2], 2),
                partition_record(2, &[1, 3], &[], partition_change::NO_LEADER),
            ],
        );
        // Only 1 may lead partition 2: it is fenced, and 3 is too.
        let img = MetadataImage {
            brokers: BTreeMap::from([
                (1, broker(1, true)),
                (2, broker(2, false)),
                (3, broker(3, true)),
            ]),
            ..img
        };
        let request = named("t", &[0, 1, 2]);
        let (records, results) =
            elect_leaders(&img, ElectionType::Unclean, Some(&request), &config());
        assert_eq!(
            codes_of(&results),
            vec![
                ("t".to_string(), 0, 0),
                ("t".to_string(), 1, codes::ELECTION_NOT_NEEDED),
                ("t".to_string(), 2, codes::ELIGIBLE_LEADERS_NOT_AVAILABLE),
            ]
        );
        let MetadataRecord::PartitionChange(change) = &records[0] else {
            panic!("not a partition change: {records:?}");
        };
        // Data loss is accepted: the new leader alone is in sync.
        assert_eq!(
            (change.leader, change.isr.clone()),
            (Some(2), Some(vec![2]))
        );
        // A preferred election does not elect out-of-sync replicas.
        let (records, results) =
            elect_leaders(&img, ElectionType::Preferred, Some(&request), &config());
        assert!(records.is_empty());
        assert_eq!(
            results[0].partitions[0].code,
            codes::PREFERRED_LEADER_NOT_AVAILABLE
        );
    }

    #[test]
    fn balancing_moves_every_movable_partition_back_within_the_bound() {
        let img = image(
            &[],
            vec![
                partition_record(0, &[1, 2, 3], &[1, 2, 3], 1),
                partition_record(1, &[1, 2, 3], &[2, 3, 1], 2),
                partition_record(2, &[2, 3, 1], &[3, 2], 3),
                partition_record(3, &[3, 1, 2], &[1, 2], 1),
                partition_record(4, &[3, 1, 2], &[], partition_change::NO_LEADER),
            ],
        );
        assert!(imbalanced(&img));
        let (records, more) = balance_leaders(&img, &config(), MAX_ELECTIONS_PER_BALANCE);
        assert!(!more);
        assert_eq!(records.len(), 2);
        let (after, _) = apply_batch(&img, 1, &records);
        let leaders: Vec<i32> = after.topics["t"]
            .partitions
            .iter()
            .map(|p| p.leader)
            .collect();
        // 3 is not in sync for partition 3; partition 4 has nobody to elect.
        assert_eq!(leaders, vec![1, 1, 2, 1, partition_change::NO_LEADER]);
        let (records, more) = balance_leaders(&img, &config(), 1);
        assert_eq!((records.len(), more), (1, true));
        let balanced = image(&[], vec![partition_record(0, &[1, 2, 3], &[1, 2, 3], 1)]);
        assert!(!imbalanced(&balanced));
        assert!(balance_leaders(&balanced, &config(), 10).0.is_empty());
    }

    fn schedule(overrides: &[&str]) -> BalanceSchedule {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        BalanceSchedule::new(&BrokerConfig::load(None, Vec::new(), &overrides).unwrap())
    }

    #[test]
    fn a_round_is_due_one_interval_after_an_imbalance_is_seen_and_after_each_round() {
        let mut s = schedule(&["leader.imbalance.check.interval.seconds=2"]);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert!(!s.poll(at(0), || false));
        assert!(!s.poll(at(1), || true));
        assert!(!s.poll(at(2), || true));
        assert!(s.poll(at(3), || true));
        s.ran(at(3), false);
        // Still imbalanced (the preferred replica not in sync yet): another interval.
        assert!(!s.poll(at(3), || true));
        assert!(!s.poll(at(4), || true));
        assert!(s.poll(at(5), || true));
        // A round that hit its bound: the next one at once.
        s.ran(at(5), true);
        assert!(s.poll(at(5), || true));
        // Balanced meanwhile: the schedule starts over.
        assert!(!s.poll(at(6), || false));
        assert!(!s.poll(at(7), || true));
        assert!(s.poll(at(9), || true));
        s.reset();
        assert!(!s.poll(at(9), || true));
    }

    #[test]
    fn no_rounds_with_auto_rebalance_off() {
        let mut s = schedule(&[
            "auto.leader.rebalance.enable=false",
            "leader.imbalance.check.interval.seconds=1",
        ]);
        let t0 = Instant::now();
        for secs in 0..10 {
            assert!(!s.poll(t0 + Duration::from_secs(secs), || true));
        }
    }

    #[test]
    fn config_defaults_and_bounds_are_kafkas() {
        let c = config();
        assert!(c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_seconds, 300);
        for bad in ["0", "-1", "x"] {
            let key = format!("leader.imbalance.check.interval.seconds={bad}");
            assert!(BrokerConfig::load(None, Vec::new(), &[key]).is_err());
        }
        assert!(BrokerConfig::load(
            None,
            Vec::new(),
            &["auto.leader.rebalance.enable=maybe".to_string()]
        )
        .is_err());
    }

    #[test]
    fn election_types_on_the_wire() {
        assert_eq!(ElectionType::from_wire(0), Some(ElectionType::Preferred));
        assert_eq!(ElectionType::from_wire(1), Some(ElectionType::Unclean));
        assert_eq!(ElectionType::from_wire(2), None);
        assert_eq!(ElectionType::from_wire(-1), None);
    }
}
