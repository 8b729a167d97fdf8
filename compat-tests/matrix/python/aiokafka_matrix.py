"""aiokafka (asyncio) in the client matrix (compat-tests/matrix/SCENARIO.md).

The scenario's control flow (matrix_common) is synchronous: each call here runs one
aiokafka coroutine to completion on a loop shared by every consumer and producer of
the phase, so the clients' background tasks (heartbeats, rebalances) run whenever any
call is in progress, and the driver is always in one.

Usage: aiokafka_matrix.py <phase> --bootstrap H:P --topic T --group G --records N --batch B
"""
import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import matrix_common as mc

LOOP = asyncio.new_event_loop()


def run(coro):
    return LOOP.run_until_complete(coro)


async def call(fn, *args):
    """Calls `fn` on the loop (aiokafka's pause/resume need a running loop)."""
    return fn(*args)


class Member:
    def __init__(self, name, bootstrap, topic, group):
        self.consumer = run(self._start(name, bootstrap, topic, group))

    @staticmethod
    async def _start(name, bootstrap, topic, group):
        # aiokafka binds a client to the running loop: create it inside a coroutine.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id=f"matrix-{name}",
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=mc.SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=mc.HEARTBEAT_INTERVAL_MS)

        class CommitOnRevoke(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                if revoked:
                    await consumer.commit()

            async def on_partitions_assigned(self, assigned):
                pass

        await consumer.start()
        consumer.subscribe([topic], listener=CommitOnRevoke())
        return consumer

    def poll(self, max_records, timeout_s):
        got = run(self.consumer.getmany(timeout_ms=int(timeout_s * 1000),
                                        max_records=max_records))
        return [(r.partition, r.offset, r.key, r.value, list(r.headers))
                for records in got.values() for r in records]

    def assignment(self):
        return {tp.partition for tp in self.consumer.assignment()}

    def _tps(self, partitions):
        return [tp for tp in self.consumer.assignment() if tp.partition in partitions]

    def end_offsets(self):
        ends = run(self.consumer.end_offsets(list(self.consumer.assignment())))
        return {tp.partition: end for tp, end in ends.items()}

    def pause(self, partitions):
        run(call(self.consumer.pause, *self._tps(partitions)))

    def resume(self, partitions):
        run(call(self.consumer.resume, *self._tps(partitions)))

    def commit(self):
        if self.consumer.assignment():
            run(self.consumer.commit())

    def close(self):
        run(self.consumer.stop())


class Client:
    unsupported_codecs = {}

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def admin(self, topic, deadline):
        async def go():
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(topic, 3, 1)])
                listed = topic in await admin.list_topics()
                described = await admin.describe_topics([topic])
                assert len(described) == 1 and described[0]["error_code"] == 0, described
                return listed, len(described[0]["partitions"])
            finally:
                await admin.close()
        return run(asyncio.wait_for(go(), max(deadline.left(), 1)))

    def produce(self, topic, codec, records, deadline):
        async def go():
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all",
                compression_type=None if codec == "none" else codec)
            await producer.start()
            try:
                futures = [await producer.send(topic, key=k, value=v, headers=[("h", h)])
                           for k, v, h in records]
                return len(await asyncio.gather(*futures))
            finally:
                await producer.stop()
        return run(asyncio.wait_for(go(), max(deadline.left(), 1)))

    def member(self, name, topic, group):
        return Member(name, self.bootstrap, topic, group)


if __name__ == "__main__":
    args = mc.parse_args(None)
    mc.run(Client(args.bootstrap))
