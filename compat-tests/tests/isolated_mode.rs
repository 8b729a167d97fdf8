//! Kafka's isolated mode with real millrace processes: three controller-only voters
//! (`process.roles=controller`) and two broker-only nodes (`process.roles=broker`, found
//! through `controller.quorum.bootstrap.servers`, following the metadata log as
//! observers). Metadata lists only the brokers; Kafka 4.4.0's `kafka-metadata-quorum`
//! shows three voters and the two observers; an RF 2 topic takes acks=all writes from
//! rdkafka and reads back; kill -9 of the quorum leader elects another controller and the
//! brokers keep working; kill -9 of a broker fences it and moves its leaderships, and
//! once restarted it rejoins as an observer (it learns a topic created meanwhile) and is
//! unfenced.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use millrace_compat_tests::{kafka_tool, unique_topic, wait_until, BrokerOpts, Role, TestCluster};
use rdkafka::producer::BaseRecord;

use common::cluster::{self, metadata_view};

const QUORUM: &str = "org.apache.kafka.tools.MetadataQuorumCommand";
const SESSION_TIMEOUT_MS: u64 = 3_000;
const MESSAGES: usize = 200;

fn ids(list: &[i32]) -> BTreeSet<i32> {
    list.iter().copied().collect()
}

/// The `"id": N` values of a `CurrentVoters:` / `CurrentObservers:` line.
fn node_ids(text: &str) -> BTreeSet<i32> {
    text.split("\"id\": ")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .expect("node id")
        })
        .collect()
}

/// `kafka-metadata-quorum describe --status`: (LeaderId, voter ids, observer ids), or
/// the tool's output when it failed (no leader yet).
fn quorum_status(bootstrap: &str) -> Result<(i32, BTreeSet<i32>, BTreeSet<i32>), String> {
    let out = kafka_tool(
        QUORUM,
        &["--bootstrap-server", bootstrap, "describe", "--status"],
        None,
    );
    if !out.status.success() {
        return Err(out.describe());
    }
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .map(str::to_string)
            .ok_or_else(|| format!("no {name} in {}", out.describe()))
    };
    let leader = field("LeaderId:")?
        .parse()
        .map_err(|e| format!("LeaderId: {e}"))?;
    Ok((
        leader,
        node_ids(&field("CurrentVoters:")?),
        node_ids(&field("CurrentObservers:")?),
    ))
}

/// `describe --replication`: (NodeId, Status) rows.
fn replication_rows(bootstrap: &str) -> Vec<(i32, String)> {
    let out = kafka_tool(
        QUORUM,
        &["--bootstrap-server", bootstrap, "describe", "--replication"],
        None,
    );
    out.assert_success();
    out.stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.parse().ok()?, cols.last()?.to_string()))
        })
        .collect()
}

/// Produces `payloads` with acks=all (every write acknowledged) through `bootstrap`.
fn produce(bootstrap: &str, topic: &str, payloads: &[String]) {
    let (producer, recorder) = common::producer(bootstrap, &[]);
    for (i, payload) in payloads.iter().enumerate() {
        let key = format!("k{i}");
        common::send(
            &producer,
            BaseRecord::with_opaque_to(topic, i)
                .key(key.as_bytes())
                .payload(payload.as_bytes()),
        );
    }
    common::flush_all_ok(&producer, &recorder, payloads.len());
}

fn consumed(bootstrap: &str, topic: &str) -> BTreeSet<String> {
    common::consume_all(bootstrap, topic)
        .into_iter()
        .flatten()
        .map(|m| String::from_utf8(m.value.expect("value")).expect("utf-8"))
        .collect()
}

