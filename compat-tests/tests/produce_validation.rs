//! Produce validation over TCP: raw Produce v9 requests whose batches break one rule each
//! (CRC fixed up, so only that rule can fail), checked for Kafka's error code,
//! error_message and record_errors, while an rdkafka producer on another topic keeps
//! getting acks. Afterwards the topic holds exactly the accepted batches.
//!
//! Codes as Kafka's LogValidator / ReplicaManager give them (read in Kafka's source):
//! record timestamps out of bounds -> INVALID_TIMESTAMP (32) with one record error per
//! record; record framing -> INVALID_RECORD (87) without record errors; CRC ->
//! CORRUPT_MESSAGE (2). Two cases are Millrace's own and run only against it: Kafka
//! rewrites (rather than refuses) inner offsets out of sequence, and has no bound on
//! decompressed bytes.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::canary::{expect_healthy, Canary};
use common::{admin_create, consumer};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use millrace_compat_tests::{now_ms, unique_topic, wire, BrokerOpts, Target, TestBroker};
use rdkafka::consumer::Consumer;

const PRODUCE_VERSION: i16 = 9;
const CODEC_NONE: i16 = 0;
const CODEC_ZSTD: i16 = 4;

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// One record: `ts_delta`, `offset_delta`, a key (or a claimed key length), a value and
/// `header_count` as written (no header bytes follow unless it is 0).
struct Rec {
    ts_delta: i64,
    offset_delta: i64,
    key_len: Option<i64>,
    value: Vec<u8>,
    header_count: i64,
}

fn rec(i: i64) -> Rec {
    Rec {
        ts_delta: i,
        offset_delta: i,
        key_len: None,
        value: format!("value-{i}").into_bytes(),
        header_count: 0,
    }
}

