//! OffsetDelete: drops committed offsets of partitions the group no longer consumes.

use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    match groups::call(ctx, &group_id, GroupRequest::OffsetDelete(request)).await {
        Some(ResponseKind::OffsetDelete(response)) => response,
        _ => OffsetDeleteResponse::default().with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
    }
}
