//! A Jepsen-style transactional workload (`txn/TxnChecker.java`, Apache Kafka's Java
//! client): 4 transactional producers, random transaction sizes and 30% aborts over two
//! topics of 3 partitions, read by read_committed consumers (one subscribed, one
//! assigned) and finally by a read_committed read of everything, while brokers are
//! killed with SIGKILL and restarted. No aborted read, lost committed write, torn
//! transaction, duplicate or non-monotonic offset may show; transactions whose commit
//! had an unknown outcome must be wholly present or wholly absent.
//!
//! Millrace runs three nodes with replication factor 3; the harness starts Apache Kafka 4.4.0 as a single node only,
//! so the reference run kills and restarts that one broker (the first time leaving it down
//! until a producer operation fails).

use std::time::Duration;

use millrace_compat_tests::{
    java_program_command, unique_topic, wait_until, BrokerOpts, ClientProcess, TestBroker,
    TestCluster,
};
use serde_json::Value;

/// Transactions per round the workload must finish before the next kill.
const PROGRESS_PER_ROUND: u64 = 30;

enum Brokers {
    Single(TestBroker),
    Cluster(TestCluster),
}

impl Brokers {
    fn bootstrap(&self) -> String {
        match self {
            Brokers::Single(b) => b.bootstrap(),
            Brokers::Cluster(c) => c.bootstrap(),
        }
    }

    fn replication(&self) -> &'static str {
        match self {
            Brokers::Single(_) => "1",
            Brokers::Cluster(_) => "3",
        }
    }

    /// The node ids killed in turn, one per round.
    fn rounds(&self) -> Vec<i32> {
        match self {
            Brokers::Single(_) => vec![1, 1, 1],
            Brokers::Cluster(_) => vec![1, 2, 3],
        }
    }

    fn node(&mut self, id: i32) -> &mut TestBroker {
        match self {
            Brokers::Single(b) => b,
            Brokers::Cluster(c) => c.node(id),
        }
    }
}

/// The last "@@ txns N" the checker printed.
fn finished_txns(checker: &ClientProcess) -> u64 {
    checker
        .stdout_lines()
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("@@ txns ")?.parse().ok())
        .unwrap_or(0)
}

/// How many failed operations the checker's producers reported.
fn producer_failures(checker: &ClientProcess) -> usize {
    checker
        .stdout_lines()
        .iter()
        .filter(|l| l.starts_with("@@ progress ") && l.contains(" failed"))
        .count()
}

fn wait_for_progress(checker: &mut ClientProcess, what: &str, from: u64) -> u64 {
    wait_until(what, Duration::from_secs(120), || {
        assert!(
            checker.is_running(),
            "the checker exited: {:?}\n{}",
            checker.stdout_lines(),
            checker.stderr_tail(40)
        );
        let n = finished_txns(checker);
        if n >= from + PROGRESS_PER_ROUND {
            Ok(n)
        } else {
            let lines = checker.stdout_lines();
            let last_event = lines.iter().rev().find(|l| l.starts_with("@@ progress "));
            Err(format!(
                "{n} transactions finished, want {}; last event: {last_event:?}",
                from + PROGRESS_PER_ROUND
            ))
        }
    })
}

