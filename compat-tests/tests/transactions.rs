//! Transactions (exactly-once) with real clients, each scenario written once and run on
//! both brokers: Apache Kafka 4.4.0 (the reference the expectations were validated on)
//! and millrace.
//!
//! - Apache Kafka's Java client (`txn/TxnScenarios.java`): commit, abort, an open
//!   transaction holding back the last stable offset, zombie fencing, the coordinator's
//!   timeout abort, consume-transform-produce with `sendOffsetsToTransaction`.
//! - librdkafka (the rdkafka crate): commit, abort, an open transaction, fencing, each
//!   read by read_committed and read_uncommitted consumers.
//! - `kafka-transactions` (Kafka's `TransactionsCommand`): list, describe,
//!   describe-producers, find-hanging and abort of an open transaction; the normalised
//!   output must equal Kafka 4.4.0's (hard-coded below).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use millrace_compat_tests::{
    java_program_command, kafka_tool, run_with_timeout, unique_topic, BrokerOpts, Target,
    TestBroker,
};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

/// A single broker whose coordinator looks for timed-out transactions every 500 ms
/// (Kafka's default is 10 s) and keeps its transaction log in one partition.
fn start(target: Target) -> TestBroker {
    TestBroker::start_target(
        target,
        BrokerOpts::default()
            .set(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                "500",
            )
            .set("transaction.state.log.num.partitions", "1"),
    )
}

// --- Java client scenarios ---------------------------------------------------------

/// Runs TxnScenarios and returns each scenario's JSON summary by name.
fn java_scenarios(broker: &TestBroker, prefix: &str, names: &[&str]) -> BTreeMap<String, Value> {
    let mut cmd = java_program_command("txn", "TxnScenarios", "256m");
    cmd.arg(broker.bootstrap()).arg(prefix).args(names);
    let out = run_with_timeout(cmd, None, Duration::from_secs(300));
    let results: BTreeMap<String, Value> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("@@ "))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            (v["scenario"].as_str().expect("scenario").to_string(), v)
        })
        .collect();
    for (name, v) in &results {
        assert!(v.get("error").is_none(), "scenario {name} failed: {v}");
    }
    assert!(out.status.success(), "TxnScenarios: {}", out.describe());
    assert_eq!(results.len(), names.len(), "{}", out.describe());
    results
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// `tag0..tag<n>` sorted as strings (what the scenarios print).
fn tagged(tag: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{tag}{i}")).collect();
    v.sort();
    v
}

fn java_client_scenarios(target: Target) {
    let broker = start(target);
    let prefix = unique_topic("txn");
    let r = java_scenarios(
        &broker,
        &prefix,
        &["commit", "abort", "open", "fence", "timeout", "ctp"],
    );

    let commit = &r["commit"];
    assert_eq!(strings(&commit["read_committed"]), tagged("c", 10));
    assert_eq!(strings(&commit["read_uncommitted"]), tagged("c", 10));

    // 10 aborted then 5 committed, alternating partitions 0 and 1: each partition holds
    // its data records and one marker per transaction.
    let abort = &r["abort"];
    assert_eq!(strings(&abort["read_committed"]), tagged("c", 5));
    let mut all = tagged("a", 10);
    all.extend(tagged("c", 5));
    assert_eq!(strings(&abort["read_uncommitted"]), all);
    assert_eq!(
        abort["log_end"],
        serde_json::json!([5 + 1 + 3 + 1, 5 + 1 + 2 + 1])
    );

    // "before" at 0, its commit marker at 1, the open transaction's 5 records at 2..=6.
    let open = &r["open"];
    assert_eq!(open["lso_while_open"], 2, "{open}");
    assert_eq!(open["hw_while_open"], 7, "{open}");
    assert_eq!(strings(&open["read_committed_while_open"]), ["before"]);
    let mut all = tagged("open", 5);
    all.insert(0, "before".into());
    assert_eq!(strings(&open["read_uncommitted_while_open"]), all);
    assert_eq!(open["lso_after_commit"], 8, "{open}");
    assert_eq!(strings(&open["read_committed_after_commit"]), all);

    let fence = &r["fence"];
    assert_eq!(fence["zombie_commit"], "ProducerFencedException", "{fence}");
    assert_eq!(fence["zombie_send"], "ProducerFencedException", "{fence}");
    assert_eq!(strings(&fence["read_committed"]), tagged("second", 3));
    let mut all = tagged("second", 3);
    all.extend(tagged("zombie", 3));
    assert_eq!(strings(&fence["read_uncommitted"]), all);

    // The coordinator aborted the stalled transaction and bumped the epoch: the
    // producer's next send fails (Kafka 4.4.0 with transaction version 2).
    let timeout = &r["timeout"];
    assert_eq!(timeout["aborted_by_coordinator"], true, "{timeout}");
    assert_eq!(timeout["abort_seen_after_ms_at_least_timeout"], true);
    assert_eq!(timeout["next_op"], "InvalidProducerEpochException");
    assert_eq!(strings(&timeout["read_committed"]), Vec::<String>::new());
    assert_eq!(strings(&timeout["read_uncommitted"]), tagged("stalled", 4));

    // Every input record transformed exactly once in the committed output, the group's
    // offsets committed with it; the aborted round's output is only in the log.
    let ctp = &r["ctp"];
    assert_eq!(ctp["aborted_rounds"], 1, "{ctp}");
    assert_eq!(ctp["committed_offsets"], 20, "{ctp}");
    assert_eq!(strings(&ctp["output_read_committed"]), tagged("W", 20));
    assert!(
        ctp["output_read_uncommitted_count"].as_u64().unwrap() > 20,
        "{ctp}"
    );
}

