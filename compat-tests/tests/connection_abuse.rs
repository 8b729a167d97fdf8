//! Connection abuse: idle sockets by the thousand, frames that claim 100 MiB and never
//! arrive, a client that pipelines large fetches and never reads, connections over
//! `max.connections.per.ip` / `max.connections`, and CreateTopics past Kafka's bounds.
//! Through all of it a well-behaved rdkafka producer must keep getting acks, and the
//! broker's memory must stay under the bound the README states.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{admin_create, flush_all_ok, producer, send};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use millrace_compat_tests::wire::{encode_request, Connection};
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestBroker};
use rdkafka::producer::BaseRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The README's bound on broker RSS under this test's abuse (5,000 idle sockets, 100
/// partial 100 MiB frames, one stalled fetch pipeliner). Before the bounds the
/// pipeliner alone took the broker past 400 MiB.
const RSS_BOUND_BYTES: u64 = 256 << 20;
/// Partial frames must not reserve what they claim: the address space may grow by far
/// less than the 10 GiB the 100 frames announce.
const PARTIAL_FRAMES_VM_GROWTH_BOUND_BYTES: u64 = 2 << 30;
const IDLE_SOCKETS: usize = 5_000;
const IDLE_SOCKETS_PER_WAVE: usize = 250;
/// How far the test's connects may run ahead of the broker's accepts.
const MAX_UNACCEPTED_SOCKETS: usize = 512;
const PARTIAL_FRAMES: usize = 100;
const CLAIMED_FRAME_BYTES: u32 = 100 << 20;

/// The broker's `VmRSS` and `VmSize`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmSize:"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// As the broker does at start: the soft open-file limit up to the hard one.
fn raise_own_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fetch of the whole topic that parks for its 2 s `max_wait_ms` first (its
/// `min_bytes` is more than the topic holds), so that pipelined ones are all in progress
/// at once and complete together.
fn fetch_frame(topic: &str, correlation_id: i32) -> Vec<u8> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(2_000)
        .with_min_bytes(50 << 20)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(50 << 20)])]);
    encode_request(ApiKey::Fetch, &request, 11, correlation_id)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Sends one canary message at a time for `window`, returning each ack's latency.
