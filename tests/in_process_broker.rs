//! A real broker run in-process on a free port, spoken to over TCP with the protocol
//! crate's client encoding.
//!
//! Every API version that ApiVersions advertises gets a well-formed answer: sarama and
//! franz-go use exactly the advertised ranges, so a version that is listed but fails to
//! encode (a field set that the version lacks) breaks real clients. And the group
//! coordinator stays consistent with its log when a write fails.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use millrace::config::BrokerConfig;
use millrace::log::batch::{encode_uncompressed, PlainRecord, ProducerIdentity};
use millrace::protocol::supported_versions;

const TIMEOUT: Duration = Duration::from_secs(20);

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    async fn call(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        self.send(api_key, version, body).await;
        self.receive(api_key, version, self.correlation_id).await
    }

    /// Writes one request without waiting for its answer (pipelining).
    async fn send(&mut self, api_key: ApiKey, version: i16, body: RequestKind) {
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
    }

    /// Reads the answer to the request sent with `correlation_id`.
    async fn receive(
        &mut self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> ResponseKind {
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
            header, correlation_id,
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
    let record = PlainRecord {
        key: None,
        value: Some(Bytes::from(value.to_string())),
        timestamp_ms: 1_700_000_000_000,
    };
    encode_uncompressed(&[record], ProducerIdentity::NONE).unwrap()
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

struct RunningBroker {
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), millrace::broker::BrokerError>>,
    client: Client,
}

async fn start_broker(extra: &[&str]) -> RunningBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut overrides = vec![
        "listeners=PLAINTEXT://127.0.0.1:0".to_string(),
        format!("log.dirs={}", dir.path().display()),
        "num.partitions=1".to_string(),
        // The records carry 2023 timestamps: time retention must not remove them when a
        // test runs past the first retention check.
        "log.retention.ms=-1".to_string(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
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
    let client = Client {
        stream: TcpStream::connect(addr).await.unwrap(),
        correlation_id: 0,
    };
    RunningBroker {
        dir,
        shutdown,
        server,
        client,
    }
}

impl RunningBroker {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(TIMEOUT, self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_answers() {
    let mut broker = start_broker(&[]).await;
    let client = &mut broker.client;

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

    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(0)
                    .with_leader_epoch(0)]),
        ]);
        let ResponseKind::OffsetForLeaderEpoch(r) = client
            .call(
                ApiKey::OffsetForLeaderEpoch,
                v,
                RequestKind::OffsetForLeaderEpoch(request),
            )
            .await
        else {
            unreachable!()
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.leader_epoch, p.end_offset),
            (0, 0, produced),
            "OffsetForLeaderEpoch v{v}"
        );
    }

    for (count, v) in (2..).zip(versions(ApiKey::CreatePartitions)) {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name("t"))
                .with_count(count)
                .with_assignments(None)]);
        let ResponseKind::CreatePartitions(r) = client
            .call(
                ApiKey::CreatePartitions,
                v,
                RequestKind::CreatePartitions(request),
            )
            .await
        else {
            unreachable!()
        };
        assert_eq!(
            r.results[0].error_code, 0,
            "CreatePartitions v{v}: {:?}",
            r.results[0].error_message
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

    for v in versions(ApiKey::DescribeTopicPartitions) {
        let request = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                describe_topic_partitions_request::TopicRequest::default()
                    .with_name(topic_name("t")),
            ])
            .with_response_partition_limit(10);
        let ResponseKind::DescribeTopicPartitions(r) = client
            .call(
                ApiKey::DescribeTopicPartitions,
                v,
                RequestKind::DescribeTopicPartitions(request),
            )
            .await
        else {
            unreachable!()
        };
        let topic = &r.topics[0];
        // The CreatePartitions cases above grew "t" from 1 partition to 1 + versions.
        let partitions = 1 + versions(ApiKey::CreatePartitions).count();
        assert_eq!(
            (topic.error_code, topic.topic_id, topic.partitions.len()),
            (0, topic_id, partitions),
            "DescribeTopicPartitions v{v}"
        );
    }

    // Last: each version moves the log start of "t" one further.
    for (low_watermark, v) in (1..).zip(versions(ApiKey::DeleteRecords)) {
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(low_watermark),
                ])]);
        let ResponseKind::DeleteRecords(r) = client
            .call(
                ApiKey::DeleteRecords,
                v,
                RequestKind::DeleteRecords(request),
            )
            .await
        else {
            unreachable!()
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.low_watermark),
            (0, low_watermark),
            "DeleteRecords v{v}"
        );
    }

    // Every partition (null topics), or only those asked for; unknown ones left out.
    let data_dir = std::path::absolute(broker.dir.path()).unwrap();
    for v in versions(ApiKey::DescribeLogDirs) {
        let asked = describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(topic_name("t"))
            .with_partitions(vec![0, 999]);
        let absent = describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(topic_name("absent"))
            .with_partitions(vec![0]);
        for (topics, partitions) in [
            (None, 1 + versions(ApiKey::CreatePartitions).count()),
            (Some(vec![asked, absent]), 1),
        ] {
            let request = DescribeLogDirsRequest::default().with_topics(topics);
            let ResponseKind::DescribeLogDirs(r) = client
                .call(
                    ApiKey::DescribeLogDirs,
                    v,
                    RequestKind::DescribeLogDirs(request),
                )
                .await
            else {
                unreachable!()
            };
            assert_eq!(
                (r.error_code, r.results.len()),
                (0, 1),
                "DescribeLogDirs v{v}"
            );
            let dir = &r.results[0];
            assert_eq!(dir.error_code, 0, "DescribeLogDirs v{v}");
            assert_eq!(dir.log_dir.as_str(), data_dir.to_str().unwrap());
            let t = dir
                .topics
                .iter()
                .find(|t| t.name.0.as_str() == "t")
                .unwrap();
            assert_eq!(t.partitions.len(), partitions, "DescribeLogDirs v{v}");
            let p = &t.partitions[0];
            assert_eq!(
                (p.partition_index, p.offset_lag, p.is_future_key),
                (0, 0, false)
            );
            assert!(p.partition_size > 0, "DescribeLogDirs v{v}: {p:?}");
            if v >= 4 {
                assert!(dir.total_bytes >= dir.usable_bytes && dir.usable_bytes > 0);
            }
        }
    }

    broker.stop().await;
}

