//! openraft's state machine: the [`MetadataImage`] in memory, persisted as snapshots.
//!
//! Applying only updates memory and publishes the new image; durability comes from the log
//! plus the last snapshot. On restart the image is restored from the snapshot and openraft
//! re-applies the committed entries after it (the log store saves `committed` for that).

// openraft's storage traits return its 224-byte `StorageError` by value; the helpers here
// share that error type rather than box it only to unbox at the trait boundary.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageIOError, StoredMembership,
};
use rocksdb::{WriteBatch, DB};
use tokio::sync::watch;

use super::records::{apply_batch, BatchOutcome};
use super::store::{cf, decode, encode, sync_write, StorageResult, CF_SNAPSHOT};
use super::{MetadataError, MetadataImage, TypeConfig};

const KEY_SNAPSHOT_META: &str = "meta";
const KEY_SNAPSHOT_DATA: &str = "data";

type Membership = StoredMembership<u64, BasicNode>;

pub(crate) struct StateMachine {
    db: Arc<DB>,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<u64>>,
    membership: Membership,
    /// Handlers read the image from here; the quorum handle keeps a receiver.
    publisher: watch::Sender<Arc<MetadataImage>>,
    /// Distinguishes snapshots built at the same log id (openraft wants unique ids).
    snapshot_seq: u64,
}

/// The image a brand-new cluster starts from: no controller known yet.
fn empty_image() -> MetadataImage {
    MetadataImage {
        controller_id: -1,
        ..MetadataImage::default()
    }
}

impl StateMachine {
    /// Restores the last snapshot (if any) and returns the state machine with a receiver
    /// that already holds the restored image.
    pub(crate) fn open(
        db: Arc<DB>,
    ) -> Result<(Self, watch::Receiver<Arc<MetadataImage>>), MetadataError> {
        let (image, last_applied, membership) = match load_snapshot(&db)
            .map_err(|e| MetadataError::Storage(format!("reading metadata snapshot: {e}")))?
        {
            Some((meta, data)) => {
                let image: MetadataImage = decode(&data).map_err(|e| {
                    MetadataError::Storage(format!("decoding metadata snapshot: {e}"))
                })?;
                (image, meta.last_log_id, meta.last_membership)
            }
            None => (empty_image(), None, Membership::default()),
        };
        let image = Arc::new(image);
        let (publisher, receiver) = watch::channel(image.clone());
        let state_machine = Self {
            db,
            image,
            last_applied,
            membership,
            publisher,
            snapshot_seq: 0,
        };
        Ok((state_machine, receiver))
    }
}

type Meta = SnapshotMeta<u64, BasicNode>;

fn load_snapshot(db: &DB) -> Result<Option<(Meta, Vec<u8>)>, StorageIOError<u64>> {
    let cf = cf(db, CF_SNAPSHOT)?;
    let read = |key| {
        db.get_cf(cf, key)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))
    };
    let Some(meta) = read(KEY_SNAPSHOT_META)? else {
        return Ok(None);
    };
    let meta: Meta = decode(&meta).map_err(|e| StorageIOError::read_snapshot(None, e))?;
    let data = read(KEY_SNAPSHOT_DATA)?.ok_or_else(|| {
        StorageIOError::read_snapshot(
            Some(meta.signature()),
            AnyError::error("snapshot meta without data"),
        )
    })?;
    Ok(Some((meta, data)))
}

/// Meta and data in one synced batch, replacing the previous snapshot atomically.
fn save_snapshot(db: &DB, meta: &Meta, data: &[u8]) -> StorageResult<()> {
    let err = |e: AnyError| StorageIOError::write_snapshot(Some(meta.signature()), e);
    let cf = cf(db, CF_SNAPSHOT)?;
    let mut batch = WriteBatch::default();
    batch.put_cf(cf, KEY_SNAPSHOT_META, encode(meta).map_err(err)?);
    batch.put_cf(cf, KEY_SNAPSHOT_DATA, data);
    sync_write(db, batch).map_err(|e| err(AnyError::new(&e)).into())
}

