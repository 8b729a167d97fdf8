//! Connection counts, as Kafka's `ConnectionQuotas`: at `max.connections` the acceptor
//! waits for a connection to close (the new one stays in the kernel's backlog); over
//! `max.connections.per.ip` (or its override for that address) a new connection is
//! closed at once. Both bounds can change at runtime (dynamic broker configs).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct ConnectionQuotas {
    max_total: AtomicUsize,
    default_per_ip: AtomicUsize,
    per_ip_overrides: HashMap<IpAddr, usize>,
    counts: Mutex<Counts>,
    /// One waiter (the acceptor); `notify_one` keeps a permit if it is not waiting yet.
    slot_freed: Notify,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A new connection from an address that already has its maximum.
#[derive(Debug)]
pub struct TooManyConnections {
    pub max: usize,
}

impl ConnectionQuotas {
    pub fn new(
        max_total: usize,
        default_per_ip: usize,
        per_ip_overrides: HashMap<IpAddr, usize>,
    ) -> Arc<ConnectionQuotas> {
        Arc::new(ConnectionQuotas {
            max_total: AtomicUsize::new(max_total),
            default_per_ip: AtomicUsize::new(default_per_ip),
            per_ip_overrides,
            counts: Mutex::new(Counts::default()),
            slot_freed: Notify::new(),
        })
    }

    /// New bounds from a config change: later accepts and registrations follow them;
    /// connections already open stay (as in Kafka). A raised bound wakes the acceptor.
    pub fn set_bounds(&self, max_total: usize, default_per_ip: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.default_per_ip.store(default_per_ip, Ordering::Relaxed);
        self.slot_freed.notify_one();
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: each update is one step.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until fewer than `max.connections` are open. Cancel-safe.
    pub async fn wait_for_slot(&self) {
        while self.counts().total >= self.max_total.load(Ordering::Relaxed) {
            self.slot_freed.notified().await;
        }
    }

    /// Counts a new connection from `ip`, or refuses it when its address is at its bound.
    pub fn register(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, TooManyConnections> {
        let max = self
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or_else(|| self.default_per_ip.load(Ordering::Relaxed));
        let mut counts = self.counts();
        let count = counts.per_ip.entry(ip).or_default();
        if *count >= max {
            return Err(TooManyConnections { max });
        }
        *count += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            quotas: self.clone(),
            ip,
        })
    }

    fn unregister(&self, ip: IpAddr) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.per_ip.remove(&ip);
            }
        }
        drop(counts);
        self.slot_freed.notify_one();
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        self.counts().total
    }
}

/// One counted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.quotas.unregister(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn per_ip_bounds_with_overrides_and_release() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let quotas = ConnectionQuotas::new(100, 2, HashMap::from([(b, 3)]));
        let a1 = quotas.register(a).unwrap();
        let _a2 = quotas.register(a).unwrap();
        assert_eq!(quotas.register(a).unwrap_err().max, 2);
        let _b: Vec<_> = (0..3).map(|_| quotas.register(b).unwrap()).collect();
        assert_eq!(quotas.register(b).unwrap_err().max, 3);
        drop(a1);
        let _a3 = quotas.register(a).unwrap();
        assert_eq!(quotas.total(), 5);
    }

    #[tokio::test]
    async fn the_acceptor_waits_at_max_connections_until_one_closes() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let quotas = ConnectionQuotas::new(2, usize::MAX, HashMap::new());
        let first = quotas.register(ip).unwrap();
        let _second = quotas.register(ip).unwrap();
        let waiting = tokio::spawn({
            let quotas = quotas.clone();
            async move { quotas.wait_for_slot().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no slot while 2 of 2 are open");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("a closed connection frees a slot")
            .unwrap();
    }

    #[tokio::test]
    async fn changed_bounds_apply_to_later_connections() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let quotas = ConnectionQuotas::new(1, 1, HashMap::new());
        let _first = quotas.register(ip).unwrap();
        assert_eq!(quotas.register(ip).unwrap_err().max, 1);
        let waiting = tokio::spawn({
            let quotas = quotas.clone();
            async move { quotas.wait_for_slot().await }
        });
        quotas.set_bounds(3, 2);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("a raised max.connections wakes the acceptor")
            .unwrap();
        let _second = quotas.register(ip).unwrap();
        assert_eq!(quotas.register(ip).unwrap_err().max, 2);
    }
}
