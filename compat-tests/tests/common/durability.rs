//! Mixed load for the durability tests (kill -9 loop, disk full): idempotent acks=all
//! producers on several partitions plus a consumer group committing as it reads, both
//! surviving broker restarts; then the checks: no acknowledged record lost or stored
//! twice, committed offsets never behind what a commit acknowledged.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::Offset;

use super::{consume_all, producer, send, Recorder};

/// Records each producer keeps un-reported at most, so acks keep flowing while a crash
/// lands and the producers cannot race ahead of the broker.
const MAX_OUTSTANDING: usize = 2_000;

/// Message ids are `producer * ID_STRIDE + i`, unique across producers.
const ID_STRIDE: usize = 100_000_000;

fn value_of(id: usize) -> String {
    format!("id={id:010};{}", "p".repeat(64 + id % 128))
}

/// Producers (one thread each) and a committing group member, until `finish`.
pub struct Load {
    stop: Arc<AtomicBool>,
    producers: Vec<(Arc<ThreadedProducer<Recorder>>, Recorder, JoinHandle<usize>)>,
    member: JoinHandle<()>,
    /// Per partition, the highest offset an OffsetCommit acknowledged.
    acked_commits: Arc<Mutex<BTreeMap<i32, i64>>>,
    commits_acked: Arc<AtomicUsize>,
    pub topic: String,
    pub group: String,
}

/// What the load did, for the final checks.
pub struct Outcome {
    pub sent: usize,
    pub acked: HashSet<usize>,
    pub failed_reports: usize,
    pub commits_acked: usize,
}

impl Load {
    pub fn start(bootstrap: &str, topic: &str, group: &str, producers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let producers = (0..producers)
            .map(|n| {
                let (p, rec) = producer(
                    bootstrap,
                    &[
                        ("retries", "1000000"),
                        ("message.timeout.ms", "120000"),
                        ("linger.ms", "2"),
                        // Reconnect to a restarted broker within a fraction of a second
                        // (librdkafka backs off up to 10 s by default).
                        ("reconnect.backoff.ms", "20"),
                        ("reconnect.backoff.max.ms", "200"),
                        ("retry.backoff.ms", "20"),
                        ("retry.backoff.max.ms", "200"),
                    ],
                );
                let p = Arc::new(p);
                let (stop, p2, rec2, topic) =
                    (stop.clone(), p.clone(), rec.clone(), topic.to_string());
                let thread = std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if i - rec2.count() >= MAX_OUTSTANDING {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        let id = n * ID_STRIDE + i;
                        let value = value_of(id);
                        send(
                            &p2,
                            BaseRecord::with_opaque_to(&topic, id)
                                .key(format!("k{}", id % 31).as_bytes())
                                .payload(value.as_bytes()),
                        );
                        i += 1;
                    }
                    i
                });
                (p, rec, thread)
            })
            .collect();
        let acked_commits = Arc::new(Mutex::new(BTreeMap::new()));
        let commits_acked = Arc::new(AtomicUsize::new(0));
        let member = {
            let (stop, acked_commits, commits_acked) =
                (stop.clone(), acked_commits.clone(), commits_acked.clone());
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500")
                .set("reconnect.backoff.ms", "20")
                .set("reconnect.backoff.max.ms", "200")
                .set("retry.backoff.ms", "20")
                .set("retry.backoff.max.ms", "200")
                .create()
                .expect("create group member");
            consumer.subscribe(&[topic]).expect("subscribe");
            std::thread::spawn(move || {
                let mut since_commit = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                        since_commit += 1;
                    }
                    if since_commit < 200 {
                        continue;
                    }
                    since_commit = 0;
                    // Nothing polls in between: the positions are what gets committed.
                    let Ok(positions) = consumer.position() else {
                        continue;
                    };
                    if consumer.commit(&positions, CommitMode::Sync).is_ok() {
                        commits_acked.fetch_add(1, Ordering::Relaxed);
                        let mut acked = acked_commits.lock().unwrap();
                        for e in positions.elements() {
                            if let Offset::Offset(o) = e.offset() {
                                let slot = acked.entry(e.partition()).or_insert(o);
                                *slot = (*slot).max(o);
                            }
                        }
                    }
                }
            })
        };
        Load {
            stop,
            producers,
            member,
            acked_commits,
            commits_acked,
            topic: topic.to_string(),
            group: group.to_string(),
        }
    }

    /// Records acknowledged so far, over all producers.
    pub fn acked(&self) -> usize {
        self.producers
            .iter()
            .map(|(_, rec, _)| rec.snapshot().iter().filter(|d| d.result.is_ok()).count())
            .sum()
    }

    /// Failed delivery reports so far (a broker that stopped answering makes none by
    /// itself: librdkafka retries until `message.timeout.ms`).
    pub fn failed(&self) -> usize {
        self.producers
            .iter()
            .map(|(_, rec, _)| rec.snapshot().iter().filter(|d| d.result.is_err()).count())
            .sum()
    }

    pub fn commits_acked(&self) -> usize {
        self.commits_acked.load(Ordering::Relaxed)
    }

    /// Per partition, the highest offset a commit acknowledged so far.
    pub fn acked_commits(&self) -> BTreeMap<i32, i64> {
        self.acked_commits.lock().unwrap().clone()
    }

    /// Stops producing and committing, then waits (the broker must be up) until every
    /// record produced has a delivery report.
    pub fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        self.member.join().expect("group member thread");
        let mut sent = 0;
        let mut acked = HashSet::new();
        let mut failed_reports = 0;
        for (p, rec, thread) in self.producers {
            let produced = thread.join().expect("producer thread");
            sent += produced;
            p.flush(Duration::from_secs(120)).expect("producer flush");
            let deadline = Instant::now() + Duration::from_secs(30);
            while rec.count() < produced {
                assert!(
                    Instant::now() < deadline,
                    "delivery reports missing after flush"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            for d in rec.snapshot() {
                match d.result {
                    Ok(_) => {
                        acked.insert(d.id);
                    }
                    Err(_) => failed_reports += 1,
                }
            }
        }
        Outcome {
            sent,
            acked,
            failed_reports,
            commits_acked: self.commits_acked.load(Ordering::Relaxed),
        }
    }
}

