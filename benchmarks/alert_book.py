"""What one read of the alert state costs: ``read_book`` (a pass over every ``alert.*``
event of the trail, what ``GET /admin/alerts`` did per call and ``kroonika alerts list``
does; since audit migration a0007 it reads only the blocks that hold one, found by a
partial index, decision 0036, 2026-11-28) against the process-wide
:class:`~kroonika.audit.alerting.LiveBook` (built once, then each call reads only the
blocks stored since the last one), on one SQLite store of synthetic events with alerts
raised and acknowledged among them (decision 0036, 2026-11-28).

Usage: ``python benchmarks/alert_book.py [--events N] [--alerts A] [--batch B]
[--dir DIR] [--url postgresql://...]``. With ``--dir`` the store (SQLite, and the
signing keys) is kept there and reused by the next run; ``--url`` names an empty
PostgreSQL database to use instead.
Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shipping import make_trail  # the same trail as the shipping benchmark's

from kroonika.audit import Actor, ActorType, AuditEvent, AuditTrail, Severity, Target, events
from kroonika.audit.alerting import LiveBook, alert_id_for, read_book
from kroonika.audit.synthetic import generate_events


def with_alerts(count: int, alerts: int, seed: int) -> Iterator[AuditEvent]:
    """``count`` synthetic events with ``alerts`` raises spread among them; every third
    alert is acknowledged a little later."""
    every = max(1, count // max(1, alerts))
    pending: list[str] = []
    for i, event in enumerate(generate_events(count, seed=seed), 1):
        yield event
        if i % every:
            continue
        alert_id = alert_id_for("bench", f"{seed}-{i}")
        yield events.alert_raise(
            actor=Actor(ActorType.SYSTEM),
            target=Target("alert", alert_id),
            severity=Severity.WARNING,
            alert_id=alert_id,
            rule="bench",
            summary=f"bench: synthetic n={i}",
        )
        if (i // every) % 3 == 0:
            pending.append(alert_id)
        if len(pending) > 5:
            yield events.alert_acknowledge(
                actor=Actor(ActorType.ADMIN, roles=("cli",)),
                target=Target("alert", pending[0]),
                alert_id=pending.pop(0),
                justification="benchmark",
                repeats=0,
            )


async def write(trail: AuditTrail, source: Iterator[AuditEvent], batch: int) -> int:
    await trail.start()
    written = 0
    try:
        chunk: list[AuditEvent] = []
        for event in source:
            chunk.append(event)
            if len(chunk) == batch:
                written += len(await trail.emit_many(chunk))
                chunk = []
        if chunk:
            written += len(await trail.emit_many(chunk))
    finally:
        await trail.stop()
    return written


def timed(fn: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--alerts", type=int, default=3_000)
    ap.add_argument("--batch", type=int, default=200, help="events per commit (block)")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--url", default=None, help="a store URL (PostgreSQL) instead of SQLite")
    args = ap.parse_args()
    path = args.dir or Path(tempfile.mkdtemp(prefix="kroonika-alert-bench-"))
    path.mkdir(parents=True, exist_ok=True)
    trail, store = make_trail(path, "bench-a", args.url)
    if not store.streams():
        t0 = time.perf_counter()
        n = asyncio.run(write(trail, with_alerts(args.events, args.alerts, 1), args.batch))
        print(f"wrote {n} events in {time.perf_counter() - t0:.1f} s to {path}")
    blocks = sum(1 for _ in store.blocks())
    size = sum(s.size for s in (store.stream_state(x) for x in store.streams()) if s)
    print(f"store: {size} events in {blocks} blocks")

    full, book = timed(lambda: read_book(store))
    n_open = sum(1 for a in book.alerts.values() if a.open)
    print(
        f"read_book (the alert blocks of the whole trail): {full:.3f} s, {len(book.alerts)} alerts,"
        f" {n_open} open"
    )
    build, _ = timed(lambda: LiveBook(store).alerts())
    print(f"LiveBook first use (once per process): {build:.3f} s")
    live = LiveBook(store)
    live.alerts()
    idle, _ = timed(lambda: live.alerts(), runs=20)
    print(f"LiveBook call, nothing new: {idle * 1000:.2f} ms")

    more, store_b = make_trail(path, "bench-b", args.url)  # another instance's stream
    asyncio.run(write(more, with_alerts(1_000, 10, 2), args.batch))
    t0 = time.perf_counter()
    alerts = live.alerts()
    print(
        f"LiveBook call after 1,000 new events with 10 alerts from another stream: "
        f"{(time.perf_counter() - t0) * 1000:.2f} ms"
    )
    again, book = timed(lambda: read_book(store))
    if {a.alert_id: a.open for a in alerts} != {a.alert_id: a.open for a in book.alerts.values()}:
        raise SystemExit("the live book and a whole read disagree")
    print(f"read_book after them: {again:.3f} s (the same alerts: {len(alerts)})")
    store_b.close()
    store.close()


if __name__ == "__main__":
    main()
