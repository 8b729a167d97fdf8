//! DeleteTopics by name (all versions) or by topic id (v6+). The topic's local logs
//! are removed once the deletion is committed.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::metadata::internal_topics::check_client_delete;
use crate::metadata::{ApiError, TopicRef};
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let version = ctx.version();
    let refs: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    // Internal topics are refused before the controller sees the request; by id too.
    let image = ctx.broker.metadata.image();
    let refused: Vec<Option<ApiError>> = refs
        .iter()
        .map(|(name, id)| {
            let name = match name {
                Some(name) => Some(name.0.as_str()),
                None => image.topic_names_by_id.get(id).map(String::as_str),
            };
            name.and_then(|name| check_client_delete(name).err())
        })
        .collect();
    let topic_refs = refs
        .iter()
        .zip(&refused)
        .filter(|(_, refused)| refused.is_none())
        .map(|((name, id), _)| match name {
            Some(name) => TopicRef::Name(name.0.to_string()),
            None => TopicRef::Id(*id),
        })
        .collect();
    let results = ctx
        .broker
        .metadata
        .delete_topics(topic_refs)
        .await
        .map(|deleted| {
            let mut deleted = deleted.into_iter();
            refused
                .into_iter()
                .map(|refused| match refused {
                    Some(error) => Err(error),
                    None => deleted.next().unwrap_or_else(|| {
                        Err(ApiError {
                            code: errors::UNKNOWN_SERVER_ERROR,
                            message: "missing result".to_string(),
                        })
                    }),
                })
                .collect::<Vec<_>>()
        });
    ctx.broker.reconcile_partitions().await;
    let responses = match results {
        Ok(results) => refs
            .into_iter()
            .zip(results)
            .map(|((name, id), result)| {
                let answer = DeletableTopicResult::default();
                match result {
                    Ok(topic) => answer
                        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
                        .with_topic_id(topic.topic_id),
                    Err(error) => {
                        let answer = answer
                            .with_name(name)
                            .with_topic_id(id)
                            .with_error_code(error.code);
                        if version >= 5 {
                            answer.with_error_message(Some(StrBytes::from_string(error.message)))
                        } else {
                            answer
                        }
                    }
                }
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "DeleteTopics failed in the metadata quorum");
            refs.into_iter()
                .map(|(name, id)| {
                    DeletableTopicResult::default()
                        .with_name(name)
                        .with_topic_id(id)
                        .with_error_code(errors::NOT_CONTROLLER)
                })
                .collect()
        }
    };
    DeleteTopicsResponse::default().with_responses(responses)
}
