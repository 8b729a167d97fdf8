//! A well-behaved client beside hostile ones: an idempotent rdkafka producer sending one
//! message every 10 ms to a topic of its own for the whole test, so that after each
//! hostile case the test can check the broker still acknowledges.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use millrace_compat_tests::{unique_topic, wait_until, wire, TestBroker};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::{admin_create, flush_all_ok, producer, send, Recorder};

/// How long one case may take to be followed by a new acknowledgement.
const NEW_ACK_DEADLINE: Duration = Duration::from_secs(20);

pub struct Canary {
    pub topic: String,
    producer: Arc<ThreadedProducer<Recorder>>,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<usize>>,
}

impl Canary {
    /// Creates the canary topic and starts sending `canary-<i>` values; the sender is
    /// bounded by [`Canary::finish`] (or drop), 10,000 messages and 120 s.
    pub fn start(bootstrap: &str) -> Canary {
        let topic = unique_topic("canary");
        admin_create(bootstrap, &topic, 1);
        let (producer, recorder) = producer(bootstrap, &[("linger.ms", "0")]);
        let producer = Arc::new(producer);
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (producer, stop, topic) = (producer.clone(), stop.clone(), topic.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) && sent < 10_000 && Instant::now() < deadline {
                    let value = format!("canary-{sent}");
                    send(
                        &producer,
                        BaseRecord::with_opaque_to(&topic, sent).payload(value.as_bytes()),
                    );
                    sent += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                sent
            })
        };
        Canary {
            topic,
            producer,
            recorder,
            stop,
            sender: Some(sender),
        }
    }

    /// Waits for an acknowledgement newer than every one before this call.
    pub fn expect_new_ack(&self, case: &str) {
        let before = self.recorder.count();
        wait_until(
            &format!("{case}: a new canary ack"),
            NEW_ACK_DEADLINE,
            || match self.recorder.count() {
                now if now > before => Ok(()),
                now => Err(format!("{now} acks")),
            },
        );
    }

    /// Stops sending and checks that every message sent was acknowledged; returns how
    /// many were sent (values `canary-0` .. `canary-<n-1>`).
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self
            .sender
            .take()
            .expect("the sender runs until finish")
            .join()
            .expect("canary sender thread");
        flush_all_ok(&self.producer, &self.recorder, sent);
        sent
    }
}

impl Drop for Canary {
    /// A case that panicked still stops the sender, so the test ends promptly.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

/// After one hostile case: the broker process is alive, a fresh client's ApiVersions and
/// Metadata round trips work, and the canary gets a new acknowledgement.
pub fn expect_healthy(broker: &mut TestBroker, canary: &Canary, case: &str) {
    assert!(
        broker.is_running(),
        "{case}: broker process died\n{}",
        broker.log_tail()
    );
    let addr = broker.bootstrap();
    wire::api_versions_probe(&addr, Duration::from_secs(5))
        .and_then(|_| wire::metadata_brokers_probe(&addr, Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{case}: fresh client fails afterwards: {e}"));
    canary.expect_new_ack(case);
}
