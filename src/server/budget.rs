//! `queued.max.request.bytes`: one broker-wide budget for request bytes that have been
//! read but not yet handled (partial frames included).
//!
//! As Kafka's non-strict `SimpleMemoryPool`: a connection may read while any budget is
//! left, and is charged for what it actually read, so the total can overshoot by at most
//! one read per connection; a request larger than what is left (up to
//! `socket.request.max.bytes`, which the budget must be at least) still gets through once
//! earlier ones are answered. With the budget spent, every connection stops reading until
//! handled requests give bytes back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug)]
pub struct RequestBudget {
    /// Bytes left; may dip below zero (see above). `None`: unbounded.
    available_bytes: Option<AtomicI64>,
    returned: Notify,
}

impl RequestBudget {
    pub fn new(max_bytes: Option<u64>) -> Arc<RequestBudget> {
        Arc::new(RequestBudget {
            available_bytes: max_bytes
                .map(|b| AtomicI64::new(i64::try_from(b).unwrap_or(i64::MAX))),
            returned: Notify::new(),
        })
    }

    /// Waits until some budget is left. Cancel-safe.
    pub async fn wait_available(&self) {
        let Some(available) = &self.available_bytes else {
            return;
        };
        loop {
            // Registered before the check, so a release in between is not missed.
            let returned = self.returned.notified();
            if available.load(Ordering::Acquire) > 0 {
                return;
            }
            returned.await;
        }
    }

    fn charge(&self, bytes: usize) {
        if let Some(available) = &self.available_bytes {
            available.fetch_sub(bytes as i64, Ordering::AcqRel);
        }
    }

    fn release(&self, bytes: usize) {
        if let Some(available) = &self.available_bytes {
            let before = available.fetch_add(bytes as i64, Ordering::AcqRel);
            if before <= 0 && before + bytes as i64 > 0 {
                self.returned.notify_waiters();
            }
        }
    }

    #[cfg(test)]
    fn available(&self) -> Option<i64> {
        self.available_bytes
            .as_ref()
            .map(|a| a.load(Ordering::Acquire))
    }
}

/// Bytes charged to the budget, given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<RequestBudget>,
    bytes: usize,
}

impl Charge {
    pub fn new(budget: Arc<RequestBudget>) -> Charge {
        Charge { budget, bytes: 0 }
    }

    /// Charges `bytes` more (just read).
    pub fn add(&mut self, bytes: usize) {
        self.budget.charge(bytes);
        self.bytes += bytes;
    }

    /// Moves `bytes` of this charge into a new one (a complete frame split off the
    /// read buffer keeps its bytes charged until it is handled).
    pub fn split(&mut self, bytes: usize) -> Charge {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Charge {
            budget: self.budget.clone(),
            bytes,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn readers_wait_while_the_budget_is_spent_and_resume_on_release() {
        let budget = RequestBudget::new(Some(100));
        let mut first = Charge::new(budget.clone());
        first.add(60);
        budget.wait_available().await;
        // Non-strict, as Kafka: a read may overshoot what is left.
        first.add(90);
        assert_eq!(budget.available(), Some(-50));
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.wait_available().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "must wait while nothing is left");
        let frame = first.split(100);
        drop(frame);
        assert_eq!(budget.available(), Some(50));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the release")
            .unwrap();
        drop(first);
        assert_eq!(budget.available(), Some(100));
    }

    #[tokio::test]
    async fn unbounded_never_waits() {
        let budget = RequestBudget::new(None);
        let mut charge = Charge::new(budget.clone());
        charge.add(usize::MAX / 4);
        budget.wait_available().await;
        assert_eq!(budget.available(), None);
    }
}
