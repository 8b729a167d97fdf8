#!/usr/bin/env bash
# Side-by-side benchmark: Millrace vs Apache Kafka 4.4.0 on this machine, same clients.
#
#   scripts/bench.sh            full run (release build, ~10 minutes, a few GiB of disk)
#   scripts/bench.sh --smoke    seconds-long variant with tiny counts (CI; debug build)
#   options: --out DIR (results dir; default benches/results/<UTC timestamp>)
#            --rounds N (full: 2, smoke: 1): each round restarts both brokers (Kafka, then
#            Millrace) and runs every workload again; the report shows medians and the
#            ratio of each round, because a shared 2-core machine is noisy.
#
# One broker at a time, each on free loopback ports with a fresh temp data dir, both at
# their default flush policy (no fsync per message: log.flush.interval.* unset). Kafka:
# KRaft single node (broker+controller) from the jars in $MILLRACE_CACHE/kafka-libs,
# started like kafka-server-start.sh does (-Xmx1g -Xms1g, G1, MaxGCPauseMillis=20).
# Both brokers get the same overrides: num.partitions, group.initial.rebalance.delay.ms=0,
# offsets.topic.num.partitions=1, offsets.topic.replication.factor=1.
#
# Clients, identical for both brokers:
#   - Kafka's own ProducerPerformance / ConsumerPerformance (kafka-*-perf-test), Java 4.4.0
#   - benches/loadgen (librdkafka via the rdkafka crate): throughput + end-to-end latency
# Per workload the broker's peak RSS (VmHWM, reset with clear_refs before each workload)
# and CPU time (utime+stime from /proc/<pid>/stat) are recorded.
# Results: <out>/runs.jsonl + raw outputs, then benches/report.py writes results.md,
# results.json and results.png. Every process started here is killed on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/millrace-target}
cache=${MILLRACE_CACHE:-$HOME/.cache/millrace}
# kafka.version in compat-tests/java/pom.xml (the jars install-deps.sh resolves).
kafka_version=4.4.0

mode=full
out=""
rounds=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) mode=smoke ;;
    --out) out=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    *) echo "usage: $0 [--smoke] [--out DIR] [--rounds N]" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$out" ] || out="$root/benches/results/$(date -u +%Y%m%dT%H%M%SZ)${mode/full/}"
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
started_at=$(date +%s)

# --- Sizes ---------------------------------------------------------------------
if [ "$mode" = full ]; then
  profile=release
  perf_records=1000000        # ProducerPerformance runs: 1M x 1 KiB = 0.95 GiB
  fill_records=3000000        # the consume-from-start topic: 3M x 1 KiB = 2.9 GiB
  lg_seconds=15               # loadgen produce / e2e at full speed
  rate_seconds=30             # loadgen e2e at the fixed rate
  warmup=3
  rounds=${rounds:-2}
else
  profile=debug
  perf_records=20000
  fill_records=20000
  lg_seconds=2
  rate_seconds=3
  warmup=0.5
  rounds=${rounds:-1}
fi

# --- Build -----------------------------------------------------------------------
bash scripts/install-deps.sh
# Two builds, not one: building both packages together unifies their dependencies'
# features and would rebuild the broker's whole dependency tree.
prof_flag=()
[ "$profile" = release ] && prof_flag=(--release)
cargo build "${prof_flag[@]}" --bin millrace >&2
cargo build "${prof_flag[@]}" -p millrace-loadgen >&2
millrace_bin="$CARGO_TARGET_DIR/$profile/millrace"
loadgen="$CARGO_TARGET_DIR/$profile/millrace-loadgen"
kafka_libs="$cache/kafka-libs"
[ -f "$kafka_libs/kafka-server-$kafka_version.jar" ] || { echo "no Kafka $kafka_version jars in $kafka_libs" >&2; exit 1; }

