//! Retention of one log with a fake clock (`now_ms` passed in): which segments go, in
//! what order, what the log looks like after, and what readers see.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use tempfile::TempDir;

use super::super::batch::test_support::batch;
use super::super::batch::{patch_offset_and_epoch, validate};
use super::super::segment::file_name;
use super::super::{CleanupPolicy, Log, LogConfig, LogError};
use super::{delete_retired_files, RetentionBreach, RetiredSegment};

/// One batch per segment (a batch larger than `segment.bytes` still goes into an empty
/// segment), retention off until a test turns it on.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    }
}

fn open(tmp: &TempDir, config: LogConfig) -> Log {
    Log::open(&tmp.path().join("t-0"), config).unwrap()
}

/// Appends one batch of one record with `timestamp_ms` at the log end.
fn append(log: &mut Log, timestamp_ms: i64) -> Bytes {
    let mut bytes = batch(&[b"0123456789"], timestamp_ms).to_vec();
    patch_offset_and_epoch(&mut bytes, log.log_end_offset(), 0);
    let header = validate(&bytes).unwrap();
    log.append(&bytes, &header, timestamp_ms).unwrap();
    Bytes::from(bytes)
}

/// Retires segments until retention is satisfied, as one pass does.
fn pass(log: &mut Log, now_ms: i64) -> Vec<RetiredSegment> {
    let mut retired = Vec::new();
    while let Some(segment) = log.retire_oldest_segment(now_ms).unwrap() {
        retired.push(segment);
    }
    retired
}

fn bases(retired: &[RetiredSegment]) -> Vec<i64> {
    retired.iter().map(|s| s.base_offset).collect()
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn time_retention_retires_segments_older_than_retention_ms_oldest_first() {
    let tmp = TempDir::new().unwrap();
    let mut log = open(
        &tmp,
        LogConfig {
            retention_ms: 1_500,
            file_delete_delay_ms: 7,
            ..config()
        },
    );
    for ts in [1_000, 2_000, 3_000, 4_000] {
        append(&mut log, ts);
    }
    // The active segment holds offset 3 (ts 4000); 4500 - 3000 = 1500 is not > 1500.
    let retired = pass(&mut log, 4_500);
    assert_eq!(bases(&retired), vec![0, 1]);
    assert!(retired.iter().all(|s| s.breach == RetentionBreach::Time));
    assert!(retired.iter().all(|s| s.delete_delay_ms == 7));
    assert_eq!(log.log_start_offset(), 2);
    assert_eq!(log.log_end_offset(), 4);
    assert!(matches!(
        log.read(1, usize::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(!log.read(2, usize::MAX, true).unwrap().is_empty());
    // Renamed, not yet unlinked; the rest untouched.
    assert_eq!(
        files_ending(log.dir(), ".log.deleted"),
        vec![
            format!("{}.deleted", file_name(0, "log")),
            format!("{}.deleted", file_name(1, "log"))
        ]
    );
    assert_eq!(
        files_ending(log.dir(), ".log"),
        vec![file_name(2, "log"), file_name(3, "log")]
    );
    assert_eq!(retired[0].files.len(), 3);
    for segment in &retired {
        delete_retired_files(&segment.files).unwrap();
    }
    assert!(files_ending(log.dir(), ".deleted").is_empty());
    // Later, the next one goes.
    assert_eq!(bases(&pass(&mut log, 4_501)), vec![2]);
}

/// Kafka rolls the active segment when it breaches too, so that it can go and the log
/// keeps an empty active segment at its end; an empty active segment never goes.
#[test]
fn an_expired_active_segment_is_rolled_then_retired() {
    let tmp = TempDir::new().unwrap();
    let mut log = open(
        &tmp,
        LogConfig {
            segment_bytes: 1 << 20,
            retention_ms: 100,
            ..config()
        },
    );
    assert!(pass(&mut log, i64::MAX).is_empty(), "an empty log retires");
    append(&mut log, 1_000);
    append(&mut log, 1_001);
    assert_eq!(files_ending(log.dir(), ".log"), vec![file_name(0, "log")]);
    assert!(pass(&mut log, 1_101).is_empty(), "not expired yet");
    let retired = pass(&mut log, 1_102);
    assert_eq!(bases(&retired), vec![0]);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 2));
    assert_eq!(files_ending(log.dir(), ".log"), vec![file_name(2, "log")]);
    assert!(log.read(2, usize::MAX, true).unwrap().is_empty());
    // Appends go on at the log end.
    append(&mut log, 5_000);
    assert_eq!(log.log_end_offset(), 3);
    assert!(pass(&mut log, 5_000).is_empty());
}

#[test]
fn size_retention_keeps_at_least_retention_bytes() {
    let tmp = TempDir::new().unwrap();
    let mut log = open(&tmp, config());
    let batch_bytes = append(&mut log, 1_000).len() as i64;
    for ts in [1_001, 1_002, 1_003, 1_004] {
        append(&mut log, ts);
    }
    assert_eq!(log.size_bytes() as i64, 5 * batch_bytes);
    // Two and a half segments' worth: three stay (without the third-oldest the log
    // would be below the bound).
    log.config.retention_bytes = 2 * batch_bytes + batch_bytes / 2;
    let retired = pass(&mut log, 1_004);
    assert_eq!(bases(&retired), vec![0, 1]);
    assert!(retired.iter().all(|s| s.breach == RetentionBreach::Size));
    assert!(retired.iter().all(|s| s.size_bytes as i64 == batch_bytes));
    assert_eq!(log.size_bytes() as i64, 3 * batch_bytes);
    assert_eq!(log.log_start_offset(), 2);
    // Exactly the size of the rest: one more goes (Kafka: size - segment >= retention).
    log.config.retention_bytes = 2 * batch_bytes;
    assert_eq!(bases(&pass(&mut log, 1_004)), vec![2]);
    // 0 empties the log, the active segment included (rolled first).
    log.config.retention_bytes = 0;
    assert_eq!(bases(&pass(&mut log, 1_004)), vec![3, 4]);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 5));
    assert_eq!(log.size_bytes(), 0);
}

