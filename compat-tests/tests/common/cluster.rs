//! Helpers of the multi-node tests (replication, leader election, reassignment, quorum
//! membership): what Metadata says about partitions, brokers and the controller, the
//! tests' record pattern, and the partition logs on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use millrace_compat_tests::wire::{decode_response, encode_request, round_trip};
use millrace_compat_tests::{kafka_tool, TestCluster};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, ThreadedProducer};

/// One partition as a broker's Metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: i32,
    /// In assignment order: the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// Sorted.
    pub isr: Vec<i32>,
}

impl PartitionView {
    pub fn preferred_leads(&self) -> bool {
        self.replicas.first() == Some(&self.leader)
    }
}

/// Each partition of `topic` in order, as `bootstrap` answers Metadata (rdkafka).
pub fn partition_views(bootstrap: &str, topic: &str) -> Result<Vec<PartitionView>, String> {
    let consumer = super::consumer(bootstrap);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or("topic absent")?;
    let mut partitions: Vec<_> = topic.partitions().iter().collect();
    partitions.sort_by_key(|p| p.id());
    Ok(partitions
        .iter()
        .map(|p| {
            let mut isr = p.isr().to_vec();
            isr.sort_unstable();
            PartitionView {
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr,
            }
        })
        .collect())
}

/// Each partition's leader of `topic`, in partition order.
pub fn leaders(bootstrap: &str, topic: &str) -> Result<Vec<i32>, String> {
    Ok(partition_views(bootstrap, topic)?
        .into_iter()
        .map(|p| p.leader)
        .collect())
}

/// What one node's raw Metadata (v12) answer says: unfenced broker ids, the controller
/// id it names, and the partition leaders of `topic` (empty when it does not know it).
pub struct MetadataView {
    pub brokers: BTreeSet<i32>,
    pub controller: i32,
    pub leaders: Vec<i32>,
}

pub fn metadata_view(addr: &str, topic: Option<&str>) -> Result<MetadataView, String> {
    const VERSION: i16 = 12;
    let topics = topic.map(|t| {
        vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(t.to_string())))),
        ]
    });
    let request = MetadataRequest::default()
        .with_topics(Some(topics.unwrap_or_default()))
        .with_allow_auto_topic_creation(false);
    let payload = round_trip(
        addr,
        &encode_request(ApiKey::Metadata, &request, VERSION, 2),
        Duration::from_secs(5),
    )
    .map_err(|e| format!("Metadata to {addr}: {e}"))?;
    let (_, response) = decode_response::<MetadataResponse>(ApiKey::Metadata, &payload, VERSION)?;
    Ok(MetadataView {
        brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
        controller: response.controller_id.0,
        leaders: response
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .flat_map(|t| t.partitions.iter().map(|p| p.leader_id.0))
            .collect(),
    })
}

/// The controller node `addr` names in Metadata (in combined mode, the quorum leader).
pub fn controller_of(addr: &str) -> Result<i32, String> {
    Ok(metadata_view(addr, None)?.controller)
}

/// `kafka-topics --create` through `bootstrap`; asserts it reports the topic created.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: &str, rf: &str) {
    let out = kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            partitions,
            "--replication-factor",
            rf,
        ],
        None,
    );
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("Created topic {topic}.")),
        "{}",
        out.describe()
    );
}

/// Sends record `id` of the tests' pattern: key `k<id>`, value `v<id>`, opaque `id`.
pub fn send_record(producer: &ThreadedProducer<super::Recorder>, topic: &str, id: usize) {
    let key = format!("k{id}");
    let value = format!("v{id}");
    super::send(
        producer,
        BaseRecord::with_opaque_to(topic, id)
            .key(key.as_bytes())
            .payload(value.as_bytes()),
    );
}

/// Reads `topic` from `bootstrap` and checks that every acknowledged record (`v<id>`) is
/// there exactly once, at the offset it was acknowledged with, and that `records` were
/// read in all.
pub fn assert_read_once(
    bootstrap: &str,
    topic: &str,
    deliveries: &[super::Delivery],
    records: usize,
) {
    let acknowledged = super::delivered_positions(deliveries);
    let mut read: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let mut values = BTreeSet::new();
    for message in super::consume_all(bootstrap, topic).into_iter().flatten() {
        let value = String::from_utf8(message.value.expect("value")).expect("utf-8");
        assert!(values.insert(value.clone()), "{value} read twice");
        read.insert((message.partition, message.offset), value);
    }
    for (id, position) in &acknowledged {
        assert_eq!(
            read.get(position),
            Some(&format!("v{id}")),
            "record {id} at {position:?}"
        );
    }
    assert_eq!(read.len(), records, "records read");
}

/// The bytes of every segment of `<data dir>/<topic>-<partition>`, in offset order.
pub fn log_bytes(data_dir: &Path, topic: &str, partition: i32) -> Result<Vec<u8>, String> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    segments.sort();
    let mut bytes = Vec::new();
    for segment in segments {
        bytes.extend(std::fs::read(&segment).map_err(|e| format!("{}: {e}", segment.display()))?);
    }
    Ok(bytes)
}

/// Waits until nodes `ids` hold the same, non-empty bytes for each of `partitions` of
/// `topic`.
pub fn wait_for_identical_logs(
    cluster: &mut TestCluster,
    ids: &[i32],
    topic: &str,
    partitions: &[i32],
    deadline: Duration,
) {
    let dirs: Vec<_> = ids.iter().map(|id| cluster.node(*id).data_dir()).collect();
    for &partition in partitions {
        millrace_compat_tests::wait_until(
            &format!("partition {partition} identical on nodes {ids:?}"),
            deadline,
            || {
                let logs = dirs
                    .iter()
                    .map(|dir| log_bytes(dir, topic, partition))
                    .collect::<Result<Vec<_>, _>>()?;
                let sizes: Vec<usize> = logs.iter().map(Vec::len).collect();
                if sizes[0] > 0 && logs.windows(2).all(|pair| pair[0] == pair[1]) {
                    Ok(())
                } else {
                    Err(format!("log sizes {sizes:?}"))
                }
            },
        );
    }
}
