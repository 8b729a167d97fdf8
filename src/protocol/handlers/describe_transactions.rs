//! DescribeTransactions: each transactional id is described by its coordinator shard;
//! ids whose shard is not served here get NOT_COORDINATOR (or
//! COORDINATOR_NOT_AVAILABLE), as Kafka answers per id.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ResponseKind,
};

use super::txns;
use crate::protocol::{errors, RequestContext};
use crate::txn::runtime::TxnCall;
use crate::txn::TxnRequest;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut by_shard: BTreeMap<i32, Vec<_>> = BTreeMap::new();
    for id in request.transactional_ids {
        by_shard
            .entry(ctx.broker.txns.shard_of(&id.0))
            .or_default()
            .push(id);
    }
    let mut response = DescribeTransactionsResponse::default();
    for (shard, ids) in by_shard {
        let failed = |code: i16| -> Vec<TransactionState> {
            ids.iter()
                .map(|id| {
                    TransactionState::default()
                        .with_transactional_id(id.clone())
                        .with_error_code(code)
                })
                .collect()
        };
        let call = TxnCall::from(TxnRequest::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(ids.clone()),
        ));
        match txns::call_shard(ctx, shard, call).await {
            Ok(ResponseKind::DescribeTransactions(answer)) => response
                .transaction_states
                .extend(answer.transaction_states),
            Ok(_) => response
                .transaction_states
                .extend(failed(errors::UNKNOWN_SERVER_ERROR)),
            Err(code) => response.transaction_states.extend(failed(code)),
        }
    }
    response
}
