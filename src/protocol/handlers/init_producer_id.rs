//! InitProducerId for idempotent producers: a fresh producer id at epoch 0, from a
//! block reserved through the metadata quorum so ids stay unique across restarts.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::protocol::{errors, RequestContext};

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
    if request.transactional_id.is_some() {
        // Transactions need the transaction coordinator, which is not built yet.
        return response
            .with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
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
