//! Kafka framing, in one place: a 4-byte big-endian size, then a request header and
//! body; responses are a size, a response header and a body.
//!
//! Reading never reserves the size a frame claims: the buffer grows with the bytes that
//! actually arrive, so a peer that announces 100 MiB and sends four bytes costs four
//! bytes (and one small read buffer).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use crate::protocol;

/// Why a frame cannot be answered; every one closes the connection, as in Kafka.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A request read off the wire, ready for dispatch.
pub enum Frame {
    Request {
        header: RequestHeader,
        api_key: ApiKey,
        body: Box<RequestKind>,
    },
    /// ApiVersions at a version this broker does not serve: answered in v0 with
    /// UNSUPPORTED_VERSION and the supported ranges (KIP-511), not closed.
    UnsupportedApiVersions { correlation_id: i32 },
}

/// The size prefix of every frame.
pub const SIZE_BYTES: usize = 4;
/// One read asks for what the current frame still lacks, but at least this much (so small
/// pipelined requests come in together) ...
const MIN_READ_BYTES: usize = 4 * 1024;
/// ... and at most this much (so the buffer grows with the bytes that arrive).
const MAX_READ_BYTES: usize = 64 * 1024;

/// A size prefix that closes the connection, as Kafka's `InvalidReceiveException`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("invalid frame size {0}")]
    Negative(i32),
    #[error("frame of {size} bytes is larger than socket.request.max.bytes ({max})")]
    TooLarge { size: usize, max: usize },
}

/// The bytes read from one connection and not yet split into frames.
#[derive(Debug)]
pub struct FrameBuffer {
    buf: BytesMut,
    max_frame_bytes: usize,
}

impl FrameBuffer {
    pub fn new(max_frame_bytes: usize) -> FrameBuffer {
        FrameBuffer {
            buf: BytesMut::new(),
            max_frame_bytes,
        }
    }

    /// The body size the next frame claims, once its prefix is in, checked against
    /// `socket.request.max.bytes`.
    fn claimed(&self) -> Result<Option<usize>, SizeError> {
        let Some(prefix) = self.buf.get(..SIZE_BYTES) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let size = usize::try_from(size).map_err(|_| SizeError::Negative(size))?;
        if size > self.max_frame_bytes {
            return Err(SizeError::TooLarge {
                size,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(size))
    }

    /// How many bytes the next read may bring in.
    pub fn read_size(&self) -> usize {
        let wanted = match self.claimed() {
            Ok(Some(size)) => (SIZE_BYTES + size).saturating_sub(self.buf.len()),
            _ => SIZE_BYTES.saturating_sub(self.buf.len()),
        };
        wanted.clamp(MIN_READ_BYTES, MAX_READ_BYTES)
    }

    /// Where the next read goes; reserve [`Self::read_size`] first.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes buffered, complete frames or not.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Splits off the next complete frame: its body and the bytes it took on the wire.
    /// A bad size prefix is an error as soon as its four bytes are in.
    pub fn next_frame(&mut self) -> Result<Option<(Bytes, usize)>, SizeError> {
        let Some(size) = self.claimed()? else {
            return Ok(None);
        };
        let total = SIZE_BYTES + size;
        if self.buf.len() < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        frame.advance(SIZE_BYTES);
        if self.buf.is_empty() && self.buf.capacity() > 2 * MAX_READ_BYTES {
            // Let a large request's allocation go with the request.
            self.buf = BytesMut::new();
        }
        Ok(Some((frame.freeze(), total)))
    }
}

/// apiKey i16 + apiVersion i16 + correlationId i32: the part every header version shares.
const MIN_HEADER_BYTES: usize = 8;

pub fn decode_request(mut frame: Bytes) -> Result<Frame, FrameError> {
    if frame.len() < MIN_HEADER_BYTES {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey(raw_key))?;
    let supported = protocol::supported_versions(api_key);
    let in_range = supported.is_some_and(|range| range.min <= version && version <= range.max);
    if !in_range {
        if api_key == ApiKey::ApiVersions {
            let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            return Ok(Frame::UnsupportedApiVersions { correlation_id });
        }
        return Err(FrameError::UnsupportedVersion { api_key, version });
    }
    let malformed = |reason: String| FrameError::Malformed {
        api_key,
        version,
        reason,
    };
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| malformed(format!("header: {e}")))?;
    // Bytes after the known fields are ignored, as Kafka's parser does: librdkafka 2.16
    // sends 3 of them after an all-topics Metadata v13 request. Tagged fields the schema
    // does not know are kept aside by the decoder, not refused.
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("body: {e}")))?;
    Ok(Frame::Request {
        header,
        api_key,
        body: Box::new(body),
    })
}

