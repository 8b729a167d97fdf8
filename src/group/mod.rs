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

use kafka_protocol::messages::*;
use std::collections::{BTreeMap, BTreeSet};

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

/// `__consumer_offsets` records, request ids and request metadata are the coordinator
/// runtime's: [`GroupCoordinator::handle_with_meta`] records the client id and host for
/// JoinGroup (member ids are `<client_id>-<uuid>` and DescribeGroups shows both).
pub use crate::coordinator::{Record, RequestId, RequestMeta};

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

#[derive(Debug, thiserror::Error)]
#[error("bad __consumer_offsets record: {0}")]
pub struct RecordError(pub String);

impl From<crate::coordinator::codec::CodecError> for RecordError {
    fn from(error: crate::coordinator::codec::CodecError) -> Self {
        RecordError(error.0)
    }
}

/// The requests a shard handles. Multi-group requests (OffsetFetch v8+, DescribeGroups,
/// DeleteGroups) carry only this shard's groups: the handlers split them.
#[derive(Debug)]
pub enum GroupRequest {
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    /// Offsets committed inside a transaction: pending until its marker (see
    /// [`GroupCoordinator::complete_transaction`]).
    TxnOffsetCommit(TxnOffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    OffsetDelete(OffsetDeleteRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
}

/// What one call produced. The runtime persists `records` (in order, as one batch)
/// before it sends any of `responses`; `timers` set (Some deadline) or cancel (None).
///
/// The core's state already includes the records and the marker when the call returns,
/// so the runtime writes every call's batch in call order (record order is how the core
/// compares a transactional offset with a later plain commit), and a batch the partition
/// refuses (e.g. a fenced producer epoch) leaves the core ahead of the log: the runtime
/// then reloads the shard from its partition.
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<Record>,
    /// `Some((producer id, producer epoch))`: write `records` as a transactional batch
    /// of that producer (TxnOffsetCommit); None: a plain batch.
    pub producer: Option<(i64, i16)>,
    /// A transaction marker to write as a control batch (then `records` is empty).
    pub marker: Option<TxnMarker>,
    pub responses: Vec<(RequestId, ResponseKind)>,
    pub timers: Vec<(TimerKey, Option<i64>)>,
}

/// A transaction's end (WriteTxnMarkers) for this shard's partition: the control batch
/// the runtime writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    /// true: COMMIT, false: ABORT.
    pub commit: bool,
}

/// One shard's groups and offsets.
///
/// Bounds: members per group (plus KIP-394 pending member ids) ≤ `max_size`; at most
/// one parked JoinGroup and one parked SyncGroup per member; every parked request is
/// answered by a later call (completion, a timer, removal of its member or group, or a
/// newer request from the same member). Pending transactional offsets: one per (producer,
/// group, partition), for producers with an open transaction that sent TxnOffsetCommit to
/// this shard; each such transaction ends (a marker clears it) within
/// `transaction.max.timeout.ms` of its start, when the transaction coordinator aborts it.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, coordinator::Group>,
    /// Producer id → groups holding its pending transactional offsets.
    txn_groups: BTreeMap<i64, BTreeSet<String>>,
    /// Position of the next offset record in log order: after every replayed offset,
    /// then one per record this core emits (the runtime writes them in call order), so
    /// positions order records as their log offsets do.
    next_pos: i64,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            txn_groups: BTreeMap::new(),
            next_pos: 0,
        }
    }
    /// Applies one record of a plain batch read back from the shard's partition at load
    /// time, placed after every record replayed before it. Record types that aren't
    /// classic-group or offset records are skipped.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        let pos = self.take_pos();
        self.replay_record(pos, None, key, value)
    }
    /// Applies one data record read back at load time: `offset` is its log offset,
    /// `transactional_producer` the batch's producer id if the batch is transactional
    /// (its offset records then stay pending until that producer's marker), None for a
    /// plain batch. Records must come in log order.
    pub fn replay_at(
        &mut self,
        offset: i64,
        transactional_producer: Option<i64>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        self.next_pos = self.next_pos.max(offset.saturating_add(1));
        self.replay_record(offset, transactional_producer, key, value)
    }
    /// Applies a control batch's transaction marker read back at load time (at log
    /// offset `offset`): commit materializes the producer's pending offsets, abort drops
    /// them. The same step [`GroupCoordinator::complete_transaction`] takes live.
    pub fn replay_marker(&mut self, offset: i64, producer_id: i64, commit: bool) {
        self.next_pos = self.next_pos.max(offset.saturating_add(1));
        self.apply_marker(producer_id, commit);
        self.check_invariants();
    }
    /// The transaction coordinator's WriteTxnMarkers reached this shard's partition:
    /// returns the marker to write (`Effects::marker`); the producer's pending offsets are
    /// committed or dropped as the marker's replay would. A producer with nothing pending
    /// still gets its marker written (the partition's transaction state needs it).
    pub fn complete_transaction(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Effects {
        self.take_pos();
        self.apply_marker(producer_id, commit);
        self.check_invariants();
        Effects {
            marker: Some(TxnMarker {
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
            }),
            ..Effects::default()
        }
    }
    /// After the last replayed record: the timers loaded groups need (a fresh session
    /// timeout for every loaded member, and the periodic `expire` timer). Call it once per
    /// load even when nothing was replayed: it starts offset expiration. `records` is
    /// always empty.
    pub fn loaded(&mut self, now_ms: i64) -> Effects {
        self.check_invariants();
        self.loaded_impl(now_ms)
    }
    /// `partition_exists(topic, partition)` answers for (Txn)OffsetCommit validation.
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
