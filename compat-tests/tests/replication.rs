//! Partition data replicated the Kafka way across three real millrace nodes: followers
//! fetch from the leader, acks=all answers once the in-sync replicas have the batch, and
//! the followers' logs are the leader's byte for byte.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestCluster};
use rdkafka::producer::BaseRecord;

const PARTITIONS: i32 = 3;
const RECORDS: usize = 3_000;

/// The bytes of every segment of `<data dir>/<topic>-<partition>`, in offset order.
fn log_bytes(data_dir: &Path, topic: &str, partition: i32) -> Result<Vec<u8>, String> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    segments.sort();
    let mut bytes = Vec::new();
    for segment in segments {
        bytes.extend(std::fs::read(&segment).map_err(|e| format!("{}: {e}", segment.display()))?);
    }
    Ok(bytes)
}

#[test]
fn followers_copy_the_leaders_log_and_acks_all_waits_for_them() {
    let mut cluster = TestCluster::start_millrace(3, BrokerOpts::default());
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("replicated");
    common::admin_create_replicated(
        &bootstrap,
        &topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );

    let (producer, recorder) = common::producer(&bootstrap, &[]);
    for i in 0..RECORDS {
        let key = format!("k{i}");
        let value = format!("v{i}");
        common::send(
            &producer,
            BaseRecord::with_opaque_to(&topic, i)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
    }
    let deliveries = common::flush_all_ok(&producer, &recorder, RECORDS);
    drop(producer);

    // Every acknowledged record is read once, at the offset it was acknowledged with.
    let acknowledged = common::delivered_positions(&deliveries);
    let consumed = common::consume_all(&bootstrap, &topic);
    let mut read: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for message in consumed.into_iter().flatten() {
        let value = String::from_utf8(message.value.expect("value")).expect("utf-8");
        assert!(
            read.insert((message.partition, message.offset), value)
                .is_none(),
            "offset read twice"
        );
    }
    assert_eq!(read.len(), RECORDS, "records read");
    for (id, position) in &acknowledged {
        assert_eq!(
            read.get(position),
            Some(&format!("v{id}")),
            "record {id} at {position:?}"
        );
    }

    // The three replicas hold the same bytes.
    let dirs: Vec<_> = (1..=3).map(|id| cluster.node(id).data_dir()).collect();
    for partition in 0..PARTITIONS {
        wait_until(
            &format!("partition {partition} identical on every node"),
            Duration::from_secs(30),
            || {
                let logs = dirs
                    .iter()
                    .map(|dir| log_bytes(dir, &topic, partition))
                    .collect::<Result<Vec<_>, _>>()?;
                let sizes: Vec<usize> = logs.iter().map(Vec::len).collect();
                if sizes[0] > 0 && logs.windows(2).all(|pair| pair[0] == pair[1]) {
                    Ok(())
                } else {
                    Err(format!("log sizes {sizes:?}"))
                }
            },
        );
    }
}
