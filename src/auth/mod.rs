//! Who sent a request: the security protocol of the listener it came in on and the
//! authenticated principal, as Kafka's `KafkaPrincipal` and `RequestContext` carry them.
//! Authentication (TLS, SASL), authorization (ACLs) and quotas all key on this.

pub mod sasl;
pub mod scram;

use std::fmt;
use std::net::IpAddr;

/// Kafka's principal: a type (`User` for every built-in authenticator) and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

impl KafkaPrincipal {
    pub const USER_TYPE: &'static str = "User";

    pub fn user(name: impl Into<String>) -> KafkaPrincipal {
        KafkaPrincipal {
            principal_type: Self::USER_TYPE.to_string(),
            name: name.into(),
        }
    }

    /// What an unauthenticated PLAINTEXT (or SSL without a client certificate)
    /// connection is: `User:ANONYMOUS`, as in Kafka.
    pub fn anonymous() -> KafkaPrincipal {
        KafkaPrincipal::user("ANONYMOUS")
    }
}

/// `User:alice`, the form `super.users` and the ACL tools use.
impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// The four security protocols of `listener.security.protocol.map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One connection's identity once it may send requests other than ApiVersions and the
/// SASL ones: every request handled on it carries this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The `listeners` entry's name (`PLAINTEXT`, `CLIENT`, ...): Metadata answers with
    /// each broker's endpoint on this same listener.
    pub listener_name: String,
    pub security_protocol: SecurityProtocol,
    pub principal: KafkaPrincipal,
    /// The client's address: ACLs match it as the host.
    pub client_address: IpAddr,
}

impl Session {
    /// A connection on a PLAINTEXT listener: `User:ANONYMOUS`.
    pub fn anonymous(listener_name: impl Into<String>, client_address: IpAddr) -> Session {
        Session {
            listener_name: listener_name.into(),
            security_protocol: SecurityProtocol::Plaintext,
            principal: KafkaPrincipal::anonymous(),
            client_address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_print_as_kafka_writes_them() {
        assert_eq!(KafkaPrincipal::anonymous().to_string(), "User:ANONYMOUS");
        assert_eq!(KafkaPrincipal::user("alice").to_string(), "User:alice");
    }

    #[test]
    fn security_protocols_round_trip_their_names() {
        for name in ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] {
            assert_eq!(SecurityProtocol::parse(name).unwrap().name(), name);
        }
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert!(SecurityProtocol::parse("TLS").is_none());
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
        assert!(!SecurityProtocol::Plaintext.uses_tls());
    }
}
