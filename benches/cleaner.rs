//! Log cleaner throughput against the machine's physical limit.
//!
//! `cargo bench --bench cleaner` writes a compacted log of `MILLRACE_BENCH_CLEANER_MB`
//! (default 256) MB of 1 KiB values over `MILLRACE_BENCH_CLEANER_KEYS` keys (default
//! 10,000: each key overwritten ~25 times; 1,000,000: nearly every record survives),
//! seals it, then measures (1) a plain copy of its segment files (sequential read +
//! write + fsync: what any rewrite of these bytes must at least cost) and (2) one clean
//! by `millrace::log::cleaner::Cleaner`, which reads the bytes twice (offset map, then
//! rewrite) and writes the survivors. Page cache is dropped for the files
//! (`posix_fadvise(DONTNEED)` after fsync) before each, so both read from the device.
//! Prints MB/s of input and the ratio; nothing is asserted.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use millrace::log::batch::{self, PlainRecord, ProducerIdentity};
use millrace::log::cleaner::{CleanableLog, Cleaner, CleanerConfig};
use millrace::log::{CleanupPolicy, Log, LogConfig};

const VALUE_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 10;

struct BenchLog(Mutex<Log>);

impl CleanableLog for BenchLog {
    fn topic_partition(&self) -> (String, i32) {
        ("bench".to_string(), 0)
    }

    fn with_log(&self, f: &mut dyn FnMut(&mut Log)) {
        f(&mut self.0.lock().unwrap());
    }

    fn producer_last_offsets(&self) -> HashMap<i64, i64> {
        HashMap::new()
    }

    /// No transactions: the whole log is stable.
    fn last_stable_offset(&self) -> i64 {
        self.0.lock().unwrap().log_end_offset()
    }
}

fn log_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// fsync, then ask the kernel to drop the files' cached pages.
fn drop_cache(files: &[std::path::PathBuf]) {
    for path in files {
        let file = File::open(path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: a valid open descriptor; advice only.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
}

fn main() {
    let setting = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let megabytes = setting("MILLRACE_BENCH_CLEANER_MB", 256);
    let keys = setting("MILLRACE_BENCH_CLEANER_KEYS", 10_000) as usize;
    let tmp =
        tempfile::tempdir_in(std::env::var("MILLRACE_BENCH_DIR").unwrap_or("/tmp".into())).unwrap();
    let dir = tmp.path().join("bench-0");
    let config = LogConfig {
        segment_bytes: 64 << 20,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..LogConfig::default()
    };
    let mut log = Log::open(&dir, config).unwrap();
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let mut written: u64 = 0;
    let mut n = 0usize;
    while written < megabytes << 20 {
        let records: Vec<PlainRecord> = (0..RECORDS_PER_BATCH)
            .map(|_| {
                n += 1;
                PlainRecord {
                    key: Some(Bytes::from(format!("key-{:07}", (n * 7919) % keys))),
                    value: Some(value.clone()),
                    timestamp_ms: 1_700_000_000_000,
                }
            })
            .collect();
        let mut bytes = batch::encode_uncompressed(&records, ProducerIdentity::NONE)
            .unwrap()
            .to_vec();
        batch::patch_offset_and_epoch(&mut bytes, log.log_end_offset(), 0);
        let header = batch::validate(&bytes).unwrap();
        log.append(&bytes, &header, 1_700_000_000_000).unwrap();
        written += bytes.len() as u64;
    }
    // One more segment, so that everything written is sealed (cleanable).
    log.flush().unwrap();
    let files = log_files(&dir);
    let input_bytes: u64 = files.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let mb = input_bytes as f64 / 1e6;

    // (1) The physical limit: read every segment and write a copy, fsynced.
    drop_cache(&files);
    let copy_dir = tmp.path().join("copy");
    fs::create_dir_all(&copy_dir).unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    for path in &files {
        let mut from = File::open(path).unwrap();
        let mut to = File::create(copy_dir.join(path.file_name().unwrap())).unwrap();
        loop {
            let n = from.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).unwrap();
        }
        to.sync_all().unwrap();
    }
    let copy_s = started.elapsed().as_secs_f64();
    fs::remove_dir_all(&copy_dir).unwrap();

    // (2) One clean of the same bytes: an append past segment.ms seals the last data
    // segment, so the whole input is the dirty section.
    let rolled = {
        let mut bytes = batch::encode_uncompressed(
            &[PlainRecord {
                key: Some(Bytes::from_static(b"last")),
                value: Some(value.clone()),
                timestamp_ms: 1_700_000_000_000,
            }],
            ProducerIdentity::NONE,
        )
        .unwrap()
        .to_vec();
        batch::patch_offset_and_epoch(&mut bytes, log.log_end_offset(), 0);
        let header = batch::validate(&bytes).unwrap();
        log.append(&bytes, &header, i64::MAX / 2).unwrap();
        Arc::new(BenchLog(Mutex::new(log)))
    };
    drop_cache(&files);
    let mut cleaner = Cleaner::new(
        CleanerConfig {
            enable: true,
            threads: 1,
            io_max_bytes_per_second: f64::MAX,
            dedupe_buffer_bytes: 128 << 20,
            backoff_ms: 15_000,
        },
        tmp.path(),
    );
    let logs: Vec<Arc<dyn CleanableLog>> = vec![rolled.clone()];
    let started = Instant::now();
    assert!(cleaner.clean_filthiest(&logs, 1_700_000_000_000).unwrap());
    let clean_s = started.elapsed().as_secs_f64();
    let stats = cleaner.last_stats;

    println!(
        "input {mb:.0} MB in {} segments; kept {} of {} records ({:.1} MB written)",
        files.len(),
        stats.records_retained,
        stats.records_read,
        stats.bytes_written as f64 / 1e6
    );
    println!(
        "copy (read + write + fsync): {:.0} MB/s; clean: {:.0} MB/s of input; clean/copy = {:.2}",
        mb / copy_s,
        mb / clean_s,
        copy_s / clean_s
    );
}
