//! The metadata quorum's transport: Raft RPCs between voters, and controller calls
//! forwarded to the quorum leader, over TCP on the controller listener (a broker-only
//! node, a learner, serves the Raft RPCs on its own ephemeral port instead).
//!
//! Framing: a 4-byte big-endian length, then that many bytes of JSON (the same serde
//! encoding as the Raft log on disk). A length above `socket.request.max.bytes` is refused
//! before anything is allocated and the connection is dropped. One request is in flight
//! per connection; the client keeps one connection per peer and reconnects after any
//! error. Connects are bounded by `controller.quorum.request.timeout.ms`, calls by
//! openraft's per-RPC deadline (Raft) or `controller.socket.timeout.ms` (controller
//! calls); a server waits at most that long for the rest of a frame once it began.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::forward::{ControllerCall, ControllerReply};
use super::TypeConfig;

/// Transport bounds, each from its Kafka key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransportLimits {
    /// `socket.request.max.bytes`: the largest frame either side accepts.
    pub max_frame_bytes: usize,
    /// `controller.quorum.request.timeout.ms`: connecting to a peer.
    pub connect_timeout: Duration,
    /// `controller.socket.timeout.ms`: a forwarded controller call, and the rest of a
    /// frame once its first byte arrived.
    pub call_timeout: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Controller(ControllerCall),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Controller(ControllerReply),
}

/// When each peer last answered an AppendEntries (ms since the epoch), for
/// DescribeQuorum's LastFetchTimestamp.
pub(crate) type PeerContacts = Arc<Mutex<HashMap<u64, i64>>>;

/// When this node last received entries (or a heartbeat, or a snapshot) from a leader,
/// ms since the epoch: a learner that the leader stopped feeding asks to join again.
pub(crate) type LeaderContact = Arc<std::sync::atomic::AtomicI64>;

async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame too large"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame began. The
/// length is checked against `max_frame_bytes` before the body is allocated.
async fn read_frame<T: DeserializeOwned>(
    stream: &mut TcpStream,
    max_frame_bytes: usize,
    body_timeout: Duration,
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max_frame_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds socket.request.max.bytes ({max_frame_bytes})"),
        ));
    }
    let mut body = vec![0u8; len];
    tokio::time::timeout(body_timeout, stream.read_exact(&mut body))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "frame body timed out"))??;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One connection to a peer's controller listener, opened on first use and after errors.
pub(crate) struct PeerClient {
    addr: String,
    limits: TransportLimits,
    stream: Option<TcpStream>,
}

impl PeerClient {
    pub(crate) fn new(addr: String, limits: TransportLimits) -> PeerClient {
        PeerClient {
            addr,
            limits,
            stream: None,
        }
    }

    /// Sends `request` and waits for its response within `timeout`. Connect failures are
    /// `Unreachable` (openraft backs off), anything later a network error; either way the
    /// connection is dropped so that the next call starts clean.
    pub(crate) async fn call(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        if self.stream.is_none() {
            let connect = TcpStream::connect(&self.addr);
            let stream = tokio::time::timeout(self.limits.connect_timeout, connect)
                .await
                .map_err(|_| {
                    CallError::Unreachable(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {} timed out", self.addr),
                    ))
                })?
                .map_err(CallError::Unreachable)?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(CallError::Unreachable(io::Error::other("no connection")));
        };
        let max = self.limits.max_frame_bytes;
        let exchange = async {
            write_frame(stream, request).await?;
            read_frame::<Response>(stream, max, timeout)
                .await?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.stream = None;
                Err(CallError::Network(e))
            }
            Err(_) => {
                self.stream = None;
                Err(CallError::Network(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("call to {} timed out after {timeout:?}", self.addr),
                )))
            }
        }
    }
}

#[derive(Debug)]
pub(crate) enum CallError {
    Unreachable(io::Error),
    Network(io::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Network(e) => write!(f, "network: {e}"),
        }
    }
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, BasicNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

