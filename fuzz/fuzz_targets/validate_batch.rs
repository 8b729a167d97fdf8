//! Produce-path validation of a record set, with every whole batch's CRC made valid first
//! so that mutations reach the checks past the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut records = data.to_vec();
    millrace_fuzz::fix_batch_crcs(&mut records);
    let _ = millrace::log::batch::validate_all(&records);
});
