//! Unit tests of the group coordinator with a simulated clock.

use super::coordinator::*;
use super::records;
use super::*;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::collections::HashMap;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn subscription(topics: &[&str]) -> Bytes {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = topics.iter().map(|t| s(t)).collect();
    let mut b = BytesMut::new();
    b.put_i16(1);
    sub.encode(&mut b, 1).unwrap();
    b.freeze()
}

fn api_of(r: &GroupRequest) -> &'static str {
    match r {
        GroupRequest::JoinGroup(_) => "join",
        GroupRequest::SyncGroup(_) => "sync",
        GroupRequest::Heartbeat(_) => "hb",
        GroupRequest::LeaveGroup(_) => "leave",
        GroupRequest::OffsetCommit(_) => "commit",
        GroupRequest::TxnOffsetCommit(_) => "txncommit",
        GroupRequest::OffsetFetch(_) => "fetch",
        GroupRequest::OffsetDelete(_) => "odel",
        GroupRequest::DescribeGroups(_) => "describe",
        GroupRequest::ListGroups(_) => "list",
        GroupRequest::DeleteGroups(_) => "delete",
    }
}

/// Drives a coordinator: keeps the runtime's timers, checks every response is for an
/// outstanding request, answered once, and encodes at its request's version.
struct H {
    c: GroupCoordinator,
    now: i64,
    next: u64,
    timers: HashMap<TimerKey, i64>,
    outstanding: HashMap<u64, (&'static str, i16)>,
    answers: HashMap<u64, ResponseKind>,
    records: Vec<Record>,
    /// What the runtime would write, batch by batch, in call order.
    log: Vec<Written>,
}

/// One batch of the shard's partition.
#[derive(Debug, Clone)]
enum Written {
    Batch(Option<(i64, i16)>, Vec<Record>),
    Marker(TxnMarker),
}

impl H {
    fn new() -> H {
        H::with(GroupConfig::default())
    }
    fn with(config: GroupConfig) -> H {
        H {
            c: GroupCoordinator::new(config),
            now: 1_000_000,
            next: 1,
            timers: HashMap::new(),
            outstanding: HashMap::new(),
            answers: HashMap::new(),
            records: Vec::new(),
            log: Vec::new(),
        }
    }
    fn apply(&mut self, fx: Effects) {
        for (k, d) in fx.timers {
            match d {
                Some(d) => self.timers.insert(k, d),
                None => self.timers.remove(&k),
            };
        }
        assert!(fx.marker.is_none() || fx.records.is_empty());
        assert!(fx.producer.is_none() || !fx.records.is_empty());
        if let Some(m) = fx.marker {
            self.log.push(Written::Marker(m));
        }
        if !fx.records.is_empty() {
            self.log
                .push(Written::Batch(fx.producer, fx.records.clone()));
        }
        self.records.extend(fx.records);
        for (rid, resp) in fx.responses {
            let (api, v) = self
                .outstanding
                .remove(&rid)
                .unwrap_or_else(|| panic!("response for unknown or answered request {rid}"));
            let kind = match &resp {
                ResponseKind::JoinGroup(_) => "join",
                ResponseKind::SyncGroup(_) => "sync",
                ResponseKind::Heartbeat(_) => "hb",
                ResponseKind::LeaveGroup(_) => "leave",
                ResponseKind::OffsetCommit(_) => "commit",
                ResponseKind::TxnOffsetCommit(_) => "txncommit",
                ResponseKind::OffsetFetch(_) => "fetch",
                ResponseKind::OffsetDelete(_) => "odel",
                ResponseKind::DescribeGroups(_) => "describe",
                ResponseKind::ListGroups(_) => "list",
                ResponseKind::DeleteGroups(_) => "delete",
                _ => "other",
            };
            assert_eq!(api, kind, "response kind for request {rid}");
            let mut buf = BytesMut::new();
            resp.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("{api} v{v} response does not encode: {e} {resp:?}"));
            self.answers.insert(rid, resp);
        }
    }
    fn send(&mut self, version: i16, req: GroupRequest) -> u64 {
        let rid = self.next;
        self.next += 1;
        self.outstanding.insert(rid, (api_of(&req), version));
        let meta = RequestMeta {
            client_id: "cli".into(),
            client_host: "/127.0.0.1".into(),
        };
        let fx = self
            .c
            .handle_with_meta(self.now, rid, version, req, &meta, &|t, p| {
                t != "missing" && p < 10
            });
        self.apply(fx);
        rid
    }
    /// Moves the clock, firing due timers in deadline order.
    fn advance(&mut self, ms: i64) {
        let target = self.now + ms;
        loop {
            let due = self
                .timers
                .iter()
                .filter(|(_, d)| **d <= target)
                .min_by_key(|(_, d)| **d)
                .map(|(k, d)| (k.clone(), *d));
            let Some((k, d)) = due else { break };
            self.timers.remove(&k);
            self.now = self.now.max(d);
            let fx = self.c.on_timer(self.now, k);
            self.apply(fx);
        }
        self.now = target;
    }
    fn answered(&self, rid: u64) -> bool {
        self.answers.contains_key(&rid)
    }
    fn join_resp(&self, rid: u64) -> JoinGroupResponse {
        match self.answers.get(&rid) {
            Some(ResponseKind::JoinGroup(r)) => r.clone(),
            other => panic!("no join response for {rid}: {other:?}"),
        }
    }
    fn sync_resp(&self, rid: u64) -> SyncGroupResponse {
        match self.answers.get(&rid) {
            Some(ResponseKind::SyncGroup(r)) => r.clone(),
            other => panic!("no sync response for {rid}: {other:?}"),
        }
    }
    fn error_of(&self, rid: u64) -> i16 {
        match self.answers.get(&rid) {
            Some(ResponseKind::JoinGroup(r)) => r.error_code,
            Some(ResponseKind::SyncGroup(r)) => r.error_code,
            Some(ResponseKind::Heartbeat(r)) => r.error_code,
            Some(ResponseKind::LeaveGroup(r)) => r.error_code,
            other => panic!("no simple response for {rid}: {other:?}"),
        }
    }

    // ---- request helpers ----

