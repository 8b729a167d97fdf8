//! Consumer-group helpers: group members as killable child processes (rdkafka members
//! re-run this test binary; kafka-python and Java members run their own tools), their
//! event streams, committed offsets, and `kafka-consumer-groups` output parsing.
//!
//! Members print one event per line, `@@ <json>`:
//! - `{"ev":"assignment","parts":[..]}` whenever the member's full assignment changes;
//! - `{"ev":"rebalance","kind":"assign"|"revoke","parts":[..]}` (rdkafka callbacks);
//! - `{"ev":"join","gen":N,"leader":bool}` (rdkafka: each JoinGroup response);
//! - `{"ev":"msg","p":P,"o":O}` per consumed message;
//! - `{"ev":"closed"}` after a clean close (stdin EOF is the stop signal).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use millrace_compat_tests::{
    kafka_tool, kafka_tool_command, python_command, wait_until, ClientProcess,
};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

/// Env var carrying a child member's JSON config.
pub const MEMBER_ENV: &str = "MILLRACE_GROUP_MEMBER";
/// Name of the `#[test] #[ignore]` function each test file defines to call
/// [`member_main`].
pub const CHILD_TEST: &str = "group_member_child";
pub const GROUPS_TOOL: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
pub const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";

fn emit(v: Value) {
    println!("@@ {v}");
}

fn parts_of(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort();
    v
}

struct MemberCtx;

impl ClientContext for MemberCtx {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, msg: &str) {
        // librdkafka (debug=cgrp): "JoinGroup response: GenerationId 3, Protocol range,
        // LeaderId rdkafka-.. (me), my MemberId rdkafka-.., ..."
        if let Some(rest) = msg.split("JoinGroup response: GenerationId ").nth(1) {
            let gen: i64 = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(-1);
            let leader = msg.contains("(me)");
            emit(json!({"ev": "join", "gen": gen, "leader": leader}));
        }
    }
}

impl ConsumerContext for MemberCtx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                emit(json!({"ev": "rebalance", "kind": "assign", "parts": parts_of(tpl)}))
            }
            Rebalance::Revoke(tpl) => {
                emit(json!({"ev": "rebalance", "kind": "revoke", "parts": parts_of(tpl)}))
            }
            Rebalance::Error(e) => {
                emit(json!({"ev": "rebalance", "kind": "error", "err": e.to_string()}))
            }
        }
    }
}

/// Settings of one rdkafka group member.
#[derive(Clone, Debug)]
pub struct MemberCfg {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    /// `partition.assignment.strategy`.
    pub strategy: String,
    pub instance_id: Option<String>,
    pub session_timeout_ms: u32,
    /// Extra librdkafka settings.
    pub extra: Vec<(String, String)>,
}

impl MemberCfg {
    pub fn new(bootstrap: &str, topic: &str, group: &str) -> MemberCfg {
        MemberCfg {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            group: group.into(),
            strategy: "range".into(),
            instance_id: None,
            session_timeout_ms: 6000,
            extra: Vec::new(),
        }
    }
    fn to_json(&self) -> Value {
        json!({
            "bootstrap": self.bootstrap, "topic": self.topic, "group": self.group,
            "strategy": self.strategy, "instance_id": self.instance_id,
            "session_timeout_ms": self.session_timeout_ms,
            "extra": self.extra.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        })
    }
}

/// Body of the child test: run one rdkafka group member (subscribe, auto commit every
/// 200 ms, print events) until stdin closes, then commit and close. A no-op when the
/// test binary is not running as a member child.
pub fn member_main() {
    let Ok(cfg) = std::env::var(MEMBER_ENV) else {
        return;
    };
    let cfg: Value = serde_json::from_str(&cfg).expect("member config JSON");
    let s = |k: &str| cfg[k].as_str().unwrap().to_string();
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", s("bootstrap"))
        .set("group.id", s("group"))
        .set("partition.assignment.strategy", s("strategy"))
        .set("session.timeout.ms", cfg["session_timeout_ms"].to_string())
        .set("heartbeat.interval.ms", "1000")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("debug", "cgrp")
        .set_log_level(RDKafkaLogLevel::Debug);
    if let Some(id) = cfg["instance_id"].as_str() {
        cc.set("group.instance.id", id);
    }
    for kv in cfg["extra"].as_array().unwrap() {
        cc.set(kv[0].as_str().unwrap(), kv[1].as_str().unwrap());
    }
    let c: BaseConsumer<MemberCtx> = cc.create_with_context(MemberCtx).expect("member");
    c.subscribe(&[&s("topic")]).expect("subscribe");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let mut last: Option<Vec<i32>> = None;
    // Bounded even if the parent vanishes without closing stdin.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline {
        if let Some(r) = c.poll(Duration::from_millis(100)) {
            match r {
                Ok(m) => emit(json!({"ev": "msg", "p": m.partition(), "o": m.offset()})),
                Err(e) => emit(json!({"ev": "error", "err": e.to_string()})),
            }
        }
        if let Ok(a) = c.assignment() {
            let now = parts_of(&a);
            if last.as_ref() != Some(&now) {
                emit(json!({"ev": "assignment", "parts": now}));
                last = Some(now);
            }
        }
    }
    let _ = c.commit_consumer_state(CommitMode::Sync);
    drop(c);
    emit(json!({"ev": "closed"}));
}

