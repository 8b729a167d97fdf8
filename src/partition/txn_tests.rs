//! Transactions on a partition: transactional appends, markers, the last stable offset,
//! read_committed reads, and the transaction index across restarts, crashes, hostile
//! files and follower replication.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;
use crate::log::batch::test_support::batch_with;

const PID: i64 = 7;

fn topic() -> TopicImage {
    TopicImage {
        name: "t".to_string(),
        topic_id: Uuid::nil(),
        partitions: Vec::new(),
        configs: BTreeMap::new(),
    }
}

fn open_as(dir: &Path, assignment: Assignment) -> Partition {
    Partition::open(
        dir,
        &topic(),
        0,
        assignment,
        LogConfig::default(),
        RecordRules::default(),
        86_400_000,
        Arc::new(LogDirHealth::new(dir)),
        Checkpointed::default(),
    )
    .expect("open partition")
}

fn leader(dir: &Path) -> Partition {
    open_as(dir, Assignment::sole_leader(1))
}

/// Node 1 following node 2 in epoch 0.
fn follower(dir: &Path) -> Partition {
    let mut assignment = Assignment::sole_leader(1);
    assignment.record.replicas = vec![2, 1];
    assignment.record.isr = vec![2, 1];
    assignment.record.leader = 2;
    open_as(dir, assignment)
}

/// A transactional batch of `count` records.
fn txn_batch(pid: i64, epoch: i16, sequence: i32, count: usize) -> Vec<u8> {
    let values: Vec<&[u8]> = (0..count).map(|_| &b"v"[..]).collect();
    let mut bytes = batch_with(&values, now_ms(), pid, epoch, sequence).to_vec();
    let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | 0x10;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn plain_batch() -> Vec<u8> {
    batch_with(&[b"x"], now_ms(), -1, -1, -1).to_vec()
}

fn committed(p: &Partition, offset: i64) -> ReadResult {
    p.read(offset, 1 << 20, true, Reader::CommittedConsumer)
        .unwrap()
}

fn read_offsets(records: &[u8]) -> Vec<i64> {
    let mut rest = records;
    let mut offsets = Vec::new();
    while let Ok(header) = BatchHeader::parse(rest) {
        offsets.push(header.base_offset);
        rest = &rest[header.total_size()..];
    }
    offsets
}

#[test]
fn a_transaction_holds_the_lso_until_its_marker_and_an_abort_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = leader(dir.path());
    p.append(&plain_batch()).unwrap();
    assert_eq!(p.append(&txn_batch(PID, 0, 0, 2)).unwrap().base_offset, 1);
    assert_eq!((p.offsets().1, p.last_stable_offset()), (3, 1));
    let described = p.describe_producers().unwrap();
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].current_txn_start_offset, 1);
    assert_eq!(described[0].last_sequence, 1);

    // Kafka: a non-transactional write while the transaction is open.
    let plain_from_pid = batch_with(&[b"y"], now_ms(), PID, 0, 2);
    assert_eq!(
        p.append(&plain_from_pid).unwrap_err().error.code,
        48, // INVALID_TXN_STATE
    );
    // read_committed stops at the LSO; read_uncommitted at the high watermark.
    let read = committed(&p, 0);
    assert_eq!(read_offsets(&read.records), vec![0]);
    assert_eq!(read.last_stable_offset, 1);
    assert!(read.aborted_transactions.is_empty());
    let uncommitted = p.read(0, 1 << 20, true, Reader::Consumer).unwrap();
    assert_eq!(read_offsets(&uncommitted.records), vec![0, 1]);

    let marker = p.append_txn_marker(PID, 0, 5, false).unwrap();
    assert_eq!(marker.base_offset, 3);
    assert_eq!(p.last_stable_offset(), 4);
    let read = committed(&p, 0);
    assert_eq!(read_offsets(&read.records), vec![0, 1, 3]);
    assert_eq!(
        read.aborted_transactions,
        vec![AbortedTxn {
            producer_id: PID,
            first_offset: 1,
            last_offset: 3,
            last_stable_offset: 4,
        }]
    );
    // A fetch past the aborted range is told nothing about it.
    p.append(&plain_batch()).unwrap();
    assert!(committed(&p, 4).aborted_transactions.is_empty());
    let described = p.describe_producers().unwrap();
    assert_eq!(
        (
            described[0].current_txn_start_offset,
            described[0].coordinator_epoch
        ),
        (-1, 5)
    );
}

