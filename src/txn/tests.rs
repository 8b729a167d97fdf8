//! Unit tests of the transaction coordinator with a simulated clock.

use super::coordinator::*;
use super::records::{self, TxnValue};
use super::*;
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;

const EPOCH: i32 = 7;
const TIMEOUT: i32 = 60_000;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn topics(parts: &[(&str, i32)]) -> Vec<AddPartitionsToTxnTopic> {
    let mut out: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (t, p) in parts {
        match out.iter_mut().find(|x| x.name.as_str() == *t) {
            Some(x) => x.partitions.push(*p),
            None => {
                let mut x = AddPartitionsToTxnTopic::default();
                x.name = TopicName(s(t));
                x.partitions = vec![*p];
                out.push(x);
            }
        }
    }
    out
}

/// Drives a coordinator like the runtime: keeps its timers, collects records and markers,
/// checks every response answers its own request once and encodes at its version.
struct H {
    c: TxnCoordinator,
    now: i64,
    next: u64,
    next_pid: i64,
    timers: HashMap<TxnTimer, i64>,
    records: Vec<Record>,
    markers: Vec<MarkerSend>,
}

impl H {
    fn new() -> H {
        H::with(TxnConfig::default())
    }
    fn with(config: TxnConfig) -> H {
        let mut h = H {
            c: TxnCoordinator::new(config, EPOCH),
            now: 1_000_000,
            next: 1,
            next_pid: 1000,
            timers: HashMap::new(),
            records: Vec::new(),
            markers: Vec::new(),
        };
        let fx = h.c.loaded(h.now);
        h.apply(fx);
        h
    }
    fn apply(&mut self, fx: TxnEffects) -> Vec<(u64, ResponseKind)> {
        for (k, d) in fx.timers {
            match d {
                Some(d) => self.timers.insert(k, d),
                None => self.timers.remove(&k),
            };
        }
        self.records.extend(fx.records);
        self.markers.extend(fx.markers);
        fx.responses
    }
    fn call(&mut self, version: i16, req: TxnRequest) -> ResponseKind {
        let rid = self.next;
        self.next += 1;
        let fx = self.c.handle(self.now, rid, version, req);
        let mut responses = self.apply(fx);
        assert_eq!(responses.len(), 1, "one response per request");
        let (got, resp) = responses.pop().unwrap();
        assert_eq!(got, rid);
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("v{version} response does not encode: {e} {resp:?}"));
        resp
    }
    fn fire(&mut self, timer: TxnTimer) {
        let fx = self.c.on_timer(self.now, timer);
        assert!(self.apply(fx).is_empty());
    }
    /// Advances the clock, firing due timers in deadline order.
    fn advance(&mut self, ms: i64) {
        let end = self.now + ms;
        loop {
            let due = self
                .timers
                .iter()
                .filter(|(_, d)| **d <= end)
                .min_by_key(|(k, d)| (**d, **k))
                .map(|(k, d)| (*k, *d));
            let Some((k, d)) = due else { break };
            self.timers.remove(&k);
            self.now = self.now.max(d);
            self.fire(k);
        }
        self.now = end;
    }
    fn init_full(
        &mut self,
        version: i16,
        id: Option<&str>,
        timeout: i32,
        expected: (i64, i16),
    ) -> (i16, i64, i16) {
        let mut r = InitProducerIdRequest::default();
        r.transactional_id = id.map(|i| TransactionalId(s(i)));
        r.transaction_timeout_ms = timeout;
        r.producer_id = ProducerId(expected.0);
        r.producer_epoch = expected.1;
        let fresh = self.next_pid;
        self.next_pid += 1;
        match self.call(
            version,
            TxnRequest::InitProducerId {
                request: r,
                fresh_producer_id: fresh,
            },
        ) {
            ResponseKind::InitProducerId(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
            other => panic!("{other:?}"),
        }
    }
    fn init(&mut self, id: &str) -> (i64, i16) {
        let (e, p, ep) = self.init_full(4, Some(id), TIMEOUT, (-1, -1));
        assert_eq!(e, NONE);
        (p, ep)
    }
    fn add_v(
        &mut self,
        version: i16,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(&str, i32)],
    ) -> i16 {
        let mut r = AddPartitionsToTxnRequest::default();
        if version < 4 {
            r.v3_and_below_transactional_id = TransactionalId(s(id));
            r.v3_and_below_producer_id = ProducerId(pid);
            r.v3_and_below_producer_epoch = epoch;
            r.v3_and_below_topics = topics(parts);
        } else {
            let mut t = AddPartitionsToTxnTransaction::default();
            t.transactional_id = TransactionalId(s(id));
            t.producer_id = ProducerId(pid);
            t.producer_epoch = epoch;
            t.topics = topics(parts);
            r.transactions = vec![t];
        }
        let ResponseKind::AddPartitionsToTxn(resp) =
            self.call(version, TxnRequest::AddPartitionsToTxn(r))
        else {
            panic!()
        };
        let results = if version < 4 {
            resp.results_by_topic_v3_and_below
        } else {
            resp.results_by_transaction
                .into_iter()
                .next()
                .unwrap()
                .topic_results
        };
        let codes: Vec<i16> = results
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect();
        assert!(codes.windows(2).all(|w| w[0] == w[1]), "{codes:?}");
        // No partitions, no per-partition results: the outcome shows in the state.
        codes.first().copied().unwrap_or(NONE)
    }
    fn add(&mut self, id: &str, pid: i64, epoch: i16, parts: &[(&str, i32)]) -> i16 {
        self.add_v(3, id, pid, epoch, parts)
    }
    fn end_v(
        &mut self,
        version: i16,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> (i16, i64, i16) {
        let mut r = EndTxnRequest::default();
        r.transactional_id = TransactionalId(s(id));
        r.producer_id = ProducerId(pid);
        r.producer_epoch = epoch;
        r.committed = commit;
        match self.call(version, TxnRequest::EndTxn(r)) {
            ResponseKind::EndTxn(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
            other => panic!("{other:?}"),
        }
    }
    fn end(&mut self, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
        self.end_v(3, id, pid, epoch, commit).0
    }
    /// Acknowledges every outstanding marker send, as the marker sender would.
    fn markers_done(&mut self) {
        for m in std::mem::take(&mut self.markers) {
            let fx = self.c.handle(
                self.now,
                0,
                0,
                TxnRequest::MarkersWritten {
                    transactional_id: m.transactional_id,
                    producer_id: m.producer_id,
                    producer_epoch: m.producer_epoch,
                    commit: m.commit,
                },
            );
            assert!(self.apply(fx).is_empty());
        }
    }
    fn txn(&self, id: &str) -> &Txn {
        self.c.txns.get(id).expect("known id")
    }
    fn state(&self, id: &str) -> State {
        self.txn(id).state
    }
    fn last_value(&self) -> TxnValue {
        let r = self.records.last().expect("a record");
        records::decode_value(r.value.as_ref().expect("not a tombstone")).unwrap()
    }
    fn describe(&mut self, ids: &[&str]) -> Vec<describe_transactions_response::TransactionState> {
        let mut r = DescribeTransactionsRequest::default();
        r.transactional_ids = ids.iter().map(|i| TransactionalId(s(i))).collect();
        match self.call(0, TxnRequest::DescribeTransactions(r)) {
            ResponseKind::DescribeTransactions(r) => r.transaction_states,
            other => panic!("{other:?}"),
        }
    }
    fn list(
        &mut self,
        version: i16,
        states: &[&str],
        pids: &[i64],
        duration: i64,
    ) -> ListTransactionsResponse {
        let mut r = ListTransactionsRequest::default();
        r.state_filters = states.iter().map(|x| s(x)).collect();
        r.producer_id_filters = pids.iter().map(|p| ProducerId(*p)).collect();
        r.duration_filter = duration;
        match self.call(version, TxnRequest::ListTransactions(r)) {
            ResponseKind::ListTransactions(r) => r,
            other => panic!("{other:?}"),
        }
    }
    /// A fresh core built from every record written so far.
    fn reloaded(&self) -> TxnCoordinator {
        let mut c = TxnCoordinator::new(self.c.config.clone(), EPOCH + 1);
        for r in &self.records {
            c.replay(&r.key, r.value.as_deref()).unwrap();
        }
        c
    }
}

use kafka_protocol::messages::describe_transactions_response;

fn persisted(c: &TxnCoordinator) -> Vec<(String, Txn)> {
    c.txns
        .iter()
        .map(|(id, t)| {
            let mut t = t.clone();
            // Not part of the record (Kafka does not persist it either).
            t.last_producer_epoch = -1;
            (id.clone(), t)
        })
        .collect()
}

#[test]
fn init_new_id_then_bumps_epoch() {
    let mut h = H::new();
    let (pid, epoch) = h.init("a");
    assert_eq!((pid, epoch), (1000, 0));
    assert_eq!(h.state("a"), State::Empty);
    let v = h.last_value();
    assert_eq!((v.producer_id, v.producer_epoch, v.state), (1000, 0, 0));
    assert_eq!(v.partitions, None);
    assert_eq!(v.timeout_ms, TIMEOUT);
    assert_eq!(v.start_ms, -1);
    // Again: same producer id, next epoch; the unused fresh id becomes the spare.
    assert_eq!(h.init("a"), (1000, 1));
    assert!(!h.c.wants_producer_id());
    assert_eq!(h.records.len(), 2);
}

#[test]
fn init_rejects_bad_requests() {
    let mut h = H::new();
    assert_eq!(
        h.init_full(4, Some(""), TIMEOUT, (-1, -1)).0,
        INVALID_REQUEST
    );
    let too_long = h.c.config.max_timeout_ms + 1;
    assert_eq!(
        h.init_full(4, Some("a"), too_long, (-1, -1)).0,
        INVALID_TRANSACTION_TIMEOUT
    );
    assert_eq!(
        h.init_full(4, Some("a"), 0, (-1, -1)).0,
        INVALID_TRANSACTION_TIMEOUT
    );
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (5, -1)).0,
        INVALID_REQUEST
    );
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (-1, 3)).0,
        INVALID_REQUEST
    );
    assert!(h.records.is_empty());
    assert!(h.c.txns.is_empty());
    // A null transactional id is an idempotent producer: a new id at epoch 0, no record.
    let (e, pid, epoch) = h.init_full(4, None, TIMEOUT, (-1, -1));
    assert_eq!((e, epoch), (NONE, 0));
    assert!(pid >= 1000);
    assert!(h.records.is_empty());
}