    fn join_v(
        &mut self,
        v: i16,
        group: &str,
        member: &str,
        inst: Option<&str>,
        topics: &[&str],
    ) -> u64 {
        let mut r = JoinGroupRequest::default();
        r.group_id = GroupId(s(group));
        r.session_timeout_ms = SESSION;
        r.rebalance_timeout_ms = REBALANCE;
        r.member_id = s(member);
        r.group_instance_id = inst.map(s);
        r.protocol_type = s("consumer");
        let mut p = JoinGroupRequestProtocol::default();
        p.name = s("range");
        p.metadata = subscription(topics);
        r.protocols = vec![p];
        self.send(v, GroupRequest::JoinGroup(r))
    }
    fn join(&mut self, group: &str, member: &str) -> u64 {
        self.join_v(5, group, member, None, &["t1"])
    }
    fn sync(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        assign: &[(&str, &[u8])],
    ) -> u64 {
        let mut r = SyncGroupRequest::default();
        r.group_id = GroupId(s(group));
        r.member_id = s(member);
        r.generation_id = generation;
        r.assignments = assign
            .iter()
            .map(|(m, a)| {
                let mut x = SyncGroupRequestAssignment::default();
                x.member_id = s(m);
                x.assignment = Bytes::copy_from_slice(a);
                x
            })
            .collect();
        self.send(3, GroupRequest::SyncGroup(r))
    }
    fn heartbeat(&mut self, group: &str, member: &str, generation: i32) -> i16 {
        self.heartbeat_inst(group, member, None, generation)
    }
    fn heartbeat_inst(
        &mut self,
        group: &str,
        member: &str,
        inst: Option<&str>,
        generation: i32,
    ) -> i16 {
        let mut r = HeartbeatRequest::default();
        r.group_id = GroupId(s(group));
        r.member_id = s(member);
        r.group_instance_id = inst.map(s);
        r.generation_id = generation;
        let rid = self.send(3, GroupRequest::Heartbeat(r));
        self.error_of(rid)
    }
    fn leave(&mut self, group: &str, members: &[(&str, Option<&str>)]) -> LeaveGroupResponse {
        let mut r = LeaveGroupRequest::default();
        r.group_id = GroupId(s(group));
        r.members = members
            .iter()
            .map(|(m, i)| {
                let mut x = MemberIdentity::default();
                x.member_id = s(m);
                x.group_instance_id = i.map(s);
                x
            })
            .collect();
        let rid = self.send(3, GroupRequest::LeaveGroup(r));
        match self.answers.get(&rid) {
            Some(ResponseKind::LeaveGroup(r)) => r.clone(),
            _ => panic!("no leave response"),
        }
    }
    fn commit_v(
        &mut self,
        v: i16,
        group: &str,
        member: &str,
        generation: i32,
        parts: &[(&str, i32, i64)],
        meta: &str,
    ) -> Vec<i16> {
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(s(group));
        r.member_id = s(member);
        r.generation_id_or_member_epoch = generation;
        for (t, p, o) in parts {
            let mut tt = OffsetCommitRequestTopic::default();
            tt.name = TopicName(s(t));
            let mut pp = OffsetCommitRequestPartition::default();
            pp.partition_index = *p;
            pp.committed_offset = *o;
            pp.committed_metadata = Some(s(meta));
            if v >= 6 {
                pp.committed_leader_epoch = 7;
            }
            tt.partitions.push(pp);
            r.topics.push(tt);
        }
        let rid = self.send(v, GroupRequest::OffsetCommit(r));
        match self.answers.get(&rid) {
            Some(ResponseKind::OffsetCommit(r)) => r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            _ => panic!("no commit response"),
        }
    }
    fn commit(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        parts: &[(&str, i32, i64)],
    ) -> Vec<i16> {
        self.commit_v(8, group, member, generation, parts, "")
    }
    /// v7 fetch: (topic, partition, offset, leader epoch, metadata).
    fn fetch(
        &mut self,
        group: &str,
        topics: Option<&[(&str, i32)]>,
    ) -> Vec<(String, i32, i64, i32)> {
        let mut r = OffsetFetchRequest::default();
        r.group_id = GroupId(s(group));
        r.topics = topics.map(|ts| {
            ts.iter()
                .map(|(t, p)| {
                    let mut x = OffsetFetchRequestTopic::default();
                    x.name = TopicName(s(t));
                    x.partition_indexes = vec![*p];
                    x
                })
                .collect()
        });
        let rid = self.send(7, GroupRequest::OffsetFetch(r));
        match self.answers.get(&rid) {
            Some(ResponseKind::OffsetFetch(r)) => r
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        (
                            t.name.0.to_string(),
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                        )
                    })
                })
                .collect(),
            _ => panic!("no fetch response"),
        }
    }
    fn describe(&mut self, v: i16, group: &str) -> DescribeGroupsResponse {
        let mut r = DescribeGroupsRequest::default();
        r.groups = vec![GroupId(s(group))];
        let rid = self.send(v, GroupRequest::DescribeGroups(r));
        match self.answers.get(&rid) {
            Some(ResponseKind::DescribeGroups(r)) => r.clone(),
            _ => panic!("no describe response"),
        }
    }
    fn state(&mut self, group: &str) -> String {
        self.describe(5, group).groups[0].group_state.to_string()
    }
    fn members(&mut self, group: &str) -> Vec<String> {
        self.describe(5, group).groups[0]
            .members
            .iter()
            .map(|m| m.member_id.to_string())
            .collect()
    }

    /// First member through KIP-394 and the initial delay to Stable; returns
    /// (member id, generation).
    fn stable_one(&mut self, group: &str, inst: Option<&str>) -> (String, i32) {
        let r0 = self.join_v(5, group, "", inst, &["t1"]);
        let id = if inst.is_none() {
            let resp = self.join_resp(r0);
            assert_eq!(resp.error_code, MEMBER_ID_REQUIRED);
            let id = resp.member_id.to_string();
            let r1 = self.join_v(5, group, &id, None, &["t1"]);
            assert!(!self.answered(r1));
            self.advance(3_000);
            r1
        } else {
            self.advance(3_000);
            r0
        };
        let resp = self.join_resp(id);
        assert_eq!(resp.error_code, NONE);
        let mid = resp.member_id.to_string();
        let gen = resp.generation_id;
        let rs = self.sync(group, &mid, gen, &[(&mid, b"A1")]);
        assert_eq!(self.sync_resp(rs).assignment.as_ref(), b"A1");
        (mid, gen)
    }

    /// A second (v3, no KIP-394) member joins a Stable group with `a`; both rejoin and
    /// sync. Returns (b's id, new generation).
    fn add_second(&mut self, group: &str, a: &str) -> (String, i32) {
        let rb = self.join_v(3, group, "", None, &["t1"]);
        assert!(!self.answered(rb));
        let ra = self.join(group, a);
        let ja = self.join_resp(ra);
        let jb = self.join_resp(rb);
        let b = jb.member_id.to_string();
        assert_eq!(ja.generation_id, jb.generation_id);
        assert_eq!(ja.leader.as_str(), a);
        assert_eq!(ja.members.len(), 2);
        assert!(jb.members.is_empty());
        let gen = ja.generation_id;
        let sb_ = self.sync(group, &b, gen, &[]);
        assert!(!self.answered(sb_));
        let sa = self.sync(group, a, gen, &[(a, b"A"), (&b, b"B")]);
        assert_eq!(self.sync_resp(sa).assignment.as_ref(), b"A");
        assert_eq!(self.sync_resp(sb_).assignment.as_ref(), b"B");
        (b, gen)
    }
}

#[test]
fn first_join_member_id_required_delay_then_stable() {
    let mut h = H::new();
    let r0 = h.join("g", "");
    let j0 = h.join_resp(r0);
    assert_eq!(j0.error_code, MEMBER_ID_REQUIRED);
    assert!(j0.member_id.starts_with("cli-"));
    let id = j0.member_id.to_string();
    let r1 = h.join("g", &id);
    assert!(!h.answered(r1));
    assert_eq!(h.state("g"), "PreparingRebalance");
    h.advance(2_999);
    assert!(!h.answered(r1));
    h.advance(1);
    let j1 = h.join_resp(r1);
    assert_eq!((j1.error_code, j1.generation_id), (NONE, 1));
    assert_eq!(j1.leader.as_str(), id);
    assert_eq!(j1.members.len(), 1);
    assert_eq!(j1.protocol_name.as_deref(), Some("range"));
    assert_eq!(h.state("g"), "CompletingRebalance");
    let before = h.records.len();
    let rs = h.sync("g", &id, 1, &[(&id, b"xyz")]);
    assert_eq!(h.sync_resp(rs).assignment.as_ref(), b"xyz");
    assert_eq!(
        h.records.len(),
        before + 1,
        "group metadata written with the sync"
    );
    assert_eq!(h.state("g"), "Stable");
    assert_eq!(h.heartbeat("g", &id, 1), NONE);
}

#[test]
fn second_member_triggers_rebalance_and_both_rejoin() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", None);
    let rb = h.join_v(3, "g", "", None, &["t1"]);
    assert_eq!(h.state("g"), "PreparingRebalance");
    assert_eq!(h.heartbeat("g", &a, gen), REBALANCE_IN_PROGRESS);
    assert!(!h.answered(rb));
    let ra = h.join("g", &a);
    assert_eq!(h.join_resp(ra).generation_id, gen + 1);
    assert_eq!(h.join_resp(rb).generation_id, gen + 1);
    // Heartbeats in CompletingRebalance are fine (Kafka).
    assert_eq!(h.heartbeat("g", &a, gen + 1), NONE);
    assert_eq!(h.members("g").len(), 2);
}

#[test]
fn full_two_member_sync() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    let (b, gen) = h.add_second("g", &a);
    assert_eq!(h.heartbeat("g", &b, gen), NONE);
    assert_eq!(h.state("g"), "Stable");
}

#[test]
fn session_timeout_removes_member_and_rebalances() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    let (b, gen) = h.add_second("g", &a);
    for _ in 0..2 {
        h.advance(4_000);
        assert_eq!(h.heartbeat("g", &a, gen), NONE);
    }
    h.advance(2_000);
    // b never heartbeated: removed after 10s, rebalance.
    assert_eq!(h.heartbeat("g", &b, gen), UNKNOWN_MEMBER_ID);
    assert_eq!(h.heartbeat("g", &a, gen), REBALANCE_IN_PROGRESS);
    let ra = h.join("g", &a);
    let j = h.join_resp(ra);
    assert_eq!((j.generation_id, j.members.len()), (gen + 1, 1));
}

#[test]
fn session_timeout_of_last_member_empties_group() {
    let mut h = H::new();
    let (_a, gen) = h.stable_one("g", None);
    let n = h.records.len();
    h.advance(SESSION as i64);
    assert_eq!(h.state("g"), "Empty");
    assert_eq!(h.records.len(), n + 1, "empty group metadata written");
    let v = records::decode_group_value(h.records.last().unwrap().value.as_ref().unwrap()).unwrap();
    assert_eq!(v.generation, gen + 1);
    assert!(v.members.is_empty());
}