fn group(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Forms a one-member group at JoinGroup version `v` (two steps from v4: KIP-394) and
/// syncs it; returns (member id, generation).
async fn form_group(client: &mut Client, group_id: &str, v: i16) -> (StrBytes, i32) {
    let join = |member_id: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(group(group_id))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(member_id)
            .with_group_instance_id(None)
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(b"subscription"))])
    };
    let ResponseKind::JoinGroup(mut r) = client
        .call(
            ApiKey::JoinGroup,
            v,
            RequestKind::JoinGroup(join(StrBytes::default())),
        )
        .await
    else {
        unreachable!()
    };
    if v >= 4 {
        assert_eq!(r.error_code, 79, "JoinGroup v{v}: MEMBER_ID_REQUIRED first");
        let ResponseKind::JoinGroup(again) = client
            .call(
                ApiKey::JoinGroup,
                v,
                RequestKind::JoinGroup(join(r.member_id.clone())),
            )
            .await
        else {
            unreachable!()
        };
        r = again;
    }
    assert_eq!(r.error_code, 0, "JoinGroup v{v}");
    assert_eq!(
        r.leader, r.member_id,
        "JoinGroup v{v}: the only member leads"
    );
    let sync_version = v.min(5);
    let sync = SyncGroupRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id(r.generation_id)
        .with_member_id(r.member_id.clone())
        .with_group_instance_id(None)
        .with_protocol_type(if sync_version >= 5 {
            Some(text("consumer"))
        } else {
            None
        })
        .with_protocol_name(if sync_version >= 5 {
            Some(text("range"))
        } else {
            None
        })
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(r.member_id.clone())
            .with_assignment(Bytes::from_static(b"assignment"))]);
    let ResponseKind::SyncGroup(s) = client
        .call(
            ApiKey::SyncGroup,
            sync_version,
            RequestKind::SyncGroup(sync),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(s.error_code, 0, "SyncGroup v{sync_version}");
    assert_eq!(
        &s.assignment[..],
        b"assignment",
        "SyncGroup v{sync_version}"
    );
    (r.member_id, r.generation_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_group_api_version_answers() {
    let mut broker = start_broker(&["group.initial.rebalance.delay.ms=0"]).await;
    let client = &mut broker.client;
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name("t"))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create))
        .await;

    for v in versions(ApiKey::FindCoordinator) {
        let request = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![text("a"), text("b")])
        } else {
            FindCoordinatorRequest::default().with_key(text("a"))
        };
        let ResponseKind::FindCoordinator(r) = client
            .call(
                ApiKey::FindCoordinator,
                v,
                RequestKind::FindCoordinator(request),
            )
            .await
        else {
            unreachable!()
        };
        if v >= 4 {
            assert_eq!(r.coordinators.len(), 2, "FindCoordinator v{v}");
            assert!(r
                .coordinators
                .iter()
                .all(|c| c.error_code == 0 && c.node_id.0 == 1));
        } else {
            assert_eq!((r.error_code, r.node_id.0), (0, 1), "FindCoordinator v{v}");
        }
    }

    let mut members = Vec::new();
    for v in versions(ApiKey::JoinGroup) {
        let group_id = format!("g{v}");
        let (member_id, generation) = form_group(client, &group_id, v).await;
        members.push((group_id, member_id, generation));
    }
    let (group_id, member_id, generation) = members[0].clone();

    for v in versions(ApiKey::Heartbeat) {
        let request = HeartbeatRequest::default()
            .with_group_id(group(&group_id))
            .with_generation_id(generation)
            .with_member_id(member_id.clone())
            .with_group_instance_id(None);
        let ResponseKind::Heartbeat(r) = client
            .call(ApiKey::Heartbeat, v, RequestKind::Heartbeat(request))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0, "Heartbeat v{v}");
    }

    for v in versions(ApiKey::OffsetCommit) {
        let request = OffsetCommitRequest::default()
            .with_group_id(group(&group_id))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member_id.clone())
            .with_group_instance_id(None)
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(v as i64)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(text("meta")))])]);
        let ResponseKind::OffsetCommit(r) = client
            .call(ApiKey::OffsetCommit, v, RequestKind::OffsetCommit(request))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
    }
    let last_commit = versions(ApiKey::OffsetCommit).last().unwrap_or(0) as i64;

    for v in versions(ApiKey::OffsetFetch) {
        let request = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group(&group_id))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic_name("t"))
                    .with_partition_indexes(vec![0])]))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group(&group_id))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partition_indexes(vec![0])]))
        };
        let ResponseKind::OffsetFetch(r) = client
            .call(ApiKey::OffsetFetch, v, RequestKind::OffsetFetch(request))
            .await
        else {
            unreachable!()
        };
        let (offset, metadata) = if v >= 8 {
            let p = &r.groups[0].topics[0].partitions[0];
            (p.committed_offset, p.metadata.clone())
        } else {
            let p = &r.topics[0].partitions[0];
            (p.committed_offset, p.metadata.clone())
        };
        assert_eq!(offset, last_commit, "OffsetFetch v{v}");
        assert_eq!(metadata.as_deref(), Some("meta"), "OffsetFetch v{v}");
    }

    for v in versions(ApiKey::DescribeGroups) {
        let request = DescribeGroupsRequest::default().with_groups(vec![group(&group_id)]);
        let ResponseKind::DescribeGroups(r) = client
            .call(
                ApiKey::DescribeGroups,
                v,
                RequestKind::DescribeGroups(request),
            )
            .await
        else {
            unreachable!()
        };
        let g = &r.groups[0];
        assert_eq!(
            (g.error_code, g.group_state.as_str(), g.members.len()),
            (0, "Stable", 1),
            "DescribeGroups v{v}"
        );
    }

    for v in versions(ApiKey::ListGroups) {
        let ResponseKind::ListGroups(r) = client
            .call(
                ApiKey::ListGroups,
                v,
                RequestKind::ListGroups(ListGroupsRequest::default()),
            )
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0, "ListGroups v{v}");
        assert_eq!(r.groups.len(), members.len(), "ListGroups v{v}");
    }

    for (i, v) in versions(ApiKey::LeaveGroup).enumerate() {
        let (group_id, member_id, _) = &members[i];
        let request = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group(group_id))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(member_id.clone())
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group(group_id))
                .with_member_id(member_id.clone())
        };
        let ResponseKind::LeaveGroup(r) = client
            .call(ApiKey::LeaveGroup, v, RequestKind::LeaveGroup(request))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0, "LeaveGroup v{v}");
    }

    for v in versions(ApiKey::OffsetDelete) {
        let request = OffsetDeleteRequest::default()
            .with_group_id(group(&group_id))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])]);
        let ResponseKind::OffsetDelete(r) = client
            .call(ApiKey::OffsetDelete, v, RequestKind::OffsetDelete(request))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0, "OffsetDelete v{v}");
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetDelete v{v}");
    }

    for (i, v) in versions(ApiKey::DeleteGroups).enumerate() {
        let (group_id, _, _) = &members[i];
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group(group_id)]);
        let ResponseKind::DeleteGroups(r) = client
            .call(ApiKey::DeleteGroups, v, RequestKind::DeleteGroups(request))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{v}");
    }

    broker.stop().await;
}

