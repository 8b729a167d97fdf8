//! The rdkafka crate (bundled librdkafka) in the client matrix: one phase of
//! `compat-tests/matrix/SCENARIO.md` per run, its JSON summary as the last stdout line.
//!
//! Usage: `matrix_rdkafka <phase> --bootstrap H:P --topic T --group G --records N --batch B`

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, TopicPartitionList};
use serde_json::{json, Value};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// Every phase finishes within this (the contract says 90 s).
const PHASE_BUDGET: Duration = Duration::from_secs(85);
/// Fast heartbeats so a rebalance is noticed within a second; 6 s is the broker's
/// minimum session timeout.
const SESSION_TIMEOUT_MS: &str = "6000";
const HEARTBEAT_INTERVAL_MS: &str = "500";
/// How long `resume` keeps reading after the last expected record, watching for re-reads.
const RESUME_LINGER: Duration = Duration::from_secs(3);

struct Args {
    phase: String,
    bootstrap: String,
    topic: String,
    group: String,
    records: usize,
    batch: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let phase = it.next().ok_or("missing phase")?;
    let mut named = BTreeMap::new();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        named.insert(flag, value);
    }
    let mut take = |flag: &str| named.remove(flag).ok_or(format!("missing {flag}"));
    Ok(Args {
        phase,
        bootstrap: take("--bootstrap")?,
        topic: take("--topic")?,
        group: take("--group")?,
        records: take("--records")?
            .parse()
            .map_err(|e| format!("--records: {e}"))?,
        batch: take("--batch")?
            .parse()
            .map_err(|e| format!("--batch: {e}"))?,
    })
}

struct Deadline(Instant);

impl Deadline {
    fn left(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    fn check(&self, what: impl FnOnce() -> String) -> Result<(), String> {
        if self.left().is_zero() {
            return Err(format!("deadline passed while {}", what()));
        }
        Ok(())
    }
}

/// Key, value and header value of record `i` of `batch` and `codec`.
fn record(batch: u32, codec: &str, i: usize) -> (String, String, String) {
    let suffix = format!("{batch}-{codec}-{i}");
    (format!("k-{suffix}"), format!("v-{suffix}"), suffix)
}

/// Counts what the members of a group phase read, checking every record.
struct Tally {
    batch: u32,
    seen: HashSet<Vec<u8>>,
    duplicates: usize,
    mismatched: usize,
    reread: usize,
    per_member: [usize; 2],
}

impl Tally {
    fn new(batch: u32) -> Self {
        Tally {
            batch,
            seen: HashSet::new(),
            duplicates: 0,
            mismatched: 0,
            reread: 0,
            per_member: [0; 2],
        }
    }

    fn add(&mut self, member: usize, m: &impl Message) {
        self.per_member[member] += 1;
        let key = m.key().unwrap_or_default();
        let text = String::from_utf8_lossy(key);
        let parts: Vec<&str> = text.split('-').collect();
        let parsed = match parts.as_slice() {
            ["k", b, c, i] if CODECS.contains(c) => b.parse::<u32>().ok().zip(i.parse().ok()),
            _ => None,
        };
        let Some((batch, i)) = parsed else {
            self.mismatched += 1;
            return;
        };
        if batch < self.batch {
            self.reread += 1;
            return;
        }
        let (_, value, header) = record(batch, parts[2], i);
        let headers: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        if batch != self.batch
            || m.payload() != Some(value.as_bytes())
            || headers != [("h".to_string(), header.into_bytes())]
        {
            self.mismatched += 1;
            return;
        }
        if !self.seen.insert(key.to_vec()) {
            self.duplicates += 1;
        }
    }
}

/// Commits what the member read when it loses partitions, so the next owner starts there.
struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            if tpl.count() > 0 {
                if let Err(e) = commit(c) {
                    eprintln!("commit on revoke: {e}");
                }
            }
        }
    }
}

type Member = BaseConsumer<CommitOnRevoke>;

/// Synchronous commit of what was read; nothing read since the last commit is fine.
fn commit(c: &Member) -> Result<(), String> {
    match c.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(e) => Err(format!("commit: {e}")),
    }
}

