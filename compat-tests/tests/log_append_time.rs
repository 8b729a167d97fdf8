//! `message.timestamp.type=LogAppendTime` over TCP with librdkafka: the broker stamps every
//! batch with its append time (the delivery report and the consumer see that time, typed
//! LogAppendTime), the producer's own timestamps are neither kept nor bounded, and
//! ListOffsets by timestamp searches the append times. Runs against either target
//! (`MILLRACE_COMPAT_TARGET=kafka` checks the same expectations against Apache Kafka).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{admin_create_with_configs, consumer};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};

use millrace_compat_tests::{now_ms, unique_topic, wait_until, BrokerOpts, TestBroker};

const RECORDS: usize = 20;
const HOUR_MS: i64 = 3_600_000;

/// A delivery report: the offset and the timestamp the broker answered, or the error.
type Report = Result<(i64, Timestamp), String>;

/// Delivery reports with the timestamp the broker answered.
#[derive(Clone, Default)]
struct Stamps(Arc<Mutex<Vec<Report>>>);

impl ClientContext for Stamps {}

impl ProducerContext for Stamps {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let entry = match r {
            Ok(m) => Ok((m.offset(), m.timestamp())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().unwrap().push(entry);
    }
}

#[test]
fn log_append_time_topics_stamp_batches_with_the_append_time() {
    let broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("lat");
    admin_create_with_configs(
        &b,
        &topic,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );

    let stamps = Stamps::default();
    let producer: ThreadedProducer<Stamps> = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create_with_context(stamps.clone())
        .expect("producer");
    let before_ms = now_ms();
    for i in 0..RECORDS {
        // Half far in the past, half two hours ahead: a CreateTime topic would refuse
        // the latter (message.timestamp.after.max.ms is one hour).
        let sent_ms = if i % 2 == 0 {
            before_ms - 30 * 24 * HOUR_MS
        } else {
            before_ms + 2 * HOUR_MS
        };
        let value = format!("v{i}");
        producer
            .send(
                BaseRecord::to(&topic)
                    .partition(0)
                    .payload(value.as_bytes())
                    .key("k")
                    .timestamp(sent_ms),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
        // One batch per record, so that each gets its own append time.
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
    let after_ms = now_ms();
    let reports = wait_until("every delivery report", Duration::from_secs(30), || {
        let reports = stamps.0.lock().unwrap().clone();
        (reports.len() == RECORDS)
            .then_some(reports.clone())
            .ok_or(format!("{} reports", reports.len()))
    });
    drop(producer);
    let in_window = |t: i64| (before_ms..=after_ms).contains(&t);
    let mut appended_ms = Vec::new();
    for report in &reports {
        let (offset, timestamp) = report.clone().expect("delivery succeeded");
        let Timestamp::LogAppendTime(t) = timestamp else {
            panic!("offset {offset}: delivery report timestamp {timestamp:?}, want LogAppendTime");
        };
        assert!(
            in_window(t),
            "offset {offset}: append time {t} outside [{before_ms}, {after_ms}]"
        );
        appended_ms.push((offset, t));
    }
    appended_ms.sort();
    assert_eq!(
        appended_ms.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (0..RECORDS as i64).collect::<Vec<_>>()
    );

    // The consumer sees the same times, typed LogAppendTime.
    let c = consumer(&b);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    let mut consumed = Vec::new();
    wait_until("every record consumed", Duration::from_secs(30), || {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.map_err(|e| format!("consume error: {e}"))?;
            consumed.push((m.offset(), m.timestamp()));
        }
        (consumed.len() == RECORDS)
            .then_some(())
            .ok_or(format!("{} records", consumed.len()))
    });
    for ((offset, timestamp), (report_offset, appended)) in consumed.iter().zip(&appended_ms) {
        assert_eq!(offset, report_offset);
        assert_eq!(
            *timestamp,
            Timestamp::LogAppendTime(*appended),
            "offset {offset}: consumed timestamp"
        );
    }

    // ListOffsets by timestamp searches the append times, not the producer's.
    let lookup = |target: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(target))
            .unwrap();
        let got = c
            .offsets_for_times(tpl, Duration::from_secs(10))
            .expect("offsets_for_times");
        let e = got.find_partition(&topic, 0).expect("partition in answer");
        assert!(e.error().is_ok(), "target {target}: {:?}", e.error());
        e.offset()
    };
    assert_eq!(lookup(before_ms - 30 * 24 * HOUR_MS), Offset::Offset(0));
    let (last_offset, last_ms) = *appended_ms.last().unwrap();
    let first_at_last_ms = appended_ms
        .iter()
        .find(|(_, t)| *t == last_ms)
        .map(|(o, _)| *o)
        .unwrap();
    assert!(first_at_last_ms <= last_offset);
    assert_eq!(lookup(last_ms), Offset::Offset(first_at_last_ms));
    // Later than every append time, though earlier than half the producer's timestamps.
    assert_eq!(lookup(after_ms + 1), Offset::End);
}
