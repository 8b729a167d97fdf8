//! The transaction state machine: InitProducerId, AddPartitionsToTxn / AddOffsetsToTxn,
//! EndTxn, marker completion, timeouts, expiration, describe and list.

use super::records::{self, TxnValue};
use super::{
    MarkerSend, Record, RecordError, RequestId, TxnCoordinator, TxnEffects, TxnRequest, TxnTimer,
    SERVER_TRANSACTION_VERSION,
};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};

// Kafka error codes (the protocol guide's numbering).
pub(crate) const NONE: i16 = 0;
pub(crate) const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub(crate) const INVALID_REQUEST: i16 = 42;
pub(crate) const INVALID_PRODUCER_EPOCH: i16 = 47;
pub(crate) const INVALID_TXN_STATE: i16 = 48;
pub(crate) const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub(crate) const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub(crate) const CONCURRENT_TRANSACTIONS: i16 = 51;
pub(crate) const PRODUCER_FENCED: i16 = 90;
pub(crate) const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
pub(crate) const TRANSACTION_ABORTABLE: i16 = 120;

/// Where committed consumer offsets live; AddOffsetsToTxn adds one of its partitions.
pub(crate) const CONSUMER_OFFSETS: &str = "__consumer_offsets";

/// Kafka's `isEpochExhausted`: one epoch is kept in reserve for a fencing bump.
fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// Transaction states, with Kafka's ids (the record's status byte) and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl State {
    const ALL: [State; 8] = [
        State::Empty,
        State::Ongoing,
        State::PrepareCommit,
        State::PrepareAbort,
        State::CompleteCommit,
        State::CompleteAbort,
        State::Dead,
        State::PrepareEpochFence,
    ];
    pub(crate) fn id(self) -> i8 {
        match self {
            State::Empty => 0,
            State::Ongoing => 1,
            State::PrepareCommit => 2,
            State::PrepareAbort => 3,
            State::CompleteCommit => 4,
            State::CompleteAbort => 5,
            State::Dead => 6,
            State::PrepareEpochFence => 7,
        }
    }
    pub(crate) fn from_id(id: i8) -> Option<State> {
        State::ALL.into_iter().find(|s| s.id() == id)
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::Ongoing => "Ongoing",
            State::PrepareCommit => "PrepareCommit",
            State::PrepareAbort => "PrepareAbort",
            State::CompleteCommit => "CompleteCommit",
            State::CompleteAbort => "CompleteAbort",
            State::Dead => "Dead",
            State::PrepareEpochFence => "PrepareEpochFence",
        }
    }
    fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name() == name)
    }
    /// States an idle id may be expired from (Kafka's `isExpirationAllowed`).
    fn expirable(self) -> bool {
        matches!(
            self,
            State::Empty | State::CompleteCommit | State::CompleteAbort
        )
    }
}

/// One transactional id's metadata (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Txn {
    pub(crate) producer_id: i64,
    /// The producer id before the last rotation (KIP-360 retries, TV2 overflow retries).
    pub(crate) previous_producer_id: i64,
    /// TV2: the producer id the transaction completes to when EndTxn exhausted the epoch.
    pub(crate) next_producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// The epoch before the last bump, for recognizing retries; not persisted (-1 after load).
    pub(crate) last_producer_epoch: i16,
    pub(crate) timeout_ms: i32,
    pub(crate) state: State,
    pub(crate) partitions: BTreeSet<(String, i32)>,
    pub(crate) start_ms: i64,
    pub(crate) last_update_ms: i64,
    /// The client's transaction version (2 = KIP-890 epoch bump on every EndTxn).
    pub(crate) client_tv: i16,
}