/// The runtime fires timers on the monotonic clock and gives the core
/// `runtime::timer_now_ms`: a wall clock stepped back an hour after the session timer was
/// armed must not make the core ignore the fire (nothing would re-arm it).
#[test]
fn backward_wall_clock_step_still_expires_the_session() {
    let mut h = H::new();
    let (_a, _gen) = h.stable_one("g", None);
    let mut armed: Vec<(TimerKey, i64)> = h.timers.drain().collect();
    armed.sort_by_key(|(_, deadline)| *deadline);
    let session_deadline = armed
        .iter()
        .filter(|(key, _)| key.as_str().starts_with("session/"))
        .map(|(_, deadline)| *deadline)
        .max()
        .expect("a session timer");
    // By the monotonic clock the session deadline has passed; the wall clock reads an
    // hour earlier.
    let wall_now = session_deadline - 3_600_000;
    for (key, deadline) in armed.into_iter().filter(|(_, d)| *d <= session_deadline) {
        let fx = h.c.on_timer(
            crate::coordinator::runtime::timer_now_ms(wall_now, deadline),
            key,
        );
        h.apply(fx);
    }
    assert_eq!(h.state("g"), "Empty");
}

#[test]
fn rebalance_timeout_removes_member_that_did_not_rejoin() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    let (b, gen) = h.add_second("g", &a);
    let rc = h.join_v(3, "g", "", None, &["t1"]);
    let ra = h.join("g", &a);
    // b keeps heartbeating (alive) but never rejoins.
    let mut t = 0;
    while t < REBALANCE as i64 - 5_000 {
        h.advance(5_000);
        t += 5_000;
        assert_eq!(h.heartbeat("g", &b, gen), REBALANCE_IN_PROGRESS);
    }
    assert!(!h.answered(ra));
    h.advance(5_000);
    let j = h.join_resp(ra);
    assert_eq!(
        (j.error_code, j.generation_id, j.members.len()),
        (NONE, gen + 1, 2)
    );
    assert_eq!(h.join_resp(rc).error_code, NONE);
    assert_eq!(h.heartbeat("g", &b, gen + 1), UNKNOWN_MEMBER_ID);
}

#[test]
fn leader_leaves_new_leader_elected() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    let (b, gen) = h.add_second("g", &a);
    let l = h.leave("g", &[(&a, None)]);
    assert_eq!((l.error_code, l.members[0].error_code), (NONE, NONE));
    assert_eq!(h.heartbeat("g", &b, gen), REBALANCE_IN_PROGRESS);
    let rb = h.join("g", &b);
    let j = h.join_resp(rb);
    assert_eq!(j.leader.as_str(), b);
    assert_eq!(j.members.len(), 1);
}

#[test]
fn leave_unknown_member_and_v0_layout() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    let l = h.leave("g", &[("nobody", None), (&a, None)]);
    assert_eq!(l.members[0].error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(l.members[1].error_code, NONE);
    assert_eq!(h.state("g"), "Empty");
    let mut r = LeaveGroupRequest::default();
    r.group_id = GroupId(s("g"));
    r.member_id = s("nobody");
    let rid = h.send(1, GroupRequest::LeaveGroup(r));
    assert_eq!(h.error_of(rid), UNKNOWN_MEMBER_ID);
    let l = h.leave("nogroup", &[("x", None)]);
    assert_eq!((l.error_code, l.members.len()), (UNKNOWN_MEMBER_ID, 0));
}

#[test]
fn sync_errors_stale_generation_unknown_member_rebalance() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", None);
    let r = h.sync("g", &a, gen - 1, &[]);
    assert_eq!(h.error_of(r), ILLEGAL_GENERATION);
    let r = h.sync("g", "who", gen, &[]);
    assert_eq!(h.error_of(r), UNKNOWN_MEMBER_ID);
    let r = h.sync("nog", "who", gen, &[]);
    assert_eq!(h.error_of(r), UNKNOWN_MEMBER_ID);
    h.join_v(3, "g", "", None, &["t1"]);
    let r = h.sync("g", &a, gen, &[]);
    assert_eq!(h.error_of(r), REBALANCE_IN_PROGRESS);
    // v5 protocol consistency.
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", None);
    let mut req = SyncGroupRequest::default();
    req.group_id = GroupId(s("g"));
    req.member_id = s(&a);
    req.generation_id = gen;
    req.protocol_type = Some(s("connect"));
    req.protocol_name = Some(s("range"));
    let rid = h.send(5, GroupRequest::SyncGroup(req));
    assert_eq!(h.error_of(rid), INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn heartbeat_errors() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", None);
    assert_eq!(h.heartbeat("g", "nobody", gen), UNKNOWN_MEMBER_ID);
    assert_eq!(h.heartbeat("nog", "nobody", gen), UNKNOWN_MEMBER_ID);
    assert_eq!(h.heartbeat("g", &a, gen + 5), ILLEGAL_GENERATION);
}

#[test]
fn join_errors() {
    let mut h = H::new();
    let (_a, _) = h.stable_one("g", None);
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(s("g"));
    r.session_timeout_ms = SESSION;
    r.rebalance_timeout_ms = REBALANCE;
    r.protocol_type = s("connect");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    r.protocols = vec![p];
    let rid = h.send(5, GroupRequest::JoinGroup(r.clone()));
    assert_eq!(h.error_of(rid), INCONSISTENT_GROUP_PROTOCOL);
    r.session_timeout_ms = 10;
    let rid = h.send(5, GroupRequest::JoinGroup(r.clone()));
    assert_eq!(h.error_of(rid), INVALID_SESSION_TIMEOUT);
    r.group_id = GroupId(s(""));
    let rid = h.send(5, GroupRequest::JoinGroup(r.clone()));
    assert_eq!(h.error_of(rid), INVALID_GROUP_ID);
    let rid = h.join("nog", "some-member");
    assert_eq!(h.error_of(rid), UNKNOWN_MEMBER_ID);
    // A failed join on a new group leaves nothing behind.
    assert_eq!(h.state("nog"), "Dead");
}

#[test]
fn duplicate_join_answers_the_parked_one() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    let (_b, _) = h.add_second("g", &a);
    let r1 = h.join("g", &a);
    assert!(!h.answered(r1));
    let r2 = h.join("g", &a);
    assert_eq!(h.error_of(r1), REBALANCE_IN_PROGRESS);
    assert!(!h.answered(r2));
}

#[test]
fn static_member_rejoin_keeps_generation_and_assignment() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", Some("i1"));
    assert!(a.starts_with("i1-"));
    let r = h.join_v(5, "g", "", Some("i1"), &["t1"]);
    let j = h.join_resp(r);
    assert_eq!((j.error_code, j.generation_id), (NONE, gen));
    let a2 = j.member_id.to_string();
    assert_ne!(a, a2);
    assert_eq!(h.state("g"), "Stable");
    let rs = h.sync("g", &a2, gen, &[]);
    assert_eq!(h.sync_resp(rs).assignment.as_ref(), b"A1");
    // The old incarnation is fenced.
    assert_eq!(
        h.heartbeat_inst("g", &a, Some("i1"), gen),
        FENCED_INSTANCE_ID
    );
    let r = h.join_v(5, "g", &a, Some("i1"), &["t1"]);
    assert_eq!(h.error_of(r), FENCED_INSTANCE_ID);
    assert_eq!(h.heartbeat_inst("g", &a2, Some("i1"), gen), NONE);
    // Static leave by instance id.
    let l = h.leave("g", &[("", Some("i1"))]);
    assert_eq!(l.members[0].error_code, NONE);
    assert_eq!(h.state("g"), "Empty");
    // v9 leader rejoin: members with skip_assignment.
    let mut h = H::new();
    let (_a, gen) = h.stable_one("g", Some("i1"));
    let r = h.join_v(9, "g", "", Some("i1"), &["t1"]);
    let j = h.join_resp(r);
    assert_eq!(j.generation_id, gen);
    assert!(j.skip_assignment);
    assert_eq!(j.members.len(), 1);
}

#[test]
fn group_max_size() {
    let mut h = H::with(GroupConfig {
        max_size: 1,
        ..GroupConfig::default()
    });
    let (_a, _) = h.stable_one("g", None);
    let r = h.join("g", "");
    assert_eq!(h.error_of(r), GROUP_MAX_SIZE_REACHED);
}

#[test]
fn pending_member_id_expires() {
    let mut h = H::new();
    let r = h.join("g", "");
    let id = h.join_resp(r).member_id.to_string();
    h.advance(SESSION as i64);
    let r = h.join("g", &id);
    assert_eq!(h.error_of(r), UNKNOWN_MEMBER_ID);
}

