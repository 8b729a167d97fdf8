//! Partition reassignment driven by Kafka's own `kafka-reassign-partitions` (4.4.0 jars)
//! against three real millrace nodes: `--generate`, `--execute` (AlterPartitionReassignments),
//! `--list` and `--verify` (ListPartitionReassignments), and `--cancel`. A moved replica's
//! log ends up byte-identical to the leader's, the broker it left deletes its copy, and
//! every acknowledged record is read exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::{self, assert_read_once, controller_of, send_record, PartitionView};
use millrace_compat_tests::tools::kafka_tool;
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestCluster};

const REASSIGN: &str = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
/// `--throttle`: bytes/s for the moving replicas (low enough to be in force for a while).
const THROTTLE: &str = "200000";
const PARTITIONS: i32 = 3;
const NODES: [i32; 3] = [1, 2, 3];

/// The tool's reassignment JSON for `topic`: partition → replicas.
fn reassignment_json(topic: &str, targets: &BTreeMap<i32, Vec<i32>>) -> String {
    let partitions: Vec<String> = targets
        .iter()
        .map(|(partition, replicas)| {
            let replicas: Vec<String> = replicas.iter().map(i32::to_string).collect();
            format!(
                r#"{{"topic":"{topic}","partition":{partition},"replicas":[{}]}}"#,
                replicas.join(",")
            )
        })
        .collect();
    format!(r#"{{"version":1,"partitions":[{}]}}"#, partitions.join(","))
}

/// `kafka-configs --describe` of one entity: its dynamic configs' `name=value` words.
fn dynamic_configs(bootstrap: &str, entity_type: &str, name: &str) -> String {
    let out = kafka_tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--entity-type",
            entity_type,
            "--entity-name",
            name,
        ],
        None,
    );
    out.assert_success();
    out.stdout
}