#[test]
fn isolated_controllers_and_brokers() {
    let opts = BrokerOpts::default()
        .set("broker.session.timeout.ms", &SESSION_TIMEOUT_MS.to_string())
        .set("broker.heartbeat.interval.ms", "500");
    let mut cluster = TestCluster::start_isolated(3, 2, opts);
    let controllers = ids(&[1, 2, 3]);
    let brokers = ids(&[4, 5]);
    assert_eq!(cluster.node(1).role(), Role::Controller);
    assert_eq!(cluster.node(4).role(), Role::Broker);
    let addrs: Vec<String> = (4..=5).map(|id| cluster.node(id).bootstrap()).collect();

    // Metadata lists the brokers only, and a broker as the controller (Kafka's brokers
    // name a live broker: the controllers are not reachable by clients).
    for addr in &addrs {
        wait_until("the brokers listed", Duration::from_secs(30), || {
            let view = metadata_view(addr, None)?;
            match view.brokers == brokers && brokers.contains(&view.controller) {
                true => Ok(()),
                false => Err(format!(
                    "{addr}: brokers {:?}, controller {}",
                    view.brokers, view.controller
                )),
            }
        });
    }

    // kafka-metadata-quorum: three voters, the brokers as observers.
    let (leader, voters, observers) = wait_until(
        "the observers in --status",
        Duration::from_secs(30),
        || match quorum_status(&addrs[0])? {
            status if status.2 == brokers => Ok(status),
            status => Err(format!("status {status:?}")),
        },
    );
    assert_eq!(voters, controllers);
    assert_eq!(observers, brokers);
    assert!(controllers.contains(&leader));
    let rows = replication_rows(&addrs[1]);
    let with = |status: &str| -> BTreeSet<i32> {
        rows.iter()
            .filter(|(_, s)| s == status)
            .map(|(id, _)| *id)
            .collect()
    };
    assert_eq!(with("Leader"), ids(&[leader]), "{rows:?}");
    assert_eq!(with("Follower").len(), 2, "{rows:?}");
    assert_eq!(with("Observer"), brokers, "{rows:?}");

    // An RF 2 topic on the two brokers: acks=all writes, read back.
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("isolated");
    cluster::create_topic(&addrs[0], &topic, "2", "2");
    let first: Vec<String> = (0..MESSAGES).map(|i| format!("a{i}")).collect();
    produce(&bootstrap, &topic, &first);
    assert_eq!(
        consumed(&bootstrap, &topic),
        first.iter().cloned().collect()
    );

    // kill -9 the quorum leader: another controller leads, the brokers keep working.
    cluster.node(leader).kill9();
    let killed_at = std::time::Instant::now();
    let new_leader =
        wait_until(
            "a new quorum leader",
            Duration::from_secs(30),
            || match quorum_status(&addrs[1])?.0 {
                l if l != leader => Ok(l),
                l => Err(format!("leader still {l}")),
            },
        );
    eprintln!(
        "kill -9 of quorum leader {leader}: controller {new_leader} leads after {:?}",
        killed_at.elapsed()
    );
    assert!(controllers.contains(&new_leader));
    let second: Vec<String> = (0..MESSAGES).map(|i| format!("b{i}")).collect();
    produce(&bootstrap, &topic, &second);
    let after = unique_topic("after-controller-failover");
    cluster::create_topic(&addrs[1], &after, "2", "2");
    let all_written: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(consumed(&bootstrap, &topic), all_written);

    // kill -9 broker 5: fenced, its leaderships move to broker 4.
    cluster.node(5).kill9();
    let killed_at = std::time::Instant::now();
    let fence_deadline = Duration::from_millis(SESSION_TIMEOUT_MS) + Duration::from_secs(15);
    wait_until("broker 5 fenced", fence_deadline, || {
        let view = metadata_view(&addrs[0], Some(&topic))?;
        match (view.brokers == ids(&[4]), view.leaders == [4, 4]) {
            (true, true) => Ok(()),
            _ => Err(format!(
                "brokers {:?}, leaders {:?}",
                view.brokers, view.leaders
            )),
        }
    });
    eprintln!(
        "kill -9 of broker 5: fenced with leaderships moved after {:?} \
         (broker.session.timeout.ms={SESSION_TIMEOUT_MS})",
        killed_at.elapsed()
    );

    // A topic created while it is down reaches it only through the metadata log.
    let while_away = unique_topic("while-away");
    cluster::create_topic(&addrs[0], &while_away, "1", "1");

    // Restarted: it rejoins as an observer (so learns that topic) and is unfenced
    // everywhere.
    cluster.node(5).restart();
    for addr in &addrs {
        wait_until("broker 5 unfenced", Duration::from_secs(30), || {
            let view = metadata_view(addr, Some(&while_away))?;
            match (view.brokers == brokers, view.leaders.len()) {
                (true, 1) => Ok(()),
                _ => Err(format!(
                    "{addr} lists {:?}, {:?}",
                    view.brokers, view.leaders
                )),
            }
        });
    }
    let (_, _, observers) = quorum_status(&addrs[1]).expect("describe --status");
    assert_eq!(observers, brokers);
    assert_eq!(consumed(&addrs[1], &topic), all_written);
}
