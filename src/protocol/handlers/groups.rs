//! Routing of group requests to the coordinator runtime, shared by the group handlers:
//! one call per group's shard, and Kafka's COORDINATOR_NOT_AVAILABLE when the shard
//! cannot answer (the client then looks the coordinator up again and retries).

use kafka_protocol::messages::ResponseKind;

use crate::group::{GroupRequest, RequestMeta};
use crate::protocol::RequestContext;

/// Sends a single-group request to its shard; `None` when the coordinator is not
/// available.
pub async fn call(
    ctx: &RequestContext,
    group_id: &str,
    request: GroupRequest,
) -> Option<ResponseKind> {
    let shard = ctx.broker.groups.shard_of(group_id);
    match ctx
        .broker
        .groups
        .call(shard, ctx.version(), request.into(), meta(ctx))
        .await
    {
        Ok(response) => Some(response),
        Err(error) => {
            tracing::debug!(group_id, %error, "group request not served");
            None
        }
    }
}

/// The header's client id and the peer's host, as Kafka shows them ("/127.0.0.1").
pub fn meta(ctx: &RequestContext) -> RequestMeta {
    RequestMeta {
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.session.client_address),
    }
}
