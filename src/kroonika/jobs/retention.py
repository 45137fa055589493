"""The ``audit_retention`` job: purge audit blocks past the retention policy, in batches,
each purge recorded as ``audit.retention``, then shred the data keys of ``anon:`` months
and ``flow:`` logins that no retained event can need (``keys_shredded``, recorded the
same way; decision 0023); a ``planned`` record an earlier run left alone is settled
first (``reconciled``, count ``retention_reconciled``; decision 0001), however old: the
job's cursor keeps how far its last run settled them (``settled_through``), and the run
looks back from a day before that (at least :data:`RECONCILE_DAYS`; the whole trail when
no run has yet); on PostgreSQL it first creates the monthly partitions of
``audit_blocks`` ahead of time. Under a legal hold it settles lone ``planned`` records
(``not_done``, reason ``legal_hold``, unless the store shows them done) but purges and
shreds nothing (and says so in its counts: ``legal_hold``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from kroonika.audit import AuditEvent
from kroonika.audit.retention import (
    DAY,
    RECONCILE_DAYS,
    RetentionJob,
    RetentionPolicy,
    retention_event,
    shredded_event,
)
from kroonika.audit.store.partitions import ensure_partitions
from kroonika.audit.store.sql import SqlAuditStore
from kroonika.db import limit_statements
from kroonika.jobs.cleanup import Job, JobContext, JobDeps

JOB_NAME = "audit_retention"


def reconcile_days(cursor: str | None, now: int) -> float | None:
    """How many days back a run looks for lone ``planned`` records: to a day before the
    time its last run had settled them through (clocks of instances differ; a record
    written while that run ran), at least :data:`RECONCILE_DAYS`; None (the whole
    trail) when no run has settled them yet or the cursor is not one this job wrote."""
    try:
        through = orjson.loads(cursor or "null")["settled_through"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    if not isinstance(through, int):
        return None
    return max(float(RECONCILE_DAYS), (now - through) / DAY + 1)


def audit_retention_job(
    store: SqlAuditStore,
    policy: RetentionPolicy,
    *,
    archive_dir: Path | None = None,
    partitions_ahead: int = 3,
) -> Job:
    """A scheduler job (see :mod:`kroonika.jobs`) bound to the audit store and policy;
    its statements on the store are bounded like every job's (the scheduler's
    :class:`~kroonika.db.StatementLimits`)."""
    limit_statements(store.engine)

    async def audit_retention(deps: JobDeps, ctx: JobContext) -> None:
        loop = asyncio.get_running_loop()
        if store.dialect == "postgresql":
            created = await asyncio.to_thread(
                ensure_partitions, store.engine, now=float(ctx.now()), ahead=partitions_ahead
            )
            ctx.counts["partitions_created"] += len(created)

        def emit(event: AuditEvent) -> None:
            # Runs in the worker thread; the trail's writer lives on the loop. The job
            # records each purge and shredding before it (planned) and after it (done or
            # failed); a refused record (AuditUnavailable: the trail is stopped, the
            # store is down) stops the run before anything is deleted.
            asyncio.run_coroutine_threadsafe(deps.trail.emit(event), loop).result(60)

        def reconciled(event: AuditEvent) -> None:
            # a planned record that an earlier run left alone (it died between the two
            # records), settled by what the store holds (decision 0001)
            emit(event)
            ctx.counts["retention_reconciled"] += 1

        job = RetentionJob(
            store,
            policy,
            archive_dir=archive_dir,
            clock=lambda: float(ctx.now()),
            max_blocks=ctx.batch_size,
            on_purged=lambda result: emit(retention_event(result)),
            keyring=deps.trail.keyring,
            on_shredded=lambda n, before, phase: emit(shredded_event(n, before, phase)),
            on_reconciled=reconciled,
            reconcile_days=reconcile_days(ctx.cursor, ctx.now()),
        )
        started = ctx.now()
        await asyncio.to_thread(job.reconcile)  # under a legal hold too (decision 0001)
        if ctx.save_cursor is not None:
            await ctx.save_cursor(orjson.dumps({"settled_through": started}).decode())
        if policy.legal_hold:
            ctx.counts["legal_hold"] += 1
            return
        while True:
            results = await asyncio.to_thread(job.run)
            if not results:
                break
            for r in results:
                ctx.counts["events_purged"] += r.count
                ctx.counts["ranges_purged"] += 1
                ctx.counts["partitions_dropped"] += len(r.partitions_dropped)
                if r.archive is not None:
                    ctx.counts["archives_written"] += 1
            await ctx.batch_done()
        ctx.counts["keys_shredded"] += await asyncio.to_thread(job.shred_keys)

    return audit_retention


__all__ = ["JOB_NAME", "audit_retention_job"]
