//! Apache Kafka 4.4.0's stock CLI tools (the classes behind kafka-topics.sh,
//! kafka-console-producer.sh, kafka-get-offsets.sh, kafka-console-consumer.sh), run with
//! `java -cp`, against one broker shared by all steps (JVM start is the slow part).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use millrace_compat_tests::{kafka_tool, unique_topic, BrokerOpts, TestBroker};

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const GET_OFFSETS: &str = "org.apache.kafka.tools.GetOffsetShell";
const LINES: usize = 200;

fn list_topics(b: &str) -> BTreeSet<String> {
    let out = kafka_tool(TOPICS, &["--bootstrap-server", b, "--list"], None);
    out.assert_success();
    out.stdout.lines().map(|l| l.trim().to_string()).collect()
}

#[test]
fn stock_cli_tools_topic_lifecycle() {
    // num.partitions=1 so the explicit --partitions 2 is what gets checked.
    let broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("cli");

    // kafka-topics --create
    let out = kafka_tool(
        TOPICS,
        &[
            "--bootstrap-server",
            &b,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "2",
            "--replication-factor",
            "1",
        ],
        None,
    );
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("Created topic {topic}.")),
        "create: {}",
        out.describe()
    );

    // kafka-topics --list
    assert!(list_topics(&b).contains(&topic), "--list lacks {topic}");

    // kafka-topics --describe: a summary line, then one line per partition, each led by
    // node 1 (the single broker).
    let out = kafka_tool(
        TOPICS,
        &["--bootstrap-server", &b, "--describe", "--topic", &topic],
        None,
    );
    out.assert_success();
    assert!(
        out.stdout.contains("PartitionCount: 2") && out.stdout.contains("ReplicationFactor: 1"),
        "describe summary: {}",
        out.describe()
    );
    let part_lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("Partition: "))
        .collect();
    assert_eq!(
        part_lines.len(),
        2,
        "describe partition lines: {}",
        out.describe()
    );
    for (i, l) in part_lines.iter().enumerate() {
        assert!(
            l.contains(&format!("Partition: {i}\t"))
                && l.contains("Leader: 1\t")
                && l.contains("Replicas: 1\t")
                && l.contains("Isr: 1"),
            "describe line {i}: {l:?}"
        );
    }

    // kafka-console-producer, default settings (idempotent, acks=all). Keyed lines so
    // both partitions get data through the default (murmur2) partitioner.
    let lines: Vec<String> = (0..LINES)
        .map(|i| format!("line-{i:04} payload {}", i * 7))
        .collect();
    let input: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("key{}\t{l}\n", i % 20))
        .collect();
    kafka_tool(
        PRODUCER,
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            &topic,
            "--reader-property",
            "parse.key=true",
        ],
        Some(input.as_bytes()),
    )
    .assert_success();

    // kafka-get-offsets: per-partition end offsets ("topic:partition:offset").
    let out = kafka_tool(
        GET_OFFSETS,
        &["--bootstrap-server", &b, "--topic", &topic],
        None,
    );
    out.assert_success();
    let ends: BTreeMap<u32, usize> = out
        .stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.trim().rsplitn(3, ':').collect();
            assert_eq!(f.len(), 3, "get-offsets line {l:?}");
            (f[1].parse().unwrap(), f[0].parse().unwrap())
        })
        .collect();
    assert_eq!(
        ends.keys().copied().collect::<Vec<_>>(),
        vec![0, 1],
        "{}",
        out.describe()
    );
    assert_eq!(
        ends.values().sum::<usize>(),
        LINES,
        "end offsets sum: {ends:?}"
    );
    assert!(
        ends.values().all(|&n| n > 0),
        "a partition got nothing: {ends:?}"
    );

    // kafka-console-consumer per partition from earliest: together they return exactly
    // the produced lines, each once.
    let mut consumed = Vec::new();
    for (p, n) in &ends {
        let out = kafka_tool(
            CONSUMER,
            &[
                "--bootstrap-server",
                &b,
                "--topic",
                &topic,
                "--partition",
                &p.to_string(),
                "--offset",
                "earliest",
                "--max-messages",
                &n.to_string(),
                "--timeout-ms",
                "30000",
            ],
            None,
        );
        out.assert_success();
        let got: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        assert_eq!(got.len(), *n, "partition {p}: {}", out.describe());
        assert!(
            out.stderr
                .contains(&format!("Processed a total of {n} messages")),
            "{}",
            out.describe()
        );
        consumed.extend(got);
    }
    let consumed_set: BTreeSet<&String> = consumed.iter().collect();
    assert_eq!(consumed_set.len(), LINES, "duplicates in consumed lines");
    assert_eq!(
        consumed_set,
        lines.iter().collect(),
        "consumed lines != produced lines"
    );

    // kafka-topics --delete, then --list stops showing it (deletion is asynchronous:
    // bounded polling, each poll a JVM start).
    let out = kafka_tool(
        TOPICS,
        &["--bootstrap-server", &b, "--delete", "--topic", &topic],
        None,
    );
    out.assert_success();
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        let names = list_topics(&b);
        if !names.contains(&topic) {
            break;
        }
        assert!(
            attempt < 30 && Instant::now() < deadline,
            "{topic} still listed after --delete: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
