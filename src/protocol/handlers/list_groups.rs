//! ListGroups: every shard this broker coordinates, merged (state and type filters are
//! applied by each shard).

use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse, ResponseKind};

use crate::group::GroupRequest;
use crate::protocol::{errors, RequestContext};

pub async fn handle(ctx: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let runtime = &ctx.broker.groups;
    let mut listed = Vec::new();
    for shard in 0..runtime.num_shards() {
        let response = runtime
            .call(
                shard,
                ctx.version(),
                GroupRequest::ListGroups(request.clone()).into(),
                super::groups::meta(ctx),
            )
            .await;
        match response {
            Ok(ResponseKind::ListGroups(mut r)) if r.error_code == errors::NONE => {
                listed.append(&mut r.groups)
            }
            _ => {
                return ListGroupsResponse::default()
                    .with_error_code(errors::COORDINATOR_NOT_AVAILABLE)
            }
        }
    }
    ListGroupsResponse::default().with_groups(listed)
}