fn canary_latencies(
    canary: &rdkafka::producer::ThreadedProducer<common::Recorder>,
    recorder: &common::Recorder,
    topic: &str,
    first_id: usize,
    window: Duration,
    mut between: impl FnMut(),
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let end = Instant::now() + window;
    let mut id = first_id;
    while Instant::now() < end {
        let value = format!("canary-{id}");
        let sent = Instant::now();
        send(
            canary,
            BaseRecord::with_opaque_to(topic, id).payload(value.as_bytes()),
        );
        id += 1;
        // Ack latency is the quantity measured: poll finely, not at the harness's
        // 100 ms interval.
        while recorder.count() < id {
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "canary message {id} not acked in 30 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(sent.elapsed());
        between();
    }
    latencies
}

#[test]
fn idle_sockets_partial_frames_and_a_stalled_reader_are_bounded() {
    let nofile = raise_own_nofile_limit();
    assert!(
        nofile as usize > IDLE_SOCKETS + PARTIAL_FRAMES + 500,
        "RLIMIT_NOFILE hard limit {nofile} is too low for {IDLE_SOCKETS} sockets"
    );
    // The stall limit is connections.max.idle.ms: short, but longer than the window below.
    let idle_ms = 15_000u64;
    let broker = TestBroker::start(
        BrokerOpts::default().set("connections.max.idle.ms", &idle_ms.to_string()),
    );
    let addr = broker.bootstrap();
    let pid = broker.pid().expect("broker pid");
    let canary_topic = unique_topic("canary");
    let fat_topic = unique_topic("fat");
    admin_create(&addr, &canary_topic, 1);
    admin_create(&addr, &fat_topic, 1);

    // 4 MiB in the topic the stalled client fetches: every fetch answer carries all of it.
    let (filler, filler_rec) = producer(&addr, &[("linger.ms", "50")]);
    let payload = vec![b'x'; 64 * 1024];
    for i in 0..64 {
        send(
            &filler,
            BaseRecord::with_opaque_to(&fat_topic, i).payload(&payload[..]),
        );
    }
    flush_all_ok(&filler, &filler_rec, 64);
    drop(filler);

    let (canary, canary_rec) = producer(&addr, &[("linger.ms", "0")]);
    let warmup = canary_latencies(
        &canary,
        &canary_rec,
        &canary_topic,
        0,
        Duration::from_secs(1),
        || {},
    );
    let mut sent = warmup.len();
    let (base_rss, _) = memory(pid);

    let rt = runtime();
    let socket_addr: SocketAddr = addr.parse().unwrap();
    let opened = Instant::now();
    let base_fds = open_fds(pid);
    // In waves, never more than half the listen backlog (1024) ahead of the broker's
    // accepts: past a full accept queue the kernel drops handshakes (with syncookies, for
    // good, while the client believes it is connected), which would test the kernel on a
    // loaded machine, not the broker.
    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE_SOCKETS);
    while idle.len() < IDLE_SOCKETS {
        let wave = IDLE_SOCKETS_PER_WAVE.min(IDLE_SOCKETS - idle.len());
        rt.block_on(async {
            for _ in 0..wave {
                idle.push(TcpStream::connect(socket_addr).await.expect("idle connect"));
            }
        });
        let behind_at_most = idle.len().saturating_sub(MAX_UNACCEPTED_SOCKETS);
        wait_until(
            "the broker to keep up with the idle sockets",
            Duration::from_secs(30),
            || {
                let accepted = open_fds(pid).saturating_sub(base_fds);
                (accepted >= behind_at_most)
                    .then_some(())
                    .ok_or(format!("{accepted} of {} accepted", idle.len()))
            },
        );
    }
    wait_until(
        "the broker to accept every idle socket",
        Duration::from_secs(30),
        || {
            let fds = open_fds(pid);
            (fds >= IDLE_SOCKETS)
                .then_some(())
                .ok_or(format!("{fds} open descriptors"))
        },
    );
    eprintln!(
        "{IDLE_SOCKETS} idle sockets accepted in {:?}",
        opened.elapsed()
    );

    let (_, vm_before_partial) = memory(pid);
    let partial: Vec<TcpStream> = rt.block_on(async {
        let mut partial = Vec::with_capacity(PARTIAL_FRAMES);
        for _ in 0..PARTIAL_FRAMES {
            let mut s = TcpStream::connect(socket_addr)
                .await
                .expect("partial connect");
            let mut head = CLAIMED_FRAME_BYTES.to_be_bytes().to_vec();
            head.extend_from_slice(&[0, 18, 0, 3, 0, 0]);
            s.write_all(&head).await.expect("partial frame head");
            partial.push(s);
        }
        partial
    });

    // 200 pipelined fetches of the 4 MiB topic, read slowly (64 KiB every 50 ms) for a
    // few seconds, then not at all: a broker without a response bound takes them all in
    // and holds every answer (800 MiB) while the first ones trickle out, and without a
    // write stall limit it keeps the connection forever once the client stops reading.
    let mut stalled = std::net::TcpStream::connect(socket_addr).expect("stalled reader connect");
    let fetches: Vec<u8> = (0..200).flat_map(|i| fetch_frame(&fat_topic, i)).collect();
    stalled.write_all(&fetches).expect("pipelined fetches");
    stalled
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let stalled_peer = stalled.local_addr().unwrap().to_string();
    let slow_reads_until = Instant::now() + Duration::from_secs(4);
    let mut last_read = Instant::now();
    let mut chunk = vec![0u8; 64 * 1024];

    let mut max_rss = 0u64;
    let mut max_vm = 0u64;
    let mut sample = || {
        let (rss, vm) = memory(pid);
        max_rss = max_rss.max(rss);
        max_vm = max_vm.max(vm);
        if Instant::now() < slow_reads_until && last_read.elapsed() >= Duration::from_millis(50) {
            last_read = Instant::now();
            let _ = stalled.read(&mut chunk);
        }
    };
    let mut latencies = canary_latencies(
        &canary,
        &canary_rec,
        &canary_topic,
        sent,
        Duration::from_secs(6),
        &mut sample,
    );
    sample();
    sent += latencies.len();
    latencies.sort();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let vm_growth = max_vm.saturating_sub(vm_before_partial);
    eprintln!(
        "canary under abuse: {} acks, p50 {p50:?}, p99 {p99:?}, max {:?}; broker RSS \
         {} MiB before, max {} MiB during; address space +{} MiB after the partial frames",
        latencies.len(),
        latencies.last().unwrap(),
        base_rss >> 20,
        max_rss >> 20,
        vm_growth >> 20
    );
    assert!(
        max_rss < RSS_BOUND_BYTES,
        "broker RSS {} MiB over the bound {} MiB",
        max_rss >> 20,
        RSS_BOUND_BYTES >> 20
    );
    assert!(
        vm_growth < PARTIAL_FRAMES_VM_GROWTH_BOUND_BYTES,
        "the partial frames grew the address space by {} MiB: claimed sizes reserved",
        vm_growth >> 20
    );
    assert!(
        latencies.len() >= 20,
        "only {} canary acks",
        latencies.len()
    );
    assert!(p99 < Duration::from_secs(1), "canary p99 {p99:?}");

    // The stalled client is dropped for lack of write progress (no read on our side
    // since the slow phase: reading would be progress).
    let started = Instant::now();
    wait_until(
        "the stalled reader to be closed by the write stall limit",
        Duration::from_millis(idle_ms + 15_000),
        || {
            let log = broker.log_tail();
            log.lines()
                .any(|line| line.contains(&stalled_peer) && line.contains("no write progress"))
                .then_some(())
                .ok_or_else(|| "no close logged yet".to_string())
        },
    );
    eprintln!(
        "stalled reader closed {:?} after the canary window",
        started.elapsed()
    );
    // Its connection really is gone: reading now ends in EOF or a reset after the bytes
    // the kernel had buffered.
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the stalled connection is still open"
        );
        match stalled.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the stalled connection is still open: no bytes, no EOF")
            }
            Err(_) => break,
        }
    }

    drop(idle);
    drop(partial);
    let after = canary_latencies(
        &canary,
        &canary_rec,
        &canary_topic,
        sent,
        Duration::from_millis(500),
        || {},
    );
    flush_all_ok(&canary, &canary_rec, sent + after.len());
}

