//! The transaction coordinator core: a pure state machine for transactional ids, one
//! instance per `__transaction_state` partition (shard). Requests, marker completions and
//! timer events go in; records to persist, responses, timer changes and transaction
//! markers to send come out as [`TxnEffects`]. It never does IO and never reads a clock:
//! the runtime owns both, and tests drive it with a simulated clock.
//!
//! State transitions are applied when their record is emitted: the runtime persists
//! `records` before it sends `responses` or `markers`, and a failed write is fail-stop
//! (the shard is unloaded and rebuilt from the log), so the in-memory state never runs
//! ahead of what a reloaded shard would see. Hence no request is ever parked: every
//! response comes out of the call that handled its request.
//!
//! Submodules: `records` (the `__transaction_state` format), `coordinator` (the state
//! machine).

use bytes::Bytes;
use kafka_protocol::messages::*;
use std::collections::BTreeMap;

mod coordinator;
pub mod markers;
mod records;
pub mod runtime;
#[cfg(test)]
mod tests;
pub mod verify;

/// The transaction version (KIP-890 `transaction.version` feature level) this broker runs
/// at, as a Kafka 4.x cluster formatted with defaults: the coordinator's own aborts (a
/// timed-out transaction, fencing by InitProducerId) use its epoch-bump rules, and
/// `__transaction_state` values are written as the flexible version 1.
pub const SERVER_TRANSACTION_VERSION: i16 = 2;

/// Broker settings for transactions, under Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`: shards of `__transaction_state`.
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (capped at the registered brokers).
    pub state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr`: the topic's `min.insync.replicas`.
    pub state_log_min_isr: i32,
    /// `transaction.state.log.segment.bytes`
    pub state_log_segment_bytes: i32,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an idle id with no open transaction is removed.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub abort_timed_out_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`
    pub remove_expired_interval_ms: i64,
    /// `transaction.partition.verification.enable` (KIP-890): a partition leader verifies
    /// a producer's first transactional batch with its coordinator before appending it.
    pub partition_verification_enable: bool,
    /// `add.partitions.to.txn.retry.backoff.ms`: how often a partition leader asks again
    /// to add a partition while the previous transaction's markers are being written.
    pub add_partitions_retry_backoff_ms: u32,
    /// `add.partitions.to.txn.retry.backoff.max.ms`: how long it keeps asking before the
    /// producer hears CONCURRENT_TRANSACTIONS (as NOT_ENOUGH_REPLICAS).
    pub add_partitions_retry_backoff_max_ms: u32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            state_log_num_partitions: 50,
            state_log_replication_factor: 3,
            state_log_min_isr: 2,
            state_log_segment_bytes: 104_857_600,
            max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
            partition_verification_enable: true,
            add_partitions_retry_backoff_ms: 20,
            add_partitions_retry_backoff_max_ms: 100,
        }
    }
}

/// Identifies one client request.
pub type RequestId = u64;

/// One `__transaction_state` record in Kafka's format; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad __transaction_state record: {0}")]
pub struct RecordError(pub String);

impl From<crate::coordinator::codec::CodecError> for RecordError {
    fn from(error: crate::coordinator::codec::CodecError) -> Self {
        RecordError(error.0)
    }
}

/// The periodic sweeps a shard asks the runtime to fire. At most one deadline per
/// variant; a later `Some` replaces it, `None` cancels it. A fire before the current
/// deadline (a stale one) is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnTimer {
    /// Abort (and fence) Ongoing transactions past their `transaction.timeout.ms`; every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    AbortTimedOut,
    /// Remove ids idle for `transactional.id.expiration.ms`; every
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    ExpireTransactionalIds,
}

