//! `Partition::append` answers the validator's verdicts with Kafka's codes and record
//! errors, and stores a corrected maxTimestamp.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;
use crate::log::batch::test_support::batch;

fn partition(dir: &Path, rules: RecordRules) -> Partition {
    let topic = TopicImage {
        name: "t".to_string(),
        topic_id: Uuid::new_v4(),
        partitions: Vec::new(),
        configs: BTreeMap::new(),
    };
    let health = Arc::new(LogDirHealth::new(dir));
    Partition::open(
        dir,
        &topic,
        0,
        super::Assignment::sole_leader(1),
        LogConfig::default(),
        rules,
        86_400_000,
        health,
        super::Checkpointed::default(),
    )
    .expect("open partition")
}

#[test]
fn timestamps_out_of_bounds_answer_invalid_timestamp_with_record_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path(), RecordRules::default());
    let future = now_ms() + 2 * 3_600_000;
    let error = p.append(&batch(&[b"a", b"b"], future)).unwrap_err();
    assert_eq!(error.error.code, error_code::INVALID_TIMESTAMP);
    let indexes: Vec<i32> = error.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![0, 1]);
    assert_eq!(p.offsets(), (0, 0), "nothing appended");
}

#[test]
fn oversized_and_corrupt_batches_keep_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(&[b"a"], now_ms());
    let p = partition(
        dir.path(),
        RecordRules {
            max_message_bytes: b.len() - 1,
            ..RecordRules::default()
        },
    );
    let error = p.append(&b).unwrap_err();
    assert_eq!(error.error.code, error_code::MESSAGE_TOO_LARGE);
    assert!(error.record_errors.is_empty());

    let p = partition(&dir.path().join("other"), RecordRules::default());
    let mut flipped = b.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        p.append(&flipped).unwrap_err().error.code,
        error_code::CORRUPT_MESSAGE
    );
}

#[test]
fn a_wrong_max_timestamp_is_stored_corrected() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path(), RecordRules::default());
    let ts = now_ms();
    let mut b = batch(&[b"a", b"b", b"c"], ts).to_vec();
    b[35..43].copy_from_slice(&(ts + 50_000).to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(p.append(&b).unwrap().base_offset, 0);
    let stored = p
        .read(0, 1 << 20, true, super::Reader::Consumer)
        .unwrap()
        .records;
    let header = batch::validate(&stored).expect("stored batch keeps a valid CRC");
    assert_eq!(header.max_timestamp, ts + 2);
}
