//! DeleteRecords through librdkafka's admin client (rdkafka 0.39, librdkafka 2.12):
//! the low watermark moves, reads below it are out of range, whole segments below it
//! leave the disk, and the new log start survives a graceful restart and a kill -9.
//! Against Kafka (`MILLRACE_COMPAT_TARGET=kafka`) the last two are skipped: Kafka removes
//! the segments later (its retention check) and checkpoints the log start every minute,
//! so a kill -9 may undo an acknowledged delete; millrace does both before answering.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{consumer, first_record_from, flush_all_ok, producer, send, watermarks};
use millrace_compat_tests::{unique_topic, BrokerOpts, Target, TestBroker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

/// Rounds of records, each flushed as its own batch of about 1.1 KiB: three batches fill
/// a segment of `SEGMENT_BYTES` (Kafka refuses a batch larger than the segment).
const BATCHES: usize = 10;
const SEGMENT_BYTES: &str = "4096";
const PER_BATCH: usize = 10;

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// DeleteRecords for (partition, offset) pairs; per partition the low watermark or
/// the error code.
fn delete_records(
    bootstrap: &str,
    topic: &str,
    offsets: &[(i32, Offset)],
) -> Vec<Result<i64, RDKafkaErrorCode>> {
    let mut tpl = TopicPartitionList::new();
    for (partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, *offset)
            .unwrap();
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let result = runtime()
        .block_on(admin(bootstrap).delete_records(&tpl, &opts))
        .expect("DeleteRecords request");
    offsets
        .iter()
        .map(|(partition, _)| {
            let entry = result
                .find_partition(topic, *partition)
                .expect("partition in the result");
            match entry.error() {
                Err(rdkafka::error::KafkaError::OffsetFetch(code)) => Err(code),
                Err(other) => panic!("unexpected error kind {other:?}"),
                Ok(()) => match entry.offset() {
                    Offset::Offset(low) => Ok(low),
                    other => panic!("low watermark {other:?}"),
                },
            }
        })
        .collect()
}

/// Segment base offsets of one partition directory, in order.
fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log").and_then(|b| b.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    bases
}

