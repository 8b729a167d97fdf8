use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use tempfile::TempDir;

use super::*;
use crate::log::batch::{self, patch_offset_and_epoch, validate, PlainRecord, ProducerIdentity};
use crate::log::CleanupPolicy;

const T0: i64 = 1_700_000_000_000;

struct TestLog {
    log: Mutex<Log>,
    producers: HashMap<i64, i64>,
    /// None: no transaction holds the log back.
    last_stable_offset: Mutex<Option<i64>>,
}

impl CleanableLog for TestLog {
    fn topic_partition(&self) -> (String, i32) {
        ("t".to_string(), 0)
    }

    fn with_log(&self, f: &mut dyn FnMut(&mut Log)) {
        f(&mut self.log.lock().unwrap());
    }

    fn producer_last_offsets(&self) -> HashMap<i64, i64> {
        self.producers.clone()
    }

    fn last_stable_offset(&self) -> i64 {
        let last_stable_offset = *self.last_stable_offset.lock().unwrap();
        last_stable_offset.unwrap_or_else(|| self.log.lock().unwrap().log_end_offset())
    }
}

fn cleaner_config() -> CleanerConfig {
    CleanerConfig {
        enable: true,
        threads: 1,
        io_max_bytes_per_second: f64::MAX,
        dedupe_buffer_bytes: 1 << 20,
        backoff_ms: 1,
    }
}

/// Compacted; every batch rolls a new segment (`segment.bytes` 1), every batch indexed.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1,
        index_interval_bytes: 1,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Arc<TestLog> {
    Arc::new(TestLog {
        log: Mutex::new(Log::open(dir, log_config()).unwrap()),
        producers: HashMap::new(),
        last_stable_offset: Mutex::new(None),
    })
}

type KeyValue<'a> = (&'a str, Option<&'a str>);

fn encode(
    records: &[KeyValue<'_>],
    timestamp_ms: i64,
    compression: Compression,
    producer: (i64, i16, i32),
) -> Vec<u8> {
    let records: Vec<PlainRecord> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| PlainRecord {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            timestamp_ms: timestamp_ms + i as i64,
        })
        .collect();
    let producer = ProducerIdentity {
        producer_id: producer.0,
        producer_epoch: producer.1,
        base_sequence: producer.2,
    };
    batch::encode(&records, producer, compression)
        .unwrap()
        .to_vec()
}

