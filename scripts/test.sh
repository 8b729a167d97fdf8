#!/usr/bin/env bash
# Runs every test: unit tests and the compat suite (real Kafka clients against the real
# millrace binary). Installs what the tests need first (idempotent).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/millrace-target}

bash scripts/install-deps.sh
# docker/compose.yaml (no Docker engine here): `docker compose config -q`, or a YAML check.
bash scripts/check-compose.sh
# The tests' broker carries fault-injection sites (inert unless FAILPOINTS is set).
cargo build --bin millrace --features failpoints
export MILLRACE_BIN="$CARGO_TARGET_DIR/debug/millrace"
# Fuzz targets (fuzz/): replay the seed corpus, then fuzz each for FUZZ_SECONDS (30 s).
bash scripts/fuzz.sh
# No doctests: the crates have none. Each compat test starts its own broker and clients;
# scripts/run-tests.py runs two test binaries at a time (a 2-core machine) and prints
# the total over all of them last.
python3 scripts/run-tests.py "$@"
