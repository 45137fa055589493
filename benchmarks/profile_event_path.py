"""Instructions per event of the audit event path, without the event loop.

Builds, prepares (stamp, processors, ``to_record``) and commits events in blocks of
256 into a fresh SQLite store, as the writer does, with the benchmark's inputs
(``audit_append.py``), after a warm-up that logs every person in once. Timing on a
shared machine is noise; instruction counts are not. So ``--callgrind`` runs this
script twice under valgrind's callgrind, with a short and a long run that share all
set-up and warm-up, and prints the difference per event: the instructions one more
event costs. What depends on the clock (time-driven checkpoints, the erasure check)
is switched off and hash randomisation fixed, so that two runs of the same code
agree to a few hundred instructions per event. Callgrind counts user-space
instructions only: a system call saved (os.urandom) does not show.

    .venv/bin/python benchmarks/profile_event_path.py --callgrind
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python benchmarks/profile_event_path.py --events 2560
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from audit_append import build_event, make_inputs, open_trail

BLOCK = 256


def run(events: int, inputs_n: int) -> None:
    """Make ``inputs_n`` inputs; warm up with one login of each person in them
    (pseudonyms and subject keys cached, as in a service that has been running for
    a while); then build, prepare and commit the first ``events`` in blocks. The
    short and the long run of ``--callgrind`` share ``inputs_n``, so all their
    set-up and warm-up is the same."""
    inputs = make_inputs(inputs_n)
    first: dict[str, dict[str, object]] = {}
    for x in inputs:
        first.setdefault(x["subject"], x)
    warm = list(first.values())
    with tempfile.TemporaryDirectory(prefix="kroonika-profile-") as tmp:
        trail, store, _ = open_trail(Path(tmp), every_second=1e6)
        trail.log_start_sync()
        prepare, commit = trail.prepare, trail._commit
        for part in (warm, inputs[:events]):
            gc.collect()
            gc.freeze()
            for i in range(0, len(part), BLOCK):
                records = [prepare(build_event(x)) for x in part[i : i + BLOCK]]
                commit([r for r in records if r is not None])
        store.close()


def _callgrind(events: int, inputs_n: int, out: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--events",
            str(events),
            "--inputs",
            str(inputs_n),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict probes every run
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def instructions(*runs: int) -> list[int]:
    """Instructions of each run, the runs side by side (one core each)."""
    with tempfile.TemporaryDirectory(prefix="kroonika-cg-") as tmp:
        outs = [f"{tmp}/{i}.out" for i in range(len(runs))]
        procs = [_callgrind(n, max(runs), out) for n, out in zip(runs, outs, strict=True)]
        for proc in procs:
            if proc.wait() != 0:
                raise RuntimeError("valgrind failed")
        totals = []
        for out in outs:
            match = re.search(r"^summary: (\d+)", Path(out).read_text(), re.MULTILINE)
            if match is None:
                raise RuntimeError("no summary line in the callgrind output")
            totals.append(int(match.group(1)))
    return totals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4 * BLOCK)
    parser.add_argument("--inputs", type=int, help="inputs to make (default: --events)")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="run under callgrind with --events and 3x --events; print instructions per event",
    )
    args = parser.parse_args()
    if not args.callgrind:
        run(args.events, args.inputs or args.events)
        return
    short, long = args.events, 3 * args.events
    a, b = instructions(short, long)
    print(f"instructions: {short} events {a:,}, {long} events {b:,}")
    print(f"instructions per event: {(b - a) / (long - short):,.0f}")


if __name__ == "__main__":
    main()