/// The requests a shard handles. DescribeTransactions carries only this shard's ids (the
/// handler splits it); ListTransactions goes to every shard and the handler merges.
#[derive(Debug)]
pub enum TxnRequest {
    InitProducerId {
        request: InitProducerIdRequest,
        /// Pre-allocated by the caller; used for a new transactional id, a producer id
        /// rotation on epoch exhaustion, or a null transactional id. An unused one is kept
        /// for a later EndTxn that exhausts its epoch (see [`TxnCoordinator::wants_producer_id`]).
        fresh_producer_id: i64,
    },
    /// v0-5: v4+ batches several transactions (from partition leaders), `verify_only`
    /// checks membership without writing (KIP-890 part 1), and a v5 add is a partition
    /// leader's implicit add for a transaction-version-2 producer.
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn {
        request: AddOffsetsToTxnRequest,
        /// The `__consumer_offsets` partition of the request's group.
        offsets_partition: i32,
    },
    EndTxn(EndTxnRequest),
    DescribeTransactions(DescribeTransactionsRequest),
    /// The v2 `transactional_id_pattern` is not applied (no regular expression engine in
    /// the tree): advertise ListTransactions v0-1 only.
    ListTransactions(ListTransactionsRequest),
    /// Every partition acknowledged the markers of a [`MarkerSend`] (the same ids, epoch and
    /// result): writes the CompleteCommit/CompleteAbort record. Nothing is answered (the
    /// request id is unused); stale or duplicate completions are ignored.
    MarkersWritten {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
}

/// Transaction markers (WriteTxnMarkers) to write to the leaders of `partitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerSend {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The shard's leader epoch, which partitions check to reject a deposed coordinator.
    pub coordinator_epoch: i32,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// What one call produced. The runtime persists `records` (in order, as one batch)
/// before it sends any of `responses` or `markers`; `timers` set (Some deadline) or
/// cancel (None).
#[derive(Debug, Default)]
pub struct TxnEffects {
    pub records: Vec<Record>,
    pub responses: Vec<(RequestId, ResponseKind)>,
    pub timers: Vec<(TxnTimer, Option<i64>)>,
    pub markers: Vec<MarkerSend>,
}

/// One shard's transactional ids.
///
/// Bounds: none of Kafka's kind (Kafka caps neither ids per shard nor partitions per
/// transaction); ids are removed by `transactional.id.expiration.ms`, and at most one
/// spare producer id is held.
pub struct TxnCoordinator {
    config: TxnConfig,
    coordinator_epoch: i32,
    txns: BTreeMap<String, coordinator::Txn>,
    /// An unused pre-allocated producer id, for an EndTxn that exhausts its epoch.
    spare_producer_id: Option<i64>,
    /// The current deadline of each periodic timer (stale fires are ignored).
    deadlines: BTreeMap<TxnTimer, i64>,
}

impl TxnCoordinator {
    /// `coordinator_epoch`: the leader epoch of the shard's partition; markers carry it.
    pub fn new(config: TxnConfig, coordinator_epoch: i32) -> TxnCoordinator {
        TxnCoordinator {
            config,
            coordinator_epoch,
            txns: BTreeMap::new(),
            spare_producer_id: None,
            deadlines: BTreeMap::new(),
        }
    }
    /// Applies one record read back from the shard's partition at load time (a tombstone
    /// removes the id). Keys of other versions are skipped, as Kafka does.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        self.replay_record(key, value)
    }
    /// After the last replayed record: markers for transactions left in PrepareCommit or
    /// PrepareAbort, and the two periodic timers. Call it once per load.
    pub fn loaded(&mut self, now_ms: i64) -> TxnEffects {
        let mut fx = TxnEffects::default();
        self.loaded_impl(now_ms, &mut fx);
        self.check_invariants();
        fx
    }
    pub fn handle(
        &mut self,
        now_ms: i64,
        request_id: RequestId,
        version: i16,
        request: TxnRequest,
    ) -> TxnEffects {
        let mut fx = TxnEffects::default();
        self.dispatch(now_ms, request_id, version, request, &mut fx);
        self.check_invariants();
        fx
    }
    pub fn on_timer(&mut self, now_ms: i64, timer: TxnTimer) -> TxnEffects {
        let mut fx = TxnEffects::default();
        self.timer(now_ms, timer, &mut fx);
        self.check_invariants();
        fx
    }
    /// True when the shard holds no spare producer id. An EndTxn of a transaction-version-2
    /// producer whose epoch is exhausted needs one (Kafka rotates the producer id there);
    /// without it the EndTxn is answered CONCURRENT_TRANSACTIONS, so the client retries.
    /// The runtime may top the spare up with [`TxnCoordinator::supply_producer_id`].
    pub fn wants_producer_id(&self) -> bool {
        self.spare_producer_id.is_none()
    }
    /// Gives the shard a freshly allocated producer id to hold as its spare.
    pub fn supply_producer_id(&mut self, producer_id: i64) {
        if producer_id >= 0 {
            self.spare_producer_id = Some(producer_id);
        }
    }
}

/// The `__transaction_state` partition of a transactional id: Kafka hashes it as it hashes
/// group ids (`abs(String.hashCode) % partitions`).
pub fn partition_for_transactional_id(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::partition_for_group(transactional_id, partitions)
}