#[test]
fn delete_records_moves_the_log_start_durably() {
    let mut broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("purge");
    // Small segments (Kafka's test-only topic config), so that whole segments fall
    // below the new log start.
    let new_topic = NewTopic::new(&topic, 2, TopicReplication::Fixed(1))
        .set("internal.segment.bytes", SEGMENT_BYTES);
    let created = runtime()
        .block_on(admin(&b).create_topics(&[new_topic], &AdminOptions::new()))
        .expect("CreateTopics");
    assert_eq!(created, vec![Ok(topic.clone())]);

    // Ten flushed rounds of ten 100-byte records to partition 0.
    let (p, rec) = producer(&b, &[("linger.ms", "0")]);
    for round in 0..BATCHES {
        for i in 0..PER_BATCH {
            let value = [b'a' + (i as u8); 100];
            send(
                &p,
                BaseRecord::with_opaque_to(&topic, round * PER_BATCH + i)
                    .partition(0)
                    .payload(&value[..]),
            );
        }
        flush_all_ok(&p, &rec, (round + 1) * PER_BATCH);
    }
    send(
        &p,
        BaseRecord::with_opaque_to(&topic, BATCHES * PER_BATCH)
            .partition(1)
            .payload(&b"one"[..]),
    );
    flush_all_ok(&p, &rec, BATCHES * PER_BATCH + 1);
    drop(p);
    let dir = broker.data_dir().join(format!("{topic}-0"));
    let before = segment_bases(&dir);
    assert!(before.len() > 3, "expected several segments: {before:?}");

    // Beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing moves.
    let results = delete_records(&b, &topic, &[(0, Offset::Offset(101))]);
    assert_eq!(results, vec![Err(RDKafkaErrorCode::OffsetOutOfRange)]);
    // Partition 0 to 45; partition 1 to its high watermark (Offset::End is -1).
    let results = delete_records(&b, &topic, &[(0, Offset::Offset(45)), (1, Offset::End)]);
    assert_eq!(results, vec![Ok(45), Ok(1)]);
    let check = |b: &str, low: i64| {
        let c = consumer(b);
        assert_eq!(watermarks(&c, &topic), vec![(low, 100), (1, 1)]);
        assert_eq!(
            first_record_from(b, &topic, 0, Offset::Beginning, "error"),
            Ok(low)
        );
        // librdkafka reports the broker's OFFSET_OUT_OF_RANGE, with
        // auto.offset.reset=error, as "no offset to automatically reset to".
        let below = first_record_from(b, &topic, 0, Offset::Offset(low - 1), "error").unwrap_err();
        assert!(
            below.contains("AutoOffsetReset"),
            "read below the start: {below}"
        );
    };
    check(&b, 45);
    let millrace = broker.target() == Target::Millrace;
    if millrace {
        // Kafka's rule: a segment goes when the next one starts at or below the log start.
        let after = segment_bases(&dir);
        assert!(
            after[0] > 0 && after[0] <= 45 && after.get(1).is_none_or(|&next| next > 45),
            "segments before {before:?}, after {after:?}"
        );
    }

    broker.stop_graceful();
    broker.restart();
    check(&b, 45);
    if !millrace {
        return;
    }
    // Moving it again, then a crash right after the answer: the answer was durable.
    assert_eq!(
        delete_records(&b, &topic, &[(0, Offset::Offset(60))]),
        vec![Ok(60)]
    );
    broker.kill9();
    broker.restart();
    check(&b, 60);
    // Moving it back is a no-op that reports the current start.
    assert_eq!(
        delete_records(&b, &topic, &[(0, Offset::Offset(10))]),
        vec![Ok(60)]
    );
}

/// Kafka 4.4.0's `kafka-delete-records --offset-json-file` (DeleteRecordsCommand, the
/// Java admin client): a low watermark per partition (-1: the high watermark), an error
/// line for an offset beyond the high watermark.
#[test]
fn kafka_delete_records_tool_moves_the_low_watermarks() {
    let broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("purge-tool");
    let created = runtime()
        .block_on(admin(&b).create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("CreateTopics");
    assert_eq!(created, vec![Ok(topic.clone())]);
    let (p, rec) = producer(&b, &[]);
    for id in 0..30 {
        send(
            &p,
            BaseRecord::with_opaque_to(&topic, id)
                .partition((id % 3) as i32)
                .payload(&b"record"[..]),
        );
    }
    flush_all_ok(&p, &rec, 30);
    drop(p);

    let tmp = tempfile::tempdir().unwrap();
    let offsets = tmp.path().join("offsets.json");
    std::fs::write(
        &offsets,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"offset":4}},{{"topic":"{topic}","partition":1,"offset":-1}},{{"topic":"{topic}","partition":2,"offset":11}}]}}"#
        ),
    )
    .unwrap();
    let out = millrace_compat_tests::kafka_tool(
        "org.apache.kafka.tools.DeleteRecordsCommand",
        &[
            "--bootstrap-server",
            &b,
            "--offset-json-file",
            offsets.to_str().unwrap(),
        ],
        None,
    );
    out.assert_success();
    let mut lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|line| line.starts_with("partition: "))
        .collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 3, "{}", out.describe());
    assert_eq!(lines[0], format!("partition: {topic}-0\tlow_watermark: 4"));
    assert_eq!(lines[1], format!("partition: {topic}-1\tlow_watermark: 10"));
    assert!(
        lines[2].starts_with(&format!("partition: {topic}-2\terror: "))
            && lines[2].contains("OffsetOutOfRangeException"),
        "{}",
        out.describe()
    );
    let c = consumer(&b);
    assert_eq!(watermarks(&c, &topic), vec![(4, 10), (10, 10), (0, 10)]);
}
