//! KIP-890 part 1 on the raw wire, as a transactions-v1 client: a transactional produce
//! to a partition the producer never added to its transaction is refused by the
//! partition leader's verification (`transaction.partition.verification.enable`,
//! default true), and nothing is appended; once AddPartitionsToTxn added it, the same
//! batch goes in; a Produce v12 (transactions v2) is added implicitly. The error depends on the Produce version (Kafka 4.4 passes
//! TRANSACTION_ABORTABLE only to v11 clients); each scenario runs on Kafka 4.4.0 and on
//! millrace, and the codes must match. TxnOffsetCommit likewise: the group's offsets
//! partition must be in the transaction (AddOffsetsToTxn), or, from v5, is added.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, GroupId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{now_ms, unique_topic, wait_until, BrokerOpts, Target, TestBroker};

mod common;

const TIMEOUT: Duration = Duration::from_secs(30);
const INVALID_TXN_STATE: i16 = 48;
const TRANSACTION_ABORTABLE: i16 = 120;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// One transactional record of `producer_id` at `epoch`, sequence 0.
fn txn_batch(producer_id: i64, epoch: i16) -> Bytes {
    let record = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: now_ms(),
        key: None,
        value: Some(Bytes::from_static(b"unverified?")),
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

/// The transaction coordinator is this (single) broker once FindCoordinator says so;
/// then InitProducerId with the transactional id.
fn init_producer(conn: &mut Connection, id: &str) -> (i64, i16) {
    wait_until("the transaction coordinator", TIMEOUT, || {
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![StrBytes::from_string(id.to_string())]);
        let response: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, &request, 4);
        match response.coordinators.first().map(|c| c.error_code) {
            Some(0) => Ok(()),
            other => Err(format!("FindCoordinator error {other:?}")),
        }
    });
    wait_until("InitProducerId", TIMEOUT, || {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(id)))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response: InitProducerIdResponse = conn.call(ApiKey::InitProducerId, &request, 4);
        match response.error_code {
            0 => Ok((response.producer_id.0, response.producer_epoch)),
            code => Err(format!("InitProducerId error {code}")),
        }
    })
}

fn produce(conn: &mut Connection, version: i16, id: &str, topic: &str, batch: Bytes) -> i16 {
    let request = ProduceRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response: ProduceResponse = conn.call(ApiKey::Produce, &request, version);
    response.responses[0].partition_responses[0].error_code
}

fn log_end(conn: &mut Connection, topic: &str) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let response: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, &request, 7);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0, "ListOffsets");
    partition.offset
}

/// Per Produce version tried: the code of the unverified produce. Then adds the
/// partition and checks the same batch is appended.
fn refused_codes(target: Target) -> Vec<(i16, i16)> {
    let broker = TestBroker::start_target(
        target,
        BrokerOpts::default().set("transaction.state.log.num.partitions", "1"),
    );
    let topic = unique_topic("txn-verify");
    common::admin_create(&broker.bootstrap(), &topic, 1);
    let mut conn = Connection::connect(&broker.bootstrap(), TIMEOUT);
    let id = format!("{topic}-producer");
    let (producer_id, epoch) = init_producer(&mut conn, &id);

    let mut codes = Vec::new();
    for version in [9, 11] {
        let code = produce(
            &mut conn,
            version,
            &id,
            &topic,
            txn_batch(producer_id, epoch),
        );
        codes.push((version, code));
        assert_eq!(
            log_end(&mut conn, &topic),
            0,
            "Produce v{version}: nothing appended"
        );
    }

    // Added to the transaction, the partition takes the batch.
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(&id))
        .with_v3_and_below_producer_id(ProducerId(producer_id))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(name(&topic))
            .with_partitions(vec![0])]);
    let response: AddPartitionsToTxnResponse = conn.call(ApiKey::AddPartitionsToTxn, &request, 3);
    let added =
        response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    assert_eq!(added, 0, "AddPartitionsToTxn");
    let code = produce(&mut conn, 9, &id, &topic, txn_batch(producer_id, epoch));
    assert_eq!(code, 0, "the verified produce");
    assert_eq!(log_end(&mut conn, &topic), 1);

    // Produce v12+ is a transactions-v2 client: the leader's question adds the
    // partition (AddPartitionsToTxn v5), no AddPartitionsToTxn from the client.
    let id2 = format!("{topic}-producer-v2");
    let (producer_id, epoch) = init_producer(&mut conn, &id2);
    let code = produce(&mut conn, 12, &id2, &topic, txn_batch(producer_id, epoch));
    codes.push((12, code));
    assert_eq!(log_end(&mut conn, &topic), 2);
    codes
}

