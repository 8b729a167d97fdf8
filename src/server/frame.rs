//! Kafka framing, in one place: a 4-byte big-endian size, then a request header and
//! body; responses are a size, a response header and a body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;
use tokio_util::codec::LengthDelimitedCodec;

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

/// The length-prefixed codec; a frame above `max_frame_bytes` (including a negative
/// length, read as a huge unsigned one) is an error that closes the connection.
pub fn codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec()
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
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("body: {e}")))?;
    if frame.has_remaining() && api_key != ApiKey::ApiVersions {
        // ApiVersions is exempt: a newer client may send fields we do not know yet.
        return Err(malformed(format!("{} trailing bytes", frame.remaining())));
    }
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
    use futures::StreamExt;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use tokio_util::codec::FramedRead;

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

    #[tokio::test]
    async fn codec_rejects_oversize_and_negative_lengths() {
        for length in [0x7fff_ffffu32, 0xffff_ffff] {
            let bytes = length.to_be_bytes().to_vec();
            let mut frames = FramedRead::new(&bytes[..], codec(1024));
            assert!(frames.next().await.unwrap().is_err());
        }
        let mut ok = 3u32.to_be_bytes().to_vec();
        ok.extend_from_slice(b"abc");
        let mut frames = FramedRead::new(&ok[..], codec(1024));
        assert_eq!(&frames.next().await.unwrap().unwrap()[..], b"abc");
    }
}