#[test]
fn commit_full_cycle() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    assert_eq!(h.add("a", pid, ep, &[("t", 0), ("t", 1)]), NONE);
    assert_eq!(h.state("a"), State::Ongoing);
    let v = h.last_value();
    assert_eq!(v.state, 1);
    assert_eq!(v.partitions, Some(vec![("t".to_string(), vec![0, 1])]));
    assert_eq!(v.start_ms, h.now);
    h.now += 10;
    assert_eq!(h.add("a", pid, ep, &[("u", 3)]), NONE);
    let before = h.records.len();
    // Already in the transaction: answered without a write.
    assert_eq!(h.add("a", pid, ep, &[("t", 1)]), NONE);
    assert_eq!(h.records.len(), before);

    assert_eq!(h.end("a", pid, ep, true), NONE);
    assert_eq!(h.state("a"), State::PrepareCommit);
    assert_eq!(h.last_value().state, 2);
    assert_eq!(
        h.markers,
        vec![MarkerSend {
            transactional_id: "a".into(),
            producer_id: pid,
            producer_epoch: ep,
            coordinator_epoch: EPOCH,
            commit: true,
            partitions: vec![("t".into(), 0), ("t".into(), 1), ("u".into(), 3)],
        }]
    );
    h.markers_done();
    assert_eq!(h.state("a"), State::CompleteCommit);
    let v = h.last_value();
    assert_eq!(v.state, 4);
    assert_eq!(v.partitions, Some(vec![]));
    assert!(h.txn("a").partitions.is_empty());
    // A retried EndTxn after completion succeeds; the opposite result is refused.
    assert_eq!(h.end("a", pid, ep, true), NONE);
    assert_eq!(h.end("a", pid, ep, false), INVALID_TXN_STATE);
    // The next transaction starts fresh.
    h.now += 5;
    assert_eq!(h.add("a", pid, ep, &[("t", 2)]), NONE);
    assert_eq!(h.txn("a").start_ms, h.now);
    assert_eq!(h.txn("a").partitions.len(), 1);
}

