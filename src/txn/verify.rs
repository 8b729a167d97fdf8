//! The partition leader's side of KIP-890 (Kafka's AddPartitionsToTxnManager): before a
//! producer's first transactional batch of a transaction is appended here, ask the
//! producer's transaction coordinator whether the partitions are in its ongoing
//! transaction (AddPartitionsToTxn v4, verify_only), or, for a transaction-version-2
//! client, add them (v5, Kafka's `addPartition` operation). The coordinator is called
//! directly when this node leads its shard, else over a pooled inter-broker connection.
//! The coordinator's answer is mapped to the error Kafka gives the produce.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, ResponseKind, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::coordinator::{
    CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE, PRODUCER_FENCED, TRANSACTION_ABORTABLE,
};
use super::runtime::{TxnCall, TxnRuntime};
use super::{TxnConfig, TxnRequest};
use crate::inter_broker::ConnectionPool;
use crate::metadata::internal_topics::TRANSACTION_STATE_TOPIC;
use crate::metadata::MetadataImage;
use crate::protocol::errors;

pub const NETWORK_EXCEPTION: i16 = 13;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const NOT_ENOUGH_REPLICAS: i16 = 19;
/// An AddPartitionsToTxn answer is a few bytes per partition.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Kafka sends these with `request.timeout.ms` (default 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_millis(30_000);

/// What the coordinator is asked, by the version of the client's request (Kafka's
/// TransactionSupportedOperation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// An old client: verify, and a partition not in the transaction is INVALID_TXN_STATE.
    DefaultError,
    /// A client that knows TRANSACTION_ABORTABLE (Produce v11): verify.
    GenericError,
    /// A transaction-version-2 client (Produce v12+, TxnOffsetCommit v5+): add the
    /// partition to the transaction.
    AddPartition,
}

impl Operation {
    pub fn for_produce(version: i16) -> Operation {
        match version {
            v if v > 11 => Operation::AddPartition,
            11 => Operation::GenericError,
            _ => Operation::DefaultError,
        }
    }

    pub fn for_txn_offset_commit(version: i16) -> Operation {
        match version {
            v if v >= 5 => Operation::AddPartition,
            4 => Operation::GenericError,
            _ => Operation::DefaultError,
        }
    }
}

/// Who asks the coordinator what, besides the partitions: this node and what it reaches
/// the coordinator with, and the producer's transaction.
#[derive(Clone, Copy)]
pub struct Question<'a> {
    pub node_id: i32,
    pub image: &'a MetadataImage,
    pub txns: &'a TxnRuntime,
    pub connections: &'a ConnectionPool,
    pub transactional_id: &'a str,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub operation: Operation,
}

/// Verifies (or adds) `partitions` for the transaction; the error code for each
/// partition that may not be written (none: all verified), as Kafka's
/// AddPartitionsToTxnManager hands it to its caller (see [`produce_error`]).
///
/// An add (transactions v2) that meets CONCURRENT_TRANSACTIONS (the previous
/// transaction's markers are still being written) is asked again every
/// `add.partitions.to.txn.retry.backoff.ms` for up to
/// `add.partitions.to.txn.retry.backoff.max.ms`, as Kafka's broker does, before the
/// client hears it; a verification is not retried.
pub async fn verify(
    question: &Question<'_>,
    partitions: &[(String, i32)],
    retry: &TxnConfig,
) -> HashMap<(String, i32), i16> {
    let started = Instant::now();
    let backoff = Duration::from_millis(u64::from(retry.add_partitions_retry_backoff_ms));
    let retry_for = Duration::from_millis(u64::from(retry.add_partitions_retry_backoff_max_ms));
    let mut refused = verify_once(question, partitions).await;
    while question.operation == Operation::AddPartition && started.elapsed() + backoff <= retry_for
    {
        let concurrent: Vec<(String, i32)> = refused
            .iter()
            .filter(|(_, &code)| code == CONCURRENT_TRANSACTIONS)
            .map(|(partition, _)| partition.clone())
            .collect();
        if concurrent.is_empty() {
            break;
        }
        tokio::time::sleep(backoff).await;
        for partition in &concurrent {
            refused.remove(partition);
        }
        refused.extend(verify_once(question, &concurrent).await);
    }
    refused
}

