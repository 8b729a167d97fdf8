//! Per-partition append queues and the blocking drainers that empty them.
//!
//! Appends write files, so they never run on the async workers: each goes through its
//! partition's FIFO and is appended on a blocking thread. Handing work to a blocking
//! thread costs thread wake-ups, so the appends of one produce request share one drainer:
//! an [`AppendSubmission`] queues every partition's job, then, when dropped, starts a
//! single blocking task that visits the partitions it claimed, one after the other.
//!
//! A partition's queue is drained by one drainer at a time (its *turn*), so jobs are
//! appended in queue order. A partition waiting for a drainer that is still busy
//! elsewhere (behind a slow disk) is claimed again by the next submitter to it, whose
//! own drainer may take the turn first: one slow partition does not hold back the
//! appends of another.
//!
//! A transactional batch may have to wait for its verification (KIP-890, see
//! `verification.rs`) before it is appended. Its job is queued in order like any other,
//! with a [`PendingVerification`]; a drainer that reaches it before the answer came
//! stops there (`Turn::Parked`, no thread held) and the jobs behind it wait, so a
//! connection's pipelined requests still append in request order. The answer hands the
//! partition to a new drainer.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{error_code, AppendError, AppendResult, Partition, PartitionError, Verification};

/// Appends waiting for this partition's drainer, in submission order.
#[derive(Default)]
pub(super) struct AppendQueue {
    jobs: VecDeque<AppendJob>,
    turn: Turn,
}

struct AppendJob {
    write: Write,
    /// The verification this job must wait for, if any.
    waits_for: Option<Arc<PendingVerification>>,
    done: oneshot::Sender<Result<AppendResult, AppendError>>,
}

/// The answer to a job's transaction verification, to come: `Ok` lets the append go
/// ahead (under its guard), an error answers the job without appending.
#[derive(Default)]
pub struct PendingVerification {
    result: Mutex<Option<Result<(), PartitionError>>>,
}

impl PendingVerification {
    fn result(&self) -> MutexGuard<'_, Option<Result<(), PartitionError>>> {
        self.result.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_pending(&self) -> bool {
        self.result().is_none()
    }
}

/// What a job appends: a client's records, a coordinator's records, or a transaction
/// marker (ordered with them).
enum Write {
    Records(Bytes, Verification),
    CoordinatorRecords(Bytes),
    TxnMarker {
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    },
}

/// Who drains a partition's queue. Invariant: a non-empty queue is never `Idle`.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Turn {
    /// Nothing queued.
    #[default]
    Idle,
    /// Jobs are queued and at least one drainer will still visit this partition; the
    /// first to arrive takes the turn.
    Waiting,
    /// A drainer is appending; it looks at the queue again before giving the turn up.
    Running,
    /// The first job waits for its verification; its answer starts the next drainer.
    Parked,
}

/// The appends of one request: queue them with [`Self::submit`]; dropping the submission
/// starts one blocking drainer for every partition it claimed. It must be created inside
/// a tokio runtime.
pub struct AppendSubmission {
    runtime: tokio::runtime::Handle,
    claimed: Vec<Arc<Partition>>,
}

impl AppendSubmission {
    pub fn new() -> AppendSubmission {
        AppendSubmission {
            runtime: tokio::runtime::Handle::current(),
            claimed: Vec::new(),
        }
    }

