//! ApiVersions: the ranges in `protocol::supported_versions`. Requests at versions we do
//! not serve never get here (see `server::frame`): they get the KIP-511 v0 answer.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::protocol::{api_version_entries, errors, RequestContext};

pub fn handle(_ctx: &RequestContext, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    // No features are advertised, so no tagged fields are written: librdkafka 2.0.2
    // (Debian's kcat) misparses tagged fields in this response.
    ApiVersionsResponse::default()
        .with_error_code(errors::NONE)
        .with_api_keys(api_version_entries())
}