#[test]
fn initial_delay_extends_while_members_arrive() {
    let mut h = H::new();
    let ra = h.join_v(3, "g", "", None, &["t1"]);
    h.advance(2_000);
    let rb = h.join_v(3, "g", "", None, &["t1"]);
    h.advance(1_000); // first delay over, but b arrived: extended by 3s
    assert!(!h.answered(ra));
    h.advance(3_000);
    assert!(h.answered(ra) && h.answered(rb));
    assert_eq!(h.join_resp(ra).members.len(), 2);
}

#[test]
fn leader_not_syncing_removes_members_after_rebalance_timeout() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    let rb = h.join_v(3, "g", "", None, &["t1"]);
    let ra = h.join("g", &a);
    let gen = h.join_resp(ra).generation_id;
    let b = h.join_resp(rb).member_id.to_string();
    let sb_ = h.sync("g", &b, gen, &[]);
    // a (leader) never syncs; keep a's session alive, it still misses the sync deadline.
    let mut t = 0;
    while t < REBALANCE as i64 {
        h.advance(5_000);
        t += 5_000;
        if h.answered(sb_) {
            break;
        }
        h.heartbeat("g", &a, gen);
    }
    assert_eq!(h.error_of(sb_), REBALANCE_IN_PROGRESS);
    assert_eq!(h.heartbeat("g", &a, gen), UNKNOWN_MEMBER_ID);
}

#[test]
fn offset_commit_and_fetch_member_and_simple() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", None);
    assert_eq!(
        h.commit("g", &a, gen, &[("t1", 0, 42), ("t1", 1, 43)]),
        vec![NONE, NONE]
    );
    assert_eq!(
        h.commit("g", &a, gen + 1, &[("t1", 0, 1)]),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        h.commit("g", "who", gen, &[("t1", 0, 1)]),
        vec![UNKNOWN_MEMBER_ID]
    );
    assert_eq!(
        h.commit("g", "", -1, &[("t1", 0, 1)]),
        vec![UNKNOWN_MEMBER_ID]
    );
    assert_eq!(
        h.commit("g", &a, gen, &[("missing", 0, 1)]),
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    let big = "x".repeat(4097);
    assert_eq!(
        h.commit_v(8, "g", &a, gen, &[("t1", 0, 1)], &big),
        vec![OFFSET_METADATA_TOO_LARGE]
    );
    assert_eq!(
        h.fetch("g", Some(&[("t1", 0), ("t1", 5), ("t2", 0)])),
        vec![
            ("t1".to_string(), 0, 42, 7),
            ("t1".to_string(), 5, -1, -1),
            ("t2".to_string(), 0, -1, -1)
        ]
    );
    // Simple consumer: creates an Empty group.
    assert_eq!(h.commit("simple", "", -1, &[("t1", 3, 9)]), vec![NONE]);
    assert_eq!(h.state("simple"), "Empty");
    assert_eq!(h.fetch("simple", None), vec![("t1".to_string(), 3, 9, 7)]);
    // Unknown group with a generation.
    assert_eq!(
        h.commit("nog", "m", 1, &[("t1", 0, 1)]),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        h.commit_v(9, "nog", "m", 1, &[("t1", 0, 1)], ""),
        vec![GROUP_ID_NOT_FOUND]
    );
    // During CompletingRebalance.
    let rb = h.join_v(3, "g", "", None, &["t1"]);
    let ra = h.join("g", &a);
    let gen2 = h.join_resp(ra).generation_id;
    assert!(h.answered(rb));
    assert_eq!(
        h.commit("g", &a, gen2, &[("t1", 0, 1)]),
        vec![REBALANCE_IN_PROGRESS]
    );
    // Old versions: no leader epoch.
    assert_eq!(
        h.commit_v(2, "simple", "", -1, &[("t1", 4, 1)], "m"),
        vec![NONE]
    );
    assert_eq!(
        h.fetch("simple", Some(&[("t1", 4)])),
        vec![("t1".to_string(), 4, 1, -1)]
    );
}

#[test]
fn offset_fetch_all_topics_and_v8_groups_layout() {
    let mut h = H::new();
    h.commit("g", "", -1, &[("t1", 0, 1), ("t2", 1, 2), ("t1", 2, 3)]);
    assert_eq!(
        h.fetch("g", None),
        vec![
            ("t1".to_string(), 0, 1, 7),
            ("t1".to_string(), 2, 3, 7),
            ("t2".to_string(), 1, 2, 7)
        ]
    );
    let mut r = OffsetFetchRequest::default();
    let mut g1 = OffsetFetchRequestGroup::default();
    g1.group_id = GroupId(s("g"));
    g1.topics = None;
    let mut g2 = OffsetFetchRequestGroup::default();
    g2.group_id = GroupId(s("other"));
    let mut t = OffsetFetchRequestTopics::default();
    t.name = TopicName(s("t1"));
    t.partition_indexes = vec![0];
    g2.topics = Some(vec![t]);
    r.groups = vec![g1, g2];
    let rid = h.send(8, GroupRequest::OffsetFetch(r));
    let ResponseKind::OffsetFetch(resp) = &h.answers[&rid] else {
        panic!()
    };
    assert_eq!(resp.groups.len(), 2);
    assert_eq!(resp.groups[0].topics.len(), 2);
    assert_eq!(resp.groups[1].topics[0].partitions[0].committed_offset, -1);
}

#[test]
fn offsets_of_simple_group_expire_after_retention() {
    let mut h = H::with(GroupConfig {
        offsets_retention_ms: 1_000_000,
        ..GroupConfig::default()
    });
    let fx = h.c.loaded(h.now);
    h.apply(fx);
    h.commit("s", "", -1, &[("t1", 0, 5)]);
    h.advance(600_000);
    assert_eq!(h.fetch("s", None).len(), 1);
    let n = h.records.len();
    h.advance(600_000);
    assert_eq!(h.fetch("s", None).len(), 0);
    assert_eq!(h.records[n].value, None);
    assert_eq!(h.state("s"), "Dead");
}

#[test]
fn offsets_of_empty_consumer_group_expire_from_when_it_became_empty() {
    let mut h = H::with(GroupConfig {
        offsets_retention_ms: 1_000_000,
        ..GroupConfig::default()
    });
    let fx = h.c.loaded(h.now);
    h.apply(fx);
    let (a, gen) = h.stable_one("g", None);
    h.commit("g", &a, gen, &[("t1", 0, 5)]);
    // Stays subscribed and alive for a long time: nothing expires.
    for _ in 0..400 {
        h.advance(5_000);
        assert_eq!(h.heartbeat("g", &a, gen), NONE);
    }
    assert_eq!(h.fetch("g", None).len(), 1);
    h.leave("g", &[(&a, None)]);
    assert_eq!(h.state("g"), "Empty");
    h.advance(900_000);
    assert_eq!(h.fetch("g", None).len(), 1);
    h.advance(700_000);
    assert_eq!(h.fetch("g", None).len(), 0);
    assert_eq!(h.records.last().unwrap().key, records::group_key("g"));
    assert_eq!(h.records.last().unwrap().value, None);
}

#[test]
fn delete_groups() {
    let mut h = H::new();
    let (_a, _) = h.stable_one("busy", None);
    h.commit("idle", "", -1, &[("t1", 0, 5), ("t1", 1, 5)]);
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = vec![GroupId(s("busy")), GroupId(s("idle")), GroupId(s("nope"))];
    let n = h.records.len();
    let rid = h.send(2, GroupRequest::DeleteGroups(r));
    let ResponseKind::DeleteGroups(resp) = &h.answers[&rid] else {
        panic!()
    };
    let errs: Vec<i16> = resp.results.iter().map(|x| x.error_code).collect();
    assert_eq!(errs, vec![NON_EMPTY_GROUP, NONE, GROUP_ID_NOT_FOUND]);
    assert_eq!(h.records.len(), n + 3);
    assert!(h.records[n..].iter().all(|r| r.value.is_none()));
    assert_eq!(h.fetch("idle", None).len(), 0);
}

#[test]
fn offset_delete() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", None);
    h.commit("g", &a, gen, &[("t1", 0, 1), ("t2", 0, 1)]);
    let del = |h: &mut H, g: &str, t: &str| {
        let mut r = OffsetDeleteRequest::default();
        r.group_id = GroupId(s(g));
        let mut tt = OffsetDeleteRequestTopic::default();
        tt.name = TopicName(s(t));
        let mut p = OffsetDeleteRequestPartition::default();
        p.partition_index = 0;
        tt.partitions = vec![p];
        r.topics = vec![tt];
        let rid = h.send(0, GroupRequest::OffsetDelete(r));
        let ResponseKind::OffsetDelete(resp) = &h.answers[&rid] else {
            panic!()
        };
        (
            resp.error_code,
            resp.topics.first().map(|t| t.partitions[0].error_code),
        )
    };
    assert_eq!(
        del(&mut h, "g", "t1"),
        (NONE, Some(GROUP_SUBSCRIBED_TO_TOPIC))
    );
    let n = h.records.len();
    assert_eq!(del(&mut h, "g", "t2"), (NONE, Some(NONE)));
    assert_eq!(h.records.len(), n + 1);
    assert_eq!(del(&mut h, "nog", "t2"), (GROUP_ID_NOT_FOUND, None));
    h.leave("g", &[(&a, None)]);
    assert_eq!(del(&mut h, "g", "t1"), (NONE, Some(NONE)));
    assert_eq!(h.fetch("g", None).len(), 0);
}

