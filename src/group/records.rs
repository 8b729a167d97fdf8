//! `__consumer_offsets` record encoding in Kafka's format (group-coordinator's
//! `OffsetCommitKey`/`OffsetCommitValue`/`GroupMetadataKey`/`GroupMetadataValue` schemas).
//!
//! Keys start with an i16 record type (Kafka calls it the key version): 0 and 1 are
//! offset commits (same layout), 2 is group metadata. Other types (KIP-848 consumer
//! group records, share group records...) are not ours: [`decode_key`] reports them as
//! [`Key::Other`] and replay skips them. Strings are i16-length-prefixed UTF-8 (-1 =
//! null where nullable), bytes are i32-length-prefixed. Values we write: OffsetCommitValue
//! v3 (v1 when the commit carries an expire timestamp, as Kafka), GroupMetadataValue v3. We read OffsetCommitValue v0-v4 and GroupMetadataValue v0-v3.

use super::RecordError;
use crate::coordinator::codec::{put_bytes, put_nstr, put_str, Reader};
use bytes::{BufMut, Bytes, BytesMut};

/// Largest string or bytes field replay accepts; bounds allocations on garbage.
/// Largest member count replay accepts in one group metadata value.
const MAX_MEMBERS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    Other(i16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Only from OffsetCommit v2-v4's retention time; then written as value v1.
    pub expire_timestamp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

pub(crate) fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub(crate) fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

pub(crate) fn offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::new();
    if let Some(expire) = v.expire_timestamp {
        // Kafka writes v1 (no leader epoch) when the commit carries an expire time.
        b.put_i16(1);
        b.put_i64(v.offset);
        put_str(&mut b, &v.metadata);
        b.put_i64(v.commit_timestamp);
        b.put_i64(expire);
        return b.freeze();
    }
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

pub(crate) fn group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nstr(&mut b, v.protocol.as_deref());
    put_nstr(&mut b, v.leader.as_deref());
    b.put_i64(v.current_state_timestamp);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nstr(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout);
        b.put_i32(m.session_timeout);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

pub(crate) fn decode_key(key: &[u8]) -> Result<Key, RecordError> {
    let mut r = Reader::new(key, "key");
    let version = r.i16()?;
    match version {
        0 | 1 => {
            let group = r.str()?;
            let topic = r.str()?;
            let partition = r.i32()?;
            Ok(Key::Offset {
                group,
                topic,
                partition,
            })
        }
        2 => Ok(Key::Group { group: r.str()? }),
        v if v < 0 => Err(r.err("negative key version").into()),
        v => Ok(Key::Other(v)),
    }
}

pub(crate) fn decode_offset_value(value: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader::new(value, "offset commit value");
    let version = r.i16()?;
    let v = match version {
        0..=3 => {
            let offset = r.i64()?;
            let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
            let metadata = r.str()?;
            let commit_timestamp = r.i64()?;
            let expire_timestamp = if version == 1 {
                Some(r.i64()?).filter(|e| *e >= 0)
            } else {
                None
            };
            OffsetValue {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp,
                expire_timestamp,
            }
        }
        4 => {
            let offset = r.i64()?;
            let leader_epoch = r.i32()?;
            let metadata = r.compact_str()?;
            let commit_timestamp = r.i64()?;
            r.skip_tagged()?;
            OffsetValue {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp,
                expire_timestamp: None,
            }
        }
        v => return Err(r.err(&format!("unsupported version {v}")).into()),
    };
    Ok(v)
}

pub(crate) fn decode_group_value(value: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader::new(value, "group metadata value");
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(r.err(&format!("unsupported version {version}")).into());
    }
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.nstr()?;
    let leader = r.nstr()?;
    let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?;
    if count < 0 || count as usize > MAX_MEMBERS {
        return Err(r.err("bad member count").into());
    }
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.str()?;
        let group_instance_id = if version >= 3 { r.nstr()? } else { None };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let session_or_rebalance = r.i32()?;
        let (rebalance_timeout, session_timeout) = if version >= 1 {
            (session_or_rebalance, r.i32()?)
        } else {
            (session_or_rebalance, session_or_rebalance)
        };
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout,
            session_timeout,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}
