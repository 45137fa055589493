"""Bounded statements for background work on PostgreSQL (decision 0010, 2026-11-28 (review ops)).

A scheduled job shares the database with requests and other instances: blocked on a row
lock another session holds, its statement would wait for ever (until the stop gives the
run up). Inside :meth:`StatementLimits.applied` (the scheduler wraps every run in it)
each transaction an engine prepared by :func:`limit_statements` begins on PostgreSQL
starts with ``SET LOCAL lock_timeout`` and ``SET LOCAL statement_timeout``; the server
then cancels a statement that waits or runs too long, and :func:`timeout_kind` names
which bound it hit. Other work on the same engine (requests, the audit writer's task)
is not touched: the limits travel in a context variable, which ``asyncio.to_thread``
copies into the job's worker threads. SQLite has no such settings (its writers wait at
most the busy timeout already).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

#: PostgreSQL's SQLSTATEs for a statement cancelled by ``lock_timeout``
#: (``lock_not_available``) and by ``statement_timeout`` (``query_canceled``).
_TIMEOUTS = {"55P03": "lock_timeout", "57014": "statement_timeout"}

_ACTIVE: contextvars.ContextVar[StatementLimits | None] = contextvars.ContextVar(
    "kroonika_statement_limits", default=None
)


@dataclass(frozen=True, slots=True)
class StatementLimits:
    """How long one statement may wait for a lock, and run at all (seconds)."""

    lock_timeout_s: float = 5.0
    statement_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not (self.lock_timeout_s > 0 and self.statement_timeout_s > 0):
            raise ValueError("statement limits must be positive (seconds)")

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Bound the statements of this context (and of threads started from it)."""
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)


def limit_statements(engine: Engine) -> Engine:
    """Make ``engine`` honour :meth:`StatementLimits.applied` (PostgreSQL; idempotent)."""
    if engine.dialect.name == "postgresql" and not event.contains(engine, "begin", _on_begin):
        event.listen(engine, "begin", _on_begin)
    return engine


def _on_begin(conn: Any) -> None:
    limits = _ACTIVE.get()
    if limits is None:
        return
    # Whole milliseconds from validated floats: nothing of a caller's reaches the SQL.
    lock_ms = max(1, round(limits.lock_timeout_s * 1000))
    statement_ms = max(1, round(limits.statement_timeout_s * 1000))
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {lock_ms:d}")
    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {statement_ms:d}")


def timeout_kind(exc: BaseException) -> str | None:
    """``lock_timeout`` or ``statement_timeout`` when ``exc`` (or what caused it) is
    PostgreSQL cancelling a statement for that bound, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for candidate in (current, getattr(current, "orig", None)):
            kind = _TIMEOUTS.get(str(getattr(candidate, "sqlstate", None)))
            if kind is not None:
                return kind
        current = current.__cause__ or current.__context__
    return None


__all__ = ["StatementLimits", "limit_statements", "timeout_kind"]