/// Start an rdkafka member: this test binary re-run as `CHILD_TEST` only.
pub fn spawn_rdkafka_member(name: &str, cfg: &MemberCfg) -> ClientProcess {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([
        CHILD_TEST,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(MEMBER_ENV, cfg.to_json().to_string());
    ClientProcess::spawn(name, cmd, None)
}

/// Start a kafka-python member (`python/group_member.py`).
pub fn spawn_python_member(name: &str, bootstrap: &str, topic: &str, group: &str) -> ClientProcess {
    let cmd = python_command("group_member.py", &[bootstrap, topic, group, name]);
    ClientProcess::spawn(name, cmd, None)
}

/// Start a Java console consumer in group `group` (prints `Partition:P\tOffset:O\t..`).
pub fn spawn_java_member(name: &str, bootstrap: &str, topic: &str, group: &str) -> ClientProcess {
    let (cmd, dir) = kafka_tool_command(
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--formatter-property",
            "print.partition=true",
            "--formatter-property",
            "print.offset=true",
            "--consumer-property",
            "session.timeout.ms=6000",
            "--consumer-property",
            "heartbeat.interval.ms=1000",
            "--consumer-property",
            "auto.commit.interval.ms=200",
            "--consumer-property",
            &format!("client.id={name}"),
        ],
    );
    ClientProcess::spawn(name, cmd, Some(dir))
}

/// The JSON of an `@@ ` event line. libtest prints `test group_member_child ... `
/// without a newline before the child's first output, so the marker may be mid-line.
fn event_json(l: &str) -> Option<&str> {
    l.find("@@ ").map(|i| &l[i + 3..])
}

/// The `@@` events a member printed so far.
pub fn events(p: &ClientProcess) -> Vec<Value> {
    p.stdout_lines()
        .iter()
        .filter_map(|l| event_json(l))
        .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("bad event {j:?}: {e}")))
        .collect()
}

fn ints(v: &Value) -> Vec<i32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect()
}

/// A member's latest full assignment (None before its first one).
pub fn assignment(p: &ClientProcess) -> Option<Vec<i32>> {
    events(p)
        .iter()
        .rev()
        .find(|e| e["ev"] == "assignment")
        .map(|e| ints(&e["parts"]))
}

/// (partition, offset) of every message a member consumed: `@@` msg events, or the
/// console consumer's `Partition:P\tOffset:O\t...` lines.
pub fn consumed(p: &ClientProcess) -> BTreeSet<(i32, i64)> {
    let mut out = BTreeSet::new();
    for l in p.stdout_lines() {
        if let Some(j) = event_json(&l) {
            let e: Value = serde_json::from_str(j).unwrap();
            if e["ev"] == "msg" {
                out.insert((e["p"].as_i64().unwrap() as i32, e["o"].as_i64().unwrap()));
            }
        } else if let Some(rest) = l.strip_prefix("Partition:") {
            let mut f = rest.split('\t');
            let part = f.next().and_then(|x| x.parse().ok());
            let off = f
                .next()
                .and_then(|x| x.strip_prefix("Offset:"))
                .and_then(|x| x.parse().ok());
            if let (Some(part), Some(off)) = (part, off) {
                out.insert((part, off));
            }
        }
    }
    out
}

/// Wait until the latest assignments of `members` split partitions `0..n` exactly (every
/// partition owned by exactly one member, each member owning `per_member` if given).
/// Returns partition -> member index.
pub fn wait_exact_cover(
    what: &str,
    members: &[&ClientProcess],
    n: i32,
    per_member: Option<usize>,
    timeout: Duration,
) -> BTreeMap<i32, usize> {
    wait_until(what, timeout, || {
        let mut owner: BTreeMap<i32, usize> = BTreeMap::new();
        let mut all = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let a = assignment(m).unwrap_or_default();
            if let Some(k) = per_member {
                if a.len() != k {
                    return Err(format!("{}: {a:?}; all: {all:?}", m.name()));
                }
            }
            for p in &a {
                if owner.insert(*p, i).is_some() {
                    return Err(format!("partition {p} owned twice; {}: {a:?}", m.name()));
                }
            }
            all.push((m.name().to_string(), a));
        }
        if owner.keys().copied().eq(0..n) {
            Ok(owner)
        } else {
            Err(format!("assignments {all:?}"))
        }
    })
}

