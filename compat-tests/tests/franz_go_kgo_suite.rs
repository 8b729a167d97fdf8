//! franz-go's own `pkg/kgo` integration test suite (the version pinned in
//! `compat-tests/matrix/go/go.mod`, compiled by scripts/install-deps.sh as
//! `$MILLRACE_CACHE/go-bin/kgo.test`) run against the broker with `KGO_SEEDS`.
//! Every test outside the lists below must pass; counts and reasons are in
//! compat-tests/README.md.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use millrace_compat_tests::{go_bin, run_with_timeout, BrokerOpts, Target, TestBroker};

/// Records each produce/consume test moves: the suite's default, about a minute on millrace.
const RECORDS: &str = "500000";

/// The suite's own bound (`-test.timeout`); a hung test makes it panic with stacks.
const SUITE_TIMEOUT: &str = "9m";

/// Our bound on the process, a little above the suite's own.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(600);

/// Top-level tests that may fail on millrace, with the reason (a failing subtest counts
/// for its top-level test). Anything else failing is a millrace bug.
const ALLOWED_TO_FAIL_ON_MILLRACE: &[(&str, &str)] = &[];

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// `--- PASS: TestX/sub (1.23s)` lines of `go test -v` output, by test name.
fn parse_results(stdout: &str) -> BTreeMap<String, Outcome> {
    let mut results = BTreeMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.trim_start().strip_prefix("--- ") else {
            continue;
        };
        let (outcome, rest) = if let Some(r) = rest.strip_prefix("PASS: ") {
            (Outcome::Pass, r)
        } else if let Some(r) = rest.strip_prefix("FAIL: ") {
            (Outcome::Fail, r)
        } else if let Some(r) = rest.strip_prefix("SKIP: ") {
            (Outcome::Skip, r)
        } else {
            continue;
        };
        if let Some(name) = rest.split_whitespace().next() {
            results.insert(name.to_string(), outcome);
        }
    }
    results
}

fn top_level(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// The output lines a failing test logged (`go test -v` indents them under its name).
fn failure_context(stdout: &str, name: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    let marker = format!("--- FAIL: {name} ");
    let Some(at) = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&marker))
    else {
        return String::new();
    };
    let from = at.saturating_sub(20);
    lines[from..(at + 10).min(lines.len())].join("\n")
}

#[test]
fn franz_go_kgo_suite() {
    let bin = go_bin("kgo.test");
    let broker = TestBroker::start(BrokerOpts::default());
    let on_millrace = broker.target() == Target::Millrace;
    let allowed: &[(&str, &str)] = if on_millrace {
        ALLOWED_TO_FAIL_ON_MILLRACE
    } else {
        &[]
    };

    // Some tests read the package's own sources (config.go): run in the package's dir in
    // the module cache, as `go test` would (install-deps.sh records it).
    let src_file = bin.with_file_name("kgo.dir");
    let src = std::fs::read_to_string(&src_file)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/install-deps.sh", src_file.display()));
    let mut cmd = Command::new(&bin);
    cmd.current_dir(src.trim())
        .env("KGO_SEEDS", broker.bootstrap())
        .env("KGO_TEST_RF", "1")
        .env("KGO_TEST_RECORDS", RECORDS)
        .env("KGO_LOG_LEVEL", "none")
        .args(["-test.v", "-test.timeout", SUITE_TIMEOUT]);
    let started = Instant::now();
    let out = run_with_timeout(cmd, None, PROCESS_TIMEOUT);
    let elapsed = started.elapsed();

    let results = parse_results(&out.stdout);
    let count = |o: Outcome, top: bool| {
        results
            .iter()
            .filter(|(n, r)| **r == o && (!top || !n.contains('/')))
            .count()
    };
    println!(
        "kgo suite in {:.0} s: top-level {} passed, {} failed, {} skipped; with subtests {} passed, {} failed, {} skipped",
        elapsed.as_secs_f64(),
        count(Outcome::Pass, true),
        count(Outcome::Fail, true),
        count(Outcome::Skip, true),
        count(Outcome::Pass, false),
        count(Outcome::Fail, false),
        count(Outcome::Skip, false),
    );

    let mut unexpected = Vec::new();
    for (name, outcome) in &results {
        if *outcome != Outcome::Fail {
            continue;
        }
        match allowed.iter().find(|(n, _)| *n == top_level(name)) {
            Some((_, why)) => println!("allowed failure {name}: {why}"),
            None => unexpected.push(name.as_str()),
        }
    }
    let report = |why: String| -> ! {
        let contexts: Vec<String> = unexpected
            .iter()
            .map(|n| format!("--- {n} ---\n{}", failure_context(&out.stdout, n)))
            .collect();
        panic!(
            "{why}\n{}\nstdout tail:\n{}\nstderr tail:\n{}\n--- broker log tail ---\n{}",
            contexts.join("\n"),
            tail(&out.stdout, 60),
            tail(&out.stderr, 40),
            broker.log_tail()
        )
    };
    if !unexpected.is_empty() {
        report(format!("kgo tests failed that must pass: {unexpected:?}"));
    }
    // A timeout or a panic leaves no FAIL line for the test that caused it.
    let failed_cleanly = results.values().any(|o| *o == Outcome::Fail);
    if !out.status.success() && !failed_cleanly {
        report(format!("the suite did not finish ({:?})", out.status));
    }
    // The suite ran for real: it has well over 100 top-level tests, most against the broker.
    if count(Outcome::Pass, true) < 100 {
        report(format!(
            "only {} top-level tests passed",
            count(Outcome::Pass, true)
        ));
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn go_test_output_is_parsed() {
    let out = "\
=== RUN   TestA
--- PASS: TestA (0.00s)
=== CONT  TestB
    client_sweep_test.go:111: open config.go: no such file or directory
--- FAIL: TestB (0.00s)
--- SKIP: TestC (0.00s)
    --- FAIL: TestD/sub (1.50s)
    --- PASS: TestD/other (0.10s)
--- FAIL: TestD (1.60s)
FAIL
";
    let results = parse_results(out);
    assert_eq!(results.len(), 6);
    assert_eq!(results["TestA"], Outcome::Pass);
    assert_eq!(results["TestB"], Outcome::Fail);
    assert_eq!(results["TestC"], Outcome::Skip);
    assert_eq!(results["TestD/sub"], Outcome::Fail);
    assert_eq!(results["TestD/other"], Outcome::Pass);
    assert_eq!(top_level("TestD/sub"), "TestD");
    assert!(failure_context(out, "TestB").contains("open config.go"));
}
