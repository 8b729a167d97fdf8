//! TxnOffsetCommit: a transactional producer commits a group's offsets inside its
//! transaction; they become visible when the transaction commits. Before the offsets are
//! written, the group's `__consumer_offsets` partition is verified to be in the
//! transaction (KIP-890, as Kafka's commitTransactionalOffsets), or, from a
//! transaction-version-2 client (v5+, which sends no AddOffsetsToTxn), added to it.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::groups;
use crate::group::GroupRequest;
use crate::metadata::internal_topics::OFFSETS_TOPIC;
use crate::protocol::{errors, RequestContext};
use crate::txn::verify::{verify, Operation, Question, NETWORK_EXCEPTION};

pub async fn handle(
    ctx: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    // Every partition gets the error when the coordinator cannot answer.
    let failed = |code: i16| {
        TxnOffsetCommitResponse::default().with_topics(
            request
                .topics
                .iter()
                .map(|topic| {
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(topic.name.clone())
                        .with_partitions(
                            topic
                                .partitions
                                .iter()
                                .map(|p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    };
    if let Err(code) = verify_offsets_partition(ctx, &group_id, &request).await {
        return failed(code);
    }
    match groups::call(
        ctx,
        &group_id,
        GroupRequest::TxnOffsetCommit(request.clone()),
    )
    .await
    {
        Some(ResponseKind::TxnOffsetCommit(response)) => response,
        _ => failed(errors::COORDINATOR_NOT_AVAILABLE),
    }
}

/// The verification (or, v5+, the implicit add) of the group's offsets partition, when
/// this node leads it (else the group call answers the routing error).
async fn verify_offsets_partition(
    ctx: &RequestContext,
    group_id: &str,
    request: &TxnOffsetCommitRequest,
) -> Result<(), i16> {
    let broker = &ctx.broker;
    if !broker.config.txn.partition_verification_enable {
        return Ok(());
    }
    let shard = broker.groups.shard_of(group_id);
    let image = broker.metadata.image();
    let leads = image
        .topics
        .get(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == shard))
        .is_some_and(|p| p.leader == broker.config.node_id);
    if !leads {
        return Ok(());
    }
    let partition = (OFFSETS_TOPIC.to_string(), shard);
    let question = Question {
        node_id: broker.config.node_id,
        image: &image,
        txns: &broker.txns,
        connections: &broker.txn_verify_connections,
        transactional_id: &request.transactional_id.0,
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        operation: Operation::for_txn_offset_commit(ctx.version()),
    };
    let refused = verify(
        &question,
        std::slice::from_ref(&partition),
        &broker.config.txn,
    )
    .await;
    match refused.get(&partition) {
        None => Ok(()),
        // Kafka's group coordinator normalizes these to a retriable coordinator error.
        Some(
            &(NETWORK_EXCEPTION | errors::NOT_COORDINATOR | errors::COORDINATOR_LOAD_IN_PROGRESS),
        ) => Err(errors::COORDINATOR_NOT_AVAILABLE),
        Some(&code) => Err(code),
    }
}
