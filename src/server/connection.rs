//! One task per client connection.
//!
//! Requests are read as long as fewer than `queued.max.requests` are unanswered, the
//! connection's response bytes are under `millrace.queued.max.response.bytes` and the
//! broker-wide `queued.max.request.bytes` budget is not spent; otherwise the connection
//! stops reading (TCP pushes back on the client) until that changes. Each request is
//! handled concurrently (a long-polling fetch does not stop the reading), and responses
//! are written strictly in request order, as Kafka clients require for pipelining.
//! A client that goes away drops its pending requests (and so any long poll) at once; one
//! that stops reading is closed after `connections.max.idle.ms` without write progress.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::budget::{Charge, RequestBudget};
use super::frame::{self, Frame, FrameBuffer};
use crate::auth::Session;
use crate::broker::Broker;
use crate::protocol::{self, Outcome, RequestContext};

/// What the writer does with one request's result, in request order.
enum Reply {
    Send(Bytes),
    /// acks=0 produce: Kafka sends nothing back.
    Nothing,
    Close(String),
}

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    budget: Arc<RequestBudget>,
    shutdown: CancellationToken,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "set_nodelay failed");
    }
    let (read_half, mut write_half) = stream.into_split();
    let config = &broker.config;
    let mut frames = FrameBuffer::new(config.socket_request_max_bytes);
    // Bytes read and not yet split into frames, charged to queued.max.request.bytes.
    let mut unframed = Charge::new(budget.clone());
    let max_in_flight = config.max_in_flight_requests_per_connection;
    let max_response_bytes = config.queued_max_response_bytes;
    let fetch_max_bytes = u64::try_from(config.fetch_max_bytes).unwrap_or(0);
    // Responses not yet written plus the max_bytes of fetches not yet answered.
    let response_bytes = Arc::new(AtomicU64::new(0));
    let idle_limit = Duration::from_millis(config.connections_max_idle_ms);
    let session = Arc::new(Session::anonymous(
        config.cluster.inter_broker_listener_name.clone(),
        peer.ip(),
    ));
    let mut in_flight = FuturesOrdered::new();
    let mut reading = true;
    let idle = tokio::time::sleep(idle_limit);
    tokio::pin!(idle);

    loop {
        let may_read = reading
            && in_flight.len() < max_in_flight
            && response_bytes.load(Ordering::Acquire) < max_response_bytes;
        if may_read {
            match frames.next_frame() {
                Err(error) => {
                    tracing::info!(%peer, %error, "bad frame; closing connection");
                    return;
                }
                Ok(Some((bytes, wire_bytes))) => {
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + idle_limit);
                    let charge = unframed.split(wire_bytes);
                    match frame::decode_request(bytes) {
                        Ok(Frame::Request {
                            header,
                            api_key,
                            body,
                        }) => {
                            let reserved_bytes = match body.as_ref() {
                                RequestKind::Fetch(fetch) if header.request_api_version >= 3 => {
                                    u64::try_from(fetch.max_bytes)
                                        .unwrap_or(0)
                                        .min(fetch_max_bytes)
                                }
                                RequestKind::Fetch(_) => fetch_max_bytes,
                                _ => 0,
                            };
                            response_bytes.fetch_add(reserved_bytes, Ordering::AcqRel);
                            let accounting = ResponseAccounting {
                                response_bytes: response_bytes.clone(),
                                reserved_bytes,
                            };
                            in_flight.push_back(handle(
                                broker.clone(),
                                session.clone(),
                                header,
                                api_key,
                                body,
                                charge,
                                accounting,
                            ));
                        }
                        Ok(Frame::UnsupportedApiVersions { correlation_id }) => {
                            drop(charge);
                            let reply = match frame::encode_unsupported_api_versions(correlation_id)
                            {
                                Ok(bytes) => {
                                    response_bytes.fetch_add(bytes.len() as u64, Ordering::AcqRel);
                                    Reply::Send(bytes)
                                }
                                Err(error) => Reply::Close(error.to_string()),
                            };
                            in_flight.push_back(Box::pin(async move { reply }));
                        }
                        Err(error) => {
                            tracing::info!(%peer, %error, "bad request; closing connection");
                            return;
                        }
                    }
                    continue;
                }
                Ok(None) => {}
            }
        }
        tokio::select! {
            biased;
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => match reply {
                Reply::Send(bytes) => {
                    let len = bytes.len() as u64;
                    if let Err(error) = write_frame(&mut write_half, bytes, idle_limit).await {
                        tracing::info!(%peer, %error, "write failed; closing connection");
                        return;
                    }
                    response_bytes.fetch_sub(len, Ordering::AcqRel);
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_limit);
                }
                Reply::Nothing => {}
                Reply::Close(reason) => {
                    tracing::info!(%peer, %reason, "closing connection");
                    return;
                }
            },
            read = fill(&read_half, &mut frames, &mut unframed, &budget), if may_read => match read {
                Ok(0) => {
                    if !frames.is_empty() {
                        tracing::debug!(%peer, "connection ended mid-frame");
                    }
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%peer, %error, "read failed; closing connection");
                    return;
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

/// Waits for request budget, then reads what the current frame lacks (bounded, see
/// [`FrameBuffer::read_size`]) and charges it. Returns 0 at end of stream. Cancel-safe.
async fn fill(
    read_half: &OwnedReadHalf,
    frames: &mut FrameBuffer,
    unframed: &mut Charge,
    budget: &RequestBudget,
) -> std::io::Result<usize> {
    budget.wait_available().await;
    loop {
        // Wait for bytes before reserving room for them: idle connections hold no buffer.
        read_half.readable().await?;
        let want = frames.read_size();
        let buf = frames.buffer_mut();
        buf.reserve(want);
        match read_half.try_read_buf(&mut buf.limit(want)) {
            Ok(n) => {
                unframed.add(n);
                return Ok(n);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Writes one response with its size prefix. Each write must make progress within
/// `stall_limit` (`connections.max.idle.ms`): a peer that stops reading is dropped, not
/// allowed to pin its responses forever.
async fn write_frame(
    out: &mut OwnedWriteHalf,
    body: Bytes,
    stall_limit: Duration,
) -> std::io::Result<()> {
    let size = i32::try_from(body.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("response of {} bytes does not fit a frame", body.len()),
        )
    })?;
    let prefix = size.to_be_bytes();
    let mut frame = (&prefix[..]).chain(body);
    while frame.has_remaining() {
        let mut slices = [IoSlice::new(&[]); 2];
        let count = frame.chunks_vectored(&mut slices);
        let written =
            match tokio::time::timeout(stall_limit, out.write_vectored(&slices[..count])).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no write progress for connections.max.idle.ms (the peer stopped reading)",
                    ))
                }
            };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        frame.advance(written);
    }
    Ok(())
}

