//! Consumer-group rebalancing with three kinds of real clients: three members of one
//! group on a 6-partition topic; once stable every partition has exactly one owner (2
//! each); one member is SIGKILLed (no LeaveGroup, no final commit) and the two survivors
//! own all 6 partitions (3 each) within session timeout + margin; every message produced
//! before and after the kill is consumed at least once, and the group's committed
//! offsets end equal to the log end offsets.

mod common;

use std::time::Duration;

use common::admin_create;
use common::groups::*;
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, ClientProcess, TestBroker};

const PARTITIONS: i32 = 6;
const HALF: usize = 3_000;
/// session.timeout.ms of every member (6 s, the broker's group.min.session.timeout.ms).
const SESSION: Duration = Duration::from_secs(6);
/// Slack on top of the session timeout for expiry + rejoin + sync.
const MARGIN: Duration = Duration::from_secs(20);

#[test]
#[ignore = "child process of the group tests (runs only with MILLRACE_GROUP_MEMBER set)"]
fn group_member_child() {
    member_main();
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Rdkafka(&'static str),
    Python,
    Java,
}

fn spawn(kind: Kind, name: &str, b: &str, topic: &str, group: &str) -> ClientProcess {
    match kind {
        Kind::Rdkafka(strategy) => {
            let mut cfg = MemberCfg::new(b, topic, group);
            cfg.strategy = strategy.into();
            spawn_rdkafka_member(name, &cfg)
        }
        Kind::Python => spawn_python_member(name, b, topic, group),
        Kind::Java => spawn_java_member(name, b, topic, group),
    }
}

/// Partition -> client id of its owner, from `kafka-consumer-groups --describe` (the
/// Java members set client.id to their name). Err until every partition has an owner
/// and each listed owner holds `per_member` partitions.
fn java_owners(b: &str, group: &str, per_member: usize) -> Result<Vec<String>, String> {
    let rows = try_describe(b, group)?;
    let mut owners = vec![String::new(); PARTITIONS as usize];
    for r in &rows {
        if r.consumer_id == "-" {
            return Err(format!("partition {} unowned: {rows:?}", r.partition));
        }
        owners[r.partition as usize] = r.client_id.clone();
    }
    if owners.iter().any(String::is_empty) {
        return Err(format!("not all partitions listed: {rows:?}"));
    }
    for o in &owners {
        let n = owners.iter().filter(|x| *x == o).count();
        if n != per_member {
            return Err(format!("{o} owns {n} partitions: {owners:?}"));
        }
    }
    Ok(owners)
}

fn scenario(kind: Kind, initial_rebalance_delay_ms: u32) {
    let broker = TestBroker::start(BrokerOpts::default().partitions(PARTITIONS as u32).set(
        "group.initial.rebalance.delay.ms",
        &initial_rebalance_delay_ms.to_string(),
    ));
    let b = broker.bootstrap();
    let topic = unique_topic("grp-rebalance");
    let group = unique_topic("g");
    admin_create(&b, &topic, PARTITIONS);
    produce_keyed(&b, &topic, 0..HALF);
    let leo1 = log_end_offsets(&b, &topic);
    assert_eq!(leo1.iter().sum::<i64>(), HALF as i64);
    assert!(
        leo1.iter().all(|&o| o > 0),
        "keyed messages reach every partition: {leo1:?}"
    );

    let names = ["m0", "m1", "m2"];
    let mut members: Vec<ClientProcess> = names
        .iter()
        .map(|n| spawn(kind, n, &b, &topic, &group))
        .collect();
    let stable = Duration::from_secs(90);

    // Stable group: every partition exactly one owner, 2 each.
    if kind == Kind::Java {
        let owners = wait_until("java group stable (2 partitions each)", stable, || {
            java_owners(&b, &group, 2)
        });
        let ids: std::collections::BTreeSet<&String> = owners.iter().collect();
        assert_eq!(
            ids.into_iter().cloned().collect::<Vec<_>>(),
            names.map(String::from).to_vec(),
            "all three console consumers own partitions"
        );
    } else {
        let refs: Vec<&ClientProcess> = members.iter().collect();
        wait_exact_cover(
            "group stable (2 partitions each)",
            &refs,
            PARTITIONS,
            Some(2),
            stable,
        );
    }
    {
        let refs: Vec<&ClientProcess> = members.iter().collect();
        wait_all_consumed("first half consumed", &refs, &leo1, Duration::from_secs(60));
    }

    // Crash one member: the survivors take its partitions after the session timeout.
    members[2].kill9();
    let takeover = SESSION + MARGIN;
    if kind == Kind::Java {
        let owners = wait_until("survivors own all 6 (3 each)", takeover, || {
            java_owners(&b, &group, 3)
        });
        assert!(!owners.contains(&"m2".to_string()), "{owners:?}");
    } else {
        let refs: Vec<&ClientProcess> = members[..2].iter().collect();
        wait_exact_cover(
            "survivors own all 6 (3 each)",
            &refs,
            PARTITIONS,
            Some(3),
            takeover,
        );
    }

    produce_keyed(&b, &topic, HALF..2 * HALF);
    let leo2 = log_end_offsets(&b, &topic);
    assert_eq!(leo2.iter().sum::<i64>(), 2 * HALF as i64);
    {
        let refs: Vec<&ClientProcess> = members.iter().collect();
        wait_all_consumed(
            "every message consumed at least once",
            &refs,
            &leo2,
            Duration::from_secs(60),
        );
    }
    // The killed member consumed nothing after its death.
    let killed_after: Vec<_> = consumed(&members[2])
        .into_iter()
        .filter(|&(p, o)| o >= leo1[p as usize])
        .collect();
    assert!(
        killed_after.is_empty(),
        "dead member consumed {killed_after:?}"
    );

    wait_committed_eq(&b, &group, &topic, &leo2, Duration::from_secs(30));
    if kind == Kind::Java {
        // The same through the tool: CURRENT-OFFSET == LOG-END-OFFSET, LAG 0.
        let rows = describe(&b, &group);
        assert_eq!(rows.len(), PARTITIONS as usize, "{rows:?}");
        for r in &rows {
            assert_eq!(
                r.current_offset,
                leo2[r.partition as usize].to_string(),
                "{r:?}"
            );
            assert_eq!(r.log_end_offset, r.current_offset, "{r:?}");
            assert_eq!(r.lag, "0", "{r:?}");
        }
    }
    if kind != Kind::Java {
        for m in &mut members[..2] {
            assert!(m.stop(Duration::from_secs(30)), "{} clean exit", m.name());
            assert!(
                events(m).iter().any(|e| e["ev"] == "closed"),
                "{} closed",
                m.name()
            );
        }
    }
}

/// rdkafka, range assignor, Kafka's default group.initial.rebalance.delay.ms (3000).
#[test]
fn rdkafka_range_group_rebalances_on_member_crash() {
    scenario(Kind::Rdkafka("range"), 3000);
}

#[test]
fn rdkafka_cooperative_sticky_group_rebalances_on_member_crash() {
    scenario(Kind::Rdkafka("cooperative-sticky"), 500);
}

#[test]
fn kafka_python_group_rebalances_on_member_crash() {
    scenario(Kind::Python, 500);
}

#[test]
fn java_console_consumer_group_rebalances_on_member_crash() {
    scenario(Kind::Java, 500);
}
