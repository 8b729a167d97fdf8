#!/usr/bin/env bash
# Samples the release millrace broker with `perf record` (cpu-clock: this VM has no
# hardware counters) under two loadgen workloads: produce (8 partitions, acks=1, 1 KiB,
# 15 s) and consume-from-start of what it wrote (page cache dropped first, when root).
# Prints the top symbols of each. Usage: benches/profile.sh [OUT_DIR]  (default /tmp/millrace-prof)
# Needs: perf (linux-perf), scripts/bench.sh's release build of millrace and the loadgen.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/millrace-target}
out=${1:-/tmp/millrace-prof}
mkdir -p "$out"
bin="$CARGO_TARGET_DIR/release/millrace"
lg="$CARGO_TARGET_DIR/release/millrace-loadgen"
work=$(mktemp -d /tmp/millrace-prof-XXXXXX)
pid=""
cleanup() { [ -z "$pid" ] || { kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --override "listeners=PLAINTEXT://127.0.0.1:$port" --override "log.dirs=$work/data" \
  >"$out/broker.log" 2>&1 &
pid=$!
for _ in $(seq 1 60); do
  timeout 10 "$lg" create-topic --bootstrap "127.0.0.1:$port" --topic prof --partitions 8 >/dev/null 2>&1 && break
  sleep 0.5
done
b="127.0.0.1:$port"
perf record -e cpu-clock -F 999 -g -p "$pid" -o "$out/produce.data" -- sleep 14 2>"$out/perf-produce.err" &
perf_pid=$!
timeout 60 "$lg" produce --bootstrap "$b" --topic prof --duration-s 15 --acks 1 | tee "$out/produce.json"
wait "$perf_pid" || true
n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["produce"]["acked"])' "$out/produce.json")
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "(page cache not dropped)" >&2
perf record -e cpu-clock -F 999 -g -p "$pid" -o "$out/consume.data" 2>"$out/perf-consume.err" &
perf_pid=$!
timeout 120 "$lg" consume --bootstrap "$b" --topic prof --partitions 8 --records "$n" | tee "$out/consume.json"
kill -INT "$perf_pid"; wait "$perf_pid" || true
for w in produce consume; do
  echo "== $w: top symbols (self time, % of broker samples)"
  perf report -i "$out/$w.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
  perf report -i "$out/$w.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -6
done | tee "$out/top.txt"
