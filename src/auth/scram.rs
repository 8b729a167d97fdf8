//! SASL/SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka serves them: the
//! stored credential (salt, StoredKey, ServerKey, iterations; never the password) and
//! the server side of one exchange.
//!
//! Kafka's client always sends the gs2 header `n,,` (no channel binding); names are
//! 7-bit, as in Kafka's message grammar; an authzid, if given, must be the username.
//! Extensions are read and ignored except `tokenauth`, which asks for delegation-token
//! authentication: there are no delegation tokens here, so it is refused. An unknown user goes through the same steps as a wrong password (a
//! made-up salt and iteration count, then a proof that cannot match), so that the
//! exchange does not tell which users exist.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::sasl::{SaslFailure, SaslServer, SaslStep};
use super::KafkaPrincipal;

/// The two SCRAM mechanisms Kafka supports. The serialized names are part of the metadata
/// log format: never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// Kafka's bounds on `iterations` (`ScramMechanism.java`, `ScramControlManager`):
    /// fewer is refused when credentials are set and when a client authenticates.
    pub const MIN_ITERATIONS: i32 = 4096;
    pub const MAX_ITERATIONS: i32 = 16384;

    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The mechanism's type id on the wire (AlterUserScramCredentials,
    /// DescribeUserScramCredentials) and in Kafka's metadata records; 0 is UNKNOWN.
    pub fn type_id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_type_id(id: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.type_id() == id)
    }

    /// The hash output length: the length of StoredKey, ServerKey and a client proof.
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC accepts every key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
            ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's `Hi(password, salt, i)`: PBKDF2 with HMAC of this hash, one block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }

    /// The credential kept for a salted password (what AlterUserScramCredentials carries:
    /// the client salts and hashes, the broker derives the keys).
    pub fn credential_from_salted_password(
        self,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: i32,
    ) -> ScramCredential {
        let client_key = self.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt,
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// The credential for `password` with `salt` (tests and tools; brokers receive salted
    /// passwords).
    pub fn credential_from_password(
        self,
        password: &str,
        salt: Vec<u8>,
        iterations: i32,
    ) -> ScramCredential {
        let rounds = u32::try_from(iterations).unwrap_or(0);
        let salted = self.salted_password(password.as_bytes(), &salt, rounds);
        self.credential_from_salted_password(salt, &salted, iterations)
    }
}