#[test]
fn describe_and_list_with_filters() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    h.commit("s", "", -1, &[("t1", 0, 1)]);
    let d = h.describe(5, "g");
    let g = &d.groups[0];
    assert_eq!(
        (
            g.group_state.as_str(),
            g.protocol_type.as_str(),
            g.protocol_data.as_str()
        ),
        ("Stable", "consumer", "range")
    );
    assert_eq!(g.members[0].member_id.as_str(), a);
    assert_eq!(g.members[0].client_id.as_str(), "cli");
    assert_eq!(g.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(g.members[0].member_assignment.as_ref(), b"A1");
    let d = h.describe(5, "nope");
    assert_eq!(
        (d.groups[0].group_state.as_str(), d.groups[0].error_code),
        ("Dead", NONE)
    );
    let d = h.describe(6, "nope");
    assert_eq!(d.groups[0].error_code, GROUP_ID_NOT_FOUND);
    let list = |h: &mut H, v: i16, states: &[&str], types: &[&str]| -> Vec<String> {
        let mut r = ListGroupsRequest::default();
        if v >= 4 {
            r.states_filter = states.iter().map(|x| s(x)).collect();
        }
        if v >= 5 {
            r.types_filter = types.iter().map(|x| s(x)).collect();
        }
        let rid = h.send(v, GroupRequest::ListGroups(r));
        let ResponseKind::ListGroups(resp) = &h.answers[&rid] else {
            panic!()
        };
        resp.groups
            .iter()
            .map(|g| g.group_id.0.to_string())
            .collect()
    };
    assert_eq!(list(&mut h, 0, &[], &[]), vec!["g", "s"]);
    assert_eq!(list(&mut h, 4, &["stable"], &[]), vec!["g"]);
    assert_eq!(list(&mut h, 5, &["Empty"], &["classic"]), vec!["s"]);
    assert_eq!(list(&mut h, 5, &[], &["consumer"]), Vec::<String>::new());
}

#[test]
fn replay_restores_groups_and_offsets() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", Some("i1"));
    h.commit("g", &a, gen, &[("t1", 0, 11), ("t1", 1, 12)]);
    h.commit("s", "", -1, &[("t2", 0, 5)]);
    h.commit("gone", "", -1, &[("t2", 0, 5)]);
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = vec![GroupId(s("gone"))];
    h.send(0, GroupRequest::DeleteGroups(r));
    let mut h2 = H::new();
    for rec in &h.records {
        h2.c.replay(&rec.key, rec.value.as_deref()).unwrap();
    }
    let fx = h2.c.loaded(h2.now);
    assert!(fx
        .timers
        .iter()
        .any(|(k, d)| k.as_str().starts_with("session/") && d.is_some()));
    assert!(fx.timers.iter().any(|(k, _)| k.as_str() == "expire"));
    h2.apply(fx);
    assert_eq!(h2.state("g"), "Stable");
    assert_eq!(h2.state("gone"), "Dead");
    assert_eq!(h2.members("g"), vec![a.clone()]);
    assert_eq!(h2.fetch("g", None), h.fetch("g", None));
    assert_eq!(h2.fetch("s", None), h.fetch("s", None));
    assert_eq!(h2.heartbeat_inst("g", &a, Some("i1"), gen), NONE);
    let rs = h2.sync("g", &a, gen, &[]);
    assert_eq!(h2.sync_resp(rs).assignment.as_ref(), b"A1");
    // Loaded members get a fresh session timeout.
    h2.advance(SESSION as i64 + 1);
    assert_eq!(h2.state("g"), "Empty");
}

