//! AlterConfigs (legacy: each resource's given set replaces all its overrides), and the
//! part IncrementalAlterConfigs shares with it: Kafka's broker-side checks (each resource
//! at most once, no duplicate keys, a broker name that is empty or this node), then the
//! plan against the metadata image and one metadata write (`dynamic_config::plan`,
//! `MetadataQuorum::alter_configs`). The partitions pick the change up on reconcile.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::dynamic_config::{self, Alteration};
use crate::metadata::ApiError;
use crate::protocol::{errors, RequestContext};

/// One resource of a request, as read from the wire.
pub(super) struct Requested {
    pub resource_type: i8,
    pub name: StrBytes,
    /// The config names, in request order (for the duplicate check).
    pub keys: Vec<String>,
    pub alteration: Result<Alteration, ApiError>,
}

/// Each resource's outcome, in request order.
pub(super) async fn alter(
    ctx: &RequestContext,
    requested: &[Requested],
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    let node_id = ctx.broker.config.node_id;
    let mut seen = BTreeMap::new();
    for r in requested {
        *seen.entry((r.resource_type, r.name.as_str())).or_insert(0) += 1;
    }
    let mut early: Vec<Option<ApiError>> = Vec::with_capacity(requested.len());
    let mut planned = Vec::new();
    for r in requested {
        let checked = (|| {
            if seen[&(r.resource_type, r.name.as_str())] > 1 {
                return Err(invalid_request("Each resource must appear at most once."));
            }
            let mut keys = BTreeSet::new();
            if !r.keys.iter().all(|key| keys.insert(key)) {
                return Err(invalid_request("Error due to duplicate config keys"));
            }
            let resource = dynamic_config::parse_resource(r.resource_type, &r.name, node_id)?;
            Ok((resource, r.alteration.clone()?))
        })();
        match checked {
            Ok(request) => {
                early.push(None);
                planned.push(request);
            }
            Err(error) => early.push(Some(error)),
        }
    }
    let mut outcomes = if planned.is_empty() {
        Vec::new().into_iter()
    } else {
        match ctx
            .broker
            .metadata
            .alter_configs(planned.clone(), validate_only)
            .await
        {
            Ok(outcomes) => outcomes.into_iter(),
            Err(error) => {
                tracing::warn!(%error, "AlterConfigs failed in the metadata quorum");
                let failure = ApiError {
                    code: errors::NOT_CONTROLLER,
                    message: error.to_string(),
                };
                vec![Err(failure); planned.len()].into_iter()
            }
        }
    };
    if !validate_only && !planned.is_empty() {
        // Answer once the running partitions have the new settings.
        ctx.broker.reconcile_partitions().await;
    }
    early
        .into_iter()
        .map(|early| match early {
            Some(error) => Err(error),
            None => outcomes.next().unwrap_or_else(|| {
                Err(ApiError {
                    code: errors::UNKNOWN_SERVER_ERROR,
                    message: "missing result".to_string(),
                })
            }),
        })
        .collect()
}

fn invalid_request(message: &str) -> ApiError {
    ApiError {
        code: errors::INVALID_REQUEST,
        message: message.to_string(),
    }
}

/// `(error_code, error_message)` of an outcome; Kafka sends a null message on success.
pub(super) fn error_fields(outcome: Result<(), ApiError>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (errors::NONE, None),
        Err(error) => (error.code, Some(StrBytes::from_string(error.message))),
    }
}

pub async fn handle(ctx: &RequestContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let requested: Vec<Requested> = request
        .resources
        .into_iter()
        .map(|resource| {
            let keys = resource
                .configs
                .iter()
                .map(|c| c.name.to_string())
                .collect();
            let nulls: Vec<&str> = resource
                .configs
                .iter()
                .filter(|c| c.value.is_none())
                .map(|c| c.name.as_str())
                .collect();
            let alteration = if nulls.is_empty() {
                Ok(Alteration::Replace(
                    resource
                        .configs
                        .iter()
                        .map(|c| {
                            let value = c.value.as_ref().map(|v| v.to_string());
                            (c.name.to_string(), value.unwrap_or_default())
                        })
                        .collect(),
                ))
            } else {
                Err(invalid_request(&format!(
                    "Null value not supported for : {}",
                    nulls.join(", ")
                )))
            };
            Requested {
                resource_type: resource.resource_type,
                name: resource.resource_name,
                keys,
                alteration,
            }
        })
        .collect();
    let outcomes = alter(ctx, &requested, request.validate_only).await;
    let responses = requested
        .into_iter()
        .zip(outcomes)
        .map(|(r, outcome)| {
            let (code, message) = error_fields(outcome);
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.name)
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}
