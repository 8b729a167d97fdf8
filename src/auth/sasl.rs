//! The server side of one SASL exchange, mechanism by mechanism: the connection's
//! SaslAuthenticate requests feed it client messages until it names the principal.

use super::KafkaPrincipal;

/// What a mechanism answers to one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this to the client and wait for its next message.
    Challenge(Vec<u8>),
    /// Authenticated: send `final_message` (may be empty) and use `principal`.
    Complete {
        final_message: Vec<u8>,
        principal: KafkaPrincipal,
    },
}

/// A refused exchange: the connection answers SASL_AUTHENTICATION_FAILED (58) with
/// `message` and closes. The message never says which part was wrong (user or password).
#[derive(Debug, PartialEq, Eq)]
pub struct SaslFailure {
    pub message: String,
}

impl SaslFailure {
    pub fn new(message: impl Into<String>) -> SaslFailure {
        SaslFailure {
            message: message.into(),
        }
    }
}

/// One mechanism's server for one exchange (a new one per authentication and per
/// re-authentication).
pub trait SaslServer: Send {
    fn step(&mut self, client_message: &[u8]) -> Result<SaslStep, SaslFailure>;
}