#[test]
fn record_bytes_are_kafkas_format() {
    let key = records::offset_key("g", "t", 3);
    assert_eq!(key.as_ref(), &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
    let v = records::offset_value(&records::OffsetValue {
        offset: 5,
        leader_epoch: -1,
        metadata: "m".into(),
        commit_timestamp: 258,
        expire_timestamp: None,
    });
    assert_eq!(
        v.as_ref(),
        &[
            0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 1,
            2
        ]
    );
    assert_eq!(records::group_key("ab").as_ref(), &[0, 2, 0, 2, b'a', b'b']);
    let gv = records::group_value(&records::GroupValue {
        protocol_type: "c".into(),
        generation: 1,
        protocol: None,
        leader: Some("l".into()),
        current_state_timestamp: 2,
        members: vec![records::MemberValue {
            member_id: "m".into(),
            group_instance_id: None,
            client_id: "".into(),
            client_host: "h".into(),
            rebalance_timeout: 3,
            session_timeout: 4,
            subscription: Bytes::from_static(b"S"),
            assignment: Bytes::new(),
        }],
    });
    #[rustfmt::skip]
    let expect: &[u8] = &[
        0, 3, 0, 1, b'c', 0, 0, 0, 1, 0xff, 0xff, 0, 1, b'l', 0, 0, 0, 0, 0, 0, 0, 2,
        0, 0, 0, 1,
        0, 1, b'm', 0xff, 0xff, 0, 0, 0, 1, b'h', 0, 0, 0, 3, 0, 0, 0, 4,
        0, 0, 0, 1, b'S', 0, 0, 0, 0,
    ];
    assert_eq!(gv.as_ref(), expect);
    let back = records::decode_group_value(&gv).unwrap();
    assert_eq!(back.leader.as_deref(), Some("l"));
    assert_eq!(back.members[0].subscription.as_ref(), b"S");
    // OffsetCommitValue v1 (with expire timestamp) still reads.
    let v1: &[u8] = &[
        0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2,
    ];
    let o = records::decode_offset_value(v1).unwrap();
    assert_eq!((o.offset, o.leader_epoch, o.commit_timestamp), (9, -1, 1));
    assert_eq!(o.expire_timestamp, Some(2));
    assert_eq!(records::offset_value(&o).as_ref(), v1);
}

#[test]
fn garbage_records_are_errors_not_panics() {
    let mut c = GroupCoordinator::new(GroupConfig::default());
    assert!(c.replay(&[], None).is_err());
    assert!(c.replay(&[0], None).is_err());
    assert!(c.replay(&[0, 1, 0, 9, b'a'], None).is_err());
    assert!(c.replay(&[0xff, 0xff], None).is_err());
    assert!(c
        .replay(&records::group_key("g"), Some(&[0, 3, 0x7f, 0xff]))
        .is_err());
    assert!(c
        .replay(&records::offset_key("g", "t", 0), Some(&[0, 9]))
        .is_err());
    let mut huge = vec![
        0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    huge.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    assert!(c.replay(&records::group_key("g"), Some(&huge)).is_err());
    // A corrupt member list (duplicate ids and instance ids) still loads consistently.
    let dup = records::group_value(&records::GroupValue {
        protocol_type: "consumer".into(),
        generation: 3,
        protocol: Some("range".into()),
        leader: Some("nobody".into()),
        current_state_timestamp: 1,
        members: ["m1", "m1", "m2"]
            .iter()
            .enumerate()
            .map(|(n, id)| records::MemberValue {
                member_id: id.to_string(),
                group_instance_id: Some(if n == 0 { "i1" } else { "i2" }.into()),
                client_id: "c".into(),
                client_host: "h".into(),
                rebalance_timeout: 1,
                session_timeout: 1,
                subscription: Bytes::new(),
                assignment: Bytes::new(),
            })
            .collect(),
    });
    c.replay(&records::group_key("dup"), Some(&dup)).unwrap();
    let _ = c.loaded(0);
    // Other record types (KIP-848 etc.) are skipped.
    assert!(c.replay(&[0, 3, 0, 1, b'g'], Some(&[0, 0])).is_ok());
    // Deterministic fuzz.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect();
        let kind = (x >> 60) as u8 % 3;
        let key = match kind {
            0 => records::group_key("g").to_vec(),
            1 => records::offset_key("g", "t", 0).to_vec(),
            _ => bytes.clone(),
        };
        let _ = c.replay(&key, Some(&bytes));
    }
    let _ = c.loaded(0);
}

#[test]
fn partition_for_group_matches_java() {
    // "abc".hashCode() == 96354
    assert_eq!(partition_for_group("abc", 50), 96354 % 50);
    assert_eq!(partition_for_group("abc", 1_000_000), 96354);
    // "polygenelubricants".hashCode() == Integer.MIN_VALUE → Utils.abs → 0
    assert_eq!(partition_for_group("polygenelubricants", 50), 0);
    // "Aa" and "BB" collide (2112).
    assert_eq!(partition_for_group("Aa", 10_000), 2112);
    assert_eq!(partition_for_group("BB", 10_000), 2112);
    // A negative hash: the absolute value is used.
    let java = |g: &str| {
        g.encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
    };
    let neg = (0..1000)
        .map(|i| format!("group-{i}-xxxxxxxx"))
        .find(|g| java(g) < 0)
        .unwrap();
    assert_eq!(partition_for_group(&neg, 50), java(&neg).abs() % 50);
    // Non-BMP characters hash by UTF-16 code units.
    assert_eq!(
        partition_for_group("\u{1F600}", 1 << 30),
        0xD83Di32 * 31 + 0xDE00
    );
    assert_eq!(partition_for_group("", 50), 0);
}

/// Every API at every version the crate knows: the responses encode.
#[test]
fn every_response_encodes_at_every_version() {
    for v in 0..=9 {
        let mut h = H::new();
        let r0 = h.join_v(v, "g", "", Some("i").filter(|_| v >= 5), &["t1"]);
        let _ = r0;
        h.advance(3_000);
        let r = h.join_v(v, "g", "", None, &["t1"]);
        if v >= 4 {
            let id = h.join_resp(r).member_id.to_string();
            h.join_v(v, "g", &id, None, &["t1"]);
        }
        h.advance(60_000);
        h.join_v(v, "g", "x", None, &["t1"]);
    }
    for v in 0..=5 {
        let mut h = H::new();
        let (a, gen) = h.stable_one("g", None);
        let mut r = SyncGroupRequest::default();
        r.group_id = GroupId(s("g"));
        r.member_id = s(&a);
        r.generation_id = gen;
        h.send(v, GroupRequest::SyncGroup(r.clone()));
        r.generation_id = gen + 1;
        h.send(v, GroupRequest::SyncGroup(r));
        let mut l = LeaveGroupRequest::default();
        l.group_id = GroupId(s("g"));
        if v >= 3 {
            let mut m = MemberIdentity::default();
            m.member_id = s("zz");
            l.members = vec![m];
        } else {
            l.member_id = s("zz");
        }
        h.send(v, GroupRequest::LeaveGroup(l));
        let mut d = DescribeGroupsRequest::default();
        d.groups = vec![GroupId(s("g")), GroupId(s("nope"))];
        h.send(v, GroupRequest::DescribeGroups(d.clone()));
        h.send(v + 1, GroupRequest::DescribeGroups(d));
        h.send(v, GroupRequest::ListGroups(ListGroupsRequest::default()));
    }
    for v in 0..=4 {
        let mut h = H::new();
        let (a, gen) = h.stable_one("g", None);
        let mut r = HeartbeatRequest::default();
        r.group_id = GroupId(s("g"));
        r.member_id = s(&a);
        r.generation_id = gen;
        h.send(v, GroupRequest::Heartbeat(r));
        let mut r = HeartbeatRequest::default();
        r.group_id = GroupId(s("g"));
        h.send(v, GroupRequest::Heartbeat(r));
    }
    for v in 2..=10 {
        let mut h = H::new();
        h.commit_v(v, "g", "", -1, &[("t1", 0, 1), ("missing", 0, 1)], "m");
        h.commit_v(v, "g", "m", 3, &[("t1", 0, 1)], "");
    }
    for v in 1..=10 {
        let mut h = H::new();
        h.commit("g", "", -1, &[("t1", 0, 1)]);
        let mut r = OffsetFetchRequest::default();
        if v >= 8 {
            let mut g = OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s("g"));
            g.topics = None;
            r.groups = vec![g];
        } else {
            r.group_id = GroupId(s("g"));
            r.topics = if v >= 2 { None } else { Some(Vec::new()) };
        }
        h.send(v, GroupRequest::OffsetFetch(r));
    }
    for v in 0..=2 {
        let mut h = H::new();
        h.commit("g", "", -1, &[("t1", 0, 1)]);
        let mut r = DeleteGroupsRequest::default();
        r.groups_names = vec![GroupId(s("g")), GroupId(s("n"))];
        h.send(v, GroupRequest::DeleteGroups(r));
        let mut r = OffsetDeleteRequest::default();
        r.group_id = GroupId(s("n"));
        h.send(0, GroupRequest::OffsetDelete(r));
    }
}

#[test]
fn timer_keys_round_trip_odd_group_names() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("a/b:c/", None);
    assert_eq!(h.heartbeat("a/b:c/", &a, gen), NONE);
    h.advance(SESSION as i64);
    assert_eq!(h.state("a/b:c/"), "Empty");
    // Garbage and stale timers are ignored.
    let fx = h.c.on_timer(h.now, TimerKey("session/99:x".into()));
    assert!(fx.responses.is_empty() && fx.records.is_empty());
}

#[test]
fn static_leader_rejoin_before_v9_names_the_old_leader() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", Some("i1"));
    let r = h.join_v(5, "g", "", Some("i1"), &["t1"]);
    let j = h.join_resp(r);
    assert_eq!((j.error_code, j.generation_id), (NONE, gen));
    assert_eq!(
        j.leader.as_str(),
        a,
        "old leader id: the client must not reassign"
    );
    assert!(j.members.is_empty());
    assert_ne!(j.member_id.as_str(), a);
}

#[test]
fn existing_member_with_unsupported_protocol_is_inconsistent() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(s("g"));
    r.member_id = s(&a);
    r.session_timeout_ms = SESSION;
    r.rebalance_timeout_ms = REBALANCE;
    r.protocol_type = s("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("roundrobin");
    r.protocols = vec![p];
    let rid = h.send(5, GroupRequest::JoinGroup(r));
    assert_eq!(h.error_of(rid), INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(h.state("g"), "Stable");
}

#[test]
fn simple_commit_with_member_id_to_empty_group_is_accepted() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", None);
    h.leave("g", &[(&a, None)]);
    assert_eq!(h.commit("g", "whatever", -1, &[("t1", 0, 3)]), vec![NONE]);
    assert_eq!(
        h.commit("g", "whatever", 2, &[("t1", 0, 3)]),
        vec![UNKNOWN_MEMBER_ID]
    );
}

#[test]
fn static_member_that_misses_the_join_stays_until_sync_timeout() {
    let mut h = H::new();
    let (a, _) = h.stable_one("g", Some("i1"));
    // A dynamic member joins; the static leader doesn't rejoin (keeps heartbeating).
    let rb = h.join_v(3, "g", "", None, &["t1"]);
    let mut t = 0;
    while t < REBALANCE as i64 {
        h.advance(5_000);
        t += 5_000;
        if h.answered(rb) {
            break;
        }
        h.heartbeat_inst("g", &a, Some("i1"), 1);
    }
    let jb = h.join_resp(rb);
    let b = jb.member_id.to_string();
    // b, the only member that rejoined, leads; the static member is still a member.
    assert_eq!(jb.leader.as_str(), b);
    assert_eq!(jb.members.len(), 2);
    let gen = jb.generation_id;
    h.sync("g", &b, gen, &[(&b, b"B"), (&a, b"A")]);
    assert_eq!(h.state("g"), "Stable");
    // The static member never syncs: removed at the sync deadline, then a rebalance.
    h.advance(REBALANCE as i64);
    assert!(!h.members("g").contains(&a));
}

#[test]
fn commit_retention_time_sets_an_expire_timestamp() {
    let mut h = H::new();
    let fx = h.c.loaded(h.now);
    h.apply(fx);
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s("g"));
    r.generation_id_or_member_epoch = -1;
    r.retention_time_ms = 1_000;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s("t1"));
    let mut p = OffsetCommitRequestPartition::default();
    p.committed_offset = 4;
    t.partitions = vec![p];
    r.topics = vec![t];
    h.send(2, GroupRequest::OffsetCommit(r));
    let v =
        records::decode_offset_value(h.records.last().unwrap().value.as_ref().unwrap()).unwrap();
    assert_eq!(v.expire_timestamp, Some(h.now + 1_000));
    assert_eq!(h.fetch("g", None).len(), 1);
    h.advance(EXPIRE_CHECK_INTERVAL_MS);
    assert_eq!(h.fetch("g", None).len(), 0);
}

// ---- transactional offsets ----

