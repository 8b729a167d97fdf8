//! One test per rule, on hand-built batches whose CRC is valid, so that only the rule
//! under test can fail.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;
use crate::log::batch::compute_crc;

const NOW_MS: i64 = 1_700_000_000_000;

fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_varlong(out, v as i64);
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// The fields of one record, each length settable to a lie.
#[derive(Clone)]
struct Raw {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<Vec<u8>>,
    key_len: Option<i32>,
    value: Vec<u8>,
    value_len: Option<i32>,
    headers: Vec<(i32, Vec<u8>, i32, Vec<u8>)>,
    header_count: Option<i32>,
    extra: Vec<u8>,
    length_delta: i32,
}

fn raw(index: i32) -> Raw {
    Raw {
        timestamp_delta: index as i64,
        offset_delta: index,
        key: Some(b"k".to_vec()),
        key_len: None,
        value: vec![b'v'; 10],
        value_len: None,
        headers: vec![(1, b"h".to_vec(), 2, b"hv".to_vec())],
        header_count: None,
        extra: Vec::new(),
        length_delta: 0,
    }
}

impl Raw {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = vec![0u8];
        put_varlong(&mut body, self.timestamp_delta);
        put_varint(&mut body, self.offset_delta);
        match &self.key {
            Some(k) => {
                put_varint(&mut body, self.key_len.unwrap_or(k.len() as i32));
                body.extend_from_slice(k);
            }
            None => put_varint(&mut body, self.key_len.unwrap_or(-1)),
        }
        put_varint(&mut body, self.value_len.unwrap_or(self.value.len() as i32));
        body.extend_from_slice(&self.value);
        put_varint(
            &mut body,
            self.header_count.unwrap_or(self.headers.len() as i32),
        );
        for (klen, k, vlen, v) in &self.headers {
            put_varint(&mut body, *klen);
            body.extend_from_slice(k);
            put_varint(&mut body, *vlen);
            body.extend_from_slice(v);
        }
        body.extend_from_slice(&self.extra);
        put_varint(out, body.len() as i32 + self.length_delta);
        out.extend_from_slice(&body);
    }
}

