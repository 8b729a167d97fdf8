//! The client-matrix scenario (`compat-tests/matrix/SCENARIO.md`) with aiokafka (asyncio;
//! newest release pinned in scripts/install-deps.sh, cramjam for its codecs):
//! program `compat-tests/matrix/python/aiokafka_matrix.py`.

use millrace_compat_tests::matrix::{python_program, run_scenario, MatrixClient};

#[test]
fn matrix_aiokafka() {
    run_scenario(&MatrixClient {
        name: "aiokafka",
        command: &|| python_program("aiokafka_matrix.py"),
        unsupported_codecs: &[],
    });
}
