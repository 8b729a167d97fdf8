//! Client matrix: IBM sarama (protocol versions of Kafka 4.3.1, idempotent producer,
//! consumer group API) runs the scenario of `compat-tests/matrix/SCENARIO.md`; its
//! program is `matrix/go/sarama`.

use std::process::Command;

use millrace_compat_tests::go_bin;
use millrace_compat_tests::matrix::{run_scenario, MatrixClient};

#[test]
fn sarama_runs_the_matrix_scenario() {
    let bin = go_bin("matrix-sarama");
    run_scenario(&MatrixClient {
        name: "sarama",
        command: &|| Command::new(&bin),
        unsupported_codecs: &[],
    });
}
