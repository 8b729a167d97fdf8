//! The group coordinator core: a pure state machine for the classic consumer group
//! protocol and committed offsets, one instance per `__consumer_offsets` partition
//! (shard). Requests and timer events go in; records to persist, responses and timer
//! changes come out as [`Effects`]. It never does IO and never reads a clock: the
//! runtime (`group::runtime`) owns both, and tests drive it with a simulated clock.
//!
//! CONTRACT STUB: the signatures below are what the runtime and the handlers code
//! against; the bodies are being written on the `group` branch.

pub mod runtime;

use bytes::Bytes;
use kafka_protocol::messages::*;

/// Broker settings the coordinator uses, under Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`
    pub max_size: i32,
    /// `offsets.retention.minutes`, in ms: offsets of an empty group expire after this.
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// Identifies one client request; its response may come out of a later call.
pub type RequestId = u64;

/// A timer the runtime keeps: at most one deadline per key; opaque to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimerKey(String);

/// One `__consumer_offsets` record in Kafka's format; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad __consumer_offsets record: {0}")]
pub struct RecordError(pub String);

/// The requests a shard handles. Multi-group requests (OffsetFetch v8+, DescribeGroups,
/// DeleteGroups) carry only this shard's groups: the handlers split them.
#[derive(Debug)]
pub enum GroupRequest {
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    OffsetDelete(OffsetDeleteRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
}

/// What one call produced. The runtime persists `records` (in order, as one batch)
/// before it sends any of `responses`; `timers` set (Some deadline) or cancel (None).
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<Record>,
    pub responses: Vec<(RequestId, ResponseKind)>,
    pub timers: Vec<(TimerKey, Option<i64>)>,
}

/// One shard's groups and offsets.
pub struct GroupCoordinator {
    _private: (),
}

impl GroupCoordinator {
    pub fn new(_config: GroupConfig) -> GroupCoordinator {
        todo!("group branch")
    }
    /// Applies one record read back from the shard's partition at load time.
    pub fn replay(&mut self, _key: &[u8], _value: Option<&[u8]>) -> Result<(), RecordError> {
        todo!("group branch")
    }
    /// After the last replayed record: the timers loaded groups need.
    pub fn loaded(&mut self, _now_ms: i64) -> Effects {
        todo!("group branch")
    }
    /// `partition_exists(topic, partition)` answers for OffsetCommit validation.
    pub fn handle(
        &mut self,
        _now_ms: i64,
        _request_id: RequestId,
        _version: i16,
        _request: GroupRequest,
        _partition_exists: &dyn Fn(&str, i32) -> bool,
    ) -> Effects {
        todo!("group branch")
    }
    pub fn on_timer(&mut self, _now_ms: i64, _timer: TimerKey) -> Effects {
        todo!("group branch")
    }
}

/// The `__consumer_offsets` partition of a group, as Kafka computes it:
/// `abs(java String.hashCode(group_id)) % partitions`.
pub fn partition_for_group(_group_id: &str, _partitions: i32) -> i32 {
    todo!("group branch")
}
