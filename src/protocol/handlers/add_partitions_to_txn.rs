//! AddPartitionsToTxn: a producer adds partitions to its transaction (v0-3, one
//! transaction), or partition leaders verify or add them for producers (v4+, KIP-890:
//! several transactions, maybe on several coordinator shards; each shard answers for
//! its own and the results are merged).

use std::collections::BTreeMap;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ResponseKind,
};

use super::txns;
use crate::protocol::{errors, RequestContext};
use crate::txn::runtime::TxnCall;
use crate::txn::TxnRequest;

/// Kafka's answer for the partitions left alone when another one of the request failed.
const OPERATION_NOT_ATTEMPTED: i16 = 55;

pub async fn handle(
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    // v0-3 come from clients (transactions v1), v4+ from partition leaders.
    tracing::debug!(
        version = ctx.version(),
        client_id = ctx.header.client_id.as_deref().unwrap_or(""),
        "AddPartitionsToTxn"
    );
    if ctx.version() <= 3 {
        return single(ctx, request).await;
    }
    let mut by_shard: BTreeMap<i32, Vec<_>> = BTreeMap::new();
    for transaction in request.transactions {
        let shard = ctx.broker.txns.shard_of(&transaction.transactional_id.0);
        by_shard.entry(shard).or_default().push(transaction);
    }
    let mut response = AddPartitionsToTxnResponse::default();
    for (shard, transactions) in by_shard {
        let failed_results = |code: i16| -> Vec<AddPartitionsToTxnResult> {
            transactions
                .iter()
                .map(|t| {
                    AddPartitionsToTxnResult::default()
                        .with_transactional_id(t.transactional_id.clone())
                        .with_topic_results(topic_results(&t.topics, |_, _| code))
                })
                .collect()
        };
        let call = TxnCall::from(TxnRequest::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default().with_transactions(transactions.clone()),
        ));
        match txns::call_shard(ctx, shard, call).await {
            Ok(ResponseKind::AddPartitionsToTxn(answer)) if answer.error_code == errors::NONE => {
                response
                    .results_by_transaction
                    .extend(answer.results_by_transaction);
            }
            Ok(ResponseKind::AddPartitionsToTxn(answer)) => response
                .results_by_transaction
                .extend(failed_results(answer.error_code)),
            Ok(_) => response
                .results_by_transaction
                .extend(failed_results(errors::UNKNOWN_SERVER_ERROR)),
            Err(code) => response.results_by_transaction.extend(failed_results(code)),
        }
    }
    response
}

/// v0-3: one transaction, errors per partition. Partitions the metadata does not know
/// get UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, without asking
/// the coordinator (as KafkaApis answers).
async fn single(
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let transactional_id = request.v3_and_below_transactional_id.0.to_string();
    let image = ctx.broker.metadata.image();
    let known = |topic: &str, partition: i32| {
        image
            .topics
            .get(topic)
            .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
    };
    let any_unknown = request
        .v3_and_below_topics
        .iter()
        .any(|t| t.partitions.iter().any(|&p| !known(&t.name.0, p)));
    if any_unknown {
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
            topic_results(&request.v3_and_below_topics, |topic, p| {
                if known(topic, p) {
                    OPERATION_NOT_ATTEMPTED
                } else {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                }
            }),
        );
    }
    let failed = |code: i16| {
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topic_results(
            &request.v3_and_below_topics,
            |_, _| code,
        ))
    };
    let call = TxnCall::from(TxnRequest::AddPartitionsToTxn(request.clone()));
    match txns::call(ctx, &transactional_id, call).await {
        Ok(ResponseKind::AddPartitionsToTxn(response)) => response,
        Ok(_) => failed(errors::UNKNOWN_SERVER_ERROR),
        Err(code) => failed(code),
    }
}

/// Every partition of `topics` answered with `code(topic, partition)`.
fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    code: impl Fn(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|topic| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code(&topic.name.0, p))
                        })
                        .collect(),
                )
        })
        .collect()
}
