//! Crash safety: with log.flush.interval.messages=1 an acknowledged (acks=all) message
//! is durable. SIGKILL the broker in the middle of an idempotent produce stream, restart
//! on the same data dir, and read everything back with CRC checks.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{consume_all, producer, send};
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestBroker};
use rdkafka::producer::BaseRecord;

const MAX_MESSAGES: usize = 200_000;
const ACKS_BEFORE_KILL: usize = 2_000;
/// Keep at most this many messages un-reported, so acks keep flowing while the kill
/// lands (and the loop cannot race ahead of the broker).
const MAX_OUTSTANDING: usize = 5_000;

#[test]
fn acked_messages_survive_kill9() {
    let t0 = Instant::now();
    let mut broker = TestBroker::start(
        BrokerOpts::default()
            .partitions(3)
            .flush_interval_messages(1),
    );
    let b = broker.bootstrap();
    let topic = unique_topic("crash");

    let (p, rec) = producer(
        &b,
        &[("retries", "1000000"), ("message.timeout.ms", "30000")],
    );
    let stop = AtomicBool::new(false);
    let sent = std::thread::scope(|s| {
        let producing = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut i = 0;
            while i < MAX_MESSAGES && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                if i - rec.count() >= MAX_OUTSTANDING {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let v = format!("n={i:07};{}", "c".repeat(i % 64));
                send(
                    &p,
                    BaseRecord::with_opaque_to(&topic, i)
                        .key(format!("k{}", i % 13).as_bytes())
                        .payload(v.as_bytes()),
                );
                i += 1;
            }
            i
        });
        wait_until(
            &format!("{ACKS_BEFORE_KILL} acked messages before the kill"),
            Duration::from_secs(30),
            || {
                let ok = rec.snapshot().iter().filter(|d| d.result.is_ok()).count();
                // A finished producer thread ends the wait too; the real counts are
                // asserted below.
                if ok >= ACKS_BEFORE_KILL || producing.is_finished() {
                    Ok(ok)
                } else {
                    Err(format!("{ok} acked"))
                }
            },
        );
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        producing.join().expect("producer thread")
    });
    // Dropping purges whatever is still queued or in flight (reported as failures).
    drop(p);
    let reports = rec.snapshot();
    let acked: HashSet<usize> = reports
        .iter()
        .filter(|d| d.result.is_ok())
        .map(|d| d.id)
        .collect();
    assert!(
        acked.len() >= ACKS_BEFORE_KILL,
        "only {} of {sent} sent messages acked before the kill\n{}",
        acked.len(),
        broker.log_tail()
    );
    assert!(
        acked.len() < sent,
        "every sent message ({sent}) was acked: the kill did not land mid-load"
    );

    eprintln!(
        "crash: {sent} sent, {} acked, {} reports; killed at {:?}",
        acked.len(),
        reports.len(),
        t0.elapsed()
    );
    broker.restart();
    eprintln!("crash: restarted at {:?}", t0.elapsed());
    // consume_all fails on any consume error (CRC checks on) and must reach every
    // partition's high watermark.
    let parts = consume_all(&b, &topic);
    let mut seen = HashSet::new();
    for (pi, msgs) in parts.iter().enumerate() {
        for m in msgs {
            let v = String::from_utf8(m.value.clone().expect("value")).expect("utf8 value");
            let n: usize = v
                .strip_prefix("n=")
                .and_then(|r| r.get(..7))
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("{pi}@{}: bad value {v:?}", m.offset));
            assert_eq!(
                v,
                format!("n={n:07};{}", "c".repeat(n % 64)),
                "{pi}@{}: altered",
                m.offset
            );
            assert_eq!(m.key.as_deref(), Some(format!("k{}", n % 13).as_bytes()));
            assert!(
                seen.insert(n),
                "message {n} appears twice (second at {pi}@{})",
                m.offset
            );
        }
    }
    let mut lost: Vec<usize> = acked.difference(&seen).copied().collect();
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} acked messages lost after kill -9 (first: {:?}); acked {}, read back {}",
        lost.len(),
        &lost[..lost.len().min(10)],
        acked.len(),
        seen.len()
    );
}