/// What a fresh connection's ApiVersions request got.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Answered,
    Closed,
    Silent,
}

async fn connect_from(source: &str, broker: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{source}:0").parse().unwrap())
        .expect("bind a loopback source address");
    tokio::time::timeout(Duration::from_secs(5), socket.connect(broker))
        .await
        .expect("connect timed out")
        .expect("connect")
}

async fn probe(s: &mut TcpStream, wait: Duration) -> Probe {
    let request = encode_request(ApiKey::ApiVersions, &ApiVersionsRequest::default(), 0, 1);
    if s.write_all(&request).await.is_err() {
        return Probe::Closed;
    }
    let mut size = [0u8; 4];
    match tokio::time::timeout(wait, s.read_exact(&mut size)).await {
        Err(_) => Probe::Silent,
        Ok(Ok(_)) => Probe::Answered,
        Ok(Err(_)) => Probe::Closed,
    }
}

#[test]
fn connection_counts_are_bounded_per_ip_and_broker_wide() {
    // Sources other than 127.0.0.1, which the harness's probes use.
    let (a, b, c) = ("127.0.0.11", "127.0.0.12", "127.0.0.13");
    let broker = TestBroker::start(
        BrokerOpts::default()
            .set("max.connections", "6")
            .set("max.connections.per.ip", "2")
            .set("max.connections.per.ip.overrides", &format!("{b}:3")),
    );
    let addr: SocketAddr = broker.bootstrap().parse().unwrap();
    let answer = Duration::from_secs(10);
    let rt = runtime();
    rt.block_on(async {
        // Per ip: the third connection from `a` is closed at once.
        let mut a1 = connect_from(a, addr).await;
        let mut a2 = connect_from(a, addr).await;
        assert_eq!(probe(&mut a1, answer).await, Probe::Answered);
        assert_eq!(probe(&mut a2, answer).await, Probe::Answered);
        let mut a3 = connect_from(a, addr).await;
        assert_eq!(
            probe(&mut a3, answer).await,
            Probe::Closed,
            "third from {a}"
        );
        // The bound releases when one closes (the broker notices the EOF first).
        drop(a1);
        let deadline = Instant::now() + answer;
        let mut a4 = loop {
            let mut s = connect_from(a, addr).await;
            match probe(&mut s, answer).await {
                Probe::Answered => break s,
                other => assert!(
                    Instant::now() < deadline,
                    "no slot for {a} after a close: {other:?}"
                ),
            }
        };
        // The override for `b` allows three.
        let mut b_conns = Vec::new();
        for _ in 0..3 {
            let mut s = connect_from(b, addr).await;
            assert_eq!(
                probe(&mut s, answer).await,
                Probe::Answered,
                "override for {b}"
            );
            b_conns.push(s);
        }
        let mut b4 = connect_from(b, addr).await;
        assert_eq!(
            probe(&mut b4, answer).await,
            Probe::Closed,
            "fourth from {b}"
        );

        // Broker-wide: 2 + 3 = 5 open, so one more from `c` is served and the next waits
        // unaccepted (Kafka's acceptor blocks), neither answered nor closed. (Should a
        // harness probe connection still be counted, the first one already waits.)
        let mut c_conns = Vec::new();
        let mut c_waiting = loop {
            let mut s = connect_from(c, addr).await;
            match probe(&mut s, Duration::from_secs(2)).await {
                Probe::Answered => c_conns.push(s),
                Probe::Silent => break s,
                Probe::Closed => panic!("a connection from {c} was closed"),
            }
            assert!(c_conns.len() <= 1, "more than max.connections=6 served");
        };
        // One closes: the waiting connection is accepted and its request answered.
        drop(b_conns.pop());
        let mut size_rest = [0u8; 4];
        let got = tokio::time::timeout(answer, c_waiting.read_exact(&mut size_rest)).await;
        assert!(
            matches!(got, Ok(Ok(_))),
            "the waiting connection was not served after a close: {got:?}"
        );
        assert_eq!(probe(&mut a4, answer).await, Probe::Answered);
    });
}