/// The committed offsets of group "g" on topic "wide" for these partitions.
async fn committed_offsets(client: &mut Client, partitions: &[i32]) -> Vec<i64> {
    let request =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group("g"))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name("wide"))
                .with_partition_indexes(partitions.to_vec())]))]);
    let ResponseKind::OffsetFetch(r) = client
        .call(ApiKey::OffsetFetch, 9, RequestKind::OffsetFetch(request))
        .await
    else {
        unreachable!()
    };
    r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

/// A commit whose records exceed `__consumer_offsets`' max.message.bytes cannot be
/// written: the client must get INVALID_COMMIT_OFFSET_SIZE as from Kafka, the commit must not appear in OffsetFetch
/// (the shard reloads from its log), and the group must keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_write_leaves_the_coordinator_consistent() {
    let mut broker = start_broker(&["group.initial.rebalance.delay.ms=0"]).await;
    let client = &mut broker.client;
    let partitions = 400;
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name("wide"))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create))
        .await;
    let (member_id, generation) = form_group(client, "g", 9).await;

    let commit = |offset: i64, metadata_bytes: usize, count: i32| {
        OffsetCommitRequest::default()
            .with_group_id(group("g"))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member_id.clone())
            .with_group_instance_id(None)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("wide"))
                .with_partitions(
                    (0..count)
                        .map(|p| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(-1)
                                .with_committed_metadata(Some(text(&"m".repeat(metadata_bytes))))
                        })
                        .collect(),
                )])
    };

    let ResponseKind::OffsetCommit(ok) = client
        .call(
            ApiKey::OffsetCommit,
            9,
            RequestKind::OffsetCommit(commit(5, 10, partitions)),
        )
        .await
    else {
        unreachable!()
    };
    assert!(ok.topics[0].partitions.iter().all(|p| p.error_code == 0));
    assert_eq!(
        committed_offsets(client, &[0, partitions - 1]).await,
        vec![5, 5]
    );

    // 400 offsets with 4000 bytes of metadata each: about 1.6 MB of records.
    let ResponseKind::OffsetCommit(too_big) = client
        .call(
            ApiKey::OffsetCommit,
            9,
            RequestKind::OffsetCommit(commit(9, 4000, partitions)),
        )
        .await
    else {
        unreachable!()
    };
    assert!(
        too_big.topics[0]
            .partitions
            .iter()
            .all(|p| p.error_code == 28),
        "INVALID_COMMIT_OFFSET_SIZE for a commit too large to write, as in Kafka"
    );
    assert_eq!(
        committed_offsets(client, &[0, partitions - 1]).await,
        vec![5, 5],
        "the unwritten commit is not visible"
    );

    // The reloaded shard restored the group from its log: the same member, in the same
    // generation, commits again.
    let again = commit(7, 10, partitions);
    let ResponseKind::OffsetCommit(ok) = client
        .call(ApiKey::OffsetCommit, 9, RequestKind::OffsetCommit(again))
        .await
    else {
        unreachable!()
    };
    assert!(ok.topics[0].partitions.iter().all(|p| p.error_code == 0));
    assert_eq!(
        committed_offsets(client, &[0, partitions - 1]).await,
        vec![7, 7]
    );
    broker.stop().await;
}

async fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let ResponseKind::CreateTopics(r) = client
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create))
        .await
    else {
        unreachable!()
    };
    assert_eq!(r.topics[0].error_code, 0, "create {name}");
}

fn produce_request(topic: &str, records: Bytes) -> RequestKind {
    produce_request_to(&[topic], records)
}

/// One produce request with `records` for partition 0 of each of `topics`, in order.
fn produce_request_to(topics: &[&str], records: Bytes) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(
                topics
                    .iter()
                    .map(|topic| {
                        TopicProduceData::default()
                            .with_name(topic_name(topic))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(records.clone()))])
                    })
                    .collect(),
            ),
    )
}

/// Appends run on a blocking thread after an await; a connection's pipelined idempotent
/// batches must still be appended in request order (else OUT_OF_ORDER_SEQUENCE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_idempotent_produce_keeps_request_order() {
    let mut broker = start_broker(&[]).await;
    let client = &mut broker.client;
    create_topic(client, "ordered", 1).await;
    let ResponseKind::InitProducerId(pid) = client
        .call(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(pid.error_code, 0);
    let requests = 200;
    let first_correlation_id = client.correlation_id + 1;
    for sequence in 0..requests {
        let record = PlainRecord {
            key: None,
            value: Some(Bytes::from(format!("m{sequence}"))),
            timestamp_ms: 1_700_000_000_000,
        };
        let producer = ProducerIdentity {
            producer_id: pid.producer_id.0,
            producer_epoch: pid.producer_epoch,
            base_sequence: sequence,
        };
        let records = encode_uncompressed(&[record], producer).unwrap();
        client
            .send(ApiKey::Produce, 9, produce_request("ordered", records))
            .await;
    }
    for i in 0..requests {
        let ResponseKind::Produce(r) = client
            .receive(ApiKey::Produce, 9, first_correlation_id + i)
            .await
        else {
            unreachable!()
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "request {i}: {:?}", p.error_message);
        assert_eq!(p.base_offset, i as i64, "request {i}");
    }
    broker.stop().await;
}

