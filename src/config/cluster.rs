//! Kafka's KRaft cluster keys: `process.roles`, `node.id`, `controller.quorum.voters`,
//! `controller.quorum.bootstrap.servers`, the named `listeners` with their
//! `advertised.listeners` and `listener.security.protocol.map`,
//! `controller.listener.names`, `inter.broker.listener.name`, `broker.rack` and the broker
//! session timings, parsed and validated as Kafka's `KafkaConfig` does (its messages,
//! shortened), so a bad cluster config stops the node at start with the key named.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};

use super::ConfigError;

/// `process.roles`: what this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

impl ProcessRoles {
    pub const COMBINED: ProcessRoles = ProcessRoles {
        broker: true,
        controller: true,
    };
}

/// One `NAME://host:port` entry of `listeners` or `advertised.listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.name, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.name, self.host, self.port)
        }
    }
}

/// One `id@host:port` of `controller.quorum.voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

impl Voter {
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The resolved cluster settings of one node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub roles: ProcessRoles,
    /// `controller.quorum.voters`; empty: the embedded single voter (this node alone).
    pub voters: Vec<Voter>,
    /// `controller.quorum.bootstrap.servers`, validated. A broker-only node asks these
    /// (or the voters) to be added to the quorum as a learner; voters use `voters`.
    pub bootstrap_servers: Vec<(String, u16)>,
    /// `listeners`, in order.
    pub listeners: Vec<Endpoint>,
    /// `advertised.listeners`, completed from `listeners` for names it omits.
    pub advertised_listeners: Vec<Endpoint>,
    /// `controller.listener.names`
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name` (default PLAINTEXT): the listener clients are served
    /// on and that Metadata advertises.
    pub inter_broker_listener_name: String,
    /// Where the metadata quorum's transport binds: the first controller listener found in
    /// `listeners` (controllers only; None in the embedded single-voter default).
    pub controller_bind: Option<SocketAddr>,
    /// `broker.rack`
    pub rack: Option<String>,
    /// `broker.session.timeout.ms`: the active controller fences a broker whose heartbeats
    /// stop for this long.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: u64,
    /// `controller.quorum.request.timeout.ms`: connecting to another voter.
    pub quorum_request_timeout_ms: u64,
    /// `controller.socket.timeout.ms`: a call forwarded to the quorum leader.
    pub controller_socket_timeout_ms: u64,
}

impl ClusterConfig {
    /// Multi-node: voters were configured, or (a broker-only node) bootstrap servers to
    /// find them (a transport needed).
    pub fn is_multi_node(&self) -> bool {
        !self.voters.is_empty() || !self.bootstrap_servers.is_empty()
    }

    /// Where a broker-only node asks to join the quorum: the voters' controller
    /// endpoints, else `controller.quorum.bootstrap.servers` (as Kafka's observers).
    pub fn quorum_contacts(&self) -> Vec<String> {
        if self.voters.is_empty() {
            self.bootstrap_servers
                .iter()
                .map(|(host, port)| join_host_port(host, *port))
                .collect()
        } else {
            self.voters.iter().map(Voter::address).collect()
        }
    }

    /// The advertised endpoint of the inter-broker listener.
    pub fn advertised_broker_endpoint(&self) -> Option<&Endpoint> {
        self.advertised_listeners
            .iter()
            .find(|e| e.name == self.inter_broker_listener_name)
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_host_port(key: &str, whole: &str, text: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, whole, format!("{text:?} is not host:port")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, whole, format!("bad port in {text:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

/// `NAME://host:port,...` (Kafka's `CoreUtils.listenerListToEndPoints`): names unique
/// (case-insensitively upper-cased, as Kafka does) and, for `listeners`, ports too.
pub fn parse_endpoints(key: &str, text: &str) -> Result<Vec<Endpoint>, ConfigError> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for item in split_list(text) {
        let (name, address) = item
            .split_once("://")
            .ok_or_else(|| invalid(key, text, format!("{item:?} is not NAME://host:port")))?;
        let name = name.to_ascii_uppercase();
        if name.is_empty() {
            return Err(invalid(key, text, "a listener needs a name"));
        }
        let (host, port) = parse_host_port(key, text, address)?;
        if endpoints.iter().any(|e| e.name == name) {
            return Err(invalid(
                key,
                text,
                format!("each listener must have a different name, {name} is repeated"),
            ));
        }
        endpoints.push(Endpoint { name, host, port });
    }
    if endpoints.is_empty() {
        return Err(invalid(key, text, "no listener given"));
    }
    Ok(endpoints)
}

