//! ListTransactions: the transactions of the coordinator shards this node leads (an
//! admin client asks every broker and merges). Answers an empty list before
//! `__transaction_state` exists, without creating it.

use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ResponseKind};

use super::txns;
use crate::metadata::internal_topics::TRANSACTION_STATE_TOPIC;
use crate::protocol::{errors, RequestContext};
use crate::txn::runtime::TxnCall;
use crate::txn::TxnRequest;

/// Kafka's transaction state names, as filters name them.
const STATES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub async fn handle(
    ctx: &RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let node_id = ctx.broker.config.node_id;
    let led: Vec<i32> = match ctx
        .broker
        .metadata
        .image()
        .topics
        .get(TRANSACTION_STATE_TOPIC)
    {
        Some(topic) => topic
            .partitions
            .iter()
            .filter(|p| p.leader == node_id)
            .map(|p| p.partition)
            .collect(),
        None => Vec::new(),
    };
    let mut response = ListTransactionsResponse::default();
    if led.is_empty() {
        // No shard to ask; unknown state filters are still reported, as Kafka does.
        response.unknown_state_filters = request
            .state_filters
            .iter()
            .filter(|state| !STATES.contains(&state.as_str()))
            .cloned()
            .collect();
        return response;
    }
    for shard in led {
        let call = TxnCall::from(TxnRequest::ListTransactions(request.clone()));
        match txns::call_shard(ctx, shard, call).await {
            Ok(ResponseKind::ListTransactions(answer)) => {
                if answer.error_code != errors::NONE {
                    response.error_code = answer.error_code;
                }
                response.unknown_state_filters = answer.unknown_state_filters;
                response
                    .transaction_states
                    .extend(answer.transaction_states);
            }
            Ok(_) => response.error_code = errors::UNKNOWN_SERVER_ERROR,
            Err(_) => response.error_code = errors::COORDINATOR_LOAD_IN_PROGRESS,
        }
    }
    response
}
