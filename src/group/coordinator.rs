//! The group model shared by `classic` (membership) and `offsets` (committed offsets):
//! the group and member state, error codes, timer keys, request dispatch, load/replay,
//! and the group-level admin requests (DescribeGroups, ListGroups, DeleteGroups).

use super::classic::heartbeat_response;
use super::records::{self, GroupValue, Key, MemberValue};
use super::{
    Effects, GroupCoordinator, GroupRequest, Record, RecordError, RequestId, RequestMeta, TimerKey,
    EXPIRE_CHECK_INTERVAL_MS,
};
use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
pub(crate) const UNSTABLE_OFFSET_COMMIT: i16 = 88;

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
    pub(super) fn metadata(&self, protocol: Option<&str>) -> Bytes {
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
    /// Its record's place in log order (the log offset when replayed): a committed
    /// transaction's offset replaces a plain one only if written after it, as Kafka.
    pub(crate) pos: i64,
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
    /// Producer id → its pending transactional offsets (invisible until its commit
    /// marker); never an empty map (a tombstone that empties one drops the producer).
    pub(crate) pending_txn: BTreeMap<i64, BTreeMap<(String, i32), Offset>>,
    /// A group metadata record exists for it (a deletion then needs a tombstone).
    pub(crate) persisted: bool,
    /// `group.initial.rebalance.delay.ms`.
    pub(crate) config_initial_delay: i32,
}

impl Group {
    pub(super) fn new(id: &str, now: i64, initial_delay: i32) -> Group {
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
            pending_txn: BTreeMap::new(),
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
        debug_assert!(self.pending_txn.values().all(|m| !m.is_empty()));
    }

    pub(super) fn set_state(&mut self, s: State, now: i64) {
        self.state = s;
        self.state_ts = now;
    }

    /// Kafka's `validateMember`: static fencing, then membership.
    pub(super) fn validate_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), i16> {
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
    pub(super) fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
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
    pub(super) fn is_subscribed(&self, topic: &str) -> bool {
        match self.subscribed_topics() {
            Some(t) => t.contains(topic),
            None => self.protocol_type.as_deref() == Some("consumer"),
        }
    }

    pub(super) fn record(&self) -> Record {
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

pub(super) fn timer_key(kind: &str, group: &str, member: Option<&str>) -> TimerKey {
    match member {
        Some(m) => TimerKey(format!("{kind}/{}:{group}/{m}", group.len())),
        None => TimerKey(format!("{kind}/{}:{group}", group.len())),
    }
}

pub(super) fn expire_key() -> TimerKey {
    TimerKey("expire".to_string())
}

/// (kind, group, member) from a key; None for garbage.
pub(super) fn parse_timer(key: &TimerKey) -> Option<(&str, &str, Option<&str>)> {
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

pub(super) fn set_timer(fx: &mut Effects, key: TimerKey, deadline: Option<i64>) {
    fx.timers.push((key, deadline));
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
            GroupRequest::TxnOffsetCommit(r) => {
                self.txn_offset_commit(now, rid, version, r, partition_exists, fx)
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
                for pid in g.pending_txn.keys() {
                    debug_assert!(
                        self.txn_groups.get(pid).is_some_and(|s| s.contains(&g.id)),
                        "{}: producer {pid} indexed",
                        g.id
                    );
                }
            }
        }
    }

    /// Drops a group that was created in memory but never got anything worth keeping.
    pub(super) fn gc_group(&mut self, gid: &str) {
        if let Some(g) = self.groups.get(gid) {
            if g.state == State::Empty
                && g.members.is_empty()
                && g.pending.is_empty()
                && g.offsets.is_empty()
                && g.pending_txn.is_empty()
                && !g.persisted
            {
                self.groups.remove(gid);
            }
        }
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

    /// One `__consumer_offsets` record at position `pos`; `producer`: the producer id of
    /// its transactional batch.
    pub(super) fn replay_record(
        &mut self,
        pos: i64,
        producer: Option<i64>,
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
                    None => self.apply_offset_tombstone(&group, &topic, partition),
                    Some(v) => {
                        let v = records::decode_offset_value(v)?;
                        let offset = Offset {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_ts: v.commit_timestamp,
                            expire_ts: v.expire_timestamp,
                            pos,
                        };
                        self.apply_offset(producer, &group, topic, partition, offset);
                    }
                }
                Ok(())
            }
            Key::Group { group } => {
                match value {
                    None => {
                        if let Some(g) = self.groups.get_mut(&group) {
                            let mut fresh = Group::new(&group, g.state_ts, initial_delay);
                            fresh.offsets = std::mem::take(&mut g.offsets);
                            fresh.pending_txn = std::mem::take(&mut g.pending_txn);
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
                        let mut fresh =
                            Group::new(&group, v.current_state_timestamp, initial_delay);
                        fresh.offsets = std::mem::take(&mut g.offsets);
                        fresh.pending_txn = std::mem::take(&mut g.pending_txn);
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
                        // Kafka: a tombstone per committed offset and per partition with
                        // only pending transactional offsets.
                        let pending = g.pending_txn.values().flat_map(|m| m.keys());
                        let parts: BTreeSet<&(String, i32)> =
                            g.offsets.keys().chain(pending).collect();
                        for (t, p) in parts {
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
