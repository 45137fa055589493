"""SQL storage of login flows and sessions (synchronous; the manager runs it in threads)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from kroonika.db.sessions import login_flow, session
from kroonika.sessions._model import LoginFlow, Lookup, SessionRecord


def _flow(row: Any) -> LoginFlow:
    return LoginFlow(
        flow_id=row.flow_id,
        state_digest=row.state_digest,
        nonce_digest=row.nonce_digest,
        acr_requested=row.acr_requested,
        methods=tuple(m for m in row.methods.split(",") if m),
        ui_locales=row.ui_locales,
        return_to=row.return_to,
        status=row.status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        consumed_at=row.consumed_at,
    )


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        ref=row.ref,
        subject=row.subject,
        given_name=row.given_name,
        family_name=row.family_name,
        method=row.method,
        acr=row.acr,
        flow_id=row.flow_id,
        ip=row.ip,
        user_agent=row.user_agent,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        idle_expires_at=row.idle_expires_at,
        absolute_expires_at=row.absolute_expires_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
    )


class FlowStore:
    """Server-side login flow state with a TTL, shared by every instance on the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, flow: LoginFlow) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(login_flow).values(
                    flow_id=flow.flow_id,
                    state_digest=flow.state_digest,
                    nonce_digest=flow.nonce_digest,
                    acr_requested=flow.acr_requested,
                    methods=",".join(flow.methods),
                    ui_locales=flow.ui_locales,
                    return_to=flow.return_to,
                    status=flow.status,
                    created_at=flow.created_at,
                    expires_at=flow.expires_at,
                )
            )

    def find(self, state_digest: str, now: int) -> tuple[Lookup, LoginFlow | None]:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(login_flow).where(login_flow.c.state_digest == state_digest)
            ).first()
        if row is None:
            return Lookup.UNKNOWN, None
        flow = _flow(row)
        if flow.consumed_at is not None:
            return Lookup.REPLAYED, flow
        if now > flow.expires_at:
            return Lookup.EXPIRED, flow
        return Lookup.OK, flow

    def consume(self, flow_id: str, now: int) -> bool:
        """Mark the flow used; False if another request did first (a replay)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(login_flow)
                .where(login_flow.c.flow_id == flow_id, login_flow.c.consumed_at.is_(None))
                .values(consumed_at=now)
            )
        return result.rowcount == 1

    def set_status(self, flow_id: str, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(login_flow).where(login_flow.c.flow_id == flow_id).values(status=status)
            )

    def purge(self, before: int) -> int:
        """Delete flows that expired before ``before`` (kept a while to recognise replays)."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(login_flow).where(login_flow.c.expires_at < before))
        return result.rowcount


class SessionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, record: SessionRecord, secret_digest: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(session).values(
                    ref=record.ref,
                    secret_digest=secret_digest,
                    subject=record.subject,
                    given_name=record.given_name,
                    family_name=record.family_name,
                    method=record.method,
                    acr=record.acr,
                    flow_id=record.flow_id,
                    ip=record.ip,
                    user_agent=record.user_agent,
                    created_at=record.created_at,
                    last_seen_at=record.last_seen_at,
                    idle_expires_at=record.idle_expires_at,
                    absolute_expires_at=record.absolute_expires_at,
                )
            )

    def by_secret(self, secret_digest: str) -> SessionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(session).where(session.c.secret_digest == secret_digest)
            ).first()
        return _session(row) if row is not None else None

    def by_ref(self, ref: str) -> SessionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(session).where(session.c.ref == ref)).first()
        return _session(row) if row is not None else None

    def active_for(self, subject: str) -> list[SessionRecord]:
        """Sessions of ``subject`` not yet ended, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(session)
                .where(session.c.subject == subject, session.c.ended_at.is_(None))
                .order_by(session.c.created_at, session.c.ref)
            ).all()
        return [_session(r) for r in rows]

    def lapsed(self, now: int, limit: int = 500) -> list[SessionRecord]:
        """Sessions not ended whose idle or absolute time has passed."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(session)
                .where(
                    session.c.ended_at.is_(None),
                    (session.c.idle_expires_at < now) | (session.c.absolute_expires_at < now),
                )
                .limit(limit)
            ).all()
        return [_session(r) for r in rows]

    def touch(self, ref: str, now: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(session).where(session.c.ref == ref).values(last_seen_at=now))

    def extend(self, ref: str, now: int, idle_expires_at: int) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(session)
                .where(session.c.ref == ref, session.c.ended_at.is_(None))
                .values(last_seen_at=now, idle_expires_at=idle_expires_at)
            )
        return result.rowcount == 1

    def end(self, refs: Sequence[str], now: int, reason: str) -> list[str]:
        """End those of ``refs`` still active; returns the ones this call ended."""
        ended: list[str] = []
        with self.engine.begin() as conn:
            for ref in refs:
                result = conn.execute(
                    update(session)
                    .where(session.c.ref == ref, session.c.ended_at.is_(None))
                    .values(ended_at=now, end_reason=reason)
                )
                if result.rowcount == 1:
                    ended.append(ref)
        return ended

    def reopen(self, ended: Sequence[tuple[str, str]], now: int) -> None:
        """Undo :meth:`end` at ``now`` of each ``(ref, reason)`` (its event was refused),
        unless something ended it otherwise since."""
        with self.engine.begin() as conn:
            for ref, reason in ended:
                conn.execute(
                    update(session)
                    .where(
                        session.c.ref == ref,
                        session.c.ended_at == now,
                        session.c.end_reason == reason,
                    )
                    .values(ended_at=None, end_reason=None)
                )
