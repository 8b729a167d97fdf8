//! Transaction markers (Kafka's EndTransactionMarker): the control batch that ends a
//! producer's transaction on a partition. One record, never compressed:
//! - key: version i16 (0) + control type i16 (0 = ABORT, 1 = COMMIT)
//! - value: version i16 (0) + coordinator epoch i32
//!
//! The batch is control + transactional and carries the producer id and epoch; its
//! sequence is -1. Bytes read back (from disk or a leader) are hostile: parsing checks
//! every length and answers None for anything that is not a marker.

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::cleaner::{read_varlong, write_varlong};

const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// One marker batch at base offset 0 (the partition assigns the offset and leader epoch).
pub fn encode_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp_ms: i64,
) -> Vec<u8> {
    let control_type = if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut body = Vec::with_capacity(24);
    body.push(0); // record attributes
    write_varlong(0, &mut body); // timestamp delta
    write_varlong(0, &mut body); // offset delta
    write_varlong(4, &mut body);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&control_type.to_be_bytes());
    write_varlong(6, &mut body);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    write_varlong(0, &mut body); // headers
    let mut record = Vec::with_capacity(body.len() + 2);
    write_varlong(body.len() as i64, &mut record);
    record.extend_from_slice(&body);
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: ATTR_TRANSACTIONAL | ATTR_CONTROL,
        last_offset_delta: 0,
        base_timestamp: timestamp_ms,
        max_timestamp: timestamp_ms,
        producer_id,
        producer_epoch,
        base_sequence: -1,
        record_count: 1,
    };
    batch::assemble(&header, &record)
}

/// The marker in a whole stored batch; None when the batch is not a control batch, is
/// compressed, empty (a cleaned-out marker), or its first record is not a well-formed
/// COMMIT/ABORT marker.
pub fn parse_marker(batch: &[u8]) -> Option<EndTxnMarker> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression_codec() != 0 || header.record_count < 1 {
        return None;
    }
    let end = header.total_size().min(batch.len());
    let mut rest = batch.get(HEADER_SIZE..end)?;
    let length = usize::try_from(read_varlong(&mut rest)?).ok()?;
    let mut record = rest.get(..length)?;
    record = record.get(1..)?; // attributes
    read_varlong(&mut record)?; // timestamp delta
    read_varlong(&mut record)?; // offset delta
    let key = take_field(&mut record)?;
    let value = take_field(&mut record)?;
    if key.len() < 4 || value.len() < 6 {
        return None;
    }
    let key_version = i16::from_be_bytes([key[0], key[1]]);
    let control_type = i16::from_be_bytes([key[2], key[3]]);
    let value_version = i16::from_be_bytes([value[0], value[1]]);
    if key_version < 0 || value_version < 0 {
        return None;
    }
    let commit = match control_type {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return None,
    };
    Some(EndTxnMarker {
        commit,
        coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
    })
}

/// A varint-length-prefixed byte field; a null (-1) field is None.
fn take_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let length = usize::try_from(read_varlong(rest)?).ok()?;
    let field = rest.get(..length)?;
    *rest = &rest[length..];
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn a_marker_round_trips_and_decodes_as_kafka_control_record() {
        for commit in [true, false] {
            let marker = EndTxnMarker {
                commit,
                coordinator_epoch: 7,
            };
            let bytes = encode_marker_batch(42, 3, marker, 1_000);
            let header = batch::validate(&bytes).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(parse_marker(&bytes), Some(marker));
            let mut buf = bytes::Bytes::from(bytes);
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            let record = &set.records[0];
            assert!(record.control);
            let key = record.key.as_ref().unwrap();
            assert_eq!(&key[..], &[0, 0, 0, commit as u8]);
        }
    }

    #[test]
    fn hostile_bytes_are_not_markers() {
        let good = encode_marker_batch(
            1,
            0,
            EndTxnMarker {
                commit: true,
                coordinator_epoch: 0,
            },
            0,
        );
        for cut in 0..good.len() {
            assert_eq!(parse_marker(&good[..cut]), None, "cut at {cut}");
        }
        let data = batch::test_support::batch(&[b"x"], 0);
        assert_eq!(parse_marker(&data), None);
        let mut bad_type = good.clone();
        // The control type's low byte: header, length, attributes, two deltas, key length.
        bad_type[HEADER_SIZE + 1 + 1 + 1 + 1 + 1 + 3] = 9;
        assert_eq!(parse_marker(&bad_type), None);
    }
}
