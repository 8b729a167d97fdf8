//! Replication throttles (Kafka's `ReplicationQuotaManager`, as `kafka-reassign-partitions
//! --throttle` sets them up): a replica that is catching up (not in the ISR) of a
//! partition listed in the topic's `leader.replication.throttled.replicas` (on its
//! leader) or `follower.replication.throttled.replicas` (on the follower) moves at most
//! `leader.replication.throttled.rate` / `follower.replication.throttled.rate` bytes/s,
//! shared by every such replica of the broker. In-sync replicas are never throttled, so
//! produce latency does not depend on a reassignment.
//!
//! The rate is a token bucket: bytes sent are taken out, the bucket refills at the rate
//! and holds at most one second of it (Kafka's quota sample,
//! `replication.quota.window.size.seconds` 1, not configurable here); while it is below zero the throttled partitions
//! get no records (the leader answers them empty, the follower leaves them out of its
//! fetch). Pure except for the clock reads callers pass in.

use std::sync::Mutex;
use std::time::Instant;

/// Kafka's default for both rates (`Long.MAX_VALUE`): no throttle.
pub const UNTHROTTLED_RATE: i64 = i64::MAX;

pub const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";

/// Whether a topic's `*.replication.throttled.replicas` value lists `partition` on
/// `broker`: `*` (every replica), or `partition:broker` entries separated by commas.
pub fn lists_replica(value: &str, partition: i32, broker: i32) -> bool {
    let value = value.trim();
    if value == "*" {
        return true;
    }
    value
        .split(',')
        .any(|entry| parse_entry(entry).is_some_and(|(p, b)| p == partition && b == broker))
}

fn parse_entry(entry: &str) -> Option<(i32, i32)> {
    let (partition, broker) = entry.trim().split_once(':')?;
    Some((partition.trim().parse().ok()?, broker.trim().parse().ok()?))
}

/// Kafka's `ThrottledReplicaListValidator`: empty, `*`, or `partition:broker` entries.
pub fn validate_replica_list(name: &str, value: &str) -> Result<(), String> {
    let value = value.trim();
    if value.is_empty() || value == "*" {
        return Ok(());
    }
    if value.split(',').all(|entry| parse_entry(entry).is_some()) {
        Ok(())
    } else {
        Err(format!(
            "Invalid value {value} for configuration {name}: Should be a list of \
             [partitionId]:[brokerId], or *"
        ))
    }
}

#[derive(Debug)]
struct Bucket {
    rate_bytes_per_second: i64,
    /// May go below zero: one answer can take more than is left.
    tokens: f64,
    refilled_at: Instant,
}

/// One direction's rate (leader or follower) on this broker.
#[derive(Debug)]
pub struct ReplicationQuota {
    bucket: Mutex<Bucket>,
}

impl ReplicationQuota {
    pub fn new(now: Instant) -> ReplicationQuota {
        ReplicationQuota {
            bucket: Mutex::new(Bucket {
                rate_bytes_per_second: UNTHROTTLED_RATE,
                tokens: 0.0,
                refilled_at: now,
            }),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rate in force from now on (the effective dynamic config, on every image).
    pub fn set_rate(&self, rate_bytes_per_second: i64) {
        let mut bucket = self.bucket();
        if bucket.rate_bytes_per_second != rate_bytes_per_second {
            bucket.rate_bytes_per_second = rate_bytes_per_second.max(0);
            bucket.tokens = bucket.tokens.min(rate_bytes_per_second as f64);
        }
    }

    /// Whether throttled replicas must wait: the bucket is empty.
    pub fn exceeded(&self, now: Instant) -> bool {
        let mut bucket = self.bucket();
        if bucket.rate_bytes_per_second == UNTHROTTLED_RATE {
            return false;
        }
        refill(&mut bucket, now);
        bucket.tokens < 0.0
    }

    /// `bytes` of throttled replicas went out (leader) or came in (follower).
    pub fn record(&self, bytes: usize, now: Instant) {
        let mut bucket = self.bucket();
        if bucket.rate_bytes_per_second == UNTHROTTLED_RATE {
            return;
        }
        refill(&mut bucket, now);
        bucket.tokens -= bytes as f64;
    }
}

fn refill(bucket: &mut Bucket, now: Instant) {
    let elapsed = now
        .saturating_duration_since(bucket.refilled_at)
        .as_secs_f64();
    let rate = bucket.rate_bytes_per_second as f64;
    bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
    bucket.refilled_at = now;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn replica_lists_as_the_reassign_tool_writes_them() {
        assert!(lists_replica("0:1,0:2, 1:3", 1, 3));
        assert!(lists_replica("0:1,0:2", 0, 2));
        assert!(!lists_replica("0:1,0:2", 1, 2));
        assert!(lists_replica("*", 7, 9));
        assert!(!lists_replica("", 0, 1));
        assert!(validate_replica_list("x", "0:1,2:3").is_ok());
        assert!(validate_replica_list("x", "*").is_ok());
        assert!(validate_replica_list("x", "").is_ok());
        assert!(validate_replica_list("x", "0:1,two:3").is_err());
        assert!(validate_replica_list("x", "0").is_err());
    }

    #[test]
    fn the_bucket_holds_throttled_bytes_to_the_rate() {
        let start = Instant::now();
        let quota = ReplicationQuota::new(start);
        quota.record(10_000_000, start);
        assert!(!quota.exceeded(start), "unthrottled by default");
        quota.set_rate(1000);
        assert!(!quota.exceeded(start));
        quota.record(1500, start);
        assert!(quota.exceeded(start));
        // A second refills 1000 bytes: still 500 short; half a second more makes it up.
        assert!(quota.exceeded(start + Duration::from_secs(1)));
        assert!(!quota.exceeded(start + Duration::from_millis(1500)));
        // An idle minute saves up one second of the rate at most.
        let later = start + Duration::from_secs(60);
        quota.record(1001, later);
        assert!(quota.exceeded(later));
        quota.set_rate(UNTHROTTLED_RATE);
        assert!(!quota.exceeded(later));
    }
}
