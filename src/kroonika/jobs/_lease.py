"""The single-runner lock: a lease row per job in ``job_state``.

Acquiring is one conditional ``UPDATE`` (atomic on PostgreSQL and SQLite): it succeeds only
when nobody holds an unexpired lease and, for a scheduled run, when this schedule slot has not
been run yet, so of several instances exactly one runs each slot. A run renews its lease after
every batch; if it dies, the lease runs out and the next run takes over (the run left
``running`` in the history is marked ``interrupted`` and the new one ``resumed``). The
row's ``cursor`` is what a job keeps from one run to the next (``audit_retention``: how
far back lone ``planned`` records are settled).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from kroonika.db.admin import job_run, job_state
from kroonika.jobs._errors import LeaseLost


@dataclass(frozen=True, slots=True)
class Lease:
    job: str
    run_id: str
    owner: str
    resumed: bool
    slot: int | None = None  # the schedule slot this run took (None: a manual run)
    cursor: str | None = None  # what the job's last run saved (:meth:`Leases.save_cursor`)


class Leases:
    def __init__(self, engine: Engine, *, owner: str, lease_s: int) -> None:
        self.engine = engine
        self.owner = owner
        self.lease_s = lease_s

    def _ensure(self, job: str) -> None:
        with self.engine.connect() as conn:
            found = conn.execute(select(job_state.c.job).where(job_state.c.job == job)).first()
        if found is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(job_state).values(job=job))
            except IntegrityError:
                pass  # another instance created it first

    def acquire(self, job: str, *, now: int, trigger: str, slot: int | None) -> Lease | None:
        """The lease and a new ``job_run`` row, or None if the job is busy or the slot ran."""
        self._ensure(job)
        run_id = f"run_{secrets.token_hex(8)}"
        free = or_(job_state.c.lease_until.is_(None), job_state.c.lease_until < now)
        cond = and_(job_state.c.job == job, free)
        values: dict[str, object] = {
            "lease_owner": self.owner,
            "lease_until": now + self.lease_s,
            "run_id": run_id,
            "last_started_at": now,
        }
        if slot is not None:
            cond = and_(cond, or_(job_state.c.last_slot.is_(None), job_state.c.last_slot < slot))
            values["last_slot"] = slot
        with self.engine.begin() as conn:
            if conn.execute(update(job_state).where(cond).values(**values)).rowcount != 1:
                return None
            cursor = conn.execute(
                select(job_state.c.cursor).where(job_state.c.job == job)
            ).scalar_one()
            interrupted = conn.execute(
                update(job_run)
                .where(job_run.c.job == job, job_run.c.outcome == "running")
                .values(outcome="interrupted", finished_at=now)
            ).rowcount
            conn.execute(
                insert(job_run).values(
                    id=run_id,
                    job=job,
                    trigger=trigger[:200],
                    owner=self.owner,
                    started_at=now,
                    outcome="running",
                    counts="{}",
                    resumed=interrupted > 0,
                )
            )
        return Lease(job, run_id, self.owner, interrupted > 0, slot, cursor)

    def renew(self, lease: Lease, *, now: int, counts: dict[str, int]) -> None:
        """Extend the lease and record progress; :class:`LeaseLost` if another took it."""
        with self.engine.begin() as conn:
            n = conn.execute(
                update(job_state)
                .where(job_state.c.job == lease.job, job_state.c.run_id == lease.run_id)
                .values(lease_until=now + self.lease_s)
            ).rowcount
            conn.execute(
                update(job_run)
                .where(job_run.c.id == lease.run_id)
                .values(counts=orjson.dumps(counts).decode())
            )
        if n != 1:
            raise LeaseLost(f"job {lease.job}: lease of {lease.run_id} was taken over")

    def save_cursor(self, lease: Lease, value: str) -> None:
        """Keep ``value`` for the job's next run; :class:`LeaseLost` if another took it."""
        with self.engine.begin() as conn:
            n = conn.execute(
                update(job_state)
                .where(job_state.c.job == lease.job, job_state.c.run_id == lease.run_id)
                .values(cursor=value)
            ).rowcount
        if n != 1:
            raise LeaseLost(f"job {lease.job}: lease of {lease.run_id} was taken over")

    def failures_in_a_row(
        self, job: str, *, errors: frozenset[str], limit: int
    ) -> tuple[int, str | None, int | None]:
        """How many of the job's newest ended runs (at most ``limit``) failed in a row
        with one of ``errors``, the newest one's error and end (None, None when it did
        not). Read from the history, which every instance writes, so all of them see
        the same streak."""
        c = job_run.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.outcome, c.error, c.finished_at)
                .where(c.job == job, c.outcome != "running")
                .order_by(c.started_at.desc(), c.finished_at.desc())
                .limit(limit)
            ).all()
        n = 0
        for row in rows:
            if row.outcome != "failure" or row.error not in errors:
                break
            n += 1
        if n == 0:
            return 0, None, None
        return n, rows[0].error, rows[0].finished_at

    def release(
        self,
        lease: Lease,
        *,
        now: int,
        outcome: str,
        counts: dict[str, int],
        error: str | None,
        retry: bool = False,
    ) -> None:
        """End the run; with ``retry`` (a run the database gave up: a lock or statement
        timeout) the schedule slot it took is given back, so the next tick runs it."""
        state: dict[str, object] = {
            "lease_owner": None,
            "lease_until": None,
            "last_finished_at": now,
            "last_outcome": outcome,
        }
        if retry and lease.slot is not None:
            state["last_slot"] = None
        with self.engine.begin() as conn:
            conn.execute(
                update(job_run)
                .where(job_run.c.id == lease.run_id)
                .values(
                    outcome=outcome,
                    finished_at=now,
                    counts=orjson.dumps(counts).decode(),
                    error=error,
                )
            )
            conn.execute(
                update(job_state)
                .where(job_state.c.job == lease.job, job_state.c.run_id == lease.run_id)
                .values(**state)
            )
