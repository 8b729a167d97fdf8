//! Controller planning: validates requests against an image and decides the records to
//! write, with Kafka's error codes and messages. Pure functions; the quorum handle runs
//! them under its operation lock and writes the result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::{
    ApiError, CreatePartitionsRequest, CreateTopicRequest, MetadataImage, PartitionRecord,
    TopicDefaults, TopicImage, TopicRef,
};

/// Kafka's cap on the partitions one CreateTopics request may create, all topics
/// together (`ReplicationControlManager.MAX_PARTITIONS_PER_BATCH`); it also bounds one
/// topic, so that one request cannot build an arbitrarily large log entry and image.
pub const MAX_PARTITIONS_PER_BATCH: u64 = 10_000;

/// Upper bound on one producer id block request.
pub const MAX_PRODUCER_ID_BLOCK: i64 = 1_000_000;

const MAX_TOPIC_NAME_LEN: usize = 249;

/// Kafka's own metadata topic; clients must not create it.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub(crate) mod codes {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_REQUEST: i16 = 42;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

fn err(code: i16, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
    }
}

/// Kafka's `Topic.validate`.
pub(crate) fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |m: String| Err(err(codes::INVALID_TOPIC_EXCEPTION, m));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, \
             Topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// '.' and '_' collide in metric names, so Kafka refuses topics that differ only there.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Validates each request and builds the topic it would create, in request order. Names
/// that occur more than once in `requests` all fail with INVALID_REQUEST, as Kafka answers
/// a CreateTopics request with duplicate names.
pub(crate) fn plan_create_topics(
    image: &MetadataImage,
    requests: &[CreateTopicRequest],
    defaults: &TopicDefaults,
) -> Vec<Result<TopicImage, ApiError>> {
    if let Err(error) = check_partitions_per_batch(requests, defaults) {
        // Kafka fails the whole request, every topic with the same error.
        return requests.iter().map(|_| Err(error.clone())).collect();
    }
    let mut occurrences: HashMap<&str, usize> = HashMap::new();
    for request in requests {
        *occurrences.entry(request.name.as_str()).or_default() += 1;
    }
    // Existing names by collision key, plus the ones accepted earlier in this batch.
    let mut taken: HashMap<String, String> = image
        .topics
        .keys()
        .map(|name| (collision_key(name), name.clone()))
        .collect();
    let brokers = placement_brokers(image);
    let mut start = image.topics.len();

    requests
        .iter()
        .map(|request| {
            if occurrences[request.name.as_str()] > 1 {
                return Err(err(codes::INVALID_REQUEST, "Duplicate topic name."));
            }
            validate_topic_name(&request.name)?;
            if request.name == METADATA_TOPIC {
                return Err(err(
                    codes::INVALID_REQUEST,
                    format!("Creation of internal topic {METADATA_TOPIC} is prohibited."),
                ));
            }
            if image.topics.contains_key(&request.name) {
                return Err(err(
                    codes::TOPIC_ALREADY_EXISTS,
                    format!("Topic '{}' already exists.", request.name),
                ));
            }
            let key = collision_key(&request.name);
            if let Some(existing) = taken.get(&key) {
                return Err(err(
                    codes::INVALID_TOPIC_EXCEPTION,
                    format!(
                        "Topic '{}' collides with existing topic: {existing}",
                        request.name
                    ),
                ));
            }
            let replicas = if request.assignments.is_empty() {
                start += 1;
                automatic_placement(request, defaults, &brokers, start - 1)?
            } else {
                manual_placement(request, &image.brokers)?
            };
            taken.insert(key, request.name.clone());
            Ok(TopicImage {
                name: request.name.clone(),
                topic_id: Uuid::new_v4(),
                partitions: replicas
                    .into_iter()
                    .zip(0..)
                    .map(|(replicas, partition)| PartitionRecord {
                        partition,
                        leader: replicas[0],
                        isr: replicas.clone(),
                        replicas,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        elr: Vec::new(),
                        last_known_elr: Vec::new(),
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                    })
                    .collect(),
                configs: request.configs.clone(),
            })
        })
        .collect()
}

