"""The ``audit_retention`` job settles every lone ``planned`` record, not only those of
the last 7 days: it keeps how far back it has settled them (its cursor) and looks back
from there, so a week or a month without a run (a job switched off, a legal hold, a lock
held for days) leaves none unsettled; under a legal hold it settles them too, as
``not_done`` with reason ``legal_hold``, and purges nothing (decision 0001, 2026-11-28
(review jobs)). On PostgreSQL and SQLite."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from sqlalchemy import Engine, select

sys.path.insert(0, str(Path(__file__).parents[1] / "audit" / "sinks"))

from job_kit import job_deps
from sink_kit import Kit, make_kit, write_events

from kroonika.audit import Query, run_query
from kroonika.audit.retention import PurgePhase, PurgeResult, RetentionPolicy, retention_event
from kroonika.db import make_engine
from kroonika.db.admin import job_state
from kroonika.db.migrate import upgrade
from kroonika.jobs import JobContext, JobDeps, Scheduler
from kroonika.jobs.retention import audit_retention_job

DAY = 86400


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'one.db'}"
    return cast(str, request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def kit(url: str, tmp_path: Path) -> Kit:
    k = make_kit(url, tmp_path / "keys", checkpoint_every=5)
    yield k  # type: ignore[misc]
    k.store.close()


def _deps(kit: Kit, engine: Engine | None = None) -> JobDeps:
    engine = engine if engine is not None else kit.store.engine
    return job_deps(engine, kit.trail, flow_retention_s=0, token_retention_s=0)


def _at(kit: Kit, seconds: float) -> None:
    """Give the trail's next events the time ``seconds`` (since the epoch)."""
    ns = int(seconds * 1e9)
    kit.trail._clock = kit.trail._sealer._clock = lambda: ns


def _lone_planned(kit: Kit, age_days: float) -> str:
    """Old events (500 days) and a ``planned`` purge of them ``age_days`` old that nothing
    followed (its run died before the purge); the planned record's id."""
    now = time.time()
    _at(kit, now - 500 * DAY)
    write_events(kit, 11)
    _at(kit, now - age_days * DAY)
    kit.trail.emit_sync(retention_event(PurgeResult("web-1", 1, 10, 10, phase=PurgePhase.PLANNED)))
    kit.trail._clock = kit.trail._sealer._clock = time.time_ns
    [planned] = _retention(kit)
    return str(planned["id"])


def _retention(kit: Kit) -> list[dict[str, Any]]:
    return [orjson.loads(b) for b in run_query(kit.store, Query(types=("audit.retention",)))]


async def _run(
    kit: Kit, policy: RetentionPolicy, cursor: str | None = None
) -> tuple[Counter[str], list[str]]:
    """One run of the job now; its counts and the cursors it saved."""
    saved: list[str] = []

    async def save(value: str) -> None:
        saved.append(value)

    async def progress() -> None:
        return None

    ctx = JobContext(
        now=lambda: int(time.time()),
        batch_size=500,
        counts=Counter(),
        progress=progress,
        cursor=cursor,
        save_cursor=save,
    )
    await kit.trail.start()
    try:
        await audit_retention_job(kit.store, policy)(_deps(kit), ctx)
    finally:
        await kit.trail.stop()
    return ctx.counts, saved


def _through(days_ago: float) -> str:
    return orjson.dumps({"settled_through": int(time.time() - days_ago * DAY)}).decode()


@pytest.mark.asyncio
async def test_a_lone_planned_record_a_month_old_is_settled_by_the_first_run(kit: Kit) -> None:
    """No cursor yet (the first run, or the first since this change): the whole trail is
    looked at; the month-old record is settled, the range then purged, and the cursor
    says how far this run settled."""
    planned_id = _lone_planned(kit, 30)
    before = int(time.time())
    counts, saved = await _run(kit, RetentionPolicy())
    assert counts["retention_reconciled"] == 1
    assert counts["events_purged"] == 10
    settled = [e for e in _retention(kit) if e["details"]["phase"] == "reconciled"]
    assert [e["details"]["planned_id"] for e in settled] == [planned_id]
    assert (settled[0]["details"]["settled"], settled[0]["reason"]) == (
        "not_done",
        "purge_not_done",
    )
    [cursor] = saved
    assert orjson.loads(cursor)["settled_through"] >= before


@pytest.mark.asyncio
async def test_the_cursor_of_a_run_long_ago_reaches_back_to_it(kit: Kit) -> None:
    """The last run that settled records was 40 days ago: this one looks back to it, past
    the 7 days, and settles the 30-day-old record."""
    _lone_planned(kit, 30)
    counts, _ = await _run(kit, RetentionPolicy(), cursor=_through(40))
    assert counts["retention_reconciled"] == 1


@pytest.mark.asyncio
async def test_a_recent_cursor_spares_reading_what_a_run_settled_before(kit: Kit) -> None:
    """A run two days ago settled everything before it: a record 30 days old is not looked
    at again (what bounds the daily read), though still unpaired in this made-up trail."""
    _lone_planned(kit, 30)
    counts, _ = await _run(kit, RetentionPolicy(), cursor=_through(2))
    assert counts["retention_reconciled"] == 0


@pytest.mark.asyncio
async def test_under_a_legal_hold_a_lone_planned_is_settled_not_done_and_nothing_goes(
    kit: Kit,
) -> None:
    """The hold keeps every event; the lone record is settled as not done with reason
    ``legal_hold``, and no purge is planned or done."""
    planned_id = _lone_planned(kit, 1)
    counts, saved = await _run(kit, RetentionPolicy(legal_hold=True))
    assert counts["legal_hold"] == 1
    assert counts["retention_reconciled"] == 1
    assert counts["events_purged"] == 0
    lone, settled = _retention(kit)
    assert lone["id"] == planned_id
    assert settled["details"]["phase"] == "reconciled"
    assert settled["details"]["planned_id"] == planned_id
    assert (settled["outcome"], settled["reason"]) == ("failure", "legal_hold")
    assert settled["details"]["settled"] == "not_done"
    assert sum(b.count for b in kit.store.blocks("web-1")) >= 11  # nothing purged
    assert len(saved) == 1


@pytest.mark.asyncio
async def test_the_scheduler_keeps_a_jobs_cursor_between_runs(url: str, kit: Kit) -> None:
    """What a run saves with ``save_cursor`` the next run gets as ``ctx.cursor`` (the
    job's row in ``job_state``, on any instance)."""
    engine = make_engine(url)
    upgrade(engine)
    seen: list[str | None] = []

    async def job(_deps: JobDeps, ctx: JobContext) -> None:
        seen.append(ctx.cursor)
        assert ctx.save_cursor is not None
        await ctx.save_cursor(f"after-{len(seen)}")

    deps = _deps(kit, engine)
    scheduler = Scheduler({"j": job}, deps, clock=time.time, schedule=lambda _: ("* * * * *", True))
    await kit.trail.start()
    try:
        await scheduler.run("j", trigger="test")
        await scheduler.run("j", trigger="test")
    finally:
        await kit.trail.stop()
    assert seen == [None, "after-1"]
    with engine.connect() as conn:
        assert conn.execute(select(job_state.c.cursor)).scalar_one() == "after-2"
    engine.dispose()
