"""Instructions per event of the audit event path, without the event loop (or, with
``--emit``, through it).

Builds, prepares (stamp, processors, ``to_record``) and commits events in blocks of
256 into a fresh SQLite store, as the writer does, with the benchmark's inputs
(``audit_append.py``), after a warm-up that logs every person in once. Timing on a
shared machine is noise; instruction counts are not. So ``--callgrind`` runs this
script twice under valgrind's callgrind, with a short and a long run that share all
set-up and warm-up, and prints the difference per event: the instructions one more
event costs. What depends on the clock (time-driven checkpoints, the erasure check)
is switched off and hash randomisation fixed, so that two runs of the same code
agree to a few hundred instructions per event. Callgrind counts user-space
instructions only: a system call saved (os.urandom) does not show. ``--emit`` runs
the measured events as the benchmark's emit mode does (256 concurrent callers, one
awaited ``emit()`` each, the writer task committing in its thread): the difference
from a run without it is the event loop's share (futures, the queue, task switches).

    .venv/bin/python benchmarks/profile_event_path.py --callgrind [--emit]
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python benchmarks/profile_event_path.py --events 2560
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from audit_append import build_event, make_inputs, open_trail

from kroonika.audit import AuditTrail

BLOCK = 256


def run(events: int, inputs_n: int, emit: bool = False) -> None:
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
        for n, part in enumerate((warm, inputs[:events])):
            gc.collect()
            gc.freeze()
            if emit and n:
                asyncio.run(_emit_all(trail, part))
                continue
            for i in range(0, len(part), BLOCK):
                records = [prepare(build_event(x)) for x in part[i : i + BLOCK]]
                commit([r for r in records if r is not None])
        store.close()


async def _emit_all(trail: AuditTrail, part: list[dict[str, Any]]) -> None:
    """As the benchmark's emit mode: BLOCK concurrent callers, one awaited
    ``emit()`` per event, the writer running."""
    await trail.start()
    it = iter(part)

    async def caller() -> None:
        for x in it:
            await trail.emit(build_event(x))

    await asyncio.gather(*(caller() for _ in range(BLOCK)))
    await trail.stop()


def _callgrind(events: int, inputs_n: int, out: str, emit: bool) -> subprocess.Popen[bytes]:
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
            *(["--emit"] if emit else []),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict probes every run
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def instructions(*runs: int, emit: bool = False) -> list[int]:
    """Instructions of each run, the runs side by side (one core each)."""
    with tempfile.TemporaryDirectory(prefix="kroonika-cg-") as tmp:
        outs = [f"{tmp}/{i}.out" for i in range(len(runs))]
        procs = [_callgrind(n, max(runs), out, emit) for n, out in zip(runs, outs, strict=True)]
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
    parser.add_argument(
        "--emit",
        action="store_true",
        help=f"through emit(): {BLOCK} concurrent callers and the writer (the loop's share too)",
    )
    args = parser.parse_args()
    if not args.callgrind:
        run(args.events, args.inputs or args.events, args.emit)
        return
    short, long = args.events, 3 * args.events
    a, b = instructions(short, long, emit=args.emit)
    print(f"instructions: {short} events {a:,}, {long} events {b:,}")
    print(f"instructions per event: {(b - a) / (long - short):,.0f}")


if __name__ == "__main__":
    main()
