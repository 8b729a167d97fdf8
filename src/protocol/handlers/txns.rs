//! Routing of transaction requests to the transaction coordinator runtime, shared by
//! the transaction handlers: one call per transactional id's shard; NOT_COORDINATOR when
//! another node leads the shard, COORDINATOR_NOT_AVAILABLE when this one cannot answer
//! (the client looks the coordinator up again and retries either way).

use kafka_protocol::messages::ResponseKind;

use crate::metadata::internal_topics::TRANSACTION_STATE_TOPIC;
use crate::protocol::{errors, RequestContext};
use crate::txn::runtime::TxnCall;

/// Sends a request to the shard of `transactional_id`; a Kafka error code when it
/// cannot be served here.
pub async fn call(
    ctx: &RequestContext,
    transactional_id: &str,
    call: TxnCall,
) -> Result<ResponseKind, i16> {
    let shard = ctx.broker.txns.shard_of(transactional_id);
    call_shard(ctx, shard, call).await
}

/// Sends a request to `shard`.
pub async fn call_shard(
    ctx: &RequestContext,
    shard: i32,
    call: TxnCall,
) -> Result<ResponseKind, i16> {
    if let Some(leader) = shard_leader(ctx, shard) {
        if leader != ctx.broker.config.node_id {
            return Err(errors::NOT_COORDINATOR);
        }
    }
    ctx.broker
        .txns
        .call_txn(shard, ctx.version(), call)
        .await
        .map_err(|error| {
            tracing::debug!(shard, %error, "transaction request not served");
            errors::COORDINATOR_NOT_AVAILABLE
        })
}

/// The leader of a `__transaction_state` partition, when the topic exists.
pub fn shard_leader(ctx: &RequestContext, shard: i32) -> Option<i32> {
    ctx.broker
        .metadata
        .image()
        .topics
        .get(TRANSACTION_STATE_TOPIC)?
        .partitions
        .iter()
        .find(|p| p.partition == shard)
        .map(|p| p.leader)
}
