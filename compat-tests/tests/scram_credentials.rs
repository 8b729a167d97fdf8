//! SASL/SCRAM credential management (AlterUserScramCredentials, DescribeUserScramCredentials)
//! with Apache Kafka 4.4.0's `kafka-configs` tool (which salts and hashes the password
//! client-side) and raw requests for Kafka's per-user error codes; the same scenario runs
//! on a real Kafka broker and the normalised outcomes must match. Credentials are metadata:
//! they survive a restart.
//!
//! `kafka-configs --describe --entity-type users` also lists client quotas
//! (DescribeClientQuotas), so describing goes through raw requests here.

use std::time::Duration;

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use millrace_compat_tests::wire::Connection;
use millrace_compat_tests::{kafka_tool, millrace_bin, BrokerOpts, TestBroker};

const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";

/// `kafka-configs --alter --entity-type users --entity-name <user> <args>`: whether it
/// succeeded and its stdout, or the exception line it failed with.
fn alter_user(b: &str, user: &str, args: &[&str]) -> String {
    let mut all = vec![
        "--bootstrap-server",
        b,
        "--alter",
        "--entity-type",
        "users",
        "--entity-name",
        user,
    ];
    all.extend_from_slice(args);
    let out = kafka_tool(CONFIGS, &all, None);
    if out.status.success() {
        return out.stdout.trim().to_string();
    }
    // The tool prints the cause of the failed future; keep that line only.
    out.stderr
        .lines()
        .chain(out.stdout.lines())
        .find(|line| line.contains("Exception"))
        .map(|line| format!("failed: {}", line.trim()))
        .unwrap_or_else(|| panic!("no exception in {}", out.describe()))
}

/// DescribeUserScramCredentials of `users` (None: every user), normalised: one line per
/// user in name order, `user code message [mechanism:iterations ...]`.
fn describe(b: &str, users: Option<&[&str]>) -> Vec<String> {
    let mut conn = Connection::connect(b, Duration::from_secs(30));
    let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|names| {
        names
            .iter()
            .map(|n| UserName::default().with_name(StrBytes::from_string(n.to_string())))
            .collect()
    }));
    let response: DescribeUserScramCredentialsResponse =
        conn.call(ApiKey::DescribeUserScramCredentials, &request, 0);
    assert_eq!(response.error_code, 0, "{response:?}");
    let mut lines: Vec<String> = response
        .results
        .iter()
        .map(|r| {
            let mut infos: Vec<String> = r
                .credential_infos
                .iter()
                .map(|i| format!("{}:{}", i.mechanism, i.iterations))
                .collect();
            infos.sort();
            format!(
                "{} {} {} {:?}",
                r.user.as_str(),
                r.error_code,
                r.error_message.as_ref().map_or("-", |m| m.as_str()),
                infos
            )
        })
        .collect();
    lines.sort();
    lines
}

fn upsertion(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(vec![1u8; 16].into())
        .with_salted_password(vec![2u8; 32].into())
}

fn deletion(name: &str, mechanism: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_mechanism(mechanism)
}

/// A raw AlterUserScramCredentials, normalised: `user code message` lines in name order.
fn alter_raw(
    b: &str,
    deletions: Vec<ScramCredentialDeletion>,
    upsertions: Vec<ScramCredentialUpsertion>,
) -> Vec<String> {
    let mut conn = Connection::connect(b, Duration::from_secs(30));
    let request = AlterUserScramCredentialsRequest::default()
        .with_deletions(deletions)
        .with_upsertions(upsertions);
    let response: AlterUserScramCredentialsResponse =
        conn.call(ApiKey::AlterUserScramCredentials, &request, 0);
    let mut lines: Vec<String> = response
        .results
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r.user.as_str(),
                r.error_code,
                r.error_message.as_ref().map_or("-", |m| m.as_str())
            )
        })
        .collect();
    lines.sort();
    lines
}