/// A slow disk under one partition (its appends stalled for seconds, several queued):
/// produce to another partition, heartbeats and offset commits must still be answered
/// at once. Before appends left the async workers, the stalled appends (and the appends
/// waiting for the partition lock) held every worker thread.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_partition_does_not_delay_other_partitions_or_heartbeats() {
    use std::time::Instant;
    const STALL_MS: u64 = 2_000;
    const STALLED_PRODUCERS: usize = 3;
    const BOUND: Duration = Duration::from_millis(1_000);

    let mut broker = start_broker(&["group.initial.rebalance.delay.ms=0"]).await;
    let addr = broker.client.stream.peer_addr().unwrap();
    let client = &mut broker.client;
    create_topic(client, "stalled", 1).await;
    create_topic(client, "fast", 1).await;
    let (member_id, generation) = form_group(client, "g", 9).await;

    let scenario = fail::FailScenario::setup();
    fail::cfg(
        "partition::append::stall",
        &format!("return(stalled:{STALL_MS})"),
    )
    .unwrap();
    let stalled: Vec<_> = (0..STALLED_PRODUCERS)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = Client {
                    stream: TcpStream::connect(addr).await.unwrap(),
                    correlation_id: 0,
                };
                let started = Instant::now();
                // The stalled partition first: this request's drainer sticks there
                // while "fast" waits in its list; later appends to "fast" must not.
                let ResponseKind::Produce(r) = c
                    .call(
                        ApiKey::Produce,
                        9,
                        produce_request_to(&["stalled", "fast"], batch(&format!("slow{i}"))),
                    )
                    .await
                else {
                    unreachable!()
                };
                let codes: Vec<i16> = r
                    .responses
                    .iter()
                    .map(|t| t.partition_responses[0].error_code)
                    .collect();
                (started.elapsed(), codes)
            })
        })
        .collect();

    // Rounds of fast-partition produce, heartbeat and commit until every stalled produce
    // is answered; each call is timed.
    let mut rounds = 0;
    let mut worst = (Duration::ZERO, "");
    let test_started = Instant::now();
    while !stalled.iter().all(|h| h.is_finished()) {
        assert!(
            test_started.elapsed() < TIMEOUT,
            "stalled produces never finished"
        );
        let started = Instant::now();
        let ResponseKind::Produce(r) = client
            .call(ApiKey::Produce, 9, produce_request("fast", batch("fast")))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        worst = worst.max((started.elapsed(), "produce"));

        let started = Instant::now();
        let heartbeat = HeartbeatRequest::default()
            .with_group_id(group("g"))
            .with_generation_id(generation)
            .with_member_id(member_id.clone())
            .with_group_instance_id(None);
        let ResponseKind::Heartbeat(r) = client
            .call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(heartbeat))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0);
        worst = worst.max((started.elapsed(), "heartbeat"));

        let started = Instant::now();
        let commit = OffsetCommitRequest::default()
            .with_group_id(group("g"))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member_id.clone())
            .with_group_instance_id(None)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("fast"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(rounds)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(None)])]);
        let ResponseKind::OffsetCommit(r) = client
            .call(ApiKey::OffsetCommit, 9, RequestKind::OffsetCommit(commit))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        worst = worst.max((started.elapsed(), "commit"));
        rounds += 1;
    }
    let mut slowest_stalled = Duration::ZERO;
    for handle in stalled {
        let (elapsed, error_codes) = handle.await.unwrap();
        assert_eq!(error_codes, [0, 0], "a stalled append still succeeds");
        slowest_stalled = slowest_stalled.max(elapsed);
    }
    fail::remove("partition::append::stall");
    drop(scenario);
    println!(
        "stalled produces took up to {slowest_stalled:?}; {rounds} rounds meanwhile, worst \
         {} latency {:?}",
        worst.1, worst.0
    );
    assert!(
        worst.0 < BOUND,
        "{} took {:?} while another partition's disk was stalled",
        worst.1,
        worst.0
    );
    // The stall really overlapped the rounds: queued appends waited for earlier ones.
    assert!(slowest_stalled >= Duration::from_millis(2 * STALL_MS));
    assert!(rounds >= 3, "only {rounds} rounds ran during the stall");
    broker.stop().await;
}

