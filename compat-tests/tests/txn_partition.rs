//! Transactions on the partition side, before a transaction coordinator exists: this
//! test plays the coordinator over raw TCP (transactional Produce, then WriteTxnMarkers
//! to the broker itself) and reads with a real librdkafka consumer, which must drop the
//! aborted transaction's records in read_committed (from the Fetch answer's
//! aborted_transactions and the ABORT marker) and see them in read_uncommitted; an
//! undecided transaction holds read_committed back at its first offset (the LSO), which
//! Kafka's kafka-transactions.sh describe-producers shows.
//! Millrace only, with `transaction.partition.verification.enable=false`: with it on (the
//! default, as Kafka 4.4) a partition refuses transactional records the coordinator did
//! not add.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{admin_create, cluster};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{
    kafka_tool, now_ms, unique_topic, wait_until, BrokerOpts, TestBroker, TestCluster,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// One batch of `values`; transactional (producer id/epoch set) when `producer` is.
fn batch(values: &[&str], producer: Option<(i64, i16)>) -> Bytes {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: producer.is_some(),
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if producer.is_some() { i as i32 } else { -1 },
            timestamp: now_ms(),
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// The test plays the coordinator, so no partition leader could verify its transaction
/// with one (KIP-890): verification is off.
fn without_verification() -> BrokerOpts {
    BrokerOpts::default().set("transaction.partition.verification.enable", "false")
}

fn produce(conn: &mut Connection, topic: &str, records: Bytes) -> i64 {
    let request = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let r: ProduceResponse = conn.call(ApiKey::Produce, &request, 11);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce: {:?}", p.error_message);
    p.base_offset
}

fn producer_id(conn: &mut Connection) -> (i64, i16) {
    // An idempotent producer id (no transactional id): no coordinator is needed.
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = conn.call(ApiKey::InitProducerId, &request, 4);
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

fn end_txn(conn: &mut Connection, topic: &str, producer: (i64, i16), commit: bool) {
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_transaction_result(commit)
            .with_coordinator_epoch(0)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![0])])]);
    let r: WriteTxnMarkersResponse = conn.call(ApiKey::WriteTxnMarkers, &request, 1);
    assert_eq!(r.markers[0].topics[0].partitions[0].error_code, 0);
}

/// (last stable offset, base offsets of the batches, aborted transactions' producer ids
/// and first offsets) of a read_committed Fetch.
fn fetch_committed(conn: &mut Connection, topic: &str) -> (i64, Vec<i64>, Vec<(i64, i64)>) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_isolation_level(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = conn.call(ApiKey::Fetch, &request, 12);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "read_committed fetch");
    let aborted = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|txn| (txn.producer_id.0, txn.first_offset))
        .collect();
    let mut records = p.records.clone().unwrap_or_default();
    let mut bases = Vec::new();
    while records.len() >= 61 {
        let base = i64::from_be_bytes(records[..8].try_into().unwrap());
        let length = i32::from_be_bytes(records[8..12].try_into().unwrap()) as usize;
        bases.push(base);
        let _ = records.split_to(12 + length);
    }
    (p.last_stable_offset, bases, aborted)
}

fn consumer(bootstrap: &str, topic: &str, isolation: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "millrace-compat-unused")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("check.crcs", "true")
        .create()
        .expect("create rdkafka consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    c
}

/// Polls `c` until `last` arrives; returns every value received.
fn values_until(c: &BaseConsumer, last: &str) -> Vec<String> {
    let mut values = Vec::new();
    wait_until(&format!("record {last}"), TIMEOUT, || {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                values.push(value);
            }
            Some(Err(e)) => return Ok(Err(e.to_string())),
            None => {}
        }
        if values.last().map(String::as_str) == Some(last) {
            Ok(Ok(()))
        } else {
            Err(format!("got {values:?}"))
        }
    })
    .expect("consume");
    values
}

