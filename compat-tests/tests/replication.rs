//! Partition data replicated the Kafka way across three real millrace nodes: followers
//! fetch from the leader, acks=all answers once the in-sync replicas have the batch, and
//! the followers' logs are the leader's byte for byte.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestCluster};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Message;

use common::cluster::{self, assert_read_once, controller_of, leaders, log_bytes, send_record};

const PARTITIONS: i32 = 3;
const RECORDS: usize = 3_000;

/// Three nodes with `opts`, a topic of [`PARTITIONS`] partitions on all of them
/// (`min.insync.replicas` 2) and `records` idempotent acks=all records `v<i>` in it, all
/// acknowledged: the cluster, the topic and the delivery reports.
fn cluster_with_records(
    opts: BrokerOpts,
    prefix: &str,
    records: usize,
) -> (TestCluster, String, Vec<common::Delivery>) {
    let cluster = TestCluster::start_millrace(3, opts);
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic(prefix);
    common::admin_create_replicated(
        &bootstrap,
        &topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );
    let (producer, recorder) = common::producer(&bootstrap, &[]);
    for i in 0..records {
        send_record(&producer, &topic, i);
    }
    let deliveries = common::flush_all_ok(&producer, &recorder, records);
    (cluster, topic, deliveries)
}

/// A 3 s broker session (heartbeats every 500 ms): a silent node is fenced and its
/// leaderships move within seconds, so failures resolve quickly.
fn short_sessions() -> BrokerOpts {
    BrokerOpts::default()
        .set("broker.session.timeout.ms", "3000")
        .set("broker.heartbeat.interval.ms", "500")
}

/// Waits until `recorder` has a delivery report: acknowledgements flow.
fn wait_for_first_ack(recorder: &common::Recorder) {
    wait_until(
        "first acknowledgements",
        Duration::from_secs(30),
        || match recorder.count() {
            0 => Err("none yet".to_string()),
            n => Ok(n),
        },
    );
}

/// Waits until the three nodes hold the same, non-empty logs of `topic`.
fn wait_for_identical_logs(cluster: &mut TestCluster, topic: &str, deadline: Duration) {
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    cluster::wait_for_identical_logs(cluster, &[1, 2, 3], topic, &partitions, deadline);
}

#[test]
fn followers_copy_the_leaders_log_and_acks_all_waits_for_them() {
    let (mut cluster, topic, deliveries) =
        cluster_with_records(BrokerOpts::default(), "replicated", RECORDS);
    let bootstrap = cluster.bootstrap();

    // Every acknowledged record is read once, at the offset it was acknowledged with,
    // and the three replicas hold the same bytes.
    assert_read_once(&bootstrap, &topic, &deliveries, RECORDS);
    wait_for_identical_logs(&mut cluster, &topic, Duration::from_secs(30));
}

#[test]
fn killing_the_leader_mid_load_loses_no_acknowledged_record() {
    const LOAD: usize = 20_000;
    let opts = short_sessions();
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
            wait_for_first_ack(&recorder);
            cluster.node(victim).kill9();
            killed_at = Some((std::time::Instant::now(), recorder.count()));
        }
        send_record(&producer, &topic, i);
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
    assert_read_once(&survivors, &topic, &deliveries, LOAD);

    // The killed node comes back, catches up, and holds the same logs again.
    cluster.node(victim).restart();
    wait_for_identical_logs(&mut cluster, &topic, Duration::from_secs(60));
}

/// The node coordinating `group`, as `addr` answers FindCoordinator (v3).
fn coordinator_of(addr: &str, group: &str) -> Result<i32, String> {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::StrBytes;
    use millrace_compat_tests::wire::{decode_response, encode_request, round_trip};
    const VERSION: i16 = 3;
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let payload = round_trip(
        addr,
        &encode_request(ApiKey::FindCoordinator, &request, VERSION, 7),
        Duration::from_secs(10),
    )
    .map_err(|e| format!("FindCoordinator to {addr}: {e}"))?;
    let (_, response) =
        decode_response::<FindCoordinatorResponse>(ApiKey::FindCoordinator, &payload, VERSION)?;
    match response.error_code {
        0 => Ok(response.node_id.0),
        code => Err(format!("FindCoordinator error {code}")),
    }
}

