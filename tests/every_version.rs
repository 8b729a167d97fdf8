//! Every API version that ApiVersions advertises gets a well-formed answer.
//!
//! sarama and franz-go use exactly the advertised ranges, so a version that is listed
//! but fails to encode (a field set that the version lacks) breaks real clients. This
//! test runs a real broker in-process on a free port and speaks each version over TCP.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use millrace::config::BrokerConfig;
use millrace::protocol::supported_versions;

const TIMEOUT: Duration = Duration::from_secs(20);

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    async fn call(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("every-version")))
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("client encode {api_key:?} v{version}: {e}"));
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).await.unwrap();

        let mut size = [0u8; 4];
        tokio::time::timeout(TIMEOUT, self.stream.read_exact(&mut size))
            .await
            .unwrap_or_else(|_| panic!("{api_key:?} v{version}: no answer"))
            .unwrap_or_else(|e| panic!("{api_key:?} v{version}: connection closed: {e}"));
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).await.unwrap();
        let mut frame = Bytes::from(frame);
        let header =
            ResponseHeader::decode_from(&mut frame, api_key.response_header_version(version));
        assert_eq!(
            header, self.correlation_id,
            "{api_key:?} v{version}: correlation id"
        );
        let response = ResponseKind::decode(api_key, &mut frame, version)
            .unwrap_or_else(|e| panic!("{api_key:?} v{version}: undecodable response: {e}"));
        assert!(
            !frame.has_remaining(),
            "{api_key:?} v{version}: trailing bytes"
        );
        response
    }
}

trait DecodeCorrelation {
    fn decode_from(buf: &mut Bytes, version: i16) -> i32;
}

impl DecodeCorrelation for ResponseHeader {
    fn decode_from(buf: &mut Bytes, version: i16) -> i32 {
        use kafka_protocol::protocol::Decodable;
        ResponseHeader::decode(buf, version).unwrap().correlation_id
    }
}

fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let range = supported_versions(api_key).expect("advertised");
    range.min..=range.max
}

fn batch(value: &str) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_answers() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = vec![
        "listeners=PLAINTEXT://127.0.0.1:0".to_string(),
        format!("log.dirs={}", dir.path().display()),
        "num.partitions=1".to_string(),
    ];
    let config = BrokerConfig::load(None, Vec::new(), &overrides).unwrap();
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(millrace::broker::serve(
        config,
        shutdown.clone(),
        Some(ready_tx),
    ));
    let addr = tokio::time::timeout(TIMEOUT, ready_rx)
        .await
        .unwrap()
        .unwrap();
    let mut client = Client {
        stream: TcpStream::connect(addr).await.unwrap(),
        correlation_id: 0,
    };

    for v in versions(ApiKey::ApiVersions) {
        let ResponseKind::ApiVersions(r) = client
            .call(
                ApiKey::ApiVersions,
                v,
                RequestKind::ApiVersions(ApiVersionsRequest::default()),
            )
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
        assert!(r
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16));
    }

    let topic_id = {
        let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic_name("t"))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
        let ResponseKind::CreateTopics(r) = client
            .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.topics[0].error_code, 0);
        r.topics[0].topic_id
    };
    assert_ne!(topic_id, Uuid::nil());

    for v in versions(ApiKey::CreateTopics) {
        let name = format!("created-v{v}");
        let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(&name))
            .with_num_partitions(2)
            .with_replication_factor(1)]);
        let ResponseKind::CreateTopics(r) = client
            .call(ApiKey::CreateTopics, v, RequestKind::CreateTopics(create))
            .await
        else {
            unreachable!()
        };
        assert_eq!(
            r.topics[0].error_code, 0,
            "CreateTopics v{v}: {:?}",
            r.topics[0].error_message
        );
    }

    for v in versions(ApiKey::Metadata) {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("t"))),
        ]));
        let ResponseKind::Metadata(r) = client
            .call(ApiKey::Metadata, v, RequestKind::Metadata(request))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.topics.len(), 1, "Metadata v{v}");
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
        assert_eq!(r.topics[0].partitions.len(), 1, "Metadata v{v}");
        assert_eq!(r.brokers.len(), 1, "Metadata v{v}");
    }

    let mut produced = 0i64;
    for v in versions(ApiKey::Produce) {
        let topic = if v >= 13 {
            TopicProduceData::default().with_topic_id(topic_id)
        } else {
            TopicProduceData::default().with_name(topic_name("t"))
        };
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![topic.with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&format!("v{v}")))),
            ])]);
        let ResponseKind::Produce(r) = client
            .call(ApiKey::Produce, v, RequestKind::Produce(request))
            .await
        else {
            unreachable!()
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "Produce v{v}: {:?}", p.error_message);
        assert_eq!(p.base_offset, produced, "Produce v{v}");
        produced += 1;
    }

    for v in versions(ApiKey::Fetch) {
        let topic = if v >= 13 {
            FetchTopic::default().with_topic_id(topic_id)
        } else {
            FetchTopic::default().with_topic(topic_name("t"))
        };
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic.with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(1)
                .with_partition_max_bytes(1 << 20)])]);
        let ResponseKind::Fetch(r) = client
            .call(ApiKey::Fetch, v, RequestKind::Fetch(request))
            .await
        else {
            unreachable!()
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert_eq!(p.high_watermark, produced, "Fetch v{v}");
        let mut records = p.records.clone().expect("records");
        let set = RecordBatchDecoder::decode(&mut records).unwrap();
        assert_eq!(set.records[0].offset, 1, "Fetch v{v}");
    }

    for v in versions(ApiKey::ListOffsets) {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let ResponseKind::ListOffsets(r) = client
            .call(ApiKey::ListOffsets, v, RequestKind::ListOffsets(request))
            .await
        else {
            unreachable!()
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset), (0, produced), "ListOffsets v{v}");
    }

    for v in versions(ApiKey::InitProducerId) {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let ResponseKind::InitProducerId(r) = client
            .call(
                ApiKey::InitProducerId,
                v,
                RequestKind::InitProducerId(request),
            )
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert!(r.producer_id.0 >= 0, "InitProducerId v{v}");
    }

    for v in versions(ApiKey::DescribeConfigs) {
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t")),
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1")),
            ]);
        let ResponseKind::DescribeConfigs(r) = client
            .call(
                ApiKey::DescribeConfigs,
                v,
                RequestKind::DescribeConfigs(request),
            )
            .await
        else {
            unreachable!()
        };
        assert!(
            r.results
                .iter()
                .all(|res| res.error_code == 0 && !res.configs.is_empty()),
            "DescribeConfigs v{v}: {:?}",
            r.results
                .iter()
                .map(|r| (r.error_code, r.error_message.clone(), r.configs.len()))
                .collect::<Vec<_>>()
        );
    }

    for v in versions(ApiKey::DescribeCluster) {
        let ResponseKind::DescribeCluster(r) = client
            .call(
                ApiKey::DescribeCluster,
                v,
                RequestKind::DescribeCluster(DescribeClusterRequest::default()),
            )
            .await
        else {
            unreachable!()
        };
        assert_eq!(
            (r.error_code, r.brokers.len()),
            (0, 1),
            "DescribeCluster v{v}"
        );
    }

    for v in versions(ApiKey::DeleteTopics) {
        let name = format!("created-v{}", v + 1);
        let request = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name(&name)))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
        };
        let ResponseKind::DeleteTopics(r) = client
            .call(ApiKey::DeleteTopics, v, RequestKind::DeleteTopics(request))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    }

    shutdown.cancel();
    tokio::time::timeout(TIMEOUT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