#[test]
fn java_client_scenarios_on_kafka() {
    java_client_scenarios(Target::Kafka);
}

#[test]
fn java_client_scenarios_on_millrace() {
    java_client_scenarios(Target::Millrace);
}

// --- librdkafka --------------------------------------------------------------------

fn txn_producer(bootstrap: &str, transactional_id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("linger.ms", "5")
        // Far above the tests' runtime: on a loaded machine a coordinator timeout abort
        // would bump the epoch under the CLI test's expected tables.
        .set("transaction.timeout.ms", "600000")
        .create()
        .expect("transactional producer");
    p.init_transactions(Duration::from_secs(60))
        .expect("init_transactions");
    p
}

fn send_values(p: &BaseProducer, topic: &str, tag: &str, n: usize) {
    for i in 0..n {
        let key = format!("k{i}");
        let value = format!("{tag}{i}");
        p.send(
            BaseRecord::to(topic)
                .partition((i % 2) as i32)
                .key(&key)
                .payload(&value),
        )
        .expect("enqueue");
    }
}

/// Every value of `topic` as `isolation` sees it, sorted.
fn read_values(bootstrap: &str, topic: &str, isolation: &str) -> Vec<String> {
    let mut values: Vec<String> = common::read_to_end(bootstrap, topic, isolation)
        .into_iter()
        .flatten()
        .map(|m| String::from_utf8(m.value.expect("value")).expect("utf-8"))
        .collect();
    values.sort();
    values
}

fn rdkafka_transactions(target: Target) {
    let broker = start(target);
    let b = broker.bootstrap();
    let topic = unique_topic("txn-rdkafka");
    common::admin_create(&b, &topic, 2);
    let id = format!("{topic}-producer");

    let p = txn_producer(&b, &id);
    p.begin_transaction().expect("begin");
    send_values(&p, &topic, "c", 10);
    p.commit_transaction(Duration::from_secs(30))
        .expect("commit");
    p.begin_transaction().expect("begin");
    send_values(&p, &topic, "a", 10);
    p.flush(Duration::from_secs(30)).expect("flush");
    p.abort_transaction(Duration::from_secs(30)).expect("abort");
    assert_eq!(read_values(&b, &topic, "read_committed"), tagged("c", 10));
    let mut all = tagged("a", 10);
    all.extend(tagged("c", 10));
    assert_eq!(read_values(&b, &topic, "read_uncommitted"), all);

    // An open transaction: written, not visible to read_committed.
    p.begin_transaction().expect("begin");
    send_values(&p, &topic, "o", 4);
    p.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(read_values(&b, &topic, "read_committed"), tagged("c", 10));
    let mut all = tagged("a", 10);
    all.extend(tagged("c", 10));
    all.extend(tagged("o", 4));
    all.sort();
    assert_eq!(read_values(&b, &topic, "read_uncommitted"), all);

    // A second producer with the same transactional.id fences the first and aborts its
    // open transaction; the zombie's commit fails fatally.
    let second = txn_producer(&b, &id);
    let err = p
        .commit_transaction(Duration::from_secs(30))
        .expect_err("the fenced producer's commit");
    match &err {
        KafkaError::Transaction(e) => {
            assert!(e.is_fatal(), "{err}");
            // librdkafka reports it as its local _FENCED state.
            assert_eq!(e.code(), RDKafkaErrorCode::Fenced, "{err}");
        }
        other => panic!("unexpected error {other}"),
    }
    second.begin_transaction().expect("begin");
    send_values(&second, &topic, "f", 2);
    second
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    let mut committed = tagged("c", 10);
    committed.extend(tagged("f", 2));
    committed.sort();
    assert_eq!(read_values(&b, &topic, "read_committed"), committed);
    all.extend(tagged("f", 2));
    all.sort();
    assert_eq!(read_values(&b, &topic, "read_uncommitted"), all);
}

#[test]
fn rdkafka_transactions_on_kafka() {
    rdkafka_transactions(Target::Kafka);
}

#[test]
fn rdkafka_transactions_on_millrace() {
    rdkafka_transactions(Target::Millrace);
}

// --- kafka-transactions ------------------------------------------------------------

/// Columns whose values differ run to run: timestamps and durations.
const TIME_COLUMNS: [&str; 3] = [
    "CurrentTransactionStartTimeMs",
    "TransactionDurationMs",
    "LastTimestamp",
];