#[test]
fn abort_full_cycle_and_wrong_states() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    assert_eq!(h.end("a", pid, ep, false), INVALID_TXN_STATE, "Empty");
    h.add("a", pid, ep, &[("t", 0)]);
    assert_eq!(h.end("a", pid, ep, false), NONE);
    assert_eq!(h.state("a"), State::PrepareAbort);
    assert!(!h.markers[0].commit);
    // While the markers are out: retries wait, the other result and new work are refused.
    assert_eq!(h.end("a", pid, ep, false), CONCURRENT_TRANSACTIONS);
    assert_eq!(h.end("a", pid, ep, true), INVALID_TXN_STATE);
    assert_eq!(h.add("a", pid, ep, &[("t", 1)]), CONCURRENT_TRANSACTIONS);
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (-1, -1)).0,
        CONCURRENT_TRANSACTIONS
    );
    // A stale or mismatched completion is ignored.
    let fx = h.c.handle(
        h.now,
        0,
        0,
        TxnRequest::MarkersWritten {
            transactional_id: "a".into(),
            producer_id: pid,
            producer_epoch: ep,
            commit: true,
        },
    );
    assert!(fx.records.is_empty());
    h.markers_done();
    assert_eq!(h.state("a"), State::CompleteAbort);
    assert_eq!(h.end("a", pid, ep, false), NONE);
    assert_eq!(h.end("a", pid, ep, true), INVALID_TXN_STATE);
}

#[test]
fn end_txn_with_no_partitions_completes_at_once() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    h.add("a", pid, ep, &[]);
    assert_eq!(h.state("a"), State::Ongoing);
    let before = h.records.len();
    assert_eq!(h.end("a", pid, ep, true), NONE);
    assert!(h.markers.is_empty());
    assert_eq!(h.state("a"), State::CompleteCommit);
    assert_eq!(h.records.len(), before + 2, "Prepare then Complete");
}

#[test]
fn producer_id_and_epoch_errors_per_version() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    assert_eq!(
        h.add("nope", pid, ep, &[("t", 0)]),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        h.add("a", pid + 1, ep, &[("t", 0)]),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(h.add_v(2, "a", pid, ep + 1, &[("t", 0)]), PRODUCER_FENCED);
    assert_eq!(
        h.add_v(1, "a", pid, ep + 1, &[("t", 0)]),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(h.add_v(1, "", pid, ep, &[("t", 0)]), INVALID_REQUEST);
    assert_eq!(h.end_v(2, "a", pid, ep + 1, true).0, PRODUCER_FENCED);
    assert_eq!(h.end_v(1, "a", pid, ep + 1, true).0, INVALID_PRODUCER_EPOCH);
    assert_eq!(h.end("nope", pid, ep, true), INVALID_PRODUCER_ID_MAPPING);
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (pid, 9)).0,
        PRODUCER_FENCED
    );
    assert_eq!(
        h.init_full(3, Some("a"), TIMEOUT, (pid, 9)).0,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (pid + 5, 0)).0,
        PRODUCER_FENCED
    );
}

#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    let mut r = AddOffsetsToTxnRequest::default();
    r.transactional_id = TransactionalId(s("a"));
    r.producer_id = ProducerId(pid);
    r.producer_epoch = ep;
    r.group_id = GroupId(s("g"));
    let req = |r: &AddOffsetsToTxnRequest| TxnRequest::AddOffsetsToTxn {
        request: r.clone(),
        offsets_partition: 17,
    };
    let ResponseKind::AddOffsetsToTxn(resp) = h.call(3, req(&r)) else {
        panic!()
    };
    assert_eq!(resp.error_code, NONE);
    assert!(h
        .txn("a")
        .partitions
        .contains(&("__consumer_offsets".to_string(), 17)));
    r.producer_epoch = ep + 1;
    let ResponseKind::AddOffsetsToTxn(resp) = h.call(1, req(&r)) else {
        panic!()
    };
    assert_eq!(resp.error_code, INVALID_PRODUCER_EPOCH);
    let ResponseKind::AddOffsetsToTxn(resp) = h.call(2, req(&r)) else {
        panic!()
    };
    assert_eq!(resp.error_code, PRODUCER_FENCED);
}

