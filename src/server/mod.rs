//! The network front: a listener that spawns one task per connection, and the
//! connection task itself (framing, in-order pipelined responses, bounds).
//!
//! Bounds (Kafka's keys): `max.connections` (the acceptor waits at the bound, capped by
//! what RLIMIT_NOFILE allows), `max.connections.per.ip` and its overrides (a connection
//! over the bound is closed at once), `queued.max.request.bytes` (one broker-wide budget
//! for request bytes read but not yet handled), and per connection `queued.max.requests`,
//! `millrace.queued.max.response.bytes` and a write stall limit of
//! `connections.max.idle.ms`.
//!
//! Shutdown: every task watches one [`CancellationToken`]. On cancel the listener stops
//! accepting, each connection stops reading new requests, answers the ones it already
//! read, and closes; [`run`] returns once all connections are gone (or a deadline passes).

mod budget;
mod connection;
pub mod fd_limit;
pub mod frame;
mod quotas;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use budget::RequestBudget;
use quotas::ConnectionQuotas;

/// How long a shutdown waits for connections to finish their in-flight requests.
const SHUTDOWN_DRAIN_MS: u64 = 10_000;
/// Accept errors (EMFILE, ENFILE, ENOBUFS) back off exponentially between these bounds.
const ACCEPT_BACKOFF_MIN_MS: u64 = 10;
const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;

/// Accepts connections until `shutdown` is cancelled, then drains them.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let config = &broker.config;
    // The effective values: a dynamic change made before a restart still holds.
    let bounds = {
        let effective = broker.effective_config();
        (effective.max_connections, effective.max_connections_per_ip)
    };
    let quotas = ConnectionQuotas::new(
        effective_max_connections(bounds.0),
        bounds.1,
        config.max_connections_per_ip_overrides.clone(),
    );
    let quota_updates = tokio::spawn(follow_quota_changes(broker.clone(), quotas.clone(), bounds));
    let budget = RequestBudget::new(config.queued_max_request_bytes);
    let connections = TaskTracker::new();
    let mut accept_errors = AcceptErrors::default();
    loop {
        // At max.connections Kafka's acceptor blocks; new connections wait in the backlog.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = quotas.wait_for_slot() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_errors.recovered();
                    let slot = match quotas.register(peer.ip()) {
                        Ok(slot) => slot,
                        Err(refused) => {
                            tracing::info!(
                                ip = %peer.ip(),
                                max = refused.max,
                                "rejected connection: the address already has \
                                 max.connections.per.ip connections"
                            );
                            continue;
                        }
                    };
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    let budget = budget.clone();
                    connections.spawn(async move {
                        connection::serve(stream, peer, broker, budget, shutdown).await;
                        drop(slot);
                    });
                }
                Err(error) => {
                    let pause = accept_errors.failed(&error);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    quota_updates.abort();
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

/// Applies dynamic `max.connections` / `max.connections.per.ip` changes (AlterConfigs on
/// a broker resource) as metadata images arrive.
async fn follow_quota_changes(
    broker: Arc<Broker>,
    quotas: Arc<ConnectionQuotas>,
    mut applied: (usize, usize),
) {
    let mut images = broker.metadata.watch();
    while images.changed().await.is_ok() {
        let config = broker.effective_config();
        let wanted = (config.max_connections, config.max_connections_per_ip);
        if wanted != applied {
            applied = wanted;
            quotas.set_bounds(effective_max_connections(wanted.0), wanted.1);
        }
    }
}

/// `max.connections`, lowered to what the descriptor limit leaves room for.
fn effective_max_connections(max_connections: usize) -> usize {
    let limit = match fd_limit::nofile_limit() {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, max_connections, "cannot read RLIMIT_NOFILE");
            return max_connections;
        }
    };
    let allowed = fd_limit::connections_allowed_by(limit.soft);
    if allowed < max_connections {
        // Kafka's default max.connections is unbounded: only warn when one was asked for.
        if max_connections < i32::MAX as usize {
            tracing::warn!(
                max_connections,
                nofile = limit.soft,
                allowed,
                "max.connections is above what RLIMIT_NOFILE allows; accepting at most \
                 {allowed} connections (3/4 of the limit; the rest is for storage)"
            );
        } else {
            tracing::info!(
                nofile = limit.soft,
                "accepting at most {allowed} connections (3/4 of RLIMIT_NOFILE)"
            );
        }
        allowed
    } else {
        tracing::info!(
            max_connections,
            "accepting at most max.connections connections"
        );
        max_connections
    }
}

/// One accept-failure episode: exponential back-off, one log line when it starts and one
/// when it ends, not one per attempt.
#[derive(Default)]
struct AcceptErrors {
    failures: u32,
    since: Option<Instant>,
}

impl AcceptErrors {
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        if self.failures == 0 {
            self.since = Some(Instant::now());
            tracing::warn!(
                %error,
                "accept failed (out of descriptors?); backing off up to \
                 {ACCEPT_BACKOFF_MAX_MS} ms between attempts until it succeeds"
            );
        }
        let pause_ms = ACCEPT_BACKOFF_MIN_MS
            .saturating_mul(1 << self.failures.min(16))
            .min(ACCEPT_BACKOFF_MAX_MS);
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(pause_ms)
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            let elapsed_ms = self.since.map_or(0, |t| t.elapsed().as_millis());
            tracing::info!(failures = self.failures, elapsed_ms, "accept works again");
            self.failures = 0;
            self.since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_back_off_doubles_to_a_cap_and_resets() {
        let mut errors = AcceptErrors::default();
        let error = std::io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<u64> = (0..10)
            .map(|_| errors.failed(&error).as_millis() as u64)
            .collect();
        assert_eq!(pauses[..4], [10, 20, 40, 80]);
        assert_eq!(*pauses.last().unwrap(), ACCEPT_BACKOFF_MAX_MS);
        errors.recovered();
        assert_eq!(errors.failed(&error).as_millis(), 10);
    }
}