fn member(args: &Args, name: &str) -> Result<Member, String> {
    let c: Member = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("client.id", format!("matrix-{name}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS)
        .create_with_context(CommitOnRevoke)
        .map_err(|e| format!("consumer {name}: {e}"))?;
    c.subscribe(&[&args.topic])
        .map_err(|e| format!("subscribe {name}: {e}"))?;
    Ok(c)
}

/// Up to `max` records (the first poll waits up to `timeout`, the rest take what is
/// there), counted in `tally`; returns (partition, offset) of each.
fn poll(
    c: &Member,
    member: usize,
    max: usize,
    timeout: Duration,
    tally: &mut Tally,
) -> Result<Vec<(i32, i64)>, String> {
    let mut read = Vec::new();
    let mut wait = timeout;
    for _ in 0..max {
        match c.poll(wait) {
            None => break,
            Some(Ok(m)) => {
                tally.add(member, &m);
                read.push((m.partition(), m.offset()));
            }
            Some(Err(e)) => return Err(format!("consume: {e}")),
        }
        wait = Duration::ZERO;
    }
    Ok(read)
}

fn owned(c: &Member) -> BTreeSet<i32> {
    c.assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

fn partition_list(topic: &str, partitions: &BTreeSet<i32>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    tpl
}

fn admin(args: &Args, deadline: &Deadline) -> Result<Value, String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let created = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(&args.topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(deadline.left())),
        ))
        .map_err(|e| format!("create topics: {e}"))?;
    for r in created {
        r.map_err(|(t, e)| format!("create {t}: {e}"))?;
    }
    // All-topics Metadata, then Metadata for the topic alone.
    let all = admin
        .inner()
        .fetch_metadata(None, deadline.left())
        .map_err(|e| format!("list topics: {e}"))?;
    let listed = all.topics().iter().any(|t| t.name() == args.topic);
    let one = admin
        .inner()
        .fetch_metadata(Some(&args.topic), deadline.left())
        .map_err(|e| format!("describe topic: {e}"))?;
    let [t] = one.topics() else {
        return Err(format!("describe returned {} topics", one.topics().len()));
    };
    if let Some(e) = t.error() {
        return Err(format!("describe topic: {e:?}"));
    }
    Ok(json!({"phase": "admin", "listed": listed, "partitions": t.partitions().len()}))
}

/// Counts acknowledgements; any delivery error is kept for the report.
#[derive(Default)]
struct Acks {
    ok: AtomicUsize,
    failed: std::sync::Mutex<Vec<String>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => self.failed.lock().expect("acks lock").push(e.to_string()),
        }
    }
}

fn produce(args: &Args, deadline: &Deadline) -> Result<Value, String> {
    let mut acked = 0;
    // The codec is a producer setting: one producer per codec, one after the other.
    for codec in CODECS {
        let producer: BaseProducer<Acks> = ClientConfig::new()
            .set("bootstrap.servers", &args.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.codec", codec)
            .create_with_context(Acks::default())
            .map_err(|e| format!("producer: {e}"))?;
        for i in 0..args.records {
            let (key, value, header) = record(args.batch, codec, i);
            let headers = OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(&header),
            });
            let mut rec = BaseRecord::to(&args.topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            // A full local queue: serve delivery reports and retry.
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        deadline.check(|| format!("{codec}: local queue full"))?;
                        producer.poll(Duration::from_millis(50));
                        rec = back;
                    }
                    Err((e, _)) => return Err(format!("{codec}: send: {e}")),
                }
            }
        }
        producer
            .flush(deadline.left())
            .map_err(|e| format!("{codec}: flush: {e}"))?;
        let failed = producer.context().failed.lock().expect("acks lock").clone();
        if !failed.is_empty() {
            return Err(format!(
                "{codec}: {} failed: {:?}",
                failed.len(),
                &failed[..1]
            ));
        }
        acked += producer.context().ok.load(Ordering::Relaxed);
    }
    Ok(json!({"phase": "produce", "acked": acked, "codecs": CODECS,
              "skipped_codecs": {}}))
}

