//! Three real millrace processes as one cluster (combined broker,controller nodes, a
//! three-voter metadata quorum): every node lists every broker, Kafka 4.4.0's
//! `kafka-metadata-quorum` and `kafka-topics` see the quorum and the replica spread, a
//! topic created through a follower is everywhere, rdkafka produces to the partition
//! leaders and reads it all back; then the quorum leader is killed -9: a new leader is
//! elected, the dead broker is fenced (gone from Metadata), topics can still be created,
//! and the restarted node rejoins unfenced.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use millrace_compat_tests::{kafka_tool, unique_topic, wait_until, BrokerOpts, TestCluster};
use rdkafka::producer::BaseRecord;

use common::cluster::{self, metadata_view};

const QUORUM: &str = "org.apache.kafka.tools.MetadataQuorumCommand";
const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const SESSION_TIMEOUT_MS: u64 = 3_000;
const MESSAGES: usize = 300;

fn ids(list: &[i32]) -> BTreeSet<i32> {
    list.iter().copied().collect()
}

/// `kafka-metadata-quorum describe --status`: (LeaderId, CurrentVoters ids).
fn quorum_status(bootstrap: &str) -> (i32, BTreeSet<i32>) {
    let out = kafka_tool(
        QUORUM,
        &["--bootstrap-server", bootstrap, "describe", "--status"],
        None,
    );
    out.assert_success();
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {}", out.describe()))
            .to_string()
    };
    let leader: i32 = field("LeaderId:").parse().expect("LeaderId");
    let voters = field("CurrentVoters:");
    let voter_ids = voters
        .split("\"id\": ")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .expect("voter id")
        })
        .collect();
    assert!(voters.contains("CONTROLLER://127.0.0.1:"), "{voters}");
    (leader, voter_ids)
}

