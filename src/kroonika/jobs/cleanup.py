"""The cleanup jobs. Each works in batches of ``batch_size`` rows, one short transaction per
batch, and selects its work by condition (expired, lapsed), so a run that is interrupted
leaves nothing half done and the next run simply continues. A batch whose events the
audit trail refuses is undone and the run fails (``AuditUnavailable``): no job leaves a
change unaudited, and the next run does the batch again with its events.

- ``login_flows``: first conclude every flow that expired without its browser ever coming
  back (not consumed, status still ``started`` or ``redirected``): the flow is claimed by a
  conditional update (status -> ``failed``) and gets its ``auth.flow.transition`` to
  ``failed`` and its one ``auth.login`` (failure, reason ``flow_abandoned``), so every login
  attempt ends with exactly one ``auth.login``. Then delete concluded flows expired longer
  than the flow retention (they are kept that long to recognise replayed callbacks).
- ``sessions``: end sessions past their idle or absolute expiry; each ending emits
  ``session.terminate`` (reason ``idle`` or ``expired``). Then revoke the active tokens of
  every ended session (``token.revoke``), so a revocation that could not be recorded
  (and was therefore undone) is done by the next run. Last, delete sessions ended longer
  than the session retention ago (they hold the person's code, names, address and
  browser in clear) unless an active token still names them.
- ``token_metadata``: mark overdue tokens expired (``token.expire``), then delete the metadata
  of tokens that expired, were revoked or replaced longer than the retention period ago.
- ``access_lists``: remove allow/deny entries whose expiry has passed (``access_list.remove``).
- ``token_keys``: discard keys staged by a rotation that was never recorded nor undone
  (its process died) once they are older than the publish lead plus an hour; rotate the
  token signing key when it is older than the rotation interval (``key.rotate``; the new
  key is staged, published but signing nothing, until its event is recorded) and retire
  superseded keys whose last token has expired.
- ``security_profiles``: delete the security profiles (places, networks and hours of a
  person's logins) of people who have not logged in for the profile retention.

A retention of 0 keeps those rows for ever (the deletion is off).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, select, update

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditTrail,
    AuditUnavailable,
    Correlation,
    Outcome,
    Target,
)
from kroonika.audit import events as ev
from kroonika.db.security import security_profile
from kroonika.db.sessions import login_flow, session
from kroonika.db.tokens import access_list, tokens
from kroonika.jobs._errors import JobStopped
from kroonika.sessions import EndReason, SessionManager, SessionRecord


@dataclass
class JobContext:
    """What a job gets: the time, the batch size, counters, and ``batch_done()`` to call
    after each batch: it renews the lease (``progress``; it raises if another instance took
    the job over) and raises :class:`JobStopped` once ``stopping()`` says the service is
    stopping, so a run ends between batches, each of which leaves consistent state. A job
    that needs to know where its last run got to keeps it in ``cursor``."""

    now: Callable[[], int]
    batch_size: int
    counts: Counter[str]
    progress: Callable[[], Awaitable[None]]
    request_id: str | None = None
    batches: int = 0
    stopping: Callable[[], bool] = lambda: False
    #: what the job's last run saved with ``save_cursor`` (None: nothing yet), kept in the
    #: job's ``job_state`` row, so the run on another instance gets it too
    cursor: str | None = None
    #: keep a value for the next run (while this run holds the lease); None outside the
    #: scheduler
    save_cursor: Callable[[str], Awaitable[None]] | None = None

    async def batch_done(self) -> None:
        self.batches += 1
        await self.progress()
        if self.stopping():
            raise JobStopped("the service is stopping")


@dataclass
class JobDeps:
    engine: Engine
    trail: AuditTrail
    sessions: SessionManager
    tokens: Callable[[], Any]  # -> kroonika.tokens.TokenComponents | None
    flow_retention_s: int
    token_retention_s: int
    session_retention_s: int = 30 * 86400
    profile_retention_s: int = 400 * 86400


Job = Callable[[JobDeps, JobContext], Awaitable[None]]


def _ids(engine: Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(query).all()]


def _delete(engine: Engine, table: Any, column: Any, ids: list[Any], extra: Any = None) -> int:
    cond = column.in_(ids)
    if extra is not None:
        cond = cond & extra
    with engine.begin() as conn:
        return int(conn.execute(delete(table).where(cond)).rowcount)


OPEN_FLOW_STATES = ("started", "redirected")
"""Stored statuses of a flow whose browser has not come back: the callback sets ``failed``
or ``session_created`` (and consumes the flow) when it concludes an attempt."""

ABANDONED = "flow_abandoned"


def _claim_abandoned(engine: Engine, rows: list[Any], now: int) -> list[Any]:
    """Mark each open, unconsumed, expired flow failed; the rows this call claimed (a
    callback or another run that got there first keeps its own)."""
    claimed = []
    with engine.begin() as conn:
        for row in rows:
            result = conn.execute(
                update(login_flow)
                .where(
                    login_flow.c.flow_id == row.flow_id,
                    login_flow.c.status == row.status,
                    login_flow.c.consumed_at.is_(None),
                    login_flow.c.expires_at < now,
                )
                .values(status="failed")
            )
            if result.rowcount == 1:
                claimed.append(row)
    return claimed


def _unclaim(engine: Engine, rows: list[Any]) -> None:
    """Undo a claim whose events the trail refused (the next run tries again)."""
    with engine.begin() as conn:
        for row in rows:
            conn.execute(
                update(login_flow)
                .where(login_flow.c.flow_id == row.flow_id, login_flow.c.status == "failed")
                .values(status=row.status)
            )


def abandoned_events(row: Any, request_id: str | None) -> list[AuditEvent]:
    """The transition to ``failed`` and the single ``auth.login`` of an abandoned flow."""
    corr = Correlation(request_id=request_id, flow_id=row.flow_id)
    target = Target("login_flow", row.flow_id)
    return [
        ev.auth_flow_transition(
            actor=Actor(ActorType.ANONYMOUS),
            target=target,
            correlation=corr,
            from_state=row.status,
            to_state="failed",
        ),
        ev.auth_login(
            outcome=Outcome.FAILURE,
            reason=ABANDONED,
            actor=Actor(ActorType.ANONYMOUS),
            target=target,
            correlation=corr,
            acr_requested=row.acr_requested,
            idp="tara",
        ),
    ]


async def _abandon_flows(deps: JobDeps, ctx: JobContext) -> None:
    while True:
        now = ctx.now()
        query = (
            select(login_flow.c.flow_id, login_flow.c.status, login_flow.c.acr_requested)
            .where(
                login_flow.c.expires_at < now,
                login_flow.c.consumed_at.is_(None),
                login_flow.c.status.in_(OPEN_FLOW_STATES),
            )
            .order_by(login_flow.c.expires_at)
            .limit(ctx.batch_size)
        )
        rows = await asyncio.to_thread(_rows, deps.engine, query)
        if not rows:
            return
        claimed = await asyncio.to_thread(_claim_abandoned, deps.engine, rows, now)
        if claimed:
            try:
                await deps.trail.emit_many(
                    [e for row in claimed for e in abandoned_events(row, ctx.request_id)]
                )
            except AuditUnavailable:
                await asyncio.to_thread(_unclaim, deps.engine, claimed)
                raise
            ctx.counts["login_flows_abandoned"] += len(claimed)
        await ctx.batch_done()


def _rows(engine: Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(query).all())


async def login_flows(deps: JobDeps, ctx: JobContext) -> None:
    await _abandon_flows(deps, ctx)

    def concluded(now: int) -> Any:
        # only concluded flows: an open one is first concluded by _abandon_flows
        return (login_flow.c.expires_at < now - deps.flow_retention_s) & (
            login_flow.c.status.not_in(OPEN_FLOW_STATES) | login_flow.c.consumed_at.is_not(None)
        )

    await _purge(deps, ctx, login_flow.c.flow_id, concluded, "login_flows_deleted")


def _terminate_event(
    manager: SessionManager, record: SessionRecord, reason: str, request_id: str | None
) -> Any:
    ref = manager.session_ref(record)
    return ev.session_terminate(
        actor=Actor(ActorType.USER, subject=record.subject),
        target=Target("session", ref),
        correlation=Correlation(request_id=request_id, flow_id=record.flow_id, session_ref=ref),
        method=record.method,
        acr=record.acr,
        reason=reason,
        ended_by="system",
        expires_at=record.idle_expires_at,
        absolute_expires_at=record.absolute_expires_at,
    )


async def sessions(deps: JobDeps, ctx: JobContext) -> None:
    await _end_lapsed(deps, ctx)
    await _revoke_ended(deps, ctx)
    if deps.session_retention_s:
        live = select(tokens.c.jti).where(
            tokens.c.session_ref == session.c.ref, tokens.c.state == "active"
        )
        await _purge(
            deps,
            ctx,
            session.c.ref,
            lambda now: (session.c.ended_at < now - deps.session_retention_s) & ~live.exists(),
            "sessions_deleted",
        )


async def security_profiles(deps: JobDeps, ctx: JobContext) -> None:
    if deps.profile_retention_s:
        t = security_profile
        await _purge(
            deps,
            ctx,
            t.c.person,
            lambda now: t.c.updated_at < now - deps.profile_retention_s,
            "security_profiles_deleted",
        )


async def _purge(
    deps: JobDeps, ctx: JobContext, key: Any, condition: Callable[[int], Any], counter: str
) -> None:
    """Delete the rows of ``key``'s table that meet ``condition(now)``, in batches."""
    while True:
        cond = condition(ctx.now())
        ids = await asyncio.to_thread(
            _ids, deps.engine, select(key).where(cond).limit(ctx.batch_size)
        )
        if not ids:
            return
        n = await asyncio.to_thread(_delete, deps.engine, key.table, key, ids, cond)
        ctx.counts[counter] += n
        await ctx.batch_done()


