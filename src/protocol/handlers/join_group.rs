//! JoinGroup: parked in the coordinator until the rebalance's join phase completes.

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    match groups::call(ctx, &group_id, GroupRequest::JoinGroup(request)).await {
        Some(ResponseKind::JoinGroup(response)) => response,
        _ => JoinGroupResponse::default()
            .with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
            .with_generation_id(-1),
    }
}
