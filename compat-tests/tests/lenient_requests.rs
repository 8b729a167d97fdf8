//! Requests are read as Kafka reads them: bytes after the known fields are ignored, and
//! tagged fields the schema does not know are skipped. librdkafka 2.16's all-topics
//! Metadata v13 request carries 3 bytes after its fields (confluent-kafka-python's
//! `list_topics` sends it); a broker that refuses it breaks that client.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use millrace_compat_tests::wire::{decode_response, frame, round_trip, Connection, CLIENT_ID};
use millrace_compat_tests::{unique_topic, BrokerOpts, TestBroker};

const TIMEOUT: Duration = Duration::from_secs(10);
const VERSION: i16 = 13;

/// A Metadata v13 frame asking for all topics (null list), with `header_tags` and
/// `body_tags` as unknown tagged fields and `trailing` appended after the body.
fn all_topics_request(
    correlation_id: i32,
    header_tags: &[(i32, &'static [u8])],
    body_tags: &[(i32, &'static [u8])],
    trailing: &[u8],
) -> Vec<u8> {
    let mut header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    for &(tag, value) in header_tags {
        header
            .unknown_tagged_fields
            .insert(tag, Bytes::from_static(value));
    }
    let mut body = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(true);
    for &(tag, value) in body_tags {
        body.unknown_tagged_fields
            .insert(tag, Bytes::from_static(value));
    }
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ApiKey::Metadata.request_header_version(VERSION))
        .unwrap();
    body.encode(&mut buf, VERSION).unwrap();
    buf.extend_from_slice(trailing);
    frame(&buf)
}

fn topics_listed(addr: &str, request: &[u8], correlation_id: i32, case: &str) -> Vec<String> {
    let payload = round_trip(addr, request, TIMEOUT)
        .unwrap_or_else(|e| panic!("{case}: no answer (connection closed?): {e}"));
    let (header, response) =
        decode_response::<MetadataResponse>(ApiKey::Metadata, &payload, VERSION)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(header.correlation_id, correlation_id, "{case}");
    assert!(!response.brokers.is_empty(), "{case}: no brokers listed");
    response
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect()
}

#[test]
fn trailing_bytes_and_unknown_tagged_fields_are_answered() {
    let broker = TestBroker::start(BrokerOpts::default());
    let addr = broker.bootstrap();
    let topic = unique_topic("lenient");
    let mut conn = Connection::connect(&addr, TIMEOUT);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_num_partitions(1)
            .with_replication_factor(-1)]);
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, &create, 7);
    assert_eq!(created.topics[0].error_code, 0, "create {topic}");

    let cases: [(&str, Vec<u8>); 3] = [
        (
            "all-topics Metadata v13 with 3 trailing bytes (librdkafka 2.16)",
            all_topics_request(1, &[], &[], &[0, 0, 0]),
        ),
        (
            "unknown tagged fields in the header and the body",
            all_topics_request(2, &[(77, b"hdr")], &[(4242, b"future field")], &[]),
        ),
        (
            "unknown tagged fields and trailing bytes",
            all_topics_request(3, &[], &[(9, b"")], &[1, 2, 3, 4, 5]),
        ),
    ];
    for (i, (case, request)) in cases.iter().enumerate() {
        let listed = topics_listed(&addr, request, i as i32 + 1, case);
        assert!(listed.contains(&topic), "{case}: {topic} not in {listed:?}");
    }
}
