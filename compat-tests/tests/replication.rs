//! Partition data replicated the Kafka way across three real millrace nodes: followers
//! fetch from the leader, acks=all answers once the in-sync replicas have the batch, and
//! the followers' logs are the leader's byte for byte.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestCluster};
use rdkafka::consumer::Consumer;
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

/// The leader of each partition of `topic`, as `bootstrap` answers Metadata.
fn leaders(bootstrap: &str, topic: &str) -> Result<Vec<i32>, String> {
    let consumer = common::consumer(bootstrap);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or("topic absent")?;
    let mut leaders: Vec<(i32, i32)> = topic
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect();
    leaders.sort();
    Ok(leaders.into_iter().map(|(_, leader)| leader).collect())
}

#[test]
fn killing_the_leader_mid_load_loses_no_acknowledged_record() {
    const LOAD: usize = 20_000;
    let opts = BrokerOpts::default()
        .set("broker.session.timeout.ms", "3000")
        .set("broker.heartbeat.interval.ms", "500");
    let mut cluster = TestCluster::start_millrace(3, opts);
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("failover");
    common::admin_create_replicated(
        &bootstrap,
        &topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );
    let victim = leaders(&bootstrap, &topic).expect("leaders")[0];

    let (producer, recorder) = common::producer(&bootstrap, &[("linger.ms", "2")]);
    let mut killed_at = None;
    for i in 0..LOAD {
        if i == LOAD / 3 {
            // Mid-load: once acknowledgements flow, with more records in flight.
            wait_until(
                "first acknowledgements",
                Duration::from_secs(30),
                || match recorder.count() {
                    0 => Err("none yet".to_string()),
                    n => Ok(n),
                },
            );
            cluster.node(victim).kill9();
            killed_at = Some((std::time::Instant::now(), recorder.count()));
        }
        let key = format!("k{i}");
        let value = format!("v{i}");
        common::send(
            &producer,
            BaseRecord::with_opaque_to(&topic, i)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
        if i % 200 == 0 {
            // Keep a steady load rather than one burst.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // How long producers wait for acknowledgements after the kill (for the record).
    if let Some((at, acked_before)) = killed_at {
        let resumed = wait_until(
            "acknowledgements after the kill",
            Duration::from_secs(60),
            || match recorder.count() > acked_before {
                true => Ok(at.elapsed()),
                false => Err(format!("{acked_before} acknowledged")),
            },
        );
        eprintln!("acknowledgements resumed {resumed:?} after the kill");
    }
    let deliveries = common::flush_all_ok(&producer, &recorder, LOAD);
    drop(producer);
    if let Some((at, acked_before)) = killed_at {
        eprintln!(
            "leader {victim} killed after {acked_before} acknowledgements; all {LOAD} \
             acknowledged {:?} later",
            at.elapsed()
        );
    }

    let survivors: Vec<String> = (1..=3)
        .filter(|id| *id != victim)
        .map(|id| cluster.node(id).bootstrap())
        .collect();
    let survivors = survivors.join(",");
    let moved = wait_until("new leaders elected", Duration::from_secs(30), || {
        let now = leaders(&survivors, &topic)?;
        if now.iter().all(|l| *l >= 0 && *l != victim) {
            Ok(now)
        } else {
            Err(format!("leaders {now:?}"))
        }
    });
    eprintln!("leaders after the kill: {moved:?}");

    // Every acknowledged record, exactly once, at the offset it was acknowledged with.
    let acknowledged = common::delivered_positions(&deliveries);
    let consumed = common::consume_all(&survivors, &topic);
    let mut read: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut values = std::collections::BTreeSet::new();
    for message in consumed.into_iter().flatten() {
        let value = String::from_utf8(message.value.expect("value")).expect("utf-8");
        assert!(values.insert(value.clone()), "{value} read twice");
        read.insert((message.partition, message.offset), value);
    }
    for (id, position) in &acknowledged {
        assert_eq!(
            read.get(position),
            Some(&format!("v{id}")),
            "record {id} at {position:?}"
        );
    }
    assert_eq!(read.len(), LOAD, "records read");

    // The killed node comes back, catches up, and holds the same logs again.
    cluster.node(victim).restart();
    let dirs: Vec<_> = (1..=3).map(|id| cluster.node(id).data_dir()).collect();
    for partition in 0..PARTITIONS {
        wait_until(
            &format!("partition {partition} identical on every node after the rejoin"),
            Duration::from_secs(60),
            || {
                let logs = dirs
                    .iter()
                    .map(|dir| log_bytes(dir, &topic, partition))
                    .collect::<Result<Vec<_>, _>>()?;
                let sizes: Vec<usize> = logs.iter().map(Vec::len).collect();
                if logs.windows(2).all(|pair| pair[0] == pair[1]) {
                    Ok(())
                } else {
                    Err(format!("log sizes {sizes:?}"))
                }
            },
        );
    }
}
