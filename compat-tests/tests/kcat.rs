//! kcat (Debian's, librdkafka 2.0.2): produce 10,000 keyed messages with headers to a
//! topic that does not exist yet (auto-created with num.partitions=3), consume them all
//! back and compare.

use std::collections::{BTreeMap, HashMap};

use millrace_compat_tests::{kcat, now_ms, unique_topic, BrokerOpts, TestBroker};

const N: usize = 10_000;
const KEYS: usize = 30;

#[test]
fn kcat_produce_consume_auto_created_topic() {
    let broker = TestBroker::start(BrokerOpts::default().partitions(3));
    let b = broker.bootstrap();
    let topic = unique_topic("kcat");

    // Input lines "key:value"; values carry the global sequence number so per-key
    // order can be checked after consuming.
    let mut input = String::new();
    for i in 0..N {
        input.push_str(&format!(
            "k{:02}:v-{i:05}-{}\n",
            i % KEYS,
            "x".repeat(i % 50)
        ));
    }
    let t0 = now_ms();
    kcat(
        &[
            "-P",
            "-b",
            &b,
            "-t",
            &topic,
            "-K",
            ":",
            "-H",
            "h1=v1",
            "-H",
            "trace=abc-123",
            // Idempotence makes librdkafka keep per-partition order even across retries,
            // so the order assertion below is a broker property, not luck.
            "-X",
            "enable.idempotence=true",
            "-X",
            "linger.ms=20",
        ],
        Some(input.as_bytes()),
    )
    .assert_success();
    let t1 = now_ms();

    // Auto-creation used num.partitions=3.
    let md = kcat(&["-L", "-b", &b, "-t", &topic], None);
    md.assert_success();
    assert!(
        md.stdout.contains("with 3 partitions"),
        "expected 3 partitions: {}",
        md.describe()
    );

    let out = kcat(
        &[
            "-C",
            "-b",
            &b,
            "-t",
            &topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p|%o|%k|%s|%h|%T\n",
        ],
        None,
    );
    out.assert_success();

    let mut seen: HashMap<usize, (i32, i64)> = HashMap::new();
    let mut per_partition: BTreeMap<i32, Vec<(i64, String, usize)>> = BTreeMap::new();
    let mut key_partition: HashMap<String, i32> = HashMap::new();
    for line in out.stdout.lines() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 6, "bad kcat line {line:?}");
        let p: i32 = f[0].parse().unwrap();
        let off: i64 = f[1].parse().unwrap();
        let (key, value, hdrs, ts) = (f[2], f[3], f[4], f[5]);
        let seq: usize = value
            .strip_prefix("v-")
            .and_then(|v| v.get(..5))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad value {value:?}"));
        assert_eq!(
            value,
            format!("v-{seq:05}-{}", "x".repeat(seq % 50)),
            "value altered"
        );
        assert_eq!(key, format!("k{:02}", seq % KEYS), "key altered for {seq}");
        assert_eq!(hdrs, "h1=v1,trace=abc-123", "headers of {seq}");
        let ts: i64 = ts.parse().unwrap();
        assert!(
            ts >= t0 - 5_000 && ts <= t1 + 5_000,
            "timestamp {ts} of {seq} not within produce window [{t0}, {t1}]"
        );
        // The default partitioner hashes the key: one key, one partition.
        let kp = *key_partition.entry(key.to_string()).or_insert(p);
        assert_eq!(kp, p, "key {key} in partitions {kp} and {p}");
        assert!(
            seen.insert(seq, (p, off)).is_none(),
            "message {seq} seen twice"
        );
        per_partition
            .entry(p)
            .or_default()
            .push((off, key.to_string(), seq));
    }
    let missing: Vec<usize> = (0..N).filter(|i| !seen.contains_key(i)).take(10).collect();
    assert!(
        missing.is_empty(),
        "missing messages (first 10): {missing:?}"
    );
    assert_eq!(seen.len(), N);
    assert_eq!(
        per_partition.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2],
        "all 3 partitions should get data"
    );

    for (p, msgs) in &mut per_partition {
        msgs.sort();
        // Offsets are dense from 0 in each partition.
        for (i, (off, _, _)) in msgs.iter().enumerate() {
            assert_eq!(*off, i as i64, "partition {p} offsets not dense");
        }
        // Within a key, offsets follow produce order.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (off, key, seq) in msgs.iter() {
            if let Some(prev) = last.insert(key.as_str(), *seq) {
                assert!(
                    prev < *seq,
                    "partition {p} offset {off}: key {key} seq {seq} after {prev}"
                );
            }
        }
    }
}
