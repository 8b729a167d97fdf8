"""kafka-python in the client matrix (compat-tests/matrix/SCENARIO.md).

Usage: kafka_python_matrix.py <phase> --bootstrap H:P --topic T --group G --records N --batch B
"""
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

import matrix_common as mc


class Member:
    def __init__(self, name, bootstrap, topic, group):
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id=f"matrix-{name}",
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=mc.SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=mc.HEARTBEAT_INTERVAL_MS)
        consumer = self.consumer

        # The listener runs on the client's IO thread, where blocking calls are refused:
        # the async listener awaits the commit instead (still done before the rejoin).
        class CommitOnRevoke(AsyncConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                if revoked:
                    await consumer.commit_async()

            async def on_partitions_assigned(self, assigned):
                pass

        consumer.subscribe([topic], listener=CommitOnRevoke())
        self.paused = set()

    def poll(self, max_records, timeout_s):
        got = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out = []
        for tp, records in got.items():
            if tp.partition in self.paused:
                # Not handed out: rewind so they are fetched again once resumed.
                self.consumer.seek(tp, records[0].offset)
                continue
            out += [(r.partition, r.offset, r.key, r.value, [(k, v) for k, v in r.headers])
                    for r in records]
        return out

    def assignment(self):
        return {tp.partition for tp in self.consumer.assignment()}

    def end_offsets(self):
        ends = self.consumer.end_offsets(list(self.consumer.assignment()))
        return {tp.partition: end for tp, end in ends.items()}

    # kafka-python 3.0.12's own pause() parks the records it has buffered for a paused
    # partition and keeps them across a rebalance; once a rebalance had given a paused
    # partition back, no more of its records came (seen on Kafka and millrace alike).
    # So pausing is done here: records of a paused partition are not handed out and
    # the position is rewound to the first of them (the offsets to commit stay put).
    def pause(self, partitions):
        self.paused |= set(partitions)

    def resume(self, partitions):
        self.paused -= set(partitions)

    def commit(self):
        self.consumer.commit()

    def close(self):
        self.consumer.close()


class Client:
    unsupported_codecs = {}

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def admin(self, topic, deadline):
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, 3, 1)])
            listed = topic in admin.list_topics()
            described = admin.describe_topics([topic])
            assert len(described) == 1 and described[0]["error_code"] == 0, described
            return listed, len(described[0]["partitions"])
        finally:
            admin.close()

    def produce(self, topic, codec, records, deadline):
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all",
            compression_type=None if codec == "none" else codec)
        try:
            futures = [producer.send(topic, key=k, value=v, headers=[("h", h)])
                       for k, v, h in records]
            producer.flush(timeout=max(deadline.left(), 1))
            return sum(1 for f in futures if f.get(timeout=max(deadline.left(), 1)))
        finally:
            producer.close()

    def member(self, name, topic, group):
        return Member(name, self.bootstrap, topic, group)


if __name__ == "__main__":
    args = mc.parse_args(None)
    mc.run(Client(args.bootstrap))
