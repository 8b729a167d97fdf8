//! The group coordinator core: a pure state machine for the classic consumer group
//! protocol and committed offsets, one instance per `__consumer_offsets` partition
//! (shard). Requests and timer events go in; records to persist, responses and timer
//! changes come out as [`Effects`]. It never does IO and never reads a clock: the
//! runtime (`group::runtime`) owns both, and tests drive it with a simulated clock.
//!
//! Submodules: `records` (the `__consumer_offsets` format), `coordinator` (the group
//! model, dispatch, load/replay, describe/list/delete), `classic` (membership, rebalances,
//! timers), `offsets` (commit/fetch/delete/expire). Timer keys are documented on [`TimerKey`].

pub mod runtime;

use bytes::Bytes;
use kafka_protocol::messages::*;
use std::collections::BTreeMap;

mod classic;
mod coordinator;
mod offsets;
mod records;
#[cfg(test)]
mod tests;

/// How often the runtime-driven `expire` timer checks for expired offsets
/// (Kafka's `offsets.retention.check.interval.ms` default).
pub const EXPIRE_CHECK_INTERVAL_MS: i64 = 600_000;

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
///
/// When a deadline passes the runtime calls [`GroupCoordinator::on_timer`] with the key
/// (a later `Some` for the same key replaces the deadline, `None` cancels it). A fire
/// for a deadline that is no longer current is harmless: the coordinator keeps its own
/// deadlines and ignores stale fires. Encoding (for logs only): `expire` (periodic
/// offset expiration), `session/<len>:<group>/<member>`, `pending/<len>:<group>/<member>`
/// (KIP-394 member id awaiting its rejoin), `join/<len>:<group>` (join phase end),
/// `sync/<len>:<group>` (members that must SyncGroup by the rebalance timeout), where
/// `<len>` is the group id's byte length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimerKey(String);

impl TimerKey {
    /// The key as text, for logging.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Per-request data the request bodies lack: the header's client id and the peer's
/// host. Pass it with [`GroupCoordinator::handle_with_meta`]; it is recorded for JoinGroup
/// (member ids are `<client_id>-<uuid>` and DescribeGroups shows both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The request header's client id ("" if absent).
    pub client_id: String,
    /// The client's address as Kafka shows it, e.g. "/10.0.0.7".
    pub client_host: String,
}

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
///
/// Bounds: members per group (plus KIP-394 pending member ids) ≤ `max_size`; at most
/// one parked JoinGroup and one parked SyncGroup per member; every parked request is
/// answered by a later call (completion, a timer, removal of its member or group, or a
/// newer request from the same member).
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, coordinator::Group>,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
        }
    }
    /// Applies one record read back from the shard's partition at load time.
    /// Record types that aren't classic-group or offset records are skipped.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        self.replay_record(key, value)
    }
    /// After the last replayed record: the timers loaded groups need (a fresh session
    /// timeout for every loaded member, and the periodic `expire` timer). Call it once per
    /// load even when nothing was replayed: it starts offset expiration. `records` is
    /// always empty.
    pub fn loaded(&mut self, now_ms: i64) -> Effects {
        self.check_invariants();
        self.loaded_impl(now_ms)
    }
    /// `partition_exists(topic, partition)` answers for OffsetCommit validation.
    /// Same as [`GroupCoordinator::handle_with_meta`] with an empty [`RequestMeta`].
    pub fn handle(
        &mut self,
        now_ms: i64,
        request_id: RequestId,
        version: i16,
        request: GroupRequest,
        partition_exists: &dyn Fn(&str, i32) -> bool,
    ) -> Effects {
        self.handle_with_meta(
            now_ms,
            request_id,
            version,
            request,
            &RequestMeta::default(),
            partition_exists,
        )
    }
    /// [`GroupCoordinator::handle`] with the request header's client id and the client host.
    pub fn handle_with_meta(
        &mut self,
        now_ms: i64,
        request_id: RequestId,
        version: i16,
        request: GroupRequest,
        meta: &RequestMeta,
        partition_exists: &dyn Fn(&str, i32) -> bool,
    ) -> Effects {
        let mut fx = Effects::default();
        self.dispatch(
            now_ms,
            request_id,
            version,
            request,
            meta,
            partition_exists,
            &mut fx,
        );
        self.check_invariants();
        fx
    }
    pub fn on_timer(&mut self, now_ms: i64, timer: TimerKey) -> Effects {
        let mut fx = Effects::default();
        self.timer(now_ms, &timer, &mut fx);
        self.check_invariants();
        fx
    }
}

/// The `__consumer_offsets` partition of a group, as Kafka computes it:
/// `abs(java String.hashCode(group_id)) % partitions` with Kafka's `Utils.abs`
/// (`Integer.MIN_VALUE` maps to 0).
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}
