"""kafka-python against a broker: admin create/list/delete topics, acks=all produce,
manual-assign consume with seek_to_beginning and seek.

Usage: kafka_python_roundtrip.py BOOTSTRAP TOPIC
Prints one JSON summary line on stdout; exits non-zero (with the reason on stderr)
on any mismatch. Every wait is bounded by a deadline.
"""
import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

PARTITIONS = 3
N = 300
SEEK_PARTITION = 0
SEEK_OFFSET = 50


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def wait_for(what, cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = cond()
        if ok:
            return last
        time.sleep(0.1)
    fail("timed out after %ss waiting for %s; last: %r" % (timeout, what, last))


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    summary = {"topic": topic}

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-py-admin",
                             request_timeout_ms=30000)
    admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})

    def created():
        names = admin.list_topics()
        if topic not in names:
            return False, "not listed"
        desc = [t for t in admin.describe_topics([topic]) if t["name"] == topic]
        parts = desc[0]["partitions"] if desc else []
        led = [p for p in parts if p.get("leader_id", p.get("leader", -1)) >= 0]
        return len(led) == PARTITIONS, "partitions with leader: %d" % len(led)

    wait_for("topic created with %d led partitions" % PARTITIONS, created)
    summary["listed_after_create"] = topic in admin.list_topics()
    desc = [t for t in admin.describe_topics([topic]) if t["name"] == topic][0]
    summary["partitions"] = len(desc["partitions"])

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             client_id="compat-py-producer")
    sent = {p: [] for p in range(PARTITIONS)}  # partition -> [(offset, key, value)]
    futures = []
    for i in range(N):
        p = i % PARTITIONS
        key = ("k%d" % i).encode()
        value = ("value-%d-" % i).encode() + bytes(range(i % 64))
        futures.append((p, key, value, producer.send(topic, key=key, value=value, partition=p)))
    for p, key, value, fut in futures:
        md = fut.get(timeout=30)
        if md.partition != p:
            fail("sent to partition %d, metadata says %d" % (p, md.partition))
        sent[p].append((md.offset, key, value))
    producer.flush(timeout=30)
    producer.close(timeout=30)
    for p in range(PARTITIONS):
        offsets = [o for o, _, _ in sent[p]]
        if offsets != list(range(len(offsets))):
            fail("partition %d: acked offsets not 0..n in send order: %r" % (p, offsets[:10]))
    summary["produced"] = sum(len(v) for v in sent.values())

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, client_id="compat-py-consumer",
                             check_crcs=True)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got = {p: [] for p in range(PARTITIONS)}

    def poll_until(count):
        for tp, records in consumer.poll(timeout_ms=200).items():
            for r in records:
                got[tp.partition].append((r.offset, r.key, r.value))
        n = sum(len(v) for v in got.values())
        return n >= count, n

    wait_for("%d records from the beginning" % N, lambda: poll_until(N))
    for p in range(PARTITIONS):
        if got[p] != sent[p]:
            fail("partition %d: consumed %r... != produced %r..." % (p, got[p][:3], sent[p][:3]))
    summary["consumed"] = sum(len(v) for v in got.values())
    summary["consumed_per_partition"] = [len(got[p]) for p in range(PARTITIONS)]

    # seek(tp, offset): re-read one partition from the middle.
    tp = TopicPartition(topic, SEEK_PARTITION)
    consumer.assign([tp])
    consumer.seek(tp, SEEK_OFFSET)
    expected = sent[SEEK_PARTITION][SEEK_OFFSET:]
    got = {p: [] for p in range(PARTITIONS)}
    wait_for("records after seek", lambda: poll_until(len(expected)))
    if got[SEEK_PARTITION] != expected:
        fail("after seek(%d): got %r... expected %r..." % (
            SEEK_OFFSET, got[SEEK_PARTITION][:3], expected[:3]))
    summary["seek_first_offset"] = got[SEEK_PARTITION][0][0]
    summary["seek_records"] = len(got[SEEK_PARTITION])
    consumer.close()

    admin.delete_topics([topic])

    def deleted():
        return topic not in admin.list_topics(), "still listed"

    wait_for("topic deleted", deleted)
    summary["listed_after_delete"] = topic in admin.list_topics()
    admin.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