fn append_with(
    log: &TestLog,
    records: &[KeyValue<'_>],
    timestamp_ms: i64,
    compression: Compression,
    producer: (i64, i16, i32),
) {
    let mut log = log.log.lock().unwrap();
    let mut bytes = encode(records, timestamp_ms, compression, producer);
    patch_offset_and_epoch(&mut bytes, log.log_end_offset(), 0);
    let header = validate(&bytes).unwrap();
    log.append(&bytes, &header, timestamp_ms).unwrap();
}

fn append(log: &TestLog, records: &[KeyValue<'_>], timestamp_ms: i64) {
    append_with(log, records, timestamp_ms, Compression::None, (-1, -1, -1));
}

/// (offset, key, value) of every record from offset 0.
fn records_of(bytes: Bytes) -> Vec<(i64, String, Option<String>)> {
    let mut bytes = bytes;
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
        for record in set.records {
            out.push((
                record.offset,
                String::from_utf8(record.key.unwrap().to_vec()).unwrap(),
                record.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
            ));
        }
    }
    out
}

fn contents(log: &TestLog) -> Vec<(i64, String, Option<String>)> {
    records_of(log.log.lock().unwrap().read(0, usize::MAX, true).unwrap())
}

fn kv(offset: i64, key: &str, value: Option<&str>) -> (i64, String, Option<String>) {
    (offset, key.to_string(), value.map(str::to_string))
}

fn logs(log: &Arc<TestLog>) -> Vec<Arc<dyn CleanableLog>> {
    vec![log.clone() as Arc<dyn CleanableLog>]
}

fn headers(log: &TestLog) -> Vec<BatchHeader> {
    log.log.lock().unwrap().batch_headers_from(0).unwrap()
}

#[test]
fn overwrites_keep_the_latest_value_per_key_and_tombstones_last_delete_retention_ms() {
    let tmp = TempDir::new().unwrap();
    let log = open(&tmp.path().join("t-0"));
    append(&log, &[("k1", Some("v1"))], T0);
    append(&log, &[("k2", Some("v1"))], T0);
    append(&log, &[("k1", Some("v2")), ("k3", Some("v1"))], T0);
    append(&log, &[("k2", None)], T0);
    append(&log, &[("k4", Some("v1"))], T0); // the active segment: never cleaned
                                             // After the first clean the dirty share stays near one half.
    log.log.lock().unwrap().config.min_cleanable_dirty_ratio = 0.01;
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    let now = T0 + 10;
    assert!(cleaner.clean_filthiest(&logs(&log), now).unwrap());
    assert_eq!(
        contents(&log),
        vec![
            kv(2, "k1", Some("v2")),
            kv(3, "k3", Some("v1")),
            kv(4, "k2", None),
            kv(5, "k4", Some("v1")),
        ]
    );
    assert_eq!(cleaner.last_stats.end_offset, 5);
    assert_eq!(
        fs::read_to_string(tmp.path().join(CHECKPOINT_FILE)).unwrap(),
        "0\n1\nt 0 5\n"
    );
    // The kept tombstone's batch carries its delete horizon; offsets are not renumbered.
    let tombstone = headers(&log)
        .into_iter()
        .find(|h| h.base_offset == 4)
        .unwrap();
    assert_eq!(tombstone.delete_horizon_ms(), Some(now + 1_000));
    // Nothing new is dirty: nothing to clean.
    assert!(!cleaner.clean_filthiest(&logs(&log), now).unwrap());

    // More writes make the log dirty again; before the horizon the tombstone stays.
    append(&log, &[("k4", Some("v2"))], T0 + 20);
    append(&log, &[("k5", Some("v1"))], T0 + 20);
    assert!(cleaner.clean_filthiest(&logs(&log), now + 999).unwrap());
    assert_eq!(
        contents(&log),
        vec![
            kv(2, "k1", Some("v2")),
            kv(3, "k3", Some("v1")),
            kv(4, "k2", None),
            kv(6, "k4", Some("v2")),
            kv(7, "k5", Some("v1")),
        ]
    );
    // Once the horizon has passed, the next clean drops it.
    append(&log, &[("k5", Some("v2"))], T0 + 30);
    append(&log, &[("k6", Some("v1"))], T0 + 30);
    assert!(cleaner.clean_filthiest(&logs(&log), now + 1_000).unwrap());
    assert_eq!(
        contents(&log),
        vec![
            kv(2, "k1", Some("v2")),
            kv(3, "k3", Some("v1")),
            kv(6, "k4", Some("v2")),
            kv(8, "k5", Some("v2")),
            kv(9, "k6", Some("v1")),
        ]
    );
}

/// (offset, timestamp) of every record in `bytes`.
fn record_times(bytes: Bytes) -> Vec<(i64, i64)> {
    let mut bytes = bytes;
    RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|record| (record.offset, record.timestamp))
        .collect()
}

