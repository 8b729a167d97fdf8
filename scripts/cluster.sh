#!/usr/bin/env bash
# Runs a three-node combined (broker,controller) millrace cluster on this machine: free
# ports, one data dir per node under DIR (default: a new temp dir), logs beside them.
# With --isolated, Kafka's isolated mode instead: three controller-only voters (nodes
# 1-3) and three broker-only nodes (4-6) that find them through
# controller.quorum.bootstrap.servers.
# Prints the nodes and a bootstrap list, then waits; Ctrl-C (or SIGTERM) stops them all.
# Restart a killed node by hand with the command line `ps` shows for it.
#
#   scripts/cluster.sh [--isolated] [DIR] [-- extra `millrace serve` args for every node]
#
# MILLRACE_BIN picks the binary (default: a release build of this checkout).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
isolated=""
if [[ ${1:-} == "--isolated" ]]; then
    isolated=1
    shift
fi
dir=""
if [[ $# -gt 0 && $1 != "--" ]]; then
    dir=$1
    shift
fi
[[ ${1:-} == "--" ]] && shift
extra=("$@")
dir=${dir:-$(mktemp -d -t millrace-cluster-XXXXXX)}
mkdir -p "$dir"

if [[ -z ${MILLRACE_BIN:-} ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/millrace-target}
    cargo build --release --bin millrace --manifest-path "$root/Cargo.toml" >&2
    MILLRACE_BIN=$CARGO_TARGET_DIR/release/millrace
fi

# Two distinct free ports per node (client, controller), asked of the kernel.
nodes=$([[ -n $isolated ]] && echo 6 || echo 3)
mapfile -t ports < <(python3 - "$((nodes * 2))" <<'PY'
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
voters="1@127.0.0.1:${ports[1]},2@127.0.0.1:${ports[3]},3@127.0.0.1:${ports[5]}"
controllers="127.0.0.1:${ports[1]},127.0.0.1:${ports[3]},127.0.0.1:${ports[5]}"
if [[ -n $isolated ]]; then
    bootstrap="127.0.0.1:${ports[6]},127.0.0.1:${ports[8]},127.0.0.1:${ports[10]}"
else
    bootstrap="127.0.0.1:${ports[0]},127.0.0.1:${ports[2]},127.0.0.1:${ports[4]}"
fi

pids=()
stop() {
    trap - INT TERM EXIT
    echo "stopping nodes ${pids[*]}" >&2
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

for n in $(seq 1 "$nodes"); do
    client=${ports[$(( (n - 1) * 2 ))]}
    controller=${ports[$(( (n - 1) * 2 + 1 ))]}
    mkdir -p "$dir/node$n"
    if [[ -z $isolated ]]; then
        role=(--override "process.roles=broker,controller"
            --override "controller.quorum.voters=$voters"
            --override "listeners=PLAINTEXT://127.0.0.1:$client,CONTROLLER://127.0.0.1:$controller")
        what="client 127.0.0.1:$client controller 127.0.0.1:$controller"
    elif [[ $n -le 3 ]]; then
        role=(--override "process.roles=controller"
            --override "controller.quorum.voters=$voters"
            --override "listeners=CONTROLLER://127.0.0.1:$controller")
        what="controller 127.0.0.1:$controller"
    else
        role=(--override "process.roles=broker"
            --override "controller.quorum.bootstrap.servers=$controllers"
            --override "listeners=PLAINTEXT://127.0.0.1:$client")
        what="client 127.0.0.1:$client"
    fi
    "$MILLRACE_BIN" serve \
        --override "node.id=$n" \
        "${role[@]}" \
        --override "controller.listener.names=CONTROLLER" \
        --override "inter.broker.listener.name=PLAINTEXT" \
        --override "log.dirs=$dir/node$n/data" \
        "${extra[@]}" >"$dir/node$n/millrace.log" 2>&1 &
    pids+=($!)
    echo "node $n: pid $! $what data $dir/node$n/data log $dir/node$n/millrace.log"
done
echo "bootstrap.servers=$bootstrap"
echo "Ctrl-C stops the cluster; data stays in $dir"
# A node that exits (or is killed, to try a failover) is reported; the others keep
# running until Ctrl-C or until none is left.
declare -A reported=()
while true; do
    alive=0
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            alive=$((alive + 1))
        elif [[ -z ${reported[$i]:-} ]]; then
            reported[$i]=1
            echo "node $((i + 1)) (pid ${pids[$i]}) exited; see $dir/node$((i + 1))/millrace.log" >&2
        fi
    done
    [[ $alive -eq 0 ]] && break
    sleep 1
done
