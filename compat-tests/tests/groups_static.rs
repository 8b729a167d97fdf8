//! Static membership (KIP-345, `group.instance.id`) with librdkafka members: a member
//! that goes away without LeaveGroup (a clean close — librdkafka static members skip
//! LeaveGroup — and, second, a SIGKILL) and comes back with the same instance id within
//! session.timeout.ms gets exactly its old partitions back, the group generation does
//! not change, and the other members see no rebalance at all.

mod common;

use std::time::Duration;

use common::admin_create;
use common::groups::*;
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, ClientProcess, TestBroker};
use serde_json::Value;

const PARTITIONS: i32 = 6;
const SESSION_MS: u32 = 10_000;

#[test]
#[ignore = "child process of the group tests (runs only with MILLRACE_GROUP_MEMBER set)"]
fn group_member_child() {
    member_main();
}

/// Generation and leadership from the member's latest JoinGroup response.
fn last_join(m: &ClientProcess) -> Option<(i64, bool)> {
    events(m)
        .iter()
        .rev()
        .find(|e| e["ev"] == "join")
        .map(|e| (e["gen"].as_i64().unwrap(), e["leader"].as_bool().unwrap()))
}

fn rebalance_events(evs: &[Value]) -> Vec<Value> {
    evs.iter()
        .filter(|e| e["ev"] == "rebalance" || e["ev"] == "assignment" || e["ev"] == "join")
        .cloned()
        .collect()
}

/// `kafka-consumer-groups --describe --state`: (ASSIGNMENT-STRATEGY, STATE, #MEMBERS).
fn group_state(b: &str, group: &str) -> (String, String, u32) {
    let out = groups_tool(b, &["--describe", "--state", "--group", group]);
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "GROUP",
            "COORDINATOR",
            "(ID)",
            "ASSIGNMENT-STRATEGY",
            "STATE",
            "#MEMBERS"
        ],
        "{out}"
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(row.len(), 6, "{out}");
    assert_eq!(row[0], group, "{out}");
    assert_eq!(row[2], "(1)", "coordinator is node 1: {out}");
    (row[3].into(), row[4].into(), row[5].parse().unwrap())
}

#[test]
fn static_member_rejoins_without_rebalance() {
    let broker = TestBroker::start(
        BrokerOpts::default()
            .partitions(PARTITIONS as u32)
            .set("group.initial.rebalance.delay.ms", "500"),
    );
    let b = broker.bootstrap();
    let topic = unique_topic("grp-static");
    let group = unique_topic("g-static");
    admin_create(&b, &topic, PARTITIONS);
    produce_keyed(&b, &topic, 0..600);

    let cfg = |i: usize| {
        let mut c = MemberCfg::new(&b, &topic, &group);
        c.instance_id = Some(format!("static-{i}"));
        c.session_timeout_ms = SESSION_MS;
        c
    };
    let mut members: Vec<ClientProcess> = (0..3)
        .map(|i| spawn_rdkafka_member(&format!("static-{i}"), &cfg(i)))
        .collect();
    let refs: Vec<&ClientProcess> = members.iter().collect();
    wait_exact_cover(
        "static group stable",
        &refs,
        PARTITIONS,
        Some(2),
        Duration::from_secs(60),
    );
    let leo = log_end_offsets(&b, &topic);
    wait_all_consumed("initial messages", &refs, &leo, Duration::from_secs(60));
    // Every member saw the same final generation; exactly one is the leader.
    let joins: Vec<(i64, bool)> = members
        .iter()
        .map(|m| last_join(m).expect("JoinGroup response logged"))
        .collect();
    let generation = joins[0].0;
    assert!(
        joins.iter().all(|j| j.0 == generation),
        "generations {joins:?}"
    );
    assert_eq!(
        joins.iter().filter(|j| j.1).count(),
        1,
        "one leader: {joins:?}"
    );
    let (strategy, state, n) = group_state(&b, &group);
    assert_eq!(
        (strategy.as_str(), state.as_str(), n),
        ("range", "Stable", 3)
    );

    // Restart the two followers one after the other: first a clean close (no
    // LeaveGroup for static members), then a crash.
    let followers: Vec<usize> = (0..3).filter(|&i| !joins[i].1).collect();
    let mut total = leo.iter().sum::<i64>() as usize;
    let mut retired: Vec<ClientProcess> = Vec::new();
    for (round, &i) in followers.iter().enumerate() {
        let before = assignment(&members[i]).unwrap();
        let marks: Vec<usize> = members.iter().map(|m| events(m).len()).collect();
        if round == 0 {
            assert!(members[i].stop(Duration::from_secs(30)), "clean close");
        } else {
            members[i].kill9();
        }
        let again = spawn_rdkafka_member(&format!("static-{i}-again"), &cfg(i));
        // Keep the old process's output: what it consumed counts for "at least once".
        retired.push(std::mem::replace(&mut members[i], again));
        // Back with the same partitions, well within the session timeout.
        let got = wait_until(
            "restarted static member gets its partitions back",
            Duration::from_millis(SESSION_MS as u64 - 2000),
            || match assignment(&members[i]) {
                Some(a) if !a.is_empty() => Ok(a),
                other => Err(format!("{other:?}")),
            },
        );
        assert_eq!(got, before, "round {round}: same partitions back");
        let (g, leader) = last_join(&members[i])
            .unwrap_or_else(|| panic!("rejoin not logged: {:?}", members[i].stdout_lines()));
        assert_eq!(g, generation, "round {round}: generation unchanged");
        assert!(
            !leader,
            "round {round}: a rejoining follower does not become leader"
        );

        // The group keeps working: new messages reach their (unchanged) owners.
        produce_keyed(&b, &topic, total..total + 600);
        total += 600;
        let leo = log_end_offsets(&b, &topic);
        let refs: Vec<&ClientProcess> = members.iter().chain(&retired).collect();
        wait_all_consumed(
            "messages after the rejoin",
            &refs,
            &leo,
            Duration::from_secs(60),
        );
        let (_, state, n) = group_state(&b, &group);
        assert_eq!((state.as_str(), n), ("Stable", 3), "round {round}");

        for (j, m) in members.iter().enumerate() {
            if j == i {
                continue;
            }
            let evs = events(m);
            let seen = rebalance_events(&evs[marks[j]..]);
            assert!(
                seen.is_empty(),
                "round {round}: {} saw a rebalance when static-{i} restarted: {seen:?}",
                m.name()
            );
        }
    }
    for m in &mut members {
        assert!(m.stop(Duration::from_secs(30)), "{} clean exit", m.name());
    }
}
