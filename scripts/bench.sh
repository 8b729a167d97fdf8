#!/usr/bin/env bash
# Side-by-side benchmark: Millrace vs Apache Kafka 4.4.0 on this machine, same clients.
#
#   scripts/bench.sh            full run (release build, ~10 minutes, a few GiB of disk)
#   scripts/bench.sh --smoke    seconds-long variant with tiny counts (CI; debug build)
#   scripts/bench.sh --cluster  three-node Millrace cluster vs three-node Kafka cluster
#                               (release build, ~10 minutes; with --smoke: tiny counts)
#   scripts/bench.sh --txn      transactional produce only: compat-tests/txn/TxnScenarios's
#                               bench (Apache Kafka's Java producer, 100 records of 100 B
#                               per transaction, 2 partitions) for the loadgen duration,
#                               Millrace vs Kafka (with --smoke: 2 s each)
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
#
# --cluster: three combined (broker,controller) nodes per system, one system at a time,
# each node on its own loopback ports and data dir (as scripts/cluster.sh runs Millrace;
# Kafka: every node's storage formatted with one cluster id, static controller.quorum.voters).
# Overrides on both: offsets.topic.replication.factor=3, min.insync.replicas=2,
# default.replication.factor=3. Topics have replication factor 3, every produce is
# acks=all. A system is ready when a replication-factor-3 topic can be created and all
# three replicas of it are in sync. CPU and peak RSS are summed over the three nodes.
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
nodes=1
txn_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) mode=smoke ;;
    --cluster) nodes=3 ;;
    --txn) txn_only=true ;;
    --out) out=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    *) echo "usage: $0 [--smoke] [--cluster] [--txn] [--out DIR] [--rounds N]" >&2; exit 2 ;;
  esac
  shift
