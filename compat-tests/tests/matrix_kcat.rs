//! The client-matrix scenario (`compat-tests/matrix/SCENARIO.md`) with Debian's kcat (on
//! the system librdkafka), as far as kcat can express it: program
//! `compat-tests/matrix/python/kcat_matrix.py`, which runs kcat processes. kcat has no
//! admin API and no pause or commit call, so the broker auto-creates the topic and the
//! `group` phase is replaced by a `resume` of batch 1 (see compat-tests/README.md).

use millrace_compat_tests::matrix::{
    python_program, run_scenario_without_group_phase, MatrixClient,
};
use millrace_compat_tests::tools::system_librdkafka;

#[test]
fn matrix_kcat() {
    run_scenario_without_group_phase(&MatrixClient {
        name: "kcat",
        command: &|| {
            let mut cmd = python_program("kcat_matrix.py");
            system_librdkafka(&mut cmd);
            cmd
        },
        unsupported_codecs: &[],
    });
}