#[test]
fn timestamp_lookups_stay_right_after_a_clean() {
    let tmp = TempDir::new().unwrap();
    let log = open(&tmp.path().join("t-0"));
    // Offsets 0..5, one batch each, at T0 + 100 * offset; k1 overwritten, k2 deleted.
    append(&log, &[("k1", Some("v1"))], T0);
    append(&log, &[("k2", Some("v1"))], T0 + 100);
    append(&log, &[("k1", Some("v2"))], T0 + 200);
    append(&log, &[("k2", None)], T0 + 300);
    append(&log, &[("k3", Some("v1"))], T0 + 400);
    log.log.lock().unwrap().config.min_cleanable_dirty_ratio = 0.01;
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    // Before the tombstone's horizon: it stays, and its batch now carries the horizon.
    assert!(cleaner.clean_filthiest(&logs(&log), T0 + 500).unwrap());
    let guard = log.log.lock().unwrap();
    let all = guard.read(0, usize::MAX, true).unwrap();
    // Every survivor keeps its timestamp, the tombstone's included.
    assert_eq!(
        record_times(all),
        vec![(2, T0 + 200), (3, T0 + 300), (4, T0 + 400)]
    );
    // ListOffsets by timestamp: the first surviving record at or after the target.
    let first_at = |target: i64| {
        guard
            .first_batch_at_or_after_timestamp(target)
            .unwrap()
            .map(|batch| record_times(batch)[0])
    };
    assert_eq!(first_at(T0), Some((2, T0 + 200)));
    assert_eq!(first_at(T0 + 201), Some((3, T0 + 300)));
    assert_eq!(first_at(T0 + 301), Some((4, T0 + 400)));
    assert_eq!(first_at(T0 + 401), None);
    // ListOffsets MAX_TIMESTAMP: the time index and the batches agree after the swap.
    let max = guard.batch_with_max_timestamp().unwrap().unwrap();
    assert_eq!(record_times(max), vec![(4, T0 + 400)]);
}

#[test]
fn a_cleaned_log_reopens_the_same_with_or_without_its_indexes() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("t-0");
    let log = open(&dir);
    for round in 0..3 {
        let value = format!("v{round}");
        append(&log, &[("a", Some(&value)), ("b", Some(&value))], T0);
        append(&log, &[("c", Some(&value))], T0);
    }
    append(&log, &[("z", Some("active"))], T0);
    // Groups of several segments into one.
    log.log.lock().unwrap().config.segment_bytes = 1 << 20;
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    let cleaned = contents(&log);
    assert_eq!(
        cleaned,
        vec![
            kv(6, "a", Some("v2")),
            kv(7, "b", Some("v2")),
            kv(8, "c", Some("v2")),
            kv(9, "z", Some("active")),
        ]
    );
    // Reads from inside the cleaned range find the next kept record.
    let from_one = records_of(log.log.lock().unwrap().read(1, usize::MAX, true).unwrap());
    assert_eq!(from_one, cleaned);
    // One sealed segment at base 0 (covering 0..9), then the active one.
    let bases: Vec<i64> = log.log.lock().unwrap().segments.keys().copied().collect();
    assert_eq!(bases, vec![0, 9]);
    drop(log);
    let reopened = open(&dir);
    assert_eq!(contents(&reopened), cleaned);
    drop(reopened);
    for extension in ["index", "timeindex"] {
        fs::remove_file(dir.join(file_name(0, extension))).unwrap();
    }
    let rebuilt = open(&dir);
    assert_eq!(contents(&rebuilt), cleaned);
    assert_eq!(rebuilt.log.lock().unwrap().log_end_offset(), 10);
}

