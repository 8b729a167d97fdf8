//! SyncGroup: the leader hands out assignments; followers wait for theirs.

use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    match groups::call(ctx, &group_id, GroupRequest::SyncGroup(request)).await {
        Some(ResponseKind::SyncGroup(response)) => response,
        _ => SyncGroupResponse::default().with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
    }
}