/// Runs the checker through `kill_rounds` SIGKILL/restart rounds and returns its summary.
fn run_checker(brokers: &mut Brokers, kill_rounds: bool, live_isolation: &str) -> Value {
    let prefix = unique_topic("txn-checker");
    let mut cmd = java_program_command("txn", "TxnChecker", "512m");
    cmd.env("TXN_CHECKER_LIVE_ISOLATION", live_isolation)
        .arg(brokers.bootstrap())
        .arg(&prefix)
        .arg("3600")
        .arg("4")
        .arg(brokers.replication());
    let mut checker = ClientProcess::spawn("txn-checker", cmd, None);
    let mut done = wait_for_progress(&mut checker, "the first transactions", 0);
    let single = matches!(brokers, Brokers::Single(_));
    let rounds = if kill_rounds {
        brokers.rounds()
    } else {
        Vec::new()
    };
    for (round, id) in rounds.into_iter().enumerate() {
        brokers.node(id).kill9();
        if !single {
            // Two of three nodes up: the workload goes on.
            done = wait_for_progress(
                &mut checker,
                &format!("transactions with node {id} down"),
                done,
            );
        } else if round == 0 {
            // The only broker stays down until a producer gives up on an operation
            // (max.block.ms 30 s): commits with an unknown outcome, re-created producers.
            let seen = producer_failures(&checker);
            wait_until(
                "a producer to fail",
                Duration::from_secs(120),
                || match producer_failures(&checker) {
                    n if n > seen => Ok(()),
                    n => Err(format!("{n} producer failures")),
                },
            );
        }
        brokers.node(id).restart();
        done = wait_for_progress(
            &mut checker,
            &format!("transactions after round {round}'s restart"),
            done,
        );
    }
    assert!(
        checker.stop(Duration::from_secs(600)),
        "the checker failed: {:?}\n{}",
        checker.stdout_lines(),
        checker.stderr_tail(60)
    );
    let lines = checker.stdout_lines();
    for line in lines.iter().filter(|l| !l.starts_with("@@ txns ")) {
        eprintln!("{line}");
    }
    let summary: Value = lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l.strip_prefix("@@ ")?).ok())
        .unwrap_or_else(|| panic!("no summary: {lines:?}"));
    eprintln!("txn checker summary: {summary}");
    summary
}

fn count(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key}: {summary}"))
}

fn assert_no_anomalies(mut brokers: Brokers) {
    let summary = run_checker(&mut brokers, true, "read_committed");
    for anomaly in [
        "aborted_reads",
        "lost_writes",
        "torn_txns",
        "duplicates",
        "nonmonotonic",
        "unknown_values",
        "stuck_lso",
    ] {
        assert_eq!(summary[anomaly], 0, "{anomaly}: {summary}");
    }
    let n = |k: &str| count(&summary, k);
    assert!(n("committed_txns") > 0, "{summary}");
    assert!(n("aborted_txns") > 0, "{summary}");
    assert_eq!(n("final_records"), n("committed_values"), "{summary}");
    // Each live reader read every committed value at least once.
    assert!(n("live_reads") >= 2 * n("committed_values"), "{summary}");
}

/// The checker itself: live readers at read_uncommitted must be caught returning
/// values of aborted transactions (the final read stays read_committed: nothing else
/// is reported).
fn checker_reports_aborted_reads(mut brokers: Brokers) {
    let summary = run_checker(&mut brokers, false, "read_uncommitted");
    assert!(count(&summary, "aborted_reads") > 0, "{summary}");
    for clean in ["lost_writes", "torn_txns", "duplicates", "unknown_values"] {
        assert_eq!(summary[clean], 0, "{clean}: {summary}");
    }
}

#[test]
fn checker_reports_aborted_reads_on_kafka() {
    checker_reports_aborted_reads(Brokers::Single(TestBroker::start_kafka(
        BrokerOpts::default(),
    )));
}

#[test]
fn checker_reports_aborted_reads_on_millrace() {
    checker_reports_aborted_reads(Brokers::Single(TestBroker::start_millrace(
        BrokerOpts::default(),
    )));
}

/// The reference run on Apache Kafka 4.4.0 itself: it failed in 2 of 4 runs on
/// 2026-12-03, with aborted reads (7 values of aborted transactions read by
/// read_committed consumers, 3 of them in the final read) and nothing else; the other
/// runs were clean. Kept out of CI so that Kafka's anomaly cannot fail it; run it with
/// `--ignored` to look into it (the checker itself is validated in CI by
/// `checker_reports_aborted_reads_on_kafka`).
#[test]
#[ignore = "Apache Kafka 4.4.0 single node shows aborted reads after kill -9 in some runs"]
fn txn_checker_on_kafka_single_node_with_kill_rounds() {
    assert_no_anomalies(Brokers::Single(TestBroker::start_kafka(
        BrokerOpts::default().set("transaction.state.log.num.partitions", "3"),
    )));
}

#[test]
fn txn_checker_on_millrace_three_nodes_with_kill_rounds() {
    assert_no_anomalies(Brokers::Cluster(TestCluster::start_millrace(
        3,
        BrokerOpts::default()
            .set("broker.session.timeout.ms", "3000")
            .set("broker.heartbeat.interval.ms", "500")
            .set("offsets.topic.replication.factor", "3")
            .set("transaction.state.log.replication.factor", "3")
            .set("transaction.state.log.min.isr", "2")
            .set("transaction.state.log.num.partitions", "3"),
    )));
}
