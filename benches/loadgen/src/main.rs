//! `millrace-loadgen`: the Rust side of `scripts/bench.sh`, on librdkafka (rdkafka crate).
//!
//! ```text
//! millrace-loadgen create-topic --bootstrap B --topic T --partitions N [--replication-factor 1]
//! millrace-loadgen produce --bootstrap B --topic T [--records N] [--duration-s S]
//!                          [--record-size 1024] [--acks 1|all] [--compression none|lz4]
//!                          [--rate MSGS_PER_S (0 = as fast as possible)]
//! millrace-loadgen consume --bootstrap B --topic T --partitions N --records N [--timeout-s S]
//! millrace-loadgen e2e     (produce's flags) --partitions N [--warmup-s 2]
//! ```
//!
//! Every payload starts with the send time (nanoseconds since this process started, u64
//! big-endian) and a sequence number; the rest is a fixed run of random capital letters,
//! like Kafka's `ProducerPerformance`. `e2e` consumes in a second thread of the same
//! process and records, per message, receive time minus send time (one clock, no skew).
//!
//! Each command prints one JSON object on stdout. Every run is bounded: by `--records`
//! and `--duration-s` (whichever comes first) and by hard timeouts on flush and consume.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::json;

/// Process clock origin: payload timestamps are nanoseconds since this instant.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// `--key value` flags.
struct Args {
    flags: HashMap<String, String>,
}

impl Args {
    fn parse(rest: &[String]) -> Result<Args, String> {
        let mut flags = HashMap::new();
        let mut it = rest.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --flag, got {k:?}"))?;
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            flags.insert(key.to_string(), v.clone());
        }
        Ok(Args { flags })
    }
    fn str(&self, k: &str, default: Option<&str>) -> Result<String, String> {
        match (self.flags.get(k), default) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(format!("--{k} is required")),
        }
    }
    fn num(&self, k: &str, default: Option<f64>) -> Result<f64, String> {
        match (self.flags.get(k), default) {
            (Some(v), _) => v.parse().map_err(|e| format!("--{k} {v:?}: {e}")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--{k} is required")),
        }
    }
}

#[derive(Clone)]
struct ProduceOpts {
    bootstrap: String,
    topic: String,
    records: u64,
    duration: Duration,
    record_size: usize,
    acks: String,
    compression: String,
    rate: f64,
}

impl ProduceOpts {
    fn from(a: &Args) -> Result<ProduceOpts, String> {
        let o = ProduceOpts {
            bootstrap: a.str("bootstrap", None)?,
            topic: a.str("topic", None)?,
            records: a.num("records", Some(u64::MAX as f64))? as u64,
            duration: Duration::from_secs_f64(a.num("duration-s", Some(20.0))?),
            record_size: a.num("record-size", Some(1024.0))? as usize,
            acks: a.str("acks", Some("1"))?,
            compression: a.str("compression", Some("none"))?,
            rate: a.num("rate", Some(0.0))?,
        };
        if o.record_size < 16 {
            return Err("--record-size must be at least 16 (timestamp + sequence)".into());
        }
        Ok(o)
    }
}

/// Counts delivery reports.
#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    failed: AtomicU64,
}

struct DeliveryCounter(Arc<Counters>);

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(_) => self.0.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A fixed run of random capital letters (xorshift; no extra dependency).
fn filler(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

struct ProduceResult {
    sent: u64,
    acked: u64,
    failed: u64,
    elapsed: Duration,
}

/// Produce until `records` or `duration`, at `rate` msgs/s (0 = max), then flush.
fn produce(o: &ProduceOpts, started: Option<&AtomicBool>) -> Result<ProduceResult, String> {
    let counters = Arc::new(Counters::default());
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", &o.bootstrap)
        .set("acks", &o.acks)
        .set("compression.type", &o.compression)
        .set("client.id", "millrace-loadgen")
        .create_with_context(DeliveryCounter(counters.clone()))
        .map_err(|e| format!("producer: {e}"))?;
    let mut payload = filler(o.record_size);
    let start = Instant::now();
    if let Some(flag) = started {
        flag.store(true, Ordering::Release);
    }
    let mut sent: u64 = 0;
    while sent < o.records {
        let now = Instant::now();
        if now - start >= o.duration {
            break;
        }
        if o.rate > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / o.rate);
            if now < due {
                producer.poll((due - now).min(Duration::from_millis(5)));
                continue;
            }
        }
        payload[0..8].copy_from_slice(&now_ns().to_be_bytes());
        payload[8..16].copy_from_slice(&sent.to_be_bytes());
        let rec: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(&o.topic).payload(&payload[..]);
        match producer.send(rec) {
            Ok(()) => {
                sent += 1;
                if sent.is_multiple_of(256) {
                    producer.poll(Duration::ZERO);
                }
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(format!("send: {e}")),
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("flush: {e}"))?;
    let elapsed = start.elapsed();
    Ok(ProduceResult {
        sent,
        acked: counters.acked.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        elapsed,
    })
}

fn consumer(bootstrap: &str, topic: &str, partitions: i32) -> Result<BaseConsumer, String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("millrace-loadgen-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("client.id", "millrace-loadgen")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| format!("assign: {e}"))?;
    }
    c.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    Ok(c)
}

