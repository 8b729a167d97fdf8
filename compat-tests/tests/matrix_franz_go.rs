//! Client matrix: franz-go (pkg/kgo + pkg/kadm) runs the scenario of
//! `compat-tests/matrix/SCENARIO.md`; its program is `matrix/go/franzgo`.

use std::process::Command;

use millrace_compat_tests::go_bin;
use millrace_compat_tests::matrix::{run_scenario, MatrixClient};

#[test]
fn franz_go_runs_the_matrix_scenario() {
    let bin = go_bin("matrix-franz-go");
    run_scenario(&MatrixClient {
        name: "franz-go",
        command: &|| Command::new(&bin),
        unsupported_codecs: &[],
    });
}