/// Leaves the group and lets the consumer go without destroying it: rd_kafka_destroy of
/// a consumer that was subscribed can block in librdkafka's close; its threads end with
/// the test process.
fn leave(consumer: rdkafka::consumer::BaseConsumer) {
    consumer.unsubscribe();
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    std::mem::forget(consumer);
}

/// A group consumer (subscribe, manual commits, from the earliest offset).
fn group_consumer(bootstrap: &str, group: &str) -> rdkafka::consumer::BaseConsumer {
    rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("group consumer")
}

#[test]
fn a_group_keeps_its_offsets_when_its_coordinator_is_killed() {
    const LOAD: usize = 3_000;
    let opts = short_sessions();
    let (mut cluster, topic, _) = cluster_with_records(opts, "grouped", LOAD);
    let bootstrap = cluster.bootstrap();
    let group = unique_topic("group");

    // Read and commit about half.
    let consumer = group_consumer(&bootstrap, &group);
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = std::collections::BTreeSet::new();
    wait_until(
        "half the records read and committed",
        Duration::from_secs(60),
        || {
            for _ in 0..1_000 {
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    break;
                };
                let message = message.map_err(|e| e.to_string())?;
                seen.insert((message.partition(), message.offset()));
            }
            match seen.len() >= LOAD / 2 {
                true => Ok(()),
                false => Err(format!("{} read", seen.len())),
            }
        },
    );
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
    let committed = consumer
        .committed(Duration::from_secs(10))
        .expect("committed offsets");
    leave(consumer);

    // Kill the group's coordinator; another node takes over its offsets shard.
    let coordinator = coordinator_of(&cluster.node(1).bootstrap(), &group).expect("coordinator");
    cluster.node(coordinator).kill9();
    let survivors: Vec<String> = (1..=3)
        .filter(|id| *id != coordinator)
        .map(|id| cluster.node(id).bootstrap())
        .collect();
    let new_coordinator =
        wait_until(
            "a new coordinator",
            Duration::from_secs(30),
            || match coordinator_of(&survivors[0], &group)? {
                node if node != coordinator => Ok(node),
                node => Err(format!("still {node}")),
            },
        );
    eprintln!("coordinator {coordinator} killed; {new_coordinator} took over");

    // A new member resumes from the committed offsets and finishes the topic.
    let survivors = survivors.join(",");
    let consumer = group_consumer(&survivors, &group);
    let resumed = consumer
        .committed_offsets(committed.clone(), Duration::from_secs(30))
        .expect("committed offsets from the new coordinator");
    for (before, after) in committed.elements().iter().zip(resumed.elements()) {
        assert_eq!(
            before.offset(),
            after.offset(),
            "partition {} committed offset",
            before.partition()
        );
    }
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut rest = std::collections::BTreeSet::new();
    let starts: BTreeMap<i32, i64> = committed
        .elements()
        .iter()
        .filter_map(|e| {
            e.offset()
                .to_raw()
                .map(|offset| (e.partition(), offset.max(0)))
        })
        .collect();
    wait_until("the rest read", Duration::from_secs(60), || {
        for _ in 0..1_000 {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                break;
            };
            let message = message.map_err(|e| e.to_string())?;
            let start = starts.get(&message.partition()).copied().unwrap_or(0);
            assert!(
                message.offset() >= start,
                "partition {} re-read offset {} below its committed {start}",
                message.partition(),
                message.offset()
            );
            rest.insert((message.partition(), message.offset()));
        }
        let total: usize = starts.values().map(|&o| o as usize).sum::<usize>() + rest.len();
        match total >= LOAD {
            true => Ok(()),
            false => Err(format!("{total} of {LOAD}")),
        }
    });
    leave(consumer);
}