#[test]
fn the_dirty_ratio_and_the_compaction_lags_gate_cleaning() {
    let tmp = TempDir::new().unwrap();
    let log = open(&tmp.path().join("t-0"));
    for i in 0..6 {
        append(&log, &[(&format!("k{i}"), Some("v"))], T0);
    }
    append(&log, &[("active", Some("v"))], T0);
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    // 2 dirty segments of 8: below the default 0.5.
    append(&log, &[("k0", Some("w"))], T0);
    append(&log, &[("another", Some("v"))], T0);
    assert!(!cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    // min.compaction.lag.ms holds back a dirty log over the ratio...
    log.log.lock().unwrap().config.min_cleanable_dirty_ratio = 0.01;
    log.log.lock().unwrap().config.min_compaction_lag_ms = 1_000;
    assert!(!cleaner.clean_filthiest(&logs(&log), T0 + 999).unwrap());
    // ...until its records are old enough.
    assert!(cleaner.clean_filthiest(&logs(&log), T0 + 1_001).unwrap());
    assert_eq!(contents(&log)[0], kv(1, "k1", Some("v")));

    // max.compaction.lag.ms cleans a log below the ratio once its dirt is old.
    log.log.lock().unwrap().config.min_cleanable_dirty_ratio = 0.99;
    log.log.lock().unwrap().config.min_compaction_lag_ms = 0;
    log.log.lock().unwrap().config.max_compaction_lag_ms = 5_000;
    append(&log, &[("k1", Some("w"))], T0 + 2_000);
    append(&log, &[("another", Some("v"))], T0 + 2_000);
    // The oldest dirty segment's first batch is from T0.
    assert!(!cleaner.clean_filthiest(&logs(&log), T0 + 4_999).unwrap());
    assert!(cleaner.clean_filthiest(&logs(&log), T0 + 5_001).unwrap());
    assert!(!contents(&log).contains(&kv(1, "k1", Some("v"))));
    // A log that is not compacted is never cleaned.
    log.log.lock().unwrap().config.cleanup_policy.compact = false;
    append(&log, &[("k2", Some("w"))], T0 + 8_000);
    append(&log, &[("another", Some("v"))], T0 + 8_000);
    assert!(!cleaner.clean_filthiest(&logs(&log), T0 + 100_000).unwrap());
}

#[test]
fn a_full_dedupe_buffer_cleans_part_of_the_dirty_section_and_its_size_changes_live() {
    let tmp = TempDir::new().unwrap();
    let log = open(&tmp.path().join("t-0"));
    for key in ["a", "b", "c", "d", "a", "b"] {
        append(&log, &[(key, Some("v"))], T0);
    }
    append(&log, &[("active", Some("v"))], T0);
    log.log.lock().unwrap().config.min_cleanable_dirty_ratio = 0.01;
    // Started with room for every key, then (a live config change) four slots: room
    // for three keys.
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    let config = CleanerConfig {
        dedupe_buffer_bytes: 4 * MAP_SLOT_BYTES,
        io_max_bytes_per_second: 1e9,
        ..cleaner_config()
    };
    cleaner.set_config(config);
    assert_eq!(cleaner.throttler.bytes_per_second, 1e9);
    let before = contents(&log);
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    assert_eq!(cleaner.last_stats.end_offset, 3);
    assert_eq!(contents(&log), before);
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    assert_eq!(cleaner.last_stats.end_offset, 6);
    assert_eq!(
        contents(&log),
        vec![
            kv(2, "c", Some("v")),
            kv(3, "d", Some("v")),
            kv(4, "a", Some("v")),
            kv(5, "b", Some("v")),
            kv(6, "active", Some("v")),
        ]
    );
}

#[test]
fn a_fetch_planned_before_a_swap_reads_the_old_segments() {
    let tmp = TempDir::new().unwrap();
    let log = open(&tmp.path().join("t-0"));
    for value in ["1", "2", "3"] {
        append(&log, &[("k", Some(value))], T0);
    }
    append(&log, &[("active", Some("v"))], T0);
    let plan = log
        .log
        .lock()
        .unwrap()
        .read_plan(0, i64::MAX, usize::MAX, true)
        .unwrap();
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    assert_eq!(
        records_of(plan.read().unwrap()),
        vec![
            kv(0, "k", Some("1")),
            kv(1, "k", Some("2")),
            kv(2, "k", Some("3")),
            kv(3, "active", Some("v")),
        ]
    );
    assert_eq!(
        contents(&log),
        vec![kv(2, "k", Some("3")), kv(3, "active", Some("v"))]
    );
}

#[test]
fn interrupted_cleans_are_undone_or_completed_at_open() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("t-0");
    let log = open(&dir);
    for value in ["1", "2", "3"] {
        append(&log, &[("k", Some(value))], T0);
    }
    append(&log, &[("active", Some("v"))], T0);
    log.log.lock().unwrap().config.segment_bytes = 1 << 20;
    let original = contents(&log);
    drop(log);
    // A copy cleaned to completion supplies the `.swap` a crash could leave.
    let copy_dir = tmp.path().join("copy").join("t-0");
    fs::create_dir_all(&copy_dir).unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy_dir.join(entry.file_name())).unwrap();
    }
    let copy = open(&copy_dir);
    copy.log.lock().unwrap().config.segment_bytes = 1 << 20;
    let mut cleaner = Cleaner::new(cleaner_config(), &tmp.path().join("copy"));
    assert!(cleaner.clean_filthiest(&logs(&copy), T0).unwrap());
    let cleaned = contents(&copy);
    assert_eq!(cleaned.len(), 2);
    drop(copy);
    let cleaned_log = fs::read(copy_dir.join(file_name(0, "log"))).unwrap();

    // A `.cleaned` file is dropped: the old segments stay.
    let cleaned_path = dir.join(format!("{}.cleaned", file_name(0, "log")));
    fs::write(&cleaned_path, &cleaned_log).unwrap();
    assert_eq!(contents(&open(&dir)), original);
    assert!(!cleaned_path.exists());

    // A `.swap` file replaces the segments it covers, also when some were already gone.
    let swap_path = dir.join(format!("{}.swap", file_name(0, "log")));
    fs::write(&swap_path, &cleaned_log).unwrap();
    fs::remove_file(dir.join(file_name(1, "log"))).unwrap();
    let recovered = open(&dir);
    assert_eq!(contents(&recovered), cleaned);
    assert!(!swap_path.exists());
    let bases: Vec<i64> = recovered
        .log
        .lock()
        .unwrap()
        .segments
        .keys()
        .copied()
        .collect();
    assert_eq!(bases, vec![0, 3]);
}

