//! CreatePartitions through Apache Kafka's own `kafka-topics --alter --partitions`, then
//! the new partition used by librdkafka (kcat) through Metadata, Kafka's errors over the
//! raw wire, and the grown topic surviving a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{kafka_tool, kcat, unique_topic, BrokerOpts, Target, TestBroker};

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const TIMEOUT: Duration = Duration::from_secs(15);

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_REQUEST: i16 = 42;
const POLICY_VIOLATION: i16 = 44;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn partition_count(conn: &mut Connection, topic: &str) -> usize {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = conn.call(ApiKey::Metadata, &request, 12);
    assert_eq!(response.topics[0].error_code, 0, "Metadata of {topic}");
    response.topics[0].partitions.len()
}

fn grow(topic: &str, count: i32, assignments: Option<Vec<Vec<i32>>>) -> CreatePartitionsTopic {
    CreatePartitionsTopic::default()
        .with_name(name(topic))
        .with_count(count)
        .with_assignments(assignments.map(|list| {
            list.into_iter()
                .map(|brokers| {
                    CreatePartitionsAssignment::default()
                        .with_broker_ids(brokers.into_iter().map(BrokerId).collect())
                })
                .collect()
        }))
}

/// Error codes per topic, in request order (Kafka answers in no particular order).
fn create_partitions(
    conn: &mut Connection,
    topics: Vec<CreatePartitionsTopic>,
    validate_only: bool,
) -> Vec<i16> {
    let asked: Vec<String> = topics.iter().map(|t| t.name.0.to_string()).collect();
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only)
        .with_topics(topics);
    let response: CreatePartitionsResponse = conn.call(ApiKey::CreatePartitions, &request, 3);
    let codes: BTreeMap<String, i16> = response
        .results
        .iter()
        .map(|r| (r.name.0.to_string(), r.error_code))
        .collect();
    asked
        .iter()
        .map(|name| {
            *codes
                .get(name)
                .unwrap_or_else(|| panic!("no answer for {name}"))
        })
        .collect()
}

fn topics_tool(bootstrap: &str, args: &[&str]) -> millrace_compat_tests::ToolOutput {
    let mut all = vec!["--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    kafka_tool(TOPICS, &all, None)
}

#[test]
fn kafka_topics_alter_adds_partitions_that_clients_use_and_a_restart_keeps() {
    let mut broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("grow");

    topics_tool(
        &b,
        &[
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
    )
    .assert_success();
    topics_tool(&b, &["--alter", "--topic", &topic, "--partitions", "3"]).assert_success();
    // Not an increase: the tool fails with Kafka's message.
    let out = topics_tool(&b, &["--alter", "--topic", &topic, "--partitions", "2"]);
    assert!(
        !out.status.success(),
        "shrinking succeeded: {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("would not be an increase")
            || out.stdout.contains("would not be an increase"),
        "shrink: {}",
        out.describe()
    );
    let mut conn = Connection::connect(&b, TIMEOUT);
    assert_eq!(partition_count(&mut conn, &topic), 3);

    // librdkafka finds partition 2 through Metadata, writes and reads it.
    kcat(
        &["-b", &b, "-P", "-t", &topic, "-p", "2"],
        Some(b"one\ntwo\nthree\n"),
    )
    .assert_success();
    let out = kcat(
        &[
            "-b",
            &b,
            "-C",
            "-t",
            &topic,
            "-p",
            "2",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    out.assert_success();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["one", "two", "three"]
    );

    // Kafka's errors, over the raw wire.
    let other = unique_topic("grow-other");
    topics_tool(
        &b,
        &[
            "--create",
            "--topic",
            &other,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
    )
    .assert_success();
    assert_eq!(
        create_partitions(
            &mut conn,
            vec![
                grow(&topic, 3, None),                // already 3
                grow("no-such-topic", 2, None),       // unknown
                grow(&other, 3, Some(vec![vec![1]])), // 2 new, 1 assignment
            ],
            false,
        ),
        [
            INVALID_PARTITIONS,
            UNKNOWN_TOPIC_OR_PARTITION,
            INVALID_REPLICA_ASSIGNMENT,
        ]
    );
    // A topic named twice: Kafka answers it once, millrace once per mention.
    assert_eq!(
        create_partitions(
            &mut conn,
            vec![grow(&other, 2, None), grow(&other, 3, None)],
            false
        ),
        [INVALID_REQUEST, INVALID_REQUEST]
    );
    if broker.target() == Target::Millrace {
        // Where millrace is stricter than Kafka 4.1.1's controller, which would grow the
        // offsets topic (moving every group to another shard) and, past 10,000 new
        // partitions, fails with UNKNOWN_SERVER_ERROR from its bounded record list.
        assert_eq!(
            create_partitions(
                &mut conn,
                vec![
                    grow("__consumer_offsets", 100, None),
                    grow(&other, 10_002, None)
                ],
                false
            ),
            [INVALID_TOPIC_EXCEPTION, POLICY_VIOLATION]
        );
    }
    // validate_only answers as the real thing would, and adds nothing.
    assert_eq!(
        create_partitions(&mut conn, vec![grow(&other, 4, None)], true),
        [0]
    );
    assert_eq!(partition_count(&mut conn, &other), 1);
    assert_eq!(
        create_partitions(&mut conn, vec![grow(&other, 2, Some(vec![vec![1]]))], false),
        [0]
    );
    assert_eq!(partition_count(&mut conn, &other), 2);
    drop(conn);

    broker.restart();
    let mut conn = Connection::connect(&b, TIMEOUT);
    assert_eq!(partition_count(&mut conn, &topic), 3);
    assert_eq!(partition_count(&mut conn, &other), 2);
    let out = kcat(
        &[
            "-b",
            &b,
            "-C",
            "-t",
            &topic,
            "-p",
            "2",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    );
    out.assert_success();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
}
