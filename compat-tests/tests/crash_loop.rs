//! kill -9 loop: under mixed load (idempotent acks=all producers on several partitions,
//! small segments so rolls happen, a consumer group committing) SIGKILL the broker at a
//! random moment, restart it on the same data dir, many times. Every restart must
//! recover within a deadline; at the end no acknowledged record is lost or stored twice
//! (client retries after each crash meet the producer state rebuilt from the log), and
//! committed offsets never went behind an acknowledged commit.
//! Millrace only: 30 restarts of Kafka's JVM would not fit the time budget.

mod common;

use std::time::{Duration, Instant};

use common::admin_create;
use common::durability::{check_commits_not_behind, check_read_back, Load};
use millrace_compat_tests::{unique_topic, wait_until, BrokerOpts, TestBroker};

const ROUNDS: usize = 30;
const PARTITIONS: i32 = 4;
/// Kafka's lower bound for `segment.bytes` (1 MiB): the load rolls every few rounds.
const SEGMENT_BYTES: &str = "1048576";
/// A restart (recovery included) must answer within this.
const RESTART_DEADLINE: Duration = Duration::from_secs(20);

/// xorshift64*: the kill moments, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn kill9_loop_loses_and_duplicates_nothing() {
    let t0 = Instant::now();
    let seed = std::env::var("CRASH_LOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| millrace_compat_tests::now_ms() as u64 | 1);
    eprintln!("crash_loop: seed {seed} (CRASH_LOOP_SEED to replay)");
    let mut rng = Rng(seed);
    let mut broker = TestBroker::start_millrace(
        BrokerOpts::default()
            .partitions(PARTITIONS as u32)
            .flush_interval_messages(1)
            .set("log.segment.bytes", SEGMENT_BYTES)
            .set("offsets.topic.segment.bytes", SEGMENT_BYTES)
            .set("group.initial.rebalance.delay.ms", "0"),
    );
    let b = broker.bootstrap();
    let topic = unique_topic("crash-loop");
    let group = format!("{topic}-group");
    admin_create(&b, &topic, PARTITIONS);
    let load = Load::start(&b, &topic, &group, 2);

    let mut restart_times = Vec::new();
    for round in 0..ROUNDS {
        // A random amount of new acknowledgements, so the kill lands at a random point
        // of the produce/commit/roll stream.
        let target = load.acked() + 50 + rng.below(1_500) as usize;
        wait_until(
            &format!("round {round}: {target} acked records"),
            Duration::from_secs(60),
            || {
                let acked = load.acked();
                if acked >= target {
                    Ok(())
                } else {
                    Err(format!("{acked} acked, {} failed", load.failed()))
                }
            },
        );
        let acked_commits = load.acked_commits();
        broker.kill9();
        let restart = Instant::now();
        broker.restart();
        let took = restart.elapsed();
        assert!(
            took < RESTART_DEADLINE,
            "round {round}: restart took {took:?}\n{}",
            broker.log_tail()
        );
        restart_times.push(took);
        let check = Instant::now();
        check_commits_not_behind(&b, &group, &topic, PARTITIONS, &acked_commits);
        eprintln!(
            "crash_loop: round {round} at {:?}: restart {took:?}, offset check {:?}",
            t0.elapsed(),
            check.elapsed()
        );
    }
    let commits_during_load = load.commits_acked();
    let outcome = load.finish();
    let final_commits = load_final_commits(&b, &group, &topic);
    let stored = check_read_back(&b, &topic, &outcome);
    restart_times.sort();
    eprintln!(
        "crash_loop: {ROUNDS} rounds, {} sent, {} acked, {} failed reports, {stored} stored, \
         {commits_during_load} commits acked (committed now {final_commits:?}); restart \
         min {:?} median {:?} max {:?}; total {:?}",
        outcome.sent,
        outcome.acked.len(),
        outcome.failed_reports,
        restart_times[0],
        restart_times[restart_times.len() / 2],
        restart_times[restart_times.len() - 1],
        t0.elapsed()
    );
    assert!(
        commits_during_load > 0,
        "the group never got a commit acknowledged: the load did not exercise commits"
    );
}

fn load_final_commits(b: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    wait_until("final OffsetFetch", Duration::from_secs(30), || {
        common::groups::committed(b, group, topic, PARTITIONS)
    })
}
