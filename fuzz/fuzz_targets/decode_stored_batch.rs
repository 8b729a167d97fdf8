//! The protocol crate's batch decoder as the broker runs it on stored batches: one batch for
//! ListOffsets by timestamp (`partition::first_record_at_or_after`), every batch of a read
//! for the `__consumer_offsets` replay (`group::runtime`). CRCs are made valid first: a
//! stored batch is only ever checksummed, not validated again.
#![no_main]

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stored = data.to_vec();
    millrace_fuzz::fix_batch_crcs(&mut stored);
    let stored = Bytes::from(stored);

    if let Ok(set) = RecordBatchDecoder::decode(&mut stored.clone()) {
        // ListOffsets -3 / by timestamp: compares every record's timestamp.
        let _ = set.records.iter().find(|r| r.timestamp >= i64::MAX / 2);
    }
    let _ = RecordBatchDecoder::decode_all(&mut stored.clone());
});