/// `id@host:port,...`
pub fn parse_voters(text: &str) -> Result<Vec<Voter>, ConfigError> {
    let key = "controller.quorum.voters";
    let mut voters: Vec<Voter> = Vec::new();
    for item in split_list(text) {
        let (id, address) = item
            .split_once('@')
            .ok_or_else(|| invalid(key, text, format!("{item:?} is not id@host:port")))?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| invalid(key, text, format!("bad voter id in {item:?}")))?;
        let (host, port) = parse_host_port(key, text, address)?;
        if voters.iter().any(|v| v.id == id) {
            return Err(invalid(key, text, format!("voter {id} is given twice")));
        }
        voters.push(Voter { id, host, port });
    }
    Ok(voters)
}

fn parse_roles(text: &str) -> Result<ProcessRoles, ConfigError> {
    let key = "process.roles";
    let mut roles = ProcessRoles {
        broker: false,
        controller: false,
    };
    for role in split_list(text) {
        let slot = match role {
            "broker" => &mut roles.broker,
            "controller" => &mut roles.controller,
            other => {
                return Err(invalid(
                    key,
                    text,
                    format!("unknown process role {other:?}: expected broker and/or controller"),
                ))
            }
        };
        if *slot {
            return Err(invalid(key, text, format!("role {role} is given twice")));
        }
        *slot = true;
    }
    if !roles.broker && !roles.controller {
        return Err(invalid(key, text, "no role given"));
    }
    Ok(roles)
}

/// `listener.security.protocol.map`; unset, Kafka maps each security protocol's own
/// name to itself and the controller listener names to PLAINTEXT.
fn protocol_map(
    text: Option<&str>,
    controller_names: &[String],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let key = "listener.security.protocol.map";
    let Some(text) = text else {
        let mut map: BTreeMap<String, String> = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
            .iter()
            .map(|p| (p.to_string(), p.to_string()))
            .collect();
        for name in controller_names {
            map.entry(name.clone()).or_insert("PLAINTEXT".to_string());
        }
        return Ok(map);
    };
    let mut map = BTreeMap::new();
    for item in split_list(text) {
        let (name, protocol) = item
            .split_once(':')
            .ok_or_else(|| invalid(key, text, format!("{item:?} is not NAME:PROTOCOL")))?;
        let protocol = protocol.trim().to_ascii_uppercase();
        if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&protocol.as_str()) {
            return Err(invalid(
                key,
                text,
                format!("unknown security protocol {protocol}"),
            ));
        }
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

/// Resolves `host:port` to the address to bind.
pub fn resolve(key: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| invalid(key, &join_host_port(host, port), "cannot resolve host"))
}

