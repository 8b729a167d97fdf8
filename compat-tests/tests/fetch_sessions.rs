//! Incremental fetch sessions (KIP-227) over TCP: the protocol on the raw wire (epochs,
//! omitted partitions, forgetting, the error codes), and Kafka 4.1.1's Java consumer
//! (the console consumer), which uses sessions whenever the broker offers one, reading
//! everything through them. librdkafka 2.12 never asks for a session (it sends session
//! id 0, epoch -1): its sessionless fetches are covered by `rdkafka_client`.

mod common;

use std::time::Duration;

use common::{admin_create, flush_all_ok, producer, send};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{
    kafka_tool_command, unique_topic, wait_until, BrokerOpts, ClientProcess, TestBroker,
};
use rdkafka::producer::BaseRecord;

use uuid::Uuid;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Produce `n` records to one partition (idempotent rdkafka producer).
fn produce(bootstrap: &str, topic: &str, partition: i32, n: usize) {
    let (p, rec) = producer(bootstrap, &[]);
    for i in 0..n {
        let value = format!("value-{partition}-{i}");
        send(
            &p,
            BaseRecord::with_opaque_to(topic, i)
                .partition(partition)
                .payload(value.as_bytes()),
        );
    }
    flush_all_ok(&p, &rec, n);
}

