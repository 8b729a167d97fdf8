//! The classic group protocol state machine and committed offsets.

use super::records::{self, GroupValue, Key, MemberValue, OffsetValue};
use super::{
    Effects, GroupCoordinator, GroupRequest, Record, RecordError, RequestId, RequestMeta, TimerKey,
    EXPIRE_CHECK_INTERVAL_MS,
};
use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

// Kafka error codes (the protocol guide's numbering).
pub(crate) const NONE: i16 = 0;
pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub(crate) const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub(crate) const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub(crate) const ILLEGAL_GENERATION: i16 = 22;
pub(crate) const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub(crate) const INVALID_GROUP_ID: i16 = 24;
pub(crate) const UNKNOWN_MEMBER_ID: i16 = 25;
pub(crate) const INVALID_SESSION_TIMEOUT: i16 = 26;
pub(crate) const REBALANCE_IN_PROGRESS: i16 = 27;
pub(crate) const NON_EMPTY_GROUP: i16 = 68;
pub(crate) const GROUP_ID_NOT_FOUND: i16 = 69;
pub(crate) const MEMBER_ID_REQUIRED: i16 = 79;
pub(crate) const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub(crate) const FENCED_INSTANCE_ID: i16 = 82;
pub(crate) const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// A topic's partitions and their committed offsets (None = no commit).
type TopicOffsets = (String, Vec<(i32, Option<Offset>)>);

/// A parked request: its id and the API version to answer with.
type Parked = (RequestId, i16);

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    /// (protocol name, metadata) in the member's preference order.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    pub(crate) join: Option<Parked>,
    pub(crate) sync: Option<Parked>,
    pub(crate) session_deadline: Option<i64>,
}

impl Member {
    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(n, _)| n == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Offset {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_ts: i64,
    /// From OffsetCommit v2-v4 `retention_time_ms`; overrides the group's retention.
    pub(crate) expire_ts: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: State,
    pub(crate) state_ts: i64,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    /// In join order (the leader is re-elected as the first one).
    pub(crate) members: IndexMap<String, Member>,
    /// group.instance.id → current member id.
    pub(crate) statics: HashMap<String, String>,
    /// KIP-394 member ids handed out, awaiting their JoinGroup → deadline.
    pub(crate) pending: HashMap<String, i64>,
    pub(crate) join_deadline: Option<i64>,
    /// During an initial delayed join: the rebalance time still left to extend by.
    pub(crate) initial_remaining: Option<i64>,
    pub(crate) new_member_added: bool,
    /// Members of this generation that have not sent SyncGroup yet.
    pub(crate) pending_sync: BTreeSet<String>,
    pub(crate) sync_deadline: Option<i64>,
    pub(crate) offsets: BTreeMap<(String, i32), Offset>,
    /// A group metadata record exists for it (a deletion then needs a tombstone).
    pub(crate) persisted: bool,
    /// `group.initial.rebalance.delay.ms`.
    pub(crate) config_initial_delay: i32,
}

impl Group {
    fn new(id: &str, now: i64, initial_delay: i32) -> Group {
        Group {
            config_initial_delay: initial_delay,
            id: id.to_string(),
            state: State::Empty,
            state_ts: now,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            statics: HashMap::new(),
            pending: HashMap::new(),
            join_deadline: None,
            initial_remaining: None,
            new_member_added: false,
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
            offsets: BTreeMap::new(),
            persisted: false,
        }
    }

    /// Invariants every call leaves behind (checked in debug builds).
    pub(crate) fn check_invariants(&self) {
        debug_assert_eq!(
            self.leader.is_some(),
            !self.members.is_empty(),
            "{}: leader",
            self.id
        );
        if let Some(l) = &self.leader {
            debug_assert!(
                self.members.contains_key(l),
                "{}: leader is a member",
                self.id
            );
        }
        debug_assert!(
            self.state != State::Empty || self.members.is_empty(),
            "{}: Empty has no members",
            self.id
        );
        for (id, m) in &self.members {
            debug_assert!(
                m.join.is_none() || self.state == State::PreparingRebalance,
                "{}: parked join outside PreparingRebalance",
                self.id
            );
            debug_assert!(
                m.sync.is_none() || self.state == State::CompletingRebalance,
                "{}: parked sync outside CompletingRebalance",
                self.id
            );
            if let Some(i) = &m.instance_id {
                debug_assert_eq!(self.statics.get(i), Some(id), "{}: static map", self.id);
            }
        }
        debug_assert!(self.statics.len() <= self.members.len());
        debug_assert!(self
            .pending_sync
            .iter()
            .all(|p| self.members.contains_key(p)));
        debug_assert!(self.pending.keys().all(|p| !self.members.contains_key(p)));
    }

    fn set_state(&mut self, s: State, now: i64) {
        self.state = s;
        self.state_ts = now;
    }

    fn rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports; None if there is no member.
    fn candidates(&self) -> Option<BTreeSet<String>> {
        let mut set: Option<BTreeSet<String>> = None;
        for m in self.members.values() {
            let names: BTreeSet<String> = m.protocols.iter().map(|(n, _)| n.clone()).collect();
            set = Some(match set {
                None => names,
                Some(s) => s.intersection(&names).cloned().collect(),
            });
        }
        set
    }