/// A batch header around `payload` (records, already compressed for `codec`), CRC fixed.
fn assemble(payload: &[u8], count: i32, codec: i16, max_timestamp: i64, attrs: i16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - 12 + payload.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&(codec | attrs).to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&NOW_MS.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(payload);
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn compress(codec: i16, data: &[u8]) -> Vec<u8> {
    match codec {
        CODEC_NONE => data.to_vec(),
        CODEC_GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        CODEC_SNAPPY => {
            // xerial framing, one block per 32 KiB as Kafka's Java producer writes it.
            let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            for chunk in data.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        CODEC_LZ4 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(data).unwrap();
            let (out, result) = e.finish();
            result.unwrap();
            out
        }
        CODEC_ZSTD => zstd::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

/// A batch of `records`, claiming `count` records, compressed with `codec`, with the
/// correct maxTimestamp.
fn batch_of(records: &[Raw], count: i32, codec: i16) -> Vec<u8> {
    let mut payload = Vec::new();
    for r in records {
        r.encode(&mut payload);
    }
    let max = records
        .iter()
        .map(|r| NOW_MS + r.timestamp_delta)
        .max()
        .unwrap_or(-1);
    assemble(&compress(codec, &payload), count, codec, max, 0)
}

fn good(n: i32) -> Vec<Raw> {
    (0..n).map(raw).collect()
}

fn rules() -> RecordRules {
    RecordRules::default()
}

fn check(b: &[u8]) -> Result<ValidBatch, Rejection> {
    validate_produce(b, NOW_MS, &rules())
}

fn rejected(b: &[u8], kind: RejectKind, needle: &str) -> Rejection {
    let r = check(b).expect_err("batch must be rejected");
    assert_eq!(r.kind, kind, "{r:?}");
    assert!(
        r.message.contains(needle),
        "{needle:?} not in {:?}",
        r.message
    );
    r
}

const ALL_CODECS: [i16; 5] = [CODEC_NONE, CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD];

/// Batches as kafka-protocol's encoder (and so librdkafka/Java) writes them.
fn encoded(n: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder splits batches where offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: NOW_MS - 5 + i as i64,
            key: Some(Bytes::from_static(b"key")),
            value: Some(Bytes::from(vec![b'x'; 1000])),
            headers: [(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"v")),
            )]
            .into_iter()
            .collect(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

#[test]
fn encoder_batches_pass_with_every_codec() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let b = encoded(50, compression);
        let valid = check(&b).unwrap_or_else(|e| panic!("{compression:?}: {e:?}"));
        assert_eq!(valid.header.record_count, 50);
        assert_eq!(valid.header.max_timestamp, NOW_MS - 5 + 49);
        assert!(!valid.needs_max_timestamp_fix, "{compression:?}");
    }
}

#[test]
fn hand_built_batches_pass_with_every_codec() {
    for codec in ALL_CODECS {
        let b = batch_of(&good(20), 20, codec);
        let valid = check(&b).unwrap_or_else(|e| panic!("codec {codec}: {e:?}"));
        assert_eq!(valid.header.max_timestamp, NOW_MS + 19);
    }
}

#[test]
fn offset_delta_out_of_sequence_is_invalid() {
    let mut records = good(3);
    records[1].offset_delta = 5;
    for codec in ALL_CODECS {
        rejected(
            &batch_of(&records, 3, codec),
            RejectKind::InvalidRecord,
            "record 1: offsetDelta 5 is not in sequence",
        );
    }
}

#[test]
fn record_count_larger_than_the_records_is_invalid() {
    for codec in ALL_CODECS {
        rejected(
            &batch_of(&good(2), 1000, codec),
            RejectKind::InvalidRecord,
            "record 2: record length runs past",
        );
    }
}

#[test]
fn a_huge_record_count_in_a_tiny_batch_is_invalid_without_allocating() {
    let b = batch_of(&good(1), i32::MAX, CODEC_ZSTD);
    assert!(b.len() < 200);
    rejected(&b, RejectKind::InvalidRecord, "record 1: record length");
}

#[test]
fn bytes_after_the_last_record_are_invalid() {
    for codec in ALL_CODECS {
        let mut payload = Vec::new();
        for r in good(2) {
            r.encode(&mut payload);
        }
        payload.extend_from_slice(&[0, 0, 0]);
        let b = assemble(&compress(codec, &payload), 2, codec, NOW_MS + 1, 0);
        rejected(&b, RejectKind::InvalidRecord, "bytes left after the last");
    }
}

#[test]
fn bytes_left_over_inside_a_record_are_invalid() {
    let mut records = good(2);
    records[0].extra = vec![1, 2];
    rejected(
        &batch_of(&records, 2, CODEC_NONE),
        RejectKind::InvalidRecord,
        "record 0: its length claims 2 bytes more than its fields use",
    );
}

#[test]
fn a_record_length_past_the_batch_is_invalid() {
    let mut records = good(1);
    records[0].length_delta = 1000;
    rejected(
        &batch_of(&records, 1, CODEC_NONE),
        RejectKind::InvalidRecord,
        "claims 1000 bytes more",
    );
    records[0].length_delta = -3;
    rejected(
        &batch_of(&records, 1, CODEC_NONE),
        RejectKind::InvalidRecord,
        "runs past",
    );
}

#[test]
fn a_negative_record_length_is_invalid() {
    let mut payload = Vec::new();
    put_varint(&mut payload, -5);
    let b = assemble(&payload, 1, CODEC_NONE, NOW_MS, 0);
    rejected(&b, RejectKind::InvalidRecord, "negative record length");
}

#[test]
fn an_overlong_varint_is_invalid() {
    // attributes, timestampDelta 0, then an offsetDelta of six bytes: longer than any i32.
    let body = [0u8, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0];
    let mut payload = Vec::new();
    put_varint(&mut payload, body.len() as i32);
    payload.extend_from_slice(&body);
    let b = assemble(&payload, 1, CODEC_NONE, NOW_MS, 0);
    rejected(
        &b,
        RejectKind::InvalidRecord,
        "record 0: offsetDelta is malformed",
    );
}

#[test]
fn a_negative_header_count_is_invalid() {
    let mut records = good(2);
    records[1].header_count = Some(-1);
    records[1].headers.clear();
    rejected(
        &batch_of(&records, 2, CODEC_NONE),
        RejectKind::InvalidRecord,
        "record 1: invalid number of record headers -1",
    );
}

#[test]
fn a_huge_header_count_is_invalid() {
    let mut records = good(1);
    records[0].header_count = Some(i32::MAX);
    for codec in ALL_CODECS {
        rejected(
            &batch_of(&records, 1, codec),
            RejectKind::InvalidRecord,
            "headers cannot fit in the record",
        );
    }
}

#[test]
fn header_count_larger_than_the_headers_is_invalid() {
    let mut records = good(1);
    records[0].header_count = Some(3);
    records[0].extra = vec![0; 2];
    rejected(
        &batch_of(&records, 1, CODEC_NONE),
        RejectKind::InvalidRecord,
        "header key length runs past",
    );
}

#[test]
fn a_negative_header_key_length_is_invalid() {
    let mut records = good(1);
    records[0].headers = vec![(-1, Vec::new(), 1, b"x".to_vec())];
    rejected(
        &batch_of(&records, 1, CODEC_NONE),
        RejectKind::InvalidRecord,
        "negative header key size -1",
    );
}

#[test]
fn a_null_header_value_is_fine_but_below_minus_one_is_not() {
    let mut records = good(1);
    records[0].headers = vec![(1, b"h".to_vec(), -1, Vec::new())];
    check(&batch_of(&records, 1, CODEC_NONE)).unwrap();
    records[0].headers = vec![(1, b"h".to_vec(), -7, Vec::new())];
    rejected(
        &batch_of(&records, 1, CODEC_NONE),
        RejectKind::InvalidRecord,
        "invalid header value length -7",
    );
}

#[test]
fn a_huge_key_length_is_invalid() {
    let mut records = good(1);
    records[0].key_len = Some(i32::MAX);
    for codec in ALL_CODECS {
        rejected(
            &batch_of(&records, 1, codec),
            RejectKind::InvalidRecord,
            "record 0: key runs past",
        );
    }
}

#[test]
fn key_and_value_lengths_below_minus_one_are_invalid() {
    let mut records = good(1);
    records[0].key = None;
    records[0].key_len = Some(-2);
    rejected(
        &batch_of(&records, 1, CODEC_NONE),
        RejectKind::InvalidRecord,
        "invalid key length -2",
    );
    let mut records = good(1);
    records[0].value_len = Some(i32::MIN);
    records[0].value.clear();
    rejected(
        &batch_of(&records, 1, CODEC_NONE),
        RejectKind::InvalidRecord,
        "invalid value length",
    );
}

#[test]
fn a_null_key_and_value_are_fine() {
    let mut records = good(1);
    records[0].key = None;
    records[0].value.clear();
    records[0].value_len = Some(-1);
    check(&batch_of(&records, 1, CODEC_LZ4)).unwrap();
}

#[test]
fn a_compressed_payload_that_does_not_decompress_is_corrupt() {
    for codec in [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD] {
        let mut payload = compress(codec, &{
            let mut p = Vec::new();
            for r in good(50) {
                r.encode(&mut p);
            }
            p
        });
        let mid = payload.len() / 2;
        for b in &mut payload[mid..mid + 8] {
            *b ^= 0x5a;
        }
        let b = assemble(&payload, 50, codec, NOW_MS + 49, 0);
        let r = check(&b).expect_err("corrupt payload");
        // A flipped byte may also decode into records that do not add up.
        assert!(
            matches!(r.kind, RejectKind::Corrupt | RejectKind::InvalidRecord),
            "codec {codec}: {r:?}"
        );
    }
    let b = assemble(b"definitely not zstd", 1, CODEC_ZSTD, NOW_MS, 0);
    rejected(&b, RejectKind::Corrupt, "cannot decompress");
}

/// One record claiming a 1 GiB value, then zeros: a few KB compressed.
fn bomb_payload(zeros: usize) -> Vec<u8> {
    let mut p = Vec::new();
    put_varint(&mut p, 1 << 30);
    p.push(0);
    put_varlong(&mut p, 0);
    put_varint(&mut p, 0);
    put_varint(&mut p, -1);
    put_varint(&mut p, (1 << 30) - 16);
    p.resize(p.len() + zeros, 0);
    p
}

#[test]
fn a_decompression_bomb_is_stopped_at_the_bound() {
    let small = RecordRules {
        max_decompressed_bytes: 1 << 20,
        ..rules()
    };
    let payload = bomb_payload(4 << 20);
    for codec in [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD] {
        let b = assemble(&compress(codec, &payload), 1, codec, NOW_MS, 0);
        assert!(b.len() < 300 << 10, "codec {codec}: {} bytes", b.len());
        let r = validate_produce(&b, NOW_MS, &small).expect_err("bomb");
        assert_eq!(r.kind, RejectKind::TooLarge, "codec {codec}: {r:?}");
        assert!(
            r.message.contains("decompresses to more than 1048576"),
            "codec {codec}: {r:?}"
        );
    }
}

#[test]
fn a_zstd_bomb_is_stopped_at_the_default_bound() {
    let payload = bomb_payload(80 << 20);
    let b = assemble(&compress(CODEC_ZSTD, &payload), 1, CODEC_ZSTD, NOW_MS, 0);
    assert!(b.len() < 64 << 10, "{} bytes", b.len());
    let r = check(&b).expect_err("bomb");
    assert_eq!(r.kind, RejectKind::TooLarge, "{r:?}");
}

#[test]
fn a_snappy_block_claiming_a_huge_length_is_refused_before_allocating() {
    // A raw snappy block whose varint preamble claims 4 GiB.
    let mut block = Vec::new();
    block.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    block.extend_from_slice(&[0; 8]);
    let mut payload = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    payload.extend_from_slice(&(block.len() as u32).to_be_bytes());
    payload.extend_from_slice(&block);
    let b = assemble(&payload, 1, CODEC_SNAPPY, NOW_MS, 0);
    let r = check(&b).expect_err("bomb");
    assert_eq!(r.kind, RejectKind::TooLarge, "{r:?}");
}

#[test]
fn raw_snappy_without_the_xerial_header_is_accepted() {
    let mut payload = Vec::new();
    for r in good(3) {
        r.encode(&mut payload);
    }
    let block = snap::raw::Encoder::new().compress_vec(&payload).unwrap();
    check(&assemble(&block, 3, CODEC_SNAPPY, NOW_MS + 2, 0)).unwrap();
}

#[test]
fn timestamps_too_old_are_record_errors() {
    let mut records = good(4);
    records[1].timestamp_delta = -10_000;
    records[3].timestamp_delta = -20_000;
    let b = batch_of(&records, 4, CODEC_NONE);
    let strict = RecordRules {
        timestamp_before_max_ms: 5_000,
        ..rules()
    };
    let r = validate_produce(&b, NOW_MS, &strict).expect_err("too old");
    assert_eq!(r.kind, RejectKind::InvalidTimestamp);
    assert_eq!(
        r.message,
        "One or more records have been rejected due to invalid timestamp"
    );
    let indexes: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![1, 3]);
    assert!(r.record_errors[0]
        .message
        .contains(&format!("should be within [{}, ", NOW_MS - 5_000)));
    // The default has no lower bound.
    check(&b).unwrap();
}

