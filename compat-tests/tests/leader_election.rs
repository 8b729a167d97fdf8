//! Preferred leaders come back: after a node stops and rejoins, Kafka's
//! `kafka-leader-election.sh` (ElectLeaders) moves the leaderships back to the
//! preferred (first) replicas, or the controller does it by itself with
//! `auto.leader.rebalance.enable`; acks=all records written around it are all kept.
//! The tool's answers on a single node are compared with a real Kafka 4.4.0's.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use millrace_compat_tests::tools::{kafka_tool, ToolOutput};
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestBroker, TestCluster};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use common::cluster::{self, assert_read_once, PartitionView};

const LEADER_ELECTION: &str = "org.apache.kafka.tools.LeaderElectionCommand";
const PARTITIONS: i32 = 6;
const BATCH: usize = 500;

/// Sends records `range` (value `v<id>`, opaque `id`) and waits until every record sent
/// so far (`range.end` in all) is acknowledged.
fn produce(
    producer: &ThreadedProducer<common::Recorder>,
    recorder: &common::Recorder,
    topic: &str,
    range: std::ops::Range<usize>,
) -> Vec<common::Delivery> {
    let total = range.end;
    for id in range {
        let value = format!("v{id}");
        common::send(
            producer,
            BaseRecord::with_opaque_to(topic, id).payload(value.as_bytes()),
        );
    }
    common::flush_all_ok(producer, recorder, total)
}

/// A three-node cluster with `extra` settings and a topic of [`PARTITIONS`] partitions
/// on every node, each led by its preferred replica with a full ISR.
fn cluster_with_topic(extra: &[(&str, &str)], prefix: &str) -> (TestCluster, String) {
    let mut opts = BrokerOpts::default()
        .set("broker.session.timeout.ms", "3000")
        .set("broker.heartbeat.interval.ms", "500");
    for (key, value) in extra {
        opts = opts.set(key, value);
    }
    let cluster = TestCluster::start_millrace(3, opts);
    let topic = unique_topic(prefix);
    common::admin_create_replicated(
        &cluster.bootstrap(),
        &topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );
    wait_until(
        "every partition led by its preferred replica, ISR full",
        Duration::from_secs(30),
        || {
            let states = cluster::partition_views(&cluster.bootstrap(), &topic)?;
            match states
                .iter()
                .all(|p| p.preferred_leads() && p.isr.len() == 3)
            {
                true => Ok(()),
                false => Err(format!("{states:?}")),
            }
        },
    );
    (cluster, topic)
}

/// Stops the preferred leader of partition 0 (a controlled shutdown: its leaderships
/// move at once), restarts it and waits until it is back in every ISR. Returns it and
/// the partitions it prefers to lead, which others lead now.
fn bounce_a_preferred_leader(cluster: &mut TestCluster, topic: &str) -> (i32, BTreeSet<i32>) {
    let before = cluster::partition_views(&cluster.bootstrap(), topic).expect("metadata");
    let victim = before[0].replicas[0];
    let preferred: BTreeSet<i32> = (0..PARTITIONS)
        .filter(|&p| before[p as usize].replicas[0] == victim)
        .collect();
    cluster.node(victim).stop_graceful();
    let survivors: Vec<String> = (1..=3)
        .filter(|&id| id != victim)
        .map(|id| cluster.node(id).bootstrap())
        .collect();
    let survivors = survivors.join(",");
    wait_until(
        "the stopped node leads nothing",
        Duration::from_secs(30),
        || {
            let states = cluster::partition_views(&survivors, topic)?;
            match states.iter().all(|p| p.leader >= 0 && p.leader != victim) {
                true => Ok(()),
                false => Err(format!("{states:?}")),
            }
        },
    );
    cluster.node(victim).restart();
    wait_until(
        "the restarted node back in every ISR",
        Duration::from_secs(60),
        || {
            let states = cluster::partition_views(&cluster.bootstrap(), topic)?;
            match states.iter().all(|p| p.isr.len() == 3) {
                true => Ok(()),
                false => Err(format!("{states:?}")),
            }
        },
    );
    (victim, preferred)
}

fn wait_for_preferred_leaders(bootstrap: &str, topic: &str, what: &str) {
    wait_until(what, Duration::from_secs(60), || {
        let states = cluster::partition_views(bootstrap, topic)?;
        match states.iter().all(PartitionView::preferred_leads) {
            true => Ok(()),
            false => Err(format!("{states:?}")),
        }
    });
}