/// What the broker keeps for one user and mechanism (Kafka's `ScramCredential`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// `n=`'s value in RFC 5802 form: `,` and `=` written `=2C` and `=3D`; any other `=` is
/// malformed. Kafka's grammar takes 7-bit names only (no NUL), so this does too.
fn unescape_sasl_name(name: &str) -> Option<String> {
    if !name.bytes().all(|b| (0x01..=0x7f).contains(&b)) {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A `key=value` attribute of a SCRAM message.
fn attribute(part: &str, key: char) -> Option<&str> {
    let mut chars = part.chars();
    (chars.next() == Some(key) && chars.next() == Some('=')).then(|| &part[2..])
}

/// Printable ASCII except `,` (RFC 5802's `printable`, what a nonce is made of).
fn is_printable(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

struct ClientFirst {
    gs2_header: String,
    bare: String,
    username: String,
    nonce: String,
}

fn parse_client_first(message: &str) -> Result<ClientFirst, Refusal> {
    // gs2-header: `n` (Kafka's clients never bind channels), an optional authzid, `,`.
    let rest = message.strip_prefix("n,").ok_or(Refusal::Invalid)?;
    let (authzid, bare) = rest.split_once(',').ok_or(Refusal::Invalid)?;
    let authzid = match authzid {
        "" => None,
        a => Some(
            unescape_sasl_name(attribute(a, 'a').ok_or(Refusal::Invalid)?)
                .ok_or(Refusal::Invalid)?,
        ),
    };
    let mut parts = bare.split(',');
    let name = parts.next().and_then(|p| attribute(p, 'n'));
    let nonce = parts.next().and_then(|p| attribute(p, 'r'));
    let (Some(name), Some(nonce)) = (name, nonce) else {
        return Err(Refusal::Invalid);
    };
    let username = unescape_sasl_name(name)
        .filter(|u| !u.is_empty())
        .ok_or(Refusal::Invalid)?;
    if !is_printable(nonce) {
        return Err(Refusal::Invalid);
    }
    for extension in parts {
        // Kafka's grammar: an alphabetic key, a non-empty 7-bit value.
        let (key, value) = extension.split_once('=').ok_or(Refusal::Invalid)?;
        if key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_alphabetic())
            || value.is_empty()
            || !value.bytes().all(|b| (0x01..=0x7f).contains(&b))
        {
            return Err(Refusal::Invalid);
        }
        // Delegation tokens are not supported: a token can never authenticate.
        if key == "tokenauth" {
            return Err(Refusal::Invalid);
        }
    }
    if authzid.as_ref().is_some_and(|a| *a != username) {
        return Err(Refusal::AuthorizationId);
    }
    Ok(ClientFirst {
        gs2_header: message[..message.len() - bare.len()].to_string(),
        bare: bare.to_string(),
        username,
        nonce: nonce.to_string(),
    })
}

/// Why an exchange failed; only the client's own mistake with the authzid gets its own
/// message, as in Kafka (everything else could tell an attacker something).
enum Refusal {
    Invalid,
    AuthorizationId,
}

/// What the server remembers between its first and last message.
struct Pending {
    client_first: ClientFirst,
    server_first: String,
    /// The client nonce followed by ours.
    nonce: String,
    credential: ScramCredential,
    /// False for an unknown user: the exchange runs on and then fails.
    known: bool,
}

enum State {
    ClientFirst,
    ClientFinal(Box<Pending>),
    Done,
}

type Lookup = Box<dyn Fn(&str) -> Option<ScramCredential> + Send>;

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    lookup: Lookup,
    state: State,
    /// Only tests fix it (RFC 7677's vector); otherwise random per exchange.
    server_nonce: Option<String>,
}

impl ScramServer {
    /// `lookup` finds a user's credential for this mechanism (the metadata image's
    /// `scram_credential`).
    pub fn new(
        mechanism: ScramMechanism,
        lookup: impl Fn(&str) -> Option<ScramCredential> + Send + 'static,
    ) -> ScramServer {
        ScramServer {
            mechanism,
            lookup: Box::new(lookup),
            state: State::ClientFirst,
            server_nonce: None,
        }
    }

    fn failure(&self, refusal: Refusal) -> SaslFailure {
        SaslFailure::new(match refusal {
            Refusal::Invalid => format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                self.mechanism.name()
            ),
            Refusal::AuthorizationId => "Authentication failed: Client requested an authorization id that is different from username".to_string(),
        })
    }

    fn client_first(&mut self, message: &str) -> Result<SaslStep, Refusal> {
        let client_first = parse_client_first(message)?;
        let (credential, known) = match (self.lookup)(&client_first.username) {
            Some(c) => (c, true),
            None => (self.stand_in_credential(&client_first.username), false),
        };
        if credential.iterations < ScramMechanism::MIN_ITERATIONS {
            return Err(Refusal::Invalid);
        }
        let server_nonce = match self.server_nonce.take() {
            Some(nonce) => nonce,
            None => BASE64.encode(random_bytes::<24>()),
        };
        let nonce = format!("{}{server_nonce}", client_first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let challenge = server_first.clone().into_bytes();
        self.state = State::ClientFinal(Box::new(Pending {
            client_first,
            server_first,
            nonce,
            credential,
            known,
        }));
        Ok(SaslStep::Challenge(challenge))
    }

    /// An unknown user's made-up credential: the same salt for the same name every time
    /// (a per-process secret keys it), so that asking twice does not reveal the user is
    /// made up, and keys no proof can match.
    fn stand_in_credential(&self, username: &str) -> ScramCredential {
        static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
        let secret = SECRET.get_or_init(random_bytes::<32>);
        let mut salt = self.mechanism.hmac(secret, username.as_bytes());
        salt.truncate(16);
        ScramCredential {
            salt,
            stored_key: random_bytes::<64>()[..self.mechanism.hash_len()].to_vec(),
            server_key: random_bytes::<64>()[..self.mechanism.hash_len()].to_vec(),
            iterations: ScramMechanism::MIN_ITERATIONS,
        }
    }

    fn client_final(
        message: &str,
        pending: Pending,
        mechanism: ScramMechanism,
    ) -> Result<SaslStep, Refusal> {
        let Pending {
            client_first,
            server_first,
            nonce,
            credential,
            known,
        } = pending;
        // `c=...,r=...[,extensions],p=...`; the proof is last.
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or(Refusal::Invalid)?;
        let mut parts = without_proof.split(',');
        let binding = parts.next().and_then(|p| attribute(p, 'c'));
        let final_nonce = parts.next().and_then(|p| attribute(p, 'r'));
        if binding != Some(BASE64.encode(&client_first.gs2_header).as_str())
            || final_nonce != Some(nonce.as_str())
        {
            return Err(Refusal::Invalid);
        }
        let proof = BASE64.decode(proof).map_err(|_| Refusal::Invalid)?;
        if proof.len() != mechanism.hash_len() {
            return Err(Refusal::Invalid);
        }
        let auth_message = format!("{},{server_first},{without_proof}", client_first.bare);
        let client_signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let matches: bool = mechanism
            .hash(&client_key)
            .ct_eq(&credential.stored_key)
            .into();
        if !matches || !known {
            return Err(Refusal::Invalid);
        }
        let server_signature = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(SaslStep::Complete {
            final_message: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
            principal: KafkaPrincipal::user(client_first.username),
        })
    }
}

impl SaslServer for ScramServer {
    fn step(&mut self, client_message: &[u8]) -> Result<SaslStep, SaslFailure> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let result = match std::str::from_utf8(client_message) {
            Err(_) => Err(Refusal::Invalid),
            Ok(message) => match state {
                State::ClientFirst => self.client_first(message),
                State::ClientFinal(pending) => {
                    Self::client_final(message, *pending, self.mechanism)
                }
                State::Done => Err(Refusal::Invalid),
            },
        };
        // Any failure ends the exchange; so does success (the state stays Done).
        result.map_err(|refusal| self.failure(refusal))
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing leaves no safe way to authenticate anyone.
    getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
    bytes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RFC 5802's client side, as Kafka's `ScramSaslClient` runs it (gs2 header `n,,`).
    pub(crate) struct TestClient {
        mechanism: ScramMechanism,
        password: String,
        client_first_bare: String,
        salted_password: Vec<u8>,
        auth_message: String,
    }

    impl TestClient {
        pub(crate) fn first(
            mechanism: ScramMechanism,
            user: &str,
            password: &str,
            nonce: &str,
        ) -> (TestClient, Vec<u8>) {
            let escaped = user.replace('=', "=3D").replace(',', "=2C");
            let bare = format!("n={escaped},r={nonce}");
            let client = TestClient {
                mechanism,
                password: password.to_string(),
                client_first_bare: bare.clone(),
                salted_password: Vec::new(),
                auth_message: String::new(),
            };
            (client, format!("n,,{bare}").into_bytes())
        }

        /// The client-final message for a server-first message.
        pub(crate) fn last(&mut self, server_first: &[u8]) -> Vec<u8> {
            let server_first = std::str::from_utf8(server_first).unwrap();
            let mut parts = server_first.split(',');
            let nonce = attribute(parts.next().unwrap(), 'r').unwrap();
            let salt = BASE64
                .decode(attribute(parts.next().unwrap(), 's').unwrap())
                .unwrap();
            let iterations: u32 = attribute(parts.next().unwrap(), 'i')
                .unwrap()
                .parse()
                .unwrap();
            self.salted_password =
                self.mechanism
                    .salted_password(self.password.as_bytes(), &salt, iterations);
            let without_proof = format!("c=biws,r={nonce}");
            self.auth_message =
                format!("{},{server_first},{without_proof}", self.client_first_bare);
            let client_key = self.mechanism.hmac(&self.salted_password, b"Client Key");
            let stored_key = self.mechanism.hash(&client_key);
            let signature = self
                .mechanism
                .hmac(&stored_key, self.auth_message.as_bytes());
            let proof: Vec<u8> = client_key
                .iter()
                .zip(&signature)
                .map(|(k, s)| k ^ s)
                .collect();
            format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes()
        }

        /// Whether the server-final message proves the server knew the credential.
        pub(crate) fn verifies(&self, server_final: &[u8]) -> bool {
            let server_key = self.mechanism.hmac(&self.salted_password, b"Server Key");
            let signature = self
                .mechanism
                .hmac(&server_key, self.auth_message.as_bytes());
            server_final == format!("v={}", BASE64.encode(signature)).as_bytes()
        }
    }

    /// Runs a whole exchange; the principal and whether the server proved itself.
    pub(crate) fn authenticate(
        server: &mut ScramServer,
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<(KafkaPrincipal, bool), SaslFailure> {
        let (mut client, first) =
            TestClient::first(mechanism, user, password, "fyko+d2lbbFgONRv9qkxdawL");
        let SaslStep::Challenge(server_first) = server.step(&first)? else {
            panic!("no challenge after client-first");
        };
        match server.step(&client.last(&server_first))? {
            SaslStep::Complete {
                final_message,
                principal,
            } => Ok((principal, client.verifies(&final_message))),
            SaslStep::Challenge(_) => panic!("a challenge after client-final"),
        }
    }

    fn alice(
        mechanism: ScramMechanism,
    ) -> impl Fn(&str) -> Option<ScramCredential> + Send + 'static {
        let credential =
            mechanism.credential_from_password("alice-secret", b"a salt of alice".to_vec(), 8192);
        move |user: &str| (user == "alice").then(|| credential.clone())
    }

    const INVALID_256: &str = "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";

    #[test]
    fn rfc7677_sha256_vector() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = ScramMechanism::Sha256.credential_from_password("pencil", salt, 4096);
        let mut server = ScramServer::new(ScramMechanism::Sha256, move |u: &str| {
            (u == "user").then(|| credential.clone())
        });
        server.server_nonce = Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_string());
        let first = server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(
            first,
            SaslStep::Challenge(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec())
        );
        let last = server
            .step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(
            last,
            SaslStep::Complete {
                final_message: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec(),
                principal: KafkaPrincipal::user("user"),
            }
        );
        // The exchange is over: another message is refused.
        assert!(server.step(b"n,,n=user,r=abc").is_err());
    }

    #[test]
    fn both_mechanisms_round_trip() {
        for mechanism in ScramMechanism::ALL {
            let mut server = ScramServer::new(mechanism, alice(mechanism));
            let (principal, server_proved) =
                authenticate(&mut server, mechanism, "alice", "alice-secret").unwrap();
            assert_eq!(principal, KafkaPrincipal::user("alice"));
            assert!(server_proved, "{mechanism:?}");
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let mut server = ScramServer::new(ScramMechanism::Sha256, alice(ScramMechanism::Sha256));
        let wrong = authenticate(&mut server, ScramMechanism::Sha256, "alice", "nope").unwrap_err();
        assert_eq!(wrong.message, INVALID_256);
        // The unknown user gets a server-first message like anyone, with the same salt on
        // every attempt, and fails only at the proof.
        let salt_of = |user: &str| {
            let mut server =
                ScramServer::new(ScramMechanism::Sha256, alice(ScramMechanism::Sha256));
            let (_, first) = TestClient::first(ScramMechanism::Sha256, user, "x", "abc");
            let SaslStep::Challenge(reply) = server.step(&first).unwrap() else {
                panic!()
            };
            String::from_utf8(reply)
                .unwrap()
                .split(',')
                .nth(1)
                .unwrap()
                .to_string()
        };
        assert_eq!(salt_of("mallory"), salt_of("mallory"));
        assert_ne!(salt_of("mallory"), salt_of("trudy"));
        let mut server = ScramServer::new(ScramMechanism::Sha256, alice(ScramMechanism::Sha256));
        let unknown = authenticate(
            &mut server,
            ScramMechanism::Sha256,
            "mallory",
            "alice-secret",
        )
        .unwrap_err();
        assert_eq!(unknown, wrong);
    }

    #[test]
    fn a_credential_of_the_other_mechanism_or_too_few_iterations_fails() {
        let weak = ScramMechanism::Sha512.credential_from_password("pw", b"salt".to_vec(), 1024);
        let mut server =
            ScramServer::new(ScramMechanism::Sha512, move |_: &str| Some(weak.clone()));
        let (_, first) = TestClient::first(ScramMechanism::Sha512, "bob", "pw", "abc");
        assert!(server.step(&first).is_err());
        let mut server = ScramServer::new(ScramMechanism::Sha512, alice(ScramMechanism::Sha256));
        assert!(
            authenticate(&mut server, ScramMechanism::Sha512, "alice", "alice-secret").is_err()
        );
    }

    #[test]
    fn escaped_names_and_authzid() {
        let credential =
            ScramMechanism::Sha256.credential_from_password("pw", b"salt".to_vec(), 4096);
        let lookup = move |u: &str| (u == "a,b=c").then(|| credential.clone());
        let mut server = ScramServer::new(ScramMechanism::Sha256, lookup.clone());
        let (principal, _) =
            authenticate(&mut server, ScramMechanism::Sha256, "a,b=c", "pw").unwrap();
        assert_eq!(principal.name, "a,b=c");
        // An authzid equal to the user is fine (its channel binding then names it) ...
        let mut server = ScramServer::new(ScramMechanism::Sha256, lookup.clone());
        let reply = server.step(b"n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=abc").unwrap();
        assert!(matches!(reply, SaslStep::Challenge(_)));
        // ... another one is refused with Kafka's own message.
        let mut server = ScramServer::new(ScramMechanism::Sha256, lookup);
        let refused = server.step(b"n,a=root,n=a=2Cb=3Dc,r=abc").unwrap_err();
        assert!(refused.message.contains("authorization id"), "{refused:?}");
    }

    #[test]
    fn malformed_messages_are_refused_without_panics() {
        let firsts: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"y,,n=alice,r=abc",
            b"p=tls-unique,,n=alice,r=abc",
            b"n,,n=alice",
            b"n,,r=abc,n=alice",
            b"n,,n=,r=abc",
            b"n,,n=al=ice,r=abc",
            b"n,,n=alice=2,r=abc",
            b"n,,n=alice,r=",
            b"n,,n=alice,r=a\x7fb",
            b"n,,n=alice,r=abc,tokenauth=true",
            b"n,,n=alice,r=abc,=x",
            b"n,,n=alice,r=abc,noequals",
            b"n,,n=alice,r=abc,foo_1=x",
            b"n,,n=alice,r=abc,foo=",
            b"n,,n=al\x00ice,r=abc",
            "n,,n=alicé,r=abc".as_bytes(),
            b"n,x=y,n=alice,r=abc",
            b"\xff\xfe",
            b"n,,n=\xc3\xa9,r=abc\xff",
        ];
        for first in firsts {
            let mut server =
                ScramServer::new(ScramMechanism::Sha256, alice(ScramMechanism::Sha256));
            assert_eq!(
                server.step(first).unwrap_err().message,
                INVALID_256,
                "{first:?}"
            );
        }
        // An unknown extension is ignored, as Kafka does.
        let mut server = ScramServer::new(ScramMechanism::Sha256, alice(ScramMechanism::Sha256));
        assert!(server.step(b"n,,n=alice,r=abc,foo=bar").is_ok());

        let finals: &[&[u8]] = &[
            b"",
            b"c=biws",
            b"c=biws,r=abc",
            b"c=biws,p=AAAA",
            b"c=biws,r=abc,p=!!!",
            b"c=biws,r=abc,p=AAAA",
            b"\xff,p=AAAA",
        ];
        for last in finals {
            let mut server =
                ScramServer::new(ScramMechanism::Sha256, alice(ScramMechanism::Sha256));
            let (_, first) =
                TestClient::first(ScramMechanism::Sha256, "alice", "alice-secret", "abc");
            server.step(&first).unwrap();
            assert_eq!(
                server.step(last).unwrap_err().message,
                INVALID_256,
                "{last:?}"
            );
        }
    }

    #[test]
    fn nonce_and_channel_binding_must_match() {
        let tamper = |edit: &dyn Fn(String) -> String| {
            let mut server =
                ScramServer::new(ScramMechanism::Sha256, alice(ScramMechanism::Sha256));
            let (mut client, first) =
                TestClient::first(ScramMechanism::Sha256, "alice", "alice-secret", "abc");
            let SaslStep::Challenge(server_first) = server.step(&first).unwrap() else {
                panic!()
            };
            let last = String::from_utf8(client.last(&server_first)).unwrap();
            server.step(edit(last).as_bytes())
        };
        assert!(tamper(&|m| m).is_ok());
        // Only the client's part of the nonce, or one with a changed server part.
        assert!(tamper(&|m| {
            let start = m.find(",r=").unwrap() + 3;
            let end = m.find(",p=").unwrap();
            format!("{}abc{}", &m[..start], &m[end..])
        })
        .is_err());
        assert!(tamper(&|m| m.replacen(",r=abc", ",r=abcX", 1)).is_err());
        assert!(tamper(&|m| m.replacen("c=biws", "c=eSws", 1)).is_err());
    }

    #[test]
    fn mechanism_names_and_type_ids_are_kafkas() {
        assert_eq!(
            ScramMechanism::from_name("SCRAM-SHA-256"),
            Some(ScramMechanism::Sha256)
        );
        assert_eq!(
            ScramMechanism::from_name("SCRAM-SHA-512"),
            Some(ScramMechanism::Sha512)
        );
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(
            ScramMechanism::from_type_id(1),
            Some(ScramMechanism::Sha256)
        );
        assert_eq!(
            ScramMechanism::from_type_id(2),
            Some(ScramMechanism::Sha512)
        );
        assert_eq!(ScramMechanism::from_type_id(0), None);
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_type_id(m.type_id()), Some(m));
        }
    }
}
