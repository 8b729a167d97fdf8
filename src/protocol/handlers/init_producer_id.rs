//! InitProducerId: for an idempotent producer a fresh producer id at epoch 0, from a
//! block reserved through the metadata quorum so ids stay unique across restarts; for a
//! transactional one the transaction coordinator's answer (a new id, or the id's epoch
//! bumped, fencing older instances), given a fresh id to use if it needs one.

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use super::txns;

use crate::protocol::{errors, RequestContext};
use crate::txn::runtime::TxnCall;
use crate::txn::TxnRequest;

pub async fn handle(
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.0.is_empty())
    {
        // Kafka's answer to an empty (not null) transactional id.
        return response
            .with_error_code(errors::INVALID_REQUEST)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    if let Some(transactional_id) = request.transactional_id.clone() {
        return transactional(ctx, &transactional_id.0, request)
            .await
            .unwrap_or_else(|code| {
                response
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            });
    }
    match ctx.broker.next_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::warn!(%error, "producer id allocation failed");
            response
                .with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}

async fn transactional(
    ctx: &RequestContext,
    transactional_id: &str,
    request: InitProducerIdRequest,
) -> Result<InitProducerIdResponse, i16> {
    let fresh_producer_id = ctx.broker.next_producer_id().await.map_err(|error| {
        tracing::warn!(%error, "producer id allocation failed");
        errors::COORDINATOR_NOT_AVAILABLE
    })?;
    let call = TxnCall::from(TxnRequest::InitProducerId {
        request,
        fresh_producer_id,
    });
    match txns::call(ctx, transactional_id, call).await? {
        ResponseKind::InitProducerId(response) => Ok(response),
        _ => Err(errors::UNKNOWN_SERVER_ERROR),
    }
}
