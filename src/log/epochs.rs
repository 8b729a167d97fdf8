//! The leader-epoch history of a log: for each leader epoch that wrote to it, the offset
//! of its first batch. OffsetForLeaderEpoch answers from it (a consumer checking, after a
//! leader change, that the log was not truncated under its position).
//!
//! Persisted as Kafka's `leader-epoch-checkpoint`: a version line (0), a count line,
//! then one `epoch start_offset` line per entry. The file is rewritten (atomically)
//! before the first batch of a new epoch is appended, so it always covers the log; at
//! open, entries at or past the recovered log end are dropped (a crash may have lost
//! the batch they announced). A missing or unreadable file is rebuilt from the stored
//! batches' partitionLeaderEpoch.

use std::io;
use std::path::{Path, PathBuf};

use super::dir::write_file_atomically;

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const VERSION: u32 = 0;
/// Kafka's "no epoch" / "no offset" answer.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Entries strictly increasing in both epoch and start offset.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// The checkpoint in `dir` if it is readable, else None (rebuild it from the log).
    /// Entries at or past `log_end_offset` are dropped.
    pub fn load(dir: &Path, log_end_offset: i64) -> io::Result<Option<LeaderEpochCache>> {
        let path = dir.join(CHECKPOINT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(path = %path.display(), "leader epoch checkpoint is not text; rebuilding it");
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let Some(mut entries) = parse(&text) else {
            tracing::warn!(path = %path.display(), "leader epoch checkpoint is malformed; rebuilding it");
            return Ok(None);
        };
        entries.retain(|e| e.start_offset < log_end_offset);
        Ok(Some(LeaderEpochCache { path, entries }))
    }

    /// A placeholder until [`Self::load`] or [`Self::rebuild`] has read the log.
    pub fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            path: dir.join(CHECKPOINT_FILE),
            entries: Vec::new(),
        }
    }

    /// A cache built from the epochs of the stored batches, in log order, and persisted.
    pub fn rebuild(
        dir: &Path,
        batch_epochs: impl IntoIterator<Item = EpochEntry>,
    ) -> io::Result<LeaderEpochCache> {
        let mut cache = LeaderEpochCache {
            path: dir.join(CHECKPOINT_FILE),
            entries: Vec::new(),
        };
        for entry in batch_epochs {
            cache.push_if_newer(entry);
        }
        cache.persist()?;
        Ok(cache)
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` writes from `start_offset` on; persisted before returning
    /// when it is a new epoch. Older or equal epochs change nothing (as Kafka, which
    /// ignores a non-monotonic assignment), and so do batches without an epoch (-1).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> io::Result<()> {
        let entry = EpochEntry {
            epoch,
            start_offset,
        };
        if self.push_if_newer(entry) {
            if let Err(error) = self.persist() {
                self.entries.pop();
                return Err(error);
            }
        }
        Ok(())
    }

    /// Forgets every epoch that starts at or after `offset` (the log was truncated
    /// there), persisted before returning (Kafka's truncateFromEnd; Kafka flushes it
    /// asynchronously, here the caller's truncation is complete when this returns).
    pub fn truncate_from_end(&mut self, offset: i64) -> io::Result<()> {
        let kept = self.entries.partition_point(|e| e.start_offset < offset);
        if kept == self.entries.len() {
            return Ok(());
        }
        let removed = self.entries.split_off(kept);
        if let Err(error) = self.persist() {
            self.entries.extend(removed);
            return Err(error);
        }
        Ok(())
    }

    /// Forgets every epoch (the log was emptied, Kafka's clearAndFlush), persisted.
    pub fn clear(&mut self) -> io::Result<()> {
        self.truncate_from_end(i64::MIN)
    }

    fn push_if_newer(&mut self, entry: EpochEntry) -> bool {
        assign_epoch(&mut self.entries, entry)
    }

    fn persist(&self) -> io::Result<()> {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        write_file_atomically(&self.path, text.as_bytes())
    }

    /// Kafka's answer for the end offset of `requested` epoch: see [`end_offset_for`].
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        end_offset_for(&self.entries, requested, log_end_offset)
    }
}

/// Adds `entry` to a history if its epoch is newer than the latest (older or equal
/// epochs, and batches without an epoch (-1), change nothing, as in Kafka); entries
/// announced at or past its start offset (their batches never made it) are dropped.
/// True if it was added.
pub fn assign_epoch(entries: &mut Vec<EpochEntry>, entry: EpochEntry) -> bool {
    if entry.epoch < 0
        || entries
            .last()
            .is_some_and(|latest| entry.epoch <= latest.epoch)
    {
        return false;
    }
    while entries
        .last()
        .is_some_and(|last| last.start_offset >= entry.start_offset)
    {
        entries.pop();
    }
    entries.push(entry);
    true
}

/// Kafka's answer for the end offset of `requested` epoch in a history of `entries`
/// (strictly increasing): the epoch itself and the log end when it is the latest; else
/// the largest known epoch <= requested and the start offset of the next one (the
/// requested epoch and the first known start offset when it predates every entry);
/// undefined for -1 or an epoch past the latest. Pure, so that the replication state
/// machines (`crate::replication`) answer from any view of a history.
pub fn end_offset_for(entries: &[EpochEntry], requested: i32, log_end_offset: i64) -> (i32, i64) {
    if requested == UNDEFINED_EPOCH {
        return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
    }
    if entries.last().map(|e| e.epoch) == Some(requested) {
        return (requested, log_end_offset);
    }
    let higher = entries.partition_point(|e| e.epoch <= requested);
    let Some(next) = entries.get(higher) else {
        return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
    };
    match higher.checked_sub(1).map(|i| entries[i]) {
        Some(floor) => (floor.epoch, next.start_offset),
        None => (requested, next.start_offset),
    }
}

/// The entries of a checkpoint, or None if it is not one (wrong version, count, order).
fn parse(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<u32>().ok()? != VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = Vec::new();
    for line in lines.by_ref().take(count) {
        let (epoch, offset) = line.trim().split_once(' ')?;
        let entry = EpochEntry {
            epoch: epoch.parse().ok()?,
            start_offset: offset.parse().ok()?,
        };
        let ordered = entries.last().is_none_or(|last: &EpochEntry| {
            last.epoch < entry.epoch && last.start_offset < entry.start_offset
        });
        if entry.epoch < 0 || entry.start_offset < 0 || !ordered {
            return None;
        }
        entries.push(entry);
    }
    (entries.len() == count && lines.all(|l| l.trim().is_empty())).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache {
            entries: entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
            ..LeaderEpochCache::empty(Path::new("/nonexistent"))
        }
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        let log_end = 40;
        assert_eq!(c.end_offset_for(4, log_end), (4, 40), "latest: the log end");
        assert_eq!(c.end_offset_for(3, log_end), (3, 25), "exact: next start");
        assert_eq!(
            c.end_offset_for(2, log_end),
            (1, 10),
            "gap: the floor epoch"
        );
        assert_eq!(
            c.end_offset_for(0, log_end),
            (0, 0),
            "before all: first start"
        );
        assert_eq!(c.end_offset_for(5, log_end), (-1, -1), "past the latest");
        assert_eq!(c.end_offset_for(-1, log_end), (-1, -1), "undefined");
        assert_eq!(cache(&[]).end_offset_for(0, 0), (-1, -1), "empty log");
    }

    #[test]
    fn checkpoint_round_trips_and_drops_entries_past_the_log_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::rebuild(dir.path(), []).unwrap();
        c.assign(0, 0).unwrap();
        c.assign(0, 5).unwrap();
        c.assign(2, 7).unwrap();
        c.assign(1, 9).unwrap();
        let text = std::fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n2 7\n");
        let loaded = LeaderEpochCache::load(dir.path(), 100).unwrap().unwrap();
        assert_eq!(loaded.entries(), c.entries());
        // Recovery cut the log at 7: the batch that announced epoch 2 is gone.
        let cut = LeaderEpochCache::load(dir.path(), 7).unwrap().unwrap();
        assert_eq!(cut.latest_epoch(), Some(0));
    }

    #[test]
    fn a_new_epoch_replaces_one_announced_at_a_lost_offset() {
        let mut c = cache(&[(0, 0), (1, 10)]);
        c.entries.truncate(2);
        assert!(c.push_if_newer(EpochEntry {
            epoch: 2,
            start_offset: 10
        }));
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 0,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 2,
                    start_offset: 10
                }
            ]
        );
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        for text in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 5\n",
            "0\n2\n1 5\n0 9\n",
            "0\n2\n1 5\n2 5\n",
            "0\n1\n-3 0\n",
            "0\n1\nx y\n",
            "0\n99999999999999999999\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert_eq!(
            parse("0\n1\n3 8\n"),
            Some(vec![EpochEntry {
                epoch: 3,
                start_offset: 8
            }])
        );
    }
}