impl H {
    #[allow(clippy::too_many_arguments)]
    fn txn_commit_v(
        &mut self,
        v: i16,
        group: &str,
        producer_id: i64,
        member: &str,
        generation: i32,
        inst: Option<&str>,
        parts: &[(&str, i32, i64)],
        meta: &str,
    ) -> Vec<i16> {
        let mut r = TxnOffsetCommitRequest::default();
        r.transactional_id = TransactionalId(s("tx"));
        r.group_id = GroupId(s(group));
        r.producer_id = ProducerId(producer_id);
        r.producer_epoch = 3;
        r.generation_id = generation;
        r.member_id = s(member);
        r.group_instance_id = inst.map(s);
        for (t, p, o) in parts {
            let mut tt = TxnOffsetCommitRequestTopic::default();
            tt.name = TopicName(s(t));
            let mut pp = TxnOffsetCommitRequestPartition::default();
            pp.partition_index = *p;
            pp.committed_offset = *o;
            pp.committed_leader_epoch = 4;
            pp.committed_metadata = Some(s(meta));
            tt.partitions.push(pp);
            r.topics.push(tt);
        }
        let rid = self.send(v, GroupRequest::TxnOffsetCommit(r));
        match self.answers.get(&rid) {
            Some(ResponseKind::TxnOffsetCommit(r)) => r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            _ => panic!("no txn commit response"),
        }
    }
    /// A v3 TxnOffsetCommit without member or generation (a standalone producer).
    fn txn_commit(
        &mut self,
        group: &str,
        producer_id: i64,
        parts: &[(&str, i32, i64)],
    ) -> Vec<i16> {
        self.txn_commit_v(3, group, producer_id, "", -1, None, parts, "")
    }
    fn complete(&mut self, producer_id: i64, commit: bool) {
        let fx = self.c.complete_transaction(producer_id, 3, 9, commit);
        assert_eq!(
            fx.marker,
            Some(TxnMarker {
                producer_id,
                producer_epoch: 3,
                coordinator_epoch: 9,
                commit
            })
        );
        self.apply(fx);
    }
    /// OffsetFetch at `v` with require_stable: (error, offset) per requested partition.
    fn fetch_stable_v(&mut self, v: i16, group: &str, parts: &[(&str, i32)]) -> Vec<(i16, i64)> {
        let mut r = OffsetFetchRequest::default();
        r.require_stable = true;
        if v >= 8 {
            let mut g = OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s(group));
            g.topics = Some(
                parts
                    .iter()
                    .map(|(t, p)| {
                        let mut x = OffsetFetchRequestTopics::default();
                        x.name = TopicName(s(t));
                        x.partition_indexes = vec![*p];
                        x
                    })
                    .collect(),
            );
            r.groups = vec![g];
        } else {
            r.group_id = GroupId(s(group));
            r.topics = Some(
                parts
                    .iter()
                    .map(|(t, p)| {
                        let mut x = OffsetFetchRequestTopic::default();
                        x.name = TopicName(s(t));
                        x.partition_indexes = vec![*p];
                        x
                    })
                    .collect(),
            );
        }
        let rid = self.send(v, GroupRequest::OffsetFetch(r));
        match self.answers.get(&rid) {
            Some(ResponseKind::OffsetFetch(r)) if v >= 8 => r.groups[0]
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (p.error_code, p.committed_offset))
                })
                .collect(),
            Some(ResponseKind::OffsetFetch(r)) => {
                assert_eq!(r.error_code, NONE, "no group-level error");
                r.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (p.error_code, p.committed_offset))
                    })
                    .collect()
            }
            _ => panic!("no fetch response"),
        }
    }
    /// The committed offset as a plain (not require_stable) fetch sees it.
    fn offset_of(&mut self, group: &str, topic: &str, partition: i32) -> i64 {
        self.fetch(group, Some(&[(topic, partition)]))[0].2
    }
    /// A coordinator loaded from `log` (each record at its offset, markers as control
    /// batches), as the runtime loads a shard.
    fn reloaded(&self) -> H {
        let mut h = H::new();
        h.now = self.now;
        let mut offset = 0i64;
        for w in &self.log {
            match w {
                Written::Batch(producer, records) => {
                    for r in records {
                        h.c.replay_at(offset, producer.map(|p| p.0), &r.key, r.value.as_deref())
                            .unwrap();
                        offset += 1;
                    }
                }
                Written::Marker(m) => {
                    h.c.replay_marker(offset, m.producer_id, m.commit);
                    offset += 1;
                }
            }
        }
        h.log = self.log.clone();
        let fx = h.c.loaded(h.now);
        h.apply(fx);
        h
    }
    /// What fetches show of the partitions: (plain offset, require_stable answer).
    fn view(&mut self, group: &str, parts: &[(&str, i32)]) -> Vec<(i64, (i16, i64))> {
        let stable = self.fetch_stable_v(7, group, parts);
        parts
            .iter()
            .zip(stable)
            .map(|((t, p), st)| (self.offset_of(group, t, *p), st))
            .collect()
    }
}

#[test]
fn txn_offsets_are_pending_until_the_commit_marker() {
    let mut h = H::new();
    assert_eq!(
        h.txn_commit("g", 1, &[("t1", 0, 5), ("t1", 1, 6)]),
        vec![NONE, NONE]
    );
    match h.log.last() {
        Some(Written::Batch(Some((1, 3)), records)) => assert_eq!(records.len(), 2),
        other => panic!("not a transactional batch of producer 1: {other:?}"),
    }
    assert_eq!(h.offset_of("g", "t1", 0), -1);
    for v in [7, 8, 9] {
        assert_eq!(
            h.fetch_stable_v(v, "g", &[("t1", 0), ("t1", 2)]),
            vec![(UNSTABLE_OFFSET_COMMIT, -1), (NONE, -1)],
            "v{v}"
        );
    }
    // Before v7 there is no require_stable: the last committed offset.
    assert_eq!(h.fetch_stable_v(6, "g", &[("t1", 0)]), vec![(NONE, -1)]);
    // A marker of another producer changes nothing.
    h.complete(2, true);
    assert_eq!(
        h.fetch_stable_v(7, "g", &[("t1", 0)]),
        vec![(UNSTABLE_OFFSET_COMMIT, -1)]
    );
    let before = h.records.len();
    h.complete(1, true);
    assert_eq!(h.records.len(), before, "a marker, no records");
    assert!(matches!(h.log.last(), Some(Written::Marker(m)) if m.commit));
    assert_eq!(
        h.fetch_stable_v(7, "g", &[("t1", 0), ("t1", 1)]),
        vec![(NONE, 5), (NONE, 6)]
    );
    let f = h.fetch("g", None);
    assert_eq!(f[0], ("t1".to_string(), 0, 5, 4), "leader epoch kept");
}

#[test]
fn aborted_txn_offsets_are_dropped() {
    let mut h = H::new();
    h.commit("g", "", -1, &[("t1", 0, 3)]);
    h.txn_commit("g", 1, &[("t1", 0, 5), ("t1", 1, 6)]);
    assert_eq!(h.offset_of("g", "t1", 0), 3);
    h.complete(1, false);
    assert_eq!(
        h.view("g", &[("t1", 0), ("t1", 1)]),
        vec![(3, (NONE, 3)), (-1, (NONE, -1))]
    );
    // A later commit marker of the same producer finds nothing pending.
    h.complete(1, true);
    assert_eq!(h.offset_of("g", "t1", 0), 3);
    // A group that only ever had aborted transactional offsets is gone.
    h.txn_commit("only", 4, &[("t1", 0, 1)]);
    assert_eq!(h.state("only"), "Empty");
    h.complete(4, false);
    assert_eq!(h.state("only"), "Dead");
}

#[test]
fn committed_txn_offset_and_plain_commit_the_later_record_wins() {
    let mut h = H::new();
    // Plain commit after the transactional one: the plain offset stays.
    h.txn_commit("g", 1, &[("t1", 0, 5)]);
    h.commit("g", "", -1, &[("t1", 0, 9)]);
    assert_eq!(h.offset_of("g", "t1", 0), 9);
    h.complete(1, true);
    assert_eq!(h.offset_of("g", "t1", 0), 9);
    // Plain commit before the transactional one: the transaction's offset wins.
    h.commit("g", "", -1, &[("t1", 1, 9)]);
    h.txn_commit("g", 2, &[("t1", 1, 5)]);
    h.complete(2, true);
    assert_eq!(h.offset_of("g", "t1", 1), 5);
    // Two producers on one partition: each marker decides for its own offsets.
    h.txn_commit("g", 3, &[("t1", 2, 30)]);
    h.txn_commit("g", 4, &[("t1", 2, 40)]);
    h.complete(4, true);
    assert_eq!(
        h.fetch_stable_v(7, "g", &[("t1", 2)]),
        vec![(UNSTABLE_OFFSET_COMMIT, -1)]
    );
    assert_eq!(h.offset_of("g", "t1", 2), 40);
    h.complete(3, true);
    assert_eq!(
        h.offset_of("g", "t1", 2),
        40,
        "producer 3 wrote before producer 4"
    );
}