/// Kafka's `validateTotalNumberOfPartitions`: counted before any other check, with -1 as
/// the default and non-positive counts as none.
fn check_partitions_per_batch(
    requests: &[CreateTopicRequest],
    defaults: &TopicDefaults,
) -> Result<(), ApiError> {
    let total = requests.iter().fold(0u64, |total, request| {
        let partitions = if !request.assignments.is_empty() {
            request.assignments.len() as u64
        } else if request.num_partitions == -1 {
            u64::try_from(defaults.num_partitions).unwrap_or(0)
        } else {
            u64::try_from(request.num_partitions).unwrap_or(0)
        };
        total.saturating_add(partitions)
    });
    if total > MAX_PARTITIONS_PER_BATCH {
        return Err(err(
            codes::POLICY_VIOLATION,
            "Excessively large number of partitions per request.",
        ));
    }
    Ok(())
}

fn automatic_placement(
    request: &CreateTopicRequest,
    defaults: &TopicDefaults,
    brokers: &[(i32, Option<String>)],
    start: usize,
) -> Result<Vec<Vec<i32>>, ApiError> {
    let replication_factor = match request.replication_factor {
        -1 => defaults.replication_factor,
        rf => rf,
    };
    if replication_factor <= 0 {
        return Err(err(
            codes::INVALID_REPLICATION_FACTOR,
            "Replication factor was set to an invalid non-positive value.",
        ));
    }
    let num_partitions = match request.num_partitions {
        -1 => defaults.num_partitions,
        n => n,
    };
    if num_partitions <= 0 {
        return Err(err(
            codes::INVALID_PARTITIONS,
            "Number of partitions was set to an invalid non-positive value.",
        ));
    }
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    check_replication_factor(rf, brokers)?;
    Ok(place_replicas(brokers, 0..num_partitions, rf, start))
}

fn check_replication_factor(
    replication_factor: usize,
    brokers: &[(i32, Option<String>)],
) -> Result<(), ApiError> {
    if replication_factor > brokers.len() {
        return Err(err(
            codes::INVALID_REPLICATION_FACTOR,
            format!(
                "Unable to replicate the partition {replication_factor} time(s): The target \
                 replication factor of {replication_factor} cannot be reached because only {} \
                 broker(s) are registered.",
                brokers.len()
            ),
        ));
    }
    Ok(())
}

/// The brokers new replicas may go to: registered and not fenced, with their racks.
pub(crate) fn placement_brokers(image: &MetadataImage) -> Vec<(i32, Option<String>)> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| (b.node_id, b.rack.clone()))
        .collect()
}

/// Orders brokers so that consecutive ones alternate racks (as Kafka's rack-alternated
/// broker list): rack by rack in name order, taking the next broker of each in turn;
/// brokers without a rack form one more group.
fn rack_alternated(brokers: &[(i32, Option<String>)]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_deref()).or_default().push(*id);
    }
    let mut out = Vec::with_capacity(brokers.len());
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                out.push(*id);
            }
        }
    }
    out
}

/// A simplified rack-aware round robin (after Kafka's StripedReplicaPlacer): over the
/// rack-alternated brokers, partition p's replicas are the `rf` brokers from position
/// `start + p` on, so leaders (first replicas) spread evenly and, with racks of equal
/// size, a partition's first replicas sit on different racks. `start` rotates the
/// leaders of successive topics.
fn place_replicas(
    brokers: &[(i32, Option<String>)],
    partitions: std::ops::Range<i32>,
    rf: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    assert!(
        rf >= 1 && rf <= brokers.len(),
        "placement checked by caller"
    );
    let ordered = rack_alternated(brokers);
    partitions
        .map(|p| {
            let first = start + p as usize;
            (0..rf)
                .map(|r| ordered[(first + r) % ordered.len()])
                .collect()
        })
        .collect()
}

