#!/usr/bin/env bash
# Runs a three-node combined (broker,controller) millrace cluster on this machine: free
# ports, one data dir per node under DIR (default: a new temp dir), logs beside them.
# Prints the nodes and a bootstrap list, then waits; Ctrl-C (or SIGTERM) stops all three.
# Restart a killed node by hand with the command line `ps` shows for it.
#
#   scripts/cluster.sh [DIR] [-- extra `millrace serve` args for every node]
#
# MILLRACE_BIN picks the binary (default: a release build of this checkout).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
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

# Six distinct free ports (two per node), asked of the kernel.
mapfile -t ports < <(python3 - <<'PY'
import socket
socks = []
for _ in range(6):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
)
voters="1@127.0.0.1:${ports[1]},2@127.0.0.1:${ports[3]},3@127.0.0.1:${ports[5]}"
bootstrap="127.0.0.1:${ports[0]},127.0.0.1:${ports[2]},127.0.0.1:${ports[4]}"

pids=()
stop() {
    trap - INT TERM EXIT
    echo "stopping nodes ${pids[*]}" >&2
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

for n in 1 2 3; do
    client=${ports[$(( (n - 1) * 2 ))]}
    controller=${ports[$(( (n - 1) * 2 + 1 ))]}
    mkdir -p "$dir/node$n"
    "$MILLRACE_BIN" serve \
        --override "node.id=$n" \
        --override "process.roles=broker,controller" \
        --override "controller.quorum.voters=$voters" \
        --override "listeners=PLAINTEXT://127.0.0.1:$client,CONTROLLER://127.0.0.1:$controller" \
        --override "controller.listener.names=CONTROLLER" \
        --override "inter.broker.listener.name=PLAINTEXT" \
        --override "log.dirs=$dir/node$n/data" \
        "${extra[@]}" >"$dir/node$n/millrace.log" 2>&1 &
    pids+=($!)
    echo "node $n: pid $! client 127.0.0.1:$client controller 127.0.0.1:$controller data $dir/node$n/data log $dir/node$n/millrace.log"
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
