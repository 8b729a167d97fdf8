//! Builders the metadata unit tests share.

use uuid::Uuid;

use super::{BrokerRegistration, PartitionRecord};

/// Broker `id` on localhost:9000+id, epoch 1, fenced or not.
pub(crate) fn broker(id: i32, fenced: bool) -> BrokerRegistration {
    BrokerRegistration {
        node_id: id,
        host: "localhost".to_string(),
        port: 9000 + id,
        rack: None,
        broker_epoch: 1,
        incarnation_id: Uuid::nil(),
        listeners: vec![],
        fenced,
    }
}

/// Partition `index` on `replicas`, in sync `isr`, led by `leader`, at leader epoch 3 and
/// partition epoch 7, with no ELR and no reassignment.
pub(crate) fn partition_record(
    index: i32,
    replicas: &[i32],
    isr: &[i32],
    leader: i32,
) -> PartitionRecord {
    PartitionRecord {
        partition: index,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: 3,
        partition_epoch: 7,
        elr: Vec::new(),
        last_known_elr: Vec::new(),
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }
}
