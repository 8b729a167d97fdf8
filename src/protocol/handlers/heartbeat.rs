//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, ResponseKind};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    match groups::call(ctx, &group_id, GroupRequest::Heartbeat(request)).await {
        Some(ResponseKind::Heartbeat(response)) => response,
        _ => HeartbeatResponse::default().with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
    }
}
