//! rdkafka (librdkafka 2.12) helpers shared by the integration tests: a producer that
//! records every delivery report, and a manual-assign consumer that reads partitions
//! up to their high watermarks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};

/// One delivery report: the message id we attached, and where it landed (or why not).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: usize,
    pub result: Result<(i32, i64), String>,
}

/// Producer context collecting delivery reports.
#[derive(Clone, Default)]
pub struct Recorder {
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, id: usize) {
        let result = match r {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.deliveries
            .lock()
            .unwrap()
            .push(Delivery { id, result });
    }
}

impl Recorder {
    pub fn count(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }
    pub fn snapshot(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

/// An idempotent (`acks=all`) producer with the given extra settings.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> (ThreadedProducer<Recorder>, Recorder) {
    let rec = Recorder::default();
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "60000");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let p = cfg
        .create_with_context(rec.clone())
        .expect("create rdkafka producer");
    (p, rec)
}

/// Enqueue one record, waiting (bounded) while librdkafka's local queue is full.
pub fn send(p: &ThreadedProducer<Recorder>, mut rec: BaseRecord<'_, [u8], [u8], usize>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                assert!(Instant::now() < deadline, "producer queue full for 60 s");
                rec = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("enqueue failed: {e}"),
        }
    }
}

/// Flush and wait until `expected` delivery reports arrived; panic on any failure.
pub fn flush_all_ok(
    p: &ThreadedProducer<Recorder>,
    rec: &Recorder,
    expected: usize,
) -> Vec<Delivery> {
    p.flush(Duration::from_secs(90)).expect("producer flush");
    let d = common_wait("all delivery reports", Duration::from_secs(30), || {
        let n = rec.count();
        if n >= expected {
            Ok(rec.snapshot())
        } else {
            Err(format!("{n}/{expected} reports"))
        }
    });
    let failed: Vec<_> = d.iter().filter(|x| x.result.is_err()).take(5).collect();
    assert!(failed.is_empty(), "failed deliveries: {failed:?}");
    assert_eq!(d.len(), expected, "delivery report count");
    d
}

fn common_wait<T>(what: &str, t: Duration, f: impl FnMut() -> Result<T, String>) -> T {
    millrace_compat_tests::wait_until(what, t, f)
}

/// A consumed message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

/// A manual-assign consumer: no group commits, CRC checks on.
pub fn consumer(bootstrap: &str) -> BaseConsumer {
    consumer_with_reset(bootstrap, "error")
}

/// [`consumer`] with `auto.offset.reset` = `reset`.
pub fn consumer_with_reset(bootstrap: &str, reset: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "millrace-compat-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("check.crcs", "true")
        .set("auto.offset.reset", reset)
        .set("enable.partition.eof", "false")
        .create()
        .expect("create rdkafka consumer")
}

/// The first record's offset a consumer with `auto.offset.reset` = `reset` gets when it
/// starts at `offset` of `partition`, or its error.
pub fn first_record_from(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: Offset,
    reset: &str,
) -> Result<i64, String> {
    let c = consumer_with_reset(bootstrap, reset);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, offset).unwrap();
    c.assign(&tpl).expect("assign");
    millrace_compat_tests::wait_until("a record or an error", Duration::from_secs(20), || match c
        .poll(Duration::from_millis(200))
    {
        None => Err("nothing yet".to_string()),
        Some(Ok(m)) => Ok(Ok(m.offset())),
        Some(Err(e)) => Ok(Err(e.to_string())),
    })
}

/// Partition count of `topic` from the broker's metadata.
pub fn partition_count(c: &BaseConsumer, topic: &str) -> i32 {
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in metadata");
    assert!(t.error().is_none(), "topic metadata error: {:?}", t.error());
    t.partitions().len() as i32
}

/// (low, high) watermarks of every partition of `topic`.
pub fn watermarks(c: &BaseConsumer, topic: &str) -> Vec<(i64, i64)> {
    (0..partition_count(c, topic))
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
        })
        .collect()
}