fn create_topics(
    conn: &mut Connection,
    topics: Vec<CreatableTopic>,
) -> Vec<(String, i16, Option<String>)> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(topics);
    let response: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, &request, 7);
    response
        .topics
        .into_iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.error_code,
                t.error_message.map(|m| m.to_string()),
            )
        })
        .collect()
}

fn topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )
}

#[test]
fn create_topics_enforces_segment_floors_and_the_partition_cap() {
    let broker = TestBroker::start(BrokerOpts::default());
    let mut conn = Connection::connect(&broker.bootstrap(), Duration::from_secs(30));

    // Kafka 4: segment.bytes >= 1 MiB, segment.ms >= 1 (INVALID_CONFIG, 40).
    let small = unique_topic("small-segments");
    let zero_ms = unique_topic("zero-roll");
    let internal = unique_topic("internal-small");
    let results = create_topics(
        &mut conn,
        vec![
            topic(&small, 1, &[("segment.bytes", "1048575")]),
            topic(&zero_ms, 1, &[("segment.ms", "0")]),
            topic(&internal, 1, &[("internal.segment.bytes", "4096")]),
        ],
    );
    assert_eq!(results[0].1, 40, "{results:?}");
    assert!(
        results[0]
            .2
            .as_deref()
            .is_some_and(|m| m.contains("at least 1048576")),
        "{results:?}"
    );
    assert_eq!(results[1].1, 40, "{results:?}");
    // Kafka's test-only override still allows small segments.
    assert_eq!(results[2].1, 0, "{results:?}");

    // Kafka's cap: 10,000 partitions per request, all topics together; over it every
    // topic of the request fails with POLICY_VIOLATION (44).
    let names: Vec<String> = (0..2).map(|_| unique_topic("huge")).collect();
    let results = create_topics(
        &mut conn,
        names.iter().map(|n| topic(n, 5_001, &[])).collect(),
    );
    for (name, code, message) in &results {
        assert_eq!(*code, 44, "{name}: {message:?}");
        assert_eq!(
            message.as_deref(),
            Some("Excessively large number of partitions per request."),
        );
    }
}