/// One question to the coordinator: see [`verify`].
async fn verify_once(
    question: &Question<'_>,
    partitions: &[(String, i32)],
) -> HashMap<(String, i32), i16> {
    let raw = ask(question, partitions).await;
    let operation = question.operation;
    let mut refused = HashMap::new();
    match raw {
        Err(code) => {
            for partition in partitions {
                refused.insert(partition.clone(), code);
            }
        }
        Ok(answer) => {
            for result in answer.results_by_transaction {
                for topic in result.topic_results {
                    for p in topic.results_by_partition {
                        let code = match p.partition_error_code {
                            errors::NONE => continue,
                            // Producers expect INVALID_PRODUCER_EPOCH here.
                            PRODUCER_FENCED => errors::INVALID_PRODUCER_EPOCH,
                            TRANSACTION_ABORTABLE if operation != Operation::GenericError => {
                                INVALID_TXN_STATE
                            }
                            code => code,
                        };
                        refused.insert((topic.name.0.to_string(), p.partition_index), code);
                    }
                }
            }
        }
    }
    refused
}

/// Kafka's translation of coordinator errors for the produce answer: the retriable ones
/// old clients may not retry become NOT_ENOUGH_REPLICAS (retried, no metadata refresh).
pub fn produce_error(code: i16) -> i16 {
    match code {
        CONCURRENT_TRANSACTIONS
        | NETWORK_EXCEPTION
        | errors::COORDINATOR_LOAD_IN_PROGRESS
        | errors::COORDINATOR_NOT_AVAILABLE
        | errors::NOT_COORDINATOR => NOT_ENOUGH_REPLICAS,
        code => code,
    }
}

/// The coordinator's answer, or one error for every partition.
async fn ask(
    question: &Question<'_>,
    partitions: &[(String, i32)],
) -> Result<AddPartitionsToTxnResponse, i16> {
    let Question {
        node_id,
        image,
        txns,
        connections,
        transactional_id,
        producer_id,
        producer_epoch,
        operation,
    } = *question;
    let shard = txns.shard_of(transactional_id);
    let leader = image
        .topics
        .get(TRANSACTION_STATE_TOPIC)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == shard))
        .map(|p| p.leader)
        .filter(|&leader| leader >= 0)
        .ok_or(errors::COORDINATOR_NOT_AVAILABLE)?;
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    let add = operation == Operation::AddPartition;
    let version = if add { 5 } else { 4 };
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(!add)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            ),
    ]);
    let answer = if leader == node_id {
        let call = TxnCall::from(TxnRequest::AddPartitionsToTxn(request));
        // Bounded like a remote round trip, so a parked append queue always resumes.
        match tokio::time::timeout(REQUEST_TIMEOUT, txns.call_txn(shard, version, call)).await {
            Ok(Ok(ResponseKind::AddPartitionsToTxn(answer))) => answer,
            Ok(Ok(_)) => return Err(errors::UNKNOWN_SERVER_ERROR),
            Ok(Err(error)) => {
                tracing::debug!(shard, %error, "transaction verification not served");
                return Err(errors::COORDINATOR_NOT_AVAILABLE);
            }
            Err(_) => return Err(NETWORK_EXCEPTION),
        }
    } else {
        let address = image
            .brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .map(|b| format!("{}:{}", b.host, b.port))
            .ok_or(errors::COORDINATOR_NOT_AVAILABLE)?;
        let mut connection = connections.take(&address).await.map_err(|error| {
            tracing::debug!(address, error, "transaction verification: no connection");
            NETWORK_EXCEPTION
        })?;
        match connection
            .send(&request, version, MAX_RESPONSE_BYTES, REQUEST_TIMEOUT)
            .await
        {
            Ok(answer) => {
                connections.give_back(connection);
                answer
            }
            Err(error) => {
                tracing::debug!(address, error, "transaction verification failed");
                return Err(NETWORK_EXCEPTION);
            }
        }
    };
    match answer.error_code {
        errors::NONE => Ok(answer),
        // Clients are not shown CLUSTER_AUTHORIZATION_FAILED: the verification did not
        // complete.
        CLUSTER_AUTHORIZATION_FAILED => Err(INVALID_TXN_STATE),
        code => Err(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_follows_the_client_version() {
        assert_eq!(Operation::for_produce(10), Operation::DefaultError);
        assert_eq!(Operation::for_produce(11), Operation::GenericError);
        assert_eq!(Operation::for_produce(12), Operation::AddPartition);
        assert_eq!(Operation::for_txn_offset_commit(3), Operation::DefaultError);
        assert_eq!(Operation::for_txn_offset_commit(5), Operation::AddPartition);
    }

    #[test]
    fn retriable_coordinator_errors_become_not_enough_replicas() {
        for code in [
            CONCURRENT_TRANSACTIONS,
            NETWORK_EXCEPTION,
            errors::COORDINATOR_LOAD_IN_PROGRESS,
            errors::COORDINATOR_NOT_AVAILABLE,
            errors::NOT_COORDINATOR,
        ] {
            assert_eq!(produce_error(code), NOT_ENOUGH_REPLICAS);
        }
        assert_eq!(produce_error(INVALID_TXN_STATE), INVALID_TXN_STATE);
    }
}
