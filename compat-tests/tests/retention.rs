//! Time and size retention (`retention.ms`, `retention.bytes`) seen from outside: old
//! segments leave the disk, the low watermark (ListOffsets earliest) follows, a consumer
//! asking for a removed offset gets OFFSET_OUT_OF_RANGE and its `auto.offset.reset`
//! applies, and a consumer that keeps up with a producer reads everything in order while
//! the partition's disk use stays bounded. Also valid against Kafka
//! (`MILLRACE_COMPAT_TARGET=kafka`): the broker keys are Kafka's.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    admin_create_with_configs, consumer, first_record_from, flush_all_ok, producer, send,
    watermarks,
};
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

/// Retention checked often, retired files unlinked soon after, from the start.
fn broker_opts() -> BrokerOpts {
    BrokerOpts::default()
        .set("log.retention.check.interval.ms", "100")
        .set("log.segment.delete.delay.ms", "100")
        .set("log.initial.task.delay.ms", "0")
}

/// (`.log` base offsets in order, how many `*.deleted` files) of a partition directory.
fn segments(dir: &Path) -> (Vec<i64>, usize) {
    let mut bases = Vec::new();
    let mut deleted = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".deleted") {
            deleted += 1;
        } else if let Some(base) = name.strip_suffix(".log").and_then(|b| b.parse().ok()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    (bases, deleted)
}

/// Bytes of the files in a partition directory whose names end with `suffix` ("" for
/// all: what the disk holds for it, retired files and Kafka's preallocated indexes
/// included). Files removed while it looks are skipped.
fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let named = e.file_name().to_string_lossy().ends_with(suffix);
            named.then_some(e.metadata().ok()?.len())
        })
        .sum()
}