#[test]
fn init_fences_an_ongoing_transaction_by_aborting_it() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    h.add("a", pid, ep, &[("t", 0)]);
    // A new producer instance: the open transaction is aborted with a bumped epoch.
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (-1, -1)).0,
        CONCURRENT_TRANSACTIONS
    );
    assert_eq!(h.state("a"), State::PrepareAbort);
    let fenced = h.txn("a").producer_epoch;
    assert!(fenced > ep);
    assert_eq!(h.markers.len(), 1);
    assert_eq!(h.markers[0].producer_epoch, fenced);
    assert!(!h.markers[0].commit);
    // The old producer is fenced.
    assert_eq!(h.add_v(2, "a", pid, ep, &[("t", 1)]), PRODUCER_FENCED);
    assert_eq!(h.end_v(3, "a", pid, ep, true).0, PRODUCER_FENCED);
    // Still aborting: the new one is told to retry.
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (-1, -1)).0,
        CONCURRENT_TRANSACTIONS
    );
    h.markers_done();
    assert_eq!(h.state("a"), State::CompleteAbort);
    assert_eq!(h.end_v(5, "a", pid, ep, false).0, PRODUCER_FENCED);
    let (pid2, ep2) = h.init("a");
    assert_eq!(pid2, pid);
    assert_eq!(ep2, fenced + 1);
}

#[test]
fn init_without_a_producer_id_to_give_is_retriable() {
    let mut h = H::new();
    let mut r = InitProducerIdRequest::default();
    r.transactional_id = Some(TransactionalId(s("a")));
    r.transaction_timeout_ms = TIMEOUT;
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let req = |r: &InitProducerIdRequest| TxnRequest::InitProducerId {
        request: r.clone(),
        fresh_producer_id: -1,
    };
    let ResponseKind::InitProducerId(resp) = h.call(4, req(&r)) else {
        panic!()
    };
    assert_eq!(resp.error_code, COORDINATOR_LOAD_IN_PROGRESS);
    assert!(h.c.txns.is_empty());
    // An existing id that only needs a bump does not need one.
    h.init("a");
    let ResponseKind::InitProducerId(resp) = h.call(4, req(&r)) else {
        panic!()
    };
    assert_eq!((resp.error_code, resp.producer_epoch), (NONE, 1));
    assert!(h.c.wants_producer_id());
}

#[test]
fn kip360_recovery_with_producer_id_and_epoch() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    // The producer names its current epoch: bumped, and a retry of that bump is answered
    // with the same epoch.
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (pid, ep)),
        (NONE, pid, ep + 1)
    );
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (pid, ep)),
        (NONE, pid, ep + 1)
    );
    assert_eq!(
        h.init_full(4, Some("a"), TIMEOUT, (pid, ep + 5)).0,
        PRODUCER_FENCED
    );
    // A producer recovering from UNKNOWN_PRODUCER_ID on an id the coordinator lost.
    let (e, _, epoch) = h.init_full(4, Some("b"), TIMEOUT, (77, 3));
    assert_eq!((e, epoch), (NONE, 0));
}

/// A record for `id` as Kafka would have written it, replayed into the core.
fn seed(h: &mut H, id: &str, v: TxnValue) {
    let key = records::key(id);
    let value = records::value(&v);
    h.c.replay(&key, Some(&value)).unwrap();
}

fn value(
    pid: i64,
    epoch: i16,
    state: State,
    parts: Option<Vec<(String, Vec<i32>)>>,
    tv: i16,
) -> TxnValue {
    TxnValue {
        producer_id: pid,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: epoch,
        timeout_ms: TIMEOUT,
        state: state.id(),
        partitions: parts,
        last_update_ms: 1_000_000,
        start_ms: 1_000_000,
        client_transaction_version: tv,
    }
}

#[test]
fn exhausted_epoch_rotates_the_producer_id() {
    let mut h = H::new();
    seed(
        &mut h,
        "a",
        value(50, i16::MAX - 1, State::CompleteCommit, Some(vec![]), 0),
    );
    let (e, pid, ep) = h.init_full(4, Some("a"), TIMEOUT, (-1, -1));
    assert_eq!((e, ep), (NONE, 0));
    assert_ne!(pid, 50);
    assert_eq!(h.txn("a").previous_producer_id, 50);
    assert_eq!(h.last_value().previous_producer_id, 50);

    // KIP-360 with the exhausted epoch: rotation, and the retry with the old id is answered
    // with the new one.
    seed(
        &mut h,
        "b",
        value(60, i16::MAX - 1, State::CompleteAbort, Some(vec![]), 0),
    );
    let (e, pid, ep) = h.init_full(4, Some("b"), TIMEOUT, (60, i16::MAX - 1));
    assert_eq!((e, ep), (NONE, 0));
    assert_ne!(pid, 60);
    assert_eq!(
        h.init_full(4, Some("b"), TIMEOUT, (60, i16::MAX - 1)),
        (NONE, pid, 0)
    );
}

