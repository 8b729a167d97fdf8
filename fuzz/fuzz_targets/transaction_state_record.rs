//! `__transaction_state` records replayed into a transaction coordinator, as at shard
//! load: the key/value decoders of `txn/records.rs`, the state they rebuild, and what the
//! core then does with it (markers at load, both sweeps, a marker completion).
//!
//! Input: a sequence of `[flags u8][key_len u16][value_len u16][key][value]`; flags bit 0
//! makes the value a tombstone (null). A truncated tail is replayed with what is there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millrace::txn::{TxnConfig, TxnCoordinator, TxnRequest, TxnTimer};

fuzz_target!(|data: &[u8]| {
    let mut coordinator = TxnCoordinator::new(TxnConfig::default(), 1);
    let mut rest = data;
    while rest.len() >= 5 {
        let tombstone = rest[0] & 1 == 1;
        let key_len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        let value_len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        rest = &rest[5..];
        let key = &rest[..key_len.min(rest.len())];
        rest = &rest[key.len()..];
        let value = &rest[..value_len.min(rest.len())];
        rest = &rest[value.len()..];
        let _ = coordinator.replay(key, (!tombstone).then_some(value));
    }
    let loaded = coordinator.loaded(0);
    for m in loaded.markers {
        let _ = coordinator.handle(
            1,
            0,
            0,
            TxnRequest::MarkersWritten {
                transactional_id: m.transactional_id,
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                commit: m.commit,
            },
        );
    }
    // Far enough ahead that every replayed timestamp has timed out and expired.
    let _ = coordinator.on_timer(i64::MAX / 2, TxnTimer::AbortTimedOut);
    let _ = coordinator.on_timer(i64::MAX / 2, TxnTimer::ExpireTransactionalIds);
});
