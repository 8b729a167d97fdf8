//! Kafka record batch v2 (magic 2) header: parsing, validation and in-place patching.
//!
//! Layout (big-endian), 61 header bytes:
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32        | 21 attributes i16 | 23 lastOffsetDelta i32     | 27 baseTimestamp i64
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32
//! 57 recordCount i32 | 61 records...
//! ```
//! The CRC-32C covers attributes..end, so baseOffset and partitionLeaderEpoch can be
//! patched without touching it: that is what keeps the produce path zero-copy.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use thiserror::Error;

/// Bytes before `batchLength`'s payload: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header.
pub const HEADER_SIZE: usize = 61;
pub const MAGIC_V2: i8 = 2;

const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_MAX_TIMESTAMP: usize = 35;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub(crate) const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// The batch's baseTimestamp is its delete horizon (KIP-534): set by the log cleaner on a
/// batch that keeps tombstones, which later cleans drop once the horizon has passed.
pub(crate) const ATTR_DELETE_HORIZON: i16 = 0x40;

pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_SEQUENCE: i32 = -1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    /// Lengths do not add up, or the buffer ends inside a batch.
    #[error("corrupt batch: {0}")]
    Corrupt(&'static str),
    /// CRC-32C over attributes..end does not match the stored one.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// Well-formed bytes that Kafka rejects as a record: wrong magic, count mismatch, ...
    #[error("invalid batch: {0}")]
    Invalid(&'static str),
    /// The protocol crate could not encode a batch we built.
    #[error("cannot encode batch: {0}")]
    Encode(String),
}

/// The decoded fixed header of one v2 batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes following the batchLength field; the whole batch is `batch_length + 12`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Needs at least [`HEADER_SIZE`] bytes and
    /// checks that the batch length is plausible, but not that the whole batch is present.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_SIZE {
            return Err(BatchError::Corrupt("buffer shorter than a batch header"));
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, OFFSET_BATCH_LENGTH),
            partition_leader_epoch: be_i32(buf, OFFSET_LEADER_EPOCH),
            magic: buf[OFFSET_MAGIC] as i8,
            crc: be_i32(buf, OFFSET_CRC) as u32,
            attributes: be_i16(buf, OFFSET_ATTRIBUTES),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, OFFSET_MAX_TIMESTAMP),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        };
        if (header.batch_length as i64) < (HEADER_SIZE - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Corrupt("batch length shorter than the header"));
        }
        Ok(header)
    }

    /// Total size of the batch in bytes, including baseOffset and batchLength.
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression_codec(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// The delete horizon the log cleaner set on this batch, if any.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// Sequence number of the last record, wrapping at i32::MAX as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Computes the CRC-32C the header should carry for this whole batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..])
}

/// Checks one complete batch (exactly `header.total_size()` bytes): magic, CRC,
/// Kafka's count rule (lastOffsetDelta + 1 == recordCount, both positive) and, for an
/// uncompressed batch, that its records' lengths add up (what recovery needs; produce
/// walks every record with [`super::validator`]).
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate_header(batch)?;
    if header.compression_codec() == 0 {
        check_uncompressed_records(&batch[HEADER_SIZE..], header.record_count)?;
    }
    Ok(header)
}

/// [`validate`] for a batch as the log may hold it after compaction: the cleaner keeps a
/// batch's base offset and lastOffsetDelta (so its producer's last sequence stays right)
/// while dropping records, so it may carry fewer records than offsets, even none.
pub fn validate_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let compacted = header.record_count >= 0
        && header.last_offset_delta >= 0
        && (header.record_count as i64) < header.last_offset_delta as i64 + 1;
    if !compacted {
        return validate(batch);
    }
    check_frame(batch, &header)?;
    check_codec(&header)?;
    if header.compression_codec() == 0 {
        check_uncompressed_records(&batch[HEADER_SIZE..], header.record_count)?;
    }
    Ok(header)
}