async def _end_lapsed(deps: JobDeps, ctx: JobContext) -> None:
    store = deps.sessions.store
    seen: set[str] = set()
    while True:
        now = ctx.now()
        lapsed = [
            r
            for r in await asyncio.to_thread(store.lapsed, now, ctx.batch_size)
            if r.ref not in seen
        ]
        if not lapsed:
            return
        ended: list[tuple[SessionRecord, str]] = []
        for reason in (EndReason.EXPIRED, EndReason.IDLE):
            group = [
                r for r in lapsed if (now >= r.absolute_expires_at) == (reason is EndReason.EXPIRED)
            ]
            if not group:
                continue
            done = set(await asyncio.to_thread(store.end, [r.ref for r in group], now, reason))
            ended += [(r, reason.value) for r in group if r.ref in done]
        seen.update(r.ref for r in lapsed)  # ended meanwhile by a request: not ours to count
        if ended:
            try:
                await deps.trail.emit_many(
                    [_terminate_event(deps.sessions, r, why, ctx.request_id) for r, why in ended]
                )
            except AuditUnavailable:
                # Lapsed sessions cannot be used either way; reopened, the next run ends
                # them with their events and revokes their tokens.
                await asyncio.to_thread(
                    deps.sessions.store.reopen, [(r.ref, why) for r, why in ended], now
                )
                raise
        for _, why in ended:
            ctx.counts[f"sessions_{why}"] += 1
        await ctx.batch_done()


