//! IncrementalAlterConfigs (`kafka-configs --alter`, the admin client's
//! `incrementalAlterConfigs`): SET, DELETE, APPEND and SUBTRACT applied to a resource's
//! current overrides under the metadata operation lock; see `alter_configs` for the
//! shared checks and the write.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{alter, error_fields, Requested};
use crate::dynamic_config::{AlterOp, Alteration};
use crate::protocol::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let requested: Vec<Requested> = request
        .resources
        .into_iter()
        .map(|resource| {
            let keys = resource
                .configs
                .iter()
                .map(|c| c.name.to_string())
                .collect();
            let ops: Result<Vec<(String, AlterOp)>, _> = resource
                .configs
                .iter()
                .map(|c| {
                    let value = c.value.as_ref().map(|v| v.to_string());
                    AlterOp::from_wire(&c.name, c.config_operation, value)
                        .map(|op| (c.name.to_string(), op))
                })
                .collect();
            Requested {
                resource_type: resource.resource_type,
                name: resource.resource_name,
                keys,
                alteration: ops.map(Alteration::Incremental),
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