#[test]
fn batched_add_and_verify_only() {
    let mut h = H::new();
    let (pa, ea) = h.init("a");
    let (pb, eb) = h.init("b");
    h.add("a", pa, ea, &[("t", 0)]);
    let txn = |id: &str, pid: i64, ep: i16, verify: bool, parts: &[(&str, i32)]| {
        let mut t = AddPartitionsToTxnTransaction::default();
        t.transactional_id = TransactionalId(s(id));
        t.producer_id = ProducerId(pid);
        t.producer_epoch = ep;
        t.verify_only = verify;
        t.topics = topics(parts);
        t
    };
    let mut r = AddPartitionsToTxnRequest::default();
    r.transactions = vec![
        txn("a", pa, ea, true, &[("t", 0), ("t", 1)]),
        txn("b", pb, eb, false, &[("u", 0)]),
        txn("c", 5, 0, true, &[("u", 0)]),
    ];
    let before = h.records.len();
    let ResponseKind::AddPartitionsToTxn(resp) = h.call(4, TxnRequest::AddPartitionsToTxn(r))
    else {
        panic!()
    };
    let codes: Vec<(String, Vec<i16>)> = resp
        .results_by_transaction
        .iter()
        .map(|t| {
            (
                t.transactional_id.to_string(),
                t.topic_results
                    .iter()
                    .flat_map(|x| {
                        x.results_by_partition
                            .iter()
                            .map(|p| p.partition_error_code)
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("a".into(), vec![NONE, TRANSACTION_ABORTABLE]),
            ("b".into(), vec![NONE]),
            ("c".into(), vec![INVALID_PRODUCER_ID_MAPPING]),
        ]
    );
    // Only b's add was written; verification never writes nor adds.
    assert_eq!(h.records.len(), before + 1);
    assert_eq!(h.txn("a").partitions.len(), 1);
    assert_eq!(h.state("b"), State::Ongoing);
    h.end("a", pa, ea, true);
    let mut r = AddPartitionsToTxnRequest::default();
    r.transactions = vec![
        txn("a", pa, ea, true, &[("t", 0)]),
        txn("b", pb, eb + 1, true, &[("u", 0)]),
    ];
    let ResponseKind::AddPartitionsToTxn(resp) = h.call(5, TxnRequest::AddPartitionsToTxn(r))
    else {
        panic!()
    };
    let codes: Vec<i16> = resp
        .results_by_transaction
        .iter()
        .map(|t| t.topic_results[0].results_by_partition[0].partition_error_code)
        .collect();
    assert_eq!(codes, vec![CONCURRENT_TRANSACTIONS, PRODUCER_FENCED]);
}

#[test]
fn tv2_bumps_the_epoch_on_every_end_txn() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    // A partition leader adds the partition implicitly (v5) for a TV2 producer.
    assert_eq!(h.add_v(5, "a", pid, ep, &[("t", 0)]), NONE);
    assert_eq!(h.txn("a").client_tv, 2);
    assert_eq!(h.end_v(5, "a", pid, ep, true), (NONE, pid, ep + 1));
    assert_eq!(h.markers[0].producer_epoch, ep + 1);
    assert_eq!(h.last_value().client_transaction_version, 2);
    // A retry with the old epoch while the markers are out waits; after completion it
    // succeeds and names the new epoch.
    assert_eq!(h.end_v(5, "a", pid, ep, true).0, CONCURRENT_TRANSACTIONS);
    h.markers_done();
    assert_eq!(h.state("a"), State::CompleteCommit);
    assert_eq!(h.txn("a").producer_epoch, ep + 1);
    assert_eq!(h.end_v(5, "a", pid, ep, true), (NONE, pid, ep + 1));
    assert_eq!(h.end_v(5, "a", pid, ep, false).0, INVALID_TXN_STATE);
    // The next transaction runs at the new epoch; the old one is fenced.
    assert_eq!(h.add_v(5, "a", pid, ep, &[("t", 0)]), PRODUCER_FENCED);
    assert_eq!(h.add_v(5, "a", pid, ep + 1, &[("t", 0)]), NONE);
    assert_eq!(h.end_v(5, "a", pid, ep + 1, false), (NONE, pid, ep + 2));
    h.markers_done();
    assert_eq!(h.state("a"), State::CompleteAbort);
    assert_eq!(h.txn("a").producer_epoch, ep + 2);
    // TV2 lets the client abort at the current epoch outside a transaction (it cannot
    // know whether a partition leader added a partition): the epoch is bumped, nothing to
    // mark. A commit there is refused.
    assert_eq!(h.end_v(5, "a", pid, ep + 2, true).0, INVALID_TXN_STATE);
    let before = h.records.len();
    assert_eq!(h.end_v(5, "a", pid, ep + 2, false), (NONE, pid, ep + 3));
    assert!(h.markers.is_empty());
    assert_eq!(h.records.len(), before + 2);
    assert_eq!(h.state("a"), State::CompleteAbort);
    assert_eq!(h.txn("a").start_ms, h.now);
    let (pb, eb) = h.init("b");
    assert_eq!(h.end_v(5, "b", pb, eb, true).0, INVALID_TXN_STATE);
    assert_eq!(h.end_v(5, "b", pb, eb + 1, false).0, PRODUCER_FENCED);
    assert_eq!(h.end_v(5, "b", pb, eb, false), (NONE, pb, eb + 1));
    // The round trip keeps the TV2 fields.
    assert_eq!(persisted(&h.reloaded()), persisted(&h.c));
}

#[test]
fn tv2_epoch_overflow_moves_to_a_new_producer_id() {
    let mut h = H::new();
    let max = i16::MAX - 1;
    seed(
        &mut h,
        "a",
        value(
            50,
            max,
            State::Ongoing,
            Some(vec![("t".into(), vec![0])]),
            2,
        ),
    );
    assert!(h.c.wants_producer_id());
    assert_eq!(h.end_v(5, "a", 50, max, true).0, CONCURRENT_TRANSACTIONS);
    h.c.supply_producer_id(900);
    assert!(!h.c.wants_producer_id());
    // Answered with the ids after the Prepare record, as Kafka does; the move to the new
    // id happens at completion.
    assert_eq!(h.end_v(5, "a", 50, max, true), (NONE, 50, i16::MAX));
    assert_eq!(h.markers[0].producer_id, 50);
    assert_eq!(h.markers[0].producer_epoch, i16::MAX);
    assert_eq!(h.last_value().next_producer_id, 900);
    // A reload in PrepareCommit still completes to the new id.
    let mut reloaded = h.reloaded();
    let fx = reloaded.loaded(h.now);
    assert_eq!(fx.markers.len(), 1);
    h.markers_done();
    let t = h.txn("a");
    assert_eq!(
        (t.producer_id, t.producer_epoch, t.previous_producer_id),
        (900, 0, 50)
    );
    assert_eq!(h.last_value().previous_producer_id, 50);
    // The retry with the old id and epoch is recognized.
    assert_eq!(h.end_v(5, "a", 50, max, true), (NONE, 900, 0));
    assert_eq!(h.add_v(5, "a", 900, 0, &[("t", 0)]), NONE);
}

#[test]
fn timed_out_transaction_is_aborted_and_its_producer_fenced() {
    let mut h = H::new();
    let mut r = InitProducerIdRequest::default();
    r.transactional_id = Some(TransactionalId(s("a")));
    r.transaction_timeout_ms = 15_000;
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let ResponseKind::InitProducerId(resp) = h.call(
        4,
        TxnRequest::InitProducerId {
            request: r,
            fresh_producer_id: 42,
        },
    ) else {
        panic!()
    };
    let (pid, ep) = (resp.producer_id.0, resp.producer_epoch);
    h.add("a", pid, ep, &[("t", 0)]);
    // A stale fire (before the deadline) does nothing.
    let fx = h.c.on_timer(h.now, TxnTimer::AbortTimedOut);
    assert!(fx.records.is_empty() && fx.timers.is_empty());
    h.advance(15_000);
    assert_eq!(h.state("a"), State::Ongoing, "not past the timeout yet");
    h.advance(10_000);
    assert_eq!(h.state("a"), State::PrepareAbort);
    assert!(h.txn("a").producer_epoch > ep);
    assert_eq!(h.markers.len(), 1);
    assert_eq!(h.add_v(3, "a", pid, ep, &[("t", 1)]), PRODUCER_FENCED);
    assert_eq!(h.end_v(1, "a", pid, ep, true).0, INVALID_PRODUCER_EPOCH);
    h.markers_done();
    assert_eq!(h.state("a"), State::CompleteAbort);
    assert_eq!(h.end_v(3, "a", pid, ep, true).0, PRODUCER_FENCED);
    // The timer keeps running.
    assert!(h.timers.contains_key(&TxnTimer::AbortTimedOut));
}

#[test]
fn idle_ids_expire_but_open_transactions_do_not() {
    let config = TxnConfig {
        transactional_id_expiration_ms: 100_000,
        remove_expired_interval_ms: 10_000,
        ..TxnConfig::default()
    };
    let mut h = H::with(config);
    let (pa, ea) = h.init("a");
    h.init("b");
    let (pc, ec) = h.init("c");
    h.add("c", pc, ec, &[("t", 0)]);
    h.end("c", pc, ec, true);
    h.add("a", pa, ea, &[("t", 0)]);
    // Keep "a" from timing out: its timeout is far beyond the test.
    h.c.txns.get_mut("a").unwrap().timeout_ms = i32::MAX;
    h.advance(95_000);
    assert_eq!(h.c.txns.len(), 3);
    h.advance(20_000);
    // b (Empty) expired; a is Ongoing, c awaits its markers.
    assert!(!h.c.txns.contains_key("b"));
    let tomb = h.records.iter().rev().find(|r| r.value.is_none()).unwrap();
    assert_eq!(tomb.key, records::key("b"));
    h.markers_done();
    h.advance(120_000);
    assert!(!h.c.txns.contains_key("c"));
    assert!(h.c.txns.contains_key("a"));
    let d = h.describe(&["b", "a"]);
    assert_eq!(d[0].error_code, TRANSACTIONAL_ID_NOT_FOUND);
    assert_eq!(d[1].error_code, NONE);
    // Reloading honours the tombstones.
    let names: Vec<String> = persisted(&h.reloaded())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(names, vec!["a".to_string()]);
}

#[test]
fn load_in_prepare_commit_resends_markers() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    h.add("a", pid, ep, &[("t", 0), ("u", 1)]);
    h.end("a", pid, ep, true);
    let (pb, eb) = h.init("b");
    h.add("b", pb, eb, &[("t", 2)]);
    let sent = h.markers.clone();
    let mut c = h.reloaded();
    let fx = c.loaded(h.now);
    assert!(fx.records.is_empty() && fx.responses.is_empty());
    let mut expect = sent[0].clone();
    expect.coordinator_epoch = EPOCH + 1;
    assert_eq!(fx.markers, vec![expect.clone()]);
    let mut timers: Vec<TxnTimer> = fx.timers.iter().map(|(t, _)| *t).collect();
    timers.sort();
    assert_eq!(
        timers,
        vec![TxnTimer::AbortTimedOut, TxnTimer::ExpireTransactionalIds]
    );
    let fx = c.handle(
        h.now,
        0,
        0,
        TxnRequest::MarkersWritten {
            transactional_id: "a".into(),
            producer_id: expect.producer_id,
            producer_epoch: expect.producer_epoch,
            commit: true,
        },
    );
    assert_eq!(fx.records.len(), 1);
    assert_eq!(c.txns["a"].state, State::CompleteCommit);
    assert_eq!(c.txns["b"].state, State::Ongoing);
}

#[test]
fn every_record_replays_to_the_same_state() {
    let mut h = H::new();
    let (pa, ea) = h.init("a");
    h.add("a", pa, ea, &[("t", 0), ("t", 5), ("u", 1)]);
    h.end("a", pa, ea, true);
    h.markers_done();
    let (pb, eb) = h.init("b");
    h.add_v(5, "b", pb, eb, &[("x", 0)]);
    h.end_v(5, "b", pb, eb, false);
    let (pc, ec) = h.init("c");
    h.add("c", pc, ec, &[("y", 0)]);
    h.init_full(4, Some("c"), TIMEOUT, (-1, -1));
    h.init("d");
    h.init("d");
    let (pe, ee) = h.init("e");
    h.add("e", pe, ee, &[("z", 9)]);
    assert_eq!(persisted(&h.reloaded()), persisted(&h.c));
    h.markers_done();
    assert_eq!(persisted(&h.reloaded()), persisted(&h.c));
    // Every value we wrote decodes and re-encodes to the same bytes.
    for r in &h.records {
        let v = r.value.as_ref().unwrap();
        assert_eq!(
            &records::value(&records::decode_value(v).unwrap())[..],
            &v[..]
        );
    }
}

#[test]
fn describe_and_list_with_filters() {
    let mut h = H::new();
    let (pa, ea) = h.init("a");
    h.add("a", pa, ea, &[("t", 1), ("s", 0), ("t", 0)]);
    let (pb, _) = h.init("b");
    h.now += 5_000;
    let d = h.describe(&["a", "b", "zz", ""]);
    assert_eq!(d[0].error_code, NONE);
    assert_eq!(d[0].transaction_state.as_str(), "Ongoing");
    assert_eq!(d[0].producer_id.0, pa);
    assert_eq!(d[0].transaction_timeout_ms, TIMEOUT);
    assert_eq!(d[0].transaction_start_time_ms, h.now - 5_000);
    let tp: Vec<(String, Vec<i32>)> = d[0]
        .topics
        .iter()
        .map(|t| (t.topic.to_string(), t.partitions.clone()))
        .collect();
    assert_eq!(tp, vec![("s".into(), vec![0]), ("t".into(), vec![0, 1])]);
    assert_eq!(d[1].transaction_state.as_str(), "Empty");
    assert_eq!(d[1].transaction_start_time_ms, -1);
    assert_eq!(d[2].error_code, TRANSACTIONAL_ID_NOT_FOUND);
    assert_eq!(d[3].error_code, INVALID_REQUEST);

    let ids = |r: &ListTransactionsResponse| -> Vec<String> {
        r.transaction_states
            .iter()
            .map(|t| t.transactional_id.to_string())
            .collect()
    };
    assert_eq!(ids(&h.list(0, &[], &[], -1)), vec!["a", "b"]);
    let r = h.list(0, &["Ongoing", "Bogus"], &[], -1);
    assert_eq!(ids(&r), vec!["a"]);
    assert_eq!(r.unknown_state_filters, vec![s("Bogus")]);
    assert_eq!(
        r.transaction_states[0].transaction_state.as_str(),
        "Ongoing"
    );
    assert_eq!(ids(&h.list(0, &[], &[pb], -1)), vec!["b"]);
    // v1: running longer than the duration (the Empty id's start is -1: it always passes).
    assert_eq!(ids(&h.list(1, &["Ongoing"], &[], 4_999)), vec!["a"]);
    assert!(ids(&h.list(1, &["Ongoing"], &[], 5_000)).is_empty());
    // v0 has no duration filter.
    assert_eq!(ids(&h.list(0, &["Ongoing"], &[], 5_000)), vec!["a"]);
}

// ---- record format ----

#[test]
fn key_bytes_match_kafkas_layout() {
    assert_eq!(&records::key("tx")[..], &[0, 0, 0, 2, b't', b'x']);
    assert_eq!(
        records::decode_key(&[0, 0, 0, 2, b't', b'x']).unwrap(),
        Some("tx".into())
    );
    // Unknown key versions are skipped, as Kafka does.
    assert_eq!(records::decode_key(&[0, 1, 0, 0]).unwrap(), None);
    assert!(records::decode_key(&[0, 0, 0, 5, b'a']).is_err());
}

#[test]
fn value_v1_bytes_match_kafkas_layout() {
    let v = TxnValue {
        producer_id: 0x0102,
        previous_producer_id: 7,
        next_producer_id: -1,
        producer_epoch: 3,
        timeout_ms: 60_000,
        state: 1,
        partitions: Some(vec![("ab".into(), vec![0, 2])]),
        last_update_ms: 10,
        start_ms: 9,
        client_transaction_version: 2,
    };
    let mut e = BytesMut::new();
    e.put_i16(1); // version
    e.put_i64(0x0102); // ProducerId
    e.put_i16(3); // ProducerEpoch
    e.put_i32(60_000); // TransactionTimeoutMs
    e.put_i8(1); // TransactionStatus
    e.put_u8(2); // compact array: 1 topic
    e.put_u8(3); // compact string "ab"
    e.put_slice(b"ab");
    e.put_u8(3); // compact array: 2 partitions
    e.put_i32(0);
    e.put_i32(2);
    e.put_u8(0); // PartitionsSchema tagged fields
    e.put_i64(10); // TransactionLastUpdateTimestampMs
    e.put_i64(9); // TransactionStartTimestampMs
    e.put_u8(2); // two tagged fields: PreviousProducerId (tag 0), ClientTransactionVersion (tag 2)
    e.put_u8(0);
    e.put_u8(8);
    e.put_i64(7);
    e.put_u8(2);
    e.put_u8(2);
    e.put_i16(2);
    assert_eq!(&records::value(&v)[..], &e[..]);
    assert_eq!(records::decode_value(&e).unwrap(), v);

    // Empty: null partitions, every tagged field at its default (none written).
    let empty = TxnValue {
        previous_producer_id: -1,
        client_transaction_version: 0,
        state: 0,
        partitions: None,
        start_ms: -1,
        ..v
    };
    let mut e = BytesMut::new();
    e.put_i16(1);
    e.put_i64(0x0102);
    e.put_i16(3);
    e.put_i32(60_000);
    e.put_i8(0);
    e.put_u8(0); // null array
    e.put_i64(10);
    e.put_i64(-1);
    e.put_u8(0);
    assert_eq!(&records::value(&empty)[..], &e[..]);
    assert_eq!(records::decode_value(&e).unwrap(), empty);
}

#[test]
fn value_v0_written_by_older_kafka_is_read() {
    let mut e = BytesMut::new();
    e.put_i16(0);
    e.put_i64(55);
    e.put_i16(4);
    e.put_i32(30_000);
    e.put_i8(2); // PrepareCommit
    e.put_i32(2); // two topics
    e.put_i16(1);
    e.put_slice(b"t");
    e.put_i32(1);
    e.put_i32(3);
    e.put_i16(1);
    e.put_slice(b"u");
    e.put_i32(2);
    e.put_i32(0);
    e.put_i32(1);
    e.put_i64(200);
    e.put_i64(100);
    let v = records::decode_value(&e).unwrap();
    assert_eq!(v.producer_id, 55);
    assert_eq!(v.state, 2);
    assert_eq!(
        v.partitions,
        Some(vec![("t".into(), vec![3]), ("u".into(), vec![0, 1])])
    );
    assert_eq!((v.last_update_ms, v.start_ms), (200, 100));
    assert_eq!(
        (
            v.previous_producer_id,
            v.next_producer_id,
            v.client_transaction_version
        ),
        (-1, -1, 0)
    );
    // Loading it re-sends the commit markers.
    let mut c = TxnCoordinator::new(TxnConfig::default(), 3);
    c.replay(&records::key("old"), Some(&e)).unwrap();
    let fx = c.loaded(0);
    assert_eq!(fx.markers.len(), 1);
    assert_eq!(fx.markers[0].partitions.len(), 3);
    assert_eq!(fx.markers[0].coordinator_epoch, 3);
    // A tombstone removes it.
    c.replay(&records::key("old"), None).unwrap();
    assert!(c.txns.is_empty());
}

#[test]
fn hostile_records_are_errors_not_panics() {
    let mut h = H::new();
    let (pid, ep) = h.init("a");
    h.add("a", pid, ep, &[("topic", 0), ("topic", 1)]);
    h.add_v(5, "a", pid, ep, &[("other", 0)]);
    let good = h.records.last().unwrap().value.clone().unwrap();
    let mut c = TxnCoordinator::new(TxnConfig::default(), 0);
    let key = records::key("a");
    for n in 0..good.len() {
        assert!(
            c.replay(&key, Some(&good[..n])).is_err(),
            "truncated at {n}"
        );
    }
    // Huge counts must not allocate.
    let mut e = BytesMut::new();
    e.put_i16(0);
    e.put_i64(1);
    e.put_i16(0);
    e.put_i32(1);
    e.put_i8(1);
    e.put_i32(i32::MAX);
    assert!(c.replay(&key, Some(&e)).is_err());
    let mut e = BytesMut::new();
    e.put_i16(1);
    e.put_i64(1);
    e.put_i16(0);
    e.put_i32(1);
    e.put_i8(1);
    e.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(c.replay(&key, Some(&e)).is_err());
    // Unknown state, unknown version, bad UTF-8.
    let mut bad = good.to_vec();
    bad[16] = 9;
    assert!(c.replay(&key, Some(&bad)).is_err());
    assert!(c.replay(&key, Some(&[0, 2, 0, 0])).is_err());
    assert!(c.replay(&[0, 0, 0, 1, 0xff], None).is_err());
    // Pseudo-random mutations: any outcome but a panic, and the core stays usable.
    let mut x: u32 = 12345;
    for _ in 0..5_000 {
        let mut m = good.to_vec();
        for _ in 0..3 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let i = (x as usize >> 8) % m.len();
            m[i] = (x >> 3) as u8;
        }
        let _ = c.replay(&key, Some(&m));
    }
    let fx = c.loaded(0);
    let _ = c.on_timer(i64::MAX / 2, TxnTimer::AbortTimedOut);
    let _ = c.on_timer(i64::MAX / 2, TxnTimer::ExpireTransactionalIds);
    drop(fx);
}