#[test]
fn markers_are_checked_as_kafka_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = leader(dir.path());
    p.append(&txn_batch(PID, 3, 0, 1)).unwrap();
    // A stale producer epoch, then an older coordinator epoch, are refused; nothing lands.
    assert_eq!(
        p.append_txn_marker(PID, 2, 0, true).unwrap_err().error.code,
        47
    );
    p.append_txn_marker(PID, 3, 4, true).unwrap();
    assert_eq!(p.last_stable_offset(), 2);
    assert_eq!(
        p.append_txn_marker(PID, 3, 3, true).unwrap_err().error.code,
        52
    );
    // A stale epoch on a transactional produce: INVALID_PRODUCER_EPOCH.
    assert_eq!(
        p.append(&txn_batch(PID, 2, 0, 1)).unwrap_err().error.code,
        47
    );
    // A marker for a producer with no data here (the coordinator's markers go to every
    // partition of the transaction) is written and ends nothing.
    assert_eq!(p.append_txn_marker(99, 0, 0, false).unwrap().base_offset, 2);
    assert!(committed(&p, 0).aborted_transactions.is_empty());
    assert_eq!(p.offsets().1, 3);
    assert_eq!(p.last_stable_offset(), 3);
}

#[test]
fn open_transactions_and_the_txn_index_survive_restarts_crashes_and_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    let aborted = AbortedTxn {
        producer_id: PID,
        first_offset: 0,
        last_offset: 1,
        last_stable_offset: 2,
    };
    {
        let p = leader(dir.path());
        p.append(&txn_batch(PID, 0, 0, 1)).unwrap();
        p.append_txn_marker(PID, 0, 0, false).unwrap();
        // Another producer's transaction stays open.
        p.append(&txn_batch(8, 0, 0, 1)).unwrap();
        assert_eq!(p.last_stable_offset(), 2);
        p.close(dir.path()).unwrap();
    }
    let check = |p: &Partition| {
        assert_eq!(p.last_stable_offset(), 2, "the open transaction holds it");
        assert_eq!(committed(p, 0).aborted_transactions, vec![aborted]);
        assert_eq!(
            p.describe_producers().unwrap()[1].current_txn_start_offset,
            2
        );
    };
    // A clean restart (from the snapshot).
    let p = leader(dir.path());
    check(&p);
    drop(p);
    // A crash: no snapshot, everything replayed from the log.
    let p = leader(dir.path());
    check(&p);
    drop(p);
    // A hostile index file is not trusted: the replay rebuilds it.
    let index = dir.path().join("00000000000000000000.txnindex");
    assert_eq!(std::fs::read(&index).unwrap().len(), 34);
    std::fs::write(&index, [0xff; 34]).unwrap();
    let p = leader(dir.path());
    check(&p);
    assert_eq!(
        std::fs::read(&index).unwrap(),
        crate::log::txn_index::encode(&aborted)
    );
    // The marker of the open transaction arrives after the restart.
    p.append_txn_marker(8, 0, 0, true).unwrap();
    assert_eq!(p.last_stable_offset(), 4);
}

#[test]
fn a_follower_replays_markers_and_truncation_reopens_the_transaction() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let lead = leader(leader_dir.path());
    lead.append(&txn_batch(PID, 0, 0, 2)).unwrap();
    lead.append_txn_marker(PID, 0, 1, false).unwrap();
    let copy = follower(follower_dir.path());
    let all = lead.read(0, 1 << 20, true, Reader::Local).unwrap().records;
    assert!(copy.append_as_follower(&all, 0).unwrap());
    copy.update_follower_offsets(3, 0);
    assert_eq!(copy.last_stable_offset(), 3);
    assert_eq!(
        committed(&copy, 0).aborted_transactions,
        committed(&lead, 0).aborted_transactions
    );
    assert_eq!(committed(&copy, 0).aborted_transactions.len(), 1);
    // Losing the marker (the new leader never had it) reopens the transaction.
    copy.truncate_as_follower(2).unwrap();
    assert_eq!(copy.last_stable_offset(), 0);
    assert!(committed(&copy, 0).aborted_transactions.is_empty());
    assert!(
        !follower_dir
            .path()
            .join("00000000000000000000.txnindex")
            .exists()
            || std::fs::read(follower_dir.path().join("00000000000000000000.txnindex"))
                .unwrap()
                .is_empty()
    );
}

// ---- KIP-890 verification guards ----