/// One transactional batch (the transactional attribute bit set, CRC recomputed).
fn transactional_batch(producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Bytes {
    let record = PlainRecord {
        key: None,
        value: Some(Bytes::from_static(b"in-txn")),
        timestamp_ms: 1_700_000_000_000,
    };
    let producer = ProducerIdentity {
        producer_id,
        producer_epoch,
        base_sequence,
    };
    let mut bytes = encode_uncompressed(&[record], producer).unwrap().to_vec();
    let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | 0x10;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = millrace::log::batch::compute_crc(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

fn markers_request(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    topic: &str,
) -> RequestKind {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![0, 7])]),
    ]))
}

/// read_committed Fetch of partition 0 from offset 0: (LSO, aborted (pid, first), batch
/// base offsets).
async fn fetch_committed(client: &mut Client, topic: &str) -> (i64, Vec<(i64, i64)>, Vec<i64>) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_isolation_level(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(r) = client
        .call(ApiKey::Fetch, 12, RequestKind::Fetch(request))
        .await
    else {
        unreachable!()
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let aborted = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    let mut records = p.records.clone().unwrap_or_default();
    let mut offsets = Vec::new();
    while records.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut records).unwrap();
        offsets.extend(set.records.iter().map(|r| r.offset));
    }
    (p.last_stable_offset, aborted, offsets)
}