/// Replaces a request's reserved response bytes by its actual response size once the
/// response is ready (it stays counted until written).
struct ResponseAccounting {
    response_bytes: Arc<AtomicU64>,
    reserved_bytes: u64,
}

impl ResponseAccounting {
    fn settle(self, reply: &Reply) {
        if let Reply::Send(bytes) = reply {
            self.response_bytes
                .fetch_add(bytes.len() as u64, Ordering::AcqRel);
        }
        self.response_bytes
            .fetch_sub(self.reserved_bytes, Ordering::AcqRel);
    }
}

type ReplyFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

fn handle(
    broker: Arc<Broker>,
    session: Arc<Session>,
    header: RequestHeader,
    api_key: ApiKey,
    body: Box<RequestKind>,
    request_charge: Charge,
    accounting: ResponseAccounting,
) -> ReplyFuture {
    Box::pin(async move {
        let correlation_id = header.correlation_id;
        let version = header.request_api_version;
        let ctx = RequestContext {
            broker,
            session,
            header,
            api_key,
        };
        let outcome = protocol::dispatch(&ctx, *body).await;
        // Handled: the request's bytes go back to queued.max.request.bytes.
        drop(request_charge);
        let reply = match outcome {
            Outcome::Respond(response) => {
                match frame::encode_response(correlation_id, api_key, version, &response) {
                    Ok(bytes) => Reply::Send(bytes),
                    Err(error) => Reply::Close(format!("{api_key:?} v{version}: {error}")),
                }
            }
            Outcome::NoResponse => Reply::Nothing,
            Outcome::Close(reason) => Reply::Close(reason),
        };
        accounting.settle(&reply);
        reply
    })
}