/// A frozen copy of the state machine: the image is an `Arc`, so this is cheap and the
/// state machine keeps applying while the snapshot is written.
pub(crate) struct SnapshotBuilder {
    db: Arc<DB>,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<u64>>,
    membership: Membership,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let data = encode(&*self.image).map_err(StorageIOError::read_state_machine)?;
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = Meta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        save_snapshot(&self.db, &meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, Membership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<BatchOutcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        let mut image = self.image.clone();
        for entry in entries {
            let log_id = entry.log_id;
            self.last_applied = Some(log_id);
            let records = match entry.payload {
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(log_id), membership);
                    outcomes.push(BatchOutcome::default());
                    continue;
                }
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => batch.records,
            };
            // Node ids come from non-negative i32 broker ids (see `start`).
            let leader = i32::try_from(log_id.leader_id.node_id)
                .map_err(|e| StorageIOError::apply(log_id, AnyError::new(&e)))?;
            let (next, outcome) = apply_batch(&image, leader, &records);
            // Cheaper than comparing images: only these can change anything.
            if leader != image.controller_id || outcome.accepted.contains(&true) {
                image = Arc::new(next);
            }
            outcomes.push(outcome);
        }
        if !Arc::ptr_eq(&image, &self.image) {
            self.image = image.clone();
            self.publisher.send_replace(image);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            seq: self.snapshot_seq,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let image: MetadataImage =
            decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), e))?;
        save_snapshot(&self.db, meta, &data)?;
        self.image = Arc::new(image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.publisher.send_replace(self.image.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(load_snapshot(&self.db)?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Membership as RaftMembership};
    use tempfile::TempDir;

    use super::*;
    use crate::metadata::records::{MetadataRecord, RecordBatch};
    use crate::metadata::store::open_db;

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 3), index)
    }

    fn entries() -> Vec<Entry<TypeConfig>> {
        let members = RaftMembership::new(
            vec![[3u64].into_iter().collect()],
            std::collections::BTreeMap::from([(3u64, BasicNode::new("h:1"))]),
        );
        vec![
            Entry {
                log_id: log_id(0),
                payload: EntryPayload::Membership(members),
            },
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Normal(RecordBatch {
                    records: vec![
                        MetadataRecord::ClusterInit {
                            cluster_id: "cid".into(),
                        },
                        MetadataRecord::ClusterInit {
                            cluster_id: "other".into(),
                        },
                    ],
                }),
            },
        ]
    }

    #[tokio::test]
    async fn apply_publishes_and_snapshot_restores() {
        let dir = TempDir::new().unwrap();
        {
            let (mut sm, mut rx) = StateMachine::open(open_db(dir.path()).unwrap()).unwrap();
            assert_eq!(rx.borrow_and_update().controller_id, -1);
            let outcomes = sm.apply(entries()).await.unwrap();
            assert_eq!(outcomes[2].accepted, vec![true, false]);
            assert!(rx.has_changed().unwrap());
            let image = rx.borrow_and_update().clone();
            assert_eq!((image.cluster_id.as_str(), image.controller_id), ("cid", 3));

            assert!(sm.get_current_snapshot().await.unwrap().is_none());
            let snapshot = sm
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            assert_eq!(snapshot.meta.last_log_id, Some(log_id(2)));
        }
        let (mut sm, rx) = StateMachine::open(open_db(dir.path()).unwrap()).unwrap();
        assert_eq!(rx.borrow().cluster_id, "cid");
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(2)));
        assert_eq!(membership.log_id(), &Some(log_id(0)));
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, Some(log_id(2)));
    }

    #[tokio::test]
    async fn install_snapshot_replaces_state() {
        let dir = TempDir::new().unwrap();
        let (mut sm, rx) = StateMachine::open(open_db(dir.path()).unwrap()).unwrap();
        let image = MetadataImage {
            cluster_id: "installed".into(),
            controller_id: 9,
            next_producer_id: 77,
            ..Default::default()
        };
        let meta = Meta {
            last_log_id: Some(log_id(40)),
            last_membership: Membership::default(),
            snapshot_id: "s".into(),
        };
        let data = serde_json::to_vec(&image).unwrap();
        sm.install_snapshot(&meta, Box::new(Cursor::new(data)))
            .await
            .unwrap();
        assert_eq!(*rx.borrow().clone(), image);
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(40)));

        let garbage = Box::new(Cursor::new(b"nope".to_vec()));
        assert!(sm.install_snapshot(&meta, garbage).await.is_err());
    }

    #[tokio::test]
    async fn corrupt_snapshot_fails_open() {
        let dir = TempDir::new().unwrap();
        let db = open_db(dir.path()).unwrap();
        db.put_cf(
            cf(&db, CF_SNAPSHOT).unwrap(),
            KEY_SNAPSHOT_META,
            b"{garbage",
        )
        .unwrap();
        assert!(matches!(
            StateMachine::open(db),
            Err(MetadataError::Storage(_))
        ));
    }
}