impl Txn {
    fn value(&self) -> TxnValue {
        let partitions = if self.state == State::Empty {
            None
        } else {
            let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
            for (t, p) in &self.partitions {
                match topics.last_mut() {
                    Some((last, ps)) if last == t => ps.push(*p),
                    _ => topics.push((t.clone(), vec![*p])),
                }
            }
            Some(topics)
        };
        TxnValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state.id(),
            partitions,
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_tv,
        }
    }
    fn from_value(v: TxnValue, state: State) -> Txn {
        let partitions = match (&v.partitions, state) {
            (_, State::Empty) | (None, _) => BTreeSet::new(),
            (Some(topics), _) => topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect(),
        };
        Txn {
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: v.timeout_ms,
            state,
            partitions,
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            client_tv: v.client_transaction_version,
        }
    }
    fn preparing(&self) -> bool {
        matches!(self.state, State::PrepareCommit | State::PrepareAbort)
    }
    fn marker(&self, id: &str, coordinator_epoch: i32) -> MarkerSend {
        MarkerSend {
            transactional_id: id.to_string(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            coordinator_epoch,
            commit: self.state == State::PrepareCommit,
            partitions: self.partitions.iter().cloned().collect(),
        }
    }
}

/// How an EndTxn (or the coordinator's own abort) prepares.
#[derive(Debug, Clone, Copy)]
struct End {
    commit: bool,
    /// Transaction version 2: bump the epoch, moving to a new producer id when exhausted.
    tv2: bool,
    /// A TV2 abort outside a transaction: it starts now.
    no_partitions_added: bool,
    /// The coordinator fencing the producer (never moves to a new producer id).
    fence: bool,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Clients older than these versions do not know PRODUCER_FENCED (Kafka maps it).
fn fenced_for(version: i16, min_version: i16, error: i16) -> i16 {
    if error == PRODUCER_FENCED && version < min_version {
        INVALID_PRODUCER_EPOCH
    } else {
        error
    }
}

fn init_response(version: i16, error: i16, producer_id: i64, epoch: i16) -> ResponseKind {
    let mut r = InitProducerIdResponse::default();
    r.error_code = fenced_for(version, 4, error);
    r.producer_id = ProducerId(producer_id);
    r.producer_epoch = epoch;
    ResponseKind::InitProducerId(r)
}

fn topic_partitions(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), *p)))
        .collect()
}

/// Per-topic results in the request's order; `error(topic, partition)` for each.
fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    error: impl Fn(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            let mut r = AddPartitionsToTxnTopicResult::default();
            r.name = t.name.clone();
            r.results_by_partition = t
                .partitions
                .iter()
                .map(|p| {
                    let mut pr = AddPartitionsToTxnPartitionResult::default();
                    pr.partition_index = *p;
                    pr.partition_error_code = error(&t.name, *p);
                    pr
                })
                .collect();
            r
        })
        .collect()
}

impl TxnCoordinator {
    fn write(&self, id: &str, fx: &mut TxnEffects) {
        if let Some(t) = self.txns.get(id) {
            fx.records.push(Record {
                key: records::key(id),
                value: Some(records::value(&t.value())),
            });
        }
    }

