//! Produce-time validation of a client's record batch, after Kafka's `LogValidator`.
//!
//! Every record of the batch is walked, compressed or not: its framing (record length,
//! attributes, timestampDelta, offsetDelta, key, value, headers, all within the record's
//! length), its offset delta (must equal its index), its key (compacted topics need one)
//! and its timestamp (`message.timestamp.before.max.ms` / `after.max.ms`). The batch's
//! maxTimestamp is recomputed from the records, as Kafka does before storing it.
//!
//! Compressed batches are decompressed as a stream and walked as they come out, so the
//! memory used does not depend on what the batch claims; the decompressed bytes are
//! bounded ([`RecordRules::max_decompressed_bytes`]) so that a decompression bomb costs
//! at most that much CPU. Uncompressed batches are walked in place, in one pass and
//! without allocating.

use std::io::{self, Read};

use super::batch::{self, BatchError, BatchHeader, HEADER_SIZE};

const CODEC_NONE: i16 = 0;
const CODEC_GZIP: i16 = 1;
const CODEC_SNAPPY: i16 = 2;
const CODEC_LZ4: i16 = 3;
/// zstd's value in the batch attributes; Produce accepts it from v7.
pub const CODEC_ZSTD: i16 = 4;

/// Kafka's "no timestamp" marker; such records skip the timestamp bounds.
pub const NO_TIMESTAMP: i64 = -1;

/// Bytes read from a decompressor at a time: one whole 64 KiB lz4 block (the block size
/// of librdkafka's and the Java client's frames), which liblz4 then decodes straight into
/// this buffer instead of through its own and a copy.
const STREAM_BUFFER_BYTES: usize = 64 * 1024;

/// Largest zstd window (log2) a batch may ask for: 2^24 = 16 MiB covers every standard
/// compression level (zstd's own default limit, 2^27, would let a 100-byte frame make
/// the decoder allocate 128 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Record errors kept for one batch; the response names at most these (Kafka names all,
/// which for a batch of millions of tiny records would be a response of hundreds of MB).
pub const MAX_RECORD_ERRORS: usize = 1000;

/// Per-topic rules a produced batch is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRules {
    /// `max.message.bytes`: largest batch, as sent (compressed).
    pub max_message_bytes: usize,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime may be.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` contains `compact`: every record needs a key.
    pub compacted: bool,
    /// `message.timestamp.type` is LogAppendTime: the broker stamps each batch with its
    /// append time, and the producers' timestamps are not bounded.
    pub log_append_time: bool,
    /// Bound on the decompressed bytes of one compressed batch.
    pub max_decompressed_bytes: u64,
}

impl Default for RecordRules {
    /// Kafka 4's defaults: no lower bound, at most one hour ahead.
    fn default() -> Self {
        RecordRules {
            max_message_bytes: 1_048_588,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            compacted: false,
            log_append_time: false,
            max_decompressed_bytes: 64 << 20,
        }
    }
}

/// Which Kafka error a rejection maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// CORRUPT_MESSAGE: CRC mismatch, lengths that do not add up, undecodable payload.
    Corrupt,
    /// INVALID_RECORD: well-formed bytes that break a rule.
    InvalidRecord,
    /// INVALID_TIMESTAMP: a record's timestamp is out of bounds (or LogAppendTime sent).
    InvalidTimestamp,
    /// MESSAGE_TOO_LARGE: the batch exceeds `max.message.bytes`, or it decompresses to
    /// more than the bound.
    TooLarge,
}

/// One record's problem, named by its index in the batch (Produce's `record_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectKind,
    pub message: String,
    /// Only for the per-record rules Kafka reports this way (timestamps, missing keys of a
    /// compacted topic); framing problems fail the batch without them, as in Kafka.
    pub record_errors: Vec<RecordError>,
}

