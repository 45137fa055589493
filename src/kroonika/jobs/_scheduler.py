"""The scheduler: cron expressions (croniter) per job, each can be disabled, manual runs,
a lease per job so that of several instances only one runs it at a time, and one ``job.run``
event per run (failed runs included) with exact counts per kind.

A run the database gave up (a lock another session holds past ``lock_timeout``, or a
statement past ``statement_timeout``) gives its schedule slot back, but the next
scheduled attempt waits a pause that doubles with each such failure in a row
(:data:`BACKOFF_BASE_S` up to :data:`BACKOFF_MAX_S`, :class:`Backoff`); any other
outcome ends the streak. A tick inside the pause makes no attempt (and so records
none); a manual run is tried whatever the pause, and counts as an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from croniter import croniter
from sqlalchemy import select

from kroonika.audit import (
    Actor,
    ActorType,
    AuditUnavailable,
    Correlation,
    Outcome,
    StoreError,
    Target,
)
from kroonika.audit import events as ev
from kroonika.db import UNAVAILABLE, StatementLimits, timeout_kind
from kroonika.db.admin import job_run, job_state
from kroonika.jobs._errors import JobBusy, JobStopped, LeaseLost, RunUnrecorded, UnknownJob
from kroonika.jobs._lease import Lease, Leases
from kroonika.jobs.cleanup import Job, JobContext, JobDeps

log = logging.getLogger("kroonika.jobs")

#: how long :meth:`Scheduler.stop` waits for a running job to reach the end of its batch
#: before it gives the run up (the service bounds the whole stop of the jobs at 10 s)
STOP_GRACE_S = 5.0
#: how long a run given up at the stop may take to free its lease (a dead database: the
#: lease then runs out, and the next run marks the row interrupted)
RELEASE_S = 2.0
#: what a run the database gave up failed with (:func:`kroonika.db.timeout_kind`)
TIMEOUTS = frozenset({"lock_timeout", "statement_timeout"})
#: the pause after the first such failure in a row; it doubles with each next one ...
BACKOFF_BASE_S = 15
#: ... up to this
BACKOFF_MAX_S = 900
#: how many runs of the history the streak is counted over (enough to reach the cap)
_STREAK_RUNS = 64


def backoff_delay(
    failures: int, *, base_s: int = BACKOFF_BASE_S, max_s: int = BACKOFF_MAX_S
) -> int:
    """The pause (seconds) after ``failures`` (>= 1) timed-out runs in a row."""
    return int(min(max_s, base_s * 2 ** min(failures - 1, 32)))


@dataclass(frozen=True, slots=True)
class Backoff:
    """A job whose newest runs the database gave up: no scheduled attempt before
    ``retry_at`` (``delay_s`` after the newest one ended)."""

    failures: int  # in a row, counted over the newest 64 runs at most
    error: str  # the newest one's: lock_timeout or statement_timeout
    delay_s: int
    retry_at: int

    def public(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            "error": self.error,
            "delay_s": self.delay_s,
            "retry_at": self.retry_at,
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    job: str
    run_id: str
    trigger: str
    outcome: str
    counts: dict[str, int]
    duration_ms: int
    resumed: bool
    error: str | None = None
    #: why a failed run failed when a component was down: ``database_unavailable`` or
    #: ``audit_unavailable`` (None otherwise); not part of :meth:`public`
    cause: str | None = None
    #: a run the database gave up (a timeout): seconds until the scheduler tries the
    #: job again (its backoff); None otherwise; not part of :meth:`public`
    retry_after: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "run_id": self.run_id,
            "trigger": self.trigger,
            "outcome": self.outcome,
            "counts": self.counts,
            "duration_ms": self.duration_ms,
            "resumed": self.resumed,
            "error": self.error,
        }


def _cause(exc: Exception) -> str | None:
    """The component whose outage failed a run, if one did."""
    if isinstance(exc, AuditUnavailable | StoreError):
        return "audit_unavailable"
    if isinstance(exc, UNAVAILABLE):
        return "database_unavailable"
    return None


def default_owner() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Scheduler:
    def __init__(
        self,
        jobs: dict[str, Job],
        deps: JobDeps,
        *,
        clock: Callable[[], float],
        schedule: Callable[[str], tuple[str, bool]],
        lease_s: int = 300,
        batch_size: int = 500,
        tick_s: float = 15.0,
        owner: str | None = None,
        on_tick: Callable[[], object] | None = None,
        statement_limits: StatementLimits | None = None,
    ) -> None:
        for name in jobs:
            expr, _ = schedule(name)
            if not croniter.is_valid(expr):
                raise ValueError(f"job {name}: bad cron expression {expr!r}")
        self.jobs = jobs
        self.deps = deps
        self.clock = clock
        self.schedule = schedule  # name -> (cron expression, enabled)
        self.batch_size = batch_size
        self.tick_s = tick_s
        self.leases = Leases(deps.engine, owner=owner or default_owner(), lease_s=lease_s)
        self.on_tick = on_tick
        #: bounds for every statement of a run on PostgreSQL (lease included)
        self.statement_limits = statement_limits or StatementLimits()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake: asyncio.Event | None = None

    def _now(self) -> int:
        return int(self.clock())

    def slot(self, name: str) -> int | None:
        """The latest schedule slot at or before now, or None if the job is disabled."""
        expr, enabled = self.schedule(name)
        if not enabled:
            return None
        return int(croniter(expr, self._now() + 1).get_prev(float))

    def next_run(self, name: str) -> int | None:
        expr, enabled = self.schedule(name)
        return int(croniter(expr, self._now()).get_next(float)) if enabled else None

    def backoff(self, name: str) -> Backoff | None:
        """The pause the job is in after runs the database gave up, None if its newest
        run ended otherwise (or it has none)."""
        failures, error, ended = self.leases.failures_in_a_row(
            name, errors=TIMEOUTS, limit=_STREAK_RUNS
        )
        if failures == 0 or error is None or ended is None:
            return None
        delay = backoff_delay(failures)
        return Backoff(failures, error, delay, int(ended) + delay)

    async def _backing_off(self, name: str) -> bool:
        with self.statement_limits.applied():
            backoff = await asyncio.to_thread(self.backoff, name)
        return backoff is not None and self._now() < backoff.retry_at

    async def run(
        self,
        name: str,
        *,
        trigger: str = "schedule",
        actor: Actor | None = None,
        slot: int | None = None,
        correlation: Correlation | None = None,
    ) -> RunResult:
        """Run one job now (under its lease). :class:`JobBusy` if it runs elsewhere or this
        slot already ran. Every statement of the run on PostgreSQL (the lease's too) is
        bounded by :attr:`statement_limits`: a run blocked on a lock fails
        (``lock_timeout``) and, when scheduled, gives its slot back for the next tick."""
        job = self.jobs.get(name)
        if job is None:
            raise UnknownJob(name)
        with self.statement_limits.applied():
            lease = await asyncio.to_thread(
                self.leases.acquire, name, now=self._now(), trigger=trigger, slot=slot
            )
            if lease is None:
                raise JobBusy(f"job {name} is running or already ran for this slot")
            return await self._execute(job, lease, trigger, actor, correlation)

    async def _execute(
        self,
        job: Job,
        lease: Lease,
        trigger: str,
        actor: Actor | None,
        correlation: Correlation | None,
    ) -> RunResult:
        counts: Counter[str] = Counter()

        async def progress() -> None:
            await asyncio.to_thread(self.leases.renew, lease, now=self._now(), counts=dict(counts))

        async def save_cursor(value: str) -> None:
            await asyncio.to_thread(self.leases.save_cursor, lease, value)

        ctx = JobContext(
            now=self._now,
            batch_size=self.batch_size,
            counts=counts,
            progress=progress,
            request_id=correlation.request_id if correlation else None,
            stopping=lambda: self._stopping,
            cursor=lease.cursor,
            save_cursor=save_cursor,
        )
        started = time.perf_counter()
        outcome, error, cause = "success", None, None
        given_up = retry = False
        backoff: Backoff | None = None
        try:
            await job(self.deps, ctx)
        except LeaseLost:
            outcome, error = "interrupted", "lease_lost"
        except JobStopped:  # at the end of a batch: the next run goes on from there
            outcome, error = "interrupted", "stopped"
        except asyncio.CancelledError:
            # given up by stop() after its grace (stuck in a thread, which may still
            # finish its batch): recorded all the same, as interrupted, then cancelled
            outcome, error, given_up = "interrupted", "stopped", True
        except Exception as exc:
            timed_out = timeout_kind(exc)
            if timed_out is not None:
                # Blocked or slow (a lock another session holds): the run is given up
                # by the database, not by a bug; the next tick tries the slot again.
                log.error("job %s failed: %s", lease.job, timed_out)
                outcome, error, retry = "failure", timed_out, True
            else:
                log.error("job %s failed: %s", lease.job, type(exc).__name__, exc_info=True)
                outcome, error, cause = "failure", type(exc).__name__, _cause(exc)
        duration = int((time.perf_counter() - started) * 1000)
        result = RunResult(
            lease.job,
            lease.run_id,
            trigger,
            outcome,
            dict(sorted(counts.items())),
            duration,
            lease.resumed,
            error,
            cause,
        )
        release = asyncio.to_thread(
            self.leases.release,
            lease,
            now=self._now(),
            outcome=outcome,
            counts=result.counts,
            error=error,
            retry=retry,
        )
        try:
            if given_up:
                await asyncio.wait_for(release, RELEASE_S)
            else:
                await release
            if retry:  # the caller (and the trail) is told when the scheduler tries again
                backoff = await asyncio.to_thread(self.backoff, lease.job)
                if backoff is not None:
                    result = replace(result, retry_after=max(0, backoff.retry_at - self._now()))
        except Exception:
            if not given_up:
                raise
            log.error("job %s: the lease of a run given up at the stop was not freed", lease.job)
        finally:  # a database gone with the run: the lease runs out, the run is still recorded
            try:
                await self._record(lease, result, actor, correlation, ctx.batches, backoff)
            except AuditUnavailable as exc:
                if not given_up:
                    raise RunUnrecorded(result) from exc
                log.error("job %s: a run given up at the stop could not be recorded", lease.job)
        if given_up:
            raise asyncio.CancelledError
        return result

    async def _record(
        self,
        lease: Lease,
        result: RunResult,
        actor: Actor | None,
        correlation: Correlation | None,
        batches: int,
        backoff: Backoff | None,
    ) -> None:
        """One ``job.run``; a run the database gave up carries the pause it starts
        (``backoff_delay_s``) and the failures in a row it ends (``backoff_failures``)."""
        await self.deps.trail.emit(
            ev.job_run(
                outcome=Outcome.SUCCESS if result.outcome == "success" else Outcome.FAILURE,
                reason=result.error,
                actor=actor or Actor(ActorType.SYSTEM),
                target=Target("job", lease.job),
                correlation=correlation,
                job=lease.job,
                trigger=result.trigger,
                counts=orjson.dumps(result.counts, option=orjson.OPT_SORT_KEYS).decode(),
                duration_ms=result.duration_ms,
                run_id=lease.run_id,
                error=result.error,
                resumed=lease.resumed,
                batches=batches,
                backoff_delay_s=backoff.delay_s if backoff is not None else None,
                backoff_failures=backoff.failures if backoff is not None else None,
            )
        )

    async def tick(self) -> list[RunResult]:
        """Run every enabled job whose current slot has not run yet (on any instance)."""
        if self.on_tick is not None:
            await asyncio.to_thread(self.on_tick)
        out = []
        for name in self.jobs:
            if self._stopping:
                break
            slot = self.slot(name)
            if slot is None or await self._backing_off(name):
                continue  # not due, or pausing after timeouts: no attempt, nothing to record
            with contextlib.suppress(JobBusy):
                out.append(await self.run(name, slot=slot))
        return out

    async def _loop(self) -> None:
        wake = self._wake = asyncio.Event()
        while not self._stopping:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("scheduler tick failed: %s", type(exc).__name__, exc_info=True)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # stop() cancelled a run whose record then failed (the trail is down):
                    # that error replaced the cancellation, which must still end the loop
                    raise asyncio.CancelledError from None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.tick_s)

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="kroonika-jobs")

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the loop: a running job ends at the end of its batch (recorded as
        interrupted, ``stopped``); one that has not within ``grace_s`` (stuck in a worker
        thread) is cancelled, and recorded the same way. Manual runs stop too."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        if self._wake is not None:
            self._wake.set()
        await asyncio.wait({task}, timeout=grace_s)
        if not task.done():
            log.error("job scheduler: a run did not stop within %.0f s; giving it up", grace_s)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def status(self) -> list[dict[str, Any]]:
        with self.deps.engine.connect() as conn:
            rows = {r.job: r for r in conn.execute(select(job_state)).all()}
        out = []
        for name in self.jobs:
            expr, enabled = self.schedule(name)
            r = rows.get(name)
            backoff = self.backoff(name)
            out.append(
                {
                    "job": name,
                    "cron": expr,
                    "enabled": enabled,
                    "running": bool(r and r.lease_until and r.lease_until >= self._now()),
                    "last_started_at": r.last_started_at if r else None,
                    "last_finished_at": r.last_finished_at if r else None,
                    "last_outcome": r.last_outcome if r else None,
                    "next_run": self.next_run(name),
                    "backoff": backoff.public() if backoff is not None else None,
                }
            )
        return out

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        if name not in self.jobs:
            raise UnknownJob(name)
        with self.deps.engine.connect() as conn:
            rows = conn.execute(
                select(job_run)
                .where(job_run.c.job == name)
                .order_by(job_run.c.started_at.desc(), job_run.c.id)
                .limit(limit)
            ).all()
        return [
            {
                "run_id": r.id,
                "trigger": r.trigger,
                "owner": r.owner,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "outcome": r.outcome,
                "counts": orjson.loads(r.counts),
                "error": r.error,
                "resumed": bool(r.resumed),
            }
            for r in rows
        ]
