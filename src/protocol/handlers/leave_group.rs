//! LeaveGroup: one member (v0-2) or a batch of members by id or instance id (v3+).

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, ResponseKind};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    match groups::call(ctx, &group_id, GroupRequest::LeaveGroup(request)).await {
        Some(ResponseKind::LeaveGroup(response)) => response,
        _ => LeaveGroupResponse::default().with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
    }
}