impl Rejection {
    fn new(kind: RejectKind, message: impl Into<String>) -> Self {
        Rejection {
            kind,
            message: message.into(),
            record_errors: Vec::new(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Rejection::new(RejectKind::InvalidRecord, message)
    }
}

impl From<BatchError> for Rejection {
    fn from(error: BatchError) -> Self {
        let kind = match error {
            BatchError::Invalid(_) => RejectKind::InvalidRecord,
            _ => RejectKind::Corrupt,
        };
        Rejection::new(kind, error.to_string())
    }
}

/// A batch that passed: its header, with `max_timestamp` and the timestamp type as they
/// must be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidBatch {
    pub header: BatchHeader,
    /// maxTimestamp or the timestamp type differ from what the producer sent: the stored
    /// bytes need [`batch::set_max_timestamp`].
    pub needs_max_timestamp_fix: bool,
}

/// Validates the record set of one produce request for one partition: its size,
/// exactly one v2 batch, header and CRC, the client-side batch rules and every record.
pub fn validate_produce(
    records: &[u8],
    now_ms: i64,
    rules: &RecordRules,
) -> Result<ValidBatch, Rejection> {
    // Size first, as Kafka, so that an oversized batch is not walked.
    if records.len() > rules.max_message_bytes {
        return Err(Rejection::new(
            RejectKind::TooLarge,
            format!(
                "batch of {} bytes exceeds max.message.bytes {}",
                records.len(),
                rules.max_message_bytes
            ),
        ));
    }
    let headers = batch::validate_all(records)?;
    // Produce v3+ carries exactly one batch per partition (Kafka rejects more).
    let [header] = headers[..] else {
        return Err(Rejection::invalid(
            "a produce request must carry exactly one record batch per partition",
        ));
    };
    if header.is_control() {
        return Err(Rejection::invalid(
            "clients are not allowed to write control records",
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(Rejection::invalid(format!(
            "invalid sequence number {} in record batch with producerId {}",
            header.base_sequence, header.producer_id
        )));
    }
    let mut walk = Walk {
        header: &header,
        rules,
        now_ms,
        max_timestamp: NO_TIMESTAMP,
        errors: Vec::new(),
        error_count: 0,
        any_timestamp_error: false,
    };
    let body = &records[HEADER_SIZE..];
    match header.compression_codec() {
        CODEC_NONE => {
            let mut input = body;
            walk.records(&mut input)?;
        }
        codec => walk_compressed(&mut walk, codec, body, rules.max_decompressed_bytes)?,
    }
    walk.finish()?;
    // As Kafka's LogValidator: a LogAppendTime topic stamps the whole batch with the
    // append time (its records keep their bytes; readers take the batch's maxTimestamp).
    let (max_timestamp, attributes) = if rules.log_append_time {
        (now_ms, header.attributes | batch::ATTR_TIMESTAMP_TYPE)
    } else {
        (
            walk.max_timestamp,
            header.attributes & !batch::ATTR_TIMESTAMP_TYPE,
        )
    };
    let needs_max_timestamp_fix =
        header.max_timestamp != max_timestamp || header.attributes != attributes;
    Ok(ValidBatch {
        header: BatchHeader {
            max_timestamp,
            attributes,
            ..header
        },
        needs_max_timestamp_fix,
    })
}

/// Streams the decompressed records of `body` through the walk.
fn walk_compressed(
    walk: &mut Walk<'_>,
    codec: i16,
    body: &[u8],
    max_bytes: u64,
) -> Result<(), Rejection> {
    let decoder = open_decoder(codec, body, max_bytes).map_err(decompress_failed)?;
    let mut input = StreamSource::new(decoder);
    walk.records(&mut input)
}

/// The decompressed records of a stored batch's `body`, whole (the log cleaner rewrites
/// them); at most `max_bytes`, else an error of kind `FileTooLarge`.
pub(crate) fn decompress(codec: i16, body: &[u8], max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    open_decoder(codec, body, max_bytes)?.read_to_end(&mut out)?;
    Ok(out)
}

/// A reader of the decompressed bytes of `body`, failing past `max_bytes`.
fn open_decoder(
    codec: i16,
    body: &[u8],
    max_bytes: u64,
) -> io::Result<Bounded<Box<dyn Read + '_>>> {
    let decoder: Box<dyn Read + '_> = match codec {
        CODEC_GZIP => Box::new(flate2::bufread::MultiGzDecoder::new(body)),
        CODEC_SNAPPY => Box::new(SnappyReader::new(body, max_bytes)),
        CODEC_LZ4 => Box::new(Lz4Reader::new(body)?),
        CODEC_ZSTD => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(body)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(decoder)
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unknown compression codec",
            ))
        }
    };
    Ok(Bounded {
        inner: decoder,
        left_bytes: max_bytes,
        max_bytes,
    })
}

fn decompress_failed(error: io::Error) -> Rejection {
    if error.kind() == io::ErrorKind::FileTooLarge {
        return Rejection::new(RejectKind::TooLarge, error.to_string());
    }
    Rejection::new(
        RejectKind::Corrupt,
        format!("cannot decompress the batch: {error}"),
    )
}

