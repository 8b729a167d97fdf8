//! ApiVersions: the ranges in `protocol::supported_versions`, and the feature levels
//! (KIP-584) a client adapts to: `transaction.version` (KIP-890), supported 0..2 and
//! finalized at 2 as in a Kafka 4.4 cluster formatted with defaults, so a Java 4.x
//! producer runs transactions v2. Requests at versions we do not serve never get here
//! (see `server::frame`): they get the KIP-511 v0 answer.
//!
//! Kafka has no broker key for the level: it is a cluster feature set at format time or
//! with `kafka-features.sh`, kept in the metadata log; millrace runs at one level
//! (`txn::SERVER_TRANSACTION_VERSION`) and has no feature-level records.

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::{api_version_entries, errors, RequestContext};
use crate::txn::SERVER_TRANSACTION_VERSION;

const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The levels of `transaction.version` this broker implements.
const TRANSACTION_VERSION_MAX: i16 = 2;
/// Kafka's epoch is the metadata offset the levels were read at; ours never change, so
/// one fixed epoch (any value above a client's initial -1) stays consistent.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

pub fn handle(ctx: &RequestContext, request: ApiVersionsRequest) -> ApiVersionsResponse {
    let response = ApiVersionsResponse::default()
        .with_error_code(errors::NONE)
        .with_api_keys(api_version_entries());
    // Features are tagged fields (v3+). librdkafka 2.0.2 (Debian's kcat) misparses
    // tagged fields in this response, and librdkafka has no use for the levels, so it
    // is answered without them.
    if ctx.version() < 3 || request.client_software_name.as_str() == "librdkafka" {
        return response;
    }
    response
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE))
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION_MAX)])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE))
            .with_max_version_level(SERVER_TRANSACTION_VERSION)
            .with_min_version_level(SERVER_TRANSACTION_VERSION)])
}