#[test]
fn an_active_producers_last_batch_is_kept_empty_with_its_sequence() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("t-0");
    let log = Arc::new(TestLog {
        log: Mutex::new(Log::open(&dir, log_config()).unwrap()),
        producers: HashMap::from([(7, 1)]),
        last_stable_offset: Mutex::new(None),
    });
    append_with(
        &log,
        &[("k", Some("1")), ("k", Some("2"))],
        T0,
        Compression::None,
        (7, 3, 10),
    );
    append(&log, &[("k", Some("3"))], T0);
    append(&log, &[("active", Some("v"))], T0);
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    let kept = headers(&log);
    assert_eq!(kept[0].base_offset, 0);
    assert_eq!(kept[0].record_count, 0);
    assert_eq!(kept[0].last_offset(), 1);
    assert_eq!((kept[0].producer_id, kept[0].producer_epoch), (7, 3));
    assert_eq!(kept[0].last_sequence(), 11);
    assert_eq!(
        contents(&log),
        vec![kv(2, "k", Some("3")), kv(3, "active", Some("v"))]
    );
}

#[test]
fn compressed_batches_are_rebuilt_with_their_codec_offsets_and_producer() {
    let tmp = TempDir::new().unwrap();
    let log = open(&tmp.path().join("t-0"));
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let start = log.log.lock().unwrap().log_end_offset();
        append_with(
            &log,
            &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))],
            T0,
            compression,
            (9, 0, start as i32),
        );
        append(&log, &[("b", Some("2"))], T0);
    }
    append(&log, &[("active", Some("v"))], T0);
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    let kept = headers(&log);
    let rebuilt: Vec<&BatchHeader> = kept.iter().filter(|h| h.producer_id == 9).collect();
    // The first three lost `b` (and `a`, `c` to the next batch of the same keys).
    assert_eq!(rebuilt.len(), 1);
    assert_eq!(rebuilt[0].compression_codec(), 4);
    assert_eq!(rebuilt[0].base_offset, 12);
    assert_eq!(rebuilt[0].last_offset_delta, 2);
    assert_eq!(rebuilt[0].record_count, 2);
    assert_eq!(rebuilt[0].base_sequence, 12);
    assert_eq!(
        contents(&log),
        vec![
            kv(12, "a", Some("1")),
            kv(14, "c", Some("1")),
            kv(15, "b", Some("2")),
            kv(16, "active", Some("v")),
        ]
    );
}