#[test]
fn a_batch_starting_a_transaction_needs_the_current_guard() {
    let dir = tempfile::tempdir().unwrap();
    let p = leader(dir.path());
    let unverified = p.append_verified(&txn_batch(PID, 0, 0, 1), Verification::Guard(None));
    assert_eq!(
        unverified.unwrap_err().error.code,
        error_code::INVALID_TXN_STATE
    );
    let guard = p
        .start_txn_verification(PID, 0, false)
        .expect("not ongoing yet");
    // The transaction was aborted (its marker written) while the answer was on its way:
    // the verified batch must not start a new, hanging transaction.
    p.append_txn_marker(PID, 0, 0, false).unwrap();
    let late = p.append_verified(&txn_batch(PID, 0, 0, 1), Verification::Guard(Some(guard)));
    assert_eq!(late.unwrap_err().error.code, error_code::INVALID_TXN_STATE);
    assert_eq!(
        p.log_end_offset.load(Ordering::Acquire),
        1,
        "only the marker was appended"
    );

    let guard = p
        .start_txn_verification(PID, 0, false)
        .expect("not ongoing yet");
    p.append_verified(&txn_batch(PID, 0, 0, 1), Verification::Guard(Some(guard)))
        .unwrap();
    // The transaction is ongoing: later batches need no verification.
    assert_eq!(p.start_txn_verification(PID, 0, false), None);
    p.append_verified(&txn_batch(PID, 0, 1, 1), Verification::Guard(None))
        .unwrap();
    // TV2: the marker carries the bumped epoch, and the next transaction starts at it
    // with sequence 0, after its own verification.
    p.append_txn_marker(PID, 1, 0, true).unwrap();
    let guard = p
        .start_txn_verification(PID, 1, false)
        .expect("a new transaction");
    p.append_verified(&txn_batch(PID, 1, 0, 1), Verification::Guard(Some(guard)))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_behind_an_unanswered_verification_wait_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(leader(dir.path()));
    let guard = p
        .start_txn_verification(PID, 0, false)
        .expect("not ongoing yet");
    let (pending, answer) = VerificationAnswer::new(&p);
    let mut appends = AppendSubmission::new();
    let first = appends.submit_verified(
        &p,
        Bytes::from(txn_batch(PID, 0, 0, 1)),
        Verification::Guard(Some(guard)),
        Some(pending),
    );
    // Same producer, next sequence: it can only be appended after the first.
    let second = appends.submit_verified(
        &p,
        Bytes::from(txn_batch(PID, 0, 1, 1)),
        Verification::Guard(None),
        None,
    );
    drop(appends);
    // A later request's job queues behind the parked one.
    let third = p.submit_append(Bytes::from(plain_batch()));
    let (first, second, third) = (
        tokio::spawn(first),
        tokio::spawn(second),
        tokio::spawn(third),
    );
    // The drainer stops at the unanswered job (parks, holding no thread): nothing is
    // appended, and the jobs behind it wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !p.append_queue_parked() {
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never parked"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(p.log_end_offset.load(Ordering::Acquire), 0);
    assert!(!second.is_finished() && !third.is_finished());
    answer.answer(Ok(()));
    assert_eq!(first.await.unwrap().unwrap().base_offset, 0);
    assert_eq!(second.await.unwrap().unwrap().base_offset, 1);
    assert_eq!(third.await.unwrap().unwrap().base_offset, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_abandoned_verification_answers_its_job_and_frees_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(leader(dir.path()));
    let guard = p
        .start_txn_verification(PID, 0, false)
        .expect("not ongoing yet");
    let (pending, answer) = VerificationAnswer::new(&p);
    let refused = p.submit_verified_alone(txn_batch(PID, 0, 0, 1), guard, pending);
    let behind = p.submit_append(Bytes::from(plain_batch()));
    answer.answer(Err(PartitionError::new(
        error_code::INVALID_TXN_STATE,
        "Partition was not added to the transaction",
    )));
    assert_eq!(
        refused.await.unwrap_err().error.code,
        error_code::INVALID_TXN_STATE
    );
    assert_eq!(behind.await.unwrap().base_offset, 0);

    let (pending, answer) = VerificationAnswer::new(&p);
    let abandoned = p.submit_verified_alone(txn_batch(PID, 0, 0, 1), guard, pending);
    drop(answer);
    assert_eq!(
        abandoned.await.unwrap_err().error.code,
        error_code::NOT_ENOUGH_REPLICAS
    );
    assert_eq!(p.log_end_offset.load(Ordering::Acquire), 1);
}

impl Partition {
    fn submit_verified_alone(
        self: &Arc<Self>,
        records: Vec<u8>,
        guard: VerificationGuard,
        pending: Arc<PendingVerification>,
    ) -> impl std::future::Future<Output = Result<AppendResult, AppendError>> {
        AppendSubmission::new().submit_verified(
            self,
            Bytes::from(records),
            Verification::Guard(Some(guard)),
            Some(pending),
        )
    }
}