/// [`validate`] without the record framing: header, magic, CRC and counts.
fn validate_header(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    check_frame(batch, &header)?;
    if header.record_count <= 0 || header.last_offset_delta < 0 {
        return Err(BatchError::Invalid("batch has no records"));
    }
    if header.last_offset_delta as i64 + 1 != header.record_count as i64 {
        return Err(BatchError::Invalid(
            "record count does not match lastOffsetDelta",
        ));
    }
    check_codec(&header)?;
    Ok(header)
}

/// Length, magic and CRC: what every batch must pass, produced or stored.
fn check_frame(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    if header.total_size() != batch.len() {
        return Err(BatchError::Corrupt("batch length does not match its bytes"));
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::Invalid(
            "only record batch magic v2 is supported",
        ));
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

fn check_codec(header: &BatchHeader) -> Result<(), BatchError> {
    if header.compression_codec() > 4 {
        return Err(BatchError::Invalid("unknown compression codec"));
    }
    Ok(())
}

/// Walks the record framing of an uncompressed batch (each record is a varint length
/// followed by that many bytes) so that a batch whose records do not add up is rejected
/// before it reaches the log. Record contents are not decoded.
fn check_uncompressed_records(mut records: &[u8], record_count: i32) -> Result<(), BatchError> {
    for _ in 0..record_count {
        let (len, used) = read_varint(records).ok_or(BatchError::Invalid("bad record length"))?;
        if len < 0 {
            return Err(BatchError::Invalid("negative record length"));
        }
        let end = used
            .checked_add(len as usize)
            .ok_or(BatchError::Invalid("record length overflow"))?;
        if end > records.len() {
            return Err(BatchError::Invalid("record extends past the batch"));
        }
        records = &records[end..];
    }
    if !records.is_empty() {
        return Err(BatchError::Invalid("bytes left after the last record"));
    }
    Ok(())
}

/// Reads a zig-zag varint (at most 5 bytes, i32 range); returns the value and bytes used.
fn read_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let mut raw: u32 = 0;
    for (i, byte) in buf.iter().take(5).enumerate() {
        raw |= ((byte & 0x7f) as u32) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i32) ^ -((raw & 1) as i32);
            return Some((value, i + 1));
        }
    }
    None
}

/// Splits a buffer of concatenated batches, checking each one's header and CRC (not its
/// records). Fails on the first bad one, so that a request's batches are all checked
/// before any is appended.
pub fn validate_all(mut buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
    if buf.is_empty() {
        return Err(BatchError::Corrupt("empty record set"));
    }
    while !buf.is_empty() {
        let header = BatchHeader::parse(buf)?;
        let size = header.total_size();
        if size > buf.len() {
            return Err(BatchError::Corrupt("record set ends inside a batch"));
        }
        headers.push(validate_header(&buf[..size])?);
        buf = &buf[size..];
    }
    Ok(headers)
}

/// Writes the broker-assigned base offset and partition leader epoch into the header.
/// Neither is covered by the CRC.
pub fn patch_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    debug_assert!(batch.len() >= HEADER_SIZE);
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Sets the batch's timestamp type (LogAppendTime or CreateTime) and maxTimestamp and
/// recomputes its CRC, as Kafka's `setMaxTimestamp` does when the topic appends with
/// LogAppendTime or the producer's value is not the records' maximum.
pub fn set_max_timestamp(batch: &mut [u8], log_append_time: bool, max_timestamp: i64) {
    debug_assert!(batch.len() >= HEADER_SIZE);
    let attributes = if log_append_time {
        be_i16(batch, OFFSET_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE
    } else {
        be_i16(batch, OFFSET_ATTRIBUTES) & !ATTR_TIMESTAMP_TYPE
    };
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// One whole batch from `header` and its record bytes (as stored: compressed if the
/// header says so): batchLength and magic are set from them and the CRC computed.
pub fn assemble(header: &BatchHeader, records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + records.len());
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    let batch_length = (HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&header.record_count.to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_SIZE);
    out.extend_from_slice(records);
    let crc = compute_crc(&out);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A record for [`encode_uncompressed`].
pub struct PlainRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp_ms: i64,
}

/// The idempotent-producer fields of a batch; [`ProducerIdentity::NONE`] for none.
#[derive(Debug, Clone, Copy)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerIdentity {
    pub const NONE: ProducerIdentity = ProducerIdentity {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: -1,
        base_sequence: NO_SEQUENCE,
    };
}

