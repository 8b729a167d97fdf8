"""kafka-python group member: subscribe TOPIC in GROUP, auto commit every 200 ms, print
events (same protocol as the rdkafka member in tests/common/groups.rs) until stdin
closes, then commit and close.

Usage: group_member.py BOOTSTRAP TOPIC GROUP CLIENT_ID
Events, one per line: `@@ {"ev":"assignment","parts":[..]}`, `@@ {"ev":"msg","p":P,"o":O}`,
`@@ {"ev":"closed"}`. Bounded: exits after 300 s regardless.
"""
import json
import sys
import threading
import time

from kafka import KafkaConsumer


def emit(obj):
    sys.stdout.write("@@ " + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    bootstrap, topic, group, client_id = sys.argv[1:5]
    stop = threading.Event()

    def watch_stdin():
        for _ in sys.stdin:
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             client_id=client_id, auto_offset_reset="earliest",
                             enable_auto_commit=True, auto_commit_interval_ms=200,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000)
    last = None
    deadline = time.monotonic() + 300
    while not stop.is_set() and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=100).items():
            for r in records:
                emit({"ev": "msg", "p": r.partition, "o": r.offset})
        now = sorted(tp.partition for tp in consumer.assignment())
        if now != last:
            emit({"ev": "assignment", "parts": now})
            last = now
    consumer.commit()
    consumer.close()
    emit({"ev": "closed"})


if __name__ == "__main__":
    main()