#[test]
fn replayed_txn_offsets_and_markers_match_the_live_state() {
    let mut h = H::new();
    let parts = [("t1", 0), ("t1", 1), ("t1", 2), ("t2", 0)];
    h.commit("g", "", -1, &[("t1", 0, 1), ("t1", 1, 1)]);
    h.txn_commit("g", 1, &[("t1", 0, 10), ("t1", 1, 11)]);
    h.txn_commit("g", 2, &[("t1", 2, 20)]);
    h.commit("g", "", -1, &[("t1", 1, 12)]);
    h.txn_commit("g", 3, &[("t2", 0, 30)]);
    h.txn_commit("h", 1, &[("t1", 0, 50)]);
    // OffsetDelete of a partition with only a pending offset writes a tombstone.
    let mut r = OffsetDeleteRequest::default();
    r.group_id = GroupId(s("g"));
    let mut t = OffsetDeleteRequestTopic::default();
    t.name = TopicName(s("t2"));
    let mut p = OffsetDeleteRequestPartition::default();
    p.partition_index = 0;
    t.partitions.push(p);
    r.topics.push(t);
    h.send(0, GroupRequest::OffsetDelete(r));
    assert_eq!(
        h.records.last().unwrap().key,
        records::offset_key("g", "t2", 0)
    );
    assert_eq!(h.fetch_stable_v(7, "g", &[("t2", 0)]), vec![(NONE, -1)]);
    h.complete(1, true);
    h.complete(2, false);
    // Mid-transaction reload: producer 3's (now deleted) and the others' state.
    let mut mid = h.reloaded();
    assert_eq!(mid.view("g", &parts), h.view("g", &parts));
    assert_eq!(mid.view("h", &parts), h.view("h", &parts));
    assert_eq!(
        h.view("g", &parts)[0..2],
        [(10, (NONE, 10)), (12, (NONE, 12))]
    );
    assert_eq!(h.offset_of("h", "t1", 0), 50);
    // Both go on alike.
    for x in [&mut h, &mut mid] {
        x.txn_commit("g", 5, &[("t1", 0, 60)]);
        x.commit("g", "", -1, &[("t1", 2, 70)]);
    }
    let mut mid2 = mid.reloaded();
    assert_eq!(mid2.view("g", &parts), h.view("g", &parts));
    for x in [&mut h, &mut mid, &mut mid2] {
        x.complete(5, true);
    }
    let want = h.view("g", &parts);
    assert_eq!(want[0], (60, (NONE, 60)));
    assert_eq!(mid.view("g", &parts), want);
    assert_eq!(mid2.view("g", &parts), want);
    assert_eq!(h.reloaded().view("g", &parts), want);
}

#[test]
fn plain_replay_keeps_log_order_for_txn_markers() {
    // The old record-only replay and replay_at agree on plain records.
    let mut h = H::new();
    h.commit("g", "", -1, &[("t1", 0, 1)]);
    let mut c = GroupCoordinator::new(GroupConfig::default());
    for r in &h.records {
        c.replay(&r.key, r.value.as_deref()).unwrap();
    }
    let mut h2 = H::new();
    h2.c = c;
    assert_eq!(h2.offset_of("g", "t1", 0), 1);
    // A transaction committed after the loaded plain commit replaces it.
    h2.txn_commit("g", 1, &[("t1", 0, 2)]);
    h2.complete(1, true);
    assert_eq!(h2.offset_of("g", "t1", 0), 2);
}

#[test]
fn txn_offset_commit_validation() {
    let mut h = H::new();
    let (a, gen) = h.stable_one("g", Some("i1"));
    let ok = vec![NONE];
    let one = [("t1", 0, 5)];
    // v3+ with member and generation: checked as Kafka's validateOffsetCommit.
    assert_eq!(h.txn_commit_v(3, "g", 1, &a, gen, Some("i1"), &one, ""), ok);
    assert_eq!(
        h.txn_commit_v(3, "g", 1, &a, gen + 1, Some("i1"), &one, ""),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        h.txn_commit_v(3, "g", 1, "nobody", gen, None, &one, ""),
        vec![UNKNOWN_MEMBER_ID]
    );
    assert_eq!(
        h.txn_commit_v(3, "g", 1, "other", gen, Some("i1"), &one, ""),
        vec![FENCED_INSTANCE_ID]
    );
    // Without member and generation (v0-v2 carry none) a Stable group takes it.
    assert_eq!(h.txn_commit_v(0, "g", 1, "", -1, None, &one, ""), ok);
    assert_eq!(h.txn_commit_v(2, "g", 1, "", -1, None, &one, ""), ok);
    // An unknown group: created when no generation is given, else ILLEGAL_GENERATION.
    assert_eq!(
        h.txn_commit_v(3, "new", 1, "m", 1, None, &one, ""),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(h.state("new"), "Dead");
    assert_eq!(h.txn_commit_v(5, "new", 1, "", -1, None, &one, ""), ok);
    assert_eq!(h.state("new"), "Empty");
    assert_eq!(
        h.txn_commit_v(3, "", 1, "", -1, None, &one, ""),
        vec![INVALID_GROUP_ID]
    );
    // Per partition: unknown partitions first (even with a group error), then metadata.
    let long = "x".repeat(GroupConfig::default().offset_metadata_max_bytes + 1);
    assert_eq!(
        h.txn_commit_v(
            3,
            "g",
            1,
            "",
            -1,
            None,
            &[("t1", 0, 1), ("missing", 0, 1)],
            &long
        ),
        vec![OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(
        h.txn_commit_v(3, "g", 1, "nobody", gen, None, &[("missing", 0, 1)], ""),
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    // A request that wrote nothing asks for no transactional batch.
    let n = h.log.len();
    h.txn_commit_v(3, "g", 1, "nobody", gen, None, &one, "");
    assert_eq!(h.log.len(), n);
    // A transactional commit does not extend the member's session (Kafka).
    h.advance(i64::from(SESSION) - 1);
    assert_eq!(h.txn_commit_v(3, "g", 1, &a, gen, Some("i1"), &one, ""), ok);
    h.advance(2);
    assert_eq!(h.members("g"), Vec::<String>::new());
}

#[test]
fn pending_txn_offsets_hold_off_expiry_and_go_with_their_group() {
    let config = GroupConfig {
        offsets_retention_ms: 1_000,
        ..GroupConfig::default()
    };
    let mut h = H::with(config);
    let fx = h.c.loaded(h.now);
    h.apply(fx);
    h.commit("g", "", -1, &[("t1", 0, 1), ("t1", 1, 1)]);
    h.txn_commit("g", 1, &[("t1", 0, 5)]);
    h.advance(EXPIRE_CHECK_INTERVAL_MS);
    // t1-1 expired; t1-0 is kept while the transaction has an offset pending for it.
    assert_eq!(
        h.view("g", &[("t1", 0), ("t1", 1)]),
        vec![(1, (UNSTABLE_OFFSET_COMMIT, -1)), (-1, (NONE, -1))]
    );
    h.complete(1, false);
    h.advance(EXPIRE_CHECK_INTERVAL_MS);
    assert_eq!(h.state("g"), "Dead");
    // A group with only a pending offset is not expired until the transaction ends.
    h.txn_commit("p", 2, &[("t1", 0, 5)]);
    h.advance(EXPIRE_CHECK_INTERVAL_MS);
    assert_eq!(h.state("p"), "Empty");
    h.complete(2, true);
    assert_eq!(h.offset_of("p", "t1", 0), 5);
    // DeleteGroups of an Empty group: tombstones for committed and pending offsets.
    h.commit("d", "", -1, &[("t1", 0, 1)]);
    h.txn_commit("d", 3, &[("t1", 0, 2), ("t1", 1, 2)]);
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = vec![GroupId(s("d"))];
    let n = h.records.len();
    h.send(2, GroupRequest::DeleteGroups(r));
    let keys: Vec<_> = h.records[n..]
        .iter()
        .map(|r| (r.key.clone(), r.value.is_none()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (records::offset_key("d", "t1", 0), true),
            (records::offset_key("d", "t1", 1), true),
            (records::group_key("d"), true)
        ]
    );
    h.complete(3, true);
    assert_eq!(h.state("d"), "Dead");
    assert_eq!(h.reloaded().state("d"), "Dead");
}
