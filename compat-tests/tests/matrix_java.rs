//! The client matrix (`matrix/SCENARIO.md`) with Apache Kafka's Java client
//! (kafka-clients `KAFKA_VERSION`): Admin, an idempotent KafkaProducer per codec,
//! two classic-protocol KafkaConsumers. The program is `matrix/java/MatrixClient.java`.

use millrace_compat_tests::java_program_command;
use millrace_compat_tests::matrix::{run_scenario, MatrixClient};

#[test]
fn java_client_runs_the_matrix_scenario() {
    run_scenario(&MatrixClient {
        name: "java",
        command: &|| java_program_command("matrix", "MatrixClient", "256m"),
        // kafka-clients compresses with every codec Kafka knows.
        unsupported_codecs: &[],
    });
}
