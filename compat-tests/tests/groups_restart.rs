//! Group offsets across a broker restart (graceful, and kill -9 with fsync per message):
//! two auto-committing rdkafka members keep consuming across the restart; no committed
//! offset ever goes backwards (polled throughout with OffsetFetch); every message is
//! consumed at least once; and a new consumer in the same group afterwards starts
//! exactly at the committed offsets.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::admin_create;
use common::groups::*;
use millrace_compat_tests::{unique_topic, BrokerOpts, ClientProcess, TestBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

const PARTITIONS: i32 = 4;
const BATCH: usize = 2_000;

#[test]
#[ignore = "child process of the group tests (runs only with MILLRACE_GROUP_MEMBER set)"]
fn group_member_child() {
    member_main();
}

type Series = Arc<Mutex<Vec<Vec<Option<i64>>>>>;

fn scenario(crash: bool) {
    let mut opts = BrokerOpts::default()
        .partitions(PARTITIONS as u32)
        .set("group.initial.rebalance.delay.ms", "500");
    if crash {
        opts = opts.flush_interval_messages(1);
    }
    let mut broker = TestBroker::start(opts);
    let b = broker.bootstrap();
    let topic = unique_topic("grp-restart");
    let group = unique_topic("g-restart");
    admin_create(&b, &topic, PARTITIONS);
    produce_keyed(&b, &topic, 0..BATCH);
    let leo1 = log_end_offsets(&b, &topic);

    let mut members: Vec<ClientProcess> = (0..2)
        .map(|i| spawn_rdkafka_member(&format!("m{i}"), &MemberCfg::new(&b, &topic, &group)))
        .collect();

    // Poll committed offsets all along (errors while the broker is down are skipped).
    let series: Series = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (series, stop, b, group, topic) = (
            series.clone(),
            stop.clone(),
            b.clone(),
            group.clone(),
            topic.clone(),
        );
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(240);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok(c) = committed(&b, &group, &topic, PARTITIONS) {
                    series.lock().unwrap().push(c);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    {
        let refs: Vec<&ClientProcess> = members.iter().collect();
        wait_all_consumed("first batch", &refs, &leo1, Duration::from_secs(60));
    }
    wait_committed_eq(&b, &group, &topic, &leo1, Duration::from_secs(30));

    // Where each member's output stands at the restart.
    let marks: Vec<usize> = members.iter().map(|m| m.stdout_len()).collect();
    if crash {
        broker.kill9();
    } else {
        broker.stop_graceful();
    }
    broker.restart();
    // Nothing committed is lost by the restart.
    wait_committed_eq(&b, &group, &topic, &leo1, Duration::from_secs(30));

    // The same members reconnect, rejoin and consume what comes next.
    produce_keyed(&b, &topic, BATCH..2 * BATCH);
    let leo2 = log_end_offsets(&b, &topic);
    {
        let refs: Vec<&ClientProcess> = members.iter().collect();
        wait_all_consumed(
            "second batch after restart",
            &refs,
            &leo2,
            Duration::from_secs(90),
        );
    }
    wait_committed_eq(&b, &group, &topic, &leo2, Duration::from_secs(30));
    // They resumed from the committed offsets: nothing below leo1 was read again.
    for (m, &mark) in members.iter().zip(&marks) {
        let reread: Vec<(i64, i64)> = m
            .stdout_from(mark)
            .iter()
            .filter_map(|l| l.find("@@ ").map(|i| &l[i + 3..]))
            .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .filter(|e| e["ev"] == "msg")
            .map(|e| (e["p"].as_i64().unwrap(), e["o"].as_i64().unwrap()))
            .filter(|&(p, o)| o < leo1[p as usize])
            .take(5)
            .collect();
        assert!(
            reread.is_empty(),
            "{} re-read committed messages after the restart: {reread:?}",
            m.name()
        );
    }
    for m in &mut members {
        assert!(m.stop(Duration::from_secs(30)), "{} clean exit", m.name());
    }
    stop.store(true, Ordering::SeqCst);
    poller.join().unwrap();

    // Monotonic: per partition, once committed, never lower and never absent again.
    let series = series.lock().unwrap().clone();
    assert!(
        series.len() >= 5,
        "too few committed-offset samples: {}",
        series.len()
    );
    for p in 0..PARTITIONS as usize {
        let mut last: Option<i64> = None;
        for (k, s) in series.iter().enumerate() {
            match (last, s[p]) {
                (Some(a), None) => panic!("partition {p}: committed {a} vanished at sample {k}"),
                (Some(a), Some(c)) if c < a => {
                    panic!("partition {p}: committed offset went back {a} -> {c} at sample {k}")
                }
                _ => {}
            }
            last = s[p].or(last);
        }
        assert_eq!(last, Some(leo2[p]), "partition {p}: last sample");
    }

    // A new member of the same group starts exactly at the committed offsets.
    produce_keyed(&b, &topic, 2 * BATCH..2 * BATCH + 400);
    let leo3 = log_end_offsets(&b, &topic);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        // If the committed offsets were lost it would re-read from 0: detectable.
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("new member");
    c.subscribe(&[&topic]).unwrap();
    let mut first: Vec<Option<i64>> = vec![None; PARTITIONS as usize];
    let mut next: Vec<i64> = vec![-1; PARTITIONS as usize];
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..PARTITIONS as usize).any(|p| next[p] < leo3[p]) {
        assert!(
            Instant::now() < deadline,
            "new member: first {first:?}, next {next:?}, want {leo3:?}"
        );
        if let Some(r) = c.poll(Duration::from_millis(200)) {
            let m = r.expect("consume");
            let p = m.partition() as usize;
            first[p].get_or_insert(m.offset());
            next[p] = m.offset() + 1;
        }
    }
    let want: Vec<Option<i64>> = leo2.iter().map(|o| Some(*o)).collect();
    assert_eq!(
        first, want,
        "new member's first offsets == committed offsets"
    );
}

#[test]
fn group_offsets_survive_graceful_restart() {
    scenario(false);
}

#[test]
fn group_offsets_survive_kill9_restart() {
    scenario(true);
}
