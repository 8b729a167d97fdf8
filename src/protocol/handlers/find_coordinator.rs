//! FindCoordinator for groups (this broker coordinates every `__consumer_offsets` shard
//! it leads; on one node that is all of them). The first request creates and loads the
//! offsets topic. v4+ batches keys (KIP-699), each with its own error.
//! Transaction coordinators are not built yet: COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::{errors, RequestContext};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// (error code, message) for one key; NONE means "this broker".
async fn locate(ctx: &RequestContext, key_type: i8) -> (i16, Option<&'static str>) {
    match key_type {
        KEY_TYPE_GROUP => match ctx.broker.groups.ensure_ready().await {
            Ok(()) => (errors::NONE, None),
            Err(_) => (
                errors::COORDINATOR_NOT_AVAILABLE,
                Some("The coordinator is not available."),
            ),
        },
        KEY_TYPE_TRANSACTION => (
            errors::COORDINATOR_NOT_AVAILABLE,
            Some("Transactions are not supported yet."),
        ),
        _ => (
            errors::INVALID_REQUEST,
            Some("Unknown coordinator key type."),
        ),
    }
}

pub async fn handle(
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let config = &ctx.broker.config;
    let host = StrBytes::from_string(config.advertised_host.clone());
    let port = config.advertised_port as i32;
    let node = BrokerId(config.node_id);
    if ctx.version() >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let (code, message) = locate(ctx, request.key_type).await;
            let entry = Coordinator::default().with_key(key).with_error_code(code);
            coordinators.push(if code == errors::NONE {
                entry
                    .with_node_id(node)
                    .with_host(host.clone())
                    .with_port(port)
            } else {
                entry
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_message(message.map(StrBytes::from_static_str))
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (code, message) = locate(ctx, request.key_type).await;
    let response = FindCoordinatorResponse::default().with_error_code(code);
    let response = if code == errors::NONE {
        response.with_node_id(node).with_host(host).with_port(port)
    } else {
        response.with_node_id(BrokerId(-1)).with_port(-1)
    };
    if ctx.version() >= 1 {
        response.with_error_message(message.map(StrBytes::from_static_str))
    } else {
        response
    }
}
