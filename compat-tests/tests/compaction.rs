//! Log compaction over TCP with librdkafka (rdkafka 0.39): a topic created with
//! `cleanup.policy=compact`, small segments, `min.cleanable.dirty.ratio=0.01` and a short
//! `delete.retention.ms` gets overwrites and tombstones; once the broker's cleaner has
//! run, a consumer from the beginning sees each live key once, with its latest value at
//! the offset its producer was told, and no tombstoned key. The same scenario runs on
//! Apache Kafka 4.4.0 (differential: the same keys survive with the same values). A
//! keyless record is refused by a compacted topic.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    admin_create_with_configs, consume_all, delivered_positions, flush_all_ok, producer, send, Msg,
};
use millrace_compat_tests::{millrace_bin, unique_topic, wait_until, BrokerOpts, TestBroker};
use rdkafka::producer::{BaseRecord, Producer};

/// Keys written every round; the first `TOMBSTONED` are deleted in the last round.
const KEYS: usize = 20;
const ROUNDS: usize = 4;
const TOMBSTONED: usize = 5;
/// Keys overwritten while waiting, so that the log keeps getting dirty and its active
/// segment keeps rolling (`segment.ms`) until the cleaner has removed the tombstones.
const FILLER_KEYS: usize = 3;
const CLEANED_DEADLINE: Duration = Duration::from_secs(120);

fn opts() -> BrokerOpts {
    BrokerOpts::default().set("log.cleaner.backoff.ms", "100")
}

fn create_compacted(bootstrap: &str, topic: &str) {
    admin_create_with_configs(
        bootstrap,
        topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            // Kafka's test-only override: segments far below segment.bytes' 1 MiB floor.
            ("internal.segment.bytes", "2048"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "500"),
        ],
    );
}

fn key(i: usize) -> String {
    format!("k{i:02}")
}

fn value(round: usize, i: usize) -> String {
    format!("round{round}-{}", key(i))
}

fn text(bytes: &Option<Vec<u8>>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| String::from_utf8(b.clone()).expect("utf-8"))
}

/// What survived, as key -> the values and offsets of its records, in log order.
type Survivors = BTreeMap<String, Vec<(i64, Option<String>)>>;

fn survivors(records: &[Msg]) -> Survivors {
    let mut out: Survivors = BTreeMap::new();
    for m in records {
        let key = text(&m.key).expect("every record of a compacted topic has a key");
        out.entry(key).or_default().push((m.offset, text(&m.value)));
    }
    out
}