    pub(super) fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            for (id, t) in &self.txns {
                debug_assert!(
                    t.state != State::Empty || t.partitions.is_empty(),
                    "{id}: Empty has no partitions"
                );
                debug_assert!(t.state != State::Dead, "{id}: Dead ids are removed");
            }
            debug_assert!(self.spare_producer_id.is_none_or(|p| p >= 0));
        }
    }

    pub(super) fn replay_record(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        let Some(id) = records::decode_key(key)? else {
            return Ok(());
        };
        let Some(value) = value else {
            self.txns.remove(&id);
            return Ok(());
        };
        let v = records::decode_value(value)?;
        let state = State::from_id(v.state)
            .ok_or_else(|| RecordError(format!("unknown transaction state {}", v.state)))?;
        if state == State::Dead {
            // Kafka never persists Dead (expiration writes a tombstone); read it as one.
            self.txns.remove(&id);
        } else {
            self.txns.insert(id, Txn::from_value(v, state));
        }
        Ok(())
    }

    pub(super) fn loaded_impl(&mut self, now: i64, fx: &mut TxnEffects) {
        let preparing: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| t.preparing())
            .map(|(id, _)| id.clone())
            .collect();
        for id in preparing {
            self.send_markers_or_complete(&id, now, fx);
        }
        for timer in [TxnTimer::AbortTimedOut, TxnTimer::ExpireTransactionalIds] {
            self.arm(timer, now, fx);
        }
    }

    fn arm(&mut self, timer: TxnTimer, now: i64, fx: &mut TxnEffects) {
        let interval = match timer {
            TxnTimer::AbortTimedOut => self.config.abort_timed_out_interval_ms,
            TxnTimer::ExpireTransactionalIds => self.config.remove_expired_interval_ms,
        };
        let deadline = now.saturating_add(interval.max(1));
        self.deadlines.insert(timer, deadline);
        fx.timers.push((timer, Some(deadline)));
    }

    pub(super) fn timer(&mut self, now: i64, timer: TxnTimer, fx: &mut TxnEffects) {
        if self.deadlines.get(&timer).is_some_and(|d| now < *d) {
            return;
        }
        match timer {
            TxnTimer::AbortTimedOut => self.abort_timed_out(now, fx),
            TxnTimer::ExpireTransactionalIds => self.expire_ids(now, fx),
        }
        self.arm(timer, now, fx);
    }

    pub(super) fn dispatch(
        &mut self,
        now: i64,
        rid: RequestId,
        version: i16,
        request: TxnRequest,
        fx: &mut TxnEffects,
    ) {
        let response = match request {
            TxnRequest::InitProducerId {
                request,
                fresh_producer_id,
            } => Some(self.init_producer_id(now, version, &request, fresh_producer_id, fx)),
            TxnRequest::AddPartitionsToTxn(req) => {
                Some(self.add_partitions_request(now, version, &req, fx))
            }
            TxnRequest::AddOffsetsToTxn {
                request,
                offsets_partition,
            } => {
                let error = self.add_partitions(
                    now,
                    &request.transactional_id,
                    request.producer_id.0,
                    request.producer_epoch,
                    &[(CONSUMER_OFFSETS.to_string(), offsets_partition)],
                    None,
                    fx,
                );
                let mut r = AddOffsetsToTxnResponse::default();
                r.error_code = fenced_for(version, 2, error);
                Some(ResponseKind::AddOffsetsToTxn(r))
            }
            TxnRequest::EndTxn(req) => Some(self.end_txn(now, version, &req, fx)),
            TxnRequest::DescribeTransactions(req) => Some(self.describe(&req)),
            TxnRequest::ListTransactions(req) => Some(self.list(now, version, &req)),
            TxnRequest::MarkersWritten {
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
            } => {
                self.markers_written(
                    now,
                    &transactional_id,
                    producer_id,
                    producer_epoch,
                    commit,
                    fx,
                );
                None
            }
        };
        if let Some(r) = response {
            fx.responses.push((rid, r));
        }
    }

    // ---- InitProducerId ----

    fn init_producer_id(
        &mut self,
        now: i64,
        version: i16,
        req: &InitProducerIdRequest,
        fresh: i64,
        fx: &mut TxnEffects,
    ) -> ResponseKind {
        let err = |e: i16| init_response(version, e, -1, -1);
        // KIP-360: a producer recovering from a fatal epoch error names its id and epoch;
        // naming only one is refused before anything else (Kafka checks it in KafkaApis).
        let expected = match (req.producer_id.0, req.producer_epoch) {
            (-1, -1) => None,
            (-1, _) | (_, -1) => return err(INVALID_REQUEST),
            (p, e) => Some((p, e)),
        };
        let Some(id) = req.transactional_id.as_ref().map(|t| t.to_string()) else {
            // An idempotent (non-transactional) producer: always a new id at epoch 0.
            if fresh < 0 {
                return err(COORDINATOR_LOAD_IN_PROGRESS);
            }
            return init_response(version, NONE, fresh, 0);
        };
        if id.is_empty() {
            return err(INVALID_REQUEST);
        }
        let timeout = req.transaction_timeout_ms;
        if timeout <= 0 || timeout > self.config.max_timeout_ms {
            return err(INVALID_TRANSACTION_TIMEOUT);
        }
        let mut fresh_used = false;
        if !self.txns.contains_key(&id) {
            if fresh < 0 {
                // No producer id to give (Kafka's id manager answers this while it has no
                // block): the client retries.
                return err(COORDINATOR_LOAD_IN_PROGRESS);
            }
            fresh_used = true;
            self.txns.insert(
                id.clone(),
                Txn {
                    producer_id: fresh,
                    previous_producer_id: -1,
                    next_producer_id: -1,
                    producer_epoch: -1,
                    last_producer_epoch: -1,
                    timeout_ms: timeout,
                    state: State::Empty,
                    partitions: BTreeSet::new(),
                    start_ms: -1,
                    last_update_ms: now,
                    client_tv: 0,
                },
            );
        }
        let response = self.init_existing(
            now,
            version,
            &id,
            timeout,
            expected,
            fresh,
            &mut fresh_used,
            fx,
        );
        if !fresh_used && self.spare_producer_id.is_none() && fresh >= 0 {
            self.spare_producer_id = Some(fresh);
        }
        response
    }

    #[allow(clippy::too_many_arguments)]
    fn init_existing(
        &mut self,
        now: i64,
        version: i16,
        id: &str,
        timeout: i32,
        expected: Option<(i64, i16)>,
        fresh: i64,
        fresh_used: &mut bool,
        fx: &mut TxnEffects,
    ) -> ResponseKind {
        let err = |e: i16| init_response(version, e, -1, -1);
        let Some(t) = self.txns.get_mut(id) else {
            return err(INVALID_PRODUCER_ID_MAPPING);
        };
        // Fence a stale producer unless the id is brand new, the producer id is current,
        // or it is the previous one at an exhausted epoch (a retry after a rotation).
        let valid = |(p, e): (i64, i16)| {
            t.producer_epoch == -1
                || p == t.producer_id
                || (p == t.previous_producer_id && epoch_exhausted(e))
        };
        if expected.is_some_and(|x| !valid(x)) {
            return err(PRODUCER_FENCED);
        }
        match t.state {
            State::PrepareCommit | State::PrepareAbort => err(CONCURRENT_TRANSACTIONS),
            State::Ongoing | State::PrepareEpochFence => {
                // Abort the open transaction with a bumped epoch (fencing its producer) and
                // make the client retry, which bumps the epoch again once it completes.
                self.fence_and_abort(id, now, fx);
                err(CONCURRENT_TRANSACTIONS)
            }
            State::Dead => err(INVALID_TXN_STATE),
            State::Empty | State::CompleteCommit | State::CompleteAbort => {
                let rotate = epoch_exhausted(t.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == t.producer_epoch);
                if rotate {
                    if *fresh_used || fresh < 0 {
                        // No producer id to rotate to (a new id is never exhausted, so
                        // `fresh_used` means none was given).
                        return err(COORDINATOR_LOAD_IN_PROGRESS);
                    }
                    *fresh_used = true;
                    t.last_producer_epoch = if expected.is_some() {
                        t.producer_epoch
                    } else {
                        -1
                    };
                    t.previous_producer_id = t.producer_id;
                    t.producer_id = fresh;
                    t.producer_epoch = 0;
                } else {
                    let bumped = t.producer_epoch.saturating_add(1);
                    let (epoch, last) = match expected {
                        None => (bumped, -1),
                        Some((_, e)) if t.producer_epoch == -1 || e == t.producer_epoch => {
                            (bumped, t.producer_epoch)
                        }
                        // A retry of a bump whose response was lost: answer it again.
                        Some((_, e)) if e == t.last_producer_epoch => {
                            (t.producer_epoch, t.last_producer_epoch)
                        }
                        Some(_) => return err(PRODUCER_FENCED),
                    };
                    t.previous_producer_id = t.producer_id;
                    t.producer_epoch = epoch;
                    t.last_producer_epoch = last;
                }
                t.state = State::Empty;
                t.timeout_ms = timeout;
                t.partitions.clear();
                t.start_ms = -1;
                t.last_update_ms = now;
                let (pid, epoch) = (t.producer_id, t.producer_epoch);
                self.write(id, fx);
                init_response(version, NONE, pid, epoch)
            }
        }
    }

    /// The coordinator's own abort (InitProducerId of an open transaction, timeout): bump
    /// the epoch to fence the producer, then prepare the abort at the server's transaction
    /// version, which bumps once more (as Kafka does), so the fenced producer's EndTxn
    /// cannot pass for a retry of a completed one.
    fn fence_and_abort(&mut self, id: &str, now: i64, fx: &mut TxnEffects) {
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        // The fencing bump (none at i16::MAX: the abort below still goes through).
        t.producer_epoch = t.producer_epoch.saturating_add(1);
        t.last_producer_epoch = -1;
        t.next_producer_id = -1;
        // The server's transaction version decides how the abort itself bumps.
        let end = End {
            commit: false,
            tv2: SERVER_TRANSACTION_VERSION >= 2,
            no_partitions_added: false,
            fence: true,
        };
        self.prepare_end(id, now, end, fx);
    }

    /// After a Prepare record: markers for the partitions, or (none to mark) completion.
    fn send_markers_or_complete(&mut self, id: &str, now: i64, fx: &mut TxnEffects) {
        let Some(t) = self.txns.get(id) else {
            return;
        };
        if t.partitions.is_empty() {
            self.complete(id, now, fx);
        } else {
            fx.markers.push(t.marker(id, self.coordinator_epoch));
        }
    }

    fn complete(&mut self, id: &str, now: i64, fx: &mut TxnEffects) {
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        let commit = t.state == State::PrepareCommit;
        t.previous_producer_id = t.producer_id;
        if t.client_tv >= 2 && t.next_producer_id >= 0 {
            // The epoch was exhausted at EndTxn: the producer continues under the new id.
            t.producer_id = t.next_producer_id;
            t.producer_epoch = 0;
        }
        t.next_producer_id = -1;
        t.state = if commit {
            State::CompleteCommit
        } else {
            State::CompleteAbort
        };
        t.partitions.clear();
        t.last_update_ms = now;
        self.write(id, fx);
    }

    fn markers_written(
        &mut self,
        now: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        fx: &mut TxnEffects,
    ) {
        let current = self.txns.get(id).is_some_and(|t| {
            t.preparing()
                && t.producer_id == producer_id
                && t.producer_epoch == epoch
                && (t.state == State::PrepareCommit) == commit
        });
        if current {
            self.complete(id, now, fx);
        }
    }

    // ---- AddPartitionsToTxn / AddOffsetsToTxn ----

    fn add_partitions_request(
        &mut self,
        now: i64,
        version: i16,
        req: &AddPartitionsToTxnRequest,
        fx: &mut TxnEffects,
    ) -> ResponseKind {
        let mut r = AddPartitionsToTxnResponse::default();
        if version < 4 {
            let error = self.add_partitions(
                now,
                &req.v3_and_below_transactional_id,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                &topic_partitions(&req.v3_and_below_topics),
                Some(0),
                fx,
            );
            let error = fenced_for(version, 2, error);
            r.results_by_topic_v3_and_below = topic_results(&req.v3_and_below_topics, |_, _| error);
            return ResponseKind::AddPartitionsToTxn(r);
        }
        for txn in &req.transactions {
            let partitions = topic_partitions(&txn.topics);
            let mut result = AddPartitionsToTxnResult::default();
            result.transactional_id = txn.transactional_id.clone();
            result.topic_results = if txn.verify_only {
                match self.verify(&txn.transactional_id, txn.producer_id.0, txn.producer_epoch) {
                    Ok(t) => topic_results(&txn.topics, |topic, p| {
                        if t.contains(&(topic.to_string(), p)) {
                            NONE
                        } else {
                            TRANSACTION_ABORTABLE
                        }
                    }),
                    Err(e) => topic_results(&txn.topics, |_, _| e),
                }
            } else {
                // v5 comes from a partition leader adding a partition implicitly for a
                // transaction-version-2 producer (KIP-890 part 2).
                let tv = if version >= 5 { 2 } else { 0 };
                let error = self.add_partitions(
                    now,
                    &txn.transactional_id,
                    txn.producer_id.0,
                    txn.producer_epoch,
                    &partitions,
                    Some(tv),
                    fx,
                );
                topic_results(&txn.topics, |_, _| error)
            };
            r.results_by_transaction.push(result);
        }
        ResponseKind::AddPartitionsToTxn(r)
    }

    /// The partitions of the ongoing transaction, for a partition leader's verification.
    fn verify(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&BTreeSet<(String, i32)>, i16> {
        if id.is_empty() {
            return Err(INVALID_REQUEST);
        }
        let t = self.txns.get(id).ok_or(INVALID_PRODUCER_ID_MAPPING)?;
        if t.producer_id != producer_id {
            Err(INVALID_PRODUCER_ID_MAPPING)
        } else if t.producer_epoch != epoch {
            Err(PRODUCER_FENCED)
        } else if t.preparing() {
            Err(CONCURRENT_TRANSACTIONS)
        } else {
            Ok(&t.partitions)
        }
    }

    /// `client_tv`: the client's transaction version to record (None keeps it).
    #[allow(clippy::too_many_arguments)]
    fn add_partitions(
        &mut self,
        now: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        client_tv: Option<i16>,
        fx: &mut TxnEffects,
    ) -> i16 {
        if id.is_empty() {
            return INVALID_REQUEST;
        }
        let Some(t) = self.txns.get_mut(id) else {
            return INVALID_PRODUCER_ID_MAPPING;
        };
        if t.producer_id != producer_id {
            return INVALID_PRODUCER_ID_MAPPING;
        }
        if t.producer_epoch != epoch {
            return PRODUCER_FENCED;
        }
        match t.state {
            State::PrepareCommit | State::PrepareAbort => return CONCURRENT_TRANSACTIONS,
            State::Ongoing if partitions.iter().all(|p| t.partitions.contains(p)) => return NONE,
            State::Dead | State::PrepareEpochFence => return INVALID_TXN_STATE,
            State::Empty | State::CompleteCommit | State::CompleteAbort => t.start_ms = now,
            State::Ongoing => {}
        }
        // Kafka records the id before every transition as the previous one.
        t.previous_producer_id = t.producer_id;
        t.state = State::Ongoing;
        t.partitions.extend(partitions.iter().cloned());
        t.last_update_ms = now;
        if let Some(tv) = client_tv {
            t.client_tv = tv;
        }
        self.write(id, fx);
        NONE
    }

    // ---- EndTxn ----

    fn end_txn(
        &mut self,
        now: i64,
        version: i16,
        req: &EndTxnRequest,
        fx: &mut TxnEffects,
    ) -> ResponseKind {
        let (error, producer_id, epoch) = self.end_txn_result(now, version, req, fx);
        let mut r = EndTxnResponse::default();
        r.error_code = fenced_for(version, 2, error);
        r.producer_id = ProducerId(producer_id);
        r.producer_epoch = epoch;
        ResponseKind::EndTxn(r)
    }

    fn end_txn_result(
        &mut self,
        now: i64,
        version: i16,
        req: &EndTxnRequest,
        fx: &mut TxnEffects,
    ) -> (i16, i64, i16) {
        let err = |e: i16| (e, -1, -1);
        let id: &str = &req.transactional_id;
        if id.is_empty() {
            return err(INVALID_REQUEST);
        }
        let commit = req.committed;
        let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
        let Some(t) = self.txns.get(id) else {
            return err(INVALID_PRODUCER_ID_MAPPING);
        };
        // EndTxn v5+ comes from a transaction-version-2 client: every EndTxn bumps the epoch.
        if version <= 4 {
            if t.producer_id != pid {
                return err(INVALID_PRODUCER_ID_MAPPING);
            }
            if epoch != t.producer_epoch {
                return err(PRODUCER_FENCED);
            }
            return match (t.state, commit) {
                (State::Ongoing, _) => {
                    let end = End {
                        commit,
                        tv2: false,
                        no_partitions_added: false,
                        fence: false,
                    };
                    self.prepare_end(id, now, end, fx);
                    err(NONE)
                }
                (State::CompleteCommit, true) | (State::CompleteAbort, false) => err(NONE),
                (State::PrepareCommit, true) | (State::PrepareAbort, false) => {
                    err(CONCURRENT_TRANSACTIONS)
                }
                _ => err(INVALID_TXN_STATE),
            };
        }
        // A retry of an EndTxn that moved to a new producer id on epoch exhaustion...
        let retry_on_overflow =
            t.previous_producer_id == pid && epoch == i16::MAX - 1 && t.producer_epoch == 0;
        // ... or of one that bumped the epoch.
        let retry_on_bump = i32::from(t.producer_epoch) == i32::from(epoch) + 1;
        let valid_epoch = match t.state {
            State::PrepareCommit | State::PrepareAbort => retry_on_bump,
            State::CompleteCommit | State::CompleteAbort => {
                retry_on_bump || retry_on_overflow || epoch == t.producer_epoch
            }
            _ => epoch == t.producer_epoch,
        };
        if t.producer_id != pid && !retry_on_overflow {
            return err(INVALID_PRODUCER_ID_MAPPING);
        }
        if !valid_epoch {
            return err(PRODUCER_FENCED);
        }
        let retry = retry_on_bump || retry_on_overflow;
        // (prepare, with no partitions added): an abort at the current epoch of a finished
        // or empty transaction is allowed, as the client may not know whether a partition
        // leader added a partition implicitly.
        let prepare = match (t.state, commit) {
            (State::Ongoing, _) => (true, false),
            (State::CompleteCommit, true) | (State::CompleteAbort, false) if retry => {
                return (NONE, t.producer_id, t.producer_epoch)
            }
            (State::CompleteCommit | State::CompleteAbort | State::Empty, false) if !retry => {
                (true, true)
            }
            (State::PrepareCommit, true) | (State::PrepareAbort, false) => {
                return err(CONCURRENT_TRANSACTIONS)
            }
            _ => (false, false),
        };
        if !prepare.0 {
            return err(INVALID_TXN_STATE);
        }
        if epoch_exhausted(t.producer_epoch) && self.spare_producer_id.is_none() {
            // No id to move to yet (see `wants_producer_id`): let the client retry.
            return err(CONCURRENT_TRANSACTIONS);
        }
        let end = End {
            commit,
            tv2: true,
            no_partitions_added: prepare.1,
            fence: false,
        };
        self.prepare_end(id, now, end, fx)
            .map_or(err(INVALID_TXN_STATE), |(p, e)| (NONE, p, e))
    }

    /// Writes PrepareCommit/PrepareAbort and starts the markers (or completes at once when
    /// there are no partitions). Returns the producer id and epoch after the Prepare record.
    fn prepare_end(
        &mut self,
        id: &str,
        now: i64,
        end: End,
        fx: &mut TxnEffects,
    ) -> Option<(i64, i16)> {
        let t = self.txns.get_mut(id)?;
        if end.tv2 {
            // A fencing abort never moves to a new producer id; others do when exhausted.
            let next = if !end.fence && epoch_exhausted(t.producer_epoch) {
                self.spare_producer_id?
            } else {
                -1
            };
            let epoch = match t.producer_epoch.checked_add(1) {
                Some(e) => e,
                // At i16::MAX only an abort may pass (without a bump), to recover.
                None if !end.commit => t.producer_epoch,
                None => return None,
            };
            if next >= 0 {
                self.spare_producer_id = None;
            }
            t.last_producer_epoch = t.producer_epoch;
            t.producer_epoch = epoch;
            t.next_producer_id = next;
            t.client_tv = 2;
            if end.no_partitions_added {
                t.start_ms = now;
            }
        } else {
            t.next_producer_id = -1;
            t.client_tv = 0;
        }
        t.previous_producer_id = t.producer_id;
        t.state = if end.commit {
            State::PrepareCommit
        } else {
            State::PrepareAbort
        };
        t.last_update_ms = now;
        let answer = (t.producer_id, t.producer_epoch);
        self.write(id, fx);
        self.send_markers_or_complete(id, now, fx);
        Some(answer)
    }

    // ---- sweeps ----

    fn abort_timed_out(&mut self, now: i64, fx: &mut TxnEffects) {
        let timed_out: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| {
                t.state == State::Ongoing
                    && t.start_ms.saturating_add(i64::from(t.timeout_ms)) < now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in timed_out {
            self.fence_and_abort(&id, now, fx);
        }
    }

    fn expire_ids(&mut self, now: i64, fx: &mut TxnEffects) {
        let horizon = now.saturating_sub(self.config.transactional_id_expiration_ms);
        let expired: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| t.state.expirable() && t.last_update_ms <= horizon)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.txns.remove(&id);
            fx.records.push(Record {
                key: records::key(&id),
                value: None,
            });
        }
    }

    // ---- DescribeTransactions / ListTransactions ----

    fn describe(&self, req: &DescribeTransactionsRequest) -> ResponseKind {
        let mut r = DescribeTransactionsResponse::default();
        for id in &req.transactional_ids {
            let mut s = describe_transactions_response::TransactionState::default();
            s.transactional_id = id.clone();
            match self.txns.get(id.as_str()) {
                _ if id.is_empty() => s.error_code = INVALID_REQUEST,
                None => s.error_code = TRANSACTIONAL_ID_NOT_FOUND,
                Some(t) => {
                    s.transaction_state = sb(t.state.name());
                    s.transaction_timeout_ms = t.timeout_ms;
                    s.transaction_start_time_ms = t.start_ms;
                    s.producer_id = ProducerId(t.producer_id);
                    s.producer_epoch = t.producer_epoch;
                    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for (topic, p) in &t.partitions {
                        topics.entry(topic).or_default().push(*p);
                    }
                    s.topics = topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            let mut d = TopicData::default();
                            d.topic = TopicName(sb(topic));
                            d.partitions = partitions;
                            d
                        })
                        .collect();
                }
            }
            r.transaction_states.push(s);
        }
        ResponseKind::DescribeTransactions(r)
    }

    fn list(&self, now: i64, version: i16, req: &ListTransactionsRequest) -> ResponseKind {
        let mut r = ListTransactionsResponse::default();
        let mut states = Vec::new();
        for name in &req.state_filters {
            match State::from_name(name) {
                Some(s) => states.push(s),
                None => r.unknown_state_filters.push(name.clone()),
            }
        }
        let pids: BTreeSet<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
        let duration = if version >= 1 {
            req.duration_filter
        } else {
            -1
        };
        for (id, t) in &self.txns {
            let include = (pids.is_empty() || pids.contains(&t.producer_id))
                && (req.state_filters.is_empty() || states.contains(&t.state))
                && (duration < 0 || now.saturating_sub(t.start_ms) > duration);
            if include {
                let mut s = list_transactions_response::TransactionState::default();
                s.transactional_id = TransactionalId(sb(id));
                s.producer_id = ProducerId(t.producer_id);
                s.transaction_state = sb(t.state.name());
                r.transaction_states.push(s);
            }
        }
        ResponseKind::ListTransactions(r)
    }
}
