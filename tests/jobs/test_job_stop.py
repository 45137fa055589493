"""The scheduler's stop is bounded and leaves a true record (decision 0010, 2026-11-28
(2)): a job working in batches stops at the next batch once the stop is asked for; one
stuck in a worker thread (a long purge, a dead database) is given up after the grace.
Either way the run is recorded as interrupted (``job.run`` failure ``stopped`` with the
counts of the batches done, its ``job_run`` row ``interrupted``), never as complete and
never lost, and its lease is free. Real PostgreSQL for the jobs' database and the trail."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select

sys.path.insert(0, str(Path(__file__).parents[1] / "audit"))

from audit_kit import TrailKit
from job_kit import job_deps

from kroonika.audit import Query, run_query
from kroonika.db import make_engine
from kroonika.db.admin import job_run, job_state
from kroonika.db.migrate import upgrade
from kroonika.jobs import JobContext, JobDeps, Scheduler

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(fresh_postgres_url: str) -> Iterator[Engine]:
    e = make_engine(fresh_postgres_url)
    upgrade(e)
    yield e
    e.dispose()


@pytest.fixture
def kit(pg_trail: TrailKit) -> TrailKit:
    return pg_trail


def _scheduler(engine: Engine, kit: TrailKit, job: Any) -> Scheduler:
    return Scheduler(
        {"long": job},
        job_deps(engine, kit.trail),
        clock=lambda: 1_700_000_000,
        schedule=lambda _: ("* * * * *", True),
        tick_s=3600,
    )


def _runs(kit: TrailKit) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in run_query(kit.store, Query(types=("job.run",)))]


def _state(engine: Engine) -> tuple[Any, Any]:
    with engine.connect() as conn:
        outcome = conn.execute(select(job_run.c.outcome)).scalar_one()
        lease = conn.execute(select(job_state.c.lease_until)).scalar_one()
    return outcome, lease


def _assert_recorded_interrupted(engine: Engine, kit: TrailKit, batches: int) -> None:
    [run] = _runs(kit)
    assert run["outcome"] == "failure"
    assert run["reason"] == "stopped"
    assert run["details"]["error"] == "stopped"
    assert orjson.loads(run["details"]["counts"]) == {"done": batches}
    assert run["details"]["batches"] == batches
    assert _state(engine) == ("interrupted", None)  # recorded, and the lease is free


@pytest.mark.asyncio
async def test_a_job_in_batches_stops_at_the_next_batch_and_says_so(
    engine: Engine, kit: TrailKit
) -> None:
    three = asyncio.Event()

    async def endless(_deps: JobDeps, ctx: JobContext) -> None:
        while True:  # every batch a real round trip to the database
            await asyncio.to_thread(_state, engine)
            ctx.counts["done"] += 1
            if ctx.counts["done"] == 3:
                three.set()
                await asyncio.sleep(0.2)  # the stop is asked for during this batch
            await ctx.batch_done()

    scheduler = _scheduler(engine, kit, endless)
    await scheduler.start()
    await three.wait()
    await scheduler.stop()
    _assert_recorded_interrupted(engine, kit, 3)


@pytest.mark.asyncio
async def test_a_job_stuck_in_a_thread_is_given_up_and_recorded_as_interrupted(
    engine: Engine, kit: TrailKit
) -> None:
    stuck, inside = threading.Event(), asyncio.Event()

    async def hangs(_deps: JobDeps, ctx: JobContext) -> None:
        ctx.counts["done"] += 1
        await ctx.batch_done()
        inside.set()
        await asyncio.to_thread(stuck.wait)  # a purge that does not end, a dead database

    scheduler = _scheduler(engine, kit, hangs)
    await scheduler.start()
    await inside.wait()
    try:
        await scheduler.stop(grace_s=0.5)
        _assert_recorded_interrupted(engine, kit, 1)
    finally:
        stuck.set()