done
suffix=${mode/full/}
[ "$nodes" -eq 1 ] || suffix="$suffix-cluster"
[ "$txn_only" = false ] || suffix="$suffix-txn"
[ -n "$out" ] || out="$root/benches/results/$(date -u +%Y%m%dT%H%M%SZ)$suffix"
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
  if [ "$nodes" -gt 1 ]; then
    # Every byte is written three times on the same two cores: smaller counts keep
    # each workload well under a minute.
    perf_records=300000
    fill_records=500000
    lg_seconds=10
    rate_seconds=15
  fi
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
pids=() # the running system's nodes (one broker, or the cluster's three)
cleanup() {
  local rc=$? pid
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Tools run in the foreground under `timeout`, so nothing else can be left behind.
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two distinct free ports per node (client, controller), all held open at once so none
# repeats: sets ports[], bootstrap (the client listeners) and voters.
alloc_ports() {
  mapfile -t ports < <(python3 - "$((2 * nodes))" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
)
  local n
  bootstrap=""
  voters=""
  for n in $(seq 1 "$nodes"); do
    bootstrap+="${bootstrap:+,}127.0.0.1:${ports[$((2 * n - 2))]}"
    voters+="${voters:+,}$n@127.0.0.1:${ports[$((2 * n - 1))]}"
  done
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
  "offsets.topic.replication.factor=$nodes"
  "num.partitions=1"
)
if [ "$nodes" -gt 1 ]; then
  common_overrides+=("min.insync.replicas=2" "default.replication.factor=$nodes")
fi

node_log() { echo "$work/node$1/broker.log"; }

# Ready: a topic with one replica per node can be created (so every node is registered
# and unfenced) and all its replicas are in sync. Bounded; fails if a node exits.
wait_ready() {
  local deadline=$((SECONDS + 180)) n
  while [ "$SECONDS" -lt "$deadline" ]; do
    for n in $(seq 1 "$nodes"); do
      kill -0 "${pids[$((n - 1))]}" 2>/dev/null || {
        echo "node $n exited during start" >&2; tail -50 "$(node_log "$n")" >&2; exit 1; }
    done
    if timeout 40 "$loadgen" create-topic --bootstrap "$bootstrap" --topic bench-ready \
      --partitions 1 --replication-factor "$nodes" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "$broker not ready within 180 s" >&2
  for n in $(seq 1 "$nodes"); do tail -30 "$(node_log "$n")" >&2; done
  exit 1
}

start_millrace() {
  alloc_ports
  local n d kv client controller
  for n in $(seq 1 "$nodes"); do
    d="$work/node$n"
    rm -rf "$d"; mkdir -p "$d/data"
    client=${ports[$((2 * n - 2))]}
    controller=${ports[$((2 * n - 1))]}
    local args=(serve --override "log.dirs=$d/data")
    if [ "$nodes" -eq 1 ]; then
      args+=(--override "listeners=PLAINTEXT://127.0.0.1:$client")
    else
      args+=(--override "node.id=$n" --override "process.roles=broker,controller"
        --override "controller.quorum.voters=$voters"
        --override "listeners=PLAINTEXT://127.0.0.1:$client,CONTROLLER://127.0.0.1:$controller"
        --override "controller.listener.names=CONTROLLER"
        --override "inter.broker.listener.name=PLAINTEXT")
    fi
    for kv in "${common_overrides[@]}"; do args+=(--override "$kv"); done
    RUST_LOG=info "$millrace_bin" "${args[@]}" >"$d/broker.log" 2>&1 &
    pids+=($!)
  done
  wait_ready
}

start_kafka() {
  alloc_ports
  cat > "$work/kafka-log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
EOF
  local cid n d kv client controller
  # Top bit cleared: an id starting with '-' would be parsed as an option by kafka-storage.
  cid=$(python3 -c 'import base64,os; b=bytearray(os.urandom(16)); b[0]&=0x7f; print(base64.urlsafe_b64encode(b).decode().rstrip("="))')
  for n in $(seq 1 "$nodes"); do
    d="$work/node$n"
    rm -rf "$d"; mkdir -p "$d/data"
    client=${ports[$((2 * n - 2))]}
    controller=${ports[$((2 * n - 1))]}
    {
      echo "process.roles=broker,controller"
      echo "node.id=$n"
      echo "controller.quorum.voters=$voters"
      echo "listeners=PLAINTEXT://127.0.0.1:$client,CONTROLLER://127.0.0.1:$controller"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$client"
      echo "controller.listener.names=CONTROLLER"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
      echo "log.dirs=$d/data"
      # A single node needs 1; a cluster keeps Kafka's defaults (3 and 2).
      if [ "$nodes" -eq 1 ]; then
        echo "transaction.state.log.replication.factor=1"
        echo "transaction.state.log.min.isr=1"
      fi
      for kv in "${common_overrides[@]}"; do echo "$kv"; done
    } >"$d/server.properties"
    # Every node formatted with the same cluster id (static voters: no --standalone).
    timeout 120 java -Xmx256m -Dlog4j2.configurationFile="$work/kafka-log4j2.properties" \
      -cp "$kafka_libs/*" kafka.tools.StorageTool format -t "$cid" -c "$d/server.properties" \
      >"$d/format.log" 2>&1 || { cat "$d/format.log" >&2; exit 1; }
  done
  for n in $(seq 1 "$nodes"); do
    d="$work/node$n"
    # kafka-server-start.sh's defaults (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS).
    java -Xmx1g -Xms1g -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$work/kafka-log4j2.properties" \
      -cp "$kafka_libs/*" kafka.Kafka "$d/server.properties" >"$d/broker.log" 2>&1 &
    pids+=($!)
  done
  wait_ready
}

# Stops every node (SIGTERM to all at once, SIGKILL after 30 s) and removes the data.
stop_broker() {
  [ "${#pids[@]}" -gt 0 ] || return 0
  local pid deadline=$((SECONDS + 30))
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  rm -rf "$work"/node*
}

# Summed over the nodes; a node that has exited counts 0 (alive_nodes says so).
cpu_ticks() {
  local pid t=0
  for pid in "${pids[@]}"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
hwm_kb() {
  local pid t=0
  for pid in "${pids[@]}"; do
    t=$((t + $(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
clear_hwm() {
  local pid
  for pid in "${pids[@]}"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}
alive_nodes() {
  local pid a=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && a=$((a + 1)); done
  echo "$a"
}
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

# run NAME TOOL TIMEOUT_S COMMAND...: runs one workload against the current broker (or
# cluster), recording its output, the broker's CPU time and peak RSS over the workload,
# and how many nodes are still running after it.
run() {
  local name=$1 tool=$2 limit=$3
  shift 3
  local raw="$out/$broker-r$round-$name.txt" cold=${COLD:-false}
  clear_hwm
  local c0 t0 c1 t1 k0 k1 rc=0 load
  load=$(cut -d' ' -f1 /proc/loadavg)
  c0=$(cpu_ticks); children_cpu k0; t0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" >"$raw" 2>"$raw.err" || rc=$?
  t1=$(date +%s.%N); c1=$(cpu_ticks); children_cpu k1
  local hwm alive
  hwm=$(hwm_kb)
  alive=$(alive_nodes)
  printf '{"broker":"%s","round":%d,"workload":"%s","tool":"%s","rc":%d,"wall_s":%.3f,"cpu_s":%.2f,"client_cpu_s":%.2f,"rss_peak_kb":%d,"cold_cache":%s,"loadavg_before":%s,"nodes_alive":%d,"raw":"%s"}\n' \
    "$broker" "$round" "$name" "$tool" "$rc" "$(calc "$t1 - $t0")" "$(calc "($c1 - $c0) / $clk_tck")" \
    "$(calc "$k1 - $k0")" "$hwm" "$cold" "$load" "$alive" "$(basename "$raw")" >>"$out/runs.jsonl"
  [ "$alive" -eq "$nodes" ] || log "  $name: only $alive of $nodes nodes still running"
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
  "$loadgen" create-topic --bootstrap "$bootstrap" --topic "$topic" --partitions "$parts" \
    --replication-factor "$nodes" >/dev/null
  run "$name" producer-perf $((60 + n / 10000)) "${java_tool[@]}" org.apache.kafka.tools.ProducerPerformance \
    --topic "$topic" --num-records "$n" --record-size 1024 --throughput -1 \
    --producer-props "bootstrap.servers=$bootstrap" "acks=$acks" "compression.type=$comp"
}

lg_produce() { # name partitions acks compression
  local name=$1 parts=$2 acks=$3 comp=$4 topic="lg-$1"
  "$loadgen" create-topic --bootstrap "$bootstrap" --topic "$topic" --partitions "$parts" \
    --replication-factor "$nodes" >/dev/null
  run "$name" loadgen $((lg_seconds + 90)) "$loadgen" produce --bootstrap "$bootstrap" \
    --topic "$topic" --duration-s "$lg_seconds" --record-size 1024 --acks "$acks" --compression "$comp"
}

lg_e2e() { # name partitions rate seconds [acks]
  local name=$1 parts=$2 rate=$3 secs=$4 acks=${5:-1} topic="e2e-$1"
  "$loadgen" create-topic --bootstrap "$bootstrap" --topic "$topic" --partitions "$parts" \
    --replication-factor "$nodes" >/dev/null
  run "$name" loadgen $((secs + 120)) "$loadgen" e2e --bootstrap "$bootstrap" \
    --topic "$topic" --partitions "$parts" --duration-s "$secs" --rate "$rate" \
    --record-size 1024 --acks "$acks" --compression none --warmup-s "$warmup"
}

# Transactional produce: one transactional KafkaProducer, 100 records per transaction
# (TxnScenarios creates its 2-partition topic itself, replication factor 1).
txn_produce() { # name
  run "$1" txn-scenarios $((lg_seconds + 120)) env TXN_BENCH_SECONDS="$lg_seconds" \
    java -Xmx512m -Dlog4j2.configurationFile="$tool_log4j" \
    -cp "$cache/java/txn/classes:$kafka_libs/*" TxnScenarios "$bootstrap" "bench-$broker-r$round" bench
}

fixed_rate=""
bench_broker() {
  log "== round $round/$rounds: $broker: starting"
  local s0
  s0=$(date +%s.%N)
  if [ "$broker" = kafka ]; then start_kafka; else start_millrace; fi
  log "   ready on $bootstrap in $(calc "$(date +%s.%N) - $s0") s (pids ${pids[*]})"
  clear_hwm
  if [ "$txn_only" = true ]; then
    txn_produce txn-produce-p2-100
    stop_broker
    log "== round $round/$rounds: $broker: done"
    return
  fi

  # The topic the consume workloads read from the start, filled by a ProducerPerformance
  # run; the loadgen workload whose maximum sets the fixed rate.
  local fill rate_ref
  if [ "$nodes" -gt 1 ]; then
    fill=perf-produce-p8-acksall-none
    rate_ref=lg-produce-p8-acksall-none
    [ "$mode" = smoke ] || perf_produce perf-produce-p1-acksall-none 1 all none "$perf_records"
    perf_produce "$fill" 8 all none "$fill_records"
  elif [ "$mode" = full ]; then
    fill=perf-produce-p8-acks1-none
    rate_ref=lg-produce-p8-acks1-none
    perf_produce perf-produce-p1-acks1-none 1 1 none "$perf_records"
    perf_produce "$fill" 8 1 none "$fill_records"
    perf_produce perf-produce-p8-acksall-none 8 all none "$perf_records"
    perf_produce perf-produce-p8-acks1-lz4 8 1 lz4 "$perf_records"
  else
    fill=perf-produce-p8-acks1-none
    rate_ref=lg-produce-p8-acks1-none
    perf_produce "$fill" 8 1 none "$fill_records"
  fi
  # Consume from the start of the filled topic, page cache dropped first (from disk).
  COLD=$(cold_cache) run perf-consume-p8 consumer-perf $((60 + fill_records / 10000)) \
    "${java_tool[@]}" org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bootstrap" \
    --topic "jp-$fill" --messages "$fill_records" --timeout 30000 --group "cp-$broker"
  COLD=$(cold_cache) run lg-consume-p8 loadgen $((60 + fill_records / 10000)) \
    "$loadgen" consume --bootstrap "$bootstrap" --topic "jp-$fill" \
    --partitions 8 --records "$fill_records" --timeout-s $((30 + fill_records / 10000))

  local sfx="" e2e_acks=1
  if [ "$nodes" -gt 1 ]; then
    sfx=-acksall
    e2e_acks=all
    lg_produce lg-produce-p8-acksall-none 8 all none
    [ "$mode" = smoke ] || lg_e2e lg-e2e-max-p8-acksall 8 0 "$lg_seconds" all
  elif [ "$mode" = full ]; then
    lg_produce lg-produce-p1-acks1-none 1 1 none
    lg_produce lg-produce-p8-acks1-none 8 1 none
    lg_produce lg-produce-p8-acksall-none 8 all none
    lg_produce lg-produce-p8-acks1-lz4 8 1 lz4
    lg_e2e lg-e2e-max-p8 8 0 "$lg_seconds"
  else
    lg_produce lg-produce-p8-acks1-none 8 1 none
  fi
  # Fixed rate: half of Kafka's loadgen max ($rate_ref) from this same run.
  if [ -z "$fixed_rate" ]; then
    fixed_rate=$(python3 -c '
import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r["broker"]=="kafka" and r["workload"]==sys.argv[3] and r["rc"]==0:
        print(int(json.load(open(sys.argv[2]+"/"+r["raw"]))["produce"]["msgs_per_s"]/2)); break
else: print(0)' "$out/runs.jsonl" "$out" "$rate_ref")
    [ "$fixed_rate" -gt 0 ] || fixed_rate=1000
    echo "$fixed_rate" >"$out/fixed_rate.txt"
  fi
  lg_e2e "lg-e2e-fixed-p8$sfx" 8 "$fixed_rate" "$rate_seconds" "$e2e_acks"
  # And at a low rate where neither the client nor the broker is short of CPU.
  if [ "$mode" = full ]; then
    if [ "$nodes" -gt 1 ]; then
      lg_e2e lg-e2e-10k-p8-acksall 8 10000 15 all
    else
      lg_e2e lg-e2e-20k-p8 8 20000 20
    fi
  fi

  local n kept
  for n in $(seq 1 "$nodes"); do
    kept="$out/$broker-r$round-broker.log"
    [ "$nodes" -eq 1 ] || kept="$out/$broker-r$round-node$n-broker.log"
    cp "$(node_log "$n")" "$kept" 2>/dev/null || true
    # Large broker logs are not kept (the JVM's INFO log can be chatty).
    [ "$(stat -c %s "$kept" 2>/dev/null || echo 0)" -lt 5000000 ] || : >"$kept"
  done
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
  echo "\"nodes\": $nodes,"
  if [ "$nodes" -eq 1 ]; then
    echo "\"kafka\": \"$kafka_version (KRaft, broker+controller, -Xmx1g -Xms1g G1)\","
  else
    echo "\"kafka\": \"$kafka_version (KRaft, $nodes combined broker+controller nodes, each -Xmx1g -Xms1g G1)\","
  fi
  echo "\"jdk\": \"$(java -version 2>&1 | head -1 | sed 's/"/\\"/g')\","
  echo "\"librdkafka\": \"$(ls "$HOME"/.cargo/registry/src/*/ 2>/dev/null | sed -n 's/^rdkafka-sys-.*+//p' | head -1)\","
  echo "\"perf_records\": $perf_records, \"fill_records\": $fill_records,"
  echo "\"loadgen_seconds\": $lg_seconds, \"fixed_rate_seconds\": $rate_seconds, \"rounds\": $rounds"
  echo "}"
} >"$out/meta.json"

: >"$out/runs.jsonl"
# Kafka first in round 1 (its loadgen maximum sets the fixed rate); clusters alternate
# the order after that, so a slow drift of the machine's load hits both alike.
for round in $(seq 1 "$rounds"); do
  order="kafka millrace"
  [ "$nodes" -eq 1 ] || [ $((round % 2)) -eq 1 ] || order="millrace kafka"
  for broker in $order; do
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