fn manual_placement(
    request: &CreateTopicRequest,
    registered: &BTreeMap<i32, super::BrokerRegistration>,
) -> Result<Vec<Vec<i32>>, ApiError> {
    if request.replication_factor != -1 {
        return Err(err(
            codes::INVALID_REQUEST,
            "A manual partition assignment was specified, but replication factor was not set \
             to -1.",
        ));
    }
    if request.num_partitions != -1 {
        return Err(err(
            codes::INVALID_REQUEST,
            "A manual partition assignment was specified, but numPartitions was not set to -1.",
        ));
    }
    let invalid = |m: String| Err(err(codes::INVALID_REPLICA_ASSIGNMENT, m));
    let mut by_partition: BTreeMap<i32, &Vec<i32>> = BTreeMap::new();
    let mut replication_factor: Option<usize> = None;
    for (partition, replicas) in &request.assignments {
        if by_partition.insert(*partition, replicas).is_some() {
            return invalid(format!(
                "Found multiple manual partition assignments for partition {partition}"
            ));
        }
        check_manual_replicas(replicas, registered, replication_factor)?;
        replication_factor = Some(replicas.len());
    }
    // Distinct keys, so they are exactly 0..n-1 iff they count up from 0 without a gap.
    if !by_partition
        .keys()
        .copied()
        .eq(0..by_partition.len() as i32)
    {
        return invalid("Partitions should be a consecutive 0-based integer sequence".into());
    }
    Ok(by_partition.into_values().cloned().collect())
}

/// Kafka's `validateManualPartitionAssignment` for one partition's replicas: not empty,
/// no broker twice, every broker registered, as many as `replication_factor` if known.
fn check_manual_replicas(
    replicas: &[i32],
    registered: &BTreeMap<i32, super::BrokerRegistration>,
    replication_factor: Option<usize>,
) -> Result<(), ApiError> {
    let invalid = |m: String| Err(err(codes::INVALID_REPLICA_ASSIGNMENT, m));
    if replicas.is_empty() {
        return invalid("The manual partition assignment includes an empty replica list.".into());
    }
    let mut seen = BTreeSet::new();
    for broker in replicas {
        if !seen.insert(*broker) {
            return invalid(format!(
                "The manual partition assignment includes broker {broker} more than once."
            ));
        }
        if !registered.contains_key(broker) {
            return invalid(format!(
                "The manual partition assignment includes broker {broker}, but no such \
                 broker is registered."
            ));
        }
    }
    match replication_factor {
        Some(rf) if rf != replicas.len() => invalid(format!(
            "The manual partition assignment includes a partition with {} replica(s), but \
             this is not consistent with previous partitions, which have {rf} replica(s).",
            replicas.len()
        )),
        _ => Ok(()),
    }
}

