//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and offset expiration.

use super::coordinator::*;
use super::records::{self, OffsetValue};
use super::{Effects, GroupCoordinator, Record, RequestId};
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
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use std::collections::HashMap;
use uuid::Uuid;

/// A partition's fetched offset (None = no commit), or its error.
type Fetched = Result<Option<Offset>, i16>;

/// A topic's partitions and their fetched offsets.
type TopicOffsets = (String, Vec<(i32, Fetched)>);

impl GroupCoordinator {
    // ---- offset records: the one way offsets change, live and at replay ----

    /// The next record position (see `GroupCoordinator::next_pos`).
    pub(super) fn take_pos(&mut self) -> i64 {
        let pos = self.next_pos;
        self.next_pos = self.next_pos.saturating_add(1);
        pos
    }

    /// Writes an offset record (of `producer`'s transaction, or plain) and applies it.
    fn emit_offset(
        &mut self,
        producer: Option<i64>,
        gid: &str,
        topic: &str,
        partition: i32,
        offset: Offset,
        fx: &mut Effects,
    ) {
        let value = OffsetValue {
            offset: offset.offset,
            leader_epoch: offset.leader_epoch,
            metadata: offset.metadata.clone(),
            commit_timestamp: offset.commit_ts,
            expire_timestamp: offset.expire_ts,
        };
        fx.records.push(Record {
            key: records::offset_key(gid, topic, partition),
            value: Some(records::offset_value(&value)),
        });
        self.apply_offset(producer, gid, topic.to_string(), partition, offset);
    }

    /// An offset record: committed if plain, pending for its producer if transactional.
    /// Like Kafka, a record for an unknown group creates a simple (protocol-less) group.
    pub(super) fn apply_offset(
        &mut self,
        producer: Option<i64>,
        gid: &str,
        topic: String,
        partition: i32,
        offset: Offset,
    ) {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let g = self
            .groups
            .entry(gid.to_string())
            .or_insert_with(|| Group::new(gid, -1, initial_delay));
        if g.state == State::Empty && g.protocol_type.is_none() && g.state_ts < 0 {
            g.state_ts = offset.commit_ts;
        }
        match producer {
            None => {
                g.offsets.insert((topic, partition), offset);
            }
            Some(pid) => {
                g.pending_txn
                    .entry(pid)
                    .or_default()
                    .insert((topic, partition), offset);
                self.txn_groups
                    .entry(pid)
                    .or_default()
                    .insert(gid.to_string());
            }
        }
    }

    /// An offset tombstone: drops the committed offset and every producer's pending one.
    pub(super) fn apply_offset_tombstone(&mut self, gid: &str, topic: &str, partition: i32) {
        if let Some(g) = self.groups.get_mut(gid) {
            let key = (topic.to_string(), partition);
            g.offsets.remove(&key);
            g.pending_txn.retain(|_, m| {
                m.remove(&key);
                !m.is_empty()
            });
        }
        self.gc_group(gid);
    }

    /// A transaction marker: commit moves the producer's pending offsets into the
    /// committed ones unless a plain commit of the same partition was written after them
    /// (Kafka keeps the later record); abort drops them.
    pub(super) fn apply_marker(&mut self, producer_id: i64, commit: bool) {
        let Some(gids) = self.txn_groups.remove(&producer_id) else {
            return;
        };
        for gid in gids {
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            let Some(pending) = g.pending_txn.remove(&producer_id) else {
                continue;
            };
            if commit {
                for (key, offset) in pending {
                    if g.offsets.get(&key).is_none_or(|o| offset.pos > o.pos) {
                        g.offsets.insert(key, offset);
                    }
                }
            }
            self.gc_group(&gid);
        }
    }

    /// Whether a transaction has a pending offset for the partition.
    fn has_pending(g: &Group, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        g.pending_txn.values().any(|m| m.contains_key(&key))
    }

    // ---- offsets ----

