"""kcat (Debian's, on the system librdkafka) in the client matrix
(compat-tests/matrix/SCENARIO.md), as far as kcat can express the scenario: this
program runs `kcat` processes and checks what they print.

- admin: kcat has no admin API. `kcat -L -t T` makes the broker auto-create T (its
  Metadata request allows it; the driver starts the broker with num.partitions=3),
  then `kcat -L` (all topics) lists it and `kcat -L -t T` describes it.
- produce: `kcat -P -H h=...` gives every message of one run the same headers, so each
  record is its own kcat run (idempotence on, acks=all, `-z codec`).
- group: not expressible (no pause, no commit call: a kcat member cannot be held
  back while the other joins); the driver runs `resume` in its place.
- resume: two `kcat -G` members started together, auto commit (kcat's only commit
  control) at a short interval and on close; closed with SIGTERM (a clean close).

Usage: kcat_matrix.py <phase> --bootstrap H:P --topic T --group G --records N --batch B
"""
import json
import queue
import signal
import subprocess
import sys
import threading
import time

import matrix_common as mc

KCAT = "kcat"


def kcat(args, stdin=None, timeout_s=30):
    out = subprocess.run([KCAT, *args], input=stdin, capture_output=True,
                         timeout=timeout_s)
    if out.returncode != 0:
        raise mc.PhaseFailed(f"kcat {' '.join(args)} exited {out.returncode}: "
                             f"{out.stderr.decode(errors='replace')}")
    return out


def metadata(bootstrap, topic=None):
    args = ["-L", "-J", "-b", bootstrap] + (["-t", topic] if topic else [])
    return json.loads(kcat(args).stdout)


class Member:
    """A `kcat -G` process; its records are read off stdout by a thread."""

    FORMAT = "%p\\t%o\\t%k\\t%s\\t%h\\n"

    def __init__(self, name, bootstrap, topic, group):
        self.proc = subprocess.Popen(
            [KCAT, "-b", bootstrap, "-G", group, topic, "-q", "-u", "-f", self.FORMAT,
             "-X", f"client.id=matrix-{name}", "-X", "auto.offset.reset=earliest",
             "-X", f"session.timeout.ms={mc.SESSION_TIMEOUT_MS}",
             "-X", f"heartbeat.interval.ms={mc.HEARTBEAT_INTERVAL_MS}",
             "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=200"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.records = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            p, o, key, value, headers = line.rstrip(b"\n").split(b"\t")
            parsed = [tuple(h.split(b"=", 1)) for h in headers.split(b",") if h]
            self.records.put((int(p), int(o), key, value,
                              [(k.decode(), v) for k, v in parsed]))

    def poll(self, timeout_s):
        out = []
        try:
            out.append(self.records.get(timeout=timeout_s))
            while True:
                out.append(self.records.get_nowait())
        except queue.Empty:
            return out

    def close(self, deadline):
        """SIGTERM: kcat leaves the group after its final commit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=max(deadline.left(), 1))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise mc.PhaseFailed("kcat member did not exit after SIGTERM")
        if self.proc.returncode != 0:
            raise mc.PhaseFailed(f"kcat member exited {self.proc.returncode}: "
                                 f"{self.proc.stderr.read().decode(errors='replace')}")


def admin(args, deadline):
    metadata(args.bootstrap, args.topic)  # auto-creates the topic
    listed = False
    while not listed:
        deadline.check("waiting for the topic in the all-topics listing")
        listed = any(t["topic"] == args.topic for t in metadata(args.bootstrap)["topics"])
    [t] = metadata(args.bootstrap, args.topic)["topics"]
    if t.get("error"):
        raise mc.PhaseFailed(f"describe {args.topic}: {t['error']}")
    return {"phase": "admin", "listed": listed, "partitions": len(t["partitions"])}


def produce(args, deadline):
    acked = 0
    for codec in mc.CODECS:
        for i in range(args.records):
            deadline.check(f"producing {codec} record {i}")
            key, value, header = mc.record(args.batch, codec, i)
            out = kcat(["-P", "-b", args.bootstrap, "-t", args.topic, "-K", "\t",
                        "-H", "h=" + header.decode(), "-z", codec,
                        "-X", "enable.idempotence=true", "-X", "acks=all"],
                       stdin=key + b"\t" + value + b"\n")
            # kcat reports a failed delivery on stderr; librdkafka's own log lines there
            # (`%<level>|...`, e.g. a retried PID request) are not failures.
            err = out.stderr.decode(errors="replace")
            if "Delivery failed" in err or "% ERROR" in err:
                raise mc.PhaseFailed(f"{codec} {i}: {err}")
            acked += 1
    return {"phase": "produce", "acked": acked, "codecs": mc.CODECS, "skipped_codecs": {}}


def resume(args, deadline):
    expect = args.records
    tally = mc.Tally(args.batch)
    members = [Member(n, args.bootstrap, args.topic, args.group) for n in "ab"]
    try:
        linger_until = None
        while linger_until is None or time.monotonic() < linger_until:
            deadline.check(f"reading {len(tally.seen)} of {expect} records")
            for name, m in zip("ab", members):
                tally.add(name, m.poll(0.1))
            if linger_until is None and len(tally.seen) >= expect:
                linger_until = time.monotonic() + mc.RESUME_LINGER_S
    finally:
        for m in members:
            m.close(deadline)
    return {"phase": "resume", "consumed": len(tally.seen), "duplicates": tally.duplicates,
            "mismatched": tally.mismatched, "reread": tally.reread}


PHASES = {"admin": admin, "produce": produce, "resume": resume}


def main():
    args = mc.parse_args(None)
    if args.phase not in PHASES:
        mc.log(f"kcat cannot run the {args.phase} phase (see the docstring)")
        sys.exit(2)
    deadline = mc.Deadline()
    try:
        summary = PHASES[args.phase](args, deadline)
    except mc.PhaseFailed as e:
        mc.log(f"{args.phase}: {e}")
        sys.exit(1)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
