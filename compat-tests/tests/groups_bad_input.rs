//! Group-protocol misuse over the raw wire (kafka-protocol encoders, real TCP) against
//! one broker, around one well-behaved raw member that must stay healthy throughout.
//! Every error code below was checked against Apache Kafka 4.1.1 (the reference), and
//! again on 4.4.0.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    consumer_protocol_assignment, ConsumerProtocolAssignment, ConsumerProtocolSubscription,
};
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestBroker};

const JOIN_V: i16 = 7;
const SYNC_V: i16 = 5;
const HEARTBEAT_V: i16 = 4;
const COMMIT_V: i16 = 8;
const FIND_V: i16 = 4;
const DESCRIBE_V: i16 = 5;

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const MEMBER_ID_REQUIRED: i16 = 79;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// `v` (i16 version prefix) + `msg` encoded at version `v`: the consumer embedded
/// protocol's framing of subscriptions and assignments.
fn versioned<M: Encodable>(msg: &M, v: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&v.to_be_bytes());
    msg.encode(&mut buf, v)
        .expect("encode embedded protocol message");
    buf.freeze()
}

/// A valid ConsumerProtocolSubscription v0 for `topic`. (Kafka 4.1.1 parses the
/// metadata of "consumer" groups: with junk metadata its join timer fails with a
/// parse error in the broker log and the JoinGroup is never answered.)
fn subscription(topic: &str) -> Bytes {
    versioned(
        &ConsumerProtocolSubscription::default().with_topics(vec![s(topic)]),
        0,
    )
}

fn assignment_of(topic: &str) -> Bytes {
    versioned(
        &ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(vec![0]),
        ]),
        0,
    )
}

fn join(group: &str, member: &str, protocol_type: &str, topic: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_protocol_type(s(protocol_type))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(topic))])
}

fn heartbeat(c: &mut Connection, group: &str, generation: i32, member: &str) -> i16 {
    let r: HeartbeatResponse = c.call(
        ApiKey::Heartbeat,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation)
            .with_member_id(s(member)),
        HEARTBEAT_V,
    );
    r.error_code
}

/// (state, protocol_type, protocol, member ids) from DescribeGroups.
fn describe(c: &mut Connection, group: &str) -> (String, String, String, Vec<String>) {
    let r: DescribeGroupsResponse = c.call(
        ApiKey::DescribeGroups,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
        DESCRIBE_V,
    );
    assert_eq!(r.groups.len(), 1);
    let g = &r.groups[0];
    assert_eq!(g.error_code, NONE, "DescribeGroups error");
    (
        g.group_state.to_string(),
        g.protocol_type.to_string(),
        g.protocol_data.to_string(),
        g.members.iter().map(|m| m.member_id.to_string()).collect(),
    )
}

fn commit(
    c: &mut Connection,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offset: i64,
) -> i16 {
    let r: OffsetCommitResponse = c.call(
        ApiKey::OffsetCommit,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)])]),
        COMMIT_V,
    );
    assert_eq!(r.topics.len(), 1, "OffsetCommit topics");
    assert_eq!(r.topics[0].partitions.len(), 1, "OffsetCommit partitions");
    r.topics[0].partitions[0].error_code
}

