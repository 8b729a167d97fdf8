//! The client-matrix scenario (`compat-tests/matrix/SCENARIO.md`) with kafka-python (pure
//! Python; newest release and its codec libraries pinned in scripts/install-deps.sh):
//! program `compat-tests/matrix/python/kafka_python_matrix.py`.

use millrace_compat_tests::matrix::{python_program, run_scenario, MatrixClient};

#[test]
fn matrix_kafka_python() {
    run_scenario(&MatrixClient {
        name: "kafka-python",
        command: &|| python_program("kafka_python_matrix.py"),
        unsupported_codecs: &[],
    });
}
