//! kafka-python (pure-Python client): admin create/list/delete topics, acks=all produce
//! with `.get()` on every future, manual-assign consume with seek_to_beginning and
//! seek. The script checks contents itself and prints a JSON summary asserted here.

use millrace_compat_tests::{python, unique_topic, BrokerOpts, TestBroker};

#[test]
fn kafka_python_admin_produce_consume() {
    let broker = TestBroker::start(BrokerOpts::default());
    let topic = unique_topic("py");
    let out = python("kafka_python_roundtrip.py", &[&broker.bootstrap(), &topic]);
    assert!(
        out.status.success(),
        "kafka-python script failed: {}\n{}",
        out.describe(),
        broker.log_tail()
    );
    let line = out
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary: {}", out.describe()));
    let s: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("summary {line:?} is not JSON ({e}): {}", out.describe()));
    let expected = serde_json::json!({
        "topic": topic,
        "listed_after_create": true,
        "partitions": 3,
        "produced": 300,
        "consumed": 300,
        "consumed_per_partition": [100, 100, 100],
        "seek_first_offset": 50,
        "seek_records": 50,
        "listed_after_delete": false,
    });
    assert_eq!(s, expected, "kafka-python summary");
}
