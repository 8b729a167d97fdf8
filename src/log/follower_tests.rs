//! A follower's log: copies of a leader's log made by `append_as_follower` in fetch-sized
//! pieces, truncations, reopening; compared byte for byte with the leader's log.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tempfile::TempDir;

use super::batch::test_support::{batch, batch_with};
use super::batch::{patch_offset_and_epoch, validate, BatchError, BatchHeader};
use super::epochs::{EpochEntry, CHECKPOINT_FILE};
use super::segment::file_name;
use super::{Log, LogConfig, LogError};
use crate::partition::producer_state::{rebuild_producer_state, SequenceCheck};

/// Small segments (a few batches each), every batch indexed.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 250,
        index_interval_bytes: 1,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, config()).unwrap()
}

/// A leader's append: the batch gets the log end as base offset and `epoch`.
fn lead(log: &mut Log, epoch: i32, values: &[&[u8]], timestamp_ms: i64) -> Bytes {
    lead_bytes(log, epoch, batch(values, timestamp_ms).to_vec())
}

fn lead_bytes(log: &mut Log, epoch: i32, mut bytes: Vec<u8>) -> Bytes {
    patch_offset_and_epoch(&mut bytes, log.log_end_offset(), epoch);
    let header = validate(&bytes).unwrap();
    log.assign_leader_epoch(epoch).unwrap();
    log.append(&bytes, &header, timestamp_of(&header)).unwrap();
    Bytes::from(bytes)
}

fn timestamp_of(header: &BatchHeader) -> i64 {
    header.max_timestamp
}

/// A leader with 12 batches of 2 records over epochs 0, 2 and 3, several segments.
fn leader(dir: &Path) -> (Log, Vec<Bytes>) {
    let mut log = open(dir);
    let mut batches = Vec::new();
    for i in 0..12i64 {
        let epoch = match i {
            0..=4 => 0,
            5..=8 => 2,
            _ => 3,
        };
        let value = format!("value-{i}");
        batches.push(lead(
            &mut log,
            epoch,
            &[value.as_bytes(), b"second"],
            1_000 + 10 * i,
        ));
    }
    assert!(segments(dir).len() > 3, "the test needs several segments");
    (log, batches)
}

fn read_all(log: &Log, offset: i64) -> Bytes {
    log.read(offset, usize::MAX, true).unwrap()
}

fn concat(batches: &[Bytes]) -> Vec<u8> {
    batches.iter().flat_map(|b| b.iter().copied()).collect()
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// Copies the leader's log from the follower's log end, `fetch_bytes` at a time, cutting
/// every fetch at that many bytes (so most end inside a batch, as Kafka's can).
fn replicate(leader: &Log, follower: &mut Log, fetch_bytes: usize, now_ms: i64) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let fetched = read_all(leader, follower.log_end_offset());
        let cut = fetch_bytes.min(fetched.len());
        let appended = follower
            .append_as_follower(&fetched[..cut], now_ms)
            .unwrap();
        if appended.appended_bytes == 0 {
            // A batch larger than the fetch: Kafka returns it whole.
            follower.append_as_follower(&fetched, now_ms).unwrap();
        }
    }
}

/// The same segments, indexes included, byte for byte.
fn assert_same_files(leader_dir: &Path, follower_dir: &Path) {
    assert_eq!(segments(follower_dir), segments(leader_dir));
    for name in segments(leader_dir) {
        for extension in ["log", "index", "timeindex"] {
            let name = name.replace(".log", &format!(".{extension}"));
            assert_eq!(
                fs::read(follower_dir.join(&name)).unwrap(),
                fs::read(leader_dir.join(&name)).unwrap(),
                "{name}"
            );
        }
    }
}

fn pair(tmp: &TempDir) -> (PathBuf, PathBuf) {
    (tmp.path().join("leader-0"), tmp.path().join("follower-0"))
}

fn epochs(log: &Log) -> Vec<(i32, i64)> {
    log.epochs
        .entries()
        .iter()
        .map(|e: &EpochEntry| (e.epoch, e.start_offset))
        .collect()
}

