//! `__consumer_offsets` records and transaction markers replayed into a group
//! coordinator, as at shard load: the key/value decoders of `group/records.rs` and the
//! state they rebuild, pending transactional offsets included.
//!
//! Input: a sequence of `[flags u8][key_len u16][value_len u16][key][value]`; flags bit 0
//! makes the value a tombstone (null); bit 1 puts the record in a transactional batch of
//! producer `flags >> 4`; bit 2 makes the entry that producer's marker instead (bit 3:
//! commit), its key and value unused. Entries sit at consecutive log offsets; plain ones
//! go through `replay`, the others through `replay_at` / `replay_marker`. A truncated
//! tail is replayed with what is there; then every producer's transaction is committed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millrace::group::{GroupConfig, GroupCoordinator};

fuzz_target!(|data: &[u8]| {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
    let mut rest = data;
    let mut offset = 0i64;
    while rest.len() >= 5 {
        let flags = rest[0];
        let key_len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        let value_len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        rest = &rest[5..];
        let key = &rest[..key_len.min(rest.len())];
        rest = &rest[key.len()..];
        let value = &rest[..value_len.min(rest.len())];
        rest = &rest[value.len()..];
        let value = (flags & 1 == 0).then_some(value);
        let producer_id = i64::from(flags >> 4);
        if flags & 4 != 0 {
            coordinator.replay_marker(offset, producer_id, flags & 8 != 0);
        } else if flags & 2 != 0 {
            let _ = coordinator.replay_at(offset, Some(producer_id), key, value);
        } else {
            let _ = coordinator.replay(key, value);
        }
        offset += 1;
    }
    let _ = coordinator.loaded(0);
    for producer_id in 0..16 {
        let _ = coordinator.complete_transaction(producer_id, 0, 0, true);
    }
});