/// The partitions (`topic-N`) a line of the tool's output lists after `prefix`.
fn listed(out: &ToolOutput, prefix: &str) -> BTreeSet<String> {
    out.stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map(|list| list.split(", ").map(str::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn the_leader_election_tool_brings_preferred_leaders_back() {
    // The check interval is short so that, were the controller balancing by itself, it
    // would have done so long before the tool runs: the tool electing every partition
    // shows that with auto rebalance off nothing moved in the meantime.
    let (mut cluster, topic) = cluster_with_topic(
        &[
            ("auto.leader.rebalance.enable", "false"),
            ("leader.imbalance.check.interval.seconds", "1"),
        ],
        "elect",
    );
    let bootstrap = cluster.bootstrap();
    let (producer, recorder) = common::producer(&bootstrap, &[]);
    produce(&producer, &recorder, &topic, 0..BATCH);

    let (victim, preferred) = bounce_a_preferred_leader(&mut cluster, &topic);
    assert!(!preferred.is_empty(), "node {victim} prefers no partition");
    let states = cluster::partition_views(&bootstrap, &topic).expect("metadata");
    for &p in &preferred {
        assert_ne!(
            states[p as usize].leader, victim,
            "partition {p}: {states:?}"
        );
    }
    // Imbalanced, acks=all goes on.
    produce(&producer, &recorder, &topic, BATCH..2 * BATCH);

    let out = kafka_tool(
        LEADER_ELECTION,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--election-type",
            "PREFERRED",
            "--all-topic-partitions",
        ],
        None,
    );
    out.assert_success();
    let expected: BTreeSet<String> = preferred.iter().map(|p| format!("{topic}-{p}")).collect();
    // The internal __consumer_offsets partitions the node led moved too: left aside.
    let elected: BTreeSet<String> = listed(
        &out,
        "Successfully completed leader election (PREFERRED) for partitions ",
    )
    .into_iter()
    .filter(|p| p.starts_with(&format!("{topic}-")))
    .collect();
    assert_eq!(elected, expected, "{}", out.describe());
    // Partitions already led by their preferred replica are not listed at all.
    assert!(
        !out.stdout.contains("Valid replica already elected"),
        "{}",
        out.describe()
    );
    wait_for_preferred_leaders(&bootstrap, &topic, "preferred leaders after the election");

    // Named explicitly, a partition its preferred replica leads needs no election.
    let moved = *preferred.first().expect("a moved partition");
    let out = kafka_tool(
        LEADER_ELECTION,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--election-type",
            "PREFERRED",
            "--topic",
            &topic,
            "--partition",
            &moved.to_string(),
        ],
        None,
    );
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        format!("Valid replica already elected for partitions {topic}-{moved}"),
        "{}",
        out.describe()
    );

    // The old leaders follow the new ones: acks=all with min.insync.replicas 2 goes on,
    // and nothing acknowledged is lost.
    let deliveries = produce(&producer, &recorder, &topic, 2 * BATCH..3 * BATCH);
    drop(producer);
    assert_read_once(&bootstrap, &topic, &deliveries, deliveries.len());
}

#[test]
fn with_auto_rebalance_the_controller_brings_preferred_leaders_back() {
    let (mut cluster, topic) = cluster_with_topic(
        &[
            ("auto.leader.rebalance.enable", "true"),
            ("leader.imbalance.check.interval.seconds", "1"),
        ],
        "rebalance",
    );
    let bootstrap = cluster.bootstrap();
    let (producer, recorder) = common::producer(&bootstrap, &[]);
    produce(&producer, &recorder, &topic, 0..BATCH);
    let (victim, preferred) = bounce_a_preferred_leader(&mut cluster, &topic);
    assert!(!preferred.is_empty(), "node {victim} prefers no partition");
    wait_for_preferred_leaders(&bootstrap, &topic, "preferred leaders by themselves");
    let deliveries = produce(&producer, &recorder, &topic, BATCH..2 * BATCH);
    drop(producer);
    assert_read_once(&bootstrap, &topic, &deliveries, deliveries.len());
}

/// The tool's stdout and exit status for each kind of request on a single node.
fn single_node_answers(broker: &TestBroker) -> Vec<(&'static str, String, bool)> {
    let bootstrap = broker.bootstrap();
    let topic = "election-differential";
    common::admin_create_replicated(&bootstrap, topic, 1, 1, &[]);
    let run = |args: &[&str]| {
        let mut all = vec!["--bootstrap-server", &bootstrap];
        all.extend_from_slice(args);
        let out = kafka_tool(LEADER_ELECTION, &all, None);
        (out.stdout.trim().to_string(), out.status.success())
    };
    let mut answers = Vec::new();
    for (case, args) in [
        (
            "preferred, led partition",
            &[
                "--election-type",
                "PREFERRED",
                "--topic",
                topic,
                "--partition",
                "0",
            ][..],
        ),
        (
            "unclean, led partition",
            &[
                "--election-type",
                "UNCLEAN",
                "--topic",
                topic,
                "--partition",
                "0",
            ][..],
        ),
        (
            "all partitions",
            &["--election-type", "PREFERRED", "--all-topic-partitions"][..],
        ),
        (
            "unknown partition",
            &[
                "--election-type",
                "PREFERRED",
                "--topic",
                topic,
                "--partition",
                "7",
            ][..],
        ),
    ] {
        let (stdout, ok) = run(args);
        answers.push((case, stdout, ok));
    }
    answers
}

#[test]
fn single_node_answers_match_kafka() {
    let millrace = TestBroker::start_millrace(BrokerOpts::default());
    let got = single_node_answers(&millrace);
    drop(millrace);
    let kafka = TestBroker::start_kafka(BrokerOpts::default());
    let reference = single_node_answers(&kafka);
    drop(kafka);
    assert_eq!(got.len(), reference.len());
    for ((case, have, have_ok), (_, want, want_ok)) in got.iter().zip(&reference) {
        eprintln!("{case}: {have:?}, success {have_ok}");
        assert_eq!(have, want, "{case}: output differs from Kafka's");
        assert_eq!(have_ok, want_ok, "{case}: exit status differs from Kafka's");
    }
    // Not vacuous: the preferred replica of a single node always leads.
    assert_eq!(
        got[0].1,
        "Valid replica already elected for partitions election-differential-0"
    );
}