    /// Queues an append of `records` behind every append already queued for
    /// `partition`, and returns its result. The order is fixed when this returns, before
    /// any await: a connection's pipelined requests keep their order if the handler
    /// submits before it first awaits. The append starts once this submission is dropped.
    pub fn submit(
        &mut self,
        partition: &Arc<Partition>,
        records: Bytes,
    ) -> impl Future<Output = Result<AppendResult, AppendError>> + Send + 'static {
        self.submit_write(partition, Write::Records(records, Verification::Off), None)
    }

    /// Queues an append like [`Self::submit`] whose batch is appended only once
    /// `pending` is answered (see [`complete_verification`]): the order is fixed now, the
    /// jobs queued behind it wait.
    pub fn submit_verified(
        &mut self,
        partition: &Arc<Partition>,
        records: Bytes,
        verification: Verification,
        pending: Option<Arc<PendingVerification>>,
    ) -> impl Future<Output = Result<AppendResult, AppendError>> + Send + 'static {
        self.submit_write(partition, Write::Records(records, verification), pending)
    }

    /// Queues a transaction marker like [`Self::submit`] queues records (see
    /// [`Partition::append_txn_marker`]).
    pub fn submit_txn_marker(
        &mut self,
        partition: &Arc<Partition>,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> impl Future<Output = Result<AppendResult, AppendError>> + Send + 'static {
        let write = Write::TxnMarker {
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
        };
        self.submit_write(partition, write, None)
    }

    fn submit_write(
        &mut self,
        partition: &Arc<Partition>,
        write: Write,
        waits_for: Option<Arc<PendingVerification>>,
    ) -> impl Future<Output = Result<AppendResult, AppendError>> + Send + 'static {
        let (done, result) = oneshot::channel();
        let claim = {
            let mut queue = partition.append_queue();
            // A marker goes ahead of the jobs waiting for a verification: they are a later
            // transaction's (or one the marker ends, whose guard it drops), and the
            // verification may wait for this very marker (the coordinator answers
            // CONCURRENT_TRANSACTIONS until the previous transaction's markers are written).
            let position = if matches!(write, Write::TxnMarker { .. }) {
                queue
                    .jobs
                    .iter()
                    .position(|job| job.waits_for.as_ref().is_some_and(|p| p.is_pending()))
                    .unwrap_or(queue.jobs.len())
            } else {
                queue.jobs.len()
            };
            queue.jobs.insert(
                position,
                AppendJob {
                    write,
                    waits_for,
                    done,
                },
            );
            match queue.turn {
                // That drainer looks at the queue again before it lets go; a parked
                // queue is resumed by the answer its first job waits for, or here by a
                // marker that went ahead of it.
                Turn::Running => false,
                Turn::Parked if position > 0 => false,
                Turn::Idle | Turn::Waiting | Turn::Parked => {
                    queue.turn = Turn::Waiting;
                    true
                }
            }
        };
        if claim && !self.claimed.iter().any(|p| Arc::ptr_eq(p, partition)) {
            self.claimed.push(partition.clone());
        }
        async move {
            result.await.unwrap_or_else(|_| {
                Err(PartitionError::new(
                    error_code::KAFKA_STORAGE_ERROR,
                    "the append was abandoned",
                )
                .into())
            })
        }
    }
}

impl Default for AppendSubmission {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for AppendSubmission {
    fn drop(&mut self) {
        // In Drop, so a request cancelled between submit and start cannot leave a
        // partition `Waiting` for a drainer that never comes.
        if self.claimed.is_empty() {
            return;
        }
        let partitions = std::mem::take(&mut self.claimed);
        // Each job answers through its own channel; the task's handle is not needed.
        drop(self.runtime.spawn_blocking(move || drain(partitions)));
    }
}

/// Visits the claimed partitions round-robin until none has a turn left for this drainer.
fn drain(partitions: Vec<Arc<Partition>>) {
    let mut visits = VecDeque::from(partitions);
    while let Some(partition) = visits.pop_front() {
        if partition.drain_turn() {
            visits.push_back(partition);
        }
    }
}

impl Partition {
    fn append_queue(&self) -> MutexGuard<'_, AppendQueue> {
        self.appends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the jobs queued now, unless another drainer took (or finished) the turn.
    /// Returns whether jobs are left that this drainer must come back for; taking only
    /// what is queued now keeps a busy partition from starving the drainer's others. Stops
    /// (parks the queue) at a job whose verification is not answered yet.
    fn drain_turn(&self) -> bool {
        let jobs = {
            let mut queue = self.append_queue();
            if queue.turn != Turn::Waiting {
                return false;
            }
            debug_assert!(!queue.jobs.is_empty(), "a waiting turn has jobs");
            // Checked under the queue lock, which the answer takes after it is set: an
            // answer either is seen here or finds the queue parked (no lost wake-up).
            let ready = queue
                .jobs
                .iter()
                .take_while(|job| !job.waits_for.as_ref().is_some_and(|p| p.is_pending()))
                .count();
            if ready == 0 {
                queue.turn = Turn::Parked;
                return false;
            }
            queue.turn = Turn::Running;
            queue.jobs.drain(..ready).collect::<Vec<_>>()
        };
        for job in jobs {
            let refused = job
                .waits_for
                .as_ref()
                .and_then(|pending| pending.result().clone())
                .and_then(Result::err);
            let result = match refused {
                Some(error) => Err(error.into()),
                None => self.run(&job.write),
            };
            // The requester may be gone (connection closed); the append stands.
            let _ = job.done.send(result);
        }
        let mut queue = self.append_queue();
        if queue.jobs.is_empty() {
            queue.turn = Turn::Idle;
            false
        } else {
            queue.turn = Turn::Waiting;
            true
        }
    }