#[test]
fn bad_bytes_make_the_log_uncleanable_not_a_panic() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("t-0");
    let log = open(&dir);
    append(&log, &[("k", Some("1"))], T0);
    append(&log, &[("k", Some("2"))], T0);
    append(&log, &[("active", Some("v"))], T0);
    // Flip a record byte: the CRC no longer matches.
    let path = dir.join(file_name(1, "log"));
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(!cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    assert!(!cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    assert!(cleaner.uncleanable.contains(&("t".to_string(), 0)));
}

#[test]
fn varlongs_round_trip_and_bad_ones_are_refused() {
    for value in [
        0i64,
        1,
        -1,
        63,
        -64,
        64,
        i32::MAX as i64,
        i64::MIN,
        i64::MAX,
    ] {
        let mut out = Vec::new();
        write_varlong(value, &mut out);
        let mut slice = &out[..];
        assert_eq!(read_varlong(&mut slice), Some(value));
        assert!(slice.is_empty());
    }
    assert_eq!(read_varlong(&mut &[0x80u8; 11][..]), None);
    assert!(parse_record(&mut &[0x7fu8, 0][..]).is_err());
}

#[test]
fn the_checkpoint_uses_kafkas_format() {
    let entries = parse_checkpoint("0\n2\nt 0 5\n__consumer_offsets 3 17\n").unwrap();
    assert_eq!(entries[&("t".to_string(), 0)], 5);
    assert_eq!(entries[&("__consumer_offsets".to_string(), 3)], 17);
    assert!(parse_checkpoint("1\n0\n").is_none());
    assert!(parse_checkpoint("0\n2\nt 0 5\n").is_none());
}

#[test]
fn a_log_deleted_under_the_cleaner_is_not_a_storage_error() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("t-0");
    let log = open(&dir);
    append(&log, &[("k", Some("1"))], T0);
    append(&log, &[("k", Some("2"))], T0);
    append(&log, &[("active", Some("v"))], T0);
    // As DeleteTopics removes a partition's directory while its log is still open.
    fs::remove_dir_all(&dir).unwrap();
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(!cleaner.clean_filthiest(&logs(&log), T0).unwrap());
}

#[test]
fn the_throttler_sleeps_off_excess_io_and_a_stop_cuts_the_sleep_short() {
    let stop = Arc::new(Stop::default());
    let mut unbounded = Throttler::new(f64::MAX);
    unbounded.period_start -= THROTTLE_CHECK_INTERVAL;
    assert!(unbounded.throttle(1 << 30, &stop));
    // 1,000 bytes at 1 byte/s: a sleep of many minutes, which only the stop ends.
    let mut slow = Throttler::new(1.0);
    slow.period_start -= THROTTLE_CHECK_INTERVAL;
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || stop.stop())
    };
    assert!(!slow.throttle(1_000, &stop));
    stopper.join().unwrap();
}

