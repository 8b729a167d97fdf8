//! The client-matrix scenario (`compat-tests/matrix/SCENARIO.md`) with confluent-kafka
//! (newest release pinned in scripts/install-deps.sh; its wheel bundles librdkafka):
//! program `compat-tests/matrix/python/confluent_kafka_matrix.py`.

use millrace_compat_tests::matrix::{python_program, run_scenario, MatrixClient};

#[test]
fn matrix_confluent_kafka() {
    run_scenario(&MatrixClient {
        name: "confluent-kafka",
        command: &|| python_program("confluent_kafka_matrix.py"),
        unsupported_codecs: &[],
    });
}