    pub(super) fn offset_commit(
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
                    let offset = Offset {
                        offset: p.committed_offset,
                        leader_epoch,
                        metadata,
                        commit_ts: now,
                        expire_ts,
                        pos: self.take_pos(),
                    };
                    self.emit_offset(None, &gid, &topic, p.partition_index, offset, fx);
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

    /// Kafka's TxnOffsetCommit: the group checks of a transactional commit (a member id
    /// or generation is checked when given, v3+; none is needed otherwise, and the group's
    /// state is not), then one pending offset record per valid partition, written as a
    /// transactional batch of the request's producer.
    pub(super) fn txn_offset_commit(
        &mut self,
        now: i64,
        rid: RequestId,
        version: i16,
        req: TxnOffsetCommitRequest,
        partition_exists: &dyn Fn(&str, i32) -> bool,
        fx: &mut Effects,
    ) {
        let gid = req.group_id.0.to_string();
        let generation = req.generation_id;
        let member_id = req.member_id.to_string();
        let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let group_error: i16 = if gid.is_empty() {
            INVALID_GROUP_ID
        } else {
            match self.groups.get(&gid) {
                None if generation < 0 => {
                    let g = Group::new(&gid, now, initial_delay);
                    self.groups.insert(gid.clone(), g);
                    NONE
                }
                None => ILLEGAL_GENERATION,
                Some(g) if g.state == State::Dead => COORDINATOR_NOT_AVAILABLE,
                Some(g) if generation < 0 && g.state == State::Empty => NONE,
                Some(g) if generation >= 0 || !member_id.is_empty() || instance.is_some() => {
                    match g.validate_member(&member_id, instance.as_deref()) {
                        Err(e) => e,
                        Ok(()) if generation != g.generation => ILLEGAL_GENERATION,
                        Ok(()) => NONE,
                    }
                }
                Some(_) => NONE,
            }
        };
        let producer_id = req.producer_id.0;
        let max_meta = self.config.offset_metadata_max_bytes;
        let mut r = TxnOffsetCommitResponse::default();
        for t in &req.topics {
            let topic = t.name.0.to_string();
            let mut rt = TxnOffsetCommitResponseTopic::default();
            rt.name = t.name.clone();
            for p in &t.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                // Kafka answers unknown partitions before asking the coordinator.
                let e = if !partition_exists(&topic, p.partition_index) {
                    UNKNOWN_TOPIC_OR_PARTITION
                } else if group_error != NONE {
                    group_error
                } else if metadata.len() > max_meta {
                    OFFSET_METADATA_TOO_LARGE
                } else {
                    let offset = Offset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                        commit_ts: now,
                        expire_ts: None,
                        pos: self.take_pos(),
                    };
                    let partition = p.partition_index;
                    self.emit_offset(Some(producer_id), &gid, &topic, partition, offset, fx);
                    NONE
                };
                let mut rp = TxnOffsetCommitResponsePartition::default();
                rp.partition_index = p.partition_index;
                rp.error_code = e;
                rt.partitions.push(rp);
            }
            r.topics.push(rt);
        }
        if !fx.records.is_empty() {
            fx.producer = Some((producer_id, req.producer_epoch));
        }
        self.gc_group(&gid);
        fx.responses.push((rid, ResponseKind::TxnOffsetCommit(r)));
    }

    /// (topic, [(partition, offset)]) for a fetch; `None` topics = all committed. With
    /// `require_stable`, a partition with a pending transactional offset is
    /// UNSTABLE_OFFSET_COMMIT (Kafka's per-partition answer, all versions alike).
    fn fetch_offsets(
        &self,
        gid: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Vec<TopicOffsets> {
        let g = self.groups.get(gid);
        let fetched = |t: &str, p: i32| match g {
            Some(g) if require_stable && Self::has_pending(g, t, p) => Err(UNSTABLE_OFFSET_COMMIT),
            Some(g) => Ok(g.offsets.get(&(t.to_string(), p)).cloned()),
            None => Ok(None),
        };
        match topics {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps.into_iter().map(|p| (p, fetched(&t, p))).collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut out: Vec<TopicOffsets> = Vec::new();
                if let Some(g) = g {
                    for (t, p) in g.offsets.keys() {
                        let o = fetched(t, *p);
                        match out.last_mut() {
                            Some((lt, v)) if lt == t => v.push((*p, o)),
                            _ => out.push((t.clone(), vec![(*p, o)])),
                        }
                    }
                }
                out
            }
        }
    }

    pub(super) fn offset_fetch(
        &mut self,
        rid: RequestId,
        version: i16,
        req: OffsetFetchRequest,
        fx: &mut Effects,
    ) {
        // (error, offset, leader epoch, metadata) of a partition's answer.
        let answer = |o: Fetched| match o {
            Err(e) => (e, -1, -1, String::new()),
            Ok(None) => (NONE, -1, -1, String::new()),
            Ok(Some(o)) => {
                let epoch = if version >= 5 { o.leader_epoch } else { -1 };
                (NONE, o.offset, epoch, o.metadata)
            }
        };
        let require_stable = version >= 7 && req.require_stable;
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
                for (t, parts) in self.fetch_offsets(&gid, topics, require_stable) {
                    let mut rt = OffsetFetchResponseTopics::default();
                    if version >= 10 {
                        rt.topic_id = ids.get(&t).copied().unwrap_or_default();
                    }
                    rt.name = TopicName(sb(&t));
                    for (p, o) in parts {
                        let (error, offset, epoch, metadata) = answer(o);
                        let mut rp = OffsetFetchResponsePartitions::default();
                        rp.partition_index = p;
                        rp.error_code = error;
                        rp.committed_offset = offset;
                        rp.committed_leader_epoch = epoch;
                        rp.metadata = Some(sb(&metadata));
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
            for (t, parts) in self.fetch_offsets(&gid, topics, require_stable) {
                let mut rt = OffsetFetchResponseTopic::default();
                rt.name = TopicName(sb(&t));
                for (p, o) in parts {
                    let (error, offset, epoch, metadata) = answer(o);
                    let mut rp = OffsetFetchResponsePartition::default();
                    rp.partition_index = p;
                    rp.error_code = error;
                    rp.committed_offset = offset;
                    rp.committed_leader_epoch = epoch;
                    rp.metadata = Some(sb(&metadata));
                    rt.partitions.push(rp);
                }
                r.topics.push(rt);
            }
        }
        fx.responses.push((rid, ResponseKind::OffsetFetch(r)));
    }

    pub(super) fn offset_delete(
        &mut self,
        _now: i64,
        rid: RequestId,
        req: OffsetDeleteRequest,
        fx: &mut Effects,
    ) {
        let gid = req.group_id.0.to_string();
        let mut r = OffsetDeleteResponse::default();
        let mut deleted = Vec::new();
        match self.groups.get(&gid) {
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
                            // Kafka: a tombstone for a committed or a pending offset.
                            let key = (topic.clone(), p.partition_index);
                            if g.offsets.contains_key(&key)
                                || Self::has_pending(g, &topic, p.partition_index)
                            {
                                deleted.push(key);
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
        for (topic, partition) in deleted {
            fx.records.push(Record {
                key: records::offset_key(&gid, &topic, partition),
                value: None,
            });
            self.apply_offset_tombstone(&gid, &topic, partition);
        }
        self.gc_group(&gid);
        fx.responses.push((rid, ResponseKind::OffsetDelete(r)));
    }

    /// Kafka's offset expiration (KIP-211 / KIP-496, `offsetExpirationCondition`), then
    /// deletion of groups left Empty with no offsets.
    pub(super) fn expire_offsets(&mut self, now: i64, fx: &mut Effects) {
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
                .filter(|((t, p), o)| {
                    // Kafka keeps an offset while a transaction has one pending for it.
                    if subscribed.as_ref().is_some_and(|s| s.contains(t))
                        || Self::has_pending(g, t, *p)
                    {
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
            // Nor is a group with an open transaction deleted.
            if g.state == State::Empty
                && g.offsets.is_empty()
                && g.pending.is_empty()
                && g.pending_txn.is_empty()
            {
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
}
