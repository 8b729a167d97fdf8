//! `meta.properties` ties the log directory to its cluster: written at first start, and
//! a directory whose metadata store was wiped, or that belongs to another cluster, is
//! refused at start (non-zero exit, the reason in the log) instead of being served as a
//! new cluster that would later mistake or delete the old partition directories.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{flush_all_ok, producer, send};
use millrace_compat_tests::tools::run_with_timeout;
use millrace_compat_tests::{free_port, millrace_bin, unique_topic, BrokerOpts, TestBroker};
use rdkafka::producer::BaseRecord;

/// Runs the broker on `data_dir` expecting it to refuse to start; returns its output.
fn refused_start(data_dir: &Path) -> String {
    let mut cmd = Command::new(millrace_bin());
    cmd.arg("serve")
        .arg("--override")
        .arg(format!("listeners=PLAINTEXT://127.0.0.1:{}", free_port()))
        .arg("--override")
        .arg(format!("log.dirs={}", data_dir.display()));
    let out = run_with_timeout(cmd, None, Duration::from_secs(30));
    assert!(
        !out.status.success(),
        "the broker started on a directory it must refuse: {}",
        out.describe()
    );
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
fn a_wiped_metadata_store_or_a_foreign_cluster_id_is_refused() {
    let mut broker = TestBroker::start_millrace(BrokerOpts::default());
    let b = broker.bootstrap();
    let topic = unique_topic("meta-props");
    let (p, rec) = producer(&b, &[]);
    send(
        &p,
        BaseRecord::with_opaque_to(&topic, 0).payload(b"kept".as_slice()),
    );
    flush_all_ok(&p, &rec, 1);
    drop(p);
    broker.stop_graceful();

    let data = broker.data_dir();
    let props_path = data.join("meta.properties");
    let props = std::fs::read_to_string(&props_path).expect("meta.properties written");
    for key in ["version=1", "cluster.id=", "node.id=1", "directory.id="] {
        assert!(props.contains(key), "meta.properties lacks {key}: {props}");
    }

    // Another cluster's id: refused.
    let foreign = props
        .lines()
        .map(|l| {
            if l.starts_with("cluster.id=") {
                "cluster.id=AAAAAAAAAAAAAAAAAAAAAA".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&props_path, foreign).unwrap();
    let out = refused_start(&data);
    assert!(out.contains("belongs to another cluster"), "{out}");
    std::fs::write(&props_path, &props).unwrap();

    // The metadata store wiped while partition directories remain: refused, and the
    // partition data is left alone.
    std::fs::rename(data.join("meta"), data.with_file_name("meta.saved")).unwrap();
    let out = refused_start(&data);
    assert!(out.contains("metadata store"), "{out}");
    assert!(
        !data.join("meta").exists(),
        "a new metadata store was created"
    );
    assert!(data.join(format!("{topic}-0")).is_dir());

    // Restored: it starts and still serves the data.
    std::fs::rename(data.with_file_name("meta.saved"), data.join("meta")).unwrap();
    broker.restart();
    let parts = common::consume_all(&b, &topic);
    assert_eq!(parts[0].len(), 1);
}