/// A fetch of `partitions` (index, fetch offset) of one topic, by name (v12) or by id.
fn fetch(
    topic: &str,
    topic_id: Option<Uuid>,
    partitions: &[(i32, i64)],
    session_id: i32,
    epoch: i32,
) -> FetchRequest {
    let mut fetch_topic = FetchTopic::default().with_partitions(
        partitions
            .iter()
            .map(|&(partition, fetch_offset)| {
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(fetch_offset)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect(),
    );
    fetch_topic = match topic_id {
        Some(id) => fetch_topic.with_topic_id(id),
        None => fetch_topic.with_topic(name(topic)),
    };
    let topics = if partitions.is_empty() {
        Vec::new()
    } else {
        vec![fetch_topic]
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

fn forget(request: FetchRequest, topic: &str, partitions: &[i32]) -> FetchRequest {
    request.with_forgotten_topics_data(vec![ForgottenTopic::default()
        .with_topic(name(topic))
        .with_partitions(partitions.to_vec())])
}

/// (topic name or id as text, partition, error, high watermark, record bytes) per answer.
fn answered(response: &FetchResponse) -> Vec<(String, i32, i16, i64, usize)> {
    response
        .responses
        .iter()
        .flat_map(|t| {
            let topic = if t.topic.0.is_empty() {
                t.topic_id.to_string()
            } else {
                t.topic.0.to_string()
            };
            t.partitions.iter().map(move |p: &PartitionData| {
                (
                    topic.clone(),
                    p.partition_index,
                    p.error_code,
                    p.high_watermark,
                    p.records.as_ref().map_or(0, |r| r.len()),
                )
            })
        })
        .collect()
}

fn topic_id(conn: &mut Connection, topic: &str) -> Uuid {
    let response: MetadataResponse = conn.call(
        ApiKey::Metadata,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ])),
        12,
    );
    response.topics[0].topic_id
}

#[test]
fn sessions_on_the_raw_wire() {
    let broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("sessions");
    admin_create(&b, &topic, 2);
    produce(&b, &topic, 0, 5);
    produce(&b, &topic, 1, 5);
    let mut conn = Connection::connect(&broker.bootstrap(), IO_TIMEOUT);
    let call = |conn: &mut Connection, request: &FetchRequest, version: i16| -> FetchResponse {
        conn.call(ApiKey::Fetch, request, version)
    };

    // A full fetch opens a session and answers every partition.
    let full = call(&mut conn, &fetch(&topic, None, &[(0, 0), (1, 0)], 0, 0), 12);
    assert_eq!(full.error_code, 0);
    let id = full.session_id;
    assert_ne!(id, 0, "no session offered");
    let parts = answered(&full);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(
        parts.iter().all(|p| p.2 == 0 && p.3 == 5 && p.4 > 0),
        "{parts:?}"
    );

    // Moving both fetch offsets to the end: nothing new, nothing changed, nothing sent.
    let next = call(
        &mut conn,
        &fetch(&topic, None, &[(0, 5), (1, 5)], id, 1),
        12,
    );
    assert_eq!((next.error_code, next.session_id), (0, id));
    assert_eq!(
        answered(&next),
        vec![],
        "unchanged partitions must be left out"
    );

    // New records on partition 1 only: only it comes back.
    produce(&b, &topic, 1, 3);
    let next = call(&mut conn, &fetch(&topic, None, &[], id, 2), 12);
    let parts = answered(&next);
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!((parts[0].1, parts[0].2, parts[0].3), (1, 0, 8));
    assert!(parts[0].4 > 0, "records of partition 1 missing");

    // The same epoch again (a duplicate), an unknown session, the wrong request version.
    let stale = call(&mut conn, &fetch(&topic, None, &[], id, 2), 12);
    assert_eq!(
        (stale.error_code, stale.session_id),
        (INVALID_FETCH_SESSION_EPOCH, 0)
    );
    assert!(stale.responses.is_empty());
    let unknown_id = if id == i32::MAX { 1 } else { id + 1 };
    let unknown = call(&mut conn, &fetch(&topic, None, &[], unknown_id, 1), 12);
    assert_eq!(unknown.error_code, FETCH_SESSION_ID_NOT_FOUND);
    let tid = topic_id(&mut conn, &topic);
    let by_id = call(&mut conn, &fetch(&topic, Some(tid), &[], id, 3), 13);
    assert_eq!(by_id.error_code, FETCH_SESSION_TOPIC_ID_ERROR);

    // Forget partition 0, move partition 1 past what it returned, and add an unknown
    // topic's partition: only its error is sent.
    let mut request = forget(fetch("no-such-topic", None, &[(0, 0)], id, 3), &topic, &[0]);
    request
        .topics
        .extend(fetch(&topic, None, &[(1, 8)], id, 3).topics);
    let parts = answered(&call(&mut conn, &request, 12));
    assert_eq!(
        parts,
        vec![(
            "no-such-topic".to_string(),
            0,
            UNKNOWN_TOPIC_OR_PARTITION,
            -1,
            0
        )]
    );
    // The error is sent again while it lasts; partition 0 is no longer fetched even
    // when it gets records.
    produce(&b, &topic, 0, 2);
    let parts = answered(&call(&mut conn, &fetch(&topic, None, &[], id, 4), 12));
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(parts[0].2, UNKNOWN_TOPIC_OR_PARTITION);
    // Forgetting the rest closes the session.
    let mut request = forget(fetch(&topic, None, &[], id, 5), &topic, &[1]);
    request.forgotten_topics_data.push(
        ForgottenTopic::default()
            .with_topic(name("no-such-topic"))
            .with_partitions(vec![0]),
    );
    let closed = call(&mut conn, &request, 12);
    assert_eq!((closed.error_code, closed.session_id), (0, 0));
    let gone = call(&mut conn, &fetch(&topic, None, &[], id, 6), 12);
    assert_eq!(gone.error_code, FETCH_SESSION_ID_NOT_FOUND);

    // Sessions by topic id (v13+): the answers name the topic by id.
    let full = call(&mut conn, &fetch(&topic, Some(tid), &[(0, 7)], 0, 0), 13);
    let id = full.session_id;
    assert_ne!(id, 0);
    assert_eq!(answered(&full), vec![(tid.to_string(), 0, 0, 7, 0)]);
    let quiet = call(&mut conn, &fetch(&topic, Some(tid), &[], id, 1), 17);
    assert_eq!((quiet.error_code, answered(&quiet)), (0, vec![]));
    produce(&b, &topic, 0, 1);
    let parts = answered(&call(&mut conn, &fetch(&topic, Some(tid), &[], id, 2), 17));
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(
        (parts[0].0.as_str(), parts[0].1, parts[0].3),
        (tid.to_string().as_str(), 0, 8)
    );
    // Epoch -1 closes the session and opens none.
    let last = call(&mut conn, &fetch(&topic, Some(tid), &[(0, 8)], id, -1), 13);
    assert_eq!((last.error_code, last.session_id), (0, 0));
    let gone = call(&mut conn, &fetch(&topic, Some(tid), &[], id, 3), 13);
    assert_eq!(gone.error_code, FETCH_SESSION_ID_NOT_FOUND);
}

/// With one session slot, the Java consumer's session holds it: a raw full fetch gets no
/// session while the consumer reads (its session is busy and larger), and gets one once
/// the consumer is gone and its session has been idle past the eviction time. A broker
/// restart loses the session: the consumer's next incremental fetch gets
/// FETCH_SESSION_ID_NOT_FOUND and it starts over with a full one.
///
/// Millrace whatever the target: Kafka's eviction time is a constant (120 s).
#[test]
fn the_java_consumer_reads_through_a_session() {
    let mut broker = TestBroker::start_millrace(
        BrokerOpts::default()
            .set("max.incremental.fetch.session.cache.slots", "1")
            .set("min.incremental.fetch.session.eviction.ms", "3000"),
    );
    let b = broker.bootstrap();
    let topic = unique_topic("java-session");
    admin_create(&b, &topic, 2);
    produce(&b, &topic, 0, 30);
    produce(&b, &topic, 1, 20);
    let (cmd, dir) = kafka_tool_command(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            &topic,
            "--from-beginning",
            "--formatter-property",
            "print.partition=true",
            "--formatter-property",
            "print.offset=true",
        ],
    );
    let mut consumer = ClientProcess::spawn("java-consumer", cmd, Some(dir));
    let lines = |consumer: &ClientProcess, n: usize| {
        let got = consumer.stdout_lines();
        if got.len() >= n {
            Ok(got)
        } else {
            Err(format!(
                "{} of {n} lines; stderr: {}",
                got.len(),
                consumer.stderr_tail(5)
            ))
        }
    };
    wait_until("the first 50 records", Duration::from_secs(60), || {
        lines(&consumer, 50)
    });
    // Records arriving while it polls reach it through incremental fetches.
    produce(&b, &topic, 1, 25);
    produce(&b, &topic, 0, 25);
    let got = wait_until("all 100 records", Duration::from_secs(30), || {
        lines(&consumer, 100)
    });
    let mut positions = positions_of(&got);
    positions.sort_unstable();
    let expected: Vec<(u32, u32)> = (0..55)
        .map(|o| (0, o))
        .chain((0..45).map(|o| (1, o)))
        .collect();
    assert_eq!(positions, expected, "each record exactly once");

    let mut conn = Connection::connect(&b, IO_TIMEOUT);
    let probe = |conn: &mut Connection| -> i32 {
        let response: FetchResponse =
            conn.call(ApiKey::Fetch, &fetch(&topic, None, &[(0, 0)], 0, 0), 12);
        assert_eq!(response.error_code, 0);
        response.session_id
    };
    assert_eq!(
        probe(&mut conn),
        0,
        "the consumer's session should hold the only slot"
    );
    drop(conn);

    broker.stop_graceful();
    broker.restart();
    produce(&b, &topic, 0, 10);
    let got = wait_until(
        "10 records after the restart",
        Duration::from_secs(60),
        || lines(&consumer, 110),
    );
    // A rejoin after the restart may re-read uncommitted records: at least once here.
    let seen: std::collections::BTreeSet<(u32, u32)> = positions_of(&got).into_iter().collect();
    assert!(
        (55..65).all(|o| seen.contains(&(0, o))),
        "records after the restart missing: {seen:?}"
    );
    let mut conn = Connection::connect(&b, IO_TIMEOUT);
    assert_eq!(
        probe(&mut conn),
        0,
        "the consumer's new session should hold the only slot"
    );
    consumer.kill9();
    wait_until(
        "a session once the consumer's has been idle for 3 s",
        Duration::from_secs(30),
        || match probe(&mut conn) {
            0 => Err("no session yet".to_string()),
            id => Ok(id),
        },
    );
}

/// (partition, offset) of each console consumer line (`Partition:P\tOffset:O\tvalue`).
fn positions_of(lines: &[String]) -> Vec<(u32, u32)> {
    lines
        .iter()
        .map(|l| {
            let field = |key: &str| -> u32 {
                l.split('\t')
                    .find_map(|f| f.strip_prefix(key))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no {key} in {l:?}"))
            };
            (field("Partition:"), field("Offset:"))
        })
        .collect()
}
