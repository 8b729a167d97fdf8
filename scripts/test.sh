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
# No doctests: the crates have none, and their empty runner would close the output.
# Each compat test starts its own broker and clients; 2 at a time fits a 2-core machine.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --features millrace/failpoints --lib --bins --tests -- --test-threads="${MILLRACE_TEST_THREADS:-2}" 2>&1 | tee "$log"
# One total over every test binary, for a reader (and CI) scanning the last line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f; exit (p == 0 || f > 0) }' "$log"
