//! Live configuration with Apache Kafka 4.4.0's `kafka-configs` tool (ConfigCommand, which
//! alters through IncrementalAlterConfigs and describes with synonyms), kafka-python's
//! admin client (APPEND/SUBTRACT on cleanup.policy) and raw AlterConfigs requests (the
//! legacy replace-all API and Kafka's per-resource error codes): sources and synonyms,
//! a change that takes effect on a running partition, and changes that survive a restart.
//! `kafka_configs_describe_matches_kafka` compares the tool's output with Kafka's.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, FindCoordinatorRequest,
    FindCoordinatorResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use millrace_compat_tests::wire::{api_versions_probe, Connection};
use millrace_compat_tests::{
    kafka_tool, millrace_bin, python, unique_topic, wait_until, BrokerOpts, Target, TestBroker,
};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";

fn create_topic(b: &str, topic: &str) {
    kafka_tool(
        TOPICS,
        &[
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        None,
    )
    .assert_success();
}

/// `kafka-configs --bootstrap-server b <args>`, which must succeed.
fn configs(b: &str, args: &[&str]) -> String {
    let mut all = vec!["--bootstrap-server", b];
    all.extend_from_slice(args);
    let out = kafka_tool(CONFIGS, &all, None);
    out.assert_success();
    out.stdout
}

/// The described entries of `kafka-configs --describe` output: name -> the rest of the
/// line (`value sensitive=false synonyms={SOURCE:name=value, ...}`).
fn entries(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .filter_map(|entry| {
            let (name, rest) = entry.split_once('=')?;
            Some((name.to_string(), rest.to_string()))
        })
        .collect()
}

fn describe(b: &str, entity_type: &str, entity: &[&str], all: bool) -> BTreeMap<String, String> {
    let mut args = vec!["--describe", "--entity-type", entity_type];
    args.extend_from_slice(entity);
    if all {
        args.push("--all");
    }
    entries(&configs(b, &args))
}

/// Produces one record of `size` bytes; the broker's error code if it is refused.
fn produce(b: &str, topic: &str, size: usize) -> Result<(), RDKafkaErrorCode> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let payload = vec![b'x'; size];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sent = runtime.block_on(producer.send(
        FutureRecord::<(), [u8]>::to(topic).payload(&payload),
        Duration::from_secs(30),
    ));
    match sent {
        Ok(_) => Ok(()),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((other, _)) => panic!("produce failed: {other}"),
    }
}