/// Committed offsets of `group` for partitions `0..n` of `topic` (OffsetFetch through an
/// rdkafka consumer that never joins); `None` where nothing is committed.
pub fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    n: i32,
) -> Result<Vec<Option<i64>>, String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let mut out = vec![None; n as usize];
    for e in got.elements() {
        if let Some(err) = e.error().err() {
            return Err(format!("partition {}: {err}", e.partition()));
        }
        out[e.partition() as usize] = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
    }
    Ok(out)
}

/// Wait until the group's committed offsets equal the log end offsets `leo`.
pub fn wait_committed_eq(
    bootstrap: &str,
    group: &str,
    topic: &str,
    leo: &[i64],
    timeout: Duration,
) {
    let want: Vec<Option<i64>> = leo.iter().map(|o| Some(*o)).collect();
    wait_until(
        &format!("committed offsets of {group} == log end offsets {leo:?}"),
        timeout,
        || {
            let got = committed(bootstrap, group, topic, leo.len() as i32)?;
            if got == want {
                Ok(())
            } else {
                Err(format!("committed {got:?}"))
            }
        },
    );
}

/// Wait until the union of what `members` consumed covers every offset below `leo[p]`.
pub fn wait_all_consumed(what: &str, members: &[&ClientProcess], leo: &[i64], timeout: Duration) {
    wait_until(what, timeout, || {
        let mut union = BTreeSet::new();
        for m in members {
            union.extend(consumed(m));
        }
        let missing: Vec<(usize, i64)> = leo
            .iter()
            .enumerate()
            .map(|(p, &end)| {
                (
                    p,
                    (0..end)
                        .filter(|o| !union.contains(&(p as i32, *o)))
                        .count() as i64,
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing per partition: {missing:?}"))
        }
    });
}

/// One row of `kafka-consumer-groups --describe --group G` (offsets view).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DescribeRow {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// `-` when nothing is committed.
    pub current_offset: String,
    pub log_end_offset: String,
    pub lag: String,
    pub consumer_id: String,
    pub host: String,
    pub client_id: String,
}

/// Run `kafka-consumer-groups --bootstrap-server B <args>` (success required).
pub fn groups_tool(bootstrap: &str, args: &[&str]) -> String {
    let mut all = vec!["--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    let out = kafka_tool(GROUPS_TOOL, &all, None);
    out.assert_success();
    out.stdout
}

/// Parse the table printed by `--describe --group G` (header GROUP TOPIC PARTITION ...).
pub fn parse_describe(stdout: &str) -> Vec<DescribeRow> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for l in stdout.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() == Some(&"GROUP") && f.get(1) == Some(&"TOPIC") {
            assert_eq!(
                f,
                [
                    "GROUP",
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "CONSUMER-ID",
                    "HOST",
                    "CLIENT-ID"
                ],
                "describe header"
            );
            in_table = true;
            continue;
        }
        if !in_table || f.is_empty() {
            continue;
        }
        assert_eq!(f.len(), 9, "describe row {l:?} in:\n{stdout}");
        rows.push(DescribeRow {
            group: f[0].into(),
            topic: f[1].into(),
            partition: f[2].parse().unwrap(),
            current_offset: f[3].into(),
            log_end_offset: f[4].into(),
            lag: f[5].into(),
            consumer_id: f[6].into(),
            host: f[7].into(),
            client_id: f[8].into(),
        });
    }
    rows.sort();
    rows
}

/// Describe the group's offsets view (bounded wait until the tool prints a table).
pub fn describe(bootstrap: &str, group: &str) -> Vec<DescribeRow> {
    parse_describe(&groups_tool(bootstrap, &["--describe", "--group", group]))
}

/// Kill the child's member without any goodbye, for tests: SIGKILL.
pub fn crash(m: &mut ClientProcess) {
    m.kill9();
}

/// Like [`describe`] but never panics (for polling during rebalances).
pub fn try_describe(bootstrap: &str, group: &str) -> Result<Vec<DescribeRow>, String> {
    let out = kafka_tool(
        GROUPS_TOOL,
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
        ],
        None,
    );
    if !out.status.success() {
        return Err(out.describe());
    }
    Ok(parse_describe(&out.stdout))
}

/// Produce `range` as keyed messages (`key-<i % 97>`) to `topic`, all acked.
pub fn produce_keyed(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) {
    let (p, rec) = super::producer(bootstrap, &[]);
    let n = range.len();
    for i in range {
        let key = format!("key-{}", i % 97);
        let value = format!("value-{i}");
        super::send(
            &p,
            rdkafka::producer::BaseRecord::with_opaque_to(topic, i)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
    }
    super::flush_all_ok(&p, &rec, n);
}

/// Log end offsets (high watermarks) of every partition of `topic`.
pub fn log_end_offsets(bootstrap: &str, topic: &str) -> Vec<i64> {
    super::watermarks(&super::consumer(bootstrap), topic)
        .into_iter()
        .map(|(_, h)| h)
        .collect()
}
