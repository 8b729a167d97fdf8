//! The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, rebalances,
//! static membership and the membership timers.

use super::coordinator::*;
use super::{
    Effects, GroupCoordinator, RequestId, RequestMeta, TimerKey, EXPIRE_CHECK_INTERVAL_MS,
};
use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::*;
use std::collections::{BTreeSet, HashMap};

impl Group {
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

pub(super) fn heartbeat_response(error: i16) -> ResponseKind {
    let mut r = HeartbeatResponse::default();
    r.error_code = error;
    ResponseKind::Heartbeat(r)
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl GroupCoordinator {
    // ---- JoinGroup ----

    pub(super) fn join_group(
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
    pub(super) fn touch(g: &mut Group, now: i64, id: &str, fx: &mut Effects) {
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

    pub(super) fn sync_group(
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

    pub(super) fn heartbeat(&mut self, now: i64, req: &HeartbeatRequest, fx: &mut Effects) -> i16 {
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

    pub(super) fn leave_group(
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
}
