"""confluent-kafka (librdkafka bundled in its wheel) in the client matrix
(compat-tests/matrix/SCENARIO.md).

Usage: confluent_kafka_matrix.py <phase> --bootstrap H:P --topic T --group G --records N --batch B
"""
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

import matrix_common as mc


class Member:
    def __init__(self, name, bootstrap, topic, group):
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": f"matrix-{name}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": mc.SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": mc.HEARTBEAT_INTERVAL_MS})

        def on_revoke(consumer, partitions):
            if partitions:
                self.commit()

        self.consumer.subscribe([topic], on_revoke=on_revoke)

    def poll(self, max_records, timeout_s):
        out = []
        for m in self.consumer.consume(num_messages=max_records, timeout=timeout_s):
            if m.error():
                raise KafkaException(m.error())
            out.append((m.partition(), m.offset(), m.key(), m.value(),
                        list(m.headers() or [])))
        return out

    def assignment(self):
        return {tp.partition for tp in self.consumer.assignment()}

    def _tps(self, partitions):
        return [tp for tp in self.consumer.assignment() if tp.partition in partitions]

    def end_offsets(self):
        return {tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10)[1]
                for tp in self.consumer.assignment()}

    def pause(self, partitions):
        self.consumer.pause(self._tps(partitions))

    def resume(self, partitions):
        self.consumer.resume(self._tps(partitions))

    def commit(self):
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as e:
            # Nothing read since the last commit: not a failure.
            if e.args[0].code() != KafkaError._NO_OFFSET:
                raise

    def close(self):
        self.consumer.close()


class Client:
    unsupported_codecs = {}

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def admin(self, topic, deadline):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
            f.result(timeout=max(deadline.left(), 1))
        # An all-topics Metadata request.
        listed = topic in admin.list_topics(timeout=max(deadline.left(), 1)).topics
        described = admin.describe_topics(TopicCollection([topic]))[topic].result(
            timeout=max(deadline.left(), 1))
        return listed, len(described.partitions)

    def produce(self, topic, codec, records, deadline):
        producer = Producer({
            "bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
            "compression.codec": codec})
        acked, errors = [0], []

        def on_delivery(err, msg):
            if err is None:
                acked[0] += 1
            else:
                errors.append(err)

        for k, v, h in records:
            producer.produce(topic, key=k, value=v, headers=[("h", h)], on_delivery=on_delivery)
            producer.poll(0)
        left = producer.flush(timeout=max(deadline.left(), 1))
        if left or errors:
            raise mc.PhaseFailed(f"{codec}: {left} unacknowledged, errors {errors[:3]}")
        return acked[0]

    def member(self, name, topic, group):
        return Member(name, self.bootstrap, topic, group)


if __name__ == "__main__":
    args = mc.parse_args(None)
    mc.run(Client(args.bootstrap))