fn mb(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn produce_json(o: &ProduceOpts, r: &ProduceResult) -> serde_json::Value {
    let secs = r.elapsed.as_secs_f64();
    json!({
        "sent": r.sent,
        "acked": r.acked,
        "failed": r.failed,
        "elapsed_s": secs,
        "msgs_per_s": r.acked as f64 / secs,
        "mb_per_s": mb(r.acked as f64 * o.record_size as f64) / secs,
        "target_rate": o.rate,
    })
}

fn cmd_produce(a: &Args) -> Result<serde_json::Value, String> {
    let o = ProduceOpts::from(a)?;
    let r = produce(&o, None)?;
    if r.failed > 0 {
        return Err(format!("{} deliveries failed", r.failed));
    }
    Ok(json!({ "mode": "produce", "produce": produce_json(&o, &r) }))
}

fn cmd_consume(a: &Args) -> Result<serde_json::Value, String> {
    let bootstrap = a.str("bootstrap", None)?;
    let topic = a.str("topic", None)?;
    let partitions = a.num("partitions", None)? as i32;
    let records = a.num("records", None)? as u64;
    let timeout = Duration::from_secs_f64(a.num("timeout-s", Some(120.0))?);
    let c = consumer(&bootstrap, &topic, partitions)?;
    let deadline = Instant::now() + timeout;
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    while n < records && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                n += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => return Err(format!("consume: {e}")),
            None => {}
        }
    }
    let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    if n < records {
        return Err(format!(
            "consumed {n} of {records} records before the timeout"
        ));
    }
    Ok(json!({
        "mode": "consume",
        "consume": {
            "records": n,
            "bytes": bytes,
            "elapsed_s": secs,
            "msgs_per_s": n as f64 / secs,
            "mb_per_s": mb(bytes as f64) / secs,
        }
    }))
}

fn cmd_e2e(a: &Args) -> Result<serde_json::Value, String> {
    let o = ProduceOpts::from(a)?;
    let partitions = a.num("partitions", None)? as i32;
    let warmup_ns = (a.num("warmup-s", Some(2.0))? * 1e9) as u64;
    let c = consumer(&o.bootstrap, &o.topic, partitions)?;
    let producing = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let consumer_thread = {
        let total = total.clone();
        let hard_stop = o.duration + Duration::from_secs(60);
        std::thread::spawn(move || -> Result<(Histogram<u64>, u64), String> {
            // Microseconds, 1 µs .. 100 s, 3 significant digits.
            let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000, 3).expect("histogram");
            let start = Instant::now();
            let mut n = 0u64;
            let mut produce_start_ns = None;
            while n < total.load(Ordering::Acquire) && start.elapsed() < hard_stop {
                match c.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let recv = now_ns();
                        n += 1;
                        let Some(p) = m.payload().filter(|p| p.len() >= 16) else {
                            continue;
                        };
                        let sent = u64::from_be_bytes(p[0..8].try_into().unwrap());
                        let first = *produce_start_ns.get_or_insert(sent);
                        if sent >= first + warmup_ns {
                            h.saturating_record(recv.saturating_sub(sent) / 1000);
                        }
                    }
                    Some(Err(e)) => return Err(format!("consume: {e}")),
                    None => {}
                }
            }
            Ok((h, n))
        })
    };
    // Let the consumer connect and issue its first fetches before the clock starts.
    std::thread::sleep(Duration::from_secs(1));
    let r = produce(&o, Some(&producing));
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            total.store(0, Ordering::Release);
            let _ = consumer_thread.join();
            return Err(e);
        }
    };
    total.store(r.acked, Ordering::Release);
    let (h, received) = consumer_thread
        .join()
        .map_err(|_| "consumer thread panicked".to_string())??;
    if r.failed > 0 || received < r.acked {
        return Err(format!(
            "{} deliveries failed, {} of {} acked records consumed",
            r.failed, received, r.acked
        ));
    }
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(json!({
        "mode": "e2e",
        "produce": produce_json(&o, &r),
        "latency_ms": {
            "count": h.len(),
            "p50": ms(h.value_at_quantile(0.50)),
            "p99": ms(h.value_at_quantile(0.99)),
            "p999": ms(h.value_at_quantile(0.999)),
            "max": ms(h.max()),
            "mean": h.mean() / 1000.0,
        }
    }))
}

fn cmd_create_topic(a: &Args) -> Result<serde_json::Value, String> {
    let bootstrap = a.str("bootstrap", None)?;
    let topic = a.str("topic", None)?;
    let partitions = a.num("partitions", None)? as i32;
    let rf = a.num("replication-factor", Some(1.0))? as i32;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .map_err(|e| format!("admin: {e}"))?;
    let t = NewTopic::new(&topic, partitions, TopicReplication::Fixed(rf));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let res = futures::executor::block_on(admin.create_topics([&t], &opts))
        .map_err(|e| format!("create_topics: {e}"))?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("create {t}: {e}")),
        }
    }
    // Wait until metadata shows every partition with a leader and every replica in sync
    // (bounded): a replicated benchmark must not start while followers still catch up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .map_err(|e| format!("probe: {e}"))?;
    loop {
        if let Ok(md) = probe.fetch_metadata(Some(&topic), Duration::from_secs(5)) {
            let ready = md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| {
                        p.leader() >= 0
                            && p.replicas().len() == rf as usize
                            && p.isr().len() == rf as usize
                    })
            });
            if ready {
                break;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("topic {topic} not ready within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(json!({
        "mode": "create-topic",
        "topic": topic,
        "partitions": partitions,
        "replication_factor": rf,
    }))
}

fn main() -> ExitCode {
    origin();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("usage: millrace-loadgen create-topic|produce|consume|e2e --flag value ...");
        return ExitCode::from(2);
    };
    let result = Args::parse(rest).and_then(|a| match cmd.as_str() {
        "create-topic" => cmd_create_topic(&a),
        "produce" => cmd_produce(&a),
        "consume" => cmd_consume(&a),
        "e2e" => cmd_e2e(&a),
        other => Err(format!("unknown command {other:?}")),
    });
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("millrace-loadgen {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
