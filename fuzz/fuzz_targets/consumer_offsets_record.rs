//! `__consumer_offsets` records replayed into a group coordinator, as at shard load: the
//! key/value decoders of `group/records.rs` and the state they rebuild.
//!
//! Input: a sequence of `[flags u8][key_len u16][value_len u16][key][value]`; flags bit 0
//! makes the value a tombstone (null). A truncated tail is replayed with what is there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millrace::group::{GroupConfig, GroupCoordinator};

fuzz_target!(|data: &[u8]| {
    let mut coordinator = GroupCoordinator::new(GroupConfig::default());
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
    let _ = coordinator.loaded(0);
});
