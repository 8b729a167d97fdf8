"""The client-matrix scenario (compat-tests/matrix/SCENARIO.md) for Python clients: the
argument parsing, the records, their checks and the phases' control flow live here;
each client's program (`<client>_matrix.py`) supplies only the client calls (a
`Client` with `admin`, `produce` and `member`, see `run`).

A phase prints its JSON summary as the last stdout line; everything else goes to
stderr. Every phase is bounded by PHASE_BUDGET_S.
"""
import argparse
import json
import logging
import os
import sys
import time

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PHASE_BUDGET_S = 85.0
# Consumer-group settings shared by every client: fast heartbeats so that a rebalance
# is noticed within a second; 6 s is the broker's minimum session timeout.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 500
# How long `resume` keeps reading after the last expected record, watching for re-reads.
RESUME_LINGER_S = 3.0


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


class PhaseFailed(Exception):
    pass


class Deadline:
    def __init__(self, seconds=PHASE_BUDGET_S):
        self.at = time.monotonic() + seconds

    def left(self):
        return self.at - time.monotonic()

    def check(self, what):
        if self.left() <= 0:
            raise PhaseFailed(f"deadline passed while {what}")


def record(batch, codec, i):
    """(key, value, header value) of record `i` of `batch` and `codec`, as bytes."""
    suffix = f"{batch}-{codec}-{i}"
    return f"k-{suffix}".encode(), f"v-{suffix}".encode(), suffix.encode()


class Tally:
    """Counts what the members of a group phase read, checking every record."""

    def __init__(self, batch):
        self.batch = batch
        self.seen = set()
        self.duplicates = 0
        self.mismatched = 0
        self.reread = 0
        self.per_member = {}

    def add(self, member, records):
        """`records`: (partition, offset, key, value, headers), headers a list of
        (name, bytes)."""
        for _, _, key, value, headers in records:
            self.per_member[member] = self.per_member.get(member, 0) + 1
            parts = (key or b"").decode("utf-8", "replace").split("-")
            if len(parts) != 4 or parts[0] != "k" or parts[2] not in CODECS \
                    or not parts[1].isdigit() or not parts[3].isdigit():
                self.mismatched += 1
                continue
            batch, codec, i = int(parts[1]), parts[2], int(parts[3])
            if batch < self.batch:
                self.reread += 1
                continue
            want_key, want_value, want_header = record(batch, codec, i)
            if batch != self.batch or value != want_value \
                    or list(headers or []) != [("h", want_header)]:
                self.mismatched += 1
                continue
            if key in self.seen:
                self.duplicates += 1
            self.seen.add(key)

    def count(self, member):
        return self.per_member.get(member, 0)


def parse_args(argv):
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=["admin", "produce", "group", "resume"])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    return p.parse_args(argv)


def phase_admin(client, args, deadline):
    listed, partitions = client.admin(args.topic, deadline)
    return {"phase": "admin", "listed": listed, "partitions": partitions}


def phase_produce(client, args, deadline):
    codecs, skipped, acked = [], {}, 0
    for codec in CODECS:
        reason = client.unsupported_codecs.get(codec)
        if reason is not None:
            skipped[codec] = reason
            continue
        records = [record(args.batch, codec, i) for i in range(args.records)]
        acked += client.produce(args.topic, codec, records, deadline)
        codecs.append(codec)
    return {"phase": "produce", "acked": acked, "codecs": codecs, "skipped_codecs": skipped}


