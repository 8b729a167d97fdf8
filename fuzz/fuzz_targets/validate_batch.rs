//! Produce-path validation of a record set (`validate_produce`: Kafka's LogValidator rules,
//! every record walked, compressed batches as a bounded decompressing stream), with every
//! whole batch's CRC made valid first so that mutations reach the checks past the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millrace::log::validator::{validate_produce, RecordRules};

/// A fixed clock: the timestamp bounds are checked against it, reproducibly.
const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut records = data.to_vec();
    millrace_fuzz::fix_batch_crcs(&mut records);
    let _ = validate_produce(&records, NOW_MS, &RecordRules::default());
    // The other rule set: keys required, LogAppendTime (no timestamp bounds).
    let compacted_log_append_time = RecordRules {
        compacted: true,
        log_append_time: true,
        ..RecordRules::default()
    };
    let _ = validate_produce(&records, NOW_MS, &compacted_log_append_time);
});
