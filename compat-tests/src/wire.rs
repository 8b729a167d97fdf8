//! Minimal Kafka wire helpers built on the kafka-protocol crate's encoders: frame a
//! request (size prefix + header + body), and decode a response frame. Used by the
//! harness's readiness probe and by the raw-TCP tests (which do their own I/O).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Client id sent by every raw request of the suite (shows up in broker logs).
pub const CLIENT_ID: &str = "millrace-compat";

/// Header + body of a request, without the 4-byte size prefix.
pub fn encode_request_body<R: Encodable>(
    key: ApiKey,
    req: &R,
    version: i16,
    correlation_id: i32,
) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("encode request header");
    req.encode(&mut buf, version).expect("encode request body");
    buf.to_vec()
}

/// A complete request frame: i32 size prefix, header, body.
pub fn encode_request<R: Encodable>(
    key: ApiKey,
    req: &R,
    version: i16,
    correlation_id: i32,
) -> Vec<u8> {
    frame(&encode_request_body(key, req, version, correlation_id))
}

/// Prefix `body` with its i32 big-endian length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Decode a response frame's payload (without the size prefix) as response type `R` of
/// API `key` at `version`. The header version follows the API's flexible-version rules
/// (ApiVersions responses always use header v0, KIP-511; the crate knows that).
pub fn decode_response<R: Decodable>(
    key: ApiKey,
    payload: &[u8],
    version: i16,
) -> Result<(ResponseHeader, R), String> {
    let mut buf = bytes::Bytes::copy_from_slice(payload);
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version))
        .map_err(|e| format!("decode response header: {e}"))?;
    let body = R::decode(&mut buf, version)
        .map_err(|e| format!("decode response body (v{version}): {e}"))?;
    if buf.has_remaining() {
        return Err(format!(
            "{} trailing bytes after response body (v{version})",
            buf.remaining()
        ));
    }
    Ok((header, body))
}

/// Blocking: send one frame and read one response frame payload, with an I/O timeout.
pub fn round_trip(addr: &str, frame: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let sock_addr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut s = TcpStream::connect_timeout(&sock_addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(frame)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(0..=64 * 1024 * 1024).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response size {len}"),
        ));
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    Ok(payload)
}

/// One ApiVersions v3 round trip (what modern clients send first). Ok only if the
/// broker answered with error_code 0 and advertised at least one API.
pub fn api_versions_probe(addr: &str, timeout: Duration) -> Result<ApiVersionsResponse, String> {
    const VERSION: i16 = 3;
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    let payload = round_trip(
        addr,
        &encode_request(ApiKey::ApiVersions, &req, VERSION, 1),
        timeout,
    )
    .map_err(|e| format!("ApiVersions round trip to {addr}: {e}"))?;
    let (header, resp) =
        decode_response::<ApiVersionsResponse>(ApiKey::ApiVersions, &payload, VERSION)?;
    if header.correlation_id != 1 {
        return Err(format!(
            "ApiVersions correlation id {} != 1",
            header.correlation_id
        ));
    }
    if resp.error_code != 0 || resp.api_keys.is_empty() {
        return Err(format!(
            "ApiVersions error_code {} with {} api keys",
            resp.error_code,
            resp.api_keys.len()
        ));
    }
    Ok(resp)
}

/// One Metadata v12 round trip asking for no topics. Ok (with the advertised brokers as
/// `host:port`) only if at least one broker is listed: a broker that has not finished
/// registering itself answers with an empty broker list, and clients would stall.
pub fn metadata_brokers_probe(addr: &str, timeout: Duration) -> Result<Vec<String>, String> {
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    const VERSION: i16 = 12;
    let req = MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .with_allow_auto_topic_creation(false);
    let payload = round_trip(
        addr,
        &encode_request(ApiKey::Metadata, &req, VERSION, 2),
        timeout,
    )
    .map_err(|e| format!("Metadata round trip to {addr}: {e}"))?;
    let (_, resp) = decode_response::<MetadataResponse>(ApiKey::Metadata, &payload, VERSION)?;
    if resp.brokers.is_empty() {
        return Err("Metadata lists no brokers yet".into());
    }
    Ok(resp
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .collect())
}

/// A blocking connection for request/response sequences (group protocol tests): one
/// request in flight at a time, correlation ids counted up and checked.
pub struct Connection {
    stream: TcpStream,
    next_corr: i32,
    addr: String,
}

impl Connection {
    /// Connect with `timeout` as the connect and per-read/write I/O timeout. Panics on
    /// failure (test helper).
    pub fn connect(addr: &str, timeout: Duration) -> Connection {
        let sock_addr = addr.parse().expect("socket address");
        let stream = TcpStream::connect_timeout(&sock_addr, timeout)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        Connection {
            stream,
            next_corr: 100,
            addr: addr.to_string(),
        }
    }

    /// Send `req` as API `key` at `version` and decode the response (correlation id
    /// checked). Panics on I/O or decode errors, naming the API and version.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        req: &Req,
        version: i16,
    ) -> Resp {
        let corr = self.next_corr;
        self.next_corr += 1;
        let what = format!("{key:?} v{version} to {}", self.addr);
        self.stream
            .write_all(&encode_request(key, req, version, corr))
            .unwrap_or_else(|e| panic!("{what}: write: {e}"));
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .unwrap_or_else(|e| panic!("{what}: read size: {e}"));
        let len = i32::from_be_bytes(len);
        assert!(
            (0..=64 * 1024 * 1024).contains(&len),
            "{what}: bad response size {len}"
        );
        let mut payload = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut payload)
            .unwrap_or_else(|e| panic!("{what}: read body: {e}"));
        let (h, resp) = decode_response::<Resp>(key, &payload, version)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(h.correlation_id, corr, "{what}: correlation id");
        resp
    }
}