#[test]
fn kafka_configs_alter_describe_and_restart() {
    let mut broker = TestBroker::start_millrace(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("cfg");
    create_topic(&b, &topic);
    let entity = ["--entity-name", topic.as_str()];
    let alter_topic = |args: &[&str]| {
        let mut all = vec![
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
        ];
        all.extend_from_slice(args);
        configs(&b, &all)
    };

    // A 1500-byte record fits the default max.message.bytes.
    assert_eq!(produce(&b, &topic, 1500), Ok(()));
    let out = alter_topic(&[
        "--add-config",
        "retention.ms=3600000,max.message.bytes=1000",
    ]);
    assert!(out.contains("Completed updating config"), "{out}");
    let dynamic = describe(&b, "topics", &entity, false);
    assert_eq!(
        dynamic,
        BTreeMap::from([
            (
                "max.message.bytes".to_string(),
                "1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:max.message.bytes=1000, \
                 DEFAULT_CONFIG:message.max.bytes=1048588}"
                    .to_string()
            ),
            (
                "retention.ms".to_string(),
                "3600000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000}"
                    .to_string()
            ),
        ])
    );
    // Live: the running partition now refuses what it accepted before, no restart.
    assert_eq!(
        produce(&b, &topic, 1500),
        Err(RDKafkaErrorCode::MessageSizeTooLarge)
    );

    alter_topic(&["--delete-config", "retention.ms"]);
    let dynamic = describe(&b, "topics", &entity, false);
    assert_eq!(
        dynamic.keys().collect::<Vec<_>>(),
        vec!["max.message.bytes"]
    );

    // The cluster-wide default reaches a topic without an override.
    configs(
        &b,
        &[
            "--alter",
            "--entity-type",
            "brokers",
            "--entity-default",
            "--add-config",
            "log.retention.ms=7200000",
        ],
    );
    let all = describe(&b, "topics", &entity, true);
    assert_eq!(
        all["retention.ms"],
        "7200000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000, \
         DEFAULT_CONFIG:log.retention.hours=168}"
    );
    let default = describe(&b, "brokers", &["--entity-default"], false);
    assert_eq!(
        default,
        BTreeMap::from([(
            "log.retention.ms".to_string(),
            "7200000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000}"
                .to_string()
        )])
    );

    // This broker's own dynamic config wins over the cluster default.
    configs(
        &b,
        &[
            "--alter",
            "--entity-type",
            "brokers",
            "--entity-name",
            "1",
            "--add-config",
            "log.retention.ms=10800000",
        ],
    );
    let expected_retention = "10800000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=10800000, \
         DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000, DEFAULT_CONFIG:log.retention.hours=168}";
    assert_eq!(
        describe(&b, "topics", &entity, true)["retention.ms"],
        expected_retention
    );
    let node = describe(&b, "brokers", &["--entity-name", "1"], false);
    assert_eq!(node.keys().collect::<Vec<_>>(), vec!["log.retention.ms"]);

    // A read-only broker config is refused as Kafka refuses it.
    let out = kafka_tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            &b,
            "--alter",
            "--entity-type",
            "brokers",
            "--entity-name",
            "1",
            "--add-config",
            "num.partitions=3",
        ],
        None,
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr
            .contains("Cannot update these configs dynamically: [num.partitions]"),
        "{}",
        out.describe()
    );

    // Everything above is metadata: a restart keeps it, and the partition reopens with it.
    broker.restart();
    let b = broker.bootstrap();
    assert_eq!(
        describe(&b, "topics", &entity, true)["retention.ms"],
        expected_retention
    );
    assert_eq!(
        describe(&b, "topics", &entity, false)["max.message.bytes"],
        dynamic["max.message.bytes"]
    );
    assert_eq!(
        produce(&b, &topic, 1500),
        Err(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    assert_eq!(produce(&b, &topic, 500), Ok(()));
}

#[test]
fn append_and_subtract_cleanup_policy_with_the_admin_api() {
    let broker = TestBroker::start(BrokerOpts::default());
    let topic = unique_topic("cfg-list");
    let out = python("incremental_configs.py", &[&broker.bootstrap(), &topic]);
    assert!(
        out.status.success(),
        "kafka-python script failed: {}\n{}",
        out.describe(),
        broker.log_tail()
    );
    let line = out.stdout.lines().last().expect("summary line");
    let summary: serde_json::Value = serde_json::from_str(line).expect("JSON summary");
    let default_retention = serde_json::json!(["604800000", "DEFAULT_CONFIG"]);
    let policy = |value: &str| serde_json::json!([value, "DYNAMIC_TOPIC_CONFIG"]);
    assert_eq!(
        summary,
        serde_json::json!({
            "append": "OK",
            "after_append": {"cleanup.policy": policy("delete,compact"), "retention.ms": default_retention},
            "append_again": "OK",
            "after_append_again": {"cleanup.policy": policy("delete,compact"), "retention.ms": default_retention},
            "subtract": "OK",
            "after_subtract": {"cleanup.policy": policy("compact"), "retention.ms": default_retention},
            "validate_only": "OK",
            "append_not_list": "[Error 40] InvalidConfigurationError",
            "at_end": {"cleanup.policy": policy("compact"), "retention.ms": default_retention},
        })
    );
}

/// One AlterConfigs resource: (resource type, name, configs).
type LegacyResource<'a> = (i8, &'a str, &'a [(&'a str, &'a str)]);

fn legacy_alter(
    conn: &mut Connection,
    resources: &[LegacyResource<'_>],
    validate_only: bool,
) -> Vec<(i16, String)> {
    let request = AlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(
            resources
                .iter()
                .map(|(kind, name, configs)| {
                    AlterConfigsResource::default()
                        .with_resource_type(*kind)
                        .with_resource_name(StrBytes::from_string(name.to_string()))
                        .with_configs(
                            configs
                                .iter()
                                .map(|(k, v)| {
                                    AlterableConfig::default()
                                        .with_name(StrBytes::from_string(k.to_string()))
                                        .with_value(Some(StrBytes::from_string(v.to_string())))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let response: AlterConfigsResponse = conn.call(ApiKey::AlterConfigs, &request, 2);
    response
        .responses
        .into_iter()
        .map(|r| {
            (
                r.error_code,
                r.error_message.map(|m| m.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn legacy_alter_configs_replaces_and_answers_kafkas_error_codes() {
    let broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("cfg-legacy");
    create_topic(&b, &topic);
    let mut conn = Connection::connect(&b, Duration::from_secs(30));
    const TOPIC: i8 = 2;
    const BROKER: i8 = 4;
    let ok = |results: Vec<(i16, String)>| {
        assert!(results.iter().all(|(code, _)| *code == 0), "{results:?}");
    };
    ok(legacy_alter(
        &mut conn,
        &[(
            TOPIC,
            &topic,
            &[("retention.ms", "1000"), ("segment.ms", "60000")],
        )],
        false,
    ));
    // Legacy AlterConfigs replaces the whole set: segment.ms goes.
    ok(legacy_alter(
        &mut conn,
        &[(TOPIC, &topic, &[("retention.ms", "2000")])],
        false,
    ));
    // validate_only changes nothing.
    ok(legacy_alter(
        &mut conn,
        &[(TOPIC, &topic, &[("flush.ms", "5")])],
        true,
    ));
    // Kafka's brokers apply a committed change asynchronously.
    wait_until(
        "the replaced set to be described",
        Duration::from_secs(30),
        || {
            let dynamic = describe(&b, "topics", &["--entity-name", &topic], false);
            let keys: Vec<&String> = dynamic.keys().collect();
            if keys == ["retention.ms"] && dynamic["retention.ms"].starts_with("2000 ") {
                Ok(())
            } else {
                Err(format!("{dynamic:?}"))
            }
        },
    );

    // Kafka 4.4.0's codes and messages, one resource per request.
    let cases: [(LegacyResource<'_>, i16, &str); 9] = [
        (
            (TOPIC, "no-such-topic", &[("retention.ms", "1")]),
            3,
            "The topic 'no-such-topic' does not exist.",
        ),
        (
            (TOPIC, &topic, &[("retention.ms", "soon")]),
            40,
            "Invalid value soon for configuration retention.ms",
        ),
        (
            (TOPIC, &topic, &[("no.such.config", "1")]),
            40,
            "Unknown topic config name: no.such.config",
        ),
        (
            (BROKER, "7", &[("log.retention.ms", "1")]),
            42,
            "Unexpected broker id, expected 1, but received 7",
        ),
        (
            (BROKER, "x", &[("log.retention.ms", "1")]),
            42,
            "Node id must be an integer, but it is: x",
        ),
        (
            (BROKER, "1", &[("log.dirs", "/tmp")]),
            42,
            "Cannot update these configs dynamically: [log.dirs]",
        ),
        // Kafka answers an invalid broker value with INVALID_REQUEST too (KAFKA-13609).
        (
            (BROKER, "", &[("log.segment.bytes", "10")]),
            42,
            "Invalid value 10 for configuration log.segment.bytes",
        ),
        (
            (TOPIC, "", &[("retention.ms", "1")]),
            42,
            "Default topic resources are not allowed.",
        ),
        ((1, "any", &[]), 42, "Unknown resource type 1"),
    ];
    for (resource, code, message) in cases {
        let results = legacy_alter(&mut conn, &[resource], false);
        assert_eq!(results[0].0, code, "{resource:?}: {results:?}");
        assert!(
            results[0].1.starts_with(message),
            "{resource:?}: {results:?}"
        );
    }
    let results = legacy_alter(
        &mut conn,
        &[(
            TOPIC,
            &topic,
            &[("retention.ms", "5"), ("retention.ms", "6")],
        )],
        false,
    );
    assert_eq!(
        results,
        vec![(42, "Error due to duplicate config keys".to_string())]
    );
    // A resource named twice: INVALID_REQUEST for both, as Kafka's ConfigAdminManager
    // means to answer (Kafka 4.4.0 sends no answer at all to such a request).
    if broker.target() == Target::Millrace {
        let results = legacy_alter(
            &mut conn,
            &[
                (TOPIC, &topic, &[("retention.ms", "5")]),
                (TOPIC, &topic, &[("retention.ms", "6")]),
            ],
            false,
        );
        let expected = (42, "Each resource must appear at most once.".to_string());
        assert_eq!(results, vec![expected.clone(), expected]);
    }
    // Refused changes left the topic as it was.
    let dynamic = describe(&b, "topics", &["--entity-name", &topic], false);
    assert_eq!(dynamic.keys().collect::<Vec<_>>(), vec!["retention.ms"]);
}

/// IncrementalAlterConfigs of one key of one resource: SET with a value, else DELETE;
/// the resource's (error code, message).
fn incremental_set(
    conn: &mut Connection,
    resource: (i8, &str),
    key: &str,
    value: Option<&str>,
) -> (i16, String) {
    let config = incremental::AlterableConfig::default()
        .with_name(StrBytes::from_string(key.to_string()))
        .with_config_operation(if value.is_some() { 0 } else { 1 })
        .with_value(value.map(|v| StrBytes::from_string(v.to_string())));
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental::AlterConfigsResource::default()
            .with_resource_type(resource.0)
            .with_resource_name(StrBytes::from_string(resource.1.to_string()))
            .with_configs(vec![config]),
    ]);
    let response: IncrementalAlterConfigsResponse =
        conn.call(ApiKey::IncrementalAlterConfigs, &request, 1);
    let result = &response.responses[0];
    let message = result.error_message.as_ref().map(|m| m.to_string());
    (result.error_code, message.unwrap_or_default())
}

/// The same on this broker (`1`), which must accept it.
fn set_broker_config(conn: &mut Connection, key: &str, value: Option<&str>) {
    let result = incremental_set(conn, (4, "1"), key, value);
    assert_eq!(result.0, 0, "{key}: {result:?}");
}

/// Millrace keeps `__consumer_offsets` compacted (Kafka would let it be changed to
/// `delete`, and its retention would then drop committed offsets); other changes to it
/// are accepted.
#[test]
fn the_offsets_topic_stays_compacted() {
    let broker = TestBroker::start_millrace(BrokerOpts::default());
    let b = broker.bootstrap();
    let mut conn = Connection::connect(&b, Duration::from_secs(30));
    // FindCoordinator creates __consumer_offsets.
    wait_until(
        "__consumer_offsets to exist",
        Duration::from_secs(30),
        || {
            let found: FindCoordinatorResponse = conn.call(
                ApiKey::FindCoordinator,
                &FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec![StrBytes::from_static_str("g")]),
                4,
            );
            match found.coordinators[0].error_code {
                0 => Ok(()),
                code => Err(format!("FindCoordinator error {code}")),
            }
        },
    );
    let offsets = (2, "__consumer_offsets");
    let refused = incremental_set(&mut conn, offsets, "cleanup.policy", Some("delete"));
    assert_eq!(refused.0, 40, "INVALID_CONFIG: {refused:?}");
    let refused = incremental_set(&mut conn, offsets, "cleanup.policy", None);
    assert_eq!(refused.0, 40, "INVALID_CONFIG: {refused:?}");
    let accepted = incremental_set(&mut conn, offsets, "segment.ms", Some("3600000"));
    assert_eq!(accepted.0, 0, "{accepted:?}");
    let dynamic = describe(
        &b,
        "topics",
        &["--entity-name", "__consumer_offsets"],
        false,
    );
    assert!(
        dynamic["cleanup.policy"].starts_with("compact "),
        "{dynamic:?}"
    );
    assert!(dynamic["segment.ms"].starts_with("3600000 "), "{dynamic:?}");
}

#[test]
fn dynamic_connection_quota_applies_to_new_connections() {
    let broker = TestBroker::start(BrokerOpts::default());
    let b = broker.bootstrap();
    let mut admin = Connection::connect(&b, Duration::from_secs(30));
    let timeout = Duration::from_secs(10);
    assert!(api_versions_probe(&b, timeout).is_ok());
    // One connection (the admin's) is open: with a bound of 1 a new one is closed.
    set_broker_config(&mut admin, "max.connections.per.ip", Some("1"));
    wait_until(
        "a second connection to be refused",
        Duration::from_secs(30),
        || match api_versions_probe(&b, timeout) {
            Ok(_) => Err("a second connection was served".to_string()),
            Err(_) => Ok(()),
        },
    );
    // The open connection keeps working, and removing the bound lets new ones in.
    set_broker_config(&mut admin, "max.connections.per.ip", None);
    wait_until(
        "a new connection to be served",
        Duration::from_secs(30),
        || api_versions_probe(&b, timeout),
    );
}

/// The alter/describe sequence both brokers go through; per step the entries of the
/// configs Millrace supports (Kafka describes many more).
fn scenario(broker: &TestBroker) -> Vec<(&'static str, BTreeMap<String, String>)> {
    // Not min.insync.replicas: Kafka's storage format writes it as a cluster default.
    const SUPPORTED: &[&str] = &[
        "cleanup.policy",
        "compression.type",
        "flush.messages",
        "flush.ms",
        "index.interval.bytes",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.type",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.ms",
        "log.retention.ms",
        "log.segment.bytes",
        "message.max.bytes",
        "log.cleanup.policy",
    ];
    let b = broker.bootstrap();
    let topic = "configs-diff";
    create_topic(&b, topic);
    let entity = ["--entity-name", topic];
    let supported = |entries: BTreeMap<String, String>| -> BTreeMap<String, String> {
        entries
            .into_iter()
            .filter(|(name, _)| SUPPORTED.contains(&name.as_str()))
            .collect()
    };
    let mut steps = Vec::new();
    let alter = |args: &[&str]| {
        let mut all = vec!["--alter"];
        all.extend_from_slice(args);
        configs(&b, &all)
    };
    alter(&[
        "--entity-type",
        "topics",
        "--entity-name",
        topic,
        "--add-config",
        "retention.ms=3600000,max.message.bytes=2000,cleanup.policy=[compact,delete],segment.bytes=2097152",
    ]);
    steps.push((
        "topic dynamic",
        supported(describe(&b, "topics", &entity, false)),
    ));
    alter(&[
        "--entity-type",
        "brokers",
        "--entity-default",
        "--add-config",
        "log.retention.ms=7200000,message.max.bytes=3000",
    ]);
    alter(&[
        "--entity-type",
        "brokers",
        "--entity-name",
        "1",
        "--add-config",
        "log.segment.bytes=4194304",
    ]);
    alter(&[
        "--entity-type",
        "topics",
        "--entity-name",
        topic,
        "--delete-config",
        "retention.ms,segment.bytes",
    ]);
    steps.push((
        "topic all",
        supported(describe(&b, "topics", &entity, true)),
    ));
    steps.push((
        "broker default",
        supported(describe(&b, "brokers", &["--entity-default"], false)),
    ));
    steps.push((
        "broker 1",
        supported(describe(&b, "brokers", &["--entity-name", "1"], false)),
    ));
    steps
}

#[test]
fn kafka_configs_describe_matches_kafka() {
    eprintln!("kafka_configs_describe_matches_kafka runs Apache Kafka AND millrace");
    millrace_bin();
    let kafka = TestBroker::start_kafka(BrokerOpts::default());
    let reference = scenario(&kafka);
    drop(kafka);
    let millrace = TestBroker::start_millrace(BrokerOpts::default());
    let got = scenario(&millrace);
    assert_eq!(got, reference, "millrace (left) differs from Kafka (right)");
}
