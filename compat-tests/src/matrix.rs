//! The client-matrix scenario driver (the contract is `compat-tests/matrix/SCENARIO.md`):
//! every client's program runs the same phases against one broker, and the summaries
//! each phase prints are checked here, the same way for every client.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::tools::python_bin;
use crate::{run_with_timeout, unique_topic, BrokerOpts, TestBroker};

/// The codecs every client is asked to produce, in order.
pub const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// Records per codec and batch.
pub const RECORDS_PER_CODEC: usize = 40;

/// A phase may take at most this long (the programs bound themselves at 90 s).
const PHASE_TIMEOUT: Duration = Duration::from_secs(150);

/// One client of the matrix.
pub struct MatrixClient<'a> {
    /// Short name, used in topic and group names and messages.
    pub name: &'a str,
    /// Builds the command for one phase; the driver appends the phase and its arguments.
    pub command: &'a dyn Fn() -> Command,
    /// Codecs the client itself cannot produce, with the reason (the program must name
    /// exactly these in `skipped_codecs`).
    pub unsupported_codecs: &'a [(&'a str, &'a str)],
}

/// The command for a Python client's program, `compat-tests/matrix/python/<script>`,
/// run by the venv's interpreter (unbuffered, so stderr and stdout interleave as written).
pub fn python_program(script: &str) -> Command {
    let bin = python_bin();
    assert!(
        bin.exists(),
        "{} missing: run scripts/install-deps.sh",
        bin.display()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("matrix/python")
        .join(script);
    let mut cmd = Command::new(bin);
    cmd.arg(path).env("PYTHONUNBUFFERED", "1");
    cmd
}

/// Runs the whole scenario against a fresh broker of the environment's target and
/// panics with the phase's output and the broker's log tail on the first difference.
pub fn run_scenario(client: &MatrixClient<'_>) {
    run(client, Scenario::Full);
}

/// The scenario for a client that can express neither topic creation nor the `group`
/// phase (kcat: no admin API, no pause or commit call): the broker auto-creates topics
/// with 3 partitions (the client's `admin` phase makes it create `T`), and `resume`
/// of batch 1 (both members at once) stands in for `group`. Everything else as in
/// `run_scenario`.
pub fn run_scenario_without_group_phase(client: &MatrixClient<'_>) {
    run(client, Scenario::WithoutGroupPhase);
}

#[derive(PartialEq)]
enum Scenario {
    Full,
    WithoutGroupPhase,
}

fn run(client: &MatrixClient<'_>, scenario: Scenario) {
    let opts = match scenario {
        Scenario::Full => BrokerOpts::default(),
        Scenario::WithoutGroupPhase => BrokerOpts::default().partitions(3),
    };
    let mut broker = TestBroker::start(opts);
    let topic = unique_topic(&format!("matrix-{}", client.name));
    let group = format!("{topic}-group");
    let produced_codecs: Vec<&str> = CODECS
        .iter()
        .copied()
        .filter(|c| !client.unsupported_codecs.iter().any(|(u, _)| u == c))
        .collect();
    let per_batch = RECORDS_PER_CODEC * produced_codecs.len();
    let skipped: BTreeMap<&str, &str> = client.unsupported_codecs.iter().copied().collect();

    let admin = phase(client, &broker, "admin", &topic, &group, 0, 0);
    expect(
        client,
        &broker,
        "admin",
        &admin,
        json!({"phase": "admin", "listed": true, "partitions": 3}),
    );

    // Both batches are produced and checked the same way.
    let produce_batch = |broker: &TestBroker, batch: u32| {
        let produce = phase(
            client,
            broker,
            "produce",
            &topic,
            &group,
            RECORDS_PER_CODEC,
            batch,
        );
        expect(
            client,
            broker,
            &format!("produce batch {batch}"),
            &produce,
            json!({"phase": "produce", "acked": per_batch, "codecs": produced_codecs,
                   "skipped_codecs": skipped}),
        );
    };
    produce_batch(&broker, 1);

    if scenario == Scenario::Full {
        let group_run = phase(client, &broker, "group", &topic, &group, per_batch, 1);
        expect(
            client,
            &broker,
            "group",
            &group_run,
            json!({"phase": "group", "consumed": per_batch, "duplicates": 0, "mismatched": 0,
                   "a": group_run["a"], "b": group_run["b"], "rebalanced": true}),
        );
    } else {
        let first = phase(client, &broker, "resume", &topic, &group, per_batch, 1);
        expect(
            client,
            &broker,
            "resume of batch 1 (in place of group)",
            &first,
            json!({"phase": "resume", "consumed": per_batch, "duplicates": 0,
                   "mismatched": 0, "reread": 0}),
        );
    }

    produce_batch(&broker, 2);

    // Committed offsets and the log must survive a restart; the members then resume.
    broker.restart();
    let resume = phase(client, &broker, "resume", &topic, &group, per_batch, 2);
    expect(
        client,
        &broker,
        "resume after a broker restart",
        &resume,
        json!({"phase": "resume", "consumed": per_batch, "duplicates": 0, "mismatched": 0,
               "reread": 0}),
    );
}

/// Runs one phase and returns its summary (the last stdout line, as JSON).
fn phase(
    client: &MatrixClient<'_>,
    broker: &TestBroker,
    name: &str,
    topic: &str,
    group: &str,
    records: usize,
    batch: u32,
) -> Value {
    let mut cmd = (client.command)();
    cmd.arg(name)
        .args(["--bootstrap", &broker.bootstrap()])
        .args(["--topic", topic])
        .args(["--group", group])
        .args(["--records", &records.to_string()])
        .args(["--batch", &batch.to_string()]);
    let out = run_with_timeout(cmd, None, PHASE_TIMEOUT);
    let fail = |why: String| -> ! {
        panic!(
            "{} phase {name}: {why}\n{}\n--- broker log tail ---\n{}",
            client.name,
            out.describe(),
            broker.log_tail()
        )
    };
    if !out.status.success() {
        fail("the program failed".to_string());
    }
    let Some(line) = out.stdout.lines().rev().find(|l| !l.trim().is_empty()) else {
        fail("no summary line".to_string());
    };
    serde_json::from_str(line).unwrap_or_else(|e| fail(format!("summary {line:?}: {e}")))
}

fn expect(client: &MatrixClient<'_>, broker: &TestBroker, what: &str, got: &Value, want: Value) {
    assert_eq!(
        got,
        &want,
        "{}: {what} summary differs\n--- broker log tail ---\n{}",
        client.name,
        broker.log_tail()
    );
}
