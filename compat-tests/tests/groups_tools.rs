//! Differential check with Apache Kafka's `kafka-consumer-groups` tool
//! (ConsumerGroupCommand): the same scenario on Apache Kafka 4.4.0 and on millrace in
//! one test; the normalized outputs of `--list`, `--describe`, `--reset-offsets
//! --to-earliest --execute` and `--delete` must be identical between the two brokers
//! AND equal to hard-coded expectations (so both being wrong the same way fails too).
//!
//! Always needs both brokers: without a millrace build it fails with "build it first".
//! `MILLRACE_COMPAT_DIFF_SELF=1` runs the second half on Kafka as well — only for
//! validating this test's Kafka half while millrace lacks a group coordinator.

mod common;

use std::time::{Duration, Instant};

use common::groups::{groups_tool, parse_describe, GROUPS_TOOL};
use common::{admin_create, flush_all_ok, producer, send};
use millrace_compat_tests::{kafka_tool, millrace_bin, BrokerOpts, TestBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::BaseRecord;
use rdkafka::{Message, Offset, TopicPartitionList};

// Fixed names (each broker is fresh), so outputs compare byte for byte.
const GROUP: &str = "compat-tools-group";
const TOPIC: &str = "compat-tools-topic";
/// Messages per partition, and the offsets the group commits.
const PRODUCED: [i64; 3] = [10, 20, 30];
const COMMITTED: [i64; 3] = [4, 12, 30];

/// Whitespace-normalized lines (tool column widths depend on data, not on the broker,
/// but single spaces make failures readable).
fn norm(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// `--describe` without the random CONSUMER-ID/HOST/CLIENT-ID columns: the non-table
/// lines, then "PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG" rows sorted by partition.
fn describe_norm(b: &str) -> Vec<String> {
    let full = kafka_tool(
        GROUPS_TOOL,
        &["--bootstrap-server", b, "--describe", "--group", GROUP],
        None,
    );
    full.assert_success();
    // The tool says "Consumer group 'G' has no active members." on stderr.
    // Tool log lines ("[date] WARN ...") are not part of the output proper.
    let stderr: Vec<&str> = full
        .stderr
        .lines()
        .filter(|l| !l.starts_with('['))
        .collect();
    let out = format!("{}\n{}", stderr.join("\n"), full.stdout);
    let mut v: Vec<String> = norm(&out)
        .into_iter()
        .filter(|l| !l.starts_with("GROUP TOPIC") && !l.starts_with(&format!("{GROUP} ")))
        .collect();
    for r in parse_describe(&out) {
        assert_eq!(
            (r.group.as_str(), r.topic.as_str()),
            (GROUP, TOPIC),
            "{r:?}"
        );
        v.push(format!(
            "{} {} {} {}",
            r.partition, r.current_offset, r.log_end_offset, r.lag
        ));
    }
    v
}

fn expected_rows(current: [i64; 3]) -> Vec<String> {
    (0..3)
        .map(|p| {
            format!(
                "{p} {} {} {}",
                current[p],
                PRODUCED[p],
                PRODUCED[p] - current[p]
            )
        })
        .collect()
}

fn list(b: &str) -> Vec<String> {
    norm(&groups_tool(b, &["--list"]))
}

/// The scenario on one broker; returns (step, normalized output) pairs.
fn scenario(broker: &TestBroker) -> Vec<(&'static str, Vec<String>)> {
    let b = broker.bootstrap();
    let who = format!("{:?}", broker.target());
    admin_create(&b, TOPIC, 3);
    let (p, rec) = producer(&b, &[]);
    let mut n = 0;
    for (part, &count) in PRODUCED.iter().enumerate() {
        for i in 0..count {
            let v = format!("p{part}-m{i}");
            send(
                &p,
                BaseRecord::with_opaque_to(TOPIC, n)
                    .partition(part as i32)
                    .payload(v.as_bytes()),
            );
            n += 1;
        }
    }
    flush_all_ok(&p, &rec, n);
    drop(p);

    // A subscribed group member reads everything, commits COMMITTED, closes.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let mut next = [0i64; 3];
    let deadline = Instant::now() + Duration::from_secs(60);
    while next != PRODUCED {
        assert!(Instant::now() < deadline, "{who}: consumed up to {next:?}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let p = m.partition() as usize;
            assert_eq!(m.offset(), next[p], "{who}: partition {p} in order");
            next[p] = m.offset() + 1;
        }
    }
    let mut tpl = TopicPartitionList::new();
    for (p, &o) in COMMITTED.iter().enumerate() {
        tpl.add_partition_offset(TOPIC, p as i32, Offset::Offset(o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(c); // close: LeaveGroup, the group is Empty with its offsets

    let mut t = Vec::new();
    let l = list(&b);
    assert_eq!(l, [GROUP], "{who}: --list");
    t.push(("list", l));

    let d = describe_norm(&b);
    let mut want = vec![format!("Consumer group '{GROUP}' has no active members.")];
    want.extend(expected_rows(COMMITTED));
    assert_eq!(d, want, "{who}: --describe");
    t.push(("describe", d));

    let r = norm(&groups_tool(
        &b,
        &[
            "--reset-offsets",
            "--to-earliest",
            "--execute",
            "--group",
            GROUP,
            "--topic",
            TOPIC,
        ],
    ));
    let mut want = vec!["GROUP TOPIC PARTITION NEW-OFFSET".to_string()];
    want.extend((0..3).map(|p| format!("{GROUP} {TOPIC} {p} 0")));
    let mut sorted = r.clone();
    sorted[1..].sort();
    assert_eq!(sorted, want, "{who}: --reset-offsets");
    t.push(("reset-offsets", sorted));

    let d = describe_norm(&b);
    let mut want = vec![format!("Consumer group '{GROUP}' has no active members.")];
    want.extend(expected_rows([0, 0, 0]));
    assert_eq!(d, want, "{who}: --describe after reset");
    t.push(("describe after reset", d));

    let del = norm(&groups_tool(&b, &["--delete", "--group", GROUP]));
    assert_eq!(
        del,
        [format!(
            "Deletion of requested consumer groups ('{GROUP}') was successful."
        )],
        "{who}: --delete"
    );
    t.push(("delete", del));

    let l = list(&b);
    assert!(l.is_empty(), "{who}: --list after delete: {l:?}");
    t.push(("list after delete", l));
    t
}

#[test]
fn consumer_groups_tool_matches_kafka() {
    let self_check = std::env::var("MILLRACE_COMPAT_DIFF_SELF").as_deref() == Ok("1");
    if !self_check {
        // Fail fast, before the slow Kafka half, when millrace is not built. This test
        // needs both brokers whatever MILLRACE_COMPAT_TARGET says.
        eprintln!("consumer_groups_tool_matches_kafka runs Apache Kafka AND millrace");
        millrace_bin();
    }
    let opts = BrokerOpts::default().partitions(3);
    let kafka = TestBroker::start_kafka(opts.clone());
    let reference = scenario(&kafka);
    drop(kafka);

    let other = if self_check {
        eprintln!("MILLRACE_COMPAT_DIFF_SELF=1: comparing Kafka with Kafka (harness check)");
        TestBroker::start_kafka(opts)
    } else {
        TestBroker::start_millrace(opts)
    };
    let got = scenario(&other);
    for ((step, want), (_, have)) in reference.iter().zip(&got) {
        assert_eq!(
            have,
            want,
            "{step}: {:?} differs from Kafka",
            other.target()
        );
    }
    assert_eq!(got.len(), reference.len());
}
