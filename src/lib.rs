//! Millrace: a Kafka-wire-compatible message broker.
//!
//! Module map (see docs/ARCHITECTURE.md for the data flow):
//! - [`config`]: broker configuration (TOML file, `MILLRACE_*` env, flags) under Kafka's names.
//! - [`dynamic_config`]: live configuration: AlterConfigs planning and the effective
//!   broker config (static ⊕ dynamic broker configs from the metadata image).
//! - [`server`]: listener, one task per connection, framing, in-order pipelined responses.
//! - [`protocol`]: request dispatch and one handler file per Kafka API.
//! - [`partition`]: the local replicas: produce validation, offset assignment, idempotent
//!   producer state, long-poll wake-ups.
//! - [`log`]: a partition's on-disk log: segments, indexes, recovery, flush policy.
//! - [`coordinator`]: the coordinator runtime (IO, clock, timers, shard loading) and
//!   the contract of its shard types (groups, transactions).
//! - [`metadata`]: the Raft metadata quorum (openraft on RocksDB) and its in-memory image.
//! - [`replication`]: the pure state machines of partition leaders and followers.
//! - [`txn`]: the pure transaction coordinator core, one per `__transaction_state` partition.

pub mod auth;
pub mod broker;
pub mod config;
pub mod coordinator;
pub mod dynamic_config;
pub mod group;
pub mod inter_broker;
pub mod log;
pub mod metadata;
pub mod partition;
pub mod protocol;
pub mod replica_fetcher;
pub mod replication;
pub mod server;
pub mod txn;
