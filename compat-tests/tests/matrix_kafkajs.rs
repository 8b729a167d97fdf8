//! kafkajs 2.2.4 (pure JavaScript, on the machine's Node 20) running the client-matrix
//! scenario (`matrix/SCENARIO.md`): `matrix/node/kafkajs.cjs`. Idempotent producer
//! (`idempotent: true`, `maxInFlightRequests: 1`); snappy, lz4 and zstd through codec
//! packages (kafkajs-snappy, kafkajs-lz4, @sensejs/kafkajs-zstd-support).

use millrace_compat_tests::matrix::{run_scenario, MatrixClient};
use millrace_compat_tests::node::{node_command, NodeRuntime};

#[test]
fn kafkajs_matrix_scenario() {
    run_scenario(&MatrixClient {
        name: "kafkajs",
        command: &|| node_command(NodeRuntime::System, "kafkajs.cjs"),
        unsupported_codecs: &[],
    });
}