# --- Process bookkeeping -----------------------------------------------------------
work=$(mktemp -d /tmp/millrace-bench-XXXXXX)
broker_pid=""
cleanup() {
  local rc=$?
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  # Tools run in the foreground under `timeout`, so nothing else can be left behind.
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

tool_log4j="$work/tools-log4j2.properties"
cat > "$tool_log4j" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF

common_overrides=(
  "group.initial.rebalance.delay.ms=0"
  "offsets.topic.num.partitions=1"
  "offsets.topic.replication.factor=1"
  "num.partitions=1"
)

wait_ready() { # port
  local port=$1 i
  for i in $(seq 1 180); do
    kill -0 "$broker_pid" 2>/dev/null || { echo "broker exited during start" >&2; tail -50 "$work/broker.log" >&2; exit 1; }
    if timeout 10 "$loadgen" create-topic --bootstrap "127.0.0.1:$port" --topic bench-ready --partitions 1 >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "broker not ready within 90 s" >&2; tail -50 "$work/broker.log" >&2; exit 1
}

start_millrace() {
  port=$(free_port)
  rm -rf "$work/data"; mkdir -p "$work/data"
  local args=(serve --override "listeners=PLAINTEXT://127.0.0.1:$port" --override "log.dirs=$work/data")
  for kv in "${common_overrides[@]}"; do args+=(--override "$kv"); done
  RUST_LOG=info "$millrace_bin" "${args[@]}" >"$work/broker.log" 2>&1 &
  broker_pid=$!
  wait_ready "$port"
}

start_kafka() {
  port=$(free_port)
  local cport
  cport=$(free_port)
  while [ "$cport" = "$port" ]; do cport=$(free_port); done
  rm -rf "$work/data"; mkdir -p "$work/data"
  local props="$work/server.properties"
  {
    echo "process.roles=broker,controller"
    echo "node.id=1"
    echo "controller.quorum.voters=1@127.0.0.1:$cport"
    echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
    echo "controller.listener.names=CONTROLLER"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    echo "log.dirs=$work/data"
    echo "transaction.state.log.replication.factor=1"
    echo "transaction.state.log.min.isr=1"
    for kv in "${common_overrides[@]}"; do echo "$kv"; done
  } >"$props"
  cat > "$work/kafka-log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
EOF
  local cid
  # Top bit cleared: an id starting with '-' would be parsed as an option by kafka-storage.
  cid=$(python3 -c 'import base64,os; b=bytearray(os.urandom(16)); b[0]&=0x7f; print(base64.urlsafe_b64encode(b).decode().rstrip("="))')
  timeout 120 java -Xmx256m -Dlog4j2.configurationFile="$work/kafka-log4j2.properties" \
    -cp "$kafka_libs/*" kafka.tools.StorageTool format -t "$cid" -c "$props" >"$work/format.log" 2>&1
  # kafka-server-start.sh's defaults (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS).
  java -Xmx1g -Xms1g -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$work/kafka-log4j2.properties" \
    -cp "$kafka_libs/*" kafka.Kafka "$props" >"$work/broker.log" 2>&1 &
  broker_pid=$!
  wait_ready "$port"
}

stop_broker() {
  [ -n "$broker_pid" ] || return 0
  kill -TERM "$broker_pid" 2>/dev/null || true
  local i
  for i in $(seq 1 300); do
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
  rm -rf "$work/data"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$broker_pid/stat"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$broker_pid/status"; }
clk_tck=$(getconf CLK_TCK)
# CPU seconds (user+sys) of this shell's finished children: the client tool of a run.
# `times` must run in this shell (a $(...) subshell has its own, empty, children times).
children_cpu() { # VAR
  times >"$work/times"
  printf -v "$1" '%s' "$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%.3f", t }' "$work/times")"
}

# drop_caches needs root; without it "from disk" means from the page cache (recorded).
cold_cache() {
  [ "$mode" = full ] || { echo false; return; }
  sync
  if echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then echo true; else echo false; fi
}

# run NAME TOOL TIMEOUT_S COMMAND...: runs one workload against the current broker,
# recording its output, the broker's CPU time and peak RSS over the workload.
run() {
  local name=$1 tool=$2 limit=$3
  shift 3
  local raw="$out/$broker-r$round-$name.txt" cold=${COLD:-false}
  echo 5 >"/proc/$broker_pid/clear_refs" 2>/dev/null || true
  local c0 t0 c1 t1 k0 k1 rc=0 load
  load=$(cut -d' ' -f1 /proc/loadavg)
  c0=$(cpu_ticks); children_cpu k0; t0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" >"$raw" 2>"$raw.err" || rc=$?
  t1=$(date +%s.%N); c1=$(cpu_ticks); children_cpu k1
  local hwm
  hwm=$(hwm_kb)
  printf '{"broker":"%s","round":%d,"workload":"%s","tool":"%s","rc":%d,"wall_s":%.3f,"cpu_s":%.2f,"client_cpu_s":%.2f,"rss_peak_kb":%d,"cold_cache":%s,"loadavg_before":%s,"raw":"%s"}\n' \
    "$broker" "$round" "$name" "$tool" "$rc" "$(calc "$t1 - $t0")" "$(calc "($c1 - $c0) / $clk_tck")" \
    "$(calc "$k1 - $k0")" "$hwm" "$cold" "$load" "$(basename "$raw")" >>"$out/runs.jsonl"
  if [ "$rc" -ne 0 ]; then
    log "  $name: exit $rc (see $raw.err)"
    tail -5 "$raw.err" >&2 || true
  else
    log "  $name: ok ($(calc "$t1 - $t0") s, broker cpu $(calc "($c1 - $c0) / $clk_tck") s, rss peak $((hwm / 1024)) MiB)"
  fi
}

# The Java tools as kafka-run-class.sh starts them (its tool heap is -Xmx256M; 512m here).
java_tool=(java -Xmx512m -Dlog4j2.configurationFile="$tool_log4j" -cp "$kafka_libs/*")

perf_produce() { # name partitions acks compression records
  local name=$1 parts=$2 acks=$3 comp=$4 n=$5 topic="jp-$1"
  "$loadgen" create-topic --bootstrap "127.0.0.1:$port" --topic "$topic" --partitions "$parts" >/dev/null
  run "$name" producer-perf $((60 + n / 10000)) "${java_tool[@]}" org.apache.kafka.tools.ProducerPerformance \
    --topic "$topic" --num-records "$n" --record-size 1024 --throughput -1 \
    --producer-props "bootstrap.servers=127.0.0.1:$port" "acks=$acks" "compression.type=$comp"
}

lg_produce() { # name partitions acks compression
  local name=$1 parts=$2 acks=$3 comp=$4 topic="lg-$1"
  "$loadgen" create-topic --bootstrap "127.0.0.1:$port" --topic "$topic" --partitions "$parts" >/dev/null
  run "$name" loadgen $((lg_seconds + 90)) "$loadgen" produce --bootstrap "127.0.0.1:$port" \
    --topic "$topic" --duration-s "$lg_seconds" --record-size 1024 --acks "$acks" --compression "$comp"
}

lg_e2e() { # name partitions rate seconds
  local name=$1 parts=$2 rate=$3 secs=$4 topic="e2e-$1"
  "$loadgen" create-topic --bootstrap "127.0.0.1:$port" --topic "$topic" --partitions "$parts" >/dev/null
  run "$name" loadgen $((secs + 120)) "$loadgen" e2e --bootstrap "127.0.0.1:$port" \
    --topic "$topic" --partitions "$parts" --duration-s "$secs" --rate "$rate" \
    --record-size 1024 --acks 1 --compression none --warmup-s "$warmup"
}

fixed_rate=""
bench_broker() {
  log "== round $round/$rounds: $broker: starting"
  local s0
  s0=$(date +%s.%N)
  if [ "$broker" = kafka ]; then start_kafka; else start_millrace; fi
  log "   ready on 127.0.0.1:$port in $(calc "$(date +%s.%N) - $s0") s (pid $broker_pid)"
  echo "5" >"/proc/$broker_pid/clear_refs" 2>/dev/null || true

  if [ "$mode" = full ]; then
    perf_produce perf-produce-p1-acks1-none 1 1 none "$perf_records"
    perf_produce perf-produce-p8-acks1-none 8 1 none "$fill_records"
    perf_produce perf-produce-p8-acksall-none 8 all none "$perf_records"
    perf_produce perf-produce-p8-acks1-lz4 8 1 lz4 "$perf_records"
  else
    perf_produce perf-produce-p8-acks1-none 8 1 none "$fill_records"
  fi
  # Consume from the start of the filled topic, page cache dropped first (from disk).
  COLD=$(cold_cache) run perf-consume-p8 consumer-perf $((60 + fill_records / 10000)) \
    "${java_tool[@]}" org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "127.0.0.1:$port" \
    --topic jp-perf-produce-p8-acks1-none --messages "$fill_records" --timeout 30000 --group "cp-$broker"
  COLD=$(cold_cache) run lg-consume-p8 loadgen $((60 + fill_records / 10000)) \
    "$loadgen" consume --bootstrap "127.0.0.1:$port" --topic jp-perf-produce-p8-acks1-none \
    --partitions 8 --records "$fill_records" --timeout-s $((30 + fill_records / 10000))

  if [ "$mode" = full ]; then
    lg_produce lg-produce-p1-acks1-none 1 1 none
    lg_produce lg-produce-p8-acks1-none 8 1 none
    lg_produce lg-produce-p8-acksall-none 8 all none
    lg_produce lg-produce-p8-acks1-lz4 8 1 lz4
    lg_e2e lg-e2e-max-p8 8 0 "$lg_seconds"
  else
    lg_produce lg-produce-p8-acks1-none 8 1 none
  fi
  # Fixed rate: half of Kafka's loadgen max (p8, acks=1, none) from this same run.
  if [ -z "$fixed_rate" ]; then
    fixed_rate=$(python3 -c '
import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r["broker"]=="kafka" and r["workload"]=="lg-produce-p8-acks1-none" and r["rc"]==0:
        print(int(json.load(open(sys.argv[2]+"/"+r["raw"]))["produce"]["msgs_per_s"]/2)); break
else: print(0)' "$out/runs.jsonl" "$out")
    [ "$fixed_rate" -gt 0 ] || fixed_rate=1000
    echo "$fixed_rate" >"$out/fixed_rate.txt"
  fi
  lg_e2e lg-e2e-fixed-p8 8 "$fixed_rate" "$rate_seconds"
  # And at a low rate where neither the client nor the broker is short of CPU.
  [ "$mode" = smoke ] || lg_e2e lg-e2e-20k-p8 8 20000 20

  cp "$work/broker.log" "$out/$broker-r$round-broker.log" 2>/dev/null || true
  # Large broker logs are not kept (the JVM's INFO log can be chatty).
  [ "$(stat -c %s "$out/$broker-r$round-broker.log" 2>/dev/null || echo 0)" -lt 5000000 ] || : >"$out/$broker-r$round-broker.log"
  stop_broker
  log "== round $round/$rounds: $broker: done"
}

# Machine and versions, for the report.
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo "+dirty" || true)
{
  echo "{"
  echo "\"mode\": \"$mode\","
  echo "\"date_utc\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "\"cpu\": \"$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)\","
  echo "\"cores\": $(nproc),"
  echo "\"mem_gib\": $(awk '/^MemTotal:/ {printf "%.1f", $2/1048576}' /proc/meminfo),"
  echo "\"kernel\": \"$(uname -r)\","
  echo "\"millrace_rev\": \"$rev$dirty\","
  echo "\"millrace_build\": \"$profile\","
  echo "\"kafka\": \"$kafka_version (KRaft, broker+controller, -Xmx1g -Xms1g G1)\","
  echo "\"jdk\": \"$(java -version 2>&1 | head -1 | sed 's/"/\\"/g')\","
  echo "\"librdkafka\": \"$(ls "$HOME"/.cargo/registry/src/*/ 2>/dev/null | sed -n 's/^rdkafka-sys-.*+//p' | head -1)\","
  echo "\"perf_records\": $perf_records, \"fill_records\": $fill_records,"
  echo "\"loadgen_seconds\": $lg_seconds, \"fixed_rate_seconds\": $rate_seconds, \"rounds\": $rounds"
  echo "}"
} >"$out/meta.json"

: >"$out/runs.jsonl"
for round in $(seq 1 "$rounds"); do
  for broker in kafka millrace; do
    bench_broker
  done
done
echo "$(( $(date +%s) - started_at ))" >"$out/elapsed_s.txt"

py=python3
[ -x "$cache/venv/bin/python" ] && py="$cache/venv/bin/python"
"$py" benches/report.py "$out"
log "results: $out (total $(( $(date +%s) - started_at )) s)"
# One closing line for CI: every workload run that exited 0 counts as passed. The smoke
# fails on any failed run (a broken harness); the full run only reports.
ok=$(grep -c '"rc":0,' "$out/runs.jsonl" || true)
total=$(grep -c . "$out/runs.jsonl" || true)
echo "bench: $ok passed, $((total - ok)) failed"
[ "$mode" = full ] || [ "$ok" -eq "$total" ]