    /// Kafka's `supportsProtocols`: an Empty group takes any non-empty protocol type and
    /// list; otherwise the type must match and one protocol must be supported by every
    /// current member (the joining member's own current protocols included).
    fn supports(&self, ptype: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == State::Empty {
            return !ptype.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(ptype) {
            return false;
        }
        match self.candidates() {
            None => true,
            Some(c) => protocols.iter().any(|(n, _)| c.contains(n)),
        }
    }

    /// Protocol every member supports, by the members' preference votes.
    fn select_protocol(&self) -> Option<String> {
        let cands = self.candidates()?;
        let mut votes: Vec<(String, usize)> = Vec::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| cands.contains(n)) {
                match votes.iter_mut().find(|(v, _)| v == n) {
                    Some((_, c)) => *c += 1,
                    None => votes.push((n.clone(), 1)),
                }
            }
        }
        let mut best: Option<(String, usize)> = None;
        for (n, c) in votes {
            if best.as_ref().is_none_or(|(_, b)| c > *b) {
                best = Some((n, c));
            }
        }
        best.map(|(n, _)| n)
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join.is_some())
    }

    /// Kafka's `validateMember`: static fencing, then membership.
    fn validate_member(&self, member_id: &str, instance: Option<&str>) -> Result<(), i16> {
        if let Some(inst) = instance {
            match self.statics.get(inst) {
                None => return Err(UNKNOWN_MEMBER_ID),
                Some(cur) if cur != member_id => return Err(FENCED_INSTANCE_ID),
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }

    fn value(&self) -> GroupValue {
        let with_assignment = self.state == State::Stable;
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_ts,
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberValue {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout_ms,
                    session_timeout: m.session_timeout_ms,
                    subscription: m.metadata(self.protocol.as_deref()),
                    assignment: if with_assignment {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// Topics the members subscribe to, if every subscription decodes
    /// (`ConsumerProtocolSubscription`; only for protocol type "consumer").
    fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let mut topics = BTreeSet::new();
        if self.members.is_empty() {
            return Some(topics);
        }
        self.protocol.as_ref()?;
        for m in self.members.values() {
            let mut meta = m.metadata(self.protocol.as_deref());
            if meta.len() < 2 {
                return None;
            }
            // Like Kafka: skip the version, read the v0 prefix every version starts with.
            bytes::Buf::advance(&mut meta, 2);
            let sub = ConsumerProtocolSubscription::decode(&mut meta, 0).ok()?;
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    /// Kafka's `isSubscribedToTopic`: when the subscriptions are unknown, a "consumer"
    /// group counts as subscribed, any other as not.
    fn is_subscribed(&self, topic: &str) -> bool {
        match self.subscribed_topics() {
            Some(t) => t.contains(topic),
            None => self.protocol_type.as_deref() == Some("consumer"),
        }
    }

    fn record(&self) -> Record {
        Record {
            key: records::group_key(&self.id),
            value: Some(records::group_value(&self.value())),
        }
    }
}

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

// ---- timer keys ----

fn timer_key(kind: &str, group: &str, member: Option<&str>) -> TimerKey {
    match member {
        Some(m) => TimerKey(format!("{kind}/{}:{group}/{m}", group.len())),
        None => TimerKey(format!("{kind}/{}:{group}", group.len())),
    }
}

fn expire_key() -> TimerKey {
    TimerKey("expire".to_string())
}

/// (kind, group, member) from a key; None for garbage.
fn parse_timer(key: &TimerKey) -> Option<(&str, &str, Option<&str>)> {
    let (kind, rest) = key.0.split_once('/')?;
    let (len, rest) = rest.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let group = rest.get(..len)?;
    let tail = rest.get(len..)?;
    if tail.is_empty() {
        Some((kind, group, None))
    } else {
        Some((kind, group, Some(tail.strip_prefix('/')?)))
    }
}

fn set_timer(fx: &mut Effects, key: TimerKey, deadline: Option<i64>) {
    fx.timers.push((key, deadline));
}

// ---- responses ----

#[allow(clippy::too_many_arguments)]
fn join_response(
    version: i16,
    error: i16,
    generation: i32,
    ptype: Option<&str>,
    pname: Option<&str>,
    leader: &str,
    member_id: &str,
    members: Vec<JoinGroupResponseMember>,
    skip_assignment: bool,
) -> ResponseKind {
    let mut r = JoinGroupResponse::default();
    r.error_code = error;
    r.generation_id = generation;
    if version >= 7 {
        r.protocol_type = ptype.map(sb);
        r.protocol_name = pname.map(sb);
    } else {
        r.protocol_type = None;
        r.protocol_name = Some(sb(pname.unwrap_or("")));
    }
    r.leader = sb(leader);
    r.member_id = sb(member_id);
    r.skip_assignment = skip_assignment && version >= 9;
    r.members = members;
    ResponseKind::JoinGroup(r)
}

fn join_error(version: i16, error: i16, member_id: &str) -> ResponseKind {
    join_response(
        version,
        error,
        -1,
        None,
        None,
        "",
        member_id,
        Vec::new(),
        false,
    )
}

fn sync_response(
    version: i16,
    error: i16,
    ptype: Option<&str>,
    pname: Option<&str>,
    assignment: Bytes,
) -> ResponseKind {
    let mut r = SyncGroupResponse::default();
    r.error_code = error;
    if version >= 5 {
        r.protocol_type = ptype.map(sb);
        r.protocol_name = pname.map(sb);
    }
    r.assignment = assignment;
    ResponseKind::SyncGroup(r)
}

fn heartbeat_response(error: i16) -> ResponseKind {
    let mut r = HeartbeatResponse::default();
    r.error_code = error;
    ResponseKind::Heartbeat(r)
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl GroupCoordinator {
    // ---- dispatch ----

    #[allow(clippy::too_many_arguments)]
    pub(super) fn dispatch(
        &mut self,
        now: i64,
        rid: RequestId,
        version: i16,
        request: GroupRequest,
        meta: &RequestMeta,
        partition_exists: &dyn Fn(&str, i32) -> bool,
        fx: &mut Effects,
    ) {
        match request {
            GroupRequest::JoinGroup(r) => self.join_group(now, rid, version, r, meta, fx),
            GroupRequest::SyncGroup(r) => self.sync_group(now, rid, version, r, fx),
            GroupRequest::Heartbeat(r) => {
                let e = self.heartbeat(now, &r, fx);
                fx.responses.push((rid, heartbeat_response(e)));
            }
            GroupRequest::LeaveGroup(r) => self.leave_group(now, rid, version, r, fx),
            GroupRequest::OffsetCommit(r) => {
                self.offset_commit(now, rid, version, r, partition_exists, fx)
            }
            GroupRequest::OffsetFetch(r) => self.offset_fetch(rid, version, r, fx),
            GroupRequest::OffsetDelete(r) => self.offset_delete(now, rid, r, fx),
            GroupRequest::DescribeGroups(r) => self.describe_groups(rid, version, r, fx),
            GroupRequest::ListGroups(r) => self.list_groups(rid, version, r, fx),
            GroupRequest::DeleteGroups(r) => self.delete_groups(rid, r, fx),
        }
    }

    pub(super) fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            for g in self.groups.values() {
                g.check_invariants();
            }
        }
    }

    /// Drops a group that was created in memory but never got anything worth keeping.
    fn gc_group(&mut self, gid: &str) {
        if let Some(g) = self.groups.get(gid) {
            if g.state == State::Empty
                && g.members.is_empty()
                && g.pending.is_empty()
                && g.offsets.is_empty()
                && !g.persisted
            {
                self.groups.remove(gid);
            }
        }
    }

    // ---- JoinGroup ----

    fn join_group(
        &mut self,
        now: i64,
        rid: RequestId,
        version: i16,
        req: JoinGroupRequest,
        meta: &RequestMeta,
        fx: &mut Effects,
    ) {
        let gid = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
        let ptype = req.protocol_type.to_string();
        let protocols: Vec<(String, Bytes)> = req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        // v0 has no rebalance timeout: it equals the session timeout.
        let rebalance_timeout = if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        };
        let fail =
            |fx: &mut Effects, e: i16| fx.responses.push((rid, join_error(version, e, &member_id)));
        if gid.is_empty() {
            return fail(fx, INVALID_GROUP_ID);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(fx, INVALID_SESSION_TIMEOUT);
        }
        if !self.groups.contains_key(&gid) {
            if !member_id.is_empty() {
                return fail(fx, UNKNOWN_MEMBER_ID);
            }
            self.groups.insert(
                gid.clone(),
                Group::new(&gid, now, self.config.initial_rebalance_delay_ms),
            );
        }
        let max_size = self.config.max_size.max(1) as usize;
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        let err = if g.state == State::Dead {
            Some(COORDINATOR_NOT_AVAILABLE)
        } else if !g.supports(&ptype, &protocols) {
            Some(INCONSISTENT_GROUP_PROTOCOL)
        } else {
            None
        };
        if let Some(e) = err {
            fail(fx, e);
            self.gc_group(&gid);
            return;
        }
        let new_member = Member {
            instance_id: instance.clone(),
            client_id: meta.client_id.clone(),
            client_host: meta.client_host.clone(),
            rebalance_timeout_ms: rebalance_timeout,
            session_timeout_ms: req.session_timeout_ms,
            protocols,
            assignment: Bytes::new(),
            join: Some((rid, version)),
            sync: None,
            session_deadline: None,
        };
        if member_id.is_empty() {
            // Unknown member.
            if let Some(old_id) = instance.as_ref().and_then(|i| g.statics.get(i)).cloned() {
                return Self::static_rejoin(g, now, rid, version, old_id, new_member, fx);
            }
            if g.members.len() + g.pending.len() >= max_size {
                fail(fx, GROUP_MAX_SIZE_REACHED);
                self.gc_group(&gid);
                return;
            }
            let prefix = instance.as_deref().unwrap_or(&meta.client_id);
            let id = new_member_id(prefix);
            if instance.is_none() && version >= 4 {
                // KIP-394: hand out the id, expect the member back with it.
                let deadline = now + i64::from(req.session_timeout_ms);
                g.pending.insert(id.clone(), deadline);
                set_timer(fx, timer_key("pending", &gid, Some(&id)), Some(deadline));
                fx.responses
                    .push((rid, join_error(version, MEMBER_ID_REQUIRED, &id)));
                return;
            }
            Self::add_member_and_rebalance(g, now, id, new_member, &ptype, fx);
            return;
        }
        // Known member id.
        if let Some(inst) = &instance {
            if let Some(cur) = g.statics.get(inst) {
                if *cur != member_id {
                    return fail(fx, FENCED_INSTANCE_ID);
                }
            } else if !g.pending.contains_key(&member_id) {
                return fail(fx, UNKNOWN_MEMBER_ID);
            }
        }
        if g.pending.remove(&member_id).is_some() {
            set_timer(fx, timer_key("pending", &gid, Some(&member_id)), None);
            return Self::add_member_and_rebalance(g, now, member_id, new_member, &ptype, fx);
        }
        let Some(m) = g.members.get(&member_id) else {
            return fail(fx, UNKNOWN_MEMBER_ID);
        };
        let same = m.protocols == new_member.protocols;
        match g.state {
            State::PreparingRebalance => {
                Self::update_member_and_rebalance(g, now, &member_id, new_member, fx)
            }
            State::CompletingRebalance if same => {
                let resp = Self::current_join_response(g, &member_id, version, false);
                fx.responses.push((rid, resp));
            }
            State::Stable if same && g.leader.as_deref() != Some(member_id.as_str()) => {
                let resp = Self::current_join_response(g, &member_id, version, false);
                fx.responses.push((rid, resp));
            }
            State::CompletingRebalance | State::Stable => {
                Self::update_member_and_rebalance(g, now, &member_id, new_member, fx)
            }
            State::Empty | State::Dead => fail(fx, UNKNOWN_MEMBER_ID),
        }
    }

    /// The JoinGroup response of the current generation for `member_id`.
    fn current_join_response(g: &Group, member_id: &str, version: i16, skip: bool) -> ResponseKind {
        let is_leader = g.leader.as_deref() == Some(member_id);
        let members = if is_leader && (!skip || version >= 9) {
            g.members
                .iter()
                .map(|(id, m)| {
                    let mut jm = JoinGroupResponseMember::default();
                    jm.member_id = sb(id);
                    if version >= 5 {
                        jm.group_instance_id = m.instance_id.as_deref().map(sb);
                    }
                    jm.metadata = m.metadata(g.protocol.as_deref());
                    jm
                })
                .collect()
        } else {
            Vec::new()
        };
        join_response(
            version,
            NONE,
            g.generation,
            g.protocol_type.as_deref(),
            g.protocol.as_deref(),
            g.leader.as_deref().unwrap_or(""),
            member_id,
            members,
            skip && is_leader,
        )
    }

    fn add_member_and_rebalance(
        g: &mut Group,
        now: i64,
        id: String,
        member: Member,
        ptype: &str,
        fx: &mut Effects,
    ) {
        if g.members.is_empty() {
            g.protocol_type = Some(ptype.to_string());
        }
        if let Some(inst) = &member.instance_id {
            g.statics.insert(inst.clone(), id.clone());
        }
        if g.leader.is_none() {
            g.leader = Some(id.clone());
        }
        if g.state == State::PreparingRebalance && g.initial_remaining.is_some() {
            g.new_member_added = true;
        }
        g.members.insert(id, member);
        if g.state == State::PreparingRebalance {
            Self::maybe_complete_join(g, now, fx);
        } else {
            Self::prepare_rebalance(g, now, fx);
        }
    }

    fn update_member_and_rebalance(
        g: &mut Group,
        now: i64,
        id: &str,
        new: Member,
        fx: &mut Effects,
    ) {
        if let Some(m) = g.members.get_mut(id) {
            if let Some((old, v)) = m.join.take() {
                fx.responses
                    .push((old, join_error(v, REBALANCE_IN_PROGRESS, id)));
            }
            m.protocols = new.protocols;
            m.rebalance_timeout_ms = new.rebalance_timeout_ms;
            m.session_timeout_ms = new.session_timeout_ms;
            m.join = new.join;
            if !new.client_id.is_empty() {
                m.client_id = new.client_id;
                m.client_host = new.client_host;
            }
            // Kept alive by the join phase until it completes.
            m.session_deadline = None;
            set_timer(fx, timer_key("session", &g.id, Some(id)), None);
        }
        if g.state == State::PreparingRebalance {
            Self::maybe_complete_join(g, now, fx);
        } else {
            Self::prepare_rebalance(g, now, fx);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn static_rejoin(
        g: &mut Group,
        now: i64,
        rid: RequestId,
        version: i16,
        old_id: String,
        mut new: Member,
        fx: &mut Effects,
    ) {
        let Some(mut old) = g.members.shift_remove(&old_id) else {
            fx.responses
                .push((rid, join_error(version, UNKNOWN_MEMBER_ID, "")));
            return;
        };
        // The old incarnation is fenced: answer its parked requests.
        if let Some((r, v)) = old.join.take() {
            fx.responses
                .push((r, join_error(v, FENCED_INSTANCE_ID, &old_id)));
        }
        if let Some((r, v)) = old.sync.take() {
            fx.responses.push((
                r,
                sync_response(v, FENCED_INSTANCE_ID, None, None, Bytes::new()),
            ));
        }
        set_timer(fx, timer_key("session", &g.id, Some(&old_id)), None);
        let leader_before = g.leader.clone().unwrap_or_default();
        let inst = new.instance_id.clone().unwrap_or_default();
        let new_id = new_member_id(&inst);
        g.statics.insert(inst, new_id.clone());
        if g.leader.as_deref() == Some(old_id.as_str()) {
            g.leader = Some(new_id.clone());
        }
        if g.pending_sync.remove(&old_id) {
            g.pending_sync.insert(new_id.clone());
        }
        new.assignment = old.assignment.clone();
        if new.client_id.is_empty() {
            new.client_id = old.client_id.clone();
            new.client_host = old.client_host.clone();
        }
        match g.state {
            State::Stable => {
                new.join = None;
                g.members.insert(new_id.clone(), new);
                if g.select_protocol() == g.protocol {
                    // No rebalance: same generation, the member gets its assignment back.
                    fx.records.push(g.record());
                    g.persisted = true;
                    Self::touch(g, now, &new_id, fx);
                    let mut resp = Self::current_join_response(g, &new_id, version, true);
                    if version < 9 {
                        // Kafka names the leader as it was before the replacement, so a
                        // rejoining static leader doesn't reassign without the member list.
                        if let ResponseKind::JoinGroup(r) = &mut resp {
                            r.leader = sb(&leader_before);
                        }
                    }
                    fx.responses.push((rid, resp));
                } else {
                    if let Some(m) = g.members.get_mut(&new_id) {
                        m.join = Some((rid, version));
                    }
                    Self::prepare_rebalance(g, now, fx);
                }
            }
            _ => {
                g.members.insert(new_id.clone(), new);
                if g.state == State::PreparingRebalance {
                    Self::maybe_complete_join(g, now, fx);
                } else {
                    Self::prepare_rebalance(g, now, fx);
                }
            }
        }
    }

    /// Restarts a member's session timer unless a parked request keeps it alive.
    fn touch(g: &mut Group, now: i64, id: &str, fx: &mut Effects) {
        let key = timer_key("session", &g.id, Some(id));
        if let Some(m) = g.members.get_mut(id) {
            if m.join.is_some() || m.sync.is_some() {
                m.session_deadline = None;
                set_timer(fx, key, None);
            } else {
                let d = now + i64::from(m.session_timeout_ms);
                m.session_deadline = Some(d);
                set_timer(fx, key, Some(d));
            }
        }
    }

    fn prepare_rebalance(g: &mut Group, now: i64, fx: &mut Effects) {
        debug_assert!(g.state != State::Dead);
        if g.state == State::CompletingRebalance {
            // Assignments of the aborted generation are void; parked syncs learn of it.
            let ids: Vec<String> = g.members.keys().cloned().collect();
            for id in ids {
                if let Some(m) = g.members.get_mut(&id) {
                    m.assignment = Bytes::new();
                    if let Some((r, v)) = m.sync.take() {
                        fx.responses.push((
                            r,
                            sync_response(v, REBALANCE_IN_PROGRESS, None, None, Bytes::new()),
                        ));
                    }
                }
                Self::touch(g, now, &id, fx);
            }
        }
        g.pending_sync.clear();
        if g.sync_deadline.take().is_some() {
            set_timer(fx, timer_key("sync", &g.id, None), None);
        }
        let rebalance_timeout = g.rebalance_timeout();
        let deadline = if g.state == State::Empty {
            let delay = i64::from(g.config_initial_delay);
            g.initial_remaining = Some((rebalance_timeout - delay).max(0));
            g.new_member_added = false;
            now + delay.min(rebalance_timeout.max(0)).max(0)
        } else {
            g.initial_remaining = None;
            now + rebalance_timeout
        };
        g.set_state(State::PreparingRebalance, now);
        g.join_deadline = Some(deadline);
        set_timer(fx, timer_key("join", &g.id, None), Some(deadline));
        Self::maybe_complete_join(g, now, fx);
    }

    fn maybe_complete_join(g: &mut Group, now: i64, fx: &mut Effects) {
        if g.state == State::PreparingRebalance && g.initial_remaining.is_none() && g.all_joined() {
            Self::complete_join(g, now, fx);
        }
    }

    fn complete_join(g: &mut Group, now: i64, fx: &mut Effects) {
        debug_assert_eq!(g.state, State::PreparingRebalance);
        // Dynamic members that didn't rejoin in time are removed; static ones stay (they
        // must still SyncGroup in time, like Kafka).
        let gone: Vec<String> = g
            .members
            .iter()
            .filter(|(_, m)| m.join.is_none() && m.instance_id.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            Self::remove_member(g, &id, fx);
        }
        // Kafka's maybeElectNewJoinedLeader: a leader that didn't rejoin hands over to a
        // member that did; if none did, wait another rebalance timeout.
        let leader_joined = g
            .leader
            .as_ref()
            .and_then(|l| g.members.get(l))
            .is_some_and(|m| m.join.is_some());
        if !leader_joined && !g.members.is_empty() {
            match g.members.iter().find(|(_, m)| m.join.is_some()) {
                Some((id, _)) => g.leader = Some(id.clone()),
                None => {
                    g.initial_remaining = None;
                    let d = now + g.rebalance_timeout();
                    g.join_deadline = Some(d);
                    set_timer(fx, timer_key("join", &g.id, None), Some(d));
                    return;
                }
            }
        }
        g.join_deadline = None;
        g.initial_remaining = None;
        g.new_member_added = false;
        set_timer(fx, timer_key("join", &g.id, None), None);
        g.generation = g.generation.wrapping_add(1);
        if g.members.is_empty() {
            g.protocol = None;
            g.leader = None;
            g.set_state(State::Empty, now);
            fx.records.push(g.record());
            g.persisted = true;
            return;
        }
        g.protocol = g.select_protocol();
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g.set_state(State::CompletingRebalance, now);
        g.pending_sync = g.members.keys().cloned().collect();
        let sync_deadline = now + g.rebalance_timeout();
        g.sync_deadline = Some(sync_deadline);
        set_timer(fx, timer_key("sync", &g.id, None), Some(sync_deadline));
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let parked = g.members.get_mut(&id).and_then(|m| m.join.take());
            if let Some((r, v)) = parked {
                let resp = Self::current_join_response(g, &id, v, false);
                fx.responses.push((r, resp));
            }
            Self::touch(g, now, &id, fx);
        }
    }

    /// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID.
    fn remove_member(g: &mut Group, id: &str, fx: &mut Effects) {
        let Some(mut m) = g.members.shift_remove(id) else {
            return;
        };
        if let Some((r, v)) = m.join.take() {
            fx.responses.push((r, join_error(v, UNKNOWN_MEMBER_ID, id)));
        }
        if let Some((r, v)) = m.sync.take() {
            fx.responses.push((
                r,
                sync_response(v, UNKNOWN_MEMBER_ID, None, None, Bytes::new()),
            ));
        }
        if m.session_deadline.is_some() {
            set_timer(fx, timer_key("session", &g.id, Some(id)), None);
        }
        if let Some(inst) = &m.instance_id {
            if g.statics.get(inst).map(String::as_str) == Some(id) {
                g.statics.remove(inst);
            }
        }
        g.pending_sync.remove(id);
        if g.leader.as_deref() == Some(id) {
            g.leader = g.members.keys().next().cloned();
        }
    }

    /// After removals: Kafka's `removeMemberAndUpdateClassicGroup`.
    fn after_removal(g: &mut Group, now: i64, fx: &mut Effects) {
        match g.state {
            State::Stable | State::CompletingRebalance => Self::prepare_rebalance(g, now, fx),
            State::PreparingRebalance => Self::maybe_complete_join(g, now, fx),
            State::Empty | State::Dead => {}
        }
    }

    // ---- SyncGroup ----

    fn sync_group(
        &mut self,
        now: i64,
        rid: RequestId,
        version: i16,
        req: SyncGroupRequest,
        fx: &mut Effects,
    ) {
        let gid = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let fail = |fx: &mut Effects, e: i16| {
            fx.responses
                .push((rid, sync_response(version, e, None, None, Bytes::new())))
        };
        let Some(g) = self.groups.get_mut(&gid) else {
            return fail(fx, UNKNOWN_MEMBER_ID);
        };
        if g.state == State::Dead {
            return fail(fx, COORDINATOR_NOT_AVAILABLE);
        }
        if let Err(e) = g.validate_member(&member_id, req.group_instance_id.as_deref()) {
            return fail(fx, e);
        }
        if req.generation_id != g.generation {
            return fail(fx, ILLEGAL_GENERATION);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t.as_str()) != g.protocol_type.as_deref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n.as_str()) != g.protocol.as_deref())
        {
            return fail(fx, INCONSISTENT_GROUP_PROTOCOL);
        }
        match g.state {
            State::Empty | State::Dead => fail(fx, UNKNOWN_MEMBER_ID),
            State::PreparingRebalance => fail(fx, REBALANCE_IN_PROGRESS),
            State::CompletingRebalance => {
                g.pending_sync.remove(&member_id);
                if let Some(m) = g.members.get_mut(&member_id) {
                    if let Some((r, v)) = m.sync.replace((rid, version)) {
                        fx.responses.push((
                            r,
                            sync_response(v, REBALANCE_IN_PROGRESS, None, None, Bytes::new()),
                        ));
                    }
                }
                Self::touch(g, now, &member_id, fx);
                if g.leader.as_deref() == Some(member_id.as_str()) {
                    let mut given: HashMap<String, Bytes> = HashMap::new();
                    for a in &req.assignments {
                        given.insert(a.member_id.to_string(), a.assignment.clone());
                    }
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    g.set_state(State::Stable, now);
                    fx.records.push(g.record());
                    g.persisted = true;
                    let ids: Vec<String> = g.members.keys().cloned().collect();
                    for id in ids {
                        let Some(m) = g.members.get_mut(&id) else {
                            continue;
                        };
                        if let Some((r, v)) = m.sync.take() {
                            let resp = sync_response(
                                v,
                                NONE,
                                g.protocol_type.as_deref(),
                                g.protocol.as_deref(),
                                m.assignment.clone(),
                            );
                            fx.responses.push((r, resp));
                            Self::touch(g, now, &id, fx);
                        }
                    }
                    Self::maybe_cancel_sync_timer(g, fx);
                }
            }
            State::Stable => {
                let assignment = g
                    .members
                    .get(&member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                g.pending_sync.remove(&member_id);
                Self::maybe_cancel_sync_timer(g, fx);
                Self::touch(g, now, &member_id, fx);
                let resp = sync_response(
                    version,
                    NONE,
                    g.protocol_type.as_deref(),
                    g.protocol.as_deref(),
                    assignment,
                );
                fx.responses.push((rid, resp));
            }
        }
    }

    fn maybe_cancel_sync_timer(g: &mut Group, fx: &mut Effects) {
        if g.pending_sync.is_empty() && g.sync_deadline.take().is_some() {
            set_timer(fx, timer_key("sync", &g.id, None), None);
        }
    }

    // ---- Heartbeat ----

    fn heartbeat(&mut self, now: i64, req: &HeartbeatRequest, fx: &mut Effects) -> i16 {
        let member_id = req.member_id.to_string();
        let Some(g) = self.groups.get_mut(req.group_id.0.as_str()) else {
            return UNKNOWN_MEMBER_ID;
        };
        if g.state == State::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(e) = g.validate_member(&member_id, req.group_instance_id.as_deref()) {
            return e;
        }
        if req.generation_id != g.generation {
            return ILLEGAL_GENERATION;
        }
        Self::touch(g, now, &member_id, fx);
        match g.state {
            State::PreparingRebalance => REBALANCE_IN_PROGRESS,
            State::CompletingRebalance | State::Stable => NONE,
            State::Empty | State::Dead => UNKNOWN_MEMBER_ID,
        }
    }

    // ---- LeaveGroup ----

    fn leave_group(
        &mut self,
        now: i64,
        rid: RequestId,
        version: i16,
        req: LeaveGroupRequest,
        fx: &mut Effects,
    ) {
        let gid = req.group_id.0.to_string();
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let mut results: Vec<(String, Option<String>, i16)> = Vec::new();
        let mut top = NONE;
        match self.groups.get_mut(&gid) {
            // Kafka: an unknown group fails the whole request.
            None => top = UNKNOWN_MEMBER_ID,
            Some(g) if g.state == State::Dead => top = COORDINATOR_NOT_AVAILABLE,
            Some(g) => {
                let mut removed = false;
                for (mid, inst) in leaving {
                    let e = if let Some(i) = &inst {
                        match g.statics.get(i).cloned() {
                            None => UNKNOWN_MEMBER_ID,
                            Some(cur) if !mid.is_empty() && cur != mid => FENCED_INSTANCE_ID,
                            Some(cur) => {
                                Self::remove_member(g, &cur, fx);
                                removed = true;
                                NONE
                            }
                        }
                    } else if g.pending.remove(&mid).is_some() {
                        set_timer(fx, timer_key("pending", &gid, Some(&mid)), None);
                        removed = true;
                        NONE
                    } else if g.members.contains_key(&mid) {
                        Self::remove_member(g, &mid, fx);
                        removed = true;
                        NONE
                    } else {
                        UNKNOWN_MEMBER_ID
                    };
                    results.push((mid, inst, e));
                }
                if removed {
                    Self::after_removal(g, now, fx);
                }
            }
        }
        let mut r = LeaveGroupResponse::default();
        if version >= 3 {
            r.error_code = top;
            r.members = results
                .into_iter()
                .map(|(m, i, e)| {
                    let mut mr = MemberResponse::default();
                    mr.member_id = sb(&m);
                    mr.group_instance_id = i.as_deref().map(sb);
                    mr.error_code = e;
                    mr
                })
                .collect();
        } else {
            r.error_code = if top != NONE {
                top
            } else {
                results.first().map(|x| x.2).unwrap_or(NONE)
            };
        }
        fx.responses.push((rid, ResponseKind::LeaveGroup(r)));
    }

    // ---- timers ----

    // Each arm re-checks its deadline: a fire may be stale.
    #[allow(clippy::collapsible_match)]
    pub(super) fn timer(&mut self, now: i64, key: &TimerKey, fx: &mut Effects) {
        if key.0 == "expire" {
            self.expire_offsets(now, fx);
            set_timer(fx, expire_key(), Some(now + EXPIRE_CHECK_INTERVAL_MS));
            return;
        }
        let Some((kind, gid, member)) = parse_timer(key) else {
            return;
        };
        let gid = gid.to_string();
        let member = member.map(str::to_string);
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        let due = |d: Option<i64>| d.is_some_and(|d| d <= now);
        match (kind, member) {
            ("session", Some(mid)) => {
                if due(g.members.get(&mid).and_then(|m| m.session_deadline)) {
                    Self::remove_member(g, &mid, fx);
                    Self::after_removal(g, now, fx);
                }
            }
            ("pending", Some(mid)) => {
                if due(g.pending.get(&mid).copied()) {
                    g.pending.remove(&mid);
                    Self::maybe_complete_join(g, now, fx);
                }
            }
            ("join", None) => {
                if g.state == State::PreparingRebalance && due(g.join_deadline) {
                    match g.initial_remaining {
                        Some(remaining) if g.new_member_added && remaining > 0 => {
                            let delay = i64::from(g.config_initial_delay).min(remaining);
                            g.initial_remaining = Some((remaining - delay).max(0));
                            g.new_member_added = false;
                            let d = now + delay;
                            g.join_deadline = Some(d);
                            set_timer(fx, timer_key("join", &gid, None), Some(d));
                        }
                        _ => Self::complete_join(g, now, fx),
                    }
                }
            }
            ("sync", None) => {
                if matches!(g.state, State::CompletingRebalance | State::Stable)
                    && due(g.sync_deadline)
                {
                    g.sync_deadline = None;
                    let late: Vec<String> = g.pending_sync.iter().cloned().collect();
                    for id in &late {
                        Self::remove_member(g, id, fx);
                    }
                    if !late.is_empty() {
                        Self::prepare_rebalance(g, now, fx);
                    }
                }
            }
            _ => {}
        }
        self.gc_group(&gid);
    }

    // ---- load ----

    pub(super) fn loaded_impl(&mut self, now: i64) -> Effects {
        let mut fx = Effects::default();
        for g in self.groups.values_mut() {
            let ids: Vec<String> = g.members.keys().cloned().collect();
            for id in ids {
                Self::touch(g, now, &id, &mut fx);
            }
        }
        set_timer(&mut fx, expire_key(), Some(now + EXPIRE_CHECK_INTERVAL_MS));
        fx
    }

    pub(super) fn replay_record(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        match records::decode_key(key)? {
            Key::Other(_) => Ok(()),
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                match value {
                    None => {
                        if let Some(g) = self.groups.get_mut(&group) {
                            g.offsets.remove(&(topic, partition));
                        }
                        self.gc_group(&group);
                    }
                    Some(v) => {
                        let v = records::decode_offset_value(v)?;
                        let g = self
                            .groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(&group, -1, initial_delay));
                        if g.state == State::Empty && g.protocol_type.is_none() && g.state_ts < 0 {
                            g.state_ts = v.commit_timestamp;
                        }
                        g.offsets.insert(
                            (topic, partition),
                            Offset {
                                offset: v.offset,
                                leader_epoch: v.leader_epoch,
                                metadata: v.metadata,
                                commit_ts: v.commit_timestamp,
                                expire_ts: v.expire_timestamp,
                            },
                        );
                    }
                }
                Ok(())
            }
            Key::Group { group } => {
                match value {
                    None => {
                        if let Some(g) = self.groups.get_mut(&group) {
                            let offsets = std::mem::take(&mut g.offsets);
                            let mut fresh = Group::new(&group, g.state_ts, initial_delay);
                            fresh.offsets = offsets;
                            *g = fresh;
                        }
                        self.gc_group(&group);
                    }
                    Some(v) => {
                        let v = records::decode_group_value(v)?;
                        let g = self
                            .groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(&group, -1, initial_delay));
                        let offsets = std::mem::take(&mut g.offsets);
                        let mut fresh =
                            Group::new(&group, v.current_state_timestamp, initial_delay);
                        fresh.offsets = offsets;
                        fresh.persisted = true;
                        fresh.generation = v.generation;
                        fresh.protocol_type = if v.protocol_type.is_empty() {
                            None
                        } else {
                            Some(v.protocol_type)
                        };
                        fresh.protocol = v.protocol;
                        for m in v.members {
                            let protocols = match &fresh.protocol {
                                Some(p) => vec![(p.clone(), m.subscription)],
                                None => Vec::new(),
                            };
                            fresh.members.insert(
                                m.member_id,
                                Member {
                                    instance_id: m.group_instance_id,
                                    client_id: m.client_id,
                                    client_host: m.client_host,
                                    rebalance_timeout_ms: m.rebalance_timeout,
                                    session_timeout_ms: m.session_timeout,
                                    protocols,
                                    assignment: m.assignment,
                                    join: None,
                                    sync: None,
                                    session_deadline: None,
                                },
                            );
                        }
                        // Rebuild the instance map from the members; a (corrupt) duplicate
                        // instance id stays with its first member.
                        for (id, m) in fresh.members.iter_mut() {
                            if let Some(i) = &m.instance_id {
                                if fresh.statics.contains_key(i) {
                                    m.instance_id = None;
                                } else {
                                    fresh.statics.insert(i.clone(), id.clone());
                                }
                            }
                        }
                        fresh.leader = v.leader.filter(|l| fresh.members.contains_key(l));
                        if fresh.members.is_empty() {
                            fresh.state = State::Empty;
                        } else {
                            fresh.state = State::Stable;
                            if fresh.leader.is_none() {
                                fresh.leader = fresh.members.keys().next().cloned();
                            }
                        }
                        *g = fresh;
                    }
                }
                Ok(())
            }
        }
    }

    // ---- offsets ----

    fn offset_commit(
        &mut self,
        now: i64,
        rid: RequestId,
        version: i16,
        req: OffsetCommitRequest,
        partition_exists: &dyn Fn(&str, i32) -> bool,
        fx: &mut Effects,
    ) {
        let gid = req.group_id.0.to_string();
        let generation = req.generation_id_or_member_epoch;
        let member_id = req.member_id.to_string();
        let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let group_error: i16 = if gid.is_empty() {
            INVALID_GROUP_ID
        } else {
            match self.groups.get_mut(&gid) {
                None if generation < 0 => {
                    let g = Group::new(&gid, now, initial_delay);
                    self.groups.insert(gid.clone(), g);
                    NONE
                }
                None if version >= 9 => GROUP_ID_NOT_FOUND,
                None => ILLEGAL_GENERATION,
                Some(g) => {
                    if g.state == State::Dead {
                        COORDINATOR_NOT_AVAILABLE
                    } else if generation < 0 && g.state == State::Empty {
                        // Admin or standalone consumer commit to an empty group.
                        NONE
                    } else if generation >= 0 || !member_id.is_empty() || instance.is_some() {
                        match g.validate_member(&member_id, instance.as_deref()) {
                            Err(e) => e,
                            Ok(()) if generation != g.generation => ILLEGAL_GENERATION,
                            Ok(()) if g.state == State::CompletingRebalance => {
                                REBALANCE_IN_PROGRESS
                            }
                            Ok(()) => {
                                Self::touch(g, now, &member_id, fx);
                                NONE
                            }
                        }
                    } else if g.state != State::Empty {
                        UNKNOWN_MEMBER_ID
                    } else {
                        NONE
                    }
                }
            }
        };
        let max_meta = self.config.offset_metadata_max_bytes;
        // v2-v4 may carry a retention time (-1 = the broker's); Kafka then stores an
        // expire timestamp with the offset.
        let expire_ts = if (2..=4).contains(&version) && req.retention_time_ms != -1 {
            Some(now.saturating_add(req.retention_time_ms))
        } else {
            None
        };
        let mut topics = Vec::new();
        for t in &req.topics {
            let topic = t.name.0.to_string();
            let mut rt = OffsetCommitResponseTopic::default();
            rt.name = t.name.clone();
            if version >= 10 {
                rt.topic_id = t.topic_id;
            }
            for p in &t.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let e = if group_error != NONE {
                    group_error
                } else if !partition_exists(&topic, p.partition_index) {
                    UNKNOWN_TOPIC_OR_PARTITION
                } else if metadata.len() > max_meta {
                    OFFSET_METADATA_TOO_LARGE
                } else {
                    let leader_epoch = if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    };
                    let value = OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch,
                        metadata: metadata.clone(),
                        commit_timestamp: now,
                        expire_timestamp: expire_ts,
                    };
                    fx.records.push(Record {
                        key: records::offset_key(&gid, &topic, p.partition_index),
                        value: Some(records::offset_value(&value)),
                    });
                    if let Some(g) = self.groups.get_mut(&gid) {
                        g.offsets.insert(
                            (topic.clone(), p.partition_index),
                            Offset {
                                offset: p.committed_offset,
                                leader_epoch,
                                metadata,
                                commit_ts: now,
                                expire_ts,
                            },
                        );
                    }
                    NONE
                };
                let mut rp = OffsetCommitResponsePartition::default();
                rp.partition_index = p.partition_index;
                rp.error_code = e;
                rt.partitions.push(rp);
            }
            topics.push(rt);
        }
        self.gc_group(&gid);
        let mut r = OffsetCommitResponse::default();
        r.topics = topics;
        fx.responses.push((rid, ResponseKind::OffsetCommit(r)));
    }

    /// (topic, [(partition, offset)]) for a fetch; `None` topics = all committed.
    fn fetch_offsets(
        &self,
        gid: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<TopicOffsets> {
        let g = self.groups.get(gid);
        match topics {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| (p, g.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned())))
                        .collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut out: Vec<TopicOffsets> = Vec::new();
                if let Some(g) = g {
                    for ((t, p), o) in &g.offsets {
                        match out.last_mut() {
                            Some((lt, v)) if lt == t => v.push((*p, Some(o.clone()))),
                            _ => out.push((t.clone(), vec![(*p, Some(o.clone()))])),
                        }
                    }
                }
                out
            }
        }
    }

    fn offset_fetch(
        &mut self,
        rid: RequestId,
        version: i16,
        req: OffsetFetchRequest,
        fx: &mut Effects,
    ) {
        let epoch = |o: &Option<Offset>| {
            if version >= 5 {
                o.as_ref().map(|o| o.leader_epoch).unwrap_or(-1)
            } else {
                -1
            }
        };
        let mut r = OffsetFetchResponse::default();
        if version >= 8 {
            for grp in &req.groups {
                let gid = grp.group_id.0.to_string();
                let ids: HashMap<String, Uuid> = grp
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| (t.name.0.to_string(), t.topic_id))
                    .collect();
                let topics = grp.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let mut rg = OffsetFetchResponseGroup::default();
                rg.group_id = grp.group_id.clone();
                for (t, parts) in self.fetch_offsets(&gid, topics) {
                    let mut rt = OffsetFetchResponseTopics::default();
                    if version >= 10 {
                        rt.topic_id = ids.get(&t).copied().unwrap_or_default();
                    }
                    rt.name = TopicName(sb(&t));
                    for (p, o) in parts {
                        let mut rp = OffsetFetchResponsePartitions::default();
                        rp.partition_index = p;
                        rp.committed_offset = o.as_ref().map(|o| o.offset).unwrap_or(-1);
                        rp.committed_leader_epoch = epoch(&o);
                        rp.metadata =
                            Some(sb(o.as_ref().map(|o| o.metadata.as_str()).unwrap_or("")));
                        rt.partitions.push(rp);
                    }
                    rg.topics.push(rt);
                }
                r.groups.push(rg);
            }
        } else {
            let gid = req.group_id.0.to_string();
            let topics = req.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            for (t, parts) in self.fetch_offsets(&gid, topics) {
                let mut rt = OffsetFetchResponseTopic::default();
                rt.name = TopicName(sb(&t));
                for (p, o) in parts {
                    let mut rp = OffsetFetchResponsePartition::default();
                    rp.partition_index = p;
                    rp.committed_offset = o.as_ref().map(|o| o.offset).unwrap_or(-1);
                    rp.committed_leader_epoch = epoch(&o);
                    rp.metadata = Some(sb(o.as_ref().map(|o| o.metadata.as_str()).unwrap_or("")));
                    rt.partitions.push(rp);
                }
                r.topics.push(rt);
            }
        }
        fx.responses.push((rid, ResponseKind::OffsetFetch(r)));
    }

    fn offset_delete(
        &mut self,
        _now: i64,
        rid: RequestId,
        req: OffsetDeleteRequest,
        fx: &mut Effects,
    ) {
        let gid = req.group_id.0.to_string();
        let mut r = OffsetDeleteResponse::default();
        match self.groups.get_mut(&gid) {
            None => r.error_code = GROUP_ID_NOT_FOUND,
            Some(g) if g.state == State::Dead => r.error_code = GROUP_ID_NOT_FOUND,
            Some(g)
                if g.state != State::Empty && g.protocol_type.as_deref() != Some("consumer") =>
            {
                r.error_code = NON_EMPTY_GROUP
            }
            Some(g) => {
                for t in &req.topics {
                    let topic = t.name.0.to_string();
                    let subscribed = g.is_subscribed(&topic);
                    let mut rt = OffsetDeleteResponseTopic::default();
                    rt.name = t.name.clone();
                    for p in &t.partitions {
                        let e = if subscribed {
                            GROUP_SUBSCRIBED_TO_TOPIC
                        } else {
                            if g.offsets
                                .remove(&(topic.clone(), p.partition_index))
                                .is_some()
                            {
                                fx.records.push(Record {
                                    key: records::offset_key(&gid, &topic, p.partition_index),
                                    value: None,
                                });
                            }
                            NONE
                        };
                        let mut rp = OffsetDeleteResponsePartition::default();
                        rp.partition_index = p.partition_index;
                        rp.error_code = e;
                        rt.partitions.push(rp);
                    }
                    r.topics.push(rt);
                }
            }
        }
        self.gc_group(&gid);
        fx.responses.push((rid, ResponseKind::OffsetDelete(r)));
    }

    /// Kafka's offset expiration (KIP-211 / KIP-496, `offsetExpirationCondition`), then
    /// deletion of groups left Empty with no offsets.
    fn expire_offsets(&mut self, now: i64, fx: &mut Effects) {
        /// Which timestamp an offset's retention counts from.
        #[derive(Clone, Copy)]
        enum Base {
            StateChange(i64),
            Commit,
        }
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for g in self.groups.values_mut() {
            let (base, subscribed) = if g.protocol_type.is_some() {
                if g.state == State::Empty {
                    let base = if g.state_ts >= 0 {
                        Base::StateChange(g.state_ts)
                    } else {
                        Base::Commit
                    };
                    (Some(base), None)
                } else if g.state == State::Stable {
                    match g.subscribed_topics() {
                        Some(t) => (Some(Base::Commit), Some(t)),
                        None => (None, None),
                    }
                } else {
                    (None, None)
                }
            } else {
                (Some(Base::Commit), None)
            };
            let Some(base) = base else { continue };
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|((t, _), o)| {
                    if subscribed.as_ref().is_some_and(|s| s.contains(t)) {
                        return false;
                    }
                    match o.expire_ts {
                        Some(e) => now >= e,
                        None => {
                            let from = match base {
                                Base::StateChange(ts) => ts,
                                Base::Commit => o.commit_ts,
                            };
                            now.saturating_sub(from) >= retention
                        }
                    }
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (t, p) in expired {
                g.offsets.remove(&(t.clone(), p));
                fx.records.push(Record {
                    key: records::offset_key(&g.id, &t, p),
                    value: None,
                });
            }
            if g.state == State::Empty && g.offsets.is_empty() && g.pending.is_empty() {
                dead.push(g.id.clone());
            }
        }
        for gid in dead {
            if let Some(g) = self.groups.remove(&gid) {
                if g.persisted {
                    fx.records.push(Record {
                        key: records::group_key(&gid),
                        value: None,
                    });
                }
            }
        }
    }

    // ---- admin ----

    fn describe_groups(
        &mut self,
        rid: RequestId,
        version: i16,
        req: DescribeGroupsRequest,
        fx: &mut Effects,
    ) {
        let mut r = DescribeGroupsResponse::default();
        for gid in &req.groups {
            let mut d = DescribedGroup::default();
            d.group_id = gid.clone();
            match self.groups.get(gid.0.as_str()) {
                None => {
                    d.group_state = sb(State::Dead.name());
                    if version >= 6 {
                        d.error_code = GROUP_ID_NOT_FOUND;
                        d.error_message = Some(sb(&format!("Group {} not found.", gid.0.as_str())));
                    }
                }
                Some(g) => {
                    d.group_state = sb(g.state.name());
                    d.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
                    let stable = g.state == State::Stable;
                    if stable {
                        d.protocol_data = sb(g.protocol.as_deref().unwrap_or(""));
                    }
                    for (id, m) in &g.members {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = sb(id);
                        if version >= 4 {
                            dm.group_instance_id = m.instance_id.as_deref().map(sb);
                        }
                        dm.client_id = sb(&m.client_id);
                        dm.client_host = sb(&m.client_host);
                        if stable {
                            dm.member_metadata = m.metadata(g.protocol.as_deref());
                            dm.member_assignment = m.assignment.clone();
                        }
                        d.members.push(dm);
                    }
                }
            }
            r.groups.push(d);
        }
        fx.responses.push((rid, ResponseKind::DescribeGroups(r)));
    }

    fn list_groups(
        &mut self,
        rid: RequestId,
        version: i16,
        req: ListGroupsRequest,
        fx: &mut Effects,
    ) {
        let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
        let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
        let mut r = ListGroupsResponse::default();
        for g in self.groups.values() {
            if g.state == State::Dead {
                continue;
            }
            if !states.is_empty() && !states.contains(&g.state.name().to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t == "classic") {
                continue;
            }
            let mut l = ListedGroup::default();
            l.group_id = GroupId(sb(&g.id));
            l.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
            if version >= 4 {
                l.group_state = sb(g.state.name());
            }
            if version >= 5 {
                l.group_type = sb("classic");
            }
            r.groups.push(l);
        }
        fx.responses.push((rid, ResponseKind::ListGroups(r)));
    }

    fn delete_groups(&mut self, rid: RequestId, req: DeleteGroupsRequest, fx: &mut Effects) {
        let mut r = DeleteGroupsResponse::default();
        for gid in &req.groups_names {
            let id = gid.0.to_string();
            let e = match self.groups.get(&id) {
                None => GROUP_ID_NOT_FOUND,
                Some(g) if g.state == State::Dead => GROUP_ID_NOT_FOUND,
                Some(g) if g.state != State::Empty => NON_EMPTY_GROUP,
                Some(_) => {
                    if let Some(g) = self.groups.remove(&id) {
                        for (t, p) in g.offsets.keys() {
                            fx.records.push(Record {
                                key: records::offset_key(&id, t, *p),
                                value: None,
                            });
                        }
                        fx.records.push(Record {
                            key: records::group_key(&id),
                            value: None,
                        });
                        for pm in g.pending.keys() {
                            set_timer(fx, timer_key("pending", &id, Some(pm)), None);
                        }
                    }
                    NONE
                }
            };
            let mut d = DeletableGroupResult::default();
            d.group_id = gid.clone();
            d.error_code = e;
            r.results.push(d);
        }
        fx.responses.push((rid, ResponseKind::DeleteGroups(r)));
    }
}