#[test]
fn a_truncation_below_the_clean_offset_lowers_the_checkpoint() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("t-0");
    let log = open(&dir);
    append(&log, &[("k1", Some("v1"))], T0);
    append(&log, &[("k2", Some("v1"))], T0);
    append(&log, &[("k1", Some("v2")), ("k3", Some("v1"))], T0);
    append(&log, &[("k2", None)], T0);
    append(&log, &[("k4", Some("v1"))], T0);
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    let checkpoint = || fs::read_to_string(tmp.path().join(CHECKPOINT_FILE)).unwrap();
    assert_eq!(checkpoint(), "0\n1\nt 0 5\n");
    // A follower's truncation into the cleaned (compacted, gapped) part: 2 and on go.
    log.log.lock().unwrap().truncate_to(3).unwrap();
    assert_eq!(log.log.lock().unwrap().log_end_offset(), 2);
    append(&log, &[("a", Some("v1"))], T0);
    append(&log, &[("a", Some("v2"))], T0);
    append(&log, &[("b", Some("v1"))], T0);
    append(&log, &[("active", Some("v"))], T0);
    // No clean (ratio), but the checkpoint already follows the truncation.
    log.log.lock().unwrap().config.min_cleanable_dirty_ratio = 1.0;
    assert!(!cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    assert_eq!(checkpoint(), "0\n1\nt 0 2\n");
    // So what was appended at 2 and on is dirty: "a" at 2 goes. (With the checkpoint
    // left at 5, offsets 2-4 would count as clean and never be compacted.)
    log.log.lock().unwrap().config.min_cleanable_dirty_ratio = 0.01;
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    let expected = vec![
        kv(3, "a", Some("v2")),
        kv(4, "b", Some("v1")),
        kv(5, "active", Some("v")),
    ];
    assert_eq!(contents(&log), expected);
    drop(log);
    assert_eq!(contents(&open(&dir)), expected);
}

#[test]
fn a_clean_planned_before_a_truncation_is_abandoned() {
    let tmp = TempDir::new().unwrap();
    let log = open(&tmp.path().join("t-0"));
    for value in ["1", "2", "3", "4"] {
        append(&log, &[("k", Some(value))], T0);
    }
    append(&log, &[("active", Some("v"))], T0);
    let shared: Arc<dyn CleanableLog> = log.clone();
    let planned = candidate(&shared, ("t".to_string(), 0), None, T0).unwrap();
    assert!(!planned.truncated_since());
    // The follower cuts the log back and the same sizes come back: the views' segments
    // look unchanged, only the truncation count tells.
    log.log.lock().unwrap().truncate_to(1).unwrap();
    for value in ["x", "y", "z"] {
        append(&log, &[("k", Some(value))], T0);
    }
    append(&log, &[("active", Some("v"))], T0);
    assert!(planned.truncated_since());
    let before = contents(&log);
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    assert!(matches!(cleaner.clean(&planned, T0), Ok(None)));
    assert_eq!(contents(&log), before);
    // The next round plans afresh and cleans the new bytes.
    assert!(cleaner.clean_filthiest(&logs(&log), T0).unwrap());
    assert_eq!(
        contents(&log),
        vec![kv(3, "k", Some("z")), kv(4, "active", Some("v"))]
    );
}

/// A transactional batch of one record from `producer_id`.
fn append_txn(log: &TestLog, key: &str, value: &str, producer_id: i64) {
    let mut bytes = encode(
        &[(key, Some(value))],
        T0,
        Compression::None,
        (producer_id, 0, 0),
    );
    let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | 0x10;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let mut log = log.log.lock().unwrap();
    patch_offset_and_epoch(&mut bytes, log.log_end_offset(), 0);
    let header = validate(&bytes).unwrap();
    log.append(&bytes, &header, T0).unwrap();
}

/// A COMMIT or ABORT marker; an ABORT of a transaction starting at `first_offset` is
/// indexed as the partition indexes it.
fn append_marker(log: &TestLog, producer_id: i64, commit: bool, first_offset: i64) {
    let marker = crate::log::txn_marker::EndTxnMarker {
        commit,
        coordinator_epoch: 0,
    };
    let mut bytes = crate::log::txn_marker::encode_marker_batch(producer_id, 0, marker, T0);
    let mut log = log.log.lock().unwrap();
    let offset = log.log_end_offset();
    patch_offset_and_epoch(&mut bytes, offset, 0);
    let header = validate(&bytes).unwrap();
    log.append(&bytes, &header, T0).unwrap();
    if !commit {
        log.add_aborted_txn(crate::log::txn_index::AbortedTxn {
            producer_id,
            first_offset,
            last_offset: offset,
            last_stable_offset: offset + 1,
        })
        .unwrap();
    }
}