async def _revoke_ended(deps: JobDeps, ctx: JobContext) -> None:
    """Revoke the active tokens of ended sessions: those this run ended, and those whose
    revocation an earlier run (or the request that ended the session) could not record
    (``revoke_session`` then leaves them active), so none outlives its session."""
    comps = deps.tokens()
    if comps is None:
        return
    seen: set[str] = set()
    while True:
        query = (
            select(session.c.ref, session.c.end_reason)
            .select_from(tokens.join(session, tokens.c.session_ref == session.c.ref))
            .where(tokens.c.state == "active", session.c.ended_at.is_not(None))
            .distinct()
            .limit(ctx.batch_size)
        )
        rows = [r for r in await asyncio.to_thread(_rows, deps.engine, query) if r.ref not in seen]
        if not rows:
            return
        for ref, reason in rows:
            seen.add(ref)
            ctx.counts["tokens_revoked"] += await comps.service.revoke_session(
                ref, by=Actor(ActorType.SYSTEM), why=f"session_{reason}", undo_if_unaudited=True
            )
        await ctx.batch_done()


async def token_metadata(deps: JobDeps, ctx: JobContext) -> None:
    comps = deps.tokens()
    if comps is not None:
        while n := await comps.service.expire_overdue(limit=ctx.batch_size):
            ctx.counts["tokens_expired"] += n
            await ctx.batch_done()
    await _purge(
        deps,
        ctx,
        tokens.c.jti,
        lambda now: (
            tokens.c.state.in_(("expired", "revoked", "replaced"))
            & (tokens.c.exp < now - deps.token_retention_s)
        ),
        "token_metadata_deleted",
    )