/// Read every partition of `topic` from the beginning up to its current high watermark
/// (assign + poll; any consume error fails the test). Returns messages per partition.
pub fn consume_all(bootstrap: &str, topic: &str) -> Vec<Vec<Msg>> {
    let c = consumer(bootstrap);
    let marks = watermarks(&c, topic);
    let mut tpl = TopicPartitionList::new();
    for p in 0..marks.len() as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut out: Vec<Vec<Msg>> = vec![Vec::new(); marks.len()];
    let done = |out: &Vec<Vec<Msg>>| {
        out.iter()
            .zip(&marks)
            .all(|(v, (_, high))| v.last().map(|m| m.offset + 1).unwrap_or(0) >= *high)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(&out) {
        assert!(
            Instant::now() < deadline,
            "consume of {topic} incomplete after 120 s: got {:?} of high watermarks {:?}",
            out.iter().map(|v| v.len()).collect::<Vec<_>>(),
            marks
        );
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consume error on {topic}: {e}"),
            Some(Ok(m)) => out[m.partition() as usize].push(to_msg(&m)),
        }
    }
    out
}

/// Read every partition of `topic` from the beginning to its end as a consumer of
/// `isolation` (`read_committed` or `read_uncommitted`) sees it: librdkafka reports a
/// partition's EOF at the last stable offset for read_committed, at the high watermark
/// otherwise (transaction markers take offsets: a last record's offset + 1 can stay
/// below the high watermark). Messages per partition.
pub fn read_to_end(bootstrap: &str, topic: &str, isolation: &str) -> Vec<Vec<Msg>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "millrace-compat-unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .expect("create rdkafka consumer");
    let partitions = partition_count(&c, topic);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut out: Vec<Vec<Msg>> = vec![Vec::new(); partitions as usize];
    let mut eof = vec![false; partitions as usize];
    let deadline = Instant::now() + Duration::from_secs(120);
    while !eof.iter().all(|e| *e) {
        assert!(
            Instant::now() < deadline,
            "a {isolation} read of {topic} did not reach the end in 120 s: partitions at \
             their end {eof:?}, records per partition {:?}",
            out.iter().map(Vec::len).collect::<Vec<_>>()
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out[m.partition() as usize].push(to_msg(&m)),
            Some(Err(KafkaError::PartitionEOF(p))) => eof[p as usize] = true,
            Some(Err(e)) => panic!("consume error on {topic}: {e}"),
            None => {}
        }
    }
    out
}

pub fn to_msg<M: Message>(m: &M) -> Msg {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|Header { key, value }| (key.to_string(), value.map(|v| v.to_vec())))
                .collect()
        })
        .unwrap_or_default();
    Msg {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| k.to_vec()),
        value: m.payload().map(|v| v.to_vec()),
        headers,
        timestamp: match m.timestamp() {
            Timestamp::NotAvailable => None,
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
        },
    }
}

/// Build OwnedHeaders from pairs.
pub fn headers(pairs: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(pairs.len());
    for (k, v) in pairs {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    h
}

/// Offsets per partition from delivery reports: id -> (partition, offset).
pub fn delivered_positions(d: &[Delivery]) -> HashMap<usize, (i32, i64)> {
    d.iter()
        .filter_map(|x| x.result.as_ref().ok().map(|r| (x.id, *r)))
        .collect()
}

/// Create `topic` with `partitions` partitions through the Admin API (CreateTopics) and
/// wait until Metadata shows all partitions with a leader.
pub fn admin_create(bootstrap: &str, topic: &str, partitions: i32) {
    admin_create_with_configs(bootstrap, topic, partitions, &[]);
}

/// [`admin_create`] with topic-level configs.
pub fn admin_create_with_configs(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    admin_create_replicated(bootstrap, topic, partitions, 1, configs);
}

/// [`admin_create_with_configs`] with `replication_factor` replicas per partition.
pub fn admin_create_replicated(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results = rt
        .block_on(admin.create_topics(
            &[new_topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("CreateTopics request");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0], Ok(topic.to_string()), "CreateTopics result");
    let c = consumer(bootstrap);
    millrace_compat_tests::wait_until(
        &format!("{topic} with {partitions} led partitions in metadata"),
        Duration::from_secs(30),
        || {
            let md = c
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .ok_or("absent")?;
            if t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
            {
                Ok(())
            } else {
                Err(format!(
                    "{:?} / {} partitions",
                    t.error(),
                    t.partitions().len()
                ))
            }
        },
    );
}
pub mod canary;
pub mod cluster;
pub mod durability;
pub mod groups;
