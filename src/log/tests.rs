use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tempfile::TempDir;

use super::batch::test_support::batch;
use super::batch::{patch_offset_and_epoch, validate};
use super::segment::file_name;
use super::{Log, LogConfig, LogError};

/// Every batch indexed, so lookups exercise the index; tests override as needed.
fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1,
        ..LogConfig::default()
    }
}

fn log_dir(tmp: &TempDir) -> PathBuf {
    tmp.path().join("topic-0")
}

/// Builds a batch at the log end, appends it, and returns its bytes.
fn append(log: &mut Log, values: &[&[u8]], timestamp_ms: i64, now_ms: i64) -> Bytes {
    let mut bytes = batch(values, timestamp_ms).to_vec();
    patch_offset_and_epoch(&mut bytes, log.log_end_offset(), 0);
    let header = validate(&bytes).unwrap();
    log.append(&bytes, &header, now_ms).unwrap();
    Bytes::from(bytes)
}

fn concat(batches: &[&Bytes]) -> Vec<u8> {
    batches.iter().flat_map(|b| b.iter().copied()).collect()
}

fn segment_files(dir: &Path, extension: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(&format!(".{extension}")))
        .collect();
    names.sort();
    names
}

fn read_all(log: &Log, offset: i64) -> Bytes {
    log.read(offset, usize::MAX, true).unwrap()
}

#[test]
fn a_new_log_starts_at_zero_with_one_empty_segment() {
    let tmp = TempDir::new().unwrap();
    let log = Log::open(&log_dir(&tmp), config()).unwrap();
    assert_eq!(log.dir(), log_dir(&tmp));
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 0);
    assert!(read_all(&log, 0).is_empty());
    assert_eq!(segment_files(log.dir(), "log"), vec![file_name(0, "log")]);
    assert_eq!(log.batch_with_max_timestamp().unwrap(), None);
    assert_eq!(log.first_batch_at_or_after_timestamp(0).unwrap(), None);
}

#[test]
fn appended_batches_read_back_byte_for_byte() {
    let tmp = TempDir::new().unwrap();
    let mut log = Log::open(&log_dir(&tmp), config()).unwrap();
    let b0 = append(&mut log, &[b"v1", b"v2"], 100, 0);
    let b1 = append(&mut log, &[b"v3"], 200, 0);
    let b2 = append(&mut log, &[b"v4", b"v5", b"v6"], 300, 0);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(read_all(&log, 0), concat(&[&b0, &b1, &b2]));
    assert_eq!(read_all(&log, 2), concat(&[&b1, &b2]));
    assert_eq!(read_all(&log, 3), b2);
    assert!(read_all(&log, 6).is_empty());
    // The .log file holds exactly the wire bytes.
    let on_disk = fs::read(log.dir().join(file_name(0, "log"))).unwrap();
    assert_eq!(on_disk, concat(&[&b0, &b1, &b2]));
}

#[test]
fn an_offset_inside_a_batch_returns_the_whole_batch() {
    for index_interval_bytes in [1, 4096] {
        let tmp = TempDir::new().unwrap();
        let cfg = LogConfig {
            index_interval_bytes,
            ..LogConfig::default()
        };
        let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
        let b0 = append(&mut log, &[b"a", b"b", b"c"], 10, 0);
        let b1 = append(&mut log, &[b"d", b"e", b"f"], 20, 0);
        assert_eq!(read_all(&log, 1), concat(&[&b0, &b1]));
        assert_eq!(read_all(&log, 2), concat(&[&b0, &b1]));
        assert_eq!(read_all(&log, 4), b1);
        assert_eq!(read_all(&log, 5), b1);
    }
}

#[test]
fn max_bytes_returns_whole_batches_and_min_one_batch_overrides_it() {
    let tmp = TempDir::new().unwrap();
    let mut log = Log::open(&log_dir(&tmp), config()).unwrap();
    let b0 = append(&mut log, &[b"first"], 1, 0);
    let b1 = append(&mut log, &[b"second"], 2, 0);
    let b2 = append(&mut log, &[b"third"], 3, 0);
    let two = b0.len() + b1.len();
    assert_eq!(log.read(0, two, false).unwrap(), concat(&[&b0, &b1]));
    assert_eq!(
        log.read(0, two + b2.len() - 1, false).unwrap(),
        concat(&[&b0, &b1])
    );
    assert_eq!(log.read(0, b0.len() + 1, true).unwrap(), b0);
    assert_eq!(log.read(0, 10, true).unwrap(), b0);
    assert!(log.read(0, 10, false).unwrap().is_empty());
    assert!(log.read(1, 0, false).unwrap().is_empty());
    assert_eq!(log.read(1, 0, true).unwrap(), b1);
}

#[test]
fn offsets_outside_the_log_are_out_of_range() {
    let tmp = TempDir::new().unwrap();
    let mut log = Log::open(&log_dir(&tmp), config()).unwrap();
    append(&mut log, &[b"a", b"b"], 1, 0);
    for offset in [-1, 3, 100] {
        match log.read(offset, 100, true) {
            Err(LogError::OffsetOutOfRange {
                offset: o,
                log_start: 0,
                log_end: 2,
            }) => assert_eq!(o, offset),
            other => panic!("offset {offset}: {other:?}"),
        }
    }
}

