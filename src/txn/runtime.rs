//! Transactions on the coordinator runtime: the `__transaction_state` shard type. The
//! runtime (`coordinator::runtime`) owns IO, the clock and timers; this file says how a
//! transaction shard is created, replayed and called. Markers the core asks for are
//! sent by [`super::markers`] once the record that decided them is committed.

use kafka_protocol::messages::ResponseKind;

use super::{
    partition_for_transactional_id, MarkerSend, TxnCoordinator, TxnEffects, TxnRequest, TxnTimer,
};
use crate::config::BrokerConfig;
use crate::coordinator::runtime::{CoordinatorError, CoordinatorRuntime};
use crate::coordinator::{self, Call, ReplayRecord, RequestId, RequestMeta, Shard};
use crate::metadata::internal_topics::{transaction_state_topic_request, TRANSACTION_STATE_TOPIC};
use crate::metadata::{CreateTopicRequest, MetadataImage};

/// The transaction coordinator's runtime handle.
pub type TxnRuntime = CoordinatorRuntime<TxnCoordinator>;

/// A request to a transaction shard, with a producer id the handler allocated for the
/// shard to keep as its spare (an EndTxn that exhausts a producer's epoch rotates to it).
#[derive(Debug)]
pub struct TxnCall {
    pub request: TxnRequest,
    pub spare_producer_id: Option<i64>,
}

impl From<TxnRequest> for TxnCall {
    fn from(request: TxnRequest) -> Self {
        TxnCall {
            request,
            spare_producer_id: None,
        }
    }
}

impl From<TxnEffects> for coordinator::Effects<TxnCoordinator> {
    fn from(effects: TxnEffects) -> Self {
        coordinator::Effects {
            producer: None,
            marker: None,
            records: effects
                .records
                .into_iter()
                .map(|r| coordinator::Record {
                    key: r.key,
                    value: r.value,
                })
                .collect(),
            responses: effects.responses,
            timers: effects.timers,
            sends: effects.markers,
        }
    }
}

impl Shard for TxnCoordinator {
    type Request = TxnCall;
    type Timer = TxnTimer;
    type Send = MarkerSend;
    const KIND: &'static str = "transaction";
    const TOPIC: &'static str = TRANSACTION_STATE_TOPIC;

    fn num_shards(config: &BrokerConfig) -> i32 {
        config.txn.state_log_num_partitions
    }

    fn topic_request(config: &BrokerConfig, image: &MetadataImage) -> CreateTopicRequest {
        transaction_state_topic_request(config, image)
    }

    fn new_core(config: &BrokerConfig, coordinator_epoch: i32) -> Self {
        TxnCoordinator::new(config.txn.clone(), coordinator_epoch)
    }

    fn replay(&mut self, record: &ReplayRecord<'_>) -> Result<(), String> {
        match record.key {
            Some(key) if !record.control => {
                TxnCoordinator::replay(self, key, record.value).map_err(|e| e.to_string())
            }
            _ => Ok(()),
        }
    }

    fn loaded(&mut self, now_ms: i64) -> coordinator::Effects<Self> {
        TxnCoordinator::loaded(self, now_ms).into()
    }

    fn handle(
        &mut self,
        now_ms: i64,
        request_id: RequestId,
        call: Call<TxnCall>,
        _image: &MetadataImage,
    ) -> coordinator::Effects<Self> {
        if let Some(producer_id) = call.request.spare_producer_id {
            if self.wants_producer_id() {
                self.supply_producer_id(producer_id);
            }
        }
        TxnCoordinator::handle(self, now_ms, request_id, call.version, call.request.request).into()
    }

    fn on_timer(&mut self, now_ms: i64, timer: TxnTimer) -> coordinator::Effects<Self> {
        TxnCoordinator::on_timer(self, now_ms, timer).into()
    }

    fn describe(call: &TxnCall) -> Option<String> {
        Some(match &call.request {
            TxnRequest::InitProducerId { request, .. } => format!(
                "InitProducerId transactional_id={:?} producer_id={} epoch={}",
                request.transactional_id.as_deref().map(|s| s.as_str()),
                request.producer_id.0,
                request.producer_epoch
            ),
            TxnRequest::EndTxn(request) => format!(
                "EndTxn transactional_id={} producer_id={} epoch={} commit={}",
                request.transactional_id.as_str(),
                request.producer_id.0,
                request.producer_epoch,
                request.committed
            ),
            TxnRequest::MarkersWritten {
                transactional_id,
                commit,
                ..
            } => format!("markers written transactional_id={transactional_id} commit={commit}"),
            _ => return None,
        })
    }

    fn describe_response(response: &ResponseKind) -> Option<String> {
        Some(match response {
            ResponseKind::InitProducerId(r) => format!(
                "InitProducerId error={} producer_id={} epoch={}",
                r.error_code, r.producer_id.0, r.producer_epoch
            ),
            ResponseKind::EndTxn(r) => format!("EndTxn error={}", r.error_code),
            _ => return None,
        })
    }
}

impl CoordinatorRuntime<TxnCoordinator> {
    pub fn shard_of(&self, transactional_id: &str) -> i32 {
        partition_for_transactional_id(transactional_id, self.num_shards())
    }

    /// Sends a request to the shard of its transactional id.
    pub async fn call_txn(
        &self,
        shard: i32,
        version: i16,
        call: TxnCall,
    ) -> Result<ResponseKind, CoordinatorError> {
        self.call(shard, version, call, RequestMeta::default())
            .await
    }

    /// Makes sure `__transaction_state` exists and the shards this node leads are
    /// loaded, and that `shard` answers here (FindCoordinator, when this node leads it).
    pub async fn ensure_ready(&self, shard: i32) -> Result<(), CoordinatorError> {
        // An empty ListTransactions loads everything as a side effect.
        self.call_txn(
            shard,
            0,
            TxnRequest::ListTransactions(Default::default()).into(),
        )
        .await
        .map(|_| ())
    }
}
