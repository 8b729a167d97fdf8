//! CreatePartitions (`kafka-topics --alter --partitions N`): the controller in the
//! metadata quorum validates and writes the new partitions; the partition manager opens
//! them when the image changes, and clients find them through Metadata.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::metadata::internal_topics::check_client_create_partitions;
use crate::metadata::{self, ApiError};
use crate::protocol::{errors, RequestContext};

pub async fn handle(
    ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut early: Vec<Option<ApiError>> = Vec::with_capacity(request.topics.len());
    let mut to_grow = Vec::new();
    let mut names = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        names.push(topic.name.clone());
        let name = topic.name.0.to_string();
        match check_client_create_partitions(&name) {
            Err(error) => early.push(Some(error)),
            Ok(()) => {
                early.push(None);
                to_grow.push(metadata::CreatePartitionsRequest {
                    name,
                    count: topic.count,
                    assignments: topic.assignments.map(|assignments| {
                        assignments
                            .into_iter()
                            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                            .collect()
                    }),
                });
            }
        }
    }
    let grown = if to_grow.is_empty() {
        Ok(Vec::new())
    } else {
        ctx.broker
            .metadata
            .create_partitions(to_grow, request.validate_only)
            .await
    };
    let mut grown = match grown {
        Ok(grown) => grown.into_iter(),
        Err(error) => {
            tracing::warn!(%error, "CreatePartitions failed in the metadata quorum");
            let failure = ApiError {
                code: errors::NOT_CONTROLLER,
                message: error.to_string(),
            };
            vec![Err(failure); early.iter().filter(|e| e.is_none()).count()].into_iter()
        }
    };
    if !request.validate_only {
        ctx.broker.reconcile_partitions().await;
    }
    let results = early
        .into_iter()
        .zip(names)
        .map(|(early, name)| {
            let outcome = match early {
                Some(error) => Err(error),
                None => grown.next().unwrap_or_else(|| {
                    Err(ApiError {
                        code: errors::UNKNOWN_SERVER_ERROR,
                        message: "missing result".to_string(),
                    })
                }),
            };
            let result = CreatePartitionsTopicResult::default().with_name(name);
            match outcome {
                Ok(_) => result,
                Err(error) => result
                    .with_error_code(error.code)
                    .with_error_message(Some(StrBytes::from_string(error.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
