//! Allocation bombs over raw TCP: requests and stored batches whose wire counts claim far
//! more elements than their bytes hold. kafka-protocol 0.18 sized allocations from those
//! counts (one 25-byte Metadata request aborted the broker allocating 144 GiB); the
//! vendored, patched crate checks every count against the bytes left first, as Kafka's
//! generated readers do (`vendor/kafka-protocol/MILLRACE-PATCH.md`).
//!
//! Throughout, an rdkafka producer keeps sending to a canary topic; after every case the
//! broker must still run, a fresh client must get ApiVersions + Metadata answered, and
//! the canary must get new acks. Kafka closes the connection on a request that does not
//! parse (no response), which is what the request cases expect.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::admin_create;
use common::canary::{expect_healthy, Canary};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse,
    RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use millrace_compat_tests::wire::{frame, Connection};
use millrace_compat_tests::{now_ms, unique_topic, BrokerOpts, TestBroker};

/// How long a closed connection may take to show EOF or a reset.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// Kafka's error codes the produce of the header bomb may get (LogValidator).
const CORRUPT_MESSAGE: i16 = 2;
const INVALID_RECORD: i16 = 87;
/// A stored batch that does not decode: the broker's answer to ListOffsets on it.
const KAFKA_STORAGE_ERROR: i16 = 56;
/// ListOffsets' special timestamp for "the record with the largest timestamp" (KIP-734).
const MAX_TIMESTAMP: i64 = -3;

/// A request header (api key, version, correlation id, client id; tagged fields in
/// header v2) followed by `body`, as one size-prefixed frame.
fn raw_request(key: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("decode-bombs")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("encode header");
    buf.put_slice(body);
    frame(&buf)
}

/// Sends `request` on a fresh connection and expects it closed without a response.
fn expect_closed(addr: &str, request: &[u8], case: &str) {
    use std::io::Write;
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{case}: connect: {e}"));
    s.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    // A reset while writing already means the broker closed on us.
    let _ = s.write_all(request);
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "{case}: expected a close, got {n} bytes: {:02x?}",
            &buf[..n]
        ),
        Err(e) => {
            use std::io::ErrorKind::*;
            assert!(
                matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe),
                "{case}: connection neither closed nor reset within {CLOSE_DEADLINE:?}: {e}"
            );
        }
    }
}

/// Kafka's CRC-32C (Castagnoli), bit by bit: a few batches, no table needed.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn put_varint(buf: &mut BytesMut, value: i32) {
    let mut zigzag = ((value << 1) ^ (value >> 31)) as u32;
    while zigzag >= 0x80 {
        buf.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buf.put_u8(zigzag as u8);
}

/// One uncompressed v2 batch with a single record whose header count is i32::MAX while
/// the record holds no header bytes at all. The CRC is valid: only a decoder that
/// trusts the count before reading headers can be hurt by it.
fn header_bomb_batch(timestamp_ms: i64) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i8(0); // attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, -1); // null key
    put_varint(&mut body, 4);
    body.put_slice(b"bomb");
    put_varint(&mut body, i32::MAX); // header count
    let mut record = BytesMut::new();
    put_varint(&mut record, body.len() as i32);
    record.put_slice(&body);

    let mut after_crc = BytesMut::new();
    after_crc.put_i16(0); // attributes: no compression, create time
    after_crc.put_i32(0); // last offset delta
    after_crc.put_i64(timestamp_ms); // base timestamp
    after_crc.put_i64(timestamp_ms); // max timestamp
    after_crc.put_i64(-1); // producer id
    after_crc.put_i16(-1); // producer epoch
    after_crc.put_i32(-1); // base sequence
    after_crc.put_i32(1); // record count
    after_crc.put_slice(&record);

    let mut batch = BytesMut::new();
    batch.put_i64(0); // base offset
    batch.put_i32((4 + 1 + 4 + after_crc.len()) as i32); // epoch + magic + crc + rest
    batch.put_i32(-1); // partition leader epoch
    batch.put_i8(2); // magic
    batch.put_u32(crc32c(&after_crc));
    batch.put_slice(&after_crc);
    batch.freeze()
}