/// Each partition's ISR of `topic` (sorted).
fn isrs(bootstrap: &str, topic: &str) -> Result<Vec<Vec<i32>>, String> {
    Ok(cluster::partition_views(bootstrap, topic)?
        .into_iter()
        .map(|p| p.isr)
        .collect())
}

#[test]
fn a_stopped_broker_leaves_the_isr_and_rejoins_it_after_sigcont() {
    const LOAD: usize = 3_000;
    let opts = short_sessions().set("replica.lag.time.max.ms", "5000");
    let (mut cluster, topic, mut deliveries) = cluster_with_records(opts, "stopped", LOAD);
    let bootstrap = cluster.bootstrap();
    // The quorum leader: its pause also stalls the controller until another is elected.
    let victim = controller_of(&cluster.node(1).bootstrap()).expect("controller");
    let pid = cluster.node(victim).pid().expect("running") as i32;
    // SAFETY: signals to the broker process this test started (its own process group).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP");

    // The others shrink the ISR without it; min.insync.replicas (2) still holds, so
    // acks=all produces go on.
    let others: String = (1..=3)
        .filter(|id| *id != victim)
        .map(|id| cluster.node(id).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    wait_until(
        "the stopped broker out of every ISR",
        Duration::from_secs(30),
        || {
            let isrs = isrs(&others, &topic)?;
            match isrs
                .iter()
                .all(|isr| isr.len() == 2 && !isr.contains(&victim))
            {
                true => Ok(()),
                false => Err(format!("ISRs {isrs:?}")),
            }
        },
    );
    let (producer, recorder) = common::producer(&others, &[]);
    for i in LOAD..2 * LOAD {
        send_record(&producer, &topic, i);
    }
    deliveries.extend(common::flush_all_ok(&producer, &recorder, LOAD));
    drop(producer);

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0, "SIGCONT");
    wait_until(
        "the broker back in every ISR",
        Duration::from_secs(60),
        || {
            let isrs = isrs(&bootstrap, &topic)?;
            match isrs.iter().all(|isr| isr == &[1, 2, 3]) {
                true => Ok(()),
                false => Err(format!("ISRs {isrs:?}")),
            }
        },
    );
    assert_read_once(&bootstrap, &topic, &deliveries, 2 * LOAD);
    wait_for_identical_logs(&mut cluster, &topic, Duration::from_secs(60));
}