/// Encodes a response with its header, without the size prefix (the codec adds it).
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::with_capacity(256);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(encode_error)?;
    body.encode(&mut buf, version).map_err(encode_error)?;
    Ok(buf.freeze())
}

/// The v0 answer to an ApiVersions request at a version we do not serve.
pub fn encode_unsupported_api_versions(correlation_id: i32) -> Result<Bytes, EncodeError> {
    let body: ApiVersionsResponse = protocol::unsupported_api_versions_response();
    let mut buf = BytesMut::with_capacity(512);
    buf.put_i32(correlation_id);
    body.encode(&mut buf, 0).map_err(encode_error)?;
    Ok(buf.freeze())
}

/// A response the protocol crate refused to encode (a field set that its version
/// lacks): a broker bug, reported and answered by closing the connection.
#[derive(Debug, Error)]
#[error("response encoding failed: {0}")]
pub struct EncodeError(String);

fn encode_error(error: impl std::fmt::Display) -> EncodeError {
    EncodeError(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn request_bytes(api_key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_flexible_and_a_classic_request() {
        for version in [0i16, 3] {
            let frame = request_bytes(
                ApiKey::ApiVersions,
                version,
                &RequestKind::ApiVersions(ApiVersionsRequest::default()),
            );
            match decode_request(frame).unwrap() {
                Frame::Request {
                    header, api_key, ..
                } => {
                    assert_eq!(api_key, ApiKey::ApiVersions);
                    assert_eq!(header.correlation_id, 7);
                }
                Frame::UnsupportedApiVersions { .. } => panic!("v{version} is supported"),
            }
        }
    }

    #[test]
    fn unknown_key_short_frame_and_truncation_are_errors() {
        let mut junk = BytesMut::new();
        junk.put_i16(9999);
        junk.put_i16(0);
        junk.put_i32(1);
        assert!(matches!(
            decode_request(junk.freeze()),
            Err(FrameError::UnknownApiKey(9999))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 18, 0])),
            Err(FrameError::TooShort(3))
        ));
        let full = request_bytes(
            ApiKey::Metadata,
            12,
            &RequestKind::Metadata(MetadataRequest::default()),
        );
        let cut = full.slice(..full.len() - 1);
        assert!(matches!(
            decode_request(cut),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn librdkafka_all_topics_metadata_with_stray_bytes_is_all_topics() {
        // librdkafka 2.12.1's all-topics Metadata v13 body: its 4-byte array-count
        // placeholder left as is (null compact array 0x00 + 3 zero bytes), then
        // allow_auto_topic_creation, include_topic_authorized_operations, no tags.
        let mut frame = BytesMut::from(
            &request_bytes(
                ApiKey::Metadata,
                13,
                &RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![]))),
            )[..],
        );
        let body_len = 4; // empty compact array (1) + two bools + empty tag buffer
        frame.truncate(frame.len() - body_len);
        frame.put_slice(&[0, 0, 0, 0, 1, 0, 0]);
        match decode_request(frame.freeze()).unwrap() {
            Frame::Request { body, api_key, .. } => {
                assert_eq!(api_key, ApiKey::Metadata);
                let RequestKind::Metadata(req) = *body else {
                    panic!("not a Metadata request");
                };
                assert_eq!(req.topics, None, "null topic array = all topics");
            }
            Frame::UnsupportedApiVersions { .. } => panic!("Metadata, not ApiVersions"),
        }
    }

    #[test]
    fn trailing_bytes_and_unknown_tagged_fields_are_ignored() {
        let mut body = MetadataRequest::default().with_topics(None);
        body.unknown_tagged_fields
            .insert(4242, Bytes::from_static(b"future"));
        let mut frame =
            BytesMut::from(&request_bytes(ApiKey::Metadata, 13, &RequestKind::Metadata(body))[..]);
        frame.put_slice(&[0, 0, 0]);
        match decode_request(frame.freeze()).unwrap() {
            Frame::Request { body, api_key, .. } => {
                assert_eq!(api_key, ApiKey::Metadata);
                let RequestKind::Metadata(metadata) = *body else {
                    panic!("not a Metadata request");
                };
                assert_eq!(metadata.topics, None);
                assert_eq!(
                    metadata.unknown_tagged_fields.get(&4242).map(|b| &b[..]),
                    Some(&b"future"[..])
                );
            }
            Frame::UnsupportedApiVersions { .. } => panic!("v13 is supported"),
        }
    }

    #[test]
    fn unsupported_versions_split_by_api() {
        let mut buf = BytesMut::new();
        buf.put_i16(ApiKey::ApiVersions as i16);
        buf.put_i16(127);
        buf.put_i32(42);
        assert!(matches!(
            decode_request(buf.freeze()),
            Ok(Frame::UnsupportedApiVersions { correlation_id: 42 })
        ));
        let mut buf = BytesMut::new();
        buf.put_i16(ApiKey::Metadata as i16);
        buf.put_i16(99);
        buf.put_i32(42);
        assert!(matches!(
            decode_request(buf.freeze()),
            Err(FrameError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn the_unsupported_api_versions_answer_decodes_as_v0() {
        let bytes = encode_unsupported_api_versions(5).unwrap();
        let mut rest = bytes.slice(4..);
        let response = ApiVersionsResponse::decode(&mut rest, 0).unwrap();
        assert_eq!(response.error_code, 35);
        // Kafka lists only the ApiVersions range in this answer.
        assert_eq!(response.api_keys.len(), 1);
        assert_eq!(response.api_keys[0].api_key, ApiKey::ApiVersions as i16);
        assert_eq!(response.api_keys[0].max_version, 4);
    }

    #[test]
    fn frame_buffer_rejects_oversize_and_negative_sizes_at_the_prefix() {
        for (prefix, error) in [
            (
                0x7fff_ffffu32,
                SizeError::TooLarge {
                    size: 0x7fff_ffff,
                    max: 1024,
                },
            ),
            (0xffff_ffff, SizeError::Negative(-1)),
        ] {
            let mut frames = FrameBuffer::new(1024);
            frames.buffer_mut().put_u32(prefix);
            assert_eq!(frames.next_frame().unwrap_err(), error);
        }
    }

    #[test]
    fn frame_buffer_splits_pipelined_frames_and_waits_for_partial_ones() {
        let mut frames = FrameBuffer::new(1024);
        frames.buffer_mut().put_u32(3);
        frames.buffer_mut().put_slice(b"abc");
        frames.buffer_mut().put_u32(0);
        frames.buffer_mut().put_u32(5);
        frames.buffer_mut().put_slice(b"de");
        let (body, wire_bytes) = frames.next_frame().unwrap().unwrap();
        assert_eq!((&body[..], wire_bytes), (&b"abc"[..], 7));
        let (body, wire_bytes) = frames.next_frame().unwrap().unwrap();
        assert_eq!((body.len(), wire_bytes), (0, 4));
        assert!(frames.next_frame().unwrap().is_none());
        assert_eq!(frames.len(), 6);
        frames.buffer_mut().put_slice(b"fgh");
        assert_eq!(&frames.next_frame().unwrap().unwrap().0[..], b"defgh");
        assert!(frames.is_empty());
    }

    #[test]
    fn reads_grow_with_the_bytes_not_with_the_claimed_size() {
        let mut frames = FrameBuffer::new(200 << 20);
        assert_eq!(frames.read_size(), MIN_READ_BYTES);
        frames.buffer_mut().put_u32(100 << 20);
        frames.buffer_mut().put_slice(b"xy");
        // A 100 MiB claim asks for one bounded read, not 100 MiB.
        assert_eq!(frames.read_size(), MAX_READ_BYTES);
        assert!(frames.buffer_mut().capacity() < MAX_READ_BYTES);
        assert!(frames.next_frame().unwrap().is_none());
    }
}
