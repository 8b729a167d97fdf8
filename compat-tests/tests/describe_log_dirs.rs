//! DescribeLogDirs through Kafka 4.4.0's `kafka-log-dirs --describe` (LogDirsCommand,
//! the Java admin client): the log directory's absolute path, no error, and every
//! partition's size equal to its segment bytes on disk; `--topic-list` narrows the output.
//! A differential run on Apache Kafka 4.4.0 checks that the output has the same shape.

mod common;

use std::path::Path;

use common::{admin_create, flush_all_ok, producer, send};
use millrace_compat_tests::{kafka_tool, unique_topic, BrokerOpts, TestBroker};
use rdkafka::producer::BaseRecord;
use serde_json::Value;

const LOG_DIRS: &str = "org.apache.kafka.tools.LogDirsCommand";

/// The JSON line `kafka-log-dirs --describe` prints.
fn describe(bootstrap: &str, topics: Option<&str>) -> Value {
    let mut args = vec!["--describe", "--bootstrap-server", bootstrap];
    if let Some(topics) = topics {
        args.extend(["--topic-list", topics]);
    }
    let out = kafka_tool(LOG_DIRS, &args, None);
    out.assert_success();
    let line = out
        .stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line: {}", out.describe()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Bytes of the `.log` files (the segments) in a partition directory.
fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Topic `a` (2 partitions) and `b` (1) with records of different sizes in each.
fn populate(bootstrap: &str) -> (String, String) {
    let (a, b) = (unique_topic("logdirs-a"), unique_topic("logdirs-b"));
    admin_create(bootstrap, &a, 2);
    admin_create(bootstrap, &b, 1);
    let (p, rec) = producer(bootstrap, &[]);
    let mut sent = 0;
    for (topic, partition, count, bytes) in [(&a, 0, 10, 100), (&a, 1, 3, 1000), (&b, 0, 50, 10)] {
        for _ in 0..count {
            let value = vec![b'x'; bytes];
            send(
                &p,
                BaseRecord::with_opaque_to(topic, sent)
                    .partition(partition)
                    .payload(&value[..]),
            );
            sent += 1;
        }
    }
    flush_all_ok(&p, &rec, sent);
    (a, b)
}

/// The one broker's one log directory of an output.
fn the_log_dir(out: &Value) -> &Value {
    assert_eq!(out["version"], 1, "{out}");
    let brokers = out["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{out}");
    assert_eq!(brokers[0]["broker"], 1, "{out}");
    let dirs = brokers[0]["logDirs"].as_array().unwrap();
    assert_eq!(dirs.len(), 1, "{out}");
    &dirs[0]
}

/// (partition name, size) of every partition of a log directory, sorted, checking that
/// each is a current replica without lag.
fn partition_sizes(dir: &Value) -> Vec<(String, u64)> {
    let mut sizes: Vec<(String, u64)> = dir["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(
                (&p["offsetLag"], &p["isFuture"]),
                (&Value::from(0), &Value::from(false))
            );
            (
                p["partition"].as_str().unwrap().to_string(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect();
    sizes.sort();
    sizes
}

#[test]
fn kafka_log_dirs_reports_the_directory_and_real_sizes() {
    let broker = TestBroker::start(BrokerOpts::default());
    let bootstrap = broker.bootstrap();
    let (a, b) = populate(&bootstrap);
    let data_dir = broker.data_dir();
    let expected = |topic: &str, partition: i32| {
        let name = format!("{topic}-{partition}");
        let bytes = segment_bytes(&data_dir.join(&name));
        assert!(bytes > 0, "{name} is empty");
        (name, bytes)
    };

    let out = describe(&bootstrap, None);
    let dir = the_log_dir(&out);
    assert_eq!(dir["logDir"], data_dir.to_str().unwrap(), "{out}");
    assert_eq!(dir["error"], Value::Null, "{out}");
    let mut wanted = vec![expected(&a, 0), expected(&a, 1), expected(&b, 0)];
    wanted.sort();
    let all = partition_sizes(dir);
    for partition in &wanted {
        assert!(all.contains(partition), "{partition:?} not in {all:?}");
    }

    let out = describe(&bootstrap, Some(&a));
    let narrowed = partition_sizes(the_log_dir(&out));
    assert_eq!(narrowed, vec![expected(&a, 0), expected(&a, 1)]);
}

/// The shape of a JSON value: objects keep their keys (with the values' shapes), arrays
/// the shapes of their elements without duplicates, scalars their type.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => {
            let mut shapes: Vec<Value> = Vec::new();
            for item in items.iter().map(shape) {
                if !shapes.contains(&item) {
                    shapes.push(item);
                }
            }
            Value::Array(shapes)
        }
        Value::Null => Value::from("null"),
        Value::Bool(_) => Value::from("bool"),
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
    }
}

/// The same scenario on Apache Kafka 4.4.0 and millrace: the same keys and value types,
/// narrowed or not (the sizes and paths differ).
#[test]
fn kafka_log_dirs_output_has_kafkas_shape() {
    let shapes = |broker: &TestBroker| {
        let bootstrap = broker.bootstrap();
        let (a, _) = populate(&bootstrap);
        [describe(&bootstrap, None), describe(&bootstrap, Some(&a))].map(|out| shape(&out))
    };
    let kafka = shapes(&TestBroker::start_kafka(BrokerOpts::default()));
    let millrace = shapes(&TestBroker::start_millrace(BrokerOpts::default()));
    assert_eq!(millrace, kafka);
}