#[test]
fn aborted_records_go_markers_outlive_them_by_delete_retention_and_open_transactions_wait() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("t-0");
    let log = Arc::new(TestLog {
        log: Mutex::new(Log::open(&dir, log_config()).unwrap()),
        producers: HashMap::new(),
        // Producer 7's transaction (offset 5) is undecided.
        last_stable_offset: Mutex::new(Some(5)),
    });
    append(&log, &[("k1", Some("committed"))], T0); // 0
    append_txn(&log, "k1", "aborted", 5); // 1
    append_marker(&log, 5, false, 1); // 2
    append_txn(&log, "k2", "committed", 6); // 3
    append_marker(&log, 6, true, 3); // 4
    append_txn(&log, "k1", "undecided", 7); // 5
    append(&log, &[("k9", Some("active"))], T0); // 6
    log.log.lock().unwrap().config.min_cleanable_dirty_ratio = 0.01;
    let mut cleaner = Cleaner::new(cleaner_config(), tmp.path());
    let now = T0 + 10;
    assert!(cleaner.clean_filthiest(&logs(&log), now).unwrap());
    // Cleaning stops at the LSO; the aborted record never displaced the committed one.
    assert_eq!(cleaner.last_stats.end_offset, 5);
    let batches = |log: &TestLog| -> Vec<(i64, bool, i32, Option<i64>)> {
        headers(log)
            .iter()
            .map(|h| {
                (
                    h.base_offset,
                    h.is_control(),
                    h.record_count,
                    h.delete_horizon_ms(),
                )
            })
            .collect()
    };
    assert_eq!(
        batches(&log),
        vec![
            (0, false, 1, None),
            // The abort marker of the records this clean removed stays, indexed.
            (2, true, 1, None),
            (3, false, 1, None),
            (4, true, 1, None),
            (5, false, 1, None),
            (6, false, 1, None),
        ]
    );
    let aborted = log.log.lock().unwrap().collect_aborted_txns(0, 7);
    assert_eq!(
        aborted.len(),
        1,
        "the cleaned segment keeps the index entry"
    );
    // Producer 7 commits; the next clean finds nothing of the aborted transaction: the
    // marker gets its horizon and the index entry goes.
    append_marker(&log, 7, true, 5); // 7
    *log.last_stable_offset.lock().unwrap() = None;
    append(&log, &[("k9", Some("more"))], T0 + 15);
    append(&log, &[("k11", Some("x"))], T0 + 15);
    assert!(cleaner.clean_filthiest(&logs(&log), now).unwrap());
    assert!(batches(&log).contains(&(2, true, 1, Some(now + 1_000))));
    assert!(log
        .log
        .lock()
        .unwrap()
        .collect_aborted_txns(0, 10)
        .is_empty());
    assert_eq!(
        crate::log::txn_marker::parse_marker(
            &log.log.lock().unwrap().read(2, usize::MAX, true).unwrap()
        ),
        Some(crate::log::txn_marker::EndTxnMarker {
            commit: false,
            coordinator_epoch: 0
        }),
        "the marker rebuilt with its horizon still parses"
    );
    // Past the horizon, with more dirty data, the marker goes.
    append(&log, &[("k9", Some("again"))], T0 + 20);
    append(&log, &[("k10", Some("x"))], T0 + 20);
    assert!(cleaner.clean_filthiest(&logs(&log), now + 1_000).unwrap());
    assert!(batches(&log).iter().all(|b| b.0 != 2));
    assert!(
        batches(&log).iter().any(|b| b.0 == 4),
        "a committed txn's marker stays"
    );
}