#[test]
fn a_rolling_restart_under_load_loses_nothing() {
    const FIRST: usize = 1_000;
    let opts = short_sessions().set("replica.lag.time.max.ms", "5000");
    let (mut cluster, topic, mut deliveries) = cluster_with_records(opts, "rolling", FIRST);
    let bootstrap = cluster.bootstrap();

    // An idempotent acks=all producer keeps sending while every node restarts in turn.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = std::thread::spawn({
        let (bootstrap, topic, stop) = (bootstrap.clone(), topic.clone(), stop.clone());
        move || {
            let (producer, recorder) = common::producer(&bootstrap, &[]);
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let id = FIRST + sent;
                send_record(&producer, &topic, id);
                sent += 1;
                if sent % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            common::flush_all_ok(&producer, &recorder, sent)
        }
    });
    for id in 1..=3 {
        // SIGTERM: a controlled shutdown moves its leaderships first.
        cluster.node(id).stop_graceful();
        cluster.node(id).restart();
        wait_until(
            &format!("node {id} back in every ISR"),
            Duration::from_secs(60),
            || {
                let isrs = isrs(&bootstrap, &topic)?;
                match isrs.iter().all(|isr| isr == &[1, 2, 3]) {
                    true => Ok(()),
                    false => Err(format!("ISRs {isrs:?}")),
                }
            },
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    // Every send was acknowledged (flush_all_ok fails on any delivery error).
    let more = load.join().expect("producer thread");
    let total = FIRST + more.len();
    eprintln!("{} records produced during the rolling restart", more.len());
    deliveries.extend(more);
    assert_read_once(&bootstrap, &topic, &deliveries, total);
    wait_for_identical_logs(&mut cluster, &topic, Duration::from_secs(60));
}

/// Whether node `id`'s log of `topic`-`partition` holds `needle` anywhere.
fn log_contains(
    cluster: &mut TestCluster,
    id: i32,
    topic: &str,
    partition: i32,
    needle: &[u8],
) -> bool {
    log_bytes(&cluster.node(id).data_dir(), topic, partition)
        .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

/// A network partition (network namespaces joined by a bridge; see
/// `millrace_compat_tests::netns`) cuts the leader of partition 0 off from the other two
/// nodes while clients still reach every node. On the minority side, a producer that
/// only knows the old leader gets no acknowledgement: its records reach the old leader's
/// log but never the ISR. The majority fences the old leader and elects a new one; its
/// producer keeps being acknowledged. After healing, the old leader truncates the
/// divergent records and holds the same logs as the others, and every acknowledged
/// record is there exactly once.
#[test]
fn a_partitioned_leader_acknowledges_nothing_and_truncates_after_healing() {
    const LOAD: usize = 9_000;
    const MINORITY_RECORDS: usize = 50;
    let network = millrace_compat_tests::netns::Network::create(3).expect("network namespaces");
    let opts = short_sessions().set("replica.lag.time.max.ms", "3000");
    let mut cluster = TestCluster::start_millrace_in(&network, opts);
    let topic = unique_topic("partitioned");
    common::admin_create_replicated(
        &cluster.bootstrap(),
        &topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );
    let isolated = leaders(&cluster.bootstrap(), &topic).expect("leaders")[0];
    let old_leader = cluster.node(isolated).bootstrap();
    let majority: Vec<String> = (1..=3)
        .filter(|id| *id != isolated)
        .map(|id| cluster.node(id).bootstrap())
        .collect();
    let majority = majority.join(",");

    // The minority producer knows only the old leader, and gives up on a record soon.
    let (minority, minority_recorder) = common::producer(
        &old_leader,
        &[
            ("message.timeout.ms", "8000"),
            ("request.timeout.ms", "5000"),
        ],
    );
    // Acknowledged before the cut: the minority producer has its producer id.
    common::send(
        &minority,
        BaseRecord::with_opaque_to(&topic, MINORITY_RECORDS)
            .partition(0)
            .payload(b"before the cut"),
    );
    minority.flush(Duration::from_secs(30)).expect("flush");
    assert!(
        matches!(minority_recorder.snapshot().as_slice(), [d] if d.result.is_ok()),
        "{:?}",
        minority_recorder.snapshot()
    );
    let (producer, recorder) = common::producer(
        &majority,
        &[("linger.ms", "2"), ("request.timeout.ms", "10000")],
    );
    let mut cut_at = None;
    for i in 0..LOAD {
        if i == LOAD / 3 {
            wait_for_first_ack(&recorder);
            network.isolate(isolated);
            cut_at = Some(std::time::Instant::now());
            for m in 0..MINORITY_RECORDS {
                let value = format!("minority-{m}");
                common::send(
                    &minority,
                    BaseRecord::with_opaque_to(&topic, m)
                        .partition(0)
                        .payload(value.as_bytes()),
                );
            }
        }
        if i == 2 * LOAD / 3 {
            let elected = wait_until(
                "a new leader of partition 0 on the majority side",
                Duration::from_secs(30),
                || match leaders(&majority, &topic)?[0] {
                    leader if leader >= 0 && leader != isolated => Ok(leader),
                    leader => Err(format!("leader {leader}")),
                },
            );
            if let Some(at) = cut_at {
                eprintln!(
                    "node {elected} leads partition 0 {:?} after the cut",
                    at.elapsed()
                );
            }
            // The old leader appended the minority's records (they diverge) but could
            // not replicate them: every one fails, none is acknowledged.
            wait_until(
                "the minority's records in the old leader's log",
                Duration::from_secs(30),
                || match log_contains(&mut cluster, isolated, &topic, 0, b"minority-") {
                    true => Ok(()),
                    false => Err("not appended".to_string()),
                },
            );
            let minority_reports = wait_until(
                "the minority's delivery reports",
                Duration::from_secs(60),
                || match minority_recorder.count() {
                    n if n > MINORITY_RECORDS => Ok(minority_recorder.snapshot()),
                    n => Err(format!("{n}/{} reports", MINORITY_RECORDS + 1)),
                },
            );
            let acknowledged: Vec<_> = minority_reports
                .iter()
                .filter(|d| d.id < MINORITY_RECORDS && d.result.is_ok())
                .collect();
            assert!(
                acknowledged.is_empty(),
                "the isolated leader acknowledged {acknowledged:?}"
            );
            eprintln!("minority after the cut: {:?}", minority_reports[1].result);
            network.heal(isolated);
        }
        send_record(&producer, &topic, i);
        if i % 200 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let deliveries = common::flush_all_ok(&producer, &recorder, LOAD);
    drop(producer);
    drop(minority);

    // Healed: the old leader follows, truncates what diverged, and matches the others.
    wait_for_identical_logs(&mut cluster, &topic, Duration::from_secs(60));
    for id in 1..=3 {
        assert!(
            !log_contains(&mut cluster, id, &topic, 0, b"minority-"),
            "node {id} still holds a minority record"
        );
    }
    // The load, and the minority's one record from before the cut.
    assert_read_once(&cluster.bootstrap(), &topic, &deliveries, LOAD + 1);
}

/// The `@@ <word> <fields..>` lines a `FailoverClient` printed so far.
fn client_events(client: &millrace_compat_tests::ClientProcess, word: &str) -> Vec<Vec<String>> {
    client
        .stdout_lines()
        .iter()
        .filter_map(|line| line.strip_prefix("@@ "))
        .map(|line| line.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|fields| fields[0] == word)
        .map(|fields| fields[1..].to_vec())
        .collect()
}

/// An acknowledgement a `FailoverClient` producer printed.
struct JavaAck {
    id: usize,
    position: (i32, i64),
    at_ms: u64,
}

/// `acked <id> <partition> <offset> <epoch ms>` lines, in the order printed.
fn java_acks(producer: &millrace_compat_tests::ClientProcess) -> Vec<JavaAck> {
    client_events(producer, "acked")
        .into_iter()
        .map(|f| JavaAck {
            id: f[0].parse().unwrap(),
            position: (f[1].parse().unwrap(), f[2].parse().unwrap()),
            at_ms: f[3].parse().unwrap(),
        })
        .collect()
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Kills node `victim` mid-load and waits until every partition has acknowledged
/// plenty of records since (more than a producer keeps in flight); returns the kill time.
fn kill_mid_load(
    cluster: &mut TestCluster,
    victim: i32,
    producer: &millrace_compat_tests::ClientProcess,
) -> u64 {
    cluster.node(victim).kill9();
    let killed_ms = epoch_ms();
    wait_until(
        &format!("acknowledgements on every partition after killing node {victim}"),
        Duration::from_secs(60),
        || {
            let mut since: BTreeMap<i32, usize> = BTreeMap::new();
            for ack in java_acks(producer).iter().filter(|a| a.at_ms > killed_ms) {
                *since.entry(ack.position.0).or_default() += 1;
            }
            match since.len() as i32 == PARTITIONS && since.values().all(|n| *n >= 100) {
                true => Ok(()),
                false => Err(format!("acknowledged since, per partition: {since:?}")),
            }
        },
    );
    killed_ms
}

/// The longest pause between two acknowledgements of one partition from a second before
/// `killed_ms` until `until_ms`: how long the kill held producers up.
fn longest_ack_pause(acks: &[JavaAck], killed_ms: u64, until_ms: u64) -> Duration {
    let mut times: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    for ack in acks {
        if ack.at_ms + 1_000 >= killed_ms && ack.at_ms < until_ms {
            times.entry(ack.position.0).or_default().push(ack.at_ms);
        }
    }
    let pause_ms = times
        .values_mut()
        .flat_map(|t| {
            t.sort_unstable();
            t.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0);
    Duration::from_millis(pause_ms)
}

/// Apache Kafka's Java client (an idempotent acks=all KafkaProducer and a KafkaConsumer
/// in a group, committing after each poll) through two kills mid-load: first the
/// quorum leader (the active controller), then, once it is back, the leader of partition
/// 0. The producer sees no failure; the group reads every acknowledged record exactly
/// once, in order per partition, at its acknowledged offset.
#[test]
fn the_java_client_rides_out_killing_the_controller_then_a_partition_leader() {
    use millrace_compat_tests::{java_program_command, ClientProcess};
    const LOAD: usize = 25_000;
    // Kafka's default timeouts (broker.session.timeout.ms 9 s): the pauses it prints are
    // what a default deployment sees.
    let mut cluster = TestCluster::start_millrace(3, BrokerOpts::default());
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("java-failover");
    common::admin_create_replicated(
        &bootstrap,
        &topic,
        PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );
    let group = unique_topic("java-failover-group");
    let java = |args: &[&str]| {
        let mut cmd = java_program_command("failover", "FailoverClient", "256m");
        cmd.args(args);
        cmd
    };
    let count = LOAD.to_string();
    let mut consumer = ClientProcess::spawn(
        "java-consumer",
        java(&["consume", &bootstrap, &topic, &group, &count]),
        None,
    );
    let mut producer = ClientProcess::spawn(
        "java-producer",
        java(&["produce", &bootstrap, &topic, &count]),
        None,
    );

    let acked_at_least = |n: usize| {
        wait_until(
            &format!("{n} acknowledgements"),
            Duration::from_secs(120),
            || match java_acks(&producer).len() {
                have if have >= n => Ok(()),
                have => Err(format!("{have} acknowledged; {}", producer.stderr_tail(5))),
            },
        )
    };
    acked_at_least(LOAD / 5);
    let controller = controller_of(&cluster.node(1).bootstrap()).expect("controller");
    let controller_killed_ms = kill_mid_load(&mut cluster, controller, &producer);
    cluster.node(controller).restart();

    acked_at_least(LOAD / 2);
    let leader = leaders(&cluster.bootstrap(), &topic).expect("leaders")[0];
    let leader_killed_ms = kill_mid_load(&mut cluster, leader, &producer);

    assert!(
        producer.wait_exit(Duration::from_secs(180)),
        "{}",
        producer.stderr_tail(20)
    );
    let failed = client_events(&producer, "failed");
    assert!(
        failed.is_empty(),
        "failed sends: {:?}",
        &failed[..failed.len().min(5)]
    );
    let acks = java_acks(&producer);
    assert_eq!(acks.len(), LOAD, "acknowledged records");
    eprintln!(
        "longest pause in acknowledgements: {:?} after killing the controller leader (node \
         {controller}), {:?} after killing partition 0's leader (node {leader})",
        longest_ack_pause(&acks, controller_killed_ms, leader_killed_ms),
        longest_ack_pause(&acks, leader_killed_ms, u64::MAX)
    );

    assert!(
        consumer.wait_exit(Duration::from_secs(180)),
        "{}",
        consumer.stderr_tail(20)
    );
    let commit_failures = client_events(&consumer, "commit-failed");
    eprintln!(
        "consumer commit failures (retried by the next commit): {}",
        commit_failures.len()
    );
    let mut read: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for fields in client_events(&consumer, "read") {
        let (partition, offset): (i32, i64) =
            (fields[0].parse().unwrap(), fields[1].parse().unwrap());
        let previous = last_offset.insert(partition, offset).unwrap_or(-1);
        assert!(
            offset > previous,
            "partition {partition}: offset {offset} read after {previous}"
        );
        assert!(read
            .insert((partition, offset), fields[2].clone())
            .is_none());
    }
    for JavaAck { id, position, .. } in &acks {
        assert_eq!(
            read.get(position),
            Some(&format!("v{id}")),
            "record {id} at {position:?}"
        );
    }
    assert_eq!(read.len(), LOAD, "records read");

    cluster.node(leader).restart();
    wait_for_identical_logs(&mut cluster, &topic, Duration::from_secs(60));
}
