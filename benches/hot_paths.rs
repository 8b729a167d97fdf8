//! Criterion micro-benchmarks of Millrace's hot paths, through its public API only.
//!
//! `cargo bench --bench hot_paths` (all), or e.g. `cargo bench --bench hot_paths -- read`.
//! Inputs are real Kafka record batches (v2, 1 KiB values, as librdkafka or the Java
//! client send them) built with the kafka-protocol crate's encoder.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use millrace::log::batch::{self, BatchHeader};
use millrace::log::validator::{self, RecordRules};
use millrace::log::{Log, LogConfig};
use millrace::server::frame::{decode_request, Frame};

const VALUE_BYTES: usize = 1024;

/// One v2 batch of `records` values of 1 KiB, base offset 0, no producer id.
fn record_batch(records: usize, compression: Compression) -> Bytes {
    let value: Bytes = (0..VALUE_BYTES)
        .map(|i| b'A' + (i * 7 % 26) as u8)
        .collect::<Vec<u8>>()
        .into();
    let recs: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence changes: keep it
            // constant so that all records form one batch (base sequence -1).
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// Appends `batch` (re-based at the log end) `n` times.
fn append_n(log: &mut Log, batch: &[u8], n: usize) {
    let mut copy = batch.to_vec();
    for _ in 0..n {
        let base = log.log_end_offset();
        batch::patch_offset_and_epoch(&mut copy, base, 0);
        let header: BatchHeader = BatchHeader::parse(&copy).expect("header");
        log.append(&copy, &header, 1_700_000_000_000)
            .expect("append");
    }
}

fn bench_validate_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("produce_path");
    for (name, records, codec) in [
        ("16x1KiB_none", 16, Compression::None),
        ("64x1KiB_none", 64, Compression::None),
        ("64x1KiB_lz4", 64, Compression::Lz4),
    ] {
        let b = record_batch(records, codec);
        g.throughput(Throughput::Bytes((records * VALUE_BYTES) as u64));
        g.bench_function(format!("validate_all/{name}"), |bench| {
            bench.iter(|| batch::validate_all(black_box(&b)).expect("valid"))
        });
        // The broker's per-batch work: validate, copy, patch offsets, write(2) to the
        // active segment (page cache; no fsync at the default flush policy), index.
        // The log is recreated (outside the timing) every 256 MiB so the benchmark never
        // rolls a segment (a roll fsyncs) nor fills the disk.
        g.bench_function(format!("validate_patch_append/{name}"), |bench| {
            bench.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let per_log = ((256 << 20) / b.len()).max(1) as u64;
                let mut left = iters;
                while left > 0 {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let mut log =
                        Log::open(&dir.path().join("t-0"), LogConfig::default()).expect("open log");
                    let n = left.min(per_log);
                    let start = Instant::now();
                    for _ in 0..n {
                        let valid = validator::validate_produce(
                            black_box(&b),
                            1_700_000_000_000,
                            &RecordRules::default(),
                        )
                        .expect("valid");
                        let mut copy = b.to_vec();
                        let base = log.log_end_offset();
                        batch::patch_offset_and_epoch(&mut copy, base, 0);
                        let mut h = valid.header;
                        h.base_offset = base;
                        log.append(&copy, &h, 1_700_000_000_000).expect("append");
                    }
                    elapsed += start.elapsed();
                    left -= n;
                }
                elapsed
            })
        });
    }
    // What taking appends off the async workers costs per produce: the same append for
    // one 16x1KiB batch, awaited from an async task through a blocking-thread hop and a
    // completion channel, one at a time (an idle partition: the broker's queue then
    // starts a drainer with `spawn_blocking` for every append, its worst case).
    let b = record_batch(16, Compression::None);
    g.throughput(Throughput::Bytes((16 * VALUE_BYTES) as u64));
    g.bench_function(
        "validate_patch_append_on_blocking_thread/16x1KiB_none",
        |bench| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("runtime");
            bench.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let per_log = ((256 << 20) / b.len()).max(1) as u64;
                let mut left = iters;
                while left > 0 {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let log =
                        Log::open(&dir.path().join("t-0"), LogConfig::default()).expect("open log");
                    let log = std::sync::Arc::new(std::sync::Mutex::new(log));
                    let n = left.min(per_log);
                    let start = Instant::now();
                    runtime.block_on(async {
                        for _ in 0..n {
                            let (log, b) = (log.clone(), b.clone());
                            tokio::task::spawn_blocking(move || {
                                let headers = batch::validate_all(black_box(&b)).expect("valid");
                                let mut copy = b.to_vec();
                                let mut log = log.lock().expect("log lock");
                                let base = log.log_end_offset();
                                batch::patch_offset_and_epoch(&mut copy, base, 0);
                                let mut h = headers[0];
                                h.base_offset = base;
                                log.append(&copy, &h, 1_700_000_000_000).expect("append");
                            })
                            .await
                            .expect("append task");
                        }
                    });
                    elapsed += start.elapsed();
                    left -= n;
                }
                elapsed
            })
        },
    );
    g.finish();
}

