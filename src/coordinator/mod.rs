//! The coordinator runtime and the contract of the shard types it runs.
//!
//! A coordinator (groups, transactions) is a pure state machine per partition (shard) of
//! its internal topic: requests and timer events in; records to persist, responses,
//! timer changes and follow-up work out, as [`Effects`]. It never does IO and never
//! reads a clock. One [`runtime::CoordinatorRuntime`] per shard type owns the IO, the
//! clock and the timers, loads a shard by replaying its partition (the same records live
//! traffic writes), and follows shard leadership.

pub mod codec;
pub mod runtime;

use std::fmt::Debug;
use std::hash::Hash;

use bytes::Bytes;
use futures::future::BoxFuture;
use kafka_protocol::messages::ResponseKind;

use crate::config::BrokerConfig;
use crate::metadata::{CreateTopicRequest, MetadataImage};

/// Identifies one request to a shard; its response may come out of a later call.
pub type RequestId = u64;

/// One record of a coordinator topic; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Per-request data the request bodies lack: the header's client id and the peer's
/// host, as Kafka records and shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The request header's client id ("" if absent).
    pub client_id: String,
    /// The client's address as Kafka shows it, e.g. "/10.0.0.7".
    pub client_host: String,
}

/// One record read back from a shard's partition at load, with its batch's producer
/// fields (transactional writes and their markers replay differently).
#[derive(Debug, Clone, Copy)]
pub struct ReplayRecord<'a> {
    pub offset: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub transactional: bool,
    pub control: bool,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// A transaction marker a coordinator writes to its own partition (the group
/// coordinator ending a transaction's offset commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
}

/// What one call produced. The runtime persists `records` (in order, as one batch; a
/// transactional batch of `producer` when set) or `marker` before it sends any of
/// `responses` or starts any of `sends`; `timers` set (Some deadline, ms on the clock
/// the core was given) or cancel (None).
pub struct Effects<S: Shard> {
    pub records: Vec<Record>,
    /// (producer id, epoch): `records` are that producer's transactional writes.
    pub producer: Option<(i64, i16)>,
    /// Written instead of records (an Effects carries one or the other).
    pub marker: Option<TxnMarker>,
    pub responses: Vec<(RequestId, ResponseKind)>,
    pub timers: Vec<(S::Timer, Option<i64>)>,
    /// Follow-up work started once `records` are committed (transaction markers); each
    /// ends in a request to the same shard.
    pub sends: Vec<S::Send>,
}

impl<S: Shard> Default for Effects<S> {
    fn default() -> Self {
        Effects {
            records: Vec::new(),
            producer: None,
            marker: None,
            responses: Vec::new(),
            timers: Vec::new(),
            sends: Vec::new(),
        }
    }
}

/// A request as the runtime hands it to a shard.
pub struct Call<R> {
    pub version: i16,
    pub request: R,
    pub meta: RequestMeta,
}

/// A coordinator shard type: the pure core of one partition of its internal topic.
pub trait Shard: Sized + Send + Sync + 'static {
    type Request: Send + Sync + 'static;
    /// At most one deadline per timer; a later set replaces it.
    type Timer: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// Follow-up work (see [`Effects::sends`]).
    type Send: Send + Sync + 'static;
    /// For logs: "group", "transaction".
    const KIND: &'static str;
    /// The internal topic whose partitions are the shards.
    const TOPIC: &'static str;

    fn num_shards(config: &BrokerConfig) -> i32;
    /// How the runtime creates [`Shard::TOPIC`] on first use.
    fn topic_request(config: &BrokerConfig, image: &MetadataImage) -> CreateTopicRequest;
    /// A fresh core for a shard about to be replayed. `coordinator_epoch` is the leader
    /// epoch of the shard's partition at load.
    fn new_core(config: &BrokerConfig, coordinator_epoch: i32) -> Self;
    /// Applies one record read back from the shard's partition.
    fn replay(&mut self, record: &ReplayRecord<'_>) -> Result<(), String>;
    /// After the last replayed record, once per load.
    fn loaded(&mut self, now_ms: i64) -> Effects<Self>;
    fn handle(
        &mut self,
        now_ms: i64,
        request_id: RequestId,
        call: Call<Self::Request>,
        image: &MetadataImage,
    ) -> Effects<Self>;
    fn on_timer(&mut self, now_ms: i64, timer: Self::Timer) -> Effects<Self>;
    /// The answer to a request whose records could not be written with Kafka error
    /// `code`; `None` drops it (the client gets COORDINATOR_NOT_AVAILABLE and retries).
    fn on_write_failure(_code: i16, _response: ResponseKind) -> Option<ResponseKind> {
        None
    }
    /// The request, for the debug log (None: not logged).
    fn describe(_request: &Self::Request) -> Option<String> {
        None
    }
    /// The response, for the debug log (None: not logged).
    fn describe_response(_response: &ResponseKind) -> Option<String> {
        None
    }
}

/// Starts the follow-up work of a shard type; the request it resolves to (if any) is
/// handed to the same shard.
pub type Sender<S> = std::sync::Arc<
    dyn Fn(i32, <S as Shard>::Send) -> BoxFuture<'static, Option<<S as Shard>::Request>>
        + Send
        + Sync,
>;
