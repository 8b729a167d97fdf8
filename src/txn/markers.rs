//! Sends the transaction markers a coordinator shard decided (Kafka's
//! TransactionMarkerChannelManager): WriteTxnMarkers to the leader of every partition of
//! the transaction, this node included (through its own listener, so one path serves
//! local and remote partitions), retried until every partition has its marker; then the
//! shard hears [`TxnRequest::MarkersWritten`] and writes the transaction's final state.
//!
//! A send gives up (the shard hears nothing) when this node no longer leads the shard
//! (the new coordinator re-sends on load), or a partition says this coordinator is
//! fenced. A partition whose topic was deleted needs no marker.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;

use super::runtime::TxnCall;
use super::{MarkerSend, TxnCoordinator, TxnRequest};
use crate::coordinator::Sender;
use crate::inter_broker::ConnectionPool as Connections;
use crate::metadata::internal_topics::TRANSACTION_STATE_TOPIC;
use crate::metadata::{MetadataImage, MetadataQuorum};
use crate::protocol::errors;

const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// A marker answer is a few bytes per partition.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Each round trip; a marker append waits on the partition's disk, not its replicas.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(30_000);
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(1_000);

/// The sender the transaction runtime starts markers with.
pub fn sender(
    node_id: i32,
    metadata: MetadataQuorum,
    stop: CancellationToken,
) -> Sender<TxnCoordinator> {
    let connections = Arc::new(Connections::new("millrace-txn-markers"));
    Arc::new(move |shard, send| {
        let (metadata, stop, connections) = (metadata.clone(), stop.clone(), connections.clone());
        Box::pin(async move {
            let written = send_markers(node_id, shard, &send, &metadata, &connections, &stop).await;
            written.then(|| {
                TxnCall::from(TxnRequest::MarkersWritten {
                    transactional_id: send.transactional_id,
                    producer_id: send.producer_id,
                    producer_epoch: send.producer_epoch,
                    commit: send.commit,
                })
            })
        })
    })
}

/// What became of one partition's marker.
enum Outcome {
    Written,
    Retry,
    /// This coordinator is fenced: stop sending.
    Fenced,
}

/// True once every partition has its marker.
async fn send_markers(
    node_id: i32,
    shard: i32,
    send: &MarkerSend,
    metadata: &MetadataQuorum,
    connections: &Connections,
    stop: &CancellationToken,
) -> bool {
    let mut remaining: Vec<(String, i32)> = send.partitions.clone();
    let mut backoff = RETRY_BACKOFF_MIN;
    loop {
        let image = metadata.image();
        if !leads_shard(&image, node_id, shard) {
            tracing::debug!(
                shard,
                transactional_id = send.transactional_id,
                "no longer the transaction coordinator; markers left to the new one"
            );
            return false;
        }
        // A deleted topic (or partition) needs no marker.
        remaining.retain(|(topic, partition)| {
            image
                .topics
                .get(topic)
                .is_some_and(|t| t.partitions.iter().any(|p| p.partition == *partition))
        });
        let mut by_leader: BTreeMap<Option<String>, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, partition) in &remaining {
            let address = leader_address(&image, topic, *partition);
            by_leader
                .entry(address)
                .or_default()
                .push((topic.clone(), *partition));
        }
        let rounds = by_leader
            .into_iter()
            .map(|(address, partitions)| async move {
                match address {
                    Some(address) => send_to(&address, send, partitions, connections).await,
                    // No leader right now: ask again after the back-off.
                    None => partitions
                        .into_iter()
                        .map(|p| (p, Outcome::Retry))
                        .collect(),
                }
            });
        let mut next = Vec::new();
        for outcomes in join_all(rounds).await {
            for (partition, outcome) in outcomes {
                match outcome {
                    Outcome::Written => {}
                    Outcome::Retry => next.push(partition),
                    Outcome::Fenced => {
                        tracing::warn!(
                            shard,
                            transactional_id = send.transactional_id,
                            topic = partition.0,
                            partition = partition.1,
                            "transaction marker refused: this coordinator is fenced"
                        );
                        return false;
                    }
                }
            }
        }
        if next.is_empty() {
            return true;
        }
        remaining = next;
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    }
}

fn leads_shard(image: &MetadataImage, node_id: i32, shard: i32) -> bool {
    image
        .topics
        .get(TRANSACTION_STATE_TOPIC)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == shard))
        .is_some_and(|p| p.leader == node_id)
}

fn leader_address(image: &MetadataImage, topic: &str, partition: i32) -> Option<String> {
    let leader = image
        .topics
        .get(topic)?
        .partitions
        .iter()
        .find(|p| p.partition == partition)?
        .leader;
    let broker = image.brokers.get(&leader).filter(|b| !b.fenced)?;
    Some(format!("{}:{}", broker.host, broker.port))
}

/// One WriteTxnMarkers round trip to one leader for its partitions of the transaction.
async fn send_to(
    address: &str,
    send: &MarkerSend,
    partitions: Vec<(String, i32)>,
    connections: &Connections,
) -> Vec<((String, i32), Outcome)> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(send.producer_id))
            .with_producer_epoch(send.producer_epoch)
            .with_transaction_result(send.commit)
            .with_coordinator_epoch(send.coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            )]);
    let answer = match connections.take(address).await {
        Ok(mut connection) => {
            let answer = connection
                .send(
                    &request,
                    WRITE_TXN_MARKERS_VERSION,
                    MAX_RESPONSE_BYTES,
                    REQUEST_TIMEOUT,
                )
                .await;
            if answer.is_ok() {
                connections.give_back(connection);
            }
            answer
        }
        Err(error) => Err(error),
    };
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(address, %error, "transaction markers not sent; retrying");
            return partitions
                .into_iter()
                .map(|p| (p, Outcome::Retry))
                .collect();
        }
    };
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    for marker in response.markers {
        for topic in marker.topics {
            for partition in topic.partitions {
                codes.insert(
                    (topic.name.0.to_string(), partition.partition_index),
                    partition.error_code,
                );
            }
        }
    }
    partitions
        .into_iter()
        .map(|p| {
            let outcome = match codes.get(&p).copied() {
                Some(errors::NONE) => Outcome::Written,
                Some(errors::INVALID_PRODUCER_EPOCH | errors::TRANSACTION_COORDINATOR_FENCED) => {
                    Outcome::Fenced
                }
                // Not answered, not leader, not ready, a storage error: ask again.
                _ => Outcome::Retry,
            };
            (p, outcome)
        })
        .collect()
}
