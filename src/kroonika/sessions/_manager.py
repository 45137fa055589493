"""Session lifecycle with its audit events: create, find (ending lapsed ones), extend, end.

Every change is committed to the database and then awaited into the audit trail. If the trail
is down (``AuditUnavailable``) a new session is ended again before the error propagates, so
nothing happens unaudited; an ending stays ended (the safe direction).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from typing import Protocol

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditUnavailable,
    Correlation,
    Fingerprinter,
    Source,
    Target,
    events,
)
from kroonika.sessions._model import (
    Clock,
    EndReason,
    NewSession,
    RequestContext,
    SessionIdentity,
    SessionPolicy,
    SessionRecord,
)
from kroonika.sessions._store import SessionStore

_REF = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""What a session ref can look like (``secrets.token_urlsafe``); anything else is no session."""


def _cut(value: str | None, length: int) -> str | None:
    return value[:length] if value is not None else None


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Emitter(Protocol):
    """Where the events go (an :class:`~kroonika.audit.AuditTrail`)."""

    async def emit(self, event: AuditEvent) -> object: ...


class LapsedHook(Protocol):
    async def __call__(
        self, record: SessionRecord, reason: EndReason, ctx: RequestContext
    ) -> None: ...


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        policy: SessionPolicy,
        trail: Emitter,
        fingerprinter: Fingerprinter,
        *,
        clock: Clock,
    ) -> None:
        self.store = store
        self.policy = policy
        self.trail = trail
        self.fingerprinter = fingerprinter
        self.clock = clock
        # Run after a request found a session lapsed and ended it (idle or absolute
        # expiry), e.g. to revoke its tokens: once ended, nothing looks at it again.
        self.on_lapsed: list[LapsedHook] = []

    def now(self) -> int:
        return int(self.clock())

    def session_ref(self, record: SessionRecord) -> str:
        """The keyed fingerprint that stands for the session in events and logs."""
        return self.fingerprinter.fingerprint("session", record.ref)

    def _parts(
        self, record: SessionRecord, ctx: RequestContext
    ) -> tuple[Actor, Source, Target, Correlation]:
        ref = self.session_ref(record)
        return (
            Actor(ActorType.USER, subject=record.subject),
            Source(ip=ctx.ip, user_agent=ctx.user_agent),
            Target("session", ref),
            Correlation(
                request_id=ctx.request_id,
                trace_id=ctx.trace_id,
                flow_id=record.flow_id,
                session_ref=ref,
            ),
        )

    def _lifecycle(
        self, make: events.EventConstructor, record: SessionRecord, ctx: RequestContext
    ) -> AuditEvent:
        """``session.create`` / ``session.extend``: who, where, and the new expiries."""
        actor, source, target, corr = self._parts(record, ctx)
        return make(
            actor=actor,
            source=source,
            target=target,
            correlation=corr,
            method=record.method,
            acr=record.acr,
            idle_timeout_s=self.policy.idle_s,
            expires_at=record.idle_expires_at,
            absolute_expires_at=record.absolute_expires_at,
        )

    async def create(
        self, identity: SessionIdentity, ctx: RequestContext, *, flow_id: str | None
    ) -> NewSession:
        now = self.now()
        secret = secrets.token_urlsafe(32)
        record = SessionRecord(
            ref=secrets.token_urlsafe(12),
            subject=identity.subject,
            # Shown to the citizen only: cut to the columns, as TARA documents no limit
            # (PostgreSQL refuses a longer value, and the whole login with it).
            given_name=_cut(identity.given_name, 256),
            family_name=_cut(identity.family_name, 256),
            method=identity.method,
            acr=identity.acr,
            flow_id=flow_id,
            ip=ctx.ip,
            user_agent=(ctx.user_agent or "")[:512] or None,
            created_at=now,
            last_seen_at=now,
            idle_expires_at=min(now + self.policy.idle_s, now + self.policy.absolute_s),
            absolute_expires_at=now + self.policy.absolute_s,
        )
        # The cap counts the sessions that existed before this one was stored, and ends only
        # those: two logins racing each other then never end each other (nor themselves),
        # so at least the newest survives; a race may leave one session over the cap until
        # the next login.
        earlier = (
            await asyncio.to_thread(self.store.active_for, record.subject)
            if self.policy.max_per_person
            else []
        )
        await asyncio.to_thread(self.store.add, record, secret_digest(secret))
        try:
            await self.trail.emit(self._lifecycle(events.session_create, record, ctx))
        except AuditUnavailable:
            await asyncio.to_thread(self.store.end, [record.ref], now, "audit_unavailable")
            raise
        ended: list[SessionRecord] = []
        excess = len(earlier) + 1 - self.policy.max_per_person
        for old in earlier[: max(excess, 0)] if self.policy.max_per_person else []:
            if await self.end(old, EndReason.LIMIT, ctx, ended_by="system"):
                ended.append(old)
        return NewSession(secret=secret, record=record, ended=tuple(ended))

    async def current(self, secret: str | None, ctx: RequestContext) -> SessionRecord | None:
        """The live session for a cookie value; a lapsed one is ended (with its event)."""
        if not secret or len(secret) > 128:
            return None
        record = await asyncio.to_thread(self.store.by_secret, secret_digest(secret))
        if record is None or not record.active:
            return None
        if await self.end_if_lapsed(record, ctx):
            return None
        now = self.now()
        await asyncio.to_thread(self.store.touch, record.ref, now)
        return record

    async def end_if_lapsed(self, record: SessionRecord, ctx: RequestContext) -> bool:
        """True if the session has lapsed; ended here (with its event and the
        ``on_lapsed`` hooks) unless something else ended it first."""
        now = self.now()
        if now >= record.absolute_expires_at:
            reason = EndReason.EXPIRED
        elif now >= record.idle_expires_at:
            reason = EndReason.IDLE
        else:
            return False
        if await self.end(record, reason, ctx, ended_by="system"):
            for hook in self.on_lapsed:
                await hook(record, reason, ctx)
        return True

    async def extend(self, record: SessionRecord, ctx: RequestContext) -> SessionRecord | None:
        """Slide the idle expiry (never past the absolute limit); None if it ended meanwhile."""
        now = self.now()
        new_idle = min(now + self.policy.idle_s, record.absolute_expires_at)
        if not await asyncio.to_thread(self.store.extend, record.ref, now, new_idle):
            return None
        updated = await asyncio.to_thread(self.store.by_ref, record.ref)
        if updated is None:
            return None
        await self.trail.emit(self._lifecycle(events.session_extend, updated, ctx))
        return updated

    async def end(
        self,
        record: SessionRecord,
        reason: EndReason,
        ctx: RequestContext,
        *,
        ended_by: str = "user",
        undo_if_unaudited: bool = False,
    ) -> bool:
        """End one session and emit ``session.terminate``; False if it had already ended.
        An ending whose event the trail refuses stays done (the safe direction), unless
        ``undo_if_unaudited``: then the session is reopened before the error propagates
        (an erasure, which must not act unaudited and is simply run again)."""
        now = self.now()
        ended = await asyncio.to_thread(self.store.end, [record.ref], now, reason.value)
        if not ended:
            return False
        actor, source, target, corr = self._parts(record, ctx)
        event = events.session_terminate(
            actor=actor,
            source=source,
            target=target,
            correlation=corr,
            method=record.method,
            acr=record.acr,
            reason=reason.value,
            ended_by=ended_by,
            expires_at=record.idle_expires_at,
            absolute_expires_at=record.absolute_expires_at,
        )
        try:
            await self.trail.emit(event)
        except AuditUnavailable:
            if undo_if_unaudited:
                await asyncio.to_thread(self.store.reopen, [(record.ref, reason.value)], now)
            raise
        return True

    async def active_for(self, subject: str, ctx: RequestContext) -> list[SessionRecord]:
        """Live sessions of a person; lapsed ones found on the way are ended."""
        live = []
        for record in await asyncio.to_thread(self.store.active_for, subject):
            if not await self.end_if_lapsed(record, ctx):
                live.append(record)
        return live

    async def by_ref(self, ref: str) -> SessionRecord | None:
        if not _REF.fullmatch(ref):  # PostgreSQL refuses NUL; no session has such a ref
            return None
        return await asyncio.to_thread(self.store.by_ref, ref)

    async def sweep(self, ctx: RequestContext | None = None) -> int:
        """End every lapsed session (for a scheduled job); returns how many."""
        ctx = ctx or RequestContext()
        n = 0
        for record in await asyncio.to_thread(self.store.lapsed, self.now()):
            if await self.end_if_lapsed(record, ctx):
                n += 1
        return n
