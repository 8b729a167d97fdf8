//! OffsetFetch: one group at the top level (v1-7) or a batch of groups (v8+), split
//! here into one call per group's shard and merged back in request order.

use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, ResponseKind};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version() < 8 {
        let group_id = request.group_id.0.to_string();
        return match groups::call(ctx, &group_id, GroupRequest::OffsetFetch(request)).await {
            Some(ResponseKind::OffsetFetch(response)) => response,
            _ => OffsetFetchResponse::default().with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
        };
    }
    let mut answered = Vec::with_capacity(request.groups.len());
    for group in request.groups {
        let group_id = group.group_id.clone();
        let single = OffsetFetchRequest::default()
            .with_require_stable(request.require_stable)
            .with_groups(vec![group]);
        let response = groups::call(ctx, &group_id.0, GroupRequest::OffsetFetch(single)).await;
        match response {
            Some(ResponseKind::OffsetFetch(mut r)) if r.groups.len() == 1 => {
                answered.append(&mut r.groups)
            }
            _ => answered.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
            ),
        }
    }
    OffsetFetchResponse::default().with_groups(answered)
}