/// Every step's normalised outcome, in order.
fn scenario(broker: &TestBroker) -> Vec<(&'static str, Vec<String>)> {
    let b = broker.bootstrap();
    let mut steps = Vec::new();
    let added = alter_user(
        &b,
        "alice",
        &[
            "--add-config",
            "SCRAM-SHA-256=[iterations=8192,password=alice-secret],SCRAM-SHA-512=[password=alice-secret]",
        ],
    );
    // Kafka refuses two mechanisms of one user in one request (DUPLICATE_RESOURCE: the
    // controller keys alterations by user), so the tool sets them one at a time.
    steps.push(("add both at once", vec![added]));
    let sha256 = alter_user(
        &b,
        "alice",
        &[
            "--add-config",
            "SCRAM-SHA-256=[iterations=8192,password=alice-secret]",
        ],
    );
    let sha512 = alter_user(
        &b,
        "alice",
        &["--add-config", "SCRAM-SHA-512=[password=alice-secret]"],
    );
    steps.push(("add one by one", vec![sha256, sha512]));
    steps.push(("describe alice", describe(&b, Some(&["alice"]))));
    let bob = alter_user(
        &b,
        "bob",
        &[
            "--add-config",
            "SCRAM-SHA-512=[iterations=16384,password=b]",
        ],
    );
    steps.push(("add bob", vec![bob]));
    steps.push(("describe all", describe(&b, None)));
    let deleted = alter_user(&b, "alice", &["--delete-config", "SCRAM-SHA-512"]);
    steps.push(("delete 512", vec![deleted]));
    steps.push(("describe after delete", describe(&b, Some(&[]))));
    let again = alter_user(&b, "alice", &["--delete-config", "SCRAM-SHA-512"]);
    steps.push(("delete missing", vec![again]));
    steps.push((
        "describe unknown and twice",
        describe(&b, Some(&["alice", "nobody", "bob", "bob"])),
    ));
    steps.push((
        "raw refusals",
        alter_raw(
            &b,
            vec![
                deletion("carol", 1),
                deletion("dave", 0),
                deletion("erin", 1),
            ],
            vec![
                upsertion("few", 1, 4095),
                upsertion("many", 2, 16385),
                upsertion("", 1, 8192),
                upsertion("unknown", 3, 8192),
                upsertion("erin", 1, 8192),
                upsertion("twice", 1, 8192),
                upsertion("twice", 2, 8192),
                upsertion("edge", 2, 4096),
            ],
        ),
    ));
    steps.push(("describe after refusals", describe(&b, None)));
    steps
}

#[test]
fn scram_credentials_match_kafka_and_survive_restart() {
    eprintln!("scram_credentials_match_kafka_and_survive_restart runs Apache Kafka AND millrace");
    millrace_bin();
    let kafka = TestBroker::start_kafka(BrokerOpts::default());
    let reference = scenario(&kafka);
    drop(kafka);
    let mut millrace = TestBroker::start_millrace(BrokerOpts::default());
    let got = scenario(&millrace);
    assert_eq!(got, reference, "millrace (left) differs from Kafka (right)");

    // What the tools saw, spelled out (the comparison alone would pass if both broke).
    let step = |name: &str| &got.iter().find(|(n, _)| *n == name).unwrap().1;
    assert!(
        step("add both at once")[0].contains("DuplicateResourceException"),
        "{:?}",
        step("add both at once")
    );
    assert_eq!(
        step("add one by one"),
        &["Completed updating config for user alice."; 2]
    );
    // Describe results carry an empty (not null) message, as Kafka's do.
    assert_eq!(
        step("describe alice"),
        &["alice 0  [\"1:8192\", \"2:4096\"]"]
    );
    assert!(
        step("delete missing")[0].contains("ResourceNotFoundException"),
        "{:?}",
        step("delete missing")
    );
    let before = describe(&millrace.bootstrap(), None);
    assert_eq!(
        before,
        [
            "alice 0  [\"1:8192\"]",
            "bob 0  [\"2:16384\"]",
            "edge 0  [\"2:4096\"]",
        ]
    );

    millrace.restart();
    assert_eq!(describe(&millrace.bootstrap(), None), before);
}