#[test]
fn timestamps_too_far_ahead_fail_with_kafka_4_defaults() {
    let mut records = good(2);
    records[1].timestamp_delta = 3_600_001;
    for codec in [CODEC_NONE, CODEC_ZSTD] {
        let r = rejected(
            &batch_of(&records, 2, codec),
            RejectKind::InvalidTimestamp,
            "invalid timestamp",
        );
        assert_eq!(r.record_errors.len(), 1);
        assert_eq!(r.record_errors[0].batch_index, 1);
    }
    records[1].timestamp_delta = 3_600_000;
    check(&batch_of(&records, 2, CODEC_NONE)).unwrap();
}

#[test]
fn no_timestamp_skips_the_bounds_but_log_append_time_from_a_producer_is_refused() {
    let mut payload = Vec::new();
    let mut r = raw(0);
    r.timestamp_delta = 0;
    r.encode(&mut payload);
    // baseTimestamp NOW_MS - NOW_MS - 1 = -1: build the header by hand.
    let mut b = assemble(&payload, 1, CODEC_NONE, -1, 0);
    b[27..35].copy_from_slice(&(-1i64).to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let strict = RecordRules {
        timestamp_before_max_ms: 0,
        timestamp_after_max_ms: 0,
        ..rules()
    };
    validate_produce(&b, NOW_MS, &strict).unwrap();
    b[21..23].copy_from_slice(&(batch::ATTR_TIMESTAMP_TYPE).to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let r = validate_produce(&b, NOW_MS, &strict).expect_err("LogAppendTime");
    assert_eq!(r.kind, RejectKind::InvalidTimestamp);
    assert!(r.record_errors[0].message.contains("LogAppendTime"));
}

#[test]
fn a_wrong_max_timestamp_is_corrected_as_kafka_does() {
    let mut payload = Vec::new();
    for r in good(3) {
        r.encode(&mut payload);
    }
    let mut b = assemble(&payload, 3, CODEC_NONE, NOW_MS + 999_999, 0);
    let valid = check(&b).unwrap();
    assert!(valid.needs_max_timestamp_fix);
    assert_eq!(valid.header.max_timestamp, NOW_MS + 2);
    batch::set_max_timestamp(&mut b, false, valid.header.max_timestamp);
    let again = check(&b).unwrap();
    assert!(!again.needs_max_timestamp_fix);
    assert_eq!(batch::validate(&b).unwrap().max_timestamp, NOW_MS + 2);
}

#[test]
fn log_append_time_stamps_the_batch_and_skips_the_timestamp_bounds() {
    let mut records = good(3);
    // Far outside any CreateTime bound: a LogAppendTime topic does not look.
    records[1].timestamp_delta = -1_000_000_000;
    let mut b = batch_of(&records, 3, CODEC_NONE);
    let rules = RecordRules {
        timestamp_before_max_ms: 0,
        timestamp_after_max_ms: 0,
        log_append_time: true,
        ..rules()
    };
    let now_ms = NOW_MS + 5_000;
    let valid = validate_produce(&b, now_ms, &rules).unwrap();
    assert!(valid.needs_max_timestamp_fix);
    assert!(valid.header.is_log_append_time());
    assert_eq!(valid.header.max_timestamp, now_ms);
    batch::set_max_timestamp(&mut b, true, now_ms);
    let stored = batch::validate(&b).unwrap();
    assert!(stored.is_log_append_time());
    assert_eq!(stored.max_timestamp, now_ms);
    // The same batch in a CreateTime topic is bounded again.
    let create_time = RecordRules {
        log_append_time: false,
        ..rules
    };
    let mut plain = batch_of(&records, 3, CODEC_NONE);
    let r = validate_produce(&plain, now_ms, &create_time).expect_err("bounds");
    assert_eq!(r.kind, RejectKind::InvalidTimestamp);
    // A producer may not send LogAppendTime itself, whatever the topic's type.
    plain[21..23].copy_from_slice(&(batch::ATTR_TIMESTAMP_TYPE).to_be_bytes());
    let crc = compute_crc(&plain);
    plain[17..21].copy_from_slice(&crc.to_be_bytes());
    validate_produce(&plain, now_ms, &rules).expect_err("LogAppendTime from a producer");
}

#[test]
fn compacted_topics_need_keys() {
    let mut records = good(3);
    records[2].key = None;
    let compacted = RecordRules {
        compacted: true,
        ..rules()
    };
    let b = batch_of(&records, 3, CODEC_GZIP);
    let r = validate_produce(&b, NOW_MS, &compacted).expect_err("no key");
    assert_eq!(r.kind, RejectKind::InvalidRecord);
    assert_eq!(r.record_errors.len(), 1);
    assert_eq!(r.record_errors[0].batch_index, 2);
    assert!(r.message.contains("1 record errors"), "{}", r.message);
    check(&b).unwrap();
}

#[test]
fn record_errors_are_capped() {
    let records: Vec<Raw> = (0..MAX_RECORD_ERRORS as i32 + 50)
        .map(|i| Raw {
            key: None,
            value: Vec::new(),
            headers: Vec::new(),
            ..raw(i)
        })
        .collect();
    let compacted = RecordRules {
        compacted: true,
        ..rules()
    };
    let b = batch_of(&records, records.len() as i32, CODEC_NONE);
    let r = validate_produce(&b, NOW_MS, &compacted).expect_err("no keys");
    assert_eq!(r.record_errors.len(), MAX_RECORD_ERRORS);
    assert!(r
        .message
        .contains(&format!("{} record errors", records.len())));
}

#[test]
fn control_batches_and_missing_sequences_are_invalid() {
    let mut b = batch_of(&good(1), 1, CODEC_NONE);
    b[21..23].copy_from_slice(&0x20i16.to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    rejected(&b, RejectKind::InvalidRecord, "control records");

    let mut b = batch_of(&good(1), 1, CODEC_NONE);
    b[43..51].copy_from_slice(&7i64.to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    rejected(&b, RejectKind::InvalidRecord, "invalid sequence number -1");
}

#[test]
fn header_and_crc_problems_keep_their_kafka_codes() {
    let mut b = batch_of(&good(2), 2, CODEC_NONE);
    let last = b.len() - 1;
    b[last] ^= 1;
    rejected(&b, RejectKind::Corrupt, "CRC");
    let b = batch_of(&good(2), 2, CODEC_NONE);
    rejected(&b[..b.len() - 1], RejectKind::Corrupt, "");
    let mut two = b.clone();
    two.extend_from_slice(&b);
    rejected(&two, RejectKind::InvalidRecord, "exactly one record batch");
}

#[test]
fn a_batch_over_max_message_bytes_is_too_large() {
    let b = batch_of(&good(3), 3, CODEC_NONE);
    let tight = RecordRules {
        max_message_bytes: b.len() - 1,
        ..rules()
    };
    let r = validate_produce(&b, NOW_MS, &tight).expect_err("too large");
    assert_eq!(r.kind, RejectKind::TooLarge);
    assert!(r.message.contains("exceeds max.message.bytes"));
    let exact = RecordRules {
        max_message_bytes: b.len(),
        ..rules()
    };
    validate_produce(&b, NOW_MS, &exact).unwrap();
}

#[test]
fn a_truncated_compressed_payload_is_refused_without_hanging() {
    let mut payload = Vec::new();
    for r in good(50) {
        r.encode(&mut payload);
    }
    for codec in [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD] {
        let compressed = compress(codec, &payload);
        for cut in [1, compressed.len() / 2, compressed.len() - 1] {
            let b = assemble(&compressed[..cut], 50, codec, NOW_MS + 49, 0);
            let r = check(&b).expect_err("truncated");
            assert!(
                matches!(r.kind, RejectKind::Corrupt | RejectKind::InvalidRecord),
                "codec {codec} cut {cut}: {r:?}"
            );
        }
    }
}
