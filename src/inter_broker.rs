//! A connection from this broker to another one's client listener, for the requests
//! brokers send each other (replica Fetch, transaction markers): one request at a time,
//! framed as any Kafka client frames it, each round trip under a deadline, the answer's
//! size checked against a bound before anything is reserved.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct BrokerConnection {
    address: String,
    client_id: &'static str,
    stream: TcpStream,
    correlation_id: i32,
}

impl BrokerConnection {
    pub async fn connect(
        address: &str,
        client_id: &'static str,
        timeout_ms: u64,
    ) -> Result<BrokerConnection, String> {
        let timeout = Duration::from_millis(timeout_ms.max(1));
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| format!("connecting to {address} timed out"))?
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(BrokerConnection {
            address: address.to_string(),
            client_id,
            stream,
            correlation_id: 0,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` at `version` and reads its answer within `timeout`; an answer
    /// claiming more than `max_response_bytes` is an error, not an allocation. After an
    /// error the connection is unusable: drop it.
    pub async fn send<R>(
        &mut self,
        request: &R,
        version: i16,
        max_response_bytes: usize,
        timeout: Duration,
    ) -> Result<R::Response, String>
    where
        R: Request + Encodable,
        R::Response: Decodable,
    {
        let api_key =
            ApiKey::try_from(R::KEY).map_err(|_| format!("unknown api key {}", R::KEY))?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, api_key.request_header_version(version))
            .map_err(|e| format!("encode {api_key:?} header: {e}"))?;
        request
            .encode(&mut frame, version)
            .map_err(|e| format!("encode {api_key:?}: {e}"))?;
        let body_len =
            i32::try_from(frame.len() - 4).map_err(|_| format!("{api_key:?} too large"))?;
        frame[..4].copy_from_slice(&body_len.to_be_bytes());

        let payload = tokio::time::timeout(timeout, async {
            self.stream
                .write_all(&frame)
                .await
                .map_err(|e| format!("send {api_key:?}: {e}"))?;
            let size = self
                .stream
                .read_i32()
                .await
                .map_err(|e| format!("read answer size: {e}"))?;
            // A hostile or confused peer must not make us reserve more than the bound.
            let size = usize::try_from(size)
                .ok()
                .filter(|&size| size <= max_response_bytes)
                .ok_or_else(|| format!("answer size {size} out of bounds"))?;
            let mut payload = vec![0u8; size];
            self.stream
                .read_exact(&mut payload)
                .await
                .map_err(|e| format!("read answer: {e}"))?;
            Ok::<_, String>(payload)
        })
        .await
        .map_err(|_| format!("{api_key:?} timed out"))??;

        let mut payload = Bytes::from(payload);
        let header = ResponseHeader::decode(&mut payload, api_key.response_header_version(version))
            .map_err(|e| format!("decode answer header: {e}"))?;
        if header.correlation_id != self.correlation_id {
            return Err(format!(
                "answer for correlation id {} while waiting for {}",
                header.correlation_id, self.correlation_id
            ));
        }
        let response = R::Response::decode(&mut payload, version)
            .map_err(|e| format!("decode {api_key:?} answer: {e}"))?;
        if payload.has_remaining() {
            return Err(format!("bytes after the {api_key:?} answer"));
        }
        Ok(response)
    }
}

/// Idle connections kept per broker address.
const MAX_IDLE_CONNECTIONS_PER_BROKER: usize = 8;
const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Idle connections to other brokers' listeners, reused across requests (transaction
/// markers, transaction verification): take one, send, give it back if it is still good.
pub struct ConnectionPool {
    client_id: &'static str,
    idle: Mutex<HashMap<String, Vec<BrokerConnection>>>,
}

impl ConnectionPool {
    pub fn new(client_id: &'static str) -> ConnectionPool {
        ConnectionPool {
            client_id,
            idle: Mutex::new(HashMap::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<BrokerConnection>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn take(&self, address: &str) -> Result<BrokerConnection, String> {
        let reused = self.idle().get_mut(address).and_then(Vec::pop);
        match reused {
            Some(connection) => Ok(connection),
            None => BrokerConnection::connect(address, self.client_id, CONNECT_TIMEOUT_MS).await,
        }
    }

    /// Keeps a connection whose last request succeeded (one that failed is dropped).
    pub fn give_back(&self, connection: BrokerConnection) {
        let mut idle = self.idle();
        let kept = idle.entry(connection.address().to_string()).or_default();
        if kept.len() < MAX_IDLE_CONNECTIONS_PER_BROKER {
            kept.push(connection);
        }
    }
}
