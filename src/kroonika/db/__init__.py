"""Business data of the service (sessions, login flows, tokens, clients, lists, admin).

Every module that owns tables defines them on the one :data:`metadata` here, in its
own module (``kroonika.db.sessions``, ``kroonika.db.tokens``, ...), so Alembic sees
them all. The audit trail has its own store (``kroonika.audit.store``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError

from kroonika.db._limits import StatementLimits, limit_statements, timeout_kind

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

#: Driver errors that mean the database cannot be used right now (server gone or refusing
#: connections, connection dropped mid-query, SQLite file locked past the busy timeout):
#: the request answers 503 ``database_unavailable`` and works again once it is back.
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


def normalise_url(url: str) -> str:
    """A plain path means SQLite; ``postgresql://`` means psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the business database; SQLite gets WAL and a busy timeout. Driver
    errors never quote the statement's parameters (personal codes, names, digests): they
    end up in tracebacks in the operational log. On PostgreSQL the statements of a job
    are bounded (:class:`StatementLimits`)."""
    url = normalise_url(url)
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # PostgreSQL: a scheduled job's statements are bounded (StatementLimits.applied)
    return limit_statements(create_engine(url, pool_pre_ping=True, **kwargs))


def insert_new(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert the row unless it would break a unique key (``ON CONFLICT DO NOTHING``);
    True if it was inserted. A duplicate is no error: PostgreSQL logs every unique
    violation with the key's values (``DETAIL: Key (subject, role)=(EE..., admin)
    already exists.``), which would put a personal code in the server's log and in the
    driver's exception (decision 0020, 2026-11-28)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing()
    # RETURNING, not rowcount: the driver does not always count such an insert
    returned = conn.execute(statement.returning(*table.primary_key.columns)).first()
    return returned is not None


__all__ = [
    "NAMING",
    "UNAVAILABLE",
    "StatementLimits",
    "insert_new",
    "limit_statements",
    "make_engine",
    "metadata",
    "normalise_url",
    "timeout_kind",
]
