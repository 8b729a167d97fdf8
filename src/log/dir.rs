//! The log directory as a whole: its health (a storage error takes it offline, and with
//! one log directory that stops the broker) and its `meta.properties` (which cluster and
//! node the data belongs to).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// Shared by every partition of the log directory. The first write or fsync error trips
/// it: from then on no append is accepted, and the broker's main task (waiting on
/// [`LogDirHealth::offline`]) shuts the broker down with a failure exit. Kafka does the
/// same through its LogDirFailureChannel: after an IO error the kernel's page cache can
/// no longer be trusted to match the disk (a later fsync may "succeed" on dropped pages).
#[derive(Debug)]
pub struct LogDirHealth {
    dir: PathBuf,
    is_offline: AtomicBool,
    cause: OnceLock<String>,
    offline: CancellationToken,
}

impl LogDirHealth {
    pub fn new(dir: &Path) -> LogDirHealth {
        LogDirHealth {
            dir: dir.to_path_buf(),
            is_offline: AtomicBool::new(false),
            cause: OnceLock::new(),
            offline: CancellationToken::new(),
        }
    }

    /// Takes the directory offline for `cause` (idempotent: only the first call logs).
    pub fn trip(&self, cause: &dyn std::fmt::Display) {
        if self.is_offline.swap(true, Ordering::SeqCst) {
            tracing::debug!(%cause, "further storage error on an offline log directory");
            return;
        }
        let cause = cause.to_string();
        tracing::error!(
            "log directory {} is offline: {cause}; shutting down",
            self.dir.display()
        );
        let _ = self.cause.set(cause);
        self.offline.cancel();
    }

    pub fn is_offline(&self) -> bool {
        self.is_offline.load(Ordering::SeqCst)
    }

    /// Why the directory went offline, once it has.
    pub fn cause(&self) -> Option<&str> {
        self.cause.get().map(String::as_str)
    }

    /// Completes once the directory is offline.
    pub fn offline(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.offline.cancelled()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A fault-injection site at a file operation (test builds: the `failpoints` feature).
/// `return(ENOSPC)` / `return(EIO)` (Linux errno names) make it fail like the kernel
/// would; any other argument fails with a generic error naming it.
pub(crate) fn failpoint(name: &str) -> io::Result<()> {
    // Unit tests share one process and run in parallel: a failpoint fires only on the
    // thread of the test that armed it.
    #[cfg(all(test, feature = "failpoints"))]
    if !test_support::ARMED.with(std::cell::Cell::get) {
        return Ok(());
    }
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |arg: Option<String>| {
        // Linux errno values: this seam only exists in test builds on Linux.
        Err(match arg.as_deref() {
            Some("ENOSPC") => io::Error::from_raw_os_error(28),
            Some("EIO") => io::Error::from_raw_os_error(5),
            other => io::Error::other(format!("failpoint {name}: {other:?}")),
        })
    });
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
    Ok(())
}

#[cfg(all(test, feature = "failpoints"))]
pub(crate) mod test_support {
    use std::cell::Cell;

    thread_local! {
        pub(super) static ARMED: Cell<bool> = const { Cell::new(false) };
    }

    /// Arms the failpoints on the current thread for as long as it lives; holds fail-rs's
    /// scenario lock, so failpoint tests run one at a time, and clears every failpoint
    /// configuration when dropped.
    pub(crate) struct ArmedFailpoints {
        _scenario: fail::FailScenario<'static>,
    }

    impl ArmedFailpoints {
        pub(crate) fn new() -> ArmedFailpoints {
            let scenario = fail::FailScenario::setup();
            ARMED.with(|armed| armed.set(true));
            ArmedFailpoints {
                _scenario: scenario,
            }
        }

        /// Configures one failpoint (fail-rs syntax, e.g. `1*return(EIO)`).
        pub(crate) fn set(&self, name: &str, actions: &str) {
            fail::cfg(name, actions).expect("failpoint actions parse");
        }

        pub(crate) fn clear(&self, name: &str) {
            fail::remove(name);
        }
    }