/// Encodes records as one uncompressed v2 batch at base offset 0 (the log assigns the
/// real offset at append), for batches the broker writes itself and for tests.
pub fn encode_uncompressed(
    records: &[PlainRecord],
    producer: ProducerIdentity,
) -> Result<Bytes, BatchError> {
    encode(records, producer, Compression::None)
}

/// [`encode_uncompressed`] with a codec.
pub fn encode(
    records: &[PlainRecord],
    producer: ProducerIdentity,
    compression: Compression,
) -> Result<Bytes, BatchError> {
    encode_batch(records, producer, compression, false)
}

/// [`encode_uncompressed`] as one transaction's batch of `producer` (a coordinator's
/// transactional offset commit).
pub fn encode_transactional(
    records: &[PlainRecord],
    producer: ProducerIdentity,
) -> Result<Bytes, BatchError> {
    encode_batch(records, producer, Compression::None, true)
}

fn encode_batch(
    records: &[PlainRecord],
    producer: ProducerIdentity,
    compression: Compression,
    transactional: bool,
) -> Result<Bytes, BatchError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is
            // constant, so the sequence advances even for base sequence -1.
            sequence: producer.base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| BatchError::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

#[cfg(test)]
pub mod test_support {
    //! Builds real v2 batches for tests.
    use bytes::Bytes;

    use super::{encode_uncompressed, PlainRecord, ProducerIdentity};

    pub fn batch(values: &[&[u8]], timestamp_ms: i64) -> Bytes {
        batch_with(values, timestamp_ms, -1, -1, -1)
    }

    pub fn batch_with(
        values: &[&[u8]],
        timestamp_ms: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Bytes {
        let records: Vec<PlainRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| PlainRecord {
                key: None,
                value: Some(Bytes::copy_from_slice(v)),
                timestamp_ms: timestamp_ms + i as i64,
            })
            .collect();
        let producer = ProducerIdentity {
            producer_id,
            producer_epoch,
            base_sequence,
        };
        encode_uncompressed(&records, producer).expect("encode test batch")
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::batch;
    use super::*;

    #[test]
    fn parses_and_validates_an_encoded_batch() {
        let b = batch(&[b"a", b"bb", b"ccc"], 1_000);
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(h.total_size(), b.len());
        assert!(!h.has_producer_id());
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_crc_valid() {
        let mut b = batch(&[b"x"], 5).to_vec();
        patch_offset_and_epoch(&mut b, 42, 7);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 7);
    }

    #[test]
    fn a_flipped_payload_bit_fails_the_crc() {
        let mut b = batch(&[b"hello"], 5).to_vec();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(validate(&b), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn truncated_and_short_buffers_are_corrupt() {
        let b = batch(&[b"hello"], 5);
        assert!(matches!(
            validate_all(&b[..b.len() - 1]),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            validate_all(&b[..10]),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(validate_all(&[]), Err(BatchError::Corrupt(_))));
    }

    #[test]
    fn a_count_mismatch_is_invalid_even_with_a_fixed_crc() {
        let mut b = batch(&[b"a", b"b"], 5).to_vec();
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(validate(&b), Err(BatchError::Invalid(_))));
    }

    #[test]
    fn old_magic_is_invalid() {
        let mut b = batch(&[b"a"], 5).to_vec();
        b[16] = 1;
        assert!(matches!(validate(&b), Err(BatchError::Invalid(_))));
    }

    #[test]
    fn several_batches_validate_in_order() {
        let mut all = batch(&[b"a"], 1).to_vec();
        all.extend_from_slice(&batch(&[b"b", b"c"], 2));
        let headers = validate_all(&all).unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[1].record_count, 2);
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        let mut h = BatchHeader::parse(&batch(&[b"a", b"b"], 1)).unwrap();
        h.base_sequence = i32::MAX;
        assert_eq!(h.last_sequence(), 0);
        h.base_sequence = 10;
        assert_eq!(h.last_sequence(), 11);
    }
}
