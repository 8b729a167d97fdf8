//! Produce: validate each partition's batch, append it, answer with its base offset.
//! acks=0 gets no answer, and a failure under acks=0 closes the connection (as in Kafka,
//! so the client notices). Two stages: every partition's append is queued (its order
//! fixed) before the first await, then acks=1 answers after the local append and acks=-1
//! once the high watermark has passed the batch, i.e. every in-sync replica has it
//! (`min.insync.replicas` checked before the append and again at the end, as Kafka).
//! A transactional batch that would start its producer's transaction on a partition is
//! queued in order too, but appended only once the transaction coordinator verified (or,
//! for a transaction-version-2 client, added) the partition (KIP-890, `Verifying`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::{find_topic, hinted_endpoints, leader_hint, led_partition};
use crate::log::batch::BatchHeader;
use crate::log::validator::CODEC_ZSTD;
use crate::metadata::internal_topics::check_client_append;
use crate::metadata::TopicImage;
use crate::partition::error_code::INVALID_RECORD;
use crate::partition::{
    error_code, AppendError, AppendResult, AppendSubmission, Partition, PartitionError,
    PendingVerification, Verification, VerificationAnswer,
};
use crate::protocol::{errors, Outcome, RequestContext};
use crate::txn::verify::{produce_error, verify, Operation, Question};

const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

pub async fn handle(ctx: &RequestContext, request: ProduceRequest) -> Outcome {
    let version = ctx.version();
    let acks = request.acks;
    let ack_timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    // Kafka: transactional records need the request's transactionalId (checked against
    // the TRANSACTIONAL_ID ACL); without one the whole request is refused.
    if request.transactional_id.is_none() && has_transactional_records(&request) {
        if acks == 0 {
            return Outcome::Close("transactional produce without a transactional id".into());
        }
        return Outcome::Respond(Box::new(ResponseKind::Produce(refuse_all(
            request,
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        ))));
    }
    let image = ctx.broker.metadata.image();
    // Every partition's append is queued before the first await that can yield (see
    // `led_partition`), so pipelined requests of one connection, whose handlers start in
    // request order, append in request order. Dropping `appends` starts one blocking
    // drainer for the whole request.
    let mut appends = AppendSubmission::new();
    let mut verifying = Verifying::new(
        ctx,
        request.transactional_id.as_ref().map(|id| id.0.to_string()),
    );
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        // v13+ names topics by id (KIP-516), earlier versions by name.
        let (topic, unknown_code) = find_topic(
            &image,
            version >= 13,
            &topic_data.name.0,
            topic_data.topic_id,
        );
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let submitted = if ![0, 1, -1].contains(&acks) {
                Err(PartitionError {
                    code: errors::INVALID_REQUIRED_ACKS,
                    message: format!("acks must be 0, 1 or -1, not {acks}"),
                })
            } else {
                submit(
                    ctx,
                    &mut appends,
                    &mut verifying,
                    &topic_data.name.0,
                    topic,
                    unknown_code,
                    data.index,
                    data.records,
                    acks,
                )
                .await
            };
            partitions.push((data.index, submitted));
        }
        topics.push((
            topic_data.name,
            topic_data.topic_id,
            topic.cloned(),
            partitions,
        ));
    }
    // Every job is queued: the question to the coordinator may go now. Its answer lets
    // the parked jobs (and those queued behind them) be appended.
    verifying.start(ctx);
    drop(appends);
    let mut failed = false;
    let mut responses = Vec::with_capacity(topics.len());
    let mut hinted_leaders = Vec::new();
    for (name, topic_id, topic, partitions) in topics {
        let mut partition_responses = Vec::with_capacity(partitions.len());
        for (index, submitted) in partitions {
            let result = match submitted {
                Ok((partition, appended)) => match appended.await {
                    Ok(appended) if acks == -1 => {
                        replicated(&partition, appended, ack_timeout).await
                    }
                    other => other,
                },
                Err(error) => Err(AppendError::from(error)),
            };
            let response = PartitionProduceResponse::default().with_index(index);
            partition_responses.push(match result {
                Ok(appended) => response
                    .with_base_offset(appended.base_offset)
                    .with_log_append_time_ms(appended.log_append_time_ms)
                    .with_log_start_offset(appended.log_start_offset),
                Err(AppendError {
                    error,
                    record_errors,
                }) => {
                    failed = true;
                    let hint = (version >= 10 && error.code == errors::NOT_LEADER_OR_FOLLOWER)
                        .then(|| {
                            leader_hint(&image, topic.as_ref(), index, ctx.broker.config.node_id)
                        })
                        .flatten();
                    let response = match hint {
                        Some((leader_id, leader_epoch)) => {
                            hinted_leaders.push(leader_id);
                            response.with_current_leader(
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(leader_id))
                                    .with_leader_epoch(leader_epoch),
                            )
                        }
                        None => response,
                    };
                    let response = response
                        .with_error_code(error.code)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1);
                    // error_message and record_errors exist from v8 (KIP-467).
                    if version >= 8 {
                        let record_errors = record_errors
                            .into_iter()
                            .map(|e| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(e.batch_index)
                                    .with_batch_index_error_message(Some(StrBytes::from_string(
                                        e.message,
                                    )))
                            })
                            .collect();
                        response
                            .with_error_message(Some(StrBytes::from_string(error.message)))
                            .with_record_errors(record_errors)
                    } else {
                        response
                    }
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(topic_id)
                .with_partition_responses(partition_responses),
        );
    }
    if acks == 0 {
        return if failed {
            Outcome::Close("acks=0 produce failed".to_string())
        } else {
            Outcome::NoResponse
        };
    }
    let node_endpoints = hinted_endpoints(&image, hinted_leaders)
        .into_iter()
        .map(|(id, host, port, rack)| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
    Outcome::Respond(Box::new(ResponseKind::Produce(
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(node_endpoints),
    )))
}

