"""Append 200,000 realistic authentication events through the full Kroonika pipeline
into SQLite (group commit, signed heads, checkpoints) and, in the same run, write
the same events with stdlib logging + python-json-logger to a file.

Prints both rates and, as its last two lines, ``ratio=`` (Kroonika / python-json-
logger) and ``verify_rate=`` (records verified per second). Also prints the peak RSS
of ``verify`` over a store of ``--verify-size`` events (default 1,000,000) measured in a
child process. ``--anonymous F`` makes that share of the events failed logins that name
nobody, each of a login flow of its own (so each needs a new flow data key, decision
0023: the worst case, where a real flow has several steps per key). Usage:
``python benchmarks/audit_append.py [--events N] [--verify-size N] [--anonymous F]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import logging
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pythonjsonlogger.json import JsonFormatter

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditTrail,
    Correlation,
    Counters,
    Fingerprinter,
    KeyRing,
    Outcome,
    PersonalData,
    Pipeline,
    Source,
    SqlAuditStore,
    SqlSubjectKeys,
    events,
    verify_store,
)
from kroonika.audit._model import rfc3339_micro, uuid7
from kroonika.audit.synthetic import personal_code

METHODS = [("idcard", "high"), ("mID", "high"), ("smartid", "high"), ("eidas", "substantial")]
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


def make_inputs(n: int, seed: int = 7, anonymous: float = 0.0) -> list[dict[str, Any]]:
    """The raw facts of n login attempts (what application code would have in hand); a
    share ``anonymous`` of them name nobody (drawn apart, so the rest stay the same)."""
    rng = random.Random(seed)
    nobody = random.Random(seed + 1)
    people = [f"EE{personal_code(rng)}" for _ in range(5000)]
    ips = [
        f"{rng.choice([90, 176, 194, 213])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
        f"{rng.randint(1, 254)}"
        for _ in range(3000)
    ]
    out = []
    for i in range(n):
        method, acr = rng.choice(METHODS)
        failed = rng.random() < 0.1
        out.append(
            {
                "subject": rng.choice(people),
                "anonymous": anonymous > 0 and nobody.random() < anonymous,
                "ip": rng.choice(ips),
                "port": rng.randint(1024, 65535),
                "method": method,
                "acr": acr,
                "failed": failed,
                "reason": "id_token.nonce_mismatch" if failed else None,
                "request_id": f"req-{i:010x}",
                "flow_id": f"flow-{i:010x}",
                "given": "MARY ÄNN",
                "family": "O’CONNEŽ-ŠUSLIK",
            }
        )
    return out


def build_event(x: dict[str, Any]) -> AuditEvent:
    if x["anonymous"]:
        return events.auth_login(
            outcome=Outcome.FAILURE,
            reason="state_unknown",
            actor=Actor(ActorType.ANONYMOUS),
            source=Source(ip=x["ip"], port=x["port"], user_agent=UA),
            correlation=Correlation(request_id=x["request_id"], flow_id=x["flow_id"]),
            idp="tara",
        )
    return events.auth_login(
        outcome=Outcome.FAILURE if x["failed"] else Outcome.SUCCESS,
        reason=x["reason"],
        actor=Actor(ActorType.USER, subject=x["subject"]),
        source=Source(ip=x["ip"], port=x["port"], user_agent=UA),
        correlation=Correlation(request_id=x["request_id"], flow_id=x["flow_id"]),
        personal=PersonalData(given_name=x["given"], family_name=x["family"]),
        method=x["method"],
        acr=x["acr"],
        amr=[x["method"]],
        idp="tara",
    )


def open_trail(
    directory: Path, synchronous: str = "FULL", *, every_second: float = 1.0
) -> tuple[AuditTrail, SqlAuditStore, KeyRing]:
    """``every_second``: how often the time-driven work runs (a checkpoint, the
    check for keys another instance erased); the profile sets it high so that what
    it counts does not depend on how fast the machine is."""
    store = SqlAuditStore(f"sqlite:///{directory / 'audit.db'}", synchronous=synchronous)
    store.upgrade()
    keyring = KeyRing.open(directory / "keys", create=True)
    counters = Counters()
    keys = SqlSubjectKeys(store, b"m" * 32, erasure_check_s=every_second)
    pipeline = Pipeline.standard(
        fingerprinter=Fingerprinter(b"p" * 32, "p1"),
        subject_keys=keys,
        counters=counters,
        strict=False,
    )
    trail = AuditTrail(
        pipeline,
        store,
        keyring,
        stream="bench",
        counters=counters,
        subject_keys=keys,
        checkpoint_interval=every_second,
    )
    return trail, store, keyring


async def run_kroonika(
    inputs: list[dict[str, Any]], directory: Path, mode: str, synchronous: str = "FULL"
) -> float:
    trail, store, _ = open_trail(directory, synchronous)
    await trail.start()
    start = time.perf_counter()
    if mode == "emit_many":
        chunk = 1000

        async def producer(part: list[dict[str, Any]]) -> None:
            for i in range(0, len(part), chunk):
                await trail.emit_many([build_event(x) for x in part[i : i + chunk]])

        half = len(inputs) // 2
        await asyncio.gather(producer(inputs[:half]), producer(inputs[half:]))
    else:  # one awaited emit() per event, 256 concurrent callers (a busy web service)
        it = iter(inputs)

        async def caller() -> None:
            for x in it:
                await trail.emit(build_event(x))

        await asyncio.gather(*(caller() for _ in range(256)))
    elapsed = time.perf_counter() - start
    await trail.stop()
    store.close()
    return len(inputs) / elapsed


def run_peer(inputs: list[dict[str, Any]], directory: Path) -> float:
    logger = logging.getLogger("peer")
    logger.propagate = False
    handler = logging.FileHandler(directory / "peer.jsonl")
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    for x in inputs:
        logger.info(
            "auth.login",
            extra={
                "outcome": "failure" if x["failed"] else "success",
                "reason": x["reason"],
                "subject": x["subject"],
                "ip": x["ip"],
                "port": x["port"],
                "user_agent": UA,
                "request_id": x["request_id"],
                "flow_id": x["flow_id"],
                "method": x["method"],
                "acr": x["acr"],
                "amr": [x["method"]],
                "idp": "tara",
                "given_name": x["given"],
                "family_name": x["family"],
            },
        )
    handler.flush()
    elapsed = time.perf_counter() - start
    handler.close()
    return len(inputs) / elapsed


def stage_costs(inputs: list[dict[str, Any]], directory: Path) -> dict[str, float]:
    """Where the time goes: microseconds per event of each step, each step timed
    alone on blocks of 256 events as the writer sees them (caches warm, the cyclic GC
    paused as in a tight loop). Blocks, not one long list: on this VM a page fault
    costs about 2.5 us, and a list of 20,000 fresh records would fault on every few
    of them, which the real pipeline, reusing its memory, does not. The sum is what
    one core must do per event outside the event loop's own costs."""
    trail, store, _ = open_trail(directory)
    trail.log_start_sync()
    for x in inputs[: len(inputs) // 4]:  # warm the pseudonym and subject-key caches
        trail.prepare(build_event(x))
    n = len(inputs)
    clock = time.perf_counter
    costs: dict[str, float] = {}
    gc.disable()
    try:
        for _ in range(3):
            spent: dict[str, float] = {}
            for i in range(0, n, 256):
                t = clock()
                evs = [build_event(x) for x in inputs[i : i + 256]]
                spent["build (application code)"] = (
                    spent.get("build (application code)", 0) + clock() - t
                )
                t = clock()
                for e in evs:
                    now = time.time_ns()
                    e.id, e.time = uuid7(now), rfc3339_micro(now)
                spent["stamp (id, time)"] = spent.get("stamp (id, time)", 0) + clock() - t
                for process in trail.pipeline.processors:
                    name = type(process).__name__
                    t = clock()
                    evs = [process(e) for e in evs]
                    spent[name] = spent.get(name, 0) + clock() - t
                t = clock()
                records = [e.to_record() for e in evs]
                spent["to_record"] = spent.get("to_record", 0) + clock() - t
                t = clock()
                trail._commit(records)
                spent["seal + store (256 per block)"] = (
                    spent.get("seal + store (256 per block)", 0) + clock() - t
                )
            for name, total in spent.items():
                costs[name] = min(costs.get(name, 1e9), total / n * 1e6)
    finally:
        gc.enable()
        store.close()
    return costs


def primitives_floor(inputs: list[dict[str, Any]], directory: Path) -> tuple[float, float]:
    """Events per second of the C-level work one event needs and nothing else: two
    reads of the kernel's random pool (event id, AES-GCM nonce), AES-GCM of the
    personal data, the record's canonical JSON, the leaf hash and about one Merkle
    node hash, and per block of 256 one Ed25519 signature and one SQLite commit (WAL,
    synchronous=FULL) of the joined records. No event objects, no processors, no
    event loop: no Python implementation of the pipeline can be faster than this, so
    it bounds what any tuning of the Python around it can reach. Returns the rate and
    the microseconds per event spent in the SQLite commit (the part a writer thread can
    overlap with the next block's work, since sqlite3 releases the GIL)."""
    trail, store, _ = open_trail(directory)
    trail.log_start_sync()
    record = trail.prepare(build_event(inputs[0]))
    store.close()
    if record is None:
        raise RuntimeError("the filter dropped a login event")
    record.update(stream="bench", seq=1, integrity={"prev": "ab" * 32})
    personal = {"given_name": inputs[0]["given"], "family_name": inputs[0]["family"]}
    aead = AESGCM(AESGCM.generate_key(256))
    signer = Ed25519PrivateKey.generate()
    con = sqlite3.connect(directory / "floor.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE b (data BLOB, sig BLOB)")
    urandom, dumps, sha, b64 = os.urandom, orjson.dumps, hashlib.sha256, base64.b64encode
    sort = orjson.OPT_SORT_KEYS
    n, block = len(inputs) - len(inputs) % 256, 256
    in_commit = 0.0
    start = time.perf_counter()
    for _ in range(0, n, block):
        bodies = []
        leaf = b""
        for _ in range(block):
            urandom(10).hex()
            nonce = urandom(12)
            b64(nonce + aead.encrypt(nonce, dumps(personal), b"event-id")).decode()
            body = dumps(record, option=sort)
            leaf = sha(b"\x00" + body).digest()
            sha(b"\x01" + leaf + leaf).digest()
            bodies.append(body)
        signature = signer.sign(leaf)
        data = b"".join(bodies)
        t = time.perf_counter()
        con.execute("BEGIN")
        con.execute("INSERT INTO b VALUES (?, ?)", (data, signature))
        con.execute("COMMIT")
        in_commit += time.perf_counter() - t
    elapsed = time.perf_counter() - start
    con.close()
    return n / elapsed, in_commit / n * 1e6


async def loop_floor(n: int, directory: Path) -> float:
    """CPU microseconds per event of ``emit()``'s own machinery and nothing else: 256
    callers each await their commit (a future each, the bounded queue, the writer task,
    ``to_thread`` per block) while ``prepare`` returns a fixed record and the commit
    only sleeps 2 ms in the writer thread, as an fsync does, so blocks fill up as in the
    real run. A future per caller is the floor: a shared one per block would be cancelled
    for every caller when one caller's task is cancelled (decision 0011)."""
    trail, store, _ = open_trail(directory)
    await trail.start()
    record: dict[str, Any] = {}

    def commit_now(records: list[dict[str, Any]]) -> list[Any]:
        return [None] * len(records)

    def commit(records: list[dict[str, Any]]) -> list[Any]:
        time.sleep(0.002)
        return commit_now(records)

    trail.prepare = lambda _event: record  # type: ignore[method-assign,assignment]
    trail._commit = commit  # type: ignore[method-assign]
    it = iter(range(n))

    async def caller() -> None:
        for _ in it:
            await trail.emit(None)  # type: ignore[arg-type]

    cpu = time.process_time()
    await asyncio.gather(*(caller() for _ in range(256)))
    cpu = time.process_time() - cpu
    trail._commit = commit_now  # type: ignore[method-assign]
    await trail.stop()
    store.close()
    return cpu / n * 1e6


def verify_child(directory: str) -> None:
    """Child process: verify the store and print rate and peak RSS."""
    path = Path(directory)
    store = SqlAuditStore(f"sqlite:///{path / 'audit.db'}", read_only=True)
    keys = KeyRing.open(path / "keys").public_keys()
    start = time.perf_counter()
    report = verify_store(store, keys)
    elapsed = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child of
    # this big benchmark process would report the parent's peak, not its own.
    rss = _peak_rss_mb()
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rate = report.records / elapsed
    print(f"{report.records} {rate:.0f} {rss:.0f} {int(report.intact)} {workers:.0f}")


def read_child(directory: str, what: str) -> None:
    """Child process: stream every record through ``run_query`` (what ``kroonika audit
    query -o jsonl`` does) or through the ECS renderer (``kroonika audit export
    --format ecs``), and print the rate and the peak RSS: neither may grow with the
    store."""
    from kroonika.audit import Query, formats, run_query

    path = Path(directory)
    store = SqlAuditStore(f"sqlite:///{path / 'audit.db'}", read_only=True)
    start = time.perf_counter()
    n = size = 0
    for body in run_query(store, Query()):
        out = body if what == "query" else formats.render("ecs", orjson.loads(body)).encode()
        n += 1
        size += len(out)
    elapsed = time.perf_counter() - start
    print(f"{n} {n / elapsed:.0f} {_peak_rss_mb():.0f} {size}")


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--verify-size", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=["emit", "emit_many"], default="emit")
    parser.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="SQLite durability: FULL survives power loss (default), NORMAL process crashes",
    )
    parser.add_argument(
        "--anonymous", type=float, default=0.0, help="share of logins that name nobody (0..1)"
    )
    parser.add_argument("--verify-child")
    parser.add_argument("--read-child", nargs=2, metavar=("DIR", "query|export"))
    args = parser.parse_args()
    if args.verify_child:
        verify_child(args.verify_child)
        return
    if args.read_child:
        read_child(*args.read_child)
        return
    inputs = make_inputs(args.events, anonymous=args.anonymous)
    # The 200,000 prepared inputs are long-lived: keep the cyclic GC from re-scanning
    # them on every collection, for both contenders alike.
    gc.collect()
    gc.freeze()
    tmp = Path(tempfile.mkdtemp(prefix="kroonika-bench-"))
    try:
        peer = run_peer(inputs, tmp)
        ours = asyncio.run(run_kroonika(inputs, tmp / "k", args.mode, args.synchronous))
        peer2 = run_peer(inputs, tmp)
        peer = max(peer, peer2)
        print(f"python-json-logger: {peer:,.0f} events/s")
        print(
            f"kroonika ({args.mode}, synchronous={args.synchronous}): {ours:,.0f} events/s "
            "(full pipeline, SQLite, signed)"
        )
        costs = stage_costs(inputs[:20_000], tmp / "stages")
        print("per event, each step alone (us):")
        for name, cost in costs.items():
            print(f"  {name:30s} {cost:6.2f}")
        print(f"  {'sum':30s} {sum(costs.values()):6.2f}  (python-json-logger: {1e6 / peer:.2f})")
        (tmp / "floor").mkdir()
        floor, commit_us = primitives_floor(inputs[:51_200], tmp / "floor")
        print(
            f"primitives alone (no Python around them): {floor:,.0f} events/s, "
            f"{1e6 / floor:.1f} us/event ({commit_us:.1f} in the SQLite commit) = "
            f"{floor / peer:.2f}x python-json-logger; "
            f"1.5x leaves {1e6 / (1.5 * peer):.1f} us/event for everything"
        )
        (tmp / "loop").mkdir()
        loop_us = asyncio.run(loop_floor(min(args.events, 100_000), tmp / "loop"))
        build_us = costs["build (application code)"]
        budget = 1e6 / (1.5 * peer)
        print(
            f"emit()'s own machinery alone: {loop_us:.1f} us/event of CPU; with the "
            f"application's constructors ({build_us:.1f}) and the primitives "
            f"({1e6 / floor:.1f}): {loop_us + build_us + 1e6 / floor:.1f} us/event "
            f"against the 1.5x budget of {budget:.1f} "
            f"({loop_us + build_us + 1e6 / floor - commit_us:.1f} if a second core "
            "overlapped every SQLite commit)"
        )
        # grow the store to verify-size for the verify measurement
        big = tmp / "big"
        remaining = args.verify_size
        if remaining > 0:
            shutil.copytree(tmp / "k", big)
            have = args.events + 2
            extra = max(0, remaining - have)
            reps = inputs * (extra // len(inputs) + 1)
            if extra:
                asyncio.run(run_kroonika(reps[:extra], big, "emit_many"))
            out = subprocess.run(
                [sys.executable, __file__, "--verify-child", str(big)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            records, rate, rss, intact = int(out[0]), float(out[1]), float(out[2]), out[3]
            print(
                f"verify: {records:,} records, {rate:,.0f} records/s, peak RSS {rss:.0f} MB "
                f"(largest worker process {float(out[4]):.0f} MB), intact={intact == '1'}"
            )
            for what in ("query", "export"):
                got = subprocess.run(
                    [sys.executable, __file__, "--read-child", str(big), what],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                label = "query (all, jsonl)" if what == "query" else "export (all, ecs)"
                print(
                    f"{label}: {int(got[0]):,} records, {float(got[1]):,.0f} records/s, "
                    f"peak RSS {float(got[2]):.0f} MB, {int(got[3]) / 1e6:,.0f} MB out"
                )
        else:
            rate = 0.0
        print(f"ratio={ours / peer:.2f}")
        print(f"verify_rate={rate:.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
