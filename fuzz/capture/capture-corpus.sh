#!/usr/bin/env bash
# Refreshes the fuzz seed corpus from real clients: starts a millrace broker behind a
# recording proxy (advertised at the proxy's address, so every client connection goes through
# it), drives kcat (librdkafka), the rdkafka crate (millrace-loadgen), kafka-python and
# Apache Kafka's Java CLI tools through produce (every codec), consume, consumer groups
# and topic admin, then splits what the broker stored into batch and __consumer_offsets
# seeds. Writes into fuzz/corpus/<target>/ (existing files are kept).
#
# Needs scripts/install-deps.sh's tools and a built broker: MILLRACE_BIN (default
# $CARGO_TARGET_DIR/debug/millrace) and millrace-loadgen next to it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/millrace-target}
bin=${MILLRACE_BIN:-$CARGO_TARGET_DIR/debug/millrace}
loadgen=$(dirname "$bin")/millrace-loadgen
cache=${MILLRACE_CACHE:-$HOME/.cache/millrace}
corpus=$root/fuzz/corpus

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The broker listens on 127.0.0.1:port and advertises 127.0.0.2 (the proxy) with the same
# port: it advertises its listener's port whatever advertised.listeners says.
port=$(free_port)
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --override "listeners=PLAINTEXT://127.0.0.1:$port" \
    --override "advertised.listeners=PLAINTEXT://127.0.0.2:$port" \
    --override "log.dirs=$work/data" --override "num.partitions=1" \
    --override "group.initial.rebalance.delay.ms=0" >"$work/broker.log" 2>&1 &
pids+=($!)
python3 "$here/proxy.py" 127.0.0.2 "$port" "$corpus/decode_request" &
pids+=($!)
b=127.0.0.2:$port
for _ in $(seq 100); do kcat -b "$b" -L -m 1 >/dev/null 2>&1 && break; sleep 0.2; done

# librdkafka sends a batch uncompressed when compression does not make it smaller.
filler=$(printf 'compressible %.0s' $(seq 20))

echo "== kcat"
kcat -b "$b" -L >/dev/null
for codec in none gzip snappy lz4 zstd; do
    seq 1 20 | sed "s/^/kcat-$codec-/; s/$/ $filler/" | kcat -b "$b" -P -t "kcat-$codec" -z "$codec" -K: -H h1=v1
done
kcat -b "$b" -C -t kcat-zstd -o beginning -c 20 -e -q >/dev/null
timeout 20 kcat -b "$b" -G kcat-group kcat-gzip -o beginning -c 20 -q >/dev/null || true

echo "== rdkafka crate (millrace-loadgen)"
"$loadgen" create-topic --bootstrap "$b" --topic rdkafka-lz4 --partitions 2 >/dev/null
"$loadgen" produce --bootstrap "$b" --topic rdkafka-lz4 --records 200 --record-size 64 \
    --acks all --compression lz4 --duration-s 10 >/dev/null
"$loadgen" consume --bootstrap "$b" --topic rdkafka-lz4 --partitions 2 --records 200 \
    --timeout-s 20 >/dev/null

echo "== kafka-python"
"$cache/venv/bin/python" - "$b" <<'PY'
import sys
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
b = sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=b)
admin.create_topics([NewTopic("py-admin", 2, 1)])
admin.list_topics()
admin.delete_topics(["py-admin"])
for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
    topic = f"py-{codec or 'none'}"
    try:
        p = KafkaProducer(bootstrap_servers=b, compression_type=codec, acks="all")
    except RuntimeError:  # the venv has no library for this codec
        continue
    for i in range(20):
        p.send(topic, key=b"k%d" % i, value=b"python-%d" % i, headers=[("h", b"v")])
    p.flush()
    p.close()
c = KafkaConsumer("py-gzip", bootstrap_servers=b, group_id="py-group",
                  auto_offset_reset="earliest", consumer_timeout_ms=5000)
n = sum(1 for _ in zip(range(20), c))
c.commit()
c.close()
print("kafka-python consumed", n)
PY

echo "== Java CLI tools"
java_tool() {
    java -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto -cp "$cache/kafka-libs/*" "$@"
}
java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --create --topic java-admin --partitions 3 >/dev/null
java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --list >/dev/null
java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --describe --topic java-admin >/dev/null
for codec in none gzip snappy lz4 zstd; do
    seq 1 20 | sed "s/^/java-$codec-/; s/$/ $filler/" | java_tool org.apache.kafka.tools.ConsoleProducer \
        --bootstrap-server "$b" --topic "java-$codec" --compression-codec "$codec" >/dev/null
done
java_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$b" \
    --topic java-snappy --group java-group --from-beginning --max-messages 20 >/dev/null
java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --delete --topic java-admin >/dev/null

# Let the broker write what it holds, then split the logs.
kill "${pids[0]}"; wait "${pids[0]}" || true
python3 "$here/split_log.py" "$work/data" "$corpus/decode_stored_batch" "$corpus/consumer_offsets_record"
mkdir -p "$corpus/validate_batch"
cp -n "$corpus/decode_stored_batch/"* "$corpus/validate_batch/"
for t in decode_request decode_stored_batch validate_batch consumer_offsets_record; do
    echo "$t: $(ls "$corpus/$t" | wc -l) files, $(du -sh "$corpus/$t" | cut -f1)"
done