    fn run(&self, write: &Write) -> Result<AppendResult, AppendError> {
        // A panic must not wedge the queue with the turn stuck on `Running`.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match write {
            Write::Records(records, verification) => self.append_verified(records, *verification),
            Write::CoordinatorRecords(records) => self.append_as_coordinator(records),
            &Write::TxnMarker {
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
            } => self.append_txn_marker(producer_id, producer_epoch, coordinator_epoch, commit),
        }))
        .unwrap_or_else(|_| {
            Err(PartitionError::new(error_code::KAFKA_STORAGE_ERROR, "append panicked").into())
        })
    }

    #[cfg(test)]
    pub(super) fn append_queue_parked(&self) -> bool {
        self.append_queue().turn == Turn::Parked
    }

    /// One append on its own: see [`AppendSubmission`].
    pub fn submit_append(
        self: &Arc<Self>,
        records: Bytes,
    ) -> impl Future<Output = Result<AppendResult, AppendError>> + Send + 'static {
        AppendSubmission::new().submit(self, records)
    }

    /// A coordinator's own write (the coordinator runtime's records, see
    /// [`Partition::append_as_coordinator`]), on its own.
    pub fn submit_coordinator_append(
        self: &Arc<Self>,
        records: Bytes,
    ) -> impl Future<Output = Result<AppendResult, AppendError>> + Send + 'static {
        AppendSubmission::new().submit_write(self, Write::CoordinatorRecords(records), None)
    }

    /// A transaction marker on its own (a coordinator ending a transaction on its own
    /// partition).
    pub fn submit_txn_marker(
        self: &Arc<Self>,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> impl Future<Output = Result<AppendResult, AppendError>> + Send + 'static {
        AppendSubmission::new().submit_txn_marker(
            self,
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
        )
    }
}

/// The answer side of a job's verification: [`Self::answer`] sets it and, when the
/// partition's queue is parked on it, starts a drainer (a blocking task) for it. Dropped
/// unanswered (its task cancelled or panicked), it answers with a retriable error, so a
/// queue can never stay parked.
pub struct VerificationAnswer {
    /// Where the resumed drainer runs: a drop may happen off the runtime's threads.
    runtime: tokio::runtime::Handle,
    partition: Arc<Partition>,
    pending: Arc<PendingVerification>,
    answered: bool,
}

impl VerificationAnswer {
    /// A pending verification for a job of `partition`, and the side that answers it.
    /// Call it inside a tokio runtime.
    pub fn new(partition: &Arc<Partition>) -> (Arc<PendingVerification>, VerificationAnswer) {
        let pending = Arc::new(PendingVerification::default());
        let answer = VerificationAnswer {
            runtime: tokio::runtime::Handle::current(),
            partition: partition.clone(),
            pending: pending.clone(),
            answered: false,
        };
        (pending, answer)
    }

    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    pub fn answer(mut self, result: Result<(), PartitionError>) {
        self.set(result);
    }

    fn set(&mut self, result: Result<(), PartitionError>) {
        self.answered = true;
        *self.pending.result() = Some(result);
        let resume = {
            let mut queue = self.partition.append_queue();
            if queue.turn == Turn::Parked {
                queue.turn = Turn::Waiting;
                true
            } else {
                false
            }
        };
        if resume {
            let partition = self.partition.clone();
            drop(self.runtime.spawn_blocking(move || drain(vec![partition])));
        }
    }
}

impl Drop for VerificationAnswer {
    fn drop(&mut self) {
        if !self.answered {
            self.set(Err(PartitionError::new(
                error_code::NOT_ENOUGH_REPLICAS,
                "the transaction verification was abandoned",
            )));
        }
    }
}