    impl Drop for ArmedFailpoints {
        fn drop(&mut self) {
            ARMED.with(|armed| armed.set(false));
        }
    }
}

pub const META_PROPERTIES_FILE: &str = "meta.properties";
/// The metadata store (RocksDB) under the log directory.
pub const METADATA_STORE_DIR: &str = "meta";

#[derive(Debug, Error)]
pub enum MetaPropertiesError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error(
        "{dir} holds data (partition directories or meta.properties) but its metadata store \
         {dir}/meta is missing or empty; refusing to start a new cluster over it (restore \
         meta/, or move the old data away)"
    )]
    MetadataStoreMissing { dir: String },
    #[error(
        "{path} says cluster.id={found} but the metadata quorum's cluster id is {expected}: \
         this log directory belongs to another cluster"
    )]
    ClusterIdMismatch {
        path: String,
        found: String,
        expected: String,
    },
    #[error("{path} says node.id={found} but this broker is node.id={expected}")]
    NodeIdMismatch {
        path: String,
        found: String,
        expected: i32,
    },
}

/// Before the metadata store opens (and would create itself): a log directory that holds
/// data but no metadata store is refused, since a new cluster over it would later take
/// old partition directories for its own (and delete them on a reused topic name).
pub fn check_metadata_store_present(dir: &Path) -> Result<(), MetaPropertiesError> {
    let io_error = |path: &Path, source| MetaPropertiesError::Io {
        path: path.display().to_string(),
        source,
    };
    let store = dir.join(METADATA_STORE_DIR);
    let store_has_files = match std::fs::read_dir(&store) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(&store, e)),
    };
    if store_has_files {
        return Ok(());
    }
    let mut holds_data = false;
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_dir = entry.file_type().map_err(|e| io_error(dir, e))?.is_dir();
        if name == META_PROPERTIES_FILE || (is_dir && is_partition_dir_name(&name)) {
            holds_data = true;
            break;
        }
    }
    if holds_data {
        return Err(MetaPropertiesError::MetadataStoreMissing {
            dir: dir.display().to_string(),
        });
    }
    Ok(())
}

/// `<topic>-<partition>`, as the partition manager names its directories.
fn is_partition_dir_name(name: &str) -> bool {
    name.rsplit_once('-').is_some_and(|(topic, partition)| {
        !topic.is_empty() && !partition.is_empty() && partition.bytes().all(|b| b.is_ascii_digit())
    })
}

/// After the metadata quorum is up: checks `meta.properties` against the quorum's cluster
/// id and this node's id, or writes it (atomically) on first start. Kafka's format:
/// a Java properties file with `version=1`, `cluster.id`, `node.id`, `directory.id`.
pub fn check_or_write_meta_properties(
    dir: &Path,
    cluster_id: &str,
    node_id: i32,
    new_directory_id: impl FnOnce() -> String,
) -> Result<(), MetaPropertiesError> {
    let path = dir.join(META_PROPERTIES_FILE);
    let shown = path.display().to_string();
    let io_error = |source| MetaPropertiesError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let props = parse_properties(&text);
            let invalid = |reason: &str| MetaPropertiesError::Invalid {
                path: shown.clone(),
                reason: reason.to_string(),
            };
            if props.get("version").map(String::as_str) != Some("1") {
                return Err(invalid("unsupported version (expected version=1)"));
            }
            let found_cluster = props
                .get("cluster.id")
                .ok_or_else(|| invalid("no cluster.id"))?;
            if found_cluster != cluster_id {
                return Err(MetaPropertiesError::ClusterIdMismatch {
                    path: shown.clone(),
                    found: found_cluster.clone(),
                    expected: cluster_id.to_string(),
                });
            }
            let found_node = props.get("node.id").ok_or_else(|| invalid("no node.id"))?;
            if found_node.parse::<i32>().ok() != Some(node_id) {
                return Err(MetaPropertiesError::NodeIdMismatch {
                    path: shown.clone(),
                    found: found_node.clone(),
                    expected: node_id,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let text = format!(
                "#\n#Written by millrace\nnode.id={node_id}\ndirectory.id={}\nversion=1\ncluster.id={cluster_id}\n",
                new_directory_id()
            );
            write_file_atomically(&path, text.as_bytes()).map_err(io_error)
        }
        Err(e) => Err(io_error(e)),
    }
}

/// `key=value` lines; `#`/`!` comments and blank lines skipped. (Java's escapes and line
/// continuations never occur in the keys and values Kafka writes here.)
fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Writes `path` through a temp file, fsync and rename, then fsyncs the directory, so a
/// crash leaves either the old or the new contents.
pub(crate) fn write_file_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    failpoint("fs::write")?;
    std::fs::write(&tmp, contents)?;
    failpoint("log::file::fsync")?;
    std::fs::File::open(&tmp)?.sync_all()?;
    failpoint("fs::rename")?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The size of the file system holding `dir` and the bytes an unprivileged writer may
/// still use there (statvfs: `f_blocks` and `f_bavail` times `f_frsize`, as Java's
/// `FileStore.getTotalSpace`/`getUsableSpace`), each capped at `i64::MAX`.
pub fn disk_space(dir: &Path) -> io::Result<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and outlives the call; `stat` is a valid out pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = |blocks: u64| {
        let total = u128::from(blocks) * u128::from(stat.f_frsize);
        total.min(i64::MAX as u128) as i64
    };
    Ok((bytes(stat.f_blocks), bytes(stat.f_bavail)))
}

