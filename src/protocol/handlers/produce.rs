//! Produce: validate each partition's batch, append it, answer with its base offset.
//! acks=0 gets no answer, and a failure under acks=0 closes the connection (as in Kafka,
//! so the client notices). acks=-1 on a single replica is satisfied by the local append.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::{find_topic, led_partition};
use crate::metadata::TopicImage;
use crate::partition::error_code::INVALID_RECORD;
use crate::partition::{AppendError, AppendResult, PartitionError};
use crate::protocol::{errors, Outcome, RequestContext};

pub async fn handle(ctx: &RequestContext, request: ProduceRequest) -> Outcome {
    let version = ctx.version();
    let acks = request.acks;
    let image = ctx.broker.metadata.image();
    let mut failed = false;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        // v13+ names topics by id (KIP-516), earlier versions by name.
        let (topic, unknown_code) = find_topic(
            &image,
            version >= 13,
            &topic_data.name.0,
            topic_data.topic_id,
        );
        let partition_responses = topic_data
            .partition_data
            .into_iter()
            .map(|data| {
                let result = if ![0, 1, -1].contains(&acks) {
                    Err(AppendError::from(PartitionError {
                        code: errors::INVALID_REQUIRED_ACKS,
                        message: format!("acks must be 0, 1 or -1, not {acks}"),
                    }))
                } else {
                    append(
                        ctx,
                        topic,
                        unknown_code,
                        data.index,
                        data.records.as_deref(),
                    )
                };
                let response = PartitionProduceResponse::default().with_index(data.index);
                match result {
                    Ok(appended) => response
                        .with_base_offset(appended.base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(appended.log_start_offset),
                    Err(AppendError {
                        error,
                        record_errors,
                    }) => {
                        failed = true;
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
                                        .with_batch_index_error_message(Some(
                                            StrBytes::from_string(e.message),
                                        ))
                                })
                                .collect();
                            response
                                .with_error_message(Some(StrBytes::from_string(error.message)))
                                .with_record_errors(record_errors)
                        } else {
                            response
                        }
                    }
                }
            })
            .collect();
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
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
    Outcome::Respond(Box::new(ResponseKind::Produce(
        ProduceResponse::default().with_responses(responses),
    )))
}

fn append(
    ctx: &RequestContext,
    topic: Option<&Arc<TopicImage>>,
    unknown_code: i16,
    index: i32,
    records: Option<&[u8]>,
) -> Result<AppendResult, AppendError> {
    let partition = led_partition(ctx, topic, unknown_code, index, -1)?;
    let records = records.ok_or_else(|| PartitionError {
        code: INVALID_RECORD,
        message: "records are null".to_string(),
    })?;
    partition.append(records)
}
