"""kafka-python in the client matrix (compat-tests/matrix/SCENARIO.md).

Usage: kafka_python_matrix.py <phase> --bootstrap H:P --topic T --group G --records N --batch B
"""
import threading
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

import matrix_common as mc

# One consumer.poll() of the background poller (see Member), in ms. Long, because a join
# that completes between two of them is still lost (seen with 200 ms slices under load);
# also how long a commit, end_offsets or close may wait for the poller to stop.
POLL_SLICE_MS = 1000

# Every member of the phase (close() stops all their pollers).
MEMBERS = []


class Member:
    """A kafka-python consumer whose poll() runs on a thread of its own.

    kafka-python 3.0.12 runs JoinGroup + SyncGroup as a task on its IO thread, and only a
    poll() waiting for that task takes its result: when the task completes while no poll()
    of that consumer is waiting (the scenario polls its members in turn), the next poll()
    throws the finished task away and sends a new JoinGroup (`join_group_async`: a done
    `_join_task` is replaced, not read). If that member is the group's leader, the new
    JoinGroup starts another rebalance (Kafka's rule for a leader rejoining a Stable
    group), which in turn makes the other member rejoin; under load the members can keep
    rebalancing until the phase's deadline. So each member polls continuously on its own
    thread while polls return nothing (joins happen there); once a poll returns records
    it stops until the scenario takes them, so pausing (a seek back) still happens
    between two polls. Every other consumer call first stops the poller, and close()
    stops every member's: otherwise the LeaveGroup of the member closed first makes the
    other's poller rejoin in the background, and kafka-python fails a close() during a
    rejoin (the revocation's commit is refused while rebalancing).
    """

    def __init__(self, name, bootstrap, topic, group):
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id=f"matrix-{name}",
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=mc.SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=mc.HEARTBEAT_INTERVAL_MS)
        consumer = self.consumer
        member = self
        self.closing = False

        # The listener runs on the client's IO thread, where blocking calls are refused:
        # the async listener awaits the commit instead (still done before the rejoin).
        # Not on close: the scenario has just committed (synchronously) what it read, and
        # kafka-python refuses the commit, failing close(), if a rejoin is under way then.
        class CommitOnRevoke(AsyncConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                if revoked and not member.closing:
                    await consumer.commit_async()

            async def on_partitions_assigned(self, assigned):
                pass

        consumer.subscribe([topic], listener=CommitOnRevoke())
        self.paused = set()
        self.poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"poll-{name}")
        # The poller's current run (a Future of its records), None when none is pending.
        self.polling = None
        self.stop_polling = threading.Event()
        MEMBERS.append(self)

    def _poll_until_records(self, max_records):
        while not self.stop_polling.is_set():
            got = self.consumer.poll(timeout_ms=POLL_SLICE_MS, max_records=max_records)
            if got:
                return got
        return {}

    def _quiesce(self):
        """Stops the poller; what it read waits for the next poll()."""
        if self.polling is not None:
            self.stop_polling.set()
            self.polling.result()
            self.stop_polling.clear()

    def poll(self, max_records, timeout_s):
        if self.polling is None:
            self.polling = self.poller.submit(self._poll_until_records, max_records)
        try:
            got = self.polling.result(timeout=timeout_s)
        except FutureTimeout:
            return []
        self.polling = None
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
        self._quiesce()
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
        self._quiesce()
        self.consumer.commit()

    def close(self):
        for member in MEMBERS:
            member._quiesce()
        self.closing = True
        self.consumer.close()
        self.poller.shutdown()


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