/// Reads the whole topic back: every record intact, none twice, every acknowledged
/// one present. Returns how many records the log holds.
pub fn check_read_back(bootstrap: &str, topic: &str, outcome: &Outcome) -> usize {
    let mut seen = HashSet::new();
    for (p, msgs) in consume_all(bootstrap, topic).iter().enumerate() {
        for m in msgs {
            let v = String::from_utf8(m.value.clone().expect("value")).expect("utf8 value");
            let id: usize = v
                .strip_prefix("id=")
                .and_then(|r| r.get(..10))
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("{p}@{}: bad value {v:?}", m.offset));
            assert_eq!(v, value_of(id), "{p}@{}: altered", m.offset);
            assert!(
                seen.insert(id),
                "record {id} stored twice (second copy at {p}@{})",
                m.offset
            );
        }
    }
    let mut lost: Vec<usize> = outcome.acked.difference(&seen).copied().collect();
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost (first: {:?}); acked {}, read back {}",
        lost.len(),
        &lost[..lost.len().min(10)],
        outcome.acked.len(),
        seen.len()
    );
    seen.len()
}

/// The group's committed offsets must be at least what commits acknowledged.
pub fn check_commits_not_behind(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    acked: &BTreeMap<i32, i64>,
) {
    let committed = millrace_compat_tests::wait_until(
        "OffsetFetch after the restart",
        Duration::from_secs(30),
        || super::groups::committed(bootstrap, group, topic, partitions),
    );
    for (&p, &acked_offset) in acked {
        let now = committed[p as usize];
        assert!(
            now.is_some_and(|o| o >= acked_offset),
            "partition {p}: committed offset went backwards: a commit of {acked_offset} was \
             acknowledged, the broker now says {now:?}"
        );
    }
}
