//! `__transaction_state` record encoding in Kafka's format (transaction-coordinator's
//! `TransactionLogKey` v0 / `TransactionLogValue` v0-1 schemas).
//!
//! Key: i16 version 0, then the transactional id as an i16-length string. Value v0: i16
//! version, i64 producer id, i16 epoch, i32 timeout, i8 state, nullable array (i32 count,
//! -1 = null) of {topic string, i32 array of partitions}, i64 last update time, i64 start
//! time. Value v1 is the flexible form of the same fields (compact strings and arrays,
//! each struct ending in a tagged-field section) plus tagged fields 0 previous producer
//! id, 1 next producer id (both default -1), 2 client transaction version (default 0),
//! written only when not at their default. We write v1 (what Kafka 4.x writes at
//! transaction version 1 and above) and read both; tagged fields we do not know (newer
//! Kafka adds some for two-phase commit) are skipped, as the schema allows.

use super::RecordError;
use crate::coordinator::codec::{put_compact_str, put_str, put_uvarint, Reader};
use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnValue {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: i8,
    /// None is the schema's null (Kafka writes it for Empty).
    pub partitions: Option<Vec<(String, Vec<i32>)>>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    pub client_transaction_version: i16,
}

pub(crate) fn key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

/// Value version 1 (flexible).
pub(crate) fn value(v: &TxnValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    b.put_i64(v.producer_id);
    b.put_i16(v.producer_epoch);
    b.put_i32(v.timeout_ms);
    b.put_i8(v.state);
    match &v.partitions {
        None => put_uvarint(&mut b, 0),
        Some(topics) => {
            put_uvarint(&mut b, topics.len() as u32 + 1);
            for (topic, partitions) in topics {
                put_compact_str(&mut b, topic);
                put_uvarint(&mut b, partitions.len() as u32 + 1);
                for p in partitions {
                    b.put_i32(*p);
                }
                put_uvarint(&mut b, 0);
            }
        }
    }
    b.put_i64(v.last_update_ms);
    b.put_i64(v.start_ms);
    let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
    if v.previous_producer_id != -1 {
        tags.push((0, v.previous_producer_id.to_be_bytes().to_vec()));
    }
    if v.next_producer_id != -1 {
        tags.push((1, v.next_producer_id.to_be_bytes().to_vec()));
    }
    if v.client_transaction_version != 0 {
        tags.push((2, v.client_transaction_version.to_be_bytes().to_vec()));
    }
    put_uvarint(&mut b, tags.len() as u32);
    for (tag, data) in tags {
        put_uvarint(&mut b, tag);
        put_uvarint(&mut b, data.len() as u32);
        b.put_slice(&data);
    }
    b.freeze()
}

/// The transactional id of a key, or None for a key version Kafka does not know (skipped).
pub(crate) fn decode_key(key: &[u8]) -> Result<Option<String>, RecordError> {
    let mut r = Reader::new(key, "key");
    match r.i16()? {
        0 => Ok(Some(r.str()?)),
        _ => Ok(None),
    }
}

pub(crate) fn decode_value(value: &[u8]) -> Result<TxnValue, RecordError> {
    let mut r = Reader::new(value, "transaction log value");
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return Err(r.err(&format!("unsupported version {version}")).into());
    }
    let flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = r.i8()?;
    let raw_count: i64 = if flexible {
        i64::from(r.uvarint()?) - 1
    } else {
        i64::from(r.i32()?)
    };
    let partitions = if raw_count < 0 {
        None
    } else {
        // A topic entry is at least 2 (v1) / 6 (v0) bytes.
        let n = r.count(raw_count as usize, if flexible { 2 } else { 6 })?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = if flexible { r.compact_str()? } else { r.str()? };
            let raw: i64 = if flexible {
                i64::from(r.uvarint()?) - 1
            } else {
                i64::from(r.i32()?)
            };
            if raw < 0 {
                return Err(r.err("null partition array").into());
            }
            let m = r.count(raw as usize, 4)?;
            let mut ids = Vec::with_capacity(m);
            for _ in 0..m {
                ids.push(r.i32()?);
            }
            if flexible {
                r.skip_tagged()?;
            }
            topics.push((topic, ids));
        }
        Some(topics)
    };
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let mut v = TxnValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
        client_transaction_version: 0,
    };
    if flexible {
        let count = r.uvarint()?;
        for _ in 0..count {
            let tag = r.uvarint()?;
            let len = r.uvarint()? as usize;
            let data = r.take(len)?;
            let mut field = Reader::new(data, "transaction log value tagged field");
            match tag {
                0 => v.previous_producer_id = field.i64()?,
                1 => v.next_producer_id = field.i64()?,
                2 => v.client_transaction_version = field.i16()?,
                _ => {}
            }
        }
    }
    // Trailing bytes are ignored, as Kafka's reader does.
    Ok(v)
}
