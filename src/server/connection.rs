//! One task per client connection.
//!
//! Requests are read as long as fewer than `queued.max.requests` are unanswered; each is
//! handled concurrently (a long-polling fetch does not stop the reading), and responses
//! are written strictly in request order, as Kafka clients require for pipelining.
//! A client that goes away drops its pending requests (and so any long poll) at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::frame::{self, Frame};
use crate::broker::Broker;
use crate::protocol::{self, Outcome, RequestContext};

/// What the writer does with one request's result, in request order.
enum Reply {
    Send(Bytes),
    /// acks=0 produce: Kafka sends nothing back.
    Nothing,
    Close(String),
}

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "set_nodelay failed");
    }
    let (read_half, write_half) = stream.into_split();
    let max_frame_bytes = broker.config.socket_request_max_bytes;
    let mut frames = FramedRead::new(read_half, frame::codec(max_frame_bytes));
    // Responses can exceed the request bound (fetch); their bound is fetch.max.bytes.
    let mut out = FramedWrite::new(write_half, frame::codec(usize::MAX >> 1));
    let max_in_flight = broker.config.max_in_flight_requests_per_connection;
    let idle_limit = Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut in_flight = FuturesOrdered::new();
    let mut reading = true;
    let idle = tokio::time::sleep(idle_limit);
    tokio::pin!(idle);

    loop {
        tokio::select! {
            biased;
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => match reply {
                Reply::Send(bytes) => {
                    if let Err(error) = out.send(bytes).await {
                        tracing::debug!(%peer, %error, "write failed; closing");
                        return;
                    }
                }
                Reply::Nothing => {}
                Reply::Close(reason) => {
                    tracing::info!(%peer, %reason, "closing connection");
                    return;
                }
            },
            next = frames.next(), if reading && in_flight.len() < max_in_flight => match next {
                None => return,
                Some(Err(error)) => {
                    // InvalidData: a frame over socket.request.max.bytes (or a negative
                    // size). Anything else is the client leaving mid-frame.
                    if error.kind() == std::io::ErrorKind::InvalidData {
                        tracing::info!(%peer, %error, "bad frame; closing connection");
                    } else {
                        tracing::debug!(%peer, %error, "connection ended mid-frame");
                    }
                    return;
                }
                Some(Ok(bytes)) => {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_limit);
                    match frame::decode_request(bytes.freeze()) {
                        Ok(Frame::Request { header, api_key, body }) => {
                            in_flight.push_back(handle(broker.clone(), peer, header, api_key, body));
                        }
                        Ok(Frame::UnsupportedApiVersions { correlation_id }) => {
                            let reply = match frame::encode_unsupported_api_versions(correlation_id) {
                                Ok(bytes) => Reply::Send(bytes),
                                Err(error) => Reply::Close(error.to_string()),
                            };
                            in_flight.push_back(Box::pin(async move { reply }));
                        }
                        Err(error) => {
                            tracing::info!(%peer, %error, "bad request; closing connection");
                            return;
                        }
                    }
                }
            },
            _ = &mut idle, if in_flight.is_empty() => {
                tracing::debug!(%peer, "idle for connections.max.idle.ms; closing");
                return;
            }
            _ = shutdown.cancelled(), if reading => {
                reading = false;
            }
        }
        if !reading && in_flight.is_empty() {
            return;
        }
    }
}

type ReplyFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

fn handle(
    broker: Arc<Broker>,
    peer: SocketAddr,
    header: RequestHeader,
    api_key: ApiKey,
    body: Box<RequestKind>,
) -> ReplyFuture {
    Box::pin(async move {
        let correlation_id = header.correlation_id;
        let version = header.request_api_version;
        let ctx = RequestContext {
            broker,
            peer,
            header,
            api_key,
        };
        match protocol::dispatch(&ctx, *body).await {
            Outcome::Respond(response) => {
                match frame::encode_response(correlation_id, api_key, version, &response) {
                    Ok(bytes) => Reply::Send(bytes),
                    Err(error) => Reply::Close(format!("{api_key:?} v{version}: {error}")),
                }
            }
            Outcome::NoResponse => Reply::Nothing,
            Outcome::Close(reason) => Reply::Close(reason),
        }
    })
}
