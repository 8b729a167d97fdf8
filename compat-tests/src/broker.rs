//! `TestBroker`: one broker process (millrace or Apache Kafka) on a free port with a
//! private temp data dir, ready-checked over the wire, killed and cleaned up on Drop.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tools::{kafka_libs, run_with_timeout};
use crate::{kill_group, poll_interval, wire};

/// Which broker implementation the suite drives (env `MILLRACE_COMPAT_TARGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The millrace binary (default).
    Millrace,
    /// A single-node KRaft Apache Kafka 4.4.0 from the jars (the reference behaviour).
    Kafka,
}

impl Target {
    /// Read `MILLRACE_COMPAT_TARGET` (`millrace` when unset).
    pub fn from_env() -> Target {
        match std::env::var("MILLRACE_COMPAT_TARGET").as_deref() {
            Err(_) | Ok("") | Ok("millrace") => Target::Millrace,
            Ok("kafka") => Target::Kafka,
            Ok(other) => {
                panic!("MILLRACE_COMPAT_TARGET={other:?}: expected \"millrace\" or \"kafka\"")
            }
        }
    }
}

/// Broker settings. Names are Kafka's config names on both targets.
#[derive(Debug, Clone)]
pub struct BrokerOpts {
    /// `num.partitions`: partitions of auto-created topics (and the CLI's default).
    pub partitions: u32,
    /// `log.flush.interval.messages`, when set (1 = fsync every message before acking).
    pub flush_interval_messages: Option<u64>,
    /// Any other `key=value` overrides, applied last.
    pub overrides: Vec<(String, String)>,
}

impl Default for BrokerOpts {
    fn default() -> Self {
        BrokerOpts {
            partitions: 1,
            flush_interval_messages: None,
            overrides: Vec::new(),
        }
    }
}

impl BrokerOpts {
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = n;
        self
    }
    pub fn flush_interval_messages(mut self, n: u64) -> Self {
        self.flush_interval_messages = Some(n);
        self
    }
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }

    /// The settings as Kafka config pairs, in application order.
    fn config_pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![("num.partitions".to_string(), self.partitions.to_string())];
        if let Some(n) = self.flush_interval_messages {
            v.push(("log.flush.interval.messages".into(), n.to_string()));
        }
        v.extend(self.overrides.iter().cloned());
        v
    }
}

/// What a millrace cluster node runs (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `broker,controller`: a voter serving clients (KRaft's combined mode).
    Combined,
    /// `controller`: a voter only, no client listener.
    Controller,
    /// `broker`: serves clients, follows the metadata log as a learner (observer).
    Broker,
}

/// A running (or stopped, restartable) broker. Dropping it kills the process group and
/// removes the temp dir.
pub struct TestBroker {
    target: Target,
    opts: BrokerOpts,
    port: u16,
    /// Kafka's KRaft controller listener; for millrace only as a `TestCluster` member.
    controller_port: u16,
    /// Combined except for `TestCluster::start_isolated`'s nodes.
    role: Role,
    /// The address the listeners bind: 127.0.0.1, or the node's in a test `Network`.
    host: String,
    /// The network namespace the process runs in (`ip netns exec`), if any.
    netns: Option<String>,
    dir: TempDir,
    child: Option<Child>,
    /// How many times the process has been started (marks the log on restarts).
    starts: u32,
}

