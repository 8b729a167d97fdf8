//! DescribeTopicPartitions (API 75) on the raw wire: name order, partition fields for a
//! single broker, pagination with the cursor and `ResponsePartitionLimit` (capped by
//! `max.request.partition.size.limit`), unknown and illegal names, a bad cursor; then
//! Kafka 4.1.1's `kafka-topics --describe`, which asks this API first.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::admin_create;
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::{
    ApiKey, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{kafka_tool, unique_topic, BrokerOpts, TestBroker};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_REQUEST: i16 = 42;
/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
const ALL_TOPIC_OPERATIONS: i32 = 0b1101_1111_1000;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn request(
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsRequest {
    DescribeTopicPartitionsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|t| TopicRequest::default().with_name(name(t)))
                .collect(),
        )
        .with_response_partition_limit(limit)
        .with_cursor(cursor.map(|(topic, partition)| {
            Cursor::default()
                .with_topic_name(name(topic))
                .with_partition_index(partition)
        }))
}

/// (topic, error, partition indexes) per answered topic, and the next cursor.
type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

fn page(response: &DescribeTopicPartitionsResponse) -> Page {
    let topics = response
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                t.error_code,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let cursor = response
        .next_cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    (topics, cursor)
}

#[test]
fn describe_topic_partitions_pages_through_topics() {
    let broker =
        TestBroker::start(BrokerOpts::default().set("max.request.partition.size.limit", "4"));
    let b = broker.bootstrap();
    let prefix = unique_topic("dtp");
    let (a, z) = (format!("{prefix}-a"), format!("{prefix}-z"));
    admin_create(&b, &z, 3);
    admin_create(&b, &a, 2);
    let mut conn = Connection::connect(&b, Duration::from_secs(10));
    let mut call = |req: &DescribeTopicPartitionsRequest| -> DescribeTopicPartitionsResponse {
        conn.call(ApiKey::DescribeTopicPartitions, req, 0)
    };

    // Name order, each topic once, every partition's fields as a single broker has them.
    let response = call(&request(&[&z, &a, &z], 100, None));
    let (topics, cursor) = page(&response);
    // The broker's cap of 4 partitions applies: a's 2, then 2 of z's 3.
    assert_eq!(
        topics,
        vec![(a.clone(), 0, vec![0, 1]), (z.clone(), 0, vec![0, 1])]
    );
    assert_eq!(cursor, Some((z.clone(), 2)));
    for topic in &response.topics {
        assert!(!topic.is_internal);
        assert!(!topic.topic_id.is_nil());
        assert_eq!(topic.topic_authorized_operations, ALL_TOPIC_OPERATIONS);
        for p in &topic.partitions {
            assert_eq!(p.error_code, 0);
            assert_eq!(p.leader_id.0, 1);
            assert_eq!(p.leader_epoch, 0);
            assert_eq!(
                p.replica_nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
                vec![1]
            );
            assert_eq!(p.isr_nodes.iter().map(|n| n.0).collect::<Vec<_>>(), vec![1]);
            assert_eq!(p.eligible_leader_replicas, Some(vec![]));
            assert_eq!(p.last_known_elr, Some(vec![]));
            assert!(p.offline_replicas.is_empty());
        }
    }
    // The cursor continues where the page stopped.
    let (topics, cursor) = page(&call(&request(&[&a, &z], 100, Some((&z, 2)))));
    assert_eq!((topics, cursor), (vec![(z.clone(), 0, vec![2])], None));

    // A limit of 2: a fills the page; the cursor points at z's start.
    let (topics, cursor) = page(&call(&request(&[&a, &z], 2, None)));
    assert_eq!(topics, vec![(a.clone(), 0, vec![0, 1])]);
    assert_eq!(cursor, Some((z.clone(), 0)));
    // A limit below 1 is 1.
    let (topics, cursor) = page(&call(&request(&[&a], 0, None)));
    assert_eq!(
        (topics, cursor),
        (vec![(a.clone(), 0, vec![0])], Some((a.clone(), 1)))
    );

    // Unknown and illegal names are answered when named.
    let missing = format!("{prefix}-missing");
    let (topics, _) = page(&call(&request(&[&missing, "bad/name"], 100, None)));
    assert_eq!(
        topics,
        vec![
            ("bad/name".to_string(), INVALID_TOPIC_EXCEPTION, vec![]),
            (missing.clone(), UNKNOWN_TOPIC_OR_PARTITION, vec![]),
        ]
    );

    // Every topic (none named) through pages of 4: ours, and `__consumer_offsets` (the
    // rdkafka consumer of `admin_create` has a group id) with its 50 partitions.
    let mut seen: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut cursor: Option<(String, i32)> = None;
    for pages in 0.. {
        assert!(pages < 100, "pagination does not end");
        let req = request(&[], 100, cursor.as_ref().map(|(t, p)| (t.as_str(), *p)));
        let (topics, next) = page(&call(&req));
        for (topic, error, partitions) in topics {
            assert_eq!(error, 0);
            seen.entry(topic).or_default().extend(partitions);
        }
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.get(&a), Some(&vec![0, 1]));
    assert_eq!(seen.get(&z), Some(&vec![0, 1, 2]));

    // A cursor outside the named topics, or a negative cursor partition.
    for req in [
        request(&[&a], 100, Some((&z, 0))),
        request(&[&a], 100, Some((&a, -1))),
    ] {
        let (topics, cursor) = page(&call(&req));
        assert_eq!(
            (topics, cursor),
            (vec![(a.clone(), INVALID_REQUEST, vec![])], None)
        );
    }

    // kafka-topics --describe (Kafka 4.1.1) reads the partitions through this API; its
    // 5 partitions take two pages at the broker's cap of 4.
    let out = kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &b,
            "--describe",
            "--topic",
            &format!("{prefix}-.*"),
        ],
        None,
    );
    out.assert_success();
    for (topic, count) in [(&a, 2), (&z, 3)] {
        assert!(
            out.stdout.contains(&format!("Topic: {topic}\tTopicId:"))
                && out.stdout.contains(&format!("PartitionCount: {count}")),
            "{topic}: {}",
            out.describe()
        );
        for i in 0..count {
            let line = format!("Topic: {topic}\tPartition: {i}\tLeader: 1\tReplicas: 1\tIsr: 1");
            assert!(out.stdout.contains(&line), "{line}: {}", out.describe());
        }
    }
}
