//! Replication and leadership as pure state machines (issue 10): no IO, no tokio, no
//! clock reads (time is an argument in milliseconds). Events go in, decisions come out;
//! the broker runtime does the IO (sends the AlterPartition a decision returns, truncates
//! the log a follower decision names, answers a produce when `can_acknowledge` says so).
//!
//! - [`leader`]: one partition's state on its leader (Kafka's `Partition`/`Replica` on
//!   the leader): follower fetch positions, the ISR and a pending AlterPartition (the
//!   maximal ISR of KIP-497), the high watermark, acks=all decisions.
//! - [`follower`]: a follower's decisions: the OffsetForLeaderEpoch truncation, the next
//!   fetch offset, the follower high watermark.
//! - [`throttle`]: the replication throttles of a reassignment (rates and which
//!   replicas they apply to).
//! - the controller's side is `crate::metadata::partition_change`.
//! - `sim` (tests only): a deterministic simulator of a cluster that drives exactly this
//!   code (and `partition_change`, `records::apply_batch`) under random faults.

pub mod follower;
pub mod leader;
#[cfg(test)]
mod sim;
pub mod throttle;