/// Transactions end to end without a coordinator: a transactional produce holds the
/// last stable offset (Fetch, ListOffsets read_committed, DescribeProducers show it),
/// WriteTxnMarkers to this broker aborts it, and read_committed then reads the records
/// with the aborted transaction listed. Without a coordinator the partition cannot
/// verify the transaction (KIP-890), so verification is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_aborted_by_write_txn_markers_is_reported_to_read_committed() {
    let mut broker = start_broker(&["transaction.partition.verification.enable=false"]).await;
    let client = &mut broker.client;
    create_topic(client, "txn", 1).await;
    let ResponseKind::InitProducerId(pid) = client
        .call(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        )
        .await
    else {
        unreachable!()
    };
    let (producer_id, epoch) = (pid.producer_id.0, pid.producer_epoch);
    // Kafka: transactional records need the request's transactional id.
    let ResponseKind::Produce(r) = client
        .call(
            ApiKey::Produce,
            11,
            produce_request("txn", transactional_batch(producer_id, epoch, 0)),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 53);
    for (records, expected_offset) in [
        (batch("before"), 0),
        (transactional_batch(producer_id, epoch, 0), 1),
    ] {
        let RequestKind::Produce(request) = produce_request("txn", records) else {
            unreachable!()
        };
        let request = request.with_transactional_id(Some(TransactionalId(text("tx"))));
        let ResponseKind::Produce(r) = client
            .call(ApiKey::Produce, 11, RequestKind::Produce(request))
            .await
        else {
            unreachable!()
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, expected_offset),
            "{:?}",
            p.error_message
        );
    }
    assert_eq!(fetch_committed(client, "txn").await, (1, vec![], vec![0]));

    let list = |isolation_level: i8| {
        RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_isolation_level(isolation_level)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name("txn"))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])]),
        )
    };
    for (isolation_level, latest) in [(0, 2), (1, 1)] {
        let ResponseKind::ListOffsets(r) = client
            .call(ApiKey::ListOffsets, 8, list(isolation_level))
            .await
        else {
            unreachable!()
        };
        assert_eq!(r.topics[0].partitions[0].offset, latest);
    }

    let describe =
        RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
            kafka_protocol::messages::describe_producers_request::TopicRequest::default()
                .with_name(topic_name("txn"))
                .with_partition_indexes(vec![0]),
        ]));
    let ResponseKind::DescribeProducers(r) = client
        .call(ApiKey::DescribeProducers, 0, describe.clone())
        .await
    else {
        unreachable!()
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.active_producers.len(), 1);
    let state = &p.active_producers[0];
    assert_eq!(
        (
            state.producer_id.0,
            state.current_txn_start_offset,
            state.last_sequence
        ),
        (producer_id, 1, 0)
    );

    // Partition 7 does not exist: its own error; partition 0 gets the marker.
    let ResponseKind::WriteTxnMarkers(r) = client
        .call(
            ApiKey::WriteTxnMarkers,
            1,
            markers_request(producer_id, epoch, 0, false, "txn"),
        )
        .await
    else {
        unreachable!()
    };
    let codes: Vec<(i32, i16)> = r.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code))
        .collect();
    assert_eq!(codes, vec![(0, 0), (7, 3)]);
    assert_eq!(r.markers[0].producer_id.0, producer_id);
    assert_eq!(
        fetch_committed(client, "txn").await,
        (3, vec![(producer_id, 1)], vec![0, 1, 2])
    );
    // A zombie coordinator's marker is fenced.
    let ResponseKind::WriteTxnMarkers(r) = client
        .call(
            ApiKey::WriteTxnMarkers,
            1,
            markers_request(producer_id, epoch, -1, true, "txn"),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(r.markers[0].topics[0].partitions[0].error_code, 52);
    let ResponseKind::DescribeProducers(r) =
        client.call(ApiKey::DescribeProducers, 0, describe).await
    else {
        unreachable!()
    };
    assert_eq!(
        r.topics[0].partitions[0].active_producers[0].current_txn_start_offset,
        -1
    );
    broker.stop().await;
}
