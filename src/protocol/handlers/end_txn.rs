//! EndTxn: commits or aborts the producer's transaction. Answered once the coordinator
//! has written its decision; the markers follow (`txn::markers`).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId, ResponseKind};

use super::txns;
use crate::protocol::{errors, RequestContext};
use crate::txn::runtime::TxnCall;
use crate::txn::TxnRequest;

/// A transactions-v2 producer's epoch is bumped by every EndTxn; near the top the
/// coordinator rotates to a new producer id, which it must hold before the call.
const EPOCH_NEAR_EXHAUSTION: i16 = i16::MAX - 2;

pub async fn handle(ctx: &RequestContext, request: EndTxnRequest) -> EndTxnResponse {
    let transactional_id = request.transactional_id.0.to_string();
    // v5+ is a transactions-v2 client (epoch bump per transaction).
    tracing::debug!(transactional_id, version = ctx.version(), "EndTxn");
    let spare_producer_id = if request.producer_epoch >= EPOCH_NEAR_EXHAUSTION {
        ctx.broker.next_producer_id().await.ok()
    } else {
        None
    };
    let call = TxnCall {
        request: TxnRequest::EndTxn(request),
        spare_producer_id,
    };
    let failed = |code| {
        EndTxnResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    match txns::call(ctx, &transactional_id, call).await {
        Ok(ResponseKind::EndTxn(response)) => response,
        Ok(_) => failed(errors::UNKNOWN_SERVER_ERROR),
        Err(code) => failed(code),
    }
}