/// Builds a [`RaftPeer`] per target voter, dialing `BasicNode::addr` (its controller
/// listener from `controller.quorum.voters`).
pub(crate) struct TcpNetwork {
    pub(crate) limits: TransportLimits,
    pub(crate) contacts: PeerContacts,
}

pub(crate) struct RaftPeer {
    target: u64,
    client: PeerClient,
    contacts: PeerContacts,
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        RaftPeer {
            target,
            client: PeerClient::new(node.addr.clone(), self.limits),
            contacts: self.contacts.clone(),
        }
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    let e = io::Error::new(io::ErrorKind::InvalidData, "mismatched response kind");
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let request = Request::AppendEntries(rpc);
        match self.client.call(&request, option.hard_ttl()).await {
            Ok(Response::AppendEntries(result)) => {
                if let Ok(mut contacts) = self.contacts.lock() {
                    contacts.insert(self.target, crate::partition::now_ms());
                }
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected()),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let request = Request::InstallSnapshot(rpc);
        match self.client.call(&request, option.hard_ttl()).await {
            Ok(Response::InstallSnapshot(result)) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected()),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let request = Request::Vote(rpc);
        match self.client.call(&request, option.hard_ttl()).await {
            Ok(Response::Vote(result)) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected()),
            Err(e) => Err(e.into_rpc()),
        }
    }
}

/// Serves the controller listener until `stop`: Raft RPCs go to `raft`, controller calls
/// to `controller` (which answers NOT_CONTROLLER unless this node leads).
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    controller: F,
    limits: TransportLimits,
    leader_contact: LeaderContact,
    stop: CancellationToken,
) where
    F: Fn(ControllerCall) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ControllerReply> + Send,
{
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (raft, controller, stop) = (raft.clone(), controller.clone(), stop.clone());
        let leader_contact = leader_contact.clone();
        connections.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                result = serve_connection(stream, raft, controller, limits, leader_contact) => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "controller connection closed");
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection<F, Fut>(
    mut stream: TcpStream,
    raft: Raft<TypeConfig>,
    controller: F,
    limits: TransportLimits,
    leader_contact: LeaderContact,
) -> io::Result<()>
where
    F: Fn(ControllerCall) -> Fut,
    Fut: std::future::Future<Output = ControllerReply>,
{
    let _ = stream.set_nodelay(true);
    while let Some(request) =
        read_frame::<Request>(&mut stream, limits.max_frame_bytes, limits.call_timeout).await?
    {
        if matches!(
            request,
            Request::AppendEntries(_) | Request::InstallSnapshot(_)
        ) {
            leader_contact.store(
                crate::partition::now_ms(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let response = match request {
            Request::AppendEntries(rpc) => Response::AppendEntries(raft.append_entries(rpc).await),
            Request::InstallSnapshot(rpc) => {
                Response::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            Request::Controller(call) => Response::Controller(controller(call).await),
        };
        write_frame(&mut stream, &response).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_and_garbage_frames_are_refused_without_allocating() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let first = read_frame::<Request>(&mut stream, 1024, Duration::from_secs(5)).await;
            let (mut stream, _) = listener.accept().await.unwrap();
            let second = read_frame::<Request>(&mut stream, 1024, Duration::from_secs(5)).await;
            (first.map(|_| ()), second.map(|_| ()))
        });
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let mut s2 = TcpStream::connect(addr).await.unwrap();
        s2.write_all(&5u32.to_be_bytes()).await.unwrap();
        s2.write_all(b"nope!").await.unwrap();
        let (first, second) = server.await.unwrap();
        assert!(first.unwrap_err().to_string().contains("exceeds"));
        assert_eq!(second.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn an_unreachable_peer_is_reported_as_such() {
        // A port nothing listens on (bound and released).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let limits = TransportLimits {
            max_frame_bytes: 1024,
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
        };
        let mut client = PeerClient::new(format!("127.0.0.1:{port}"), limits);
        let request = Request::Controller(ControllerCall::DescribeQuorum);
        match client.call(&request, Duration::from_secs(1)).await {
            Err(CallError::Unreachable(_)) => {}
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