/// Records two hours old fill a few small segments, then current ones follow: the old
/// segments go (the one holding the first current record stays); a partition holding
/// only old records loses them all, its active segment rolled first.
#[test]
fn time_retention_removes_expired_segments() {
    let broker = TestBroker::start(broker_opts());
    let b = broker.bootstrap();
    let topic = unique_topic("retention-time");
    // About three 1.1 KiB batches per segment; one hour of retention.
    admin_create_with_configs(
        &b,
        &topic,
        2,
        &[
            ("internal.segment.bytes", "4096"),
            ("retention.ms", "3600000"),
        ],
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let two_hours_ago = now_ms - 7_200_000;
    let (p, rec) = producer(&b, &[("linger.ms", "0")]);
    let mut sent = 0;
    // (partition, rounds of ten 100-byte records, timestamp)
    for (partition, rounds, timestamp) in [
        (0, 10, two_hours_ago),
        (0, 3, now_ms),
        (1, 3, two_hours_ago),
    ] {
        for _ in 0..rounds {
            for i in 0..10u8 {
                let value = [b'a' + i; 100];
                send(
                    &p,
                    BaseRecord::with_opaque_to(&topic, sent)
                        .partition(partition)
                        .timestamp(timestamp)
                        .payload(&value[..]),
                );
                sent += 1;
            }
            flush_all_ok(&p, &rec, sent);
        }
    }
    drop(p);

    let dirs = [0, 1].map(|p| broker.data_dir().join(format!("{topic}-{p}")));
    let c = consumer(&b);
    let (low, _) = wait_until(
        "old segments retired and their files unlinked",
        Duration::from_secs(60),
        || {
            let marks = watermarks(&c, &topic);
            let on_disk = dirs.each_ref().map(|d| segments(d));
            let (low, high) = marks[0];
            let done = low > 0
                && marks[1] == (30, 30)
                && on_disk[0].0.first() == Some(&low)
                && on_disk[1].0 == vec![30]
                && on_disk.iter().all(|(_, deleted)| *deleted == 0);
            if done {
                Ok((low, high))
            } else {
                Err(format!(
                    "watermarks {marks:?}, segments and .deleted files {on_disk:?}"
                ))
            }
        },
    );
    assert!(
        low <= 100,
        "a segment holding current records went: low {low}"
    );
    assert_eq!(watermarks(&c, &topic), vec![(low, 130), (30, 30)]);
    // From a removed offset: OFFSET_OUT_OF_RANGE, then the reset policy.
    assert_eq!(
        first_record_from(&b, &topic, 0, Offset::Offset(0), "earliest"),
        Ok(low)
    );
    let error = first_record_from(&b, &topic, 0, Offset::Offset(0), "error").unwrap_err();
    assert!(
        error.contains("AutoOffsetReset"),
        "read below the start: {error}"
    );
    assert_eq!(
        first_record_from(&b, &topic, 0, Offset::Offset(low), "error"),
        Ok(low)
    );
}

const MIB: u64 = 1 << 20;
const RECORD_BYTES: usize = 32 * 1024;
const TOTAL_BYTES: u64 = 1 << 30;
const RETENTION_BYTES: u64 = 100 * MIB;
const SEGMENT_BYTES: u64 = 10 * MIB;
/// The producer stays at most this far ahead of the consumer, so that the consumer
/// keeps up (well inside the retained 100 MiB) whatever the machine's speed.
const WINDOW_BYTES: u64 = 40 * MIB;

/// 1 GiB through a topic that keeps 100 MiB: a consumer that keeps up reads every record
/// in order without a fetch error, the partition directory stays bounded while it runs,
/// and its segments settle at retention.bytes plus at most one segment.
#[test]
fn size_retention_bounds_the_disk_while_a_consumer_keeps_up() {
    let started = Instant::now();
    let broker = TestBroker::start(broker_opts());
    let b = broker.bootstrap();
    let topic = unique_topic("retention-size");
    admin_create_with_configs(
        &b,
        &topic,
        1,
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("retention.bytes", &RETENTION_BYTES.to_string()),
        ],
    );
    let dir = broker.data_dir().join(format!("{topic}-0"));
    let records = TOTAL_BYTES / RECORD_BYTES as u64;
    let consumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // Samples the partition directory's size until told to stop; returns the peak.
    let sampler = std::thread::spawn({
        let (dir, stop) = (dir.clone(), stop.clone());
        move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(dir_bytes(&dir, ""));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        }
    });
    // Reads from offset 0 with auto.offset.reset=error: every record, in order, each
    // carrying its own offset; the first error or gap ends it.
    let reader = std::thread::spawn({
        let (b, topic, consumed) = (b.clone(), topic.clone(), consumed.clone());
        move || -> Result<(), String> {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &b)
                .set("group.id", "millrace-compat-unused")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "error")
                .set("max.partition.fetch.bytes", "4194304")
                .create()
                .map_err(|e| e.to_string())?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Offset(0))
                .unwrap();
            c.assign(&tpl).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut next = 0;
            while next < records as i64 {
                if Instant::now() > deadline {
                    return Err(format!("read {next} of {records} records in 300 s"));
                }
                match c.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(e)) => return Err(format!("at offset {next}: {e}")),
                    Some(Ok(m)) => {
                        let payload = m.payload().unwrap_or_default();
                        let carried = payload
                            .get(..8)
                            .map(|b| i64::from_be_bytes(b.try_into().unwrap()));
                        if m.offset() != next
                            || carried != Some(next)
                            || payload.len() != RECORD_BYTES
                        {
                            return Err(format!(
                                "expected record {next}, got offset {} carrying {carried:?} ({} bytes)",
                                m.offset(),
                                payload.len()
                            ));
                        }
                        next += 1;
                        consumed.store(next as u64, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        }
    });

    let (p, rec) = producer(
        &b,
        &[
            ("linger.ms", "5"),
            ("batch.size", "1000000"),
            ("queue.buffering.max.kbytes", "65536"),
        ],
    );
    let window_records = WINDOW_BYTES / RECORD_BYTES as u64;
    let mut value = vec![0u8; RECORD_BYTES];
    for i in 0..records {
        if i >= consumed.load(Ordering::Relaxed) + window_records {
            wait_until("the consumer to catch up", Duration::from_secs(120), || {
                let read = consumed.load(Ordering::Relaxed);
                if i < read + window_records || reader.is_finished() {
                    Ok(())
                } else {
                    Err(format!("produced {i}, consumed {read}"))
                }
            });
        }
        value[..8].copy_from_slice(&(i as i64).to_be_bytes());
        send(
            &p,
            BaseRecord::with_opaque_to(&topic, i as usize).payload(&value[..]),
        );
    }
    flush_all_ok(&p, &rec, records as usize);
    drop(p);
    let read = reader.join().expect("reader thread");
    let settled = wait_until(
        "the partition to settle at its retention",
        Duration::from_secs(30),
        || {
            let bytes = dir_bytes(&dir, ".log");
            let (bases, deleted) = segments(&dir);
            if deleted == 0 && bytes <= RETENTION_BYTES + SEGMENT_BYTES + MIB {
                Ok(bytes)
            } else {
                Err(format!(
                    "{bytes} bytes, segments {bases:?}, {deleted} .deleted files"
                ))
            }
        },
    );
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler thread");
    eprintln!(
        "size retention: {} MiB through, peak {:.1} MiB on disk, segments settled at {:.1} MiB, {:.1} s",
        TOTAL_BYTES / MIB,
        peak as f64 / MIB as f64,
        settled as f64 / MIB as f64,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(read, Ok(()), "the consumer that kept up");
    let c = consumer(&b);
    let (low, high) = watermarks(&c, &topic)[0];
    assert_eq!(high, records as i64);
    assert!(
        low > 0 && segments(&dir).0.first() == Some(&low),
        "low {low}"
    );
    // Retained bytes, the active segment and the one the size rule may keep, plus what
    // arrives between checks and waits out the delete delay (100 ms each): well under
    // the 1 GiB written.
    assert!(
        peak < RETENTION_BYTES + 20 * SEGMENT_BYTES,
        "peak {peak} bytes"
    );
}