/// The scenario on one broker: returns the topic and the data keys' surviving
/// (key, value) pairs after checking record by record that they are the last round's
/// records at their offsets.
fn scenario(broker: &TestBroker) -> (String, BTreeMap<String, Option<String>>) {
    let b = broker.bootstrap();
    let who = format!("{:?}", broker.target());
    let topic = unique_topic("compacted");
    create_compacted(&b, &topic);
    let (p, rec) = producer(&b, &[("linger.ms", "0")]);
    for round in 0..ROUNDS {
        for i in 0..KEYS {
            let key = key(i);
            let value = value(round, i);
            let mut record = BaseRecord::with_opaque_to(&topic, round * KEYS + i)
                .partition(0)
                .key(key.as_bytes());
            if round + 1 < ROUNDS || i >= TOMBSTONED {
                record = record.payload(value.as_bytes());
            }
            send(&p, record);
        }
        flush_all_ok(&p, &rec, (round + 1) * KEYS);
    }
    let delivered = delivered_positions(&rec.snapshot());
    assert_eq!(
        delivered.len(),
        ROUNDS * KEYS,
        "{who}: every record acknowledged"
    );

    // Keep the log dirty (and its last data segment sealed) until the cleaner has kept
    // only the latest record of every data key and dropped the tombstones.
    let mut filler = 0;
    let records = wait_until(
        &format!("{who}: the log compacted"),
        CLEANED_DEADLINE,
        || {
            for i in 0..FILLER_KEYS {
                let value = format!("filler{filler}");
                send(
                    &p,
                    BaseRecord::with_opaque_to(&topic, ROUNDS * KEYS + filler * FILLER_KEYS + i)
                        .partition(0)
                        .key(format!("f{i}").as_bytes())
                        .payload(value.as_bytes()),
                );
            }
            filler += 1;
            flush_all_ok(&p, &rec, ROUNDS * KEYS + filler * FILLER_KEYS);
            let records = consume_all(&b, &topic).remove(0);
            let survivors = survivors(&records);
            let data_records: usize = (0..KEYS)
                .map(|i| survivors.get(&key(i)).map_or(0, Vec::len))
                .sum();
            if data_records == KEYS - TOMBSTONED {
                Ok(records)
            } else {
                Err(format!(
                    "{data_records} data records in {} records",
                    records.len()
                ))
            }
        },
    );

    // Record by record: offsets increase, each live key once with its last value at the
    // offset its delivery report gave, no tombstoned key, every filler key's last value.
    assert!(
        records.windows(2).all(|w| w[0].offset < w[1].offset),
        "{who}: offsets increase"
    );
    let survivors = survivors(&records);
    for i in 0..KEYS {
        let got = survivors.get(&key(i));
        if i < TOMBSTONED {
            assert_eq!(got, None, "{who}: {} was deleted", key(i));
            continue;
        }
        let (_, offset) = delivered[&((ROUNDS - 1) * KEYS + i)];
        assert_eq!(
            got,
            Some(&vec![(offset, Some(value(ROUNDS - 1, i)))]),
            "{who}: {}",
            key(i)
        );
    }
    for i in 0..FILLER_KEYS {
        let last = survivors[&format!("f{i}")].last().cloned().unwrap();
        assert_eq!(last.1, Some(format!("filler{}", filler - 1)), "{who}: f{i}");
    }

    // A keyless record is refused (a producer without idempotence: the refusal is final).
    let (plain, plain_rec) = producer(&b, &[("enable.idempotence", "false"), ("acks", "1")]);
    send(
        &plain,
        BaseRecord::with_opaque_to(&topic, 0)
            .partition(0)
            .payload(&b"no key"[..]),
    );
    plain
        .flush(Duration::from_secs(30))
        .expect("producer flush");
    let refused = wait_until(
        "the keyless record's report",
        Duration::from_secs(30),
        || {
            plain_rec
                .snapshot()
                .pop()
                .ok_or_else(|| "no report yet".to_string())
        },
    );
    let error = refused
        .result
        .expect_err("a keyless record in a compacted topic");
    assert!(error.contains("InvalidRecord"), "{who}: {error}");

    let live = survivors
        .into_iter()
        .filter(|(key, _)| key.starts_with('k'))
        .map(|(key, records)| (key, records.last().and_then(|(_, v)| v.clone())))
        .collect();
    (topic, live)
}

fn records_of(broker: &TestBroker, topic: &str) -> Vec<(i64, Option<String>, Option<String>)> {
    consume_all(&broker.bootstrap(), topic)
        .remove(0)
        .into_iter()
        .map(|m| (m.offset, text(&m.key), text(&m.value)))
        .collect()
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_of_each_key_at_its_offset() {
    let mut broker = TestBroker::start(opts());
    let (topic, live) = scenario(&broker);
    assert_eq!(live.len(), KEYS - TOMBSTONED);
    // The cleaned segments are what a restart opens.
    let before = records_of(&broker, &topic);
    broker.stop_graceful();
    broker.restart();
    assert_eq!(records_of(&broker, &topic), before);
}

#[test]
fn compaction_keeps_the_same_keys_and_values_as_kafka() {
    eprintln!("compaction_keeps_the_same_keys_and_values_as_kafka runs Apache Kafka AND millrace");
    millrace_bin();
    let kafka = TestBroker::start_kafka(opts());
    let (_, reference) = scenario(&kafka);
    drop(kafka);
    let millrace = TestBroker::start_millrace(opts());
    let (_, got) = scenario(&millrace);
    assert_eq!(
        got, reference,
        "surviving (key, latest value) differ from Kafka"
    );
}
