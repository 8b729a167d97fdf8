//! Retention changed live with Apache Kafka's own tools while a consumer reads:
//! `kafka-configs --alter --add-config retention.ms` on a topic deletes its expired
//! segments, a consumer left below the new log start resets (auto.offset.reset) and
//! reads the rest; `kafka-configs --entity-type brokers --entity-default` changes the
//! broker-wide `log.retention.ms` for topics without an override; `kafka-delete-records`
//! moves the log start. The same scenario runs against Apache Kafka 4.4.0 and the tools'
//! outputs are compared.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{consumer, flush_all_ok, producer, send};
use millrace_compat_tests::{
    kafka_tool, millrace_bin, now_ms, unique_topic, wait_until, BrokerOpts, TestBroker,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
const DELETE_RECORDS: &str = "org.apache.kafka.tools.DeleteRecordsCommand";
/// Records with a CreateTime two hours back, then records stamped now.
const OLD_RECORDS: usize = 3_000;
const NEW_RECORDS: usize = 1_000;
const VALUE_BYTES: usize = 1_000;
const HOUR_MS: i64 = 3_600_000;
/// Records the paused consumer reads before the retention change.
const READ_BEFORE_PAUSE: usize = 100;

fn broker_opts() -> BrokerOpts {
    BrokerOpts::default()
        .set("log.retention.check.interval.ms", "300")
        .set("log.segment.delete.delay.ms", "0")
        // Kafka's first retention check otherwise waits 30 s (Millrace ignores the key).
        .set("log.initial.task.delay.ms", "0")
}

fn low_watermark(c: &BaseConsumer, topic: &str) -> (i64, i64) {
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks")
}

fn configs(b: &str, args: &[&str]) -> String {
    let mut all = vec!["--bootstrap-server", b];
    all.extend_from_slice(args);
    let out = kafka_tool(CONFIGS, &all, None);
    out.assert_success();
    out.stdout
}

/// The tool outputs of one run, topic name replaced by `<topic>`, for the differential.
type Outputs = Vec<(&'static str, String)>;

fn scenario(broker: &TestBroker) -> Outputs {
    let b = broker.bootstrap();
    let topic = unique_topic("ret-live");
    let normalize = |s: &str| s.replace(&topic, "<topic>");
    let mut outputs = Outputs::new();
    kafka_tool(
        TOPICS,
        &[
            "--bootstrap-server",
            &b,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
            "--config",
            "segment.bytes=1048576",
        ],
        None,
    )
    .assert_success();

    let (p, rec) = producer(&b, &[("linger.ms", "5"), ("batch.size", "65536")]);
    let value = vec![b'r'; VALUE_BYTES];
    let old_ms = now_ms() - 2 * HOUR_MS;
    for i in 0..OLD_RECORDS + NEW_RECORDS {
        let mut record = BaseRecord::with_opaque_to(&topic, i)
            .partition(0)
            .payload(&value[..]);
        if i < OLD_RECORDS {
            record = record.timestamp(old_ms);
        }
        send(&p, record);
    }
    flush_all_ok(&p, &rec, OLD_RECORDS + NEW_RECORDS);
    let high = (OLD_RECORDS + NEW_RECORDS) as i64;

    // A consumer reads a little, then pauses until the retention change has acted.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "unused-manual-assign")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", "16384")
        .set("queued.min.messages", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    reader.assign(&tpl).expect("assign");
    let resume = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<i64>::new()));
    let reading = {
        let (resume, seen) = (resume.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            wait_until(
                "the reader to reach the end",
                Duration::from_secs(120),
                || {
                    let count = seen.lock().unwrap().len();
                    if count >= READ_BEFORE_PAUSE && !resume.load(Ordering::Acquire) {
                        return Err("paused".to_string());
                    }
                    // Everything queued, up to the pause point.
                    let mut wait = Duration::from_millis(100);
                    while resume.load(Ordering::Acquire)
                        || seen.lock().unwrap().len() < READ_BEFORE_PAUSE
                    {
                        match reader.poll(wait) {
                            Some(Ok(m)) => seen.lock().unwrap().push(m.offset()),
                            Some(Err(e)) => errors.push(e.to_string()),
                            None => break,
                        }
                        wait = Duration::ZERO;
                    }
                    let last = seen.lock().unwrap().last().copied();
                    (last == Some(high - 1)).then_some(()).ok_or(format!(
                        "at {last:?}, {} errors, last {:?}",
                        errors.len(),
                        errors.last()
                    ))
                },
            );
            errors
        })
    };
    wait_until("the reader to pause", Duration::from_secs(30), || {
        let count = seen.lock().unwrap().len();
        (count >= READ_BEFORE_PAUSE)
            .then_some(())
            .ok_or(format!("{count} read"))
    });

    // retention.ms = 1 h: the segments holding only the old records go.
    outputs.push((
        "alter topic retention.ms",
        normalize(&configs(
            &b,
            &[
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                &topic,
                "--add-config",
                "retention.ms=3600000",
            ],
        )),
    ));
    outputs.push((
        "describe topic",
        normalize(&configs(
            &b,
            &[
                "--describe",
                "--entity-type",
                "topics",
                "--entity-name",
                &topic,
            ],
        )),
    ));
    let c = consumer(&b);
    let low = wait_until(
        "the expired segments to go",
        Duration::from_secs(60),
        || match low_watermark(&c, &topic) {
            (low, _) if low > 0 => Ok(low),
            marks => Err(format!("watermarks {marks:?}")),
        },
    );
    assert!(
        low <= OLD_RECORDS as i64,
        "log start {low} is past the first record within retention ({OLD_RECORDS})"
    );
    resume.store(true, Ordering::Release);
    let errors = reading.join().expect("reader thread");
    assert!(errors.is_empty(), "the reader got errors: {errors:?}");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "offsets read out of order"
    );
    // Everything still in the log was read, after the reset if there was one.
    let from_low: Vec<i64> = seen.iter().copied().filter(|&o| o >= low).collect();
    assert_eq!(
        from_low,
        (low..high).collect::<Vec<_>>(),
        "the reader missed records that retention kept"
    );

    // kafka-delete-records: 5 past the current log start.
    let json = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        json.path(),
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"offset":{}}}]}}"#,
            low + 5
        ),
    )
    .unwrap();
    let out = kafka_tool(
        DELETE_RECORDS,
        &[
            "--bootstrap-server",
            &b,
            "--offset-json-file",
            json.path().to_str().unwrap(),
        ],
        None,
    );
    out.assert_success();
    outputs.push((
        "delete records",
        normalize(&out.stdout).replace(&(low + 5).to_string(), "<low+5>"),
    ));
    assert_eq!(low_watermark(&c, &topic).0, low + 5);

    // The topic override goes and the broker-wide default (1 s) takes over: every
    // record is older than that by now, so the whole log goes (the active segment is
    // rolled first, as Kafka does).
    configs(
        &b,
        &[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
            "--delete-config",
            "retention.ms",
        ],
    );
    outputs.push((
        "alter broker default log.retention.ms",
        configs(
            &b,
            &[
                "--alter",
                "--entity-type",
                "brokers",
                "--entity-default",
                "--add-config",
                "log.retention.ms=1000",
            ],
        ),
    ));
    wait_until(
        "the broker default to expire the whole log",
        Duration::from_secs(60),
        || match low_watermark(&c, &topic) {
            (low, high_now) if low == high_now && high_now == high => Ok(()),
            marks => Err(format!("watermarks {marks:?}")),
        },
    );
    // The next record lands at the old high watermark.
    send(
        &p,
        BaseRecord::with_opaque_to(&topic, OLD_RECORDS + NEW_RECORDS)
            .partition(0)
            .payload(&value[..]),
    );
    let delivered = flush_all_ok(&p, &rec, OLD_RECORDS + NEW_RECORDS + 1);
    let last = delivered
        .iter()
        .find(|d| d.id == OLD_RECORDS + NEW_RECORDS)
        .expect("delivery of the last record");
    assert_eq!(last.result, Ok((0, high)));
    outputs
}

#[test]
fn retention_changed_live_with_kafka_tools_matches_kafka() {
    // Fail fast, before the slow Kafka half, when millrace is not built.
    millrace_bin();
    let millrace = TestBroker::start_millrace(broker_opts());
    let got = scenario(&millrace);
    drop(millrace);
    let kafka = TestBroker::start_kafka(broker_opts());
    let reference = scenario(&kafka);
    drop(kafka);
    assert_eq!(got.len(), reference.len());
    for ((step, have), (_, want)) in got.iter().zip(&reference) {
        assert_eq!(have, want, "{step}: output differs from Kafka's");
    }
}
