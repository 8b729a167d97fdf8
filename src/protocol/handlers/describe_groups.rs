//! DescribeGroups: one call per group's shard, answers in request order.

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, ResponseKind};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut described = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let single = DescribeGroupsRequest::default()
            .with_include_authorized_operations(request.include_authorized_operations)
            .with_groups(vec![group_id.clone()]);
        match groups::call(ctx, &group_id.0, GroupRequest::DescribeGroups(single)).await {
            Some(ResponseKind::DescribeGroups(mut r)) if r.groups.len() == 1 => {
                described.append(&mut r.groups)
            }
            _ => described.push(
                DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
            ),
        }
    }
    DescribeGroupsResponse::default().with_groups(described)
}