/// Validates each CreatePartitions request and builds the partitions it would add, in
/// request order, with Kafka's errors: a topic named twice -> INVALID_REQUEST, unknown
/// -> UNKNOWN_TOPIC_OR_PARTITION, a count that is not an increase -> INVALID_PARTITIONS,
/// assignments that do not fit -> INVALID_REPLICA_ASSIGNMENT. New partitions keep the
/// topic's replication factor. As for CreateTopics, more than
/// [`MAX_PARTITIONS_PER_BATCH`] new partitions in one request fail every topic.
pub(crate) fn plan_create_partitions(
    image: &MetadataImage,
    requests: &[CreatePartitionsRequest],
) -> Vec<Result<(Uuid, Vec<PartitionRecord>), ApiError>> {
    let additional = |request: &CreatePartitionsRequest| {
        let current = image
            .topics
            .get(&request.name)
            .map_or(0, |t| t.partitions.len());
        u64::try_from(request.count)
            .unwrap_or(0)
            .saturating_sub(current as u64)
    };
    let total = requests
        .iter()
        .fold(0u64, |total, r| total.saturating_add(additional(r)));
    if total > MAX_PARTITIONS_PER_BATCH {
        let error = err(
            codes::POLICY_VIOLATION,
            "Excessively large number of partitions per request.",
        );
        return requests.iter().map(|_| Err(error.clone())).collect();
    }
    let mut occurrences: HashMap<&str, usize> = HashMap::new();
    for request in requests {
        *occurrences.entry(request.name.as_str()).or_default() += 1;
    }
    let brokers = placement_brokers(image);
    requests
        .iter()
        .map(|request| {
            if occurrences[request.name.as_str()] > 1 {
                return Err(err(codes::INVALID_REQUEST, "Duplicate topic name."));
            }
            let topic = image.topics.get(&request.name).ok_or_else(|| {
                err(
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    "This server does not host this topic-partition.",
                )
            })?;
            let current = topic.partitions.len();
            let count = usize::try_from(request.count).unwrap_or(0);
            if count == current {
                return Err(err(
                    codes::INVALID_PARTITIONS,
                    format!("Topic already has {current} partition(s)."),
                ));
            }
            if count < current {
                return Err(err(
                    codes::INVALID_PARTITIONS,
                    format!(
                        "The topic {} currently has {current} partition(s); {} would not be an \
                         increase.",
                        request.name, request.count
                    ),
                ));
            }
            let added = count - current;
            let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
            let first = current as i32;
            let replicas = match &request.assignments {
                Some(assignments) => {
                    if assignments.len() != added {
                        return Err(err(
                            codes::INVALID_REPLICA_ASSIGNMENT,
                            format!(
                                "Attempted to add {added} additional partition(s), but only {} \
                                 assignment(s) were specified.",
                                assignments.len()
                            ),
                        ));
                    }
                    for replicas in assignments {
                        check_manual_replicas(replicas, &image.brokers, Some(rf))?;
                    }
                    assignments.clone()
                }
                None => {
                    check_replication_factor(rf, &brokers)?;
                    // Continue the topic's stripe where its last partition left it.
                    let start = topic.partitions[0]
                        .replicas
                        .first()
                        .and_then(|leader| {
                            rack_alternated(&brokers).iter().position(|b| b == leader)
                        })
                        .unwrap_or(0);
                    place_replicas(&brokers, first..request.count, rf, start)
                }
            };
            let partitions = replicas
                .into_iter()
                .zip(first..)
                .map(|(replicas, partition)| PartitionRecord {
                    partition,
                    leader: replicas[0],
                    isr: replicas.clone(),
                    replicas,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    elr: Vec::new(),
                    last_known_elr: Vec::new(),
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                })
                .collect();
            Ok((topic.topic_id, partitions))
        })
        .collect()
}

/// Resolves each reference to the topic it deletes, in request order. A reference that
/// occurs more than once fails with INVALID_REQUEST, as in Kafka.
pub(crate) fn plan_delete_topics(
    image: &MetadataImage,
    refs: &[TopicRef],
) -> Vec<Result<Arc<TopicImage>, ApiError>> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashMap<Uuid, usize> = HashMap::new();
    for r in refs {
        match r {
            TopicRef::Name(name) => *names.entry(name.as_str()).or_default() += 1,
            TopicRef::Id(id) => *ids.entry(*id).or_default() += 1,
        }
    }
    refs.iter()
        .map(|r| match r {
            TopicRef::Name(name) => {
                if names[name.as_str()] > 1 {
                    return Err(err(codes::INVALID_REQUEST, "Duplicate topic name."));
                }
                image.topics.get(name).cloned().ok_or_else(|| {
                    err(
                        codes::UNKNOWN_TOPIC_OR_PARTITION,
                        "This server does not host this topic-partition.",
                    )
                })
            }
            TopicRef::Id(id) => {
                if ids[id] > 1 {
                    return Err(err(codes::INVALID_REQUEST, "Duplicate topic id."));
                }
                if id.is_nil() {
                    return Err(err(
                        codes::INVALID_REQUEST,
                        "Neither topic name nor id were specified.",
                    ));
                }
                image
                    .topic_names_by_id
                    .get(id)
                    .and_then(|name| image.topics.get(name))
                    .cloned()
                    .ok_or_else(|| {
                        err(
                            codes::UNKNOWN_TOPIC_ID,
                            "This server does not host this topic ID.",
                        )
                    })
            }
        })
        .collect()
}

