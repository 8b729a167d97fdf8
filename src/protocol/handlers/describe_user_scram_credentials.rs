//! DescribeUserScramCredentials (`kafka-configs --describe --entity-type users`): read
//! from this broker's metadata image, as Kafka's brokers answer from their metadata
//! cache. Only each credential's mechanism and iteration count leave the broker, never
//! its salt or keys.

use indexmap::IndexMap;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::errors::{DUPLICATE_RESOURCE, RESOURCE_NOT_FOUND};
use crate::protocol::RequestContext;

pub fn handle(
    ctx: &RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = ctx.broker.metadata.image();
    // Each user once, with how often the request named it. No names (null or empty)
    // means every user with a credential.
    let mut users: IndexMap<String, usize> = IndexMap::new();
    match request.users.filter(|named| !named.is_empty()) {
        None => users.extend(image.scram_credentials.keys().map(|u| (u.clone(), 1))),
        Some(named) => {
            for user in named {
                *users.entry(user.name.to_string()).or_default() += 1;
            }
        }
    }
    let results = users
        .into_iter()
        .map(|(user, times)| {
            let result = DescribeUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user.clone()));
            if times > 1 {
                return result.with_error_code(DUPLICATE_RESOURCE).with_error_message(Some(
                    StrBytes::from_string(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    )),
                ));
            }
            match image.scram_credentials.get(&user) {
                Some(credentials) if !credentials.is_empty() => result.with_credential_infos(
                    credentials
                        .iter()
                        .map(|(mechanism, credential)| {
                            CredentialInfo::default()
                                .with_mechanism(mechanism.type_id())
                                .with_iterations(credential.iterations)
                        })
                        .collect(),
                ),
                _ => result.with_error_code(RESOURCE_NOT_FOUND).with_error_message(Some(
                    StrBytes::from_string(format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )),
                )),
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
