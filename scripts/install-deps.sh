#!/usr/bin/env bash
# Installs everything the build and the compat tests need, idempotently:
#   apt:   librocksdb-dev + libclang-dev (link Debian's RocksDB instead of a 30-minute
#          source build), kcat (a real librdkafka client), python venv support
#   pip:   kafka-python, aiokafka, confluent-kafka + codecs (and matplotlib for scripts/bench.sh), into a venv under the cache dir
#   Maven: Apache Kafka's own jars (clients, tools, broker) for the stock CLI tools
#   cargo: cargo-fuzz and a nightly toolchain for scripts/fuzz.sh
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
  apt_pkgs=(librocksdb-dev libclang-dev kcat pkg-config)
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