/// `kafka-transactions ARGS` through `bootstrap`: its table with the cells that differ
/// run to run replaced (times by `<ms>`, `pid` in the ProducerId column by `<pid>`, the
/// names in `names` by placeholders), one line per row, cells separated by one space.
fn transactions_tool(
    bootstrap: &str,
    args: &[&str],
    names: &[(&str, &str)],
    pid: &str,
) -> Vec<String> {
    let mut full = vec!["--bootstrap-server", bootstrap];
    full.extend_from_slice(args);
    let out = kafka_tool("org.apache.kafka.tools.TransactionsCommand", &full, None);
    out.assert_success();
    let mut lines = out.stdout.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    let mut table = vec![columns.join(" ")];
    for line in lines {
        let cells: Vec<String> = line
            .split_whitespace()
            .zip(&columns)
            .map(|(cell, column)| {
                if TIME_COLUMNS.contains(column) {
                    return "<ms>".to_string();
                }
                if *column == "ProducerId" && cell == pid {
                    return "<pid>".to_string();
                }
                let mut cell = cell.to_string();
                for (from, to) in names {
                    cell = cell.replace(from, to);
                }
                cell
            })
            .collect();
        table.push(cells.join(" "));
    }
    table
}

fn transactions_cli(target: Target) {
    let broker = start(target);
    let b = broker.bootstrap();
    let topic = unique_topic("txn-cli");
    common::admin_create(&b, &topic, 2);
    let id = format!("{topic}-producer");
    let p = txn_producer(&b, &id);
    p.begin_transaction().expect("begin");
    for i in 0..4 {
        p.send(
            BaseRecord::<(), str>::to(&topic)
                .partition(0)
                .payload("open"),
        )
        .unwrap_or_else(|(e, _)| panic!("enqueue {i}: {e}"));
    }
    p.flush(Duration::from_secs(30)).expect("flush");

    let describe = transactions_tool(&b, &["describe", "--transactional-id", &id], &[], "");
    let producer_id = describe
        .get(1)
        .and_then(|row| row.split(' ').nth(2))
        .unwrap_or_else(|| panic!("no producer id in {describe:?}"))
        .to_string();
    // The transactional id starts with the topic name: replace the longer first.
    let names = [(id.as_str(), "<txn-id>"), (topic.as_str(), "<topic>")];
    let tool = |args: &[&str]| transactions_tool(&b, args, &names, &producer_id);
    let got = [
        ("list", tool(&["list"])),
        ("describe", tool(&["describe", "--transactional-id", &id])),
        (
            "describe-producers",
            tool(&["describe-producers", "--topic", &topic, "--partition", "0"]),
        ),
        ("find-hanging", tool(&["find-hanging", "--broker-id", "1"])),
        (
            "abort",
            tool(&[
                "abort",
                "--topic",
                &topic,
                "--partition",
                "0",
                "--start-offset",
                "0",
            ]),
        ),
        (
            "describe-producers after abort",
            tool(&["describe-producers", "--topic", &topic, "--partition", "0"]),
        ),
        (
            "describe after abort",
            tool(&["describe", "--transactional-id", &id]),
        ),
    ];
    // Kafka 4.4.0's output. The tool's abort writes the marker on the partition only:
    // the coordinator still has the transaction Ongoing.
    let want: [&[&str]; 7] = [
        &[
            "TransactionalId Coordinator ProducerId TransactionState",
            "<txn-id> 1 <pid> Ongoing",
        ],
        &[
            "CoordinatorId TransactionalId ProducerId ProducerEpoch TransactionState \
             TransactionTimeoutMs CurrentTransactionStartTimeMs TransactionDurationMs TopicPartitions",
            "1 <txn-id> <pid> 0 Ongoing 600000 <ms> <ms> <topic>-0",
        ],
        &[
            "ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp \
             CurrentTransactionStartOffset",
            "<pid> 0 -1 3 <ms> 0",
        ],
        &["Topic Partition ProducerId ProducerEpoch CoordinatorEpoch StartOffset LastTimestamp Duration(min)"],
        &[],
        &[
            "ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp \
             CurrentTransactionStartOffset",
            "<pid> 0 0 3 <ms> None",
        ],
        &[
            "CoordinatorId TransactionalId ProducerId ProducerEpoch TransactionState \
             TransactionTimeoutMs CurrentTransactionStartTimeMs TransactionDurationMs TopicPartitions",
            "1 <txn-id> <pid> 0 Ongoing 600000 <ms> <ms> <topic>-0",
        ],
    ];
    for ((what, lines), expected) in got.iter().zip(want) {
        assert_eq!(lines, expected, "kafka-transactions {what}");
    }
    // The aborted records are gone for read_committed readers: the last stable offset
    // moved past them and the marker.
    assert_eq!(
        read_values(&b, &topic, "read_committed"),
        Vec::<String>::new()
    );
    assert_eq!(read_values(&b, &topic, "read_uncommitted"), vec!["open"; 4]);
}

#[test]
fn transactions_cli_on_kafka() {
    transactions_cli(Target::Kafka);
}

#[test]
fn transactions_cli_on_millrace() {
    transactions_cli(Target::Millrace);
}