def phase_group(client, args, deadline):
    expect = args.records
    tally = Tally(args.batch)
    a = client.member("a", args.topic, args.group)
    members = [a]
    try:
        # a reads one record at a time and stops short of the last record of every
        # partition (pausing it), so whatever b is given has something left to read.
        ends = None
        while tally.count("a") < expect // 2:
            deadline.check(f"member a read {tally.count('a')} of {expect // 2}")
            records = a.poll(1, 0.2)
            if records and ends is None:
                ends = a.end_offsets()
            for partition, offset, *_ in records:
                if offset + 2 >= ends[partition]:
                    a.pause({partition})
            tally.add("a", records)
        a.commit()
        before = a.assignment()
        a.pause(before)
        log(f"a read {tally.count('a')}, owns {sorted(before)}; b joins")
        b = client.member("b", args.topic, args.group)
        members.append(b)
        # a, paused, reads nothing until the group has rebalanced: done when a holds a
        # new assignment and b holds one.
        while a.assignment() in (before, set()) or not b.assignment():
            deadline.check(f"waiting for the rebalance: a owns {sorted(a.assignment())}, "
                           f"b owns {sorted(b.assignment())}")
            tally.add("a", a.poll(100, 0.05))
            tally.add("b", b.poll(100, 0.1))
        after = a.assignment()
        log(f"rebalanced: a owns {sorted(after)}, b owns {sorted(b.assignment())}")
        a.resume(after)
        while len(tally.seen) < expect:
            deadline.check(f"reading {len(tally.seen)} of {expect} records (a read "
                           f"{tally.count('a')}, b {tally.count('b')}, duplicates "
                           f"{tally.duplicates}, mismatched {tally.mismatched})")
            tally.add("a", a.poll(100, 0.05))
            tally.add("b", b.poll(100, 0.05))
        for m in members:
            m.commit()
    finally:
        for m in members:
            m.close()
    return {"phase": "group", "consumed": len(tally.seen), "duplicates": tally.duplicates,
            "mismatched": tally.mismatched + tally.reread, "a": tally.count("a"),
            "b": tally.count("b"), "rebalanced": bool(before - after) and tally.count("b") > 0}


def phase_resume(client, args, deadline):
    expect = args.records
    tally = Tally(args.batch)
    members = [client.member("a", args.topic, args.group),
               client.member("b", args.topic, args.group)]
    try:
        linger_until = None
        while linger_until is None or time.monotonic() < linger_until:
            deadline.check(f"reading {len(tally.seen)} of {expect} records (a read "
                           f"{tally.count('a')} and owns {sorted(members[0].assignment())}, "
                           f"b read {tally.count('b')} and owns "
                           f"{sorted(members[1].assignment())})")
            for name, m in zip("ab", members):
                tally.add(name, m.poll(100, 0.1))
            if linger_until is None and len(tally.seen) >= expect:
                linger_until = time.monotonic() + RESUME_LINGER_S
        for m in members:
            m.commit()
    finally:
        for m in members:
            m.close()
    return {"phase": "resume", "consumed": len(tally.seen), "duplicates": tally.duplicates,
            "mismatched": tally.mismatched, "reread": tally.reread}


PHASES = {"admin": phase_admin, "produce": phase_produce, "group": phase_group,
          "resume": phase_resume}


def run(client, argv=None):
    """Runs the phase named on the command line with `client` and exits.

    `client` provides:
    - `unsupported_codecs`: {codec: reason} for codecs the client cannot produce;
    - `admin(topic, deadline)` -> (listed, partitions): create `topic` (3 partitions,
      replication factor 1), list all topics, describe `topic` alone;
    - `produce(topic, codec, records, deadline)` -> acked: one idempotent acks=all
      producer compressing with `codec` sends (key, value, header `h`) records and
      waits for every acknowledgement;
    - `member(name, topic, group)`: a consumer subscribed to `topic` in `group`, auto
      commit off, earliest reset, committing synchronously what it read when it loses
      partitions; with `poll(max_records, timeout_s)` -> [(partition, offset, key,
      value, headers)], `assignment()` -> set of partitions, `end_offsets()` ->
      {partition: log end offset} of the assigned partitions, `pause(partitions)`,
      `resume(partitions)`, `commit()` (synchronous) and `close()`.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # For debugging: the client library's own debug log, one file per group and phase.
    keep = os.environ.get("MILLRACE_COMPAT_KEEP_LOGS")
    if keep:
        logging.basicConfig(
            filename=os.path.join(keep, f"{args.group}-{args.phase}.log"), level=logging.DEBUG,
            format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    deadline = Deadline()
    try:
        summary = PHASES[args.phase](client, args, deadline)
    except PhaseFailed as e:
        log(f"{args.phase}: {e}")
        sys.exit(1)
    print(json.dumps(summary), flush=True)
    # The summary says whether the phase did what it should; the driver compares it.
    sys.exit(0)