#[test]
fn a_follower_copy_is_the_leaders_log_byte_for_byte_across_rolls_and_reopens() {
    let tmp = TempDir::new().unwrap();
    let (leader_dir, follower_dir) = pair(&tmp);
    let (leader, batches) = leader(&leader_dir);
    for fetch_bytes in [usize::MAX, 150, 61] {
        let _ = fs::remove_dir_all(&follower_dir);
        let mut follower = open(&follower_dir);
        replicate(&leader, &mut follower, fetch_bytes, 5_000);
        assert_eq!(follower.log_end_offset(), 24);
        assert_eq!(read_all(&follower, 0), concat(&batches));
        assert_eq!(epochs(&follower), vec![(0, 0), (2, 10), (3, 18)]);
        // The same rolls: the same segments and indexes, file for file.
        assert_same_files(&leader_dir, &follower_dir);
        drop(follower);
        let reopened = open(&follower_dir);
        assert_eq!(read_all(&reopened, 0), concat(&batches));
        assert_eq!(epochs(&reopened), vec![(0, 0), (2, 10), (3, 18)]);
        for offset in 0..24 {
            assert_eq!(
                read_all(&reopened, offset),
                read_all(&leader, offset),
                "offset {offset}"
            );
        }
    }
}

#[test]
fn the_result_names_what_was_appended_and_a_partial_last_batch_is_left_out() {
    let tmp = TempDir::new().unwrap();
    let (leader_dir, follower_dir) = pair(&tmp);
    let (leader, batches) = leader(&leader_dir);
    let mut follower = open(&follower_dir);
    let fetched = read_all(&leader, 0);
    let whole = batches[0].len() + batches[1].len();
    let appended = follower
        .append_as_follower(&fetched[..whole + 20], 0)
        .unwrap();
    assert_eq!(appended.appended_bytes, whole);
    assert_eq!(appended.log_end_offset, 4);
    assert_eq!(appended.last_epoch, Some(0));
    let bases: Vec<i64> = appended.headers.iter().map(|h| h.base_offset).collect();
    assert_eq!(bases, vec![0, 2]);
    // Nothing whole: nothing appended, no error.
    let empty = follower.append_as_follower(&batches[2][..30], 0).unwrap();
    assert_eq!(empty.appended_bytes, 0);
    assert_eq!(empty.last_epoch, None);
    assert_eq!(empty.log_end_offset, 4);
    assert_eq!(read_all(&follower, 0), concat(&batches[..2]));
}

