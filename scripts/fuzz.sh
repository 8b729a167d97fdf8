#!/usr/bin/env bash
# Fuzzes the decoders that see untrusted bytes (fuzz/, cargo-fuzz + libFuzzer + ASan):
# for each target, (a) replays its committed corpus (fuzz/corpus/<target>/, real clients'
# requests and real stored batches), then (b) fuzzes it for FUZZ_SECONDS (default 30).
# Any crash, panic, allocation above -malloc_limit_mb, RSS above -rss_limit_mb or input
# slower than -timeout fails the script; the reproducer lands in fuzz/artifacts/<target>/
# (`cargo +nightly fuzz run <target> <file>` replays it).
#
#   scripts/fuzz.sh                       # every target, 30 s each
#   FUZZ_SECONDS=480 scripts/fuzz.sh decode_request
#
# The build goes outside the clone ($MILLRACE_FUZZ_TARGET_DIR, default
# ~/.cache/millrace-fuzz-target); inputs found while fuzzing go to a temp dir, not the
# committed corpus (merge them with `cargo fuzz cmin` when worth keeping).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
target_dir=${MILLRACE_FUZZ_TARGET_DIR:-$HOME/.cache/millrace-fuzz-target}
seconds=${FUZZ_SECONDS:-30}
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(decode_request validate_batch decode_stored_batch consumer_offsets_record transaction_state_record)
fi
# Release code with debug assertions and overflow checks: an overflow is a finding too.
build_flags=(-O -a --target-dir "$target_dir")
# 512 MiB per allocation is far above anything a valid input of a few KiB needs.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10)

log() { echo "[fuzz] $*" >&2; }

start=$(date +%s)
for t in "${targets[@]}"; do
  cargo +nightly fuzz build "${build_flags[@]}" "$t"
done
log "built in $(($(date +%s) - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  log "$t: replaying $(ls "corpus/$t" | wc -l) corpus files"
  cargo +nightly fuzz run "${build_flags[@]}" "$t" "corpus/$t" -- -runs=0 "${limits[@]}"
  log "$t: fuzzing for ${seconds} s"
  mkdir -p "$scratch/$t"
  cargo +nightly fuzz run "${build_flags[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" "${limits[@]}" -print_final_stats=1
done
log "all targets clean in $(($(date +%s) - start)) s"