async def access_lists(deps: JobDeps, ctx: JobContext) -> None:
    comps = deps.tokens()
    from kroonika.tokens import AccessListError

    while True:
        now = ctx.now()
        ids = await asyncio.to_thread(
            _ids,
            deps.engine,
            select(access_list.c.id)
            .where(access_list.c.expires_at.is_not(None), access_list.c.expires_at <= now)
            .limit(ctx.batch_size),
        )
        if not ids:
            return
        for entry_id in ids:
            try:
                if comps is not None:
                    await comps.service.list_remove(
                        entry_id,
                        why="expired",
                        actor=Actor(ActorType.SYSTEM),
                        undo_if_unaudited=True,
                    )
                else:
                    await asyncio.to_thread(
                        _delete, deps.engine, access_list, access_list.c.id, [entry_id]
                    )
            except AccessListError:
                continue  # removed meanwhile by an administrator
            ctx.counts["access_list_entries_removed"] += 1
        await ctx.batch_done()


async def token_keys(deps: JobDeps, ctx: JobContext) -> None:
    """Scheduled rotation of the token signing keys: abandoned staged keys discarded
    (first, so that one cannot pass for the newest key and hold back a due rotation), a
    new key when the newest is older than the rotation interval (published before it
    signs), and retirement of superseded keys whose last token has expired."""
    from kroonika.tokens import rotate_recorded

    comps = deps.tokens()
    if comps is None:
        return
    discarded = await asyncio.to_thread(comps.keys.discard_abandoned)
    ctx.counts["keys_discarded"] += len(discarded)
    # The new key is staged (published, signing nothing) until its key.rotate is
    # recorded; refused, it is discarded and the next run rotates again.

    async def record(old: str | None, new: str) -> None:
        await deps.trail.emit_many(
            [
                ev.key_rotate(
                    actor=Actor(ActorType.SYSTEM),
                    target=Target("signing_key", new),
                    correlation=Correlation(request_id=ctx.request_id),
                    purpose="token_signing",
                    old_kid=old,
                    new_kid=new,
                    justification="scheduled rotation (token_key_rotation_interval_s)",
                )
            ]
        )

    if await rotate_recorded(comps.keys, record, due_only=True) is not None:
        ctx.counts["keys_rotated"] += 1
    retired = await asyncio.to_thread(comps.keys.retire_expired)
    ctx.counts["keys_retired"] += len(retired)


JOBS: dict[str, Job] = {
    "login_flows": login_flows,
    "sessions": sessions,
    "token_metadata": token_metadata,
    "access_lists": access_lists,
    "token_keys": token_keys,
    "security_profiles": security_profiles,
}