/// Produce validation of a 1 MiB batch of 1 KiB records: what main did (header, CRC and,
/// uncompressed, the record lengths: `batch::validate`) against the full walk of every
/// record, decompressing as it goes (`validator::validate_produce`).
fn bench_validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("produce_validation");
    let rules = RecordRules {
        max_message_bytes: 2 << 20,
        ..RecordRules::default()
    };
    for (name, codec) in [
        ("1MiB_1KiB_none", Compression::None),
        ("1MiB_1KiB_lz4", Compression::Lz4),
        ("1MiB_1KiB_zstd", Compression::Zstd),
    ] {
        let b = record_batch(1024, codec);
        g.throughput(Throughput::Bytes((1024 * VALUE_BYTES) as u64));
        g.bench_function(format!("header_crc/{name}"), |bench| {
            bench.iter(|| batch::validate(black_box(&b)).expect("valid"))
        });
        g.bench_function(format!("full_walk/{name}"), |bench| {
            bench.iter(|| {
                validator::validate_produce(black_box(&b), 1_700_000_000_000, &rules)
                    .expect("valid")
            })
        });
    }
    g.finish();
}

fn bench_read(c: &mut Criterion) {
    // 64 MiB of 16-record batches: 4096 batches, 65536 offsets, one segment.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(&dir.path().join("t-0"), LogConfig::default()).expect("open log");
    let b = record_batch(16, Compression::None);
    append_n(&mut log, &b, 4096);
    let end = log.log_end_offset() as u64;
    let mut g = c.benchmark_group("read_path");
    // Index lookup + header scan + one small read: the cost of locating an offset.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next_offset = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % end) as i64
    };
    g.throughput(Throughput::Elements(1));
    g.bench_function("read_one_batch_random_offset", |bench| {
        bench.iter(|| log.read(black_box(next_offset()), 1, true).expect("read"))
    });
    // A consumer's fetch of one partition: 1 MiB (librdkafka's fetch.message.max.bytes).
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("fetch_read_1MiB_random_offset", |bench| {
        bench.iter(|| {
            let off = next_offset().min(end as i64 - 1200);
            log.read(black_box(off), 1 << 20, true).expect("read")
        })
    });
    g.finish();
}

/// A Produce v9 request frame (header v2 + body, without the size prefix) as librdkafka
/// sends it: one topic, `partitions` partitions, one 16 x 1 KiB batch each.
fn produce_frame(partitions: i32) -> Bytes {
    let b = record_batch(16, Compression::None);
    let version = 9;
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(
                (0..partitions)
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(b.clone()))
                    })
                    .collect(),
            )]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ApiKey::Produce.request_header_version(version))
        .expect("encode header");
    req.encode(&mut buf, version).expect("encode body");
    buf.freeze()
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_request");
    for partitions in [1, 8] {
        let frame = produce_frame(partitions);
        match decode_request(frame.clone()).expect("decode") {
            Frame::Request { api_key, .. } => assert_eq!(api_key, ApiKey::Produce),
            _ => panic!("not a request"),
        }
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(format!("produce_v9_{partitions}x16x1KiB"), |bench| {
            bench.iter_batched(
                || frame.clone(),
                |f| decode_request(black_box(f)).expect("decode"),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_validate_append, bench_validation, bench_read, bench_decode
}
criterion_main!(benches);