#[test]
fn rolls_by_segment_bytes_and_reads_across_segments() {
    let tmp = TempDir::new().unwrap();
    let one = batch(&[b"0123456789"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
    let batches: Vec<Bytes> = (0..5)
        .map(|i| append(&mut log, &[b"0123456789"], i, 0))
        .collect();
    assert_eq!(
        segment_files(log.dir(), "log"),
        vec![
            file_name(0, "log"),
            file_name(2, "log"),
            file_name(4, "log")
        ]
    );
    assert_eq!(segment_files(log.dir(), "index").len(), 3);
    assert_eq!(segment_files(log.dir(), "timeindex").len(), 3);
    let all: Vec<&Bytes> = batches.iter().collect();
    assert_eq!(read_all(&log, 0), concat(&all));
    assert_eq!(read_all(&log, 1), concat(&all[1..]));
    assert_eq!(read_all(&log, 3), concat(&all[3..]));
    // max_bytes stops across a segment boundary on a whole batch.
    assert_eq!(
        log.read(1, 3 * one as usize, false).unwrap(),
        concat(&all[1..4])
    );
    let headers = log.batch_headers_from(1).unwrap();
    assert_eq!(
        headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(log.batch_headers_from(5).unwrap().is_empty());
}

#[test]
fn a_batch_larger_than_a_segment_goes_into_an_empty_segment() {
    let tmp = TempDir::new().unwrap();
    let cfg = LogConfig {
        segment_bytes: 10,
        ..config()
    };
    let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
    let b0 = append(&mut log, &[b"big"], 1, 0);
    let b1 = append(&mut log, &[b"bigger"], 2, 0);
    assert_eq!(
        segment_files(log.dir(), "log"),
        vec![file_name(0, "log"), file_name(1, "log")]
    );
    assert_eq!(read_all(&log, 0), concat(&[&b0, &b1]));
}

#[test]
fn rolls_by_segment_age_from_the_first_append() {
    let tmp = TempDir::new().unwrap();
    let cfg = LogConfig {
        segment_ms: 100,
        ..config()
    };
    let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
    append(&mut log, &[b"a"], 1, 1_000);
    append(&mut log, &[b"b"], 1, 1_099);
    assert_eq!(segment_files(log.dir(), "log").len(), 1);
    append(&mut log, &[b"c"], 1, 1_100);
    assert_eq!(segment_files(log.dir(), "log").len(), 2);
    append(&mut log, &[b"d"], 1, 1_150);
    assert_eq!(segment_files(log.dir(), "log").len(), 2);
    append(&mut log, &[b"e"], 1, 1_200);
    assert_eq!(
        segment_files(log.dir(), "log"),
        vec![
            file_name(0, "log"),
            file_name(2, "log"),
            file_name(4, "log")
        ]
    );
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn reopening_continues_offsets_and_keeps_the_data() {
    let tmp = TempDir::new().unwrap();
    let one = batch(&[b"x", b"y"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    let mut written = Vec::new();
    {
        let mut log = Log::open(&log_dir(&tmp), cfg.clone()).unwrap();
        for i in 0..5 {
            written.push(append(&mut log, &[b"x", b"y"], 100 + i, 0));
        }
        assert_eq!(log.log_end_offset(), 10);
    }
    let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 10);
    written.push(append(&mut log, &[b"x", b"y"], 200, 0));
    assert_eq!(log.log_end_offset(), 12);
    let all: Vec<&Bytes> = written.iter().collect();
    assert_eq!(read_all(&log, 0), concat(&all));
    assert_eq!(read_all(&log, 5), concat(&all[2..]));
}

/// Writes a log of three batches, closes it, and returns the batches.
fn three_batch_log(dir: &Path) -> Vec<Bytes> {
    let mut log = Log::open(dir, config()).unwrap();
    vec![
        append(&mut log, &[b"a", b"b"], 10, 0),
        append(&mut log, &[b"c"], 20, 0),
        append(&mut log, &[b"d", b"e"], 30, 0),
    ]
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn recovery_truncates_a_torn_tail_and_appends_after_it() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let batches = three_batch_log(&dir);
    let log_path = dir.join(file_name(0, "log"));
    let good_bytes = fs::metadata(&log_path).unwrap().len();
    let mut torn = batch(&[b"torn", b"tail"], 40).to_vec();
    patch_offset_and_epoch(&mut torn, 5, 0);
    append_raw(&log_path, &torn[..torn.len() / 2]);

    let mut log = Log::open(&dir, config()).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(fs::metadata(&log_path).unwrap().len(), good_bytes);
    let next = append(&mut log, &[b"f"], 50, 0);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(
        read_all(&log, 0),
        concat(&[&batches[0], &batches[1], &batches[2], &next])
    );
    assert_eq!(read_all(&log, 5), next);
}

#[test]
fn recovery_truncates_a_torn_header() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    three_batch_log(&dir);
    append_raw(&dir.join(file_name(0, "log")), &[0u8; 7]);
    let log = Log::open(&dir, config()).unwrap();
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn recovery_drops_a_crc_corrupted_last_batch() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let batches = three_batch_log(&dir);
    let log_path = dir.join(file_name(0, "log"));
    let mut bytes = fs::read(&log_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&log_path, &bytes).unwrap();

    let mut log = Log::open(&dir, config()).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(
        fs::metadata(&log_path).unwrap().len(),
        (batches[0].len() + batches[1].len()) as u64
    );
    let next = append(&mut log, &[b"again"], 40, 0);
    assert_eq!(read_all(&log, 3), next);
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn recovery_survives_a_huge_length_field_and_a_wrong_base_offset() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    three_batch_log(&dir);
    let log_path = dir.join(file_name(0, "log"));
    // A batch claiming 2 GiB: must be treated as truncated, not allocated.
    let mut huge = batch(&[b"x"], 1).to_vec();
    patch_offset_and_epoch(&mut huge, 5, 0);
    huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    append_raw(&log_path, &huge);
    assert_eq!(Log::open(&dir, config()).unwrap().log_end_offset(), 5);

    // A valid batch whose base offset goes back overlaps the log: cut.
    let mut overlapping = batch(&[b"x"], 1).to_vec();
    patch_offset_and_epoch(&mut overlapping, 4, 0);
    append_raw(&log_path, &overlapping);
    let mut log = Log::open(&dir, config()).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    append(&mut log, &[b"y"], 2, 0);
    assert_eq!(log.log_end_offset(), 6);
    drop(log);
    // One that skips ahead is a gap, as a follower's copy of a compacted log has: kept.
    let mut skipped = batch(&[b"x"], 1).to_vec();
    patch_offset_and_epoch(&mut skipped, 9, 0);
    append_raw(&log_path, &skipped);
    let log = Log::open(&dir, config()).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(read_all(&log, 6), skipped);
}

#[test]
fn missing_and_garbage_index_files_are_rebuilt() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let one = batch(&[b"x", b"y"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    let mut written = Vec::new();
    {
        let mut log = Log::open(&dir, cfg.clone()).unwrap();
        for ts in [500, 100, 900, 300, 700, 200, 800] {
            written.push(append(&mut log, &[b"x", b"y"], ts, 0));
        }
    }
    // Segments at 0, 4, 8, 12. Damage every kind of index file.
    fs::remove_file(dir.join(file_name(0, "index"))).unwrap();
    fs::remove_file(dir.join(file_name(0, "timeindex"))).unwrap();
    fs::write(dir.join(file_name(4, "index")), [0xffu8; 7]).unwrap();
    // Well-sized but decreasing entries.
    let mut decreasing = Vec::new();
    for (ts, rel) in [(9_000i64, 3u32), (1, 0)] {
        decreasing.extend_from_slice(&ts.to_be_bytes());
        decreasing.extend_from_slice(&rel.to_be_bytes());
    }
    fs::write(dir.join(file_name(8, "timeindex")), &decreasing).unwrap();
    fs::write(dir.join(file_name(12, "index")), [0xabu8; 64]).unwrap();

    let log = Log::open(&dir, cfg).unwrap();
    assert_eq!(log.log_end_offset(), 14);
    let all: Vec<&Bytes> = written.iter().collect();
    assert_eq!(read_all(&log, 0), concat(&all));
    for (i, b) in written.iter().enumerate() {
        let offset = 2 * i as i64 + 1;
        assert_eq!(log.read(offset, 1, true).unwrap(), *b);
    }
    assert_eq!(log.batch_with_max_timestamp().unwrap().unwrap(), written[2]);
    assert_eq!(
        log.first_batch_at_or_after_timestamp(750).unwrap().unwrap(),
        written[2]
    );
    assert_eq!(
        log.first_batch_at_or_after_timestamp(802).unwrap(),
        Some(written[2].clone())
    );
    assert_eq!(log.first_batch_at_or_after_timestamp(902).unwrap(), None);
    for base in [0, 4, 8, 12] {
        let index_bytes = fs::metadata(dir.join(file_name(base, "index")))
            .unwrap()
            .len();
        assert_eq!(index_bytes % 8, 0);
        let time_bytes = fs::metadata(dir.join(file_name(base, "timeindex")))
            .unwrap()
            .len();
        assert_eq!(time_bytes % 12, 0);
    }
}

#[test]
fn a_missing_first_segment_moves_the_log_start() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let one = batch(&[b"x"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one,
        ..config()
    };
    let written: Vec<Bytes> = {
        let mut log = Log::open(&dir, cfg.clone()).unwrap();
        (0..3).map(|i| append(&mut log, &[b"x"], i, 0)).collect()
    };
    for extension in ["log", "index", "timeindex"] {
        fs::remove_file(dir.join(file_name(0, extension))).unwrap();
    }
    let log = Log::open(&dir, cfg).unwrap();
    assert_eq!(log.log_start_offset(), 1);
    assert_eq!(log.log_end_offset(), 3);
    assert!(matches!(
        log.read(0, 100, true),
        Err(LogError::OffsetOutOfRange { log_start: 1, .. })
    ));
    assert_eq!(read_all(&log, 1), concat(&[&written[1], &written[2]]));
    assert_eq!(log.batch_headers_from(0).unwrap().len(), 2);
}

#[test]
fn timestamp_lookups_find_the_right_batches_before_and_after_reopen() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let one = batch(&[b"x", b"y"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 3 * one,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    // Each batch of two records has max timestamp ts + 1.
    let stamps = [100, 400, 200, 700, 300, 700, 50];
    let mut written = Vec::new();
    let mut log = Log::open(&dir, cfg.clone()).unwrap();
    for ts in stamps {
        written.push(append(&mut log, &[b"x", b"y"], ts, 0));
    }
    for reopened in [false, true] {
        if reopened {
            drop(log);
            log = Log::open(&dir, cfg.clone()).unwrap();
        }
        let first = |ts| log.first_batch_at_or_after_timestamp(ts).unwrap();
        assert_eq!(first(i64::MIN), Some(written[0].clone()));
        assert_eq!(first(101), Some(written[0].clone()));
        assert_eq!(first(102), Some(written[1].clone()));
        assert_eq!(first(401), Some(written[1].clone()));
        assert_eq!(first(402), Some(written[3].clone()));
        assert_eq!(first(701), Some(written[3].clone()));
        assert_eq!(first(702), None);
        // Two batches share the max; the first one wins.
        assert_eq!(
            log.batch_with_max_timestamp().unwrap(),
            Some(written[3].clone())
        );
    }
    // A later, larger timestamp in the active segment takes over.
    let newest = append(&mut log, &[b"z"], 1_000, 0);
    assert_eq!(
        log.batch_with_max_timestamp().unwrap(),
        Some(newest.clone())
    );
    assert_eq!(
        log.first_batch_at_or_after_timestamp(800).unwrap(),
        Some(newest)
    );
}

#[test]
fn timestamp_lookups_with_sparse_indexes() {
    let tmp = TempDir::new().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
    let written: Vec<Bytes> = (0..40)
        .map(|i| append(&mut log, &[b"value"], i * 10, 0))
        .collect();
    for (i, b) in written.iter().enumerate() {
        let ts = i as i64 * 10;
        assert_eq!(
            log.first_batch_at_or_after_timestamp(ts).unwrap(),
            Some(b.clone())
        );
        assert_eq!(
            log.first_batch_at_or_after_timestamp(ts - 5).unwrap(),
            Some(b.clone())
        );
        assert_eq!(log.read(i as i64, 1, true).unwrap(), *b);
    }
    assert_eq!(
        log.batch_with_max_timestamp().unwrap(),
        written.last().cloned()
    );
}

#[test]
fn flush_policies_do_not_change_what_is_read() {
    let tmp = TempDir::new().unwrap();
    let cfg = LogConfig {
        flush_interval_messages: 1,
        flush_interval_ms: 100,
        ..config()
    };
    let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
    let b0 = append(&mut log, &[b"a"], 1, 0);
    assert_eq!(log.unflushed_messages, 0);
    assert_eq!(log.oldest_unflushed_append_ms, None);
    let b1 = append(&mut log, &[b"b", b"c"], 2, 0);
    log.flush_if_due(1_000).unwrap();
    log.flush().unwrap();
    assert_eq!(read_all(&log, 0), concat(&[&b0, &b1]));

    let tmp = TempDir::new().unwrap();
    let cfg = LogConfig {
        flush_interval_messages: 10,
        flush_interval_ms: 100,
        ..config()
    };
    let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
    append(&mut log, &[b"a", b"b"], 1, 1_000);
    append(&mut log, &[b"c"], 1, 1_050);
    assert_eq!(log.unflushed_messages, 3);
    log.flush_if_due(1_099).unwrap();
    assert_eq!(log.oldest_unflushed_append_ms, Some(1_000));
    log.flush_if_due(1_100).unwrap();
    assert_eq!(log.unflushed_messages, 0);
    assert_eq!(log.oldest_unflushed_append_ms, None);
    for _ in 0..5 {
        append(&mut log, &[b"a", b"b"], 1, 2_000);
    }
    // Ten messages reached: flushed by count.
    assert_eq!(log.unflushed_messages, 0);
}

#[test]
fn delete_removes_the_directory() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let mut log = Log::open(&dir, config()).unwrap();
    append(&mut log, &[b"a"], 1, 0);
    log.delete().unwrap();
    assert!(!dir.exists());
    assert!(tmp.path().exists());
}

#[test]
fn batch_headers_from_an_offset_inside_a_batch_include_that_batch() {
    let tmp = TempDir::new().unwrap();
    let mut log = Log::open(&log_dir(&tmp), config()).unwrap();
    append(&mut log, &[b"a", b"b", b"c"], 1, 0);
    append(&mut log, &[b"d"], 2, 0);
    let headers = log.batch_headers_from(2).unwrap();
    assert_eq!(
        headers
            .iter()
            .map(|h| (h.base_offset, h.last_offset()))
            .collect::<Vec<_>>(),
        vec![(0, 2), (3, 3)]
    );
    assert_eq!(log.batch_headers_from(3).unwrap().len(), 1);
    assert!(log.batch_headers_from(4).unwrap().is_empty());
}

#[test]
fn sealed_segments_with_sane_indexes_are_not_scanned_at_open() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let one = batch(&[b"x", b"y"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    {
        let mut log = Log::open(&dir, cfg.clone()).unwrap();
        for ts in 0..3 {
            append(&mut log, &[b"x", b"y"], ts, 0);
        }
    }
    // Damage a record byte of the sealed segment's last batch: only a scan would see it.
    let sealed = dir.join(file_name(0, "log"));
    let mut bytes = fs::read(&sealed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&sealed, &bytes).unwrap();
    let log = Log::open(&dir, cfg).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(&read_all(&log, 2)[..one as usize], &bytes[one as usize..]);
}

#[test]
fn a_garbage_sealed_segment_is_cut_short_without_panicking() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let one = batch(&[b"x", b"y"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    let written: Vec<Bytes> = {
        let mut log = Log::open(&dir, cfg.clone()).unwrap();
        (0..3)
            .map(|ts| append(&mut log, &[b"x", b"y"], ts, 0))
            .collect()
    };
    // Overwrite the second batch of the sealed segment with garbage offsets, and drop
    // its index so that it is rebuilt by a scan.
    let sealed = dir.join(file_name(0, "log"));
    let mut bytes = fs::read(&sealed).unwrap();
    bytes[one as usize..one as usize + 8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
    fs::write(&sealed, &bytes).unwrap();
    fs::remove_file(dir.join(file_name(0, "timeindex"))).unwrap();
    let log = Log::open(&dir, cfg.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(read_all(&log, 0), concat(&[&written[0], &written[2]]));
    assert_eq!(read_all(&log, 2), written[2]);
}

#[test]
fn garbage_offsets_in_a_sealed_segment_are_reported_at_read_time() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let one = batch(&[b"x", b"y"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    let written: Vec<Bytes> = {
        let mut log = Log::open(&dir, cfg.clone()).unwrap();
        (0..3)
            .map(|ts| append(&mut log, &[b"x", b"y"], ts, 0))
            .collect()
    };
    // The first batch gets a garbage base offset; the sane indexes are trusted at open.
    let sealed = dir.join(file_name(0, "log"));
    let mut bytes = fs::read(&sealed).unwrap();
    bytes[..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
    fs::write(&sealed, &bytes).unwrap();
    let log = Log::open(&dir, cfg).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert!(matches!(
        log.read(0, usize::MAX, true),
        Err(LogError::Corrupt(_))
    ));
    assert!(matches!(
        log.batch_headers_from(0),
        Err(LogError::Corrupt(_))
    ));
    // The index leads past the damaged batch to the good one.
    assert_eq!(read_all(&log, 3), concat(&[&written[1], &written[2]]));
}

#[test]
fn a_sane_looking_index_that_disagrees_with_the_log_is_rebuilt() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let one = batch(&[b"x", b"y"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 3 * one,
        ..config()
    };
    let written: Vec<Bytes> = {
        let mut log = Log::open(&dir, cfg.clone()).unwrap();
        (0..4)
            .map(|ts| append(&mut log, &[b"x", b"y"], ts, 0))
            .collect()
    };
    // Increasing, in range, but pointing into the middle of batches.
    let mut index = Vec::new();
    for (relative_offset, position) in [(1u32, 7u32), (3, one as u32 + 5)] {
        index.extend_from_slice(&relative_offset.to_be_bytes());
        index.extend_from_slice(&position.to_be_bytes());
    }
    fs::write(dir.join(file_name(0, "index")), &index).unwrap();
    let log = Log::open(&dir, cfg).unwrap();
    for (i, b) in written.iter().enumerate() {
        assert_eq!(log.read(2 * i as i64 + 1, 1, true).unwrap(), *b);
    }
    assert_eq!(
        fs::read(dir.join(file_name(0, "index"))).unwrap().len(),
        3 * 8
    );
}

#[test]
fn appended_data_is_visible_to_recovery_without_a_close() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let mut log = Log::open(&dir, config()).unwrap();
    let b0 = append(&mut log, &[b"acked"], 1, 0);
    // As after a kill -9: another open sees what the first one wrote, with no flush.
    let recovered = Log::open(&dir, config()).unwrap();
    assert_eq!(recovered.log_end_offset(), 1);
    assert_eq!(read_all(&recovered, 0), b0);
}

#[test]
fn segment_age_survives_a_reopen_via_the_first_batch_timestamp() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let cfg = LogConfig {
        segment_ms: 100,
        ..config()
    };
    {
        let mut log = Log::open(&dir, cfg.clone()).unwrap();
        append(&mut log, &[b"a"], 1_000, 1_000);
    }
    let mut log = Log::open(&dir, cfg).unwrap();
    append(&mut log, &[b"b"], 1_050, 1_050);
    assert_eq!(segment_files(&dir, "log").len(), 1);
    append(&mut log, &[b"c"], 1_100, 1_100);
    assert_eq!(
        segment_files(&dir, "log"),
        vec![file_name(0, "log"), file_name(2, "log")]
    );
}

/// Injected storage faults (`failpoints` feature): a failed operation leaves memory
/// describing what is on disk, and reopening (a restart) recovers a consistent log.
#[cfg(feature = "failpoints")]
mod faults {
    use super::*;
    use crate::log::dir::test_support::ArmedFailpoints;

    /// Builds the next batch and tries to append it.
    fn try_append(log: &mut Log, value: &[u8], now_ms: i64) -> Result<Bytes, LogError> {
        let mut bytes = batch(&[value], 1_000).to_vec();
        patch_offset_and_epoch(&mut bytes, log.log_end_offset(), 0);
        let header = validate(&bytes).unwrap();
        log.append(&bytes, &header, now_ms)?;
        Ok(Bytes::from(bytes))
    }

    fn os_error(error: LogError) -> Option<i32> {
        match error {
            LogError::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    #[test]
    fn a_failed_write_appends_nothing() {
        let armed = ArmedFailpoints::new();
        let tmp = TempDir::new().unwrap();
        for (errno, code) in [("ENOSPC", 28), ("EIO", 5)] {
            let mut log = Log::open(&log_dir(&tmp), config()).unwrap();
            let before = log.log_end_offset();
            let good = try_append(&mut log, b"ok", 0).unwrap();
            armed.set("log::segment::write", &format!("return({errno})"));
            let error = try_append(&mut log, b"lost", 0).unwrap_err();
            assert_eq!(os_error(error), Some(code));
            assert_eq!(
                log.log_end_offset(),
                before + 1,
                "LEO moved on a failed write"
            );
            assert_eq!(read_all(&log, before), good);
            armed.clear("log::segment::write");
            drop(log);
            let log = Log::open(&log_dir(&tmp), config()).unwrap();
            assert_eq!(log.log_end_offset(), before + 1);
            assert_eq!(read_all(&log, before), good);
        }
    }

    #[test]
    fn a_failed_fsync_is_reported_and_the_written_batch_recovers() {
        let armed = ArmedFailpoints::new();
        let tmp = TempDir::new().unwrap();
        let flush_every = LogConfig {
            flush_interval_messages: 1,
            ..config()
        };
        let mut log = Log::open(&log_dir(&tmp), flush_every.clone()).unwrap();
        let b0 = try_append(&mut log, b"durable", 0).unwrap();
        armed.set("log::segment::fsync", "return(EIO)");
        let error = try_append(&mut log, b"written, not durable", 0).unwrap_err();
        assert_eq!(os_error(error), Some(5));
        // The batch reached the file (the caller takes the directory offline and never
        // acknowledges it); a restart finds it, so a client retry is a duplicate there.
        assert_eq!(log.log_end_offset(), 2);
        assert!(
            log.flush().is_err(),
            "a later fsync must not succeed while failing"
        );
        armed.clear("log::segment::fsync");
        drop(log);
        let log = Log::open(&log_dir(&tmp), flush_every).unwrap();
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(read_all(&log, 0).slice(..b0.len()), b0);
    }

    #[test]
    fn a_failed_roll_can_be_retried_in_process_and_after_restart() {
        let armed = ArmedFailpoints::new();
        let tmp = TempDir::new().unwrap();
        let small = LogConfig {
            segment_bytes: 1,
            ..config()
        };
        // Each open in create is one hit: the .log and .index get created, the
        // .timeindex fails, leaving files of a segment the log does not know.
        for (site, actions) in [
            ("log::segment::create", "1*return(ENOSPC)"),
            ("log::segment::open", "2*off->1*return(EIO)"),
            ("log::dir::fsync", "1*return(EIO)"),
            ("log::segment::fsync", "1*return(EIO)"),
        ] {
            let mut log = Log::open(&log_dir(&tmp), small.clone()).unwrap();
            let end = log.log_end_offset();
            try_append(&mut log, b"first", 0).unwrap();
            armed.set(site, actions);
            assert!(try_append(&mut log, b"rolls", 0).is_err(), "{site}");
            assert_eq!(log.log_end_offset(), end + 1, "{site}");
            // Retried in process: the leftover files do not get in the way.
            try_append(&mut log, b"retried", 0).unwrap();
            assert_eq!(log.log_end_offset(), end + 2, "{site}");
            armed.clear(site);

            // The same failure, then a restart on what it left behind.
            armed.set(site, actions);
            assert!(try_append(&mut log, b"rolls again", 0).is_err(), "{site}");
            armed.clear(site);
            drop(log);
            let mut log = Log::open(&log_dir(&tmp), small.clone()).unwrap();
            assert_eq!(log.log_end_offset(), end + 2, "{site}");
            try_append(&mut log, b"after restart", 0).unwrap();
            assert_eq!(log.log_end_offset(), end + 3, "{site}");
            let batches = log.batch_headers_from(0).unwrap();
            assert_eq!(batches.len() as i64, end + 3, "{site}");
        }
    }

    #[test]
    fn a_failed_index_write_fails_the_append_and_recovery_rebuilds_the_index() {
        let armed = ArmedFailpoints::new();
        let tmp = TempDir::new().unwrap();
        let mut log = Log::open(&log_dir(&tmp), config()).unwrap();
        let b0 = try_append(&mut log, b"indexed", 10).unwrap();
        armed.set("log::index::write", "return(ENOSPC)");
        let error = try_append(&mut log, b"index write fails", 20).unwrap_err();
        assert_eq!(os_error(error), Some(28));
        armed.clear("log::index::write");
        drop(log);
        let log = Log::open(&log_dir(&tmp), config()).unwrap();
        // The batch itself was written: recovery keeps it and indexes it again.
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(read_all(&log, 0).slice(..b0.len()), b0);
        assert_eq!(log.read(1, usize::MAX, true).unwrap().len(), {
            let all = read_all(&log, 0);
            all.len() - b0.len()
        });
    }
}

/// A read plan is a snapshot: appends (and rolls) after it is taken are not seen, and
/// what it covers reads back whole.
#[test]
fn a_read_plan_sees_exactly_the_log_as_planned() {
    let tmp = TempDir::new().unwrap();
    let mut log = Log::open(
        &log_dir(&tmp),
        LogConfig {
            segment_bytes: 200,
            ..config()
        },
    )
    .unwrap();
    let before: Vec<Bytes> = (0..4)
        .map(|i| append(&mut log, &[format!("before-{i}").as_bytes()], 10, 10))
        .collect();
    let plan = log.read_plan(1, i64::MAX, usize::MAX, true).unwrap();
    for i in 0..6 {
        append(&mut log, &[format!("after-{i}").as_bytes()], 10, 10);
    }
    assert!(
        segment_files(&log_dir(&tmp), "log").len() > 2,
        "rolled meanwhile"
    );
    let expected = concat(&before[1..].iter().collect::<Vec<_>>());
    assert_eq!(plan.read().unwrap(), Bytes::from(expected));
}

/// Readers plan under the lock and pread outside it while a writer appends and rolls:
/// every read is a run of whole, contiguous batches starting at the requested offset.
#[test]
fn reads_outside_the_lock_see_whole_batches_while_appends_continue() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let tmp = TempDir::new().unwrap();
    let log = Log::open(
        &log_dir(&tmp),
        LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 256,
            ..config()
        },
    )
    .unwrap();
    let log = Arc::new(Mutex::new(log));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut offset = 0i64;
                while !done.load(Ordering::Relaxed) {
                    let plan = {
                        let log = log.lock().unwrap();
                        let end = log.log_end_offset();
                        offset = (offset + 7 + r) % (end + 1);
                        log.read_plan(offset, i64::MAX, 1000, true).unwrap()
                    };
                    let bytes = plan.read().unwrap();
                    let mut rest = &bytes[..];
                    let mut expected_next: Option<i64> = None;
                    while !rest.is_empty() {
                        let size = super::batch::BatchHeader::parse(rest)
                            .expect("a batch header")
                            .total_size();
                        assert!(size <= rest.len(), "a whole batch");
                        let header = validate(&rest[..size]).expect("a valid batch");
                        match expected_next {
                            None => assert!(
                                header.base_offset <= offset && offset <= header.last_offset(),
                                "the first batch holds the requested offset"
                            ),
                            Some(next) => assert_eq!(header.base_offset, next, "contiguous"),
                        }
                        expected_next = Some(header.last_offset() + 1);
                        rest = &rest[header.total_size()..];
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..2000 {
        let mut log = log.lock().unwrap();
        append(&mut log, &[format!("record-{i}").as_bytes(), b"x"], 10, 10);
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert!(
        segment_files(&log_dir(&tmp), "log").len() > 10,
        "rolled often"
    );
}

#[test]
fn advancing_the_log_start_hides_offsets_and_removes_whole_segments_below_it() {
    let tmp = TempDir::new().unwrap();
    let one = batch(&[b"0123456789"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    let mut log = Log::open(&log_dir(&tmp), cfg.clone()).unwrap();
    let batches: Vec<Bytes> = (0..5)
        .map(|i| append(&mut log, &[b"0123456789"], 100 + i, 0))
        .collect();
    // Segments [0,1] [2,3] [4]: offset 3 leaves the first segment wholly below.
    assert!(matches!(
        log.advance_log_start_offset(6),
        Err(LogError::OffsetOutOfRange { offset: 6, .. })
    ));
    assert!(log.advance_log_start_offset(3).unwrap());
    assert!(
        !log.advance_log_start_offset(2).unwrap(),
        "never moves back"
    );
    assert_eq!(log.log_start_offset(), 3);
    assert!(matches!(
        log.read(2, usize::MAX, true),
        Err(LogError::OffsetOutOfRange { offset: 2, .. })
    ));
    // Offset 3 sits in the batch-per-offset segment [2,3]: reads start at its batch.
    assert_eq!(read_all(&log, 3), concat(&[&batches[3], &batches[4]]));
    // A timestamp below the start finds the first batch at or after it.
    assert_eq!(
        log.first_batch_at_or_after_timestamp(0).unwrap(),
        Some(batches[3].clone())
    );
    assert_eq!(log.delete_segments_below_start().unwrap(), 1);
    assert_eq!(
        segment_files(log.dir(), "log"),
        vec![file_name(2, "log"), file_name(4, "log")]
    );
    assert_eq!(segment_files(log.dir(), "index").len(), 2);
    assert_eq!(segment_files(log.dir(), "timeindex").len(), 2);
    // Up to the log end: every sealed segment goes, the active one stays.
    assert!(log.advance_log_start_offset(5).unwrap());
    assert_eq!(log.delete_segments_below_start().unwrap(), 1);
    assert_eq!(segment_files(log.dir(), "log"), vec![file_name(4, "log")]);
    assert!(read_all(&log, 5).is_empty());
    drop(log);
    // Without its checkpoint the log starts at its first segment again.
    let log = Log::open(&log_dir(&tmp), cfg).unwrap();
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.log_end_offset(), 5);
}

fn append_at_epoch(log: &mut Log, epoch: i32) {
    let mut bytes = batch(&[b"v", b"w"], 1_000).to_vec();
    patch_offset_and_epoch(&mut bytes, log.log_end_offset(), epoch);
    let header = validate(&bytes).unwrap();
    log.append(&bytes, &header, 1_000).unwrap();
}

#[test]
fn leader_epochs_are_checkpointed_and_rebuilt_from_the_batches() {
    let tmp = TempDir::new().unwrap();
    let dir = log_dir(&tmp);
    let mut log = Log::open(&dir, config()).unwrap();
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1), "empty log");
    // Leading from epoch 0 at offset 0: known before any batch, as in Kafka.
    log.assign_leader_epoch(0).unwrap();
    assert_eq!(log.end_offset_for_epoch(0), (0, 0));
    for epoch in [0, 0, 2, 2, 5] {
        append_at_epoch(&mut log, epoch);
    }
    // Epochs 0 [0, 4), 2 [4, 8), 5 [8, 10).
    let expected = [
        (0, (0, 4)),
        (1, (0, 4)),
        (2, (2, 8)),
        (4, (2, 8)),
        (5, (5, 10)),
    ];
    for (requested, answer) in expected {
        assert_eq!(
            log.end_offset_for_epoch(requested),
            answer,
            "epoch {requested}"
        );
    }
    assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
    let checkpoint = dir.join(super::epochs::CHECKPOINT_FILE);
    assert_eq!(
        fs::read_to_string(&checkpoint).unwrap(),
        "0\n3\n0 0\n2 4\n5 8\n"
    );
    drop(log);
    let reopened = Log::open(&dir, config()).unwrap();
    for (requested, answer) in expected {
        assert_eq!(reopened.end_offset_for_epoch(requested), answer);
    }
    drop(reopened);
    // A log from before the checkpoint existed, or a damaged file: rebuilt from batches.
    for damage in [None, Some("garbage")] {
        match damage {
            None => fs::remove_file(&checkpoint).unwrap(),
            Some(text) => fs::write(&checkpoint, text).unwrap(),
        }
        let rebuilt = Log::open(&dir, config()).unwrap();
        for (requested, answer) in expected {
            assert_eq!(
                rebuilt.end_offset_for_epoch(requested),
                answer,
                "{damage:?}"
            );
        }
        assert_eq!(
            fs::read_to_string(&checkpoint).unwrap(),
            "0\n3\n0 0\n2 4\n5 8\n"
        );
    }
    // A new leader epoch starts at the log end and closes the previous one there.
    let mut log = Log::open(&dir, config()).unwrap();
    log.assign_leader_epoch(7).unwrap();
    assert_eq!(log.end_offset_for_epoch(5), (5, 10));
    assert_eq!(log.end_offset_for_epoch(6), (5, 10));
    assert_eq!(log.end_offset_for_epoch(7), (7, 10));
    append_at_epoch(&mut log, 7);
    assert_eq!(log.end_offset_for_epoch(7), (7, 12));
}

/// An aborted transaction whose marker is `last_offset` (the batch there stands in for
/// the marker: the index only needs its offset to be in the log).
fn aborted(first_offset: i64, last_offset: i64) -> super::txn_index::AbortedTxn {
    super::txn_index::AbortedTxn {
        producer_id: 1,
        first_offset,
        last_offset,
        last_stable_offset: last_offset + 1,
    }
}

#[test]
fn transaction_indexes_follow_their_segments() {
    let tmp = TempDir::new().unwrap();
    let one = batch(&[b"0123456789"], 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: 2 * one,
        ..config()
    };
    let mut log = Log::open(&log_dir(&tmp), cfg.clone()).unwrap();
    for i in 0..6 {
        append(&mut log, &[b"0123456789"], i, 0);
    }
    // Segments [0, 2), [2, 4), [4, 6).
    log.add_aborted_txn(aborted(0, 1)).unwrap();
    log.add_aborted_txn(aborted(1, 3)).unwrap();
    log.add_aborted_txn(aborted(3, 5)).unwrap();
    // The same marker again (a replay) is not indexed twice.
    log.add_aborted_txn(aborted(3, 5)).unwrap();
    assert_eq!(
        segment_files(log.dir(), "txnindex"),
        vec![
            file_name(0, "txnindex"),
            file_name(2, "txnindex"),
            file_name(4, "txnindex")
        ]
    );
    assert_eq!(
        log.collect_aborted_txns(2, 6),
        vec![aborted(1, 3), aborted(3, 5)]
    );
    assert_eq!(log.collect_aborted_txns(0, 1), vec![aborted(0, 1)]);
    // Reopening reads them back.
    drop(log);
    let mut log = Log::open(&log_dir(&tmp), cfg).unwrap();
    assert!(log.txn_indexes_trusted());
    assert_eq!(log.collect_aborted_txns(0, 6).len(), 3);
    // Truncation drops the entries whose marker goes, with the later segments' files.
    log.truncate_to(3).unwrap();
    assert_eq!(log.collect_aborted_txns(0, 6), vec![aborted(0, 1)]);
    // (An index left without entries is removed.)
    assert_eq!(
        segment_files(log.dir(), "txnindex"),
        vec![file_name(0, "txnindex")]
    );
    // DeleteRecords past a segment removes its index with it.
    log.advance_log_start_offset(2).unwrap();
    log.delete_segments_below_start().unwrap();
    assert!(segment_files(log.dir(), "txnindex").is_empty());
    assert!(log.collect_aborted_txns(2, 6).is_empty());
}
