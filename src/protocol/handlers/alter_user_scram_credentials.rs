//! AlterUserScramCredentials (`kafka-configs --alter --entity-type users` with
//! `SCRAM-SHA-256=[...]`, the admin client's `alterUserScramCredentials`): the whole
//! request goes to the controller, which checks each user and writes the accepted
//! changes in one metadata entry (`MetadataQuorum::alter_scram_credentials`).

use indexmap::IndexSet;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::metadata::{ScramDeletion, ScramUpsertion};
use crate::protocol::{errors, RequestContext};

pub async fn handle(
    ctx: &RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let deletions: Vec<ScramDeletion> = request
        .deletions
        .into_iter()
        .map(|d| ScramDeletion {
            name: d.name.to_string(),
            mechanism: d.mechanism,
        })
        .collect();
    let upsertions: Vec<ScramUpsertion> = request
        .upsertions
        .into_iter()
        .map(|u| ScramUpsertion {
            name: u.name.to_string(),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        })
        .collect();
    let users: IndexSet<String> = deletions
        .iter()
        .map(|d| d.name.clone())
        .chain(upsertions.iter().map(|u| u.name.clone()))
        .collect();
    let results = if users.is_empty() {
        Vec::new()
    } else {
        match ctx
            .broker
            .metadata
            .alter_scram_credentials(deletions, upsertions)
            .await
        {
            Ok(results) => results
                .into_iter()
                .map(|(user, outcome)| {
                    let result = AlterUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(user));
                    match outcome {
                        // Kafka sends a null message on success.
                        Ok(()) => result
                            .with_error_code(errors::NONE)
                            .with_error_message(None),
                        Err(e) => result
                            .with_error_code(e.code)
                            .with_error_message(Some(StrBytes::from_string(e.message))),
                    }
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "AlterUserScramCredentials failed in the metadata quorum");
                // Every user gets the retriable error; the client retries the whole call.
                users
                    .into_iter()
                    .map(|user| {
                        AlterUserScramCredentialsResult::default()
                            .with_user(StrBytes::from_string(user))
                            .with_error_code(errors::NOT_CONTROLLER)
                            .with_error_message(Some(StrBytes::from_string(error.to_string())))
                    })
                    .collect()
            }
        }
    };
    AlterUserScramCredentialsResponse::default().with_results(results)
}
