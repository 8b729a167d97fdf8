//! Kafka Streams exactly-once (`streams/WordCount.java` with
//! `processing.guarantee=exactly_once_v2` and no store cache, so every word read yields
//! one count update): two instances of one app count words through a repartition topic
//! and a state store; one instance is killed with SIGKILL mid-stream and restarted on
//! its state dir. Read with read_committed, each word's updates in the output topic and
//! in the store's changelog must be exactly 1, 2, ..., n (n = its occurrences in the
//! input): a duplicate or a lost update would break the sequence.
//!
//! Single node on both brokers: Apache Kafka 4.4.0 (the reference) and millrace; and
//! three millrace nodes with every topic replicated three times (the harness starts
//! Kafka as a single node only).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{admin_create_replicated, flush_all_ok, producer, read_to_end, send};
use millrace_compat_tests::{
    java_program_command, unique_topic, wait_until, BrokerOpts, ClientProcess, Target, TestBroker,
    TestCluster,
};
use rdkafka::producer::BaseRecord;

const WORDS: [&str; 10] = [
    "amber", "basil", "cedar", "dune", "ember", "fern", "grove", "heath", "iris", "juniper",
];

/// Line `i`: 1 to 4 words.
fn line(i: usize) -> String {
    (0..=i % 4)
        .map(|j| WORDS[(i * 3 + j * 7) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn produce_lines(bootstrap: &str, topic: &str, lines: std::ops::Range<usize>) {
    let (p, rec) = producer(bootstrap, &[]);
    let n = lines.len();
    for i in lines {
        let key = format!("line-{i}");
        let value = line(i);
        send(
            &p,
            BaseRecord::with_opaque_to(topic, i)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
    }
    flush_all_ok(&p, &rec, n);
}

fn start_app(
    bootstrap: &str,
    app_id: &str,
    input: &str,
    output: &str,
    state_dir: &std::path::Path,
) -> ClientProcess {
    let mut cmd = java_program_command("streams", "WordCount", "384m");
    cmd.args(["--bootstrap", bootstrap])
        .args(["--application-id", app_id])
        .args(["--input", input])
        .args(["--output", output])
        .args(["--guarantee", "exactly_once_v2"])
        .args(["--cache-max-bytes", "0"])
        .arg("--state-dir")
        .arg(state_dir);
    ClientProcess::spawn("wordcount-eos", cmd, None)
}

fn wait_running(app: &mut ClientProcess) {
    wait_until(
        "the Streams app to reach RUNNING",
        Duration::from_secs(120),
        || {
            let lines = app.stdout_lines();
            assert!(
                app.is_running(),
                "the Streams app exited: {lines:?}\n{}",
                app.stderr_tail(60)
            );
            if lines.iter().any(|l| l == "@@ state RUNNING") {
                Ok(())
            } else {
                Err(format!("{lines:?}\n{}", app.stderr_tail(8)))
            }
        },
    );
}

/// Each word's values in `topic` (read_committed), in offset order.
fn updates(bootstrap: &str, topic: &str, decode: fn(&[u8]) -> u64) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for msg in read_to_end(bootstrap, topic, "read_committed")
        .into_iter()
        .flatten()
    {
        let word = String::from_utf8(msg.key.expect("key")).expect("utf-8 word");
        out.entry(word)
            .or_default()
            .push(decode(&msg.value.expect("value")));
    }
    out
}

fn decimal(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .expect("utf-8")
        .parse()
        .expect("decimal count")
}

/// The store's changelog holds the count as an 8-byte big-endian long.
fn long(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8-byte count"))
}

/// One transaction coordinator shard keeps the test quick.
fn opts() -> BrokerOpts {
    BrokerOpts::default().set("transaction.state.log.num.partitions", "1")
}

/// The scenario against the brokers at `b`, topics with `replication_factor` replicas
/// (Streams' own topics take the broker's default).
fn streams_exactly_once(b: &str, replication_factor: i32) {
    let b = b.to_string();
    let app_id = unique_topic("wordcount-eos");
    let input = format!("{app_id}-input");
    let output = format!("{app_id}-output");
    admin_create_replicated(&b, &input, 4, replication_factor, &[]);
    admin_create_replicated(&b, &output, 4, replication_factor, &[]);
    const LINES: usize = 900;
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..LINES {
        for w in line(i).split(' ') {
            *want.entry(w.to_string()).or_default() += 1;
        }
    }

    let dirs = [
        tempfile::TempDir::new().unwrap(),
        tempfile::TempDir::new().unwrap(),
    ];
    let mut apps: Vec<ClientProcess> = dirs
        .iter()
        .map(|d| start_app(&b, &app_id, &input, &output, d.path()))
        .collect();
    for app in &mut apps {
        wait_running(app);
    }
    produce_lines(&b, &input, 0..LINES / 3);
    wait_until("the first counts", Duration::from_secs(120), || {
        let n: usize = updates(&b, &output, decimal).values().map(Vec::len).sum();
        if n > 0 {
            Ok(())
        } else {
            Err("no committed output yet".into())
        }
    });
    // Mid-stream: the second third goes in, and one instance dies with its transaction
    // open; the survivor takes over its tasks once the session times out.
    produce_lines(&b, &input, LINES / 3..2 * LINES / 3);
    let before: usize = updates(&b, &output, decimal).values().map(Vec::len).sum();
    apps[0].kill9();
    eprintln!("instance 0 killed with {before} count updates committed");
    produce_lines(&b, &input, 2 * LINES / 3..LINES);
    apps[0] = start_app(&b, &app_id, &input, &output, dirs[0].path());
    wait_running(&mut apps[0]);

    let exact: BTreeMap<String, Vec<u64>> = want
        .iter()
        .map(|(w, n)| (w.clone(), (1..=*n).collect()))
        .collect();
    wait_until(
        "every count update, exactly once",
        Duration::from_secs(180),
        || {
            for app in &mut apps {
                assert!(
                    app.is_running(),
                    "a Streams app exited: {:?}\n{}",
                    app.stdout_lines(),
                    app.stderr_tail(60)
                );
            }
            let got = updates(&b, &output, decimal);
            let last: BTreeMap<&String, u64> = got
                .iter()
                .map(|(w, v)| (w, *v.last().expect("an update")))
                .collect();
            if last.values().sum::<u64>() < want.values().sum::<u64>() {
                return Err(format!("latest counts {last:?}, want {want:?}"));
            }
            Ok(())
        },
    );
    assert_eq!(
        updates(&b, &output, decimal),
        exact,
        "output updates per word"
    );
    let changelog = format!("{app_id}-counts-changelog");
    assert_eq!(
        updates(&b, &changelog, long),
        exact,
        "changelog updates per word"
    );
    for app in &mut apps {
        assert!(
            app.stop(Duration::from_secs(90)),
            "the Streams app did not close cleanly: {}",
            app.stderr_tail(60)
        );
    }
}

#[test]
fn streams_exactly_once_survives_a_killed_instance_on_kafka() {
    let broker = TestBroker::start_target(Target::Kafka, opts());
    streams_exactly_once(&broker.bootstrap(), 1);
}

#[test]
fn streams_exactly_once_survives_a_killed_instance_on_millrace() {
    let broker = TestBroker::start_target(Target::Millrace, opts());
    streams_exactly_once(&broker.bootstrap(), 1);
}

/// Three millrace nodes, every topic (Streams' repartition and changelog topics, the
/// offsets and transaction state topics) with three replicas and
/// `min.insync.replicas=2`: the transaction coordinator, the group coordinator and the
/// partitions the app writes are spread over the nodes.
#[test]
fn streams_exactly_once_survives_a_killed_instance_on_three_millrace_nodes() {
    let cluster = TestCluster::start_millrace(
        3,
        opts()
            .set("default.replication.factor", "3")
            .set("min.insync.replicas", "2"),
    );
    streams_exactly_once(&cluster.bootstrap(), 3);
}