fn too_large(max_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("the batch decompresses to more than {max_bytes} bytes"),
    )
}

/// Fails a read once more than `left_bytes` came out of the decompressor.
struct Bounded<R> {
    inner: R,
    left_bytes: u64,
    max_bytes: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left_bytes = self
            .left_bytes
            .checked_sub(n as u64)
            .ok_or_else(|| too_large(self.max_bytes))?;
        Ok(n)
    }
}

/// Kafka's snappy framing (xerial's SnappyOutputStream: a 16-byte magic header, then
/// blocks of a 4-byte big-endian length and a raw snappy block), or one raw snappy block
/// when the magic is absent (as xerial's reader falls back). Each block's claimed size is
/// checked against what is left of the bound before its buffer grows.
struct SnappyReader<'a> {
    compressed: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    pos: usize,
    left_bytes: u64,
    max_bytes: u64,
}

const SNAPPY_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const SNAPPY_HEADER_BYTES: usize = 16;

impl<'a> SnappyReader<'a> {
    fn new(compressed: &'a [u8], max_bytes: u64) -> Self {
        let framed = compressed.starts_with(SNAPPY_MAGIC);
        let compressed = if framed && compressed.len() >= SNAPPY_HEADER_BYTES {
            &compressed[SNAPPY_HEADER_BYTES..]
        } else {
            compressed
        };
        SnappyReader {
            compressed,
            framed,
            block: Vec::new(),
            pos: 0,
            left_bytes: max_bytes,
            max_bytes,
        }
    }

    /// Decompresses the next block into `block`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.compressed.is_empty() {
            return Ok(false);
        }
        let raw = if self.framed {
            let Some((len, rest)) = self.compressed.split_first_chunk::<4>() else {
                return Err(corrupt("snappy block length cut short"));
            };
            let len = u32::from_be_bytes(*len) as usize;
            if len > rest.len() {
                return Err(corrupt("snappy block extends past the batch"));
            }
            let (raw, rest) = rest.split_at(len);
            self.compressed = rest;
            raw
        } else {
            std::mem::take(&mut self.compressed)
        };
        let out_len =
            snap::raw::decompress_len(raw).map_err(|e| corrupt(&format!("snappy: {e}")))?;
        self.left_bytes = self
            .left_bytes
            .checked_sub(out_len as u64)
            .ok_or_else(|| too_large(self.max_bytes))?;
        self.block.resize(out_len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut self.block)
            .map_err(|e| corrupt(&format!("snappy: {e}")))?;
        self.pos = 0;
        Ok(true)
    }
}

fn corrupt(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An LZ4 frame (Kafka's lz4 framing since magic 1) decoded by liblz4's frame API with
/// checksums skipped: Kafka does not verify the content checksum either, and the batch's
/// CRC-32C already covers the compressed bytes. liblz4 bounds its own buffers by the
/// frame's block size (at most 4 MiB).
struct Lz4Reader<'a> {
    ctx: lz4_sys::LZ4FDecompressionContext,
    compressed: &'a [u8],
    finished: bool,
}

impl<'a> Lz4Reader<'a> {
    fn new(compressed: &'a [u8]) -> io::Result<Self> {
        let mut ctx = lz4_sys::LZ4FDecompressionContext(std::ptr::null_mut());
        // SAFETY: creates a context owned by the returned reader, freed in Drop.
        let code =
            unsafe { lz4_sys::LZ4F_createDecompressionContext(&mut ctx, lz4_sys::LZ4F_VERSION) };
        lz4_result(code)?;
        Ok(Lz4Reader {
            ctx,
            compressed,
            finished: false,
        })
    }
}

fn lz4_result(code: usize) -> io::Result<usize> {
    // SAFETY: both functions only inspect the code; the name is a static C string.
    unsafe {
        if lz4_sys::LZ4F_isError(code) != 0 {
            let name = std::ffi::CStr::from_ptr(lz4_sys::LZ4F_getErrorName(code));
            return Err(corrupt(&format!("lz4: {}", name.to_string_lossy())));
        }
    }
    Ok(code)
}

impl Read for Lz4Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // liblz4's LZ4F_decompressOptions_t is {stableDst, skipChecksums, reserved x2};
        // lz4-sys names the last three `reserved`.
        let options = lz4_sys::LZ4FDecompressOptions {
            stable_dst: 0,
            reserved: [1, 0, 0],
        };
        while !self.finished && !buf.is_empty() {
            let mut dst_bytes = buf.len();
            let mut src_bytes = self.compressed.len();
            // SAFETY: pointers and lengths come from live slices; liblz4 writes at most
            // `dst_bytes` into `buf`, reads at most `src_bytes`, and reports both back.
            let hint = lz4_result(unsafe {
                lz4_sys::LZ4F_decompress(
                    self.ctx,
                    buf.as_mut_ptr(),
                    &mut dst_bytes,
                    self.compressed.as_ptr(),
                    &mut src_bytes,
                    &options,
                )
            })?;
            self.compressed = &self.compressed[src_bytes.min(self.compressed.len())..];
            // A hint of 0 means the frame is complete.
            self.finished = hint == 0;
            if dst_bytes > 0 {
                return Ok(dst_bytes.min(buf.len()));
            }
            if src_bytes == 0 {
                // No progress before the end mark: the frame is cut short (a consumer
                // reading it would fail).
                return Err(corrupt("lz4 frame cut short"));
            }
        }
        Ok(0)
    }
}