fn reassign(bootstrap: &str, args: &[&str]) -> millrace_compat_tests::tools::ToolOutput {
    let mut all = vec!["--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    kafka_tool(REASSIGN, &all, None)
}

#[test]
fn reassign_partitions_moves_replicas_to_other_brokers() {
    const BEFORE: usize = 3_000;
    const DURING: usize = 2_000;
    let mut cluster = TestCluster::start_millrace(3, BrokerOpts::default());
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("reassign");
    common::admin_create_replicated(&bootstrap, &topic, PARTITIONS, 2, &[]);
    let (producer, recorder) = common::producer(&bootstrap, &[]);
    for i in 0..BEFORE {
        send_record(&producer, &topic, i);
    }
    common::flush_all_ok(&producer, &recorder, BEFORE);
    let before = cluster::partition_views(&bootstrap, &topic).expect("metadata");

    // --generate proposes a layout over the given brokers (nothing is changed).
    let work = tempfile::TempDir::new().expect("temp dir");
    let topics_json = work.path().join("topics.json");
    std::fs::write(
        &topics_json,
        format!(r#"{{"version":1,"topics":[{{"topic":"{topic}"}}]}}"#),
    )
    .unwrap();
    let generated = reassign(
        &bootstrap,
        &[
            "--generate",
            "--topics-to-move-json-file",
            topics_json.to_str().unwrap(),
            "--broker-list",
            "1,2,3",
        ],
    );
    generated.assert_success();
    assert!(
        generated
            .stdout
            .contains("Proposed partition reassignment configuration"),
        "{}",
        generated.describe()
    );

    // Each partition's first replica (its leader at creation) moves to the broker that
    // has no replica of it; the new broker is listed first, so it leads afterwards.
    let mut targets = BTreeMap::new();
    let mut moved_away = BTreeMap::new();
    for (partition, PartitionView { replicas, .. }) in before.iter().enumerate() {
        assert_eq!(replicas.len(), 2, "partition {partition}: {replicas:?}");
        let spare = NODES
            .into_iter()
            .find(|n| !replicas.contains(n))
            .expect("a broker without a replica");
        targets.insert(partition as i32, vec![spare, replicas[1]]);
        moved_away.insert(partition as i32, replicas[0]);
    }
    let plan = work.path().join("reassignment.json");
    std::fs::write(&plan, reassignment_json(&topic, &targets)).unwrap();
    let plan = plan.to_str().unwrap();
    let executed = reassign(
        &bootstrap,
        &[
            "--execute",
            "--reassignment-json-file",
            plan,
            "--throttle",
            THROTTLE,
        ],
    );
    executed.assert_success();
    assert!(
        executed
            .stdout
            .contains("Successfully started partition reassignments")
            && executed.stdout.contains(&format!(
                "The inter-broker throttle limit was set to {THROTTLE} B/s"
            )),
        "{}",
        executed.describe()
    );
    // The tool wrote the throttles: which replicas (topic) and the rates (brokers).
    let throttled = dynamic_configs(&bootstrap, "topics", &topic);
    for key in [
        "leader.replication.throttled.replicas=",
        "follower.replication.throttled.replicas=",
    ] {
        assert!(throttled.contains(key), "{key} missing: {throttled}");
    }
    let rates = dynamic_configs(&bootstrap, "brokers", &targets[&0][0].to_string());
    assert!(
        rates.contains(&format!("follower.replication.throttled.rate={THROTTLE}"))
            && rates.contains(&format!("leader.replication.throttled.rate={THROTTLE}")),
        "{rates}"
    );

    // Records keep coming while the replicas move.
    for i in BEFORE..BEFORE + DURING {
        send_record(&producer, &topic, i);
    }
    let listed = reassign(&bootstrap, &["--list"]);
    listed.assert_success();
    assert!(
        listed.stdout.contains("No partition reassignments found.")
            || listed.stdout.contains("Current partition reassignments:"),
        "{}",
        listed.describe()
    );

    let verified = wait_until(
        "--verify reports every move completed",
        Duration::from_secs(120),
        || {
            let verified = reassign(&bootstrap, &["--verify", "--reassignment-json-file", plan]);
            if !verified.status.success() {
                return Err(verified.describe());
            }
            let completed = verified.stdout.matches("is completed.").count();
            if completed == PARTITIONS as usize {
                Ok(verified.stdout)
            } else {
                Err(verified.stdout.clone())
            }
        },
    );
    // Once done, --verify removes every throttle it set.
    assert!(
        verified.contains("Clearing topic-level throttles"),
        "{verified}"
    );
    let throttled = dynamic_configs(&bootstrap, "topics", &topic);
    assert!(!throttled.contains("throttled"), "{throttled}");
    let rates = dynamic_configs(&bootstrap, "brokers", &targets[&0][0].to_string());
    assert!(!rates.contains("throttled"), "{rates}");
    let deliveries = common::flush_all_ok(&producer, &recorder, BEFORE + DURING);

    // The new replica sets, all in sync, each led by its new first replica.
    wait_until(
        "metadata shows the targets in sync",
        Duration::from_secs(30),
        || {
            let now = cluster::partition_views(&bootstrap, &topic)?;
            let expected: Vec<PartitionView> = targets
                .values()
                .map(|target| {
                    let mut isr = target.clone();
                    isr.sort_unstable();
                    PartitionView {
                        leader: target[0],
                        replicas: target.clone(),
                        isr,
                    }
                })
                .collect();
            if now == expected {
                Ok(())
            } else {
                Err(format!("{now:?}, want {expected:?}"))
            }
        },
    );
    for (partition, target) in &targets {
        let gone = cluster.node(moved_away[partition]).data_dir();
        wait_until(
            &format!("partition {partition} deleted from the broker it left"),
            Duration::from_secs(30),
            || {
                let dir = gone.join(format!("{topic}-{partition}"));
                if dir.exists() {
                    Err(format!("{} still exists", dir.display()))
                } else {
                    Ok(())
                }
            },
        );
        cluster::wait_for_identical_logs(
            &mut cluster,
            target,
            &topic,
            &[*partition],
            Duration::from_secs(30),
        );
    }
    assert_read_once(&bootstrap, &topic, &deliveries, deliveries.len());
}

/// `kafka-topics --create --replica-assignment`: one partition on `replicas`.
fn create_on(bootstrap: &str, topic: &str, replicas: &[i32]) {
    let assignment: Vec<String> = replicas.iter().map(i32::to_string).collect();
    kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--replica-assignment",
            &assignment.join(":"),
        ],
        None,
    )
    .assert_success();
}