/// Parses and validates the cluster keys of `map` for node `node_id`.
pub fn parse(map: &BTreeMap<String, String>, node_id: i32) -> Result<ClusterConfig, ConfigError> {
    let get = |key: &str| map.get(key).map(String::as_str);
    let roles = match get("process.roles") {
        Some(text) => parse_roles(text)?,
        None => ProcessRoles::COMBINED,
    };
    if node_id < 0 {
        return Err(invalid("node.id", &node_id.to_string(), "must be >= 0"));
    }
    let voters = parse_voters(get("controller.quorum.voters").unwrap_or(""))?;
    let bootstrap_text = get("controller.quorum.bootstrap.servers").unwrap_or("");
    let bootstrap_servers = split_list(bootstrap_text)
        .map(|item| parse_host_port("controller.quorum.bootstrap.servers", bootstrap_text, item))
        .collect::<Result<Vec<_>, _>>()?;
    let listeners_text = get("listeners").unwrap_or("PLAINTEXT://127.0.0.1:9092");
    let listeners = parse_endpoints("listeners", listeners_text)?;
    let mut ports = BTreeSet::new();
    for listener in &listeners {
        if listener.port != 0 && !ports.insert(listener.port) {
            return Err(invalid(
                "listeners",
                listeners_text,
                format!(
                    "each listener must have a different port, {} is repeated",
                    listener.port
                ),
            ));
        }
    }
    let controller_names: Vec<String> = split_list(get("controller.listener.names").unwrap_or(""))
        .map(str::to_ascii_uppercase)
        .collect();
    let protocols = protocol_map(get("listener.security.protocol.map"), &controller_names)?;
    for listener in &listeners {
        match protocols.get(&listener.name).map(String::as_str) {
            Some("PLAINTEXT") => {}
            Some(other) => {
                return Err(invalid(
                    "listener.security.protocol.map",
                    get("listener.security.protocol.map").unwrap_or(""),
                    format!(
                        "listener {} uses {other}; only PLAINTEXT listeners are supported",
                        listener.name
                    ),
                ))
            }
            None => {
                return Err(invalid(
                    "listener.security.protocol.map",
                    get("listener.security.protocol.map").unwrap_or(""),
                    format!(
                        "no security protocol defined for listener {}",
                        listener.name
                    ),
                ))
            }
        }
    }
    let inter_broker = get("inter.broker.listener.name")
        .map(|n| n.trim().to_ascii_uppercase())
        .unwrap_or_else(|| "PLAINTEXT".to_string());
    if controller_names.contains(&inter_broker) {
        return Err(invalid(
            "controller.listener.names",
            &controller_names.join(","),
            format!("must not contain inter.broker.listener.name ({inter_broker})"),
        ));
    }
    let client_listeners: Vec<&Endpoint> = listeners
        .iter()
        .filter(|l| !controller_names.contains(&l.name))
        .collect();
    if roles.broker {
        if !client_listeners.iter().any(|l| l.name == inter_broker) {
            return Err(invalid(
                "inter.broker.listener.name",
                &inter_broker,
                "must be a listener name defined in listeners",
            ));
        }
        if client_listeners.len() > 1 {
            return Err(invalid(
                "listeners",
                listeners_text,
                "one broker listener (inter.broker.listener.name) is served; more are not \
                 supported",
            ));
        }
    }

    let controller_in_listeners = listeners
        .iter()
        .find(|l| controller_names.contains(&l.name));
    if voters.is_empty() && !bootstrap_servers.is_empty() && roles.controller {
        return Err(invalid(
            "controller.quorum.bootstrap.servers",
            bootstrap_text,
            "a controller needs controller.quorum.voters (a dynamic quorum formed from \
             bootstrap servers alone is not supported)",
        ));
    }
    if roles.controller && !roles.broker && voters.is_empty() {
        return Err(invalid(
            "controller.quorum.voters",
            "",
            "must be set when process.roles is not broker,controller",
        ));
    }
    if roles.broker && !roles.controller && voters.is_empty() && bootstrap_servers.is_empty() {
        return Err(invalid(
            "controller.quorum.voters",
            "",
            "either controller.quorum.bootstrap.servers must contain the set of bootstrap \
             controllers or controller.quorum.voters must contain a parseable set of \
             controllers",
        ));
    }
    if roles.controller && !roles.broker {
        // Kafka: a controller-only node serves no broker listener.
        if let Some(other) = listeners
            .iter()
            .find(|l| !controller_names.contains(&l.name))
        {
            return Err(invalid(
                "listeners",
                listeners_text,
                format!(
                    "the listeners config must only contain KRaft controller listeners from \
                     controller.listener.names when process.roles=controller ({} is not one)",
                    other.name
                ),
            ));
        }
    }
    if roles.controller {
        if !voters.is_empty() && !voters.iter().any(|v| v.id == node_id) {
            return Err(invalid(
                "controller.quorum.voters",
                get("controller.quorum.voters").unwrap_or(""),
                format!(
                    "process.roles contains the controller role, so node.id {node_id} must be \
                     one of the voters"
                ),
            ));
        }
        if !voters.is_empty() {
            if controller_names.is_empty() {
                return Err(invalid(
                    "controller.listener.names",
                    "",
                    "must be set when process.roles contains controller",
                ));
            }
            if controller_in_listeners.is_none() {
                return Err(invalid(
                    "controller.listener.names",
                    &controller_names.join(","),
                    "must contain at least one value appearing in listeners when \
                     process.roles contains controller",
                ));
            }
        }
    } else {
        if controller_names.is_empty() {
            return Err(invalid(
                "controller.listener.names",
                "",
                "must contain at least one value when running KRaft with just the broker role",
            ));
        }
        if voters.iter().any(|v| v.id == node_id) {
            return Err(invalid(
                "controller.quorum.voters",
                get("controller.quorum.voters").unwrap_or(""),
                format!("node.id {node_id} is a voter but process.roles is just broker"),
            ));
        }
        if controller_in_listeners.is_some() {
            return Err(invalid(
                "controller.listener.names",
                &controller_names.join(","),
                "must not contain a value appearing in listeners when process.roles is just \
                 broker",
            ));
        }
    }
    let controller_bind = match (
        roles.controller && !voters.is_empty(),
        controller_in_listeners,
    ) {
        (true, Some(listener)) => Some(resolve("listeners", &listener.host, listener.port)?),
        _ => None,
    };

    // Advertised: as given, with listeners the text omits taken from `listeners` (a
    // wildcard host advertised as 127.0.0.1 would be wrong elsewhere, so it is an error).
    let mut advertised_listeners = match get("advertised.listeners") {
        Some(text) => parse_endpoints("advertised.listeners", text)?,
        None => Vec::new(),
    };
    for listener in &listeners {
        if !advertised_listeners.iter().any(|a| a.name == listener.name) {
            advertised_listeners.push(listener.clone());
        }
    }
    for advertised in &advertised_listeners {
        if !listeners.iter().any(|l| l.name == advertised.name) {
            return Err(invalid(
                "advertised.listeners",
                get("advertised.listeners").unwrap_or(""),
                format!("listener {} is not in listeners", advertised.name),
            ));
        }
        let wildcard =
            advertised.host.is_empty() || advertised.host == "0.0.0.0" || advertised.host == "::";
        let multi_node = !voters.is_empty() || !bootstrap_servers.is_empty();
        if wildcard && roles.broker && advertised.name == inter_broker && multi_node {
            return Err(invalid(
                "advertised.listeners",
                &advertised.to_string(),
                "cannot advertise a wildcard address: set advertised.listeners",
            ));
        }
    }

    let rack = get("broker.rack")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    let session: u64 = super::number(map, "broker.session.timeout.ms", 9_000)?;
    let heartbeat: u64 = super::number(map, "broker.heartbeat.interval.ms", 2_000)?;
    if heartbeat == 0 || heartbeat >= session {
        return Err(invalid(
            "broker.heartbeat.interval.ms",
            &heartbeat.to_string(),
            format!("must be > 0 and below broker.session.timeout.ms ({session})"),
        ));
    }
    let quorum_request_timeout_ms: u64 =
        super::number(map, "controller.quorum.request.timeout.ms", 2_000)?;
    let controller_socket_timeout_ms: u64 =
        super::number(map, "controller.socket.timeout.ms", 30_000)?;
    for (key, value) in [
        (
            "controller.quorum.request.timeout.ms",
            quorum_request_timeout_ms,
        ),
        ("controller.socket.timeout.ms", controller_socket_timeout_ms),
    ] {
        if value == 0 {
            return Err(invalid(key, "0", "must be > 0"));
        }
    }
    Ok(ClusterConfig {
        quorum_request_timeout_ms,
        controller_socket_timeout_ms,
        roles,
        voters,
        bootstrap_servers,
        listeners,
        advertised_listeners,
        controller_listener_names: controller_names,
        inter_broker_listener_name: inter_broker,
        controller_bind,
        rack,
        broker_session_timeout_ms: session,
        broker_heartbeat_interval_ms: heartbeat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_pairs(pairs: &[(&str, &str)], node_id: i32) -> Result<ClusterConfig, ConfigError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&map, node_id)
    }

    fn error_of(pairs: &[(&str, &str)], node_id: i32) -> String {
        parse_pairs(pairs, node_id).unwrap_err().to_string()
    }

    const THREE: &[(&str, &str)] = &[
        ("process.roles", "broker,controller"),
        (
            "controller.quorum.voters",
            "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097",
        ),
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        ),
        ("controller.listener.names", "CONTROLLER"),
        ("broker.rack", "r1"),
    ];

    #[test]
    fn embedded_default_is_one_combined_voter() {
        let c = parse_pairs(&[], 1).unwrap();
        assert_eq!(c.roles, ProcessRoles::COMBINED);
        assert!(c.voters.is_empty());
        assert!(!c.is_multi_node());
        assert_eq!(c.controller_bind, None);
        assert_eq!(
            c.advertised_broker_endpoint().unwrap().to_string(),
            "PLAINTEXT://127.0.0.1:9092"
        );
        assert_eq!(c.broker_session_timeout_ms, 9_000);
        assert_eq!(c.broker_heartbeat_interval_ms, 2_000);
        assert_eq!(c.rack, None);
    }

    #[test]
    fn three_voter_combined_node() {
        let c = parse_pairs(THREE, 1).unwrap();
        assert!(c.is_multi_node());
        assert_eq!(c.voters.len(), 3);
        assert_eq!(c.voters[1].address(), "127.0.0.1:9095");
        assert_eq!(c.controller_bind, Some("127.0.0.1:9093".parse().unwrap()));
        assert_eq!(c.rack.as_deref(), Some("r1"));
        assert_eq!(c.inter_broker_listener_name, "PLAINTEXT");
        // Advertised completed from listeners.
        assert_eq!(c.advertised_listeners.len(), 2);
    }

    #[test]
    fn advertised_listeners_override_listeners() {
        let mut pairs = THREE.to_vec();
        pairs.push(("advertised.listeners", "PLAINTEXT://node1.example:19092"));
        let c = parse_pairs(&pairs, 2).unwrap();
        let e = c.advertised_broker_endpoint().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("node1.example", 19092));
    }

    #[test]
    fn controller_must_be_a_voter() {
        assert!(error_of(THREE, 4).contains("must be one of the voters"));
    }

    #[test]
    fn controller_listener_must_be_in_listeners() {
        let mut pairs = THREE.to_vec();
        pairs[2] = ("listeners", "PLAINTEXT://127.0.0.1:9092");
        assert!(error_of(&pairs, 1).contains("appearing in listeners"));
        let mut pairs = THREE.to_vec();
        pairs[3] = ("controller.listener.names", "");
        // Without the name, CONTROLLER is just a listener with no security protocol.
        assert!(error_of(&pairs, 1).contains("listener CONTROLLER"));
    }

    #[test]
    fn broker_only_rules() {
        let mut pairs = THREE.to_vec();
        pairs[0] = ("process.roles", "broker");
        // A broker must not be a voter, nor listen on the controller listener.
        assert!(error_of(&pairs, 1).contains("just broker"));
        assert!(error_of(&pairs, 4).contains("must not contain a value appearing"));
        pairs[2] = ("listeners", "PLAINTEXT://127.0.0.1:9094");
        let c = parse_pairs(&pairs, 4).unwrap();
        assert!(c.roles.broker && !c.roles.controller);
        assert_eq!(c.controller_bind, None);
    }

    #[test]
    fn controller_only_rules() {
        let mut pairs = THREE.to_vec();
        pairs[0] = ("process.roles", "controller");
        // Kafka: no broker listener on a controller-only node.
        assert!(error_of(&pairs, 1).contains("must only contain KRaft controller listeners"));
        pairs[2] = ("listeners", "CONTROLLER://127.0.0.1:9093");
        let c = parse_pairs(&pairs, 1).unwrap();
        assert!(c.roles.controller && !c.roles.broker);
        assert_eq!(c.controller_bind, Some("127.0.0.1:9093".parse().unwrap()));
        assert!(error_of(&pairs, 4).contains("must be one of the voters"));
    }

    #[test]
    fn broker_only_finds_the_quorum_through_voters_or_bootstrap_servers() {
        let base = [
            ("process.roles", "broker"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            ("controller.listener.names", "CONTROLLER"),
        ];
        assert!(error_of(&base, 4).contains("controller.quorum.bootstrap.servers must contain"));
        let mut pairs = base.to_vec();
        pairs.push((
            "controller.quorum.bootstrap.servers",
            "127.0.0.1:9093,h2:9095",
        ));
        let c = parse_pairs(&pairs, 4).unwrap();
        assert!(c.is_multi_node());
        assert_eq!(c.quorum_contacts(), ["127.0.0.1:9093", "h2:9095"]);
        pairs.push(("controller.quorum.voters", "1@v1:9093"));
        assert_eq!(
            parse_pairs(&pairs, 4).unwrap().quorum_contacts(),
            ["v1:9093"]
        );
        let mut pairs = base.to_vec();
        pairs[2] = ("controller.listener.names", "");
        pairs.push(("controller.quorum.voters", "1@v1:9093"));
        assert!(error_of(&pairs, 4).contains("must contain at least one value"));
    }

    #[test]
    fn roles_are_checked() {
        assert!(error_of(&[("process.roles", "broker,broker")], 1).contains("twice"));
        assert!(error_of(&[("process.roles", "worker")], 1).contains("unknown process role"));
        assert!(error_of(&[("process.roles", "")], 1).contains("no role"));
        // Not combined: voters are needed.
        assert!(error_of(&[("process.roles", "controller")], 1).contains("voters"));
    }

    #[test]
    fn only_plaintext_listeners() {
        let mut pairs = THREE.to_vec();
        pairs.push((
            "listener.security.protocol.map",
            "PLAINTEXT:SSL,CONTROLLER:PLAINTEXT",
        ));
        assert!(error_of(&pairs, 1).contains("only PLAINTEXT"));
        let mut pairs = THREE.to_vec();
        pairs.push(("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT"));
        assert!(
            error_of(&pairs, 1).contains("no security protocol defined for listener CONTROLLER")
        );
        assert!(error_of(&[("listeners", "SSL://h:1")], 1).contains("only PLAINTEXT"));
        assert!(error_of(&[("listeners", "OTHER://h:1")], 1).contains("no security protocol"));
    }

    #[test]
    fn malformed_values_name_the_key() {
        assert!(error_of(&[("controller.quorum.voters", "1@x")], 1)
            .contains("controller.quorum.voters"));
        assert!(error_of(&[("controller.quorum.voters", "a@x:1")], 1).contains("bad voter id"));
        assert!(error_of(&[("controller.quorum.voters", "1@x:1,1@y:2")], 1).contains("twice"));
        assert!(
            error_of(&[("listeners", "PLAINTEXT://h:1,PLAINTEXT://h:2")], 1).contains("repeated")
        );
        assert!(error_of(&[("listeners", "A://h:1,PLAINTEXT://h:1")], 1).contains("different port"));
        assert!(error_of(&[("broker.heartbeat.interval.ms", "9000")], 1).contains("below"));
        let mut pairs = THREE.to_vec();
        pairs.push(("inter.broker.listener.name", "CONTROLLER"));
        assert!(error_of(&pairs, 1).contains("must not contain inter.broker.listener.name"));
        let mut pairs = THREE.to_vec();
        pairs[2] = (
            "listeners",
            "PLAINTEXT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093",
        );
        assert!(error_of(&pairs, 1).contains("wildcard"));
    }

    #[test]
    fn bootstrap_servers_alone_do_not_form_a_quorum() {
        let pairs = [
            ("controller.quorum.bootstrap.servers", "127.0.0.1:9093"),
            ("controller.listener.names", "CONTROLLER"),
        ];
        assert!(error_of(&pairs, 1).contains("dynamic quorum"));
        let mut pairs = THREE.to_vec();
        pairs.push(("controller.quorum.bootstrap.servers", "127.0.0.1:9093,h:1"));
        assert_eq!(parse_pairs(&pairs, 1).unwrap().bootstrap_servers.len(), 2);
    }
}
