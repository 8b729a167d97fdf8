//! OffsetForLeaderEpoch over TCP, as a consumer sends it after a leader change to check
//! its position (KIP-320): the end offset of the requested epoch (the log end for the
//! current one), fencing by the current leader epoch, unknown topics and partitions, and
//! the epoch history surviving a restart. Versions 2 (classic) and 4 (flexible).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{now_ms, unique_topic, wait_until, BrokerOpts, TestBroker};

const TIMEOUT: Duration = Duration::from_secs(15);
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn batch(records: usize) -> Bytes {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // No producer id: the batch's base sequence is -1. The encoder keeps records
            // in one batch only while offset - sequence stays the same.
            sequence: i as i32 - 1,
            timestamp: now_ms(),
            key: None,
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

fn produce(conn: &mut Connection, topic: &str, records: usize) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(records)))])]);
    let response: ProduceResponse = conn.call(ApiKey::Produce, &request, 9);
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(
        answer.error_code, 0,
        "produce to {topic}: {:?}",
        answer.error_message
    );
}

/// (error code, leader epoch, end offset) per asked (topic, partition, current leader
/// epoch, requested epoch), in order.
fn end_offsets(
    conn: &mut Connection,
    version: i16,
    asks: &[(&str, i32, i32, i32)],
) -> Vec<(i16, i32, i64)> {
    let topics = asks
        .iter()
        .map(|&(topic, partition, current, requested)| {
            OffsetForLeaderTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(requested)])
        })
        .collect();
    let mut request = OffsetForLeaderEpochRequest::default().with_topics(topics);
    if version >= 3 {
        request = request.with_replica_id((-1).into());
    }
    let response: OffsetForLeaderEpochResponse =
        conn.call(ApiKey::OffsetForLeaderEpoch, &request, version);
    assert_eq!(response.topics.len(), asks.len());
    response
        .topics
        .iter()
        .zip(asks)
        .map(|(t, ask)| {
            assert_eq!(t.topic.0.as_str(), ask.0);
            let p = &t.partitions[0];
            assert_eq!(p.partition, ask.1);
            (p.error_code, p.leader_epoch, p.end_offset)
        })
        .collect()
}

#[test]
fn end_offsets_for_leader_epochs_and_fencing() {
    let mut broker = TestBroker::start(BrokerOpts::default());
    let topic = unique_topic("epochs");
    let mut conn = Connection::connect(&broker.bootstrap(), TIMEOUT);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(&topic))
            .with_num_partitions(1)
            .with_replication_factor(-1)]);
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, &create, 7);
    assert_eq!(created.topics[0].error_code, 0);

    // The leader's epoch starts at the log end when it takes the partition, so an empty
    // log already knows epoch 0. Kafka 4.1.1 answers the same once its broker has the
    // new partition; until then NOT_LEADER_OR_FOLLOWER or UNKNOWN_LEADER_EPOCH, which
    // clients retry.
    let first = wait_until(
        "the new partition's leader epoch",
        TIMEOUT,
        || match end_offsets(&mut conn, 4, &[(&topic, 0, 0, 0)])[..] {
            [answer @ (0, ..)] => Ok(answer),
            ref other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(first, (0, 0, 0));
    produce(&mut conn, &topic, 3);
    produce(&mut conn, &topic, 2);

    let asks = [
        // The current epoch (0, this single node's only one): the log end.
        (topic.as_str(), 0, 0, 0),
        (topic.as_str(), 0, -1, 0),
        // An epoch past every known one: undefined.
        (topic.as_str(), 0, 0, 7),
        // The client's current epoch is newer than the leader's.
        (topic.as_str(), 0, 1, 0),
        (topic.as_str(), 5, 0, 0),
        ("no-such-topic", 0, 0, 0),
    ];
    let expected = vec![
        (0, 0, 5),
        (0, 0, 5),
        (0, -1, -1),
        (UNKNOWN_LEADER_EPOCH, -1, -1),
        (UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
        (UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
    ];
    for version in [2, 3, 4] {
        assert_eq!(
            end_offsets(&mut conn, version, &asks),
            expected,
            "v{version}"
        );
    }
    drop(conn);

    // The history is on disk (leader-epoch-checkpoint): the same answers after a restart.
    broker.restart();
    let mut conn = Connection::connect(&broker.bootstrap(), TIMEOUT);
    // Epoch 0 still ends at 5. (Kafka 4.1.1 answers so from epoch 0's end: its only
    // broker's return elects a leader in epoch 1.)
    let kept = wait_until(
        "the partition back after the restart",
        TIMEOUT,
        || match end_offsets(&mut conn, 4, &[(&topic, 0, -1, 0)])[..] {
            [answer @ (0, ..)] => Ok(answer),
            ref other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(kept, (0, 0, 5), "after restart");
    // As on Kafka, the broker's return starts a new leader epoch at the log end: epoch 0
    // still ends at 5 after the next batch, which the new epoch writes.
    produce(&mut conn, &topic, 1);
    assert_eq!(
        end_offsets(&mut conn, 4, &[(&topic, 0, -1, 0)]),
        vec![(0, 0, 5)],
        "epoch 0 after a new batch"
    );
}