/// fsyncs a directory, making creations, renames and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    failpoint("log::dir::fsync")?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dir_names() {
        assert!(is_partition_dir_name("orders-0"));
        assert!(is_partition_dir_name("__consumer_offsets-49"));
        assert!(is_partition_dir_name("a-b-12"));
        assert!(!is_partition_dir_name("meta"));
        assert!(!is_partition_dir_name("orders-"));
        assert!(!is_partition_dir_name("-3"));
        assert!(!is_partition_dir_name("orders-x1"));
    }

    #[test]
    fn meta_properties_written_then_checked() {
        let dir = tempfile::tempdir().unwrap();
        check_metadata_store_present(dir.path()).expect("a fresh dir formats");
        check_or_write_meta_properties(dir.path(), "clusterA", 1, || "dirid".into()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(META_PROPERTIES_FILE)).unwrap();
        let props = parse_properties(&text);
        assert_eq!(props["version"], "1");
        assert_eq!(props["cluster.id"], "clusterA");
        assert_eq!(props["node.id"], "1");
        assert_eq!(props["directory.id"], "dirid");
        // Same cluster and node: accepted, file unchanged.
        check_or_write_meta_properties(dir.path(), "clusterA", 1, || unreachable!()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(META_PROPERTIES_FILE)).unwrap(),
            text
        );
        assert!(matches!(
            check_or_write_meta_properties(dir.path(), "clusterB", 1, || unreachable!()),
            Err(MetaPropertiesError::ClusterIdMismatch { .. })
        ));
        assert!(matches!(
            check_or_write_meta_properties(dir.path(), "clusterA", 2, || unreachable!()),
            Err(MetaPropertiesError::NodeIdMismatch { .. })
        ));
    }

    #[test]
    fn data_without_metadata_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("orders-0")).unwrap();
        assert!(matches!(
            check_metadata_store_present(dir.path()),
            Err(MetaPropertiesError::MetadataStoreMissing { .. })
        ));
        // An empty meta/ (wiped contents) is no better than none.
        std::fs::create_dir(dir.path().join(METADATA_STORE_DIR)).unwrap();
        assert!(check_metadata_store_present(dir.path()).is_err());
        std::fs::write(dir.path().join(METADATA_STORE_DIR).join("CURRENT"), b"x").unwrap();
        check_metadata_store_present(dir.path()).unwrap();

        let only_props = tempfile::tempdir().unwrap();
        std::fs::write(only_props.path().join(META_PROPERTIES_FILE), b"version=1\n").unwrap();
        assert!(check_metadata_store_present(only_props.path()).is_err());
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_rename_keeps_the_old_file() {
        let armed = test_support::ArmedFailpoints::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_file_atomically(&path, b"old").unwrap();
        for errno in ["ENOSPC", "EIO"] {
            armed.set("fs::rename", &format!("return({errno})"));
            let error = write_file_atomically(&path, b"new").unwrap_err();
            let expected = if errno == "ENOSPC" { 28 } else { 5 };
            assert_eq!(error.raw_os_error(), Some(expected));
            assert_eq!(std::fs::read(&path).unwrap(), b"old");
        }
        armed.clear("fs::rename");
        write_file_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