/// Deadline for a broker to become ready (Kafka's JVM start and log recovery included).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Deadline for a graceful shutdown (Kafka's controlled shutdown included).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl TestBroker {
    /// Start the broker selected by `MILLRACE_COMPAT_TARGET` and wait until it serves
    /// ApiVersions and lists itself in Metadata.
    pub fn start(opts: BrokerOpts) -> TestBroker {
        Self::start_target(Target::from_env(), opts)
    }

    /// Start Apache Kafka 4.4.0 whatever `MILLRACE_COMPAT_TARGET` says (differential
    /// tests run the same scenario on both brokers).
    pub fn start_kafka(opts: BrokerOpts) -> TestBroker {
        Self::start_target(Target::Kafka, opts)
    }

    /// Start millrace whatever `MILLRACE_COMPAT_TARGET` says; panics with "build it
    /// first" when the binary is missing.
    pub fn start_millrace(opts: BrokerOpts) -> TestBroker {
        Self::start_target(Target::Millrace, opts)
    }

    /// Start the given implementation and wait until it is ready.
    pub fn start_target(target: Target, opts: BrokerOpts) -> TestBroker {
        // Resolve the binary/jars first so a missing build fails fast and clearly.
        match target {
            Target::Millrace => {
                millrace_bin();
            }
            Target::Kafka => {
                kafka_libs();
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("millrace-compat-")
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("create data dir");
        let port = free_port();
        let controller_port = if target == Target::Kafka {
            loop {
                let p = free_port();
                if p != port {
                    break p;
                }
            }
        } else {
            0
        };
        let mut b = TestBroker {
            target,
            opts,
            port,
            controller_port,
            role: Role::Combined,
            host: "127.0.0.1".to_string(),
            netns: None,
            dir,
            child: None,
            starts: 0,
        };
        if target == Target::Kafka {
            b.kafka_prepare();
        }
        b.spawn_and_wait();
        b
    }

    /// Which implementation this is.
    pub fn target(&self) -> Target {
        self.target
    }

    /// `HOST:PORT` (127.0.0.1 unless in a test `Network`), for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker process's id while it runs (tests read `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.id())
    }

    /// The broker's data directory (`log.dirs`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// Is the broker process still alive?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => match c.try_wait().expect("try_wait") {
                None => true,
                Some(status) => {
                    // Reaped: forget it, so Drop never signals a recycled pid.
                    self.child = None;
                    self.log_marker(&format!("broker process exited on its own: {status}"));
                    false
                }
            },
        }
    }

    /// SIGTERM and wait (bounded) for the process to exit. Panics with the log tail if
    /// it does not exit in time (the process is then SIGKILLed by Drop).
    pub fn stop_graceful(&mut self) {
        let Some(child) = self.child.as_mut() else {
            panic!("stop_graceful: broker is not running");
        };
        let pid = child.id() as i32;
        kill_group(pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                self.log_marker(&format!("exited after SIGTERM: {status}"));
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "broker did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(poll_interval());
        }
    }

    /// SIGKILL the broker's process group (a crash: no shutdown hooks, no flush).
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("kill9: broker is not running");
        };
        kill_group(child.id() as i32, libc::SIGKILL);
        let status = child.wait().expect("wait after SIGKILL");
        self.log_marker(&format!("killed with SIGKILL: {status}"));
    }

    /// Start again on the same port and data dir (after `stop_graceful` or `kill9`; a
    /// running broker is stopped gracefully first) and wait until ready.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop_graceful();
        }
        self.child = None;
        self.spawn_and_wait();
    }

    /// The last 120 lines of the broker's stdout+stderr (all runs), for panic messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(120);
        format!(
            "--- {:?} broker log tail ({}) ---\n{}",
            self.target,
            self.log_path().display(),
            lines[from..].join("\n")
        )
    }

    fn log_marker(&self, what: &str) {
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
        {
            let _ = writeln!(f, "===== millrace-compat harness: {what} =====");
        }
    }

    fn spawn_and_wait(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        self.log_marker(&format!("start #{} on port {}", self.starts, self.port));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open broker log");
        let mut cmd = match self.target {
            Target::Millrace => self.millrace_command(),
            Target::Kafka => self.kafka_command(),
        };
        {
            use std::os::unix::process::CommandExt;
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log fd"))
                .stderr(log)
                // Own process group: Drop/kill9 signal everything the broker spawned.
                .process_group(0);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn broker {cmd:?}: {e}"));
        self.child = Some(child);
    }

    /// What this node runs.
    pub fn role(&self) -> Role {
        self.role
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.bootstrap();
        // A controller-only node speaks no Kafka protocol: ready once its controller
        // listener accepts (it binds that before anything else).
        let controller_only = self.role == Role::Controller;
        let mut last_err = String::from("no attempt yet");
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("try_wait")
            {
                self.child = None;
                panic!(
                    "broker exited during startup ({status}); last probe: {last_err}\n{}",
                    self.log_tail()
                );
            }
            let probe = if controller_only {
                controller_probe(&addr)
            } else {
                wire::api_versions_probe(&addr, Duration::from_secs(2))
                    .and_then(|_| wire::metadata_brokers_probe(&addr, Duration::from_secs(2)))
                    .map(|_| ())
            };
            match probe {
                Ok(_) => return,
                Err(e) => last_err = e,
            }
            if Instant::now() >= deadline {
                panic!(
                    "broker not ready on {addr} within {READY_TIMEOUT:?}; last probe: {last_err}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(poll_interval());
        }
    }

    fn millrace_command(&self) -> Command {
        let host = &self.host;
        let listeners = if self.role == Role::Controller {
            format!("CONTROLLER://{host}:{}", self.controller_port)
        } else if self.controller_port == 0 {
            format!("PLAINTEXT://{host}:{}", self.port)
        } else {
            format!(
                "PLAINTEXT://{host}:{},CONTROLLER://{host}:{}",
                self.port, self.controller_port
            )
        };
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the broker: the child's pid stays the broker's.
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(millrace_bin());
                cmd
            }
            None => Command::new(millrace_bin()),
        };
        cmd.arg("serve")
            .arg("--override")
            .arg(format!("listeners={listeners}"))
            .arg("--override")
            .arg(format!("log.dirs={}", self.data_dir().display()));
        for (k, v) in self.opts.config_pairs() {
            cmd.arg("--override").arg(format!("{k}={v}"));
        }
        // MILLRACE_BROKER_RUST_LOG (e.g. `info,millrace::group=debug`) when debugging.
        let filter = std::env::var("MILLRACE_BROKER_RUST_LOG").unwrap_or_else(|_| "info".into());
        cmd.env("RUST_LOG", filter);
        cmd
    }

    fn kafka_properties_path(&self) -> PathBuf {
        self.dir.path().join("server.properties")
    }

    /// Write server.properties + log4j2 config and format the KRaft storage (once).
    fn kafka_prepare(&mut self) {
        let (p, c) = (self.port, self.controller_port);
        let mut props = vec![
            ("process.roles".to_string(), "broker,controller".to_string()),
            ("node.id".into(), "1".into()),
            (
                "controller.quorum.voters".into(),
                format!("1@127.0.0.1:{c}"),
            ),
            (
                "listeners".into(),
                format!("PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}"),
            ),
            (
                "advertised.listeners".into(),
                format!("PLAINTEXT://127.0.0.1:{p}"),
            ),
            ("controller.listener.names".into(), "CONTROLLER".into()),
            ("inter.broker.listener.name".into(), "PLAINTEXT".into()),
            (
                "listener.security.protocol.map".into(),
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            ),
            ("log.dirs".into(), self.data_dir().display().to_string()),
            ("offsets.topic.replication.factor".into(), "1".into()),
            ("offsets.topic.num.partitions".into(), "1".into()),
            (
                "transaction.state.log.replication.factor".into(),
                "1".into(),
            ),
            ("transaction.state.log.min.isr".into(), "1".into()),
            ("group.initial.rebalance.delay.ms".into(), "0".into()),
            // After kill -9 the restarted broker cannot register until the controller
            // expires the old incarnation's session (default 9 s): keep that short.
            ("broker.session.timeout.ms".into(), "2000".into()),
            ("broker.heartbeat.interval.ms".into(), "500".into()),
        ];
        props.extend(self.opts.config_pairs());
        let mut f = File::create(self.kafka_properties_path()).expect("server.properties");
        for (k, v) in &props {
            writeln!(f, "{k}={v}").expect("write server.properties");
        }
        std::fs::write(self.dir.path().join("log4j2.properties"), BROKER_LOG4J2)
            .expect("write log4j2 config");

        // Static quorum (controller.quorum.voters): `format` without --standalone, which
        // is for the dynamic-quorum (controller.quorum.bootstrap.servers) setup.
        let mut cmd = Command::new("java");
        cmd.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-Xshare:auto"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.path().join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", kafka_libs().display()))
            .arg("kafka.tools.StorageTool")
            .args(["format", "-t", &random_cluster_id(), "-c"])
            .arg(self.kafka_properties_path());
        let out = run_with_timeout(cmd, None, Duration::from_secs(120));
        assert!(
            out.status.success() && out.stdout.contains("Formatting"),
            "kafka storage format failed: {}",
            out.describe()
        );
    }

    fn kafka_command(&self) -> Command {
        let mut cmd = Command::new("java");
        cmd.args(["-Xmx512m", "-Xshare:auto"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.path().join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", kafka_libs().display()))
            .arg("kafka.Kafka")
            .arg(self.kafka_properties_path());
        cmd
    }
}

/// Several millrace processes forming one cluster: nodes 1..=n, each with its own free
/// client and controller ports and temp dir. Combined (broker,controller) nodes by
/// default, all of them voters; `start_isolated` runs Kafka's isolated mode. Dropping it
/// kills every node and removes the dirs.
pub struct TestCluster {
    pub nodes: Vec<TestBroker>,
}

impl TestCluster {
    /// Starts `n` nodes at once (a fresh quorum needs a majority up before any node is
    /// ready) and waits until each serves and lists itself. `opts` apply to every node.
    pub fn start_millrace(n: usize, opts: BrokerOpts) -> TestCluster {
        Self::start(&vec![Role::Combined; n], opts, None)
    }

    /// Starts one node per namespace of `network`, each on its own address there.
    /// Drop the cluster before the network (declare the network first).
    pub fn start_millrace_in(network: &crate::netns::Network, opts: BrokerOpts) -> TestCluster {
        let roles = vec![Role::Combined; network.nodes() as usize];
        Self::start(&roles, opts, Some(network))
    }

    /// Kafka's isolated mode: nodes 1..=controllers are controller-only voters, the next
    /// `brokers` nodes broker-only, finding the quorum through
    /// `controller.quorum.bootstrap.servers`. Waits until the controllers listen and
    /// each broker serves and lists itself.
    pub fn start_isolated(controllers: usize, brokers: usize, opts: BrokerOpts) -> TestCluster {
        let mut roles = vec![Role::Controller; controllers];
        roles.extend(vec![Role::Broker; brokers]);
        Self::start(&roles, opts, None)
    }

    fn start(
        roles: &[Role],
        opts: BrokerOpts,
        network: Option<&crate::netns::Network>,
    ) -> TestCluster {
        millrace_bin();
        let n = roles.len();
        let host = |id: usize| match network {
            Some(network) => network.host(id as i32),
            None => "127.0.0.1".to_string(),
        };
        let mut ports = std::collections::BTreeSet::new();
        while ports.len() < 2 * n {
            ports.insert(free_port());
        }
        let ports: Vec<u16> = ports.into_iter().collect();
        let voter_nodes: Vec<usize> = (0..n).filter(|i| roles[*i] != Role::Broker).collect();
        let voters = voter_nodes
            .iter()
            .map(|i| format!("{}@{}:{}", i + 1, host(i + 1), ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let bootstrap_controllers = voter_nodes
            .iter()
            .map(|i| format!("{}:{}", host(i + 1), ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<TestBroker> = (0..n)
            .map(|i| {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("millrace-cluster-node{}-", i + 1))
                    .tempdir()
                    .expect("create temp dir");
                std::fs::create_dir_all(dir.path().join("data")).expect("create data dir");
                let mut node_opts = opts.clone();
                let (process_roles, quorum) = match roles[i] {
                    Role::Combined => ("broker,controller", "controller.quorum.voters"),
                    Role::Controller => ("controller", "controller.quorum.voters"),
                    Role::Broker => ("broker", "controller.quorum.bootstrap.servers"),
                };
                let quorum_value = if roles[i] == Role::Broker {
                    bootstrap_controllers.clone()
                } else {
                    voters.clone()
                };
                let node = [
                    ("node.id", (i + 1).to_string()),
                    ("process.roles", process_roles.to_string()),
                    (quorum, quorum_value),
                    ("controller.listener.names", "CONTROLLER".to_string()),
                ];
                // The node's identity first: the caller's overrides (timings) come after.
                node_opts.overrides = node
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .chain(opts.overrides.iter().cloned())
                    .collect();
                let (port, controller_port) = match roles[i] {
                    // Its only port: the controller listener (also names its kept log).
                    Role::Controller => (ports[2 * i + 1], ports[2 * i + 1]),
                    Role::Broker => (ports[2 * i], 0),
                    Role::Combined => (ports[2 * i], ports[2 * i + 1]),
                };
                TestBroker {
                    target: Target::Millrace,
                    opts: node_opts,
                    port,
                    controller_port,
                    role: roles[i],
                    host: host(i + 1),
                    netns: network.map(|network| network.namespace(i as i32 + 1).to_string()),
                    dir,
                    child: None,
                    starts: 0,
                }
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        for node in &mut nodes {
            node.wait_ready();
        }
        TestCluster { nodes }
    }

    /// Every broker's client address, comma-separated, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|node| node.role != Role::Controller)
            .map(TestBroker::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id` (node ids are 1..=n).
    pub fn node(&mut self, id: i32) -> &mut TestBroker {
        let index = usize::try_from(id - 1).expect("node ids start at 1");
        &mut self.nodes[index]
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id() as i32, libc::SIGKILL);
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // The test is failing: the broker log is the first thing to look at.
            eprintln!("{}", self.log_tail());
        }
        // The whole log outlives the temp dir when MILLRACE_COMPAT_KEEP_LOGS names a dir
        // (a flaky test's passing runs are worth comparing with its failures).
        if let Some(dir) = std::env::var_os("MILLRACE_COMPAT_KEEP_LOGS") {
            let to = PathBuf::from(dir).join(format!("broker-{}.log", self.port));
            match std::fs::copy(self.log_path(), &to) {
                Ok(_) => eprintln!("broker log kept at {}", to.display()),
                Err(e) => eprintln!("cannot keep the broker log at {}: {e}", to.display()),
            }
        }
        // TempDir's own Drop removes the data dir and logs.
    }
}

/// The Kafka broker logs at INFO to stdout (captured in broker.log by the harness).
const BROKER_LOG4J2: &str = "\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
";

/// A controller-only node is up once its controller listener accepts.
fn controller_probe(addr: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addr = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{addr} does not resolve"))?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map(|_| ())
        .map_err(|e| format!("controller listener {addr}: {e}"))
}

/// A free TCP port on 127.0.0.1 (bind :0, read the port, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars),
/// never starting with '-' (kafka-storage's argument parser would take `-t -xyz` for an
/// option; Kafka's own Uuid.randomUuid skips such ids too).
fn random_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    // The first character encodes the top 6 bits: below 32 it is one of A-Z, a-f.
    bytes[0] &= 0x7f;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// The millrace binary: `MILLRACE_BIN`, else `<target>/debug/millrace` next to the test
/// executable (`<target>/debug/deps/<test>-<hash>`). Panics with build instructions.
pub fn millrace_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MILLRACE_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "MILLRACE_BIN={} does not exist: build it first: cargo build --bin millrace",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("millrace"))
        .unwrap_or_else(|| PathBuf::from("millrace"));
    assert!(
        candidate.is_file(),
        "millrace binary not found at {}: build it first: cargo build --bin millrace \
         (or set MILLRACE_BIN, or MILLRACE_COMPAT_TARGET=kafka to run against Apache Kafka)",
        candidate.display()
    );
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "build it first: cargo build --bin millrace")]
    fn missing_millrace_binary_says_build_it_first() {
        // Only this unit-test process sees the variable.
        std::env::set_var("MILLRACE_BIN", "/nonexistent/millrace");
        millrace_bin();
    }

    #[test]
    fn cluster_id_is_22_url_safe_chars() {
        let id = random_cluster_id();
        assert_eq!(id.len(), 22, "{id}");
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(id, random_cluster_id());
        for _ in 0..1000 {
            assert!(!random_cluster_id().starts_with('-'));
        }
    }

    #[test]
    fn overrides_come_last() {
        let o = BrokerOpts::default()
            .partitions(3)
            .flush_interval_messages(1)
            .set("message.max.bytes", "2000000");
        assert_eq!(
            o.config_pairs(),
            vec![
                ("num.partitions".to_string(), "3".to_string()),
                ("log.flush.interval.messages".into(), "1".into()),
                ("message.max.bytes".into(), "2000000".into()),
            ]
        );
    }
}
