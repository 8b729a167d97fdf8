#!/usr/bin/env python3
"""Builds every test binary of the workspace, then runs them two at a time.

`cargo test` runs its test binaries one after another, so a binary holding one slow
test leaves the second core idle; most compat binaries hold one to three tests that
mostly wait on brokers and JVMs. Here whole binaries run side by side (longest first,
by the durations of the previous run) and each one's output is printed in one piece
when it ends, as cargo would print it.

Environment: MILLRACE_TEST_JOBS binaries at once (2), MILLRACE_TEST_THREADS test threads
inside a compat binary (1) and inside the unit-test binaries (2). Arguments after `--`
go to every test binary (e.g. a name filter). Exit status: non-zero when any test failed,
any binary exited non-zero (a crash leaves no result line), or no test ran.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

CARGO_TEST = [
    "cargo", "test", "--workspace", "--features", "millrace/failpoints",
    "--lib", "--bins", "--tests", "--no-run", "--message-format=json-render-diagnostics",
]
RESULT = re.compile(r"^test result: .*?(\d+) passed; (\d+) failed", re.M)


def test_binaries():
    """(label, executable, package dir, is unit tests) for every test binary built."""
    built = subprocess.run(CARGO_TEST, stdout=subprocess.PIPE, check=True, text=True)
    binaries = []
    for line in built.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message["profile"]["test"]:
            continue
        target = message["target"]
        kind = target["kind"][0]
        unit = kind in ("lib", "bin")
        label = f"{'unittests ' if unit else ''}{target['src_path']} ({message['executable']})"
        package_dir = os.path.dirname(message["manifest_path"])
        binaries.append((label, message["executable"], package_dir, kind == "lib"))
    return binaries


def run_one(binary, extra_args, threads):
    label, executable, package_dir, unit = binary
    count = threads["unit"] if unit else threads["compat"]
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as output:
        # cargo runs each test binary from its package's directory; so do we.
        status = subprocess.run(
            [executable, f"--test-threads={count}", *extra_args],
            cwd=package_dir, stdout=output, stderr=subprocess.STDOUT,
        ).returncode
        output.seek(0)
        text = output.read()
    return label, executable, status, text, time.monotonic() - started


def main():
    extra_args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    jobs = int(os.environ.get("MILLRACE_TEST_JOBS", "2"))
    threads = {
        "compat": int(os.environ.get("MILLRACE_TEST_THREADS", "1")),
        "unit": int(os.environ.get("MILLRACE_UNIT_TEST_THREADS", "2")),
    }
    target_dir = os.environ.get("CARGO_TARGET_DIR", "target")
    durations_path = os.path.join(target_dir, "millrace-test-durations.json")
    try:
        with open(durations_path) as f:
            durations = json.load(f)
    except (OSError, ValueError):
        durations = {}

    def name_of(executable):
        # The hash suffix changes with every build; the name before it does not.
        return os.path.basename(executable).rsplit("-", 1)[0]

    binaries = test_binaries()
    # Longest first, so the last binary to finish is a short one; unknown ones first of all.
    binaries.sort(key=lambda b: -durations.get(name_of(b[1]), float("inf")))
    passed = failed = 0
    broken = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = [pool.submit(run_one, b, extra_args, threads) for b in binaries]
        for run in runs:
            label, executable, status, text, seconds = run.result()
            print(f"     Running {label} [{seconds:.1f} s]", flush=True)
            print(text, end="" if text.endswith("\n") else "\n", flush=True)
            for p, f in RESULT.findall(text):
                passed += int(p)
                failed += int(f)
            if status != 0:
                broken.append(f"{label}: exit status {status}")
            durations[name_of(executable)] = round(seconds, 1)
    try:
        with open(durations_path, "w") as f:
            json.dump(durations, f, indent=1, sort_keys=True)
    except OSError as error:
        print(f"cannot record test durations: {error}", file=sys.stderr)
    for line in broken:
        print(f"FAILED {line}")
    elapsed = time.monotonic() - started
    print(f"{len(binaries)} test binaries in {elapsed:.0f} s, {jobs} at a time")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or broken or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