/// Only with `delete` in the policy; the settings are read at check time, so a changed
/// config applies at the next check.
#[test]
fn retention_follows_the_current_policy_and_limits() {
    let tmp = TempDir::new().unwrap();
    let mut log = open(
        &tmp,
        LogConfig {
            retention_ms: 10,
            retention_bytes: 0,
            cleanup_policy: CleanupPolicy {
                delete: false,
                compact: true,
            },
            ..config()
        },
    );
    for ts in [1_000, 1_001, 1_002] {
        append(&mut log, ts);
    }
    assert!(pass(&mut log, 1_000_000).is_empty(), "compact only");
    log.config.cleanup_policy.delete = true;
    log.config.retention_bytes = -1;
    log.config.retention_ms = -1;
    assert!(pass(&mut log, 1_000_000).is_empty(), "no limits");
    log.config.retention_ms = 10;
    assert_eq!(bases(&pass(&mut log, 1_012)), vec![0, 1]);
}

/// A segment without a timestamp (all batches at -1) ages from its file's mtime, as
/// Kafka's `largestTimestamp`.
#[test]
fn a_segment_without_timestamps_ages_from_its_file() {
    let tmp = TempDir::new().unwrap();
    let mut log = open(
        &tmp,
        LogConfig {
            retention_ms: 60_000,
            ..config()
        },
    );
    append(&mut log, -1);
    append(&mut log, crate::partition::now_ms());
    let now = crate::partition::now_ms();
    assert!(pass(&mut log, now).is_empty(), "just written");
    assert_eq!(bases(&pass(&mut log, now + 3_600_000)), vec![0, 1]);
}

/// A read planned before the segment went (or its files were unlinked) still reads it.
#[test]
fn reads_planned_before_retirement_still_read() {
    let tmp = TempDir::new().unwrap();
    let mut log = open(
        &tmp,
        LogConfig {
            retention_ms: 0,
            ..config()
        },
    );
    let first = append(&mut log, 1_000);
    append(&mut log, 5_000);
    let plan = log.read_plan(0, i64::MAX, first.len(), true).unwrap();
    let retired = pass(&mut log, 4_000);
    assert_eq!(bases(&retired), vec![0]);
    delete_retired_files(&retired[0].files).unwrap();
    assert_eq!(plan.read().unwrap(), first);
}

/// `*.deleted` files a restart finds are removed; the log then starts at its first
/// segment.
#[test]
fn leftover_deleted_files_go_at_open() {
    let tmp = TempDir::new().unwrap();
    let mut log = open(
        &tmp,
        LogConfig {
            retention_ms: 0,
            ..config()
        },
    );
    for ts in [1_000, 2_000, 3_000] {
        append(&mut log, ts);
    }
    assert_eq!(bases(&pass(&mut log, 2_500)), vec![0, 1]);
    let dir = log.dir().to_path_buf();
    drop(log);
    assert_eq!(files_ending(&dir, ".deleted").len(), 6);
    let log = open(&tmp, config());
    assert!(files_ending(&dir, ".deleted").is_empty());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 3));
}

/// A failed rename is reported and leaves the segment in the log, readable.
#[cfg(feature = "failpoints")]
#[test]
fn a_failed_rename_keeps_the_segment() {
    use crate::log::dir::test_support::ArmedFailpoints;
    let armed = ArmedFailpoints::new();
    let tmp = TempDir::new().unwrap();
    let mut log = open(
        &tmp,
        LogConfig {
            retention_ms: 0,
            ..config()
        },
    );
    let first = append(&mut log, 1_000);
    append(&mut log, 2_000);
    armed.set("log::segment::retire", "1*return(EIO)");
    assert!(matches!(
        log.retire_oldest_segment(1_500),
        Err(LogError::Io(_))
    ));
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.read(0, first.len(), true).unwrap(), first);
    assert_eq!(bases(&pass(&mut log, 1_500)), vec![0]);
}