#[test]
fn three_node_quorum_membership_placement_and_failover() {
    let opts = BrokerOpts::default()
        .set("broker.session.timeout.ms", &SESSION_TIMEOUT_MS.to_string())
        .set("broker.heartbeat.interval.ms", "500");
    let mut cluster = TestCluster::start_millrace(3, opts);
    let all = ids(&[1, 2, 3]);
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.bootstrap()).collect();

    // Every node lists all three brokers and the same controller.
    let controller = wait_until(
        "every node sees three brokers",
        Duration::from_secs(30),
        || {
            let views = addrs
                .iter()
                .map(|a| metadata_view(a, None))
                .collect::<Result<Vec<_>, _>>()?;
            let controllers: BTreeSet<i32> = views.iter().map(|v| v.controller).collect();
            match views.iter().all(|v| v.brokers == all) && controllers.len() == 1 {
                true => Ok(views[0].controller),
                false => Err(format!(
                    "brokers {:?}, controllers {controllers:?}",
                    views.iter().map(|v| v.brokers.clone()).collect::<Vec<_>>()
                )),
            }
        },
    );

    // kafka-metadata-quorum: three voters, one leader (the controller of Metadata).
    let (leader, voters) = quorum_status(&addrs[0]);
    assert_eq!(voters, all);
    assert_eq!(leader, controller);
    let out = kafka_tool(
        QUORUM,
        &["--bootstrap-server", &addrs[1], "describe", "--replication"],
        None,
    );
    out.assert_success();
    let rows: Vec<(i32, String)> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.parse().ok()?, cols.last()?.to_string()))
        })
        .collect();
    assert_eq!(rows.len(), 3, "{}", out.describe());
    assert_eq!(
        rows.iter()
            .filter(|(_, s)| s == "Leader")
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![leader],
        "{}",
        out.describe()
    );
    assert_eq!(rows.iter().filter(|(_, s)| s == "Follower").count(), 2);

    // A topic created through a follower: replicas spread over the three brokers,
    // every node knows it.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let via = cluster.node(follower).bootstrap();
    let topic = unique_topic("cluster");
    cluster::create_topic(&via, &topic, "6", "3");
    let out = kafka_tool(
        TOPICS,
        &[
            "--bootstrap-server",
            &addrs[2],
            "--describe",
            "--topic",
            &topic,
        ],
        None,
    );
    out.assert_success();
    let mut leaders = BTreeSet::new();
    let mut partitions = 0;
    for line in out.stdout.lines().filter(|l| l.contains("Partition:")) {
        let value = |name: &str| {
            line.split('\t')
                .find_map(|f| f.trim().strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .to_string()
        };
        let replicas: Vec<i32> = value("Replicas:")
            .split(',')
            .map(|r| r.parse().expect("replica id"))
            .collect();
        assert_eq!(ids(&replicas), all, "{line}");
        leaders.insert(value("Leader:").parse::<i32>().expect("leader"));
        partitions += 1;
    }
    assert_eq!(partitions, 6, "{}", out.describe());
    assert_eq!(leaders, all, "leaders spread over the brokers");
    for addr in &addrs {
        wait_until("the topic on every node", Duration::from_secs(10), || {
            let view = metadata_view(addr, Some(&topic))?;
            match view.leaders.len() {
                6 => Ok(()),
                n => Err(format!("{addr} knows {n} partitions")),
            }
        });
    }

    // rdkafka produces to the partition leaders (each on its own node) and reads back.
    let bootstrap = cluster.bootstrap();
    let (producer, recorder) = common::producer(&bootstrap, &[]);
    let payloads: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    for (i, payload) in payloads.iter().enumerate() {
        let key = format!("k{i}");
        common::send(
            &producer,
            BaseRecord::with_opaque_to(&topic, i)
                .key(key.as_bytes())
                .payload(payload.as_bytes()),
        );
    }
    let deliveries = common::flush_all_ok(&producer, &recorder, MESSAGES);
    let used: BTreeSet<i32> = deliveries
        .iter()
        .filter_map(|d| d.result.as_ref().ok().map(|(p, _)| *p))
        .collect();
    assert!(used.len() > 1, "keys spread over partitions: {used:?}");
    drop(producer);
    let consumed: BTreeSet<String> = common::consume_all(&bootstrap, &topic)
        .into_iter()
        .flatten()
        .map(|m| String::from_utf8(m.value.expect("value")).expect("utf-8"))
        .collect();
    assert_eq!(consumed, payloads.iter().cloned().collect::<BTreeSet<_>>());

    // kill -9 the quorum leader.
    cluster.node(leader).kill9();
    let killed_at = std::time::Instant::now();
    let survivors: Vec<String> = (1..=3)
        .filter(|id| *id != leader)
        .map(|id| cluster.node(id).bootstrap())
        .collect();
    let new_leader = wait_until("a new quorum leader", Duration::from_secs(30), || {
        let views = survivors
            .iter()
            .map(|a| metadata_view(a, None))
            .collect::<Result<Vec<_>, _>>()?;
        let controllers: BTreeSet<i32> = views.iter().map(|v| v.controller).collect();
        match controllers.iter().next() {
            Some(&c) if controllers.len() == 1 && c != leader => Ok(c),
            _ => Err(format!("controllers {controllers:?}")),
        }
    });
    let elected_after = killed_at.elapsed();
    let (status_leader, _) = quorum_status(&survivors[0]);
    assert_eq!(status_leader, new_leader);
    // Fenced within broker.session.timeout.ms (+ slack for the election and polling).
    let live: BTreeSet<i32> = all.iter().copied().filter(|id| *id != leader).collect();
    let fence_deadline = Duration::from_millis(SESSION_TIMEOUT_MS) + Duration::from_secs(10);
    for addr in &survivors {
        wait_until("the killed broker fenced", fence_deadline, || {
            let view = metadata_view(addr, None)?;
            match view.brokers == live {
                true => Ok(()),
                false => Err(format!("{addr} lists {:?}", view.brokers)),
            }
        });
    }
    // Measured, not asserted: how long clients saw the dead node.
    eprintln!(
        "kill -9 of quorum leader {leader}: node {new_leader} leads after {elected_after:?}, \
         {leader} fenced everywhere after {:?} (broker.session.timeout.ms={SESSION_TIMEOUT_MS})",
        killed_at.elapsed()
    );
    // Topic creation still works from a survivor (two live brokers: RF 2).
    let after = unique_topic("after-failover");
    cluster::create_topic(&survivors[1], &after, "2", "2");
    let out = kafka_tool(
        TOPICS,
        &[
            "--bootstrap-server",
            &survivors[0],
            "--create",
            "--topic",
            &unique_topic("rf3"),
            "--partitions",
            "1",
            "--replication-factor",
            "3",
        ],
        None,
    );
    assert!(
        out.stdout.contains("INVALID_REPLICATION_FACTOR")
            || out.stderr.contains("InvalidReplicationFactorException")
            || out.stdout.contains("InvalidReplicationFactorException"),
        "RF above the unfenced brokers: {}",
        out.describe()
    );

    // Restarted, it rejoins and is unfenced everywhere.
    cluster.node(leader).restart();
    for addr in &addrs {
        wait_until(
            "the restarted broker unfenced",
            Duration::from_secs(30),
            || {
                let view = metadata_view(addr, Some(&after))?;
                match (view.brokers == all, view.leaders.len()) {
                    (true, 2) => Ok(()),
                    _ => Err(format!(
                        "{addr} lists {:?}, {:?}",
                        view.brokers, view.leaders
                    )),
                }
            },
        );
    }
}
