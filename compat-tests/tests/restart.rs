//! Graceful restart: everything acked before SIGTERM is there afterwards, byte for byte,
//! and new appends continue each partition's offsets from the old high watermark.

mod common;

use common::{consume_all, consumer, flush_all_ok, headers, producer, send, watermarks};
use millrace_compat_tests::{now_ms, unique_topic, BrokerOpts, TestBroker};
use rdkafka::producer::BaseRecord;

const M: usize = 3_000;
const MORE: usize = 300;

fn produce(b: &str, topic: &str, range: std::ops::Range<usize>) -> Vec<common::Delivery> {
    let (p, rec) = producer(b, &[("compression.type", "lz4")]);
    let ts = now_ms();
    let n = range.len();
    for i in range {
        let v = format!("restart-{i:06}-{}", "r".repeat(i % 40));
        let seq = i.to_string();
        send(
            &p,
            BaseRecord::with_opaque_to(topic, i)
                .key(format!("k{}", i % 11).as_bytes())
                .payload(v.as_bytes())
                .headers(headers(&[("seq", seq.as_bytes())]))
                .timestamp(ts),
        );
    }
    flush_all_ok(&p, &rec, n)
}

#[test]
fn graceful_restart_keeps_data_and_offsets() {
    let mut broker = TestBroker::start(BrokerOpts::default().partitions(3));
    let b = broker.bootstrap();
    let topic = unique_topic("restart");

    produce(&b, &topic, 0..M);
    let before = consume_all(&b, &topic);
    let marks_before = watermarks(&consumer(&b), &topic);
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), M);
    assert_eq!(
        marks_before.iter().map(|(_, h)| *h).sum::<i64>(),
        M as i64,
        "high watermarks before restart: {marks_before:?}"
    );

    broker.stop_graceful();
    broker.restart();
    assert_eq!(broker.bootstrap(), b, "restart keeps the port");

    // Same records, same offsets, same bytes, same timestamps.
    let after = consume_all(&b, &topic);
    assert_eq!(
        after, before,
        "log contents changed across a graceful restart"
    );
    let marks_after = watermarks(&consumer(&b), &topic);
    assert_eq!(
        marks_after, marks_before,
        "watermarks changed across restart"
    );

    // New appends continue from the old high watermark in each partition.
    let d = produce(&b, &topic, M..M + MORE);
    for (p, (_, high)) in marks_before.iter().enumerate() {
        let mut offs: Vec<i64> = d
            .iter()
            .filter_map(|x| x.result.as_ref().ok())
            .filter(|(pp, _)| *pp == p as i32)
            .map(|(_, o)| *o)
            .collect();
        offs.sort();
        if let Some(first) = offs.first() {
            assert_eq!(
                *first, *high,
                "partition {p}: first new offset != old high watermark"
            );
            let dense: Vec<i64> = (*high..*high + offs.len() as i64).collect();
            assert_eq!(offs, dense, "partition {p}: new offsets not dense");
        }
    }
    let all = consume_all(&b, &topic);
    assert_eq!(all.iter().map(Vec::len).sum::<usize>(), M + MORE);
    for (p, msgs) in all.iter().enumerate() {
        assert_eq!(
            &msgs[..before[p].len()],
            &before[p][..],
            "partition {p}: old prefix"
        );
    }
}
