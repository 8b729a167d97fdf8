//! rdkafka (librdkafka 2.12): idempotent produce with every compression codec, exact
//! read-back with a manual-assign consumer, ListOffsets by timestamp and watermarks.

mod common;

use std::time::Duration;

use common::{admin_create, consume_all, consumer, flush_all_ok, headers, producer, send, Msg};
use millrace_compat_tests::{now_ms, unique_topic, BrokerOpts, TestBroker};
use rdkafka::consumer::Consumer;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

const N: usize = 2_000;

/// Deterministic, mildly compressible payload of varying size.
fn value_of(i: usize) -> Vec<u8> {
    let len = 10 + (i * 37) % 700;
    (0..len)
        .map(|j| b"abcdefghij0123456789"[(i + j / 7) % 20])
        .collect()
}

#[test]
fn every_codec_round_trips_exactly() {
    let broker = TestBroker::start(BrokerOpts::default().partitions(3));
    let b = broker.bootstrap();
    // Explicit CreateTime timestamps, an hour in the past (inside Kafka's default
    // log.message.timestamp.before.max.ms), one millisecond apart.
    let base_ts = now_ms() - 3_600_000;

    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_topic(&format!("rd-{codec}"));
        // Two topics through CreateTopics, the rest through auto-creation on produce.
        if codec == "none" || codec == "zstd" {
            admin_create(&b, &topic, 3);
        }
        let (p, rec) = producer(&b, &[("compression.type", codec)]);
        for i in 0..N {
            let key = format!("key-{}", i % 17);
            let value = value_of(i);
            let seq = i.to_string();
            let hdrs = headers(&[
                ("seq", seq.as_bytes()),
                ("codec", codec.as_bytes()),
                ("empty", b""),
            ])
            .insert(rdkafka::message::Header::<&[u8]> {
                key: "null",
                value: None,
            });
            let record = BaseRecord::with_opaque_to(&topic, i)
                .key(key.as_bytes())
                .payload(&value[..])
                .headers(hdrs)
                .timestamp(base_ts + i as i64);
            send(&p, record);
        }
        let deliveries = flush_all_ok(&p, &rec, N);
        drop(p);
        let positions = common::delivered_positions(&deliveries);
        assert_eq!(positions.len(), N, "{codec}: one report per message");

        let parts = consume_all(&b, &topic);
        assert_eq!(parts.len(), 3, "{codec}: partition count");
        let total: usize = parts.iter().map(Vec::len).sum();
        assert_eq!(total, N, "{codec}: consumed count");
        let c = consumer(&b);
        let mut high_sum = 0;
        for (pi, msgs) in parts.iter().enumerate() {
            let (low, high) = c
                .fetch_watermarks(&topic, pi as i32, Duration::from_secs(10))
                .unwrap();
            assert_eq!(low, 0, "{codec}/{pi}: low watermark");
            assert_eq!(high, msgs.len() as i64, "{codec}/{pi}: high watermark");
            high_sum += high;
            let mut last_seq = None;
            for (k, m) in msgs.iter().enumerate() {
                assert_eq!(m.offset, k as i64, "{codec}/{pi}: offsets dense from 0");
                let seq = seq_of(m);
                assert_eq!(
                    positions[&seq],
                    (pi as i32, m.offset),
                    "{codec}: message {seq} consumed elsewhere than its delivery report said"
                );
                // The idempotent producer keeps send order within a partition.
                assert!(
                    last_seq < Some(seq),
                    "{codec}/{pi}: order {last_seq:?} then {seq}"
                );
                last_seq = Some(seq);
                let expected = Msg {
                    partition: pi as i32,
                    offset: m.offset,
                    key: Some(format!("key-{}", seq % 17).into_bytes()),
                    value: Some(value_of(seq)),
                    headers: vec![
                        ("seq".into(), Some(seq.to_string().into_bytes())),
                        ("codec".into(), Some(codec.as_bytes().to_vec())),
                        ("empty".into(), Some(Vec::new())),
                        ("null".into(), None),
                    ],
                    timestamp: Some(base_ts + seq as i64),
                };
                assert_eq!(m, &expected, "{codec}: message {seq} altered");
            }
        }
        assert_eq!(high_sum, N as i64, "{codec}: sum of high watermarks");
    }
}

fn seq_of(m: &Msg) -> usize {
    let (_, v) = m
        .headers
        .iter()
        .find(|(k, _)| k == "seq")
        .unwrap_or_else(|| panic!("no seq header in {m:?}"));
    std::str::from_utf8(v.as_deref().expect("seq value"))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn offsets_for_times_and_watermarks() {
    const M: i64 = 100;
    let broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("rd-times");
    admin_create(&b, &topic, 1);

    // Message k has timestamp base + 10k: strictly increasing, with gaps to aim into.
    let base = now_ms() - 600_000;
    let (p, rec) = producer(&b, &[("linger.ms", "0")]);
    for k in 0..M {
        let v = format!("m{k}");
        send(
            &p,
            BaseRecord::with_opaque_to(&topic, k as usize)
                .partition(0)
                .key(&b"t"[..])
                .payload(v.as_bytes())
                .timestamp(base + 10 * k),
        );
    }
    flush_all_ok(&p, &rec, M as usize);
    drop(p);

    let c = consumer(&b);
    assert_eq!(
        c.fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .unwrap(),
        (0, M),
        "watermarks (low, high)"
    );

    // ListOffsets by timestamp: the first offset whose timestamp is >= the target.
    let cases: Vec<(i64, Offset)> = vec![
        (base - 60_000, Offset::Offset(0)), // before everything -> first offset
        (base, Offset::Offset(0)),          // exact hit
        (base + 1, Offset::Offset(1)),      // between 0 and 1 -> next
        (base + 10 * 42, Offset::Offset(42)),
        (base + 10 * 42 - 3, Offset::Offset(42)),
        (base + 10 * (M - 1), Offset::Offset(M - 1)), // the last message
        // After every message: Kafka answers offset -1 (and timestamp -1), which
        // librdkafka reports as Offset::End.
        (base + 10 * M, Offset::End),
    ];
    for (target, want) in &cases {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(*target))
            .unwrap();
        let got = c
            .offsets_for_times(tpl, Duration::from_secs(10))
            .expect("offsets_for_times");
        let e = got.find_partition(&topic, 0).expect("partition in answer");
        assert!(e.error().is_ok(), "target {target}: {:?}", e.error());
        assert_eq!(
            e.offset(),
            *want,
            "offsets_for_times(base{:+}) ",
            target - base
        );
    }
}
