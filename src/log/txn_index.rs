//! A segment's transaction index (`<base>.txnindex`, Kafka's TransactionIndex): one
//! entry per aborted transaction whose ABORT marker lies in the segment, so that a
//! read_committed fetch can tell its consumer which producers' records to drop.
//!
//! On disk, big-endian, 34-byte entries: version i16 (0), producerId i64, firstOffset i64,
//! lastOffset i64 (the marker's offset), lastStableOffset i64 (the LSO when it was
//! written). Entries are in marker (last offset) order. The file is created on the first
//! entry; it is hostile when read back: a wrong length, version or an entry out of the
//! segment's range makes the whole file untrusted (the caller rebuilds it from the log).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::dir::failpoint;
use super::LogError;

pub const ENTRY_BYTES: usize = 34;
const VERSION: i16 = 0;

/// One aborted transaction (Kafka's AbortedTxn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

pub fn encode(entry: &AbortedTxn) -> [u8; ENTRY_BYTES] {
    let mut out = [0u8; ENTRY_BYTES];
    out[0..2].copy_from_slice(&VERSION.to_be_bytes());
    out[2..10].copy_from_slice(&entry.producer_id.to_be_bytes());
    out[10..18].copy_from_slice(&entry.first_offset.to_be_bytes());
    out[18..26].copy_from_slice(&entry.last_offset.to_be_bytes());
    out[26..34].copy_from_slice(&entry.last_stable_offset.to_be_bytes());
    out
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Decodes a whole file's bytes for a segment holding offsets `[base, next_offset)`.
/// Every entry must be version 0, have first <= last, its marker inside the segment, and
/// markers must increase.
pub fn decode(bytes: &[u8], base_offset: i64, next_offset: i64) -> Result<Vec<AbortedTxn>, String> {
    if bytes.len() % ENTRY_BYTES != 0 {
        return Err(format!(
            "{} bytes is not a whole number of {ENTRY_BYTES}-byte entries",
            bytes.len()
        ));
    }
    let mut entries: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
    for chunk in bytes.chunks_exact(ENTRY_BYTES) {
        let version = i16::from_be_bytes([chunk[0], chunk[1]]);
        if version != VERSION {
            return Err(format!("entry version {version}"));
        }
        let entry = AbortedTxn {
            producer_id: be_i64(&chunk[2..]),
            first_offset: be_i64(&chunk[10..]),
            last_offset: be_i64(&chunk[18..]),
            last_stable_offset: be_i64(&chunk[26..]),
        };
        let in_order = entries
            .last()
            .is_none_or(|previous| previous.last_offset < entry.last_offset);
        if entry.producer_id < 0
            || entry.first_offset < 0
            || entry.first_offset > entry.last_offset
            || entry.last_offset < base_offset
            || entry.last_offset >= next_offset
            || !in_order
        {
            return Err(format!("entry {entry:?} out of place"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// The aborted transactions of one segment, in memory, mirrored to its file.
#[derive(Debug)]
pub(super) struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Opened on the first entry written (most segments never get one).
    file: Option<File>,
}

impl TxnIndex {
    pub(super) fn path(dir: &Path, base_offset: i64) -> PathBuf {
        dir.join(super::segment::file_name(base_offset, "txnindex"))
    }

    /// An empty index for a new segment; a leftover file of a segment that no longer
    /// exists is removed.
    pub(super) fn create(dir: &Path, base_offset: i64) -> Result<TxnIndex, LogError> {
        let path = Self::path(dir, base_offset);
        remove_if_exists(&path)?;
        Ok(TxnIndex {
            path,
            entries: Vec::new(),
            file: None,
        })
    }

    /// A placeholder until [`TxnIndex::load`] (or `replace`) gives the real entries.
    pub(super) fn create_unloaded(dir: &Path, base_offset: i64) -> TxnIndex {
        TxnIndex {
            path: Self::path(dir, base_offset),
            entries: Vec::new(),
            file: None,
        }
    }

    /// Loads the file of a segment holding `[base, next_offset)` of `size_bytes` bytes.
    /// An untrusted file is removed and reported as `Ok((empty, false))`: the log's
    /// replay puts its entries back.
    pub(super) fn load(
        dir: &Path,
        base_offset: i64,
        next_offset: i64,
        size_bytes: u64,
    ) -> Result<(TxnIndex, bool), LogError> {
        let path = Self::path(dir, base_offset);
        let mut index = TxnIndex {
            path,
            entries: Vec::new(),
            file: None,
        };
        let file_bytes = match std::fs::metadata(&index.path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((index, true)),
            Err(error) => return Err(error.into()),
        };
        // One entry per marker batch in the segment at most: bounds the allocation.
        let max_bytes = (size_bytes / super::batch::HEADER_SIZE as u64 + 1) * ENTRY_BYTES as u64;
        let decoded = if file_bytes > max_bytes {
            Err(format!("{file_bytes} bytes for a segment of {size_bytes}"))
        } else {
            let bytes = std::fs::read(&index.path)?;
            decode(&bytes, base_offset, next_offset)
        };
        match decoded {
            Ok(entries) => {
                index.entries = entries;
                Ok((index, true))
            }
            Err(reason) => {
                tracing::warn!(file = %index.path.display(), %reason, "transaction index untrusted; rebuilt from the log");
                remove_if_exists(&index.path)?;
                Ok((index, false))
            }
        }
    }

    pub(super) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub(super) fn contains_marker(&self, last_offset: i64) -> bool {
        self.entries.iter().any(|e| e.last_offset == last_offset)
    }

    /// Adds an entry; one whose marker precedes the last entry's (a replay filling a hole)
    /// is put in order and the file rewritten.
    pub(super) fn append(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        if self
            .entries
            .last()
            .is_some_and(|last| last.last_offset >= entry.last_offset)
        {
            let at = self
                .entries
                .partition_point(|e| e.last_offset < entry.last_offset);
            self.entries.insert(at, entry);
            return self.rewrite();
        }
        let position = (self.entries.len() * ENTRY_BYTES) as u64;
        failpoint("log::txnindex::write")?;
        self.open()?.write_all_at(&encode(&entry), position)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Drops the entries whose marker is at or past `offset` (Kafka's truncateTo).
    pub(super) fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        self.rewrite()
    }

    /// Replaces every entry (the cleaner's merged index for a cleaned segment).
    pub(super) fn replace(&mut self, entries: Vec<AbortedTxn>) -> Result<(), LogError> {
        self.entries = entries;
        self.rewrite()
    }

    fn rewrite(&mut self) -> Result<(), LogError> {
        if self.entries.is_empty() && self.file.is_none() {
            return remove_if_exists(&self.path);
        }
        let bytes: Vec<u8> = self.entries.iter().flat_map(encode).collect();
        failpoint("log::txnindex::write")?;
        let file = self.open()?;
        file.set_len(0)?;
        file.write_all_at(&bytes, 0)?;
        Ok(())
    }

    pub(super) fn flush(&self) -> Result<(), LogError> {
        if let Some(file) = &self.file {
            failpoint("log::segment::fsync")?;
            file.sync_all()?;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<&File, LogError> {
        let file = match self.file.take() {
            Some(file) => file,
            None => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?,
        };
        Ok(self.file.insert(file))
    }
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

/// Kafka's collectAbortedTxns over one segment: the entries whose transaction overlaps
/// `[fetch_offset, upper_bound_offset)`.
pub(super) fn overlapping(
    entries: &[AbortedTxn],
    fetch_offset: i64,
    upper_bound_offset: i64,
) -> impl Iterator<Item = &AbortedTxn> {
    entries
        .iter()
        .filter(move |e| e.last_offset >= fetch_offset && e.first_offset < upper_bound_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: first,
        }
    }

    #[test]
    fn entries_encode_as_kafka_and_decode_back() {
        let e = entry(5, 10, 20);
        let bytes = encode(&e);
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[0..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &5i64.to_be_bytes());
        assert_eq!(decode(&bytes, 0, 21), Ok(vec![e]));
    }

    #[test]
    fn hostile_files_are_refused() {
        let good: Vec<u8> = [entry(1, 0, 3), entry(2, 1, 5)]
            .iter()
            .flat_map(encode)
            .collect();
        assert!(decode(&good, 0, 6).is_ok());
        assert!(decode(&good[..33], 0, 6).is_err(), "torn entry");
        assert!(decode(&good, 0, 5).is_err(), "marker past the segment");
        assert!(decode(&good, 4, 6).is_err(), "marker before the segment");
        let mut version = good.clone();
        version[1] = 1;
        assert!(decode(&version, 0, 6).is_err());
        let mut swapped = good[34..].to_vec();
        swapped.extend_from_slice(&good[..34]);
        assert!(decode(&swapped, 0, 6).is_err(), "markers out of order");
        let inverted: Vec<u8> = encode(&entry(1, 4, 3)).to_vec();
        assert!(decode(&inverted, 0, 6).is_err());
    }

    #[test]
    fn append_truncate_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TxnIndex::create(dir.path(), 0).unwrap();
        assert!(!TxnIndex::path(dir.path(), 0).exists(), "created lazily");
        index.append(entry(1, 0, 3)).unwrap();
        index.append(entry(2, 4, 9)).unwrap();
        // A replay filling a hole keeps the order.
        index.append(entry(3, 5, 6)).unwrap();
        let (loaded, trusted) = TxnIndex::load(dir.path(), 0, 10, 10_000).unwrap();
        assert!(trusted);
        let markers: Vec<i64> = loaded.entries().iter().map(|e| e.last_offset).collect();
        assert_eq!(markers, vec![3, 6, 9]);
        index.truncate_to(6).unwrap();
        let (loaded, _) = TxnIndex::load(dir.path(), 0, 10, 10_000).unwrap();
        assert_eq!(loaded.entries(), &[entry(1, 0, 3)]);
        let entries = [entry(1, 0, 3), entry(2, 4, 9)];
        let overlaps: Vec<_> = overlapping(&entries, 3, 4).collect();
        assert_eq!(overlaps, vec![&entry(1, 0, 3)]);
        // Garbage is removed and reported.
        std::fs::write(TxnIndex::path(dir.path(), 0), b"garbage").unwrap();
        let (loaded, trusted) = TxnIndex::load(dir.path(), 0, 10, 10_000).unwrap();
        assert!(!trusted && loaded.entries().is_empty());
        assert!(!TxnIndex::path(dir.path(), 0).exists());
    }
}