/// ListOffsets v7 for partition 0 of `topic` at `timestamp`: (error code, offset).
fn list_offset(conn: &mut Connection, topic: &str, timestamp: i64) -> (i16, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, &request, 7);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offset)
}

#[test]
fn allocation_bombs_do_not_hurt_the_broker() {
    let mut broker = TestBroker::start(BrokerOpts::default());
    let addr = broker.bootstrap();
    let bomb_topic = unique_topic("header-bomb");
    admin_create(&addr, &bomb_topic, 1);

    let canary = Canary::start(&addr);
    {
        let mut check = |case: &str| expect_healthy(&mut broker, &canary, case);
        check("start");

        // (a) Metadata v0 (classic i32 array count): 0x7fffffff topics, no bytes for them.
        let case = "Metadata v0, topic count 0x7fffffff";
        expect_closed(
            &addr,
            &raw_request(ApiKey::Metadata, 0, &0x7fff_ffffi32.to_be_bytes()),
            case,
        );
        check(case);

        // (b) Flexible versions (compact arrays, unsigned varint count + 1): a count of
        //     u32::MAX - 1 topics, then the tagged-field byte and nothing else.
        let huge_compact_count = [0xff, 0xff, 0xff, 0xff, 0x0f];
        let case = "Metadata v12, compact topic count u32::MAX - 1";
        let mut body = huge_compact_count.to_vec();
        body.extend_from_slice(&[0, 0, 0, 0]); // booleans + tagged fields, if ever reached
        expect_closed(&addr, &raw_request(ApiKey::Metadata, 12, &body), case);
        check(case);

        let case = "CreateTopics v5, compact topic count u32::MAX - 1";
        let mut body = huge_compact_count.to_vec();
        body.extend_from_slice(&[0, 0, 0x75, 0x30, 0, 0]); // timeout, validate_only, tags
        expect_closed(&addr, &raw_request(ApiKey::CreateTopics, 5, &body), case);
        check(case);

        // (c) A record claiming i32::MAX headers, CRC valid. Kafka's LogValidator rejects
        //     it at produce (INVALID_RECORD); a broker that stores it must still answer
        //     the ListOffsets lookups that decode the stored batch.
        let case = "record header count i32::MAX";
        let timestamp_ms = now_ms();
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(bomb_topic.clone())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(header_bomb_batch(timestamp_ms)))])]);
        let mut conn = Connection::connect(&addr, Duration::from_secs(10));
        let response: ProduceResponse = conn.call(ApiKey::Produce, &produce, 9);
        let produced = &response.responses[0].partition_responses[0];
        let stored = match produced.error_code {
            0 => true,
            INVALID_RECORD | CORRUPT_MESSAGE => false,
            other => panic!("{case}: produce answered {other}, {produced:?}"),
        };
        check(case);

        for (lookup, timestamp) in [
            ("ListOffsets MAX_TIMESTAMP", MAX_TIMESTAMP),
            ("ListOffsets by timestamp", timestamp_ms),
        ] {
            let case = format!("{case}: {lookup}");
            let mut conn = Connection::connect(&addr, Duration::from_secs(10));
            let (error_code, offset) = list_offset(&mut conn, &bomb_topic, timestamp);
            if stored {
                // The batch is on disk but does not decode: an error answer, not an abort.
                assert!(
                    error_code == 0 || error_code == KAFKA_STORAGE_ERROR,
                    "{case}: error {error_code}, offset {offset}"
                );
            } else {
                // Nothing was stored: no record at or after any timestamp.
                assert_eq!((error_code, offset), (0, -1), "{case}");
            }
            check(&case);
        }
    }
    canary.finish();
}