/// The group coordinator is this broker once FindCoordinator says so.
fn find_group_coordinator(conn: &mut Connection, group: &str) {
    wait_until("the group coordinator", TIMEOUT, || {
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        let response: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, &request, 4);
        match response.coordinators.first().map(|c| c.error_code) {
            Some(0) => Ok(()),
            other => Err(format!("FindCoordinator error {other:?}")),
        }
    });
}

fn txn_offset_commit(
    conn: &mut Connection,
    version: i16,
    id: &str,
    (producer_id, epoch): (i64, i16),
    group: &str,
    topic: &str,
) -> i16 {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id(id))
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)
                .with_committed_leader_epoch(-1)])]);
    let response: TxnOffsetCommitResponse = conn.call(ApiKey::TxnOffsetCommit, &request, version);
    response.topics[0].partitions[0].error_code
}

/// TxnOffsetCommit codes: v3 without AddOffsetsToTxn, v3 after it, and v5 (transactions
/// v2, which adds the offsets partition itself) without it.
fn offset_commit_codes(target: Target) -> Vec<(&'static str, i16)> {
    let broker = TestBroker::start_target(
        target,
        BrokerOpts::default()
            .set("transaction.state.log.num.partitions", "1")
            .set("offsets.topic.num.partitions", "1"),
    );
    let topic = unique_topic("txn-offsets");
    common::admin_create(&broker.bootstrap(), &topic, 1);
    let mut conn = Connection::connect(&broker.bootstrap(), TIMEOUT);
    let group = format!("{topic}-group");
    find_group_coordinator(&mut conn, &group);
    let mut codes = Vec::new();

    let id = format!("{topic}-v1");
    let producer = init_producer(&mut conn, &id);
    let code = txn_offset_commit(&mut conn, 3, &id, producer, &group, &topic);
    codes.push(("v3 not added", code));
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id(&id))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(StrBytes::from_string(group.clone())));
    let response: AddOffsetsToTxnResponse = conn.call(ApiKey::AddOffsetsToTxn, &request, 3);
    assert_eq!(response.error_code, 0, "AddOffsetsToTxn");
    let code = txn_offset_commit(&mut conn, 3, &id, producer, &group, &topic);
    codes.push(("v3 added", code));

    let id2 = format!("{topic}-v2");
    let producer = init_producer(&mut conn, &id2);
    let code = txn_offset_commit(&mut conn, 5, &id2, producer, &format!("{group}-2"), &topic);
    codes.push(("v5 implicit", code));
    codes
}

/// As Kafka 4.4.0 answers.
fn expected_offset_commit_codes() -> Vec<(&'static str, i16)> {
    vec![
        ("v3 not added", INVALID_TXN_STATE),
        ("v3 added", 0),
        ("v5 implicit", 0),
    ]
}

#[test]
fn transactional_offset_commits_are_verified_on_kafka() {
    let codes = offset_commit_codes(Target::Kafka);
    assert_eq!(codes, expected_offset_commit_codes());
}

#[test]
fn transactional_offset_commits_are_verified_on_millrace() {
    let codes = offset_commit_codes(Target::Millrace);
    assert_eq!(codes, expected_offset_commit_codes());
}

#[test]
fn unverified_transactional_produce_is_refused_on_kafka() {
    let codes = refused_codes(Target::Kafka);
    assert_eq!(
        codes,
        vec![(9, INVALID_TXN_STATE), (11, TRANSACTION_ABORTABLE), (12, 0)]
    );
}

#[test]
fn unverified_transactional_produce_is_refused_on_millrace() {
    let codes = refused_codes(Target::Millrace);
    assert_eq!(
        codes,
        vec![(9, INVALID_TXN_STATE), (11, TRANSACTION_ABORTABLE), (12, 0)]
    );
}
