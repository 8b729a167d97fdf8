//! The network front: a listener that spawns one task per connection, and the
//! connection task itself (framing, in-order pipelined responses, bounds).
//!
//! Shutdown: every task watches one [`CancellationToken`]. On cancel the listener stops
//! accepting, each connection stops reading new requests, answers the ones it already
//! read, and closes; [`run`] returns once all connections are gone (or a deadline passes).

mod connection;
pub mod frame;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;

/// How long a shutdown waits for connections to finish their in-flight requests.
const SHUTDOWN_DRAIN_MS: u64 = 10_000;

/// Accepts connections until `shutdown` is cancelled, then drains them.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        connection::serve(stream, peer, broker, shutdown).await;
                    });
                }
                Err(error) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_DRAIN_MS), connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "connections still open after the shutdown drain deadline"
        );
    }
}