#[test]
fn a_reassignment_that_cannot_finish_is_listed_and_cancelled() {
    // The paused broker must stay registered and unfenced for the whole test (the tool
    // only moves replicas to live brokers).
    let opts = BrokerOpts::default().set("broker.session.timeout.ms", "300000");
    let mut cluster = TestCluster::start_millrace(3, opts);
    let bootstrap = cluster.bootstrap();
    let controller = controller_of(&cluster.node(1).bootstrap()).expect("controller");
    // A broker that does not lead the quorum, so pausing it stalls no controller call.
    let spare = NODES.into_iter().find(|&n| n != controller).unwrap();
    let replicas: Vec<i32> = NODES.into_iter().filter(|&n| n != spare).collect();
    let topic = unique_topic("reassign-cancel");
    create_on(&bootstrap, &topic, &replicas);
    let (producer, recorder) = common::producer(&bootstrap, &[]);
    for i in 0..500 {
        send_record(&producer, &topic, i);
    }
    let deliveries = common::flush_all_ok(&producer, &recorder, 500);
    // Paused, the spare never fetches: a replica added there never catches up, so the
    // reassignment stays in progress until it is cancelled.
    let pid = cluster.node(spare).pid().expect("running") as i32;
    // SAFETY: a signal to the broker process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP");
    let spare_addr = cluster.node(spare).bootstrap();
    let bootstrap: String = bootstrap
        .split(',')
        .filter(|b| *b != spare_addr)
        .collect::<Vec<_>>()
        .join(",");
    let target = vec![replicas[0], spare];
    let work = tempfile::TempDir::new().expect("temp dir");
    let plan = work.path().join("reassignment.json");
    std::fs::write(
        &plan,
        reassignment_json(&topic, &BTreeMap::from([(0, target.clone())])),
    )
    .unwrap();
    let plan = plan.to_str().unwrap();
    reassign(&bootstrap, &["--execute", "--reassignment-json-file", plan]).assert_success();

    let listed = reassign(&bootstrap, &["--list"]);
    listed.assert_success();
    assert!(
        listed.stdout.contains(&format!("{topic}-0")),
        "{}",
        listed.describe()
    );
    let verified = reassign(&bootstrap, &["--verify", "--reassignment-json-file", plan]);
    verified.assert_success();
    assert!(
        verified.stdout.contains("is still in progress."),
        "{}",
        verified.describe()
    );
    let during = cluster::partition_views(&bootstrap, &topic).expect("metadata")[0]
        .replicas
        .clone();
    assert_eq!(
        during,
        vec![replicas[0], spare, replicas[1]],
        "target replicas, then the removing one"
    );

    // Clearing throttles would ask the paused broker for its configs: kept as they are.
    let cancelled = reassign(
        &bootstrap,
        &[
            "--cancel",
            "--reassignment-json-file",
            plan,
            "--preserve-throttles",
        ],
    );
    cancelled.assert_success();
    assert!(
        cancelled
            .stdout
            .contains("Successfully cancelled partition reassignment"),
        "{}",
        cancelled.describe()
    );
    wait_until(
        "the original replicas are back",
        Duration::from_secs(30),
        || {
            let PartitionView {
                replicas: now, isr, ..
            } = cluster::partition_views(&bootstrap, &topic)?.remove(0);
            if now == replicas && isr == replicas {
                Ok(())
            } else {
                Err(format!("replicas {now:?} isr {isr:?}"))
            }
        },
    );
    let listed = reassign(&bootstrap, &["--list"]);
    listed.assert_success();
    assert!(
        listed.stdout.contains("No partition reassignments found."),
        "{}",
        listed.describe()
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0, "SIGCONT");
    assert_read_once(&bootstrap, &topic, &deliveries, deliveries.len());
}
