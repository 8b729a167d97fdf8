//! The client-matrix scenario (`compat-tests/matrix/SCENARIO.md`) with the rdkafka crate
//! (its bundled librdkafka, the version compat-tests/Cargo.toml pins): program
//! `compat-tests/src/bin/matrix_rdkafka.rs`, which cargo builds with this test.

use std::process::Command;

use millrace_compat_tests::matrix::{run_scenario, MatrixClient};

#[test]
fn matrix_rdkafka() {
    run_scenario(&MatrixClient {
        name: "rdkafka",
        command: &|| Command::new(env!("CARGO_BIN_EXE_matrix_rdkafka")),
        unsupported_codecs: &[],
    });
}