impl Drop for Lz4Reader<'_> {
    fn drop(&mut self) {
        // SAFETY: the context was created in `new` and is freed exactly once.
        unsafe {
            lz4_sys::LZ4F_freeDecompressionContext(self.ctx);
        }
    }
}

/// Where the walk reads records from: the batch body in place, or a decompressor's
/// output through a buffer. Like `BufRead`, with the refill kept out of the hot path.
trait Source {
    /// The next unread bytes; empty only at the end of the input.
    fn available(&mut self) -> io::Result<&[u8]>;
    fn consume(&mut self, n: usize);
}

impl Source for &[u8] {
    #[inline]
    fn available(&mut self) -> io::Result<&[u8]> {
        Ok(self)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        *self = &self[n..];
    }
}

/// A decompressor's output, read [`STREAM_BUFFER_BYTES`] at a time.
struct StreamSource<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
}

impl<R: Read> StreamSource<R> {
    fn new(inner: R) -> Self {
        StreamSource {
            inner,
            buf: vec![0; STREAM_BUFFER_BYTES].into_boxed_slice(),
            pos: 0,
            end: 0,
        }
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self) -> io::Result<()> {
        self.end = loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => break n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        };
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Source for StreamSource<R> {
    #[inline]
    fn available(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.refill()?;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.end);
    }
}

/// Reading one record: how many of its bytes are left, so that no field runs past it.
struct RecordInput<'r, S> {
    input: &'r mut S,
    left: usize,
}

/// Where a read stopped.
enum Stop {
    /// Input ended, or a field would run past its record.
    Short,
    /// A varint longer than its type allows.
    LongVarint,
    Io(io::Error),
}

impl<S: Source> RecordInput<'_, S> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Stop> {
        if self.left == 0 {
            return Err(Stop::Short);
        }
        let Some(&b) = self.input.available().map_err(Stop::Io)?.first() else {
            return Err(Stop::Short);
        };
        self.input.consume(1);
        self.left -= 1;
        Ok(b)
    }

    #[inline]
    fn varint(&mut self) -> Result<i32, Stop> {
        let raw = self.unsigned_varint(5)?;
        let raw = u32::try_from(raw).map_err(|_| Stop::LongVarint)?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    #[inline]
    fn varlong(&mut self) -> Result<i64, Stop> {
        let raw = self.unsigned_varint(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    #[inline]
    fn unsigned_varint(&mut self, max_bytes: u32) -> Result<u64, Stop> {
        // Fast path: the whole varint is buffered and within the record.
        let left = self.left;
        let available = self.input.available().map_err(Stop::Io)?;
        if available.len() >= max_bytes as usize && left >= max_bytes as usize {
            let mut raw: u64 = 0;
            for (i, &b) in available[..max_bytes as usize].iter().enumerate() {
                raw |= ((b & 0x7f) as u64) << (7 * i);
                if b & 0x80 == 0 {
                    self.input.consume(i + 1);
                    self.left -= i + 1;
                    return Ok(raw);
                }
            }
            return Err(Stop::LongVarint);
        }
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            raw |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(raw);
            }
        }
        Err(Stop::LongVarint)
    }

    /// Skips a length-prefixed field (key, value, header value); -1 is null.
    #[inline]
    fn skip_bytes_field(&mut self, what: &'static str) -> Result<FieldLen, Stop> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(FieldLen::Null);
        }
        if len < -1 {
            return Ok(FieldLen::Negative(what, len));
        }
        self.skip(len as usize)?;
        Ok(FieldLen::Present)
    }

    #[inline]
    fn skip(&mut self, mut n: usize) -> Result<(), Stop> {
        if n > self.left {
            return Err(Stop::Short);
        }
        self.left -= n;
        while n > 0 {
            let available = self.input.available().map_err(Stop::Io)?.len();
            if available == 0 {
                return Err(Stop::Short);
            }
            let step = n.min(available);
            self.input.consume(step);
            n -= step;
        }
        Ok(())
    }
}