#[test]
fn config_defaults_are_kafkas() {
    let load = |overrides: &[&str]| {
        let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
        crate::config::BrokerConfig::load(None, Vec::new(), &overrides)
    };
    let c = load(&[]).unwrap();
    assert_eq!(c.txn, TxnConfig::default());
    assert_eq!(c.txn.max_timeout_ms, 900_000);
    assert_eq!(c.txn.state_log_min_isr, 2);
    assert!(load(&["transaction.max.timeout.ms=0"]).is_err());
    let c = load(&["transaction.state.log.num.partitions=3"]).unwrap();
    assert_eq!(c.txn.state_log_num_partitions, 3);
    assert_eq!(
        c.broker_value("transaction.state.log.num.partitions"),
        Some(("3".to_string(), true))
    );
}

#[test]
fn transactional_id_partition_matches_kafka() {
    // Same hash as group ids (abs(String.hashCode) % n).
    assert_eq!(
        partition_for_transactional_id("my-txn", 50),
        crate::group::partition_for_group("my-txn", 50)
    );
}

#[test]
fn unknown_tagged_fields_are_skipped() {
    let v = TxnValue {
        producer_id: 9,
        previous_producer_id: -1,
        next_producer_id: 4,
        producer_epoch: 1,
        timeout_ms: 1000,
        state: 4,
        partitions: Some(vec![]),
        last_update_ms: 5,
        start_ms: 3,
        client_transaction_version: 2,
    };
    let bytes = records::value(&v);
    // Re-frame the trailing tagged section with an extra, unknown tag 3 (an i16).
    let mut e = BytesMut::new();
    let body_len = 2 + 8 + 2 + 4 + 1 + 1 + 8 + 8;
    e.put_slice(&bytes[..body_len]);
    e.put_u8(3); // three tagged fields
    e.put_u8(1);
    e.put_u8(8);
    e.put_i64(4);
    e.put_u8(2);
    e.put_u8(2);
    e.put_i16(2);
    e.put_u8(3);
    e.put_u8(2);
    e.put_i16(-1);
    assert_eq!(records::decode_value(&e).unwrap(), v);
    // The tag section as we write it: the two non-default fields.
    assert_eq!(
        &bytes[body_len..],
        &[2, 1, 8, 0, 0, 0, 0, 0, 0, 0, 4, 2, 2, 0, 2]
    );
}