#[test]
fn group_protocol_misuse_gets_kafka_error_codes() {
    let broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let group = unique_topic("g-bad");
    let other_group = unique_topic("g-bad-other");
    let topic = unique_topic("grp-bad");
    common::admin_create(&b, &topic, 1);
    let mut c = Connection::connect(&b, Duration::from_secs(15));

    // KIP-699: FindCoordinator v4 batches keys; both groups get this broker, error 0.
    // (The first call may create __consumer_offsets and answer COORDINATOR_NOT_AVAILABLE.)
    let found = wait_until(
        "FindCoordinator v4 for two groups",
        Duration::from_secs(30),
        || {
            let r: FindCoordinatorResponse = c.call(
                ApiKey::FindCoordinator,
                &FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec![s(&group), s(&other_group)]),
                FIND_V,
            );
            if r.coordinators.iter().all(|x| x.error_code == NONE) {
                Ok(r)
            } else {
                Err(format!("{:?}", r.coordinators))
            }
        },
    );
    assert_eq!(found.error_code, NONE, "top-level error");
    let keys: Vec<String> = found
        .coordinators
        .iter()
        .map(|x| x.key.to_string())
        .collect();
    assert_eq!(
        keys,
        [group.clone(), other_group.clone()],
        "one entry per key, in order"
    );
    for x in &found.coordinators {
        assert_eq!(*x.node_id, 1, "{x:?}");
        assert_eq!(x.host.as_str(), "127.0.0.1", "{x:?}");
        assert_eq!(x.port, broker.port() as i32, "{x:?}");
    }

    // KIP-394: JoinGroup v4+ without a member id → MEMBER_ID_REQUIRED with an id ...
    // FindCoordinator may already answer 0 while the coordinator is still loading
    // __consumer_offsets: JoinGroup then gets COORDINATOR_LOAD_IN_PROGRESS (14), which
    // clients retry. Seen on Kafka 4.1.1 right after the offsets topic is created.
    let r = wait_until(
        "JoinGroup past coordinator loading",
        Duration::from_secs(30),
        || {
            let r: JoinGroupResponse = c.call(
                ApiKey::JoinGroup,
                &join(&group, "", "consumer", &topic),
                JOIN_V,
            );
            if r.error_code == COORDINATOR_LOAD_IN_PROGRESS {
                Err(format!("{r:?}"))
            } else {
                Ok(r)
            }
        },
    );
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED, "{r:?}");
    assert!(
        !r.member_id.is_empty(),
        "MEMBER_ID_REQUIRED carries the member id: {r:?}"
    );
    assert_eq!(r.generation_id, -1, "{r:?}");
    let member = r.member_id.to_string();
    // ... and the rejoin with it succeeds: leader of generation 1, alone.
    let r: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        &join(&group, &member, "consumer", &topic),
        JOIN_V,
    );
    assert_eq!(r.error_code, NONE, "{r:?}");
    assert_eq!(r.generation_id, 1, "{r:?}");
    assert_eq!(r.member_id.as_str(), member);
    assert_eq!(r.leader.as_str(), member, "the only member leads");
    assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!(
        r.protocol_type.as_ref().map(|p| p.as_str()),
        Some("consumer")
    );
    assert_eq!(r.members.len(), 1, "the leader gets the member list");
    assert_eq!(
        r.members[0].metadata,
        subscription(&topic),
        "metadata echoed"
    );
    let generation = r.generation_id;
    let assignment = assignment_of(&topic);
    let r: SyncGroupResponse = c.call(
        ApiKey::SyncGroup,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(generation)
            .with_member_id(s(&member))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(assignment.clone())]),
        SYNC_V,
    );
    assert_eq!(r.error_code, NONE, "{r:?}");
    assert_eq!(
        r.assignment, assignment,
        "SyncGroup hands back the leader's assignment"
    );
    assert_eq!(heartbeat(&mut c, &group, generation, &member), NONE);
    let stable = (
        "Stable".to_string(),
        "consumer".to_string(),
        "range".to_string(),
        vec![member.clone()],
    );
    assert_eq!(describe(&mut c, &group), stable);

    // Each bad request on its own fresh connection; then the good member still
    // heartbeats on generation 1 and the group is unchanged.
    let after = |c: &mut Connection, case: &str| {
        assert_eq!(
            heartbeat(c, &group, generation, &member),
            NONE,
            "{case}: heartbeat"
        );
        assert_eq!(describe(c, &group), stable, "{case}: describe");
    };

    // JoinGroup with another protocol type into a non-empty group.
    let mut bad = Connection::connect(&b, Duration::from_secs(15));
    let r: JoinGroupResponse = bad.call(
        ApiKey::JoinGroup,
        &join(&group, "", "not-consumer", &topic),
        JOIN_V,
    );
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL, "{r:?}");
    assert_eq!(r.member_id.as_str(), "", "no member id handed out: {r:?}");
    after(&mut c, "inconsistent protocol type");

    // SyncGroup from a stale (and from a future) generation.
    for g in [generation - 1, generation + 1] {
        let mut bad = Connection::connect(&b, Duration::from_secs(15));
        let r: SyncGroupResponse = bad.call(
            ApiKey::SyncGroup,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(g)
                .with_member_id(s(&member))
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range"))),
            SYNC_V,
        );
        assert_eq!(r.error_code, ILLEGAL_GENERATION, "generation {g}: {r:?}");
        assert!(r.assignment.is_empty(), "{r:?}");
        after(&mut c, "stale SyncGroup");
    }

    // Heartbeat from a member the group does not know.
    let mut bad = Connection::connect(&b, Duration::from_secs(15));
    assert_eq!(
        heartbeat(&mut bad, &group, generation, "no-such-member"),
        UNKNOWN_MEMBER_ID
    );
    after(&mut c, "unknown member heartbeat");

    // OffsetCommit for a topic that does not exist (valid member and generation).
    let mut bad = Connection::connect(&b, Duration::from_secs(15));
    let missing = unique_topic("no-such-topic");
    assert_eq!(
        commit(&mut bad, &group, generation, &member, &missing, 5),
        UNKNOWN_TOPIC_OR_PARTITION
    );
    after(&mut c, "commit to unknown topic");
    // Commits to a real topic still work.
    assert_eq!(commit(&mut c, &group, generation, &member, &topic, 0), NONE);
    after(&mut c, "valid commit");
}