#[test]
fn overlaps_and_out_of_order_offsets_are_refused_and_append_nothing() {
    let tmp = TempDir::new().unwrap();
    let (leader_dir, follower_dir) = pair(&tmp);
    let (_leader, batches) = leader(&leader_dir);
    let mut follower = open(&follower_dir);
    follower
        .append_as_follower(&concat(&batches[..3]), 0)
        .unwrap();
    let file = follower_dir.join(file_name(0, "log"));
    let size_before = fs::metadata(&file).unwrap().len();
    // Starts below the log end (6): Kafka's UnexpectedAppendOffset.
    match follower.append_as_follower(&concat(&batches[2..5]), 0) {
        Err(LogError::UnexpectedAppendOffset {
            first_offset: 4,
            log_end: 6,
        }) => {}
        other => panic!("{other:?}"),
    }
    // Offsets going back inside the set: out of order, and the good first batch is not
    // appended either.
    let set = concat(&[batches[3].clone(), batches[4].clone(), batches[4].clone()]);
    match follower.append_as_follower(&set, 0) {
        Err(LogError::OffsetsOutOfOrder {
            base_offset: 8,
            previous_last_offset: 9,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(follower.log_end_offset(), 6);
    assert_eq!(fs::metadata(&file).unwrap().len(), size_before);
    assert_eq!(read_all(&follower, 0), concat(&batches[..3]));
}

#[test]
fn corrupt_batches_from_the_leader_are_refused_without_a_panic() {
    let tmp = TempDir::new().unwrap();
    let (leader_dir, follower_dir) = pair(&tmp);
    let (_leader, batches) = leader(&leader_dir);
    let mut follower = open(&follower_dir);
    // A flipped payload bit in the second batch: nothing of the set is appended.
    let mut set = concat(&batches[..3]);
    let second = batches[0].len();
    set[second + 70] ^= 1;
    match follower.append_as_follower(&set, 0) {
        Err(LogError::CorruptRecords {
            position,
            error: BatchError::CrcMismatch { .. },
        }) => assert_eq!(position, second),
        other => panic!("{other:?}"),
    }
    // A length shorter than a header is garbage, not a partial batch.
    let mut set = concat(&batches[..1]);
    let mut garbage = batches[1].to_vec();
    garbage[8..12].copy_from_slice(&3i32.to_be_bytes());
    set.extend_from_slice(&garbage);
    assert!(matches!(
        follower.append_as_follower(&set, 0),
        Err(LogError::CorruptRecords { .. })
    ));
    assert_eq!(follower.log_end_offset(), 0);
    // A valid batch whose last offset would overflow an offset.
    let mut overflowing = batch(&[b"a", b"b"], 1).to_vec();
    patch_offset_and_epoch(&mut overflowing, i64::MAX - 1, 0);
    assert!(matches!(
        follower.append_as_follower(&overflowing, 0),
        Err(LogError::CorruptRecords {
            position: 0,
            error: BatchError::Invalid(_)
        })
    ));
    assert_eq!(follower.log_end_offset(), 0);
    // Random bytes, some with a plausible header: an error or nothing, never a panic.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..2_000 {
        let len = (next(&mut state) % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
        if round % 2 == 0 && len >= 61 {
            bytes[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
            bytes[16] = 2;
        }
        match follower.append_as_follower(&bytes, 0) {
            Ok(appended) => assert_eq!(appended.appended_bytes, 0),
            Err(error) => assert!(
                matches!(
                    error,
                    LogError::CorruptRecords { .. } | LogError::UnexpectedAppendOffset { .. }
                ),
                "{error:?}"
            ),
        }
    }
    assert_eq!(follower.log_end_offset(), 0);
}

fn next(state: &mut u64) -> u64 {
    // xorshift64: a fixed, reproducible stream.
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_gap_in_the_leaders_offsets_is_kept_and_survives_a_reopen() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("follower-0");
    let mut follower = open(&dir);
    // As a compacted leader serves: offsets 0-1, then 7-8, then 100.
    let mut set = Vec::new();
    for (base, values) in [(0, 2), (7, 2), (100, 1)] {
        let values: Vec<&[u8]> = (0..values).map(|_| &b"v"[..]).collect();
        let mut bytes = batch(&values, 1_000 + base).to_vec();
        patch_offset_and_epoch(&mut bytes, base, 4);
        set.extend_from_slice(&bytes);
    }
    follower.append_as_follower(&set, 0).unwrap();
    assert_eq!(follower.log_end_offset(), 101);
    assert_eq!(read_all(&follower, 3), set[batch_len(&set, 0)..]);
    drop(follower);
    let mut reopened = open(&dir);
    assert_eq!(reopened.log_end_offset(), 101);
    assert_eq!(read_all(&reopened, 0), set);
    assert_eq!(epochs(&reopened), vec![(4, 0)]);
    // A gap far past an empty active segment's base starts a new segment there.
    reopened.truncate_to(0).unwrap();
    let mut far = batch(&[b"far"], 1).to_vec();
    let far_offset = 5_000_000_000;
    patch_offset_and_epoch(&mut far, far_offset, 4);
    reopened.append_as_follower(&far, 0).unwrap();
    assert!(segments(&dir).contains(&file_name(far_offset, "log")));
    drop(reopened);
    assert_eq!(open(&dir).log_end_offset(), far_offset + 1);
}

fn batch_len(set: &[u8], position: usize) -> usize {
    BatchHeader::parse(&set[position..]).unwrap().total_size()
}

/// What the follower must hold after `truncate_to(offset)`: the leader's batches that end
/// before the batch holding `offset`.
fn kept(batches: &[Bytes], offset: i64) -> Vec<Bytes> {
    batches
        .iter()
        .take_while(|b| BatchHeader::parse(b).unwrap().last_offset() < offset)
        .cloned()
        .collect()
}

/// Truncates a full copy of the leader to `offset`, checks it, appends the rest again and
/// reopens it; returns the follower's dir.
fn truncate_and_check(offset: i64, expected_end: i64, expected_epochs: &[(i32, i64)]) {
    let tmp = TempDir::new().unwrap();
    let (leader_dir, follower_dir) = pair(&tmp);
    let (leader, batches) = leader(&leader_dir);
    let mut follower = open(&follower_dir);
    replicate(&leader, &mut follower, usize::MAX, 5_000);
    follower.truncate_to(offset).unwrap();
    let kept = kept(&batches, offset);
    assert_eq!(
        follower.log_end_offset(),
        expected_end,
        "truncate_to({offset})"
    );
    assert_eq!(read_all(&follower, 0), concat(&kept));
    assert_eq!(epochs(&follower), expected_epochs);
    // Every offset left reads as on the leader; the cut is the log end.
    let kept_bytes = concat(&kept);
    for o in 0..expected_end {
        assert_eq!(
            read_all(&follower, o),
            kept_bytes[offset_position(&kept, o)..],
            "offset {o}"
        );
    }
    assert!(read_all(&follower, expected_end).is_empty());
    assert!(matches!(
        follower.read(expected_end + 1, 100, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Timestamp lookups see only what is left.
    let last_kept_timestamp = kept
        .last()
        .map(|b| BatchHeader::parse(b).unwrap().max_timestamp);
    assert_eq!(
        follower
            .batch_with_max_timestamp()
            .unwrap()
            .map(|b| BatchHeader::parse(&b).unwrap().max_timestamp),
        last_kept_timestamp
    );
    for b in &kept {
        let ts = BatchHeader::parse(b).unwrap().max_timestamp;
        assert_eq!(
            follower
                .first_batch_at_or_after_timestamp(ts)
                .unwrap()
                .as_ref(),
            Some(b)
        );
    }
    assert_eq!(
        follower
            .first_batch_at_or_after_timestamp(1_000_000)
            .unwrap(),
        None
    );
    // No later segment is left on disk.
    for name in segments(&follower_dir) {
        let base: i64 = name.trim_end_matches(".log").parse().unwrap();
        assert!(
            base <= expected_end,
            "{name} survived truncate_to({offset})"
        );
    }
    // Reopen (recovery), then fetch the rest again: the leader's log again.
    drop(follower);
    let mut follower = open(&follower_dir);
    assert_eq!(follower.log_end_offset(), expected_end);
    assert_eq!(read_all(&follower, 0), concat(&kept));
    assert_eq!(epochs(&follower), expected_epochs);
    replicate(&leader, &mut follower, 100, 6_000);
    assert_eq!(read_all(&follower, 0), concat(&batches));
    assert_eq!(epochs(&follower), vec![(0, 0), (2, 10), (3, 18)]);
    // The shortened segment's rebuilt indexes continue as the leader's: file for file.
    assert_same_files(&leader_dir, &follower_dir);
    drop(follower);
    let follower = open(&follower_dir);
    assert_eq!(read_all(&follower, 0), concat(&batches));
    assert_eq!(
        fs::read_to_string(follower_dir.join(CHECKPOINT_FILE)).unwrap(),
        "0\n3\n0 0\n2 10\n3 18\n"
    );
}

/// Bytes of `kept` before the batch holding offset `o`.
fn offset_position(kept: &[Bytes], o: i64) -> usize {
    kept.iter()
        .take_while(|b| BatchHeader::parse(b).unwrap().last_offset() < o)
        .map(Bytes::len)
        .sum()
}

#[test]
fn truncating_inside_a_batch_of_the_active_segment_cuts_at_its_base() {
    // The last batch is 22-23: offset 23 is inside it.
    truncate_and_check(23, 22, &[(0, 0), (2, 10), (3, 18)]);
}

#[test]
fn truncating_at_a_batch_boundary_keeps_the_batch_before_it() {
    truncate_and_check(20, 20, &[(0, 0), (2, 10), (3, 18)]);
}

#[test]
fn truncating_into_an_earlier_sealed_segment_deletes_the_later_ones() {
    // Inside epoch 2's first batch (10-11): epochs 2 and 3 go.
    truncate_and_check(11, 10, &[(0, 0)]);
    truncate_and_check(5, 4, &[(0, 0)]);
}

#[test]
fn truncating_at_a_segment_base_empties_that_segment() {
    let tmp = TempDir::new().unwrap();
    let (leader_dir, _) = pair(&tmp);
    drop(leader(&leader_dir));
    let second_base: i64 = segments(&leader_dir)[1]
        .trim_end_matches(".log")
        .parse()
        .unwrap();
    let epochs_left: Vec<(i32, i64)> = [(0, 0), (2, 10), (3, 18)]
        .into_iter()
        .filter(|&(_, start)| start < second_base)
        .collect();
    truncate_and_check(second_base, second_base, &epochs_left);
}

#[test]
fn truncating_to_zero_or_the_log_end_and_beyond() {
    truncate_and_check(0, 0, &[]);
    let tmp = TempDir::new().unwrap();
    let (leader_dir, _) = pair(&tmp);
    let (mut leader, batches) = leader(&leader_dir);
    leader.truncate_to(24).unwrap();
    leader.truncate_to(1_000).unwrap();
    assert_eq!(read_all(&leader, 0), concat(&batches));
    assert!(matches!(
        leader.truncate_to(-1),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn truncating_below_the_log_start_empties_the_log_and_starts_it_there() {
    let tmp = TempDir::new().unwrap();
    let (leader_dir, follower_dir) = pair(&tmp);
    let (leader, batches) = leader(&leader_dir);
    let mut follower = open(&follower_dir);
    replicate(&leader, &mut follower, usize::MAX, 5_000);
    follower.advance_log_start_offset(12).unwrap();
    follower.delete_segments_below_start().unwrap();
    follower.truncate_to(9).unwrap();
    assert_eq!(follower.log_start_offset(), 9);
    assert_eq!(follower.log_end_offset(), 9);
    assert_eq!(segments(&follower_dir), vec![file_name(9, "log")]);
    assert_eq!(epochs(&follower), vec![]);
    assert!(read_all(&follower, 9).is_empty());
    // Refetching from 9 gets the batch 8-9, which starts below the log end: Kafka's
    // fetcher then starts the log at that batch's base.
    let fetched = read_all(&leader, 9);
    assert!(matches!(
        follower.append_as_follower(&fetched, 0),
        Err(LogError::UnexpectedAppendOffset {
            first_offset: 8,
            log_end: 9
        })
    ));
    follower.truncate_fully_and_start_at(8).unwrap();
    assert_eq!(segments(&follower_dir), vec![file_name(8, "log")]);
    follower.append_as_follower(&fetched, 0).unwrap();
    assert_eq!(read_all(&follower, 8), concat(&batches[4..]));
    drop(follower);
    let follower = open(&follower_dir);
    assert_eq!(follower.log_start_offset(), 8);
    assert_eq!(read_all(&follower, 8), concat(&batches[4..]));
    assert_eq!(epochs(&follower), vec![(0, 8), (2, 10), (3, 18)]);
    // Past the log end too (the leader's log start is beyond this follower's log).
    let mut follower = follower;
    follower.truncate_fully_and_start_at(50).unwrap();
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (50, 50)
    );
    drop(follower);
    let follower = open(&follower_dir);
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (50, 50)
    );
    assert_eq!(segments(&follower_dir), vec![file_name(50, "log")]);
}

#[test]
fn producer_state_rebuilt_after_a_truncation_forgets_the_truncated_sequences() {
    let tmp = TempDir::new().unwrap();
    let (leader_dir, follower_dir) = pair(&tmp);
    let mut leader = open(&leader_dir);
    let mut sent = Vec::new();
    for sequence in 0..6 {
        let bytes = batch_with(&[b"a", b"b"], 1_000 + sequence as i64, 42, 0, 2 * sequence);
        sent.push(lead_bytes(&mut leader, 1, bytes.to_vec()));
    }
    let mut follower = open(&follower_dir);
    let appended = follower
        .append_as_follower(&read_all(&leader, 0), 0)
        .unwrap();
    // The follower's table from the headers it appended, as the leader's.
    let mut table = rebuild_producer_state(&mut follower, None).unwrap();
    let mut from_headers = crate::partition::producer_state::ProducerStateTable::default();
    for header in &appended.headers {
        from_headers.record(header, header.max_timestamp);
    }
    assert_eq!(table, from_headers);
    let fifth = validate(&sent[4]).unwrap();
    assert!(matches!(
        table.check(&fifth),
        Ok(SequenceCheck::Duplicate {
            first_offset: 8,
            ..
        })
    ));
    follower.truncate_to(8).unwrap();
    table = rebuild_producer_state(&mut follower, None).unwrap();
    // Sequences 8.. are gone: the fifth batch is new again, not a duplicate.
    assert_eq!(table.check(&fifth), Ok(SequenceCheck::Append));
    assert_eq!(
        table.get(42).unwrap().batches.back().unwrap().last_offset,
        7
    );
    // A snapshot past the new log end does not describe the log: ignored.
    let stale = crate::partition::producer_state::ProducerSnapshot {
        next_offset: 12,
        table: from_headers,
    };
    assert_eq!(
        rebuild_producer_state(&mut follower, Some(stale)).unwrap(),
        table
    );
}

/// Random leader appends (with leader changes that rewrite the leader's tail), copies in
/// random fetch sizes, truncations and reopens of the follower, against a model: the
/// follower always holds a prefix of some leader history, byte for byte.
#[test]
fn random_replication_histories_match_a_model() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..12 {
        let tmp = TempDir::new().unwrap();
        let (leader_dir, follower_dir) = pair(&tmp);
        let mut leader = open(&leader_dir);
        let mut follower = open(&follower_dir);
        // The model: the leader's batches in order.
        let mut model: Vec<Bytes> = Vec::new();
        let mut epoch = 0;
        for step in 0..60 {
            match next(&mut state) % 10 {
                0..=3 => {
                    let count = 1 + (next(&mut state) % 3) as usize;
                    let value = format!("r{round}s{step}");
                    let values: Vec<&[u8]> = (0..count).map(|_| value.as_bytes()).collect();
                    model.push(lead(&mut leader, epoch, &values, 1_000 + step));
                }
                4..=5 => {
                    let fetch = 1 + (next(&mut state) % 400) as usize;
                    let fetched = read_all(&leader, follower.log_end_offset());
                    let cut = fetch.min(fetched.len());
                    follower.append_as_follower(&fetched[..cut], 0).unwrap();
                }
                6 => {
                    // A new leader epoch that lost the old leader's tail: the leader
                    // is truncated, the follower truncates to where they agree.
                    let end = leader.log_end_offset();
                    let cut = (next(&mut state) % (end as u64 + 1)) as i64;
                    leader.truncate_to(cut).unwrap();
                    model.retain(|b| {
                        BatchHeader::parse(b).unwrap().last_offset() < leader.log_end_offset()
                    });
                    epoch += 1;
                    let agreed = follower.log_end_offset().min(leader.log_end_offset());
                    follower.truncate_to(agreed).unwrap();
                }
                7 => {
                    let end = follower.log_end_offset();
                    let cut = (next(&mut state) % (end as u64 + 1)) as i64;
                    follower.truncate_to(cut).unwrap();
                }
                8 => {
                    drop(follower);
                    follower = open(&follower_dir);
                }
                _ => {
                    drop(leader);
                    leader = open(&leader_dir);
                }
            }
            // The follower is a prefix of the leader: whole batches of the model.
            let held = read_all(&follower, 0);
            let prefix = kept(&model, follower.log_end_offset());
            assert_eq!(held, concat(&prefix), "round {round} step {step}");
            assert_eq!(
                read_all(&leader, 0),
                concat(&model),
                "round {round} step {step}"
            );
            // The follower's epochs are the leader's, up to its log end.
            let follower_epochs = epochs(&follower);
            let leader_epochs: Vec<(i32, i64)> = epochs(&leader)
                .into_iter()
                .filter(|&(_, start)| start < follower.log_end_offset())
                .collect();
            assert_eq!(follower_epochs, leader_epochs, "round {round} step {step}");
        }
    }
}

/// Injected faults during a truncation: the error is returned and the log on disk still
/// opens, as a prefix of what it was.
#[cfg(feature = "failpoints")]
mod faults {
    use super::*;
    use crate::log::dir::test_support::ArmedFailpoints;

    #[test]
    fn a_failed_truncation_leaves_a_log_that_opens() {
        let armed = ArmedFailpoints::new();
        for (failpoint, offset) in [
            ("log::segment::truncate", 11),
            ("log::segment::delete", 11),
            ("log::segment::fsync", 21),
            ("log::index::write", 5),
            ("log::segment::create", 3),
        ] {
            let tmp = TempDir::new().unwrap();
            let (leader_dir, follower_dir) = pair(&tmp);
            let (leader, batches) = leader(&leader_dir);
            let mut follower = open(&follower_dir);
            replicate(&leader, &mut follower, usize::MAX, 5_000);
            if failpoint == "log::segment::create" {
                follower.advance_log_start_offset(4).unwrap();
            }
            armed.set(failpoint, "return(EIO)");
            let error = follower.truncate_to(offset).unwrap_err();
            assert!(matches!(error, LogError::Io(_)), "{failpoint}: {error:?}");
            armed.clear(failpoint);
            drop(follower);
            let mut reopened = open(&follower_dir);
            let end = reopened.log_end_offset();
            assert_eq!(
                read_all(&reopened, 0),
                concat(&kept(&batches, end)),
                "{failpoint}: a prefix of the log"
            );
            // And the truncation can be done again, then the log refetched.
            reopened.truncate_to(offset).unwrap();
            replicate(&leader, &mut reopened, usize::MAX, 6_000);
            assert_eq!(read_all(&reopened, 0), concat(&batches), "{failpoint}");
        }
    }
}
