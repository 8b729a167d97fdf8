//! AlterUserScramCredentials on the controller (Kafka's `ScramControlManager`): each
//! user's deletion or upsertion checked against the image, the accepted ones turned into
//! `UserScramCredential` / `RemoveUserScramCredential` records written in one entry.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{ApiError, MetadataImage, MetadataRecord};
use crate::auth::scram::ScramMechanism;

/// Kafka error codes of this API.
pub(crate) const RESOURCE_NOT_FOUND: i16 = 91;
pub(crate) const DUPLICATE_RESOURCE: i16 = 92;
pub(crate) const UNACCEPTABLE_CREDENTIAL: i16 = 93;
pub(crate) const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// A deletion as the request carries it (`mechanism` is the wire type id, maybe unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramDeletion {
    pub name: String,
    pub mechanism: i8,
}

/// An upsertion as the request carries it: the client salted and hashed the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramUpsertion {
    pub name: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// One result per user, in Kafka's order: accepted deletions, accepted upsertions, then
/// the refused users (each in order of first appearance).
pub type ScramResults = Vec<(String, Result<(), ApiError>)>;

fn error(code: i16, message: &str) -> ApiError {
    ApiError {
        code,
        message: message.to_string(),
    }
}

fn check_name_and_mechanism(name: &str, mechanism: i8) -> Result<ScramMechanism, ApiError> {
    if name.is_empty() {
        return Err(error(UNACCEPTABLE_CREDENTIAL, "Username must not be empty"));
    }
    ScramMechanism::from_type_id(mechanism)
        .ok_or_else(|| error(UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"))
}

const ALTERED_TWICE: &str = "A user credential cannot be altered twice in the same request";

/// The records to write and each user's result. A user named twice in one request (in
/// any mix of deletions and upsertions) is refused whole with DUPLICATE_RESOURCE.
pub(crate) fn plan(
    image: &MetadataImage,
    deletions: &[ScramDeletion],
    upsertions: &[ScramUpsertion],
) -> (Vec<MetadataRecord>, ScramResults) {
    let mut deletes: IndexMap<&str, ScramMechanism> = IndexMap::new();
    let mut upserts: IndexMap<&str, (ScramMechanism, &ScramUpsertion)> = IndexMap::new();
    let mut refused: IndexMap<&str, ApiError> = IndexMap::new();
    for deletion in deletions {
        let name = deletion.name.as_str();
        if refused.contains_key(name) {
            continue;
        }
        if deletes.shift_remove(name).is_some() {
            refused.insert(name, error(DUPLICATE_RESOURCE, ALTERED_TWICE));
            continue;
        }
        let checked = check_name_and_mechanism(name, deletion.mechanism).and_then(|m| {
            if image.scram_credential(name, m).is_none() {
                return Err(error(
                    RESOURCE_NOT_FOUND,
                    "Attempt to delete a user credential that does not exist",
                ));
            }
            Ok(m)
        });
        match checked {
            Ok(mechanism) => {
                deletes.insert(name, mechanism);
            }
            Err(e) => {
                refused.insert(name, e);
            }
        }
    }
    for upsertion in upsertions {
        let name = upsertion.name.as_str();
        if refused.contains_key(name) {
            continue;
        }
        if deletes.shift_remove(name).is_some() || upserts.shift_remove(name).is_some() {
            refused.insert(name, error(DUPLICATE_RESOURCE, ALTERED_TWICE));
            continue;
        }
        let checked = check_name_and_mechanism(name, upsertion.mechanism).and_then(|m| {
            if upsertion.iterations < ScramMechanism::MIN_ITERATIONS {
                Err(error(UNACCEPTABLE_CREDENTIAL, "Too few iterations"))
            } else if upsertion.iterations > ScramMechanism::MAX_ITERATIONS {
                Err(error(UNACCEPTABLE_CREDENTIAL, "Too many iterations"))
            } else {
                Ok(m)
            }
        });
        match checked {
            Ok(mechanism) => {
                upserts.insert(name, (mechanism, upsertion));
            }
            Err(e) => {
                refused.insert(name, e);
            }
        }
    }
    let mut records = Vec::with_capacity(deletes.len() + upserts.len());
    let mut results = Vec::with_capacity(deletes.len() + upserts.len() + refused.len());
    for (name, mechanism) in deletes {
        records.push(MetadataRecord::RemoveUserScramCredential {
            name: name.to_string(),
            mechanism,
        });
        results.push((name.to_string(), Ok(())));
    }
    for (name, (mechanism, upsertion)) in upserts {
        // The controller, not the client, derives the keys from the salted password.
        let credential = mechanism.credential_from_salted_password(
            upsertion.salt.clone(),
            &upsertion.salted_password,
            upsertion.iterations,
        );
        records.push(MetadataRecord::UserScramCredential {
            name: name.to_string(),
            mechanism,
            salt: credential.salt,
            stored_key: credential.stored_key,
            server_key: credential.server_key,
            iterations: credential.iterations,
        });
        results.push((name.to_string(), Ok(())));
    }
    results.extend(
        refused
            .into_iter()
            .map(|(name, e)| (name.to_string(), Err(e))),
    );
    (records, results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::tests::authenticate;
    use crate::auth::scram::ScramServer;
    use crate::metadata::apply_batch;

    fn upsert(name: &str, mechanism: i8, iterations: i32, password: &str) -> ScramUpsertion {
        let salt = format!("salt of {name}").into_bytes();
        let salted_password = ScramMechanism::from_type_id(mechanism)
            .map(|m| m.salted_password(password.as_bytes(), &salt, iterations as u32))
            .unwrap_or_default();
        ScramUpsertion {
            name: name.to_string(),
            mechanism,
            iterations,
            salt,
            salted_password,
        }
    }

    /// An upsertion whose salted password is not worth computing (validation only).
    fn unchecked(name: &str, mechanism: i8, iterations: i32) -> ScramUpsertion {
        ScramUpsertion {
            name: name.to_string(),
            mechanism,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: vec![7; 32],
        }
    }

    fn delete(name: &str, mechanism: i8) -> ScramDeletion {
        ScramDeletion {
            name: name.to_string(),
            mechanism,
        }
    }

    fn codes(results: &ScramResults) -> Vec<(&str, i16)> {
        results
            .iter()
            .map(|(name, r)| (name.as_str(), r.as_ref().map_or_else(|e| e.code, |()| 0)))
            .collect()
    }

    #[test]
    fn upserted_credentials_authenticate_and_deletions_remove_them() {
        let (records, results) = plan(
            &MetadataImage::default(),
            &[],
            &[
                upsert("alice", 1, 8192, "alice-secret"),
                upsert("bob", 2, 4096, "bob-secret"),
            ],
        );
        assert_eq!(codes(&results), [("alice", 0), ("bob", 0)]);
        let (image, outcome) = apply_batch(&MetadataImage::default(), 1, &records);
        assert_eq!(outcome.accepted, [true, true]);
        let stored = image
            .scram_credential("alice", ScramMechanism::Sha256)
            .unwrap();
        assert_eq!(stored.iterations, 8192);
        assert!(image
            .scram_credential("alice", ScramMechanism::Sha512)
            .is_none());

        // A client with the same password authenticates against what the image holds.
        for (user, mechanism, password) in [
            ("alice", ScramMechanism::Sha256, "alice-secret"),
            ("bob", ScramMechanism::Sha512, "bob-secret"),
        ] {
            let lookup_image = image.clone();
            let mut server = ScramServer::new(mechanism, move |u: &str| {
                lookup_image.scram_credential(u, mechanism)
            });
            let (principal, server_proved) =
                authenticate(&mut server, mechanism, user, password).unwrap();
            assert_eq!(principal.name, user);
            assert!(server_proved);
            let lookup_image = image.clone();
            let mut server = ScramServer::new(mechanism, move |u: &str| {
                lookup_image.scram_credential(u, mechanism)
            });
            assert!(authenticate(&mut server, mechanism, user, "wrong").is_err());
        }

        // Records survive the log's serialized form.
        let bytes = serde_json::to_vec(&records).unwrap();
        assert_eq!(
            serde_json::from_slice::<Vec<MetadataRecord>>(&bytes).unwrap(),
            records
        );
        let snapshot = serde_json::to_vec(&image).unwrap();
        assert_eq!(
            serde_json::from_slice::<MetadataImage>(&snapshot).unwrap(),
            image
        );

        let (records, results) = plan(&image, &[delete("alice", 1), delete("bob", 1)], &[]);
        assert_eq!(codes(&results), [("alice", 0), ("bob", RESOURCE_NOT_FOUND)]);
        let (image, outcome) = apply_batch(&image, 1, &records);
        assert_eq!(outcome.accepted, [true]);
        assert!(image
            .scram_credential("alice", ScramMechanism::Sha256)
            .is_none());
        assert!(!image.scram_credentials.contains_key("alice"));
        // Removing what is not there is refused by apply too.
        let (_, outcome) = apply_batch(&image, 1, &records);
        assert_eq!(outcome.accepted, [false]);
    }

    #[test]
    fn kafkas_validation_rules() {
        let (records, results) = plan(
            &MetadataImage::default(),
            &[delete("", 1), delete("dave", 0)],
            &[
                unchecked("few", 1, 4095),
                unchecked("many", 2, 16385),
                unchecked("", 1, 8192),
                unchecked("unknown", 3, 8192),
                unchecked("twice", 1, 8192),
                unchecked("twice", 2, 8192),
                unchecked("twice", 2, 8192),
                unchecked("edge", 1, 16384),
            ],
        );
        assert_eq!(
            codes(&results),
            [
                ("edge", 0),
                ("", UNACCEPTABLE_CREDENTIAL),
                ("dave", UNSUPPORTED_SASL_MECHANISM),
                ("few", UNACCEPTABLE_CREDENTIAL),
                ("many", UNACCEPTABLE_CREDENTIAL),
                ("unknown", UNSUPPORTED_SASL_MECHANISM),
                ("twice", DUPLICATE_RESOURCE),
            ]
        );
        assert_eq!(records.len(), 1);
        // A deletion and an upsertion of one user also count as twice.
        let (carol, _) = plan(
            &MetadataImage::default(),
            &[],
            &[unchecked("carol", 1, 4096)],
        );
        let (image, _) = apply_batch(&MetadataImage::default(), 1, &carol);
        let (records, results) = plan(
            &image,
            &[delete("carol", 1)],
            &[unchecked("carol", 2, 4096)],
        );
        assert_eq!(codes(&results), [("carol", DUPLICATE_RESOURCE)]);
        assert!(records.is_empty());
    }
}
