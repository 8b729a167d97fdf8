//! Internal topics over the raw wire: a client cannot create `__consumer_offsets` in
//! another shape (explicitly or by a Metadata auto-create), produce to it, or delete it
//! (by name or by id), and no other internal topic can be created by a client. After all
//! that the group coordinator still works on the offsets topic the broker created.
//!
//! Produce and create: as Apache Kafka (INVALID_TOPIC_EXCEPTION "Cannot append to
//! internal topic"; `__consumer_offsets` always has `offsets.topic.num.partitions`).
//! Delete: Kafka's KRaft controller would delete it (its CLI refuses client-side);
//! Millrace refuses in the broker with the produce's error code.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{now_ms, BrokerOpts, TestBroker};

const OFFSETS: &str = "__consumer_offsets";
const SHARDS: i32 = 5;

const NONE: i16 = 0;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REQUEST: i16 = 42;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn create(conn: &mut Connection, topic: &str, partitions: i32) -> (i16, i32) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)]);
    let response: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, &request, 7);
    let result = &response.topics[0];
    (result.error_code, result.num_partitions)
}

/// One topic's entry in a Metadata v12 answer that may auto-create it.
fn metadata(conn: &mut Connection, topic: &str) -> MetadataResponseTopic {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ]))
        .with_allow_auto_topic_creation(true);
    let response: MetadataResponse = conn.call(ApiKey::Metadata, &request, 12);
    response.topics.into_iter().next().expect("one topic")
}

fn one_record_batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key: Some(Bytes::from_static(b"not-a-group-key")),
        value: Some(Bytes::from_static(b"junk")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

fn produce(conn: &mut Connection, topic: &str) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(one_record_batch()))])]);
    let response: ProduceResponse = conn.call(ApiKey::Produce, &request, 9);
    response.responses[0].partition_responses[0].error_code
}

fn delete(conn: &mut Connection, state: DeleteTopicState) -> i16 {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![state]);
    let response: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, &request, 6);
    response.responses[0].error_code
}

#[test]
fn internal_topics_keep_their_shape_and_refuse_client_writes_and_deletes() {
    let broker = TestBroker::start_millrace(
        BrokerOpts::default()
            .partitions(1)
            .set("offsets.topic.num.partitions", &SHARDS.to_string()),
    );
    let mut conn = Connection::connect(&broker.bootstrap(), Duration::from_secs(15));

    // Wrong shape or another internal topic: refused before anything exists.
    assert_eq!(create(&mut conn, OFFSETS, 1).0, INVALID_PARTITIONS);
    assert_eq!(
        create(&mut conn, "__transaction_state", -1).0,
        INVALID_REQUEST
    );
    // Produce to an internal topic is refused whether or not it exists yet.
    assert_eq!(produce(&mut conn, OFFSETS), INVALID_TOPIC_EXCEPTION);

    // A consumer's Metadata auto-create brings the offsets topic in its own shape, not
    // with num.partitions=1.
    let created = metadata(&mut conn, OFFSETS);
    assert_eq!(created.error_code, NONE);
    assert_eq!(created.partitions.len(), SHARDS as usize);
    assert!(created.is_internal, "is_internal");

    assert_eq!(produce(&mut conn, OFFSETS), INVALID_TOPIC_EXCEPTION);
    assert_eq!(
        delete(
            &mut conn,
            DeleteTopicState::default().with_name(Some(name(OFFSETS)))
        ),
        INVALID_TOPIC_EXCEPTION
    );
    assert_eq!(
        delete(
            &mut conn,
            DeleteTopicState::default().with_topic_id(created.topic_id)
        ),
        INVALID_TOPIC_EXCEPTION
    );
    let still = metadata(&mut conn, OFFSETS);
    assert_eq!(still.error_code, NONE);
    assert_eq!(still.partitions.len(), SHARDS as usize);
    assert_eq!(still.topic_id, created.topic_id);

    // The coordinator uses the topic the broker created.
    let find: FindCoordinatorResponse = conn.call(
        ApiKey::FindCoordinator,
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_static_str("g-internal")]),
        4,
    );
    assert_eq!(find.coordinators[0].error_code, NONE);
    assert!(find.coordinators[0].node_id.0 >= 0);
}
