//! Running the real client tools (kcat, kafka-python scripts, Apache Kafka's Java CLI
//! tools) as child processes, each bounded by a timeout and killed (whole process
//! group) if it overruns.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{cache_dir, kill_group, poll_interval};

/// What a tool printed and how it exited.
#[derive(Debug)]
pub struct ToolOutput {
    /// The command line, for messages.
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// Panic with the full output unless the tool exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "command failed: {}", self.describe());
        self
    }

    /// Human-readable dump (command, status, stdout/stderr tails).
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited {}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.cmdline,
            self.status,
            tail_chars(&self.stdout, 4000),
            tail_chars(&self.stderr, 4000)
        )
    }
}

fn tail_chars(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Run `cmd` with `stdin` fed to it, killing its process group after `timeout`.
/// Panics (with whatever output was collected) on timeout or spawn failure; a non-zero
/// exit is returned, not a panic, so tests can assert on failures too.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> ToolOutput {
    use std::os::unix::process::CommandExt;
    let cmdline = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // Own process group so a timeout kill takes any grandchildren with it.
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmdline}: {e}"));
    let pid = child.id() as i32;

    // Feed stdin and drain stdout/stderr on threads so no pipe can fill up and block.
    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().expect("stdin pipe");
        std::thread::spawn(move || {
            // The tool may exit early (e.g. on an error): a broken pipe is not ours to report.
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => break st,
            None if Instant::now() >= deadline => {
                timed_out = true;
                kill_group(pid, libc::SIGKILL);
                break child.wait().expect("wait after kill");
            }
            None => std::thread::sleep(poll_interval()),
        }
    };
    // No group kill after a normal exit: once reaped, the pid (and so the group id)
    // could belong to someone else. The tools used here do not leave children behind.
    if let Some(w) = writer {
        let _ = w.join();
    }
    let out = ToolOutput {
        cmdline,
        status,
        stdout: String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned(),
    };
    assert!(
        !timed_out,
        "timed out after {timeout:?}: {}",
        out.describe()
    );
    out
}

/// Debian's `kcat` (librdkafka 2.0.2 inside). 120 s timeout.
pub fn kcat(args: &[&str], stdin: Option<&[u8]>) -> ToolOutput {
    let mut cmd = Command::new("kcat");
    cmd.args(args);
    system_librdkafka(&mut cmd);
    run_with_timeout(cmd, stdin, Duration::from_secs(120))
}

/// Makes `cmd` load Debian's librdkafka: `cargo test` puts the build directory of the
/// rdkafka crate's bundled librdkafka on LD_LIBRARY_PATH, and kcat would load that one.
pub fn system_librdkafka(cmd: &mut Command) {
    cmd.env_remove("LD_LIBRARY_PATH");
}

/// Path of the kafka-python venv's interpreter (`$MILLRACE_CACHE/venv/bin/python`).
pub fn python_bin() -> PathBuf {
    cache_dir().join("venv/bin/python")
}

/// Run `compat-tests/python/<script>` with the venv's Python. 120 s timeout.
pub fn python(script: &str, args: &[&str]) -> ToolOutput {
    run_with_timeout(python_command(script, args), None, Duration::from_secs(120))
}

/// A Go program built by scripts/install-deps.sh (`$MILLRACE_CACHE/go-bin/<name>`).
pub fn go_bin(name: &str) -> PathBuf {
    let bin = cache_dir().join("go-bin").join(name);
    assert!(
        bin.exists(),
        "{} missing: run scripts/install-deps.sh",
        bin.display()
    );
    bin
}

/// The Apache Kafka release whose jars (clients, CLI tools, broker, Streams) the suite
/// runs: `kafka.version` in compat-tests/java/pom.xml.
pub const KAFKA_VERSION: &str = "4.4.0";

/// The directory holding Apache Kafka's jars (`KAFKA_VERSION`).
pub fn kafka_libs() -> PathBuf {
    let dir = cache_dir().join("kafka-libs");
    let clients = format!("kafka-clients-{KAFKA_VERSION}.jar");
    assert!(
        dir.join(&clients).exists(),
        "{clients} missing in {}: run scripts/install-deps.sh",
        dir.display()
    );
    dir
}

/// log4j2 configuration for the CLI tools: WARN and above, to stderr only, so that
/// stdout carries nothing but the tool's own output (console consumer lines, topic lists).
const TOOLS_LOG4J2: &str = "\
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
";

/// Run one of Apache Kafka's tools (`java -cp "<kafka-libs>/*" <main_class> args...`)
/// with a small, fast-starting JVM. 180 s timeout.
pub fn kafka_tool(main_class: &str, args: &[&str], stdin: Option<&[u8]>) -> ToolOutput {
    let (cmd, _dir) = kafka_tool_command(main_class, args);
    run_with_timeout(cmd, stdin, Duration::from_secs(180))
}

/// The command `kafka_tool` runs, for long-lived tools (e.g. a console consumer kept as
/// a group member): keep the returned temp dir (log4j2 config) alive with the process.
pub fn kafka_tool_command(main_class: &str, args: &[&str]) -> (Command, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let log4j = dir.path().join("log4j2-tools.properties");
    std::fs::write(&log4j, TOOLS_LOG4J2).expect("write log4j2 config");
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xmx256m",
        // C1 only: these tools run for seconds, full JIT warm-up is wasted work.
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
    ])
    .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
    .arg("-cp")
    .arg(format!("{}/*", kafka_libs().display()))
    .arg(main_class)
    .args(args);
    (cmd, dir)
}

/// `java` running `main_class` of one of the compat tests' own Java programs (compiled by
/// scripts/install-deps.sh into `$MILLRACE_CACHE/java/<program>/classes`) on the Kafka
/// jars, with a small JVM and WARN+ logging to stderr (`java/log4j2-clients.properties`).
pub fn java_program_command(program: &str, main_class: &str, xmx: &str) -> Command {
    let classes = cache_dir().join("java").join(program).join("classes");
    assert!(
        classes.join(format!("{main_class}.class")).exists(),
        "{main_class} not compiled in {}: run scripts/install-deps.sh",
        classes.display()
    );
    let log4j = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/log4j2-clients.properties");
    let mut cmd = Command::new("java");
    cmd.arg(format!("-Xmx{xmx}"))
        .args(["-XX:+UseSerialGC", "-Xshare:auto"])
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!(
            "{}:{}/*",
            classes.display(),
            kafka_libs().display()
        ))
        .arg(main_class);
    cmd
}

/// The command `python` runs (venv interpreter, unbuffered), for long-lived scripts.
pub fn python_command(script: &str, args: &[&str]) -> Command {
    let bin = python_bin();
    assert!(
        bin.exists(),
        "{} missing: run scripts/install-deps.sh",
        bin.display()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let mut cmd = Command::new(bin);
    cmd.arg(path).args(args).env("PYTHONUNBUFFERED", "1");
    cmd
}
