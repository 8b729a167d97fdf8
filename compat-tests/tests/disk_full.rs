//! Disk full: the broker's log directory is on a small tmpfs. Idempotent acks=all
//! producers and a committing consumer group run until the disk is full; the broker must
//! stop on its own (fail-stop: one ERROR line naming the directory, a non-zero exit)
//! without acknowledging anything it could not write. The test frees space (removes its
//! filler file and grows the filesystem), restarts the broker on the same directory,
//! resumes the load, and reads everything back: no acknowledged record lost, none stored
//! twice, committed offsets never behind an acknowledged commit.
//!
//! Needs root to mount the tmpfs (CI runs as root); fails with a clear message otherwise.
//! Millrace only: it checks millrace's log line and exit status (Kafka halts with 1).

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::admin_create;
use common::durability::{check_commits_not_behind, check_read_back, Load};
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestBroker};

const PARTITIONS: i32 = 4;
const TMPFS_SIZE: &str = "64m";
/// What the tmpfs grows to once the test frees space: more than the load can write
/// (including what the producers queued while the broker was down) before the resumed
/// load is checked, so that the disk does not fill up again under it.
const GROWN_TMPFS_SIZE: &str = "2g";
/// Free space left when the filler is written: the load fills it within seconds.
const HEADROOM_BYTES: u64 = 4 << 20;

/// A tmpfs mounted for the test, unmounted (lazily, in case something still holds it)
/// on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    mount_point: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "disk_full needs root to mount a tmpfs (running as uid {euid}); run the compat \
             tests as root (CI does) or in a container"
        );
        let dir = tempfile::Builder::new()
            .prefix("millrace-diskfull-")
            .tempdir()
            .expect("mount point");
        let mount_point = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount_point)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {}: {}",
            mount_point.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            _dir: dir,
            mount_point,
        }
    }

    /// Frees space the way an operator would: a larger filesystem under the same files.
    fn grow(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.mount_point)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot grow the tmpfs at {}: {}",
            self.mount_point.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn free_bytes(&self) -> u64 {
        let path = std::ffi::CString::new(self.mount_point.as_os_str().as_encoded_bytes())
            .expect("path without NUL");
        // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
        unsafe {
            let mut stat: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut stat), 0, "statvfs");
            stat.f_bavail as u64 * stat.f_frsize as u64
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}

/// Writes a `bytes`-long filler file at `path`, or less if the broker's load fills the
/// filesystem first (full is what the test is after).
fn write_filler(path: &Path, bytes: u64) {
    let mut f = File::create(path).expect("create filler");
    let chunk = vec![0xa5u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        match f.write_all(&chunk[..n]) {
            Ok(()) => left -= n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("write filler: {e}"),
        }
    }
}

#[test]
fn disk_full_stops_the_broker_and_loses_or_duplicates_nothing() {
    let t0 = Instant::now();
    // Declared first so it is unmounted after the broker (dropped later) is killed.
    let tmpfs = Tmpfs::mount(TMPFS_SIZE);
    let data_dir = tmpfs.mount_point.join("data");
    let mut broker = TestBroker::start_millrace(
        BrokerOpts::default()
            .partitions(PARTITIONS as u32)
            .flush_interval_messages(1)
            .set("log.dirs", &data_dir.display().to_string())
            .set("log.segment.bytes", "1048576")
            .set("group.initial.rebalance.delay.ms", "0"),
    );
    let b = broker.bootstrap();
    let topic = unique_topic("disk-full");
    let group = format!("{topic}-group");
    admin_create(&b, &topic, PARTITIONS);
    let load = Load::start(&b, &topic, &group, 2);
    wait_until("first acks", Duration::from_secs(60), || {
        let (acked, commits) = (load.acked(), load.commits_acked());
        if acked >= 2_000 && commits > 0 {
            Ok(())
        } else {
            Err(format!("{acked} acked, {commits} commits acked"))
        }
    });

    let filler = tmpfs.mount_point.join("filler");
    write_filler(&filler, tmpfs.free_bytes().saturating_sub(HEADROOM_BYTES));
    eprintln!(
        "disk_full: filler written at {:?}, {} bytes free",
        t0.elapsed(),
        tmpfs.free_bytes()
    );
    wait_until(
        "the broker to stop on its own once the disk is full",
        Duration::from_secs(60),
        || {
            if broker.is_running() {
                Err(format!(
                    "{} acked, {} bytes free",
                    load.acked(),
                    tmpfs.free_bytes()
                ))
            } else {
                Ok(())
            }
        },
    );
    let stopped_at = t0.elapsed();
    let acked_when_stopped = load.acked();
    let acked_commits = load.acked_commits();
    let log = broker.log_tail();
    let error_lines: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(
        error_lines.len(),
        1,
        "expected exactly one ERROR line ('log directory ... is offline')\n{log}"
    );
    assert!(
        error_lines[0].contains("is offline")
            && error_lines[0].contains(&data_dir.display().to_string())
            && error_lines[0].contains("No space left on device"),
        "the ERROR line must name the directory and the error: {}",
        error_lines[0]
    );
    assert!(
        log.contains("exited on its own: exit status: 3"),
        "expected exit status 3 (log directory offline)\n{log}"
    );

    // The producers are faster than a restart: the filler's space alone fills again
    // within a second, so the filesystem grows too.
    std::fs::remove_file(&filler).expect("remove filler");
    tmpfs.grow(GROWN_TMPFS_SIZE);
    let restart = Instant::now();
    broker.restart();
    let restart_took = restart.elapsed();
    check_commits_not_behind(&b, &group, &topic, PARTITIONS, &acked_commits);
    let commits_before = load.commits_acked();
    wait_until("the load to resume", Duration::from_secs(60), || {
        let (acked, commits) = (load.acked(), load.commits_acked());
        if acked >= acked_when_stopped + 2_000 && commits > commits_before {
            Ok(())
        } else {
            Err(format!("{acked} acked, {commits} commits acked"))
        }
    });
    let acked_commits = load.acked_commits();
    let outcome = load.finish();
    check_commits_not_behind(&b, &group, &topic, PARTITIONS, &acked_commits);
    let stored = check_read_back(&b, &topic, &outcome);
    eprintln!(
        "disk_full: stopped at {stopped_at:?} with {acked_when_stopped} acked; restart took \
         {restart_took:?}; {} sent, {} acked, {} failed reports, {stored} stored, {} commits \
         acked; total {:?}",
        outcome.sent,
        outcome.acked.len(),
        outcome.failed_reports,
        outcome.commits_acked,
        t0.elapsed()
    );
}