enum FieldLen {
    Null,
    Present,
    Negative(&'static str, i32),
}

/// The state of walking one batch's records.
struct Walk<'a> {
    header: &'a BatchHeader,
    rules: &'a RecordRules,
    now_ms: i64,
    max_timestamp: i64,
    /// The first [`MAX_RECORD_ERRORS`] record errors; `error_count` counts all.
    errors: Vec<RecordError>,
    error_count: usize,
    any_timestamp_error: bool,
}

impl Walk<'_> {
    /// Walks exactly `recordCount` records and checks that nothing follows them.
    fn records<S: Source>(&mut self, input: &mut S) -> Result<(), Rejection> {
        for index in 0..self.header.record_count {
            self.record(input, index)?;
        }
        match input.available() {
            Ok([]) => Ok(()),
            Ok(_) => Err(Rejection::invalid(format!(
                "bytes left after the last of {} records",
                self.header.record_count
            ))),
            Err(error) => Err(decompress_failed(error)),
        }
    }

    fn record<S: Source>(&mut self, input: &mut S, index: i32) -> Result<(), Rejection> {
        // The length is read with the batch as its only limit.
        let mut outer = RecordInput {
            input: &mut *input,
            left: usize::MAX,
        };
        let length = outer
            .varint()
            .map_err(|s| stopped(s, index, "record length"))?;
        if length < 0 {
            return Err(Rejection::invalid(format!(
                "record {index}: negative record length {length}"
            )));
        }
        let length = length as usize;
        // Fast path: the whole record is buffered, so it is read as a plain slice.
        let buffered = input.available().map_err(decompress_failed)?;
        let fields = if buffered.len() >= length {
            let mut body = &buffered[..length];
            let fields = record_fields(
                &mut RecordInput {
                    input: &mut body,
                    left: length,
                },
                index,
            )?;
            input.consume(length);
            fields
        } else {
            record_fields(
                &mut RecordInput {
                    input,
                    left: length,
                },
                index,
            )?
        };
        let timestamp = self
            .header
            .base_timestamp
            .wrapping_add(fields.timestamp_delta);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        if self.rules.compacted && fields.null_key {
            self.record_error(
                index,
                false,
                "Compacted topic cannot accept message without key".to_string(),
            );
        }
        self.check_timestamp(index, timestamp);
        Ok(())
    }

    /// Kafka's CreateTime rules (the only timestamp type Millrace topics have).
    fn check_timestamp(&mut self, index: i32, timestamp: i64) {
        // Kafka bounds only CreateTime; a LogAppendTime topic replaces the timestamps.
        if timestamp != NO_TIMESTAMP && !self.rules.log_append_time {
            let diff_ms = self.now_ms as i128 - timestamp as i128;
            if diff_ms > self.rules.timestamp_before_max_ms as i128
                || -diff_ms > self.rules.timestamp_after_max_ms as i128
            {
                let low = self.now_ms as i128 - self.rules.timestamp_before_max_ms as i128;
                let high = self.now_ms as i128 + self.rules.timestamp_after_max_ms as i128;
                let message = format!(
                    "Timestamp {timestamp} of message with offset {index} is out of range. \
                     The timestamp should be within [{low}, {high}]"
                );
                self.record_error(index, true, message);
            }
        } else if self.header.is_log_append_time() {
            self.record_error(
                index,
                true,
                "Invalid timestamp type in message: producers may not set the timestamp \
                 type to LogAppendTime"
                    .to_string(),
            );
        }
    }

    fn record_error(&mut self, batch_index: i32, timestamp: bool, message: String) {
        self.error_count += 1;
        self.any_timestamp_error |= timestamp;
        if self.errors.len() < MAX_RECORD_ERRORS {
            self.errors.push(RecordError {
                batch_index,
                message,
            });
        }
    }

    /// Fails the batch if any record broke a per-record rule, as Kafka's
    /// `processRecordErrors`: INVALID_TIMESTAMP if any was a timestamp, else INVALID_RECORD.
    fn finish(&mut self) -> Result<(), Rejection> {
        if self.error_count == 0 {
            return Ok(());
        }
        let (kind, message) = if self.any_timestamp_error {
            (
                RejectKind::InvalidTimestamp,
                "One or more records have been rejected due to invalid timestamp".to_string(),
            )
        } else {
            let first: Vec<&str> = self
                .errors
                .iter()
                .take(3)
                .map(|e| e.message.as_str())
                .collect();
            (
                RejectKind::InvalidRecord,
                format!(
                    "One or more records have been rejected due to {} record errors in \
                     total, and only showing the first three errors at most: {first:?}",
                    self.error_count
                ),
            )
        };
        Err(Rejection {
            kind,
            message,
            record_errors: std::mem::take(&mut self.errors),
        })
    }
}