fn group(args: &Args, deadline: &Deadline) -> Result<Value, String> {
    let expect = args.records;
    let topic = args.topic.as_str();
    let mut tally = Tally::new(args.batch);
    let a = member(args, "a")?;
    // a reads one record at a time and stops short of the last record of every partition
    // (pausing it), so whatever b is given has something left to read.
    let mut ends = BTreeMap::new();
    while tally.per_member[0] < expect / 2 {
        deadline.check(|| format!("member a read {} of {}", tally.per_member[0], expect / 2))?;
        for (partition, offset) in poll(&a, 0, 1, Duration::from_millis(200), &mut tally)? {
            let end = match ends.entry(partition) {
                Entry::Occupied(known) => *known.get(),
                Entry::Vacant(slot) => {
                    let (_, end) = a
                        .fetch_watermarks(topic, partition, deadline.left())
                        .map_err(|e| format!("watermarks of {partition}: {e}"))?;
                    *slot.insert(end)
                }
            };
            if offset + 2 >= end {
                a.pause(&partition_list(topic, &BTreeSet::from([partition])))
                    .map_err(|e| format!("pause: {e}"))?;
            }
        }
    }
    commit(&a)?;
    let before = owned(&a);
    a.pause(&partition_list(topic, &before))
        .map_err(|e| format!("pause: {e}"))?;
    eprintln!("a read {}, owns {before:?}; b joins", tally.per_member[0]);
    let b = member(args, "b")?;
    // a, paused, reads nothing until the group has rebalanced: done when a holds a new
    // assignment and b holds one.
    loop {
        let (now_a, now_b) = (owned(&a), owned(&b));
        if !now_a.is_empty() && now_a != before && !now_b.is_empty() {
            break;
        }
        deadline.check(|| format!("waiting for the rebalance: a owns {now_a:?}, b {now_b:?}"))?;
        poll(&a, 0, 100, Duration::from_millis(50), &mut tally)?;
        poll(&b, 1, 100, Duration::from_millis(100), &mut tally)?;
    }
    let after = owned(&a);
    eprintln!("rebalanced: a owns {after:?}, b owns {:?}", owned(&b));
    a.resume(&partition_list(topic, &after))
        .map_err(|e| format!("resume: {e}"))?;
    while tally.seen.len() < expect {
        deadline.check(|| {
            format!(
                "reading {} of {expect} (a read {}, b {})",
                tally.seen.len(),
                tally.per_member[0],
                tally.per_member[1]
            )
        })?;
        poll(&a, 0, 100, Duration::from_millis(50), &mut tally)?;
        poll(&b, 1, 100, Duration::from_millis(50), &mut tally)?;
    }
    commit(&a)?;
    commit(&b)?;
    // Dropping a consumer closes it: it leaves the group.
    drop((a, b));
    Ok(
        json!({"phase": "group", "consumed": tally.seen.len(), "duplicates": tally.duplicates,
              "mismatched": tally.mismatched + tally.reread, "a": tally.per_member[0],
              "b": tally.per_member[1],
              "rebalanced": !before.is_subset(&after) && tally.per_member[1] > 0}),
    )
}

fn resume(args: &Args, deadline: &Deadline) -> Result<Value, String> {
    let expect = args.records;
    let mut tally = Tally::new(args.batch);
    let members = [member(args, "a")?, member(args, "b")?];
    let mut linger_until = None;
    while linger_until.is_none_or(|t| Instant::now() < t) {
        deadline.check(|| format!("reading {} of {expect}", tally.seen.len()))?;
        for (i, m) in members.iter().enumerate() {
            poll(m, i, 100, Duration::from_millis(100), &mut tally)?;
        }
        if linger_until.is_none() && tally.seen.len() >= expect {
            linger_until = Some(Instant::now() + RESUME_LINGER);
        }
    }
    for m in &members {
        commit(m)?;
    }
    drop(members);
    Ok(
        json!({"phase": "resume", "consumed": tally.seen.len(), "duplicates": tally.duplicates,
              "mismatched": tally.mismatched, "reread": tally.reread}),
    )
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| {
        let deadline = Deadline(Instant::now() + PHASE_BUDGET);
        match args.phase.as_str() {
            "admin" => admin(&args, &deadline),
            "produce" => produce(&args, &deadline),
            "group" => group(&args, &deadline),
            "resume" => resume(&args, &deadline),
            other => Err(format!("unknown phase {other:?}")),
        }
    });
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