fn encode_records(records: &[Rec]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let mut body = vec![0u8];
        put_varint(&mut body, r.ts_delta);
        put_varint(&mut body, r.offset_delta);
        match r.key_len {
            Some(len) => put_varint(&mut body, len),
            None => {
                put_varint(&mut body, 1);
                body.push(b'k');
            }
        }
        put_varint(&mut body, r.value.len() as i64);
        body.extend_from_slice(&r.value);
        put_varint(&mut body, r.header_count);
        put_varint(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    out
}

/// A v2 batch (no producer id) around `payload`, with a correct CRC-32C.
fn batch(payload: &[u8], count: i32, codec: i16, base_ts: i64, max_ts: i64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&codec.to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn plain(records: &[Rec], base_ts: i64) -> Vec<u8> {
    let max = records.iter().map(|r| base_ts + r.ts_delta).max().unwrap();
    batch(
        &encode_records(records),
        records.len() as i32,
        CODEC_NONE,
        base_ts,
        max,
    )
}

fn zstd_batch(payload: &[u8], count: i32, base_ts: i64, max_ts: i64) -> Vec<u8> {
    let compressed = zstd::encode_all(payload, 3).expect("zstd");
    batch(&compressed, count, CODEC_ZSTD, base_ts, max_ts)
}

/// What the broker answered for the one partition.
#[derive(Debug)]
struct Answer {
    code: i16,
    base_offset: i64,
    message: Option<String>,
    record_errors: Vec<(i32, String)>,
}

fn produce(addr: &str, topic: &str, records: Vec<u8>) -> Answer {
    produce_at(addr, topic, records, PRODUCE_VERSION)
}

fn produce_at(addr: &str, topic: &str, records: Vec<u8>, version: i16) -> Answer {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    let mut conn = wire::Connection::connect(addr, Duration::from_secs(10));
    let resp: ProduceResponse = conn.call(ApiKey::Produce, &req, version);
    let p = &resp.responses[0].partition_responses[0];
    Answer {
        code: p.error_code,
        base_offset: p.base_offset,
        message: p.error_message.as_ref().map(|m| m.to_string()),
        record_errors: p
            .record_errors
            .iter()
            .map(|e| {
                (
                    e.batch_index,
                    e.batch_index_error_message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect(),
    }
}

fn indexes(a: &Answer) -> Vec<i32> {
    a.record_errors.iter().map(|(i, _)| *i).collect()
}

#[test]
fn produce_validation_answers_like_kafka() {
    let mut broker = TestBroker::start(
        BrokerOpts::default().set("log.message.timestamp.before.max.ms", "600000"),
    );
    let millrace = broker.target() == Target::Millrace;
    let addr = broker.bootstrap();
    let topic = unique_topic("validation");
    admin_create(&addr, &topic, 1);
    let canary = Canary::start(&addr);
    {
        let mut check = |case: &str| expect_healthy(&mut broker, &canary, case);
        let good = || (0..3).map(rec).collect::<Vec<_>>();

        // Accepted: three records stamped now.
        let a = produce(&addr, &topic, plain(&good(), now_ms()));
        assert_eq!((a.code, a.base_offset), (0, 0), "good batch: {a:?}");
        check("good batch");

        // Record 1 two hours ahead: Kafka 4's message.timestamp.after.max.ms is one hour.
        let mut records = good();
        records[1].ts_delta = 2 * 3_600_000;
        let a = produce(&addr, &topic, plain(&records, now_ms()));
        assert_eq!(a.code, 32, "future timestamp: {a:?}");
        assert_eq!(indexes(&a), vec![1], "future timestamp: {a:?}");
        assert_eq!(
            a.message.as_deref(),
            Some("One or more records have been rejected due to invalid timestamp")
        );
        assert!(a.record_errors[0].1.contains("is out of range"), "{a:?}");
        check("future timestamp");

        // Records 0 and 2 twenty minutes old: the broker's before.max.ms is ten minutes.
        let mut records = good();
        records[0].ts_delta = -1_200_000;
        records[2].ts_delta = -1_200_000;
        let a = produce(&addr, &topic, plain(&records, now_ms()));
        assert_eq!(a.code, 32, "old timestamps: {a:?}");
        assert_eq!(indexes(&a), vec![0, 2], "old timestamps: {a:?}");
        check("old timestamps");

        // A header count no record could hold: INVALID_RECORD, no record errors.
        let mut records = good();
        records[2].header_count = i32::MAX as i64;
        let a = produce(&addr, &topic, plain(&records, now_ms()));
        assert_eq!(a.code, 87, "huge header count: {a:?}");
        assert!(a.record_errors.is_empty(), "{a:?}");
        check("huge header count");

        // Inside a zstd batch, record 1 claims a 2 GiB key.
        let mut records = good();
        records[1].key_len = Some(i32::MAX as i64);
        let ts = now_ms();
        let a = produce(
            &addr,
            &topic,
            zstd_batch(&encode_records(&records), 3, ts, ts + 2),
        );
        assert_eq!(a.code, 87, "zstd huge key: {a:?}");
        check("zstd huge key");

        // A flipped payload bit: CRC mismatch.
        let mut b = plain(&good(), now_ms());
        let last = b.len() - 1;
        b[last] ^= 1;
        let a = produce(&addr, &topic, b);
        assert_eq!(a.code, 2, "bad crc: {a:?}");
        check("bad crc");

        if millrace {
            // Offsets out of sequence: Kafka rewrites them; Millrace stores batches as
            // sent, so it refuses them.
            let mut records = good();
            records[2].offset_delta = 7;
            let a = produce(&addr, &topic, plain(&records, now_ms()));
            assert_eq!(a.code, 87, "offset delta: {a:?}");
            assert!(
                a.message
                    .as_deref()
                    .unwrap_or("")
                    .contains("not in sequence"),
                "{a:?}"
            );
            check("offset delta");

            // A zstd bomb: one record claiming a 1 GiB value, 100 MiB of zeros behind it,
            // about 3 KiB on the wire. Stopped at 64 x max.message.bytes.
            let mut payload = Vec::new();
            put_varint(&mut payload, 1 << 30);
            payload.extend_from_slice(&[0, 0, 0, 1]);
            put_varint(&mut payload, (1 << 30) - 16);
            payload.resize(payload.len() + (100 << 20), 0);
            let ts = now_ms();
            let b = zstd_batch(&payload, 1, ts, ts);
            assert!(b.len() < 64 << 10, "bomb is {} bytes", b.len());
            let started = Instant::now();
            let a = produce(&addr, &topic, b);
            assert_eq!(a.code, 10, "zstd bomb: {a:?}");
            assert!(
                a.message
                    .as_deref()
                    .unwrap_or("")
                    .contains("decompresses to more than"),
                "{a:?}"
            );
            println!("zstd bomb refused in {:?}", started.elapsed());
            check("zstd bomb");
        }

        // Accepted: a zstd batch whose maxTimestamp is wrong (Kafka corrects it).
        let ts = now_ms();
        let a = produce(
            &addr,
            &topic,
            zstd_batch(&encode_records(&good()), 3, ts, ts + 999),
        );
        assert_eq!((a.code, a.base_offset), (0, 3), "zstd good: {a:?}");
        check("zstd good");

        // zstd exists from Produce v7: a v6 request with a zstd batch is refused whole.
        let ts = now_ms();
        let a = produce_at(
            &addr,
            &topic,
            zstd_batch(&encode_records(&good()), 3, ts, ts + 2),
            6,
        );
        assert_eq!((a.code, a.base_offset), (76, -1), "zstd at v6: {a:?}");
        check("zstd at Produce v6");
    }
    canary.finish();

    // Only the two accepted batches reached the log.
    let c = consumer(&addr);
    let (low, high) = c
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((low, high), (0, 6));
    assert!(broker.is_running());
}