/// What the walk needs from one record once its framing checked out.
struct RecordFields {
    timestamp_delta: i64,
    null_key: bool,
}

fn stopped(stop: Stop, index: i32, what: &str) -> Rejection {
    match stop {
        Stop::Short => Rejection::invalid(format!(
            "record {index}: {what} runs past the end of the record or batch"
        )),
        Stop::LongVarint => Rejection::invalid(format!("record {index}: {what} is malformed")),
        Stop::Io(error) => decompress_failed(error),
    }
}

/// Reads one record's fields after its length, all within `rec.left` bytes.
#[inline]
fn record_fields<S: Source>(
    rec: &mut RecordInput<'_, S>,
    index: i32,
) -> Result<RecordFields, Rejection> {
    rec.byte().map_err(|s| stopped(s, index, "attributes"))?;
    let timestamp_delta = rec
        .varlong()
        .map_err(|s| stopped(s, index, "timestampDelta"))?;
    let offset_delta = rec.varint().map_err(|s| stopped(s, index, "offsetDelta"))?;
    if offset_delta != index {
        // Kafka rewrites such batches (for old clients); Millrace stores batches as
        // sent, so a consumer would see wrong offsets: refuse instead.
        return Err(Rejection::invalid(format!(
            "record {index}: offsetDelta {offset_delta} is not in sequence"
        )));
    }
    let key = rec
        .skip_bytes_field("key")
        .map_err(|s| stopped(s, index, "key"))?;
    let value = rec
        .skip_bytes_field("value")
        .map_err(|s| stopped(s, index, "value"))?;
    for field in [&key, &value] {
        if let FieldLen::Negative(what, len) = field {
            return Err(Rejection::invalid(format!(
                "record {index}: invalid {what} length {len}"
            )));
        }
    }
    let header_count = rec
        .varint()
        .map_err(|s| stopped(s, index, "header count"))?;
    if header_count < 0 {
        return Err(Rejection::invalid(format!(
            "record {index}: invalid number of record headers {header_count}"
        )));
    }
    // Each header takes at least two bytes (two varint lengths).
    if header_count as usize > rec.left / 2 {
        return Err(Rejection::invalid(format!(
            "record {index}: {header_count} headers cannot fit in the record"
        )));
    }
    for _ in 0..header_count {
        let key_len = rec
            .varint()
            .map_err(|s| stopped(s, index, "header key length"))?;
        if key_len < 0 {
            return Err(Rejection::invalid(format!(
                "record {index}: invalid negative header key size {key_len}"
            )));
        }
        rec.skip(key_len as usize)
            .map_err(|s| stopped(s, index, "header key"))?;
        let value = rec
            .skip_bytes_field("header value")
            .map_err(|s| stopped(s, index, "header value"))?;
        if let FieldLen::Negative(what, len) = value {
            return Err(Rejection::invalid(format!(
                "record {index}: invalid {what} length {len}"
            )));
        }
    }
    if rec.left != 0 {
        return Err(Rejection::invalid(format!(
            "record {index}: its length claims {} bytes more than its fields use",
            rec.left
        )));
    }
    Ok(RecordFields {
        timestamp_delta,
        null_key: matches!(key, FieldLen::Null),
    })
}

#[cfg(test)]
#[path = "validator_tests.rs"]
mod tests;
