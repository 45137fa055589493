"""A job blocked on a row lock another session holds does not hang (decision 0010,
2026-11-28 (review ops)): its statements run under the jobs' ``lock_timeout`` and
``statement_timeout``, so the run fails, ``job.run`` says why (``lock_timeout``, no SQL),
the lease is free and a later tick runs the same slot again, after a pause that doubles
with each such failure in a row (decision 0010, 2026-11-28 (review jobs)). Real
PostgreSQL, a second session of its own holding the lock."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from sqlalchemy import Engine, select

sys.path.insert(0, str(Path(__file__).parents[1] / "audit"))

from audit_kit import TrailKit
from job_kit import job_deps
from lock_kit import add_stale_profile, profile_locked

from kroonika.audit import Query, run_query
from kroonika.db import StatementLimits, make_engine
from kroonika.db.admin import job_run, job_state
from kroonika.db.migrate import upgrade
from kroonika.db.security import security_profile
from kroonika.jobs import JOBS, JobDeps, Scheduler

pytestmark = pytest.mark.postgres

NOW = 1_700_000_000
#: A second is far above what an unblocked statement here needs, and keeps the test short.
LIMITS = StatementLimits(lock_timeout_s=1.0, statement_timeout_s=30.0)


@pytest.fixture
def engine(fresh_postgres_url: str) -> Iterator[Engine]:
    e = make_engine(fresh_postgres_url)
    upgrade(e)
    add_stale_profile(e)
    yield e
    e.dispose()


@pytest.fixture
def kit(pg_trail: TrailKit) -> TrailKit:
    return pg_trail


@pytest.fixture
def holder(fresh_postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Another session, holding the profile's row lock until the test lets go."""
    with profile_locked(fresh_postgres_url) as conn:
        yield conn


class Clock:
    """A clock the test moves (the scheduler's backoff is measured on it)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _scheduler(engine: Engine, kit: TrailKit, clock: Clock | None = None) -> Scheduler:
    return Scheduler(
        {"security_profiles": JOBS["security_profiles"]},
        job_deps(engine, kit.trail),
        clock=clock or (lambda: NOW),
        schedule=lambda _: ("* * * * *", True),
        statement_limits=LIMITS,
    )


def _runs(kit: TrailKit) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in run_query(kit.store, Query(types=("job.run",)))]


def _profiles(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(security_profile.c.person)).scalars())


@pytest.mark.asyncio
async def test_a_job_blocked_on_a_row_lock_fails_with_lock_timeout_and_the_next_tick_retries(
    engine: Engine, kit: TrailKit, holder: psycopg.Connection[Any]
) -> None:
    """The blocked run fails within the bound (not at the stop), recorded as
    ``lock_timeout`` without any SQL, its lease freed; once the lock is gone the first
    tick after the backoff runs the same schedule slot and deletes the row."""
    clock = Clock()
    scheduler = _scheduler(engine, kit, clock)
    # Bounded only so that a regression fails instead of hanging the suite.
    [failed] = await asyncio.wait_for(scheduler.tick(), 120)
    assert (failed.outcome, failed.error) == ("failure", "lock_timeout")
    [run] = _runs(kit)
    assert (run["outcome"], run["reason"]) == ("failure", "lock_timeout")
    assert run["details"]["error"] == "lock_timeout"
    text = orjson.dumps(run).decode().lower()
    assert "delete from" not in text
    assert "canceling statement" not in text
    with engine.connect() as conn:
        assert conn.execute(select(job_state.c.lease_until)).scalar_one() is None
        assert conn.execute(select(job_run.c.outcome)).scalar_one() == "failure"
    assert _profiles(engine) == ["p1"]

    holder.rollback()  # the other session lets go
    clock.now += 15  # the first pause
    [retried] = await asyncio.wait_for(scheduler.tick(), 120)
    assert retried.outcome == "success"
    assert retried.counts == {"security_profiles_deleted": 1}
    assert _profiles(engine) == []


@pytest.mark.asyncio
async def test_a_failure_that_is_no_timeout_keeps_its_slot(engine: Engine, kit: TrailKit) -> None:
    """Only a timeout gives the slot back: a run that fails otherwise waits for the next
    slot, as before (no failure every tick)."""

    async def broken(_deps: JobDeps, _ctx: Any) -> None:
        raise ValueError("a bug")

    scheduler = _scheduler(engine, kit)
    scheduler.jobs = {"security_profiles": broken}
    [failed] = await scheduler.tick()
    assert (failed.outcome, failed.error) == ("failure", "ValueError")
    assert "backoff_delay_s" not in _runs(kit)[-1]["details"]  # no pause: the next slot
    assert await scheduler.tick() == []


def test_job_limits_do_not_reach_other_statements(engine: Engine) -> None:
    """Outside a job the same engine's sessions keep the server's own timeouts."""
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
    with LIMITS.applied(), engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1s"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "0"


@pytest.mark.asyncio
async def test_lock_timeouts_in_a_row_back_off_doubling_up_to_a_cap_and_reset_on_success(
    engine: Engine, kit: TrailKit, holder: psycopg.Connection[Any]
) -> None:
    """A lock held for long: each failed attempt doubles the pause before the next
    (15 s up to 15 min), a tick inside the pause makes no attempt, every attempt is one
    ``job.run``; the status shows the backoff; the first success clears it."""
    clock = Clock()
    scheduler = _scheduler(engine, kit, clock)
    delays = []
    for attempt in range(1, 9):
        [failed] = await asyncio.wait_for(scheduler.tick(), 120)
        assert (failed.outcome, failed.error) == ("failure", "lock_timeout")
        assert len(_runs(kit)) == attempt  # one job.run per attempt
        [status] = scheduler.status()
        backoff = status["backoff"]
        assert backoff["failures"] == attempt
        assert backoff["error"] == "lock_timeout"
        assert backoff["retry_at"] == int(clock.now) + backoff["delay_s"]
        assert failed.retry_after == backoff["delay_s"]
        recorded = _runs(kit)[-1]["details"]  # the pause is in the trail, too
        assert (recorded["backoff_delay_s"], recorded["backoff_failures"]) == (
            backoff["delay_s"],
            attempt,
        )
        delays.append(backoff["delay_s"])
        clock.now = backoff["retry_at"] - 1
        assert await scheduler.tick() == []  # within the pause: no attempt, no record
        assert len(_runs(kit)) == attempt
        clock.now = backoff["retry_at"]
    assert delays == [15, 30, 60, 120, 240, 480, 900, 900]

    holder.rollback()
    [ok] = await asyncio.wait_for(scheduler.tick(), 120)
    assert ok.outcome == "success"
    [status] = scheduler.status()
    assert status["backoff"] is None
    assert "backoff_delay_s" not in _runs(kit)[-1]["details"]


@pytest.mark.asyncio
async def test_a_manual_run_is_not_held_back_and_counts_as_an_attempt(
    engine: Engine, kit: TrailKit, holder: psycopg.Connection[Any]
) -> None:
    """An administrator's run inside the pause is tried (and recorded); its timeout
    doubles the pause like a scheduled one's."""
    clock = Clock()
    scheduler = _scheduler(engine, kit, clock)
    [first] = await asyncio.wait_for(scheduler.tick(), 120)
    assert first.retry_after == 15
    manual = await asyncio.wait_for(scheduler.run("security_profiles", trigger="admin:x"), 120)
    assert (manual.outcome, manual.error, manual.retry_after) == ("failure", "lock_timeout", 30)
    assert [r["details"]["trigger"] for r in _runs(kit)] == ["schedule", "admin:x"]
    clock.now += 29
    assert await scheduler.tick() == []