#[test]
fn read_committed_librdkafka_skips_an_aborted_transaction_and_waits_for_an_open_one() {
    let broker = TestBroker::start_millrace(without_verification());
    let b = broker.bootstrap();
    let topic = unique_topic("txn");
    admin_create(&b, &topic, 1);
    let mut conn = Connection::connect(&b, TIMEOUT);
    let (committed, aborted, open) = (
        producer_id(&mut conn),
        producer_id(&mut conn),
        producer_id(&mut conn),
    );
    assert_eq!(
        produce(&mut conn, &topic, batch(&["c1", "c2"], Some(committed))),
        0
    );
    assert_eq!(produce(&mut conn, &topic, batch(&["a1"], Some(aborted))), 2);
    end_txn(&mut conn, &topic, committed, true); // 3
    end_txn(&mut conn, &topic, aborted, false); // 4
    assert_eq!(produce(&mut conn, &topic, batch(&["p"], None)), 5);
    assert_eq!(produce(&mut conn, &topic, batch(&["open"], Some(open))), 6);
    assert_eq!(produce(&mut conn, &topic, batch(&["late"], None)), 7);
    // The open transaction holds read_committed at its first offset.
    assert_eq!(
        fetch_committed(&mut conn, &topic),
        (6, vec![0, 2, 3, 4, 5], vec![(aborted.0, 2)])
    );

    // Kafka's own kafka-transactions.sh describe-producers reads DescribeProducers.
    let out = kafka_tool(
        "org.apache.kafka.tools.TransactionsCommand",
        &[
            "--bootstrap-server",
            &b,
            "describe-producers",
            "--topic",
            &topic,
            "--partition",
            "0",
        ],
        None,
    );
    out.assert_success();
    let start_offset_of = |producer: (i64, i16)| -> String {
        let row = out
            .stdout
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|row| row.first() == Some(&producer.0.to_string().as_str()))
            .unwrap_or_else(|| panic!("no row for {producer:?}: {}", out.describe()));
        // ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp
        // CurrentTransactionStartOffset
        assert_eq!(row.len(), 6, "{}", out.describe());
        assert_eq!(row[1], producer.1.to_string());
        row[5].to_string()
    };
    assert_eq!(start_offset_of(committed), "None");
    assert_eq!(start_offset_of(aborted), "None");
    assert_eq!(start_offset_of(open), "6");

    let committed_reader = consumer(&b, &topic, "read_committed");
    assert_eq!(values_until(&committed_reader, "p"), vec!["c1", "c2", "p"]);
    end_txn(&mut conn, &topic, open, true); // 8
    assert_eq!(
        values_until(&committed_reader, "late"),
        vec!["open", "late"]
    );
    let uncommitted_reader = consumer(&b, &topic, "read_uncommitted");
    assert_eq!(
        values_until(&uncommitted_reader, "late"),
        vec!["c1", "c2", "a1", "p", "open", "late"]
    );
}

/// Failover: the followers replay the leader's transactions (producer state, the open
/// transaction, the `.txnindex`), so the new leader answers read_committed as the old
/// one did and accepts the open transaction's marker.
#[test]
fn a_new_leader_keeps_the_open_transaction_and_the_aborted_one() {
    let opts = without_verification()
        .set("broker.session.timeout.ms", "3000")
        .set("broker.heartbeat.interval.ms", "500");
    let mut cluster = TestCluster::start_millrace(3, opts);
    let b = cluster.bootstrap();
    let topic = unique_topic("txn-failover");
    common::admin_create_replicated(&b, &topic, 1, 3, &[("min.insync.replicas", "2")]);
    let leader = cluster::leaders(&b, &topic).expect("leaders")[0];
    let mut conn = Connection::connect(&cluster.node(leader).bootstrap(), TIMEOUT);
    let (aborted, committed, open) = (
        producer_id(&mut conn),
        producer_id(&mut conn),
        producer_id(&mut conn),
    );
    assert_eq!(produce(&mut conn, &topic, batch(&["a1"], Some(aborted))), 0);
    assert_eq!(
        produce(&mut conn, &topic, batch(&["c1"], Some(committed))),
        1
    );
    end_txn(&mut conn, &topic, aborted, false); // 2
    end_txn(&mut conn, &topic, committed, true); // 3
    assert_eq!(produce(&mut conn, &topic, batch(&["p"], None)), 4);
    assert_eq!(produce(&mut conn, &topic, batch(&["open"], Some(open))), 5);
    let before = fetch_committed(&mut conn, &topic);
    assert_eq!(before, (5, vec![0, 1, 2, 3, 4], vec![(aborted.0, 0)]));
    cluster::wait_for_identical_logs(&mut cluster, &[1, 2, 3], &topic, &[0], TIMEOUT);

    cluster.node(leader).kill9();
    let survivors: Vec<String> = (1..=3)
        .filter(|id| *id != leader)
        .map(|id| cluster.node(id).bootstrap())
        .collect();
    let survivors = survivors.join(",");
    let new_leader = wait_until("a new leader", TIMEOUT, || {
        match cluster::leaders(&survivors, &topic)?[0] {
            l if l >= 0 && l != leader => Ok(l),
            l => Err(format!("leader {l}")),
        }
    });
    let mut conn = Connection::connect(&cluster.node(new_leader).bootstrap(), TIMEOUT);
    // The new leader's high watermark may need a follower fetch to catch up.
    let after = wait_until("the new leader's read_committed view", TIMEOUT, || {
        let now = fetch_committed(&mut conn, &topic);
        if now == before {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    });
    assert_eq!(after, before);
    let reader = consumer(&survivors, &topic, "read_committed");
    assert_eq!(values_until(&reader, "p"), vec!["c1", "p"]);
    end_txn(&mut conn, &topic, open, true); // 6
    assert_eq!(values_until(&reader, "open"), vec!["open"]);
}