/// A fresh cluster id in Kafka's format: the 16 bytes of a random UUID in unpadded
/// base64url (22 characters), never starting with '-' (Kafka's `Uuid.randomUuid` rule, so
/// the id cannot be mistaken for a command-line flag).
pub(crate) fn new_cluster_id() -> String {
    loop {
        let id = base64url(Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        // A chunk of k bytes carries k + 1 significant sextets; padding is omitted.
        for s in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * s)) as usize & 63]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::BrokerRegistration;

    fn image_with_brokers(ids: &[i32]) -> MetadataImage {
        MetadataImage {
            brokers: ids
                .iter()
                .map(|&id| {
                    (
                        id,
                        BrokerRegistration {
                            node_id: id,
                            host: "h".into(),
                            port: 9092,
                            rack: None,
                            broker_epoch: 1,
                            incarnation_id: Uuid::nil(),
                            listeners: vec![],
                            fenced: false,
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    fn req(name: &str, num_partitions: i32, replication_factor: i16) -> CreateTopicRequest {
        CreateTopicRequest {
            name: name.into(),
            num_partitions,
            replication_factor,
            assignments: vec![],
            configs: BTreeMap::new(),
        }
    }

    fn manual(name: &str, assignments: Vec<(i32, Vec<i32>)>) -> CreateTopicRequest {
        CreateTopicRequest {
            assignments,
            ..req(name, -1, -1)
        }
    }

    const DEFAULTS: TopicDefaults = TopicDefaults {
        num_partitions: 2,
        replication_factor: 1,
    };

    fn code_of(image: &MetadataImage, request: CreateTopicRequest) -> i16 {
        match plan_create_topics(image, &[request], &DEFAULTS).remove(0) {
            Ok(_) => 0,
            Err(e) => e.code,
        }
    }

    fn with_topic(mut image: MetadataImage, name: &str) -> MetadataImage {
        let topic = plan_create_topics(&image, &[req(name, 1, 1)], &DEFAULTS)
            .remove(0)
            .unwrap();
        image
            .topic_names_by_id
            .insert(topic.topic_id, name.to_string());
        image.topics.insert(name.to_string(), Arc::new(topic));
        image
    }

    #[test]
    fn topic_names() {
        let image = image_with_brokers(&[1]);
        for bad in ["", ".", "..", "a b", "ü", "a/b", &"x".repeat(250)] {
            assert_eq!(code_of(&image, req(bad, 1, 1)), 17, "{bad:?}");
        }
        for good in ["a", "A-z_0.9", "...", &"x".repeat(249)] {
            assert_eq!(code_of(&image, req(good, 1, 1)), 0, "{good:?}");
        }
        let e = plan_create_topics(&image, &[req("a b", 1, 1)], &DEFAULTS).remove(0);
        assert_eq!(
            e.unwrap_err().message,
            "Topic name \"a b\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        );
        assert_eq!(code_of(&image, req(METADATA_TOPIC, 1, 1)), 42);
    }

    #[test]
    fn existing_and_colliding_names() {
        let image = with_topic(image_with_brokers(&[1]), "a.b");
        let e = plan_create_topics(&image, &[req("a.b", 1, 1)], &DEFAULTS)
            .remove(0)
            .unwrap_err();
        assert_eq!(e.code, 36);
        assert_eq!(e.message, "Topic 'a.b' already exists.");
        let e = plan_create_topics(&image, &[req("a_b", 1, 1)], &DEFAULTS)
            .remove(0)
            .unwrap_err();
        assert_eq!(e.code, 17);
        assert_eq!(e.message, "Topic 'a_b' collides with existing topic: a.b");
        // Within one batch, the later of two colliding names loses.
        let results = plan_create_topics(
            &image_with_brokers(&[1]),
            &[req("x.y", 1, 1), req("x_y", 1, 1)],
            &DEFAULTS,
        );
        assert!(results[0].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().code, 17);
    }

    #[test]
    fn duplicate_names_in_one_batch() {
        let results = plan_create_topics(
            &image_with_brokers(&[1]),
            &[req("d", 1, 1), req("ok", 1, 1), req("d", 1, 1)],
            &DEFAULTS,
        );
        assert_eq!(results[0].as_ref().unwrap_err().code, 42);
        assert!(results[1].is_ok());
        assert_eq!(results[2].as_ref().unwrap_err().code, 42);
    }

    #[test]
    fn partition_counts() {
        let image = image_with_brokers(&[1]);
        assert_eq!(code_of(&image, req("t", 0, 1)), 37);
        assert_eq!(code_of(&image, req("t", -2, 1)), 37);
        let cap = MAX_PARTITIONS_PER_BATCH as i32;
        assert_eq!(code_of(&image, req("t", cap + 1, 1)), 44);
        assert_eq!(code_of(&image, req("t", cap, 1)), 0);
        let bad_default = TopicDefaults {
            num_partitions: 0,
            replication_factor: 1,
        };
        let e = plan_create_topics(&image, &[req("t", -1, 1)], &bad_default).remove(0);
        assert_eq!(e.unwrap_err().code, 37);
    }

    #[test]
    fn partitions_per_request_are_capped_across_topics() {
        let image = image_with_brokers(&[1]);
        // 5,000 + 5,000 is at the cap; one more partition anywhere fails every topic.
        let at_cap =
            plan_create_topics(&image, &[req("a", 5_000, 1), req("b", 5_000, 1)], &DEFAULTS);
        assert!(at_cap.iter().all(Result::is_ok));
        let over = plan_create_topics(
            &image,
            &[
                req("a", 5_000, 1),
                req("b", 5_000, 1),
                req("bad name", -1, 1),
            ],
            &DEFAULTS,
        );
        for result in over {
            let error = result.unwrap_err();
            assert_eq!(error.code, 44);
            assert_eq!(
                error.message,
                "Excessively large number of partitions per request."
            );
        }
        // Non-positive counts add nothing (they fail on their own, later).
        let results = plan_create_topics(&image, &[req("a", 9_999, 1), req("b", -5, 1)], &DEFAULTS);
        assert!(results[0].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().code, 37);
    }

    #[test]
    fn replication_factors() {
        let image = image_with_brokers(&[1, 2]);
        assert_eq!(code_of(&image, req("t", 1, 0)), 38);
        assert_eq!(code_of(&image, req("t", 1, -2)), 38);
        assert_eq!(code_of(&image, req("t", 1, 2)), 0);
        let e = plan_create_topics(&image, &[req("t", 1, 3)], &DEFAULTS)
            .remove(0)
            .unwrap_err();
        assert_eq!(e.code, 38);
        assert_eq!(
            e.message,
            "Unable to replicate the partition 3 time(s): The target replication factor of 3 \
             cannot be reached because only 2 broker(s) are registered."
        );
    }

    #[test]
    fn defaults_apply_to_minus_one() {
        let image = image_with_brokers(&[1, 2, 3]);
        let defaults = TopicDefaults {
            num_partitions: 4,
            replication_factor: 3,
        };
        let t = plan_create_topics(&image, &[req("t", -1, -1)], &defaults)
            .remove(0)
            .unwrap();
        assert_eq!(t.partitions.len(), 4);
        assert!(t.partitions.iter().all(|p| p.replicas.len() == 3));
        assert!(!t.topic_id.is_nil());
    }

    #[test]
    fn automatic_placement_spreads_round_robin() {
        let image = image_with_brokers(&[1, 2, 3]);
        let t = plan_create_topics(&image, &[req("t", 4, 2)], &DEFAULTS)
            .remove(0)
            .unwrap();
        let replicas: Vec<Vec<i32>> = t.partitions.iter().map(|p| p.replicas.clone()).collect();
        assert_eq!(
            replicas,
            vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]
        );
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!(p.partition, i as i32);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, p.replicas);
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        }
    }

    #[test]
    fn placement_skips_fenced_brokers_and_counts_only_unfenced() {
        let mut image = image_with_brokers(&[1, 2, 3]);
        image.brokers.get_mut(&2).unwrap().fenced = true;
        let t = plan_create_topics(&image, &[req("t", 3, 2)], &DEFAULTS)
            .remove(0)
            .unwrap();
        for p in &t.partitions {
            assert!(!p.replicas.contains(&2), "{:?}", p.replicas);
        }
        let e = plan_create_topics(&image, &[req("u", 1, 3)], &DEFAULTS)
            .remove(0)
            .unwrap_err();
        assert_eq!(e.code, codes::INVALID_REPLICATION_FACTOR);
        assert!(e.message.contains("only 2 broker(s)"), "{}", e.message);
    }

    #[test]
    fn placement_alternates_racks_and_rotates_leaders_per_topic() {
        let mut image = image_with_brokers(&[1, 2, 3, 4, 5, 6]);
        for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
            image.brokers.get_mut(&id).unwrap().rack = Some(rack.to_string());
        }
        let rack_of = |id: &i32| image.brokers[id].rack.clone();
        let t = plan_create_topics(&image, &[req("t", 6, 3)], &DEFAULTS)
            .remove(0)
            .unwrap();
        let mut leaders = BTreeSet::new();
        for p in &t.partitions {
            let racks: BTreeSet<_> = p.replicas.iter().map(rack_of).collect();
            assert_eq!(racks.len(), 3, "replicas {:?} share a rack", p.replicas);
            leaders.insert(p.leader);
        }
        assert_eq!(leaders.len(), 6, "every broker leads one partition");
        // The next topic starts one broker further on.
        let image = with_topic(image, "first");
        let u = plan_create_topics(&image, &[req("u", 1, 1)], &DEFAULTS)
            .remove(0)
            .unwrap();
        assert_ne!(u.partitions[0].leader, t.partitions[0].leader);
    }

    #[test]
    fn manual_assignments() {
        let image = image_with_brokers(&[1, 2, 3]);
        let ok = plan_create_topics(
            &image,
            &[manual("t", vec![(1, vec![3, 1]), (0, vec![2, 3])])],
            &DEFAULTS,
        )
        .remove(0)
        .unwrap();
        assert_eq!(ok.partitions[0].replicas, vec![2, 3]);
        assert_eq!(ok.partitions[0].leader, 2);
        assert_eq!(ok.partitions[1].replicas, vec![3, 1]);

        let with_counts = CreateTopicRequest {
            num_partitions: 1,
            ..manual("t", vec![(0, vec![1])])
        };
        assert_eq!(code_of(&image, with_counts), 42);
        let with_rf = CreateTopicRequest {
            replication_factor: 1,
            ..manual("t", vec![(0, vec![1])])
        };
        assert_eq!(code_of(&image, with_rf), 42);

        let cases: Vec<Vec<(i32, Vec<i32>)>> = vec![
            vec![(0, vec![1]), (0, vec![2])],    // partition twice
            vec![(0, vec![1]), (2, vec![2])],    // gap
            vec![(1, vec![1])],                  // not starting at 0
            vec![(-1, vec![1]), (0, vec![1])],   // negative
            vec![(0, vec![])],                   // empty replicas
            vec![(0, vec![1, 1])],               // duplicate broker
            vec![(0, vec![1, 9])],               // unregistered broker
            vec![(0, vec![1, 2]), (1, vec![3])], // inconsistent sizes
        ];
        for case in cases {
            assert_eq!(code_of(&image, manual("t", case.clone())), 39, "{case:?}");
        }
        let too_many = (0..=MAX_PARTITIONS_PER_BATCH as i32)
            .map(|p| (p, vec![1]))
            .collect();
        assert_eq!(code_of(&image, manual("t", too_many)), 44);
    }

    fn grow(name: &str, count: i32, assignments: Option<Vec<Vec<i32>>>) -> CreatePartitionsRequest {
        CreatePartitionsRequest {
            name: name.into(),
            count,
            assignments,
        }
    }

    fn grow_code(image: &MetadataImage, request: CreatePartitionsRequest) -> i16 {
        match plan_create_partitions(image, &[request]).remove(0) {
            Ok(_) => 0,
            Err(e) => e.code,
        }
    }

    #[test]
    fn create_partitions_plans() {
        let image = with_topic(image_with_brokers(&[1, 2]), "t");
        let id = image.topics["t"].topic_id;
        let (topic_id, added) = plan_create_partitions(&image, &[grow("t", 3, None)])
            .remove(0)
            .unwrap();
        assert_eq!(topic_id, id);
        let numbers: Vec<(i32, Vec<i32>, i32)> = added
            .iter()
            .map(|p| (p.partition, p.replicas.clone(), p.leader))
            .collect();
        // Replication factor 1 as the topic's; round robin continues from partition 1.
        assert_eq!(numbers, vec![(1, vec![2], 2), (2, vec![1], 1)]);

        let e = plan_create_partitions(&image, &[grow("t", 1, None)])
            .remove(0)
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (37, "Topic already has 1 partition(s).")
        );
        let e = plan_create_partitions(&image, &[grow("t", 0, None)])
            .remove(0)
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                37,
                "The topic t currently has 1 partition(s); 0 would not be an increase."
            )
        );
        assert_eq!(grow_code(&image, grow("t", -5, None)), 37);
        assert_eq!(grow_code(&image, grow("missing", 3, None)), 3);

        let manual = plan_create_partitions(&image, &[grow("t", 3, Some(vec![vec![2], vec![1]]))])
            .remove(0)
            .unwrap()
            .1;
        assert_eq!(manual[0].replicas, vec![2]);
        assert_eq!(manual[1].partition, 2);
        for bad in [
            vec![vec![1]],                // fewer assignments than new partitions
            vec![vec![1], vec![]],        // empty replicas
            vec![vec![1], vec![9]],       // unregistered broker
            vec![vec![1], vec![1, 2]],    // not the topic's replication factor
            vec![vec![1, 1], vec![1, 1]], // broker twice
        ] {
            assert_eq!(
                grow_code(&image, grow("t", 3, Some(bad.clone()))),
                39,
                "{bad:?}"
            );
        }
        let dup = plan_create_partitions(&image, &[grow("t", 2, None), grow("t", 3, None)]);
        assert!(dup.iter().all(|r| r.as_ref().unwrap_err().code == 42));
    }

    #[test]
    fn create_partitions_are_capped_per_request() {
        let image = with_topic(with_topic(image_with_brokers(&[1]), "a"), "b");
        let cap = MAX_PARTITIONS_PER_BATCH as i32;
        // a: 5,000 new, b: 5,000 new: at the cap.
        let at_cap =
            plan_create_partitions(&image, &[grow("a", 5_001, None), grow("b", 5_001, None)]);
        assert!(at_cap.iter().all(Result::is_ok));
        let over = plan_create_partitions(
            &image,
            &[
                grow("a", 5_001, None),
                grow("b", 5_002, None),
                grow("c", 1, None),
            ],
        );
        assert!(over.iter().all(|r| r.as_ref().unwrap_err().code == 44));
        assert_eq!(grow_code(&image, grow("a", i32::MAX, None)), 44);
        assert_eq!(grow_code(&image, grow("a", cap + 1, None)), 0);
    }

    #[test]
    fn delete_plans() {
        let image = with_topic(image_with_brokers(&[1]), "a");
        let id = image.topics["a"].topic_id;
        let results = plan_delete_topics(
            &image,
            &[
                TopicRef::Name("a".into()),
                TopicRef::Name("missing".into()),
                TopicRef::Id(Uuid::new_v4()),
                TopicRef::Id(id),
                TopicRef::Id(Uuid::nil()),
            ],
        );
        assert_eq!(results[0].as_ref().unwrap().topic_id, id);
        assert_eq!(results[1].as_ref().unwrap_err().code, 3);
        assert_eq!(results[2].as_ref().unwrap_err().code, 100);
        assert_eq!(results[3].as_ref().unwrap().name, "a");
        assert_eq!(results[4].as_ref().unwrap_err().code, 42);
        let dup = plan_delete_topics(
            &image,
            &[TopicRef::Name("a".into()), TopicRef::Name("a".into())],
        );
        assert!(dup.iter().all(|r| r.as_ref().unwrap_err().code == 42));
    }

    #[test]
    fn base64url_matches_rfc4648() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        for _ in 0..100 {
            let id = new_cluster_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }
}