/// Kafka's RequestUtils.hasTransactionalRecords: a partition whose first batch is
/// transactional.
fn has_transactional_records(request: &ProduceRequest) -> bool {
    request
        .topic_data
        .iter()
        .flat_map(|topic| &topic.partition_data)
        .filter_map(|data| data.records.as_deref())
        .filter_map(|records| BatchHeader::parse(records).ok())
        .any(|header| header.is_transactional())
}

/// The answer to a request refused as a whole: every partition gets `code`.
fn refuse_all(request: ProduceRequest, code: i16) -> ProduceResponse {
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|data| {
                    PartitionProduceResponse::default()
                        .with_index(data.index)
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// Queues the partition's append; returns the partition and the append's result to come.
#[allow(clippy::too_many_arguments)]
async fn submit(
    ctx: &RequestContext,
    appends: &mut AppendSubmission,
    verifying: &mut Verifying,
    requested_name: &str,
    topic: Option<&Arc<TopicImage>>,
    unknown_code: i16,
    index: i32,
    records: Option<Bytes>,
    acks: i16,
) -> Result<
    (
        Arc<Partition>,
        impl Future<Output = Result<AppendResult, AppendError>>,
    ),
    PartitionError,
> {
    // Kafka checks this first, by name: an internal topic is refused even before it exists.
    let name = topic.map_or(requested_name, |t| t.name.as_str());
    check_client_append(name, ctx.header.client_id.as_deref()).map_err(|refused| {
        PartitionError {
            code: refused.code,
            message: refused.message,
        }
    })?;
    let partition = led_partition(ctx, topic, unknown_code, index, -1).await?;
    let records = records.ok_or_else(|| PartitionError {
        code: INVALID_RECORD,
        message: "records are null".to_string(),
    })?;
    refuse_zstd_before_v7(ctx.version(), &records)?;
    // Kafka refuses before appending when the ISR is already too small.
    if acks == -1 && !partition.acks_all_allowed() {
        return Err(PartitionError {
            code: error_code::NOT_ENOUGH_REPLICAS,
            message: format!(
                "the in-sync replicas ({}) are fewer than min.insync.replicas",
                partition.isr_len()
            ),
        });
    }
    let (verification, pending) = match verifying.txn_batch(&records) {
        // The non-transactional fast path: nothing to verify.
        None => (Verification::Off, None),
        Some(batch) => verifying.prepare(&partition, batch)?,
    };
    let appended = appends.submit_verified(&partition, records, verification, pending);
    Ok((partition, appended))
}

/// The transaction verification of one produce request (KIP-890, Kafka's
/// `maybeStartTransactionVerificationForPartitions`): one question to the coordinator for
/// every partition whose batch would start the producer's transaction there.
struct Verifying {
    enabled: bool,
    transactional_id: Option<String>,
    operation: Operation,
    /// The request's transactional producer: Kafka allows one per request.
    producer: Option<(i64, i16)>,
    partitions: Vec<VerificationAnswer>,
}

impl Verifying {
    fn new(ctx: &RequestContext, transactional_id: Option<String>) -> Verifying {
        Verifying {
            enabled: ctx.broker.config.txn.partition_verification_enable,
            transactional_id,
            operation: Operation::for_produce(ctx.version()),
            producer: None,
            partitions: Vec::new(),
        }
    }

    /// The producer and epoch of a transactional batch that verification applies to.
    fn txn_batch(&self, records: &[u8]) -> Option<(i64, i16)> {
        if !self.enabled {
            return None;
        }
        match BatchHeader::parse(records) {
            Ok(header) if header.is_transactional() && header.has_producer_id() => {
                Some((header.producer_id, header.producer_epoch))
            }
            // Anything else (or a malformed batch, left to the validator) is not verified.
            _ => None,
        }
    }

    /// The verification the append checks and, when the coordinator must be asked, what
    /// its job waits for.
    fn prepare(
        &mut self,
        partition: &Arc<Partition>,
        (producer_id, epoch): (i64, i16),
    ) -> Result<(Verification, Option<Arc<PendingVerification>>), PartitionError> {
        if *self.producer.get_or_insert((producer_id, epoch)) != (producer_id, epoch) {
            return Err(PartitionError {
                code: errors::INVALID_PRODUCER_ID_MAPPING,
                message: "Transactional records contained more than one producer ID".to_string(),
            });
        }
        // Without a transactional id there is no one to ask: the append refuses the batch
        // unless its transaction is already ongoing here (as Kafka).
        if self.transactional_id.is_none() {
            return Ok((Verification::Guard(None), None));
        }
        let adds_partition = self.operation == Operation::AddPartition;
        match partition.start_txn_verification(producer_id, epoch, adds_partition) {
            None => Ok((Verification::Guard(None), None)),
            Some(guard) => {
                let (pending, answer) = VerificationAnswer::new(partition);
                self.partitions.push(answer);
                Ok((Verification::Guard(Some(guard)), Some(pending)))
            }
        }
    }

    /// Asks the coordinator (on its own task, so the request's other partitions are not
    /// held up) and answers every waiting job.
    fn start(self, ctx: &RequestContext) {
        let (Some(transactional_id), Some((producer_id, epoch))) =
            (self.transactional_id, self.producer)
        else {
            return;
        };
        if self.partitions.is_empty() {
            return;
        }
        let broker = ctx.broker.clone();
        let operation = self.operation;
        let answers = self.partitions;
        tokio::spawn(async move {
            let partitions: Vec<(String, i32)> = answers
                .iter()
                .map(|a| (a.partition().topic.clone(), a.partition().index))
                .collect();
            let image = broker.metadata.image();
            let question = Question {
                node_id: broker.config.node_id,
                image: &image,
                txns: &broker.txns,
                connections: &broker.txn_verify_connections,
                transactional_id: &transactional_id,
                producer_id,
                producer_epoch: epoch,
                operation,
            };
            let refused = verify(&question, &partitions, &broker.config.txn).await;
            for answer in answers {
                let key = (answer.partition().topic.clone(), answer.partition().index);
                let result = match refused.get(&key) {
                    None => Ok(()),
                    Some(&code) => {
                        let code = produce_error(code);
                        Err(PartitionError {
                            code,
                            message: verification_message(code),
                        })
                    }
                };
                answer.answer(result);
            }
        });
    }
}

/// Kafka's messages for a failed verification.
fn verification_message(code: i16) -> String {
    match code {
        error_code::INVALID_TXN_STATE => "Partition was not added to the transaction".to_string(),
        error_code::NOT_ENOUGH_REPLICAS => {
            "Unable to verify the partition has been added to the transaction".to_string()
        }
        code => format!("transaction verification failed with error {code}"),
    }
}

/// acks=all's second stage: the answer once the high watermark passed the batch, or
/// Kafka's error for why not (see [`Partition::wait_for_acks`]).
async fn replicated(
    partition: &Partition,
    appended: AppendResult,
    timeout: Duration,
) -> Result<AppendResult, AppendError> {
    match partition.wait_for_acks(appended.next_offset, timeout).await {
        Ok(()) => Ok(appended),
        Err(code) => {
            let message = match code {
                error_code::NOT_ENOUGH_REPLICAS_AFTER_APPEND => {
                    "the batch was written, but the in-sync replicas are now fewer than \
                     min.insync.replicas"
                }
                error_code::NOT_LEADER_OR_FOLLOWER => {
                    "leadership moved before the in-sync replicas confirmed the batch"
                }
                error_code::KAFKA_STORAGE_ERROR => "the log directory is offline",
                _ => "the in-sync replicas did not confirm the batch in time",
            };
            Err(PartitionError {
                code,
                message: message.to_string(),
            }
            .into())
        }
    }
}

/// zstd exists from Produce v7 (KIP-110): an older request carrying it is refused whole,
/// as Kafka does, so a client that cannot know zstd's wire rules is not served one.
/// A batch too short to have a header is left to the validator.
fn refuse_zstd_before_v7(version: i16, records: &[u8]) -> Result<(), PartitionError> {
    if version >= 7 {
        return Ok(());
    }
    match BatchHeader::parse(records) {
        Ok(header) if header.compression_codec() == CODEC_ZSTD => Err(PartitionError {
            code: errors::UNSUPPORTED_COMPRESSION_TYPE,
            message: format!("Produce v{version} requests may not use zstd compression"),
        }),
        _ => Ok(()),
    }
}
