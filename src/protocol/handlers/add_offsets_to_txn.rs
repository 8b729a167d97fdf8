//! AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the transaction,
//! so its TxnOffsetCommit gets the transaction's marker.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ResponseKind};

use super::txns;
use crate::protocol::{errors, RequestContext};
use crate::txn::runtime::TxnCall;
use crate::txn::TxnRequest;

pub async fn handle(
    ctx: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let transactional_id = request.transactional_id.0.to_string();
    let offsets_partition = ctx.broker.groups.shard_of(&request.group_id.0);
    let call = TxnCall::from(TxnRequest::AddOffsetsToTxn {
        request,
        offsets_partition,
    });
    match txns::call(ctx, &transactional_id, call).await {
        Ok(ResponseKind::AddOffsetsToTxn(response)) => response,
        Ok(_) => AddOffsetsToTxnResponse::default().with_error_code(errors::UNKNOWN_SERVER_ERROR),
        Err(code) => AddOffsetsToTxnResponse::default().with_error_code(code),
    }
}
