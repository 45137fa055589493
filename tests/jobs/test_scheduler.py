"""The scheduler when a run fails: the failure is audited, the lease is released and the
next slot runs; a database gone mid-run still leaves its ``job.run`` event."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from job_kit import job_deps
from sqlalchemy import Engine, select

from kroonika.audit import AuditEvent, AuditUnavailable
from kroonika.db import make_engine
from kroonika.db.admin import job_state
from kroonika.db.migrate import upgrade
from kroonika.jobs import JobContext, JobDeps, Scheduler
from kroonika.sessions import ManualClock

START = 1_700_000_000  # on a minute boundary


class Trail:
    """Captures emitted events."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def runs(self) -> list[tuple[str, str | None]]:
        return [(e.outcome.value, e.reason) for e in self.events if e.type == "job.run"]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(e)
    return e


def _scheduler(engine: Engine, trail: Trail, clock: ManualClock, job: Any) -> Scheduler:
    return Scheduler(
        {"flaky": job},
        job_deps(engine, trail),
        clock=clock,
        schedule=lambda _: ("* * * * *", True),
        lease_s=300,
    )


def _lease_until(engine: Engine) -> int | None:
    with engine.connect() as conn:
        value: int | None = conn.execute(select(job_state.c.lease_until)).scalar_one()
    return value


@pytest.mark.asyncio
async def test_a_failed_run_is_audited_releases_its_lease_and_the_next_slot_runs(
    engine: Engine,
) -> None:
    """A job that raises: ``job.run`` failure naming the error type (not its message), the
    lease free at once, and the next minute's slot runs and succeeds."""
    calls: list[int] = []

    async def job(_deps: JobDeps, ctx: JobContext) -> None:
        calls.append(ctx.now())
        if len(calls) == 1:
            raise RuntimeError("secret-looking detail EE38001085718")
        ctx.counts["done"] += 1

    trail, clock = Trail(), ManualClock(START)
    scheduler = _scheduler(engine, trail, clock, job)
    (first,) = await scheduler.tick()
    assert (first.outcome, first.error) == ("failure", "RuntimeError")
    assert _lease_until(engine) is None
    assert await scheduler.tick() == []  # this slot already ran
    clock.advance(60)
    (second,) = await scheduler.tick()
    assert (second.outcome, second.counts) == ("success", {"done": 1})
    assert trail.runs() == [("failure", "RuntimeError"), ("success", None)]
    assert "EE38001085718" not in repr(trail.events)


def _replace_with_garbage(db: Path) -> None:
    junk = db.with_name("junk")
    junk.write_bytes(b"not a database\n" * 500)
    os.replace(junk, db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


@pytest.mark.asyncio
async def test_a_database_gone_mid_run_still_records_the_run(
    engine: Engine, tmp_path: Path
) -> None:
    """The database replaced by garbage during a run: the lease cannot be released, but
    the failed run still gets its ``job.run`` event; the error reaches the caller."""

    async def job(deps: JobDeps, _ctx: JobContext) -> None:
        deps.engine.dispose()
        _replace_with_garbage(tmp_path / "jobs.db")
        with deps.engine.connect() as conn:
            conn.execute(select(job_state))

    trail = Trail()
    scheduler = _scheduler(engine, trail, ManualClock(START), job)
    with pytest.raises(Exception, match="not a database"):
        await scheduler.run("flaky", trigger="schedule")
    assert trail.runs() == [("failure", "DatabaseError")]


class _DownTrail(Trail):
    async def emit(self, event: AuditEvent) -> None:
        raise AuditUnavailable("the audit writer is not running")


@pytest.mark.asyncio
async def test_stop_ends_the_loop_when_the_trail_is_down_as_a_run_is_cancelled(
    engine: Engine,
) -> None:
    """``stop()`` during a run's lease release while the trail is down: the failed
    ``job.run`` record fails the tick, yet the loop still ends (it used to swallow the
    cancel and sleep on, so the app's shutdown hung; it now also ends, uncancelled, at
    the stop flag once the run is over)."""
    releasing = threading.Event()

    async def job(_deps: JobDeps, ctx: JobContext) -> None:
        ctx.counts["done"] += 1

    scheduler = _scheduler(engine, _DownTrail(), ManualClock(START), job)
    release = scheduler.leases.release

    def slow_release(*args: Any, **kwargs: Any) -> None:
        releasing.set()
        time.sleep(0.3)
        release(*args, **kwargs)

    scheduler.leases.release = slow_release  # type: ignore[method-assign]
    await scheduler.start()
    assert await asyncio.to_thread(releasing.wait, 10)
    task = scheduler._task
    assert task is not None
    stopping = asyncio.create_task(scheduler.stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)
    task.cancel()  # the second cancel ends a loop that swallowed the first (the old bug)
    await stopping
    assert stopping in done
    assert task.done()
