"""The trail's stop cut off by its bound while a commit hangs (decision 0010,
2026-11-28 (2)): every caller still waiting is answered AuditUnavailable, nothing a caller
was told is recorded is lost, and nothing is written to the store after the stop gave
the writer up, nor is the store closed under the commit in flight. Real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from audit_kit import make_kit

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditUnavailable,
    Outcome,
    Query,
    SqlAuditStore,
    run_query,
)
from kroonika.audit import events as ev

pytestmark = pytest.mark.postgres


def _run(n: int) -> AuditEvent:
    return ev.job_run(
        outcome=Outcome.SUCCESS,
        actor=Actor(ActorType.SYSTEM),
        job="probe",
        trigger="test",
        counts="{}",
        duration_ms=0,
        run_id=f"run_{n}",
        resumed=False,
        batches=0,
    )


def _stored_runs(url: str) -> list[str]:
    store = SqlAuditStore(url, read_only=True)
    try:
        return [
            orjson.loads(raw)["details"]["run_id"]
            for raw in run_query(store, Query(types=("job.run",)))
        ]
    finally:
        store.close()


@pytest.mark.asyncio
async def test_a_stop_cut_off_by_a_hung_commit_loses_nothing_acknowledged(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    kit = make_kit(fresh_postgres_url, tmp_path / "keys")
    trail, store = kit.trail, kit.store
    append = store.append
    held = threading.Event()  # armed: a commit waits here until the test lets it go
    go = threading.Event()
    appended_after_close: list[int] = []
    closed = threading.Event()

    def holding_append(*args: Any, **kwargs: Any) -> None:
        if held.is_set():
            go.wait(30)
            if closed.is_set():
                appended_after_close.append(1)
        append(*args, **kwargs)

    close = store.close

    def noting_close() -> None:
        closed.set()
        close()

    store.append = holding_append  # type: ignore[method-assign]
    store.close = noting_close  # type: ignore[method-assign]
    await trail.start()
    await trail.emit(_run(1))  # acknowledged: committed before the hold
    held.set()
    hung = asyncio.create_task(trail.emit(_run(2)))  # its commit hangs
    await asyncio.sleep(0.2)
    queued = asyncio.create_task(trail.emit(_run(3)))  # waits behind it
    await asyncio.sleep(0.2)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(trail.stop(), 0.5)  # the service's bound on the stop

    for waiting in (hung, queued):
        with pytest.raises(AuditUnavailable):
            await waiting
    with pytest.raises(AuditUnavailable):
        await trail.emit(_run(4))
    assert trail.close_store() is False  # the hung commit still holds it: left open
    assert not closed.is_set()

    go.set()  # the hung commit completes (or not) on its own
    for _ in range(100):
        if trail.close_store():
            break
        await asyncio.sleep(0.05)
    assert closed.is_set()
    assert appended_after_close == []
    stored = await asyncio.to_thread(_stored_runs, fresh_postgres_url)
    assert "run_1" in stored  # acknowledged: kept
    assert "run_3" not in stored  # refused: never written
    assert "run_4" not in stored
