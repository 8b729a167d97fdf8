//! DeleteGroups: one call per group's shard; only empty groups can be deleted.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};

use super::groups;
use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let single = DeleteGroupsRequest::default().with_groups_names(vec![group_id.clone()]);
        match groups::call(ctx, &group_id.0, GroupRequest::DeleteGroups(single)).await {
            Some(ResponseKind::DeleteGroups(mut r)) if r.results.len() == 1 => {
                results.append(&mut r.results)
            }
            _ => results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(errors::COORDINATOR_NOT_AVAILABLE),
            ),
        }
    }
    DeleteGroupsResponse::default().with_results(results)
}
