#!/usr/bin/env bash
# Runs every test: unit tests and the compat suite (real Kafka clients against the real
# millrace binary). Installs what the tests need first (idempotent).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/millrace-target}

bash scripts/install-deps.sh
cargo build --bin millrace
export MILLRACE_BIN="$CARGO_TARGET_DIR/debug/millrace"
# Each compat test starts its own broker and clients; 2 at a time fits a 2-core machine.
cargo test --workspace -- --test-threads="${MILLRACE_TEST_THREADS:-2}"
