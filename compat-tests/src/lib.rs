//! Compatibility test harness: real Kafka clients (librdkafka via rdkafka and kcat,
//! kafka-python, Apache Kafka's own Java CLI tools) against a real broker process over
//! TCP. The broker is millrace (default) or, with `MILLRACE_COMPAT_TARGET=kafka`, a
//! single-node Apache Kafka 4.4.0, the reference every expectation is validated on.
//!
//! Every wait in this crate is a loop on a condition with a deadline; every child
//! process runs in its own process group and is killed on timeout or Drop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod broker;
pub mod matrix;
pub mod netns;
pub mod node;
pub mod process;
pub mod tools;
pub mod wire;

pub use broker::{free_port, millrace_bin, BrokerOpts, Role, Target, TestBroker, TestCluster};
pub use process::ClientProcess;
pub use tools::{
    go_bin, java_program_command, kafka_tool, kafka_tool_command, kcat, python, python_command,
    run_with_timeout, ToolOutput, KAFKA_VERSION,
};

/// `$MILLRACE_CACHE`, default `$HOME/.cache/millrace` (see scripts/install-deps.sh).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("MILLRACE_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache/millrace"),
    }
}

/// Pause between polls of a condition.
pub fn poll_interval() -> Duration {
    Duration::from_millis(100)
}

/// Send `sig` to the process group led by `pgid` (children are spawned as group
/// leaders). Errors (group already gone) are ignored.
pub fn kill_group(pgid: i32, sig: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Poll `cond` until it returns `Some` or `timeout` passes; then panic with `what` and
/// the last state `cond` reported through `Err`.
#[track_caller]
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match cond() {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} ({attempts} attempts) waiting for {what}; last: {last}");
                }
            }
        }
        std::thread::sleep(poll_interval());
    }
}

/// A topic name unique to this process and call, so reruns never collide.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as i64
}
