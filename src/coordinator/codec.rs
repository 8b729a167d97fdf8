//! The pieces of Kafka's message encoding the coordinators' record formats are written
//! in (`__consumer_offsets`, `__transaction_state`): big-endian integers, i16-length
//! strings, compact (varint-length) strings, tagged fields; and a reader that checks
//! every length against the bytes left, so hostile records are errors, never panics or
//! allocations beyond the record.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a record did not decode: "<what>: <why>".
#[derive(Debug)]
pub struct CodecError(pub String);

/// Writes an i16-length string (longer ones are cut: the strings written come from
/// requests whose strings are i16-length-bounded).
pub fn put_str(b: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= i16::MAX as usize);
    let n = s.len().min(i16::MAX as usize);
    b.put_i16(n as i16);
    b.put_slice(&s.as_bytes()[..n]);
}

pub fn put_nstr(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

pub fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

pub fn put_compact_str(b: &mut BytesMut, s: &str) {
    let n = s.len().min(i16::MAX as usize);
    put_uvarint(b, n as u32 + 1);
    b.put_slice(&s.as_bytes()[..n]);
}

/// A bounds-checked reader over one record's key or value.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the field or record in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn err(&self, why: &str) -> CodecError {
        CodecError(format!("{}: {why}", self.what))
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn i8(&mut self) -> Result<i8, CodecError> {
        Ok(self.take(1)?[0] as i8)
    }
    pub fn i16(&mut self) -> Result<i16, CodecError> {
        let s = self.take(2)?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        let s = self.take(4)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
    pub fn uvarint(&mut self) -> Result<u32, CodecError> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }
    pub fn utf8(&mut self, n: usize) -> Result<String, CodecError> {
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.err("invalid UTF-8"))
    }
    pub fn nstr(&mut self) -> Result<Option<String>, CodecError> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        self.utf8(n as usize).map(Some)
    }
    pub fn str(&mut self) -> Result<String, CodecError> {
        self.nstr()?.ok_or_else(|| self.err("null string"))
    }
    pub fn compact_str(&mut self) -> Result<String, CodecError> {
        match self.uvarint()? {
            0 => Err(self.err("null string")),
            n => self.utf8((n - 1) as usize),
        }
    }
    /// i32-length bytes; a negative length (null, which the schemas do not allow) reads
    /// as empty.
    pub fn bytes(&mut self) -> Result<Bytes, CodecError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(n as usize)?))
    }
    /// A count of elements at least `min_size` bytes each: never more than could fit in
    /// what is left, so a hostile count cannot make us allocate.
    pub fn count(&mut self, n: usize, min_size: usize) -> Result<usize, CodecError> {
        if n > self.buf.len() / min_size.max(1) {
            return Err(self.err("count exceeds the record"));
        }
        Ok(n)
    }
    pub fn skip_tagged(&mut self) -> Result<(), CodecError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let len = self.uvarint()? as usize;
            self.take(len)?;
        }
        Ok(())
    }
}
