#!/usr/bin/env bash
# Builds (release) and runs a broker: `scripts/serve.sh` is the embedded single-node
# default (127.0.0.1:9092, ./millrace-data); arguments go to `millrace serve`, e.g.
# `scripts/serve.sh --override num.partitions=3`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/millrace-target}
bash "$root/scripts/install-deps.sh" --build
cargo build --release --bin millrace --manifest-path "$root/Cargo.toml"
exec "$CARGO_TARGET_DIR/release/millrace" serve "$@"
