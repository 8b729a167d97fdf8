//! Helpers shared by the fuzz targets in `fuzz_targets/`.

/// baseOffset i64 + batchLength i32: the bytes before what batchLength counts.
const LOG_OVERHEAD: usize = 12;
/// Where the CRC-32C field sits, and where the bytes it covers start (attributes).
const CRC_OFFSET: usize = 17;
const CRC_COVERED_FROM: usize = 21;
/// A v2 batch header: the shortest batch.
const BATCH_HEADER_BYTES: usize = 61;

/// Rewrites the CRC of every whole v2 batch in `buf` so mutated batches get past the
/// checksum into the record decoding the fuzzer is after. Stops at the first batch whose
/// length field does not fit; what follows is left as the fuzzer wrote it.
pub fn fix_batch_crcs(buf: &mut [u8]) {
    let mut start = 0;
    while buf.len() - start >= BATCH_HEADER_BYTES {
        let batch = &mut buf[start..];
        let batch_length = i32::from_be_bytes([batch[8], batch[9], batch[10], batch[11]]);
        let Ok(batch_length) = usize::try_from(batch_length) else {
            return;
        };
        let total = LOG_OVERHEAD + batch_length;
        if total < BATCH_HEADER_BYTES || total > batch.len() {
            return;
        }
        let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..total]);
        batch[CRC_OFFSET..CRC_COVERED_FROM].copy_from_slice(&crc.to_be_bytes());
        start += total;
    }
}
