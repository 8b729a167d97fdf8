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
use kafka_protocol::messages::*;
use std::collections::HashMap;
use uuid::Uuid;

/// A topic's partitions and their committed offsets (None = no commit).
type TopicOffsets = (String, Vec<(i32, Option<Offset>)>);

impl GroupCoordinator {
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

    pub(super) fn offset_fetch(
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

    pub(super) fn offset_delete(
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
}
